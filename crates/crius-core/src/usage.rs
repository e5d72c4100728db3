//! ContainerStats, ListContainerStats, PodSandboxStats and ListPodSandboxStats.

use crius_cri_api::v1 as cri;

use crate::config::MetricGroup;
use crate::daemon::Daemon;
use crate::error::Result;
use crate::filter::labels_match;
use crate::model::{now_ns, ContainerRecord, ContainerState, PodRecord, PodState};
use crate::stats::{self, CgroupUsage, FilesystemUsage, InterfaceUsage, ProcessCounts};

/// A container's usage at one moment.
#[derive(Debug, Clone)]
pub struct ContainerUsage {
    /// The container.
    pub record: ContainerRecord,
    /// When it was read (ns).
    pub at: i64,
    /// cgroup figures (empty when the container does not run).
    pub cgroup: CgroupUsage,
    /// CPU use since the previous sample, in billionths of a core.
    pub nano_cores: Option<u64>,
    /// Bytes and inodes of the writable layer.
    pub writable_layer: (u64, u64),
    /// The filesystem holding the writable layer.
    pub mountpoint: String,
}

/// A pod's usage at one moment.
#[derive(Debug, Clone)]
pub struct PodUsage {
    /// The pod.
    pub record: PodRecord,
    /// When it was read (ns).
    pub at: i64,
    /// The pod cgroup's figures.
    pub cgroup: CgroupUsage,
    /// CPU use since the previous sample, in billionths of a core.
    pub nano_cores: Option<u64>,
    /// The pod network's interfaces (empty for host-network pods).
    pub interfaces: Vec<InterfaceUsage>,
    /// Its containers.
    pub containers: Vec<ContainerUsage>,
}

/// A running container's figures for ListPodSandboxMetrics: its cgroup, and what the
/// enabled metric groups need beyond it.
#[derive(Debug, Clone)]
pub struct ContainerMetricsUsage {
    /// The container.
    pub record: ContainerRecord,
    /// When it was read (ns).
    pub at: i64,
    /// cgroup figures.
    pub cgroup: CgroupUsage,
    /// Threads, descriptors and sockets (with the `process` group).
    pub processes: Option<ProcessCounts>,
    /// Bytes and inodes of the writable layer (with the `disk` group).
    pub writable_layer: Option<(u64, u64)>,
    /// The filesystem holding the writable layer (with the `disk` group).
    pub filesystem: Option<FilesystemUsage>,
}

/// A ready pod's figures for ListPodSandboxMetrics.
#[derive(Debug, Clone)]
pub struct PodMetricsUsage {
    /// The pod.
    pub record: PodRecord,
    /// When its network was read (ns).
    pub at: i64,
    /// The cgroup of the process whose network namespace was read (the pause's): the
    /// `id` cAdvisor gives the pod's network series.
    pub network_cgroup: Option<String>,
    /// The pod network's interfaces (with the `network` group; none with host network).
    pub interfaces: Vec<InterfaceUsage>,
    /// Its running containers.
    pub containers: Vec<ContainerMetricsUsage>,
}

/// The cgroup figures of a container while it runs.
fn running_cgroup(record: &ContainerRecord) -> CgroupUsage {
    match (record.state, record.pid) {
        (ContainerState::Running, Some(pid)) => stats::process_usage(pid).unwrap_or_default(),
        _ => CgroupUsage::default(),
    }
}

impl Daemon {
    fn nano_cores(&self, key: &str, at: i64, cpu_ns: Option<u64>) -> Option<u64> {
        let cpu = cpu_ns?;
        let mut samples = self.cpu_samples.lock().unwrap_or_else(|e| e.into_inner());
        let rate = samples.get(key).and_then(|(t0, c0)| {
            let dt = at.checked_sub(*t0).filter(|d| *d > 0)? as u128;
            let dc = cpu.checked_sub(*c0)? as u128;
            Some((dc * 1_000_000_000 / dt) as u64)
        });
        samples.insert(key.to_string(), (at, cpu));
        rate
    }

    async fn container_usage(&self, record: ContainerRecord) -> ContainerUsage {
        let at = now_ns();
        let cgroup = match self.vm_pod_of(&record).ok().flatten() {
            // The shim knows where the container runs (a VM's own cgroups for Kata).
            Some(pod) if record.state == ContainerState::Running => {
                self.vm_task_usage(&pod, &record.id).await
            }
            _ => running_cgroup(&record),
        };
        let nano_cores = self.nano_cores(&record.id, at, cgroup.cpu_ns);
        let upper = self.container_dir(&record.id).join("upper");
        ContainerUsage {
            writable_layer: stats::dir_usage(&upper),
            mountpoint: self.config().root_dir.display().to_string(),
            record,
            at,
            cgroup,
            nano_cores,
        }
    }

    /// ContainerStats.
    pub async fn container_stats(&self, id: &str) -> Result<ContainerUsage> {
        let record = self.container_entry(id)?.entry.get();
        Ok(self.container_usage(record).await)
    }

    /// ListContainerStats: running containers only, as the kubelet expects.
    pub async fn list_container_stats(
        &self,
        filter: Option<&cri::ContainerStatsFilter>,
    ) -> Vec<ContainerUsage> {
        let running = self
            .list_containers(None)
            .into_iter()
            .filter(|c| c.state == ContainerState::Running)
            .filter(|c| {
                filter.is_none_or(|f| {
                    (f.id.is_empty() || c.id.starts_with(&f.id))
                        && (f.pod_sandbox_id.is_empty() || c.pod_id.starts_with(&f.pod_sandbox_id))
                        && labels_match(&f.label_selector, &c.config.labels)
                })
            });
        futures::future::join_all(running.map(|c| self.container_usage(c))).await
    }

    /// Where the pod's cgroup is in the cgroup filesystem, with either driver. `None`
    /// for a systemd pod without a parent of its own: its containers' scopes sit in the
    /// shared default slice.
    pub(crate) fn pod_cgroupfs_dir(&self, record: &PodRecord) -> Option<String> {
        let driver = self.config().cgroup_driver;
        let requested = record
            .config
            .linux
            .as_ref()
            .map(|l| l.cgroup_parent.as_str())
            .unwrap_or("");
        if driver == crate::config::CgroupDriver::Systemd && requested.is_empty() {
            return None;
        }
        crius_oci::spec::parent_cgroupfs_dir(
            crate::pod::cgroup_driver(driver),
            &record.cgroup_parent,
        )
    }

    async fn pod_usage(&self, record: PodRecord) -> PodUsage {
        let at = now_ns();
        let ready = record.state == PodState::Ready;
        let vm = self.vm_of(&record.runtime_handler).is_some();
        let mut cgroup = match self.pod_cgroupfs_dir(&record) {
            Some(dir) if ready => stats::path_usage(&dir),
            _ => CgroupUsage::default(),
        };
        let interfaces = match (ready, &record.netns, record.pause_pid) {
            // A vm pod's pause pid may be a VM's: its netns is read by path.
            (true, Some(ns), _) if vm => stats::netns_usage(ns),
            (true, Some(_), Some(pid)) => stats::network_usage(pid),
            (true, Some(netns), None) if record.infra_dropped => stats::netns_usage(netns),
            _ => Vec::new(),
        };
        let running = self
            .list_containers(Some(&cri::ContainerFilter {
                pod_sandbox_id: record.id.clone(),
                ..Default::default()
            }))
            .into_iter()
            .filter(|c| c.state == ContainerState::Running);
        let containers: Vec<ContainerUsage> =
            futures::future::join_all(running.map(|c| self.container_usage(c))).await;
        if vm && ready && cgroup.cpu_ns.is_none() {
            // No pod cgroup on the host (a VM runtime that keeps it inside): the pod is
            // what its shim reports for its tasks, the pause's and its containers'.
            let pause = self.vm_task_usage(&record, &record.id).await;
            cgroup = crate::vm_stats::sum_usage(
                std::iter::once(&pause).chain(containers.iter().map(|c| &c.cgroup)),
            );
        }
        let nano_cores = self.nano_cores(&record.id, at, cgroup.cpu_ns);
        PodUsage {
            record,
            at,
            cgroup,
            nano_cores,
            interfaces,
            containers,
        }
    }

    /// PodSandboxStats.
    pub async fn pod_stats(&self, id: &str) -> Result<PodUsage> {
        let record = self.pod_status(id)?;
        Ok(self.pod_usage(record).await)
    }

    /// ListPodSandboxStats: ready pods.
    pub async fn list_pod_stats(
        &self,
        filter: Option<&cri::PodSandboxStatsFilter>,
    ) -> Vec<PodUsage> {
        let ready = self
            .list_pods(None)
            .into_iter()
            .filter(|p| p.state == PodState::Ready)
            .filter(|p| {
                filter.is_none_or(|f| {
                    (f.id.is_empty() || p.id.starts_with(&f.id))
                        && labels_match(&f.label_selector, &p.config.labels)
                })
            });
        futures::future::join_all(ready.map(|p| self.pod_usage(p))).await
    }

    /// ListPodSandboxMetrics: every ready pod with its running containers, read for the
    /// configured metric groups (none: only what `container_last_seen` needs).
    pub fn pod_metrics(&self) -> Vec<PodMetricsUsage> {
        let groups = &self.config().pod_metrics;
        let has = |g: MetricGroup| groups.contains(&g);
        let filesystem = has(MetricGroup::Disk)
            .then(|| stats::filesystem_usage(&self.config().root_dir))
            .flatten();
        self.list_pods(None)
            .into_iter()
            .filter(|p| p.state == PodState::Ready)
            .map(|record| {
                let containers: Vec<ContainerMetricsUsage> = self
                    .list_containers(Some(&cri::ContainerFilter {
                        pod_sandbox_id: record.id.clone(),
                        ..Default::default()
                    }))
                    .into_iter()
                    .filter(|c| c.state == ContainerState::Running)
                    .map(|c| {
                        let at = now_ns();
                        let cgroup = running_cgroup(&c);
                        let processes =
                            has(MetricGroup::Process).then(|| stats::process_counts(&cgroup.procs));
                        let writable_layer = has(MetricGroup::Disk)
                            .then(|| stats::dir_usage(&self.container_dir(&c.id).join("upper")));
                        ContainerMetricsUsage {
                            record: c,
                            at,
                            cgroup,
                            processes,
                            writable_layer,
                            filesystem: filesystem.clone(),
                        }
                    })
                    .collect();
                // The pause holds the pod network; without one (no infra container) any
                // running container of the pod does.
                let holder = record
                    .pause_pid
                    .or_else(|| containers.iter().find_map(|c| c.record.pid));
                let at = now_ns();
                let (interfaces, network_cgroup) = match holder {
                    Some(pid) if has(MetricGroup::Network) && record.netns.is_some() => {
                        (stats::network_usage(pid), stats::process_cgroup_id(pid))
                    }
                    _ => (Vec::new(), None),
                };
                PodMetricsUsage {
                    record,
                    at,
                    network_cgroup,
                    interfaces,
                    containers,
                }
            })
            .collect()
    }
}
