"""Hand-made cases with known answers for segaff_core.metrics."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from segaff_core.config import TestParams as EvalParams  # "Test*" would be collected by pytest
from segaff_core.data import DatasetError
from segaff_core.data.opd import load_diameters
from segaff_core.metrics import (
    MetricAccumulator,
    axis_error_deg,
    bbox_iou,
    evaluate_sample,
    mask_iou,
    origin_error_opd,
    origin_error_seed,
    write_report,
)

H, W = 10, 10
Z = np.array([0.0, 0.0, 1.0])


def square(r0: int, r1: int, c0: int, c1: int, value: float = 1.0) -> np.ndarray:
    mask = np.zeros((H, W))
    mask[r0:r1, c0:c1] = value
    return mask


GT_MASK = square(2, 6, 2, 6)


def tilted(degrees: float) -> np.ndarray:
    """A unit axis ``degrees`` away from +z."""
    angle = math.radians(degrees)
    return np.array([math.sin(angle), 0.0, math.cos(angle)])


def sample(**overrides: object) -> dict:
    """Keyword arguments of a perfect translation sample, with ``overrides`` applied."""
    values = dict(
        pred_mask=0.9 * GT_MASK,
        gt_mask=GT_MASK,
        pred_motion_type=0,
        gt_motion_type=0,
        pred_axis=Z,
        gt_axis=Z,
        pred_point=np.array([0.4, 0.4]),
        gt_point=np.array([0.4, 0.4]),
        pred_origin=np.zeros(3),
        gt_origin=np.zeros(3),
        diameter=1.0,
    )
    values.update(overrides)
    return values


def accumulate(*samples: dict, params: EvalParams | None = None) -> dict[str, float]:
    accumulator = MetricAccumulator(params or EvalParams())
    for values in samples:
        accumulator.update(**{name: np.asarray(v)[None] for name, v in values.items()})
    return accumulator.compute()


def test_iou_and_bbox_iou_known_values() -> None:
    a, b = square(0, 4, 0, 4) > 0, square(2, 6, 2, 6) > 0
    assert mask_iou(a, b) == pytest.approx(4 / 28)
    assert bbox_iou(a, b) == pytest.approx(4 / 28)
    corners = np.zeros((H, W), bool)
    corners[2, 2] = corners[5, 5] = True
    assert mask_iou(corners, b) == pytest.approx(2 / 16)
    assert bbox_iou(corners, b) == pytest.approx(1.0)
    empty = np.zeros((H, W), bool)
    assert mask_iou(empty, empty) == 1.0
    assert bbox_iou(empty, b) == 0.0


@pytest.mark.parametrize(
    ("pred", "expected"),
    [(Z, 0.0), (-Z, 0.0), (np.array([1.0, 0, 0]), 90.0), (tilted(30), 30.0), (tilted(150), 30.0),
     (3 * tilted(-20), 20.0), (np.zeros(3), 90.0)],
)
def test_axis_error_is_sign_invariant(pred: np.ndarray, expected: float) -> None:
    assert axis_error_deg(pred, Z) == pytest.approx(expected, abs=1e-6)


def test_origin_errors_known_values() -> None:
    gt_origin = np.array([1.0, 2.0, 3.0])
    on_line_far = gt_origin + 0.8 * Z
    assert origin_error_opd(on_line_far, gt_origin, 5 * Z, 2.0) == pytest.approx(0.0)
    assert origin_error_seed(on_line_far, gt_origin, 2.0) == pytest.approx(0.4)
    off_line = gt_origin + np.array([0.3, 0.4, 7.0])
    assert origin_error_opd(off_line, gt_origin, Z, 2.0) == pytest.approx(0.25)


def test_detected_with_30_degree_error_and_missed() -> None:
    metrics = accumulate(
        sample(pred_axis=tilted(30)),
        sample(pred_mask=square(7, 9, 7, 9, 0.9)),
    )
    assert metrics["num_samples"] == 2
    assert metrics["mIoU"] == pytest.approx(0.5)
    assert metrics["P_Det"] == pytest.approx(0.5)
    assert metrics["P_Det+M"] == pytest.approx(0.5)
    assert metrics["P_Det+MA"] == 0.0
    assert metrics["P_Det+MAO_opd"] == 0.0
    assert metrics["P_Det+MAO_seed"] == 0.0
    # Only the detected sample with the right type counts for ERR_ADir.
    assert metrics["ERR_ADir"] == pytest.approx(30.0)


def test_axis_threshold_and_flipped_axis() -> None:
    metrics = accumulate(sample(pred_axis=-tilted(9.5)), sample(pred_axis=tilted(10.5)))
    assert metrics["P_Det+MA"] == pytest.approx(0.5)
    assert metrics["ERR_ADir"] == pytest.approx(10.0)
    strict = accumulate(sample(pred_axis=-tilted(9.5)), params=EvalParams(test_motion_threshold_deg=5.0))
    assert strict["P_Det+MA"] == 0.0


def test_wrong_motion_type() -> None:
    metrics = accumulate(sample(pred_motion_type=1))
    assert metrics["P_Det"] == 1.0
    assert metrics["P_Det+M"] == 0.0
    assert math.isnan(metrics["ERR_ADir"])


def test_origin_on_axis_line_far_from_origin_passes_opd_fails_seed() -> None:
    gt_origin = np.array([0.2, 0.1, 1.5])
    metrics = accumulate(
        sample(gt_motion_type=1, pred_motion_type=1, gt_origin=gt_origin, pred_origin=gt_origin + 0.5 * Z)
    )
    assert metrics["P_Det+MA"] == 1.0
    assert metrics["P_Det+MAO_opd"] == 1.0
    assert metrics["P_Det+MAO_seed"] == 0.0
    assert metrics["mean_origin_error_opd"] == pytest.approx(0.0)
    assert metrics["mean_origin_error_seed"] == pytest.approx(0.5)


def test_origin_thresholds_and_diameter_normalisation() -> None:
    rotation = dict(gt_motion_type=1, pred_motion_type=1, diameter=2.0)
    near = sample(**rotation, pred_origin=np.array([0.1, 0.0, 0.0]))  # 0.05 of the diameter
    mid = sample(**rotation, pred_origin=np.array([0.4, 0.0, 0.0]))  # 0.2: OPD passes, seed fails
    far = sample(**rotation, pred_origin=np.array([0.0, 0.6, 0.0]))  # 0.3: both fail
    metrics = accumulate(near, mid, far)
    assert metrics["P_Det+MAO_opd"] == pytest.approx(2 / 3)
    assert metrics["P_Det+MAO_seed"] == pytest.approx(1 / 3)
    assert metrics["mean_origin_error_opd"] == pytest.approx((0.05 + 0.2 + 0.3) / 3)
    assert metrics["mean_origin_error_seed"] == pytest.approx((0.05 + 0.2 + 0.3) / 3)


def test_translation_origin_counts_as_correct() -> None:
    metrics = accumulate(sample(pred_origin=np.array([9.0, 9.0, 9.0]), diameter=0.0))
    assert metrics["P_Det+MAO_opd"] == 1.0
    assert metrics["P_Det+MAO_seed"] == 1.0
    assert math.isnan(metrics["mean_origin_error_opd"])
    assert metrics["num_rotation_without_diameter"] == 0


def test_rotation_without_diameter_counts_as_wrong_origin() -> None:
    metrics = accumulate(sample(gt_motion_type=1, pred_motion_type=1, diameter=0.0))
    assert metrics["P_Det+MA"] == 1.0
    assert metrics["P_Det+MAO_opd"] == 0.0
    assert metrics["P_Det+MAO_seed"] == 0.0
    assert metrics["num_rotation_without_diameter"] == 1
    assert math.isnan(metrics["mean_origin_error_seed"])


def test_point_error_in_pixels_and_normalised() -> None:
    gt_mask = np.zeros((10, 20))
    gt_mask[2:6, 2:6] = 1.0
    result = evaluate_sample(
        **sample(gt_mask=gt_mask, pred_mask=gt_mask, pred_point=np.array([0.5, 0.5]),
                 gt_point=np.array([0.2, 0.1])),
        params=EvalParams(),
    )
    assert result.point_error_px == pytest.approx(math.hypot(0.3 * 20, 0.4 * 10))
    assert result.point_error_norm == pytest.approx(0.5)
    metrics = accumulate(sample(pred_point=np.array([0.4, 0.5])), sample())
    assert metrics["mean_point_error_px"] == pytest.approx(0.5)
    assert metrics["mean_point_error_norm"] == pytest.approx(0.05)


def test_prediction_threshold() -> None:
    faint = sample(pred_mask=0.4 * GT_MASK)
    assert accumulate(faint)["P_Det"] == 0.0
    assert accumulate(faint, params=EvalParams(test_pred_threshold=0.3))["mIoU"] == pytest.approx(1.0)


def test_bbox_matching_detects_what_mask_matching_misses() -> None:
    corners = np.zeros((H, W))
    corners[2, 2] = corners[5, 5] = 1.0
    assert accumulate(sample(pred_mask=corners))["P_Det"] == 0.0
    bbox_metrics = accumulate(sample(pred_mask=corners), params=EvalParams(test_match_metric="bbox"))
    assert bbox_metrics["P_Det"] == 1.0
    assert bbox_metrics["mIoU"] == pytest.approx(2 / 16)
    with pytest.raises(ValueError, match="test_match_metric"):
        accumulate(sample(), params=EvalParams(test_match_metric="boxes"))  # type: ignore[arg-type]


def test_update_takes_torch_batches() -> None:
    accumulator = MetricAccumulator()
    gt = torch.tensor(np.stack([GT_MASK, GT_MASK]), dtype=torch.float32)[:, None]
    results = accumulator.update(
        pred_mask=gt * 0.8,
        gt_mask=gt,
        pred_motion_type=torch.tensor([0, 1]),
        gt_motion_type=torch.tensor([0, 0]),
        pred_axis=torch.tensor([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]], requires_grad=True),
        gt_axis=torch.tensor([[0.0, 0.0, 1.0]] * 2),
        pred_point=torch.full((2, 2), 0.5),
        gt_point=torch.full((2, 2), 0.5),
        pred_origin=torch.zeros(2, 3),
        gt_origin=torch.zeros(2, 3),
        diameter=torch.ones(2),
        sample_index=torch.tensor([7, 3]),
    )
    assert [r.sample_index for r in results] == [7, 3]
    assert [r.motion_type_correct for r in results] == [True, False]
    assert results[1].axis_error_deg == pytest.approx(90.0)
    assert accumulator.compute()["P_Det+M"] == pytest.approx(0.5)
    accumulator.reset()
    assert math.isnan(accumulator.compute()["mIoU"])


def test_update_rejects_mismatched_batch() -> None:
    values = {name: np.asarray(v)[None] for name, v in sample().items()}
    values["gt_axis"] = np.stack([Z, Z])
    with pytest.raises(ValueError, match="batch size"):
        MetricAccumulator().update(**values)
    one = {name: np.asarray(v)[None] for name, v in sample().items()}
    with pytest.raises(ValueError, match="sample_index"):
        MetricAccumulator().update(**one, sample_index=np.array([1, 2]))


def test_write_report(tmp_path: Path) -> None:
    metrics = {"P_Det": 0.5, "ERR_ADir": math.nan, "num_samples": 2.0}
    write_report(metrics, tmp_path / "out" / "metrics.json", tmp_path / "out" / "metrics.md")
    assert json.loads((tmp_path / "out" / "metrics.json").read_text()) == {
        "P_Det": 0.5, "ERR_ADir": None, "num_samples": 2.0
    }
    table = (tmp_path / "out" / "metrics.md").read_text().splitlines()
    assert table == ["| Metric | Value |", "| --- | --- |", "| P_Det | 0.5000 |", "| ERR_ADir | n/a |",
                     "| num_samples | 2 |"]


def test_diameter_loaders(tmp_path: Path) -> None:
    real_attr = tmp_path / "real-attr.json"
    real_attr.write_text(json.dumps({"0": {"diameter": 1.5, "min_bound": [0, 0, 0]}, "7": {"diagonal": 2}}))
    assert load_diameters(real_attr) == {"0": 1.5, "7": 2.0}
    obj_info = tmp_path / "obj_info.json"
    obj_info.write_text(json.dumps({"scene_1_obj_2": {"diagonal": 0.75}}))
    assert load_diameters(obj_info) == {"scene_1_obj_2": 0.75}
    obj_info.write_text(json.dumps({"scene_1_obj_2": {"size": 0.75}}))
    with pytest.raises(DatasetError, match="obj_info.json: entry 'scene_1_obj_2'"):
        load_diameters(obj_info)
    with pytest.raises(DatasetError, match="missing.json"):
        load_diameters(tmp_path / "missing.json")
