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

/// The WebSocket subprotocols of port forwarding with channels, besides SPDY tunnelling.
pub(crate) const WS_CHANNEL_PROTOCOLS: &[&str] = &["v4.channel.k8s.io", "v4.base64.channel.k8s.io"];

/// Serves port forwarding over WebSocket channels, as the kubelet does: for the i-th port
/// of the request, channel 2i carries the data both ways and channel 2i+1 the errors; the
/// first message on each is the port number (2 bytes, little endian). One connection per
/// port is made at the start; the session ends when every connection is done or the client
/// hangs up.
pub(crate) async fn serve_ws(
    session: crate::ws::WsSession,
    protocol: &str,
    pod_id: String,
    ports: Vec<u16>,
    runtime: Arc<dyn StreamRuntime>,
) {
    use crate::remotecommand::decode_channel_message;

    let base64 = protocol.contains("base64");
    let sender = session.sender();
    let (mut incoming, closer) = session.split();
    let out = ChannelSender { sender, base64 };
    let mut ups = Vec::new();
    let mut downs = Vec::new();
    for (i, port) in ports.iter().copied().enumerate() {
        let _ = out.send(2 * i, &port.to_le_bytes()).await;
        let _ = out.send(2 * i + 1, &port.to_le_bytes()).await;
        let (up_tx, mut up_rx) = tokio::sync::mpsc::channel::<Bytes>(64);
        ups.push(up_tx);
        let runtime = runtime.clone();
        let pod_id = pod_id.clone();
        let out = out.clone();
        downs.push(tokio::spawn(async move {
            let conn = match runtime.port_forward(pod_id.clone(), port).await {
                Ok(c) => c,
                Err(e) => {
                    let msg = format!("error forwarding port {port} to pod {pod_id}: {e}");
                    let _ = out.send(2 * i + 1, msg.as_bytes()).await;
                    return;
                }
            };
            let (mut rd, mut wr) = conn.into_split();
            let up = tokio::spawn(async move {
                while let Some(chunk) = up_rx.recv().await {
                    if wr.write_all(&chunk).await.is_err() {
                        break;
                    }
                }
                let _ = wr.shutdown().await;
            });
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                match rd.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if out.send(2 * i, &buf[..n]).await.is_err() {
                            break;
                        }
                    }
                }
            }
            up.abort();
        }));
    }
    let all_done = async {
        for d in downs.iter_mut() {
            let _ = d.await;
        }
    };
    let client = async {
        while let Some(msg) = incoming.recv().await {
            let Some((channel, data)) = decode_channel_message(msg, base64) else {
                continue;
            };
            let channel = usize::from(channel);
            if channel % 2 == 0 && !data.is_empty() {
                if let Some(tx) = ups.get(channel / 2) {
                    let _ = tx.send(data).await;
                }
            }
        }
    };
    tokio::select! {
        _ = all_done => {}
        _ = client => {}
    }
    for d in &downs {
        d.abort();
    }
    drop(out);
    closer.close(Duration::from_secs(5)).await;
}

/// Sends on numbered channels of a WebSocket.
#[derive(Clone)]
struct ChannelSender {
    sender: crate::ws::WsSender,
    base64: bool,
}

impl ChannelSender {
    async fn send(&self, channel: usize, data: &[u8]) -> std::io::Result<()> {
        let msg = crate::remotecommand::encode_channel_message(channel as u8, data, self.base64);
        if self.base64 {
            self.sender.text(msg).await
        } else {
            self.sender.binary(msg).await
        }
    }
}
