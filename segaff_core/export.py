"""ONNX export of the per-frame network: image and depth plus the cached text tensors in, every head out.

The text side (CLIP's text encoder and every text-only projection, :meth:`SegAffordanceModel.prepare_text`)
runs once per instruction, so the graph takes its results as inputs, named as in
:meth:`TextConditioning.tensor_names`; the length of the word axis is dynamic. :func:`text_inputs`
computes them for an instruction. Batch norm is folded before export; the graph is checked against
PyTorch with onnxruntime.
"""
from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch
from torch import Tensor, nn

from segaff_core.model import SegAffordanceModel, TextConditioning, fold_batchnorm
from segaff_core.text import tokenize

log = logging.getLogger(__name__)

OUTPUT_NAMES = ("mask_logits", "point_logits", "point_xy", "axis", "motion_type_logits", "origin_offset", "trajectory")
"""Graph outputs, in order (the model's outputs without targets; see the model contract)."""

IMAGE_INPUTS = ("image", "depth")
"""The first graph inputs: ``image (1,3,H,W)`` CLIP-normalised and ``depth (1,1,H,W)`` metres (0 invalid)."""

OPSET = 17
EXAMPLE_INSTRUCTION = "open the top drawer of the cabinet"


@dataclass
class ExportReport:
    """What :func:`export_onnx` wrote and how closely onnxruntime reproduces PyTorch on an example input."""

    path: Path
    input_names: list[str]
    output_names: list[str]
    input_size: tuple[int, int]
    max_abs_error: dict[str, float]  # per output, onnxruntime vs PyTorch


class FrameGraph(nn.Module):
    """The per-frame network with flat tensor inputs (image, depth, then the text tensors) and outputs."""

    def __init__(self, model: SegAffordanceModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: Tensor, depth: Tensor, *text: Tensor) -> tuple[Tensor, ...]:
        outputs = self.model.forward_with_text(image, depth, TextConditioning.from_tensors(text))
        return tuple(outputs[name] for name in OUTPUT_NAMES)


def text_inputs(model: SegAffordanceModel, instruction: str) -> dict[str, np.ndarray]:
    """The graph's text inputs for ``instruction`` (float32 arrays by input name), computed with PyTorch."""
    device = next(model.parameters()).device
    tokens = tokenize(instruction, word_len=model.params.word_len).to(device)
    with torch.inference_mode():
        conditioning = model.prepare_text(model.encode_text(tokens), trim_padding=True)
    names = TextConditioning.tensor_names(len(model.decoder.layers))
    return {name: tensor.float().cpu().numpy() for name, tensor in zip(names, conditioning.tensors())}


def export_onnx(
    model: SegAffordanceModel,
    path: Union[str, "PathLike[str]"],
    input_size: tuple[int, int] = (256, 256),
    opset: int = OPSET,
    verify: bool = True,
    autocast_dtype: Optional[torch.dtype] = None,
) -> ExportReport:
    """Write the per-frame network of ``model`` (batch 1, ``input_size`` = (H, W)) to ``path`` as ONNX.

    Uses the TorchScript-based exporter (the dynamo exporter needs onnxscript). ``verify`` runs the graph
    with onnxruntime against PyTorch (``max_abs_error`` is empty without it). ``autocast_dtype`` (fp16 or
    bf16, needs CUDA) traces under CUDA autocast, so the graph holds PyTorch's mixed-precision casts
    (inputs and outputs stay float32; not verified with onnxruntime). Raises ValueError for an input size
    that is not a multiple of 32 and RuntimeError when onnxruntime disagrees with PyTorch.
    """
    height, width = input_size
    if height <= 0 or width <= 0 or height % 32 or width % 32:
        raise ValueError(f"input size must be positive multiples of 32, got {width}x{height} (WxH)")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if autocast_dtype is not None and not torch.cuda.is_available():
        raise ValueError(f"exporting under {autocast_dtype} autocast needs CUDA")
    device = torch.device("cuda" if autocast_dtype is not None else "cpu")
    folded = fold_batchnorm(model).to(device)
    generator = torch.Generator().manual_seed(0)
    image = torch.randn(1, 3, height, width, generator=generator)
    depth = torch.rand(1, 1, height, width, generator=generator) * 3.0
    text = text_inputs(folded, EXAMPLE_INSTRUCTION)
    text_names = list(text)
    input_names = [*IMAGE_INPUTS, *text_names]
    dynamic_axes = {name: {2: "words"} for name in text_names if name.startswith(("word_keys", "word_values"))}
    dynamic_axes["word_bias"] = {3: "words"}
    example = tuple(tensor.to(device) for tensor in (image, depth, *(torch.from_numpy(a) for a in text.values())))
    graph = FrameGraph(folded).eval()
    # cache_enabled=False: the tracer must see every cast (autocast's weight-cast cache hides them).
    autocast = torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None,
                              cache_enabled=False)
    with torch.inference_mode(False), torch.no_grad(), autocast, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer warnings
        torch.onnx.export(
            graph, example, str(path), input_names=input_names, output_names=list(OUTPUT_NAMES),
            dynamic_axes=dynamic_axes, opset_version=opset, dynamo=False,
        )
        expected = [output.float().cpu().numpy() for output in graph(*example)] if verify else []
    errors: dict[str, float] = {}
    if verify and autocast_dtype is None:
        errors = _check_with_onnxruntime(path, dict(zip(input_names, (t.numpy() for t in example))), expected)
    log.info("wrote %s (%dx%d); onnxruntime vs PyTorch max abs error %s", path, width, height, errors)
    return ExportReport(path, input_names, list(OUTPUT_NAMES), (height, width), errors)


def _check_with_onnxruntime(
    path: Path, feeds: dict[str, np.ndarray], expected: list[np.ndarray], atol: float = 1e-3, rtol: float = 1e-3
) -> dict[str, float]:
    """Run the graph with onnxruntime on ``feeds``; RuntimeError unless it matches ``expected``."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    actual = session.run(list(OUTPUT_NAMES), feeds)
    errors = {name: float(np.abs(a - e).max()) for name, a, e in zip(OUTPUT_NAMES, actual, expected)}
    for name, a, e in zip(OUTPUT_NAMES, actual, expected):
        if not np.allclose(a, e, atol=atol, rtol=rtol):
            raise RuntimeError(f"{path}: onnxruntime's {name} differs from PyTorch's by up to {errors[name]:.3g}")
    return errors
