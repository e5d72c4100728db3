//! Checks on requests that need no I/O: every bad field is refused with `InvalidArgument`
//! before anything is created.

use std::path::{Component, Path};

use crius_cri_api::v1 as cri;

use crate::error::{Error, Result};

fn invalid(msg: String) -> Error {
    Error::InvalidArgument(msg)
}

/// A string that will become part of a path or a file must carry no NUL.
fn no_nul(field: &str, value: &str) -> Result<()> {
    if value.contains('\0') {
        return Err(invalid(format!("{field} {value:?} contains a NUL byte")));
    }
    Ok(())
}

/// True if the path has a `..` component.
pub fn has_dotdot(path: &str) -> bool {
    Path::new(path)
        .components()
        .any(|c| matches!(c, Component::ParentDir))
}

/// Checks the pod config fields the core relies on. `cgroup_root` bounds the cgroup parent.
pub fn pod_config(config: &cri::PodSandboxConfig, cgroup_root: &str) -> Result<()> {
    let md = config
        .metadata
        .as_ref()
        .ok_or_else(|| invalid("pod sandbox config has no metadata".into()))?;
    if md.name.is_empty() {
        return Err(invalid("pod sandbox metadata.name is empty".into()));
    }
    for (field, value) in [
        ("metadata.name", &md.name),
        ("metadata.namespace", &md.namespace),
        ("metadata.uid", &md.uid),
        ("hostname", &config.hostname),
        ("log_directory", &config.log_directory),
    ] {
        no_nul(field, value)?;
    }
    for (field, value) in [
        ("metadata.name", &md.name),
        ("metadata.namespace", &md.namespace),
        ("metadata.uid", &md.uid),
    ] {
        if !crius_net::is_safe_cni_arg(value) {
            return Err(invalid(format!(
                "{field} {value:?} must not contain ';' or '=' (it is passed to CNI plugins \
                 in CNI_ARGS)"
            )));
        }
    }
    if !config.hostname.is_empty() {
        hostname(&config.hostname)?;
    }
    if !config.log_directory.is_empty() {
        if !config.log_directory.starts_with('/') {
            return Err(invalid(format!(
                "log_directory {:?} must be an absolute path",
                config.log_directory
            )));
        }
        if has_dotdot(&config.log_directory) {
            return Err(invalid(format!(
                "log_directory {:?} must not contain '..'",
                config.log_directory
            )));
        }
    }
    if let Some(dns) = &config.dns_config {
        dns_config(dns)?;
    }
    crate::bandwidth::from_annotations(&config.annotations)?;
    for pm in &config.port_mappings {
        port_mapping(pm)?;
    }
    if let Some(linux) = &config.linux {
        cgroup_parent(&linux.cgroup_parent, cgroup_root)?;
    }
    user_namespace(config)?;
    Ok(())
}

/// The kernel takes at most this many lines in a uid_map or gid_map.
const MAX_ID_MAPPINGS: usize = 340;

/// A user namespace is the host's (no options, or mode NODE, with no mappings) or the
/// pod's own (mode POD) with uid and gid mappings that map container root, do not overlap
/// on either side, stay within the 32-bit id space and never map the host's root; a pod
/// of its own user namespace uses no host network, PID or IPC namespace (the kernel
/// would not let it manage them). Modes CONTAINER and TARGET do not exist for users.
fn user_namespace(config: &cri::PodSandboxConfig) -> Result<()> {
    let Some(ns) = config
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .and_then(|s| s.namespace_options.as_ref())
    else {
        return Ok(());
    };
    let Some(userns) = &ns.userns_options else {
        return Ok(());
    };
    match cri::NamespaceMode::try_from(userns.mode) {
        Ok(cri::NamespaceMode::Node) => {
            if !userns.uids.is_empty() || !userns.gids.is_empty() {
                return Err(invalid(
                    "userns_options: mode NODE (the host's user namespace) takes no uid or \
                     gid mappings"
                        .into(),
                ));
            }
            Ok(())
        }
        Ok(cri::NamespaceMode::Pod) => {
            for (what, mode) in [("network", ns.network), ("pid", ns.pid), ("ipc", ns.ipc)] {
                if mode == cri::NamespaceMode::Node as i32 {
                    return Err(invalid(format!(
                        "userns_options: a pod with a user namespace of its own (mode POD) \
                         cannot use the host's {what} namespace"
                    )));
                }
            }
            id_mappings("uids", &userns.uids)?;
            id_mappings("gids", &userns.gids)
        }
        _ => Err(invalid(format!(
            "userns_options: mode {} is not supported; a pod uses the host's user namespace \
             (NODE) or one of its own (POD)",
            cri::NamespaceMode::try_from(userns.mode)
                .map(|m| m.as_str_name().to_string())
                .unwrap_or_else(|_| userns.mode.to_string())
        ))),
    }
}

/// One side (uids or gids) of a pod's user namespace mappings.
fn id_mappings(field: &str, maps: &[cri::IdMapping]) -> Result<()> {
    if maps.is_empty() {
        return Err(invalid(format!(
            "userns_options.{field}: mode POD needs at least one mapping"
        )));
    }
    if maps.len() > MAX_ID_MAPPINGS {
        return Err(invalid(format!(
            "userns_options.{field}: {} mappings; the kernel takes at most {MAX_ID_MAPPINGS}",
            maps.len()
        )));
    }
    // u32::MAX is the invalid id (-1): no range may reach it.
    let end = |start: u32, len: u32| u64::from(start) + u64::from(len);
    for m in maps {
        let shown = format!(
            "container {} host {} length {}",
            m.container_id, m.host_id, m.length
        );
        if m.length == 0 {
            return Err(invalid(format!(
                "userns_options.{field}: mapping ({shown}) has length 0"
            )));
        }
        if end(m.container_id, m.length) > u64::from(u32::MAX)
            || end(m.host_id, m.length) > u64::from(u32::MAX)
        {
            return Err(invalid(format!(
                "userns_options.{field}: mapping ({shown}) goes past id {}",
                u32::MAX - 1
            )));
        }
        if m.host_id == 0 {
            return Err(invalid(format!(
                "userns_options.{field}: mapping ({shown}) maps the host's root (id 0) into \
                 the pod"
            )));
        }
    }
    let overlap = |a: u32, alen: u32, b: u32, blen: u32| {
        u64::from(a) < end(b, blen) && u64::from(b) < end(a, alen)
    };
    for (i, a) in maps.iter().enumerate() {
        for b in &maps[i + 1..] {
            let side = if overlap(a.container_id, a.length, b.container_id, b.length) {
                "container"
            } else if overlap(a.host_id, a.length, b.host_id, b.length) {
                "host"
            } else {
                continue;
            };
            return Err(invalid(format!(
                "userns_options.{field}: mappings (container {} host {} length {}) and \
                 (container {} host {} length {}) overlap on the {side} side",
                a.container_id, a.host_id, a.length, b.container_id, b.host_id, b.length
            )));
        }
    }
    if !maps.iter().any(|m| m.container_id == 0 && m.length > 0) {
        return Err(invalid(format!(
            "userns_options.{field}: container id 0 (root) is not mapped"
        )));
    }
    Ok(())
}

/// A hostname is written to /etc/hostname and /etc/hosts and set with sethostname(2):
/// it must be a DNS name (RFC 1123 labels of letters, digits and inner '-', joined by
/// dots), which also keeps out '/', whitespace, newlines and other control characters.
fn hostname(name: &str) -> Result<()> {
    // HOST_NAME_MAX: sethostname(2) would refuse a longer name, late and with EINVAL.
    if name.len() > 64 {
        return Err(invalid(format!(
            "hostname {name:?} is {} bytes long; at most 64 are allowed",
            name.len()
        )));
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if !name.split('.').all(label_ok) {
        return Err(invalid(format!(
            "hostname {name:?} is not a valid DNS name (RFC 1123: labels of letters, digits \
             and inner '-', 1 to 63 long, joined by '.')"
        )));
    }
    Ok(())
}

/// Each DNS server, search domain and option becomes one word of resolv.conf: whitespace
/// or a control character would split it or start a line of its own.
fn dns_config(dns: &cri::DnsConfig) -> Result<()> {
    for (field, values) in [
        ("dns_config.servers", &dns.servers),
        ("dns_config.searches", &dns.searches),
        ("dns_config.options", &dns.options),
    ] {
        if let Some(bad) = values
            .iter()
            .find(|v| v.is_empty() || v.chars().any(|c| c.is_whitespace() || c.is_control()))
        {
            return Err(invalid(format!(
                "{field} entry {bad:?} must be one word, without whitespace or control characters"
            )));
        }
    }
    Ok(())
}

/// A mapping with a host port must name real ports: clamping would forward a different
/// port, and the portmap plugin would refuse a zero one late, after the pod's netns is up.
fn port_mapping(pm: &cri::PortMapping) -> Result<()> {
    if !(0..=65535).contains(&pm.host_port) {
        return Err(invalid(format!(
            "port mapping host_port {} is not in 0..65535 (0 maps no host port)",
            pm.host_port
        )));
    }
    if pm.host_port != 0 && !(1..=65535).contains(&pm.container_port) {
        return Err(invalid(format!(
            "port mapping container_port {} (for host_port {}) is not in 1..65535",
            pm.container_port, pm.host_port
        )));
    }
    Ok(())
}

/// A cgroup parent must be clean and lie under the configured root. Systemd slice names
/// ("kubepods-besteffort.slice") are checked for path tricks only.
pub fn cgroup_parent(parent: &str, root: &str) -> Result<()> {
    if parent.is_empty() {
        return Ok(());
    }
    no_nul("cgroup_parent", parent)?;
    if has_dotdot(parent) {
        return Err(invalid(format!(
            "cgroup_parent {parent:?} must not contain '..'"
        )));
    }
    if parent.ends_with(".slice") && !parent.contains('/') {
        return Ok(());
    }
    let root = root.trim_end_matches('/');
    let inside = root.is_empty()
        || parent == root
        || parent
            .strip_prefix(root)
            .is_some_and(|rest| rest.starts_with('/'));
    if !parent.starts_with('/') || !inside {
        return Err(invalid(format!(
            "cgroup_parent {parent:?} is outside the configured cgroup root {:?}",
            if root.is_empty() { "/" } else { root }
        )));
    }
    Ok(())
}

/// Checks the container config fields the core relies on.
pub fn container_config(config: &cri::ContainerConfig) -> Result<()> {
    let md = config
        .metadata
        .as_ref()
        .ok_or_else(|| invalid("container config has no metadata".into()))?;
    if md.name.is_empty() {
        return Err(invalid("container metadata.name is empty".into()));
    }
    no_nul("metadata.name", &md.name)?;
    let image = config
        .image
        .as_ref()
        .map(|i| i.image.as_str())
        .unwrap_or("");
    if image.is_empty() {
        return Err(invalid(format!("container {:?} names no image", md.name)));
    }
    if let Some(sc) = config
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
    {
        if sc.run_as_group.is_some() && sc.run_as_user.is_none() && sc.run_as_username.is_empty() {
            return Err(invalid(format!(
                "container {:?} sets run_as_group without run_as_user or run_as_username",
                md.name
            )));
        }
    }
    for kv in &config.envs {
        env_var(&md.name, kv)?;
    }
    if cri::Signal::try_from(config.stop_signal).is_err() {
        return Err(invalid(format!(
            "container {:?}: stop_signal {} is not a CRI signal",
            md.name, config.stop_signal
        )));
    }
    no_nul("log_path", &config.log_path)?;
    if config.log_path.starts_with('/') || has_dotdot(&config.log_path) {
        return Err(invalid(format!(
            "log_path {:?} must be relative to the pod's log directory and must not contain '..'",
            config.log_path
        )));
    }
    for m in &config.mounts {
        no_nul("mount container_path", &m.container_path)?;
        no_nul("mount host_path", &m.host_path)?;
        if !m.container_path.starts_with('/') || has_dotdot(&m.container_path) {
            return Err(invalid(format!(
                "mount container_path {:?} must be absolute and must not contain '..'",
                m.container_path
            )));
        }
        if has_dotdot(&m.host_path) {
            return Err(invalid(format!(
                "mount host_path {:?} must not contain '..'",
                m.host_path
            )));
        }
        image_mount(m)?;
        // Status does not advertise mount_options, so none may come.
        if !m.mount_options.is_empty() {
            return Err(invalid(format!(
                "mount {:?}: mount_options {:?} are not supported by crius (Status reports \
                 features.mount_options false)",
                m.container_path, m.mount_options
            )));
        }
    }
    Ok(())
}

/// An image volume is read-only. A sub path only comes with one and stays relative,
/// with no `..` (links inside the image are resolved within it when it is mounted).
fn image_mount(m: &cri::Mount) -> Result<()> {
    // An empty ImageSpec is no image volume (as the kubelet's nil).
    let image = m.image.as_ref().map(|i| i.image.as_str()).unwrap_or("");
    // The kubelet always asks for image volumes read-only; the CRI says a writable one
    // is refused rather than quietly made read-only.
    if !image.is_empty() && !m.readonly {
        return Err(invalid(format!(
            "mount {:?}: image volume of {image} must be readonly",
            m.container_path
        )));
    }
    if m.image_sub_path.is_empty() {
        return Ok(());
    }
    if image.is_empty() {
        return Err(invalid(format!(
            "mount {:?}: image_sub_path {:?} without an image",
            m.container_path, m.image_sub_path
        )));
    }
    no_nul("mount image_sub_path", &m.image_sub_path)?;
    if m.image_sub_path.starts_with('/') || has_dotdot(&m.image_sub_path) {
        return Err(invalid(format!(
            "mount {:?}: image_sub_path {:?} must be relative and must not contain '..'",
            m.container_path, m.image_sub_path
        )));
    }
    Ok(())
}

/// An env value is bytes on the CRI wire, but the OCI spec holds env as JSON strings and
/// execve ends each entry at a NUL: the value must be UTF-8 without NUL.
fn env_var(container: &str, kv: &cri::KeyValue) -> Result<()> {
    no_nul("env name", &kv.key)?;
    match std::str::from_utf8(&kv.value) {
        Ok(v) if !v.contains('\0') => Ok(()),
        Ok(_) => Err(invalid(format!(
            "container {container:?}: env {:?} has a NUL byte in its value",
            kv.key
        ))),
        Err(e) => Err(invalid(format!(
            "container {container:?}: env {:?} is not UTF-8 ({e})",
            kv.key
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str) -> cri::PodSandboxConfig {
        cri::PodSandboxConfig {
            metadata: Some(cri::PodSandboxMetadata {
                name: name.into(),
                namespace: "ns".into(),
                uid: "uid".into(),
                attempt: 0,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn pod_config_rejects_each_bad_field() {
        assert!(pod_config(&pod("p"), "/").is_ok());
        assert!(pod_config(&pod(""), "/").is_err());
        assert!(pod_config(&cri::PodSandboxConfig::default(), "/").is_err());
        let mut c = pod("p");
        c.hostname = "../etc".into();
        assert!(pod_config(&c, "/").is_err());
        let mut c = pod("p");
        c.hostname = "a\0b".into();
        assert!(pod_config(&c, "/").is_err());
        let mut c = pod("p");
        c.log_directory = "/var/log/pods/../../etc".into();
        assert!(pod_config(&c, "/").is_err());
        let mut c = pod("p");
        c.log_directory = "relative/dir".into();
        assert!(pod_config(&c, "/").is_err());
        let mut c = pod("p");
        c.hostname = format!("{}.{}", "h".repeat(31), "h".repeat(32));
        assert!(pod_config(&c, "/").is_ok());
        c.hostname = format!("{}.{}", "h".repeat(32), "h".repeat(32));
        assert!(pod_config(&c, "/").is_err());
    }

    fn userns(mode: cri::NamespaceMode, uids: &[(u32, u32, u32)]) -> cri::PodSandboxConfig {
        let maps: Vec<cri::IdMapping> = uids
            .iter()
            .map(|&(container_id, host_id, length)| cri::IdMapping {
                host_id,
                container_id,
                length,
            })
            .collect();
        let mut c = pod("p");
        c.linux = Some(cri::LinuxPodSandboxConfig {
            security_context: Some(cri::LinuxSandboxSecurityContext {
                namespace_options: Some(cri::NamespaceOption {
                    userns_options: Some(cri::UserNamespace {
                        mode: mode as i32,
                        uids: maps.clone(),
                        gids: maps,
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        });
        c
    }

    #[test]
    fn user_namespace_mappings_are_checked() {
        use cri::NamespaceMode::{Container, Node, Pod, Target};
        type Maps<'a> = &'a [(u32, u32, u32)];
        let cases: &[(cri::NamespaceMode, Maps, Option<&str>)] = &[
            (Pod, &[(0, 65536, 65536)], None),
            (Pod, &[(0, 1000, 100000)], None),
            (Pod, &[(0, 65536, 1000), (1000, 200000, 1000)], None),
            (Node, &[], None),
            (Pod, &[], Some("at least one mapping")),
            (
                Node,
                &[(0, 65536, 65536)],
                Some("takes no uid or gid mappings"),
            ),
            (Container, &[], Some("mode CONTAINER is not supported")),
            (Target, &[], Some("mode TARGET is not supported")),
            (
                Pod,
                &[(1, 1000, 100000)],
                Some("container id 0 (root) is not mapped"),
            ),
            (
                Pod,
                &[(0, 1000, 100000), (0, 2000, 100000)],
                Some("overlap on the container side"),
            ),
            (
                Pod,
                &[(0, 1000, 100), (100, 1050, 100)],
                Some("overlap on the host side"),
            ),
            (Pod, &[(0, 0, 65536)], Some("maps the host's root")),
            (Pod, &[(0, 65536, 0)], Some("length 0")),
            (Pod, &[(0, u32::MAX - 10, 65536)], Some("goes past id")),
            (Pod, &[(u32::MAX - 10, 1000, 65536)], Some("goes past id")),
        ];
        for (mode, maps, want) in cases {
            let result = pod_config(&userns(*mode, maps), "/");
            match (want, result) {
                (None, Ok(())) => {}
                (Some(want), Err(e)) => {
                    let msg = e.to_string();
                    assert!(msg.contains(want), "{mode:?} {maps:?}: {msg}");
                    assert!(matches!(e, Error::InvalidArgument(_)), "{e:?}");
                }
                (want, got) => panic!("{mode:?} {maps:?}: want {want:?}, got {got:?}"),
            }
        }
        let too_many: Vec<(u32, u32, u32)> = (0..341).map(|i| (i, 1000 + i, 1)).collect();
        assert!(pod_config(&userns(Pod, &too_many), "/").is_err());
        let mut c = userns(Pod, &[(0, 65536, 65536)]);
        let ns = c.linux.as_mut().unwrap().security_context.as_mut().unwrap();
        ns.namespace_options.as_mut().unwrap().network = Node as i32;
        let err = pod_config(&c, "/").unwrap_err().to_string();
        assert!(err.contains("host's network namespace"), "{err}");
    }

    #[test]
    fn hostname_must_be_a_dns_name() {
        let cases: &[(&str, bool)] = &[
            ("", true),
            ("web", true),
            ("web-0", true),
            ("0web", true),
            ("Web-0", true),
            ("web-0.svc.cluster", true),
            (&"a".repeat(63), true),
            ("web\nlocalhost", false),
            ("web 0", false),
            ("web\t0", false),
            ("web_0", false),
            ("-web", false),
            ("web-", false),
            ("web..svc", false),
            (".web", false),
            ("web.", false),
            ("../../etc", false),
            ("a/b", false),
            ("a;b", false),
            ("h\u{e9}te", false),
            (&"a".repeat(64), false),
        ];
        for (name, ok) in cases {
            let mut c = pod("p");
            c.hostname = name.to_string();
            let result = pod_config(&c, "/");
            assert_eq!(result.is_ok(), *ok, "hostname {name:?}: {result:?}");
            if let Err(e) = result {
                assert!(e.to_string().contains("hostname"), "{e}");
            }
        }
    }

    #[test]
    fn values_for_cni_args_carry_no_separator() {
        let cases: &[(&str, &str, &str, bool)] = &[
            ("web-0", "default", "0f1e-uid", true),
            ("web;IP=10.0.0.99", "default", "u", false),
            ("web", "ns=evil", "u", false),
            ("web", "default;K8S_POD_NAME=x", "u", false),
            ("web", "default", "u;IP=1.2.3.4", false),
            ("web", "default", "u=v", false),
        ];
        for (name, namespace, uid, ok) in cases {
            let mut c = pod(name);
            let md = c.metadata.as_mut().unwrap();
            md.namespace = namespace.to_string();
            md.uid = uid.to_string();
            let result = pod_config(&c, "/");
            assert_eq!(result.is_ok(), *ok, "{name} {namespace} {uid}: {result:?}");
            if let Err(e) = result {
                let msg = e.to_string();
                assert!(
                    msg.contains("metadata.") && msg.contains("CNI_ARGS"),
                    "{msg}"
                );
            }
        }
    }

    #[test]
    fn dns_entries_must_be_single_words() {
        let with = |servers: &[&str], searches: &[&str], options: &[&str]| {
            let mut c = pod("p");
            let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect();
            c.dns_config = Some(cri::DnsConfig {
                servers: v(servers),
                searches: v(searches),
                options: v(options),
            });
            pod_config(&c, "/")
        };
        assert!(with(&["10.0.0.10"], &["svc.local"], &["ndots:5"]).is_ok());
        assert!(with(&["10.0.0.10\nnameserver 6.6.6.6"], &[], &[]).is_err());
        assert!(with(&["10.0.0.10"], &["a b"], &[]).is_err());
        assert!(with(&[], &[], &["ndots:5\r"]).is_err());
        assert!(with(&[""], &[], &[]).is_err());
    }

    #[test]
    fn port_mappings_must_name_real_ports() {
        let with = |container_port: i32, host_port: i32| {
            let mut c = pod("p");
            c.port_mappings.push(cri::PortMapping {
                protocol: 0,
                container_port,
                host_port,
                host_ip: String::new(),
            });
            pod_config(&c, "/")
        };
        assert!(with(80, 8080).is_ok());
        assert!(with(80, 0).is_ok());
        assert!(with(0, 0).is_ok(), "no host port: nothing is mapped");
        assert!(with(80, 70000).is_err());
        assert!(with(80, -1).is_err());
        assert!(with(-1, 8080).is_err());
        assert!(with(0, 8080).is_err());
        assert!(with(65536, 8080).is_err());
    }

    #[test]
    fn cgroup_parent_must_stay_under_the_root() {
        assert!(cgroup_parent("", "/kubepods").is_ok());
        assert!(cgroup_parent("/kubepods/besteffort/pod1", "/kubepods").is_ok());
        assert!(cgroup_parent("/kubepods", "/kubepods").is_ok());
        assert!(cgroup_parent("/kubepodsX/a", "/kubepods").is_err());
        assert!(cgroup_parent("/other", "/kubepods").is_err());
        assert!(cgroup_parent("/kubepods/../other", "/kubepods").is_err());
        assert!(cgroup_parent("/anything", "/").is_ok());
        assert!(cgroup_parent("kubepods-besteffort.slice", "/kubepods").is_ok());
    }

    #[test]
    fn container_config_rejects_escaping_paths() {
        let good = cri::ContainerConfig {
            metadata: Some(cri::ContainerMetadata {
                name: "c".into(),
                attempt: 0,
            }),
            image: Some(cri::ImageSpec {
                image: "busybox".into(),
                ..Default::default()
            }),
            log_path: "c/0.log".into(),
            ..Default::default()
        };
        assert!(container_config(&good).is_ok());
        let mut c = good.clone();
        c.log_path = "../../etc/shadow".into();
        assert!(container_config(&c).is_err());
        let mut c = good.clone();
        c.log_path = "/etc/shadow".into();
        assert!(container_config(&c).is_err());
        let mut c = good.clone();
        c.mounts.push(cri::Mount {
            container_path: "/data/../../etc".into(),
            host_path: "/tmp".into(),
            ..Default::default()
        });
        assert!(container_config(&c).is_err());
        let mut c = good.clone();
        c.image = None;
        assert!(container_config(&c).is_err());
        let env = |value: &[u8]| {
            let mut c = good.clone();
            c.envs.push(cri::KeyValue {
                key: "K".into(),
                value: value.to_vec(),
            });
            container_config(&c)
        };
        assert!(env("grüß=1".as_bytes()).is_ok());
        let err = env(b"\xff\xfe").unwrap_err().to_string();
        assert!(err.contains("\"K\" is not UTF-8"), "{err}");
        assert!(env(b"a\0b").is_err());
        let mount = |image: &str, sub: &str, options: &[&str]| {
            let mut c = good.clone();
            c.mounts.push(cri::Mount {
                container_path: "/vol".into(),
                image: Some(cri::ImageSpec {
                    image: image.into(),
                    ..Default::default()
                }),
                image_sub_path: sub.into(),
                mount_options: options.iter().map(|o| o.to_string()).collect(),
                readonly: true,
                ..Default::default()
            });
            container_config(&c)
        };
        assert!(mount("img", "", &[]).is_ok());
        let mut c = good.clone();
        c.mounts.push(cri::Mount {
            container_path: "/vol".into(),
            image: Some(cri::ImageSpec {
                image: "img".into(),
                ..Default::default()
            }),
            ..Default::default()
        });
        let err = container_config(&c).unwrap_err().to_string();
        assert!(err.contains("must be readonly"), "{err}");
        assert!(mount("img", "srv/www", &[]).is_ok());
        assert!(mount("img", "/srv", &[]).is_err());
        assert!(mount("img", "srv/../../etc", &[]).is_err());
        assert!(mount("img", "a\0b", &[]).is_err());
        let err = mount("", "srv", &[]).unwrap_err().to_string();
        assert!(err.contains("without an image"), "{err}");
        let err = mount("img", "", &["noexec"]).unwrap_err().to_string();
        assert!(err.contains("mount_options"), "{err}");
        let mut c = good.clone();
        c.stop_signal = cri::Signal::Sigrtmax as i32;
        assert!(container_config(&c).is_ok());
        c.stop_signal = 66;
        let err = container_config(&c).unwrap_err().to_string();
        assert!(err.contains("stop_signal 66"), "{err}");
        let mut c = good.clone();
        c.linux = Some(cri::LinuxContainerConfig {
            security_context: Some(cri::LinuxContainerSecurityContext {
                run_as_group: Some(cri::Int64Value { value: 1000 }),
                ..Default::default()
            }),
            ..Default::default()
        });
        assert!(container_config(&c).is_err(), "group without user");
        c.linux
            .as_mut()
            .unwrap()
            .security_context
            .as_mut()
            .unwrap()
            .run_as_user = Some(cri::Int64Value { value: 1000 });
        assert!(container_config(&c).is_ok());
    }
}
