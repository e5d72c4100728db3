//! A v2-only cgroup layout on this hybrid host: a cgroup of the host's
//! cgroup2 tree, and `crius-runtime` runs in a mount and cgroup namespace
//! that see it as the whole of /sys/fs/cgroup.

use std::ffi::{CStr, CString};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::time::Duration;

use crius_runtime::cgroup::hierarchies;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::waitpid;
use nix::unistd::Pid;

use super::Bundle;

/// A cgroup made for the test, and the child in it: both gone on drop,
/// whether the test passed or not.
pub struct TestCgroup {
    pub dir: PathBuf,
    pub child: Option<Pid>,
}

impl TestCgroup {
    pub fn new(name: &str) -> Self {
        let mount = hierarchies()
            .into_iter()
            .find(|h| h.v2)
            .map(|h| h.mount)
            .expect("no cgroup2 hierarchy mounted: this test needs one (v2 or hybrid host)");
        let dir = mount.join(format!("{name}-{}", std::process::id()));
        std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        TestCgroup { dir, child: None }
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        if let Some(pid) = self.child.take() {
            let _ = kill(pid, Signal::SIGKILL);
            let _ = waitpid(pid, None);
        }
        remove_cgroup(&self.dir);
    }
}

/// Moves the calling process into the cgroup whose `cgroup.procs` is
/// `procs`; only async-signal-safe calls, for use between fork and exec.
pub fn join_self(procs: &CStr) -> std::io::Result<()> {
    // SAFETY: plain syscalls on a live C string and a static buffer.
    unsafe {
        let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let n = libc::write(fd, c"0".as_ptr().cast(), 1);
        let err = std::io::Error::last_os_error();
        libc::close(fd);
        if n == 1 {
            Ok(())
        } else {
            Err(err)
        }
    }
}

/// Removes an empty cgroup, giving its last processes a moment to go.
pub fn remove_cgroup(dir: &std::path::Path) {
    for _ in 0..100 {
        match std::fs::remove_dir(dir) {
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                std::thread::sleep(Duration::from_millis(10))
            }
            _ => return,
        }
    }
}

/// A cgroup for `crius-runtime` runs that see it as the root of a v2-only
/// host; everything in it is killed and removed on drop.
pub struct V2View {
    cg: TestCgroup,
}

impl V2View {
    pub fn new() -> Self {
        V2View {
            cg: TestCgroup::new("crius-v2-view"),
        }
    }

    /// `crius-runtime run` of `b` in a mount and cgroup namespace where
    /// /sys/fs/cgroup is only a cgroup2 mount rooted at this cgroup: the
    /// layout of a v2-only host. (exit code, stdout, stderr).
    pub fn run(&self, b: &Bundle) -> (i32, String, String) {
        let procs = CString::new(self.cg.dir.join("cgroup.procs").as_os_str().as_bytes()).unwrap();
        let mut cmd = std::process::Command::new("unshare");
        cmd.args(["--mount", "--cgroup", "--propagation", "private", "--", "sh", "-c"])
            .arg("umount -R /sys/fs/cgroup && mount -t cgroup2 cgroup2 /sys/fs/cgroup && exec \"$0\" \"$@\"")
            .arg(super::bin())
            .arg("--root")
            .arg(&b.root)
            .arg("--log")
            .arg(&b.log)
            .args(["run", "--bundle"])
            .arg(&b.dir)
            .arg(&b.id);
        // SAFETY: the hook makes only async-signal-safe calls (open, write,
        // close) on a path prepared before the fork.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || join_self(&procs));
        }
        let o = cmd.output().unwrap();
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    }
}

impl Drop for V2View {
    fn drop(&mut self) {
        // Whatever a failed run left: processes first, then the cgroups
        // below this one (deepest first); TestCgroup removes this one.
        let _ = std::fs::write(self.cg.dir.join("cgroup.kill"), "1");
        let mut dirs = Vec::new();
        let mut stack = vec![self.cg.dir.clone()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(e.path());
                    dirs.push(e.path());
                }
            }
        }
        for d in dirs.iter().rev() {
            remove_cgroup(d);
        }
    }
}
