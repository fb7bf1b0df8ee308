"""What a real colour camera does to an image besides noise: white balance, exposure, defocus and motion blur.

Applied by :class:`~segaff_core.synth.render.Renderer` to the linear image, before sensor noise and gamma.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class CameraEffects:
    """Per-channel white-balance gains (RGB, mean 1), exposure in stops (0: as lit), a defocus blur's
    Gaussian sigma (pixels, 0: sharp) and a linear motion blur's length (pixels, <= 1: none) and direction
    (degrees from the image's x axis)."""

    white_balance: tuple[float, float, float]
    exposure_ev: float
    defocus_sigma_px: float
    motion_length_px: int
    motion_angle_deg: float

    @staticmethod
    def sample(rng: np.random.Generator) -> CameraEffects:
        """A camera's effects: gains 0.8-1.2, -0.8 to +0.6 stops, defocus on half the images, motion blur on
        a quarter of them."""
        gains = rng.uniform(0.8, 1.2, size=3)
        gains /= gains.mean()
        exposure = float(rng.uniform(-0.8, 0.6))
        defocus = float(rng.uniform(0.3, 1.6)) if rng.random() < 0.5 else 0.0
        motion = int(rng.integers(3, 10)) if rng.random() < 0.25 else 0
        return CameraEffects((float(gains[0]), float(gains[1]), float(gains[2])), exposure, defocus, motion,
                             float(rng.uniform(0.0, 180.0)))

    def apply(self, image: np.ndarray) -> np.ndarray:
        """The linear image (H, W, 3) float32 blurred, exposed and white-balanced (a new array)."""
        out = image
        if self.defocus_sigma_px > 0:
            out = cv2.GaussianBlur(out, (0, 0), self.defocus_sigma_px)
        if self.motion_length_px > 1:
            out = cv2.filter2D(out, -1, motion_kernel(self.motion_length_px, self.motion_angle_deg),
                               borderType=cv2.BORDER_REFLECT)
        gains = np.asarray(self.white_balance, np.float32) * np.float32(2.0 ** self.exposure_ev)
        return out * gains


def motion_kernel(length_px: int, angle_deg: float) -> np.ndarray:
    """A normalised (sum 1) anti-aliased line of ``length_px`` pixels through the centre of a square kernel."""
    size = length_px if length_px % 2 else length_px + 1
    canvas = np.zeros((size, size), np.uint8)
    centre = (size - 1) / 2
    dx, dy = np.cos(np.radians(angle_deg)) * (length_px - 1) / 2, -np.sin(np.radians(angle_deg)) * (length_px - 1) / 2
    shift = 4  # cv2 sub-pixel coordinates: 1/16 px
    start = (round((centre - dx) * 2**shift), round((centre - dy) * 2**shift))
    end = (round((centre + dx) * 2**shift), round((centre + dy) * 2**shift))
    cv2.line(canvas, start, end, 255, 1, cv2.LINE_AA, shift)
    kernel = canvas.astype(np.float32)
    return kernel / kernel.sum()
