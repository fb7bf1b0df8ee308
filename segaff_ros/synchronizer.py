"""Approximate-time synchronisation of several timestamped inputs, without ROS.

The policy of ``message_filters.ApproximateTimeSynchronizer`` (ROS 2 Python): when an item arrives, the
combinations of the other inputs' items within ``slop`` of it are tried closest first, and the first set
whose stamps all lie within ``slop`` of each other is emitted and removed. In addition, items older than
an emitted set are discarded: they can only ever form an older set, and the consumer wants the newest frame.

One deliberate difference: every input keeps the ``queue_size`` items it received last, where
message_filters keeps the newest by stamp. With stamps from a clock that jumped (a camera driver
restarted with another time base, a looping bag, a corrupt stamp), dropping the oldest stamp drops each
new item on arrival once a queue is full of later-stamped leftovers, and the synchronizer never emits
again (and an item dropped on arrival could still be matched: a KeyError). Dropping the oldest arrival
never drops the item just received, and leftovers leave as newer items push them out. For stamps that
only grow, the two policies are the same.

The perception node uses this class when ``message_filters`` is not importable; it knows nothing of
messages, so it is tested with plain integers as stamps.
"""
from __future__ import annotations

import itertools
import threading
from typing import Any, Callable, Generic, TypeVar

Item = TypeVar("Item")


class ApproximateTimeSynchronizer(Generic[Item]):
    """Calls ``callback(*items)`` with one item per input whose stamps lie within ``slop_s``."""

    def __init__(
        self, num_inputs: int, queue_size: int, slop_s: float, callback: Callable[..., Any]
    ) -> None:
        if num_inputs < 2:
            raise ValueError(f"synchronising needs at least 2 inputs, got {num_inputs}")
        if queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size}")
        if not slop_s >= 0.0:
            raise ValueError(f"slop_s must be >= 0, got {slop_s}")
        self._queues: list[dict[int, Item]] = [{} for _ in range(num_inputs)]
        self._queue_size: int = queue_size
        self._slop_ns: int = int(round(slop_s * 1e9))
        self._callback: Callable[..., Any] = callback
        self._lock = threading.Lock()

    def add(self, index: int, stamp_ns: int, item: Item) -> None:
        """Add ``item`` stamped ``stamp_ns`` to input ``index``; calls the callback when a set matches.

        Thread-safe; the callback runs in the calling thread, outside the internal lock.
        """
        with self._lock:
            matched = self._add_locked(index, stamp_ns, item)
        if matched is not None:
            self._callback(*matched)

    def _add_locked(self, index: int, stamp_ns: int, item: Item) -> list[Item] | None:
        """Queue the item and return the matched set (removed from the queues), or None."""
        queue = self._queues[index]
        queue.pop(stamp_ns, None)  # a repeated stamp counts as a new arrival (dicts keep insertion order)
        queue[stamp_ns] = item
        while len(queue) > self._queue_size:
            del queue[next(iter(queue))]  # the oldest arrival, never the item just added

        candidates: list[list[int]] = []
        for other_index, other in enumerate(self._queues):
            if other_index == index:
                continue
            near = sorted((abs(s - stamp_ns), s) for s in other if abs(s - stamp_ns) <= self._slop_ns)
            if not near:
                return None
            candidates.append([s for _, s in near])

        for combination in itertools.product(*candidates):
            stamps = list(combination)
            stamps.insert(index, stamp_ns)
            if max(stamps) - min(stamps) <= self._slop_ns:
                matched = [q.pop(s) for q, s in zip(self._queues, stamps)]
                for q, s in zip(self._queues, stamps):
                    for old in [t for t in q if t < s]:
                        del q[old]
                return matched
        return None

    def queued(self) -> list[int]:
        """How many items each input holds now (for tests and diagnostics)."""
        with self._lock:
            return [len(q) for q in self._queues]

    def clear(self) -> None:
        """Drop every queued item."""
        with self._lock:
            for queue in self._queues:
                queue.clear()


class LatestSlot(Generic[Item]):
    """A one-slot mailbox between a producer and a slower consumer: the newest item wins.

    ``put`` replaces an item the consumer has not taken yet (no backlog can grow); ``take`` waits for one.
    """

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._item: Item | None = None
        self._closed: bool = False

    def put(self, item: Item) -> bool:
        """Store ``item``; returns True when it replaced one that was never taken."""
        with self._condition:
            replaced = self._item is not None
            self._item = item
            self._condition.notify()
        return replaced

    def take(self, timeout_s: float) -> Item | None:
        """The newest item (removing it), waiting up to ``timeout_s``; None on timeout or when closed."""
        with self._condition:
            self._condition.wait_for(lambda: self._item is not None or self._closed, timeout_s)
            item, self._item = self._item, None
        return item

    def close(self) -> None:
        """Wake every waiting ``take`` (it returns what is left, else None) and end the hand-over."""
        with self._condition:
            self._closed = True
            self._condition.notify_all()
