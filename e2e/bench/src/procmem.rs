//! Memory of processes, from /proc: RSS and PSS of the daemon and of the per-pod monitor
//! (crius-conmon) or shim (containerd-shim-runc-v2) processes.

use std::fs;
use std::path::Path;

use anyhow::{anyhow, Context};
use serde::{Deserialize, Serialize};

/// Resident and proportional set size of one process or a group of them, in KiB.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemUsage {
    /// Resident set size: every page mapped and present, shared ones counted in full.
    pub rss_kib: u64,
    /// Proportional set size: shared pages divided among the processes that map them.
    pub pss_kib: u64,
}

impl std::ops::Add for MemUsage {
    type Output = MemUsage;
    fn add(self, other: MemUsage) -> MemUsage {
        MemUsage {
            rss_kib: self.rss_kib + other.rss_kib,
            pss_kib: self.pss_kib + other.pss_kib,
        }
    }
}

/// Reads RSS and PSS of `pid` from /proc/PID/smaps_rollup.
pub fn read_mem(pid: u32) -> anyhow::Result<MemUsage> {
    let path = format!("/proc/{pid}/smaps_rollup");
    let text = fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    parse_smaps_rollup(&text).ok_or_else(|| anyhow!("{path} has no Rss or Pss line"))
}

/// The `Rss:` and `Pss:` lines of an smaps_rollup file (values in kB).
pub fn parse_smaps_rollup(text: &str) -> Option<MemUsage> {
    let field = |name: &str| {
        text.lines().find_map(|line| {
            let rest = line.strip_prefix(name)?.strip_prefix(':')?;
            rest.split_whitespace().next()?.parse::<u64>().ok()
        })
    };
    Some(MemUsage {
        rss_kib: field("Rss")?,
        pss_kib: field("Pss")?,
    })
}

/// The arguments of a /proc/PID/cmdline (NUL separated).
pub fn parse_cmdline(raw: &[u8]) -> Vec<String> {
    raw.split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

/// Whether a command line runs the program `exe` (by the base name of argv[0]) and
/// mentions `needle` in some argument.
pub fn cmdline_matches(args: &[String], exe: &str, needle: &str) -> bool {
    let Some(argv0) = args.first() else {
        return false;
    };
    let base = Path::new(argv0)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("");
    base == exe && args.iter().any(|a| a.contains(needle))
}

/// Pids of live processes whose argv[0] is `exe` and whose command line mentions `needle`
/// (a path private to one daemon, so processes of other daemons are not counted).
pub fn find_processes(exe: &str, needle: &str) -> Vec<u32> {
    crius_e2e::pids()
        .into_iter()
        .filter(|pid| {
            fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|raw| cmdline_matches(&parse_cmdline(&raw), exe, needle))
        })
        .collect()
}

/// Sum of the memory of `pids`; processes that vanished meanwhile are skipped.
pub fn sum_mem(pids: &[u32]) -> (MemUsage, usize) {
    let mut total = MemUsage::default();
    let mut counted = 0;
    for pid in pids {
        if let Ok(mem) = read_mem(*pid) {
            total = total + mem;
            counted += 1;
        }
    }
    (total, counted)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROLLUP: &str =
        "55d0c0a00000-7ffc3a5f1000 ---p 00000000 00:00 0                          [rollup]
Rss:                2816 kB
Pss:                 713 kB
Pss_Dirty:           456 kB
Pss_Anon:            420 kB
Shared_Clean:       2048 kB
Private_Dirty:       456 kB
";

    #[test]
    fn rollup_gives_rss_and_pss_not_pss_dirty() {
        assert_eq!(
            parse_smaps_rollup(ROLLUP),
            Some(MemUsage {
                rss_kib: 2816,
                pss_kib: 713
            })
        );
    }

    #[test]
    fn rollup_without_pss_is_refused() {
        assert_eq!(parse_smaps_rollup("Rss: 12 kB\n"), None);
    }

    #[test]
    fn own_process_has_memory() {
        let mem = read_mem(std::process::id()).unwrap();
        assert!(mem.rss_kib > 0 && mem.pss_kib > 0, "{mem:?}");
        assert!(mem.pss_kib <= mem.rss_kib, "{mem:?}");
    }

    #[test]
    fn cmdline_is_split_on_nul() {
        let args = parse_cmdline(b"/usr/bin/containerd-shim-runc-v2\0-address\0/tmp/x/c.sock\0");
        assert_eq!(
            args,
            vec![
                "/usr/bin/containerd-shim-runc-v2",
                "-address",
                "/tmp/x/c.sock"
            ]
        );
    }

    #[test]
    fn cmdline_must_run_the_program_and_mention_the_needle() {
        let args: Vec<String> = ["/t/release/crius-conmon", "--dir", "/var/tmp/b1/run/x"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert!(cmdline_matches(&args, "crius-conmon", "/var/tmp/b1"));
        assert!(!cmdline_matches(&args, "crius-conmon", "/var/tmp/b2"));
        assert!(!cmdline_matches(&args, "conmon", "/var/tmp/b1"));
        assert!(!cmdline_matches(&[], "crius-conmon", ""));
    }

    #[test]
    fn finds_a_child_by_program_and_argument() {
        // coreutils sleep adds up its arguments: a unique tiny interval marks the child.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let marker = format!("0.0000{}{nanos}", std::process::id());
        let mut child = std::process::Command::new("/bin/sleep")
            .arg("30")
            .arg(&marker)
            .spawn()
            .unwrap();
        // The child may not have exec'd yet: poll briefly.
        let mut found = Vec::new();
        for _ in 0..100 {
            found = find_processes("sleep", &marker);
            if !found.is_empty() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(found, vec![child.id()]);
        let (mem, counted) = sum_mem(&found);
        // It was killed: whether it was read depends on timing, but never more than one.
        assert!(counted <= 1 && (counted == 0 || mem.rss_kib > 0));
    }
}
