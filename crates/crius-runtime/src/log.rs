//! `--log` and `--log-format`: runc writes its errors (and warnings) to the
//! log file as JSON lines (`{"level":"error","msg":"...","time":"..."}`)
//! or logfmt text; crius-conmon reads the last error from there.

use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::OnceLock;

struct Sink {
    fd: OwnedFd,
    json: bool,
}

static SINK: OnceLock<Sink> = OnceLock::new();

/// Opens the log file (appending, close-on-exec: the container's program
/// never sees it, but forked runtime children keep writing to it).
pub fn init(path: Option<&std::path::Path>, json: bool) -> std::io::Result<()> {
    if let Some(p) = path {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)?;
        let _ = SINK.set(Sink {
            fd: OwnedFd::from(f),
            json,
        });
    }
    Ok(())
}

fn write(level: &str, msg: &str) {
    let Some(s) = SINK.get() else { return };
    let time = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    let line = if s.json {
        serde_json::json!({"level": level, "msg": msg, "time": time}).to_string()
    } else {
        format!("time={time:?} level={level} msg={msg:?}")
    };
    // SAFETY: the fd stays open in SINK for the life of the process; ManuallyDrop keeps it there.
    let mut f =
        std::mem::ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(s.fd.as_raw_fd()) });
    let _ = writeln!(f, "{line}");
}

/// An error: to the log file (stderr is the caller's business).
pub fn error(msg: &str) {
    write("error", msg);
}

/// A warning: to the log file, or stderr when there is none.
pub fn warn(msg: &str) {
    if SINK.get().is_some() {
        write("warning", msg);
    } else {
        eprintln!("crius-runtime: warning: {msg}");
    }
}
