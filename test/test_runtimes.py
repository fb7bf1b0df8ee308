"""Inference runtimes against PyTorch fp32 on rendered frames (the shipped checkpoint and a random
default-configuration model), the ``auto`` rule and its fall-backs, named-backend errors and precision checks.

The engine cache's own behaviour (hit, miss, corrupt, unwritable) is in test_engine_cache.py.
"""
from __future__ import annotations

import importlib.util
import logging
from collections.abc import Iterator

import numpy as np
import pytest
import torch

from segaff_core import checkpoint, export
from segaff_core.config import ModelParams
from segaff_core.inference import AffordancePrediction, Predictor
from segaff_core.model import SegAffordanceModel, build_model
from segaff_core.runtimes import BACKENDS, BackendUnavailableError, hardware, selection, verification
from segaff_core.runtimes.openvino_runtime import OpenVinoBackend
from segaff_core.synth import render_scene

FP32_RUNTIMES = [name for name in ("onnxruntime", "openvino") if importlib.util.find_spec(name) is not None]
FRAME_HW = (240, 320)


@pytest.fixture(scope="module", autouse=True)
def _private_cache_home(tmp_path_factory) -> Iterator[None]:
    """Engines built by the default (auto) backend go to a test directory, never to the user's ~/.cache."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.getbasetemp() / "xdg-cache"))
        yield


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def _angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.degrees(np.arccos(np.clip(np.dot(a, b), -1.0, 1.0))))


def _predictions(predictor: Predictor, seeds: range) -> list[AffordancePrediction]:
    results = []
    for seed in seeds:
        sample = render_scene(seed, FRAME_HW)
        results.append(predictor(sample.rgb, sample.depth_m, sample.parts[0].descriptions[0], sample.K))
    return results


def _assert_matches_fp32(actual: list[AffordancePrediction], expected: list[AffordancePrediction]) -> None:
    """The fp32 tolerances: worst mask IoU >= 0.98, axis <= 0.5 deg, point <= 1 px, same motion type."""
    assert min(_iou(a.mask, e.mask) for a, e in zip(actual, expected)) >= 0.98
    assert max(_angle_deg(a.axis, e.axis) for a, e in zip(actual, expected)) <= 0.5
    assert max(np.hypot(*np.subtract(a.point_px, e.point_px)) for a, e in zip(actual, expected)) <= 1.0
    assert [a.motion_type for a in actual] == [e.motion_type for e in expected]


def _assert_masks_non_trivial(predictions: list[AffordancePrediction]) -> None:
    """Otherwise the IoU check could not fail (two empty or two full masks agree)."""
    fractions = [float(p.mask.mean()) for p in predictions]
    assert all(0.005 < fraction < 0.95 for fraction in fractions), fractions


def _centre_mask_logits(model: SegAffordanceModel, input_size: tuple[int, int], seeds: range) -> None:
    """Random weights give near-empty or near-full masks: shift the mask map's dynamic bias (instruction-
    independent) so that about half of the mask logits of the test frames are positive."""
    probe = Predictor(model, input_size, device="cpu", backend="torch", fold_bn=False)
    logits = []
    for seed in seeds:
        sample = render_scene(seed, FRAME_HW)
        image, depth = probe._preprocess(sample.rgb, sample.depth_m)
        text, _ = probe._text_conditioning(sample.parts[0].descriptions[0])
        logits.append(probe.runtime.run(image, depth, text)["mask_logits"].flatten())
    projector = model.projector
    with torch.no_grad():
        projector.txt.bias[projector.in_dim * projector.kernel_size ** 2] -= torch.cat(logits).median()


# --- the shipped checkpoint ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def shipped_reference() -> list[AffordancePrediction]:
    if not checkpoint.DEFAULT_CHECKPOINT.is_file():
        pytest.skip(f"the shipped checkpoint {checkpoint.DEFAULT_CHECKPOINT} is not there")
    predictor = Predictor.from_checkpoint(device="cpu", backend="torch")
    predictions = _predictions(predictor, range(3))
    _assert_masks_non_trivial(predictions)
    return predictions


@pytest.mark.parametrize("backend", FP32_RUNTIMES)
def test_shipped_checkpoint_runtime_matches_pytorch_fp32(backend, shipped_reference, tmp_path):
    predictor = Predictor.from_checkpoint(device="cpu", backend=backend, cache_dir=tmp_path)
    assert predictor.backend == backend and predictor.backend_reason == "named explicitly"
    assert predictor.input_size == (160, 160)  # the size it was trained at
    _assert_matches_fp32(_predictions(predictor, range(3)), shipped_reference)


# --- a random default-configuration model (heavy: one model, two frames, a small input) -----------------

DEFAULT_SIZE = (128, 128)


@pytest.fixture(scope="module")
def default_model() -> SegAffordanceModel:
    torch.manual_seed(0)
    model = build_model(ModelParams(clip_pretrain=None)).eval()
    _centre_mask_logits(model, DEFAULT_SIZE, range(2))
    return model


@pytest.fixture(scope="module")
def default_reference(default_model) -> list[AffordancePrediction]:
    predictions = _predictions(Predictor(default_model, DEFAULT_SIZE, device="cpu", backend="torch"), range(2))
    _assert_masks_non_trivial(predictions)
    return predictions


@pytest.mark.parametrize("backend", FP32_RUNTIMES)
def test_default_model_runtime_matches_pytorch_fp32(backend, default_model, default_reference, tmp_path_factory):
    cache = tmp_path_factory.getbasetemp() / "default-model-engines"  # the ONNX export is shared
    predictor = Predictor(default_model, DEFAULT_SIZE, device="cpu", backend=backend, cache_dir=cache)
    assert predictor.backend == backend
    _assert_matches_fp32(_predictions(predictor, range(2)), default_reference)


# --- auto -------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def small_model() -> SegAffordanceModel:
    torch.manual_seed(1)
    model = build_model(ModelParams.small()).eval()
    _centre_mask_logits(model, (64, 64), range(1))
    return model


def test_auto_picks_the_first_runtime_of_the_cpu_order_and_says_why(small_model, tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="segaff_core.runtimes.selection"):
        predictor = Predictor(small_model, (64, 64), device="cpu", cache_dir=tmp_path)
    expected = next(name for name in selection.AUTO_ORDER["cpu"]
                    if BACKENDS[name].unavailable_reason(torch.device("cpu"), "fp32") is None)
    assert predictor.backend == expected
    assert predictor.backend_reason.startswith(f"auto chose {expected} for cpu fp32")
    assert predictor.backend_reason in caplog.text


def test_auto_falls_back_with_a_warning_when_a_runtime_fails(small_model, tmp_path, monkeypatch, caplog):
    if "openvino" not in FP32_RUNTIMES or "onnxruntime" not in FP32_RUNTIMES:
        pytest.skip("needs openvino and onnxruntime installed")

    def explode(self, request):
        raise RuntimeError("plugin crashed")

    monkeypatch.setattr(OpenVinoBackend, "build", explode)
    with caplog.at_level(logging.WARNING):
        predictor = Predictor(small_model, (64, 64), device="cpu", cache_dir=tmp_path)
    assert predictor.backend == "onnxruntime"
    assert "openvino failed (plugin crashed)" in caplog.text
    assert "openvino: failed (plugin crashed)" in predictor.backend_reason


def test_auto_skips_a_runtime_outside_the_tolerance_and_remembers_it(small_model, tmp_path, monkeypatch, caplog):
    if "openvino" not in FP32_RUNTIMES:
        pytest.skip("needs openvino installed")
    calls = []

    def disagreeing(runtime, *args, **kwargs):
        calls.append(runtime.name)
        return verification.Verification(0.5, 0.2, 10.0, 5.0, False, passed=runtime.name != "openvino")

    monkeypatch.setattr(selection, "verify", disagreeing)
    with caplog.at_level(logging.WARNING):
        first = Predictor(small_model, (64, 64), device="cpu", cache_dir=tmp_path)
    assert first.backend != "openvino" and "openvino differs from PyTorch fp32" in caplog.text
    assert "openvino: outside the fp32 tolerance" in first.backend_reason
    assert calls[0] == "openvino"
    calls.clear()
    second = Predictor(small_model, (64, 64), device="cpu", cache_dir=tmp_path)
    assert second.backend == first.backend and calls == []  # both verifications came from the cache


def test_auto_does_not_verify_again_on_a_cache_hit(small_model, tmp_path, monkeypatch):
    Predictor(small_model, (64, 64), device="cpu", cache_dir=tmp_path)
    calls = []
    monkeypatch.setattr(selection, "verify", lambda *args, **kwargs: calls.append(1))
    predictor = Predictor(small_model, (64, 64), device="cpu", cache_dir=tmp_path)
    assert calls == [] and "mask IoU" in predictor.backend_reason


# --- named backends, precision ---------------------------------------------------------------------------

def test_a_named_backend_that_cannot_run_is_a_clear_error(small_model, tmp_path, monkeypatch):
    with pytest.raises(BackendUnavailableError, match="'tensorrt' is unavailable: TensorRT needs a CUDA device"):
        Predictor(small_model, (64, 64), device="cpu", backend="tensorrt", cache_dir=tmp_path)
    with pytest.raises(ValueError, match="backend must be one of auto, torch"):
        Predictor(small_model, (64, 64), device="cpu", backend="tflite")
    if not FP32_RUNTIMES:
        return

    def broken_export(*args, **kwargs):
        raise RuntimeError("exporter broke")

    monkeypatch.setattr(export, "export_onnx", broken_export)
    with pytest.raises(BackendUnavailableError, match=f"'{FP32_RUNTIMES[0]}'.*building it failed: exporter broke"):
        Predictor(small_model, (64, 64), device="cpu", backend=FP32_RUNTIMES[0], cache_dir=tmp_path)
    auto = Predictor(small_model, (64, 64), device="cpu", cache_dir=tmp_path)  # auto: no error, PyTorch
    assert auto.backend == "torch" and "exporter broke" in auto.backend_reason


def test_not_installed_runtime_is_named_with_the_install_hint(small_model, monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *args: None if name == "openvino" else real_find_spec(name, *args))
    with pytest.raises(BackendUnavailableError, match="openvino is not installed .pip install openvino"):
        Predictor(small_model, (64, 64), device="cpu", backend="openvino")


def test_bf16_on_a_cpu_without_native_bf16_is_refused(small_model, monkeypatch):
    monkeypatch.setattr(hardware, "cpu_has_native_bf16", lambda: False)
    with pytest.raises(ValueError, match="avx512_bf16 or amx_bf16"):
        Predictor(small_model, (64, 64), device="cpu", precision="bf16", backend="torch")


@pytest.mark.skipif("openvino" not in FP32_RUNTIMES, reason="openvino is not installed")
def test_openvino_runs_the_precision_asked_for(small_model, tmp_path):
    fp32 = Predictor(small_model, (64, 64), device="cpu", backend="openvino", cache_dir=tmp_path)
    import openvino

    assert fp32.runtime.compiled.get_property("INFERENCE_PRECISION_HINT") == openvino.Type.f32  # not bf16
    if not hardware.cpu_has_native_bf16():
        pytest.skip("this CPU has no native bf16")
    bf16 = Predictor(small_model, (64, 64), device="cpu", backend="openvino", precision="bf16", cache_dir=tmp_path)
    assert bf16.runtime.compiled.get_property("INFERENCE_PRECISION_HINT") == openvino.Type.bf16
    assert bf16.runtime.engine.path != fp32.runtime.engine.path  # precision is part of the key


def test_reduced_precision_is_judged_against_pytorchs_own_autocast():
    tolerance = verification.TOLERANCES["bf16"]
    runtime = verification.Verification(0.85, 0.003, 2.0, 5.0, True, passed=False)
    autocast = verification.Verification(0.86, 0.003, 1.9, 5.5, True, passed=False)
    assert runtime.judged_against_autocast(autocast, tolerance).passed  # no worse than PyTorch's bf16
    much_worse = verification.Verification(0.60, 0.003, 2.0, 5.0, True, passed=False)
    assert not much_worse.judged_against_autocast(autocast, tolerance).passed
    flipped = verification.Verification(0.95, 0.003, 1.0, 1.0, False, passed=False)
    assert not flipped.judged_against_autocast(autocast, tolerance).passed
