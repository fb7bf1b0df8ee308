"""Hand-made cases for the motion metrics: the axis sign convention, sign-aware axis error and flips,
trajectory endpoint error and roughness."""
from __future__ import annotations

import math

import numpy as np
import pytest

from segaff_core.geometry import axis_in_opening_sense, opening_velocity, trajectory_rotation, trajectory_translation
from segaff_core.metrics import (
    axis_flipped,
    signed_axis_error_deg,
    trajectory_endpoint_error,
    trajectory_roughness,
)

HANDLE = np.array([0.3, 0.1, 1.2])
HINGE = np.array([-0.1, 0.1, 1.2])  # a door hinged 40 cm left of its handle
UP = np.array([0.0, -1.0, 0.0])  # optical frame: y down


def test_opening_velocity_of_a_drawer_is_its_axis_and_of_a_door_the_right_handed_tangent() -> None:
    np.testing.assert_allclose(opening_velocity(0, [0, 0, -1], HANDLE, HINGE), [0, 0, -1])
    # up x (handle - hinge) = (0,-1,0) x (0.4,0,0) = (0,0,0.4): the handle starts moving along +z
    np.testing.assert_allclose(opening_velocity(1, UP, HANDLE, HINGE), [0, 0, 0.4], atol=1e-12)


@pytest.mark.parametrize("motion_type", [0, 1])
@pytest.mark.parametrize("extent", [0.05, 1.0, math.pi * 0.99])
def test_axis_in_opening_sense_follows_the_trajectory_whatever_sign_it_is_given(motion_type: int, extent: float) -> None:
    axis = np.array([0.0, 0.0, -1.0]) if motion_type == 0 else UP
    path = (trajectory_translation(HANDLE, axis, extent) if motion_type == 0
            else trajectory_rotation(HANDLE, axis, HINGE, extent))
    np.testing.assert_allclose(axis_in_opening_sense(motion_type, axis, HINGE, path), axis)
    np.testing.assert_allclose(axis_in_opening_sense(motion_type, -axis, HINGE, path), axis)


def test_axis_in_opening_sense_keeps_the_axis_of_a_trajectory_that_does_not_move() -> None:
    still = np.repeat(HANDLE[None], 20, axis=0)
    np.testing.assert_allclose(axis_in_opening_sense(1, -UP, HINGE, still), -UP)


def test_signed_axis_error_and_flip() -> None:
    assert signed_axis_error_deg([0, 0, 1], [0, 0, 1]) == pytest.approx(0.0)
    assert signed_axis_error_deg([0, 0, -1], [0, 0, 1]) == pytest.approx(180.0)
    tilted = [math.sin(math.radians(30)), 0, math.cos(math.radians(30))]
    assert signed_axis_error_deg(tilted, [0, 0, 2]) == pytest.approx(30.0)
    assert signed_axis_error_deg(-np.asarray(tilted), [0, 0, 1]) == pytest.approx(150.0)
    assert signed_axis_error_deg([0, 0, 0], [0, 0, 1]) == 90.0
    assert axis_flipped([0, 0.2, -1], [0, 0, 1]) and not axis_flipped([0, 0.9, 0.1], [0, 0, 1])


def test_endpoint_error_is_the_distance_between_the_last_points() -> None:
    gt = trajectory_translation(HANDLE, [0, 0, -1], 0.3)
    short = trajectory_translation(HANDLE, [0, 0, -1], 0.2)
    assert trajectory_endpoint_error(short, gt) == pytest.approx(0.1)
    assert trajectory_endpoint_error(gt, gt) == 0.0


def test_roughness_is_zero_on_a_line_small_on_an_arc_and_large_on_a_jagged_path() -> None:
    line = trajectory_translation(HANDLE, [0, 0, -1], 0.3)
    assert trajectory_roughness(line) == pytest.approx(0.0, abs=1e-12)
    arc = trajectory_rotation(HANDLE, UP, HINGE, math.pi / 2)
    # 19 steps of pi/38 on a 0.4 m radius: each second difference is 2 r (1 - cos(step)) = 0.4 * 2 * (1 - cos(pi/38))
    assert trajectory_roughness(arc) == pytest.approx(0.8 * (1 - math.cos(math.pi / 38)), rel=1e-9)
    jagged = line.copy()
    jagged[1::2, 0] += 0.01  # every other point 1 cm aside: second differences of 2 cm
    assert trajectory_roughness(jagged) == pytest.approx(0.02)
    assert math.isnan(trajectory_roughness(line[:2]))


def test_the_accumulator_reports_the_motion_metrics_over_samples_with_a_trajectory() -> None:
    from segaff_core.metrics import MetricAccumulator

    gt = np.stack([trajectory_translation(HANDLE, [0, 0, -1], 0.3)] * 3)
    published = gt.copy()
    published[1, -1] += [0.0, 0.0, 0.1]  # 10 cm short at its end
    learned = gt.copy()
    learned[:, 1::2, 0] += 0.01  # jagged: roughness 2 cm
    mask = np.zeros((3, 4, 4))
    mask[:, 1:3, 1:3] = 1
    accumulator = MetricAccumulator()
    accumulator.update(
        pred_mask=mask, gt_mask=mask, pred_motion_type=[0, 0, 0], gt_motion_type=[0, 0, 0],
        pred_axis=[[0, 0, -1], [0, 0, 1], [0, 0, 1]],  # the second flipped; the third has no trajectory
        gt_axis=[[0, 0, 1]] * 3,  # the ground truth's own sign is arbitrary: the trajectory sets it
        pred_point=[[0.5, 0.5]] * 3, gt_point=[[0.5, 0.5]] * 3, pred_origin=[HANDLE] * 3, gt_origin=[HANDLE] * 3,
        diameter=[1.0] * 3, pred_trajectory=published, pred_learned_trajectory=learned, gt_trajectory=gt,
        has_trajectory=[True, True, False],
    )
    metrics = accumulator.compute()
    assert metrics["ERR_ADir"] == pytest.approx(0.0)  # sign-invariant
    assert metrics["ERR_ADir_signed"] == pytest.approx(90.0)  # 0 and 180 degrees
    assert metrics["axis_flip_rate"] == pytest.approx(0.5)
    assert metrics["trajectory_endpoint_error_m"] == pytest.approx(0.05)
    assert metrics["learned_trajectory_endpoint_error_m"] == pytest.approx(0.01)  # its last point is odd: 1 cm aside
    assert metrics["learned_trajectory_roughness_m"] == pytest.approx(0.02)
    assert metrics["num_samples_with_trajectory"] == 2.0


def test_the_extent_error_compares_the_published_extent_with_the_ground_truth_path_s() -> None:
    from segaff_core.metrics import MetricAccumulator

    door = trajectory_rotation(HANDLE, UP, HINGE, math.radians(90.0))
    drawer = trajectory_translation(HANDLE, [0, 0, -1], 0.3)
    mask = np.zeros((2, 4, 4))
    mask[:, 1:3, 1:3] = 1
    accumulator = MetricAccumulator()
    accumulator.update(
        pred_mask=mask, gt_mask=mask, pred_motion_type=[1, 0], gt_motion_type=[1, 0],
        pred_axis=[UP, [0, 0, -1]], gt_axis=[-UP, [0, 0, 1]], pred_point=[[0.5, 0.5]] * 2, gt_point=[[0.5, 0.5]] * 2,
        pred_origin=[HINGE + [0.02, 0.0, 0.0], HANDLE], gt_origin=[HINGE + 0.3 * UP, HANDLE], diameter=[0.5, 0.5],
        gt_trajectory=np.stack([door, drawer]), pred_extent=[math.radians(80.0), 0.25],
    )
    metrics = accumulator.compute()
    assert metrics["median_extent_error_rotation_deg"] == pytest.approx(10.0)
    assert metrics["median_extent_error_translation_m"] == pytest.approx(0.05)
    assert metrics["median_origin_error_opd"] == pytest.approx(0.04)  # 2 cm from the hinge line, diameter 50 cm
