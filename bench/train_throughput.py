"""Samples/s of the SegAffordance training step (small and default configs) and of the training loader.

    .venv/bin/python bench/train_throughput.py                                  # CPU, fp32
    .venv/bin/python bench/train_throughput.py --accelerator cuda --batch-size 32 # + bf16-mixed, 16-mixed

The training step (forward, losses, backward, AdamW step) runs in a Lightning Trainer on synthetic
SceneFun3D-format data (``segaff_core.synth``); a callback times ``on_train_batch_start`` ->
``on_train_batch_end`` after ``--warmup`` steps, so data loading is not included. The default config
uses random CLIP weights (same cost as RN50.pt). On CUDA each config also runs with bf16-mixed and
16-mixed precision, on a CPU with native bf16 (avx512_bf16, amx_bf16) with bf16-mixed. The loader line is
the SF3DDataModule training loader on the same data; for loaders
on data of the real sizes see ``bench/data_throughput.py``. A loader keeps up when its samples/s is at
least the training step's.
"""
from __future__ import annotations

import argparse
import logging
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch

from cpu_features import cpu_has_native_bf16
from segaff_core.config import ModelParams
from segaff_core.data import SF3DDataModule
from segaff_core.lightning_module import SegAffordanceModule
from segaff_core.synth import generate_dataset

logger = logging.getLogger("train_throughput")

CONFIGS = {"small": ModelParams.small(), "default": ModelParams(clip_pretrain=None)}


class StepTimer(L.Callback):
    """Wall time of each training step after the first ``warmup`` (CUDA synchronised)."""

    def __init__(self, warmup: int) -> None:
        self.warmup = warmup
        self.seconds: list[float] = []
        self._start = 0.0

    def _sync(self, pl_module: L.LightningModule) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self._sync(pl_module)
        self._start = time.perf_counter()

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._sync(pl_module)
        if trainer.global_step > self.warmup:
            self.seconds.append(time.perf_counter() - self._start)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", choices=sorted(CONFIGS), default=["small", "default"])
    parser.add_argument("--accelerator", default="cpu", help="cpu | cuda (default %(default)s)")
    parser.add_argument("--batch-size", type=int, default=8, help="default %(default)s")
    parser.add_argument("--size", type=int, default=256, help="square input side (default %(default)s)")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per run (default %(default)s)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed first steps (default %(default)s)")
    parser.add_argument("--num-workers", type=int, default=2, help="loader processes (default %(default)s)")
    parser.add_argument("--data", type=Path,
                        help="an existing SceneFun3D-format root (segaff synth --format sf3d) instead of generating one")
    return parser.parse_args()


def machine(accelerator: str) -> str:
    cpu = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads"
    gpu = f", {torch.cuda.get_device_name()}" if accelerator == "cuda" else ""
    return f"{platform.node()}: {cpu}{gpu}; torch {torch.__version__}, lightning {L.__version__}"


def step_seconds(
    params: ModelParams, precision: str, datamodule: SF3DDataModule, args: argparse.Namespace
) -> list[float]:
    """Per-step wall times of ``args.steps`` training steps of a fresh module."""
    torch.manual_seed(0)
    timer = StepTimer(args.warmup)
    trainer = L.Trainer(
        accelerator=args.accelerator, devices=1, precision=precision, max_steps=args.warmup + args.steps,
        limit_val_batches=0, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, callbacks=[timer],
    )
    trainer.fit(SegAffordanceModule(model_params=params), datamodule=datamodule)
    return timer.seconds


def loader_samples_per_s(datamodule: SF3DDataModule, batches: int) -> float:
    """Samples/s of the training loader, after its first batch (worker start-up)."""
    datamodule.setup("fit")
    iterator = iter(datamodule.train_dataloader())
    next(iterator)
    start, samples = time.perf_counter(), 0
    for _, batch in zip(range(batches), iterator):
        samples += len(batch["image"])
    return samples / (time.perf_counter() - start)


def main() -> None:
    args = parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.accelerator == "cuda":
        precisions = ["32-true", "bf16-mixed", "16-mixed"]
    else:
        precisions = ["32-true"] + (["bf16-mixed"] if cpu_has_native_bf16() else [])
    needed = (args.warmup + args.steps + 1) * args.batch_size
    with tempfile.TemporaryDirectory(prefix="segaff_throughput_") as scratch:
        root = args.data
        if root is None:
            root = Path(scratch) / "sf3d"
            generate_dataset("sf3d", root, max(10, needed // 2), seed=0, image_size=(args.size, args.size))
        datamodule = SF3DDataModule(
            str(root), input_size=(args.size, args.size), batch_size=args.batch_size,
            num_workers=args.num_workers, train_split=None, pin_memory=args.accelerator == "cuda",
        )
        print(machine(args.accelerator))
        print(f"input {args.size}x{args.size}, batch {args.batch_size}, {args.steps} timed steps (median)")
        for name in args.configs:
            for precision in precisions:
                seconds = statistics.median(step_seconds(CONFIGS[name], precision, datamodule, args))
                print(f"train step  {name:8s} {precision:11s} {args.batch_size / seconds:8.1f} samples/s "
                      f"({1000 * seconds:.0f} ms/step)")
        rate = loader_samples_per_s(datamodule, batches=args.steps)
        print(f"loader      sf3d     {args.num_workers} workers  {rate:8.1f} samples/s")


if __name__ == "__main__":
    main()
