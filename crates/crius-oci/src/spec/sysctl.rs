//! Pod sysctls: only namespaced ones, and only when the pod owns the namespace.

use std::collections::HashMap;

use crate::Error;

/// The namespace a sysctl lives in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SysctlNs {
    Ipc,
    Net,
}

/// The namespace of `name`, or None when the sysctl is node-wide.
fn namespace_of(name: &str) -> Option<SysctlNs> {
    if name.starts_with("net.") {
        return Some(SysctlNs::Net);
    }
    if name == "kernel.sem"
        || name.starts_with("kernel.shm")
        || name.starts_with("kernel.msg")
        || name.starts_with("fs.mqueue.")
    {
        return Some(SysctlNs::Ipc);
    }
    None
}

fn unsafe_sysctl(name: &str, reason: &str) -> Error {
    Error::UnsafeSysctl {
        name: name.to_string(),
        reason: reason.to_string(),
    }
}

/// Checks sysctls: namespaced only, net.* only with the pod's own netns, ipc
/// ones only with its own ipc ns. Names are dotted (`net.ipv4.ip_forward`);
/// slashes, empty segments, `..` and control characters are refused, so a
/// name can never address a file outside /proc/sys.
pub fn validate_sysctls(
    sysctls: &HashMap<String, String>,
    host_network: bool,
    host_ipc: bool,
) -> Result<(), Error> {
    // Sorted, so the error names the same sysctl every time.
    let mut names: Vec<&String> = sysctls.keys().collect();
    names.sort();
    for name in names {
        let value = &sysctls[name];
        check_name(name)?;
        if value.chars().any(|c| c.is_control() && c != '\t') {
            return Err(unsafe_sysctl(
                name,
                &format!("value {value:?} contains a control character"),
            ));
        }
        match namespace_of(name) {
            None => {
                return Err(unsafe_sysctl(
                    name,
                    "not a namespaced sysctl (only kernel.shm*, kernel.msg*, kernel.sem, fs.mqueue.* and net.* are)",
                ))
            }
            Some(SysctlNs::Net) if host_network => {
                return Err(unsafe_sysctl(
                    name,
                    "the pod uses the host network namespace",
                ))
            }
            Some(SysctlNs::Ipc) if host_ipc => {
                return Err(unsafe_sysctl(name, "the pod uses the host IPC namespace"))
            }
            Some(_) => {}
        }
    }
    Ok(())
}

fn check_name(name: &str) -> Result<(), Error> {
    if name.is_empty() {
        return Err(unsafe_sysctl(name, "empty name"));
    }
    if name.contains('/') {
        return Err(unsafe_sysctl(name, "name contains '/'"));
    }
    if name.split('.').any(str::is_empty) {
        return Err(unsafe_sysctl(name, "name has an empty segment"));
    }
    if !name
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-' | b'+' | b'@' | b':'))
    {
        return Err(unsafe_sysctl(
            name,
            "name contains a character outside [A-Za-z0-9._-+@:]",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(name: &str, value: &str) -> HashMap<String, String> {
        HashMap::from([(name.to_string(), value.to_string())])
    }

    #[test]
    fn sysctl_table() {
        // (name, value, host_network, host_ipc, accepted)
        let rows: &[(&str, &str, bool, bool, bool)] = &[
            ("kernel.shmmax", "1000000", false, false, true),
            ("kernel.shm_rmid_forced", "1", false, false, true),
            ("kernel.msgmax", "8192", false, false, true),
            ("kernel.sem", "250 32000 32 128", false, false, true),
            ("fs.mqueue.msg_max", "10", false, false, true),
            (
                "net.ipv4.ip_unprivileged_port_start",
                "0",
                false,
                false,
                true,
            ),
            ("net.core.somaxconn", "1024", false, true, true),
            ("kernel.shmmax", "1", true, false, true),
            // host namespaces
            ("kernel.shmmax", "1", false, true, false),
            ("fs.mqueue.msg_max", "10", false, true, false),
            ("net.ipv4.ip_forward", "1", true, false, false),
            // node-wide
            ("kernel.panic", "10", false, false, false),
            ("vm.overcommit_memory", "1", false, false, false),
            ("kernel.hostname", "x", false, false, false),
            ("fs.file-max", "10", false, false, false),
            // tricks
            ("net/ipv4/ip_forward", "1", false, false, false),
            ("net.ipv4..ip_forward", "1", false, false, false),
            ("net...", "1", false, false, false),
            ("net.ipv4.conf.all.forwarding\0", "1", false, false, false),
            ("net.core.somaxconn", "1\n2", false, false, false),
            ("net.core.somaxconn", "1\x002", false, false, false),
            ("", "1", false, false, false),
        ];
        for (name, value, hn, hi, ok) in rows {
            let got = validate_sysctls(&one(name, value), *hn, *hi);
            assert_eq!(
                got.is_ok(),
                *ok,
                "{name:?}={value:?} hn={hn} hi={hi}: {got:?}"
            );
            if let Err(e) = got {
                assert!(matches!(e, Error::UnsafeSysctl { .. }), "{e:?}");
            }
        }
    }

    #[test]
    fn error_names_the_sysctl_and_reason() {
        let err = validate_sysctls(&one("kernel.panic", "1"), false, false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"kernel.panic\""), "{err}");
        assert!(err.contains("not a namespaced sysctl"), "{err}");
        let err = validate_sysctls(&one("net.ipv4.ip_forward", "1"), true, false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("host network"), "{err}");
    }
}
