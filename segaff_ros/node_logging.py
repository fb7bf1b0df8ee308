"""The node's logging: Python ``logging`` of ``segaff_core`` into the ROS log, and a per-text throttle.

:class:`CoreLogForwarding` attaches a handler to the ``segaff_core`` logger that writes each record through
the node's logger, and stops the record from also reaching Python's root logger: a process whose root
logger has a handler (``logging.basicConfig`` by a library, ``launch``'s own logging) would show every line
twice otherwise. :meth:`CoreLogForwarding.close` restores the logger as it was.
"""
from __future__ import annotations

import logging
import time

from rclpy.impl.rcutils_logger import RcutilsLogger

CORE_LOGGER = "segaff_core"


class _ForwardToNodeLogger(logging.Handler):
    """Writes ``logging`` records through a ROS logger, one severity per call site."""

    def __init__(self, logger: RcutilsLogger) -> None:
        super().__init__(level=logging.INFO)
        self._logger = logger

    def emit(self, record: logging.LogRecord) -> None:
        # One call per severity: rclpy keys its loggers on the calling line, which keeps one severity.
        text = f"{record.name}: {record.getMessage()}"
        if record.levelno >= logging.ERROR:
            self._logger.error(text)
        elif record.levelno >= logging.WARNING:
            self._logger.warning(text)
        else:
            self._logger.info(text)


class CoreLogForwarding:
    """While open, ``segaff_core`` records at INFO and above go to ``logger`` only (not to the root logger)."""

    def __init__(self, logger: RcutilsLogger) -> None:
        self._core = logging.getLogger(CORE_LOGGER)
        self._handler = _ForwardToNodeLogger(logger)
        self._previous = (self._core.level, self._core.propagate)
        self._core.setLevel(logging.INFO)
        self._core.propagate = False
        self._core.addHandler(self._handler)

    def close(self) -> None:
        """Detach the handler and restore the logger's level and propagation (idempotent)."""
        if self._handler in self._core.handlers:
            self._core.removeHandler(self._handler)
            self._core.setLevel(self._previous[0])
            self._core.propagate = self._previous[1]


class TextThrottle:
    """A throttle per distinct text: each kind of bad input gets its own line, a stream of them does not flood
    (rclpy's ``throttle_duration_sec`` keys on the call site, which would hide all but the first kind)."""

    def __init__(self, period_s: float, max_texts: int = 100) -> None:
        self._period_s = period_s
        self._max_texts = max_texts
        self._last_s: dict[str, float] = {}

    def first_in_while(self, text: str) -> bool:
        """True when ``text`` was not let through in the last period (then it counts as let through now)."""
        now_s = time.monotonic()
        if now_s - self._last_s.get(text, -self._period_s) < self._period_s:
            return False
        if len(self._last_s) > self._max_texts:
            self._last_s.clear()
        self._last_s[text] = now_s
        return True
