"""Horizontal mirroring of a training sample: the image, the camera, the 3D motion and the words for sides.

Flipping the image left-right is the view of the scene mirrored through the camera's y-z plane
(x -> -x). Pixels: ``u -> W - 1 - u`` (OpenCV centres), so ``cx -> W - 1 - cx`` and the skew changes sign;
normalised x -> ``1 - x``. Points, origins and trajectories negate x. A translation axis is a direction
(x negated); a hinge axis is an axial vector: the mirrored rotation turns about ``(x, -y, -z)`` by the
same angle (the mirrored hinge line, the right-hand sense of opening kept). The instruction swaps
"left"/"right" (also in "leftmost", "upper-left", "right-hand") and "clockwise"/"counterclockwise".
"""
from __future__ import annotations

import dataclasses
import re
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # common applies the mirror: no import cycle at run time
    from segaff_core.data.common import RawSample

_ROTATION = 1  # RawSample.motion_type: 0 translation, 1 rotation
_MIRRORED_WORDS = {
    "left": "right",
    "right": "left",
    "clockwise": "counterclockwise",
    "counterclockwise": "clockwise",
    "counter-clockwise": "clockwise",
    "anticlockwise": "clockwise",
    "anti-clockwise": "clockwise",
}
# A side word on its own or before "most" ("leftmost"), hyphens count as boundaries ("upper-left"),
# never inside another word ("bright", "copyright").
_SIDE_WORDS = re.compile(
    r"(?<![a-z])(counter-?clockwise|anti-?clockwise|clockwise|left|right)(?=most(?![a-z])|(?![a-z]))",
    re.IGNORECASE,
)


def _keep_case(original: str, replacement: str) -> str:
    if original.isupper():
        return replacement.upper()
    return replacement.capitalize() if original[0].isupper() else replacement


def mirror_words(text: str) -> str:
    """``text`` as it reads for the mirrored image: sides and turning senses swapped, case kept."""
    return _SIDE_WORDS.sub(lambda match: _keep_case(match[0], _MIRRORED_WORDS[match[0].lower()]), text)


def _negate_x(points: np.ndarray) -> np.ndarray:
    mirrored = np.array(points, dtype=np.float64, copy=True)
    mirrored[..., 0] *= -1.0
    return mirrored


def mirror_sample(raw: RawSample) -> RawSample:
    """``raw`` mirrored left-right (see the module docstring); the input is left unchanged."""
    width = raw.mask.shape[1]  # K belongs to the mask's resolution
    K = np.array(raw.K, dtype=np.float64, copy=True)
    K[0, 2] = width - 1 - K[0, 2]
    K[0, 1] = -K[0, 1]
    axis = np.array(raw.axis, dtype=np.float64, copy=True)
    if raw.motion_type == _ROTATION:
        axis[1:] *= -1.0
    else:
        axis[0] *= -1.0
    return dataclasses.replace(
        raw,
        rgb=np.ascontiguousarray(raw.rgb[:, ::-1]),
        depth_m=np.ascontiguousarray(raw.depth_m[:, ::-1]),
        mask=np.ascontiguousarray(raw.mask[:, ::-1]),
        K=K,
        point_xy=np.array([1.0 - raw.point_xy[0], raw.point_xy[1]], dtype=np.float64),
        point_3d=_negate_x(raw.point_3d),
        axis=axis,
        origin=_negate_x(raw.origin),
        trajectory=_negate_x(raw.trajectory),
        description=mirror_words(raw.description),
    )
