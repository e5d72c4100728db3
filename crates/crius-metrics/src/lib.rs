//! Every Prometheus series crius exports, in one place, under the `crius_` prefix.
//!
//! The crates that do the work record into the process-wide [`metrics()`] with one call
//! at each point (a finished CRI call, a pulled layer, a CNI ADD); the daemon serves
//! [`Metrics::encode`] on its metrics endpoint. Figures that are a view of the present
//! (pods and containers by state, monitor processes, the process's own memory) are read
//! when a scrape asks, not kept up to date between scrapes.

use std::sync::atomic::{AtomicI64, AtomicU64};
use std::sync::LazyLock;
use std::time::Duration;

use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

mod pod_start;
mod process;

pub use pod_start::POD_START_SETTLE;
pub use process::ProcessFigures;

/// The `Content-Type` of [`Metrics::encode`]'s text (Prometheus text format 0.0.4).
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// One label, as `prometheus-client` encodes it.
type Label = (&'static str, String);
type Labels1 = [Label; 1];
type Labels2 = [Label; 2];
type Labels3 = [Label; 3];
type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Latency buckets of a CRI call, in seconds: 0.5 ms to a minute.
const RPC_BUCKETS: [f64; 16] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];
/// Buckets of an image pull, in seconds.
const PULL_BUCKETS: [f64; 12] = [
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];
/// Buckets of a pod start (RunPodSandbox to its last container running), in seconds.
const POD_START_BUCKETS: [f64; 12] = [
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];
/// Buckets of one CNI ADD or DEL, in seconds.
const CNI_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

fn rpc_histogram() -> Histogram {
    Histogram::new(RPC_BUCKETS)
}

fn cni_histogram() -> Histogram {
    Histogram::new(CNI_BUCKETS)
}

/// The series, registered once.
pub struct Metrics {
    registry: Registry,
    operations: Family<Labels1, Counter>,
    operation_errors: Family<Labels2, Counter>,
    operation_latency: HistogramFamily<Labels1>,
    operations_in_flight: Gauge,
    pulls_success: Counter,
    pulls_failure: Family<Labels1, Counter>,
    pull_bytes: Counter,
    pull_layers: Counter,
    layer_reuse: Counter,
    pull_duration: Histogram,
    pulls_in_progress: Gauge,
    pull_progress_bytes: Family<Labels2, Gauge>,
    pods: Family<Labels1, Gauge>,
    containers: Family<Labels1, Gauge>,
    oom_kills: Family<Labels3, Counter>,
    monitor_processes: Gauge,
    runtime_processes: Gauge,
    defunct_processes: Gauge,
    pod_start_latency: Histogram,
    pod_starts: pod_start::PodStarts,
    cni_latency: HistogramFamily<Labels1>,
    resident_memory: Gauge,
    virtual_memory: Gauge,
    cpu_seconds: Counter<f64, AtomicU64>,
    open_fds: Gauge,
    start_time: Gauge<i64, AtomicI64>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The process-wide series.
pub fn metrics() -> &'static Metrics {
    &METRICS
}

impl Metrics {
    fn new() -> Metrics {
        let mut m = Metrics {
            registry: Registry::with_prefix("crius"),
            operations: Family::default(),
            operation_errors: Family::default(),
            operation_latency: Family::new_with_constructor(rpc_histogram),
            operations_in_flight: Gauge::default(),
            pulls_success: Counter::default(),
            pulls_failure: Family::default(),
            pull_bytes: Counter::default(),
            pull_layers: Counter::default(),
            layer_reuse: Counter::default(),
            pull_duration: Histogram::new(PULL_BUCKETS),
            pulls_in_progress: Gauge::default(),
            pull_progress_bytes: Family::default(),
            pods: Family::default(),
            containers: Family::default(),
            oom_kills: Family::default(),
            monitor_processes: Gauge::default(),
            runtime_processes: Gauge::default(),
            defunct_processes: Gauge::default(),
            pod_start_latency: Histogram::new(POD_START_BUCKETS),
            pod_starts: pod_start::PodStarts::default(),
            cni_latency: Family::new_with_constructor(cni_histogram),
            resident_memory: Gauge::default(),
            virtual_memory: Gauge::default(),
            cpu_seconds: Counter::default(),
            open_fds: Gauge::default(),
            start_time: Gauge::default(),
        };
        let r = &mut m.registry;
        r.register(
            "operations",
            "CRI calls served, by operation (RuntimeService/RunPodSandbox, ...)",
            m.operations.clone(),
        );
        r.register(
            "operations_errors",
            "CRI calls that ended in an error, by operation and gRPC code",
            m.operation_errors.clone(),
        );
        r.register_with_unit(
            "operations_latency",
            "Time to serve a CRI call, by operation",
            Unit::Seconds,
            m.operation_latency.clone(),
        );
        r.register(
            "operations_in_flight",
            "CRI calls being served now",
            m.operations_in_flight.clone(),
        );
        r.register(
            "image_pulls_success",
            "Image pulls that succeeded",
            m.pulls_success.clone(),
        );
        r.register(
            "image_pulls_failure",
            "Image pulls that failed, by reason",
            m.pulls_failure.clone(),
        );
        r.register_with_unit(
            "image_pulls",
            "Layer bytes downloaded from registries",
            Unit::Bytes,
            m.pull_bytes.clone(),
        );
        r.register(
            "image_pulls_layers",
            "Layers downloaded from registries",
            m.pull_layers.clone(),
        );
        r.register(
            "image_layer_reuse",
            "Layers a pull found already in the store and did not download",
            m.layer_reuse.clone(),
        );
        r.register_with_unit(
            "image_pull_duration",
            "Time an image pull took, successful or not",
            Unit::Seconds,
            m.pull_duration.clone(),
        );
        r.register(
            "image_pulls_in_progress",
            "Image pulls running now",
            m.pulls_in_progress.clone(),
        );
        r.register_with_unit(
            "image_pull_progress",
            "Bytes of the layers being downloaded now, done and total, by image",
            Unit::Bytes,
            m.pull_progress_bytes.clone(),
        );
        r.register("pods", "Pod sandboxes, by state", m.pods.clone());
        r.register("containers", "Containers, by state", m.containers.clone());
        r.register(
            "containers_oom",
            "Containers killed by the OOM killer, by namespace, pod and container name",
            m.oom_kills.clone(),
        );
        r.register(
            "monitor_processes",
            "crius-conmon monitor processes running on the node",
            m.monitor_processes.clone(),
        );
        r.register(
            "runtime_processes",
            "OCI runtime commands (runc create, start, kill, ...) running now",
            m.runtime_processes.clone(),
        );
        r.register(
            "processes_defunct",
            "Defunct (zombie) processes on the node",
            m.defunct_processes.clone(),
        );
        r.register_with_unit(
            "pod_start_latency",
            "Time from RunPodSandbox to the last of the pod's containers running",
            Unit::Seconds,
            m.pod_start_latency.clone(),
        );
        r.register_with_unit(
            "cni_operation_latency",
            "Time a CNI ADD or DEL of a pod's network took, by operation",
            Unit::Seconds,
            m.cni_latency.clone(),
        );
        r.register_with_unit(
            "process_resident_memory",
            "Resident memory of the crius daemon",
            Unit::Bytes,
            m.resident_memory.clone(),
        );
        r.register_with_unit(
            "process_virtual_memory",
            "Virtual memory of the crius daemon",
            Unit::Bytes,
            m.virtual_memory.clone(),
        );
        r.register_with_unit(
            "process_cpu",
            "CPU time (user and system) the crius daemon used",
            Unit::Seconds,
            m.cpu_seconds.clone(),
        );
        r.register(
            "process_open_fds",
            "Open file descriptors of the crius daemon",
            m.open_fds.clone(),
        );
        r.register_with_unit(
            "process_start_time",
            "When the crius daemon started, in seconds since the epoch",
            Unit::Seconds,
            m.start_time.clone(),
        );
        m
    }

    /// A finished CRI call of `operation` ("RuntimeService/Version"); `code` is its gRPC
    /// code name, "OK" on success.
    pub fn record_operation(&self, operation: &str, code: &str, elapsed: Duration) {
        let op = [("operation", operation.to_string())];
        self.operations.get_or_create(&op).inc();
        self.operation_latency
            .get_or_create(&op)
            .observe(elapsed.as_secs_f64());
        if code != "OK" {
            let [op] = op;
            self.operation_errors
                .get_or_create(&[op, ("code", code.to_string())])
                .inc();
        }
    }

    /// Counts a CRI call in flight until the guard drops.
    pub fn operation_in_flight(&self) -> GaugeGuard<'_> {
        GaugeGuard::new(&self.operations_in_flight)
    }

    /// A finished image pull: `Err(reason)` with a short reason ("not_found",
    /// "unauthorized", ...) when it failed.
    pub fn record_pull(&self, outcome: Result<(), &str>, elapsed: Duration) {
        self.pull_duration.observe(elapsed.as_secs_f64());
        match outcome {
            Ok(()) => {
                self.pulls_success.inc();
            }
            Err(reason) => {
                self.pulls_failure
                    .get_or_create(&[("reason", reason.to_string())])
                    .inc();
            }
        }
    }

    /// Counts an image pull in progress until the guard drops.
    pub fn pull_in_progress(&self) -> GaugeGuard<'_> {
        GaugeGuard::new(&self.pulls_in_progress)
    }

    /// A layer downloaded (and unpacked) from a registry, of `bytes` compressed bytes.
    pub fn record_layer_download(&self, bytes: u64) {
        self.pull_bytes.inc_by(bytes);
        self.pull_layers.inc();
    }

    /// A layer a pull found already in the store.
    pub fn record_layer_reuse(&self) {
        self.layer_reuse.inc();
    }

    /// The bytes done and the total of the layers `image` is downloading now.
    pub fn set_pull_progress(&self, image: &str, done: u64, total: u64) {
        for (state, value) in [("done", done), ("total", total)] {
            self.pull_progress_bytes
                .get_or_create(&[("image", image.to_string()), ("state", state.to_string())])
                .set(i64::try_from(value).unwrap_or(i64::MAX));
        }
    }

    /// Drops `image`'s progress series once its pull ended.
    pub fn clear_pull_progress(&self, image: &str) {
        for state in ["done", "total"] {
            self.pull_progress_bytes
                .remove(&[("image", image.to_string()), ("state", state.to_string())]);
        }
    }

    /// A container killed by the OOM killer.
    pub fn record_oom_kill(&self, namespace: &str, pod: &str, container: &str) {
        self.oom_kills
            .get_or_create(&[
                ("namespace", namespace.to_string()),
                ("pod", pod.to_string()),
                ("container", container.to_string()),
            ])
            .inc();
    }

    /// RunPodSandbox made pod `pod_id`; its call arrived at `arrived`.
    pub fn pod_run(&self, pod_id: &str, arrived: std::time::Instant) {
        self.pod_starts.run(pod_id, arrived);
    }

    /// A container was made in pod `pod_id`: the pod is not started until it runs too.
    pub fn pod_container_created(&self, pod_id: &str) {
        self.pod_starts.container_created(pod_id);
    }

    /// A StartContainer left every container of pod `pod_id` running.
    pub fn pod_containers_running(&self, pod_id: &str) {
        self.pod_starts
            .all_running(pod_id, std::time::Instant::now());
        self.flush_pod_starts();
    }

    /// Pod `pod_id` is gone.
    pub fn pod_removed(&self, pod_id: &str) {
        self.pod_starts.removed(pod_id);
    }

    fn flush_pod_starts(&self) {
        for elapsed in self.pod_starts.settled(std::time::Instant::now()) {
            self.pod_start_latency.observe(elapsed.as_secs_f64());
        }
    }

    /// One CNI `operation` ("ADD" or "DEL") of a pod's network.
    pub fn record_cni(&self, operation: &'static str, elapsed: Duration) {
        self.cni_latency
            .get_or_create(&[("operation", operation.to_string())])
            .observe(elapsed.as_secs_f64());
    }

    /// Counts an OCI runtime command running until the guard drops.
    pub fn runtime_process(&self) -> GaugeGuard<'_> {
        GaugeGuard::new(&self.runtime_processes)
    }

    /// Sets the pods and containers by state (each `(state, count)`), as they are now.
    /// States missing from a list are set to 0, so a state that emptied reads 0.
    pub fn set_object_states(&self, pods: &[(&str, i64)], containers: &[(&str, i64)]) {
        for (family, states, all) in [
            (&self.pods, pods, &["ready", "notready"][..]),
            (
                &self.containers,
                containers,
                &["created", "running", "exited", "unknown"][..],
            ),
        ] {
            for state in all {
                let count = states
                    .iter()
                    .filter(|(s, _)| s == state)
                    .map(|(_, n)| n)
                    .sum();
                family
                    .get_or_create(&[("state", state.to_string())])
                    .set(count);
            }
        }
    }

    /// The text a scrape gets: process figures and process counts are read now.
    pub fn encode(&self) -> String {
        if let Some(p) = ProcessFigures::of_self() {
            self.resident_memory.set(clamp(p.resident_bytes));
            self.virtual_memory.set(clamp(p.virtual_bytes));
            let seen = self.cpu_seconds.get();
            if p.cpu_seconds > seen {
                self.cpu_seconds.inc_by(p.cpu_seconds - seen);
            }
            self.open_fds.set(clamp(p.open_fds));
            self.start_time.set(clamp(p.start_time_seconds));
        }
        self.flush_pod_starts();
        let procs = process::node_processes();
        self.monitor_processes.set(clamp(procs.monitors));
        self.defunct_processes.set(clamp(procs.defunct));
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_text::encode(&mut out, &self.registry);
        out
    }
}

fn clamp(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Holds a gauge one higher until dropped.
#[derive(Debug)]
pub struct GaugeGuard<'a>(&'a Gauge);

impl<'a> GaugeGuard<'a> {
    fn new(gauge: &'a Gauge) -> Self {
        gauge.inc();
        GaugeGuard(gauge)
    }
}

impl Drop for GaugeGuard<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> prometheus_parse::Scrape {
        prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap()
    }

    fn sample<'a>(
        scrape: &'a prometheus_parse::Scrape,
        name: &str,
        labels: &[(&str, &str)],
    ) -> Option<&'a prometheus_parse::Sample> {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
    }

    #[test]
    fn recorded_figures_reach_the_text() {
        let m = Metrics::new();
        m.record_operation("RuntimeService/Version", "OK", Duration::from_millis(2));
        m.record_operation(
            "RuntimeService/StopContainer",
            "NotFound",
            Duration::from_millis(1),
        );
        m.record_pull(Err("not_found"), Duration::from_millis(300));
        m.record_layer_download(1000);
        m.record_layer_reuse();
        m.record_oom_kill("default", "web", "app");
        m.record_cni("ADD", Duration::from_millis(40));
        m.set_object_states(&[("ready", 2)], &[("running", 3), ("exited", 1)]);
        let _runtime = m.runtime_process();
        let text = m.encode();
        let scrape = parse(&text);
        let value = |name: &str, labels: &[(&str, &str)]| match sample(&scrape, name, labels)
            .unwrap_or_else(|| panic!("no {name} {labels:?} in:\n{text}"))
            .value
        {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            ref other => panic!("{name}: {other:?}"),
        };
        let op = |o| [("operation", o)];
        assert_eq!(
            value("crius_operations_total", &op("RuntimeService/Version")),
            1.0
        );
        assert_eq!(
            value(
                "crius_operations_errors_total",
                &[
                    ("operation", "RuntimeService/StopContainer"),
                    ("code", "NotFound")
                ]
            ),
            1.0
        );
        assert!(
            sample(
                &scrape,
                "crius_operations_errors_total",
                &op("RuntimeService/Version")
            )
            .is_none(),
            "a successful call is no error:\n{text}"
        );
        assert_eq!(
            value(
                "crius_image_pulls_failure_total",
                &[("reason", "not_found")]
            ),
            1.0
        );
        assert_eq!(value("crius_image_pulls_bytes_total", &[]), 1000.0);
        assert_eq!(value("crius_image_layer_reuse_total", &[]), 1.0);
        assert_eq!(
            value(
                "crius_containers_oom_total",
                &[("pod", "web"), ("container", "app")]
            ),
            1.0
        );
        assert_eq!(value("crius_pods", &[("state", "ready")]), 2.0);
        assert_eq!(value("crius_pods", &[("state", "notready")]), 0.0);
        assert_eq!(value("crius_containers", &[("state", "running")]), 3.0);
        assert_eq!(value("crius_runtime_processes", &[]), 1.0);
        assert!(value("crius_process_resident_memory_bytes", &[]) > 0.0);
        assert!(value("crius_process_open_fds", &[]) > 0.0);
        // The histograms come out as histograms.
        let latency = sample(
            &scrape,
            "crius_operations_latency_seconds",
            &op("RuntimeService/Version"),
        )
        .unwrap_or_else(|| panic!("no latency histogram in:\n{text}"));
        match &latency.value {
            prometheus_parse::Value::Histogram(buckets) => {
                let le_5ms = buckets.iter().find(|b| b.less_than == 0.005).unwrap();
                assert_eq!(le_5ms.count, 1.0);
            }
            other => panic!("latency is {other:?}"),
        }
        assert!(
            text.contains(
                "crius_cni_operation_latency_seconds_bucket{le=\"0.05\",operation=\"ADD\"} 1"
            ) || text.contains(
                "crius_cni_operation_latency_seconds_bucket{operation=\"ADD\",le=\"0.05\"} 1"
            ),
            "{text}"
        );
    }

    #[test]
    fn pull_progress_series_go_when_the_pull_ends() {
        let m = Metrics::new();
        m.set_pull_progress("r.example/a:1", 10, 100);
        assert!(m.encode().contains("image=\"r.example/a:1\""));
        m.clear_pull_progress("r.example/a:1");
        assert!(!m.encode().contains("image=\"r.example/a:1\""));
    }

    #[test]
    fn guards_count_while_held() {
        let m = Metrics::new();
        {
            let _a = m.operation_in_flight();
            let _b = m.operation_in_flight();
            assert_eq!(m.operations_in_flight.get(), 2);
        }
        assert_eq!(m.operations_in_flight.get(), 0);
    }
}
