"""PyTorch: the model itself, eager or through ``torch.compile``, with autocast for fp16/bf16.

This is the reference the other runtimes are verified against; it needs no engine cache.
"""
from __future__ import annotations

import logging
from typing import Optional

import torch
from torch import Tensor

from segaff_core.model import TextConditioning
from segaff_core.runtimes.base import BuildRequest, FrameRuntime, Precision
from segaff_core.runtimes.cache import Engine

log = logging.getLogger(__name__)

AUTOCAST_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
"""torch.compile's modes (:class:`~segaff_core.runtimes.base.TorchOptions`' ``compile_mode``)."""


class TorchRuntime:
    """The per-frame network in PyTorch (``forward_with_text``), optionally compiled with frozen weights."""

    name = "torch"
    engine: Optional[Engine] = None

    def __init__(self, request: BuildRequest) -> None:
        self.model = request.model
        self.device = request.device
        self.autocast_dtype = AUTOCAST_DTYPES.get(request.precision)
        options = request.torch_options
        self._frame = self._compiled(options.compile_mode) if options.compile else self.model.forward_with_text
        compiled = f", torch.compile ({options.compile_mode})" if options.compile else ""
        self.description = f"PyTorch {torch.__version__} on {self.device}, {request.precision}{compiled}"

    def run(self, image: Tensor, depth: Tensor, text: TextConditioning) -> dict[str, Tensor]:
        dtype = self.autocast_dtype
        with torch.inference_mode(), torch.autocast(self.device.type, dtype=dtype, enabled=dtype is not None):
            return self._frame(image, depth, text)

    def _compiled(self, mode: str):
        """``torch.compile`` of the per-frame network, falling back to eager (with a warning) on any failure."""
        eager = self.model.forward_with_text
        try:
            import torch._inductor.config as inductor_config

            compiled = torch.compile(eager, mode=mode)
        except Exception as error:  # noqa: BLE001 - any failure: keep the eager network
            log.warning("torch.compile failed (%s): running eagerly", error)
            return eager

        def frame(image: Tensor, depth: Tensor, text: TextConditioning) -> dict[str, Tensor]:
            mark_word_axis_dynamic(text)
            try:
                # Freezing: the weights become constants, so Inductor folds them and prepacks them for
                # oneDNN on the CPU (about 10% faster here); compilation happens within a call.
                with inductor_config.patch(freezing=True):
                    return compiled(image, depth, text)
            except Exception as error:  # noqa: BLE001 - compilation happens on a call (the first, a new shape)
                log.warning("torch.compile failed while running a frame (%s): running eagerly from now on", error)
                self._frame = eager
                return eager(image, depth, text)

        return frame


def mark_word_axis_dynamic(text: TextConditioning) -> None:
    """The instruction's length varies (as in the ONNX graph): one compiled graph serves every instruction,
    instead of a recompilation (a minute on a small CPU) at the first instruction of another length."""
    for tensor in (*text.words.keys, *text.words.values):
        torch._dynamo.maybe_mark_dynamic(tensor, 2)
    torch._dynamo.maybe_mark_dynamic(text.words.bias, 3)


class TorchBackend:
    """Every device and precision the Predictor accepts but int8 (OpenVINO's)."""

    name = "torch"

    def unavailable_reason(self, device: torch.device, precision: Precision) -> Optional[str]:
        if precision == "int8":
            return "int8 runs in OpenVINO or ONNX Runtime (backend openvino, onnxruntime or auto)"
        return None

    def build(self, request: BuildRequest) -> FrameRuntime:
        return TorchRuntime(request)
