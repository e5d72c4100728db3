//! Image volumes (`Mount.image`): an image's root filesystem mounted read-only in a
//! container, whole or one path of it (`image_sub_path`).
//!
//! Each is an overlay of the image's layers alone (no upper dir) at
//! `CONTAINER_DIR/image-volumes/N`, which the container gets as a read-only bind mount.
//! The record keeps the kubelet's mounts as sent; the spec is built from a copy in which
//! each image volume is that bind.

use std::path::{Path, PathBuf};

use crius_cri_api::v1 as cri;
use crius_image::ImageStore;
use tracing::warn;

use crate::daemon::Daemon;
use crate::error::{Error, Result};
use crate::model::ContainerRecord;
use crate::undo::Undo;

const DIR: &str = "image-volumes";

/// Whether a CRI mount asks for an image volume.
pub(crate) fn is_image_volume(m: &cri::Mount) -> bool {
    m.image.as_ref().is_some_and(|i| !i.image.is_empty())
}

impl Daemon {
    /// Mounts the image volumes of `rec` under `dir` and notes their images in the
    /// record. Returns the config the spec is made from, or `None` when `rec.config`
    /// has no image volume and serves as it is.
    pub(crate) fn mount_image_volumes(
        &self,
        rec: &mut ContainerRecord,
        dir: &Path,
        undo: &mut Undo,
    ) -> Result<Option<cri::ContainerConfig>> {
        if !rec.config.mounts.iter().any(is_image_volume) {
            return Ok(None);
        }
        let base = dir.join(DIR);
        {
            let base = base.clone();
            undo.push("unmount image volumes", move || {
                unmount_image_volumes_in(&base).map_err(|e| e.to_string())
            });
        }
        let mut config = rec.config.clone();
        let mut images = Vec::new();
        for (n, m) in config.mounts.iter_mut().enumerate() {
            if !is_image_volume(m) {
                continue;
            }
            let what = format!("image volume at {}", m.container_path);
            let source = self
                .mount_image_volume(m, &base.join(n.to_string()), &mut images)
                .map_err(|e| e.at_step(what))?;
            m.host_path = source.display().to_string();
            m.readonly = true;
            m.image = None;
            m.image_sub_path.clear();
        }
        rec.image_volumes = images;
        Ok(Some(config))
    }

    /// One image volume mounted at `target`; the path the container gets.
    fn mount_image_volume(
        &self,
        m: &cri::Mount,
        target: &Path,
        images: &mut Vec<String>,
    ) -> Result<PathBuf> {
        let spec = m.image.as_ref().expect("an image volume");
        let image = self
            .images
            .resolve(&spec.image)
            .or_else(|e| match spec.image_ref.is_empty() {
                // The digest the kubelet resolved names the same image when the
                // reference it pulled by has moved on.
                false if e.is_not_found() => self.images.resolve(&spec.image_ref),
                _ => Err(e),
            })
            .map_err(|e| match e.is_not_found() {
                true => Error::NotFound {
                    kind: "image",
                    id: spec.image.clone(),
                },
                false => Error::from(e),
            })?;
        self.images
            .mount_image_volume(&image.id, target)
            .map_err(|e| Error::from(e).at_step("mount the image read-only"))?;
        images.push(image.id);
        if m.image_sub_path.is_empty() {
            return Ok(target.to_path_buf());
        }
        crius_image::resolve_in_root(target, Path::new(&m.image_sub_path)).map_err(|e| {
            match e.kind() {
                std::io::ErrorKind::NotFound => Error::NotFound {
                    kind: "image_sub_path",
                    id: m.image_sub_path.clone(),
                },
                _ => Error::InvalidArgument(format!(
                    "image_sub_path {:?} of image {}: {e}",
                    m.image_sub_path, spec.image
                )),
            }
        })
    }
}

/// Unmounts every image volume of a container (its dir); succeeds when there are none.
pub(crate) fn unmount_image_volumes(container_dir: &Path) -> Result<()> {
    unmount_image_volumes_in(&container_dir.join(DIR)).map_err(Error::from)
}

fn unmount_image_volumes_in(base: &Path) -> std::result::Result<(), crius_image::Error> {
    let entries = match std::fs::read_dir(base) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            warn!(dir = %base.display(), error = %e, "image volumes not listed");
            return Ok(());
        }
    };
    for entry in entries.flatten() {
        ImageStore::unmount_image_volume(&entry.path())?;
    }
    let _ = std::fs::remove_dir(base);
    Ok(())
}
