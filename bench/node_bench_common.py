"""What the node benchmarks (node_latency.py, soak.py) share: the node's command-line options and a
random-weight checkpoint of the small or the default configuration."""
from __future__ import annotations

import argparse
from pathlib import Path


def add_node_arguments(parser: argparse.ArgumentParser) -> None:
    """--checkpoint | --random CONFIG, --device, --input (network side, px), --backend and --size (camera
    WIDTHxHEIGHT)."""
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--checkpoint", type=Path, help="checkpoint (default: the shipped one)")
    source.add_argument("--random", choices=("small", "default"),
                        help="a random-weight checkpoint of ModelParams.small() or of the default ModelParams "
                             "(150 M parameters; speed does not depend on the weights)")
    parser.add_argument("--device", default="cpu", help="auto | cpu | cuda[:N] (default cpu)")
    parser.add_argument("--input", type=int, default=0,
                        help="square network input size, px (default 0: the checkpoint's training size)")
    parser.add_argument("--backend", default="auto",
                        help="inference runtime of the node and the bare Predictor: auto | torch | onnxruntime | "
                             "openvino | tensorrt (default auto)")
    parser.add_argument("--size", default="320x240", help="camera image WIDTHxHEIGHT (default 320x240)")


def random_checkpoint(directory: Path, config: str) -> Path:
    """A random-weight (seeded) checkpoint of ``config`` ("small" or "default", no pretrained CLIP) in ``directory``."""
    import torch

    from segaff_core.checkpoint import save_checkpoint
    from segaff_core.config import ModelParams
    from segaff_core.model import build_model

    torch.manual_seed(0)
    params = ModelParams.small() if config == "small" else ModelParams(clip_pretrain=None)
    return save_checkpoint(build_model(params), params, directory / f"{config}.ckpt")
