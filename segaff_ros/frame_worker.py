"""The node's worker thread: the model runs on the newest fresh synchronized frame while an instruction is set.

A one-slot mailbox (:class:`~segaff_ros.synchronizer.LatestSlot`) sits between the executor's callbacks and
the worker: frames arriving while the model works replace each other, so no backlog can grow. Frames older
than ``max_frame_age_s`` when the model is free are dropped; ``max_rate_hz`` spaces model runs in wall-clock
time. Both are read at every frame, so ``ros2 param set`` changes them at once.
"""
from __future__ import annotations

import threading
import time
from typing import Callable, Optional

from rclpy.impl.rcutils_logger import RcutilsLogger

from segaff_ros.diagnostics import PipelineStats
from segaff_ros.frame_input import Frame
from segaff_ros.node_parameters import PerceptionParams
from segaff_ros.synchronizer import LatestSlot

_LOG_THROTTLE_S = 5.0
_TAKE_TIMEOUT_S = 0.5


class FrameWorker:
    """Runs ``process(frame, instruction)`` in its own thread between :meth:`start` and :meth:`stop`."""

    def __init__(
        self,
        process: Callable[[Frame, str], None],
        instruction: Callable[[], str],
        params: Callable[[], PerceptionParams],
        now_ns: Callable[[], int],
        stats: PipelineStats,
        logger: RcutilsLogger,
    ) -> None:
        self._process = process
        self._instruction = instruction
        self._params = params
        self._now_ns = now_ns
        self._stats = stats
        self._logger = logger
        self._stop = threading.Event()
        self.slot: LatestSlot[Frame] = LatestSlot()
        self._thread: Optional[threading.Thread] = None

    def offer(self, frame: Frame) -> None:
        """A new synchronized frame (counted as replaced when it replaces one the worker never took)."""
        if self.slot.put(frame):
            self._stats.count("dropped_replaced")

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="segaff_worker", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop after the frame in progress (idempotent)."""
        self._stop.set()
        self.slot.close()
        if self._thread is not None and self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=timeout_s)

    def _run(self) -> None:
        next_start = time.monotonic()
        while not self._stop.is_set():
            if self._stop.wait(max(next_start - time.monotonic(), 0.0)):
                break
            frame = self.slot.take(timeout_s=_TAKE_TIMEOUT_S)
            instruction = self._instruction()
            if frame is None or self._stop.is_set():
                continue
            if not instruction:
                self._stats.count("dropped_idle")
                continue
            params = self._params()
            age_s = (self._now_ns() - frame.stamp_ns) * 1e-9
            if 0.0 < params.max_frame_age_s < age_s:
                self._stats.count("dropped_stale")
                self._logger.warning(
                    f"dropping frames older than max_frame_age_s = {params.max_frame_age_s} s "
                    f"(this one: {age_s:.2f} s)",
                    throttle_duration_sec=_LOG_THROTTLE_S,
                )
                continue
            next_start = time.monotonic() + (1.0 / params.max_rate_hz if params.max_rate_hz > 0 else 0.0)
            self._process(frame, instruction)
