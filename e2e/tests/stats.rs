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

/// Waits until the container has made /tmp/ready.
async fn wait_ready_file(rt: &Runtime, ctr: &str) {
    eventually("the worker is ready", Duration::from_secs(30), || {
        let mut rt = rt.clone();
        let ctr = ctr.to_string();
        async move {
            try_exec(&mut rt, &ctr, &["test", "-e", "/tmp/ready"], 10)
                .await
                .ok()
                .filter(|r| r.exit_code == 0)
        }
    })
    .await;
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
    wait_ready_file(&rt, &ctr).await;

    let stats = pod_linux_stats(&mut rt, &pod).await;
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
    // The worker (its shell execs the last command), and the pause process if the pod
    // has one (not with drop_infra_ctr).
    let pause = u64::from(pod_info(&mut rt, &pod).await["infraContainer"] == true);
    let processes = stats.process.unwrap().process_count.unwrap().value;
    let kernel_pids = read_u64(&v1_dir("pids", &parent).join("pids.current"));
    assert!(
        processes > pause && processes == kernel_pids,
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

/// Every metric of one pod: the pod's own (network) and its containers'.
fn pod_metrics_of(all: &[cri::PodSandboxMetrics], pod: &str) -> Vec<cri::Metric> {
    let p = all
        .iter()
        .find(|p| p.pod_sandbox_id == pod)
        .unwrap_or_else(|| panic!("no metrics for pod {pod}"));
    p.metrics
        .iter()
        .chain(p.container_metrics.iter().flat_map(|c| c.metrics.iter()))
        .cloned()
        .collect()
}

async fn list_metrics(rt: &mut Runtime) -> Vec<cri::PodSandboxMetrics> {
    rt.list_pod_sandbox_metrics(cri::ListPodSandboxMetricsRequest {})
        .await
        .expect("ListPodSandboxMetrics")
        .into_inner()
        .pod_metrics
}

async fn list_descriptors(rt: &mut Runtime) -> Vec<cri::MetricDescriptor> {
    rt.list_metric_descriptors(cri::ListMetricDescriptorsRequest {})
        .await
        .expect("ListMetricDescriptors")
        .into_inner()
        .descriptors
}

/// The value of the one series `name` whose label values end with `tail`.
fn value(metrics: &[cri::Metric], name: &str, tail: &[&str]) -> u64 {
    let found: Vec<&cri::Metric> = metrics
        .iter()
        .filter(|m| {
            m.name == name
                && m.label_values
                    .ends_with(&tail.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        })
        .collect();
    assert_eq!(found.len(), 1, "{name} {tail:?}: {found:?}");
    found[0].value.as_ref().unwrap().value
}

/// Open descriptors and sockets of the processes of a cgroup dir, counted as the test
/// sees them.
fn fds_of(cgroup_dir: &Path) -> u64 {
    std::fs::read_to_string(cgroup_dir.join("cgroup.procs"))
        .unwrap()
        .lines()
        .map(|pid| {
            std::fs::read_dir(format!("/proc/{}/fd", pid.trim()))
                .map(|d| d.count() as u64)
                .unwrap_or(0)
        })
        .sum()
}

#[tokio::test]
async fn pod_metrics_are_cadvisor_series_read_from_the_kernel_and_move_with_work() {
    let daemon = builder()
        .bridge_network()
        .config("[crius.stats]\nincluded_pod_metrics = [\"all\"]\n")
        .start()
        .await
        .expect("daemon");
    let (mut rt, mut images) = clients(&daemon).await;
    pull(&mut images, &busybox()).await;

    let descriptors = list_descriptors(&mut rt).await;
    let labels_of: std::collections::HashMap<String, usize> = descriptors
        .iter()
        .map(|d| (d.name.clone(), d.label_keys.len()))
        .collect();
    for d in &descriptors {
        assert_eq!(
            d.label_keys[..6],
            ["container", "id", "image", "name", "namespace", "pod"],
            "{d:?}"
        );
        assert!(!d.help.is_empty(), "{d:?}");
    }
    for name in [
        "container_cpu_usage_seconds_total",
        "container_memory_working_set_bytes",
        "container_network_transmit_bytes_total",
        "container_fs_usage_bytes",
        "container_processes",
        "container_spec_memory_limit_bytes",
        "container_last_seen",
    ] {
        assert!(labels_of.contains_key(name), "{name} not described");
    }

    let config = pod_config(&daemon, "metered");
    let parent = config.linux.as_ref().unwrap().cgroup_parent.clone();
    let pod = run_pod(&mut rt, &config).await;
    // 32 MiB in the pod's shm (charged to the container as page cache), 8 MiB in its
    // rootfs, then five processes: four sleeps and the shell become the last sleep.
    let mut worker = shell(
        "worker",
        "head -c 33554432 /dev/zero > /dev/shm/blob && head -c 8388608 /dev/zero > /blob && \
         for i in 1 2 3 4; do sleep 3600 & done; touch /tmp/ready; exec sleep 3600",
    );
    worker.linux = Some(cri::LinuxContainerConfig {
        resources: Some(cri::LinuxContainerResources {
            memory_limit_in_bytes: 256 << 20,
            cpu_period: 100_000,
            cpu_quota: 200_000,
            cpu_shares: 512,
            ..Default::default()
        }),
        ..Default::default()
    });
    let ctr = run_container(&mut rt, &pod, &config, worker).await;
    let cgroup = format!("{parent}/crius-{ctr}");
    wait_ready_file(&rt, &ctr).await;
    let started_at = container_status(&mut rt, &ctr).await.started_at;

    let m = pod_metrics_of(&list_metrics(&mut rt).await, &pod);
    for metric in &m {
        assert_eq!(
            Some(&metric.label_values.len()),
            labels_of.get(&metric.name),
            "{metric:?}"
        );
        assert!(metric.timestamp > 0, "{metric:?}");
    }
    let usage = m
        .iter()
        .find(|x| x.name == "container_memory_usage_bytes")
        .unwrap();
    assert_eq!(
        usage.label_values,
        [
            "worker".to_string(),
            cgroup.clone(),
            busybox(),
            ctr.clone(),
            "crius-e2e".to_string(),
            "metered".to_string()
        ]
    );
    let memory_dir = v1_dir("memory", &cgroup);
    let kernel_usage = read_u64(&memory_dir.join("memory.usage_in_bytes"));
    let used = usage.value.as_ref().unwrap().value;
    assert!(
        used >= 32 << 20 && used.abs_diff(kernel_usage) < 2_000_000,
        "memory {used}, memory.usage_in_bytes {kernel_usage}"
    );
    assert!(value(&m, "container_memory_cache", &["metered"]) >= 32 << 20);
    assert_eq!(
        value(&m, "container_spec_memory_limit_bytes", &["metered"]),
        256 << 20
    );
    assert_eq!(value(&m, "container_spec_cpu_quota", &["metered"]), 200_000);
    assert_eq!(
        value(&m, "container_spec_cpu_period", &["metered"]),
        100_000
    );
    assert_eq!(value(&m, "container_spec_cpu_shares", &["metered"]), 512);
    assert_eq!(
        value(&m, "container_start_time_seconds", &["metered"]),
        started_at as u64 / 1_000_000_000
    );
    assert_eq!(value(&m, "container_oom_events_total", &["metered"]), 0);
    let processes = value(&m, "container_processes", &["metered"]);
    let kernel_pids = read_u64(&v1_dir("pids", &cgroup).join("pids.current"));
    assert_eq!((processes, kernel_pids), (5, 5));
    assert_eq!(value(&m, "container_threads", &["metered"]), 5);
    assert_eq!(
        value(&m, "container_file_descriptors", &["metered"]),
        fds_of(&v1_dir("pids", &cgroup))
    );
    let device_of = |name: &str| {
        m.iter()
            .find(|x| x.name == name)
            .map(|x| x.label_values.last().unwrap().clone())
            .unwrap()
    };
    let device = device_of("container_fs_usage_bytes");
    let fs_used = value(&m, "container_fs_usage_bytes", &[&device]);
    let fs_limit = value(&m, "container_fs_limit_bytes", &[&device]);
    let inodes_free = value(&m, "container_fs_inodes_free", &[&device]);
    let inodes = value(&m, "container_fs_inodes_total", &[&device]);
    assert!(
        fs_used >= 8 << 20 && fs_used < fs_limit,
        "{fs_used} of {fs_limit}"
    );
    assert!(
        inodes_free > 0 && inodes_free <= inodes,
        "{inodes_free} of {inodes}"
    );
    // The pod's network: its eth0 only, as the pause ("POD") holds it.
    let ifaces: Vec<&String> = m
        .iter()
        .filter(|x| x.name == "container_network_transmit_bytes_total")
        .map(|x| {
            assert_eq!(x.label_values[0], "POD");
            assert_eq!(x.label_values[3], pod);
            x.label_values.last().unwrap()
        })
        .collect();
    assert_eq!(ifaces, ["eth0"]);

    // CPU: work until the cgroup has used another whole second.
    let cpu_before = value(&m, "container_cpu_usage_seconds_total", &["total"]);
    let cpuacct = v1_dir("cpuacct", &cgroup).join("cpuacct.usage");
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while read_u64(&cpuacct) < (cpu_before + 1) * 1_000_000_000 {
        assert!(std::time::Instant::now() < deadline, "no CPU used");
        exec_ok(
            &mut rt,
            &ctr,
            &["dd", "if=/dev/zero", "of=/dev/null", "bs=1M", "count=2000"],
        )
        .await;
    }
    // Network: 1 MiB from the pod to a listener of the test on the bridge's gateway.
    let subnet = &daemon.bridge.as_ref().unwrap().subnet;
    let gateway = subnet.replace(".0/24", ".1");
    let listener = tokio::net::TcpListener::bind(format!("{gateway}:0"))
        .await
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    let receiver = tokio::spawn(async move {
        use tokio::io::AsyncReadExt;
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.unwrap();
        buf.len()
    });
    let tx_before = value(&m, "container_network_transmit_bytes_total", &["eth0"]);
    let send = format!("head -c 1048576 /dev/zero | nc -w 2 {gateway} {port}");
    exec_ok(&mut rt, &ctr, &["sh", "-c", &send]).await;
    let got = tokio::time::timeout(Duration::from_secs(20), receiver)
        .await
        .expect("the pod's bytes arrive")
        .unwrap();
    assert_eq!(got, 1 << 20);
    // Memory and rootfs: free the shm blob, write 4 MiB more.
    exec_ok(
        &mut rt,
        &ctr,
        &[
            "sh",
            "-c",
            "rm /dev/shm/blob && head -c 4194304 /dev/zero > /blob2",
        ],
    )
    .await;

    let m2 = pod_metrics_of(&list_metrics(&mut rt).await, &pod);
    let cpu_after = value(&m2, "container_cpu_usage_seconds_total", &["total"]);
    let kernel_cpu = read_u64(&cpuacct) / 1_000_000_000;
    assert!(
        cpu_after > cpu_before && cpu_after <= kernel_cpu,
        "cpu {cpu_before} s -> {cpu_after} s, cpuacct {kernel_cpu} s"
    );
    let tx_after = value(&m2, "container_network_transmit_bytes_total", &["eth0"]);
    assert!(
        tx_after >= tx_before + (1 << 20),
        "tx {tx_before} -> {tx_after}"
    );
    let used_after = value(&m2, "container_memory_usage_bytes", &["metered"]);
    // 32 MiB freed, 4 MiB of page cache written.
    assert!(
        used_after + (24 << 20) <= used,
        "memory {used} -> {used_after}"
    );
    let fs_after = value(&m2, "container_fs_usage_bytes", &[&device]);
    assert!(
        fs_after >= fs_used + (4 << 20),
        "rootfs {fs_used} -> {fs_after}"
    );

    remove_pod(&mut rt, &pod).await;
    assert_nothing_left(&daemon, &mut rt).await;
}

#[tokio::test]
async fn without_included_pod_metrics_only_container_last_seen_is_served() {
    let daemon = bridge_daemon().await;
    let (mut rt, mut images) = clients(&daemon).await;
    pull(&mut images, &busybox()).await;
    let descriptors = list_descriptors(&mut rt).await;
    let names: Vec<&str> = descriptors.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["container_last_seen"]);
    let config = pod_config(&daemon, "quiet");
    let pod = run_pod(&mut rt, &config).await;
    let ctr = run_container(
        &mut rt,
        &pod,
        &config,
        container_config("idle", &["sleep", "3600"]),
    )
    .await;
    let all = list_metrics(&mut rt).await;
    let p = all
        .iter()
        .find(|p| p.pod_sandbox_id == pod)
        .expect("the pod");
    assert!(p.metrics.is_empty(), "{p:?}");
    assert_eq!(p.container_metrics.len(), 1);
    assert_eq!(p.container_metrics[0].container_id, ctr);
    let seen = &p.container_metrics[0].metrics;
    assert_eq!(seen.len(), 1, "{seen:?}");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(
        seen[0].value.as_ref().unwrap().value.abs_diff(now) < 30,
        "{seen:?}"
    );
    remove_pod(&mut rt, &pod).await;
    assert_nothing_left(&daemon, &mut rt).await;
}
