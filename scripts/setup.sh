#!/usr/bin/env bash
# Build the project's virtual environment in .venv (offline-friendly: torch comes from the
# local CPU wheel folder, pinned in constraints.txt). Safe to run again: it only adds what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS="${PIP_FIND_LINKS:-/opt/wheels}"
PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null 2>&1 || PY=python3

if ! command -v uv >/dev/null 2>&1; then
  "$PY" -m pip install -q uv || true
fi
if command -v uv >/dev/null 2>&1; then
  [ -x .venv/bin/python ] || uv venv -q .venv --python "$PY"
  # uv ignores pip's configuration, so the local wheel folder is passed explicitly
  uv pip install -q --python .venv/bin/python --find-links "$WHEELS" --compile-bytecode \
    -c constraints.txt -e ".[test]"
else
  [ -x .venv/bin/python ] || "$PY" -m venv .venv
  .venv/bin/python -m pip install -q -c constraints.txt -e ".[test]"
fi
