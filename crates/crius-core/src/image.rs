//! The image operations: the store does the work; the core adds what only it knows (which
//! images containers use).

use crius_image::{Credentials, FsUsage, Image};

use crate::daemon::Daemon;
use crate::error::{Error, Result};

/// The pause image is reported pinned however it came into the store (pulled, or
/// installed from the built-in binary), as CRI-O does, so that the kubelet's image
/// garbage collection never removes it.
fn pin_pause(mut image: Image, pause_id: Option<&str>) -> Image {
    if pause_id == Some(image.id.as_str()) {
        image.pinned = true;
    }
    image
}

impl Daemon {
    /// PullImage.
    pub async fn pull_image(&self, name: &str, auth: Option<Credentials>) -> Result<Image> {
        Ok(self.images.pull(name, auth.as_ref()).await?)
    }

    /// ListImages.
    pub fn list_images(&self) -> Vec<Image> {
        let pause = self.pause_image_id();
        self.images
            .list()
            .into_iter()
            .map(|image| pin_pause(image, pause.as_deref()))
            .collect()
    }

    /// The id of the configured pause image, when it is in the store.
    fn pause_image_id(&self) -> Option<String> {
        self.images
            .resolve(&self.config().pause_image)
            .ok()
            .map(|image| image.id)
    }

    /// ImageStatus: `None` when the image is not here (the CRI answers that with an empty
    /// status, not an error).
    pub fn image_status(&self, name: &str) -> Result<Option<Image>> {
        match self.images.resolve(name) {
            Ok(image) => Ok(Some(pin_pause(image, self.pause_image_id().as_deref()))),
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
                .filter(|c| c.image_id == image.id || c.image_volumes.contains(&image.id))
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
        match self.images.remove(name) {
            // Removed by a concurrent call since it was resolved above: gone, as asked.
            Err(e) if e.is_not_found() => Ok(()),
            result => Ok(result?),
        }
    }

    /// ImageFsInfo.
    pub fn image_fs_usage(&self) -> Result<FsUsage> {
        Ok(self.images.fs_usage()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(id: &str, pinned: bool) -> Image {
        Image {
            id: id.to_string(),
            repo_tags: Vec::new(),
            repo_digests: Vec::new(),
            size: 1,
            pinned,
        }
    }

    #[test]
    fn only_the_pause_image_gets_pinned() {
        assert!(pin_pause(image("sha256:p", false), Some("sha256:p")).pinned);
        assert!(!pin_pause(image("sha256:b", false), Some("sha256:p")).pinned);
        assert!(!pin_pause(image("sha256:b", false), None).pinned);
        // An image pinned in the store stays pinned.
        assert!(pin_pause(image("sha256:b", true), None).pinned);
    }
}
