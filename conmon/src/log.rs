//! The container log in the CRI format the kubelet reads:
//! `2006-01-02T15:04:05.999999999Z stdout F text`.
//!
//! Each read from the container becomes one or more records: every complete
//! line a full (`F`) record, and a trailing piece without its newline a
//! partial (`P`) record written at once (so a prompt without a newline is not
//! held back). Reads are at most [`CHUNK`] bytes, so a longer line turns into
//! several `P` records followed by its `F` end. Timestamps are UTC.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

/// The most bytes read from the container at once, so the longest record body.
pub const CHUNK: usize = 16 * 1024;

/// Which stream a record came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    /// The container's stdout (and a terminal's output).
    Stdout,
    /// The container's stderr.
    Stderr,
}

impl Stream {
    fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// Formats nanoseconds since the epoch as RFC 3339 with nine fraction digits, UTC.
pub fn format_timestamp(ns: i128) -> String {
    let secs = ns.div_euclid(1_000_000_000) as i64;
    let nanos = ns.rem_euclid(1_000_000_000) as u32;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Nanoseconds since the epoch, now.
pub fn now_ns() -> i128 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_nanos() as i128,
        Err(e) => -(e.duration().as_nanos() as i128),
    }
}

/// Appends the records for one read of `data` to `out`.
pub fn format_records(out: &mut Vec<u8>, ts: &str, stream: Stream, data: &[u8]) {
    let mut rest = data;
    while !rest.is_empty() {
        let (body, tag, used) = match rest.iter().position(|&b| b == b'\n') {
            Some(i) => (&rest[..i], 'F', i + 1),
            None => (rest, 'P', rest.len()),
        };
        out.extend_from_slice(ts.as_bytes());
        out.push(b' ');
        out.extend_from_slice(stream.name().as_bytes());
        out.push(b' ');
        out.push(tag as u8);
        out.push(b' ');
        out.extend_from_slice(body);
        out.push(b'\n');
        rest = &rest[used..];
    }
}

/// The open container log.
pub struct LogWriter {
    path: Option<PathBuf>,
    file: Option<File>,
    written: u64,
    max: Option<u64>,
    buf: Vec<u8>,
}

impl LogWriter {
    /// Opens (creates, appends to) the log at `path`; `None` discards output.
    pub fn open(path: Option<PathBuf>, max: Option<u64>) -> io::Result<Self> {
        let mut w = LogWriter {
            path,
            file: None,
            written: 0,
            max: max.filter(|&m| m > 0),
            buf: Vec::new(),
        };
        w.reopen()?;
        Ok(w)
    }

    /// Closes the log and opens the file now at its path (after rotation).
    pub fn reopen(&mut self) -> io::Result<()> {
        self.file = None;
        let Some(path) = &self.path else {
            return Ok(());
        };
        // O_NOFOLLOW: a symlink planted at the log path (by anything that can write to the
        // log dir, such as a pod with a hostPath on /var/log) would make root append to
        // whatever file it names.
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o640)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
            .map_err(|e| {
                if e.raw_os_error() == Some(libc::ELOOP) {
                    io::Error::other(format!(
                        "container log {} is a symbolic link; refusing to follow it",
                        path.display()
                    ))
                } else {
                    e
                }
            })?;
        self.written = file.metadata()?.len();
        self.file = Some(file);
        Ok(())
    }

    /// Writes the records for one read from the container.
    pub fn write(&mut self, stream: Stream, data: &[u8]) -> io::Result<()> {
        if self.file.is_none() || data.is_empty() {
            return Ok(());
        }
        let ts = format_timestamp(now_ns());
        self.buf.clear();
        let mut rest = data;
        while !rest.is_empty() {
            let used = match rest.iter().position(|&b| b == b'\n') {
                Some(i) => i + 1,
                None => rest.len(),
            };
            let before = self.buf.len();
            format_records(&mut self.buf, &ts, stream, &rest[..used]);
            rest = &rest[used..];
            if let Some(max) = self.max {
                if self.written + self.buf.len() as u64 > max {
                    // Over the cap: write what fits, then start the file over
                    // rather than let it grow without bound.
                    let record = self.buf.split_off(before);
                    self.flush()?;
                    if let Some(file) = &self.file {
                        file.set_len(0)?;
                    }
                    self.written = 0;
                    self.buf = record;
                }
            }
        }
        self.flush()?;
        if self.buf.capacity() > 2 * CHUNK {
            self.buf = Vec::new();
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        if let Some(file) = &mut self.file {
            file.write_all(&self.buf)?;
        }
        self.written += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_is_rfc3339_nano_utc() {
        assert_eq!(format_timestamp(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            format_timestamp(1_136_214_245_999_999_999),
            "2006-01-02T15:04:05.999999999Z"
        );
        assert_eq!(
            format_timestamp(951_782_400_000_000_001),
            "2000-02-29T00:00:00.000000001Z"
        );
        assert_eq!(
            format_timestamp(4_102_444_799_000_000_000),
            "2099-12-31T23:59:59.000000000Z"
        );
    }

    fn records(stream: Stream, data: &[u8]) -> String {
        let mut out = Vec::new();
        format_records(&mut out, "T", stream, data);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn full_lines_are_tagged_f() {
        assert_eq!(
            records(Stream::Stdout, b"a\nbc\n"),
            "T stdout F a\nT stdout F bc\n"
        );
        assert_eq!(records(Stream::Stderr, b"\n"), "T stderr F \n");
    }

    #[test]
    fn trailing_piece_is_tagged_p() {
        assert_eq!(
            records(Stream::Stdout, b"a\npartial"),
            "T stdout F a\nT stdout P partial\n"
        );
        assert_eq!(records(Stream::Stdout, b""), "");
    }

    #[test]
    fn cap_truncates_the_file() {
        let dir = std::env::temp_dir().join(format!("crius-conmon-log-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.log");
        let mut w = LogWriter::open(Some(path.clone()), Some(100)).unwrap();
        w.write(Stream::Stdout, b"first line of output\n").unwrap();
        w.write(Stream::Stdout, b"second line of output\n").unwrap();
        w.write(Stream::Stdout, b"third line of output\n").unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(text.len() <= 100, "{text}");
        assert!(text.contains("third line"), "{text}");
        assert!(!text.contains("first line"), "{text}");
    }
}
