//! Pod and container stats and metrics read from the kernel: a pod under a systemd-style
//! slice parent, swap where the kernel accounts it, and the CRI metrics RPCs.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use crius_e2e::cri;

/// A v1 controller's dir for a cgroup path.
fn v1_dir(controller: &str, path: &str) -> PathBuf {
    Path::new("/sys/fs/cgroup")
        .join(controller)
        .join(path.trim_start_matches('/'))
}

fn read_u64(path: &Path) -> u64 {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .trim()
        .parse()
        .unwrap()
}

fn memory_stat(dir: &Path, key: &str) -> Option<u64> {
    std::fs::read_to_string(dir.join("memory.stat"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key} "))?.trim().parse().ok())
}

#[tokio::test]
async fn a_pod_under_a_slice_parent_has_real_stats_and_swap_is_reported_where_accounted() {
    let daemon = bridge_daemon().await;
    let (mut rt, mut images) = clients(&daemon).await;
    pull(&mut images, &busybox()).await;
    let mut config = pod_config(&daemon, "sliced");
    let uid = config.metadata.as_ref().unwrap().uid.replace('-', "_");
    // The kubelet's systemd-style layout, as a cgroupfs path under the test's cgroup.
    let parent = format!(
        "{}/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{uid}.slice",
        daemon.cgroup_parent
    );
    config.linux.as_mut().unwrap().cgroup_parent = parent.clone();
    let pod = run_pod(&mut rt, &config).await;
    // Some CPU, then idle.
    let ctr = run_container(
        &mut rt,
        &pod,
        &config,
        shell(
            "worker",
            "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; touch /tmp/ready; sleep 3600",
        ),
    )
    .await;
    eventually("the worker is ready", Duration::from_secs(30), || {
        let mut rt = rt.clone();
        let ctr = ctr.clone();
        async move {
            try_exec(&mut rt, &ctr, &["test", "-e", "/tmp/ready"], 10)
                .await
                .ok()
                .filter(|r| r.exit_code == 0)
        }
    })
    .await;

    let stats = rt
        .pod_sandbox_stats(cri::PodSandboxStatsRequest {
            pod_sandbox_id: pod.clone(),
        })
        .await
        .expect("PodSandboxStats")
        .into_inner()
        .stats
        .unwrap()
        .linux
        .unwrap();
    let memory_dir = v1_dir("memory", &parent);
    let kernel_usage = read_u64(&memory_dir.join("memory.usage_in_bytes"));
    let usage = stats.memory.unwrap().usage_bytes.unwrap().value;
    assert!(
        usage > 0 && usage.abs_diff(kernel_usage) < 2_000_000,
        "pod memory {usage}, the slice's memory.usage_in_bytes {kernel_usage}"
    );
    let cpu = stats.cpu.unwrap().usage_core_nano_seconds.unwrap().value;
    let kernel_cpu = read_u64(&v1_dir("cpuacct", &parent).join("cpuacct.usage"));
    assert!(
        cpu > 0 && cpu <= kernel_cpu,
        "pod cpu {cpu} ns, the slice's {kernel_cpu}"
    );
    // The pause process and the worker (its shell execs the last command).
    let processes = stats.process.unwrap().process_count.unwrap().value;
    let kernel_pids = read_u64(&v1_dir("pids", &parent).join("pids.current"));
    assert!(
        processes >= 2 && processes == kernel_pids,
        "{processes} processes, pids.current {kernel_pids}"
    );

    // Swap: in ContainerStats where the kernel accounts it (memory.memsw.* with v1).
    let c = rt
        .container_stats(cri::ContainerStatsRequest {
            container_id: ctr.clone(),
        })
        .await
        .expect("ContainerStats")
        .into_inner()
        .stats
        .unwrap();
    let ctr_dir = v1_dir("memory", &format!("{parent}/crius-{ctr}"));
    match memory_stat(&ctr_dir, "total_swap") {
        Some(swapped) => {
            let swap = c.swap.expect("swap usage where the kernel accounts swap");
            assert_eq!(swap.swap_usage_bytes.map(|v| v.value), Some(swapped));
            assert!(swap.timestamp > 0);
        }
        None => assert!(c.swap.is_none(), "swap reported without accounting: {c:?}"),
    }
    remove_pod(&mut rt, &pod).await;
    assert_nothing_left(&daemon, &mut rt).await;
}
