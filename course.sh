#!/usr/bin/env bash
# The course's two entry points. Each one sets up .venv (once; again only when the dependencies change)
# with the tested versions in constraints.txt, then:
#   bash course.sh lab     opens the course in JupyterLab at notebooks/00_measuring.ipynb
#   bash course.sh test    runs the test suite in fast mode (what CI runs)
# Anything after the action is passed on (to jupyter lab, or to pytest).
set -euo pipefail
cd "$(dirname "$0")"

action="${1:-lab}"
[ $# -gt 0 ] && shift
PYTHON="${PYTHON:-python3}"
VENV="${COURSEKIT_VENV:-.venv}"

setup() {
  if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
    echo "course.sh: Python 3.10 or newer is needed (found: $("$PYTHON" --version 2>&1)); set PYTHON=/path/to/python3.11" >&2
    exit 2
  fi
  stamp="$VENV/.coursekit-installed"
  want="$(cat pyproject.toml constraints.txt | cksum)"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    return
  fi
  echo "Setting up $VENV (first run: about 2 minutes and 5.5 GB) ..."
  [ -d "$VENV" ] || "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
  "$VENV/bin/python" -m pip install --quiet -c constraints.txt -e ".[dev]"
  echo "$want" > "$stamp"
}

case "$action" in
  lab)
    setup
    if [ "$(id -u)" = 0 ] && [[ " $* " != *" --allow-root "* ]]; then
      # Jupyter refuses to start as root ("Running as root is not recommended"): e.g. a container's default user
      echo "course.sh: warning: running JupyterLab as root (passing --allow-root). Better: run as a normal user" \
           "(useradd -m learner && su learner -c 'bash course.sh lab')." >&2
      set -- --allow-root "$@"
    fi
    exec "$VENV/bin/jupyter" lab notebooks/00_measuring.ipynb "$@"
    ;;
  test)
    setup
    export COURSEKIT_FAST=1
    exec "$VENV/bin/python" -m pytest -q "$@"
    ;;
  setup)
    setup
    echo "Ready: source $VENV/bin/activate, then run coursekit --help"
    ;;
  *)
    echo "usage: bash course.sh lab|test|setup [args...]" >&2
    exit 2
    ;;
esac
