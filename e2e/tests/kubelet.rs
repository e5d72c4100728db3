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
use crius_e2e::kubelet::{Kubelet, Pod, KERNEL_TUNABLES};

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

/// The messages of a CRI log (`<time> <stream> <P|F> <message>` lines), partial lines
/// joined with the lines that complete them.
fn log_messages(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut partial = String::new();
    for (_, _, tag, msg) in common::parse_cri_log(text) {
        partial.push_str(&msg);
        if tag != "P" {
            out.push(std::mem::take(&mut partial));
        }
    }
    out
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
    let host_tunables = || -> Vec<String> {
        KERNEL_TUNABLES
            .iter()
            .map(|(name, _)| fs::read_to_string(Path::new("/proc/sys").join(name)).unwrap())
            .collect()
    };
    let tunables_before = host_tunables();
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

    // The kubelet checked its kernel tunables and made its /var/log/containers links in
    // the test's files, not the host's.
    assert_eq!(
        host_tunables(),
        tunables_before,
        "the host's kernel tunables changed"
    );
    let links = common::dir_entries(&kubelet.var_log_dir().join("containers"));
    assert_eq!(links.len(), 3, "one link per container: {links:?}");
    let static_name = kubelet.static_pod_name("share");
    assert!(
        links
            .iter()
            .all(|l| l.starts_with(&format!("{static_name}_e2e_"))),
        "{links:?}"
    );
    let host_links = common::dir_entries(Path::new("/var/log/containers"));
    assert!(
        !host_links.iter().any(|l| l.contains(&kubelet.node_name)),
        "links on the host: {host_links:?}"
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

/// A pod manifest: `name` in namespace `e2e`, a 1 s grace period, an emptyDir `state` at
/// /state in every container, and `containers` (YAML list items, indented by two).
fn manifest(name: &str, restart_policy: &str, containers: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
  namespace: e2e
spec:
  restartPolicy: {restart_policy}
  terminationGracePeriodSeconds: 1
  volumes:
  - name: state
    emptyDir: {{}}
  containers:
{containers}"#
    )
}

/// A busybox container item for [`manifest`] running `script`, with extra YAML `more`
/// (indented by four).
fn container(name: &str, script: &str, more: &str) -> String {
    format!(
        r#"  - name: {name}
    image: {image}
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", {script:?}]
    volumeMounts: [{{name: state, mountPath: /state}}]
{more}"#,
        image = busybox()
    )
}

/// Shell that counts this container's runs in the emptyDir and prints `<label> run <n>`.
fn count_runs(label: &str) -> String {
    format!(
        "n=$(( $(cat /state/runs 2>/dev/null || echo 0) + 1 )); echo $n > /state/runs; echo {label} run $n"
    )
}

#[tokio::test]
async fn failing_liveness_probe_restarts_the_container_and_the_previous_log_stays_readable() {
    let test = "failing_liveness_probe_restarts_the_container_and_the_previous_log_stays_readable";
    // A 1 s back-off cap keeps the second restart quick.
    let Some(kubelet) = Kubelet::builder()
        .config(
            "crashLoopBackOff",
            serde_json::json!({"maxContainerRestartPeriod": "1s"}),
        )
        .start_or_skip(test)
        .await
    else {
        return;
    };
    // Healthy for 2 s, then the probe's file goes and the probe fails.
    let script = format!(
        "{}; touch /tmp/healthy; sleep 2; rm /tmp/healthy; echo unhealthy now; exec sleep 3600",
        count_runs("live")
    );
    let probe = r#"    livenessProbe:
      exec: {command: ["cat", "/tmp/healthy"]}
      periodSeconds: 1
      failureThreshold: 1
"#;
    let yaml = manifest("liveness", "Always", &container("live", &script, probe));
    kubelet.write_manifest("liveness", &yaml).unwrap();

    let pod = kubelet
        .wait_for_pod(
            "liveness",
            "restarted twice by its liveness probe",
            Duration::from_secs(45),
            |p| {
                p.container("live")
                    .is_some_and(|c| c.restart_count >= 2 && c.state.running.is_some())
            },
        )
        .await
        .unwrap();
    let live = pod.container("live").unwrap();
    let attempt = live.restart_count;
    // The previous run was killed by the kubelet (SIGKILL after the 1 s grace: `sleep` as
    // PID 1 ignores SIGTERM), not ended on its own.
    let last = live
        .last_state
        .terminated
        .as_ref()
        .unwrap_or_else(|| panic!("no last state: {live:?}"));
    assert_eq!(last.exit_code, 137, "{live:?}");

    // This run's log and the previous run's, at <restart>.log, each with its own run.
    let current = wait_for_log_line(
        &kubelet.container_log_path(&pod, "live", attempt),
        "live run",
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(
        log_messages(&current)[0],
        format!("live run {}", attempt + 1)
    );
    let previous_path = kubelet.container_log_path(&pod, "live", attempt - 1);
    let previous = fs::read_to_string(&previous_path)
        .unwrap_or_else(|e| panic!("previous log {}: {e}", previous_path.display()));
    assert_eq!(
        log_messages(&previous),
        [format!("live run {attempt}"), "unhealthy now".to_string()],
        "{previous}"
    );
    if let Some(out) = kubelet.crictl(&["logs", "--previous", live.cri_id()]) {
        assert!(out.status.success(), "crictl logs --previous: {out:?}");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("live run {attempt}\nunhealthy now\n")
        );
    } else {
        assert!(!crius_e2e::peers::in_ci(), "CI needs the crictl peer");
    }

    // The probe's own failures are exec results, never CRI errors.
    // Past the second restart the kubelet removes the oldest dead run as it goes.
    kubelet.assert_no_unexplained_cri_errors(&[]);
}

#[tokio::test]
async fn readiness_probe_flips_the_ready_condition_both_ways() {
    let test = "readiness_probe_flips_the_ready_condition_both_ways";
    let Some(kubelet) = Kubelet::builder().start_or_skip(test).await else {
        return;
    };
    let probe = r#"    readinessProbe:
      exec: {command: ["cat", "/tmp/ready"]}
      periodSeconds: 1
      failureThreshold: 1
      successThreshold: 1
"#;
    let yaml = manifest(
        "readiness",
        "Always",
        &container("server", "exec sleep 3600", probe),
    );
    kubelet.write_manifest("readiness", &yaml).unwrap();
    let timeout = Duration::from_secs(30);
    let ready_is = |want: bool| {
        move |p: &Pod| {
            p.container("server")
                .is_some_and(|c| c.state.running.is_some() && c.ready == want)
                && p.condition("Ready") == Some(want)
                && p.condition("ContainersReady") == Some(want)
        }
    };
    // Running but not ready: the probe's file is not there yet.
    let pod = kubelet
        .wait_for_pod(
            "readiness",
            "running, not ready",
            POD_START,
            ready_is(false),
        )
        .await
        .unwrap();
    let id = container_id(&pod, "server");
    let mut rt = kubelet.crius.runtime_client().await.unwrap();

    common::exec_ok(&mut rt, &id, &["touch", "/tmp/ready"]).await;
    kubelet
        .wait_for_pod(
            "readiness",
            "ready once the file is there",
            timeout,
            ready_is(true),
        )
        .await
        .unwrap();
    common::exec_ok(&mut rt, &id, &["rm", "/tmp/ready"]).await;
    let pod = kubelet
        .wait_for_pod(
            "readiness",
            "not ready once it is gone",
            timeout,
            ready_is(false),
        )
        .await
        .unwrap();
    // Readiness never restarts anything.
    assert_eq!(pod.container("server").unwrap().restart_count, 0);
    kubelet.assert_no_unexplained_cri_errors(&[]);
}

#[tokio::test]
async fn crashing_container_goes_through_the_kubelets_back_off() {
    let test = "crashing_container_goes_through_the_kubelets_back_off";
    // Back-off capped at 2 s (from 10 s): restarts are spaced out, yet a few fit in seconds.
    let Some(kubelet) = Kubelet::builder()
        .config(
            "crashLoopBackOff",
            serde_json::json!({"maxContainerRestartPeriod": "2s"}),
        )
        .start_or_skip(test)
        .await
    else {
        return;
    };
    // Each run notes when it started (the host's uptime: no time namespace here) in the
    // emptyDir, which outlives the runs, and fails at once.
    let script = format!(
        "{}; cut -d' ' -f1 /proc/uptime >> /state/starts; exit 3",
        count_runs("crash")
    );
    let yaml = manifest("crasher", "Always", &container("crasher", &script, ""));
    kubelet.write_manifest("crasher", &yaml).unwrap();

    // Watch every /pods answer for the waiting reasons shown.
    let mut reasons = std::collections::BTreeSet::new();
    let full = kubelet.static_pod_name("crasher");
    let pod = kubelet
        .wait_for(
            "the crasher restarted 3 times, CrashLoopBackOff shown",
            Duration::from_secs(45),
            |list| {
                let pod = list.items.iter().find(|p| p.metadata.name == full)?;
                let c = pod.container("crasher")?;
                if let Some(w) = &c.state.waiting {
                    reasons.insert(w.reason.clone());
                }
                (c.restart_count >= 3 && reasons.contains("CrashLoopBackOff")).then(|| pod.clone())
            },
        )
        .await
        .unwrap();
    let c = pod.container("crasher").unwrap();
    let last = c.last_state.terminated.as_ref().expect("a last state");
    assert_eq!(
        (last.exit_code, last.reason.as_str()),
        (3, "Error"),
        "{c:?}"
    );
    assert_eq!(pod.status.phase, "Running", "{pod:?}");

    // Each run ends at once. The kubelet restarts it right away the first time, then only
    // once the back-off (2 s here, 10 s by default) has passed since the last exit.
    let starts_file = kubelet
        .root_dir
        .join("pods")
        .join(&pod.metadata.uid)
        .join("volumes/kubernetes.io~empty-dir/state/starts");
    // restartCount 3 can be shown as the fourth run starts, a moment before its script
    // has noted itself: give it that moment.
    let read_starts = || -> Vec<f64> {
        fs::read_to_string(&starts_file)
            .unwrap_or_else(|e| panic!("{}: {e}", starts_file.display()))
            .lines()
            .map(|l| l.trim().parse().unwrap())
            .collect()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut starts = read_starts();
    while starts.len() < 4 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        starts = read_starts();
    }
    assert!(starts.len() >= 4, "{starts:?}");
    let gaps: Vec<f64> = starts.windows(2).map(|w| w[1] - w[0]).collect();
    for (i, gap) in gaps.iter().enumerate().skip(1) {
        assert!(
            *gap >= 1.9,
            "restart {} came {gap:.2} s after the run before: no back-off (gaps {gaps:?})",
            i + 1
        );
    }
    // The runs counted themselves; the log of the current run says which it is.
    let log = fs::read_to_string(kubelet.container_log_path(&pod, "crasher", c.restart_count))
        .unwrap_or_default();
    if !log.is_empty() {
        assert_eq!(
            log_messages(&log),
            [format!("crash run {}", c.restart_count + 1)]
        );
    }
    // The kubelet removes the older dead runs of the crashing container as it goes.
    kubelet.assert_no_unexplained_cri_errors(&[]);
}

/// Every file of a container's log, oldest first: the rotated ones
/// (`0.log.<time>[.gz]`, gunzipped) and then the current one; with their names.
fn read_rotated_logs(current: &Path) -> Vec<(String, String)> {
    let dir = current.parent().expect("a log dir");
    let base = current.file_name().unwrap().to_string_lossy().into_owned();
    let mut rotated: Vec<String> = common::dir_entries(dir)
        .into_iter()
        .filter(|n| n.starts_with(&format!("{base}.")) && !n.ends_with(".tmp"))
        .collect();
    // `0.log.20261206-031500` sorts by its time, with or without `.gz`.
    rotated.sort_by_key(|n| n.trim_end_matches(".gz").to_string());
    let mut out = Vec::new();
    for name in rotated.into_iter().chain(std::iter::once(base)) {
        let path = dir.join(&name);
        let Ok(bytes) = fs::read(&path) else {
            continue; // rotated or compressed away meanwhile
        };
        let text = if name.ends_with(".gz") {
            let mut text = String::new();
            let mut gz = flate2::read::GzDecoder::new(&bytes[..]);
            if std::io::Read::read_to_string(&mut gz, &mut text).is_err() {
                continue;
            }
            text
        } else {
            String::from_utf8_lossy(&bytes).into_owned()
        };
        out.push((name, text));
    }
    out
}

#[tokio::test]
async fn kubelet_rotates_container_logs_through_reopen_without_losing_or_repeating_a_line() {
    let test = "kubelet_rotates_container_logs_through_reopen_without_losing_or_repeating_a_line";
    // 1 KiB logs checked every 3 s (the kubelet's minimum interval); 10 files kept, so
    // every rotated file of the run is still there at the end.
    let Some(kubelet) = Kubelet::builder()
        .container_log_max("1Ki", 10)
        .config("containerLogMonitorInterval", serde_json::json!("3s"))
        .start_or_skip(test)
        .await
    else {
        return;
    };
    const LINES: u32 = 600;
    // ~50 lines a second for ~12 s: ~2.5 KiB of log a second, rotated at each check.
    let script = format!(
        "i=0; while [ $i -lt {LINES} ]; do i=$((i+1)); echo line $i; sleep 0.02; done; echo done; exec sleep 3600"
    );
    let yaml = manifest("logger", "Always", &container("counter", &script, ""));
    kubelet.write_manifest("logger", &yaml).unwrap();
    let pod = kubelet.wait_running("logger", POD_START).await.unwrap();
    let current = kubelet.container_log_path(&pod, "counter", 0);

    // Once the counter is done and the files settle, the lines of all files, oldest first,
    // are 1..=LINES, each once. A read that races a rotation or a compression is retried.
    let want: Vec<String> = (1..=LINES)
        .map(|i| format!("line {i}"))
        .chain(std::iter::once("done".to_string()))
        .collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    let files = loop {
        let files = read_rotated_logs(&current);
        let got: Vec<String> = files.iter().flat_map(|(_, t)| log_messages(t)).collect();
        if got == want {
            break files;
        }
        if std::time::Instant::now() >= deadline {
            let mut seen = std::collections::BTreeMap::<&str, u32>::new();
            for line in &got {
                *seen.entry(line.as_str()).or_default() += 1;
            }
            let missing: Vec<&String> = want
                .iter()
                .filter(|w| !seen.contains_key(w.as_str()))
                .collect();
            let repeated: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
            let names: Vec<&String> = files.iter().map(|(n, _)| n).collect();
            panic!(
                "the log files {names:?} hold {} lines; missing {missing:?}; repeated {repeated:?}; out of order: {}\n{}",
                got.len(),
                missing.is_empty() && repeated.is_empty(),
                kubelet.log_tail(40)
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    let rotated = names.len() - 1;
    assert!(
        rotated >= 2,
        "the kubelet rotated the log {rotated} times: {names:?}"
    );
    // Each rotation renamed the file and had crius reopen it.
    let crius_log = kubelet.crius.log();
    let reopens = crius_log
        .lines()
        .filter(|l| l.contains("method=\"ReopenContainerLog\"") && l.contains(" ok "))
        .count();
    assert!(
        reopens >= rotated,
        "{rotated} rotations but {reopens} ReopenContainerLog calls answered ok"
    );
    kubelet.assert_no_unexplained_cri_errors(&[]);
}

/// Every cgroup below `root` (in every hierarchy) whose name holds `needle`.
fn cgroups_named(root: &str, needle: &str) -> Vec<String> {
    fn walk(dir: &Path, needle: &str, out: &mut Vec<String>) {
        for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                if entry.file_name().to_string_lossy().contains(needle) {
                    out.push(entry.path().display().to_string());
                }
                walk(&entry.path(), needle, out);
            }
        }
    }
    let mut out = Vec::new();
    for dir in common::cgroup_dirs(root) {
        walk(&dir, needle, &mut out);
    }
    out
}

#[tokio::test]
async fn removing_the_manifest_stops_and_removes_the_pod_leaving_nothing() {
    let test = "removing_the_manifest_stops_and_removes_the_pod_leaving_nothing";
    // It counts the pause's cgroup among crius's.
    let Some(kubelet) = Kubelet::builder()
        .crius(|c| c.config(common::WITH_INFRA))
        .start_or_skip(test)
        .await
    else {
        return;
    };
    let yaml = manifest(
        "doomed",
        "Always",
        &format!(
            "{}{}",
            container("first", "exec sleep 3600", ""),
            container("second", "exec sleep 3600", "")
        ),
    );
    kubelet.write_manifest("doomed", &yaml).unwrap();
    let pod = kubelet.wait_running("doomed", POD_START).await.unwrap();
    let uid = pod.metadata.uid.clone();
    let crius = &kubelet.crius;
    let mut rt = crius.runtime_client().await.unwrap();

    // What the pod holds while it runs: a sandbox, its netns, a veth on the bridge, an IP,
    // mounts (rootfs, shm), the kubelet's pod cgroup and crius's cgroups below it.
    let pods = common::list_pods(&mut rt, None).await;
    assert_eq!(pods.len(), 1, "{pods:?}");
    assert_eq!(pods[0].metadata.as_ref().unwrap().uid, uid);
    assert_eq!(common::netns_pins(crius).len(), 1);
    let bridge = crius.bridge.as_ref().unwrap();
    let brif = Path::new("/sys/class/net").join(&bridge.name).join("brif");
    assert_eq!(
        common::dir_entries(&brif).len(),
        1,
        "one veth on {}",
        bridge.name
    );
    assert_eq!(
        common::ipam_reserved(crius),
        vec![pod.status.pod_ip.clone()]
    );
    assert!(!common::mounts_under(&crius.dir).is_empty());
    let pod_cgroup = format!("pod{uid}");
    assert!(
        !cgroups_named(&kubelet.cgroup_root, &pod_cgroup).is_empty(),
        "no kubelet pod cgroup {pod_cgroup} under {}",
        kubelet.cgroup_root
    );
    assert_eq!(
        cgroups_named(&kubelet.cgroup_root, "crius-").len() % 3,
        0,
        "crius's cgroups: the pause and two containers, in each hierarchy"
    );

    kubelet.remove_manifest("doomed").unwrap();
    kubelet
        .wait_gone("doomed", Duration::from_secs(30))
        .await
        .unwrap();
    // The kubelet stops the pod at once and removes its sandbox at its next container
    // garbage collection (once a minute, counted from its start).
    common::eventually(
        "crius holds no pod and no container",
        Duration::from_secs(75),
        || {
            let mut rt = rt.clone();
            async move {
                let pods = common::list_pods(&mut rt, None).await;
                let ctrs = rt
                    .list_containers(crius_e2e::cri::ListContainersRequest { filter: None })
                    .await
                    .ok()?
                    .into_inner()
                    .containers;
                (pods.is_empty() && ctrs.is_empty()).then_some(())
            }
        },
    )
    .await;
    // No pod record, netns, mount (under crius's root and run dir and the kubelet's root,
    // all inside the test dir), veth or IP is left ...
    common::assert_nothing_left(crius, &mut rt).await;
    // ... nor any cgroup of the pod, the kubelet's or crius's, in any hierarchy.
    common::eventually(
        "the pod's cgroups are gone",
        Duration::from_secs(10),
        || {
            let left: Vec<String> = cgroups_named(&kubelet.cgroup_root, &pod_cgroup)
                .into_iter()
                .chain(cgroups_named(&kubelet.cgroup_root, "crius-"))
                .collect();
            async move { left.is_empty().then_some(()) }
        },
    )
    .await;
    // The kubelet's own record of the pod goes too.
    let pod_dir = kubelet.root_dir.join("pods").join(&uid);
    common::eventually(
        "the kubelet removed its pod dir",
        Duration::from_secs(10),
        || {
            let gone = !pod_dir.exists();
            async move { gone.then_some(()) }
        },
    )
    .await;
    kubelet.assert_no_unexplained_cri_errors(&[Kubelet::VERSION_CANCELED]);
}
