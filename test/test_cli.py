"""``segaff`` CLI: predict on a rendered RGB-D pair equals the Predictor, synth writes a data set, and
user errors end with exit code 2 and one line on stderr."""
import json
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml

from segaff_core.checkpoint import save_checkpoint
from segaff_core.cli import main
from segaff_core.config import ModelParams
from segaff_core.inference import Predictor
from segaff_core.model import build_model
from segaff_core.synth import render_scene

HEIGHT, WIDTH = 96, 128
INPUT_SIZE = "64x64"


@pytest.fixture(scope="module", autouse=True)
def _private_cache_home(tmp_path_factory) -> Iterator[None]:
    """Engines built by the default (auto) backend go to a test directory, never to the user's ~/.cache."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.getbasetemp() / "xdg-cache"))
        yield


@pytest.fixture(scope="module")
def checkpoint_path(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    params = ModelParams.small()
    return save_checkpoint(build_model(params), params, tmp_path_factory.mktemp("ckpt") / "small.ckpt")


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """A rendered view written as rgb.png, depth.png (uint16 mm), depth.npy (m) and camera.yaml."""
    sample = render_scene(3, (HEIGHT, WIDTH))
    folder = tmp_path_factory.mktemp("scene")
    depth_mm = np.round(sample.depth_m * 1000.0).astype(np.uint16)
    cv2.imwrite(str(folder / "rgb.png"), cv2.cvtColor(sample.rgb, cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(folder / "depth.png"), depth_mm)
    np.save(folder / "depth.npy", depth_mm.astype(np.float32) / 1000.0)
    calibration = {"image_width": WIDTH, "image_height": HEIGHT, "camera_matrix": {"rows": 3, "cols": 3}}
    calibration["camera_matrix"]["data"] = sample.K.ravel().tolist()
    (folder / "camera.yaml").write_text(yaml.safe_dump(calibration))
    K = sample.K
    intrinsics = ",".join(repr(float(value)) for value in (K[0, 0], K[1, 1], K[0, 2], K[1, 2]))
    return {
        "folder": folder,
        "rgb": sample.rgb,
        "depth_m": depth_mm.astype(np.float32) / 1000.0,
        "K": K,
        "intrinsics": intrinsics,
        "text": sample.parts[0].descriptions[0],
    }


def predict_args(scene, checkpoint_path, out: Path, **overrides) -> list[str]:
    options = {
        "--rgb": str(scene["folder"] / "rgb.png"),
        "--depth": str(scene["folder"] / "depth.png"),
        "--text": scene["text"],
        "--intrinsics": scene["intrinsics"],
        "--checkpoint": str(checkpoint_path),
        "--out": str(out),
        "--device": "cpu",
        "--input-size": INPUT_SIZE,
    }
    options.update(overrides)
    args = ["predict"]
    for name, value in options.items():
        if value is not None:
            args += [name, value]
    return args


def read_result(out: Path) -> dict:
    result = json.loads((out / "result.json").read_text())
    del result["timings"]
    return result


def test_predict_writes_the_predictors_result_and_an_overlay(scene, checkpoint_path, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(predict_args(scene, checkpoint_path, out)) == 0
    predictor = Predictor.from_checkpoint(checkpoint_path, device="cpu", input_size=(64, 64))
    expected = predictor(scene["rgb"], scene["depth_m"], scene["text"], scene["K"]).to_dict()
    assert set(expected["timings"]) == set(json.loads((out / "result.json").read_text())["timings"])
    del expected["timings"]
    assert read_result(out) == {"instruction": scene["text"], **expected}
    overlay = cv2.imread(str(out / "overlay.png"))
    assert overlay.shape == (HEIGHT, WIDTH, 3)
    stdout = capsys.readouterr().out.strip().splitlines()
    assert len(stdout) == 1 and expected["motion_type"] in stdout[0]


@pytest.mark.parametrize("backend", ["torch", "onnxruntime", "openvino"])
def test_predict_backend_and_cache_dir_reach_the_predictor(backend, scene, checkpoint_path, tmp_path):
    out, cache = tmp_path / "out", tmp_path / "engines"
    args = predict_args(scene, checkpoint_path, out, **{"--backend": backend, "--cache-dir": str(cache)})
    assert main(args) == 0
    predictor = Predictor.from_checkpoint(checkpoint_path, device="cpu", input_size=(64, 64), backend="torch")
    expected = predictor(scene["rgb"], scene["depth_m"], scene["text"], scene["K"])
    result = read_result(out)
    assert result["motion_type"] == expected.motion_type
    np.testing.assert_allclose(result["point_px"], expected.point_px, atol=1e-2)
    mask = np.asarray(result["mask"], dtype=bool)
    assert np.logical_xor(mask, expected.mask).sum() <= 0.02 * max(1, expected.mask.sum())
    assert (cache.is_dir() and any(cache.iterdir())) == (backend != "torch")  # only converted runtimes write


def test_predict_with_a_backend_that_cannot_run_is_a_user_error(scene, checkpoint_path, tmp_path, capsys):
    args = predict_args(scene, checkpoint_path, tmp_path / "out", **{"--backend": "tensorrt"})
    assert main(args) == 2
    assert "'tensorrt' is unavailable: TensorRT needs a CUDA device" in capsys.readouterr().err
    assert main(predict_args(scene, checkpoint_path, tmp_path / "out", **{"--backend": "tflite"})) == 2
    assert "backend must be one of" in capsys.readouterr().err


def test_build_engine_builds_then_finds_the_engine(checkpoint_path, tmp_path, capsys):
    args = ["build-engine", "--checkpoint", str(checkpoint_path), "--backend", "onnxruntime", "--size", "96x64",
            "--device", "cpu", "--cache-dir", str(tmp_path)]
    assert main(args) == 0
    built = capsys.readouterr().out
    assert "onnxruntime fp32 96x64: engine built in" in built and str(tmp_path) in built
    assert main(args) == 0
    assert "engine found in the cache in" in capsys.readouterr().out
    assert main([*args[:3], "--backend", "torch", "--device", "cpu"]) == 0
    assert "needs no engine" in capsys.readouterr().out


def test_predict_defaults_to_the_shipped_checkpoint_at_its_training_size(scene, tmp_path):
    out = tmp_path / "out"
    assert main(predict_args(scene, None, out, **{"--checkpoint": None, "--input-size": None})) == 0
    predictor = Predictor.from_checkpoint(device="cpu")  # the shipped one, at the size it was trained at
    expected = predictor(scene["rgb"], scene["depth_m"], scene["text"], scene["K"]).to_dict()
    del expected["timings"]
    assert read_result(out) == {"instruction": scene["text"], **expected}


def test_predict_reads_jpeg_rgb(scene, checkpoint_path, tmp_path):
    jpeg = tmp_path / "rgb.jpg"
    assert cv2.imwrite(str(jpeg), cv2.cvtColor(scene["rgb"], cv2.COLOR_RGB2BGR))
    out = tmp_path / "out"
    assert main(predict_args(scene, checkpoint_path, out, **{"--rgb": str(jpeg)})) == 0
    decoded = cv2.cvtColor(cv2.imread(str(jpeg)), cv2.COLOR_BGR2RGB)
    predictor = Predictor.from_checkpoint(checkpoint_path, device="cpu", input_size=(64, 64))
    expected = predictor(decoded, scene["depth_m"], scene["text"], scene["K"]).to_dict()
    del expected["timings"]
    assert read_result(out) == {"instruction": scene["text"], **expected}


def test_camera_info_and_npy_depth_give_the_same_result(scene, checkpoint_path, tmp_path):
    reference, other = tmp_path / "reference", tmp_path / "other"
    assert main(predict_args(scene, checkpoint_path, reference)) == 0
    camera_info = str(scene["folder"] / "camera.yaml")
    depth_npy = str(scene["folder"] / "depth.npy")
    args = predict_args(scene, checkpoint_path, other, **{"--intrinsics": None, "--camera-info": camera_info})
    assert main(args + ["--depth", depth_npy]) == 0
    assert read_result(other) == read_result(reference)


def test_synth_writes_a_data_set(tmp_path, capsys):
    out = tmp_path / "sf3d"
    assert main(["synth", "--format", "sf3d", "--out", str(out), "--num", "2", "--seed", "1", "--size", "64x48"]) == 0
    assert (out / "data.lmdb").exists() and len(list((out / "depth").iterdir())) == 2
    assert "wrote 2 images" in capsys.readouterr().out
    assert main(["synth", "--format", "sf3d", "--out", str(out), "--num", "1"]) == 2  # not empty
    assert "not empty" in capsys.readouterr().err


def _write(path: Path, data) -> str:
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        cv2.imwrite(str(path), data)
    return str(path)


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing rgb", "does not exist"),
        ("rgb not an image", "cannot decode the RGB image"),
        ("8-bit depth", "16-bit"),
        ("depth size", "is not an integer scale"),
        ("intrinsics count", "4 comma-separated"),
        ("intrinsics zero focal", "positive focal"),
        ("intrinsics nan", "finite"),
        ("intrinsics text", "not a number"),
        ("camera info size", "is for 64x48 images"),
        ("missing checkpoint", "nowhere.ckpt"),
        ("missing option", "--text"),
    ],
)
def test_user_errors_are_one_line_with_exit_code_2(scene, checkpoint_path, tmp_path, capsys, case, message):
    calibration = {"image_width": 64, "image_height": 48, "camera_matrix": {"data": [99, 0, 32, 0, 99, 24, 0, 0, 1]}}
    camera_64x48 = yaml.safe_dump(calibration).encode()
    overrides = {
        "missing rgb": {"--rgb": str(tmp_path / "no_such.png")},
        "rgb not an image": {"--rgb": _write(tmp_path / "text.png", b"hello")},
        "8-bit depth": {"--depth": _write(tmp_path / "d8.png", np.ones((HEIGHT, WIDTH), np.uint8))},
        "depth size": {"--depth": _write(tmp_path / "d.png", np.ones((HEIGHT // 2, WIDTH), np.uint16))},
        "intrinsics count": {"--intrinsics": "100,100,64"},
        "intrinsics zero focal": {"--intrinsics": "0,100,64,48"},
        "intrinsics nan": {"--intrinsics": "nan,100,64,48"},
        "intrinsics text": {"--intrinsics": "a,b,c,d"},
        "camera info size": {"--intrinsics": None, "--camera-info": _write(tmp_path / "camera.yaml", camera_64x48)},
        "missing checkpoint": {"--checkpoint": str(tmp_path / "nowhere.ckpt")},
        "missing option": {"--text": None},
    }[case]
    try:
        code = main(predict_args(scene, checkpoint_path, tmp_path / "out", **overrides))
    except SystemExit as exit_:  # argparse's own errors
        code = exit_.code
    assert code == 2
    stderr = capsys.readouterr().err
    assert len(stderr.strip().splitlines()) == 1, stderr
    assert message in stderr and "Traceback" not in stderr
    assert not (tmp_path / "out" / "result.json").exists()


def test_slim_keeps_what_inference_needs_and_the_training_input_size(checkpoint_path, tmp_path, capsys):
    training = torch.load(checkpoint_path, weights_only=True)
    training["optimizer_states"] = [{"state": {0: {"exp_avg": torch.ones(1000)}}}]
    training["datamodule_hyper_parameters"] = {"input_size": [96, 64], "root": "data/x", "batch_size": 4}
    torch.save(training, tmp_path / "last.ckpt")

    assert main(["slim", "--checkpoint", str(tmp_path / "last.ckpt"), "--out", str(tmp_path / "ship.ckpt")]) == 0
    assert "ship.ckpt" in capsys.readouterr().out
    shipped = torch.load(tmp_path / "ship.ckpt", weights_only=True)
    assert "optimizer_states" not in shipped
    assert shipped["datamodule_hyper_parameters"] == {"input_size": [96, 64]}
    for key, value in training["state_dict"].items():
        assert torch.equal(shipped["state_dict"][key], value)
    assert Predictor.from_checkpoint(tmp_path / "ship.ckpt", device="cpu").input_size == (96, 64)
    assert Predictor.from_checkpoint(tmp_path / "ship.ckpt", device="cpu", input_size=(64, 64)).input_size == (64, 64)
