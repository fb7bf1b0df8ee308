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


#: Bad checkpoints, each refused at configure with its message, in the order one process meets them.
CHECKPOINT_CASES = {
    "missing-checkpoint": "missing.ckpt' does not exist",
    "not-a-checkpoint": "cannot load checkpoint",
    "checkpoint-of-another-config": "do not fit its model_params",
}
#: Bad start-time overrides (all given to one process), named one by one until ``ros2 param set`` fixes them.
OVERRIDE_CASES = {
    "mask_threshold": ("1.5", "parameter 'mask_threshold'", 0.5),
    "device": ("tpu", "parameter 'device' is 'tpu'", "cpu"),
    "compile_mode": ("fastest", "parameter 'compile_mode' is 'fastest'", "default"),
}
COMMON = ["-p", "input_height:=64", "-p", "input_width:=64", "-p", "backend:=torch"]


@pytest.fixture(scope="module")
def failed_starts(
    small_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, tuple[NodeProcess, dict[str, Path]]]]:
    """Two nodes started at once (they load concurrently to save time), each in its namespace: one on a missing
    checkpoint (the other bad checkpoints are set over DDS later), one with every bad override."""
    tmp = tmp_path_factory.mktemp("startup")
    garbage = tmp / "garbage.ckpt"
    garbage.write_bytes(b"this is not a checkpoint" * 100)
    checkpoints = {
        "missing-checkpoint": tmp / "missing.ckpt",
        "not-a-checkpoint": garbage,
        "checkpoint-of-another-config": other_config_checkpoint(small_checkpoint, tmp / "other.ckpt"),
    }
    overrides = [arg for name, (value, _, _) in OVERRIDE_CASES.items() for arg in ("-p", f"{name}:={value}")]
    processes = {
        "checkpoints": (NodeProcess(tmp / "checkpoints.log", [
            "-p", f"checkpoint:={checkpoints['missing-checkpoint']}", *COMMON, "-r", "__ns:=/bad_checkpoints"]),
            checkpoints),
        "overrides": (NodeProcess(tmp / "overrides.log", [
            "-p", f"checkpoint:={small_checkpoint}", *overrides, *COMMON, "-r", "__ns:=/bad_overrides"]), {}),
    }
    yield processes
    for process, _ in processes.values():
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


def assert_up_and_unconfigured(process: NodeProcess, probe: Probe, node: str, expected: str) -> None:
    """The node logged ``expected`` in a configure failure, with no traceback, and is still up, unconfigured."""
    log = process.log()
    assert process.alive(), f"the node did not stay up:\n{log[-2000:]}"
    assert "configure failed" in log and expected in log, f"unclear message, expected {expected!r}:\n{log[-2000:]}"
    assert "Traceback" not in log, f"a traceback instead of a message:\n{log[-2000:]}"
    assert lifecycle_state(probe, node) == "unconfigured"


def wait_for_autostart_failure(process: NodeProcess) -> None:
    logged = wait_until(lambda: "autostart: not configured" in process.log() or not process.alive(), START_TIMEOUT_S)
    assert logged and process.alive(), f"the node did not stay up:\n{process.log()[-2000:]}"


def assert_configures_and_activates(process: NodeProcess, probe: Probe, node: str) -> None:
    from lifecycle_msgs.msg import Transition

    assert change_state(probe, node, Transition.TRANSITION_CONFIGURE), process.log()[-2000:]
    assert change_state(probe, node, Transition.TRANSITION_ACTIVATE)
    assert lifecycle_state(probe, node) == "active"
    refused = set_parameter(probe, node, "device", "cpu")
    assert not refused.successful and "applies at configure" in refused.reason


def test_bad_checkpoints_fail_configure_and_the_node_stays_up_until_a_good_one_is_set(
    failed_starts: dict[str, tuple[NodeProcess, dict[str, Path]]], probe: Probe, small_checkpoint: Path
) -> None:
    """Started on a missing checkpoint; then each bad one set over DDS fails its configure with its own message;
    the good one configures and activates."""
    from lifecycle_msgs.msg import Transition

    process, checkpoints = failed_starts["checkpoints"]
    node = f"/bad_checkpoints{NODE}"
    wait_for_autostart_failure(process)
    for case, expected in CHECKPOINT_CASES.items():
        if case != "missing-checkpoint":
            result = set_parameter(probe, node, "checkpoint", str(checkpoints[case]))
            assert result.successful, result.reason
            assert not change_state(probe, node, Transition.TRANSITION_CONFIGURE), case
        assert_up_and_unconfigured(process, probe, node, expected)
    result = set_parameter(probe, node, "checkpoint", str(small_checkpoint))
    assert result.successful, result.reason
    assert_configures_and_activates(process, probe, node)


def test_bad_overrides_are_named_until_each_is_fixed(
    failed_starts: dict[str, tuple[NodeProcess, dict[str, Path]]], probe: Probe
) -> None:
    """Every configure failure names a bad start-time override; after each ``ros2 param set`` of a valid value
    the next configure names the next one, and configure succeeds once all are fixed."""
    from lifecycle_msgs.msg import Transition

    process, _ = failed_starts["overrides"]
    node = f"/bad_overrides{NODE}"
    wait_for_autostart_failure(process)
    cases = list(OVERRIDE_CASES.items())
    assert_up_and_unconfigured(process, probe, node, cases[0][1][1])
    for (name, (_, expected, fix)), following in zip(cases, [*cases[1:], None]):
        result = set_parameter(probe, node, name, fix)
        assert result.successful, result.reason
        if following is None:
            break
        logged = len(process.log())
        assert not change_state(probe, node, Transition.TRANSITION_CONFIGURE), name
        failure = process.log()[logged:]
        assert expected not in failure and following[1][1] in failure, failure
    assert_configures_and_activates(process, probe, node)


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
