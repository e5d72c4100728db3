//! The pod flows: RunPodSandbox, StopPodSandbox, RemovePodSandbox, status and list.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crius_cri_api::v1 as cri;
use crius_net::{NetNs, PodNetwork, PortMapping, Protocol};
use crius_oci::monitor::{spawn_monitor, MonitorClient, MonitorSpec};
use crius_oci::runtime::RuntimeCli;
use crius_oci::spec;
use tracing::{info, warn, Instrument};

use crate::cgroup;
use crate::config::CgroupDriver;
use crate::daemon::{remove_dir_all, Daemon, Entry, RUNTIME_TIMEOUT};
use crate::error::{Error, Result};
use crate::events::{Event, EventKind};
use crate::filter;
use crate::model::{new_id, now_ns, ContainerState, PodRecord, PodState};
use crate::pod_ns;
use crate::podfiles::{self, PodFiles};
use crate::undo::Undo;
use crate::validate;

/// How long the pause container gets to exit after SIGKILL.
const PAUSE_STOP_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) fn pod_name_key(md: &cri::PodSandboxMetadata) -> String {
    format!("{}/{}/{}/{}", md.namespace, md.name, md.uid, md.attempt)
}

fn namespace_options(config: &cri::PodSandboxConfig) -> cri::NamespaceOption {
    config
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .and_then(|s| s.namespace_options.clone())
        .unwrap_or_default()
}

/// Whether a pod needs a pause container to hold its namespaces (CRI-O's `NeedsInfra`):
/// always without `drop_infra_ctr`; with it, when the pod shares one PID namespace (a PID
/// namespace has no pin that keeps it alive without a process), runs with a vm handler
/// (the pause task makes the VM), or asks for a user namespace of its own (crius pins no
/// user namespace; the pause process holds it).
pub(crate) fn needs_infra(config: &cri::PodSandboxConfig, drop_infra_ctr: bool, vm: bool) -> bool {
    !drop_infra_ctr
        || vm
        || namespace_options(config).pid == cri::NamespaceMode::Pod as i32
        || spec::pod_user_namespace(config).is_some()
}

/// Whether the pod uses the host's network namespace.
pub(crate) fn host_network(config: &cri::PodSandboxConfig) -> bool {
    namespace_options(config).network == cri::NamespaceMode::Node as i32
}

/// Whether the pod uses the host's IPC namespace.
pub(crate) fn host_ipc(config: &cri::PodSandboxConfig) -> bool {
    namespace_options(config).ipc == cri::NamespaceMode::Node as i32
}

pub(crate) fn cgroup_driver(driver: CgroupDriver) -> spec::CgroupDriver {
    match driver {
        CgroupDriver::Cgroupfs => spec::CgroupDriver::Cgroupfs,
        CgroupDriver::Systemd => spec::CgroupDriver::Systemd,
    }
}

fn port_mappings(config: &cri::PodSandboxConfig) -> Vec<PortMapping> {
    config
        .port_mappings
        .iter()
        .filter(|p| p.host_port > 0)
        .map(|p| PortMapping {
            protocol: match cri::Protocol::try_from(p.protocol) {
                Ok(cri::Protocol::Udp) => Protocol::Udp,
                Ok(cri::Protocol::Sctp) => Protocol::Sctp,
                _ => Protocol::Tcp,
            },
            container_port: p.container_port.clamp(0, u16::MAX as i32) as u16,
            host_port: p.host_port.clamp(0, u16::MAX as i32) as u16,
            host_ip: p.host_ip.clone(),
        })
        .collect()
}

impl Daemon {
    /// The pod network description CNI plugins are given.
    pub(crate) fn pod_network(&self, pod: &PodRecord, netns: PathBuf) -> PodNetwork {
        let md = pod.config.metadata.clone().unwrap_or_default();
        PodNetwork {
            id: pod.id.clone(),
            name: md.name,
            namespace: md.namespace,
            uid: md.uid,
            netns,
            port_mappings: port_mappings(&pod.config),
            // Checked when the pod was run (validate::pod_config).
            bandwidth: crate::bandwidth::from_annotations(&pod.config.annotations)
                .ok()
                .flatten(),
            ips: Vec::new(),
            cgroup_parent: pod.cgroup_parent.clone(),
        }
    }

    /// The options every spec is generated with.
    /// The spec options for a pod or container of the runtime handler `handler` (a
    /// resolved name).
    pub(crate) fn spec_options(&self, handler: &str) -> spec::SpecOptions {
        let config = self.config();
        spec::SpecOptions {
            cgroup_driver: cgroup_driver(config.cgroup_driver),
            oom_score_adj_min: self.oom_score_adj_min,
            seccomp_profile_root: config.seccomp_profile_root.clone(),
            default_capabilities: spec::DEFAULT_CAPABILITIES
                .iter()
                .map(|c| c.to_string())
                .collect(),
            apparmor_available: crate::host::apparmor_enabled(),
            allowed_annotations: config
                .runtimes
                .get(handler)
                .map(|h| h.allowed_annotations.clone())
                .unwrap_or_default(),
            cdi_spec_dirs: config.cdi_spec_dirs.clone(),
            hooks_dirs: config.hooks_dirs.clone(),
        }
    }

    /// Makes sure the pause image is in the store: present, pulled, or installed from the
    /// built-in pause binary when no registry has it. Returns its image id.
    async fn ensure_pause_image(&self) -> Result<String> {
        let mut known = self.pause_image_lock.lock().await;
        let name = self.config().pause_image.clone();
        if let Ok(image) = self.images.resolve(&name) {
            *known = Some(image.id.clone());
            return Ok(image.id);
        }
        match tokio::time::timeout(Duration::from_secs(120), self.images.pull(&name, None)).await {
            Ok(Ok(image)) => {
                info!(image = %name, "pause image pulled");
                *known = Some(image.id.clone());
                return Ok(image.id);
            }
            Ok(Err(e)) => {
                warn!(image = %name, error = %e, "pause image not pullable; installing the built-in one")
            }
            Err(_) => {
                warn!(image = %name, "pause image pull timed out; installing the built-in one")
            }
        }
        let binary = self.config().pause_binary.clone();
        let image = self.images.install_pause_image(&name, &binary)?;
        *known = Some(image.id.clone());
        Ok(image.id)
    }

    /// RunPodSandbox: makes a whole pod or nothing. A repeat of a request for the same pod
    /// (name, namespace, uid, attempt) waits for the first and returns its id.
    pub async fn run_pod(
        self: &Arc<Self>,
        config: cri::PodSandboxConfig,
        runtime_handler: String,
    ) -> Result<String> {
        let arrived = std::time::Instant::now();
        validate::pod_config(&config, &self.config().cgroup_root)?;
        if let Some(linux) = &config.linux {
            spec::validate_sysctls(&linux.sysctls, host_network(&config), host_ipc(&config))?;
        }
        // Fail on an unknown or unusable handler, or one that cannot do what the pod asks,
        // before anything is made.
        self.ensure_handler_ready(&runtime_handler).await?;
        let handler = match self.vm_of(&runtime_handler) {
            Some(vm) => vm.name,
            None => self.runtime_handler(&runtime_handler)?.2,
        };
        if spec::pod_user_namespace(&config).is_some()
            && !self.features_of(&handler).user_namespaces
        {
            return Err(Error::FailedPrecondition(format!(
                "pod asks for a user namespace of its own (userns_options mode POD), but \
                 runtime handler {handler:?} cannot run one: its runtime must list the \
                 \"user\" namespace and id-mapped mounts in `RUNTIME features` (runc 1.2 or \
                 newer) and the kernel must id-map overlayfs and tmpfs (Linux 6.3)"
            )));
        }
        let key = pod_name_key(config.metadata.as_ref().expect("validated"));
        loop {
            let existing = {
                let index = self.index.lock().unwrap_or_else(|e| e.into_inner());
                index
                    .pod_names
                    .get(&key)
                    .and_then(|id| index.pods.get(id).map(|e| (id.clone(), e.clone())))
            };
            if let Some((id, entry)) = existing {
                // Wait for a creation still in flight, then answer with its pod.
                let _op = entry.op.lock().await;
                if self.pod_entry(&id).is_ok() {
                    info!(pod_id = %id, "pod exists for this request; returning it");
                    return Ok(id);
                }
                continue;
            }
            break;
        }
        let id = new_id();
        let (cgroup_parent, owns_cgroup) = cgroup::pod_cgroup(
            self.config().cgroup_driver,
            &self.config().cgroup_root,
            config
                .linux
                .as_ref()
                .map(|l| l.cgroup_parent.as_str())
                .unwrap_or(""),
            &id,
        );
        let record = PodRecord {
            id: id.clone(),
            config,
            runtime_handler,
            created_at: now_ns(),
            state: PodState::NotReady,
            netns: None,
            ips: Vec::new(),
            cgroup_parent,
            owns_cgroup,
            pause_pid: None,
            shm: None,
            pause_image: String::new(),
            pause_deleted: false,
            shim_address: None,
            shim_pid: None,
            infra_dropped: false,
            ipc_ns: None,
            uts_ns: None,
        };
        let entry = Arc::new(Entry::new(record, false));
        let op = entry.op.clone().lock_owned().await;
        let raced = {
            let mut index = self.index.lock().unwrap_or_else(|e| e.into_inner());
            let raced = index.pod_names.contains_key(&key);
            if !raced {
                index.pod_names.insert(key.clone(), id.clone());
                index.pods.insert(id.clone(), entry.clone());
            }
            raced
        };
        if raced {
            // Another request for the same pod got in first: answer as its repeat.
            drop(op);
            let rec = entry.get();
            return Box::pin(self.run_pod(rec.config, rec.runtime_handler)).await;
        }
        // Creation runs on its own task so that a client that gives up (a kubelet timeout)
        // does not cut it half way; its retry finds the pod.
        let daemon = self.clone();
        let task_entry = entry.clone();
        // In the call's span, so its steps (CNI, runtime) are its children.
        let task = tokio::spawn(
            async move {
                let _op = op;
                let result = daemon.create_pod(&task_entry).await;
                match &result {
                    Ok(()) => daemon.watch_pause(task_entry.clone()),
                    Err(_) => {
                        let mut index = daemon.index.lock().unwrap_or_else(|e| e.into_inner());
                        index.pods.remove(&task_entry.get().id);
                        index.pod_names.remove(&key);
                    }
                }
                result
            }
            .instrument(tracing::Span::current()),
        );
        task.await
            .map_err(|e| Error::Internal(format!("pod creation task failed: {e}")))??;
        crius_metrics::metrics().pod_run(&id, arrived);
        Ok(id)
    }

    async fn create_pod(&self, entry: &Entry<PodRecord>) -> Result<()> {
        let mut pod = entry.get();
        let id = pod.id.clone();
        let mut undo = Undo::new();
        let result = self.create_pod_steps(&mut pod, &mut undo).await;
        match result {
            Ok(()) => {
                undo.commit();
                entry.update(|r| *r = pod);
                entry.set_whole();
                info!(pod_id = %id, "pod sandbox ready");
                self.emit(Event {
                    container_id: id.clone(),
                    pod_id: id,
                    kind: EventKind::Started,
                    at: now_ns(),
                });
                Ok(())
            }
            Err(e) => {
                warn!(pod_id = %id, error = %e, "pod sandbox creation failed; unwinding");
                undo.unwind().await;
                Err(e)
            }
        }
    }

    async fn create_pod_steps(&self, pod: &mut PodRecord, undo: &mut Undo) -> Result<()> {
        let id = pod.id.clone();
        let host_net = host_network(&pod.config);
        // A vm pod's tasks go through its shim, made with the pause task.
        let runtime = match self.vm_of(&pod.runtime_handler) {
            Some(vm) => {
                pod.runtime_handler = vm.name;
                None
            }
            None => {
                let (runtime, _, handler) = self.runtime_handler(&pod.runtime_handler)?;
                pod.runtime_handler = handler;
                Some(runtime)
            }
        };

        let infra = needs_infra(&pod.config, self.config().drop_infra_ctr, runtime.is_none());
        pod.infra_dropped = !infra;

        let dir = self.pod_dir(&id);
        let run_dir = self.pod_run_dir(&id);
        for d in [&dir, &run_dir] {
            std::fs::create_dir_all(d).map_err(|e| Error::io("create pod dir", d, e))?;
        }
        {
            let (dir, run_dir) = (dir.clone(), run_dir.clone());
            undo.push("remove pod dirs", move || {
                remove_dir_all(&dir)?;
                remove_dir_all(&run_dir)
            });
        }
        crius_fault::point!("run_pod.dirs_made");

        let pause_image = if infra {
            self.ensure_pause_image()
                .await
                .map_err(|e| e.at_step("pause image"))?
        } else {
            String::new()
        };
        pod.pause_image = pause_image.clone();

        if !host_net {
            let ns = NetNs::create(&self.netns_dir(), &id)
                .map_err(|e| Error::from(e).at_step("create network namespace"))?;
            let ns_path = ns.path().to_path_buf();
            undo.push("remove netns", move || {
                ns.remove().map_err(|e| e.to_string())
            });
            pod.netns = Some(ns_path);
            crius_fault::point!("run_pod.netns_made");
        }

        // The pause container mounts these; /etc/hosts gets the pod's IPs once CNI gave them.
        let files = PodFiles::under(&run_dir);
        podfiles::write_pod_files(&files, &pod.config, host_net, &[])
            .map_err(|e| e.at_step("write hostname, resolv.conf and hosts"))?;

        let Some(runtime) = runtime.filter(|_| infra) else {
            if infra {
                // A vm pod: its shim makes the pause task.
                return self
                    .create_pod_with_pause(pod, &files, &pause_image, None, undo)
                    .await;
            }
            return self.create_pod_without_pause(pod, &files, undo).await;
        };
        self.create_pod_with_pause(pod, &files, &pause_image, Some(runtime), undo)
            .await
    }

    /// The rest of RunPodSandbox for a pod without a pause container: shm, the pinned IPC
    /// and UTS namespaces, the network. Nothing runs until the first container starts.
    async fn create_pod_without_pause(
        &self,
        pod: &mut PodRecord,
        files: &PodFiles,
        undo: &mut Undo,
    ) -> Result<()> {
        let id = pod.id.clone();
        pod.shm = self.pod_shm_and_cgroup(pod, undo)?;
        let host_net = host_network(&pod.config);
        let no_sysctls = HashMap::new();
        let sysctls = pod
            .config
            .linux
            .as_ref()
            .map_or(&no_sysctls, |l| &l.sysctls);
        let pins = pod_ns::pin(
            &self.pod_run_dir(&id),
            !host_ipc(&pod.config),
            (!host_net).then_some(pod.config.hostname.as_str()),
            sysctls,
        )
        .map_err(|e| e.at_step("pin the pod's IPC and UTS namespaces"))?;
        {
            let pins = pins.clone();
            undo.push("unpin ipc and uts namespaces", move || {
                pod_ns::unpin(&pins).map_err(|e| e.to_string())
            });
        }
        pod.ipc_ns = pins.ipc;
        pod.uts_ns = pins.uts;
        if let Some(netns) = &pod.netns {
            pod_ns::set_net_sysctls(netns, sysctls).map_err(|e| e.at_step("set net sysctls"))?;
        }
        pod.ips = self.set_up_pod_network(pod, undo).await?;
        if !pod.ips.is_empty() {
            podfiles::write_hosts(files, &pod.config, &pod.ips)
                .map_err(|e| e.at_step("write hosts with the pod IPs"))?;
        }
        pod.state = PodState::Ready;
        self.pod_records.write(&id, pod)?;
        Ok(())
    }

    /// The rest of RunPodSandbox for a pod with a pause container (`runtime`; `None` for a
    /// vm pod, whose shim runs it).
    async fn create_pod_with_pause(
        &self,
        pod: &mut PodRecord,
        files: &PodFiles,
        pause_image: &str,
        runtime: Option<RuntimeCli>,
        undo: &mut Undo,
    ) -> Result<()> {
        let id = pod.id.clone();

        // The network (CNI ADD) and the pause container (runc create) are made at once:
        // neither needs the other, and each takes tens of milliseconds.
        let mut net_undo = Undo::new();
        let mut pause_undo = Undo::new();
        let network = self.set_up_pod_network(pod, &mut net_undo);
        let pause = self.create_pause(pod, files, pause_image, &mut pause_undo);
        let (ips, pause) = tokio::join!(network, pause);
        undo.append(net_undo);
        undo.append(pause_undo);
        pod.ips = ips?;
        let (pause_pid, shm, shim) = pause?;
        pod.shm = shm;
        if let Some((address, pid)) = shim {
            pod.shim_address = Some(address);
            pod.shim_pid = Some(pid);
        }
        if !pod.ips.is_empty() {
            podfiles::write_hosts(files, &pod.config, &pod.ips)
                .map_err(|e| e.at_step("write hosts with the pod IPs"))?;
        }

        match runtime {
            Some(runtime) => tokio::time::timeout(RUNTIME_TIMEOUT, runtime.start(&id))
                .await
                .map_err(|_| Error::DeadlineExceeded("start pause container timed out".into()))?
                .map_err(|e| Error::from(e).at_step("start pause container"))?,
            None => {
                self.shim_of(pod)
                    .await?
                    .start(&id, "")
                    .await
                    .map_err(|e| Error::from(e).at_step("start pause task"))?;
            }
        }
        crius_fault::point!("run_pod.pause_started");
        pod.pause_pid = Some(pause_pid);
        pod.state = PodState::Ready;
        self.pod_records.write(&id, pod)?;
        crius_fault::point!("run_pod.recorded");
        Ok(())
    }

    /// CNI ADD for a pod with its own network namespace; the pod's IPs.
    async fn set_up_pod_network(&self, pod: &PodRecord, undo: &mut Undo) -> Result<Vec<String>> {
        let Some(ns_path) = pod.netns.clone() else {
            return Ok(Vec::new());
        };
        let network = self.pod_network(pod, ns_path);
        let status = self
            .cni
            .setup(&network)
            .await
            .map_err(|e| Error::from(e).at_step("set up pod network (CNI ADD)"))?;
        let cni = self.cni_handle();
        undo.push_async("cni del", async move {
            cni.teardown(&network).await.map_err(|e| e.to_string())
        });
        Ok(status.ips.iter().map(|ip| ip.to_string()).collect())
    }

    /// Creates (not starts) the pause container under its monitor: shm, rootfs, spec,
    /// bundle, `runc create` (for a vm handler: the pod's shim and its pause task).
    /// Returns the pause pid, the shm mount, if any, and a vm pod's shim address and pid.
    async fn create_pause(
        &self,
        pod: &PodRecord,
        files: &PodFiles,
        pause_image: &str,
        undo: &mut Undo,
    ) -> Result<PauseMade> {
        let id = &pod.id;
        let dir = self.pod_dir(id);
        let run_dir = self.pod_run_dir(id);
        let handler = pod.runtime_handler.clone();
        let shm = self.pod_shm_and_cgroup(pod, undo)?;

        let rootfs = self
            .mount_rootfs(&pod.config, None, pause_image, id, &dir)
            .map_err(|e| e.at_step("mount pause rootfs"))?;
        {
            let (userns_dir, dir) = (self.userns_rootfs_dir(id), dir.clone());
            undo.push("unmount pause rootfs", move || {
                crate::rootfs::unmount_rootfs(&userns_dir, &dir).map_err(|e| e.to_string())
            });
        }
        crius_fault::point!("run_pod.pause_rootfs_mounted");
        let image_config = self.images.image_config(pause_image)?;
        let pause_args = image_args(&image_config);
        let ctx = spec::PodContext {
            config: &pod.config,
            id,
            netns_path: pod.netns.as_deref(),
            pause_pid: None,
            ipc_ns_path: None,
            uts_ns_path: None,
            hostname_path: &files.hostname,
            resolv_conf_path: &files.resolv_conf,
            hosts_path: &files.hosts,
            shm_path: shm.as_deref(),
            cgroup_parent: &pod.cgroup_parent,
        };
        let oci = spec::pod_spec(&ctx, &rootfs, &pause_args, &self.spec_options(&handler))
            .map_err(|e| Error::from(e).at_step("generate pause spec"))?;
        spec::write_bundle(&dir, &oci)?;

        if let Some(vm) = self.vm_of(&pod.runtime_handler) {
            let (pid, address, shim_pid) = self.vm_create_pause(&vm, pod, &dir, undo).await?;
            return Ok((pid, shm, Some((address, shim_pid))));
        }
        let (runtime, monitor_path, _) = self.runtime_handler(&pod.runtime_handler)?;
        let handle = spawn_monitor(&MonitorSpec {
            id: id.clone(),
            bundle: dir.clone(),
            runtime: runtime.clone(),
            monitor_path,
            dir: run_dir.join("monitor"),
            log_path: None,
            terminal: false,
            stdin: false,
            stdin_once: false,
            log_size_max: None,
        })
        .await
        .map_err(|e| Error::from(e).at_step("create pause container"))?;
        {
            let (runtime, id) = (runtime.clone(), id.clone());
            undo.push_async("delete pause container", async move {
                runtime.delete(&id, true).await.map_err(|e| e.to_string())
            });
        }
        crius_fault::point!("run_pod.pause_created");
        Ok((handle.container_pid, shm, None))
    }

    /// Mounts the pod's /dev/shm (unless it uses the host IPC) and, for a cgroup crius
    /// makes, has the unwinding remove it. Returns the shm mount.
    fn pod_shm_and_cgroup(&self, pod: &PodRecord, undo: &mut Undo) -> Result<Option<PathBuf>> {
        let mut shm = None;
        if !host_ipc(&pod.config) {
            let path = self.pod_run_dir(&pod.id).join("shm");
            podfiles::mount_shm(&path).map_err(|e| e.at_step("mount shm"))?;
            let p = path.clone();
            undo.push("unmount shm", move || {
                podfiles::unmount_shm(&p).map_err(|e| e.to_string())
            });
            crius_fault::point!("run_pod.shm_mounted");
            shm = Some(path);
        }
        if pod.owns_cgroup && self.config().cgroup_driver == CgroupDriver::Cgroupfs {
            let cg = pod.cgroup_parent.clone();
            undo.push("remove pod cgroup", move || cgroup::remove_cgroupfs(&cg));
        }
        Ok(shm)
    }

    /// Follows a pod's pause container: when it dies (killed, OOM, or stopped), the pod is
    /// NotReady, so the kubelet sees it and makes a new one.
    pub(crate) fn watch_pause(self: &Arc<Self>, entry: Arc<Entry<PodRecord>>) {
        let daemon = self.clone();
        if entry.get().infra_dropped {
            // Nothing to follow: the pod is Ready until it is stopped.
            return;
        }
        tokio::spawn(async move {
            let id = entry.get().id;
            let pod = entry.get();
            if daemon.vm_of(&pod.runtime_handler).is_some() {
                let waited = match daemon.shim_of(&pod).await {
                    Ok(s) => s.wait(&id, "").await.map(|_| ()).map_err(Error::from),
                    Err(e) => Err(e),
                };
                if let Err(e) = waited {
                    warn!(pod_id = %id, error = %e, "lost the pod's shim");
                }
            } else {
                let client = MonitorClient::new(&daemon.pod_run_dir(&id).join("monitor"));
                if let Err(e) = client.wait_exit().await {
                    warn!(pod_id = %id, error = %e, "lost the pause container's monitor");
                }
            }
            // After any operation on the pod in flight: a StopPodSandbox that killed the
            // pause has recorded the pod NotReady and told of it by then.
            let _op = entry.op.lock().await;
            let changed = entry.update(|pod| {
                let was_ready = pod.state == PodState::Ready;
                pod.state = PodState::NotReady;
                pod.pause_pid = None;
                was_ready.then(|| pod.clone())
            });
            if let Some(pod) = changed {
                info!(pod_id = %id, "pause container exited; pod is NotReady");
                if let Err(e) = daemon.pod_records.write(&id, &pod) {
                    warn!(pod_id = %id, error = %e, "pod record not updated");
                }
                daemon.emit(Event {
                    container_id: id.clone(),
                    pod_id: id.clone(),
                    kind: EventKind::Stopped,
                    at: now_ns(),
                });
            }
            // Off the request path, as for containers: RemovePodSandbox then has no
            // runtime call left for the pause. A pod removed meanwhile has none either.
            if daemon.pod_entry(&id).is_err() {
                return;
            }
            if daemon
                .delete_exited(&entry.get().runtime_handler, &id)
                .await
            {
                entry.update(|pod| pod.pause_deleted = true);
            }
        });
    }

    /// A cheap handle on the CNI runner for undo steps and background work.
    fn cni_handle(&self) -> crius_net::Cni {
        crius_net::Cni::new(self.cni.config())
    }

    /// StopPodSandbox: stops every container and the pause container, tears the network
    /// down (CNI DEL from the cached result) and unmounts shm. Stopping twice, or stopping
    /// a pod that is gone, succeeds.
    pub async fn stop_pod(&self, id: &str) -> Result<()> {
        let entry = match self.pod_entry(id) {
            Ok(e) => e,
            Err(Error::NotFound { .. }) => return Ok(()),
            Err(e) => return Err(e),
        };
        let _op = entry.op.lock().await;
        let mut pod = entry.get();
        let containers = self.pod_containers(&pod.id);
        let already_stopped = pod.state == PodState::NotReady
            && pod.pause_pid.is_none()
            && pod.netns.is_none()
            && pod.ipc_ns.is_none()
            && pod.uts_ns.is_none()
            && containers
                .iter()
                .all(|c| c.entry.get().state == ContainerState::Exited);
        if already_stopped {
            // A pause that died on its own leaves shm mounted; unmounting is idempotent.
            if let Some(shm) = &pod.shm {
                podfiles::unmount_shm(shm)?;
            }
            return Ok(());
        }
        for ctr in containers {
            self.stop_container_entry(&ctr, 0).await?;
        }
        crius_fault::point!("stop_pod.containers_stopped");
        if self.vm_of(&pod.runtime_handler).is_some() {
            if pod.state == PodState::Ready || pod.pause_pid.is_some() {
                self.vm_stop_pause(&pod).await;
            }
        } else if !pod.infra_dropped && (pod.state == PodState::Ready || pod.pause_pid.is_some()) {
            let (runtime, _, _) = self.runtime_handler(&pod.runtime_handler)?;
            let client = MonitorClient::new(&self.pod_run_dir(&pod.id).join("monitor"));
            if let Err(e) = runtime.kill(&pod.id, libc::SIGKILL, false).await {
                warn!(pod_id = %pod.id, error = %e, "kill pause container");
            }
            match tokio::time::timeout(PAUSE_STOP_TIMEOUT, client.wait_exit()).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => warn!(pod_id = %pod.id, error = %e, "wait for pause exit"),
                Err(_) => warn!(pod_id = %pod.id, "pause container did not exit in time"),
            }
            crius_fault::point!("stop_pod.pause_killed");
        }
        if let Some(ns) = pod.netns.clone() {
            let network = self.pod_network(&pod, ns.clone());
            self.cni
                .teardown(&network)
                .await
                .map_err(|e| Error::from(e).at_step("tear down pod network (CNI DEL)"))?;
            crius_fault::point!("stop_pod.network_torn_down");
            NetNs::from_path(ns).remove()?;
            crius_fault::point!("stop_pod.netns_removed");
            pod.netns = None;
        }
        if pod.ipc_ns.is_some() || pod.uts_ns.is_some() {
            pod_ns::unpin(&pod_ns::PodNamespaces {
                ipc: pod.ipc_ns.take(),
                uts: pod.uts_ns.take(),
            })?;
        }
        if let Some(shm) = &pod.shm {
            podfiles::unmount_shm(shm)?;
        }
        let was_ready = pod.state == PodState::Ready;
        pod.state = PodState::NotReady;
        pod.pause_pid = None;
        self.pod_records.write(&pod.id, &pod)?;
        crius_fault::point!("stop_pod.recorded");
        entry.update(|r| *r = pod.clone());
        if was_ready {
            self.emit(Event {
                container_id: pod.id.clone(),
                pod_id: pod.id.clone(),
                kind: EventKind::Stopped,
                at: now_ns(),
            });
        }
        info!(pod_id = %pod.id, "pod sandbox stopped");
        Ok(())
    }

    /// RemovePodSandbox: stops the pod if needed, removes its containers and everything the
    /// pod owns. Removing a pod that is gone succeeds.
    pub async fn remove_pod(&self, id: &str) -> Result<()> {
        let entry = match self.pod_entry(id) {
            Ok(e) => e,
            Err(Error::NotFound { .. }) => return Ok(()),
            Err(e) => return Err(e),
        };
        let pod_id = entry.get().id;
        self.stop_pod(&pod_id).await?;
        let _op = entry.op.lock().await;
        let pod = entry.get();
        for ctr in self.pod_containers(&pod.id) {
            self.remove_container_entry(&ctr).await?;
        }
        crius_fault::point!("remove_pod.containers_removed");
        if self.vm_of(&pod.runtime_handler).is_some() {
            self.vm_remove_pause(&pod).await;
        } else if !pod.pause_deleted && !pod.infra_dropped {
            let (runtime, _, _) = self.runtime_handler(&pod.runtime_handler)?;
            runtime
                .delete(&pod.id, true)
                .await
                .map_err(|e| Error::from(e).at_step("delete pause container"))?;
        }
        crius_fault::point!("remove_pod.pause_deleted");
        let dir = self.pod_dir(&pod.id);
        crate::rootfs::unmount_rootfs(&self.userns_rootfs_dir(&pod.id), &dir)?;
        crius_fault::point!("remove_pod.rootfs_unmounted");
        if pod.owns_cgroup && self.config().cgroup_driver == CgroupDriver::Cgroupfs {
            if let Err(e) = cgroup::remove_cgroupfs(&pod.cgroup_parent) {
                warn!(pod_id = %pod.id, error = %e, "pod cgroup not removed");
            }
        }
        self.discard_dir(&dir)?;
        self.discard_dir(&self.pod_run_dir(&pod.id))?;
        crius_fault::point!("remove_pod.dirs_discarded");
        self.pod_records.remove(&pod.id)?;
        crius_fault::point!("remove_pod.record_removed");
        {
            let mut index = self.index.lock().unwrap_or_else(|e| e.into_inner());
            index.pods.remove(&pod.id);
            if let Some(md) = &pod.config.metadata {
                index.pod_names.remove(&pod_name_key(md));
            }
        }
        self.emit(Event {
            container_id: pod.id.clone(),
            pod_id: pod.id.clone(),
            kind: EventKind::Deleted,
            at: now_ns(),
        });
        crius_metrics::metrics().pod_removed(&pod.id);
        info!(pod_id = %pod.id, "pod sandbox removed");
        Ok(())
    }

    /// UpdatePodSandboxResources: the kubelet's new pod-level resources after an in-place
    /// resize. The kubelet itself writes the pod cgroup's limits (it owns that cgroup, and
    /// calls this after doing so), so crius checks the values and keeps them in the pod's
    /// record, as CRI-O and containerd do; the containers' own limits come through
    /// UpdateContainerResources.
    pub async fn update_pod_resources(
        &self,
        id: &str,
        overhead: Option<cri::LinuxContainerResources>,
        resources: Option<cri::LinuxContainerResources>,
    ) -> Result<()> {
        let entry = self.pod_entry(id)?;
        for (what, res) in [("overhead", &overhead), ("resources", &resources)] {
            if let Some(res) = res {
                spec::linux_resources(res, spec::CgroupHost::probe())
                    .map_err(|e| Error::from(e).at_step(format!("check pod {id} {what}")))?;
            }
        }
        let _op = entry.op.lock().await;
        let mut pod = entry.get();
        let linux = pod.config.linux.get_or_insert_with(Default::default);
        if overhead.is_some() {
            linux.overhead = overhead;
        }
        if resources.is_some() {
            linux.resources = resources;
        }
        self.pod_records.write(&pod.id, &pod)?;
        entry.update(|r| *r = pod);
        info!(pod_id = %id, "pod sandbox resources updated");
        Ok(())
    }

    /// A pod's record, for PodSandboxStatus.
    pub fn pod_status(&self, id: &str) -> Result<PodRecord> {
        Ok(self.pod_entry(id)?.get())
    }

    /// The pods matching a filter, for ListPodSandbox.
    pub fn list_pods(&self, filter: Option<&cri::PodSandboxFilter>) -> Vec<PodRecord> {
        let entries: Vec<_> = {
            let index = self.index.lock().unwrap_or_else(|e| e.into_inner());
            index.pods.values().cloned().collect()
        };
        entries
            .iter()
            // A pod still being made is not listed until it is whole.
            .filter(|e| e.is_whole())
            .map(|e| e.get())
            .filter(|p| filter.is_none_or(|f| filter::pod_matches(f, p)))
            .collect()
    }
}

/// The process an image runs by default: entrypoint then cmd.
/// What making the pause container gives: its pid, the shm mount, and for a vm pod its
/// shim's address and pid.
type PauseMade = (u32, Option<PathBuf>, Option<(String, u32)>);

pub(crate) fn image_args(config: &oci_spec::image::ImageConfiguration) -> Vec<String> {
    let mut args = Vec::new();
    if let Some(c) = config.config() {
        args.extend(c.entrypoint().clone().unwrap_or_default());
        args.extend(c.cmd().clone().unwrap_or_default());
    }
    if args.is_empty() {
        args.push("/pause".to_string());
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(pid: cri::NamespaceMode, userns: bool) -> cri::PodSandboxConfig {
        cri::PodSandboxConfig {
            linux: Some(cri::LinuxPodSandboxConfig {
                security_context: Some(cri::LinuxSandboxSecurityContext {
                    namespace_options: Some(cri::NamespaceOption {
                        pid: pid as i32,
                        userns_options: userns.then(|| cri::UserNamespace {
                            mode: cri::NamespaceMode::Pod as i32,
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn the_infra_container_is_dropped_only_where_nothing_needs_it() {
        use cri::NamespaceMode::{Container, Node, Pod};
        // (pid mode, own user namespace, drop_infra_ctr, vm handler, needs infra)
        let rows = [
            (Container, false, false, false, true),
            (Container, false, true, false, false),
            (Node, false, true, false, false),
            (Pod, false, true, false, true),
            (Container, true, true, false, true),
            (Container, false, true, true, true),
        ];
        for (pid, userns, drop, vm, want) in rows {
            assert_eq!(
                needs_infra(&pod(pid, userns), drop, vm),
                want,
                "pid {pid:?} userns {userns} drop {drop} vm {vm}"
            );
        }
        // No namespace options at all reads as pid POD, as in CRI-O.
        assert!(needs_infra(&cri::PodSandboxConfig::default(), true, false));
    }
}
