"""Pure conversions between ROS 2 messages and numpy / SegAffordance predictions.

Small functions, one per direction and message type, no node and no state: the perception node only
wires them together. Units follow REP 118 (depth ``16UC1`` in millimetres, ``32FC1`` in metres, 0 / NaN /
inf = invalid) and REP 103 (metres; 3D quantities in the RGB camera's optical frame, or in a target frame
once moved there with :func:`transform_from_msg` and :func:`segaff_core.frames.transform_prediction`).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Optional, Sequence

import numpy as np
from builtin_interfaces.msg import Duration, Time
from geometry_msgs.msg import Point, Pose, PoseStamped, Quaternion, TransformStamped, Vector3
from nav_msgs.msg import Path
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField
from std_msgs.msg import ColorRGBA, Header
from visualization_msgs.msg import Marker, MarkerArray

from segaff_core.frames import RigidTransform
from segaff_core.geometry import quaternion_from_z
from segaff_msgs.msg import AffordanceResult

if TYPE_CHECKING:  # torch stays out of the conversions' import
    from segaff_core.inference import AffordancePrediction

#: Colour encodings accepted on the RGB topic -> (channels, index order that gives R, G, B).
COLOR_ENCODINGS: dict[str, tuple[int, tuple[int, int, int]]] = {
    "rgb8": (3, (0, 1, 2)),
    "bgr8": (3, (2, 1, 0)),
    "rgba8": (4, (0, 1, 2)),
    "bgra8": (4, (2, 1, 0)),
}
#: Depth encodings accepted on the depth topic -> (numpy dtype, factor to metres).
DEPTH_ENCODINGS: dict[str, tuple[str, float]] = {
    "16UC1": ("u2", 1e-3),
    "32FC1": ("f4", 1.0),
}
_OUTPUT_ENCODINGS: dict[str, tuple[str, int]] = {
    "mono8": ("u1", 1),
    "rgb8": ("u1", 3),
    "16UC1": ("u2", 1),
    "32FC1": ("f4", 1),
}
_MARKER_NAMESPACE = "segaff"
#: One point of :func:`points_to_cloud`: x, y, z and rgb as little-endian float32 (16 bytes).
_CLOUD_POINT = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("rgb", "<f4")])


def stamp_to_ns(stamp: Time) -> int:
    """A ``builtin_interfaces/Time`` in integer nanoseconds."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def _image_array(msg: Image, dtype: np.dtype, channels: int) -> np.ndarray:
    """The (H, W, channels) array of ``msg.data`` in ``dtype``, honouring ``step`` row padding."""
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    row_bytes = width * channels * dtype.itemsize
    if height == 0 or width == 0:
        raise ValueError(f"image is empty ({width}x{height})")
    if step < row_bytes:
        raise ValueError(
            f"image step {step} is smaller than width {width} x {channels * dtype.itemsize} bytes "
            f"per pixel = {row_bytes} for encoding {msg.encoding!r}"
        )
    data = np.frombuffer(msg.data, dtype=np.uint8)
    if data.size != step * height:
        raise ValueError(
            f"image data holds {data.size} bytes, expected step x height = {step} x {height} = "
            f"{step * height} for a {width}x{height} {msg.encoding!r} image"
        )
    rows = data.reshape(height, step)[:, :row_bytes]
    return np.ascontiguousarray(rows).view(dtype).reshape(height, width, channels)


def image_to_numpy(msg: Image) -> np.ndarray:
    """A ``sensor_msgs/Image`` as numpy: colour -> (H, W, 3) uint8 RGB, depth -> (H, W) float32 metres.

    Colour: rgb8, bgr8, rgba8, bgra8 (alpha dropped). Depth: 16UC1 millimetres or 32FC1 metres; invalid
    pixels (0, NaN, inf) become 0. ``is_bigendian`` and row padding (``step``) are honoured.
    Raises ValueError for any other encoding and when ``data`` does not hold ``step x height`` bytes.
    """
    encoding = msg.encoding
    byte_order = ">" if msg.is_bigendian else "<"
    if encoding in COLOR_ENCODINGS:
        channels, rgb_order = COLOR_ENCODINGS[encoding]
        pixels = _image_array(msg, np.dtype(np.uint8), channels)
        colour = pixels[:, :, :3] if rgb_order == (0, 1, 2) else pixels[:, :, 2::-1]  # views, no gather
        return np.ascontiguousarray(colour)  # rgb8: the message's buffer itself, no copy
    if encoding in DEPTH_ENCODINGS:
        type_code, to_metres = DEPTH_ENCODINGS[encoding]
        raw = _image_array(msg, np.dtype(byte_order + type_code), 1)[:, :, 0]
        depth_m = raw.astype(np.float32) * np.float32(to_metres)
        depth_m[~np.isfinite(depth_m)] = 0.0
        return depth_m
    raise ValueError(
        f"unsupported image encoding {encoding!r}: expected one of "
        f"{sorted(COLOR_ENCODINGS) + sorted(DEPTH_ENCODINGS)}"
    )


def numpy_to_image(array: np.ndarray, encoding: str, header: Header) -> Image:
    """A ``sensor_msgs/Image`` (little-endian, no row padding) from an array.

    ``mono8``: (H, W) uint8 or bool (True -> 255); ``rgb8``: (H, W, 3) uint8; ``16UC1``: (H, W)
    millimetres (rounded, clipped to uint16); ``32FC1``: (H, W) metres.
    """
    if encoding not in _OUTPUT_ENCODINGS:
        raise ValueError(f"cannot encode {encoding!r}: expected one of {sorted(_OUTPUT_ENCODINGS)}")
    type_code, channels = _OUTPUT_ENCODINGS[encoding]
    array = np.asarray(array)
    expected_ndim = 3 if channels > 1 else 2
    if array.ndim != expected_ndim or (channels > 1 and array.shape[2] != channels):
        raise ValueError(f"{encoding} needs an array of shape {'(H, W, 3)' if channels > 1 else '(H, W)'}, "
                         f"got {array.shape}")
    if array.dtype == np.bool_:
        array = array.astype(np.uint8) * 255
    elif type_code == "u2" and array.dtype != np.uint16:
        array = np.clip(np.rint(np.nan_to_num(array)), 0, np.iinfo(np.uint16).max)
    data = np.ascontiguousarray(array, dtype=np.dtype("<" + type_code))
    msg = Image()
    msg.header = header
    msg.height, msg.width = int(data.shape[0]), int(data.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = 0
    msg.step = msg.width * channels * data.itemsize
    msg.data = data.tobytes()
    return msg


def camera_info_to_K(msg: CameraInfo) -> np.ndarray:
    """The 3 x 3 intrinsics of ``msg.k`` (float64); ValueError when not a usable pinhole matrix."""
    K = np.asarray(msg.k, dtype=np.float64).reshape(3, 3)
    if not np.all(np.isfinite(K)):
        raise ValueError(f"camera_info K holds NaN or inf: {K.ravel().tolist()}")
    if K[0, 0] <= 0 or K[1, 1] <= 0 or K[2, 2] != 1.0:
        raise ValueError(
            f"camera_info K is not a calibrated pinhole matrix (needs fx > 0, fy > 0, K[2,2] = 1): "
            f"{K.ravel().tolist()}"
        )
    return K


def K_to_camera_info(K: np.ndarray, width: int, height: int, header: Header) -> CameraInfo:
    """A ``sensor_msgs/CameraInfo`` of an undistorted pinhole camera (plumb_bob, zero distortion)."""
    K = np.asarray(K, dtype=np.float64).reshape(3, 3)
    msg = CameraInfo()
    msg.header = header
    msg.width, msg.height = int(width), int(height)
    msg.distortion_model = "plumb_bob"
    msg.d = [0.0] * 5
    msg.k = K.ravel().tolist()
    msg.r = np.eye(3).ravel().tolist()
    msg.p = np.hstack([K, np.zeros((3, 1))]).ravel().tolist()
    return msg


def _point(xyz: Sequence[float]) -> Point:
    return Point(x=float(xyz[0]), y=float(xyz[1]), z=float(xyz[2]))


def approach_orientation(approach: np.ndarray) -> Quaternion:
    """The orientation whose +z axis is the (unit) approach direction."""
    x, y, z, w = quaternion_from_z(approach)
    return Quaternion(x=float(x), y=float(y), z=float(z), w=float(w))


def prediction_to_pose(prediction: AffordancePrediction, header: Header) -> PoseStamped:
    """Interaction pose: position = interaction point, +z of the orientation = approach direction."""
    pose = Pose(position=_point(prediction.point_3d), orientation=approach_orientation(prediction.approach))
    return PoseStamped(header=header, pose=pose)


def prediction_to_path(prediction: AffordancePrediction, header: Header) -> Path:
    """The predicted trajectory (20 poses, first = interaction point), each with the approach orientation."""
    orientation = approach_orientation(prediction.approach)
    poses = [
        PoseStamped(header=header, pose=Pose(position=_point(xyz), orientation=orientation))
        for xyz in prediction.trajectory
    ]
    return Path(header=header, poses=poses)


def _marker(header: Header, marker_id: int, marker_type: int, rgba: tuple[float, float, float, float]) -> Marker:
    marker = Marker(header=header, ns=_MARKER_NAMESPACE, id=marker_id, type=marker_type, action=Marker.ADD)
    marker.pose.orientation.w = 1.0
    marker.color = ColorRGBA(r=rgba[0], g=rgba[1], b=rgba[2], a=rgba[3])
    marker.lifetime = Duration(sec=0, nanosec=0)
    return marker


def prediction_to_axis_marker(
    prediction: AffordancePrediction, header: Header, length_m: float = 0.2
) -> Marker:
    """ARROW from the axis origin along the unit motion axis, ``length_m`` long (marker id 0)."""
    marker = _marker(header, 0, Marker.ARROW, (1.0, 0.3, 0.0, 1.0))
    start = np.asarray(prediction.origin, dtype=np.float64)
    end = start + length_m * np.asarray(prediction.axis, dtype=np.float64)
    marker.points = [_point(start), _point(end)]
    marker.scale = Vector3(x=0.01, y=0.02, z=0.03)  # shaft diameter, head diameter, head length (m)
    return marker


def prediction_to_markers(
    prediction: AffordancePrediction, header: Header, instruction: str, axis_length_m: float = 0.2
) -> MarkerArray:
    """Axis ARROW (id 0), trajectory LINE_STRIP (1), interaction point SPHERE (2), TEXT label (3)."""
    trajectory = _marker(header, 1, Marker.LINE_STRIP, (0.1, 0.6, 1.0, 1.0))
    trajectory.points = [_point(xyz) for xyz in prediction.trajectory]
    trajectory.scale.x = 0.005  # line width (m)

    point = _marker(header, 2, Marker.SPHERE, (0.1, 1.0, 0.2, 1.0))
    point.pose.position = _point(prediction.point_3d)
    point.scale = Vector3(x=0.03, y=0.03, z=0.03)

    label = _marker(header, 3, Marker.TEXT_VIEW_FACING, (1.0, 1.0, 1.0, 1.0))
    label.pose.position = _point(np.asarray(prediction.point_3d) - np.array([0.0, 0.05, 0.0]))
    label.scale.z = 0.04  # text height (m)
    label.text = (
        f"{instruction}: {prediction.motion_type} ({prediction.motion_type_confidence:.0%}), "
        f"mask {prediction.mask_score:.2f}"
    )
    axis = prediction_to_axis_marker(prediction, header, axis_length_m)
    return MarkerArray(markers=[axis, trajectory, point, label])


def delete_all_markers(header: Header) -> MarkerArray:
    """A MarkerArray that clears this node's markers (sent when processing stops)."""
    return MarkerArray(markers=[Marker(header=header, ns=_MARKER_NAMESPACE, action=Marker.DELETEALL)])


def prediction_to_result(
    prediction: AffordancePrediction,
    header: Header,
    instruction: str,
    mask: Optional[Image] = None,
) -> AffordanceResult:
    """Everything of one prediction in one ``segaff_msgs/AffordanceResult``.

    ``mask`` is the mono8 mask message when the caller already built it (it is reused, not re-encoded).
    """
    result = AffordanceResult()
    result.header = header
    result.instruction = instruction
    result.mask = mask if mask is not None else numpy_to_image(prediction.mask, "mono8", header)
    result.mask_score = float(prediction.mask_score)
    result.interaction_u, result.interaction_v = (float(c) for c in prediction.point_px)
    result.interaction_pose = prediction_to_pose(prediction, header).pose
    result.motion_type = (
        AffordanceResult.ROTATION if prediction.motion_type == "rotation" else AffordanceResult.TRANSLATION
    )
    result.motion_type_confidence = float(prediction.motion_type_confidence)
    axis = np.asarray(prediction.axis, dtype=np.float64)
    result.axis = Vector3(x=float(axis[0]), y=float(axis[1]), z=float(axis[2]))
    result.axis_origin = _point(prediction.origin)
    result.learned_origin = _point(prediction.origin if prediction.learned_origin is None else prediction.learned_origin)
    result.trajectory = [_point(xyz) for xyz in prediction.trajectory]
    if prediction.learned_trajectory is not None:
        result.learned_trajectory = [_point(xyz) for xyz in prediction.learned_trajectory]
    result.opening_extent = float(prediction.opening_extent)
    result.inference_time_ms = float(prediction.timings["total"])
    return result


def transform_from_msg(msg: TransformStamped) -> RigidTransform:
    """The rigid transform of a ``geometry_msgs/TransformStamped`` (tf2's ``header.frame_id <-
    child_frame_id``: it maps child-frame coordinates into the header's frame); ValueError when its
    quaternion is zero or not finite."""
    translation, rotation = msg.transform.translation, msg.transform.rotation
    return RigidTransform.from_quaternion(
        (translation.x, translation.y, translation.z), (rotation.x, rotation.y, rotation.z, rotation.w)
    )


def points_to_cloud(points_xyz: np.ndarray, colors_rgb: np.ndarray, header: Header) -> PointCloud2:
    """An unorganised ``sensor_msgs/PointCloud2`` (height 1, dense, little-endian) of points and colours.

    ``points_xyz`` (N, 3) finite metres, ``colors_rgb`` (N, 3) uint8. Fields x, y, z float32 and rgb: the
    float32 whose bits are ``0x00RRGGBB``, as PCL and RViz read it; 16 bytes a point. Built with a numpy
    structured array (``sensor_msgs_py`` is not on PyPI); ``sensor_msgs_py.point_cloud2.read_points`` reads
    it back. N = 0 gives a valid empty cloud.
    """
    points_xyz = np.asarray(points_xyz)
    colors_rgb = np.asarray(colors_rgb)
    if points_xyz.ndim != 2 or points_xyz.shape[1] != 3 or not np.issubdtype(points_xyz.dtype, np.number):
        raise ValueError(f"points_xyz must be an (N, 3) numeric array, got {points_xyz.dtype} {points_xyz.shape}")
    if not np.all(np.isfinite(points_xyz)):
        raise ValueError("points_xyz holds NaN or inf: a dense cloud needs finite points")
    if colors_rgb.dtype != np.uint8 or colors_rgb.shape != points_xyz.shape:
        raise ValueError(
            f"colors_rgb must be a uint8 (N, 3) array with one colour per point ({len(points_xyz)}), "
            f"got {colors_rgb.dtype} {colors_rgb.shape}"
        )
    cloud = np.empty(len(points_xyz), dtype=_CLOUD_POINT)
    cloud["x"], cloud["y"], cloud["z"] = points_xyz.T
    packed = (colors_rgb[:, 0].astype(np.uint32) << 16) | (colors_rgb[:, 1].astype(np.uint32) << 8) | colors_rgb[:, 2]
    cloud["rgb"] = packed.astype("<u4").view("<f4")
    msg = PointCloud2()
    msg.header = header
    msg.height, msg.width = 1, len(cloud)
    msg.fields = [
        PointField(name=name, offset=_CLOUD_POINT.fields[name][1], datatype=PointField.FLOAT32, count=1)
        for name in _CLOUD_POINT.names
    ]
    msg.is_bigendian = False
    msg.point_step = _CLOUD_POINT.itemsize
    msg.row_step = msg.point_step * msg.width
    msg.is_dense = True
    msg.data = cloud.tobytes()
    return msg
