"""Where the shipped files are: in the source tree, or installed under ``share/segaff_ros`` (colcon, pip).

Torch-free, so that light callers (the demo's launcher) can name the default checkpoint cheaply.
"""
from __future__ import annotations

from pathlib import Path

DEFAULT_CHECKPOINT_NAME = "segaff_default.ckpt"
SHARE_PACKAGE = "segaff_ros"


def find_default_checkpoint(package_dir: Path = Path(__file__).resolve().parent) -> Path:
    """The shipped checkpoint for the ``segaff_core`` package at ``package_dir``.

    ``checkpoints/segaff_default.ckpt`` beside the package in a source tree (editable install, colcon
    ``--symlink-install``), else ``<prefix>/share/segaff_ros/checkpoints/`` of an installed package
    (``<prefix>/lib/pythonX.Y/site-packages/segaff_core``, where setup.py's data_files put it). When
    neither exists, the source-tree path, which error messages then name.
    """
    source = package_dir.parent / "checkpoints" / DEFAULT_CHECKPOINT_NAME
    candidates = [source]
    if len(package_dir.parents) > 3:
        candidates.append(package_dir.parents[3] / "share" / SHARE_PACKAGE / "checkpoints" / DEFAULT_CHECKPOINT_NAME)
    return next((path for path in candidates if path.is_file()), source)
