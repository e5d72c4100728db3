//! The cgroup v2 device filter on this host's real cgroup2 hierarchy (root):
//! a child that moves itself into a cgroup carrying the filter is refused the
//! devices the rules deny and gets the ones they allow. The kernel runs the
//! cgroup2 device programs on a hybrid host too, beside the v1 controller.
//! `crius-runtime run` is also tested on a v2-only layout, made in a mount
//! and cgroup namespace, and on this host's own hybrid one.

use std::ffi::{CStr, CString};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::time::Duration;

use crius_runtime::cgroup::{bpf, devices::DeviceFilter, hierarchies};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::waitpid;
use nix::unistd::{fork, pipe, ForkResult, Pid};
use oci_spec::runtime::LinuxDeviceCgroup;

mod support;

/// A cgroup made for the test, and the child in it: both gone on drop,
/// whether the test passed or not.
struct TestCgroup {
    dir: PathBuf,
    child: Option<Pid>,
}

impl TestCgroup {
    fn new(name: &str) -> Self {
        let mount = hierarchies()
            .into_iter()
            .find(|h| h.v2)
            .map(|h| h.mount)
            .expect("no cgroup2 hierarchy mounted: this test needs one (v2 or hybrid host)");
        let dir = mount.join(format!("{name}-{}", std::process::id()));
        std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        TestCgroup { dir, child: None }
    }

    /// Forks a child that joins the cgroup and opens each path with its
    /// flags; the errno of each open (0 when it worked).
    fn opens(&mut self, opens: &[(&CStr, libc::c_int)]) -> Vec<i32> {
        let procs = CString::new(self.dir.join("cgroup.procs").as_os_str().as_bytes()).unwrap();
        let (rx, tx) = pipe().unwrap();
        // SAFETY: the child makes only async-signal-safe calls (open, write,
        // close, _exit) on data prepared before the fork.
        match unsafe { fork() }.unwrap() {
            ForkResult::Child => {
                // SAFETY: plain syscalls on live buffers; the child ends with _exit.
                unsafe {
                    let report = |v: i32| {
                        libc::write(tx.as_raw_fd(), (&v as *const i32).cast(), 4);
                    };
                    if join_self(&procs).is_err() {
                        report(-1);
                        libc::_exit(1);
                    }
                    for (path, flags) in opens {
                        let fd = libc::open(path.as_ptr(), flags | libc::O_CLOEXEC);
                        if fd < 0 {
                            report(*libc::__errno_location());
                        } else {
                            libc::close(fd);
                            report(0);
                        }
                    }
                    libc::_exit(0);
                }
            }
            ForkResult::Parent { child } => {
                self.child = Some(child);
                drop(tx);
                let mut out = Vec::new();
                let mut f = std::fs::File::from(rx);
                std::io::Read::read_to_end(&mut f, &mut out).unwrap();
                waitpid(child, None).unwrap();
                self.child = None;
                let v: Vec<i32> = out
                    .chunks(4)
                    .map(|c| i32::from_ne_bytes(c.try_into().unwrap()))
                    .collect();
                assert_ne!(
                    v.first(),
                    Some(&-1),
                    "the child could not join {}",
                    self.dir.display()
                );
                v
            }
        }
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
fn join_self(procs: &CStr) -> std::io::Result<()> {
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
fn remove_cgroup(dir: &std::path::Path) {
    for _ in 0..100 {
        match std::fs::remove_dir(dir) {
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                std::thread::sleep(Duration::from_millis(10))
            }
            _ => return,
        }
    }
}

fn filter(json: &str) -> DeviceFilter {
    let rules: Vec<LinuxDeviceCgroup> = serde_json::from_str(json).unwrap();
    DeviceFilter::from_rules(&rules).unwrap()
}

const NULL: &CStr = c"/dev/null";
const ZERO: &CStr = c"/dev/zero";

#[test]
fn device_filter_denies_and_allows_opens_in_its_cgroup() {
    let mut cg = TestCgroup::new("crius-device-filter");
    let probes = [
        (NULL, libc::O_RDONLY),
        (NULL, libc::O_WRONLY),
        (ZERO, libc::O_RDONLY),
        (ZERO, libc::O_WRONLY),
    ];
    // Without a filter every open works: what fails below fails by the filter.
    assert_eq!(cg.opens(&probes), [0, 0, 0, 0]);

    // /dev/null (c 1:3) may be written but not read, /dev/zero (c 1:5) read only.
    bpf::attach(
        &cg.dir,
        &filter(
            r#"[{"allow":false,"access":"rwm"},
                {"allow":true,"type":"c","major":1,"minor":3,"access":"w"},
                {"allow":true,"type":"c","major":1,"minor":5,"access":"r"}]"#,
        ),
    )
    .unwrap();
    let first = bpf::attached(&cg.dir).unwrap();
    assert_eq!(first.len(), 1, "programs: {first:?}");
    assert_eq!(
        cg.opens(&probes),
        [libc::EPERM, 0, 0, libc::EPERM],
        "null r, null w, zero r, zero w"
    );

    // The cgroup is reused: the new filter replaces the old one, not adds to it.
    bpf::attach(
        &cg.dir,
        &filter(
            r#"[{"allow":false,"access":"rwm"},
                {"allow":true,"type":"c","major":1,"minor":3,"access":"rwm"}]"#,
        ),
    )
    .unwrap();
    let second = bpf::attached(&cg.dir).unwrap();
    assert_eq!(second.len(), 1, "programs: {second:?}");
    assert_ne!(first, second);
    assert_eq!(
        cg.opens(&probes),
        [0, 0, libc::EPERM, libc::EPERM],
        "null r, null w, zero r, zero w"
    );
}

/// A cgroup for `crius-runtime` runs that see it as the root of a v2-only
/// host; everything in it is killed and removed on drop.
struct V2View {
    cg: TestCgroup,
}

impl V2View {
    fn new() -> Self {
        V2View {
            cg: TestCgroup::new("crius-v2-view"),
        }
    }

    /// `crius-runtime run` of `b` in a mount and cgroup namespace where
    /// /sys/fs/cgroup is only a cgroup2 mount rooted at this cgroup: the
    /// layout of a v2-only host. (exit code, stdout, stderr).
    fn run(&self, b: &support::Bundle) -> (i32, String, String) {
        let procs = CString::new(self.cg.dir.join("cgroup.procs").as_os_str().as_bytes()).unwrap();
        let mut cmd = std::process::Command::new("unshare");
        cmd.args(["--mount", "--cgroup", "--propagation", "private", "--", "sh", "-c"])
            .arg("umount -R /sys/fs/cgroup && mount -t cgroup2 cgroup2 /sys/fs/cgroup && exec \"$0\" \"$@\"")
            .arg(support::bin())
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

/// A bundle whose container opens /dev/loop-control (c 10:237, bound in
/// from the host and not among the default devices) and /dev/null (a default).
fn opening_bundle(name: &str, rules: serde_json::Value) -> support::Bundle {
    let script =
        "(exec 3</dev/loop-control) && echo loop-control=open || echo loop-control=refused; \
                  (exec 3</dev/null) && echo null=open || echo null=refused";
    let b = support::Bundle::new(name, &["sh", "-c", script]);
    b.edit(|v| {
        v["linux"]["resources"]["devices"] = rules;
        let mounts = v["mounts"].as_array_mut().unwrap();
        // Mounting the container's own cgroup view is not what is tested.
        mounts.retain(|m| m["type"] != "cgroup");
        mounts.push(
            serde_json::json!({"destination": "/dev/loop-control", "type": "bind",
            "source": "/dev/loop-control", "options": ["bind"]}),
        );
    });
    b
}

#[test]
fn create_on_a_v2_only_layout_enforces_the_spec_device_rules() {
    let view = V2View::new();
    let deny = opening_bundle(
        "v2-devices-deny",
        serde_json::json!([{"allow": false, "access": "rwm"}]),
    );
    let (code, out, err) = view.run(&deny);
    assert_eq!(
        code,
        0,
        "stdout: {out}\nstderr: {err}\nlog: {}",
        deny.log_text()
    );
    assert_eq!(out, "loop-control=refused\nnull=open\n", "stderr: {err}");
    assert!(err.contains("Operation not permitted"), "stderr: {err}");

    let allow = opening_bundle(
        "v2-devices-allow",
        serde_json::json!([{"allow": true, "access": "rwm"}]),
    );
    let (code, out, err) = view.run(&allow);
    assert_eq!(
        code,
        0,
        "stdout: {out}\nstderr: {err}\nlog: {}",
        allow.log_text()
    );
    assert_eq!(out, "loop-control=open\nnull=open\n", "stderr: {err}");
}

#[test]
fn create_on_this_hybrid_host_gives_the_same_answer_through_v1() {
    let b = opening_bundle(
        "v1-devices-deny",
        serde_json::json!([{"allow": false, "access": "rwm"}]),
    );
    let (code, out, err) = b.run();
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
    assert_eq!(out, "loop-control=refused\nnull=open\n", "stderr: {err}");
}
