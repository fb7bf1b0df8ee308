"""Ray casting with open3d's RaycastingScene: depth, per-pixel part ids, and a shaded RGB image
(Lambertian + a little Blinn-Phong, one point light with hard shadows, ambient, procedural textures,
optionally a camera's effects: :mod:`segaff_core.synth.camera_effects`)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import cv2
import numpy as np
import open3d as o3d
import open3d.core as o3c

from segaff_core.synth.camera import Camera
from segaff_core.synth.camera_effects import CameraEffects
from segaff_core.synth.layout import SceneLayout
from segaff_core.synth.materials import MaterialTable

_BACKGROUND = np.array([0.5, 0.5, 0.5], dtype=np.float32)
# Linear [0, 1] (quantised to 4096 steps) -> sRGB-like uint8 with gamma 2.2.
_GAMMA_LUT = (np.linspace(0.0, 1.0, 4096) ** (1 / 2.2) * 255.0 + 0.5).astype(np.uint8)


def _rowdot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise dot products (N,) of (N, 3) arrays (einsum: much faster than sum(axis=1) here)."""
    return np.einsum("ij,ij->i", a, b)


@dataclass(frozen=True)
class Render:
    """``rgb (H, W, 3) uint8``, ``depth_m (H, W) float32`` (0 where no surface), ``part_ids (H, W)``
    (index into the layout's parts, -1 elsewhere) and ``specular (H, W) float32`` (the strength of the
    surface's highlight, 0 for matte surfaces and where no surface)."""

    rgb: np.ndarray
    depth_m: np.ndarray
    part_ids: np.ndarray
    specular: np.ndarray


@dataclass(frozen=True)
class Lighting:
    """Per-image light and sensor settings; ``effects``: the camera's, or None for none."""

    intensity: float
    ambient: float
    tint: np.ndarray
    exposure: float
    noise_std: float
    noise_seed: int
    effects: Optional[CameraEffects] = None

    @staticmethod
    def sample(rng: np.random.Generator, camera_effects: bool = False) -> Lighting:
        """Light and sensor settings, with camera effects drawn after them where ``camera_effects``."""
        return Lighting(
            intensity=float(rng.uniform(0.7, 1.2)),
            ambient=float(rng.uniform(0.25, 0.45)),
            tint=rng.uniform(0.9, 1.1, size=3),
            exposure=float(rng.uniform(0.85, 1.15)),
            noise_std=float(rng.uniform(0.5, 2.5)),
            noise_seed=int(rng.integers(2**31)),
            effects=CameraEffects.sample(rng) if camera_effects else None,
        )


class Renderer:
    """Renders one layout from any camera; the acceleration structure is built once per layout."""

    def __init__(self, layout: SceneLayout, threads: int = 0) -> None:
        self._layout = layout
        self._threads = threads
        self._scene = o3d.t.geometry.RaycastingScene(nthreads=threads)
        self._scene.add_triangles(o3c.Tensor(layout.mesh.vertices), o3c.Tensor(layout.mesh.triangles))
        self._triangle_material = layout.surface_material[layout.mesh.surface_ids]
        self._triangle_part = layout.surface_part[layout.mesh.surface_ids]
        self._materials = MaterialTable.from_materials(layout.materials)

    def render(self, camera: Camera, lighting: Lighting) -> Render:
        directions = camera.ray_directions()
        origin = camera.position.astype(np.float32)
        rays = np.concatenate([np.broadcast_to(origin, directions.shape), directions], axis=1)
        hits = self._scene.cast_rays(o3c.Tensor(rays), nthreads=self._threads)
        distance = hits["t_hit"].numpy()
        miss = ~np.isfinite(distance)
        distance[miss] = 0.0
        triangles = hits["primitive_ids"].numpy().astype(np.int64)
        triangles[miss] = 0
        part_ids = self._triangle_part[triangles]
        part_ids[miss] = -1

        points = origin + distance[:, None] * directions
        normals = hits["primitive_normals"].numpy()
        normals *= -np.sign(_rowdot(normals, directions))[:, None]
        colour = self._shade(points, normals, directions, triangles, lighting)
        colour[miss] = _BACKGROUND

        image = cv2.GaussianBlur(colour.reshape(camera.height, camera.width, 3), (3, 3), 0.6)
        noise_rng = np.random.default_rng(lighting.noise_seed)
        if lighting.effects is not None:
            image = lighting.effects.apply(image)
        image *= np.float32(lighting.exposure)
        grain = noise_rng.standard_normal((*image.shape[:2], 1), dtype=np.float32)  # grey sensor noise
        image += grain * np.float32(lighting.noise_std / 255)
        rgb = _GAMMA_LUT[(np.clip(image, 0.0, 1.0) * (len(_GAMMA_LUT) - 1)).astype(np.int64)]
        shape = (camera.height, camera.width)
        specular = self._materials.specular[self._triangle_material[triangles]]
        specular[miss] = 0.0
        return Render(rgb, distance.reshape(shape), part_ids.reshape(shape), specular.reshape(shape))

    def _shade(self, points: np.ndarray, normals: np.ndarray, directions: np.ndarray, triangles: np.ndarray,
               lighting: Lighting) -> np.ndarray:
        """Linear RGB (N, 3) of hit points with their camera-facing normals (float32 throughout)."""
        materials = self._triangle_material[triangles]
        albedo = self._materials.albedo(points, materials)
        to_light = self._layout.light_position.astype(np.float32) - points
        light_distance_sq = _rowdot(to_light, to_light)
        light_dir = to_light / np.sqrt(light_distance_sq)[:, None]
        lambert = np.clip(_rowdot(normals, light_dir), 0.0, None)
        shadow_rays = np.concatenate([points + np.float32(1e-3) * normals, to_light], axis=1)
        occluded = self._scene.test_occlusions(o3c.Tensor(shadow_rays), tnear=0.0, tfar=0.999,
                                               nthreads=self._threads).numpy()
        direct = np.float32(6.0 * lighting.intensity) * lambert / (3.0 + light_distance_sq)
        direct[occluded] = 0.0
        light = np.float32(lighting.ambient) * (0.8 + 0.2 * normals[:, 2]) + direct
        out = albedo * light[:, None] * lighting.tint.astype(np.float32)
        shiny = np.nonzero(self._materials.specular[materials] > 0)[0]
        if len(shiny):
            view = -directions[shiny] / np.sqrt(_rowdot(directions[shiny], directions[shiny]))[:, None]
            half = light_dir[shiny] + view
            half /= np.sqrt(_rowdot(half, half))[:, None]
            cosine = np.clip(_rowdot(normals[shiny], half), 0, None)
            cosine_5 = (cosine * cosine) ** 2 * cosine
            highlight = ((cosine_5 * cosine_5) ** 2) ** 2  # cosine ** 40, cheaper than power()
            out[shiny] += (self._materials.specular[materials[shiny]] * highlight * direct[shiny])[:, None]
        return out
