"""The perception node's parameters: declarations with descriptors, validation, and when each may change.

Every parameter has a :class:`Scope`:

- ``RUNTIME``: ``ros2 param set`` applies it at once, in any lifecycle state (``mask_threshold``,
  ``target_frame``, ...).
- ``CONFIGURE``: read at ``configure`` (the model, its runtime, the camera QoS and synchroniser); a set is
  refused while the node is configured (inactive or active), with the way out in the reason.
- ``START``: read once when the node starts (``autostart``); read-only afterwards.

Types and numeric ranges are in the descriptors (``ros2 param describe`` shows them; rclpy enforces them);
choices, patterns and ``min_depth_m < max_depth_m`` are checked here (:func:`review_change`,
:func:`check_values`); :func:`declare_all` declares them on a node.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, fields
from enum import Enum
from typing import Any, Mapping, Optional

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException

from segaff_core.inference import COMPILE_MODES

DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")
PRECISIONS = ("fp32", "fp16", "bf16", "int8")
BACKENDS = ("auto", "torch", "onnxruntime", "openvino", "tensorrt")
IMAGE_QOS_CHOICES = ("reliable", "best_effort")
#: ROS frame names: what tf2 accepts, without a leading slash.
_FRAME_PATTERN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_./-]*$")


class Scope(Enum):
    """When a parameter takes effect."""

    RUNTIME = "runtime"
    CONFIGURE = "configure"
    START = "start"


@dataclass(frozen=True)
class ParameterSpec:
    """One parameter: default, description, scope and constraints."""

    default: Any
    description: str
    scope: Scope
    float_range: Optional[tuple[float, float]] = None
    int_range: Optional[tuple[int, int, int]] = None  # (from, to, step)
    choices: tuple[str, ...] = ()
    pattern: Optional[re.Pattern[str]] = None
    constraint_text: str = ""  # shown by `ros2 param describe` for string constraints
    allow_empty: bool = False  # '' passes the pattern

    def descriptor(self) -> ParameterDescriptor:
        """The descriptor the parameter is declared with."""
        scope_note = {
            Scope.RUNTIME: "settable at runtime",
            Scope.CONFIGURE: "applies at configure (set it while unconfigured)",
            Scope.START: "read at start",
        }[self.scope]
        descriptor = ParameterDescriptor(
            description=f"{self.description} [{scope_note}]",
            read_only=self.scope is Scope.START,
            additional_constraints=self.constraint_text or (", ".join(self.choices) if self.choices else ""),
        )
        if self.float_range is not None:
            descriptor.floating_point_range = [
                FloatingPointRange(from_value=self.float_range[0], to_value=self.float_range[1], step=0.0)
            ]
        if self.int_range is not None:
            low, high, step = self.int_range
            descriptor.integer_range = [IntegerRange(from_value=low, to_value=high, step=step)]
        return descriptor


RUNTIME, CONFIGURE, START = Scope.RUNTIME, Scope.CONFIGURE, Scope.START

PARAMETERS: dict[str, ParameterSpec] = {
    "autostart": ParameterSpec(True, "configure and activate at start (false: leave it to a lifecycle manager)",
                               START),
    "checkpoint": ParameterSpec("", "SegAffordance .ckpt file; '' = the shipped default checkpoint", CONFIGURE),
    "device": ParameterSpec("auto", "device of the model (CUDA asked for but absent: a warning, then the CPU)",
                            CONFIGURE, pattern=DEVICE_PATTERN, constraint_text="auto, cpu, cuda or cuda:N"),
    "precision": ParameterSpec("fp32", "inference precision (fp16 needs CUDA; int8: the CPU, OpenVINO or ONNX "
                               "Runtime)", CONFIGURE, choices=PRECISIONS),
    "calibration": ParameterSpec("synthetic", "int8 calibration frames: 'synthetic' or an OPD or SceneFun3D data "
                                              "set root (as segaff build-engine --calibration)", CONFIGURE),
    "backend": ParameterSpec("auto", "inference runtime (auto: the fastest available, torch otherwise)",
                             CONFIGURE, choices=BACKENDS),
    "cache_dir": ParameterSpec("", "engine cache folder; '' = the Predictor's default "
                                   "($XDG_CACHE_HOME/segaff or ~/.cache/segaff)", CONFIGURE),
    "cpu_threads": ParameterSpec(0, "CPU threads of the model, torch's and the engine's (0 = one per core: the "
                                    "lowest latency at a camera's rate; 1 on 2 cores answers more frames when the "
                                    "camera outpaces the model)", CONFIGURE, int_range=(0, 256, 1)),
    "channels_last": ParameterSpec(False, "run the network in channels_last memory format (faster on CUDA "
                                          "tensor cores)", CONFIGURE),
    "compile": ParameterSpec(False, "torch.compile the per-frame network at configure (a failed compilation "
                                    "falls back to eager with a warning)", CONFIGURE),
    "compile_mode": ParameterSpec("default", "torch.compile mode (max-autotune-no-cudagraphs: faster matrix "
                                             "products on the CPU, slower start; reduce-overhead: CUDA graphs)",
                                  CONFIGURE, choices=tuple(COMPILE_MODES)),
    "input_height": ParameterSpec(0, "model input height, px (multiple of 32; 0 = the checkpoint's training "
                                     "size)", CONFIGURE, int_range=(0, 1024, 32)),
    "input_width": ParameterSpec(0, "model input width, px (multiple of 32; 0 = the checkpoint's training size)",
                                 CONFIGURE, int_range=(0, 1024, 32)),
    "sync_slop_s": ParameterSpec(0.05, "largest stamp difference within one synchronized RGB/depth/camera_info "
                                       "set, s", CONFIGURE, float_range=(0.0, 1.0)),
    "sync_queue_size": ParameterSpec(10, "messages kept per input while synchronizing", CONFIGURE,
                                     int_range=(1, 100, 1)),
    "image_qos": ParameterSpec("reliable", "reliability of the image and camera_info subscriptions", CONFIGURE,
                               choices=IMAGE_QOS_CHOICES,
                               constraint_text="reliable (most camera drivers' default) or best_effort (for "
                                               "publishers with sensor-data QoS)"),
    "mask_threshold": ParameterSpec(0.5, "probability above which a pixel belongs to the part", RUNTIME,
                                    float_range=(0.01, 0.99)),
    "max_frame_age_s": ParameterSpec(1.0, "frames older than this when the model is free are dropped, s "
                                          "(0 = no limit)", RUNTIME, float_range=(0.0, 60.0)),
    "max_rate_hz": ParameterSpec(0.0, "most model runs per wall-clock second, also under use_sim_time: a "
                                      "compute budget (0 = as fast as the model goes)", RUNTIME,
                                 float_range=(0.0, 1000.0)),
    "publish_debug_image": ParameterSpec(True, "publish ~/debug_image, an rgb8 overlay of the result (drawn only "
                                               "while someone subscribes)", RUNTIME),
    "min_depth_m": ParameterSpec(0.1, "smallest valid depth, m (< max_depth_m)", RUNTIME,
                                 float_range=(0.0, 100.0)),
    "max_depth_m": ParameterSpec(10.0, "largest valid depth, m (> min_depth_m)", RUNTIME,
                                 float_range=(0.0, 100.0)),
    "axis_marker_length_m": ParameterSpec(0.2, "length of the axis arrow in RViz, m", RUNTIME,
                                          float_range=(0.01, 10.0)),
    "target_frame": ParameterSpec("", "frame of every 3D output (tf2, at the image stamp); '' = the camera's "
                                      "optical frame", RUNTIME, pattern=_FRAME_PATTERN, allow_empty=True,
                                  constraint_text="a tf2 frame name without a leading '/', or ''"),
    "tf_timeout_s": ParameterSpec(0.1, "how long to wait for the transform to target_frame at an image's stamp, "
                                       "s", RUNTIME, float_range=(0.0, 10.0)),
    "cloud_stride": ParameterSpec(2, "~/part_points takes every cloud_stride-th pixel (rows and columns) of "
                                     "the part", RUNTIME, int_range=(1, 64, 1)),
}


@dataclass(frozen=True)
class PerceptionParams:
    """Values of every parameter (see ``config/perception.yaml``)."""

    autostart: bool
    checkpoint: str
    device: str
    precision: str
    calibration: str
    backend: str
    cache_dir: str
    cpu_threads: int
    channels_last: bool
    compile: bool
    compile_mode: str
    input_height: int
    input_width: int
    sync_slop_s: float
    sync_queue_size: int
    image_qos: str
    mask_threshold: float
    max_frame_age_s: float
    max_rate_hz: float
    publish_debug_image: bool
    min_depth_m: float
    max_depth_m: float
    axis_marker_length_m: float
    target_frame: str
    tf_timeout_s: float
    cloud_stride: int

    @staticmethod
    def from_values(values: Mapping[str, Any]) -> "PerceptionParams":
        """From a name -> value mapping holding every parameter."""
        return PerceptionParams(**{f.name: values[f.name] for f in fields(PerceptionParams)})


def check_value(name: str, value: Any) -> Optional[str]:
    """Why ``value`` is not allowed for ``name`` (choices, patterns), or None. Types and ranges are the
    descriptor's job (rclpy refuses them before this is asked)."""
    spec = PARAMETERS[name]
    if spec.choices and value not in spec.choices:
        return f"parameter {name!r} is {value!r}: expected one of {', '.join(spec.choices)}"
    empty_allowed = spec.allow_empty and value == ""
    if spec.pattern is not None and not empty_allowed and not spec.pattern.match(value):
        return f"parameter {name!r} is {value!r}: expected {spec.constraint_text}"
    return None


def check_values(values: Mapping[str, Any]) -> Optional[str]:
    """Why the complete set ``values`` is not usable (first problem found), or None."""
    for name, value in values.items():
        if name in PARAMETERS and (reason := check_value(name, value)):
            return reason
    if values["min_depth_m"] >= values["max_depth_m"]:
        return (f"min_depth_m ({values['min_depth_m']}) must be smaller than max_depth_m "
                f"({values['max_depth_m']})")
    return None


def review_change(
    current: Mapping[str, Any], changes: Mapping[str, Any], configured: bool, node_name: str = "<node>"
) -> Optional[str]:
    """Why the ``changes`` (name -> new value, set together) must be refused, or None to accept them.

    ``current`` holds every parameter's present value; ``configured`` is True while the node is inactive or
    active (then CONFIGURE parameters are refused).
    """
    for name in changes:
        spec = PARAMETERS.get(name)
        if spec is None:
            continue  # not one of ours (e.g. use_sim_time): rclpy's own rules apply
        if spec.scope is Scope.CONFIGURE and configured:
            return (f"parameter {name!r} applies at configure: deactivate and clean up the node first "
                    f"(ros2 lifecycle set {node_name} deactivate, then cleanup), set it, then configure")
        if spec.scope is Scope.START:
            return f"parameter {name!r} is read once at start"
    merged = {**current, **changes}
    for name, value in changes.items():
        if name in PARAMETERS and (reason := check_value(name, value)):
            return reason
    if merged["min_depth_m"] >= merged["max_depth_m"]:
        return (f"min_depth_m ({merged['min_depth_m']}) must be smaller than max_depth_m "
                f"({merged['max_depth_m']})")
    return None


def declare_all(node: Any) -> dict[str, str]:
    """Declare every parameter on ``node`` with its descriptor.

    An override (command line, params file) of the wrong type or out of range is not taken: the parameter
    is declared with its default, and the returned dict maps its name to the reason, so that ``configure``
    can refuse to run on a configuration the user did not ask for until the parameter is set again.
    """
    refused: dict[str, str] = {}
    for name, spec in PARAMETERS.items():
        try:
            node.declare_parameter(name, spec.default, spec.descriptor())
        except (InvalidParameterValueException, InvalidParameterTypeException) as error:
            node.declare_parameter(name, spec.default, spec.descriptor(), ignore_override=True)
            refused[name] = f"parameter {name!r}: {error}"
    return refused


def current_values(node: Any) -> dict[str, Any]:
    """Every parameter's present value on ``node``."""
    return {name: node.get_parameter(name).value for name in PARAMETERS}
