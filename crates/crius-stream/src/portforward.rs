//! Port forwarding over SPDY (`portforward.k8s.io`): for each connection it forwards, the
//! client opens an error stream and a data stream with the same `requestid` and the pod
//! `port`; the server connects to that port inside the pod and copies bytes both ways on
//! the data stream. A failure is written as text on the error stream.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing::{debug, warn};

use crate::remotecommand::STREAM_CREATION_TIMEOUT;
use crate::spdy::session::{Session, SpdyStream};
use crate::StreamRuntime;

/// The SPDY subprotocol of port forwarding.
pub(crate) const PROTOCOL: &str = "portforward.k8s.io";

#[derive(Default)]
struct Pair {
    data: Option<SpdyStream>,
    error: Option<SpdyStream>,
    since: Option<Instant>,
}

/// Serves port forwarding on an upgraded SPDY connection until the client hangs up.
pub(crate) async fn serve_spdy(session: Session, pod_id: String, runtime: Arc<dyn StreamRuntime>) {
    let (mut incoming, closer) = session.split();
    let mut pairs: HashMap<String, Pair> = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        let stream = tokio::select! {
            s = incoming.recv() => match s {
                Some(s) => s,
                None => break,
            },
            _ = tick.tick() => {
                expire(&mut pairs).await;
                continue;
            }
        };
        let kind = stream.header("streamtype").unwrap_or("").to_string();
        let Some(request_id) = stream.header("requestid").map(str::to_string) else {
            debug!(
                stream = stream.id,
                "port-forward stream without a requestid refused"
            );
            stream.tx.reset().await;
            continue;
        };
        if kind != "data" && kind != "error" {
            debug!(stream = stream.id, %kind, "port-forward stream of unknown type refused");
            stream.tx.reset().await;
            continue;
        }
        if stream.tx.reply().await.is_err() {
            break;
        }
        let pair = pairs.entry(request_id.clone()).or_default();
        pair.since.get_or_insert_with(Instant::now);
        let slot = if kind == "data" {
            &mut pair.data
        } else {
            &mut pair.error
        };
        if slot.is_some() {
            debug!(%request_id, %kind, "second port-forward stream of one kind refused");
            stream.tx.reset().await;
            continue;
        }
        *slot = Some(stream);
        if pair.data.is_some() && pair.error.is_some() {
            if let Some(Pair {
                data: Some(data),
                error: Some(error),
                ..
            }) = pairs.remove(&request_id)
            {
                tokio::spawn(forward(pod_id.clone(), data, error, runtime.clone()));
            }
        }
    }
    for (_, pair) in pairs.drain() {
        for s in [pair.data, pair.error].into_iter().flatten() {
            s.tx.reset().await;
        }
    }
    closer.close(Duration::from_secs(1)).await;
}

/// Drops pairs whose second stream never came.
async fn expire(pairs: &mut HashMap<String, Pair>) {
    let stale: Vec<String> = pairs
        .iter()
        .filter(|(_, p)| {
            p.since
                .is_some_and(|t| t.elapsed() > STREAM_CREATION_TIMEOUT)
        })
        .map(|(k, _)| k.clone())
        .collect();
    for id in stale {
        if let Some(pair) = pairs.remove(&id) {
            warn!(request_id = %id, "port-forward streams did not come in pairs in time");
            if let Some(e) = &pair.error {
                let _ =
                    e.tx.write(Bytes::from("timed out waiting for the data stream"))
                        .await;
                e.tx.finish().await;
            }
            if let Some(d) = &pair.data {
                d.tx.reset().await;
            }
        }
    }
}

/// One forwarded connection: connect in the pod, then copy both ways.
async fn forward(
    pod_id: String,
    data: SpdyStream,
    error: SpdyStream,
    runtime: Arc<dyn StreamRuntime>,
) {
    let port = data.header("port").and_then(|p| p.parse::<u16>().ok());
    let Some(port) = port.filter(|p| *p > 0) else {
        let msg = format!(
            "invalid port {:?} in port-forward request",
            data.header("port").unwrap_or("")
        );
        let _ = error.tx.write(Bytes::from(msg)).await;
        error.tx.finish().await;
        data.tx.reset().await;
        return;
    };
    let started = Instant::now();
    let conn = match runtime.port_forward(pod_id.clone(), port).await {
        Ok(c) => c,
        Err(e) => {
            let msg = format!("error forwarding port {port} to pod {pod_id}: {e}");
            debug!(%pod_id, port, error = %e, "port-forward connect failed");
            let _ = error.tx.write(Bytes::from(msg)).await;
            error.tx.finish().await;
            data.tx.finish().await;
            return;
        }
    };
    debug!(%pod_id, port, elapsed = ?started.elapsed(), "port-forward connected");
    let SpdyStream { mut rx, tx, .. } = data;
    let (mut rd, mut wr) = conn.into_split();
    let up = tokio::spawn(async move {
        while let Some(chunk) = rx.recv().await {
            if wr.write_all(&chunk).await.is_err() {
                break;
            }
        }
        // The client sent everything (or left): the pod sees the end of its input.
        let _ = wr.shutdown().await;
    });
    let down = async {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx.write(Bytes::copy_from_slice(&buf[..n])).await.is_err() {
                        break;
                    }
                }
            }
        }
        tx.finish().await;
    };
    tokio::pin!(down);
    let mut up = up;
    tokio::select! {
        _ = &mut down => {
            // The pod closed its side; the client resets the stream once it has read it all.
            let abort = up.abort_handle();
            if tokio::time::timeout(Duration::from_secs(30), &mut up).await.is_err() {
                abort.abort();
            }
        }
        _ = &mut up => {
            if tx.is_reset() {
                // The client is gone: stop reading the pod.
            } else {
                // Half-close from the client: the pod may still answer.
                down.await;
            }
        }
    }
    error.tx.finish().await;
    debug!(%pod_id, port, elapsed = ?started.elapsed(), "port-forward connection done");
}
