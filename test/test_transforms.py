"""Resizing image / depth / mask, K scaling and CLIP normalisation of one sample."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

from segaff_core.data.transforms import (
    CLIP_MEAN,
    CLIP_STD,
    Preprocess,
    normalize,
    resize_depth,
    area_weights,
    resize_image,
    resize_mask,
    scale_K,
)

K_OPDMULTI = np.array([[193.72, 0.0, 122.51], [0.0, 193.72, 95.23], [0.0, 0.0, 1.0]])


def test_clip_statistics_are_open_clips():
    assert CLIP_MEAN == tuple(OPENAI_DATASET_MEAN) and CLIP_STD == tuple(OPENAI_DATASET_STD)


def test_resize_image_averages_when_shrinking_and_keeps_size_otherwise():
    rgb = np.zeros((4, 4, 3), dtype=np.uint8)
    rgb[:2, :2] = 200
    rgb[0, 2] = 100
    small = resize_image(rgb, (2, 2))
    assert small.dtype == np.float32 and small.shape == (2, 2, 3)
    assert small[0, 0, 0] == 200.0 and small[1, 1, 0] == 0.0 and small[0, 1, 0] == pytest.approx(25.0)
    assert resize_image(rgb, (8, 6)).shape == (8, 6, 3)


@pytest.mark.parametrize("source, target", [(256, 160), (240, 160), (1440, 160), (480, 160), (7, 3)])
def test_area_weights_are_cv2_inter_area(source, target):
    image = np.random.default_rng(source).uniform(0, 255, (source, 5)).astype(np.float32)
    expected = cv2.resize(image, (5, target), interpolation=cv2.INTER_AREA)
    np.testing.assert_allclose(area_weights(source, target) @ image, expected, atol=1e-3)


def test_training_and_inference_see_the_same_pixels():
    """The data sets and the Predictor resize and normalise alike, also at non-integer scales."""
    from segaff_core.config import ModelParams
    from segaff_core.inference import Predictor
    from segaff_core.model import build_model

    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)
    depth = rng.uniform(0.5, 3.0, (240, 320)).astype(np.float32)
    K = np.array([[300.0, 0.0, 159.5], [0.0, 300.0, 119.5], [0.0, 0.0, 1.0]])
    for size in [(160, 160), (96, 128), (288, 352)]:
        trained, trained_depth, _, _ = Preprocess(input_size=size)(rgb, depth, np.zeros((240, 320), np.uint8), K)
        predictor = Predictor(build_model(ModelParams.small()), input_size=size, device="cpu")
        image, inferred_depth = predictor._preprocess(rgb, depth)  # resized on the device
        torch.testing.assert_close(image[0], trained, atol=2e-4, rtol=0.0)  # cv2 bilinear: fixed point
        torch.testing.assert_close(inferred_depth[0], trained_depth)


def test_resize_depth_keeps_invalid_zeros_and_never_mixes_values():
    rng = np.random.default_rng(0)
    depth = rng.uniform(0.5, 4.0, (192, 256)).astype(np.float32)
    depth[rng.random(depth.shape) < 0.3] = 0.0
    depth[0, 0], depth[0, 1], depth[0, 2] = np.nan, np.inf, -1.0
    for size in [(256, 256), (96, 128), (61, 77)]:
        resized = resize_depth(depth, size)
        assert resized.shape == size and resized.dtype == np.float32
        assert np.isfinite(resized).all() and (resized >= 0).all()
        assert set(np.unique(resized)) <= set(np.unique(np.nan_to_num(depth, nan=0.0, posinf=0.0))) | {0.0}
    assert resize_depth(depth, (192, 256))[0, :3].tolist() == [0.0, 0.0, 0.0]


def test_resize_mask_stays_binary_and_aligned():
    mask = np.zeros((192, 256), dtype=np.uint8)
    mask[48:144, 64:192] = 1  # the central half in each direction
    resized = resize_mask(mask, (256, 256))
    assert set(np.unique(resized)) == {0, 1}
    rows, cols = np.nonzero(resized)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (64, 191, 64, 191)


def test_scale_K_per_axis_keeps_normalised_projections():
    scaled = scale_K(K_OPDMULTI, (192, 256), (256, 256))
    assert scaled[0, 0] == pytest.approx(K_OPDMULTI[0, 0]) and scaled[0, 2] == pytest.approx(K_OPDMULTI[0, 2])
    assert scaled[1, 1] == pytest.approx(K_OPDMULTI[1, 1] * 256 / 192)
    assert scaled[1, 2] == pytest.approx((K_OPDMULTI[1, 2] + 0.5) * 256 / 192 - 0.5)
    point = np.array([0.3, -0.2, 1.7])
    before, after = K_OPDMULTI @ point, scaled @ point
    np.testing.assert_allclose((after[:2] / after[2] + 0.5) / [256, 256], (before[:2] / before[2] + 0.5) / [256, 192])


def test_normalize_maps_the_clip_mean_colour_to_zero():
    rgb = np.broadcast_to(np.round(np.asarray(CLIP_MEAN) * 255).astype(np.uint8), (4, 5, 3))
    image = normalize(rgb.transpose(2, 0, 1).astype(np.float32) / 255.0)
    assert image.shape == (3, 4, 5) and np.abs(image).max() < 0.01
    white = normalize(np.ones((3, 1, 1), np.float32))[:, 0, 0]
    np.testing.assert_allclose(white, (1 - np.asarray(CLIP_MEAN)) / np.asarray(CLIP_STD), rtol=1e-5)


def test_preprocess_shapes_and_augmentation_is_photometric_only():
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (192, 256, 3), dtype=np.uint8)
    depth = rng.uniform(0.5, 3.0, (96, 128)).astype(np.float32)
    mask = (rng.random((192, 256)) > 0.5).astype(np.uint8)
    plain = Preprocess((128, 128))(rgb, depth, mask, K_OPDMULTI)
    torch.manual_seed(0)
    jittered = Preprocess((128, 128), augment=True)(rgb, depth, mask, K_OPDMULTI)
    assert [t.shape for t in plain] == [(3, 128, 128), (1, 128, 128), (1, 128, 128), (3, 3)]
    assert all(t.dtype == torch.float32 for t in plain)
    assert not torch.allclose(plain[0], jittered[0], atol=0.05)
    for a, b in zip(plain[1:], jittered[1:]):
        assert torch.equal(a, b)


def test_colour_jitter_keeps_hue():
    """Instructions may name a colour: the training jitter (brightness, contrast, saturation) keeps a red
    part red (red the largest channel, green = blue), whatever its draw."""
    rgb = np.zeros((32, 32, 3), np.uint8)
    rgb[..., 0], rgb[8:24, 8:24] = 200, (180, 40, 40)
    depth, mask = np.ones((32, 32), np.float32), np.ones((32, 32), np.uint8)
    std, mean = np.asarray(CLIP_STD, np.float32)[:, None, None], np.asarray(CLIP_MEAN, np.float32)[:, None, None]
    torch.manual_seed(0)
    for _ in range(20):
        image = Preprocess((32, 32), augment=True)(rgb, depth, mask, K_OPDMULTI)[0].numpy() * std + mean
        red, green, blue = image
        np.testing.assert_allclose(green, blue, atol=1e-5)
        assert (red > green + 1e-3).all()
