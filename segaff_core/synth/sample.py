"""Rendered views of a scene with per-part annotations in the camera frame (the writers' input)."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Optional

import numpy as np

from segaff_core.geometry import project
from segaff_core.synth.articulation import camera_motion
from segaff_core.synth.camera import Camera, sample_camera
from segaff_core.synth.language import describe_parts, instructions_in_view, named_part, referring_expressions
from segaff_core.synth.layout import SceneLayout
from segaff_core.synth.render import Lighting, Renderer
from segaff_core.synth.scene import build_scene
from segaff_core.synth.sensor_faults import apply_sensor_faults
from segaff_core.synth.styles import CLASSIC, SceneStyle

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
    descriptions: list[str]  # instructions that name the part in its scene and among the parts in view


@dataclass
class SceneSample:
    """One rendered view: ``rgb (H, W, 3) uint8``, ``depth_m (H, W) float32`` (0 = no surface or no
    measurement; with sensor faults, as the faulty sensor measured it),
    ``K (3, 3)``, ``world_to_camera (4, 4)`` (world: z up), the visible parts, the size of the
    scene's furniture (bounding-box diagonal, metres) and the lighting it was rendered with."""

    rgb: np.ndarray
    depth_m: np.ndarray
    K: np.ndarray
    world_to_camera: np.ndarray
    parts: list[PartAnnotation]
    diameter_m: float
    lighting: Lighting

    @property
    def camera(self) -> Camera:
        """The camera of this view (render it again, or move it with :class:`~segaff_core.synth.camera.Orbit`)."""
        return Camera(self.K, self.world_to_camera, *self.depth_m.shape)


class SceneViews:
    """A scene built once (layout, acceleration structure, descriptions) and rendered from many cameras,
    from the views of ``style`` and, with ``sensor_faults`` 1-4, with a faulty depth sensor of that
    severity (:mod:`segaff_core.synth.sensor_faults`; annotations are made on the true depth)."""

    def __init__(self, layout: SceneLayout, rng: np.random.Generator, threads: int = 0,
                 style: SceneStyle = CLASSIC, sensor_faults: int = 0) -> None:
        self.layout = layout
        self.style = style
        self.sensor_faults = sensor_faults
        self.instructions = describe_parts(layout, rng)
        self._expressions = referring_expressions(layout)
        self._renderer = Renderer(layout, threads)
        self.diameter_m = float(np.linalg.norm(layout.furniture_hi - layout.furniture_lo))

    def part_named(self, instruction: str) -> Optional[int]:
        """Index of the part that ``instruction`` names (see :func:`~segaff_core.synth.language.named_part`)."""
        return named_part(self._expressions, instruction)

    def view(self, rng: np.random.Generator, image_size: tuple[int, int], part_id: Optional[int] = None) -> SceneSample:
        """A view with at least one visible, described part; with ``part_id``, one aimed at that part and in
        which it is visible (its handle unoccluded). RuntimeError after many failed cameras."""
        height, width = image_size
        for _ in range(MAX_VIEW_ATTEMPTS):
            camera = sample_camera(rng, self.layout, height, width, part_id, self.style.views)
            lighting = Lighting.sample(rng, self.style.camera_effects)
            sample = self.render(camera, lighting)
            visible = {part.part_id for part in sample.parts}
            if (part_id in visible) if part_id is not None else visible:
                return sample
        wanted = "a part" if part_id is None else f"part {self.layout.parts[part_id].name}"
        raise RuntimeError(f"no camera among {MAX_VIEW_ATTEMPTS} sees {wanted} of this scene")

    def render(self, camera: Camera, lighting: Lighting) -> SceneSample:
        """The view from ``camera`` under ``lighting``, annotated with the parts visible in it (maybe none)."""
        image = self._renderer.render(camera, lighting)
        labels, depth = image.part_ids, image.depth_m
        present, counts = np.unique(labels[labels >= 0], return_counts=True)
        min_pixels = MIN_MASK_FRACTION * camera.height * camera.width
        in_view = [index for index, count in zip(present.tolist(), counts.tolist()) if count >= min_pixels]
        phrases_in_view = referring_expressions(self.layout, in_view)
        annotations: list[PartAnnotation] = []
        for index in in_view:
            part = self.layout.parts[index]
            piece = self.layout.furniture[part.furniture]
            descriptions = instructions_in_view(self.instructions[index], phrases_in_view[index])
            if not descriptions:
                continue  # no instruction names it both in the scene and among the parts in view
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
                    descriptions=descriptions,
                )
            )
        measured = apply_sensor_faults(depth, camera.K, image.rgb, image.specular, self.sensor_faults,
                                       lighting.noise_seed)
        return SceneSample(image.rgb, measured, camera.K.copy(), camera.world_to_camera.copy(), annotations,
                           self.diameter_m, lighting)


def scene_views(seed: int, threads: int = 0, style: SceneStyle = CLASSIC,
                sensor_faults: int = 0) -> tuple[SceneViews, np.random.Generator]:
    """The scene of ``seed`` in ``style`` (by default the classic world) and the generator that then draws
    its views (with depth faults of severity ``sensor_faults``)."""
    rng = np.random.default_rng(seed)
    return SceneViews(build_scene(rng, style), rng, threads, style, sensor_faults), rng


def find_scene(instruction: str, seeds: Iterable[int], min_siblings: int = 0,
               style: SceneStyle = CLASSIC) -> Optional[tuple[int, int]]:
    """The first of ``seeds`` whose scene (the one :func:`scene_views` builds) has a part that ``instruction``
    names with at least ``min_siblings`` other parts of its category on the same piece of furniture (so that
    the instruction has to tell them apart), and that part's index; None when no scene among them has one.
    Only layouts are built (no rendering: a few milliseconds per seed)."""
    for seed in seeds:
        layout = build_scene(np.random.default_rng(seed), style)
        index = named_part(referring_expressions(layout), instruction)
        if index is None:
            continue
        part = layout.parts[index]
        siblings = sum(other.furniture == part.furniture and other.category == part.category
                       for other in layout.parts if other is not part)
        if siblings >= min_siblings:
            return seed, index
    return None


def render_scene(seed: int, image_size: tuple[int, int] = (256, 256), style: SceneStyle = CLASSIC) -> SceneSample:
    """One view (``image_size`` = (H, W)) of the scene drawn from ``seed`` in ``style``; the same seed, the
    same sample."""
    views, rng = scene_views(seed, style=style)
    return views.view(rng, image_size)
