//! OCI hooks: each gets the container's state on stdin and must finish in
//! its timeout.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oci_spec::runtime::Hook;

use crate::error::{Error, Result};

/// Runs `hooks` in order; the first failure stops them.
pub fn run(hooks: &[Hook], state_json: &str) -> Result<()> {
    for h in hooks {
        run_one(h, state_json)?;
    }
    Ok(())
}

fn run_one(h: &Hook, state: &str) -> Result<()> {
    let path = h.path().to_string_lossy().into_owned();
    let err = |reason: String| Error::Hook {
        path: path.clone(),
        reason,
    };
    let mut cmd = Command::new(h.path());
    if let Some(args) = h.args() {
        if let Some(a0) = args.first() {
            cmd.arg0(a0);
        }
        cmd.args(args.iter().skip(1));
    }
    cmd.env_clear();
    for e in h.env().iter().flatten() {
        if let Some((k, v)) = e.split_once('=') {
            cmd.env(k, v);
        }
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| err(format!("start: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that does not read its stdin closes the pipe early: fine.
        let _ = stdin.write_all(state.as_bytes());
    }
    let timeout = h.timeout().map(|t| Duration::from_secs(t.max(1) as u64));
    let started = Instant::now();
    loop {
        match child.try_wait().map_err(|e| err(format!("wait: {e}")))? {
            Some(st) if st.success() => return Ok(()),
            Some(st) => {
                let mut msg = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut e, &mut msg);
                }
                return Err(err(format!("{st}: {}", msg.trim())));
            }
            None => {}
        }
        if timeout.is_some_and(|t| started.elapsed() > t) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(err(format!(
                "timed out after {}s",
                timeout.unwrap_or_default().as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}
