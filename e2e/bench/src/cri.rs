//! The CRI client side: a gRPC channel over a Unix socket, the pod and container configs the
//! benchmarks send, and timed calls that give up after a deadline instead of hanging.

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use crius_cri_api::v1 as cri;
use crius_cri_api::v1::image_service_client::ImageServiceClient;
use crius_cri_api::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::Channel;

/// The label every benchmark pod carries, so leftovers can be found and removed.
pub const BENCH_LABEL: &str = "crius-bench";
/// How long a single CRI call may take before the benchmark gives up on it.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(120);

/// The socket path of an endpoint given as `unix:///path` or `/path`.
pub fn socket_path(endpoint: &str) -> anyhow::Result<PathBuf> {
    let path = endpoint.strip_prefix("unix://").unwrap_or(endpoint);
    if !path.starts_with('/') {
        anyhow::bail!("endpoint {endpoint} is not unix:///ABSOLUTE/PATH or /ABSOLUTE/PATH");
    }
    Ok(PathBuf::from(path))
}

/// Opens one gRPC channel over the socket; calls are bounded by the benchmark itself
/// ([`CALL_TIMEOUT`]), not by the channel.
pub async fn connect(socket: &Path) -> anyhow::Result<Channel> {
    crius::status::connect(socket, Duration::from_secs(5), None).await
}

/// Both CRI services over one channel; cheap to clone.
#[derive(Clone)]
pub struct Cri {
    /// RuntimeService.
    pub rt: RuntimeServiceClient<Channel>,
    /// ImageService.
    pub img: ImageServiceClient<Channel>,
}

impl Cri {
    /// Connects to `endpoint` (`unix:///path`).
    pub async fn connect(endpoint: &str) -> anyhow::Result<Cri> {
        let channel = connect(&socket_path(endpoint)?).await?;
        Ok(Cri {
            rt: RuntimeServiceClient::new(channel.clone())
                .max_decoding_message_size(64 * 1024 * 1024),
            img: ImageServiceClient::new(channel).max_decoding_message_size(64 * 1024 * 1024),
        })
    }
}

/// Polls `endpoint` until it answers Version, for at most `timeout`.
pub async fn wait_ready(endpoint: &str, timeout: Duration) -> anyhow::Result<cri::VersionResponse> {
    let deadline = Instant::now() + timeout;
    loop {
        let attempt = async {
            let mut c = Cri::connect(endpoint).await?;
            let reply = tokio::time::timeout(
                Duration::from_secs(2),
                c.rt.version(cri::VersionRequest::default()),
            )
            .await
            .map_err(|_| anyhow!("Version timed out"))??;
            Ok::<_, anyhow::Error>(reply.into_inner())
        };
        match attempt.await {
            Ok(version) => return Ok(version),
            Err(err) if Instant::now() >= deadline => {
                return Err(err.context(format!("{endpoint} did not answer within {timeout:?}")))
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// Runs `call`, failing after [`CALL_TIMEOUT`]; returns the reply and its latency in ms.
pub async fn timed<T, F>(what: &str, call: F) -> anyhow::Result<(T, f64)>
where
    F: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
{
    let start = Instant::now();
    let reply = tokio::time::timeout(CALL_TIMEOUT, call)
        .await
        .map_err(|_| anyhow!("{what} did not answer within {CALL_TIMEOUT:?}"))?
        .map_err(|status| anyhow!("{what} failed: {:?}: {}", status.code(), status.message()))?;
    Ok((reply.into_inner(), start.elapsed().as_secs_f64() * 1000.0))
}

/// Everything the pod and container configs depend on.
#[derive(Clone, Debug)]
pub struct PodTemplate {
    /// Cgroup parent of every pod (cgroupfs driver), e.g. `/crius-bench-1234`.
    pub cgroup_parent: String,
    /// Pods' log dirs are made under this dir (the kubelet makes them; so do we).
    pub log_root: PathBuf,
    /// Tells this run's pods apart from another run's (part of names and uids).
    pub run_tag: String,
}

impl PodTemplate {
    /// The config of benchmark pod number `index` of series `series`; makes its log dir.
    pub fn pod(&self, series: &str, index: usize) -> anyhow::Result<cri::PodSandboxConfig> {
        let name = format!("bench-{series}-{index}");
        let uid = format!("{}-{series}-{index}", self.run_tag);
        let log_dir = self.log_root.join(&uid);
        std::fs::create_dir_all(&log_dir)
            .with_context(|| format!("cannot make pod log dir {}", log_dir.display()))?;
        Ok(cri::PodSandboxConfig {
            metadata: Some(cri::PodSandboxMetadata {
                name: name.clone(),
                uid,
                namespace: "crius-bench".to_string(),
                attempt: 0,
            }),
            hostname: name,
            log_directory: log_dir.display().to_string(),
            labels: HashMap::from([(BENCH_LABEL.to_string(), self.run_tag.clone())]),
            linux: Some(cri::LinuxPodSandboxConfig {
                cgroup_parent: self.cgroup_parent.clone(),
                ..Default::default()
            }),
            ..Default::default()
        })
    }
}

/// A container running `command` from `image` (an image ref as PullImage returned it).
pub fn container(name: &str, image: &str, command: &[&str]) -> cri::ContainerConfig {
    cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: name.to_string(),
            attempt: 0,
        }),
        image: Some(image_spec(image)),
        command: command.iter().map(|s| s.to_string()).collect(),
        log_path: format!("{name}.log"),
        labels: HashMap::from([(BENCH_LABEL.to_string(), name.to_string())]),
        linux: Some(cri::LinuxContainerConfig::default()),
        ..Default::default()
    }
}

/// An ImageSpec naming `image`.
pub fn image_spec(image: &str) -> cri::ImageSpec {
    cri::ImageSpec {
        image: image.to_string(),
        ..Default::default()
    }
}

/// Stops and removes every pod the endpoint knows (with its containers): the daemons the
/// benchmark drives are private to it. Returns how many pods were removed.
pub async fn remove_all_pods(cri: &Cri) -> anyhow::Result<usize> {
    let mut rt = cri.rt.clone();
    let (containers, _) = timed(
        "ListContainers",
        rt.list_containers(cri::ListContainersRequest::default()),
    )
    .await?;
    for ctr in &containers.containers {
        let _ = timed(
            "StopContainer",
            rt.stop_container(cri::StopContainerRequest {
                container_id: ctr.id.clone(),
                timeout: 0,
            }),
        )
        .await;
        let _ = timed(
            "RemoveContainer",
            rt.remove_container(cri::RemoveContainerRequest {
                container_id: ctr.id.clone(),
            }),
        )
        .await;
    }
    let (pods, _) = timed(
        "ListPodSandbox",
        rt.list_pod_sandbox(cri::ListPodSandboxRequest::default()),
    )
    .await?;
    for pod in &pods.items {
        stop_remove_pod(&mut rt, &pod.id).await?;
    }
    Ok(pods.items.len())
}

/// StopPodSandbox then RemovePodSandbox; returns both latencies in ms.
pub async fn stop_remove_pod(
    rt: &mut RuntimeServiceClient<Channel>,
    id: &str,
) -> anyhow::Result<(f64, f64)> {
    let (_, stop) = timed(
        "StopPodSandbox",
        rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: id.to_string(),
        }),
    )
    .await
    .with_context(|| format!("pod {id}"))?;
    let (_, remove) = timed(
        "RemovePodSandbox",
        rt.remove_pod_sandbox(cri::RemovePodSandboxRequest {
            pod_sandbox_id: id.to_string(),
        }),
    )
    .await
    .with_context(|| format!("pod {id}"))?;
    Ok((stop, remove))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_unix_paths() {
        assert_eq!(
            socket_path("unix:///run/x.sock").unwrap(),
            Path::new("/run/x.sock")
        );
        assert_eq!(
            socket_path("/run/x.sock").unwrap(),
            Path::new("/run/x.sock")
        );
        assert!(socket_path("tcp://127.0.0.1:1").is_err());
        assert!(socket_path("unix://relative.sock").is_err());
    }

    #[test]
    fn pod_configs_are_unique_labelled_and_get_a_log_dir() {
        let dir = tempfile::tempdir().unwrap();
        let template = PodTemplate {
            cgroup_parent: "/crius-bench-1".to_string(),
            log_root: dir.path().to_path_buf(),
            run_tag: "r1".to_string(),
        };
        let a = template.pod("seq", 0).unwrap();
        let b = template.pod("seq", 1).unwrap();
        let ma = a.metadata.as_ref().unwrap();
        let mb = b.metadata.as_ref().unwrap();
        assert_ne!(ma.uid, mb.uid);
        assert_ne!(ma.name, mb.name);
        assert_eq!(a.labels.get(BENCH_LABEL).map(String::as_str), Some("r1"));
        assert_eq!(a.linux.as_ref().unwrap().cgroup_parent, "/crius-bench-1");
        assert!(Path::new(&a.log_directory).is_dir());
    }

    #[test]
    fn containers_run_the_given_command() {
        let c = container("sleeper", "sha256:abc", &["sleep", "3600"]);
        assert_eq!(c.command, vec!["sleep", "3600"]);
        assert_eq!(c.image.unwrap().image, "sha256:abc");
        assert_eq!(c.log_path, "sleeper.log");
    }
}
