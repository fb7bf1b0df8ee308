"""A camera driver stand-in for ``bench/camera_rate.py``: RGB-D frames at a fixed rate, in a process of its own.

Publishes ``rgb/image`` (rgb8), ``depth/image`` (16UC1, mm) and ``rgb/camera_info`` at ``--rate`` Hz with a
RealSense driver's defaults (reliable, keep last 5, the shipped Fast DDS profile from the environment). Each
frame is a new set of messages built from one of a few pre-rendered synthetic views and stamped when sent,
as a driver stamps its frames. The period is kept on the wall clock; a frame whose slot has passed is
skipped, not sent late (a camera never bursts). On SIGINT/SIGTERM it prints one line,
``sent N frames in S s (R Hz)``, and exits.

    .venv/bin/python bench/rate_camera.py --rate 30 --size 640x480
"""
from __future__ import annotations

import argparse
import signal
import sys
import threading
import time

import numpy as np
import rclpy
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header

from segaff_core.synth.sample import scene_views
from segaff_ros import conversions

VIEWS = 4
FRAME_ID = "camera_color_optical_frame"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, required=True, help="frames per second")
    parser.add_argument("--size", default="640x480", help="WIDTHxHEIGHT (default 640x480)")
    parser.add_argument("--seed", type=int, default=0, help="synthetic scene (default 0)")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))
    views, rng = scene_views(args.seed)
    samples = [views.view(rng, (height, width)) for _ in range(VIEWS)]
    # uint16 millimetres once: a driver hands over its sensor's depth as it is, it does not convert per frame
    depth_mm = [np.clip(np.rint(sample.depth_m * 1000.0), 0, np.iinfo(np.uint16).max).astype(np.uint16)
                for sample in samples]

    rclpy.init()
    node = rclpy.create_node("segaff_bench_camera")
    qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=5, reliability=ReliabilityPolicy.RELIABLE)
    rgb_pub = node.create_publisher(Image, "rgb/image", qos)
    depth_pub = node.create_publisher(Image, "depth/image", qos)
    info_pub = node.create_publisher(CameraInfo, "rgb/camera_info", qos)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    print("ready", flush=True)

    period_s = 1.0 / args.rate
    sent = 0
    started = next_s = time.monotonic()
    while not stop.is_set():
        now = time.monotonic()
        if now < next_s:
            stop.wait(next_s - now)
            continue
        behind = int((now - next_s) // period_s)  # slots that passed while this process was descheduled
        next_s += (behind + 1) * period_s
        sample, depth = samples[sent % VIEWS], depth_mm[sent % VIEWS]
        header = Header(frame_id=FRAME_ID)
        messages = ((rgb_pub, conversions.numpy_to_image(sample.rgb, "rgb8", header)),
                    (depth_pub, conversions.numpy_to_image(depth, "16UC1", header)),
                    (info_pub, conversions.K_to_camera_info(sample.K, width, height, header)))
        stamp = node.get_clock().now().to_msg()  # a driver has its image in a message when it stamps it
        for publisher, msg in messages:
            msg.header.stamp = stamp
            publisher.publish(msg)
        sent += 1
    elapsed_s = time.monotonic() - started
    print(f"sent {sent} frames in {elapsed_s:.1f} s ({sent / elapsed_s:.2f} Hz)", flush=True)
    node.destroy_node()
    rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
