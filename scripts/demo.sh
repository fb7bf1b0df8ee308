#!/usr/bin/env bash
# Run the SegAffordance demo (sets up .venv/ first if needed): the synthetic camera and the perception node
# over ROS 2, the instruction "open the top drawer", out/demo/overlay.png and out/demo/result.json, a
# summary. Extra arguments go to the demo (see: scripts/demo.sh --help).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/setup.sh"
cd "$root"
exec "$root/.venv/bin/python" -m segaff_ros.demo "$@"
