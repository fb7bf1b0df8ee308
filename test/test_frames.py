"""Rigid transforms, predictions in another frame, and the part's masked points (segaff_core.frames)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from segaff_core.frames import RigidTransform, masked_points, transform_prediction
from segaff_core.inference import AffordancePrediction

# 90 degrees about z, then a shift: x -> y, y -> -x.
QUARTER_TURN_Z = (0.0, 0.0, math.sin(math.pi / 4), math.cos(math.pi / 4))
SHIFT = (1.0, 2.0, 3.0)


def test_quaternion_transform_rotates_then_translates() -> None:
    transform = RigidTransform.from_quaternion(SHIFT, QUARTER_TURN_Z)
    np.testing.assert_allclose(transform.rotation, [[0, -1, 0], [1, 0, 0], [0, 0, 1]], atol=1e-12)
    np.testing.assert_allclose(transform.translation, SHIFT)
    # (1, 0, 0) -> (0, 1, 0) + shift; (0, 2, 0) -> (-2, 0, 0) + shift
    np.testing.assert_allclose(transform.apply_points([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0]]), [[1, 3, 3], [-1, 2, 3]])
    np.testing.assert_allclose(transform.apply_vectors([1.0, 0.0, 0.0]), [0.0, 1.0, 0.0], atol=1e-12)


def test_quaternion_of_a_turn_about_the_diagonal_permutes_the_axes() -> None:
    # 120 degrees about (1, 1, 1) / sqrt(3): x -> y, y -> z, z -> x.
    transform = RigidTransform.from_quaternion((0.0, 0.0, -1.0), (0.5, 0.5, 0.5, 0.5))
    np.testing.assert_allclose(transform.apply_vectors([1.0, 2.0, 3.0]), [3.0, 1.0, 2.0], atol=1e-12)
    np.testing.assert_allclose(transform.apply_points([1.0, 2.0, 3.0]), [3.0, 1.0, 1.0], atol=1e-12)


def test_quaternion_is_normalised() -> None:
    scaled = RigidTransform.from_quaternion(SHIFT, 3.0 * np.asarray(QUARTER_TURN_Z))
    np.testing.assert_allclose(scaled.rotation, RigidTransform.from_quaternion(SHIFT, QUARTER_TURN_Z).rotation)


@pytest.mark.parametrize(
    "quaternion, message",
    [
        ((0.0, 0.0, 0.0, 0.0), "zero length"),
        ((0.0, 0.0, math.nan, 1.0), "four finite numbers"),
        ((0.0, 0.0, 1.0), "four finite numbers"),
    ],
)
def test_bad_quaternions_are_refused(quaternion: tuple[float, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RigidTransform.from_quaternion(SHIFT, quaternion)


@pytest.mark.parametrize(
    "rotation, translation, message",
    [
        (np.diag([1.0, 1.0, -1.0]), np.zeros(3), "proper rotation"),  # a reflection
        (2.0 * np.eye(3), np.zeros(3), "proper rotation"),
        (np.eye(2), np.zeros(3), "3x3"),
        (np.eye(3), np.zeros(2), "translation"),
        (np.eye(3), np.array([0.0, math.inf, 0.0]), "translation"),
    ],
)
def test_bad_transforms_are_refused(rotation: np.ndarray, translation: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RigidTransform(rotation, translation)


def test_transform_arrays_are_read_only_copies() -> None:
    rotation = np.eye(3)
    transform = RigidTransform(rotation, np.zeros(3))
    rotation[0, 0] = 5.0
    assert transform.rotation[0, 0] == 1.0
    with pytest.raises(ValueError):
        transform.translation[0] = 1.0


def test_identity_and_shapes() -> None:
    identity = RigidTransform.identity()
    points = np.arange(24, dtype=np.float64).reshape(2, 4, 3)
    np.testing.assert_array_equal(identity.apply_points(points), points)
    assert RigidTransform.from_quaternion(SHIFT, QUARTER_TURN_Z).apply_points(points).shape == (2, 4, 3)
    with pytest.raises(ValueError, match=r"\(\.\.\., 3\)"):
        identity.apply_points(np.zeros((4, 2)))


def _prediction() -> AffordancePrediction:
    mask = np.zeros((6, 8), dtype=bool)
    mask[2:4, 3:6] = True
    point = np.array([0.1, -0.2, 1.5])
    return AffordancePrediction(
        mask=mask,
        mask_score=0.8,
        point_px=(4.0, 2.5),
        point_3d=point,
        approach=np.array([0.0, 0.0, 1.0]),
        axis=np.array([1.0, 0.0, 0.0]),
        origin=point + np.array([0.0, 0.3, 0.0]),
        motion_type="rotation",
        motion_type_confidence=0.7,
        trajectory=point + np.outer(np.linspace(0.0, 1.0, 20), [0.0, 0.0, -0.2]),
        timings={"total": 12.0},
        learned_trajectory=point + np.outer(np.linspace(0.0, 1.0, 20), [0.0, 0.1, 0.0]),
    )


def test_transform_prediction_field_by_field() -> None:
    prediction = _prediction()
    before = _prediction()
    moved = transform_prediction(prediction, RigidTransform.from_quaternion(SHIFT, QUARTER_TURN_Z))
    # points: (x, y, z) -> (-y, x, z) + shift; vectors: (x, y, z) -> (-y, x, z)
    np.testing.assert_allclose(moved.point_3d, [0.2 + 1.0, 0.1 + 2.0, 1.5 + 3.0])
    np.testing.assert_allclose(moved.origin, [-0.1 + 1.0, 0.1 + 2.0, 1.5 + 3.0])
    np.testing.assert_allclose(moved.trajectory[0], moved.point_3d)
    np.testing.assert_allclose(moved.trajectory[-1], [1.2, 2.1, 1.3 + 3.0])
    np.testing.assert_allclose(moved.learned_trajectory[0], moved.point_3d)
    np.testing.assert_allclose(moved.learned_trajectory[-1], [0.2 - 0.1 + 1.0, 0.1 + 2.0, 1.5 + 3.0])
    np.testing.assert_allclose(moved.approach, [0.0, 0.0, 1.0], atol=1e-12)
    np.testing.assert_allclose(moved.axis, [0.0, 1.0, 0.0], atol=1e-12)
    np.testing.assert_array_equal(moved.mask, before.mask)
    assert moved.point_px == before.point_px
    assert (moved.mask_score, moved.motion_type, moved.motion_type_confidence, moved.valid_3d) == (
        0.8, "rotation", 0.7, True)
    assert moved.timings == {"total": 12.0}
    # the input is left as it was
    np.testing.assert_array_equal(prediction.point_3d, before.point_3d)
    np.testing.assert_array_equal(prediction.trajectory, before.trajectory)
    np.testing.assert_array_equal(prediction.axis, before.axis)


def test_transform_prediction_keeps_nan_fields_nan() -> None:
    prediction = _prediction()
    prediction.point_3d = np.full(3, np.nan)
    prediction.origin = np.full(3, np.nan)
    prediction.approach = np.full(3, np.nan)
    prediction.trajectory = np.full((20, 3), np.nan)
    prediction.valid_3d = False
    moved = transform_prediction(prediction, RigidTransform.from_quaternion(SHIFT, QUARTER_TURN_Z))
    for name in ("point_3d", "origin", "approach", "trajectory"):
        assert np.all(np.isnan(getattr(moved, name))), name
    np.testing.assert_allclose(moved.axis, [0.0, 1.0, 0.0], atol=1e-12)  # the axis is kept, and turned
    assert moved.valid_3d is False


# ---- masked_points ---------------------------------------------------------------------------------

WIDTH, HEIGHT = 16, 12
K = np.array([[20.0, 0.0, 7.5], [0.0, 22.0, 5.5], [0.0, 0.0, 1.0]])


def _scene() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A mask (rows 2..8, columns 3..12), a colour per pixel, a plane 2 m in front of the camera."""
    mask = np.zeros((HEIGHT, WIDTH), dtype=bool)
    mask[2:9, 3:13] = True
    v, u = np.mgrid[0:HEIGHT, 0:WIDTH]
    rgb = np.stack([u * 10, v * 20, np.full_like(u, 7)], axis=-1).astype(np.uint8)
    return mask, rgb, np.full((HEIGHT, WIDTH), 2.0, dtype=np.float32)


def _expected(pixels: list[tuple[int, int]], depths: list[float]) -> np.ndarray:
    return np.array([
        [(u - K[0, 2]) * z / K[0, 0], (v - K[1, 2]) * z / K[1, 1], z] for (u, v), z in zip(pixels, depths)
    ])


def test_masked_points_of_a_plane() -> None:
    mask, rgb, depth = _scene()
    xyz, colors = masked_points(mask, depth, K, rgb, stride=1, min_depth_m=0.1, max_depth_m=10.0)
    assert xyz.dtype == np.float32 and colors.dtype == np.uint8
    assert xyz.shape == colors.shape == (70, 3)  # 7 rows x 10 columns
    pixels = [(u, v) for v in range(2, 9) for u in range(3, 13)]  # row-major
    np.testing.assert_allclose(xyz, _expected(pixels, [2.0] * 70), rtol=1e-6)
    np.testing.assert_array_equal(colors, [[u * 10, v * 20, 7] for u, v in pixels])


def test_masked_points_take_every_stride_th_row_and_column() -> None:
    mask, rgb, depth = _scene()
    xyz, colors = masked_points(mask, depth, K, rgb, stride=3, min_depth_m=0.1, max_depth_m=10.0)
    pixels = [(u, v) for v in (3, 6) for u in (3, 6, 9, 12)]  # multiples of 3 inside rows 2..8, columns 3..12
    assert len(xyz) == len(pixels)
    np.testing.assert_allclose(xyz, _expected(pixels, [2.0] * len(pixels)), rtol=1e-6)
    np.testing.assert_array_equal(colors, [[u * 10, v * 20, 7] for u, v in pixels])


def test_masked_points_leave_out_depth_outside_the_range() -> None:
    mask, rgb, depth = _scene()
    depth[2, 3] = 0.05  # too near
    depth[2, 4] = 12.0  # too far
    depth[2, 5] = np.nan
    depth[2, 6] = 0.0  # no depth
    depth[2, 7] = 0.3  # kept, at its own depth
    xyz, colors = masked_points(mask, depth, K, rgb, stride=1, min_depth_m=0.1, max_depth_m=10.0)
    assert len(xyz) == 70 - 4
    np.testing.assert_allclose(xyz[0], _expected([(7, 2)], [0.3])[0], rtol=1e-6)
    np.testing.assert_array_equal(colors[0], [70, 40, 7])
    assert np.all(np.isfinite(xyz))
    none, no_colors = masked_points(mask, depth, K, rgb, stride=1, min_depth_m=5.0, max_depth_m=10.0)
    assert none.shape == no_colors.shape == (0, 3)


@pytest.mark.parametrize("depth_scale", [0.5, 2.0])
def test_masked_points_read_a_scaled_depth_under_each_pixel(depth_scale: float) -> None:
    mask, rgb, _ = _scene()
    depth_height, depth_width = int(HEIGHT * depth_scale), int(WIDTH * depth_scale)
    rows, cols = np.mgrid[0:depth_height, 0:depth_width]
    depth = (1.0 + 0.1 * rows + 0.01 * cols).astype(np.float32)  # tells which depth pixel was read
    xyz, _ = masked_points(mask, depth, K, rgb, stride=2, min_depth_m=0.1, max_depth_m=10.0)
    pixels = [(u, v) for v in (2, 4, 6, 8) for u in (4, 6, 8, 10, 12)]
    # the depth pixel under the pixel centre: floor((u + 0.5) * scale)
    depths = [float(depth[int((v + 0.5) * depth_scale), int((u + 0.5) * depth_scale)]) for u, v in pixels]
    np.testing.assert_allclose(xyz, _expected(pixels, depths), rtol=1e-6)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"depth_m": np.ones((5, 7), np.float32)}, "integer scale"),
        ({"stride": 0}, "stride"),
        ({"stride": 1.5}, "stride"),
        ({"min_depth_m": 3.0, "max_depth_m": 2.0}, "min_depth_m < max_depth_m"),
        ({"rgb": np.zeros((HEIGHT, WIDTH, 3), np.float32)}, "rgb must be a uint8"),
        ({"rgb": np.zeros((HEIGHT, WIDTH + 1, 3), np.uint8)}, "rgb must be a uint8"),
        ({"mask": np.ones(5, bool)}, "mask must be an"),
        ({"K": np.zeros((3, 3))}, "fx > 0"),
    ],
)
def test_masked_points_refuse_bad_input(change: dict, message: str) -> None:
    mask, rgb, depth = _scene()
    arguments = dict(mask=mask, depth_m=depth, K=K, rgb=rgb, stride=1, min_depth_m=0.1, max_depth_m=10.0)
    with pytest.raises(ValueError, match=message):
        masked_points(**{**arguments, **change})
