"""Fusing several frames' predictions into one (segaff_core.fusion), on constructed predictions."""
from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np
import pytest

from segaff_core.fusion import fuse_predictions
from segaff_core.geometry import trajectory_rotation, trajectory_translation
from segaff_core.inference import AffordancePrediction

HEIGHT, WIDTH = 4, 6
STEPS = np.linspace(0.0, 1.0, 20)[:, None]


def _mask(*pixels: tuple[int, int]) -> np.ndarray:
    mask = np.zeros((HEIGHT, WIDTH), dtype=bool)
    for row, col in pixels:
        mask[row, col] = True
    return mask


def _prediction(
    motion_type: str = "rotation",
    confidence: float = 0.9,
    axis: Sequence[float] = (0.0, 0.0, 1.0),
    point: Sequence[float] = (0.1, 0.2, 1.0),
    offset: Sequence[float] = (0.0, 0.3, 0.0),
    move: Sequence[float] = (0.0, 0.0, -0.2),
    approach: Sequence[float] = (0.0, 0.0, 1.0),
    mask: Optional[np.ndarray] = None,
    mask_score: float = 0.8,
    point_px: tuple[float, float] = (3.0, 2.0),
    valid_3d: bool = True,
    timings: Optional[dict[str, float]] = None,
    extent: float = 0.5,
) -> AffordancePrediction:
    """A prediction whose learned trajectory moves straight by ``move`` from the point and whose published
    one opens by ``extent`` about (origin = point + offset) or along the axis; with ``valid_3d`` False its
    3D fields are NaN, as the Predictor makes them."""
    point_3d = np.asarray(point, dtype=np.float64)
    unit_axis = np.asarray(axis, dtype=np.float64) / np.linalg.norm(axis)
    if not valid_3d:
        point_3d = np.full(3, np.nan)
        approach = (math.nan,) * 3
    origin = point_3d + (np.asarray(offset) if motion_type == "rotation" else 0.0)
    if motion_type == "rotation":
        published = trajectory_rotation(point_3d, unit_axis, origin, extent, len(STEPS))
    else:
        published = trajectory_translation(point_3d, unit_axis, extent, len(STEPS))
    return AffordancePrediction(
        mask=_mask((1, 1), (1, 2), (2, 1), (2, 2)) if mask is None else mask,
        mask_score=mask_score,
        point_px=point_px,
        point_3d=point_3d,
        approach=np.asarray(approach, dtype=np.float64),
        axis=unit_axis,
        origin=origin,
        motion_type=motion_type,
        motion_type_confidence=confidence,
        trajectory=published,
        timings={"total": 10.0} if timings is None else timings,
        valid_3d=valid_3d,
        learned_trajectory=point_3d + STEPS * np.asarray(move, dtype=np.float64),
        opening_extent=extent if valid_3d else math.nan,
    )


def test_one_prediction_fuses_to_itself() -> None:
    prediction = _prediction()
    fused = fuse_predictions([prediction])
    result, agreement = fused.prediction, fused.agreement
    np.testing.assert_array_equal(result.mask, prediction.mask)
    for name in ("point_3d", "approach", "axis", "origin", "trajectory", "learned_trajectory", "opening_extent"):
        np.testing.assert_allclose(getattr(result, name), getattr(prediction, name), atol=1e-12, err_msg=name)
    assert (result.motion_type, result.motion_type_confidence, result.mask_score, result.point_px) == (
        "rotation", 0.9, 0.8, (3.0, 2.0))
    assert result.valid_3d and result.timings == {"total": 10.0}
    assert (agreement.frames, agreement.motion_type_agreement, agreement.mask_iou) == (1, 1.0, 1.0)
    assert agreement.axis_spread_deg == pytest.approx(0.0, abs=1e-6)
    assert agreement.point_spread_m == pytest.approx(0.0, abs=1e-12)


def test_majority_motion_type_and_its_frames_only() -> None:
    rotations = [_prediction("rotation", confidence=c, axis=(0, 0, 1)) for c in (0.6, 0.7, 0.95)]
    translations = [_prediction("translation", confidence=0.99, axis=(1, 0, 0), offset=(9, 9, 9)) for _ in range(2)]
    fused = fuse_predictions([translations[0], *rotations, translations[1]])
    assert fused.prediction.motion_type == "rotation"
    assert fused.prediction.motion_type_confidence == pytest.approx((0.6 + 0.7 + 0.95) / 3)
    assert fused.agreement.motion_type_agreement == pytest.approx(3 / 5)
    np.testing.assert_allclose(fused.prediction.axis, [0.0, 0.0, 1.0], atol=1e-12)  # translations' x left out
    assert fused.agreement.axis_spread_deg == pytest.approx(0.0, abs=1e-6)
    np.testing.assert_allclose(fused.prediction.origin, [0.1, 0.5, 1.0])  # point + the rotations' offset


def test_a_tie_goes_to_the_higher_summed_confidence() -> None:
    frames = [
        _prediction("translation", confidence=0.9), _prediction("rotation", confidence=0.6),
        _prediction("translation", confidence=0.5), _prediction("rotation", confidence=0.85),
    ]
    fused = fuse_predictions(frames)  # translation 1.4 < rotation 1.45
    assert fused.prediction.motion_type == "rotation"
    assert fused.prediction.motion_type_confidence == pytest.approx(0.725)
    assert fused.agreement.motion_type_agreement == 0.5
    frames[2] = _prediction("translation", confidence=0.6)  # translation 1.5 > rotation 1.45
    assert fuse_predictions(frames).prediction.motion_type == "translation"


def test_an_even_tie_goes_to_the_first_frame_s_type() -> None:
    frames = [_prediction("translation", confidence=0.5), _prediction("rotation", confidence=0.5)]
    assert fuse_predictions(frames).prediction.motion_type == "translation"
    assert fuse_predictions(frames[::-1]).prediction.motion_type == "rotation"


def test_a_flipped_axis_does_not_cancel() -> None:
    angle = math.radians(10.0)
    # the second is (-sin, 0, cos) flipped: a plain mean would lean 19 degrees towards +x
    axes = [(math.sin(angle), 0.0, math.cos(angle)), (math.sin(angle), 0.0, -math.cos(angle)), (0.0, 0.0, 1.0)]
    fused = fuse_predictions([_prediction(axis=axis) for axis in axes])
    np.testing.assert_allclose(fused.prediction.axis, [0.0, 0.0, 1.0], atol=1e-12)
    assert np.linalg.norm(fused.prediction.axis) == pytest.approx(1.0)
    assert fused.agreement.axis_spread_deg == pytest.approx((10.0 + 10.0 + 0.0) / 3)
    # two frames exactly opposite do not cancel either: the first frame's sign
    fused = fuse_predictions([_prediction(axis=(0.0, 1.0, 0.0)), _prediction(axis=(0.0, -1.0, 0.0))])
    np.testing.assert_allclose(fused.prediction.axis, [0.0, 1.0, 0.0], atol=1e-12)
    assert fused.agreement.axis_spread_deg == pytest.approx(0.0, abs=1e-6)


def test_the_fused_axis_takes_the_sign_most_frames_give() -> None:
    axes = [(0.0, 0.0, -1.0), (0.0, 1.0, 1.0), (0.0, 0.0, -1.0)]
    fused = fuse_predictions([_prediction(axis=axis) for axis in axes])
    # sign-aligned: (0, 0, 1), (0, 0.707, 0.707), (0, 0, 1) -> mean direction, then the majority's sign (-z)
    expected = -np.array([0.0, math.sqrt(0.5), 2.0 + math.sqrt(0.5)])
    np.testing.assert_allclose(fused.prediction.axis, expected / np.linalg.norm(expected), atol=1e-12)
    spread = math.degrees(math.acos(abs(expected @ [0.0, 0.0, 1.0]) / np.linalg.norm(expected)))
    tilted = math.degrees(math.acos(abs(expected @ [0.0, math.sqrt(0.5), math.sqrt(0.5)]) / np.linalg.norm(expected)))
    assert fused.agreement.axis_spread_deg == pytest.approx((2 * spread + tilted) / 3)


def test_the_point_median_is_robust_to_an_outlier_frame() -> None:
    points = [(0.10, 0.20, 1.00), (0.12, 0.18, 1.02), (0.09, 0.21, 0.99), (0.11, 0.19, 1.01), (3.0, -2.0, 5.0)]
    fused = fuse_predictions([_prediction(point=point) for point in points])
    expected = np.array([0.11, 0.19, 1.01])  # the per-coordinate medians
    np.testing.assert_allclose(fused.prediction.point_3d, expected)
    distances = sorted(np.linalg.norm(np.asarray(points) - expected, axis=1))
    assert fused.agreement.point_spread_m == pytest.approx(distances[2])
    assert fused.agreement.point_spread_m < 0.03


def test_trajectories_and_origin_follow_the_fused_motion() -> None:
    frames = [
        _prediction(point=(0.0, 0.0, 1.0), move=(0.0, 0.0, -0.2), offset=(0.0, 0.30, 0.0), extent=0.4),
        _prediction(point=(0.2, 0.0, 1.0), move=(0.0, 0.0, -0.3), offset=(0.0, 0.32, 0.0), extent=1.2),
        _prediction(point=(0.1, 0.0, 1.1), move=(0.0, 0.1, -0.25), offset=(0.0, 0.40, 0.02), extent=0.9),
    ]
    fused = fuse_predictions(frames).prediction
    point = np.array([0.1, 0.0, 1.0])
    origin = point + [0.0, 0.32, 0.0]
    np.testing.assert_allclose(fused.point_3d, point)
    np.testing.assert_allclose(fused.origin, origin)
    assert fused.opening_extent == pytest.approx(0.9)  # the median extent
    np.testing.assert_allclose(fused.learned_trajectory, point + STEPS * [0.0, 0.0, -0.25])  # per-point medians
    # The published path is regenerated: an arc of 0.9 rad about the fused axis line through the fused origin.
    np.testing.assert_allclose(fused.trajectory, trajectory_rotation(point, fused.axis, origin, 0.9, len(STEPS)))
    radii = np.linalg.norm(np.cross(fused.trajectory - origin, fused.axis), axis=1)
    np.testing.assert_allclose(radii, radii[0])


def test_a_fused_translation_opens_along_the_fused_axis() -> None:
    frames = [_prediction("translation", axis=(0.0, 0.1 * i, -1.0), extent=0.2 + 0.05 * i) for i in range(3)]
    fused = fuse_predictions(frames).prediction
    np.testing.assert_allclose(fused.trajectory, trajectory_translation(fused.point_3d, fused.axis, 0.25, len(STEPS)))


def test_an_unknown_extent_leaves_the_hand_at_the_point() -> None:
    frames = [_prediction(extent=math.nan) for _ in range(2)]
    fused = fuse_predictions(frames).prediction
    assert math.isnan(fused.opening_extent)
    np.testing.assert_allclose(fused.trajectory, np.repeat(fused.point_3d[None], len(STEPS), axis=0))


def test_translation_origin_is_the_fused_point() -> None:
    frames = [_prediction("translation", point=(0.1 * i, 0.0, 1.0)) for i in range(3)]
    fused = fuse_predictions(frames).prediction
    np.testing.assert_allclose(fused.origin, fused.point_3d)
    np.testing.assert_allclose(fused.origin, [0.1, 0.0, 1.0])


def test_frames_without_3d_are_left_out_of_the_3d_fields() -> None:
    frames = [_prediction(point=(0.1, 0.2, 1.0)), _prediction(valid_3d=False), _prediction(point=(0.3, 0.2, 1.0))]
    fused = fuse_predictions(frames)
    assert fused.prediction.valid_3d
    np.testing.assert_allclose(fused.prediction.point_3d, [0.2, 0.2, 1.0])
    np.testing.assert_allclose(fused.prediction.approach, [0.0, 0.0, 1.0])
    assert np.all(np.isfinite(fused.prediction.trajectory))
    assert fused.agreement.point_spread_m == pytest.approx(0.1)


def test_no_frame_with_3d_gives_nan_3d_fields() -> None:
    fused = fuse_predictions([_prediction(valid_3d=False, axis=(0, 1, 0)) for _ in range(3)])
    assert not fused.prediction.valid_3d
    for name in ("point_3d", "approach", "origin", "trajectory"):
        assert np.all(np.isnan(getattr(fused.prediction, name))), name
    assert fused.prediction.trajectory.shape == (20, 3)
    np.testing.assert_allclose(fused.prediction.axis, [0.0, 1.0, 0.0])  # the axis comes from the image
    assert math.isnan(fused.agreement.point_spread_m)


def test_approach_is_a_sign_aligned_mean() -> None:
    approaches = [(0.0, 0.6, 0.8), (0.0, -0.6, 0.8), (0.0, 0.0, -1.0)]
    fused = fuse_predictions([_prediction(approach=approach) for approach in approaches])
    np.testing.assert_allclose(fused.prediction.approach, [0.0, 0.0, 1.0], atol=1e-12)


def test_the_mask_is_a_per_pixel_vote() -> None:
    masks = [_mask((0, 0), (0, 1), (0, 2)), _mask((0, 0), (0, 1), (3, 5)), _mask((0, 0), (1, 1))]
    fused = fuse_predictions([_prediction(mask=mask) for mask in masks])
    np.testing.assert_array_equal(fused.prediction.mask, _mask((0, 0), (0, 1)))  # in 3 and 2 of 3 frames
    assert fused.prediction.mask.dtype == bool
    assert fused.agreement.mask_iou == pytest.approx((2 / 3 + 2 / 3 + 1 / 3) / 3)
    # with four frames, a pixel in exactly two of them (half) is out
    fused = fuse_predictions([_prediction(mask=mask) for mask in [*masks, _mask((0, 2))]])
    np.testing.assert_array_equal(fused.prediction.mask, _mask((0, 0)))


def test_empty_masks_agree() -> None:
    fused = fuse_predictions([_prediction(mask=_mask()) for _ in range(2)])
    assert not fused.prediction.mask.any()
    assert fused.agreement.mask_iou == 1.0


def test_scores_pixel_and_timings() -> None:
    frames = [
        _prediction(mask_score=0.5, point_px=(1.0, 3.0), timings={"total": 10.0, "image": 8.0}),
        _prediction(mask_score=0.7, point_px=(2.0, 1.0), timings={"total": 12.0}),
        _prediction(mask_score=0.9, point_px=(9.0, 2.0), timings={"total": 11.0, "image": 9.0}),
    ]
    fused = fuse_predictions(frames).prediction
    assert fused.mask_score == pytest.approx(0.7)
    assert fused.point_px == (2.0, 2.0)
    assert fused.timings == pytest.approx({"total": 33.0, "image": 17.0})


def test_the_inputs_are_not_modified() -> None:
    frames = [_prediction(axis=(0, 0, 1)), _prediction(axis=(0, 0, -1)), _prediction(point=(1.0, 1.0, 2.0))]
    copies = [_prediction(axis=(0, 0, 1)), _prediction(axis=(0, 0, -1)), _prediction(point=(1.0, 1.0, 2.0))]
    fuse_predictions(frames)
    for frame, copy in zip(frames, copies):
        for name in ("mask", "axis", "point_3d", "trajectory", "origin", "approach"):
            np.testing.assert_array_equal(getattr(frame, name), getattr(copy, name))


def test_errors() -> None:
    with pytest.raises(ValueError, match="at least one prediction"):
        fuse_predictions([])
    with pytest.raises(ValueError, match=r"same mask shape: prediction 0 has \(4, 6\), prediction 1 has \(5, 6\)"):
        fuse_predictions([_prediction(), _prediction(mask=np.zeros((5, 6), bool))])
    short = _prediction()
    short.trajectory = short.trajectory[:10]
    with pytest.raises(ValueError, match="same trajectory shape"):
        fuse_predictions([_prediction(), short])
