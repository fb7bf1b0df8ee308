"""ROS test set-up: every test process gets its own DDS domain, localhost-only, before rclpy starts."""
from __future__ import annotations

from pathlib import Path

import pytest

from ros_helpers import isolate_ros_environment

isolate_ros_environment()


@pytest.fixture(scope="session")
def small_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint of ModelParams.small() with random (seeded) weights, written like a trained one."""
    torch = pytest.importorskip("torch")
    from segaff_core.checkpoint import save_checkpoint
    from segaff_core.config import ModelParams
    from segaff_core.model import build_model

    torch.manual_seed(0)
    params = ModelParams.small()
    return save_checkpoint(build_model(params), params, tmp_path_factory.mktemp("checkpoint") / "small.ckpt")
