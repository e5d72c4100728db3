//! Command-line flags (named as CRI-O names them) and their `CRIUS_*` environment twins.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::{CgroupManager, Config, ConfigSources, LogFormat, LogLevel};

/// `crius`: a Kubernetes container runtime serving CRI v1 on a Unix socket.
#[derive(Debug, Parser)]
#[command(
    name = "crius",
    version,
    about = "A Kubernetes container runtime serving CRI v1 on a Unix socket",
    long_about = "A Kubernetes container runtime serving CRI v1 on a Unix socket.\n\n\
        With no subcommand it runs the daemon (as root). Settings come from the config \
        file, its drop-ins, CRIUS_* environment variables and these flags, each \
        overriding the one before."
)]
pub struct Cli {
    /// Settings shared by the daemon and every subcommand.
    #[command(flatten)]
    pub opts: ConfigOpts,
    /// What to do; none runs the daemon.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the effective configuration as commented TOML (with --default: the defaults).
    Config {
        /// Print the built-in defaults, ignoring files, environment and flags.
        #[arg(long)]
        default: bool,
    },
    /// Print the version of crius and of the CRI API it serves.
    Version,
    /// Ask the daemon on the configured socket whether it is ready (exit 0 only if it is).
    Status {
        /// Also print Status' verbose info (the effective config, host limits).
        #[arg(long, short)]
        verbose: bool,
    },
    /// Check the node: kernel features, runtime handlers, CNI, the pause image, disk, the
    /// socket and the daemon; a table of OK/WARN/FAIL with a fix for each problem (exit 0
    /// only when nothing FAILs).
    Check,
    /// Pull an image through the running daemon (its registries config and credentials),
    /// showing each layer's progress: bars on a terminal, plain lines otherwise.
    Pull {
        /// The image, as the kubelet names it (short names resolved by registries.conf).
        image: String,
    },
    /// Print a shell completion script, generated from these command definitions
    /// (e.g. `crius completion bash > /usr/share/bash-completion/completions/crius`).
    Completion {
        /// The shell to complete for.
        shell: clap_complete::Shell,
    },
    /// Print the crius(8) man page (roff), generated from these command definitions
    /// (e.g. `crius man > /usr/share/man/man8/crius.8`).
    Man,
    /// Remove all state under root and runroot (images, pods, containers). Stop every pod
    /// and the daemon first.
    Wipe {
        /// Really remove it; without this flag nothing is touched.
        #[arg(long, short)]
        force: bool,
    },
}

/// Flags that override the configuration files.
#[derive(Clone, Debug, Default, Args)]
pub struct ConfigOpts {
    /// Main config file [default: /etc/crius/crius.conf, skipped when absent].
    #[arg(long, global = true, env = "CRIUS_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Drop-in directory; its *.conf files apply in name order [default: /etc/crius/crius.conf.d].
    #[arg(long, global = true, env = "CRIUS_CONFIG_DIR", value_name = "DIR")]
    pub config_dir: Option<PathBuf>,
    /// Persistent state directory (crius.root).
    #[arg(long, global = true, env = "CRIUS_ROOT", value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Volatile state directory (crius.runroot).
    #[arg(long, global = true, env = "CRIUS_RUNROOT", value_name = "DIR")]
    pub runroot: Option<PathBuf>,
    /// CRI socket path, with or without unix:// (crius.api.listen).
    #[arg(long, global = true, env = "CRIUS_LISTEN", value_name = "PATH")]
    pub listen: Option<String>,
    /// Log verbosity (crius.log_level).
    #[arg(long, global = true, env = "CRIUS_LOG_LEVEL", value_name = "LEVEL")]
    pub log_level: Option<LogLevel>,
    /// Log format (crius.log_format).
    #[arg(long, global = true, env = "CRIUS_LOG_FORMAT", value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,
    /// Cgroup driver (crius.runtime.cgroup_manager).
    #[arg(
        long,
        global = true,
        env = "CRIUS_CGROUP_MANAGER",
        value_name = "DRIVER"
    )]
    pub cgroup_manager: Option<CgroupManager>,
    /// CNI network config directory (crius.network.network_dir).
    #[arg(long, global = true, env = "CRIUS_CNI_CONFIG_DIR", value_name = "DIR")]
    pub cni_config_dir: Option<PathBuf>,
    /// CNI plugin directory; repeat for several (crius.network.plugin_dirs).
    #[arg(
        long,
        global = true,
        env = "CRIUS_CNI_PLUGIN_DIR",
        value_name = "DIR",
        value_delimiter = ','
    )]
    pub cni_plugin_dir: Vec<PathBuf>,
    /// Pause image (crius.image.pause_image).
    #[arg(long, global = true, env = "CRIUS_PAUSE_IMAGE", value_name = "IMAGE")]
    pub pause_image: Option<String>,
    /// Runtime handler for pods that name none (crius.runtime.default_runtime).
    #[arg(
        long,
        global = true,
        env = "CRIUS_DEFAULT_RUNTIME",
        value_name = "NAME"
    )]
    pub default_runtime: Option<String>,
    /// Registry (host or host:port) reached over plain HTTP; repeat for several
    /// (crius.image.insecure_registries).
    #[arg(
        long,
        global = true,
        env = "CRIUS_INSECURE_REGISTRY",
        value_name = "HOST",
        value_delimiter = ','
    )]
    pub insecure_registry: Vec<String>,
    /// containers-registries.conf(5) file (crius.image.registries_conf).
    #[arg(
        long,
        global = true,
        env = "CRIUS_REGISTRIES_CONF",
        value_name = "FILE"
    )]
    pub registries_conf: Option<PathBuf>,
    /// containers-auth.json(5) file with registry credentials, as `podman login
    /// --authfile` writes it (crius.image.global_auth_file).
    #[arg(
        long,
        global = true,
        env = "CRIUS_GLOBAL_AUTH_FILE",
        value_name = "FILE"
    )]
    pub global_auth_file: Option<PathBuf>,
    /// Streaming server address (crius.api.stream_address).
    #[arg(long, global = true, env = "CRIUS_STREAM_ADDRESS", value_name = "ADDR")]
    pub stream_address: Option<String>,
    /// Streaming server port; 0 picks one (crius.api.stream_port).
    #[arg(long, global = true, env = "CRIUS_STREAM_PORT", value_name = "PORT")]
    pub stream_port: Option<u16>,
    /// Serve Prometheus metrics (crius.metrics.enable_metrics).
    #[arg(long, global = true, env = "CRIUS_ENABLE_METRICS", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub enable_metrics: Option<bool>,
    /// Address of the metrics endpoint (crius.metrics.metrics_host).
    #[arg(long, global = true, env = "CRIUS_METRICS_HOST", value_name = "ADDR")]
    pub metrics_host: Option<String>,
    /// Port of the metrics endpoint; 0 picks one (crius.metrics.metrics_port).
    #[arg(long, global = true, env = "CRIUS_METRICS_PORT", value_name = "PORT")]
    pub metrics_port: Option<u16>,
    /// Export OpenTelemetry spans over OTLP/gRPC (crius.tracing.enable_tracing).
    #[arg(long, global = true, env = "CRIUS_ENABLE_TRACING", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub enable_tracing: Option<bool>,
    /// OTLP/gRPC collector, HOST:PORT or http://HOST:PORT (crius.tracing.tracing_endpoint).
    #[arg(
        long,
        global = true,
        env = "CRIUS_TRACING_ENDPOINT",
        value_name = "ADDR"
    )]
    pub tracing_endpoint: Option<String>,
    /// Traces kept per million, 0 to 1000000 (crius.tracing.tracing_sampling_rate_per_million).
    #[arg(
        long,
        global = true,
        env = "CRIUS_TRACING_SAMPLING_RATE_PER_MILLION",
        value_name = "N"
    )]
    pub tracing_sampling_rate_per_million: Option<u32>,
}

impl ConfigOpts {
    /// The files to read, as `--config` and `--config-dir` name them.
    pub fn sources(&self) -> ConfigSources {
        let mut sources = ConfigSources::default();
        if let Some(file) = &self.config {
            sources.file = file.clone();
            sources.file_required = true;
        }
        if let Some(dir) = &self.config_dir {
            sources.dir = dir.clone();
        }
        sources
    }

    /// Writes every flag that was given over `config`.
    pub fn apply(&self, config: &mut Config) {
        let c = &mut config.crius;
        if let Some(v) = &self.root {
            c.root = v.clone();
        }
        if let Some(v) = &self.runroot {
            c.runroot = v.clone();
        }
        if let Some(v) = &self.listen {
            c.api.listen = PathBuf::from(v.strip_prefix("unix://").unwrap_or(v));
        }
        if let Some(v) = self.log_level {
            c.log_level = v;
        }
        if let Some(v) = self.log_format {
            c.log_format = v;
        }
        if let Some(v) = self.cgroup_manager {
            c.runtime.cgroup_manager = v;
        }
        if let Some(v) = &self.cni_config_dir {
            c.network.network_dir = v.clone();
        }
        if !self.cni_plugin_dir.is_empty() {
            c.network.plugin_dirs = self.cni_plugin_dir.clone();
        }
        if let Some(v) = &self.pause_image {
            c.image.pause_image = v.clone();
        }
        if let Some(v) = &self.default_runtime {
            c.runtime.default_runtime = v.clone();
        }
        if !self.insecure_registry.is_empty() {
            c.image.insecure_registries = self.insecure_registry.clone();
        }
        if let Some(v) = &self.registries_conf {
            c.image.registries_conf = v.clone();
        }
        if let Some(v) = &self.global_auth_file {
            c.image.global_auth_file = v.clone();
        }
        if let Some(v) = &self.stream_address {
            c.api.stream_address = v.clone();
        }
        if let Some(v) = self.stream_port {
            c.api.stream_port = v;
        }
        if let Some(v) = self.enable_metrics {
            c.metrics.enable_metrics = v;
        }
        if let Some(v) = &self.metrics_host {
            c.metrics.metrics_host = v.clone();
        }
        if let Some(v) = self.metrics_port {
            c.metrics.metrics_port = v;
        }
        if let Some(v) = self.enable_tracing {
            c.tracing.enable_tracing = v;
        }
        if let Some(v) = &self.tracing_endpoint {
            c.tracing.tracing_endpoint = v.clone();
        }
        if let Some(v) = self.tracing_sampling_rate_per_million {
            c.tracing.tracing_sampling_rate_per_million = v;
        }
    }

    /// The files, then the flags, checked: what the daemon runs with.
    pub fn effective_config(&self) -> Result<Config, crate::config::ConfigError> {
        let mut config = Config::load(&self.sources())?;
        self.apply(&mut config);
        config.validate()?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("crius").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn flags_override_config() {
        let cli = parse(&[
            "--root",
            "/r",
            "--runroot",
            "/rr",
            "--listen",
            "unix:///tmp/c.sock",
            "--log-level",
            "debug",
            "--log-format",
            "json",
            "--cgroup-manager",
            "systemd",
            "--cni-config-dir",
            "/cni",
            "--cni-plugin-dir",
            "/p1",
            "--cni-plugin-dir",
            "/p2",
            "--pause-image",
            "example/pause:1",
            "--default-runtime",
            "crun",
            "--insecure-registry",
            "127.0.0.1:5000",
            "--insecure-registry",
            "127.0.0.1:5001",
            "--registries-conf",
            "/reg.conf",
            "--global-auth-file",
            "/auth.json",
            "--stream-address",
            "0.0.0.0",
            "--stream-port",
            "10010",
            "--enable-metrics",
            "--metrics-host",
            "127.0.0.2",
            "--metrics-port",
            "9095",
            "--enable-tracing",
            "--tracing-endpoint",
            "127.0.0.1:4318",
            "--tracing-sampling-rate-per-million",
            "1000000",
        ]);
        let mut config = Config::default();
        cli.opts.apply(&mut config);
        let c = &config.crius;
        assert_eq!(c.root, Path::new("/r"));
        assert_eq!(c.runroot, Path::new("/rr"));
        assert_eq!(c.api.listen, Path::new("/tmp/c.sock"));
        assert_eq!(c.log_level, LogLevel::Debug);
        assert_eq!(c.log_format, LogFormat::Json);
        assert_eq!(c.runtime.cgroup_manager, CgroupManager::Systemd);
        assert_eq!(c.network.network_dir, Path::new("/cni"));
        assert_eq!(
            c.network.plugin_dirs,
            vec![PathBuf::from("/p1"), PathBuf::from("/p2")]
        );
        assert_eq!(c.image.pause_image, "example/pause:1");
        assert_eq!(c.runtime.default_runtime, "crun");
        assert_eq!(
            c.image.insecure_registries,
            vec!["127.0.0.1:5000", "127.0.0.1:5001"]
        );
        assert_eq!(c.image.registries_conf, Path::new("/reg.conf"));
        assert_eq!(c.image.global_auth_file, Path::new("/auth.json"));
        assert_eq!(c.api.stream_address, "0.0.0.0");
        assert_eq!(c.api.stream_port, 10010);
        assert!(c.metrics.enable_metrics);
        assert_eq!(c.metrics.metrics_host, "127.0.0.2");
        assert_eq!(c.metrics.metrics_port, 9095);
        assert!(c.tracing.enable_tracing);
        assert_eq!(c.tracing.tracing_endpoint, "127.0.0.1:4318");
        assert_eq!(c.tracing.tracing_sampling_rate_per_million, 1_000_000);
        assert!(cli.command.is_none());
    }

    #[test]
    fn every_subcommand_has_help_and_is_in_the_completions_and_the_man_page() {
        use clap::CommandFactory;
        let cmd = Cli::command();
        cmd.clone().debug_assert();
        let mut bash = Vec::new();
        clap_complete::generate(
            clap_complete::Shell::Bash,
            &mut cmd.clone(),
            "crius",
            &mut bash,
        );
        let bash = String::from_utf8(bash).unwrap();
        let mut man = Vec::new();
        clap_mangen::Man::new(cmd.clone()).render(&mut man).unwrap();
        let man = String::from_utf8(man).unwrap();
        for sub in cmd.get_subcommands() {
            let name = sub.get_name();
            assert!(sub.get_about().is_some(), "{name} has no help");
            assert!(
                bash.contains(&format!("crius__subcmd__{name}")),
                "{name} not in:\n{bash}"
            );
            assert!(man.contains(name), "{name} not in the man page");
        }
        for arg in cmd.get_arguments() {
            assert!(arg.get_help().is_some(), "--{} has no help", arg.get_id());
        }
    }

    #[test]
    fn no_flags_change_nothing() {
        let cli = parse(&[]);
        let mut config = Config::default();
        cli.opts.apply(&mut config);
        assert_eq!(config, Config::default());
    }

    #[test]
    fn flags_are_accepted_after_subcommands() {
        let cli = parse(&["config", "--root", "/r"]);
        assert!(matches!(
            cli.command,
            Some(Command::Config { default: false })
        ));
        assert_eq!(cli.opts.root.as_deref(), Some(Path::new("/r")));
    }

    #[test]
    fn bad_flag_values_are_refused() {
        let bad = Cli::try_parse_from(["crius", "--log-format", "xml"]);
        assert!(bad.is_err());
        let bad = Cli::try_parse_from(["crius", "--stream-port", "70000"]);
        assert!(bad.is_err());
    }

    #[test]
    fn config_flag_makes_the_file_required() {
        let cli = parse(&[
            "--config",
            "/nowhere/crius.conf",
            "--config-dir",
            "/nowhere.d",
        ]);
        let sources = cli.opts.sources();
        assert!(sources.file_required);
        assert_eq!(sources.dir, Path::new("/nowhere.d"));
        let err = cli.opts.effective_config().unwrap_err().to_string();
        assert!(err.contains("/nowhere/crius.conf"), "{err}");
    }

    #[test]
    fn flags_are_validated_with_the_files() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("crius.conf");
        std::fs::write(&file, "").unwrap();
        let file = file.to_str().unwrap().to_string();
        let cli = parse(&["--config", &file, "--default-runtime", "nope"]);
        let err = cli.opts.effective_config().unwrap_err().to_string();
        assert!(err.contains("crius.runtime.default_runtime"), "{err}");
    }
}
