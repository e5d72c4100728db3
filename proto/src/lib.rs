//! The protocol between the crius daemon and its per-container monitor
//! (crius-conmon), as described in `proto/monitor.proto`.
//!
//! The message types are written out by hand with prost's derive macros
//! rather than generated at build time, so neither side needs `protoc` to
//! build and the monitor keeps its dependency list short. Field tags must
//! match `monitor.proto`; the round-trip tests below pin the wire format.

use prost::Message;

/// The socket the monitor listens on, relative to its directory.
pub const SOCKET_NAME: &str = "monitor.sock";
/// The exit file the monitor writes in its directory when the container exits.
pub const EXIT_FILE_NAME: &str = "exit";
/// The monitor's own pid, written in its directory once it is detached.
pub const PID_FILE_NAME: &str = "monitor.pid";
/// The container's pid file that `RUNTIME create --pid-file` writes.
pub const CONTAINER_PID_FILE_NAME: &str = "container.pid";
/// Where the monitor and the runtime write their own errors.
pub const MONITOR_LOG_NAME: &str = "monitor.log";
/// The runtime's JSON log (`RUNTIME --log ... --log-format json`).
pub const RUNTIME_LOG_NAME: &str = "runtime.log";
/// Largest frame either side accepts: a full exec result (16 MiB of output) plus room.
pub const MAX_FRAME: usize = 17 * 1024 * 1024;
/// Default bound on stdout + stderr kept from one exec.
pub const DEFAULT_EXEC_OUTPUT_MAX: u64 = 16 * 1024 * 1024;

/// One request from the daemon; the first message on every connection.
#[derive(Clone, PartialEq, Message)]
pub struct Request {
    /// What is asked.
    #[prost(oneof = "request::Kind", tags = "1, 2, 3, 4, 5, 6")]
    pub kind: Option<request::Kind>,
}

/// The variants of [`Request`].
pub mod request {
    /// What a [`super::Request`] asks for.
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Kind {
        /// Reply when the container exits.
        #[prost(message, tag = "1")]
        Wait(super::Wait),
        /// Run a command in the container.
        #[prost(message, tag = "2")]
        Exec(super::Exec),
        /// Reopen the container log.
        #[prost(message, tag = "3")]
        ReopenLog(super::ReopenLog),
        /// Resize the container's terminal.
        #[prost(message, tag = "4")]
        Resize(super::Resize),
        /// Stream the container's stdio over this connection.
        #[prost(message, tag = "5")]
        Attach(super::Attach),
        /// Ask for the container's pid and whether it runs.
        #[prost(message, tag = "6")]
        Status(super::Status),
    }
}

/// Reply when the container exits, or at once if it already has.
#[derive(Clone, PartialEq, Message)]
pub struct Wait {}

/// Run a command in the container through `RUNTIME exec`.
#[derive(Clone, PartialEq, Message)]
pub struct Exec {
    /// The command and its arguments.
    #[prost(string, repeated, tag = "1")]
    pub cmd: Vec<String>,
    /// Kill the command after this many milliseconds; 0: no timeout.
    #[prost(uint64, tag = "2")]
    pub timeout_ms: u64,
    /// Run the command on a terminal (only with `stream`).
    #[prost(bool, tag = "3")]
    pub tty: bool,
    /// Bound on stdout + stderr kept; 0: [`DEFAULT_EXEC_OUTPUT_MAX`].
    #[prost(uint64, tag = "4")]
    pub max_output: u64,
    /// Stream stdio as [`AttachFrame`]s instead of collecting it.
    #[prost(bool, tag = "5")]
    pub stream: bool,
    /// With `stream`: the command reads stdin from the client.
    #[prost(bool, tag = "6")]
    pub stdin: bool,
}

/// Close and reopen the container log at its path (log rotation).
#[derive(Clone, PartialEq, Message)]
pub struct ReopenLog {}

/// Set the terminal size of a tty container.
#[derive(Clone, PartialEq, Message)]
pub struct Resize {
    /// Columns.
    #[prost(uint32, tag = "1")]
    pub width: u32,
    /// Rows.
    #[prost(uint32, tag = "2")]
    pub height: u32,
}

/// Turn the connection into a stream of [`AttachFrame`]s.
#[derive(Clone, PartialEq, Message)]
pub struct Attach {
    /// The client will send stdin.
    #[prost(bool, tag = "1")]
    pub stdin: bool,
    /// Send the container's stdout.
    #[prost(bool, tag = "2")]
    pub stdout: bool,
    /// Send the container's stderr.
    #[prost(bool, tag = "3")]
    pub stderr: bool,
}

/// Ask whether the container runs and its pid.
#[derive(Clone, PartialEq, Message)]
pub struct Status {}

/// The monitor's answer to a [`Request`].
#[derive(Clone, PartialEq, Message)]
pub struct Response {
    /// The answer.
    #[prost(oneof = "response::Kind", tags = "1, 2, 3, 4, 5")]
    pub kind: Option<response::Kind>,
}

/// The variants of [`Response`].
pub mod response {
    /// What a [`super::Response`] carries.
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Kind {
        /// The container exited (reply to Wait).
        #[prost(message, tag = "1")]
        Exit(super::ExitStatus),
        /// An exec finished (reply to Exec).
        #[prost(message, tag = "2")]
        Exec(super::ExecResult),
        /// Done (reply to ReopenLog, Resize, Attach).
        #[prost(message, tag = "3")]
        Ok(super::Ok),
        /// The request failed.
        #[prost(message, tag = "4")]
        Error(super::Error),
        /// Reply to Status.
        #[prost(message, tag = "5")]
        Status(super::StatusReply),
    }
}

/// How the container ended.
#[derive(Clone, Copy, PartialEq, Eq, Message)]
pub struct ExitStatus {
    /// The exit code; 128 + signal when the container was killed by a signal.
    #[prost(int32, tag = "1")]
    pub exit_code: i32,
    /// Nanoseconds since the Unix epoch.
    #[prost(int64, tag = "2")]
    pub exited_at_ns: i64,
    /// The kernel's OOM killer killed a process of the container.
    #[prost(bool, tag = "3")]
    pub oom_killed: bool,
}

/// The outcome of an exec.
#[derive(Clone, PartialEq, Message)]
pub struct ExecResult {
    /// Captured stdout, cut at the bound.
    #[prost(bytes = "vec", tag = "1")]
    pub stdout: Vec<u8>,
    /// Captured stderr, cut at the bound.
    #[prost(bytes = "vec", tag = "2")]
    pub stderr: Vec<u8>,
    /// The command's exit code (128 + signal when killed).
    #[prost(int32, tag = "3")]
    pub exit_code: i32,
    /// The command ran past its timeout and was killed.
    #[prost(bool, tag = "4")]
    pub timed_out: bool,
    /// Output beyond the bound was dropped.
    #[prost(bool, tag = "5")]
    pub truncated: bool,
}

/// Success with nothing to say.
#[derive(Clone, Copy, PartialEq, Eq, Message)]
pub struct Ok {}

/// A failed request, with the reason.
#[derive(Clone, PartialEq, Message)]
pub struct Error {
    /// What went wrong, lowercase.
    #[prost(string, tag = "1")]
    pub message: String,
}

/// Reply to [`Status`].
#[derive(Clone, Copy, PartialEq, Eq, Message)]
pub struct StatusReply {
    /// The container's init pid.
    #[prost(uint32, tag = "1")]
    pub container_pid: u32,
    /// Whether the container still runs.
    #[prost(bool, tag = "2")]
    pub running: bool,
}

/// Which stdio stream an [`AttachFrame`] belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum Stream {
    /// To the container.
    Stdin = 0,
    /// From the container.
    Stdout = 1,
    /// From the container.
    Stderr = 2,
}

/// A piece of an attach session's stdio.
#[derive(Clone, PartialEq, Message)]
pub struct AttachFrame {
    /// The stream the data belongs to.
    #[prost(enumeration = "Stream", tag = "1")]
    pub stream: i32,
    /// The bytes.
    #[prost(bytes = "vec", tag = "2")]
    pub data: Vec<u8>,
    /// From the client: close the container's (or exec's) stdin.
    #[prost(bool, tag = "3")]
    pub close_stdin: bool,
    /// From the client of a terminal exec: new width, when non-zero.
    #[prost(uint32, tag = "4")]
    pub width: u32,
    /// From the client of a terminal exec: new height, when non-zero.
    #[prost(uint32, tag = "5")]
    pub height: u32,
    /// From the monitor: the streaming exec ended; last frame.
    #[prost(bool, tag = "6")]
    pub exited: bool,
    /// With `exited`: the exec's exit code.
    #[prost(int32, tag = "7")]
    pub exit_code: i32,
}

/// Encodes a message with its varint length prefix.
pub fn encode_frame<M: Message>(msg: &M) -> Vec<u8> {
    msg.encode_length_delimited_to_vec()
}

/// A frame that could not be decoded.
#[derive(Debug, PartialEq, Eq)]
pub enum FrameError {
    /// The length prefix exceeds [`MAX_FRAME`].
    TooLarge(usize),
    /// The prefix or the message is not valid protobuf.
    Invalid(String),
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::TooLarge(n) => write!(f, "frame of {n} bytes exceeds {MAX_FRAME}"),
            FrameError::Invalid(e) => write!(f, "invalid frame: {e}"),
        }
    }
}

impl std::error::Error for FrameError {}

/// Reads a varint length prefix from `buf`: `Ok(None)` when more bytes are
/// needed, else the length and the size of the prefix.
pub fn decode_length(buf: &[u8]) -> Result<Option<(usize, usize)>, FrameError> {
    let mut value: u64 = 0;
    for (i, b) in buf.iter().enumerate().take(10) {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            let len = usize::try_from(value).map_err(|_| FrameError::TooLarge(usize::MAX))?;
            if len > MAX_FRAME {
                return Err(FrameError::TooLarge(len));
            }
            return Ok(Some((len, i + 1)));
        }
    }
    if buf.len() >= 10 {
        return Err(FrameError::Invalid(
            "length prefix longer than 10 bytes".into(),
        ));
    }
    Ok(None)
}

/// Decodes one frame from the front of `buf`: `Ok(None)` when the frame is not
/// complete yet, else the message and the number of bytes it used.
pub fn decode_frame<M: Message + Default>(buf: &[u8]) -> Result<Option<(M, usize)>, FrameError> {
    let Some((len, prefix)) = decode_length(buf)? else {
        return Ok(None);
    };
    let end = prefix + len;
    if buf.len() < end {
        return Ok(None);
    }
    let msg = M::decode(&buf[prefix..end]).map_err(|e| FrameError::Invalid(e.to_string()))?;
    Ok(Some((msg, end)))
}

/// The exit file's text for `status`.
pub fn format_exit_file(status: &ExitStatus) -> String {
    format!(
        "exit_code={}\nexited_at={}\noom_killed={}\n",
        status.exit_code, status.exited_at_ns, status.oom_killed
    )
}

/// Parses the exit file's text; `None` when a field is missing or malformed.
pub fn parse_exit_file(text: &str) -> Option<ExitStatus> {
    let (mut code, mut at, mut oom) = (None, None, None);
    for line in text.lines() {
        let (key, value) = line.split_once('=')?;
        match key {
            "exit_code" => code = value.trim().parse().ok(),
            "exited_at" => at = value.trim().parse().ok(),
            "oom_killed" => oom = value.trim().parse().ok(),
            _ => {}
        }
    }
    Some(ExitStatus {
        exit_code: code?,
        exited_at_ns: at?,
        oom_killed: oom?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_round_trips_through_a_frame() {
        let req = Request {
            kind: Some(request::Kind::Exec(Exec {
                cmd: vec!["sh".into(), "-c".into(), "true".into()],
                timeout_ms: 1000,
                tty: false,
                max_output: 0,
                stream: false,
                stdin: false,
            })),
        };
        let mut buf = encode_frame(&req);
        buf.extend_from_slice(&[0x01]);
        let (back, used) = decode_frame::<Request>(&buf).unwrap().unwrap();
        assert_eq!(back, req);
        assert_eq!(used, buf.len() - 1);
    }

    #[test]
    fn partial_frame_needs_more_bytes() {
        let buf = encode_frame(&Response {
            kind: Some(response::Kind::Error(Error {
                message: "no such container".into(),
            })),
        });
        for cut in 0..buf.len() {
            assert_eq!(decode_frame::<Response>(&buf[..cut]).unwrap(), None);
        }
    }

    #[test]
    fn oversized_length_is_refused() {
        let mut buf = Vec::new();
        prost::encoding::encode_varint((MAX_FRAME + 1) as u64, &mut buf);
        assert_eq!(
            decode_frame::<Request>(&buf),
            Err(FrameError::TooLarge(MAX_FRAME + 1))
        );
    }

    #[test]
    fn wire_tags_match_the_proto_file() {
        // Resize{width=80 (tag 1), height=24 (tag 2)} inside Request tag 4.
        let req = Request {
            kind: Some(request::Kind::Resize(Resize {
                width: 80,
                height: 24,
            })),
        };
        assert_eq!(req.encode_to_vec(), vec![0x22, 4, 0x08, 80, 0x10, 24]);
        let exit = ExitStatus {
            exit_code: 3,
            exited_at_ns: 5,
            oom_killed: true,
        };
        assert_eq!(exit.encode_to_vec(), vec![0x08, 3, 0x10, 5, 0x18, 1]);
    }

    #[test]
    fn exit_file_round_trips() {
        let s = ExitStatus {
            exit_code: 137,
            exited_at_ns: 1_700_000_000_123_456_789,
            oom_killed: true,
        };
        assert_eq!(parse_exit_file(&format_exit_file(&s)), Some(s));
        assert_eq!(parse_exit_file("exit_code=1\n"), None);
        assert_eq!(parse_exit_file("garbage"), None);
    }
}
