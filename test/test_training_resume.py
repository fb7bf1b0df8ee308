"""Crash and resume: a real ``train/fit.py`` process killed with SIGKILL, then ``--ckpt_path last``."""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch

from segaff_core.callbacks import AtomicCheckpointIO
from segaff_core.checkpoint import CheckpointError
from segaff_core.synth import generate_dataset

REPO = Path(__file__).resolve().parents[1]
MAX_EPOCHS = 4
KILL_WINDOW_S = 0.6  # the kill lands uniformly in this window after the first last.ckpt: often during a write
TRAIN_BATCHES = 2
START_TIMEOUT_S = 120.0


class RecordTrainStart(L.Callback):
    """Saves the epoch, the step and the model's weights at ``on_train_start`` (after a resume restored them)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        state = {"epoch": trainer.current_epoch, "global_step": trainer.global_step,
                 "state_dict": pl_module.state_dict(), "optimizer": trainer.optimizers[0].state_dict(),
                 "lr_schedulers": [config.scheduler.state_dict() for config in trainer.lr_scheduler_configs]}
        torch.save(state, self.path)


def fit_command(data_root: Path, run_dir: Path, *extra: str) -> list[str]:
    return [
        sys.executable, str(REPO / "train" / "fit.py"), "fit",
        "--config", str(REPO / "config" / "synthetic_train.yaml"),
        f"--data.init_args.root={data_root}", "--data.init_args.input_size=[64, 64]",
        "--data.init_args.batch_size=4", "--data.init_args.num_workers=0", f"--trainer.max_epochs={MAX_EPOCHS}",
        f"--trainer.limit_train_batches={TRAIN_BATCHES}", "--trainer.limit_val_batches=1",
        "--trainer.num_sanity_val_steps=0", "--trainer.enable_progress_bar=false",
        f"--trainer.default_root_dir={run_dir}", *extra,
    ]


@pytest.fixture
def foreign_tmpdir(tmp_path: Path) -> Iterator[dict[str, str]]:
    """``TMPDIR`` on another file system than the run, where available (/dev/shm).

    There Lightning's own checkpoint write (``_atomic_save``: a temporary file in ``TMPDIR``, then
    ``shutil.move``) becomes a copy into ``last.ckpt``, which a SIGKILL leaves partial.
    """
    shm = Path("/dev/shm")
    if not shm.is_dir() or shm.stat().st_dev == tmp_path.stat().st_dev:
        yield {}
        return
    with tempfile.TemporaryDirectory(dir=shm, prefix="segaff_test_") as directory:
        yield {"TMPDIR": directory}


def _tensors_equal(a: Any, b: Any) -> bool:
    """Nested dicts/lists of tensors and plain values compare equal."""
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_tensors_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(map(_tensors_equal, a, b))
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    return a == b


@pytest.mark.slow
@pytest.mark.parametrize("kill_seed", [0])  # one moment: a deterministic interrupted write is tested below
def test_resume_after_sigkill_continues_from_last_checkpoint(
    tmp_path: Path, foreign_tmpdir: dict[str, str], kill_seed: int
) -> None:
    data_root = tmp_path / "sf3d"
    generate_dataset("sf3d", data_root, num_images=20, seed=0, image_size=(64, 64), views_per_scene=2)
    run_dir = tmp_path / "run"
    last = run_dir / "checkpoints" / "last.ckpt"
    env = {**os.environ, **foreign_tmpdir,
           "PYTHONPATH": os.pathsep.join([str(REPO / "test"), os.environ.get("PYTHONPATH", "")])}

    first = subprocess.Popen(fit_command(data_root, run_dir), cwd=REPO, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + START_TIMEOUT_S
    while not last.exists():
        if first.poll() is not None:
            pytest.fail(f"training ended (rc {first.returncode}) before writing last.ckpt:\n"
                        f"{first.stderr.read().decode()[-3000:]}")
        if time.monotonic() > deadline:
            first.kill()
            pytest.fail("no last.ckpt within the time limit")
        time.sleep(0.005)
    time.sleep(random.Random(kill_seed).uniform(0.0, KILL_WINDOW_S))  # a random moment, seeded to be replayable
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    first.stderr.close()
    assert first.returncode == -signal.SIGKILL

    # Read right after the kill: a complete checkpoint (never a partial write), from before the end.
    at_kill = torch.load(last, map_location="cpu", weights_only=True)
    assert at_kill["epoch"] < MAX_EPOCHS - 1
    assert at_kill["global_step"] == (at_kill["epoch"] + 1) * TRAIN_BATCHES

    record = tmp_path / "train_start.pt"
    callback = {"class_path": "test_training_resume.RecordTrainStart", "init_args": {"path": str(record)}}
    resumed = subprocess.run(
        fit_command(data_root, run_dir, "--ckpt_path=last", f"--trainer.callbacks+={json.dumps(callback)}"),
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    start = torch.load(record, map_location="cpu", weights_only=True)
    assert start["epoch"] == at_kill["epoch"] + 1
    assert start["global_step"] == at_kill["global_step"]
    assert start["state_dict"].keys() == at_kill["state_dict"].keys()
    assert all(torch.equal(start["state_dict"][k], v) for k, v in at_kill["state_dict"].items())
    assert _tensors_equal(start["optimizer"], at_kill["optimizer_states"][0]), "AdamW's moments were not restored"
    assert _tensors_equal(start["lr_schedulers"], at_kill["lr_schedulers"])

    final = torch.load(last, map_location="cpu", weights_only=True)
    assert final["epoch"] == MAX_EPOCHS - 1
    assert final["global_step"] == MAX_EPOCHS * TRAIN_BATCHES
    assert sorted(p.name for p in last.parent.iterdir() if not p.name.startswith("best-")) == ["last.ckpt"]


def test_atomic_checkpoint_io_keeps_the_old_file_when_a_write_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "checkpoints" / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"epoch": 1, "weights": torch.ones(3)}, path)
    assert torch.load(path, weights_only=True)["epoch"] == 1

    def interrupted_save(obj: Any, stream: Any) -> None:
        stream.write(b"partial bytes")
        raise KeyboardInterrupt  # e.g. a signal during the write

    monkeypatch.setattr(torch, "save", interrupted_save)
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint({"epoch": 2, "weights": torch.zeros(3)}, path)
    assert torch.load(path, weights_only=True)["epoch"] == 1
    assert [p.name for p in path.parent.iterdir()] == ["last.ckpt"]  # the partial file was removed


def test_atomic_checkpoint_io_removes_what_a_killed_write_left(tmp_path: Path) -> None:
    directory = tmp_path / "checkpoints"
    directory.mkdir()
    leftover = directory / ".last.ckpt.0123abcd.partial"  # what a SIGKILL during a write leaves
    leftover.write_bytes(b"partial bytes")
    other = directory / ".best-epoch=1.ckpt.0123abcd.partial"  # a target that may never be written again
    other.write_bytes(b"partial bytes")
    AtomicCheckpointIO().save_checkpoint({"epoch": 3}, directory / "last.ckpt")
    assert sorted(p.name for p in directory.iterdir()) == ["last.ckpt"]


class _Payload:
    """Runs ``os.mkdir(marker)`` when unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (str(self.marker),)


def test_checkpoint_io_loads_weights_only_whatever_is_asked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "last.ckpt"
    torch.save({"epoch": 0, "payload": _Payload(marker)}, path)
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")  # would make torch.load's default unsafe
    io = AtomicCheckpointIO()
    with pytest.raises(CheckpointError, match="refusing to load checkpoint"):
        io.load_checkpoint(path)
    with pytest.raises(CheckpointError, match="weights_only=False"):
        io.load_checkpoint(path, weights_only=False)
    assert not marker.exists()
    safe = tmp_path / "safe.ckpt"
    io.save_checkpoint({"epoch": 2, "weights": torch.ones(2)}, safe)
    assert io.load_checkpoint(safe)["epoch"] == 2


@pytest.mark.slow
def test_resuming_from_a_checkpoint_with_pickled_code_is_refused(tmp_path: Path) -> None:
    data_root = tmp_path / "sf3d"
    generate_dataset("sf3d", data_root, num_images=4, seed=0, image_size=(64, 64), views_per_scene=2)
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    marker = tmp_path / "pwned"
    torch.save({"epoch": 0, "global_step": 2, "payload": _Payload(marker)}, run_dir / "checkpoints" / "last.ckpt")
    env = {**os.environ, "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}
    resumed = subprocess.run(fit_command(data_root, run_dir, "--ckpt_path=last"), cwd=REPO, env=env,
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode != 0
    assert "refusing to load checkpoint" in resumed.stderr, resumed.stderr[-3000:]
    assert not marker.exists(), "code in the checkpoint ran"
