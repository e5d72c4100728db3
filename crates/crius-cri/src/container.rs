//! Container RPCs: CreateContainer, StartContainer, StopContainer, RemoveContainer,
//! ListContainers, ContainerStatus, UpdateContainerResources, ReopenContainerLog, ExecSync, CheckpointContainer.

use std::collections::HashMap;
use std::sync::Arc;

use crius_core::{container_state_cri, ContainerRecord, Daemon};
use crius_cri_api::v1 as cri;
use tonic::Status;

use crate::status::{invalid, to_status};

fn need_id(rpc: &str, id: &str) -> Result<(), Status> {
    if id.is_empty() {
        return Err(invalid(format!("{rpc} needs a container_id")));
    }
    Ok(())
}

/// CreateContainer.
pub async fn create(
    daemon: &Arc<Daemon>,
    req: cri::CreateContainerRequest,
) -> Result<cri::CreateContainerResponse, Status> {
    if req.pod_sandbox_id.is_empty() {
        return Err(invalid("CreateContainer needs a pod_sandbox_id"));
    }
    let config = req
        .config
        .ok_or_else(|| invalid("CreateContainer needs a container config"))?;
    let id = daemon
        .create_container(&req.pod_sandbox_id, config)
        .await
        .map_err(to_status)?;
    tracing::Span::current().record("container_id", id.as_str());
    Ok(cri::CreateContainerResponse { container_id: id })
}

/// CheckpointContainer: the archive is written at `location` (restores go through
/// CreateContainer with the archive's path as the image).
pub async fn checkpoint(
    daemon: &Daemon,
    req: cri::CheckpointContainerRequest,
) -> Result<cri::CheckpointContainerResponse, Status> {
    need_id("CheckpointContainer", &req.container_id)?;
    daemon
        .checkpoint_container(&req.container_id, &req.location)
        .await
        .map_err(to_status)?;
    Ok(cri::CheckpointContainerResponse {})
}

/// StartContainer.
pub async fn start(
    daemon: &Daemon,
    req: cri::StartContainerRequest,
) -> Result<cri::StartContainerResponse, Status> {
    need_id("StartContainer", &req.container_id)?;
    daemon
        .start_container(&req.container_id)
        .await
        .map_err(to_status)?;
    Ok(cri::StartContainerResponse {})
}

/// StopContainer.
pub async fn stop(
    daemon: &Daemon,
    req: cri::StopContainerRequest,
) -> Result<cri::StopContainerResponse, Status> {
    need_id("StopContainer", &req.container_id)?;
    daemon
        .stop_container(&req.container_id, req.timeout)
        .await
        .map_err(to_status)?;
    Ok(cri::StopContainerResponse {})
}

/// RemoveContainer.
pub async fn remove(
    daemon: &Daemon,
    req: cri::RemoveContainerRequest,
) -> Result<cri::RemoveContainerResponse, Status> {
    need_id("RemoveContainer", &req.container_id)?;
    daemon
        .remove_container(&req.container_id)
        .await
        .map_err(to_status)?;
    Ok(cri::RemoveContainerResponse {})
}

/// The container's mounts as the kubelet sent them, each image volume's ImageSpec with
/// the id of the image crius mounted as its `image_ref` (the kubelet shows it as the
/// volume's image digest).
fn mounts_with_image_refs(c: &ContainerRecord) -> Vec<cri::Mount> {
    let mut ids = c.image_volumes.iter();
    c.config
        .mounts
        .iter()
        .cloned()
        .map(|mut m| {
            if let Some(spec) = m.image.as_mut().filter(|s| !s.image.is_empty()) {
                if let Some(id) = ids.next() {
                    if spec.image_ref.is_empty() {
                        spec.image_ref = id.clone();
                    }
                }
            }
            m
        })
        .collect()
}

/// The CRI view of a container record.
pub fn container_status(c: &ContainerRecord) -> cri::ContainerStatus {
    cri::ContainerStatus {
        id: c.id.clone(),
        metadata: c.config.metadata.clone(),
        state: container_state_cri(c.state) as i32,
        created_at: c.created_at,
        started_at: c.started_at,
        finished_at: c.finished_at,
        exit_code: c.exit_code,
        image: Some(cri::ImageSpec {
            image: c.image_name.clone(),
            ..Default::default()
        }),
        image_ref: c.image_ref.clone(),
        reason: c.reason.clone(),
        message: c.message.clone(),
        labels: c.config.labels.clone(),
        annotations: c.config.annotations.clone(),
        mounts: mounts_with_image_refs(c),
        log_path: c
            .log_path
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        resources: c
            .config
            .linux
            .as_ref()
            .and_then(|l| l.resources.clone())
            .map(|r| cri::ContainerResources {
                linux: Some(r),
                windows: None,
            }),
        image_id: c.image_id.clone(),
        user: c.user.as_ref().map(|u| cri::ContainerUser {
            linux: Some(cri::LinuxContainerUser {
                uid: u.uid.into(),
                gid: u.gid.into(),
                supplemental_groups: u.groups.iter().map(|g| i64::from(*g)).collect(),
            }),
        }),
        stop_signal: crius_core::cri_signal(c.stop_signal) as i32,
    }
}

/// ContainerStatus; `verbose` adds the record as JSON.
pub fn status(
    daemon: &Daemon,
    req: cri::ContainerStatusRequest,
) -> Result<cri::ContainerStatusResponse, Status> {
    need_id("ContainerStatus", &req.container_id)?;
    let c = daemon
        .container_status(&req.container_id)
        .map_err(to_status)?;
    let mut info = HashMap::new();
    if req.verbose {
        info.insert(
            "info".to_string(),
            serde_json::json!({
                "pid": c.pid.unwrap_or(0),
                "sandboxID": c.pod_id,
                "config": c.config,
            })
            .to_string(),
        );
    }
    Ok(cri::ContainerStatusResponse {
        status: Some(container_status(&c)),
        info,
    })
}

/// ListContainers.
pub fn list(daemon: &Daemon, req: cri::ListContainersRequest) -> cri::ListContainersResponse {
    let containers = daemon
        .list_containers(req.filter.as_ref())
        .into_iter()
        .map(|c| cri::Container {
            state: container_state_cri(c.state) as i32,
            id: c.id,
            pod_sandbox_id: c.pod_id,
            metadata: c.config.metadata,
            image: Some(cri::ImageSpec {
                image: c.image_name,
                ..Default::default()
            }),
            image_ref: c.image_ref,
            created_at: c.created_at,
            labels: c.config.labels,
            annotations: c.config.annotations,
            image_id: c.image_id,
        })
        .collect();
    cri::ListContainersResponse { containers }
}

/// UpdateContainerResources.
pub async fn update_resources(
    daemon: &Daemon,
    req: cri::UpdateContainerResourcesRequest,
) -> Result<cri::UpdateContainerResourcesResponse, Status> {
    need_id("UpdateContainerResources", &req.container_id)?;
    let linux = req
        .linux
        .ok_or_else(|| invalid("UpdateContainerResources needs linux resources"))?;
    daemon
        .update_container_resources(&req.container_id, linux)
        .await
        .map_err(to_status)?;
    Ok(cri::UpdateContainerResourcesResponse {})
}

/// ReopenContainerLog.
pub async fn reopen_log(
    daemon: &Daemon,
    req: cri::ReopenContainerLogRequest,
) -> Result<cri::ReopenContainerLogResponse, Status> {
    need_id("ReopenContainerLog", &req.container_id)?;
    daemon
        .reopen_container_log(&req.container_id)
        .await
        .map_err(to_status)?;
    Ok(cri::ReopenContainerLogResponse {})
}

/// ExecSync.
pub async fn exec_sync(
    daemon: &Daemon,
    req: cri::ExecSyncRequest,
) -> Result<cri::ExecSyncResponse, Status> {
    need_id("ExecSync", &req.container_id)?;
    if req.cmd.is_empty() {
        return Err(invalid("ExecSync needs a command"));
    }
    let out = daemon
        .exec_sync(&req.container_id, req.cmd, req.timeout)
        .await
        .map_err(to_status)?;
    Ok(cri::ExecSyncResponse {
        stdout: out.stdout,
        stderr: out.stderr,
        exit_code: out.exit_code,
    })
}
