"""Samples/s of the OPD and SceneFun3D training loaders as configured (workers, batch size, input size).

Without ``--opd-root`` / ``--sf3d-root`` it first writes roots of the real data's sizes to a temporary
directory: OPDMulti-like 256 x 192 HDF5 images, SceneFun3D-like 1920 x 1440 JPEGs with 256 x 192
16-bit depth PNGs. Then it times the training step (forward, losses, backward, AdamW; no Lightning) of
``--model`` on the loaders' own batches in this process, and prints each loader's rate against it. The
goal: loader samples/s >= 2 x training-step samples/s with the configured workers.

Example: ``python bench/data_throughput.py --num-workers 2 --batch-size 16 --batches 30``
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader

from segaff_core.config import ModelParams
from segaff_core.data import OPDDataModule, SF3DDataModule, collate_samples
from segaff_core.data.opd import write_h5_depth, write_h5_images
from segaff_core.data.sf3d_format import write_lmdb
from segaff_core.lightning_module import SegAffordanceModule
from segaff_core.losses import compute_losses

logger = logging.getLogger("data_throughput")

MODELS = {"small": ModelParams.small(), "default": ModelParams(clip_pretrain=None)}

OPD_SIZE = (192, 256)  # OPDMulti (H, W)
SF3D_SIZE = (1440, 1920)  # SceneFun3D RGB (H, W)
SF3D_DEPTH_SIZE = (192, 256)
PARTS_PER_IMAGE = 2


def _photo_like(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """A smooth random image with mild noise: decodes and compresses like a photo, unlike pure noise."""
    coarse = rng.integers(0, 256, (size[0] // 64 + 2, size[1] // 64 + 2, 3), dtype=np.uint8)
    smooth = cv2.resize(coarse, (size[1], size[0]), interpolation=cv2.INTER_CUBIC)
    return cv2.add(smooth, rng.integers(0, 12, smooth.shape, dtype=np.uint8))


def _part(rng: np.random.Generator, K: np.ndarray, size: tuple[int, int]) -> dict[str, Any]:
    """A rectangular part around a random pixel, with its origin back-projected at 1-3 m."""
    height, width = size
    u, v = rng.uniform(0.2, 0.8) * width, rng.uniform(0.2, 0.8) * height
    z = rng.uniform(1.0, 3.0)
    origin = [(u - K[0, 2]) * z / K[0, 0], (v - K[1, 2]) * z / K[1, 1], z]
    half_w, half_h = rng.uniform(0.05, 0.15) * width, rng.uniform(0.05, 0.15) * height
    axis = rng.normal(size=3)
    return {"u": u, "v": v, "origin": origin, "axis": (axis / np.linalg.norm(axis)).tolist(),
            "box": [u - half_w, v - half_h, u + half_w, v + half_h], "rotation": bool(rng.random() < 0.5)}


def write_opd_root(root: Path, num_images: int, rng: np.random.Generator) -> Path:
    """An OPDMulti-layout root (train split) with ``PARTS_PER_IMAGE`` annotations per image."""
    height, width = OPD_SIZE
    K = np.array([[200.0, 0, width / 2], [0, 200.0, height / 2], [0, 0, 1]])
    images, annotations = [], []
    for index in range(num_images):
        images.append({"id": index, "file_name": f"{index}-0.png", "depth_file_name": f"{index}-0_d.png",
                       "height": height, "width": width,
                       "camera": {"intrinsic": K.flatten(order="F").tolist(), "extrinsic": np.eye(4).ravel().tolist()}})
        for _ in range(PARTS_PER_IMAGE):
            part = _part(rng, K, OPD_SIZE)
            x0, y0, x1, y1 = part["box"]
            annotations.append({
                "id": len(annotations), "image_id": index, "segmentation": [[x0, y0, x1, y0, x1, y1, x0, y1]],
                "description": "Open the left cabinet door.", "object_key": f"object_{index}",
                "motion": {"type": "rotation" if part["rotation"] else "translation",
                           "axis": part["axis"], "origin": part["origin"]},
            })
    (root / "annotations_bwdf").mkdir(parents=True)
    (root / "annotations_bwdf" / "MotionNet_train.json").write_text(json.dumps({"images": images,
                                                                                "annotations": annotations}))
    rgb = np.stack([_photo_like(rng, OPD_SIZE) for _ in range(num_images)])
    write_h5_images(root / "train.h5", "train", [i["file_name"] for i in images], rgb)
    depth_mm = rng.uniform(500, 4000, (num_images, *OPD_SIZE)).astype(np.float32)
    write_h5_depth(root / "depth.h5", [i["depth_file_name"] for i in images], depth_mm)
    return root


def write_sf3d_root(root: Path, num_images: int, rng: np.random.Generator) -> Path:
    """A processed SceneFun3D root (split ``train``) with ``PARTS_PER_IMAGE`` records per image."""
    (root / "images").mkdir(parents=True)
    (root / "depth").mkdir()
    K = np.array([[1450.0, 0, SF3D_SIZE[1] / 2], [0, 1450.0, SF3D_SIZE[0] / 2], [0, 0, 1]])
    records = []
    for index in range(num_images):
        rgb_path, depth_path = f"images/{index}.jpg", f"depth/{index}.png"
        cv2.imwrite(str(root / rgb_path), _photo_like(rng, SF3D_SIZE), [cv2.IMWRITE_JPEG_QUALITY, 90])
        cv2.imwrite(str(root / depth_path), rng.integers(500, 4000, SF3D_DEPTH_SIZE, dtype=np.uint16))
        for part_index in range(PARTS_PER_IMAGE):
            part = _part(rng, K, SF3D_SIZE)
            x0, y0, x1, y1 = part["box"]
            origin = np.asarray(part["origin"])
            trajectory = origin + np.linspace(0, 0.3, 12)[:, None] * np.asarray(part["axis"])
            records.append((f"visit/{index}/0/{part_index}", {
                "rgb_path": rgb_path, "depth_path": depth_path,
                "mask_coordinates_yx": [[y0, x0], [y0, x1], [y1, x1], [y1, x0]],
                "description": "Pull the handle of the top drawer.",
                "motion_type": "rot" if part["rotation"] else "trans",
                "motion_dir_camera_coords": part["axis"], "motion_origin_camera_coords": part["origin"],
                "motion_origin_pixel": [part["u"], part["v"]], "intrinsics": K.tolist(),
                "extrinsics": np.eye(4).tolist(), "image_size": list(SF3D_SIZE),
                "trajectory_3d_camera_coords": trajectory.tolist(),
            }))
    write_lmdb(root / "data.lmdb", records, {"splits": {"train": [key for key, _ in records]}})
    return root


def _batches(loader: DataLoader) -> Iterator[Any]:
    while True:
        yield from loader


def measure(loader: DataLoader, num_batches: int) -> float:
    """Samples/s over ``num_batches`` batches after the first one (worker start-up excluded)."""
    batches = _batches(loader)
    next(batches)
    samples = 0
    started = time.perf_counter()
    for _ in range(num_batches):
        samples += len(next(batches)["image_id"])
    return samples / (time.perf_counter() - started)


def training_step_samples_per_s(params: ModelParams, batch: dict[str, Any], steps: int, warmup: int = 2) -> float:
    """Samples/s of the training step of a fresh model on ``batch``: forward, losses, backward, AdamW."""
    torch.manual_seed(0)
    module = SegAffordanceModule(model_params=params).train()
    optimizer = torch.optim.AdamW(module.parameters(), lr=1e-4)
    started = 0.0
    for index in range(warmup + steps):
        if index == warmup:
            started = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        total, _ = compute_losses(module(batch, with_targets=True), batch, module.loss_params)
        total.backward()
        optimizer.step()
    return steps * len(batch["image"]) / (time.perf_counter() - started)


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    return (f"{platform.node()}: {cpu}, {os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads; "
            f"torch {torch.__version__}")


def _datamodules(args: argparse.Namespace, scratch: Path) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    common = dict(input_size=(args.input_size, args.input_size), batch_size=args.batch_size,
                  num_workers=args.num_workers, pin_memory=False, persistent_workers=args.num_workers > 0)
    opd_root: Optional[Path] = args.opd_root or write_opd_root(scratch / "opd", args.num_images, rng)
    sf3d_root: Optional[Path] = args.sf3d_root or write_sf3d_root(scratch / "sf3d", args.num_images, rng)
    return {
        "opd": OPDDataModule(str(opd_root), train_split=args.opd_split, val_split=args.opd_split, **common),
        "sf3d": SF3DDataModule(str(sf3d_root), train_split=args.sf3d_split, val_split=args.sf3d_split, **common),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--opd-root", type=Path, help="an OPDReal / OPDMulti root (default: synthetic)")
    parser.add_argument("--opd-split", default="train")
    parser.add_argument("--sf3d-root", type=Path, help="a processed SceneFun3D root (default: synthetic)")
    parser.add_argument("--sf3d-split", default="train", help="a split of the LMDB metadata")
    parser.add_argument("--num-workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--input-size", type=int, default=256, help="square input size")
    parser.add_argument("--batches", type=int, default=20, help="batches timed per loader")
    parser.add_argument("--num-images", type=int, default=64, help="images per synthetic root")
    parser.add_argument("--model", choices=sorted(MODELS), default="small",
                        help="the model whose training step the loaders must feed (default %(default)s)")
    parser.add_argument("--steps", type=int, default=5, help="timed training steps (default %(default)s)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logger.setLevel(logging.INFO)
    logger.info("%s", _machine())

    with tempfile.TemporaryDirectory(prefix="segaff_data_bench_") as scratch:
        datamodules = _datamodules(args, Path(scratch))
        for datamodule in datamodules.values():
            datamodule.setup("fit")
        # The step first, while no loader worker runs beside it.
        step_batch = collate_samples([datamodules["sf3d"].datasets["train"][i] for i in range(args.batch_size)])
        step_rate = training_step_samples_per_s(MODELS[args.model], step_batch, args.steps)
        rates = {name: measure(datamodule.train_dataloader(), args.batches) for name, datamodule in datamodules.items()}
    logger.info("training step, %s model: %7.1f samples/s (batch %d, input %d, CPU)", args.model, step_rate,
                args.batch_size, args.input_size)
    for name, rate in rates.items():
        verdict = "keeps the step fed" if rate >= 2.0 * step_rate else "too slow for the goal"
        logger.info("loader %-5s %7.1f samples/s (%d workers, colour jitter on) = %.1f x the step (goal >= 2): %s",
                    name, rate, args.num_workers, rate / step_rate, verdict)


if __name__ == "__main__":
    main()
