"""The package's own approximate-time synchronizer and the one-slot mailbox, without ROS."""
from __future__ import annotations

import threading
import time

import pytest

from segaff_ros.synchronizer import ApproximateTimeSynchronizer, LatestSlot

MS = 1_000_000  # nanoseconds per millisecond


class Recorder:
    def __init__(self) -> None:
        self.sets: list[tuple] = []

    def __call__(self, *items) -> None:
        self.sets.append(items)


def make(
    num_inputs: int = 3, queue_size: int = 10, slop_s: float = 0.01
) -> tuple[ApproximateTimeSynchronizer, Recorder]:
    recorder = Recorder()
    return ApproximateTimeSynchronizer(num_inputs, queue_size, slop_s, recorder), recorder


def test_exact_stamps_match_once_all_inputs_arrived() -> None:
    sync, out = make()
    sync.add(0, 100 * MS, "rgb")
    sync.add(1, 100 * MS, "depth")
    assert out.sets == []
    sync.add(2, 100 * MS, "info")
    assert out.sets == [("rgb", "depth", "info")]
    assert sync.queued() == [0, 0, 0]


def test_stamps_within_slop_match_and_outside_do_not() -> None:
    sync, out = make(slop_s=0.01)
    sync.add(0, 100 * MS, "rgb")
    sync.add(1, 112 * MS, "depth-too-far")
    sync.add(2, 104 * MS, "info")
    assert out.sets == []
    sync.add(1, 108 * MS, "depth")
    assert out.sets == [("rgb", "depth", "info")]


def test_items_are_handed_over_in_input_order_whatever_arrives_last() -> None:
    sync, out = make(num_inputs=2, slop_s=0.0)
    sync.add(1, 5 * MS, "b")
    sync.add(0, 5 * MS, "a")
    assert out.sets == [("a", "b")]


def test_closest_candidate_wins() -> None:
    sync, out = make(num_inputs=2, slop_s=0.02)
    sync.add(1, 90 * MS, "far")
    sync.add(1, 99 * MS, "near")
    sync.add(0, 100 * MS, "rgb")
    assert out.sets == [("rgb", "near")]


def test_the_whole_set_must_lie_within_slop_not_only_each_pair_with_the_new_item() -> None:
    sync, out = make(slop_s=0.01)
    sync.add(0, 92 * MS, "rgb-early")
    sync.add(1, 108 * MS, "depth-late")
    # 100 is within 10 ms of both, but 92 and 108 are 16 ms apart.
    sync.add(2, 100 * MS, "info")
    assert out.sets == []


def test_queue_keeps_the_newest_items_only() -> None:
    sync, out = make(num_inputs=2, queue_size=3, slop_s=0.0)
    for i in range(10):
        sync.add(0, i * MS, f"rgb{i}")
    assert sync.queued() == [3, 0]
    sync.add(1, 2 * MS, "depth2")  # rgb2 was pushed out of the queue
    assert out.sets == []
    sync.add(1, 8 * MS, "depth8")
    assert out.sets == [("rgb8", "depth8")]


def test_a_queue_full_of_later_stamps_does_not_make_the_synchronizer_deaf() -> None:
    """A clock that jumped back (a restarted driver, a looping bag): the leftovers of the old time base
    fill the queue, yet every new frame comes out."""
    sync, out = make(queue_size=3, slop_s=0.0)
    for i in range(3):
        sync.add(0, (1000 + i) * MS, f"rgb-old{i}")  # their depth and camera_info were lost
    for i in range(4):
        for index, name in enumerate(("rgb", "depth", "info")):
            sync.add(index, i * MS, f"{name}{i}")
    assert [items[0] for items in out.sets] == ["rgb0", "rgb1", "rgb2", "rgb3"]


def test_an_item_older_than_a_full_queue_is_matched_not_a_key_error() -> None:
    sync, out = make(queue_size=1, slop_s=0.0)
    sync.add(0, 50 * MS, "rgb-later")
    sync.add(1, 10 * MS, "depth")
    sync.add(2, 10 * MS, "info")
    sync.add(0, 10 * MS, "rgb")  # evicted on arrival by stamp, then popped: KeyError in the subscription
    assert out.sets == [("rgb", "depth", "info")]


def test_older_items_are_discarded_after_a_match_so_sets_come_out_in_order() -> None:
    sync, out = make(num_inputs=2, slop_s=0.0)
    sync.add(0, 1 * MS, "rgb1")
    sync.add(0, 2 * MS, "rgb2")
    sync.add(1, 2 * MS, "depth2")
    assert out.sets == [("rgb2", "depth2")]
    assert sync.queued() == [0, 0]  # rgb1 can only ever form an older set
    sync.add(1, 1 * MS, "depth1-late")
    assert out.sets == [("rgb2", "depth2")]


def test_a_30_hz_stream_with_jitter_matches_every_frame() -> None:
    sync, out = make(slop_s=0.005)
    period = 33 * MS
    for i in range(100):
        base = i * period
        # depth and camera_info come a little late and in varying order
        sync.add(0, base, ("rgb", i))
        sync.add(2, base + (i % 3) * MS, ("info", i))
        sync.add(1, base + 2 * MS, ("depth", i))
    assert len(out.sets) == 100
    assert all(rgb[1] == depth[1] == info[1] for rgb, depth, info in out.sets)


def test_thread_safe_under_concurrent_producers() -> None:
    sync, out = make(slop_s=0.0, queue_size=1000)
    n = 500

    def produce(index: int) -> None:
        for i in range(n):
            sync.add(index, i * MS, i)

    threads = [threading.Thread(target=produce, args=(k,)) for k in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert out.sets, "no set matched"
    stamps = [s[0] for s in out.sets]
    assert all(a == b == c for a, b, c in out.sets)
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)


@pytest.mark.parametrize(
    "args", [(1, 10, 0.01), (3, 0, 0.01), (3, 10, -0.1), (3, 10, float("nan"))], ids=str
)
def test_bad_configuration_is_rejected(args) -> None:
    with pytest.raises(ValueError):
        ApproximateTimeSynchronizer(*args, callback=print)


def test_latest_slot_keeps_only_the_newest_item() -> None:
    slot: LatestSlot[int] = LatestSlot()
    assert slot.put(1) is False
    assert slot.put(2) is True  # 1 was never taken: replaced
    assert slot.take(timeout_s=0.0) == 2
    assert slot.take(timeout_s=0.01) is None


def test_latest_slot_take_waits_for_a_producer_and_close_wakes_it() -> None:
    slot: LatestSlot[str] = LatestSlot()
    threading.Timer(0.05, slot.put, args=("frame",)).start()
    started = time.monotonic()
    assert slot.take(timeout_s=5.0) == "frame"
    assert time.monotonic() - started < 4.0

    taken: list = []
    waiter = threading.Thread(target=lambda: taken.append(slot.take(timeout_s=30.0)))
    waiter.start()
    slot.close()
    waiter.join(timeout=5.0)
    assert not waiter.is_alive() and taken == [None]
