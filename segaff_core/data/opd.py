"""Reader of OPDReal and OPDMulti as the released data stores them.

``<root>/{split}.h5`` holds ``{split}_images`` (N, H, W, 3) uint8 and ``{split}_filenames``;
``<root>/depth.h5`` holds ``depth_images`` (N, H, W, 1) float32 millimetres and ``depth_filenames``;
``<root>/annotations_bwdf/MotionNet_{split}.json[.gz]`` the COCO-style annotations. One sample per
annotation; the interaction point is the motion origin (OPD semantics) projected with K.
"""
from __future__ import annotations

import gzip
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Optional, Union

import h5py
import numpy as np

from segaff_core.data.common import (
    TRAJECTORY_POINTS,
    AffordanceDataset,
    DatasetError,
    ProcessLocal,
    RawSample,
    check_intrinsics,
    check_polygons,
    polygon_mask,
    safe_join,
    unit_vector,
)
from segaff_core.geometry import pixel_to_normalised, project

log = logging.getLogger(__name__)

_MM_PER_M = 1000.0
DEPTH_FILE = "depth.h5"
MOTION_TYPES = {"translation": 0, "rotation": 1}
ATTRIBUTE_FILES = ("real-attr.json", "obj_info.json")


@dataclass(frozen=True)
class OPDAnnotation:
    """One annotation with its image's fields, parsed and validated."""

    record: str  # e.g. "<root>/annotations_bwdf/MotionNet_valid.json annotation 12 (image 202-3000.png)"
    image_name: str
    depth_name: str
    size: tuple[int, int]  # (H, W)
    K: np.ndarray  # (3, 3)
    origin: np.ndarray  # (3,) camera frame, metres
    axis: np.ndarray  # (3,) unit
    motion_type: int
    polygons: tuple[np.ndarray, ...]  # each (N, 2), x = column, full resolution
    description: str
    object_key: str  # OPDMulti object_key, else the model id (file name before '-')

    @property
    def point_xy(self) -> np.ndarray:
        """The origin projected with K, normalised to [0, 1] (NaN behind the camera)."""
        return pixel_to_normalised(project(self.origin, self.K)[0], self.size)


def _camera_matrix(value: Any, shape: tuple[int, int]) -> np.ndarray:
    """A column-major camera matrix: OPDReal ``{"matrix": [...]}`` or OPDMulti's flat list."""
    if isinstance(value, Mapping):
        value = value["matrix"]
    return np.asarray(value, dtype=np.float64).reshape(shape, order="F")


def _polygons(segmentation: Any, record: str) -> tuple[np.ndarray, ...]:
    if not isinstance(segmentation, list) or not all(isinstance(p, list) and len(p) % 2 == 0 for p in segmentation):
        raise DatasetError(f"{record}: segmentation must be a list of polygons [x0, y0, x1, y1, ...]")
    polygons = tuple(np.asarray(p, dtype=np.float64).reshape(-1, 2) for p in segmentation)
    check_polygons(polygons, record)
    return polygons


def _checked_name(name: Any, field: str, root: Path, record: str) -> str:
    if not isinstance(name, str):
        raise DatasetError(f"{record}: {field} must be a string, got {name!r}")
    safe_join(root, name, record)
    return name


def parse_annotation(annotation: Mapping[str, Any], image: Mapping[str, Any], root: Path, record: str) -> OPDAnnotation:
    """Parse one annotation and its image entry; DatasetError (naming ``record``) when malformed."""
    try:
        camera = image["camera"]
        motion = annotation["motion"]
        current = "current_origin" in motion
        K = check_intrinsics(_camera_matrix(camera["intrinsic"], (3, 3)), record)
        origin = np.asarray(motion["current_origin" if current else "origin"], dtype=np.float64)
        raw_axis = motion["current_axis" if current else "axis"]
        motion_type = motion["type"]
        description = annotation["description"]
        size = (int(image["height"]), int(image["width"]))
        names = (image["file_name"], image["depth_file_name"])
        segmentation = annotation["segmentation"]
    except (KeyError, TypeError, ValueError) as error:
        raise DatasetError(f"{record}: missing or malformed field ({error!r})") from None
    if origin.shape != (3,) or not np.isfinite(origin).all():
        raise DatasetError(f"{record}: motion origin must be 3 finite numbers, got {origin.tolist()}")
    if motion_type not in MOTION_TYPES:
        raise DatasetError(f"{record}: motion type {motion_type!r} is not one of {sorted(MOTION_TYPES)}")
    if not isinstance(description, str) or not description.strip():
        raise DatasetError(f"{record}: description is missing or empty")
    image_name = _checked_name(names[0], "file_name", root, record)
    return OPDAnnotation(
        record=record,
        image_name=image_name,
        depth_name=_checked_name(names[1], "depth_file_name", root, record),
        size=size,
        K=K,
        origin=origin,
        axis=unit_vector(raw_axis, "motion axis", record),
        motion_type=MOTION_TYPES[motion_type],
        polygons=_polygons(segmentation, record),
        description=description,
        object_key=str(annotation.get("object_key") or image_name.split("-")[0]),
    )


def annotation_path(root: Path, split: str, annotation_dir: str) -> Path:
    """``MotionNet_{split}.json``, or its gzipped copy, under ``root / annotation_dir``."""
    for suffix in (".json", ".json.gz"):
        path = root / annotation_dir / f"MotionNet_{split}{suffix}"
        if path.is_file():
            return path
    raise FileNotFoundError(f"no annotations for split {split!r}: {root / annotation_dir}/MotionNet_{split}.json[.gz]")


def load_json(path: Path) -> Any:
    """A JSON file, gunzipped when its name ends in ``.gz``."""
    with (gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else path.open(encoding="utf-8")) as f:
        return json.load(f)


def load_diameters(path: Optional[Path]) -> dict[str, float]:
    """Object sizes in metres: OPDReal ``real-attr.json`` (``diameter`` by model id, the image file name
    before its first '-') or OPDMulti ``obj_info.json`` (``diagonal`` by object_key); empty when ``path`` is
    None. DatasetError naming the file (and the entry) when it cannot be read or an entry has no size."""
    if path is None:
        return {}
    try:
        table = load_json(path)
    except (OSError, ValueError) as error:
        raise DatasetError(f"cannot read the object size file {path}: {error}") from None
    if not isinstance(table, dict):
        raise DatasetError(f"object size file {path} must hold a JSON object keyed by model id or object key")
    sizes: dict[str, float] = {}
    for key, entry in table.items():
        size = entry.get("diameter", entry.get("diagonal")) if isinstance(entry, dict) else None
        if isinstance(size, bool) or not isinstance(size, (int, float)):
            raise DatasetError(f"object size file {path}: entry {key!r} has no numeric 'diameter' or 'diagonal'")
        sizes[str(key)] = float(size)
    return sizes


def h5_name_index(path: Path, dataset: str) -> dict[str, int]:
    """File name -> row of the names dataset ``dataset`` in ``path`` (names stored as bytes or str).

    DatasetError naming ``path`` when the file is not HDF5, truncated or corrupt (h5py's own messages
    do not name the file).
    """
    if not path.is_file():
        raise FileNotFoundError(f"OPD HDF5 file not found: {path}")
    try:
        with h5py.File(path, "r") as h5:
            if dataset not in h5:
                raise DatasetError(f"{path}: no dataset {dataset!r} (has {sorted(h5.keys())})")
            names = h5[dataset][()]
    except (OSError, KeyError) as error:  # what h5py raises for damaged files, headers and B-trees
        raise DatasetError(f"{path}: cannot read the HDF5 file, it is truncated or corrupt ({error})") from None
    return {name.decode("utf-8") if isinstance(name, bytes) else str(name): row for row, name in enumerate(names)}


def write_h5_images(path: Path, split: str, names: Sequence[str], images: np.ndarray) -> None:
    """Write ``{split}_images`` (N, H, W, 3) uint8 and ``{split}_filenames`` as the OPD release does."""
    with h5py.File(path, "w") as h5:
        h5.create_dataset(f"{split}_images", data=np.asarray(images, dtype=np.uint8), chunks=(1, *images.shape[1:]))
        h5.create_dataset(f"{split}_filenames", data=np.asarray([n.encode("utf-8") for n in names]))


def write_h5_depth(path: Path, names: Sequence[str], depth_mm: np.ndarray) -> None:
    """Write ``depth_images`` (N, H, W, 1) float32 millimetres and ``depth_filenames``."""
    depth = np.asarray(depth_mm, dtype=np.float32).reshape(*depth_mm.shape[:3], 1)
    with h5py.File(path, "w") as h5:
        h5.create_dataset("depth_images", data=depth, chunks=(1, *depth.shape[1:]))
        h5.create_dataset("depth_filenames", data=np.asarray([n.encode("utf-8") for n in names]))


@dataclass(frozen=True)
class _BadEntry:
    """An annotation that could not be parsed: raised (or skipped) when its sample is read."""

    record: str
    error_type: type[DatasetError]
    message: str


_Entry = Union[OPDAnnotation, _BadEntry]


class OPDDataset(AffordanceDataset):
    """OPDReal / OPDMulti samples of ``split`` (``train``, ``valid`` or ``test``), one per annotation.

    Annotations whose origin projects outside the image are dropped when the index is built (counted
    and logged at INFO). Malformed annotations stay in the index and fail (or are skipped) on access.
    ``attributes_path`` names the object-size file; by default ``real-attr.json`` or ``obj_info.json``
    in ``root`` when present, else every diameter is 0 (unknown).
    """

    def __init__(
        self,
        root: Union[str, Path],
        split: str,
        input_size: tuple[int, int] = (256, 256),
        skip_bad: bool = False,
        annotation_dir: str = "annotations_bwdf",
        attributes_path: Optional[Union[str, Path]] = None,
        augment: bool = False,
    ) -> None:
        self.root = Path(root)
        self.split = split
        self.annotation_file = annotation_path(self.root, split, annotation_dir)
        self.image_file = self.root / f"{split}.h5"
        self.depth_file = self.root / DEPTH_FILE
        self._image_rows = h5_name_index(self.image_file, f"{split}_filenames")
        self._depth_rows = h5_name_index(self.depth_file, "depth_filenames")
        self._entries = self._build_index(load_json(self.annotation_file))
        self._diameters = self._load_diameters(attributes_path)
        super().__init__(len(self._entries), input_size, skip_bad, augment)
        self._images = ProcessLocal(partial(h5py.File, self.image_file, "r"))
        self._depths = ProcessLocal(partial(h5py.File, self.depth_file, "r"))

    def _load_diameters(self, attributes_path: Optional[Union[str, Path]]) -> dict[str, float]:
        if attributes_path is None:
            attributes_path = next((self.root / n for n in ATTRIBUTE_FILES if (self.root / n).is_file()), None)
        diameters = load_diameters(None if attributes_path is None else Path(attributes_path))
        unknown = sum(isinstance(e, OPDAnnotation) and e.object_key not in diameters for e in self._entries)
        log.info("OPD %s %s: object sizes from %s, unknown (diameter 0) for %d samples",
                 self.root, self.split, attributes_path, unknown)
        return diameters

    def _build_index(self, coco: Any) -> list[_Entry]:
        try:
            images = {image["id"]: image for image in coco["images"]}
            annotations = list(coco["annotations"])
        except (KeyError, TypeError) as error:
            raise DatasetError(f"{self.annotation_file}: not a COCO annotation file ({error!r})") from None
        entries: list[_Entry] = []
        outside = 0
        for annotation in annotations:
            image = images.get(annotation.get("image_id"), {})
            record = f"{self.annotation_file} annotation {annotation.get('id')} (image {image.get('file_name')})"
            try:
                parsed = parse_annotation(annotation, image, self.root, record)
            except DatasetError as error:
                entries.append(_BadEntry(record, type(error), str(error)))
                continue
            point = parsed.point_xy
            if not (np.isfinite(point).all() and (point >= 0).all() and (point <= 1).all()):
                outside += 1
                continue
            entries.append(parsed)
        log.info("OPD %s %s: %d samples; %d annotations dropped (origin projects outside the image)",
                 self.root, self.split, len(entries), outside)
        return entries

    def __len__(self) -> int:
        return len(self._entries)

    def describe(self, index: int) -> str:
        return self._entries[index].record

    def image_keys(self) -> list[str]:
        """The image file of every annotation; an annotation that could not be parsed is its own image."""
        return [entry.image_name if isinstance(entry, OPDAnnotation) else entry.record for entry in self._entries]

    def _row(self, rows: dict[str, int], name: str, path: Path, record: str) -> int:
        if name not in rows:
            raise DatasetError(f"{record}: {name!r} is not in {path}")
        return rows[name]

    def _read_image(self, entry: OPDAnnotation) -> np.ndarray:
        row = self._row(self._image_rows, entry.image_name, self.image_file, entry.record)
        try:
            rgb = self._images.get()[f"{self.split}_images"][row]
        except (OSError, KeyError) as error:
            raise DatasetError(f"{entry.record}: cannot read row {row} of {self.image_file} ({error})") from None
        if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] < 3 or rgb.shape[:2] != entry.size:
            raise DatasetError(f"{entry.record}: image in {self.image_file} is {rgb.dtype} {rgb.shape}, "
                               f"expected uint8 {entry.size} x 3")
        return rgb[:, :, :3]

    def _read_depth(self, entry: OPDAnnotation) -> np.ndarray:
        row = self._row(self._depth_rows, entry.depth_name, self.depth_file, entry.record)
        try:
            depth_mm = self._depths.get()["depth_images"][row]
        except (OSError, KeyError) as error:
            raise DatasetError(f"{entry.record}: cannot read row {row} of {self.depth_file} ({error})") from None
        if depth_mm.ndim == 3 and depth_mm.shape[2] == 1:
            depth_mm = depth_mm[:, :, 0]
        if depth_mm.ndim != 2:
            raise DatasetError(f"{entry.record}: depth in {self.depth_file} has shape {depth_mm.shape}")
        return depth_mm.astype(np.float32) / _MM_PER_M

    def _load(self, index: int) -> RawSample:
        entry = self._entries[index]
        if isinstance(entry, _BadEntry):
            raise entry.error_type(entry.message)
        return RawSample(
            rgb=self._read_image(entry),
            depth_m=self._read_depth(entry),
            mask=polygon_mask(entry.polygons, *entry.size),
            K=entry.K,
            point_xy=entry.point_xy,
            point_3d=entry.origin,
            axis=entry.axis,
            origin=entry.origin,
            motion_type=entry.motion_type,
            trajectory=np.zeros((TRAJECTORY_POINTS, 3)),
            has_trajectory=False,
            description=entry.description,
            image_id=entry.image_name,
            diameter=self._diameters.get(entry.object_key, 0.0),
        )
