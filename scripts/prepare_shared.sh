#!/usr/bin/env bash
# Prepare all of ../shared/data (the team's real faces) for `python train.py experiment=shared`:
#   data/shared300w/{train (Helen), val (AFW)} and data/ytf68/{train, test} (the same identities).
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED="${PFLD_SHARED_DATA:-../shared/data}"
PYTHON="${PYTHON:-.venv/bin/python}"
"$PYTHON" -m data pts --out data/shared300w \
  --split train="$SHARED/300w/helen/trainset" --split val="$SHARED/300w/afw" "$@"
"$PYTHON" -m data csv --out data/ytf68 \
  --split train="$SHARED/ytf68/training_frames_keypoints.csv" --images train="$SHARED/ytf68/training" \
  --split test="$SHARED/ytf68/test_frames_keypoints.csv" --images test="$SHARED/ytf68/test" "$@"
