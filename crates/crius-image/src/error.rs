//! The one error type of crius-image.

use std::path::PathBuf;

/// Everything that can go wrong in the image store. Variants are public so the
/// gRPC layer can choose a status code; the `is_*` helpers group them.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The name does not parse as an image reference.
    #[error("invalid image reference {reference:?}: {reason}")]
    InvalidReference { reference: String, reason: String },

    /// No such image in the local store, or the registry does not know it.
    #[error("image {image} not found{}", at(.registry))]
    ImageNotFound {
        image: String,
        registry: Option<String>,
    },

    /// Several local images match an id prefix.
    #[error("image id prefix {prefix:?} matches several images")]
    AmbiguousImage { prefix: String },

    /// The registry refused the credentials (or asked for some and got none).
    #[error("not authorized to pull {image} from {registry}: {reason}")]
    Unauthorized {
        image: String,
        registry: String,
        reason: String,
    },

    /// registries.conf blocks the registry the image lives in.
    #[error("registry {registry} is blocked by registries.conf, refusing to pull {image}")]
    RegistryBlocked { image: String, registry: String },

    /// The registry could not be reached (unknown host, connection refused, timeout).
    #[error("registry {registry} unreachable while pulling {image}: {reason}")]
    RegistryUnreachable {
        image: String,
        registry: String,
        reason: String,
    },

    /// Any other answer from the registry that is not what the protocol promises.
    #[error("registry {registry} failed while pulling {image}: {reason}")]
    Registry {
        image: String,
        registry: String,
        reason: String,
    },

    /// The image index has no manifest for this host's platform.
    #[error("image {image} has no manifest for platform {platform} (it has: {available})")]
    NoMatchingPlatform {
        image: String,
        platform: String,
        available: String,
    },

    /// A manifest, index or config that is malformed or of a kind crius does not run.
    #[error("invalid manifest for image {image}: {reason}")]
    InvalidManifest { image: String, reason: String },

    /// A media type crius cannot unpack (schema 1 manifests, artifacts, unknown layer types).
    #[error("image {image}: unsupported media type {media_type}")]
    UnsupportedMediaType { image: String, media_type: String },

    /// Downloaded bytes do not hash to the digest the manifest promised.
    #[error("layer {layer} of image {image}: digest mismatch, expected {expected}, got {actual}")]
    LayerDigestMismatch {
        image: String,
        layer: String,
        expected: String,
        actual: String,
    },

    /// A layer entry would be written outside the layer directory.
    #[error("layer {layer}: unsafe path {path:?} in archive: {reason}")]
    UnsafeLayerPath {
        layer: String,
        path: String,
        reason: String,
    },

    /// A layer archive that cannot be read (bad compression, bad tar).
    #[error("layer {layer}: invalid archive: {reason}")]
    InvalidLayer { layer: String, reason: String },

    /// Credentials that cannot be used (e.g. `auth` is not base64 of `user:pass`).
    #[error("invalid credentials for registry {registry}: {reason}")]
    InvalidCredentials { registry: String, reason: String },

    /// The configured auth file (containers-auth.json) does not parse.
    #[error("invalid auth file {path}: {reason}")]
    AuthFile { path: PathBuf, reason: String },

    /// registries.conf (or a drop-in) does not parse.
    #[error("invalid registries config {path}: {reason}")]
    InvalidRegistriesConf { path: PathBuf, reason: String },

    /// An image passed one of the configured bounds (`[crius.image]` key `key`).
    #[error("{what}: {found}, over the bound crius.image.{key} = {limit}; raise that key in crius.conf to accept it")]
    LimitExceeded {
        what: String,
        found: String,
        key: &'static str,
        limit: u64,
    },

    /// The store's own records are unreadable.
    #[error("corrupt image store record {path}: {reason}")]
    CorruptStore { path: PathBuf, reason: String },

    /// A mount or unmount failed.
    #[error("{op} {target} failed: {source}")]
    Mount {
        op: &'static str,
        target: PathBuf,
        source: std::io::Error,
    },

    /// A file system operation failed.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn at(registry: &Option<String>) -> String {
    match registry {
        Some(r) => format!(" in registry {r}"),
        None => String::new(),
    }
}

impl Error {
    /// Builds an `Io` error for `path`.
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// A short, fixed reason for the pull failure metrics (`crius_image_pulls_failure_total`).
    pub fn metric_reason(&self) -> &'static str {
        match self {
            Error::InvalidReference { .. } => "invalid_reference",
            Error::ImageNotFound { .. } => "not_found",
            Error::Unauthorized { .. } | Error::InvalidCredentials { .. } => "unauthorized",
            Error::RegistryBlocked { .. } => "blocked",
            Error::RegistryUnreachable { .. } => "unreachable",
            Error::Registry { .. } => "registry",
            Error::NoMatchingPlatform { .. } => "no_matching_platform",
            Error::InvalidManifest { .. } | Error::UnsupportedMediaType { .. } => {
                "invalid_manifest"
            }
            Error::LayerDigestMismatch { .. } => "digest_mismatch",
            Error::UnsafeLayerPath { .. } | Error::InvalidLayer { .. } => "invalid_layer",
            _ => "local",
        }
    }

    /// Image unknown locally or at the registry (gRPC NotFound).
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::ImageNotFound { .. })
    }

    /// Bad input from the caller (gRPC InvalidArgument).
    pub fn is_invalid_argument(&self) -> bool {
        matches!(
            self,
            Error::InvalidReference { .. }
                | Error::AmbiguousImage { .. }
                | Error::InvalidCredentials { .. }
        )
    }

    /// Wrong or missing credentials (gRPC Unauthenticated).
    pub fn is_unauthorized(&self) -> bool {
        matches!(self, Error::Unauthorized { .. })
    }

    /// The registry could not be reached (gRPC Unavailable).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Error::RegistryUnreachable { .. })
    }

    /// A configured bound was passed (gRPC ResourceExhausted).
    pub fn is_limit_exceeded(&self) -> bool {
        matches!(self, Error::LimitExceeded { .. })
    }

    /// Refused by policy (gRPC PermissionDenied / FailedPrecondition).
    pub fn is_blocked(&self) -> bool {
        matches!(self, Error::RegistryBlocked { .. })
    }
}
