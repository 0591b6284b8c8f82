#!/usr/bin/env bash
# The latency issue's GPU check (scripts/gpu_check.py) from the source tree, with whatever python and torch
# the machine has: bash scripts/gpu_check.sh [--out DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
exec "${PYTHON:-python3}" scripts/gpu_check.py "$@"
