//! The monitor's command line (kept by hand: no argument parser crate, to
//! stay small).

use std::ffi::OsString;
use std::path::PathBuf;

/// What the daemon asks the monitor to do.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Args {
    /// The container id.
    pub id: String,
    /// The OCI bundle directory.
    pub bundle: PathBuf,
    /// The monitor's directory: socket, exit file, pid files, logs.
    pub dir: PathBuf,
    /// The runc-compatible runtime binary.
    pub runtime: PathBuf,
    /// `--root` for the runtime.
    pub runtime_root: Option<PathBuf>,
    /// `--systemd-cgroup` for the runtime.
    pub systemd_cgroup: bool,
    /// The CRI log file, if any.
    pub log_path: Option<PathBuf>,
    /// Give the container a pty.
    pub terminal: bool,
    /// Keep the container's stdin open.
    pub stdin: bool,
    /// Close stdin when the first attach client detaches.
    pub stdin_once: bool,
    /// Cap on the log file's size.
    pub log_size_max: Option<u64>,
}

impl Args {
    /// Parses `--flag value` pairs and boolean `--flag`s.
    pub fn parse(mut it: impl Iterator<Item = OsString>) -> Result<Args, String> {
        let mut a = Args::default();
        while let Some(flag) = it.next() {
            let flag = flag
                .into_string()
                .map_err(|f| format!("invalid argument {f:?}"))?;
            let mut value = || {
                it.next()
                    .ok_or_else(|| format!("{flag} needs a value"))
                    .map(PathBuf::from)
            };
            match flag.as_str() {
                "--id" => {
                    a.id = value()?
                        .into_os_string()
                        .into_string()
                        .map_err(|_| "container id is not utf-8".to_string())?
                }
                "--bundle" => a.bundle = value()?,
                "--dir" => a.dir = value()?,
                "--runtime" => a.runtime = value()?,
                "--runtime-root" => a.runtime_root = Some(value()?),
                "--log-path" => a.log_path = Some(value()?),
                "--log-size-max" => {
                    let v = value()?;
                    let n = v
                        .to_str()
                        .and_then(|s| s.parse().ok())
                        .ok_or_else(|| format!("invalid --log-size-max {v:?}"))?;
                    a.log_size_max = Some(n);
                }
                "--systemd-cgroup" => a.systemd_cgroup = true,
                "--terminal" => a.terminal = true,
                "--stdin" => a.stdin = true,
                "--stdin-once" => a.stdin_once = true,
                other => return Err(format!("unknown argument {other:?}")),
            }
        }
        if a.id.is_empty() || a.bundle.as_os_str().is_empty() || a.dir.as_os_str().is_empty() {
            return Err("--id, --bundle and --dir are required".into());
        }
        if a.runtime.as_os_str().is_empty() {
            return Err("--runtime is required".into());
        }
        Ok(a)
    }

    /// The runtime's global flags (before the subcommand).
    pub fn runtime_globals(&self) -> Vec<OsString> {
        let mut v = Vec::new();
        if let Some(root) = &self.runtime_root {
            v.push("--root".into());
            v.push(root.clone().into());
        }
        if self.systemd_cgroup {
            v.push("--systemd-cgroup".into());
        }
        v.push("--log".into());
        v.push(self.dir.join(crius_monitor_proto::RUNTIME_LOG_NAME).into());
        v.push("--log-format".into());
        v.push("json".into());
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &[&str]) -> Result<Args, String> {
        Args::parse(s.iter().map(OsString::from))
    }

    #[test]
    fn parses_every_flag() {
        let a = parse(&[
            "--id",
            "c1",
            "--bundle",
            "/b",
            "--dir",
            "/d",
            "--runtime",
            "/usr/sbin/runc",
            "--runtime-root",
            "/r",
            "--systemd-cgroup",
            "--log-path",
            "/l",
            "--terminal",
            "--stdin",
            "--stdin-once",
            "--log-size-max",
            "1024",
        ])
        .unwrap();
        assert_eq!(a.id, "c1");
        assert_eq!(a.runtime_root, Some(PathBuf::from("/r")));
        assert!(a.systemd_cgroup && a.terminal && a.stdin && a.stdin_once);
        assert_eq!(a.log_size_max, Some(1024));
        assert_eq!(
            a.runtime_globals(),
            [
                "--root",
                "/r",
                "--systemd-cgroup",
                "--log",
                "/d/runtime.log",
                "--log-format",
                "json"
            ]
            .map(OsString::from)
        );
    }

    #[test]
    fn rejects_missing_and_unknown() {
        assert!(parse(&["--id", "c1"]).is_err());
        assert!(parse(&["--bogus"]).is_err());
        assert!(parse(&["--id"]).is_err());
        assert!(parse(&[
            "--id",
            "c",
            "--bundle",
            "/b",
            "--dir",
            "/d",
            "--runtime",
            "r",
            "--log-size-max",
            "x"
        ])
        .is_err());
    }
}
