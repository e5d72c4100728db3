//! `kubectl debug --target`: a container with PID namespace mode TARGET joins the PID
//! namespace of another running container of its pod, through the CRI socket.

mod common;

use std::time::Duration;

use common::*;
use crius_e2e::cri;
use tonic::Code;

fn targeting(name: &str, script: &str, target: &str) -> cri::ContainerConfig {
    let mut c = shell(name, script);
    c.linux = Some(cri::LinuxContainerConfig {
        security_context: Some(cri::LinuxContainerSecurityContext {
            namespace_options: Some(cri::NamespaceOption {
                pid: cri::NamespaceMode::Target as i32,
                target_id: target.to_string(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    });
    c
}

#[tokio::test]
async fn a_debug_container_joins_the_pid_namespace_of_its_target() {
    // The fixture's pod gives each container a PID namespace of its own.
    let mut f = pod_fixture("debug-target").await;
    let target = f.run(shell("app", "exec sleep 3601")).await;
    let debug = f
        .run(targeting("debugger", "exec sleep 3600", &target))
        .await;
    // The target's init is pid 1 in the debugger's PID namespace.
    let cmdline = exec_ok(&mut f.rt, &debug, &["cat", "/proc/1/cmdline"]).await;
    assert!(cmdline.starts_with("sleep"), "pid 1 is {cmdline:?}");
    let mine = exec_ok(
        &mut f.rt,
        &debug,
        &["sh", "-c", "ls /proc | grep -c '^[0-9]'"],
    )
    .await;
    assert!(mine.trim().parse::<u32>().unwrap_or(0) >= 2, "{mine}");
    // A container of its own namespace sees only itself as pid 1.
    let own = exec_ok(&mut f.rt, &target, &["cat", "/proc/1/cmdline"]).await;
    assert!(own.starts_with("sleep"), "{own:?}");

    // Bad targets, each refused before anything is made.
    let cases: [(&str, String, Code, &str); 3] = [
        (
            "no-target",
            String::new(),
            Code::InvalidArgument,
            "target_id",
        ),
        (
            "missing",
            "0123456789abcdef".into(),
            Code::NotFound,
            "0123456789abcdef",
        ),
        (
            "itself-created",
            f.create(shell("created", "sleep 1")).await,
            Code::FailedPrecondition,
            "not running",
        ),
    ];
    for (name, target_id, code, word) in cases {
        let err = f
            .try_create(targeting(name, "true", &target_id))
            .await
            .expect_err(name);
        assert_eq!(err.code(), code, "{name}: {err:?}");
        assert!(err.message().contains(word), "{name}: {err:?}");
    }
    // A target in another pod.
    let other_config = pod_config(&f.daemon, "other");
    let other = run_pod(&mut f.rt, &other_config).await;
    let err =
        f.rt.create_container(cri::CreateContainerRequest {
            pod_sandbox_id: other.clone(),
            config: Some(targeting("cross", "true", &target)),
            sandbox_config: Some(other_config),
        })
        .await
        .expect_err("a target in another pod");
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("not in pod"), "{err:?}");
    remove_pod(&mut f.rt, &other).await;
    wait_state(
        &mut f.rt,
        &debug,
        cri::ContainerState::ContainerRunning,
        Duration::from_secs(5),
    )
    .await;
    f.finish().await;
}
