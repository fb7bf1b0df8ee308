"""Calibration frames for int8 post-training quantisation: the graph's inputs for a few hundred frames.

Two sources: ``"synthetic"`` (the default), frames of the project's generator (:func:`segaff_core.synth.render_scene`,
seeds ``seed .. seed + frames - 1``, each with an instruction of one of its parts), or a data set root the
project reads (``DIR``): an OPDReal/OPDMulti root (``{train,valid,test}.h5`` and annotations; its ``train``
split, else ``valid``, else ``test``) or a processed SceneFun3D root (``data.lmdb``), frames drawn evenly
through it, each with its own instruction. Frames need an instruction because the text conditions most of
the network; a folder of bare RGB-D frames has none.

A calibration's :meth:`~Calibration.identity` is part of the int8 engine's cache key: the source, the
seed and frame count for synthetic frames, a SHA-256 of every file's path and content for a ``DIR``
(read once per process; a data set of several GB takes tens of seconds).
"""
from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from os import PathLike
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch

from segaff_core.data.transforms import CLIP_MEAN, CLIP_STD
from segaff_core.model import SegAffordanceModel, TextConditioning
from segaff_core.text import tokenize

SYNTHETIC = "synthetic"
DEFAULT_FRAMES = 300
"""Calibration frames by default (NNCF's default subset size)."""
OPD_SPLITS = ("train", "valid", "test")  # the first one a root holds is read


@dataclass(frozen=True)
class Calibration:
    """Where int8 calibration frames come from: ``source`` is ``"synthetic"`` or a data set root."""

    source: str = SYNTHETIC
    frames: int = DEFAULT_FRAMES
    seed: int = 0  # first scene of the synthetic frames

    @staticmethod
    def parse(value: Union[str, "PathLike[str]", "Calibration"], frames: int = DEFAULT_FRAMES) -> "Calibration":
        """``"synthetic"``, a data set root or a Calibration; FileNotFoundError for a missing root,
        ValueError for a folder that is no data set the project reads or a frame count below 1."""
        if isinstance(value, Calibration):
            return value
        if frames < 1:
            raise ValueError(f"calibration frames must be >= 1, got {frames}")
        if str(value) == SYNTHETIC:
            return Calibration(SYNTHETIC, frames)
        root = Path(value).expanduser()
        if not root.is_dir():
            raise FileNotFoundError(f"calibration data set {root} is not a folder ('synthetic' or a data set root)")
        dataset_kind(root)  # refuse an unreadable folder now, not after the engine build started
        return Calibration(str(root.resolve()), frames)

    @property
    def synthetic(self) -> bool:
        return self.source == SYNTHETIC

    def identity(self) -> dict[str, Any]:
        """What the calibrated engine depends on (part of its cache key)."""
        if self.synthetic:
            return {"source": SYNTHETIC, "seed": self.seed, "frames": self.frames}
        return {"source": "dir", "sha256": directory_digest(Path(self.source)), "frames": self.frames}

    def describe(self) -> str:
        if self.synthetic:
            return f"{self.frames} synthetic frames (seeds {self.seed}-{self.seed + self.frames - 1})"
        return f"{self.frames} frames of {self.source}"

    def feeds(self, model: SegAffordanceModel, input_size: tuple[int, int]) -> Iterator[dict[str, np.ndarray]]:
        """The graph inputs (by name, float32) of each calibration frame at ``input_size`` (H, W); the text
        side runs in ``model`` (PyTorch), once per instruction."""
        from segaff_core.runtimes.onnxruntime_runtime import frame_feeds  # runtimes import this module

        device = next(model.parameters()).device
        texts: dict[str, TextConditioning] = {}
        for image, depth, instruction in self._frames(input_size):
            if instruction not in texts:
                texts[instruction] = text_conditioning(model, instruction)
            feeds = frame_feeds(image.to(device), depth.to(device), texts[instruction])
            yield {name: tensor.cpu().numpy() for name, tensor in feeds.items()}

    def _frames(self, input_size: tuple[int, int]) -> Iterator[tuple[torch.Tensor, torch.Tensor, str]]:
        """``image (1,3,H,W)`` CLIP-normalised, ``depth (1,1,H,W)`` metres and the instruction per frame."""
        if self.synthetic:
            from segaff_core.synth import render_scene

            for index in range(self.frames):
                sample = render_scene(self.seed + index, input_size)
                part = sample.parts[index % len(sample.parts)]
                yield (*rendered_inputs(sample.rgb, sample.depth_m), part.descriptions[0])
            return
        dataset = open_dataset(Path(self.source), input_size)
        for index in np.linspace(0, len(dataset) - 1, num=min(self.frames, len(dataset))).round().astype(int):
            sample = dataset[int(index)]
            yield sample["image"][None].float(), sample["depth"][None].float(), sample["description"]


def rendered_inputs(rgb: np.ndarray, depth_m: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """``rgb (H,W,3) uint8`` and ``depth_m (H,W)`` at the network input size -> ``image (1,3,H,W)``
    CLIP-normalised and ``depth (1,1,H,W)`` metres, on the CPU."""
    mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    image = (torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255.0 - mean) / std
    depth = torch.from_numpy(np.ascontiguousarray(depth_m, dtype=np.float32))[None, None]
    return image, depth


def text_conditioning(model: SegAffordanceModel, instruction: str) -> TextConditioning:
    """The text side of ``model`` for ``instruction`` (what the Predictor caches per instruction)."""
    device = next(model.parameters()).device
    tokens = tokenize(instruction, word_len=model.params.word_len).to(device)
    with torch.inference_mode():
        return model.prepare_text(model.encode_text(tokens), trim_padding=True)


def dataset_kind(root: Path) -> str:
    """``"sf3d"`` (``data.lmdb``) or ``"opd"`` (a split's ``.h5`` images), else ValueError saying what a root holds."""
    if (root / "data.lmdb").exists():
        return "sf3d"
    if any((root / f"{split}.h5").is_file() for split in OPD_SPLITS):
        return "opd"
    raise ValueError(
        f"calibration folder {root} is no data set root the project reads: an OPD root holds "
        f"{{train,valid,test}}.h5, depth.h5 and annotations_bwdf/, a SceneFun3D root data.lmdb"
    )


def open_dataset(root: Path, input_size: tuple[int, int]) -> Any:
    """The OPD or SceneFun3D data set at ``root`` (OPD: its first split of :data:`OPD_SPLITS`)."""
    from segaff_core.data import OPDDataset, SF3DDataset

    if dataset_kind(root) == "sf3d":
        return SF3DDataset(root, input_size=input_size)
    split = next(split for split in OPD_SPLITS if (root / f"{split}.h5").is_file())
    return OPDDataset(root, split, input_size=input_size)


@lru_cache(maxsize=8)
def directory_digest(root: Path) -> str:
    """SHA-256 of every file under ``root``: relative path, size and content, in path order."""
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(f"{path.relative_to(root).as_posix()}\0{path.stat().st_size}\0".encode())
        with path.open("rb") as file:
            for block in iter(lambda: file.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()
