"""The SceneFun3D LMDB record format and SF3DDataset on a small processed root."""
from __future__ import annotations

import json
import multiprocessing
import os
import shutil
from typing import Any, Optional

import cv2
import lmdb
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from sf3d_records import SF3D_K, SF3D_SIZE, sf3d_record
from segaff_core.data import DatasetError, SF3DDataModule, SF3DDataset, UnsafePathError, collate_samples
from segaff_core.data.transforms import Preprocess
from segaff_core.text import tokenize
from segaff_core.data.sf3d_format import decode_record, encode_record, open_lmdb, opened_in, read_metadata, write_lmdb
from segaff_core.text import tokenize


def test_record_round_trip_and_numpy_fields():
    record = sf3d_record(1)
    record["intrinsics"] = np.asarray(record["intrinsics"])
    decoded = decode_record(encode_record(record), "v/v/1/a")
    assert decoded["intrinsics"] == SF3D_K.tolist() and decoded["motion_type"] == "rot"
    assert json.loads(encode_record(record)) == decoded


@pytest.mark.parametrize(
    "change, field",
    [({"motion_type": "slide"}, "motion_type"), ({"intrinsics": [[1, 0], [0, 1]]}, "intrinsics"),
     ({"trajectory_3d_camera_coords": [[0, 0, float("nan")]]}, "trajectory_3d_camera_coords"),
     ({"description": ""}, "description"), ({"interaction_pixel": [1, 2, 3]}, "interaction_pixel"),
     ({"image_size": [480.5, 640]}, "image_size"), ({"object_diameter_m": 0.0}, "object_diameter_m"),
     ({"object_diameter_m": "1 m"}, "object_diameter_m")],
)
def test_decode_rejects_bad_fields_naming_key_and_field(change, field):
    data = json.dumps({**sf3d_record(0), **change}).encode()
    with pytest.raises(DatasetError, match=f"record 'k/1'.*{field}"):
        decode_record(data, "k/1")


def test_decode_rejects_truncated_and_incomplete_records():
    data = encode_record(sf3d_record(0))
    with pytest.raises(DatasetError, match="record 'k/2': corrupt JSON"):
        decode_record(data[: len(data) // 2], "k/2")
    incomplete = {k: v for k, v in sf3d_record(0).items() if k != "motion_origin_pixel"}
    with pytest.raises(DatasetError, match="record 'k/3'.*'motion_origin_pixel' is missing"):
        decode_record(json.dumps(incomplete).encode(), "k/3")


def test_write_lmdb_metadata_and_split_checks(tmp_path):
    keys = write_lmdb(tmp_path / "a.lmdb", [("a", sf3d_record(0)), ("b", sf3d_record(1))], {"splits": {"t": ["b"]}})
    metadata = read_metadata(tmp_path / "a.lmdb")
    assert keys == metadata["keys"] == ["a", "b"] and metadata["splits"] == {"t": ["b"]}
    assert metadata["format"] == "segaff-sf3d" and metadata["version"] == 1
    with pytest.raises(DatasetError, match="unknown keys"):
        write_lmdb(tmp_path / "b.lmdb", [("a", sf3d_record(0))], {"splits": {"t": ["zzz"]}})
    with pytest.raises(ValueError, match="repeated"):
        write_lmdb(tmp_path / "c.lmdb", [("a", sf3d_record(0)), ("a", sf3d_record(1))])


def test_samples_follow_the_records(sf3d_make_root):
    root = sf3d_make_root()
    dataset = SF3DDataset(root, input_size=(256, 256))
    assert len(dataset) == 6
    height, width = SF3D_SIZE
    for index in range(len(dataset)):
        sample, record = dataset[index], sf3d_record(index)
        assert sample["image"].shape == (3, 256, 256) and sample["depth"].shape == sample["mask"].shape
        assert torch.equal(sample["text"], tokenize(record["description"])[0])
        assert sample["image_id"] == record["rgb_path"] and sample["index"].item() == index
        assert sample["motion_type"].item() == (1 if index % 2 else 0)
        np.testing.assert_allclose(sample["axis"].numpy(), [0, 1, 0])
        np.testing.assert_allclose(sample["origin"].numpy(), record["motion_origin_camera_coords"], atol=1e-6)
        pixel = record.get("interaction_pixel", record["motion_origin_pixel"])
        np.testing.assert_allclose(sample["point"].numpy(), [(pixel[0] + 0.5) / width, (pixel[1] + 0.5) / height], atol=1e-6)
        point_3d = record.get("interaction_point_camera_coords", record["motion_origin_camera_coords"])
        np.testing.assert_allclose(sample["point_3d"].numpy(), point_3d, atol=1e-6)
        K = SF3D_K.copy()
        K[0] *= 256 / width
        K[1] *= 256 / height
        K[:2, 2] += 0.5 * np.array([256 / width, 256 / height]) - 0.5  # pixel centres as in cv2.resize
        np.testing.assert_allclose(sample["K"].numpy(), K, rtol=1e-6)
        # depth: 1500 mm everywhere but a zero (invalid) corner, at half the RGB resolution
        assert torch.allclose(sample["depth"][0, 8:, 8:], torch.tensor(1.5)) and (sample["depth"][0, :2, :2] == 0).all()
        # the 60 x 40 px hull (inclusive corners: 61 x 41 px at full resolution), resized to 256 x 256
        assert sample["mask"].sum().item() == pytest.approx(61 * 41 * 256 * 256 / (height * width), rel=0.1)
        assert sample["has_trajectory"] and sample["diameter"].item() == 0.0


def test_trajectory_is_resampled_by_arc_length_relative_to_its_start(sf3d_make_root):
    trajectory = SF3DDataset(sf3d_make_root())[0]["trajectory"].double().numpy()
    source = np.asarray(sf3d_record(0)["trajectory_3d_camera_coords"])
    assert trajectory.shape == (20, 3) and np.allclose(trajectory[0], 0)
    np.testing.assert_allclose(trajectory[-1], source[-1] - source[0], atol=1e-6)
    steps = np.linalg.norm(np.diff(trajectory, axis=0), axis=1)
    assert steps.max() - steps.min() < 0.05 * steps.mean()  # even spacing, though the source is uneven


def test_reduced_jpeg_decode_matches_a_full_decode(sf3d_make_root):
    root = sf3d_make_root()
    y, x = np.mgrid[0:SF3D_SIZE[0], 0:SF3D_SIZE[1]]
    smooth = np.stack([x * 255 // SF3D_SIZE[1], y * 255 // SF3D_SIZE[0], (x + y) % 256 // 2], axis=-1)
    cv2.imwrite(str(root / "images/frame_0.jpg"), smooth.astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 98])
    image = SF3DDataset(root, input_size=(64, 64))[0]["image"]  # decoded at 1/4 scale (120 x 160)
    full = cv2.cvtColor(cv2.imread(str(root / "images/frame_0.jpg")), cv2.COLOR_BGR2RGB)
    expected = Preprocess((64, 64))(full, np.zeros((4, 4)), np.zeros(SF3D_SIZE), SF3D_K)[0]
    assert (image - expected).abs().mean() < 0.02


def test_splits_and_lmdb_path(sf3d_make_root, tmp_path):
    root = sf3d_make_root()
    keys = read_metadata(root / "data.lmdb")["keys"]
    assert SF3DDataset(root, "train").keys == keys[:4] and SF3DDataset(root, "valid").keys == keys[4:]
    with pytest.raises(ValueError, match="no split 'test'"):
        SF3DDataset(root, "test")
    moved = tmp_path / "fast" / "copy.lmdb"
    shutil.copytree(root / "data.lmdb", moved)
    shutil.rmtree(root / "data.lmdb")
    assert len(SF3DDataset(root, lmdb_path=moved)) == 6
    with pytest.raises(FileNotFoundError, match="data.lmdb"):
        SF3DDataset(root)


def _corrupt_record(root, key: str) -> None:
    env = lmdb.open(str(root / "data.lmdb"), map_size=1 << 30)
    with env.begin(write=True) as txn:
        txn.put(key.encode(), txn.get(key.encode())[:50])
    env.close()


def _delete_record(root, key: str) -> None:
    env = lmdb.open(str(root / "data.lmdb"), map_size=1 << 30)
    with env.begin(write=True) as txn:
        txn.delete(key.encode())
    env.close()


def _overwrite_page_holding(root, marker: bytes) -> None:
    """Overwrite the header of the LMDB page that holds ``marker`` (e.g. an overflow page of a large record)."""
    env = lmdb.open(str(root / "data.lmdb"), readonly=True, lock=False)
    page_size = env.stat()["psize"]
    env.close()
    path = root / "data.lmdb" / "data.mdb"
    data = bytearray(path.read_bytes())
    page = data.find(marker) // page_size * page_size
    assert page >= 2 * page_size, "the marker must lie on a data page, not on a meta page"
    data[page:page + 16] = b"\xff" * 16
    path.write_bytes(bytes(data))


def _set(field: str, value: Any):
    def edit(records: dict[str, dict[str, Any]]) -> None:
        records[next(iter(records))][field] = value
    return edit


@pytest.mark.parametrize(
    "edit, after, message, error_type",
    [
        (None, _corrupt_record, "corrupt JSON", DatasetError),
        (None, _delete_record, "is missing", DatasetError),
        (None, lambda root, key: (root / "images/frame_0.jpg").unlink(), "images/frame_0.jpg", DatasetError),
        (None, lambda root, key: (root / "depth/frame_0.png").write_bytes(b"junk"), "depth/frame_0.png",
         DatasetError),
        (None, lambda root, key: (root / "depth/frame_0.png").unlink(), "depth/frame_0.png", DatasetError),
        (_set("padding", "x" * 20000), lambda root, key: _overwrite_page_holding(root, b"x" * 64),
         "cannot read record", DatasetError),
        (None, lambda root, key: cv2.imwrite(str(root / "images/frame_0.jpg"), np.zeros((100, 100, 3), np.uint8)),
         "the record says 640x480", DatasetError),
        (_set("rgb_path", "../outside.jpg"), None, "leaves the data root", UnsafePathError),
        (_set("depth_path", "/etc/depth.png"), None, "absolute", UnsafePathError),
        (_set("mask_coordinates_yx", [[10, 10], [20, 20], [30, 30]]), None, "degenerate", DatasetError),
        (_set("motion_dir_camera_coords", [0.0, 0.0, 0.0]), None, "zero vector", DatasetError),
        (_set("interaction_pixel", [700.0, 10.0]), None, "outside", DatasetError),
    ],
    ids=["truncated-record", "missing-record", "missing-image", "corrupt-depth-png", "missing-depth-png",
         "corrupt-lmdb-page", "image-size-mismatch", "rgb-path-escapes", "depth-path-absolute",
         "degenerate-polygon", "zero-axis", "interaction-pixel-outside"],
)
def test_bad_records_raise_naming_file_and_key_or_are_skipped(sf3d_make_root, edit, after, message, error_type):
    root = sf3d_make_root(edit=edit)
    key = "visit0/video0/1000/annot0"  # the first record
    if after is not None:
        after(root, key)
    with pytest.raises(error_type, match=message) as raised:
        SF3DDataset(root, input_size=(64, 64))[0]
    assert "data.lmdb" in str(raised.value) and key in str(raised.value)
    dataset = SF3DDataset(root, input_size=(64, 64), skip_bad=True)
    assert dataset[0] is None and dataset[1] is not None
    batch = collate_samples([dataset[i] for i in range(3)])
    assert len(batch["image_id"]) == 2
    longest = max(len(tokenize(text)[0].nonzero()) for text in batch["description"])
    assert batch["text"].shape == (2, longest)  # the padding after the longest instruction is cut
    assert dataset.skipped.take() == [0] and dataset.skipped.take() == []


def test_corrupt_lmdb_file_is_an_error_naming_it(sf3d_make_root):
    root = sf3d_make_root()
    path = root / "data.lmdb" / "data.mdb"
    path.write_bytes(b"\xff" * 8192 + path.read_bytes()[8192:])  # both meta pages overwritten
    with pytest.raises(DatasetError, match="data.lmdb: cannot open the LMDB"):
        SF3DDataset(root)


_INHERITED: Optional[SF3DDataset] = None


def _read_in_forked_child() -> tuple[Optional[int], Optional[int], int]:
    assert _INHERITED is not None
    before = opened_in(_INHERITED.lmdb_path)
    _INHERITED[1]
    return before, opened_in(_INHERITED.lmdb_path), os.getpid()


def test_lmdb_is_reopened_in_every_worker(sf3d_make_root):
    global _INHERITED
    dataset = SF3DDataset(sf3d_make_root(), input_size=(64, 64))
    first = dataset[0]
    _INHERITED = dataset
    with multiprocessing.get_context("fork").Pool(1) as pool:
        before, after, child = pool.apply(_read_in_forked_child)
    assert before == os.getpid() and after == child != os.getpid()
    batches = list(DataLoader(dataset, batch_size=2, num_workers=2, collate_fn=collate_samples))
    assert [i for b in batches for i in b["image_id"]] == [f"images/frame_{i}.jpg" for i in range(6)]
    assert torch.equal(batches[0]["mask"][0], first["mask"])


def test_lmdb_is_opened_read_only_without_locking(sf3d_make_root):
    root = sf3d_make_root()
    (root / "data.lmdb" / "lock.mdb").unlink(missing_ok=True)
    dataset = SF3DDataset(root, input_size=(64, 64))
    dataset[0]
    flags = open_lmdb(dataset.lmdb_path).flags()
    assert flags["readonly"] and not flags["lock"] and not flags["readahead"]
    assert not (root / "data.lmdb" / "lock.mdb").exists()  # read-only media and many workers: no lock file


def test_datamodule_loaders(sf3d_make_root):
    datamodule = SF3DDataModule(str(sf3d_make_root()), input_size=(64, 64), batch_size=3, num_workers=0,
                                test_split=None, pin_memory=False)
    datamodule.setup("fit")
    datamodule.setup("test")
    assert [len(b["image_id"]) for b in datamodule.train_dataloader()] == [3, 1]
    assert [len(b["image_id"]) for b in datamodule.val_dataloader()] == [2]
    assert sum(len(b["image_id"]) for b in datamodule.test_dataloader()) == 6
    assert datamodule.datasets["train"].preprocess.augment and not datamodule.datasets["val"].preprocess.augment
