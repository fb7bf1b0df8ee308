"""The SceneFun3D processed format: an LMDB of JSON records (schema in docs/DESIGN.md), no pickle.

``<root>/data.lmdb`` maps ``b"__metadata__"`` to ``{"format": "segaff-sf3d", "version": 1,
"keys": [...], "splits": {name: [keys]}?}`` and each ``visit_id/video_id/timestamp/annot_id`` key to
one record. Records are validated when written and when read; errors name the key and the field.
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Optional, Union

import lmdb
import numpy as np

from segaff_core.data.common import DatasetError

FORMAT_NAME = "segaff-sf3d"
FORMAT_VERSION = 1
METADATA_KEY = b"__metadata__"
MOTION_TYPES = {"trans": 0, "rot": 1}

# Array fields and their shapes (None: any length >= 1).
_ARRAY_FIELDS: dict[str, tuple[Optional[int], ...]] = {
    "mask_coordinates_yx": (None, 2),
    "motion_dir_camera_coords": (3,),
    "motion_origin_camera_coords": (3,),
    "motion_origin_pixel": (2,),
    "intrinsics": (3, 3),
    "extrinsics": (4, 4),
    "image_size": (2,),
    "trajectory_3d_camera_coords": (None, 3),
}
_OPTIONAL_ARRAY_FIELDS: dict[str, tuple[Optional[int], ...]] = {
    "interaction_point_camera_coords": (3,),
    "interaction_pixel": (2,),
}
_STRING_FIELDS = ("rgb_path", "depth_path", "description")
OBJECT_DIAMETER_FIELD = "object_diameter_m"
"""Optional: the size (bounding-box diagonal, metres) of the object the part belongs to; the origin metrics
are normalised by it (the project's generator writes it; SceneFun3D's own annotations have none)."""
_COMMIT_EVERY = 1000
_ENVIRONMENTS: dict[str, tuple[int, lmdb.Environment]] = {}  # resolved path -> (pid, environment)

PathLike = Union[str, Path]


def _check_array(value: Any, shape: tuple[Optional[int], ...], field: str, key: str) -> None:
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise DatasetError(f"record {key!r}: field {field!r} is not a numeric array ({error})") from None
    expected = tuple("N" if size is None else size for size in shape)
    if array.ndim != len(shape) or any(s is not None and s != a for s, a in zip(shape, array.shape)):
        raise DatasetError(f"record {key!r}: field {field!r} has shape {array.shape}, expected {expected}")
    if array.size == 0 or not np.isfinite(array).all():
        raise DatasetError(f"record {key!r}: field {field!r} is empty or holds non-finite values")


def validate_record(record: Any, key: str) -> dict[str, Any]:
    """``record`` itself when it follows the schema; DatasetError naming ``key`` and the field otherwise."""
    if not isinstance(record, dict):
        raise DatasetError(f"record {key!r}: expected a JSON object, got {type(record).__name__}")
    for field in _STRING_FIELDS:
        if not isinstance(record.get(field), str) or not record[field]:
            raise DatasetError(f"record {key!r}: field {field!r} must be a non-empty string")
    if record.get("motion_type") not in MOTION_TYPES:
        raise DatasetError(
            f"record {key!r}: field 'motion_type' must be one of {sorted(MOTION_TYPES)}, "
            f"got {record.get('motion_type')!r}"
        )
    for field, shape in _ARRAY_FIELDS.items():
        if field not in record:
            raise DatasetError(f"record {key!r}: required field {field!r} is missing")
        _check_array(record[field], shape, field, key)
    for field, shape in _OPTIONAL_ARRAY_FIELDS.items():
        if record.get(field) is not None:
            _check_array(record[field], shape, field, key)
    diameter = record.get(OBJECT_DIAMETER_FIELD)
    if diameter is not None and (isinstance(diameter, bool) or not isinstance(diameter, (int, float))
                                 or not np.isfinite(diameter) or diameter <= 0):
        raise DatasetError(f"record {key!r}: field {OBJECT_DIAMETER_FIELD!r} must be a positive number of metres, "
                           f"got {diameter!r}")
    height, width = record["image_size"]
    if int(height) != height or int(width) != width or height <= 0 or width <= 0:
        raise DatasetError(f"record {key!r}: field 'image_size' must be two positive integers (H, W)")
    return record


def _to_json(value: Any) -> Any:
    if isinstance(value, (np.ndarray, np.generic)):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def encode_record(record: dict[str, Any], key: str = "<new record>") -> bytes:
    """UTF-8 JSON of a validated record (numpy arrays become lists); errors name ``key``."""
    data = json.loads(json.dumps(record, default=_to_json))
    validate_record(data, key)
    return json.dumps(data, separators=(",", ":")).encode("utf-8")


def decode_record(data: bytes, key: str) -> dict[str, Any]:
    """The record stored under ``key``; DatasetError naming ``key`` when it is corrupt or incomplete."""
    try:
        record = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DatasetError(f"record {key!r}: corrupt JSON ({error})") from None
    return validate_record(record, key)


def _check_splits(splits: Any, keys: set[str], where: str) -> None:
    if not isinstance(splits, dict) or not all(
        isinstance(members, list) and all(isinstance(k, str) for k in members) for members in splits.values()
    ):
        raise DatasetError(f"{where}: 'splits' must map split names to lists of keys")
    for name, members in splits.items():
        unknown = set(members) - keys
        if unknown:
            raise DatasetError(f"{where}: split {name!r} names {len(unknown)} unknown keys, e.g. {min(unknown)!r}")


def write_lmdb(
    path: PathLike,
    records: Iterable[tuple[str, dict[str, Any]]],
    metadata: Optional[dict[str, Any]] = None,
    map_size: int = 1 << 40,
) -> list[str]:
    """Write ``records`` ((key, record) pairs) and the metadata to a new LMDB at ``path``; the keys.

    ``metadata`` may add fields, e.g. ``splits``; ``format``, ``version`` and ``keys`` are set here.
    ``map_size`` is the largest the database may grow (sparse on Linux).
    """
    keys: list[str] = []
    seen: set[str] = set()
    _close_lmdb(path)
    env = lmdb.open(str(path), map_size=map_size, subdir=True)
    try:
        txn = env.begin(write=True)
        try:
            for key, record in records:
                if not key or key == METADATA_KEY.decode() or key in seen:
                    raise ValueError(f"record key {key!r} is empty, reserved or repeated")
                txn.put(key.encode("utf-8"), encode_record(record, key))
                keys.append(key)
                seen.add(key)
                if len(keys) % _COMMIT_EVERY == 0:  # bounded write transactions for large sets
                    txn.commit()
                    txn = env.begin(write=True)
            header = {**(metadata or {}), "format": FORMAT_NAME, "version": FORMAT_VERSION, "keys": keys}
            _check_splits(header.get("splits", {}), seen, str(path))
            txn.put(METADATA_KEY, json.dumps(header).encode("utf-8"))
            txn.commit()
        except BaseException:
            txn.abort()
            raise
    finally:
        env.close()
    return keys


def set_splits(path: PathLike, splits: dict[str, list[str]]) -> None:
    """Replace the ``splits`` in the metadata of the LMDB at ``path`` (written by :func:`write_lmdb`);
    DatasetError when a split names a key the database does not hold."""
    _close_lmdb(path)
    env = lmdb.open(str(path), map_size=1 << 40, subdir=True)
    try:
        with env.begin(write=True) as txn:
            metadata = json.loads(txn.get(METADATA_KEY).decode("utf-8"))
            _check_splits(splits, set(metadata["keys"]), str(path))
            txn.put(METADATA_KEY, json.dumps({**metadata, "splits": splits}).encode("utf-8"))
    finally:
        env.close()


def open_lmdb(path: PathLike) -> lmdb.Environment:
    """The read-only environment of ``path`` (no lock file, no readahead) of this process.

    LMDB allows one environment per file and process, and none inherited over fork: so it is opened
    once per process and shared by every dataset reading ``path``; a forked worker closes its copy of
    the parent's environment (its own mapping and descriptors only) and opens its own.
    Raises FileNotFoundError when ``path`` is missing and DatasetError naming it when it is no LMDB or
    a corrupt one.
    """
    name = str(Path(path).resolve())
    pid, env = _ENVIRONMENTS.get(name, (None, None))
    if env is None or pid != os.getpid():
        if env is not None:
            env.close()
        if not Path(path).exists():
            raise FileNotFoundError(f"SceneFun3D LMDB not found: {path}")
        try:
            env = lmdb.open(name, readonly=True, lock=False, readahead=False, meminit=False, subdir=True)
        except lmdb.Error as error:
            raise DatasetError(f"{path}: cannot open the LMDB ({error})") from None
        _ENVIRONMENTS[name] = (os.getpid(), env)
    return env


def read_raw(path: PathLike, key: bytes) -> Optional[bytes]:
    """The bytes stored under ``key`` in the LMDB at ``path`` (None when absent); DatasetError naming
    the file and the key when the database is corrupt (LMDB reports damaged pages as errors)."""
    try:
        with open_lmdb(path).begin() as txn:
            return txn.get(key)
    except lmdb.Error as error:
        raise DatasetError(f"{path}: cannot read record {key.decode('utf-8', 'replace')!r} ({error})") from None


def opened_in(path: PathLike) -> Optional[int]:
    """The pid whose read-only environment of ``path`` is cached (None when none is)."""
    return _ENVIRONMENTS.get(str(Path(path).resolve()), (None, None))[0]


def _close_lmdb(path: PathLike) -> None:
    _, env = _ENVIRONMENTS.pop(str(Path(path).resolve()), (None, None))
    if env is not None:
        env.close()


def read_metadata(path: PathLike) -> dict[str, Any]:
    """The validated metadata of the LMDB at ``path``."""
    if not Path(path).exists():
        raise FileNotFoundError(f"SceneFun3D LMDB not found: {path}")
    data = read_raw(path, METADATA_KEY)
    if data is None:
        raise DatasetError(f"{path}: no {METADATA_KEY.decode()} record")
    try:
        metadata = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DatasetError(f"{path}: corrupt {METADATA_KEY.decode()} record ({error})") from None
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT_NAME:
        raise DatasetError(f"{path}: not a {FORMAT_NAME} database")
    if metadata.get("version") != FORMAT_VERSION:
        raise DatasetError(f"{path}: format version {metadata.get('version')!r}, this reader knows {FORMAT_VERSION}")
    keys = metadata.get("keys")
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise DatasetError(f"{path}: metadata 'keys' must be a list of strings")
    _check_splits(metadata.get("splits", {}), set(keys), str(path))
    return metadata
