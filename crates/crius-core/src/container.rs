//! The container flows: create, start, stop, remove, status, list, exec, update, reopen log.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crius_cri_api::v1 as cri;
use crius_oci::monitor::{read_exit_file, spawn_monitor, ExecOutput, MonitorClient, MonitorSpec};
use crius_oci::spec;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::daemon::{remove_dir_all, ContainerEntry, Daemon, Entry, RUNTIME_TIMEOUT};
use crate::error::{Error, Result};
use crate::events::{Event, EventKind};
use crate::filter;
use crate::image_volume;
use crate::model::{
    new_id, now_ns, ContainerRecord, ContainerState, PodRecord, PodState, ProcessUser,
};
use crate::podfiles::PodFiles;
use crate::signal::{self, parse_signal};
use crate::undo::Undo;
use crate::validate;

/// How long a container gets to die after SIGKILL before stop gives up.
const KILL_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) fn container_name_key(pod_id: &str, md: &cri::ContainerMetadata) -> String {
    format!("{pod_id}/{}/{}", md.name, md.attempt)
}

impl Daemon {
    /// Writes a container's record in memory and on disk in one step, so the exit watcher
    /// and the operations never overwrite each other's changes.
    pub(crate) fn save_container(
        &self,
        ctr: &ContainerEntry,
        change: impl FnOnce(&mut ContainerRecord),
    ) -> Result<ContainerRecord> {
        ctr.entry.update(|rec| {
            change(rec);
            self.container_records.write(&rec.id, rec)?;
            Ok(rec.clone())
        })
    }

    /// The pod context a spec needs, from the pod's record.
    fn with_pod_context<T>(&self, pod: &PodRecord, f: impl FnOnce(&spec::PodContext) -> T) -> T {
        let run_dir = self.pod_run_dir(&pod.id);
        let files = PodFiles::under(&run_dir);
        let ctx = spec::PodContext {
            config: &pod.config,
            id: &pod.id,
            netns_path: pod.netns.as_deref(),
            pause_pid: pod.pause_pid,
            ipc_ns_path: pod.ipc_ns.as_deref(),
            uts_ns_path: pod.uts_ns.as_deref(),
            hostname_path: &files.hostname,
            resolv_conf_path: &files.resolv_conf,
            hosts_path: &files.hosts,
            shm_path: pod.shm.as_deref(),
            cgroup_parent: &pod.cgroup_parent,
        };
        f(&ctx)
    }

    /// For PID namespace mode TARGET (`kubectl debug --target`): the init pid of the
    /// target, which must be a running container of the same pod. None for other modes.
    fn pid_target(&self, pod: &PodRecord, config: &cri::ContainerConfig) -> Result<Option<u32>> {
        let Some(ns) = config
            .linux
            .as_ref()
            .and_then(|l| l.security_context.as_ref())
            .and_then(|s| s.namespace_options.as_ref())
            .filter(|n| n.pid == cri::NamespaceMode::Target as i32)
        else {
            return Ok(None);
        };
        if ns.target_id.is_empty() {
            return Err(Error::InvalidArgument(
                "pid namespace mode TARGET needs a target_id (the container whose PID \
                 namespace to join)"
                    .into(),
            ));
        }
        let target = self.container_entry(&ns.target_id).map_err(|e| match e {
            Error::NotFound { .. } => Error::NotFound {
                kind: "target container of pid namespace mode TARGET",
                id: ns.target_id.clone(),
            },
            e => e,
        })?;
        let rec = target.entry.get();
        if rec.pod_id != pod.id {
            return Err(Error::FailedPrecondition(format!(
                "pid namespace mode TARGET: container {} is in pod {}, not in pod {}",
                rec.id, rec.pod_id, pod.id
            )));
        }
        match (rec.state, rec.pid) {
            (ContainerState::Running, Some(pid)) => Ok(Some(pid)),
            _ => Err(Error::FailedPrecondition(format!(
                "pid namespace mode TARGET: container {} of pod {} is {:?}, not running",
                rec.id, pod.id, rec.state
            ))),
        }
    }

    /// CreateContainer: a container in the Created state, or nothing.
    pub async fn create_container(
        self: &Arc<Self>,
        pod_id: &str,
        config: cri::ContainerConfig,
    ) -> Result<String> {
        validate::container_config(&config)?;
        let pod_entry = self.pod_entry(pod_id)?;
        let pod = pod_entry.get();
        if pod.state != PodState::Ready {
            return Err(Error::FailedPrecondition(format!(
                "pod sandbox {} is not ready; cannot create a container in it",
                pod.id
            )));
        }
        if config.mounts.iter().any(|m| m.recursive_read_only)
            && !self.supports_rro(&pod.runtime_handler)
        {
            return Err(Error::FailedPrecondition(format!(
                "runtime handler {:?} cannot make mounts read-only recursively (that needs a \
                 runtime listing \"rro\" in `RUNTIME features`, such as runc 1.1+, and Linux \
                 5.12+); Status reports this per handler",
                pod.runtime_handler
            )));
        }
        self.pid_target(&pod, &config)?;
        let image_name = config
            .image
            .as_ref()
            .map(|i| i.image.clone())
            .unwrap_or_default();
        if image_name.starts_with('/') {
            return self.restore_container(&pod.id, &image_name).await;
        }
        let image = self.images.resolve(&image_name).map_err(|e| {
            if e.is_not_found() {
                Error::NotFound {
                    kind: "image",
                    id: image_name.clone(),
                }
            } else {
                Error::from(e)
            }
        })?;
        let md = config.metadata.clone().expect("validated");
        let key = container_name_key(&pod.id, &md);
        let id = new_id();
        let record = ContainerRecord {
            id: id.clone(),
            pod_id: pod.id.clone(),
            config,
            image_id: image.id.clone(),
            image_name,
            image_ref: image
                .repo_digests
                .first()
                .cloned()
                .unwrap_or_else(|| image.id.clone()),
            stop_signal: libc::SIGTERM,
            log_path: None,
            state: ContainerState::Created,
            created_at: now_ns(),
            started_at: 0,
            finished_at: 0,
            exit_code: 0,
            reason: String::new(),
            message: String::new(),
            pid: None,
            user: None,
            image_volumes: Vec::new(),
        };
        let ctr = Arc::new(ContainerEntry {
            entry: Entry::new(record, false),
            exited: watch::channel(false).0,
            runtime_deleted: AtomicBool::new(false),
        });
        {
            let mut index = self.index.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(other) = index.container_names.get(&key) {
                return Err(Error::AlreadyExists(format!(
                    "container name {:?} (attempt {}) is already used by container {other} in pod {}",
                    md.name, md.attempt, pod.id
                )));
            }
            index.container_names.insert(key.clone(), id.clone());
            index.containers.insert(id.clone(), ctr.clone());
        }
        // Holding the pod's lock keeps the pod from being stopped or removed half way.
        let _pod_op = pod_entry.op.lock().await;
        let pod = pod_entry.get();
        let mut undo = Undo::new();
        let result = if pod.state == PodState::Ready {
            self.create_container_steps(&pod, &ctr, &mut undo).await
        } else {
            Err(Error::FailedPrecondition(format!(
                "pod sandbox {} stopped while the container was being created",
                pod.id
            )))
        };
        match result {
            Ok(()) => {
                undo.commit();
                ctr.entry.set_whole();
                self.watch_exit(ctr.clone());
                self.emit(Event {
                    container_id: id.clone(),
                    pod_id: pod.id.clone(),
                    kind: EventKind::Created,
                    at: now_ns(),
                });
                info!(container_id = %id, pod_id = %pod.id, "container created");
                crius_metrics::metrics().pod_container_created(&pod.id);
                Ok(id)
            }
            Err(e) => {
                warn!(container_id = %id, error = %e, "container creation failed; unwinding");
                undo.unwind().await;
                let mut index = self.index.lock().unwrap_or_else(|e| e.into_inner());
                index.containers.remove(&id);
                index.container_names.remove(&key);
                Err(e)
            }
        }
    }

    async fn create_container_steps(
        &self,
        pod: &PodRecord,
        ctr: &ContainerEntry,
        undo: &mut Undo,
    ) -> Result<()> {
        let mut rec = ctr.entry.get();
        let id = rec.id.clone();
        let handler = pod.runtime_handler.clone();
        let dir = self.container_dir(&id);
        let run_dir = self.container_run_dir(&id);
        for d in [&dir, &run_dir] {
            std::fs::create_dir_all(d).map_err(|e| Error::io("create container dir", d, e))?;
        }
        {
            let (dir, run_dir) = (dir.clone(), run_dir.clone());
            undo.push("remove container dirs", move || {
                remove_dir_all(&dir)?;
                remove_dir_all(&run_dir)
            });
        }
        crius_fault::point!("create_container.dirs_made");
        let rootfs = self
            .mount_rootfs(&pod.config, pod.pause_pid, &rec.image_id, &id, &dir)
            .map_err(|e| e.at_step("mount container rootfs"))?;
        {
            let (userns_dir, dir) = (self.userns_rootfs_dir(&id), dir.clone());
            undo.push("unmount container rootfs", move || {
                crate::rootfs::unmount_rootfs(&userns_dir, &dir).map_err(|e| e.to_string())
            });
        }
        crius_fault::point!("create_container.rootfs_mounted");
        let image_config = self.images.image_config(&rec.image_id)?;
        // The kubelet's stop signal (lifecycle.stopSignal), else the image's, else
        // SIGTERM. Kept in the record, so StopContainer uses it after a restart too.
        let image_signal = image_config
            .config()
            .as_ref()
            .and_then(|c| c.stop_signal().clone())
            .and_then(|s| parse_signal(&s));
        rec.stop_signal = signal::cri_to_number(rec.config.stop_signal())
            .or(image_signal)
            .unwrap_or(libc::SIGTERM);
        rec.log_path = self.log_path(pod, &rec.config)?;
        let pid_target = self.pid_target(pod, &rec.config)?;
        let with_volumes = self.mount_image_volumes(&mut rec, &dir, undo)?;
        let oci = self.with_pod_context(pod, |pod_ctx| {
            let ctx = spec::ContainerContext {
                id: &id,
                config: with_volumes.as_ref().unwrap_or(&rec.config),
                image_config: &image_config,
                rootfs: &rootfs,
                image_name: &rec.image_name,
                pid_target,
            };
            spec::container_spec(pod_ctx, &ctx, &self.spec_options(&handler))
        })?;
        spec::write_bundle(&dir, &oci)?;
        crius_fault::point!("create_container.bundle_written");
        rec.user = ProcessUser::of_spec(&oci);
        if self.vm_of(&handler).is_some() {
            rec.pid = Some(
                self.vm_create_container(pod, &rec, &dir, &run_dir, undo)
                    .await?,
            );
            self.save_container(ctr, |r| *r = rec)?;
            return Ok(());
        }
        let (runtime, monitor_path, _) = self.runtime_handler(&handler)?;
        let handle = spawn_monitor(&MonitorSpec {
            id: id.clone(),
            bundle: dir.clone(),
            runtime: runtime.clone(),
            monitor_path,
            dir: run_dir.clone(),
            log_path: rec.log_path.clone(),
            terminal: rec.config.tty,
            stdin: rec.config.stdin,
            stdin_once: rec.config.stdin_once,
            log_size_max: self.config().log_size_max,
        })
        .await
        .map_err(|e| Error::from(e).at_step("create container"))?;
        {
            let (runtime, id) = (runtime.clone(), id.clone());
            undo.push_async("delete container", async move {
                let _ = runtime.kill(&id, libc::SIGKILL, false).await;
                runtime.delete(&id, true).await.map_err(|e| e.to_string())
            });
        }
        crius_fault::point!("create_container.runtime_created");
        rec.pid = Some(handle.container_pid);
        self.save_container(ctr, |r| *r = rec)?;
        crius_fault::point!("create_container.recorded");
        Ok(())
    }

    /// The log path: the pod's log dir joined with the container's relative path, its
    /// parent made. `None` when the kubelet asks for no log.
    fn log_path(&self, pod: &PodRecord, config: &cri::ContainerConfig) -> Result<Option<PathBuf>> {
        if pod.config.log_directory.is_empty() || config.log_path.is_empty() {
            return Ok(None);
        }
        let base = Path::new(&pod.config.log_directory);
        make_log_dirs(base, Path::new(&config.log_path))?;
        Ok(Some(base.join(&config.log_path)))
    }

    /// Follows a container's monitor until the container exits, then records the exit.
    pub(crate) fn watch_exit(self: &Arc<Self>, ctr: Arc<ContainerEntry>) {
        let daemon = self.clone();
        tokio::spawn(async move {
            let id = ctr.entry.get().id;
            let handler = daemon
                .pod_entry(&ctr.entry.get().pod_id)
                .map(|p| p.get().runtime_handler)
                .unwrap_or_default();
            if daemon.vm_of(&handler).is_some() {
                daemon.vm_watch_exit(&ctr).await;
                return;
            }
            let dir = daemon.container_run_dir(&id);
            let client = MonitorClient::new(&dir);
            let status = match client.wait_exit().await {
                Ok(s) => Some(s),
                Err(e) => {
                    warn!(container_id = %id, error = %e, "lost the container's monitor");
                    read_exit_file(&dir).ok().flatten()
                }
            };
            daemon.record_exit(&ctr, status);
            daemon.delete_runtime_state(&ctr).await;
        });
    }

    /// Deletes an exited container's runtime state (and its cgroup) as soon as it exits,
    /// off the request path: RemoveContainer then has nothing left to ask the runtime.
    async fn delete_runtime_state(&self, ctr: &ContainerEntry) {
        let _op = ctr.entry.op.lock().await;
        let rec = ctr.entry.get();
        if rec.state != ContainerState::Exited || ctr.runtime_deleted.load(Ordering::Acquire) {
            return;
        }
        let Ok(pod) = self.pod_entry(&rec.pod_id) else {
            return;
        };
        if self
            .delete_exited(&pod.get().runtime_handler, &rec.id)
            .await
        {
            ctr.runtime_deleted.store(true, Ordering::Release);
        }
    }

    /// `RUNTIME delete` of a container (or pause) that has exited, off the request path.
    /// False, logged, when the runtime could not: removal then tries again with --force.
    pub(crate) async fn delete_exited(&self, handler: &str, id: &str) -> bool {
        // A vm pod's tasks are deleted through its shim at removal.
        if self.vm_of(handler).is_some() {
            return false;
        }
        let result = match self.runtime_handler(handler) {
            Ok((runtime, _, _)) => runtime.delete(id, false).await.map_err(Error::from),
            Err(e) => Err(e),
        };
        if let Err(e) = &result {
            debug!(id, error = %e, "runtime delete after exit");
        }
        result.is_ok()
    }

    /// Records an exit (or, with `None`, a container whose monitor died without saying).
    /// The first record wins: a later call for an exited container changes nothing and
    /// emits no second event.
    pub(crate) fn record_exit(
        &self,
        ctr: &ContainerEntry,
        status: Option<crius_oci::monitor::ExitStatus>,
    ) {
        let result = ctr.entry.update(|rec| -> Result<Option<ContainerRecord>> {
            if rec.state == ContainerState::Exited {
                return Ok(None);
            }
            match &status {
                Some(s) => {
                    rec.mark_exited(s.exit_code, exit_time_ns(s), s.oom_killed);
                }
                None => {
                    rec.mark_exited(255, now_ns(), false);
                    rec.message =
                        "the container's monitor exited without recording an exit code".into();
                }
            }
            self.container_records.write(&rec.id, rec)?;
            crius_fault::point!("container.exit_recorded");
            Ok(Some(rec.clone()))
        });
        match result {
            Ok(Some(rec)) => {
                info!(container_id = %rec.id, exit_code = rec.exit_code, reason = %rec.reason, "container exited");
                if rec.reason == "OOMKilled" {
                    self.record_oom_kill(&rec);
                }
                ctr.exited.send_replace(true);
                self.emit(Event {
                    container_id: rec.id.clone(),
                    pod_id: rec.pod_id.clone(),
                    kind: EventKind::Stopped,
                    at: now_ns(),
                });
            }
            Ok(None) => {
                ctr.exited.send_replace(true);
            }
            Err(e) => warn!(error = %e, "container exit not recorded"),
        }
    }

    /// Counts an OOM kill under the pod's and the container's names.
    fn record_oom_kill(&self, rec: &ContainerRecord) {
        let pod = self.pod_entry(&rec.pod_id).ok().map(|p| p.get());
        let pod_md = pod.as_ref().and_then(|p| p.config.metadata.as_ref());
        crius_metrics::metrics().record_oom_kill(
            pod_md.map_or("", |m| m.namespace.as_str()),
            pod_md.map_or(rec.pod_id.as_str(), |m| m.name.as_str()),
            rec.config
                .metadata
                .as_ref()
                .map_or(rec.id.as_str(), |m| m.name.as_str()),
        );
    }

    /// StartContainer: runs a Created container.
    pub async fn start_container(&self, id: &str) -> Result<()> {
        let ctr = self.container_entry(id)?;
        let _op = ctr.entry.op.lock().await;
        let rec = ctr.entry.get();
        if rec.state != ContainerState::Created {
            return Err(Error::FailedPrecondition(format!(
                "container {} is {:?}, not Created; only a created container can be started",
                rec.id, rec.state
            )));
        }
        let pod = self.pod_entry(&rec.pod_id)?.get();
        if self.vm_of(&pod.runtime_handler).is_some() {
            self.shim_of(&pod)
                .await?
                .start(&rec.id, "")
                .await
                .map_err(|e| Error::from(e).at_step("start container"))?;
        } else {
            let (runtime, _, _) = self.runtime_handler(&pod.runtime_handler)?;
            tokio::time::timeout(RUNTIME_TIMEOUT, runtime.start(&rec.id))
                .await
                .map_err(|_| {
                    Error::DeadlineExceeded(format!("start of container {} timed out", rec.id))
                })?
                .map_err(|e| Error::from(e).at_step("start container"))?;
        }
        crius_fault::point!("start_container.started");
        let started = now_ns();
        self.save_container(&ctr, |r| {
            if r.state == ContainerState::Created {
                r.state = ContainerState::Running;
            }
            r.started_at = started;
        })?;
        crius_fault::point!("start_container.recorded");
        self.emit(Event {
            container_id: rec.id.clone(),
            pod_id: rec.pod_id.clone(),
            kind: EventKind::Started,
            at: started,
        });
        info!(container_id = %rec.id, "container started");
        let all_running = self.pod_containers(&rec.pod_id).iter().all(|c| {
            let c = c.entry.get();
            c.state == ContainerState::Running
                || (c.state == ContainerState::Exited && c.exit_code == 0)
        });
        if all_running {
            crius_metrics::metrics().pod_containers_running(&rec.pod_id);
        }
        Ok(())
    }

    /// StopContainer: the stop signal, then SIGKILL after `timeout` seconds; returns when
    /// the process is gone. Stopping a stopped or unknown container succeeds.
    pub async fn stop_container(&self, id: &str, timeout: i64) -> Result<()> {
        let ctr = match self.container_entry(id) {
            Ok(c) => c,
            Err(Error::NotFound { .. }) => return Ok(()),
            Err(e) => return Err(e),
        };
        self.stop_container_entry(&ctr, timeout).await
    }

    pub(crate) async fn stop_container_entry(
        &self,
        ctr: &ContainerEntry,
        timeout: i64,
    ) -> Result<()> {
        let _op = ctr.entry.op.lock().await;
        let rec = ctr.entry.get();
        if rec.state == ContainerState::Exited {
            return Ok(());
        }
        let pod = self.pod_entry(&rec.pod_id)?.get();
        if self.vm_of(&pod.runtime_handler).is_some() {
            return self.vm_stop_container(&pod, ctr, timeout).await;
        }
        let (runtime, _, _) = self.runtime_handler(&pod.runtime_handler)?;
        let mut exited = ctr.exited.subscribe();
        if timeout > 0 && rec.state == ContainerState::Running {
            if let Err(e) = runtime.kill(&rec.id, rec.stop_signal, false).await {
                warn!(container_id = %rec.id, error = %e, "stop signal not delivered");
            }
            crius_fault::point!("stop_container.signalled");
            let grace = Duration::from_secs(timeout as u64);
            if tokio::time::timeout(grace, exited.wait_for(|e| *e))
                .await
                .is_ok()
            {
                return Ok(());
            }
        }
        if let Err(e) = runtime.kill(&rec.id, libc::SIGKILL, false).await {
            warn!(container_id = %rec.id, error = %e, "SIGKILL not delivered");
        }
        crius_fault::point!("stop_container.killed");
        let waited = tokio::time::timeout(KILL_TIMEOUT, exited.wait_for(|e| *e))
            .await
            .is_ok();
        match waited {
            true => Ok(()),
            false => {
                // The runtime may have lost it (e.g. killed before start): ask it.
                match runtime.state(&rec.id).await {
                    Ok(st) if st.status == "running" || st.status == "created" => {
                        Err(Error::DeadlineExceeded(format!(
                            "container {} did not exit within {}s of SIGKILL",
                            rec.id,
                            KILL_TIMEOUT.as_secs()
                        )))
                    }
                    _ => {
                        self.record_exit(
                            ctr,
                            read_exit_file(&self.container_run_dir(&rec.id))
                                .ok()
                                .flatten(),
                        );
                        Ok(())
                    }
                }
            }
        }
    }

    /// RemoveContainer: stops it if needed and removes everything it owns. Removing a
    /// container that is gone succeeds.
    pub async fn remove_container(&self, id: &str) -> Result<()> {
        let ctr = match self.container_entry(id) {
            Ok(c) => c,
            Err(Error::NotFound { .. }) => return Ok(()),
            Err(e) => return Err(e),
        };
        self.remove_container_entry(&ctr).await
    }

    pub(crate) async fn remove_container_entry(&self, ctr: &ContainerEntry) -> Result<()> {
        self.stop_container_entry(ctr, 0).await?;
        let _op = ctr.entry.op.lock().await;
        let rec = ctr.entry.get();
        let handler = self
            .pod_entry(&rec.pod_id)
            .map(|p| p.get().runtime_handler)
            .unwrap_or_default();
        if let Some(pod) = self
            .vm_of(&handler)
            .and_then(|_| self.pod_entry(&rec.pod_id).ok())
        {
            self.vm_delete_container(&pod.get(), &rec.id).await?;
        } else if !ctr.runtime_deleted.load(Ordering::Acquire) {
            let (runtime, _, _) = self.runtime_handler(&handler)?;
            runtime
                .delete(&rec.id, true)
                .await
                .map_err(|e| Error::from(e).at_step("delete container"))?;
        }
        crius_fault::point!("remove_container.runtime_deleted");
        let dir = self.container_dir(&rec.id);
        image_volume::unmount_image_volumes(&dir)?;
        crate::rootfs::unmount_rootfs(&self.userns_rootfs_dir(&rec.id), &dir)?;
        crius_fault::point!("remove_container.rootfs_unmounted");
        self.discard_dir(&dir)?;
        self.discard_dir(&self.container_run_dir(&rec.id))?;
        crius_fault::point!("remove_container.dirs_discarded");
        self.container_records.remove(&rec.id)?;
        crius_fault::point!("remove_container.record_removed");
        {
            let mut index = self.index.lock().unwrap_or_else(|e| e.into_inner());
            index.containers.remove(&rec.id);
            if let Some(md) = &rec.config.metadata {
                index
                    .container_names
                    .remove(&container_name_key(&rec.pod_id, md));
            }
        }
        self.emit(Event {
            container_id: rec.id.clone(),
            pod_id: rec.pod_id.clone(),
            kind: EventKind::Deleted,
            at: now_ns(),
        });
        info!(container_id = %rec.id, "container removed");
        Ok(())
    }

    /// A container's record, for ContainerStatus.
    pub fn container_status(&self, id: &str) -> Result<ContainerRecord> {
        Ok(self.container_entry(id)?.entry.get())
    }

    /// The containers matching a filter, for ListContainers.
    pub fn list_containers(&self, filter: Option<&cri::ContainerFilter>) -> Vec<ContainerRecord> {
        let entries: Vec<_> = {
            let index = self.index.lock().unwrap_or_else(|e| e.into_inner());
            index.containers.values().cloned().collect()
        };
        entries
            .iter()
            .filter(|c| c.entry.is_whole())
            .map(|c| c.entry.get())
            .filter(|c| filter.is_none_or(|f| filter::container_matches(f, c)))
            .collect()
    }

    /// ExecSync: runs a command in a running container through its monitor.
    pub async fn exec_sync(
        &self,
        id: &str,
        cmd: Vec<String>,
        timeout_secs: i64,
    ) -> Result<ExecOutput> {
        if cmd.is_empty() {
            return Err(Error::InvalidArgument("exec command is empty".into()));
        }
        let ctr = self.container_entry(id)?;
        let rec = ctr.entry.get();
        if rec.state != ContainerState::Running {
            return Err(Error::FailedPrecondition(format!(
                "container {} is not running ({:?}); cannot exec in it",
                rec.id, rec.state
            )));
        }
        let timeout = (timeout_secs > 0).then(|| Duration::from_secs(timeout_secs as u64));
        let pod = self.pod_entry(&rec.pod_id)?.get();
        let out = if self.vm_of(&pod.runtime_handler).is_some() {
            self.vm_exec_sync(&pod, &rec, &cmd, timeout).await?
        } else {
            MonitorClient::new(&self.container_run_dir(&rec.id))
                .exec_sync(&cmd, timeout)
                .await?
        };
        if out.timed_out {
            return Err(Error::DeadlineExceeded(format!(
                "command {:?} in container {} timed out after {}s",
                cmd, rec.id, timeout_secs
            )));
        }
        Ok(out)
    }

    /// UpdateContainerResources: applies new limits to a live container and keeps them.
    pub async fn update_container_resources(
        &self,
        id: &str,
        resources: cri::LinuxContainerResources,
    ) -> Result<()> {
        let ctr = self.container_entry(id)?;
        let _op = ctr.entry.op.lock().await;
        let rec = ctr.entry.get();
        if rec.state == ContainerState::Exited {
            return Err(Error::FailedPrecondition(format!(
                "container {} has exited; its resources cannot change",
                rec.id
            )));
        }
        let pod = self.pod_entry(&rec.pod_id)?.get();
        let oci = spec::linux_resources(&resources, spec::CgroupHost::probe())
            .map_err(|e| Error::from(e).at_step("convert resources"))?;
        if self.vm_of(&pod.runtime_handler).is_some() {
            let json = serde_json::to_vec(&oci)
                .map_err(|e| Error::Internal(format!("container {} resources: {e}", rec.id)))?;
            self.shim_of(&pod)
                .await?
                .update(&rec.id, &json)
                .await
                .map_err(|e| Error::from(e).at_step("update container resources"))?;
        } else {
            let (runtime, _, _) = self.runtime_handler(&pod.runtime_handler)?;
            runtime
                .update(&rec.id, &oci)
                .await
                .map_err(|e| Error::from(e).at_step("update container resources"))?;
        }
        self.save_container(&ctr, |r| {
            if let Some(linux) = r.config.linux.as_mut() {
                linux.resources = Some(resources);
            } else {
                r.config.linux = Some(cri::LinuxContainerConfig {
                    resources: Some(resources),
                    ..Default::default()
                });
            }
        })?;
        Ok(())
    }

    /// ReopenContainerLog: the monitor reopens the log file (after the kubelet rotated it).
    pub async fn reopen_container_log(&self, id: &str) -> Result<()> {
        let ctr = self.container_entry(id)?;
        let rec = ctr.entry.get();
        if rec.state != ContainerState::Running {
            return Err(Error::FailedPrecondition(format!(
                "container {} is not running; its log cannot be reopened",
                rec.id
            )));
        }
        let pod = self.pod_entry(&rec.pod_id)?.get();
        if self.vm_of(&pod.runtime_handler).is_some() {
            // crius itself writes a vm container's log.
            let copiers = self.log_copiers.lock().unwrap_or_else(|e| e.into_inner());
            let copier = copiers.get(&rec.id).ok_or_else(|| {
                Error::FailedPrecondition(format!(
                    "container {} has no log being written; its log cannot be reopened",
                    rec.id
                ))
            })?;
            let path = rec.log_path.clone().unwrap_or_default();
            return copier
                .reopen_log()
                .map_err(|e| Error::io("reopen container log", &path, e));
        }
        MonitorClient::new(&self.container_run_dir(&rec.id))
            .reopen_log()
            .await?;
        Ok(())
    }
}

fn exit_time_ns(s: &crius_oci::monitor::ExitStatus) -> i64 {
    s.exited_at.timestamp_nanos_opt().unwrap_or_else(now_ns)
}

/// Makes the dirs of the relative log path `rel` under the pod's log dir `base` one at a
/// time through file descriptors, following no symbolic link, and refuses a link at the
/// log file itself (the monitor also opens it with O_NOFOLLOW). Anything that can write to
/// the log dirs (a pod with a hostPath on /var/log) could otherwise point root's writes at
/// any file on the host.
fn make_log_dirs(base: &Path, rel: &Path) -> Result<()> {
    use nix::errno::Errno;
    use nix::fcntl::{openat, OFlag, AT_FDCWD};
    use nix::sys::stat::{fstatat, mkdirat, Mode, SFlag};
    use std::path::Component;

    let refuse = |at: &Path| {
        Error::FailedPrecondition(format!(
            "container log path {}: {} is a symbolic link or not a directory; crius does not \
             follow links in log paths",
            base.join(rel).display(),
            at.display()
        ))
    };
    std::fs::create_dir_all(base).map_err(|e| Error::io("create log dir", base, e))?;
    let dir_flags = OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let mut dir = openat(AT_FDCWD, base, dir_flags, Mode::empty()).map_err(|e| match e {
        Errno::ELOOP | Errno::ENOTDIR => refuse(base),
        e => Error::io("open log dir", base, e.into()),
    })?;
    let mut at = base.to_path_buf();
    let mut parts: Vec<_> = rel
        .components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .collect();
    let Some(file) = parts.pop() else {
        return Ok(());
    };
    for part in parts {
        at.push(part);
        match mkdirat(&dir, part.as_os_str(), Mode::from_bits_truncate(0o755)) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(e) => return Err(Error::io("create log dir", &at, e.into())),
        }
        dir = openat(&dir, part.as_os_str(), dir_flags, Mode::empty()).map_err(|e| match e {
            Errno::ELOOP | Errno::ENOTDIR => refuse(&at),
            e => Error::io("open log dir", &at, e.into()),
        })?;
    }
    at.push(file);
    match fstatat(
        &dir,
        file.as_os_str(),
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    ) {
        Ok(st) if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFLNK => {
            Err(refuse(&at))
        }
        Ok(_) | Err(Errno::ENOENT) => Ok(()),
        Err(e) => Err(Error::io("stat log file", &at, e.into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn log_dirs_are_made_without_following_links() {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path().join("pod-logs");
        let elsewhere = tmp.path().join("elsewhere");
        std::fs::create_dir_all(&elsewhere).unwrap();
        std::fs::create_dir_all(&base).unwrap();
        symlink(&elsewhere, base.join("linked-dir")).unwrap();
        std::fs::create_dir_all(base.join("c2")).unwrap();
        symlink(elsewhere.join("target"), base.join("c2/0.log")).unwrap();
        symlink(&elsewhere, tmp.path().join("linked-base")).unwrap();
        // (base, relative log path, made)
        let cases: &[(&Path, &str, bool)] = &[
            (&base, "c/0.log", true),
            (&base, "c/0.log", true),
            (&base, "a/b/c/0.log", true),
            (&base, "0.log", true),
            (&base, "linked-dir/0.log", false),
            (&base, "c2/0.log", false),
            (&tmp.path().join("linked-base"), "c/0.log", false),
        ];
        for (base, rel, ok) in cases {
            let result = make_log_dirs(base, Path::new(rel));
            assert_eq!(result.is_ok(), *ok, "{} {rel}: {result:?}", base.display());
            if let Err(e) = result {
                assert!(e.to_string().contains("symbolic link"), "{e}");
            }
        }
        assert!(base.join("a/b/c").is_dir());
        assert_eq!(
            std::fs::read_dir(&elsewhere).unwrap().count(),
            0,
            "nothing made through a link"
        );
    }
}
