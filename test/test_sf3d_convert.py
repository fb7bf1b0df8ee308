"""``segaff convert-sf3d``: the seed's pickled SceneFun3D LMDB becomes JSON records, and only when trusted."""
from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any, Callable

import lmdb
import numpy as np
import pytest
import torch

from sf3d_records import SF3D_K, sf3d_record
from segaff_core.cli import main
from segaff_core.data import DatasetError, SF3DDataset, UnsafePathError
from segaff_core.data.common import polygon_mask
from segaff_core.data.sf3d_convert import PickleNotTrusted, convert_seed_lmdb
from segaff_core.data.sf3d_format import read_metadata

SAMPLE_FIELDS = ("image", "depth", "mask", "axis", "origin", "motion_type", "K", "trajectory", "text")


def seed_record(index: int) -> dict[str, Any]:
    """The fixture's record ``index`` as the seed's sf3d_process.py stored it (numpy arrays, nested motion,
    every mask pixel); record 0 also has the 2D trajectory whose first point is the interaction point."""
    ours = sf3d_record(index)
    height, width = ours["image_size"]
    polygon_xy = np.asarray(ours["mask_coordinates_yx"], dtype=np.float64)[:, ::-1]
    trajectory = np.asarray(ours["trajectory_3d_camera_coords"])
    record: dict[str, Any] = {
        "rgb_image_path": Path(ours["rgb_path"]).name,
        "depth_image_path": Path(ours["depth_path"]).name,
        "mask_coordinates_yx": np.argwhere(polygon_mask([polygon_xy], height, width) > 0),
        "description": f"{ours['description']}\n---\nPull it open.",
        "motion_info": {
            "annot_id": f"annot{index}",
            "original_motion_data": {"motion_type": "rotation" if ours["motion_type"] == "rot" else "trans"},
            "frame_specific_motion_data": {
                "motion_origin_2d_image_coords": np.asarray(ours["motion_origin_pixel"]),
                "motion_origin_3d_camera_coords": np.asarray(ours["motion_origin_camera_coords"]),
                "motion_dir_3d_camera_coords": np.asarray(ours["motion_dir_camera_coords"]),
            },
        },
        "label_info": {"annot_id": f"annot{index}", "label": "door"},
        "camera_intrinsics": SF3D_K.copy(),
        "camera_extrinsics_world_to_cam": np.eye(4),
        "camera_extrinsics_cam_to_world": np.eye(4),
        "image_dimensions_wh": (width, height),
        "trajectory_3d_camera_coords": trajectory,
    }
    if index == 0:
        projected = (SF3D_K @ trajectory.T).T
        record["trajectory_2d_image_coords"] = projected[:, :2] / projected[:, 2:]
        record["trajectory_2d_valid"] = np.ones(len(trajectory), dtype=bool)
    return record


def write_seed_lmdb(path: Path, records: dict[str, Any]) -> Path:
    """An LMDB as the seed wrote it: ``pickle.dumps`` of every record and of the metadata."""
    env = lmdb.open(str(path), map_size=1 << 28)
    with env.begin(write=True) as txn:
        txn.put(b"__metadata__", pickle.dumps({"version": "1.0", "num_items": len(records)}))
        for key, value in records.items():
            txn.put(key.encode(), value if isinstance(value, bytes) else pickle.dumps(value))
    env.close()
    return path


def seed_records(num: int = 6) -> dict[str, Any]:
    """The seed records under the fixture's keys."""
    return {f"visit{i}/video0/{1000 + i}/annot0": seed_record(i) for i in range(num)}


@pytest.mark.parametrize("src", ["lmdb", "root"])
def test_seed_lmdb_converts_and_reads_like_the_json_records(sf3d_make_root, tmp_path, capsys, src):
    root = sf3d_make_root()
    seed_root = tmp_path / "seed_root"
    seed_root.mkdir()
    seed = write_seed_lmdb(seed_root / "data.lmdb", seed_records())
    out = root / "converted.lmdb"
    assert main(["convert-sf3d", "--src", str(seed if src == "lmdb" else seed_root), "--out", str(out),
                 "--trust-pickle"]) == 0
    assert f"wrote 6 records of {seed}" in capsys.readouterr().out
    metadata = read_metadata(out)
    assert metadata["converted_from"] == str(seed)
    splits = metadata["splits"]  # by scene (visit), 10 % of the 6 scenes for validation by default
    assert sorted(splits["train"] + splits["valid"]) == sorted(metadata["keys"]) and len(splits["valid"]) == 1
    assert len(SF3DDataset(root, "valid", lmdb_path=out)) == 1

    converted = SF3DDataset(root, input_size=(64, 64), lmdb_path=out)
    reference = SF3DDataset(root, input_size=(64, 64))
    assert converted.keys == reference.keys
    for index in range(len(reference)):
        sample, expected = converted[index], reference[index]
        for name in SAMPLE_FIELDS:
            assert torch.allclose(sample[name].double(), expected[name].double(), atol=1e-6), (index, name)
        assert sample["description"] == sf3d_record(index)["description"]
        if index:  # without a 2D trajectory the motion origin is the interaction point, as in the fixture
            assert torch.allclose(sample["point"], expected["point"]) and torch.allclose(sample["point_3d"],
                                                                                        expected["point_3d"])
    first = seed_record(0)
    height, width = sf3d_record(0)["image_size"]
    pixel = first["trajectory_2d_image_coords"][0]
    np.testing.assert_allclose(converted[0]["point"].numpy(), (pixel + 0.5) / [width, height], atol=1e-6)
    np.testing.assert_allclose(converted[0]["point_3d"].numpy(), first["trajectory_3d_camera_coords"][0], atol=1e-6)


class _Payload:
    """Runs ``os.mkdir(marker)`` when unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Callable[..., Any], tuple[str]]:
        return os.mkdir, (str(self.marker),)


def test_without_trust_nothing_is_unpickled(tmp_path, capsys):
    marker = tmp_path / "pwned"
    records = seed_records(2)
    records["visit9/video0/9/annot0"] = _Payload(marker)
    seed = write_seed_lmdb(tmp_path / "data.lmdb", records)
    out = tmp_path / "out.lmdb"

    assert main(["convert-sf3d", "--src", str(seed), "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert "refusing to convert" in error and "unpickling runs any code" in error and "--trust-pickle" in error
    assert not marker.exists() and not out.exists()
    with pytest.raises(PickleNotTrusted):
        convert_seed_lmdb(seed, out, trust_pickle=False)
    assert not marker.exists()

    # The payload is live: trusting the file runs it (and its record, not a dict, is left out).
    summary = convert_seed_lmdb(seed, out, trust_pickle=True, skip_bad=True)
    assert marker.exists()
    assert summary.written == 2 and summary.skipped == ["visit9/video0/9/annot0"]


def _without(field: str) -> Callable[[dict[str, Any]], None]:
    return lambda record: record.pop(field)


def _set(field: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda record: record.update({field: value})


def _motion_type(value: str) -> Callable[[dict[str, Any]], None]:
    return lambda record: record["motion_info"]["original_motion_data"].update(motion_type=value)


@pytest.mark.parametrize(
    "edit, message, error_type",
    [
        ("truncated", "cannot unpickle", DatasetError),
        (_without("depth_image_path"), "'depth_image_path' must be a file name", DatasetError),
        (_without("camera_intrinsics"), "'camera_intrinsics' is missing", DatasetError),
        (_set("rgb_image_path", "../../etc/passwd"), "leaves the data root", UnsafePathError),
        (_set("depth_image_path", "/etc/depth.png"), "absolute", UnsafePathError),
        (_motion_type("slide"), "motion_type 'slide'", DatasetError),
        (_set("mask_coordinates_yx", np.array([[10, 10], [20, 20], [30, 30]])), "degenerate", DatasetError),
        (_set("image_dimensions_wh", (640,)), "malformed seed record", DatasetError),
        (_set("trajectory_3d_camera_coords", np.zeros((0, 3))), "trajectory_3d_camera_coords", DatasetError),
    ],
    ids=["truncated-pickle", "no-depth", "no-intrinsics", "rgb-escapes", "depth-absolute", "motion-type",
         "degenerate-mask", "size-malformed", "empty-trajectory"],
)
def test_bad_seed_records_name_source_and_key_or_are_left_out(tmp_path, edit, message, error_type):
    records = seed_records(3)
    bad_key = "visit1/video0/1001/annot0"
    if edit == "truncated":
        records[bad_key] = pickle.dumps(records[bad_key])[:100]
    else:
        edit(records[bad_key])
    seed = write_seed_lmdb(tmp_path / "data.lmdb", records)
    with pytest.raises(error_type, match=message) as raised:
        convert_seed_lmdb(seed, tmp_path / "out.lmdb", trust_pickle=True)
    assert str(seed) in str(raised.value) and bad_key in str(raised.value)
    assert not (tmp_path / "out.lmdb").exists() and not (tmp_path / "out.lmdb.partial").exists()

    summary = convert_seed_lmdb(seed, tmp_path / "out.lmdb", trust_pickle=True, skip_bad=True)
    assert summary.written == 2 and summary.skipped == [bad_key]
    assert bad_key not in read_metadata(tmp_path / "out.lmdb")["keys"]


def test_cli_names_the_bad_record_and_keeps_an_existing_out(tmp_path, capsys):
    records = seed_records(2)
    records["visit0/video0/1000/annot0"].pop("camera_intrinsics")
    seed = write_seed_lmdb(tmp_path / "data.lmdb", records)
    assert main(["convert-sf3d", "--src", str(seed), "--out", str(tmp_path / "out.lmdb"), "--trust-pickle"]) == 2
    assert "'visit0/video0/1000/annot0'" in capsys.readouterr().err

    existing = tmp_path / "existing.lmdb"
    existing.mkdir()
    (existing / "data.mdb").write_bytes(b"an earlier conversion")
    assert main(["convert-sf3d", "--src", str(seed), "--out", str(existing), "--trust-pickle", "--skip-bad"]) == 2
    assert "exists" in capsys.readouterr().err
    assert [p.name for p in existing.iterdir()] == ["data.mdb"]
    assert (existing / "data.mdb").read_bytes() == b"an earlier conversion"
    assert main(["convert-sf3d", "--src", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o"),
                 "--trust-pickle"]) == 2
    assert "no LMDB at" in capsys.readouterr().err
