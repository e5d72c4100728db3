#!/bin/bash
# Benchmarks crius beside containerd on this machine, one daemon at a time, with the same
# CNI plugins, images (from the local test registry) and benchmark client (crius-bench,
# which speaks CRI over each daemon's Unix socket). Four runs compare at equal runc:
#   crius           crius, runc 1.1.5 (Debian's)          } crius/containerd-1.6
#   containerd-1.6  Debian's containerd 1.6, runc 1.1.5   }
#   crius-runc15    crius, runc 1.5 (the peer) as handler runc15 } crius-runc15/containerd-2.4
#   containerd-2.4  containerd 2.4 (the peer) with its own shim, runc 1.5 }
#   crius-shim      crius, default handler a vm handler on containerd 2.4's shim (runc 1.5),
#                   against crius-runc15 and containerd-2.4 (the same shim)
# and the kubelet's view (the peer kubelet, standalone, one config): static pods written
# until the kubelet reports them running, kubelet-crius (crius, runc 1.5) and
# kubelet-crius-builtin (crius, crius-runtime) against kubelet-containerd-2.4. Each daemon has private state under a temp dir, its own bridge and
# a FORWARD drop rule so no pod traffic leaves the host. Prints the tables (metric, each run,
# ratios) and writes NAME.json per run, floor.json, summary.json, table.txt (and bench.png
# when python3-matplotlib is installed) into the results dir. Everything it made is removed
# at the end, also on failure: processes by PID, mounts, cgroups, bridges, rules, the temp
# dir. The kubelet runs in a mount namespace of its own and makes no iptables chains, so it
# changes no host sysctl, /var/log or firewall.
#
# Usage (as root, from anywhere; e2e/fixtures/setup.sh must have run):
#   e2e/bench/run.sh [--results DIR] [--no-build] [--no-critest] [--quick] [--keep]
#                    [--only NAME[,NAME...]]
#     --results DIR  where the results go (default /var/tmp/crius-bench-results/DATE)
#     --no-build     use the release binaries already in target/release
#     --no-critest   skip `critest -benchmark` even when critest exists
#     --quick        small series (5 pods, 10 execs, 2 pulls, 3 kubelet pods) to check the setup
#     --keep         keep the temp dir (daemon logs, state) for a look afterwards
#     --only NAMES   measure these runs only: crius containerd-1.6 crius-runc15
#                    containerd-2.4 crius-builtin crius-shim kubelet-crius
#                    kubelet-containerd-2.4 kubelet-crius-builtin (comma-separated)
# Environment: CRITEST (default the peer's), CRITEST_PARAMS (default
# e2e/bench/critest-params.yaml), CONTAINERD (default
# /usr/bin/containerd, 1.6), RUNC (default /usr/sbin/runc, 1.1.5), CARGO_TARGET_DIR,
# CRIUS_BENCH_LOG_LEVEL (crius's --log-level, default info, as containerd's). The peers
# (runc 1.5, containerd 2.4, the kubelet, critest) come from e2e/peers/build.sh, which this
# script runs (cached: cheap after the first time); a run whose peer is missing is skipped.

set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$REPO/target}
RELEASE=$TARGET/release
CRITEST_PARAMS=${CRITEST_PARAMS:-$HERE/critest-params.yaml}
CONTAINERD=${CONTAINERD:-/usr/bin/containerd}
RUNC=${RUNC:-/usr/sbin/runc}
CNI_BIN=/usr/lib/cni
REGISTRY=127.0.0.1:5000
PAUSE_IMAGE=registry.k8s.io/pause:3.10
ALL_RUNS="crius containerd-1.6 crius-runc15 containerd-2.4 crius-builtin crius-shim kubelet-crius kubelet-containerd-2.4 kubelet-crius-builtin"

RESULTS=/var/tmp/crius-bench-results/$(date +%Y%m%d-%H%M%S)
BUILD=1
CRITEST_ON=1
KEEP=0
ONLY=
CRIUS_LOG_LEVEL=${CRIUS_BENCH_LOG_LEVEL:-info}
BENCH_SIZE=()
KUBELET_PODS=10
FLOOR_RUNS=5
while [ $# -gt 0 ]; do
    case "$1" in
        --results) RESULTS=$2; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        --no-critest) CRITEST_ON=0; shift ;;
        --quick) BENCH_SIZE=(--pods 5 --parallel 5 --execs 10 --pulls 2); FLOOR_RUNS=2
                 KUBELET_PODS=3; shift ;;
        --keep) KEEP=1; shift ;;
        --only) ONLY=$2; shift 2 ;;
        -h|--help) sed -n '2,35p' "$0"; exit 0 ;;
        *) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done

log() { echo "run.sh: $*" >&2; }
die() { log "$*"; exit 1; }

for name in ${ONLY//,/ }; do
    case " $ALL_RUNS " in *" $name "*) ;; *) die "--only: unknown run $name (runs: $ALL_RUNS)" ;; esac
done
wanted() { [ -z "$ONLY" ] || case ",$ONLY," in *",$1,"*) true ;; *) false ;; esac; }

[ "$(id -u)" = 0 ] || die "must run as root"
for tool in "$RUNC" "$CONTAINERD" /usr/bin/containerd-shim-runc-v2 iptables ip tar zstd curl python3; do
    command -v "$tool" >/dev/null || die "$tool is missing (Debian's containerd 1.6: apt install containerd)"
done
[ -x "$CNI_BIN/bridge" ] || die "CNI plugins missing in $CNI_BIN (apt install containernetworking-plugins)"
curl -sf "http://$REGISTRY/v2/" >/dev/null ||
    die "no registry on $REGISTRY: run e2e/fixtures/setup.sh first"
curl -sf "http://$REGISTRY/v2/crius-test/multilayer/tags/list" >/dev/null ||
    die "$REGISTRY lacks crius-test/multilayer: run e2e/fixtures/setup.sh first"
curl -sf "http://$REGISTRY/v2/pause/tags/list" | grep -q '"3.10"' ||
    die "$REGISTRY lacks pause:3.10 (registry.k8s.io/pause:3.10 through the mirror): run e2e/fixtures/setup.sh (critest_images.py pushes it)"

# The peers: runc 1.5, containerd 2.4, the kubelet, critest (built once, then cached).
PEERS_ENV=${CRIUS_PEERS_DIR:-/var/cache/crius/peers}/env
"$REPO/e2e/peers/build.sh" >&2 || log "some peers did not build (see above); their runs are skipped"
# shellcheck disable=SC1090
[ -f "$PEERS_ENV" ] && . "$PEERS_ENV"
RUNC15=${CRIUS_PEER_RUNC:-}
CONTAINERD24=${CRIUS_PEER_CONTAINERD:-}
CONTAINERD24_SHIM=${CRIUS_PEER_CONTAINERD_SHIM:-}
KUBELET=${CRIUS_PEER_KUBELET:-}
CRITEST=${CRITEST:-${CRIUS_PEER_CRITEST:-}}
peer_ok() { # RUN BINARY...
    local run=$1 bin
    shift
    for bin in "$@"; do
        if [ -z "$bin" ] || [ ! -x "$bin" ]; then
            log "skipping $run: peer binary ${bin:-(not built)} missing (e2e/peers/build.sh)"
            return 1
        fi
    done
}

if [ "$BUILD" = 1 ]; then
    log "building release binaries"
    (cd "$REPO" && cargo build --release -p crius -p crius-conmon -p crius-pause -p crius-runtime -p crius-bench)
fi
for bin in crius crius-conmon crius-pause crius-bench; do
    [ -x "$RELEASE/$bin" ] || die "$RELEASE/$bin missing: build it or drop --no-build"
done
BENCH=$RELEASE/crius-bench

# Everything the run makes, for cleanup.
WORK=$(mktemp -d /var/tmp/crius-bench.XXXXXX)
TAG=$$
CGROUP_PARENT=/crius-bench-$TAG
RULES=()
BRIDGES=()
DAEMON_PIDS=()
DAEMON_SOCKS=()
RUNC_ROOTS=()     # "RUNC_BINARY STATE_ROOT", for runc containers left behind
KUBELET_PID=
RUN_CONTAINERD_EXISTED=0
[ -e /run/containerd ] && RUN_CONTAINERD_EXISTED=1

# Subnet and bridge letter per run; no subnet may be routed already.
declare -A SUBNET=(
    [crius]=10.99.0.0/16 [containerd-1.6]=10.98.0.0/16
    [crius-runc15]=10.97.0.0/16 [containerd-2.4]=10.96.0.0/16
    [kubelet-crius]=10.95.0.0/16 [kubelet-containerd-2.4]=10.94.0.0/16
    [crius-builtin]=10.93.0.0/16 [crius-shim]=10.92.0.0/16 [kubelet-crius-builtin]=10.91.0.0/16
)
declare -A LETTER=(
    [crius]=a [containerd-1.6]=b [crius-runc15]=c [containerd-2.4]=d
    [kubelet-crius]=e [kubelet-containerd-2.4]=f [crius-builtin]=g [crius-shim]=h
    [kubelet-crius-builtin]=i
)
for name in $ALL_RUNS; do
    subnet=${SUBNET[$name]}
    if ip -4 route show | grep -q "^${subnet%%.0.0/16}\."; then
        die "subnet $subnet ($name) is already routed on this host; pick another in run.sh"
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

stop_pid() { # PID WHAT: SIGTERM, up to 15 s, then SIGKILL
    local pid=$1
    pid_alive "$pid" || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 150); do pid_alive "$pid" || break; sleep 0.1; done
    if pid_alive "$pid"; then
        log "$2 $pid ignored SIGTERM for 15 s; killing it"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

stop_daemon() { # PID SOCKET
    local pid=$1 sock=$2
    pid_alive "$pid" || return 0
    timeout 180 "$BENCH" cleanup --endpoint "unix://$sock" || log "pod cleanup via $sock failed"
    stop_pid "$pid" daemon
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

delete_runc_containers() { # RUNC_BINARY RUNC_ROOT
    local bin=$1 root=$2 id
    [ -d "$root" ] || return 0
    for id in $("$bin" --root "$root" list -q 2>/dev/null); do
        log "deleting leftover runc container $id in $root"
        "$bin" --root "$root" delete --force "$id" || true
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
    stop_pid "$KUBELET_PID" kubelet
    for i in "${!DAEMON_PIDS[@]}"; do
        stop_daemon "${DAEMON_PIDS[$i]}" "${DAEMON_SOCKS[$i]}"
    done
    for i in "${!RUNC_ROOTS[@]}"; do
        # shellcheck disable=SC2086
        delete_runc_containers ${RUNC_ROOTS[$i]}
    done
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
        # containerd puts shim sockets in /run/containerd/s whatever its config says.
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

# net NAME DIR: the run's CNI config in DIR/cni, its bridge and FORWARD drop rule.
net() {
    local name=$1 dir=$2 bridge=crb${LETTER[$1]}$TAG
    mkdir -p "$dir/cni"
    cat >"$dir/cni/10-bench.conflist" <<JSON
{
  "cniVersion": "1.0.0",
  "name": "bench-$name",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$bridge",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "${SUBNET[$name]}"}]],
        "dataDir": "$dir/ipam"
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}},
    {"type": "loopback"}
  ]
}
JSON
    iptables -I FORWARD -i "$bridge" ! -o "$bridge" -j DROP
    RULES+=("$bridge")
    BRIDGES+=("$bridge")
}

mkdir -p "$RESULTS"
RESULTS=$(cd "$RESULTS" && pwd)
log "temp dir $WORK, results in $RESULTS"

# Set by start_crius and start_containerd: the daemon just started.
PID=
SOCK=
LOGFILE=

# daemon_started WHAT: the daemon just put in the background is recorded for cleanup and
# waited for on $SOCK.
daemon_started() {
    PID=$!
    DAEMON_PIDS+=("$PID")
    DAEMON_SOCKS+=("$SOCK")
    "$BENCH" wait --endpoint "unix://$SOCK" --timeout 30 ||
        { tail -30 "$LOGFILE" >&2; die "$1 did not start"; }
}

# start_crius NAME DEFAULT_HANDLER: crius with the handler runc (runc 1.1.5) and, for the
# runs that use it, runc15 (runc 1.5).
start_crius() {
    local name=$1 handler=$2 c=$WORK/$1
    mkdir -p "$c/conf.d" "$c/logs"
    net "$name" "$c"
    {
        echo "[crius.network]"
        echo "cache_dir = \"$c/cni-cache\""
        echo "[crius.runtime]"
        echo "default_runtime = \"$handler\""
        echo "[crius.runtime.runtimes.runc]"
        echo "runtime_path = \"$RUNC\""
        if [ "$handler" = runc15 ] || [ "$name" = crius-runc15 ]; then
            echo "[crius.runtime.runtimes.runc15]"
            echo "runtime_path = \"$RUNC15\""
        fi
        if [ "$handler" = crius ]; then
            echo "[crius.runtime.runtimes.crius]"
            echo "runtime_path = \"$RELEASE/crius-runtime\""
        fi
        if [ "$name" = crius-shim ]; then
            echo "[crius.runtime.runtimes.shim]"
            echo "runtime_path = \"$CONTAINERD24_SHIM\""
            echo "runtime_type = \"vm\""
        fi
    } >"$c/crius.conf"
    # A vm handler's shim runs the `runc` it finds in its PATH: runc 1.5, as containerd
    # 2.4's shim runs it in the containerd-2.4 run.
    local path=$PATH
    if [ "$name" = crius-shim ]; then
        mkdir -p "$c/bin"
        ln -sf "$RUNC15" "$c/bin/runc"
        path=$c/bin:$PATH
    fi
    RUNC_ROOTS+=("$RUNC $c/run/runtimes/runc" "${RUNC15:-$RUNC} $c/run/runtimes/runc15"
        "$RELEASE/crius-runtime $c/run/runtimes/crius")
    SOCK=$c/run/crius.sock
    LOGFILE=$c/crius.log
    # crius syncs each unpacked layer (syncfs): start each daemon with no dirty pages
    # pending from earlier work on this disk, so none pays for them.
    sync
    log "starting crius for $name (default handler $handler)"
    PATH=$path "$RELEASE/crius" --config "$c/crius.conf" --config-dir "$c/conf.d" \
        --root "$c/root" --runroot "$c/run" --listen "unix://$SOCK" \
        --log-level "$CRIUS_LOG_LEVEL" --cgroup-manager cgroupfs \
        --cni-config-dir "$c/cni" --cni-plugin-dir "$CNI_BIN" \
        --registries-conf "$HERE/registries.conf" --insecure-registry "$REGISTRY" \
        --pause-image "$PAUSE_IMAGE" --stream-address 127.0.0.1 --stream-port 0 \
        </dev/null >"$LOGFILE" 2>&1 &
    daemon_started "crius ($name)"
}

# containerd_common DIR [PLUGIN...]: what both containerd versions' configs share: state
# under DIR, sockets in it, the plugins this host has no use for (and PLUGIN...) off.
containerd_common() {
    local d=$1 p
    shift
    echo "root = \"$d/root\""
    echo "state = \"$d/state\""
    echo "disabled_plugins = ["
    for p in io.containerd.snapshotter.v1.aufs io.containerd.snapshotter.v1.btrfs \
        io.containerd.snapshotter.v1.devmapper io.containerd.snapshotter.v1.zfs \
        io.containerd.tracing.processor.v1.otlp io.containerd.internal.v1.tracing "$@"; do
        echo "  \"$p\","
    done
    cat <<TOML
]

[grpc]
  address = "$d/containerd.sock"

[ttrpc]
  address = "$d/containerd.sock.ttrpc"

[debug]
  address = "$d/debug.sock"
  level = "info"

[plugins."io.containerd.internal.v1.opt"]
  path = "$d/opt"
TOML
}

# containerd 1.x (config version 2): registry mirrors in the CRI plugin's own tables.
containerd1_config() { # DIR RUNC
    local d=$1 runc=$2 mirrors="" reg
    for reg in registry.k8s.io docker.io public.ecr.aws "$REGISTRY"; do
        mirrors+="
[plugins.\"io.containerd.grpc.v1.cri\".registry.mirrors.\"$reg\"]
  endpoint = [\"http://$REGISTRY\"]"
    done
    cat <<TOML
version = 2
$(containerd_common "$d")

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
  BinaryName = "$runc"
  Root = "$d/runc"
  SystemdCgroup = false

[plugins."io.containerd.grpc.v1.cri".cni]
  bin_dir = "$CNI_BIN"
  conf_dir = "$d/cni"
  max_conf_num = 1
$mirrors
TOML
}

# containerd 2.x (config version 3; 2.4 reads it as is, its own default is version 4 with
# the same CRI tables): the CRI plugin is split into io.containerd.cri.v1.images (pulls, the
# pause image, registry hosts as hosts.toml dirs under config_path, also for the transfer
# service) and io.containerd.cri.v1.runtime (runtimes, CNI); io.containerd.grpc.v1.cri
# keeps the stream server. Nothing outside the run's dir: no imports
# (/etc/containerd/conf.d), NRI off (its socket is /var/run/nri/nri.sock), the image
# verifier off (/opt/containerd), CDI specs (always on) read from the run's dir.
containerd2_config() { # DIR RUNC SHIM
    local d=$1 runc=$2 shim=$3 reg
    for reg in registry.k8s.io docker.io public.ecr.aws "$REGISTRY"; do
        mkdir -p "$d/certs.d/$reg"
        cat >"$d/certs.d/$reg/hosts.toml" <<TOML
server = "http://$REGISTRY"

[host."http://$REGISTRY"]
  capabilities = ["pull", "resolve"]
TOML
    done
    cat <<TOML
version = 3
imports = []
$(containerd_common "$d" io.containerd.nri.v1.nri io.containerd.image-verifier.v1.bindir)

[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"

[plugins.'io.containerd.cri.v1.images'.pinned_images]
  sandbox = "$PAUSE_IMAGE"

[plugins.'io.containerd.cri.v1.images'.registry]
  config_path = "$d/certs.d"

[plugins.'io.containerd.transfer.v1.local']
  config_path = "$d/certs.d"

[plugins.'io.containerd.cri.v1.runtime']
  restrict_oom_score_adj = true
  disable_apparmor = true
  netns_mounts_under_state_dir = true
  cdi_spec_dirs = ["$d/cdi"]

[plugins.'io.containerd.cri.v1.runtime'.containerd]
  default_runtime_name = "runc"

[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
  runtime_path = "$shim"

[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
  BinaryName = "$runc"
  Root = "$d/runc"
  SystemdCgroup = false

[plugins.'io.containerd.cri.v1.runtime'.cni]
  bin_dirs = ["$CNI_BIN"]
  conf_dir = "$d/cni"
  max_conf_num = 1

[plugins.'io.containerd.grpc.v1.cri']
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
TOML
}

# start_containerd NAME BINARY RUNC SHIM: containerd with its CRI plugin; the shim's dir
# comes first in its PATH, so it starts that shim.
start_containerd() {
    local name=$1 bin=$2 runc=$3 shim=$4 d=$WORK/$1 version
    mkdir -p "$d/logs"
    net "$name" "$d"
    version=$("$bin" --version | awk '{ print $3 }')
    case "$version" in
        v1.*|1.*) containerd1_config "$d" "$runc" >"$d/config.toml" ;;
        *) containerd2_config "$d" "$runc" "$shim" >"$d/config.toml" ;;
    esac
    RUNC_ROOTS+=("$runc $d/runc/k8s.io")
    SOCK=$d/containerd.sock
    LOGFILE=$d/containerd.log
    sync
    log "starting containerd $version for $name"
    PATH="$(dirname "$shim"):$PATH" "$bin" --config "$d/config.toml" </dev/null >"$LOGFILE" 2>&1 &
    daemon_started "containerd ($name)"
}

# finish NAME: the daemon's pods removed, the daemon stopped, its log kept.
finish() {
    stop_daemon "$PID" "$SOCK"
    cp "$LOGFILE" "$RESULTS/$1-daemon.log"
}

run_critest() { # NAME SOCKET [HANDLER]
    [ "$CRITEST_ON" = 1 ] || return 0
    if [ -z "$CRITEST" ] || [ ! -x "$CRITEST" ]; then
        log "no critest (e2e/peers/build.sh): skipping critest -benchmark"
        return 0
    fi
    if [ ! -f "$CRITEST_PARAMS" ]; then
        log "no $CRITEST_PARAMS: skipping critest -benchmark"
        return 0
    fi
    local handler=()
    [ -n "${3:-}" ] && handler=(--runtime-handler "$3")
    rm -rf "$RESULTS/critest-$1"
    mkdir -p "$RESULTS/critest-$1"
    log "critest -benchmark against $1"
    run_child timeout 900 "$CRITEST" -benchmark \
        --runtime-endpoint "unix://$2" --image-endpoint "unix://$2" "${handler[@]}" \
        --benchmarking-params-file "$CRITEST_PARAMS" \
        --benchmarking-output-dir "$RESULTS/critest-$1" \
        >"$RESULTS/critest-$1.log" 2>&1 ||
        log "critest -benchmark against $1 failed; see $RESULTS/critest-$1.log"
}

# bench NAME MONITOR_EXE [HANDLER]: the CRI series against the daemon just started, then
# critest's benchmarks.
bench() {
    local name=$1 monitor=$2 handler=${3:-}
    run_child "$BENCH" run --name "$name" --endpoint "unix://$SOCK" --daemon-pid "$PID" \
        --monitor-exe "$monitor" --process-match "$WORK/$name/" --work-dir "$WORK/$name/logs" \
        --cgroup-parent "$CGROUP_PARENT" --pause "$PAUSE_IMAGE" --runtime-handler "$handler" \
        --out "$RESULTS/$name.json" "${BENCH_SIZE[@]}" ||
        log "some $name series failed (see above and $LOGFILE)"
    run_critest "$name" "$SOCK" "$handler"
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# The kernel tunables the kubelet checks at start, with the values it wants. It runs in a
# mount namespace of its own where each is a file of the run bound over /proc/sys/..., and
# with protectKernelDefaults it only checks them: the host's sysctls stay as they are.
KERNEL_TUNABLES="vm/overcommit_memory=1 vm/panic_on_oom=0 kernel/panic=10 kernel/panic_on_oops=1 kernel/keys/root_maxkeys=1000000 kernel/keys/root_maxbytes=25000000"

# kubelet NAME: the peer kubelet, standalone (static pods, no API server), against the
# daemon just started; the same config for every daemon but its socket and dirs. As the
# e2e harness (e2e/src/kubelet.rs) runs it: in a mount namespace with its own /var/log (its
# /var/log/containers links) and kernel tunables, without its iptables chains
# (makeIPTablesUtilChains: false), at this shell's oom_score_adj (no CAP_SYS_RESOURCE to
# lower it).
kubelet() {
    local name=$1 k=$WORK/$1/kubelet ro port healthz h kv file binds=""
    mkdir -p "$k/manifests" "$k/root" "$k/pod-logs" "$k/ns/var-log"
    for kv in $KERNEL_TUNABLES; do
        file=$k/ns/$(echo "${kv%%=*}" | tr / .)
        echo "${kv#*=}" >"$file"
        binds+="mount --bind $file /proc/sys/${kv%%=*} && "
    done
    ro=$(free_port)
    port=$(free_port)
    healthz=$(free_port)
    # The kubelet wants its cgroup root in every hierarchy before it starts.
    for h in /sys/fs/cgroup/*/; do
        mkdir -p "$h${CGROUP_PARENT#/}/$name"
    done
    cat >"$k/config.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
containerRuntimeEndpoint: unix://$SOCK
imageServiceEndpoint: unix://$SOCK
staticPodPath: $k/manifests
podLogsDir: $k/pod-logs
volumePluginDir: $k/volume-plugins
address: 127.0.0.1
port: $port
readOnlyPort: $ro
healthzBindAddress: 127.0.0.1
healthzPort: $healthz
authentication:
  anonymous: {enabled: true}
  webhook: {enabled: false}
authorization: {mode: AlwaysAllow}
cgroupDriver: cgroupfs
cgroupRoot: $CGROUP_PARENT/$name
failCgroupV1: false
failSwapOn: false
protectKernelDefaults: true
makeIPTablesUtilChains: false
oomScoreAdj: $(cat /proc/self/oom_score_adj)
syncFrequency: 10s
fileCheckFrequency: 5s
serializeImagePulls: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "0%", nodefs.available: "0%", nodefs.inodesFree: "0%", imagefs.available: "0%", imagefs.inodesFree: "0%"}
YAML
    log "starting the kubelet for $name (read-only port $ro)"
    # shellcheck disable=SC2016
    unshare --mount --propagation private -- sh -c \
        "${binds}mount --bind \"\$1\" /var/log && shift && exec \"\$@\"" kubelet-ns "$k/ns/var-log" \
        "$KUBELET" --config "$k/config.yaml" --root-dir "$k/root" \
        --hostname-override "node-$name" --v 2 </dev/null >"$k/kubelet.log" 2>&1 &
    KUBELET_PID=$!
    run_child "$BENCH" kubelet --name "$name" --endpoint "unix://$SOCK" --node-name "node-$name" \
        --manifest-dir "$k/manifests" --read-only-port "$ro" --pods "$KUBELET_PODS" \
        --out "$RESULTS/$name.json" ||
        { log "the kubelet series against $name failed; its log's last lines:"; tail -20 "$k/kubelet.log" >&2; }
    stop_pid "$KUBELET_PID" kubelet
    KUBELET_PID=
    cp "$k/kubelet.log" "$RESULTS/$name-kubelet.log"
}

# --- the floor: plain tar on the same layers, same disk --------------------------------
log "timing the tar floor"
run_child "$BENCH" floor --work-dir "$WORK/floor" --out "$RESULTS/floor.json" --runs "$FLOOR_RUNS"

# --- the CRI series, one daemon at a time -----------------------------------------------
if wanted crius; then
    start_crius crius runc
    bench crius crius-conmon
    finish crius
fi
if wanted containerd-1.6; then
    start_containerd containerd-1.6 "$CONTAINERD" "$RUNC" /usr/bin/containerd-shim-runc-v2
    bench containerd-1.6 containerd-shim-runc-v2
    finish containerd-1.6
fi
if wanted crius-runc15 && peer_ok crius-runc15 "$RUNC15"; then
    start_crius crius-runc15 runc
    bench crius-runc15 crius-conmon runc15
    finish crius-runc15
fi
if wanted containerd-2.4 && peer_ok containerd-2.4 "$CONTAINERD24" "$CONTAINERD24_SHIM" "$RUNC15"; then
    start_containerd containerd-2.4 "$CONTAINERD24" "$RUNC15" "$CONTAINERD24_SHIM"
    bench containerd-2.4 containerd-shim-runc-v2
    finish containerd-2.4
fi

if wanted crius-builtin; then
    start_crius crius-builtin crius
    bench crius-builtin crius-conmon crius
    finish crius-builtin
fi
# A vm handler on containerd 2.4's shim (which runs runc 1.5): the shim v2 protocol from
# crius, against crius-runc15 (runc 1.5 under crius-conmon) and containerd-2.4 (that shim).
if wanted crius-shim && peer_ok crius-shim "$CONTAINERD24_SHIM" "$RUNC15"; then
    start_crius crius-shim shim
    bench crius-shim containerd-shim-runc-v2 shim
    finish crius-shim
fi

# --- the kubelet's view: one kubelet binary and config, runc 1.5 under both --------------
if wanted kubelet-crius && peer_ok kubelet-crius "$KUBELET" "$RUNC15"; then
    start_crius kubelet-crius runc15
    kubelet kubelet-crius
    finish kubelet-crius
fi
if wanted kubelet-containerd-2.4 &&
    peer_ok kubelet-containerd-2.4 "$KUBELET" "$CONTAINERD24" "$CONTAINERD24_SHIM" "$RUNC15"; then
    start_containerd kubelet-containerd-2.4 "$CONTAINERD24" "$RUNC15" "$CONTAINERD24_SHIM"
    kubelet kubelet-containerd-2.4
    finish kubelet-containerd-2.4
fi
# The same kubelet over crius with its default handler, crius-runtime.
if wanted kubelet-crius-builtin && peer_ok kubelet-crius-builtin "$KUBELET"; then
    start_crius kubelet-crius-builtin crius
    kubelet kubelet-crius-builtin
    finish kubelet-crius-builtin
fi

# --- the comparison --------------------------------------------------------------------
echo
"$BENCH" report --results "$RESULTS" \
    --table crius:containerd-1.6,crius-runc15:containerd-2.4,crius-builtin:containerd-2.4 \
    --table crius-shim:crius-runc15,crius-shim:containerd-2.4 \
    --table kubelet-crius:kubelet-containerd-2.4,kubelet-crius-builtin:kubelet-containerd-2.4 ||
    log "nothing to compare (a side of every pair is missing); see $RESULTS/*.json"
if /usr/bin/python3 -c 'import matplotlib' 2>/dev/null; then
    if [ -f "$RESULTS/summary.json" ]; then
        /usr/bin/python3 "$HERE/plot.py" "$RESULTS/summary.json" "$RESULTS/bench.png" >&2
    fi
else
    log "no python3-matplotlib: no plot (apt install python3-matplotlib)"
fi
log "results in $RESULTS"
