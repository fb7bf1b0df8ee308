"""``keep_frame_buffers_mapped``: a frame's worth of megabyte buffers, freed and allocated again, stops costing
page faults (each one a page the kernel maps and zeroes again)."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from ros_helpers import REPO_ROOT

FRAME_FAULTS = textwrap.dedent("""
    import ctypes, resource, sys
    from segaff_ros.frame_memory import keep_frame_buffers_mapped

    if sys.argv[1] == "tuned":
        assert keep_frame_buffers_mapped()
    libc = ctypes.CDLL(None)
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, (ctypes.c_size_t,)
    libc.free.argtypes = (ctypes.c_void_p,)

    def frame():  # six 1 MiB buffers written, then freed: an RGB-D frame's copies on their way through a node
        blocks = [libc.malloc(1 << 20) for _ in range(6)]
        for block in blocks:
            ctypes.memset(block, 1, 1 << 20)
        for block in blocks:
            libc.free(block)

    frame(), frame()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(20):
        frame()
    print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
""")


def _page_faults(mode: str) -> int:
    """Page faults of 20 frames in a fresh process (``mode``: default or tuned), without malloc settings from the
    environment (GLIBC_TUNABLES, MALLOC_*): "default" is glibc's own."""
    env = {name: value for name, value in os.environ.items()
           if name != "GLIBC_TUNABLES" and not name.startswith("MALLOC_")}
    run = subprocess.run([sys.executable, "-c", FRAME_FAULTS, mode], cwd=REPO_ROOT, env=env, capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    return int(run.stdout)


def test_freed_frame_buffers_are_reused_without_page_faults() -> None:
    if not sys.platform.startswith("linux"):
        pytest.skip("glibc's mallopt: Linux only")
    default, tuned = _page_faults("default"), _page_faults("tuned")
    pages_per_frame = 6 * (1 << 20) // 4096
    assert default > 5 * pages_per_frame, f"malloc's defaults reused the buffers already ({default} faults)"
    assert tuned < pages_per_frame / 4, f"{tuned} page faults in 20 frames with the thresholds set"
