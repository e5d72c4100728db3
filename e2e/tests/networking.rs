//! Pod networking through crius: pod-to-pod traffic over the test bridge, host ports on
//! 127.0.0.1, and the DNS config and hostname the kubelet asks for. Traffic stays on
//! loopback and the test's own bridge.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::*;
use crius_e2e::cri;

#[tokio::test]
async fn two_pods_reach_each_other_by_pod_ip() {
    let daemon = bridge_daemon().await;
    let (mut rt, mut images) = clients(&daemon).await;
    pull(&mut images, &busybox()).await;

    let server_cfg = pod_config(&daemon, "server");
    let server = run_pod(&mut rt, &server_cfg).await;
    let client_cfg = pod_config(&daemon, "client");
    let client = run_pod(&mut rt, &client_cfg).await;
    let server_ip = pod_status(&mut rt, &server).await.network.unwrap().ip;
    let client_ip = pod_status(&mut rt, &client).await.network.unwrap().ip;
    assert_ne!(server_ip, client_ip);

    run_container(
        &mut rt,
        &server,
        &server_cfg,
        web_server("web", 8080, "hello from the server pod"),
    )
    .await;
    // nc listener too: the client's address as the server sees it.
    let nc = run_container(
        &mut rt,
        &server,
        &server_cfg,
        // busybox nc -l quits when its stdin ends, maybe before the peer's data: keep it open.
        shell("nc", "sleep 3600 | nc -l -p 9090 > /tmp/got"),
    )
    .await;
    let curl = run_container(
        &mut rt,
        &client,
        &client_cfg,
        container_config("curl", &["sleep", "3600"]),
    )
    .await;

    // Debian's busybox wget segfaults (also on the host), so HTTP goes through nc.
    let script =
        format!("printf 'GET /index.html HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {server_ip} 8080");
    let body = eventually(
        "the server pod answers over the bridge",
        Duration::from_secs(15),
        || {
            let mut rt = rt.clone();
            let (curl, script) = (curl.clone(), script.clone());
            async move {
                let out = try_exec(&mut rt, &curl, &["sh", "-c", &script], 10)
                    .await
                    .ok()?;
                let text = String::from_utf8_lossy(&out.stdout).into_owned();
                (out.exit_code == 0 && text.contains("200 OK")).then_some(text)
            }
        },
    )
    .await;
    assert!(body.contains("hello from the server pod"), "{body}");

    // The other way round with nc: the client's pod IP reaches the server pod's listener.
    let sent = format!("from {client_ip}");
    eventually(
        "nc from the client pod reaches the server pod",
        Duration::from_secs(15),
        || {
            let mut rt = rt.clone();
            let (curl, nc) = (curl.clone(), nc.clone());
            let script = format!("echo '{sent}' | nc -w 2 {server_ip} 9090");
            let sent = sent.clone();
            async move {
                let _ = try_exec(&mut rt, &curl, &["sh", "-c", &script], 10).await;
                let got = try_exec(&mut rt, &nc, &["cat", "/tmp/got"], 10)
                    .await
                    .ok()?;
                (String::from_utf8_lossy(&got.stdout).trim() == sent).then_some(())
            }
        },
    )
    .await;

    remove_pod(&mut rt, &server).await;
    remove_pod(&mut rt, &client).await;
    assert_nothing_left(&daemon, &mut rt).await;
}

fn http_get(port: u16) -> std::io::Result<String> {
    let mut stream = TcpStream::connect_timeout(
        &format!("127.0.0.1:{port}").parse().unwrap(),
        Duration::from_secs(2),
    )?;
    stream.set_read_timeout(Some(Duration::from_secs(3)))?;
    stream.write_all(b"GET /index.html HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply)?;
    Ok(reply)
}

#[tokio::test]
async fn a_host_port_on_127_0_0_1_reaches_the_pod() {
    let daemon = bridge_daemon().await;
    let (mut rt, mut images) = clients(&daemon).await;
    pull(&mut images, &busybox()).await;
    let port = free_port();
    let mut config = pod_config(&daemon, "hostport");
    config.port_mappings.push(cri::PortMapping {
        protocol: cri::Protocol::Tcp as i32,
        container_port: 80,
        host_port: port as i32,
        host_ip: "127.0.0.1".into(),
    });
    let pod = run_pod(&mut rt, &config).await;
    run_container(
        &mut rt,
        &pod,
        &config,
        web_server("web", 80, "served through the host port"),
    )
    .await;

    let reply = eventually(
        "the host port answers",
        Duration::from_secs(15),
        || async move {
            let r = tokio::task::spawn_blocking(move || http_get(port))
                .await
                .ok()?;
            r.ok().filter(|r| r.contains("200"))
        },
    )
    .await;
    assert!(reply.contains("served through the host port"), "{reply}");

    // Once the pod is gone, so is the mapping.
    remove_pod(&mut rt, &pod).await;
    let after = tokio::task::spawn_blocking(move || http_get(port))
        .await
        .unwrap();
    assert!(
        after.is_err()
            || !after
                .as_ref()
                .unwrap()
                .contains("served through the host port"),
        "host port still forwards after remove: {after:?}"
    );
    assert_nothing_left(&daemon, &mut rt).await;
}

#[tokio::test]
async fn dns_config_and_hostname_show_up_in_the_container() {
    let daemon = bridge_daemon().await;
    let (mut rt, mut images) = clients(&daemon).await;
    pull(&mut images, &busybox()).await;
    let mut config = pod_config(&daemon, "dns");
    config.hostname = "crius-e2e-host".into();
    config.dns_config = Some(cri::DnsConfig {
        servers: vec!["10.203.0.53".into(), "10.203.0.54".into()],
        searches: vec!["ns1.svc.e2e.local".into(), "svc.e2e.local".into()],
        options: vec!["ndots:5".into(), "timeout:1".into()],
    });
    let pod = run_pod(&mut rt, &config).await;
    let ctr = run_container(
        &mut rt,
        &pod,
        &config,
        container_config("c", &["sleep", "3600"]),
    )
    .await;

    let resolv = exec_ok(&mut rt, &ctr, &["cat", "/etc/resolv.conf"]).await;
    let lines: Vec<&str> = resolv.lines().map(str::trim).collect();
    assert!(lines.contains(&"nameserver 10.203.0.53"), "{resolv}");
    assert!(lines.contains(&"nameserver 10.203.0.54"), "{resolv}");
    let ns_first = lines.iter().position(|l| *l == "nameserver 10.203.0.53");
    let ns_second = lines.iter().position(|l| *l == "nameserver 10.203.0.54");
    assert!(ns_first < ns_second, "nameservers out of order: {resolv}");
    assert!(
        lines.contains(&"search ns1.svc.e2e.local svc.e2e.local"),
        "{resolv}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("options") && l.contains("ndots:5") && l.contains("timeout:1")),
        "{resolv}"
    );

    assert_eq!(
        exec_ok(&mut rt, &ctr, &["hostname"]).await.trim(),
        "crius-e2e-host"
    );
    assert_eq!(
        exec_ok(&mut rt, &ctr, &["cat", "/etc/hostname"])
            .await
            .trim(),
        "crius-e2e-host"
    );
    let hosts = exec_ok(&mut rt, &ctr, &["cat", "/etc/hosts"]).await;
    let ip = pod_status(&mut rt, &pod).await.network.unwrap().ip;
    assert!(
        hosts
            .lines()
            .any(|l| l.split_whitespace().next() == Some(ip.as_str())
                && l.contains("crius-e2e-host")),
        "/etc/hosts does not map {ip} to the hostname: {hosts}"
    );
    // The pod's network interface carries the pod IP.
    let addrs = exec_ok(&mut rt, &ctr, &["ip", "-o", "-4", "addr", "show", "eth0"]).await;
    assert!(addrs.contains(&format!("inet {ip}/")), "{addrs}");

    remove_pod(&mut rt, &pod).await;
    assert_nothing_left(&daemon, &mut rt).await;
}

/// How long the pod at `ip` takes to send 2 MiB to this test (an HTTP GET of its blob) and
/// to take 2 MiB from it (into its `nc` listener, until it closes at the end).
fn transfer_times(ip: &str) -> (Duration, Duration) {
    const SIZE: usize = 2 << 20;
    let connect = |port: u16| {
        let s = TcpStream::connect_timeout(
            &format!("{ip}:{port}").parse().unwrap(),
            Duration::from_secs(5),
        )
        .unwrap_or_else(|e| panic!("connect {ip}:{port}: {e}"));
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        s.set_write_timeout(Some(Duration::from_secs(60))).unwrap();
        s
    };
    let started = std::time::Instant::now();
    let mut s = connect(8080);
    s.write_all(b"GET /blob HTTP/1.0\r\n\r\n").unwrap();
    let mut got = Vec::new();
    s.read_to_end(&mut got).unwrap();
    let out = started.elapsed();
    assert!(got.len() > SIZE, "pod {ip} sent {} bytes", got.len());

    let started = std::time::Instant::now();
    let mut s = connect(9090);
    s.write_all(&vec![0u8; SIZE]).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    // The listener exits once it has read everything, closing the connection.
    s.read_to_end(&mut rest).unwrap();
    (out, started.elapsed())
}

/// The bandwidth plugin's ifb devices (`bwp...`) on the host.
fn ifb_devices() -> Vec<String> {
    let out = std::process::Command::new("ip")
        .args(["-o", "link", "show", "type", "ifb"])
        .output()
        .expect("ip link");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split(':').nth(1).map(|n| n.trim().to_string()))
        .filter(|n| n.starts_with("bwp"))
        .collect()
}

/// The ifb devices made for this test's shaped pod: removed on drop if CNI DEL did not
/// (a failing test).
struct IfbGuard(Vec<String>);

impl Drop for IfbGuard {
    fn drop(&mut self) {
        for dev in &self.0 {
            let _ = std::process::Command::new("ip")
                .args(["link", "del", dev])
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
}

#[tokio::test]
async fn bandwidth_annotations_shape_the_pods_traffic_through_the_cni_bandwidth_plugin() {
    let Some(_) = ["/usr/lib/cni/bandwidth", "/opt/cni/bin/bandwidth"]
        .iter()
        .find(|p| std::path::Path::new(p).exists())
    else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "the CNI bandwidth plugin is missing (containernetworking-plugins)"
        );
        eprintln!("skipped: no CNI bandwidth plugin");
        return;
    };
    let plugins = tempfile::tempdir_in("/var/tmp").unwrap();
    let daemon = daemon_with_chain(
        plugins.path(),
        serde_json::json!([{"type": "bandwidth", "capabilities": {"bandwidth": true}}]),
    )
    .await;
    let (mut rt, mut images) = clients(&daemon).await;
    pull(&mut images, &busybox()).await;
    let serve = shell(
        "serve",
        "mkdir -p /www && dd if=/dev/zero of=/www/blob bs=1024 count=2048 2>/dev/null && \
         (sleep 3600 | nc -l -p 9090 > /dev/null &) && exec httpd -f -p 8080 -h /www",
    );

    // 8 Mbit/s each way: 2 MiB take about 2 s; unshaped, a few ms.
    let mut times = Vec::new();
    let mut pods = Vec::new();
    let mut ifb = IfbGuard(Vec::new());
    for (name, shaped) in [("plain", false), ("shaped", true)] {
        let mut config = pod_config(&daemon, name);
        if shaped {
            config.annotations.extend([
                (
                    "kubernetes.io/ingress-bandwidth".to_string(),
                    "8M".to_string(),
                ),
                (
                    "kubernetes.io/egress-bandwidth".to_string(),
                    "8M".to_string(),
                ),
            ]);
        }
        let before = ifb_devices();
        let pod = run_pod(&mut rt, &config).await;
        let made: Vec<String> = ifb_devices()
            .into_iter()
            .filter(|d| !before.contains(d))
            .collect();
        // The egress limit needs the plugin's ifb device; the ingress one does not.
        assert_eq!(
            made.len(),
            usize::from(shaped),
            "{name}: new ifb devices {made:?}"
        );
        ifb.0.extend(made);
        pods.push(pod.clone());
        let ip = pod_status(&mut rt, &pod).await.network.unwrap().ip;
        run_container(&mut rt, &pod, &config, serve.clone()).await;
        let ip2 = ip.clone();
        eventually("the pod serves", Duration::from_secs(15), move || {
            let ip = ip2.clone();
            async move { TcpStream::connect(format!("{ip}:8080")).ok().map(|_| ()) }
        })
        .await;
        let (out, into) = tokio::task::spawn_blocking(move || transfer_times(&ip))
            .await
            .unwrap();
        eprintln!("{name}: 2 MiB out of the pod in {out:?}, into it in {into:?}");
        times.push((out, into));
    }
    let ((plain_out, plain_in), (shaped_out, shaped_in)) = (times[0], times[1]);
    // At 1 MB/s, 2 MiB need 2.1 s less what the bucket lets through at once.
    for (what, plain, shaped) in [
        ("out of", plain_out, shaped_out),
        ("into", plain_in, shaped_in),
    ] {
        assert!(
            shaped >= Duration::from_millis(1200) && shaped >= plain * 4,
            "2 MiB {what} the shaped pod took {shaped:?}, unshaped {plain:?}"
        );
    }
    // CNI DEL takes the shaping away with the pod.
    for pod in pods {
        remove_pod(&mut rt, &pod).await;
    }
    let left: Vec<String> = ifb_devices()
        .into_iter()
        .filter(|d| ifb.0.contains(d))
        .collect();
    assert!(
        left.is_empty(),
        "ifb devices left after RemovePodSandbox: {left:?}"
    );
    assert_nothing_left(&daemon, &mut rt).await;
}

#[tokio::test]
async fn a_bad_bandwidth_annotation_is_refused_before_anything_is_made() {
    let daemon = bridge_daemon().await;
    let (mut rt, _) = clients(&daemon).await;
    let mut config = pod_config(&daemon, "badbw");
    config.annotations.insert(
        "kubernetes.io/egress-bandwidth".into(),
        "10 furlongs".into(),
    );
    let err = rt
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(config),
            runtime_handler: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    assert!(
        err.message().contains("kubernetes.io/egress-bandwidth")
            && err.message().contains("10 furlongs"),
        "{err:?}"
    );
    assert_nothing_left(&daemon, &mut rt).await;
}
