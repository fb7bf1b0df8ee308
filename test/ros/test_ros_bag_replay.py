"""A rosbag2 (mcap) of a synthetic RGB-D sequence, written with rosbags, replayed through the node.

The node runs with the package's parameters file, ``use_sim_time``, ``max_rate_hz`` and best-effort
camera subscriptions (the replay publishes reliably, which they accept): the replay
publishes /clock from the bag's log times, as ``ros2 bag play --clock`` does, so the bag's old stamps are
not stale frames.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="rclpy (ROS 2) is not installed")
pytest.importorskip("segaff_msgs.msg", reason="segaff_msgs is not built (scripts/setup.sh builds it)")
pytest.importorskip("rosbags", reason="rosbags is not installed")

from ros_helpers import REPO_ROOT, NodeProcess, Probe, wait_until  # noqa: E402
from segaff_ros.conversions import stamp_to_ns  # noqa: E402

pytestmark = pytest.mark.ros

FRAME_ID = "bag_camera_color_optical_frame"
WIDTH, HEIGHT = 160, 120
FRAMES, RATE_HZ, VIEWS = 30, 10.0, 3
BAG_START_NS = 1_700_000_000 * 1_000_000_000  # a day long gone: only sim time makes these frames fresh
PRIME_NS = BAG_START_NS - 1_000_000_000  # the priming frame's stamp (see replay)
MAX_RATE_HZ = 3.0
TIMEOUT_S = 90.0


def write_bag(path: Path) -> tuple[list[int], str]:
    """A 3 s, 10 Hz sequence over 3 viewpoints of synthetic scene 1 (RGB, 32FC1 depth, camera_info,
    an instruction once a second). Returns the frame stamps and the instruction."""
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    from segaff_core.synth.sample import scene_views

    store = get_typestore(Stores.ROS2_KILTED)
    types = store.types
    views, rng = scene_views(1)
    samples = [views.view(rng, (HEIGHT, WIDTH)) for _ in range(VIEWS)]
    instruction = samples[0].parts[0].descriptions[0]

    def header(stamp_ns: int) -> Any:
        sec, nanosec = divmod(stamp_ns, 1_000_000_000)
        return types["std_msgs/msg/Header"](
            stamp=types["builtin_interfaces/msg/Time"](sec=sec, nanosec=nanosec), frame_id=FRAME_ID
        )

    def image(data: np.ndarray, encoding: str, stamp_ns: int) -> Any:
        height, width = data.shape[:2]
        return types["sensor_msgs/msg/Image"](
            header=header(stamp_ns), height=height, width=width, encoding=encoding, is_bigendian=0,
            step=data.nbytes // height, data=np.frombuffer(data.tobytes(), np.uint8),
        )

    def camera_info(K: np.ndarray, stamp_ns: int) -> Any:
        roi = types["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
        return types["sensor_msgs/msg/CameraInfo"](
            header=header(stamp_ns), height=HEIGHT, width=WIDTH, distortion_model="plumb_bob", d=np.zeros(5),
            k=K.ravel(), r=np.eye(3).ravel(), p=np.hstack([K, np.zeros((3, 1))]).ravel(),
            binning_x=0, binning_y=0, roi=roi,
        )

    stamps = []
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        connections = {
            topic: writer.add_connection(topic, msgtype, typestore=store)
            for topic, msgtype in [
                ("/rgb/image", "sensor_msgs/msg/Image"),
                ("/depth/image", "sensor_msgs/msg/Image"),
                ("/rgb/camera_info", "sensor_msgs/msg/CameraInfo"),
                ("/instruction", "std_msgs/msg/String"),
            ]
        }

        def write(topic: str, msg: Any, log_ns: int) -> None:
            writer.write(connections[topic], log_ns, store.serialize_cdr(msg, msg.__msgtype__))

        for index in range(FRAMES):
            stamp = BAG_START_NS + int(index * 1e9 / RATE_HZ)
            sample = samples[index * VIEWS // FRAMES]
            if index % int(RATE_HZ) == 0:
                write("/instruction", types["std_msgs/msg/String"](data=instruction), stamp)
            write("/rgb/image", image(sample.rgb, "rgb8", stamp), stamp + 1_000_000)
            write("/depth/image", image(sample.depth_m.astype(np.float32), "32FC1", stamp), stamp + 2_000_000)
            write("/rgb/camera_info", camera_info(sample.K, stamp), stamp + 2_000_000)
            stamps.append(stamp)
    return stamps, instruction


def replay(probe: Probe, bag: Path) -> None:
    """Publish the bag's raw CDR messages at their pace, with /clock at each message's log time.

    A publisher sees the node's subscription before the node's side of discovery has matched the new
    publisher; until it has, best-effort images are dropped and the reliable instruction waits for the next
    heartbeat (3 s). So the replay first primes: the bag's first frame, re-stamped 1 s before the bag, and
    its instruction, published until the node answers that frame; only then does the bag play.
    """
    from rclpy.qos import QoSProfile
    from rosbags.rosbag2 import Reader
    from rosgraph_msgs.msg import Clock
    from sensor_msgs.msg import CameraInfo, Image
    from std_msgs.msg import String

    message_types = {"sensor_msgs/msg/Image": Image, "sensor_msgs/msg/CameraInfo": CameraInfo,
                     "std_msgs/msg/String": String}
    clock = probe.node.create_publisher(Clock, "/clock", 10)
    with Reader(bag) as reader:
        publishers = {
            c.topic: probe.node.create_publisher(message_types[c.msgtype], c.topic, QoSProfile(depth=10))
            for c in reader.connections
        }
        everyone = [clock, *publishers.values()]
        assert wait_until(lambda: all(p.get_subscription_count() > 0 for p in everyone), TIMEOUT_S), \
            "the node did not subscribe to every replayed topic"
        prime(probe, clock, publishers, reader, message_types)
        started, first_ns = time.monotonic(), None
        for connection, log_ns, raw in reader.messages():
            first_ns = log_ns if first_ns is None else first_ns
            time.sleep(max(0.0, (log_ns - first_ns) * 1e-9 - (time.monotonic() - started)))
            clock.publish(clock_message(log_ns))
            publishers[connection.topic].publish(bytes(raw))


def prime(probe: Probe, clock: Any, publishers: dict[str, Any], reader: Any, message_types: dict[str, type]) -> None:
    """Publish the bag's first message of each topic, re-stamped ``PRIME_NS``, until the node answers it."""
    from rclpy.serialization import deserialize_message

    first: dict[str, Any] = {}
    for connection, _, raw in reader.messages():
        first.setdefault(connection.topic, deserialize_message(bytes(raw), message_types[connection.msgtype]))
        if len(first) == len(publishers):
            break
    for msg in first.values():
        if hasattr(msg, "header"):
            msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(PRIME_NS, 1_000_000_000)

    def publish_all() -> None:
        clock.publish(clock_message(PRIME_NS))
        for topic, msg in first.items():
            publishers[topic].publish(msg)

    answered = wait_until(lambda: any(stamp_to_ns(r.header.stamp) == PRIME_NS for r in probe.messages("result")),
                          TIMEOUT_S, action=publish_all, action_every_s=0.2)
    assert answered, "the node never answered the priming frame: discovery did not complete"


def clock_message(stamp_ns: int) -> Any:
    from builtin_interfaces.msg import Time
    from rosgraph_msgs.msg import Clock

    sec, nanosec = divmod(stamp_ns, 1_000_000_000)
    return Clock(clock=Time(sec=sec, nanosec=nanosec))


@pytest.fixture(scope="module")
def bag_node(small_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Probe, NodeProcess]]:
    probe = Probe(name="segaff_bag_probe")
    node = NodeProcess(
        tmp_path_factory.mktemp("bag_node") / "node.log",
        [
            "--params-file", str(REPO_ROOT / "config" / "perception.yaml"),
            "-p", f"checkpoint:={small_checkpoint}",
            "-p", "device:=cuda",
            "-p", "input_height:=128",
            "-p", "input_width:=128",
            "-p", "use_sim_time:=true",
            "-p", "image_qos:=best_effort",
            "-p", f"max_rate_hz:={MAX_RATE_HZ}",
        ],
    )
    try:
        yield probe, node
    finally:
        code = node.stop()
        probe.close()
    assert code == 0, f"exit {code}:\n{node.log()[-3000:]}"


def test_bag_replay_through_the_node(bag_node, tmp_path: Path) -> None:
    probe, node = bag_node
    stamps, instruction = write_bag(tmp_path / "synthetic_sequence")
    assert (tmp_path / "synthetic_sequence" / "metadata.yaml").is_file()
    assert list((tmp_path / "synthetic_sequence").glob("*.mcap"))
    assert probe.wait_for_perception_node(), f"the node did not come up:\n{node.log()}"

    before = probe.query(instruction)
    assert not before.success and "no synchronized" in before.message

    replay(probe, tmp_path / "synthetic_sequence")
    results = wait_until(lambda: [r for r in probe.messages("result") if stamp_to_ns(r.header.stamp) in stamps],
                         TIMEOUT_S)
    assert results, f"no result for the replayed frames:\n{node.log()[-3000:]}"
    time.sleep(1.0)  # the last frames' results
    results = [r for r in probe.messages("result") if stamp_to_ns(r.header.stamp) in stamps]
    assert len(results) >= 3, f"{len(results)} results for {len(stamps)} frames:\n{node.log()[-3000:]}"
    for result in results:
        assert result.header.frame_id == FRAME_ID and result.instruction == instruction
        assert (result.mask.width, result.mask.height) == (WIDTH, HEIGHT)
        assert len(result.trajectory) == 20
    processed = sorted(stamp_to_ns(r.header.stamp) for r in results)
    assert len(set(processed)) == len(processed), "a frame was processed twice"
    assert len(processed) <= FRAMES / RATE_HZ * MAX_RATE_HZ + 2, f"max_rate_hz exceeded: {len(processed)} results"
    # max_rate_hz spaces model runs in wall time; bag stamps carry the replay's jitter, so the rate is judged by
    # the number of results above, not by the stamp spacing of two of them.

    after = probe.query(instruction)
    assert after.success, after.message
    assert stamp_to_ns(after.result.header.stamp) == stamps[-1], "the query must use the newest frame"


def test_parameters_file_and_cuda_fallback(bag_node) -> None:
    torch = pytest.importorskip("torch")
    probe, node = bag_node
    assert probe.wait_for_perception_node(), f"the node did not come up:\n{node.log()}"
    log = node.log()
    assert "input 128x128" in log, "the command-line parameters must override the parameters file"
    if torch.cuda.is_available():
        assert "on cuda" in log
    else:
        assert "CUDA is not available: running on the CPU" in log and "on cpu" in log
