//! crius-image: the image store of crius.
//!
//! Pulls images from OCI distribution / Docker registry v2 servers (through
//! registries.conf mirrors, with per-registry or per-request credentials),
//! keeps blobs, unpacked layers and an image index under one root, and mounts
//! container root file systems as overlayfs over the image's layers.

mod authfile;
mod error;
pub mod idmap;
mod index;
mod layers;
mod mount;
mod pause;
mod pinned;
mod progress;
mod pull;
pub mod reference;
pub mod registries;
mod store;
pub mod unpack;

use std::collections::HashMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use error::Error;
pub use mount::resolve_in_root;
/// The name of a rootfs mount point inside its dir.
pub use mount::ROOTFS as ROOTFS_DIR;
pub use pinned::PinnedImages;
pub use progress::{format_rate, short_digest, LayerProgress, LayerState, PullProgress};
pub use pull::host_platform;
pub use reference::normalize_reference;
pub use store::ImageStore;

/// Entry points for the fuzz targets in `fuzz/` and their replay test. None may panic,
/// whatever the input.
#[doc(hidden)]
pub mod fuzzing {
    use std::path::Path;

    /// A containers-auth.json file, then a lookup in it.
    pub fn auth_file(text: &str) {
        if let Ok(file) = crate::authfile::AuthFile::parse(text) {
            let _ = file.lookup("registry.example.com:5000", "team/app");
            let _ = file.lookup("docker.io", "library/busybox");
        }
    }

    /// A registries.conf, then the names and endpoints a short and a long name resolve to.
    pub fn registries_conf(text: &str) {
        let mut regs = crate::registries::Registries::default();
        if regs
            .apply(Path::new("/etc/containers/registries.conf"), text)
            .is_ok()
        {
            for input in ["busybox", "example.com:5000/team/app:1", "localhost/x@sha256:0123456789012345678901234567890123456789012345678901234567890123"] {
                if let Ok(names) = regs.candidates(input) {
                    for name in names {
                        let _ = regs.endpoints(&name);
                        let _ = regs.is_insecure(&name.registry);
                    }
                }
            }
        }
    }
}

/// How the daemon configures the image store.
#[derive(Clone, Debug)]
pub struct ImageStoreConfig {
    /// Where blobs, layers and the index live, e.g. /var/lib/crius/images.
    pub root: PathBuf,
    /// None: /etc/containers/registries.conf (+ registries.conf.d/) if present.
    pub registries_conf: Option<PathBuf>,
    /// host[:port] that may be reached over plain HTTP.
    pub insecure_registries: Vec<String>,
    /// Per registry host[:port], from the daemon config.
    pub registry_auths: HashMap<String, Credentials>,
    /// A containers-auth.json(5) file (`podman login --authfile`), read at every pull;
    /// its credentials come after the request's and `registry_auths`.
    pub auth_file: Option<PathBuf>,
    /// Layer downloads in flight at once, over all pulls.
    pub max_concurrent_downloads: usize,
    /// How large a pulled image may be.
    pub limits: ImageLimits,
}

/// Bounds on what a registry may make crius read or write; passing one fails
/// the pull (`Error::LimitExceeded`) and leaves nothing behind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageLimits {
    /// `max_layer_size`, `max_layer_entries`: one decompressed layer.
    pub layer: unpack::LayerLimits,
    /// `max_manifest_size`: bytes of a manifest or index, counted as it arrives.
    pub max_manifest_size: u64,
    /// `max_config_size`: bytes of an image config, counted as it arrives.
    pub max_config_size: u64,
}

/// Default of `max_manifest_size` (containers/image allows 4 MiB too).
pub const DEFAULT_MAX_MANIFEST_SIZE: u64 = 4 << 20;
/// Default of `max_config_size`.
pub const DEFAULT_MAX_CONFIG_SIZE: u64 = 8 << 20;

impl Default for ImageLimits {
    fn default() -> Self {
        ImageLimits {
            layer: unpack::LayerLimits::default(),
            max_manifest_size: DEFAULT_MAX_MANIFEST_SIZE,
            max_config_size: DEFAULT_MAX_CONFIG_SIZE,
        }
    }
}

impl ImageStoreConfig {
    /// A config with defaults for everything but the root.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        ImageStoreConfig {
            root: root.into(),
            registries_conf: None,
            insecure_registries: Vec::new(),
            registry_auths: HashMap::new(),
            auth_file: None,
            max_concurrent_downloads: 3,
            limits: ImageLimits::default(),
        }
    }
}

/// Registry credentials, shaped like the CRI AuthConfig.
#[derive(Clone, Debug, Default)]
pub struct Credentials {
    /// Basic auth user (also sent to a Bearer realm to obtain a token).
    pub username: String,
    /// Basic auth password.
    pub password: String,
    /// base64 of "user:pass", used when username and password are empty.
    pub auth: String,
    /// A refresh token, sent as the password of the user `<token>`.
    pub identity_token: String,
    /// A Bearer token sent as is.
    pub registry_token: String,
}

/// An image as the CRI reports it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Image {
    /// "sha256:<hex>" of the image config.
    pub id: String,
    /// Fully qualified `registry/repo:tag` names, under the name pulled (never a mirror's).
    pub repo_tags: Vec<String>,
    /// `registry/repo@sha256:...` of what the tag pointed to (the index for multi-platform images).
    pub repo_digests: Vec<String>,
    /// Bytes of the compressed layers and the config.
    pub size: u64,
    /// Never garbage-collected by the kubelet.
    pub pinned: bool,
}

/// Disk use of the store, for ImageFsInfo.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FsUsage {
    /// Mount point of the file system holding the store.
    pub mountpoint: PathBuf,
    /// Bytes allocated by blobs, layers and the index.
    pub used_bytes: u64,
    /// Inodes used by them (hard links counted once).
    pub inodes_used: u64,
}
