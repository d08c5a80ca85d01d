#!/usr/bin/env bash
# One entry point for a fresh machine: creates what is missing, then runs the demo or the test suite.
#   ./dev.sh demo [ARGS]   set up both environments, render the default building, localize queries, print the table
#   ./dev.sh test [ARGS]   set up both environments, run the whole test suite (worker env + Blender env); without
#                          ARGS also the lint and type checks
#   ./dev.sh lint          ruff (lint) and mypy (the public modules), as configured in pyproject.toml
#   ./dev.sh setup         only create / update the environments
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3

stamp() { cat "$@" | sha256sum | cut -c1-16; }

ensure_env() {  # ensure_env DIR STAMP INSTALL-ARGS...
  local dir=$1 want=$2; shift 2
  if [ ! -x "$dir/bin/python" ]; then
    echo "==> creating $dir"
    "$PY" -m venv "$dir"
  fi
  if [ "$(cat "$dir/.stamp" 2>/dev/null)" != "$want" ]; then
    echo "==> installing into $dir: $*"
    "$dir/bin/python" -m pip install -q --disable-pip-version-check "$@"
    echo "$want" > "$dir/.stamp"
  fi
}

setup() {
  "$PY" -c 'import sys; assert sys.version_info[:2] == (3, 11), "Python 3.11 is required (bpy 5.0.1 wheels)"'
  ensure_env .venv-blender "$(stamp scripts/requirements-blender.txt)" -r scripts/requirements-blender.txt
  ensure_env .venv "$(stamp pyproject.toml)" -e ".[test]"
}

lint() {
  .venv/bin/ruff check .
  .venv/bin/mypy
}

cmd=${1:-help}; shift || true
case "$cmd" in
  setup) setup ;;
  lint)
    setup
    lint ;;
  demo)
    setup
    exec .venv/bin/python -m ml_backend demo "$@" ;;
  test)
    setup
    [ $# -gt 0 ] || lint
    # Worker-side tests (numpy 2), including the Blender suite that runs each Blender test module
    # in its own launcher subprocess; then the shared core once more under Blender's numpy 1.26.
    .venv/bin/python -m pytest -q "$@"
    .venv-blender/bin/python -m pytest -q -p no:cacheprovider tests/core ;;
  *) sed -n '2,7p' "$0"; exit 2 ;;
esac
