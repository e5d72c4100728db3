//! crius-net: pod network namespaces and CNI.
//!
//! [`NetNs`] makes and pins network namespaces (loopback up over netlink) and
//! [`in_netns`] runs code inside one; [`Cni`] runs the CNI plugin chain for a pod and
//! caches what it did so teardown works even after the CNI config changed.

pub mod cni;
mod error;
mod link;
pub mod netns;

pub use cni::{
    is_safe_cni_arg, Bandwidth, Cni, CniConfig, NetworkStatus, PodNetwork, PortMapping, Protocol,
    POD_IFNAME,
};
pub use error::{Error, Result};
pub use netns::{in_netns, pin_thread_namespace, NetNs};

/// Entry points for the fuzz targets in `fuzz/` and their replay test. None may panic,
/// whatever the input.
#[doc(hidden)]
pub mod fuzzing {
    use std::path::Path;

    use crate::cni::{conf, result};

    /// A plugin's ADD output: checked as a result crius can chain, then its pod IPs read.
    pub fn cni_result(data: &[u8]) {
        if let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) {
            if result::validate(&value).is_ok() {
                let _ = result::pod_ips(&value, "eth0", "/run/netns/x");
            }
        }
    }

    /// A network config file (`.conflist`, or a `.conf` holding one plugin).
    pub fn cni_config(data: &[u8]) {
        let _ = conf::parse_file(Path::new("/etc/cni/net.d/10-fuzz.conflist"), data);
        let _ = conf::parse_file(Path::new("/etc/cni/net.d/10-fuzz.conf"), data);
    }
}
