"""What the benchmarks ask of the CPU."""
from __future__ import annotations

import re
from pathlib import Path


def cpu_has_native_bf16() -> bool:
    """Whether the CPU computes in bf16 natively (the avx512_bf16 or amx_bf16 flag of Linux's /proc/cpuinfo)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return re.search(r"\b(avx512_bf16|amx_bf16)\b", flags) is not None
