"""The hinge line of a turning part from its mask and the depth, independent of the network.

Furniture's doors, flaps and lids turn about a line on the boundary of their front, in the front's plane,
on the side away from the handle (the bottom edge of a flap hinged at the bottom). :func:`find_hinge_line`
finds that line where the mask and the depth decide it:

1. the front's plane, fitted to the masked points with valid depth (a trimmed least-squares fit: the handle
   and the mask's mixed edge pixels drop out);
2. the mask's outline (OpenCV's largest external contour) cast onto that plane, in metric coordinates along
   the (published) axis and across it, and OpenCV's minimum-area rectangle around it;
3. of the rectangle's two sides parallel to the axis, the one farther from the handle: the hinge line.

It answers None (the caller keeps the model's origin) when the mask has too little valid depth, the points
are not one plane, the axis leaves the plane, the outline is not a rectangle with sides along the axis, the
handle lies near the middle (no side is away from it) or the hinge side touches the image border (the
hinge may be out of view).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import cv2
import numpy as np

from segaff_core import geometry

MIN_PLANE_POINTS = 100
"""Masked pixels with valid depth needed to fit the front's plane."""

MIN_VALID_FRACTION = 0.3
"""Fraction of the mask's pixels that must have valid depth."""

PLANE_INLIER_M = 0.01
"""Largest distance from the fitted plane of a point that counts as the front's."""

MIN_INLIER_FRACTION = 0.6
"""Fraction of the valid masked points that must lie on the plane."""

MAX_AXIS_OUT_OF_PLANE_DEG = 30.0
"""Largest angle between the axis and the front's plane: further out the hinge is not on the front."""

MIN_RECTANGULARITY = 0.8
"""Area of the outline over its minimum-area rectangle's, both in the plane: below it the mask is no front."""

MAX_SIDE_ANGLE_DEG = 15.0
"""Largest angle between the axis and the rectangle's sides along it."""

MIN_HANDLE_OFFSET = 0.15
"""Distance of the handle from the rectangle's middle across the axis, over its width, that decides the side."""

BORDER_PX = 1
"""Outline pixels this close to the image border lie on it."""

MAX_BORDER_FRACTION = 0.2
"""Fraction of the hinge side's outline pixels on the image border above which the hinge may be out of view."""

_PLANE_FIT_ROUNDS = 3
_MAX_PLANE_POINTS = 4000  # the plane is fitted to at most about this many points (a regular subsample)
_EPS = 1e-9


@dataclass(frozen=True)
class Plane:
    """A plane through ``point`` with the unit ``normal`` facing the camera; ``inlier_fraction`` of the
    points it was fitted to lie within ``PLANE_INLIER_M`` of it."""

    point: np.ndarray  # (3,)
    normal: np.ndarray  # (3,) unit, normal . point < 0
    inlier_fraction: float


@dataclass(frozen=True)
class HingeLine:
    """The hinge line found: ``origin`` (3,) on it, level with the handle along the axis; the front's
    ``normal`` (3,) and its size in metres across the axis (``width_m``) and along it (``length_m``)."""

    origin: np.ndarray
    normal: np.ndarray
    width_m: float
    length_m: float


def fit_plane(points: np.ndarray) -> Optional[Plane]:
    """The plane of most of ``points`` (N, 3): a least-squares fit (SVD) repeated on the points within
    ``PLANE_INLIER_M`` of the last one (or, while the fit is still far off, within 3 robust standard
    deviations); None with fewer than 3 points."""
    points = np.asarray(points, np.float64)
    if len(points) < 3:
        return None
    inliers = points
    for _ in range(_PLANE_FIT_ROUNDS):
        centroid = inliers.mean(axis=0)
        normal = np.linalg.svd(inliers - centroid, full_matrices=False)[2][2]
        distances = np.abs((points - centroid) @ normal)
        spread = 1.4826 * 3.0 * float(np.median(distances))
        keep = distances <= max(PLANE_INLIER_M, spread)
        if keep.sum() < 3:
            return None
        inliers = points[keep]
    if normal @ centroid > 0:
        normal = -normal
    return Plane(point=centroid, normal=normal, inlier_fraction=float(np.mean(distances <= PLANE_INLIER_M)))


def _front_points(mask: np.ndarray, depth_m: np.ndarray, K: np.ndarray, min_depth_m: float,
                  max_depth_m: float) -> Optional[np.ndarray]:
    """The masked points with valid depth (a regular subsample of at most ``_MAX_PLANE_POINTS``), or None
    when fewer than ``MIN_PLANE_POINTS`` or ``MIN_VALID_FRACTION`` of the mask have valid depth."""
    with np.errstate(invalid="ignore"):
        valid = mask & np.isfinite(depth_m) & (depth_m >= min_depth_m) & (depth_m <= max_depth_m)
    count = int(valid.sum())
    if count < MIN_PLANE_POINTS or count < MIN_VALID_FRACTION * int(mask.sum()):
        return None
    points = geometry.depth_to_points(np.where(valid, depth_m, 0.0), K)
    return points[:: max(1, count // _MAX_PLANE_POINTS)]


def _front_plane(mask: np.ndarray, depth_m: np.ndarray, K: np.ndarray, min_depth_m: float,
                 max_depth_m: float) -> Optional[Plane]:
    """The plane of the masked points with valid depth; None where too few or too few of them on it."""
    points = _front_points(mask, depth_m, K, min_depth_m, max_depth_m)
    plane = None if points is None else fit_plane(points)
    return plane if plane is not None and plane.inlier_fraction >= MIN_INLIER_FRACTION else None


def _on_image_border(pixels: np.ndarray, image_hw: tuple[int, int]) -> np.ndarray:
    """Which ``pixels`` (N, 2) ``(u, v)`` lie within ``BORDER_PX`` of the border of an image of ``image_hw``."""
    height, width = image_hw
    u, v = pixels[:, 0], pixels[:, 1]
    return (u < BORDER_PX) | (u > width - 1 - BORDER_PX) | (v < BORDER_PX) | (v > height - 1 - BORDER_PX)


def _outline(mask: np.ndarray) -> np.ndarray:
    """The pixels (N, 2) ``(u, v)`` of the outline of the mask's largest connected region."""
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    return max(contours, key=cv2.contourArea).reshape(-1, 2)


def _on_plane(pixels: np.ndarray, K: np.ndarray, plane: Plane) -> np.ndarray:
    """Where the viewing rays of ``pixels`` (N, 2) meet ``plane``: (N, 3), NaN rows for rays along it."""
    rays = np.column_stack([(pixels[:, 0] - K[0, 2]) / K[0, 0], (pixels[:, 1] - K[1, 2]) / K[1, 1],
                            np.ones(len(pixels))])
    along = rays @ plane.normal
    scale = np.full(len(pixels), np.nan)
    meets = np.abs(along) > _EPS
    scale[meets] = (plane.point @ plane.normal) / along[meets]
    scale[scale <= 0] = np.nan
    return rays * scale[:, None]


def _sides_along(rectangle: tuple, max_side_angle_deg: float) -> Optional[tuple[float, float, float, float]]:
    """For a ``cv2.minAreaRect`` in (along the axis, across it) coordinates, its two sides along the axis as
    lines ``across = offset + slope * along``: ``(slope, offset, other offset, length)``; None when no side
    is within ``max_side_angle_deg`` of the axis."""
    corners = cv2.boxPoints(rectangle).astype(np.float64)
    for first in (0, 1):
        a, b, d = corners[first], corners[first + 1], corners[(first + 3) % 4]
        direction = (b - a) / max(float(np.linalg.norm(b - a)), _EPS)
        if abs(direction[0]) >= math.cos(math.radians(max_side_angle_deg)):
            slope = float(direction[1] / direction[0])
            return slope, a[1] - slope * a[0], d[1] - slope * d[0], float(np.linalg.norm(b - a))
    return None


def find_hinge_line(
    mask: np.ndarray, depth_m: np.ndarray, K: np.ndarray, handle: np.ndarray, axis: np.ndarray,
    min_depth_m: float = 0.1, max_depth_m: float = 10.0,
) -> Optional[HingeLine]:
    """The hinge line of the part in ``mask`` (H, W) turning about the unit ``axis`` (3,) with its handle at
    ``handle`` (3,), found with ``depth_m`` (metres, the mask's size) and K; None where they do not decide it
    (see the module docstring)."""
    handle, axis = np.asarray(handle, np.float64), np.asarray(axis, np.float64)
    mask = np.asarray(mask, bool)
    if not (mask.any() and np.all(np.isfinite(handle)) and np.all(np.isfinite(axis)) and np.any(axis)):
        return None
    plane = _front_plane(mask, depth_m, K, min_depth_m, max_depth_m)
    if plane is None:
        return None
    axis = axis / np.linalg.norm(axis)
    if abs(float(axis @ plane.normal)) > math.sin(math.radians(MAX_AXIS_OUT_OF_PLANE_DEG)):
        return None
    along = axis - (axis @ plane.normal) * plane.normal
    along /= np.linalg.norm(along)
    across = np.cross(plane.normal, along)
    pixels = _outline(mask)
    outline = _on_plane(pixels.astype(np.float64), K, plane)
    seen = np.all(np.isfinite(outline), axis=1)
    if seen.sum() < 4:
        return None
    pixels, outline = pixels[seen], outline[seen] - plane.point
    flat = np.column_stack([outline @ along, outline @ across]).astype(np.float32)  # metres in the plane
    rectangle = cv2.minAreaRect(flat)
    (width, height) = rectangle[1]
    if width * height <= 0 or cv2.contourArea(flat) < MIN_RECTANGULARITY * width * height:
        return None
    sides = _sides_along(rectangle, MAX_SIDE_ANGLE_DEG)
    if sides is None:
        return None
    slope, first_offset, second_offset, length = sides
    handle_flat = handle - plane.point
    handle_along, handle_across = float(handle_flat @ along), float(handle_flat @ across)
    first, second = first_offset + slope * handle_along, second_offset + slope * handle_along
    side_width = abs(second - first)
    if abs(handle_across - (first + second) / 2) < MIN_HANDLE_OFFSET * side_width:
        return None
    hinge_offset = first_offset if abs(first - handle_across) > abs(second - handle_across) else second_offset
    hinge_across = hinge_offset + slope * handle_along
    near_hinge = np.abs(flat[:, 1] - (hinge_offset + slope * flat[:, 0])) <= 0.1 * side_width
    if not near_hinge.any() or _on_image_border(pixels[near_hinge], mask.shape).mean() > MAX_BORDER_FRACTION:
        return None
    origin = plane.point + handle_along * along + hinge_across * across
    return HingeLine(origin=origin, normal=plane.normal, width_m=side_width, length_m=length)
