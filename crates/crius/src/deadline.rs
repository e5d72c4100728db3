//! The client's deadline (`grpc-timeout`) answered as gRPC defines it: DEADLINE_EXCEEDED.
//!
//! tonic's server enforces the header itself but answers CANCELLED, and a client whose own
//! timer has not fired yet reports that code (critest's "public image should timeout if
//! requested" wants DeadlineExceeded, and so do callers that retry on it). This layer runs
//! inside tonic's and ends the call a moment before it with DEADLINE_EXCEEDED; a call that
//! ends is dropped, as tonic would drop it.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tonic::codegen::http;

/// How much earlier than tonic's own timer the call is ended, so that this layer's answer
/// always wins the race (timers fire on millisecond ticks).
const AHEAD: Duration = Duration::from_millis(1);

/// The header a gRPC client sends its deadline in.
const GRPC_TIMEOUT: &str = "grpc-timeout";

/// Ends calls at the client's deadline with DEADLINE_EXCEEDED.
#[derive(Clone, Copy, Debug, Default)]
pub struct Deadline;

impl<S> tower::Layer<S> for Deadline {
    type Service = DeadlineService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        DeadlineService { inner }
    }
}

/// The service [`Deadline`] wraps around the CRI routes.
#[derive(Clone, Debug)]
pub struct DeadlineService<S> {
    inner: S,
}

impl<S, B, ResBody> tower::Service<http::Request<B>> for DeadlineService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let timeout = req
            .headers()
            .get(GRPC_TIMEOUT)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_grpc_timeout);
        let call = self.inner.call(req);
        Box::pin(async move {
            let Some(timeout) = timeout else {
                return call.await;
            };
            match tokio::time::timeout(timeout.saturating_sub(AHEAD), call).await {
                Ok(result) => result,
                Err(_) => Ok(tonic::Status::deadline_exceeded(format!(
                    "the client's deadline ({timeout:?}) passed before the call finished"
                ))
                .into_http()),
            }
        })
    }
}

/// A `grpc-timeout` value: at most 8 digits and a unit (H, M, S, m, u, n), as the gRPC
/// over HTTP/2 spec writes it; anything else is no deadline, as tonic treats it.
fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    if value.len() < 2 || value.len() > 9 {
        return None;
    }
    let (digits, unit) = value.split_at(value.len() - 1);
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::{Layer, ServiceExt};

    #[test]
    fn grpc_timeout_values_parse_as_the_spec_writes_them() {
        assert_eq!(parse_grpc_timeout("1m"), Some(Duration::from_millis(1)));
        assert_eq!(parse_grpc_timeout("999u"), Some(Duration::from_micros(999)));
        assert_eq!(parse_grpc_timeout("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(
            parse_grpc_timeout("99999999S"),
            Some(Duration::from_secs(99_999_999))
        );
        for bad in ["", "m", "123456789S", "1x", "-1m", "1.5S", " 1m"] {
            assert_eq!(parse_grpc_timeout(bad), None, "{bad:?}");
        }
    }

    /// A call that takes longer than the client's deadline gets DEADLINE_EXCEEDED; one
    /// within it, or without a deadline, gets its own answer.
    #[tokio::test]
    async fn a_call_past_the_clients_deadline_is_deadline_exceeded() {
        let slow = tower::service_fn(|_req: http::Request<()>| async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            Ok::<_, std::convert::Infallible>(http::Response::new(String::from("done")))
        });
        let svc = Deadline.layer(slow);
        let call = |timeout: Option<&str>| {
            let mut req = http::Request::new(());
            if let Some(t) = timeout {
                req.headers_mut().insert(GRPC_TIMEOUT, t.parse().unwrap());
            }
            svc.clone().oneshot(req)
        };
        let late = call(Some("20m")).await.unwrap();
        let status = tonic::Status::from_header_map(late.headers()).expect("a grpc-status");
        assert_eq!(status.code(), tonic::Code::DeadlineExceeded, "{status:?}");
        let in_time = call(Some("5S")).await.unwrap();
        assert_eq!(in_time.body(), "done");
        let unbounded = call(None).await.unwrap();
        assert_eq!(unbounded.body(), "done");
    }
}
