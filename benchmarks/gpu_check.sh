#!/usr/bin/env bash
# On a machine with a CUDA GPU, from the repository root after `make install` (with a CUDA
# build of torch, e.g. through envs/torch.yaml): the GPU-only tests, then the teacher and
# one OPTICAL student trained for a few hundred steps and 100,000 synthetic documents
# encoded, with throughput and peak GPU memory (benchmarks/gpu_check.py). Nothing depends
# on it. Extra arguments go to gpu_check.py (e.g. --model tiny --steps 200).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
export HF_HUB_OFFLINE=1
"$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else "no CUDA device")'
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
echo "== GPU-only tests (pytest -m gpu)"
"$PY" -m pytest -m gpu -q -p no:cacheprovider tests/test_gpu.py
echo "== training and encoding at scale"
"$PY" benchmarks/gpu_check.py "$@"
