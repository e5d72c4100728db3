//! The image operations: the store does the work; the core adds what only it knows (which
//! images containers use).

use crius_image::{Credentials, FsUsage, Image, PinnedImages};

use crate::daemon::Daemon;
use crate::error::{Error, Result};

/// Whether the kubelet must keep `image`: the pause image, however it came into the
/// store (pulled, or installed from the built-in binary), and every image a
/// `pinned_images` pattern names, as CRI-O does. Pinning only keeps the kubelet's image
/// garbage collection away: RemoveImage still removes a pinned image (CRI-O's "until
/// they are manually removed").
fn pin(mut image: Image, pause_id: Option<&str>, pinned: &PinnedImages) -> Image {
    if pause_id == Some(image.id.as_str()) || pinned.matches(&image) {
        image.pinned = true;
    }
    image
}

impl Daemon {
    /// PullImage.
    pub async fn pull_image(&self, name: &str, auth: Option<Credentials>) -> Result<Image> {
        Ok(self.images.pull(name, auth.as_ref()).await?)
    }

    /// A pull as PullImage makes it, with `progress` following its layers (for
    /// `crius pull`).
    pub async fn pull_image_with_progress(
        &self,
        name: &str,
        progress: std::sync::Arc<crius_image::PullProgress>,
    ) -> Result<Image> {
        Ok(self.images.pull_with_progress(name, None, progress).await?)
    }

    /// ListImages.
    pub fn list_images(&self) -> Vec<Image> {
        let pause = self.pause_image_id();
        let pinned = &self.config().images.pinned_images;
        self.images
            .list()
            .into_iter()
            .map(|image| pin(image, pause.as_deref(), pinned))
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
            Ok(image) => Ok(Some(pin(
                image,
                self.pause_image_id().as_deref(),
                &self.config().images.pinned_images,
            ))),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The image's config (user, entrypoint, ...), for verbose ImageStatus.
    pub fn image_config(&self, id: &str) -> Result<oci_spec::image::ImageConfiguration> {
        Ok(self.images.image_config(id)?)
    }

    /// RemoveImage: refused while a container uses the image; removing an image that is
    /// not here succeeds. A pinned image is removed like any other: pinning is for the
    /// kubelet's garbage collection (CRI-O does the same).
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
    fn the_pause_image_and_matching_names_get_pinned() {
        let none = PinnedImages::default();
        assert!(pin(image("sha256:p", false), Some("sha256:p"), &none).pinned);
        assert!(!pin(image("sha256:b", false), Some("sha256:p"), &none).pinned);
        assert!(!pin(image("sha256:b", false), None, &none).pinned);
        // An image pinned in the store stays pinned.
        assert!(pin(image("sha256:b", true), None, &none).pinned);
        let globs = PinnedImages::new(vec!["example.com/keep/*".into()]).unwrap();
        let mut kept = image("sha256:k", false);
        kept.repo_tags = vec!["example.com/keep/app:1".into()];
        assert!(pin(kept.clone(), None, &globs).pinned);
        kept.repo_tags = vec!["example.com/other/app:1".into()];
        assert!(!pin(kept, None, &globs).pinned);
    }
}
