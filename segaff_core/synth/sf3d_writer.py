"""Writes rendered views in the processed SceneFun3D layout that :class:`segaff_core.data.SF3DDataset` reads.

``<out>/images/<scene>_<view>.png`` (RGB), ``<out>/depth/<scene>_<view>.png`` (uint16 millimetres) and
``<out>/data.lmdb`` with one record per visible part under the key ``<scene>/synth/<view>/<part>``
(schema: :mod:`segaff_core.data.sf3d_format`); the metadata lists the ``splits``. The interaction point
is the handle; the extrinsics map world to camera. Extra record fields: ``descriptions`` (all of the
part's instructions), ``category``, ``part_name``, ``range_max`` and ``object_diameter_m``
(the furniture piece's bounding-box diagonal: the origin metrics need it).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from segaff_core.geometry import project
from segaff_core.synth.masks import outline_yx
from segaff_core.synth.sample import SceneSample

SPLITS = ("train", "valid", "test")
_DECIMALS = 6
_PNG = [cv2.IMWRITE_PNG_COMPRESSION, 1]


def _floats(values: Any) -> list[Any]:
    return np.round(np.asarray(values, dtype=np.float64), _DECIMALS).tolist()


class SF3DWriter:
    """Images are written as views arrive; the LMDB is written once, in (scene, view, part) order."""

    def __init__(self, out: Path, splits: dict[int, str], metadata: dict[str, Any]) -> None:
        """``splits`` maps each scene index to its split."""
        self.out = out
        (out / "images").mkdir(parents=True, exist_ok=True)
        (out / "depth").mkdir(parents=True, exist_ok=True)
        self._splits = splits
        self._metadata = metadata
        # (scene, view, part) -> (key, record JSON): serialised early, about 2 KB per record
        self._records: dict[tuple[int, int, int], tuple[str, str]] = {}

    def add(self, scene: int, view: int, sample: SceneSample) -> None:
        stem = f"{scene:06d}_{view:02d}"
        rgb_path, depth_path = f"images/{stem}.png", f"depth/{stem}.png"
        cv2.imwrite(str(self.out / rgb_path), np.ascontiguousarray(sample.rgb[:, :, ::-1]), _PNG)
        depth_mm = np.clip(np.round(sample.depth_m * 1000.0), 0, np.iinfo(np.uint16).max).astype(np.uint16)
        cv2.imwrite(str(self.out / depth_path), depth_mm, _PNG)
        height, width = sample.depth_m.shape
        for part in sample.parts:
            key = f"{scene:06d}/synth/{view}/{part.part_id}"
            record = {
                "rgb_path": rgb_path,
                "depth_path": depth_path,
                "mask_coordinates_yx": outline_yx(part.mask).tolist(),
                "description": part.descriptions[(scene + view + part.part_id) % len(part.descriptions)],
                "descriptions": part.descriptions,
                "motion_type": "trans" if part.motion_type == 0 else "rot",
                "motion_dir_camera_coords": _floats(part.axis),
                "motion_origin_camera_coords": _floats(part.origin),
                "motion_origin_pixel": _floats(project(part.origin, sample.K)[0]),
                "intrinsics": _floats(sample.K),
                "extrinsics": _floats(sample.world_to_camera),
                "image_size": [height, width],
                "trajectory_3d_camera_coords": _floats(part.trajectory),
                "interaction_point_camera_coords": _floats(part.handle_3d),
                "interaction_pixel": _floats(part.handle_px),
                "category": part.category,
                "part_name": part.name,
                "range_max": round(float(part.range_max), _DECIMALS),
                "object_diameter_m": round(float(part.furniture_diameter_m), _DECIMALS),
            }
            self._records[(scene, view, part.part_id)] = (key, json.dumps(record))

    def close(self) -> None:
        """Write ``data.lmdb`` with the records and the splits."""
        # Imported here: segaff_core.data pulls in torch, which rendering workers do not need.
        from segaff_core.data.sf3d_format import write_lmdb

        order = sorted(self._records)
        splits: dict[str, list[str]] = {split: [] for split in SPLITS}
        for scene, view, part in order:
            splits[self._splits[scene]].append(self._records[(scene, view, part)][0])
        records = ((key, json.loads(text)) for key, text in (self._records[k] for k in order))
        write_lmdb(self.out / "data.lmdb", records, {**self._metadata, "splits": splits})
