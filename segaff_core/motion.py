"""The published motion: the predicted axis in the project's sign convention and the trajectory generated
from the predicted motion, so that the path a robot follows agrees with the joint.

Sign convention (also :func:`segaff_core.geometry.axis_in_opening_sense`): translation, the axis is the
opening direction; rotation, the axis is the right-hand sense of opening. Either way the handle leaves the
surface toward free space: its opening velocity (the axis, or ``axis x (handle - origin)``) points against
the approach direction (which points into the surface). Where the approach says little (no depth at the
point, or a velocity nearly parallel to the surface) the model's learned trajectory decides the sign.

The opening extent (metres or radians) is read off the learned trajectory (:func:`trajectory_extent`: how
far its last point lies along the axis, or the angle it swept about the axis line through the model's own
origin, which it was learned with, wherever the published origin lies) and kept where it is
plausible for a part that opens fully; elsewhere the motion type's typical extent stands
(:func:`plausible_extent`): on frames unlike its training data the model's path may open a door by a few
degrees only, an arc no gripper can follow.

With ``surface_axis`` (the default) the axis is first made to agree with the part's surface at the handle
where it nearly does (:func:`surface_consistent_axis`): furniture's drawers slide along the normal of their
front, and its doors and lids turn about a line in the plane of their front.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np

from segaff_core.geometry import axis_in_opening_sense, opening_velocity, trajectory_rotation, trajectory_translation

MIN_APPROACH_AGREEMENT = 0.2
"""|cos| between the opening velocity and the approach below which the approach does not decide the sign."""

SURFACE_AXIS_MAX_DEG = 30.0
"""Largest angle between the predicted axis and what the surface implies (translation: the normal; rotation:
the plane) for which :func:`surface_consistent_axis` replaces it; further off, the prediction stands."""

ROTATION_EXTENT_RAD = (math.radians(70.0), math.radians(110.0), math.radians(90.0))
"""A rotation's plausible opening extent (radians): the range in which the learned one is kept, and the
extent published outside it (doors, flaps and lids open by about a right angle)."""

TRANSLATION_EXTENT_M = (0.15, 0.5, 0.3)
"""A translation's plausible opening extent (metres): the range in which the learned one is kept, and the
extent published outside it (drawers pull out by about two thirds of a cabinet's depth)."""

_EPS = 1e-9


@dataclass(frozen=True)
class PublishedMotion:
    """The axis in the opening sense, the opening extent and the handle's path relative to its start."""

    axis: np.ndarray  # (3,) unit
    extent: float  # metres (translation) or radians (rotation), >= 0
    relative_trajectory: np.ndarray  # (T, 3), first row zero


def _unit(vector: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > _EPS else np.zeros(3)


def _swept_angle(axis: np.ndarray, start: np.ndarray, end: np.ndarray) -> float:
    """Unsigned angle (radians) between ``start`` and ``end`` (relative to a point on the axis line),
    projected onto the plane perpendicular to the unit ``axis``; 0 when either lies on the axis."""
    a, b = start - (start @ axis) * axis, end - (end @ axis) * axis
    if np.linalg.norm(a) < _EPS or np.linalg.norm(b) < _EPS:
        return 0.0
    return math.atan2(float(np.linalg.norm(np.cross(a, b))), float(a @ b))


def trajectory_extent(motion_type: int, axis: np.ndarray, origin_offset: np.ndarray, trajectory: np.ndarray) -> float:
    """How far the hand's path ``trajectory`` (T, 3) opens: its last point along the unit ``axis`` from its
    first (translation, metres, unsigned) or the angle it swept about the line along ``axis`` through its
    first point plus ``origin_offset`` (3,) (rotation, radians, 0 to pi)."""
    trajectory = np.asarray(trajectory, np.float64)
    chord = trajectory[-1] - trajectory[0]
    if motion_type == 0:
        return abs(float(chord @ axis))
    offset = np.asarray(origin_offset, np.float64)
    return _swept_angle(axis, -offset, chord - offset)


def plausible_extent(motion_type: int, learned_extent: float) -> float:
    """``learned_extent`` (metres or radians) where it lies in the motion type's plausible range
    (:data:`TRANSLATION_EXTENT_M`, :data:`ROTATION_EXTENT_RAD`), else the range's typical extent."""
    low, high, typical = TRANSLATION_EXTENT_M if motion_type == 0 else ROTATION_EXTENT_RAD
    return learned_extent if low <= learned_extent <= high else typical


def surface_consistent_axis(
    motion_type: int, axis: np.ndarray, approach: np.ndarray, max_deg: float = SURFACE_AXIS_MAX_DEG
) -> np.ndarray:
    """The unit ``axis`` made to agree with the surface whose normal is ``-approach`` where it nearly does.

    Translation within ``max_deg`` of the normal: the normal, with the axis's sign. Rotation within
    ``max_deg`` of the surface plane: its projection onto the plane (the model keeps choosing the hinge's
    direction in it). Otherwise (a sliding door, a hinge off the surface) and when the approach is unknown
    (NaN) the axis is returned as it is. The approach must be a surface normal: :func:`segaff_core.lifting.lift_point`
    falls back to the viewing ray only where fewer than 3 depth points lie near the handle.
    """
    normal = _unit(np.asarray(approach, np.float64))
    if not np.any(normal) or not np.any(axis):
        return axis
    cos = float(axis @ normal)
    if motion_type == 0:
        return math.copysign(1.0, cos) * normal if abs(cos) >= math.cos(math.radians(max_deg)) else axis
    return _unit(axis - cos * normal) if abs(cos) <= math.sin(math.radians(max_deg)) else axis


def publish_motion(
    motion_type: int, axis: np.ndarray, origin_offset: np.ndarray, approach: np.ndarray,
    learned_trajectory: np.ndarray, surface_axis: bool = True, learned_origin_offset: Optional[np.ndarray] = None,
) -> PublishedMotion:
    """The published motion of a prediction: ``axis`` (3,) as predicted (any sign), ``origin_offset`` (3,)
    from the interaction point to the axis line (rotation), ``approach`` (3,) into the surface (NaN when
    unknown), ``learned_trajectory`` (T, 3) relative to the interaction point (first row zero);
    ``surface_axis``: first make the axis agree with the surface (:func:`surface_consistent_axis`);
    ``learned_origin_offset`` (3,): the model's own offset, about which the learned path's angle is read
    (None: ``origin_offset``)."""
    unit_axis = _unit(np.asarray(axis, np.float64))
    if surface_axis:
        unit_axis = surface_consistent_axis(motion_type, unit_axis, approach)
    learned = np.asarray(learned_trajectory, np.float64)
    offset = np.asarray(origin_offset, np.float64)
    start = np.zeros(3)
    agreement = float(_unit(opening_velocity(motion_type, unit_axis, start, offset)) @ _unit(np.asarray(approach, np.float64)))
    if abs(agreement) >= MIN_APPROACH_AGREEMENT:  # NaN (no approach) is not
        unit_axis = -unit_axis if agreement > 0 else unit_axis
    else:  # the learned path's sense of opening, as the ground truth's is read
        unit_axis = axis_in_opening_sense(motion_type, unit_axis, offset, learned)
    points = len(learned)
    if not np.any(unit_axis):  # no axis (a degenerate output): the hand stays where it is
        return PublishedMotion(axis=unit_axis, extent=0.0, relative_trajectory=np.zeros((points, 3)))
    learned_offset = offset if learned_origin_offset is None else np.asarray(learned_origin_offset, np.float64)
    extent = plausible_extent(motion_type, trajectory_extent(motion_type, unit_axis, learned_offset, learned))
    relative = opening_trajectory(motion_type, start, unit_axis, offset, extent, points)
    return PublishedMotion(axis=unit_axis, extent=extent, relative_trajectory=relative)


def opening_trajectory(
    motion_type: int, start: np.ndarray, axis: np.ndarray, origin: np.ndarray, extent: float, points: int
) -> np.ndarray:
    """``points`` positions (points, 3) of the hand opening the part by ``extent`` from ``start``: along the
    unit ``axis`` (translation, 0) or about the line (``origin``, ``axis``) (rotation, 1); it stays at
    ``start`` when the axis or the extent is unknown (not finite, or a zero axis)."""
    start = np.asarray(start, np.float64)
    if not (math.isfinite(extent) and np.all(np.isfinite(axis)) and np.any(axis)):
        return np.repeat(start[None, :], points, axis=0)
    if motion_type == 0:
        return trajectory_translation(start, axis, extent, points)
    return trajectory_rotation(start, axis, origin, extent, points)
