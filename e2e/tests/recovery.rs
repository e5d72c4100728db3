//! Containers outlive the daemon: after a clean restart (SIGTERM) or a crash (SIGKILL) a
//! running container is still listed Running, answers ExecSync and keeps logging, and a
//! container that exited while the daemon was down is reported with its exit code.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::*;
use crius_e2e::{cri, CriusDaemon};
use nix::sys::signal::Signal;

/// A busybox container that writes a counter to stdout every 100 ms.
fn ticker(name: &str) -> cri::ContainerConfig {
    shell(
        name,
        "i=0; while true; do echo tick-$i; i=$((i+1)); sleep 0.1; done",
    )
}

/// A container that exits with `code` once `/cue/go` exists; `/cue` is `cue_dir` on the
/// host, so the test can cue it while the daemon is down.
fn exits_on_cue(name: &str, code: i32, cue_dir: &std::path::Path) -> cri::ContainerConfig {
    let mut config = shell(
        name,
        &format!("while [ ! -f /cue/go ]; do sleep 0.05; done; echo leaving; exit {code}"),
    );
    config.mounts.push(cri::Mount {
        container_path: "/cue".into(),
        host_path: cue_dir.display().to_string(),
        ..Default::default()
    });
    config
}

fn log_lines(path: &PathBuf) -> usize {
    std::fs::read_to_string(path)
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

/// Brings the daemon down with `signal` while one container keeps running and another
/// exits (code 42) in the meantime; checks both after the restart.
async fn survives(signal: Signal) {
    let mut daemon: CriusDaemon = bridge_daemon().await;
    let (mut rt, mut images) = clients(&daemon).await;
    pull(&mut images, &busybox()).await;
    let config = pod_config(&daemon, "survivor");
    let pod = run_pod(&mut rt, &config).await;
    let pod_ip = pod_status(&mut rt, &pod).await.network.unwrap().ip;
    let tick = run_container(&mut rt, &pod, &config, ticker("ticker")).await;
    let cue_dir = daemon.dir.join("cue");
    std::fs::create_dir_all(&cue_dir).unwrap();
    let quitter = run_container(
        &mut rt,
        &pod,
        &config,
        exits_on_cue("quitter", 42, &cue_dir),
    )
    .await;
    let created = create(
        &mut rt,
        &pod,
        &config,
        container_config("never-started", &["true"]),
    )
    .await;
    let log = PathBuf::from(&config.log_directory).join("ticker.log");
    eventually("ticker logs", Duration::from_secs(5), || {
        let log = log.clone();
        async move { (log_lines(&log) >= 2).then_some(()) }
    })
    .await;

    daemon.signal(signal).unwrap();
    daemon.wait_exit(Duration::from_secs(20)).await.unwrap();
    drop(rt);
    // With the daemon down: the quitter exits, and the ticker keeps logging.
    let lines_at_stop = log_lines(&log);
    std::fs::write(cue_dir.join("go"), "").unwrap();
    let quitter_log = PathBuf::from(&config.log_directory).join("quitter.log");
    eventually(
        "the quitter exits while the daemon is down",
        Duration::from_secs(5),
        || {
            let path = quitter_log.clone();
            async move {
                std::fs::read_to_string(&path)
                    .ok()
                    .filter(|t| t.contains("leaving"))
                    .map(|_| ())
            }
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let lines_while_down = log_lines(&log);
    assert!(
        lines_while_down > lines_at_stop,
        "the log stopped growing with the daemon down ({lines_at_stop} -> {lines_while_down})"
    );

    daemon.restart().await.unwrap();
    let (mut rt, mut images) = clients(&daemon).await;
    // The image store and the pod names survive too.
    assert!(
        images
            .image_status(cri::ImageStatusRequest {
                image: Some(cri::ImageSpec {
                    image: busybox(),
                    ..Default::default()
                }),
                verbose: false,
            })
            .await
            .unwrap()
            .into_inner()
            .image
            .is_some(),
        "busybox forgotten across the restart"
    );
    assert_eq!(
        run_pod(&mut rt, &config).await,
        pod,
        "a repeated RunPodSandbox after the restart made a new pod"
    );
    let st = pod_status(&mut rt, &pod).await;
    assert_eq!(
        st.state,
        cri::PodSandboxState::SandboxReady as i32,
        "{st:?}"
    );
    assert_eq!(st.network.unwrap().ip, pod_ip);

    let running = container_status(&mut rt, &tick).await;
    assert_eq!(
        running.state,
        cri::ContainerState::ContainerRunning as i32,
        "{running:?}"
    );
    assert_eq!(
        exec_ok(&mut rt, &tick, &["echo", "still here"]).await,
        "still here\n"
    );
    let before = log_lines(&log);
    eventually("the log keeps growing", Duration::from_secs(5), || {
        let log = log.clone();
        async move { (log_lines(&log) > before + 2).then_some(()) }
    })
    .await;
    let text = std::fs::read_to_string(&log).unwrap();
    let counters: Vec<u64> = parse_cri_log(&text)
        .iter()
        .filter_map(|l| l.3.strip_prefix("tick-").and_then(|n| n.parse().ok()))
        .collect();
    assert!(
        counters.windows(2).all(|w| w[1] == w[0] + 1),
        "lines lost across the restart: {counters:?}"
    );

    let quit = wait_state(
        &mut rt,
        &quitter,
        cri::ContainerState::ContainerExited,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(quit.exit_code, 42, "{quit:?}");
    assert_eq!(quit.reason, "Error");
    assert!(
        quit.finished_at >= quit.started_at && quit.started_at > 0,
        "{quit:?}"
    );

    // The created container can still be started.
    let st = container_status(&mut rt, &created).await;
    assert_eq!(
        st.state,
        cri::ContainerState::ContainerCreated as i32,
        "{st:?}"
    );
    start(&mut rt, &created).await;
    let done = wait_state(
        &mut rt,
        &created,
        cri::ContainerState::ContainerExited,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(done.reason, "Completed");

    // The restored daemon still stops and removes everything.
    rt.stop_container(cri::StopContainerRequest {
        container_id: tick.clone(),
        timeout: 1,
    })
    .await
    .unwrap();
    remove_pod(&mut rt, &pod).await;
    assert_nothing_left(&daemon, &mut rt).await;
}

#[tokio::test]
async fn a_running_container_survives_a_daemon_restart() {
    survives(Signal::SIGTERM).await;
}

#[tokio::test]
async fn a_running_container_survives_a_daemon_sigkill() {
    survives(Signal::SIGKILL).await;
}

#[tokio::test]
async fn a_pod_whose_pause_died_while_the_daemon_was_down_is_not_ready_and_removable() {
    let mut daemon = builder()
        .config(WITH_INFRA)
        .bridge_network()
        .start()
        .await
        .expect("daemon");
    let (mut rt, _) = clients(&daemon).await;
    let config = pod_config(&daemon, "orphaned");
    let pod = run_pod(&mut rt, &config).await;
    let reply = rt
        .pod_sandbox_status(cri::PodSandboxStatusRequest {
            pod_sandbox_id: pod.clone(),
            verbose: true,
        })
        .await
        .unwrap()
        .into_inner();
    let info: serde_json::Value = serde_json::from_str(&reply.info["info"]).unwrap();
    let pause = info["pid"].as_u64().expect("pause pid") as i32;
    // kill(0) would hit this test's own process group.
    assert!(pause > 0, "no pause pid: {info}");
    drop(rt);
    daemon.stop().await.unwrap();
    // The pause process dies with nobody watching (as after an OOM kill or a crash).
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pause), Signal::SIGKILL).unwrap();
    eventually(
        "the pause process is gone",
        Duration::from_secs(5),
        || async move { (!std::path::Path::new(&format!("/proc/{pause}")).exists()).then_some(()) },
    )
    .await;
    daemon.restart().await.unwrap();
    let (mut rt, _) = clients(&daemon).await;
    let st = pod_status(&mut rt, &pod).await;
    assert_eq!(
        st.state,
        cri::PodSandboxState::SandboxNotready as i32,
        "{st:?}"
    );
    remove_pod(&mut rt, &pod).await;
    assert_nothing_left(&daemon, &mut rt).await;
}

#[tokio::test]
async fn a_pod_half_made_when_the_daemon_is_killed_is_collected_at_restart() {
    // A plugin after the bridge that hangs in ADD: the bridge has made a veth and taken an
    // IP when the daemon is killed.
    let plugins = tempfile::tempdir_in("/var/tmp").unwrap();
    let pid_file = plugins.path().join("slow-add.pid");
    let script = plugins.path().join("crius-e2e-slow");
    std::fs::write(
        &script,
        format!(
            r#"#!/bin/sh
cat >/dev/null
case "$CNI_COMMAND" in
ADD)
  echo $$ > {pid}
  exec sleep 30 ;;
VERSION)
  echo '{{"cniVersion":"1.0.0","supportedVersions":["0.3.1","0.4.0","1.0.0"]}}' ;;
esac
exit 0
"#,
            pid = pid_file.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let mut daemon = daemon_with_chain(
        plugins.path(),
        serde_json::json!([{"type": "crius-e2e-slow"}]),
    )
    .await;
    let (rt, _) = clients(&daemon).await;
    let config = pod_config(&daemon, "half-made");
    let run = {
        let mut rt = rt.clone();
        let config = config.clone();
        tokio::spawn(async move {
            rt.run_pod_sandbox(cri::RunPodSandboxRequest {
                config: Some(config),
                runtime_handler: String::new(),
            })
            .await
        })
    };
    let plugin_pid: i32 = eventually("the slow plugin runs", Duration::from_secs(15), || {
        let pid_file = pid_file.clone();
        async move { std::fs::read_to_string(&pid_file).ok()?.trim().parse().ok() }
    })
    .await;
    // The scenario is real: a netns pin and a reserved IP exist.
    assert_eq!(netns_pins(&daemon).len(), 1);
    assert_eq!(ipam_reserved(&daemon).len(), 1);

    daemon.signal(Signal::SIGKILL).unwrap();
    daemon.wait_exit(Duration::from_secs(10)).await.unwrap();
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(plugin_pid), Signal::SIGKILL);
    let outcome = tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("RunPodSandbox did not end with the daemon")
        .unwrap();
    assert!(outcome.is_err(), "{outcome:?}");
    drop(rt);

    daemon.restart().await.unwrap();
    let (mut rt, _) = clients(&daemon).await;
    assert_nothing_left(&daemon, &mut rt).await;
}

/// A pod with a running container, then a reboot of the machine while the daemon is down.
/// After it the pod is NotReady, the container Exited (never Running with no process), a
/// repeated RunPodSandbox makes a new pod, and the kubelet's stop and remove of the old one
/// succeed and release everything, the IP included.
async fn after_a_reboot(tmpfs_run: bool) {
    let mut daemon = bridge_daemon().await;
    let (mut rt, mut images) = clients(&daemon).await;
    pull(&mut images, &busybox()).await;
    let config = pod_config(&daemon, "rebooted");
    let pod = run_pod(&mut rt, &config).await;
    let ctr = run_container(&mut rt, &pod, &config, ticker("ticker")).await;
    let created = create(
        &mut rt,
        &pod,
        &config,
        container_config("never-started", &["true"]),
    )
    .await;
    drop((rt, images));
    daemon.stop().await.unwrap();
    daemon.simulate_reboot(tmpfs_run).unwrap();

    daemon.restart().await.unwrap();
    let (mut rt, _) = clients(&daemon).await;
    let st = pod_status(&mut rt, &pod).await;
    assert_eq!(
        st.state,
        cri::PodSandboxState::SandboxNotready as i32,
        "{st:?}"
    );
    let gone = container_status(&mut rt, &ctr).await;
    assert_eq!(
        gone.state,
        cri::ContainerState::ContainerExited as i32,
        "{gone:?}"
    );
    assert!(gone.finished_at > 0, "{gone:?}");
    assert_ne!(gone.exit_code, 0, "{gone:?}");
    let never = container_status(&mut rt, &created).await;
    assert_ne!(
        never.state,
        cri::ContainerState::ContainerRunning as i32,
        "{never:?}"
    );

    // The kubelet makes a new sandbox (attempt 1) and removes the old one.
    let mut again = config.clone();
    again.metadata.as_mut().unwrap().attempt = 1;
    let new_pod = run_pod(&mut rt, &again).await;
    assert_ne!(new_pod, pod);
    assert_eq!(
        pod_status(&mut rt, &new_pod).await.state,
        cri::PodSandboxState::SandboxReady as i32
    );
    rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
        pod_sandbox_id: pod.clone(),
    })
    .await
    .unwrap_or_else(|e| panic!("StopPodSandbox after the reboot: {e:?}"));
    remove_pod(&mut rt, &pod).await;
    remove_pod(&mut rt, &new_pod).await;
    assert_nothing_left(&daemon, &mut rt).await;
}

#[tokio::test]
async fn after_a_reboot_with_a_lasting_run_dir_pods_are_not_ready_and_removable() {
    after_a_reboot(false).await;
}

#[tokio::test]
async fn after_a_reboot_with_a_tmpfs_run_dir_pods_are_not_ready_and_removable() {
    after_a_reboot(true).await;
}
