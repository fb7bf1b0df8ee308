"""Throughput of the synthetic data generator: images per second, end to end (render + write).

    .venv/bin/python bench/synth_speed.py --num 500 --format opd --workers 2
"""
from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

from segaff_core.synth import generate_dataset

log = logging.getLogger("synth_speed")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num", type=int, default=500, help="images to generate")
    parser.add_argument("--format", choices=("opd", "sf3d"), default="opd")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, nargs=2, default=(256, 256), metavar=("H", "W"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    with tempfile.TemporaryDirectory(prefix="synth_speed_") as tmp:
        started = time.perf_counter()
        summary = generate_dataset(args.format, Path(tmp) / "out", args.num, args.seed, tuple(args.size),
                                   workers=args.workers)
        seconds = time.perf_counter() - started
    log.info("%s: %d images, %d parts, %d workers in %.1f s -> %.1f images/s", args.format, summary.num_images,
             summary.num_parts, args.workers, seconds, summary.num_images / seconds)


if __name__ == "__main__":
    main()
