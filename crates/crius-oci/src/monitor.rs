//! Client side of the per-container monitor (`crius-conmon`).
//!
//! [`spawn_monitor`] starts a detached monitor that runs `RUNTIME create`
//! and holds the container's stdio; [`MonitorClient`] talks to it over
//! `monitor.sock` in its directory with the protocol of `proto/monitor.proto`;
//! [`read_exit_file`] and [`monitor_alive`] let a restarted daemon find out
//! what happened while it was away.

use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use crius_monitor_proto::{self as proto, request, response, Request, Response};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tracing::debug;

use crate::runtime::RuntimeCli;
use crate::Error;

/// How long `spawn_monitor` waits for the container to be created.
pub const CREATE_TIMEOUT: Duration = Duration::from_secs(250);
/// Extra time granted to the monitor beyond an exec's own timeout.
const EXEC_GRACE: Duration = Duration::from_secs(10);
/// How long a short request (reopen, resize, status) may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Everything the monitor needs to create and watch one container.
#[derive(Clone, Debug)]
pub struct MonitorSpec {
    /// The container id.
    pub id: String,
    /// The OCI bundle (holds config.json).
    pub bundle: PathBuf,
    /// The runtime that creates the container.
    pub runtime: RuntimeCli,
    /// The `crius-conmon` binary.
    pub monitor_path: PathBuf,
    /// Holds monitor.sock, the exit file, pid files and the monitor's log.
    pub dir: PathBuf,
    /// The CRI log file; `None` discards output.
    pub log_path: Option<PathBuf>,
    /// Give the container a pty.
    pub terminal: bool,
    /// Keep the container's stdin open for attach.
    pub stdin: bool,
    /// Close stdin when the first attach session ends.
    pub stdin_once: bool,
    /// Cap on the log file's size.
    pub log_size_max: Option<u64>,
}

/// A created container and its monitor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MonitorHandle {
    /// The monitor's pid (not our child: it is detached).
    pub monitor_pid: u32,
    /// The container's init pid.
    pub container_pid: u32,
    /// The monitor's directory.
    pub dir: PathBuf,
}

/// How a container ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitStatus {
    /// The exit code; 128 + signal when killed by a signal.
    pub exit_code: i32,
    /// When the monitor saw it exit.
    pub exited_at: DateTime<Utc>,
    /// The kernel's OOM killer killed a process of the container.
    pub oom_killed: bool,
}

impl From<proto::ExitStatus> for ExitStatus {
    fn from(p: proto::ExitStatus) -> Self {
        ExitStatus {
            exit_code: p.exit_code,
            exited_at: DateTime::from_timestamp_nanos(p.exited_at_ns),
            oom_killed: p.oom_killed,
        }
    }
}

/// The kind of stdio session a relay serves.
#[derive(Clone, Copy, Debug)]
enum Session {
    /// Attached to the container's own stdio.
    Attach { stdin_once: bool },
    /// A streaming exec: runs to its end even when the client stops reading.
    Exec,
}

/// What an exec in the container produced.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExecOutput {
    /// Its stdout, cut at the monitor's bound (16 MiB with stderr).
    pub stdout: Vec<u8>,
    /// Its stderr, cut at the same bound.
    pub stderr: Vec<u8>,
    /// Its exit code (128 + signal when killed).
    pub exit_code: i32,
    /// It ran past the timeout and was killed; the output is what came before.
    pub timed_out: bool,
}

/// Starts a detached monitor (it outlives the daemon) that runs `RUNTIME
/// create`; returns once the container is Created (its pid known) or fails
/// with the runtime's own error message ([`Error::CreateFailed`]).
pub async fn spawn_monitor(spec: &MonitorSpec) -> Result<MonitorHandle, Error> {
    let dir = &spec.dir;
    // 0700: the monitor's socket and exit file are root's alone.
    crate::private_dir(dir).map_err(|source| Error::MonitorFile {
        path: dir.clone(),
        source,
    })?;
    for stale in [proto::EXIT_FILE_NAME, proto::PID_FILE_NAME] {
        let _ = std::fs::remove_file(dir.join(stale));
    }
    let log_path = dir.join(proto::MONITOR_LOG_NAME);
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&log_path)
        .map_err(|source| Error::MonitorFile {
            path: log_path.clone(),
            source,
        })?;

    let mut cmd = tokio::process::Command::new(&spec.monitor_path);
    cmd.arg("--id")
        .arg(&spec.id)
        .arg("--bundle")
        .arg(&spec.bundle)
        .arg("--dir")
        .arg(dir)
        .arg("--runtime")
        .arg(&spec.runtime.path);
    if let Some(root) = &spec.runtime.root {
        cmd.arg("--runtime-root").arg(root);
    }
    if spec.runtime.systemd_cgroup {
        cmd.arg("--systemd-cgroup");
    }
    if let Some(p) = &spec.log_path {
        cmd.arg("--log-path").arg(p);
    }
    if let Some(max) = spec.log_size_max {
        cmd.arg("--log-size-max").arg(max.to_string());
    }
    for (on, flag) in [
        (spec.terminal, "--terminal"),
        (spec.stdin, "--stdin"),
        (spec.stdin_once, "--stdin-once"),
    ] {
        if on {
            cmd.arg(flag);
        }
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log));

    let started = Instant::now();
    let mut child = cmd.spawn().map_err(|source| Error::MonitorSpawn {
        monitor: spec.monitor_path.clone(),
        container: spec.id.clone(),
        source,
    })?;
    let stdout = child.stdout.take();
    let mut line = String::new();
    let read = async {
        if let Some(out) = stdout {
            let mut r = BufReader::new(out);
            r.read_line(&mut line).await?;
        }
        Ok::<_, std::io::Error>(())
    };
    let read = tokio::time::timeout(CREATE_TIMEOUT, read).await;
    // The first process of the double fork exits at once; reap it.
    let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
    debug!(
        monitor = %spec.monitor_path.display(),
        container = %spec.id,
        dir = %dir.display(),
        runtime = %spec.runtime.path.display(),
        elapsed = ?started.elapsed(),
        reply = line.trim(),
        "spawn monitor"
    );
    match read {
        Err(_) => {
            if let Some(pid) = read_pid(&dir.join(proto::PID_FILE_NAME)) {
                // SAFETY: kill takes plain integers; the pid is the monitor we started.
                unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            }
            return Err(Error::MonitorProtocol {
                dir: dir.clone(),
                reason: format!("no reply from the monitor within {CREATE_TIMEOUT:?}"),
            });
        }
        Ok(Err(e)) => {
            return Err(Error::MonitorProtocol {
                dir: dir.clone(),
                reason: format!("reading the monitor's reply: {e}"),
            })
        }
        Ok(Ok(())) => {}
    }
    let line = line.trim_end();
    if let Some(pid) = line.strip_prefix("created ") {
        let container_pid: u32 = pid.trim().parse().map_err(|_| Error::MonitorProtocol {
            dir: dir.clone(),
            reason: format!("bad reply {line:?}"),
        })?;
        let monitor_pid =
            read_pid(&dir.join(proto::PID_FILE_NAME)).ok_or_else(|| Error::MonitorProtocol {
                dir: dir.clone(),
                reason: "no monitor.pid".into(),
            })?;
        return Ok(MonitorHandle {
            monitor_pid,
            container_pid,
            dir: dir.clone(),
        });
    }
    if let Some(msg) = line.strip_prefix("error ") {
        return Err(Error::CreateFailed {
            container: spec.id.clone(),
            msg: crate::runtime::stderr_message(msg),
        });
    }
    let tail = std::fs::read_to_string(&log_path).unwrap_or_default();
    Err(Error::MonitorProtocol {
        dir: dir.clone(),
        reason: format!(
            "the monitor exited without a reply; its log says: {}",
            tail.lines().last().unwrap_or("nothing")
        ),
    })
}

fn read_pid(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The exit file the monitor writes, if any.
pub fn read_exit_file(dir: &Path) -> Result<Option<ExitStatus>, Error> {
    let path = dir.join(proto::EXIT_FILE_NAME);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(Error::MonitorFile { path, source }),
    };
    proto::parse_exit_file(&text)
        .map(|s| Some(s.into()))
        .ok_or_else(|| Error::MonitorFile {
            path,
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, "malformed exit file"),
        })
}

/// SIGKILLs the monitor whose directory is `dir` (its pid file names it) and its process
/// group, when that pid is still a monitor started with `--dir DIR`: what a restarted
/// daemon does to the monitor of a container or pause it has no record of (it was killed
/// before recording it). Returns the pid killed.
pub fn kill_monitor(dir: &Path) -> Option<u32> {
    let pid = read_pid(&dir.join(proto::PID_FILE_NAME))?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let mut args = cmdline.split(|b| *b == 0);
    let dir_bytes = dir.as_os_str().as_encoded_bytes();
    let ours = args.any(|a| a == b"--dir") && args.next() == Some(dir_bytes);
    if !ours {
        return None;
    }
    let pid_t = pid as libc::pid_t;
    // The monitor leads a session of its own: its group also holds a `RUNTIME create`
    // still running when the daemon died, which would otherwise finish after the sweep.
    // SAFETY: getpgid and kill take plain integers; the pid was checked to be this dir's
    // monitor, and its group is signalled only when the monitor leads it.
    let rc = unsafe {
        let target = if libc::getpgid(pid_t) == pid_t {
            -pid_t
        } else {
            pid_t
        };
        libc::kill(target, libc::SIGKILL)
    };
    (rc == 0).then_some(pid)
}

/// Whether the monitor of `dir` runs and answers on its socket.
pub fn monitor_alive(dir: &Path) -> bool {
    let Ok(d) = std::fs::File::open(dir) else {
        return false;
    };
    let path = format!("/proc/self/fd/{}/{}", d.as_raw_fd(), proto::SOCKET_NAME);
    std::os::unix::net::UnixStream::connect(path).is_ok()
}

/// Talks to the monitor of one container.
#[derive(Clone, Debug)]
pub struct MonitorClient {
    dir: PathBuf,
}

impl MonitorClient {
    /// A client for the monitor whose directory is `dir`.
    pub fn new(dir: &Path) -> Self {
        MonitorClient {
            dir: dir.to_path_buf(),
        }
    }

    fn protocol(&self, reason: String) -> Error {
        Error::MonitorProtocol {
            dir: self.dir.clone(),
            reason,
        }
    }

    /// Connects through /proc/self/fd/N so long directories fit the 108-byte limit.
    async fn connect(&self) -> std::io::Result<UnixStream> {
        let d = std::fs::File::open(&self.dir)?;
        let path = format!("/proc/self/fd/{}/{}", d.as_raw_fd(), proto::SOCKET_NAME);
        let s = UnixStream::connect(path).await;
        drop(d);
        s
    }

    async fn send(stream: &mut UnixStream, req: &Request) -> std::io::Result<()> {
        stream.write_all(&proto::encode_frame(req)).await?;
        stream.flush().await
    }

    async fn recv<M: prost::Message + Default>(stream: &mut UnixStream) -> Result<M, String> {
        let mut buf = Vec::with_capacity(64);
        loop {
            match proto::decode_length(&buf).map_err(|e| e.to_string())? {
                Some((len, prefix)) => {
                    let mut body = vec![0u8; len];
                    stream
                        .read_exact(&mut body)
                        .await
                        .map_err(|e| format!("reading reply: {e}"))?;
                    debug_assert_eq!(prefix, buf.len());
                    return M::decode(body.as_slice()).map_err(|e| format!("bad reply: {e}"));
                }
                None => {
                    let b = stream
                        .read_u8()
                        .await
                        .map_err(|e| format!("reading reply: {e}"))?;
                    buf.push(b);
                }
            }
        }
    }

    /// One request, one response, within `timeout`.
    async fn call(
        &self,
        name: &str,
        req: request::Kind,
        timeout: Option<Duration>,
    ) -> Result<response::Kind, Error> {
        self.exchange(name, req, timeout)
            .await
            .map(|(_, kind)| kind)
    }

    /// Opens a session (attach, streamed exec): the request, an Ok reply, then the
    /// connection carries `proto::AttachFrame`s both ways.
    async fn open_session(&self, name: &str, req: request::Kind) -> Result<UnixStream, Error> {
        match self.exchange(name, req, None).await? {
            (s, response::Kind::Ok(_)) => Ok(s),
            (_, other) => Err(self.protocol(format!("unexpected reply to {name}: {other:?}"))),
        }
    }

    /// One request on a new connection and its reply (a refusal as an error); the
    /// connection is handed back for a session that follows.
    async fn exchange(
        &self,
        name: &str,
        req: request::Kind,
        timeout: Option<Duration>,
    ) -> Result<(UnixStream, response::Kind), Error> {
        let started = Instant::now();
        let work = async {
            let mut s = self
                .connect()
                .await
                .map_err(|e| self.protocol(format!("connect: {e}")))?;
            Self::send(&mut s, &Request { kind: Some(req) })
                .await
                .map_err(|e| self.protocol(format!("sending {name}: {e}")))?;
            let resp = Self::recv::<Response>(&mut s)
                .await
                .map_err(|e| self.protocol(e))?;
            Ok::<_, Error>((s, resp))
        };
        let resp = match timeout {
            Some(t) => tokio::time::timeout(t, work)
                .await
                .map_err(|_| self.protocol(format!("no reply to {name} within {t:?}")))?,
            None => work.await,
        };
        debug!(dir = %self.dir.display(), request = name, elapsed = ?started.elapsed(), ok = resp.is_ok(), "monitor request");
        let (s, resp) = resp?;
        match resp.kind {
            Some(response::Kind::Error(e)) => Err(Error::MonitorRefused {
                dir: self.dir.clone(),
                request: name.to_string(),
                msg: e.message,
            }),
            Some(kind) => Ok((s, kind)),
            None => Err(self.protocol(format!("empty reply to {name}"))),
        }
    }

    /// Resolves when the container exits (or at once if it already has),
    /// from the monitor or its exit file.
    pub async fn wait_exit(&self) -> Result<ExitStatus, Error> {
        loop {
            if let Some(st) = read_exit_file(&self.dir)? {
                return Ok(st);
            }
            match self
                .call("wait", request::Kind::Wait(proto::Wait {}), None)
                .await
            {
                Ok(response::Kind::Exit(st)) => return Ok(st.into()),
                Ok(other) => {
                    return Err(self.protocol(format!("unexpected reply to wait: {other:?}")))
                }
                Err(e @ Error::MonitorRefused { .. }) => {
                    // "container has exited": the exit file is written first.
                    return read_exit_file(&self.dir)?.ok_or(e);
                }
                Err(Error::MonitorProtocol { .. }) => {
                    // The monitor went away: it wrote the exit file first,
                    // unless it was killed.
                    if let Some(st) = read_exit_file(&self.dir)? {
                        return Ok(st);
                    }
                    if !monitor_alive(&self.dir) {
                        return Err(Error::MonitorGone {
                            dir: self.dir.clone(),
                        });
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Runs `cmd` in the container (`RUNTIME exec`) and collects its output;
    /// at the timeout the command is killed and what it printed is returned
    /// with `timed_out`.
    pub async fn exec_sync(
        &self,
        cmd: &[String],
        timeout: Option<Duration>,
    ) -> Result<ExecOutput, Error> {
        let req = request::Kind::Exec(proto::Exec {
            cmd: cmd.to_vec(),
            timeout_ms: timeout.map_or(0, |t| t.as_millis().clamp(1, u64::MAX as u128) as u64),
            ..Default::default()
        });
        match self
            .call("exec", req, timeout.map(|t| t + EXEC_GRACE))
            .await?
        {
            response::Kind::Exec(r) => Ok(ExecOutput {
                stdout: r.stdout,
                stderr: r.stderr,
                exit_code: r.exit_code,
                timed_out: r.timed_out,
            }),
            other => Err(self.protocol(format!("unexpected reply to exec: {other:?}"))),
        }
    }

    /// Makes the monitor reopen the container log at its path (after rotation).
    pub async fn reopen_log(&self) -> Result<(), Error> {
        self.call(
            "reopen_log",
            request::Kind::ReopenLog(proto::ReopenLog {}),
            Some(REQUEST_TIMEOUT),
        )
        .await
        .map(drop)
    }

    /// Sets the terminal size of a tty container.
    pub async fn resize(&self, width: u16, height: u16) -> Result<(), Error> {
        let req = request::Kind::Resize(proto::Resize {
            width: width.into(),
            height: height.into(),
        });
        self.call("resize", req, Some(REQUEST_TIMEOUT))
            .await
            .map(drop)
    }

    /// The container's pid and whether it still runs, as the monitor sees it.
    pub async fn status(&self) -> Result<(u32, bool), Error> {
        match self
            .call(
                "status",
                request::Kind::Status(proto::Status {}),
                Some(REQUEST_TIMEOUT),
            )
            .await?
        {
            response::Kind::Status(s) => Ok((s.container_pid, s.running)),
            other => Err(self.protocol(format!("unexpected reply to status: {other:?}"))),
        }
    }

    /// Opens an attach session: the returned stream carries
    /// `proto::AttachFrame`s (length-delimited) both ways.
    pub async fn attach(
        &self,
        stdin: bool,
        stdout: bool,
        stderr: bool,
    ) -> Result<UnixStream, Error> {
        let req = request::Kind::Attach(proto::Attach {
            stdin,
            stdout,
            stderr,
        });
        self.open_session("attach", req).await
    }

    /// Attaches `stdin`/`stdout`/`stderr` to the container through its
    /// monitor and relays until the container exits (the monitor closes the
    /// session), the client stops taking output, or the caller drops the
    /// future: each a detach, after which a `stdin_once` container's stdin is
    /// closed. The end of `stdin` closes the container's stdin when
    /// `stdin_once`, else ends only the input direction. Sizes from `resize`
    /// go to the container's terminal.
    pub async fn attach_stdio<I, O, E>(
        &self,
        stdin: Option<I>,
        stdout: Option<O>,
        stderr: Option<E>,
        resize: Option<tokio::sync::mpsc::Receiver<(u16, u16)>>,
        stdin_once: bool,
    ) -> Result<(), Error>
    where
        I: tokio::io::AsyncRead + Unpin,
        O: tokio::io::AsyncWrite + Unpin,
        E: tokio::io::AsyncWrite + Unpin,
    {
        let s = self
            .attach(stdin.is_some(), stdout.is_some(), stderr.is_some())
            .await?;
        let session = Session::Attach { stdin_once };
        self.relay(s, stdin, stdout, stderr, resize, session)
            .await
            .map(drop)
    }

    /// Runs `cmd` in the container interactively (kubectl exec): relays
    /// stdin, stdout and stderr (a terminal when `tty`, resized from
    /// `resize`) until the command exits, and returns its exit code. The end
    /// of `stdin` closes the command's stdin; dropping the future kills the
    /// command.
    pub async fn exec_stream<I, O, E>(
        &self,
        cmd: &[String],
        tty: bool,
        stdin: Option<I>,
        stdout: Option<O>,
        stderr: Option<E>,
        resize: Option<tokio::sync::mpsc::Receiver<(u16, u16)>>,
    ) -> Result<i32, Error>
    where
        I: tokio::io::AsyncRead + Unpin,
        O: tokio::io::AsyncWrite + Unpin,
        E: tokio::io::AsyncWrite + Unpin,
    {
        let req = request::Kind::Exec(proto::Exec {
            cmd: cmd.to_vec(),
            tty,
            stream: true,
            stdin: stdin.is_some(),
            ..Default::default()
        });
        let s = self.open_session("exec", req).await?;
        debug!(dir = %self.dir.display(), ?cmd, tty, "exec stream started");
        self.relay(s, stdin, stdout, stderr, resize, Session::Exec)
            .await?
            .ok_or_else(|| self.protocol("exec stream ended without an exit code".into()))
    }

    /// Moves stdio between the caller and an attach or exec session; returns
    /// the exit code when the monitor sends one, `None` when it just closes.
    /// The caller's outputs are shut down at the end, so its client sees EOF.
    async fn relay<I, O, E>(
        &self,
        s: UnixStream,
        mut stdin: Option<I>,
        mut stdout: Option<O>,
        mut stderr: Option<E>,
        mut resize: Option<tokio::sync::mpsc::Receiver<(u16, u16)>>,
        session: Session,
    ) -> Result<Option<i32>, Error>
    where
        I: tokio::io::AsyncRead + Unpin,
        O: tokio::io::AsyncWrite + Unpin,
        E: tokio::io::AsyncWrite + Unpin,
    {
        let result: Result<Option<i32>, Error> = async {
            let close_stdin_at_eof = matches!(
                session,
                Session::Exec | Session::Attach { stdin_once: true }
            );
            let (mut rd, mut wr) = s.into_split();
            let mut inbuf = vec![0u8; 16 * 1024];
            let mut frames: Vec<u8> = Vec::new();
            let mut chunk = vec![0u8; 16 * 1024];
            let mut client_gone = false;
            loop {
                let mut to_send = None;
                tokio::select! {
                    n = async {
                        match stdin.as_mut() {
                            Some(i) => i.read(&mut inbuf).await,
                            None => std::future::pending().await,
                        }
                    } => {
                        match n {
                            Ok(0) | Err(_) => {
                                stdin = None;
                                if close_stdin_at_eof {
                                    to_send = Some(proto::AttachFrame {
                                        close_stdin: true,
                                        ..Default::default()
                                    });
                                }
                            }
                            Ok(n) => {
                                to_send = Some(proto::AttachFrame {
                                    stream: proto::Stream::Stdin as i32,
                                    data: inbuf[..n].to_vec(),
                                    ..Default::default()
                                });
                            }
                        }
                    }
                    size = async {
                        match resize.as_mut() {
                            Some(r) => r.recv().await,
                            None => std::future::pending().await,
                        }
                    } => {
                        match size {
                            Some((w, h)) => {
                                to_send = Some(proto::AttachFrame {
                                    width: w.into(),
                                    height: h.into(),
                                    ..Default::default()
                                });
                            }
                            None => resize = None,
                        }
                    }
                    n = rd.read(&mut chunk) => {
                        let n = n.map_err(|e| self.protocol(format!("reading stream: {e}")))?;
                        if n == 0 {
                            // The monitor closed the session: the container exited.
                            return Ok(None);
                        }
                        frames.extend_from_slice(&chunk[..n]);
                        while let Some((f, used)) = proto::decode_frame::<proto::AttachFrame>(&frames)
                            .map_err(|e| self.protocol(format!("stream: {e}")))?
                        {
                            frames.drain(..used);
                            if f.exited {
                                return Ok(Some(f.exit_code));
                            }
                            if client_gone {
                                continue;
                            }
                            let res = if f.stream == proto::Stream::Stderr as i32 {
                                match stderr.as_mut() {
                                    Some(w) => w.write_all(&f.data).await.and(w.flush().await),
                                    None => Ok(()),
                                }
                            } else {
                                match stdout.as_mut() {
                                    Some(w) => w.write_all(&f.data).await.and(w.flush().await),
                                    None => Ok(()),
                                }
                            };
                            if res.is_err() {
                                if let Session::Attach { .. } = session {
                                    // An attach client that went away detaches.
                                    return Ok(None);
                                }
                                // An exec keeps running to its end; drop its output.
                                client_gone = true;
                            }
                        }
                    }
                }
                if let Some(frame) = to_send {
                    wr.write_all(&proto::encode_frame(&frame))
                        .await
                        .map_err(|e| self.protocol(format!("sending to the stream: {e}")))?;
                }
            }
        }
        .await;
        if let Some(w) = stdout.as_mut() {
            let _ = w.shutdown().await;
        }
        if let Some(w) = stderr.as_mut() {
            let _ = w.shutdown().await;
        }
        result
    }
}
