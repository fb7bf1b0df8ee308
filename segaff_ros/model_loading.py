"""Loading the node's model at ``configure``: the only place the model is loaded.

:func:`load_predictor` builds the Predictor from the node's parameters, warms it up (so the first frame is
not the slow one; engine back-ends build or load their engine here) and says in one log line what it
loaded, where, and which runtime runs it. Any failure is a :class:`ConfigurationError` with the reason.
"""
from __future__ import annotations

import gc
import os
import time

import torch
from rclpy.impl.rcutils_logger import RcutilsLogger

from segaff_core.inference import Predictor
from segaff_core.runtimes import BackendUnavailableError
from segaff_core.runtimes.calibration import SYNTHETIC, Calibration
from segaff_ros.node_parameters import PerceptionParams


class ConfigurationError(RuntimeError):
    """A configuration the node cannot be configured with: bad parameter, missing or unloadable checkpoint."""


def load_predictor(params: PerceptionParams, logger: RcutilsLogger) -> Predictor:
    """The warmed-up Predictor of ``params``; ConfigurationError saying why it cannot be loaded."""
    path = params.checkpoint or None
    if path is not None and not os.path.isfile(path):
        raise ConfigurationError(f"checkpoint {path!r} does not exist (parameter 'checkpoint')")
    calibration: Calibration | str = SYNTHETIC  # used by int8 only
    if params.precision == "int8":
        try:
            calibration = Calibration.parse(params.calibration)
        except (FileNotFoundError, ValueError) as error:
            raise ConfigurationError(f"parameter 'calibration': {error}") from error
    started = time.monotonic()
    size = (params.input_height, params.input_width)
    try:
        predictor = Predictor.from_checkpoint(
            path,
            device=params.device,
            **({"input_size": size} if min(size) > 0 else {}),
            precision=params.precision,
            calibration=calibration,
            threads=params.cpu_threads or None,
            channels_last=params.channels_last,
            compile=params.compile,
            compile_mode=params.compile_mode,
            mask_threshold=params.mask_threshold,
            min_depth_m=params.min_depth_m,
            max_depth_m=params.max_depth_m,
            backend=params.backend,
            cache_dir=params.cache_dir or None,
        )
        warmup_s = predictor.warmup()  # the first real frame is then not slow
    except BackendUnavailableError as error:
        raise ConfigurationError(f"parameter 'backend': {error}") from error
    except Exception as error:  # any failure to load is a failed configure, with the reason
        raise ConfigurationError(
            f"cannot load checkpoint {path or '(shipped default)'}: {type(error).__name__}: {error}"
        ) from error
    logger.info(
        f"loaded {path or 'the shipped default checkpoint'} on {predictor.device} "
        f"({params.precision}, input {predictor.input_size[0]}x{predictor.input_size[1]}, "
        f"{torch.get_num_threads()} CPU threads, backend {predictor.backend}: {predictor.backend_reason}) "
        f"in {time.monotonic() - started:.1f} s (warm-up {warmup_s:.1f} s)"
    )
    return predictor


def free_gpu_memory() -> None:
    """Return the memory of a model no longer referenced to the GPU (no-op without CUDA)."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
