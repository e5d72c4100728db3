//! crius-runtime's command line on real busybox bundles: the lifecycle,
//! exec, bad input, and the guards against the known runtime escapes.
//! Needs root and busybox.

mod support;

use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use serde_json::json;
use support::Bundle;

fn wait_status(b: &Bundle, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = b.status();
        if s == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "container {} stayed {s}, wanted {want}",
            b.id
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn lifecycle_create_start_kill_delete() {
    let b = Bundle::new("life", &["sleep", "100"]);
    let pid = b.create();
    assert_eq!(b.status(), "created");
    let st: serde_json::Value = serde_json::from_str(&b.ok(&["state", &b.id])).unwrap();
    assert_eq!(st["pid"], pid);
    assert_eq!(st["id"], b.id.as_str());
    assert!(!b.cgroup_dirs().is_empty(), "no cgroup made");
    b.ok(&["start", &b.id]);
    assert_eq!(b.status(), "running");
    // A second start is refused, as runc does.
    assert_eq!(b.cmd(&["start", &b.id]).status.code(), Some(1));
    let ps: Vec<i32> = serde_json::from_str(&b.ok(&["ps", "--format", "json", &b.id])).unwrap();
    assert!(ps.contains(&pid), "{ps:?} lacks {pid}");
    b.ok(&["pause", &b.id]);
    assert_eq!(b.status(), "paused");
    b.ok(&["resume", &b.id]);
    assert_eq!(b.status(), "running");
    // Not stopped: delete without --force refuses.
    let o = b.cmd(&["delete", &b.id]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("running"));
    b.ok(&["kill", &b.id, "KILL"]);
    wait_status(&b, "stopped");
    b.ok(&["delete", &b.id]);
    assert!(
        b.cgroup_dirs().is_empty(),
        "cgroup left: {:?}",
        b.cgroup_dirs()
    );
    assert!(
        std::fs::read_dir(&b.root).unwrap().next().is_none(),
        "state left in --root"
    );
    let o = b.cmd(&["state", &b.id]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("does not exist"));
}

#[test]
fn run_reports_the_exit_code_hostname_and_update() {
    let b = Bundle::new("run", &["sh", "-c", "hostname; exit 7"]);
    let (code, out, err) = b.run();
    assert_eq!(code, 7, "stderr: {err}");
    assert_eq!(out.trim(), "crius-test");
    assert!(b.cgroup_dirs().is_empty());

    let b = Bundle::new("upd", &["sleep", "100"]);
    b.create();
    b.ok(&["start", &b.id]);
    let o = std::process::Command::new(support::bin())
        .args(["--root"])
        .arg(&b.root)
        .args(["update", "--resources", "-", &b.id])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin
                .take()
                .unwrap()
                .write_all(br#"{"memory":{"limit":67108864},"pids":{"limit":50}}"#)?;
            c.wait()
        })
        .unwrap();
    assert!(o.success());
    let mem = std::path::Path::new("/sys/fs/cgroup/memory").join(b.cgroup.trim_start_matches('/'));
    if mem.exists() {
        let v = std::fs::read_to_string(mem.join("memory.limit_in_bytes")).unwrap();
        assert_eq!(v.trim(), "67108864");
    }
}

#[test]
fn exec_runs_in_the_container_and_returns_its_status() {
    let b = Bundle::new("exec", &["sleep", "100"]);
    b.create();
    b.ok(&["start", &b.id]);
    let o = b.cmd(&["exec", &b.id, "sh", "-c", "hostname; echo $FOO; exit 3"]);
    assert_eq!(
        o.status.code(),
        Some(3),
        "stderr: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "crius-test");
    let o = b.cmd(&["exec", "--env", "FOO=bar", &b.id, "sh", "-c", "echo $FOO"]);
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "bar");
    let o = b.cmd(&["exec", &b.id, "no-such-binary"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("not found"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Each bad input: exit 1, the reason on stderr and in the JSON log, and
/// nothing left in --root or the cgroup tree.
#[test]
fn bad_input_is_refused_cleanly() {
    type Edit = Box<dyn Fn(&Bundle)>;
    let cases: Vec<(&str, Edit, &str)> = vec![
        (
            "unparsable",
            Box::new(|b: &Bundle| std::fs::write(b.dir.join("config.json"), b"{not json").unwrap()),
            "does not parse",
        ),
        (
            "version",
            Box::new(|b: &Bundle| b.edit(|v| v["ociVersion"] = json!("3.0.0"))),
            "unsupported OCI version",
        ),
        (
            "cap",
            Box::new(|b: &Bundle| {
                b.edit(|v| v["process"]["capabilities"]["bounding"] = json!(["CAP_NO_SUCH"]))
            }),
            "unknown capability",
        ),
        (
            "syscall",
            Box::new(|b: &Bundle| {
                b.edit(|v| {
                    v["linux"]["seccomp"] = json!({"defaultAction": "SCMP_ACT_ALLOW",
                        "syscalls": [{"names": ["no_such_call"], "action": "SCMP_ACT_ERRNO"}]})
                })
            }),
            "unknown syscall",
        ),
        (
            "escape",
            Box::new(|b: &Bundle| {
                std::os::unix::fs::symlink("../../../../../../tmp", b.dir.join("rootfs/evil"))
                    .unwrap();
                b.edit(|v| {
                    v["mounts"]
                        .as_array_mut()
                        .unwrap()
                        .push(json!({"destination": "/evil/x", "type": "tmpfs", "source": "tmpfs"}))
                })
            }),
            "climbs out of the rootfs",
        ),
        (
            "uidmap",
            Box::new(|b: &Bundle| {
                b.edit(|v| {
                    v["linux"]["namespaces"]
                        .as_array_mut()
                        .unwrap()
                        .push(json!({"type": "user"}));
                    v["linux"]["uidMappings"] =
                        json!([{"containerID": 0, "hostID": 4000000000u32, "size": 4000000000u32}]);
                    v["linux"]["gidMappings"] =
                        json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
                })
            }),
            "refused the uid_map",
        ),
        (
            "mount-uidmap",
            Box::new(|b: &Bundle| {
                b.edit(|v| {
                    let huge =
                        json!([{"containerID": 0, "hostID": 4000000000u32, "size": 4000000000u32}]);
                    v["mounts"].as_array_mut().unwrap().push(json!({
                        "destination": "/mapped", "type": "bind", "source": "/tmp",
                        "options": ["rbind"], "uidMappings": huge, "gidMappings": huge}));
                })
            }),
            "refused the mount's uid_map",
        ),
    ];
    for (name, edit, want) in cases {
        let b = Bundle::new(&format!("bad-{name}"), &["true"]);
        edit(&b);
        let d = b.dir.to_string_lossy().into_owned();
        let o = b.cmd(&["create", "--bundle", &d, &b.id]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{name}: {err}");
        assert!(err.contains(want), "{name}: stderr {err:?} lacks {want:?}");
        let log = b.log_text();
        assert!(
            log.contains("\"level\":\"error\"") && log.contains(want),
            "{name}: log {log:?}"
        );
        let left: Vec<_> = std::fs::read_dir(&b.root)
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "{name}: left in --root: {left:?}");
        assert!(
            b.cgroup_dirs().is_empty(),
            "{name}: cgroup left: {:?}",
            b.cgroup_dirs()
        );
        assert!(!std::path::Path::new("/tmp/x").exists() || name != "escape");
        assert_nothing_mounted_under(&b.dir, name);
    }
    // A missing bundle.
    let b = Bundle::new("bad-missing", &["true"]);
    let o = b.cmd(&["create", "--bundle", "/nonexistent/bundle", &b.id]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("/nonexistent/bundle"), "{err}");
    let log = b.log_text();
    assert!(
        log.contains("\"level\":\"error\"") && log.contains("/nonexistent/bundle"),
        "missing bundle: log {log:?}"
    );
    assert!(std::fs::read_dir(&b.root).map_or(true, |mut d| d.next().is_none()));
    assert!(b.cgroup_dirs().is_empty());
}

/// No mount of the host's (this test's) namespace lies under `dir`.
fn assert_nothing_mounted_under(dir: &std::path::Path, case: &str) {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let dir = dir.to_string_lossy();
    let left: Vec<&str> = info.lines().filter(|l| l.contains(dir.as_ref())).collect();
    assert!(left.is_empty(), "{case}: left mounted: {left:?}");
}

/// Id-mapped mounts: in a user namespace mapping 0 to 100000, a bind whose
/// uidMappings/gidMappings are the same shows host root's files as the container's root
/// and what the container's root writes there lands as host root's; a plain bind of the
/// same dir shows them as the overflow id. `features` says so.
#[test]
fn an_id_mapped_bind_shows_host_root_files_as_the_containers_root() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let features: serde_json::Value =
        serde_json::from_str(&Bundle::new("feat", &["true"]).ok(&["features"])).unwrap();
    assert_eq!(
        features["linux"]["mountExtensions"]["idmap"]["enabled"],
        true
    );

    let b = Bundle::new(
        "idmap",
        &[
            "sh",
            "-c",
            "stat -c %u:%g /mapped/f /plain/f && id -u && echo x > /mapped/new",
        ],
    );
    // The user namespace's root passes the bundle's dirs as "other".
    std::fs::set_permissions(b.tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    // The targets, as an image has them: the namespace's root cannot write host root's rootfs.
    for d in ["mapped", "plain"] {
        std::fs::create_dir(b.dir.join("rootfs").join(d)).unwrap();
    }
    let data = b.tmp.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("f"), "host root's").unwrap();
    let map = support::id_map();
    let src = data.to_string_lossy().into_owned();
    b.in_new_user_namespace();
    b.edit(|v| {
        let mounts = v["mounts"].as_array_mut().unwrap();
        mounts.push(
            json!({"destination": "/mapped", "type": "bind", "source": src,
            "options": ["rbind", "rw"], "uidMappings": map, "gidMappings": map}),
        );
        mounts.push(
            json!({"destination": "/plain", "type": "bind", "source": src,
            "options": ["rbind", "ro"]}),
        );
    });
    let (code, out, err) = b.run();
    assert_eq!(code, 0, "stdout {out:?}, stderr {err}");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["0:0", "65534:65534", "0"],
        "{err}"
    );
    let made = std::fs::metadata(data.join("new")).unwrap();
    assert_eq!((made.uid(), made.gid()), (0, 0));
}

/// The parent cgroup a test makes by hand, in every hierarchy; removed on drop.
struct HostCgroupParent(String);

impl Drop for HostCgroupParent {
    fn drop(&mut self) {
        for h in crius_runtime::cgroup::hierarchies() {
            let _ = std::fs::remove_dir(h.mount.join(&self.0));
        }
    }
}

/// A v1 cpuset parent that another runtime has made but not yet filled (empty
/// cpus and mems refuse every task) is filled on the way down: the container
/// joins its cpuset instead of failing with ENOSPC.
#[test]
fn a_container_starts_under_a_cpuset_parent_not_yet_filled() {
    let cpuset = crius_runtime::cgroup::hierarchies()
        .into_iter()
        .find(|h| h.controllers.iter().any(|c| c == "cpuset"))
        .expect("no v1 cpuset hierarchy: this test needs this host's hybrid layout")
        .mount;
    let parent = HostCgroupParent(format!("crius-runtime-unfilled-{}", std::process::id()));
    let dir = cpuset.join(&parent.0);
    std::fs::create_dir(&dir).unwrap();
    let cpus = std::fs::read_to_string(dir.join("cpuset.cpus")).unwrap();
    assert_eq!(cpus.trim(), "", "a new cpuset should start empty here");
    let mut b = Bundle::new("unfilled", &["true"]);
    b.cgroup = format!("/{}/{}", parent.0, b.id);
    let cgroup = b.cgroup.clone();
    b.edit(|v| v["linux"]["cgroupsPath"] = json!(cgroup));
    let (code, out, err) = b.run();
    assert_eq!(code, 0, "stdout {out:?}, stderr {err}");
    let cpus = std::fs::read_to_string(dir.join("cpuset.cpus")).unwrap();
    assert_ne!(cpus.trim(), "", "the parent was left empty");
}

/// Unmounts (detached) what a test mounted on the host, even when it fails.
struct HostMounts(Vec<std::path::PathBuf>);

impl Drop for HostMounts {
    fn drop(&mut self) {
        for p in self.0.iter().rev() {
            let _ = nix::mount::umount2(p, nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

/// rootfsPropagation "rshared" and an rshared bind of a shared host dir (a Bidirectional
/// volume): a mount made in the container shows on the host, one made on the host shows
/// in the container.
#[test]
fn an_rshared_bind_propagates_both_ways() {
    use nix::mount::{mount, MsFlags};
    let b = Bundle::new(
        "rshared",
        &[
            "sh",
            "-c",
            "mkdir -p /shared/in && mount -t tmpfs tmpfs /shared/in && touch /shared/in/made-inside && sleep 100",
        ],
    );
    let shared = b.tmp.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    let mut host = HostMounts(Vec::new());
    mount(
        Some(&shared),
        &shared,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .unwrap();
    host.0.push(shared.clone());
    mount(
        None::<&str>,
        &shared,
        None::<&str>,
        MsFlags::MS_SHARED | MsFlags::MS_REC,
        None::<&str>,
    )
    .unwrap();
    let src = shared.to_string_lossy().into_owned();
    b.edit(|v| {
        let caps = json!(["CAP_SYS_ADMIN", "CAP_KILL"]);
        for set in ["bounding", "effective", "permitted"] {
            v["process"]["capabilities"][set] = caps.clone();
        }
        v["linux"]["rootfsPropagation"] = json!("rshared");
        v["mounts"]
            .as_array_mut()
            .unwrap()
            .push(json!({"destination": "/shared",
            "type": "bind", "source": src, "options": ["rbind", "rshared", "rw"]}));
    });
    b.create();
    b.ok(&["start", &b.id]);
    host.0.push(shared.join("in"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !shared.join("in/made-inside").exists() {
        assert!(
            Instant::now() < deadline,
            "the container's mount did not reach the host"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = shared.join("out");
    std::fs::create_dir(&out).unwrap();
    mount(
        Some("tmpfs"),
        &out,
        Some("tmpfs"),
        MsFlags::empty(),
        None::<&str>,
    )
    .unwrap();
    host.0.push(out.clone());
    std::fs::write(out.join("made-outside"), "").unwrap();
    let seen = b.ok(&["exec", &b.id, "ls", "/shared/out"]);
    assert_eq!(seen.trim(), "made-outside");
}

/// CVE-2022-24769: no inheritable capabilities unless the spec asks.
#[test]
fn inheritable_capabilities_stay_empty() {
    let b = Bundle::new(
        "capinh",
        &["grep", "-E", "^Cap(Inh|Amb|Eff)", "/proc/self/status"],
    );
    let (code, out, err) = b.run();
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("CapInh:\t0000000000000000"), "{out}");
    assert!(out.contains("CapAmb:\t0000000000000000"), "{out}");
    // CAP_AUDIT_WRITE|CAP_KILL|CAP_NET_BIND_SERVICE, as asked.
    assert!(out.contains("CapEff:\t0000000020000420"), "{out}");
}

/// CVE-2024-21626: no runtime descriptor reaches the program, and a cwd
/// through a leaked descriptor (/proc/self/fd/N) is refused.
#[test]
fn no_host_descriptor_or_cwd_leaks() {
    let b = Bundle::new("fds", &["ls", "/proc/self/fd"]);
    let (code, out, err) = b.run();
    assert_eq!(code, 0, "{err}");
    let fds: Vec<&str> = out.split_whitespace().collect();
    // 0-2, and the directory ls itself opened.
    assert!(
        fds.len() <= 4,
        "descriptors leaked into the container: {fds:?}"
    );
    for n in 3..10 {
        let b = Bundle::new(&format!("cwd{n}"), &["pwd"]);
        b.edit(|v| v["process"]["cwd"] = json!(format!("/proc/self/fd/{n}")));
        let (code, out, _) = b.run();
        // Either refused, or a directory inside the container.
        if code == 0 {
            assert!(
                out.trim().starts_with('/') && !out.contains("unreachable"),
                "cwd /proc/self/fd/{n} gave {out:?}"
            );
        }
    }
}

/// CVE-2019-5736: /proc/<pid>/exe of a runtime process cannot be opened for
/// writing, not even by root on the host after the process is gone.
#[test]
fn runtime_binary_is_not_writable_through_proc_exe() {
    let b = Bundle::new("exe", &["true"]);
    // The created init is a runtime process until it execs the program.
    let pid = b.create();
    let exe = std::fs::File::options()
        .read(true)
        .custom_flags(libc::O_PATH)
        .open(format!("/proc/{pid}/exe"))
        .unwrap();
    // The file is reached through a read-only mount: no write can go through it.
    let st = nix::sys::statvfs::fstatvfs(&exe).unwrap();
    assert!(
        st.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY),
        "the runtime process runs from a writable mount"
    );
    b.ok(&["delete", "--force", &b.id]);
    let again = format!("/proc/self/fd/{}", exe.as_raw_fd());
    let err = std::fs::OpenOptions::new()
        .write(true)
        .open(&again)
        .unwrap_err();
    // EROFS; ETXTBSY while another test's runtime process runs the same file.
    assert!(
        matches!(err.raw_os_error(), Some(libc::EROFS) | Some(libc::ETXTBSY)),
        "reopening the runtime binary for writing: {err}"
    );
}

use std::os::unix::fs::OpenOptionsExt;

/// The init moves itself into its cgroups (v1: by thread; cgroup2: forked
/// there) and so does an exec'd process: each must end up in every one.
#[test]
fn init_and_exec_processes_are_in_every_cgroup() {
    let b = Bundle::new("cgjoin", &["sleep", "100"]);
    let pid = b.create();
    let in_every_cgroup = |pid: i32| {
        let lines = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
        assert!(lines.lines().count() > 0);
        for line in lines.lines() {
            assert!(
                line.ends_with(b.cgroup.as_str()),
                "process {pid} is outside {} in {line:?}",
                b.cgroup
            );
        }
    };
    in_every_cgroup(pid);
    for d in b.cgroup_dirs() {
        let procs = std::fs::read_to_string(d.join("cgroup.procs")).unwrap();
        assert!(
            procs.lines().any(|l| l.trim() == pid.to_string()),
            "{} lacks the init {pid}: {procs:?}",
            d.display()
        );
    }
    b.ok(&["start", &b.id]);
    let pid_file = b.root.join("exec.pid");
    b.ok(&[
        "exec",
        "--detach",
        "--pid-file",
        pid_file.to_str().unwrap(),
        &b.id,
        "sleep",
        "100",
    ]);
    let exec_pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    in_every_cgroup(exec_pid);
    b.ok(&["delete", "--force", &b.id]);
}
