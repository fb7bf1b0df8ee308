"""Evaluation under DDP on the CPU (2 ranks, gloo): every metric, report and prediction equals one process's.

The two-rank runs are ``train/fit.py`` as a user starts them (Lightning launches the second rank as a process
of its own); the one-process references run its ``main`` in the test process (one interpreter start less
each), on one thread as every rank does. All use the shipped checkpoint on a tiny generated set whose sample
counts are odd, so that the distributed sampler pads a rank's share with a repeated sample.
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from segaff_core.checkpoint import DEFAULT_CHECKPOINT
from segaff_core.data import SF3DDataset
from segaff_core.distributed import gather_unique
from segaff_core.synth import generate_dataset
from fit_script import load_fit_script

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def odd_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated set whose validation and test splits hold an odd number of samples."""
    root = tmp_path_factory.mktemp("ddp") / "sf3d"
    generate_dataset("sf3d", root, num_images=20, seed=2, image_size=(160, 160), views_per_scene=2)
    sizes = {split: len(SF3DDataset(root, split)) for split in ("valid", "test")}
    assert all(size % 2 == 1 for size in sizes.values()), f"the splits must be odd to pad: {sizes}"
    return root


def run_fit(subcommand: str, root: Path, run_dir: Path, devices: int, *extra: str) -> None:
    """``train/fit.py SUBCOMMAND`` on ``root`` with ``devices`` CPU processes (one: in this process): the
    shipped checkpoint with the test config, or for ``fit`` the synthetic training config."""
    if subcommand == "fit":
        model = ["--config", str(REPO / "config" / "synthetic_train.yaml")]
    else:
        model = ["--config", str(REPO / "config" / "synthetic_test.yaml"), f"--ckpt_path={DEFAULT_CHECKPOINT}"]
    arguments = [
        subcommand, *model, f"--data.init_args.root={root}", "--data.init_args.input_size=[160, 160]",
        "--data.init_args.batch_size=2", "--data.init_args.num_workers=0", f"--trainer.default_root_dir={run_dir}",
        "--trainer.accelerator=cpu", f"--trainer.devices={devices}", "--trainer.enable_progress_bar=false", *extra,
    ]
    if devices == 1:
        run_in_this_process(arguments)
        return
    command = [sys.executable, "train/fit.py", *arguments, "--trainer.strategy=ddp"]
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    finished = subprocess.run(command, cwd=REPO, env=environment, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, f"{' '.join(command)} failed:\n{finished.stdout[-3000:]}\n{finished.stderr[-5000:]}"


def run_in_this_process(arguments: list[str]) -> None:
    """``train/fit.py ARGUMENTS`` through its ``main``, on one thread as the ranks run."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with mock.patch.object(sys, "argv", ["train/fit.py"]):
            load_fit_script().main(arguments)
    finally:
        torch.set_num_threads(threads)


def report(run_dir: Path, name: str) -> dict[str, float]:
    (path,) = run_dir.glob(f"lightning_logs/version_*/{name}.json")
    return json.loads(path.read_text())


def assert_same_metrics(distributed: dict[str, float], single: dict[str, float]) -> None:
    assert distributed.keys() == single.keys()
    for name, value in single.items():
        other = distributed[name]
        if value is None:  # a metric without samples of its kind (no rotations, say) in this set
            assert other is None, name
        elif isinstance(value, float) and math.isnan(value):
            assert math.isnan(other), name
        else:
            assert other == pytest.approx(value, rel=1e-6, abs=1e-9), name


def test_two_ranks_report_the_metrics_of_one_process(odd_root: Path, tmp_path: Path) -> None:
    """``test``; ``validate`` gathers through the same code (``_gather_results``), and the fit below checks
    that validation under DDP logs its metrics."""
    run_fit("test", odd_root, tmp_path / "one", devices=1)
    run_fit("test", odd_root, tmp_path / "two", devices=2)
    single, distributed = report(tmp_path / "one", "test_metrics"), report(tmp_path / "two", "test_metrics")
    assert single["num_samples"] == len(SF3DDataset(odd_root, "test"))
    assert 0.0 < single["mIoU"] < 1.0  # samples differ: a sample counted twice or left out would show
    assert_same_metrics(distributed, single)


def test_two_ranks_predict_every_sample_once(odd_root: Path, tmp_path: Path) -> None:
    run_fit("predict", odd_root, tmp_path / "one", devices=1)
    run_fit("predict", odd_root, tmp_path / "two", devices=2)
    lines = {}
    for run in ("one", "two"):
        directory = tmp_path / run / "predictions"
        assert sorted(path.name for path in directory.glob("*.jsonl")) == ["predictions.jsonl"]  # rank files merged
        lines[run] = [json.loads(line) for line in (directory / "predictions.jsonl").read_text().splitlines()]
        assert len(list((directory / "masks").iterdir())) == len(lines[run])
    test_set = SF3DDataset(odd_root, "test")
    assert [line["index"] for line in lines["two"]] == list(range(len(test_set)))
    for single, distributed in zip(lines["one"], lines["two"]):
        assert distributed["description"] == single["description"]
        assert distributed["motion_type"] == single["motion_type"]
        assert distributed["point_px"] == pytest.approx(single["point_px"], abs=1e-3)


def test_two_ranks_train_validate_and_checkpoint(odd_root: Path, tmp_path: Path) -> None:
    run_fit("fit", odd_root, tmp_path, 2, "--trainer.max_steps=2", "--trainer.limit_train_batches=2",
            "--trainer.limit_val_batches=2", "--trainer.log_every_n_steps=1")
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()
    (events,) = tmp_path.glob("lightning_logs/version_*/events.out.tfevents.*")
    scalars = EventAccumulator(str(events)).Reload().Tags()["scalars"]
    assert {"val/mIoU", "val/P_Det", "val/num_samples", "train/loss"} <= set(scalars)


def test_gather_unique_in_one_process_keeps_one_record_per_index_in_order() -> None:
    records = [(2, "c"), (0, "a"), (2, "c again"), (1, "b")]
    assert gather_unique(records, lambda record: record[0]) == [(0, "a"), (1, "b"), (2, "c")]
    assert gather_unique([(-1, "x"), (-1, "y")], lambda record: record[0]) == [(-1, "x"), (-1, "y")]
