"""Pinhole cameras like those of the OPD data: fx 190-300 px at 256 px wide, about 1-3 m from the object,
looking at the furniture from slightly above with a varied yaw. Optical frame: x right, y down, z forward."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from segaff_core.synth.layout import SceneLayout

_UP = np.array([0.0, 0.0, 1.0])


@dataclass(frozen=True)
class Camera:
    """Intrinsics ``K (3, 3)``, ``world_to_camera (4, 4)`` and the image size in pixels."""

    K: np.ndarray
    world_to_camera: np.ndarray
    height: int
    width: int

    @property
    def rotation(self) -> np.ndarray:
        """World-to-camera rotation (3, 3)."""
        return self.world_to_camera[:3, :3]

    @property
    def position(self) -> np.ndarray:
        """The camera centre in the world (3,)."""
        return -self.rotation.T @ self.world_to_camera[:3, 3]

    def to_camera(self, points: np.ndarray) -> np.ndarray:
        """World points (..., 3) in the camera frame."""
        return points @ self.rotation.T + self.world_to_camera[:3, 3]

    def ray_directions(self) -> np.ndarray:
        """One world-frame ray direction per pixel, row-major (H * W, 3) float32, scaled so that camera z = 1:
        a ray's hit distance is then the depth of the hit point. Pixel centres are at integer coordinates."""
        k = self.K
        x = ((np.arange(self.width) - k[0, 2]) / k[0, 0]).astype(np.float32)
        y = ((np.arange(self.height) - k[1, 2]) / k[1, 1]).astype(np.float32)
        r = self.rotation.astype(np.float32)  # rows: camera axes in the world
        directions = x[None, :, None] * r[0] + y[:, None, None] * r[1] + r[2]
        return directions.reshape(-1, 3)


def look_at(position: np.ndarray, target: np.ndarray, roll_rad: float) -> np.ndarray:
    """World-to-camera (4, 4) for a camera at ``position`` looking at ``target``, z up, rolled about z."""
    z = target - position
    z = z / np.linalg.norm(z)
    x = np.cross(z, _UP)
    x = x / np.linalg.norm(x)
    y = np.cross(z, x)
    c, s = np.cos(roll_rad), np.sin(roll_rad)
    x, y = c * x + s * y, -s * x + c * y
    rotation = np.stack([x, y, z])  # rows: camera axes in the world
    out = np.eye(4)
    out[:3, :3] = rotation
    out[:3, 3] = -rotation @ position
    return out


def sample_intrinsics(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """K with fx = fy drawn from 190-300 px per 256 px of width and a principal point near the centre."""
    focal = rng.uniform(190.0, 300.0) * width / 256.0
    cx = width / 2 + rng.normal(0.0, 2.0)
    cy = height / 2 + rng.normal(0.0, 2.0)
    return np.array([[focal, 0.0, cx], [0.0, focal, cy], [0.0, 0.0, 1.0]])


def sample_camera(rng: np.random.Generator, layout: SceneLayout, height: int, width: int) -> Camera:
    """A viewpoint 0.9-2.6 m from a random part's handle, 5-35 degrees above it, yaw within +-50 degrees."""
    K = sample_intrinsics(rng, height, width)
    margin = 0.25
    for _ in range(50):
        part = layout.parts[int(rng.integers(len(layout.parts)))]
        target = part.handle + rng.normal(0.0, [0.2, 0.0, 0.15])
        distance = rng.uniform(0.9, 2.6)
        yaw, elevation = np.radians(rng.uniform(-50, 50)), np.radians(rng.uniform(5, 35))
        offset = np.array([np.cos(elevation) * np.sin(yaw), -np.cos(elevation) * np.cos(yaw), np.sin(elevation)])
        position = target + distance * offset
        inside = (
            layout.room_lo[0] + margin < position[0] < layout.room_hi[0] - margin
            and 0.4 < position[2] < layout.room_hi[2] - margin
        )
        if inside:
            look = target + rng.normal(0.0, [0.25, 0.0, 0.2])
            return Camera(K, look_at(position, look, np.radians(rng.normal(0.0, 2.0))), height, width)
    raise RuntimeError("no camera position inside the room after 50 draws")
