"""int8 on ONNX Runtime: the exported graph quantised (QDQ) on calibration frames through the Predictor, the
heads left in fp32, cached like every engine and keyed on the calibration set."""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from segaff_core.config import ModelParams
from segaff_core.inference import Predictor
from segaff_core.model import SegAffordanceModel, build_model
from segaff_core.runtimes import BuildRequest, EngineCache
from segaff_core.runtimes.calibration import Calibration
from segaff_core.runtimes.onnxruntime_int8 import LAST_CONVOLUTIONS_PREFIX
from segaff_core.runtimes.onnxruntime_runtime import INT8_FILE, OnnxRuntimeBackend
from segaff_core.synth import render_scene

pytestmark = pytest.mark.skipif(importlib.util.find_spec("onnxruntime") is None, reason="needs onnxruntime")
SIZE = (64, 64)


@pytest.fixture(scope="module")
def small_model() -> SegAffordanceModel:
    torch.manual_seed(1)
    return build_model(ModelParams.small()).eval()


@pytest.fixture(scope="module")
def ort_int8(small_model, tmp_path_factory) -> Predictor:
    return Predictor(small_model, SIZE, device="cpu", backend="onnxruntime", precision="int8",
                     calibration=Calibration(frames=8), cache_dir=tmp_path_factory.mktemp("ort-int8"))


def _downstream(graph, start: list) -> list:
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    seen, frontier = {node.name for node in start}, list(start)
    while frontier:
        for output in frontier.pop().output:
            for consumer in consumers.get(output, []):
                if consumer.name not in seen:
                    seen.add(consumer.name)
                    frontier.append(consumer)
    return [node for node in graph.node if node.name in seen]


def test_onnxruntime_int8_builds_through_the_predictor_and_leaves_the_heads_in_fp32(ort_int8):
    import onnx

    assert ort_int8.backend == "onnxruntime" and ort_int8.precision == "int8"
    engine = ort_int8.runtime.engine
    assert not engine.from_cache and ", int8, " in ort_int8.runtime.description
    assert engine.record["calibration"]["frames_read"] == 8 and engine.record["quantization_s"] > 0
    assert "verification" in engine.record  # checked against PyTorch fp32 once, kept with the engine
    graph = onnx.load(str(engine.path / INT8_FILE)).graph
    assert sum(node.op_type == "QuantizeLinear" for node in graph.node) > 20  # backbone, neck, decoder
    last = [node for node in graph.node if node.op_type == "Conv" and node.name.startswith(LAST_CONVOLUTIONS_PREFIX)]
    assert last, "the projector's last convolutions are missing from the graph"
    dequantized = {output for node in graph.node if node.op_type == "DequantizeLinear" for output in node.output}
    assert not any(node.input[1] in dequantized for node in last)  # the text kernels stay fp32
    after = _downstream(graph, last)
    assert any(node.op_type == "Softmax" for node in after)  # the point head's soft-argmax
    assert not [node.name for node in after if node.op_type in ("QuantizeLinear", "DequantizeLinear")]
    sample = render_scene(0, (120, 160))
    prediction = ort_int8(sample.rgb, sample.depth_m, sample.parts[0].descriptions[0], sample.K)
    assert prediction.mask.shape == (120, 160) and np.all(np.isfinite(prediction.axis))


def test_a_second_onnxruntime_int8_build_is_a_cache_hit(small_model, ort_int8):
    again = Predictor(small_model, SIZE, device="cpu", backend="onnxruntime", precision="int8",
                      calibration=Calibration(frames=8), cache_dir=ort_int8.runtime.engine.path.parent)
    assert again.runtime.engine.from_cache and again.runtime.engine.path == ort_int8.runtime.engine.path


def test_the_onnxruntime_cache_key_has_the_calibration_set_for_int8_only(small_model, tmp_path):
    cache = EngineCache(tmp_path)

    def key(precision: str, calibration: Calibration) -> dict:
        request = BuildRequest(model=small_model, input_size=SIZE, device=torch.device("cpu"), precision=precision,
                               cache=cache, calibration=calibration)
        return OnnxRuntimeBackend().cache_key(request)

    assert key("int8", Calibration(frames=8)) == key("int8", Calibration(frames=8))
    assert key("int8", Calibration(frames=8)) != key("int8", Calibration(frames=9))
    assert key("int8", Calibration(frames=8)) != key("int8", Calibration(frames=8, seed=3))
    assert key("fp32", Calibration(frames=8)) == key("fp32", Calibration())
    assert key("int8", Calibration(frames=8)) != key("fp32", Calibration(frames=8))


def test_onnxruntime_refuses_int8_off_the_cpu_and_the_other_reduced_precisions(monkeypatch):
    import onnxruntime

    backend = OnnxRuntimeBackend()
    assert backend.unavailable_reason(torch.device("cpu"), "int8") is None
    assert backend.unavailable_reason(torch.device("cpu"), "bf16").endswith("not bf16")
    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: providers)
    assert backend.unavailable_reason(torch.device("cuda"), "int8") == "int8 runs on the CPU only here"


def test_auto_int8_tries_onnxruntime_where_openvino_cannot(small_model, ort_int8, monkeypatch):
    """Without NNCF, ``auto`` goes on to ONNX Runtime and takes it when it is within the int8 tolerance (random
    weights give a flat point map, whose peak may move far: then it says so)."""
    from segaff_core.runtimes import BackendUnavailableError

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: None if name == "nncf"
                        else real_find_spec(name, *args))
    passed = ort_int8.runtime.engine.record["verification"]["passed"]
    try:
        predictor = Predictor(small_model, SIZE, device="cpu", backend="auto", precision="int8",
                              calibration=Calibration(frames=8), cache_dir=ort_int8.runtime.engine.path.parent)
    except BackendUnavailableError as error:
        assert not passed and "openvino: int8 needs nncf" in str(error), error
        assert "onnxruntime: outside the int8 tolerance" in str(error), error
    else:
        assert passed and predictor.backend == "onnxruntime" and predictor.runtime.engine.from_cache
        assert "skipped openvino: int8 needs nncf" in predictor.backend_reason, predictor.backend_reason
