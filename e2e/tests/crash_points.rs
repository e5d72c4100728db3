//! A crash at any instant loses nothing. For every crash point of `crius_fault::POINTS`,
//! the test build of crius (`--features fault-injection`) is started with the point armed
//! and makes the CRI call that reaches it, dying there by SIGKILL. Restarted without it,
//! crius must answer List*/Status calls consistently, hold each object whole and usable
//! or not at all, and accept the call again; once everything is removed, nothing may be
//! left that no record owns: no mount under the root or run dir, netns pin, veth, IPAM
//! address, CNI cache entry, cgroup, monitor or container process, runtime state, pod or
//! container dir, or image layer dir.
//!
//! The points run one after another in one daemon root, for three kinds of pod (a test
//! each): pods with a pause container (every point), pods without one (`drop_infra_ctr`)
//! and pods of a `vm` handler, run by a containerd shim v2 (the pod and container
//! points). A point a kind of pod does not reach is skipped with the reason.
//! `CRIUS_CRASH_POINTS` (names or prefixes, comma-separated) narrows the run to some of
//! them.

mod common;

use std::collections::BTreeSet;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use crius_e2e::shims::{shim_socket, SHIM_RUNC_ROOT};
use crius_e2e::{cri, fault_binary, processes_in, CriusDaemon};
use crius_fault::{Call, Point, ENV, POINTS};

/// A kind of pod the crash points run in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PodKind {
    /// With a pause container, run by runc under crius's monitor.
    Infra,
    /// Without an infra container: its network, IPC and UTS namespaces pinned by crius.
    NoInfra,
    /// Of a `vm` handler: the pause and every container tasks of the pod's shim.
    Vm,
}

impl PodKind {
    /// The daemon's drop-in for this kind (`shim` for [`PodKind::Vm`]).
    fn dropin(self, shim: Option<&Path>) -> String {
        match self {
            PodKind::Infra => WITH_INFRA.to_string(),
            PodKind::NoInfra => "[crius.runtime]\ndrop_infra_ctr = true\n".to_string(),
            PodKind::Vm => shim_dropin(shim.expect("a shim for vm pods")),
        }
    }

    /// Why `point` is not tried in this kind of pod, if it is not.
    fn skip(self, point: &Point) -> Option<&'static str> {
        if self != PodKind::Vm && point.name == "create_container.task_created" {
            return Some("not reached: a shim's Create, only in vm pods");
        }
        if self == PodKind::Infra {
            return None;
        }
        if matches!(point.call, Call::PullImage | Call::RemoveImage) {
            return Some("an image point: the same for every kind of pod");
        }
        match (self, point.name) {
            (
                PodKind::NoInfra,
                "run_pod.pause_rootfs_mounted"
                | "run_pod.pause_created"
                | "run_pod.pause_started"
                | "run_pod.recorded"
                | "stop_pod.pause_killed",
            ) => Some("not reached: the pod has no pause container"),
            (PodKind::Vm, "run_pod.pause_created") => {
                Some("not reached: the shim, not a monitor, creates the pause task")
            }
            (PodKind::Vm, "create_container.runtime_created" | "create_container.recorded") => Some(
                "not reached: a monitor's point; a vm container's is create_container.task_created",
            ),
            (PodKind::Vm, "stop_container.signalled" | "stop_container.killed") => {
                Some("not reached: a vm container is signalled through its shim")
            }
            (PodKind::Vm, "stop_pod.pause_killed") => {
                Some("not reached: the pause task is killed through the shim")
            }
            _ => None,
        }
    }
}

/// What a point's call works on, made before the call.
struct Scenario {
    pod_config: cri::PodSandboxConfig,
    pod: Option<String>,
    ctr_config: cri::ContainerConfig,
    ctr: Option<String>,
}

/// A pod config whose cgroup crius makes itself (no parent from the kubelet), so the
/// sweep of pod cgroups is exercised too.
fn crash_pod_config(daemon: &CriusDaemon, name: &str) -> cri::PodSandboxConfig {
    let mut config = pod_config(daemon, name);
    if let Some(linux) = config.linux.as_mut() {
        linux.cgroup_parent.clear();
    }
    config
}

/// A container that ignores SIGTERM (sleep as its pid 1 has no handler), so StopContainer
/// with a grace period reaches both the stop signal and the SIGKILL.
async fn remove_image(images: &mut Images, name: &str) -> Result<(), tonic::Status> {
    images
        .remove_image(cri::RemoveImageRequest {
            image: Some(cri::ImageSpec {
                image: name.to_string(),
                ..Default::default()
            }),
        })
        .await
        .map(drop)
}

async fn image_present(images: &mut Images, name: &str) -> bool {
    images
        .image_status(cri::ImageStatusRequest {
            image: Some(cri::ImageSpec {
                image: name.to_string(),
                ..Default::default()
            }),
            verbose: false,
        })
        .await
        .unwrap_or_else(|e| panic!("ImageStatus {name}: {e:?}"))
        .into_inner()
        .image
        .is_some()
}

/// Makes what the call of `point` needs, with the point armed but not yet reached.
async fn set_up(
    point: &Point,
    daemon: &CriusDaemon,
    rt: &mut Runtime,
    images: &mut Images,
) -> Scenario {
    let name = point.name.replace(['.', '_'], "-");
    let mut s = Scenario {
        pod_config: crash_pod_config(daemon, &name),
        pod: None,
        ctr_config: sleeper(),
        ctr: None,
    };
    match point.call {
        Call::PullImage => {
            remove_image(images, &busybox())
                .await
                .expect("RemoveImage before the pull");
            return s;
        }
        Call::RemoveImage => {
            pull(images, &busybox()).await;
            return s;
        }
        _ => {}
    }
    pull(images, &busybox()).await;
    if point.call == Call::RunPodSandbox {
        return s;
    }
    let pod = run_pod(rt, &s.pod_config).await;
    s.pod = Some(pod.clone());
    if point.call == Call::CreateContainer {
        return s;
    }
    let ctr = create(rt, &pod, &s.pod_config, s.ctr_config.clone()).await;
    s.ctr = Some(ctr.clone());
    if point.call == Call::StartContainer {
        return s;
    }
    start(rt, &ctr).await;
    if point.call == Call::RemoveContainer {
        stop_container(rt, &ctr, 0)
            .await
            .expect("StopContainer before the removal");
    }
    s
}

async fn stop_container(rt: &mut Runtime, id: &str, timeout: i64) -> Result<(), tonic::Status> {
    rt.stop_container(cri::StopContainerRequest {
        container_id: id.to_string(),
        timeout,
    })
    .await
    .map(drop)
}

/// Makes the call of `point`; the id of the pod or container it made, if any. The
/// daemon dies in it when the point is armed, so then it is an error.
async fn make_call(
    point: &Point,
    s: &Scenario,
    rt: &mut Runtime,
    images: &mut Images,
) -> Result<Option<String>, tonic::Status> {
    let pod = s.pod.clone().unwrap_or_default();
    let ctr = s.ctr.clone().unwrap_or_default();
    match point.call {
        Call::RunPodSandbox => rt
            .run_pod_sandbox(cri::RunPodSandboxRequest {
                config: Some(s.pod_config.clone()),
                runtime_handler: String::new(),
            })
            .await
            .map(|r| Some(r.into_inner().pod_sandbox_id)),
        Call::CreateContainer => rt
            .create_container(cri::CreateContainerRequest {
                pod_sandbox_id: pod,
                config: Some(s.ctr_config.clone()),
                sandbox_config: Some(s.pod_config.clone()),
            })
            .await
            .map(|r| Some(r.into_inner().container_id)),
        Call::StartContainer => rt
            .start_container(cri::StartContainerRequest { container_id: ctr })
            .await
            .map(|_| None),
        Call::StopContainer => stop_container(rt, &ctr, 1).await.map(|_| None),
        Call::RemoveContainer => rt
            .remove_container(cri::RemoveContainerRequest { container_id: ctr })
            .await
            .map(|_| None),
        Call::StopPodSandbox => rt
            .stop_pod_sandbox(cri::StopPodSandboxRequest {
                pod_sandbox_id: pod,
            })
            .await
            .map(|_| None),
        Call::RemovePodSandbox => rt
            .remove_pod_sandbox(cri::RemovePodSandboxRequest {
                pod_sandbox_id: pod,
            })
            .await
            .map(|_| None),
        Call::PullImage => images
            .pull_image(cri::PullImageRequest {
                image: Some(cri::ImageSpec {
                    image: busybox(),
                    ..Default::default()
                }),
                auth: None,
                sandbox_config: None,
            })
            .await
            .map(|_| None),
        Call::RemoveImage => remove_image(images, &busybox()).await.map(|_| None),
    }
}

async fn list_containers(rt: &mut Runtime) -> Vec<cri::Container> {
    rt.list_containers(cri::ListContainersRequest { filter: None })
        .await
        .expect("ListContainers")
        .into_inner()
        .containers
}

/// What keeps a Ready pod's namespaces: its pause (the pid verbose status reports), or,
/// without an infra container, crius's pins (those of them that are not there).
enum Holder {
    Pause(Option<u64>),
    Pins(Vec<String>),
}

fn held_by(info: &std::collections::HashMap<String, String>) -> Holder {
    let value: serde_json::Value = info
        .get("info")
        .and_then(|i| serde_json::from_str(i).ok())
        .unwrap_or_default();
    if value["infraContainer"] != false {
        return Holder::Pause(value["pid"].as_u64());
    }
    let missing = ["netns", "ipcNs", "utsNs"]
        .iter()
        .filter_map(|key| value[key].as_str())
        .filter(|pin| mounts_under(Path::new(pin)).is_empty())
        .map(str::to_string)
        .collect();
    Holder::Pins(missing)
}

fn alive(pid: u64) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// What the restarted daemon answers must agree with itself and with the host: Status is
/// ready, every listed pod and container has the same state in its status, a container's
/// pod is listed, a Ready pod has an IP and a live pause, a Running container answers
/// ExecSync, and every listed image has a status.
async fn inconsistencies(rt: &mut Runtime, images: &mut Images) -> Vec<String> {
    let mut found = Vec::new();
    let status = rt
        .status(cri::StatusRequest { verbose: false })
        .await
        .expect("Status")
        .into_inner()
        .status
        .unwrap_or_default();
    for condition in &status.conditions {
        if !condition.status {
            found.push(format!(
                "Status: {} is false: {}",
                condition.r#type, condition.message
            ));
        }
    }
    let pods = list_pods(rt, None).await;
    for pod in &pods {
        let reply = rt
            .pod_sandbox_status(cri::PodSandboxStatusRequest {
                pod_sandbox_id: pod.id.clone(),
                verbose: true,
            })
            .await;
        let reply = match reply {
            Ok(r) => r.into_inner(),
            Err(e) => {
                found.push(format!(
                    "pod {} is listed but its status fails: {e:?}",
                    pod.id
                ));
                continue;
            }
        };
        let st = reply.status.unwrap_or_default();
        if st.state != pod.state {
            found.push(format!(
                "pod {} is listed {} but its status says {}",
                pod.id, pod.state, st.state
            ));
        }
        if st.state == cri::PodSandboxState::SandboxReady as i32 {
            if st.network.as_ref().is_none_or(|n| n.ip.is_empty()) {
                found.push(format!("Ready pod {} has no IP", pod.id));
            }
            match held_by(&reply.info) {
                Holder::Pause(pid) if pid.is_some_and(alive) => {}
                Holder::Pause(_) => {
                    found.push(format!("Ready pod {} has no live pause process", pod.id));
                }
                Holder::Pins(missing) => {
                    for pin in missing {
                        found.push(format!("Ready pod {} has lost its pin {pin}", pod.id));
                    }
                }
            }
        }
    }
    for ctr in list_containers(rt).await {
        if !pods.iter().any(|p| p.id == ctr.pod_sandbox_id) {
            found.push(format!(
                "container {} of an unlisted pod {}",
                ctr.id, ctr.pod_sandbox_id
            ));
        }
        let st = match rt
            .container_status(cri::ContainerStatusRequest {
                container_id: ctr.id.clone(),
                verbose: false,
            })
            .await
        {
            Ok(r) => r.into_inner().status.unwrap_or_default(),
            Err(e) => {
                found.push(format!(
                    "container {} is listed but its status fails: {e:?}",
                    ctr.id
                ));
                continue;
            }
        };
        if st.state != ctr.state {
            found.push(format!(
                "container {} is listed {} but its status says {}",
                ctr.id, ctr.state, st.state
            ));
        }
        if st.state == cri::ContainerState::ContainerRunning as i32 {
            if let Err(e) = try_exec(rt, &ctr.id, &["true"], 10).await {
                found.push(format!(
                    "Running container {} does not answer ExecSync: {e:?}",
                    ctr.id
                ));
            }
        }
    }
    let listed = images
        .list_images(cri::ListImagesRequest { filter: None })
        .await
        .expect("ListImages")
        .into_inner()
        .images;
    for image in listed {
        if !image_present(images, &image.id).await {
            found.push(format!("image {} is listed but has no status", image.id));
        }
    }
    found
}

/// The pods named as the scenario's pod.
async fn pods_named(rt: &mut Runtime, config: &cri::PodSandboxConfig) -> Vec<cri::PodSandbox> {
    let md = config.metadata.clone().unwrap_or_default();
    list_pods(rt, None)
        .await
        .into_iter()
        .filter(|p| p.metadata.as_ref().is_some_and(|m| m.uid == md.uid))
        .collect()
}

async fn container(rt: &mut Runtime, id: &str) -> Option<cri::Container> {
    list_containers(rt).await.into_iter().find(|c| c.id == id)
}

/// A container of busybox in `pod` runs and answers ExecSync.
async fn runs_a_container(rt: &mut Runtime, pod: &str, config: &cri::PodSandboxConfig, name: &str) {
    let id = run_container(rt, pod, config, container_config(name, &["sleep", "3600"])).await;
    exec_ok(rt, &id, &["true"]).await;
}

/// After the restart: the object the call made or changed is whole (and usable) or gone,
/// and the call made again gets it where the call meant it to be. A container the cut
/// call created or started already is not created or started again (the name is taken,
/// it runs): then it must be whole and usable as it is.
async fn finish_call(point: &Point, s: &Scenario, rt: &mut Runtime, images: &mut Images) {
    let name = point.name;
    let exited = cri::ContainerState::ContainerExited as i32;
    let ctr = s.ctr.as_deref().unwrap_or_default();
    let pod = s.pod.as_deref().unwrap_or_default();
    // What must hold before the call is made again.
    let mut again = true;
    match point.call {
        Call::RunPodSandbox => {
            let before = pods_named(rt, &s.pod_config).await;
            assert!(
                before.len() <= 1,
                "{name}: the pod is listed twice: {before:?}"
            );
            for p in &before {
                let ready = cri::PodSandboxState::SandboxReady as i32;
                assert_eq!(p.state, ready, "{name}: a cut RunPodSandbox left {p:?}");
            }
        }
        Call::CreateContainer => {
            let md = s.ctr_config.metadata.clone().unwrap_or_default();
            let made: Vec<cri::Container> = list_containers(rt)
                .await
                .into_iter()
                .filter(|c| {
                    c.pod_sandbox_id == pod
                        && c.metadata.as_ref().is_some_and(|m| m.name == md.name)
                })
                .collect();
            assert!(
                made.len() <= 1,
                "{name}: the container is listed twice: {made:?}"
            );
            if let Some(c) = made.first() {
                let created = cri::ContainerState::ContainerCreated as i32;
                assert_eq!(c.state, created, "{name}: {c:?}");
                // The name is the whole container's: a repeat is refused as a duplicate.
                let repeat = make_call(point, s, rt, images).await;
                assert!(
                    repeat
                        .as_ref()
                        .is_err_and(|e| e.code() == tonic::Code::AlreadyExists),
                    "{name}: CreateContainer again while {} holds the name: {repeat:?}",
                    c.id
                );
                start(rt, &c.id).await;
                exec_ok(rt, &c.id, &["true"]).await;
                again = false;
            }
        }
        Call::StartContainer => {
            let c = container(rt, ctr)
                .await
                .unwrap_or_else(|| panic!("{name}: the container is gone"));
            if c.state != cri::ContainerState::ContainerCreated as i32 {
                let running = cri::ContainerState::ContainerRunning as i32;
                assert_eq!(c.state, running, "{name}: {c:?}");
                again = false;
            }
        }
        Call::StopContainer | Call::StopPodSandbox => {
            let listed = match point.call {
                Call::StopContainer => container(rt, ctr).await.is_some(),
                _ => pods_named(rt, &s.pod_config).await.len() == 1,
            };
            assert!(listed, "{name}: what was being stopped is gone");
        }
        Call::RemoveContainer => {
            if let Some(c) = container(rt, ctr).await {
                assert_eq!(c.state, exited, "{name}: {c:?}");
            }
        }
        Call::RemovePodSandbox | Call::PullImage | Call::RemoveImage => {}
    }
    let made = if again {
        make_call(point, s, rt, images)
            .await
            .unwrap_or_else(|e| panic!("{name}: {:?} made again: {e:?}", point.call))
    } else {
        None
    };
    // Where the call meant things to be.
    match point.call {
        Call::RunPodSandbox => {
            let id = made.expect("a pod id");
            let listed: Vec<String> = pods_named(rt, &s.pod_config)
                .await
                .into_iter()
                .map(|p| p.id)
                .collect();
            assert_eq!(
                listed,
                std::slice::from_ref(&id),
                "{name}: pods after RunPodSandbox again"
            );
            runs_a_container(rt, &id, &s.pod_config, "probe").await;
        }
        Call::CreateContainer => {
            if let Some(id) = made {
                start(rt, &id).await;
                exec_ok(rt, &id, &["true"]).await;
            }
        }
        Call::StartContainer => {
            exec_ok(rt, ctr, &["true"]).await;
        }
        Call::StopContainer => {
            let st = container_status(rt, ctr).await;
            assert_eq!(st.state, exited, "{name}: {st:?}");
        }
        Call::RemoveContainer => {
            assert!(
                container(rt, ctr).await.is_none(),
                "{name}: the container is still listed"
            );
        }
        Call::StopPodSandbox => {
            let st = pod_status(rt, pod).await;
            let not_ready = cri::PodSandboxState::SandboxNotready as i32;
            assert_eq!(st.state, not_ready, "{name}: {st:?}");
            for c in list_containers(rt)
                .await
                .into_iter()
                .filter(|c| c.pod_sandbox_id == pod)
            {
                assert_eq!(c.state, exited, "{name}: {c:?}");
            }
        }
        Call::RemovePodSandbox => {
            assert!(
                pods_named(rt, &s.pod_config).await.is_empty(),
                "{name}: the pod is still listed"
            );
            let left: Vec<_> = list_containers(rt)
                .await
                .into_iter()
                .filter(|c| c.pod_sandbox_id == pod)
                .collect();
            assert!(
                left.is_empty(),
                "{name}: containers of the removed pod: {left:?}"
            );
        }
        Call::PullImage => {
            let pod = run_pod(rt, &s.pod_config).await;
            runs_a_container(rt, &pod, &s.pod_config, "probe").await;
        }
        Call::RemoveImage => {
            assert!(
                !image_present(images, &busybox()).await,
                "{name}: the image is still there"
            );
        }
    }
}

/// The layers images.json records.
fn recorded_layers(root: &Path) -> BTreeSet<String> {
    let text = std::fs::read_to_string(root.join("images/images.json")).unwrap_or_default();
    let index: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    index["images"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|i| i["layers"].as_array().into_iter().flatten())
        .filter_map(|l| l.as_str()?.strip_prefix("sha256:").map(str::to_string))
        .collect()
}

/// Cgroup dirs below `dir` (not `dir` itself), deepest first.
fn cgroups_below(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            out.extend(cgroups_below(&entry.path()));
            out.push(entry.path());
        }
    }
    out
}

/// What is on the host with no pod, container or image recorded to own it. Called with
/// every pod removed, so any mount, pin, veth, address, process or cgroup is a leak.
/// `ids` are those of every pod and container the daemon made (to find their shim
/// sockets, named by a hash).
async fn leaks(daemon: &CriusDaemon, ids: &BTreeSet<String>) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    // Removed dirs are deleted off the request path: give the trash a moment.
    let deadline = Instant::now() + Duration::from_secs(5);
    for trash in [daemon.root.join(".trash"), daemon.runroot.join(".trash")] {
        while !dir_entries(&trash).is_empty() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for name in dir_entries(&trash) {
            found.insert(format!("trash {}", trash.join(name).display()));
        }
    }
    for mount in mounts_under(&daemon.dir) {
        // A pod without an infra container pins its IPC and UTS namespaces there.
        let pin = Path::new(&mount)
            .parent()
            .is_some_and(|p| p.ends_with("ns") && p.starts_with(daemon.runroot.join("pods")));
        match pin {
            true => found.insert(format!("pinned namespace {mount}")),
            false => found.insert(format!("mount {mount}")),
        };
    }
    for pin in netns_pins(daemon) {
        found.insert(format!("netns pin {pin}"));
    }
    for dir in [
        daemon.root.join("pods"),
        daemon.runroot.join("pods"),
        daemon.root.join("containers"),
        daemon.runroot.join("containers"),
        daemon.runroot.join("userns"),
        daemon.runroot.join("runtimes/runc"),
        daemon.dir.join("cni-cache"),
    ] {
        for name in dir_entries(&dir) {
            found.insert(format!("{}/{name}", dir.display()));
        }
    }
    if let Some(bridge) = &daemon.bridge {
        for veth in dir_entries(&Path::new("/sys/class/net").join(&bridge.name).join("brif")) {
            found.insert(format!("veth {veth} on {}", bridge.name));
        }
    }
    for ip in ipam_reserved(daemon) {
        found.insert(format!("IPAM address {ip}"));
    }
    let me = [std::process::id(), daemon.pid().unwrap_or(0)];
    let events = daemon.shim_events_socket();
    for (pid, cmdline) in processes_in(&daemon.dir, &me) {
        let what = match cmdline.contains(&*events.to_string_lossy()) {
            true => "shim process",
            false => "process",
        };
        found.insert(format!("{what} {pid}: {}", cmdline.trim()));
    }
    for id in ids {
        let socket = shim_socket(&daemon.shim_events_socket(), id);
        if socket.exists() {
            found.insert(format!("shim socket {} of {id}", socket.display()));
        }
    }
    // The runc shim's state of tasks whose bundle is under the daemon's dirs.
    let bundle_label = format!("bundle={}", daemon.dir.display());
    for id in dir_entries(Path::new(SHIM_RUNC_ROOT)) {
        let state = Path::new(SHIM_RUNC_ROOT).join(&id);
        let text = std::fs::read_to_string(state.join("state.json")).unwrap_or_default();
        if ids.contains(&id) || text.contains(&bundle_label) {
            found.insert(format!("shim's runc state {}", state.display()));
        }
    }
    for hierarchy in cgroup_dirs(&daemon.cgroup_parent) {
        for pid in crius_e2e::cgroup_pids(&hierarchy) {
            found.insert(format!("process {pid} in {}", hierarchy.display()));
        }
        for dir in cgroups_below(&hierarchy) {
            // The dir crius makes its pods' cgroups in stays, empty.
            if dir.parent() == Some(hierarchy.as_path()) && dir.ends_with("crius") {
                continue;
            }
            found.insert(format!("cgroup {}", dir.display()));
        }
    }
    found.extend(unrecorded_layers(&daemon.root));
    found
}

/// Layer dirs of the image store under `root` that no image record names.
fn unrecorded_layers(root: &Path) -> Vec<String> {
    let layers = root.join("images/layers");
    let recorded = recorded_layers(root);
    dir_entries(&layers)
        .into_iter()
        .filter(|name| !recorded.contains(name))
        .map(|name| format!("layer dir {} no image records", layers.join(name).display()))
        .collect()
}

#[tokio::test]
async fn every_crash_point_leaves_objects_whole_or_gone_and_leaks_nothing() {
    let binary = fault_binary().expect("the crius test build");
    let mut daemon = crash_daemon(&binary, PodKind::Infra, None).await;
    // A build without crash points would ignore the variable; this one refuses a bad name.
    daemon.stop().await.expect("stop");
    daemon.set_env(ENV, Some("no.such.point"));
    let refused = daemon
        .restart()
        .await
        .expect_err("a bad crash point name was accepted");
    assert!(
        format!("{refused:#}").contains("no crash point"),
        "{refused:#}"
    );
    daemon.set_env(ENV, None);
    daemon.restart().await.expect("daemon");
    run_points(daemon, PodKind::Infra).await;
}

#[tokio::test]
async fn crash_points_in_pods_without_an_infra_container_leave_them_whole_or_gone() {
    let binary = fault_binary().expect("the crius test build");
    let daemon = crash_daemon(&binary, PodKind::NoInfra, None).await;
    run_points(daemon, PodKind::NoInfra).await;
}

#[tokio::test]
async fn crash_points_in_vm_pods_leave_them_and_their_shims_whole_or_gone() {
    let test = "crash_points_in_vm_pods_leave_them_and_their_shims_whole_or_gone";
    let shim = match crius_e2e::peers::peer("CONTAINERD_SHIM") {
        Some(shim) => shim,
        None => {
            let Some(shim) = debian_shim(test) else {
                return;
            };
            shim
        }
    };
    let binary = fault_binary().expect("the crius test build");
    let daemon = crash_daemon(&binary, PodKind::Vm, Some(&shim)).await;
    run_points(daemon, PodKind::Vm).await;
}

/// The test build of crius, with pods of `kind` by default (the pause kept or dropped
/// whatever CRIUS_E2E_DROP_INFRA_CTR says), its own bridge network, and the pause
/// image pulled.
async fn crash_daemon(binary: &Path, kind: PodKind, shim: Option<&Path>) -> CriusDaemon {
    let daemon = builder()
        .config(&kind.dropin(shim))
        .binary(binary)
        .bridge_network()
        .start()
        .await
        .expect("daemon");
    let (_, mut images) = clients(&daemon).await;
    pull(&mut images, &pause_image()).await;
    daemon
}

/// The points chosen for `kind`: those `CRIUS_CRASH_POINTS` names, or all. Those the
/// kind of pod does not reach are named, with the reason, and left out.
fn chosen_points(kind: PodKind) -> Vec<&'static Point> {
    let only: Vec<String> = std::env::var("CRIUS_CRASH_POINTS")
        .map(|v| {
            v.split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default();
    let wanted =
        |point: &Point| only.is_empty() || only.iter().any(|o| point.name.starts_with(o.as_str()));
    assert!(
        POINTS.iter().any(wanted),
        "CRIUS_CRASH_POINTS={only:?} matches no point"
    );
    let mut chosen = Vec::new();
    for point in POINTS.iter().filter(|p| wanted(p)) {
        match kind.skip(point) {
            Some(why) => eprintln!("{kind:?} pods: crash point {} SKIPPED: {why}", point.name),
            None => chosen.push(point),
        }
    }
    chosen
}

/// Every chosen point of `kind`, one after another in `daemon`'s root: each crash, the
/// restart, the checks, the call finished, every pod removed and the leak sweep.
async fn run_points(mut daemon: CriusDaemon, kind: PodKind) {
    let points = chosen_points(kind);
    if points.is_empty() {
        eprintln!("{kind:?} pods: SKIPPED: no chosen crash point is reached by them");
        return;
    }
    let mut problems = Vec::new();
    let mut leaked = BTreeSet::new();
    let mut ids = BTreeSet::new();
    let started = Instant::now();
    for point in &points {
        let began = Instant::now();
        let name = point.name;
        daemon.stop().await.expect("stop");
        daemon.set_env(ENV, Some(name));
        daemon
            .restart()
            .await
            .unwrap_or_else(|e| panic!("{kind:?} {name}: armed start: {e:#}"));
        let (mut rt, mut images) = clients(&daemon).await;
        let scenario = set_up(point, &daemon, &mut rt, &mut images).await;
        if let (PodKind::Vm, Some(pod)) = (kind, &scenario.pod) {
            check_shim_socket(&daemon, pod);
        }
        let outcome = tokio::time::timeout(
            Duration::from_secs(60),
            make_call(point, &scenario, &mut rt, &mut images),
        )
        .await;
        drop((rt, images));
        let exit = daemon.wait_exit(Duration::from_secs(20)).await;
        let reached = daemon
            .log()
            .contains(&format!("crash point {name} reached"));
        match exit {
            Ok(status) if status.signal() == Some(9) && reached => {}
            other => panic!("{kind:?} {name}: {:?} did not die at the point (exit {other:?}, call {outcome:?}); log:\n{}", point.call, daemon.log_tail(30)),
        }
        // What the cut call had begun, for the sweep of shim sockets.
        for dir in [daemon.root.join("pods"), daemon.root.join("containers")] {
            ids.extend(dir_entries(&dir));
        }

        daemon.set_env(ENV, None);
        daemon
            .restart()
            .await
            .unwrap_or_else(|e| panic!("{kind:?} {name}: restart after the crash: {e:#}"));
        let (mut rt, mut images) = clients(&daemon).await;
        for found in inconsistencies(&mut rt, &mut images).await {
            problems.push(format!("{name}: {found}"));
        }
        // Before the call is made again (a repeated pull would adopt them).
        for layer in unrecorded_layers(&daemon.root) {
            problems.push(format!("{name}: leak: {layer} after the restart"));
        }
        finish_call(point, &scenario, &mut rt, &mut images).await;
        ids.extend(list_pods(&mut rt, None).await.into_iter().map(|p| p.id));
        ids.extend(list_containers(&mut rt).await.into_iter().map(|c| c.id));
        for removal in crius_e2e::remove_every_pod(&mut rt)
            .await
            .expect("ListPodSandbox")
        {
            if let Err(e) = removal.result {
                problems.push(format!("{name}: removing pod {}: {e:?}", removal.id));
            }
        }
        let now = leaks(&daemon, &ids).await;
        let new: Vec<_> = now.difference(&leaked).cloned().collect();
        eprintln!(
            "{kind:?} pods: crash point {name}: {:?}, {} new leaks",
            began.elapsed(),
            new.len()
        );
        for leak in &new {
            eprintln!("  leak: {leak}");
        }
        problems.extend(new.iter().map(|l| format!("{name}: leak: {l}")));
        leaked = now;
    }
    // The harness's teardown knows every pod and container and leaves nothing of their
    // shims in /run/containerd.
    let teardown = daemon.teardown();
    for note in &teardown.notes {
        eprintln!("{kind:?} pods: teardown: {note}");
    }
    for id in ids.difference(&teardown.ids).filter(|id| id.len() == 64) {
        problems.push(format!("teardown: did not know {id}"));
    }
    for left in teardown.shim_leftovers {
        problems.push(format!("teardown: leak: {left}"));
    }
    let leak_count = problems.iter().filter(|p| p.contains(": leak: ")).count();
    eprintln!(
        "{kind:?} pods: crash points tried: {} of {} in {:?}; leaks: {leak_count}; other problems: {}",
        points.len(),
        POINTS.len(),
        started.elapsed(),
        problems.len() - leak_count
    );
    assert!(
        problems.is_empty(),
        "after crashes in {kind:?} pods:\n{}",
        problems.join("\n")
    );
}

/// The sweep finds a vm pod's shim socket by its hash: the address the pod's record
/// holds must be that one.
fn check_shim_socket(daemon: &CriusDaemon, pod: &str) {
    let path = daemon.root.join("records/pods").join(format!("{pod}.json"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("pod record {}: {e}", path.display()));
    let rec: serde_json::Value = serde_json::from_str(&text).expect("pod record");
    let expected = format!(
        "unix://{}",
        shim_socket(&daemon.shim_events_socket(), pod).display()
    );
    assert_eq!(
        rec["shim_address"].as_str(),
        Some(expected.as_str()),
        "{text}"
    );
}
