//! `crius status`: asks a running daemon, over its CRI socket, what it is and whether it is
//! ready, the way the kubelet does; for operators without crictl.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use crius_cri_api::v1 as cri;
use crius_cri_api::v1::runtime_service_client::RuntimeServiceClient;
use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint, Uri};

/// What `crius status` found: the text to print and whether every condition holds.
#[derive(Debug)]
pub struct StatusReport {
    /// Human-readable lines.
    pub text: String,
    /// RuntimeReady and NetworkReady (and any other condition) are all true.
    pub ready: bool,
}

/// A gRPC channel (one HTTP/2 connection, as the kubelet keeps) to the CRI socket at
/// `socket`. Connecting is bounded by `connect_timeout`; each call by `call_timeout` when
/// given (callers that bound calls themselves, or stream, pass `None`).
pub async fn connect(
    socket: &Path,
    connect_timeout: Duration,
    call_timeout: Option<Duration>,
) -> anyhow::Result<Channel> {
    let path = socket.to_path_buf();
    // The URI is required by tonic but unused: the connector dials the socket.
    let mut endpoint = Endpoint::try_from("http://[::1]:50051")?.connect_timeout(connect_timeout);
    if let Some(t) = call_timeout {
        endpoint = endpoint.timeout(t);
    }
    endpoint
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(path).await?;
                Ok::<_, std::io::Error>(TokioIo::new(stream))
            }
        }))
        .await
        .with_context(|| format!("cannot connect to {}", socket.display()))
}

/// Calls Version and Status on the daemon serving `socket`, within `timeout`.
pub async fn query(
    socket: &Path,
    verbose: bool,
    timeout: Duration,
) -> anyhow::Result<StatusReport> {
    let channel = connect(socket, timeout, Some(timeout)).await?;
    let mut client = RuntimeServiceClient::new(channel);
    let version = client
        .version(cri::VersionRequest {
            version: "v1".into(),
        })
        .await
        .with_context(|| format!("Version on {} failed", socket.display()))?
        .into_inner();
    let status = client
        .status(cri::StatusRequest { verbose })
        .await
        .with_context(|| format!("Status on {} failed", socket.display()))?
        .into_inner();
    Ok(report(socket, &version, &status))
}

/// Renders the answers of Version and Status.
pub fn report(
    socket: &Path,
    version: &cri::VersionResponse,
    status: &cri::StatusResponse,
) -> StatusReport {
    let mut text = String::new();
    let _ = writeln!(text, "socket: {}", socket.display());
    let _ = writeln!(
        text,
        "runtime: {} {} (CRI {})",
        version.runtime_name, version.runtime_version, version.runtime_api_version
    );
    let conditions = status
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    let mut ready = !conditions.is_empty();
    for c in conditions {
        ready &= c.status;
        if c.status {
            let _ = writeln!(text, "{}: true", c.r#type);
        } else {
            let _ = writeln!(text, "{}: false ({}: {})", c.r#type, c.reason, c.message);
        }
    }
    // With --verbose, each handler's readiness comes in `runtimeHandlers`.
    let readiness: serde_json::Value = status
        .info
        .get("runtimeHandlers")
        .and_then(|j| serde_json::from_str(j).ok())
        .unwrap_or_default();
    let handlers: Vec<String> = status
        .runtime_handlers
        .iter()
        .map(|h| h.name.as_str())
        .filter(|n| !n.is_empty())
        .map(|n| match readiness[n]["reason"].as_str() {
            Some(reason) => format!("{n} (not ready: {reason})"),
            None => n.to_string(),
        })
        .collect();
    if !handlers.is_empty() {
        let _ = writeln!(text, "handlers: {}", handlers.join(", "));
    }
    let mut keys: Vec<&String> = status.info.keys().collect();
    keys.sort();
    for key in keys {
        let _ = writeln!(text, "{key}: {}", status.info[key]);
    }
    StatusReport { text, ready }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn condition(kind: &str, ok: bool) -> cri::RuntimeCondition {
        cri::RuntimeCondition {
            r#type: kind.into(),
            status: ok,
            reason: if ok {
                String::new()
            } else {
                "NetworkPluginNotReady".into()
            },
            message: if ok {
                String::new()
            } else {
                "no CNI configuration".into()
            },
        }
    }

    #[test]
    fn ready_only_when_every_condition_holds() {
        let version = cri::VersionResponse {
            version: "0.1.0".into(),
            runtime_name: "crius".into(),
            runtime_version: "0.1.0".into(),
            runtime_api_version: "v1".into(),
        };
        let mut status = cri::StatusResponse {
            status: Some(cri::RuntimeStatus {
                conditions: vec![
                    condition("RuntimeReady", true),
                    condition("NetworkReady", false),
                ],
            }),
            ..Default::default()
        };
        let r = report(Path::new("/run/crius/crius.sock"), &version, &status);
        assert!(!r.ready);
        assert!(
            r.text.contains("runtime: crius 0.1.0 (CRI v1)"),
            "{}",
            r.text
        );
        assert!(
            r.text
                .contains("NetworkReady: false (NetworkPluginNotReady: no CNI configuration)"),
            "{}",
            r.text
        );
        status.status = Some(cri::RuntimeStatus {
            conditions: vec![
                condition("RuntimeReady", true),
                condition("NetworkReady", true),
            ],
        });
        assert!(report(Path::new("/s"), &version, &status).ready);
        status.status = None;
        assert!(!report(Path::new("/s"), &version, &status).ready);
        status.runtime_handlers = ["runc", "kata"]
            .map(|name| cri::RuntimeHandler {
                name: name.into(),
                features: None,
            })
            .into();
        status.info.insert(
            "runtimeHandlers".into(),
            r#"{"runc":{"ready":true},"kata":{"ready":false,"reason":"shim binary /x not found"}}"#
                .into(),
        );
        let text = report(Path::new("/s"), &version, &status).text;
        assert!(
            text.contains("handlers: runc, kata (not ready: shim binary /x not found)"),
            "{text}"
        );
    }
}
