//! Detaching and `RUNTIME create`: everything before the poll loop.

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crius_monitor_proto as proto;

use crate::args::Args;
use crate::log::LogWriter;
use crate::oom::OomCounter;
use crate::server::{Monitor, Stdio as CtrStdio};
use crate::sys;

/// How long `RUNTIME create` may take before the monitor gives up on it.
const CREATE_TIMEOUT: Duration = Duration::from_secs(240);

/// Detaches and creates the container. `Ok(None)` in the first process of the
/// double fork, which just exits; `Ok(Some)` in the monitor once the
/// container is created and the daemon has been told.
pub fn start(args: &Args) -> Result<Option<Monitor>, String> {
    sys::close_inherited_fds();
    let dir = std::fs::canonicalize(&args.dir)
        .map_err(|e| format!("monitor dir {}: {e}", args.dir.display()))?;
    let mut args = args.clone();
    args.dir = dir.clone();
    sys::chdir(&dir).map_err(|e| format!("chdir {}: {e}", dir.display()))?;

    match sys::fork().map_err(|e| format!("fork: {e}"))? {
        sys::Fork::Parent => return Ok(None),
        sys::Fork::Child => {}
    }
    sys::setsid().map_err(|e| format!("setsid: {e}"))?;
    sys::set_child_subreaper().map_err(|e| format!("set child subreaper: {e}"))?;
    let pid = sys::getpid();
    sys::create_private(Path::new(proto::PID_FILE_NAME))
        .and_then(|mut f| f.write_all(pid.to_string().as_bytes()))
        .map_err(|e| format!("write {}: {e}", dir.join(proto::PID_FILE_NAME).display()))?;
    let _ = std::fs::remove_file(proto::EXIT_FILE_NAME);

    let sigfd =
        sys::signalfd(&[libc::SIGCHLD, libc::SIGHUP]).map_err(|e| format!("signalfd: {e}"))?;
    let listener = sys::listen_unix(Path::new(proto::SOCKET_NAME))
        .map_err(|e| format!("listen on {}: {e}", dir.join(proto::SOCKET_NAME).display()))?;
    let log = LogWriter::open(args.log_path.clone(), args.log_size_max).map_err(|e| {
        let p = args.log_path.as_deref().unwrap_or(Path::new(""));
        format!("open log {}: {e}", p.display())
    })?;

    let pid_file = dir.join(proto::CONTAINER_PID_FILE_NAME);
    let _ = std::fs::remove_file(&pid_file);
    let mut cmd = Command::new(&args.runtime);
    cmd.args(args.runtime_globals())
        .arg("create")
        .arg("--bundle")
        .arg(&args.bundle)
        .arg("--pid-file")
        .arg(&pid_file);

    // The runtime's stderr always comes to us, to report its error; without a
    // terminal it is also the container's stderr (runc hands its stdio on).
    let (err_r, err_w) = sys::pipe().map_err(|e| format!("pipe: {e}"))?;
    sys::set_nonblocking(&err_r).map_err(|e| format!("pipe: {e}"))?;
    let mut stdin_w = None;
    let mut console_listener = None;
    let stdio = if args.terminal {
        let path = PathBuf::from("console.sock");
        console_listener =
            Some(sys::listen_unix(&path).map_err(|e| format!("listen on console socket: {e}"))?);
        // runc changes into the bundle, so the socket is named through our
        // cwd: short however long `dir` is.
        cmd.arg("--console-socket")
            .arg(format!("/proc/{pid}/cwd/console.sock"));
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(err_w);
        None
    } else {
        let (out_r, out_w) = sys::pipe().map_err(|e| format!("pipe: {e}"))?;
        sys::set_nonblocking(&out_r).map_err(|e| format!("pipe: {e}"))?;
        if args.stdin {
            let (in_r, in_w) = sys::pipe().map_err(|e| format!("pipe: {e}"))?;
            sys::set_nonblocking(&in_w).map_err(|e| format!("pipe: {e}"))?;
            stdin_w = Some(in_w);
            cmd.stdin(in_r);
        } else {
            cmd.stdin(Stdio::null());
        }
        cmd.stdout(out_w).stderr(err_w);
        Some(out_r)
    };
    cmd.arg(&args.id);

    let started = Instant::now();
    let child = cmd
        .spawn()
        .map_err(|e| format!("start runtime {}: {e}", args.runtime.display()))?;
    drop(cmd);
    let runtime_pid = child.id() as libc::pid_t;
    drop(child);

    let mut early = Vec::new();
    let mut console_conn: Option<OwnedFd> = None;
    let mut master: Option<OwnedFd> = None;
    let code = loop {
        let mut runtime_code = None;
        while let Some(r) = sys::reap_one() {
            if r.pid == runtime_pid {
                runtime_code = Some(r.code);
            } else {
                early.push(r);
            }
        }
        if let Some(code) = runtime_code {
            break code;
        }
        if started.elapsed() > CREATE_TIMEOUT {
            let _ = sys::kill(runtime_pid, libc::SIGKILL);
            return Err(format!(
                "runtime create did not finish within {}s",
                CREATE_TIMEOUT.as_secs()
            ));
        }
        accept_console(&console_listener, &mut console_conn, &mut master)?;
        let mut fds = vec![libc::pollfd {
            fd: std::os::fd::AsRawFd::as_raw_fd(&sigfd),
            events: libc::POLLIN,
            revents: 0,
        }];
        for fd in console_listener.iter().chain(console_conn.iter()) {
            fds.push(libc::pollfd {
                fd: std::os::fd::AsRawFd::as_raw_fd(fd),
                events: libc::POLLIN,
                revents: 0,
            });
        }
        sys::poll(&mut fds, 1000).map_err(|e| format!("poll: {e}"))?;
        sys::read_signals(&sigfd);
    };

    if code != 0 {
        let mut msg = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(Some(n)) = sys::read_nb(&err_r, &mut buf) {
            if n == 0 || msg.len() > 64 * 1024 {
                break;
            }
            msg.extend_from_slice(&buf[..n]);
        }
        let text = String::from_utf8_lossy(&msg);
        let line = text
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .map(str::to_string)
            .or_else(|| runtime_log_error(&dir.join(proto::RUNTIME_LOG_NAME)))
            .unwrap_or_else(|| format!("runtime create exited with status {code}"));
        cleanup_files();
        return Err(line);
    }

    if args.terminal {
        // The runtime sent the master before it exited: it is queued.
        for _ in 0..50 {
            accept_console(&console_listener, &mut console_conn, &mut master)?;
            if master.is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        drop(console_conn);
        drop(console_listener);
        let _ = std::fs::remove_file("console.sock");
        if master.is_none() {
            cleanup_files();
            return Err("the runtime sent no terminal on the console socket".into());
        }
    }

    let container_pid: libc::pid_t = std::fs::read_to_string(&pid_file)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .filter(|&p| p > 0)
        .ok_or_else(|| {
            cleanup_files();
            format!("no container pid in {}", pid_file.display())
        })?;
    let oom = OomCounter::for_pid(container_pid);

    let stdio = match (stdio, master) {
        (Some(out), _) => CtrStdio::Pipes {
            out: Some(out),
            err: Some(err_r),
            stdin: stdin_w,
        },
        (None, Some(m)) => {
            sys::set_nonblocking(&m).map_err(|e| format!("terminal: {e}"))?;
            drop(err_r);
            CtrStdio::Terminal {
                master: m,
                stdin_open: args.stdin,
                hup: false,
            }
        }
        (None, None) => return Err("no container stdio".into()),
    };

    // The sync pipe is done after this line: stdin and stdout become
    // /dev/null first, so later writes can neither block on nor fail against
    // a daemon that no longer reads, and nothing of the daemon's stays open.
    let sync = std::io::stdout()
        .as_fd()
        .try_clone_to_owned()
        .map_err(|e| format!("dup sync pipe: {e}"))?;
    if let Ok(null) = File::options().read(true).write(true).open("/dev/null") {
        let null = OwnedFd::from(null);
        let _ = sys::dup2(&null, 0);
        let _ = sys::dup2(&null, 1);
    }
    let mut sync = File::from(sync);
    let _ = writeln!(sync, "created {container_pid}");
    drop(sync);

    Ok(Some(Monitor::new(
        args,
        sigfd,
        listener,
        stdio,
        log,
        container_pid,
        oom,
        early,
    )))
}

fn accept_console(
    listener: &Option<OwnedFd>,
    conn: &mut Option<OwnedFd>,
    master: &mut Option<OwnedFd>,
) -> Result<(), String> {
    if master.is_some() {
        return Ok(());
    }
    if conn.is_none() {
        if let Some(l) = listener {
            *conn = sys::accept(l).map_err(|e| format!("console socket accept: {e}"))?;
        }
    }
    if let Some(c) = conn {
        *master = sys::recv_fd(c).map_err(|e| format!("console socket: {e}"))?;
    }
    Ok(())
}

/// The last error message in the runtime's JSON log, raw.
fn runtime_log_error(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .rev()
        .find(|l| l.contains("\"level\":\"error\""))
        .map(str::to_string)
}

fn cleanup_files() {
    let _ = std::fs::remove_file(proto::SOCKET_NAME);
    let _ = std::fs::remove_file(proto::PID_FILE_NAME);
    let _ = std::fs::remove_file("console.sock");
}
