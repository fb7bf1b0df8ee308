"""Does the small model learn? Train config/synthetic_train.yaml on the CPU for a bounded time, then test.

    .venv/bin/python bench/learn_synthetic.py                      # 30 minutes, 5000 images at 160 x 160
    .venv/bin/python bench/learn_synthetic.py --minutes 5 --num-images 500
    .venv/bin/python bench/learn_synthetic.py --data data/synthetic_sf3d -- --model.optim.lr=2e-3
    .venv/bin/python bench/learn_synthetic.py --checkpoint checkpoints/segaff_default.ckpt \
        --data data/synthetic_sf3d --size 160                         # evaluate only (the shipped model)

Writes a synthetic SceneFun3D-format data set (``segaff_core.synth.generate_dataset``, as
``segaff synth --format sf3d``) unless ``--data`` names one, trains through ``train/fit.py`` with the
synthetic config (``trainer.max_time`` bounds it; warm-up, then a cosine anneal over that time), and
evaluates the final weights on the held-out test scenes. Printed: mIoU, P_Det, motion type accuracy,
axis error (all samples), the axis flip rate, the published and learned trajectories' endpoint error and
roughness, a rotation's origin error (distance to the hinge line over the object's diameter) and the opening
extent error (segaff_core.metrics), and the accuracy on spatial phrases: of the held-out samples whose
instruction holds a spatial word (top, bottom, left, right, upper, lower, middle, second; "leftmost"
counts), the fraction whose predicted mask has IoU >= 0.5 with the
named part. The same for the other samples, for comparison.

The loader runs in the training process by default (``--loader-workers 0``): on the 2-core machine this
was tuned on, a step of the small model at 160 x 160, batch 16, took 180 ms so, and 214 ms with 1 or 2
loader processes, which take cores from the two torch threads (a sample loads in ~2 ms). It keeps every
decoded image in memory (``cached_images``: 0.84 instead of 1.95 ms per sample from the second epoch on;
5,000 images at 160 x 160 take 640 MB). Where the CPU
computes in bf16 natively, training runs in bf16 mixed precision (there ``bench/train_throughput.py`` timed
the small model's Lightning step at 145 ms against 157 ms in fp32; the 30-minute result is in the README).
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import logging
import math
import platform
import re
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any
from unittest import mock

import lightning as L
import torch

from cpu_features import cpu_has_native_bf16
from segaff_core.checkpoint import model_params_from_checkpoint, read_checkpoint
from segaff_core.data import SF3DDataset
from segaff_core.data.sf3d_format import decode_record, open_lmdb
from segaff_core.synth import generate_dataset

logger = logging.getLogger("learn_synthetic")

REPO = Path(__file__).resolve().parents[1]
SPATIAL_WORD = re.compile(r"\b(top|bottom|left|right|upper|lower|middle|second)", re.IGNORECASE)
IOU_CORRECT = 0.5


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30.0, help="training time (default %(default)s)")
    parser.add_argument("--data", type=Path, help="an existing synthetic SceneFun3D-format root (else one is made)")
    parser.add_argument("--num-images", type=int, default=5000, help="images to generate (default %(default)s)")
    parser.add_argument("--size", type=int, default=160, help="image and network input side (default %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="data set seed (default %(default)s)")
    parser.add_argument("--workers", type=int, default=2, help="rendering processes (default %(default)s)")
    parser.add_argument("--loader-workers", type=int, default=0,
                        help="data loader processes (default %(default)s: with as many cores as torch threads, "
                             "loader processes take cores from the training step; see the module docstring)")
    parser.add_argument("--precision", help="Lightning's trainer.precision of the training (default: bf16-mixed "
                        "where the CPU has native bf16, avx512_bf16 or amx_bf16, else 32-true); "
                        "the final test runs in 32-true")
    parser.add_argument("--out", type=Path, help="run folder (default: a temporary one)")
    parser.add_argument("--checkpoint", type=Path, help="evaluate this checkpoint instead of training one")
    parser.add_argument("overrides", nargs="*", metavar="-- --KEY=VALUE",
                        help="after --: train/fit.py options over the config, e.g. -- --model.optim.lr=2e-3")
    return parser.parse_args()


def load_fit_script() -> Any:
    spec = importlib.util.spec_from_file_location("segaff_train_fit", REPO / "train" / "fit.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def checkpoint_model_params(path: Path) -> dict[str, Any]:
    """Every ModelParams field (as a dict) that ``path``, a SegAffordance checkpoint, was trained with; the
    fields added since it was written at their defaults, not at the config's values."""
    return dataclasses.asdict(model_params_from_checkpoint(read_checkpoint(path), str(path)))


def descriptions(dataset: SF3DDataset) -> list[str]:
    """The instruction of every sample of ``dataset``, in its order."""
    with open_lmdb(dataset.lmdb_path).begin() as txn:
        return [decode_record(txn.get(key.encode()), key)["description"] for key in dataset.keys]


def iou_accuracy(ious: list[float]) -> str:
    if not ious:
        return "n/a (no sample)"
    return f"{sum(iou >= IOU_CORRECT for iou in ious) / len(ious):.3f} of {len(ious)}"


def main() -> None:
    args = parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    training = args.checkpoint is None
    precision = args.precision or ("bf16-mixed" if training and cpu_has_native_bf16() else "32-true")
    with tempfile.TemporaryDirectory(prefix="segaff_learn_") as scratch:
        run_dir = args.out or Path(scratch) / "run"
        data_root = args.data
        if data_root is None:
            data_root = Path(scratch) / "synthetic_sf3d"
            summary = generate_dataset("sf3d", data_root, args.num_images, args.seed,
                                       image_size=(args.size, args.size), workers=args.workers)
            logger.info("generated %s", summary)
        common = [
            "--config", str(REPO / "config" / "synthetic_train.yaml"),
            f"--data.init_args.root={data_root}", f"--data.init_args.input_size=[{args.size}, {args.size}]",
            f"--data.init_args.num_workers={args.loader_workers}", f"--trainer.default_root_dir={run_dir}",
            f"--data.init_args.cached_images={sum(1 for _ in (data_root / 'images').iterdir())}",
            "--trainer.accelerator=cpu", "--trainer.enable_progress_bar=false", f"--trainer.precision={precision}",
            # A time-bounded run learns most with a cosine anneal over its budget (the config's multistep
            # schedule would not decay within it); options after -- override these.
            "--model.optim.schedule=cosine", "--model.optim.warmup_steps=50", *args.overrides,
        ]
        if training:
            minutes = int(args.minutes)
            seconds = round((args.minutes - minutes) * 60)
            cli_args = ["fit", *common, "--trainer.max_epochs=-1",
                        f"--trainer.max_time={{minutes: {minutes}, seconds: {seconds}}}"]
        else:  # the checkpoint's own model, whatever the config says now
            cli_args = ["test", *common, f"--model.model_params={json.dumps(checkpoint_model_params(args.checkpoint))}",
                        f"--ckpt_path={args.checkpoint}"]
        with mock.patch.object(sys, "argv", sys.argv[:1]):
            cli = load_fit_script().main(cli_args)
        trainer, module = cli.trainer, cli.model
        if training:  # the final weights, in fp32 as the Predictor runs them by default
            trainer = L.Trainer(accelerator="cpu", precision="32-true", default_root_dir=run_dir, logger=False,
                                enable_progress_bar=False, enable_model_summary=False)
            trainer.test(module, datamodule=cli.datamodule)
        metrics = {name.removeprefix("test/"): float(value) for name, value in trainer.callback_metrics.items()
                   if name.startswith("test/")}
        results = module.test_metrics.results
        texts = descriptions(cli.datamodule.datasets["test"])
        if len(texts) != len(results):
            raise RuntimeError(f"{len(results)} test results for {len(texts)} test samples")
        spatial = [r.iou for r, text in zip(results, texts) if SPATIAL_WORD.search(text)]
        other = [r.iou for r, text in zip(results, texts) if not SPATIAL_WORD.search(text)]
        axis_errors = [r.axis_error_deg for r in results]

        print(f"machine: {platform.node()} {platform.processor() or platform.machine()}, "
              f"{torch.get_num_threads()} torch threads, torch {torch.__version__}, precision {precision}")
        if training:
            fitted = cli.trainer
            print(f"trained {fitted.current_epoch} epochs / {fitted.global_step} steps in {args.minutes:g} min "
                  f"on {len(cli.datamodule.datasets['train'])} samples")
        else:
            print(f"evaluated {args.checkpoint}")
        print(f"held-out test samples: {len(results)}")
        print(f"{'mIoU':24s} {metrics['mIoU']:.3f}")
        print(f"{f'P_Det (IoU > {module.test_params.test_iou_threshold})':24s} {metrics['P_Det']:.3f}")
        print(f"{'motion type accuracy':24s} {statistics.fmean(r.motion_type_correct for r in results):.3f}")
        print(f"{'axis error (deg)':24s} mean {statistics.fmean(axis_errors):.1f}, "
              f"median {statistics.median(axis_errors):.1f}")
        print(f"{'axis flip rate':24s} {metrics['axis_flip_rate']:.3f} (sign-aware error "
              f"{metrics['ERR_ADir_signed']:.1f} deg)")
        for label, prefix in (("published trajectory", ""), ("learned trajectory", "learned_")):
            print(f"{label:24s} endpoint error {metrics[f'{prefix}trajectory_endpoint_error_m'] * 100:.1f} cm, "
                  f"roughness {metrics[f'{prefix}trajectory_roughness_m'] * 1000:.2f} mm")
        print(f"{'origin error (rotation)':24s} median {metrics['median_origin_error_opd']:.3f}, mean "
              f"{metrics['mean_origin_error_opd']:.3f} of the diameter (distance to the hinge line, OPD)")
        print(f"{'opening extent error':24s} median {metrics['median_extent_error_rotation_deg']:.1f} deg "
              f"(rotations), {metrics['median_extent_error_translation_m'] * 100:.1f} cm (translations)")
        print(f"{'spatial phrases':24s} {iou_accuracy(spatial)} with IoU >= {IOU_CORRECT}")
        print(f"{'other phrases':24s} {iou_accuracy(other)} with IoU >= {IOU_CORRECT}")
        print(json.dumps({k: (None if math.isnan(v) else round(v, 4)) for k, v in metrics.items()}))


if __name__ == "__main__":
    main()
