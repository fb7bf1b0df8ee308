"""Evaluation metrics of the seed and of OPD: per-sample matching, aggregates and reports.

Every sample holds one ground-truth part and one prediction. A sample is *detected* when its mask IoU
(or box IoU, ``test_match_metric == "bbox"``) exceeds ``test_iou_threshold``. Axis errors are
sign-invariant, in degrees. The origin is judged only for rotations (a translation's origin counts as
correct) by two named criteria, both normalised by the object's diameter:

- ``opd``: distance from the predicted origin to the ground-truth axis *line* (OPD), threshold
  ``opd_origin_threshold``;
- ``seed``: distance from the predicted origin to the ground-truth origin point (the seed),
  threshold ``seed_origin_threshold``.

Rates (``P_*``) are fractions of all samples.
Where the ground truth has a trajectory, its sense of opening gives the axis a sign (translation: the opening
direction; rotation: the right-hand sense of opening): ``ERR_ADir_signed`` and ``axis_flip_rate`` judge the
predicted axis's sign as well, and both predicted trajectories (published: generated from the motion;
learned: the trajectory head's) are scored by endpoint error and roughness, and the published opening extent
against the ground truth's (its trajectory's, :func:`segaff_core.motion.trajectory_extent`). ``ERR_ADir``, the
origin errors (mean, and median) and the extent errors (median: rotations in degrees, translations in metres)
are over the detected samples with the right motion type (as OPD); the point error averages over all samples.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import torch

from segaff_core.config import TestParams
from segaff_core.geometry import axis_in_opening_sense
from segaff_core.motion import trajectory_extent

logger = logging.getLogger(__name__)

PathLike = Union[str, Path]
_ROTATION = 1


@dataclass(frozen=True)
class SampleResult:
    """Per-sample evaluation; origin errors are NaN for translations and unknown diameters."""

    iou: float
    bbox_iou: float
    detected: bool
    motion_type_correct: bool
    axis_error_deg: float
    axis_correct: bool
    point_error_px: float
    point_error_norm: float
    is_rotation: bool
    diameter_known: bool
    origin_error_opd: float
    origin_error_seed: float
    origin_correct_opd: bool
    origin_correct_seed: bool
    # Where the ground truth has a trajectory (NaN / False otherwise): the axis against the ground truth's
    # in the opening sense, and both predicted trajectories (absolute, metres) against the ground truth's.
    has_trajectory: bool = False
    signed_axis_error_deg: float = math.nan
    axis_flipped: bool = False
    endpoint_error_m: float = math.nan
    learned_endpoint_error_m: float = math.nan
    roughness_m: float = math.nan
    learned_roughness_m: float = math.nan
    extent_error: float = math.nan  # |published - ground-truth opening extent|: metres (translation) or radians
    sample_index: int = -1  # the sample's index in its data set (-1: not given)


def _numpy(value: Any) -> np.ndarray:
    """A numpy array from a numpy array, a number or a (possibly CUDA, grad-tracking, half-precision)
    torch tensor; bfloat16, which numpy lacks, becomes float32."""
    if hasattr(value, "detach"):
        value = value.detach()
        if value.dtype == torch.bfloat16:
            value = value.float()
        value = value.cpu().numpy()
    return np.asarray(value)


def mask_iou(pred: np.ndarray, gt: np.ndarray) -> float:
    """IoU of two boolean masks; 1.0 when both are empty."""
    union = np.logical_or(pred, gt).sum()
    return 1.0 if union == 0 else float(np.logical_and(pred, gt).sum() / union)


def _bbox(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """(row0, col0, row1, col1) half-open box around the mask's pixels; None when empty."""
    rows, cols = np.nonzero(mask)
    if rows.size == 0:
        return None
    return int(rows.min()), int(cols.min()), int(rows.max()) + 1, int(cols.max()) + 1


def bbox_iou(pred: np.ndarray, gt: np.ndarray) -> float:
    """IoU of the bounding boxes of two boolean masks; 0.0 when either is empty."""
    box_a, box_b = _bbox(pred), _bbox(gt)
    if box_a is None or box_b is None:
        return 0.0
    height = max(0, min(box_a[2], box_b[2]) - max(box_a[0], box_b[0]))
    width = max(0, min(box_a[3], box_b[3]) - max(box_a[1], box_b[1]))
    intersection = height * width
    area_a = (box_a[2] - box_a[0]) * (box_a[3] - box_a[1])
    area_b = (box_b[2] - box_b[0]) * (box_b[3] - box_b[1])
    return intersection / (area_a + area_b - intersection)


def axis_error_deg(pred_axis: np.ndarray, gt_axis: np.ndarray) -> float:
    """Angle in degrees between two axes, sign-invariant: ``min(angle, 180 - angle)``; 90 for a zero axis."""
    angle = signed_axis_error_deg(pred_axis, gt_axis)
    return min(angle, 180.0 - angle)


def signed_axis_error_deg(pred_axis: np.ndarray, gt_axis: np.ndarray) -> float:
    """Angle in degrees (0-180) between two axes, sign-aware: an axis pointing the other way is 180 off;
    90 for a zero axis."""
    pred_axis, gt_axis = np.asarray(pred_axis, np.float64), np.asarray(gt_axis, np.float64)
    norms = np.linalg.norm(pred_axis) * np.linalg.norm(gt_axis)
    if norms < 1e-12:
        return 90.0
    return math.degrees(math.acos(float(np.clip(pred_axis @ gt_axis / norms, -1.0, 1.0))))


def axis_flipped(pred_axis: np.ndarray, gt_axis: np.ndarray) -> bool:
    """Whether ``pred_axis`` points against ``gt_axis`` (more than 90 degrees apart): the flip rate's event."""
    return bool(np.asarray(pred_axis, np.float64) @ np.asarray(gt_axis, np.float64) < 0)


def trajectory_endpoint_error(pred_trajectory: np.ndarray, gt_trajectory: np.ndarray) -> float:
    """Distance (metres) between the last points of two absolute trajectories (T, 3): where the hand ends."""
    return float(np.linalg.norm(np.asarray(pred_trajectory, np.float64)[-1] - np.asarray(gt_trajectory, np.float64)[-1]))


def trajectory_roughness(trajectory: np.ndarray) -> float:
    """Mean norm (metres) of the second difference of a trajectory (T, 3): 0 for evenly spaced points on a
    line, small for a smooth arc, large for a jagged path; NaN with fewer than 3 points."""
    trajectory = np.asarray(trajectory, np.float64)
    if len(trajectory) < 3:
        return math.nan
    return float(np.linalg.norm(np.diff(trajectory, n=2, axis=0), axis=1).mean())


def origin_error_opd(
    pred_origin: np.ndarray, gt_origin: np.ndarray, gt_axis: np.ndarray, diameter: float
) -> float:
    """OPD: distance from ``pred_origin`` to the line (``gt_origin``, ``gt_axis``) / ``diameter``."""
    offset = np.asarray(pred_origin, np.float64) - np.asarray(gt_origin, np.float64)
    gt_axis = np.asarray(gt_axis, np.float64)
    return float(np.linalg.norm(np.cross(offset, gt_axis)) / np.linalg.norm(gt_axis) / diameter)


def origin_error_seed(pred_origin: np.ndarray, gt_origin: np.ndarray, diameter: float) -> float:
    """The seed's: distance from ``pred_origin`` to ``gt_origin`` / ``diameter``."""
    offset = np.asarray(pred_origin, np.float64) - np.asarray(gt_origin, np.float64)
    return float(np.linalg.norm(offset) / diameter)


def evaluate_sample(
    *,
    pred_mask: np.ndarray,
    gt_mask: np.ndarray,
    pred_motion_type: int,
    gt_motion_type: int,
    pred_axis: np.ndarray,
    gt_axis: np.ndarray,
    pred_point: np.ndarray,
    gt_point: np.ndarray,
    pred_origin: np.ndarray,
    gt_origin: np.ndarray,
    diameter: float,
    params: TestParams,
    pred_trajectory: Optional[np.ndarray] = None,
    pred_learned_trajectory: Optional[np.ndarray] = None,
    gt_trajectory: Optional[np.ndarray] = None,
    pred_extent: float = math.nan,
) -> SampleResult:
    """Evaluate one prediction against its ground truth.

    ``pred_mask`` (H, W) holds probabilities (or booleans) at the ground truth's resolution and is
    thresholded with ``> test_pred_threshold``; points are ``(x, y)`` in [0, 1]; 3D values are metres;
    ``diameter`` <= 0 or non-finite means unknown (a rotation's origin then counts as wrong). With
    ``gt_trajectory`` (T, 3) absolute, the sign-aware axis error, the flip and, given the predicted
    (published and learned) absolute trajectories, their endpoint errors and roughness are judged too, and
    with the right motion type the published ``pred_extent`` (metres or radians) against the ground truth's.
    """
    pred_mask, gt_mask = np.asarray(pred_mask), np.asarray(gt_mask)
    if pred_mask.shape != gt_mask.shape or gt_mask.ndim != 2:
        raise ValueError(f"masks must be (H, W) of one shape, got {pred_mask.shape} and {gt_mask.shape}")
    pred_binary = pred_mask.astype(np.float64) > params.test_pred_threshold
    gt_binary = gt_mask.astype(np.float64) > 0.5
    iou, box_iou = mask_iou(pred_binary, gt_binary), bbox_iou(pred_binary, gt_binary)
    if params.test_match_metric == "mask":
        detected = iou > params.test_iou_threshold
    elif params.test_match_metric == "bbox":
        detected = box_iou > params.test_iou_threshold
    else:
        raise ValueError(f"test_match_metric must be 'mask' or 'bbox', got {params.test_match_metric!r}")

    axis_error = axis_error_deg(pred_axis, gt_axis)
    height, width = gt_mask.shape
    point_offset = np.asarray(pred_point, np.float64) - np.asarray(gt_point, np.float64)
    is_rotation = int(gt_motion_type) == _ROTATION
    diameter_known = bool(np.isfinite(diameter) and diameter > 0)
    error_opd = error_seed = math.nan
    if is_rotation and diameter_known:
        error_opd = origin_error_opd(pred_origin, gt_origin, gt_axis, diameter)
        error_seed = origin_error_seed(pred_origin, gt_origin, diameter)
    trajectory_fields: dict[str, Any] = {}
    if gt_trajectory is not None:
        gt_axis_opening = axis_in_opening_sense(int(gt_motion_type), gt_axis, gt_origin, gt_trajectory)
        trajectory_fields = {
            "has_trajectory": True,
            "signed_axis_error_deg": signed_axis_error_deg(pred_axis, gt_axis_opening),
            "axis_flipped": axis_flipped(pred_axis, gt_axis_opening),
        }
        if int(pred_motion_type) == int(gt_motion_type) and math.isfinite(pred_extent):
            gt_path = np.asarray(gt_trajectory, np.float64)
            gt_offset = np.asarray(gt_origin, np.float64) - gt_path[0]
            gt_extent = trajectory_extent(int(gt_motion_type), _unit(gt_axis), gt_offset, gt_path)
            trajectory_fields["extent_error"] = abs(float(pred_extent) - gt_extent)
        for prefix, trajectory in (("", pred_trajectory), ("learned_", pred_learned_trajectory)):
            if trajectory is not None and np.all(np.isfinite(trajectory)):
                trajectory_fields[f"{prefix}endpoint_error_m"] = trajectory_endpoint_error(trajectory, gt_trajectory)
                trajectory_fields[f"{prefix}roughness_m"] = trajectory_roughness(trajectory)
    return SampleResult(
        **trajectory_fields,
        iou=iou,
        bbox_iou=box_iou,
        detected=bool(detected),
        motion_type_correct=int(pred_motion_type) == int(gt_motion_type),
        axis_error_deg=axis_error,
        axis_correct=axis_error <= params.test_motion_threshold_deg,
        point_error_px=float(np.hypot(point_offset[0] * width, point_offset[1] * height)),
        point_error_norm=float(np.linalg.norm(point_offset)),
        is_rotation=is_rotation,
        diameter_known=diameter_known,
        origin_error_opd=error_opd,
        origin_error_seed=error_seed,
        origin_correct_opd=not is_rotation or error_opd <= params.opd_origin_threshold,
        origin_correct_seed=not is_rotation or error_seed <= params.seed_origin_threshold,
    )


def _unit(vector: np.ndarray) -> np.ndarray:
    vector = np.asarray(vector, np.float64)
    return vector / np.linalg.norm(vector)


def _mean(values: list[float]) -> float:
    """Mean of a list; NaN when empty."""
    return float(np.mean(values)) if values else math.nan


def _median_finite(values: list[float]) -> float:
    """Median of the finite values of a list; NaN when there is none."""
    finite = [value for value in values if math.isfinite(value)]
    return float(np.median(finite)) if finite else math.nan


@dataclass
class MetricAccumulator:
    """Collects per-sample results over batches (e.g. from a Lightning ``test_step``) and aggregates them.

    Single-process: under DDP each rank holds its own samples.
    """

    params: TestParams = field(default_factory=TestParams)
    results: list[SampleResult] = field(default_factory=list)

    def update(
        self,
        *,
        pred_mask: Any,
        gt_mask: Any,
        pred_motion_type: Any,
        gt_motion_type: Any,
        pred_axis: Any,
        gt_axis: Any,
        pred_point: Any,
        gt_point: Any,
        pred_origin: Any,
        gt_origin: Any,
        diameter: Any,
        pred_trajectory: Any = None,
        pred_learned_trajectory: Any = None,
        gt_trajectory: Any = None,
        has_trajectory: Any = None,
        sample_index: Any = None,
        pred_extent: Any = None,
    ) -> list[SampleResult]:
        """Add a batch (numpy arrays or torch tensors, leading dim B) and return its results.

        ``pred_mask``/``gt_mask`` (B, H, W) or (B, 1, H, W), the prediction as probabilities at full
        resolution; motion types (B,) labels (0 translation, 1 rotation); axes, origins (B, 3);
        points (B, 2) in [0, 1]; ``diameter`` (B,) metres (0 = unknown); optionally the absolute
        trajectories (B, T, 3), published and learned, the ground truth's and ``has_trajectory`` (B,) bool
        (every ground truth counts as known when it is None); ``sample_index`` (B,) the samples' data set
        indices (kept in :attr:`SampleResult.sample_index`); ``pred_extent`` (B,) the published opening extents.
        """
        pred_masks, gt_masks = _numpy(pred_mask), _numpy(gt_mask)
        if pred_masks.ndim == 4:
            pred_masks = pred_masks[:, 0]
        if gt_masks.ndim == 4:
            gt_masks = gt_masks[:, 0]
        pred_types, gt_types = _numpy(pred_motion_type).reshape(-1), _numpy(gt_motion_type).reshape(-1)
        pred_axes, gt_axes = _numpy(pred_axis).reshape(-1, 3), _numpy(gt_axis).reshape(-1, 3)
        pred_points, gt_points = _numpy(pred_point).reshape(-1, 2), _numpy(gt_point).reshape(-1, 2)
        pred_origins, gt_origins = _numpy(pred_origin).reshape(-1, 3), _numpy(gt_origin).reshape(-1, 3)
        diameters = _numpy(diameter).reshape(-1)
        batch_size = len(gt_masks)
        sizes = {len(a) for a in (pred_masks, pred_types, gt_types, pred_axes, gt_axes, pred_points,
                                  gt_points, pred_origins, gt_origins, diameters)}
        if sizes != {batch_size}:
            raise ValueError(f"every input needs the batch size {batch_size}, got sizes {sorted(sizes)}")
        optional = {name: None if value is None else _numpy(value) for name, value in (
            ("pred_trajectory", pred_trajectory), ("pred_learned_trajectory", pred_learned_trajectory),
            ("gt_trajectory", gt_trajectory))}
        known = (np.ones(batch_size, bool) if has_trajectory is None
                 else _numpy(has_trajectory).reshape(-1).astype(bool))
        if optional["gt_trajectory"] is None:
            known[:] = False
        indices = (np.full(batch_size, -1) if sample_index is None
                   else _numpy(sample_index).reshape(-1).astype(np.int64))
        if len(indices) != batch_size:
            raise ValueError(f"sample_index needs the batch size {batch_size}, got {len(indices)}")

        extents = np.full(batch_size, np.nan) if pred_extent is None else _numpy(pred_extent).reshape(-1)

        def trajectories(i: int) -> dict[str, Any]:
            if not known[i]:
                return {}
            return {**{name: None if value is None else value[i] for name, value in optional.items()},
                    "pred_extent": float(extents[i])}

        batch_results = [
            dataclasses.replace(evaluate_sample(
                **trajectories(i),
                pred_mask=pred_masks[i],
                gt_mask=gt_masks[i],
                pred_motion_type=int(pred_types[i]),
                gt_motion_type=int(gt_types[i]),
                pred_axis=pred_axes[i],
                gt_axis=gt_axes[i],
                pred_point=pred_points[i],
                gt_point=gt_points[i],
                pred_origin=pred_origins[i],
                gt_origin=gt_origins[i],
                diameter=float(diameters[i]),
                params=self.params,
            ), sample_index=int(indices[i]))
            for i in range(batch_size)
        ]
        self.results.extend(batch_results)
        return batch_results

    def reset(self) -> None:
        """Forget every sample."""
        self.results.clear()

    def compute(self) -> dict[str, float]:
        """Aggregate metrics (see the module docstring); NaN where a metric has no sample to average."""
        results = self.results
        if not results:
            logger.warning("MetricAccumulator.compute() called without samples: every metric is NaN")
        det_m = [r for r in results if r.detected and r.motion_type_correct]
        det_ma = [r for r in det_m if r.axis_correct]
        origin_judged = [r for r in det_m if r.is_rotation and r.diameter_known]
        missing_diameter = sum(r.is_rotation and not r.diameter_known for r in results)
        if missing_diameter:
            logger.warning(
                "%d rotation samples have no object diameter: their origin counts as wrong", missing_diameter
            )
        count = len(results)

        def rate(selected: list[SampleResult]) -> float:
            return len(selected) / count if count else math.nan

        return {
            "mIoU": _mean([r.iou for r in results]),
            "P_Det": rate([r for r in results if r.detected]),
            "P_Det+M": rate(det_m),
            "P_Det+MA": rate(det_ma),
            "P_Det+MAO_opd": rate([r for r in det_ma if r.origin_correct_opd]),
            "P_Det+MAO_seed": rate([r for r in det_ma if r.origin_correct_seed]),
            "ERR_ADir": _mean([r.axis_error_deg for r in det_m]),
            "mean_point_error_px": _mean([r.point_error_px for r in results]),
            "mean_point_error_norm": _mean([r.point_error_norm for r in results]),
            "mean_origin_error_opd": _mean([r.origin_error_opd for r in origin_judged]),
            "mean_origin_error_seed": _mean([r.origin_error_seed for r in origin_judged]),
            "median_origin_error_opd": _median_finite([r.origin_error_opd for r in origin_judged]),
            "num_samples": float(count),
            "num_rotation_without_diameter": float(missing_diameter),
            **self._motion_metrics(det_m),
        }

    def _motion_metrics(self, det_m: list[SampleResult]) -> dict[str, float]:
        """The sign-aware axis error and flip rate (over the detected samples with the right motion type
        whose ground truth has a trajectory) and the trajectories' endpoint error and roughness (over every
        sample with a ground-truth trajectory and a finite prediction), in metres."""
        judged = [r for r in det_m if r.has_trajectory]
        with_trajectory = [r for r in self.results if r.has_trajectory]

        def mean_finite(name: str) -> float:
            return _mean([getattr(r, name) for r in with_trajectory if math.isfinite(getattr(r, name))])

        rotations = [r.extent_error for r in judged if r.is_rotation]
        return {
            "median_extent_error_rotation_deg": math.degrees(_median_finite(rotations)),
            "median_extent_error_translation_m": _median_finite([r.extent_error for r in judged if not r.is_rotation]),
            "ERR_ADir_signed": _mean([r.signed_axis_error_deg for r in judged]),
            "axis_flip_rate": _mean([float(r.axis_flipped) for r in judged]),
            "trajectory_endpoint_error_m": mean_finite("endpoint_error_m"),
            "learned_trajectory_endpoint_error_m": mean_finite("learned_endpoint_error_m"),
            "trajectory_roughness_m": mean_finite("roughness_m"),
            "learned_trajectory_roughness_m": mean_finite("learned_roughness_m"),
            "num_samples_with_trajectory": float(len(with_trajectory)),
        }


def write_report(metrics: dict[str, float], json_path: PathLike, markdown_path: PathLike) -> None:
    """Write ``metrics`` as JSON (NaN as null) and as a two-column Markdown table (``num_*`` as integers)."""
    json_path, markdown_path = Path(json_path), Path(markdown_path)
    finite = {name: (None if isinstance(v, float) and math.isnan(v) else v) for name, v in metrics.items()}
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(finite, indent=2) + "\n")

    def cell(name: str, value: Any) -> str:
        if value is None:
            return "n/a"
        return str(int(value)) if name.startswith("num_") else f"{value:.4f}"

    lines = ["| Metric | Value |", "| --- | --- |"]
    lines += [f"| {name} | {cell(name, value)} |" for name, value in finite.items()]
    markdown_path.parent.mkdir(parents=True, exist_ok=True)
    markdown_path.write_text("\n".join(lines) + "\n")
    logger.info("wrote metrics to %s and %s", json_path, markdown_path)
