//! ContainerStats, ListContainerStats, PodSandboxStats, ListPodSandboxStats.

use crius_core::{CgroupUsage, ContainerUsage, Daemon, InterfaceUsage, PodUsage, Pressure};
use crius_cri_api::v1 as cri;
use tonic::Status;

use crate::status::{invalid, to_status};

fn value(v: Option<u64>) -> Option<cri::UInt64Value> {
    v.map(|value| cri::UInt64Value { value })
}

/// CPU figures; `usage_nano_cores` only once there are two samples to rate, so that the
/// kubelet computes the rate itself rather than take a zero.
/// The kernel's pressure figures; the CRI wants the total in nanoseconds (the kernel
/// counts microseconds).
fn psi(p: Option<Pressure>) -> Option<cri::PsiStats> {
    let data = |l: crius_core::PressureLine| cri::PsiData {
        total: l.total_us.saturating_mul(1000),
        avg10: l.avg10,
        avg60: l.avg60,
        avg300: l.avg300,
    };
    p.map(|p| cri::PsiStats {
        full: p.full.map(data),
        some: Some(data(p.some)),
    })
}

/// IO usage: only pressure, when the kernel reports it.
fn io(at: i64, usage: &CgroupUsage) -> Option<cri::IoUsage> {
    usage.io_pressure.map(|p| cri::IoUsage {
        timestamp: at,
        psi: psi(Some(p)),
    })
}

fn cpu(at: i64, usage: &CgroupUsage, nano_cores: Option<u64>) -> cri::CpuUsage {
    cri::CpuUsage {
        timestamp: at,
        usage_core_nano_seconds: value(usage.cpu_ns.or(Some(0))),
        usage_nano_cores: value(nano_cores),
        psi: psi(usage.cpu_pressure),
    }
}

fn memory(at: i64, usage: &CgroupUsage) -> cri::MemoryUsage {
    cri::MemoryUsage {
        timestamp: at,
        working_set_bytes: value(usage.working_set_bytes.or(Some(0))),
        available_bytes: value(
            usage
                .memory_limit
                .map(|l| l.saturating_sub(usage.working_set_bytes.unwrap_or(0))),
        ),
        usage_bytes: value(usage.memory_bytes.or(Some(0))),
        rss_bytes: value(usage.rss_bytes.or(Some(0))),
        page_faults: value(usage.page_faults.or(Some(0))),
        major_page_faults: value(usage.major_page_faults.or(Some(0))),
        psi: psi(usage.memory_pressure),
    }
}

/// Swap, where the kernel accounts it for cgroups.
fn swap(at: i64, usage: &CgroupUsage) -> Option<cri::SwapUsage> {
    let used = usage.swap_bytes?;
    Some(cri::SwapUsage {
        timestamp: at,
        swap_available_bytes: value(usage.swap_limit.map(|l| l.saturating_sub(used))),
        swap_usage_bytes: value(Some(used)),
    })
}

fn container_stats(u: &ContainerUsage) -> cri::ContainerStats {
    cri::ContainerStats {
        attributes: Some(cri::ContainerAttributes {
            id: u.record.id.clone(),
            metadata: u.record.config.metadata.clone(),
            labels: u.record.config.labels.clone(),
            annotations: u.record.config.annotations.clone(),
        }),
        cpu: Some(cpu(u.at, &u.cgroup, u.nano_cores)),
        memory: Some(memory(u.at, &u.cgroup)),
        writable_layer: Some(cri::FilesystemUsage {
            timestamp: u.at,
            fs_id: Some(cri::FilesystemIdentifier {
                mountpoint: u.mountpoint.clone(),
            }),
            used_bytes: value(Some(u.writable_layer.0)),
            inodes_used: value(Some(u.writable_layer.1)),
        }),
        swap: swap(u.at, &u.cgroup),
        io: io(u.at, &u.cgroup),
    }
}

/// The pod network's figures; none for a pod without interfaces of its own (host network),
/// as the kubelet reads the default interface of any network it is given.
fn network(at: i64, interfaces: &[InterfaceUsage]) -> Option<cri::NetworkUsage> {
    let interfaces: Vec<cri::NetworkInterfaceUsage> = interfaces
        .iter()
        .map(|i| cri::NetworkInterfaceUsage {
            name: i.name.clone(),
            rx_bytes: value(Some(i.rx_bytes)),
            rx_errors: value(Some(i.rx_errors)),
            tx_bytes: value(Some(i.tx_bytes)),
            tx_errors: value(Some(i.tx_errors)),
        })
        .collect();
    let default_interface = interfaces
        .iter()
        .find(|i| i.name == "eth0")
        .or(interfaces.first())
        .cloned()?;
    Some(cri::NetworkUsage {
        timestamp: at,
        default_interface: Some(default_interface),
        interfaces,
    })
}

fn pod_stats(u: &PodUsage) -> cri::PodSandboxStats {
    cri::PodSandboxStats {
        attributes: Some(cri::PodSandboxAttributes {
            id: u.record.id.clone(),
            metadata: u.record.config.metadata.clone(),
            labels: u.record.config.labels.clone(),
            annotations: u.record.config.annotations.clone(),
        }),
        linux: Some(cri::LinuxPodSandboxStats {
            cpu: Some(cpu(u.at, &u.cgroup, u.nano_cores)),
            memory: Some(memory(u.at, &u.cgroup)),
            network: network(u.at, &u.interfaces),
            process: Some(cri::ProcessUsage {
                timestamp: u.at,
                process_count: value(u.cgroup.pids.or(Some(0))),
            }),
            containers: u.containers.iter().map(container_stats).collect(),
            io: io(u.at, &u.cgroup),
        }),
        windows: None,
    }
}

/// ContainerStats.
pub async fn container(
    daemon: &Daemon,
    req: cri::ContainerStatsRequest,
) -> Result<cri::ContainerStatsResponse, Status> {
    if req.container_id.is_empty() {
        return Err(invalid("ContainerStats needs a container_id"));
    }
    let u = daemon
        .container_stats(&req.container_id)
        .await
        .map_err(to_status)?;
    Ok(cri::ContainerStatsResponse {
        stats: Some(container_stats(&u)),
    })
}

/// ListContainerStats.
pub async fn list_containers(
    daemon: &Daemon,
    req: cri::ListContainerStatsRequest,
) -> cri::ListContainerStatsResponse {
    cri::ListContainerStatsResponse {
        stats: daemon
            .list_container_stats(req.filter.as_ref())
            .await
            .iter()
            .map(container_stats)
            .collect(),
    }
}

/// PodSandboxStats.
pub async fn pod(
    daemon: &Daemon,
    req: cri::PodSandboxStatsRequest,
) -> Result<cri::PodSandboxStatsResponse, Status> {
    if req.pod_sandbox_id.is_empty() {
        return Err(invalid("PodSandboxStats needs a pod_sandbox_id"));
    }
    let u = daemon
        .pod_stats(&req.pod_sandbox_id)
        .await
        .map_err(to_status)?;
    Ok(cri::PodSandboxStatsResponse {
        stats: Some(pod_stats(&u)),
    })
}

/// ListPodSandboxStats.
pub async fn list_pods(
    daemon: &Daemon,
    req: cri::ListPodSandboxStatsRequest,
) -> cri::ListPodSandboxStatsResponse {
    cri::ListPodSandboxStatsResponse {
        stats: daemon
            .list_pod_stats(req.filter.as_ref())
            .await
            .iter()
            .map(pod_stats)
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iface(name: &str, rx: u64) -> InterfaceUsage {
        InterfaceUsage {
            name: name.to_string(),
            rx_bytes: rx,
            tx_bytes: rx * 2,
            ..Default::default()
        }
    }

    #[test]
    fn a_pod_without_interfaces_has_no_network_stats() {
        // The kubelet dereferences the default interface of any network it gets.
        assert_eq!(network(1, &[]), None);
    }

    #[test]
    fn eth0_is_the_default_interface_else_the_first() {
        let n = network(7, &[iface("net1", 1), iface("eth0", 5)]).unwrap();
        let d = n.default_interface.unwrap();
        assert_eq!(d.name, "eth0");
        assert_eq!(d.rx_bytes.map(|v| v.value), Some(5));
        assert_eq!(d.tx_bytes.map(|v| v.value), Some(10));
        assert_eq!(n.interfaces.len(), 2);
        assert_eq!(n.timestamp, 7);
        let n = network(7, &[iface("net1", 1)]).unwrap();
        assert_eq!(n.default_interface.unwrap().name, "net1");
    }
}
