"""TensorRT on NVIDIA GPUs, through its own Python API (not ONNX Runtime's TensorRT provider: one fewer
layer, an engine file we cache and key ourselves, and torch tensors passed by address).

The engine is built from the exported ONNX graph. TensorRT 11 networks are strongly typed (the FP16/BF16
builder flags are gone), so for fp16/bf16 the graph is exported under PyTorch's CUDA autocast and carries
its casts: the engine computes in the precision PyTorch would, with float32 inputs and outputs. fp32
engines have TF32 turned off. The word axis of the text inputs is dynamic (one optimisation profile, 1 to
the model's ``word_len`` words). The serialized engine is kept in the engine cache, keyed on the GPU.
"""
from __future__ import annotations

import importlib.util
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

ENGINE_FILE = "model.plan"
WORKSPACE_BYTES = 4 << 30
OPTIMAL_WORDS = 16  # the word count TensorRT tunes for (instructions are short)
_AUTOCAST = {"fp16": torch.float16, "bf16": torch.bfloat16}


class TensorRtRuntime:
    """A deserialized engine and its execution context, run on torch's current CUDA stream."""

    name = "tensorrt"

    def __init__(self, engine: Any, device: torch.device, precision: Precision, cache_entry: Engine) -> None:
        import tensorrt as trt

        self.trt_engine = engine
        self.context = engine.create_execution_context()
        self.device = device
        self.engine: Optional[Engine] = cache_entry
        self._dtypes = {
            trt.float32: torch.float32, trt.float16: torch.float16, trt.bfloat16: torch.bfloat16,
            trt.int32: torch.int32, trt.int64: torch.int64, trt.bool: torch.bool,
        }
        self.description = f"TensorRT {trt.__version__} on {device_name(device)}, {precision}, {cache_entry.path}"

    def run(self, image: Tensor, depth: Tensor, text: TextConditioning) -> dict[str, Tensor]:
        feeds = frame_feeds(image, depth, text)  # kept alive until the engine has read them (same stream)
        for name, tensor in feeds.items():
            self.context.set_input_shape(name, tuple(tensor.shape))
            self.context.set_tensor_address(name, tensor.data_ptr())
        outputs = {}
        for name in OUTPUT_NAMES:
            shape = tuple(self.context.get_tensor_shape(name))
            dtype = self._dtypes[self.trt_engine.get_tensor_dtype(name)]
            outputs[name] = torch.empty(shape, dtype=dtype, device=self.device)
            self.context.set_tensor_address(name, outputs[name].data_ptr())
        stream = torch.cuda.current_stream(self.device)
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise RuntimeError("TensorRT failed to enqueue the frame (execute_async_v3 returned False)")
        return outputs


class TensorRtBackend:
    """CUDA devices, fp32, fp16 or bf16, with the ``tensorrt`` package (``pip install segaff_ros[tensorrt]``)."""

    name = "tensorrt"

    def unavailable_reason(self, device: torch.device, precision: Precision) -> Optional[str]:
        if device.type != "cuda":
            return f"TensorRT needs a CUDA device, not {device}"
        if importlib.util.find_spec("tensorrt") is None:
            return "tensorrt is not installed (pip install tensorrt-cu13, or tensorrt-cu12 for CUDA 12 builds of torch)"
        return None

    def build(self, request: BuildRequest) -> FrameRuntime:
        import tensorrt as trt

        logger = trt.Logger(trt.Logger.WARNING)
        key = request.cache.key(self.name, trt.__version__, request.model, request.input_size, request.precision,
                                device=device_name(request.device))

        def build(directory: Path) -> dict[str, Any]:
            graph = onnx_graph(request, _AUTOCAST.get(request.precision))
            (directory / ENGINE_FILE).write_bytes(_build_engine(trt, logger, graph, request))
            return {}

        def load(entry: Engine) -> Any:
            with torch.cuda.device(request.device):
                engine = trt.Runtime(logger).deserialize_cuda_engine((entry.path / ENGINE_FILE).read_bytes())
            if engine is None:
                raise RuntimeError(f"TensorRT could not deserialize {entry.path / ENGINE_FILE}")
            return engine

        engine, entry = request.cache.load_or_build(key, build, load)
        return TensorRtRuntime(engine, request.device, request.precision, entry)


def _build_engine(trt: Any, logger: Any, graph: Path, request: BuildRequest) -> bytes:
    """Parse ``graph`` and build a serialized engine for ``request`` (strongly typed, one shape profile)."""
    builder = trt.Builder(logger)
    flags = 0
    if hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"):  # required on 10.x, the default on 11
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(graph)):
        errors = "; ".join(str(parser.get_error(index)) for index in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {graph}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
    if request.precision == "fp32" and hasattr(trt.BuilderFlag, "TF32"):
        config.clear_flag(trt.BuilderFlag.TF32)
    profile = builder.create_optimization_profile()
    max_words = request.model.params.word_len
    for index in range(network.num_inputs):
        tensor = network.get_input(index)
        shape = tuple(tensor.shape)
        if -1 in shape:  # the word axis
            low, optimal, high = ([max(size, 1) if size != -1 else words for size in shape]
                                  for words in (1, min(OPTIMAL_WORDS, max_words), max_words))
            profile.set_shape(tensor.name, low, optimal, high)
    config.add_optimization_profile(profile)
    with torch.cuda.device(request.device):
        serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT could not build an engine from {graph} (see its log above)")
    return bytes(serialized)
