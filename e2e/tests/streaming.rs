//! Exec, Attach and PortForward as a client sees them: the CRI call returns a one-time URL
//! of the streaming server, and the client speaks WebSocket to it (the v5 remote command
//! channel protocol, and the channel port-forward protocol). The WebSocket client is the
//! few lines below, written from RFC 6455, so these tests depend on no streaming library.
//! critest drives the SPDY side with the Kubernetes Go client. Exec and attach run twice:
//! under crius's monitor (runc) and through a containerd shim (a `vm` handler).

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use crius_e2e::cri;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tonic::Code;

/// A minimal WebSocket client: masked frames out, unmasked frames in, no fragmentation.
struct Ws {
    tcp: TcpStream,
    buf: Vec<u8>,
}

/// What came back instead of a WebSocket.
#[derive(Debug)]
struct Refused {
    status: u16,
    body: String,
}

const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;

impl Ws {
    /// Upgrades a GET of `url` (`http://host:port/path?query`) offering `protocol`.
    async fn connect(url: &str, protocol: &str) -> Result<(Ws, String), Refused> {
        let rest = url.strip_prefix("http://").expect("http URL");
        let (host, path) = rest.split_at(rest.find('/').expect("path in URL"));
        let mut tcp = TcpStream::connect(host)
            .await
            .expect("connect to the streaming server");
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Protocol: {protocol}\r\n\r\n"
        );
        tcp.write_all(request.as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 4096];
            let n = tcp.read(&mut chunk).await.unwrap();
            assert!(n > 0, "server closed during the handshake");
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        let status: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("status code");
        let headers: HashMap<String, String> = head
            .lines()
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        if status != 101 {
            let mut body = buf[head_end..].to_vec();
            let _ = tokio::time::timeout(Duration::from_secs(2), tcp.read_to_end(&mut body)).await;
            return Err(Refused {
                status,
                body: String::from_utf8_lossy(&body).into_owned(),
            });
        }
        // The RFC's example key has this accept value.
        assert_eq!(
            headers.get("sec-websocket-accept").map(String::as_str),
            Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
        );
        let chosen = headers
            .get("sec-websocket-protocol")
            .cloned()
            .unwrap_or_default();
        let leftover = buf[head_end..].to_vec();
        Ok((Ws { tcp, buf: leftover }, chosen))
    }

    async fn send(&mut self, opcode: u8, payload: &[u8]) {
        let mask = [0x12u8, 0x34, 0x56, 0x78];
        let mut frame = vec![0x80 | opcode];
        match payload.len() {
            n if n < 126 => frame.push(0x80 | n as u8),
            n if n <= 0xffff => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.tcp.write_all(&frame).await.unwrap();
    }

    /// Sends `data` on channel `channel`.
    async fn send_channel(&mut self, channel: u8, data: &[u8]) {
        let mut msg = vec![channel];
        msg.extend_from_slice(data);
        self.send(OP_BINARY, &msg).await;
    }

    /// The next frame (opcode, payload); `None` once the connection is closed.
    async fn recv(&mut self) -> Option<(u8, Vec<u8>)> {
        loop {
            if self.buf.len() >= 2 {
                assert_eq!(self.buf[1] & 0x80, 0, "server frames are not masked");
                let (len, at) = match self.buf[1] & 0x7f {
                    126 if self.buf.len() >= 4 => {
                        (u16::from_be_bytes([self.buf[2], self.buf[3]]) as usize, 4)
                    }
                    127 if self.buf.len() >= 10 => {
                        let mut b = [0u8; 8];
                        b.copy_from_slice(&self.buf[2..10]);
                        (u64::from_be_bytes(b) as usize, 10)
                    }
                    n if n < 126 => (n as usize, 2),
                    _ => (usize::MAX, 0),
                };
                if len != usize::MAX && self.buf.len() >= at + len {
                    let opcode = self.buf[0] & 0x0f;
                    let payload = self.buf[at..at + len].to_vec();
                    self.buf.drain(..at + len);
                    return Some((opcode, payload));
                }
            }
            let mut chunk = [0u8; 16384];
            let n = self.tcp.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Everything received per channel until the server closes, within `timeout`.
    async fn collect(&mut self, timeout: Duration) -> HashMap<u8, Vec<u8>> {
        let mut out: HashMap<u8, Vec<u8>> = HashMap::new();
        let work = async {
            while let Some((op, payload)) = self.recv().await {
                match op {
                    OP_CLOSE => {
                        self.send(OP_CLOSE, &payload).await;
                        break;
                    }
                    OP_BINARY if !payload.is_empty() => {
                        out.entry(payload[0])
                            .or_default()
                            .extend_from_slice(&payload[1..]);
                    }
                    _ => {}
                }
            }
        };
        tokio::time::timeout(timeout, work)
            .await
            .expect("the streaming session did not end in time");
        out
    }
}

fn text(out: &HashMap<u8, Vec<u8>>, channel: u8) -> String {
    String::from_utf8_lossy(out.get(&channel).map(Vec::as_slice).unwrap_or(b"")).into_owned()
}

fn status_json(out: &HashMap<u8, Vec<u8>>) -> serde_json::Value {
    serde_json::from_slice(out.get(&3).expect("a status on the error channel"))
        .expect("the status is JSON")
}

/// A pod with one long-running busybox container; returns (pod id, container id).
async fn pod_with_sleeper(
    daemon: &crius_e2e::CriusDaemon,
    rt: &mut Runtime,
    images: &mut Images,
    name: &str,
) -> (String, String) {
    pull(images, &busybox()).await;
    let config = pod_config(daemon, name);
    let pod = run_pod(rt, &config).await;
    let ctr = run_container(rt, &pod, &config, sleeper()).await;
    (pod, ctr)
}

async fn exec_url(rt: &mut Runtime, req: cri::ExecRequest) -> Result<String, tonic::Status> {
    rt.exec(req).await.map(|r| r.into_inner().url)
}

fn exec_request(id: &str, cmd: &[&str]) -> cri::ExecRequest {
    cri::ExecRequest {
        container_id: id.to_string(),
        cmd: cmd.iter().map(|s| s.to_string()).collect(),
        tty: false,
        stdin: false,
        stdout: true,
        stderr: true,
    }
}

async fn exec_streams_stdout_and_stderr_and_reports_the_exit_code_on(
    daemon: crius_e2e::CriusDaemon,
) {
    let (mut rt, mut images) = clients(&daemon).await;
    let (_pod, ctr) = pod_with_sleeper(&daemon, &mut rt, &mut images, "exec-out").await;

    let url = exec_url(
        &mut rt,
        exec_request(&ctr, &["sh", "-c", "echo out; echo err >&2; exit 3"]),
    )
    .await
    .expect("Exec");
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    assert!(url.contains("/exec/"), "{url}");

    let (mut ws, proto) = Ws::connect(&url, "v5.channel.k8s.io")
        .await
        .expect("upgrade");
    assert_eq!(proto, "v5.channel.k8s.io");
    let out = ws.collect(Duration::from_secs(30)).await;
    assert_eq!(text(&out, 1), "out\n");
    assert_eq!(text(&out, 2), "err\n");
    let status = status_json(&out);
    assert_eq!(status["status"], "Failure", "{status}");
    assert_eq!(status["reason"], "NonZeroExitCode", "{status}");
    assert_eq!(status["details"]["causes"][0]["reason"], "ExitCode");
    assert_eq!(status["details"]["causes"][0]["message"], "3");

    // The URL works once.
    let again = Ws::connect(&url, "v5.channel.k8s.io")
        .await
        .err()
        .expect("refused");
    assert_eq!(again.status, 404, "{again:?}");

    // A command that succeeds reports Success.
    let url = exec_url(&mut rt, exec_request(&ctr, &["hostname"]))
        .await
        .unwrap();
    let (mut ws, _) = Ws::connect(&url, "v5.channel.k8s.io")
        .await
        .expect("upgrade");
    let out = ws.collect(Duration::from_secs(30)).await;
    assert_eq!(text(&out, 1), "exec-out\n");
    assert_eq!(status_json(&out)["status"], "Success");
}

async fn exec_feeds_stdin_until_the_client_closes_it_on(daemon: crius_e2e::CriusDaemon) {
    let (mut rt, mut images) = clients(&daemon).await;
    let (_pod, ctr) = pod_with_sleeper(&daemon, &mut rt, &mut images, "exec-in").await;

    let mut req = exec_request(
        &ctr,
        &["sh", "-c", "read line; echo got:$line; wc -c; echo eof"],
    );
    req.stdin = true;
    let url = exec_url(&mut rt, req).await.unwrap();
    let (mut ws, _) = Ws::connect(&url, "v5.channel.k8s.io")
        .await
        .expect("upgrade");
    ws.send_channel(0, b"hello\n").await;
    ws.send_channel(0, b"0123456789").await;
    // v5: [255, channel] closes that stream; the command sees the end of its input.
    ws.send(OP_BINARY, &[255, 0]).await;
    let out = ws.collect(Duration::from_secs(30)).await;
    assert_eq!(text(&out, 1), "got:hello\n10\neof\n");
    assert_eq!(status_json(&out)["status"], "Success");
}

async fn exec_stdin_arrives_whole_however_large_on(daemon: crius_e2e::CriusDaemon) {
    let (mut rt, mut images) = clients(&daemon).await;
    let (_pod, ctr) = pod_with_sleeper(&daemon, &mut rt, &mut images, "exec-big").await;

    let mut req = exec_request(&ctr, &["wc", "-c"]);
    req.stdin = true;
    let url = exec_url(&mut rt, req).await.unwrap();
    let (mut ws, _) = Ws::connect(&url, "v5.channel.k8s.io")
        .await
        .expect("upgrade");
    // 4 MiB, far more than any pipe or socket buffer on the way; closed right after the
    // last byte, so nothing may be dropped at the close.
    let chunk: Vec<u8> = (0..65536u32).map(|i| (i % 251) as u8).collect();
    for _ in 0..64 {
        ws.send_channel(0, &chunk).await;
    }
    ws.send(OP_BINARY, &[255, 0]).await;
    let out = ws.collect(Duration::from_secs(60)).await;
    let stdout = text(&out, 1);
    assert_eq!(stdout, "4194304\n");
    assert_eq!(status_json(&out)["status"], "Success", "{stdout:?}");
}

async fn exec_on_a_terminal_takes_the_client_terminal_size_on(daemon: crius_e2e::CriusDaemon) {
    let (mut rt, mut images) = clients(&daemon).await;
    let (_pod, ctr) = pod_with_sleeper(&daemon, &mut rt, &mut images, "exec-tty").await;

    let req = cri::ExecRequest {
        container_id: ctr.clone(),
        cmd: ["sh", "-c", "read go; stty size; tty; exit 4"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        tty: true,
        stdin: true,
        stdout: true,
        stderr: false,
    };
    let url = exec_url(&mut rt, req).await.unwrap();
    let (mut ws, _) = Ws::connect(&url, "v5.channel.k8s.io")
        .await
        .expect("upgrade");
    ws.send_channel(4, br#"{"Width":123,"Height":45}"#).await;
    // Let the resize land before the command looks.
    tokio::time::sleep(Duration::from_millis(500)).await;
    ws.send_channel(0, b"go\n").await;
    let out = ws.collect(Duration::from_secs(30)).await;
    let stdout = text(&out, 1);
    assert!(stdout.contains("45 123\r\n"), "stty size in {stdout:?}");
    // The container's terminal adds \r to each \n; nothing between it and us adds more.
    assert!(!stdout.contains("\r\r\n"), "{stdout:?}");
    assert!(stdout.contains("/dev/pts/"), "a terminal in {stdout:?}");
    assert!(!out.contains_key(&2), "no stderr channel with a terminal");
    assert_eq!(status_json(&out)["details"]["causes"][0]["message"], "4");
}

async fn attach_relays_the_container_stdio_and_stdin_once_ends_it_on(
    daemon: crius_e2e::CriusDaemon,
) {
    let (mut rt, mut images) = clients(&daemon).await;
    pull(&mut images, &busybox()).await;
    let config = pod_config(&daemon, "attach");
    let pod = run_pod(&mut rt, &config).await;
    let mut ctr_config = container_config("shell", &["sh"]);
    ctr_config.stdin = true;
    ctr_config.stdin_once = true;
    let ctr = run_container(&mut rt, &pod, &config, ctr_config).await;

    let url = rt
        .attach(cri::AttachRequest {
            container_id: ctr.clone(),
            stdin: true,
            tty: false,
            stdout: true,
            stderr: true,
        })
        .await
        .expect("Attach")
        .into_inner()
        .url;
    assert!(url.contains("/attach/"), "{url}");
    let (mut ws, _) = Ws::connect(&url, "v5.channel.k8s.io")
        .await
        .expect("upgrade");
    ws.send_channel(0, b"echo attached; echo oops >&2\n").await;
    ws.send(OP_BINARY, &[255, 0]).await;
    let out = ws.collect(Duration::from_secs(30)).await;
    assert_eq!(text(&out, 1), "attached\n");
    assert_eq!(text(&out, 2), "oops\n");
    assert_eq!(status_json(&out)["status"], "Success");
    // stdin_once: the end of the client's input is the end of the shell's.
    let status = wait_state(
        &mut rt,
        &ctr,
        cri::ContainerState::ContainerExited,
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(status.exit_code, 0);
}

// Each runs with runc under crius's monitor and with a `vm` handler through Debian's
// containerd shim: the client sees no difference.

#[tokio::test]
async fn exec_streams_stdout_and_stderr_and_reports_the_exit_code() {
    exec_streams_stdout_and_stderr_and_reports_the_exit_code_on(bridge_daemon().await).await;
}

#[tokio::test]
async fn exec_streams_stdout_and_stderr_and_reports_the_exit_code_through_a_shim() {
    if let Some(daemon) = shim_bridge_daemon(
        "exec_streams_stdout_and_stderr_and_reports_the_exit_code_through_a_shim",
    )
    .await
    {
        exec_streams_stdout_and_stderr_and_reports_the_exit_code_on(daemon).await;
    }
}

#[tokio::test]
async fn exec_feeds_stdin_until_the_client_closes_it() {
    exec_feeds_stdin_until_the_client_closes_it_on(bridge_daemon().await).await;
}

#[tokio::test]
async fn exec_feeds_stdin_until_the_client_closes_it_through_a_shim() {
    if let Some(daemon) =
        shim_bridge_daemon("exec_feeds_stdin_until_the_client_closes_it_through_a_shim").await
    {
        exec_feeds_stdin_until_the_client_closes_it_on(daemon).await;
    }
}

#[tokio::test]
async fn exec_stdin_arrives_whole_however_large() {
    exec_stdin_arrives_whole_however_large_on(bridge_daemon().await).await;
}

#[tokio::test]
async fn exec_stdin_arrives_whole_however_large_through_a_shim() {
    if let Some(daemon) =
        shim_bridge_daemon("exec_stdin_arrives_whole_however_large_through_a_shim").await
    {
        exec_stdin_arrives_whole_however_large_on(daemon).await;
    }
}

#[tokio::test]
async fn exec_on_a_terminal_takes_the_client_terminal_size() {
    exec_on_a_terminal_takes_the_client_terminal_size_on(bridge_daemon().await).await;
}

#[tokio::test]
async fn exec_on_a_terminal_takes_the_client_terminal_size_through_a_shim() {
    if let Some(daemon) =
        shim_bridge_daemon("exec_on_a_terminal_takes_the_client_terminal_size_through_a_shim").await
    {
        exec_on_a_terminal_takes_the_client_terminal_size_on(daemon).await;
    }
}

#[tokio::test]
async fn attach_relays_the_container_stdio_and_stdin_once_ends_it() {
    attach_relays_the_container_stdio_and_stdin_once_ends_it_on(bridge_daemon().await).await;
}

#[tokio::test]
async fn attach_relays_the_container_stdio_and_stdin_once_ends_it_through_a_shim() {
    if let Some(daemon) = shim_bridge_daemon(
        "attach_relays_the_container_stdio_and_stdin_once_ends_it_through_a_shim",
    )
    .await
    {
        attach_relays_the_container_stdio_and_stdin_once_ends_it_on(daemon).await;
    }
}

#[tokio::test]
async fn port_forward_reaches_a_web_server_in_the_pod_network() {
    let daemon = bridge_daemon().await;
    let (mut rt, mut images) = clients(&daemon).await;
    pull(&mut images, &busybox()).await;
    let config = pod_config(&daemon, "portfwd");
    let pod = run_pod(&mut rt, &config).await;
    let web = run_container(
        &mut rt,
        &pod,
        &config,
        shell(
            "web",
            "mkdir -p /www && echo hello-from-the-pod > /www/index.html && exec httpd -f -p 8080 -h /www",
        ),
    )
    .await;
    // The server listens on the pod's loopback too (httpd binds every address).
    eventually("httpd serving in the pod", Duration::from_secs(20), || {
        let mut rt = rt.clone();
        let web = web.clone();
        async move {
            try_exec(
                &mut rt,
                &web,
                &["wget", "-qO-", "http://127.0.0.1:8080/"],
                5,
            )
            .await
            .ok()
            .filter(|r| r.exit_code == 0)
        }
    })
    .await;
    let url = rt
        .port_forward(cri::PortForwardRequest {
            pod_sandbox_id: pod.clone(),
            port: vec![8080],
        })
        .await
        .expect("PortForward")
        .into_inner()
        .url;
    assert!(url.contains("/portforward/"), "{url}");
    let (mut ws, proto) = Ws::connect(&format!("{url}?port=8080"), "v4.channel.k8s.io")
        .await
        .expect("upgrade");
    assert_eq!(proto, "v4.channel.k8s.io");
    // The first message of each channel is the port, little endian.
    assert_eq!(ws.recv().await, Some((OP_BINARY, vec![0, 0x90, 0x1f])));
    assert_eq!(ws.recv().await, Some((OP_BINARY, vec![1, 0x90, 0x1f])));
    ws.send_channel(0, b"GET /index.html HTTP/1.0\r\n\r\n")
        .await;
    let out = ws.collect(Duration::from_secs(30)).await;
    let reply = text(&out, 0);
    assert!(reply.starts_with("HTTP/1.1 200 OK\r\n"), "{reply:?}");
    assert!(reply.ends_with("hello-from-the-pod\n"), "{reply:?}");
    assert!(!out.contains_key(&1), "no error: {:?}", text(&out, 1));

    // A port nobody listens on: the error channel says so.
    let url = rt
        .port_forward(cri::PortForwardRequest {
            pod_sandbox_id: pod.clone(),
            port: vec![],
        })
        .await
        .unwrap()
        .into_inner()
        .url;
    let (mut ws, _) = Ws::connect(&format!("{url}?port=9999"), "v4.channel.k8s.io")
        .await
        .expect("upgrade");
    let out = ws.collect(Duration::from_secs(30)).await;
    let err = text(&out, 1);
    assert!(err.contains("9999") && err.contains("refused"), "{err:?}");
}

#[tokio::test]
async fn streaming_requests_are_checked_before_a_url_is_given() {
    let daemon = bridge_daemon().await;
    let (mut rt, mut images) = clients(&daemon).await;
    let (pod, ctr) = pod_with_sleeper(&daemon, &mut rt, &mut images, "checks").await;

    let code = |r: Result<String, tonic::Status>| r.expect_err("refused").code();
    let mut tty_stderr = exec_request(&ctr, &["true"]);
    tty_stderr.tty = true;
    assert_eq!(
        code(exec_url(&mut rt, tty_stderr).await),
        Code::InvalidArgument
    );
    assert_eq!(
        code(exec_url(&mut rt, exec_request(&ctr, &[])).await),
        Code::InvalidArgument
    );
    let mut no_streams = exec_request(&ctr, &["true"]);
    no_streams.stdout = false;
    no_streams.stderr = false;
    assert_eq!(
        code(exec_url(&mut rt, no_streams).await),
        Code::InvalidArgument
    );
    assert_eq!(
        code(exec_url(&mut rt, exec_request(&"f".repeat(64), &["true"])).await),
        Code::NotFound
    );
    let unknown_pod = rt
        .port_forward(cri::PortForwardRequest {
            pod_sandbox_id: "f".repeat(64),
            port: vec![80],
        })
        .await
        .expect_err("unknown pod");
    assert_eq!(unknown_pod.code(), Code::NotFound);

    // An exited container takes no exec or attach.
    let config = pod_config(&daemon, "checks");
    let done = run_container(&mut rt, &pod, &config, container_config("done", &["true"])).await;
    wait_state(
        &mut rt,
        &done,
        cri::ContainerState::ContainerExited,
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(
        code(exec_url(&mut rt, exec_request(&done, &["true"])).await),
        Code::FailedPrecondition
    );
    let attach = rt
        .attach(cri::AttachRequest {
            container_id: done,
            stdin: false,
            tty: false,
            stdout: true,
            stderr: true,
        })
        .await
        .expect_err("exited container");
    assert_eq!(attach.code(), Code::FailedPrecondition);

    // A made-up token is unknown.
    let url = exec_url(&mut rt, exec_request(&ctr, &["true"]))
        .await
        .unwrap();
    let base = &url[..url.find("/exec/").unwrap()];
    let refused = Ws::connect(&format!("{base}/exec/not-a-token"), "v5.channel.k8s.io")
        .await
        .err()
        .expect("refused");
    assert_eq!(refused.status, 404);
    assert!(refused.body.contains("token"), "{refused:?}");
}
