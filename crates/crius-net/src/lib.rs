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
pub use netns::{in_netns, NetNs};
