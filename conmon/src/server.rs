//! The monitor's poll loop: container output to the log, client requests on
//! `monitor.sock`, execs, and the container's exit.

use std::collections::VecDeque;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use crius_monitor_proto::{self as proto, request, response, Request, Response};

mod exec;

use exec::{ExecRun, Source};

use crate::args::Args;
use crate::log::{self, LogWriter, Stream, CHUNK};
use crate::oom::OomCounter;
use crate::sys::{self, Reaped};

/// Output still buffered to a slow attach client beyond which frames are dropped.
const CLIENT_OUT_MAX: usize = 1024 * 1024;
/// Largest request a client may send.
const REQUEST_MAX: usize = 1024 * 1024;
/// Stdin bytes held for the container before attach clients are paused.
const STDIN_BUF_MAX: usize = 256 * 1024;
/// After the container exits, how long to wait for its stdio to drain.
const DRAIN_GRACE: Duration = Duration::from_secs(2);
/// After the exit is recorded, how long to keep sending replies to clients.
const FLUSH_GRACE: Duration = Duration::from_secs(2);

/// The container's stdio as the monitor holds it.
pub enum Stdio {
    /// Pipes: read ends of stdout and stderr, write end of stdin.
    Pipes {
        out: Option<OwnedFd>,
        err: Option<OwnedFd>,
        stdin: Option<OwnedFd>,
    },
    /// A pty master: output and, when asked for, input.
    Terminal {
        master: OwnedFd,
        stdin_open: bool,
        /// Every slave side is closed: nothing more to read.
        hup: bool,
    },
}

enum ClientState {
    /// Reading the request.
    Request,
    /// Waiting for the container's exit.
    Waiting,
    /// Waiting for an exec to finish.
    Exec,
    /// Streaming an exec's stdio.
    ExecStream,
    /// Streaming stdio.
    Attached {
        stdin: bool,
        stdout: bool,
        stderr: bool,
    },
    /// Sending the last reply, then closing.
    Closing,
}

struct Client {
    id: u64,
    fd: OwnedFd,
    inbuf: Vec<u8>,
    out: Vec<u8>,
    state: ClientState,
    dead: bool,
}

/// The running monitor.
pub struct Monitor {
    args: Args,
    sigfd: OwnedFd,
    listener: OwnedFd,
    stdio: Stdio,
    stdin_buf: VecDeque<u8>,
    /// Input has ended: the stdin pipe closes once `stdin_buf` is written out.
    stdin_eof: bool,
    log: LogWriter,
    container_pid: libc::pid_t,
    oom: Option<OomCounter>,
    exit: Option<proto::ExitStatus>,
    drain_deadline: Option<Instant>,
    reaped: Vec<Reaped>,
    /// Recently reaped children nobody claimed (a terminal exec's process can
    /// exit before its pid is known).
    orphans: VecDeque<Reaped>,
    clients: Vec<Client>,
    execs: Vec<ExecRun>,
    next_id: u64,
    buf: Vec<u8>,
}

#[derive(Clone, Copy)]
enum Token {
    Signal,
    Listener,
    Out,
    Err,
    Master,
    Stdin,
    Client(u64),
    Exec(usize, Source),
    ExecStdin(usize),
    ExecConsole(usize),
}

impl Monitor {
    /// A monitor for a created container.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        args: Args,
        sigfd: OwnedFd,
        listener: OwnedFd,
        stdio: Stdio,
        log: LogWriter,
        container_pid: libc::pid_t,
        oom: Option<OomCounter>,
        reaped: Vec<Reaped>,
    ) -> Self {
        Monitor {
            args,
            sigfd,
            listener,
            stdio,
            stdin_buf: VecDeque::new(),
            stdin_eof: false,
            log,
            container_pid,
            oom,
            exit: None,
            drain_deadline: None,
            reaped,
            orphans: VecDeque::new(),
            clients: Vec::new(),
            execs: Vec::new(),
            next_id: 1,
            buf: vec![0; CHUNK],
        }
    }

    /// Runs until the container has exited and its exit is recorded.
    pub fn run(mut self) -> ExitCode {
        // A container that died between create and now was reaped early.
        let early = std::mem::take(&mut self.reaped);
        for r in early {
            self.on_reaped(r);
        }
        loop {
            if self.exit.is_some() && self.stdio_drained() && self.execs_settled() {
                break;
            }
            if let Err(e) = self.turn() {
                eprintln!("crius-conmon {}: {e}", self.args.id);
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        self.finish();
        ExitCode::SUCCESS
    }

    /// Execs still running when the container exits end right after it (the kernel kills
    /// what is left in its PID namespace), so their clients get their results rather than
    /// "container has exited"; the drain grace bounds the wait.
    fn execs_settled(&self) -> bool {
        self.execs.is_empty() || self.drain_deadline.is_some_and(|d| Instant::now() >= d)
    }

    fn stdio_drained(&self) -> bool {
        let open = match &self.stdio {
            Stdio::Pipes { out, err, .. } => out.is_some() || err.is_some(),
            Stdio::Terminal { hup, .. } => !hup,
        };
        !open || self.drain_deadline.is_some_and(|d| Instant::now() >= d)
    }

    /// One round of poll and the work it reports.
    fn turn(&mut self) -> Result<(), String> {
        let mut fds: Vec<libc::pollfd> = Vec::with_capacity(8 + self.clients.len());
        let mut tokens: Vec<Token> = Vec::with_capacity(fds.capacity());
        let mut add = |fd: RawFd, events: libc::c_short, t: Token| {
            fds.push(libc::pollfd {
                fd,
                events,
                revents: 0,
            });
            tokens.push(t);
        };
        add(self.sigfd.as_raw_fd(), libc::POLLIN, Token::Signal);
        if self.exit.is_none() {
            add(self.listener.as_raw_fd(), libc::POLLIN, Token::Listener);
        }
        let stdin_events = if self.stdin_buf.is_empty() {
            0
        } else {
            libc::POLLOUT
        };
        match &self.stdio {
            Stdio::Pipes { out, err, stdin } => {
                if let Some(fd) = out {
                    add(fd.as_raw_fd(), libc::POLLIN, Token::Out);
                }
                if let Some(fd) = err {
                    add(fd.as_raw_fd(), libc::POLLIN, Token::Err);
                }
                if let (Some(fd), true) = (stdin, stdin_events != 0) {
                    add(fd.as_raw_fd(), stdin_events, Token::Stdin);
                }
            }
            Stdio::Terminal { master, hup, .. } => {
                let ev = if *hup { 0 } else { libc::POLLIN } | stdin_events;
                if ev != 0 {
                    add(master.as_raw_fd(), ev, Token::Master);
                }
            }
        }
        let stdin_full = self.stdin_buf.len() >= STDIN_BUF_MAX;
        for c in &self.clients {
            let mut ev = 0;
            let reading = match c.state {
                ClientState::Request => true,
                ClientState::Attached { .. } => !stdin_full,
                // Notice a client that goes away.
                ClientState::Waiting | ClientState::Exec => true,
                ClientState::ExecStream => self.exec_accepts_input(c.id),
                ClientState::Closing => false,
            };
            if reading {
                ev |= libc::POLLIN;
            }
            if !c.out.is_empty() {
                ev |= libc::POLLOUT;
            }
            add(c.fd.as_raw_fd(), ev, Token::Client(c.id));
        }
        self.exec_poll_fds(&mut add);

        let timeout = self.poll_timeout();
        sys::poll(&mut fds, timeout).map_err(|e| format!("poll: {e}"))?;

        for (pfd, token) in fds.iter().zip(tokens.iter()) {
            if pfd.revents == 0 {
                continue;
            }
            let readable = pfd.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0;
            match *token {
                Token::Signal => {
                    let _ = sys::read_signals(&self.sigfd);
                }
                Token::Listener => self.accept_clients(),
                Token::Out if readable => self.read_container(Stream::Stdout),
                Token::Err if readable => self.read_container(Stream::Stderr),
                Token::Master => {
                    if pfd.revents & libc::POLLOUT != 0 {
                        self.flush_stdin();
                    }
                    if readable {
                        self.read_container(Stream::Stdout);
                    }
                }
                Token::Stdin => self.flush_stdin(),
                Token::Client(id) => self.client_event(id, pfd.revents),
                Token::Exec(i, src) => {
                    if pfd.revents & libc::POLLOUT != 0 {
                        self.flush_exec_stdin(i);
                    }
                    if readable {
                        self.read_exec(i, src);
                    }
                }
                Token::ExecStdin(i) => self.flush_exec_stdin(i),
                Token::ExecConsole(i) => self.exec_console(i),
                _ => {}
            }
        }
        // Reap after reading, so output an exiting process left in its pipes
        // is read first.
        while let Some(r) = sys::reap_one() {
            self.on_reaped(r);
        }
        self.check_exec_deadlines();
        self.finish_execs();
        self.clients.retain(|c| !c.dead);
        Ok(())
    }

    fn poll_timeout(&self) -> i32 {
        let now = Instant::now();
        let mut next: Option<Instant> = self.drain_deadline;
        for e in &self.execs {
            if let (Some(d), false) = (e.deadline, e.timed_out) {
                next = Some(next.map_or(d, |n| n.min(d)));
            }
        }
        match next {
            None => -1,
            Some(d) => d
                .saturating_duration_since(now)
                .as_millis()
                .saturating_add(1)
                .min(60_000) as i32,
        }
    }

    fn read_container(&mut self, stream: Stream) {
        let fd = match (&self.stdio, stream) {
            (Stdio::Pipes { out: Some(fd), .. }, Stream::Stdout) => fd,
            (Stdio::Pipes { err: Some(fd), .. }, Stream::Stderr) => fd,
            (
                Stdio::Terminal {
                    master, hup: false, ..
                },
                _,
            ) => master,
            _ => return,
        };
        // Read a bounded amount per turn so one chatty stream cannot starve the rest.
        for _ in 0..4 {
            match sys::read_nb(fd, &mut self.buf) {
                Ok(None) => return,
                Ok(Some(0)) | Err(_) => {
                    self.close_stream(stream);
                    return;
                }
                Ok(Some(n)) => {
                    let data = &self.buf[..n];
                    if let Err(e) = self.log.write(stream, data) {
                        eprintln!("crius-conmon {}: write log: {e}", self.args.id);
                    }
                    let frame = proto::encode_frame(&proto::AttachFrame {
                        stream: match stream {
                            Stream::Stdout => proto::Stream::Stdout as i32,
                            Stream::Stderr => proto::Stream::Stderr as i32,
                        },
                        data: data.to_vec(),
                        ..Default::default()
                    });
                    for c in &mut self.clients {
                        if let ClientState::Attached { stdout, stderr, .. } = c.state {
                            let wanted = match stream {
                                Stream::Stdout => stdout,
                                Stream::Stderr => stderr,
                            };
                            if wanted && c.out.len() < CLIENT_OUT_MAX {
                                c.out.extend_from_slice(&frame);
                            }
                        }
                    }
                    if n < self.buf.len() {
                        return;
                    }
                }
            }
        }
    }

    fn close_stream(&mut self, stream: Stream) {
        match &mut self.stdio {
            Stdio::Pipes { out, err, .. } => match stream {
                Stream::Stdout => *out = None,
                Stream::Stderr => *err = None,
            },
            Stdio::Terminal { hup, .. } => *hup = true,
        }
    }

    fn flush_stdin(&mut self) {
        let fd = match &self.stdio {
            Stdio::Pipes {
                stdin: Some(fd), ..
            } => fd,
            Stdio::Terminal { master, .. } => master,
            _ => {
                self.stdin_buf.clear();
                return;
            }
        };
        while !self.stdin_buf.is_empty() {
            let (front, _) = self.stdin_buf.as_slices();
            match sys::write_nb(fd, front) {
                Ok(0) => return,
                Ok(n) => {
                    self.stdin_buf.drain(..n);
                }
                Err(_) => {
                    // The container closed its stdin.
                    self.stdin_buf.clear();
                    self.close_stdin();
                    return;
                }
            }
        }
        if self.stdin_eof {
            self.stdin_eof = false;
            if let Stdio::Pipes { stdin, .. } = &mut self.stdio {
                *stdin = None;
            }
        }
    }

    /// Ends the container's input after what is already held for it.
    fn close_stdin(&mut self) {
        match &mut self.stdio {
            Stdio::Pipes { stdin, .. } => {
                if self.stdin_buf.is_empty() {
                    *stdin = None;
                } else {
                    // flush_stdin closes the pipe once the held bytes are written.
                    self.stdin_eof = true;
                }
            }
            Stdio::Terminal { stdin_open, .. } => {
                if *stdin_open {
                    *stdin_open = false;
                    // A terminal cannot be closed for input alone: send EOT,
                    // which ends a read in canonical mode.
                    self.stdin_buf.push_back(4);
                    self.flush_stdin();
                }
            }
        }
    }

    fn accept_clients(&mut self) {
        loop {
            match sys::accept(&self.listener) {
                Ok(Some(fd)) => {
                    let id = self.next_id;
                    self.next_id += 1;
                    self.clients.push(Client {
                        id,
                        fd,
                        inbuf: Vec::new(),
                        out: Vec::new(),
                        state: ClientState::Request,
                        dead: false,
                    });
                }
                Ok(None) => return,
                Err(e) => {
                    eprintln!("crius-conmon {}: accept: {e}", self.args.id);
                    return;
                }
            }
        }
    }

    fn client_event(&mut self, id: u64, revents: libc::c_short) {
        let Some(idx) = self.clients.iter().position(|c| c.id == id) else {
            return;
        };
        if revents & libc::POLLOUT != 0 {
            let c = &mut self.clients[idx];
            while !c.out.is_empty() {
                match sys::write_nb(&c.fd, &c.out) {
                    Ok(0) => break,
                    Ok(n) => {
                        c.out.drain(..n);
                    }
                    Err(_) => {
                        c.dead = true;
                        break;
                    }
                }
            }
            if c.out.is_empty() && matches!(c.state, ClientState::Closing) {
                c.dead = true;
            }
        }
        if revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0 {
            let c = &mut self.clients[idx];
            let mut eof = false;
            loop {
                match sys::read_nb(&c.fd, &mut self.buf) {
                    Ok(None) => break,
                    Ok(Some(0)) | Err(_) => {
                        eof = true;
                        break;
                    }
                    Ok(Some(n)) => {
                        c.inbuf.extend_from_slice(&self.buf[..n]);
                        if c.inbuf.len() > REQUEST_MAX || n < self.buf.len() {
                            break;
                        }
                    }
                }
            }
            self.handle_input(idx);
            if eof {
                self.client_gone(idx);
            }
        }
        let c = &self.clients[idx];
        if c.dead {
            self.client_gone(idx);
        }
    }

    fn client_gone(&mut self, idx: usize) {
        let c = &mut self.clients[idx];
        c.dead = true;
        let had_stdin = matches!(c.state, ClientState::Attached { stdin: true, .. });
        let had_exec = matches!(c.state, ClientState::Exec | ClientState::ExecStream);
        let id = c.id;
        c.state = ClientState::Closing;
        if had_exec {
            self.exec_client_gone(id);
        }
        if had_stdin && self.args.stdin_once {
            // stdin_once: the first attach session owns stdin; when it ends
            // the container sees EOF.
            self.close_stdin();
        }
    }

    fn handle_input(&mut self, idx: usize) {
        loop {
            let c = &mut self.clients[idx];
            if c.inbuf.is_empty() || c.dead {
                return;
            }
            match c.state {
                ClientState::Request => match proto::decode_frame::<Request>(&c.inbuf) {
                    Ok(None) => {
                        if c.inbuf.len() > REQUEST_MAX {
                            c.dead = true;
                        }
                        return;
                    }
                    Ok(Some((req, used))) => {
                        c.inbuf.drain(..used);
                        self.dispatch(idx, req);
                    }
                    Err(e) => {
                        let msg = format!("bad request: {e}");
                        self.reply(idx, error(msg));
                        return;
                    }
                },
                ClientState::Attached { stdin, .. } => {
                    match proto::decode_frame::<proto::AttachFrame>(&c.inbuf) {
                        Ok(None) => return,
                        Ok(Some((frame, used))) => {
                            c.inbuf.drain(..used);
                            if frame.width > 0 && frame.height > 0 {
                                // Best effort, as a terminal resize is.
                                let _ = self.resize_terminal(frame.width, frame.height);
                            }
                            if stdin && self.stdin_is_open() {
                                self.stdin_buf.extend(frame.data);
                                self.flush_stdin();
                                if frame.close_stdin {
                                    self.close_stdin();
                                }
                            }
                        }
                        Err(_) => {
                            c.dead = true;
                            return;
                        }
                    }
                }
                ClientState::ExecStream => {
                    match proto::decode_frame::<proto::AttachFrame>(&c.inbuf) {
                        Ok(None) => return,
                        Ok(Some((frame, used))) => {
                            c.inbuf.drain(..used);
                            let id = c.id;
                            self.exec_input(id, frame);
                        }
                        Err(_) => {
                            c.dead = true;
                            return;
                        }
                    }
                }
                // Nothing more is expected from the client.
                _ => {
                    c.inbuf.clear();
                    return;
                }
            }
        }
    }

    /// Sets the size of the container's terminal.
    fn resize_terminal(&self, width: u32, height: u32) -> Result<(), String> {
        match &self.stdio {
            Stdio::Terminal { master, .. } => {
                let w = u16::try_from(width).unwrap_or(u16::MAX);
                let h = u16::try_from(height).unwrap_or(u16::MAX);
                sys::set_winsize(master, w, h).map_err(|e| format!("resize terminal: {e}"))
            }
            Stdio::Pipes { .. } => Err("container has no terminal".into()),
        }
    }

    fn stdin_is_open(&self) -> bool {
        match &self.stdio {
            Stdio::Pipes { stdin, .. } => stdin.is_some() && !self.stdin_eof,
            Stdio::Terminal { stdin_open, .. } => *stdin_open,
        }
    }

    fn reply(&mut self, idx: usize, resp: Response) {
        let c = &mut self.clients[idx];
        c.out.extend_from_slice(&proto::encode_frame(&resp));
        c.state = ClientState::Closing;
        let id = c.id;
        // Try at once; poll finishes the rest.
        self.client_event(id, libc::POLLOUT);
    }

    fn dispatch(&mut self, idx: usize, req: Request) {
        match req.kind {
            Some(request::Kind::Wait(_)) => match self.exit {
                Some(st) if self.drain_deadline.is_none() => self.reply(
                    idx,
                    Response {
                        kind: Some(response::Kind::Exit(st)),
                    },
                ),
                _ => self.clients[idx].state = ClientState::Waiting,
            },
            Some(request::Kind::Exec(ex)) => {
                if self.exit.is_some() {
                    self.reply(idx, error("container has exited".into()));
                    return;
                }
                let stream = ex.stream;
                let id = self.clients[idx].id;
                match self.start_exec(id, ex) {
                    Ok(()) if stream => {
                        let c = &mut self.clients[idx];
                        c.out.extend_from_slice(&proto::encode_frame(&ok()));
                        c.state = ClientState::ExecStream;
                        self.client_event(id, libc::POLLOUT);
                    }
                    Ok(()) => self.clients[idx].state = ClientState::Exec,
                    Err(e) => self.reply(idx, error(e)),
                }
            }
            Some(request::Kind::ReopenLog(_)) => {
                let resp = match self.log.reopen() {
                    Ok(()) => ok(),
                    Err(e) => error(format!("reopen log: {e}")),
                };
                self.reply(idx, resp);
            }
            Some(request::Kind::Resize(r)) => {
                let resp = match self.resize_terminal(r.width, r.height) {
                    Ok(()) => ok(),
                    Err(e) => error(e),
                };
                self.reply(idx, resp);
            }
            Some(request::Kind::Attach(a)) => {
                let stdin = a.stdin && self.stdin_is_open();
                if a.stdin && !stdin {
                    self.reply(idx, error("container stdin is not open".into()));
                    return;
                }
                let c = &mut self.clients[idx];
                c.out.extend_from_slice(&proto::encode_frame(&ok()));
                c.state = ClientState::Attached {
                    stdin,
                    stdout: a.stdout,
                    stderr: a.stderr,
                };
                let id = c.id;
                self.client_event(id, libc::POLLOUT);
            }
            Some(request::Kind::Status(_)) => {
                let st = proto::StatusReply {
                    container_pid: self.container_pid as u32,
                    running: self.exit.is_none(),
                };
                self.reply(
                    idx,
                    Response {
                        kind: Some(response::Kind::Status(st)),
                    },
                );
            }
            None => self.reply(idx, error("empty request".into())),
        }
    }

    fn on_reaped(&mut self, r: Reaped) {
        if r.pid == self.container_pid && self.exit.is_none() {
            let oom_killed = self.oom.as_ref().is_some_and(OomCounter::killed);
            self.exit = Some(proto::ExitStatus {
                exit_code: r.code,
                exited_at_ns: log::now_ns() as i64,
                oom_killed,
            });
            self.drain_deadline = Some(Instant::now() + DRAIN_GRACE);
            return;
        }
        if self.exec_reaped(r) {
            return;
        }
        // Anything else is an orphan of the container that we adopted.
        if self.orphans.len() >= 32 {
            self.orphans.pop_front();
        }
        self.orphans.push_back(r);
    }

    /// Records the exit, tells the clients, and cleans up.
    fn finish(mut self) {
        // Whatever is still buffered in the pipes goes to the log.
        self.read_container(Stream::Stdout);
        self.read_container(Stream::Stderr);
        let Some(st) = self.exit else { return };
        if let Err(e) = write_exit_file(&st) {
            eprintln!("crius-conmon {}: write exit file: {e}", self.args.id);
        }
        let _ = std::fs::remove_file(proto::SOCKET_NAME);
        self.drain_deadline = None;
        // Requests already sent but not yet read (a wait racing the exit).
        let pending: Vec<u64> = self
            .clients
            .iter()
            .filter(|c| matches!(c.state, ClientState::Request))
            .map(|c| c.id)
            .collect();
        for id in pending {
            self.client_event(id, libc::POLLIN);
        }
        self.kill_execs();
        for idx in 0..self.clients.len() {
            let resp = match self.clients[idx].state {
                ClientState::Waiting => Response {
                    kind: Some(response::Kind::Exit(st)),
                },
                ClientState::Exec | ClientState::Request => error("container has exited".into()),
                ClientState::Attached { .. } | ClientState::ExecStream | ClientState::Closing => {
                    let c = &mut self.clients[idx];
                    c.state = ClientState::Closing;
                    if c.out.is_empty() {
                        c.dead = true;
                    }
                    continue;
                }
            };
            self.reply(idx, resp);
        }
        self.clients.retain(|c| !c.dead);
        let until = Instant::now() + FLUSH_GRACE;
        while !self.clients.is_empty() && Instant::now() < until {
            let mut fds: Vec<libc::pollfd> = self
                .clients
                .iter()
                .map(|c| libc::pollfd {
                    fd: c.fd.as_raw_fd(),
                    events: libc::POLLOUT,
                    revents: 0,
                })
                .collect();
            let _ = sys::poll(&mut fds, 100);
            let ids: Vec<u64> = self.clients.iter().map(|c| c.id).collect();
            for (id, pfd) in ids.into_iter().zip(fds) {
                if pfd.revents != 0 {
                    self.client_event(id, libc::POLLOUT);
                }
            }
            self.clients.retain(|c| !c.dead);
        }
        let _ = std::fs::remove_file(proto::PID_FILE_NAME);
    }
}

fn read_pid(path: &std::path::Path) -> Option<libc::pid_t> {
    std::fs::read_to_string(path)
        .ok()?
        .trim()
        .parse()
        .ok()
        .filter(|&p| p > 0)
}

/// The parent pid of `pid`, from /proc.
fn parent_of(pid: libc::pid_t) -> Option<libc::pid_t> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit(')')
        .next()?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn ok() -> Response {
    Response {
        kind: Some(response::Kind::Ok(proto::Ok {})),
    }
}

fn error(message: String) -> Response {
    Response {
        kind: Some(response::Kind::Error(proto::Error { message })),
    }
}

/// Writes the exit file atomically: temp file, fsync, rename, fsync the dir.
fn write_exit_file(st: &proto::ExitStatus) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = format!("{}.tmp", proto::EXIT_FILE_NAME);
    let mut f = sys::create_private(std::path::Path::new(&tmp))?;
    f.write_all(proto::format_exit_file(st).as_bytes())?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, proto::EXIT_FILE_NAME)?;
    std::fs::File::open(".")?.sync_all()
}
