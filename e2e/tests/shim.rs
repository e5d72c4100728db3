//! `vm` runtime handlers: pods and containers through a containerd shim v2 over ttrpc.
//! The shim is `containerd-shim-runc-v2`, which speaks the protocol of Kata's
//! `containerd-shim-kata-v2`: Debian's (containerd 1.6) and the peer's (containerd 2.4).
//! The handler is the daemon's default, so the common helpers run pods on it.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use crius_e2e::{cri, CriusDaemon};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tonic::Code;

/// Debian's shim (the `containerd` package).
const DEBIAN_SHIM: &str = "/usr/bin/containerd-shim-runc-v2";

/// Debian's shim, or `None` after saying the test was skipped (failing in CI).
fn debian_shim(test: &str) -> Option<PathBuf> {
    let path = PathBuf::from(DEBIAN_SHIM);
    if path.exists() {
        return Some(path);
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{test}: {DEBIAN_SHIM} is missing (apt-get install containerd); CI needs it"
    );
    eprintln!("SKIPPED {test}: {DEBIAN_SHIM} is missing (apt-get install containerd)");
    None
}

/// A drop-in making `shim` (runtime_type vm, `binary`) the default handler.
fn shim_dropin(binary: &Path) -> String {
    format!(
        "[crius.runtime]\ndefault_runtime = \"shim\"\n[crius.runtime.runtimes.shim]\nruntime_path = \"{}\"\nruntime_type = \"vm\"\n",
        binary.display()
    )
}

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

/// A pod with a container that writes to both streams and exits 3: its exit code, its
/// log, then stop and remove leave no shim, socket, mount or netns.
async fn pod_and_container_lifecycle(binary: &Path) {
    let daemon = builder()
        .bridge_network()
        .config(&shim_dropin(binary))
        .start()
        .await
        .unwrap();
    let shims = ShimProcesses::of(&daemon);
    let (mut rt, mut images) = clients(&daemon).await;
    pull(&mut images, &busybox()).await;
    let config = pod_config(&daemon, "shim");
    let pod = run_pod(&mut rt, &config).await;
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
    // Streaming exec is not built for vm handlers: said at once, not at the stream.
    let err = rt
        .exec(cri::ExecRequest {
            container_id: long.clone(),
            cmd: vec!["true".into()],
            stdout: true,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unimplemented, "{err:?}");
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

/// A restart reconnects: the running container keeps running and is stopped through the
/// shim; one killed while crius was away is read back as exited with its code.
#[tokio::test]
async fn a_restart_reconnects_to_the_shim() {
    let Some(binary) = debian_shim("a_restart_reconnects_to_the_shim") else {
        return;
    };
    let mut daemon = builder()
        .bridge_network()
        .config(&shim_dropin(&binary))
        .start()
        .await
        .unwrap();
    let shims = ShimProcesses::of(&daemon);
    let (mut rt, mut images) = clients(&daemon).await;
    pull(&mut images, &busybox()).await;
    let config = pod_config(&daemon, "restart");
    let pod = run_pod(&mut rt, &config).await;
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
    let daemon = builder()
        .bridge_network()
        .config(&shim_dropin(&binary))
        .start()
        .await
        .unwrap();
    let shims = ShimProcesses::of(&daemon);
    let (mut rt, mut images) = clients(&daemon).await;
    pull(&mut images, &busybox()).await;
    let config = pod_config(&daemon, "dies");
    let pod = run_pod(&mut rt, &config).await;
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
    // The orphaned processes are the pod's cgroup's to end; kill the container's so the
    // test leaves nothing (runc's state of it stays, as containerd's would).
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
        dropin.push_str(&format!(
            "[crius.runtime.runtimes.{name}]\nruntime_path = \"{}\"\nruntime_type = \"vm\"\n",
            path.display()
        ));
    }
    let daemon = builder()
        .bridge_network()
        .config(&dropin)
        .start()
        .await
        .unwrap();
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
