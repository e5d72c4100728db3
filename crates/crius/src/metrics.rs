//! Prometheus metrics on 127.0.0.1:`metrics_port`: CRI calls per method and status code
//! with their total duration, calls in flight, and the daemon's own memory and fds.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tracing::debug;

/// Counters of the CRI calls served, shared by the request layer and the metrics server.
#[derive(Debug, Default)]
pub struct CallMetrics {
    calls: Mutex<BTreeMap<(String, &'static str), CallStats>>,
}

#[derive(Debug, Default, Clone, Copy)]
struct CallStats {
    count: u64,
    seconds: f64,
}

impl CallMetrics {
    /// Records one finished call of `method` ("RuntimeService/Version") with gRPC `code`.
    pub fn record(&self, method: &str, code: &'static str, elapsed: Duration) {
        let mut calls = self.calls.lock().unwrap_or_else(|e| e.into_inner());
        let stats = calls.entry((method.to_string(), code)).or_default();
        stats.count += 1;
        stats.seconds += elapsed.as_secs_f64();
    }

    /// The Prometheus text exposition of the calls, `in_flight`, and process figures.
    pub fn render(&self, in_flight: usize) -> String {
        let calls = self.calls.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP crius_cri_requests_total CRI calls served, by method and gRPC status code."
        );
        let _ = writeln!(out, "# TYPE crius_cri_requests_total counter");
        for ((method, code), stats) in &calls {
            let _ = writeln!(
                out,
                "crius_cri_requests_total{{method=\"{method}\",code=\"{code}\"}} {}",
                stats.count
            );
        }
        let _ = writeln!(out, "# HELP crius_cri_request_seconds_total Time spent serving CRI calls, by method and gRPC status code.");
        let _ = writeln!(out, "# TYPE crius_cri_request_seconds_total counter");
        for ((method, code), stats) in &calls {
            let _ = writeln!(
                out,
                "crius_cri_request_seconds_total{{method=\"{method}\",code=\"{code}\"}} {}",
                stats.seconds
            );
        }
        let _ = writeln!(
            out,
            "# HELP crius_cri_requests_in_flight CRI calls being served now."
        );
        let _ = writeln!(out, "# TYPE crius_cri_requests_in_flight gauge");
        let _ = writeln!(out, "crius_cri_requests_in_flight {in_flight}");
        if let Some(rss) = resident_bytes() {
            let _ = writeln!(
                out,
                "# HELP process_resident_memory_bytes Resident memory of the crius daemon."
            );
            let _ = writeln!(out, "# TYPE process_resident_memory_bytes gauge");
            let _ = writeln!(out, "process_resident_memory_bytes {rss}");
        }
        if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
            let _ = writeln!(
                out,
                "# HELP process_open_fds Open file descriptors of the crius daemon."
            );
            let _ = writeln!(out, "# TYPE process_open_fds gauge");
            let _ = writeln!(out, "process_open_fds {}", fds.count());
        }
        out
    }
}

fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf only reads a system constant.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page).ok()?)
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

/// Binds 127.0.0.1:`port` now (so a taken port fails start-up) and serves `GET /metrics`
/// from a background task.
pub async fn serve(
    port: u16,
    metrics: Arc<CallMetrics>,
    in_flight: impl Fn() -> usize + Send + Sync + 'static,
) -> anyhow::Result<SocketAddr> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot serve metrics on {addr}"))?;
    let local = listener.local_addr()?;
    let in_flight = Arc::new(in_flight);
    tokio::spawn(async move {
        loop {
            let Ok((stream, peer)) = listener.accept().await else {
                continue;
            };
            let (metrics, in_flight) = (metrics.clone(), in_flight.clone());
            tokio::spawn(async move {
                if let Err(err) = answer(stream, &metrics, in_flight()).await {
                    debug!(%peer, %err, "metrics request failed");
                }
            });
        }
    });
    Ok(local)
}

async fn answer(
    mut stream: TcpStream,
    metrics: &CallMetrics,
    in_flight: usize,
) -> std::io::Result<()> {
    let mut request = Vec::new();
    let mut buf = [0u8; 1024];
    let read = async {
        while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 8192 {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            request.extend_from_slice(&buf[..n]);
        }
        std::io::Result::Ok(())
    };
    tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::TimedOut, "request not read in 5 s")
        })??;
    let line = request.split(|b| *b == b'\n').next().unwrap_or_default();
    let (status, body) = if line.starts_with(b"GET /metrics ") || line.starts_with(b"GET / ") {
        ("200 OK", metrics.render(in_flight))
    } else {
        ("404 Not Found", "only GET /metrics is served\n".to_string())
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counts_durations_and_in_flight() {
        let metrics = CallMetrics::default();
        metrics.record("RuntimeService/Version", "OK", Duration::from_millis(2));
        metrics.record("RuntimeService/Version", "OK", Duration::from_millis(3));
        metrics.record(
            "RuntimeService/Attach",
            "Unimplemented",
            Duration::from_millis(1),
        );
        let text = metrics.render(4);
        assert!(
            text.contains(
                "crius_cri_requests_total{method=\"RuntimeService/Version\",code=\"OK\"} 2"
            ),
            "{text}"
        );
        assert!(text.contains("crius_cri_requests_total{method=\"RuntimeService/Attach\",code=\"Unimplemented\"} 1"), "{text}");
        assert!(text.contains("crius_cri_request_seconds_total{method=\"RuntimeService/Version\",code=\"OK\"} 0.005"), "{text}");
        assert!(text.contains("crius_cri_requests_in_flight 4"), "{text}");
        assert!(text.contains("process_resident_memory_bytes "), "{text}");
    }

    #[test]
    fn code_names_follow_grpc() {
        assert_eq!(code_name("0"), "OK");
        assert_eq!(code_name("5"), "NotFound");
        assert_eq!(code_name("12"), "Unimplemented");
        assert_eq!(code_name("99"), "Unknown");
    }

    #[tokio::test]
    async fn serves_get_metrics_over_http() {
        let metrics = Arc::new(CallMetrics::default());
        metrics.record("ImageService/ListImages", "OK", Duration::from_millis(1));
        let addr = serve(0, metrics, || 0).await.unwrap();
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut reply = String::new();
        stream.read_to_string(&mut reply).await.unwrap();
        assert!(reply.starts_with("HTTP/1.1 200 OK"), "{reply}");
        assert!(
            reply.contains("method=\"ImageService/ListImages\""),
            "{reply}"
        );

        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET /other HTTP/1.1\r\n\r\n")
            .await
            .unwrap();
        let mut reply = String::new();
        stream.read_to_string(&mut reply).await.unwrap();
        assert!(reply.starts_with("HTTP/1.1 404"), "{reply}");
    }
}
