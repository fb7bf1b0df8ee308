"""Shared fixtures: small OPD roots built from the real annotation files, a small SceneFun3D root."""
from __future__ import annotations

import copy
import gzip
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Optional

import cv2
import numpy as np
import pytest
import torch

from segaff_core.data.opd import write_h5_depth, write_h5_images
from segaff_core.data.sf3d_format import write_lmdb
from sf3d_records import SF3D_SIZE, sf3d_record

OPD_ANNOTATIONS = Path(__file__).resolve().parents[2] / "shared" / "data" / "opd_annotations"
OPD_SOURCES = {"real": "opdreal/MotionNet_valid.json.gz", "multi": "opdmulti/MotionNet_valid.json.gz"}
OPD_IMAGES = 10


def pytest_configure(config: pytest.Config) -> None:
    """Engines built by the tests (the Predictor's default backend is ``auto``) go to a cache of this run,
    shared by its tests, its parallel workers (which inherit the cache of the process that started them and
    leave its removal to it) and the nodes they start, never to the user's ``~/.cache/segaff``."""
    if os.environ.get("PYTEST_XDIST_WORKER") and os.environ.get(_CACHE_VARIABLE):
        os.environ["XDG_CACHE_HOME"] = os.environ[_CACHE_VARIABLE]
        return
    cache_home = tempfile.mkdtemp(prefix="segaff-test-cache-")
    config.stash[_CACHE_HOME] = cache_home
    os.environ["XDG_CACHE_HOME"] = os.environ[_CACHE_VARIABLE] = cache_home


def pytest_unconfigure(config: pytest.Config) -> None:
    cache_home = config.stash.get(_CACHE_HOME, None)
    if cache_home is not None:
        shutil.rmtree(cache_home, ignore_errors=True)


_CACHE_HOME = pytest.StashKey[str]()
_CACHE_VARIABLE = "SEGAFF_TEST_CACHE_HOME"


@pytest.fixture(autouse=True)
def _restore_torch_threads() -> Iterator[None]:
    """torch's intra-op thread count is process-wide: a test that sets it (a Predictor or an in-process node
    with ``threads``) must not change the numerics of the tests after it."""
    threads = torch.get_num_threads()
    yield
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def _subset(coco: dict[str, Any]) -> dict[str, Any]:
    """The first images with annotations, plus the first image with a multi-polygon part."""
    image_ids = list(dict.fromkeys(a["image_id"] for a in coco["annotations"]))[:OPD_IMAGES]
    image_ids.append(next(a["image_id"] for a in coco["annotations"] if len(a["segmentation"]) > 1))
    keep = set(image_ids)
    return {
        **{k: v for k, v in coco.items() if k not in ("images", "annotations")},
        "images": [i for i in coco["images"] if i["id"] in keep],
        "annotations": [a for a in coco["annotations"] if a["image_id"] in keep],
    }


@pytest.fixture(scope="session")
def opd_annotation_subsets() -> dict[str, dict[str, Any]]:
    """COCO subsets of the real OPDReal and OPDMulti valid annotations (no images)."""
    if not OPD_ANNOTATIONS.is_dir():
        pytest.skip(f"real OPD annotations not found at {OPD_ANNOTATIONS}")
    subsets = {}
    for layout, name in OPD_SOURCES.items():
        with gzip.open(OPD_ANNOTATIONS / name, "rt", encoding="utf-8") as f:
            subsets[layout] = _subset(json.load(f))
    return subsets


def write_opd_root(root: Path, coco: dict[str, Any], split: str = "valid", gzipped: bool = False) -> Path:
    """An OPD-layout root for ``coco``: random images and depth (mm, a zero corner) of the right sizes."""
    rng = np.random.default_rng(0)
    images = coco["images"]
    height, width = images[0]["height"], images[0]["width"]
    (root / "annotations_bwdf").mkdir(parents=True, exist_ok=True)
    path = root / "annotations_bwdf" / f"MotionNet_{split}.json{'.gz' if gzipped else ''}"
    with (gzip.open(path, "wt") if gzipped else path.open("w")) as f:
        json.dump(coco, f)
    rgb = rng.integers(0, 256, (len(images), height, width, 3), dtype=np.uint8)
    write_h5_images(root / f"{split}.h5", split, [i["file_name"] for i in images], rgb)
    depth_mm = rng.uniform(500.0, 4000.0, (len(images), height, width)).astype(np.float32)
    depth_mm[:, :8, :8] = 0.0
    write_h5_depth(root / "depth.h5", [i["depth_file_name"] for i in images], depth_mm)
    return root


@pytest.fixture
def opd_make_root(tmp_path: Path, opd_annotation_subsets: dict[str, dict[str, Any]]) -> Callable[..., Path]:
    """``make(layout, edit=None, gzipped=False)``: an OPD root ("real" or "multi"); ``edit(coco)`` may
    change the annotations first."""

    def make(layout: str, edit: Optional[Callable[[dict[str, Any]], None]] = None, gzipped: bool = False) -> Path:
        coco = copy.deepcopy(opd_annotation_subsets[layout])
        if edit is not None:
            edit(coco)
        return write_opd_root(tmp_path / f"opd_{layout}", coco, gzipped=gzipped)

    return make


@pytest.fixture
def sf3d_make_root(tmp_path: Path) -> Callable[..., Path]:
    """``make(num=6, edit=None)``: a processed SceneFun3D root with splits train (4) / valid (rest);
    ``edit(records)`` may change the records (a dict key -> record) before they are written."""

    def make(num: int = 6, edit: Optional[Callable[[dict[str, dict[str, Any]]], None]] = None) -> Path:
        root = tmp_path / "sf3d"
        (root / "images").mkdir(parents=True)
        (root / "depth").mkdir()
        rng = np.random.default_rng(1)
        records = {f"visit{i}/video0/{1000 + i}/annot0": sf3d_record(i) for i in range(num)}
        for record in records.values():
            cv2.imwrite(str(root / record["rgb_path"]), rng.integers(0, 256, (*SF3D_SIZE, 3), dtype=np.uint8))
            depth_mm = np.full((SF3D_SIZE[0] // 2, SF3D_SIZE[1] // 2), 1500, dtype=np.uint16)
            depth_mm[:4, :4] = 0
            cv2.imwrite(str(root / record["depth_path"]), depth_mm)
        if edit is not None:
            edit(records)
        keys = list(records)
        write_lmdb(root / "data.lmdb", records.items(), {"splits": {"train": keys[:4], "valid": keys[4:]}})
        return root

    return make
