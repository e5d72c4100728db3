//! One tracing span per CRI call, with the method, the pod or container id, and the duration.

use std::future::Future;
use std::sync::OnceLock;
use std::time::Instant;

use tonic::{Response, Status};
use tracing::{debug, field, info, info_span, Instrument, Span};

/// The ids a call is about, for its span.
#[derive(Debug, Clone, Copy)]
pub struct Ids<'a> {
    pod_id: Option<&'a str>,
    container_id: Option<&'a str>,
}

impl<'a> Ids<'a> {
    /// A call about no particular object.
    pub fn none() -> Self {
        Ids {
            pod_id: None,
            container_id: None,
        }
    }

    /// A call about one pod.
    pub fn pod(id: &'a str) -> Self {
        Ids {
            pod_id: Some(id),
            container_id: None,
        }
    }

    /// A call about one container.
    pub fn container(id: &'a str) -> Self {
        Ids {
            pod_id: None,
            container_id: Some(id),
        }
    }
}

/// Called with each CRI call's span when it is made (see [`on_call_span`]).
static CALL_SPAN_HOOK: OnceLock<fn(&Span)> = OnceLock::new();

/// Sets a function called with each CRI call's span when it is made, before the call
/// runs: the daemon links the span to its client's trace there. Only the first one set
/// counts.
pub fn on_call_span(hook: fn(&Span)) {
    let _ = CALL_SPAN_HOOK.set(hook);
}

/// Runs one CRI call inside its span and logs how it ended and how long it took.
pub async fn traced<T, F>(
    method: &'static str,
    ids: Ids<'_>,
    call: F,
) -> Result<Response<T>, Status>
where
    F: Future<Output = Result<T, Status>>,
{
    // otel.* fields name the exported span and mark how the call ended.
    let span = info_span!(
        "cri",
        method,
        pod_id = field::Empty,
        container_id = field::Empty,
        otel.name = method,
        otel.kind = "server",
        rpc.system = "grpc",
        rpc.grpc.status_code = field::Empty,
        otel.status_code = field::Empty,
        otel.status_description = field::Empty,
    );
    if let Some(hook) = CALL_SPAN_HOOK.get() {
        hook(&span);
    }
    if let Some(id) = ids.pod_id {
        span.record("pod_id", id);
    }
    if let Some(id) = ids.container_id {
        span.record("container_id", id);
    }
    async move {
        let start = Instant::now();
        let result = call.await;
        let duration_ms = start.elapsed().as_secs_f64() * 1000.0;
        let span = Span::current();
        match &result {
            Ok(_) => {
                span.record("rpc.grpc.status_code", 0);
                debug!(duration_ms, "ok");
            }
            Err(status) => {
                span.record("rpc.grpc.status_code", status.code() as i32);
                span.record("otel.status_code", "error");
                span.record("otel.status_description", status.message());
                info!(
                    duration_ms,
                    code = ?status.code(),
                    error = status.message(),
                    "failed"
                );
            }
        }
        result.map(Response::new)
    }
    .instrument(span)
    .await
}
