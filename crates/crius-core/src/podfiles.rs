//! The files every container of a pod shares: hostname, resolv.conf, hosts, and the shm tmpfs.

use std::fs;
use std::path::{Path, PathBuf};

use crius_cri_api::v1 as cri;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use tracing::debug;

use crate::error::{Error, Result};

/// The host's resolver config, used when the pod gives no DNSConfig.
const HOST_RESOLV_CONF: &str = "/etc/resolv.conf";
/// The host's hosts file, used for host-network pods.
const HOST_HOSTS: &str = "/etc/hosts";
/// The size of a pod's /dev/shm, as Docker and the CRI runtimes use.
const SHM_SIZE: &str = "size=65536k";

/// Paths of a pod's shared files.
#[derive(Debug, Clone)]
pub struct PodFiles {
    /// /etc/hostname for every container.
    pub hostname: PathBuf,
    /// /etc/resolv.conf for every container.
    pub resolv_conf: PathBuf,
    /// /etc/hosts for containers that get none from the kubelet.
    pub hosts: PathBuf,
}

impl PodFiles {
    /// The files' places in the pod's volatile dir.
    pub fn under(dir: &Path) -> Self {
        PodFiles {
            hostname: dir.join("hostname"),
            resolv_conf: dir.join("resolv.conf"),
            hosts: dir.join("hosts"),
        }
    }
}

/// The resolv.conf a DNSConfig asks for.
pub fn resolv_conf(dns: &cri::DnsConfig) -> String {
    let mut out = String::new();
    if !dns.searches.is_empty() {
        out.push_str(&format!("search {}\n", dns.searches.join(" ")));
    }
    for server in &dns.servers {
        out.push_str(&format!("nameserver {server}\n"));
    }
    if !dns.options.is_empty() {
        out.push_str(&format!("options {}\n", dns.options.join(" ")));
    }
    out
}

/// The hosts file of a pod with its own network.
pub fn hosts(hostname: &str, ips: &[String]) -> String {
    let mut out = String::from(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n",
    );
    if !hostname.is_empty() {
        for ip in ips {
            out.push_str(&format!("{ip}\t{hostname}\n"));
        }
    }
    out
}

/// The hostname a pod's containers see: the requested one, or the host's with host network.
pub fn pod_hostname(config: &cri::PodSandboxConfig, host_network: bool) -> String {
    if host_network || config.hostname.is_empty() {
        if host_network {
            return nix::unistd::gethostname()
                .ok()
                .and_then(|h| h.into_string().ok())
                .unwrap_or_default();
        }
        return config
            .metadata
            .as_ref()
            .map(|m| m.name.clone())
            .unwrap_or_default();
    }
    config.hostname.clone()
}

fn write(path: &Path, data: &str) -> Result<()> {
    fs::write(path, data).map_err(|e| Error::io("write", path, e))
}

/// Writes hostname, resolv.conf and hosts for a pod.
pub fn write_pod_files(
    files: &PodFiles,
    config: &cri::PodSandboxConfig,
    host_network: bool,
    ips: &[String],
) -> Result<()> {
    let hostname = pod_hostname(config, host_network);
    write(&files.hostname, &format!("{hostname}\n"))?;
    match &config.dns_config {
        Some(dns)
            if !dns.servers.is_empty() || !dns.searches.is_empty() || !dns.options.is_empty() =>
        {
            write(&files.resolv_conf, &resolv_conf(dns))?
        }
        _ => copy_host_file(HOST_RESOLV_CONF, &files.resolv_conf)?,
    }
    if host_network {
        copy_host_file(HOST_HOSTS, &files.hosts)
    } else {
        write_hosts(files, config, ips)
    }
}

/// Writes the hosts file of a pod with its own network: the pod's IPs map to its hostname.
/// The file is rewritten in place, so a bind mount of it (the pause's) sees the new text.
pub fn write_hosts(files: &PodFiles, config: &cri::PodSandboxConfig, ips: &[String]) -> Result<()> {
    write(&files.hosts, &hosts(&pod_hostname(config, false), ips))
}

fn copy_host_file(src: &str, dst: &Path) -> Result<()> {
    let data = fs::read(src).unwrap_or_default();
    fs::write(dst, data).map_err(|e| Error::io("write", dst, e))
}

/// Mounts the pod's /dev/shm tmpfs at `path`.
pub fn mount_shm(path: &Path) -> Result<()> {
    fs::create_dir_all(path).map_err(|e| Error::io("create shm dir", path, e))?;
    debug!(path = %path.display(), "mount shm tmpfs");
    mount(
        Some("shm"),
        path,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some(format!("mode=1777,{SHM_SIZE}").as_str()),
    )
    .map_err(|e| Error::io("mount shm tmpfs", path, e.into()))
}

/// Unmounts the pod's shm; succeeds if it is not mounted or gone.
pub fn unmount_shm(path: &Path) -> Result<()> {
    match umount2(path, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => Ok(()),
        Err(e) => Err(Error::io("unmount shm", path, e.into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_has_search_servers_and_options() {
        let dns = cri::DnsConfig {
            servers: vec!["10.0.0.10".into(), "10.0.0.11".into()],
            searches: vec!["ns.svc.cluster.local".into(), "cluster.local".into()],
            options: vec!["ndots:5".into()],
        };
        assert_eq!(
            resolv_conf(&dns),
            "search ns.svc.cluster.local cluster.local\nnameserver 10.0.0.10\nnameserver 10.0.0.11\noptions ndots:5\n"
        );
    }

    #[test]
    fn hosts_maps_each_pod_ip_to_the_hostname() {
        let h = hosts("web-0", &["10.85.0.5".into()]);
        assert!(h.starts_with("127.0.0.1\tlocalhost\n"));
        assert!(h.ends_with("10.85.0.5\tweb-0\n"));
    }

    #[test]
    fn hostname_falls_back_to_the_pod_name() {
        let mut c = cri::PodSandboxConfig {
            metadata: Some(cri::PodSandboxMetadata {
                name: "pod-a".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(pod_hostname(&c, false), "pod-a");
        c.hostname = "custom".into();
        assert_eq!(pod_hostname(&c, false), "custom");
    }
}
