"""Python tracebacks on native crashes.

A segmentation fault in a native library (a runtime, a DDS middleware, a driver) otherwise ends the process
with nothing but an exit status. :func:`enable_crash_tracebacks` arms :mod:`faulthandler`: on SIGSEGV,
SIGFPE, SIGABRT, SIGBUS or SIGILL every thread's Python traceback goes to stderr before the process dies.
The node, the ``segaff`` CLI and ``train/fit.py`` arm it at start. A library that saves and restores signal
handlers through :mod:`signal` disarms it, because ``signal.getsignal`` cannot see faulthandler's C handler
and reports ``SIG_DFL``: Lightning's signal connector does so at the end of every ``Trainer`` run, so
:class:`segaff_core.callbacks.CrashTracebacks` arms it again there.

:func:`report_stall` is the same for a hang: every thread's traceback when a step takes too long (the node's
clean-up after Ctrl-C, which ``ros2 launch`` otherwise ends with SIGTERM and no word of where it hung).
:func:`dump_stacks_on_signal` answers ``kill -USR1 PID`` with every thread's traceback, the process going on:
where a running node that stopped answering is waiting.
"""
from __future__ import annotations

import faulthandler
import signal
import sys
from contextlib import contextmanager
from typing import Iterator, Optional, TextIO


def _stderr() -> Optional[TextIO]:
    """The process's own stderr (not a replacement such as pytest's capture), or None in a detached process."""
    return sys.__stderr__ if sys.__stderr__ is not None else sys.stderr


def enable_crash_tracebacks() -> None:
    """Arm faulthandler for every thread, writing to the process's stderr; call it again after a library
    replaced the handlers (``faulthandler.enable`` alone does nothing while it believes itself enabled)."""
    stream = _stderr()
    if stream is None:  # no stderr at all (a detached process): nothing to write to
        return
    faulthandler.disable()
    faulthandler.enable(file=stream, all_threads=True)


def dump_stacks_on_signal(signum: int = signal.SIGUSR1) -> None:
    """On ``signum`` (SIGUSR1: ``kill -USR1 PID``), write every thread's traceback to stderr and go on. Written by
    faulthandler's C handler, so it answers while a thread holds the GIL in native code."""
    stream = _stderr()
    if stream is not None:
        faulthandler.register(signum, file=stream, all_threads=True, chain=False)


@contextmanager
def report_stall(seconds: float) -> Iterator[None]:
    """Write ``Timeout (h:mm:ss)!`` and every thread's traceback to stderr if the block still runs after
    ``seconds`` (once; the block goes on). faulthandler's watchdog is a native thread: it reports even while
    the stuck thread holds the GIL in native code."""
    stream = _stderr()
    if stream is None:
        yield
        return
    faulthandler.dump_traceback_later(seconds, repeat=False, file=stream, exit=False)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()
