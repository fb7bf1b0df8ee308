"""Scripts run in a fresh Python process, for what must not share the test process: native crashes and the
delivery of signals after native libraries changed the signal stack."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

_CATCH_SIGNALS = """
import os, signal, subprocess, sys, time
caught = []
signal.signal(signal.SIGCHLD, lambda *_: caught.append("SIGCHLD"))
signal.signal(signal.SIGINT, lambda *_: caught.append("SIGINT"))
"""
_RAISE_SIGNALS = """
subprocess.run([sys.executable, "-c", "pass"], check=True)  # a child exits: SIGCHLD
os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C
deadline = time.monotonic() + 5.0
while "SIGINT" not in caught and time.monotonic() < deadline:
    time.sleep(0.01)
print("caught", sorted(set(caught)))
"""


def run_script(script: str, *args: str, timeout_s: float = 600.0) -> subprocess.CompletedProcess[str]:
    """``script`` in a fresh Python process (the repository on its path), its output captured."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "test")]), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(script), *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout_s)


def assert_signals_delivered_after(work: str, *args: str) -> None:
    """Run ``work`` (a script) between installing Python SIGCHLD and SIGINT handlers and a child's exit and a
    SIGINT; both signals must reach their handlers and the process exit 0."""
    script = _CATCH_SIGNALS + textwrap.dedent(work) + _RAISE_SIGNALS
    completed = run_script(script, *args)
    assert completed.returncode == 0, f"exit {completed.returncode}\n{completed.stdout}\n{completed.stderr[-3000:]}"
    assert "caught ['SIGCHLD', 'SIGINT']" in completed.stdout, completed.stdout + completed.stderr[-3000:]
