#!/usr/bin/env bash
# Run the SegAffordance test suite (sets up .venv/ first if needed). Extra arguments go to pytest.
# The end-to-end tests of the README's robot commands (test/ros/test_ros_tools_*.py) need the ROS 2 tools:
# a sourced ROS 2 distribution's, or the ones installed here into .venv from ../shared/ros2-src (CI keeps
# it beside the clone; a clone without it skips those tests, saying why), and colcon from PyPI.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/setup.sh"
cd "$root"
venv="$root/.venv"
log() { printf '[test] %s\n' "$*" >&2; }

# colcon (pinned) for the workspace tests; reinstalled only when requirements-ros-tools.txt changes.
stamp="$venv/.segaff-stamps/ros-tools"
tools_hash="$(sha256sum requirements-ros-tools.txt | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$tools_hash" ]; then
  log "installing the ROS test tooling (requirements-ros-tools.txt)"
  "$venv/bin/python" -m pip install -q -r requirements-ros-tools.txt
  mkdir -p "$(dirname "$stamp")" && echo "$tools_hash" >"$stamp"
fi

ros2_sources="$root/../shared/ros2-src"
if [ -n "${ROS_DISTRO:-}" ] && command -v ros2 >/dev/null; then
  log "ROS 2 tools: ROS 2 $ROS_DISTRO's ($(command -v ros2))"
elif [ -x "$ros2_sources/install.sh" ]; then
  "$ros2_sources/install.sh" "$venv"  # launch, launch_ros, launch_testing, ros2cli, message_filters, tf2_ros; idempotent
else
  log "ROS 2 tools: none ($ros2_sources is absent): the tests that run them will skip"
fi

run_pytest() {
  set +e
  "$venv/bin/python" -m pytest "$@"
  local rc=$?
  set -e
  # pytest exits 5 when it collected no test: that is a failure of the suite, not a pass.
  [ $rc -eq 5 ] && echo "no tests were collected" >&2
  return $rc
}

if [ $# -gt 0 ]; then
  run_pytest "$@"
else
  # The whole suite in parallel worker processes (pytest-xdist), each with a ROS domain of its own; a module's
  # tests stay in one worker (its module fixtures are made once); the workers share one colcon workspace.
  # The workers are the parallelism: each runs PyTorch's intra-op work on one OpenMP thread, since more
  # threads than cores spin-wait against each other (a quarter of the CPU of the model tests on 2 cores).
  # Nodes the tests start set their own threads (cpu_threads), as on a robot.
  export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
  run_pytest -n "${SEGAFF_TEST_WORKERS:-3}" --dist loadfile
fi
