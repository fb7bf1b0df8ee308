"""Depth-sensor faults of a stereo or structured-light camera, at severities 0 (perfect depth) to 4.

Every severity applies the same faults, more of each (:data:`SEVERITIES`):

- disparity quantisation and noise: depth is ``fx * baseline / disparity`` with the disparity rounded to a
  sub-pixel step and jittered, so the error grows with z^2;
- holes (0, invalid) in a band along depth edges, on dark surfaces (low RGB luminance) and on shiny ones
  (a specular highlight: metal, glass, gloss), in patches;
- flying pixels: in the edge band, depths between the near and the far side;
- scattered invalid pixels, and none beyond the sensor's range.

The random fields are drawn from the seed alone and the thresholds grow with the severity, so the invalid
pixels of a severity are among those of every higher one.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

BASELINE_M = 0.05
MAX_SEVERITY = 4


@dataclass(frozen=True)
class SensorFaults:
    """The faults of one severity: disparity step and noise (pixels), edge band (pixels either side of a
    depth edge) with its hole and flying-pixel probabilities, the luminance (0-1) under which a surface
    counts as dark, hole probabilities on dark and on shiny surfaces and anywhere, and the range (metres)."""

    disparity_step_px: float
    disparity_noise_px: float
    edge_band_px: int
    edge_hole_prob: float
    flying_prob: float
    dark_luminance: float
    dark_hole_prob: float
    shiny_hole_prob: float
    random_hole_prob: float
    max_range_m: float


SEVERITIES: tuple[SensorFaults, ...] = (
    SensorFaults(0.0, 0.0, 0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, math.inf),
    SensorFaults(1 / 16, 0.02, 1, 0.15, 0.1, 0.04, 0.15, 0.15, 0.001, 8.0),
    SensorFaults(1 / 8, 0.04, 1, 0.35, 0.2, 0.07, 0.35, 0.35, 0.003, 6.5),
    SensorFaults(1 / 4, 0.07, 2, 0.55, 0.3, 0.10, 0.55, 0.55, 0.006, 5.0),
    SensorFaults(1 / 2, 0.10, 3, 0.75, 0.4, 0.14, 0.75, 0.75, 0.012, 4.0),
)
EDGE_JUMP = 0.04  # a depth edge: neighbours more than 4% (plus 2 cm) apart
SHINY_SPECULAR = 0.2  # surfaces whose highlight is at least this strong lose depth
PATCH_SIGMA_PX = 3.0  # size of the patches of holes on dark and shiny surfaces


def _uniform_ranks(values: np.ndarray) -> np.ndarray:
    """``values`` replaced by their ranks scaled to [0, 1): a uniform field with the same order."""
    ranks = np.empty(values.size, np.float32)
    ranks[np.argsort(values, axis=None, kind="stable")] = np.arange(values.size, dtype=np.float32) / values.size
    return ranks.reshape(values.shape)


def apply_sensor_faults(depth_m: np.ndarray, K: np.ndarray, rgb: np.ndarray, specular: np.ndarray,
                        severity: int, seed: int) -> np.ndarray:
    """``depth_m (H, W)`` (metres, 0 invalid) as a sensor of ``severity`` (0-4) with focal length ``K[0, 0]``
    would measure it, given the image ``rgb (H, W, 3) uint8`` and per-pixel ``specular`` strength: a new
    float32 array, equal to ``depth_m`` at severity 0, the same for the same ``seed``."""
    if not 0 <= severity <= MAX_SEVERITY:
        raise ValueError(f"sensor fault severity must be 0-{MAX_SEVERITY}, got {severity}")
    depth = np.asarray(depth_m, np.float32)
    if severity == 0:
        return depth.copy()
    faults = SEVERITIES[severity]
    rng = np.random.default_rng(seed)
    shape = depth.shape
    disparity_noise = rng.standard_normal(shape, dtype=np.float32)
    pixel_draw = rng.random(shape, dtype=np.float32)
    patch_draw = _uniform_ranks(cv2.GaussianBlur(rng.standard_normal(shape, dtype=np.float32), (0, 0), PATCH_SIGMA_PX))
    flying_draw = rng.random(shape, dtype=np.float32)
    flying_mix = rng.random(shape, dtype=np.float32)

    valid = depth > 0
    fx_baseline = np.float32(K[0, 0] * BASELINE_M)
    disparity = np.where(valid, fx_baseline / np.where(valid, depth, 1.0), 0.0)
    disparity += disparity_noise * np.float32(faults.disparity_noise_px)
    step = np.float32(faults.disparity_step_px)
    disparity = np.round(disparity / step) * step
    measured = np.where(valid & (disparity > 0), fx_baseline / np.maximum(disparity, step), 0.0).astype(np.float32)

    window = np.ones((3, 3), np.uint8)
    near = cv2.erode(np.where(valid, depth, np.float32(np.inf)), window)
    far = cv2.dilate(depth, window)
    edge = valid & (far - near > EDGE_JUMP * near + 0.02)
    band_window = np.ones((2 * faults.edge_band_px + 1,) * 2, np.uint8)
    band = cv2.dilate(edge.astype(np.uint8), band_window).astype(bool) & valid
    band_near = cv2.erode(np.where(valid, depth, np.float32(np.inf)), band_window)
    band_far = cv2.dilate(depth, band_window)
    flying = band & (flying_draw < faults.flying_prob)
    measured = np.where(flying, band_near + flying_mix * (band_far - band_near), measured)

    luminance = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
    holes = (
        (band & (pixel_draw < faults.edge_hole_prob))
        | ((luminance < faults.dark_luminance) & (patch_draw < faults.dark_hole_prob))
        | ((specular >= SHINY_SPECULAR) & (patch_draw < faults.shiny_hole_prob))
        | (pixel_draw < faults.random_hole_prob)
        | (depth > faults.max_range_m)
    )
    return np.where(holes | ~valid, np.float32(0.0), measured).astype(np.float32)
