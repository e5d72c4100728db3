//! The cgroup v2 device filter on this host's real cgroup2 hierarchy (root):
//! a child that moves itself into a cgroup carrying the filter is refused the
//! devices the rules deny and gets the ones they allow. The kernel runs the
//! cgroup2 device programs on a hybrid host too, beside the v1 controller.

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
                    let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                    if fd < 0 || libc::write(fd, c"0".as_ptr().cast(), 1) != 1 {
                        report(-1);
                        libc::_exit(1);
                    }
                    libc::close(fd);
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
        for _ in 0..100 {
            match std::fs::remove_dir(&self.dir) {
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                _ => return,
            }
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
