#!/usr/bin/env bash
# make gpu-check: the device-path tests, then the bulk and online benchmarks on CUDA (~10 minutes).
set -euo pipefail
PY=${PY:-.venv/bin/python}
"$PY" -c "import torch; assert torch.cuda.is_available(), 'no CUDA GPU'; print(torch.cuda.get_device_name(0))"
"$PY" -m pytest -q tests -k "device or cuda"
MOVIEREC_TEST_DEVICE=cuda "$PY" -m pytest -q tests/integration/test_bulk.py tests/unit/test_scoring_sparse.py
"$PY" -m bench.run_all --device cuda "$@"
