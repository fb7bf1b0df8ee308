"""The on-disk engine cache: converted graphs and built engines, keyed on what they were built from.

An entry is a directory ``<cache_dir>/<runtime>-<digest>/`` holding the runtime's files and ``entry.json``
(the key it was built for, the files with their sizes, and the runtime's record, e.g. the verification
against PyTorch). The digest covers the weights' content, the input size, the precision, the runtime's
name and version and :data:`CACHE_FORMAT_VERSION`. An entry is built in a staging directory and renamed
into place in one step, so a reader sees a whole entry or none. A corrupt or mismatched entry is rebuilt
with a warning; an unwritable cache directory works uncached (a temporary directory) with a warning.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any, Optional, TypeVar, Union

import torch

from segaff_core.model import SegAffordanceModel

log = logging.getLogger(__name__)

CACHE_FORMAT_VERSION = 2  # 2: the sub-pixel point and int8 engines (their graphs and keys)
"""Version of the entries' layout and of the graphs this package writes; bumping it invalidates every entry."""

ENTRY_FILE = "entry.json"
T = TypeVar("T")


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/segaff``, else ``~/.cache/segaff``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "segaff"


def weights_digest(model: SegAffordanceModel) -> str:
    """SHA-256 of the model's configuration and every state tensor (name, dtype, shape, bytes)."""
    digest = hashlib.sha256(repr(model.params).encode())
    for name, tensor in sorted(model.state_dict().items()):
        tensor = tensor.detach().cpu().contiguous().reshape(-1)  # 1-D: 0-d tensors cannot be viewed as bytes
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.view(torch.uint8).numpy())
    return digest.hexdigest()


@dataclass
class Engine:
    """A cache entry ready to load: its directory, its record, and whether it came from the cache."""

    path: Path
    key: dict[str, Any]
    record: dict[str, Any] = field(default_factory=dict)
    from_cache: bool = False


class EngineCache:
    """Entries under ``directory`` (None: :func:`default_cache_dir`); uncached when it cannot be written."""

    def __init__(self, directory: Union[str, "PathLike[str]", None] = None) -> None:
        self.requested = Path(directory).expanduser() if directory is not None else default_cache_dir()
        self._directory: Optional[Path] = None  # resolved at the first use (PyTorch alone never touches it)
        self._digests: dict[int, str] = {}
        self._temporary: Optional[tempfile.TemporaryDirectory] = None

    @property
    def directory(self) -> Path:
        """Where entries go: the requested directory, or a temporary one when that is not writable."""
        if self._directory is None:
            self._directory = self.requested if self._writable(self.requested) else self._temporary_directory()
        return self._directory

    @property
    def writable(self) -> bool:
        """Whether entries persist (the requested directory could be written)."""
        return self.directory == self.requested

    @staticmethod
    def _writable(directory: Path) -> bool:
        try:
            directory.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=directory, prefix=".probe-"):
                pass
            return True
        except OSError as error:
            log.warning("engine cache directory %s is not writable (%s): engines are built uncached", directory, error)
            return False

    def _temporary_directory(self) -> Path:
        self._temporary = tempfile.TemporaryDirectory(prefix="segaff-engines-")
        return Path(self._temporary.name)

    def weights_digest(self, model: SegAffordanceModel) -> str:
        """:func:`weights_digest` of ``model``, computed once per model object."""
        if id(model) not in self._digests:
            self._digests[id(model)] = weights_digest(model)
        return self._digests[id(model)]

    def key(self, runtime: str, runtime_version: str, model: SegAffordanceModel, input_size: tuple[int, int],
            precision: str, **extra: Any) -> dict[str, Any]:
        """The key of an entry: ``extra`` holds what else the files depend on (device, opset, ...)."""
        return {
            "format": CACHE_FORMAT_VERSION, "runtime": runtime, "runtime_version": runtime_version,
            "weights": self.weights_digest(model), "input_size": list(input_size), "precision": precision,
            **extra,
        }

    def entry_path(self, key: Mapping[str, Any]) -> Path:
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]
        return self.directory / f"{key['runtime']}-{digest}"

    def load_or_build(
        self,
        key: dict[str, Any],
        build: Callable[[Path], dict[str, Any]],
        load: Callable[[Engine], T],
    ) -> tuple[T, Engine]:
        """``load`` the entry of ``key``, first building it when missing, corrupt or mismatched.

        ``build(staging_dir)`` writes the files and returns the entry's record; ``load(engine)`` reads them
        (an exception there marks the entry corrupt: it is rebuilt once, with a warning).
        """
        engine = self._read(key)
        if engine is not None:
            try:
                return load(engine), engine
            except Exception as error:  # noqa: BLE001 - any unreadable file: rebuild the entry
                log.warning("cached engine %s could not be loaded (%s): rebuilding it", engine.path, error)
        engine = self._build(key, build)
        return load(engine), engine

    def update_record(self, engine: Engine, **fields: Any) -> None:
        """Add ``fields`` to the record of ``engine`` and rewrite its ``entry.json`` atomically."""
        engine.record.update(fields)
        entry = json.loads((engine.path / ENTRY_FILE).read_text())
        entry["record"] = engine.record
        try:
            _write_atomic(engine.path / ENTRY_FILE, json.dumps(entry, indent=1, sort_keys=True))
        except OSError as error:
            log.warning("could not update the engine cache entry %s: %s", engine.path, error)

    def _read(self, key: dict[str, Any]) -> Optional[Engine]:
        path = self.entry_path(key)
        if not path.exists():
            return None
        try:
            entry = json.loads((path / ENTRY_FILE).read_text())
            if entry["key"] != key:
                raise ValueError(f"it was built for {entry['key']}")
            for name, size in entry["files"].items():
                actual = (path / name).stat().st_size
                if actual != size:
                    raise ValueError(f"{name} has {actual} bytes, {size} recorded")
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
            log.warning("engine cache entry %s is corrupt or mismatched (%s): rebuilding it", path, error)
            return None
        return Engine(path, key, dict(entry.get("record", {})), from_cache=True)

    def _build(self, key: dict[str, Any], build: Callable[[Path], dict[str, Any]]) -> Engine:
        final = self.entry_path(key)
        staging = Path(tempfile.mkdtemp(prefix=f".staging-{final.name}-", dir=self.directory))
        try:
            record = build(staging)
            files = {str(path.relative_to(staging)): path.stat().st_size
                     for path in sorted(staging.rglob("*")) if path.is_file()}
            entry = {"key": key, "files": files, "record": record}
            (staging / ENTRY_FILE).write_text(json.dumps(entry, indent=1, sort_keys=True))
            if final.exists():
                shutil.rmtree(final, ignore_errors=True)
            os.replace(staging, final)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        log.info("engine cache: built %s", final)
        return Engine(final, key, record, from_cache=False)


def _write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same directory and ``os.replace``."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-")
    try:
        with os.fdopen(handle, "w") as file:
            file.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
