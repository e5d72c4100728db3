//! Execs in the container through `RUNTIME exec`: collected (ExecSync, with
//! an output bound and a timeout) or streamed over the client connection
//! (interactive exec, on pipes or on a terminal).
//!
//! A terminal exec runs `RUNTIME exec --detach --tty --console-socket`: the
//! runtime hands us the pty master and exits, and the process, orphaned,
//! becomes our child (we are its subreaper), so its exit comes from waitpid.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio as ProcStdio};
use std::time::{Duration, Instant};

use crius_monitor_proto::{self as proto, response, Response};

use super::{parent_of, read_pid, ClientState, Monitor, Token, CLIENT_OUT_MAX};
use crate::sys::{self, Reaped};

/// Client input held for an exec's stdin before the client is paused.
pub(super) const EXEC_STDIN_MAX: usize = 256 * 1024;

/// Where an exec's output is read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Source {
    Out,
    Err,
    Master,
}

pub(super) struct ExecRun {
    pub(super) client: u64,
    runtime_pid: libc::pid_t,
    pid_file: PathBuf,
    out: Option<OwnedFd>,
    err: Option<OwnedFd>,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    max: usize,
    truncated: bool,
    pub(super) deadline: Option<Instant>,
    pub(super) timed_out: bool,
    /// The exec's exit code, once known.
    exit: Option<i32>,
    /// Output goes to the client as frames.
    stream: bool,
    tty: bool,
    stdin: Option<OwnedFd>,
    pub(super) stdin_buf: Vec<u8>,
    /// The client closed its stdin: the pipe closes once `stdin_buf` is written out.
    stdin_eof: bool,
    console: Option<OwnedFd>,
    console_conn: Option<OwnedFd>,
    console_path: Option<PathBuf>,
    master: Option<OwnedFd>,
    master_hup: bool,
    pending_size: Option<(u16, u16)>,
    /// A terminal exec's own process (the runtime exits once it started).
    proc_pid: Option<libc::pid_t>,
    runtime_done: bool,
    /// The client went away: no reply, just clean up.
    abandoned: bool,
}

impl ExecRun {
    fn fd(&self, src: Source) -> Option<&OwnedFd> {
        match src {
            Source::Out => self.out.as_ref(),
            Source::Err => self.err.as_ref(),
            Source::Master => self.master.as_ref().filter(|_| !self.master_hup),
        }
    }

    fn close(&mut self, src: Source) {
        match src {
            Source::Out => self.out = None,
            Source::Err => self.err = None,
            Source::Master => self.master_hup = true,
        }
    }

    fn kill(&self) {
        let me = sys::getpid();
        let pid = self.proc_pid.or_else(|| read_pid(&self.pid_file));
        // Only a process that is still the runtime's or ours: a pid cannot be
        // reused while its parent has not reaped it.
        if let Some(pid) =
            pid.filter(|&p| matches!(parent_of(p), Some(pp) if pp == me || pp == self.runtime_pid))
        {
            let _ = sys::kill(pid, libc::SIGKILL);
        }
        if !self.runtime_done {
            let _ = sys::kill(self.runtime_pid, libc::SIGKILL);
        }
    }
}

impl Monitor {
    pub(super) fn start_exec(&mut self, client: u64, ex: proto::Exec) -> Result<(), String> {
        if ex.cmd.is_empty() {
            return Err("exec needs a command".into());
        }
        if ex.tty && !ex.stream {
            return Err("an exec on a terminal must be streamed".into());
        }
        let pipe = || -> Result<(OwnedFd, OwnedFd), String> {
            let (r, w) = sys::pipe().map_err(|e| format!("pipe: {e}"))?;
            sys::set_nonblocking(&r).map_err(|e| format!("pipe: {e}"))?;
            Ok((r, w))
        };
        let pid_file = self.args.dir.join(format!("exec-{client}.pid"));
        let _ = std::fs::remove_file(&pid_file);
        let mut cmd = Command::new(&self.args.runtime);
        cmd.args(self.args.runtime_globals()).arg("exec");
        let (err_r, err_w) = pipe()?;
        let mut out_r = None;
        let mut stdin_w = None;
        let mut console = None;
        let mut console_path = None;
        if ex.tty {
            let name = format!("exec-{client}.sock");
            console = Some(
                sys::listen_unix(Path::new(&name))
                    .map_err(|e| format!("listen on console socket: {e}"))?,
            );
            cmd.arg("--detach")
                .arg("--tty")
                .args(["--env", "TERM=xterm"])
                .arg("--console-socket")
                .arg(format!("/proc/{}/cwd/{name}", sys::getpid()));
            console_path = Some(PathBuf::from(name));
            cmd.stdin(ProcStdio::null()).stdout(ProcStdio::null());
        } else {
            let (r, w) = pipe()?;
            out_r = Some(r);
            cmd.stdout(w);
            if ex.stream && ex.stdin {
                let (r, w) = sys::pipe().map_err(|e| format!("pipe: {e}"))?;
                sys::set_nonblocking(&w).map_err(|e| format!("pipe: {e}"))?;
                stdin_w = Some(w);
                cmd.stdin(r);
            } else {
                cmd.stdin(ProcStdio::null());
            }
        }
        cmd.stderr(err_w)
            .arg("--pid-file")
            .arg(&pid_file)
            .arg(&self.args.id)
            .args(&ex.cmd);
        let child = cmd
            .spawn()
            .map_err(|e| format!("start runtime {}: {e}", self.args.runtime.display()))?;
        drop(cmd);
        let max = if ex.max_output == 0 {
            proto::DEFAULT_EXEC_OUTPUT_MAX
        } else {
            ex.max_output.min(proto::DEFAULT_EXEC_OUTPUT_MAX)
        } as usize;
        self.execs.push(ExecRun {
            client,
            runtime_pid: child.id() as libc::pid_t,
            pid_file,
            out: out_r,
            err: Some(err_r),
            stdout: Vec::new(),
            stderr: Vec::new(),
            max,
            truncated: false,
            deadline: (ex.timeout_ms > 0 && !ex.stream)
                .then(|| Instant::now() + Duration::from_millis(ex.timeout_ms)),
            timed_out: false,
            exit: None,
            stream: ex.stream,
            tty: ex.tty,
            stdin: stdin_w,
            stdin_buf: Vec::new(),
            stdin_eof: false,
            console,
            console_conn: None,
            console_path,
            master: None,
            master_hup: false,
            pending_size: None,
            proc_pid: None,
            runtime_done: false,
            abandoned: false,
        });
        Ok(())
    }

    /// The descriptors of every exec to poll, with their tokens.
    pub(super) fn exec_poll_fds(&self, add: &mut dyn FnMut(i32, libc::c_short, Token)) {
        for (i, e) in self.execs.iter().enumerate() {
            // A streaming client that does not keep up pauses the exec's output.
            let paused = e.stream
                && self
                    .clients
                    .iter()
                    .find(|c| c.id == e.client)
                    .is_some_and(|c| c.out.len() >= CLIENT_OUT_MAX);
            let out_ev = if paused { 0 } else { libc::POLLIN };
            let in_ev = if e.stdin_buf.is_empty() {
                0
            } else {
                libc::POLLOUT
            };
            for (src, fd) in [(Source::Out, &e.out), (Source::Err, &e.err)] {
                if let (Some(fd), true) = (fd, out_ev != 0) {
                    add(fd.as_raw_fd(), out_ev, Token::Exec(i, src));
                }
            }
            if let Some(m) = &e.master {
                let ev = if e.master_hup { 0 } else { out_ev } | in_ev;
                if ev != 0 {
                    add(m.as_raw_fd(), ev, Token::Exec(i, Source::Master));
                }
            }
            if let (Some(fd), true) = (&e.stdin, in_ev != 0) {
                add(fd.as_raw_fd(), in_ev, Token::ExecStdin(i));
            }
            if let Some(fd) = e.console_conn.as_ref().or(e.console.as_ref()) {
                add(fd.as_raw_fd(), libc::POLLIN, Token::ExecConsole(i));
            }
        }
    }

    /// Reads what an exec printed: kept (bounded) or sent to its client.
    pub(super) fn read_exec(&mut self, i: usize, src: Source) {
        let Monitor {
            execs,
            clients,
            buf,
            ..
        } = self;
        let Some(e) = execs.get_mut(i) else {
            return;
        };
        for _ in 0..16 {
            let Some(fd) = e.fd(src) else { return };
            match sys::read_nb(fd, buf) {
                Ok(None) => return,
                Ok(Some(0)) | Err(_) => {
                    e.close(src);
                    return;
                }
                Ok(Some(n)) if e.stream => {
                    let Some(c) = clients.iter_mut().find(|c| c.id == e.client) else {
                        continue;
                    };
                    let stream = if src == Source::Err {
                        proto::Stream::Stderr
                    } else {
                        proto::Stream::Stdout
                    };
                    c.out
                        .extend_from_slice(&proto::encode_frame(&proto::AttachFrame {
                            stream: stream as i32,
                            data: buf[..n].to_vec(),
                            ..Default::default()
                        }));
                    if c.out.len() >= CLIENT_OUT_MAX {
                        return;
                    }
                }
                Ok(Some(n)) => {
                    // Keep up to the bound in total; read (and drop) the rest
                    // so the command is never blocked on a full pipe.
                    let room = e.max.saturating_sub(e.stdout.len() + e.stderr.len());
                    let keep = n.min(room);
                    if keep < n {
                        e.truncated = true;
                    }
                    let dst = if src == Source::Err {
                        &mut e.stderr
                    } else {
                        &mut e.stdout
                    };
                    dst.extend_from_slice(&buf[..keep]);
                }
            }
        }
    }

    /// Writes held client input to an exec's stdin.
    pub(super) fn flush_exec_stdin(&mut self, i: usize) {
        let Some(e) = self.execs.get_mut(i) else {
            return;
        };
        let fd = match (&e.stdin, &e.master) {
            (Some(fd), _) => fd,
            (None, Some(m)) if !e.master_hup => m,
            _ => {
                e.stdin_buf.clear();
                return;
            }
        };
        while !e.stdin_buf.is_empty() {
            match sys::write_nb(fd, &e.stdin_buf) {
                Ok(0) => return,
                Ok(n) => {
                    e.stdin_buf.drain(..n);
                }
                Err(_) => {
                    e.stdin_buf.clear();
                    e.stdin = None;
                    return;
                }
            }
        }
        if e.stdin_eof {
            e.stdin = None;
        }
    }

    /// Accepts the runtime's console connection and takes the pty master.
    pub(super) fn exec_console(&mut self, i: usize) {
        let Some(e) = self.execs.get_mut(i) else {
            return;
        };
        if e.console_conn.is_none() {
            if let Some(l) = &e.console {
                if let Ok(Some(c)) = sys::accept(l) {
                    e.console_conn = Some(c);
                }
            }
        }
        let Some(conn) = &e.console_conn else { return };
        match sys::recv_fd(conn) {
            Ok(None) => {}
            Ok(Some(m)) => {
                let _ = sys::set_nonblocking(&m);
                if let Some((w, h)) = e.pending_size.take() {
                    let _ = sys::set_winsize(&m, w, h);
                }
                e.master = Some(m);
                e.console = None;
                e.console_conn = None;
                if let Some(p) = e.console_path.take() {
                    let _ = std::fs::remove_file(p);
                }
            }
            Err(_) => e.console_conn = None,
        }
    }

    /// A frame from a streaming exec's client: stdin, close, resize.
    pub(super) fn exec_input(&mut self, client: u64, frame: proto::AttachFrame) {
        let Some(i) = self.execs.iter().position(|e| e.client == client) else {
            return;
        };
        let e = &mut self.execs[i];
        if frame.width > 0 && frame.height > 0 {
            let w = u16::try_from(frame.width).unwrap_or(u16::MAX);
            let h = u16::try_from(frame.height).unwrap_or(u16::MAX);
            match &e.master {
                Some(m) => {
                    let _ = sys::set_winsize(m, w, h);
                }
                None => e.pending_size = Some((w, h)),
            }
        }
        if !frame.data.is_empty() && !e.stdin_eof {
            e.stdin_buf.extend_from_slice(&frame.data);
        }
        if frame.close_stdin && !e.stdin_eof {
            e.stdin_eof = true;
            if e.tty {
                // A terminal has no end of input of its own: send EOT.
                e.stdin_buf.push(4);
            }
        }
        self.flush_exec_stdin(i);
    }

    /// Whether a streaming exec's client may send more input now.
    pub(super) fn exec_accepts_input(&self, client: u64) -> bool {
        self.execs
            .iter()
            .find(|e| e.client == client)
            .is_none_or(|e| e.stdin_buf.len() < EXEC_STDIN_MAX)
    }

    /// The client of an exec went away: end the exec.
    pub(super) fn exec_client_gone(&mut self, client: u64) {
        if let Some(e) = self.execs.iter_mut().find(|e| e.client == client) {
            if !e.abandoned && e.exit.is_none() {
                e.kill();
            }
            e.abandoned = true;
        }
    }

    /// A reaped child that may be an exec's runtime or process; true if it was.
    pub(super) fn exec_reaped(&mut self, r: Reaped) -> bool {
        for e in &mut self.execs {
            if e.runtime_pid == r.pid && !e.runtime_done {
                e.runtime_done = true;
                if !e.tty || r.code != 0 {
                    e.exit = Some(r.code);
                } else {
                    // The runtime started the process and left: wait for it.
                    e.proc_pid = read_pid(&e.pid_file);
                    if e.proc_pid.is_none() {
                        e.exit = Some(255);
                    }
                    if let Some(code) = e
                        .proc_pid
                        .and_then(|p| self.orphans.iter().find(|o| o.pid == p).map(|o| o.code))
                    {
                        e.exit = Some(code);
                    }
                }
                return true;
            }
            if e.proc_pid == Some(r.pid) && e.exit.is_none() {
                e.exit = Some(r.code);
                return true;
            }
        }
        false
    }

    pub(super) fn check_exec_deadlines(&mut self) {
        let now = Instant::now();
        for e in &mut self.execs {
            if e.timed_out || e.exit.is_some() || e.deadline.is_none_or(|d| now < d) {
                continue;
            }
            e.timed_out = true;
            e.kill();
        }
    }

    /// Replies for every exec that has ended.
    pub(super) fn finish_execs(&mut self) {
        let before = self.execs.len();
        self.finish_ended_execs();
        if self.execs.len() < before {
            sys::trim_heap();
        }
    }

    fn finish_ended_execs(&mut self) {
        let mut i = 0;
        while i < self.execs.len() {
            if self.execs[i].exit.is_none() {
                i += 1;
                continue;
            }
            if self.execs[i].tty && self.execs[i].master.is_none() && !self.execs[i].runtime_done {
                i += 1;
                continue;
            }
            // Take what is left in the pipes, without waiting for stray
            // holders of the write ends.
            for src in [Source::Out, Source::Err, Source::Master] {
                self.read_exec(i, src);
            }
            let e = self.execs.swap_remove(i);
            if e.timed_out {
                // The pid file may have been written only after the deadline.
                e.kill();
            }
            let _ = std::fs::remove_file(&e.pid_file);
            if let Some(p) = &e.console_path {
                let _ = std::fs::remove_file(p);
            }
            let exit_code = e.exit.unwrap_or(-1);
            let Some(idx) = self
                .clients
                .iter()
                .position(|c| c.id == e.client && !c.dead)
            else {
                continue;
            };
            if e.abandoned {
                continue;
            }
            if e.stream {
                let c = &mut self.clients[idx];
                c.out
                    .extend_from_slice(&proto::encode_frame(&proto::AttachFrame {
                        exited: true,
                        exit_code,
                        ..Default::default()
                    }));
                c.state = ClientState::Closing;
                let id = c.id;
                self.client_event(id, libc::POLLOUT);
            } else {
                let result = proto::ExecResult {
                    stdout: e.stdout,
                    stderr: e.stderr,
                    exit_code,
                    timed_out: e.timed_out,
                    truncated: e.truncated,
                };
                self.reply(
                    idx,
                    Response {
                        kind: Some(response::Kind::Exec(result)),
                    },
                );
            }
        }
    }

    /// The container exited: end every exec.
    pub(super) fn kill_execs(&mut self) {
        for e in &self.execs {
            e.kill();
            if let Some(p) = &e.console_path {
                let _ = std::fs::remove_file(p);
            }
        }
    }
}
