"""Helpers of the end-to-end tests that run the README's robot commands with the real ROS 2 tools.

The tools are the distribution's on a full ROS 2 install (``ROS_DISTRO`` set, ``ros2`` on PATH), else the
ones ``scripts/test.sh`` installs into this venv from ``../shared/ros2-src`` (with colcon from PyPI,
``requirements-ros-tools.txt``); without either the tests skip, saying why (:func:`find_tools`).

A session builds one colcon workspace laid out as the README says (:func:`shared_workspace`): the
repository's files copied as ``ws/src/segaffordance`` (as a clone holds them), the README's symbolic link
``ws/src/segaff_msgs``, ``colcon build --symlink-install``. Commands then run as a user types them in a
terminal that sourced ``install/setup.bash`` (:meth:`Workspace.run`, :meth:`Workspace.start`), in the test
process's isolated DDS domain. A background command is stopped as Ctrl-C stops it: SIGINT to its process
group (each started with SIGINT at its default), then SIGTERM, then SIGKILL.
"""
from __future__ import annotations

import dataclasses
import fcntl
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional

import numpy as np
import pytest
import yaml

from ros_helpers import REPO_ROOT, wait_until

#: Where CI keeps the ROS 2 tool sources beside the clone (scripts/test.sh installs them from there).
ROS2_SOURCES = REPO_ROOT.parent / "shared" / "ros2-src"
#: Build output of a workspace is never looked for inside the copied repository.
_NOT_COPIED = {".git", ".venv", "build", "install", "log", "__pycache__", ".pytest_cache"}
_COMMAND_TIMEOUT_S = 30.0
#: What the tools print when the node or topic is not discovered (yet): such a command is tried again.
_NOT_DISCOVERED = ("Node not found", "Unable to find node", "Could not determine the type for the passed topic",
                   "does not appear to be published yet", "Wait for service timed out")
_DISCOVERY_RETRY_S = 90.0
#: Options of the verbs that look the node up: discover it anew each time rather than through the ros2 daemon
#: (a long-lived daemon that missed the node on a loaded machine kept missing it here). ``--spin-time`` is
#: how long the command discovers before it reads the graph; a retry doubles it, up to _MAX_SPIN_TIME_S.
NO_DAEMON = "--no-daemon --spin-time 2"
_MAX_SPIN_TIME_S = 8.0
_SPIN_TIME = re.compile(r"--spin-time (\d+(?:\.\d+)?)")
#: ``ros2 param``'s options: no daemon either, but its verbs wait for the node themselves (``--timeout``: 1 s by
#: default, polling the graph) before a second participant calls its services (waiting 5 s for them), so they
#: keep ros2cli's 0.5 s ``--spin-time``: each participant spins it, 2 s was 3 s more per command for nothing.
PARAM_OPTIONS = "--no-daemon --timeout 10"


@dataclass(frozen=True)
class RosTools:
    """Where the ROS 2 command-line tools come from: ``venv`` (its bin/ and ament prefix) or the distribution."""

    venv: Optional[Path]

    @property
    def origin(self) -> str:
        return f"the venv {self.venv}" if self.venv else f"ROS 2 {os.environ.get('ROS_DISTRO', '')}"

    def environment(self, extra: Optional[Mapping[str, str]] = None) -> dict[str, str]:
        """The environment of a terminal that can run ``ros2`` and ``colcon``, in this test process's DDS domain
        (conftest's ``isolate_ros_environment``), with unbuffered uncoloured output and one torch thread."""
        env = dict(os.environ)
        if self.venv is not None:
            env["PATH"] = f"{self.venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
            env["VIRTUAL_ENV"] = str(self.venv)  # cmake's FindPython3 then takes the venv's Python
            for variable in ("AMENT_PREFIX_PATH", "CMAKE_PREFIX_PATH"):
                others = [p for p in env.get(variable, "").split(os.pathsep) if p and p != str(self.venv)]
                env[variable] = os.pathsep.join([str(self.venv), *others])
        env.update(PYTHONUNBUFFERED="1", RCUTILS_COLORIZED_OUTPUT="0", OMP_NUM_THREADS="1", **(extra or {}))
        return env


def find_tools() -> tuple[Optional[RosTools], str]:
    """The tools to use and, when there are none, why (the skip reason)."""
    distro_ros2 = shutil.which("ros2")
    venv = Path(sys.prefix)
    if os.environ.get("ROS_DISTRO") and distro_ros2 and Path(distro_ros2).parent != venv / "bin":
        return RosTools(venv=None), ""
    if (venv / "bin" / "ros2").is_file() and _importable("launch_ros.actions"):
        return RosTools(venv=venv), ""
    where = (f"scripts/test.sh installs them from {ROS2_SOURCES}" if ROS2_SOURCES.is_dir()
             else f"{ROS2_SOURCES} is absent in this clone (CI has it)")
    return None, (f"the ROS 2 command-line tools (ros2, launch, launch_ros) are not installed in {venv}: {where}; "
                  "or source a ROS 2 distribution")


def _importable(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def require_tools() -> RosTools:
    """The tools, or a skip of the calling test with the reason."""
    pytest.importorskip("rclpy", reason="rclpy (ROS 2) is not installed")
    tools, reason = find_tools()
    if tools is None:
        pytest.skip(reason)
    return tools


# ---- processes -------------------------------------------------------------------------------------


def _new_session_with_default_sigint() -> None:
    """In the child before exec: its own process group (so it and its children stop together), and SIGINT at
    its default even when this test run was started in the background (where SIGINT is ignored)."""
    os.setsid()
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def stop_process_group(popen: subprocess.Popen, timeout_s: float = 20.0) -> int:
    """Ctrl-C the process group of ``popen`` (started by :func:`_new_session_with_default_sigint`), then SIGTERM,
    then SIGKILL, each after ``timeout_s`` more; returns the exit code of ``popen``."""
    for sig, wait_s in ((signal.SIGINT, timeout_s), (signal.SIGTERM, timeout_s), (signal.SIGKILL, timeout_s)):
        if popen.poll() is not None:
            break
        try:
            os.killpg(popen.pid, sig)
        except ProcessLookupError:
            break
        try:
            popen.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            continue
    try:  # children that outlived the shell (none should): no orphans
        os.killpg(popen.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    return popen.wait()


@dataclass(frozen=True)
class CommandResult:
    command: str
    returncode: int
    output: str  # stdout and stderr together
    timed_out: bool = False  # stopped by the caller's timeout

    def __str__(self) -> str:
        ended = "stopped after its timeout" if self.timed_out else f"exit {self.returncode}"
        return f"$ {self.command}\n({ended}, ROS_DOMAIN_ID={os.environ.get('ROS_DOMAIN_ID')})\n{self.output}"


class BackgroundCommand:
    """A command running in the background of a sourced terminal; its output goes to ``log_path``."""

    def __init__(self, argv: list[str], command: str, cwd: Path, env: Mapping[str, str], log_path: Path) -> None:
        self.command = command
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.popen = subprocess.Popen(argv, cwd=cwd, env=dict(env), stdout=self._log, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, preexec_fn=_new_session_with_default_sigint)
        self.returncode: Optional[int] = None

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.popen.poll() is None

    def wait_for_output(self, pattern: str, timeout_s: float) -> Optional[re.Match]:
        """The first match of the regular expression ``pattern`` in the output, waiting up to ``timeout_s``
        (None: not there in time, or the command ended without it)."""
        regex = re.compile(pattern, re.MULTILINE)

        def found() -> Any:
            match = regex.search(self.output())
            return match if match or self.alive() else False

        match = wait_until(found, timeout_s, every_s=0.2)
        return match or None

    def stop(self, timeout_s: float = 20.0) -> int:
        """Ctrl-C (then SIGTERM, SIGKILL); the exit code. Safe to call again."""
        if self.returncode is None:
            self.returncode = stop_process_group(self.popen, timeout_s)
            self._log.close()
        return self.returncode

    def with_stacks(self, process_name: str = "perception_node") -> str:
        """This command's output after its processes named ``process_name`` were asked for every thread's
        traceback (``kill -USR1``, as docs/ROBOT.md tells a user): where a node that stopped answering waits."""
        for pid in _processes_in_group(self.popen.pid):
            try:
                if process_name in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace"):
                    os.kill(pid, signal.SIGUSR1)
            except OSError:  # ended meanwhile
                continue
        time.sleep(1.0)
        return str(self)

    def __str__(self) -> str:
        """This command, whether it still runs (else its exit code), and its output's end."""
        code = self.popen.poll()
        return f"$ {self.command}\n({'running' if code is None else f'exited {code}'})\n{self.output()[-6000:]}"


def _processes_in_group(group: int) -> list[int]:
    """The processes of process group ``group`` (Linux: read from /proc)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getpgid(int(entry.name)) == group:
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


# ---- the workspace ---------------------------------------------------------------------------------


def repository_files(root: Path) -> list[Path]:
    """The files a clone of ``root`` holds, with the working tree's changes (tracked and untracked files that
    git does not ignore); everything but build output when git is unavailable."""
    try:
        listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                                cwd=root, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return [p.relative_to(root) for p in root.rglob("*")
                if p.is_file() and not _NOT_COPIED & set(p.relative_to(root).parts)]
    return [Path(name) for name in sorted(set(listed.decode().split("\0"))) if name and (root / name).is_file()]


@dataclass
class Workspace:
    """A built colcon workspace: ``path`` holds src/, build/, install/, log/."""

    path: Path
    tools: RosTools
    build_output: str
    logs: Path

    def _argv(self, command: str) -> list[str]:
        return ["bash", "-c", f"source install/setup.bash && {command}"]

    def run(self, command: str, timeout_s: float = _COMMAND_TIMEOUT_S,
            env: Optional[Mapping[str, str]] = None, retry_s: float = _DISCOVERY_RETRY_S) -> CommandResult:
        """Run ``command`` in a terminal that sourced ``install/setup.bash``; a command still running after
        ``timeout_s`` is stopped (Ctrl-C, ...) and its result returned (``timed_out``). A command that says it
        cannot find the node or topic, or that hung (DDS discovery is not instantaneous, least of all on a
        loaded machine), is run again, for up to ``retry_s``, each time with twice its ``--spin-time`` (what a
        user does when the graph is slow to appear). A result that is still a failure names every try."""
        deadline = time.monotonic() + retry_s
        tries: list[CommandResult] = []
        while True:
            result = self._run_once(command, timeout_s, env)
            not_found = any(text in result.output for text in _NOT_DISCOVERED)
            if not result.timed_out and (result.returncode == 0 or not not_found):
                return result
            tries.append(result)
            if time.monotonic() > deadline:
                earlier = "".join(f"[try {i + 1}] {t.command}: {'timed out' if t.timed_out else t.returncode}\n"
                                  for i, t in enumerate(tries[:-1]))
                return dataclasses.replace(result, output=earlier + result.output)
            command = _SPIN_TIME.sub(lambda m: f"--spin-time {min(2 * float(m.group(1)), _MAX_SPIN_TIME_S):g}",
                                     command)
            time.sleep(1.0)

    def _run_once(self, command: str, timeout_s: float, env: Optional[Mapping[str, str]]) -> CommandResult:
        popen = subprocess.Popen(self._argv(command), cwd=self.path, env=self.tools.environment(env),
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                 preexec_fn=_new_session_with_default_sigint)
        chunks: list[bytes] = []
        reader = threading.Thread(target=lambda: chunks.extend(iter(lambda: popen.stdout.read(4096), b"")),
                                  daemon=True)
        reader.start()
        try:
            popen.wait(timeout=timeout_s)
            timed_out = False
        except subprocess.TimeoutExpired:
            timed_out = True
        returncode = stop_process_group(popen, timeout_s=10.0)
        reader.join(timeout=10.0)
        return CommandResult(command, returncode, b"".join(chunks).decode(errors="replace"), timed_out)

    def check(self, command: str, timeout_s: float = _COMMAND_TIMEOUT_S,
              env: Optional[Mapping[str, str]] = None) -> str:
        """:meth:`run`, asserting that it exits 0; its output."""
        result = self.run(command, timeout_s, env)
        assert result.returncode == 0, str(result)
        return result.output

    def start(self, command: str, log_name: str, env: Optional[Mapping[str, str]] = None) -> BackgroundCommand:
        """Start ``command`` in the background of a sourced terminal; output in ``logs/log_name``."""
        return BackgroundCommand(self._argv(command), command, self.path, self.tools.environment(env),
                                 self.logs / log_name)

    def stop_daemon(self) -> None:
        """``ros2 daemon stop`` in this test process's domain (a verb without ``--no-daemon`` may start one)."""
        self.run("ros2 daemon stop", timeout_s=30.0)


def build_workspace(path: Path, tools: RosTools) -> Workspace:
    """The README's robot workspace at ``path``: the repository as ``src/segaffordance``, the link
    ``src/segaff_msgs -> segaffordance/segaff_msgs``, ``colcon build --symlink-install``."""
    if not shutil.which("colcon", path=tools.environment()["PATH"]):
        pytest.skip("colcon is not installed: pip install -r requirements-ros-tools.txt (scripts/test.sh does)")
    clone = path / "src" / "segaffordance"
    for name in repository_files(REPO_ROOT):
        (clone / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / name, clone / name, follow_symlinks=False)
    (path / "src" / "segaff_msgs").symlink_to(Path("segaffordance") / "segaff_msgs", target_is_directory=True)
    logs = path / "test_logs"
    logs.mkdir()
    completed = subprocess.run(["bash", "-c", "colcon build --symlink-install"], cwd=path,
                               env=tools.environment(), capture_output=True, text=True, timeout=900)
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, f"colcon build --symlink-install failed ({tools.origin}):\n{output[-6000:]}"
    return Workspace(path, tools, output, logs)


_shared: dict[str, Workspace] = {}


def shared_workspace(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    """The test run's one built workspace, shared by the test modules of every parallel worker (pytest-xdist):
    the first to ask builds it under the run's base temporary folder while holding a lock; the others wait for
    that build and reuse it, each with a folder of logs of its own."""
    tools = require_tools()
    if "workspace" not in _shared:
        run_folder = tmp_path_factory.getbasetemp()
        if os.environ.get("PYTEST_XDIST_WORKER"):  # workers' base folders lie side by side in the run's
            run_folder = run_folder.parent
        path = run_folder / "segaff_ws"
        with open(run_folder / "segaff_ws.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            built = path / "install" / "setup.bash"
            build_log = run_folder / "segaff_ws_build.log"
            if not built.is_file():
                shutil.rmtree(path, ignore_errors=True)  # a build that failed half-way
                path.mkdir()
                workspace = build_workspace(path, tools)
                build_log.write_text(workspace.build_output)
            else:
                workspace = Workspace(path, tools, build_log.read_text(), path / "test_logs")
        logs = tmp_path_factory.mktemp("tools_logs")  # this worker's logs: never another worker's files
        _shared["workspace"] = dataclasses.replace(workspace, logs=logs)
    return _shared["workspace"]


def small_params_file(path: Path, **overrides: Any) -> Path:
    """A parameters file for the launch file's ``params_file``: the small random model's 64 x 64 input, one
    CPU thread, plus ``overrides``."""
    parameters = {"input_height": 64, "input_width": 64, "cpu_threads": 1, **overrides}
    path.write_text(yaml.safe_dump({"/**/segaff_perception": {"ros__parameters": parameters}}))
    return path


# ---- reading what the tools print ------------------------------------------------------------------


def echoed_message(output: str) -> dict[str, Any]:
    """The first message that ``ros2 topic echo`` printed, as a dict (it prints YAML documents ending ``---``)."""
    lines = output.split("\n---", 1)[0].splitlines()
    document = yaml.safe_load("\n".join(line for line in lines if not line.startswith(("WARNING", "INFO"))))
    assert isinstance(document, dict), f"not a message:\n{output[-3000:]}"
    return document


def average_rates_hz(output: str) -> list[float]:
    """Every ``average rate: X`` that ``ros2 topic hz`` printed."""
    return [float(value) for value in re.findall(r"average rate: ([0-9.]+)", output)]


def action_verb_available(workspace: Workspace) -> bool:
    """Whether these tools have ``ros2 action`` (the distributions do; ../shared/ros2-src does not)."""
    return workspace.run("ros2 action -h", timeout_s=30.0).returncode == 0


def rotate(quaternion_xyzw: tuple[float, float, float, float], vector: Any) -> np.ndarray:
    """``vector`` rotated by the unit quaternion (x, y, z, w)."""
    x, y, z, w = quaternion_xyzw
    matrix = np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])
    return matrix @ np.asarray(vector, dtype=np.float64)


def quaternion(mapping: Mapping[str, float]) -> tuple[float, float, float, float]:
    """An echoed Quaternion as (x, y, z, w)."""
    return (mapping["x"], mapping["y"], mapping["z"], mapping["w"])


def xyz(mapping: Mapping[str, float]) -> np.ndarray:
    """An echoed Point or Vector3 as an array."""
    return np.array([mapping["x"], mapping["y"], mapping["z"]], dtype=np.float64)


class TestNode:
    """An rclpy node of the test (own context, executor thread) for what the installed tools lack: a static
    transform (tf2_ros' static_transform_publisher is C++) and ``ros2 action send_goal`` where that verb is
    missing (done as the verb does it, with an ActionClient)."""

    __test__ = False  # not a test class

    def __init__(self, name: str = "segaff_tools_test") -> None:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor

        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._spinner = threading.Thread(target=self.executor.spin, daemon=True)
        self._spinner.start()
        self._broadcaster: Any = None

    def wait_for_service(self, name: str, timeout_s: float = 90.0) -> None:
        """Until this long-lived participant sees the service ``name`` (so the node is up and discoverable
        before a short-lived ``ros2`` command looks for it); fails the test otherwise."""
        client = self.node.create_client(self._service_type(name), name)
        try:
            assert client.wait_for_service(timeout_sec=timeout_s), f"service {name} not discovered in {timeout_s} s"
        finally:
            self.node.destroy_client(client)

    def wait_for_publisher(self, topic: str, timeout_s: float = 90.0) -> None:
        """Until this participant sees a publisher of ``topic``; fails the test otherwise."""
        assert wait_until(lambda: self.node.count_publishers(topic) > 0, timeout_s, every_s=0.1), (
            f"no publisher of {topic} discovered in {timeout_s} s")

    @staticmethod
    def _service_type(name: str) -> type:
        """The type of the perception node's services that the tests wait for."""
        from lifecycle_msgs.srv import ChangeState, GetState
        from rcl_interfaces.srv import SetParameters

        from segaff_msgs.srv import Query

        types = {"get_state": GetState, "change_state": ChangeState, "set_parameters": SetParameters, "query": Query}
        return types[name.rsplit("/", 1)[-1]]

    def publish_static_transform(self, parent: str, child: str, translation_m: tuple[float, float, float],
                                 quaternion_xyzw: tuple[float, float, float, float]) -> None:
        """Latch ``parent`` -> ``child`` on /tf_static (as static_transform_publisher does)."""
        from geometry_msgs.msg import TransformStamped
        from tf2_ros.static_transform_broadcaster import StaticTransformBroadcaster

        if self._broadcaster is None:
            self._broadcaster = StaticTransformBroadcaster(self.node)
        transform = TransformStamped()
        transform.header.stamp = self.node.get_clock().now().to_msg()
        transform.header.frame_id, transform.child_frame_id = parent, child
        (transform.transform.translation.x, transform.transform.translation.y,
         transform.transform.translation.z) = translation_m
        rotation = transform.transform.rotation
        rotation.x, rotation.y, rotation.z, rotation.w = quaternion_xyzw
        self._broadcaster.sendTransform(transform)

    def send_perceive_goal(self, action_name: str, instruction: str, frames: int, timeout_s: float,
                           cancel_after_feedback: Optional[int] = None,
                           wait_s: float = 60.0) -> tuple[list[Any], Any, int]:
        """Send a ``segaff_msgs/action/Perceive`` goal; (feedback messages, result, final goal status).
        ``cancel_after_feedback``: cancel the goal once that many feedback messages came."""
        from rclpy.action import ActionClient

        from segaff_msgs.action import Perceive

        client = ActionClient(self.node, Perceive, action_name)
        try:
            assert client.wait_for_server(timeout_sec=wait_s), f"no action server {action_name}"
            feedback: list[Any] = []
            goal = Perceive.Goal(instruction=instruction, frames=frames, timeout_s=timeout_s)
            sent = client.send_goal_async(goal, feedback_callback=lambda msg: feedback.append(msg.feedback))
            handle = wait_until(lambda: sent.result() if sent.done() else None, wait_s)
            assert handle is not None and handle.accepted, f"goal {goal} not accepted"
            if cancel_after_feedback is not None:
                assert wait_until(lambda: len(feedback) >= cancel_after_feedback, wait_s), "no feedback"
                handle.cancel_goal_async()
            result_future = handle.get_result_async()
            response = wait_until(lambda: result_future.result() if result_future.done() else None, wait_s)
            assert response is not None, f"no result within {wait_s} s"
            return feedback, response.result, response.status
        finally:
            client.destroy()

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        self.context.try_shutdown()
        self._spinner.join(timeout=10.0)


@dataclass
class NodeCommands:
    """The ``ros2 lifecycle`` and ``ros2 param`` commands a user types for ``node``, each run once the long-lived
    ``graph`` participant has discovered the services it calls (and retried as :meth:`Workspace.run` retries)."""

    workspace: Workspace
    graph: TestNode
    node: str

    def lifecycle(self, verb: str) -> CommandResult:
        """``ros2 lifecycle get NODE`` (``verb`` "get") or ``ros2 lifecycle set NODE VERB``."""
        self.graph.wait_for_service(f"{self.node}/get_state")
        self.graph.wait_for_service(f"{self.node}/change_state")
        arguments = f"get {NO_DAEMON} {self.node}" if verb == "get" else f"set {NO_DAEMON} {self.node} {verb}"
        return self.workspace.run(f"ros2 lifecycle {arguments}")

    def lifecycle_state(self) -> str:
        """The state ``ros2 lifecycle get`` prints (its exit 0 asserted)."""
        result = self.lifecycle("get")
        match = re.search(r"^(\w+) \[\d\]", result.output, re.MULTILINE)
        assert result.returncode == 0 and match, str(result)
        return match.group(1)

    def param(self, arguments: str) -> CommandResult:
        """``ros2 param VERB [options] NODE REST`` for ``arguments`` = "VERB REST" (e.g. "set mask_threshold 0.4")."""
        self.graph.wait_for_service(f"{self.node}/set_parameters")
        verb, _, rest = arguments.partition(" ")
        return self.workspace.run(f"ros2 param {verb} {PARAM_OPTIONS} {self.node} {rest}".rstrip())
