"""The interface every inference runtime implements, and what a runtime is built from.

A runtime runs the per-frame network: ``image (1,3,H,W)`` CLIP-normalised, ``depth (1,1,H,W)`` metres and
the instruction's cached :class:`~segaff_core.model.TextConditioning` in, the graph outputs
(:data:`segaff_core.export.OUTPUT_NAMES`) out as tensors on the Predictor's device. Pre- and
post-processing stay in :mod:`segaff_core.inference`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Optional, Protocol

import torch
from torch import Tensor

from segaff_core.model import SegAffordanceModel, TextConditioning
from segaff_core.runtimes.calibration import Calibration

if TYPE_CHECKING:
    from segaff_core.runtimes.cache import EngineCache

Precision = Literal["fp32", "fp16", "bf16", "int8"]


class BackendUnavailableError(RuntimeError):
    """A runtime named explicitly is not installed, does not support the device or precision, or failed to build."""

    def __init__(self, backend: str, reason: str) -> None:
        super().__init__(f"inference backend {backend!r} is unavailable: {reason}")
        self.backend = backend
        self.reason = reason


@dataclass(frozen=True)
class TorchOptions:
    """Options of the PyTorch runtime only (see :class:`~segaff_core.inference.Predictor`)."""

    compile: bool = False
    compile_mode: str = "default"


@dataclass(frozen=True)
class BuildRequest:
    """Everything a runtime is built from."""

    model: SegAffordanceModel  # batch norm folded, eval mode, on ``device``
    input_size: tuple[int, int]  # (height, width) of the network input
    device: torch.device
    precision: Precision  # fp16 only on CUDA; bf16 on CUDA or native-bf16 CPUs; int8 on the CPU (checked by the Predictor)
    cache: "EngineCache"
    threads: Optional[int] = None  # CPU threads of the runtime (None: its default)
    torch_options: TorchOptions = TorchOptions()
    calibration: Calibration = Calibration()  # int8 only: the frames the quantisation is calibrated on


class FrameRuntime(Protocol):
    """A built per-frame network."""

    name: str  # the backend's name, e.g. "openvino"
    description: str  # one line: device, precision, engine file

    def run(self, image: Tensor, depth: Tensor, text: TextConditioning) -> dict[str, Tensor]:
        """The graph outputs by name for one frame, as tensors on the request's device."""


class Backend(Protocol):
    """A runtime that may or may not be installed: says whether it can serve a request, and builds it."""

    name: str

    def unavailable_reason(self, device: torch.device, precision: Precision) -> Optional[str]:
        """None when this backend can run on ``device`` in ``precision``, else why not (not installed, ...)."""

    def build(self, request: BuildRequest) -> FrameRuntime:
        """The runtime for ``request`` (from the engine cache when there); raises on failure."""
