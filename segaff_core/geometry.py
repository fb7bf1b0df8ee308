"""Camera geometry helpers: back-projection, robust depth, normals, projection and trajectories.

Conventions: the RGB camera's optical frame (x right, y down, z forward), metres, pixel coordinates
``(u, v)`` = (column, row) with pixel centres at integer coordinates, ``K`` a 3 x 3 pinhole matrix.
Everything is plain numpy; open3d is imported only by :func:`estimate_normal`.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

_EPS = 1e-12


def check_intrinsics(K: np.ndarray) -> np.ndarray:
    """Return ``K`` as a float64 (3, 3) array; ValueError when malformed, non-finite or fx/fy <= 0."""
    K = np.asarray(K, dtype=np.float64)
    if K.shape != (3, 3):
        raise ValueError(f"intrinsics K must be 3x3, got shape {K.shape}")
    if not np.all(np.isfinite(K)):
        raise ValueError(f"intrinsics K holds non-finite values: {K.tolist()}")
    if K[0, 0] <= 0 or K[1, 1] <= 0:
        raise ValueError(f"intrinsics K needs fx > 0 and fy > 0, got fx={K[0, 0]}, fy={K[1, 1]}")
    return K


def _unit(vector: np.ndarray, name: str) -> np.ndarray:
    """Return ``vector`` (3,) normalised; ValueError when it is zero or non-finite."""
    vector = np.asarray(vector, dtype=np.float64).reshape(3)
    norm = float(np.linalg.norm(vector))
    if not np.isfinite(norm) or norm < _EPS:
        raise ValueError(f"{name} must be a finite non-zero 3-vector, got {vector.tolist()}")
    return vector / norm


def backproject(u: float, v: float, depth_m: float, K: np.ndarray) -> np.ndarray:
    """The 3D point (3,) in metres seen at pixel ``(u, v)`` with depth ``depth_m`` (along z)."""
    K = check_intrinsics(K)
    x = (u - K[0, 2]) * depth_m / K[0, 0]
    y = (v - K[1, 2]) * depth_m / K[1, 1]
    return np.array([x, y, depth_m], dtype=np.float64)


def depth_to_points(
    depth_m: np.ndarray, K: np.ndarray, mask: Optional[np.ndarray] = None
) -> np.ndarray:
    """Back-project every valid pixel (finite depth > 0, inside ``mask`` if given) -> (N, 3) metres."""
    K = check_intrinsics(K)
    depth_m = np.asarray(depth_m, dtype=np.float64)
    valid = np.isfinite(depth_m) & (depth_m > 0)
    if mask is not None:
        if mask.shape != depth_m.shape:
            raise ValueError(f"mask shape {mask.shape} differs from depth shape {depth_m.shape}")
        valid &= mask.astype(bool)
    rows, cols = np.nonzero(valid)
    z = depth_m[rows, cols]
    x = (cols - K[0, 2]) * z / K[0, 0]
    y = (rows - K[1, 2]) * z / K[1, 1]
    return np.stack([x, y, z], axis=1)


def robust_depth_at(
    depth_m: np.ndarray,
    u: float,
    v: float,
    mask: Optional[np.ndarray] = None,
    window: int = 7,
    min_depth: float = 0.1,
    max_depth: float = 10.0,
) -> Optional[float]:
    """Depth in metres at pixel ``(u, v)``, robust to holes and edges.

    The median of the valid depths (finite, within ``[min_depth, max_depth]``) in a ``window`` x
    ``window`` patch centred at the pixel (restricted to ``mask`` when given); else the median valid depth
    over the whole ``mask``; else ``None``.
    """
    depth_m = np.asarray(depth_m, dtype=np.float64)
    if depth_m.ndim != 2:
        raise ValueError(f"depth must be an (H, W) array, got shape {depth_m.shape}")
    if mask is not None and mask.shape != depth_m.shape:
        raise ValueError(f"mask shape {mask.shape} differs from depth shape {depth_m.shape}")
    with np.errstate(invalid="ignore"):
        valid = np.isfinite(depth_m) & (depth_m >= min_depth) & (depth_m <= max_depth)
    if mask is not None:
        valid &= mask.astype(bool)
    height, width = depth_m.shape
    col, row = int(round(u)), int(round(v))
    half = window // 2
    r0, r1 = max(row - half, 0), min(row + half + 1, height)
    c0, c1 = max(col - half, 0), min(col + half + 1, width)
    if r0 < r1 and c0 < c1:
        patch = depth_m[r0:r1, c0:c1][valid[r0:r1, c0:c1]]
        if patch.size:
            return float(np.median(patch))
    if mask is not None and valid.any():
        return float(np.median(depth_m[valid]))
    return None


def estimate_normal(points: np.ndarray, knn: int = 30) -> np.ndarray:
    """Unit surface normal (3,) of a local patch of points (N, 3), oriented towards the camera.

    open3d estimates a normal per point from its ``knn`` nearest neighbours; each is turned towards the
    camera centre and the normalised mean is returned, so ``normal . centroid < 0``.
    """
    import open3d as o3d

    points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    points = points[np.all(np.isfinite(points), axis=1)]
    if len(points) < 3:
        raise ValueError(f"estimate_normal needs at least 3 finite points, got {len(points)}")
    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points))
    cloud.estimate_normals(o3d.geometry.KDTreeSearchParamKNN(knn=min(knn, len(points))))
    cloud.orient_normals_towards_camera_location(np.zeros(3))
    normal = np.asarray(cloud.normals).mean(axis=0)
    normal = _unit(normal, "mean normal of the patch")
    if float(normal @ points.mean(axis=0)) > 0:
        normal = -normal
    return normal


def approach_from_normal(normal: np.ndarray) -> np.ndarray:
    """Approach direction (3,) unit: into the surface, i.e. against its camera-facing normal."""
    return -_unit(normal, "normal")


def project(points: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Pixel coordinates (N, 2) ``(u, v)`` of points (N, 3); NaN rows for points with z <= 0."""
    K = check_intrinsics(K)
    points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    z = points[:, 2]
    in_front = z > 0
    safe_z = np.where(in_front, z, 1.0)
    u = K[0, 0] * points[:, 0] / safe_z + K[0, 2]
    v = K[1, 1] * points[:, 1] / safe_z + K[1, 2]
    pixels = np.stack([u, v], axis=1)
    pixels[~in_front] = np.nan
    return pixels


def rotation_from_z(z_axis: np.ndarray) -> np.ndarray:
    """A right-handed rotation matrix (3, 3) whose third column (+z) is ``z_axis`` normalised.

    The x column is the camera's x axis made orthogonal to z (the camera's y axis when z is nearly
    parallel to x), so the result is deterministic.
    """
    z = _unit(z_axis, "z_axis")
    reference = np.array([1.0, 0.0, 0.0]) if abs(z[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    x = _unit(reference - (reference @ z) * z, "x axis")
    y = np.cross(z, x)
    return np.stack([x, y, z], axis=1)


def quaternion_from_matrix(rotation: np.ndarray) -> np.ndarray:
    """Unit quaternion ``(x, y, z, w)`` with ``w >= 0`` of a rotation matrix (3, 3)."""
    R = np.asarray(rotation, dtype=np.float64)
    if R.shape != (3, 3):
        raise ValueError(f"rotation must be 3x3, got shape {R.shape}")
    # Largest of the four squared components first, for numerical stability.
    trace = np.trace(R)
    candidates = [1 + 2 * R[0, 0] - trace, 1 + 2 * R[1, 1] - trace, 1 + 2 * R[2, 2] - trace, 1 + trace]
    k = int(np.argmax(candidates))
    s = 2.0 * np.sqrt(max(candidates[k], _EPS))
    if k == 0:
        q = [s / 4, (R[0, 1] + R[1, 0]) / s, (R[0, 2] + R[2, 0]) / s, (R[2, 1] - R[1, 2]) / s]
    elif k == 1:
        q = [(R[0, 1] + R[1, 0]) / s, s / 4, (R[1, 2] + R[2, 1]) / s, (R[0, 2] - R[2, 0]) / s]
    elif k == 2:
        q = [(R[0, 2] + R[2, 0]) / s, (R[1, 2] + R[2, 1]) / s, s / 4, (R[1, 0] - R[0, 1]) / s]
    else:
        q = [(R[2, 1] - R[1, 2]) / s, (R[0, 2] - R[2, 0]) / s, (R[1, 0] - R[0, 1]) / s, s / 4]
    quaternion = np.asarray(q) / np.linalg.norm(q)
    return quaternion if quaternion[3] >= 0 else -quaternion


def quaternion_from_z(z_axis: np.ndarray) -> np.ndarray:
    """Quaternion ``(x, y, z, w)`` of :func:`rotation_from_z` (e.g. +z = approach direction)."""
    return quaternion_from_matrix(rotation_from_z(z_axis))


def scale_intrinsics(K: np.ndarray, sx: float, sy: float) -> np.ndarray:
    """K (3, 3) for an image resized by ``sx`` = new_width / old_width and ``sy`` = new_height / old_height.

    fx scales with ``sx`` and fy with ``sy``; the principal point moves as pixel centres do under
    ``cv2.resize`` (``c' = (c + 0.5) * s - 0.5``), so a 3D point keeps its normalised image position.
    """
    K = check_intrinsics(K).copy()
    if not (np.isfinite(sx) and np.isfinite(sy) and sx > 0 and sy > 0):
        raise ValueError(f"scale factors must be finite and > 0, got sx={sx}, sy={sy}")
    K[0, :] *= sx
    K[1, :] *= sy
    K[0, 2] += 0.5 * sx - 0.5
    K[1, 2] += 0.5 * sy - 0.5
    return K


def resample_polyline(points: np.ndarray, n: int = 20) -> np.ndarray:
    """``n`` points (n, D) evenly spaced by arc length along a polyline (M, D), ends kept."""
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or len(points) == 0:
        raise ValueError(f"polyline must be a non-empty (M, D) array, got shape {points.shape}")
    if n < 2:
        raise ValueError(f"resample_polyline needs n >= 2, got {n}")
    segment_lengths = np.linalg.norm(np.diff(points, axis=0), axis=1)
    arc = np.concatenate([[0.0], np.cumsum(segment_lengths)])
    if arc[-1] < _EPS:
        return np.repeat(points[:1], n, axis=0)
    targets = np.linspace(0.0, arc[-1], n)
    return np.stack([np.interp(targets, arc, points[:, d]) for d in range(points.shape[1])], axis=1)


def trajectory_translation(
    start: np.ndarray, axis: np.ndarray, distance: float, n: int = 20
) -> np.ndarray:
    """``n`` points (n, 3) from ``start`` moving ``distance`` metres along the unit ``axis``."""
    direction = _unit(axis, "axis")
    steps = np.linspace(0.0, distance, n)[:, None]
    return np.asarray(start, dtype=np.float64).reshape(1, 3) + steps * direction[None, :]


def trajectory_rotation(
    start: np.ndarray, axis: np.ndarray, origin: np.ndarray, angle: float, n: int = 20
) -> np.ndarray:
    """``n`` points (n, 3) of ``start`` rotated by 0..``angle`` radians about the line (origin, axis).

    Rodrigues' formula; the rotation is right-handed about ``axis``.
    """
    k = _unit(axis, "axis")
    origin = np.asarray(origin, dtype=np.float64).reshape(3)
    offset = np.asarray(start, dtype=np.float64).reshape(3) - origin
    angles = np.linspace(0.0, angle, n)[:, None]
    cos, sin = np.cos(angles), np.sin(angles)
    rotated = (
        offset[None, :] * cos
        + np.cross(k, offset)[None, :] * sin
        + k[None, :] * (k @ offset) * (1.0 - cos)
    )
    return origin[None, :] + rotated


def opening_velocity(motion_type: int, axis: np.ndarray, start: np.ndarray, origin: np.ndarray) -> np.ndarray:
    """Direction (3,) in which the handle at ``start`` moves when the part opens positively about ``axis``:
    the axis itself (translation) or ``axis x (start - origin)`` (rotation, right-handed)."""
    axis = np.asarray(axis, np.float64)
    if int(motion_type) != 1:  # translation
        return axis
    return np.cross(axis, np.asarray(start, np.float64) - np.asarray(origin, np.float64))


def axis_in_opening_sense(
    motion_type: int, axis: np.ndarray, origin: np.ndarray, trajectory: np.ndarray
) -> np.ndarray:
    """``axis`` with the project's sign convention, read off a ground-truth ``trajectory`` (T, 3) of the
    handle: translation, the opening direction; rotation, the right-hand sense of opening (the handle's
    chord ``end - start`` has a non-negative component along ``axis x (start - origin)`` for any opening
    angle up to 180 degrees). Returned unchanged when the trajectory does not move."""
    trajectory = np.asarray(trajectory, np.float64)
    axis = np.asarray(axis, np.float64)
    chord = trajectory[-1] - trajectory[0]
    return -axis if opening_velocity(motion_type, axis, trajectory[0], origin) @ chord < 0 else axis


def pixel_to_normalised(pixel_uv: ArrayLike, size_hw: tuple[int, int]) -> np.ndarray:
    """OpenCV pixel coordinates (pixel centres at integers) -> [0, 1] (pixel centres at (i + 0.5) / size).

    The model's soft-argmax and heatmap targets use the [0, 1] convention.
    """
    return (np.asarray(pixel_uv, dtype=np.float64) + 0.5) / np.array([size_hw[1], size_hw[0]], dtype=np.float64)


def normalised_to_pixel(point_xy: ArrayLike, size_hw: tuple[int, int]) -> np.ndarray:
    """The inverse of :func:`pixel_to_normalised`."""
    return np.asarray(point_xy, dtype=np.float64) * np.array([size_hw[1], size_hw[0]], dtype=np.float64) - 0.5
