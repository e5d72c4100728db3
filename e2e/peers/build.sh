#!/bin/bash
# Builds the peers crius is tested and measured beside, from the Go module proxy, pinned in
# e2e/peers/versions, into a cache that later runs reuse:
#
#   e2e/peers/build.sh [PEER...]        # PEER: cri-tools kubernetes runc containerd (default: all)
#
#   cri-tools   critest, crictl
#   kubernetes  kubelet
#   runc        runc (with libseccomp)
#   containerd  containerd (CRI plugin built in), containerd-shim-runc-v2, ctr
#
# Each peer is built once per version into $CRIUS_PEERS_DIR/<peer>-<version>/bin (default
# /var/cache/crius/peers); a directory with its .complete mark is reused as it is. Module
# downloads and Go's build cache live where Go keeps them (GOMODCACHE, GOCACHE), so a rebuild
# after a version change fetches only what changed. The script writes $CRIUS_PEERS_DIR/env,
# one CRIUS_PEER_<NAME>=PATH line per binary built or found; e2e/run-all.sh reads it.
#
# A peer that fails to build is named with the module, version and the last lines of the Go
# command's output; the script goes on with the others and exits 1 at the end.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
VERSIONS=$HERE/versions
PEERS_DIR=${CRIUS_PEERS_DIR:-/var/cache/crius/peers}
ENV_FILE=$PEERS_DIR/env

say() { echo "peers: $*"; }
die() { echo "peers: error: $*" >&2; exit 1; }

command -v go >/dev/null || die "no go in PATH: the peers are built with the Go toolchain (Go 1.26)"
# The machine's own Go builds; never download another toolchain on our behalf.
export GOTOOLCHAIN=local GOFLAGS="-mod=mod -buildvcs=false" GO111MODULE=on

# version_of NAME -> "MODULE VERSION"
version_of() {
  awk -v n="$1" '$1 == n { print $2, $3; found = 1 } END { exit !found }' "$VERSIONS" ||
    die "no line for $1 in $VERSIONS"
}

# A scratch module that requires MODULE@VERSION, in which `go build MODULE/cmd/...` resolves
# every dependency as the peer's own go.mod pins it. Extra go.mod lines come on stdin.
scratch_module() { # DIR MODULE VERSION
  local dir=$1 module=$2 version=$3
  rm -rf "$dir"
  mkdir -p "$dir"
  {
    echo "module crius.test/peer-build"
    echo
    echo "go $(go env GOVERSION | sed 's/^go//')"
    echo
    echo "require $module $version"
    cat
  } >"$dir/go.mod"
}

# go_in DIR ARGS... runs go in DIR, its output into DIR/build.log; on failure the log's tail.
go_in() {
  local dir=$1
  shift
  if ! (cd "$dir" && go "$@") >>"$dir/build.log" 2>&1; then
    echo "peers: go $* failed in $dir; last lines of $dir/build.log:" >&2
    tail -n 25 "$dir/build.log" >&2
    return 1
  fi
}

build_cri_tools() { # OUT MODULE VERSION
  local out=$1 module=$2 version=$3 work=$1/work
  local ldflags="-s -w -X $module/pkg/version.Version=${version#v}"
  scratch_module "$work" "$module" "$version" </dev/null
  go_in "$work" mod download "$module" &&
    go_in "$work" get "$module/cmd/crictl" "$module/cmd/critest" &&
    go_in "$work" build -trimpath -ldflags "$ldflags" -o "$out/bin/crictl" "$module/cmd/crictl" &&
    # critest is a Ginkgo suite: its binary is the test binary of cmd/critest.
    go_in "$work" test -c -trimpath -ldflags "$ldflags" -o "$out/bin/critest" "$module/cmd/critest"
}

build_kubernetes() { # OUT MODULE VERSION
  local out=$1 module=$2 version=$3 work=$1/work staging
  # k8s.io/kubernetes requires its staging modules (k8s.io/api, k8s.io/client-go, ...) at
  # v0.0.0 and replaces them with directories of its own tree; outside that tree each is
  # the published module of the same minor: v1.37.2 -> v0.37.2.
  local staging_version="v0.${version#v1.}"
  staging=$(curl -fsS -m 60 "$(go env GOPROXY | cut -d, -f1)/$module/@v/$version.mod" |
    awk '$1 ~ /^k8s\.io\// && $2 == "v0.0.0" { print $1 }' | sort -u) ||
    { echo "peers: cannot read the go.mod of $module@$version from the module proxy" >&2; return 1; }
  [ -n "$staging" ] || { echo "peers: $module@$version names no staging modules" >&2; return 1; }
  scratch_module "$work" "$module" "$version" < <(
    echo
    for m in $staging; do echo "replace $m => $m $staging_version"; done
  )
  local pkg=k8s.io/component-base/version
  local ldflags="-s -w -X $pkg.gitVersion=$version -X $pkg.gitMajor=1"
  ldflags="$ldflags -X $pkg.gitMinor=$(echo "$version" | cut -d. -f2) -X $pkg.gitTreeState=clean"
  go_in "$work" get "$module/cmd/kubelet" &&
    go_in "$work" build -trimpath -ldflags "$ldflags" -o "$out/bin/kubelet" "$module/cmd/kubelet"
}

build_runc() { # OUT MODULE VERSION
  local out=$1 module=$2 version=$3 work=$1/work
  pkg-config --exists libseccomp ||
    { echo "peers: runc needs libseccomp-dev and pkg-config (apt-get install libseccomp-dev pkg-config)" >&2; return 1; }
  scratch_module "$work" "$module" "$version" </dev/null
  go_in "$work" get "$module" &&
    CGO_ENABLED=1 go_in "$work" build -trimpath -tags seccomp \
      -ldflags "-s -w -X main.version=${version#v}" -o "$out/bin/runc" "$module"
}

build_containerd() { # OUT MODULE VERSION
  local out=$1 module=$2 version=$3 work=$1/work
  local ldflags="-s -w -X $module/version.Version=$version"
  scratch_module "$work" "$module" "$version" </dev/null
  go_in "$work" get "$module/cmd/containerd" "$module/cmd/containerd-shim-runc-v2" "$module/cmd/ctr" || return 1
  local cmd
  for cmd in containerd containerd-shim-runc-v2 ctr; do
    # The shim is static, as upstream ships it: it runs in whatever mount namespace it is in.
    if [ "$cmd" = containerd-shim-runc-v2 ]; then
      CGO_ENABLED=0 go_in "$work" build -trimpath -ldflags "$ldflags" -o "$out/bin/$cmd" "$module/cmd/$cmd" || return 1
    else
      go_in "$work" build -trimpath -ldflags "$ldflags" -o "$out/bin/$cmd" "$module/cmd/$cmd" || return 1
    fi
  done
}

# The binaries of each peer, as "ENV_NAME:FILE" pairs.
binaries_of() {
  case $1 in
    cri-tools) echo "CRIUS_PEER_CRITEST:critest CRIUS_PEER_CRICTL:crictl" ;;
    kubernetes) echo "CRIUS_PEER_KUBELET:kubelet" ;;
    runc) echo "CRIUS_PEER_RUNC:runc" ;;
    containerd) echo "CRIUS_PEER_CONTAINERD:containerd CRIUS_PEER_CONTAINERD_SHIM:containerd-shim-runc-v2 CRIUS_PEER_CTR:ctr" ;;
    *) die "unknown peer $1 (known: cri-tools kubernetes runc containerd)" ;;
  esac
}

peers=("$@")
[ ${#peers[@]} -gt 0 ] || mapfile -t peers < <(awk '!/^#/ && NF == 3 { print $1 }' "$VERSIONS")
mkdir -p "$PEERS_DIR"
# One build at a time per cache: a second caller waits, then finds the peers built.
exec 9>"$PEERS_DIR/.lock"
flock 9

failed=()
for peer in "${peers[@]}"; do
  read -r module version < <(version_of "$peer")
  out=$PEERS_DIR/$peer-$version
  if [ -f "$out/.complete" ]; then
    say "$peer $version: cached in $out"
    continue
  fi
  say "$peer: building $module@$version into $out"
  started=$(date +%s)
  rm -rf "$out"
  mkdir -p "$out/bin"
  if "build_${peer//-/_}" "$out" "$module" "$version"; then
    rm -rf "$out/work"
    date -u +%FT%TZ >"$out/.complete"
    say "$peer $version: built in $(($(date +%s) - started)) s"
  else
    echo "peers: error: $peer: building $module@$version failed (log: $out/work/build.log)" >&2
    failed+=("$peer")
  fi
done

# The env file names every binary of every complete peer of the pinned versions.
tmp=$(mktemp "$PEERS_DIR/env.XXXXXX")
while read -r peer module version; do
  out=$PEERS_DIR/$peer-$version
  [ -f "$out/.complete" ] || continue
  for pair in $(binaries_of "$peer"); do
    echo "${pair%%:*}=$out/bin/${pair#*:}"
  done
  echo "CRIUS_PEER_$(echo "${peer//-/_}" | tr '[:lower:]' '[:upper:]')_VERSION=$version"
done < <(awk '!/^#/ && NF == 3' "$VERSIONS") >"$tmp"
mv "$tmp" "$ENV_FILE"
say "wrote $ENV_FILE"

if [ ${#failed[@]} -gt 0 ]; then
  die "failed to build: ${failed[*]}"
fi
