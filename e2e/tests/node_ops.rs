//! What a node's operator sees: the Prometheus endpoint after real pods, pulls and OOM
//! kills, parsed as Prometheus parses it; and a taken metrics port, which leaves CRI
//! served.

mod common;

use std::time::Duration;

use common::*;
use crius_e2e::{cri, fixture, run_to_exit};

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
        // It counts the pause image's pull.
        .config(WITH_INFRA)
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
    rt.checkpoint_pod(cri::CheckpointPodRequest::default())
        .await
        .unwrap_err();

    let config = pod_config(&daemon, "metrics");
    let pod = run_pod(&mut rt, &config).await;
    run_container(&mut rt, &pod, &config, sleeper()).await;
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
            &[("operation", "CheckpointPod"), ("code", "Unimplemented")]
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

/// A TCP proxy on 127.0.0.1 to the fixture registry that sends the registry's answers at
/// most `bytes_per_sec`, so that a real pull takes seconds. Stops with the test.
async fn slow_registry(bytes_per_sec: u64) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let upstream = registry();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let upstream = upstream.clone();
            tokio::spawn(async move {
                let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else {
                    return;
                };
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                let up = tokio::spawn(async move { tokio::io::copy(&mut cr, &mut sw).await });
                let started = std::time::Instant::now();
                let mut sent = 0u64;
                let mut buf = vec![0u8; 16 * 1024];
                while let Ok(n) = sr.read(&mut buf).await {
                    if n == 0 || cw.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                    sent += n as u64;
                    // Rate limiting, not waiting for a condition: hold each chunk back
                    // until the rate allows it.
                    let due = Duration::from_secs_f64(sent as f64 / bytes_per_sec as f64);
                    if let Some(wait) = due.checked_sub(started.elapsed()) {
                        tokio::time::sleep(wait).await;
                    }
                }
                up.abort();
            });
        }
    });
    port
}

#[tokio::test]
async fn crius_pull_shows_a_slow_pulls_progress_and_the_daemon_logs_and_exports_it() {
    let slow = slow_registry(3 << 20).await;
    let metrics_port = free_port();
    let daemon = builder()
        .arg("--insecure-registry")
        .arg(&format!("127.0.0.1:{slow}"))
        .arg("--insecure-registry")
        .arg(&registry())
        .arg("--enable-metrics")
        .arg("--metrics-port")
        .arg(&metrics_port.to_string())
        .start()
        .await
        .expect("daemon");
    let image = format!("127.0.0.1:{slow}/crius-test/multilayer:latest");
    let mut cmd = daemon.command();
    cmd.arg("pull").arg(&image);
    let pull = tokio::spawn(run_to_exit(cmd, Duration::from_secs(120)));

    // While it runs, the metrics show it.
    let during = eventually(
        "the pull's bytes in the metrics",
        Duration::from_secs(30),
        || async {
            let s = Scrape::take(metrics_port).await;
            let total = s.get(
                "crius_image_pull_progress_bytes",
                &[("image", image.as_str()), ("state", "total")],
            )?;
            (total > 25e6).then_some(s)
        },
    )
    .await;
    assert_eq!(during.value("crius_image_pulls_in_progress", &[]), 1.0);

    let out = pull.await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let id = fixture("CRIUS_TEST_MULTILAYER_ID").unwrap();
    assert_eq!(stdout.trim(), format!("pulled {image}: {id}"), "{stderr}");
    // Not a terminal: plain lines, a state change per layer and rate summaries.
    let lines: Vec<&str> = stderr.lines().collect();
    assert!(
        lines.iter().filter(|l| l.contains(" done ")).count() == 4,
        "every layer ends done:\n{stderr}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains(" downloading ") && l.ends_with("/25174184 bytes")),
        "{stderr}"
    );
    assert!(
        lines.iter().any(|l| l.contains("B/s,")),
        "a summary with the rate:\n{stderr}"
    );
    // The daemon logged the pull at its steady interval, per layer, with the rate.
    let log = daemon.log();
    let progress: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("pull in progress"))
        .collect();
    assert!(!progress.is_empty(), "no progress logged:\n{log}");
    assert!(
        progress
            .iter()
            .any(|l| l.contains("/25174184") && l.contains("B/s")),
        "{progress:?}"
    );
    let after = Scrape::take(metrics_port).await;
    assert!(
        after
            .get(
                "crius_image_pull_progress_bytes",
                &[("image", image.as_str())]
            )
            .is_none(),
        "the finished pull's progress series stayed"
    );

    // On a terminal each layer gets a bar.
    if std::path::Path::new("/usr/bin/script").exists() {
        let mut cmd = daemon.command();
        cmd.arg("pull").arg(busybox());
        let line = format!("{cmd:?}");
        let mut script = std::process::Command::new("/usr/bin/script");
        script.args(["-qec", &line, "/dev/null"]);
        let out = run_to_exit(script, Duration::from_secs(120)).await;
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{text}");
        assert!(text.contains("[=============================="), "{text}");
        assert!(text.contains(&format!("pulled {}", busybox())), "{text}");
    } else if std::env::var("CI").as_deref() == Ok("true") {
        panic!("no /usr/bin/script (util-linux) to run crius pull on a terminal");
    } else {
        eprintln!("skipped the terminal part: no /usr/bin/script");
    }
}

#[tokio::test]
async fn crius_pull_of_a_bad_name_or_a_refusing_registry_fails_clearly_and_the_daemon_serves_on() {
    let daemon = builder().start().await.expect("daemon");
    let mut cmd = daemon.command();
    cmd.arg("pull").arg("Bad::Name");
    let out = run_to_exit(cmd, Duration::from_secs(120)).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("cannot pull Bad::Name") && stderr.contains("InvalidArgument"),
        "{stderr}"
    );

    let auth = fixture("CRIUS_TEST_AUTH_REGISTRY").unwrap();
    let refused = format!("{auth}/crius-test/busybox:latest");
    let mut cmd = daemon.command();
    cmd.arg("pull").arg(&refused);
    let out = run_to_exit(cmd, Duration::from_secs(120)).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(&format!("cannot pull {refused}")) && stderr.contains("not authorized"),
        "{stderr}"
    );

    let mut rt = daemon.runtime_client().await.unwrap();
    rt.version(cri::VersionRequest::default()).await.unwrap();
}

/// The rows of `crius check`'s table: (status, check).
fn check_rows(text: &str) -> Vec<(String, String)> {
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let status = l.get(..6)?.trim();
            let rest = l.get(7..)?;
            let check = rest.split("  ").next()?.trim();
            ["OK", "WARN", "FAIL"]
                .contains(&status)
                .then(|| (status.to_string(), check.to_string()))
        })
        .collect()
}

#[tokio::test]
async fn crius_check_reports_this_node_as_it_is_and_fails_without_the_daemon() {
    let mut daemon = builder().bridge_network().start().await.expect("daemon");
    let mut cmd = daemon.command();
    cmd.arg("check");
    let out = run_to_exit(cmd, Duration::from_secs(60)).await;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let rows = check_rows(&text);
    let level = |check: &str| {
        rows.iter()
            .find(|(_, c)| c == check)
            .map(|(l, _)| l.as_str())
            .unwrap_or_else(|| panic!("no {check} row in:\n{text}"))
    };
    for check in [
        "overlayfs",
        "seccomp",
        "runtime runc",
        // The built-in runtime, found next to crius as the daemon finds it.
        "runtime crius",
        "CNI config",
        "CNI bridge forward rule",
        "socket",
        "daemon",
        "pause image",
    ] {
        assert_eq!(level(check), "OK", "{check}:\n{text}");
    }
    for check in ["id-mapped mounts", "user namespaces", "cgroup controllers"] {
        level(check);
    }
    // What this machine really lacks is a warning, not a failure, and says how to fix it.
    let lsm = std::fs::read_to_string("/sys/kernel/security/lsm").unwrap_or_default();
    if !lsm.contains("apparmor") && !lsm.contains("selinux") {
        assert_eq!(level("LSM"), "WARN", "{text}");
    }
    if std::path::Path::new("/sys/fs/cgroup/unified").is_dir() {
        assert_eq!(level("cgroup layout"), "WARN", "{text}");
        assert!(text.contains("cgroup v1, hybrid"), "{text}");
    }
    for line in text
        .lines()
        .filter(|l| l.starts_with("WARN") || l.starts_with("FAIL"))
    {
        let next = text.lines().skip_while(|l| *l != line).nth(1).unwrap_or("");
        assert!(
            next.trim_start().starts_with("fix: "),
            "no fix under {line:?}:\n{text}"
        );
    }
    let fails = rows.iter().filter(|(l, _)| l == "FAIL").count();
    assert_eq!(
        out.status.success(),
        fails == 0,
        "exit status vs FAIL rows:\n{text}"
    );
    assert!(text.contains(&format!("{fails} FAIL")), "{text}");

    // Without the daemon: the socket and the daemon fail, and so does the exit status.
    daemon.stop().await.unwrap();
    let mut cmd = daemon.command();
    cmd.arg("check");
    let out = run_to_exit(cmd, Duration::from_secs(60)).await;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let rows = check_rows(&text);
    assert!(!out.status.success(), "{text}");
    assert!(
        rows.contains(&("FAIL".to_string(), "socket".to_string())),
        "{text}"
    );
}
