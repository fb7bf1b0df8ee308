"""Trainer plug-ins of SegAffordance that Lightning does not ship."""
from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path
from typing import Any, Optional

import torch
from fsspec.implementations.local import LocalFileSystem
from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.fabric.utilities.types import _PATH
from lightning.pytorch.plugins.io import TorchCheckpointIO


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` whose local writes are atomic on every file system layout.

    Lightning's ``_atomic_save`` stages the file with ``tempfile.mkstemp()`` (in ``$TMPDIR``) and
    ``shutil.move``\\ s it over the target: that is a rename only when ``$TMPDIR`` and the checkpoint
    directory share a file system. On a cluster (node-local ``/tmp``, checkpoints on NFS or Lustre) it
    becomes a copy into the target, and a kill during the copy leaves a truncated ``last.ckpt``.

    Here the bytes go to a hidden temporary file next to the target, are fsynced, and replace the
    target with ``os.replace``: a reader sees the old file or the new one, never a part. Remote paths
    (``s3://``, ...) and ``storage_options`` keep Lightning's behaviour.
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: _PATH, storage_options: Optional[Any] = None
    ) -> None:
        if storage_options is not None or not isinstance(get_filesystem(path), LocalFileSystem):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
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
