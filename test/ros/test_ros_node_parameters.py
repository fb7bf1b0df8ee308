"""The node's parameter rules without a node: scopes, choices, patterns, min < max, descriptors."""
from __future__ import annotations

import pytest

pytest.importorskip("rcl_interfaces.msg", reason="rcl_interfaces (ROS 2 wheel) is not installed")

from segaff_ros import node_parameters  # noqa: E402
from segaff_ros.node_parameters import PARAMETERS, PerceptionParams, Scope, check_values, review_change  # noqa: E402

DEFAULTS = {name: spec.default for name, spec in PARAMETERS.items()}


def test_the_issue_s_runtime_parameters_are_runtime_and_the_model_s_are_not() -> None:
    runtime = {name for name, spec in PARAMETERS.items() if spec.scope is Scope.RUNTIME}
    assert runtime == {"mask_threshold", "max_rate_hz", "max_frame_age_s", "publish_debug_image",
                       "axis_marker_length_m", "min_depth_m", "max_depth_m", "target_frame", "tf_timeout_s",
                       "cloud_stride"}
    configure = {name for name, spec in PARAMETERS.items() if spec.scope is Scope.CONFIGURE}
    assert {"checkpoint", "device", "precision", "calibration", "backend", "cache_dir", "input_height", "input_width",
            "cpu_threads", "channels_last", "compile", "compile_mode", "image_qos", "sync_slop_s",
            "sync_queue_size"} == configure
    assert PARAMETERS["autostart"].descriptor().read_only
    assert PerceptionParams.from_values(DEFAULTS).autostart is True


def test_defaults_are_valid_and_each_bad_value_is_named() -> None:
    assert check_values(DEFAULTS) is None
    for name, value, expected in [("device", "tpu", "parameter 'device' is 'tpu'"),
                                  ("device", "", "parameter 'device' is ''"),
                                  ("precision", "fp8", "expected one of fp32, fp16, bf16, int8"),
                                  ("backend", "tflite", "parameter 'backend'"),
                                  ("image_qos", "fast", "parameter 'image_qos'"),
                                  ("target_frame", "two words", "parameter 'target_frame'"),
                                  ("min_depth_m", 10.0, "must be smaller than max_depth_m")]:
        reason = check_values({**DEFAULTS, name: value})
        assert reason is not None and expected in reason, (name, value, reason)
    assert check_values({**DEFAULTS, "target_frame": ""}) is None
    assert check_values({**DEFAULTS, "precision": "int8", "calibration": "/data/opdreal"}) is None
    assert check_values({**DEFAULTS, "device": "cuda:1", "target_frame": "robot/base_link"}) is None


def test_review_of_a_change_follows_the_scope_and_the_other_values() -> None:
    assert review_change(DEFAULTS, {"device": "cpu"}, configured=False) is None
    refused = review_change(DEFAULTS, {"device": "cpu"}, configured=True, node_name="/segaff_perception")
    assert "applies at configure" in refused and "ros2 lifecycle set /segaff_perception deactivate" in refused
    assert review_change(DEFAULTS, {"mask_threshold": 0.3}, configured=True) is None
    assert "read once at start" in review_change(DEFAULTS, {"autostart": False}, configured=False)
    assert "smaller" in review_change(DEFAULTS, {"max_depth_m": 0.05}, configured=True)
    assert review_change(DEFAULTS, {"min_depth_m": 12.0, "max_depth_m": 20.0}, configured=True) is None
    assert review_change(DEFAULTS, {"use_sim_time": True}, configured=True) is None  # rclpy's own parameter


def test_descriptors_carry_ranges_and_the_scope() -> None:
    threshold = PARAMETERS["mask_threshold"].descriptor()
    assert (threshold.floating_point_range[0].from_value, threshold.floating_point_range[0].to_value) == (0.01, 0.99)
    assert "settable at runtime" in threshold.description
    height = PARAMETERS["input_height"].descriptor()
    assert height.integer_range[0].step == 32 and "applies at configure" in height.description
    assert "cuda:N" in PARAMETERS["device"].descriptor().additional_constraints
    assert node_parameters.BACKENDS == ("auto", "torch", "onnxruntime", "openvino", "tensorrt")


@pytest.mark.parametrize("calibration, expected", [("/no/such/folder", "is not a folder"), ("", "")])
def test_a_bad_int8_calibration_fails_configure_naming_the_parameter(
    calibration: str, expected: str, tmp_path
) -> None:
    """A missing folder, or one that holds no data set (here: empty)."""
    from segaff_ros.model_loading import ConfigurationError, load_predictor

    values = {**DEFAULTS, "precision": "int8", "calibration": calibration or str(tmp_path)}
    params = PerceptionParams.from_values(values)
    with pytest.raises(ConfigurationError, match=rf"^parameter 'calibration': .*{expected}"):
        load_predictor(params, logger=None)  # refused before anything is loaded or logged
