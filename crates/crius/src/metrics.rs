//! The Prometheus endpoint (`GET /metrics` on `metrics_host:metrics_port`) and the timer
//! of every CRI call (run by the server's call layer). The series themselves are defined in `crius-metrics`.
//!
//! A metrics address that cannot be bound does not stop the daemon (CRI-O refuses to
//! start then): CRI matters more than its metrics, so crius logs an error naming the
//! address, serves CRI, and tries the address again every [`RETRY`].

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crius_core::{ContainerState, Daemon, PodState};
use http_body_util::Full;
use hyper::body::Bytes;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tonic::codegen::http;
use tracing::{debug, error, info};

/// How often a metrics address that could not be bound is tried again.
pub const RETRY: Duration = Duration::from_secs(30);

/// Serves the metrics endpoint from a background task; returns at once.
pub fn spawn(addr: SocketAddr, daemon: Arc<Daemon>) {
    tokio::spawn(async move {
        let listener = loop {
            match TcpListener::bind(addr).await {
                Ok(listener) => break listener,
                Err(err) => {
                    error!(
                        %addr,
                        %err,
                        retry = ?RETRY,
                        "cannot serve metrics on {addr}: {err}; serving CRI without metrics and trying again"
                    );
                    tokio::time::sleep(RETRY).await;
                }
            }
        };
        let local = listener.local_addr().unwrap_or(addr);
        info!(addr = %local, "serving metrics");
        loop {
            let Ok((stream, peer)) = listener.accept().await else {
                continue;
            };
            let daemon = daemon.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let daemon = daemon.clone();
                    async move { Ok::<_, Infallible>(answer(&req, &daemon)) }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(10))
                    .serve_connection(TokioIo::new(stream), service);
                if let Err(err) = conn.await {
                    debug!(%peer, %err, "metrics connection failed");
                }
            });
        }
    });
}

fn answer<B>(req: &http::Request<B>, daemon: &Daemon) -> http::Response<Full<Bytes>> {
    let (status, content_type, body) = match (req.method(), req.uri().path()) {
        (&http::Method::GET, "/metrics") => {
            refresh_states(daemon);
            (
                http::StatusCode::OK,
                crius_metrics::CONTENT_TYPE,
                crius_metrics::metrics().encode(),
            )
        }
        _ => (
            http::StatusCode::NOT_FOUND,
            "text/plain",
            "only GET /metrics is served\n".to_string(),
        ),
    };
    let mut resp = http::Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    resp
}

/// Sets the pods and containers by state from the daemon's records, for this scrape.
fn refresh_states(daemon: &Daemon) {
    let mut ready = 0;
    let mut not_ready = 0;
    for pod in daemon.list_pods(None) {
        match pod.state {
            PodState::Ready => ready += 1,
            PodState::NotReady => not_ready += 1,
        }
    }
    let (mut created, mut running, mut exited) = (0, 0, 0);
    for ctr in daemon.list_containers(None) {
        match ctr.state {
            ContainerState::Created => created += 1,
            ContainerState::Running => running += 1,
            ContainerState::Exited => exited += 1,
        }
    }
    crius_metrics::metrics().set_object_states(
        &[("ready", ready), ("notready", not_ready)],
        &[
            ("created", created),
            ("running", running),
            ("exited", exited),
        ],
    );
}

/// The CRI method of a gRPC path: "/runtime.v1.RuntimeService/Version" -> "Version";
/// a method of another service keeps its whole path.
pub fn operation_name(path: &str) -> &str {
    path.strip_prefix("/runtime.v1.")
        .and_then(|rest| rest.split_once('/'))
        .map_or(path, |(_, method)| method)
}

/// The gRPC status code name for the numeric `grpc-status` value.
pub fn code_name(code: &str) -> &'static str {
    match code {
        "0" => "OK",
        "1" => "Canceled",
        "2" => "Unknown",
        "3" => "InvalidArgument",
        "4" => "DeadlineExceeded",
        "5" => "NotFound",
        "6" => "AlreadyExists",
        "7" => "PermissionDenied",
        "8" => "ResourceExhausted",
        "9" => "FailedPrecondition",
        "10" => "Aborted",
        "11" => "OutOfRange",
        "12" => "Unimplemented",
        "13" => "Internal",
        "14" => "Unavailable",
        "15" => "DataLoss",
        "16" => "Unauthenticated",
        _ => "Unknown",
    }
}

/// Times one call through the CRI socket for the metrics: operations, errors by code,
/// latency and calls in flight. A call counts until its response head is ready (a
/// streaming body does not hold it).
#[derive(Debug)]
pub struct CallTimer {
    operation: String,
    started: Instant,
    _in_flight: crius_metrics::GaugeGuard<'static>,
}

impl CallTimer {
    /// A call to gRPC `path` begins.
    pub fn start(path: &str) -> CallTimer {
        CallTimer {
            operation: operation_name(path).to_string(),
            started: Instant::now(),
            _in_flight: crius_metrics::metrics().operation_in_flight(),
        }
    }

    /// The call ended with `result`.
    pub fn finish<B, E>(self, result: &Result<http::Response<B>, E>) {
        // tonic sends an error as a trailers-only response: its status is in the head.
        let code = match result {
            Ok(resp) => resp
                .headers()
                .get("grpc-status")
                .and_then(|v| v.to_str().ok())
                .map_or("OK", code_name),
            Err(_) => "Unknown",
        };
        crius_metrics::metrics().record_operation(&self.operation, code, self.started.elapsed());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_are_named_as_cri_o_names_them() {
        assert_eq!(
            operation_name("/runtime.v1.RuntimeService/RunPodSandbox"),
            "RunPodSandbox"
        );
        assert_eq!(
            operation_name("/runtime.v1.ImageService/PullImage"),
            "PullImage"
        );
        assert_eq!(operation_name("/other.Svc/Call"), "/other.Svc/Call");
    }

    #[test]
    fn code_names_follow_grpc() {
        assert_eq!(code_name("0"), "OK");
        assert_eq!(code_name("5"), "NotFound");
        assert_eq!(code_name("12"), "Unimplemented");
        assert_eq!(code_name("99"), "Unknown");
    }
}
