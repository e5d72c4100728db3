//! What plugins are told and what happens when they misbehave: small CNI plugins written
//! as shell scripts record their environment and stdin, fail, or hang; real plugins
//! (bridge, host-local) show that failures unwind (run as root).

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{BridgeNet, DEBIAN_CNI_DIR};
use crius_net::{Bandwidth, Cni, CniConfig, Error, NetNs, PodNetwork, PortMapping, Protocol};
use serde_json::{json, Value};

/// A conf dir, plugin dir, cache and netns pin dir of its own; pins removed in Drop.
struct Scratch {
    dir: tempfile::TempDir,
    cni: Cni,
    pins: Vec<NetNs>,
}

impl Scratch {
    fn new() -> Scratch {
        assert!(nix::unistd::geteuid().is_root(), "run as root");
        let dir = tempfile::tempdir().unwrap();
        for sub in ["net.d", "bin", "cache", "netns", "log"] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        let cni = Cni::new(Self::config(dir.path(), Duration::from_secs(20)));
        Scratch {
            dir,
            cni,
            pins: Vec::new(),
        }
    }

    fn config(root: &Path, timeout: Duration) -> CniConfig {
        CniConfig {
            conf_dir: root.join("net.d"),
            plugin_dirs: vec![root.join("bin"), PathBuf::from(DEBIAN_CNI_DIR)],
            cache_dir: root.join("cache"),
            timeout,
        }
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("log")
    }

    fn write_conf(&self, file: &str, conf: &Value) {
        std::fs::write(self.dir.path().join("net.d").join(file), conf.to_string()).unwrap();
    }

    fn write_plugin(&self, name: &str, script: &str) {
        use std::os::unix::fs::PermissionsExt;
        let path = self.dir.path().join("bin").join(name);
        std::fs::write(&path, script).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    /// A plugin that records its env and stdin per command, logs the call, and prints
    /// `result` on ADD.
    fn write_recorder(&self, name: &str, result: &Value) {
        let log = self.log().display().to_string();
        self.write_plugin(
            name,
            &format!(
                "#!/bin/sh\nd='{log}'\ncat > \"$d/{name}.$CNI_COMMAND.stdin\"\nenv | grep '^CNI_' | sort > \"$d/{name}.$CNI_COMMAND.env\"\necho \"{name} $CNI_COMMAND\" >> \"$d/calls\"\nif [ \"$CNI_COMMAND\" = ADD ]; then printf '%s' '{result}'; fi\n"
            ),
        );
    }

    fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(self.log().join("calls"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn stdin(&self, plugin: &str, command: &str) -> Value {
        let path = self.log().join(format!("{plugin}.{command}.stdin"));
        serde_json::from_slice(&std::fs::read(&path).unwrap_or_else(|e| panic!("{path:?}: {e}")))
            .unwrap()
    }

    fn env(&self, plugin: &str, command: &str) -> String {
        std::fs::read_to_string(self.log().join(format!("{plugin}.{command}.env"))).unwrap()
    }

    fn cache_entries(&self) -> usize {
        std::fs::read_dir(self.dir.path().join("cache"))
            .unwrap()
            .count()
    }

    fn pod(&mut self, name: &str) -> PodNetwork {
        let id = format!("{name}{}", common::unique_tag());
        let ns = NetNs::create(&self.dir.path().join("netns"), &id).unwrap();
        let pod = PodNetwork {
            id,
            name: name.to_string(),
            namespace: "team-a".to_string(),
            uid: "7d0c-uid".to_string(),
            netns: ns.path().to_path_buf(),
            ..Default::default()
        };
        self.pins.push(ns);
        pod
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        for ns in &self.pins {
            let _ = ns.remove();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugins_get_cni_env_runtime_config_and_chained_results() {
    let mut s = Scratch::new();
    let mut pod = s.pod("rec");
    pod.port_mappings = vec![
        PortMapping {
            protocol: Protocol::Udp,
            container_port: 53,
            host_port: 1053,
            host_ip: String::new(),
        },
        PortMapping {
            protocol: Protocol::Tcp,
            container_port: 80,
            host_port: 0,
            host_ip: String::new(),
        },
    ];
    pod.bandwidth = Some(Bandwidth {
        ingress_rate: 8000,
        ingress_burst: 16000,
        egress_rate: 0,
        egress_burst: 0,
    });
    pod.ips = vec!["10.9.0.9".to_string()];
    pod.cgroup_parent = "/kubepods/podx".to_string();
    let netns = pod.netns.display().to_string();

    let r1 = json!({"cniVersion": "1.0.0", "ips": [{"address": "10.1.0.4/24"}]});
    let r2 = json!({
        "cniVersion": "1.0.0",
        "interfaces": [{"name": "host0"}, {"name": "eth0", "sandbox": netns}],
        "ips": [
            {"interface": 0, "address": "192.168.7.1/24"},
            {"interface": 1, "address": "10.1.0.5/24"},
            {"interface": 1, "address": "fd00::5/64"}
        ]
    });
    s.write_recorder("rec1", &r1);
    s.write_recorder("rec2", &r2);
    s.write_conf(
        "10-rec.conflist",
        &json!({"cniVersion": "1.0.0", "name": "recnet", "plugins": [
            {"type": "rec1", "capabilities": {"portMappings": true, "bandwidth": true, "ips": true, "cgroupPath": true}},
            {"type": "rec2", "capabilities": {"portMappings": false}, "extra": 1}
        ]}),
    );
    assert_eq!(s.cni.network_status().unwrap(), "recnet");

    let status = s.cni.setup(&pod).await.unwrap();
    assert_eq!(status.result, r2);
    assert_eq!(
        status.ips,
        vec![
            "10.1.0.5".parse::<std::net::IpAddr>().unwrap(),
            "fd00::5".parse().unwrap()
        ]
    );
    assert_eq!(s.calls(), ["rec1 ADD", "rec2 ADD"]);

    let env = s.env("rec1", "ADD");
    let bin = s.dir.path().join("bin");
    for line in [
        "CNI_COMMAND=ADD".to_string(),
        format!("CNI_CONTAINERID={}", pod.id),
        format!("CNI_NETNS={netns}"),
        "CNI_IFNAME=eth0".to_string(),
        format!("CNI_PATH={}:{DEBIAN_CNI_DIR}", bin.display()),
        format!(
            "CNI_ARGS=IgnoreUnknown=1;K8S_POD_NAMESPACE=team-a;K8S_POD_NAME=rec;K8S_POD_INFRA_CONTAINER_ID={};K8S_POD_UID=7d0c-uid",
            pod.id
        ),
    ] {
        assert!(env.lines().any(|l| l == line), "{line:?} missing in:\n{env}");
    }

    let in1 = s.stdin("rec1", "ADD");
    assert_eq!(in1["name"], "recnet");
    assert_eq!(in1["cniVersion"], "1.0.0");
    assert!(in1.get("prevResult").is_none());
    assert_eq!(
        in1["runtimeConfig"],
        json!({
            "portMappings": [{"hostPort": 1053, "containerPort": 53, "protocol": "udp"}],
            "bandwidth": {"ingressRate": 8000, "ingressBurst": 16000},
            "ips": ["10.9.0.9"],
            "cgroupPath": "/kubepods/podx"
        })
    );
    let in2 = s.stdin("rec2", "ADD");
    assert_eq!(
        in2["prevResult"], r1,
        "ADD chains each result into the next plugin"
    );
    assert_eq!(in2["extra"], 1);
    assert!(in2.get("runtimeConfig").is_none());

    s.cni.check(&pod).await.unwrap();
    assert_eq!(s.calls()[2..], ["rec1 CHECK", "rec2 CHECK"]);
    assert_eq!(s.stdin("rec1", "CHECK")["prevResult"], r2);

    // The conf dir changes completely; DEL still goes to the cached plugins.
    std::fs::remove_file(s.dir.path().join("net.d/10-rec.conflist")).unwrap();
    s.cni.teardown(&pod).await.unwrap();
    assert_eq!(s.calls()[4..], ["rec2 DEL", "rec1 DEL"]);
    let del1 = s.stdin("rec1", "DEL");
    assert_eq!(del1["prevResult"], r2, "DEL gets the cached final result");
    assert_eq!(del1["runtimeConfig"], in1["runtimeConfig"]);
    assert!(s.env("rec1", "DEL").contains(&format!("CNI_NETNS={netns}")));
    assert_eq!(s.cache_entries(), 0);

    s.cni.teardown(&pod).await.unwrap();
    assert_eq!(s.calls().len(), 6, "a second teardown has nothing to do");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_plugin_conf_is_wrapped_and_0_4_results_are_read() {
    let mut s = Scratch::new();
    let pod = s.pod("single");
    let netns = pod.netns.display().to_string();
    let r = json!({
        "cniVersion": "0.4.0",
        "interfaces": [{"name": "eth0", "sandbox": netns}],
        "ips": [{"version": "4", "interface": 0, "address": "10.4.0.2/16", "gateway": "10.4.0.1"}]
    });
    s.write_recorder("solo", &r);
    s.write_conf(
        "10-solo.conf",
        &json!({"cniVersion": "0.4.0", "name": "solonet", "type": "solo", "mtu": 1400}),
    );
    assert_eq!(s.cni.network_status().unwrap(), "solonet");
    let status = s.cni.setup(&pod).await.unwrap();
    assert_eq!(
        status.ips,
        vec!["10.4.0.2".parse::<std::net::IpAddr>().unwrap()]
    );
    let stdin = s.stdin("solo", "ADD");
    assert_eq!(stdin["name"], "solonet");
    assert_eq!(stdin["mtu"], 1400);
    s.cni.teardown(&pod).await.unwrap();
    assert_eq!(s.calls(), ["solo ADD", "solo DEL"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn teardown_passes_an_empty_netns_once_the_namespace_is_gone() {
    let mut s = Scratch::new();
    let pod = s.pod("gone");
    s.write_recorder("rec", &json!({"cniVersion": "1.0.0"}));
    s.write_conf(
        "10.conflist",
        &json!({"cniVersion": "1.0.0", "name": "n", "plugins": [{"type": "rec"}]}),
    );
    s.cni.setup(&pod).await.unwrap();
    NetNs::from_path(pod.netns.clone()).remove().unwrap();
    s.cni.teardown(&pod).await.unwrap();
    let env = s.env("rec", "DEL");
    assert!(env.lines().any(|l| l == "CNI_NETNS="), "{env}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_plugin_binary_makes_the_network_not_ready() {
    let mut s = Scratch::new();
    s.write_conf(
        "10.conflist",
        &json!({"cniVersion": "1.0.0", "name": "n", "plugins": [{"type": "loopback"}, {"type": "crius-absent"}]}),
    );
    let err = s.cni.network_status().unwrap_err();
    assert!(
        matches!(err, Error::PluginNotFound { ref plugin, .. } if plugin == "crius-absent"),
        "{err}"
    );
    let pod = s.pod("absent");
    let err = s.cni.setup(&pod).await.unwrap_err();
    assert!(matches!(err, Error::PluginNotFound { .. }), "{err}");
    assert_eq!(s.cache_entries(), 0, "nothing ran, nothing cached");

    // reload points at a dir whose config is complete.
    let other = tempfile::tempdir().unwrap();
    std::fs::write(
        other.path().join("99.conflist"),
        json!({"cniVersion": "1.0.0", "name": "lo-only", "plugins": [{"type": "loopback"}]})
            .to_string(),
    )
    .unwrap();
    let mut cfg = s.cni.config();
    cfg.conf_dir = other.path().to_path_buf();
    s.cni.reload(cfg);
    assert_eq!(s.cni.network_status().unwrap(), "lo-only");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_crash_without_cni_error_is_reported_with_its_output() {
    let mut s = Scratch::new();
    let pod = s.pod("crash");
    s.write_plugin(
        "crasher",
        "#!/bin/sh\ncat >/dev/null\nif [ \"$CNI_COMMAND\" = ADD ]; then echo 'panic: nil map' >&2; exit 2; fi\nexit 0\n",
    );
    s.write_conf(
        "10.conflist",
        &json!({"cniVersion": "1.0.0", "name": "n", "plugins": [{"type": "crasher"}]}),
    );
    let err = s.cni.setup(&pod).await.unwrap_err();
    match &err {
        Error::PluginExited {
            plugin,
            command,
            output,
            ..
        } => {
            assert_eq!(plugin, "crasher");
            assert_eq!(*command, "ADD");
            assert!(output.contains("panic: nil map"), "{output}");
        }
        other => panic!("unexpected {other}"),
    }
    assert!(err.to_string().contains(&pod.id));
    assert_eq!(s.cache_entries(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_plugin_is_killed_at_the_timeout() {
    let mut s = Scratch::new();
    let pod = s.pod("hang");
    let log = s.log().display().to_string();
    s.write_plugin(
        "sleeper",
        &format!(
            "#!/bin/sh\ncat >/dev/null\nif [ \"$CNI_COMMAND\" = ADD ]; then echo $$ > '{log}/pid'; sleep 60 & echo $! > '{log}/child'; wait; fi\nexit 0\n"
        ),
    );
    s.write_conf(
        "10.conflist",
        &json!({"cniVersion": "1.0.0", "name": "n", "plugins": [{"type": "sleeper"}]}),
    );
    s.cni
        .reload(Scratch::config(s.dir.path(), Duration::from_millis(800)));

    let started = Instant::now();
    let err = s.cni.setup(&pod).await.unwrap_err();
    assert!(
        matches!(err, Error::PluginTimeout { ref plugin, .. } if plugin == "sleeper"),
        "{err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );

    // Both the plugin and the process it started are gone (or at most unreaped zombies).
    let deadline = Instant::now() + Duration::from_secs(5);
    for file in ["pid", "child"] {
        let pid = std::fs::read_to_string(s.log().join(file))
            .unwrap()
            .trim()
            .to_string();
        let stat = format!("/proc/{pid}/stat");
        loop {
            let alive = std::fs::read_to_string(&stat)
                .map(|st| {
                    st.rsplit(')')
                        .next()
                        .is_some_and(|rest| !rest.trim_start().starts_with('Z'))
                })
                .unwrap_or(false);
            if !alive {
                break;
            }
            assert!(Instant::now() < deadline, "{file} {pid} still running");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    assert_eq!(
        s.cache_entries(),
        0,
        "the unwind DEL succeeded, so nothing is cached"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_plugin_unwinds_the_plugins_before_it() {
    let net = BridgeNet::new(19, "1.0.0", false);
    let log = net.dir.path().join("fail.log");
    net.write_plugin(
        "crius-fail",
        &format!(
            "#!/bin/sh\ncat >/dev/null\necho \"$CNI_COMMAND\" >> '{}'\nif [ \"$CNI_COMMAND\" = ADD ]; then\n  echo '{{\"cniVersion\":\"1.0.0\",\"code\":100,\"msg\":\"refusing on purpose\",\"details\":\"test\"}}'\n  exit 1\nfi\nexit 0\n",
            log.display()
        ),
    );
    let mut conf = net.conflist("1.0.0", false);
    conf["plugins"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "crius-fail"}));
    net.write_conf("10-test.conflist", &conf);

    let pod = net.pod("fail");
    let err = net.cni.setup(&pod).await.unwrap_err();
    match &err {
        Error::PluginFailed { plugin, code, msg } => {
            assert_eq!(plugin, "crius-fail");
            assert_eq!(*code, 100);
            assert_eq!(msg, "refusing on purpose: test");
        }
        other => panic!("unexpected {other}"),
    }
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "ADD\nDEL\n");
    assert!(
        net.allocated_ips().is_empty(),
        "IP not released: {:?}",
        net.allocated_ips()
    );
    assert!(
        net.bridge_ports().is_empty(),
        "veth left: {:?}",
        net.bridge_ports()
    );
    let inside = common::ip_in(&pod.netns, &["-o", "link", "show"]);
    assert!(!String::from_utf8_lossy(&inside.stdout).contains("eth0"));
    assert_eq!(
        std::fs::read_dir(net.dir.path().join("cache"))
            .unwrap()
            .count(),
        0
    );
}
