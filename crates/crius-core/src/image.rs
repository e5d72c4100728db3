//! The image operations: the store does the work; the core adds what only it knows (which
//! images containers use).

use crius_image::{Credentials, FsUsage, Image};

use crate::daemon::Daemon;
use crate::error::{Error, Result};

impl Daemon {
    /// PullImage.
    pub async fn pull_image(&self, name: &str, auth: Option<Credentials>) -> Result<Image> {
        Ok(self.images.pull(name, auth.as_ref()).await?)
    }

    /// ListImages.
    pub fn list_images(&self) -> Vec<Image> {
        self.images.list()
    }

    /// ImageStatus: `None` when the image is not here (the CRI answers that with an empty
    /// status, not an error).
    pub fn image_status(&self, name: &str) -> Result<Option<Image>> {
        match self.images.resolve(name) {
            Ok(image) => Ok(Some(image)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The image's config (user, entrypoint, ...), for verbose ImageStatus.
    pub fn image_config(&self, id: &str) -> Result<oci_spec::image::ImageConfiguration> {
        Ok(self.images.image_config(id)?)
    }

    /// RemoveImage: refused while a container uses the image; removing an image that is
    /// not here succeeds.
    pub fn remove_image(&self, name: &str) -> Result<()> {
        let image = match self.images.resolve(name) {
            Ok(image) => image,
            Err(e) if e.is_not_found() => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        // Removing one of several tags leaves the image, so only the last name is guarded.
        let removes_image =
            image.repo_tags.len() <= 1 || !image.repo_tags.iter().any(|t| t == name);
        if removes_image {
            let users: Vec<String> = self
                .list_containers(None)
                .into_iter()
                .filter(|c| c.image_id == image.id)
                .map(|c| c.id)
                .collect();
            if !users.is_empty() {
                return Err(Error::FailedPrecondition(format!(
                    "image {name} ({}) is in use by container(s) {}",
                    image.id,
                    users.join(", ")
                )));
            }
            let pause_users = self
                .list_pods(None)
                .into_iter()
                .filter(|p| p.pause_image == image.id)
                .count();
            if pause_users > 0 {
                return Err(Error::FailedPrecondition(format!(
                    "image {name} ({}) is the pause image of {pause_users} pod(s)",
                    image.id
                )));
            }
        }
        Ok(self.images.remove(name)?)
    }

    /// ImageFsInfo.
    pub fn image_fs_usage(&self) -> Result<FsUsage> {
        Ok(self.images.fs_usage()?)
    }
}
