#!/usr/bin/env bash
# Install the suite and its dependencies into the current Python (3.11 or 3.12).
# A torch that is already installed is kept; where none is, torch==2.13.0 goes in first, so the
# project's torch range is met without pulling a newer build with several GB of CUDA packages.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python}
if ! "$PYTHON" -c "import torch" >/dev/null 2>&1; then
    "$PYTHON" -m pip install -q "torch==2.13.0"
fi
"$PYTHON" -m pip install -q -e ".[dev,bench]"
