//! The real kubelet (standalone, static pods) drives crius: pods with init containers and
//! shared volumes, logs where the kubelet and crictl look for them, probes, restarts and
//! back-off, log rotation, and removal leaving nothing behind. Each test has its own
//! kubelet, crius, bridge, ports and cgroup root ([`crius_e2e::kubelet`]); each checks that
//! every CRI error the kubelet logged is one it expects and explains.

mod common;

use std::fs;
use std::path::Path;
use std::time::Duration;

use common::busybox;
use crius_e2e::kubelet::{Kubelet, Pod};

/// How long a pod may take to come up under the kubelet (image pull included).
const POD_START: Duration = Duration::from_secs(60);

/// Reads `path` until it holds a line containing `needle`; the file's text.
async fn wait_for_log_line(path: &Path, needle: &str, timeout: Duration) -> String {
    common::eventually(
        &format!("{} holds a line with {needle:?}", path.display()),
        timeout,
        || async {
            let text = fs::read_to_string(path).ok()?;
            text.lines().any(|l| l.contains(needle)).then_some(text)
        },
    )
    .await
}

/// The message part of each CRI log line (`<time> <stream> <P|F> <message>`).
fn log_messages(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.splitn(4, ' ').nth(3))
        .map(str::to_string)
        .collect()
}

fn container_id(pod: &Pod, name: &str) -> String {
    pod.container(name)
        .or_else(|| pod.init_container(name))
        .unwrap_or_else(|| panic!("pod {} has no container {name}", pod.metadata.name))
        .cri_id()
        .to_string()
}

#[tokio::test]
async fn init_container_then_two_containers_sharing_an_empty_dir_run_with_logs_at_the_kubelet_paths(
) {
    let test = "init_container_then_two_containers_sharing_an_empty_dir_run_with_logs_at_the_kubelet_paths";
    let Some(kubelet) = Kubelet::builder().start_or_skip(test).await else {
        return;
    };
    let image = busybox();
    let manifest = format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: share
  namespace: e2e
spec:
  terminationGracePeriodSeconds: 2
  volumes:
  - name: shared
    emptyDir: {{}}
  initContainers:
  - name: init
    image: {image}
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "echo init-was-here > /shared/init; echo init says hello"]
    volumeMounts: [{{name: shared, mountPath: /shared}}]
  containers:
  - name: writer
    image: {image}
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "echo writer started; echo written-by-writer > /shared/msg.tmp; mv /shared/msg.tmp /shared/msg; exec sleep 3600"]
    volumeMounts: [{{name: shared, mountPath: /shared}}]
  - name: reader
    image: {image}
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "echo reader saw $(cat /shared/init); until [ -f /shared/msg ]; do sleep 0.1; done; echo reader read $(cat /shared/msg); exec sleep 3600"]
    volumeMounts: [{{name: shared, mountPath: /shared}}]
"#
    );
    kubelet.write_manifest("share", &manifest).unwrap();
    let pod = kubelet.wait_running("share", POD_START).await.unwrap();

    // The init container ran to completion before the others.
    let init = pod.init_container("init").expect("init container status");
    let done = init
        .state
        .terminated
        .as_ref()
        .unwrap_or_else(|| panic!("init container not terminated: {init:?}"));
    assert_eq!((done.exit_code, done.reason.as_str()), (0, "Completed"));
    assert_eq!(pod.condition("Initialized"), Some(true), "{pod:?}");
    assert_eq!(pod.condition("Ready"), Some(true), "{pod:?}");
    for name in ["writer", "reader"] {
        let c = pod.container(name).unwrap();
        assert!(c.state.running.is_some(), "{name} not running: {c:?}");
        assert_eq!(c.restart_count, 0, "{name} restarted: {c:?}");
    }

    // The logs are where the kubelet keeps them: podLogsDir/<ns>_<pod>_<uid>/<ctr>/0.log.
    let log_dir = kubelet.pod_log_dir(&pod);
    assert_eq!(
        log_dir.file_name().unwrap().to_string_lossy(),
        format!(
            "e2e_{}_{}",
            kubelet.static_pod_name("share"),
            pod.metadata.uid
        )
    );
    let timeout = Duration::from_secs(20);
    let init_log = wait_for_log_line(
        &kubelet.container_log_path(&pod, "init", 0),
        "init says hello",
        timeout,
    )
    .await;
    assert_eq!(log_messages(&init_log), ["init says hello"], "{init_log}");
    assert!(
        init_log
            .lines()
            .all(|l| l.split(' ').nth(1) == Some("stdout")),
        "{init_log}"
    );
    wait_for_log_line(
        &kubelet.container_log_path(&pod, "writer", 0),
        "writer started",
        timeout,
    )
    .await;
    // The reader saw what the init container and the writer put into the emptyDir.
    let reader_log = wait_for_log_line(
        &kubelet.container_log_path(&pod, "reader", 0),
        "reader read",
        timeout,
    )
    .await;
    assert_eq!(
        log_messages(&reader_log),
        ["reader saw init-was-here", "reader read written-by-writer"],
        "{reader_log}"
    );
    // The emptyDir is the kubelet's dir on the host.
    let shared = kubelet
        .root_dir
        .join("pods")
        .join(&pod.metadata.uid)
        .join("volumes/kubernetes.io~empty-dir/shared/msg");
    assert_eq!(
        fs::read_to_string(&shared).unwrap_or_else(|e| panic!("{}: {e}", shared.display())),
        "written-by-writer\n"
    );

    // crictl reads the same logs through crius.
    let reader_id = container_id(&pod, "reader");
    let init_id = container_id(&pod, "init");
    if let Some(out) = kubelet.crictl(&["logs", &reader_id]) {
        assert!(out.status.success(), "crictl logs: {out:?}");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "reader saw init-was-here\nreader read written-by-writer\n"
        );
        let out = kubelet.crictl(&["logs", &init_id]).unwrap();
        assert!(out.status.success(), "crictl logs: {out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "init says hello\n");
    } else {
        eprintln!("{test}: crictl part skipped: the crictl peer is not built");
        assert!(!crius_e2e::peers::in_ci(), "CI needs the crictl peer");
    }

    kubelet.assert_no_unexplained_cri_errors(&[]);
}
