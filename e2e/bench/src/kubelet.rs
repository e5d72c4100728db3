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
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use k8s_cri::v1 as cri;
use serde_json::{json, Value};

use crate::bench::RunResult;
use crate::cri::{timed, Cri};

/// The label that tells the benchmark's static pods apart, with the pod's index as value.
const INDEX_LABEL: &str = "crius-bench-index";
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
/// (so deletion does not wait out a grace period), labelled with its index.
pub fn manifest(name: &str, index: &str, containers: usize, image: &str) -> Value {
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
            "namespace": "crius-bench",
            "labels": { INDEX_LABEL: index },
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

/// GET `http://127.0.0.1:PORT/PATH`, the body as JSON.
async fn get_json(port: u16, path: &str) -> anyhow::Result<Value> {
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .with_context(|| format!("cannot connect to the kubelet on 127.0.0.1:{port}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    let conn = tokio::spawn(conn);
    let request = hyper::Request::get(path)
        .header(hyper::header::HOST, format!("127.0.0.1:{port}"))
        .body(Empty::<Bytes>::new())?;
    let response = sender.send_request(request).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    conn.abort();
    if !status.is_success() {
        bail!(
            "GET {path} on 127.0.0.1:{port}: {status}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    serde_json::from_slice(&body).with_context(|| format!("GET {path}: not JSON"))
}

/// What `/pods` says of the benchmark's pods: index label -> the number of containers in
/// state running.
pub fn running_by_index(pods: &Value) -> HashMap<String, usize> {
    let mut found = HashMap::new();
    for pod in pods["items"].as_array().into_iter().flatten() {
        let Some(index) = pod["metadata"]["labels"][INDEX_LABEL].as_str() else {
            continue;
        };
        let running = pod["status"]["containerStatuses"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|c| c["state"]["running"].is_object())
            .count();
        found.insert(index.to_string(), running);
    }
    found
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
        let last = match get_json(port, "/pods").await {
            Ok(pods) => {
                let seen = running_by_index(&pods);
                if done(&seen) {
                    return Ok(());
                }
                format!("{seen:?}")
            }
            Err(err) => format!("{err:#}"),
        };
        if Instant::now() >= deadline {
            bail!("{what}: not within {timeout:?}; /pods last said (index: running containers) {last}");
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

/// The runtime's start time (ns since the epoch) of the last started container of the pod
/// with index label `index`.
async fn last_started_ns(cri: &Cri, index: &str) -> anyhow::Result<i64> {
    let mut rt = cri.rt.clone();
    let (list, _) = timed(
        "ListContainers",
        rt.list_containers(cri::ListContainersRequest {
            filter: Some(cri::ContainerFilter {
                label_selector: HashMap::from([(INDEX_LABEL.to_string(), index.to_string())]),
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
        _ => bail!("the runtime lists no started container with label {INDEX_LABEL}={index}"),
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
            .filter(|c| c.labels.contains_key(INDEX_LABEL))
            .count();
        let ready = pods
            .items
            .iter()
            .filter(|p| p.labels.contains_key(INDEX_LABEL))
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
    wait_pods(port, Duration::from_secs(60), "the kubelet's /pods", |_| true).await?;

    // Warm-up: the kubelet pulls the image and makes its first pod (and the daemon its
    // bridge), so no timed pod pays for first-time work.
    let warm = write_manifest(
        &args.manifest_dir,
        "bench-warm",
        &manifest("bench-warm", "warm", n, &args.image),
    )?;
    let began = Instant::now();
    wait_pods(port, timeout, "warm-up pod running", |seen| {
        seen.get("warm") == Some(&n)
    })
    .await?;
    eprintln!(
        "crius-bench [{}]: warm-up pod ran after {:.0} ms",
        args.name,
        began.elapsed().as_secs_f64() * 1000.0
    );
    std::fs::remove_file(&warm)?;
    wait_pods(port, timeout, "warm-up pod gone", |seen| {
        !seen.contains_key("warm")
    })
    .await?;

    let (mut to_running, mut to_started) = (Vec::new(), Vec::new());
    let mut written = Vec::new();
    for i in 0..args.pods {
        let index = i.to_string();
        let name = format!("bench-{i}");
        let wrote_ns = now_ns();
        let began = Instant::now();
        written.push(write_manifest(
            &args.manifest_dir,
            &name,
            &manifest(&name, &index, n, &args.image),
        )?);
        wait_pods(port, timeout, &format!("pod {name} running"), |seen| {
            seen.get(&index) == Some(&n)
        })
        .await?;
        to_running.push(began.elapsed().as_secs_f64() * 1000.0);
        let started = last_started_ns(&cri, &index).await?;
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
         before ran; /pods read every {} ms; the kubelet learns of container starts by its \
         PLEG relist (1 s)",
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
    fn manifests_label_their_index_and_exit_on_term() {
        let m = manifest("bench-3", "3", 2, "img:1");
        assert_eq!(m["metadata"]["labels"][INDEX_LABEL], "3");
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
    fn pods_count_running_containers_by_index() {
        let pods = json!({"items": [
            {"metadata": {"labels": {INDEX_LABEL: "0"}},
             "status": {"containerStatuses": [
                {"state": {"running": {"startedAt": "x"}}},
                {"state": {"waiting": {"reason": "ContainerCreating"}}}]}},
            {"metadata": {"labels": {INDEX_LABEL: "1"}}, "status": {}},
            {"metadata": {"labels": {"other": "x"}}, "status": {}}
        ]});
        let seen = running_by_index(&pods);
        assert_eq!(seen.get("0"), Some(&1));
        assert_eq!(seen.get("1"), Some(&0));
        assert_eq!(seen.len(), 2);
        assert!(running_by_index(&json!({})).is_empty());
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
