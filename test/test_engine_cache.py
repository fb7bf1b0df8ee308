"""The engine cache: where it lives, hits, misses on changed weights or size, corrupt and mismatched
entries rebuilt with a warning, an unwritable directory working uncached, atomic builds."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from segaff_core import export
from segaff_core.config import ModelParams
from segaff_core.inference import Predictor
from segaff_core.model import SegAffordanceModel, build_model
from segaff_core.runtimes import EngineCache, default_cache_dir
from segaff_core.runtimes.cache import ENTRY_FILE

SIZE = (64, 64)
K = np.array([[60.0, 0.0, 47.5], [0.0, 60.0, 31.5], [0.0, 0.0, 1.0]])
TEXT = "open the top drawer"
RUNTIMES = [name for name in ("openvino", "onnxruntime") if __import__("importlib").util.find_spec(name)]
pytestmark = pytest.mark.skipif(not RUNTIMES, reason="neither openvino nor onnxruntime is installed")


@pytest.fixture(scope="module")
def model() -> SegAffordanceModel:
    torch.manual_seed(2)
    return build_model(ModelParams.small()).eval()


@pytest.fixture
def exports(monkeypatch) -> list[tuple[int, int]]:
    """The input sizes of every ONNX export (a cache miss exports; a hit does not)."""
    calls: list[tuple[int, int]] = []
    real_export = export.export_onnx

    def counting(model, path, input_size, *args, **kwargs):
        calls.append(tuple(input_size))
        return real_export(model, path, input_size, *args, **kwargs)

    monkeypatch.setattr(export, "export_onnx", counting)
    return calls


def _frame() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (64, 96, 3), dtype=np.uint8), (1.0 + rng.random((64, 96))).astype(np.float32)


def _predict(predictor: Predictor):
    rgb, depth_m = _frame()
    return predictor(rgb, depth_m, TEXT, K)


def _assert_same(a, b) -> None:
    np.testing.assert_array_equal(a.mask, b.mask)
    np.testing.assert_allclose(a.point_px, b.point_px, atol=1e-3)
    np.testing.assert_allclose(a.axis, b.axis, atol=1e-4)


def test_default_directory_follows_xdg_cache_home(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / "segaff"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "segaff"


@pytest.mark.parametrize("backend", RUNTIMES)
def test_hit_then_miss_on_changed_weights_and_size(backend, model, tmp_path, exports):
    first = Predictor(model, SIZE, device="cpu", backend=backend, cache_dir=tmp_path)
    assert exports == [SIZE] and not first.runtime.engine.from_cache
    second = Predictor(model, SIZE, device="cpu", backend=backend, cache_dir=tmp_path)
    assert exports == [SIZE] and second.runtime.engine.from_cache  # hit: nothing exported or built
    assert second.runtime.engine.path == first.runtime.engine.path
    _assert_same(_predict(second), _predict(first))

    Predictor(model, (96, 64), device="cpu", backend=backend, cache_dir=tmp_path)
    assert exports == [SIZE, (96, 64)]  # another size: a miss

    changed = build_model(ModelParams.small()).eval()
    changed.load_state_dict(model.state_dict())
    with torch.no_grad():
        changed.projector.txt.bias.add_(0.5)
    other = Predictor(changed, SIZE, device="cpu", backend=backend, cache_dir=tmp_path)
    assert exports == [SIZE, (96, 64), SIZE] and other.runtime.engine.path != first.runtime.engine.path


@pytest.mark.parametrize("backend", RUNTIMES)
@pytest.mark.parametrize("damage", ["truncated", "garbage", "entry"])
def test_a_corrupt_entry_is_rebuilt_with_a_warning(backend, damage, model, tmp_path, exports, caplog):
    expected = _predict(Predictor(model, SIZE, device="cpu", backend="torch"))
    engine = Predictor(model, SIZE, device="cpu", backend=backend, cache_dir=tmp_path).runtime.engine
    entry = json.loads((engine.path / ENTRY_FILE).read_text())
    victim = engine.path / max(entry["files"], key=entry["files"].get)  # the largest file: the weights
    if damage == "truncated":
        victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    elif damage == "garbage":
        victim.write_bytes(b"\x00garbage" * (victim.stat().st_size // 8) + b"\x00" * (victim.stat().st_size % 8))
        for compiled in (engine.path / "compiled").glob("*"):  # OpenVINO's compiled blob would hide the damage
            compiled.unlink()
    else:
        (engine.path / ENTRY_FILE).write_text("{not json")
    with caplog.at_level(logging.WARNING):
        rebuilt = Predictor(model, SIZE, device="cpu", backend=backend, cache_dir=tmp_path)
    assert "rebuilding it" in caplog.text and str(engine.path) in caplog.text
    assert not rebuilt.runtime.engine.from_cache and len(exports) == 1  # the ONNX export was still good
    _assert_same(_predict(rebuilt), expected)
    assert Predictor(model, SIZE, device="cpu", backend=backend, cache_dir=tmp_path).runtime.engine.from_cache


def test_a_mismatched_entry_is_rebuilt(model, tmp_path, caplog):
    engine = Predictor(model, SIZE, device="cpu", backend=RUNTIMES[0], cache_dir=tmp_path).runtime.engine
    entry = json.loads((engine.path / ENTRY_FILE).read_text())
    entry["key"]["input_size"] = [32, 32]
    (engine.path / ENTRY_FILE).write_text(json.dumps(entry))
    with caplog.at_level(logging.WARNING):
        rebuilt = Predictor(model, SIZE, device="cpu", backend=RUNTIMES[0], cache_dir=tmp_path)
    assert "corrupt or mismatched (it was built for" in caplog.text and not rebuilt.runtime.engine.from_cache


def test_an_unwritable_directory_works_uncached_with_a_warning(model, tmp_path, caplog):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with caplog.at_level(logging.WARNING):
        predictor = Predictor(model, SIZE, device="cpu", backend=RUNTIMES[0], cache_dir=blocker / "engines")
    assert "is not writable" in caplog.text and str(blocker / "engines") in caplog.text
    assert not predictor.runtime.engine.path.is_relative_to(blocker)
    _assert_same(_predict(predictor), _predict(Predictor(model, SIZE, device="cpu", backend="torch")))


def test_a_failed_build_leaves_no_entry(tmp_path):
    cache = EngineCache(tmp_path)
    model = build_model(ModelParams.small())
    key = cache.key("fake", "1.0", model, SIZE, "fp32")

    def failing_build(directory: Path) -> dict:
        (directory / "half-written.bin").write_bytes(b"\x00" * 10)
        raise RuntimeError("out of disk")

    with pytest.raises(RuntimeError, match="out of disk"):
        cache.load_or_build(key, failing_build, lambda engine: engine)
    assert list(tmp_path.iterdir()) == []
    loaded, engine = cache.load_or_build(key, lambda directory: {"built": True}, lambda engine: engine.record)
    assert loaded == {"built": True} and not engine.from_cache
    assert cache.load_or_build(key, failing_build, lambda engine: engine.from_cache)[0] is True


def test_pytorch_alone_never_touches_the_cache_directory(model, tmp_path):
    Predictor(model, SIZE, device="cpu", backend="torch", cache_dir=tmp_path / "engines")
    assert not (tmp_path / "engines").exists()
