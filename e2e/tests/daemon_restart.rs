//! Stopping the daemon under load: calls in flight finish before it exits. (That containers
//! outlive a stopped or killed daemon is pinned in recovery.rs.)

mod common;

use std::time::{Duration, Instant};

use common::*;
use crius_e2e::describe_exit;
use nix::sys::signal::Signal;

#[tokio::test]
async fn sigterm_lets_a_call_in_flight_finish_before_exiting() {
    let mut daemon = builder().start().await.expect("daemon");
    let (mut rt, mut images) = clients(&daemon).await;
    pull(&mut images, &busybox()).await;
    let cfg = host_network(pod_config(&daemon, "inflight"));
    let pod = run_pod(&mut rt, &cfg).await;
    let ctr = run_container(&mut rt, &pod, &cfg, sleeper()).await;

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
