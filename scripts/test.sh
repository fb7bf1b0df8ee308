#!/usr/bin/env bash
# Run the SegAffordance test suite (sets up .venv/ first if needed). Extra arguments go to pytest.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/setup.sh"
cd "$root"
set +e
"$root/.venv/bin/python" -m pytest "$@"
rc=$?
set -e
# pytest exits 5 when it collected no test: that is a failure of the suite, not a pass.
[ $rc -eq 5 ] && echo "no tests were collected" >&2
exit $rc
