//! Host devices passed into containers: device nodes plus device cgroup rules.

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crius_cri_api::v1::Device as CriDevice;
use oci_spec::runtime::{LinuxDevice, LinuxDeviceCgroup, LinuxDeviceType};
use tracing::debug;

use crate::Error;

/// A device node found on the host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct HostDevice {
    pub path: PathBuf,
    pub typ: LinuxDeviceType,
    pub major: i64,
    pub minor: i64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// glibc's major()/minor() of a dev_t.
pub(crate) fn dev_major(rdev: u64) -> i64 {
    (((rdev >> 32) & 0xffff_f000) | ((rdev >> 8) & 0x0000_0fff)) as i64
}

/// glibc's major()/minor() of a dev_t.
pub(crate) fn dev_minor(rdev: u64) -> i64 {
    (((rdev >> 12) & 0xffff_ff00) | (rdev & 0x0000_00ff)) as i64
}

/// The device at `path` (following symlinks), or None when it is not a
/// block or character device.
pub(crate) fn host_device(path: &Path) -> std::io::Result<Option<HostDevice>> {
    let md = fs::metadata(path)?;
    let ft = md.file_type();
    let typ = if ft.is_char_device() {
        LinuxDeviceType::C
    } else if ft.is_block_device() {
        LinuxDeviceType::B
    } else {
        return Ok(None);
    };
    Ok(Some(HostDevice {
        path: path.to_path_buf(),
        typ,
        major: dev_major(md.rdev()),
        minor: dev_minor(md.rdev()),
        mode: md.mode() & 0o7777,
        uid: md.uid(),
        gid: md.gid(),
    }))
}

/// Every device node under /dev, as a privileged container sees them
/// (without /dev/pts, /dev/shm, /dev/mqueue, /dev/fd and /dev/console, which
/// the runtime sets up itself).
pub(crate) fn all_host_devices() -> Vec<HostDevice> {
    let mut out = Vec::new();
    walk_dev(Path::new("/dev"), &mut out);
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

fn walk_dev(dir: &Path, out: &mut Vec<HostDevice>) {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            debug!(dir = %dir.display(), error = %e, "skipping unreadable device dir");
            return;
        }
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(ft) = entry.file_type() else { continue };
        if ft.is_dir() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if matches!(
                name.as_ref(),
                "pts" | "shm" | "fd" | "mqueue" | ".lxc" | ".lxd-mounts" | ".udev"
            ) {
                continue;
            }
            walk_dev(&path, out);
            continue;
        }
        if path == Path::new("/dev/console") || ft.is_symlink() {
            continue;
        }
        if let Ok(Some(d)) = host_device(&path) {
            out.push(d);
        }
    }
}

/// The OCI device node and its cgroup allow rule.
pub(crate) fn oci_device(
    d: &HostDevice,
    container_path: &str,
    access: &str,
) -> (LinuxDevice, LinuxDeviceCgroup) {
    let mut dev = LinuxDevice::default();
    dev.set_path(PathBuf::from(container_path));
    dev.set_typ(d.typ);
    dev.set_major(d.major);
    dev.set_minor(d.minor);
    dev.set_file_mode(Some(d.mode & 0o777));
    dev.set_uid(Some(d.uid));
    dev.set_gid(Some(d.gid));
    let mut rule = LinuxDeviceCgroup::default();
    rule.set_allow(true);
    rule.set_typ(Some(d.typ));
    rule.set_major(Some(d.major));
    rule.set_minor(Some(d.minor));
    rule.set_access(Some(access.to_string()));
    (dev, rule)
}

/// The "deny everything" rule that opens every device cgroup list.
pub(crate) fn deny_all_rule() -> LinuxDeviceCgroup {
    let mut rule = LinuxDeviceCgroup::default();
    rule.set_allow(false);
    rule.set_access(Some("rwm".to_string()));
    rule
}

/// The "allow everything" rule of privileged containers.
pub(crate) fn allow_all_rule() -> LinuxDeviceCgroup {
    let mut rule = LinuxDeviceCgroup::default();
    rule.set_allow(true);
    rule.set_access(Some("rwm".to_string()));
    rule
}

/// A CRI device (a device node, or a directory of them) -> device nodes
/// and cgroup rules. Permissions are a subset of "rwm" ("" means "rwm").
pub(crate) fn cri_device(d: &CriDevice) -> Result<Vec<(LinuxDevice, LinuxDeviceCgroup)>, Error> {
    let host = Path::new(&d.host_path);
    let bad = |reason: String| Error::InvalidDevice {
        host_path: host.to_path_buf(),
        reason,
    };
    let access = if d.permissions.is_empty() {
        "rwm".to_string()
    } else {
        d.permissions.clone()
    };
    if !access.chars().all(|c| matches!(c, 'r' | 'w' | 'm'))
        || access.chars().count() > 3
        || (1..access.len()).any(|i| access[i..].contains(&access[i - 1..i]))
    {
        return Err(bad(format!(
            "permissions {:?} are not a subset of \"rwm\"",
            d.permissions
        )));
    }
    let container_path = if d.container_path.is_empty() {
        d.host_path.clone()
    } else {
        d.container_path.clone()
    };
    let container_path =
        super::mounts::clean_container_path("device container_path", &container_path)?;
    let md = fs::metadata(host).map_err(|e| bad(e.to_string()))?;
    if md.is_dir() {
        // Every device directly or deeply under the dir, at the same relative
        // place under container_path.
        let mut found = Vec::new();
        walk_dev(host, &mut found);
        found.sort_by(|a, b| a.path.cmp(&b.path));
        return Ok(found
            .iter()
            .filter_map(|hd| {
                let rel = hd.path.strip_prefix(host).ok()?;
                let dest = Path::new(&container_path).join(rel);
                Some(oci_device(hd, &dest.to_string_lossy(), &access))
            })
            .collect());
    }
    let hd = host_device(host)
        .map_err(|e| bad(e.to_string()))?
        .ok_or_else(|| bad("not a block or character device".to_string()))?;
    Ok(vec![oci_device(&hd, &container_path, &access)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_t_split() {
        // makedev(1, 3) = /dev/null; makedev(259, 70000) needs the high bits.
        assert_eq!((dev_major(0x103), dev_minor(0x103)), (1, 3));
        // makedev: major low 12 bits at 8, minor low 8 bits at 0, minor
        // high bits at 20 (major 259 has no bits above 12).
        let (major, minor) = (259u64, 70000u64);
        let rdev: u64 = ((major & 0xfff) << 8) | ((minor & 0xffff_ff00) << 12) | (minor & 0xff);
        assert_eq!((dev_major(rdev), dev_minor(rdev)), (259, 70000));
    }

    #[test]
    fn cri_device_table() {
        let dev = |host: &str, ctr: &str, perms: &str| CriDevice {
            host_path: host.into(),
            container_path: ctr.into(),
            permissions: perms.into(),
        };
        // (device, Ok((container path, type, major, minor, access)) or Err)
        let ok = cri_device(&dev("/dev/null", "/dev/xnull", "rw")).unwrap();
        assert_eq!(ok.len(), 1);
        let (d, r) = &ok[0];
        assert_eq!(d.path(), Path::new("/dev/xnull"));
        assert_eq!(d.typ(), LinuxDeviceType::C);
        assert_eq!((d.major(), d.minor()), (1, 3));
        assert_eq!(d.file_mode(), Some(0o666));
        assert!(r.allow());
        assert_eq!(r.typ(), Some(LinuxDeviceType::C));
        assert_eq!((r.major(), r.minor()), (Some(1), Some(3)));
        assert_eq!(r.access().as_deref(), Some("rw"));

        let (_, r) = &cri_device(&dev("/dev/zero", "", "")).unwrap()[0];
        assert_eq!(r.access().as_deref(), Some("rwm"));

        for (d, what) in [
            (dev("/dev/nonexistent-crius", "/dev/x", "rw"), "missing"),
            (dev("/etc/hostname", "/dev/x", "rw"), "regular file"),
            (dev("/dev/null", "/dev/x", "rwx"), "bad perms"),
            (dev("/dev/null", "/dev/x", "rr"), "repeated perms"),
            (dev("/dev/null", "dev/x", "r"), "relative container path"),
        ] {
            let err = cri_device(&d).unwrap_err();
            assert!(
                matches!(
                    err,
                    Error::InvalidDevice { .. } | Error::InvalidContainerPath { .. }
                ),
                "{what}: {err:?}"
            );
        }
    }

    #[test]
    fn host_devices_include_null_not_pts() {
        let all = all_host_devices();
        assert!(all.iter().any(|d| d.path == Path::new("/dev/null")));
        assert!(!all.iter().any(|d| d.path.starts_with("/dev/pts")));
        assert!(!all.iter().any(|d| d.path == Path::new("/dev/console")));
    }
}
