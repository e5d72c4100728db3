//! The daemon: owns the stores and the maps of pods and containers, and serves the
//! operations crius-cri calls. The pod flows are in `pod.rs`, the container flows in
//! `container.rs`, images in `image.rs`, restart recovery in `restore.rs`.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use crius_image::{ImageStore, ImageStoreConfig};
use crius_net::{Cni, CniConfig};
use crius_oci::runtime::RuntimeCli;
use tokio::sync::{broadcast, watch};
use tracing::info;

use crate::config::{CgroupDriver, CoreConfig};
use crate::error::{Error, Result};
use crate::events::Event;
use crate::handler;
use crate::host;
use crate::model::{ContainerRecord, PodRecord};
use crate::record::{self, RecordDir};

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
    /// Runtime handlers, the default first.
    pub handlers: Vec<HandlerStatus>,
    /// Extra facts for `verbose`: the effective config and host limits.
    pub info: serde_json::Value,
}

/// What a runtime handler can do, for `Status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandlerStatus {
    /// The handler's name.
    pub name: String,
    /// Whether it can run pods; with the reason when not. A handler that is not ready
    /// advertises no features.
    pub ready: Result<(), String>,
    /// Its runtime (and the kernel) can make a mount read-only recursively.
    pub recursive_read_only_mounts: bool,
    /// Its runtime (and the kernel) can run a pod in a user namespace of its own with
    /// id-mapped mounts.
    pub user_namespaces: bool,
    /// The handler's `RUNTIME features`, as verbose Status shows them (null when none).
    pub features_info: serde_json::Value,
}

/// What a handler's runtime can do on this kernel, probed at start and on reload.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct HandlerFeatures {
    /// Recursive read-only mounts ("rro").
    pub rro: bool,
    /// User namespaces with id-mapped mounts.
    pub user_namespaces: bool,
    /// The runtime said it cannot use the systemd cgroup driver.
    pub no_systemd_cgroup: bool,
    /// What `RUNTIME features` said and what crius makes of it, for Status's verbose
    /// info (`runtimeHandlers.NAME.features`); null for a handler without the command.
    pub info: serde_json::Value,
}

/// One pod or container in memory: `op` serialises the operations that change it (so one
/// slow pod never blocks another), `rec` is what readers see without waiting for them.
pub(crate) struct Entry<R> {
    pub op: Arc<tokio::sync::Mutex<()>>,
    rec: RwLock<R>,
    /// Set once the object is whole (every creation step done); until then lookups by id
    /// do not see it.
    whole: std::sync::atomic::AtomicBool,
}

impl<R: Clone> Entry<R> {
    pub fn new(rec: R, whole: bool) -> Self {
        Entry {
            op: Arc::new(tokio::sync::Mutex::new(())),
            rec: RwLock::new(rec),
            whole: std::sync::atomic::AtomicBool::new(whole),
        }
    }

    /// Whether creation finished.
    pub fn is_whole(&self) -> bool {
        self.whole.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Marks creation finished.
    pub fn set_whole(&self) {
        self.whole.store(true, std::sync::atomic::Ordering::Release);
    }

    /// A copy of the record as it is now.
    pub fn get(&self) -> R {
        self.rec.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Changes the record in memory; the caller persists it.
    pub fn update<T>(&self, f: impl FnOnce(&mut R) -> T) -> T {
        f(&mut self.rec.write().unwrap_or_else(|e| e.into_inner()))
    }
}

/// A container in memory, plus the channel its exit is announced on.
pub(crate) struct ContainerEntry {
    pub entry: Entry<ContainerRecord>,
    /// true once the container has exited.
    pub exited: watch::Sender<bool>,
    /// The runtime holds no state for it any more (deleted after its exit), so removal
    /// need not ask the runtime. In memory only: after a restart removal asks again.
    pub runtime_deleted: AtomicBool,
}

/// Everything the daemon knows, by id and by name.
#[derive(Default)]
pub(crate) struct Index {
    pub pods: HashMap<String, Arc<Entry<PodRecord>>>,
    pub containers: HashMap<String, Arc<ContainerEntry>>,
    /// "namespace/name/uid/attempt" -> pod id, so a repeated RunPodSandbox finds its pod.
    pub pod_names: HashMap<String, String>,
    /// "pod id/name/attempt" -> container id.
    pub container_names: HashMap<String, String>,
}

/// The running daemon's state. One per process.
pub struct Daemon {
    config: RwLock<Arc<CoreConfig>>,
    pub(crate) oom_score_adj_min: i32,
    pub(crate) images: ImageStore,
    pub(crate) cni: Cni,
    pub(crate) index: Mutex<Index>,
    pub(crate) pod_records: RecordDir,
    pub(crate) container_records: RecordDir,
    pub(crate) events: broadcast::Sender<Event>,
    /// Serialises making sure the pause image is present.
    pub(crate) pause_image_lock: tokio::sync::Mutex<Option<String>>,
    /// The last CPU sample (time ns, cpu ns) per container or pod, for usage_nano_cores.
    pub(crate) cpu_samples: Mutex<HashMap<String, (i64, u64)>>,
    /// What each handler's runtime can do (probed at start and on reload).
    pub(crate) handler_features: RwLock<HashMap<String, HandlerFeatures>>,
    /// The last probe of each handler's binary; emptied on reload.
    pub(crate) handler_probes: Mutex<handler::Probes>,
    /// Connections to the shims of vm pods, by pod id.
    pub(crate) shims: Arc<Mutex<HashMap<String, crius_oci::shim::Shim>>>,
    /// Containers whose shim reported an OOM kill, until their exit is recorded.
    pub(crate) shim_ooms: Mutex<HashSet<String>>,
    /// The log copiers of running vm containers.
    pub(crate) log_copiers: Mutex<crate::vm::Copiers>,
    /// The stdin fifos crius holds open for running vm containers with stdin.
    pub(crate) vm_stdins: Mutex<HashMap<String, crius_oci::shim_stream::ContainerStdin>>,
    /// The socket the shims publish their events to.
    pub(crate) shim_events: tokio::sync::Mutex<Option<crius_oci::shim::EventServer>>,
}

impl std::fmt::Debug for Daemon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Daemon").finish_non_exhaustive()
    }
}

/// How long `RUNTIME features` may take before the handler counts as having none.
const FEATURES_TIMEOUT: Duration = Duration::from_secs(5);

/// How long runtime and monitor calls may take before the daemon gives up on them.
pub(crate) const RUNTIME_TIMEOUT: Duration = Duration::from_secs(60);

fn image_store_config(config: &CoreConfig) -> ImageStoreConfig {
    ImageStoreConfig {
        root: config.root_dir.join("images"),
        registries_conf: config.images.registries_conf.clone(),
        insecure_registries: config.images.insecure_registries.clone(),
        registry_auths: config
            .images
            .auths
            .iter()
            .map(|(host, a)| {
                (
                    host.clone(),
                    crius_image::Credentials {
                        username: a.username.clone(),
                        password: a.password.clone(),
                        auth: a.auth.clone(),
                        ..Default::default()
                    },
                )
            })
            .collect(),
        auth_file: config.images.auth_file.clone(),
        max_concurrent_downloads: config.images.max_concurrent_downloads.max(1),
        limits: crius_image::ImageLimits {
            layer: crius_image::unpack::LayerLimits {
                max_size: config.images.max_layer_size,
                max_entries: config.images.max_layer_entries,
            },
            max_manifest_size: config.images.max_manifest_size,
            max_config_size: config.images.max_config_size,
        },
    }
}

fn cni_config(config: &CoreConfig) -> CniConfig {
    CniConfig {
        conf_dir: config.network.conf_dir.clone(),
        plugin_dirs: config.network.plugin_dirs.clone(),
        cache_dir: config.network.cache_dir.clone(),
        timeout: Duration::from_secs(60),
    }
}

impl Daemon {
    /// Opens the state dirs, restores what a previous run left, and gets ready to serve.
    pub async fn start(config: CoreConfig) -> Result<Arc<Daemon>> {
        // Only a test build (crius's `fault-injection` feature) can be armed.
        if let Some(point) = crius_fault::armed().map_err(Error::InvalidArgument)? {
            tracing::warn!(
                point,
                "crash point armed: crius kills itself with SIGKILL when it gets there"
            );
        }
        // Only root gets into the state dirs (0700): nothing non-root traverses them (runc,
        // the monitor and CNI plugins run as root, and a container sees its rootfs and the
        // pod files through mounts made by root). The runroot itself is 0711: the CRI
        // socket lives there by default (mode 0660, for a group of clients), and 0711 lets
        // them reach it by name without listing anything. Dirs below these that older
        // versions made wider are reached only through them.
        let (root, run) = (&config.root_dir, &config.run_dir);
        crius_oci::dir_with_mode(run, 0o711)
            .map_err(|e| Error::io("make state dir (0711)", run, e))?;
        for dir in [
            root.clone(),
            root.join("images"),
            root.join("records"),
            root.join("pods"),
            root.join("containers"),
            run.join("pods"),
            run.join("containers"),
            run.join("netns"),
            run.join("runtimes"),
        ] {
            record::private_dir(&dir)?;
        }
        let oom_score_adj_min = host::oom_score_adj_min();
        let images = ImageStore::open(image_store_config(&config))?;
        let cni = Cni::new(cni_config(&config));
        let handler_features = handler_features(&config).await;
        let records = config.root_dir.join("records");
        let daemon = Arc::new(Daemon {
            pod_records: RecordDir::open(records.join("pods"))?,
            container_records: RecordDir::open(records.join("containers"))?,
            config: RwLock::new(Arc::new(config)),
            oom_score_adj_min,
            images,
            cni,
            index: Mutex::new(Index::default()),
            events: broadcast::channel(1024).0,
            pause_image_lock: tokio::sync::Mutex::new(None),
            cpu_samples: Mutex::new(HashMap::new()),
            handler_features: RwLock::new(handler_features),
            handler_probes: Mutex::new(handler::Probes::new()),
            shims: Arc::new(Mutex::new(HashMap::new())),
            shim_ooms: Mutex::new(HashSet::new()),
            log_copiers: Mutex::new(HashMap::new()),
            vm_stdins: Mutex::new(HashMap::new()),
            shim_events: tokio::sync::Mutex::new(None),
        });
        daemon.serve_shim_events().await?;
        daemon.restore().await?;
        let config = daemon.config();
        info!(
            root = %config.root_dir.display(),
            run = %config.run_dir.display(),
            oom_score_adj_min,
            "daemon state opened"
        );
        Ok(daemon)
    }

    /// The config in force.
    pub fn config(&self) -> Arc<CoreConfig> {
        self.config
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Applies what can change without a restart (registries.conf, insecure registries and
    /// credentials, CNI dirs, the shown config).
    pub async fn reload(&self, config: CoreConfig) {
        self.cni.reload(cni_config(&config));
        *self
            .handler_features
            .write()
            .unwrap_or_else(|e| e.into_inner()) = handler_features(&config).await;
        self.handler_probes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        if let Err(e) = self.images.reload_registries(&image_store_config(&config)) {
            tracing::warn!(error = %e, "registries config not reloaded");
        }
        *self.config.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(config);
        info!("configuration reloaded");
    }

    /// Stops background work before exit. Containers and their monitors keep running.
    pub async fn shutdown(&self) {
        if let Some(server) = self.shim_events.lock().await.take() {
            server.stop().await;
        }
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

    /// Runtime and network readiness, for `Status`. RuntimeReady fails only when the
    /// default handler cannot run pods; every handler's own entry says whether it can.
    pub async fn status(&self) -> RuntimeStatus {
        let config = self.config();
        let mut names = vec![config.default_runtime.clone()];
        names.extend(
            config
                .runtimes
                .keys()
                .filter(|k| **k != config.default_runtime)
                .cloned(),
        );
        let mut handlers = Vec::with_capacity(names.len());
        for name in names {
            let ready = self.handler_readiness(&config, &name).await;
            // A handler that cannot run pods can deliver no feature either.
            let f = if ready.is_ok() {
                self.features_of(&name)
            } else {
                HandlerFeatures::default()
            };
            handlers.push(HandlerStatus {
                recursive_read_only_mounts: f.rro,
                user_namespaces: f.user_namespaces,
                features_info: f.info,
                ready,
                name,
            });
        }
        let runtime_ready = match &handlers[0].ready {
            Ok(()) => Ok(()),
            Err(reason) => Err(format!(
                "default runtime handler {:?} is not ready: {reason}",
                config.default_runtime
            )),
        };
        let network_ready = self
            .cni
            .network_status()
            .map(|_| ())
            .map_err(|e| e.to_string());
        let handler_info: serde_json::Map<String, serde_json::Value> = handlers
            .iter()
            .map(|h| {
                let entry = match &h.ready {
                    Ok(()) => serde_json::json!({"ready": true, "features": h.features_info}),
                    Err(reason) => serde_json::json!({"ready": false, "reason": reason}),
                };
                (h.name.clone(), entry)
            })
            .collect();
        let info = serde_json::json!({
            "config": config.effective_config,
            "runtimeHandlers": handler_info,
            "oomScoreAdjMin": self.oom_score_adj_min,
            "restrictOomScoreAdj": self.oom_score_adj_min > -1000,
            "apparmor": host::apparmor_enabled(),
            "checkpoint": match crate::checkpoint::criu_probe().await {
                Ok(version) => serde_json::json!({"available": true, "criu": version}),
                Err(reason) => serde_json::json!({"available": false, "reason": reason}),
            },
        });
        RuntimeStatus {
            runtime_ready,
            network_ready,
            handlers,
            info,
        }
    }

    /// Whether handler `name` of `config` can run pods, or why not (see `handler.rs`).
    async fn handler_readiness(&self, config: &CoreConfig, name: &str) -> Result<(), String> {
        let Some(h) = config.runtimes.get(name) else {
            return Err(format!("runtime handler {name:?} is not configured"));
        };
        let cached = self
            .handler_probes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned();
        let (ready, probe) = handler::readiness(h, cached.as_ref()).await;
        if let Some(probe) = probe {
            self.handler_probes
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(name.to_string(), probe);
        }
        ready?;
        match cgroup_driver_refusal(config.cgroup_driver, &self.features_of(name)) {
            Some(reason) => Err(reason.to_string()),
            None => Ok(()),
        }
    }

    /// Fails with FailedPrecondition, naming the handler and the reason, when handler
    /// `name` ("" is the default) cannot run pods now; with InvalidArgument when there is
    /// no such handler.
    pub(crate) async fn ensure_handler_ready(&self, name: &str) -> Result<()> {
        let config = self.config();
        let name = if name.is_empty() {
            config.default_runtime.as_str()
        } else {
            name
        };
        if !config.runtimes.contains_key(name) {
            return Err(unknown_handler(&config, name));
        }
        self.handler_readiness(&config, name)
            .await
            .map_err(|reason| {
                Error::FailedPrecondition(format!(
                    "runtime handler {name:?} is not ready: {reason}"
                ))
            })
    }

    /// What the handler `name` ("" is the default) can do; nothing for an unknown one.
    pub(crate) fn features_of(&self, name: &str) -> HandlerFeatures {
        let config = self.config();
        let name = if name.is_empty() {
            config.default_runtime.as_str()
        } else {
            name
        };
        self.handler_features
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
            .unwrap_or_default()
    }

    /// Whether the handler `name` ("" is the default) can make mounts read-only recursively.
    pub(crate) fn supports_rro(&self, name: &str) -> bool {
        self.features_of(name).rro
    }

    /// The runtime CLI and monitor binary of a handler ("" is the default).
    pub(crate) fn runtime_handler(&self, name: &str) -> Result<(RuntimeCli, PathBuf, String)> {
        handler_cli(&self.config(), name)
    }
}

/// What each handler of `config` can do on this kernel, from `RUNTIME features`:
/// recursive read-only mounts need "rro" and mount_setattr(2) (Linux 5.12); user
/// namespaces need the "user" namespace, id-mapped mounts in the runtime, and a kernel
/// that id-maps overlayfs layers and tmpfs (the pod's shm), Linux 6.3.
async fn handler_features(config: &CoreConfig) -> HashMap<String, HandlerFeatures> {
    let mut out = HashMap::new();
    let rro_kernel = host::kernel_has_mount_setattr();
    let userns_kernel = host::kernel_has_idmapped_tmpfs();
    for name in config.runtimes.keys() {
        let Ok((cli, _, _)) = handler_cli(config, name) else {
            continue;
        };
        // Bounded, so a runtime that hangs cannot hold up start-up or a reload.
        let features = tokio::time::timeout(FEATURES_TIMEOUT, cli.features())
            .await
            .unwrap_or_default();
        out.insert(
            name.clone(),
            features_of_handler(&features, rro_kernel, userns_kernel),
        );
    }
    info!(handlers = ?out, "runtime handler features");
    out
}

/// Why a handler cannot run pods under crius's cgroup driver, when its runtime said so.
fn cgroup_driver_refusal(driver: CgroupDriver, f: &HandlerFeatures) -> Option<&'static str> {
    (driver == CgroupDriver::Systemd && f.no_systemd_cgroup).then_some(
        "cgroup_manager is \"systemd\", and the runtime cannot use the systemd cgroup \
         driver (its features say linux.cgroup.systemd false); set cgroup_manager = \
         \"cgroupfs\" or pick another runtime",
    )
}

/// What crius makes of one handler's `features` on a kernel with or without
/// mount_setattr (`rro_kernel`) and id-mapped tmpfs (`userns_kernel`); the reasons a
/// feature is off are spelled out for Status's verbose info.
fn features_of_handler(
    f: &crius_oci::runtime::RuntimeFeatures,
    rro_kernel: bool,
    userns_kernel: bool,
) -> HandlerFeatures {
    let rro = rro_kernel && f.mount_options.iter().any(|o| o == "rro");
    let user_namespaces = userns_kernel && f.user_namespaces();
    let no_systemd_cgroup = f.systemd_cgroup == Some(false);
    if !f.answered {
        return HandlerFeatures {
            rro,
            user_namespaces,
            no_systemd_cgroup,
            info: serde_json::Value::Null,
        };
    }
    let userns_reason = if user_namespaces {
        None
    } else if !f.namespaces.iter().any(|n| n == "user") {
        Some("the runtime cannot make user namespaces (no \"user\" in features.linux.namespaces)")
    } else if !f.idmap_mounts {
        Some("the runtime makes no id-mapped mounts (features.linux.mountExtensions.idmap)")
    } else {
        Some("the kernel cannot id-map tmpfs and overlayfs layers (Linux 6.3 or later)")
    };
    HandlerFeatures {
        rro,
        user_namespaces,
        no_systemd_cgroup,
        info: serde_json::json!({
            "namespaces": f.namespaces,
            "systemdCgroup": f.systemd_cgroup,
            "mountOptions": f.mount_options,
            "idmapMounts": f.idmap_mounts,
            "recursiveReadOnlyMounts": rro,
            "userNamespaces": user_namespaces,
            "userNamespacesReason": userns_reason,
        }),
    }
}

/// The error for a handler `name` that `config` does not have.
fn unknown_handler(config: &CoreConfig, name: &str) -> Error {
    Error::InvalidArgument(format!(
        "unknown runtime handler {name:?}; configured: {}",
        config
            .runtimes
            .keys()
            .cloned()
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

/// The runtime CLI and monitor binary of a handler of `config` ("" is the default).
fn handler_cli(config: &CoreConfig, name: &str) -> Result<(RuntimeCli, PathBuf, String)> {
    let name = if name.is_empty() {
        config.default_runtime.as_str()
    } else {
        name
    };
    let handler = config
        .runtimes
        .get(name)
        .ok_or_else(|| unknown_handler(config, name))?;
    if handler.runtime_type != "oci" {
        return Err(Error::Unimplemented(format!(
            "runtime type {:?} of handler {name:?}",
            handler.runtime_type
        )));
    }
    let root = handler
        .runtime_root
        .clone()
        .unwrap_or_else(|| config.run_dir.join("runtimes").join(name));
    let cli = RuntimeCli {
        path: handler.runtime_path.clone(),
        root: Some(root),
        systemd_cgroup: config.cgroup_driver == CgroupDriver::Systemd,
    };
    Ok((cli, handler.monitor_path.clone(), name.to_string()))
}

impl Daemon {
    /// The persistent dir of a pod (pause bundle and rootfs).
    pub(crate) fn pod_dir(&self, id: &str) -> PathBuf {
        self.config().root_dir.join("pods").join(id)
    }

    /// The volatile dir of a pod (shared files, shm, pause monitor).
    pub(crate) fn pod_run_dir(&self, id: &str) -> PathBuf {
        self.config().run_dir.join("pods").join(id)
    }

    /// The persistent dir of a container (bundle, rootfs, upper dir).
    pub(crate) fn container_dir(&self, id: &str) -> PathBuf {
        self.config().root_dir.join("containers").join(id)
    }

    /// The volatile dir of a container (its monitor's socket and exit file).
    pub(crate) fn container_run_dir(&self, id: &str) -> PathBuf {
        self.config().run_dir.join("containers").join(id)
    }

    /// Where network namespaces are pinned.
    pub(crate) fn netns_dir(&self) -> PathBuf {
        self.config().run_dir.join("netns")
    }

    /// A pod by id, full or unique prefix.
    pub(crate) fn pod_entry(&self, id: &str) -> Result<Arc<Entry<PodRecord>>> {
        let index = self.index.lock().unwrap_or_else(|e| e.into_inner());
        find_by_id(&index.pods, id, "pod sandbox", |e| e.is_whole()).cloned()
    }

    /// A container by id, full or unique prefix.
    pub(crate) fn container_entry(&self, id: &str) -> Result<Arc<ContainerEntry>> {
        let index = self.index.lock().unwrap_or_else(|e| e.into_inner());
        find_by_id(&index.containers, id, "container", |c| c.entry.is_whole()).cloned()
    }

    /// The containers of a pod.
    pub(crate) fn pod_containers(&self, pod_id: &str) -> Vec<Arc<ContainerEntry>> {
        let index = self.index.lock().unwrap_or_else(|e| e.into_inner());
        index
            .containers
            .values()
            .filter(|c| c.entry.get().pod_id == pod_id)
            .cloned()
            .collect()
    }

    /// Announces a container event to `GetContainerEvents` streams.
    pub(crate) fn emit(&self, event: Event) {
        // No receiver is fine: nobody is listening.
        let _ = self.events.send(event);
    }

    /// Subscribes to container and pod lifecycle events.
    pub fn subscribe_events(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }
}

/// Finds a map entry by full id or unique id prefix.
fn find_by_id<'a, T>(
    map: &'a HashMap<String, T>,
    id: &str,
    kind: &'static str,
    whole: impl Fn(&T) -> bool,
) -> Result<&'a T> {
    if id.is_empty() {
        return Err(Error::InvalidArgument(format!("{kind} id is empty")));
    }
    if let Some(v) = map.get(id).filter(|v| whole(v)) {
        return Ok(v);
    }
    let mut found = map.iter().filter(|(k, v)| k.starts_with(id) && whole(v));
    match (found.next(), found.next()) {
        (Some((_, v)), None) => Ok(v),
        (Some(_), Some(_)) => Err(Error::InvalidArgument(format!(
            "{kind} id prefix {id:?} is ambiguous"
        ))),
        (None, _) => Err(Error::NotFound {
            kind,
            id: id.to_string(),
        }),
    }
}

impl Daemon {
    /// Removes a dir tree off the request path: one rename into a trash dir on the same
    /// filesystem, then the deletion on a blocking thread. Deleting a container's files
    /// costs a few ms per entry on disks mounted with `discard`; the caller need not wait.
    /// Trash left by a crash is emptied at start.
    pub(crate) fn discard_dir(&self, path: &Path) -> Result<()> {
        let config = self.config();
        let base = if path.starts_with(&config.run_dir) {
            &config.run_dir
        } else {
            &config.root_dir
        };
        let trash = base.join(TRASH_DIR);
        std::fs::create_dir_all(&trash).map_err(|e| Error::io("create trash dir", &trash, e))?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let target = trash.join(format!("{name}-{}", crate::model::new_id()));
        match std::fs::rename(path, &target) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::io("move to trash", path, e)),
        }
        tokio::task::spawn_blocking(move || {
            if let Err(e) = remove_dir_all(&target) {
                tracing::warn!(error = %e, "trash not emptied");
            }
        });
        Ok(())
    }

    /// Empties the trash dirs (what a crash left mid-deletion).
    pub(crate) fn empty_trash(&self) {
        let config = self.config();
        for base in [&config.root_dir, &config.run_dir] {
            let trash = base.join(TRASH_DIR);
            if let Err(e) = remove_dir_all(&trash) {
                tracing::warn!(error = %e, "trash not emptied");
            }
        }
    }
}

/// Where removed pod and container dirs wait to be deleted.
const TRASH_DIR: &str = ".trash";

/// Removes a dir tree; succeeds if it is gone already.
pub(crate) fn remove_dir_all(path: &Path) -> Result<(), String> {
    match std::fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("remove {}: {e}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crius_oci::runtime::RuntimeFeatures;

    #[test]
    fn a_runtime_without_the_systemd_driver_is_refused_only_under_that_driver() {
        let features = |json: &[u8]| features_of_handler(&RuntimeFeatures::parse(json), true, true);
        let without = features(br#"{"linux":{"cgroup":{"v1":true,"systemd":false}}}"#);
        let with = features(br#"{"linux":{"cgroup":{"v1":true,"systemd":true}}}"#);
        let unsaid = features(br#"{"linux":{"namespaces":["mount"]}}"#);
        let reason = cgroup_driver_refusal(CgroupDriver::Systemd, &without)
            .expect("refused under the systemd driver");
        assert!(
            reason.contains("cgroup_manager") && reason.contains("systemd"),
            "{reason}"
        );
        assert_eq!(without.info["systemdCgroup"], false);
        assert_eq!(
            cgroup_driver_refusal(CgroupDriver::Cgroupfs, &without),
            None
        );
        // A runtime that can, or does not say (runc 1.0, crun without features), is taken
        // at its word or given the benefit of the doubt.
        assert_eq!(cgroup_driver_refusal(CgroupDriver::Systemd, &with), None);
        assert_eq!(cgroup_driver_refusal(CgroupDriver::Systemd, &unsaid), None);
    }
}
