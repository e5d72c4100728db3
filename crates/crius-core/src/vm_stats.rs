//! Usage of `vm` containers from their shim's `Stats`: a task's metrics come as an `Any`
//! holding the cgroup v1 (`io.containerd.cgroups.v1.Metrics`) or v2
//! (`io.containerd.cgroups.v2.Metrics`) figures the shim read where the container runs
//! (inside the VM for Kata), decoded with containerd-shim-protos' own types and turned
//! into the figures crius reads from cgroupfs for runc containers.

use containerd_shim_protos::cgroups::metrics::Metrics as MetricsV1;
use containerd_shim_protos::cgroups_v2::metrics::{Metrics as MetricsV2, PSIStats};
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::{Message, MessageField};
use tracing::warn;

use crate::daemon::Daemon;
use crate::model::PodRecord;
use crate::stats::{CgroupUsage, Pressure, PressureLine};

/// A v1 limit of "no limit" is a huge number; report it as none.
fn real_limit(v: u64) -> Option<u64> {
    (v > 0 && v < (1u64 << 62)).then_some(v)
}

/// The figures of a task's metrics, or why they could not be read.
pub(crate) fn usage_from_metrics(any: &Any) -> Result<CgroupUsage, String> {
    let name = any.type_url.rsplit('/').next().unwrap_or_default();
    match name {
        "io.containerd.cgroups.v1.Metrics" => MetricsV1::parse_from_bytes(&any.value)
            .map(|m| usage_v1(&m))
            .map_err(|e| format!("decode {name}: {e}")),
        "io.containerd.cgroups.v2.Metrics" => MetricsV2::parse_from_bytes(&any.value)
            .map(|m| usage_v2(&m))
            .map_err(|e| format!("decode {name}: {e}")),
        "" => Err("the shim sent no metrics".into()),
        other => Err(format!("metrics of unknown type {other:?}")),
    }
}

fn usage_v1(m: &MetricsV1) -> CgroupUsage {
    let mut u = CgroupUsage::default();
    if let Some(cpu) = m.cpu.as_ref() {
        u.cpu_ns = cpu.usage.as_ref().map(|c| c.total);
    }
    if let Some(mem) = m.memory.as_ref() {
        let usage = mem.usage.as_ref().map(|e| e.usage);
        u.memory_bytes = usage;
        u.working_set_bytes = usage.map(|b| b.saturating_sub(mem.total_inactive_file));
        u.rss_bytes = Some(mem.total_rss);
        u.page_faults = Some(mem.total_pg_fault);
        u.major_page_faults = Some(mem.total_pg_maj_fault);
        u.memory_limit = mem.usage.as_ref().and_then(|e| real_limit(e.limit));
        // `swap` is memory+swap (memsw), there only with swap accounting.
        if let (Some(memsw), Some(used)) = (mem.swap.as_ref(), usage) {
            if memsw.usage > 0 {
                u.swap_bytes = Some(memsw.usage.saturating_sub(used));
                u.swap_limit = real_limit(memsw.limit)
                    .zip(u.memory_limit)
                    .map(|(all, mem)| all.saturating_sub(mem));
            }
        }
    }
    u.pids = m.pids.as_ref().map(|p| p.current);
    u
}

fn pressure(p: &MessageField<PSIStats>) -> Option<Pressure> {
    let p = p.as_ref()?;
    let line = |d: &containerd_shim_protos::cgroups_v2::metrics::PSIData| PressureLine {
        avg10: d.avg10,
        avg60: d.avg60,
        avg300: d.avg300,
        total_us: d.total,
    };
    Some(Pressure {
        some: line(p.some.as_ref()?),
        full: p.full.as_ref().map(line),
    })
}

fn usage_v2(m: &MetricsV2) -> CgroupUsage {
    let mut u = CgroupUsage::default();
    if let Some(cpu) = m.cpu.as_ref() {
        u.cpu_ns = Some(cpu.usage_usec.saturating_mul(1000));
        u.cpu_pressure = pressure(&cpu.psi);
    }
    if let Some(mem) = m.memory.as_ref() {
        u.memory_bytes = Some(mem.usage);
        u.working_set_bytes = Some(mem.usage.saturating_sub(mem.inactive_file));
        u.rss_bytes = Some(mem.anon);
        u.page_faults = Some(mem.pgfault);
        u.major_page_faults = Some(mem.pgmajfault);
        u.memory_limit = real_limit(mem.usage_limit);
        u.swap_bytes = Some(mem.swap_usage);
        u.swap_limit = real_limit(mem.swap_limit);
        u.memory_pressure = pressure(&mem.psi);
    }
    if let Some(io) = m.io.as_ref() {
        u.io_pressure = pressure(&io.psi);
    }
    u.pids = m.pids.as_ref().map(|p| p.current);
    u
}

/// The sum of tasks' figures (a vm pod whose host has no pod cgroup: its tasks).
pub(crate) fn sum_usage<'a>(parts: impl IntoIterator<Item = &'a CgroupUsage>) -> CgroupUsage {
    let add = |a: Option<u64>, b: Option<u64>| match (a, b) {
        (None, None) => None,
        (a, b) => Some(a.unwrap_or(0).saturating_add(b.unwrap_or(0))),
    };
    parts
        .into_iter()
        .fold(CgroupUsage::default(), |s, u| CgroupUsage {
            cpu_ns: add(s.cpu_ns, u.cpu_ns),
            memory_bytes: add(s.memory_bytes, u.memory_bytes),
            working_set_bytes: add(s.working_set_bytes, u.working_set_bytes),
            rss_bytes: add(s.rss_bytes, u.rss_bytes),
            page_faults: add(s.page_faults, u.page_faults),
            major_page_faults: add(s.major_page_faults, u.major_page_faults),
            pids: add(s.pids, u.pids),
            swap_bytes: add(s.swap_bytes, u.swap_bytes),
            ..CgroupUsage::default()
        })
}

impl Daemon {
    /// The figures of task `id` of a vm pod, from its shim; empty (and logged) when the
    /// shim cannot give them.
    pub(crate) async fn vm_task_usage(&self, pod: &PodRecord, id: &str) -> CgroupUsage {
        let result = match self.shim_of(pod).await {
            Ok(s) => s
                .stats(id)
                .await
                .map_err(|e| e.to_string())
                .and_then(|any| usage_from_metrics(&any)),
            Err(e) => Err(e.to_string()),
        };
        result.unwrap_or_else(|e| {
            warn!(pod_id = %pod.id, container_id = %id, error = %e, "no stats from the shim");
            CgroupUsage::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use containerd_shim_protos::cgroups::metrics as v1;
    use containerd_shim_protos::cgroups_v2::metrics as v2;

    fn any(type_url: &str, m: &impl Message) -> Any {
        Any {
            type_url: type_url.into(),
            value: m.write_to_bytes().unwrap(),
            ..Default::default()
        }
    }

    #[test]
    fn cgroup_v1_metrics_become_usage() {
        let m = v1::Metrics {
            cpu: MessageField::some(v1::CPUStat {
                usage: MessageField::some(v1::CPUUsage {
                    total: 5_000_000,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            memory: MessageField::some(v1::MemoryStat {
                usage: MessageField::some(v1::MemoryEntry {
                    usage: 10 << 20,
                    limit: u64::MAX / 2,
                    ..Default::default()
                }),
                total_inactive_file: 3 << 20,
                total_rss: 6 << 20,
                total_pg_fault: 100,
                total_pg_maj_fault: 2,
                ..Default::default()
            }),
            pids: MessageField::some(v1::PidsStat {
                current: 4,
                ..Default::default()
            }),
            ..Default::default()
        };
        let u = usage_from_metrics(&any("io.containerd.cgroups.v1.Metrics", &m)).unwrap();
        assert_eq!(u.cpu_ns, Some(5_000_000));
        assert_eq!(u.memory_bytes, Some(10 << 20));
        assert_eq!(u.working_set_bytes, Some(7 << 20));
        assert_eq!(u.rss_bytes, Some(6 << 20));
        assert_eq!(u.page_faults, Some(100));
        assert_eq!(u.major_page_faults, Some(2));
        assert_eq!(u.memory_limit, None, "no limit is none");
        assert_eq!(u.swap_bytes, None, "no swap accounting");
        assert_eq!(u.pids, Some(4));
    }

    #[test]
    fn cgroup_v2_metrics_become_usage_with_pressure() {
        let psi = v2::PSIStats {
            some: MessageField::some(v2::PSIData {
                avg10: 1.5,
                total: 900,
                ..Default::default()
            }),
            ..Default::default()
        };
        let m = v2::Metrics {
            cpu: MessageField::some(v2::CPUStat {
                usage_usec: 7,
                psi: MessageField::some(psi.clone()),
                ..Default::default()
            }),
            memory: MessageField::some(v2::MemoryStat {
                usage: 8 << 20,
                usage_limit: 64 << 20,
                inactive_file: 1 << 20,
                anon: 5 << 20,
                swap_usage: 4096,
                swap_limit: 1 << 20,
                pgfault: 9,
                pgmajfault: 1,
                ..Default::default()
            }),
            pids: MessageField::some(v2::PidsStat {
                current: 2,
                ..Default::default()
            }),
            ..Default::default()
        };
        // Shims send the type URL with or without a host part.
        let url = "types.example/io.containerd.cgroups.v2.Metrics";
        let u = usage_from_metrics(&any(url, &m)).unwrap();
        assert_eq!(u.cpu_ns, Some(7000));
        assert_eq!(u.working_set_bytes, Some(7 << 20));
        assert_eq!(u.rss_bytes, Some(5 << 20));
        assert_eq!(u.memory_limit, Some(64 << 20));
        assert_eq!((u.swap_bytes, u.swap_limit), (Some(4096), Some(1 << 20)));
        assert_eq!(u.pids, Some(2));
        let p = u.cpu_pressure.unwrap();
        assert_eq!((p.some.avg10, p.some.total_us, p.full), (1.5, 900, None));
        assert_eq!(u.memory_pressure, None);
    }

    #[test]
    fn unknown_or_broken_metrics_are_errors() {
        let e = usage_from_metrics(&Any::default()).unwrap_err();
        assert!(e.contains("no metrics"), "{e}");
        let e = usage_from_metrics(&Any {
            type_url: "io.containerd.cgroups.v3.Metrics".into(),
            ..Default::default()
        })
        .unwrap_err();
        assert!(e.contains("unknown type"), "{e}");
        let e = usage_from_metrics(&Any {
            type_url: "io.containerd.cgroups.v1.Metrics".into(),
            value: vec![0xff, 0xff, 0xff],
            ..Default::default()
        })
        .unwrap_err();
        assert!(e.contains("decode"), "{e}");
    }

    #[test]
    fn pod_usage_sums_its_tasks() {
        let a = CgroupUsage {
            cpu_ns: Some(1),
            memory_bytes: Some(10),
            pids: Some(1),
            ..Default::default()
        };
        let b = CgroupUsage {
            cpu_ns: Some(2),
            working_set_bytes: Some(5),
            pids: Some(3),
            ..Default::default()
        };
        let s = sum_usage([&a, &b]);
        assert_eq!(
            (s.cpu_ns, s.memory_bytes, s.working_set_bytes, s.pids),
            (Some(3), Some(10), Some(5), Some(4))
        );
        assert_eq!(s.rss_bytes, None);
    }
}
