//! Where a container's (or the pause container's) rootfs is mounted. Most are at
//! `<dir>/rootfs` under the root-only state dir. The rootfs of a pod in a user namespace
//! of its own is id-mapped and mounted under `<run_dir>/userns/<id>/rootfs`: the runtime
//! reaches it from inside that namespace, where the pod's root may only pass through dirs
//! open to others (`userns` is 0711) or its own (`<id>` is 0700, owned by its mapped root).

use std::path::{Path, PathBuf};

use crius_cri_api::v1 as cri;
use crius_image::idmap::{IdMap, IdMappings};
use crius_oci::spec;

use crate::daemon::Daemon;
use crate::error::{Error, Result};

/// The uid and gid mappings of a pod in a user namespace of its own.
pub(crate) fn pod_id_mappings(config: &cri::PodSandboxConfig) -> Option<IdMappings> {
    let userns = spec::pod_user_namespace(config)?;
    let maps = |m: &[cri::IdMapping]| {
        m.iter()
            .map(|m| IdMap {
                container_id: m.container_id,
                host_id: m.host_id,
                size: m.length,
            })
            .collect()
    };
    Some(IdMappings {
        uids: maps(&userns.uids),
        gids: maps(&userns.gids),
    })
}

impl Daemon {
    /// The dir holding the id-mapped rootfs of `id` when its pod has a user namespace.
    pub(crate) fn userns_rootfs_dir(&self, id: &str) -> PathBuf {
        self.config().run_dir.join("userns").join(id)
    }

    /// Mounts the rootfs of `id` (a container, or a pod's pause) from `image_id`, with its
    /// upper dir in `dir`; id-mapped when the pod has a user namespace (the pause's, when
    /// `pause_pid` names it, saves making one). Returns the rootfs.
    pub(crate) fn mount_rootfs(
        &self,
        pod: &cri::PodSandboxConfig,
        pause_pid: Option<u32>,
        image_id: &str,
        id: &str,
        dir: &Path,
    ) -> Result<PathBuf> {
        let Some(maps) = pod_id_mappings(pod) else {
            return Ok(self.images.mount_rootfs(image_id, dir)?);
        };
        let parent = self.userns_rootfs_dir(id);
        let top = parent.parent().expect("userns dir has a parent");
        crius_oci::dir_with_mode(top, 0o711)
            .map_err(|e| Error::io("make the user namespace rootfs dir (0711)", top, e))?;
        crius_oci::dir_with_mode(&parent, 0o700)
            .map_err(|e| Error::io("make the rootfs dir", &parent, e))?;
        let (uid, gid) = maps.root();
        std::os::unix::fs::chown(&parent, Some(uid), Some(gid))
            .map_err(|e| Error::io("give the rootfs dir to the pod's root", &parent, e))?;
        let rootfs = parent.join(crius_image::ROOTFS_DIR);
        // The pause's namespace, opened first and then checked to have the pod's maps (a
        // pid taken over by another process would not).
        let userns = pause_pid.and_then(|pid| {
            let fd = std::fs::File::open(format!("/proc/{pid}/ns/user")).ok()?;
            let same = |file: &str, maps: &[IdMap]| {
                let want: Vec<[u32; 3]> = maps
                    .iter()
                    .map(|m| [m.container_id, m.host_id, m.size])
                    .collect();
                std::fs::read_to_string(format!("/proc/{pid}/{file}")).is_ok_and(|text| {
                    let got: Vec<[u32; 3]> = text
                        .lines()
                        .filter_map(|l| {
                            let v: Vec<u32> = l
                                .split_whitespace()
                                .filter_map(|x| x.parse().ok())
                                .collect();
                            v.try_into().ok()
                        })
                        .collect();
                    got == want
                })
            };
            (same("uid_map", &maps.uids) && same("gid_map", &maps.gids))
                .then(|| std::os::fd::OwnedFd::from(fd))
        });
        self.images
            .mount_rootfs_idmapped(image_id, dir, &rootfs, &maps, userns)?;
        Ok(rootfs)
    }
}

/// Unmounts the rootfs of `id` wherever it is (`userns_dir` is
/// [`Daemon::userns_rootfs_dir`] of it) and removes it with the upper dir in `dir`.
/// Succeeds when they are gone already.
pub(crate) fn unmount_rootfs(userns_dir: &Path, dir: &Path) -> Result<()> {
    if userns_dir.exists() {
        crius_image::ImageStore::unmount_image_volume(&userns_dir.join(crius_image::ROOTFS_DIR))?;
        match std::fs::remove_dir(userns_dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("remove the rootfs dir", userns_dir, e)),
        }
    }
    Ok(crius_image::ImageStore::unmount_rootfs(dir)?)
}
