"""int8 for OpenVINO: NNCF post-training quantisation of the fp32 IR on calibration frames.

``nncf.quantize`` with ``model_type=TRANSFORMER`` (its default preset MIXED: symmetric weights, asymmetric
activations; the decoder's attention patterns kept whole) on the frames of a
:class:`~segaff_core.runtimes.calibration.Calibration`. Left in fp32 (an ``IgnoredScope``): the
projector's last convolutions (the text-kernel convolutions that make the mask and point maps, a few
MFLOPs) and every operation after them: the point head's softmax and soft-argmax, the mask-pooled motion
condition, the small motion and trajectory heads. Quantised, the point map's softmax moved the
interaction point by 85 px in a probe; quantised, the last convolutions cost the shipped checkpoint's
verification frame 0.07 of mask IoU (0.83 against 0.90 with 32 calibration frames).

The quantisation runs in a child process (``python -m segaff_core.runtimes.openvino_int8``): NNCF makes
an ``openvino.Core`` for each model it infers while it collects statistics and corrects biases, and Cores
freed in the order they were made leave the thread's signal stack unmapped (see
:mod:`segaff_core.runtimes.openvino_runtime`). In the child they die with it; the parent keeps its one
shared Core. The calibration inputs go to the child as one ``.npz`` file per frame.
"""
from __future__ import annotations

import argparse
import logging
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Optional

import numpy as np

log = logging.getLogger(__name__)

QUANTIZATION_SCHEME = 1
"""Version of what :func:`quantize` does (options, ignored scope), part of the int8 engines' cache key."""

LAST_CONVOLUTIONS_PREFIX = "/projector/Conv"
"""Friendly-name prefix of the projector's last convolutions (text kernels on the decoder's features):
the ONNX export names nodes by module path, and these are the projector's own, not its submodules'."""
KEPT_TYPES = ("Constant", "Parameter", "Result")  # not operations NNCF could quantise


def write_feeds(feeds: Iterable[dict[str, np.ndarray]], directory: Path) -> int:
    """Each frame's inputs to ``directory/NNNNN.npz``; returns the frame count."""
    directory.mkdir(parents=True, exist_ok=True)
    count = 0
    for count, frame in enumerate(feeds, start=1):
        np.savez(directory / f"{count:05d}.npz", **frame)
    return count


def quantize_in_child(fp32_ir: Path, feeds_dir: Path, int8_ir: Path, timeout_s: Optional[float] = None) -> float:
    """Quantise ``fp32_ir`` on the frames in ``feeds_dir`` into ``int8_ir`` in a child process; returns
    the seconds it took. RuntimeError with the child's last output lines when it fails."""
    start = time.perf_counter()
    command = [sys.executable, "-m", __name__, "--fp32", str(fp32_ir), "--feeds", str(feeds_dir),
               "--out", str(int8_ir)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, check=False)
    if result.returncode != 0:
        tail = " | ".join((result.stderr or result.stdout).strip().splitlines()[-5:])
        raise RuntimeError(f"int8 quantisation failed (exit code {result.returncode}): {tail}")
    return time.perf_counter() - start


def ignored_from_last_convolutions(model: Any) -> list[str]:
    """Friendly names of the projector's last convolutions in ``model`` (an ``openvino.Model``) and of every
    operation downstream of them. ValueError when the model has none."""
    ops = model.get_ordered_ops()
    frontier = [op for op in ops if op.get_type_name() == "Convolution"
                and op.get_friendly_name().startswith(LAST_CONVOLUTIONS_PREFIX)]
    if not frontier:
        raise ValueError(f"no convolution named {LAST_CONVOLUTIONS_PREFIX}* in the graph: cannot place the "
                         "int8 ignored scope (was the projector renamed?)")
    seen = {op.get_friendly_name() for op in frontier}
    while frontier:
        op = frontier.pop()
        for output in op.outputs():
            for target in output.get_target_inputs():
                consumer = target.get_node()
                name = consumer.get_friendly_name()
                if name not in seen:
                    seen.add(name)
                    frontier.append(consumer)
    return sorted(op.get_friendly_name() for op in ops
                  if op.get_friendly_name() in seen and op.get_type_name() not in KEPT_TYPES)


def quantize(fp32_ir: Path, feeds_dir: Path, int8_ir: Path) -> None:
    """NNCF post-training quantisation of ``fp32_ir`` on every frame of ``feeds_dir``, saved to ``int8_ir``.
    Run it in a child process (:func:`quantize_in_child`): NNCF makes Cores of its own."""
    import nncf
    import openvino

    from segaff_core.runtimes.openvino_runtime import shared_core

    model = shared_core().read_model(str(fp32_ir))
    frames = sorted(feeds_dir.glob("*.npz"))
    if not frames:
        raise ValueError(f"no calibration frames (.npz) in {feeds_dir}")
    quantized = nncf.quantize(
        model,
        nncf.Dataset(frames, lambda path: dict(np.load(path))),
        model_type=nncf.ModelType.TRANSFORMER,
        subset_size=len(frames),
        ignored_scope=nncf.IgnoredScope(names=ignored_from_last_convolutions(model)),
    )
    openvino.save_model(quantized, str(int8_ir), compress_to_fp16=False)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="NNCF int8 quantisation of an OpenVINO IR (see the module)")
    parser.add_argument("--fp32", type=Path, required=True, help="the fp32 IR (.xml)")
    parser.add_argument("--feeds", type=Path, required=True, help="folder of one .npz of graph inputs per frame")
    parser.add_argument("--out", type=Path, required=True, help="the int8 IR to write (.xml)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    quantize(args.fp32, args.feeds, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
