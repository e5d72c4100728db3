//! Stopping and restarting the daemon under load: calls in flight finish before it exits,
//! and containers keep running while it is down and are found again when it is back.

mod common;

use std::time::{Duration, Instant};

use common::*;
use crius_e2e::{cri, describe_exit};
use nix::sys::signal::Signal;

#[tokio::test]
async fn sigterm_lets_a_call_in_flight_finish_before_exiting() {
    let mut daemon = builder().start().await.expect("daemon");
    let (mut rt, mut images) = clients(&daemon).await;
    pull(&mut images, &busybox()).await;
    let cfg = host_network(pod_config(&daemon, "inflight"));
    let pod = run_pod(&mut rt, &cfg).await;
    let ctr = run_container(
        &mut rt,
        &pod,
        &cfg,
        container_config("sleeper", &["sleep", "3600"]),
    )
    .await;

    // An ExecSync that takes 2 s is in flight when SIGTERM arrives.
    let mut exec_rt = rt.clone();
    let exec = tokio::spawn(async move {
        try_exec(
            &mut exec_rt,
            &ctr,
            &["sh", "-c", "sleep 2; echo finished"],
            30,
        )
        .await
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let signalled = Instant::now();
    daemon.signal(Signal::SIGTERM).unwrap();
    let status = daemon.wait_exit(Duration::from_secs(20)).await.unwrap();
    let stopped_after = signalled.elapsed();
    assert!(status.success(), "{}", describe_exit(&status));

    let reply = exec
        .await
        .unwrap()
        .expect("the call in flight failed instead of finishing");
    assert_eq!(reply.exit_code, 0);
    assert_eq!(String::from_utf8_lossy(&reply.stdout), "finished\n");
    assert!(
        stopped_after >= Duration::from_millis(1000),
        "exited {stopped_after:?} after SIGTERM, before the call could finish"
    );
    assert!(!daemon.socket.exists());
}

async fn containers_outlive_the_daemon(signal: Signal) {
    let mut daemon = builder().bridge_network().start().await.expect("daemon");
    let (mut rt, mut images) = clients(&daemon).await;
    pull(&mut images, &busybox()).await;
    let cfg = pod_config(&daemon, "survivor");
    let pod = run_pod(&mut rt, &cfg).await;
    let ip = pod_status(&mut rt, &pod).await.network.expect("network").ip;
    let ctr = run_container(
        &mut rt,
        &pod,
        &cfg,
        shell(
            "counter",
            "while true; do date +%s%N >> /tmp/ticks; sleep 0.1; done",
        ),
    )
    .await;
    let before = exec_ok(&mut rt, &ctr, &["wc", "-l", "/tmp/ticks"]).await;

    daemon.signal(signal).unwrap();
    daemon.wait_exit(Duration::from_secs(20)).await.unwrap();
    // The container keeps writing while nothing serves CRI.
    tokio::time::sleep(Duration::from_millis(700)).await;
    daemon.restart().await.unwrap();

    let (mut rt, _images) = clients(&daemon).await;
    let status = container_status(&mut rt, &ctr).await;
    assert_eq!(
        status.state,
        cri::ContainerState::ContainerRunning as i32,
        "{status:?}"
    );
    let pod_now = pod_status(&mut rt, &pod).await;
    assert_eq!(
        pod_now.state,
        cri::PodSandboxState::SandboxReady as i32,
        "{pod_now:?}"
    );
    assert_eq!(pod_now.network.expect("network").ip, ip);
    let after = exec_ok(&mut rt, &ctr, &["wc", "-l", "/tmp/ticks"]).await;
    let count = |s: &str| {
        s.split_whitespace()
            .next()
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0)
    };
    assert!(
        count(&after) >= count(&before) + 5,
        "the container did not run while the daemon was down: {before:?} -> {after:?}"
    );

    // And it can still be stopped and removed through the restarted daemon.
    rt.stop_container(cri::StopContainerRequest {
        container_id: ctr.clone(),
        timeout: 2,
    })
    .await
    .expect("StopContainer after restart");
    remove_pod(&mut rt, &pod).await;
    assert_nothing_left(&daemon, &mut rt).await;
}

#[tokio::test]
async fn containers_outlive_a_sigterm_stop_and_are_found_after_restart() {
    containers_outlive_the_daemon(Signal::SIGTERM).await;
}

#[tokio::test]
async fn containers_outlive_a_sigkill_and_are_found_after_restart() {
    containers_outlive_the_daemon(Signal::SIGKILL).await;
}
