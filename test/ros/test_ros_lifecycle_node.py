"""The perception node's lifecycle and runtime parameters, in this process (test/ros/in_process.py).

Transitions (configure / activate / deactivate / cleanup / shutdown, autostart), a bad configuration that
fails ``configure`` until a ``set_parameters`` fixes it, runtime parameters applied or refused with the
reason, model parameters refused while configured, and Python logging forwarded once.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Iterator

import pytest

pytest.importorskip("rclpy", reason="rclpy (ROS 2) is not installed")
pytest.importorskip("segaff_msgs.msg", reason="segaff_msgs is not built (scripts/setup.sh builds it)")
pytest.importorskip("lifecycle_msgs.srv", reason="lifecycle_msgs is not installed")

from rclpy.lifecycle import TransitionCallbackReturn  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402

from in_process import NAMESPACE, NODE, SpunNode, call_service, lifecycle_state, poll  # noqa: E402
from segaff_msgs.srv import Query  # noqa: E402

pytestmark = pytest.mark.ros

SUCCESS, FAILURE = TransitionCallbackReturn.SUCCESS, TransitionCallbackReturn.FAILURE
CAMERA_TOPICS = ("rgb/image", "depth/image", "rgb/camera_info")


@pytest.fixture
def spun(small_checkpoint: Path, request: pytest.FixtureRequest) -> Iterator[SpunNode]:
    marker = request.node.get_closest_marker("node_parameters")
    spun = SpunNode(small_checkpoint, **(marker.kwargs if marker else {}))
    try:
        yield spun
    finally:
        spun.close()


def camera_subscriptions(spun: SpunNode) -> int:
    return sum(spun.node.count_subscribers(f"/{NAMESPACE}/{topic}") for topic in CAMERA_TOPICS)


def query(spun: SpunNode, text: str = "open the drawer") -> Any:
    return call_service(spun.helper, Query, f"{NODE}/query", Query.Request(instruction=text))


def set_one(spun: SpunNode, name: str, value: Any) -> Any:
    (result,) = spun.node.set_parameters([Parameter(name, value=value)])
    return result


def test_transitions_load_subscribe_stop_and_free(spun: SpunNode) -> None:
    node = spun.node
    assert lifecycle_state(spun.helper) == "unconfigured"
    assert node._predictor is None and camera_subscriptions(spun) == 0
    refused = query(spun)
    assert not refused.success and "not active" in refused.message

    assert node.trigger_configure() == SUCCESS
    assert lifecycle_state(spun.helper) == "inactive"
    assert node._predictor is not None and camera_subscriptions(spun) == 0
    assert "not active" in query(spun).message

    assert node.trigger_activate() == SUCCESS
    assert lifecycle_state(spun.helper) == "active"
    poll(lambda: camera_subscriptions(spun) == 3)
    assert node._worker is not None
    with spun.feed(10.0):
        answered = poll(lambda: (response := query(spun)).success and response)
    assert answered.result.instruction == "open the drawer"

    predictor = node._predictor
    assert node.trigger_deactivate() == SUCCESS
    assert lifecycle_state(spun.helper) == "inactive"
    assert camera_subscriptions(spun) == 0 and node._worker is None
    assert node._predictor is predictor, "deactivate must keep the model"
    assert "not active" in query(spun).message

    assert node.trigger_cleanup() == SUCCESS
    assert lifecycle_state(spun.helper) == "unconfigured"
    assert node._predictor is None and node._outputs is None

    assert node.trigger_configure() == SUCCESS and node.trigger_activate() == SUCCESS
    poll(lambda: camera_subscriptions(spun) == 3)
    assert node.trigger_shutdown() == SUCCESS  # from active
    assert node._predictor is None and camera_subscriptions(spun) == 0
    assert lifecycle_state(spun.helper) == "finalized"


@pytest.mark.node_parameters(autostart=True)
def test_autostart_configures_and_activates(spun: SpunNode) -> None:
    assert spun.node.autostart()  # what main() calls before spinning
    assert lifecycle_state(spun.helper) == "active"
    poll(lambda: camera_subscriptions(spun) == 3)


def test_autostart_false_stays_unconfigured_and_autostart_is_read_only(spun: SpunNode) -> None:
    assert not spun.node.autostart()
    assert lifecycle_state(spun.helper) == "unconfigured"
    assert not set_one(spun, "autostart", True).successful
    assert spun.node.describe_parameter("autostart").read_only


@pytest.mark.parametrize(
    "bad, expected, fix",
    [
        ({"mask_threshold": 1.5}, "parameter 'mask_threshold'", ("mask_threshold", 0.4)),
        ({"device": "tpu"}, "parameter 'device' is 'tpu'", ("device", "cpu")),
        ({"checkpoint": "/nonexistent/model.ckpt"}, "model.ckpt' does not exist", None),
        ({"backend": "fastest"}, "parameter 'backend' is 'fastest'", ("backend", "torch")),
    ],
    ids=["out-of-range-override", "unknown-device", "missing-checkpoint", "unknown-backend"],
)
def test_bad_configuration_fails_configure_until_a_parameter_fixes_it(
    small_checkpoint: Path, capfd: pytest.CaptureFixture[str], bad: dict[str, Any], expected: str, fix: Any
) -> None:
    spun = SpunNode(small_checkpoint, **bad)
    try:
        assert spun.node.trigger_configure() == FAILURE
        log = capfd.readouterr().err
        assert "configure failed" in log and expected in log, log[-2000:]
        assert lifecycle_state(spun.helper) == "unconfigured"
        name, value = fix or ("checkpoint", str(small_checkpoint))
        assert set_one(spun, name, value).successful
        assert spun.node.trigger_configure() == SUCCESS
        assert spun.node.trigger_activate() == SUCCESS
    finally:
        spun.close()


@pytest.mark.parametrize(
    "name, value, reason",
    [
        ("mask_threshold", 1.5, "out of range"),
        ("mask_threshold", 1, "Wrong parameter type"),
        ("min_depth_m", 20.0, "must be smaller than max_depth_m"),
        ("max_depth_m", 0.05, "must be smaller than max_depth_m"),
        ("cloud_stride", 0, "out of range"),
        ("target_frame", "/base_link", "without a leading '/'"),
        ("max_rate_hz", -1.0, "out of range"),
    ],
)
def test_runtime_parameter_out_of_bounds_is_refused_with_the_reason(
    small_checkpoint: Path, node_in_process: Any, name: str, value: Any, reason: str
) -> None:
    before = node_in_process.get_parameter(name).value
    result = node_in_process.set_parameters([Parameter(name, value=value)])[0]
    assert not result.successful and reason in result.reason, result.reason
    assert node_in_process.get_parameter(name).value == before
    assert getattr(node_in_process._params, name) == before


def test_runtime_parameters_apply_at_once_while_active(node_in_process: Any) -> None:
    node = node_in_process
    assert node.is_active()
    results = node.set_parameters([
        Parameter("mask_threshold", value=0.3), Parameter("max_rate_hz", value=4.0),
        Parameter("publish_debug_image", value=False), Parameter("axis_marker_length_m", value=0.5),
        Parameter("cloud_stride", value=4), Parameter("tf_timeout_s", value=0.2),
    ])
    assert all(r.successful for r in results), [r.reason for r in results]
    assert node._predictor.mask_threshold == 0.3
    params = node._params
    assert (params.max_rate_hz, params.publish_debug_image, params.axis_marker_length_m, params.cloud_stride,
            params.tf_timeout_s) == (4.0, False, 0.5, 4, 0.2)
    # min and max together: each alone would cross the other, the pair is consistent
    pair = node.set_parameters_atomically([Parameter("min_depth_m", value=12.0), Parameter("max_depth_m", value=20.0)])
    assert pair.successful, pair.reason
    assert (node._predictor.min_depth_m, node._predictor.max_depth_m) == (12.0, 20.0)


@pytest.mark.parametrize("name, value", [("device", "cpu"), ("checkpoint", ""), ("input_height", 96),
                                         ("backend", "torch"), ("image_qos", "best_effort"), ("cache_dir", "/tmp")])
def test_model_and_qos_parameters_are_refused_while_configured(node_in_process: Any, name: str, value: Any) -> None:
    node = node_in_process
    for transition in (None, node.trigger_deactivate):  # active, then inactive
        if transition is not None:
            assert transition() == SUCCESS
        result = node.set_parameters([Parameter(name, value=value)])[0]
        assert not result.successful and "applies at configure" in result.reason and "clean up" in result.reason
    assert node.trigger_cleanup() == SUCCESS
    assert node.set_parameters([Parameter(name, value=value)])[0].successful
    assert node.get_parameter(name).value == value


def test_changed_input_size_takes_effect_at_the_next_configure(node_in_process: Any) -> None:
    node = node_in_process
    assert node.trigger_deactivate() == SUCCESS and node.trigger_cleanup() == SUCCESS
    assert node.set_parameters([Parameter("input_height", value=96)])[0].successful
    assert node.trigger_configure() == SUCCESS
    assert node._predictor.input_size == (96, 64)


def test_core_log_lines_reach_the_node_log_once_and_not_the_root_logger(
    node_in_process: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    """A root handler (``logging.basicConfig`` by a library, launch's logging) must not print them again."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    root_handler = Keep()
    logging.getLogger().addHandler(root_handler)
    try:
        capfd.readouterr()
        logging.getLogger("segaff_core.inference").warning("fp16 autocast needs CUDA: a test line")
        err = capfd.readouterr().err
    finally:
        logging.getLogger().removeHandler(root_handler)
    assert err.count("fp16 autocast needs CUDA: a test line") == 1, err
    assert "segaff_perception]: segaff_core.inference: fp16" in err
    assert records == [], "the line also went through the root logger"


def test_destroying_the_node_restores_core_logging(small_checkpoint: Path) -> None:
    core = logging.getLogger("segaff_core")
    before = (core.level, core.propagate, list(core.handlers))
    spun = SpunNode(small_checkpoint)
    assert core.propagate is False
    spun.close()
    assert (core.level, core.propagate, list(core.handlers)) == before
