"""Lifting the interaction pixel to 3D with the depth map: the robust depth at the pixel and the approach
direction from the normal of the masked surface around it (:func:`lift_point`)."""
from __future__ import annotations

import logging
import math

import cv2
import numpy as np

from segaff_core import geometry

log = logging.getLogger(__name__)

DEPTH_WINDOW_PX = 7
"""Side of the window (depth pixels) whose median valid depth is the interaction point's depth."""

NORMAL_RADIUS_M = 0.05
"""Radius around the interaction point of the surface patch whose normal gives the approach direction."""

_NORMAL_MAX_HALF_PX = 48  # largest half-window (depth pixels) searched for the normal patch
_NORMAL_GRID = 16  # the normal patch is subsampled to about (2 * _NORMAL_GRID + 1)^2 points


def lift_point(
    u: float,
    v: float,
    mask: np.ndarray,
    depth_m: np.ndarray,
    K: np.ndarray,
    min_depth_m: float = 0.1,
    max_depth_m: float = 10.0,
) -> tuple[np.ndarray, np.ndarray]:
    """``point_3d`` and ``approach`` (3,) of pixel ``(u, v)`` of an image of ``mask``'s size with intrinsics K.

    The depth and the normal's surface patch are read at the depth map's resolution (an integer scale of
    the mask's), with the pixel, the mask and K scaled to it. Both are NaN when no valid depth is found
    at the pixel or in the mask.
    """
    height, width = mask.shape
    depth_height, depth_width = depth_m.shape
    sx, sy = depth_width / width, depth_height / height
    mask_depth, K_depth = at_depth_resolution(mask, depth_m.shape, K)
    u_depth, v_depth = (u + 0.5) * sx - 0.5, (v + 0.5) * sy - 0.5
    z = geometry.robust_depth_at(
        depth_m,
        u_depth,
        v_depth,
        mask_depth if mask_depth.any() else None,
        window=DEPTH_WINDOW_PX,
        min_depth=min_depth_m,
        max_depth=max_depth_m,
    )
    if z is None:
        return np.full(3, np.nan), np.full(3, np.nan)
    point_3d = geometry.backproject(u, v, z, K)
    return point_3d, _approach_at(point_3d, u_depth, v_depth, mask_depth, depth_m, K_depth)


def at_depth_resolution(mask: np.ndarray, depth_hw: tuple[int, int], K: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``mask`` (H, W) bool and its intrinsics K at the depth map's size ``depth_hw`` (an integer scale of it)."""
    (height, width), (depth_height, depth_width) = mask.shape, depth_hw
    K_depth = geometry.scale_intrinsics(K, depth_width / width, depth_height / height)
    if (depth_height, depth_width) == (height, width):
        return mask, K_depth
    resized = cv2.resize(mask.astype(np.uint8), (depth_width, depth_height), interpolation=cv2.INTER_NEAREST_EXACT)
    return resized.astype(bool), K_depth


def _approach_at(
    point_3d: np.ndarray, u: float, v: float, mask: np.ndarray, depth_m: np.ndarray, K: np.ndarray
) -> np.ndarray:
    """Minus the normal of the masked surface within ``NORMAL_RADIUS_M`` of ``point_3d`` (pixel ``(u, v)``).

    Falls back to the unmasked patch, then to the viewing ray, when fewer than 3 points remain.
    """
    height, width = depth_m.shape
    half = int(np.clip(math.ceil(K[0, 0] * NORMAL_RADIUS_M / point_3d[2]), 1, _NORMAL_MAX_HALF_PX))
    stride = max(1, half // _NORMAL_GRID)
    col, row = int(round(u)), int(round(v))
    r0, r1 = max(row - half, 0), min(row + half + 1, height)
    c0, c1 = max(col - half, 0), min(col + half + 1, width)
    patch_K = K.copy()
    patch_K[0, 2] = (K[0, 2] - c0) / stride
    patch_K[1, 2] = (K[1, 2] - r0) / stride
    patch_K[0, 0] /= stride
    patch_K[1, 1] /= stride
    patch_depth = depth_m[r0:r1:stride, c0:c1:stride]
    for patch_mask in (mask[r0:r1:stride, c0:c1:stride], None):
        points = geometry.depth_to_points(patch_depth, patch_K, patch_mask)
        points = points[np.linalg.norm(points - point_3d, axis=1) <= NORMAL_RADIUS_M]
        if len(points) >= 3:
            try:
                return geometry.approach_from_normal(geometry.estimate_normal(points))
            except ValueError:  # collinear points: no plane, try the next patch
                log.debug("degenerate surface patch at (%.1f, %.1f)", u, v)
    log.debug("no surface patch at (%.1f, %.1f): approach along the viewing ray", u, v)
    return point_3d / np.linalg.norm(point_3d)
