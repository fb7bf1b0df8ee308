"""Spinning a process's executor until Ctrl-C or shutdown, with the race of a Ctrl-C and the executor."""
from __future__ import annotations

from typing import Optional

import rclpy
from rclpy.context import Context
from rclpy.executors import Executor, ExternalShutdownException
from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy  # RCLError, as rclpy imports it


def spin_until_shutdown(executor: Executor, context: Optional[Context] = None) -> None:
    """``executor.spin()`` until a Ctrl-C or a shutdown of ``context`` (None: the default one). rclpy's SIGINT
    handler shuts the context down; when that lands while the executor builds its next wait set, ``spin``
    raises ``RCLError`` ("the given context is not valid"): a normal stop too. The same error with the context
    still valid is raised."""
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except _rclpy.RCLError:
        if rclpy.ok(context=context):
            raise
