"""Fuzzing the perception node's message handling with hypothesis, in two layers.

(a) In this process: the pure functions the node runs on every message before the model (image and
    camera_info conversion, frame validation, the Predictor's input checks, the synchronizer, the
    tokenizer) on generated messages: they return usable arrays or raise ValueError, nothing else.
(b) Over real DDS: a node process gets a generated stream of bad messages (encodings, sizes, steps,
    data lengths, K with zeros, NaN or inf, stamps out of order and far off, partial sets) interleaved
    with valid frames; it never dies, never fails a frame with anything but a bad-frame warning, and
    publishes results for valid frames afterwards.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="rclpy (ROS 2) is not installed")
pytest.importorskip("segaff_msgs.msg", reason="segaff_msgs is not built (scripts/setup.sh builds it)")
pytest.importorskip("hypothesis")

from hypothesis import HealthCheck, Phase, assume, example, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from ros_helpers import FrameSpec, FrameStream, NodeProcess, Probe, intrinsics, wait_until  # noqa: E402
from segaff_core.inference import check_depth_size, check_intrinsics  # noqa: E402
from segaff_core.text import tokenize  # noqa: E402
from segaff_ros import conversions  # noqa: E402
from segaff_ros.frame_input import BadFrame, Frame, decode_frame  # noqa: E402
from segaff_ros.synchronizer import ApproximateTimeSynchronizer  # noqa: E402

pytestmark = pytest.mark.ros

UINT32_MAX = 2**32 - 1
MIN_DEPTH_M, MAX_DEPTH_M = 0.1, 10.0
#: Bytes per pixel of the encodings the node knows (others: any).
BYTES_PER_PIXEL = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "16UC1": 2, "32FC1": 4, "mono8": 1, "mono16": 2}
ENCODINGS = st.one_of(st.sampled_from([*BYTES_PER_PIXEL, "yuv422", "8UC3", "RGB8", ""]), st.text(max_size=8))
FLOATS = st.one_of(
    st.sampled_from([0.0, -0.0, 1.0, -1.0, float("nan"), float("inf"), -float("inf"), 1e300, -1e-300, 5e-324]),
    st.floats(allow_nan=True, allow_infinity=True),
)
#: Fillings of image data: random bytes, zeros, all 0xFF, or float32 NaN / inf / negative / huge depths.
FILLS = ("random", "zeros", "ones", "nan", "inf", "negative", "huge")
IN_PROCESS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def fill(length: int, how: str, seed: int) -> bytes:
    """``length`` bytes of data filled ``how`` (float patterns repeat a little-endian float32)."""
    patterns = {"zeros": b"\0", "ones": b"\xff", "nan": struct.pack("<f", float("nan")),
                "inf": struct.pack("<f", float("inf")), "negative": struct.pack("<f", -1.5),
                "huge": struct.pack("<f", 3e38)}
    if how == "random":
        return np.random.default_rng(seed).bytes(length)
    pattern = patterns[how]
    return (pattern * (length // len(pattern) + 1))[:length]


MAX_DATA_BYTES = 20_000
SIZES = st.tuples(st.one_of(st.integers(0, 40), st.sampled_from([UINT32_MAX, 2**31])),
                  st.one_of(st.integers(0, 40), st.just(UINT32_MAX)))


@st.composite
def images(draw: st.DrawFn, encodings: st.SearchStrategy[str] = ENCODINGS,
           sizes: st.SearchStrategy[tuple[int, int]] = SIZES) -> Image:
    """An Image with any encoding, size (width, height), step, byte order and data length."""
    encoding = draw(encodings)
    width, height = draw(sizes)
    natural_step = min(width * BYTES_PER_PIXEL.get(encoding, draw(st.integers(1, 4))), UINT32_MAX)
    step = draw(st.one_of(st.just(natural_step), st.integers(0, UINT32_MAX),
                          st.just(min(natural_step + draw(st.integers(1, 8)), UINT32_MAX)),
                          st.just(max(natural_step - 1, 0))))
    natural_length = step * height
    length = draw(st.one_of(
        st.just(natural_length) if natural_length <= MAX_DATA_BYTES else st.nothing(),
        st.integers(0, MAX_DATA_BYTES),
    ))
    data = fill(length, draw(st.sampled_from(FILLS)), draw(st.integers(0, 2**32 - 1)))
    return Image(height=height, width=width, encoding=encoding, is_bigendian=draw(st.sampled_from([0, 1, 255])),
                 step=step, data=data)


@st.composite
def camera_infos(draw: st.DrawFn, width: int = 32, height: int = 24) -> CameraInfo:
    """A CameraInfo whose K is valid, valid with one entry changed, or anything; any size."""
    base = intrinsics(width, height).ravel().tolist()
    how = draw(st.sampled_from(["valid", "one-entry", "any"]))
    if how == "one-entry":
        base[draw(st.integers(0, 8))] = draw(FLOATS)
    elif how == "any":
        base = draw(st.lists(FLOATS, min_size=9, max_size=9))
    size = draw(st.sampled_from([(width, height), (0, 0), (width + 1, height), (UINT32_MAX, 1)]))
    return CameraInfo(width=size[0], height=size[1], k=base)


def check_decoded(rgb_msg: Image, depth_msg: Image, decoded: Any) -> None:
    """What a decoded frame promises the Predictor."""
    assert decoded.rgb.dtype == np.uint8 and decoded.rgb.shape == (rgb_msg.height, rgb_msg.width, 3)
    assert decoded.depth_m.dtype == np.float32 and decoded.depth_m.shape == (depth_msg.height, depth_msg.width)
    assert np.isfinite(decoded.depth_m).all()
    assert ((decoded.depth_m >= MIN_DEPTH_M) & (decoded.depth_m <= MAX_DEPTH_M)).any()
    assert np.isfinite(decoded.K).all() and decoded.K[0, 0] > 0 and decoded.K[1, 1] > 0


# ---- (a) in-process properties ------------------------------------------------------------------------


@IN_PROCESS
@given(image=images())
def test_image_to_numpy_returns_the_documented_array_or_raises_value_error(image: Image) -> None:
    try:
        array = conversions.image_to_numpy(image)
    except ValueError:
        return
    if image.encoding in conversions.COLOR_ENCODINGS:
        assert array.dtype == np.uint8 and array.shape == (image.height, image.width, 3)
    else:
        assert image.encoding in conversions.DEPTH_ENCODINGS
        assert array.dtype == np.float32 and array.shape == (image.height, image.width)
        assert np.isfinite(array).all(), "NaN and inf depths must become 0 (invalid)"


@IN_PROCESS
@given(info=camera_infos())
def test_camera_info_to_K_returns_a_pinhole_matrix_or_raises_value_error(info: CameraInfo) -> None:
    try:
        K = conversions.camera_info_to_K(info)
    except ValueError:
        return
    assert K.shape == (3, 3) and np.isfinite(K).all() and K[0, 0] > 0 and K[1, 1] > 0 and K[2, 2] == 1.0


@st.composite
def frames(draw: st.DrawFn) -> Frame:
    """A synchronized frame: each of RGB, depth and camera_info valid (32 x 24, depth half size allowed)
    or fuzzed."""
    width, height = 32, 24
    spec = FrameSpec(width=width, height=height, depth_scale=draw(st.sampled_from([1, 2])),
                     depth_encoding=draw(st.sampled_from(["16UC1", "32FC1"])))
    valid = dict(spec.messages(0))
    rgb = draw(st.one_of(st.just(valid["rgb/image"]), images()))
    depth = draw(st.one_of(st.just(valid["depth/image"]), images()))
    info = draw(st.one_of(st.just(valid["rgb/camera_info"]), camera_infos(width, height)))
    return Frame(rgb, depth, info, 0)


@IN_PROCESS
@given(frame=frames())
def test_frame_validation_and_predictor_checks_raise_value_error_only(frame: Frame) -> None:
    try:
        decoded = decode_frame(frame, MIN_DEPTH_M, MAX_DEPTH_M)
    except BadFrame:
        return
    check_decoded(frame.rgb, frame.depth, decoded)
    try:  # what the Predictor checks next, before any tensor is made
        check_depth_size(decoded.rgb.shape[:2], decoded.depth_m.shape)
        check_intrinsics(decoded.K)
    except ValueError:
        return


SLOP_NS = 10_000_000


@settings(max_examples=300, deadline=None)
@given(
    junk=st.lists(st.tuples(st.integers(0, 2), st.integers(-(10**15), 10**15)), max_size=40),
    queue_size=st.integers(1, 5),
    fresh_stamp=st.integers(-(10**15), 10**15),
    order=st.permutations([0, 1, 2]),
)
@example(junk=[(0, 10**15 - i) for i in range(5)], queue_size=5, fresh_stamp=0, order=[0, 1, 2])  # was deaf
@example(junk=[(0, 0)], queue_size=1, fresh_stamp=-SLOP_NS - 1, order=[1, 2, 0])  # was a KeyError
def test_synchronizer_emits_a_complete_frame_after_any_junk(
    junk: list[tuple[int, int]], queue_size: int, fresh_stamp: int, order: list[int]
) -> None:
    """Stamps from a broken clock (far future, far past, out of order, partial sets) must not make the
    synchronizer deaf: the next complete frame comes out (the node keeps working after a driver fault)."""
    assume(all(abs(stamp - fresh_stamp) > SLOP_NS for _, stamp in junk))
    emitted: list[tuple[Any, ...]] = []
    synchronizer = ApproximateTimeSynchronizer(3, queue_size, SLOP_NS * 1e-9, lambda *items: emitted.append(items))
    for index, stamp in junk:
        synchronizer.add(index, stamp, ("junk", index, stamp))
    emitted.clear()
    for index in order:
        synchronizer.add(index, fresh_stamp, ("fresh", index, fresh_stamp))
    assert emitted == [tuple(("fresh", index, fresh_stamp) for index in range(3))]
    assert all(size <= queue_size for size in synchronizer.queued())


@settings(max_examples=200, deadline=None)
@given(events=st.lists(st.tuples(st.integers(0, 2), st.integers(0, 100)), max_size=80),
       slop_ms=st.integers(0, 20), queue_size=st.integers(1, 10))
def test_synchronizer_sets_have_one_item_per_input_within_slop(
    events: list[tuple[int, int]], slop_ms: int, queue_size: int
) -> None:
    emitted: list[tuple[Any, ...]] = []
    synchronizer = ApproximateTimeSynchronizer(3, queue_size, slop_ms * 1e-3, lambda *items: emitted.append(items))
    for index, stamp_ms in events:
        synchronizer.add(index, stamp_ms * 1_000_000, (index, stamp_ms))
    for items in emitted:
        assert [index for index, _ in items] == [0, 1, 2]
        stamps = [stamp for _, stamp in items]
        assert max(stamps) - min(stamps) <= slop_ms


@IN_PROCESS
@given(text=st.text(max_size=300))
def test_any_instruction_text_tokenizes_to_77_tokens(text: str) -> None:
    tokens = tokenize(text)
    assert tuple(tokens.shape) == (1, 77)


# ---- (b) a node process under a stream of generated bad messages --------------------------------------

TIMEOUT_S = 60.0
INSTRUCTION = "open the drawer under fuzzing"


@dataclass
class FuzzedSet:
    """One burst of camera messages: some topics, in some order, with per-topic stamp offsets."""

    messages: list[tuple[str, Any]]
    stamp_offsets_s: list[float]
    then_valid_frame: bool

    def describe(self) -> str:
        parts = []
        for (topic, msg), offset in zip(self.messages, self.stamp_offsets_s):
            if isinstance(msg, Image):
                what = f"{msg.encoding!r} {msg.width}x{msg.height} step {msg.step} data {len(msg.data)} B"
            else:
                what = f"K {list(msg.k)} size {msg.width}x{msg.height}"
            parts.append(f"{topic} ({what}) at {offset:+.3g} s")
        return "; ".join(parts) + ("; then a valid frame" if self.then_valid_frame else "")


STAMP_OFFSETS_S = st.one_of(st.just(0.0), st.sampled_from([-1e6, -30.0, -0.5, 0.02, 0.5, 30.0, 1e6]),
                            st.floats(-5.0, 5.0))


@st.composite
def fuzzed_sets(draw: st.DrawFn) -> FuzzedSet:
    """Mostly complete sets (one stamp, any order) with some messages fuzzed, so that they reach the
    node's frame validation; else partial sets or sets whose stamps disagree."""
    width, height = 32, 24
    valid = dict(FrameSpec(width=width, height=height).messages(0))
    sizes = st.one_of(st.sampled_from([(width, height), (width // 2, height // 2)]), SIZES)
    colour = st.one_of(st.sampled_from(list(conversions.COLOR_ENCODINGS)), ENCODINGS)
    depth = st.one_of(st.sampled_from(list(conversions.DEPTH_ENCODINGS)), ENCODINGS)
    candidates = {
        "rgb/image": st.one_of(st.just(valid["rgb/image"]), images(colour, sizes)),
        "depth/image": st.one_of(st.just(valid["depth/image"]), images(depth, sizes)),
        "rgb/camera_info": st.one_of(st.just(valid["rgb/camera_info"]), camera_infos(width, height)),
    }
    if draw(st.integers(0, 9)) < 7:  # a complete set with one stamp (offset from now: out of order, far off)
        topics = draw(st.permutations(list(candidates)))
        offsets = [draw(STAMP_OFFSETS_S)] * len(topics)
    else:  # some topics, maybe repeated, each with its own stamp
        topics = draw(st.lists(st.sampled_from(list(candidates)), min_size=1, max_size=5))
        offsets = [draw(STAMP_OFFSETS_S) for _ in topics]
    messages = [(topic, draw(candidates[topic])) for topic in topics]
    return FuzzedSet(messages, offsets, draw(st.booleans()))


@pytest.fixture(scope="module")
def fuzzed_node(
    small_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Probe, NodeProcess]]:
    """A node with a 64 x 64 input (valid frames are quick), no age limit (far-off stamps are processed)
    and synchronizer queues of 2 (leftover messages fill them quickly)."""
    probe = Probe("segaff_fuzz_probe")
    node = NodeProcess(
        tmp_path_factory.mktemp("fuzz") / "node.log",
        ["-p", f"checkpoint:={small_checkpoint}", "-p", "device:=cpu", "-p", "input_height:=64",
         "-p", "input_width:=64", "-p", "max_frame_age_s:=0.0", "-p", "sync_queue_size:=2"],
    )
    try:
        assert probe.wait_for_perception_node(), f"the node did not come up:\n{node.log()}"
        yield probe, node
    finally:
        code = node.stop()
        probe.close()
    assert code == 0, f"the node did not shut down cleanly after fuzzing (exit {code}):\n{node.log()[-3000:]}"


def publish(probe: Probe, fuzzed: FuzzedSet, valid: list[tuple[str, Any]]) -> None:
    """The burst, each message re-stamped now + its offset, then (maybe) a valid frame stamped now."""
    for (topic, msg), offset_s in zip(fuzzed.messages, fuzzed.stamp_offsets_s):
        stamp_ns = max(probe.now_ns() + int(offset_s * 1e9), 0)
        msg.header = Header(frame_id="fuzz_camera")
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
        probe.publishers[topic].publish(msg)
    if fuzzed.then_valid_frame:
        probe.publish_frame(FrameSpec(), valid)


def test_node_survives_a_stream_of_bad_messages_and_keeps_serving(fuzzed_node) -> None:
    probe, node = fuzzed_node
    valid = FrameSpec().messages(0)
    sent: list[str] = []

    @settings(max_examples=30, deadline=None, database=None, phases=[Phase.explicit, Phase.generate],
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(fuzzed=fuzzed_sets())
    def stream(fuzzed: FuzzedSet) -> None:
        probe.instruct(INSTRUCTION)
        sent.append(fuzzed.describe())
        publish(probe, fuzzed, valid)
        wait_until(lambda: False, 0.15)  # let the node take the set (it keeps only the newest)
        assert node.alive(), f"the node died after: {sent[-1]}\n{node.log()[-3000:]}"

    stream()
    assert node.alive()
    assert "Traceback" not in node.log(), node.log()[-3000:]
    assert probe.fresh_diagnostic_count("failed_frames") == 0, (
        f"a bad input failed inside the model instead of being rejected as a bad frame:\n{node.log()[-3000:]}"
    )
    with FrameStream(probe, FrameSpec(), rate_hz=10.0) as after:
        ok = wait_until(
            lambda: {conversions.stamp_to_ns(r.header.stamp) for r in probe.messages("result")} & set(after.stamps),
            TIMEOUT_S, action=lambda: probe.instruct(INSTRUCTION),
        )
    assert ok, f"no result for valid frames after the fuzzing:\n{node.log()[-3000:]}\nsent: {sent[-5:]}"
    assert probe.diagnostic_count("bad_frames") > 0, "the fuzzing sent no bad frame the node noticed"
