//! The harness's promise: a test daemon dropped with pods and containers still running
//! (as when a test fails half-way) leaves nothing on the host.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use crius_e2e::cgroup_pids;

fn alive(pid: u32) -> bool {
    // A zombie has no cmdline left to speak of; count only live processes.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit(')').next().map(|rest| rest.trim().to_string()))
        .is_some_and(|rest| !rest.starts_with('Z'))
}

#[tokio::test]
async fn a_dropped_daemon_takes_its_pods_mounts_cgroups_and_bridge_along() {
    let daemon = bridge_daemon().await;
    let (mut rt, mut images) = clients(&daemon).await;
    pull(&mut images, &busybox()).await;
    let cfg = pod_config(&daemon, "left-behind");
    let pod = run_pod(&mut rt, &cfg).await;
    run_container(&mut rt, &pod, &cfg, sleeper()).await;

    let dir = daemon.dir.clone();
    let cgroups = cgroup_dirs(&daemon.cgroup_parent);
    let bridge = daemon.bridge.as_ref().expect("bridge").name.clone();
    let pids: Vec<u32> = cgroups.iter().flat_map(|d| cgroup_pids(d)).collect();
    assert!(
        pids.len() >= 2,
        "pause and sleeper should run in {cgroups:?}: {pids:?}"
    );
    assert!(!crius::mounts::mounts_under(&dir).unwrap().is_empty());
    assert!(Path::new("/sys/class/net").join(&bridge).exists());

    // As when a test panics: the pod is neither stopped nor removed.
    drop(rt);
    drop(images);
    drop(daemon);

    assert!(!dir.exists(), "{} left behind", dir.display());
    assert_eq!(
        crius::mounts::mounts_under(&dir).unwrap(),
        Vec::<PathBuf>::new()
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while pids.iter().any(|&p| alive(p)) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let survivors: Vec<u32> = pids.iter().copied().filter(|&p| alive(p)).collect();
    assert!(
        survivors.is_empty(),
        "processes left running: {survivors:?}"
    );
    for cgroup in &cgroups {
        assert!(!cgroup.exists(), "cgroup {} left behind", cgroup.display());
    }
    assert!(
        !Path::new("/sys/class/net").join(&bridge).exists(),
        "bridge {bridge} left behind"
    );
    let rule = std::process::Command::new("iptables")
        .args([
            "-C", "FORWARD", "-i", &bridge, "!", "-o", &bridge, "-j", "DROP",
        ])
        .output()
        .unwrap();
    assert!(
        !rule.status.success(),
        "FORWARD rule for {bridge} left behind"
    );
}
