"""CUDA paths: the same results as the CPU, autocast precisions, channels_last, torch.compile, the
runtimes on CUDA (TensorRT fp32/fp16/bf16 with its engine cache, ONNX Runtime's CUDA provider, skipped with
the reason where not installed), the autocast ONNX export, and a mixed-precision training step. Skipped
(with the reason) on a machine without a CUDA device."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import importlib.util

import lightning as L
import numpy as np
import pytest
import torch

from segaff_core.config import ModelParams
from segaff_core.data import SF3DDataModule
from segaff_core import export
from segaff_core.inference import Predictor
from segaff_core.runtimes import BACKENDS, verification
from segaff_core.lightning_module import SegAffordanceModule
from segaff_core.model import SegAffordanceModel, build_model

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")

INSTRUCTION = "open the top drawer"
SIZE = (128, 160)  # network input (height, width)


def _frame(height: int = 240, width: int = 320) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A cabinet front (a lighter rectangle with a dark handle) on a wall, depth stepping out at the cabinet."""
    rgb = np.full((height, width, 3), 90, dtype=np.uint8)
    depth_m = np.full((height, width), 2.5, dtype=np.float32)
    top, bottom, left, right = height // 4, 3 * height // 4, width // 3, 2 * width // 3
    rgb[top:bottom, left:right] = (200, 170, 120)
    depth_m[top:bottom, left:right] = 1.6
    rgb[top + 10:top + 16, left + 20:right - 20] = (30, 30, 30)
    depth_m[:8, :8] = 0.0  # a hole
    K = np.array([[300.0, 0.0, (width - 1) / 2], [0.0, 300.0, (height - 1) / 2], [0.0, 0.0, 1.0]])
    return rgb, depth_m, K


@pytest.fixture(scope="module")
def model() -> SegAffordanceModel:
    torch.manual_seed(0)
    return build_model(ModelParams.small()).eval()


def _network_outputs(predictor: Predictor) -> dict[str, torch.Tensor]:
    """The per-frame network's outputs for the test frame, on the CPU in fp32."""
    rgb, depth_m, _ = _frame()
    image, depth = predictor._preprocess(rgb, depth_m)
    text, _ = predictor._text_conditioning(INSTRUCTION)
    outputs = predictor._run_network(image, depth, text)
    return {key: value.float().cpu() for key, value in outputs.items()}


def _max_probability_gap(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((torch.sigmoid(a) - torch.sigmoid(b)).abs().max())


def test_cuda_fp32_matches_the_cpu(model: SegAffordanceModel) -> None:
    cpu = _network_outputs(Predictor(model, input_size=SIZE, device="cpu", backend="torch"))
    cuda = _network_outputs(Predictor(model, input_size=SIZE, device="cuda", backend="torch"))
    for key, expected in cpu.items():
        torch.testing.assert_close(cuda[key], expected, atol=2e-3, rtol=2e-3, msg=key)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_autocast_precisions_stay_close_to_fp32(model: SegAffordanceModel, precision: str) -> None:
    fp32 = _network_outputs(Predictor(model, input_size=SIZE, device="cuda", backend="torch"))
    low = _network_outputs(Predictor(model, input_size=SIZE, device="cuda", backend="torch", precision=precision))
    assert all(torch.isfinite(value).all() for value in low.values()), precision
    assert _max_probability_gap(low["mask_logits"], fp32["mask_logits"]) < 0.05
    assert float((low["point_xy"] - fp32["point_xy"]).abs().max()) < 0.02
    cosine = torch.nn.functional.cosine_similarity(low["axis"], fp32["axis"], dim=-1)
    assert float(cosine.min()) > 0.99


@pytest.mark.parametrize("option", ["channels_last", "compile", "reduce-overhead"])
def test_speed_options_match_the_plain_cuda_path(model: SegAffordanceModel, option: str) -> None:
    plain = _network_outputs(Predictor(model, input_size=SIZE, device="cuda", backend="torch"))
    options = {"compile": True, "compile_mode": option} if option == "reduce-overhead" else {option: True}
    fast = _network_outputs(Predictor(model, input_size=SIZE, device="cuda", backend="torch", **options))
    for key, expected in plain.items():
        torch.testing.assert_close(fast[key], expected, atol=2e-3, rtol=2e-3, msg=f"{option}: {key}")


def test_predictor_end_to_end_on_cuda_equals_the_cpu(model: SegAffordanceModel) -> None:
    rgb, depth_m, K = _frame()
    results = {}
    for device in ("cpu", "cuda"):
        predictor = Predictor(model, input_size=SIZE, device=device, backend="torch")
        predictor.warmup(runs=1)
        results[device] = predictor(rgb, depth_m, INSTRUCTION, K)
        assert predictor(rgb, depth_m, INSTRUCTION, K).timings["text"] == 0.0  # the cached text side
    cpu, cuda = results["cpu"], results["cuda"]
    assert cuda.mask.shape == rgb.shape[:2]
    union = np.logical_or(cpu.mask, cuda.mask).sum()
    assert union == 0 or np.logical_and(cpu.mask, cuda.mask).sum() / union > 0.99
    assert np.hypot(*np.subtract(cpu.point_px, cuda.point_px)) < 1.0
    assert float(np.dot(cpu.axis, cuda.axis)) > 0.999
    assert cpu.motion_type == cuda.motion_type


def _cuda_backend_or_skip(name: str, precision: str = "fp32") -> None:
    reason = BACKENDS[name].unavailable_reason(torch.device("cuda"), precision)
    if reason is not None:
        pytest.skip(f"{name}: {reason}")


def _rendered_predictions(predictor: Predictor, seeds: range = range(3)) -> list:
    from segaff_core.synth import render_scene

    results = []
    for seed in seeds:
        sample = render_scene(seed, (240, 320))
        results.append(predictor(sample.rgb, sample.depth_m, sample.parts[0].descriptions[0], sample.K))
    return results


def _worst(actual: list, expected: list) -> tuple[float, float, float, bool]:
    """Worst mask IoU, axis angle (deg), point distance (px) and whether every motion type agrees."""
    ious, angles, points = [], [], []
    for a, e in zip(actual, expected):
        union = np.logical_or(a.mask, e.mask).sum()
        ious.append(np.logical_and(a.mask, e.mask).sum() / union if union else 1.0)
        angles.append(np.degrees(np.arccos(np.clip(np.dot(a.axis, e.axis), -1.0, 1.0))))
        points.append(np.hypot(*np.subtract(a.point_px, e.point_px)))
    return min(ious), max(angles), max(points), all(a.motion_type == e.motion_type for a, e in zip(actual, expected))


@pytest.fixture(scope="module")
def shipped_cuda_reference() -> list:
    from segaff_core.checkpoint import DEFAULT_CHECKPOINT

    if not DEFAULT_CHECKPOINT.is_file():
        pytest.skip(f"the shipped checkpoint {DEFAULT_CHECKPOINT} is not there")
    return _rendered_predictions(Predictor.from_checkpoint(device="cuda", backend="torch"))


@pytest.mark.parametrize(("backend", "precision"), [
    ("tensorrt", "fp32"), ("tensorrt", "fp16"), ("tensorrt", "bf16"), ("onnxruntime", "fp32"),
])
def test_cuda_runtime_matches_pytorch_fp32(backend: str, precision: str, shipped_cuda_reference: list,
                                           tmp_path: Path) -> None:
    _cuda_backend_or_skip(backend, precision)
    predictor = Predictor.from_checkpoint(device="cuda", backend=backend, precision=precision, cache_dir=tmp_path)
    assert predictor.backend == backend
    iou, axis_deg, point_px, same_motion = _worst(_rendered_predictions(predictor), shipped_cuda_reference)
    tolerance = verification.TOLERANCES[precision]
    assert iou >= tolerance.mask_iou and axis_deg <= tolerance.axis_deg and point_px <= tolerance.point_px
    assert same_motion


def test_tensorrt_engine_comes_from_the_cache(model: SegAffordanceModel, tmp_path: Path, monkeypatch) -> None:
    _cuda_backend_or_skip("tensorrt", "fp16")
    first = Predictor(model, input_size=SIZE, device="cuda", backend="tensorrt", precision="fp16", cache_dir=tmp_path)
    assert not first.runtime.engine.from_cache

    def no_export(*args, **kwargs):
        raise AssertionError("a cached engine must not export the graph again")

    monkeypatch.setattr(export, "export_onnx", no_export)
    second = Predictor(model, input_size=SIZE, device="cuda", backend="tensorrt", precision="fp16", cache_dir=tmp_path)
    assert second.runtime.engine.from_cache
    torch.testing.assert_close(_network_outputs(second), _network_outputs(first))


def test_auto_on_cuda_picks_a_verified_runtime(model: SegAffordanceModel, tmp_path: Path) -> None:
    predictor = Predictor(model, input_size=SIZE, device="cuda", cache_dir=tmp_path)
    assert predictor.backend_reason.startswith(f"auto chose {predictor.backend} for cuda fp32")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_autocast_export_carries_the_reduced_precision_casts(model: SegAffordanceModel, dtype: torch.dtype,
                                                             tmp_path: Path) -> None:
    if importlib.util.find_spec("onnx") is None:
        pytest.skip("onnx is not installed")
    import onnx

    export.export_onnx(model, tmp_path / "frame.onnx", SIZE, verify=False, autocast_dtype=dtype)
    graph = onnx.load(str(tmp_path / "frame.onnx")).graph
    low = onnx.TensorProto.FLOAT16 if dtype == torch.float16 else onnx.TensorProto.BFLOAT16
    casts = [node for node in graph.node if node.op_type == "Cast"
             and any(attribute.name == "to" and attribute.i == low for attribute in node.attribute)]
    assert casts, f"no Cast to {dtype} in the graph"
    assert all(value.type.tensor_type.elem_type == onnx.TensorProto.FLOAT for value in graph.input)


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
def test_a_training_step_on_cuda_updates_the_weights(
    sf3d_make_root: Callable[..., Path], precision: str
) -> None:
    root = sf3d_make_root(num=6)
    datamodule = SF3DDataModule(str(root), input_size=(64, 64), batch_size=2, num_workers=0, pin_memory=True)
    torch.manual_seed(0)
    module = SegAffordanceModule(model_params=ModelParams.small())
    before = {name: value.detach().clone() for name, value in module.model.named_parameters()}
    trainer = L.Trainer(
        accelerator="cuda", devices=1, precision=precision, max_steps=2, limit_val_batches=0, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
    )
    trainer.fit(module, datamodule=datamodule)
    assert trainer.global_step == 2 and module.nonfinite_steps == 0
    assert torch.isfinite(trainer.callback_metrics["train/loss"])
    changed = [name for name, value in module.model.named_parameters() if not torch.equal(value.cpu(), before[name])]
    assert len(changed) > len(before) // 2, f"only {len(changed)} of {len(before)} parameters changed"
