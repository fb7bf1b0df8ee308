"""Inference fast paths give the same results as the plain model: folded batch norm, the cached text side,
channels_last, the ONNX export (onnxruntime), and the torch.compile fallback; plus Predictor warm-up/threads."""
import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import torch

from segaff_core import checkpoint as checkpoint_module
from segaff_core.checkpoint import save_checkpoint
from segaff_core.cli import main as cli_main
from segaff_core.config import ModelParams
from segaff_core.export import OUTPUT_NAMES, export_onnx, text_inputs
from segaff_core.inference import Predictor
from segaff_core.model import SegAffordanceModel, TextConditioning, build_model, fold_batchnorm
from segaff_core.runtimes import hardware
from segaff_core.text import tokenize

TEXTS = ["open the top drawer", "pull the left door of the tall fridge next to the oven"]
K = np.array([[80.0, 0.0, 47.5], [0.0, 80.0, 31.5], [0.0, 0.0, 1.0]])
TOLERANCE = {"atol": 1e-4, "rtol": 1e-4}


@pytest.fixture(scope="module", autouse=True)
def _private_cache_home(tmp_path_factory) -> Iterator[None]:
    """Engines built by the default (auto) backend go to a test directory, never to the user's ~/.cache."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.getbasetemp() / "xdg-cache"))
        yield


def _randomise_batch_norms(model: torch.nn.Module, seed: int = 0) -> None:
    """Non-trivial running statistics and affine parameters, so that folding has something to fold."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                size = module.num_features
                module.running_mean.copy_(torch.rand(size, generator=generator) - 0.5)
                module.running_var.copy_(torch.rand(size, generator=generator) + 0.5)
                module.weight.copy_(torch.rand(size, generator=generator) + 0.5)
                module.bias.copy_(torch.rand(size, generator=generator) * 0.4 - 0.2)


@pytest.fixture(scope="module")
def model() -> SegAffordanceModel:
    torch.manual_seed(0)
    model = build_model(ModelParams.small())
    _randomise_batch_norms(model)
    return model.eval()


def _inputs(batch: int, height: int = 128, width: int = 96, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    image = torch.randn(batch, 3, height, width, generator=generator)
    depth = torch.rand(batch, 1, height, width, generator=generator) * 3.0
    depth[:, :, : height // 8] = 0.0
    return image, depth, tokenize(TEXTS[:batch])


def _assert_outputs_close(actual: dict, expected: dict) -> None:
    assert set(actual) == set(expected)
    for key, value in expected.items():
        torch.testing.assert_close(actual[key], value, **TOLERANCE, msg=key)


def test_folded_batchnorm_equals_the_plain_model(model):
    folded = fold_batchnorm(model)
    assert not folded.training
    remaining = [name for name, module in folded.named_modules() if isinstance(module, torch.nn.BatchNorm2d)]
    assert remaining == ["neck.norm_layer.0"]  # after the text gate, not after a convolution
    assert sum(isinstance(module, torch.nn.BatchNorm2d) for module in model.modules()) > 30  # model untouched
    image, depth, text = _inputs(2)
    with torch.inference_mode():
        _assert_outputs_close(folded(image, depth, text), model(image, depth, text))


def test_cached_text_side_equals_the_uncached_forward(model):
    image, depth, text = _inputs(2)
    with torch.inference_mode():
        expected = model(image, depth, text)
        conditioning = model.prepare_text(model.encode_text(text), trim_padding=True)
        actual = model.forward_with_text(image, depth, conditioning)
    assert conditioning.words.keys[0].shape[2] == int((text != 0).sum(dim=1).max())  # padding trimmed
    _assert_outputs_close(actual, expected)
    rebuilt = TextConditioning.from_tensors(conditioning.tensors())
    assert len(rebuilt.tensors()) == len(TextConditioning.tensor_names(len(model.decoder.layers)))
    with torch.inference_mode():
        _assert_outputs_close(model.forward_with_text(image, depth, rebuilt), expected)


def test_channels_last_equals_contiguous(model):
    image, depth, text = _inputs(1)
    channels_last = fold_batchnorm(model).to(memory_format=torch.channels_last)
    with torch.inference_mode():
        expected = model(image, depth, text)
        actual = channels_last(
            image.contiguous(memory_format=torch.channels_last),
            depth.contiguous(memory_format=torch.channels_last),
            text,
        )
    _assert_outputs_close(actual, expected)


@pytest.fixture(scope="module")
def frame() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (64, 96, 3), dtype=np.uint8)
    depth = (1.0 + rng.random((64, 96))).astype(np.float32)
    return rgb, depth


def _assert_same_prediction(a, b, atol: float = 1e-5) -> None:
    np.testing.assert_array_equal(a.mask, b.mask)
    for name in ("point_px", "point_3d", "axis", "trajectory"):
        np.testing.assert_allclose(np.asarray(getattr(a, name)), np.asarray(getattr(b, name)), atol=atol)
    assert a.motion_type == b.motion_type


def test_predictor_options_give_the_same_prediction(model, frame):
    rgb, depth = frame
    plain = Predictor(model, input_size=(64, 96), device="cpu", fold_bn=False)(rgb, depth, TEXTS[0], K)
    fast = Predictor(model, input_size=(64, 96), device="cpu", channels_last=True, threads=torch.get_num_threads())
    assert fast.model is not model
    assert fast.warmup(runs=1) > 0
    assert not fast._text_cache  # warm-up leaves the cache alone
    _assert_same_prediction(fast(rgb, depth, TEXTS[0], K), plain)
    with pytest.raises(ValueError, match="threads"):
        Predictor(model, device="cpu", threads=0)


@pytest.mark.skipif(not hardware.cpu_has_native_bf16(), reason="this CPU has no native bf16: the Predictor refuses "
                    "bf16 there (test_runtimes.py::test_bf16_on_a_cpu_without_native_bf16_is_refused)")
def test_cpu_bf16_autocast_stays_close_to_fp32(model, frame):
    rgb, depth = frame
    fp32 = Predictor(model, input_size=(64, 96), device="cpu")(rgb, depth, TEXTS[0], K)
    bf16 = Predictor(model, input_size=(64, 96), device="cpu", precision="bf16")(rgb, depth, TEXTS[0], K)
    union = np.logical_or(fp32.mask, bf16.mask).sum()
    assert union == 0 or np.logical_and(fp32.mask, bf16.mask).sum() / union > 0.95
    assert abs(fp32.mask_score - bf16.mask_score) < 0.02
    assert np.hypot(*np.subtract(fp32.point_px, bf16.point_px)) < 2.0
    assert np.degrees(np.arccos(np.clip(np.dot(fp32.axis, bf16.axis), -1.0, 1.0))) < 3.0
    assert fp32.motion_type == bf16.motion_type


def test_threads_option_sets_torch_intra_op_threads(model):
    before = torch.get_num_threads()
    try:
        Predictor(model, input_size=(64, 96), device="cpu", threads=1)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_compiled_predictor_with_frozen_weights_matches_eager(model, frame):
    """One compilation serves instructions of different lengths (the word axis is dynamic)."""
    from torch._dynamo.utils import counters

    rgb, depth = frame
    eager = Predictor(model, input_size=(64, 96), device="cpu")
    compiled = Predictor(model, input_size=(64, 96), device="cpu", channels_last=True, compile=True, backend="torch")
    assert len({len(tokenize(text)[0].nonzero()) for text in TEXTS}) == len(TEXTS)  # lengths differ
    counters.clear()
    for text in TEXTS:
        actual = compiled(rgb, depth, text, K)
        assert compiled.runtime._frame.__name__ == "frame", "fell back to eager: the compiled path was not measured"
        # Inductor reorders float sums: pixels agree to 2e-5
        _assert_same_prediction(actual, eager(rgb, depth, text, K), atol=1e-4)
    assert counters["stats"]["unique_graphs"] == 1, dict(counters["stats"])


def test_compile_mode_reaches_torch_compile_and_is_checked(model, monkeypatch):
    modes = []

    def record(fn, *args, mode=None, **kwargs):
        modes.append(mode)
        return fn

    monkeypatch.setattr(torch, "compile", record)
    Predictor(model, input_size=(64, 96), device="cpu", compile=True, backend="torch",
              compile_mode="max-autotune-no-cudagraphs")
    Predictor(model, input_size=(64, 96), device="cpu", compile=True, backend="torch")
    assert modes == ["max-autotune-no-cudagraphs", "default"]
    with pytest.raises(ValueError, match="compile_mode"):
        Predictor(model, input_size=(64, 96), device="cpu", compile=True, backend="torch", compile_mode="fastest")


def test_compile_failure_falls_back_to_eager(model, frame, monkeypatch, caplog):
    rgb, depth = frame
    expected = Predictor(model, input_size=(64, 96), device="cpu")(rgb, depth, TEXTS[0], K)

    def refuse(*args, **kwargs):
        raise RuntimeError("no compiler here")

    monkeypatch.setattr(torch, "compile", refuse)
    with caplog.at_level(logging.WARNING):
        predictor = Predictor(model, input_size=(64, 96), device="cpu", compile=True, backend="torch")
    assert "torch.compile failed" in caplog.text
    _assert_same_prediction(predictor(rgb, depth, TEXTS[0], K), expected)

    def fails_on_first_call(fn, *args, **kwargs):
        def compiled(*call_args, **call_kwargs):
            raise RuntimeError("inductor exploded")

        return compiled

    caplog.clear()
    monkeypatch.setattr(torch, "compile", fails_on_first_call)
    predictor = Predictor(model, input_size=(64, 96), device="cpu", compile=True, backend="torch")
    with caplog.at_level(logging.WARNING):
        predictor.warmup(runs=1)
    assert "while running a frame" in caplog.text and "inductor exploded" in caplog.text
    _assert_same_prediction(predictor(rgb, depth, TEXTS[0], K), expected)


def test_onnx_export_matches_pytorch(model, tmp_path):
    report = export_onnx(model, tmp_path / "frame.onnx", input_size=(64, 96))
    assert report.output_names == list(OUTPUT_NAMES) and report.input_names[:2] == ["image", "depth"]
    assert max(report.max_abs_error.values()) < 1e-3
    # Another instruction (a different number of words) and another image through the same graph.
    feeds = text_inputs(model, TEXTS[1])
    image, depth, text = _inputs(1, 64, 96, seed=1)
    text = tokenize(TEXTS[1])
    feeds.update(image=image.numpy(), depth=depth.numpy())
    session = onnxruntime.InferenceSession(str(report.path), providers=["CPUExecutionProvider"])
    actual = dict(zip(OUTPUT_NAMES, session.run(list(OUTPUT_NAMES), feeds)))
    with torch.inference_mode():
        expected = model(image, depth, text)
    for name in OUTPUT_NAMES:
        np.testing.assert_allclose(actual[name], expected[name].numpy(), atol=1e-4, rtol=1e-4, err_msg=name)


def test_export_command(model, tmp_path, monkeypatch, capsys):
    checkpoint = save_checkpoint(model, ModelParams.small(), tmp_path / "small.ckpt")
    out = tmp_path / "out" / "frame.onnx"
    assert cli_main(["export", "--onnx", str(out), "--checkpoint", str(checkpoint), "--input-size", "96x64",
                     "--text", TEXTS[0]]) == 0
    assert out.is_file() and "onnxruntime matches" in capsys.readouterr().out
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape == [1, 3, 64, 96]
    feeds = dict(np.load(out.with_suffix(".text.npz")))
    assert set(feeds) == {item.name for item in session.get_inputs()} - {"image", "depth"}
    monkeypatch.setattr(checkpoint_module, "DEFAULT_CHECKPOINT", Path(tmp_path / "missing.ckpt"))
    assert cli_main(["export", "--onnx", str(out)]) == 2
    assert "missing.ckpt" in capsys.readouterr().err
