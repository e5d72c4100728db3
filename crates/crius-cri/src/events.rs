//! GetContainerEvents: a stream of lifecycle events for the kubelet's evented PLEG.

use std::sync::Arc;

use crius_core::{Daemon, EventKind};
use crius_cri_api::v1 as cri;
use futures::Stream;
use tokio::sync::broadcast::error::RecvError;
use tonic::Status;

use crate::container::container_status;
use crate::pod::pod_status;

fn event_type(kind: EventKind) -> cri::ContainerEventType {
    match kind {
        EventKind::Created => cri::ContainerEventType::ContainerCreatedEvent,
        EventKind::Started => cri::ContainerEventType::ContainerStartedEvent,
        EventKind::Stopped => cri::ContainerEventType::ContainerStoppedEvent,
        EventKind::Deleted => cri::ContainerEventType::ContainerDeletedEvent,
    }
}

/// The event stream; it ends when the client goes away. A client too slow to keep up
/// misses events (and is told so in the log), as the kubelet then relists.
pub fn stream(
    daemon: Arc<Daemon>,
) -> impl Stream<Item = Result<cri::ContainerEventResponse, Status>> {
    let rx = daemon.subscribe_events();
    futures::stream::unfold((daemon, rx), |(daemon, mut rx)| async move {
        loop {
            match rx.recv().await {
                Ok(ev) => {
                    let pod = daemon.pod_status(&ev.pod_id).ok();
                    let containers = daemon
                        .list_containers(Some(&cri::ContainerFilter {
                            pod_sandbox_id: ev.pod_id.clone(),
                            ..Default::default()
                        }))
                        .iter()
                        .map(container_status)
                        .collect();
                    let resp = cri::ContainerEventResponse {
                        container_id: ev.container_id,
                        container_event_type: event_type(ev.kind) as i32,
                        created_at: ev.at,
                        pod_sandbox_status: pod.as_ref().map(pod_status),
                        containers_statuses: containers,
                    };
                    return Some((Ok(resp), (daemon, rx)));
                }
                Err(RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "event stream client is too slow");
                }
                Err(RecvError::Closed) => return None,
            }
        }
    })
}
