"""Trainer plug-ins of SegAffordance that Lightning does not ship."""
from __future__ import annotations

import contextlib
import glob
import os
import uuid
from pathlib import Path
from typing import Any, Optional

import torch
from fsspec.implementations.local import LocalFileSystem
from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.fabric.utilities.types import _PATH
from lightning.pytorch.plugins.io import TorchCheckpointIO

from segaff_core.checkpoint import CheckpointError, read_checkpoint


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
    target with ``os.replace``: a reader sees the old file or the new one, never a part. A temporary
    file that a killed process left behind is removed by the next write of the same target. Remote
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
        for leftover in target.parent.glob(f".{glob.escape(target.name)}.*.partial"):  # from a killed run
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
