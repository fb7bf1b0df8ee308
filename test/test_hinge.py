"""Hand-made cases for the hinge line (segaff_core.hinge) and the published origin and extent: fronts drawn as
rectangular masks on a tilted depth plane, handles near one side."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from point_maps import point_logits_at
from segaff_core.geometry import backproject
from segaff_core.hinge import find_hinge_line, fit_plane
from segaff_core.inference import prediction_from_outputs
from segaff_core.motion import ROTATION_EXTENT_RAD, publish_motion

HEIGHT, WIDTH = 120, 160
K = np.array([[200.0, 0.0, 79.5], [0.0, 200.0, 59.5], [0.0, 0.0, 1.0]])
NORMAL = np.array([0.3, -0.1, -1.0]) / np.linalg.norm([0.3, -0.1, -1.0])  # a front facing the camera, turned
PLANE_OFFSET = -1.2  # NORMAL . X = PLANE_OFFSET on the front
ROWS, COLS = slice(20, 100), slice(40, 110)  # the front's mask


def _in_plane(direction: np.ndarray) -> np.ndarray:
    direction = np.asarray(direction, float) - (np.asarray(direction, float) @ NORMAL) * NORMAL
    return direction / np.linalg.norm(direction)


VERTICAL, HORIZONTAL = _in_plane([0.0, 1.0, 0.0]), _in_plane([1.0, 0.0, 0.0])


def _depth() -> np.ndarray:
    cols, rows = np.meshgrid(np.arange(WIDTH), np.arange(HEIGHT))
    rays = np.stack([(cols - K[0, 2]) / K[0, 0], (rows - K[1, 2]) / K[1, 1], np.ones_like(cols, float)], axis=-1)
    return (PLANE_OFFSET / (rays @ NORMAL)).astype(np.float32)


def _mask() -> np.ndarray:
    mask = np.zeros((HEIGHT, WIDTH), bool)
    mask[ROWS, COLS] = True
    return mask


def _on_front(u: float, v: float) -> np.ndarray:
    """The front's point seen at pixel (u, v)."""
    depth = _depth()
    return backproject(u, v, float(depth[int(v), int(u)]), K)


def _handle(u: float, v: float) -> np.ndarray:
    """A handle 3 cm in front of the front at pixel (u, v)."""
    return _on_front(u, v) + 0.03 * NORMAL


def _distance_to_line(point: np.ndarray, line_point: np.ndarray, direction: np.ndarray) -> float:
    return float(np.linalg.norm(np.cross(point - line_point, direction)))


@pytest.mark.parametrize("handle_col, hinge_col", [(COLS.stop - 6, COLS.start), (COLS.start + 6, COLS.stop - 1)])
def test_a_side_hinged_door_turns_about_the_edge_away_from_its_handle(handle_col: int, hinge_col: int) -> None:
    handle = _handle(handle_col, 60)
    hinge = find_hinge_line(_mask(), _depth(), K, handle, VERTICAL)
    assert hinge is not None
    edge = _on_front(hinge_col, 60)
    pixel_m = 1.2 / K[0, 0]  # the outline runs through the edge pixels' centres: within about a pixel
    assert _distance_to_line(hinge.origin, edge, VERTICAL) < 2 * pixel_m
    assert abs((hinge.origin - edge) @ NORMAL) < 1e-3  # in the front's plane
    assert abs((hinge.origin - handle) @ VERTICAL) < 1e-6  # level with the handle along the axis
    np.testing.assert_allclose(hinge.normal, NORMAL, atol=1e-3)
    assert hinge.width_m == pytest.approx(np.linalg.norm(_on_front(COLS.stop - 1, 60) - _on_front(COLS.start, 60)),
                                          rel=0.05)


def test_a_flap_hinged_at_the_bottom_turns_about_its_bottom_edge() -> None:
    handle = _handle(75, ROWS.start + 5)  # a bar near the top, as on an oven
    hinge = find_hinge_line(_mask(), _depth(), K, handle, HORIZONTAL)
    assert hinge is not None
    bottom = _on_front(75, ROWS.stop - 1)
    assert _distance_to_line(hinge.origin, bottom, HORIZONTAL) < 2 * 1.2 / K[1, 1]


def test_the_plane_fit_ignores_the_handle_and_stray_points() -> None:
    rng = np.random.default_rng(0)
    front = np.stack([_on_front(u, v) for u, v in rng.integers([40, 20], [110, 100], (400, 2))])
    strays = front[:60] + 0.04 * NORMAL  # a handle standing off the front, 15% of the points
    plane = fit_plane(np.concatenate([front, strays]))
    assert plane is not None and plane.inlier_fraction == pytest.approx(400 / 460)
    np.testing.assert_allclose(plane.normal, NORMAL, atol=1e-5)  # the depth is float32
    assert plane.normal @ plane.point == pytest.approx(PLANE_OFFSET, abs=1e-5)


@pytest.mark.parametrize("case", ["no depth", "sparse depth", "not a rectangle", "handle in the middle",
                                  "hinge at the image border", "axis off the front", "two planes"])
def test_where_mask_and_depth_do_not_decide_it_no_hinge_is_found(case: str) -> None:
    mask, depth, axis, handle = _mask(), _depth(), VERTICAL, _handle(COLS.stop - 6, 60)
    if case == "no depth":
        depth[:] = 0.0
    elif case == "sparse depth":
        depth[np.random.default_rng(0).random(depth.shape) > 0.2] = 0.0  # 20% valid
    elif case == "not a rectangle":
        rows, cols = np.mgrid[:HEIGHT, :WIDTH]
        mask = (rows - 60) ** 2 / 40**2 + (cols - 75) ** 2 / 35**2 + 0.9 * (cols > 75) * (rows < 60) <= 1.0
        mask &= ~((rows < 60) & (cols > 75))  # a half-disc and a quarter: no straight edge along the axis
    elif case == "handle in the middle":
        handle = _handle(75, 60)
    elif case == "hinge at the image border":
        mask[:, :] = False
        mask[ROWS, 0:70] = True
        handle = _handle(64, 60)
    elif case == "axis off the front":
        axis = NORMAL
    else:
        depth[:, :75] += 0.3  # the left half 30 cm further: no single front
    assert find_hinge_line(mask, depth, K, handle, axis) is None


def _outputs(handle_px: tuple[float, float], axis: np.ndarray, origin_offset: np.ndarray,
             learned_end: np.ndarray) -> dict[str, torch.Tensor]:
    """Network outputs for the front's mask, a rotation, the point at ``handle_px`` and a straight learned path."""
    logits = torch.full((1, 1, HEIGHT // 4, WIDTH // 4), -8.0)
    logits[..., ROWS.start // 4 : ROWS.stop // 4, COLS.start // 4 : COLS.stop // 4] = 8.0
    u, v = handle_px
    return {
        "mask_logits": logits,
        "point_xy": torch.tensor([[(u + 0.5) / WIDTH, (v + 0.5) / HEIGHT]]),
        "point_logits": point_logits_at(u, v, (HEIGHT, WIDTH)),
        "axis": torch.tensor([axis], dtype=torch.float32),
        "motion_type_logits": torch.tensor([[0.0, 3.0]]),
        "origin_offset": torch.tensor([origin_offset], dtype=torch.float32),
        "trajectory": torch.tensor(np.linspace(0.0, 1.0, 20)[:, None] * learned_end, dtype=torch.float32)[None],
    }


def test_the_published_origin_is_on_the_hinge_line_and_the_model_s_is_kept() -> None:
    learned_offset = np.array([-0.05, 0.0, 0.0])  # the model's origin 5 cm from the handle, near it
    outputs = _outputs((COLS.stop - 6, 60), VERTICAL, learned_offset, 0.01 * NORMAL)
    result = prediction_from_outputs(outputs, (HEIGHT, WIDTH), _depth(), K)
    np.testing.assert_allclose(result.learned_origin, result.point_3d + learned_offset, atol=1e-6)
    edge = _on_front(COLS.start, 60)
    assert _distance_to_line(result.origin, edge, VERTICAL) < 0.015  # the mask upsampled from H/4: a pixel or two
    # the published arc turns about the hinge line, opens toward the camera, by at least 20 degrees
    radii = np.linalg.norm(np.cross(result.trajectory - result.origin, result.axis), axis=1)
    np.testing.assert_allclose(radii, radii[0], atol=1e-9)
    assert radii[0] > 0.3
    assert (result.trajectory[1] - result.trajectory[0]) @ result.approach < 0
    assert result.opening_extent >= math.radians(20.0)
    off = prediction_from_outputs(outputs, (HEIGHT, WIDTH), _depth(), K, hinge_origin=False)
    np.testing.assert_allclose(off.origin, off.learned_origin)
    np.testing.assert_allclose(off.origin, off.point_3d + learned_offset, atol=1e-6)


def test_without_depth_the_model_s_origin_is_published() -> None:
    learned_offset = np.array([-0.05, 0.0, 0.0])
    outputs = _outputs((COLS.stop - 6, 60), VERTICAL, learned_offset, 0.01 * NORMAL)
    depth = _depth()
    depth[np.random.default_rng(1).random(depth.shape) > 0.1] = 0.0  # 10% valid depth: too little for a plane
    result = prediction_from_outputs(outputs, (HEIGHT, WIDTH), depth, K)
    np.testing.assert_allclose(result.origin, result.learned_origin)
    np.testing.assert_allclose(result.origin, result.point_3d + learned_offset, atol=1e-6)


def test_a_door_whose_learned_path_barely_opens_is_published_opening_a_right_angle() -> None:
    hinge_offset = np.array([-0.4, 0.0, 0.0])
    learned = np.linspace(0.0, 1.0, 20)[:, None] * [0.0, 0.0, -0.02]  # 3 degrees about the hinge 40 cm aside
    motion = publish_motion(1, [0.0, 1.0, 0.0], hinge_offset, np.array([0.0, 0.0, 1.0]), learned)
    assert motion.extent == pytest.approx(ROTATION_EXTENT_RAD[2])
    swept = math.acos(float(-hinge_offset @ (motion.relative_trajectory[-1] - hinge_offset)) / 0.4**2)
    assert math.degrees(swept) >= 20.0
    plausible = 0.4 * np.array([math.cos(1.4) - 1.0, 0.0, -math.sin(1.4)])  # the handle 80 degrees round
    again = publish_motion(1, [0.0, 1.0, 0.0], hinge_offset, np.array([0.0, 0.0, 1.0]),
                           np.linspace(0.0, 1.0, 20)[:, None] * plausible)
    assert again.extent == pytest.approx(1.4)  # 80 degrees: the learned extent is kept
