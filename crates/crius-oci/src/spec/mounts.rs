//! Mounts: the standard kernel filesystems, the pod's files and the CRI
//! mounts with their propagation.

use std::path::{Path, PathBuf};

use crius_cri_api::v1::{Mount as CriMount, MountPropagation};
use oci_spec::runtime::Mount;
use tracing::debug;

use crate::Error;

/// Propagation the rootfs needs for the container's mounts, by strength.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum RootPropagation {
    None,
    Slave,
    Shared,
}

pub(crate) fn mount(dest: &str, typ: &str, source: &Path, options: &[&str]) -> Mount {
    let mut m = Mount::default();
    m.set_destination(PathBuf::from(dest));
    m.set_typ(Some(typ.to_string()));
    m.set_source(Some(source.to_path_buf()));
    m.set_options(Some(options.iter().map(|s| s.to_string()).collect()));
    m
}

/// /proc, /dev, /dev/pts, /dev/mqueue, /sys and /sys/fs/cgroup as runc's
/// default spec has them; sysfs and cgroupfs are read-write only for
/// privileged containers.
pub(crate) fn standard_mounts(privileged: bool, with_cgroup: bool) -> Vec<Mount> {
    let sys_mode = if privileged { "rw" } else { "ro" };
    let mut v = vec![
        mount(
            "/proc",
            "proc",
            Path::new("proc"),
            &["nosuid", "noexec", "nodev"],
        ),
        mount(
            "/dev",
            "tmpfs",
            Path::new("tmpfs"),
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        mount(
            "/dev/pts",
            "devpts",
            Path::new("devpts"),
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        ),
        mount(
            "/dev/mqueue",
            "mqueue",
            Path::new("mqueue"),
            &["nosuid", "noexec", "nodev"],
        ),
        mount(
            "/sys",
            "sysfs",
            Path::new("sysfs"),
            &["nosuid", "noexec", "nodev", sys_mode],
        ),
    ];
    if with_cgroup {
        v.push(mount(
            "/sys/fs/cgroup",
            "cgroup",
            Path::new("cgroup"),
            &["nosuid", "noexec", "nodev", "relatime", sys_mode],
        ));
    }
    v
}

/// /dev/shm: the pod's shm tmpfs, or the host's /dev/shm for host-IPC pods.
pub(crate) fn shm_mount(shm_path: Option<&Path>) -> Mount {
    match shm_path {
        Some(p) => mount(
            "/dev/shm",
            "bind",
            p,
            &["rbind", "rprivate", "nosuid", "noexec", "nodev"],
        ),
        None => mount(
            "/dev/shm",
            "bind",
            Path::new("/dev/shm"),
            &["rbind", "rprivate", "nosuid", "noexec", "nodev"],
        ),
    }
}

/// A bind mount of one of the pod's files (/etc/hosts, /etc/resolv.conf,
/// /etc/hostname); the file must exist.
pub(crate) fn pod_file_mount(dest: &str, source: &Path, readonly: bool) -> Result<Mount, Error> {
    if !source.exists() {
        return Err(Error::MountSourceMissing {
            host_path: source.to_path_buf(),
            container_path: dest.to_string(),
        });
    }
    let mode = if readonly { "ro" } else { "rw" };
    Ok(mount(
        dest,
        "bind",
        source,
        &["rbind", "rprivate", "nosuid", "nodev", "noexec", mode],
    ))
}

/// An absolute, clean container path: no `..`, `.` or empty components are
/// left (`/a//b/./c/` -> `/a/b/c`); `..` is refused outright.
pub(crate) fn clean_container_path(field: &str, path: &str) -> Result<String, Error> {
    let bad = |reason: &str| Error::InvalidContainerPath {
        field: field.to_string(),
        path: path.to_string(),
        reason: reason.to_string(),
    };
    if !path.starts_with('/') {
        return Err(bad("not absolute"));
    }
    if path.contains('\0') {
        return Err(bad("contains NUL"));
    }
    let mut out = String::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => return Err(bad("contains '..'")),
            c => {
                out.push('/');
                out.push_str(c);
            }
        }
    }
    if out.is_empty() {
        out.push('/');
    }
    Ok(out)
}

/// One line of /proc/self/mountinfo: mount point and whether it is
/// shared or a slave.
#[derive(Debug, PartialEq, Eq)]
struct MountInfo {
    mount_point: String,
    shared: bool,
    slave: bool,
}

fn unescape_mountinfo(s: &str) -> String {
    // Spaces, tabs, newlines and backslashes are octal-escaped (\040).
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() {
            let oct = &b[i + 1..i + 4];
            if oct.iter().all(|c| (b'0'..=b'7').contains(c)) {
                let v = oct
                    .iter()
                    .fold(0u32, |acc, c| acc * 8 + u32::from(c - b'0'));
                if let Ok(v) = u8::try_from(v) {
                    out.push(v);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_mountinfo(text: &str) -> Vec<MountInfo> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            if f.len() < 7 {
                return None;
            }
            let sep = f.iter().position(|x| *x == "-")?;
            let optional = &f[6..sep];
            Some(MountInfo {
                mount_point: unescape_mountinfo(f[4]),
                shared: optional.iter().any(|o| o.starts_with("shared:")),
                slave: optional.iter().any(|o| o.starts_with("master:")),
            })
        })
        .collect()
}

/// The mount (from mountinfo text) that holds `path`: the longest mount
/// point that is a path prefix of it; the last one wins when stacked.
fn mount_of<'a>(infos: &'a [MountInfo], path: &Path) -> Option<&'a MountInfo> {
    let mut best: Option<&MountInfo> = None;
    for m in infos {
        if path.starts_with(&m.mount_point)
            && best.is_none_or(|b| m.mount_point.len() >= b.mount_point.len())
        {
            best = Some(m);
        }
    }
    best
}

/// A CRI mount as an OCI bind mount, plus the rootfs propagation it needs.
/// The host path is resolved (symlinks followed) and must exist.
pub(crate) fn cri_mount(m: &CriMount, mountinfo: &str) -> Result<(Mount, RootPropagation), Error> {
    let dest = clean_container_path("mount container_path", &m.container_path)?;
    let unsupported = |reason: &str| Error::UnsupportedMount {
        container_path: m.container_path.clone(),
        reason: reason.to_string(),
    };
    if m.host_path.is_empty() {
        // The core mounts an image volume and passes its directory as host_path; an
        // image mount without one was never resolved, and must not become a bind of "".
        if m.image.as_ref().is_some_and(|i| !i.image.is_empty()) {
            return Err(unsupported(
                "the image volume was not mounted before the spec was made",
            ));
        }
        return Err(Error::MountSourceMissing {
            host_path: PathBuf::new(),
            container_path: m.container_path.clone(),
        });
    }
    if !m.uid_mappings.is_empty() || !m.gid_mappings.is_empty() {
        return Err(unsupported(
            "id-mapped mounts need a user namespace, which is not supported",
        ));
    }
    let host = Path::new(&m.host_path);
    let source = std::fs::canonicalize(host).map_err(|e| {
        debug!(host_path = %m.host_path, error = %e, "mount source not usable");
        Error::MountSourceMissing {
            host_path: host.to_path_buf(),
            container_path: m.container_path.clone(),
        }
    })?;
    if m.selinux_relabel {
        debug!(container_path = %m.container_path, "selinux_relabel ignored: SELinux is not enabled");
    }

    let propagation =
        MountPropagation::try_from(m.propagation).unwrap_or(MountPropagation::PropagationPrivate);
    if m.recursive_read_only {
        if !m.readonly {
            return Err(unsupported("recursive_read_only needs readonly"));
        }
        if propagation != MountPropagation::PropagationPrivate {
            return Err(unsupported("recursive_read_only needs PROPAGATION_PRIVATE"));
        }
    }

    let (prop_opt, root) = match propagation {
        MountPropagation::PropagationPrivate => ("rprivate", RootPropagation::None),
        MountPropagation::PropagationHostToContainer => ("rslave", RootPropagation::Slave),
        MountPropagation::PropagationBidirectional => ("rshared", RootPropagation::Shared),
    };
    if root != RootPropagation::None {
        let infos = parse_mountinfo(mountinfo);
        let owner = mount_of(&infos, &source);
        let ok = owner.is_some_and(|o| match root {
            RootPropagation::Shared => o.shared,
            _ => o.shared || o.slave,
        });
        if !ok {
            return Err(Error::MountPropagation {
                host_path: source.clone(),
                container_path: m.container_path.clone(),
                mount_point: owner.map(|o| o.mount_point.clone()).unwrap_or_default(),
                needed: if root == RootPropagation::Shared {
                    "shared".to_string()
                } else {
                    "shared or slave".to_string()
                },
            });
        }
    }

    let ro = if m.readonly {
        if m.recursive_read_only {
            "rro"
        } else {
            "ro"
        }
    } else {
        "rw"
    };
    let opts = ["rbind", prop_opt, ro];
    Ok((mount(&dest, "bind", &source, &opts), root))
}

/// Sorts mounts so that a parent directory is mounted before what is
/// mounted under it (by number of path components, stable).
pub(crate) fn sort_by_depth(mounts: &mut [Mount]) {
    mounts.sort_by_key(|m| m.destination().components().count());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_path_table() {
        let rows: &[(&str, Option<&str>)] = &[
            ("/data", Some("/data")),
            ("/a//b/./c/", Some("/a/b/c")),
            ("/", Some("/")),
            ("relative", None),
            ("", None),
            ("/a/../../etc", None),
            ("/a/..", None),
            ("/a\0b", None),
        ];
        for (p, want) in rows {
            let got = clean_container_path("x", p).ok();
            assert_eq!(got.as_deref(), *want, "{p:?}");
        }
    }

    const MOUNTINFO: &str = "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n\
        50 27 0:40 / /mnt/shared rw shared:7 - tmpfs tmpfs rw\n\
        51 27 0:41 / /mnt/slave rw master:7 - tmpfs tmpfs rw\n\
        52 27 0:42 / /mnt/with\\040space rw shared:9 - tmpfs tmpfs rw\n";

    #[test]
    fn mountinfo_parsing() {
        let infos = parse_mountinfo(MOUNTINFO);
        assert_eq!(infos.len(), 4);
        assert_eq!(infos[3].mount_point, "/mnt/with space");
        assert!(infos[1].shared && !infos[1].slave);
        assert!(infos[2].slave && !infos[2].shared);
        let m = mount_of(&infos, Path::new("/mnt/shared/x/y")).unwrap();
        assert_eq!(m.mount_point, "/mnt/shared");
        let m = mount_of(&infos, Path::new("/mnt/sharedx")).unwrap();
        assert_eq!(m.mount_point, "/");
    }

    #[test]
    fn unescape() {
        assert_eq!(unescape_mountinfo("/a\\040b\\011c"), "/a b\tc");
        assert_eq!(unescape_mountinfo("/a\\"), "/a\\");
        assert_eq!(unescape_mountinfo("/a\\04"), "/a\\04");
    }
}
