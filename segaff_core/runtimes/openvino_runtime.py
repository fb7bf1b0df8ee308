"""OpenVINO on the CPU: the exported ONNX graph converted once to OpenVINO IR (kept in the engine cache),
compiled for latency in fp32 or bf16, or quantised to int8 by NNCF on calibration frames
(:mod:`segaff_core.runtimes.openvino_int8`; the calibration set is part of the cache key); OpenVINO's own
``CACHE_DIR`` inside the entry keeps the compiled blob, so a cached start-up skips the export, the
conversion, the quantisation and the compilation.

OpenVINO runs bf16 by default on CPUs with native bf16, so the precision is always set explicitly
(``INFERENCE_PRECISION_HINT``): fp32 means fp32, and int8 means int8 where NNCF quantised and fp32 elsewhere.

The process holds one ``openvino.Core`` (:func:`shared_core`), and every setting of a model (precision,
threads, ``CACHE_DIR``) is passed to ``compile_model``, never set on the Core. Each Core loads a CPU plugin
that installs an alternate signal stack of its own and, when freed, unmaps it but puts back the previous
stack only if its own is still current: two Cores freed in the order they were made leave the thread's
signal stack pointing at unmapped memory, and the next signal handled in Python (a child's exit, Ctrl-C)
kills the process without a word. One Core that lives as long as the process never frees its stack early.
"""
from __future__ import annotations

import importlib.util
import logging
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Optional

import torch
from torch import Tensor

from segaff_core.export import OUTPUT_NAMES
from segaff_core.model import TextConditioning
from segaff_core.runtimes.base import BuildRequest, FrameRuntime, Precision
from segaff_core.runtimes.cache import Engine
from segaff_core.runtimes.graph import onnx_graph
from segaff_core.runtimes.hardware import device_name
from segaff_core.runtimes.onnxruntime_runtime import frame_feeds
from segaff_core.runtimes.openvino_int8 import QUANTIZATION_SCHEME, quantize_in_child, write_feeds

log = logging.getLogger(__name__)

IR_FILE = "model.xml"
COMPILED_DIR = "compiled"  # OpenVINO's CACHE_DIR: the compiled blob, written at the first compilation
FP32_IR_FILE = "fp32.xml"  # int8: the converted graph NNCF quantises (built in a scratch folder)
PRECISION_HINTS = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}  # int8: the unquantised operations in fp32

_core_lock = threading.Lock()
_core: Any = None


def shared_core() -> Any:
    """The process's one ``openvino.Core``, made at the first call (see the module docstring for why one)."""
    global _core
    with _core_lock:
        if _core is None:
            import openvino

            _core = openvino.Core()
        return _core


class OpenVinoRuntime:
    """A compiled OpenVINO model and its infer request (inputs shared, outputs copied out)."""

    name = "openvino"

    def __init__(self, compiled: Any, precision: Precision, engine: Engine) -> None:
        self.compiled = compiled
        self.request = compiled.create_infer_request()
        self.engine: Optional[Engine] = engine
        self._outputs = [compiled.output(name) for name in OUTPUT_NAMES]
        self.description = f"OpenVINO {_version()} CPU, {precision}, {engine.path}"

    def run(self, image: Tensor, depth: Tensor, text: TextConditioning) -> dict[str, Tensor]:
        feeds = {name: tensor.numpy() for name, tensor in frame_feeds(image, depth, text).items()}
        results = self.request.infer(feeds, share_inputs=True)  # outputs are copies: the next frame keeps them
        return {name: torch.from_numpy(results[output]) for name, output in zip(OUTPUT_NAMES, self._outputs)}


def _version() -> str:
    import openvino

    return openvino.__version__


def _nncf_version() -> str:
    from importlib.metadata import version  # not an import of nncf: slow, and only the child needs it

    return version("nncf")


def _quantized(model: Any, request: BuildRequest, int8_ir: Path) -> dict[str, Any]:
    """Write the int8 IR of ``model`` (fp32) to ``int8_ir``, calibrated on ``request.calibration``; the
    entry's record says on what and how long it took."""
    import openvino

    calibration = request.calibration
    log.info("int8: quantising with NNCF on %s (minutes on a small CPU)", calibration.describe())
    with tempfile.TemporaryDirectory(prefix="segaff-int8-") as scratch:
        fp32_ir = Path(scratch) / FP32_IR_FILE
        openvino.save_model(model, str(fp32_ir), compress_to_fp16=False)
        start = time.perf_counter()
        frames = write_feeds(calibration.feeds(request.model, request.input_size), Path(scratch) / "frames")
        feeds_s = time.perf_counter() - start
        quantize_s = quantize_in_child(fp32_ir, Path(scratch) / "frames", int8_ir)
    log.info("int8: %d calibration frames in %.1f s, quantised in %.1f s", frames, feeds_s, quantize_s)
    return {"calibration": {**calibration.identity(), "described": calibration.describe(), "frames_read": frames},
            "calibration_frames_s": round(feeds_s, 2), "quantization_s": round(quantize_s, 2)}


class OpenVinoBackend:
    """The CPU, in fp32, int8 or (native-bf16 CPUs, checked by the Predictor) bf16."""

    name = "openvino"

    def unavailable_reason(self, device: torch.device, precision: Precision) -> Optional[str]:
        if importlib.util.find_spec("openvino") is None:
            return "openvino is not installed (pip install openvino)"
        if device.type != "cpu":
            return f"only the CPU is supported here, not {device}"
        if precision == "int8" and importlib.util.find_spec("nncf") is None:
            return "int8 needs nncf (pip install nncf)"
        if precision not in PRECISION_HINTS:
            return f"{precision} is not supported on the CPU (fp32, int8 or bf16)"
        return None

    def cache_key(self, request: BuildRequest) -> dict[str, Any]:
        """The engine's cache key; int8 adds NNCF's version, the quantisation scheme and the calibration set."""
        extra: dict[str, Any] = {}
        if request.precision == "int8":
            extra = {"nncf_version": _nncf_version(), "quantization": QUANTIZATION_SCHEME,
                     "calibration": request.calibration.identity()}
        return request.cache.key(self.name, _version(), request.model, request.input_size, request.precision,
                                 device=device_name(request.device), **extra)

    def build(self, request: BuildRequest) -> FrameRuntime:
        import openvino

        core = shared_core()
        config: dict[str, Any] = {
            "INFERENCE_PRECISION_HINT": PRECISION_HINTS[request.precision],
            "PERFORMANCE_HINT": "LATENCY",
        }
        if request.threads:
            config["INFERENCE_NUM_THREADS"] = request.threads
        key = self.cache_key(request)

        def build(directory: Path) -> dict[str, Any]:
            model = core.read_model(str(onnx_graph(request)))
            if request.precision != "int8":
                openvino.save_model(model, str(directory / IR_FILE), compress_to_fp16=False)
                return {}
            return _quantized(model, request, directory / IR_FILE)

        def load(engine: Engine) -> Any:
            return core.compile_model(str(engine.path / IR_FILE), "CPU",
                                      {**config, "CACHE_DIR": str(engine.path / COMPILED_DIR)})

        compiled, engine = request.cache.load_or_build(key, build, load)
        return OpenVinoRuntime(compiled, request.precision, engine)
