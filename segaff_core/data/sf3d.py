"""Reader of the processed SceneFun3D layout: ``data.lmdb`` (JSON records), ``images/``, ``depth/``."""
from __future__ import annotations

import logging
from collections import OrderedDict
from pathlib import Path
from typing import Any, Optional, Union

import cv2
import numpy as np

from segaff_core.data.common import (
    TRAJECTORY_POINTS,
    AffordanceDataset,
    DatasetError,
    RawSample,
    check_intrinsics,
    check_polygons,
    polygon_mask,
    safe_join,
    unit_vector,
)
from segaff_core.data.sf3d_format import MOTION_TYPES, OBJECT_DIAMETER_FIELD, decode_record, read_metadata, read_raw
from segaff_core.geometry import pixel_to_normalised, resample_polyline

log = logging.getLogger(__name__)

_MM_PER_M = 1000.0
_JPEG_SUFFIXES = {".jpg", ".jpeg"}
_REDUCED_DECODES = ((8, cv2.IMREAD_REDUCED_COLOR_8), (4, cv2.IMREAD_REDUCED_COLOR_4), (2, cv2.IMREAD_REDUCED_COLOR_2))


def _decode_scale(path: Path, size: tuple[int, int], target_size: tuple[int, int]) -> tuple[int, int]:
    """(factor, cv2 flag) of the smallest JPEG decode still at least ``target_size``."""
    if path.suffix.lower() in _JPEG_SUFFIXES:
        for factor, flag in _REDUCED_DECODES:
            if size[0] // factor >= target_size[0] and size[1] // factor >= target_size[1]:
                return factor, flag
    return 1, cv2.IMREAD_COLOR


def read_rgb(path: Path, size: tuple[int, int], target_size: tuple[int, int], record: str) -> np.ndarray:
    """RGB uint8 of the image at ``path`` whose full size is ``size`` (H, W).

    A JPEG much larger than ``target_size`` is decoded at 1/2, 1/4 or 1/8 scale (libjpeg's DCT
    scaling, several times cheaper); the result still covers the whole view.
    """
    height, width = size
    factor, flag = _decode_scale(path, size, target_size)
    bgr = cv2.imread(str(path), flag)
    if bgr is None:
        raise DatasetError(f"{record}: cannot read image {path} (missing or corrupt)")
    expected = (-(-height // factor), -(-width // factor))
    if bgr.shape[:2] != expected:
        raise DatasetError(f"{record}: image {path} is {bgr.shape[1]}x{bgr.shape[0]} (1/{factor} decode), "
                           f"the record says {width}x{height}")
    return np.ascontiguousarray(bgr[:, :, ::-1])


def read_depth_png(path: Path, record: str) -> np.ndarray:
    """Depth in metres (float32) from a 16-bit PNG in millimetres."""
    depth_mm = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if depth_mm is None:
        raise DatasetError(f"{record}: cannot read depth image {path} (missing or corrupt)")
    if depth_mm.dtype != np.uint16 or depth_mm.ndim != 2:
        raise DatasetError(f"{record}: depth image {path} must be single-channel uint16 millimetres, "
                           f"got {depth_mm.dtype} with shape {depth_mm.shape}")
    return depth_mm.astype(np.float32) / _MM_PER_M


def relative_trajectory(points: Any) -> np.ndarray:
    """(20, 3) arc-length resampling of a path (T, 3), relative to its first point."""
    resampled = resample_polyline(np.asarray(points, dtype=np.float64), TRAJECTORY_POINTS)
    return resampled - resampled[:1]


class SF3DDataset(AffordanceDataset):
    """One sample per LMDB record of the processed SceneFun3D data (see ``sf3d_format``).

    ``split`` picks the keys of ``metadata["splits"][split]``; ``None`` takes every record.
    ``lmdb_path`` defaults to ``<root>/data.lmdb`` (pass a copy on a faster disk to use it).
    ``cached_images``: decoded RGB-D pairs kept in memory (read-only), the least recently used dropped
    first. 1 keeps the last one (an image-grouped batch decodes its image once); a data set whose images fit
    in memory decodes each image once with a cache of its image count (per loader process).
    """

    def __init__(
        self,
        root: Union[str, Path],
        split: Optional[str] = None,
        input_size: tuple[int, int] = (256, 256),
        skip_bad: bool = False,
        lmdb_path: Optional[Union[str, Path]] = None,
        augment: bool = False,
        cached_images: int = 1,
    ) -> None:
        if cached_images < 0:
            raise ValueError(f"cached_images must be >= 0, got {cached_images}")
        self.root = Path(root)
        self.lmdb_path = Path(lmdb_path) if lmdb_path is not None else self.root / "data.lmdb"
        self.keys = self._split_keys(read_metadata(self.lmdb_path), split)
        self.cached_images = cached_images
        self._images: OrderedDict[tuple[str, str, tuple[int, int]], tuple[np.ndarray, np.ndarray]] = OrderedDict()
        super().__init__(len(self.keys), input_size, skip_bad, augment)
        log.info("SceneFun3D %s: %d records (split %s)", self.lmdb_path, len(self.keys), split or "all")

    def _split_keys(self, metadata: dict[str, Any], split: Optional[str]) -> list[str]:
        if split is None:
            return list(metadata["keys"])
        splits = metadata.get("splits", {})
        if split not in splits:
            raise ValueError(f"{self.lmdb_path}: no split {split!r}; it has {sorted(splits) or 'none'}")
        return list(splits[split])

    def __len__(self) -> int:
        return len(self.keys)

    def describe(self, index: int) -> str:
        return f"{self.lmdb_path} record {self.keys[index]!r}"

    def image_keys(self) -> list[str]:
        """The ``rgb_path`` of every record; a record that cannot be read is its own image (it raises, or is
        skipped, when its sample loads)."""
        keys = []
        for index in range(len(self)):
            try:
                keys.append(str(self._read_record(index)["rgb_path"]))
            except (DatasetError, KeyError):
                keys.append(self.describe(index))
        return keys

    def _read_record(self, index: int) -> dict[str, Any]:
        key = self.keys[index]
        data = read_raw(self.lmdb_path, key.encode("utf-8"))
        if data is None:
            raise DatasetError(f"{self.describe(index)} is missing")
        try:
            return decode_record(data, key)
        except DatasetError as error:
            raise DatasetError(f"{self.lmdb_path}: {error}") from None

    def _read_images(self, record: dict[str, Any], size: tuple[int, int], name: str) -> tuple[np.ndarray, np.ndarray]:
        """RGB and depth of ``record`` (read-only), from the cache of ``cached_images`` decoded pairs."""
        key = (record["rgb_path"], record["depth_path"], size)
        images = self._images.get(key)
        if images is not None:
            self._images.move_to_end(key)
            return images
        rgb = read_rgb(safe_join(self.root, record["rgb_path"], name), size, self.preprocess.input_size, name)
        depth = read_depth_png(safe_join(self.root, record["depth_path"], name), name)
        for array in (rgb, depth):
            array.setflags(write=False)
        if self.cached_images > 0:
            self._images[key] = (rgb, depth)
            while len(self._images) > self.cached_images:
                self._images.popitem(last=False)
        return rgb, depth

    def _load(self, index: int) -> RawSample:
        record = self._read_record(index)
        name = self.describe(index)
        size = (int(record["image_size"][0]), int(record["image_size"][1]))
        polygon_xy = np.asarray(record["mask_coordinates_yx"], dtype=np.float64)[:, ::-1]
        check_polygons([polygon_xy], name)
        origin = np.asarray(record["motion_origin_camera_coords"], dtype=np.float64)
        pixel = record.get("interaction_pixel")
        point_pixel = np.asarray(record["motion_origin_pixel"] if pixel is None else pixel, dtype=np.float64)
        point_xy = pixel_to_normalised(point_pixel, size)
        if not ((point_xy >= 0).all() and (point_xy <= 1).all()):
            raise DatasetError(f"{name}: interaction pixel {point_pixel.tolist()} lies outside the "
                               f"{size[1]}x{size[0]} image")
        point_3d = record.get("interaction_point_camera_coords")
        rgb, depth_m = self._read_images(record, size, name)
        return RawSample(
            rgb=rgb,
            depth_m=depth_m,
            mask=polygon_mask([polygon_xy], *size),
            K=check_intrinsics(record["intrinsics"], name),
            point_xy=point_xy,
            point_3d=origin if point_3d is None else np.asarray(point_3d, dtype=np.float64),
            axis=unit_vector(record["motion_dir_camera_coords"], "motion_dir_camera_coords", name),
            origin=origin,
            motion_type=MOTION_TYPES[record["motion_type"]],
            trajectory=relative_trajectory(record["trajectory_3d_camera_coords"]),
            has_trajectory=True,
            description=record["description"],
            image_id=record["rgb_path"],
            diameter=float(record.get(OBJECT_DIAMETER_FIELD) or 0.0),  # 0: unknown
        )
