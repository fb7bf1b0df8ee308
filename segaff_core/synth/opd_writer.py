"""Writes rendered views in the OPDReal layout that :class:`segaff_core.data.OPDDataset` reads.

``<out>/{split}.h5`` (``{split}_images`` (N, H, W, 3) uint8, ``{split}_filenames``), ``<out>/depth.h5``
(``depth_images`` (N, H, W, 1) float32 whole millimetres, ``depth_filenames``),
``<out>/annotations_bwdf/MotionNet_{split}.json`` (COCO with per-part motion, camera intrinsic and
extrinsic matrices column-major; the extrinsic maps world to camera) and ``<out>/real-attr.json``
(``{key: {"diameter": metres}}`` for each model id, the scene index, and each annotation's
``object_key`` ``<scene>_<furniture>``, which readers prefer: the size of the part's own piece).
Image names are ``<model>-<frame>.png``. The motion origin is the point OPD readers use: on the hinge
line at the handle (rotation), the handle (translation). Extra annotation fields: ``descriptions`` (all
of the part's instructions), ``interaction_point`` (the handle), ``trajectory`` (20 x 3), ``part_name``.
Files are byte-for-byte reproducible: no HDF5 timestamps, fixed JSON order.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from segaff_core.synth.layout import CATEGORY_IDS
from segaff_core.synth.masks import bbox_xywh, coco_polygons
from segaff_core.synth.sample import SceneSample

SPLITS = ("train", "valid", "test")
ANNOTATION_ID_STRIDE = 1000  # annotation id = image id * stride + index of the part in the image
_DECIMALS = 6


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _floats(values: Any) -> list[Any]:
    """Nested lists of floats rounded to micrometres / micro-units (compact, stable JSON)."""
    return np.round(np.asarray(values, dtype=np.float64), _DECIMALS).tolist()


def image_name(scene: int, view: int) -> str:
    return f"{scene}-{view}.png"


def depth_name(scene: int, view: int) -> str:
    return f"{scene}-{view}_d.png"


def _names_dataset(h5: h5py.File, name: str, values: list[str]) -> None:
    data = np.array([v.encode("utf-8") for v in values], dtype=f"S{max([1] + [len(v) for v in values])}")
    h5.create_dataset(name, data=data, track_times=False)


class OPDWriter:
    """Rows are fixed up front from the planned (scene, view) pairs of each split; views are added as they
    are rendered (the same order every run keeps the HDF5 bytes identical)."""

    def __init__(self, out: Path, plan: dict[str, list[tuple[int, int]]], image_size: tuple[int, int]) -> None:
        """``plan`` maps each split to its (scene, view) pairs in row order."""
        self.out = out
        out.mkdir(parents=True, exist_ok=True)
        (out / "annotations_bwdf").mkdir(exist_ok=True)
        height, width = image_size
        self._rows: dict[tuple[int, int], tuple[str, int, int]] = {}
        self._files: dict[str, h5py.File] = {}
        all_depth_names: list[str] = []
        for split in SPLITS:
            pairs = plan.get(split, [])
            h5 = h5py.File(out / f"{split}.h5", "w")
            h5.create_dataset(f"{split}_images", shape=(len(pairs), height, width, 3), dtype=np.uint8,
                              chunks=(1, height, width, 3) if pairs else None, compression="gzip" if pairs else None,
                              compression_opts=1 if pairs else None, track_times=False)
            _names_dataset(h5, f"{split}_filenames", [image_name(*p) for p in pairs])
            self._files[split] = h5
            for row, pair in enumerate(pairs):
                self._rows[pair] = (split, row, len(all_depth_names))
                all_depth_names.append(depth_name(*pair))
        self._depth = h5py.File(out / "depth.h5", "w")
        count = len(all_depth_names)
        self._depth.create_dataset("depth_images", shape=(count, height, width, 1), dtype=np.float32,
                                   chunks=(1, height, width, 1) if count else None,
                                   compression="gzip" if count else None, compression_opts=1 if count else None,
                                   shuffle=bool(count), track_times=False)
        _names_dataset(self._depth, "depth_filenames", all_depth_names)
        self._diameters: dict[str, float] = {}
        # depth row -> (split, image JSON, annotation JSONs): serialised early, a few KB per image
        self._entries: dict[int, tuple[str, str, list[str]]] = {}

    def add(self, scene: int, view: int, sample: SceneSample) -> None:
        split, row, depth_row = self._rows[(scene, view)]
        self._files[split][f"{split}_images"][row] = sample.rgb
        self._depth["depth_images"][depth_row] = np.round(sample.depth_m * 1000.0)[:, :, None]
        height, width = sample.depth_m.shape
        image_id = depth_row + 1
        image = {
            "id": image_id,
            "file_name": image_name(scene, view),
            "depth_file_name": depth_name(scene, view),
            "width": width,
            "height": height,
            "camera": {
                "intrinsic": {"matrix": _floats(sample.K.ravel(order="F"))},
                "extrinsic": {"matrix": _floats(sample.world_to_camera.ravel(order="F"))},
            },
            "label": "synthetic_furniture",
        }
        annotations: list[dict[str, Any]] = []
        for k, part in enumerate(sample.parts):
            motion_type = "translation" if part.motion_type == 0 else "rotation"
            axis, origin = _floats(part.axis), _floats(part.origin)
            annotations.append({
                "id": image_id * ANNOTATION_ID_STRIDE + k,
                "image_id": image_id,
                "category_id": CATEGORY_IDS[part.category],
                "segmentation": coco_polygons(part.mask),
                "bbox": bbox_xywh(part.mask),
                "area": int(part.mask.sum()),
                "iscrowd": 0,
                "height": height,
                "width": width,
                "motion": {
                    "type": motion_type,
                    "current_axis": axis,
                    "current_origin": origin,
                    "initial_axis": axis,
                    "initial_origin": origin,
                    "axis": axis,
                    "origin": origin,
                    "rangeMin": 0.0,
                    "rangeMax": round(float(part.range_max), _DECIMALS),
                    "partId": str(part.part_id),
                    "label": part.category,
                },
                "object_key": f"{scene}_{part.furniture}",
                "description": part.descriptions[(scene + view + part.part_id) % len(part.descriptions)],
                "descriptions": part.descriptions,
                "interaction_point": _floats(part.handle_3d),
                "trajectory": _floats(part.trajectory),
                "part_name": part.name,
            })
            self._diameters[f"{scene}_{part.furniture}"] = part.furniture_diameter_m
        self._entries[depth_row] = (split, _json(image), [_json(a) for a in annotations])
        self._diameters[str(scene)] = sample.diameter_m

    def close(self) -> None:
        """Write the JSON files (images in row order) and close the HDF5 files."""
        for h5 in [*self._files.values(), self._depth]:
            h5.close()
        header = {
            "info": {"description": "SegAffordance synthetic articulated furniture", "version": "1.0"},
            "licenses": [{"id": 1, "name": "MIT"}],
            "categories": [{"id": i, "name": n, "supercategory": "Container_parts"} for n, i in CATEGORY_IDS.items()],
        }
        for split in SPLITS:
            entries = [self._entries[row] for row in sorted(self._entries) if self._entries[row][0] == split]
            images = ",".join(image for _, image, _ in entries)
            annotations = ",".join(a for _, _, annotation_list in entries for a in annotation_list)
            text = f'{_json(header)[:-1]},"images":[{images}],"annotations":[{annotations}]}}'
            (self.out / "annotations_bwdf" / f"MotionNet_{split}.json").write_text(text, encoding="utf-8")
        attributes = {key: {"diameter": round(d, _DECIMALS)} for key, d in sorted(self._diameters.items())}
        (self.out / "real-attr.json").write_text(json.dumps(attributes, indent=1), encoding="utf-8")
