//! Containers as the kubelet drives them: lifecycle and exit reasons, CRI logs, stop with a
//! grace period, remove, list filters, ExecSync (output, exit code, timeout), log reopen,
//! resource updates, OOM kills and the event stream.

mod common;

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use crius_e2e::cri;

fn state(s: cri::ContainerState) -> i32 {
    s as i32
}

#[tokio::test]
async fn a_container_exiting_7_goes_created_running_exited_with_reason_error_and_cri_logs() {
    let mut f = pod_fixture("lifecycle").await;
    // Waits for /cue/go (a host dir) so the test sees Running before the exit. The cue
    // comes from the host so that this test does not hinge on an exec racing the exit
    // (exec_sync_that_ends_the_container_still_returns_its_result covers that).
    let cue = f.daemon.dir.join("cue-exit7");
    std::fs::create_dir_all(&cue).unwrap();
    let script = "echo out-line-1; echo err-line-1 >&2; echo out-line-2; \
                  while [ ! -f /cue/go ]; do sleep 0.05; done; echo err-line-2 >&2; exit 7";
    let mut config = shell("exit7", script);
    config.mounts.push(cri::Mount {
        container_path: "/cue".into(),
        host_path: cue.display().to_string(),
        ..Default::default()
    });
    config
        .annotations
        .insert("crius.e2e/kind".into(), "lifecycle".into());
    let before = now_ns();
    let id = f.create(config.clone()).await;
    let created = container_status(&mut f.rt, &id).await;
    assert_eq!(created.state, state(cri::ContainerState::ContainerCreated));
    assert!(created.created_at >= before, "{created:?}");
    assert_eq!(created.started_at, 0);
    assert_eq!(created.finished_at, 0);
    assert_eq!(created.metadata, config.metadata);
    assert_eq!(created.labels, config.labels);
    assert_eq!(created.annotations, config.annotations);
    assert_eq!(created.image.as_ref().unwrap().image, busybox());
    assert_eq!(
        created.image_id,
        crius_e2e::fixture("CRIUS_TEST_BUSYBOX_ID").unwrap()
    );
    assert!(created.image_ref.contains("sha256:"), "{created:?}");
    let log_path = f.log_dir().join("exit7.log");
    assert_eq!(created.log_path, log_path.display().to_string());

    start(&mut f.rt, &id).await;
    let running = container_status(&mut f.rt, &id).await;
    assert_eq!(running.state, state(cri::ContainerState::ContainerRunning));
    assert!(running.started_at >= running.created_at, "{running:?}");
    assert_eq!(running.finished_at, 0);

    std::fs::write(cue.join("go"), "").unwrap();
    let exited = wait_state(
        &mut f.rt,
        &id,
        cri::ContainerState::ContainerExited,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(exited.exit_code, 7, "{exited:?}");
    assert_eq!(exited.reason, "Error");
    assert!(exited.finished_at >= exited.started_at, "{exited:?}");
    assert!(exited.finished_at <= now_ns());
    assert_eq!(exited.started_at, running.started_at);
    // The runtime's state of an exited container goes at once, not at RemoveContainer.
    wait_runtime_state_gone(&f.daemon, &id).await;

    let log = eventually("all four lines in the log", Duration::from_secs(5), || {
        let path = log_path.clone();
        async move {
            let text = std::fs::read_to_string(&path).ok()?;
            (text.lines().count() >= 4).then_some(text)
        }
    })
    .await;
    let lines = parse_cri_log(&log);
    assert_eq!(lines.len(), 4, "{log}");
    for (time, stream, tag, _) in &lines {
        assert!(is_rfc3339_nano(time), "bad time stamp {time:?} in {log}");
        assert!(stream == "stdout" || stream == "stderr", "{log}");
        assert_eq!(tag, "F", "{log}");
    }
    let of = |s: &str| -> Vec<String> {
        lines
            .iter()
            .filter(|l| l.1 == s)
            .map(|l| l.3.clone())
            .collect()
    };
    assert_eq!(of("stdout"), vec!["out-line-1", "out-line-2"], "{log}");
    assert_eq!(of("stderr"), vec!["err-line-1", "err-line-2"], "{log}");
    // The last line came after the exec, so last in time too.
    assert_eq!(lines[3].3, "err-line-2", "{log}");

    // Exit 0 is Completed.
    let ok = f.run(shell("exit0", "echo fine")).await;
    let done = wait_state(
        &mut f.rt,
        &ok,
        cri::ContainerState::ContainerExited,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(done.exit_code, 0);
    assert_eq!(done.reason, "Completed");
    // An exited container cannot be started again.
    let err =
        f.rt.start_container(cri::StartContainerRequest {
            container_id: ok.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
    f.finish().await;
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

#[tokio::test]
async fn a_long_line_is_logged_in_partial_chunks_that_reassemble() {
    let mut f = pod_fixture("longline").await;
    // 100000 'a's and a newline, then a short line and a last line without a newline.
    let id = f
        .run(shell(
            "long",
            "head -c 100000 /dev/zero | tr '\\0' a; echo; echo short; printf tail-no-newline",
        ))
        .await;
    let st = wait_state(
        &mut f.rt,
        &id,
        cri::ContainerState::ContainerExited,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(st.exit_code, 0, "{st:?}");
    let text = std::fs::read_to_string(f.log_dir().join("long.log")).unwrap();
    // Reassemble as the kubelet does: P chunks join the next chunk, F ends a line.
    let mut lines = Vec::new();
    let mut current = String::new();
    for (time, stream, tag, msg) in parse_cri_log(&text) {
        assert!(is_rfc3339_nano(&time), "{time}");
        assert_eq!(stream, "stdout");
        current.push_str(&msg);
        match tag.as_str() {
            "F" => lines.push(std::mem::take(&mut current)),
            "P" => {}
            other => panic!("tag {other:?} is neither P nor F"),
        }
    }
    if !current.is_empty() {
        lines.push(current);
    }
    assert_eq!(
        lines.len(),
        3,
        "{:?}",
        lines.iter().map(|l| l.len()).collect::<Vec<_>>()
    );
    assert_eq!(lines[0].len(), 100_000);
    assert!(lines[0].bytes().all(|b| b == b'a'));
    assert_eq!(lines[1], "short");
    assert_eq!(lines[2], "tail-no-newline");
    assert!(
        parse_cri_log(&text).len() > 3,
        "a 100000-byte line was written as one record"
    );
    f.finish().await;
}

#[tokio::test]
async fn stop_container_honours_the_timeout_then_sigkills_and_returns_once_gone() {
    let mut f = pod_fixture("stop").await;
    // sleep as PID 1 has no SIGTERM handler, so SIGTERM does nothing: only SIGKILL ends it.
    let id = f.run(sleeper()).await;
    let pid = f.pid(&id).await;
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    let started = Instant::now();
    f.rt.stop_container(cri::StopContainerRequest {
        container_id: id.clone(),
        timeout: 2,
    })
    .await
    .unwrap();
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(2),
        "returned after {took:?}, before the 2 s grace period"
    );
    assert!(took < Duration::from_secs(7), "took {took:?}");
    // Gone when StopContainer returns: no waiting here.
    let st = container_status(&mut f.rt, &id).await;
    assert_eq!(
        st.state,
        state(cri::ContainerState::ContainerExited),
        "{st:?}"
    );
    assert_eq!(st.exit_code, 137, "{st:?}");
    assert_eq!(st.reason, "Error");
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "pid {pid} still there"
    );
    // Stopping again succeeds at once.
    let again = Instant::now();
    f.rt.stop_container(cri::StopContainerRequest {
        container_id: id.clone(),
        timeout: 2,
    })
    .await
    .unwrap();
    assert!(again.elapsed() < Duration::from_secs(1));

    // A process that handles SIGTERM stops within the grace period, with its own code.
    let polite = f
        .run(shell(
            "polite",
            "trap 'exit 0' TERM; while true; do sleep 0.05; done",
        ))
        .await;
    let started = Instant::now();
    f.rt.stop_container(cri::StopContainerRequest {
        container_id: polite.clone(),
        timeout: 30,
    })
    .await
    .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let st = container_status(&mut f.rt, &polite).await;
    assert_eq!(st.state, state(cri::ContainerState::ContainerExited));
    assert_eq!(st.exit_code, 0, "{st:?}");
    assert_eq!(st.reason, "Completed");
    f.finish().await;
}

#[tokio::test]
async fn remove_container_of_a_running_container_works_and_is_idempotent() {
    let mut f = pod_fixture("remove").await;
    let id = f.run(container_config("doomed", &["sleep", "3600"])).await;
    let pid = f.pid(&id).await;
    let rootfs = f.daemon.root.join("containers").join(&id);
    assert!(
        !mounts_under(&rootfs).is_empty(),
        "no rootfs mount under {}",
        rootfs.display()
    );
    for _ in 0..2 {
        f.rt.remove_container(cri::RemoveContainerRequest {
            container_id: id.clone(),
        })
        .await
        .expect("RemoveContainer (again) succeeds");
    }
    let err =
        f.rt.container_status(cri::ContainerStatusRequest {
            container_id: id.clone(),
            verbose: false,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound, "{err:?}");
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "pid {pid} survives"
    );
    assert!(mounts_under(&rootfs).is_empty());
    assert!(!rootfs.exists());
    assert!(!f.daemon.runroot.join("containers").join(&id).exists());
    let listed =
        f.rt.list_containers(cri::ListContainersRequest { filter: None })
            .await
            .unwrap()
            .into_inner()
            .containers;
    assert!(listed.is_empty(), "{listed:?}");
    // The name is free again.
    let again = f.run(container_config("doomed", &["sleep", "3600"])).await;
    assert_ne!(again, id);
    f.finish().await;
}

#[tokio::test]
async fn list_containers_filters_by_id_prefix_pod_state_and_labels() {
    let mut f = pod_fixture("list-a").await;
    let other_cfg = pod_config(&f.daemon, "list-b");
    let other = run_pod(&mut f.rt, &other_cfg).await;

    let mut c1 = container_config("running", &["sleep", "3600"]);
    c1.labels.insert("tier".into(), "front".into());
    let running = f.run(c1).await;
    let mut c2 = container_config("created", &["sleep", "3600"]);
    c2.labels.insert("tier".into(), "front".into());
    let created = f.create(c2).await;
    let exited = run_container(&mut f.rt, &other, &other_cfg, shell("exited", "exit 0")).await;
    wait_state(
        &mut f.rt,
        &exited,
        cri::ContainerState::ContainerExited,
        Duration::from_secs(10),
    )
    .await;

    let mut rt = f.rt.clone();
    let list = |filter: cri::ContainerFilter| {
        let mut rt = rt.clone();
        async move {
            rt.list_containers(cri::ListContainersRequest {
                filter: Some(filter),
            })
            .await
            .unwrap()
            .into_inner()
            .containers
            .into_iter()
            .map(|c| c.id)
            .collect::<HashSet<_>>()
        }
    };
    let set = |ids: &[&String]| ids.iter().map(|s| s.to_string()).collect::<HashSet<_>>();
    let all = list(cri::ContainerFilter::default()).await;
    assert_eq!(all, set(&[&running, &created, &exited]));

    let prefix = |id: &str| {
        let others = [&running, &created, &exited];
        let n = (1..64)
            .find(|&n| others.iter().filter(|o| o.starts_with(&id[..n])).count() == 1)
            .unwrap();
        id[..n].to_string()
    };
    assert_eq!(
        list(cri::ContainerFilter {
            id: prefix(&running),
            ..Default::default()
        })
        .await,
        set(&[&running])
    );
    assert_eq!(
        list(cri::ContainerFilter {
            id: created.clone(),
            ..Default::default()
        })
        .await,
        set(&[&created])
    );
    assert_eq!(
        list(cri::ContainerFilter {
            pod_sandbox_id: f.pod.clone(),
            ..Default::default()
        })
        .await,
        set(&[&running, &created])
    );
    assert_eq!(
        list(cri::ContainerFilter {
            pod_sandbox_id: other.clone(),
            ..Default::default()
        })
        .await,
        set(&[&exited])
    );
    for (s, want) in [
        (cri::ContainerState::ContainerRunning, &running),
        (cri::ContainerState::ContainerCreated, &created),
        (cri::ContainerState::ContainerExited, &exited),
    ] {
        assert_eq!(
            list(cri::ContainerFilter {
                state: Some(cri::ContainerStateValue { state: s as i32 }),
                ..Default::default()
            })
            .await,
            set(&[want]),
            "state {s:?}"
        );
    }
    let labels = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    assert_eq!(
        list(cri::ContainerFilter {
            label_selector: labels(&[("tier", "front")]),
            ..Default::default()
        })
        .await,
        set(&[&running, &created])
    );
    assert_eq!(
        list(cri::ContainerFilter {
            label_selector: labels(&[("tier", "front"), ("name", "created")]),
            ..Default::default()
        })
        .await,
        set(&[&created])
    );
    // Filters combine: pod + state + labels.
    assert_eq!(
        list(cri::ContainerFilter {
            pod_sandbox_id: f.pod.clone(),
            state: Some(cri::ContainerStateValue {
                state: cri::ContainerState::ContainerRunning as i32
            }),
            label_selector: labels(&[("tier", "front")]),
            ..Default::default()
        })
        .await,
        set(&[&running])
    );
    assert!(list(cri::ContainerFilter {
        label_selector: labels(&[("tier", "back")]),
        ..Default::default()
    })
    .await
    .is_empty());
    // The listed fields.
    let item = rt
        .list_containers(cri::ListContainersRequest {
            filter: Some(cri::ContainerFilter {
                id: running.clone(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .containers
        .remove(0);
    assert_eq!(item.pod_sandbox_id, f.pod);
    assert_eq!(item.metadata.unwrap().name, "running");
    assert_eq!(item.state, state(cri::ContainerState::ContainerRunning));
    assert_eq!(item.labels.get("tier").map(String::as_str), Some("front"));
    assert!(item.created_at > 0);

    remove_pod(&mut f.rt, &other).await;
    f.finish().await;
}

#[tokio::test]
async fn exec_sync_returns_stdout_stderr_and_exit_code_and_times_out() {
    let mut f = pod_fixture("exec").await;
    let id = f.run(container_config("target", &["sleep", "3600"])).await;
    let out = try_exec(
        &mut f.rt,
        &id,
        &["sh", "-c", "echo to-stdout; echo to-stderr >&2; exit 3"],
        10,
    )
    .await
    .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "to-stdout\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "to-stderr\n");
    assert_eq!(out.exit_code, 3);
    // A megabyte of output arrives whole, stdout and stderr apart.
    let out = try_exec(
        &mut f.rt,
        &id,
        &[
            "sh",
            "-c",
            "head -c 1048576 /dev/zero | tr '\\0' o; head -c 65536 /dev/zero | tr '\\0' e >&2",
        ],
        20,
    )
    .await
    .unwrap();
    assert_eq!(out.exit_code, 0);
    assert_eq!(out.stdout.len(), 1 << 20);
    assert!(out.stdout.iter().all(|b| *b == b'o'));
    assert_eq!(out.stderr.len(), 1 << 16);
    assert!(out.stderr.iter().all(|b| *b == b'e'));
    // Runs in the container: its hostname and rootfs.
    assert_eq!(exec_ok(&mut f.rt, &id, &["hostname"]).await.trim(), "exec");
    // No timeout (0) is fine too.
    let out = try_exec(&mut f.rt, &id, &["true"], 0).await.unwrap();
    assert_eq!(out.exit_code, 0);
    // A command that does not exist is an error or a non-zero exit, not a hang.
    match try_exec(&mut f.rt, &id, &["/no/such/binary"], 10).await {
        Ok(out) => assert_ne!(out.exit_code, 0),
        Err(status) => assert_ne!(status.code(), tonic::Code::Ok),
    }

    // Timeout: DeadlineExceeded within about timeout + 2 s, and the process is gone.
    let started = Instant::now();
    let err = try_exec(&mut f.rt, &id, &["sleep", "61"], 2)
        .await
        .expect_err("ExecSync must time out");
    let took = started.elapsed();
    assert_eq!(err.code(), tonic::Code::DeadlineExceeded, "{err:?}");
    assert!(took >= Duration::from_secs(2), "{took:?}");
    assert!(took <= Duration::from_secs(4), "{took:?}");
    let ps = exec_ok(&mut f.rt, &id, &["ps", "-o", "pid,args"]).await;
    assert!(
        !ps.contains("sleep 61"),
        "the timed-out exec still runs:\n{ps}"
    );

    // ExecSync in a container that is not running (created, or exited) is refused.
    let idle = f.create(container_config("idle", &["sleep", "3600"])).await;
    let err = try_exec(&mut f.rt, &idle, &["true"], 5).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
    let stopped = f.run(shell("done", "exit 0")).await;
    wait_state(
        &mut f.rt,
        &stopped,
        cri::ContainerState::ContainerExited,
        Duration::from_secs(10),
    )
    .await;
    let err = try_exec(&mut f.rt, &stopped, &["true"], 5)
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
    f.finish().await;
}

#[tokio::test]
async fn exec_sync_that_ends_the_container_still_returns_its_result() {
    let mut f = pod_fixture("exec-ends").await;
    let mut failures = Vec::new();
    for round in 0..5 {
        // The init spins until /tmp/go exists, so it exits right after the exec's touch,
        // while `runc exec` is still on its way out.
        let id = f
            .run(shell(
                &format!("ender-{round}"),
                "while [ ! -f /tmp/go ]; do :; done; exit 3",
            ))
            .await;
        // The touch finishes; what follows it in the container is killed with the init.
        // Either way ExecSync owes an answer: 0 from touch, or 137 if the kill came first.
        match try_exec(&mut f.rt, &id, &["touch", "/tmp/go"], 10).await {
            Ok(out) if out.exit_code == 0 || out.exit_code == 137 => {}
            other => failures.push(format!("round {round}: {other:?}")),
        }
        wait_state(
            &mut f.rt,
            &id,
            cri::ContainerState::ContainerExited,
            Duration::from_secs(10),
        )
        .await;
    }
    assert!(failures.is_empty(), "{failures:#?}");
    f.finish().await;
}

#[tokio::test]
async fn ten_containers_started_in_parallel_in_one_pod_all_run_and_stop_with_the_pod() {
    let mut f = pod_fixture("crowd").await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..10 {
        let (mut rt, pod, config) = (f.rt.clone(), f.pod.clone(), f.config.clone());
        tasks.spawn(async move {
            run_container(
                &mut rt,
                &pod,
                &config,
                container_config(&format!("c{i}"), &["sleep", "3600"]),
            )
            .await
        });
    }
    let mut ids = HashSet::new();
    while let Some(r) = tasks.join_next().await {
        assert!(ids.insert(r.unwrap()), "an id was handed out twice");
    }
    for id in &ids {
        let st = container_status(&mut f.rt, id).await;
        assert_eq!(
            st.state,
            state(cri::ContainerState::ContainerRunning),
            "{st:?}"
        );
    }
    // A created, never started container is stopped at once too.
    let idle = f.create(container_config("idle", &["sleep", "3600"])).await;
    let started = Instant::now();
    f.rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
        pod_sandbox_id: f.pod.clone(),
    })
    .await
    .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "StopPodSandbox took {:?}",
        started.elapsed()
    );
    for id in ids.iter().chain([&idle]) {
        let st = container_status(&mut f.rt, id).await;
        assert_eq!(
            st.state,
            state(cri::ContainerState::ContainerExited),
            "{st:?}"
        );
    }
    f.finish().await;
}

#[tokio::test]
async fn stop_container_of_a_created_container_needs_no_grace_period() {
    let mut f = pod_fixture("stop-created").await;
    let id = f.create(container_config("idle", &["sleep", "3600"])).await;
    let started = Instant::now();
    f.rt.stop_container(cri::StopContainerRequest {
        container_id: id.clone(),
        timeout: 30,
    })
    .await
    .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let st = container_status(&mut f.rt, &id).await;
    assert_eq!(
        st.state,
        state(cri::ContainerState::ContainerExited),
        "{st:?}"
    );
    let err =
        f.rt.start_container(cri::StartContainerRequest {
            container_id: id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
    f.rt.remove_container(cri::RemoveContainerRequest { container_id: id })
        .await
        .unwrap();
    f.finish().await;
}

fn last_counter(text: &str) -> Option<u64> {
    parse_cri_log(text)
        .iter()
        .rev()
        .find_map(|l| l.3.strip_prefix("line-").and_then(|n| n.parse().ok()))
}

#[tokio::test]
async fn reopen_container_log_after_a_move_writes_new_lines_into_a_new_file() {
    let mut f = pod_fixture("reopen").await;
    let id = f
        .run(shell(
            "ticker",
            "i=0; while true; do echo line-$i; i=$((i+1)); sleep 0.1; done",
        ))
        .await;
    let log = f.log_dir().join("ticker.log");
    let rotated = f.log_dir().join("ticker.log.1");
    eventually("first lines logged", Duration::from_secs(5), || {
        let log = log.clone();
        async move { last_counter(&std::fs::read_to_string(&log).ok()?).filter(|n| *n >= 2) }
    })
    .await;
    std::fs::rename(&log, &rotated).unwrap();
    f.rt.reopen_container_log(cri::ReopenContainerLogRequest {
        container_id: id.clone(),
    })
    .await
    .unwrap();
    let new_text = eventually("lines in the new file", Duration::from_secs(5), || {
        let log = log.clone();
        async move {
            let text = std::fs::read_to_string(&log).ok()?;
            (parse_cri_log(&text).len() >= 3).then_some(text)
        }
    })
    .await;
    let old_text = std::fs::read_to_string(&rotated).unwrap();
    let old_last = last_counter(&old_text).unwrap();
    let first_new: u64 = parse_cri_log(&new_text)
        .iter()
        .find_map(|l| l.3.strip_prefix("line-").and_then(|n| n.parse().ok()))
        .unwrap();
    assert_eq!(
        first_new,
        old_last + 1,
        "lines lost or doubled across the reopen\nold:\n{old_text}\nnew:\n{new_text}"
    );
    for (time, stream, tag, _) in parse_cri_log(&new_text) {
        assert!(
            is_rfc3339_nano(&time) && stream == "stdout" && tag == "F",
            "{new_text}"
        );
    }
    // The old file no longer grows.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(std::fs::read_to_string(&rotated).unwrap(), old_text);
    f.finish().await;
}

#[tokio::test]
async fn user_env_workdir_readonly_rootfs_and_mounts_shape_the_process() {
    let mut f = pod_fixture("shape").await;
    let sc = |sc: cri::LinuxContainerSecurityContext| {
        Some(cri::LinuxContainerConfig {
            security_context: Some(sc),
            ..Default::default()
        })
    };
    let mut by_uid = container_config("by-uid", &["sleep", "3600"]);
    by_uid.linux = sc(cri::LinuxContainerSecurityContext {
        run_as_user: Some(cri::Int64Value { value: 1000 }),
        ..Default::default()
    });
    let by_uid = f.run(by_uid).await;
    assert_eq!(
        exec_ok(&mut f.rt, &by_uid, &["id", "-u"]).await.trim(),
        "1000"
    );
    assert_eq!(
        exec_ok(&mut f.rt, &by_uid, &["id", "-g"]).await.trim(),
        "1000"
    );

    let mut by_name = container_config("by-name", &["sleep", "3600"]);
    by_name.linux = sc(cri::LinuxContainerSecurityContext {
        run_as_username: "crius-user".into(),
        ..Default::default()
    });
    let by_name = f.run(by_name).await;
    let id = exec_ok(&mut f.rt, &by_name, &["id"]).await;
    assert!(id.contains("uid=1000(crius-user)"), "{id}");
    assert!(id.contains("gid=1000(crius-user)"), "{id}");
    assert!(
        id.contains("2000(crius-extra)"),
        "supplementary group missing: {id}"
    );
    // ContainerStatus tells the same identity, and Strict leaves out the image's groups.
    let user = container_status(&mut f.rt, &by_name)
        .await
        .user
        .and_then(|u| u.linux)
        .expect("ContainerStatus.user");
    assert_eq!((user.uid, user.gid), (1000, 1000), "{user:?}");
    assert_eq!(user.supplemental_groups, vec![1000, 2000], "{user:?}");
    let mut strict = container_config("strict", &["sleep", "3600"]);
    strict.linux = sc(cri::LinuxContainerSecurityContext {
        run_as_username: "crius-user".into(),
        supplemental_groups: vec![3000],
        supplemental_groups_policy: cri::SupplementalGroupsPolicy::Strict as i32,
        ..Default::default()
    });
    let strict = f.run(strict).await;
    assert_eq!(
        exec_ok(&mut f.rt, &strict, &["id", "-G"]).await.trim(),
        "1000 3000"
    );
    let user = container_status(&mut f.rt, &strict).await.user.unwrap();
    assert_eq!(user.linux.unwrap().supplemental_groups, vec![1000, 3000]);

    let mut ro = container_config("ro", &["sleep", "3600"]);
    ro.linux = sc(cri::LinuxContainerSecurityContext {
        readonly_rootfs: true,
        ..Default::default()
    });
    ro.envs.push(cri::KeyValue {
        key: "CRIUS_E2E".into(),
        value: "from the config".into(),
    });
    ro.working_dir = "/etc".into();
    let host = f.daemon.dir.join("shared");
    std::fs::create_dir_all(&host).unwrap();
    std::fs::write(host.join("hello"), "from the host\n").unwrap();
    ro.mounts = vec![
        cri::Mount {
            container_path: "/data".into(),
            host_path: host.display().to_string(),
            ..Default::default()
        },
        cri::Mount {
            container_path: "/ro".into(),
            host_path: host.display().to_string(),
            readonly: true,
            ..Default::default()
        },
    ];
    let ro = f.run(ro).await;
    let out = try_exec(&mut f.rt, &ro, &["touch", "/rootfs-write"], 10)
        .await
        .unwrap();
    assert_ne!(out.exit_code, 0, "the read-only rootfs took a write");
    assert_eq!(
        exec_ok(&mut f.rt, &ro, &["sh", "-c", "echo $CRIUS_E2E"]).await,
        "from the config\n"
    );
    assert_eq!(exec_ok(&mut f.rt, &ro, &["pwd"]).await.trim(), "/etc");
    assert_eq!(
        exec_ok(&mut f.rt, &ro, &["cat", "/data/hello"]).await,
        "from the host\n"
    );
    exec_ok(
        &mut f.rt,
        &ro,
        &["sh", "-c", "echo from the container > /data/back"],
    )
    .await;
    assert_eq!(
        std::fs::read_to_string(host.join("back")).unwrap(),
        "from the container\n"
    );
    let out = try_exec(&mut f.rt, &ro, &["touch", "/ro/denied"], 10)
        .await
        .unwrap();
    assert_ne!(out.exit_code, 0, "a read-only mount took a write");
    assert!(!host.join("denied").exists());
    // The image's PATH is kept.
    let env = exec_ok(&mut f.rt, &ro, &["env"]).await;
    assert!(
        env.lines()
            .any(|l| l.starts_with("PATH=") && l.contains("/bin")),
        "{env}"
    );
    f.finish().await;
}

const MIB: i64 = 1024 * 1024;

#[tokio::test]
async fn update_container_resources_changes_the_memory_limit_seen_inside() {
    let mut f = pod_fixture("update").await;
    let id = f
        .run(memory_limited("limited", &["sleep", "3600"], 64 * MIB))
        .await;
    let read = |rt: &mut Runtime| {
        let mut rt = rt.clone();
        let id = id.clone();
        async move {
            exec_ok(
                &mut rt,
                &id,
                &["cat", "/sys/fs/cgroup/memory/memory.limit_in_bytes"],
            )
            .await
            .trim()
            .parse::<i64>()
            .expect("a number")
        }
    };
    assert_eq!(read(&mut f.rt).await, 64 * MIB);
    f.rt.update_container_resources(cri::UpdateContainerResourcesRequest {
        container_id: id.clone(),
        linux: Some(cri::LinuxContainerResources {
            memory_limit_in_bytes: 128 * MIB,
            ..Default::default()
        }),
        windows: None,
        annotations: Default::default(),
    })
    .await
    .unwrap();
    assert_eq!(read(&mut f.rt).await, 128 * MIB);
    // CPU limits too.
    f.rt.update_container_resources(cri::UpdateContainerResourcesRequest {
        container_id: id.clone(),
        linux: Some(cri::LinuxContainerResources {
            memory_limit_in_bytes: 128 * MIB,
            cpu_period: 100_000,
            cpu_quota: 50_000,
            cpu_shares: 512,
            ..Default::default()
        }),
        windows: None,
        annotations: Default::default(),
    })
    .await
    .unwrap();
    let cpu = exec_ok(
        &mut f.rt,
        &id,
        &[
            "cat",
            "/sys/fs/cgroup/cpu/cpu.cfs_quota_us",
            "/sys/fs/cgroup/cpu/cpu.cfs_period_us",
            "/sys/fs/cgroup/cpu/cpu.shares",
        ],
    )
    .await;
    assert_eq!(
        cpu.split_whitespace().collect::<Vec<_>>(),
        vec!["50000", "100000", "512"]
    );
    assert_eq!(read(&mut f.rt).await, 128 * MIB);
    let st = container_status(&mut f.rt, &id).await;
    assert_eq!(
        st.resources
            .and_then(|r| r.linux)
            .map(|l| l.memory_limit_in_bytes),
        Some(128 * MIB)
    );
    f.finish().await;
}

#[tokio::test]
async fn a_container_over_its_memory_limit_is_oom_killed() {
    let mut f = pod_fixture("oom").await;
    // tail keeps the endless "line" of /dev/zero in memory until the limit kills it.
    let id = f
        .run(memory_limited("hog", &["tail", "/dev/zero"], 32 * MIB))
        .await;
    let st = wait_state(
        &mut f.rt,
        &id,
        cri::ContainerState::ContainerExited,
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(st.reason, "OOMKilled", "{st:?}");
    assert_eq!(st.exit_code, 137, "{st:?}");
    f.finish().await;
}

#[tokio::test]
async fn get_container_events_streams_created_started_stopped_deleted() {
    let mut f = pod_fixture("events").await;
    let mut stream =
        f.rt.get_container_events(cri::GetEventsRequest {})
            .await
            .unwrap()
            .into_inner();
    let id = f.run(container_config("watched", &["sleep", "3600"])).await;
    f.rt.stop_container(cri::StopContainerRequest {
        container_id: id.clone(),
        timeout: 0,
    })
    .await
    .unwrap();
    f.rt.remove_container(cri::RemoveContainerRequest {
        container_id: id.clone(),
    })
    .await
    .unwrap();

    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while seen.len() < 4 {
        let left = deadline.saturating_duration_since(Instant::now());
        let ev = tokio::time::timeout(left, stream.message())
            .await
            .unwrap_or_else(|_| panic!("events so far: {seen:?}"))
            .unwrap()
            .expect("stream ended");
        if ev.container_id != id {
            continue;
        }
        let kind = cri::ContainerEventType::try_from(ev.container_event_type).unwrap();
        if kind != cri::ContainerEventType::ContainerDeletedEvent {
            let pod = ev.pod_sandbox_status.as_ref().expect("pod status in event");
            assert_eq!(pod.id, f.pod);
            assert!(
                ev.containers_statuses.iter().any(|c| c.id == id),
                "{kind:?} event lacks the container's status"
            );
        }
        assert!(ev.created_at > 0);
        seen.push(kind);
    }
    assert_eq!(
        seen,
        vec![
            cri::ContainerEventType::ContainerCreatedEvent,
            cri::ContainerEventType::ContainerStartedEvent,
            cri::ContainerEventType::ContainerStoppedEvent,
            cri::ContainerEventType::ContainerDeletedEvent,
        ]
    );

    // The pod's own events: one Stopped (the pause dies, and StopPodSandbox tells of it
    // once), then Deleted.
    f.rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
        pod_sandbox_id: f.pod.clone(),
    })
    .await
    .unwrap();
    f.rt.remove_pod_sandbox(cri::RemovePodSandboxRequest {
        pod_sandbox_id: f.pod.clone(),
    })
    .await
    .unwrap();
    let mut pod_events = Vec::new();
    while pod_events.last() != Some(&cri::ContainerEventType::ContainerDeletedEvent) {
        let left = deadline.saturating_duration_since(Instant::now());
        let ev = tokio::time::timeout(left, stream.message())
            .await
            .unwrap_or_else(|_| panic!("pod events so far: {pod_events:?}"))
            .unwrap()
            .expect("stream ended");
        if ev.container_id == f.pod {
            pod_events.push(cri::ContainerEventType::try_from(ev.container_event_type).unwrap());
        }
    }
    assert_eq!(
        pod_events,
        vec![
            cri::ContainerEventType::ContainerStoppedEvent,
            cri::ContainerEventType::ContainerDeletedEvent,
        ]
    );
    f.finish().await;
}

#[tokio::test]
async fn recursive_read_only_mounts_cover_submounts_where_the_handler_can() {
    let mut f = pod_fixture("rro").await;
    let status =
        f.rt.status(cri::StatusRequest { verbose: false })
            .await
            .unwrap()
            .into_inner();
    let rro = |name: &str| {
        status
            .runtime_handlers
            .iter()
            .find(|h| h.name == name)
            .and_then(|h| h.features)
            .map(|f| f.recursive_read_only_mounts)
    };
    // runc 1.1 lists "rro" in `runc features`; Debian's crun 1.8 has no `features`.
    assert_eq!(rro("runc"), Some(true), "{status:?}");
    assert_eq!(rro(""), Some(true), "the default handler, runc: {status:?}");
    assert_eq!(rro("crun"), Some(false), "{status:?}");

    // A host dir with a tmpfs mounted below it.
    let host = f.daemon.dir.join("rro-volume");
    let sub = host.join("tmpfs");
    std::fs::create_dir_all(&sub).unwrap();
    nix::mount::mount(
        Some("tmpfs"),
        &sub,
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .unwrap();
    let volume = |recursive: bool| cri::Mount {
        container_path: "/mnt".into(),
        host_path: host.display().to_string(),
        readonly: true,
        recursive_read_only: recursive,
        ..Default::default()
    };
    let write_sub = ["sh", "-c", "touch /mnt/tmpfs/probe 2>&1 || true"];

    let mut plain = container_config("ro", &["sleep", "3600"]);
    plain.mounts.push(volume(false));
    let plain = f.run(plain).await;
    // Read-only alone covers the bind mount, not what is mounted below it.
    assert_eq!(exec_ok(&mut f.rt, &plain, &write_sub).await, "");

    let mut rro_config = container_config("rro", &["sleep", "3600"]);
    rro_config.mounts.push(volume(true));
    let rro_ctr = f.run(rro_config).await;
    let out = exec_ok(&mut f.rt, &rro_ctr, &write_sub).await;
    assert!(out.contains("Read-only file system"), "{out:?}");

    // rro with a propagation other than private, or without readonly, is refused.
    for (readonly, propagation) in [
        (true, cri::MountPropagation::PropagationHostToContainer),
        (false, cri::MountPropagation::PropagationPrivate),
    ] {
        let mut bad = container_config("rro-bad", &["true"]);
        bad.mounts.push(cri::Mount {
            readonly,
            propagation: propagation as i32,
            ..volume(true)
        });
        let err =
            f.rt.create_container(cri::CreateContainerRequest {
                pod_sandbox_id: f.pod.clone(),
                config: Some(bad),
                sandbox_config: Some(f.config.clone()),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    }
    let _ = nix::mount::umount2(&sub, nix::mount::MntFlags::MNT_DETACH);
    f.finish().await;
}
