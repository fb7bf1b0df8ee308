"""Which runtime runs the per-frame network: the one named, or ``auto``'s choice.

``auto`` takes, for the device, the first runtime of :data:`AUTO_ORDER` that is installed, supports the
precision, builds, and reproduces PyTorch fp32 within :data:`~segaff_core.runtimes.verification.TOLERANCES`
on a rendered frame (checked once when its engine is built; the result is kept in the engine cache).
For fp16/bf16 a runtime also passes when it is no worse than PyTorch's own autocast at that precision
(the cost of the precision is not held against the runtime). The order follows the measured table in the
README (CPU: OpenVINO was fastest in fp32 and bf16, then ONNX Runtime, then PyTorch; CUDA: TensorRT, then
ONNX Runtime's CUDA provider, then PyTorch, not measured here). A runtime that is missing, fails or
disagrees is skipped with a warning; PyTorch, the reference, always works, except for int8, which OpenVINO
(NNCF's post-training quantisation) and ONNX Runtime (its static quantisation) run, in that order: there
``auto`` fails with the reasons when neither can.
"""
from __future__ import annotations

import dataclasses
import logging

from segaff_core.runtimes.base import Backend, BackendUnavailableError, BuildRequest, FrameRuntime, TorchOptions
from segaff_core.runtimes.onnxruntime_runtime import OnnxRuntimeBackend
from segaff_core.runtimes.openvino_runtime import OpenVinoBackend
from segaff_core.runtimes.tensorrt_runtime import TensorRtBackend
from segaff_core.runtimes.torch_runtime import TorchBackend, TorchRuntime
from segaff_core.runtimes.verification import TOLERANCES, Verification, verify

log = logging.getLogger(__name__)

BACKENDS: dict[str, Backend] = {
    backend.name: backend for backend in (TorchBackend(), OnnxRuntimeBackend(), OpenVinoBackend(), TensorRtBackend())
}
"""Every runtime by name."""

BACKEND_CHOICES = ("auto", *BACKENDS)
"""Values of the ``backend`` argument."""

AUTO_ORDER = {
    "cpu": ("openvino", "onnxruntime", "torch"),
    "cuda": ("tensorrt", "onnxruntime", "torch"),
}
"""``auto``'s preference per device type, fastest first (other device types: PyTorch)."""


def create_runtime(backend: str, request: BuildRequest) -> tuple[FrameRuntime, str]:
    """The runtime for ``backend`` (a name of :data:`BACKEND_CHOICES`) and one sentence saying why it runs.

    ValueError for an unknown name; :class:`BackendUnavailableError` when a named runtime cannot serve the
    request or fails to build. ``auto`` raises it only when no runtime serves the precision (int8 where
    neither OpenVINO with NNCF nor ONNX Runtime is installed or within the int8 tolerance); otherwise
    PyTorch, last, always serves.
    """
    if backend not in BACKEND_CHOICES:
        raise ValueError(f"backend must be one of {', '.join(BACKEND_CHOICES)}, got {backend!r}")
    if backend != "auto":
        runtime, reason = _named(BACKENDS[backend], request), "named explicitly"
    else:
        runtime, reason = _automatic(request)
    if request.torch_options.compile and runtime.name != "torch":
        log.warning("compile applies to the torch backend only: %s runs the per-frame network", runtime.name)
    return runtime, reason


def _named(backend: Backend, request: BuildRequest) -> FrameRuntime:
    reason = backend.unavailable_reason(request.device, request.precision)
    if reason is not None:
        raise BackendUnavailableError(backend.name, reason)
    try:
        runtime = backend.build(request)
    except Exception as error:  # noqa: BLE001 - any build failure of a named runtime is the user's error
        raise BackendUnavailableError(backend.name, f"building it failed: {error}") from error
    verification = verified(runtime, request)
    if verification is not None and not verification.passed:
        log.warning("backend %s differs from PyTorch fp32 beyond the %s tolerance (%s): running it as asked",
                    backend.name, request.precision, verification.summary())
    return runtime


def _automatic(request: BuildRequest) -> tuple[FrameRuntime, str]:
    order = AUTO_ORDER.get(request.device.type, ("torch",))
    skipped: list[str] = []
    for name in order:
        backend = BACKENDS[name]
        reason = backend.unavailable_reason(request.device, request.precision)
        if reason is not None:
            skipped.append(f"{name}: {reason}")
            continue
        try:
            runtime = backend.build(request)
            verification = verified(runtime, request)
        except Exception as error:  # noqa: BLE001 - auto falls back on any runtime failure
            log.warning("auto backend: %s failed (%s): trying the next runtime", name, error)
            skipped.append(f"{name}: failed ({error})")
            continue
        if verification is not None and not verification.passed:
            log.warning("auto backend: %s differs from PyTorch fp32 (%s): trying the next runtime",
                        name, verification.summary())
            skipped.append(f"{name}: outside the {request.precision} tolerance")
            continue
        if verification is None:
            checked = "PyTorch itself"
        else:
            when = "when its cached engine was built" if runtime.engine.from_cache else "now"
            checked = (f"within the {request.precision} tolerance of PyTorch fp32 "
                       f"(checked {when}: {verification.summary()})")
        reason = (f"auto chose {name} for {request.device.type} {request.precision}, the first available of "
                  f"{' > '.join(order)}; {checked}")
        if skipped:
            reason += f"; skipped {'; '.join(skipped)}"
        log.info("%s", reason)
        return runtime, reason
    # PyTorch, last in every order, serves every precision but int8.
    raise BackendUnavailableError("auto", f"no runtime runs {request.precision} on {request.device.type} here: "
                                          f"{'; '.join(skipped)}")


def verified(runtime: FrameRuntime, request: BuildRequest) -> Verification | None:
    """The runtime's verification against PyTorch fp32: the one kept in its cache entry, else run now and
    kept there. None for PyTorch itself (no engine)."""
    engine = runtime.engine
    if engine is None:
        return None
    record = engine.record.get("verification")
    if record is not None:
        return Verification(**record)
    reference = TorchRuntime(dataclasses.replace(request, precision="fp32", torch_options=TorchOptions()))
    frame = (request.model, request.input_size, request.device, request.precision)
    verification = verify(runtime, reference, *frame)
    if not verification.passed and request.precision in ("fp16", "bf16"):  # int8 has no PyTorch counterpart
        autocast = TorchRuntime(dataclasses.replace(request, torch_options=TorchOptions()))
        verification = verification.judged_against_autocast(verify(autocast, reference, *frame),
                                                            TOLERANCES[request.precision])
    log.info("verified %s against PyTorch fp32: %s", runtime.name, verification.summary())
    request.cache.update_record(engine, verification=verification.to_record())
    return verification
