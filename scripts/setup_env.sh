#!/usr/bin/env bash
# Create (or refresh) .venv: Python 3.10 with the pinned stack of requirements.lock and politeteacher
# installed in editable mode. Nothing is done when .venv already matches the lock file.
#
# A Python that already imports a working detectron2 (your own build) is kept as it is: the venv then
# sees its packages, and torch, torchvision and detectron2 are not installed over them.
# Choose the interpreter with PYTHON=/path/to/python3.10.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv
STAMP=$VENV/.politeteacher-env

is_py310() { "$1" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 10))' >/dev/null 2>&1; }

find_python() {
  local c
  for c in "${PYTHON:-}" python3.10 python3 python; do
    if [ -n "$c" ] && command -v "$c" >/dev/null 2>&1 && is_py310 "$(command -v "$c")"; then
      command -v "$c"; return
    fi
  done
  local root
  root=$( (command -v pyenv >/dev/null && pyenv root) || echo "$HOME/.pyenv")
  for c in "$root"/versions/3.10.*/bin/python3.10; do
    if [ -x "$c" ] && is_py310 "$c"; then echo "$c"; return; fi
  done
  return 1
}

want=$(cat requirements.lock pyproject.toml scripts/setup_env.sh | sha256sum | cut -d' ' -f1)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && [ -x "$VENV/bin/politeteacher" ]; then
  exit 0
fi

if ! PY=$(find_python); then
  echo "error: Python 3.10 not found (looked at \$PYTHON, python3.10 on PATH and pyenv's versions);" \
       "install it (e.g. 'pyenv install 3.10') or pass PYTHON=/path/to/python3.10" >&2
  exit 1
fi

lock=requirements.lock
venv_flags=()
if "$PY" -c 'import detectron2, detectron2._C' >/dev/null 2>&1; then
  echo "Keeping the detectron2 that $PY already has; torch and detectron2 are not reinstalled."
  venv_flags=(--system-site-packages)
  lock=$(mktemp)
  grep -v -E '^(torch|torchvision|sal-detectron2|triton|nvidia-[a-z0-9-]+)==' requirements.lock >"$lock"
fi

echo "Setting up $VENV with $PY (first time: a few minutes, torch is large) ..."
[ -x "$VENV/bin/python" ] && is_py310 "$VENV/bin/python" || "$PY" -m venv "${venv_flags[@]}" --clear "$VENV"
# pip's own output goes to a log, shown only when an install fails.
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$lock" >"$VENV/install.log" 2>&1 \
  && "$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps -e . >>"$VENV/install.log" 2>&1 \
  || { cat "$VENV/install.log" >&2; echo "error: installing into $VENV failed (log above)" >&2; exit 1; }
"$VENV/bin/python" -c 'import detectron2._C, politeteacher.cli' \
  || { echo "error: the environment in $VENV does not import detectron2's compiled ops" >&2; exit 1; }
echo "$want" >"$STAMP"
