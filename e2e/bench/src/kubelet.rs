//! The kubelet's view: how long from a static pod manifest written into the kubelet's
//! manifest dir until the kubelet reports every container of that pod running (its
//! read-only port's `/pods`), and, from the runtime's own records, until the last container
//! was started. `e2e/bench/run.sh` starts the daemon and the real kubelet (standalone: no
//! API server) and calls `crius-bench kubelet`; the same kubelet binary and config drive
//! each daemon in turn, so the difference is the runtime's.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use crius_cri_api::v1 as cri;
use crius_e2e::kubelet::{http_get, PodList};
use serde_json::{json, Value};

use crate::bench::RunResult;
use crate::cri::{timed, Cri};

/// The namespace of the benchmark's static pods.
const NAMESPACE: &str = "crius-bench";
/// The label the kubelet puts on each pod's sandbox and containers: the pod's name.
const POD_NAME_LABEL: &str = "io.kubernetes.pod.name";
/// The label the kubelet puts on each pod's sandbox and containers: the pod's namespace.
const POD_NAMESPACE_LABEL: &str = "io.kubernetes.pod.namespace";
/// How often `/pods` is read while waiting.
const POLL: Duration = Duration::from_millis(20);

/// What to measure and where.
#[derive(Clone, Debug, clap::Args)]
pub struct KubeletArgs {
    /// Name of the run in the results (e.g. kubelet-crius).
    #[arg(long)]
    pub name: String,
    /// The daemon's CRI endpoint (unix:///PATH), for its version and its containers'
    /// start times.
    #[arg(long)]
    pub endpoint: String,
    /// The kubelet's staticPodPath.
    #[arg(long)]
    pub manifest_dir: PathBuf,
    /// The kubelet's read-only port on loopback.
    #[arg(long)]
    pub read_only_port: u16,
    /// The kubelet's node name (`--hostname-override`): static pods are `NAME-NODE`.
    #[arg(long)]
    pub node_name: String,
    /// Pods, written one after another, each once the one before runs.
    #[arg(long, default_value_t = 10)]
    pub pods: usize,
    /// Containers per pod.
    #[arg(long, default_value_t = 2)]
    pub containers: usize,
    /// Image of the containers (pulled by the kubelet in the warm-up pod).
    #[arg(long, default_value = "127.0.0.1:5000/crius-test/busybox:latest")]
    pub image: String,
    /// Seconds a pod may take to run, or to go away, before the run fails.
    #[arg(long, default_value_t = 120)]
    pub timeout_secs: u64,
    /// Where to write the JSON result.
    #[arg(long)]
    pub out: PathBuf,
}

/// A static pod manifest: `containers` busybox containers that exit at once on SIGTERM
/// (so deletion does not wait out a grace period).
pub fn manifest(name: &str, containers: usize, image: &str) -> Value {
    let containers: Vec<Value> = (0..containers)
        .map(|i| {
            json!({
                "name": format!("c{i}"),
                "image": image,
                "imagePullPolicy": "IfNotPresent",
                "command": ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"],
            })
        })
        .collect();
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": NAMESPACE,
        },
        "spec": {
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 5,
            "containers": containers,
        },
    })
}

/// Writes `value` as `dir/NAME.json` in one rename, so the kubelet never reads half a file
/// (it skips names that start with a dot).
fn write_manifest(dir: &Path, name: &str, value: &Value) -> anyhow::Result<PathBuf> {
    let tmp = dir.join(format!(".{name}.json.tmp"));
    let path = dir.join(format!("{name}.json"));
    std::fs::write(&tmp, serde_json::to_vec_pretty(value)?)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, &path)
        .with_context(|| format!("cannot rename {} to {}", tmp.display(), path.display()))?;
    Ok(path)
}

/// What `/pods` says of the benchmark's pods: pod name -> the number of its containers in
/// state running.
pub fn running_by_name(pods: &PodList) -> HashMap<String, usize> {
    pods.items
        .iter()
        .filter(|p| p.metadata.namespace == NAMESPACE)
        .map(|p| {
            let running = p
                .status
                .container_statuses
                .iter()
                .filter(|c| c.state.running.is_some())
                .count();
            (p.metadata.name.clone(), running)
        })
        .collect()
}

/// Polls `/pods` until `done` holds for what it lists, for at most `timeout`.
async fn wait_pods(
    port: u16,
    timeout: Duration,
    what: &str,
    done: impl Fn(&HashMap<String, usize>) -> bool,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let last = match http_get(port, "/pods").await {
            Ok(body) => match serde_json::from_str::<PodList>(&body) {
                Ok(pods) => {
                    let seen = running_by_name(&pods);
                    if done(&seen) {
                        return Ok(());
                    }
                    format!("{seen:?}")
                }
                Err(err) => format!("/pods is not a PodList ({err}): {body}"),
            },
            Err(err) => format!("{err:#}"),
        };
        if Instant::now() >= deadline {
            bail!(
                "{what}: not within {timeout:?}; /pods last said (pod: running containers) {last}"
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// The runtime's start time (ns since the epoch) of the last started container of pod
/// `pod` (its full name).
async fn last_started_ns(cri: &Cri, pod: &str) -> anyhow::Result<i64> {
    let mut rt = cri.rt.clone();
    let (list, _) = timed(
        "ListContainers",
        rt.list_containers(cri::ListContainersRequest {
            filter: Some(cri::ContainerFilter {
                label_selector: HashMap::from([
                    (POD_NAME_LABEL.to_string(), pod.to_string()),
                    (POD_NAMESPACE_LABEL.to_string(), NAMESPACE.to_string()),
                ]),
                ..Default::default()
            }),
        }),
    )
    .await?;
    let mut last = None;
    for c in &list.containers {
        let (status, _) = timed(
            "ContainerStatus",
            rt.container_status(cri::ContainerStatusRequest {
                container_id: c.id.clone(),
                verbose: false,
            }),
        )
        .await?;
        let started = status.status.map(|s| s.started_at).unwrap_or(0);
        last = last.max(Some(started));
    }
    match last {
        Some(ns) if ns > 0 => Ok(ns),
        _ => bail!("the runtime lists no started container of pod {pod}"),
    }
}

/// Polls the runtime until none of the benchmark's containers runs and none of its pods is
/// ready, for at most `timeout`.
async fn wait_stopped(cri: &Cri, timeout: Duration) -> anyhow::Result<()> {
    let mut rt = cri.rt.clone();
    let deadline = Instant::now() + timeout;
    loop {
        let (containers, _) = timed(
            "ListContainers",
            rt.list_containers(cri::ListContainersRequest {
                filter: Some(cri::ContainerFilter {
                    state: Some(cri::ContainerStateValue {
                        state: cri::ContainerState::ContainerRunning as i32,
                    }),
                    ..Default::default()
                }),
            }),
        )
        .await?;
        let (pods, _) = timed(
            "ListPodSandbox",
            rt.list_pod_sandbox(cri::ListPodSandboxRequest {
                filter: Some(cri::PodSandboxFilter {
                    state: Some(cri::PodSandboxStateValue {
                        state: cri::PodSandboxState::SandboxReady as i32,
                    }),
                    ..Default::default()
                }),
            }),
        )
        .await?;
        let running = containers
            .containers
            .iter()
            .filter(|c| c.labels.get(POD_NAMESPACE_LABEL).map(String::as_str) == Some(NAMESPACE))
            .count();
        let ready = pods
            .items
            .iter()
            .filter(|p| p.labels.get(POD_NAMESPACE_LABEL).map(String::as_str) == Some(NAMESPACE))
            .count();
        if running == 0 && ready == 0 {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "after {timeout:?} the runtime still has {running} benchmark containers \
                 running and {ready} pods ready"
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The kubelet's series against the daemon behind it; writes `args.out`.
pub async fn run(args: &KubeletArgs) -> anyhow::Result<RunResult> {
    let cri = Cri::connect(&args.endpoint).await?;
    let mut rt = cri.rt.clone();
    let (version, _) = timed("Version", rt.version(cri::VersionRequest::default())).await?;
    let mut result = RunResult {
        name: args.name.clone(),
        endpoint: args.endpoint.clone(),
        runtime_name: version.runtime_name,
        runtime_version: version.runtime_version,
        ..Default::default()
    };
    let timeout = Duration::from_secs(args.timeout_secs);
    let port = args.read_only_port;
    let n = args.containers;
    wait_pods(port, Duration::from_secs(60), "the kubelet's /pods", |_| {
        true
    })
    .await?;

    // Warm-up: the kubelet pulls the image and makes its first pod (and the daemon its
    // bridge), so no timed pod pays for first-time work.
    let full_name = |name: &str| format!("{name}-{}", args.node_name);
    let warm_name = full_name("bench-warm");
    let warm = write_manifest(
        &args.manifest_dir,
        "bench-warm",
        &manifest("bench-warm", n, &args.image),
    )?;
    let began = Instant::now();
    wait_pods(port, timeout, "warm-up pod running", |seen| {
        seen.get(&warm_name) == Some(&n)
    })
    .await?;
    eprintln!(
        "crius-bench [{}]: warm-up pod ran after {:.0} ms",
        args.name,
        began.elapsed().as_secs_f64() * 1000.0
    );
    std::fs::remove_file(&warm)?;
    wait_stopped(&cri, timeout).await?;

    let (mut to_running, mut to_started) = (Vec::new(), Vec::new());
    let mut written = Vec::new();
    for i in 0..args.pods {
        let name = format!("bench-{i}");
        let pod = full_name(&name);
        let wrote_ns = now_ns();
        let began = Instant::now();
        written.push(write_manifest(
            &args.manifest_dir,
            &name,
            &manifest(&name, n, &args.image),
        )?);
        wait_pods(port, timeout, &format!("pod {pod} running"), |seen| {
            seen.get(&pod) == Some(&n)
        })
        .await?;
        to_running.push(began.elapsed().as_secs_f64() * 1000.0);
        let started = last_started_ns(&cri, &pod).await?;
        to_started.push((started - wrote_ns) as f64 / 1e6);
    }
    result.series(
        "kubelet.manifest_to_running",
        &format!("manifest written -> /pods shows {n} containers running"),
        to_running,
    );
    result.series(
        "kubelet.manifest_to_started",
        "manifest written -> last container started (runtime's startedAt)",
        to_started,
    );

    // Every manifest removed at once: until the kubelet has stopped every container and
    // pod (the runtime lists none running or ready; /pods drops them at once).
    let began = Instant::now();
    for path in &written {
        std::fs::remove_file(path).with_context(|| format!("cannot remove {}", path.display()))?;
    }
    wait_stopped(&cri, timeout).await?;
    result.metric(
        "kubelet.all_stopped",
        &format!(
            "{} manifests removed -> no container running, no pod ready",
            written.len()
        ),
        "ms",
        began.elapsed().as_secs_f64() * 1000.0,
    );
    result.notes.push(format!(
        "{}: pods of {n} busybox containers written one after another, each once the one \
         before ran; /pods read every {} ms",
        args.name,
        POLL.as_millis()
    ));
    std::fs::write(&args.out, serde_json::to_string_pretty(&result)?)
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_name_their_containers_and_exit_on_term() {
        let m = manifest("bench-3", 2, "img:1");
        assert_eq!(m["metadata"]["name"], "bench-3");
        assert_eq!(m["metadata"]["namespace"], NAMESPACE);
        let containers = m["spec"]["containers"].as_array().unwrap();
        assert_eq!(containers.len(), 2);
        assert_eq!(containers[1]["name"], "c1");
        assert_eq!(containers[0]["image"], "img:1");
        assert!(containers[0]["command"][2]
            .as_str()
            .unwrap()
            .contains("trap"));
    }

    #[test]
    fn pods_count_running_containers_by_name() {
        let pods: PodList = serde_json::from_value(json!({"items": [
            {"metadata": {"name": "bench-0-n", "namespace": NAMESPACE},
             "status": {"containerStatuses": [
                {"name": "c0", "state": {"running": {"startedAt": "x"}}},
                {"name": "c1", "state": {"waiting": {"reason": "ContainerCreating"}}}]}},
            {"metadata": {"name": "bench-1-n", "namespace": NAMESPACE}, "status": {}},
            {"metadata": {"name": "other-n", "namespace": "default"}, "status": {}}
        ]}))
        .unwrap();
        let seen = running_by_name(&pods);
        assert_eq!(seen.get("bench-0-n"), Some(&1));
        assert_eq!(seen.get("bench-1-n"), Some(&0));
        assert_eq!(seen.len(), 2);
    }

    #[test]
    fn manifests_are_written_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_manifest(dir.path(), "p", &json!({"a": 1})).unwrap();
        assert_eq!(path, dir.path().join("p.json"));
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("p.json")]);
    }
}
