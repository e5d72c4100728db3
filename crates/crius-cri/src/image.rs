//! ImageService RPCs: PullImage, ListImages, ImageStatus, RemoveImage, ImageFsInfo.

use std::collections::HashMap;

use crius_core::Daemon;
use crius_cri_api::v1 as cri;
use tonic::Status;

use crate::status::{invalid, to_status};

fn image_name(spec: Option<&cri::ImageSpec>, rpc: &str) -> Result<String, Status> {
    match spec.map(|s| s.image.trim()) {
        Some(name) if !name.is_empty() => Ok(name.to_string()),
        _ => Err(invalid(format!("{rpc} needs an image name"))),
    }
}

/// PullImage.
pub async fn pull(
    daemon: &Daemon,
    req: cri::PullImageRequest,
) -> Result<cri::PullImageResponse, Status> {
    let name = image_name(req.image.as_ref(), "PullImage")?;
    let auth = req.auth.map(|a| crius_image::Credentials {
        username: a.username,
        password: a.password,
        auth: a.auth,
        identity_token: a.identity_token,
        registry_token: a.registry_token,
    });
    let image = daemon.pull_image(&name, auth).await.map_err(to_status)?;
    Ok(cri::PullImageResponse {
        image_ref: image.id,
    })
}

/// The user an image runs as: a numeric uid, or a name.
fn image_user(user: &str) -> (Option<cri::Int64Value>, String) {
    let user = user.split(':').next().unwrap_or("");
    match user.parse::<i64>() {
        Ok(uid) => (Some(cri::Int64Value { value: uid }), String::new()),
        Err(_) if user.is_empty() => (Some(cri::Int64Value { value: 0 }), String::new()),
        Err(_) => (None, user.to_string()),
    }
}

fn to_cri(daemon: &Daemon, image: crius_image::Image) -> cri::Image {
    let user = daemon
        .image_config(&image.id)
        .ok()
        .and_then(|c| c.config().as_ref().and_then(|c| c.user().clone()))
        .unwrap_or_default();
    let (uid, username) = image_user(&user);
    cri::Image {
        id: image.id.clone(),
        repo_tags: image.repo_tags,
        repo_digests: image.repo_digests,
        size: image.size,
        uid,
        username,
        spec: Some(cri::ImageSpec {
            image: image.id,
            ..Default::default()
        }),
        pinned: image.pinned,
    }
}

/// ListImages; the filter matches by name or id like ImageStatus.
pub fn list(
    daemon: &Daemon,
    req: cri::ListImagesRequest,
) -> Result<cri::ListImagesResponse, Status> {
    let wanted = req
        .filter
        .and_then(|f| f.image)
        .map(|s| s.image)
        .filter(|s| !s.is_empty());
    let images = match wanted {
        Some(name) => daemon
            .image_status(&name)
            .map_err(to_status)?
            .into_iter()
            .collect(),
        None => daemon.list_images(),
    };
    Ok(cri::ListImagesResponse {
        images: images.into_iter().map(|i| to_cri(daemon, i)).collect(),
    })
}

/// ImageStatus: an absent image is an empty answer, not an error.
pub fn status(
    daemon: &Daemon,
    req: cri::ImageStatusRequest,
) -> Result<cri::ImageStatusResponse, Status> {
    let name = image_name(req.image.as_ref(), "ImageStatus")?;
    let Some(image) = daemon.image_status(&name).map_err(to_status)? else {
        return Ok(cri::ImageStatusResponse::default());
    };
    let mut info = HashMap::new();
    if req.verbose {
        let config = daemon.image_config(&image.id).map_err(to_status)?;
        info.insert(
            "info".to_string(),
            serde_json::json!({ "imageSpec": config }).to_string(),
        );
    }
    Ok(cri::ImageStatusResponse {
        image: Some(to_cri(daemon, image)),
        info,
    })
}

/// RemoveImage.
pub fn remove(
    daemon: &Daemon,
    req: cri::RemoveImageRequest,
) -> Result<cri::RemoveImageResponse, Status> {
    let name = image_name(req.image.as_ref(), "RemoveImage")?;
    daemon.remove_image(&name).map_err(to_status)?;
    Ok(cri::RemoveImageResponse {})
}

/// ImageFsInfo.
pub fn fs_info(daemon: &Daemon) -> Result<cri::ImageFsInfoResponse, Status> {
    let usage = daemon.image_fs_usage().map_err(to_status)?;
    let fs = cri::FilesystemUsage {
        timestamp: crius_core::now_ns(),
        fs_id: Some(cri::FilesystemIdentifier {
            mountpoint: usage.mountpoint.display().to_string(),
        }),
        used_bytes: Some(cri::UInt64Value {
            value: usage.used_bytes,
        }),
        inodes_used: Some(cri::UInt64Value {
            value: usage.inodes_used,
        }),
    };
    Ok(cri::ImageFsInfoResponse {
        image_filesystems: vec![fs.clone()],
        container_filesystems: vec![fs],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_user_is_a_uid_or_a_name() {
        assert_eq!(image_user("").0.map(|v| v.value), Some(0));
        assert_eq!(image_user("1000:1000").0.map(|v| v.value), Some(1000));
        let (uid, name) = image_user("nobody");
        assert!(uid.is_none());
        assert_eq!(name, "nobody");
    }
}
