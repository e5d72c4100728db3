//! The HTTP side: the listener, the one-time URLs, and the upgrade of each request to SPDY
//! or WebSocket with subprotocol negotiation.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderValue, CONNECTION, UPGRADE};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::error::{Error, Result};
use crate::remotecommand::{self, Target, Version};
use crate::spdy::session::Session;
use crate::tokens::TokenStore;
use crate::ws::{self, WsSession};
use crate::{
    portforward, AttachRequest, ExecRequest, PortForwardRequest, StreamRequest, StreamRuntime,
};

/// The kubelet's header for the stream subprotocol.
const PROTOCOL_HEADER: &str = "x-stream-protocol-version";
/// Lists what the server accepts when negotiation fails.
const ACCEPTED_HEADER: &str = "x-accepted-stream-protocol-versions";
/// The WebSocket subprotocol header.
const WS_PROTOCOL_HEADER: &str = "sec-websocket-protocol";
/// Port forwarding as SPDY tunnelled in a WebSocket.
const WS_TUNNEL_PORTFORWARD: &str = "SPDY/3.1+portforward.k8s.io";

/// Where and how the streaming server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamConfig {
    /// IP address or host name to listen on.
    pub address: String,
    /// Port; 0 picks a free one.
    pub port: u16,
    /// How long a URL may wait before it is used.
    pub token_ttl: Duration,
    /// How many unused URLs may exist at once.
    pub max_pending: usize,
}

impl Default for StreamConfig {
    fn default() -> Self {
        StreamConfig {
            address: "127.0.0.1".into(),
            port: 0,
            token_ttl: Duration::from_secs(60),
            max_pending: 1000,
        }
    }
}

struct Inner {
    local_addr: SocketAddr,
    base_url: String,
    tokens: TokenStore<StreamRequest>,
    runtime: Arc<dyn StreamRuntime>,
    stop: watch::Sender<bool>,
}

/// The running streaming server; cheap to clone.
#[derive(Clone)]
pub struct StreamServer {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for StreamServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamServer")
            .field("addr", &self.inner.local_addr)
            .finish_non_exhaustive()
    }
}

impl StreamServer {
    /// Binds the listener and starts serving in the background.
    pub async fn start(config: StreamConfig, runtime: Arc<dyn StreamRuntime>) -> Result<Self> {
        let host = config.address.trim();
        let host = if host.is_empty() { "127.0.0.1" } else { host };
        let spec = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]:{}", config.port)
        } else {
            format!("{host}:{}", config.port)
        };
        let addr = tokio::net::lookup_host(&spec)
            .await
            .map_err(|e| Error::BadAddress {
                addr: spec.clone(),
                reason: e.to_string(),
            })?
            .next()
            .ok_or_else(|| Error::BadAddress {
                addr: spec.clone(),
                reason: "resolves to nothing".into(),
            })?;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| Error::Listen {
                addr: addr.to_string(),
                source,
            })?;
        let local_addr = listener.local_addr().map_err(|source| Error::Listen {
            addr: addr.to_string(),
            source,
        })?;
        // An unspecified address cannot be dialled: hand out loopback in the URLs then.
        let url_addr = if local_addr.ip().is_unspecified() {
            let ip: std::net::IpAddr = if local_addr.is_ipv6() {
                std::net::Ipv6Addr::LOCALHOST.into()
            } else {
                std::net::Ipv4Addr::LOCALHOST.into()
            };
            SocketAddr::new(ip, local_addr.port())
        } else {
            local_addr
        };
        let (stop, stop_rx) = watch::channel(false);
        let inner = Arc::new(Inner {
            local_addr,
            base_url: format!("http://{url_addr}"),
            tokens: TokenStore::new(config.token_ttl, config.max_pending.max(1)),
            runtime,
            stop,
        });
        tokio::spawn(accept_loop(listener, inner.clone(), stop_rx));
        info!(addr = %local_addr, "streaming server listening");
        Ok(StreamServer { inner })
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    /// Registers a request and returns its one-time URL.
    pub fn register(&self, req: StreamRequest) -> Result<String> {
        let kind = req.kind();
        let token = self.inner.tokens.insert(req)?;
        Ok(format!("{}/{kind}/{token}", self.inner.base_url))
    }

    /// The URL for an exec.
    pub fn get_exec(&self, req: ExecRequest) -> Result<String> {
        self.register(StreamRequest::Exec(req))
    }

    /// The URL for an attach.
    pub fn get_attach(&self, req: AttachRequest) -> Result<String> {
        self.register(StreamRequest::Attach(req))
    }

    /// The URL for a port forward.
    pub fn get_port_forward(&self, req: PortForwardRequest) -> Result<String> {
        self.register(StreamRequest::PortForward(req))
    }

    /// Stops accepting connections; sessions already running go on.
    pub fn stop(&self) {
        let _ = self.inner.stop.send(true);
    }
}

async fn accept_loop(listener: TcpListener, inner: Arc<Inner>, mut stop: watch::Receiver<bool>) {
    loop {
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    warn!(error = %e, "streaming server: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = stop.changed() => break,
        };
        let _ = tcp.set_nodelay(true);
        let inner = inner.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let inner = inner.clone();
                async move { Ok::<_, Infallible>(handle(inner, req, peer).await) }
            });
            // A client that never finishes its request head does not hold a task forever.
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(30))
                .serve_connection(TokioIo::new(tcp), service)
                .with_upgrades();
            if let Err(e) = conn.await {
                debug!(%peer, error = %e, "streaming connection ended with an error");
            }
        });
    }
    info!("streaming server stopped accepting");
}

fn reply(code: StatusCode, msg: impl Into<String>) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(msg.into())));
    *resp.status_mut() = code;
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// Comma-separated values of every instance of a header.
fn header_list(headers: &HeaderMap, name: &str) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect()
}

fn has_token(headers: &HeaderMap, name: hyper::header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.to_ascii_lowercase().contains(&token.to_ascii_lowercase()))
}

/// The ports of a `port` query parameter, repeated or comma-separated.
fn query_ports(query: &str) -> std::result::Result<Vec<u16>, String> {
    let mut ports = Vec::new();
    for pair in query.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if key != "port" {
            continue;
        }
        for p in value.split(',').filter(|p| !p.is_empty()) {
            match p.parse::<u16>() {
                Ok(n) if n > 0 => ports.push(n),
                _ => return Err(format!("invalid port {p:?}\n")),
            }
        }
    }
    Ok(ports)
}

/// The first protocol of the client's list that the server speaks.
pub(crate) fn negotiate<'a>(client: &[String], server: &[&'a str]) -> Option<&'a str> {
    client
        .iter()
        .find_map(|c| server.iter().find(|s| **s == c.as_str()).copied())
}

async fn handle(
    inner: Arc<Inner>,
    mut req: Request<Incoming>,
    peer: SocketAddr,
) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    let mut parts = path.trim_start_matches('/').splitn(2, '/');
    let (kind, token) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if !matches!(kind, "exec" | "attach" | "portforward") || token.is_empty() || token.contains('/')
    {
        return reply(StatusCode::NOT_FOUND, "not found\n");
    }
    let Some(request) = inner.tokens.take(token) else {
        debug!(%peer, %kind, "streaming request with an unknown or expired token");
        return reply(
            StatusCode::NOT_FOUND,
            "unknown or expired streaming token\n",
        );
    };
    if request.kind() != kind {
        return reply(
            StatusCode::NOT_FOUND,
            "unknown or expired streaming token\n",
        );
    }
    let headers = req.headers();
    let websocket =
        has_token(headers, UPGRADE, "websocket") && has_token(headers, CONNECTION, "upgrade");
    let spdy = has_token(headers, UPGRADE, crate::spdy::UPGRADE)
        && has_token(headers, CONNECTION, "upgrade");
    let runtime = inner.runtime.clone();
    let peer_s = peer.to_string();

    if websocket {
        let Some(key) = headers
            .get("sec-websocket-key")
            .and_then(|v| v.to_str().ok())
        else {
            return reply(
                StatusCode::BAD_REQUEST,
                "websocket upgrade without Sec-WebSocket-Key\n",
            );
        };
        if headers
            .get("sec-websocket-version")
            .and_then(|v| v.to_str().ok())
            != Some("13")
        {
            let mut resp = reply(StatusCode::BAD_REQUEST, "unsupported websocket version\n");
            resp.headers_mut()
                .insert("sec-websocket-version", HeaderValue::from_static("13"));
            return resp;
        }
        let offered = header_list(headers, WS_PROTOCOL_HEADER);
        let server: &[&str] = match &request {
            StreamRequest::PortForward(_) => &[
                WS_TUNNEL_PORTFORWARD,
                portforward::WS_CHANNEL_PROTOCOLS[0],
                portforward::WS_CHANNEL_PROTOCOLS[1],
            ],
            _ => remotecommand::WS_PROTOCOLS,
        };
        let chosen = if offered.is_empty() {
            Some("")
        } else {
            negotiate(&offered, server)
        };
        // Channel port-forwarding names its ports in the query: ?port=80&port=8080 or
        // ?port=80,8080; without any, the ports of the CRI request.
        let mut request = request;
        if let (StreamRequest::PortForward(pf), Some(p)) = (&mut request, chosen) {
            if p != WS_TUNNEL_PORTFORWARD {
                match query_ports(req.uri().query().unwrap_or("")) {
                    Ok(ports) if !ports.is_empty() => pf.ports = ports,
                    Ok(_) => {}
                    Err(msg) => return reply(StatusCode::BAD_REQUEST, msg),
                }
                if pf.ports.is_empty() {
                    return reply(
                        StatusCode::BAD_REQUEST,
                        "query parameter \"port\" is required\n",
                    );
                }
            }
        }
        let Some(chosen) = chosen else {
            return reply(
                StatusCode::BAD_REQUEST,
                format!(
                    "unable to upgrade: no common websocket subprotocol: client offers {offered:?}, server accepts {server:?}\n"
                ),
            );
        };
        let accept = ws::accept_key(key);
        let on_upgrade = hyper::upgrade::on(&mut req);
        let chosen = chosen.to_string();
        let proto = chosen.clone();
        tokio::spawn(async move {
            let io = match on_upgrade.await {
                Ok(up) => TokioIo::new(up),
                Err(e) => {
                    debug!(peer = %peer_s, error = %e, "websocket upgrade failed");
                    return;
                }
            };
            let session = WsSession::start(io, peer_s.clone());
            serve(request, Transport::Ws(session, proto), runtime, peer_s).await;
        });
        let mut resp = reply(StatusCode::SWITCHING_PROTOCOLS, "");
        let h = resp.headers_mut();
        h.remove(hyper::header::CONTENT_TYPE);
        h.insert(UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
        if let Ok(v) = HeaderValue::from_str(&accept) {
            h.insert("sec-websocket-accept", v);
        }
        if !chosen.is_empty() {
            if let Ok(v) = HeaderValue::from_str(&chosen) {
                h.insert(WS_PROTOCOL_HEADER, v);
            }
        }
        return resp;
    }

    if spdy {
        let offered = header_list(headers, PROTOCOL_HEADER);
        let server: &[&str] = match &request {
            StreamRequest::PortForward(_) => &[portforward::PROTOCOL],
            _ => remotecommand::SPDY_PROTOCOLS,
        };
        if offered.is_empty() {
            return reply(
                StatusCode::BAD_REQUEST,
                "unable to upgrade: X-Stream-Protocol-Version is required\n",
            );
        }
        let Some(chosen) = negotiate(&offered, server) else {
            let mut resp = reply(
                StatusCode::FORBIDDEN,
                format!(
                    "unable to upgrade: unable to negotiate protocol: client supports {offered:?}, server accepts {server:?}\n"
                ),
            );
            for p in server {
                resp.headers_mut()
                    .append(ACCEPTED_HEADER, HeaderValue::from_static(p));
            }
            return resp;
        };
        let on_upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            let io = match on_upgrade.await {
                Ok(up) => TokioIo::new(up),
                Err(e) => {
                    debug!(peer = %peer_s, error = %e, "spdy upgrade failed");
                    return;
                }
            };
            let session = Session::start(io, peer_s.clone());
            serve(request, Transport::Spdy(session, chosen), runtime, peer_s).await;
        });
        let mut resp = reply(StatusCode::SWITCHING_PROTOCOLS, "");
        let h = resp.headers_mut();
        h.remove(hyper::header::CONTENT_TYPE);
        h.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
        h.insert(UPGRADE, HeaderValue::from_static(crate::spdy::UPGRADE));
        h.insert(PROTOCOL_HEADER, HeaderValue::from_static(chosen));
        return resp;
    }

    reply(
        StatusCode::BAD_REQUEST,
        "unable to upgrade: expected an upgrade to SPDY/3.1 or websocket\n",
    )
}

enum Transport {
    Spdy(Session, &'static str),
    Ws(WsSession, String),
}

async fn serve(
    request: StreamRequest,
    transport: Transport,
    runtime: Arc<dyn StreamRuntime>,
    peer: String,
) {
    let started = std::time::Instant::now();
    let kind = request.kind();
    debug!(%peer, kind, "streaming session started");
    match (request, transport) {
        (StreamRequest::PortForward(pf), Transport::Spdy(session, _)) => {
            portforward::serve_spdy(session, pf.pod_id, runtime).await
        }
        (StreamRequest::PortForward(pf), Transport::Ws(session, proto)) => {
            if proto == WS_TUNNEL_PORTFORWARD {
                let tunnel = ws::byte_stream(session);
                let session = Session::start(tunnel, peer.clone());
                portforward::serve_spdy(session, pf.pod_id, runtime).await
            } else {
                portforward::serve_ws(session, &proto, pf.pod_id, pf.ports, runtime).await
            }
        }
        (StreamRequest::Exec(r), Transport::Spdy(session, proto)) => {
            let version = Version::from_protocol(proto).unwrap_or(Version::V1);
            remotecommand::serve_spdy(session, version, Target::Exec(r), runtime).await
        }
        (StreamRequest::Attach(r), Transport::Spdy(session, proto)) => {
            let version = Version::from_protocol(proto).unwrap_or(Version::V1);
            remotecommand::serve_spdy(session, version, Target::Attach(r), runtime).await
        }
        (StreamRequest::Exec(r), Transport::Ws(session, proto)) => {
            remotecommand::serve_ws(session, &proto, Target::Exec(r), runtime).await
        }
        (StreamRequest::Attach(r), Transport::Ws(session, proto)) => {
            remotecommand::serve_ws(session, &proto, Target::Attach(r), runtime).await
        }
    }
    debug!(%peer, kind, elapsed = ?started.elapsed(), "streaming session ended");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_follows_the_client_order() {
        let client = vec![
            "v5.channel.k8s.io".to_string(),
            "v4.channel.k8s.io".to_string(),
            "v3.channel.k8s.io".to_string(),
        ];
        assert_eq!(
            negotiate(&client, remotecommand::SPDY_PROTOCOLS),
            Some("v4.channel.k8s.io")
        );
        assert_eq!(
            negotiate(&client, remotecommand::WS_PROTOCOLS),
            Some("v5.channel.k8s.io")
        );
        assert_eq!(
            negotiate(&["x".to_string()], remotecommand::SPDY_PROTOCOLS),
            None
        );
    }

    #[test]
    fn ports_come_from_repeated_or_comma_separated_query_parameters() {
        assert_eq!(
            query_ports("port=80&x=1&port=8080,9090"),
            Ok(vec![80, 8080, 9090])
        );
        assert_eq!(query_ports(""), Ok(vec![]));
        assert!(query_ports("port=0").is_err());
        assert!(query_ports("port=http").is_err());
    }

    #[test]
    fn header_lists_split_commas_and_repeats() {
        let mut h = HeaderMap::new();
        h.append(PROTOCOL_HEADER, HeaderValue::from_static("a, b"));
        h.append(PROTOCOL_HEADER, HeaderValue::from_static("c"));
        assert_eq!(header_list(&h, PROTOCOL_HEADER), vec!["a", "b", "c"]);
    }

    use crate::spdy::frame::{Codec, Frame};
    use crate::{BoxError, BoxFuture, Stdio};
    use bytes::BytesMut;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Runs "commands" in memory: exec copies stdin to stdout, writes the command's first
    /// word to stderr and exits with the number of bytes copied; port-forward dials the
    /// host's loopback.
    struct Loopback;

    impl StreamRuntime for Loopback {
        fn exec(&self, req: ExecRequest, stdio: Stdio) -> BoxFuture<Result<i32, BoxError>> {
            Box::pin(async move {
                let Stdio {
                    stdin,
                    stdout,
                    stderr,
                    ..
                } = stdio;
                let mut copied = 0;
                if let (Some(mut i), Some(mut o)) = (stdin, stdout) {
                    copied = tokio::io::copy(&mut i, &mut o).await?;
                }
                if let Some(mut e) = stderr {
                    e.write_all(req.cmd[0].as_bytes()).await?;
                }
                Ok(copied as i32)
            })
        }

        fn attach(&self, _req: AttachRequest, _stdio: Stdio) -> BoxFuture<Result<(), BoxError>> {
            Box::pin(async { Err("no attach here".into()) })
        }

        fn port_forward(
            &self,
            _pod_id: String,
            port: u16,
        ) -> BoxFuture<Result<tokio::net::TcpStream, BoxError>> {
            Box::pin(async move { Ok(tokio::net::TcpStream::connect(("127.0.0.1", port)).await?) })
        }
    }

    async fn start() -> StreamServer {
        StreamServer::start(StreamConfig::default(), Arc::new(Loopback))
            .await
            .unwrap()
    }

    /// Sends an upgrade request; returns the connection and the response head.
    async fn upgrade(url: &str, headers: &str) -> (tokio::net::TcpStream, String, Vec<u8>) {
        let rest = url.strip_prefix("http://").unwrap();
        let (host, path) = rest.split_at(rest.find('/').unwrap());
        let mut tcp = tokio::net::TcpStream::connect(host).await.unwrap();
        let req = format!("POST {path} HTTP/1.1\r\nHost: {host}\r\n{headers}\r\n");
        tcp.write_all(req.as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..i]).to_string();
                let rest = buf[i + 4..].to_vec();
                return (tcp, head, rest);
            }
            let mut chunk = [0u8; 1024];
            let n = tcp.read(&mut chunk).await.unwrap();
            assert!(
                n > 0,
                "closed in the handshake: {:?}",
                String::from_utf8_lossy(&buf)
            );
            buf.extend_from_slice(&chunk[..n]);
        }
    }

    struct SpdyClient {
        tcp: tokio::net::TcpStream,
        codec: Codec,
        buf: BytesMut,
    }

    impl SpdyClient {
        async fn send(&mut self, f: Frame) {
            let mut wire = Vec::new();
            self.codec.encode(&f, &mut wire).unwrap();
            self.tcp.write_all(&wire).await.unwrap();
        }

        async fn recv(&mut self) -> Option<Frame> {
            loop {
                if let Some(f) = self.codec.decode(&mut self.buf).unwrap() {
                    return Some(f);
                }
                if self.tcp.read_buf(&mut self.buf).await.unwrap() == 0 {
                    return None;
                }
            }
        }

        async fn open(&mut self, id: u32, headers: &[(&str, &str)]) {
            self.send(Frame::SynStream {
                stream_id: id,
                associated_to: 0,
                priority: 0,
                fin: false,
                unidirectional: false,
                headers: headers
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            })
            .await;
        }
    }

    const SPDY_HEADERS: &str = "Connection: Upgrade\r\nUpgrade: SPDY/3.1\r\n";

    #[tokio::test]
    async fn exec_over_spdy_runs_the_streams_and_ends_with_a_status() {
        let server = start().await;
        let url = server
            .get_exec(ExecRequest {
                container_id: "c1".into(),
                cmd: vec!["cat".into()],
                tty: false,
                stdin: true,
                stdout: true,
                stderr: true,
            })
            .unwrap();
        let (tcp, head, rest) = upgrade(
            &url,
            &format!("{SPDY_HEADERS}X-Stream-Protocol-Version: v5.channel.k8s.io\r\nX-Stream-Protocol-Version: v4.channel.k8s.io\r\n"),
        )
        .await;
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        assert!(
            head.to_ascii_lowercase()
                .contains("x-stream-protocol-version: v4.channel.k8s.io"),
            "{head}"
        );
        let mut c = SpdyClient {
            tcp,
            codec: Codec::new(),
            buf: BytesMut::from(&rest[..]),
        };
        for (id, kind) in [(1, "error"), (3, "stdin"), (5, "stdout"), (7, "stderr")] {
            c.open(id, &[("streamtype", kind)]).await;
        }
        c.send(Frame::Data {
            stream_id: 3,
            fin: false,
            data: Bytes::from_static(b"hello "),
        })
        .await;
        c.send(Frame::Data {
            stream_id: 3,
            fin: true,
            data: Bytes::from_static(b"world"),
        })
        .await;

        let mut replies = Vec::new();
        let mut data: std::collections::HashMap<u32, Vec<u8>> = Default::default();
        let mut fins = Vec::new();
        let mut goaway = false;
        while let Some(f) = c.recv().await {
            match f {
                Frame::SynReply { stream_id, .. } => replies.push(stream_id),
                Frame::Data {
                    stream_id,
                    fin,
                    data: d,
                } => {
                    assert!(
                        replies.contains(&stream_id),
                        "data before the reply on {stream_id}"
                    );
                    data.entry(stream_id).or_default().extend_from_slice(&d);
                    if fin {
                        fins.push(stream_id);
                    }
                }
                Frame::GoAway { .. } => {
                    goaway = true;
                    break;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(goaway);
        replies.sort();
        assert_eq!(replies, vec![1, 3, 5, 7]);
        assert_eq!(data[&5], b"hello world");
        assert_eq!(data[&7], b"cat");
        fins.sort();
        assert_eq!(fins, vec![1, 5, 7]);
        let status: serde_json::Value = serde_json::from_slice(&data[&1]).unwrap();
        assert_eq!(status["details"]["causes"][0]["message"], "11");
    }

    #[tokio::test]
    async fn spdy_negotiation_failure_names_the_accepted_protocols() {
        let server = start().await;
        let url = server
            .get_port_forward(PortForwardRequest {
                pod_id: "p".into(),
                ports: vec![],
            })
            .unwrap();
        let (_tcp, head, _) = upgrade(
            &url,
            &format!("{SPDY_HEADERS}X-Stream-Protocol-Version: v4.channel.k8s.io\r\n"),
        )
        .await;
        assert!(head.starts_with("HTTP/1.1 403"), "{head}");
        assert!(
            head.to_ascii_lowercase()
                .contains("x-accepted-stream-protocol-versions: portforward.k8s.io"),
            "{head}"
        );

        // Neither SPDY nor WebSocket: refused; and the token was used up by the first try.
        let url = server
            .get_port_forward(PortForwardRequest {
                pod_id: "p".into(),
                ports: vec![],
            })
            .unwrap();
        let (_tcp, head, _) = upgrade(&url, "").await;
        assert!(head.starts_with("HTTP/1.1 400"), "{head}");
        let (_tcp, head, _) = upgrade(&url, SPDY_HEADERS).await;
        assert!(head.starts_with("HTTP/1.1 404"), "{head}");
    }

    #[tokio::test]
    async fn port_forward_over_spdy_pairs_streams_and_copies_both_ways() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            // An upper-casing echo server that closes after the client's half-close.
            let (mut s, _) = listener.accept().await.unwrap();
            let mut got = Vec::new();
            s.read_to_end(&mut got).await.unwrap();
            s.write_all(&got.to_ascii_uppercase()).await.unwrap();
        });
        let server = start().await;
        let url = server
            .get_port_forward(PortForwardRequest {
                pod_id: "p".into(),
                ports: vec![port],
            })
            .unwrap();
        let (tcp, head, rest) = upgrade(
            &url,
            &format!("{SPDY_HEADERS}X-Stream-Protocol-Version: portforward.k8s.io\r\n"),
        )
        .await;
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        let mut c = SpdyClient {
            tcp,
            codec: Codec::new(),
            buf: BytesMut::from(&rest[..]),
        };
        let port_s = port.to_string();
        c.open(
            1,
            &[
                ("streamtype", "error"),
                ("port", &port_s),
                ("requestid", "0"),
            ],
        )
        .await;
        c.send(Frame::Data {
            stream_id: 1,
            fin: true,
            data: Bytes::new(),
        })
        .await;
        c.open(
            3,
            &[
                ("streamtype", "data"),
                ("port", &port_s),
                ("requestid", "0"),
            ],
        )
        .await;
        c.send(Frame::Data {
            stream_id: 3,
            fin: true,
            data: Bytes::from_static(b"through the pod"),
        })
        .await;
        // A stream for a closed port in a second pair reports on its error stream.
        c.open(
            5,
            &[("streamtype", "data"), ("port", "1"), ("requestid", "1")],
        )
        .await;
        c.open(
            7,
            &[("streamtype", "error"), ("port", "1"), ("requestid", "1")],
        )
        .await;

        let mut data: std::collections::HashMap<u32, Vec<u8>> = Default::default();
        let mut fins = std::collections::HashSet::new();
        while fins.len() < 4 {
            match c.recv().await.expect("connection open") {
                Frame::Data {
                    stream_id,
                    fin,
                    data: d,
                } => {
                    data.entry(stream_id).or_default().extend_from_slice(&d);
                    if fin {
                        fins.insert(stream_id);
                    }
                }
                Frame::SynReply { .. } => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(
            data.get(&3).map(Vec::as_slice),
            Some(&b"THROUGH THE POD"[..])
        );
        assert!(data.get(&1).is_none_or(|d| d.is_empty()));
        let err = String::from_utf8_lossy(&data[&7]).to_string();
        assert!(err.contains("error forwarding port 1 to pod p"), "{err}");
    }
}
