//! What a node's operator sees: the Prometheus endpoint after real pods, pulls and OOM
//! kills, parsed as Prometheus parses it; and a taken metrics port, which leaves CRI
//! served.

mod common;

use std::time::Duration;

use common::*;
use crius_e2e::cri;

/// GET `path` on 127.0.0.1:`port`: (status line, body).
async fn http_get(port: u16, path: &str) -> (String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect to the metrics port");
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).await.unwrap();
    let (head, body) = reply.split_once("\r\n\r\n").unwrap_or((&reply, ""));
    (
        head.lines().next().unwrap_or("").to_string(),
        body.to_string(),
    )
}

/// One scrape of the daemon's endpoint, parsed by a Prometheus text-format parser.
struct Scrape {
    text: String,
    parsed: prometheus_parse::Scrape,
}

impl Scrape {
    async fn take(port: u16) -> Scrape {
        let (status, text) = http_get(port, "/metrics").await;
        assert!(status.contains("200"), "{status}\n{text}");
        let parsed = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
            .unwrap_or_else(|e| panic!("the endpoint's text does not parse: {e}\n{text}"));
        Scrape { text, parsed }
    }

    /// The value of the sample `name` whose labels include `labels`; counters, gauges and
    /// untyped only. None when absent.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.parsed
            .samples
            .iter()
            .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .map(|s| match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                ref other => panic!("{name} is not a plain value: {other:?}"),
            })
    }

    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels)
            .unwrap_or_else(|| panic!("no {name} {labels:?} in the scrape:\n{}", self.text))
    }

    /// The observation count of histogram `name` with `labels`.
    fn histogram_count(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.parsed
            .samples
            .iter()
            .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .map(|s| match &s.value {
                prometheus_parse::Value::Histogram(buckets) => buckets
                    .iter()
                    .find(|b| b.less_than.is_infinite())
                    .map_or(0.0, |b| b.count),
                other => panic!("{name} is not a histogram: {other:?}"),
            })
    }
}

#[tokio::test]
async fn the_metrics_endpoint_shows_calls_pulls_pods_oom_kills_and_the_process() {
    let port = free_port();
    let daemon = builder()
        .bridge_network()
        .arg("--enable-metrics")
        .arg("--metrics-port")
        .arg(&port.to_string())
        .start()
        .await
        .expect("daemon");
    let (mut rt, mut images) = clients(&daemon).await;
    pull(&mut images, &busybox()).await;
    let missing = format!("{}/crius-test/no-such-image:1", registry());
    let err = images
        .pull_image(cri::PullImageRequest {
            image: Some(cri::ImageSpec {
                image: missing.clone(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound, "{err:?}");
    rt.checkpoint_container(cri::CheckpointContainerRequest::default())
        .await
        .unwrap_err();

    let config = pod_config(&daemon, "metrics");
    let pod = run_pod(&mut rt, &config).await;
    run_container(
        &mut rt,
        &pod,
        &config,
        container_config("sleeper", &["sleep", "3600"]),
    )
    .await;
    // tail keeps the endless "line" of /dev/zero in memory until the limit kills it.
    let hog = run_container(
        &mut rt,
        &pod,
        &config,
        memory_limited("hog", &["tail", "/dev/zero"], 32 << 20),
    )
    .await;
    let st = wait_state(
        &mut rt,
        &hog,
        cri::ContainerState::ContainerExited,
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(st.reason, "OOMKilled", "{st:?}");

    // The pod's start counts once no container came for the settle time.
    let scrape = eventually(
        "the pod's start latency is observed",
        Duration::from_secs(15),
        || async {
            let s = Scrape::take(port).await;
            (s.histogram_count("crius_pod_start_latency_seconds", &[]) >= Some(1.0)).then_some(s)
        },
    )
    .await;

    let s = &scrape;
    let op = |o: &'static str| [("operation", o)];
    assert_eq!(s.value("crius_operations_total", &op("RunPodSandbox")), 1.0);
    assert_eq!(
        s.value("crius_operations_total", &op("StartContainer")),
        2.0
    );
    assert_eq!(
        s.histogram_count("crius_operations_latency_seconds", &op("CreateContainer")),
        Some(2.0)
    );
    assert_eq!(
        s.value(
            "crius_operations_errors_total",
            &[
                ("operation", "CheckpointContainer"),
                ("code", "Unimplemented")
            ]
        ),
        1.0
    );
    assert_eq!(
        s.value(
            "crius_operations_errors_total",
            &[("operation", "PullImage"), ("code", "NotFound")]
        ),
        1.0
    );
    assert!(
        s.get("crius_operations_errors_total", &op("RunPodSandbox"))
            .is_none(),
        "a call that succeeded counts as no error:\n{}",
        s.text
    );
    // busybox, then the pause image for the pod.
    assert!(s.value("crius_image_pulls_success_total", &[]) >= 2.0);
    assert_eq!(
        s.value(
            "crius_image_pulls_failure_total",
            &[("reason", "not_found")]
        ),
        1.0
    );
    assert!(s.value("crius_image_pulls_bytes_total", &[]) > 100_000.0);
    assert!(s.value("crius_image_pulls_layers_total", &[]) >= 2.0);
    assert!(s.histogram_count("crius_image_pull_duration_seconds", &[]) >= Some(3.0));
    assert_eq!(s.value("crius_image_pulls_in_progress", &[]), 0.0);
    assert_eq!(s.value("crius_pods", &[("state", "ready")]), 1.0);
    assert_eq!(s.value("crius_containers", &[("state", "running")]), 1.0);
    assert_eq!(s.value("crius_containers", &[("state", "exited")]), 1.0);
    assert_eq!(
        s.value(
            "crius_containers_oom_total",
            &[
                ("namespace", "crius-e2e"),
                ("pod", "metrics"),
                ("container", "hog")
            ]
        ),
        1.0
    );
    assert!(s.value("crius_monitor_processes", &[]) >= 1.0);
    assert_eq!(s.value("crius_runtime_processes", &[]), 0.0);
    assert!(s.value("crius_processes_defunct", &[]) >= 0.0);
    assert_eq!(
        s.histogram_count("crius_cni_operation_latency_seconds", &op("ADD")),
        Some(1.0)
    );
    assert!(s.value("crius_process_resident_memory_bytes", &[]) > 1e6);
    assert!(s.value("crius_process_open_fds", &[]) >= 3.0);
    assert!(s.value("crius_process_cpu_seconds_total", &[]) > 0.0);

    remove_pod(&mut rt, &pod).await;
    let s = Scrape::take(port).await;
    assert_eq!(
        s.histogram_count("crius_cni_operation_latency_seconds", &op("DEL")),
        Some(1.0)
    );
    assert_eq!(s.value("crius_pods", &[("state", "ready")]), 0.0);
    assert_eq!(s.value("crius_containers", &[("state", "running")]), 0.0);
    let (status, _) = http_get(port, "/other").await;
    assert!(status.contains("404"), "{status}");
    assert_nothing_left(&daemon, &mut rt).await;
}

#[tokio::test]
async fn a_taken_metrics_port_is_logged_and_cri_is_still_served() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let daemon = builder()
        .arg("--enable-metrics")
        .arg("--metrics-port")
        .arg(&port.to_string())
        .start()
        .await
        .expect("the daemon starts although its metrics port is taken");
    let mut rt = daemon.runtime_client().await.unwrap();
    rt.version(cri::VersionRequest::default()).await.unwrap();
    let want = format!("cannot serve metrics on 127.0.0.1:{port}");
    eventually("the taken port is logged", Duration::from_secs(10), || {
        let log = daemon.log();
        let found = log.contains(&want) && log.contains("serving CRI without metrics");
        async move { found.then_some(()) }
    })
    .await;
    rt.version(cri::VersionRequest::default()).await.unwrap();
    drop(taken);
}
