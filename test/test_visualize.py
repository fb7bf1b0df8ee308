"""Overlay drawing: the mask, axis, trajectory and point change the image where they are, nothing else
moves, and draw_sample shows ground truth | prediction side by side."""
import numpy as np
import pytest
import torch

from point_maps import point_logits_at
from segaff_core.data.transforms import CLIP_MEAN, CLIP_STD
from segaff_core.geometry import project
from segaff_core.inference import AffordancePrediction
from segaff_core.visualize import AXIS_LENGTH_M, TRAJECTORY_COLOR, draw_overlay, draw_sample

HEIGHT, WIDTH = 120, 160
K = np.array([[150.0, 0.0, 79.5], [0.0, 150.0, 59.5], [0.0, 0.0, 1.0]])


@pytest.fixture
def rgb() -> np.ndarray:
    return np.full((HEIGHT, WIDTH, 3), 90, dtype=np.uint8)


def make_prediction(valid_3d: bool = True) -> AffordancePrediction:
    mask = np.zeros((HEIGHT, WIDTH), dtype=bool)
    mask[60:110, 20:70] = True
    point_3d = np.array([-0.2, 0.1, 1.5])  # projects to (59.5, 69.5), inside the mask
    trajectory = point_3d + np.linspace(0.0, 1.0, 20)[:, None] * np.array([0.0, 0.0, -0.3])
    nan = np.full(3, np.nan)
    return AffordancePrediction(
        mask=mask,
        mask_score=0.9,
        point_px=(59.5, 69.5),
        point_3d=point_3d if valid_3d else nan,
        approach=np.array([0.0, 0.0, 1.0]) if valid_3d else nan,
        axis=np.array([1.0, 0.0, 0.0]),
        origin=np.array([0.1, -0.2, 1.5]) if valid_3d else nan,
        motion_type="rotation",
        motion_type_confidence=0.8,
        trajectory=trajectory if valid_3d else np.full((20, 3), np.nan),
        valid_3d=valid_3d,
    )


def axis_midpoint(prediction: AffordancePrediction) -> tuple[int, int]:
    u, v = project(prediction.origin + 0.5 * AXIS_LENGTH_M * prediction.axis, K)[0]
    return int(round(v)), int(round(u))


def test_overlay_draws_where_the_prediction_is(rgb):
    prediction = make_prediction()
    overlay = draw_overlay(rgb, prediction, K, "open the door")
    assert overlay.shape == rgb.shape and overlay.dtype == np.uint8
    assert (rgb == 90).all(), "the input is not modified"
    changed = np.any(overlay != rgb, axis=-1)
    assert changed[prediction.mask].mean() > 0.95  # the translucent mask
    assert changed[axis_midpoint(prediction)]  # the axis arrow (origin (110, 19) -> (130, 19) px)
    assert changed[69, 59]  # the interaction point
    assert not changed[HEIGHT - 5, WIDTH - 5]  # far from everything
    assert changed[5:15, 5:40].any()  # the label
    end_u, end_v = project(prediction.trajectory[-1:], K)[0]  # the trajectory ends in a dot of its colour
    end_colour = overlay[int(round(end_v)), int(round(end_u))].astype(int)
    assert np.abs(end_colour - np.array(TRAJECTORY_COLOR)).max() < 30, end_colour


def test_invalid_3d_draws_no_axis(rgb):
    prediction = make_prediction(valid_3d=False)
    overlay = draw_overlay(rgb, prediction, K)
    changed = np.any(overlay != rgb, axis=-1)
    assert not changed[axis_midpoint(make_prediction())]
    assert changed[prediction.mask].mean() > 0.95


def test_axis_behind_the_camera_is_skipped(rgb):
    prediction = make_prediction()
    prediction.origin = np.array([0.0, 0.0, -1.0])
    prediction.trajectory = prediction.trajectory - [0.0, 0.0, 5.0]
    draw_overlay(rgb, prediction, K)  # nothing to project, and no error


def test_overlay_rejects_mismatched_inputs(rgb):
    with pytest.raises(ValueError, match="mask"):
        draw_overlay(rgb[:60], make_prediction(), K)
    with pytest.raises(ValueError, match="uint8"):
        draw_overlay(rgb.astype(np.float32), make_prediction(), K)


def test_draw_sample_shows_truth_and_prediction():
    size = 128
    image = (0.4 - torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)) / torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    mask = torch.zeros(2, 1, size, size)
    mask[:, :, 70:100, 8:50] = 1.0
    batch = {
        "image": image.expand(2, 3, size, size),
        "depth": torch.full((2, 1, size, size), 1.2),
        "mask": mask,
        "point": torch.tensor([[0.2, 0.66]] * 2),  # (25, 84) px
        "point_3d": torch.tensor([[-0.462, 0.246, 1.2]] * 2),
        "axis": torch.tensor([[0.0, 1.0, 0.0]] * 2),
        "origin": torch.tensor([[-0.462, 0.246, 1.2]] * 2),
        "motion_type": torch.tensor([1, 0]),
        "K": torch.tensor([[100.0, 0.0, 63.5], [0.0, 100.0, 63.5], [0.0, 0.0, 1.0]]).expand(2, 3, 3),
        "trajectory": torch.zeros(2, 20, 3),
        "has_trajectory": torch.tensor([True, False]),
        "description": ["open the left door", "pull the drawer"],
    }
    mask_logits = torch.full((2, 1, size // 4, size // 4), -8.0)
    mask_logits[:, :, 18:24, 18:28] = 8.0  # predicted part: rows 72-96, columns 72-112
    outputs = {
        "mask_logits": mask_logits,
        "point_xy": torch.tensor([[0.72, 0.66]] * 2),  # (92, 84) px
        "point_logits": point_logits_at(91.66, 83.98, (size, size)).expand(2, 1, -1, -1),  # the same point
        "axis": torch.tensor([[1.0, 0.0, 0.0]] * 2),
        "motion_type_logits": torch.tensor([[0.0, 2.0], [2.0, 0.0]]),
        "origin_offset": torch.zeros(2, 3),
        "trajectory": torch.zeros(2, 20, 3),
    }
    drawing = draw_sample(batch, outputs, index=1)
    assert drawing.shape == (size, 2 * size, 3) and drawing.dtype == np.uint8
    plain = drawing[size - 1, size // 2]  # untouched background: the de-normalised image
    np.testing.assert_allclose(plain, 0.4 * 255, atol=1)
    truth, predicted = drawing[:, :size], drawing[:, size:]
    assert np.any(truth[90, 40] != plain) and np.all(truth[90, 80] == plain)
    assert np.any(predicted[90, 80] != plain) and np.all(predicted[90, 40] == plain)
    assert np.any(truth[10, 10] != plain) and np.any(predicted[10, 10] != plain)  # labels
