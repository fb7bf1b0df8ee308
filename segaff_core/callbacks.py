"""Trainer plug-ins of SegAffordance that Lightning does not ship."""
from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional

import cv2
import lightning.pytorch as pl
import numpy as np
import torch
from fsspec.implementations.local import LocalFileSystem
from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.fabric.utilities.types import _PATH
from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.plugins.io import TorchCheckpointIO

from segaff_core.checkpoint import CheckpointError, read_checkpoint
from segaff_core.crash_reports import enable_crash_tracebacks


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` whose local writes are atomic on every file system layout and whose loads
    (``--ckpt_path`` of every Trainer entry point) are weights-only, whatever the caller or the
    environment (``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD``) asks: a checkpoint holding pickled code is refused
    with :class:`~segaff_core.checkpoint.CheckpointError` before anything in it runs.

    Lightning's ``_atomic_save`` stages the file with ``tempfile.mkstemp()`` (in ``$TMPDIR``) and
    ``shutil.move``\\ s it over the target: that is a rename only when ``$TMPDIR`` and the checkpoint
    directory share a file system. On a cluster (node-local ``/tmp``, checkpoints on NFS or Lustre) it
    becomes a copy into the target, and a kill during the copy leaves a truncated ``last.ckpt``.

    Here the bytes go to a hidden temporary file next to the target, are fsynced, and replace the
    target with ``os.replace``: a reader sees the old file or the new one, never a part. Temporary
    files that a killed process left behind are removed by the next write into the directory. Remote
    paths (``s3://``, ...) and ``storage_options`` keep Lightning's behaviour.
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: _PATH, storage_options: Optional[Any] = None
    ) -> None:
        if storage_options is not None or not isinstance(get_filesystem(path), LocalFileSystem):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        # Saves run one at a time (rank 0; AsyncCheckpointIO uses one thread): any temporary file here is
        # what a killed run left, also of a target that is never written again (a best-epoch=N.ckpt).
        for leftover in target.parent.glob(".*.partial"):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()
        # Not ``*.ckpt``: ModelCheckpoint never mistakes a leftover (after a kill) for a checkpoint.
        partial = target.with_name(f".{target.name}.{uuid.uuid4().hex}.partial")
        try:
            with open(partial, "xb") as stream:
                torch.save(checkpoint, stream)
                stream.flush()
                os.fsync(stream.fileno())
            os.replace(partial, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                partial.unlink()
            raise

    def load_checkpoint(
        self,
        path: _PATH,
        map_location: Optional[Any] = lambda storage, loc: storage,
        weights_only: Optional[bool] = None,
    ) -> dict[str, Any]:
        if weights_only is False:
            raise CheckpointError(
                f"refusing to load {path} with weights_only=False: SegAffordance checkpoints hold only tensors "
                "and plain values, and unpickling anything else can run code"
            )
        if isinstance(get_filesystem(path), LocalFileSystem):
            return read_checkpoint(path)  # onto the CPU, as Lightning's default map_location; clear errors
        return super().load_checkpoint(path, map_location, weights_only=True)


class PredictionWriter(BasePredictionWriter):
    """Writes what ``predict`` computes: ``<output_dir>/predictions.jsonl`` (a line per sample: its
    ``index`` in the data set, ``image_id``, ``description`` and the
    :class:`~segaff_core.inference.AffordancePrediction` fields but the mask) and
    ``<output_dir>/masks/<index>.png`` (mono8, 255 = part; ``mask_file`` in the line).

    ``output_dir`` None: ``<trainer.default_root_dir>/predictions``. A run starts the files afresh; each
    batch's lines are appended as they come, so a killed run keeps what it predicted. Under DDP each rank
    appends to its own ``predictions.rank<N>.jsonl``; at the end rank 0 merges them into
    ``predictions.jsonl``, every sample once (the sampler repeats some to give the ranks equal shares) and
    in data set order, and removes them.
    """

    LINES_FILE = "predictions.jsonl"

    def __init__(self, output_dir: Optional[str] = None) -> None:
        super().__init__(write_interval="batch")
        self.output_dir = output_dir

    def _directory(self, trainer: "pl.Trainer") -> Path:
        return Path(self.output_dir or os.path.join(trainer.default_root_dir, "predictions"))

    def _lines_file(self, trainer: "pl.Trainer", rank: Optional[int] = None) -> Path:
        """This process's lines file (``rank``'s under DDP)."""
        if trainer.world_size == 1:
            return self._directory(trainer) / self.LINES_FILE
        return self._directory(trainer) / f"predictions.rank{trainer.global_rank if rank is None else rank}.jsonl"

    def on_predict_start(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        directory = self._directory(trainer)
        (directory / "masks").mkdir(parents=True, exist_ok=True)
        self._lines_file(trainer).write_text("")
        if trainer.world_size > 1 and trainer.is_global_zero:
            (directory / self.LINES_FILE).unlink(missing_ok=True)  # an earlier run's: not mixed with this one

    def write_on_batch_end(
        self,
        trainer: "pl.Trainer",
        pl_module: "pl.LightningModule",
        prediction: Any,
        batch_indices: Optional[Sequence[int]],
        batch: Any,
        batch_idx: int,
        dataloader_idx: int,
    ) -> None:
        if prediction is None:  # every sample of the batch was skipped as bad
            return
        directory = self._directory(trainer)
        lines = []
        for index, image_id, description, result in zip(
            prediction["index"], prediction["image_id"], prediction["description"], prediction["predictions"]
        ):
            mask_file = f"masks/{int(index):06d}.png"
            _write_png_atomically(directory / mask_file, result.mask.astype(np.uint8) * 255)
            lines.append(json.dumps({"index": int(index), "image_id": image_id, "description": description,
                                     "mask_file": mask_file, **result.to_dict(include_mask=False)}))
        with open(self._lines_file(trainer), "a", encoding="utf-8") as stream:
            stream.write("".join(line + "\n" for line in lines))

    def on_predict_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        """Under DDP: once every rank has written, rank 0 merges their lines (see the class docstring)."""
        if trainer.world_size == 1:
            return
        trainer.strategy.barrier("segaff_predictions_written")
        if not trainer.is_global_zero:
            return
        rank_files = [self._lines_file(trainer, rank) for rank in range(trainer.world_size)]
        unique: dict[int, str] = {}
        for rank_file in rank_files:
            for line in rank_file.read_text(encoding="utf-8").splitlines():
                unique.setdefault(int(json.loads(line)["index"]), line)
        merged = self._directory(trainer) / self.LINES_FILE
        partial = merged.with_name(f".{merged.name}.partial")
        partial.write_text("".join(unique[index] + "\n" for index in sorted(unique)), encoding="utf-8")
        os.replace(partial, merged)
        for rank_file in rank_files:
            rank_file.unlink()


def _write_png_atomically(path: Path, image: np.ndarray) -> None:
    """``image`` as a PNG at ``path`` through a temporary file and a rename: two ranks writing the same
    sample's mask (a padding repeat) never interleave."""
    ok, encoded = cv2.imencode(".png", image)
    if not ok:
        raise OSError(f"cannot encode {path} as PNG")
    partial = path.with_name(f".{path.name}.{uuid.uuid4().hex}.partial")
    partial.write_bytes(encoded.tobytes())
    os.replace(partial, path)


class CrashTracebacks(pl.Callback):
    """Keeps native-crash tracebacks armed (:mod:`segaff_core.crash_reports`) through every Trainer run.

    Lightning's signal connector restores the handlers it saw at the start of a run when the run ends, and
    it sees faulthandler's as ``SIG_DFL``: this callback's ``setup`` and ``teardown`` (called after that
    restore) arm faulthandler again.
    """

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        enable_crash_tracebacks()

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        enable_crash_tracebacks()
