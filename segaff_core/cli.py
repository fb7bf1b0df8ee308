"""The ``segaff`` command line.

    segaff predict --rgb RGB.png --depth DEPTH.png|.npy --text "open the drawer"
                   (--intrinsics fx,fy,cx,cy | --camera-info CAMERA.yaml) [--checkpoint C] [--out DIR]
                   [--backend B] [--precision P [--calibration DIR|synthetic]] [--cache-dir D]
    segaff synth --format {opd,sf3d} --out DIR --num N --seed S [--size WxH] [--workers W]
                 [--styles {train,heldout,classic}[,...]] [--sensor-faults 0-4[,0-4...]]
    segaff slim --checkpoint C --out C_SLIM
    segaff export --onnx OUT.onnx [--checkpoint C] [--input-size WxH] [--text "open the drawer"]
    segaff build-engine --backend B [--checkpoint C] [--size WxH] [--precision P] [--cache-dir D] [--device D]
                        [--calibration DIR|synthetic] [--calibration-frames N]  (int8)
    segaff slim --checkpoint TRAINING.ckpt --out INFERENCE.ckpt
    segaff convert-sf3d --src SEED_LMDB_OR_ROOT --out NEW.lmdb --trust-pickle [--skip-bad]

Each subcommand is an ``(add_arguments, run)`` pair in :data:`SUBCOMMANDS`. User errors (unreadable
files, bad intrinsics, mismatched sizes, an unusable checkpoint) end with exit code 2 and one line on
stderr, without a traceback.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn, Optional

import numpy as np

from segaff_core.crash_reports import enable_crash_tracebacks

EXIT_USER_ERROR = 2


class CliError(Exception):
    """A user error: reported as one line on stderr, exit code 2."""


class _Parser(argparse.ArgumentParser):
    """ArgumentParser whose usage errors are one line on stderr (exit code 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USER_ERROR, f"{self.prog}: error: {message} (see --help)\n")


def _read_file_bytes(path: Path, what: str) -> np.ndarray:
    if not path.is_file():
        raise CliError(f"{what} {path} does not exist")
    try:
        return np.fromfile(path, dtype=np.uint8)
    except OSError as error:
        raise CliError(f"cannot read {what} {path}: {error.strerror or error}") from None


def read_rgb(path: Path) -> np.ndarray:
    """An 8-bit colour image file (PNG, JPEG, ...) as RGB ``(H, W, 3) uint8``."""
    import cv2

    image = cv2.imdecode(_read_file_bytes(path, "RGB image"), cv2.IMREAD_COLOR)
    if image is None:
        raise CliError(f"cannot decode the RGB image {path}: not an image file OpenCV can read")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_depth(path: Path) -> np.ndarray:
    """Depth in metres ``(H, W) float32``: ``.npy`` float metres, or a 16-bit image in millimetres (REP 118)."""
    import cv2

    if path.suffix.lower() == ".npy":
        if not path.is_file():
            raise CliError(f"depth {path} does not exist")
        try:
            depth = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as error:
            raise CliError(f"cannot read the depth array {path}: {error}") from None
        depth = np.squeeze(depth, axis=-1) if depth.ndim == 3 and depth.shape[-1] == 1 else depth
        if depth.ndim != 2 or not np.issubdtype(depth.dtype, np.floating):
            raise CliError(f"depth {path} must be a float (H, W) array in metres, got {depth.dtype} {depth.shape}")
        return depth.astype(np.float32)
    depth = cv2.imdecode(_read_file_bytes(path, "depth image"), cv2.IMREAD_UNCHANGED)
    if depth is None:
        raise CliError(f"cannot decode the depth image {path}: not an image file OpenCV can read")
    if depth.ndim != 2 or depth.dtype != np.uint16:
        channels = 1 if depth.ndim == 2 else depth.shape[2]
        raise CliError(
            f"depth image {path} must be single-channel 16-bit (millimetres), got {channels} channel(s) of "
            f"{depth.dtype}; use a .npy file for float metres"
        )
    return depth.astype(np.float32) / 1000.0


def parse_intrinsics(text: str) -> np.ndarray:
    """``"fx,fy,cx,cy"`` -> K (3, 3); CliError unless four finite numbers with fx, fy > 0."""
    parts = [part.strip() for part in text.split(",")]
    if len(parts) != 4:
        raise CliError(f"--intrinsics needs 4 comma-separated numbers fx,fy,cx,cy, got {len(parts)}: {text!r}")
    try:
        fx, fy, cx, cy = (float(part) for part in parts)
    except ValueError:
        raise CliError(f"--intrinsics holds something that is not a number: {text!r}") from None
    if not all(math.isfinite(value) for value in (fx, fy, cx, cy)):
        raise CliError(f"--intrinsics must be finite numbers, got {text!r}")
    if fx <= 0 or fy <= 0:
        raise CliError(f"--intrinsics needs positive focal lengths, got fx={fx:g}, fy={fy:g}")
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


def read_camera_info(path: Path, image_hw: tuple[int, int]) -> np.ndarray:
    """K (3, 3) from a ROS camera calibration YAML (``camera_matrix.data``), checked against the image size."""
    import yaml

    from segaff_core.inference import check_intrinsics

    if not path.is_file():
        raise CliError(f"camera info {path} does not exist")
    try:
        calibration = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise CliError(f"cannot read the camera info {path}: {' '.join(str(error).split())}") from None
    data = (calibration or {}).get("camera_matrix", {}).get("data") if isinstance(calibration, dict) else None
    if not isinstance(data, list) or len(data) != 9:
        raise CliError(f"camera info {path} has no camera_matrix.data list of 9 numbers")
    try:
        K = check_intrinsics(np.array(data, dtype=np.float64).reshape(3, 3))
    except (TypeError, ValueError) as error:
        raise CliError(f"camera info {path}: {error}") from None
    size = (calibration.get("image_height"), calibration.get("image_width"))
    if None not in size and tuple(size) != tuple(image_hw):
        raise CliError(
            f"camera info {path} is for {size[1]}x{size[0]} images but the RGB image is {image_hw[1]}x{image_hw[0]}"
        )
    return K


def parse_size(text: str, option: str) -> tuple[int, int]:
    """``"WxH"`` -> ``(height, width)``."""
    width, sep, height = text.lower().partition("x")
    if not sep or not width.isdigit() or not height.isdigit() or int(width) <= 0 or int(height) <= 0:
        raise CliError(f"{option} must be WIDTHxHEIGHT in positive pixels (e.g. 256x256), got {text!r}")
    return int(height), int(width)


def _add_predict_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rgb", type=Path, required=True, help="colour image (PNG, JPEG, ...)")
    parser.add_argument(
        "--depth",
        type=Path,
        required=True,
        help="depth registered to the RGB image: 16-bit PNG in millimetres or .npy float metres "
        "(its size may be an integer scale of the RGB size)",
    )
    parser.add_argument("--text", required=True, help="the instruction, e.g. 'open the top drawer'")
    camera = parser.add_mutually_exclusive_group(required=True)
    camera.add_argument("--intrinsics", metavar="FX,FY,CX,CY", help="pinhole intrinsics of the RGB image, pixels")
    camera.add_argument("--camera-info", type=Path, metavar="FILE.yaml", help="ROS camera calibration YAML")
    parser.add_argument("--checkpoint", type=Path, help="Lightning .ckpt (default: the shipped checkpoint)")
    parser.add_argument("--out", type=Path, default=Path("segaff_out"), help="output folder (default: %(default)s)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: %(default)s)")
    _add_runtime_arguments(parser)
    parser.add_argument(
        "--input-size", metavar="WxH", help="network input size (default: the size the checkpoint was trained at)"
    )


BACKEND_HELP = ("runtime of the per-frame network: auto (the fastest installed that matches PyTorch), torch, "
                "onnxruntime, openvino or tensorrt (default: %(default)s)")


def _add_runtime_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--precision", default="fp32", choices=("fp32", "fp16", "bf16", "int8"),
                        help="fp16: CUDA only; bf16: CUDA or a CPU with native bf16; int8: the CPU, OpenVINO "
                        "quantised by NNCF or ONNX Runtime's static quantisation (default: %(default)s)")
    parser.add_argument("--calibration", metavar="DIR|synthetic",
                        help="int8: the frames it is calibrated on, 'synthetic' (the project's generator, the "
                        "default) or an OPD or SceneFun3D data set root")
    parser.add_argument("--calibration-frames", type=int, metavar="N",
                        help="int8: how many calibration frames (default: 300)")
    parser.add_argument("--backend", default="auto", help=BACKEND_HELP)
    parser.add_argument("--cache-dir", type=Path,
                        help="engine cache directory (default: $XDG_CACHE_HOME/segaff or ~/.cache/segaff)")


def _load_predictor(args: argparse.Namespace, **options: object):
    """The Predictor of ``args`` (checkpoint, device, precision, backend, cache dir); a runtime that
    cannot run is a user error."""
    from segaff_core.inference import Predictor
    from segaff_core.runtimes import BackendUnavailableError

    calibration = parse_calibration(args)
    try:
        return Predictor.from_checkpoint(
            args.checkpoint, device=args.device, precision=args.precision, backend=args.backend,
            cache_dir=args.cache_dir, calibration=calibration, **options,
        )
    except BackendUnavailableError as error:
        raise CliError(str(error)) from None


def parse_calibration(args: argparse.Namespace):
    """The int8 calibration of ``args`` (``--calibration``, ``--calibration-frames``); CliError for a
    missing or unreadable DIR, or for calibration options without ``--precision int8``."""
    from segaff_core.runtimes.calibration import DEFAULT_FRAMES, SYNTHETIC, Calibration

    if args.precision != "int8":
        if args.calibration is not None or args.calibration_frames is not None:
            raise CliError(f"--calibration and --calibration-frames apply to --precision int8, not {args.precision}")
        return Calibration()
    try:
        return Calibration.parse(args.calibration or SYNTHETIC,
                                 DEFAULT_FRAMES if args.calibration_frames is None else args.calibration_frames)
    except (OSError, ValueError) as error:
        raise CliError(f"--calibration: {error}") from None


def _run_predict(args: argparse.Namespace) -> int:
    """Predict the part, interaction point and motion for one RGB-D image and instruction."""
    import cv2

    from segaff_core.inference import check_depth_size
    from segaff_core.visualize import draw_overlay

    options = {"input_size": parse_size(args.input_size, "--input-size")} if args.input_size else {}
    rgb = read_rgb(args.rgb)
    depth_m = read_depth(args.depth)
    try:
        check_depth_size(rgb.shape[:2], depth_m.shape)
    except ValueError as error:
        raise CliError(f"{args.depth} does not match {args.rgb}: {error}") from None
    K = parse_intrinsics(args.intrinsics) if args.intrinsics else read_camera_info(args.camera_info, rgb.shape[:2])
    predictor = _load_predictor(args, **options)
    prediction = predictor(rgb, depth_m, args.text, K)
    try:
        args.out.mkdir(parents=True, exist_ok=True)
        result = {"instruction": args.text, **prediction.to_dict()}
        (args.out / "result.json").write_text(json.dumps(result))
        overlay = draw_overlay(rgb, prediction, K, args.text)
        ok, encoded = cv2.imencode(".png", cv2.cvtColor(overlay, cv2.COLOR_RGB2BGR))
        if not ok:
            raise CliError("cannot encode the overlay as PNG")
        encoded.tofile(args.out / "overlay.png")
    except OSError as error:
        raise CliError(f"cannot write to {args.out}: {error.strerror or error}") from None
    point = ", ".join(f"{value:.3f}" for value in prediction.point_3d) if prediction.valid_3d else "no valid depth"
    print(
        f"{prediction.motion_type} ({prediction.motion_type_confidence:.0%}), mask {int(prediction.mask.sum())} px "
        f"(score {prediction.mask_score:.2f}), point ({prediction.point_px[0]:.0f}, {prediction.point_px[1]:.0f}) "
        f"px [{point}] m, {prediction.timings['total']:.0f} ms -> {args.out}"
    )
    return 0


def _add_synth_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", required=True, choices=("opd", "sf3d"), help="layout of the written data set")
    parser.add_argument("--out", type=Path, required=True, help="output folder (the data set root)")
    parser.add_argument("--num", type=int, required=True, help="number of images")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    parser.add_argument("--size", metavar="WxH", help="image size (default: generate_dataset's, 256x256)")
    parser.add_argument("--workers", type=int, default=1, help="rendering processes (default: %(default)s)")
    parser.add_argument("--styles", type=_styles, default=("train",), metavar="{train,heldout,classic}",
                        help="the world drawn: train, held-out furniture families, finishes and handles that "
                        "train never draws, or classic, the world the stage-1 and -2 checkpoints were trained "
                        "and scored on; a comma-separated list (classic,train) gives the scenes those worlds in "
                        "turn (default: train; see docs/TRAINING.md)")
    parser.add_argument("--sensor-faults", type=_severities, default=(0,), metavar="0-4",
                        help="depth sensor fault severity, 0 = perfect depth; a comma-separated list (0,0,1,2,3,4) "
                        "gives the scenes those severities in turn (default: 0)")


def _severities(text: str) -> tuple[int, ...]:
    """``--sensor-faults``: one severity 0-4, or a comma-separated list of them."""
    from segaff_core.synth.generate import scene_severities

    try:
        return scene_severities([int(part) for part in text.split(",")])
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a severity 0-4 or a comma-separated list of them, got {text!r}")


def _styles(text: str) -> tuple[str, ...]:
    """``--styles``: one world, or a comma-separated list of them."""
    from segaff_core.synth.generate import scene_styles

    try:
        return scene_styles(text.split(","))  # type: ignore[arg-type]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected train, heldout or classic, or a comma-separated list of them, "
                                         f"got {text!r}")


def _run_synth(args: argparse.Namespace) -> int:
    """Render a synthetic articulated-furniture data set in the OPD or SceneFun3D format."""
    from segaff_core.synth import generate_dataset

    size = {"image_size": parse_size(args.size, "--size")} if args.size else {}
    summary = generate_dataset(args.format, args.out, args.num, args.seed, workers=args.workers, styles=args.styles,
                               sensor_faults=args.sensor_faults, **size)
    splits = ", ".join(f"{split} {count}" for split, count in summary.images_per_split.items())
    print(
        f"wrote {summary.num_images} images ({splits}) with {summary.num_parts} parts of {summary.num_scenes} "
        f"scenes in the {summary.format} format to {summary.out} in {summary.seconds:.1f} s"
    )
    return 0


def _add_slim_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", type=Path, required=True, help="a training checkpoint (e.g. last.ckpt)")
    parser.add_argument("--out", type=Path, required=True, help="the inference checkpoint to write")


def _run_slim(args: argparse.Namespace) -> int:
    """Write a training checkpoint without optimizer state: the file to ship or deploy."""
    from segaff_core.checkpoint import export_inference_checkpoint

    written = export_inference_checkpoint(args.checkpoint, args.out)
    print(f"wrote {written} ({written.stat().st_size / 2**20:.1f} MiB)")
    return 0


def _add_convert_sf3d_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--src", type=Path, required=True, help="the seed's data.lmdb, or the root that holds it")
    parser.add_argument(
        "--out",
        type=Path,
        required=True,
        help="the LMDB to write, a new directory (e.g. ROOT/data_json.lmdb); images/ and depth/ stay in ROOT",
    )
    parser.add_argument(
        "--trust-pickle",
        action="store_true",
        help="the source is yours or the seed's own output: its pickled records may be unpickled, which runs "
        "any code a record names (without this flag nothing is read)",
    )
    parser.add_argument(
        "--skip-bad", action="store_true", help="leave out records that do not convert (listed) instead of stopping"
    )
    parser.add_argument(
        "--valid-fraction",
        type=float,
        default=0.1,
        help="share of the scenes in the 'valid' split, the rest in 'train', drawn as the seed drew them "
        "(default: %(default)s; 0: no splits)",
    )
    parser.add_argument("--split-seed", type=int, default=42, help="seed of the scene split (default: %(default)s)")


def _run_convert_sf3d(args: argparse.Namespace) -> int:
    """Convert the seed's pickled SceneFun3D LMDB to JSON records (only a source you trust)."""
    from segaff_core.data import DatasetError
    from segaff_core.data.sf3d_convert import convert_seed_lmdb

    try:
        summary = convert_seed_lmdb(args.src, args.out, trust_pickle=args.trust_pickle, skip_bad=args.skip_bad,
                                    valid_fraction=args.valid_fraction, split_seed=args.split_seed)
    except DatasetError as error:  # a record that does not convert, named with its key
        raise CliError(str(error)) from None
    root = summary.source.parent  # where images/ and depth/ are, with the seed's LMDB
    skipped = f", left out {len(summary.skipped)}: {', '.join(summary.skipped)}" if summary.skipped else ""
    print(
        f"wrote {summary.written} records of {summary.source} to {summary.out}{skipped}; read them with "
        f"SF3DDataset({str(root)!r}, lmdb_path={str(summary.out)!r}) (or the data module's lmdb_path)"
    )
    return 0


def _add_export_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--onnx", type=Path, required=True, metavar="OUT.onnx", help="the ONNX file to write")
    parser.add_argument("--checkpoint", type=Path, help="Lightning .ckpt (default: the shipped checkpoint)")
    parser.add_argument(
        "--input-size", metavar="WxH", help="network input size (default: the checkpoint's training size, else 256x256)"
    )
    parser.add_argument(
        "--text", metavar="INSTRUCTION", help="also write this instruction's text inputs to OUT.text.npz"
    )


def _run_export(args: argparse.Namespace) -> int:
    """Export the per-frame network (image, depth and cached text tensors in) to ONNX, checked with onnxruntime."""
    from segaff_core.checkpoint import DEFAULT_CHECKPOINT, model_from_checkpoint, read_checkpoint, training_input_size
    from segaff_core.export import export_onnx, text_inputs

    path = args.checkpoint or DEFAULT_CHECKPOINT
    stored = read_checkpoint(path)
    model, _ = model_from_checkpoint(stored, f"checkpoint {path}")
    if args.input_size:
        input_size = parse_size(args.input_size, "--input-size")
    else:
        input_size = training_input_size(stored) or (256, 256)
    report = export_onnx(model, args.onnx, input_size)
    error = max(report.max_abs_error.values())
    print(
        f"wrote {report.path} ({input_size[1]}x{input_size[0]}, inputs {', '.join(report.input_names)}); "
        f"onnxruntime matches PyTorch (max abs error {error:.2g})"
    )
    if args.text:
        feeds_path = args.onnx.with_suffix(".text.npz")
        np.savez(feeds_path, **text_inputs(model, args.text))
        print(f"wrote the text inputs of {args.text!r} to {feeds_path}")
    return 0


def _add_build_engine_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", type=Path, help="Lightning .ckpt (default: the shipped checkpoint)")
    parser.add_argument("--size", metavar="WxH", help="network input size (default: the size the checkpoint "
                        "was trained at)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: %(default)s)")
    _add_runtime_arguments(parser)


def _run_build_engine(args: argparse.Namespace) -> int:
    """Build (or find) the cached engine of a checkpoint for a runtime, input size and precision."""
    import time

    options = {"input_size": parse_size(args.size, "--size")} if args.size else {}
    start = time.perf_counter()
    predictor = _load_predictor(args, **options)
    seconds = time.perf_counter() - start
    engine = predictor.runtime.engine
    height, width = predictor.input_size
    what = f"{predictor.backend} {predictor.precision} {width}x{height}"
    if engine is None:
        print(f"{what}: this runtime needs no engine ({predictor.backend_reason}; {seconds:.1f} s)")
    else:
        state = "found in the cache" if engine.from_cache else "built"
        print(f"{what}: engine {state} in {seconds:.1f} s: {engine.path} ({predictor.backend_reason})")
    return 0


Subcommand = tuple[Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]

SUBCOMMANDS: dict[str, Subcommand] = {
    "predict": (_add_predict_arguments, _run_predict),
    "synth": (_add_synth_arguments, _run_synth),
    "slim": (_add_slim_arguments, _run_slim),
    "convert-sf3d": (_add_convert_sf3d_arguments, _run_convert_sf3d),
    "export": (_add_export_arguments, _run_export),
    "build-engine": (_add_build_engine_arguments, _run_build_engine),
}
"""Subcommand name -> (add its arguments to a parser, run it on the parsed arguments -> exit code)."""


def build_parser() -> argparse.ArgumentParser:
    """The ``segaff`` parser with one sub-parser per entry of :data:`SUBCOMMANDS`."""
    parser = _Parser(prog="segaff", description="SegAffordance: language-conditioned affordance perception.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress (INFO)")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (add_arguments, run) in SUBCOMMANDS.items():
        summary = (run.__doc__ or "").strip().splitlines()[0]
        subparser = subparsers.add_parser(name, help=summary, description=summary)
        add_arguments(subparser)
        subparser.set_defaults(run=run)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run ``segaff`` on ``argv`` (default: ``sys.argv[1:]``); returns the exit code."""
    enable_crash_tracebacks()
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        return args.run(args)
    except (CliError, OSError, ValueError) as error:  # OSError: files; ValueError: inputs, CheckpointError
        message = " ".join(str(error).split())
        sys.stderr.write(f"segaff {args.command}: error: {message}\n")
        return EXIT_USER_ERROR


if __name__ == "__main__":
    sys.exit(main())
