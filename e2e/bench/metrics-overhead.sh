#!/bin/bash
# Pod start latency (crictl run: RunPodSandbox + CreateContainer + StartContainer, host
# network) with metrics (`metrics-overhead.sh`, or `metrics-overhead.sh metrics`) or span
# export (`metrics-overhead.sh tracing`: every trace sampled, sent to crius-bench's OTLP
# collector on 127.0.0.1) on and off, N pods each (N=20), one daemon at a time, two
# alternating rounds. Needs root, e2e/fixtures/setup.sh and e2e/peers/build.sh (crictl).
# Not run by CI.
set -euo pipefail
TOP=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${CRIUS_BIN:-$TOP/target/debug/crius}
WHAT=${1:-metrics}
. /var/cache/crius/peers/env
CRICTL=$CRIUS_PEER_CRICTL
N=${N:-20}
REG=127.0.0.1:5000
base=/var/tmp/crius-bench-ops-$$
mkdir -p $base
cleanup() {
  [ -n "${pid:-}" ] && kill -TERM $pid 2>/dev/null
  [ -n "${collector:-}" ] && kill -TERM $collector 2>/dev/null
  wait 2>/dev/null || true
}
trap cleanup EXIT
case $WHAT in
  metrics) on_args=(--enable-metrics --metrics-port 0) ;;
  tracing)
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    ${CRIUS_BENCH_BIN:-$(dirname "$BIN")/crius-bench} otlp-collector --port $port &
    collector=$!
    on_args=(--enable-tracing --tracing-endpoint 127.0.0.1:$port --tracing-sampling-rate-per-million 1000000) ;;
  *) echo "usage: $0 [metrics|tracing]" >&2; exit 2 ;;
esac
run_mode() { # mode round
  local mode=$1 round=$2 dir=$base/$1-$2
  mkdir -p $dir/cni $dir/logs
  local extra=()
  [ $mode = on ] && extra=("${on_args[@]}")
  $BIN --config /dev/null --config-dir $dir/none --root $dir/root --runroot $dir/run --listen $dir/c.sock \
    --cni-config-dir $dir/cni --insecure-registry $REG --pause-image $REG/crius-test/pause:latest \
    --log-level warn "${extra[@]}" 2>$dir/log &
  pid=$!
  for _ in $(seq 100); do [ -S $dir/c.sock ] && break; sleep 0.1; done
  local C="$CRICTL --runtime-endpoint unix://$dir/c.sock --image-endpoint unix://$dir/c.sock -t 60s"
  $C pull $REG/crius-test/busybox:latest >/dev/null
  $C pull $REG/crius-test/pause:latest >/dev/null
  for i in $(seq $N); do
    cat > $dir/pod.json <<J
{"metadata":{"name":"b$i","namespace":"bench","uid":"u-$mode-$round-$i","attempt":0},"log_directory":"$dir/logs/$i","linux":{"security_context":{"namespace_options":{"network":2}}}}
J
    cat > $dir/ctr.json <<J
{"metadata":{"name":"c"},"image":{"image":"$REG/crius-test/busybox:latest"},"command":["sleep","3600"],"log_path":"c.log"}
J
    s=$(date +%s%N); $C run $dir/ctr.json $dir/pod.json >/dev/null; e=$(date +%s%N)
    echo "$mode $(( (e-s)/1000 ))" >> $base/samples
  done
  $C rmp -fa >/dev/null 2>&1 || true
  kill -TERM $pid; wait $pid || true; pid=
}
for round in 1 2; do run_mode off $round; run_mode on $round; done
python3 - $base/samples "$WHAT on vs off" <<'P'
import sys,statistics
d={}
for l in open(sys.argv[1]):
    m,v=l.split(); d.setdefault(m,[]).append(int(v)/1000)
print(sys.argv[2])
for m in ("off","on"):
    v=sorted(d[m]); print(m, "n=%d median=%.1f ms p90=%.1f ms"%(len(v),statistics.median(v),v[int(len(v)*0.9)-1]))
print("ratio on/off median: %.3f"%(statistics.median(d["on"])/statistics.median(d["off"])))
P
rm -rf $base
