"""Convert the seed's pickled SceneFun3D LMDB into the JSON records of :mod:`segaff_core.data.sf3d_format`.

The seed's ``sf3d_process.py`` stored every record as ``pickle.dumps(dict)``. Unpickling runs whatever
code the bytes name, so reading such a database is running a program written by whoever wrote the file.
The converter therefore reads pickles only when the caller states that the source is trusted
(``trust_pickle=True``, ``segaff convert-sf3d --trust-pickle``); without that it refuses before the
source is opened. What it writes is JSON, validated record by record, which the readers never unpickle.

Assumed seed record (a dict of lists, tuples or numpy arrays), as the seed's writer and reader use it:

=====================================================================  ========================================
seed field                                                             field written here
=====================================================================  ========================================
``rgb_image_path`` (a file name under ``images/``)                     ``rgb_path`` = ``images/<name>``
``depth_image_path`` (a file name under ``depth/``)                    ``depth_path`` = ``depth/<name>``
``mask_coordinates_yx`` (every mask pixel, ``(y, x)``)                 ``mask_coordinates_yx``: their convex hull
``description`` (several joined by ``"\\n---\\n"``)                     ``description`` (the first),
                                                                       ``descriptions`` (all)
``motion_info.original_motion_data.motion_type``                       ``motion_type`` (``trans`` | ``rot``)
(``trans``/``translation``, ``rot``/``rotation``)
``motion_info.frame_specific_motion_data.motion_dir_3d_camera_coords``    ``motion_dir_camera_coords``
``motion_info.frame_specific_motion_data.motion_origin_3d_camera_coords`` ``motion_origin_camera_coords``
``motion_info.frame_specific_motion_data.motion_origin_2d_image_coords``  ``motion_origin_pixel`` (x, y)
``camera_intrinsics`` (3 x 3)                                          ``intrinsics``
``camera_extrinsics_world_to_cam`` (4 x 4)                             ``extrinsics`` (world to camera)
``image_dimensions_wh`` (W, H)                                         ``image_size`` (H, W)
``trajectory_3d_camera_coords`` (T x 3)                                ``trajectory_3d_camera_coords``
``trajectory_2d_image_coords[0]`` where ``trajectory_2d_valid[0]``     ``interaction_pixel``, and
(optional: the projected element centroid, first trajectory point)    ``interaction_point_camera_coords`` =
                                                                       ``trajectory_3d_camera_coords[0]``
=====================================================================  ========================================

With ``valid_fraction`` the metadata gets ``train`` and ``valid`` splits by scene (the visit id, the key's
first part), drawn as the seed's ``split_dataset_by_scene`` drew them: the sorted visit ids shuffled by
``random.Random(seed)``, the first ``round(n * valid_fraction)`` for validation. Records without the
optional 2D trajectory fall back, in the reader, to the motion origin as the
interaction point (the seed's default ``point_source``). The seed's ``__metadata__`` record (a pickle
too) is not read, and its other fields (``label_info``, ``sensor_check``, the camera-to-world pose)
are dropped. A record that does not convert is an error naming the source and the key, or, with
``skip_bad``, left out and listed.
"""
from __future__ import annotations

import logging
import os
import pickle
import random
import shutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import cv2
import lmdb
import numpy as np

from segaff_core.data.common import DatasetError, check_polygons, safe_join
from segaff_core.data.sf3d_format import METADATA_KEY, encode_record, set_splits, write_lmdb

log = logging.getLogger(__name__)

SEED_DESCRIPTION_SEPARATOR = "\n---\n"
_SEED_MOTION_TYPES = {"trans": "trans", "translation": "trans", "rot": "rot", "rotation": "rot"}
_SEED_MOTION = ("motion_info", "frame_specific_motion_data")

PathLike = Union[str, Path]


class PickleNotTrusted(ValueError):
    """Converting would unpickle records, and the caller did not say that the source is trusted."""


@dataclass
class ConversionSummary:
    """What :func:`convert_seed_lmdb` did: the LMDB written, its record count and the keys left out."""

    source: Path
    out: Path
    written: int
    skipped: list[str] = field(default_factory=list)


def find_seed_lmdb(src: PathLike) -> Path:
    """The seed's LMDB directory: ``src`` itself when it holds ``data.mdb``, else ``src/data.lmdb``."""
    src = Path(src)
    for candidate in (src, src / "data.lmdb"):
        if (candidate / "data.mdb").is_file():
            return candidate
    raise FileNotFoundError(f"no LMDB at {src}: expected {src}/data.mdb or {src}/data.lmdb/data.mdb")


def _plain(value: Any) -> Any:
    """``value`` with numpy arrays, numpy scalars and tuples turned into lists and Python numbers."""
    if isinstance(value, (np.ndarray, np.generic)):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


def _seed_field(record: Mapping[str, Any], path: tuple[str, ...], key: str) -> Any:
    """The value at the nested ``path`` of the seed record; DatasetError naming the key when absent."""
    value: Any = record
    for name in path:
        if not isinstance(value, Mapping) or value.get(name) is None:
            raise DatasetError(f"record {key!r}: the seed field {'.'.join(path)!r} is missing")
        value = value[name]
    return value


def _image_path(folder: str, name: Any, field_name: str, key: str) -> str:
    """``folder/name`` for a seed file name that stays inside ``folder`` (UnsafePathError otherwise)."""
    if not isinstance(name, str) or not name:
        raise DatasetError(f"record {key!r}: the seed field {field_name!r} must be a file name, got {name!r}")
    safe_join(Path(folder), name, f"record {key!r}: {field_name}")  # no absolute paths, no '..'
    return f"{folder}/{name}"


def _mask_hull_yx(pixels_yx: Any, key: str) -> list[list[float]]:
    """The convex hull (y, x) of the mask pixels (N, 2); filled, it covers the same pixels for the seed's
    masks (which were filled convex hulls)."""
    try:
        pixels = np.asarray(pixels_yx, dtype=np.float64).reshape(-1, 2)
    except (TypeError, ValueError) as error:
        raise DatasetError(f"record {key!r}: mask_coordinates_yx is not a list of (y, x) pixels ({error})") from None
    if len(pixels) == 0 or not np.isfinite(pixels).all():
        raise DatasetError(f"record {key!r}: mask_coordinates_yx is empty or not finite")
    hull_xy = cv2.convexHull(np.round(pixels[:, ::-1]).astype(np.int32)).reshape(-1, 2).astype(np.float64)
    check_polygons([hull_xy], f"record {key!r}")
    return hull_xy[:, ::-1].tolist()


def _descriptions(text: Any, key: str) -> list[str]:
    if not isinstance(text, str):
        raise DatasetError(f"record {key!r}: the seed field 'description' must be a string, got {type(text).__name__}")
    descriptions = [part.strip() for part in text.split(SEED_DESCRIPTION_SEPARATOR) if part.strip()]
    if not descriptions:
        raise DatasetError(f"record {key!r}: the description is empty")
    return descriptions


def convert_seed_record(seed: Any, key: str) -> dict[str, Any]:
    """The JSON-ready record of one unpickled seed record (see the module's table); DatasetError naming
    ``key`` and the field when a field is missing or malformed (the result follows ``sf3d_format``)."""
    if not isinstance(seed, Mapping):
        raise DatasetError(f"record {key!r}: the seed record is a {type(seed).__name__}, not a dict")
    try:
        record = _convert_fields(seed, key)
    except DatasetError:
        raise
    except (TypeError, ValueError, IndexError) as error:  # a field of another shape or type than assumed
        raise DatasetError(f"record {key!r}: malformed seed record ({type(error).__name__}: {error})") from None
    encode_record(record, key)  # validates every field, naming the key and the field
    return record


def _convert_fields(seed: Mapping[str, Any], key: str) -> dict[str, Any]:
    """The fields of the module's table, not validated yet (``convert_seed_record`` validates)."""
    motion_type = _seed_field(seed, ("motion_info", "original_motion_data", "motion_type"), key)
    if motion_type not in _SEED_MOTION_TYPES:
        raise DatasetError(f"record {key!r}: motion_type {motion_type!r} is not one of {sorted(_SEED_MOTION_TYPES)}")
    width, height = _plain(_seed_field(seed, ("image_dimensions_wh",), key))
    descriptions = _descriptions(_seed_field(seed, ("description",), key), key)
    trajectory = _plain(_seed_field(seed, ("trajectory_3d_camera_coords",), key))
    record: dict[str, Any] = {
        "rgb_path": _image_path("images", seed.get("rgb_image_path"), "rgb_image_path", key),
        "depth_path": _image_path("depth", seed.get("depth_image_path"), "depth_image_path", key),
        "mask_coordinates_yx": _mask_hull_yx(_seed_field(seed, ("mask_coordinates_yx",), key), key),
        "description": descriptions[0],
        "descriptions": descriptions,
        "motion_type": _SEED_MOTION_TYPES[motion_type],
        "motion_dir_camera_coords": _plain(_seed_field(seed, (*_SEED_MOTION, "motion_dir_3d_camera_coords"), key)),
        "motion_origin_camera_coords": _plain(
            _seed_field(seed, (*_SEED_MOTION, "motion_origin_3d_camera_coords"), key)
        ),
        "motion_origin_pixel": _plain(_seed_field(seed, (*_SEED_MOTION, "motion_origin_2d_image_coords"), key)),
        "intrinsics": _plain(_seed_field(seed, ("camera_intrinsics",), key)),
        "extrinsics": _plain(_seed_field(seed, ("camera_extrinsics_world_to_cam",), key)),
        "image_size": [height, width],
        "trajectory_3d_camera_coords": trajectory,
    }
    pixels_2d, valid_2d = seed.get("trajectory_2d_image_coords"), seed.get("trajectory_2d_valid")
    if pixels_2d is not None and valid_2d is not None and len(pixels_2d) > 0 and bool(valid_2d[0]) and trajectory:
        record["interaction_pixel"] = _plain(pixels_2d[0])
        record["interaction_point_camera_coords"] = trajectory[0]
    return record


def scene_splits(keys: list[str], valid_fraction: float, seed: int) -> dict[str, list[str]]:
    """``train`` / ``valid`` keys split by scene (the key's first part), as the seed split them."""
    scenes = sorted({key.split("/")[0] for key in keys})
    random.Random(seed).shuffle(scenes)
    valid_scenes = set(scenes[: int(round(len(scenes) * valid_fraction))])
    return {
        "train": [key for key in keys if key.split("/")[0] not in valid_scenes],
        "valid": [key for key in keys if key.split("/")[0] in valid_scenes],
    }


def _converted_records(
    source: Path, txn: lmdb.Transaction, skipped: list[str], skip_bad: bool
) -> Iterator[tuple[str, dict[str, Any]]]:
    """(key, converted record) of every record of the (trusted) seed LMDB, in key order."""
    for raw_key, data in txn.cursor():
        if raw_key == METADATA_KEY:
            continue
        key = raw_key.decode("utf-8", "replace")
        try:
            try:
                seed = pickle.loads(data)  # the caller vouched for the source: see trust_pickle
            except Exception as error:  # a truncated or foreign record fails in many ways
                raise DatasetError(f"record {key!r}: cannot unpickle ({type(error).__name__}: {error})") from None
            record = convert_seed_record(seed, key)
        except DatasetError as error:
            if not skip_bad:
                raise type(error)(f"{source}: {error}") from None  # UnsafePathError stays one
            skipped.append(key)
            log.warning("%s: skipping %s", source, error)
            continue
        yield key, record


def convert_seed_lmdb(
    src: PathLike,
    out: PathLike,
    *,
    trust_pickle: bool,
    skip_bad: bool = False,
    valid_fraction: float = 0.0,
    split_seed: int = 42,
) -> ConversionSummary:
    """Convert the seed's pickled LMDB at ``src`` (the LMDB or the root holding ``data.lmdb``) into a new
    JSON LMDB at ``out`` (which must not exist; ``images/`` and ``depth/`` stay where they are), with
    ``train`` / ``valid`` splits by scene when ``valid_fraction`` > 0 (see the module docstring).

    Raises :class:`PickleNotTrusted` unless ``trust_pickle`` (nothing is opened then), FileExistsError
    when ``out`` exists, and DatasetError naming the source and the key for a record that does not
    convert (unless ``skip_bad``: then it is left out and listed in the summary). ``out`` appears only
    once every record is written.
    """
    if not trust_pickle:
        raise PickleNotTrusted(
            f"refusing to convert {src}: its records are Python pickles, and unpickling runs any code a "
            "record names, so a crafted database executes commands on this machine. Convert only a database "
            "that you or the seed's own sf3d_process.py wrote, and say so with --trust-pickle "
            "(trust_pickle=True)"
        )
    source = find_seed_lmdb(src)
    out = Path(out)
    if out.exists():
        raise FileExistsError(f"{out} exists: name a new LMDB directory to write")
    if not 0.0 <= valid_fraction < 1.0:
        raise ValueError(f"valid_fraction must be in [0, 1), got {valid_fraction}")
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    skipped: list[str] = []
    try:
        env = lmdb.open(str(source), readonly=True, lock=False, readahead=False, subdir=True)
    except lmdb.Error as error:
        raise DatasetError(f"{source}: cannot open the LMDB ({error})") from None
    try:
        with env.begin() as txn:
            keys = write_lmdb(
                partial, _converted_records(source, txn, skipped, skip_bad), {"converted_from": str(source)}
            )
        if valid_fraction > 0.0:
            set_splits(partial, scene_splits(keys, valid_fraction, split_seed))
        os.replace(partial, out)
    except lmdb.Error as error:  # a corrupt source, or a full disk under the new one
        shutil.rmtree(partial, ignore_errors=True)
        raise DatasetError(f"cannot convert {source} into {out}: {error}") from None
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    finally:
        env.close()
    log.info("converted %d records of %s to %s (%d left out)", len(keys), source, out, len(skipped))
    return ConversionSummary(source=source, out=out, written=len(keys), skipped=skipped)
