#!/bin/bash
# Benchmarks crius and containerd side by side on this machine: the same runc, CNI
# plugins, images (from the local test registry) and benchmark client (crius-bench, which
# speaks CRI over each daemon's Unix socket). One daemon runs at a time, each with private
# state under a temp dir, its own bridge network and a FORWARD drop rule so no pod traffic
# leaves the host. Prints the table (metric, crius, containerd, ratio) and writes
# crius.json, containerd.json, floor.json, summary.json, table.txt (and bench.png when
# python3-matplotlib is installed) into the results dir. Everything it made is removed at
# the end, also on failure: processes by PID, mounts, cgroups, bridges, rules, the temp dir.
#
# Usage (as root, from anywhere; e2e/fixtures/setup.sh must have run):
#   e2e/bench/run.sh [--results DIR] [--no-build] [--no-critest] [--quick] [--keep]
#                    [--only crius|containerd]
#     --results DIR  where the results go (default /var/tmp/crius-bench-results/DATE)
#     --no-build     use the release binaries already in target/release
#     --no-critest   skip `critest -benchmark` even when $CRITEST exists
#     --quick        small series (5 pods, 10 execs, 2 pulls) to check the setup
#     --keep         keep the temp dir (daemon logs, state) for a look afterwards
#     --only NAME    measure one runtime, no comparison (e.g. with CRIUS_BENCH_LOG_LEVEL=debug)
# Environment: CRITEST (default /opt/cri-tools/bin/critest), CRITEST_PARAMS (default
# ../shared/critest/benchmark-params.yaml next to the repository), CONTAINERD
# (default /usr/bin/containerd), RUNC (default /usr/sbin/runc), CARGO_TARGET_DIR,
# CRIUS_BENCH_LOG_LEVEL (crius's --log-level, default info, as containerd's).

set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$REPO/target}
RELEASE=$TARGET/release
CRITEST=${CRITEST:-/opt/cri-tools/bin/critest}
CRITEST_PARAMS=${CRITEST_PARAMS:-$REPO/../shared/critest/benchmark-params.yaml}
CONTAINERD=${CONTAINERD:-/usr/bin/containerd}
RUNC=${RUNC:-/usr/sbin/runc}
CNI_BIN=/usr/lib/cni
REGISTRY=127.0.0.1:5000
PAUSE_IMAGE=registry.k8s.io/pause:3.10

RESULTS=/var/tmp/crius-bench-results/$(date +%Y%m%d-%H%M%S)
BUILD=1
CRITEST_ON=1
KEEP=0
ONLY=
CRIUS_LOG_LEVEL=${CRIUS_BENCH_LOG_LEVEL:-info}
BENCH_SIZE=()
FLOOR_RUNS=5
while [ $# -gt 0 ]; do
    case "$1" in
        --results) RESULTS=$2; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        --no-critest) CRITEST_ON=0; shift ;;
        --quick) BENCH_SIZE=(--pods 5 --parallel 5 --execs 10 --pulls 2); FLOOR_RUNS=2; shift ;;
        --keep) KEEP=1; shift ;;
        --only) ONLY=$2; shift 2 ;;
        -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
        *) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done

log() { echo "run.sh: $*" >&2; }
die() { log "$*"; exit 1; }

case "$ONLY" in ""|crius|containerd) ;; *) die "--only takes crius or containerd" ;; esac
[ "$(id -u)" = 0 ] || die "must run as root"
for tool in "$RUNC" "$CONTAINERD" /usr/bin/containerd-shim-runc-v2 iptables ip tar zstd; do
    command -v "$tool" >/dev/null || die "$tool is missing"
done
[ -x "$CNI_BIN/bridge" ] || die "CNI plugins missing in $CNI_BIN (apt install containernetworking-plugins)"
curl -sf "http://$REGISTRY/v2/" >/dev/null ||
    die "no registry on $REGISTRY: run e2e/fixtures/setup.sh first"
curl -sf "http://$REGISTRY/v2/crius-test/multilayer/tags/list" >/dev/null ||
    die "$REGISTRY lacks crius-test/multilayer: run e2e/fixtures/setup.sh first"

if [ "$BUILD" = 1 ]; then
    log "building release binaries"
    (cd "$REPO" && cargo build --release -p crius -p crius-conmon -p crius-pause -p crius-bench)
fi
for bin in crius crius-conmon crius-pause crius-bench; do
    [ -x "$RELEASE/$bin" ] || die "$RELEASE/$bin missing: build it or drop --no-build"
done
BENCH=$RELEASE/crius-bench

# Everything the run makes, for cleanup.
WORK=$(mktemp -d /var/tmp/crius-bench.XXXXXX)
TAG=$$
CGROUP_PARENT=/crius-bench-$TAG
CRIUS_BRIDGE=crbc$TAG
CTRD_BRIDGE=crbd$TAG
CRIUS_SUBNET=10.99.0.0/16
CTRD_SUBNET=10.98.0.0/16
RULES=()
BRIDGES=()
DAEMON_PIDS=()
DAEMON_SOCKS=()
RUN_CONTAINERD_EXISTED=0
[ -e /run/containerd ] && RUN_CONTAINERD_EXISTED=1

for subnet in "$CRIUS_SUBNET" "$CTRD_SUBNET"; do
    if ip -4 route show | grep -q "^${subnet%%.0.0/16}\."; then
        die "subnet $subnet is already routed on this host; pick another in run.sh"
    fi
done

pid_alive() { [ -n "$1" ] && kill -0 "$1" 2>/dev/null; }

# Long steps run in the background and are waited for, so SIGTERM/SIGINT reach the trap at
# once (bash runs traps only between foreground commands) and cleanup can stop the step.
CHILD=
run_child() {
    local rc=0
    "$@" &
    CHILD=$!
    wait "$CHILD" || rc=$?
    CHILD=
    return "$rc"
}

stop_daemon() { # PID SOCKET
    local pid=$1 sock=$2
    pid_alive "$pid" || return 0
    timeout 180 "$BENCH" cleanup --endpoint "unix://$sock" || log "pod cleanup via $sock failed"
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 150); do pid_alive "$pid" || break; sleep 0.1; done
    if pid_alive "$pid"; then
        log "daemon $pid ignored SIGTERM for 15 s; killing it"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

# Processes started for this run outlive their daemon by design (monitors, shims,
# containers): find them by the temp dir in their command line and kill them by PID.
kill_leftovers() {
    local round p pid cmd found
    for round in 1 2 3; do
        found=0
        for p in /proc/[0-9]*; do
            pid=${p#/proc/}
            [ "$pid" = "$$" ] || [ "$pid" = "$BASHPID" ] && continue
            cmd=$(tr '\0' ' ' 2>/dev/null <"$p/cmdline") || continue
            case "$cmd" in
                *"$WORK"*)
                    log "killing leftover process $pid: $cmd"
                    kill -KILL "$pid" 2>/dev/null && found=1 ;;
            esac
        done
        [ "$found" = 0 ] && break
        sleep 0.2
    done
}

delete_runc_containers() { # RUNC_ROOT
    local root=$1 id
    [ -d "$root" ] || return 0
    for id in $("$RUNC" --root "$root" list -q 2>/dev/null); do
        log "deleting leftover runc container $id in $root"
        "$RUNC" --root "$root" delete --force "$id" || true
    done
}

mounts_under_work() {
    awk -v w="$WORK/" 'index($5, w) == 1 { print $5 }' /proc/self/mountinfo
}

cleanup() {
    local status=$? i m
    set +e
    trap - EXIT INT TERM
    if pid_alive "$CHILD"; then
        kill -TERM "$CHILD" 2>/dev/null
        wait "$CHILD" 2>/dev/null
    fi
    for i in "${!DAEMON_PIDS[@]}"; do
        stop_daemon "${DAEMON_PIDS[$i]}" "${DAEMON_SOCKS[$i]}"
    done
    delete_runc_containers "$WORK/crius/run/runtimes/runc"
    for d in "$WORK"/containerd/runc/*; do delete_runc_containers "$d"; done
    kill_leftovers
    for _ in 1 2 3; do
        for m in $(mounts_under_work | sort -r); do
            umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null
        done
    done
    for h in /sys/fs/cgroup/*/ /sys/fs/cgroup/; do
        if [ -d "$h${CGROUP_PARENT#/}" ]; then
            find "$h${CGROUP_PARENT#/}" -depth -type d -exec rmdir {} + 2>/dev/null ||
                log "cannot remove cgroup $h${CGROUP_PARENT#/}"
        fi
    done
    for i in "${!RULES[@]}"; do
        iptables -D FORWARD -i "${RULES[$i]}" ! -o "${RULES[$i]}" -j DROP ||
            log "cannot remove the FORWARD rule of ${RULES[$i]}"
    done
    for b in "${BRIDGES[@]}"; do
        [ -e "/sys/class/net/$b" ] && ip link del "$b"
    done
    if [ "$RUN_CONTAINERD_EXISTED" = 0 ]; then
        # containerd 1.6 puts shim sockets in /run/containerd/s whatever its config says.
        rmdir /run/containerd/s /run/containerd 2>/dev/null
    fi
    if [ -n "$(mounts_under_work)" ]; then
        log "mounts remain under $WORK; leaving it: $(mounts_under_work | tr '\n' ' ')"
    elif [ "$KEEP" = 1 ]; then
        log "kept $WORK"
    else
        rm -rf "$WORK"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

add_bridge_rule() { # BRIDGE
    iptables -I FORWARD -i "$1" ! -o "$1" -j DROP
    RULES+=("$1")
    BRIDGES+=("$1")
}

conflist() { # NAME BRIDGE SUBNET IPAM_DIR
    cat <<EOF
{
  "cniVersion": "1.0.0",
  "name": "$1",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$2",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "$3"}]],
        "dataDir": "$4"
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}},
    {"type": "loopback"}
  ]
}
EOF
}

mkdir -p "$RESULTS"
RESULTS=$(cd "$RESULTS" && pwd)
log "temp dir $WORK, results in $RESULTS"

run_critest() { # NAME SOCKET
    [ "$CRITEST_ON" = 1 ] && [ -x "$CRITEST" ] || return 0
    if [ ! -f "$CRITEST_PARAMS" ]; then
        log "no $CRITEST_PARAMS: skipping critest -benchmark"
        return 0
    fi
    rm -rf "$RESULTS/critest-$1"
    mkdir -p "$RESULTS/critest-$1"
    log "critest -benchmark against $1"
    run_child timeout 600 "$CRITEST" -benchmark \
        --runtime-endpoint "unix://$2" --image-endpoint "unix://$2" \
        --benchmarking-params-file "$CRITEST_PARAMS" \
        --benchmarking-output-dir "$RESULTS/critest-$1" \
        >"$RESULTS/critest-$1.log" 2>&1 ||
        log "critest -benchmark against $1 failed; see $RESULTS/critest-$1.log"
}

# --- the floor: plain tar on the same layers, same disk --------------------------------
log "timing the tar floor"
run_child "$BENCH" floor --work-dir "$WORK/floor" --out "$RESULTS/floor.json" --runs "$FLOOR_RUNS"

# --- crius -----------------------------------------------------------------------------
if [ -z "$ONLY" ] || [ "$ONLY" = crius ]; then
C=$WORK/crius
mkdir -p "$C/cni" "$C/conf.d" "$C/logs"
conflist crius-bench "$CRIUS_BRIDGE" "$CRIUS_SUBNET" "$C/ipam" >"$C/cni/10-bench.conflist"
cat >"$C/crius.conf" <<EOF
[crius.network]
cache_dir = "$C/cni-cache"
EOF
add_bridge_rule "$CRIUS_BRIDGE"
CRIUS_SOCK=$C/run/crius.sock
# crius syncs each unpacked layer (syncfs): start each daemon with no dirty pages pending
# from earlier work on this disk, so neither pays for them.
sync
log "starting crius"
"$RELEASE/crius" --config "$C/crius.conf" --config-dir "$C/conf.d" \
    --root "$C/root" --runroot "$C/run" --listen "unix://$CRIUS_SOCK" \
    --log-level "$CRIUS_LOG_LEVEL" --cgroup-manager cgroupfs \
    --cni-config-dir "$C/cni" --cni-plugin-dir "$CNI_BIN" \
    --registries-conf "$HERE/registries.conf" --insecure-registry "$REGISTRY" \
    --pause-image "$PAUSE_IMAGE" --stream-address 127.0.0.1 --stream-port 0 \
    </dev/null >"$C/crius.log" 2>&1 &
CRIUS_PID=$!
DAEMON_PIDS+=("$CRIUS_PID")
DAEMON_SOCKS+=("$CRIUS_SOCK")
"$BENCH" wait --endpoint "unix://$CRIUS_SOCK" --timeout 30 ||
    { tail -30 "$C/crius.log" >&2; die "crius did not start"; }
run_child "$BENCH" run --name crius --endpoint "unix://$CRIUS_SOCK" --daemon-pid "$CRIUS_PID" \
    --monitor-exe crius-conmon --process-match "$C/" --work-dir "$C/logs" \
    --cgroup-parent "$CGROUP_PARENT" --pause "$PAUSE_IMAGE" \
    --out "$RESULTS/crius.json" "${BENCH_SIZE[@]}" ||
    log "some crius series failed (see above and $C/crius.log)"
run_critest crius "$CRIUS_SOCK"
stop_daemon "$CRIUS_PID" "$CRIUS_SOCK"
cp "$C/crius.log" "$RESULTS/crius-daemon.log"
fi

# --- containerd ------------------------------------------------------------------------
if [ -z "$ONLY" ] || [ "$ONLY" = containerd ]; then
D=$WORK/containerd
mkdir -p "$D/cni" "$D/logs"
conflist containerd-bench "$CTRD_BRIDGE" "$CTRD_SUBNET" "$D/ipam" >"$D/cni/10-bench.conflist"
mirrors=""
for reg in registry.k8s.io docker.io public.ecr.aws "$REGISTRY"; do
    mirrors+="
[plugins.\"io.containerd.grpc.v1.cri\".registry.mirrors.\"$reg\"]
  endpoint = [\"http://$REGISTRY\"]"
done
cat >"$D/config.toml" <<EOF
version = 2
root = "$D/root"
state = "$D/state"
disabled_plugins = [
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing",
]

[grpc]
  address = "$D/containerd.sock"

[ttrpc]
  address = "$D/containerd.sock.ttrpc"

[debug]
  address = "$D/debug.sock"
  level = "info"

[plugins."io.containerd.internal.v1.opt"]
  path = "$D/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  restrict_oom_score_adj = true
  disable_apparmor = true
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"

[plugins."io.containerd.grpc.v1.cri".containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
  BinaryName = "$RUNC"
  Root = "$D/runc"
  SystemdCgroup = false

[plugins."io.containerd.grpc.v1.cri".cni]
  bin_dir = "$CNI_BIN"
  conf_dir = "$D/cni"
  max_conf_num = 1
$mirrors
EOF
add_bridge_rule "$CTRD_BRIDGE"
CTRD_SOCK=$D/containerd.sock
sync
log "starting containerd"
"$CONTAINERD" --config "$D/config.toml" </dev/null >"$D/containerd.log" 2>&1 &
CTRD_PID=$!
DAEMON_PIDS+=("$CTRD_PID")
DAEMON_SOCKS+=("$CTRD_SOCK")
"$BENCH" wait --endpoint "unix://$CTRD_SOCK" --timeout 30 ||
    { tail -30 "$D/containerd.log" >&2; die "containerd did not start"; }
run_child "$BENCH" run --name containerd --endpoint "unix://$CTRD_SOCK" --daemon-pid "$CTRD_PID" \
    --monitor-exe containerd-shim-runc-v2 --process-match "$D/" --work-dir "$D/logs" \
    --cgroup-parent "$CGROUP_PARENT" --pause "$PAUSE_IMAGE" \
    --out "$RESULTS/containerd.json" "${BENCH_SIZE[@]}" ||
    log "some containerd series failed (see above and $D/containerd.log)"
run_critest containerd "$CTRD_SOCK"
stop_daemon "$CTRD_PID" "$CTRD_SOCK"
cp "$D/containerd.log" "$RESULTS/containerd-daemon.log"
fi

# --- the comparison --------------------------------------------------------------------
if [ -n "$ONLY" ]; then
    log "only $ONLY measured: no comparison; see $RESULTS/$ONLY.json"
    exit 0
fi
echo
"$BENCH" report --results "$RESULTS" --a crius --b containerd
if /usr/bin/python3 -c 'import matplotlib' 2>/dev/null; then
    /usr/bin/python3 "$HERE/plot.py" "$RESULTS/summary.json" "$RESULTS/bench.png" &&
        log "plot: $RESULTS/bench.png"
else
    log "no python3-matplotlib: no plot (apt install python3-matplotlib)"
fi
log "results in $RESULTS"
