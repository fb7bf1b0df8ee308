"""OPDDataset on OPDReal- and OPDMulti-layout roots built from the real annotation files."""
from __future__ import annotations

import gzip
import json
import logging
import multiprocessing
import os
import pickle
from typing import Any, Optional

import h5py
import lightning as L
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

import segaff_core.data.opd as opd_module
from segaff_core.data import DatasetError, OPDDataModule, OPDDataset, UnsafePathError, collate_samples
from segaff_core.data.common import polygon_area
from segaff_core.data.opd import write_h5_depth, write_h5_images
from segaff_core.data.transforms import CLIP_MEAN, CLIP_STD
from segaff_core.text import tokenize


def _column_major(values: list[float], n: int) -> np.ndarray:
    return np.asarray(values, dtype=np.float64).reshape(n, n).T


def _annotations(root) -> tuple[dict[str, Any], dict[int, dict[str, Any]]]:
    path = next((root / "annotations_bwdf").glob("MotionNet_valid.json*"))
    with (gzip.open(path, "rt") if path.suffix == ".gz" else path.open()) as f:
        coco = json.load(f)
    return coco, {i["id"]: i for i in coco["images"]}


def _intrinsics(image: dict[str, Any]) -> np.ndarray:
    intrinsic = image["camera"]["intrinsic"]
    return _column_major(intrinsic["matrix"] if isinstance(intrinsic, dict) else intrinsic, 3)


def _motion(annotation: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    motion = annotation["motion"]
    prefix = "current_" if "current_origin" in motion else ""
    return np.asarray(motion[prefix + "origin"]), np.asarray(motion[prefix + "axis"])


@pytest.mark.parametrize("layout", ["real", "multi"])
def test_samples_follow_the_annotations(opd_make_root, layout):
    root = opd_make_root(layout, gzipped=layout == "real")
    coco, images = _annotations(root)
    dataset = OPDDataset(root, "valid", input_size=(256, 256))
    assert len(dataset) == len(coco["annotations"])  # every origin of these files projects inside
    for index in range(0, len(dataset), 3):
        sample, annotation = dataset[index], coco["annotations"][index]
        image = images[annotation["image_id"]]
        height, width = image["height"], image["width"]
        origin, axis = _motion(annotation)
        K = _intrinsics(image)
        assert sample["image"].shape == (3, 256, 256) and sample["image"].dtype == torch.float32
        assert sample["depth"].shape == sample["mask"].shape == (1, 256, 256)
        assert sample["image_id"] == image["file_name"]
        assert sample["description"] == annotation["description"]
        assert torch.equal(sample["text"], tokenize(annotation["description"])[0])
        assert sample["motion_type"].item() == {"translation": 0, "rotation": 1}[annotation["motion"]["type"]]
        np.testing.assert_allclose(sample["axis"].numpy(), axis / np.linalg.norm(axis), atol=1e-6)
        np.testing.assert_allclose(sample["origin"].numpy(), origin, atol=1e-6)
        np.testing.assert_allclose(sample["point_3d"].numpy(), origin, atol=1e-6)
        projected = K @ origin
        expected_point = [(projected[0] / projected[2] + 0.5) / width, (projected[1] / projected[2] + 0.5) / height]
        np.testing.assert_allclose(sample["point"].numpy(), expected_point, atol=1e-6)
        assert ((sample["point"] >= 0) & (sample["point"] <= 1)).all()
        # the scaled K projects the origin onto the same normalised point of the resized image
        projected = sample["K"].double().numpy() @ origin
        np.testing.assert_allclose((projected[:2] / projected[2] + 0.5) / 256.0, expected_point, atol=1e-5)
        assert not sample["has_trajectory"] and torch.count_nonzero(sample["trajectory"]) == 0
        assert sample["trajectory"].shape == (20, 3) and sample["diameter"].item() == 0.0


def test_opdmulti_intrinsics_scale_separately_in_x_and_y(opd_make_root):
    root = opd_make_root("multi")
    coco, images = _annotations(root)
    K = _intrinsics(images[coco["annotations"][0]["image_id"]])
    assert images[coco["annotations"][0]["image_id"]]["height"] == 192
    for size in [(256, 256), (192, 256), (96, 128)]:
        scaled = OPDDataset(root, "valid", input_size=size)[0]["K"].double().numpy()
        sy, sx = size[0] / 192, size[1] / 256
        np.testing.assert_allclose(scaled[0, :2], K[0, :2] * sx, rtol=1e-6)
        np.testing.assert_allclose(scaled[1, :2], K[1, :2] * sy, rtol=1e-6)
        np.testing.assert_allclose(scaled[:2, 2], (K[:2, 2] + 0.5) * [sx, sy] - 0.5, rtol=1e-6)
    scaled = OPDDataset(root, "valid", input_size=(256, 256))[0]["K"].double().numpy()
    assert scaled[0, 0] == pytest.approx(K[0, 0]) and scaled[1, 1] == pytest.approx(K[1, 1] * 256 / 192)


@pytest.mark.parametrize("layout", ["real", "multi"])
def test_masks_match_the_polygons(opd_make_root, layout):
    root = opd_make_root(layout)
    coco, images = _annotations(root)
    height, width = images[coco["annotations"][0]["image_id"]]["height"], 256
    native = OPDDataset(root, "valid", input_size=(height, width))
    resized = OPDDataset(root, "valid", input_size=(128, 128))
    for index, annotation in enumerate(coco["annotations"]):
        polygons = [np.asarray(p).reshape(-1, 2) for p in annotation["segmentation"]]
        area = sum(polygon_area(p) for p in polygons)
        perimeter = sum(np.linalg.norm(np.diff(np.vstack([p, p[:1]]), axis=0), axis=1).sum() for p in polygons)
        mask = native[index]["mask"][0].numpy()
        assert set(np.unique(mask)) <= {0.0, 1.0}
        assert abs(mask.sum() - area) <= 0.6 * perimeter + 4, (index, mask.sum(), area)
        rows, cols = np.nonzero(mask)
        x, y, w, h = annotation["bbox"]
        assert cols.min() >= x - 1 and cols.max() <= x + w + 1 and rows.min() >= y - 1 and rows.max() <= y + h + 1
        small = resized[index]["mask"][0].numpy().sum() * (height * width) / (128 * 128)
        assert abs(small - mask.sum()) <= 0.15 * mask.sum() + 2 * perimeter


def test_depth_in_metres_and_image_normalised(opd_make_root):
    root = opd_make_root("real")
    coco, images = _annotations(root)
    sample = OPDDataset(root, "valid", input_size=(256, 256))[0]
    depth_name = images[coco["annotations"][0]["image_id"]]["depth_file_name"]
    with h5py.File(root / "depth.h5") as h5:
        names = [n.decode() for n in h5["depth_filenames"][()]]
        depth_mm = h5["depth_images"][names.index(depth_name)]
    np.testing.assert_allclose(sample["depth"][0].numpy(), depth_mm[:, :, 0] / 1000.0, rtol=1e-6)
    assert sample["depth"][0, :8, :8].eq(0).all()
    with h5py.File(root / "valid.h5") as h5:
        names = [n.decode() for n in h5["valid_filenames"][()]]
        rgb = h5["valid_images"][names.index(sample["image_id"])]
    expected = (rgb[..., 0] / 255.0 - CLIP_MEAN[0]) / CLIP_STD[0]
    np.testing.assert_allclose(sample["image"][0].numpy(), expected, atol=1e-5)


def test_h5_file_names_stored_as_str(opd_make_root):
    root = opd_make_root("real")
    with h5py.File(root / "valid.h5", "a") as h5:
        names = [n.decode() for n in h5["valid_filenames"][()]]
        del h5["valid_filenames"]
        h5.create_dataset("valid_filenames", data=names, dtype=h5py.string_dtype())
    dataset = OPDDataset(root, "valid", input_size=(64, 64))
    assert [dataset[i]["image_id"] for i in range(len(dataset))] == [
        dataset.describe(i).split("(image ")[1].rstrip(")") for i in range(len(dataset))]


def test_file_name_lookups_are_built_once(opd_make_root, monkeypatch):
    calls: list[str] = []
    original = opd_module.h5_name_index

    def counted(path, dataset):
        calls.append(dataset)
        return original(path, dataset)

    monkeypatch.setattr(opd_module, "h5_name_index", counted)
    dataset = OPDDataset(opd_make_root("real"), "valid", input_size=(64, 64))
    for index in range(len(dataset)):
        dataset[index]
    assert sorted(calls) == ["depth_filenames", "valid_filenames"]  # at construction, never per sample


def test_diameter_from_real_attr(opd_make_root):
    root = opd_make_root("real")
    coco, images = _annotations(root)
    model_id = images[coco["annotations"][0]["image_id"]]["file_name"].split("-")[0]
    (root / "real-attr.json").write_text(json.dumps({model_id: {"diameter": 1.25, "min_bound": [0, 0, 0]}}))
    dataset = OPDDataset(root, "valid")
    assert dataset[0]["diameter"].item() == pytest.approx(1.25)
    other = next(i for i, a in enumerate(coco["annotations"])
                 if not images[a["image_id"]]["file_name"].startswith(model_id + "-"))
    assert dataset[other]["diameter"].item() == 0.0


def test_diameter_from_opdmulti_obj_info(opd_make_root):
    root = opd_make_root("multi")
    coco, _ = _annotations(root)
    object_key = coco["annotations"][0]["object_key"]
    (root / "obj_info.json").write_text(json.dumps({object_key: {"diagonal": 0.9}}))
    dataset = OPDDataset(root, "valid")
    assert dataset[0]["diameter"].item() == pytest.approx(0.9)
    other = next(i for i, a in enumerate(coco["annotations"]) if a["object_key"] != object_key)
    assert dataset[other]["diameter"].item() == 0.0


def _behind_camera(coco):
    coco["annotations"][1]["motion"]["current_origin"][2] *= -1


def _beside_the_image(coco):
    motion = coco["annotations"][1]["motion"]
    motion["current_origin"][0] = motion["current_origin"][2] * 50.0  # in front, far right of the image


@pytest.mark.parametrize("edit", [_behind_camera, _beside_the_image], ids=["behind-camera", "beside-the-image"])
def test_origin_outside_the_image_is_dropped_and_logged(opd_make_root, caplog, edit):
    full = len(OPDDataset(opd_make_root("real"), "valid"))
    with caplog.at_level(logging.INFO, logger="segaff_core.data.opd"):
        dataset = OPDDataset(opd_make_root("real", edit=edit), "valid")
    assert len(dataset) == full - 1
    assert "1 annotations dropped" in caplog.text


def _zero_axis(coco):
    coco["annotations"][0]["motion"]["axis"] = [0.0, 0.0, 0.0]


def _degenerate_polygon(coco):
    coco["annotations"][0]["segmentation"] = [[10.0, 10.0, 20.0, 20.0, 30.0, 30.0]]


def _escaping_path(coco):
    image_id = coco["annotations"][0]["image_id"]
    next(i for i in coco["images"] if i["id"] == image_id)["file_name"] = "../outside.png"


def _absolute_depth_path(coco):
    image_id = coco["annotations"][0]["image_id"]
    next(i for i in coco["images"] if i["id"] == image_id)["depth_file_name"] = "/etc/depth.png"


@pytest.mark.parametrize(
    "edit, message, error_type",
    [(_zero_axis, "zero vector", DatasetError), (_degenerate_polygon, "degenerate", DatasetError),
     (_escaping_path, "leaves the data root", UnsafePathError), (_absolute_depth_path, "absolute", UnsafePathError)],
    ids=["zero-axis", "degenerate-polygon", "file-name-escapes", "depth-path-absolute"],
)
def test_bad_annotations_raise_naming_the_record_or_are_skipped(opd_make_root, edit, message, error_type):
    root = opd_make_root("multi", edit=edit)
    annotation_id = _annotations(root)[0]["annotations"][0]["id"]
    with pytest.raises(error_type, match=message) as raised:
        OPDDataset(root, "valid", input_size=(64, 64))[0]
    assert "MotionNet_valid.json" in str(raised.value) and f"annotation {annotation_id} " in str(raised.value)
    _assert_skipped(OPDDataset(root, "valid", input_size=(64, 64), skip_bad=True), bad_indices={0})


def _assert_skipped(dataset: OPDDataset, bad_indices: set[int]) -> None:
    assert all(dataset[i] is None for i in bad_indices)
    assert sorted(dataset.skipped.take()) == sorted(bad_indices)
    batches = list(DataLoader(dataset, batch_size=4, collate_fn=collate_samples))
    assert sum(len(b["image_id"]) for b in batches) == len(dataset) - len(bad_indices)
    assert sorted(dataset.skipped.take()) == sorted(bad_indices)


def _rewrite_without_first(root, h5_name: str) -> str:
    """Drop the first image's entry from ``h5_name`` (valid.h5 or depth.h5); its file name."""
    coco, _ = _annotations(root)
    first = coco["images"][0]
    images = coco["images"][1:]
    with h5py.File(root / h5_name) as h5:
        data = h5["valid_images" if h5_name == "valid.h5" else "depth_images"][1:]
    if h5_name == "valid.h5":
        write_h5_images(root / h5_name, "valid", [i["file_name"] for i in images], data)
        return first["file_name"]
    write_h5_depth(root / h5_name, [i["depth_file_name"] for i in images], data)
    return first["depth_file_name"]


@pytest.mark.parametrize("h5_name", ["valid.h5", "depth.h5"])
def test_missing_h5_entry_raises_naming_file_and_record(opd_make_root, h5_name):
    root = opd_make_root("real")
    missing = _rewrite_without_first(root, h5_name)
    coco, _ = _annotations(root)
    bad = {i for i, a in enumerate(coco["annotations"]) if a["image_id"] == coco["images"][0]["id"]}
    with pytest.raises(DatasetError) as raised:
        OPDDataset(root, "valid", input_size=(64, 64))[min(bad)]
    assert missing in str(raised.value) and h5_name in str(raised.value)
    assert f"annotation {coco['annotations'][min(bad)]['id']} " in str(raised.value)
    _assert_skipped(OPDDataset(root, "valid", input_size=(64, 64), skip_bad=True), bad)


def _overwrite(path, start: int, length: int) -> None:
    data = bytearray(path.read_bytes())
    data[start:start + length] = b"\xff" * length
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    "h5_name, damage",
    [("valid.h5", lambda path: _overwrite(path, 0, 64)),  # the superblock
     ("depth.h5", lambda path: path.write_bytes(path.read_bytes()[: path.stat().st_size // 2]))],
    ids=["superblock-overwritten", "truncated"],
)
def test_unreadable_h5_file_is_an_error_naming_it(opd_make_root, h5_name, damage):
    root = opd_make_root("real")
    damage(root / h5_name)
    with pytest.raises(DatasetError, match=f"{root / h5_name}: cannot read the HDF5 file"):
        OPDDataset(root, "valid")


def test_corrupt_h5_chunk_index_fails_each_sample_naming_file_and_record_also_in_workers(opd_make_root):
    root = opd_make_root("multi")
    data = (root / "valid.h5").read_bytes()
    chunk_index = data.find(b"TREE\x01")  # the v1 B-tree node of the image chunks (node type 1: raw data)
    assert chunk_index > 0
    _overwrite(root / "valid.h5", chunk_index, 64)
    dataset = OPDDataset(root, "valid", input_size=(64, 64))  # the file names are still readable
    annotation_id = _annotations(root)[0]["annotations"][0]["id"]
    with pytest.raises(DatasetError, match="cannot read row") as raised:
        dataset[0]
    assert str(root / "valid.h5") in str(raised.value) and f"annotation {annotation_id} " in str(raised.value)
    with pytest.raises(DatasetError, match="valid.h5"):  # raised in the worker, re-raised here: no dead worker
        list(DataLoader(dataset, batch_size=4, num_workers=2, collate_fn=collate_samples))
    skipping = OPDDataset(root, "valid", input_size=(64, 64), skip_bad=True)
    assert all(skipping[i] is None for i in range(len(skipping)))
    assert skipping.skipped.take() == list(range(len(skipping)))


_INHERITED: Optional[OPDDataset] = None


def _read_in_forked_child() -> tuple[Optional[int], Optional[int], int, str]:
    assert _INHERITED is not None
    before = _INHERITED._images.opened_in
    image_id = _INHERITED[0]["image_id"]
    return before, _INHERITED._images.opened_in, os.getpid(), image_id


def test_h5_is_reopened_in_every_worker(opd_make_root):
    global _INHERITED
    dataset = OPDDataset(opd_make_root("multi"), "valid", input_size=(64, 64))
    first = dataset[0]  # opens the HDF5 files in this process before the workers fork
    assert dataset._images.opened_in == os.getpid()
    assert pickle.loads(pickle.dumps(dataset))._images.opened_in is None
    _INHERITED = dataset
    with multiprocessing.get_context("fork").Pool(1) as pool:
        before, after, child, image_id = pool.apply(_read_in_forked_child)
    assert before == os.getpid() and after == child != os.getpid() and image_id == first["image_id"]
    batches = list(DataLoader(dataset, batch_size=4, num_workers=2, collate_fn=collate_samples))
    assert [i for b in batches for i in b["image_id"]] == [dataset[i]["image_id"] for i in range(len(dataset))]
    assert torch.allclose(batches[0]["image"][0], first["image"])


class _MeanModel(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(()))

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        return self.weight * batch["image"].mean()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_datamodule_reports_skipped_samples_after_each_epoch(opd_make_root, caplog):
    root = opd_make_root("multi", edit=_zero_axis)
    datamodule = OPDDataModule(str(root), input_size=(64, 64), batch_size=8, num_workers=0, train_split="valid",
                               skip_bad=True, pin_memory=False, persistent_workers=False)
    trainer = L.Trainer(max_epochs=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0)
    with caplog.at_level(logging.WARNING, logger="segaff_core.data.datamodule"):
        trainer.fit(_MeanModel(), datamodule=datamodule)
    reports = [r.getMessage() for r in caplog.records if "skipped 1 bad samples" in r.getMessage()]
    assert len(reports) == 2 and all(r.startswith("train:") and "MotionNet_valid.json" in r for r in reports)
