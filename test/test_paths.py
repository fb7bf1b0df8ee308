"""The shipped checkpoint is found in a source tree and in an installed layout (colcon, pip)."""
import runpy
from pathlib import Path

import pytest
import setuptools

from segaff_core.paths import DEFAULT_CHECKPOINT_NAME, find_default_checkpoint

REPO = Path(__file__).resolve().parents[1]


def test_source_tree_checkpoint() -> None:
    assert find_default_checkpoint(REPO / "segaff_core") == REPO / "checkpoints" / DEFAULT_CHECKPOINT_NAME


def test_installed_layout_finds_the_share_copy(tmp_path: Path) -> None:
    prefix = tmp_path / "install" / "segaff_ros"
    package_dir = prefix / "lib" / "python3.12" / "site-packages" / "segaff_core"
    package_dir.mkdir(parents=True)
    source_path = package_dir.parent / "checkpoints" / DEFAULT_CHECKPOINT_NAME
    assert find_default_checkpoint(package_dir) == source_path  # nothing anywhere: the path errors name
    installed = prefix / "share" / "segaff_ros" / "checkpoints" / DEFAULT_CHECKPOINT_NAME
    installed.parent.mkdir(parents=True)
    installed.write_bytes(b"checkpoint")
    assert find_default_checkpoint(package_dir) == installed


def test_setup_installs_the_checkpoint_where_it_is_looked_for(monkeypatch: pytest.MonkeyPatch) -> None:
    captured: dict = {}
    monkeypatch.setattr(setuptools, "setup", lambda **kwargs: captured.update(kwargs))
    monkeypatch.chdir(REPO)
    runpy.run_path(str(REPO / "setup.py"))
    data_files = dict(captured["data_files"])
    assert f"checkpoints/{DEFAULT_CHECKPOINT_NAME}" in data_files["share/segaff_ros/checkpoints"]
