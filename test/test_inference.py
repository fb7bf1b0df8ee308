"""Predictor and checkpoint loading: shapes at full resolution, 3D lifting on a known plane, determinism,
text caching, depth at another resolution, input checks, and safe / clear checkpoint errors."""
import json
import logging
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from segaff_core import checkpoint as checkpoint_module
from segaff_core.checkpoint import CheckpointError, load_model, read_checkpoint, save_checkpoint
from segaff_core.config import ModelParams
from segaff_core.inference import (
    MOTION_TYPES,
    TEXT_CACHE_SIZE,
    AffordancePrediction,
    Predictor,
    check_depth_size,
    lift_point,
    prediction_from_outputs,
    resolve_device,
)
from segaff_core.geometry import robust_depth_at, trajectory_rotation
from segaff_core.metrics import trajectory_roughness
from segaff_core.motion import ROTATION_EXTENT_RAD, TRANSLATION_EXTENT_M, publish_motion, surface_consistent_axis
from segaff_core.runtimes import hardware
from point_maps import point_logits_at
from segaff_core.model import build_model

INPUT_SIZE = (64, 64)
HEIGHT, WIDTH = 96, 128
K = np.array([[100.0, 0.0, 63.5], [0.0, 100.0, 47.5], [0.0, 0.0, 1.0]])
# A plane n . X = d facing the camera (n . X < 0 in front of it), about 1 m away and tilted.
PLANE_NORMAL = np.array([0.2, -0.1, -1.0]) / np.linalg.norm([0.2, -0.1, -1.0])
PLANE_OFFSET = -1.0
TEXT = "open the top drawer"


@pytest.fixture(scope="module", autouse=True)
def _private_cache_home(tmp_path_factory) -> Iterator[None]:
    """Engines built by the default (auto) backend go to a test directory, never to the user's ~/.cache."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.getbasetemp() / "xdg-cache"))
        yield


def plane_depth(K: np.ndarray, height: int, width: int) -> np.ndarray:
    """Depth (metres) of the plane seen by a camera with intrinsics K."""
    cols, rows = np.meshgrid(np.arange(width), np.arange(height))
    rays = np.stack([(cols - K[0, 2]) / K[0, 0], (rows - K[1, 2]) / K[1, 1], np.ones_like(cols, float)], axis=-1)
    return (PLANE_OFFSET / (rays @ PLANE_NORMAL)).astype(np.float32)


@pytest.fixture(scope="module")
def checkpoint_path(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    params = ModelParams.small()
    return save_checkpoint(build_model(params), params, tmp_path_factory.mktemp("ckpt") / "small.ckpt")


@pytest.fixture(scope="module")
def predictor(checkpoint_path) -> Predictor:
    return Predictor.from_checkpoint(checkpoint_path, device="cpu", input_size=INPUT_SIZE)


@pytest.fixture(scope="module")
def rgb() -> np.ndarray:
    image = np.random.default_rng(0).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    image[30:70, 40:100] = (200, 120, 40)  # a "drawer front"
    return image


@pytest.fixture(scope="module")
def depth() -> np.ndarray:
    return plane_depth(K, HEIGHT, WIDTH)


@pytest.fixture(scope="module")
def prediction(predictor, rgb, depth) -> AffordancePrediction:
    return predictor(rgb, depth, TEXT, K)


def assert_same_prediction(a: AffordancePrediction, b: AffordancePrediction, approach_tolerance_deg: float = 0.0) -> None:
    """Equal predictions. With ``approach_tolerance_deg`` (the same network input, the depth at another
    resolution): the 2D outputs equal, the directions within that angle and the 3D points within 5 mm (the
    point, the surface and the hinge are read off the depth at its own resolution)."""
    np.testing.assert_array_equal(a.mask, b.mask)
    for name in ("mask_score", "point_px"):
        np.testing.assert_array_equal(np.asarray(getattr(a, name)), np.asarray(getattr(b, name)), err_msg=name)
    for name in ("motion_type", "motion_type_confidence", "valid_3d"):
        assert getattr(a, name) == getattr(b, name), name
    if not approach_tolerance_deg:
        for name in ("point_3d", "axis", "origin", "trajectory", "approach"):
            np.testing.assert_array_equal(np.asarray(getattr(a, name)), np.asarray(getattr(b, name)), err_msg=name)
        return
    for name in ("approach", "axis"):
        angle = np.degrees(np.arccos(np.clip(float(getattr(a, name) @ getattr(b, name)), -1.0, 1.0)))
        assert angle <= approach_tolerance_deg, f"{name} differs by {angle:.2f} deg"
    for name in ("point_3d", "origin", "trajectory"):
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), atol=5e-3, err_msg=name)


def test_outputs_at_full_resolution_with_unit_directions(prediction):
    assert prediction.mask.shape == (HEIGHT, WIDTH) and prediction.mask.dtype == bool
    u, v = prediction.point_px
    assert 0 <= u <= WIDTH - 1 and 0 <= v <= HEIGHT - 1
    assert prediction.valid_3d
    assert np.linalg.norm(prediction.axis) == pytest.approx(1.0)
    assert np.linalg.norm(prediction.approach) == pytest.approx(1.0)
    assert prediction.trajectory.shape == (20, 3)
    np.testing.assert_array_equal(prediction.trajectory[0], prediction.point_3d)
    assert prediction.motion_type in MOTION_TYPES
    assert 0.5 <= prediction.motion_type_confidence <= 1.0
    assert 0.0 <= prediction.mask_score <= 1.0
    assert set(prediction.timings) == {"preprocess", "text", "image", "postprocess", "total"}


def test_point_3d_is_the_robust_depth_back_projected(prediction, depth):
    u, v = prediction.point_px
    z = robust_depth_at(depth, u, v, prediction.mask if prediction.mask.any() else None)
    assert prediction.point_3d[2] == pytest.approx(z)
    reprojected = K @ prediction.point_3d
    np.testing.assert_allclose(reprojected[:2] / reprojected[2], prediction.point_px, atol=1e-6)


@pytest.mark.parametrize("scale", [1, 0.5, 2])
def test_lift_point_onto_a_plane_with_depth_at_any_integer_scale(scale):
    depth_height, depth_width = int(HEIGHT * scale), int(WIDTH * scale)
    K_depth = K.copy()
    K_depth[:2] *= scale
    K_depth[:2, 2] = (K[:2, 2] + 0.5) * scale - 0.5  # pixel centres stay aligned
    mask = np.zeros((HEIGHT, WIDTH), dtype=bool)
    mask[30:70, 40:100] = True
    point_3d, approach = lift_point(70.3, 50.6, mask, plane_depth(K_depth, depth_height, depth_width), K)
    assert float(PLANE_NORMAL @ point_3d) == pytest.approx(PLANE_OFFSET, abs=3e-3)
    reprojected = K @ point_3d
    np.testing.assert_allclose(reprojected[:2] / reprojected[2], (70.3, 50.6), atol=1e-9)
    np.testing.assert_allclose(approach, -PLANE_NORMAL, atol=2e-3)


def test_lift_point_falls_back_to_the_mask_depth_then_to_nan(depth):
    mask = np.zeros((HEIGHT, WIDTH), dtype=bool)
    mask[60:80, 90:120] = True
    point_3d, approach = lift_point(20.0, 20.0, mask, depth, K)  # far from the mask
    assert point_3d[2] == pytest.approx(float(np.median(depth[mask])))
    assert np.linalg.norm(approach) == pytest.approx(1.0)
    point_3d, approach = lift_point(20.0, 20.0, mask, np.zeros_like(depth), K)
    assert np.isnan(point_3d).all() and np.isnan(approach).all()


@pytest.mark.parametrize("motion_type", [0, 1])
def test_outputs_to_prediction(depth, motion_type):
    logits = torch.full((1, 1, HEIGHT // 4, WIDTH // 4), -5.0)
    logits[..., 5:20, 10:25] = 5.0  # rows 20-80, columns 40-100 at full resolution
    relative = torch.linspace(0, 1, 20)[:, None] * torch.tensor([0.0, 0.0, -0.2])
    outputs = {
        "mask_logits": logits,
        "point_xy": torch.tensor([[0.5, 0.5]]),  # the image centre
        "point_logits": point_logits_at((WIDTH - 1) / 2, (HEIGHT - 1) / 2, (HEIGHT, WIDTH)),
        "axis": torch.tensor([[0.0, 2.0, 0.0]]),
        "motion_type_logits": torch.tensor([[1.0, 0.0]]) if motion_type == 0 else torch.tensor([[0.0, 3.0]]),
        "origin_offset": torch.tensor([[0.3, 0.0, 0.0]]),
        "trajectory": relative[None],
    }
    result = prediction_from_outputs(outputs, (HEIGHT, WIDTH), depth, K, surface_axis=False)
    assert result.point_px == pytest.approx(((WIDTH - 1) / 2, (HEIGHT - 1) / 2), abs=0.05)
    outside = np.ones_like(result.mask)
    outside[18:82, 38:102] = False  # bilinear upsampling blurs the edge by a pixel or two
    assert result.mask[22:78, 42:98].all() and not result.mask[outside].any()
    assert 0.95 < result.mask_score < torch.sigmoid(torch.tensor(5.0)).item()  # the mean inside the mask
    assert result.motion_type == MOTION_TYPES[motion_type]
    expected_confidence = outputs["motion_type_logits"][0].softmax(dim=0)[motion_type].item()
    assert result.motion_type_confidence == pytest.approx(expected_confidence)
    expected_origin = result.point_3d + [0.3, 0.0, 0.0] if motion_type == 1 else result.point_3d
    np.testing.assert_allclose(result.origin, expected_origin)
    np.testing.assert_allclose(result.learned_trajectory, result.point_3d + relative.numpy(), atol=1e-7)
    # The published trajectory follows the published motion, starting at the point and opening the part
    # toward the camera (the approach is +z into the flat surface): a drawer pulled along its axis, a door
    # swung about the vertical hinge line through the origin.
    assert abs(result.axis @ [0.0, 1.0, 0.0]) == pytest.approx(1.0)  # the predicted axis, up to its sign
    np.testing.assert_allclose(result.trajectory[0], result.point_3d, atol=1e-12)
    if motion_type == 1:
        velocity = result.trajectory[1] - result.trajectory[0]
        assert velocity @ result.approach < 0, "the published path must leave the surface toward free space"
        radii = np.linalg.norm(np.cross(result.trajectory - result.origin, result.axis), axis=1)
        np.testing.assert_allclose(radii, 0.3, atol=1e-9)  # an arc about the axis line through the origin
        heights = (result.trajectory - result.origin) @ result.axis
        np.testing.assert_allclose(heights, heights[0], atol=1e-9)
        # the learned path's end, 0.2 m toward the camera, seen from the hinge 0.3 m aside: 34 deg, too little
        # for a door opening fully, so the typical right angle is published
        assert np.arctan2(0.2, 0.3) < ROTATION_EXTENT_RAD[0]
        assert result.opening_extent == pytest.approx(ROTATION_EXTENT_RAD[2])
    else:
        # the learned path does not move along the vertical axis: the typical pull is published, along the axis
        assert result.opening_extent == pytest.approx(TRANSLATION_EXTENT_M[2])
        np.testing.assert_allclose(result.trajectory[-1] - result.point_3d, TRANSLATION_EXTENT_M[2] * result.axis,
                                   atol=1e-12)
    # By default the axis agrees with the surface where it nearly does: the hinge lies in the surface's plane;
    # the vertical translation, 90 deg from the normal, is kept.
    default = prediction_from_outputs(outputs, (HEIGHT, WIDTH), depth, K)
    if motion_type == 1:
        assert abs(default.axis @ default.approach) < 1e-9
        assert abs(default.axis @ result.axis) > np.cos(np.radians(30.0))
    else:
        np.testing.assert_allclose(default.axis, result.axis)


def test_deterministic(predictor, rgb, depth, prediction):
    assert_same_prediction(predictor(rgb, depth, TEXT, K), prediction)


def test_cached_text_skips_the_encoder_and_changes_nothing(checkpoint_path, rgb, depth, monkeypatch):
    predictor = Predictor.from_checkpoint(checkpoint_path, device="cpu", input_size=INPUT_SIZE)
    encoded: list[int] = []
    encode_text = predictor.model.encode_text
    monkeypatch.setattr(predictor.model, "encode_text", lambda tokens: encoded.append(1) or encode_text(tokens))
    first = predictor(rgb, depth, TEXT, K)
    second = predictor(rgb, depth, TEXT, K)
    assert len(encoded) == 1
    assert first.timings["text"] > 0 and second.timings["text"] == 0
    assert_same_prediction(first, second)

    predictor.set_instruction("pull the fridge door")
    assert len(encoded) == 2
    assert predictor(rgb, depth, "pull the fridge door", K).timings["text"] == 0
    for index in range(TEXT_CACHE_SIZE):  # push TEXT out of the cache
        predictor.set_instruction(f"instruction {index}")
    count = len(encoded)
    assert_same_prediction(predictor(rgb, depth, TEXT, K), first)
    assert len(encoded) == count + 1


@pytest.mark.parametrize("scale", [0.5, 2])
def test_depth_at_another_integer_scale(predictor, rgb, depth, prediction, scale):
    depth_scaled = cv2.resize(depth, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST_EXACT)
    result = predictor(rgb, depth_scaled, TEXT, K)
    assert result.mask.shape == (HEIGHT, WIDTH)
    assert result.valid_3d
    if scale == 2:  # nearest upsampling then resizing to the input size gives the same network input; the
        # approach is fitted to the depth at its own resolution (4x the points), so it may move a little
        assert_same_prediction(result, prediction, approach_tolerance_deg=2.0)


def test_no_valid_depth_gives_nan_3d_and_json_nulls(predictor, rgb):
    depth = np.full((HEIGHT, WIDTH), np.nan, dtype=np.float32)
    depth[:10] = 0.0
    depth[10:20] = np.inf
    depth[20:30] = 50.0  # beyond max_depth_m
    result = predictor(rgb, depth, TEXT, K)
    assert not result.valid_3d
    for name in ("point_3d", "approach", "origin", "trajectory"):
        assert np.isnan(getattr(result, name)).all(), name
    assert np.linalg.norm(result.axis) == pytest.approx(1.0)
    encoded = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert encoded["point_3d"] == [None, None, None] and encoded["valid_3d"] is False


def test_to_dict_is_json_ready(prediction):
    encoded = json.loads(json.dumps(prediction.to_dict(), allow_nan=False))
    np.testing.assert_array_equal(np.array(encoded["mask"]), prediction.mask)
    np.testing.assert_array_equal(encoded["trajectory"], prediction.trajectory)
    assert encoded["motion_type"] == prediction.motion_type and encoded["point_px"] == list(prediction.point_px)
    without_mask = prediction.to_dict(include_mask=False)
    assert "mask" not in without_mask and without_mask == {k: v for k, v in encoded.items() if k != "mask"}


BAD_K = [
    np.eye(2),  # shape
    K * np.nan,  # not finite
    np.diag([0.0, 100.0, 1.0]),  # fx = 0
    np.diag([100.0, -1.0, 1.0]),  # fy < 0
    K + [[0, 0, 0], [0, 0, 0], [0, 1, 0]],  # last row
]


@pytest.mark.parametrize("bad_K", BAD_K)
def test_bad_intrinsics_raise(predictor, rgb, depth, bad_K):
    with pytest.raises(ValueError, match="intrinsics"):
        predictor(rgb, depth, TEXT, bad_K)


@pytest.mark.parametrize(
    "rgb_shape, rgb_dtype, depth_shape, depth_dtype, match",
    [
        ((HEIGHT, WIDTH), np.uint8, (HEIGHT, WIDTH), np.float32, "rgb"),
        ((HEIGHT, WIDTH, 3), np.float32, (HEIGHT, WIDTH), np.float32, "rgb"),
        ((HEIGHT, WIDTH, 3), np.uint8, (HEIGHT, WIDTH), np.uint16, "millimetres"),
        ((HEIGHT, WIDTH, 3), np.uint8, (HEIGHT, WIDTH, 1), np.float32, "depth"),
        ((HEIGHT, WIDTH, 3), np.uint8, (HEIGHT // 2, WIDTH), np.float32, "integer scale"),
        ((HEIGHT, WIDTH, 3), np.uint8, (HEIGHT // 3 * 2, WIDTH // 3 * 2), np.float32, "integer scale"),
    ],
)
def test_bad_shapes_raise(predictor, rgb_shape, rgb_dtype, depth_shape, depth_dtype, match):
    with pytest.raises(ValueError, match=match):
        predictor(np.zeros(rgb_shape, rgb_dtype), np.ones(depth_shape, depth_dtype), TEXT, K)


def test_empty_instruction_raises(predictor, rgb, depth):
    with pytest.raises(ValueError, match="instruction"):
        predictor(rgb, depth, "  ", K)


def test_check_depth_size_accepts_integer_scales_only():
    for depth_hw in [(480, 640), (240, 320), (120, 160), (960, 1280)]:
        check_depth_size((480, 640), depth_hw)
    for depth_hw in [(480, 320), (360, 480), (0, 0)]:
        with pytest.raises(ValueError):
            check_depth_size((480, 640), depth_hw)


def test_cuda_asked_without_cuda_falls_back_to_cpu(monkeypatch, caplog):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with caplog.at_level(logging.WARNING):
        assert resolve_device("cuda").type == "cpu"
    assert "CUDA is not available" in caplog.text
    assert resolve_device("auto").type == "cpu"
    with pytest.raises(ValueError, match="device"):
        resolve_device("tpu9")


def test_bf16_on_cpu_and_fp16_fallback(checkpoint_path, rgb, depth, caplog):
    def bf16() -> Predictor:
        return Predictor.from_checkpoint(checkpoint_path, device="cpu", input_size=INPUT_SIZE, precision="bf16")

    if hardware.cpu_has_native_bf16():
        result = bf16()(rgb, depth, TEXT, K)
        assert result.mask.shape == (HEIGHT, WIDTH) and np.linalg.norm(result.axis) == pytest.approx(1.0)
    else:  # emulated bf16 is slower than fp32: refused, naming the CPU feature it lacks
        with pytest.raises(ValueError, match="avx512_bf16"):
            bf16()
    with caplog.at_level(logging.WARNING):
        fp16 = Predictor.from_checkpoint(checkpoint_path, device="cpu", input_size=INPUT_SIZE, precision="fp16")
    assert fp16.precision == "fp32" and "fp16" in caplog.text


def test_constructor_checks(predictor):
    with pytest.raises(ValueError, match="multiples of 32"):
        Predictor(predictor.model, input_size=(100, 64), device="cpu")
    with pytest.raises(ValueError, match="precision"):
        Predictor(predictor.model, device="cpu", precision="int4")


# --- checkpoints ---------------------------------------------------------------------------------------


def test_checkpoint_round_trip(checkpoint_path):
    torch.manual_seed(0)
    reference = build_model(ModelParams.small())
    model, params = load_model(checkpoint_path)
    assert params == ModelParams.small()
    assert not model.training
    for key, value in reference.state_dict().items():
        torch.testing.assert_close(model.state_dict()[key], value, rtol=0, atol=0)


def test_lightning_module_checkpoint_loads_weights_only(tmp_path):
    """The layout Lightning writes for SegAffordanceModule (hparams as Lightning dumps them, plus optimizer,
    scheduler and callback states) loads with weights-only loading."""
    from segaff_core.lightning_module import SegAffordanceModule

    torch.manual_seed(1)
    module = SegAffordanceModule(model_params=ModelParams.small())
    optimizer = torch.optim.AdamW(module.parameters())
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, [3], 0.1)
    path = tmp_path / "last.ckpt"
    torch.save(
        {
            "epoch": 1,
            "global_step": 10,
            "state_dict": module.state_dict(),
            "hyper_parameters": dict(module.hparams),
            "optimizer_states": [optimizer.state_dict()],
            "lr_schedulers": [scheduler.state_dict()],
            "callbacks": {"ModelCheckpoint{'monitor': 'val/mIoU'}": {"best_model_score": torch.tensor(0.5)}},
            "loops": {"fit_loop": {"state_dict": {}, "epoch_progress": {"total": {"ready": 1}}}},
        },
        path,
    )
    model, params = load_model(path)
    assert params == ModelParams.small()
    for key, value in module.model.state_dict().items():
        torch.testing.assert_close(model.state_dict()[key], value, rtol=0, atol=0)
    assert isinstance(read_checkpoint(path)["lr_schedulers"][0]["milestones"], Counter)


class _Payload:
    """Runs ``os.mkdir(marker)`` when unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (str(self.marker),)


def test_checkpoint_with_pickled_code_is_refused(checkpoint_path, tmp_path):
    checkpoint = torch.load(checkpoint_path, weights_only=True)
    marker = tmp_path / "pwned"
    checkpoint["hyper_parameters"]["payload"] = _Payload(marker)
    path = tmp_path / "evil.ckpt"
    torch.save(checkpoint, path)
    with pytest.raises(CheckpointError, match="refusing to load"):
        Predictor.from_checkpoint(path, device="cpu")
    assert not marker.exists()
    torch.load(path, weights_only=False)  # the payload is live: full unpickling would have run it
    assert marker.exists()


def test_missing_checkpoint_names_the_path(tmp_path, monkeypatch):
    missing = tmp_path / "nowhere" / "model.ckpt"
    with pytest.raises(FileNotFoundError, match="nowhere"):
        Predictor.from_checkpoint(missing)
    monkeypatch.setattr(checkpoint_module, "DEFAULT_CHECKPOINT", tmp_path / "checkpoints" / "segaff_default.ckpt")
    with pytest.raises(FileNotFoundError, match="segaff_default.ckpt"):
        Predictor.from_checkpoint()


def _rewrite(source: Path, target: Path, edit) -> Path:
    checkpoint = torch.load(source, weights_only=True)
    edit(checkpoint)
    torch.save(checkpoint, target)
    return target


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda c: c["hyper_parameters"]["model_params"].update(use_depth=False), "unexpected: depth_encoder"),
        (lambda c: c["hyper_parameters"]["model_params"].update(num_layers=2), "missing: decoder"),
        (lambda c: c["hyper_parameters"]["model_params"].update(vis_dim=96), "do not build a model"),
        (lambda c: c["hyper_parameters"]["model_params"].update(new_knob=1), "does not know: new_knob"),
        (lambda c: c["hyper_parameters"].pop("model_params"), "model_params"),
        (lambda c: c.update(state_dict={"other.weight": torch.zeros(1)}), "'model.' prefix"),
    ],
)
def test_incompatible_checkpoint_is_a_clear_error(checkpoint_path, tmp_path, edit, match):
    path = _rewrite(checkpoint_path, tmp_path / "other.ckpt", edit)
    with pytest.raises(CheckpointError, match=match):
        load_model(path)


def test_not_a_checkpoint(tmp_path):
    path = tmp_path / "garbage.ckpt"
    path.write_bytes(b"not a zip file at all")
    with pytest.raises(CheckpointError, match="garbage.ckpt is not a PyTorch checkpoint"):
        load_model(path)


@pytest.mark.parametrize("flip", [1.0, -1.0])
def test_published_drawer_motion_opens_toward_free_space_whatever_the_predicted_sign(flip):
    approach = np.array([0.0, 0.0, 1.0])  # into a surface facing the camera
    learned = np.linspace(0, 1, 20)[:, None] * [0.01, 0.0, -0.3] + [[0.0, 0.0, 0.0]]
    motion = publish_motion(0, flip * np.array([0.0, 0.0, 2.0]), np.zeros(3), approach, learned)
    np.testing.assert_allclose(motion.axis, [0.0, 0.0, -1.0])  # the opening direction
    assert motion.extent == pytest.approx(0.3)
    np.testing.assert_allclose(motion.relative_trajectory, np.linspace(0, 1, 20)[:, None] * [0.0, 0.0, -0.3],
                               atol=1e-12)  # a straight line along the axis, the learned path's wobble gone


def test_published_motion_takes_the_learned_sign_where_the_approach_says_nothing():
    learned = np.linspace(0, 1, 20)[:, None] * [0.2, 0.0, 0.0]
    for approach in (np.full(3, np.nan), np.array([0.0, 0.0, 1.0])):  # no depth; a slide along the surface
        motion = publish_motion(0, [-1.0, 0.0, 0.0], np.zeros(3), approach, learned)
        np.testing.assert_allclose(motion.axis, [1.0, 0.0, 0.0])
        assert motion.extent == pytest.approx(0.2)


def test_published_door_motion_is_the_right_handed_arc_of_opening():
    # A door facing the camera, hinged 40 cm left of its handle, opens toward the camera (-z): right-handed
    # about +y (down in the optical frame), since +y x (handle - hinge) = +y x +x = -z.
    down = np.array([0.0, 1.0, 0.0])
    hinge_offset = np.array([-0.4, 0.0, 0.0])
    quarter_turn = trajectory_rotation(np.zeros(3), down, hinge_offset, np.pi / 2)
    wobble = np.random.default_rng(0).normal(0.0, 0.01, quarter_turn.shape)
    wobble[[0, -1]] = 0.0  # the learned path starts at the handle and ends where the quarter turn does
    jagged = quarter_turn + wobble
    for flip in (1.0, -1.0):
        motion = publish_motion(1, flip * down, hinge_offset, np.array([0.0, 0.0, 1.0]), jagged)
        np.testing.assert_allclose(motion.axis, down)
        assert motion.extent == pytest.approx(np.pi / 2)
        np.testing.assert_allclose(motion.relative_trajectory, quarter_turn, atol=1e-12)
        assert trajectory_roughness(motion.relative_trajectory) < trajectory_roughness(jagged) / 5


def _tilted(axis: np.ndarray, toward: np.ndarray, degrees: float) -> np.ndarray:
    """The unit ``axis`` turned by ``degrees`` toward the unit ``toward`` (perpendicular to it)."""
    angle = np.radians(degrees)
    return np.cos(angle) * axis + np.sin(angle) * toward


def test_a_drawer_axis_near_the_front_s_normal_becomes_the_normal():
    approach = np.array([0.0, 0.0, 1.0])  # into a front facing the camera: its normal is -z
    for sign in (1.0, -1.0):
        axis = sign * _tilted(np.array([0.0, 0.0, -1.0]), np.array([1.0, 0.0, 0.0]), 20.0)
        np.testing.assert_allclose(surface_consistent_axis(0, axis, approach), sign * np.array([0.0, 0.0, -1.0]))


def test_a_door_axis_near_the_front_s_plane_is_projected_onto_it():
    approach = np.array([0.0, 0.0, 1.0])
    hinge = _tilted(np.array([0.0, 1.0, 0.0]), np.array([0.0, 0.0, 1.0]), 20.0)  # 20 deg out of the front
    snapped = surface_consistent_axis(1, hinge, approach)
    np.testing.assert_allclose(snapped, [0.0, 1.0, 0.0], atol=1e-12)
    tilted_in_plane = _tilted(np.array([0.0, 1.0, 0.0]), np.array([1.0, 0.0, 0.0]), 10.0)
    leaning = _tilted(tilted_in_plane, np.array([0.0, 0.0, 1.0]), 15.0)
    np.testing.assert_allclose(surface_consistent_axis(1, leaning, approach), tilted_in_plane, atol=1e-12)


@pytest.mark.parametrize("motion_type, degrees", [(0, 45.0), (1, 45.0), (0, 90.0), (1, 0.0)])
def test_an_axis_far_from_what_the_surface_implies_is_kept(motion_type, degrees):
    """A sliding door (translation in the front's plane), a hinge off the front: the model decides."""
    normal = np.array([0.0, 0.0, -1.0])
    start = normal if motion_type == 0 else np.array([0.0, 1.0, 0.0])
    toward = np.array([1.0, 0.0, 0.0]) if motion_type == 0 else normal
    axis = _tilted(start, toward, degrees if motion_type == 0 else 90.0 - degrees)
    assert np.degrees(np.arccos(abs(axis @ normal))) == pytest.approx(degrees)  # the angle from the normal
    np.testing.assert_array_equal(surface_consistent_axis(motion_type, axis, -normal), axis)


def test_an_unknown_surface_keeps_the_axis_and_the_option_turns_it_off():
    axis = _tilted(np.array([0.0, 0.0, -1.0]), np.array([1.0, 0.0, 0.0]), 20.0)
    np.testing.assert_array_equal(surface_consistent_axis(0, axis, np.full(3, np.nan)), axis)
    learned = np.linspace(0, 1, 20)[:, None] * 0.3 * axis
    approach = np.array([0.0, 0.0, 1.0])
    np.testing.assert_allclose(publish_motion(0, axis, np.zeros(3), approach, learned).axis, [0.0, 0.0, -1.0])
    np.testing.assert_allclose(publish_motion(0, axis, np.zeros(3), approach, learned, surface_axis=False).axis, axis)


def test_published_motion_of_a_zero_axis_stays_put():
    motion = publish_motion(1, np.zeros(3), np.ones(3), np.array([0.0, 0.0, 1.0]), np.ones((20, 3)))
    assert motion.extent == 0.0 and not motion.relative_trajectory.any()
