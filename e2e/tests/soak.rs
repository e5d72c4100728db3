//! Load and isolation: one pod's slow CNI plugin (ADD, DEL), runtime command (create,
//! kill, delete) or ExecSync must not hold up calls about other pods, and (ignored, a measurement) a soak of many pods and a churn of
//! containers beside pulls and stats, with the daemon's RSS and fd count sampled between
//! rounds.
//!
//! The soak runs with `cargo test -p crius-e2e --test soak -- --ignored --nocapture`; its
//! size comes from `CRIUS_SOAK_PODS` (100), `CRIUS_SOAK_CLIENTS` (20) and
//! `CRIUS_SOAK_ROUNDS` (6).

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use crius_e2e::{cri, CriusDaemon};

/// How long a slow call (CNI plugin, runtime command or exec) sleeps for the pod it slows.
const SLOW_CALL: Duration = Duration::from_secs(10);
/// What the calls about other pods may take together while the slow call sleeps: calls that
/// waited on it would take nearly all of `SLOW_CALL` (they start as soon as its mark
/// appears); the margin absorbs a loaded CI machine (they take ~0.3 s here).
const OTHERS_BUDGET: Duration = Duration::from_secs(7);

/// A chained CNI plugin that passes the previous result on and, the first time it runs
/// `command` (ADD or DEL) for a pod whose `CNI_ARGS` name `slow-pod`, leaves `mark` and
/// sleeps.
fn slow_plugin(dir: &Path, mark: &Path, command: &str) {
    let script = format!(
        "#!/bin/sh\nconf=$(cat)\n\
         case \"$CNI_COMMAND:$CNI_ARGS\" in {command}:*K8S_POD_NAME=slow-pod\\;*)\n\
         \x20 [ -e {mark} ] || {{ touch {mark}; sleep {secs}; }};; esac\n\
         case \"$CNI_COMMAND\" in\n\
         ADD) printf '%s' \"$conf\" | jq -c .prevResult;;\n\
         VERSION) echo '{{\"cniVersion\":\"1.0.0\",\"supportedVersions\":[\"0.4.0\",\"1.0.0\"]}}';;\n\
         esac\n",
        mark = mark.display(),
        secs = SLOW_CALL.as_secs()
    );
    let path = dir.join("slow-cni");
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
}

/// A runc wrapper: it notes the id of the container it creates from a spec that carries
/// `SLOW_RUNTIME=1`, and the first time it runs `command` (create, kill, delete) on that
/// container it leaves `mark` and sleeps; everything else goes straight to runc.
fn slow_runtime(dir: &Path, mark: &Path, command: &str) -> std::path::PathBuf {
    let id_file = dir.join("slow-id");
    let script = format!(
        "#!/bin/sh\ncmd=\nprev=\nbundle=\n\
         for a; do\n\
         \x20 case \"$prev\" in --bundle|-b) bundle=$a;; esac\n\
         \x20 case \"$a\" in create|start|kill|delete|state|exec|update|features)\n\
         \x20   [ -n \"$cmd\" ] || cmd=$a;; esac\n\
         \x20 prev=$a\ndone\n\
         if [ \"$cmd\" = create ] && grep -q SLOW_RUNTIME=1 \"$bundle/config.json\" 2>/dev/null; then\n\
         \x20 echo \"$prev\" > {id_file}\nfi\n\
         if [ \"$cmd\" = {command} ] && [ -s {id_file} ] && [ ! -e {mark} ]; then\n\
         \x20 id=$(cat {id_file})\n\
         \x20 for a; do [ \"$a\" = \"$id\" ] && {{ touch {mark}; sleep {secs}; break; }}; done\nfi\n\
         exec /usr/sbin/runc \"$@\"\n",
        id_file = id_file.display(),
        mark = mark.display(),
        secs = SLOW_CALL.as_secs()
    );
    let path = dir.join("slow-runc");
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    path
}

/// ListPodSandbox, ListContainers, ListPodSandboxStats and ListContainerStats (what the
/// kubelet's relist and stats loops call, which cover every pod); how long they took.
async fn list_everything(rt: &mut Runtime) -> Duration {
    let t = Instant::now();
    list_pods(rt, None).await;
    rt.list_containers(cri::ListContainersRequest::default())
        .await
        .expect("ListContainers");
    rt.list_pod_sandbox_stats(cri::ListPodSandboxStatsRequest::default())
        .await
        .expect("ListPodSandboxStats");
    rt.list_container_stats(cri::ListContainerStatsRequest::default())
        .await
        .expect("ListContainerStats");
    t.elapsed()
}

/// A pod with a running container, made before the slow call: the other pod whose status
/// and exec are timed while the slow call sleeps.
struct BusyPod {
    pod: String,
    ctr: String,
}

/// Pulls the test images and runs `busy-pod` with a container.
async fn busy_pod(daemon: &CriusDaemon, rt: &mut Runtime, images: &mut Images) -> BusyPod {
    pull(images, &busybox()).await;
    pull(images, &pause_image()).await;
    let cfg = pod_config(daemon, "busy-pod");
    let t = Instant::now();
    let pod = run_pod(rt, &cfg).await;
    let run_pod_took = t.elapsed();
    let t = Instant::now();
    let ctr = run_container(rt, &pod, &cfg, shell("app", "exec sleep 600")).await;
    println!(
        "with no slow call: RunPodSandbox {run_pod_took:.1?}, Create+StartContainer {:.1?}",
        t.elapsed()
    );
    BusyPod { pod, ctr }
}

/// Waits for `mark` (the slow call, `what`, is sleeping), then times calls about other
/// pods: RunPodSandbox of `fast-pod` with a container created and started in it, the busy
/// pod's and container's status, ExecSync in the busy and the fast container, and the four
/// lists. Fails if they took `OTHERS_BUDGET` or more together, or if `slow` finished before
/// they did (then nothing was shown). Returns the fast pod, for the caller to remove.
async fn time_other_pods<T>(
    daemon: &CriusDaemon,
    rt: &mut Runtime,
    busy: &BusyPod,
    mark: &Path,
    slow: &tokio::task::JoinHandle<T>,
    what: &str,
) -> String {
    eventually(&format!("{what} begins"), Duration::from_secs(30), || {
        let mark = mark.to_path_buf();
        async move { mark.exists().then_some(()) }
    })
    .await;
    let began = Instant::now();

    let fast_cfg = pod_config(daemon, "fast-pod");
    let t = Instant::now();
    let fast = run_pod(rt, &fast_cfg).await;
    let run_pod_took = t.elapsed();
    let t = Instant::now();
    let fast_ctr = run_container(rt, &fast, &fast_cfg, shell("app", "exec sleep 600")).await;
    let run_ctr = t.elapsed();
    let t = Instant::now();
    pod_status(rt, &busy.pod).await;
    container_status(rt, &busy.ctr).await;
    let status = t.elapsed();
    let t = Instant::now();
    for ctr in [&busy.ctr, &fast_ctr] {
        assert_eq!(exec_ok(rt, ctr, &["echo", "hi"]).await.trim(), "hi");
    }
    let exec = t.elapsed();
    let lists = list_everything(rt).await;
    let all = began.elapsed();
    let timings = format!(
        "RunPodSandbox {run_pod_took:.1?}, Create+StartContainer {run_ctr:.1?}, \
         PodSandboxStatus+ContainerStatus {status:.1?}, 2 ExecSync {exec:.1?}, \
         the four lists {lists:.1?}; all {all:.1?}"
    );
    println!("while {what} sleeps {SLOW_CALL:?}: {timings}");
    assert!(
        !slow.is_finished(),
        "{what} finished before the calls about other pods did; the test shows nothing"
    );
    assert!(
        all < OTHERS_BUDGET,
        "calls about other pods waited on {what}: {timings}"
    );
    fast
}

/// Awaits the slow call; fails unless it took at least `SLOW_CALL` (it really slept).
async fn slow_call_done<T>(slow: tokio::task::JoinHandle<(T, Duration)>, what: &str) -> T {
    let (out, took) = slow.await.expect("the slow call's task");
    println!("{what} took {took:.1?}");
    assert!(
        took >= SLOW_CALL,
        "{what} slept {SLOW_CALL:?}, took {took:?}"
    );
    out
}

/// A daemon whose network chains [`slow_plugin`] slowing `command` after the bridge, its
/// runtime client, and the busy pod.
async fn slow_cni_daemon(
    plugins: &Path,
    mark: &Path,
    command: &str,
) -> (CriusDaemon, Runtime, BusyPod) {
    slow_plugin(plugins, mark, command);
    let daemon = daemon_with_chain(plugins, serde_json::json!([{ "type": "slow-cni" }])).await;
    let (mut rt, mut images) = clients(&daemon).await;
    let busy = busy_pod(&daemon, &mut rt, &mut images).await;
    (daemon, rt, busy)
}

#[tokio::test]
async fn a_slow_cni_add_for_one_pod_does_not_hold_up_other_pods() {
    let plugins = tempfile::tempdir_in(crius_e2e::TEST_BASE_DIR).unwrap();
    let mark = plugins.path().join("slow-started");
    let (daemon, mut rt, busy) = slow_cni_daemon(plugins.path(), &mark, "ADD").await;

    let slow_cfg = pod_config(&daemon, "slow-pod");
    let mut slow_rt = daemon.runtime_client().await.unwrap();
    let slow = tokio::spawn(async move {
        let t = Instant::now();
        (run_pod(&mut slow_rt, &slow_cfg).await, t.elapsed())
    });
    let what = "the slow pod's RunPodSandbox (in CNI ADD)";
    let fast = time_other_pods(&daemon, &mut rt, &busy, &mark, &slow, what).await;
    let slow_id = slow_call_done(slow, what).await;
    assert!(pod_status(&mut rt, &slow_id).await.state == cri::PodSandboxState::SandboxReady as i32);
    for id in [&slow_id, &fast, &busy.pod] {
        remove_pod(&mut rt, id).await;
    }
    assert_nothing_left(&daemon, &mut rt).await;
}

#[tokio::test]
async fn a_slow_cni_del_for_one_pod_does_not_hold_up_other_pods() {
    let plugins = tempfile::tempdir_in(crius_e2e::TEST_BASE_DIR).unwrap();
    let mark = plugins.path().join("slow-started");
    let (daemon, mut rt, busy) = slow_cni_daemon(plugins.path(), &mark, "DEL").await;
    let slow_id = run_pod(&mut rt, &pod_config(&daemon, "slow-pod")).await;

    let mut slow_rt = daemon.runtime_client().await.unwrap();
    let slow = {
        let id = slow_id.clone();
        tokio::spawn(async move {
            let t = Instant::now();
            slow_rt
                .stop_pod_sandbox(cri::StopPodSandboxRequest { pod_sandbox_id: id })
                .await
                .expect("StopPodSandbox of the slow pod");
            ((), t.elapsed())
        })
    };
    let what = "the slow pod's StopPodSandbox (in CNI DEL)";
    let fast = time_other_pods(&daemon, &mut rt, &busy, &mark, &slow, what).await;
    slow_call_done(slow, what).await;
    assert!(
        pod_status(&mut rt, &slow_id).await.state == cri::PodSandboxState::SandboxNotready as i32
    );
    for id in [&slow_id, &fast, &busy.pod] {
        remove_pod(&mut rt, id).await;
    }
    assert_nothing_left(&daemon, &mut rt).await;
}

/// A daemon whose default runtime is [`slow_runtime`] slowing `command`, its clients, and
/// the busy pod.
async fn slow_runtime_daemon(
    dir: &Path,
    mark: &Path,
    command: &str,
) -> (CriusDaemon, Runtime, BusyPod) {
    let runtime = slow_runtime(dir, mark, command);
    let daemon = builder()
        .bridge_network()
        .runtime_handler("slow-runc", &runtime, true)
        .start()
        .await
        .expect("daemon");
    let (mut rt, mut images) = clients(&daemon).await;
    let busy = busy_pod(&daemon, &mut rt, &mut images).await;
    (daemon, rt, busy)
}

/// The config of the container the runtime wrapper slows down.
fn slow_container() -> cri::ContainerConfig {
    let mut cfg = shell("slow", "exec sleep 600");
    cfg.envs.push(cri::KeyValue {
        key: "SLOW_RUNTIME".into(),
        value: "1".into(),
    });
    cfg
}

#[tokio::test]
async fn a_slow_runtime_create_for_one_container_does_not_hold_up_other_pods() {
    let dir = tempfile::tempdir_in(crius_e2e::TEST_BASE_DIR).unwrap();
    let mark = dir.path().join("slow-started");
    let (daemon, mut rt, busy) = slow_runtime_daemon(dir.path(), &mark, "create").await;

    // The slow container lives in a pod of its own.
    let slow_cfg = pod_config(&daemon, "slow-pod");
    let slow_pod = run_pod(&mut rt, &slow_cfg).await;
    let mut slow_rt = daemon.runtime_client().await.unwrap();
    let slow = {
        let slow_pod = slow_pod.clone();
        tokio::spawn(async move {
            let t = Instant::now();
            let id = run_container(&mut slow_rt, &slow_pod, &slow_cfg, slow_container()).await;
            (id, t.elapsed())
        })
    };
    let what = "one container's CreateContainer (in runtime create)";
    let fast = time_other_pods(&daemon, &mut rt, &busy, &mark, &slow, what).await;
    let slow_id = slow_call_done(slow, what).await;
    assert_eq!(
        container_status(&mut rt, &slow_id).await.state,
        cri::ContainerState::ContainerRunning as i32
    );
    for id in [&slow_pod, &fast, &busy.pod] {
        remove_pod(&mut rt, id).await;
    }
    assert_nothing_left(&daemon, &mut rt).await;
}

/// One pod's container is stopped and removed while the runtime's `command` (kill or
/// delete) sleeps for it; calls about other pods are timed meanwhile.
async fn slow_runtime_teardown(command: &str) {
    let dir = tempfile::tempdir_in(crius_e2e::TEST_BASE_DIR).unwrap();
    let mark = dir.path().join("slow-started");
    let (daemon, mut rt, busy) = slow_runtime_daemon(dir.path(), &mark, command).await;
    let slow_cfg = pod_config(&daemon, "slow-pod");
    let slow_pod = run_pod(&mut rt, &slow_cfg).await;
    let slow_ctr = run_container(&mut rt, &slow_pod, &slow_cfg, slow_container()).await;

    let mut slow_rt = daemon.runtime_client().await.unwrap();
    let slow = {
        let id = slow_ctr.clone();
        tokio::spawn(async move {
            let t = Instant::now();
            slow_rt
                .stop_container(cri::StopContainerRequest {
                    container_id: id.clone(),
                    timeout: 0,
                })
                .await
                .expect("StopContainer of the slow container");
            slow_rt
                .remove_container(cri::RemoveContainerRequest { container_id: id })
                .await
                .expect("RemoveContainer of the slow container");
            ((), t.elapsed())
        })
    };
    let what = format!("one container's StopContainer+RemoveContainer (in runtime {command})");
    let fast = time_other_pods(&daemon, &mut rt, &busy, &mark, &slow, &what).await;
    slow_call_done(slow, &what).await;
    assert_container_gone(&mut rt, &slow_ctr).await;
    for id in [&slow_pod, &fast, &busy.pod] {
        remove_pod(&mut rt, id).await;
    }
    assert_nothing_left(&daemon, &mut rt).await;
}

#[tokio::test]
async fn a_slow_runtime_kill_for_one_container_does_not_hold_up_other_pods() {
    slow_runtime_teardown("kill").await;
}

#[tokio::test]
async fn a_slow_runtime_delete_for_one_container_does_not_hold_up_other_pods() {
    slow_runtime_teardown("delete").await;
}

#[tokio::test]
async fn a_slow_exec_in_one_pod_does_not_hold_up_other_pods() {
    let dir = tempfile::tempdir_in(crius_e2e::TEST_BASE_DIR).unwrap();
    let mark = dir.path().join("slow-started");
    let daemon = bridge_daemon().await;
    let (mut rt, mut images) = clients(&daemon).await;
    let busy = busy_pod(&daemon, &mut rt, &mut images).await;
    let slow_cfg = pod_config(&daemon, "slow-pod");
    let slow_pod = run_pod(&mut rt, &slow_cfg).await;
    // The host dir is mounted so that the exec's mark is seen from here.
    let mut cfg = shell("slow", "exec sleep 600");
    cfg.mounts.push(cri::Mount {
        container_path: "/mark".into(),
        host_path: dir.path().display().to_string(),
        ..Default::default()
    });
    let slow_ctr = run_container(&mut rt, &slow_pod, &slow_cfg, cfg).await;

    let mut slow_rt = daemon.runtime_client().await.unwrap();
    let slow = {
        let id = slow_ctr.clone();
        let script = format!("touch /mark/slow-started; sleep {}", SLOW_CALL.as_secs());
        tokio::spawn(async move {
            let t = Instant::now();
            let out = try_exec(&mut slow_rt, &id, &["sh", "-c", &script], 60)
                .await
                .expect("the slow ExecSync");
            (out.exit_code, t.elapsed())
        })
    };
    let what = "one container's ExecSync (sleep in the container)";
    let fast = time_other_pods(&daemon, &mut rt, &busy, &mark, &slow, what).await;
    assert_eq!(
        slow_call_done(slow, what).await,
        0,
        "the slow exec's exit code"
    );
    for id in [&slow_pod, &fast, &busy.pod] {
        remove_pod(&mut rt, id).await;
    }
    assert_nothing_left(&daemon, &mut rt).await;
}

/// ContainerStatus of the removed container `id` fails with NotFound.
async fn assert_container_gone(rt: &mut Runtime, id: &str) {
    let gone = rt
        .container_status(cri::ContainerStatusRequest {
            container_id: id.to_string(),
            verbose: false,
        })
        .await
        .expect_err("a removed container has no status");
    assert_eq!(gone.code(), tonic::Code::NotFound, "{id}: {gone:?}");
}

/// An environment number, else `default`.
fn env_usize(key: &str, default: usize) -> usize {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Latencies of every call, by RPC name.
#[derive(Default, Clone)]
struct Latencies(Arc<Mutex<BTreeMap<&'static str, Vec<Duration>>>>);

impl Latencies {
    /// Runs `call`, records how long it took under `rpc`.
    async fn time<T>(&self, rpc: &'static str, call: impl std::future::Future<Output = T>) -> T {
        let t = Instant::now();
        let out = call.await;
        self.0
            .lock()
            .unwrap()
            .entry(rpc)
            .or_default()
            .push(t.elapsed());
        out
    }

    /// Calls per second over `wall` and p50/p99/max per RPC.
    fn report(&self, wall: Duration) -> String {
        let map = self.0.lock().unwrap();
        let total: usize = map.values().map(Vec::len).sum();
        let mut out = format!(
            "{total} calls in {wall:.1?}: {:.1} calls/s\n",
            total as f64 / wall.as_secs_f64()
        );
        for (rpc, times) in map.iter() {
            let mut times = times.clone();
            times.sort();
            let pick = |q: f64| {
                times[((times.len() as f64 * q).ceil() as usize).clamp(1, times.len()) - 1]
            };
            out += &format!(
                "  {rpc:<24} n={:<6} p50={:>9.1?} p99={:>9.1?} max={:>9.1?}\n",
                times.len(),
                pick(0.5),
                pick(0.99),
                times[times.len() - 1]
            );
        }
        out
    }
}

/// The daemon's resident memory (KiB) and open fd count, from /proc.
fn rss_and_fds(daemon: &CriusDaemon) -> (u64, usize) {
    let pid = daemon.pid().expect("daemon running");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count();
    (rss, fds)
}

/// One pod of the soak and its long-running container.
struct SoakPod {
    id: String,
    config: cri::PodSandboxConfig,
}

#[tokio::test]
#[ignore = "a measurement: minutes of load; run with --ignored --nocapture"]
async fn soak_pods_and_container_churn_beside_pulls_and_stats() {
    let pods_n = env_usize("CRIUS_SOAK_PODS", 100);
    let clients_n = env_usize("CRIUS_SOAK_CLIENTS", 20).max(1);
    let rounds = env_usize("CRIUS_SOAK_ROUNDS", 6).max(4);
    let daemon = bridge_daemon().await;
    let (mut rt, mut images) = clients(&daemon).await;
    pull(&mut images, &busybox()).await;
    pull(&mut images, &pause_image()).await;
    let lat = Latencies::default();

    // Phase 1: pods_n pods with a container each, from clients_n parallel clients.
    let t = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients_n {
        let mut rt = daemon.runtime_client().await.unwrap();
        let lat = lat.clone();
        let configs: Vec<_> = (c..pods_n)
            .step_by(clients_n)
            .map(|i| pod_config(&daemon, &format!("soak-{i}")))
            .collect();
        tasks.push(tokio::spawn(async move {
            let mut made = Vec::new();
            for config in configs {
                let id = lat.time("RunPodSandbox", run_pod(&mut rt, &config)).await;
                let ctr = lat
                    .time(
                        "CreateContainer",
                        create(&mut rt, &id, &config, shell("main", "exec sleep 3600")),
                    )
                    .await;
                lat.time("StartContainer", start(&mut rt, &ctr)).await;
                made.push(SoakPod { id, config });
            }
            made
        }));
    }
    let mut pods = Vec::new();
    for task in tasks {
        pods.extend(task.await.expect("a client failed"));
    }
    println!(
        "{} pods with a container each from {clients_n} clients in {:.1?}",
        pods.len(),
        t.elapsed()
    );
    println!("{}", lat.report(t.elapsed()));

    // Beside the churn: pulls (the multilayer image removed and pulled again) and stats.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let churn_lat = Latencies::default();
    let multilayer = format!("{}/crius-test/multilayer:latest", registry());
    let pulls = {
        let (stop, lat, mut images) = (
            stop.clone(),
            churn_lat.clone(),
            daemon.image_client().await.unwrap(),
        );
        tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                lat.time("PullImage", pull(&mut images, &multilayer)).await;
                lat.time(
                    "RemoveImage",
                    images.remove_image(cri::RemoveImageRequest {
                        image: Some(cri::ImageSpec {
                            image: multilayer.clone(),
                            ..Default::default()
                        }),
                    }),
                )
                .await
                .expect("RemoveImage");
            }
        })
    };
    let stats = {
        let (stop, lat, mut rt) = (
            stop.clone(),
            churn_lat.clone(),
            daemon.runtime_client().await.unwrap(),
        );
        tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                lat.time(
                    "ListContainerStats",
                    rt.list_container_stats(cri::ListContainerStatsRequest::default()),
                )
                .await
                .expect("ListContainerStats");
                lat.time(
                    "ListPodSandboxStats",
                    rt.list_pod_sandbox_stats(cri::ListPodSandboxStatsRequest::default()),
                )
                .await
                .expect("ListPodSandboxStats");
            }
        })
    };

    // Phase 2: rounds of create/start/exec/stop/remove of a second container in every pod.
    let pods = Arc::new(pods);
    let mut series = vec![rss_and_fds(&daemon)];
    let churn_start = Instant::now();
    for round in 0..rounds {
        let mut tasks = Vec::new();
        for c in 0..clients_n {
            let mut rt = daemon.runtime_client().await.unwrap();
            let (lat, pods) = (churn_lat.clone(), pods.clone());
            tasks.push(tokio::spawn(async move {
                for pod in pods.iter().skip(c).step_by(clients_n) {
                    let name = format!("churn-{round}");
                    let id = lat
                        .time(
                            "CreateContainer",
                            create(
                                &mut rt,
                                &pod.id,
                                &pod.config,
                                shell(&name, "exec sleep 3600"),
                            ),
                        )
                        .await;
                    lat.time("StartContainer", start(&mut rt, &id)).await;
                    let out = lat
                        .time("ExecSync", exec_ok(&mut rt, &id, &["echo", "ok"]))
                        .await;
                    assert_eq!(out.trim(), "ok");
                    lat.time("ContainerStatus", container_status(&mut rt, &id))
                        .await;
                    lat.time(
                        "StopContainer",
                        rt.stop_container(cri::StopContainerRequest {
                            container_id: id.clone(),
                            timeout: 0,
                        }),
                    )
                    .await
                    .expect("StopContainer");
                    lat.time(
                        "RemoveContainer",
                        rt.remove_container(cri::RemoveContainerRequest {
                            container_id: id.clone(),
                        }),
                    )
                    .await
                    .expect("RemoveContainer");
                    // The one failure the churn provokes: the removed container is gone.
                    assert_container_gone(&mut rt, &id).await;
                }
            }));
        }
        for task in tasks {
            task.await.expect("a churn client failed");
        }
        series.push(rss_and_fds(&daemon));
        let (rss, fds) = series[series.len() - 1];
        println!(
            "round {round}: RSS {:.1} MiB, fds {fds} ({:.1?})",
            rss as f64 / 1024.0,
            churn_start.elapsed()
        );
    }
    let churn_wall = churn_start.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    pulls.await.expect("the pull loop failed");
    stats.await.expect("the stats loop failed");

    println!(
        "RSS MiB by round: {:?}",
        series
            .iter()
            .map(|(r, _)| format!("{:.1}", *r as f64 / 1024.0))
            .collect::<Vec<_>>()
    );
    println!(
        "fds by round: {:?}",
        series.iter().map(|(_, f)| *f).collect::<Vec<_>>()
    );
    println!("churn, pulls and stats:\n{}", churn_lat.report(churn_wall));

    // Flat: the later half of the rounds against the earlier half (round 0 excluded:
    // allocator pools and caches warm up there). fds are compared by peak (a call in flight
    // at a sample holds a few); RSS, which swings by ~13 MiB between rounds here with no
    // trend while pulls run beside (freed memory is not always given back), by median.
    let rounds_seen = &series[2..];
    let (early, late) = rounds_seen.split_at(rounds_seen.len() / 2);
    let summary = |part: &[(u64, usize)]| {
        let mut rss: Vec<u64> = part.iter().map(|s| s.0).collect();
        rss.sort_unstable();
        (rss[rss.len() / 2], part.iter().map(|s| s.1).max().unwrap())
    };
    let ((early_rss, early_fds), (late_rss, late_fds)) = (summary(early), summary(late));
    println!(
        "earlier rounds: RSS median {early_rss} KiB, fd peak {early_fds}; later rounds: \
         {late_rss} KiB, {late_fds}"
    );
    assert!(
        late_fds <= early_fds + FD_SLACK,
        "fds grew from a peak of {early_fds} to {late_fds}: {series:?}"
    );
    assert!(
        late_rss <= early_rss + RSS_SLACK_KIB,
        "RSS grew from a median of {early_rss} KiB to {late_rss} KiB: {series:?}"
    );

    let mut rt2 = daemon.runtime_client().await.unwrap();
    for pod in pods.iter() {
        remove_pod(&mut rt2, &pod.id).await;
    }
    assert_nothing_left(&daemon, &mut rt).await;
}

/// fds the later rounds' peak may pass the earlier rounds' by (measured over 12 rounds of
/// 100 pods: 226-232, peaks 232 and 230).
const FD_SLACK: usize = 4;
/// RSS the later rounds' median may pass the earlier rounds' by, in KiB (measured over 12
/// rounds of 100 pods: 58.7-72.0 MiB, medians 68.4 and 68.1 MiB); a leak of 10 KiB per
/// churned container (1 MiB a round) passes it over 12 rounds.
const RSS_SLACK_KIB: u64 = 6 * 1024;
