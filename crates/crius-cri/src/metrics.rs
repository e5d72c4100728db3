//! ListMetricDescriptors and ListPodSandboxMetrics: cAdvisor's container series, by the
//! groups of CRI-O's `included_pod_metrics`, from the figures the core reads.
//!
//! Names, types and label keys are cAdvisor's as the kubelet serves them on
//! /metrics/cadvisor (`container`, `id`, `image`, `name`, `namespace`, `pod`, and the
//! series' own keys after them). Values are integers, as the CRI carries them: seconds
//! are whole seconds (CRI-O does the same).

use std::sync::Arc;

use crius_core::{
    block_device_name, ContainerMetricsUsage, Daemon, MetricGroup, PodMetricsUsage, PodRecord,
};
use crius_cri_api::v1 as cri;
use tonic::Status;

use crate::status::lost_task;

use cri::MetricType::{Counter, Gauge};

/// The label keys every series starts with, in this order.
const BASE_LABELS: [&str; 6] = ["container", "id", "image", "name", "namespace", "pod"];

/// One series: its group (`None`: always served, as CRI-O serves `container_last_seen`),
/// name, help text and its own label keys.
struct Series {
    group: Option<MetricGroup>,
    name: &'static str,
    help: &'static str,
    labels: &'static [&'static str],
}

const fn series(
    group: Option<MetricGroup>,
    name: &'static str,
    help: &'static str,
    labels: &'static [&'static str],
) -> Series {
    Series {
        group,
        name,
        help,
        labels,
    }
}

use MetricGroup as G;

const CPU: Option<MetricGroup> = Some(G::Cpu);
const DISK: Option<MetricGroup> = Some(G::Disk);
const DISK_IO: Option<MetricGroup> = Some(G::DiskIo);
const HUGETLB: Option<MetricGroup> = Some(G::Hugetlb);
const MEMORY: Option<MetricGroup> = Some(G::Memory);
const NETWORK: Option<MetricGroup> = Some(G::Network);
const OOM: Option<MetricGroup> = Some(G::Oom);
const PROCESS: Option<MetricGroup> = Some(G::Process);
const SPEC: Option<MetricGroup> = Some(G::Spec);
const PRESSURE: Option<MetricGroup> = Some(G::Pressure);

/// Every series crius can serve.
const SERIES: &[Series] = &[
    series(None, "container_last_seen", "Last time a container was seen by the exporter", &[]),
    series(CPU, "container_cpu_user_seconds_total", "Cumulative user cpu time consumed in seconds.", &[]),
    series(CPU, "container_cpu_system_seconds_total", "Cumulative system cpu time consumed in seconds.", &[]),
    series(CPU, "container_cpu_usage_seconds_total", "Cumulative cpu time consumed in seconds.", &["cpu"]),
    series(CPU, "container_cpu_cfs_periods_total", "Number of elapsed enforcement period intervals.", &[]),
    series(CPU, "container_cpu_cfs_throttled_periods_total", "Number of throttled period intervals.", &[]),
    series(CPU, "container_cpu_cfs_throttled_seconds_total", "Total time duration the container has been throttled.", &[]),
    series(DISK, "container_fs_inodes_free", "Number of available Inodes", &["device"]),
    series(DISK, "container_fs_inodes_total", "Number of Inodes", &["device"]),
    series(DISK, "container_fs_limit_bytes", "Number of bytes that can be consumed by the container on this filesystem.", &["device"]),
    series(DISK, "container_fs_usage_bytes", "Number of bytes that are consumed by the container on this filesystem.", &["device"]),
    series(DISK_IO, "container_fs_reads_bytes_total", "Cumulative count of bytes read", &["device"]),
    series(DISK_IO, "container_fs_reads_total", "Cumulative count of reads completed", &["device"]),
    series(DISK_IO, "container_fs_writes_bytes_total", "Cumulative count of bytes written", &["device"]),
    series(DISK_IO, "container_fs_writes_total", "Cumulative count of writes completed", &["device"]),
    series(DISK_IO, "container_blkio_device_usage_total", "Blkio Device bytes usage", &["device", "major", "minor", "operation"]),
    series(HUGETLB, "container_hugetlb_usage_bytes", "Current hugepage usage", &["pagesize"]),
    series(HUGETLB, "container_hugetlb_max_usage_bytes", "Maximum hugepage usages recorded", &["pagesize"]),
    series(MEMORY, "container_memory_cache", "Number of bytes of page cache memory.", &[]),
    series(MEMORY, "container_memory_rss", "Size of RSS in bytes.", &[]),
    series(MEMORY, "container_memory_kernel_usage", "Size of kernel memory allocated in bytes.", &[]),
    series(MEMORY, "container_memory_mapped_file", "Size of memory mapped files in bytes.", &[]),
    series(MEMORY, "container_memory_swap", "Container swap usage in bytes.", &[]),
    series(MEMORY, "container_memory_failcnt", "Number of memory usage hits limits", &[]),
    series(MEMORY, "container_memory_usage_bytes", "Current memory usage in bytes, including all memory regardless of when it was accessed", &[]),
    series(MEMORY, "container_memory_max_usage_bytes", "Maximum memory usage recorded in bytes", &[]),
    series(MEMORY, "container_memory_working_set_bytes", "Current working set in bytes.", &[]),
    series(MEMORY, "container_memory_failures_total", "Cumulative count of memory allocation failures.", &["failure_type", "scope"]),
    series(NETWORK, "container_network_receive_bytes_total", "Cumulative count of bytes received", &["interface"]),
    series(NETWORK, "container_network_receive_packets_total", "Cumulative count of packets received", &["interface"]),
    series(NETWORK, "container_network_receive_packets_dropped_total", "Cumulative count of packets dropped while receiving", &["interface"]),
    series(NETWORK, "container_network_receive_errors_total", "Cumulative count of errors encountered while receiving", &["interface"]),
    series(NETWORK, "container_network_transmit_bytes_total", "Cumulative count of bytes transmitted", &["interface"]),
    series(NETWORK, "container_network_transmit_packets_total", "Cumulative count of packets transmitted", &["interface"]),
    series(NETWORK, "container_network_transmit_packets_dropped_total", "Cumulative count of packets dropped while transmitting", &["interface"]),
    series(NETWORK, "container_network_transmit_errors_total", "Cumulative count of errors encountered while transmitting", &["interface"]),
    series(OOM, "container_oom_events_total", "Count of out of memory events observed for the container", &[]),
    series(PROCESS, "container_processes", "Number of processes running inside the container.", &[]),
    series(PROCESS, "container_threads", "Number of threads running inside the container", &[]),
    series(PROCESS, "container_threads_max", "Maximum number of threads allowed inside the container, infinity if value is zero", &[]),
    series(PROCESS, "container_file_descriptors", "Number of open file descriptors for the container.", &[]),
    series(PROCESS, "container_sockets", "Number of open sockets for the container.", &[]),
    series(PROCESS, "container_ulimits_soft", "Soft ulimit values for the container root process. Unlimited if -1, except priority and nice", &["ulimit"]),
    series(SPEC, "container_spec_cpu_period", "CPU period of the container.", &[]),
    series(SPEC, "container_spec_cpu_quota", "CPU quota of the container.", &[]),
    series(SPEC, "container_spec_cpu_shares", "CPU share of the container.", &[]),
    series(SPEC, "container_spec_memory_limit_bytes", "Memory limit for the container.", &[]),
    series(SPEC, "container_spec_memory_reservation_limit_bytes", "Memory reservation limit for the container.", &[]),
    series(SPEC, "container_spec_memory_swap_limit_bytes", "Memory swap limit for the container.", &[]),
    series(SPEC, "container_start_time_seconds", "Start time of the container since unix epoch in seconds.", &[]),
    series(PRESSURE, "container_pressure_cpu_stalled_seconds_total", "Total time duration no tasks in the container could make progress due to CPU congestion.", &[]),
    series(PRESSURE, "container_pressure_cpu_waiting_seconds_total", "Total time duration tasks in the container have waited due to CPU congestion.", &[]),
    series(PRESSURE, "container_pressure_memory_stalled_seconds_total", "Total time duration no tasks in the container could make progress due to memory congestion.", &[]),
    series(PRESSURE, "container_pressure_memory_waiting_seconds_total", "Total time duration tasks in the container have waited due to memory congestion.", &[]),
    series(PRESSURE, "container_pressure_io_stalled_seconds_total", "Total time duration no tasks in the container could make progress due to IO congestion.", &[]),
    series(PRESSURE, "container_pressure_io_waiting_seconds_total", "Total time duration tasks in the container have waited due to IO congestion.", &[]),
];

/// ListMetricDescriptors: the series of the enabled groups and the always-served one.
pub fn descriptors(groups: &[MetricGroup]) -> Vec<cri::MetricDescriptor> {
    SERIES
        .iter()
        .filter(|s| s.group.is_none_or(|g| groups.contains(&g)))
        .map(|s| cri::MetricDescriptor {
            name: s.name.to_string(),
            help: s.help.to_string(),
            label_keys: BASE_LABELS
                .iter()
                .chain(s.labels)
                .map(|k| k.to_string())
                .collect(),
        })
        .collect()
}

/// Collects the metrics of one container (or of the pod's network), all with the same
/// base label values and timestamp.
struct Sink {
    base: Vec<String>,
    at: i64,
    metrics: Vec<cri::Metric>,
}

impl Sink {
    fn new(base: [&str; 6], at: i64) -> Sink {
        Sink {
            base: base.iter().map(|v| v.to_string()).collect(),
            at,
            metrics: Vec::new(),
        }
    }

    fn push(&mut self, name: &str, kind: cri::MetricType, value: u64, extra: &[&str]) {
        let mut label_values = self.base.clone();
        label_values.extend(extra.iter().map(|v| v.to_string()));
        self.metrics.push(cri::Metric {
            name: name.to_string(),
            timestamp: self.at,
            metric_type: kind as i32,
            label_values,
            value: Some(cri::UInt64Value { value }),
        });
    }
}

const NS_PER_S: u64 = 1_000_000_000;

fn pod_names(pod: &PodRecord) -> (&str, &str) {
    pod.config
        .metadata
        .as_ref()
        .map(|m| (m.namespace.as_str(), m.name.as_str()))
        .unwrap_or(("", ""))
}

fn container_metrics(
    groups: &[MetricGroup],
    pod: &PodRecord,
    c: &ContainerMetricsUsage,
) -> cri::ContainerMetrics {
    let (namespace, pod_name) = pod_names(pod);
    let name = c
        .record
        .config
        .metadata
        .as_ref()
        .map(|m| m.name.as_str())
        .unwrap_or("");
    let id = c.cgroup.path.as_deref().unwrap_or("");
    let base = [
        name,
        id,
        c.record.image_name.as_str(),
        c.record.id.as_str(),
        namespace,
        pod_name,
    ];
    let mut out = Sink::new(base, c.at);
    let u = &c.cgroup;
    let at_s = u64::try_from(c.at).unwrap_or(0) / NS_PER_S;
    out.push("container_last_seen", Gauge, at_s, &[]);
    let zero = |v: Option<u64>| v.unwrap_or(0);
    let secs = |ns: Option<u64>| ns.unwrap_or(0) / NS_PER_S;
    for group in groups {
        match group {
            G::Cpu => {
                out.push(
                    "container_cpu_user_seconds_total",
                    Counter,
                    secs(u.cpu_user_ns),
                    &[],
                );
                out.push(
                    "container_cpu_system_seconds_total",
                    Counter,
                    secs(u.cpu_system_ns),
                    &[],
                );
                // Per-CPU series are off in the kubelet's cAdvisor: one "total".
                out.push(
                    "container_cpu_usage_seconds_total",
                    Counter,
                    secs(u.cpu_ns),
                    &["total"],
                );
                // cAdvisor gives the CFS series only to containers with a quota.
                if u.spec.cpu_quota.is_some() {
                    out.push(
                        "container_cpu_cfs_periods_total",
                        Counter,
                        zero(u.cfs_periods),
                        &[],
                    );
                    out.push(
                        "container_cpu_cfs_throttled_periods_total",
                        Counter,
                        zero(u.cfs_throttled_periods),
                        &[],
                    );
                    out.push(
                        "container_cpu_cfs_throttled_seconds_total",
                        Counter,
                        secs(u.cfs_throttled_ns),
                        &[],
                    );
                }
            }
            G::Disk => {
                if let (Some(fs), Some((bytes, _))) = (&c.filesystem, c.writable_layer) {
                    let device = [fs.device.as_str()];
                    out.push("container_fs_inodes_free", Gauge, fs.inodes_free, &device);
                    out.push("container_fs_inodes_total", Gauge, fs.inodes, &device);
                    out.push(
                        "container_fs_limit_bytes",
                        Gauge,
                        fs.capacity_bytes,
                        &device,
                    );
                    out.push("container_fs_usage_bytes", Gauge, bytes, &device);
                }
            }
            G::DiskIo => {
                for d in &u.io {
                    let device = block_device_name(d.major, d.minor);
                    let (major, minor) = (d.major.to_string(), d.minor.to_string());
                    let dev = [device.as_str()];
                    out.push(
                        "container_fs_reads_bytes_total",
                        Counter,
                        d.read_bytes,
                        &dev,
                    );
                    out.push("container_fs_reads_total", Counter, d.reads, &dev);
                    out.push(
                        "container_fs_writes_bytes_total",
                        Counter,
                        d.write_bytes,
                        &dev,
                    );
                    out.push("container_fs_writes_total", Counter, d.writes, &dev);
                    for (op, v) in [("Read", d.read_bytes), ("Write", d.write_bytes)] {
                        let labels = [device.as_str(), major.as_str(), minor.as_str(), op];
                        out.push("container_blkio_device_usage_total", Counter, v, &labels);
                    }
                }
            }
            G::Hugetlb => {
                for (size, used, max) in &u.hugetlb {
                    out.push("container_hugetlb_usage_bytes", Gauge, *used, &[size]);
                    out.push(
                        "container_hugetlb_max_usage_bytes",
                        Gauge,
                        zero(*max),
                        &[size],
                    );
                }
            }
            G::Memory => {
                out.push("container_memory_cache", Gauge, zero(u.cache_bytes), &[]);
                out.push("container_memory_rss", Gauge, zero(u.rss_bytes), &[]);
                out.push(
                    "container_memory_kernel_usage",
                    Gauge,
                    zero(u.kernel_bytes),
                    &[],
                );
                out.push(
                    "container_memory_mapped_file",
                    Gauge,
                    zero(u.mapped_file_bytes),
                    &[],
                );
                out.push("container_memory_swap", Gauge, zero(u.swap_bytes), &[]);
                out.push("container_memory_failcnt", Counter, zero(u.failcnt), &[]);
                out.push(
                    "container_memory_usage_bytes",
                    Gauge,
                    zero(u.memory_bytes),
                    &[],
                );
                out.push(
                    "container_memory_max_usage_bytes",
                    Gauge,
                    zero(u.max_usage_bytes),
                    &[],
                );
                out.push(
                    "container_memory_working_set_bytes",
                    Gauge,
                    zero(u.working_set_bytes),
                    &[],
                );
                for (kind, own, all) in [
                    ("pgfault", u.own_page_faults, u.page_faults),
                    ("pgmajfault", u.own_major_page_faults, u.major_page_faults),
                ] {
                    let name = "container_memory_failures_total";
                    out.push(name, Counter, zero(own), &[kind, "container"]);
                    out.push(name, Counter, zero(all), &[kind, "hierarchy"]);
                }
            }
            // The pod's network is the pod's, not one container's: see `pod_metrics`.
            G::Network => {}
            G::Oom => out.push(
                "container_oom_events_total",
                Counter,
                zero(u.oom_kills),
                &[],
            ),
            G::Process => {
                let p = c.processes.clone().unwrap_or_default();
                let processes = u.pids.unwrap_or(u.procs.len() as u64);
                out.push("container_processes", Gauge, processes, &[]);
                out.push("container_threads", Gauge, p.threads, &[]);
                out.push("container_threads_max", Gauge, zero(u.pids_max), &[]);
                out.push("container_file_descriptors", Gauge, p.fds, &[]);
                out.push("container_sockets", Gauge, p.sockets, &[]);
                // An unlimited soft limit is -1 in cAdvisor, which a CRI value cannot hold.
                if let Some(max) = p.max_open_files {
                    out.push("container_ulimits_soft", Gauge, max, &["max_open_files"]);
                }
            }
            G::Spec => {
                let s = &u.spec;
                out.push("container_spec_cpu_period", Gauge, zero(s.cpu_period), &[]);
                if let Some(quota) = s.cpu_quota {
                    out.push("container_spec_cpu_quota", Gauge, quota, &[]);
                }
                out.push("container_spec_cpu_shares", Gauge, zero(s.cpu_shares), &[]);
                out.push(
                    "container_spec_memory_limit_bytes",
                    Gauge,
                    zero(u.memory_limit),
                    &[],
                );
                out.push(
                    "container_spec_memory_reservation_limit_bytes",
                    Gauge,
                    zero(s.memory_reservation),
                    &[],
                );
                out.push(
                    "container_spec_memory_swap_limit_bytes",
                    Gauge,
                    zero(s.memory_swap_limit),
                    &[],
                );
                let started = u64::try_from(c.record.started_at).unwrap_or(0) / NS_PER_S;
                out.push("container_start_time_seconds", Gauge, started, &[]);
            }
            G::Pressure => {
                for (resource, p) in [
                    ("cpu", u.cpu_pressure),
                    ("memory", u.memory_pressure),
                    ("io", u.io_pressure),
                ] {
                    let Some(p) = p else { continue };
                    let full = p.full.map(|l| l.total_us).unwrap_or(0) / 1_000_000;
                    let some = p.some.total_us / 1_000_000;
                    out.push(
                        &format!("container_pressure_{resource}_stalled_seconds_total"),
                        Counter,
                        full,
                        &[],
                    );
                    out.push(
                        &format!("container_pressure_{resource}_waiting_seconds_total"),
                        Counter,
                        some,
                        &[],
                    );
                }
            }
        }
    }
    cri::ContainerMetrics {
        container_id: c.record.id.clone(),
        metrics: out.metrics,
    }
}

/// One pod's metrics: its network (as cAdvisor gives it to the pause container, named
/// "POD") and each running container's series.
fn pod_metrics(groups: &[MetricGroup], u: &PodMetricsUsage) -> cri::PodSandboxMetrics {
    let (namespace, pod_name) = pod_names(&u.record);
    let id = u.network_cgroup.as_deref().unwrap_or("");
    let base = ["POD", id, "", u.record.id.as_str(), namespace, pod_name];
    let mut out = Sink::new(base, u.at);
    let interfaces = if groups.contains(&G::Network) {
        u.interfaces.as_slice()
    } else {
        &[]
    };
    for i in interfaces {
        let iface = [i.name.as_str()];
        for (name, v) in [
            ("container_network_receive_bytes_total", i.rx_bytes),
            ("container_network_receive_packets_total", i.rx_packets),
            (
                "container_network_receive_packets_dropped_total",
                i.rx_dropped,
            ),
            ("container_network_receive_errors_total", i.rx_errors),
            ("container_network_transmit_bytes_total", i.tx_bytes),
            ("container_network_transmit_packets_total", i.tx_packets),
            (
                "container_network_transmit_packets_dropped_total",
                i.tx_dropped,
            ),
            ("container_network_transmit_errors_total", i.tx_errors),
        ] {
            out.push(name, Counter, v, &iface);
        }
    }
    cri::PodSandboxMetrics {
        pod_sandbox_id: u.record.id.clone(),
        metrics: out.metrics,
        container_metrics: u
            .containers
            .iter()
            .map(|c| container_metrics(groups, &u.record, c))
            .collect(),
    }
}

/// ListPodSandboxMetrics: read on a blocking thread, since it walks /proc and the
/// writable layers.
pub async fn collect(daemon: Arc<Daemon>) -> Result<Vec<cri::PodSandboxMetrics>, Status> {
    tokio::task::spawn_blocking(move || {
        let groups = daemon.config().pod_metrics.clone();
        list(&groups, &daemon.pod_metrics())
    })
    .await
    .map_err(|e| lost_task("read pod metrics", e))
}

/// ListPodSandboxMetrics from the core's figures.
pub fn list(groups: &[MetricGroup], pods: &[PodMetricsUsage]) -> Vec<cri::PodSandboxMetrics> {
    pods.iter().map(|p| pod_metrics(groups, p)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crius_core::{
        CgroupSpec, CgroupUsage, ContainerRecord, DeviceIo, FilesystemUsage, InterfaceUsage,
        Pressure, PressureLine, ProcessCounts,
    };
    use std::collections::HashMap;

    fn pod_record() -> PodRecord {
        PodRecord {
            id: "p1".into(),
            config: cri::PodSandboxConfig {
                metadata: Some(cri::PodSandboxMetadata {
                    name: "web".into(),
                    namespace: "shop".into(),
                    uid: "u".into(),
                    attempt: 0,
                }),
                ..Default::default()
            },
            state: crius_core::PodState::Ready,
            ..Default::default()
        }
    }

    fn container_record() -> ContainerRecord {
        ContainerRecord {
            id: "c1".into(),
            pod_id: "p1".into(),
            config: cri::ContainerConfig {
                metadata: Some(cri::ContainerMetadata {
                    name: "app".into(),
                    attempt: 0,
                }),
                ..Default::default()
            },
            image_name: "busybox:1".into(),
            stop_signal: 15,
            state: crius_core::ContainerState::Running,
            started_at: 5_000_000_000,
            ..Default::default()
        }
    }

    fn usage() -> PodMetricsUsage {
        let line = |total_us| PressureLine {
            total_us,
            ..Default::default()
        };
        let cgroup = CgroupUsage {
            path: Some("/kubepods/pod1/crius-c1".into()),
            cpu_ns: Some(3_500_000_000),
            cpu_user_ns: Some(2_000_000_000),
            cpu_system_ns: Some(1_500_000_000),
            memory_bytes: Some(100),
            working_set_bytes: Some(80),
            page_faults: Some(7),
            own_page_faults: Some(5),
            pids: Some(3),
            pids_max: Some(1024),
            spec: CgroupSpec {
                cpu_quota: Some(20_000),
                cpu_period: Some(100_000),
                ..Default::default()
            },
            io: vec![DeviceIo {
                major: 253,
                minor: 0,
                read_bytes: 10,
                write_bytes: 20,
                reads: 1,
                writes: 2,
            }],
            hugetlb: vec![("2MB".into(), 0, Some(0))],
            cpu_pressure: Some(Pressure {
                some: line(3_000_000),
                full: Some(line(1_000_000)),
            }),
            ..Default::default()
        };
        PodMetricsUsage {
            record: pod_record(),
            at: 7_000_000_000,
            network_cgroup: Some("/kubepods/pod1/crius-p1".into()),
            interfaces: vec![InterfaceUsage {
                name: "eth0".into(),
                rx_bytes: 1000,
                tx_bytes: 2000,
                ..Default::default()
            }],
            containers: vec![ContainerMetricsUsage {
                record: container_record(),
                at: 7_000_000_000,
                cgroup,
                processes: Some(ProcessCounts {
                    threads: 4,
                    fds: 9,
                    sockets: 1,
                    max_open_files: Some(1024),
                }),
                writable_layer: Some((4096, 2)),
                filesystem: Some(FilesystemUsage {
                    device: "/dev/vda1".into(),
                    capacity_bytes: 1 << 30,
                    inodes: 100,
                    inodes_free: 50,
                }),
            }],
        }
    }

    /// Every metric by name and label values.
    fn by_name(m: &cri::PodSandboxMetrics) -> HashMap<String, Vec<(Vec<String>, u64)>> {
        let mut out: HashMap<String, Vec<(Vec<String>, u64)>> = HashMap::new();
        let all = m
            .metrics
            .iter()
            .chain(m.container_metrics.iter().flat_map(|c| c.metrics.iter()));
        for metric in all {
            out.entry(metric.name.clone())
                .or_default()
                .push((metric.label_values.clone(), metric.value.unwrap().value));
        }
        out
    }

    #[test]
    fn with_no_group_only_last_seen_is_described_and_served() {
        let d = descriptors(&[]);
        assert_eq!(
            d.iter().map(|d| d.name.as_str()).collect::<Vec<_>>(),
            ["container_last_seen"]
        );
        let m = list(&[], &[usage()]);
        let names = by_name(&m[0]);
        assert_eq!(names.keys().collect::<Vec<_>>(), ["container_last_seen"]);
        assert_eq!(names["container_last_seen"][0].1, 7);
        assert!(m[0].metrics.is_empty());
    }

    #[test]
    fn every_served_metric_is_described_with_as_many_labels_as_values() {
        let groups = MetricGroup::ALL.to_vec();
        let described: HashMap<String, cri::MetricDescriptor> = descriptors(&groups)
            .into_iter()
            .map(|d| (d.name.clone(), d))
            .collect();
        assert_eq!(described.len(), SERIES.len());
        let m = &list(&groups, &[usage()])[0];
        let all = m
            .metrics
            .iter()
            .chain(m.container_metrics.iter().flat_map(|c| c.metrics.iter()));
        for metric in all {
            let d = described
                .get(&metric.name)
                .unwrap_or_else(|| panic!("{} is not described", metric.name));
            assert_eq!(
                d.label_keys.len(),
                metric.label_values.len(),
                "{}",
                metric.name
            );
            assert_eq!(metric.timestamp, 7_000_000_000);
        }
        // Each group alone describes only its own series.
        for g in MetricGroup::ALL {
            let own = descriptors(&[g]);
            assert!(own.len() > 1, "{g:?}");
        }
    }

    #[test]
    fn values_and_labels_are_cadvisors() {
        let groups = MetricGroup::ALL.to_vec();
        let m = &list(&groups, &[usage()])[0];
        let names = by_name(m);
        let one = |n: &str| {
            let v = &names[n];
            assert_eq!(v.len(), 1, "{n}: {v:?}");
            v[0].clone()
        };
        let (labels, value) = one("container_cpu_usage_seconds_total");
        assert_eq!(
            labels,
            [
                "app",
                "/kubepods/pod1/crius-c1",
                "busybox:1",
                "c1",
                "shop",
                "web",
                "total"
            ]
        );
        assert_eq!(value, 3, "whole seconds");
        assert_eq!(one("container_cpu_user_seconds_total").1, 2);
        assert_eq!(one("container_memory_usage_bytes").1, 100);
        assert_eq!(one("container_memory_working_set_bytes").1, 80);
        assert_eq!(one("container_processes").1, 3);
        assert_eq!(one("container_threads").1, 4);
        assert_eq!(one("container_threads_max").1, 1024);
        assert_eq!(one("container_file_descriptors").1, 9);
        assert_eq!(one("container_sockets").1, 1);
        assert_eq!(one("container_start_time_seconds").1, 5);
        assert_eq!(one("container_spec_cpu_quota").1, 20_000);
        assert_eq!(one("container_pressure_cpu_stalled_seconds_total").1, 1);
        assert_eq!(one("container_pressure_cpu_waiting_seconds_total").1, 3);
        let (labels, value) = one("container_fs_usage_bytes");
        assert_eq!(labels.last().unwrap(), "/dev/vda1");
        assert_eq!(value, 4096);
        assert_eq!(one("container_fs_inodes_free").1, 50);
        let faults = &names["container_memory_failures_total"];
        assert!(faults.contains(&(
            vec![
                "app".into(),
                "/kubepods/pod1/crius-c1".into(),
                "busybox:1".into(),
                "c1".into(),
                "shop".into(),
                "web".into(),
                "pgfault".into(),
                "container".into()
            ],
            5
        )));
        assert_eq!(names["container_blkio_device_usage_total"].len(), 2);
        let (labels, value) = one("container_network_receive_bytes_total");
        assert_eq!(
            labels,
            [
                "POD",
                "/kubepods/pod1/crius-p1",
                "",
                "p1",
                "shop",
                "web",
                "eth0"
            ]
        );
        assert_eq!(value, 1000);
        assert_eq!(one("container_network_transmit_bytes_total").1, 2000);
        // Network series belong to the pod, not to a container.
        assert!(m
            .metrics
            .iter()
            .all(|x| x.name.starts_with("container_network_")));
        let kinds: HashMap<&str, i32> = m
            .container_metrics
            .iter()
            .flat_map(|c| c.metrics.iter())
            .map(|x| (x.name.as_str(), x.metric_type))
            .collect();
        assert_eq!(kinds["container_cpu_usage_seconds_total"], Counter as i32);
        assert_eq!(kinds["container_memory_usage_bytes"], Gauge as i32);
    }
}
