//! crius-pause as it runs in a pod: exits 0 on SIGTERM/SIGINT, reaps orphans as
//! PID 1 of a PID namespace, and needs no shared libraries.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const PAUSE: &str = env!("CARGO_BIN_EXE_crius-pause");

/// Kills the child on drop, so a failing test leaves nothing running.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_exit(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if let Some(st) = child.try_wait().unwrap() {
            return Some(st);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(pid as libc::pid_t, sig) }, 0);
}

fn is_root() -> bool {
    // SAFETY: geteuid has no side effects.
    unsafe { libc::geteuid() == 0 }
}

#[test]
fn exits_zero_on_sigterm_and_sigint() {
    for sig in [libc::SIGTERM, libc::SIGINT] {
        let mut p = Running(Command::new(PAUSE).spawn().unwrap());
        std::thread::sleep(Duration::from_millis(100));
        assert!(p.0.try_wait().unwrap().is_none(), "pause exited by itself");
        signal(p.0.id(), sig);
        let st = wait_exit(&mut p.0, Duration::from_secs(5)).expect("pause did not exit");
        assert_eq!(st.code(), Some(0), "signal {sig}");
    }
}

#[test]
fn ignores_sigchld_and_keeps_running() {
    let mut p = Running(Command::new(PAUSE).spawn().unwrap());
    std::thread::sleep(Duration::from_millis(50));
    signal(p.0.id(), libc::SIGCHLD);
    std::thread::sleep(Duration::from_millis(100));
    assert!(p.0.try_wait().unwrap().is_none());
}

#[test]
fn is_statically_linked() {
    let out = Command::new("file").arg("-L").arg(PAUSE).output();
    let Ok(out) = out else {
        panic!("`file` is needed for this test (apt-get install file)");
    };
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("statically linked") || text.contains("static-pie linked"),
        "{text}"
    );
    assert!(!text.contains("interpreter"), "{text}");
}

/// Processes whose parent is `ppid`, with their state letter.
fn children_of(ppid: u32) -> Vec<(u32, char)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // "pid (comm) S ppid ..."; comm may hold spaces, so split after ')'
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        let mut f = rest.split_whitespace();
        let state = f.next().and_then(|s| s.chars().next()).unwrap_or('?');
        let parent: u32 = f.next().and_then(|s| s.parse().ok()).unwrap_or(0);
        if parent == ppid {
            out.push((pid, state));
        }
    }
    out
}

#[test]
fn reaps_orphans_as_pid_one() {
    if !is_root() || !Path::new("/usr/bin/unshare").exists() {
        eprintln!("skipped: needs root and unshare(1)");
        return;
    }
    // unshare forks; its child execs crius-pause as PID 1 of a new PID namespace
    let mut outer = Running(
        Command::new("unshare")
            .args(["--pid", "--fork", "--kill-child", PAUSE])
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let start = Instant::now();
    let pause_pid = loop {
        if let Some((pid, _)) = children_of(outer.0.id()).first() {
            break *pid;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "pause did not start"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    // a shell in the namespace starts 5 short sleeps in the background and exits:
    // they are orphaned, reparented to pause, and must be reaped when they end
    let st = Command::new("nsenter")
        .args(["-t", &pause_pid.to_string(), "-p", "--", "sh", "-c"])
        .arg("for i in 1 2 3 4 5; do sleep 0.6 & done; exit 0")
        .status()
        .unwrap();
    assert!(st.success());
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        !children_of(pause_pid).is_empty(),
        "the orphans were not reparented to pause"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let kids = children_of(pause_pid);
        if kids.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "children left unreaped: {kids:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // PID 1 of a namespace still exits 0 on SIGTERM (a handler is installed)
    signal(pause_pid, libc::SIGTERM);
    let st = wait_exit(&mut outer.0, Duration::from_secs(5)).expect("pause did not exit");
    assert_eq!(st.code(), Some(0));
}
