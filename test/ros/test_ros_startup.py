"""A node process with a bad configuration: ``configure`` (autostart) fails with a clear message, the node stays
up unconfigured, and a parameter set over DDS (what ``ros2 param set`` does) followed by the lifecycle
``configure`` and ``activate`` transitions (what ``ros2 lifecycle set`` does) makes it work."""
from __future__ import annotations

import importlib.util
import re
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any, Iterator

import pytest

pytest.importorskip("rclpy", reason="rclpy (ROS 2) is not installed")
pytest.importorskip("segaff_msgs.msg", reason="segaff_msgs is not built (scripts/setup.sh builds it)")
pytest.importorskip("lifecycle_msgs.srv", reason="lifecycle_msgs is not installed")

from ros_helpers import NODE, REPO_ROOT, NodeProcess, Probe, wait_until  # noqa: E402

pytestmark = pytest.mark.ros

START_TIMEOUT_S = 180.0  # the processes start together on two cores


def other_config_checkpoint(small_checkpoint: Path, path: Path) -> Path:
    """The small checkpoint's weights with model_params of another configuration (a wider FFN)."""
    import torch

    checkpoint = torch.load(small_checkpoint, map_location="cpu", weights_only=True)
    params = checkpoint["hyper_parameters"]["model_params"]
    checkpoint["hyper_parameters"]["model_params"] = {**params, "dim_ffn": params["dim_ffn"] * 2}
    torch.save(checkpoint, path)
    return path


CASES = {
    "missing-checkpoint": ("missing.ckpt' does not exist", None),
    "not-a-checkpoint": ("cannot load checkpoint", None),
    "checkpoint-of-another-config": ("do not fit its model_params", None),
    "parameter-out-of-range": ("parameter 'mask_threshold'", ("mask_threshold", 0.5)),
    "unknown-device": ("parameter 'device' is 'tpu'", ("device", "cpu")),
    "unknown-compile-mode": ("parameter 'compile_mode' is 'fastest'", ("compile_mode", "default")),
}


@pytest.fixture(scope="module")
def failed_starts(
    small_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, NodeProcess]]:
    """Every bad configuration started at once (they run concurrently to save time), each in its namespace."""
    tmp = tmp_path_factory.mktemp("startup")
    garbage = tmp / "garbage.ckpt"
    garbage.write_bytes(b"this is not a checkpoint" * 100)
    good = ["-p", f"checkpoint:={small_checkpoint}"]
    arguments = {
        "missing-checkpoint": ["-p", f"checkpoint:={tmp / 'missing.ckpt'}"],
        "not-a-checkpoint": ["-p", f"checkpoint:={garbage}"],
        "checkpoint-of-another-config": [
            "-p", f"checkpoint:={other_config_checkpoint(small_checkpoint, tmp / 'other.ckpt')}"
        ],
        "parameter-out-of-range": [*good, "-p", "mask_threshold:=1.5"],
        "unknown-device": [*good, "-p", "device:=tpu"],
        "unknown-compile-mode": [*good, "-p", "compile_mode:=fastest"],
    }
    common = ["-p", "input_height:=64", "-p", "input_width:=64", "-p", "backend:=torch"]
    processes = {
        name: NodeProcess(tmp / f"{name}.log", [*args, *common, "-r", f"__ns:=/{name.replace('-', '_')}"])
        for name, args in arguments.items()
    }
    yield processes
    for process in processes.values():
        process.stop()


@pytest.fixture(scope="module")
def probe() -> Iterator[Probe]:
    probe = Probe("segaff_startup_probe")
    yield probe
    probe.close()


def call(probe: Probe, srv_type: type, name: str, request: Any, timeout_s: float = 60.0,
         resend_after_s: float = 15.0) -> Any:
    """Call a service; a request that a just-discovered server has not answered in ``resend_after_s`` is sent
    again (on a loaded machine the first one can go out before the server's side of the service matched)."""
    client = probe.node.create_client(srv_type, name)
    try:
        assert client.wait_for_service(timeout_sec=timeout_s), f"{name} is not offered"
        for _ in range(max(int(timeout_s // resend_after_s), 1)):
            done = threading.Event()
            future = client.call_async(request)
            future.add_done_callback(lambda _: done.set())
            if done.wait(resend_after_s):
                return future.result()
            client.remove_pending_request(future)
        raise AssertionError(f"{name} did not answer within {timeout_s} s")
    finally:
        probe.node.destroy_client(client)


def lifecycle_state(probe: Probe, node: str) -> str:
    from lifecycle_msgs.srv import GetState

    return call(probe, GetState, f"{node}/get_state", GetState.Request()).current_state.label


def change_state(probe: Probe, node: str, transition_id: int) -> bool:
    from lifecycle_msgs.msg import Transition
    from lifecycle_msgs.srv import ChangeState

    request = ChangeState.Request(transition=Transition(id=transition_id))
    return call(probe, ChangeState, f"{node}/change_state", request, timeout_s=120.0, resend_after_s=120.0).success


def set_parameter(probe: Probe, node: str, name: str, value: Any) -> Any:
    from rcl_interfaces.srv import SetParameters
    from rclpy.parameter import Parameter

    request = SetParameters.Request(parameters=[Parameter(name, value=value).to_parameter_msg()])
    return call(probe, SetParameters, f"{node}/set_parameters", request).results[0]


@pytest.mark.parametrize("case", list(CASES))
def test_bad_configuration_fails_configure_and_the_node_stays_up(
    failed_starts: dict[str, NodeProcess], probe: Probe, small_checkpoint: Path, case: str
) -> None:
    from lifecycle_msgs.msg import Transition

    process = failed_starts[case]
    expected, fix = CASES[case]
    node = f"/{case.replace('-', '_')}{NODE}"
    logged = wait_until(lambda: "autostart: not configured" in process.log() or not process.alive(), START_TIMEOUT_S)
    log = process.log()
    assert logged and process.alive(), f"{case}: the node did not stay up:\n{log[-2000:]}"
    assert "configure failed" in log and expected in log, f"{case}: unclear message:\n{log[-2000:]}"
    assert "Traceback" not in log, f"{case}: a traceback instead of a message:\n{log[-2000:]}"
    assert lifecycle_state(probe, node) == "unconfigured"

    name, value = fix or ("checkpoint", str(small_checkpoint))
    result = set_parameter(probe, node, name, value)
    assert result.successful, result.reason
    assert change_state(probe, node, Transition.TRANSITION_CONFIGURE), f"{case}:\n{process.log()[-2000:]}"
    assert change_state(probe, node, Transition.TRANSITION_ACTIVATE)
    assert lifecycle_state(probe, node) == "active"
    refused = set_parameter(probe, node, "device", "cpu")
    assert not refused.successful and "applies at configure" in refused.reason


@pytest.mark.skipif(importlib.util.find_spec("openvino") is None, reason="openvino is not installed")
@pytest.mark.parametrize("backend", ["openvino", "auto"])
def test_a_node_reconfigured_on_openvino_stops_cleanly_on_ctrl_c(
    probe: Probe, small_checkpoint: Path, tmp_path: Path, backend: str
) -> None:
    """configure -> cleanup -> configure frees one OpenVINO engine and builds another; the Ctrl-C after it must
    still reach the node's handler (two OpenVINO Cores freed in creation order once left signals undeliverable)."""
    from lifecycle_msgs.msg import Transition

    namespace = f"reconfigure_{backend}"
    process = NodeProcess(tmp_path / "node.log", [
        "-p", f"checkpoint:={small_checkpoint}", "-p", "input_height:=64", "-p", "input_width:=64",
        "-p", f"backend:={backend}", "-p", "autostart:=false", "-r", f"__ns:=/{namespace}"])
    try:
        node = f"/{namespace}{NODE}"
        for transition in (Transition.TRANSITION_CONFIGURE, Transition.TRANSITION_CLEANUP,
                           Transition.TRANSITION_CONFIGURE):
            assert change_state(probe, node, transition), process.log()[-3000:]
        assert lifecycle_state(probe, node) == "inactive"
    finally:
        code = process.stop()
    log = process.log()
    assert code == 0, f"exit {code}:\n{log[-3000:]}"
    assert len(re.findall(r"backend openvino", log)) == 2, log[-3000:]
    assert "Traceback" not in log and "Fatal Python error" not in log, log[-3000:]


def test_a_native_crash_in_the_node_prints_a_traceback(small_checkpoint: Path, tmp_path: Path) -> None:
    """A segmentation fault inside the node process (here in its start) prints the Python stack of every thread."""
    script = textwrap.dedent("""
        import ctypes, sys
        from segaff_ros import perception_node

        def crash_in_native_code(node):
            return ctypes.string_at(0)  # reads address 0: SIGSEGV inside a C function

        perception_node.PerceptionNode.autostart = crash_in_native_code
        sys.exit(perception_node.main(sys.argv[1:]))
    """)
    completed = subprocess.run(
        [sys.executable, "-c", script, "--ros-args", "-p", f"checkpoint:={small_checkpoint}",
         "-r", "__ns:=/native_crash"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert completed.returncode == -signal.SIGSEGV, f"exit {completed.returncode}\n{completed.stderr[-3000:]}"
    assert "Fatal Python error: Segmentation fault" in completed.stderr, completed.stderr[-3000:]
    assert "crash_in_native_code" in completed.stderr, completed.stderr[-3000:]
