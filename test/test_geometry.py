"""Known cases for segaff_core.geometry."""
from __future__ import annotations

import numpy as np
import pytest

from segaff_core import geometry

K = np.array([[500.0, 0.0, 320.0], [0.0, 400.0, 240.0], [0.0, 0.0, 1.0]])


def test_backproject_principal_point_and_offset() -> None:
    np.testing.assert_allclose(geometry.backproject(320, 240, 2.0, K), [0.0, 0.0, 2.0])
    np.testing.assert_allclose(geometry.backproject(420, 200, 2.0, K), [0.4, -0.2, 2.0])


def test_backproject_project_round_trip() -> None:
    rng = np.random.default_rng(0)
    pixels = rng.uniform([0, 0], [640, 480], size=(10, 2))
    depths = rng.uniform(0.5, 5.0, size=10)
    points = np.stack([geometry.backproject(u, v, d, K) for (u, v), d in zip(pixels, depths)])
    np.testing.assert_allclose(geometry.project(points, K), pixels, atol=1e-9)


def test_project_behind_camera_is_nan() -> None:
    pixels = geometry.project(np.array([[0.0, 0.0, 1.0], [0.0, 0.0, -1.0]]), K)
    np.testing.assert_allclose(pixels[0], [320.0, 240.0])
    assert np.isnan(pixels[1]).all()


@pytest.mark.parametrize(
    "bad_K",
    [
        np.array([[np.nan, 0, 1], [0, 1, 1], [0, 0, 1]]),
        np.array([[1.0, 0, np.inf], [0, 1, 1], [0, 0, 1]]),
        np.array([[0.0, 0, 1], [0, 1, 1], [0, 0, 1]]),
        np.eye(2),
    ],
)
def test_bad_intrinsics_rejected(bad_K: np.ndarray) -> None:
    with pytest.raises(ValueError):
        geometry.backproject(1, 1, 1.0, bad_K)
    with pytest.raises(ValueError):
        geometry.project(np.zeros((1, 3)), bad_K)
    with pytest.raises(ValueError):
        geometry.depth_to_points(np.ones((2, 2)), bad_K)
    with pytest.raises(ValueError):
        geometry.scale_intrinsics(bad_K, 0.5, 0.5)


def test_depth_to_points_skips_invalid_and_respects_mask() -> None:
    depth = np.full((4, 5), 2.0)
    depth[0, 0], depth[1, 1], depth[2, 2] = 0.0, np.nan, np.inf
    K_small = np.array([[2.0, 0, 2.0], [0, 2.0, 1.5], [0, 0, 1]])
    points = geometry.depth_to_points(depth, K_small)
    assert points.shape == (17, 3)
    np.testing.assert_allclose(points[:, 2], 2.0)
    mask = np.zeros((4, 5), bool)
    mask[3, 4] = mask[1, 1] = True
    np.testing.assert_allclose(geometry.depth_to_points(depth, K_small, mask), [[2.0, 1.5, 2.0]])


def test_robust_depth_median_ignores_holes() -> None:
    depth = np.full((20, 20), 1.5)
    depth[8:13, 8:13] = 0.0
    depth[9, 9], depth[9, 10], depth[10, 10] = np.nan, np.inf, 50.0
    depth[12, 12] = 1.7
    assert geometry.robust_depth_at(depth, 10, 10, window=7) == pytest.approx(1.5)
    depth[4:17, 4:17] = 0.0
    depth[10, 16] = 2.0
    assert geometry.robust_depth_at(depth, 10, 10, window=7) is None
    assert geometry.robust_depth_at(depth, 10, 10, window=13) == pytest.approx(2.0)


def test_robust_depth_falls_back_to_mask_median() -> None:
    depth = np.zeros((10, 10))
    depth[:, 6:] = [[1.0, 2.0, 3.0, 3.5]] * 10
    mask = np.zeros((10, 10), bool)
    mask[:, 6:9] = True
    assert geometry.robust_depth_at(depth, 1, 1, mask=mask, window=3) == pytest.approx(2.0)
    # The window sees depth outside the mask (column 9) only: the mask's median wins.
    assert geometry.robust_depth_at(depth, 9, 5, mask=mask, window=1) == pytest.approx(2.0)
    assert geometry.robust_depth_at(np.zeros((10, 10)), 5, 5, mask=mask) is None


def test_robust_depth_window_outside_image() -> None:
    depth = np.full((5, 5), 1.0)
    assert geometry.robust_depth_at(depth, -50, -50) is None
    assert geometry.robust_depth_at(depth, 5.4, 5.4, window=3) == pytest.approx(1.0)


def _plane_points(z: float, tilt: float = 0.0) -> np.ndarray:
    xs, ys = np.meshgrid(np.linspace(-0.1, 0.1, 8), np.linspace(-0.1, 0.1, 8))
    return np.stack([xs.ravel(), ys.ravel(), z + tilt * xs.ravel()], axis=1)


def test_normal_of_plane_faces_camera() -> None:
    normal = geometry.estimate_normal(_plane_points(1.0))
    np.testing.assert_allclose(normal, [0.0, 0.0, -1.0], atol=1e-6)
    np.testing.assert_allclose(geometry.approach_from_normal(normal), [0.0, 0.0, 1.0], atol=1e-6)


def test_normal_of_tilted_plane() -> None:
    # z = 2 + x: the surface normal is +-(1, 0, -1)/sqrt(2); the camera-facing one has n.p < 0.
    points = _plane_points(2.0, tilt=1.0)
    normal = geometry.estimate_normal(points)
    np.testing.assert_allclose(normal, np.array([1.0, 0.0, -1.0]) / np.sqrt(2), atol=1e-6)
    assert normal @ points.mean(axis=0) < 0


def test_normal_needs_three_points() -> None:
    with pytest.raises(ValueError):
        geometry.estimate_normal(np.array([[0.0, 0.0, 1.0], [np.nan, 0.0, 1.0], [1.0, 0, 1]]))


@pytest.mark.parametrize("z_axis", [[0, 0, 1], [0, 0, -1], [1, 0, 0], [0.3, -0.5, 0.8], [-1, 1e-3, 0]])
def test_rotation_from_z_is_proper_and_aligned(z_axis: list[float]) -> None:
    R = geometry.rotation_from_z(np.array(z_axis, float))
    np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(R) == pytest.approx(1.0)
    np.testing.assert_allclose(R[:, 2], np.array(z_axis) / np.linalg.norm(z_axis), atol=1e-12)


def test_quaternion_known_values() -> None:
    np.testing.assert_allclose(geometry.quaternion_from_matrix(np.eye(3)), [0, 0, 0, 1])
    half = np.sqrt(0.5)
    rot_z_90 = np.array([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]])
    np.testing.assert_allclose(geometry.quaternion_from_matrix(rot_z_90), [0, 0, half, half])
    rot_x_180 = np.diag([1.0, -1, -1])
    np.testing.assert_allclose(geometry.quaternion_from_matrix(rot_x_180), [1, 0, 0, 0], atol=1e-12)


def test_quaternion_from_z_rotates_z_onto_axis() -> None:
    axis = np.array([0.2, 0.4, -0.9])
    x, y, z, w = geometry.quaternion_from_z(axis)
    # Rotate (0, 0, 1) by the quaternion: third column of its matrix.
    third_column = np.array([2 * (x * z + w * y), 2 * (y * z - w * x), 1 - 2 * (x * x + y * y)])
    np.testing.assert_allclose(third_column, axis / np.linalg.norm(axis), atol=1e-12)


def test_zero_axis_rejected() -> None:
    with pytest.raises(ValueError):
        geometry.rotation_from_z(np.zeros(3))
    with pytest.raises(ValueError):
        geometry.trajectory_translation(np.zeros(3), np.zeros(3), 1.0)


def test_scale_intrinsics() -> None:
    scaled = geometry.scale_intrinsics(K, 0.5, 0.25)
    # pixel centres move as under cv2.resize: c' = (c + 0.5) * s - 0.5
    np.testing.assert_allclose(scaled, [[250, 0, 159.75], [0, 100, 59.625], [0, 0, 1]])
    with pytest.raises(ValueError):
        geometry.scale_intrinsics(K, 0.0, 1.0)


def test_resample_polyline_even_spacing() -> None:
    polyline = np.array([[0.0, 0, 0], [1, 0, 0], [1, 2, 0]])
    resampled = geometry.resample_polyline(polyline, n=4)
    np.testing.assert_allclose(resampled, [[0, 0, 0], [1, 0, 0], [1, 1, 0], [1, 2, 0]])
    assert geometry.resample_polyline(polyline).shape == (20, 3)
    np.testing.assert_allclose(geometry.resample_polyline(np.ones((3, 3)), n=5), np.ones((5, 3)))


def test_trajectory_translation() -> None:
    path = geometry.trajectory_translation(np.array([1.0, 2, 3]), np.array([0, 0, 2.0]), 0.5, n=6)
    assert path.shape == (6, 3)
    np.testing.assert_allclose(path[0], [1, 2, 3])
    np.testing.assert_allclose(path[-1], [1, 2, 3.5])
    np.testing.assert_allclose(np.diff(path, axis=0), [[0, 0, 0.1]] * 5)


def test_trajectory_rotation_quarter_turn() -> None:
    origin = np.array([1.0, 1.0, 1.0])
    path = geometry.trajectory_rotation(origin + [1, 0, 0], np.array([0, 0, 1.0]), origin, np.pi / 2)
    assert path.shape == (20, 3)
    np.testing.assert_allclose(path[0], origin + [1, 0, 0], atol=1e-12)
    np.testing.assert_allclose(path[-1], origin + [0, 1, 0], atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(path[:, :2] - origin[:2], axis=1), 1.0)
    np.testing.assert_allclose(path[:, 2], 1.0)
