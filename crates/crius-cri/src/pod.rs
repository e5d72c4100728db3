//! Pod sandbox RPCs: RunPodSandbox, StopPodSandbox, RemovePodSandbox, PodSandboxStatus,
//! ListPodSandbox, UpdatePodSandboxResources.

use std::collections::HashMap;
use std::sync::Arc;

use crius_core::{now_ns, pod_state_cri, Daemon, PodRecord};
use crius_cri_api::v1 as cri;
use tonic::Status;

use crate::container::container_status;
use crate::status::{invalid, to_status};

/// RunPodSandbox.
pub async fn run(
    daemon: &Arc<Daemon>,
    req: cri::RunPodSandboxRequest,
) -> Result<cri::RunPodSandboxResponse, Status> {
    let config = req
        .config
        .ok_or_else(|| invalid("RunPodSandbox needs a pod sandbox config"))?;
    let id = daemon
        .run_pod(config, req.runtime_handler)
        .await
        .map_err(to_status)?;
    tracing::Span::current().record("pod_id", id.as_str());
    Ok(cri::RunPodSandboxResponse { pod_sandbox_id: id })
}

/// StopPodSandbox.
pub async fn stop(
    daemon: &Daemon,
    req: cri::StopPodSandboxRequest,
) -> Result<cri::StopPodSandboxResponse, Status> {
    if req.pod_sandbox_id.is_empty() {
        return Err(invalid("StopPodSandbox needs a pod_sandbox_id"));
    }
    daemon
        .stop_pod(&req.pod_sandbox_id)
        .await
        .map_err(to_status)?;
    Ok(cri::StopPodSandboxResponse {})
}

/// RemovePodSandbox.
pub async fn remove(
    daemon: &Daemon,
    req: cri::RemovePodSandboxRequest,
) -> Result<cri::RemovePodSandboxResponse, Status> {
    if req.pod_sandbox_id.is_empty() {
        return Err(invalid("RemovePodSandbox needs a pod_sandbox_id"));
    }
    daemon
        .remove_pod(&req.pod_sandbox_id)
        .await
        .map_err(to_status)?;
    Ok(cri::RemovePodSandboxResponse {})
}

/// UpdatePodSandboxResources.
pub async fn update_resources(
    daemon: &Daemon,
    req: cri::UpdatePodSandboxResourcesRequest,
) -> Result<cri::UpdatePodSandboxResourcesResponse, Status> {
    if req.pod_sandbox_id.is_empty() {
        return Err(invalid("UpdatePodSandboxResources needs a pod_sandbox_id"));
    }
    daemon
        .update_pod_resources(&req.pod_sandbox_id, req.overhead, req.resources)
        .await
        .map_err(to_status)?;
    Ok(cri::UpdatePodSandboxResourcesResponse {})
}

/// The CRI view of a pod record.
pub fn pod_status(pod: &PodRecord) -> cri::PodSandboxStatus {
    let namespace_options = pod
        .config
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .and_then(|s| s.namespace_options.clone())
        .unwrap_or_default();
    cri::PodSandboxStatus {
        id: pod.id.clone(),
        metadata: pod.config.metadata.clone(),
        state: pod_state_cri(pod.state) as i32,
        created_at: pod.created_at,
        network: Some(cri::PodSandboxNetworkStatus {
            ip: pod.ips.first().cloned().unwrap_or_default(),
            additional_ips: pod
                .ips
                .iter()
                .skip(1)
                .map(|ip| cri::PodIp { ip: ip.clone() })
                .collect(),
        }),
        linux: Some(cri::LinuxPodSandboxStatus {
            namespaces: Some(cri::Namespace {
                options: Some(namespace_options),
            }),
        }),
        labels: pod.config.labels.clone(),
        annotations: pod.config.annotations.clone(),
        runtime_handler: pod.runtime_handler.clone(),
    }
}

/// PodSandboxStatus; `verbose` adds the pod's record as JSON.
pub fn status(
    daemon: &Daemon,
    req: cri::PodSandboxStatusRequest,
) -> Result<cri::PodSandboxStatusResponse, Status> {
    if req.pod_sandbox_id.is_empty() {
        return Err(invalid("PodSandboxStatus needs a pod_sandbox_id"));
    }
    let pod = daemon.pod_status(&req.pod_sandbox_id).map_err(to_status)?;
    let mut info = HashMap::new();
    if req.verbose {
        info.insert(
            "info".to_string(),
            serde_json::json!({
                "pid": pod.pause_pid.unwrap_or(0),
                "netns": pod.netns,
                "infraContainer": !pod.infra_dropped,
                "ipcNs": pod.ipc_ns,
                "utsNs": pod.uts_ns,
                "cgroupParent": pod.cgroup_parent,
                "runtimeHandler": pod.runtime_handler,
                "pauseImage": pod.pause_image,
                "config": pod.config,
            })
            .to_string(),
        );
    }
    let containers_statuses = daemon
        .list_containers(Some(&cri::ContainerFilter {
            pod_sandbox_id: pod.id.clone(),
            ..Default::default()
        }))
        .iter()
        .map(container_status)
        .collect();
    Ok(cri::PodSandboxStatusResponse {
        status: Some(pod_status(&pod)),
        info,
        containers_statuses,
        timestamp: now_ns(),
    })
}

/// ListPodSandbox.
pub fn list(daemon: &Daemon, req: cri::ListPodSandboxRequest) -> cri::ListPodSandboxResponse {
    let items = daemon
        .list_pods(req.filter.as_ref())
        .into_iter()
        .map(|p| cri::PodSandbox {
            id: p.id,
            metadata: p.config.metadata,
            state: pod_state_cri(p.state) as i32,
            created_at: p.created_at,
            labels: p.config.labels,
            annotations: p.config.annotations,
            runtime_handler: p.runtime_handler,
        })
        .collect();
    cri::ListPodSandboxResponse { items }
}
