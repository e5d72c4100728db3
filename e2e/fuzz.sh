#!/bin/bash
# Runs each cargo-fuzz target in fuzz/ for a bounded time: `e2e/fuzz.sh [TARGET...]`
# (default: all), FUZZ_SECONDS per target (default 20), FUZZ_TARGET_DIR for the build
# (default fuzz/target). Needs root (the layer unpacker
# makes device nodes and sets owners, in a scratch dir on /dev/shm or $CRIUS_FUZZ_DIR), a
# nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`). The first build compiles
# every dependency with the sanitizer (see README, Fuzzing). New inputs go to a temporary
# corpus, not to fuzz/corpus; a crash is left in fuzz/artifacts/TARGET and fails the run:
# fix it and keep the input in fuzz/regressions/TARGET/ (the stable replay test runs it).
set -euo pipefail
TOP=$(cd "$(dirname "$0")/.." && pwd)
SECS=${FUZZ_SECONDS:-20}
cd "$TOP/fuzz"
targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(cargo +nightly fuzz list)
# New corpus entries, logs and the unpacker's scratch dir, all on the tmpfs.
work=$(mktemp -d /dev/shm/crius-fuzz-run-XXXXXX)
trap 'rm -rf "$work"' EXIT
export CRIUS_FUZZ_DIR=$work/scratch
failed=()
for t in "${targets[@]}"; do
  mkdir -p "$work/$t"
  echo "== $t: ${SECS}s"
  if ! cargo +nightly fuzz run ${FUZZ_TARGET_DIR:+--target-dir "$FUZZ_TARGET_DIR"} "$t" "$work/$t" "corpus/$t" -- \
      -max_total_time="$SECS" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 2>"$work/$t.log"; then
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
