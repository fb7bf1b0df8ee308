"""Pinhole cameras like those of the OPD data: fx 190-300 px at 256 px wide, about 1-3 m from the object,
looking at the furniture from slightly above with a varied yaw (:data:`CLASSIC_VIEW`), or, in the styles'
broader worlds, also straight on (:data:`FRONTAL_VIEW`) or from far to one side (:data:`OBLIQUE_VIEW`).
Optical frame: x right, y down, z forward.

:func:`orbit_camera` and :class:`Orbit` move a camera smoothly about a point of the scene (a slow sway
for a live synthetic camera); :func:`sample_camera` draws the viewpoints of the data sets.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from segaff_core.synth.layout import SceneLayout

_UP = np.array([0.0, 0.0, 1.0])


@dataclass(frozen=True)
class ViewRange:
    """Where a camera stands relative to the point it looks at: distance (metres), yaw from straight on
    (degrees, positive: to the right; ``mirrored``: either side, drawn) and elevation above it (degrees)."""

    distance_m: tuple[float, float]
    yaw_deg: tuple[float, float]
    elevation_deg: tuple[float, float]
    mirrored: bool = False


CLASSIC_VIEW = ViewRange((0.9, 2.6), (-50.0, 50.0), (5.0, 35.0))
FRONTAL_VIEW = ViewRange((0.8, 2.2), (-10.0, 10.0), (-5.0, 15.0))
OBLIQUE_VIEW = ViewRange((0.9, 2.4), (35.0, 65.0), (10.0, 40.0), mirrored=True)


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


def _axis_rotation(axis: np.ndarray, angle_rad: float) -> np.ndarray:
    """Rotation matrix (3, 3) of ``angle_rad`` about the unit vector ``axis`` (right-handed, Rodrigues)."""
    x, y, z = axis
    cross = np.array([[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]])
    return np.eye(3) + np.sin(angle_rad) * cross + (1.0 - np.cos(angle_rad)) * cross @ cross


def orbit_camera(camera: Camera, pivot: np.ndarray, yaw_rad: float, pitch_rad: float) -> Camera:
    """``camera`` carried rigidly about the world point ``pivot``, as if it were mounted on a ball joint there.

    First ``pitch_rad`` about the horizontal line through the pivot that is perpendicular to the line of sight
    (positive: the camera rises and looks down more), then ``yaw_rad`` about the vertical through the pivot
    (positive: counter-clockwise seen from above). The orientation turns with the position, so the pivot keeps
    its pixel and its depth, and zero angles give ``camera`` back. K and the image size are unchanged.
    """
    pivot = np.asarray(pivot, dtype=np.float64)
    sight = pivot - camera.position
    across = np.cross(_UP, sight)
    norm = np.linalg.norm(across)
    if norm < 1e-9:
        raise ValueError("orbit_camera: the line of sight is vertical, the pitch axis is undefined")
    turn = _axis_rotation(_UP, yaw_rad) @ _axis_rotation(across / norm, pitch_rad)  # world -> world, about pivot
    # The moved camera sees turn(X) where the original saw X: world_to_camera' = world_to_camera o turn^-1.
    rotation = camera.rotation @ turn.T
    out = np.eye(4)
    out[:3, :3] = rotation
    out[:3, 3] = camera.rotation @ (pivot - turn.T @ pivot) + camera.world_to_camera[:3, 3]
    return Camera(camera.K, out, camera.height, camera.width)


@dataclass(frozen=True)
class Orbit:
    """A slow periodic sway of ``base`` about ``pivot`` (world), for a camera that moves without jumps.

    At phase ``p`` (periodic with period 1) the camera is ``base`` yawed by ``amplitude_rad * sin(2 pi p)`` and
    pitched by ``amplitude_rad / 2 * sin(4 pi p)`` about the pivot: a figure of eight centred on ``base``
    (phase 0 is ``base`` itself), whose angles change by at most ``2 pi * amplitude_rad`` per unit of phase.
    """

    base: Camera
    pivot: np.ndarray
    amplitude_rad: float

    def camera(self, phase: float) -> Camera:
        """The camera at ``phase`` (any float; only its fractional part matters)."""
        angle = 2.0 * np.pi * (phase % 1.0)
        return orbit_camera(self.base, self.pivot, self.amplitude_rad * np.sin(angle),
                            0.5 * self.amplitude_rad * np.sin(2.0 * angle))


def sample_intrinsics(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """K with fx = fy drawn from 190-300 px per 256 px of width and a principal point near the centre."""
    focal = rng.uniform(190.0, 300.0) * width / 256.0
    cx = width / 2 + rng.normal(0.0, 2.0)
    cy = height / 2 + rng.normal(0.0, 2.0)
    return np.array([[focal, 0.0, cx], [0.0, focal, cy], [0.0, 0.0, 1.0]])


def sample_camera(rng: np.random.Generator, layout: SceneLayout, height: int, width: int,
                  part_index: Optional[int] = None, views: tuple[ViewRange, ...] = (CLASSIC_VIEW,)) -> Camera:
    """A viewpoint in one of ``views`` (drawn) of a part's handle; by default 0.9-2.6 m from it, 5-35 degrees
    above it, yaw within +-50 degrees.

    The part is drawn at random and the camera looks near it, or the part is ``layout.parts[part_index]``
    and the camera looks at its handle (the image centre).
    """
    K = sample_intrinsics(rng, height, width)
    margin = 0.25
    for _ in range(50):
        index = int(rng.integers(len(layout.parts))) if part_index is None else part_index
        part = layout.parts[index]
        target = part.handle + rng.normal(0.0, [0.2, 0.0, 0.15])
        view = views[int(rng.integers(len(views)))] if len(views) > 1 else views[0]
        distance = rng.uniform(*view.distance_m)
        yaw = np.radians(rng.uniform(*view.yaw_deg))
        if view.mirrored and rng.random() < 0.5:
            yaw = -yaw
        elevation = np.radians(rng.uniform(*view.elevation_deg))
        offset = np.array([np.cos(elevation) * np.sin(yaw), -np.cos(elevation) * np.cos(yaw), np.sin(elevation)])
        position = target + distance * offset
        inside = (
            layout.room_lo[0] + margin < position[0] < layout.room_hi[0] - margin
            and 0.4 < position[2] < layout.room_hi[2] - margin
        )
        if inside:
            look = target + rng.normal(0.0, [0.25, 0.0, 0.2]) if part_index is None else part.handle
            return Camera(K, look_at(position, look, np.radians(rng.normal(0.0, 2.0))), height, width)
    raise RuntimeError("no camera position inside the room after 50 draws")
