"""What the machine offers: native bf16 on the CPU, and names of the devices (for cache keys and logs)."""
from __future__ import annotations

import hashlib
import platform
import re
from functools import lru_cache
from pathlib import Path

import torch

NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
"""CPU flags (Linux /proc/cpuinfo) of native bf16 arithmetic; without them bf16 is emulated, slower than fp32."""


@lru_cache(maxsize=1)
def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def cpu_has_native_bf16() -> bool:
    """Whether the CPU computes in bf16 natively (one of :data:`NATIVE_BF16_FLAGS`)."""
    return re.search(r"\b(" + "|".join(NATIVE_BF16_FLAGS) + r")\b", _cpuinfo()) is not None


def check_precision(device: torch.device, precision: str) -> None:
    """ValueError for bf16 on a CPU without native bf16, naming the missing CPU feature, and for int8 off the CPU."""
    if precision == "int8" and device.type != "cpu":
        raise ValueError(f"int8 runs on the CPU (OpenVINO), not on {device}: use fp16 or bf16 there")
    if precision == "bf16" and device.type == "cpu" and not cpu_has_native_bf16():
        raise ValueError(
            f"bf16 on the CPU needs native bf16 arithmetic (CPU flag {' or '.join(NATIVE_BF16_FLAGS)}), "
            f"which {cpu_name()} lacks: emulated bf16 is slower than fp32, use precision fp32"
        )


def cpu_name() -> str:
    """The CPU's model name."""
    match = re.search(r"^model name\s*:\s*(.+)$", _cpuinfo(), re.MULTILINE)
    return match.group(1).strip() if match else (platform.processor() or platform.machine())


def device_name(device: torch.device) -> str:
    """The CPU's model name and a digest of its instruction-set flags, or the CUDA device's name and compute
    capability (part of engine cache keys: engines are specific to them)."""
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        return f"{torch.cuda.get_device_name(device)} sm_{major}{minor}"
    flags = re.search(r"^flags\s*:\s*(.+)$", _cpuinfo(), re.MULTILINE)  # the same name, other instruction sets
    digest = hashlib.sha256(flags.group(1).encode()).hexdigest()[:12] if flags else platform.machine()
    return f"{cpu_name()} flags {digest}"
