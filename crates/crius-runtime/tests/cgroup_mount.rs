//! The spec's `cgroup` mount at /sys/fs/cgroup, as the container sees it: on
//! a v2-only layout (`support::v2`) a cgroup2 mount of the container's own
//! cgroup, and on this host's hybrid layout a tmpfs with the container's
//! directory of each hierarchy bound in. Needs root and busybox.

mod support;

use serde_json::json;
use support::v2::V2View;
use support::Bundle;

/// What the container reports: the /sys/fs/cgroup mounts from its
/// mountinfo, its own cgroup2 path from /proc/self/cgroup, the names in /sys/fs/cgroup, the
/// pids in its cgroup.procs, and whether a cgroup can be made there.
const PROBE: &str = "grep ' /sys/fs/cgroup' /proc/self/mountinfo; echo --; \
    cat /proc/self/cgroup; echo --; ls /sys/fs/cgroup; echo --; \
    cat /sys/fs/cgroup/cgroup.procs; echo --; \
    { mkdir /sys/fs/cgroup/probe 2>&1 && rmdir /sys/fs/cgroup/probe && echo made; } || true";

/// The probe's output, section by section.
struct Seen {
    mounts: Vec<Mountinfo>,
    cgroup: String,
    names: Vec<String>,
    procs: Vec<String>,
    mkdir: String,
}

/// One mountinfo line: its root in the filesystem, mount point, options
/// and filesystem type.
#[derive(Debug)]
struct Mountinfo {
    root: String,
    point: String,
    opts: Vec<String>,
    fstype: String,
}

impl Seen {
    fn parse(out: &str) -> Seen {
        let parts: Vec<&str> = out.split("--\n").collect();
        assert_eq!(parts.len(), 5, "probe output: {out}");
        let lines = |s: &str| s.lines().map(str::to_string).collect::<Vec<_>>();
        let mounts = parts[0]
            .lines()
            .map(|l| {
                let (left, right) = l.split_once(" - ").unwrap();
                let f: Vec<&str> = left.split(' ').collect();
                Mountinfo {
                    root: f[3].to_string(),
                    point: f[4].to_string(),
                    opts: f[5].split(',').map(str::to_string).collect(),
                    fstype: right.split(' ').next().unwrap().to_string(),
                }
            })
            .collect();
        Seen {
            mounts,
            // This host's kernel lists its v1 hierarchies too: the cgroup2 line.
            cgroup: parts[1]
                .lines()
                .find(|l| l.starts_with("0::"))
                .unwrap_or_default()
                .to_string(),
            names: lines(parts[2]),
            procs: lines(parts[3]),
            mkdir: parts[4].trim().to_string(),
        }
    }

    fn at(&self, point: &str) -> &Mountinfo {
        self.mounts
            .iter()
            .find(|m| m.point == point)
            .unwrap_or_else(|| panic!("nothing mounted at {point}: {:?}", self.mounts))
    }
}

/// A bundle running the probe, with a cgroup namespace when `cgroupns`,
/// and its `cgroup` mount read-only when `ro` (runc's default spec has "ro").
fn probe_bundle(name: &str, cgroupns: bool, ro: bool) -> Bundle {
    let b = Bundle::new(name, &["sh", "-c", PROBE]);
    b.edit(|v| {
        if cgroupns {
            v["linux"]["namespaces"]
                .as_array_mut()
                .unwrap()
                .push(json!({"type": "cgroup"}));
        }
        let m = v["mounts"]
            .as_array_mut()
            .unwrap()
            .iter_mut()
            .find(|m| m["type"] == "cgroup")
            .unwrap();
        m["options"] = json!([
            "nosuid",
            "noexec",
            "nodev",
            "relatime",
            if ro { "ro" } else { "rw" }
        ]);
    });
    b
}

/// Runs the probe of `b` on the v2-only layout and checks that its single
/// /sys/fs/cgroup mount is a cgroup2 mount of the container's own cgroup:
/// the files are those of a cgroup2 directory, nothing of the tree above
/// shows, and cgroup.procs holds the container's init (pid 1 in its pid
/// namespace). `own_ns`: in a cgroup namespace rooted at the container's
/// cgroup, which is then "/" to it; else it sees its path in the runtime's.
fn assert_v2_run(view: &V2View, b: &Bundle, ro: bool, own_ns: bool) {
    let (code, out, err) = view.run(b);
    assert_eq!(
        code,
        0,
        "stdout: {out}\nstderr: {err}\nlog: {}",
        b.log_text()
    );
    let seen = Seen::parse(&out);
    let under: Vec<&Mountinfo> = seen
        .mounts
        .iter()
        .filter(|m| m.point.starts_with("/sys/fs/cgroup"))
        .collect();
    assert_eq!(under.len(), 1, "mounts: {under:?}");
    let m = seen.at("/sys/fs/cgroup");
    assert_eq!(m.fstype, "cgroup2", "{m:?}");
    for f in [
        "cgroup.controllers",
        "cgroup.procs",
        "cgroup.subtree_control",
    ] {
        assert!(
            seen.names.contains(&f.to_string()),
            "{f} not in {:?}",
            seen.names
        );
    }
    // The parent of every test container's cgroup, had the view's root been mounted.
    assert!(
        !seen
            .names
            .iter()
            .any(|n| n == "crius-runtime-test" || n == "cgroup"),
        "the container sees more than its own cgroup: {:?}",
        seen.names
    );
    assert!(seen.procs.contains(&"1".to_string()), "{:?}", seen.procs);
    if ro {
        assert!(m.opts.contains(&"ro".to_string()), "{m:?}");
        assert!(
            seen.mkdir.contains("Read-only file system"),
            "mkdir: {}",
            seen.mkdir
        );
    } else {
        assert!(m.opts.contains(&"rw".to_string()), "{m:?}");
        assert_eq!(seen.mkdir, "made");
    }
    let path = if own_ns { "/" } else { b.cgroup.as_str() };
    assert_eq!(m.root, path, "{m:?}");
    assert_eq!(seen.cgroup, format!("0::{path}"));
}

#[test]
fn on_a_v2_only_layout_the_cgroup_mount_is_a_cgroup2_mount_of_the_containers_own_cgroup() {
    let view = V2View::new();

    // A cgroup namespace of its own, as crius asks for on a v2 host: a
    // cgroup2 mount whose root is the namespace's, the container's cgroup.
    for ro in [true, false] {
        let b = probe_bundle(if ro { "v2ns-ro" } else { "v2ns-rw" }, true, ro);
        assert_v2_run(&view, &b, ro, true);
    }

    // A user namespace too, as for crius's user-namespace pods: the cgroup
    // namespace, made after it, is its own, and the kernel lets its root
    // mount cgroup2 there.
    let b = probe_bundle("v2userns", true, true);
    b.in_new_user_namespace();
    assert_v2_run(&view, &b, true, true);

    // A user namespace in a cgroup namespace it does not own (the runtime's,
    // joined by path): the kernel refuses its root a cgroup2 mount, and the
    // container's own directory is bound instead.
    let b = probe_bundle("v2userns-join", false, true);
    b.in_new_user_namespace();
    b.edit(|v| {
        v["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "cgroup", "path": "/proc/self/ns/cgroup"}));
    });
    assert_v2_run(&view, &b, true, false);

    // No cgroup namespace: the container's own directory is bound there
    // (the tree above it stays hidden).
    let b = probe_bundle("v2bind", false, true);
    assert_v2_run(&view, &b, true, false);
}

/// The hybrid layout: a read-only tmpfs at /sys/fs/cgroup, and in it the
/// container's directory of each hierarchy, bound read-only; the same in a
/// cgroup namespace of the container's own, where those directories are
/// the namespace's roots.
#[test]
fn on_this_hybrid_host_the_cgroup_mount_binds_the_containers_dir_of_each_hierarchy() {
    for cgroupns in [false, true] {
        let b = probe_bundle(
            if cgroupns { "hybrid-ns" } else { "hybrid" },
            cgroupns,
            true,
        );
        let (code, out, err) = b.run();
        assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
        let seen = Seen::parse(&out);
        let top = seen.at("/sys/fs/cgroup");
        assert_eq!(top.fstype, "tmpfs", "{top:?}");
        assert!(top.opts.contains(&"ro".to_string()), "{top:?}");
        let root = if cgroupns { "/" } else { b.cgroup.as_str() };
        for (point, fstype) in [
            ("/sys/fs/cgroup/memory", "cgroup"),
            ("/sys/fs/cgroup/unified", "cgroup2"),
        ] {
            let m = seen.at(point);
            assert_eq!((m.fstype.as_str(), m.root.as_str()), (fstype, root));
            assert!(m.opts.contains(&"ro".to_string()), "{m:?}");
        }
        assert_eq!(
            seen.cgroup,
            format!("0::{}", if cgroupns { "/" } else { &b.cgroup })
        );
        assert!(
            seen.names.contains(&"memory".to_string()),
            "{:?}",
            seen.names
        );
        // The tmpfs holds no cgroup.procs of its own.
        assert!(seen.procs.is_empty(), "{:?}", seen.procs);
        assert!(
            seen.mkdir.contains("Read-only file system"),
            "mkdir: {}",
            seen.mkdir
        );
    }
}
