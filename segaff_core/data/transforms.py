"""Resizing and normalisation of one sample, keeping image, depth, mask and K consistent.

Sizes are ``(height, width)``. The image is resized with area averaging when it shrinks and bilinear
otherwise; depth and mask with pixel-centre-aligned nearest neighbour, so invalid depth (0) never
mixes with valid depth and masks stay binary. K is scaled separately in x and y
(:func:`segaff_core.geometry.scale_intrinsics`), so normalised pixel coordinates do not change.
Training augmentation is photometric only: a geometric one (a flip) would have to mirror the
words "left" and "right" in the instruction too.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np
import torch
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
from torchvision.transforms import ColorJitter

from segaff_core.geometry import scale_intrinsics

CLIP_MEAN: tuple[float, float, float] = tuple(OPENAI_DATASET_MEAN)
CLIP_STD: tuple[float, float, float] = tuple(OPENAI_DATASET_STD)


def resize_image(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``rgb`` (H, W, 3) resized to ``size``: INTER_AREA when shrinking both sides, else bilinear."""
    height, width = size
    if rgb.shape[:2] == (height, width):
        return rgb
    shrinking = height <= rgb.shape[0] and width <= rgb.shape[1]
    return cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


def _resize_nearest(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    height, width = size
    if array.shape[:2] == (height, width):
        return array
    return cv2.resize(array, (width, height), interpolation=cv2.INTER_NEAREST_EXACT)


def resize_depth(depth_m: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Depth (H, W) in metres resized (nearest) to ``size``; NaN, inf and values <= 0 become 0 (invalid)."""
    depth = np.asarray(depth_m, dtype=np.float32)
    depth = np.where(np.isfinite(depth) & (depth > 0), depth, np.float32(0))
    return _resize_nearest(depth, size)


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Binary mask (H, W) resized (nearest) to ``size``."""
    return _resize_nearest(np.asarray(mask, dtype=np.uint8), size)


def scale_K(K: np.ndarray, source_size: tuple[int, int], target_size: tuple[int, int]) -> np.ndarray:
    """Intrinsics of an image of ``source_size`` for the same image resized to ``target_size``."""
    return scale_intrinsics(K, target_size[1] / source_size[1], target_size[0] / source_size[0])


def image_to_unit(rgb: np.ndarray) -> np.ndarray:
    """uint8 RGB (H, W, 3) -> float32 (3, H, W) in [0, 1] (numpy: no thread pool for small arrays)."""
    return np.ascontiguousarray(rgb.transpose(2, 0, 1)).astype(np.float32) * np.float32(1.0 / 255.0)


def normalize(image: np.ndarray) -> np.ndarray:
    """CLIP normalisation, in place, of a float32 (3, H, W) image in [0, 1]."""
    image -= np.asarray(CLIP_MEAN, dtype=np.float32)[:, None, None]
    image /= np.asarray(CLIP_STD, dtype=np.float32)[:, None, None]
    return image


@dataclass
class Preprocess:
    """Resize one sample to ``input_size`` and normalise it; ``augment`` adds colour jitter."""

    input_size: tuple[int, int] = (256, 256)
    augment: bool = False
    jitter: ColorJitter = field(
        default_factory=lambda: ColorJitter(brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1)
    )

    def __call__(
        self, rgb: np.ndarray, depth_m: np.ndarray, mask: np.ndarray, K: np.ndarray
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``image (3,H,W)`` normalised, ``depth (1,H,W)`` metres, ``mask (1,H,W)`` {0,1}, ``K (3,3)``.

        ``K`` belongs to the mask's size; rgb and depth show the same view at any resolution (a
        reduced decode, a depth sensor registered to the RGB camera).
        """
        image = image_to_unit(resize_image(rgb, self.input_size))
        if self.augment:
            image = self.jitter(torch.from_numpy(image)).numpy()
        depth = torch.from_numpy(resize_depth(depth_m, self.input_size))[None]
        mask_t = torch.from_numpy(resize_mask(mask, self.input_size).astype(np.float32))[None]
        K_t = torch.from_numpy(scale_K(K, mask.shape[:2], self.input_size).astype(np.float32))
        return torch.from_numpy(normalize(image)), depth, mask_t, K_t
