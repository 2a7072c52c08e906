#!/usr/bin/env bash
# Creates bench/.venv with the peers the benchmarks compare against (CPU only).
set -euo pipefail
cd "$(dirname "$0")"
python3 -m venv .venv
.venv/bin/pip install --quiet --upgrade pip
.venv/bin/pip install --quiet torch transformers gguf peft numpy scipy llama-cpp-python
