"""Expressing SegAffordance outputs in another frame, and the part's points in the camera frame.

:class:`RigidTransform` maps coordinates of a source frame (the RGB camera's optical frame) into a target
frame: ``p_target = rotation @ p_source + translation``, as a tf2 ``target <- source`` transform does.
:func:`transform_prediction` applies one to every 3D field of a prediction; :func:`masked_points` lifts the
part's mask to a coloured point set. Plain numpy, no ROS; importing it does not import torch.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from segaff_core import geometry

if TYPE_CHECKING:  # torch stays out of this module's import (segaff_ros.conversions imports it)
    from segaff_core.inference import AffordancePrediction

_ROTATION_TOLERANCE = 1e-6  # max deviation of R @ R.T from I and of det(R) from 1
_MIN_QUATERNION_NORM = 1e-9


@dataclass(frozen=True, eq=False)
class RigidTransform:
    """A proper rigid transform ``p -> rotation @ p + translation`` (metres); arrays are read-only float64."""

    rotation: np.ndarray  # (3, 3) proper rotation
    translation: np.ndarray  # (3,)

    def __post_init__(self) -> None:
        rotation = np.array(self.rotation, dtype=np.float64)
        translation = np.array(self.translation, dtype=np.float64)
        if rotation.shape != (3, 3) or not np.all(np.isfinite(rotation)):
            raise ValueError(f"rotation must be a finite 3x3 matrix, got {rotation.tolist()}")
        if translation.shape != (3,) or not np.all(np.isfinite(translation)):
            raise ValueError(f"translation must be a finite 3-vector, got {translation.tolist()}")
        if (
            not np.allclose(rotation @ rotation.T, np.eye(3), atol=_ROTATION_TOLERANCE)
            or abs(np.linalg.det(rotation) - 1.0) > _ROTATION_TOLERANCE
        ):
            raise ValueError(
                f"rotation must be a proper rotation (orthonormal, determinant +1), got {rotation.tolist()}"
            )
        rotation.flags.writeable = False
        translation.flags.writeable = False
        object.__setattr__(self, "rotation", rotation)
        object.__setattr__(self, "translation", translation)

    @classmethod
    def from_quaternion(cls, translation: np.ndarray, quaternion_xyzw: np.ndarray) -> "RigidTransform":
        """The transform of a translation (3,) and a rotation quaternion ``(x, y, z, w)``, normalised here;
        ValueError when the quaternion is not four finite numbers or is (near) zero."""
        q = np.asarray(quaternion_xyzw, dtype=np.float64)
        if q.shape != (4,) or not np.all(np.isfinite(q)):
            raise ValueError(f"quaternion must be four finite numbers (x, y, z, w), got {np.ravel(q).tolist()}")
        norm = float(np.linalg.norm(q))
        if norm < _MIN_QUATERNION_NORM:
            raise ValueError(f"quaternion {q.tolist()} has (near) zero length: it is not a rotation")
        x, y, z, w = q / norm
        rotation = np.array([
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ])
        return cls(rotation, translation)

    @classmethod
    def identity(cls) -> "RigidTransform":
        """The transform that changes nothing."""
        return cls(np.eye(3), np.zeros(3))

    def apply_points(self, points: np.ndarray) -> np.ndarray:
        """Positions (..., 3) -> the same positions in the target frame (float64; NaN stays NaN)."""
        points = _vectors(points, "points")
        return points @ self.rotation.T + self.translation

    def apply_vectors(self, vectors: np.ndarray) -> np.ndarray:
        """Directions (..., 3) -> the same directions in the target frame: rotated only (NaN stays NaN)."""
        return _vectors(vectors, "vectors") @ self.rotation.T


def _vectors(array: np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(array, dtype=np.float64)
    if array.ndim == 0 or array.shape[-1] != 3:
        raise ValueError(f"{name} must have shape (..., 3), got {array.shape}")
    return array


def transform_prediction(prediction: AffordancePrediction, transform: RigidTransform) -> AffordancePrediction:
    """A copy of ``prediction`` with its 3D fields in ``transform``'s target frame.

    ``point_3d``, both origins and both trajectories move as points; ``approach`` and ``axis`` rotate as
    directions. The mask, ``point_px``, scores, motion type, ``valid_3d`` and timings (copied) are
    unchanged; NaN fields stay NaN.
    """
    return dataclasses.replace(
        prediction,
        point_3d=transform.apply_points(prediction.point_3d),
        origin=transform.apply_points(prediction.origin),
        trajectory=transform.apply_points(prediction.trajectory),
        learned_trajectory=(None if prediction.learned_trajectory is None
                            else transform.apply_points(prediction.learned_trajectory)),
        learned_origin=None if prediction.learned_origin is None else transform.apply_points(prediction.learned_origin),
        approach=transform.apply_vectors(prediction.approach),
        axis=transform.apply_vectors(prediction.axis),
        timings=dict(prediction.timings),
    )


def masked_points(
    mask: np.ndarray,
    depth_m: np.ndarray,
    K: np.ndarray,
    rgb: np.ndarray,
    stride: int,
    min_depth_m: float,
    max_depth_m: float,
) -> tuple[np.ndarray, np.ndarray]:
    """The part's points: every ``stride``-th pixel (rows and columns, from 0) of ``mask`` whose depth is
    finite and within ``[min_depth_m, max_depth_m]``.

    ``mask`` (H, W) and ``rgb`` (H, W, 3) uint8 share the size of which ``K`` is the intrinsics;
    ``depth_m`` (metres) may be an integer scale of it, and is then read at the depth pixel under each
    pixel's centre (OpenCV's ``INTER_NEAREST_EXACT`` choice, as :func:`~segaff_core.inference.lift_point`
    scales the mask). Returns ``xyz`` (N, 3) float32 in the camera optical frame (the pixel back-projected
    with K) and ``colors`` (N, 3) uint8 RGB, in row-major pixel order.
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must be an (H, W) array, got shape {mask.shape}")
    height, width = mask.shape
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or rgb.shape != (height, width, 3):
        raise ValueError(f"rgb must be a uint8 (H, W, 3) array of the mask's size {width}x{height}, "
                         f"got {rgb.dtype} {rgb.shape}")
    depth_m = np.asarray(depth_m)
    if depth_m.ndim != 2:
        raise ValueError(f"depth must be an (H, W) array in metres, got shape {depth_m.shape}")
    from segaff_core.inference import check_depth_size  # imports torch: only when points are wanted

    check_depth_size((height, width), depth_m.shape)
    K = geometry.check_intrinsics(K)
    if isinstance(stride, bool) or not isinstance(stride, (int, np.integer)) or stride < 1:
        raise ValueError(f"stride must be an integer >= 1, got {stride!r}")
    if not 0.0 <= min_depth_m < max_depth_m:
        raise ValueError(f"need 0 <= min_depth_m < max_depth_m, got {min_depth_m}, {max_depth_m}")
    stride = int(stride)
    rows, cols = np.arange(0, height, stride), np.arange(0, width, stride)
    depth_rows = ((rows + 0.5) * depth_m.shape[0] / height).astype(np.intp)
    depth_cols = ((cols + 0.5) * depth_m.shape[1] / width).astype(np.intp)
    depth_grid = depth_m[np.ix_(depth_rows, depth_cols)].astype(np.float64)
    with np.errstate(invalid="ignore"):
        keep = mask[np.ix_(rows, cols)].astype(bool) & (depth_grid >= min_depth_m) & (depth_grid <= max_depth_m)
    # Grid pixel (i, j) is image pixel (i * stride, j * stride): the same camera with K divided by stride.
    K_grid = K.copy()
    K_grid[:2] /= stride
    xyz = geometry.depth_to_points(depth_grid, K_grid, keep).astype(np.float32)
    colors = rgb[np.ix_(rows, cols)][keep]
    return xyz, colors
