//! OpenTelemetry export: the spans of CRI calls and their steps reach an OTLP/gRPC
//! collector (a receiver of the test's own on 127.0.0.1, serving the collector's
//! TraceService), with their names, parents, ids and the caller's trace context; and a
//! collector that does not answer costs the daemon a warning only.

mod common;

use std::time::{Duration, Instant};

use common::*;
use crius_e2e::cri;
use crius_e2e::otlp::Collector;
use opentelemetry_proto::tonic::trace::v1::{span::SpanKind, status::StatusCode};

fn tracing_daemon(endpoint: &str) -> crius_e2e::CriusDaemonBuilder {
    builder()
        .bridge_network()
        .arg("--enable-tracing")
        .arg("--tracing-endpoint")
        .arg(endpoint)
        .arg("--tracing-sampling-rate-per-million")
        .arg("1000000")
}

#[tokio::test]
async fn every_cri_call_is_exported_with_its_cni_runtime_and_pull_steps() {
    let collector = Collector::default();
    let port = collector.start().await.expect("collector");
    let mut daemon = tracing_daemon(&format!("127.0.0.1:{port}"))
        .start()
        .await
        .expect("daemon");
    let (mut rt, mut images) = clients(&daemon).await;

    pull(&mut images, &busybox()).await;
    let config = pod_config(&daemon, "traced");
    let pod = run_pod(&mut rt, &config).await;
    let ctr = create(&mut rt, &pod, &config, sleeper()).await;
    start(&mut rt, &ctr).await;
    let missing = rt
        .pod_sandbox_status(cri::PodSandboxStatusRequest {
            pod_sandbox_id: "no-such-pod".to_string(),
            verbose: false,
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);
    // A call carrying the caller's W3C trace context, as the kubelet sends it.
    let caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let mut version = tonic::Request::new(cri::VersionRequest::default());
    version.metadata_mut().insert(
        "traceparent",
        format!("00-{caller_trace}-{caller_span}-01")
            .parse()
            .unwrap(),
    );
    rt.version(version).await.expect("Version");
    remove_pod(&mut rt, &pod).await;

    // The batch goes out every few seconds while the daemon runs.
    eventually(
        "the RemovePodSandbox span reaches the collector",
        Duration::from_secs(20),
        || async { (!collector.named("RemovePodSandbox").is_empty()).then_some(()) },
    )
    .await;

    let all = collector.spans();
    assert!(all.iter().all(|r| r.service == "crius"), "{all:#?}");

    let run = collector.one("RunPodSandbox", "pod_id", &pod);
    assert_eq!(run.span.kind, SpanKind::Server as i32);
    assert!(run.span.parent_span_id.is_empty(), "a root span: {run:#?}");
    assert_eq!(run.attr("rpc.grpc.status_code").as_deref(), Some("0"));
    let run_children = collector.children(&run);
    let cni_add = run_children
        .iter()
        .find(|r| r.span.name == "cni ADD")
        .unwrap_or_else(|| panic!("no cni ADD under RunPodSandbox: {run_children:#?}"));
    assert_eq!(cni_add.attr("pod_id").as_deref(), Some(pod.as_str()));
    assert!(
        run_children
            .iter()
            .any(|r| r.span.name.starts_with("runtime ")),
        "no runtime command under RunPodSandbox: {run_children:#?}"
    );
    // The first pod pulls the pause image.
    assert!(
        run_children
            .iter()
            .any(|r| r.span.name == "pull" && r.attr("image") == Some(pause_image())),
        "no pause image pull under RunPodSandbox: {run_children:#?}"
    );

    let create_span = collector.one("CreateContainer", "container_id", &ctr);
    assert_eq!(create_span.attr("pod_id").as_deref(), Some(pod.as_str()));
    let start_span = collector.one("StartContainer", "container_id", &ctr);
    let start_children = collector.children(&start_span);
    assert!(
        start_children.iter().any(|r| r.span.name == "runtime start"
            && r.attr("container_id").as_deref() == Some(ctr.as_str())),
        "no runtime start under StartContainer: {start_children:#?}"
    );

    let pull_span = collector.one("PullImage", "rpc.grpc.status_code", "0");
    let pull_children = collector.children(&pull_span);
    assert!(
        pull_children
            .iter()
            .any(|r| r.span.name == "pull" && r.attr("image").as_deref() == Some(&busybox())),
        "no pull step under PullImage: {pull_children:#?}"
    );

    let stop = collector.one("StopPodSandbox", "pod_id", &pod);
    let stop_children = collector.children(&stop);
    assert!(
        stop_children.iter().any(|r| r.span.name == "cni DEL"),
        "no cni DEL under StopPodSandbox: {stop_children:#?}"
    );

    let failed = collector.one("PodSandboxStatus", "pod_id", "no-such-pod");
    let status = failed.span.status.clone().expect("a status");
    assert_eq!(status.code, StatusCode::Error as i32, "{failed:#?}");
    assert_eq!(
        failed.attr("rpc.grpc.status_code").as_deref(),
        Some((tonic::Code::NotFound as i32).to_string().as_str())
    );

    let version = collector.named("Version");
    let from_caller = version
        .iter()
        .find(|r| hex::encode(&r.span.trace_id) == caller_trace)
        .unwrap_or_else(|| panic!("no Version span in the caller's trace: {version:#?}"));
    assert_eq!(hex::encode(&from_caller.span.parent_span_id), caller_span);

    // Stopping sends what is still queued, within a short bound.
    let before = Instant::now();
    daemon.stop().await.expect("stop");
    assert!(
        before.elapsed() < Duration::from_secs(8),
        "{:?}",
        before.elapsed()
    );
}

#[tokio::test]
async fn a_collector_that_does_not_answer_costs_a_warning_and_no_latency() {
    // Accepts TCP connections (the kernel completes them) but never speaks HTTP/2: every
    // export waits for its timeout.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let silent_port = silent.local_addr().unwrap().port();
    let mut daemon = tracing_daemon(&format!("127.0.0.1:{silent_port}"))
        .start()
        .await
        .expect("daemon");
    let (mut rt, mut images) = clients(&daemon).await;
    pull(&mut images, &busybox()).await;

    let mut pods = Vec::new();
    let mut slowest = Duration::ZERO;
    let deadline = Instant::now() + Duration::from_secs(20);
    // Calls keep going while exports time out behind them.
    while Instant::now() < deadline && !daemon.log().contains("cannot export spans") {
        let config = host_network(pod_config(&daemon, &format!("silent{}", pods.len())));
        let began = Instant::now();
        pods.push(run_pod(&mut rt, &config).await);
        let began_version = Instant::now();
        rt.version(cri::VersionRequest::default())
            .await
            .expect("Version");
        slowest = slowest.max(began_version.elapsed());
        assert!(
            began.elapsed() < Duration::from_secs(5),
            "RunPodSandbox took {:?}",
            began.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let log = daemon.log();
    assert!(
        log.contains("cannot export spans to the tracing endpoint"),
        "no warning about the endpoint:\n{}",
        daemon.log_tail(40)
    );
    assert_eq!(
        log.matches("cannot export spans").count(),
        1,
        "one warning, not one per batch:\n{}",
        daemon.log_tail(40)
    );
    assert!(slowest < Duration::from_secs(1), "Version took {slowest:?}");
    for pod in &pods {
        remove_pod(&mut rt, pod).await;
    }
    let before = Instant::now();
    let status = daemon.stop().await.expect("stop");
    assert!(status.success(), "{status:?}");
    assert!(
        before.elapsed() < Duration::from_secs(8),
        "stopping took {:?} with a silent collector",
        before.elapsed()
    );
    drop(silent);
}

#[tokio::test]
async fn an_https_or_malformed_tracing_endpoint_stops_start_up_naming_the_key() {
    for endpoint in ["https://127.0.0.1:4317", "127.0.0.1:4317/x y", ""] {
        let daemon = builder()
            .arg("--enable-tracing")
            .arg("--tracing-endpoint")
            .arg(endpoint)
            .build()
            .expect("daemon");
        let out = crius_e2e::run_to_exit(daemon.command(), Duration::from_secs(30)).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{endpoint:?} started: {stderr}");
        assert!(
            stderr.contains("crius.tracing.tracing_endpoint"),
            "{endpoint:?}: {stderr}"
        );
    }
}
