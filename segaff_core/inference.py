"""Single-image inference: RGB-D + instruction -> part mask, interaction point, approach and motion.

:class:`Predictor` wraps a built :class:`~segaff_core.model.SegAffordanceModel`. Preprocessing matches
training (:mod:`segaff_core.data.transforms`): area resize when shrinking else bilinear, CLIP
normalisation, nearest-neighbour depth with invalid pixels at 0, all on the model's device. The per-frame
network runs in a runtime of :mod:`segaff_core.runtimes` (PyTorch, ONNX Runtime, OpenVINO or TensorRT);
the text side runs in PyTorch once per instruction. The network outputs are upsampled to the RGB image's
full resolution and lifted to 3D with the depth map (:mod:`segaff_core.lifting`):

- ``point_px``: the point map's sub-pixel peak (:func:`~segaff_core.point_peak.refined_peak`: a
  soft-argmax around the map's arg max, not over the whole map as the network's ``point_xy``), stable
  under reduced precision;

- ``point_3d``: back-projection of the robust depth (:func:`~segaff_core.geometry.robust_depth_at`,
  median in a window inside the mask, else the mask's median) at the interaction pixel;
- ``approach``: minus the surface normal of the masked points within ``NORMAL_RADIUS_M`` of ``point_3d``
  (the viewing ray when fewer than 3 such points exist);
- ``axis``: the predicted axis in the opening sense, made to agree with the surface at the handle where it
  nearly does (``surface_axis``, :func:`~segaff_core.motion.surface_consistent_axis`);
- ``origin``: for rotation, a point of the hinge line on the mask's boundary in the front's plane away from
  the handle where mask and depth decide it (``hinge_origin``, :func:`~segaff_core.hinge.find_hinge_line`), else
  ``point_3d + origin_offset``; ``point_3d`` for translation. ``learned_origin``: the model's own
  (``point_3d + origin_offset``, or ``point_3d``);
- ``trajectory``: ``point_3d`` plus the model's relative trajectory, as predicted (no arc fitting).

When no valid depth is found for the point, ``valid_3d`` is False and the 3D fields are NaN (the axis,
a direction predicted from the image, is kept).
"""
from __future__ import annotations

import logging
import math
import time
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from os import PathLike
from typing import Any, Optional, Union

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from segaff_core import checkpoint, geometry
from segaff_core.geometry import normalised_to_pixel
from segaff_core.data.transforms import (
    CLIP_MEAN, CLIP_STD, resize_image, resize_image_tensor, resize_nearest, resize_nearest_tensor,
)
from segaff_core.hinge import find_hinge_line
from segaff_core.lifting import DEPTH_WINDOW_PX, NORMAL_RADIUS_M, at_depth_resolution, lift_point
from segaff_core.model import SegAffordanceModel, TextConditioning, fold_batchnorm
from segaff_core.motion import publish_motion, surface_consistent_axis
from segaff_core.point_peak import refined_peak
from segaff_core.runtimes import (
    BACKEND_CHOICES, COMPILE_MODES, BuildRequest, EngineCache, FrameRuntime, Precision, TorchOptions,
    check_precision, create_runtime,
)
from segaff_core.runtimes.calibration import SYNTHETIC, Calibration
from segaff_core.runtimes.torch_runtime import AUTOCAST_DTYPES
from segaff_core.text import tokenize

log = logging.getLogger(__name__)

MOTION_TYPES = ("translation", "rotation")
"""Motion type names by class index (0 translation, 1 rotation)."""

__all__ = ["BACKEND_CHOICES", "COMPILE_MODES", "DEPTH_WINDOW_PX", "MOTION_TYPES", "NORMAL_RADIUS_M", "PRECISIONS",
           "AffordancePrediction", "Precision", "Predictor", "lift_point", "prediction_from_outputs"]

PRECISIONS = ("fp32", "fp16", "bf16", "int8")
"""Values of ``precision``."""

TEXT_CACHE_SIZE = 8
"""Instructions whose text conditioning is kept (least recently used dropped first)."""

WARMUP_INSTRUCTION = "open the top drawer"
"""Instruction of the frames :meth:`Predictor.warmup` runs (not added to the text cache)."""


@dataclass
class AffordancePrediction:
    """One prediction at the input image's full resolution; 3D quantities in the RGB optical frame, metres."""

    mask: np.ndarray  # (H, W) bool
    mask_score: float  # mean foreground probability inside the mask (the peak probability when empty)
    point_px: tuple[float, float]  # (u, v) = (column, row), pixel centres at integers
    point_3d: np.ndarray  # (3,)
    approach: np.ndarray  # (3,) unit, into the surface
    axis: np.ndarray  # (3,) unit
    origin: np.ndarray  # (3,) a point on the axis (rotation) or the interaction point (translation)
    motion_type: str  # "translation" | "rotation"
    motion_type_confidence: float  # softmax probability of motion_type
    trajectory: np.ndarray  # (20, 3) absolute, first row = point_3d: the published motion's path (segaff_core.motion)
    timings: dict[str, float] = field(default_factory=dict)  # milliseconds
    valid_3d: bool = True  # False: no valid depth at the point, 3D fields are NaN
    learned_trajectory: Optional[np.ndarray] = None  # (20, 3) absolute: the trajectory head's own path
    opening_extent: float = math.nan  # metres (translation) or radians (rotation) the published path opens
    learned_origin: Optional[np.ndarray] = None  # (3,) the model's own origin (origin: on the hinge line where found)

    def to_dict(self, include_mask: bool = True) -> dict[str, Any]:
        """JSON-ready dict: arrays as (nested) lists, NaN as None; ``include_mask`` False leaves the
        (H, W) mask out, for callers that store it as an image."""
        mask = {"mask": self.mask.astype(bool).tolist()} if include_mask else {}
        return {
            **mask,
            "mask_score": _json_float(self.mask_score),
            "point_px": [_json_float(value) for value in self.point_px],
            "point_3d": _json_list(self.point_3d),
            "approach": _json_list(self.approach),
            "axis": _json_list(self.axis),
            "origin": _json_list(self.origin),
            "motion_type": self.motion_type,
            "motion_type_confidence": _json_float(self.motion_type_confidence),
            "trajectory": _json_list(self.trajectory),
            "timings": {name: _json_float(value) for name, value in self.timings.items()},
            "valid_3d": bool(self.valid_3d),
            "learned_trajectory": None if self.learned_trajectory is None else _json_list(self.learned_trajectory),
            "opening_extent": _json_float(self.opening_extent),
            "learned_origin": None if self.learned_origin is None else _json_list(self.learned_origin),
        }


def _json_float(value: float) -> Optional[float]:
    value = float(value)
    return value if math.isfinite(value) else None


def _json_list(array: np.ndarray) -> list[Any]:
    array = np.asarray(array, dtype=np.float64)
    return np.where(np.isfinite(array), array, None).tolist()


def resolve_device(device: Union[str, torch.device]) -> torch.device:
    """``"auto"``: CUDA when available, else the CPU; a CUDA device asked for but absent: the CPU, with a warning."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as error:
        raise ValueError(f"unknown device {device!r}: {error}") from None
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            log.warning("device %s asked for but CUDA is not available: running on the CPU", device)
            return torch.device("cpu")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            log.warning("device %s asked for but only %d CUDA device(s) exist: running on the CPU",
                        device, torch.cuda.device_count())
            return torch.device("cpu")
    return resolved


def check_intrinsics(K: Any) -> np.ndarray:
    """``K`` as a float64 (3, 3) pinhole matrix; ValueError unless finite with fx, fy > 0 and last row (0, 0, 1)."""
    K = geometry.check_intrinsics(K)
    if not np.allclose(K[2], (0.0, 0.0, 1.0)):
        raise ValueError(f"intrinsics K must have the last row (0, 0, 1), got {K[2].tolist()}")
    return K


def check_depth_size(rgb_hw: tuple[int, int], depth_hw: tuple[int, int]) -> None:
    """ValueError unless the depth size is the RGB size times or divided by one integer factor."""
    (height, width), (depth_height, depth_width) = rgb_hw, depth_hw

    def is_multiple(big: tuple[int, int], small: tuple[int, int]) -> bool:
        return big[0] % small[0] == 0 and big[1] % small[1] == 0 and big[0] // small[0] == big[1] // small[1]

    if min(height, width, depth_height, depth_width) <= 0 or not (
        is_multiple((height, width), (depth_height, depth_width))
        or is_multiple((depth_height, depth_width), (height, width))
    ):
        raise ValueError(
            f"depth size {depth_width}x{depth_height} is not an integer scale of the RGB size {width}x{height}"
        )


def _sanitize_depth(depth_m: np.ndarray) -> np.ndarray:
    """float32 depth in metres with NaN, inf and values <= 0 set to 0 (invalid), as in training."""
    depth = np.asarray(depth_m, dtype=np.float32)
    return np.where(np.isfinite(depth) & (depth > 0), depth, np.float32(0))


class Predictor:
    """Deterministic single-image inference; the text side runs once per instruction and is cached.

    ``input_size`` is the network input ``(height, width)`` (multiples of 32). ``device``: ``"auto"``,
    ``"cpu"``, ``"cuda[:N]"``. ``precision``: ``fp32``, ``fp16`` (CUDA only: on the CPU a warning, then
    fp32), ``bf16`` (CUDA, or a CPU with native bf16: elsewhere a ValueError naming the missing CPU
    feature, as emulated bf16 is slower than fp32) or ``int8`` (the CPU: OpenVINO quantised by NNCF, or
    ONNX Runtime's static quantisation; ``calibration`` says on which frames: ``"synthetic"``, a few hundred of the project's generator, or
    an OPD or SceneFun3D data set root, see :mod:`segaff_core.runtimes.calibration`; the engine is
    cached per calibration set). Depths outside ``[min_depth_m, max_depth_m]`` are not
    used for the 3D point. ``surface_axis`` (default True) makes the axis agree with the part's surface where
    it nearly does (:func:`~segaff_core.motion.surface_consistent_axis`); False publishes the model's axis.
    ``hinge_origin`` (default True) puts a rotation's origin on the hinge line that the mask and the depth show
    (:func:`~segaff_core.hinge.find_hinge_line`); False publishes the model's origin (always in ``learned_origin``).

    ``backend`` runs the per-frame network (:mod:`segaff_core.runtimes`): ``"auto"`` (the fastest runtime
    installed for the device that reproduces PyTorch fp32, see :mod:`segaff_core.runtimes.selection`;
    falls back with a warning), ``"torch"``, ``"onnxruntime"``, ``"openvino"`` or ``"tensorrt"`` (a named
    runtime that cannot run raises :class:`~segaff_core.runtimes.BackendUnavailableError`). The resolved
    name is :attr:`backend`, why it was chosen :attr:`backend_reason`. Converted graphs and engines are
    cached under ``cache_dir`` (None: ``$XDG_CACHE_HOME/segaff`` or ``~/.cache/segaff``).

    Speed options: ``fold_bn`` runs a copy of ``model`` with batch norm folded into the convolutions
    (the given model is then left as it is). PyTorch runtime only: ``channels_last`` uses that memory
    format for the network; ``compile`` wraps the per-frame network in ``torch.compile`` with frozen
    weights (constants, read at the first frame), in ``compile_mode`` (torch.compile's ``mode``:
    ``max-autotune-no-cudagraphs`` tunes the CPU's matrix products, 1-6% faster here for a 3x longer
    compilation; ``reduce-overhead`` uses CUDA graphs); a failing compilation is logged and the frames run
    eagerly. ``threads`` sets torch's intra-op CPU thread count (process-wide) and the runtime's. Call
    :meth:`warmup` before the first real frame so that it is not the slow one.
    """

    backend: str
    """The runtime that runs the per-frame network, e.g. ``"openvino"``."""
    backend_reason: str
    """One sentence: what ``auto`` chose and why, or ``"named explicitly"``."""

    def __init__(
        self,
        model: SegAffordanceModel,
        input_size: tuple[int, int] = (256, 256),
        device: Union[str, torch.device] = "auto",
        precision: Precision = "fp32",
        mask_threshold: float = 0.5,
        min_depth_m: float = 0.1,
        max_depth_m: float = 10.0,
        fold_bn: bool = True,
        channels_last: bool = False,
        compile: bool = False,
        compile_mode: str = "default",
        threads: Optional[int] = None,
        backend: str = "auto",
        cache_dir: Union[str, "PathLike[str]", None] = None,
        surface_axis: bool = True,
        hinge_origin: bool = True,
        calibration: Union[str, "PathLike[str]", Calibration] = SYNTHETIC,
    ) -> None:
        height, width = (int(size) for size in input_size)
        if height <= 0 or width <= 0 or height % 32 or width % 32:
            raise ValueError(f"input_size must be positive multiples of 32 (height, width), got {input_size}")
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        if compile_mode not in COMPILE_MODES:
            raise ValueError(f"compile_mode must be one of {COMPILE_MODES}, got {compile_mode!r}")
        if backend not in BACKEND_CHOICES:
            raise ValueError(f"backend must be one of {', '.join(BACKEND_CHOICES)}, got {backend!r}")
        if not 0.0 < mask_threshold < 1.0:
            raise ValueError(f"mask_threshold must be in (0, 1), got {mask_threshold}")
        if not 0.0 <= min_depth_m < max_depth_m:
            raise ValueError(f"need 0 <= min_depth_m < max_depth_m, got {min_depth_m}, {max_depth_m}")
        if threads is not None:
            if threads < 1:
                raise ValueError(f"threads must be >= 1, got {threads}")
            torch.set_num_threads(threads)
        self.device = resolve_device(device)
        if precision == "fp16" and self.device.type != "cuda":
            log.warning("fp16 autocast needs CUDA: running in fp32 on %s", self.device)
            precision = "fp32"
        check_precision(self.device, precision)
        calibration = Calibration.parse(calibration)
        self.precision: Precision = precision
        self.input_size = (height, width)
        self.mask_threshold = mask_threshold
        self.surface_axis = surface_axis
        self.hinge_origin = hinge_origin
        self.min_depth_m = min_depth_m
        self.max_depth_m = max_depth_m
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        network = fold_batchnorm(model) if fold_bn else model.eval()
        self.model = network.to(self.device, memory_format=self.memory_format)
        self.word_len = model.params.word_len
        # Normalisation as one multiply-add on the device: (x - mean) / std = x * scale + shift, x in [0, 255].
        std = torch.tensor(CLIP_STD, device=self.device).view(1, 3, 1, 1) * 255.0
        self._scale = 1.0 / std
        self._shift = -torch.tensor(CLIP_MEAN, device=self.device).view(1, 3, 1, 1) * 255.0 / std
        self._text_cache: OrderedDict[str, TextConditioning] = OrderedDict()
        self._staging: dict[tuple[tuple[int, ...], torch.dtype], torch.Tensor] = {}  # pinned host buffers (CUDA)
        request = BuildRequest(
            model=self.model, input_size=self.input_size, device=self.device, precision=precision,
            cache=EngineCache(cache_dir), threads=threads, torch_options=TorchOptions(compile, compile_mode),
            calibration=calibration,
        )
        self.runtime: FrameRuntime
        self.runtime, self.backend_reason = create_runtime(backend, request)
        self.backend = self.runtime.name
        log.info("per-frame network: %s (%s)", self.runtime.description, self.backend_reason)

    @classmethod
    def from_checkpoint(
        cls,
        path: Union[str, "PathLike[str]", None] = None,
        device: Union[str, torch.device] = "auto",
        backend: str = "auto",
        cache_dir: Union[str, "PathLike[str]", None] = None,
        **kwargs: Any,
    ) -> "Predictor":
        """Load a checkpoint (None: the shipped ``checkpoints/segaff_default.ckpt``); ``backend``, ``cache_dir``
        and ``kwargs`` go to the constructor.

        ``input_size`` defaults to the size the checkpoint was trained at, where it records one.

        Raises FileNotFoundError naming the missing file and
        :class:`~segaff_core.checkpoint.CheckpointError` for an unsafe or incompatible one.
        """
        if path is None:
            path = checkpoint.DEFAULT_CHECKPOINT
            if not path.is_file():
                raise FileNotFoundError(
                    f"default checkpoint {path} is not there (it is shipped separately): "
                    "put it there or name a checkpoint explicitly"
                )
        stored = checkpoint.read_checkpoint(path)
        model, _ = checkpoint.model_from_checkpoint(stored, f"checkpoint {path}")
        trained_size = checkpoint.training_input_size(stored)
        if trained_size is not None:
            kwargs.setdefault("input_size", trained_size)
        return cls(model, device=device, backend=backend, cache_dir=cache_dir, **kwargs)

    @contextmanager
    def _autocast(self) -> Iterator[None]:
        dtype = AUTOCAST_DTYPES.get(self.precision)
        with torch.autocast(device_type=self.device.type, dtype=dtype, enabled=dtype is not None):
            yield

    def _synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def _encode_instruction(self, text: str) -> TextConditioning:
        """The text side of the network for ``text``: encoder, then every text-only projection."""
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"the instruction must be a non-empty string, got {text!r}")
        tokens = tokenize(text, word_len=self.word_len).to(self.device)
        with torch.inference_mode(), self._autocast():
            return self.model.prepare_text(self.model.encode_text(tokens), trim_padding=True)

    def _text_conditioning(self, text: str) -> tuple[TextConditioning, bool]:
        """Cached text conditioning of ``text`` and whether it was computed now."""
        cached = self._text_cache.get(text)
        if cached is not None:
            self._text_cache.move_to_end(text)
            return cached, False
        conditioning = self._encode_instruction(text)
        self._text_cache[text] = conditioning
        if len(self._text_cache) > TEXT_CACHE_SIZE:
            self._text_cache.popitem(last=False)
        return conditioning, True

    def set_instruction(self, text: str) -> None:
        """Encode ``text`` now so that the next frames with this instruction skip all text-side work."""
        self._text_conditioning(text)

    def warmup(self, runs: int = 2, instruction: str = WARMUP_INSTRUCTION) -> float:
        """Run ``runs`` blank frames through the network (compilation, kernel selection, allocator, caches
        per input size) so that the first real frame is not slow; returns the seconds it took."""
        start = time.perf_counter()
        text = self._encode_instruction(instruction)
        height, width = self.input_size
        rgb = np.zeros((height, width, 3), dtype=np.uint8)
        depth_m = np.ones((height, width), dtype=np.float32)
        for _ in range(runs):
            image, depth = self._preprocess(rgb, depth_m)
            _gather_outputs(self._run_network(image, depth, text), 0, (height, width), self.mask_threshold)
        seconds = time.perf_counter() - start
        log.info("warm-up: %d frames at %dx%d in %.2f s", runs, width, height, seconds)
        return seconds

    def _run_network(self, image: torch.Tensor, depth: torch.Tensor, text: TextConditioning) -> dict[str, torch.Tensor]:
        return self.runtime.run(image, depth, text)

    def _check_inputs(self, rgb: np.ndarray, depth_m: np.ndarray, K: Any) -> np.ndarray:
        if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            shape = getattr(rgb, "shape", None)
            raise ValueError(f"rgb must be a uint8 (H, W, 3) array, got {getattr(rgb, 'dtype', type(rgb))} {shape}")
        if min(rgb.shape[:2]) == 0:
            raise ValueError(f"rgb is empty: shape {rgb.shape}")
        if not isinstance(depth_m, np.ndarray) or depth_m.ndim != 2 or not np.issubdtype(depth_m.dtype, np.floating):
            shape = getattr(depth_m, "shape", None)
            raise ValueError(
                f"depth must be a float (H, W) array in metres, got {getattr(depth_m, 'dtype', type(depth_m))} "
                f"{shape} (convert 16-bit millimetres with depth_mm / 1000)"
            )
        check_depth_size(rgb.shape[:2], depth_m.shape)
        return check_intrinsics(K)

    def _to_device(self, array: np.ndarray) -> torch.Tensor:
        """``array`` on the device in one host-to-device copy: a view of it on the CPU; on CUDA through a
        pinned staging buffer (asynchronous copy; the buffer is reused once the frame's results are back)."""
        host = torch.from_numpy(np.ascontiguousarray(array))
        if self.device.type != "cuda":
            return host.to(self.device)
        key = (tuple(host.shape), host.dtype)
        staging = self._staging.get(key)
        if staging is None:
            staging = self._staging[key] = torch.empty(host.shape, dtype=host.dtype, pin_memory=True)
        staging.copy_(host)
        return staging.to(self.device, non_blocking=True)

    def _preprocess(self, rgb: np.ndarray, depth_m: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """``image (1,3,h,w)`` CLIP-normalised and ``depth (1,1,h,w)`` metres at the network input size, with
        the pixels the data sets give in training. On the CPU the data sets' own resizing runs (OpenCV's area
        averaging: a few times faster than the matrix form); on a GPU its matrix form runs on the device, the
        image going there as uint8."""
        if self.device.type == "cpu":
            image = torch.from_numpy(resize_image(rgb, self.input_size)).permute(2, 0, 1)[None]
            depth = torch.from_numpy(np.ascontiguousarray(resize_nearest(depth_m, self.input_size)))[None, None]
        else:
            image = resize_image_tensor(self._to_device(rgb).permute(2, 0, 1)[None].float(), self.input_size)
            depth = resize_nearest_tensor(self._to_device(depth_m)[None, None], self.input_size)
        image = torch.addcmul(self._shift, image, self._scale).contiguous(memory_format=self.memory_format)
        return image, depth.contiguous(memory_format=self.memory_format)

    def __call__(self, rgb: np.ndarray, depth_m: np.ndarray, text: str, K: Any) -> AffordancePrediction:
        """Predict for ``rgb (H,W,3) uint8``, ``depth_m`` (float metres, an integer scale of H x W),
        the instruction ``text`` and ``K (3,3)`` of the RGB image."""
        start = time.perf_counter()
        K = self._check_inputs(rgb, depth_m, K)
        depth_m = _sanitize_depth(depth_m)
        image, depth = self._preprocess(rgb, depth_m)
        self._synchronize()
        preprocessed = time.perf_counter()
        text_conditioning, encoded = self._text_conditioning(text)
        self._synchronize()
        text_done = time.perf_counter()
        outputs = self._run_network(image, depth, text_conditioning)
        self._synchronize()
        image_done = time.perf_counter()
        prediction = prediction_from_outputs(
            outputs, rgb.shape[:2], depth_m, K, 0, self.mask_threshold, self.min_depth_m, self.max_depth_m,
            self.surface_axis, self.hinge_origin,
        )
        end = time.perf_counter()
        prediction.timings = {
            "preprocess": (preprocessed - start) * 1e3,
            "text": (text_done - preprocessed) * 1e3 if encoded else 0.0,
            "image": (image_done - text_done) * 1e3,
            "postprocess": (end - image_done) * 1e3,
            "total": (end - start) * 1e3,
        }
        return prediction


@dataclass
class _HostOutputs:
    """One sample's network outputs on the host, at the RGB image's resolution."""

    mask: np.ndarray  # (H, W) bool
    mask_score: float
    point_xy: np.ndarray  # (2,) float64 in [0, 1], the point map's sub-pixel peak
    axis: np.ndarray  # (3,) float64
    origin_offset: np.ndarray  # (3,) float64
    trajectory: np.ndarray  # (T, 3) float64, relative
    motion_probability: np.ndarray  # (2,) float64


def _gather_outputs(
    outputs: Mapping[str, torch.Tensor], index: int, rgb_hw: tuple[int, int], mask_threshold: float
) -> _HostOutputs:
    """Item ``index`` of ``outputs``: the mask upsampled and thresholded on the device, then everything
    packed into one byte tensor so that it comes back in a single device-to-host transfer."""
    height, width = rgb_hw
    with torch.inference_mode():
        logits = outputs["mask_logits"][index : index + 1].float()  # (1, 1, h/4, w/4)
        if logits.device.type == "cpu":
            foreground, mask_score = _mask_on_the_host(logits[0, 0].numpy(), rgb_hw, mask_threshold)
        else:
            foreground, mask_score = _mask_on_the_device(logits, rgb_hw, mask_threshold)
        values = torch.cat([
            mask_score.view(1),
            refined_peak(outputs["point_logits"][index : index + 1])[0],  # (2,) the sub-pixel peak
            outputs["axis"][index].float(),  # (3,)
            outputs["origin_offset"][index].float(),  # (3,)
            outputs["motion_type_logits"][index].float().softmax(dim=-1),  # (2,)
            outputs["trajectory"][index].float().flatten(),  # (T*3,)
        ])
        packed = torch.cat([values.view(torch.uint8), foreground.flatten().view(torch.uint8)]).cpu().numpy()
    floats = packed[: values.numel() * 4].view(np.float32).astype(np.float64)
    return _HostOutputs(
        mask=packed[values.numel() * 4 :].view(bool).reshape(height, width),
        mask_score=float(floats[0]),
        point_xy=floats[1:3],
        axis=floats[3:6],
        origin_offset=floats[6:9],
        motion_probability=floats[9:11],
        trajectory=floats[11:].reshape(-1, 3),
    )


def _mask_on_the_device(logits: torch.Tensor, rgb_hw: tuple[int, int],
                        mask_threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The mask ``(H, W)`` and its score (the mean probability inside it; the peak when it is empty) from
    ``logits (1, 1, h, w)``: bilinear upsampling (half-pixel centres) and the sigmoid on the device."""
    probability = F.interpolate(logits, size=rgb_hw, mode="bilinear", align_corners=False)[0, 0].sigmoid()
    foreground = probability > mask_threshold
    count = foreground.sum()
    inside_mean = (probability * foreground).sum() / count.clamp_min(1)
    return foreground, torch.where(count > 0, inside_mean, probability.max())


def _mask_on_the_host(logits: np.ndarray, rgb_hw: tuple[int, int],
                      mask_threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`_mask_on_the_device` for ``logits (h, w)`` on the CPU, with OpenCV's bilinear upsampling (the
    same half-pixel centres) and the threshold applied to the logits (the sigmoid is monotonic), so that the
    sigmoid runs under the mask only: a few times faster at camera resolutions."""
    height, width = rgb_hw
    upsampled = cv2.resize(logits, (width, height), interpolation=cv2.INTER_LINEAR)
    foreground = upsampled > math.log(mask_threshold / (1.0 - mask_threshold))
    inside = upsampled[foreground]
    score_logit = inside if inside.size else upsampled.max(keepdims=True)
    score = float(np.mean(1.0 / (1.0 + np.exp(-score_logit.astype(np.float64)))))
    return torch.from_numpy(foreground), torch.tensor(score, dtype=torch.float32)


def prediction_from_outputs(
    outputs: Mapping[str, torch.Tensor],
    rgb_hw: tuple[int, int],
    depth_m: np.ndarray,
    K: np.ndarray,
    index: int = 0,
    mask_threshold: float = 0.5,
    min_depth_m: float = 0.1,
    max_depth_m: float = 10.0,
    surface_axis: bool = True,
    hinge_origin: bool = True,
) -> AffordancePrediction:
    """Item ``index`` of the model's ``outputs`` at the image size ``rgb_hw`` (K's), lifted to 3D.

    ``depth_m`` (metres, 0 invalid) may be an integer scale of ``rgb_hw``. Shared by :class:`Predictor`
    and :func:`segaff_core.visualize.draw_sample`; ``timings`` is left empty. ``surface_axis`` and
    ``hinge_origin`` as in :class:`Predictor`.
    """
    height, width = rgb_hw
    host = _gather_outputs(outputs, index, rgb_hw, mask_threshold)
    u, v = np.clip(normalised_to_pixel(host.point_xy, (height, width)), 0.0, [width - 1, height - 1]).tolist()
    motion_index = int(np.argmax(host.motion_probability))
    point_3d, approach = lift_point(u, v, host.mask, depth_m, K, min_depth_m, max_depth_m)
    learned_origin = point_3d + host.origin_offset if motion_index == 1 else point_3d.copy()
    axis = host.axis / max(float(np.linalg.norm(host.axis)), 1e-12)
    if surface_axis:
        axis = surface_consistent_axis(motion_index, axis, approach)
    origin = learned_origin
    if motion_index == 1 and hinge_origin:
        origin = _hinge_line_origin(host.mask, depth_m, K, point_3d, axis, min_depth_m, max_depth_m, learned_origin)
    learned = host.trajectory - host.trajectory[:1]
    motion = publish_motion(motion_index, axis, origin - point_3d, approach, learned, surface_axis=False,
                            learned_origin_offset=learned_origin - point_3d)
    return AffordancePrediction(
        mask=host.mask,
        mask_score=host.mask_score,
        point_px=(u, v),
        point_3d=point_3d,
        approach=approach,
        axis=motion.axis,
        origin=origin.copy(),
        motion_type=MOTION_TYPES[motion_index],
        motion_type_confidence=float(host.motion_probability[motion_index]),
        trajectory=point_3d[None, :] + motion.relative_trajectory,
        valid_3d=bool(np.all(np.isfinite(point_3d))),
        learned_trajectory=point_3d[None, :] + learned,
        opening_extent=motion.extent,
        learned_origin=learned_origin,
    )


def _hinge_line_origin(
    mask: np.ndarray, depth_m: np.ndarray, K: np.ndarray, point_3d: np.ndarray, axis: np.ndarray,
    min_depth_m: float, max_depth_m: float, learned_origin: np.ndarray,
) -> np.ndarray:
    """The origin on the hinge line found in the depth map's resolution (:func:`~segaff_core.hinge.find_hinge_line`),
    else ``learned_origin``."""
    mask_depth, K_depth = at_depth_resolution(mask, depth_m.shape, K)
    hinge = find_hinge_line(mask_depth, depth_m, K_depth, point_3d, axis, min_depth_m, max_depth_m)
    return learned_origin if hinge is None else hinge.origin
