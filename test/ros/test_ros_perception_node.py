"""The perception node as a process over real DDS: outputs, instruction handling, query, bad input, load.

One node process (a small random-weight checkpoint) serves every test of this module; each test uses
its own frame stamps and instructions, so the tests do not depend on their order.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="rclpy (ROS 2) is not installed")
pytest.importorskip("segaff_msgs.msg", reason="segaff_msgs is not built (scripts/setup.sh builds it)")
psutil = pytest.importorskip("psutil")

from ros_helpers import (  # noqa: E402
    OUTPUT_TOPICS,
    FrameSpec,
    FrameStream,
    NodeProcess,
    Probe,
    intrinsics,
    wait_until,
)
from segaff_core.inference import DEPTH_WINDOW_PX  # noqa: E402
from segaff_ros.conversions import image_to_numpy, stamp_to_ns  # noqa: E402
from segaff_ros.perception_node import MAX_INSTRUCTION_CHARS  # noqa: E402

pytestmark = pytest.mark.ros

FRAME_ID = "test_camera_optical_frame"
AXIS_MARKER_LENGTH_M = 0.15
TIMEOUT_S = 60.0  # generous: two shared cores, inference of a few hundred ms
LOAD_S = 12.0  # the load test's 30 Hz input: dozens of model runs, each slower than the input


@pytest.fixture(scope="module")
def perception(small_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Probe, NodeProcess]]:
    """The perception node process and a probe connected to it."""
    probe = Probe()
    node = NodeProcess(
        tmp_path_factory.mktemp("perception") / "node.log",
        [
            "-p", f"checkpoint:={small_checkpoint}",
            "-p", "device:=cpu",
            "-p", "cpu_threads:=1",  # the test's publishers share the two cores: no oversubscription
            "-p", "backend:=torch",  # the load test needs a model slower than its 30 Hz input
            "-p", "input_height:=384",
            "-p", "input_width:=384",
            "-p", "max_frame_age_s:=2.0",
            "-p", f"axis_marker_length_m:={AXIS_MARKER_LENGTH_M}",
            "--log-level", "segaff_perception:=debug",
        ],
    )
    try:
        assert probe.wait_for_perception_node(), f"the node did not come up:\n{node.log()}"
        yield probe, node
    finally:
        code = node.stop()
        probe.close()
    assert code == 0, f"the node did not shut down cleanly on Ctrl-C (exit {code}):\n{node.log()[-3000:]}"


def header_of(topic: str, msg: Any) -> Any:
    return msg.markers[0].header if topic == "markers" else msg.header


def complete_stamp(probe: Probe, stamps: list[int], instruction: str) -> Optional[int]:
    """A stamp of ``stamps`` processed only with ``instruction`` for which every output topic has a message.

    A new instruction makes the node answer again on its newest frame, so a stamp can be processed twice
    (with the previous test's instruction, then with this one): such stamps are left out, so that each
    topic's message at the returned stamp belongs to ``instruction``.
    """
    common = {stamp_to_ns(r.header.stamp) for r in results_for(probe, stamps, instruction)}
    common -= {stamp_to_ns(r.header.stamp) for r in results_for(probe, stamps) if r.instruction != instruction}
    for topic in OUTPUT_TOPICS:
        common &= {stamp_to_ns(header_of(topic, m).stamp) for m in probe.messages(topic)}
    return max(common) if common else None


def message_at(probe: Probe, topic: str, stamp: int) -> Any:
    """The one message of ``topic`` with ``stamp``."""
    matches = [m for m in probe.messages(topic) if stamp_to_ns(header_of(topic, m).stamp) == stamp]
    assert len(matches) == 1, f"{len(matches)} messages on {topic} with stamp {stamp}"
    return matches[0]


def results_for(probe: Probe, stamps: list[int], instruction: Optional[str] = None) -> list[Any]:
    sent = set(stamps)
    return [
        r for r in probe.messages("result")
        if stamp_to_ns(r.header.stamp) in sent and (instruction is None or r.instruction == instruction)
    ]


def run_until_result(
    probe: Probe, spec: FrameSpec, instruction: str, expected_instruction: Optional[str] = None
) -> tuple[FrameStream, Any]:
    """Stream ``spec`` frames at 10 Hz with ``instruction`` (published again every second) until a result
    for one of them arrives (with ``expected_instruction``, default ``instruction``); returns the
    (stopped) stream and that result."""
    expected = instruction if expected_instruction is None else expected_instruction
    with FrameStream(probe, spec, rate_hz=10.0) as stream:
        found = wait_until(
            lambda: results_for(probe, stream.stamps, expected), TIMEOUT_S, action=lambda: probe.instruct(instruction)
        )
    assert found, f"no result for instruction {expected!r} within {TIMEOUT_S} s"
    return stream, found[0]


def assert_lifted_from_the_depth_surface(point: np.ndarray, result: Any, mask: np.ndarray, spec: FrameSpec) -> None:
    """The interaction point lies on the ray of its pixel, at the depth the Predictor's rule reads from the
    published depth (``geometry.robust_depth_at``): the surface itself where the depth window at the pixel
    meets the mask, else the median depth over the mask (a random-weight model's point may lie outside it)."""
    K = intrinsics(spec.width, spec.height)
    u, v = result.interaction_u, result.interaction_v
    projected = K @ point
    np.testing.assert_allclose(projected[:2] / projected[2], [u, v], atol=0.51)
    half = DEPTH_WINDOW_PX // 2 * spec.depth_scale
    col, row = int(round(u)), int(round(v))
    if mask[max(row - half, 0): row + half + 1, max(col - half, 0): col + half + 1].any():
        assert spec.plane.distance_to(point) < 0.02, "the interaction point is not on the depth surface"
    else:
        surface = spec.plane.depth_m(K, spec.width, spec.height)[mask]
        assert point[2] == pytest.approx(float(np.median(surface)), abs=0.02), "not the mask's median depth"


@pytest.mark.parametrize(
    "depth_encoding, depth_scale", [("16UC1", 1), ("32FC1", 1), ("16UC1", 2)], ids=["16UC1", "32FC1", "16UC1-half-size"]
)
def test_every_output_arrives_with_the_rgb_header(perception, depth_encoding: str, depth_scale: int) -> None:
    probe, node = perception
    spec = FrameSpec(depth_encoding=depth_encoding, depth_scale=depth_scale)
    instruction = f"open the top drawer ({depth_encoding}, scale {depth_scale})"
    with FrameStream(probe, spec, rate_hz=10.0) as stream:
        stamp = wait_until(lambda: complete_stamp(probe, stream.stamps, instruction), TIMEOUT_S,
                           action=lambda: probe.instruct(instruction))
    assert stamp, f"not every output topic published for one frame:\n{node.log()[-3000:]}"

    for topic in OUTPUT_TOPICS:
        header = header_of(topic, message_at(probe, topic, stamp))
        assert header.frame_id == FRAME_ID, topic
        assert stamp_to_ns(header.stamp) == stamp, topic

    mask = message_at(probe, "mask", stamp)
    assert (mask.encoding, mask.width, mask.height) == ("mono8", spec.width, spec.height)
    assert set(np.unique(np.frombuffer(mask.data, np.uint8))) <= {0, 255}
    debug = message_at(probe, "debug_image", stamp)
    assert (debug.encoding, debug.width, debug.height) == ("rgb8", spec.width, spec.height)
    assert image_to_numpy(debug).shape == (spec.height, spec.width, 3)

    result = results_for(probe, [stamp], instruction)[0]
    assert (result.mask.width, result.mask.height) == (spec.width, spec.height)
    axis = np.array([result.axis.x, result.axis.y, result.axis.z])
    assert np.linalg.norm(axis) == pytest.approx(1.0, abs=1e-4)
    assert len(result.trajectory) == 20
    assert 0 <= result.interaction_u < spec.width and 0 <= result.interaction_v < spec.height
    assert result.inference_time_ms > 0

    pose = message_at(probe, "interaction_pose", stamp).pose
    point = np.array([pose.position.x, pose.position.y, pose.position.z])
    published_mask = np.frombuffer(result.mask.data, np.uint8).reshape(spec.height, spec.width) > 0
    assert_lifted_from_the_depth_surface(point, result, published_mask, spec)
    first = result.trajectory[0]
    np.testing.assert_allclose([first.x, first.y, first.z], point, atol=1e-5)
    q = pose.orientation
    assert np.linalg.norm([q.x, q.y, q.z, q.w]) == pytest.approx(1.0, abs=1e-5)
    approach = rotate_z(q)
    assert approach @ spec.plane.normal > 0.9, "+z of the pose must point into the plane"

    path = message_at(probe, "trajectory", stamp)
    assert len(path.poses) == 20
    np.testing.assert_allclose(
        [[p.pose.position.x, p.pose.position.y, p.pose.position.z] for p in path.poses],
        [[t.x, t.y, t.z] for t in result.trajectory], atol=1e-5,
    )
    arrow = message_at(probe, "axis_marker", stamp)
    start, end = (np.array([p.x, p.y, p.z]) for p in arrow.points)
    np.testing.assert_allclose(end - start, AXIS_MARKER_LENGTH_M * axis, atol=1e-4)
    markers = message_at(probe, "markers", stamp).markers
    assert len(markers) == 4 and all(m.header.frame_id == FRAME_ID for m in markers)


def rotate_z(q: Any) -> np.ndarray:
    """The +z axis of the unit quaternion ``q``."""
    x, y, z, w = q.x, q.y, q.z, q.w
    return np.array([2 * (x * z + w * y), 2 * (y * z - w * x), 1 - 2 * (x * x + y * y)])


@pytest.mark.parametrize("stop", ["", "   "], ids=["empty", "whitespace"])
def test_instruction_is_sticky_encoded_once_and_empty_stops(perception, stop: str) -> None:
    probe, node = perception
    stops_logged = node.log().count("processing stopped")
    spec = FrameSpec()
    _, _ = run_until_result(probe, spec, "open the left door")
    instructions_set = probe.fresh_diagnostic_count("instructions_set")

    with FrameStream(probe, spec, rate_hz=10.0) as stream:
        for _ in range(5):  # the same instruction again: changes nothing, encodes nothing
            probe.instruct("open the left door")
        first = len(stream.stamps)
        assert wait_until(lambda: len(results_for(probe, stream.stamps[first:], "open the left door")) >= 3,
                          TIMEOUT_S)
        assert probe.fresh_diagnostic_count("instructions_set") == instructions_set

        probe.instruct(stop)  # empty or whitespace = stop
        assert wait_until(
            lambda: any(m.markers and m.markers[0].action == m.markers[0].DELETEALL for m in probe.messages("markers")),
            TIMEOUT_S,
        ), "stopping did not clear the markers"
        stopped_at = probe.now_ns()
        time.sleep(3.0)  # frames keep coming for 3 s: none may be processed
        late = [r for r in probe.messages("result") if stamp_to_ns(r.header.stamp) > stopped_at + 500_000_000]
        assert late == [], "results were published after the empty instruction"
        assert node.log().count("processing stopped") == stops_logged + 1

        response = probe.query("which handle opens the door")  # the query still works while stopped
        assert response.success, response.message

        count = len(stream.stamps)
        probe.instruct("pull the handle")
        assert wait_until(lambda: results_for(probe, stream.stamps[count:], "pull the handle"), TIMEOUT_S,
                          action=lambda: probe.instruct("pull the handle"))
    assert probe.fresh_diagnostic_count("instructions_set") == instructions_set + 1


def test_long_instruction_is_truncated_with_a_warning(perception) -> None:
    probe, node = perception
    long_instruction = "open the drawer " * 125  # 2000 characters
    expected = long_instruction.strip()[:MAX_INSTRUCTION_CHARS]
    _, result = run_until_result(probe, FrameSpec(), long_instruction, expected)
    assert len(result.instruction) == MAX_INSTRUCTION_CHARS
    for _ in range(3):  # published again, as ros2 topic pub does every second: no new warning
        probe.instruct(long_instruction)
        time.sleep(0.3)
    probe.instruct("open the drawer")  # a message after those: once it is logged, the repeats were handled
    assert wait_until(lambda: "instruction: 'open the drawer'" in node.log(), TIMEOUT_S)
    assert node.log().count(f"instruction of {len(long_instruction.strip())} characters truncated") == 1


def test_query_answers_on_the_newest_frame(perception) -> None:
    probe, _ = perception
    spec = FrameSpec(depth_encoding="32FC1")
    with FrameStream(probe, spec, rate_hz=10.0) as stream:
        assert wait_until(lambda: len(stream.stamps) >= 5, TIMEOUT_S)
        sent_before = len(stream.stamps)
        response = probe.query("open the microwave")
        sent = list(stream.stamps)
    assert response.success, response.message
    result = response.result
    assert result.instruction == "open the microwave"
    assert result.header.frame_id == FRAME_ID
    # The newest frame when the service ran: sent at most ~0.5 s before the call, or while it was pending.
    assert stamp_to_ns(result.header.stamp) in sent[sent_before - 5:], "the query did not use a recent frame"
    assert (result.mask.width, result.mask.height) == (spec.width, spec.height)
    assert len(result.trajectory) == 20

    empty = probe.query("  ")
    assert not empty.success and "empty" in empty.message


BAD_INPUTS = {
    "unsupported-rgb-encoding": (FrameSpec(rgb_encoding="yuv422"), "RGB image encoding 'yuv422'"),
    "unsupported-depth-encoding": (FrameSpec(depth_encoding="8UC1"), "depth image encoding '8UC1'"),
    "depth-size-not-integer-scale": (FrameSpec(depth_size=(100, 75)), "not an integer scale"),
    "depth-all-invalid": (FrameSpec(zero_depth=True), "no valid pixel"),
    "rgb-data-too-short": (FrameSpec(truncate_rgb=True), "expected step x height"),
    "camera-info-zero-K": (FrameSpec(zero_K=True), "camera_info K"),
    "no-camera-info": (FrameSpec(send_camera_info=False), "do not synchronize"),
    "stale-frames": (FrameSpec(stamp_offset_s=-5.0), "older than max_frame_age_s"),
}
BAD_INPUT_COUNTERS = {"no-camera-info": None, "stale-frames": "dropped_stale"}
"""The /diagnostics counter each bad input raises (None: no synchronized frame, nothing to count); else bad_frames."""


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_logged_skipped_and_the_node_keeps_serving(perception, case: str) -> None:
    probe, node = perception
    bad_spec, expected_log = BAD_INPUTS[case]
    counter = BAD_INPUT_COUNTERS.get(case, "bad_frames")
    counted_before = probe.fresh_diagnostic_count(counter) if counter else 0
    instruction = f"open the drawer ({case})"
    with FrameStream(probe, bad_spec, rate_hz=10.0) as bad:
        logged = wait_until(lambda: expected_log in node.log(), TIMEOUT_S, action=lambda: probe.instruct(instruction))
    assert logged, f"no log line with {expected_log!r}:\n{node.log()[-3000:]}"
    if counter:
        assert probe.fresh_diagnostic_count(counter) > counted_before, f"{case} not counted as {counter}"
    assert node.alive()
    assert results_for(probe, bad.stamps) == [], "a result was published for a bad frame"
    assert node.log().count(expected_log) <= 3, "the bad input is not throttled in the log"

    run_until_result(probe, FrameSpec(), instruction)  # still serving valid frames
    assert node.alive()


def test_frame_id_mismatch_is_warned_once_and_the_rgb_frame_is_used(perception) -> None:
    probe, node = perception
    spec = FrameSpec(depth_frame_id="some_depth_frame")
    for _ in range(2):
        _, result = run_until_result(probe, spec, "open the fridge")
        assert result.header.frame_id == FRAME_ID
    assert node.log().count("differs from depth frame_id") == 1


def test_load_30hz_outputs_stay_recent_without_backlog_or_memory_growth(perception) -> None:
    probe, node = perception
    process = psutil.Process(node.popen.pid)
    spec = FrameSpec(width=320, height=240)
    instruction = "open the bottom drawer under load"
    _, _ = run_until_result(probe, spec, instruction)
    first_result = len(probe.messages("result"))
    rss_samples: list[int] = []
    with FrameStream(probe, spec, rate_hz=30.0) as stream:
        start = time.monotonic()
        while time.monotonic() - start < LOAD_S:
            time.sleep(1.0)
            rss_samples.append(process.memory_info().rss)
        sent = len(stream.stamps)
    results = [(t, r) for t, r in probe.timed("result")[first_result:] if r.instruction == instruction]
    assert len(results) >= 5, f"only {len(results)} results in {LOAD_S} s:\n{node.log()[-2000:]}"
    assert sent >= LOAD_S * 30 * 0.7, f"the test could only publish {sent} frames in {LOAD_S} s"

    # Every output refers to a frame that was the newest when the model became free: its age on arrival
    # is bounded by the model time plus transport, never by a queue of waiting frames. The model time
    # itself varies with the load of the shared cores; the wait outside the model is what a backlog grows.
    # A queue makes every later output old (the input stays faster than the model, so it never drains);
    # a scheduling stall of the shared cores delays one output (seen once in CI: 2.2 s once in 50). So at
    # most one output in ten may be late, and the last one must not be.
    ages_s = [t - stamp_to_ns(r.header.stamp) * 1e-9 for t, r in results]
    model_s = [r.inference_time_ms * 1e-3 for _, r in results]
    late = [a > 2.0 * m + 1.0 for a, m in zip(ages_s, model_s)]
    timeline = [(round(a, 2), round(m, 2)) for a, m in zip(ages_s, model_s)]
    assert sum(late) <= len(late) // 10 and not late[-1], f"outputs lag behind the input (age s, model s): {timeline}"
    waits_s = [a - m for a, m in zip(ages_s, model_s)]
    third = len(waits_s) // 3
    assert np.median(waits_s[-third:]) < np.median(waits_s[:third]) + 1.0, f"waits grow: {waits_s}"

    diagnostics = probe.diagnostics()
    assert diagnostics is not None and float(diagnostics["frames_in"]) > 0
    assert np.mean(model_s) > 1.0 / 30.0, "the model must be slower than the input for this test"
    assert probe.diagnostic_count("dropped_replaced") > 0, "frames must replace each other, not queue"
    # No queue: once the input stops, every synchronized frame that came in is accounted for (processed,
    # replaced, stale, idle, bad or failed) but for at most the one in the slot and the one in the model.
    # (A new instruction hands the newest frame to the model again: at most one extra per instruction.)
    probe.fresh_diagnostic_count("frames_in")
    counts = {key: int(float(value)) for key, value in probe.diagnostics().items()
              if key not in ("message", "lifecycle_state")}
    accounted = sum(counts[k] for k in ("frames_processed", "dropped_replaced", "dropped_stale", "dropped_idle",
                                        "dropped_no_transform", "bad_frames", "failed_frames"))
    assert -counts["instructions_set"] <= counts["frames_in"] - accounted <= 2, f"frames held back: {counts}"

    assert " Hz, processed " in node.log(), "no once-a-second figures at debug level"

    settled = rss_samples[len(rss_samples) // 3:]
    growth_mb = (max(settled) - settled[0]) / 2**20
    assert growth_mb < 50, f"RSS grew by {growth_mb:.0f} MB under load: {[s // 2**20 for s in rss_samples]}"


def test_cpu_threads_parameter_sets_the_model_thread_count(perception) -> None:
    _, node = perception
    assert "1 CPU threads" in node.log(), node.log()[:2000]


def test_camera_sized_frames_sent_one_at_a_time_each_get_a_result(perception) -> None:
    """Every 640x480 frame (rgb8 900 KB, more than Fast DDS's default 512 KB shared-memory segment) sent
    alone gets its result within 2.5 s, with the shipped profile (config/fastdds_large_images.xml) that
    the test processes and nodes use, as the demo does. Without it, fragments lost over UDP wait for the
    writer's next heartbeat (3 s) and such frames often arrive stale (bench/node_latency.py, 640x480)."""
    probe, node = perception
    spec = FrameSpec(width=640, height=480)
    instruction = "open the door of a full-size frame"
    run_until_result(probe, spec, instruction)
    for _ in range(6):
        stamp = probe.publish_frame(spec)
        answered = wait_until(lambda: results_for(probe, [stamp], instruction), 2.5)
        assert answered, f"no result within 2.5 s for a 640x480 frame sent alone:\n{node.log()[-2000:]}"


def test_core_log_lines_appear_once(perception) -> None:
    """segaff_core's lines go through the node's logger only: a root handler that a library installs while the
    model loads (the engine runtimes do) must not print them a second time in Python's format."""
    _, node = perception
    log = node.log()
    assert log.count("segaff_core.inference: warm-up") == 1, log[:3000]
    assert "INFO:segaff_core" not in log and "WARNING:segaff_core" not in log, log[:3000]
