//! The peers: the real Go programs (kubelet, crictl, critest, runc, containerd) that
//! `e2e/peers/build.sh` builds, pinned, into a cache and names in its env file. A test that
//! needs one finds it here; when it is missing the test is skipped on a developer's machine
//! and fails in CI (`CI=true`), so a CI run never passes without it.

use std::fs;
use std::path::PathBuf;

/// Where `e2e/peers/build.sh` writes `CRIUS_PEER_<NAME>=PATH` lines (under
/// `$CRIUS_PEERS_DIR`, default `/var/cache/crius/peers`).
pub fn peers_env_file() -> PathBuf {
    let dir = std::env::var_os("CRIUS_PEERS_DIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/crius/peers"));
    dir.join("env")
}

/// The binary of peer `name` (`KUBELET`, `CRICTL`, ...): `$CRIUS_PEER_<NAME>`, else the
/// line of the peers' env file; `None` when neither names an existing file.
pub fn peer(name: &str) -> Option<PathBuf> {
    let key = format!("CRIUS_PEER_{name}");
    let from_env = std::env::var_os(&key)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from);
    let path = from_env.or_else(|| {
        let text = fs::read_to_string(peers_env_file()).ok()?;
        text.lines()
            .filter_map(|line| line.split_once('='))
            .find(|(k, _)| k.trim() == key)
            .map(|(_, v)| PathBuf::from(v.trim()))
    })?;
    path.is_file().then_some(path)
}

/// Whether this run is CI's (`CI` set to anything but empty, `0` or `false`).
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// The peer for `test`, or `None` after saying that `test` was skipped for it. In CI a
/// missing peer fails the test instead.
pub fn peer_or_skip(name: &str, test: &str) -> Option<PathBuf> {
    if let Some(path) = peer(name) {
        return Some(path);
    }
    let why = format!(
        "peer CRIUS_PEER_{name} is not built (neither in the environment nor in {}); run e2e/peers/build.sh",
        peers_env_file().display()
    );
    if in_ci() {
        panic!("{test}: {why}; CI needs every peer");
    }
    eprintln!("SKIPPED {test}: {why}");
    None
}
