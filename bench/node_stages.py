"""The perception node's per-frame work, stage by stage, in one process (no DDS, no executor).

    .venv/bin/python bench/node_stages.py                          # shipped checkpoint, 640x480
    .venv/bin/python bench/node_stages.py --size 320x240 --threads 1

Runs the functions the node runs on a rendered frame, in its order: the camera's messages serialised and
deserialised as DDS would, ``decode_frame``, the Predictor, ``to_output_frame``, the output messages
(mask, result, pose, axis marker, path, markers) and the result's serialisation and deserialisation. The
median of each stage over ``--frames`` frames (after ``--warmup``) is printed, with the sum of the stages
that are not the model: what ``bench/node_latency.py``'s end-to-end time holds besides the model and the
transport between processes.
"""
from __future__ import annotations

import argparse
import statistics
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from node_bench_common import add_node_arguments, random_checkpoint


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_node_arguments(parser)
    parser.set_defaults(size="640x480")
    parser.add_argument("--frames", type=int, default=30, help="frames measured (default 30)")
    parser.add_argument("--warmup", type=int, default=5, help="frames run first, not measured (default 5)")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    return parser.parse_args()


def main() -> None:
    import tempfile
    from pathlib import Path

    from rclpy.serialization import deserialize_message, serialize_message
    from sensor_msgs.msg import Image
    from std_msgs.msg import Header

    from segaff_core.inference import Predictor
    from segaff_core.synth.sample import scene_views
    from segaff_msgs.msg import AffordanceResult
    from segaff_ros import conversions
    from segaff_ros.frame_input import Frame, decode_frame
    from segaff_ros.outputs import to_output_frame

    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    width, height = (int(v) for v in args.size.lower().split("x"))
    views, rng = scene_views(0)
    sample = views.view(rng, (height, width))
    instruction = sample.parts[0].descriptions[0]
    header = Header(frame_id="camera_color_optical_frame")
    rgb_msg = conversions.numpy_to_image(sample.rgb, "rgb8", header)
    depth_msg = conversions.numpy_to_image(sample.depth_m * 1000.0, "16UC1", header)
    info = conversions.K_to_camera_info(np.asarray(sample.K), width, height, header)
    with tempfile.TemporaryDirectory() as scratch:
        checkpoint = random_checkpoint(Path(scratch), args.random) if args.random else args.checkpoint
        size = {"input_size": (args.input, args.input)} if args.input else {}
        predictor = Predictor.from_checkpoint(checkpoint, device=args.device, backend=args.backend, **size)
    predictor.set_instruction(instruction)

    stages: dict[str, list[float]] = defaultdict(list)

    def timed(name: str, step: Callable[[], Any], record: bool) -> Any:
        start = time.perf_counter()
        value = step()
        if record:
            stages[name].append((time.perf_counter() - start) * 1e3)
        return value

    for index in range(args.warmup + args.frames):
        record = index >= args.warmup
        wire = timed("serialise RGB + depth", lambda: (serialize_message(rgb_msg), serialize_message(depth_msg)),
                     record)
        rgb, depth = timed(
            "deserialise RGB + depth", lambda: (deserialize_message(wire[0], Image), deserialize_message(wire[1], Image)),
            record)
        frame = Frame(rgb, depth, info, 0)
        decoded = timed("decode_frame", lambda: decode_frame(frame, 0.1, 10.0), record)
        prediction = timed("model (Predictor)", lambda: predictor(decoded.rgb, decoded.depth_m, instruction, decoded.K),
                           record)
        output = timed("to_output_frame", lambda: to_output_frame(header, decoded, prediction, instruction, "", None),
                       record)

        def messages() -> AffordanceResult:
            mask = conversions.numpy_to_image(output.prediction.mask, "mono8", header)
            conversions.prediction_to_pose(prediction, header)
            conversions.prediction_to_axis_marker(prediction, header, 0.3)
            conversions.prediction_to_path(prediction, header)
            conversions.prediction_to_markers(prediction, header, instruction, 0.3)
            return conversions.prediction_to_result(prediction, header, instruction, mask)

        result = timed("output messages", messages, record)
        wire_result = timed("serialise result", lambda: serialize_message(result), record)
        timed("deserialise result", lambda: deserialize_message(wire_result, AffordanceResult), record)

    print(f"{args.frames} frames {width}x{height}, backend {predictor.backend}, "
          f"{torch.get_num_threads()} torch threads, instruction {instruction!r}")
    for name, values in stages.items():
        print(f"{name:26s} median {statistics.median(values):7.2f} ms   p90 {np.percentile(values, 90):7.2f} ms")
    besides_model = sum(statistics.median(v) for name, v in stages.items() if name != "model (Predictor)")
    print(f"{'all but the model':26s} median {besides_model:7.2f} ms (sum of the stages' medians)")


if __name__ == "__main__":
    main()
