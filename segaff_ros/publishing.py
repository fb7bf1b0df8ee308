"""Publishing that survives the middleware refusing a message.

Fast DDS's ``publish`` raises (rclpy's ``RCLError``, a ``RuntimeError``: "cannot publish data") when a
reliable writer's history stays full past its blocking time: a slow subscriber on a loaded machine is
enough. A camera or a diagnostics timer must lose that one message, not the process.
"""
from __future__ import annotations

from typing import Any

from rclpy.impl.rcutils_logger import RcutilsLogger
from rclpy.publisher import Publisher

_THROTTLE_S = 5.0


def publish_or_warn(publisher: Publisher, msg: Any, logger: RcutilsLogger) -> bool:
    """Publish ``msg``; on a middleware error log a throttled warning naming the topic and return False."""
    try:
        publisher.publish(msg)
    except RuntimeError as error:  # rclpy's RCLError
        logger.warning(f"dropped a message on {publisher.topic_name}: {error}", throttle_duration_sec=_THROTTLE_S)
        return False
    return True
