"""The node's outputs for one processed frame: expressed in the output frame, then published.

:func:`to_output_frame` moves a prediction from the camera's optical frame into ``target_frame`` (tf2, at the
image stamp; '' or the camera frame itself = unchanged). :class:`OutputPublishers` owns the node's lifecycle
publishers (``~/mask``, ``~/interaction_pose``, ``~/axis_marker``, ``~/trajectory``, ``~/markers``,
``~/result``, ``~/debug_image``, ``~/part_points``) and publishes a :class:`FrameOutput` on them; images that
cost time to build (the debug overlay, the part cloud) only while someone subscribes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import rclpy.time
from geometry_msgs.msg import PoseStamped
from nav_msgs.msg import Path
from rclpy.impl.rcutils_logger import RcutilsLogger
from rclpy.lifecycle import LifecycleNode
from rclpy.qos import HistoryPolicy, QoSProfile
from sensor_msgs.msg import Image, PointCloud2
from std_msgs.msg import Header
from visualization_msgs.msg import Marker, MarkerArray

from segaff_core.frames import RigidTransform, masked_points, transform_prediction
from segaff_core.inference import AffordancePrediction
from segaff_core.visualize import draw_overlay
from segaff_msgs.msg import AffordanceResult
from segaff_ros import conversions
from segaff_ros.frame_input import DecodedFrame
from segaff_ros.node_parameters import PerceptionParams
from segaff_ros.target_frame import TargetFrameResolver

_THROTTLE_S = 5.0


@dataclass(frozen=True)
class FrameOutput:
    """One prediction ready to publish: 3D fields in ``header.frame_id``; the mask in the camera image."""

    header: Header  # output frame, the image's stamp
    image_header: Header  # the RGB image's own header (mask, debug image)
    instruction: str
    prediction: AffordancePrediction  # 3D fields in the output frame
    camera_prediction: AffordancePrediction  # the same in the camera's optical frame (drawing with K)
    camera_to_output: RigidTransform
    decoded: DecodedFrame

    def result(self) -> AffordanceResult:
        """The ``segaff_msgs/AffordanceResult`` of this output (mask in the image's frame)."""
        mask = conversions.numpy_to_image(self.prediction.mask, "mono8", self.image_header)
        return conversions.prediction_to_result(self.prediction, self.header, self.instruction, mask)

    def part_cloud(self, stride: int, min_depth_m: float, max_depth_m: float) -> PointCloud2:
        """The part's masked depth (every ``stride``-th pixel), coloured, in the output frame."""
        xyz, colors = masked_points(
            self.prediction.mask, self.decoded.depth_m, self.decoded.K, self.decoded.rgb, stride,
            min_depth_m, max_depth_m,
        )
        return conversions.points_to_cloud(self.camera_to_output.apply_points(xyz), colors, self.header)


def to_output_frame(
    image_header: Header,
    decoded: DecodedFrame,
    prediction: AffordancePrediction,
    instruction: str,
    target_frame: str,
    resolver: Optional[TargetFrameResolver],
) -> FrameOutput:
    """The prediction (camera optical frame) as a :class:`FrameOutput` in ``target_frame``.

    Raises ``TransformUnavailable`` (from the resolver) when tf2 has no transform at the image stamp, and
    RuntimeError when a target frame is asked for without a resolver (tf2_ros missing).
    """
    camera_frame = image_header.frame_id
    if not target_frame or target_frame == camera_frame:
        return FrameOutput(image_header, image_header, instruction, prediction, prediction,
                           RigidTransform.identity(), decoded)
    if resolver is None:
        raise RuntimeError(f"target_frame {target_frame!r} needs tf2_ros, which is not importable")
    transform = resolver.lookup(target_frame, camera_frame, rclpy.time.Time.from_msg(image_header.stamp))
    header = Header(frame_id=target_frame, stamp=image_header.stamp)
    return FrameOutput(
        header, image_header, instruction, transform_prediction(prediction, transform), prediction, transform, decoded
    )


class OutputPublishers:
    """The node's output publishers (lifecycle publishers: they publish while the node is active)."""

    def __init__(self, node: LifecycleNode) -> None:
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=5)
        self._node = node
        self.mask = node.create_lifecycle_publisher(Image, "~/mask", qos)
        self.pose = node.create_lifecycle_publisher(PoseStamped, "~/interaction_pose", qos)
        self.axis = node.create_lifecycle_publisher(Marker, "~/axis_marker", qos)
        self.path = node.create_lifecycle_publisher(Path, "~/trajectory", qos)
        self.markers = node.create_lifecycle_publisher(MarkerArray, "~/markers", qos)
        self.result = node.create_lifecycle_publisher(AffordanceResult, "~/result", qos)
        self.debug_image = node.create_lifecycle_publisher(Image, "~/debug_image", qos)
        self.part_points = node.create_lifecycle_publisher(PointCloud2, "~/part_points", qos)
        self._all = [self.mask, self.pose, self.axis, self.path, self.markers, self.result, self.debug_image,
                     self.part_points]

    def publish(self, output: FrameOutput, params: PerceptionParams, logger: RcutilsLogger) -> None:
        """Publish every output of one frame (3D ones only when the prediction has valid depth): what a robot
        consumes first (mask, result, pose), then RViz's, then the images built only for subscribers."""
        prediction, header = output.prediction, output.header
        mask = conversions.numpy_to_image(prediction.mask, "mono8", output.image_header)
        self.mask.publish(mask)
        if prediction.valid_3d:
            length_m = params.axis_marker_length_m
            self.result.publish(conversions.prediction_to_result(prediction, header, output.instruction, mask))
            self.pose.publish(conversions.prediction_to_pose(prediction, header))
            self.axis.publish(conversions.prediction_to_axis_marker(prediction, header, length_m))
            self.path.publish(conversions.prediction_to_path(prediction, header))
            self.markers.publish(conversions.prediction_to_markers(prediction, header, output.instruction, length_m))
        else:
            logger.warning("no valid depth at the predicted interaction point: published the mask only",
                           throttle_duration_sec=_THROTTLE_S)
        if params.publish_debug_image and self.debug_image.get_subscription_count() > 0:  # drawn only when watched
            overlay = draw_overlay(output.decoded.rgb, output.camera_prediction, output.decoded.K,
                                   output.instruction, params.axis_marker_length_m)
            self.debug_image.publish(conversions.numpy_to_image(overlay, "rgb8", output.image_header))
        if self.part_points.get_subscription_count() > 0:
            self.part_points.publish(output.part_cloud(params.cloud_stride, params.min_depth_m, params.max_depth_m))

    def clear_markers(self, header: Header) -> None:
        """Remove this node's markers from RViz (processing stopped)."""
        self.markers.publish(conversions.delete_all_markers(header))

    def destroy(self) -> None:
        """Destroy every publisher (cleanup)."""
        for publisher in self._all:
            self._node.destroy_lifecycle_publisher(publisher)
        self._all = []

