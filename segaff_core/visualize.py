"""Overlay drawing with OpenCV: translucent part mask, interaction point, axis arrow, trajectory, label.

:func:`draw_overlay` draws one :class:`~segaff_core.inference.AffordancePrediction` (the ROS debug image,
``segaff predict``); :func:`draw_sample` draws a training sample's ground truth and the model's
prediction side by side (validation images) through the same function. Colours are RGB.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Optional

import cv2
import numpy as np
import torch

from segaff_core import geometry
from segaff_core.data.transforms import CLIP_MEAN, CLIP_STD
from segaff_core.inference import MOTION_TYPES, AffordancePrediction, prediction_from_outputs

AXIS_LENGTH_M = 0.2
"""Length of the drawn axis arrow, from the origin along the axis."""

MASK_ALPHA = 0.45
MASK_COLOR = (40, 220, 60)
POINT_COLOR = (255, 40, 40)
TRAJECTORY_COLOR = (0, 220, 255)
AXIS_COLORS = {"translation": (40, 120, 255), "rotation": (255, 150, 0)}
_OUTLINE_COLOR = (255, 255, 255)
_LABEL_BACKGROUND = (0, 0, 0)
_FONT = cv2.FONT_HERSHEY_SIMPLEX
_MAX_PIXEL = 1e5  # projected coordinates are clipped to +-this before OpenCV's int conversion


def _pixel(uv: np.ndarray) -> tuple[int, int]:
    u, v = np.clip(np.round(uv), -_MAX_PIXEL, _MAX_PIXEL)
    return int(u), int(v)


def _draw_mask(canvas: np.ndarray, mask: np.ndarray, thickness: int) -> None:
    """Blend ``MASK_COLOR`` into the masked pixels and outline them."""
    if not mask.any():
        return
    color = np.asarray(MASK_COLOR, dtype=np.float32)
    canvas[mask] = ((1.0 - MASK_ALPHA) * canvas[mask] + MASK_ALPHA * color).astype(np.uint8)
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(canvas, contours, -1, MASK_COLOR, thickness, cv2.LINE_AA)


def _draw_trajectory(canvas: np.ndarray, trajectory: np.ndarray, K: np.ndarray, thickness: int) -> None:
    """The projected trajectory as a polyline (points behind the camera or NaN left out) ending in a dot."""
    pixels = geometry.project(trajectory, K)
    pixels = pixels[np.all(np.isfinite(pixels), axis=1)]
    if len(pixels) < 2:
        return
    points = np.array([_pixel(uv) for uv in pixels], dtype=np.int32)
    cv2.polylines(canvas, [points], False, TRAJECTORY_COLOR, thickness, cv2.LINE_AA)
    cv2.circle(canvas, tuple(points[-1]), 2 * thickness, TRAJECTORY_COLOR, -1, cv2.LINE_AA)


def _draw_axis(
    canvas: np.ndarray,
    origin: np.ndarray,
    axis: np.ndarray,
    motion_type: str,
    K: np.ndarray,
    length_m: float,
    thickness: int,
) -> None:
    """An arrow from ``origin`` to ``origin + length_m * axis``, projected with K (skipped behind the camera)."""
    ends = geometry.project(np.stack([origin, origin + length_m * axis]), K)
    if not np.all(np.isfinite(ends)):
        return
    color = AXIS_COLORS[motion_type]
    cv2.arrowedLine(canvas, _pixel(ends[0]), _pixel(ends[1]), color, thickness + 1, cv2.LINE_AA, tipLength=0.2)
    cv2.circle(canvas, _pixel(ends[0]), 2 * thickness, color, -1, cv2.LINE_AA)


def _draw_point(canvas: np.ndarray, point_px: tuple[float, float], thickness: int) -> None:
    center = _pixel(np.asarray(point_px))
    cv2.circle(canvas, center, 4 * thickness, _OUTLINE_COLOR, -1, cv2.LINE_AA)
    cv2.circle(canvas, center, 3 * thickness, POINT_COLOR, -1, cv2.LINE_AA)


def _draw_label(canvas: np.ndarray, lines: list[str], scale: float, thickness: int) -> None:
    """Text lines at the top-left corner on a dark box."""
    x = y = 4 * thickness
    for line in lines:
        (width, height), baseline = cv2.getTextSize(line, _FONT, scale, thickness)
        cv2.rectangle(canvas, (x - 2, y - 2), (x + width + 2, y + height + baseline + 2), _LABEL_BACKGROUND, -1)
        cv2.putText(canvas, line, (x, y + height), _FONT, scale, _OUTLINE_COLOR, thickness, cv2.LINE_AA)
        y += height + baseline + 6


def draw_overlay(
    rgb: np.ndarray,
    prediction: AffordancePrediction,
    K: np.ndarray,
    instruction: Optional[str] = None,
    axis_length_m: float = AXIS_LENGTH_M,
) -> np.ndarray:
    """A copy of ``rgb (H,W,3) uint8`` with the prediction drawn on it; K (3,3) belongs to ``rgb``.

    Mask (translucent, outlined), trajectory and axis arrow (3D, drawn only when ``valid_3d``), interaction
    point, and a label with the motion type, its confidence and the instruction.
    """
    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"rgb must be a uint8 (H, W, 3) array, got {getattr(rgb, 'shape', type(rgb))}")
    if prediction.mask.shape != rgb.shape[:2]:
        raise ValueError(f"prediction mask {prediction.mask.shape} does not match the image {rgb.shape[:2]}")
    canvas = np.ascontiguousarray(rgb).copy()
    size = min(rgb.shape[:2])
    thickness = max(1, round(size / 240))
    _draw_mask(canvas, prediction.mask.astype(bool), thickness)
    if prediction.valid_3d:
        _draw_trajectory(canvas, prediction.trajectory, K, thickness)
        _draw_axis(
            canvas, prediction.origin, prediction.axis, prediction.motion_type, K, axis_length_m, thickness
        )
    _draw_point(canvas, prediction.point_px, thickness)
    lines = [f"{prediction.motion_type} {prediction.motion_type_confidence:.0%}"]
    if instruction:
        lines.append(instruction)
    _draw_label(canvas, lines, scale=max(0.35, size / 700), thickness=thickness)
    return canvas


def _numpy(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().float().cpu().numpy().astype(np.float64)


def draw_sample(
    batch: Mapping[str, Any], outputs: Mapping[str, torch.Tensor], index: int = 0, mask_threshold: float = 0.5
) -> np.ndarray:
    """Ground truth (left) and prediction (right) of item ``index`` of a batch: ``(H, 2W, 3) uint8``.

    ``batch`` follows the data sample contract (collated), ``outputs`` is the model's output dict. The
    prediction is post-processed exactly as :class:`~segaff_core.inference.Predictor` does it, at the
    network's input size with the sample's depth and K.
    """
    mean = torch.tensor(CLIP_MEAN).view(3, 1, 1)
    std = torch.tensor(CLIP_STD).view(3, 1, 1)
    image = (batch["image"][index].detach().float().cpu() * std + mean).clamp(0.0, 1.0)  # (3, H, W)
    rgb = (image.permute(1, 2, 0).numpy() * 255.0).round().astype(np.uint8)
    height, width = rgb.shape[:2]
    depth_m = _numpy(batch["depth"][index, 0]).astype(np.float32)
    K = _numpy(batch["K"][index])
    point_3d = _numpy(batch["point_3d"][index])
    point_x, point_y = _numpy(batch["point"][index])
    relative = _numpy(batch["trajectory"][index])
    has_trajectory = bool(batch["has_trajectory"][index]) if "has_trajectory" in batch else True
    motion_type = MOTION_TYPES[int(batch["motion_type"][index])]
    truth = AffordancePrediction(
        mask=_numpy(batch["mask"][index, 0]) > 0.5,
        mask_score=1.0,
        point_px=(point_x * width - 0.5, point_y * height - 0.5),
        point_3d=point_3d,
        approach=np.full(3, np.nan),
        axis=_numpy(batch["axis"][index]),
        origin=_numpy(batch["origin"][index]),
        motion_type=motion_type,
        motion_type_confidence=1.0,
        trajectory=point_3d + (relative - relative[:1]) if has_trajectory else np.full_like(relative, np.nan),
        valid_3d=bool(np.all(np.isfinite(point_3d))),
    )
    prediction = prediction_from_outputs(outputs, (height, width), depth_m, K, index, mask_threshold)
    description = batch.get("description")
    text = description[index] if description is not None else None
    left = draw_overlay(rgb, truth, K, f"ground truth: {text}" if text else "ground truth")
    right = draw_overlay(rgb, prediction, K, "prediction")
    return np.concatenate([left, right], axis=1)
