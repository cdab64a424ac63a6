#!/usr/bin/env bash
# Create .venv and install pfld into it: torch 2.13.0 first (a CPU wheel where one is provided), then
# everything else pinned against it so that no resolve pulls another torch build. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -c constraints.txt -e ".[dev,export,predict,ncnn,mnn,litert]"
echo "pfld installed in $(pwd)/.venv"
