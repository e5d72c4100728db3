#!/bin/bash
# Runs each cargo-fuzz target in fuzz/ for a bounded time: `e2e/fuzz.sh [TARGET...]`
# (default: all), FUZZ_SECONDS per target (default 20), FUZZ_TARGET_DIR for the build
# (default fuzz/target). Needs root (the layer unpacker makes device nodes and sets owners,
# in a scratch dir on /dev/shm or $CRIUS_FUZZ_DIR) and cargo-fuzz (`cargo install --locked
# cargo-fuzz`).
#
# FUZZ_SANITIZER picks libFuzzer's build: `address` (the default; needs a nightly toolchain,
# FUZZ_TOOLCHAIN, default nightly, and rebuilds every dependency with ASan, see README,
# Fuzzing) or `none`, coverage-guided without ASan, which builds with the default (stable)
# toolchain, FUZZ_TOOLCHAIN= (empty), in a fraction of the time: what CI runs
# (e2e/run-all.sh). Without ASan a target still fails on every panic,
# overflow and debug assertion; only memory errors inside `unsafe` code need the ASan run.
#
# New inputs go to a temporary corpus, not to fuzz/corpus; a crash is left in
# fuzz/artifacts/TARGET and fails the run: fix it and keep the input in
# fuzz/regressions/TARGET/ (the stable replay test, crates/crius-fuzz/tests/replay.rs,
# runs it).
set -euo pipefail
TOP=$(cd "$(dirname "$0")/.." && pwd)
SECS=${FUZZ_SECONDS:-20}
SANITIZER=${FUZZ_SANITIZER:-address}
TOOLCHAIN=${FUZZ_TOOLCHAIN-nightly}
cargo=(cargo ${TOOLCHAIN:+"+$TOOLCHAIN"})
cd "$TOP/fuzz"
fuzz() {
  local cmd=$1
  shift
  "${cargo[@]}" fuzz "$cmd" --sanitizer "$SANITIZER" \
    ${FUZZ_TARGET_DIR:+--target-dir "$FUZZ_TARGET_DIR"} "$@"
}
targets=("$@")
# A build first, so that a build failure is not taken for a crash.
start=$(date +%s)
echo "== building (sanitizer: $SANITIZER, toolchain: ${TOOLCHAIN:-default})"
if [ ${#targets[@]} -eq 0 ]; then
  fuzz build </dev/null
  mapfile -t targets < <("${cargo[@]}" fuzz list)
else
  for t in "${targets[@]}"; do fuzz build "$t" </dev/null; done
fi
echo "== built in $(($(date +%s) - start)) s"
# New corpus entries, logs and the unpacker's scratch dir, all on the tmpfs.
work=$(mktemp -d /dev/shm/crius-fuzz-run-XXXXXX)
trap 'rm -rf "$work"' EXIT
export CRIUS_FUZZ_DIR=$work/scratch
failed=()
for t in "${targets[@]}"; do
  mkdir -p "$work/$t"
  echo "== $t: ${SECS}s"
  if ! fuzz run "$t" "$work/$t" "corpus/$t" -- \
      -max_total_time="$SECS" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
      </dev/null 2>"$work/$t.log"; then
    failed+=("$t")
    tail -40 "$work/$t.log"
  fi
  grep -E "stat::number_of_executed_units|stat::new_units_added" "$work/$t.log" | sed "s/^/$t: /" || true
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: crashes in ${failed[*]} (inputs in fuzz/artifacts/)"
  exit 1
fi
echo "fuzz: ${#targets[@]} targets ran ${SECS}s each without a crash"
