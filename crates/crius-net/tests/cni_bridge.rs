//! The CNI chain against Debian's reference plugins (bridge, host-local, portmap) on a
//! private bridge and subnet per test (run as root).

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use common::{host_link_exists, ip_in, BridgeNet};
use crius_net::{in_netns, Error, NetworkStatus, PodNetwork, PortMapping, Protocol};

/// The host-side veth of a bridge plugin result (interfaces: bridge, host veth, eth0).
fn host_veth(status: &NetworkStatus) -> String {
    status.result["interfaces"]
        .as_array()
        .and_then(|ifaces| {
            ifaces.iter().find(|i| {
                i.get("sandbox").is_none()
                    && i["name"].as_str().is_some_and(|n| n.starts_with("veth"))
            })
        })
        .and_then(|i| i["name"].as_str())
        .expect("host veth in result")
        .to_string()
}

/// The IPv4 addresses configured on eth0 inside the pod.
fn eth0_addrs(pod: &PodNetwork) -> String {
    let out = ip_in(&pod.netns, &["-o", "-4", "addr", "show", "dev", "eth0"]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Listens on `port` inside the pod's netns and answers one connection with `reply`.
fn serve_once(
    pod: &PodNetwork,
    port: u16,
    reply: &'static [u8],
) -> std::thread::JoinHandle<Vec<u8>> {
    let listener: TcpListener = in_netns(&pod.netns, move || TcpListener::bind(("0.0.0.0", port)))
        .expect("enter netns")
        .expect("bind inside pod");
    std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().expect("accept");
        let mut buf = vec![0u8; 5];
        conn.read_exact(&mut buf).expect("read");
        conn.write_all(reply).expect("write");
        buf
    })
}

fn exchange(stream: std::io::Result<TcpStream>) -> Vec<u8> {
    let mut stream = stream.expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    stream.write_all(b"hello").expect("write");
    let mut buf = Vec::new();
    stream.read_to_end(&mut buf).expect("read");
    buf
}

async fn two_pods_get_ips_and_reach_each_other(octet: u8, version: &str) {
    let net = BridgeNet::new(octet, version, true);
    assert_eq!(net.cni.network_status().unwrap(), net.network);

    let a = net.pod("a");
    let b = net.pod("b");
    let sa = net.cni.setup(&a).await.unwrap();
    let sb = net.cni.setup(&b).await.unwrap();
    assert_eq!(sa.result["cniVersion"], version);
    assert_eq!(sa.ips.len(), 1, "{:?}", sa.result);
    let (ipa, ipb) = (sa.ips[0], sb.ips[0]);
    assert_ne!(ipa, ipb);
    for ip in [ipa, ipb] {
        assert!(
            ip.to_string().starts_with(&format!("10.233.{octet}.")),
            "{ip}"
        );
        assert_ne!(ip, net.gateway(), "the gateway is the bridge's");
    }
    // The result's IPs are what eth0 inside each pod really carries.
    assert!(
        eth0_addrs(&a).contains(&format!("{ipa}/24")),
        "{}",
        eth0_addrs(&a)
    );
    assert!(
        eth0_addrs(&b).contains(&format!("{ipb}/24")),
        "{}",
        eth0_addrs(&b)
    );
    assert_eq!(net.allocated_ips(), {
        let mut v = vec![ipa, ipb];
        v.sort();
        v
    });
    assert!(host_link_exists(&net.bridge));

    // TCP from b to a across the bridge.
    let server = serve_once(&a, 7777, b"world");
    let reply = in_netns(&b.netns, move || {
        exchange(TcpStream::connect_timeout(
            &SocketAddr::new(ipa, 7777),
            Duration::from_secs(5),
        ))
    })
    .unwrap();
    assert_eq!(reply, b"world");
    assert_eq!(server.join().unwrap(), b"hello");

    net.cni.check(&a).await.unwrap();
    net.cni.teardown(&a).await.unwrap();
    net.cni.teardown(&b).await.unwrap();
    assert!(net.allocated_ips().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_pods_get_ips_and_reach_each_other_cni_1_0() {
    two_pods_get_ips_and_reach_each_other(11, "1.0.0").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_pods_get_ips_and_reach_each_other_cni_0_4() {
    two_pods_get_ips_and_reach_each_other(12, "0.4.0").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn teardown_releases_the_ip_removes_the_veth_and_is_idempotent() {
    let net = BridgeNet::new(13, "1.0.0", true);
    let pod = net.pod("td");
    let status = net.cni.setup(&pod).await.unwrap();
    let veth = host_veth(&status);
    assert!(host_link_exists(&veth));
    assert_eq!(net.allocated_ips(), status.ips);
    assert_eq!(
        std::fs::read_dir(net.dir.path().join("cache"))
            .unwrap()
            .count(),
        1
    );

    net.cni.teardown(&pod).await.unwrap();
    assert!(
        net.allocated_ips().is_empty(),
        "host-local still holds {:?}",
        net.allocated_ips()
    );
    assert!(!host_link_exists(&veth), "{veth} still exists");
    let inside = ip_in(&pod.netns, &["-o", "link", "show"]);
    assert!(!String::from_utf8_lossy(&inside.stdout).contains("eth0"));
    assert_eq!(
        std::fs::read_dir(net.dir.path().join("cache"))
            .unwrap()
            .count(),
        0
    );

    net.cni.teardown(&pod).await.unwrap();
    assert!(matches!(
        net.cni.check(&pod).await,
        Err(Error::NotSetUp { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn teardown_uses_the_cached_config_after_the_conf_dir_changed() {
    let net = BridgeNet::new(14, "1.0.0", true);
    let pod = net.pod("cc");
    let status = net.cni.setup(&pod).await.unwrap();
    let veth = host_veth(&status);
    assert_eq!(net.allocated_ips().len(), 1);

    // Another network takes its place: different name, bridge and IPAM dir.
    let conf_dir = net.dir.path().join("net.d");
    std::fs::remove_file(conf_dir.join("10-test.conflist")).unwrap();
    assert!(matches!(
        net.cni.network_status(),
        Err(Error::NoNetworkConfig { .. })
    ));
    net.write_conf(
        "05-other.conflist",
        &serde_json::json!({"cniVersion": "1.0.0", "name": "other", "plugins": [
            {"type": "bridge", "bridge": "crtnever0", "ipam": {"type": "host-local",
             "dataDir": net.dir.path().join("other-ipam"), "subnet": "10.233.254.0/24"}}]}),
    );
    assert_eq!(net.cni.network_status().unwrap(), "other");

    net.cni.teardown(&pod).await.unwrap();
    assert!(
        net.allocated_ips().is_empty(),
        "released in the original dataDir"
    );
    assert!(!host_link_exists(&veth));
    assert!(
        !host_link_exists("crtnever0"),
        "the new config was not used"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn teardown_after_the_netns_is_gone_still_releases_the_ip() {
    let net = BridgeNet::new(15, "1.0.0", false);
    let pod = net.pod("gone");
    let status = net.cni.setup(&pod).await.unwrap();
    let veth = host_veth(&status);
    // Remove the namespace first, as after a reboot or a removed pod: the veth dies with it.
    crius_net::NetNs::from_path(pod.netns.clone())
        .remove()
        .unwrap();
    // The kernel destroys a namespace (and its veth pair) asynchronously.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while host_link_exists(&veth) && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!host_link_exists(&veth), "{veth} outlived its namespace");
    assert_eq!(net.allocated_ips().len(), 1);
    net.cni.teardown(&pod).await.unwrap();
    assert!(net.allocated_ips().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_notices_a_missing_interface() {
    let net = BridgeNet::new(16, "1.0.0", false);
    let pod = net.pod("chk");
    net.cni.setup(&pod).await.unwrap();
    net.cni.check(&pod).await.unwrap();
    let out = ip_in(&pod.netns, &["link", "del", "eth0"]);
    assert!(out.status.success());
    let err = net.cni.check(&pod).await.unwrap_err();
    assert!(
        matches!(err, Error::PluginFailed { ref plugin, .. } if plugin == "bridge"),
        "{err}"
    );
    net.cni.teardown(&pod).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_twice_is_refused() {
    let net = BridgeNet::new(17, "1.0.0", false);
    let pod = net.pod("twice");
    net.cni.setup(&pod).await.unwrap();
    let err = net.cni.setup(&pod).await.unwrap_err();
    assert!(matches!(err, Error::AlreadySetUp { .. }), "{err}");
    assert_eq!(net.allocated_ips().len(), 1);
    net.cni.teardown(&pod).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_port_reaches_the_pod_through_portmap() {
    let net = BridgeNet::new(18, "1.0.0", true);
    let mut pod = net.pod("pm");
    let host_port =
        30000 + (u16::from_str_radix(&common::unique_tag()[..3], 16).unwrap_or(0) % 2000);
    pod.port_mappings = vec![
        PortMapping {
            protocol: Protocol::Tcp,
            container_port: 8080,
            host_port,
            host_ip: "127.0.0.1".to_string(),
        },
        // Declared but not published: must be ignored.
        PortMapping {
            protocol: Protocol::Tcp,
            container_port: 9090,
            host_port: 0,
            host_ip: String::new(),
        },
    ];
    let status = net.cni.setup(&pod).await.unwrap();
    let pod_ip = status.ips[0];
    let nat = common::run("iptables", &["-w", "-t", "nat", "-S"]);
    assert!(
        nat.contains(&format!("{pod_ip}:8080")),
        "no DNAT rule to the pod in:\n{nat}"
    );

    let server = serve_once(&pod, 8080, b"viahp");
    let target = SocketAddr::new(IpAddr::from([127, 0, 0, 1]), host_port);
    let reply = tokio::task::spawn_blocking(move || {
        exchange(TcpStream::connect_timeout(&target, Duration::from_secs(5)))
    })
    .await
    .unwrap();
    assert_eq!(reply, b"viahp");
    assert_eq!(server.join().unwrap(), b"hello");

    net.cni.teardown(&pod).await.unwrap();
    let nat = common::run("iptables", &["-w", "-t", "nat", "-S"]);
    assert!(
        !nat.contains(&format!("{pod_ip}:8080")),
        "DNAT rule left after teardown:\n{nat}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dual_stack_pod_gets_v4_and_v6() {
    let net = BridgeNet::new(20, "1.0.0", false);
    let mut conf = net.conflist("1.0.0", false);
    conf["plugins"][0]["ipam"]["ranges"] = serde_json::json!([
        [{"subnet": "10.233.20.0/24"}],
        [{"subnet": "fd00:233:20::/64"}]
    ]);
    conf["plugins"][0]["ipam"]["routes"] = serde_json::json!([]);
    net.write_conf("10-test.conflist", &conf);
    let pod = net.pod("ds");
    let status = net.cni.setup(&pod).await.unwrap();
    assert_eq!(status.ips.len(), 2, "{}", status.result);
    assert!(status.ips.iter().any(|ip| ip.is_ipv4()));
    let v6 = status
        .ips
        .iter()
        .find(|ip| ip.is_ipv6())
        .expect("a v6 address");
    assert!(v6.to_string().starts_with("fd00:233:20::"), "{v6}");
    let out = ip_in(&pod.netns, &["-o", "-6", "addr", "show", "dev", "eth0"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("{v6}/64")));
    net.cni.teardown(&pod).await.unwrap();
    assert!(net.allocated_ips().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bandwidth_capability_shapes_the_pod_traffic() {
    let net = BridgeNet::new(21, "1.0.0", false);
    let mut conf = net.conflist("1.0.0", false);
    conf["plugins"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"type": "bandwidth", "capabilities": {"bandwidth": true}}));
    net.write_conf("10-test.conflist", &conf);
    let mut pod = net.pod("bw");
    pod.bandwidth = Some(crius_net::Bandwidth {
        ingress_rate: 1_000_000,
        ingress_burst: 0,
        egress_rate: 2_000_000,
        egress_burst: 0,
    });
    let status = net.cni.setup(&pod).await.unwrap();
    let veth = host_veth(&status);
    let qdisc = common::run("tc", &["qdisc", "show", "dev", &veth]);
    assert!(qdisc.contains("tbf"), "no rate limit on {veth}:\n{qdisc}");
    let ifb: Vec<String> = status.result["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["name"].as_str())
        .filter(|n| n.starts_with("bwp"))
        .map(str::to_string)
        .collect();
    assert_eq!(ifb.len(), 1, "egress shaping device in {}", status.result);
    assert!(host_link_exists(&ifb[0]));
    net.cni.teardown(&pod).await.unwrap();
    assert!(!host_link_exists(&ifb[0]), "{} left after teardown", ifb[0]);
}

/// Latency figures for the report: `cargo test -p crius-net --test cni_bridge -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement, not a check"]
async fn measure_netns_and_cni_latency() {
    // CRIUS_TEST_LOG=debug shows each plugin call with its duration.
    if let Ok(filter) = std::env::var("CRIUS_TEST_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_writer(std::io::stderr)
            .try_init();
    }
    let net = BridgeNet::new(22, "1.0.0", true);
    let pins = net.dir.path().join("netns");
    let (mut create, mut setup, mut teardown, mut remove) = (vec![], vec![], vec![], vec![]);
    for i in 0..20 {
        let t = std::time::Instant::now();
        let ns = crius_net::NetNs::create(&pins, &format!("m{i}")).unwrap();
        create.push(t.elapsed());
        let mut pod = PodNetwork {
            id: format!("m{i}{}", common::unique_tag()),
            name: "m".into(),
            namespace: "bench".into(),
            uid: "u".into(),
            netns: ns.path().to_path_buf(),
            ..Default::default()
        };
        pod.port_mappings = vec![PortMapping {
            protocol: Protocol::Tcp,
            container_port: 80,
            host_port: 32000 + i,
            host_ip: String::new(),
        }];
        let t = std::time::Instant::now();
        net.cni.setup(&pod).await.unwrap();
        setup.push(t.elapsed());
        let t = std::time::Instant::now();
        net.cni.teardown(&pod).await.unwrap();
        teardown.push(t.elapsed());
        let t = std::time::Instant::now();
        ns.remove().unwrap();
        remove.push(t.elapsed());
    }
    for (what, mut v) in [
        ("NetNs::create", create),
        ("setup bridge+host-local+portmap", setup),
        ("teardown", teardown),
        ("NetNs::remove", remove),
    ] {
        v.sort();
        eprintln!(
            "{what}: median {:?} p90 {:?}",
            v[v.len() / 2],
            v[v.len() * 9 / 10]
        );
    }
}
