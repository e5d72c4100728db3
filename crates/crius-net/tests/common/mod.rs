//! Shared setup for the integration tests: a private bridge network with its own subnet,
//! host-local IPAM state in a temp dir, and cleanup of everything in Drop.
//!
//! Needs root and Debian's containernetworking-plugins (/usr/lib/cni).

#![allow(dead_code)]

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crius_net::{in_netns, Cni, CniConfig, NetNs, PodNetwork};
use serde_json::{json, Value};

/// Where Debian installs the reference plugins.
pub const DEBIAN_CNI_DIR: &str = "/usr/lib/cni";

/// A short random-enough hex tag for names that must not clash between tests and runs.
pub fn unique_tag() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let mix = nanos
        ^ (std::process::id() << 12)
        ^ COUNTER
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(0x9e37_79b9);
    format!("{:05x}", mix & 0xf_ffff)
}

/// Fails the test with a useful message when its prerequisites are missing.
pub fn require_root_and_plugins() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "crius-net integration tests must run as root"
    );
    for plugin in ["bridge", "host-local", "loopback", "portmap"] {
        assert!(
            Path::new(DEBIAN_CNI_DIR).join(plugin).exists(),
            "missing {DEBIAN_CNI_DIR}/{plugin}: apt-get install -y containernetworking-plugins"
        );
    }
}

/// Runs a host command and returns its stdout; panics with its stderr on failure.
pub fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `ip ARGS` inside the netns at `ns` (the child inherits the entered namespace).
pub fn ip_in(ns: &Path, args: &[&str]) -> std::process::Output {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    in_netns(ns, move || Command::new("ip").args(&args).output())
        .expect("enter netns")
        .expect("run ip")
}

/// Whether a link of that name exists in the host namespace.
pub fn host_link_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

/// A private bridge network for one test.
pub struct BridgeNet {
    pub dir: tempfile::TempDir,
    pub bridge: String,
    pub network: String,
    /// The third octet of 10.233.X.0/24.
    pub octet: u8,
    pub cni: Cni,
    netns: Mutex<Vec<NetNs>>,
    pods: Mutex<Vec<PodNetwork>>,
    forward_rule: Vec<String>,
}

impl BridgeNet {
    /// A network `10.233.<octet>.0/24` on a fresh bridge, written as 10-<network>.conflist
    /// with bridge + portmap (unless `with_portmap` is false) in CNI version `version`.
    pub fn new(octet: u8, version: &str, with_portmap: bool) -> BridgeNet {
        require_root_and_plugins();
        let tag = unique_tag();
        let bridge = format!("crt{octet}{tag}");
        let network = format!("crius-test-{tag}");
        let dir = tempfile::tempdir().expect("tempdir");
        for sub in ["net.d", "cache", "ipam", "netns", "bin"] {
            std::fs::create_dir_all(dir.path().join(sub)).expect("mkdir");
        }
        let forward_rule: Vec<String> =
            ["FORWARD", "-i", &bridge, "!", "-o", &bridge, "-j", "DROP"]
                .iter()
                .map(|s| s.to_string())
                .collect();
        let mut insert = vec!["-w".to_string(), "-I".to_string()];
        insert.extend(forward_rule.iter().cloned());
        let insert: Vec<&str> = insert.iter().map(String::as_str).collect();
        run("iptables", &insert);

        let cni = Cni::new(CniConfig {
            conf_dir: dir.path().join("net.d"),
            plugin_dirs: vec![dir.path().join("bin"), PathBuf::from(DEBIAN_CNI_DIR)],
            cache_dir: dir.path().join("cache"),
            timeout: Duration::from_secs(30),
        });
        let net = BridgeNet {
            dir,
            bridge,
            network,
            octet,
            cni,
            netns: Mutex::new(Vec::new()),
            pods: Mutex::new(Vec::new()),
            forward_rule,
        };
        let conf = net.conflist(version, with_portmap);
        net.write_conf("10-test.conflist", &conf);
        net
    }

    /// The host-local data dir (where allocated IPs are recorded as files).
    pub fn ipam_dir(&self) -> PathBuf {
        self.dir.path().join("ipam")
    }

    /// The conflist of this network.
    pub fn conflist(&self, version: &str, with_portmap: bool) -> Value {
        let mut plugins = vec![json!({
            "type": "bridge",
            "bridge": self.bridge,
            "isGateway": true,
            "ipMasq": false,
            "hairpinMode": true,
            "ipam": {
                "type": "host-local",
                "dataDir": self.ipam_dir(),
                "ranges": [[{"subnet": format!("10.233.{}.0/24", self.octet)}]],
                "routes": [{"dst": format!("10.233.{}.0/24", self.octet)}]
            }
        })];
        if with_portmap {
            plugins.push(
                json!({"type": "portmap", "capabilities": {"portMappings": true}, "snat": true}),
            );
        }
        json!({"cniVersion": version, "name": self.network, "plugins": plugins})
    }

    /// Writes a file into the conf dir.
    pub fn write_conf(&self, file: &str, conf: &Value) {
        std::fs::write(
            self.dir.path().join("net.d").join(file),
            serde_json::to_vec_pretty(conf).expect("json"),
        )
        .expect("write conflist");
    }

    /// Writes an executable script into the test's own plugin dir (searched first).
    pub fn write_plugin(&self, name: &str, script: &str) {
        use std::os::unix::fs::PermissionsExt;
        let path = self.dir.path().join("bin").join(name);
        std::fs::write(&path, script).expect("write plugin");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }

    /// A fresh pinned netns and the pod that uses it.
    pub fn pod(&self, name: &str) -> PodNetwork {
        let id = format!("{name}{}", unique_tag());
        let ns = NetNs::create(&self.dir.path().join("netns"), &id).expect("create netns");
        let pod = PodNetwork {
            id,
            name: name.to_string(),
            namespace: "crius-test".to_string(),
            uid: format!("uid-{name}"),
            netns: ns.path().to_path_buf(),
            ..Default::default()
        };
        self.netns.lock().expect("lock").push(ns);
        self.pods.lock().expect("lock").push(pod.clone());
        pod
    }

    /// The IPs host-local has on record for this network (one file per IP).
    pub fn allocated_ips(&self) -> Vec<IpAddr> {
        let dir = self.ipam_dir().join(&self.network);
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Vec::new();
        };
        let mut ips: Vec<IpAddr> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
            .collect();
        ips.sort();
        ips
    }

    /// The host-side veth names attached to the bridge.
    pub fn bridge_ports(&self) -> Vec<String> {
        let out = Command::new("ip")
            .args(["-o", "link", "show", "master", &self.bridge])
            .output()
            .expect("ip link");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split(": ").nth(1))
            .map(|n| n.split('@').next().unwrap_or(n).to_string())
            .collect()
    }

    /// The gateway address of the network (the bridge's address).
    pub fn gateway(&self) -> IpAddr {
        format!("10.233.{}.1", self.octet).parse().expect("ip")
    }
}

impl Drop for BridgeNet {
    fn drop(&mut self) {
        // DEL every pod still cached (releases IPs and portmap rules), on a runtime of
        // its own: Drop may run inside the test's runtime.
        let pods: Vec<PodNetwork> =
            std::mem::take(&mut *self.pods.lock().unwrap_or_else(|p| p.into_inner()));
        let config = self.cni.config();
        let handle = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            let cni = Cni::new(config);
            for pod in pods {
                if let Err(e) = rt.block_on(cni.teardown(&pod)) {
                    eprintln!("cleanup: teardown {}: {e}", pod.id);
                }
            }
        });
        let _ = handle.join();
        for ns in self
            .netns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            if let Err(e) = ns.remove() {
                eprintln!("cleanup: {e}");
            }
        }
        for port in self.bridge_ports() {
            let _ = Command::new("ip").args(["link", "del", &port]).status();
        }
        if host_link_exists(&self.bridge) {
            let _ = Command::new("ip")
                .args(["link", "del", &self.bridge])
                .status();
        }
        let mut delete = vec!["-w".to_string(), "-D".to_string()];
        delete.extend(self.forward_rule.iter().cloned());
        let _ = Command::new("iptables").args(&delete).status();
    }
}
