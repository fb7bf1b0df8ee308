"""How a checkpoint fares beyond the world it was trained in: held-out styles and a faulty depth sensor.

    .venv/bin/python bench/synthetic_shift.py                       # the shipped checkpoint, 64 frames each
    .venv/bin/python bench/synthetic_shift.py --checkpoint C --num 500 --backend pytorch
    .venv/bin/python bench/synthetic_shift.py --size 160 --num 256 --precisions fp32 int8  # + table (c)

Renders the held-out generator seed (default 11, as docs/EXPERIMENTS.md; its scene seeds are those of
``segaff synth --seed 11``) and prints two tables: (a) the ``train`` style against the ``heldout`` style
(furniture families, finishes and handle kinds training never draws; see docs/TRAINING.md), both with
perfect depth; (b) the ``train`` style under depth sensor faults of severity 0 to 4. Each frame is one view
and one visible part named by its first instruction. Columns (``segaff_core.metrics``): mIoU, P_Det (mask
IoU > 0.5), motion type accuracy, the axis error (sign-invariant, degrees, mean over the detected samples
with the right motion type, as ERR_ADir), a rotation's origin error (distance to the hinge line over the
object's diameter, median, as OPD), the opening extent error (median: rotations in degrees, translations in
cm) and the share of frames with valid depth at the predicted point (3D outputs are NaN elsewhere). With
``--precisions``, table (c) first: the ``classic`` world (the shipped checkpoint's) in each precision, with
the share of frames whose motion type agrees with the first precision's and the median angle between their
axes. Prints figures, asserts nothing.
"""
from __future__ import annotations

import argparse
import logging
import math
import statistics
from collections.abc import Iterator
from typing import Optional
from pathlib import Path

import numpy as np

from segaff_core.config import TestParams
from segaff_core.inference import AffordancePrediction, Predictor
from segaff_core.metrics import SampleResult, evaluate_sample
from segaff_core.synth.generate import scene_seed
from segaff_core.synth.sample import PartAnnotation, SceneSample, scene_views
from segaff_core.synth.styles import style_named

logger = logging.getLogger("synthetic_shift")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, help="checkpoint to evaluate (default: the shipped one)")
    parser.add_argument("--num", type=int, default=64, help="frames per condition (default %(default)s)")
    parser.add_argument("--seed", type=int, default=11, help="generator seed of the frames (default %(default)s)")
    parser.add_argument("--size", type=int, default=256, help="rendered image side, pixels (default %(default)s)")
    parser.add_argument("--views-per-scene", type=int, default=4, help="views of each scene (default %(default)s)")
    parser.add_argument("--device", default="cpu", help="Predictor device (default %(default)s)")
    parser.add_argument("--backend", default="auto", help="Predictor backend (default %(default)s)")
    parser.add_argument("--precisions", nargs="+", default=[], metavar="P",
                        help="also table (c): the classic world (the shipped checkpoint's) at perfect depth in each "
                        "of these precisions (e.g. fp32 int8), with each one's agreement with the first")
    return parser.parse_args()


def frames(styles: str, sensor_faults: int, args: argparse.Namespace) -> Iterator[tuple[SceneSample, PartAnnotation]]:
    """``args.num`` (view, part) pairs of the seed's scenes in ``styles`` with depth faults of that severity."""
    count, scene = 0, 0
    while count < args.num:
        views, rng = scene_views(scene_seed(args.seed, scene), style=style_named(styles), sensor_faults=sensor_faults)
        for view in range(min(args.views_per_scene, args.num - count)):
            sample = views.view(rng, (args.size, args.size))
            yield sample, sample.parts[(scene + view) % len(sample.parts)]
            count += 1
        scene += 1


def evaluate(predictor: Predictor, styles: str, sensor_faults: int, args: argparse.Namespace,
             params: TestParams, predictions: Optional[list[AffordancePrediction]] = None,
             ) -> tuple[list[SampleResult], float]:
    """Per-frame results and the share of frames with valid 3D outputs (``predictions`` collects the outputs)."""
    results, valid = [], 0
    size = np.array([args.size, args.size], np.float64)
    for sample, part in frames(styles, sensor_faults, args):
        prediction = predictor(sample.rgb, sample.depth_m, part.descriptions[0], sample.K)
        if predictions is not None:
            predictions.append(prediction)
        valid += bool(prediction.valid_3d)
        results.append(evaluate_sample(
            pred_mask=prediction.mask, gt_mask=part.mask,
            pred_motion_type=0 if prediction.motion_type == "translation" else 1, gt_motion_type=part.motion_type,
            pred_axis=prediction.axis, gt_axis=part.axis,
            pred_point=(np.asarray(prediction.point_px) + 0.5) / size, gt_point=(part.handle_px + 0.5) / size,
            pred_origin=prediction.origin, gt_origin=part.origin, diameter=part.furniture_diameter_m, params=params,
            pred_trajectory=prediction.trajectory, gt_trajectory=part.trajectory,
            pred_extent=prediction.opening_extent,
        ))
    return results, valid / len(results)


def _finite(values: list[float]) -> list[float]:
    return [value for value in values if math.isfinite(value)]


def _mean(values: list[float], fmt: str) -> str:
    return format(statistics.fmean(values), fmt) if values else "n/a"


def _median(values: list[float], fmt: str) -> str:
    return format(statistics.median(values), fmt) if values else "n/a"


def row(label: str, results: list[SampleResult], valid_share: float) -> str:
    """One table row of the columns of the module docstring."""
    judged = [r for r in results if r.detected and r.motion_type_correct]
    axis = _finite([r.axis_error_deg for r in judged])
    origin = _finite([r.origin_error_opd for r in judged if r.is_rotation])
    rotation = _finite([math.degrees(r.extent_error) for r in judged if r.is_rotation])
    translation = _finite([100 * r.extent_error for r in judged if not r.is_rotation])

    return (f"| {label} | {len(results)} | {statistics.fmean(r.iou for r in results):.3f} "
            f"| {statistics.fmean(r.detected for r in results):.3f} "
            f"| {statistics.fmean(r.motion_type_correct for r in results):.3f} | {_mean(axis, '.1f')} "
            f"| {_median(origin, '.3f')} | {_median(rotation, '.1f')} / {_median(translation, '.1f')} "
            f"| {valid_share:.2f} |")


HEADER = ("| {} | frames | mIoU | P_Det | motion type acc. | axis error (deg, mean) | origin error (median, "
          "of the diameter) | extent error (median: deg / cm) | valid 3D |\n| --- | --- | --- | --- | --- | --- "
          "| --- | --- | --- |")


def precision_table(args: argparse.Namespace, params: TestParams) -> None:
    """(c): the classic world in each of ``args.precisions``; agreement with the first precision per frame."""
    first = args.precisions[0]
    columns, rule = HEADER.format("precision").split("\n")
    print(f"\n(c) classic style (the shipped checkpoint's world), perfect depth, by precision\n"
          f"{columns} same motion type as {first} | axis to {first}'s (deg, median) |\n{rule} --- | --- |")
    reference: list[AffordancePrediction] = []
    for precision in args.precisions:
        predictor = Predictor.from_checkpoint(args.checkpoint, device=args.device, backend=args.backend,
                                              precision=precision)
        predictions: list[AffordancePrediction] = []
        results, valid = evaluate(predictor, "classic", 0, args, params, predictions)
        reference = reference or predictions
        same_type = statistics.fmean(a.motion_type == b.motion_type for a, b in zip(predictions, reference))
        axis = _finite([axis_angle_deg(a.axis, b.axis) for a, b in zip(predictions, reference)])
        print(row(precision, results, valid) + f" {same_type:.3f} | {_median(axis, '.2f')} |", flush=True)


def axis_angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    """Sign-invariant angle between two axes, degrees."""
    cosine = abs(float(np.dot(a, b)) / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))
    return math.degrees(math.acos(min(cosine, 1.0)))


def main() -> None:
    args = parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    params = TestParams()
    if args.precisions:
        precision_table(args, params)
    predictor = Predictor.from_checkpoint(args.checkpoint, device=args.device, backend=args.backend)
    print(f"checkpoint {args.checkpoint or 'shipped default'}, generator seed {args.seed}, {args.num} frames "
          f"per condition at {args.size} x {args.size}")
    print("\n(a) styles, perfect depth\n" + HEADER.format("styles"))
    for styles in ("train", "heldout"):
        print(row(styles, *evaluate(predictor, styles, 0, args, params)), flush=True)
    print("\n(b) train style, depth sensor faults\n" + HEADER.format("severity"))
    for severity in range(5):
        print(row(str(severity), *evaluate(predictor, "train", severity, args, params)), flush=True)


if __name__ == "__main__":
    main()
