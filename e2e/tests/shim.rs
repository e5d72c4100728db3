//! `vm` runtime handlers: pods and containers through a containerd shim v2 over ttrpc.
//! The shim is `containerd-shim-runc-v2`, which speaks the protocol of Kata's
//! `containerd-shim-kata-v2`: Debian's (containerd 1.6) and the peer's (containerd 2.4).
//! The handler is the daemon's default, so the common helpers run pods on it.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use crius_e2e::shims::SHIM_RUNC_ROOT;
use crius_e2e::{cri, CriusDaemon};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tonic::Code;

/// The shim processes of one test daemon: those given its event socket as `-address`.
/// Killed on drop, so a failing test leaves none.
struct ShimProcesses {
    address: String,
}

impl ShimProcesses {
    fn of(daemon: &CriusDaemon) -> Self {
        ShimProcesses {
            address: daemon
                .runroot
                .join("shim-events.sock")
                .display()
                .to_string(),
        }
    }

    fn pids(&self) -> Vec<u32> {
        crius_e2e::pids()
            .into_iter()
            .filter(|pid| {
                std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                    c.split(|b| *b == 0)
                        .any(|arg| arg == self.address.as_bytes())
                })
            })
            .collect()
    }
}

impl Drop for ShimProcesses {
    fn drop(&mut self) {
        for pid in self.pids() {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
        }
    }
}

/// A shim socket that this daemon's pods still have under /run/containerd/s.
fn shim_sockets_of(addresses: &[String]) -> Vec<String> {
    addresses
        .iter()
        .filter(|a| Path::new(a.trim_start_matches("unix://")).exists())
        .cloned()
        .collect()
}

/// Tears `daemon` down and asserts that its cleanup knew the pods and containers `ids`
/// and left nothing of their shims in /run/containerd: runc state, sockets, processes.
fn assert_teardown_leaves_no_shim_state(daemon: CriusDaemon, ids: &[&str]) {
    let teardown = daemon.teardown();
    for note in &teardown.notes {
        println!("teardown: {note}");
    }
    for id in ids {
        assert!(
            teardown.ids.contains(*id),
            "the teardown did not know {id}: {:?}",
            teardown.ids
        );
    }
    assert_eq!(
        teardown.shim_leftovers,
        Vec::<String>::new(),
        "left in /run/containerd after the teardown"
    );
}

/// The shim address a pod's record holds.
fn shim_address(daemon: &CriusDaemon, pod: &str) -> String {
    let path = daemon.root.join("records/pods").join(format!("{pod}.json"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("pod record {}: {e}", path.display()));
    let rec: serde_json::Value = serde_json::from_str(&text).unwrap();
    rec["shim_address"]
        .as_str()
        .unwrap_or_else(|| panic!("no shim_address in {text}"))
        .to_string()
}

/// A daemon whose default handler is a vm handler on the shim `binary`, with busybox pulled
/// and one ready pod named `name`.
struct ShimPod {
    daemon: CriusDaemon,
    shims: ShimProcesses,
    rt: Runtime,
    config: cri::PodSandboxConfig,
    pod: String,
}

async fn shim_pod(binary: &Path, name: &str) -> ShimPod {
    let daemon = builder()
        .bridge_network()
        .config(&shim_dropin(binary))
        .start()
        .await
        .unwrap();
    let shims = ShimProcesses::of(&daemon);
    let (mut rt, mut images) = clients(&daemon).await;
    pull(&mut images, &busybox()).await;
    let config = pod_config(&daemon, name);
    let pod = run_pod(&mut rt, &config).await;
    ShimPod {
        daemon,
        shims,
        rt,
        config,
        pod,
    }
}

/// A pod with a container that writes to both streams and exits 3: its exit code, its
/// log, then stop and remove leave no shim, socket, mount or netns.
async fn pod_and_container_lifecycle(binary: &Path) {
    let ShimPod {
        daemon,
        shims,
        mut rt,
        config,
        pod,
    } = shim_pod(binary, "shim").await;
    let status = pod_status(&mut rt, &pod).await;
    assert_eq!(status.state, cri::PodSandboxState::SandboxReady as i32);
    assert!(!status.network.unwrap().ip.is_empty(), "pod has no IP");
    assert_eq!(shims.pids().len(), 1, "one shim per pod");
    let address = shim_address(&daemon, &pod);

    let mut c = shell("talk", "echo to-out; echo to-err >&2; exit 3");
    c.log_path = "talk.log".into();
    let ctr = run_container(&mut rt, &pod, &config, c).await;
    let st = wait_state(
        &mut rt,
        &ctr,
        cri::ContainerState::ContainerExited,
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(st.exit_code, 3, "{st:?}");
    assert_eq!(st.reason, "Error", "{st:?}");
    let log = std::fs::read_to_string(Path::new(&config.log_directory).join("talk.log")).unwrap();
    let records = parse_cri_log(&log);
    assert!(
        records
            .iter()
            .any(|(_, s, t, m)| s == "stdout" && t == "F" && m == "to-out"),
        "{log}"
    );
    assert!(
        records
            .iter()
            .any(|(_, s, t, m)| s == "stderr" && t == "F" && m == "to-err"),
        "{log}"
    );

    // A long runner is stopped with its stop signal (SIGTERM, which it traps).
    let script = "trap 'exit 42' TERM; sleep 600 & wait";
    let long = run_container(&mut rt, &pod, &config, shell("long", script)).await;
    wait_state(
        &mut rt,
        &long,
        cri::ContainerState::ContainerRunning,
        Duration::from_secs(30),
    )
    .await;
    // ExecSync through the shim: output, exit code, and a timeout that kills it.
    assert_eq!(
        exec_ok(&mut rt, &long, &["echo", "in-exec"]).await,
        "in-exec\n"
    );
    let out = try_exec(&mut rt, &long, &["sh", "-c", "echo oops >&2; exit 5"], 20)
        .await
        .unwrap();
    assert_eq!(out.exit_code, 5, "{out:?}");
    assert_eq!(out.stderr, b"oops\n", "{out:?}");
    stats_and_update_through_the_shim(&mut rt, &pod, &long).await;
    let err = try_exec(&mut rt, &long, &["sleep", "60"], 1)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err:?}");
    rt.stop_container(cri::StopContainerRequest {
        container_id: long.clone(),
        timeout: 10,
    })
    .await
    .unwrap();
    let st = container_status(&mut rt, &long).await;
    assert_eq!(st.state, cri::ContainerState::ContainerExited as i32);
    assert_eq!(st.exit_code, 42, "{st:?}");

    remove_pod(&mut rt, &pod).await;
    assert_nothing_left(&daemon, &mut rt).await;
    assert_eq!(shims.pids(), Vec::<u32>::new(), "shim left running");
    assert_eq!(
        shim_sockets_of(&[address]),
        Vec::<String>::new(),
        "shim socket left"
    );
    assert_teardown_leaves_no_shim_state(daemon, &[&pod, &ctr, &long]);
}

/// ContainerStats, ListContainerStats and PodSandboxStats of a running vm container come
/// from the shim's Stats; UpdateContainerResources goes through its Update, and the new
/// memory limit shows in the next stats.
async fn stats_and_update_through_the_shim(rt: &mut Runtime, pod: &str, ctr: &str) {
    let stats = |rt: &mut Runtime| {
        let mut rt = rt.clone();
        let ctr = ctr.to_string();
        async move {
            rt.container_stats(cri::ContainerStatsRequest { container_id: ctr })
                .await
                .expect("ContainerStats")
                .into_inner()
                .stats
                .expect("stats")
        }
    };
    let s = stats(rt).await;
    let cpu = s.cpu.as_ref().and_then(|c| c.usage_core_nano_seconds);
    assert!(cpu.is_some_and(|v| v.value > 0), "cpu from the shim: {s:?}");
    let ws = s.memory.as_ref().and_then(|m| m.working_set_bytes);
    assert!(
        ws.is_some_and(|v| v.value > 0),
        "memory from the shim: {s:?}"
    );

    let listed = rt
        .list_container_stats(cri::ListContainerStatsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .stats;
    assert!(
        listed
            .iter()
            .any(|s| s.attributes.as_ref().is_some_and(|a| a.id == ctr)),
        "ListContainerStats lists the vm container: {listed:?}"
    );
    let linux = pod_linux_stats(rt, pod).await;
    assert!(
        linux
            .containers
            .iter()
            .any(|c| c.attributes.as_ref().is_some_and(|a| a.id == ctr)),
        "{linux:?}"
    );
    assert!(
        linux
            .memory
            .and_then(|m| m.working_set_bytes)
            .is_some_and(|v| v.value > 0),
        "pod memory"
    );

    let limit = 96 << 20;
    rt.update_container_resources(cri::UpdateContainerResourcesRequest {
        container_id: ctr.to_string(),
        linux: Some(cri::LinuxContainerResources {
            memory_limit_in_bytes: limit,
            ..Default::default()
        }),
        ..Default::default()
    })
    .await
    .expect("UpdateContainerResources through the shim");
    let m = stats(rt).await.memory.unwrap();
    let (ws, avail) = (
        m.working_set_bytes.unwrap().value,
        m.available_bytes.expect("a limit now").value,
    );
    assert_eq!(ws + avail, limit as u64, "the shim's limit is the new one");
}

#[tokio::test]
async fn debian_shim_runs_pods_and_containers() {
    let Some(binary) = debian_shim("debian_shim_runs_pods_and_containers") else {
        return;
    };
    pod_and_container_lifecycle(&binary).await;
}

#[tokio::test]
async fn containerd_2_shim_runs_pods_and_containers() {
    let Some(binary) = crius_e2e::peers::peer_or_skip(
        "CONTAINERD_SHIM",
        "containerd_2_shim_runs_pods_and_containers",
    ) else {
        return;
    };
    pod_and_container_lifecycle(&binary).await;
}

/// A container over its memory limit under a shim is recorded as OOMKilled: the kill
/// reaches crius as the shim's TaskOOM event and its Wait, not through a monitor.
#[tokio::test]
async fn a_container_over_its_memory_limit_is_oom_killed_under_the_shim() {
    let Some(binary) =
        debian_shim("a_container_over_its_memory_limit_is_oom_killed_under_the_shim")
    else {
        return;
    };
    let ShimPod {
        daemon,
        shims,
        mut rt,
        config,
        pod,
    } = shim_pod(&binary, "oom").await;
    // tail keeps the endless "line" of /dev/zero in memory until the limit kills it.
    let hog = memory_limited("hog", &["tail", "/dev/zero"], 32 * 1024 * 1024);
    let ctr = run_container(&mut rt, &pod, &config, hog).await;
    let st = wait_state(
        &mut rt,
        &ctr,
        cri::ContainerState::ContainerExited,
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(st.reason, "OOMKilled", "{st:?}");
    assert_eq!(st.exit_code, 137, "{st:?}");
    remove_pod(&mut rt, &pod).await;
    assert_nothing_left(&daemon, &mut rt).await;
    assert_eq!(shims.pids(), Vec::<u32>::new(), "shim left running");
}

/// A restart reconnects: the running container keeps running and is stopped through the
/// shim; one killed while crius was away is read back as exited with its code.
#[tokio::test]
async fn a_restart_reconnects_to_the_shim() {
    let Some(binary) = debian_shim("a_restart_reconnects_to_the_shim") else {
        return;
    };
    let ShimPod {
        mut daemon,
        shims,
        mut rt,
        config,
        pod,
    } = shim_pod(&binary, "restart").await;
    let keep = run_container(&mut rt, &pod, &config, shell("keep", "exec sleep 600")).await;
    let gone = run_container(&mut rt, &pod, &config, shell("gone", "exec sleep 600")).await;
    for id in [&keep, &gone] {
        wait_state(
            &mut rt,
            id,
            cri::ContainerState::ContainerRunning,
            Duration::from_secs(30),
        )
        .await;
    }
    let gone_pid = container_pid(&mut rt, &gone).await;

    daemon.stop().await.unwrap();
    kill(Pid::from_raw(gone_pid as i32), Signal::SIGKILL).unwrap();
    daemon.restart().await.unwrap();
    let (mut rt, _) = clients(&daemon).await;

    assert_eq!(
        pod_status(&mut rt, &pod).await.state,
        cri::PodSandboxState::SandboxReady as i32
    );
    assert_eq!(
        container_status(&mut rt, &keep).await.state,
        cri::ContainerState::ContainerRunning as i32
    );
    let st = wait_state(
        &mut rt,
        &gone,
        cri::ContainerState::ContainerExited,
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(st.exit_code, 137, "{st:?}");
    rt.stop_container(cri::StopContainerRequest {
        container_id: keep.clone(),
        timeout: 5,
    })
    .await
    .unwrap();
    assert_eq!(
        container_status(&mut rt, &keep).await.state,
        cri::ContainerState::ContainerExited as i32
    );
    remove_pod(&mut rt, &pod).await;
    assert_nothing_left(&daemon, &mut rt).await;
    assert_eq!(shims.pids(), Vec::<u32>::new(), "shim left running");
}

/// A shim killed under a running pod: the pod and its container can still be stopped and
/// removed, leaving nothing.
#[tokio::test]
async fn a_pod_whose_shim_died_is_stopped_and_removed() {
    let Some(binary) = debian_shim("a_pod_whose_shim_died_is_stopped_and_removed") else {
        return;
    };
    let ShimPod {
        daemon,
        shims,
        mut rt,
        config,
        pod,
    } = shim_pod(&binary, "dies").await;
    let ctr = run_container(&mut rt, &pod, &config, shell("c", "exec sleep 600")).await;
    let ctr_pid = container_pid(&mut rt, &ctr).await;
    let address = shim_address(&daemon, &pod);
    for pid in shims.pids() {
        kill(Pid::from_raw(pid as i32), Signal::SIGKILL).unwrap();
    }
    // The container is reported exited once its shim's Wait breaks.
    let st = wait_state(
        &mut rt,
        &ctr,
        cri::ContainerState::ContainerExited,
        Duration::from_secs(30),
    )
    .await;
    assert!(!st.message.is_empty() || st.exit_code != 0, "{st:?}");
    // The orphaned processes are the pod's cgroup's to end; kill the container's. runc's
    // state of it stays, as containerd's would: the teardown removes it.
    let _ = kill(Pid::from_raw(ctr_pid as i32), Signal::SIGKILL);
    rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
        pod_sandbox_id: pod.clone(),
    })
    .await
    .unwrap();
    remove_pod(&mut rt, &pod).await;
    assert_nothing_left(&daemon, &mut rt).await;
    assert_eq!(
        shim_sockets_of(&[address]),
        Vec::<String>::new(),
        "shim socket left"
    );
    let ctr_state = Path::new(SHIM_RUNC_ROOT).join(&ctr);
    println!(
        "runc state of the container after its pod was removed: {}",
        ctr_state.exists()
    );
    assert_teardown_leaves_no_shim_state(daemon, &[&pod, &ctr]);
}

/// A config table making `binary` the vm handler `name`.
fn vm_handler(name: &str, binary: &Path) -> String {
    format!(
        "[crius.runtime.runtimes.{name}]\nruntime_path = \"{}\"\nruntime_type = \"vm\"\n",
        binary.display()
    )
}

/// A daemon with a bridge network and the drop-in `dropin`.
async fn daemon_with(dropin: &str) -> CriusDaemon {
    builder()
        .bridge_network()
        .config(dropin)
        .start()
        .await
        .unwrap()
}

/// Shims that fail at start: a clear error naming the handler, and nothing left.
#[tokio::test]
async fn shims_that_fail_at_start_unwind_the_pod() {
    let bins = tempfile::Builder::new()
        .prefix("crius-e2e-shims-")
        .tempdir_in("/var/tmp")
        .unwrap();
    // Each answers `-v` (the probe) and misbehaves at `start`.
    let scripts = [
        ("exits", "echo no way >&2; exit 1", "no way"),
        (
            "garbage",
            "echo 'not an address'",
            "printed no ttrpc address",
        ),
        ("nosocket", "echo unix:///nonexistent/shim.sock", "connect"),
    ];
    let mut dropin = String::new();
    for (name, body, _) in &scripts {
        use std::os::unix::fs::PermissionsExt;
        let path = bins.path().join(name);
        std::fs::write(
            &path,
            format!("#!/bin/sh\n[ \"$1\" = -v ] && exit 0\n{body}\n"),
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        dropin.push_str(&vm_handler(name, &path));
    }
    let daemon = daemon_with(&dropin).await;
    let (mut rt, mut images) = clients(&daemon).await;
    pull(&mut images, &busybox()).await;
    let mut failures = Vec::new();
    for (name, _, words) in &scripts {
        let err = rt
            .run_pod_sandbox(cri::RunPodSandboxRequest {
                config: Some(pod_config(&daemon, name)),
                runtime_handler: name.to_string(),
            })
            .await
            .expect_err("a broken shim runs no pod");
        println!("{name}: {:?}: {}", err.code(), err.message());
        if err.code() == Code::Ok
            || !err.message().contains(&format!("{name:?}"))
            || !err.message().contains(words)
        {
            failures.push(format!("{name}: {err:?}"));
        }
    }
    assert_nothing_left(&daemon, &mut rt).await;
    assert!(failures.is_empty(), "{failures:#?}");
}

/// Shims that break once started (e2e/tests/shims/broken-shim.py): one answers garbage on
/// its socket, one hangs after Connect (every call is bounded: DeadlineExceeded), one dies
/// in the middle of Create. Each RunPodSandbox fails with an error naming the handler, and
/// the pod is unwound: no shim process, socket, mount or netns left.
#[tokio::test]
async fn shims_that_break_after_start_unwind_the_pod() {
    let bins = tempfile::Builder::new()
        .prefix("crius-e2e-shims-")
        .tempdir_in("/var/tmp")
        .unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/shims/broken-shim.py");
    // (handler and mode, the gRPC code, words the message must hold)
    let cases = [
        ("garbage", None, "shim call"),
        (
            "hangs",
            Some(Code::DeadlineExceeded),
            "got no answer within",
        ),
        ("dies", None, "shim call create"),
    ];
    let mut dropin = String::new();
    for (name, _, _) in &cases {
        let path = bins.path().join(name);
        std::fs::copy(&script, &path).unwrap();
        dropin.push_str(&vm_handler(name, &path));
    }
    let daemon = daemon_with(&dropin).await;
    let shims = ShimProcesses::of(&daemon);
    let (mut rt, mut images) = clients(&daemon).await;
    pull(&mut images, &busybox()).await;
    let runs = cases.iter().map(|(name, _, _)| {
        let mut rt = rt.clone();
        let config = pod_config(&daemon, name);
        async move {
            let started = std::time::Instant::now();
            let result = rt
                .run_pod_sandbox(cri::RunPodSandboxRequest {
                    config: Some(config),
                    runtime_handler: name.to_string(),
                })
                .await;
            (result, started.elapsed())
        }
    });
    let results = futures::future::join_all(runs).await;
    let mut failures = Vec::new();
    for ((name, code, words), (result, took)) in cases.iter().zip(results) {
        let Err(err) = result else {
            failures.push(format!("{name}: a broken shim ran a pod"));
            continue;
        };
        println!("{name} ({took:?}): {:?}: {}", err.code(), err.message());
        if code.is_some_and(|c| c != err.code())
            || !err.message().contains(&format!("{name:?}"))
            || !err.message().contains(words)
        {
            failures.push(format!("{name}: {err:?}"));
        }
    }
    assert_nothing_left(&daemon, &mut rt).await;
    assert_eq!(shims.pids(), Vec::<u32>::new(), "shim processes left");
    let sockets: Vec<_> = std::fs::read_dir("/run")
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("crius-e2e-") && n.ends_with(".sock"))
        .collect();
    assert!(failures.is_empty(), "{failures:#?}");
    assert_eq!(sockets, Vec::<String>::new(), "shim sockets left");
}
