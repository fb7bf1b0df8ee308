"""Counters of the perception pipeline and their ``diagnostic_msgs/DiagnosticArray`` form.

``PipelineStats`` is filled from the node's threads (thread-safe) and read once a second:
``snapshot()`` returns the rates and latencies of the window since the previous snapshot plus the
running totals. No ROS here except the message classes of ``to_diagnostic_status``.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field, fields
from typing import Callable, Sequence

from diagnostic_msgs.msg import DiagnosticStatus, KeyValue


@dataclass
class StatsSnapshot:
    """One window of the pipeline (rates in Hz, times in ms) and the totals since start."""

    window_s: float
    input_hz: float
    processed_hz: float
    latency_mean_ms: float
    latency_max_ms: float
    inference_mean_ms: float
    window_bad_frames: int
    window_failed_frames: int
    window_dropped_no_transform: int
    frames_in: int
    frames_processed: int
    dropped_replaced: int
    dropped_stale: int
    dropped_idle: int  # arrived (or taken by the worker) while no instruction was set
    dropped_no_transform: int  # skipped: no transform from the camera frame to target_frame at the stamp
    bad_frames: int
    failed_frames: int
    instructions_set: int  # instruction changes handed to Predictor.set_instruction (it encodes the text)
    window_inputs: dict[str, int] = field(default_factory=dict)

    def unsynchronized(self) -> bool:
        """True when inputs arrived in the window but not one synchronized set came of them."""
        return any(self.window_inputs.values()) and self.input_hz == 0.0

    def summary(self) -> str:
        """One log line with the figures that matter when watching the node."""
        return (
            f"input {self.input_hz:.1f} Hz, processed {self.processed_hz:.1f} Hz, "
            f"latency {self.latency_mean_ms:.0f} ms (max {self.latency_max_ms:.0f}), "
            f"dropped {self.dropped_replaced} replaced / {self.dropped_stale} stale / {self.dropped_idle} idle / "
            f"{self.dropped_no_transform} without transform, "
            f"{self.bad_frames} bad, {self.failed_frames} failed"
        )


class PipelineStats:
    """Thread-safe counters: frames in, processed, dropped (replaced / stale), bad, failed."""

    def __init__(self, input_topics: Sequence[str] = (), clock: Callable[[], float] = time.monotonic) -> None:
        self._clock: Callable[[], float] = clock
        self._lock = threading.Lock()
        self._window_start: float = clock()
        self._totals: dict[str, int] = {
            "frames_in": 0,
            "frames_processed": 0,
            "dropped_replaced": 0,
            "dropped_stale": 0,
            "dropped_idle": 0,
            "dropped_no_transform": 0,
            "bad_frames": 0,
            "failed_frames": 0,
            "instructions_set": 0,
        }
        self._window_counts: dict[str, int] = dict.fromkeys(self._totals, 0)
        self._window_inputs: dict[str, int] = dict.fromkeys(input_topics, 0)
        self._window_latencies_ms: list[float] = []
        self._window_inference_ms: list[float] = []

    def count(self, name: str) -> None:
        """Add one to the total ``name`` (a field of StatsSnapshot, e.g. ``"dropped_stale"``)."""
        with self._lock:
            self._totals[name] += 1
            self._window_counts[name] += 1

    def input_received(self, topic: str) -> None:
        """Count one message on the input ``topic`` (before synchronisation)."""
        with self._lock:
            self._window_inputs[topic] = self._window_inputs.get(topic, 0) + 1

    def processed(self, latency_ms: float, inference_ms: float) -> None:
        """Record one published frame: stamp-to-publish latency and model time, ms."""
        with self._lock:
            self._totals["frames_processed"] += 1
            self._window_latencies_ms.append(latency_ms)
            self._window_inference_ms.append(inference_ms)

    def snapshot(self) -> StatsSnapshot:
        """Figures of the window since the previous snapshot (which this one closes) and the totals."""
        with self._lock:
            now = self._clock()
            window_s = max(now - self._window_start, 1e-9)
            latencies, inference = self._window_latencies_ms, self._window_inference_ms
            snapshot = StatsSnapshot(
                window_s=window_s,
                input_hz=self._window_counts["frames_in"] / window_s,
                processed_hz=len(latencies) / window_s,
                latency_mean_ms=sum(latencies) / len(latencies) if latencies else 0.0,
                latency_max_ms=max(latencies, default=0.0),
                inference_mean_ms=sum(inference) / len(inference) if inference else 0.0,
                window_bad_frames=self._window_counts["bad_frames"],
                window_failed_frames=self._window_counts["failed_frames"],
                window_dropped_no_transform=self._window_counts["dropped_no_transform"],
                window_inputs=self._window_inputs,
                **self._totals,
            )
            self._window_start = now
            self._window_counts = dict.fromkeys(self._totals, 0)
            self._window_inputs = dict.fromkeys(self._window_inputs, 0)
            self._window_latencies_ms, self._window_inference_ms = [], []
        return snapshot


def to_diagnostic_status(
    snapshot: StatsSnapshot, name: str, hardware_id: str, processing: bool, lifecycle_state: str = "active"
) -> DiagnosticStatus:
    """A DiagnosticStatus of one snapshot: WARN when the window saw bad or failed frames, frames without a
    transform to the target frame, or no input while an instruction is set; OK otherwise. A node that is
    not active reports its ``lifecycle_state`` (OK: a lifecycle manager's choice)."""
    problems = []
    if snapshot.window_bad_frames or snapshot.window_failed_frames:
        problems.append(
            f"{snapshot.window_bad_frames} bad / {snapshot.window_failed_frames} failed frames in the last "
            f"{snapshot.window_s:.1f} s"
        )
    if snapshot.window_dropped_no_transform:
        problems.append(f"{snapshot.window_dropped_no_transform} frames skipped without a transform to the "
                        f"target frame in the last {snapshot.window_s:.1f} s")
    if snapshot.unsynchronized():
        inputs = ", ".join(f"{topic}: {n}" for topic, n in snapshot.window_inputs.items())
        problems.append(f"inputs arrive ({inputs}) but do not synchronize")
    elif processing and snapshot.input_hz == 0.0:
        problems.append("no input")
    if lifecycle_state != "active":
        level, message = DiagnosticStatus.OK, f"{lifecycle_state} (not processing)"
    else:
        level = DiagnosticStatus.WARN if problems else DiagnosticStatus.OK
        message = "; ".join(problems) if problems else ("processing" if processing else "idle (no instruction)")
    values = [KeyValue(key="lifecycle_state", value=lifecycle_state)] + [
        KeyValue(key=f.name, value=f"{getattr(snapshot, f.name):.6g}")
        for f in fields(snapshot)
        if f.name != "window_inputs"
    ]
    values += [KeyValue(key=f"received {topic}", value=str(n)) for topic, n in snapshot.window_inputs.items()]
    return DiagnosticStatus(level=level, name=name, message=message, hardware_id=hardware_id, values=values)
