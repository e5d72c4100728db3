//! The built-in pause image: one layer holding the static crius-pause binary,
//! so pods start on a node that cannot reach any registry.

use std::path::Path;

use serde_json::json;

use crate::index::ImageRecord;
use crate::layers::{chain_ids, sha256_digest, LayerMeta};
use crate::pull::{host_platform, MT_OCI_CONFIG, MT_OCI_LAYER_TAR, MT_OCI_MANIFEST};
use crate::reference;
use crate::unpack::{disk_usage, unpack_layer};
use crate::{Error, Image, ImageStore};

/// A fixed mtime keeps the image id stable for the same binary.
const EPOCH: u64 = 0;

/// The layer tar: `/pause`, mode 0755, owned by root.
fn layer_tar(binary: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o755);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(EPOCH);
    h.set_size(binary.len() as u64);
    b.append_data(&mut h, "pause", binary)?;
    b.into_inner()
}

impl ImageStore {
    /// Records a one-layer local image `name` holding the static crius-pause
    /// binary at /pause (Entrypoint ["/pause"]). The image is pinned. Installing
    /// the same binary again only (re)points the tag.
    pub fn install_pause_image(&self, name: &str, pause_binary: &Path) -> Result<Image, Error> {
        let parsed = reference::parse(name)?;
        let image_name = self
            .inner
            .access()
            .registries
            .candidates(name)?
            .into_iter()
            .next()
            .unwrap_or_else(|| parsed.qualify(reference::DOCKER_HUB));
        let binary = std::fs::read(pause_binary).map_err(|e| Error::io(pause_binary, e))?;
        let tar = layer_tar(&binary).map_err(|e| Error::io(pause_binary, e))?;
        let diff_id = sha256_digest(&tar);
        let (os, arch, variant) = host_platform();
        let mut config = json!({
            "architecture": arch,
            "os": os,
            "config": {
                "Entrypoint": ["/pause"],
                "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                "WorkingDir": "/",
            },
            "rootfs": { "type": "layers", "diff_ids": [diff_id] },
            "history": [{ "created_by": "crius install_pause_image", "comment": "crius-pause" }],
        });
        if let Some(v) = variant {
            config["variant"] = json!(v);
        }
        let config_raw = serde_json::to_vec(&config).map_err(|e| Error::CorruptStore {
            path: pause_binary.to_path_buf(),
            reason: e.to_string(),
        })?;
        let config_digest = sha256_digest(&config_raw);
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": MT_OCI_MANIFEST,
            "config": { "mediaType": MT_OCI_CONFIG, "digest": config_digest, "size": config_raw.len() },
            "layers": [{ "mediaType": MT_OCI_LAYER_TAR, "digest": diff_id, "size": tar.len() }],
        });
        let manifest_raw = serde_json::to_vec(&manifest).map_err(|e| Error::CorruptStore {
            path: pause_binary.to_path_buf(),
            reason: e.to_string(),
        })?;
        let manifest_digest = sha256_digest(&manifest_raw);

        let chains = chain_ids(std::slice::from_ref(&diff_id));
        let inner = &self.inner;
        let _pins = inner.pin_layers(&chains);
        let chain = &chains[0];
        if !inner.layers.exists(chain) {
            let temp = inner.layers.begin(chain)?;
            unpack_layer(
                tar.as_slice(),
                &temp.diff(),
                &diff_id,
                &crate::unpack::LayerLimits::default(),
            )?;
            let (usage_bytes, usage_inodes) =
                disk_usage(&temp.diff()).map_err(|e| Error::io(temp.diff(), e))?;
            let meta = LayerMeta {
                chain_id: chain.clone(),
                diff_id: diff_id.clone(),
                parent: None,
                digest: diff_id.clone(),
                media_type: MT_OCI_LAYER_TAR.to_string(),
                size: tar.len() as u64,
                usage_bytes,
                usage_inodes,
            };
            inner.layers.commit(temp, &meta)?;
        }
        let record = ImageRecord {
            id: config_digest.clone(),
            repo_tags: image_name.tagged().into_iter().collect(),
            repo_digests: Vec::new(),
            size: (tar.len() + config_raw.len()) as u64,
            pinned: true,
            manifest: manifest_digest.clone(),
            layers: chains.clone(),
        };
        let blobs: [(&str, &[u8]); 2] = [
            (&manifest_digest, &manifest_raw),
            (&config_digest, &config_raw),
        ];
        let image = inner.record_with_blobs(record, &blobs)?;
        tracing::info!(image = %image_name, id = %image.id, "pause image installed");
        Ok(image)
    }
}
