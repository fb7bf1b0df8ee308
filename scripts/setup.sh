#!/usr/bin/env bash
# Set up SegAffordance on a fresh machine: .venv/ at the repository root with every dependency,
# segaff_msgs built into it, and the project installed editable. Idempotent: each step is skipped
# when its inputs (requirements.txt, segaff_msgs/, setup.py) have not changed since it last ran.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
venv="$root/.venv"
stamps="$venv/.segaff-stamps"
python="${PYTHON:-python3}"

log() { printf '[setup] %s\n' "$*" >&2; }
hash_of() { cat "$@" | sha256sum | cut -d' ' -f1; }
stamp_ok() { [ -f "$stamps/$1" ] && [ "$(cat "$stamps/$1")" = "$2" ]; }
stamp_set() { mkdir -p "$stamps"; echo "$2" >"$stamps/$1"; }

# --- system packages (venv for Python; libusb for open3d; cmake + a C/C++ compiler for segaff_msgs) ---
missing=()
# ldconfig lives in /sbin, which a normal user's PATH on Debian does not hold.
ldconfig_bin="$(command -v ldconfig || echo /sbin/ldconfig)"
"$ldconfig_bin" -p 2>/dev/null | grep 'libusb-1.0.so.0' >/dev/null || missing+=(libusb-1.0-0)  # no -q: SIGPIPE under pipefail
[ -x "$venv/bin/python" ] || "$python" -c 'import ensurepip' 2>/dev/null || missing+=(python3-venv)
command -v cmake >/dev/null || missing+=(cmake)
command -v cc >/dev/null || missing+=(gcc)
command -v c++ >/dev/null || missing+=(g++)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    log "installing system packages: ${missing[*]}"
    (apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1) || \
      (apt-get update -qq >/dev/null && apt-get install -y -qq "${missing[@]}" >/dev/null)
  else
    log "missing system packages: ${missing[*]} (install them, e.g. sudo apt-get install ${missing[*]})"
    exit 1
  fi
fi

# --- the virtual environment and pinned Python dependencies ------------------------------------
[ -x "$venv/bin/python" ] || { log "creating $venv"; "$python" -m venv "$venv"; }
vpy="$venv/bin/python"
req_hash="$(hash_of requirements.txt requirements-core.txt)"
if ! stamp_ok requirements "$req_hash"; then
  log "installing Python dependencies (torch is large: a few minutes the first time)"
  "$vpy" -m pip install -q --upgrade pip
  "$vpy" -m pip install -q -r requirements.txt
  stamp_set requirements "$req_hash"
fi

# --- segaff_msgs built with the ROS 2 wheels' cmake files into the venv -------------------------
msgs_hash="$(hash_of scripts/setup.sh segaff_msgs/CMakeLists.txt segaff_msgs/package.xml segaff_msgs/msg/* segaff_msgs/srv/* segaff_msgs/action/* requirements.txt requirements-core.txt)"
if ! stamp_ok segaff_msgs "$msgs_hash"; then
  log "building segaff_msgs into $venv"
  py_include="$("$vpy" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
  np_include="$("$vpy" -c 'import numpy; print(numpy.get_include())')"
  # The wheels' cmake export files carry their build machine's Python paths: point them at this venv.
  { grep -rlE '/opt/python/cp3[0-9]+-cp3[0-9]+' "$venv/share" --include='*.cmake' 2>/dev/null || true; } | while read -r f; do
    sed -i -E \
      -e "s#/opt/python/cp3[0-9]+-cp3[0-9]+/lib/python3\.[0-9]+/site-packages/numpy/_core/include#$np_include#g" \
      -e "s#/opt/python/cp3[0-9]+-cp3[0-9]+/include/python3\.[0-9]+#$py_include#g" "$f"
  done
  rm -rf build/segaff_msgs && mkdir -p build
  export AMENT_PREFIX_PATH="$venv"
  cmake -S segaff_msgs -B build/segaff_msgs -DCMAKE_PREFIX_PATH="$venv" -DCMAKE_INSTALL_PREFIX="$venv" \
    -DPython3_EXECUTABLE="$vpy" -DBUILD_TESTING=OFF -DCMAKE_BUILD_TYPE=Release >build/segaff_msgs.log 2>&1 \
    && cmake --build build/segaff_msgs -j"$(nproc)" >>build/segaff_msgs.log 2>&1 \
    && cmake --install build/segaff_msgs >>build/segaff_msgs.log 2>&1 \
    || { log "segaff_msgs build failed: see build/segaff_msgs.log"; tail -20 build/segaff_msgs.log >&2; exit 1; }
  "$vpy" -c 'from segaff_msgs.msg import AffordanceResult; from segaff_msgs.srv import Query; from segaff_msgs.action import Perceive' \
    || { log "segaff_msgs built but does not import"; exit 1; }
  stamp_set segaff_msgs "$msgs_hash"
fi

# --- the project itself, editable ---------------------------------------------------------------
proj_hash="$(hash_of setup.py)"
if ! stamp_ok project "$proj_hash"; then
  log "installing SegAffordance (editable)"
  "$vpy" -m pip install -q --no-deps --no-build-isolation -e .
  stamp_set project "$proj_hash"
fi
log "ready: $venv"
