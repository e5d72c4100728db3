//! The real kubelet (standalone, static pods) and crius as a node: crius or the kubelet
//! restarted under running pods, the kubelet's image and container garbage collection,
//! `/stats/summary` and `/metrics/cadvisor` from crius's CRI stats and metrics, the evented PLEG fed by `GetContainerEvents`,
//! and host-network and host-port pods on loopback. Each test has its own kubelet, crius,
//! bridge, ports and cgroup root ([`crius_e2e::kubelet`]) and checks that every CRI error
//! the kubelet logged is one it expects and explains.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{busybox, eventually, free_port, Images, Runtime};
use crius_e2e::cri;
use crius_e2e::kubelet::{Kubelet, Pod};
use nix::sys::signal::Signal;
use serde_json::{json, Value};

/// How long a pod may take to come up under the kubelet (image pull included).
const POD_START: Duration = Duration::from_secs(60);

/// A static pod manifest: `name` in namespace `e2e`, with `spec` (YAML, indented by 2).
fn manifest(name: &str, spec: &str) -> String {
    format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: e2e\nspec:\n  terminationGracePeriodSeconds: 2\n{spec}")
}

/// One long-running busybox container `name` running `script`.
fn sleeper(name: &str, script: &str) -> String {
    format!(
        "  - name: {name}\n    image: {}\n    imagePullPolicy: IfNotPresent\n    command: [\"sh\", \"-c\", {script:?}]\n",
        busybox()
    )
}

async fn clients(kubelet: &Kubelet) -> (Runtime, Images) {
    common::clients(&kubelet.crius).await
}

/// When crius says the container `id` finished, in nanoseconds since the epoch (UTC).
async fn finished_at(kubelet: &Kubelet, id: &str) -> i64 {
    let (mut rt, _) = clients(kubelet).await;
    rt.container_status(cri::ContainerStatusRequest {
        container_id: id.to_string(),
        verbose: false,
    })
    .await
    .expect("ContainerStatus")
    .into_inner()
    .status
    .expect("ContainerStatus has no status")
    .finished_at
}

/// Every container crius holds: id -> (name, attempt, state).
async fn cri_containers(rt: &mut Runtime) -> BTreeMap<String, (String, u32, i32)> {
    rt.list_containers(cri::ListContainersRequest { filter: None })
        .await
        .expect("ListContainers")
        .into_inner()
        .containers
        .into_iter()
        .map(|c| {
            let m = c.metadata.unwrap_or_default();
            (c.id, (m.name, m.attempt, c.state))
        })
        .collect()
}

/// Every pod sandbox id crius holds, with its state.
async fn cri_pods(rt: &mut Runtime) -> BTreeMap<String, i32> {
    rt.list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
        .await
        .expect("ListPodSandbox")
        .into_inner()
        .items
        .into_iter()
        .map(|p| (p.id, p.state))
        .collect()
}

/// (container name, CRI id, restart count) of every container of a pod, sorted.
fn pod_containers(pod: &Pod) -> Vec<(String, String, u32)> {
    let mut v: Vec<_> = pod
        .status
        .container_statuses
        .iter()
        .map(|c| (c.name.clone(), c.cri_id().to_string(), c.restart_count))
        .collect();
    v.sort();
    v
}

/// What a node looks like to the kubelet and to crius: the pod's containers as the kubelet
/// reports them, and every container and pod crius holds.
#[derive(Debug, PartialEq)]
struct NodeView {
    kubelet: Vec<(String, String, u32)>,
    containers: BTreeMap<String, (String, u32, i32)>,
    pods: BTreeMap<String, i32>,
}

async fn node_view(kubelet: &Kubelet, rt: &mut Runtime, pod: &str) -> NodeView {
    let pod = kubelet
        .wait_running(pod, POD_START)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    NodeView {
        kubelet: pod_containers(&pod),
        containers: cri_containers(rt).await,
        pods: cri_pods(rt).await,
    }
}

/// A pod of two long-running containers, one of them with an exec readiness probe (so the
/// kubelet keeps calling into crius while it runs).
fn steady_pod() -> String {
    let mut spec = String::from("  containers:\n");
    spec.push_str(&sleeper("one", "exec sleep 3600"));
    spec.push_str(&sleeper("two", "touch /tmp/ready; exec sleep 3600"));
    spec.push_str(
        "    readinessProbe:\n      exec: {command: [\"cat\", \"/tmp/ready\"]}\n      periodSeconds: 1\n",
    );
    manifest("steady", &spec)
}

/// Waits until crius, freshly started, has answered the kubelet's relist (ListPodSandbox
/// and ListContainers in its new log), then lets the kubelet run a few sync periods (its
/// `syncFrequency` is 3 s) so that anything it would restart, it has restarted.
async fn let_the_kubelet_resync(kubelet: &Kubelet) {
    eventually(
        "crius answered the kubelet's relist after its restart",
        Duration::from_secs(20),
        || async {
            let log = kubelet.crius.log();
            (log.contains("method=\"ListPodSandbox\"") && log.contains("method=\"ListContainers\""))
                .then_some(())
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(8)).await;
}

/// A kubelet stopped by SIGTERM cancels its own calls in flight (its relist's
/// ListPodSandbox, and the PLEG error that follows): Go's "context canceled" comes from
/// the kubelet's side of the call, not from crius.
const KUBELET_STOPPING: &str = "rpc error: code = Canceled desc = context canceled";

/// CRI errors the kubelet logs while crius is down: every call fails to connect.
const CRIUS_DOWN: [&str; 3] = [
    "code = Unavailable",
    "connect: no such file or directory",
    "connect: connection refused",
];

#[tokio::test]
async fn crius_restarted_under_running_pods_by_sigterm_and_sigkill_restarts_no_container() {
    let test = "crius_restarted_under_running_pods_by_sigterm_and_sigkill_restarts_no_container";
    let Some(mut kubelet) = Kubelet::builder().start_or_skip(test).await else {
        return;
    };
    kubelet.write_manifest("steady", &steady_pod()).unwrap();
    let (mut rt, _) = clients(&kubelet).await;
    let before = node_view(&kubelet, &mut rt, "steady").await;
    assert_eq!(before.kubelet.len(), 2, "{before:?}");
    assert!(before.kubelet.iter().all(|(_, _, restarts)| *restarts == 0));
    assert_eq!(before.pods.len(), 1, "{before:?}");

    for signal in [Signal::SIGTERM, Signal::SIGKILL] {
        kubelet.crius.signal(signal).unwrap();
        let status = kubelet
            .crius
            .wait_exit(Duration::from_secs(20))
            .await
            .unwrap();
        if signal == Signal::SIGTERM {
            assert!(status.success(), "crius after SIGTERM: {status:?}");
        }
        // The kubelet runs on without its runtime for a moment, as on a real node.
        tokio::time::sleep(Duration::from_secs(2)).await;
        kubelet.crius.restart().await.unwrap();
        let_the_kubelet_resync(&kubelet).await;
        let (mut rt, _) = clients(&kubelet).await;
        let after = node_view(&kubelet, &mut rt, "steady").await;
        assert_eq!(
            after, before,
            "after crius got {signal}: the kubelet restarted or replaced something"
        );
    }
    // The kubelet saw crius go away (and said so) and came back to it.
    assert!(
        kubelet
            .cri_errors()
            .iter()
            .any(|l| l.contains("Unavailable")),
        "the kubelet never noticed crius was down"
    );
    kubelet.assert_no_unexplained_cri_errors(&CRIUS_DOWN);
}

#[tokio::test]
async fn a_container_that_exits_while_crius_is_down_is_reported_with_its_exit_and_restarted_once() {
    let test =
        "a_container_that_exits_while_crius_is_down_is_reported_with_its_exit_and_restarted_once";
    let Some(mut kubelet) = Kubelet::builder().start_or_skip(test).await else {
        return;
    };
    let mut spec = String::from("  containers:\n");
    spec.push_str(&sleeper("brief", "sleep 4; exit 3"));
    kubelet
        .write_manifest("brief", &manifest("brief", &spec))
        .unwrap();
    let first = kubelet.wait_running("brief", POD_START).await.unwrap();
    let first_id = first.container("brief").unwrap().cri_id().to_string();

    // crius dies; the container exits while it is away (its monitor records the exit).
    kubelet.crius.signal(Signal::SIGKILL).unwrap();
    kubelet
        .crius
        .wait_exit(Duration::from_secs(10))
        .await
        .unwrap();
    let down = std::time::SystemTime::now();
    tokio::time::sleep(Duration::from_secs(7)).await;
    let up = std::time::SystemTime::now();
    kubelet.crius.restart().await.unwrap();

    // The kubelet learns the exit from the restarted crius and starts the container again,
    // once.
    let pod = kubelet
        .wait_for_pod("brief", "restarted after the exit", POD_START, |p| {
            p.container("brief").is_some_and(|c| c.restart_count >= 1)
        })
        .await
        .unwrap();
    let status = pod.container("brief").unwrap();
    let last = status
        .last_state
        .terminated
        .as_ref()
        .unwrap_or_else(|| panic!("no terminated last state: {status:?}"));
    assert_eq!(last.exit_code, 3, "{status:?}");
    assert_eq!(
        last.container_id.split("://").nth(1),
        Some(first_id.as_str())
    );
    // The exit time is the real one, while crius was down, not when it came back.
    let finished_ns = finished_at(&kubelet, &first_id).await;
    let ns = |t: std::time::SystemTime| {
        t.duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as i64
    };
    assert!(
        (ns(down) - 1_000_000_000..ns(up)).contains(&finished_ns),
        "finished at {finished_ns}, crius was down from {} to {}",
        ns(down),
        ns(up)
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pod = kubelet.pod("brief").await.unwrap().unwrap();
    assert_eq!(pod.container("brief").unwrap().restart_count, 1, "{pod:?}");
    kubelet.assert_no_unexplained_cri_errors(&CRIUS_DOWN);
}

#[tokio::test]
async fn the_kubelet_restarted_under_running_pods_adopts_them_without_restarting_any() {
    let test = "the_kubelet_restarted_under_running_pods_adopts_them_without_restarting_any";
    let Some(mut kubelet) = Kubelet::builder().start_or_skip(test).await else {
        return;
    };
    kubelet.write_manifest("steady", &steady_pod()).unwrap();
    let (mut rt, _) = clients(&kubelet).await;
    let before = node_view(&kubelet, &mut rt, "steady").await;

    // A clean stop, then a crash: each new kubelet finds the pod in crius and keeps it.
    for signal in [Signal::SIGTERM, Signal::SIGKILL] {
        kubelet.signal(signal).unwrap();
        kubelet.restart().await.unwrap();
        // Its first relist, then a few sync periods in which it would restart anything
        // it did not adopt.
        tokio::time::sleep(Duration::from_secs(10)).await;
        let after = node_view(&kubelet, &mut rt, "steady").await;
        assert_eq!(
            after, before,
            "the kubelet restarted by {signal} replaced or restarted something"
        );
    }
    kubelet.assert_no_unexplained_cri_errors(&[KUBELET_STOPPING]);
}

/// `ImageFsInfo`'s image filesystem: (used bytes, inodes used).
async fn image_fs_usage(images: &mut Images) -> (u64, u64) {
    let info = images
        .image_fs_info(cri::ImageFsInfoRequest {})
        .await
        .expect("ImageFsInfo")
        .into_inner();
    let fs = info.image_filesystems.first().expect("an image filesystem");
    (
        fs.used_bytes.as_ref().map_or(0, |v| v.value),
        fs.inodes_used.as_ref().map_or(0, |v| v.value),
    )
}

/// Polls `check` until it gives a value, at most `timeout`; fails with what it saw last.
async fn eventually_or<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = (Option<T>, String)>,
{
    let deadline = Instant::now() + timeout;
    loop {
        let (value, seen) = check().await;
        if let Some(v) = value {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not within {timeout:?}: {seen}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Bytes (allocated) and inodes under `dir`, as `du` counts them.
fn du(dir: &std::path::Path) -> (u64, u64) {
    let count = |flag: &str| -> u64 {
        let out = Command::new("du")
            .args(["-s", flag])
            .arg(dir)
            .output()
            .expect("du");
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("du {flag} {}: {out:?}", dir.display()))
    };
    (count("--block-size=1"), count("--inodes"))
}

async fn image_ids(images: &mut Images) -> Vec<(String, Vec<String>, bool)> {
    images
        .list_images(cri::ListImagesRequest { filter: None })
        .await
        .expect("ListImages")
        .into_inner()
        .images
        .into_iter()
        .map(|i| (i.id, i.repo_tags, i.pinned))
        .collect()
}

#[tokio::test]
async fn the_kubelet_collects_unused_images_and_dead_containers_through_crius_and_keeps_the_pause_and_pinned_images(
) {
    let test = "the_kubelet_collects_unused_images_and_dead_containers_through_crius_and_keeps_the_pause_and_pinned_images";
    // The kubelet's periodic image GC runs every 5 minutes (a constant of kubelet v1.37,
    // `ImageGCPeriod`), and its first run, at start, never applies `imageMaximumGCAge`:
    // too slow for a test. Its eviction manager runs every 10 s and, when the image
    // filesystem is short of space, has the image GC delete every unused image
    // (`DeleteUnusedImages`) and the container GC every dead container it may. An
    // `imagefs.available` threshold of 99.9% puts the node under that pressure at once; it
    // reads the filesystem through crius's `ImageFsInfo`. Static pods are critical: the
    // pressure never evicts them. The age policy is set as a node would set it.
    // `pinned_images` pins one more unused image by a glob.
    let kept = common::pause_image();
    let Some(kubelet) = Kubelet::builder()
        .crius(|c| {
            // The pod's pause image is what it checks to be kept.
            c.config(common::WITH_INFRA).config(&format!(
                "[crius.image]\npinned_images = [\"{}/crius-test/pau*\"]\n",
                common::registry()
            ))
        })
        .image_gc(90, 80)
        .config("imageMinimumGCAge", json!("1s"))
        .config("imageMaximumGCAge", json!("20s"))
        .config(
            "evictionHard",
            json!({
                "memory.available": "0%",
                "nodefs.available": "0%",
                "nodefs.inodesFree": "0%",
                "imagefs.available": "99.9%",
                "imagefs.inodesFree": "0%",
            }),
        )
        .config("evictionPressureTransitionPeriod", json!("1s"))
        // A crash-looping container restarts every second.
        .config(
            "crashLoopBackOff",
            json!({"maxContainerRestartPeriod": "1s"}),
        )
        .start_or_skip(test)
        .await
    else {
        return;
    };
    let (mut rt, mut images) = clients(&kubelet).await;

    // An image no pod uses, pulled straight through the CRI.
    let unused = format!("{}/crius-test/multilayer:latest", common::registry());
    let unused_id = common::pull(&mut images, &unused).await;
    let kept_id = common::pull(&mut images, &kept).await;
    let (used_with_unused, inodes_with_unused) = image_fs_usage(&mut images).await;

    // A pod that keeps running (its image is in use) and one whose container keeps dying.
    let mut spec = String::from("  containers:\n");
    spec.push_str(&sleeper("keep", "exec sleep 3600"));
    kubelet
        .write_manifest("keeper", &manifest("keeper", &spec))
        .unwrap();
    let mut spec = String::from("  restartPolicy: Always\n  containers:\n");
    spec.push_str(&sleeper("crash", "echo dying; exit 1"));
    kubelet
        .write_manifest("crasher", &manifest("crasher", &spec))
        .unwrap();
    kubelet.wait_running("keeper", POD_START).await.unwrap();

    // Unused images go; the image in use and the pinned pause image stay.
    let left = eventually(
        "the kubelet removed the unused image",
        Duration::from_secs(60),
        || async {
            let ids = image_ids(&mut images.clone()).await;
            (!ids.iter().any(|(id, _, _)| *id == unused_id)).then_some(ids)
        },
    )
    .await;
    let busybox_id = common::pull(&mut images, &busybox()).await;
    assert!(
        left.iter().any(|(id, _, _)| *id == busybox_id),
        "the image in use was removed: {left:?}"
    );
    let pods = cri_pods(&mut rt).await;
    let pod_id = pods.keys().next().expect("a pod");
    let pause = rt
        .pod_sandbox_status(cri::PodSandboxStatusRequest {
            pod_sandbox_id: pod_id.clone(),
            verbose: true,
        })
        .await
        .unwrap()
        .into_inner();
    let pause_image = serde_json::from_str::<Value>(&pause.info["info"]).unwrap()["pauseImage"]
        .as_str()
        .expect("pauseImage in the pod's verbose info")
        .to_string();
    let pinned: Vec<_> = left.iter().filter(|(_, _, p)| *p).collect();
    assert!(
        pinned.iter().any(|(id, _, _)| *id == pause_image),
        "the pause image {pause_image} is not kept pinned: {left:?}"
    );
    assert_ne!(
        kept_id, pause_image,
        "{kept} must not be the pods' pause image"
    );
    assert!(
        pinned.iter().any(|(id, _, _)| *id == kept_id),
        "{kept}, unused but pinned by pinned_images, is not kept pinned: {left:?}"
    );
    let log = kubelet.log();
    assert!(
        log.contains("Attempting to delete unused images"),
        "the image GC did not run"
    );

    // ImageFsInfo follows the store: what `du` finds in it (but for the few dirs of the
    // store itself), and the removed image's
    // 24 MiB layer is gone (the kubelet's busybox pull added under 10 MB meanwhile).
    // (Polled: a store at rest, not between two steps of a removal or a pull.)
    let store = kubelet.crius.root.join("images");
    let (used, inodes) = eventually_or(
        "ImageFsInfo matches du of the store",
        Duration::from_secs(15),
        || {
            let mut images = images.clone();
            let store = store.clone();
            async move {
                let (used, inodes) = image_fs_usage(&mut images).await;
                let (du_bytes, du_inodes) = du(&store);
                let close =
                    used.abs_diff(du_bytes) <= du_bytes / 50 && inodes.abs_diff(du_inodes) <= 8;
                let seen = format!(
                    "ImageFsInfo says {used} bytes and {inodes} inodes, du {du_bytes} and {du_inodes}"
                );
                (close.then_some((used, inodes)), seen)
            }
        },
    )
    .await;
    assert!(
        used + 15_000_000 <= used_with_unused,
        "ImageFsInfo used bytes {used_with_unused} -> {used} after removing a 24 MiB layer"
    );
    assert!(
        inodes < inodes_with_unused,
        "inodes {inodes_with_unused} -> {inodes}"
    );
    assert!(
        used > 1_000_000 && inodes > 10,
        "{used} bytes, {inodes} inodes"
    );
    // The kubelet's summary may still hold a figure it read before the removal: polled.
    eventually_or(
        "/stats/summary imageFs.usedBytes is crius's",
        Duration::from_secs(20),
        || {
            let kubelet = &kubelet;
            async move {
                let summary = kubelet.stats_summary().await.unwrap();
                let image_fs = &summary["node"]["runtime"]["imageFs"];
                let reported = image_fs["usedBytes"].as_u64().expect("imageFs.usedBytes");
                let seen = format!("imageFs.usedBytes {reported}, crius's {used}: {image_fs}");
                ((reported.abs_diff(used) < 5_000_000).then_some(()), seen)
            }
        },
    )
    .await;

    // Dead containers: the crash-looping one has restarted several times, and the
    // kubelet removed its older dead instances through crius (it keeps one).
    let crasher = kubelet
        .wait_for_pod(
            "crasher",
            "restarted 4 times",
            Duration::from_secs(60),
            |p| p.container("crash").is_some_and(|c| c.restart_count >= 4),
        )
        .await
        .unwrap();
    let restarts = crasher.container("crash").unwrap().restart_count;
    let dead: Vec<_> = eventually(
        "the kubelet removed the older dead instances",
        Duration::from_secs(20),
        || async {
            let dead: Vec<_> = cri_containers(&mut rt.clone())
                .await
                .into_values()
                .filter(|(name, _, state)| {
                    name == "crash" && *state == cri::ContainerState::ContainerExited as i32
                })
                .collect();
            (dead.len() <= 2).then_some(dead)
        },
    )
    .await;
    assert!(
        dead.iter().all(|(_, attempt, _)| *attempt + 3 >= restarts),
        "old dead instances are left (restarts {restarts}): {dead:?}"
    );
    assert!(
        kubelet.crius.log().contains("method=\"RemoveContainer\""),
        "crius never got a RemoveContainer"
    );
    kubelet.assert_no_unexplained_cri_errors(&[]);
}

/// The pod of `/stats/summary` named after manifest `name`.
fn summary_pod<'a>(kubelet: &Kubelet, summary: &'a Value, name: &str) -> &'a Value {
    let full = kubelet.static_pod_name(name);
    summary["pods"]
        .as_array()
        .and_then(|pods| pods.iter().find(|p| p["podRef"]["name"] == full.as_str()))
        .unwrap_or_else(|| panic!("{full} is not in /stats/summary: {summary}"))
}

fn u64_at(v: &Value, path: &[&str]) -> u64 {
    let mut at = v;
    for key in path {
        at = &at[*key];
    }
    at.as_u64()
        .unwrap_or_else(|| panic!("no number at {path:?} in {v}"))
}

#[tokio::test]
async fn stats_summary_comes_from_crius_cri_stats_with_real_cpu_memory_fs_and_network_figures() {
    let test =
        "stats_summary_comes_from_crius_cri_stats_with_real_cpu_memory_fs_and_network_figures";
    let Some(kubelet) = Kubelet::builder()
        .feature_gate("PodAndContainerStatsFromCRI", true)
        .crius(|c| c.config("[crius.stats]\nincluded_pod_metrics = [\"all\"]\n"))
        .start_or_skip(test)
        .await
    else {
        return;
    };
    const SHM_MIB: u64 = 48;
    const LAYER_MIB: u64 = 8;
    const SERVED_MIB: u64 = 2;
    const FETCHES: u64 = 4;
    // The server: holds 48 MiB in its /dev/shm (memory the container's cgroup pays for),
    // writes 8 MiB into its writable layer, burns some CPU and serves a 2 MiB file.
    let mut spec = String::from("  containers:\n");
    spec.push_str(&sleeper(
        "server",
        &format!(
            "dd if=/dev/zero of=/dev/shm/fill bs=1M count={SHM_MIB}; \
             dd if=/dev/zero of=/var/blob bs=1M count={LAYER_MIB}; \
             mkdir -p /www; dd if=/dev/urandom of=/www/file bs=1M count={SERVED_MIB}; \
             i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; \
             exec httpd -f -p 8080 -h /www"
        ),
    ));
    kubelet
        .write_manifest("server", &manifest("server", &spec))
        .unwrap();
    let server = kubelet.wait_running("server", POD_START).await.unwrap();
    let server_ip = server.status.pod_ip.clone();
    assert!(!server_ip.is_empty(), "{server:?}");
    // The client fetches the file a few times over the bridge.
    let mut spec = String::from("  containers:\n");
    spec.push_str(&sleeper(
        "client",
        &format!(
            "n=0; while [ $n -lt {FETCHES} ]; do \
               wget -q -O /dev/null http://{server_ip}:8080/file && n=$((n+1)) || sleep 0.2; \
             done; echo fetched; exec sleep 3600"
        ),
    ));
    kubelet
        .write_manifest("client", &manifest("client", &spec))
        .unwrap();
    kubelet.wait_running("client", POD_START).await.unwrap();

    let traffic = (SERVED_MIB * FETCHES) << 20;
    let summary = eventually(
        "/stats/summary shows the server's memory and both pods' traffic",
        Duration::from_secs(60),
        || async {
            let summary = kubelet.stats_summary().await.ok()?;
            let server = summary_pod(&kubelet, &summary, "server");
            let client = summary_pod(&kubelet, &summary, "client");
            let ws = server["containers"][0]["memory"]["workingSetBytes"].as_u64()?;
            let tx = server["network"]["txBytes"].as_u64()?;
            let rx = client["network"]["rxBytes"].as_u64()?;
            (ws >= SHM_MIB << 20 && tx >= traffic && rx >= traffic).then_some(summary)
        },
    )
    .await;
    let server = summary_pod(&kubelet, &summary, "server");
    let client = summary_pod(&kubelet, &summary, "client");
    let container = &server["containers"][0];
    assert_eq!(container["name"], "server");
    // Memory: at least the shm it holds, within reason.
    let ws = u64_at(container, &["memory", "workingSetBytes"]);
    let usage = u64_at(container, &["memory", "usageBytes"]);
    assert!((SHM_MIB << 20..512 << 20).contains(&ws), "working set {ws}");
    assert!(usage >= ws, "usage {usage} < working set {ws}");
    assert!(u64_at(server, &["memory", "workingSetBytes"]) >= ws);
    // CPU: the loop and the serving took CPU time.
    let cpu = u64_at(container, &["cpu", "usageCoreNanoSeconds"]);
    assert!(cpu > 10_000_000, "container CPU {cpu} ns");
    assert!(u64_at(server, &["cpu", "usageCoreNanoSeconds"]) >= cpu);
    // Filesystem: the writable layer holds the 8 MiB blob and the 2 MiB file.
    let rootfs = u64_at(container, &["rootfs", "usedBytes"]);
    assert!(
        ((LAYER_MIB + SERVED_MIB) << 20..64 << 20).contains(&rootfs),
        "writable layer {rootfs}"
    );
    assert!(u64_at(container, &["rootfs", "inodesUsed"]) >= 3);
    assert!(u64_at(container, &["logs", "usedBytes"]) > 0);
    // Network: the pod's eth0, both ways.
    assert_eq!(server["network"]["name"], "eth0", "{server}");
    let (tx, rx) = (
        u64_at(server, &["network", "txBytes"]),
        u64_at(client, &["network", "rxBytes"]),
    );
    assert!(tx >= traffic && tx < traffic * 4, "server sent {tx}");
    assert!(rx >= traffic && rx < traffic * 4, "client received {rx}");
    assert!(u64_at(client, &["network", "txBytes"]) > 0);
    // The node's runtime filesystems are crius's image store.
    assert!(u64_at(&summary, &["node", "runtime", "imageFs", "usedBytes"]) > 1_000_000);

    // These figures are crius's: the kubelet asked crius for them.
    let crius_log = kubelet.crius.log();
    assert!(
        crius_log.contains("method=\"ListPodSandboxStats\""),
        "the kubelet never called ListPodSandboxStats"
    );
    let (mut rt, _) = clients(&kubelet).await;
    let cri_stats = rt
        .list_pod_sandbox_stats(cri::ListPodSandboxStatsRequest { filter: None })
        .await
        .unwrap()
        .into_inner()
        .stats;
    let cri_server = cri_stats
        .iter()
        .find(|s| {
            s.attributes
                .as_ref()
                .and_then(|a| a.metadata.as_ref())
                .map(|m| m.name.as_str())
                == Some(kubelet.static_pod_name("server").as_str())
        })
        .expect("the server pod in ListPodSandboxStats");
    let cri_tx = cri_server
        .linux
        .as_ref()
        .and_then(|l| l.network.as_ref())
        .and_then(|n| n.default_interface.as_ref())
        .and_then(|i| i.tx_bytes.as_ref())
        .map_or(0, |v| v.value);
    assert!(
        cri_tx >= tx,
        "crius says the server sent {cri_tx}, the kubelet {tx}"
    );
    eprintln!(
        "{test}: server working set {ws} B, CPU {cpu} ns, writable layer {rootfs} B, sent {tx} B; client received {rx} B"
    );

    // /metrics/cadvisor: with the gate, the kubelet's container series are crius's
    // ListPodSandboxMetrics, under cAdvisor's names and labels.
    let text = kubelet.get("/metrics/cadvisor").await.unwrap();
    let server_pod = kubelet.static_pod_name("server");
    let pod_label = format!("pod=\"{server_pod}\"");
    let sample = |name: &str, labels: &[&str]| -> u64 {
        let found: Vec<f64> = text
            .lines()
            .filter_map(|l| {
                let rest = l.strip_prefix(name)?.strip_prefix('{')?;
                let (set, value) = rest.split_once("} ")?;
                let ours = labels.iter().all(|want| set.contains(want));
                ours.then(|| value.split_whitespace().next()?.parse().ok())?
            })
            .collect();
        assert_eq!(
            found.len(),
            1,
            "{name} {labels:?} in /metrics/cadvisor:\n{text}"
        );
        found[0] as u64
    };
    let ws_series = sample(
        "container_memory_working_set_bytes",
        &["container=\"server\"", &pod_label],
    );
    assert!(
        ws_series >= SHM_MIB << 20,
        "cadvisor working set {ws_series}"
    );
    let fs_series = sample(
        "container_fs_usage_bytes",
        &["container=\"server\"", &pod_label],
    );
    assert!(
        fs_series >= (LAYER_MIB + SERVED_MIB) << 20,
        "cadvisor fs {fs_series}"
    );
    let tx_series = sample(
        "container_network_transmit_bytes_total",
        &["container=\"POD\"", "interface=\"eth0\"", &pod_label],
    );
    assert!(tx_series >= tx, "cadvisor tx {tx_series}, summary {tx}");
    eprintln!(
        "{test}: /metrics/cadvisor working set {ws_series} B, fs {fs_series} B, sent {tx_series} B"
    );

    kubelet.assert_no_unexplained_cri_errors(&[Kubelet::STATS_PROBE]);
}

/// This machine's local time minus UTC, in seconds (`date +%z`).
fn utc_offset_seconds() -> f64 {
    let out = Command::new("date").arg("+%z").output().expect("date");
    let z = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let (sign, digits) = z.split_at(1);
    let h: f64 = digits[..2].parse().expect("date +%z hours");
    let m: f64 = digits[2..4].parse().expect("date +%z minutes");
    let offset = h * 3600.0 + m * 60.0;
    if sign == "-" {
        -offset
    } else {
        offset
    }
}

/// The time of day of a klog line (`I1206 03:04:42.555934 ...`), in seconds.
fn klog_time_of_day(line: &str) -> Option<f64> {
    let time = line.split_whitespace().nth(1)?;
    let mut parts = time.split(':');
    let h: f64 = parts.next()?.parse().ok()?;
    let m: f64 = parts.next()?.parse().ok()?;
    let s: f64 = parts.next()?.parse().ok()?;
    Some(h * 3600.0 + m * 60.0 + s)
}

#[tokio::test]
async fn with_evented_pleg_the_kubelet_sees_a_container_exit_through_get_container_events() {
    let test = "with_evented_pleg_the_kubelet_sees_a_container_exit_through_get_container_events";
    let Some(kubelet) = Kubelet::builder()
        .feature_gate("EventedPLEG", true)
        // The evented PLEG says what it does at level 4.
        .arg("--v=4")
        .start_or_skip(test)
        .await
    else {
        return;
    };
    let mut spec = String::from("  restartPolicy: Never\n  containers:\n");
    spec.push_str(&sleeper("quick", "sleep 4; exit 7"));
    kubelet
        .write_manifest("exiter", &manifest("exiter", &spec))
        .unwrap();
    let pod = kubelet
        .wait_for_pod("exiter", "its container exited", POD_START, |p| {
            p.container("quick")
                .is_some_and(|c| c.state.terminated.is_some())
        })
        .await
        .unwrap();
    let status = pod.container("quick").unwrap();
    assert_eq!(status.state.terminated.as_ref().unwrap().exit_code, 7);
    let id = status.cri_id().to_string();

    // The event came over crius's stream: the evented PLEG asked for a relist of the pod
    // for exactly this container's CONTAINER_STOPPED_EVENT.
    let line = kubelet
        .log()
        .lines()
        .find(|l| l.contains("Evented PLEG: requested pod relist") && l.contains(&id))
        .map(str::to_string)
        .unwrap_or_else(|| panic!("the evented PLEG never saw {id} stop"));
    assert!(line.contains("CONTAINER_STOPPED_EVENT"), "{line}");
    // Promptly: well within the generic PLEG's relist period (1 s, a constant of kubelet
    // v1.37), which would otherwise be how the kubelet found out.
    let finished_ns = finished_at(&kubelet, &id).await;
    // The kubelet logs the local time of day; crius gives UTC nanoseconds.
    let finished = (finished_ns as f64 / 1e9 + utc_offset_seconds()).rem_euclid(86_400.0);
    let seen = klog_time_of_day(&line).expect("klog time");
    let latency = (seen - finished + 43_200.0).rem_euclid(86_400.0) - 43_200.0;
    assert!(
        (-0.05..1.0).contains(&latency),
        "the kubelet heard of the exit {latency:.3} s after it (finished at {finished:.3} s of the day, log: {line})"
    );
    eprintln!(
        "{test}: the kubelet heard of the exit {:.0} ms after it",
        latency * 1000.0
    );
    assert!(
        !kubelet
            .log()
            .contains("disabling container-termination fast path"),
        "the event stream failed"
    );
    kubelet.assert_no_unexplained_cri_errors(&[]);
}

/// GET / on 127.0.0.1:port; the body.
fn http_get(port: u16) -> std::io::Result<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(3)))?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out.split("\r\n\r\n").nth(1).unwrap_or_default().to_string())
}

fn iptables_nat() -> String {
    let out = Command::new("iptables-save")
        .args(["-t", "nat"])
        .output()
        .expect("iptables-save");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The portmap plugin's shared chains in the nat table. They outlive every pod (the plugin
/// only removes its per-pod `CNI-DN-*` chains), so the test removes them after itself when
/// it made them and no other pod uses them.
struct HostportChains {
    existed: bool,
}

const HOSTPORT_CHAINS: [&str; 3] = [
    "CNI-HOSTPORT-DNAT",
    "CNI-HOSTPORT-SETMARK",
    "CNI-HOSTPORT-MASQ",
];

impl HostportChains {
    fn note() -> HostportChains {
        HostportChains {
            existed: iptables_nat().contains(":CNI-HOSTPORT-DNAT "),
        }
    }
}

impl Drop for HostportChains {
    fn drop(&mut self) {
        let nat = iptables_nat();
        if self.existed || nat.contains("-j CNI-DN-") {
            return;
        }
        let iptables = |args: &[&str]| {
            let _ = Command::new("iptables")
                .args(["-w", "-t", "nat"])
                .args(args)
                .output();
        };
        for rule in nat.lines().filter(|l| {
            l.starts_with("-A ")
                && HOSTPORT_CHAINS
                    .iter()
                    .any(|c| l.ends_with(&format!("-j {c}")))
        }) {
            let delete = format!("iptables -w -t nat -D {}", &rule["-A ".len()..]);
            let _ = Command::new("sh").args(["-c", &delete]).output();
        }
        for chain in HOSTPORT_CHAINS {
            iptables(&["-F", chain]);
            iptables(&["-X", chain]);
        }
    }
}

#[tokio::test]
async fn a_host_network_pod_and_a_host_port_pod_answer_on_loopback() {
    let test = "a_host_network_pod_and_a_host_port_pod_answer_on_loopback";
    let chains = HostportChains::note();
    // CRI stats on: a host-network pod has no network stats of its own, which the kubelet
    // must be able to summarize.
    let Some(kubelet) = Kubelet::builder()
        .feature_gate("PodAndContainerStatsFromCRI", true)
        .start_or_skip(test)
        .await
    else {
        return;
    };
    let host_port = free_port();
    let host_net_port = std::iter::repeat_with(free_port)
        .find(|p| *p != host_port)
        .expect("a second free port");
    let serve = |text: &str, listen: &str| {
        format!(
            "mkdir -p /www && echo {text} > /www/index.html && exec httpd -f -p {listen} -h /www"
        )
    };
    let mut spec = String::from("  containers:\n");
    spec.push_str(&sleeper("web", &serve("through-a-host-port", "8080")));
    spec.push_str(&format!(
        "    ports:\n    - {{containerPort: 8080, hostPort: {host_port}, hostIP: 127.0.0.1, protocol: TCP}}\n"
    ));
    kubelet
        .write_manifest("hostport", &manifest("hostport", &spec))
        .unwrap();
    // Only loopback: the host-network server binds 127.0.0.1.
    let mut spec = String::from("  hostNetwork: true\n  containers:\n");
    spec.push_str(&sleeper(
        "web",
        &serve("on-the-host-network", &format!("127.0.0.1:{host_net_port}")),
    ));
    kubelet
        .write_manifest("hostnet", &manifest("hostnet", &spec))
        .unwrap();
    kubelet.wait_running("hostport", POD_START).await.unwrap();
    kubelet.wait_running("hostnet", POD_START).await.unwrap();

    for (port, want) in [
        (host_port, "through-a-host-port"),
        (host_net_port, "on-the-host-network"),
    ] {
        let body = eventually(
            &format!("127.0.0.1:{port} answers"),
            Duration::from_secs(20),
            || async { http_get(port).ok().filter(|b| b.contains(want)) },
        )
        .await;
        assert_eq!(body.trim(), want);
    }
    let (mut rt, _) = clients(&kubelet).await;
    let pods = cri_pods(&mut rt).await;
    let nat = iptables_nat();
    let ours: Vec<&str> = nat
        .lines()
        .filter(|l| pods.keys().any(|id| l.contains(id.as_str())))
        .collect();
    assert_eq!(
        ours.len(),
        1,
        "one portmap rule for the host-port pod:\n{nat}"
    );
    assert!(
        ours[0].contains(&format!("--dports {host_port}")),
        "{}",
        ours[0]
    );

    // The summary covers the host-network pod, and the kubelet lives on.
    let summary = kubelet.stats_summary().await.unwrap();
    let hostnet = summary_pod(&kubelet, &summary, "hostnet");
    assert!(hostnet["network"].is_null(), "{hostnet}");
    assert!(u64_at(&hostnet["containers"][0], &["cpu", "usageCoreNanoSeconds"]) > 0);
    kubelet
        .wait_running("hostnet", Duration::from_secs(5))
        .await
        .unwrap();

    // Removing the pods removes their port mappings.
    kubelet.remove_manifest("hostport").unwrap();
    kubelet.remove_manifest("hostnet").unwrap();
    kubelet
        .wait_gone("hostport", Duration::from_secs(30))
        .await
        .unwrap();
    kubelet
        .wait_gone("hostnet", Duration::from_secs(30))
        .await
        .unwrap();
    eventually(
        "the host-port pod's portmap rules are gone",
        Duration::from_secs(30),
        || async {
            let nat = iptables_nat();
            (!pods.keys().any(|id| nat.contains(id.as_str()))).then_some(())
        },
    )
    .await;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(5) && http_get(host_port).is_ok() {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(http_get(host_port).is_err(), "the host port still answers");
    kubelet.assert_no_unexplained_cri_errors(&[Kubelet::STATS_PROBE, Kubelet::VERSION_CANCELED]);
    drop(kubelet);
    drop(chains);
}
