"""ONNX Runtime: the exported per-frame graph on the CPU execution provider (CUDA's where onnxruntime-gpu
is installed), all graph optimisations on; the optimised graph is kept in the engine cache so that a
cached start-up skips the export and the optimisation. int8 on the CPU: the graph quantised on calibration
frames first (:mod:`segaff_core.runtimes.onnxruntime_int8`).
"""
from __future__ import annotations

import importlib.util
import logging
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from torch import Tensor

from segaff_core.export import IMAGE_INPUTS, OUTPUT_NAMES
from segaff_core.model import TextConditioning
from segaff_core.runtimes.base import BuildRequest, FrameRuntime, Precision
from segaff_core.runtimes.cache import Engine
from segaff_core.runtimes.graph import onnx_graph
from segaff_core.runtimes.hardware import device_name
from segaff_core.runtimes.onnxruntime_int8 import QUANTIZATION_SCHEME, quantize

log = logging.getLogger(__name__)

OPTIMIZED_FILE = "optimized.onnx"
INT8_FILE = "int8.onnx"


def _providers(device: torch.device) -> list[Any]:
    if device.type == "cuda":
        return [("CUDAExecutionProvider", {"device_id": device.index or 0}), "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def frame_feeds(image: Tensor, depth: Tensor, text: TextConditioning) -> dict[str, Tensor]:
    """The graph inputs by name: image, depth and the text tensors (float32, contiguous)."""
    names = TextConditioning.tensor_names(len(text.words.keys))
    tensors = (image, depth, *text.tensors())
    return {name: tensor.float().contiguous() for name, tensor in zip((*IMAGE_INPUTS, *names), tensors)}


class OnnxRuntimeRuntime:
    """An ``onnxruntime.InferenceSession`` of the cached, optimised graph."""

    name = "onnxruntime"

    def __init__(self, session: Any, device: torch.device, precision: Precision, engine: Engine) -> None:
        self.session = session
        self.device = device
        self.engine: Optional[Engine] = engine
        provider = session.get_providers()[0]
        self._output_shapes = {output.name: tuple(output.shape) for output in session.get_outputs()}
        self.description = f"ONNX Runtime {_version()} {provider}, {precision}, {engine.path}"

    def run(self, image: Tensor, depth: Tensor, text: TextConditioning) -> dict[str, Tensor]:
        feeds = frame_feeds(image, depth, text)
        if self.device.type == "cuda":
            return self._run_bound(feeds)
        outputs = self.session.run(list(OUTPUT_NAMES), {name: tensor.numpy() for name, tensor in feeds.items()})
        return {name: torch.from_numpy(array) for name, array in zip(OUTPUT_NAMES, outputs)}

    def _run_bound(self, feeds: dict[str, Tensor]) -> dict[str, Tensor]:
        """CUDA: inputs read from and outputs written to torch's device memory (I/O binding), no host copy.

        The output shapes are static (the image size is fixed in the graph), so torch allocates them."""
        binding = self.session.io_binding()
        index = self.device.index or 0
        for name, tensor in feeds.items():
            binding.bind_input(name, "cuda", index, np.float32, list(tensor.shape), tensor.data_ptr())
        outputs = {name: torch.empty(shape, dtype=torch.float32, device=self.device)
                   for name, shape in self._output_shapes.items()}
        for name, tensor in outputs.items():
            binding.bind_output(name, "cuda", index, np.float32, list(tensor.shape), tensor.data_ptr())
        torch.cuda.current_stream(self.device).synchronize()  # the inputs are written on torch's stream
        self.session.run_with_iobinding(binding)
        return outputs


def _version() -> str:
    import onnxruntime

    return onnxruntime.__version__


def _quantized(request: BuildRequest, fp32_graph: Path, int8_graph: Path) -> dict[str, Any]:
    """Write the int8 graph of ``fp32_graph`` (``request``'s model) to ``int8_graph``, calibrated on
    ``request.calibration``; the entry's record says on what and how long it took."""
    calibration = request.calibration
    log.info("int8: quantising with ONNX Runtime on %s (minutes on a small CPU)", calibration.describe())
    start = time.perf_counter()
    frames = quantize(fp32_graph, calibration.feeds(request.model, request.input_size), int8_graph)
    quantize_s = time.perf_counter() - start
    log.info("int8: %d calibration frames read and quantised in %.1f s", frames, quantize_s)
    return {"calibration": {**calibration.identity(), "described": calibration.describe(), "frames_read": frames},
            "quantization_s": round(quantize_s, 2)}


class OnnxRuntimeBackend:
    """fp32 or int8 on the CPU; fp32 on CUDA with onnxruntime-gpu (reduced precision: use TensorRT or torch)."""

    name = "onnxruntime"

    def unavailable_reason(self, device: torch.device, precision: Precision) -> Optional[str]:
        if importlib.util.find_spec("onnxruntime") is None:
            return "onnxruntime is not installed (pip install onnxruntime)"
        import onnxruntime

        if device.type == "cuda" and "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
            return "this onnxruntime has no CUDAExecutionProvider (pip install onnxruntime-gpu)"
        if device.type not in ("cpu", "cuda"):
            return f"no onnxruntime execution provider for device {device}"
        if precision == "int8" and device.type != "cpu":
            return "int8 runs on the CPU only here"
        if precision not in ("fp32", "int8"):
            return f"only fp32 and (CPU) int8 are supported here, not {precision}"
        return None

    def cache_key(self, request: BuildRequest) -> dict[str, Any]:
        """The engine's cache key: the optimised graph is specific to the device (CPU layouts, fused CUDA
        kernels); int8 adds the quantisation scheme and the calibration set."""
        import onnxruntime

        extra: dict[str, Any] = {}
        if request.precision == "int8":
            extra = {"quantization": QUANTIZATION_SCHEME, "calibration": request.calibration.identity()}
        providers = [p if isinstance(p, str) else p[0] for p in _providers(request.device)]
        return request.cache.key(self.name, onnxruntime.__version__, request.model, request.input_size,
                                 request.precision, device=device_name(request.device), providers=providers, **extra)

    def build(self, request: BuildRequest) -> FrameRuntime:
        import onnxruntime

        def options(optimized_path: Optional[Path]) -> onnxruntime.SessionOptions:
            session_options = onnxruntime.SessionOptions()
            session_options.intra_op_num_threads = request.threads or 0  # 0: one per physical core
            # No busy-waiting between frames: spinning threads starve PyTorch (the text side) and the
            # rest of the robot's processes on a small CPU.
            session_options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            if optimized_path is None:  # the cached graph is optimised already
                session_options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
            else:
                session_options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
                session_options.optimized_model_filepath = str(optimized_path)
                session_options.log_severity_level = 3  # not the warning that the saved graph is CPU-specific
            return session_options

        providers = _providers(request.device)

        def build(directory: Path) -> dict[str, Any]:
            record: dict[str, Any] = {}
            graph = onnx_graph(request)
            if request.precision == "int8":
                record = _quantized(request, graph, directory / INT8_FILE)
                graph = directory / INT8_FILE
            onnxruntime.InferenceSession(str(graph), options(directory / OPTIMIZED_FILE), providers=providers)
            return record

        def load(engine: Engine) -> Any:
            return onnxruntime.InferenceSession(str(engine.path / OPTIMIZED_FILE), options(None), providers=providers)

        session, engine = request.cache.load_or_build(self.cache_key(request), build, load)
        return OnnxRuntimeRuntime(session, request.device, request.precision, engine)
