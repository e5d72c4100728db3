//! The daemon's configuration: the `[crius]` TOML file, its drop-ins, and their defaults.
//!
//! Sources are applied in this order, each overriding the one before: built-in defaults,
//! `/etc/crius/crius.conf`, `/etc/crius/crius.conf.d/*.conf` in name order, `CRIUS_*`
//! environment variables, command-line flags (the last two through [`crate::cli`]).
//! Each file is checked on its own first, so an unknown key or a bad value is reported
//! with the file, the line and the key.
//!
//! The structs mirror the file's tables key by key; what each key means is written once,
//! in `doc_for`, and printed above the key by `crius config`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Where the main configuration file lives unless `--config` says otherwise.
pub const DEFAULT_CONFIG_FILE: &str = "/etc/crius/crius.conf";
/// Where drop-in files live unless `--config-dir` says otherwise.
pub const DEFAULT_CONFIG_DIR: &str = "/etc/crius/crius.conf.d";
/// Where helper binaries are installed when they are not next to the `crius` executable.
pub const LIBEXEC_DIR: &str = "/usr/libexec/crius";
/// The built-in OCI runtime's binary name, the runtime of the default handler `crius`.
pub const BUILTIN_RUNTIME: &str = "crius-runtime";

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A file exists (or was named explicitly) but could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The drop-in directory exists but could not be listed.
    #[error("cannot read config directory {path}: {source}")]
    ReadDir {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A file is not valid TOML or holds an unknown key or a bad value.
    #[error("{}", invalid_message(path, *line, key.as_deref(), message))]
    Invalid {
        path: PathBuf,
        line: Option<usize>,
        key: Option<String>,
        message: String,
    },
    /// The merged configuration is well-formed but contradicts itself.
    #[error("invalid config: {key}: {message}")]
    Semantic { key: String, message: String },
}

fn invalid_message(path: &Path, line: Option<usize>, key: Option<&str>, message: &str) -> String {
    let mut out = format!("invalid config file {}", path.display());
    if let Some(line) = line {
        out.push_str(&format!(":{line}"));
    }
    if let Some(key) = key {
        out.push_str(&format!(": key {key}"));
    }
    out.push_str(&format!(": {message}"));
    out
}

/// The whole configuration file: everything lives under the `[crius]` table.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub crius: CriusConfig,
}

/// `[crius]`: where state lives and how the daemon logs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CriusConfig {
    pub root: PathBuf,
    pub runroot: PathBuf,
    pub log_level: LogLevel,
    pub log_format: LogFormat,
    pub api: ApiConfig,
    pub runtime: RuntimeConfig,
    pub image: ImageConfig,
    pub network: NetworkConfig,
    pub metrics: MetricsConfig,
    pub stats: StatsConfig,
    pub tracing: TracingConfig,
}

impl Default for CriusConfig {
    fn default() -> Self {
        CriusConfig {
            root: PathBuf::from("/var/lib/crius"),
            runroot: PathBuf::from("/run/crius"),
            log_level: LogLevel::Info,
            log_format: LogFormat::Text,
            api: ApiConfig::default(),
            runtime: RuntimeConfig::default(),
            image: ImageConfig::default(),
            network: NetworkConfig::default(),
            metrics: MetricsConfig::default(),
            stats: StatsConfig::default(),
            tracing: TracingConfig::default(),
        }
    }
}

/// Log verbosity, from the most to the least chatty.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// Everything, including each step of every call.
    Trace,
    /// Every external command and kernel call, with its arguments and duration.
    Debug,
    /// Lifecycle changes: pods and containers made, started, stopped, removed.
    #[default]
    Info,
    /// Things the operator should fix.
    Warn,
    /// Failures only.
    Error,
}

impl LogLevel {
    /// The level as a `tracing` filter directive.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }
}

impl fmt::Display for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How log lines are written to stderr.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Which cgroup driver places pods and containers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum CgroupManager {
    /// Plain directories in the cgroup filesystem.
    #[default]
    Cgroupfs,
    /// Slices and scopes made by systemd over D-Bus.
    Systemd,
}

/// `[crius.api]`: the CRI socket and the streaming server.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    pub listen: PathBuf,
    pub stream_address: String,
    pub stream_port: u16,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            listen: PathBuf::from("/run/crius/crius.sock"),
            stream_address: "127.0.0.1".to_string(),
            stream_port: 0,
        }
    }
}

/// `[crius.runtime]`: OCI runtimes, cgroups and container logs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RuntimeConfig {
    pub default_runtime: String,
    pub cgroup_manager: CgroupManager,
    pub cgroup_root: String,
    pub log_size_max: i64,
    pub seccomp_profile_root: PathBuf,
    pub cdi_spec_dirs: Vec<PathBuf>,
    pub hooks_dir: Vec<PathBuf>,
    pub checkpoint_dirs: Vec<PathBuf>,
    pub drop_infra_ctr: bool,
    pub runtimes: BTreeMap<String, RuntimeHandler>,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        let mut runtimes = BTreeMap::new();
        runtimes.insert("runc".to_string(), RuntimeHandler::oci("/usr/sbin/runc"));
        runtimes.insert("crun".to_string(), RuntimeHandler::oci("/usr/bin/crun"));
        // The built-in runtime, found next to crius or in PATH (see `resolved`).
        runtimes.insert("crius".to_string(), RuntimeHandler::oci(BUILTIN_RUNTIME));
        RuntimeConfig {
            default_runtime: "crius".to_string(),
            cgroup_manager: CgroupManager::Cgroupfs,
            cgroup_root: "/".to_string(),
            log_size_max: -1,
            seccomp_profile_root: PathBuf::from("/var/lib/kubelet/seccomp"),
            cdi_spec_dirs: crius_core::DEFAULT_CDI_SPEC_DIRS
                .iter()
                .map(PathBuf::from)
                .collect(),
            hooks_dir: crius_core::DEFAULT_HOOKS_DIRS
                .iter()
                .map(PathBuf::from)
                .collect(),
            checkpoint_dirs: vec![PathBuf::from("/var/lib/kubelet/checkpoints")],
            drop_infra_ctr: false,
            runtimes,
        }
    }
}

/// `[crius.runtime.runtimes.NAME]`: one runtime handler the CRI `runtime_handler` can pick.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RuntimeHandler {
    pub runtime_path: PathBuf,
    pub runtime_type: RuntimeType,
    pub runtime_root: PathBuf,
    pub runtime_config_path: PathBuf,
    pub monitor_path: PathBuf,
    pub allowed_annotations: Vec<String>,
}

impl RuntimeHandler {
    fn oci(path: &str) -> Self {
        RuntimeHandler {
            runtime_path: PathBuf::from(path),
            ..RuntimeHandler::default()
        }
    }
}

impl Default for RuntimeHandler {
    fn default() -> Self {
        RuntimeHandler {
            runtime_path: PathBuf::new(),
            runtime_type: RuntimeType::Oci,
            runtime_root: PathBuf::new(),
            runtime_config_path: PathBuf::new(),
            monitor_path: PathBuf::new(),
            allowed_annotations: Vec::new(),
        }
    }
}

/// How a runtime handler is driven: a runc-compatible CLI through the monitor, or a VM shim.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuntimeType {
    /// A runc-compatible CLI, run through the monitor.
    #[default]
    Oci,
    /// A containerd shim v2 binary (VM runtimes such as Kata).
    Vm,
}

impl RuntimeType {
    /// The name used in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            RuntimeType::Oci => "oci",
            RuntimeType::Vm => "vm",
        }
    }
}

/// `[crius.image]`: the pause image, registries and pulls.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ImageConfig {
    pub pause_image: String,
    pub pause_binary: PathBuf,
    pub registries_conf: PathBuf,
    pub insecure_registries: Vec<String>,
    pub max_concurrent_downloads: usize,
    pub max_layer_size: u64,
    pub max_layer_entries: u64,
    pub max_manifest_size: u64,
    pub max_config_size: u64,
    pub auths: BTreeMap<String, RegistryAuth>,
    pub global_auth_file: PathBuf,
    pub pinned_images: crius_core::PinnedImages,
}

impl Default for ImageConfig {
    fn default() -> Self {
        ImageConfig {
            pause_image: "registry.k8s.io/pause:3.10".to_string(),
            pause_binary: PathBuf::new(),
            registries_conf: PathBuf::new(),
            insecure_registries: Vec::new(),
            max_concurrent_downloads: 3,
            max_layer_size: 32 << 30,
            max_layer_entries: 2_000_000,
            max_manifest_size: 4 << 20,
            max_config_size: 8 << 20,
            auths: BTreeMap::new(),
            global_auth_file: PathBuf::new(),
            pinned_images: crius_core::PinnedImages::default(),
        }
    }
}

/// `[crius.image.auths."HOST"]`: credentials for one registry.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegistryAuth {
    pub username: String,
    pub password: String,
    pub auth: String,
}

impl fmt::Debug for RegistryAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryAuth")
            .field("username", &self.username)
            .field("password", &redacted(&self.password))
            .field("auth", &redacted(&self.auth))
            .finish()
    }
}

fn redacted(secret: &str) -> &'static str {
    if secret.is_empty() {
        ""
    } else {
        "<redacted>"
    }
}

/// `[crius.network]`: where CNI configs, plugins and results live.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetworkConfig {
    pub network_dir: PathBuf,
    pub plugin_dirs: Vec<PathBuf>,
    pub cache_dir: PathBuf,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig {
            network_dir: PathBuf::from("/etc/cni/net.d"),
            plugin_dirs: vec![PathBuf::from("/opt/cni/bin"), PathBuf::from("/usr/lib/cni")],
            cache_dir: PathBuf::new(),
        }
    }
}

/// `[crius.metrics]`: the Prometheus endpoint (CRI-O's keys).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    pub enable_metrics: bool,
    pub metrics_host: String,
    pub metrics_port: u16,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            enable_metrics: false,
            metrics_host: "127.0.0.1".to_string(),
            metrics_port: 9090,
        }
    }
}

/// `[crius.stats]`: what ListPodSandboxMetrics serves (CRI-O's key).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StatsConfig {
    pub included_pod_metrics: Vec<String>,
}

/// `[crius.tracing]`: OpenTelemetry spans exported over OTLP/gRPC (CRI-O's keys).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TracingConfig {
    pub enable_tracing: bool,
    pub tracing_endpoint: String,
    pub tracing_sampling_rate_per_million: u32,
}

impl Default for TracingConfig {
    fn default() -> Self {
        TracingConfig {
            enable_tracing: false,
            tracing_endpoint: "127.0.0.1:4317".to_string(),
            tracing_sampling_rate_per_million: 0,
        }
    }
}

/// Most a sampling rate per million can be: every trace.
pub const SAMPLING_RATE_ALL: u32 = 1_000_000;

impl TracingConfig {
    /// The endpoint as a URI the gRPC client takes: CRI-O's `HOST:PORT` gains `http://`.
    pub fn endpoint_uri(&self) -> Result<String, String> {
        let endpoint = self.tracing_endpoint.trim();
        if endpoint.is_empty() {
            return Err("is empty".to_string());
        }
        let uri = if endpoint.contains("://") {
            endpoint.to_string()
        } else {
            format!("http://{endpoint}")
        };
        let parsed: tonic::codegen::http::Uri = uri
            .parse()
            .map_err(|err| format!("{endpoint:?} is not HOST:PORT or a URI: {err}"))?;
        if parsed.scheme_str() != Some("http") {
            return Err(format!(
                "{endpoint:?}: only plain gRPC (http:// or HOST:PORT) is supported, as CRI-O's exporter"
            ));
        }
        if parsed.host().is_none_or(str::is_empty) {
            return Err(format!("{endpoint:?} names no host"));
        }
        Ok(uri)
    }
}

/// The files a configuration is read from.
#[derive(Clone, Debug)]
pub struct ConfigSources {
    /// The main file.
    pub file: PathBuf,
    /// Whether the main file was named explicitly (then it must exist).
    pub file_required: bool,
    /// The drop-in directory (`*.conf`, applied in name order); may be absent.
    pub dir: PathBuf,
}

impl Default for ConfigSources {
    fn default() -> Self {
        ConfigSources {
            file: PathBuf::from(DEFAULT_CONFIG_FILE),
            file_required: false,
            dir: PathBuf::from(DEFAULT_CONFIG_DIR),
        }
    }
}

impl ConfigSources {
    /// The files that exist, in the order they apply.
    pub fn files(&self) -> Result<Vec<PathBuf>, ConfigError> {
        let mut files = Vec::new();
        if self.file_required || self.file.exists() {
            files.push(self.file.clone());
        }
        match std::fs::read_dir(&self.dir) {
            Ok(entries) => {
                let mut dropins = Vec::new();
                for entry in entries {
                    let entry = entry.map_err(|source| ConfigError::ReadDir {
                        path: self.dir.clone(),
                        source,
                    })?;
                    let path = entry.path();
                    if path.extension().is_some_and(|ext| ext == "conf") && path.is_file() {
                        dropins.push(path);
                    }
                }
                dropins.sort();
                files.extend(dropins);
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(ConfigError::ReadDir {
                    path: self.dir.clone(),
                    source,
                })
            }
        }
        Ok(files)
    }
}

impl Config {
    /// Defaults overlaid with every file of `sources`. Cross-key checks are left to
    /// [`Config::validate`], to be run once flags are applied too.
    pub fn load(sources: &ConfigSources) -> Result<Config, ConfigError> {
        let mut texts = Vec::new();
        for path in sources.files()? {
            let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
                path: path.clone(),
                source,
            })?;
            texts.push((path, text));
        }
        Config::from_texts(texts.iter().map(|(p, t)| (p.as_path(), t.as_str())))
    }

    /// Defaults overlaid with each `(path, text)` in order. Tables merge key by key, so a
    /// drop-in that sets one key of `[crius.runtime.runtimes.runc]` keeps the others.
    pub fn from_texts<'a>(
        texts: impl IntoIterator<Item = (&'a Path, &'a str)>,
    ) -> Result<Config, ConfigError> {
        let mut merged =
            toml::Table::try_from(Config::default()).map_err(|err| ConfigError::Semantic {
                key: "crius".to_string(),
                message: format!("defaults do not serialize: {err}"),
            })?;
        for (path, text) in texts {
            // Checking each file on its own keeps toml's spans, so errors name the line.
            toml::from_str::<Config>(text).map_err(|err| invalid(path, text, &err))?;
            let table: toml::Table =
                toml::from_str(text).map_err(|err| invalid(path, text, &err))?;
            merge(&mut merged, table);
        }
        let config: Config =
            toml::Value::Table(merged)
                .try_into()
                .map_err(|err: toml::de::Error| ConfigError::Semantic {
                    key: "crius".to_string(),
                    message: err.message().to_string(),
                })?;
        Ok(config)
    }

    /// Checks what the types alone cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let c = &self.crius;
        let semantic = |key: &str, message: String| {
            Err(ConfigError::Semantic {
                key: key.to_string(),
                message,
            })
        };
        for (key, path) in [
            ("crius.root", &c.root),
            ("crius.runroot", &c.runroot),
            ("crius.api.listen", &c.api.listen),
            ("crius.network.network_dir", &c.network.network_dir),
        ] {
            if !path.is_absolute() {
                return semantic(key, format!("{} is not an absolute path", path.display()));
            }
        }
        if c.api.listen.as_os_str().len() > 107 {
            return semantic(
                "crius.api.listen",
                format!(
                    "{} is longer than a unix socket path may be (107 bytes)",
                    c.api.listen.display()
                ),
            );
        }
        if !c.runtime.runtimes.contains_key(&c.runtime.default_runtime) {
            return semantic(
                "crius.runtime.default_runtime",
                format!(
                    "runtime {:?} has no [crius.runtime.runtimes.{}] table",
                    c.runtime.default_runtime, c.runtime.default_runtime
                ),
            );
        }
        for (name, handler) in &c.runtime.runtimes {
            if name.is_empty() {
                return semantic(
                    "crius.runtime.runtimes",
                    "a runtime name is empty".to_string(),
                );
            }
            if handler.runtime_path.as_os_str().is_empty() {
                return semantic(
                    &format!("crius.runtime.runtimes.{name}.runtime_path"),
                    "is empty".to_string(),
                );
            }
            if let Err(message) =
                crius_core::check_allowed_annotations(&handler.allowed_annotations)
            {
                return semantic(
                    &format!("crius.runtime.runtimes.{name}.allowed_annotations"),
                    message,
                );
            }
        }
        if c.runtime.log_size_max < -1 || (0..8192).contains(&c.runtime.log_size_max) {
            return semantic(
                "crius.runtime.log_size_max",
                format!(
                    "{} is neither -1 (no limit) nor at least 8192 bytes",
                    c.runtime.log_size_max
                ),
            );
        }
        if c.image.max_concurrent_downloads == 0 {
            return semantic(
                "crius.image.max_concurrent_downloads",
                "must be at least 1".to_string(),
            );
        }
        for (key, v) in [
            ("crius.image.max_layer_size", c.image.max_layer_size),
            ("crius.image.max_layer_entries", c.image.max_layer_entries),
            ("crius.image.max_manifest_size", c.image.max_manifest_size),
            ("crius.image.max_config_size", c.image.max_config_size),
        ] {
            if v == 0 {
                return semantic(key, "must be at least 1".to_string());
            }
        }
        if c.image.pause_image.trim().is_empty() {
            return semantic("crius.image.pause_image", "is empty".to_string());
        }
        if c.metrics.metrics_host.parse::<std::net::IpAddr>().is_err() {
            return semantic(
                "crius.metrics.metrics_host",
                format!("{:?} is not an IP address", c.metrics.metrics_host),
            );
        }
        if let Err(message) = crius_core::MetricGroup::parse_list(&c.stats.included_pod_metrics) {
            return semantic("crius.stats.included_pod_metrics", message);
        }
        if c.tracing.enable_tracing {
            if let Err(message) = c.tracing.endpoint_uri() {
                return semantic("crius.tracing.tracing_endpoint", message);
            }
        }
        if c.tracing.tracing_sampling_rate_per_million > SAMPLING_RATE_ALL {
            return semantic(
                "crius.tracing.tracing_sampling_rate_per_million",
                format!(
                    "{} is more than {SAMPLING_RATE_ALL} (every trace)",
                    c.tracing.tracing_sampling_rate_per_million
                ),
            );
        }
        if c.network.plugin_dirs.is_empty() {
            return semantic(
                "crius.network.plugin_dirs",
                "names no directory".to_string(),
            );
        }
        Ok(())
    }

    /// The configuration as a TOML document with a comment above every key.
    pub fn to_commented_toml(&self) -> String {
        let plain = match toml::to_string(self) {
            Ok(text) => text,
            // Every field is a string, number, bool, array or table: this cannot fail.
            Err(err) => return format!("# cannot serialize config: {err}\n"),
        };
        let mut doc: toml_edit::DocumentMut = match plain.parse() {
            Ok(doc) => doc,
            Err(err) => return format!("# cannot re-read serialized config: {err}\n"),
        };
        annotate_table(doc.as_table_mut(), "");
        let mut out = String::from(HEADER);
        out.push_str(doc.to_string().trim_start_matches('\n'));
        out
    }

    /// The configuration as JSON with secrets redacted, for `Status` verbose output.
    pub fn to_redacted_json(&self) -> serde_json::Value {
        let mut copy = self.clone();
        for auth in copy.crius.image.auths.values_mut() {
            auth.password = redacted(&auth.password).to_string();
            auth.auth = redacted(&auth.auth).to_string();
        }
        serde_json::to_value(&copy).unwrap_or(serde_json::Value::Null)
    }
}

/// Deep-merges `over` into `base`: tables merge key by key, everything else is replaced.
fn merge(base: &mut toml::Table, over: toml::Table) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(base_table)), toml::Value::Table(over_table)) => {
                merge(base_table, over_table)
            }
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// Turns a toml error into one line naming the file, the line and the key.
fn invalid(path: &Path, text: &str, err: &toml::de::Error) -> ConfigError {
    let message = err.message().trim().to_string();
    let Some(span) = err.span() else {
        return ConfigError::Invalid {
            path: path.to_path_buf(),
            line: None,
            key: None,
            message,
        };
    };
    let start = span.start.min(text.len());
    let line_index = text[..start].matches('\n').count();
    let lines: Vec<&str> = text.lines().collect();
    let key = lines
        .get(line_index)
        .and_then(|line| key_at(&lines[..line_index], line));
    ConfigError::Invalid {
        path: path.to_path_buf(),
        line: Some(line_index + 1),
        key,
        message,
    }
}

/// The dotted key a line defines, prefixed by the table header above it.
fn key_at(before: &[&str], line: &str) -> Option<String> {
    let line = line.trim();
    if let Some(header) = table_header(line) {
        return Some(header);
    }
    let (key, _) = line.split_once('=')?;
    let key = normalize_key(key);
    if key.is_empty() {
        return None;
    }
    let table = before.iter().rev().find_map(|l| table_header(l.trim()));
    Some(match table {
        Some(table) if !table.is_empty() => format!("{table}.{key}"),
        _ => key,
    })
}

fn table_header(line: &str) -> Option<String> {
    let inner = line
        .strip_prefix("[[")
        .and_then(|l| l.split("]]").next())
        .or_else(|| line.strip_prefix('[').and_then(|l| l.split(']').next()))?;
    Some(normalize_key(inner))
}

fn normalize_key(key: &str) -> String {
    key.split('.')
        .map(|part| part.trim().trim_matches('"').trim_matches('\''))
        .collect::<Vec<_>>()
        .join(".")
}

const HEADER: &str = "\
# crius configuration.
#
# Read from /etc/crius/crius.conf, then from /etc/crius/crius.conf.d/*.conf in name
# order; each file overrides the keys it sets. CRIUS_* environment variables and
# command-line flags override the files. Print the effective configuration with
# `crius config`, the defaults with `crius config --default`.

";

/// Adds the comment for every key and sub-table of `table`. `path` is the table's dotted
/// path with user-chosen names (runtime names, registry hosts) written as `*`.
fn annotate_table(table: &mut toml_edit::Table, path: &str) {
    let named_children = path == "crius.runtime.runtimes" || path == "crius.image.auths";
    for (mut key, item) in table.iter_mut() {
        let full = match (path.is_empty(), named_children) {
            (true, _) => key.get().to_string(),
            (false, true) => format!("{path}.*"),
            (false, false) => format!("{path}.{}", key.get()),
        };
        let doc = doc_for(&full);
        match item {
            toml_edit::Item::Table(sub) => {
                if let Some(doc) = doc {
                    sub.decor_mut().set_prefix(format!("\n{}", comment(doc)));
                }
                annotate_table(sub, &full);
            }
            _ => {
                if let Some(doc) = doc {
                    key.leaf_decor_mut().set_prefix(comment(doc));
                }
            }
        }
    }
}

fn comment(doc: &str) -> String {
    doc.lines()
        .map(|line| {
            if line.is_empty() {
                "#\n".to_string()
            } else {
                format!("# {line}\n")
            }
        })
        .collect()
}

/// `crius.runtime.drop_infra_ctr`: long enough to keep out of the table below.
const DROP_INFRA_CTR_DOC: &str =
    "Run pods without an infra (pause) container where none is needed (CRI-O's\n\
key): crius makes and pins the pod's network, IPC and UTS namespaces itself\n\
(bind mounts under RUNROOT/netns and RUNROOT/pods/ID/ns) and the containers\n\
join them by path. A pod still gets its pause container when it shares one\n\
PID namespace (namespace_options.pid POD), asks for a user namespace of its\n\
own (userns_options POD: crius cannot pin a user namespace without a helper\n\
process, so the pause holds it), or runs with a vm handler. Each pod keeps\n\
the choice it was run with. Off by default (CRI-O's default is on) until the\n\
whole test suite has run with it at once (see README.md).";

/// The comment printed above a key in `crius config`; `None` for keys without one.
fn doc_for(path: &str) -> Option<&'static str> {
    Some(match path {
        "crius" => "Daemon-wide settings.",
        "crius.root" => "Persistent state: images, pod and container records, container layers.",
        "crius.runroot" => "Volatile state: monitor sockets, exit files, pinned network namespaces.",
        "crius.log_level" => "Log verbosity: trace, debug, info, warn or error. RUST_LOG, when set,\noverrides it. Reloaded on SIGHUP.",
        "crius.log_format" => "Log line format on stderr: text or json.",
        "crius.api" => "The CRI gRPC socket and the streaming server.",
        "crius.api.listen" => "Unix socket serving the CRI RuntimeService and ImageService (mode 0660).",
        "crius.api.stream_address" => "Address the streaming server (exec, attach, port-forward) binds to.",
        "crius.api.stream_port" => "Port of the streaming server; 0 picks a free port.",
        "crius.runtime" => "OCI runtimes, cgroups and container logs.",
        "crius.runtime.default_runtime" => "Runtime handler used when a pod names none; must be a table below.",
        "crius.runtime.cgroup_manager" => "Cgroup driver: cgroupfs, or systemd (needs systemd as PID 1 and D-Bus).\nMust match the kubelet's --cgroup-driver.",
        "crius.runtime.cgroup_root" => "Every pod's cgroup parent must lie under this cgroup; \"/\" allows any.",
        "crius.runtime.log_size_max" => "Largest size of a container log file in bytes; -1 for no limit,\notherwise at least 8192.",
        "crius.runtime.seccomp_profile_root" => "Directory that Localhost seccomp profiles are relative to.",
        "crius.runtime.cdi_spec_dirs" => "Directories of CDI spec files (.yaml, .json) that define the devices a\ncontainer may ask for by name (CDI_devices, cdi.k8s.io/* annotations); a\nlater directory wins for a device both define. Read at each CreateContainer.",
        "crius.runtime.checkpoint_dirs" => "The only directories CheckpointContainer may write checkpoint archives to,\nand that a container may be restored from (its image given as the archive's\npath). The kubelet writes to /var/lib/kubelet/checkpoints.",
        "crius.runtime.hooks_dir" => "Directories of OCI hook files (oci-hooks(5), version 1.0.0), added to\ncontainers by their `when` conditions; a file replaces the one of the same\nname in an earlier directory. Read at each CreateContainer; one invalid\nfile fails container creation.",
        "crius.runtime.drop_infra_ctr" => DROP_INFRA_CTR_DOC,
        "crius.runtime.runtimes" => "Runtime handlers, one table each, picked by the CRI runtime_handler:\n[crius.runtime.runtimes.NAME].",
        "crius.runtime.runtimes.*" => "A runtime handler.",
        "crius.runtime.runtimes.*.runtime_path" => "The runtime binary; for runtime_type vm, the containerd shim v2 binary\n(containerd-shim-kata-v2, containerd-shim-runsc-v1, ...). A name without\na slash is looked up next to the crius executable, then in PATH.",
        "crius.runtime.runtimes.*.runtime_type" => "oci: a runc-compatible CLI run through the monitor; vm: a containerd\nshim v2 binary, one per pod, driven over ttrpc.",
        "crius.runtime.runtimes.*.runtime_config_path" => "vm only: the shim's own config file, passed in the task options\n(Kata: configuration.toml; gVisor: runsc.toml). Empty: the shim's default.",
        "crius.runtime.runtimes.*.runtime_root" => "State directory passed to the runtime as --root; empty: RUNROOT/runtimes/NAME.",
        "crius.runtime.runtimes.*.monitor_path" => "The monitor binary. Empty: crius-conmon next to the crius executable,\nelse /usr/libexec/crius/crius-conmon.",
        "crius.runtime.runtimes.*.allowed_annotations" => "Annotations that OCI runtimes act on which a pod or container of this\nhandler may set: any of bundle, io.kubernetes.cri.container-type,\nio.kubernetes.cri.rdt-class, module.wasm.image/variant, org.criu.config,\norg.opencontainers.runc.exec.isolated-cpu-affinity-transition,\norg.systemd.property. and run.oci. (the last two prefixes). Those not listed\nare dropped from the OCI spec; every other annotation passes as given.",
        "crius.image" => "Images, registries and the pause container.",
        "crius.image.pause_image" => "Image of the pause container that holds each pod's namespaces. When it\ncannot be pulled, a local image holding pause_binary is used.",
        "crius.image.pause_binary" => "Static pause binary for the built-in pause image. Empty: crius-pause next\nto the crius executable, else /usr/libexec/crius/crius-pause.",
        "crius.image.registries_conf" => "containers-registries.conf(5) file (mirrors, short names, insecure\nregistries). Empty: /etc/containers/registries.conf (and registries.conf.d)\nwhen present. Reloaded on SIGHUP.",
        "crius.image.insecure_registries" => "Registries (host[:port]) reached over plain HTTP. Reloaded on SIGHUP.",
        "crius.image.max_concurrent_downloads" => "Layers downloaded at the same time by one pull.",
        "crius.image.max_layer_size" => "Bytes one layer may take decompressed (sparse files at their full size);\na pull of a larger layer fails and leaves nothing behind.",
        "crius.image.max_layer_entries" => "Files, directories and links one layer may hold.",
        "crius.image.max_manifest_size" => "Bytes a manifest or index may take, counted while it arrives.",
        "crius.image.max_config_size" => "Bytes an image config may take, counted while it arrives.",
        "crius.image.auths" => "Credentials per registry host[:port], used when a pull carries none\n(reloaded on SIGHUP):\n[crius.image.auths.\"registry.example.com:5000\"]\nusername = \"user\"\npassword = \"secret\"\nauth = \"\"  # base64 of user:password, instead of the two above",
        "crius.image.auths.*" => "Credentials for one registry.",
        "crius.image.auths.*.username" => "User name.",
        "crius.image.auths.*.password" => "Password.",
        "crius.image.auths.*.auth" => "base64 of username:password, instead of the two above.",
        "crius.image.global_auth_file" => "containers-auth.json(5) file of registry credentials (what `podman login\n--authfile FILE` writes), read at every pull; a pull's own credentials and\n[crius.image.auths] come first. Empty: none.",
        "crius.image.pinned_images" => "Images the kubelet's image garbage collection must keep (reported pinned;\nRemoveImage still removes them), besides the pause image, which always is.\nEach is an exact name (\"registry.k8s.io/pause:3.10\"), a glob with one * at\nthe end (\"registry.k8s.io/*\") or a keyword between two * (\"*pause*\"),\nmatched case-insensitively against the fully qualified tags and digests of\nthe image. Reloaded on SIGHUP.",
        "crius.network" => "CNI pod networking.",
        "crius.network.network_dir" => "Directory of CNI network configs; the first .conflist/.conf in name\norder is the pod network. Reloaded on SIGHUP.",
        "crius.network.plugin_dirs" => "Directories searched for CNI plugin binaries. Reloaded on SIGHUP.",
        "crius.network.cache_dir" => "Where CNI results are kept for teardown. Empty: ROOT/cni-cache.",
        "crius.metrics" => "Prometheus metrics (GET /metrics); the series are listed in the README.",
        "crius.metrics.enable_metrics" => "Serve the metrics endpoint. If its address cannot be bound (a port in use),\ncrius logs an error, keeps serving CRI and tries again every 30 s.",
        "crius.metrics.metrics_host" => "Address the metrics endpoint binds to; keep it on loopback unless a\nfirewall guards the port.",
        "crius.metrics.metrics_port" => "Port of the metrics endpoint; 0 picks a free port (logged).",
        "crius.stats" => "Container and pod metrics for the kubelet (CRI ListPodSandboxMetrics, shown on\nits /metrics/cadvisor with the PodAndContainerStatsFromCRI feature gate).",
        "crius.stats.included_pod_metrics" => "Groups of cAdvisor series to serve, by CRI-O's names: cpu, disk (the\nwritable layer), diskIO, hugetlb, memory, network (the pod's interfaces),\noom, process, spec, pressure; or [\"all\"] alone. container_last_seen is\nalways served. Empty: nothing else, as with CRI-O. Reloaded on SIGHUP (the\nkubelet reads the list of series once, when it starts).",
        "crius.tracing" => "OpenTelemetry tracing: the span of every CRI call and its steps (CNI,\nruntime commands, pulls), exported over OTLP/gRPC.",
        "crius.tracing.enable_tracing" => "Export spans. An endpoint that cannot be reached costs nothing but a\nwarning in the log: spans wait in a bounded queue and are dropped when it\nis full.",
        "crius.tracing.tracing_endpoint" => "OTLP/gRPC collector, HOST:PORT or http://HOST:PORT (plain gRPC, no TLS).",
        "crius.tracing.tracing_sampling_rate_per_million" => "Traces kept per million: 0 keeps none, 1000000 every one.",
        _ => return None,
    })
}

/// The directory holding the running `crius` executable, if it can be found.
pub fn exe_dir() -> Option<PathBuf> {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf))
}

/// `name` next to the crius executable when it is there, else in [`LIBEXEC_DIR`].
pub fn helper_path(exe_dir: Option<&Path>, name: &str) -> PathBuf {
    if let Some(dir) = exe_dir {
        let beside = dir.join(name);
        if beside.is_file() {
            return beside;
        }
    }
    Path::new(LIBEXEC_DIR).join(name)
}

/// Where a runtime named without a slash (`crius-runtime`) is: next to the crius
/// executable, else the first executable file of that name in `PATH`. `None` for a path
/// with a slash (taken as given) or a name found nowhere (left for the handler check to
/// report as not found).
pub fn find_program(exe_dir: Option<&Path>, name: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let text = name.to_str()?;
    if text.is_empty() || text.contains('/') {
        return None;
    }
    let path_var = std::env::var_os("PATH").unwrap_or_default();
    exe_dir
        .map(Path::to_path_buf)
        .into_iter()
        .chain(std::env::split_paths(&path_var).filter(|d| d.is_absolute()))
        .map(|dir| dir.join(name))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

impl Config {
    /// Fills the keys whose empty default means "work it out" with the concrete value, so
    /// the daemon and `Status` see real paths.
    pub fn resolved(&self, exe_dir: Option<&Path>) -> Config {
        let mut out = self.clone();
        let c = &mut out.crius;
        if c.image.pause_binary.as_os_str().is_empty() {
            c.image.pause_binary = helper_path(exe_dir, "crius-pause");
        }
        for handler in c.runtime.runtimes.values_mut() {
            if let Some(found) = find_program(exe_dir, &handler.runtime_path) {
                handler.runtime_path = found;
            }
            if handler.monitor_path.as_os_str().is_empty() {
                handler.monitor_path = helper_path(exe_dir, "crius-conmon");
            }
        }
        if c.network.cache_dir.as_os_str().is_empty() {
            c.network.cache_dir = c.root.join("cni-cache");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Config, ConfigError> {
        let config = Config::from_texts([(Path::new("/etc/crius/crius.conf"), text)])?;
        config.validate()?;
        Ok(config)
    }

    #[test]
    fn empty_file_gives_the_defaults() {
        let config = load("").unwrap();
        assert_eq!(config, Config::default());
        assert_eq!(config.crius.root, Path::new("/var/lib/crius"));
        assert_eq!(config.crius.runroot, Path::new("/run/crius"));
        assert_eq!(config.crius.api.listen, Path::new("/run/crius/crius.sock"));
        assert_eq!(config.crius.runtime.cgroup_manager, CgroupManager::Cgroupfs);
        assert_eq!(config.crius.image.pause_image, "registry.k8s.io/pause:3.10");
        assert_eq!(
            config.crius.runtime.runtimes["runc"].runtime_path,
            Path::new("/usr/sbin/runc")
        );
        assert_eq!(
            config.crius.runtime.runtimes["crun"].runtime_path,
            Path::new("/usr/bin/crun")
        );
        assert_eq!(
            config.crius.network.network_dir,
            Path::new("/etc/cni/net.d")
        );
        assert_eq!(
            config.crius.network.plugin_dirs,
            vec![PathBuf::from("/opt/cni/bin"), PathBuf::from("/usr/lib/cni")]
        );
    }

    #[test]
    fn printed_defaults_parse_back_to_the_defaults() {
        let text = Config::default().to_commented_toml();
        assert_eq!(load(&text).unwrap(), Config::default());
    }

    #[test]
    fn printed_config_with_auths_and_runtimes_parses_back() {
        let mut config = Config::default();
        config.crius.image.auths.insert(
            "registry.example.com:5000".to_string(),
            RegistryAuth {
                username: "u".into(),
                password: "p".into(),
                auth: String::new(),
            },
        );
        config.crius.runtime.runtimes.insert(
            "kata".to_string(),
            RuntimeHandler {
                runtime_path: "/usr/bin/containerd-shim-kata-v2".into(),
                runtime_type: RuntimeType::Vm,
                ..RuntimeHandler::default()
            },
        );
        config.crius.image.insecure_registries = vec!["127.0.0.1:5000".into()];
        let text = config.to_commented_toml();
        assert_eq!(load(&text).unwrap(), config);
        assert!(text.contains("# Credentials for one registry."), "{text}");
        assert!(text.contains("# oci: a runc-compatible CLI"), "{text}");
    }

    #[test]
    fn every_printed_key_has_a_comment() {
        let mut config = Config::default();
        config
            .crius
            .image
            .auths
            .insert("r.example:5000".into(), RegistryAuth::default());
        let text = config.to_commented_toml();
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let above = if i > 0 { lines[i - 1].trim() } else { "" };
            assert!(
                above.starts_with('#'),
                "no comment above {line:?} in:\n{text}"
            );
        }
    }

    #[test]
    fn committed_deploy_config_matches_the_printed_defaults() {
        let committed = include_str!("../../../deploy/crius.conf");
        assert_eq!(
            committed,
            Config::default().to_commented_toml(),
            "deploy/crius.conf is stale: regenerate it with `cargo run -p crius -- config --default > deploy/crius.conf`"
        );
    }

    #[test]
    fn unknown_key_names_file_line_and_key() {
        let text =
            "[crius]\nroot = \"/x\"\n\n[crius.api]\nlisten = \"/run/x.sock\"\nlissten = \"/y\"\n";
        let err = load(text).unwrap_err().to_string();
        assert!(err.contains("/etc/crius/crius.conf:6"), "{err}");
        assert!(err.contains("crius.api.lissten"), "{err}");
        assert!(err.contains("unknown field"), "{err}");
        assert!(!err.contains('\n'), "{err}");
    }

    #[test]
    fn unknown_table_names_the_table() {
        let err = load("[crius.apii]\nlisten = \"/x\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("crius.conf:1"), "{err}");
        assert!(err.contains("crius.apii"), "{err}");
    }

    #[test]
    fn bad_value_names_file_line_and_key() {
        let text = "[crius]\nlog_level = \"loud\"\n";
        let err = load(text).unwrap_err().to_string();
        assert!(err.contains("crius.conf:2"), "{err}");
        assert!(err.contains("crius.log_level"), "{err}");
        assert!(err.contains("loud"), "{err}");

        let err = load("[crius.api]\nstream_port = \"ten\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("crius.conf:2: key crius.api.stream_port"),
            "{err}"
        );

        let err = load("[crius.runtime]\ncgroup_manager = \"cgroupz\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("crius.runtime.cgroup_manager"), "{err}");
    }

    #[test]
    fn syntax_error_names_file_and_line() {
        let err = load("[crius]\nroot = \n").unwrap_err().to_string();
        assert!(
            err.starts_with("invalid config file /etc/crius/crius.conf:2"),
            "{err}"
        );
    }

    #[test]
    fn top_level_key_outside_crius_is_rejected() {
        let err = load("root = \"/x\"\n").unwrap_err().to_string();
        assert!(err.contains(":1: key root: unknown field"), "{err}");
    }

    #[test]
    fn dropins_override_in_order_and_merge_tables() {
        let main = "[crius]\nlog_level = \"debug\"\n[crius.runtime.runtimes.runc]\nruntime_root = \"/run/r\"\n";
        let first = "[crius]\nlog_level = \"warn\"\nroot = \"/a\"\n";
        let second = "[crius]\nroot = \"/b\"\n[crius.runtime.runtimes.runc]\nallowed_annotations = [\"x\"]\n";
        let config = Config::from_texts([
            (Path::new("/c/crius.conf"), main),
            (Path::new("/c/crius.conf.d/01.conf"), first),
            (Path::new("/c/crius.conf.d/02.conf"), second),
        ])
        .unwrap();
        assert_eq!(config.crius.log_level, LogLevel::Warn);
        assert_eq!(config.crius.root, Path::new("/b"));
        let runc = &config.crius.runtime.runtimes["runc"];
        assert_eq!(runc.runtime_path, Path::new("/usr/sbin/runc"));
        assert_eq!(runc.runtime_root, Path::new("/run/r"));
        assert_eq!(runc.allowed_annotations, vec!["x".to_string()]);
        assert!(config.crius.runtime.runtimes.contains_key("crun"));
    }

    #[test]
    fn error_in_a_dropin_names_the_dropin() {
        let err = Config::from_texts([
            (Path::new("/c/crius.conf"), ""),
            (
                Path::new("/c/crius.conf.d/10-x.conf"),
                "[crius.network]\nplugin_dir = []\n",
            ),
        ])
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("/c/crius.conf.d/10-x.conf:2: key crius.network.plugin_dir"),
            "{err}"
        );
    }

    #[test]
    fn semantic_errors_name_the_key() {
        let err = load("[crius.runtime]\ndefault_runtime = \"kata\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("crius.runtime.default_runtime"), "{err}");
        let err = load("[crius]\nroot = \"relative\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("crius.root"), "{err}");
        let err = load("[crius.runtime]\nlog_size_max = 10\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("crius.runtime.log_size_max"), "{err}");
        let err = load(
            "[crius.runtime.runtimes.runc]\nallowed_annotations = [\"run.oci.\", \"x.io/y\"]\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("crius.runtime.runtimes.runc.allowed_annotations: \"x.io/y\" is not"),
            "{err}"
        );
    }

    #[test]
    fn included_pod_metrics_takes_cri_o_group_names_or_all_alone() {
        let config =
            load("[crius.stats]\nincluded_pod_metrics = [\"cpu\", \"diskIO\", \"network\"]\n")
                .unwrap();
        let core = crate::core_config::core_config(&config, None);
        use crius_core::MetricGroup;
        assert_eq!(
            core.pod_metrics,
            [MetricGroup::Cpu, MetricGroup::DiskIo, MetricGroup::Network]
        );
        let all = load("[crius.stats]\nincluded_pod_metrics = [\"all\"]\n").unwrap();
        assert_eq!(
            crate::core_config::core_config(&all, None).pod_metrics,
            MetricGroup::ALL
        );
        assert!(crate::core_config::core_config(&Config::default(), None)
            .pod_metrics
            .is_empty());
        for (text, says) in [
            ("[\"cpu\", \"all\"]", "\"all\" must be the only element"),
            (
                "[\"cpus\"]",
                "unknown metric group \"cpus\"; known: cpu, disk, diskIO",
            ),
        ] {
            let err = load(&format!("[crius.stats]\nincluded_pod_metrics = {text}\n"))
                .unwrap_err()
                .to_string();
            assert!(err.contains("crius.stats.included_pod_metrics"), "{err}");
            assert!(err.contains(says), "{err}");
        }
    }

    #[test]
    fn a_malformed_pinned_image_pattern_names_file_line_key_and_pattern() {
        let text = "[crius.image]\npause_image = \"x/p:1\"\npinned_images = [\n  \"ok.io/a:1\",\n  \"ok.io/*/b\",\n]\n";
        let err = load(text).unwrap_err().to_string();
        assert!(
            err.contains("crius.conf:3: key crius.image.pinned_images"),
            "{err}"
        );
        assert!(err.contains("\"ok.io/*/b\" has a * inside"), "{err}");
        let config = load("[crius.image]\npinned_images = [\"ok.io/*\", \"*pause*\"]\n").unwrap();
        assert_eq!(
            config.crius.image.pinned_images.texts(),
            ["ok.io/*", "*pause*"]
        );
    }

    #[test]
    fn files_come_from_the_main_file_then_sorted_dropins() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("crius.conf");
        let dropins = dir.path().join("crius.conf.d");
        std::fs::create_dir(&dropins).unwrap();
        std::fs::write(&file, "[crius]\nroot = \"/main\"\n").unwrap();
        std::fs::write(dropins.join("20-b.conf"), "[crius]\nroot = \"/b\"\n").unwrap();
        std::fs::write(dropins.join("10-a.conf"), "[crius]\nroot = \"/a\"\n").unwrap();
        std::fs::write(dropins.join("99-ignored.toml"), "garbage").unwrap();
        let sources = ConfigSources {
            file: file.clone(),
            file_required: true,
            dir: dropins.clone(),
        };
        assert_eq!(
            sources.files().unwrap(),
            vec![file, dropins.join("10-a.conf"), dropins.join("20-b.conf")]
        );
        assert_eq!(Config::load(&sources).unwrap().crius.root, Path::new("/b"));
    }

    #[test]
    fn missing_default_file_is_fine_but_a_named_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let mut sources = ConfigSources {
            file: dir.path().join("absent.conf"),
            file_required: false,
            dir: dir.path().join("absent.d"),
        };
        assert_eq!(Config::load(&sources).unwrap(), Config::default());
        sources.file_required = true;
        let err = Config::load(&sources).unwrap_err().to_string();
        assert!(err.contains("absent.conf"), "{err}");
    }

    #[test]
    fn resolved_fills_helpers_and_cache_dir() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("crius-pause"), "").unwrap();
        let resolved = Config::default().resolved(Some(dir.path()));
        assert_eq!(
            resolved.crius.image.pause_binary,
            dir.path().join("crius-pause")
        );
        assert_eq!(
            resolved.crius.runtime.runtimes["runc"].monitor_path,
            Path::new("/usr/libexec/crius/crius-conmon")
        );
        assert_eq!(
            resolved.crius.network.cache_dir,
            Path::new("/var/lib/crius/cni-cache")
        );
    }

    #[test]
    fn the_builtin_runtime_is_found_next_to_crius_or_left_unresolved() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            Config::default().crius.runtime.runtimes["crius"].runtime_path,
            Path::new(BUILTIN_RUNTIME)
        );
        // Not beside crius and (on a test machine) not in PATH: the bare name stays,
        // and the handler check reports it not found.
        let bin = dir.path().join(BUILTIN_RUNTIME);
        let unresolved = find_program(Some(dir.path()), Path::new(BUILTIN_RUNTIME));
        assert_ne!(unresolved.as_deref(), Some(bin.as_path()));
        std::fs::write(&bin, "#!/bin/sh\n").unwrap();
        // Not executable: passed over.
        assert_ne!(
            find_program(Some(dir.path()), Path::new(BUILTIN_RUNTIME)).as_deref(),
            Some(bin.as_path())
        );
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        let resolved = Config::default().resolved(Some(dir.path()));
        assert_eq!(resolved.crius.runtime.runtimes["crius"].runtime_path, bin);
        // A path with a slash is taken as given.
        assert_eq!(
            resolved.crius.runtime.runtimes["runc"].runtime_path,
            Path::new("/usr/sbin/runc")
        );
        assert_eq!(
            find_program(Some(dir.path()), Path::new("./crius-runtime")),
            None
        );
    }

    #[test]
    fn redacted_json_hides_secrets() {
        let mut config = Config::default();
        config.crius.image.auths.insert(
            "r:5000".into(),
            RegistryAuth {
                username: "u".into(),
                password: "hunter2".into(),
                auth: "dTpodW50ZXIy".into(),
            },
        );
        let json = config.to_redacted_json().to_string();
        assert!(
            !json.contains("hunter2") && !json.contains("dTpodW50ZXIy"),
            "{json}"
        );
        assert!(json.contains("\"username\":\"u\""), "{json}");
        assert!(!format!("{config:?}").contains("hunter2"));
    }

    #[test]
    fn tracing_keys_are_cri_o_s_and_checked() {
        let c = load("").unwrap().crius.tracing;
        assert!(!c.enable_tracing);
        assert_eq!(c.tracing_endpoint, "127.0.0.1:4317");
        assert_eq!(c.tracing_sampling_rate_per_million, 0);
        let c = load(
            "[crius.tracing]\nenable_tracing = true\ntracing_endpoint = \"collector:4317\"\ntracing_sampling_rate_per_million = 1000000\n",
        )
        .unwrap()
        .crius
        .tracing;
        assert_eq!(c.endpoint_uri().unwrap(), "http://collector:4317");
        for (endpoint, why) in [
            ("https://collector:4317", "only plain gRPC"),
            ("", "is empty"),
            ("a b:1", "is not HOST:PORT"),
        ] {
            let text = format!(
                "[crius.tracing]\nenable_tracing = true\ntracing_endpoint = {endpoint:?}\n"
            );
            let err = load(&text).unwrap_err().to_string();
            assert!(
                err.contains("crius.tracing.tracing_endpoint") && err.contains(why),
                "{endpoint:?}: {err}"
            );
        }
        // Not checked while tracing is off.
        load("[crius.tracing]\ntracing_endpoint = \"\"\n").unwrap();
        let err = load("[crius.tracing]\ntracing_sampling_rate_per_million = 1000001\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("tracing_sampling_rate_per_million"), "{err}");
    }
}
