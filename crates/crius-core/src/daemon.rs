//! The daemon: owns the stores and the maps of pods and containers, and serves the
//! operations crius-cri calls.

use std::path::Path;
use std::sync::{Arc, RwLock};

use tracing::info;

use crate::config::{CgroupDriver, CoreConfig};
use crate::error::{Error, Result};
use crate::host;

/// Name and versions reported by `Version`.
#[derive(Debug, Clone)]
pub struct VersionInfo {
    /// "crius".
    pub runtime_name: &'static str,
    /// This build's version.
    pub runtime_version: &'static str,
    /// The CRI API version served.
    pub runtime_api_version: &'static str,
}

/// What `Status` reports.
#[derive(Debug, Clone)]
pub struct RuntimeStatus {
    /// Whether the default runtime can run containers; with the reason when not.
    pub runtime_ready: Result<(), String>,
    /// Whether pod networking is configured; with the reason when not.
    pub network_ready: Result<(), String>,
    /// Runtime handler names, the default first.
    pub handlers: Vec<String>,
    /// Extra facts for `verbose`: the effective config and host limits.
    pub info: serde_json::Value,
}

/// The running daemon's state. One per process.
pub struct Daemon {
    config: RwLock<Arc<CoreConfig>>,
    oom_score_adj_min: i32,
}

impl std::fmt::Debug for Daemon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Daemon").finish_non_exhaustive()
    }
}

impl Daemon {
    /// Opens the state dirs, restores what a previous run left, and gets ready to serve.
    pub async fn start(config: CoreConfig) -> Result<Arc<Daemon>> {
        for dir in [&config.root_dir, &config.run_dir] {
            std::fs::create_dir_all(dir).map_err(|e| Error::io("create state dir", dir, e))?;
        }
        let oom_score_adj_min = host::oom_score_adj_min();
        info!(
            root = %config.root_dir.display(),
            run = %config.run_dir.display(),
            oom_score_adj_min,
            "daemon state opened"
        );
        Ok(Arc::new(Daemon {
            config: RwLock::new(Arc::new(config)),
            oom_score_adj_min,
        }))
    }

    /// The config in force.
    pub fn config(&self) -> Arc<CoreConfig> {
        self.config
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Applies what can change without a restart (registries, CNI dirs, the shown config).
    pub async fn reload(&self, config: CoreConfig) {
        *self.config.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(config);
        info!("configuration reloaded");
    }

    /// Stops background work before exit. Containers and their monitors keep running.
    pub async fn shutdown(&self) {
        info!("daemon shutting down; containers keep running");
    }

    /// Name and versions.
    pub fn version(&self) -> VersionInfo {
        VersionInfo {
            runtime_name: "crius",
            runtime_version: env!("CARGO_PKG_VERSION"),
            runtime_api_version: "v1",
        }
    }

    /// The cgroup driver, for `RuntimeConfig`.
    pub fn cgroup_driver(&self) -> CgroupDriver {
        self.config().cgroup_driver
    }

    /// Runtime and network readiness, for `Status`.
    pub fn status(&self) -> RuntimeStatus {
        let config = self.config();
        let runtime_ready = match config.runtimes.get(&config.default_runtime) {
            None => Err(format!(
                "default runtime {:?} is not configured",
                config.default_runtime
            )),
            Some(h) if !h.runtime_path.exists() => Err(format!(
                "runtime binary {} for handler {:?} not found",
                h.runtime_path.display(),
                config.default_runtime
            )),
            Some(_) => Ok(()),
        };
        let network_ready = find_cni_config(&config.network.conf_dir);
        let mut handlers = vec![config.default_runtime.clone()];
        handlers.extend(
            config
                .runtimes
                .keys()
                .filter(|k| **k != config.default_runtime)
                .cloned(),
        );
        let info = serde_json::json!({
            "config": config.effective_config,
            "oomScoreAdjMin": self.oom_score_adj_min,
            "restrictOomScoreAdj": self.oom_score_adj_min > -1000,
            "apparmor": host::apparmor_enabled(),
        });
        RuntimeStatus {
            runtime_ready,
            network_ready,
            handlers,
            info,
        }
    }
}

fn find_cni_config(dir: &Path) -> Result<(), String> {
    let found = std::fs::read_dir(dir).ok().is_some_and(|entries| {
        entries.flatten().any(|e| {
            matches!(
                e.path().extension().and_then(|x| x.to_str()),
                Some("conflist" | "conf" | "json")
            )
        })
    });
    if found {
        Ok(())
    } else {
        Err(format!("no CNI configuration found in {}", dir.display()))
    }
}
