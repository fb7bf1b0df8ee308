"""One synchronized camera frame: the messages as they came, and their checked numpy form.

:func:`decode_frame` is what the node runs on every frame before the model (the worker, ``~/query`` and
``~/perceive`` alike): it turns anything a camera driver or a broken bag can send into either a
:class:`DecodedFrame` or a :class:`BadFrame` with the reason.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sensor_msgs.msg import CameraInfo, Image

from segaff_ros import conversions


class BadFrame(ValueError):
    """A synchronized frame that cannot be processed (encoding, size, intrinsics, depth)."""


@dataclass(frozen=True)
class Frame:
    """One synchronized input set, still as messages (decoded only when the worker takes it)."""

    rgb: Image
    depth: Image
    camera_info: CameraInfo
    stamp_ns: int


@dataclass(frozen=True)
class DecodedFrame:
    """A frame as the Predictor takes it."""

    rgb: np.ndarray
    depth_m: np.ndarray
    K: np.ndarray


def decode_frame(frame: Frame, min_depth_m: float, max_depth_m: float) -> DecodedFrame:
    """The frame as numpy; BadFrame with the reason when it cannot be used.

    What the worker (and ``~/query``) runs on every synchronized frame before the model: encodings,
    camera_info size, data length, K, and at least one depth pixel within ``[min_depth_m, max_depth_m]``.
    Raises nothing but BadFrame (a ValueError), whatever the messages hold.
    """
    if frame.rgb.encoding not in conversions.COLOR_ENCODINGS:
        raise BadFrame(
            f"RGB image encoding {frame.rgb.encoding!r} is not one of {tuple(conversions.COLOR_ENCODINGS)}"
        )
    if frame.depth.encoding not in conversions.DEPTH_ENCODINGS:
        raise BadFrame(
            f"depth image encoding {frame.depth.encoding!r} is not one of {tuple(conversions.DEPTH_ENCODINGS)}"
        )
    info = frame.camera_info
    if (info.width, info.height) not in ((0, 0), (frame.rgb.width, frame.rgb.height)):
        raise BadFrame(
            f"camera_info is for {info.width}x{info.height} but the RGB image is "
            f"{frame.rgb.width}x{frame.rgb.height}"
        )
    try:
        rgb = conversions.image_to_numpy(frame.rgb)
        depth_m = conversions.image_to_numpy(frame.depth)
        K = conversions.camera_info_to_K(info)
    except ValueError as error:
        raise BadFrame(str(error)) from error
    in_range = (depth_m >= min_depth_m) & (depth_m <= max_depth_m)
    if not in_range.any():
        raise BadFrame(f"depth image has no valid pixel within [{min_depth_m}, {max_depth_m}] m")
    return DecodedFrame(rgb, depth_m, K)
