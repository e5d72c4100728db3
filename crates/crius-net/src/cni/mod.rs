//! Pod networking through CNI plugins (spec 0.3.x, 0.4.0 and 1.x).
//!
//! The first network configuration in the config dir is run as a chain: ADD in order with
//! each plugin's result handed to the next as `prevResult`, DEL in reverse with the cached
//! final result. What ADD used is cached per pod, so teardown is immune to later edits
//! of the config dir.

mod cache;
pub(crate) mod conf;
mod invoke;
pub(crate) mod result;

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use tracing::{debug, info, warn, Instrument};

use crate::error::{Error, Result};
use crate::netns::is_nsfs;
use cache::CacheEntry;
use conf::NetworkConfigList;
pub use invoke::is_safe_cni_arg;
use invoke::{CallEnv, Command};

/// The interface name every pod gets for its network (CNI_IFNAME).
pub const POD_IFNAME: &str = "eth0";

/// Where CNI configuration, plugins and the per-pod cache live, and how long a plugin may run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CniConfig {
    /// Searched for *.conflist, *.conf and *.json; the first usable file by name wins.
    pub conf_dir: PathBuf,
    /// Searched in order for plugin binaries; also passed to plugins as CNI_PATH.
    pub plugin_dirs: Vec<PathBuf>,
    /// One file per pod with the config and result of its ADD.
    pub cache_dir: PathBuf,
    /// Upper bound for each single plugin call; the plugin is killed when it runs over.
    pub timeout: Duration,
}

impl Default for CniConfig {
    /// The usual locations: /etc/cni/net.d, /opt/cni/bin then Debian's /usr/lib/cni,
    /// a cache under /var/lib/crius (it must survive reboots so IPs can be released),
    /// and a 60 s plugin timeout.
    fn default() -> Self {
        CniConfig {
            conf_dir: PathBuf::from("/etc/cni/net.d"),
            plugin_dirs: vec![PathBuf::from("/opt/cni/bin"), PathBuf::from("/usr/lib/cni")],
            cache_dir: PathBuf::from("/var/lib/crius/cni/results"),
            timeout: Duration::from_secs(60),
        }
    }
}

/// Transport protocol of a port mapping.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// TCP, the CRI default.
    #[default]
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

impl Protocol {
    /// The name CNI's portMappings capability uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

/// A host port forwarded to a pod port (CRI PortMapping); passed to plugins with the
/// `portMappings` capability. Mappings with host_port 0 are container ports the kubelet
/// merely declares and are not forwarded.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMapping {
    /// Protocol of both ports.
    pub protocol: Protocol,
    /// Port the pod listens on.
    pub container_port: u16,
    /// Port opened on the host; 0 means not published.
    pub host_port: u16,
    /// Empty: all host addresses.
    pub host_ip: String,
}

/// The smallest token bucket crius gives a rate whose burst is not set: 64 KiB, in bits.
const DEFAULT_MIN_BURST_BITS: u64 = 64 * 1024 * 8;

/// Traffic shaping for the pod (kubernetes.io/ingress-bandwidth and egress-bandwidth), in
/// bits per second and bits; passed to plugins with the `bandwidth` capability.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bandwidth {
    /// Traffic into the pod, bits per second; 0 means unlimited.
    pub ingress_rate: u64,
    /// Burst into the pod, bits; 0 with a rate: 100 ms of the rate, at least 64 KiB.
    pub ingress_burst: u64,
    /// Traffic out of the pod, bits per second; 0 means unlimited.
    pub egress_rate: u64,
    /// Burst out of the pod, bits; 0 with a rate: 100 ms of the rate, at least 64 KiB.
    pub egress_burst: u64,
}

/// Everything about one pod that CNI plugins are told.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodNetwork {
    /// The sandbox id: CNI_CONTAINERID, K8S_POD_INFRA_CONTAINER_ID and the cache key.
    pub id: String,
    /// The pod's name (K8S_POD_NAME).
    pub name: String,
    /// The pod's Kubernetes namespace (K8S_POD_NAMESPACE).
    pub namespace: String,
    /// The pod's uid (K8S_POD_UID).
    pub uid: String,
    /// The pod's network namespace (CNI_NETNS). Teardown may leave it empty: the cached
    /// one is used, and a namespace that is gone is passed to plugins as empty.
    pub netns: PathBuf,
    /// Host ports to forward, for plugins with the `portMappings` capability.
    pub port_mappings: Vec<PortMapping>,
    /// Traffic shaping, for plugins with the `bandwidth` capability.
    pub bandwidth: Option<Bandwidth>,
    /// Requested pod IPs, for plugins with the `ips` capability.
    pub ips: Vec<String>,
    /// The pod's cgroup parent, for plugins with the `cgroupPath` capability.
    pub cgroup_parent: String,
}

/// What a successful setup produced.
#[derive(Clone, Debug, PartialEq)]
pub struct NetworkStatus {
    /// The pod's addresses (v4 and v6 when both), first is the primary one.
    pub ips: Vec<IpAddr>,
    /// The final CNI result, as the last plugin printed it.
    pub result: Value,
}

/// Runs the CNI plugin chain for pods. Cheap to share (`Arc<Cni>`); `reload` swaps the
/// dirs while calls are in flight, each call using the config it started with.
pub struct Cni {
    config: RwLock<CniConfig>,
}

impl std::fmt::Debug for Cni {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cni")
            .field("config", &self.config())
            .finish()
    }
}

impl Cni {
    /// A CNI runner for the given dirs; nothing is read until it is used.
    pub fn new(config: CniConfig) -> Self {
        Cni {
            config: RwLock::new(config),
        }
    }

    /// The config calls started now will use.
    pub fn config(&self) -> CniConfig {
        self.config
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Swaps the dirs and timeout (SIGHUP). Pods set up before keep their cached config.
    pub fn reload(&self, config: CniConfig) {
        info!(?config, "CNI configuration reloaded");
        *self
            .config
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = config;
    }

    /// Ok(network name) when a usable conflist exists; Err(reason) for Status' NetworkReady=false.
    ///
    /// Usable means: it parses, speaks a supported CNI version, and every plugin type it
    /// names has a binary in the plugin dirs.
    pub fn network_status(&self) -> Result<String> {
        let cfg = self.config();
        let list = conf::load_dir(&cfg.conf_dir)?;
        for plugin in &list.plugins {
            invoke::find_plugin(&plugin.plugin_type, &cfg.plugin_dirs)?;
        }
        Ok(list.name)
    }

    /// ADD through the chain; caches conflist + result under cache_dir.
    ///
    /// If a plugin fails, the plugins already run are DELeted in reverse so no IP, veth
    /// or port mapping is left behind, and the cache entry goes away with them (it stays,
    /// for a later teardown, only if that unwinding fails too).
    pub async fn setup(&self, pod: &PodNetwork) -> Result<NetworkStatus> {
        let started = Instant::now();
        let span =
            tracing::info_span!("cni", operation = "ADD", pod_id = %pod.id, otel.name = "cni ADD");
        let result = self.setup_chain(pod).instrument(span).await;
        crius_metrics::metrics().record_cni("ADD", started.elapsed());
        result
    }

    async fn setup_chain(&self, pod: &PodNetwork) -> Result<NetworkStatus> {
        validate_pod(pod, true)?;
        let started = Instant::now();
        let cfg = self.config();
        let list = conf::load_dir(&cfg.conf_dir)?;
        let binaries = list
            .plugins
            .iter()
            .map(|p| invoke::find_plugin(&p.plugin_type, &cfg.plugin_dirs))
            .collect::<Result<Vec<_>>>()?;
        if cache::read(&cfg.cache_dir, &pod.id)?.is_some() {
            return Err(Error::AlreadySetUp {
                pod: pod.id.clone(),
                path: cache::entry_path(&cfg.cache_dir, &pod.id),
            });
        }
        let netns = pod.netns.display().to_string();
        let runtime_args = runtime_args(pod);
        let mut entry = CacheEntry::new(
            &pod.id,
            POD_IFNAME,
            &netns,
            &pod.name,
            &pod.namespace,
            &pod.uid,
            list.raw.clone(),
            list.source.clone(),
            runtime_args.clone(),
        );
        // Recorded before the first plugin runs: a crash mid-ADD still leaves what DEL needs.
        cache::write(&cfg.cache_dir, &entry)?;
        crius_fault::point!("cni.add.cache_written");

        let env = call_env(&cfg, &entry, netns.clone());
        let mut prev: Option<Value> = None;
        let mut failure = None;
        for (i, (plugin, binary)) in list.plugins.iter().zip(&binaries).enumerate() {
            let stdin = conf::plugin_stdin(&list, plugin, prev.as_ref(), &runtime_args);
            let outcome = invoke::exec(
                Command::Add,
                &plugin.plugin_type,
                binary,
                &env,
                stdin.to_string().as_bytes(),
            )
            .await
            .and_then(|stdout| {
                parse_add_output(&plugin.plugin_type, &pod.id, &stdout, prev.take())
            });
            match outcome {
                Ok(result) => {
                    crius_fault::point!("cni.add.plugin_done");
                    prev = Some(result);
                }
                Err(err) => {
                    failure = Some((i, err));
                    break;
                }
            }
        }
        let outcome = match (failure, prev) {
            (Some((failed, err)), last_good) => Err((failed, err, last_good)),
            (None, Some(result)) => {
                entry.result = Some(result.clone());
                match cache::write(&cfg.cache_dir, &entry) {
                    Ok(()) => {
                        crius_fault::point!("cni.add.result_cached");
                        Ok(result)
                    }
                    Err(err) => Err((list.plugins.len() - 1, err, Some(result))),
                }
            }
            (None, None) => Err((
                0,
                Error::InvalidNetworkConfig {
                    path: list.source.clone(),
                    reason: "no plugins".to_string(),
                },
                None,
            )),
        };
        match outcome {
            Ok(result) => {
                let ips = result::pod_ips(&result, POD_IFNAME, &netns);
                info!(
                    pod_id = %pod.id,
                    network = %list.name,
                    ?ips,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "pod network set up"
                );
                Ok(NetworkStatus { ips, result })
            }
            Err((failed, err, last_good)) => {
                warn!(pod_id = %pod.id, network = %list.name, error = %err, "CNI ADD failed, unwinding");
                let del_env = CallEnv {
                    netns: netns_for_del(&netns),
                    ..env
                };
                match self
                    .del_chain(
                        &cfg,
                        &list,
                        failed + 1,
                        last_good.as_ref(),
                        &del_env,
                        &runtime_args,
                    )
                    .await
                {
                    Ok(()) => {
                        if let Err(e) = cache::remove(&cfg.cache_dir, &pod.id) {
                            warn!(pod_id = %pod.id, error = %e, "removing CNI cache after unwind");
                        }
                    }
                    Err(e) => {
                        warn!(pod_id = %pod.id, error = %e, "unwinding CNI ADD failed; cache kept for teardown")
                    }
                }
                Err(err)
            }
        }
    }

    /// DEL with the cached conflist + result; Ok if nothing cached/already gone.
    ///
    /// Every plugin is asked to DEL even when one fails (DEL is idempotent, so a retry
    /// is safe); the first error is returned and the cache entry is kept for that retry.
    pub async fn teardown(&self, pod: &PodNetwork) -> Result<()> {
        let started = Instant::now();
        let span =
            tracing::info_span!("cni", operation = "DEL", pod_id = %pod.id, otel.name = "cni DEL");
        let result = self.teardown_chain(pod).instrument(span).await;
        crius_metrics::metrics().record_cni("DEL", started.elapsed());
        result
    }

    async fn teardown_chain(&self, pod: &PodNetwork) -> Result<()> {
        validate_pod(pod, false)?;
        let started = Instant::now();
        let cfg = self.config();
        let Some(entry) = cache::read(&cfg.cache_dir, &pod.id)? else {
            debug!(pod_id = %pod.id, "no CNI cache entry, nothing to tear down");
            return Ok(());
        };
        let list = cached_list(&cfg, &entry)?;
        let netns = if pod.netns.as_os_str().is_empty() {
            entry.netns.clone()
        } else {
            pod.netns.display().to_string()
        };
        let env = call_env(&cfg, &entry, netns_for_del(&netns));
        self.del_chain(
            &cfg,
            &list,
            list.plugins.len(),
            entry.result.as_ref(),
            &env,
            &entry.runtime_args,
        )
        .await?;
        cache::remove(&cfg.cache_dir, &pod.id)?;
        info!(
            pod_id = %pod.id,
            network = %list.name,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "pod network torn down"
        );
        Ok(())
    }

    /// The ids of pods with a cached network (set up, or ADD interrupted), so restore
    /// after a restart can tear down the ones no pod record owns: `teardown` needs only
    /// the id, everything else comes from the cache.
    pub fn cached_pods(&self) -> Result<Vec<String>> {
        cache::list(&self.config().cache_dir)
    }

    /// CHECK through the chain with the cached config and result: Ok when every plugin
    /// agrees the pod's network is as ADD left it. Lists older than 0.4.0 (no CHECK) and
    /// lists with `disableCheck` pass without running anything.
    pub async fn check(&self, pod: &PodNetwork) -> Result<()> {
        validate_pod(pod, false)?;
        let cfg = self.config();
        let entry = cache::read(&cfg.cache_dir, &pod.id)?.ok_or_else(|| Error::NotSetUp {
            pod: pod.id.clone(),
        })?;
        let list = cached_list(&cfg, &entry)?;
        if list.disable_check || !conf::version_at_least(&list.cni_version, "0.4.0") {
            return Ok(());
        }
        let netns = if pod.netns.as_os_str().is_empty() {
            entry.netns.clone()
        } else {
            pod.netns.display().to_string()
        };
        let env = call_env(&cfg, &entry, netns);
        for plugin in &list.plugins {
            let binary = invoke::find_plugin(&plugin.plugin_type, &cfg.plugin_dirs)?;
            let stdin =
                conf::plugin_stdin(&list, plugin, entry.result.as_ref(), &entry.runtime_args);
            invoke::exec(
                Command::Check,
                &plugin.plugin_type,
                &binary,
                &env,
                stdin.to_string().as_bytes(),
            )
            .await?;
        }
        Ok(())
    }

    /// DEL for the first `count` plugins of `list`, last first; all are tried, the first
    /// error is returned.
    async fn del_chain(
        &self,
        cfg: &CniConfig,
        list: &NetworkConfigList,
        count: usize,
        prev_result: Option<&Value>,
        env: &CallEnv,
        runtime_args: &Map<String, Value>,
    ) -> Result<()> {
        let mut first_error = None;
        for plugin in list.plugins.iter().take(count).rev() {
            let outcome = match invoke::find_plugin(&plugin.plugin_type, &cfg.plugin_dirs) {
                Ok(binary) => {
                    let stdin = conf::plugin_stdin(list, plugin, prev_result, runtime_args);
                    invoke::exec(
                        Command::Del,
                        &plugin.plugin_type,
                        &binary,
                        env,
                        stdin.to_string().as_bytes(),
                    )
                    .await
                    .map(|_| ())
                }
                Err(e) => Err(e),
            };
            if let Err(err) = outcome {
                warn!(pod_id = %env.container_id, plugin = %plugin.plugin_type, error = %err, "CNI DEL failed");
                first_error.get_or_insert(err);
            }
            crius_fault::point!("cni.del.plugin_done");
        }
        match first_error {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }
}

/// The cached list, re-validated; a list that no longer validates is a corrupt cache.
fn cached_list(cfg: &CniConfig, entry: &CacheEntry) -> Result<NetworkConfigList> {
    conf::from_list(&entry.config_path, entry.config.clone()).map_err(|e| Error::CacheCorrupt {
        path: cache::entry_path(&cfg.cache_dir, &entry.container_id),
        reason: e.to_string(),
    })
}

/// The CNI_* values for one pod.
fn call_env(cfg: &CniConfig, entry: &CacheEntry, netns: String) -> CallEnv {
    CallEnv {
        container_id: entry.container_id.clone(),
        netns,
        if_name: entry.if_name.clone(),
        cni_path: invoke::join_dirs(&cfg.plugin_dirs),
        cni_args: invoke::cni_args(
            &entry.pod_namespace,
            &entry.pod_name,
            &entry.container_id,
            &entry.pod_uid,
        ),
        timeout: cfg.timeout,
    }
}

/// On DEL a netns that is gone (or a pin that no longer holds a namespace) is passed as
/// empty, which plugins treat as "nothing to clean inside"; a stale path would make them
/// fail instead.
fn netns_for_del(netns: &str) -> String {
    if !netns.is_empty() && is_nsfs(std::path::Path::new(netns)) {
        netns.to_string()
    } else {
        String::new()
    }
}

/// A plugin's ADD stdout as a result. Empty output passes the previous result on.
fn parse_add_output(plugin: &str, pod: &str, stdout: &[u8], prev: Option<Value>) -> Result<Value> {
    let invalid = |reason: String| Error::InvalidResult {
        plugin: plugin.to_string(),
        pod: pod.to_string(),
        reason,
    };
    if stdout.iter().all(u8::is_ascii_whitespace) {
        return prev.ok_or_else(|| invalid("empty output".to_string()));
    }
    let value: Value = serde_json::from_slice(stdout).map_err(|e| invalid(e.to_string()))?;
    result::validate(&value).map_err(invalid)?;
    Ok(value)
}

/// The runtimeConfig values this pod can offer, by capability name.
fn runtime_args(pod: &PodNetwork) -> Map<String, Value> {
    let mut args = Map::new();
    let mappings: Vec<Value> = pod
        .port_mappings
        .iter()
        .filter(|m| m.host_port != 0)
        .map(|m| {
            let mut v = json!({
                "hostPort": m.host_port,
                "containerPort": m.container_port,
                "protocol": m.protocol.as_str(),
            });
            if !m.host_ip.is_empty() {
                v["hostIP"] = Value::String(m.host_ip.clone());
            }
            v
        })
        .collect();
    if !mappings.is_empty() {
        args.insert("portMappings".to_string(), Value::Array(mappings));
    }
    if let Some(bw) = &pod.bandwidth {
        // The bandwidth plugin refuses a rate without a burst, and the kubelet's
        // annotations carry only rates. The burst is the token bucket of the plugin's tbf:
        // crius makes it 100 ms of the rate (at least 64 KiB, a large segment), so the rate
        // holds from the start. (containerd and CRI-O pass 4 Gbit or more: then the first
        // 512 MiB or more go through unshaped.)
        let burst = |rate: u64, burst: u64| {
            if burst > 0 {
                burst
            } else {
                (rate / 10).max(DEFAULT_MIN_BURST_BITS)
            }
        };
        let mut v = Map::new();
        if bw.ingress_rate > 0 {
            v.insert("ingressRate".into(), json!(bw.ingress_rate));
            v.insert(
                "ingressBurst".into(),
                json!(burst(bw.ingress_rate, bw.ingress_burst)),
            );
        }
        if bw.egress_rate > 0 {
            v.insert("egressRate".into(), json!(bw.egress_rate));
            v.insert(
                "egressBurst".into(),
                json!(burst(bw.egress_rate, bw.egress_burst)),
            );
        }
        if !v.is_empty() {
            args.insert("bandwidth".to_string(), Value::Object(v));
        }
    }
    if !pod.ips.is_empty() {
        args.insert("ips".to_string(), json!(pod.ips));
    }
    if !pod.cgroup_parent.is_empty() {
        args.insert("cgroupPath".to_string(), json!(pod.cgroup_parent));
    }
    args
}

/// Rejects pods whose fields cannot be passed safely: the id names a cache file, and
/// CNI_ARGS uses `;` and `=` as separators.
fn validate_pod(pod: &PodNetwork, for_setup: bool) -> Result<()> {
    let invalid = |reason: &str| Error::InvalidPodNetwork {
        pod: pod.id.clone(),
        reason: reason.to_string(),
    };
    if pod.id.is_empty()
        || pod.id.starts_with('.')
        || !pod
            .id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(invalid(
            "id must be non-empty letters, digits, '-', '_' or '.'",
        ));
    }
    if !for_setup {
        return Ok(());
    }
    if pod.netns.as_os_str().is_empty() {
        return Err(invalid("no network namespace"));
    }
    if !is_nsfs(&pod.netns) {
        return Err(Error::InvalidPodNetwork {
            pod: pod.id.clone(),
            reason: format!("{} is not a network namespace", pod.netns.display()),
        });
    }
    for (field, value) in [
        ("name", &pod.name),
        ("namespace", &pod.namespace),
        ("uid", &pod.uid),
    ] {
        if !invoke::is_safe_cni_arg(value) {
            return Err(Error::InvalidPodNetwork {
                pod: pod.id.clone(),
                reason: format!("{field} {value:?} contains ';', '=' or a NUL byte"),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod() -> PodNetwork {
        PodNetwork {
            id: "abc123".into(),
            name: "web".into(),
            namespace: "default".into(),
            uid: "uid-1".into(),
            // Our own namespace: a real nsfs file, no privileges needed.
            netns: PathBuf::from("/proc/self/ns/net"),
            ..Default::default()
        }
    }

    #[test]
    fn runtime_args_cover_each_capability() {
        let mut p = pod();
        assert!(runtime_args(&p).is_empty());
        p.port_mappings = vec![
            PortMapping {
                protocol: Protocol::Tcp,
                container_port: 80,
                host_port: 8080,
                host_ip: "127.0.0.1".into(),
            },
            PortMapping {
                protocol: Protocol::Udp,
                container_port: 53,
                host_port: 5353,
                host_ip: String::new(),
            },
            PortMapping {
                protocol: Protocol::Sctp,
                container_port: 9,
                host_port: 0,
                host_ip: String::new(),
            },
        ];
        p.bandwidth = Some(Bandwidth {
            ingress_rate: 1_000_000,
            ingress_burst: 0,
            egress_rate: 2_000_000,
            egress_burst: 64_000,
        });
        p.ips = vec!["10.0.0.9".into()];
        p.cgroup_parent = "/kubepods/besteffort/poduid-1".into();
        let args = runtime_args(&p);
        assert_eq!(
            Value::Object(args),
            json!({
                "portMappings": [
                    {"hostPort": 8080, "containerPort": 80, "protocol": "tcp", "hostIP": "127.0.0.1"},
                    {"hostPort": 5353, "containerPort": 53, "protocol": "udp"}
                ],
                "bandwidth": {"ingressRate": 1_000_000, "ingressBurst": 524_288, "egressRate": 2_000_000, "egressBurst": 64_000},
                "ips": ["10.0.0.9"],
                "cgroupPath": "/kubepods/besteffort/poduid-1"
            })
        );
    }

    #[test]
    fn zero_bandwidth_is_left_out() {
        let mut p = pod();
        p.bandwidth = Some(Bandwidth::default());
        assert!(runtime_args(&p).is_empty());
    }

    #[test]
    fn validates_pods() {
        assert!(validate_pod(&pod(), true).is_ok());
        for bad_id in ["", "../x", "a/b", ".hidden", "a;b"] {
            let p = PodNetwork {
                id: bad_id.into(),
                ..pod()
            };
            assert!(validate_pod(&p, false).is_err(), "{bad_id:?}");
        }
        let p = PodNetwork {
            name: "a;K8S_POD_NAME=b".into(),
            ..pod()
        };
        let err = validate_pod(&p, true).unwrap_err();
        assert!(err.to_string().contains("abc123"), "{err}");
        let p = PodNetwork {
            netns: PathBuf::new(),
            ..pod()
        };
        assert!(validate_pod(&p, true).is_err());
        assert!(validate_pod(&p, false).is_ok());
        let p = PodNetwork {
            netns: PathBuf::from("/etc/hostname"),
            ..pod()
        };
        let err = validate_pod(&p, true).unwrap_err();
        assert!(err.to_string().contains("not a network namespace"), "{err}");
    }

    #[test]
    fn empty_add_output_passes_previous_result_on() {
        let prev = json!({"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.2/24"}]});
        assert_eq!(
            parse_add_output("p", "pod", b"\n", Some(prev.clone())).unwrap(),
            prev
        );
        assert!(parse_add_output("p", "pod", b"", None).is_err());
        assert!(matches!(
            parse_add_output("p", "pod", b"{oops", None),
            Err(Error::InvalidResult { .. })
        ));
    }

    #[tokio::test]
    async fn teardown_without_cache_is_a_no_op() {
        let dir = tempfile::tempdir().unwrap();
        let cni = Cni::new(CniConfig {
            conf_dir: dir.path().join("net.d"),
            plugin_dirs: vec![dir.path().join("bin")],
            cache_dir: dir.path().join("cache"),
            timeout: Duration::from_secs(5),
        });
        cni.teardown(&pod()).await.unwrap();
        cni.teardown(&pod()).await.unwrap();
        assert!(matches!(
            cni.check(&pod()).await,
            Err(Error::NotSetUp { .. })
        ));
        let err = cni.network_status().unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "no CNI configuration found in {}",
                dir.path().join("net.d").display()
            )
        );
    }
}
