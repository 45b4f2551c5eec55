#!/usr/bin/env bash
# Wheels for the GPU checks (benchmarks/gpu_session.sh), fetched here for a GPU machine that has PyTorch with
# CUDA but no network: the packages symrl's Atari path and the benchmark need beyond what such an image holds
# (gymnasium, ale-py with its ROMs, Stable-Baselines3). Into .whl/ (ignored by git), for CPython 3.12 on x86-64.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl \
  gymnasium==1.4.0 farama-notifications==0.0.4 ale-py==0.12.1 stable-baselines3==2.9.2
ls -l .whl
