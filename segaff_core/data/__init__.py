"""Data sets (OPDReal, OPDMulti, processed SceneFun3D) read as they are stored, and their DataModules.

Every sample follows the data contract of docs/DESIGN.md. With ``skip_bad=True`` a bad sample is
``None`` and :func:`collate_samples` drops it from its batch.
"""
from segaff_core.data.common import DatasetError, UnsafePathError, collate_samples
from segaff_core.data.datamodule import OPDDataModule, SF3DDataModule, SkippedSamplesReport
from segaff_core.data.opd import OPDDataset
from segaff_core.data.sf3d import SF3DDataset

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
