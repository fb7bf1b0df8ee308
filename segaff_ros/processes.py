"""ROS nodes as child processes that never outlive their parent, and a DDS domain of one's own.

:class:`NodeProcess` starts ``python -m segaff_ros.processes MODULE --ros-args ...``: this module's entry
point asks Linux to send the child SIGTERM when its parent dies (``PR_SET_PDEATHSIG``, so a parent killed
with SIGKILL leaves no orphan either) and then runs ``MODULE`` as ``__main__``, as ``python -m MODULE``
would (a Ctrl-C that cuts its imports short ends it with code 130 instead of a traceback). The child gets
a session of its own, so a Ctrl-C in the terminal reaches the parent only, which then stops its children
in order (:meth:`NodeProcess.stop`: SIGINT, then SIGKILL after a timeout).
:func:`claim_ros_domain_id` picks a ``ROS_DOMAIN_ID`` that no other process on the machine holds;
:func:`use_large_images_profile` gives Fast DDS the shipped profile for camera-sized messages.

Used by the demo (:mod:`segaff_ros.demo`) and the ROS tests. No rclpy import here.
"""
from __future__ import annotations

import ctypes
import fcntl
import os
import runpy
import signal
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Optional

_LAUNCHER = "segaff_ros.processes"  # this module, run as the child's entry point
_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
_PARENT_PID_VARIABLE = "SEGAFF_PARENT_PID"
_INTERRUPTED_EXIT_CODE = 130  # of a node that Ctrl-C stopped before it could handle it (128 + SIGINT)
_domain_lock: Optional[IO[str]] = None


FASTDDS_PROFILE_VARIABLES = ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE")
LARGE_IMAGES_PROFILE = "fastdds_large_images.xml"


def large_images_profile() -> Path:
    """The shipped Fast DDS profile for camera images (config/fastdds_large_images.xml): from the package's
    share directory when installed by colcon, else from this source tree."""
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
    except ImportError:
        return Path(__file__).resolve().parents[1] / "config" / LARGE_IMAGES_PROFILE
    try:
        return Path(get_package_share_directory("segaff_ros")) / "config" / LARGE_IMAGES_PROFILE
    except (PackageNotFoundError, OSError):  # not installed by colcon, or no AMENT_PREFIX_PATH
        return Path(__file__).resolve().parents[1] / "config" / LARGE_IMAGES_PROFILE


def use_large_images_profile() -> str:
    """Point Fast DDS (this process and its children) at :func:`large_images_profile` unless a profiles file
    is already set; must run before the process's first DDS participant. Returns the file in use."""
    for variable in FASTDDS_PROFILE_VARIABLES:
        if os.environ.get(variable):
            return os.environ[variable]
    profile = large_images_profile()
    if not profile.is_file():
        raise FileNotFoundError(f"the Fast DDS profile {profile} is missing")
    os.environ[FASTDDS_PROFILE_VARIABLES[0]] = str(profile)
    return str(profile)


def claim_ros_domain_id() -> int:
    """A ROS_DOMAIN_ID in 1..101 that no other process on this machine holds, kept for this process's life.

    Starts from a value derived from the pid and takes the first id whose lock file (in the temporary
    directory) can be locked, so two runs on one machine never share DDS traffic.
    """
    global _domain_lock
    start = os.getpid() % 101
    for offset in range(101):
        domain_id = 1 + (start + offset) % 101
        handle = open(Path(tempfile.gettempdir()) / f"segaff_ros_domain_{domain_id}.lock", "w")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            continue
        _domain_lock = handle
        return domain_id
    raise RuntimeError("all ROS domain ids 1..101 are locked by other processes")


class NodeProcess:
    """A ROS node started as its own process (``MODULE --ros-args ...``), its output in ``log_path``.

    ``env`` entries are set on top of this process's environment (``PYTHONUNBUFFERED`` and uncoloured ROS
    logs are always set, so the log file reads like the terminal would).
    """

    def __init__(
        self,
        log_path: Path,
        ros_args: list[str],
        module: str,
        env: Optional[Mapping[str, str]] = None,
        cwd: Optional[Path] = None,
    ) -> None:
        self.log_path = log_path
        self.module = module
        child_env = dict(os.environ)
        child_env.update(PYTHONUNBUFFERED="1", RCUTILS_COLORIZED_OUTPUT="0", **(env or {}))
        child_env[_PARENT_PID_VARIABLE] = str(os.getpid())
        self._interrupted = False
        self._log_file = open(log_path, "wb")
        self.popen = subprocess.Popen(
            [sys.executable, "-m", _LAUNCHER, module, "--ros-args", *ros_args],
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            env=child_env,
            cwd=cwd,
            start_new_session=True,
        )

    def log(self) -> str:
        """Everything the process wrote so far."""
        return self.log_path.read_text(errors="replace")

    def log_tail(self, lines: int = 20) -> str:
        """The last ``lines`` lines of the log."""
        return "\n".join(self.log().splitlines()[-lines:])

    def alive(self) -> bool:
        return self.popen.poll() is None

    def wait_exit(self, timeout_s: float) -> Optional[int]:
        """The exit code once the process ended by itself, None when it still runs after ``timeout_s``."""
        try:
            return self.popen.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return None

    def interrupt(self) -> None:
        """Ctrl-C: one SIGINT (not repeated: a second one could cut the node's own shutdown short)."""
        if self.alive() and not self._interrupted:
            self.popen.send_signal(signal.SIGINT)
            self._interrupted = True

    def stop(self, timeout_s: float = 30.0) -> int:
        """:meth:`interrupt` and wait; killed when it does not end in ``timeout_s``. Returns the exit code
        (negative: the signal that ended it, ``-SIGKILL`` when it had to be killed). Safe to call again."""
        self.interrupt()
        code = self.wait_exit(timeout_s)
        if code is None:
            self.popen.kill()
            code = self.popen.wait()
        self._log_file.close()
        return code


def _die_with_parent() -> None:
    """Have the kernel send this process SIGTERM when its parent ends (Linux; elsewhere a no-op)."""
    if not sys.platform.startswith("linux"):
        return
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    parent = os.environ.pop(_PARENT_PID_VARIABLE, "")
    if parent and int(parent) != os.getppid():  # the parent died before the request: nobody would stop us
        sys.exit(f"{_LAUNCHER}: parent process {parent} ended before the start")


def _caused_by_interrupt(error: BaseException) -> bool:
    """Whether ``error`` is a KeyboardInterrupt or was raised because of one (an extension module's import
    that Ctrl-C cut short fails with its own exception, chained to the KeyboardInterrupt)."""
    seen: set[int] = set()
    current: Optional[BaseException] = error
    while current is not None and id(current) not in seen:
        if isinstance(current, KeyboardInterrupt):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def _main() -> None:
    """``python -m segaff_ros.processes MODULE ARGS...``: run MODULE as ``python -m MODULE ARGS...``."""
    if len(sys.argv) < 2:
        sys.exit(f"usage: python -m {_LAUNCHER} MODULE [ARGS...]")
    _die_with_parent()
    module = sys.argv[1]
    sys.argv = [module, *sys.argv[2:]]
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit:
        raise
    except BaseException as error:  # Ctrl-C before the node handles it itself (importing): no traceback
        if _caused_by_interrupt(error):
            sys.exit(_INTERRUPTED_EXIT_CODE)
        raise


if __name__ == "__main__":
    _main()
