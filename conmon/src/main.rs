//! crius-conmon: the per-container monitor.
//!
//! Started by the daemon, it detaches (forks, the first process exits, the
//! second starts a new session), becomes a child subreaper, runs
//! `RUNTIME create` with the container's stdio connected to itself, reports
//! the outcome to the daemon on its stdout (`created PID` or `error MESSAGE`,
//! one line), and then serves the protocol of `proto/monitor.proto` on
//! `monitor.sock` in its directory from a single-threaded poll loop until the
//! container exits, writing the container's output to the CRI log. On exit it
//! writes the exit file and tells every waiting client.
//!
//! Its own errors go to stderr, which the daemon points at `monitor.log`.

mod args;
mod create;
mod log;
mod oom;
mod server;
mod sys;

use std::io::Write;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = match args::Args::parse(std::env::args_os().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            report(&format!("error {e}"));
            eprintln!("crius-conmon: {e}");
            return ExitCode::from(2);
        }
    };
    match create::start(&args) {
        Ok(Some(monitor)) => monitor.run(),
        // The first process of the double fork.
        Ok(None) => ExitCode::SUCCESS,
        Err(e) => {
            let msg = e.replace('\n', " ");
            eprintln!("crius-conmon {}: {msg}", args.id);
            report(&format!("error {msg}"));
            ExitCode::from(1)
        }
    }
}

/// Sends one line to the daemon over stdout (the sync pipe).
pub fn report(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}
