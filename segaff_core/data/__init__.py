"""Data sets (OPDReal, OPDMulti, processed SceneFun3D) read as they are stored, and their DataModules.

Every sample follows the data contract of docs/DESIGN.md. With ``skip_bad=True`` a bad sample is
``None`` and :func:`collate_samples` drops it from its batch.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from segaff_core.data.common import DatasetError, UnsafePathError, collate_samples
from segaff_core.data.opd import OPDDataset
from segaff_core.data.sf3d import SF3DDataset

if TYPE_CHECKING:
    from segaff_core.data.datamodule import OPDDataModule, SF3DDataModule, SkippedSamplesReport

#: Imported at first use: they need Lightning (~2 s), which inference (the node, ``segaff predict``) never does.
_DATAMODULE_NAMES = ("OPDDataModule", "SF3DDataModule", "SkippedSamplesReport")


def __getattr__(name: str) -> Any:
    if name in _DATAMODULE_NAMES:
        return getattr(importlib.import_module("segaff_core.data.datamodule"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DatasetError",
    "OPDDataModule",
    "OPDDataset",
    "SF3DDataModule",
    "SF3DDataset",
    "SkippedSamplesReport",
    "UnsafePathError",
    "collate_samples",
]
