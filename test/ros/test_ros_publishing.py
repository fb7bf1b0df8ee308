"""publish_or_warn: a message the middleware refuses is dropped with a warning, never an exception."""
from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("rclpy", reason="rclpy (ROS 2) is not installed")

from segaff_ros.publishing import publish_or_warn  # noqa: E402

pytestmark = pytest.mark.ros


class RefusingPublisher:
    """Raises as rclpy does when Fast DDS cannot write (a RuntimeError subclass, RCLError)."""

    topic_name = "/camera/rgb/image"

    def __init__(self, refuse: bool) -> None:
        self.refuse = refuse
        self.sent: list[Any] = []

    def publish(self, msg: Any) -> None:
        if self.refuse:
            from rclpy._rclpy_pybind11 import RCLError

            raise RCLError("Failed to publish: cannot publish data")
        self.sent.append(msg)


class RecordingLogger:
    def __init__(self) -> None:
        self.warnings: list[str] = []

    def warning(self, text: str, **_: Any) -> None:
        self.warnings.append(text)


def test_a_refused_message_is_dropped_with_a_warning_naming_the_topic() -> None:
    logger = RecordingLogger()
    assert publish_or_warn(RefusingPublisher(refuse=True), "frame", logger) is False
    assert len(logger.warnings) == 1 and "/camera/rgb/image" in logger.warnings[0]
    assert "cannot publish data" in logger.warnings[0]


def test_an_accepted_message_is_sent_without_a_warning() -> None:
    logger, publisher = RecordingLogger(), RefusingPublisher(refuse=False)
    assert publish_or_warn(publisher, "frame", logger) is True
    assert publisher.sent == ["frame"] and logger.warnings == []
