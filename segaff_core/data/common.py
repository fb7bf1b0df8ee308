"""What the OPD and SceneFun3D readers share: errors, safe paths, masks, per-process handles, skipping.

A reader subclasses :class:`AffordanceDataset` and implements ``_load(index) -> RawSample`` (source
resolution, numpy) and ``describe(index)``; the base class resizes and normalises the sample, and with
``skip_bad=True`` turns a :class:`DatasetError` into ``None`` (dropped by :func:`collate_samples`) and
marks the index in a flag tensor shared with the DataLoader workers.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Generic, Optional, TypeVar, Union

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset, default_collate

from segaff_core.data.mirror import mirror_sample
from segaff_core.data.transforms import Preprocess
from segaff_core.text import tokenize, trim_padding

log = logging.getLogger(__name__)

Sample = dict[str, Any]
"""One sample of the data contract (docs/DESIGN.md): tensors plus ``description`` and ``image_id``."""

TRAJECTORY_POINTS = 20
MIRROR_PROBABILITY = 0.5
"""Share of training samples mirrored left-right when augmenting."""
_MIN_POLYGON_AREA_PX = 1e-6
_MIN_AXIS_NORM = 1e-9
_POLYGON_SHIFT_BITS = 3  # cv2.fillPoly fixed-point precision: 1/8 pixel


class DatasetError(Exception):
    """A sample that cannot be read: a missing or corrupt file, entry or record (named in the message)."""


class UnsafePathError(DatasetError, ValueError):
    """A path in an annotation or record that is absolute or leaves the data root."""


def safe_join(root: Path, relative: str, record: str) -> Path:
    """``root / relative`` for a relative path that stays inside ``root`` (checked lexically).

    Symbolic links inside the root are allowed; ``..`` components and absolute paths are not.
    """
    path = PurePosixPath(relative.replace("\\", "/"))
    if not relative or path.is_absolute() or ".." in path.parts:
        raise UnsafePathError(f"{record}: path {relative!r} is empty, absolute or leaves the data root {root}")
    return root.joinpath(*path.parts)


def polygon_area(polygon_xy: np.ndarray) -> float:
    """Unsigned shoelace area (pixels²) of a polygon (N, 2)."""
    x, y = polygon_xy[:, 0], polygon_xy[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def check_polygons(polygons_xy: Sequence[np.ndarray], record: str) -> None:
    """DatasetError unless the polygons (each (N, 2), x = column) are finite with a positive total area."""
    if not polygons_xy or any(p.ndim != 2 or p.shape[1] != 2 or not np.isfinite(p).all() for p in polygons_xy):
        raise DatasetError(f"{record}: mask polygon is missing or malformed")
    if sum(polygon_area(p) for p in polygons_xy if len(p) >= 3) < _MIN_POLYGON_AREA_PX:
        raise DatasetError(f"{record}: mask polygon is degenerate (area 0)")


def polygon_mask(polygons_xy: Sequence[np.ndarray], height: int, width: int) -> np.ndarray:
    """(height, width) uint8 {0, 1}: the union of the filled polygons (sub-pixel vertices kept)."""
    mask = np.zeros((height, width), dtype=np.uint8)
    scale = 1 << _POLYGON_SHIFT_BITS
    for polygon in polygons_xy:  # one call each: a union, where one call with all would XOR overlaps
        points = np.round(polygon * scale).astype(np.int32)
        cv2.fillPoly(mask, [points], 1, lineType=cv2.LINE_8, shift=_POLYGON_SHIFT_BITS)
    return mask


def unit_vector(vector: Sequence[float], name: str, record: str) -> np.ndarray:
    """``vector`` (3,) normalised; DatasetError when it is malformed, non-finite or zero."""
    array = np.asarray(vector, dtype=np.float64)
    if array.shape != (3,) or not np.isfinite(array).all():
        raise DatasetError(f"{record}: {name} must be 3 finite numbers, got {vector!r}")
    norm = float(np.linalg.norm(array))
    if norm < _MIN_AXIS_NORM:
        raise DatasetError(f"{record}: {name} is the zero vector")
    return array / norm


def check_intrinsics(K: np.ndarray, record: str) -> np.ndarray:
    """``K`` as float64 (3, 3); DatasetError when it is malformed, non-finite or fx, fy <= 0."""
    K = np.asarray(K, dtype=np.float64)
    if K.shape != (3, 3) or not np.isfinite(K).all() or K[0, 0] <= 0 or K[1, 1] <= 0:
        raise DatasetError(f"{record}: camera intrinsics are malformed: {K.tolist()}")
    return K


HandleT = TypeVar("HandleT")


class ProcessLocal(Generic[HandleT]):
    """A handle (e.g. an HDF5 file) opened lazily, once per process.

    A forked DataLoader worker sees the parent's pid in :attr:`_pid` and opens its own handle; the
    handle is never pickled (spawned workers start without one).
    """

    def __init__(self, opener: Callable[[], HandleT]) -> None:
        self._opener = opener
        self._handle: Optional[HandleT] = None
        self._pid: Optional[int] = None

    def get(self) -> HandleT:
        """The handle of this process, opened on first use."""
        if self._handle is None or self._pid != os.getpid():
            self._handle = self._opener()
            self._pid = os.getpid()
        return self._handle

    @property
    def opened_in(self) -> Optional[int]:
        """The pid that opened the current handle (None before the first use)."""
        return self._pid

    def __getstate__(self) -> dict[str, Any]:
        return {"_opener": self._opener, "_handle": None, "_pid": None}


@dataclass
class RawSample:
    """One sample at its source resolution, before resizing: numpy arrays, camera frame, metres."""

    rgb: np.ndarray  # (h, w, 3) uint8 RGB, the view of K at any resolution (e.g. a reduced decode)
    depth_m: np.ndarray  # (h', w') float32 metres, 0 = invalid, registered to rgb, any resolution
    mask: np.ndarray  # (H, W) uint8 {0, 1} at the resolution K belongs to
    K: np.ndarray  # (3, 3) intrinsics at the mask's resolution
    point_xy: np.ndarray  # (2,) interaction point in [0, 1], x = column
    point_3d: np.ndarray  # (3,) interaction point
    axis: np.ndarray  # (3,) unit
    origin: np.ndarray  # (3,)
    motion_type: int  # 0 translation, 1 rotation
    trajectory: np.ndarray  # (20, 3) relative to its first point
    has_trajectory: bool
    description: str
    image_id: str
    diameter: float  # object size in metres, 0 = unknown


def to_sample(raw: RawSample, preprocess: Preprocess) -> Sample:
    """The data contract's dict of tensors for ``raw``, resized and normalised by ``preprocess``."""
    image, depth, mask, K = preprocess(raw.rgb, raw.depth_m, raw.mask, raw.K)

    def floats(array: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.asarray(array, dtype=np.float32))

    return {
        "image": image,
        "depth": depth,
        "text": tokenize(raw.description)[0],
        "description": raw.description,
        "mask": mask,
        "point": floats(raw.point_xy),
        "point_3d": floats(raw.point_3d),
        "axis": floats(raw.axis),
        "origin": floats(raw.origin),
        "motion_type": torch.tensor(raw.motion_type, dtype=torch.long),
        "K": K,
        "trajectory": floats(raw.trajectory),
        "has_trajectory": torch.tensor(raw.has_trajectory),
        "image_id": raw.image_id,
        "diameter": torch.tensor(raw.diameter, dtype=torch.float32),
    }


class SkipTracker:
    """Which samples were skipped as bad, shared by the DataLoader workers of one dataset.

    One flag per index in shared memory: workers only ever set flags (no lost updates), the main
    process reads and clears them with :meth:`take` (e.g. at the end of an epoch).
    """

    def __init__(self, size: int) -> None:
        self._flags = torch.zeros(size, dtype=torch.bool).share_memory_()

    def mark(self, index: int) -> None:
        """Record that sample ``index`` was skipped."""
        self._flags[index] = True

    def take(self) -> list[int]:
        """The indices skipped since the last call, and clear them."""
        indices = torch.nonzero(self._flags).flatten().tolist()
        self._flags.zero_()
        return indices


@dataclass(frozen=True)
class ImageGroup:
    """Samples of one image that a training batch takes together, augmented alike (``seed``)."""

    indices: tuple[int, ...]
    seed: int


@dataclass
class GroupedSamples:
    """What a dataset returns for an :class:`ImageGroup`: its samples, one image (``None`` = a bad one)."""

    samples: list[Optional[Sample]]


class AffordanceDataset(Dataset):
    """Base of the readers: skip-or-raise handling of bad samples and the shared preprocessing."""

    def __init__(self, size: int, input_size: tuple[int, int], skip_bad: bool, augment: bool) -> None:
        self.preprocess = Preprocess(input_size=(int(input_size[0]), int(input_size[1])), augment=augment)
        self.skip_bad = skip_bad
        self.skipped = SkipTracker(size)

    def __getitem__(self, item: Union[int, ImageGroup]) -> Union[Optional[Sample], GroupedSamples]:
        """The sample at index ``item``; ``None`` for a bad one when ``skip_bad`` (see :func:`collate_samples`).

        With ``augment``, half the samples are mirrored left-right (:mod:`segaff_core.data.mirror`). An
        :class:`ImageGroup` gives its samples with the same augmentation (the random draws seeded by the
        group's seed), so they show one image: the same mirroring and colour jitter."""
        if isinstance(item, ImageGroup):
            samples = []
            for index in item.indices:
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(item.seed)
                    samples.append(self._sample(index))
            return GroupedSamples(samples)
        return self._sample(item)

    def _sample(self, index: int) -> Optional[Sample]:
        try:
            raw = self._load(index)
            if self.preprocess.augment and float(torch.rand(())) < MIRROR_PROBABILITY:
                raw = mirror_sample(raw)
            return {**to_sample(raw, self.preprocess), "index": torch.tensor(index, dtype=torch.long)}
        except DatasetError as error:
            if not self.skip_bad:
                raise
            self.skipped.mark(index)
            log.warning("skipping bad sample %d: %s", index, error)
            return None

    def _load(self, index: int) -> RawSample:
        raise NotImplementedError

    def describe(self, index: int) -> str:
        """A human-readable name of sample ``index`` (file and record) for reports."""
        raise NotImplementedError

    def image_keys(self) -> list[str]:
        """The image of every sample, in index order (samples of one image share the key)."""
        raise NotImplementedError


_PER_IMAGE_KEYS = ("image", "depth")


def collate_samples(items: Sequence[Union[Optional[Sample], GroupedSamples]]) -> Optional[Sample]:
    """``default_collate`` of the good samples (``None`` = skipped bad ones); ``None`` when none is left.

    Lightning's training loop skips a ``None`` batch with a warning. The token ids are cut after the
    batch's longest instruction (:func:`segaff_core.text.trim_padding`): the text encoder then runs on
    ~20 tokens, not 77, with the same features. Items that are :class:`GroupedSamples` (image-grouped
    training batches) give ``image`` and ``depth`` once per image, and ``image_index (B,)``: the image row
    of each sample.
    """
    grouped = any(isinstance(item, GroupedSamples) for item in items)
    groups = [item.samples if isinstance(item, GroupedSamples) else [item] for item in items]
    groups = [good for good in ([s for s in group if s is not None] for group in groups) if good]
    if not groups:
        return None
    samples = [sample for group in groups for sample in group]
    if not grouped:
        batch = default_collate(samples)
    else:
        batch = default_collate([{k: v for k, v in s.items() if k not in _PER_IMAGE_KEYS} for s in samples])
        for key in _PER_IMAGE_KEYS:
            batch[key] = torch.stack([group[0][key] for group in groups])
        sizes = torch.tensor([len(group) for group in groups])
        batch["image_index"] = torch.repeat_interleave(torch.arange(len(groups)), sizes)
    batch["text"] = trim_padding(batch["text"])
    return batch
