"""A node that cannot start says why and exits non-zero (checkpoint and parameter errors)."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

pytest.importorskip("rclpy", reason="rclpy (ROS 2) is not installed")
pytest.importorskip("segaff_msgs.msg", reason="segaff_msgs is not built (scripts/setup.sh builds it)")

from ros_helpers import NodeProcess  # noqa: E402

pytestmark = pytest.mark.ros

EXIT_TIMEOUT_S = 180.0  # the processes start together on two cores


def other_config_checkpoint(small_checkpoint: Path, path: Path) -> Path:
    """The small checkpoint's weights with model_params of another configuration (a wider FFN)."""
    import torch

    checkpoint = torch.load(small_checkpoint, map_location="cpu", weights_only=True)
    params = checkpoint["hyper_parameters"]["model_params"]
    checkpoint["hyper_parameters"]["model_params"] = {**params, "dim_ffn": params["dim_ffn"] * 2}
    torch.save(checkpoint, path)
    return path


@pytest.fixture(scope="module")
def failed_starts(
    small_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, NodeProcess]]:
    """Every bad configuration started at once (they run concurrently to save time)."""
    tmp = tmp_path_factory.mktemp("startup")
    garbage = tmp / "garbage.ckpt"
    garbage.write_bytes(b"this is not a checkpoint" * 100)
    cases = {
        "missing-checkpoint": ["-p", f"checkpoint:={tmp / 'missing.ckpt'}"],
        "not-a-checkpoint": ["-p", f"checkpoint:={garbage}"],
        "checkpoint-of-another-config": [
            "-p", f"checkpoint:={other_config_checkpoint(small_checkpoint, tmp / 'other.ckpt')}"
        ],
        "parameter-out-of-range": ["-p", f"checkpoint:={small_checkpoint}", "-p", "mask_threshold:=1.5"],
        "unknown-device": ["-p", f"checkpoint:={small_checkpoint}", "-p", "device:=tpu"],
        "unknown-compile-mode": ["-p", f"checkpoint:={small_checkpoint}", "-p", "compile_mode:=fastest"],
    }
    processes = {name: NodeProcess(tmp / f"{name}.log", args) for name, args in cases.items()}
    yield processes
    for process in processes.values():
        process.stop()


@pytest.mark.parametrize(
    "case, expected",
    [
        ("missing-checkpoint", "missing.ckpt' does not exist"),
        ("not-a-checkpoint", "cannot load checkpoint"),
        ("checkpoint-of-another-config", "do not fit its model_params"),
        ("parameter-out-of-range", "parameter 'mask_threshold'"),
        ("unknown-device", "parameter 'device' is 'tpu'"),
        ("unknown-compile-mode", "parameter 'compile_mode' is 'fastest'"),
    ],
)
def test_bad_start_exits_non_zero_with_a_clear_message(
    failed_starts: dict[str, NodeProcess], case: str, expected: str
) -> None:
    process = failed_starts[case]
    code = process.wait_exit(EXIT_TIMEOUT_S)
    log = process.log()
    assert code is not None, f"{case}: the node is still running:\n{log[-2000:]}"
    assert code != 0, f"{case}: exit code 0:\n{log[-2000:]}"
    assert "cannot start" in log and expected in log, f"{case}: unclear message:\n{log[-2000:]}"
    assert "Traceback" not in log, f"{case}: a traceback instead of a message:\n{log[-2000:]}"
