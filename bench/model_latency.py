"""Median latency of the SegAffordance model's stages at batch 1 (random weights; speed does not depend on them).

Example: ``python bench/model_latency.py --config default --sizes 256 416 --device auto --repeats 10``
"""
from __future__ import annotations

import argparse
import logging
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from segaff_core.config import ModelParams
from segaff_core.model import build_model
from segaff_core.text import tokenize

logger = logging.getLogger("model_latency")


def _cpu_name() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _median_ms(fn: Callable[[], object], device: torch.device, warmup: int, repeats: int) -> float:
    def run_once() -> float:
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return (time.perf_counter() - start) * 1000.0

    for _ in range(warmup):
        run_once()
    return statistics.median(run_once() for _ in range(repeats))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", choices=("default", "small"), default="default")
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 416], help="square input sizes (multiples of 32)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logger.setLevel(logging.INFO)

    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    params = ModelParams(clip_pretrain=None) if args.config == "default" else ModelParams.small()
    model = build_model(params).eval().to(device)
    n_params = sum(p.numel() for p in model.parameters())
    hardware = torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_name()
    logger.info("device %s (%s), torch %s, threads %d", device, hardware, torch.__version__, torch.get_num_threads())
    logger.info("config %s: %.1f M parameters; batch 1, median of %d after %d warm-up runs",
                args.config, n_params / 1e6, args.repeats, args.warmup)

    text = tokenize("open the top drawer of the cabinet next to the sink", params.word_len).to(device)
    columns = ("size", "image enc ms", "text enc ms", "depth+neck+dec+heads ms", "forward ms")
    logger.info("%6s %14s %14s %24s %14s", *columns)
    with torch.inference_mode():
        for size in args.sizes:
            image = torch.randn(1, 3, size, size, device=device)
            depth = torch.rand(1, 1, size, size, device=device) * 3.0
            image_features = model.encode_image(image)
            text_features = model.encode_text(text)
            timings = [
                _median_ms(lambda: model.encode_image(image), device, args.warmup, args.repeats),
                _median_ms(lambda: model.encode_text(text), device, args.warmup, args.repeats),
                _median_ms(
                    lambda: model.forward_from_features(image_features, depth, text_features),
                    device, args.warmup, args.repeats,
                ),
                _median_ms(lambda: model(image, depth, text), device, args.warmup, args.repeats),
            ]
            logger.info("%6d %14.1f %14.1f %24.1f %14.1f", size, *timings)


if __name__ == "__main__":
    main()
