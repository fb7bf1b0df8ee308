"""The per-frame network as an ONNX graph in the engine cache, shared by the ONNX-based runtimes."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import torch

from segaff_core import export
from segaff_core.runtimes.base import BuildRequest
from segaff_core.runtimes.cache import Engine

GRAPH_FILE = "model.onnx"


def onnx_graph(request: BuildRequest, autocast_dtype: Optional[torch.dtype] = None) -> Path:
    """The ONNX graph of ``request``'s model at its input size, exported on a cache miss.

    ``autocast_dtype`` (CUDA only) exports under autocast, so that the graph carries the reduced-precision
    casts PyTorch would make (a strongly typed graph, as TensorRT 11 requires).
    """
    key = request.cache.key(
        "onnx", f"torch-{torch.__version__}-opset-{export.OPSET}", request.model, request.input_size,
        str(autocast_dtype or "fp32"),
    )

    def build(directory: Path) -> dict[str, Any]:
        export.export_onnx(
            request.model, directory / GRAPH_FILE, request.input_size, verify=False, autocast_dtype=autocast_dtype,
        )
        return {}

    def load(engine: Engine) -> Path:
        return engine.path / GRAPH_FILE

    path, _ = request.cache.load_or_build(key, build, load)
    return path
