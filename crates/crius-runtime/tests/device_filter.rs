//! The cgroup v2 device filter on this host's real cgroup2 hierarchy (root):
//! a child that moves itself into a cgroup carrying the filter is refused the
//! devices the rules deny and gets the ones they allow. The kernel runs the
//! cgroup2 device programs on a hybrid host too, beside the v1 controller.
//! `crius-runtime run` is also tested on a v2-only layout (`support::v2`)
//! and on this host's own hybrid one.

use std::ffi::{CStr, CString};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;

use crius_runtime::cgroup::{bpf, devices::DeviceFilter};
use nix::sys::wait::waitpid;
use nix::unistd::{fork, pipe, ForkResult};
use oci_spec::runtime::LinuxDeviceCgroup;

mod support;

use support::v2::{join_self, TestCgroup, V2View};

impl TestCgroup {
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
