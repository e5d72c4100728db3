//! Streaming exec, attach and port-forward: what runs behind the streaming server's URLs.
//!
//! - Exec runs `RUNTIME exec ID CMD...` from the daemon with its stdio wired to the
//!   client's streams. With a terminal, the runtime gets a pseudo-terminal of ours as its
//!   stdio (a foreground `runc exec --tty` relays between the container's terminal and its
//!   own); resizes set our terminal's size and tell the runtime with SIGWINCH.
//! - Attach joins the container's monitor on its attach socket and relays frames; closing
//!   the client's stdin closes the container's stdin when the container is `stdin_once`.
//! - Port-forward connects to 127.0.0.1:PORT (then [::1]:PORT) from a thread inside the
//!   pod's network namespace; the socket keeps working from any thread after that.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crius_monitor_proto as proto;
use crius_oci::monitor::MonitorClient;
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::daemon::Daemon;
use crate::error::{Error, Result};
use crate::model::{ContainerRecord, ContainerState, PodRecord, PodState};

/// How long output may keep flowing after an exec's process ended (a background child can
/// hold the pipes open).
const EXEC_OUTPUT_GRACE: Duration = Duration::from_secs(2);
/// How long a port-forward connect may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The client's side of a streamed command, as the core sees it.
#[derive(Default)]
pub struct StreamIo {
    /// Input from the client; EOF when it closes its stdin.
    pub stdin: Option<Box<dyn AsyncRead + Send + Unpin>>,
    /// The client's stdout.
    pub stdout: Option<Box<dyn AsyncWrite + Send + Unpin>>,
    /// The client's stderr (unused with a terminal).
    pub stderr: Option<Box<dyn AsyncWrite + Send + Unpin>>,
    /// Terminal sizes (columns, rows) from the client.
    pub resize: Option<mpsc::Receiver<(u16, u16)>>,
}

impl std::fmt::Debug for StreamIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamIo")
            .field("stdin", &self.stdin.is_some())
            .field("stdout", &self.stdout.is_some())
            .field("stderr", &self.stderr.is_some())
            .field("resize", &self.resize.is_some())
            .finish()
    }
}

impl Daemon {
    /// The record of a container that exists and runs: the precondition of Exec and Attach.
    pub fn running_container(&self, id: &str) -> Result<ContainerRecord> {
        let rec = self.container_entry(id)?.entry.get();
        if rec.state != ContainerState::Running {
            return Err(Error::FailedPrecondition(format!(
                "container {} is not running ({:?})",
                rec.id, rec.state
            )));
        }
        Ok(rec)
    }

    /// The record of a pod that exists and is ready: the precondition of PortForward.
    pub fn ready_pod(&self, id: &str) -> Result<PodRecord> {
        let pod = self.pod_entry(id)?.get();
        if pod.state != PodState::Ready {
            return Err(Error::FailedPrecondition(format!(
                "pod sandbox {} is not ready",
                pod.id
            )));
        }
        Ok(pod)
    }

    /// Runs `cmd` in a running container with its stdio streamed; returns its exit code.
    /// Dropping the future kills the runtime process and closes the stdio.
    pub async fn exec_stream(
        &self,
        id: &str,
        cmd: Vec<String>,
        tty: bool,
        io: StreamIo,
    ) -> Result<i32> {
        if cmd.is_empty() {
            return Err(Error::InvalidArgument("exec command is empty".into()));
        }
        let rec = self.running_container(id)?;
        let pod = self.pod_entry(&rec.pod_id)?.get();
        let (runtime, _, _) = self.runtime_handler(&pod.runtime_handler)?;
        let mut command = tokio::process::Command::new(&runtime.path);
        command.args(runtime.global_args()).arg("exec");
        if tty {
            command.args(["--tty", "--env", "TERM=xterm"]);
        }
        command.arg(&rec.id).args(&cmd).kill_on_drop(true);
        let started = Instant::now();
        let result = if tty {
            exec_tty(command, io).await
        } else {
            exec_pipes(command, io).await
        };
        debug!(
            runtime = %runtime.path.display(),
            container_id = %rec.id,
            ?cmd,
            tty,
            elapsed = ?started.elapsed(),
            result = ?result.as_ref().map_err(|e| e.to_string()),
            "runtime exec (streaming)"
        );
        result.map_err(|e| {
            Error::Internal(format!(
                "exec {:?} in container {} with {}: {e}",
                cmd,
                rec.id,
                runtime.path.display()
            ))
        })
    }

    /// Relays a running container's stdio through its monitor until the container exits.
    /// Dropping the future ends the attach session.
    pub async fn attach_stream(&self, id: &str, io: StreamIo) -> Result<()> {
        let rec = self.running_container(id)?;
        let client = MonitorClient::new(&self.container_run_dir(&rec.id));
        let StreamIo {
            stdin,
            stdout,
            stderr,
            resize,
        } = io;
        // A container without an open stdin takes none; the client's input is dropped.
        let stdin = stdin.filter(|_| rec.config.stdin);
        let stdin_once = rec.config.stdin_once;
        let started = Instant::now();
        let sock = client
            .attach(stdin.is_some(), stdout.is_some(), stderr.is_some())
            .await?;
        debug!(container_id = %rec.id, elapsed = ?started.elapsed(), "attached to the monitor");
        let (mut rd, mut wr) = sock.into_split();

        let down = relay_from_monitor(&mut rd, stdout, stderr);
        let up = async {
            if let Some(mut input) = stdin {
                let mut buf = vec![0u8; 32 * 1024];
                loop {
                    let n = match input.read(&mut buf).await {
                        Ok(0) | Err(_) => 0,
                        Ok(n) => n,
                    };
                    let frame = stdin_frame(buf[..n].to_vec(), n == 0 && stdin_once);
                    if (n > 0 || stdin_once)
                        && wr.write_all(&proto::encode_frame(&frame)).await.is_err()
                    {
                        break;
                    }
                    if n == 0 {
                        break;
                    }
                }
            }
            // Keep the connection open: closing it would end the session for the monitor.
            std::future::pending::<()>().await
        };
        let resizes = async {
            if let Some(mut sizes) = resize {
                while let Some((w, h)) = sizes.recv().await {
                    if let Err(e) = client.resize(w, h).await {
                        debug!(container_id = %rec.id, error = %e, "attach resize failed");
                    }
                }
            }
            std::future::pending::<()>().await
        };
        tokio::select! {
            r = down => r.map_err(|e| Error::Internal(format!("attach to container {}: {e}", rec.id))),
            _ = up => Ok(()),
            _ = resizes => Ok(()),
        }
    }

    /// Connects to `port` on the loopback of a ready pod, inside its network namespace
    /// (or the host's for a host-network pod).
    pub async fn port_forward_connect(
        &self,
        pod_id: &str,
        port: u16,
    ) -> Result<tokio::net::TcpStream> {
        let pod = self.ready_pod(pod_id)?;
        let netns = pod.netns.clone();
        let started = Instant::now();
        let connect = move || -> io::Result<std::net::TcpStream> {
            let v4 = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port);
            let v6 = SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), port);
            match std::net::TcpStream::connect_timeout(&v4, CONNECT_TIMEOUT) {
                Ok(s) => Ok(s),
                Err(e4) => {
                    std::net::TcpStream::connect_timeout(&v6, CONNECT_TIMEOUT).map_err(|_| e4)
                }
            }
        };
        let ns_for_thread = netns.clone();
        let joined = tokio::task::spawn_blocking(move || match &ns_for_thread {
            Some(ns) => crius_net::in_netns(ns, connect).map_err(Error::from),
            None => Ok(connect()),
        })
        .await
        .map_err(|e| Error::Internal(format!("port-forward connect thread: {e}")))?;
        let where_ = netns
            .as_ref()
            .map_or("the host network".to_string(), |p| p.display().to_string());
        debug!(pod_id = %pod.id, port, netns = %where_, elapsed = ?started.elapsed(), ok = matches!(joined, Ok(Ok(_))), "connect to pod port");
        let stream = joined?.map_err(|e| {
            Error::FailedPrecondition(format!(
                "connect to localhost:{port} in pod {} ({where_}): {e}",
                pod.id
            ))
        })?;
        stream
            .set_nonblocking(true)
            .and_then(|()| tokio::net::TcpStream::from_std(stream))
            .map_err(|e| Error::Internal(format!("port-forward socket for pod {}: {e}", pod.id)))
    }
}

/// A frame of stdin for the monitor. Built field by field so fields the protocol gains
/// for other uses keep their defaults.
#[allow(clippy::field_reassign_with_default)]
fn stdin_frame(data: Vec<u8>, close_stdin: bool) -> proto::AttachFrame {
    let mut frame = proto::AttachFrame::default();
    frame.stream = proto::Stream::Stdin as i32;
    frame.data = data;
    frame.close_stdin = close_stdin;
    frame
}

/// Copies the monitor's attach frames to the client until the monitor closes.
async fn relay_from_monitor(
    rd: &mut tokio::net::unix::OwnedReadHalf,
    mut stdout: Option<Box<dyn AsyncWrite + Send + Unpin>>,
    mut stderr: Option<Box<dyn AsyncWrite + Send + Unpin>>,
) -> io::Result<()> {
    let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
    let mut chunk = vec![0u8; 32 * 1024];
    loop {
        loop {
            let (frame, used) = match proto::decode_frame::<proto::AttachFrame>(&buf) {
                Ok(Some(x)) => x,
                Ok(None) => break,
                Err(e) => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("bad attach frame from the monitor: {e:?}"),
                    ))
                }
            };
            buf.drain(..used);
            let target = if frame.stream == proto::Stream::Stderr as i32 {
                stderr.as_mut()
            } else {
                stdout.as_mut()
            };
            if let Some(w) = target {
                // A client that stopped reading one stream does not end the others.
                let _ = w.write_all(&frame.data).await;
            }
        }
        let n = rd.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    for w in [stdout.as_mut(), stderr.as_mut()].into_iter().flatten() {
        let _ = w.shutdown().await;
    }
    Ok(())
}

/// Exec with pipes: the runtime hands them to the process as its stdio.
async fn exec_pipes(mut command: tokio::process::Command, io: StreamIo) -> io::Result<i32> {
    let StreamIo {
        stdin,
        stdout,
        stderr,
        ..
    } = io;
    command
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(if stdout.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stderr(if stderr.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
    let mut child = command.spawn()?;
    let feed = match (stdin, child.stdin.take()) {
        (Some(mut from), Some(mut to)) => Some(tokio::spawn(async move {
            let _ = tokio::io::copy(&mut from, &mut to).await;
            // `to` drops here: the process sees the end of its input.
        })),
        _ => None,
    };
    let mut copies = Vec::new();
    if let (Some(mut to), Some(mut from)) = (stdout, child.stdout.take()) {
        copies.push(tokio::spawn(async move {
            let _ = tokio::io::copy(&mut from, &mut to).await;
            let _ = to.shutdown().await;
        }));
    }
    if let (Some(mut to), Some(mut from)) = (stderr, child.stderr.take()) {
        copies.push(tokio::spawn(async move {
            let _ = tokio::io::copy(&mut from, &mut to).await;
            let _ = to.shutdown().await;
        }));
    }
    let status = child.wait().await;
    if let Some(f) = feed {
        f.abort();
    }
    for c in copies {
        let abort = c.abort_handle();
        if tokio::time::timeout(EXEC_OUTPUT_GRACE, c).await.is_err() {
            abort.abort();
        }
    }
    Ok(exit_code(status?))
}

fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(255)
}

/// Exec on a terminal: the runtime's stdio is the slave of a pty we hold the master of.
async fn exec_tty(mut command: tokio::process::Command, io: StreamIo) -> io::Result<i32> {
    let StreamIo {
        stdin,
        stdout,
        resize,
        ..
    } = io;
    let (master, slave) = open_pty()?;
    command
        .stdin(Stdio::from(slave.try_clone()?))
        .stdout(Stdio::from(slave.try_clone()?))
        .stderr(Stdio::from(slave));
    let mut child = command.spawn()?;
    // Drop our copies of the slave (moved into `command`) so the master sees the hangup.
    drop(command);
    let runtime_pid = child.id();
    let master = std::sync::Arc::new(register(master)?);

    let output = {
        let master = master.clone();
        let mut stdout = stdout;
        tokio::spawn(async move {
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                match pty_read(&master, &mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if let Some(w) = stdout.as_mut() {
                            if w.write_all(&buf[..n]).await.is_err() {
                                stdout = None;
                            }
                        }
                    }
                }
            }
            if let Some(mut w) = stdout {
                let _ = w.shutdown().await;
            }
        })
    };
    let input = stdin.map(|mut from| {
        let master = master.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                match from.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if pty_write_all(&master, &buf[..n]).await.is_err() {
                            break;
                        }
                    }
                }
            }
        })
    });
    let resizer = resize.map(|mut sizes| {
        let master = master.clone();
        tokio::spawn(async move {
            while let Some((w, h)) = sizes.recv().await {
                if let Err(e) = set_winsize(master.get_ref(), w, h) {
                    debug!(error = %e, "TIOCSWINSZ on the exec terminal failed");
                    continue;
                }
                if let Some(pid) = runtime_pid {
                    // The runtime copies our size to the container's terminal on SIGWINCH.
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid as i32),
                        nix::sys::signal::Signal::SIGWINCH,
                    );
                }
            }
        })
    });
    let status = child.wait().await;
    if let Some(t) = input {
        t.abort();
    }
    if let Some(t) = resizer {
        t.abort();
    }
    let abort = output.abort_handle();
    if tokio::time::timeout(EXEC_OUTPUT_GRACE, output)
        .await
        .is_err()
    {
        warn!("exec terminal output still open after the process ended; cutting it off");
        abort.abort();
    }
    Ok(exit_code(status?))
}

/// A new pty: (master, non-blocking, close-on-exec; slave, close-on-exec, not our ctty).
fn open_pty() -> io::Result<(OwnedFd, OwnedFd)> {
    use nix::fcntl::OFlag;
    let started = Instant::now();
    let master = nix::pty::posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)?;
    nix::pty::grantpt(&master)?;
    nix::pty::unlockpt(&master)?;
    let name = nix::pty::ptsname_r(&master)?;
    let slave = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY)
        .open(&name)?;
    // Raw from the start: the runtime makes its terminal raw only after it began copying
    // output, and bytes copied before that would get \r added to each \n.
    let mut termios = nix::sys::termios::tcgetattr(&slave)?;
    nix::sys::termios::cfmakeraw(&mut termios);
    nix::sys::termios::tcsetattr(&slave, nix::sys::termios::SetArg::TCSANOW, &termios)?;
    let master: OwnedFd = master.into();
    let flags = nix::fcntl::fcntl(master.as_fd(), nix::fcntl::FcntlArg::F_GETFL)?;
    nix::fcntl::fcntl(
        master.as_fd(),
        nix::fcntl::FcntlArg::F_SETFL(OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK),
    )?;
    debug!(pty = %name, elapsed = ?started.elapsed(), "posix_openpt + grantpt + unlockpt for exec");
    Ok((master, OwnedFd::from(slave)))
}

use std::os::unix::fs::OpenOptionsExt;

fn set_winsize(fd: &OwnedFd, width: u16, height: u16) -> io::Result<()> {
    let ws = libc::winsize {
        ws_row: height,
        ws_col: width,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize from the pointer, which points to a live local;
    // the fd is an open pty master owned by the caller.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    debug!(width, height, "TIOCSWINSZ on the exec terminal");
    Ok(())
}

/// Puts the pty master in the reactor.
fn register(master: OwnedFd) -> io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: the AsyncFd owns the OwnedFd, which nothing else closes or replaces while
    // it is registered; it is deregistered before the fd closes when the AsyncFd drops.
    Ok(unsafe { AsyncFd::register(master) }?)
}

/// Reads from the pty master; 0 once the other side hung up (EIO).
async fn pty_read(fd: &AsyncFd<OwnedFd>, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        let mut guard = fd.readable().await?;
        match guard.try_io(|inner| nix::unistd::read(inner.get_ref(), buf).map_err(io::Error::from))
        {
            Ok(Ok(n)) => return Ok(n),
            Ok(Err(e)) if e.raw_os_error() == Some(libc::EIO) => return Ok(0),
            Ok(Err(e)) => return Err(e),
            Err(_would_block) => continue,
        }
    }
}

async fn pty_write_all(fd: &AsyncFd<OwnedFd>, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        let mut guard = fd.writable().await?;
        match guard
            .try_io(|inner| nix::unistd::write(inner.get_ref(), data).map_err(io::Error::from))
        {
            Ok(Ok(n)) => data = &data[n..],
            Ok(Err(e)) => return Err(e),
            Err(_would_block) => continue,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn pty_carries_bytes_and_reports_hangup_as_eof() {
        let (master, slave) = open_pty().unwrap();
        let master = register(master).unwrap();
        set_winsize(master.get_ref(), 100, 40).unwrap();
        let mut ws = libc::winsize {
            ws_row: 0,
            ws_col: 0,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCGWINSZ writes one winsize to the pointer, a live local; slave is open.
        let rc = unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) };
        assert_eq!(rc, 0);
        assert_eq!((ws.ws_col, ws.ws_row), (100, 40));

        let mut slave_file = std::fs::File::from(slave);
        std::io::Write::write_all(&mut slave_file, b"hi\n").unwrap();
        let mut buf = [0u8; 64];
        let n = pty_read(&master, &mut buf).await.unwrap();
        // Raw: no \r added to the \n.
        assert_eq!(&buf[..n], b"hi\n");
        drop(slave_file);
        assert_eq!(pty_read(&master, &mut buf).await.unwrap(), 0);
    }

    #[test]
    fn exit_codes_of_signals_are_128_plus() {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(exit_code(std::process::ExitStatus::from_raw(3 << 8)), 3);
        assert_eq!(exit_code(std::process::ExitStatus::from_raw(9)), 137);
    }
}
