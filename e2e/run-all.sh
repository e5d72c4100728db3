#!/bin/bash
# Runs every test of the workspace (unit, integration, end-to-end) as root:
#
#   sudo ./e2e/run-all.sh [ARGS FOR cargo test...]
#
# 1. apt-installs what the tests use (packages below; e2e/fixtures/setup.sh adds its own);
# 2. starts the test registries and pushes the test images (e2e/fixtures/setup.sh) and
#    reads the variables it writes to /var/tmp/crius-fixtures/env;
#    builds the peers (critest, crictl, kubelet, runc 1.5, containerd 2.4) from the Go
#    module proxy, or takes them from their cache (e2e/peers/build.sh), and reads
#    /var/cache/crius/peers/env; with CI=true a peer that cannot be built fails the run,
#    elsewhere the tests that need it say they were skipped for it;
#    installs Python's grpcio (a non-Go gRPC client) into a venv, /var/tmp/crius-grpcio
#    (CRIUS_GRPCIO_VENV), and names its python in CRIUS_GRPCIO_PYTHON;
# 3. builds every binary (the e2e tests start target/debug/crius, crius-conmon and
#    crius-pause; the crash tests target/debug/crius-fault-injection, crius built with
#    the fault-injection feature) and the tests;
# 4. checks formatting and clippy with warnings as errors (CRIUS_LINT=0 skips this);
# 5. runs `cargo test --workspace --no-fail-fast` with at most CRIUS_TEST_THREADS (default 2)
#    tests at once per test binary;
# 6. runs critest three times against the real daemon, with Debian's runc, with the pinned
#    runc and with the built-in crius-runtime as handler (e2e/tests/critest.rs, ignored by plain `cargo test`), and compares each run
#    with its expected results (e2e/critest/expected-*.txt); prints `N passed, N failed,
#    N skipped` per run and fails on a spec that passed before (CRIUS_CRITEST=0 skips this);
# 7. runs every cargo-fuzz target for CRIUS_FUZZ_SECONDS (default 10) from its corpus in
#    fuzz/corpus, built without a sanitizer (e2e/fuzz.sh; installs cargo-fuzz
#    CARGO_FUZZ_VERSION when missing; in CI it first frees the test build's disk) and fails
#    on a crash (CRIUS_FUZZ=0 skips this);
# 8. stops the registries again (e2e/fixtures/teardown.sh), also when a step fails, unless
#    they were already running before (then someone else uses them) or
#    CRIUS_KEEP_FIXTURES=1 is set.
set -euo pipefail

TOP=$(cd "$(dirname "$0")/.." && pwd)
cd "$TOP"
PACKAGES="build-essential pkg-config protobuf-compiler ca-certificates runc crun
  containernetworking-plugins iptables iproute2 util-linux procps kmod libseccomp-dev
  containerd"
FIXTURES=e2e/fixtures
CARGO_FUZZ_VERSION=0.13.2
FIXTURES_ENV=/var/tmp/crius-fixtures/env

say() { echo "run-all: [$(( $(date +%s) - started ))s] $*"; }
die() { echo "run-all: error: $*" >&2; exit 1; }

started=$(date +%s)
[ "$(id -u)" = 0 ] || die "the tests need root (sudo $0)"

# ---------------------------------------------------------------- packages
missing=""
for p in $PACKAGES; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $p"
done
if [ -n "$missing" ]; then
  say "apt-get install$missing"
  export DEBIAN_FRONTEND=noninteractive
  # shellcheck disable=SC2086
  apt-get install -y -q $missing </dev/null ||
    { apt-get update -q </dev/null && apt-get install -y -q $missing </dev/null; }
fi
command -v protoc >/dev/null || die "protoc is missing after installing protobuf-compiler"

for dir in "${CARGO_HOME:-$HOME/.cargo}/bin" /root/.cargo/bin; do
  [ -x "$dir/cargo" ] && PATH="$dir:$PATH"
done
export PATH
command -v cargo >/dev/null || die "no cargo in PATH: install Rust (https://rustup.rs) first"
for dir in /usr/local/go/bin "${GOPATH:-$HOME/go}/bin"; do
  [ -x "$dir/go" ] && PATH="$PATH:$dir"
done

# ---------------------------------------------------------------- fixtures
registry_up() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
if [ -x "$FIXTURES/setup.sh" ]; then
  if registry_up 5000 || registry_up 5001; then
    say "the test registries already run: leaving them running afterwards"
  elif [ "${CRIUS_KEEP_FIXTURES:-0}" != 1 ] && [ -x "$FIXTURES/teardown.sh" ]; then
    trap '"$TOP/$FIXTURES/teardown.sh" || true' EXIT
  fi
  say "setting up the test registries and images ($FIXTURES/setup.sh)"
  "$FIXTURES/setup.sh" </dev/null
else
  say "no $FIXTURES/setup.sh: tests that need the registries will fail"
fi
if [ -f "$FIXTURES_ENV" ]; then
  set -a
  # shellcheck disable=SC1090
  . "$FIXTURES_ENV"
  set +a
fi

# ---------------------------------------------------------------- peers
PEERS_ENV=${CRIUS_PEERS_DIR:-/var/cache/crius/peers}/env
say "building the peers or taking them from the cache (e2e/peers/build.sh)"
if ! e2e/peers/build.sh </dev/null; then
  [ -n "${CI:-}" ] && die "a peer could not be built (see above); CI needs every peer"
  say "warning: some peers are missing: the tests that need them will say they were skipped"
fi
if [ -f "$PEERS_ENV" ]; then
  set -a
  # shellcheck disable=SC1090
  . "$PEERS_ENV"
  set +a
fi
# A CI machine starts empty and is thrown away after the run: Go's build and module caches
# (several GB once the kubelet is built) serve no later build there, and the Rust build
# below needs that disk. The built peers themselves stay in their cache.
if [ -n "${CI:-}" ] && command -v go >/dev/null; then
  say "CI: freeing Go's build and module caches ($(du -sch "$(go env GOCACHE)" "$(go env GOMODCACHE)" 2>/dev/null | tail -1 | cut -f1))"
  go clean -cache -modcache || say "warning: go clean failed; going on"
fi

# ---------------------------------------------------------------- a non-Go gRPC client
# e2e/tests/grpc_clients.rs drives the socket with Python's grpcio, from PyPI, in a venv.
GRPCIO_VENV=${CRIUS_GRPCIO_VENV:-/var/tmp/crius-grpcio}
if ! "$GRPCIO_VENV/bin/python" -c 'import grpc' 2>/dev/null; then
  say "installing grpcio into $GRPCIO_VENV"
  python3 -m venv --help >/dev/null 2>&1 ||
    apt-get install -y -q python3 python3-venv </dev/null >/dev/null || true
  if ! { python3 -m venv --clear "$GRPCIO_VENV" &&
         "$GRPCIO_VENV/bin/pip" install -q 'grpcio==1.85.4' </dev/null; }; then
    [ -n "${CI:-}" ] && die "cannot install grpcio into $GRPCIO_VENV; CI needs it"
    say "warning: no grpcio: the tests that need it will say they were skipped"
  fi
fi
export CRIUS_GRPCIO_PYTHON="$GRPCIO_VENV/bin/python"

# ---------------------------------------------------------------- build and test
export RUST_BACKTRACE=1
# A one-shot build gains nothing from incremental state, which costs GBs of disk.
[ -n "${CI:-}" ] && export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
target_dir="${CARGO_TARGET_DIR:-$TOP/target}"
mkdir -p "$target_dir"
disk_free() { df -h --output=avail "$target_dir" | tail -1 | tr -d ' '; }
say "disk free for $target_dir: $(disk_free)"
# The runner keeps our stdin closed, as CI does.
# The crash tests' build of crius (e2e/tests/crash_points.rs): the same binary with crash
# points compiled in, kept as crius-fault-injection. Built first: the plain build below
# then puts the plain crius back in place from its own, unchanged artifacts.
say "cargo build -p crius --features fault-injection (crius-fault-injection)"
cargo build -p crius --features fault-injection </dev/null
ln -f "$target_dir/debug/crius" "$target_dir/debug/crius-fault-injection"
say "cargo build --workspace --bins"
cargo build --workspace --bins </dev/null
# The style gates every change must pass (CRIUS_LINT=0 skips them).
if [ "${CRIUS_LINT:-1}" != 0 ]; then
  say "cargo fmt --check"
  cargo fmt --all -- --check </dev/null
  say "cargo clippy --workspace --all-targets -- -D warnings"
  cargo clippy --workspace --all-targets -- -D warnings </dev/null
  cargo clippy -p crius-fault --all-targets --features enabled -- -D warnings </dev/null
fi
say "cargo test --workspace --no-run"
cargo test --workspace --no-run </dev/null
say "disk free after the build: $(disk_free)"
say "cargo test --workspace --no-fail-fast"
cargo test --workspace --no-fail-fast "$@" -- --test-threads="${CRIUS_TEST_THREADS:-2}" </dev/null
if [ "${CRIUS_CRITEST:-1}" != 0 ]; then
  # One run at a time: critest binds host ports, and its timing specs want the CPUs.
  say "critest against crius, with Debian's runc, runc-upstream and crius-runtime (e2e/tests/critest.rs)"
  # critest_with_shim_handler (a vm handler as the default) is run by hand: see
  # e2e/critest/expected-shim.txt.
  cargo test -p crius-e2e --test critest -- --ignored --test-threads=1 --nocapture \
    --skip critest_with_shim_handler </dev/null
fi

# Every cargo-fuzz target for a bounded time, coverage-guided from its corpus in fuzz/corpus,
# built without a sanitizer on the default toolchain (e2e/fuzz.sh; the ASan run needs
# nightly and far more build time than CI has). CRIUS_FUZZ=0 skips this.
if [ "${CRIUS_FUZZ:-1}" != 0 ]; then
  if ! cargo fuzz --version >/dev/null 2>&1; then
    say "cargo install cargo-fuzz $CARGO_FUZZ_VERSION"
    cargo install --locked cargo-fuzz --version "$CARGO_FUZZ_VERSION" </dev/null
  fi
  if [ -n "${CI:-}" ]; then
    # The fuzz build needs about as much disk as the test build, which is done with.
    say "CI: freeing the test build ($(du -sh "$target_dir/debug" | cut -f1)) for the fuzz build"
    rm -rf "$target_dir/debug"
  fi
  say "fuzzing: every target for ${CRIUS_FUZZ_SECONDS:-10} s (e2e/fuzz.sh)"
  FUZZ_SANITIZER=none FUZZ_TOOLCHAIN= FUZZ_SECONDS="${CRIUS_FUZZ_SECONDS:-10}" \
    FUZZ_TARGET_DIR="$target_dir/fuzz" e2e/fuzz.sh
fi

say "disk free for $target_dir: $(disk_free) (target: $(du -sh "$target_dir" | cut -f1))"
say "all tests passed"
