//! The daemon's own figures and the node's processes, read from /proc at scrape time.

/// The crius process's memory, CPU time, fds and start time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProcessFigures {
    pub resident_bytes: u64,
    pub virtual_bytes: u64,
    pub cpu_seconds: f64,
    pub open_fds: u64,
    pub start_time_seconds: u64,
}

/// Processes on the node that the metrics count.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NodeProcesses {
    /// crius-conmon monitors.
    pub monitors: u64,
    /// Zombies.
    pub defunct: u64,
}

/// The fields of /proc/PID/stat after the command name: (state, fields from 3 on).
fn stat_fields(stat: &str) -> Option<(String, Vec<&str>)> {
    // The name is in parentheses and may itself hold spaces and parentheses.
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?.to_string();
    let rest: Vec<&str> = stat.get(close + 1..)?.split_whitespace().collect();
    Some((comm, rest))
}

fn sysconf(name: libc::c_int) -> Option<u64> {
    // SAFETY: sysconf only reads a system constant.
    let v = unsafe { libc::sysconf(name) };
    u64::try_from(v).ok().filter(|v| *v > 0)
}

impl ProcessFigures {
    /// This process's figures, or `None` where /proc cannot be read.
    pub fn of_self() -> Option<ProcessFigures> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let (_, f) = stat_fields(&stat)?;
        // Counting from field 3 (state) as index 0: utime 14, stime 15, starttime 22,
        // vsize 23, rss 24 in proc(5)'s numbering.
        let field = |n: usize| f.get(n - 3).and_then(|v| v.parse::<u64>().ok());
        let ticks = sysconf(libc::_SC_CLK_TCK)? as f64;
        let page = sysconf(libc::_SC_PAGESIZE)?;
        let boot = std::fs::read_to_string("/proc/stat")
            .ok()?
            .lines()
            .find_map(|l| l.strip_prefix("btime ")?.trim().parse::<u64>().ok())?;
        let open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count() as u64;
        Some(ProcessFigures {
            resident_bytes: field(24)? * page,
            virtual_bytes: field(23)?,
            cpu_seconds: (field(14)? + field(15)?) as f64 / ticks,
            open_fds,
            start_time_seconds: boot + (field(22)? as f64 / ticks) as u64,
        })
    }
}

/// Counts monitors and zombies in one pass over /proc.
pub(crate) fn node_processes() -> NodeProcesses {
    let mut out = NodeProcesses::default();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue; // gone meanwhile
        };
        let Some((comm, rest)) = stat_fields(&stat) else {
            continue;
        };
        if rest.first() == Some(&"Z") {
            out.defunct += 1;
        } else if comm == "crius-conmon" {
            out.monitors += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_names_with_spaces_and_parens_parse() {
        let (comm, rest) = stat_fields("42 (a (b) c) S 1 42 42 0").unwrap();
        assert_eq!(comm, "a (b) c");
        assert_eq!(rest, ["S", "1", "42", "42", "0"]);
    }

    #[test]
    fn own_figures_are_plausible() {
        let p = ProcessFigures::of_self().unwrap();
        assert!(p.resident_bytes > 0 && p.virtual_bytes >= p.resident_bytes);
        assert!(p.open_fds >= 3);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert!(p.start_time_seconds <= now + 1 && p.start_time_seconds > now - 86_400 * 365);
    }

    #[test]
    fn a_child_zombie_is_counted() {
        let child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        // Not waited for: once it exits it stays a zombie until reaped below.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
            if stat_fields(&stat).unwrap().1[0] == "Z" {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "child never exited");
            std::thread::yield_now();
        }
        assert!(node_processes().defunct >= 1);
        let mut child = child;
        child.wait().unwrap();
    }
}
