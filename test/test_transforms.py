"""Resizing image / depth / mask, K scaling and CLIP normalisation of one sample."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

from segaff_core.data.transforms import (
    CLIP_MEAN,
    CLIP_STD,
    Preprocess,
    image_to_unit,
    normalize,
    resize_depth,
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
    small = resize_image(rgb, (2, 2))
    assert small.shape == (2, 2, 3) and small[0, 0, 0] == 200 and small[1, 1, 0] == 0
    assert resize_image(rgb, (4, 4)) is rgb
    assert resize_image(rgb, (8, 6)).shape == (8, 6, 3)


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
    image = normalize(image_to_unit(rgb))
    assert image.shape == (3, 4, 5) and np.abs(image).max() < 0.01
    white = normalize(image_to_unit(np.full((1, 1, 3), 255, np.uint8)))[:, 0, 0]
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
