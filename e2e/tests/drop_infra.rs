//! Pods without an infra container (`drop_infra_ctr`): no pause process, the network, IPC
//! and UTS namespaces pinned by crius and joined by every container, networking from the
//! host, the pause kept for a shared PID namespace, nothing left after stop and remove, and
//! a daemon restart or a reboot in between.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::linux::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use common::*;
use crius_e2e::{cri, CriusDaemon};

const DROP_INFRA: &str = "[crius.runtime]\ndrop_infra_ctr = true\n";

async fn drop_infra_daemon() -> CriusDaemon {
    builder()
        .config(DROP_INFRA)
        .bridge_network()
        .start()
        .await
        .expect("daemon")
}

/// The namespace a process is in, as its /proc/PID/ns link reads ("net:[4026532…]").
fn ns_link(pid: u32, ns: &str) -> String {
    std::fs::read_link(format!("/proc/{pid}/ns/{ns}"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/ns/{ns}: {e}"))
        .display()
        .to_string()
}

/// The link a pin would show: the namespace inode of an nsfs file.
fn pin_link(path: &Path, ns: &str) -> String {
    let ino = std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .st_ino();
    format!("{ns}:[{ino}]")
}

/// Every process of the host in the namespace `link` names.
fn processes_in(ns: &str, link: &str) -> Vec<u32> {
    crius_e2e::pids()
        .into_iter()
        .filter(|pid| {
            std::fs::read_link(format!("/proc/{pid}/ns/{ns}"))
                .is_ok_and(|l| l.display().to_string() == link)
        })
        .collect()
}

fn http_get(ip: &str, port: u16) -> std::io::Result<String> {
    let mut stream = TcpStream::connect_timeout(
        &format!("{ip}:{port}").parse().unwrap(),
        Duration::from_secs(2),
    )?;
    stream.set_read_timeout(Some(Duration::from_secs(3)))?;
    stream.write_all(b"GET /index.html HTTP/1.0\r\n\r\n")?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply)?;
    Ok(reply)
}

#[tokio::test]
async fn a_pod_without_infra_container_pins_its_namespaces_and_serves_on_its_ip() {
    let daemon = drop_infra_daemon().await;
    let (mut rt, mut images) = clients(&daemon).await;
    pull(&mut images, &busybox()).await;
    let config = pod_config(&daemon, "no-infra");
    let pod = run_pod(&mut rt, &config).await;

    let info = pod_info(&mut rt, &pod).await;
    assert_eq!(info["infraContainer"], false, "{info}");
    assert_eq!(info["pid"], 0, "{info}");
    let netns = Path::new(info["netns"].as_str().expect("netns")).to_path_buf();
    let ipc = Path::new(info["ipcNs"].as_str().expect("ipc pin")).to_path_buf();
    let uts = Path::new(info["utsNs"].as_str().expect("uts pin")).to_path_buf();
    assert!(ipc.starts_with(&daemon.runroot) && uts.starts_with(&daemon.runroot));
    let (net_link, ipc_link, uts_link) = (
        pin_link(&netns, "net"),
        pin_link(&ipc, "ipc"),
        pin_link(&uts, "uts"),
    );
    assert_ne!(net_link, ns_link(std::process::id(), "net"));
    assert_ne!(ipc_link, ns_link(std::process::id(), "ipc"));
    assert_ne!(uts_link, ns_link(std::process::id(), "uts"));
    // No pause process: nothing at all is in the pod's namespaces before a container runs.
    for (ns, link) in [("net", &net_link), ("ipc", &ipc_link), ("uts", &uts_link)] {
        assert_eq!(
            processes_in(ns, link),
            Vec::<u32>::new(),
            "processes in the pod's {ns} namespace before any container"
        );
    }
    let status = pod_status(&mut rt, &pod).await;
    assert_eq!(status.state, cri::PodSandboxState::SandboxReady as i32);
    let ip = status.network.expect("network").ip;
    assert!(!ip.is_empty(), "no pod IP");
    let listed = list_pods(&mut rt, None).await;
    assert!(
        listed
            .iter()
            .any(|p| p.id == pod && p.state == cri::PodSandboxState::SandboxReady as i32),
        "{listed:?}"
    );

    let web = run_container(
        &mut rt,
        &pod,
        &config,
        web_server("web", 8080, "served without a pause"),
    )
    .await;
    let sleeper = run_container(&mut rt, &pod, &config, sleeper()).await;
    let (web_pid, sleeper_pid) = (
        container_pid(&mut rt, &web).await,
        container_pid(&mut rt, &sleeper).await,
    );
    for pid in [web_pid, sleeper_pid] {
        assert_eq!(ns_link(pid, "net"), net_link, "pid {pid}");
        assert_eq!(ns_link(pid, "ipc"), ipc_link, "pid {pid}");
        assert_eq!(ns_link(pid, "uts"), uts_link, "pid {pid}");
    }
    // Each container has its own PID namespace (mode CONTAINER): no pause is pid 1.
    assert_ne!(ns_link(web_pid, "pid"), ns_link(sleeper_pid, "pid"));
    let hostname = exec_ok(&mut rt, &sleeper, &["hostname"]).await;
    assert_eq!(hostname.trim(), "no-infra");
    let ps = exec_ok(&mut rt, &sleeper, &["cat", "/proc/1/cmdline"]).await;
    assert!(ps.starts_with("sleep"), "pid 1 of the sleeper is {ps:?}");

    // From the host over the test bridge to the pod IP.
    let ip2 = ip.clone();
    let body = eventually(
        "the pod serves on its IP",
        Duration::from_secs(15),
        move || {
            let ip = ip2.clone();
            async move {
                tokio::task::spawn_blocking(move || http_get(&ip, 8080))
                    .await
                    .unwrap()
                    .ok()
                    .filter(|b| b.contains("200 OK"))
            }
        },
    )
    .await;
    assert!(body.contains("served without a pause"), "{body}");

    // Pod stats read the pinned netns's interfaces.
    let stats = pod_linux_stats(&mut rt, &pod).await;
    let net = stats.network.expect("network stats");
    let eth0 = net
        .interfaces
        .iter()
        .chain(net.default_interface.iter())
        .find(|i| i.name == "eth0")
        .unwrap_or_else(|| panic!("no eth0 in {net:?}"));
    assert!(
        eth0.rx_bytes.as_ref().is_some_and(|b| b.value > 0),
        "{eth0:?}"
    );

    // Stop: every pin goes, the network is torn down; the pod stays listed NotReady.
    rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
        pod_sandbox_id: pod.clone(),
    })
    .await
    .expect("StopPodSandbox");
    assert_eq!(
        pod_status(&mut rt, &pod).await.state,
        cri::PodSandboxState::SandboxNotready as i32
    );
    assert_eq!(netns_pins(&daemon), Vec::<String>::new(), "netns pins left");
    assert!(!ipc.exists() && !uts.exists(), "ipc/uts pins left");
    assert_eq!(
        ipam_reserved(&daemon),
        Vec::<String>::new(),
        "IP still held"
    );
    remove_pod(&mut rt, &pod).await;
    assert_nothing_left(&daemon, &mut rt).await;
    let cgroup = &config.linux.as_ref().unwrap().cgroup_parent;
    let left: Vec<_> = cgroup_dirs(cgroup)
        .into_iter()
        .flat_map(|d| dir_entries(&d))
        .filter(|e| e.starts_with("crius-"))
        .collect();
    assert_eq!(left, Vec::<String>::new(), "cgroups left under {cgroup}");
}

#[tokio::test]
async fn a_pod_sharing_its_pid_namespace_keeps_its_infra_container() {
    let daemon = drop_infra_daemon().await;
    let (mut rt, mut images) = clients(&daemon).await;
    pull(&mut images, &busybox()).await;
    let mut config = pod_config(&daemon, "shared-pid");
    config
        .linux
        .as_mut()
        .and_then(|l| l.security_context.as_mut())
        .and_then(|s| s.namespace_options.as_mut())
        .unwrap()
        .pid = cri::NamespaceMode::Pod as i32;
    let pod = run_pod(&mut rt, &config).await;
    let info = pod_info(&mut rt, &pod).await;
    assert_eq!(info["infraContainer"], true, "{info}");
    let pause = info["pid"].as_u64().expect("pause pid") as u32;
    assert!(pause > 0, "{info}");
    assert!(info["ipcNs"].is_null() && info["utsNs"].is_null(), "{info}");

    // The container follows the pod's PID mode (POD), as the kubelet asks.
    let ctr_config = sleeper();
    let ctr = run_container(&mut rt, &pod, &config, ctr_config).await;
    let pid = container_pid(&mut rt, &ctr).await;
    for ns in ["pid", "net", "ipc", "uts"] {
        assert_eq!(ns_link(pid, ns), ns_link(pause, ns), "{ns}");
    }
    remove_pod(&mut rt, &pod).await;
    assert_nothing_left(&daemon, &mut rt).await;
}

#[tokio::test]
async fn a_pod_without_infra_container_survives_a_daemon_restart() {
    let mut daemon = drop_infra_daemon().await;
    let (mut rt, mut images) = clients(&daemon).await;
    pull(&mut images, &busybox()).await;
    let config = pod_config(&daemon, "restarted");
    let pod = run_pod(&mut rt, &config).await;
    let first = run_container(
        &mut rt,
        &pod,
        &config,
        container_config("first", &["sleep", "3600"]),
    )
    .await;
    let first_pid = container_pid(&mut rt, &first).await;
    drop((rt, images));

    daemon.stop().await.expect("stop daemon");
    daemon.restart().await.expect("restart daemon");
    let (mut rt, _) = clients(&daemon).await;
    assert_eq!(
        pod_status(&mut rt, &pod).await.state,
        cri::PodSandboxState::SandboxReady as i32,
        "the pod is not Ready after the restart"
    );
    let second = run_container(
        &mut rt,
        &pod,
        &config,
        web_server("second", 8080, "after the restart"),
    )
    .await;
    let second_pid = container_pid(&mut rt, &second).await;
    for ns in ["net", "ipc", "uts"] {
        assert_eq!(ns_link(first_pid, ns), ns_link(second_pid, ns), "{ns}");
    }
    let ip = pod_status(&mut rt, &pod).await.network.unwrap().ip;
    eventually(
        "the pod serves after the restart",
        Duration::from_secs(15),
        move || {
            let ip = ip.clone();
            async move {
                tokio::task::spawn_blocking(move || http_get(&ip, 8080))
                    .await
                    .unwrap()
                    .ok()
                    .filter(|b| b.contains("after the restart"))
            }
        },
    )
    .await;
    remove_pod(&mut rt, &pod).await;
    assert_nothing_left(&daemon, &mut rt).await;
}

#[tokio::test]
async fn a_pod_without_infra_container_is_not_ready_after_a_reboot_and_cleans_up() {
    let mut daemon = drop_infra_daemon().await;
    let (mut rt, mut images) = clients(&daemon).await;
    pull(&mut images, &busybox()).await;
    let config = pod_config(&daemon, "rebooted");
    let pod = run_pod(&mut rt, &config).await;
    run_container(&mut rt, &pod, &config, sleeper()).await;
    drop((rt, images));
    daemon.stop().await.expect("stop daemon");
    // The run dir stays (as on these machines): the pin files are there, unmounted.
    daemon.simulate_reboot(false).expect("reboot");
    daemon.restart().await.expect("restart daemon");
    let (mut rt, _) = clients(&daemon).await;
    assert_eq!(
        pod_status(&mut rt, &pod).await.state,
        cri::PodSandboxState::SandboxNotready as i32
    );
    rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
        pod_sandbox_id: pod.clone(),
    })
    .await
    .expect("StopPodSandbox after the reboot");
    remove_pod(&mut rt, &pod).await;
    assert_nothing_left(&daemon, &mut rt).await;
}

/// Benchmark, not CI (`cargo test -p crius-e2e --test drop_infra -- --ignored --nocapture`):
/// pod start (RunPodSandbox, CreateContainer, StartContainer of one container) on a daemon
/// with `drop_infra_ctr` against one without, alternating so that load on the machine falls
/// on both alike; medians and p90 over 20 of each, and their ratio.
#[tokio::test]
#[ignore = "benchmark"]
async fn bench_pod_start_with_and_without_an_infra_container() {
    let with_infra = builder()
        .config("[crius.runtime]\ndrop_infra_ctr = false\n")
        .bridge_network()
        .start()
        .await
        .expect("daemon");
    let without_infra = drop_infra_daemon().await;
    let daemons = [&with_infra, &without_infra];
    let mut clients_of = Vec::new();
    for daemon in daemons {
        let (rt, mut images) = clients(daemon).await;
        pull(&mut images, &busybox()).await;
        clients_of.push(rt);
    }
    const N: usize = 20;
    let mut times: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    // One warm-up of each, not counted.
    for i in 0..=N {
        for (k, daemon) in daemons.iter().enumerate() {
            let rt = &mut clients_of[k];
            let config = pod_config(daemon, &format!("bench-{k}-{i}"));
            let started = std::time::Instant::now();
            let pod = run_pod(rt, &config).await;
            run_container(rt, &pod, &config, shell("c", "exec sleep 600")).await;
            let ms = started.elapsed().as_secs_f64() * 1000.0;
            if i > 0 {
                times[k].push(ms);
            }
            remove_pod(rt, &pod).await;
        }
    }
    let stats = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        (v[v.len() / 2], v[(v.len() * 9).div_ceil(10) - 1])
    };
    let (infra, infra_p90) = stats(&mut times[0]);
    let (dropped, dropped_p90) = stats(&mut times[1]);
    println!(
        "pod start (RunPodSandbox + CreateContainer + StartContainer), n={N}: with the infra \
         container median {infra:.1} ms (p90 {infra_p90:.1}), without it median {dropped:.1} \
         ms (p90 {dropped_p90:.1}); ratio without/with {:.2} (p90 {:.2})",
        dropped / infra,
        dropped_p90 / infra_p90
    );
    for (k, daemon) in daemons.iter().enumerate() {
        assert_nothing_left(daemon, &mut clients_of[k]).await;
    }
}
