"""Fusing the predictions of several consecutive frames (one instruction) into one, with their agreement.

:func:`fuse_predictions` rules, for frames of one camera (same image size, same frame):

- motion type: the majority; a tie goes to the type with the higher summed confidence (then the first
  frame's). The frames of that type are the *agreeing* frames; ``motion_type_confidence`` is their mean.
- axis: the agreeing frames' axes, each sign-aligned to their principal direction (so an axis flipped in
  one frame does not cancel another), averaged and normalised; of its two signs, the one the frames'
  axes point along (sum of dot products >= 0; a tie: the first agreeing frame's).
- mask: per-pixel vote, a pixel is in when it is in more than half of the frames; ``mask_score`` and
  ``point_px`` (per coordinate): mean and median over all frames.
- 3D fields, over the agreeing frames with ``valid_3d``: ``point_3d`` the per-coordinate median;
  ``approach`` sign-aligned like the axis; ``origin`` the fused point for translation, else the fused
  point plus the median of those frames' ``origin - point_3d``; ``opening_extent`` the median of their
  extents; ``trajectory`` generated from the fused motion as each frame's is
  (:mod:`segaff_core.motion`): along the fused axis from the fused point, or about the fused axis line
  through the fused origin, by the fused extent; ``learned_trajectory`` the fused point plus the
  per-point median of their ``learned_trajectory - learned_trajectory[0]`` (None when a frame has none);
  ``learned_origin`` the fused point plus the median of their ``learned_origin - point_3d`` (None likewise).
  With no such frame the 3D fields are NaN and ``valid_3d`` is False.
- ``timings``: each name summed over the frames (a frame without it counts 0): the work the frames took.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from segaff_core.inference import MOTION_TYPES, AffordancePrediction
from segaff_core.motion import opening_trajectory


@dataclass
class FusionAgreement:
    """How much the fused frames disagreed."""

    frames: int  # predictions fused
    motion_type_agreement: float  # fraction of frames whose motion type is the fused (majority) one
    axis_spread_deg: float  # mean angle between each agreeing frame's sign-aligned axis and the fused axis
    point_spread_m: float  # median distance of the frames' valid point_3d from the fused point (NaN if none valid)
    mask_iou: float  # mean IoU of each frame's mask with the fused (voted) mask


@dataclass
class FusedPrediction:
    """The fused prediction (``timings`` summed over the frames) and the frames' agreement."""

    prediction: AffordancePrediction
    agreement: FusionAgreement


def fuse_predictions(predictions: Sequence[AffordancePrediction]) -> FusedPrediction:
    """Fuse ``predictions`` of consecutive frames with the module's rules.

    ValueError when there are none, or when their masks or trajectories differ in shape.
    """
    frames = list(predictions)
    if not frames:
        raise ValueError("fuse_predictions needs at least one prediction, got none")
    _check_shapes(frames)
    motion_type = _majority_motion_type(frames)
    agreeing = [frame for frame in frames if frame.motion_type == motion_type]
    axis = _sign_aligned_mean(np.stack([frame.axis for frame in agreeing]))
    mask = np.sum([frame.mask.astype(bool) for frame in frames], axis=0) * 2 > len(frames)

    lifted = [frame for frame in agreeing if _has_3d(frame)]
    points = len(agreeing[0].trajectory)
    learned_trajectory = learned_origin = None
    if lifted:
        point_3d = np.median([frame.point_3d for frame in lifted], axis=0)
        approach = _sign_aligned_mean(np.stack([frame.approach for frame in lifted]))
        if motion_type == "translation":
            origin = point_3d.copy()
        else:
            origin = point_3d + np.median([frame.origin - frame.point_3d for frame in lifted], axis=0)
        extent = _median_finite([frame.opening_extent for frame in lifted])
        trajectory = opening_trajectory(MOTION_TYPES.index(motion_type), point_3d, axis, origin, extent, points)
        if all(frame.learned_trajectory is not None for frame in lifted):
            learned_trajectory = point_3d[None, :] + np.median(
                [frame.learned_trajectory - frame.learned_trajectory[:1] for frame in lifted], axis=0
            )
        if all(frame.learned_origin is not None for frame in lifted):
            learned_origin = point_3d + np.median([frame.learned_origin - frame.point_3d for frame in lifted], axis=0)
    else:
        point_3d, approach, origin = np.full(3, np.nan), np.full(3, np.nan), np.full(3, np.nan)
        extent = math.nan
        trajectory = np.full(np.shape(agreeing[0].trajectory), np.nan)

    timings: dict[str, float] = {}
    for frame in frames:
        for name, milliseconds in frame.timings.items():
            timings[name] = timings.get(name, 0.0) + float(milliseconds)
    fused = AffordancePrediction(
        mask=mask,
        mask_score=float(np.mean([frame.mask_score for frame in frames])),
        point_px=tuple(float(c) for c in np.median([frame.point_px for frame in frames], axis=0)),
        point_3d=point_3d,
        approach=approach,
        axis=axis,
        origin=origin,
        motion_type=motion_type,
        motion_type_confidence=float(np.mean([frame.motion_type_confidence for frame in agreeing])),
        trajectory=trajectory,
        timings=timings,
        valid_3d=bool(lifted),
        learned_trajectory=learned_trajectory,
        opening_extent=extent,
        learned_origin=learned_origin,
    )
    agreement = FusionAgreement(
        frames=len(frames),
        motion_type_agreement=len(agreeing) / len(frames),
        axis_spread_deg=_mean_angle_deg(np.stack([frame.axis for frame in agreeing]), axis),
        point_spread_m=_median_distance_m([frame.point_3d for frame in frames if _has_3d(frame)], point_3d),
        mask_iou=float(np.mean([_iou(frame.mask.astype(bool), mask) for frame in frames])),
    )
    return FusedPrediction(prediction=fused, agreement=agreement)


def _check_shapes(frames: list[AffordancePrediction]) -> None:
    mask_shape = np.shape(frames[0].mask)
    trajectory_shape = np.shape(frames[0].trajectory)
    for index, frame in enumerate(frames[1:], start=1):
        if np.shape(frame.mask) != mask_shape:
            raise ValueError(
                f"all predictions must have the same mask shape: prediction 0 has {mask_shape}, "
                f"prediction {index} has {np.shape(frame.mask)}"
            )
        if np.shape(frame.trajectory) != trajectory_shape:
            raise ValueError(
                f"all predictions must have the same trajectory shape: prediction 0 has {trajectory_shape}, "
                f"prediction {index} has {np.shape(frame.trajectory)}"
            )


def _median_finite(values: Sequence[float]) -> float:
    """Median of the finite ``values``; NaN when none is."""
    finite = [value for value in values if math.isfinite(value)]
    return float(np.median(finite)) if finite else math.nan


def _majority_motion_type(frames: list[AffordancePrediction]) -> str:
    """The most frequent motion type; ties: the higher summed confidence, then the first seen."""
    votes: dict[str, tuple[int, float]] = {}
    for frame in frames:
        count, confidence = votes.get(frame.motion_type, (0, 0.0))
        votes[frame.motion_type] = (count + 1, confidence + float(frame.motion_type_confidence))
    return max(votes, key=lambda name: votes[name])  # max keeps the first of equal keys: the first seen


def _has_3d(frame: AffordancePrediction) -> bool:
    return bool(frame.valid_3d) and bool(np.all(np.isfinite(frame.point_3d)))


def _sign_aligned_mean(directions: np.ndarray) -> np.ndarray:
    """Unit mean (3,) of directions (N, 3) up to sign: each flipped onto the principal direction of
    their finite rows, averaged, normalised; the sign the directions point along (sum of dot products
    >= 0, a tie: the first's). NaN when no row is finite and non-zero."""
    directions = directions[np.all(np.isfinite(directions), axis=1)]
    directions = directions[np.linalg.norm(directions, axis=1) > 0]
    if len(directions) == 0:
        return np.full(3, np.nan)
    units = directions / np.linalg.norm(directions, axis=1, keepdims=True)
    _, eigenvectors = np.linalg.eigh(units.T @ units)
    principal = eigenvectors[:, -1]  # the eigenvector of the largest eigenvalue
    signs = np.where(units @ principal < 0, -1.0, 1.0)
    mean = (signs[:, None] * units).sum(axis=0)
    mean /= np.linalg.norm(mean)
    dots = units @ mean
    if dots.sum() < 0 or (dots.sum() == 0 and dots[0] < 0):
        mean = -mean
    return mean


def _mean_angle_deg(directions: np.ndarray, fused: np.ndarray) -> float:
    """Mean angle (degrees) between each finite direction, sign-aligned, and the unit ``fused``."""
    directions = directions[np.all(np.isfinite(directions), axis=1)]
    norms = np.linalg.norm(directions, axis=1)
    directions, norms = directions[norms > 0], norms[norms > 0]
    if len(directions) == 0 or not np.all(np.isfinite(fused)):
        return math.nan
    cosines = np.clip(np.abs(directions @ fused) / norms, 0.0, 1.0)
    return float(np.degrees(np.arccos(cosines)).mean())


def _median_distance_m(points: list[np.ndarray], fused: np.ndarray) -> float:
    if not points or not np.all(np.isfinite(fused)):
        return math.nan
    return float(np.median(np.linalg.norm(np.asarray(points) - fused, axis=1)))


def _iou(mask: np.ndarray, fused: np.ndarray) -> float:
    """Intersection over union; 1 when both masks are empty (they agree)."""
    union = np.count_nonzero(mask | fused)
    return np.count_nonzero(mask & fused) / union if union else 1.0
