#!/usr/bin/env bash
# Runs selfaware's fuzz targets (fuzz/, cargo-fuzz on the nightly toolchain), one after another,
# each for SECONDS in one process:
#
#   scripts/fuzz.sh SECONDS [TARGET...]      (all targets when none is named)
#
# It builds the targets (installing cargo-fuzz when it is missing), seeds each target's corpus
# from the repository's own fixtures (fuzz/seeds, experiment presets, built-in batteries, the
# tiny test model and its chat template; the paper's question YAML from SELFAWARE_PAPER_DIR,
# else ../shared/reference/paper beside the repository, copied at run time and never committed),
# then prints per target the executions and whether it crashed. Any crash (panic, sanitizer
# report, out-of-memory, timeout) makes the exit status nonzero and names the input that did it.
#
# Everything it writes lives under SELFAWARE_FUZZ_DIR (default: ${CARGO_TARGET_DIR:-target}/fuzz):
# the build, corpus/TARGET (inputs that reached new code; kept between runs), seeds/TARGET,
# artifacts/TARGET (crashing inputs) and logs/TARGET.log (libFuzzer's output).
#
# Sanitizer: none (`cargo fuzz build -s none`). Every target links candle and tokenizers, and the
# targets are safe Rust, where AddressSanitizer finds little that Rust's own checks miss; the
# build keeps debug assertions (integer overflow panics) and libFuzzer's malloc and RSS limits.
# FUZZ_SANITIZER=address builds with AddressSanitizer instead.
set -euo pipefail
cd "$(dirname "$0")/.."

all=(gguf chat_jsonl experiment_toml battery_toml paper_yaml chat_template server_request)
if [ $# -lt 1 ] || ! [[ $1 =~ ^[0-9]+$ ]] || [ "$1" -lt 1 ]; then
  echo "usage: scripts/fuzz.sh SECONDS [TARGET...]   (targets: ${all[*]})" >&2
  exit 2
fi
secs=$1
shift
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${all[@]}")
for t in "${targets[@]}"; do
  if [[ " ${all[*]} " != *" $t "* ]]; then
    echo "error: no fuzz target \`$t\` (targets: ${all[*]})" >&2
    exit 2
  fi
done

if ! rustup run nightly cargo --version >/dev/null 2>&1; then
  echo "error: fuzzing needs the nightly toolchain" >&2
  echo "hint: rustup toolchain install nightly" >&2
  exit 1
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "cargo-fuzz is missing: installing it (cargo install cargo-fuzz --locked)" >&2
  cargo install cargo-fuzz --locked || {
    echo "error: cannot install cargo-fuzz" >&2
    exit 1
  }
fi

work=${SELFAWARE_FUZZ_DIR:-${CARGO_TARGET_DIR:-target}/fuzz}
mkdir -p "$work"
work=$(cd "$work" && pwd)
sanitizer=${FUZZ_SANITIZER:-none}
triple=$(rustc +nightly -vV | sed -n 's/^host: //p')

have() { [[ " ${targets[*]} " == *" $1 "* ]]; }
# The gguf target also writes the generated seeds (below), so it is built whenever they are needed.
build=("${targets[@]}")
if have chat_template && ! have gguf; then build+=(gguf); fi
build_start=$SECONDS
if [ ${#build[@]} -eq ${#all[@]} ]; then
  cargo +nightly fuzz build -s "$sanitizer" --target-dir "$work/build"
else
  for t in "${build[@]}"; do
    cargo +nightly fuzz build -s "$sanitizer" --target-dir "$work/build" "$t"
  done
fi
for t in "${build[@]}"; do
  if [ ! -x "$work/build/$triple/release/$t" ]; then
    echo "error: the fuzz target \`$t\` did not build" >&2
    exit 1
  fi
done
echo "built in $((SECONDS - build_start)) s (sanitizer: $sanitizer)"

# Seeds: what the repository has of each input kind.
paper=${SELFAWARE_PAPER_DIR:-../shared/reference/paper}
rm -rf "$work/seeds"
for t in "${targets[@]}"; do
  mkdir -p "$work/seeds/$t" "$work/corpus/$t" "$work/artifacts/$t" "$work/logs"
  if [ -d "fuzz/seeds/$t" ]; then cp fuzz/seeds/"$t"/* "$work/seeds/$t/"; fi
done
if have gguf || have chat_template; then
  # The tiny test model (selfaware-model's testing module) exists only as code: the gguf target
  # writes it, and its chat template, when SELFAWARE_FUZZ_SEEDS is set.
  gen="$work/seeds/generated"
  SELFAWARE_FUZZ_SEEDS="$gen" "$work/build/$triple/release/gguf" -runs=0 >/dev/null 2>&1
  if have gguf; then cp "$gen"/gguf/* "$work/seeds/gguf/"; fi
  if have chat_template; then cp "$gen"/chat_template/* "$work/seeds/chat_template/"; fi
  rm -rf "$gen"
fi
if have experiment_toml; then
  cp crates/selfaware-run/presets/*.toml "$work/seeds/experiment_toml/"
fi
if have battery_toml; then
  cp crates/selfaware-eval/batteries/*.toml "$work/seeds/battery_toml/"
fi
if have chat_jsonl; then
  # Single lines too, so mutations start from one valid example.
  i=0
  while IFS= read -r line; do
    [ -n "$line" ] || continue
    i=$((i + 1))
    printf '%s\n' "$line" >"$work/seeds/chat_jsonl/line-$i.jsonl"
  done < <(cat fuzz/seeds/chat_jsonl/*.jsonl)
fi
if have paper_yaml; then
  if [ -d "$paper/questions" ]; then
    find "$paper/questions" -name '*.yaml' -type f | while IFS= read -r f; do
      cp "$f" "$work/seeds/paper_yaml/$(echo "${f#"$paper"/}" | tr / _)"
    done
  else
    echo "note: no paper question files at $paper/questions (SELFAWARE_PAPER_DIR); paper_yaml starts from the battery files alone" >&2
    cp crates/selfaware-eval/batteries/*.toml "$work/seeds/paper_yaml/"
  fi
fi

failed=()
printf '%-16s %12s %8s  %s\n' target executions seconds result
for t in "${targets[@]}"; do
  max_len=()
  [ "$t" = gguf ] && max_len=(-max_len=65536)
  log="$work/logs/$t.log"
  status=0
  start=$SECONDS
  # One process, no -jobs/-workers (libFuzzer's -jobs forks workers and writes their output to
  # fuzz-N.log files in the current folder). Leak detection is off: the targets keep built-once
  # state (the tiny chat format) in statics on purpose.
  "$work/build/$triple/release/$t" "$work/corpus/$t" "$work/seeds/$t" \
    -max_total_time="$secs" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 \
    -detect_leaks=0 -artifact_prefix="$work/artifacts/$t/" "${max_len[@]}" >"$log" 2>&1 || status=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  took=$((SECONDS - start))
  artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)
  if [ "$status" -eq 0 ] && [ -z "$artifact" ]; then
    result="no crash"
  else
    result="CRASH (exit $status): ${artifact:-see $log}"
    failed+=("$t")
  fi
  printf '%-16s %12s %8s  %s\n' "$t" "${execs:-?}" "$took" "$result"
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "error: fuzzing found crashes in: ${failed[*]} (logs under $work/logs)" >&2
  echo "hint: reproduce with $work/build/$triple/release/TARGET ARTIFACT" >&2
  exit 1
fi
