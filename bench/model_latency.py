"""Latency of the SegAffordance model at batch 1 (random weights unless --checkpoint; speed does not depend on them).

1. Per frame with a fixed instruction at the first size, fp32: the Predictor (text side cached, batch norm
   folded, preprocessing and 3D post-processing included), eager and with channels_last + torch.compile
   (frozen weights; default and max-autotune modes), against the plain forward that encodes the text
   every frame (the seed's way), measured alternately, and their ratios.
2. Per stage, every size: image encoder, text encoder, depth+neck+decoder+heads, the whole forward (plain
   model), and the Predictor's network per frame; fp32 rows, and with --bf16 autocast rows.
3. With --bf16: the accuracy cost of bf16 autocast against fp32 on rendered synthetic frames (mask IoU,
   axis angle, interaction point) and both per-frame latencies.
4. With --options: the Predictor end to end at the first size for each precision (fp16 on CUDA only) with
   and without channels_last and torch.compile, split into preprocess, network and post-processing.
5. Runtimes (--backends, default every one installed for the device): per backend x precision at the first
   size, the network and the Predictor end to end per frame and their ratio to the plain forward (measured
   alternately), plus the default Predictor (backend auto); precisions fp32, on the CPU int8 (OpenVINO and
   ONNX Runtime, calibrated on --calibration) and bf16 where native (skipped with a line saying so elsewhere).
6. Their accuracy against PyTorch fp32 on rendered frames (per-frame worst mask IoU, axis angle,
   interaction point, motion type).
7. Start-up (checkpoint loaded, Predictor built, first frame done) with the default backend: a cold engine
   build, a cached engine, and PyTorch; the cached/PyTorch ratio.

Example: ``python bench/model_latency.py --config default --sizes 256 416 --threads 2 --bf16``
Runtimes only: ``python bench/model_latency.py --config default --sizes 256 --threads 2 --runtimes-only``
"""
from __future__ import annotations

import argparse
import logging
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from segaff_core.checkpoint import load_model, save_checkpoint
from segaff_core.config import ModelParams
from segaff_core.inference import AffordancePrediction, Predictor
from segaff_core.model import SegAffordanceModel, build_model, fold_batchnorm
from segaff_core.runtimes import AUTO_ORDER, BACKENDS, BackendUnavailableError, cpu_has_native_bf16
from segaff_core.runtimes.calibration import DEFAULT_FRAMES, SYNTHETIC, Calibration
from segaff_core.runtimes.hardware import NATIVE_BF16_FLAGS
from segaff_core.synth import render_scene
from segaff_core.text import tokenize

logger = logging.getLogger("model_latency")

INSTRUCTION = "open the top drawer of the cabinet next to the sink"
GOAL_RATIO = 0.55  # the default Predictor per frame (fp32) over the plain forward with the text every frame
GOAL_RATIO_BF16 = 0.30  # the same in bf16, on CPUs with native bf16
GOAL_STARTUP_RATIO = 2.0  # start-up with a cached engine over PyTorch's
FRAME_GAP_S = 0.05  # idle time before each timed call of section 5, as between camera frames: the previous
# runtime's worker threads stop spinning, so no runtime is timed against another's busy-waiting threads


def _cpu_name() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} (1 min), {five:.1f} (5 min) on {os.cpu_count()} CPUs"


def _timed_ms(fn: Callable[[], object], device: torch.device) -> float:
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - start) * 1000.0


def _interleaved_medians(
    fns: list[Callable[[], object]], device: torch.device, warmup: int, repeats: int
) -> list[float]:
    """Median ms of each of ``fns``, run round-robin so that all of them see the same (shared) machine load."""
    times: list[list[float]] = [[] for _ in fns]
    for index in range(warmup + repeats):
        for fn, samples in zip(fns, times):
            elapsed = _timed_ms(fn, device)
            if index >= warmup:
                samples.append(elapsed)
    return [statistics.median(samples) for samples in times]


def _frame(size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A rendered synthetic RGB-D frame ``size x size`` and its K."""
    sample = render_scene(0, (size, size))
    return sample.rgb, sample.depth_m, sample.K


def compare_per_frame(
    model: SegAffordanceModel, device: torch.device, size: int, warmup: int, repeats: int
) -> None:
    """Section 1: the Predictor per frame (cached text), eager and channels_last + torch.compile, against
    the plain forward with the text every frame."""
    predictors = {
        "eager": Predictor(model, input_size=(size, size), device=device, backend="torch"),
        "channels_last + compile": Predictor(model, input_size=(size, size), device=device, channels_last=True,
                                             compile=True, backend="torch"),
        "channels_last + compile max-autotune": Predictor(
            model, input_size=(size, size), device=device, channels_last=True, compile=True,
            compile_mode="max-autotune-no-cudagraphs", backend="torch",
        ),
    }
    rgb, depth_m, K = _frame(size)
    image = torch.randn(1, 3, size, size, device=device)  # the plain forward's time does not depend on content
    depth = torch.from_numpy(depth_m).to(device)[None, None]
    tokens = tokenize(INSTRUCTION, model.params.word_len).to(device)
    for predictor in predictors.values():
        predictor.warmup()
        predictor.set_instruction(INSTRUCTION)
    totals: dict[str, list[float]] = {name: [] for name in predictors}
    networks: dict[str, list[float]] = {name: [] for name in predictors}
    plain = []

    def seed_forward() -> None:
        with torch.inference_mode():
            model(image, depth, tokens)

    for index in range(warmup + repeats):  # alternate, so that all see the same load
        timings = {name: predictor(rgb, depth_m, INSTRUCTION, K).timings for name, predictor in predictors.items()}
        plain_ms = _timed_ms(seed_forward, device)
        if index >= warmup:
            for name, timing in timings.items():
                totals[name].append(timing["total"])
                networks[name].append(timing["image"])
            plain.append(plain_ms)
    seed = statistics.median(plain)
    logger.info("\n[1] per frame, fixed instruction, fp32, %dx%d, median of %d (alternating)", size, size, repeats)
    logger.info("  plain forward, text encoded every frame (seed): %8.1f ms", seed)
    for name in predictors:
        total, network = statistics.median(totals[name]), statistics.median(networks[name])
        logger.info("  Predictor per frame, end to end, %-37s %8.1f ms  ratio %.3f (goal <= %.1f)",
                    name + ":", total, total / seed, GOAL_RATIO)
        logger.info("    of which the network (cached text, folded BN): %26.1f ms  ratio %.3f", network, network / seed)


def stage_table(
    model: SegAffordanceModel, device: torch.device, sizes: list[int], bf16: bool, warmup: int, repeats: int
) -> None:
    """Section 2: per-stage medians of the plain model, plus the Predictor's network per frame."""
    folded = fold_batchnorm(model)
    text = tokenize(INSTRUCTION, model.params.word_len).to(device)
    precisions = [None, torch.bfloat16] if bf16 else [None]
    columns = ("size", "precision", "image enc", "text enc", "depth+neck+dec+heads", "forward", "frame (cached)")
    logger.info("\n[2] per stage (ms), median of %d after %d warm-up runs, stages run round-robin; "
                "'frame' = folded BN + cached text side", repeats, warmup)
    logger.info("%6s %9s %10s %9s %21s %8s %15s", *columns)
    for size in sizes:
        image = torch.randn(1, 3, size, size, device=device)
        depth = torch.rand(1, 1, size, size, device=device) * 3.0
        for dtype in precisions:
            with torch.inference_mode(), torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                image_features = model.encode_image(image)
                text_features = model.encode_text(text)
                conditioning = folded.prepare_text(folded.encode_text(text), trim_padding=True)
                timings = _interleaved_medians(
                    [
                        lambda: model.encode_image(image),
                        lambda: model.encode_text(text),
                        lambda: model.forward_from_features(image_features, depth, text_features),
                        lambda: model(image, depth, text),
                        lambda: folded.forward_with_text(image, depth, conditioning),
                    ],
                    device, warmup, repeats,
                )
            name = "fp32" if dtype is None else "bf16"
            logger.info("%6d %9s %10.1f %9.1f %21.1f %8.1f %15.1f", size, name, *timings)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def _angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.degrees(np.arccos(np.clip(np.dot(a, b), -1.0, 1.0))))


def bf16_accuracy(model: SegAffordanceModel, device: torch.device, size: int, frames: int, repeats: int) -> None:
    """Section 3: bf16 autocast against fp32 on rendered frames, with each frame's first instruction."""
    predictors = {name: Predictor(model, input_size=(size, size), device=device, precision=name, backend="torch")
                  for name in ("fp32", "bf16")}
    for predictor in predictors.values():
        predictor.warmup()
    ious, axis_deg, point_px, mask_fraction = [], [], [], []
    latency: dict[str, list[float]] = {name: [] for name in predictors}
    for seed in range(frames):
        sample = render_scene(seed, (size, size))
        text = sample.parts[0].descriptions[0]
        results: dict[str, AffordancePrediction] = {}
        for _ in range(repeats):
            for name, predictor in predictors.items():
                results[name] = predictor(sample.rgb, sample.depth_m, text, sample.K)
                latency[name].append(results[name].timings["total"])
        fp32, bf16 = results["fp32"], results["bf16"]
        ious.append(_iou(fp32.mask, bf16.mask))
        mask_fraction.append(float(fp32.mask.mean()))
        axis_deg.append(_angle_deg(fp32.axis, bf16.axis))
        point_px.append(float(np.hypot(*np.subtract(fp32.point_px, bf16.point_px))))
    logger.info("\n[3] bf16 autocast vs fp32 on %d rendered %dx%d frames (%s); fp32 masks cover %.1f%% of the image",
                frames, size, size, device, 100 * statistics.mean(mask_fraction))
    logger.info("  mask IoU mean %.4f min %.4f | axis angle mean %.3f max %.3f deg | point mean %.2f max %.2f px",
                statistics.mean(ious), min(ious), statistics.mean(axis_deg), max(axis_deg),
                statistics.mean(point_px), max(point_px))
    logger.info("  per frame: fp32 %.1f ms, bf16 %.1f ms (median of %d)",
                statistics.median(latency["fp32"]), statistics.median(latency["bf16"]), len(latency["fp32"]))


def predictor_options(model: SegAffordanceModel, device: torch.device, size: int, warmup: int, repeats: int) -> None:
    """Section 4: the Predictor per frame (cached text) for every precision x channels_last x compile."""
    rgb, depth_m, K = _frame(size)
    precisions = ["fp32", "bf16"] + (["fp16"] if device.type == "cuda" else [])
    logger.info("\n[4] Predictor end to end, %dx%d, median ms of %d after %d warm-up frames", size, size, repeats, warmup)
    logger.info("%9s %13s %7s %10s %8s %11s %7s", "precision", "channels_last", "compile", "preprocess",
                "network", "postprocess", "total")
    for precision in precisions:
        for channels_last in (False, True):
            for compiled in (False, True):
                predictor = Predictor(model, input_size=(size, size), device=device, precision=precision,
                                      channels_last=channels_last, compile=compiled, backend="torch")
                predictor.warmup(runs=max(2, warmup))
                predictor.set_instruction(INSTRUCTION)
                timings = [predictor(rgb, depth_m, INSTRUCTION, K).timings for _ in range(warmup + repeats)][warmup:]
                medians = [statistics.median(t[key] for t in timings)
                           for key in ("preprocess", "image", "postprocess", "total")]
                logger.info("%9s %13s %7s %10.2f %8.2f %11.2f %7.2f", precision, channels_last, compiled, *medians)


def _reduced_precisions(device: torch.device) -> list[str]:
    """Section 5's precisions besides fp32: CUDA fp16 and bf16; the CPU int8, and bf16 where it is native."""
    if device.type == "cuda":
        return ["fp16", "bf16"]
    return ["int8", "bf16"] if cpu_has_native_bf16() else ["int8"]


def _runtime_predictors(
    model: SegAffordanceModel, device: torch.device, size: int, backends: list[str], cache_dir: Path,
    calibration: Calibration,
) -> dict[str, Predictor]:
    """A Predictor per backend x precision that can run here ("auto": the default Predictor); int8
    engines are calibrated on ``calibration`` (the build time is logged)."""
    predictors: dict[str, Predictor] = {}
    for precision in ["fp32", *_reduced_precisions(device)]:
        for backend in backends:
            name = f"{'default (auto)' if backend == 'auto' else backend} {precision}"
            start = time.perf_counter()
            try:
                predictor = Predictor(model, input_size=(size, size), device=device, precision=precision,
                                      backend=backend, cache_dir=cache_dir, calibration=calibration)
            except (BackendUnavailableError, ValueError) as error:
                logger.info("  (%s: %s)", name, error)
                continue
            engine = predictor.runtime.engine
            if precision == "int8" and engine is not None and not engine.from_cache:
                logger.info("  (%s: engine built in %.1f s, quantised on %s in %.1f s)", name,
                            time.perf_counter() - start, calibration.describe(), engine.record["quantization_s"])
            if backend == "auto":
                name += f" -> {predictor.backend}"
            predictor.warmup()
            predictor.set_instruction(INSTRUCTION)
            predictors[name] = predictor
    return predictors


@dataclass
class RuntimeTimes:
    """Medians (ms) per predictor name, and the plain forward's measured alongside them."""

    network: dict[str, float]
    total: dict[str, float]
    seed: float


def time_runtimes(
    model: SegAffordanceModel, predictors: dict[str, Predictor], device: torch.device, size: int,
    warmup: int, repeats: int,
) -> RuntimeTimes:
    """Each predictor's network and end-to-end time per frame, alternating with the plain forward."""
    rgb, depth_m, K = _frame(size)
    image = torch.randn(1, 3, size, size, device=device)
    depth = torch.from_numpy(depth_m).to(device)[None, None]
    tokens = tokenize(INSTRUCTION, model.params.word_len).to(device)

    def seed_forward() -> None:
        with torch.inference_mode():
            model(image, depth, tokens)

    totals: dict[str, list[float]] = {name: [] for name in predictors}
    networks: dict[str, list[float]] = {name: [] for name in predictors}
    plain: list[float] = []
    for index in range(warmup + repeats):
        for name, predictor in predictors.items():
            time.sleep(FRAME_GAP_S)
            timings = predictor(rgb, depth_m, INSTRUCTION, K).timings
            if index >= warmup:
                totals[name].append(timings["total"])
                networks[name].append(timings["image"])
        time.sleep(FRAME_GAP_S)
        plain_ms = _timed_ms(seed_forward, device)
        if index >= warmup:
            plain.append(plain_ms)
    return RuntimeTimes({name: statistics.median(values) for name, values in networks.items()},
                        {name: statistics.median(values) for name, values in totals.items()},
                        statistics.median(plain))


def runtime_table(times: list[RuntimeTimes], size: int, repeats: int) -> None:
    """Section 5: the rows of every group; ratios over the first group's plain forward (PyTorch alone in
    the process: other runtimes' idle worker threads slow PyTorch down on a small CPU)."""
    seed = times[0].seed
    logger.info("\n[5] runtimes, %dx%d, median of %d frames, alternating with the plain forward (text encoded "
                "every frame): %.1f ms with PyTorch alone, %s ms beside the other runtimes; every ratio divides "
                "by the %.1f ms of PyTorch alone", size, size, repeats,
                seed, ", ".join(f"{group.seed:.1f}" for group in times[1:]) or "-", seed)
    logger.info("%-34s %11s %9s %12s %9s", "backend precision", "network ms", "ratio", "end-to-end", "ratio")
    for group in times:
        for name, total in group.total.items():
            network = group.network[name]
            goal = ""
            if name.startswith("default"):
                goal = f"  (goal <= {GOAL_RATIO_BF16 if ' bf16' in name else GOAL_RATIO:.2f})"
            logger.info("%-34s %11.1f %9.3f %12.1f %9.3f%s", name, network, network / seed, total, total / seed, goal)


def runtime_accuracy(predictors: dict[str, Predictor], reference: Predictor, size: int, frames: int) -> None:
    """Section 6: every runtime against PyTorch fp32 on rendered frames (each frame's first instruction)."""
    samples = [render_scene(seed, (size, size)) for seed in range(frames)]
    expected = [reference(s.rgb, s.depth_m, s.parts[0].descriptions[0], s.K) for s in samples]
    logger.info("\n[6] accuracy vs PyTorch fp32 on %d rendered %dx%d frames; the fp32 masks cover %.1f%% "
                "(goal fp32: IoU >= 0.98, <= 0.5 deg, <= 1 px; bf16, int8: IoU >= 0.90, <= 3 deg, <= 4 px)",
                frames, size, size, 100 * statistics.mean(float(e.mask.mean()) for e in expected))
    logger.info("%-34s %14s %14s %13s %12s", "backend precision", "worst mask IoU", "worst axis deg",
                "worst point px", "motion type")
    for name, predictor in predictors.items():
        actual = [predictor(s.rgb, s.depth_m, s.parts[0].descriptions[0], s.K) for s in samples]
        logger.info("%-34s %14.4f %14.3f %13.2f %12s", name,
                    min(_iou(a.mask, e.mask) for a, e in zip(actual, expected)),
                    max(_angle_deg(a.axis, e.axis) for a, e in zip(actual, expected)),
                    max(float(np.hypot(*np.subtract(a.point_px, e.point_px))) for a, e in zip(actual, expected)),
                    "same" if all(a.motion_type == e.motion_type for a, e in zip(actual, expected)) else "DIFFERS")


def startup_times(checkpoint: Path, device: torch.device, size: int) -> None:
    """Section 7: load the checkpoint, build the Predictor and run a first frame: cold build, cached, PyTorch."""
    rgb, depth_m, K = _frame(size)

    def start(**kwargs: object) -> tuple[float, Predictor]:
        begin = time.perf_counter()
        predictor = Predictor.from_checkpoint(checkpoint, device=device, input_size=(size, size), **kwargs)
        predictor(rgb, depth_m, INSTRUCTION, K)
        return time.perf_counter() - begin, predictor

    with tempfile.TemporaryDirectory(prefix="segaff-bench-engines-") as cache_dir:
        cold, predictor = start(cache_dir=cache_dir)
        cached, _ = start(cache_dir=cache_dir)
    pytorch, _ = start(backend="torch")
    logger.info("\n[7] start-up to the first frame, %dx%d, default backend -> %s (checkpoint %s)",
                size, size, predictor.backend, checkpoint)
    logger.info("  cold (export, convert, verify): %6.2f s", cold)
    logger.info("  cached engine:                  %6.2f s  ratio to PyTorch %.2f (goal <= %.1f)",
                cached, cached / pytorch, GOAL_STARTUP_RATIO)
    logger.info("  PyTorch (backend torch):        %6.2f s", pytorch)


def _model(config: str, checkpoint: Optional[Path]) -> SegAffordanceModel:
    if checkpoint is not None:
        return load_model(checkpoint)[0]
    torch.manual_seed(0)
    return build_model(ModelParams(clip_pretrain=None) if config == "default" else ModelParams.small())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", choices=("default", "small"), default="default")
    parser.add_argument("--checkpoint", type=Path, help="measure this checkpoint's model instead (overrides --config)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 416], help="square input sizes (multiples of 32)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--bf16", action="store_true", help="add bf16 autocast rows and the bf16 accuracy check")
    parser.add_argument("--options", action="store_true",
                        help="add the Predictor per precision x channels_last x torch.compile (section 4)")
    parser.add_argument("--frames", type=int, default=4, help="synthetic frames for the accuracy checks")
    parser.add_argument("--backends", nargs="+", choices=tuple(BACKENDS),
                        help="runtimes of sections 5-6 (default: every one that can run on the device)")
    parser.add_argument("--runtimes-only", action="store_true", help="sections 5-7 only")
    parser.add_argument("--calibration", default=SYNTHETIC, help="int8 calibration: synthetic or a data set root")
    parser.add_argument("--calibration-frames", type=int, default=DEFAULT_FRAMES, help="int8 calibration frames")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logger.setLevel(logging.INFO)
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    model = _model(args.config, args.checkpoint).eval().to(device)
    hardware = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU only"
    logger.info("machine: %s; torch %s, %d threads; device %s (%s)", _cpu_name(), torch.__version__,
                torch.get_num_threads(), device, hardware)
    logger.info("at start: %s", _load())
    logger.info("model: %s, %.1f M parameters; batch 1", args.checkpoint or f"{args.config} config, random weights",
                sum(p.numel() for p in model.parameters()) / 1e6)

    if not args.runtimes_only:
        compare_per_frame(model, device, args.sizes[0], args.warmup, args.repeats)
        stage_table(model, device, args.sizes, args.bf16, args.warmup, args.repeats)
        if args.bf16:
            bf16_accuracy(model, device, args.sizes[0], args.frames, max(1, args.repeats // 5))
        if args.options:
            predictor_options(model, device, args.sizes[0], args.warmup, args.repeats)
    backends = args.backends or [name for name in AUTO_ORDER.get(device.type, ("torch",))
                                 if BACKENDS[name].unavailable_reason(device, "fp32") is None]
    size = args.sizes[0]
    calibration = Calibration.parse(args.calibration, args.calibration_frames)
    if device.type == "cpu" and not cpu_has_native_bf16():
        logger.info("\nbf16 skipped: %s has no native bf16 (%s); emulated bf16 is slower than fp32",
                    _cpu_name(), " or ".join(NATIVE_BF16_FLAGS))
    with tempfile.TemporaryDirectory(prefix="segaff-bench-") as scratch:
        engines = Path(scratch) / "engines"
        groups = [[name for name in backends if name == "torch"], [name for name in backends if name != "torch"]]
        groups[1].append("auto")
        predictors: dict[str, Predictor] = {}
        times = []
        for group in groups:  # PyTorch first, before any other runtime starts its worker threads
            group_predictors = _runtime_predictors(model, device, size, group, engines, calibration)
            times.append(time_runtimes(model, group_predictors, device, size, args.warmup, args.repeats))
            predictors.update(group_predictors)
        runtime_table(times, size, args.repeats)
        reference = Predictor(model, input_size=(size, size), device=device, backend="torch")
        runtime_accuracy(predictors, reference, size, args.frames)
        del predictors, reference
        checkpoint = args.checkpoint
        if checkpoint is None:
            params = ModelParams(clip_pretrain=None) if args.config == "default" else ModelParams.small()
            checkpoint = save_checkpoint(model, params, Path(scratch) / "model.ckpt")
        startup_times(checkpoint, device, size)
    logger.info("\nat end: %s", _load())


if __name__ == "__main__":
    main()
