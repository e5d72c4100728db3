//! The one error type of crius-net.

use std::path::PathBuf;
use std::time::Duration;

/// Everything that can go wrong while making network namespaces or running CNI plugins.
///
/// Each variant names the failure and carries the path, plugin or pod involved, so a
/// CRI status message built from it tells the operator where to look.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The pin file for a new network namespace is already there.
    #[error("network namespace pin {path} already exists")]
    NetNsExists { path: PathBuf },

    /// A kernel call while creating or pinning a network namespace failed.
    #[error("create network namespace {path}: {op}: {source}")]
    NetNsCreate {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: std::io::Error,
    },

    /// Bringing up the loopback interface over netlink failed.
    #[error("bring up loopback in network namespace {path}: {reason}")]
    Loopback { path: PathBuf, reason: String },

    /// Unmounting or unlinking a network namespace pin failed.
    #[error("remove network namespace {path}: {op}: {source}")]
    NetNsRemove {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: std::io::Error,
    },

    /// Opening or joining a network namespace failed.
    #[error("enter network namespace {path}: {op}: {source}")]
    NetNsEnter {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: std::io::Error,
    },

    /// The thread that did namespace work died before it could report.
    #[error("network namespace thread for {path} panicked")]
    NetNsThreadPanicked { path: PathBuf },

    /// The CNI config dir holds no usable network configuration.
    #[error("no CNI configuration found in {dir}")]
    NoNetworkConfig { dir: PathBuf },

    /// A network configuration file could not be read or does not follow the CNI spec.
    #[error("invalid CNI configuration {path}: {reason}")]
    InvalidNetworkConfig { path: PathBuf, reason: String },

    /// The network configuration asks for a CNI version this runtime does not speak.
    #[error("unsupported CNI version {version:?} in {path} (supported: 0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0)")]
    UnsupportedCniVersion { path: PathBuf, version: String },

    /// No plugin dir holds an executable for a plugin type of the network.
    #[error("CNI plugin {plugin} not found in {dirs}")]
    PluginNotFound { plugin: String, dirs: String },

    /// A plugin reported a CNI error (`{code, msg, details}` on stdout).
    #[error("CNI plugin {plugin} failed with code {code}: {msg}")]
    PluginFailed {
        plugin: String,
        code: u32,
        msg: String,
    },

    /// A plugin exited unsuccessfully without a CNI error on stdout.
    #[error("CNI plugin {plugin} {command} for pod {pod} exited with {status}: {output}")]
    PluginExited {
        plugin: String,
        command: &'static str,
        pod: String,
        status: String,
        output: String,
    },

    /// A plugin did not finish within the configured timeout and was killed.
    #[error("CNI plugin {plugin} {command} for pod {pod} timed out after {timeout:?}")]
    PluginTimeout {
        plugin: String,
        command: &'static str,
        pod: String,
        timeout: Duration,
    },

    /// A plugin binary could not be started or talked to.
    #[error("run CNI plugin {path}: {source}")]
    PluginExec {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A plugin's ADD output is not a CNI result.
    #[error("invalid CNI result from plugin {plugin} for pod {pod}: {reason}")]
    InvalidResult {
        plugin: String,
        pod: String,
        reason: String,
    },

    /// The pod network request cannot be passed to plugins (empty id, separators in names).
    #[error("invalid pod network for pod {pod}: {reason}")]
    InvalidPodNetwork { pod: String, reason: String },

    /// `setup` was called for a pod whose network is already set up.
    #[error("network of pod {pod} is already set up (cache {path})")]
    AlreadySetUp { pod: String, path: PathBuf },

    /// `check` was called for a pod with no cached network.
    #[error("network of pod {pod} is not set up")]
    NotSetUp { pod: String },

    /// Reading or writing the per-pod CNI cache failed.
    #[error("CNI cache {path}: {source}")]
    Cache {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A per-pod CNI cache file exists but cannot be decoded.
    #[error("CNI cache {path} is corrupt: {reason}")]
    CacheCorrupt { path: PathBuf, reason: String },
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
