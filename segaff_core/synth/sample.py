"""Rendered views of a scene with per-part annotations in the camera frame (the writers' input)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from segaff_core.geometry import project
from segaff_core.synth.articulation import camera_motion
from segaff_core.synth.camera import Camera, sample_camera
from segaff_core.synth.language import describe_parts
from segaff_core.synth.layout import SceneLayout
from segaff_core.synth.render import Lighting, Renderer
from segaff_core.synth.scene import build_scene

# The ray through the handle pixel must hit the part within this of the handle point: on the handle, or
# on the front just behind a handle thinner than a pixel (stand-off + bar <= 5.2 cm).
HANDLE_DEPTH_TOLERANCE_M = 0.06
MIN_MASK_FRACTION = 0.0015  # of the image: 98 px at 256 x 256
MAX_VIEW_ATTEMPTS = 40


@dataclass
class PartAnnotation:
    """One visible part in one view. Pixels are ``(u, v)`` = (column, row) with pixel centres at integers;
    3D values are in the camera's optical frame, metres; ``range_max`` metres (translation) or radians."""

    name: str
    category: str  # drawer | door | lid
    furniture: str
    furniture_diameter_m: float  # bounding-box diagonal of the piece the part belongs to
    part_id: int  # index of the part in its scene
    mask: np.ndarray  # (H, W) bool
    handle_px: np.ndarray  # (2,)
    handle_3d: np.ndarray  # (3,)
    motion_type: int  # 0 translation, 1 rotation
    axis: np.ndarray  # (3,) unit
    origin: np.ndarray  # (3,) on the hinge line at the handle (rotation), the handle (translation)
    range_max: float
    trajectory: np.ndarray  # (20, 3), first point = handle_3d
    descriptions: list[str]


@dataclass
class SceneSample:
    """One rendered view: ``rgb (H, W, 3) uint8``, ``depth_m (H, W) float32`` (0 = no surface),
    ``K (3, 3)``, ``world_to_camera (4, 4)`` (world: z up), the visible parts, and the size of the
    scene's furniture (bounding-box diagonal, metres)."""

    rgb: np.ndarray
    depth_m: np.ndarray
    K: np.ndarray
    world_to_camera: np.ndarray
    parts: list[PartAnnotation]
    diameter_m: float


class SceneViews:
    """A scene built once (layout, acceleration structure, descriptions) and rendered from many cameras."""

    def __init__(self, layout: SceneLayout, rng: np.random.Generator, threads: int = 0) -> None:
        self.layout = layout
        self.descriptions = describe_parts(layout, rng)
        self._renderer = Renderer(layout, threads)
        self.diameter_m = float(np.linalg.norm(layout.furniture_hi - layout.furniture_lo))

    def view(self, rng: np.random.Generator, image_size: tuple[int, int]) -> SceneSample:
        """A view with at least one visible, described part (RuntimeError after many failed cameras)."""
        height, width = image_size
        for _ in range(MAX_VIEW_ATTEMPTS):
            camera = sample_camera(rng, self.layout, height, width)
            lighting = Lighting.sample(rng)
            sample = self._render(camera, lighting)
            if sample.parts:
                return sample
        raise RuntimeError(f"no camera among {MAX_VIEW_ATTEMPTS} sees a part of this scene")

    def _render(self, camera: Camera, lighting: Lighting) -> SceneSample:
        image = self._renderer.render(camera, lighting)
        labels, depth = image.part_ids, image.depth_m
        present, counts = np.unique(labels[labels >= 0], return_counts=True)
        min_pixels = MIN_MASK_FRACTION * camera.height * camera.width
        annotations: list[PartAnnotation] = []
        for index, count in zip(present.tolist(), counts.tolist()):
            part = self.layout.parts[index]
            piece = self.layout.furniture[part.furniture]
            if count < min_pixels or not self.descriptions[index]:
                continue
            motion = camera_motion(part, camera)
            pixels = project(np.stack([motion.handle, motion.origin]), camera.K)
            if not np.isfinite(pixels).all():
                continue
            if (pixels < 0).any() or (pixels > [camera.width - 1, camera.height - 1]).any():
                continue  # the handle or the origin projects outside the image
            u, v = np.round(pixels[0]).astype(int)
            if labels[v, u] != index or abs(depth[v, u] - motion.handle[2]) > HANDLE_DEPTH_TOLERANCE_M:
                continue  # the handle is hidden
            annotations.append(
                PartAnnotation(
                    name=part.name,
                    category=part.category,
                    furniture=piece.name,
                    furniture_diameter_m=float(np.linalg.norm(piece.hi - piece.lo)),
                    part_id=index,
                    mask=labels == index,
                    handle_px=pixels[0],
                    handle_3d=motion.handle,
                    motion_type=part.motion_type,
                    axis=motion.axis,
                    origin=motion.origin,
                    range_max=part.range_max,
                    trajectory=motion.trajectory,
                    descriptions=list(self.descriptions[index]),
                )
            )
        return SceneSample(image.rgb, depth, camera.K.copy(), camera.world_to_camera.copy(), annotations,
                           self.diameter_m)


def scene_views(seed: int, threads: int = 0) -> tuple[SceneViews, np.random.Generator]:
    """The scene of ``seed`` and the generator that then draws its views."""
    rng = np.random.default_rng(seed)
    return SceneViews(build_scene(rng), rng, threads), rng


def render_scene(seed: int, image_size: tuple[int, int] = (256, 256)) -> SceneSample:
    """One view (``image_size`` = (H, W)) of the scene drawn from ``seed``; the same seed, the same sample."""
    views, rng = scene_views(seed)
    return views.view(rng, image_size)
