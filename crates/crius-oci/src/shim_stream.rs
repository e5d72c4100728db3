//! Streaming exec and attach through a containerd shim v2 (`vm` handlers): the client's
//! streams relayed to and from fifos that the shim copies to the process, as containerd's
//! own `cio` does.
//!
//! - Exec: an exec process of the container's task with fifos of its own (stdin when the
//!   client sends input, stdout, and stderr unless on a terminal), `ResizePty` for terminal
//!   sizes, `CloseIO` when the client's stdin ends; the exit code from `Wait`. Dropping
//!   the future kills and deletes the exec.
//! - Attach: the container's own output, as its log copier reads it
//!   ([`crate::shim::LogCopier::subscribe`]), and its stdin fifo, which crius holds open
//!   for the container's life ([`ContainerStdin`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::unix::pipe;
use tokio::sync::mpsc;
use tracing::debug;

use crate::shim::{make_fifo, OutputChunk, Shim, TaskIo};
use crate::Error;

/// How long an exec's output may go on after its process exited (a child it left holding
/// the output open) before the exec is deleted, which closes the shim's side.
const OUTPUT_GRACE: Duration = Duration::from_secs(10);

/// How long the rest of the output may take once the exec is deleted.
const DRAIN_AFTER_DELETE: Duration = Duration::from_secs(2);

/// How long the cleanup of an abandoned exec (client gone) may wait for its exit.
const ABANDONED_EXIT_WAIT: Duration = Duration::from_secs(10);

/// The write end of a container's stdin fifo, held by crius while the container runs so
/// that attached clients can feed it; taken (closed) when a `stdin_once` client's input
/// ends.
pub type ContainerStdin = Arc<tokio::sync::Mutex<Option<pipe::Sender>>>;

/// Opens the write end of a stdin fifo before the shim has opened its reader (read-write,
/// so the open neither blocks nor fails with ENXIO).
pub fn open_stdin_fifo(path: &Path) -> Result<pipe::Sender, Error> {
    pipe::OpenOptions::new()
        .read_write(true)
        .open_sender(path)
        .map_err(|e| Error::MonitorFile {
            path: path.to_path_buf(),
            source: e,
        })
}

/// Reopens the write end of a running container's stdin fifo (after a restart); `None`
/// when the shim no longer reads it (its stdin was closed).
pub fn reopen_stdin_fifo(path: &Path) -> Option<pipe::Sender> {
    pipe::OpenOptions::new().open_sender(path).ok()
}

/// An output fifo: its read end, and crius's own write end held until the shim has
/// opened its own (so that a read before then does not end at once).
struct OutputFifo {
    reader: pipe::Receiver,
    hold: pipe::Sender,
}

impl OutputFifo {
    fn open(path: &Path) -> Result<OutputFifo, Error> {
        let err = |e| Error::MonitorFile {
            path: path.to_path_buf(),
            source: e,
        };
        let reader = pipe::OpenOptions::new().open_receiver(path).map_err(err)?;
        let hold = pipe::OpenOptions::new().open_sender(path).map_err(err)?;
        Ok(OutputFifo { reader, hold })
    }
}

/// The fifos of one exec, removed (and the exec killed and deleted, when it was made and
/// not deleted yet) when dropped.
struct ExecCleanup {
    shim: Shim,
    id: String,
    exec_id: String,
    paths: Vec<PathBuf>,
    /// The exec exists in the shim and is not deleted yet.
    live: bool,
}

impl Drop for ExecCleanup {
    fn drop(&mut self) {
        for p in &self.paths {
            let _ = std::fs::remove_file(p);
        }
        if !self.live {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (shim, id, exec_id) = (self.shim.clone(), self.id.clone(), self.exec_id.clone());
        rt.spawn(async move {
            debug!(container_id = %id, exec_id, "exec abandoned by its client; killing it");
            let _ = shim.kill(&id, &exec_id, libc::SIGKILL as u32, false).await;
            let _ = tokio::time::timeout(ABANDONED_EXIT_WAIT, shim.wait(&id, &exec_id)).await;
            let _ = shim.delete(&id, &exec_id).await;
        });
    }
}

/// Copies one output fifo to the client until the fifo ends. A client that stops taking
/// output (gone) gets no more; the process runs on.
async fn pump_output<O: AsyncWrite + Unpin>(mut from: pipe::Receiver, to: &mut Option<O>) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Some(w) = to.as_mut() {
            if w.write_all(&buf[..n]).await.and(w.flush().await).is_err() {
                *to = None;
            }
        }
    }
}

/// Copies the client's stdin into `fifo` until it ends; returns whether it ended (rather
/// than the fifo failing).
async fn pump_stdin<I: AsyncRead + Unpin>(from: &mut I, fifo: &mut pipe::Sender) -> bool {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => return true,
            Ok(n) => {
                if fifo.write_all(&buf[..n]).await.is_err() {
                    return false;
                }
            }
        }
    }
}

/// Shuts the client's outputs down, so that it sees their end.
async fn shut_down<O: AsyncWrite + Unpin, E: AsyncWrite + Unpin>(
    stdout: &mut Option<O>,
    stderr: &mut Option<E>,
) {
    if let Some(w) = stdout.as_mut() {
        let _ = w.shutdown().await;
    }
    if let Some(w) = stderr.as_mut() {
        let _ = w.shutdown().await;
    }
}

/// Applies each terminal size from the client to process `exec_id` ("" the container's).
async fn pump_resize(
    shim: &Shim,
    id: &str,
    exec_id: &str,
    resize: &mut Option<mpsc::Receiver<(u16, u16)>>,
) {
    if let Some(sizes) = resize.as_mut() {
        while let Some((w, h)) = sizes.recv().await {
            if let Err(e) = shim.resize_pty(id, exec_id, w.into(), h.into()).await {
                debug!(container_id = %id, exec_id, error = %e, "terminal resize");
            }
        }
    }
}

/// Feeds a started exec the client's stdin (closing the exec's at its end) and terminal
/// sizes; never returns, so it runs until the exec's Wait ends it.
async fn feed_exec<I: AsyncRead + Unpin>(
    shim: &Shim,
    id: &str,
    exec_id: &str,
    stdin: Option<&mut I>,
    fifo: Option<pipe::Sender>,
    resize: &mut Option<mpsc::Receiver<(u16, u16)>>,
) -> std::convert::Infallible {
    let input = async {
        let (Some(from), Some(mut fifo)) = (stdin, fifo) else {
            return;
        };
        let ended = pump_stdin(from, &mut fifo).await;
        drop(fifo);
        if ended {
            if let Err(e) = shim.close_stdin(id, exec_id).await {
                debug!(container_id = %id, exec_id, error = %e, "close exec stdin");
            }
        }
    };
    tokio::join!(input, pump_resize(shim, id, exec_id, resize));
    std::future::pending().await
}

/// What [`exec_stream`] runs.
#[derive(Debug)]
pub struct StreamExec<'a> {
    /// The container (task) id.
    pub id: &'a str,
    /// A fresh exec id.
    pub exec_id: &'a str,
    /// The OCI process spec (JSON).
    pub process: &'a [u8],
    /// On a terminal (stdout carries its output; no stderr).
    pub tty: bool,
    /// Where its fifos go (the container's run dir).
    pub dir: &'a Path,
}

/// Runs an exec process with the client's streams until it exits; returns its exit code.
/// The end of `stdin` closes the process's stdin; the outputs are shut down at the end,
/// so the client sees EOF.
pub async fn exec_stream<I, O, E>(
    shim: &Shim,
    exec: StreamExec<'_>,
    mut stdin: Option<I>,
    mut stdout: Option<O>,
    mut stderr: Option<E>,
    mut resize: Option<mpsc::Receiver<(u16, u16)>>,
) -> Result<i32, Error>
where
    I: AsyncRead + Unpin,
    O: AsyncWrite + Unpin,
    E: AsyncWrite + Unpin,
{
    let StreamExec {
        id,
        exec_id,
        process,
        tty,
        dir,
    } = exec;
    let path = |name: &str| dir.join(format!("{exec_id}-{name}"));
    let mut cleanup = ExecCleanup {
        shim: shim.clone(),
        id: id.to_string(),
        exec_id: exec_id.to_string(),
        paths: Vec::new(),
        live: false,
    };
    let mut io = TaskIo {
        terminal: tty,
        ..Default::default()
    };
    // Every output gets a fifo, asked for or not: shims differ on empty paths.
    let mut outputs = Vec::new();
    for name in if tty {
        &["stdout"][..]
    } else {
        &["stdout", "stderr"][..]
    } {
        let p = path(name);
        make_fifo(&p)?;
        cleanup.paths.push(p.clone());
        outputs.push(OutputFifo::open(&p)?);
        let s = p.display().to_string();
        if *name == "stdout" {
            io.stdout = s;
        } else {
            io.stderr = s;
        }
    }
    let mut stdin_fifo = None;
    if stdin.is_some() {
        let p = path("stdin");
        make_fifo(&p)?;
        cleanup.paths.push(p.clone());
        stdin_fifo = Some(open_stdin_fifo(&p)?);
        io.stdin = p.display().to_string();
    }
    let mut outputs = outputs.into_iter();
    let (out, err) = (outputs.next(), outputs.next());
    let mut holds = Vec::new();
    let out_reader = out.map(|f| {
        holds.push(f.hold);
        f.reader
    });
    let err_reader = err.map(|f| {
        holds.push(f.hold);
        f.reader
    });

    // Set once the process has exited; the outputs then get OUTPUT_GRACE to end.
    let exited = tokio::sync::Notify::new();
    let deleted = std::sync::atomic::AtomicBool::new(false);
    let run = async {
        // Owned here, so that they go however this ends.
        let mut holds = holds;
        let status = async {
            shim.exec(id, exec_id, process, &io).await?;
            cleanup.live = true;
            let started = shim.start(id, exec_id).await;
            holds.clear();
            started?;
            let feed = feed_exec(shim, id, exec_id, stdin.as_mut(), stdin_fifo, &mut resize);
            tokio::select! {
                st = shim.wait(id, exec_id) => st,
                never = feed => match never {},
            }
        }
        .await;
        drop(holds);
        exited.notify_one();
        status
    };
    let relay = async {
        let pumps = async {
            tokio::join!(
                async {
                    if let Some(r) = out_reader {
                        pump_output(r, &mut stdout).await;
                    }
                },
                async {
                    if let Some(r) = err_reader {
                        pump_output(r, &mut stderr).await;
                    }
                }
            )
        };
        tokio::pin!(pumps);
        tokio::select! {
            _ = &mut pumps => return,
            () = async {
                exited.notified().await;
                tokio::time::sleep(OUTPUT_GRACE).await;
            } => {}
        }
        debug!(container_id = %id, exec_id, "exec output still open after its exit; deleting the exec");
        let _ = shim.delete(id, exec_id).await;
        deleted.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = tokio::time::timeout(DRAIN_AFTER_DELETE, pumps).await;
    };
    let (status, ()) = tokio::join!(run, relay);
    if cleanup.live && !deleted.load(std::sync::atomic::Ordering::Relaxed) {
        let _ = shim.delete(id, exec_id).await;
    }
    cleanup.live = false;
    shut_down(&mut stdout, &mut stderr).await;
    Ok(status?.code as i32)
}

/// What [`attach_stream`] relays to and from.
#[derive(Debug)]
pub struct StreamAttach<'a> {
    /// The container (task) id.
    pub id: &'a str,
    /// The container's output from now on (ends when the container's output does).
    pub output: mpsc::Receiver<OutputChunk>,
    /// The container's stdin fifo, when it has one open.
    pub stdin_fifo: Option<ContainerStdin>,
    /// Whether the end of the client's input closes the container's stdin.
    pub stdin_once: bool,
}

/// Relays a running container's stdio until its output ends (it exited) or the client
/// detaches (stops taking output). The outputs are shut down at the end.
pub async fn attach_stream<I, O, E>(
    shim: &Shim,
    attach: StreamAttach<'_>,
    mut stdin: Option<I>,
    mut stdout: Option<O>,
    mut stderr: Option<E>,
    mut resize: Option<mpsc::Receiver<(u16, u16)>>,
) -> Result<(), Error>
where
    I: AsyncRead + Unpin,
    O: AsyncWrite + Unpin,
    E: AsyncWrite + Unpin,
{
    let StreamAttach {
        id,
        mut output,
        stdin_fifo,
        stdin_once,
    } = attach;
    let feed = async {
        tokio::join!(
            async {
                let (Some(from), Some(fifo)) = (stdin.as_mut(), stdin_fifo.as_ref()) else {
                    return;
                };
                let mut buf = vec![0u8; 32 * 1024];
                loop {
                    let n = match from.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    let mut held = fifo.lock().await;
                    let Some(w) = held.as_mut() else {
                        return;
                    };
                    if w.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
                if stdin_once {
                    // The container's stdin ends with this client's.
                    drop(fifo.lock().await.take());
                    if let Err(e) = shim.close_stdin(id, "").await {
                        debug!(container_id = %id, error = %e, "close container stdin");
                    }
                }
            },
            pump_resize(shim, id, "", &mut resize),
        );
        std::future::pending::<()>().await
    };
    let relay = async {
        while let Some((is_stderr, data)) = output.recv().await {
            let res = if is_stderr {
                match stderr.as_mut() {
                    Some(w) => w.write_all(&data).await.and(w.flush().await),
                    None => Ok(()),
                }
            } else {
                match stdout.as_mut() {
                    Some(w) => w.write_all(&data).await.and(w.flush().await),
                    None => Ok(()),
                }
            };
            if res.is_err() {
                // A client that went away detaches.
                return;
            }
        }
    };
    tokio::select! {
        () = relay => {}
        () = feed => {}
    }
    shut_down(&mut stdout, &mut stderr).await;
    Ok(())
}
