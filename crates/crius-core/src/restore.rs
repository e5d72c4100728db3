//! Restart recovery: rebuild the maps from the records, ask the monitors what still runs,
//! and collect what a crash left half made.

use std::collections::HashSet;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use crius_oci::monitor::{kill_monitor, monitor_alive, read_exit_file};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::config::CgroupDriver;
use crate::daemon::{remove_dir_all, ContainerEntry, Daemon, Entry};
use crate::error::Result;
use crate::model::{now_ns, ContainerRecord, ContainerState, PodRecord, PodState};

impl Daemon {
    pub(crate) async fn restore(self: &Arc<Self>) -> Result<()> {
        self.empty_trash();
        let (pods, bad): (Vec<PodRecord>, _) = self.pod_records.load_all()?;
        for path in bad {
            warn!(path = %path.display(), "unreadable pod record ignored");
        }
        let (containers, bad): (Vec<ContainerRecord>, _) = self.container_records.load_all()?;
        for path in bad {
            warn!(path = %path.display(), "unreadable container record ignored");
        }
        let mut pod_ids = HashSet::new();
        for mut pod in pods {
            let alive = if pod.infra_dropped {
                // No process holds the pod: its pins do (gone after a reboot).
                crate::pod_ns::all_pinned(&[&pod.netns, &pod.ipc_ns, &pod.uts_ns])
            } else if self.vm_of(&pod.runtime_handler).is_some() {
                self.vm_pause_alive(&pod).await
            } else {
                monitor_alive(&self.pod_run_dir(&pod.id).join("monitor"))
            };
            if pod.state == PodState::Ready && !alive {
                info!(
                    pod_id = %pod.id,
                    "pause container or namespace pins gone; pod is NotReady"
                );
                pod.state = PodState::NotReady;
                pod.pause_pid = None;
                self.pod_records.write(&pod.id, &pod)?;
            }
            pod_ids.insert(pod.id.clone());
            let key = pod.config.metadata.as_ref().map(crate::pod::pod_name_key);
            let ready = pod.state == PodState::Ready;
            let entry = Arc::new(Entry::new(pod, true));
            {
                let mut index = self.index.lock().unwrap_or_else(|e| e.into_inner());
                let id = entry.get().id;
                if let Some(key) = key {
                    index.pod_names.insert(key, id.clone());
                }
                index.pods.insert(id, entry.clone());
            }
            if ready {
                self.watch_pause(entry);
            }
        }
        let mut ctr_ids = HashSet::new();
        for rec in containers {
            if !pod_ids.contains(&rec.pod_id) {
                warn!(container_id = %rec.id, pod_id = %rec.pod_id, "container of a missing pod; collecting it");
                self.collect_container_leftovers(&rec.id);
                let _ = self.container_records.remove(&rec.id);
                continue;
            }
            ctr_ids.insert(rec.id.clone());
            let run_dir = self.container_run_dir(&rec.id);
            let vm_pod = self
                .pod_entry(&rec.pod_id)
                .ok()
                .map(|p| p.get())
                .filter(|p| self.vm_of(&p.runtime_handler).is_some());
            // A vm container's exit while crius was away is read back from its shim.
            let mut vm_exit = None;
            let mut vm_status = None;
            let alive = rec.state != ContainerState::Exited
                && match &vm_pod {
                    Some(pod) => match self.vm_restore_container(pod, &rec).await {
                        Ok(status) => {
                            vm_status = Some(status);
                            true
                        }
                        Err(exit) => {
                            vm_exit = exit;
                            false
                        }
                    },
                    None => monitor_alive(&run_dir),
                };
            let ctr = Arc::new(ContainerEntry {
                entry: Entry::new(rec.clone(), true),
                exited: watch::channel(rec.state == ContainerState::Exited).0,
                runtime_deleted: AtomicBool::new(false),
            });
            {
                let mut index = self.index.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(md) = &rec.config.metadata {
                    index.container_names.insert(
                        crate::container::container_name_key(&rec.pod_id, md),
                        rec.id.clone(),
                    );
                }
                index.containers.insert(rec.id.clone(), ctr.clone());
            }
            if alive && rec.state == ContainerState::Created {
                self.record_start_done_by_runtime(&ctr, vm_status).await;
            }
            if alive {
                self.watch_exit(ctr);
            } else if rec.state != ContainerState::Exited && vm_pod.is_some() {
                self.record_exit(&ctr, vm_exit);
            } else if rec.state != ContainerState::Exited {
                self.record_exit(&ctr, read_exit_file(&run_dir).ok().flatten());
            }
        }
        self.teardown_orphan_networks(&pod_ids).await;
        self.stop_orphan_processes(&pod_ids, &ctr_ids).await;
        self.collect_orphans(&pod_ids, &ctr_ids);
        self.collect_orphan_cgroups(&pod_ids);
        Ok(())
    }

    /// A container recorded Created whose runtime says it runs: StartContainer was cut
    /// between `RUNTIME start` and the record's write. It is recorded Running (started
    /// now, the closest time known), so ContainerStatus tells the truth and a repeated
    /// StartContainer is refused as for any running container instead of failing in the
    /// runtime (or the shim, for a vm container: `shim_status` is what its shim said).
    async fn record_start_done_by_runtime(
        &self,
        ctr: &ContainerEntry,
        shim_status: Option<String>,
    ) {
        let rec = ctr.entry.get();
        let status = match shim_status {
            Some(status) => status,
            None => {
                let Ok(pod) = self.pod_entry(&rec.pod_id) else {
                    return;
                };
                let Ok((runtime, _, _)) = self.runtime_handler(&pod.get().runtime_handler) else {
                    return;
                };
                match runtime.state(&rec.id).await {
                    Ok(state) => state.status,
                    Err(e) => {
                        warn!(container_id = %rec.id, error = %e, "runtime state of a created container not read");
                        return;
                    }
                }
            }
        };
        if status == "running" || status == "paused" {
            info!(container_id = %rec.id, "a container recorded created runs; recording it running");
            let started = now_ns();
            if let Err(e) = self.save_container(ctr, |r| {
                r.state = ContainerState::Running;
                r.started_at = started;
            }) {
                warn!(container_id = %rec.id, error = %e, "container record not updated");
            }
        }
    }

    /// The monitors, shims and runtime containers of pods and containers without a
    /// record: a crash after `RUNTIME create` (or the shim's start) and before the
    /// record's write left them running.
    /// Only runtime state dirs crius owns (a handler without `runtime_root`) are swept:
    /// a shared root may hold other programs' containers.
    async fn stop_orphan_processes(&self, pods: &HashSet<String>, containers: &HashSet<String>) {
        let config = self.config();
        let mut monitor_dirs = Vec::new();
        for id in entries(&config.run_dir.join("pods")) {
            if !pods.contains(&id) {
                monitor_dirs.push(self.pod_run_dir(&id).join("monitor"));
            }
        }
        for id in entries(&config.run_dir.join("containers")) {
            if !containers.contains(&id) {
                monitor_dirs.push(self.container_run_dir(&id));
            }
        }
        for dir in monitor_dirs {
            if let Some(pid) = kill_monitor(&dir) {
                info!(dir = %dir.display(), pid, "killed the monitor of a half-made container");
            }
        }
        if config.runtimes.values().any(|h| h.runtime_type == "vm") {
            for id in entries(&config.root_dir.join("pods")) {
                if !pods.contains(&id) {
                    self.vm_collect_orphan_shim(&id, &self.pod_dir(&id)).await;
                }
            }
            for id in entries(&config.root_dir.join("containers")) {
                if !containers.contains(&id) {
                    self.vm_collect_orphan_task(&id).await;
                }
            }
        }
        for (name, handler) in &config.runtimes {
            if handler.runtime_root.is_some() || handler.runtime_type != "oci" {
                continue;
            }
            let Ok((runtime, _, _)) = self.runtime_handler(name) else {
                continue;
            };
            for id in entries(&config.run_dir.join("runtimes").join(name)) {
                if pods.contains(&id) || containers.contains(&id) {
                    continue;
                }
                info!(id = %id, handler = %name, "deleting a runtime container no record owns");
                if let Err(e) = runtime.delete(&id, true).await {
                    warn!(id = %id, handler = %name, error = %e, "runtime container no record owns not deleted");
                }
            }
        }
    }

    /// The cgroups crius made for pods (`<cgroup_root>/crius/pod-<id>`) no record owns.
    fn collect_orphan_cgroups(&self, pods: &HashSet<String>) {
        let config = self.config();
        if config.cgroup_driver != CgroupDriver::Cgroupfs {
            return;
        }
        for (id, path) in crate::cgroup::owned_pod_cgroups(&config.cgroup_root) {
            if pods.contains(&id) {
                continue;
            }
            info!(pod_id = %id, cgroup = %path, "removing the cgroup of a half-made pod");
            if let Err(e) = crate::cgroup::remove_cgroupfs(&path) {
                warn!(pod_id = %id, error = %e, "cgroup of a half-made pod not removed");
            }
        }
    }

    /// CNI networks cached for pods without a record are ADDs a crash cut short: DEL them
    /// from the cache while their netns pins still exist, so their IPs and veths are freed.
    async fn teardown_orphan_networks(&self, pods: &HashSet<String>) {
        let cached = match self.cni.cached_pods() {
            Ok(ids) => ids,
            Err(e) => {
                warn!(error = %e, "cached pod networks not listed; half-made ones may keep their IPs");
                return;
            }
        };
        for id in cached.into_iter().filter(|id| !pods.contains(id)) {
            info!(pod_id = %id, "tearing down the network of a half-made pod");
            let network = crius_net::PodNetwork {
                id: id.clone(),
                ..Default::default()
            };
            if let Err(e) = self.cni.teardown(&network).await {
                warn!(pod_id = %id, error = %e, "network of a half-made pod not torn down");
            }
        }
    }

    fn collect_container_leftovers(&self, id: &str) {
        let dir = self.container_dir(id);
        if let Err(e) = crate::image_volume::unmount_image_volumes(&dir) {
            warn!(container_id = id, error = %e, "image volumes of a half-made container not unmounted");
        }
        if let Err(e) = crate::rootfs::unmount_rootfs(&self.userns_rootfs_dir(id), &dir) {
            warn!(container_id = id, error = %e, "rootfs of a half-made container not unmounted");
        }
        let _ = remove_dir_all(&dir);
        let _ = remove_dir_all(&self.container_run_dir(id));
    }

    /// Dirs, mounts and netns pins that no record owns are what a crash left half made.
    fn collect_orphans(&self, pods: &HashSet<String>, containers: &HashSet<String>) {
        let config = self.config();
        let listed = |dir: std::path::PathBuf| entries(&dir);
        for id in listed(config.root_dir.join("containers")) {
            if !containers.contains(&id) {
                info!(container_id = %id, "collecting a half-made container");
                self.collect_container_leftovers(&id);
            }
        }
        for id in listed(config.run_dir.join("containers")) {
            if !containers.contains(&id) {
                let _ = remove_dir_all(&self.container_run_dir(&id));
            }
        }
        for id in listed(config.root_dir.join("pods")) {
            if !pods.contains(&id) {
                info!(pod_id = %id, "collecting a half-made pod");
                let dir = self.pod_dir(&id);
                let _ = crate::rootfs::unmount_rootfs(&self.userns_rootfs_dir(&id), &dir);
                let _ = remove_dir_all(&dir);
            }
        }
        for id in listed(config.run_dir.join("userns")) {
            if !pods.contains(&id) && !containers.contains(&id) {
                let dir = self.userns_rootfs_dir(&id);
                if let Err(e) = crate::rootfs::unmount_rootfs(&dir, &dir) {
                    warn!(id = %id, error = %e, "an id-mapped rootfs no record owns not unmounted");
                }
            }
        }
        for id in listed(config.run_dir.join("pods")) {
            if !pods.contains(&id) {
                let dir = self.pod_run_dir(&id);
                let _ = crate::podfiles::unmount_shm(&dir.join("shm"));
                if let Err(e) = crate::pod_ns::unpin_all_under(&dir) {
                    warn!(pod_id = %id, error = %e, "namespace pins of a half-made pod not removed");
                }
                let _ = remove_dir_all(&dir);
            }
        }
        for id in listed(self.netns_dir()) {
            if !pods.contains(&id) {
                let _ = crius_net::NetNs::from_path(self.netns_dir().join(&id)).remove();
            }
        }
    }
}

/// The names in `dir` (none when it cannot be read).
fn entries(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default()
}
