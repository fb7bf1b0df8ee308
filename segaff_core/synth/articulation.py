"""How a part opens, in the camera frame: axis, origin, range and the handle's 20-point trajectory."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from segaff_core.geometry import trajectory_rotation, trajectory_translation
from segaff_core.synth.camera import Camera
from segaff_core.synth.layout import Part

TRAJECTORY_POINTS = 20


@dataclass(frozen=True)
class Motion:
    """A part's motion in one camera frame (metres; the axis unit; range in metres or radians, min 0)."""

    motion_type: int
    axis: np.ndarray
    origin: np.ndarray
    handle: np.ndarray
    range_max: float
    trajectory: np.ndarray


def handle_trajectory(handle: np.ndarray, motion_type: int, axis: np.ndarray, origin: np.ndarray,
                      range_max: float, num_points: int = TRAJECTORY_POINTS) -> np.ndarray:
    """The handle's path (num_points, 3) from closed to fully open: a line or an arc about the hinge."""
    if motion_type == 0:
        return trajectory_translation(handle, axis, range_max, num_points)
    return trajectory_rotation(handle, axis, origin, range_max, num_points)


def world_trajectory(part: Part, num_points: int = TRAJECTORY_POINTS) -> np.ndarray:
    """The handle's path in the world frame."""
    return handle_trajectory(part.handle, part.motion_type, part.axis, part.origin, part.range_max, num_points)


def camera_motion(part: Part, camera: Camera) -> Motion:
    """The part's motion expressed in ``camera``'s optical frame."""
    handle = camera.to_camera(part.handle)
    axis = camera.rotation @ part.axis
    origin = camera.to_camera(part.origin)
    trajectory = handle_trajectory(handle, part.motion_type, axis, origin, part.range_max)
    return Motion(part.motion_type, axis, origin, handle, part.range_max, trajectory)
