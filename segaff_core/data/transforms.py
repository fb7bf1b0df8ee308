"""Resizing and normalisation of one sample, keeping image, depth, mask and K consistent.

Sizes are ``(height, width)``. The image is resized with area averaging when it shrinks and bilinear
otherwise; depth and mask with pixel-centre-aligned nearest neighbour, so invalid depth (0) never
mixes with valid depth and masks stay binary. The Predictor resizes on its device with
:func:`resize_image_tensor` and :func:`resize_nearest_tensor`: the same pixels as training. K is scaled
separately in x and y (:func:`segaff_core.geometry.scale_intrinsics`), so normalised pixel coordinates
do not change.
Training augmentation here is photometric (colour jitter); the geometric one, a left-right mirror of
the whole sample with its instruction, is :mod:`segaff_core.data.mirror`.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
from torchvision.transforms import ColorJitter

from segaff_core.geometry import scale_intrinsics

CLIP_MEAN: tuple[float, float, float] = tuple(OPENAI_DATASET_MEAN)
CLIP_STD: tuple[float, float, float] = tuple(OPENAI_DATASET_STD)


def area_weights(source: int, target: int) -> np.ndarray:
    """``(target, source)`` float32 weights of area averaging along one axis: each output pixel is the
    mean of the input over its footprint, partial pixels weighted by their overlap (cv2.INTER_AREA)."""
    edges = np.arange(target + 1) * (source / target)
    pixels = np.arange(source)
    overlap = np.minimum(edges[1:, None], pixels[None, :] + 1) - np.maximum(edges[:-1, None], pixels[None, :])
    return (np.clip(overlap, 0.0, None) * (target / source)).astype(np.float32)


def nearest_indices(source: int, target: int) -> np.ndarray:
    """Source index of each of ``target`` pixels along one axis: the pixel under its centre."""
    return np.minimum(((np.arange(target) + 0.5) * (source / target)).astype(np.int64), source - 1)


def resize_image(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``rgb`` (H, W, 3) -> float32 (h, w, 3) in the input's range: area averaging (cv2.INTER_AREA) when
    shrinking both sides, else bilinear. :func:`resize_image_tensor` gives the same pixels on a device."""
    height, width = size
    image = rgb.astype(np.float32)  # float: no rounding back to uint8, as on the device
    if image.shape[:2] == (height, width):
        return image
    shrinking = height <= image.shape[0] and width <= image.shape[1]
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


@functools.lru_cache(maxsize=32)
def _device_area_weights(source: int, target: int, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(area_weights(source, target)).to(device)


@functools.lru_cache(maxsize=32)
def _device_nearest_indices(source: int, target: int, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(nearest_indices(source, target)).to(device)


def resize_image_tensor(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Float ``image (B, C, H, W)`` resized to ``size`` on its device with the pixels of :func:`resize_image`
    (what the network saw in training): area averaging as two matrix products with :func:`area_weights`
    (kept on the device per size), else bilinear."""
    height, width = size
    source_height, source_width = image.shape[-2:]
    if (source_height, source_width) == (height, width):
        return image
    if height <= source_height and width <= source_width:
        rows = _device_area_weights(source_height, height, image.device)
        columns = _device_area_weights(source_width, width, image.device)
        return rows @ image @ columns.T
    return F.interpolate(image, size=(height, width), mode="bilinear", align_corners=False)


def resize_nearest(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``array`` (H, W, ...) resized to ``size`` by :func:`nearest_indices` (values never mix)."""
    height, width = size
    if array.shape[:2] == (height, width):
        return array
    return array[nearest_indices(array.shape[0], height)[:, None], nearest_indices(array.shape[1], width)]


def resize_nearest_tensor(array: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``array (..., H, W)`` resized to ``size`` on its device by the indices of :func:`resize_nearest`."""
    height, width = size
    source_height, source_width = array.shape[-2:]
    if (source_height, source_width) == (height, width):
        return array
    rows = _device_nearest_indices(source_height, height, array.device)
    columns = _device_nearest_indices(source_width, width, array.device)
    return array.index_select(-2, rows).index_select(-1, columns)


def resize_depth(depth_m: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Depth (H, W) in metres resized (nearest) to ``size``; NaN, inf and values <= 0 become 0 (invalid)."""
    depth = np.asarray(depth_m, dtype=np.float32)
    depth = np.where(np.isfinite(depth) & (depth > 0), depth, np.float32(0))
    return resize_nearest(depth, size)


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Binary mask (H, W) resized (nearest) to ``size``."""
    return resize_nearest(np.asarray(mask, dtype=np.uint8), size)


def scale_K(K: np.ndarray, source_size: tuple[int, int], target_size: tuple[int, int]) -> np.ndarray:
    """Intrinsics of an image of ``source_size`` for the same image resized to ``target_size``."""
    return scale_intrinsics(K, target_size[1] / source_size[1], target_size[0] / source_size[0])


def normalize(image: np.ndarray) -> np.ndarray:
    """CLIP normalisation, in place, of a float32 (3, H, W) image in [0, 1]."""
    image -= np.asarray(CLIP_MEAN, dtype=np.float32)[:, None, None]
    image /= np.asarray(CLIP_STD, dtype=np.float32)[:, None, None]
    return image


@dataclass
class Preprocess:
    """Resize one sample to ``input_size`` and normalise it; ``augment`` adds colour jitter.

    The jitter keeps hue: instructions may name a colour ("the white cabinet"), and a hue shift would
    change it (it was also a quarter of a sample's loading time).
    """

    input_size: tuple[int, int] = (256, 256)
    augment: bool = False
    jitter: ColorJitter = field(default_factory=lambda: ColorJitter(brightness=0.4, contrast=0.4, saturation=0.4))

    def __call__(
        self, rgb: np.ndarray, depth_m: np.ndarray, mask: np.ndarray, K: np.ndarray
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``image (3,H,W)`` normalised, ``depth (1,H,W)`` metres, ``mask (1,H,W)`` {0,1}, ``K (3,3)``.

        ``K`` belongs to the mask's size; rgb and depth show the same view at any resolution (a
        reduced decode, a depth sensor registered to the RGB camera).
        """
        image = np.ascontiguousarray(resize_image(rgb, self.input_size).transpose(2, 0, 1))  # (3, h, w)
        image *= np.float32(1.0 / 255.0)
        if self.augment:
            image = self.jitter(torch.from_numpy(image)).numpy()
        depth = torch.from_numpy(resize_depth(depth_m, self.input_size))[None]
        mask_t = torch.from_numpy(resize_mask(mask, self.input_size).astype(np.float32))[None]
        K_t = torch.from_numpy(scale_K(K, mask.shape[:2], self.input_size).astype(np.float32))
        return torch.from_numpy(normalize(image)), depth, mask_t, K_t
