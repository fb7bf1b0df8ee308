"""Inference runtimes for the per-frame network (PyTorch, ONNX Runtime, OpenVINO, TensorRT), the engine
cache they share, and the ``auto`` rule that picks one. One module per runtime; see :mod:`.base` for the
interface and :mod:`.selection` for the rule."""
from segaff_core.runtimes.base import BackendUnavailableError, BuildRequest, FrameRuntime, Precision, TorchOptions
from segaff_core.runtimes.cache import EngineCache, default_cache_dir
from segaff_core.runtimes.hardware import check_precision, cpu_has_native_bf16
from segaff_core.runtimes.selection import AUTO_ORDER, BACKEND_CHOICES, BACKENDS, create_runtime
from segaff_core.runtimes.torch_runtime import COMPILE_MODES

__all__ = [
    "AUTO_ORDER", "BACKENDS", "BACKEND_CHOICES", "COMPILE_MODES", "BackendUnavailableError", "BuildRequest",
    "EngineCache", "FrameRuntime", "Precision", "TorchOptions", "check_precision", "cpu_has_native_bf16",
    "create_runtime", "default_cache_dir",
]
