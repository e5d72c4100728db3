//! Capabilities: the default set, CRI add/drop (with "ALL"), privileged.

use std::str::FromStr;

use oci_spec::runtime::{Capabilities, Capability, LinuxCapabilities};

use crate::Error;

/// The capabilities a container gets when the CRI asks for nothing else
/// (the same set CRI-O grants by default).
pub const DEFAULT_CAPABILITIES: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "FSETID",
    "FOWNER",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "NET_BIND_SERVICE",
    "KILL",
];

/// Every capability by its bit number (capability.h), as far as this crate
/// knows them.
pub(crate) const ALL_CAPABILITIES: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// "cap_sys_admin", "CAP_SYS_ADMIN", "SYS_ADMIN" -> "SYS_ADMIN".
pub(crate) fn normalize(name: &str) -> String {
    let up = name.trim().to_ascii_uppercase();
    up.strip_prefix("CAP_").map(String::from).unwrap_or(up)
}

/// The capability names (without CAP_) whose bits are set in a hex mask
/// such as /proc/self/status's CapBnd.
pub(crate) fn caps_from_mask(mask: u64) -> Vec<String> {
    ALL_CAPABILITIES
        .iter()
        .enumerate()
        .filter(|(bit, _)| mask & (1u64 << bit) != 0)
        .map(|(_, n)| n.to_string())
        .collect()
}

/// The bounding set of this process (what a privileged container can get:
/// a capability we lack cannot be handed on).
pub(crate) fn current_bounding_set() -> Vec<String> {
    let mask = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapBnd:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        });
    match mask {
        Some(m) => caps_from_mask(m),
        None => ALL_CAPABILITIES.iter().map(|s| s.to_string()).collect(),
    }
}

fn check_known(name: &str, field: &str, container: &str) -> Result<String, Error> {
    let n = normalize(name);
    if ALL_CAPABILITIES.contains(&n.as_str()) {
        Ok(n)
    } else {
        Err(Error::UnknownCapability {
            name: name.to_string(),
            field: field.to_string(),
            container: container.to_string(),
        })
    }
}

/// The effective capability list (names without CAP_, in bit order) of a
/// container: `defaults`, then "ALL" in add (everything we hold) or in
/// drop (nothing), then each add, then each drop.
pub(crate) fn compute(
    defaults: &[String],
    add: &[String],
    drop: &[String],
    available: &[String],
    container: &str,
) -> Result<Vec<String>, Error> {
    let is_all = |s: &String| s.trim().eq_ignore_ascii_case("ALL");
    let mut set: Vec<String> = Vec::new();
    for d in defaults {
        set.push(check_known(d, "default_capabilities", container)?);
    }
    if add.iter().any(is_all) {
        set = available.to_vec();
    }
    if drop.iter().any(is_all) {
        set.clear();
    }
    for a in add.iter().filter(|a| !is_all(a)) {
        set.push(check_known(a, "add_capabilities", container)?);
    }
    for d in drop.iter().filter(|d| !is_all(d)) {
        let d = check_known(d, "drop_capabilities", container)?;
        set.retain(|c| *c != d);
    }
    let mut out: Vec<String> = ALL_CAPABILITIES
        .iter()
        .filter(|c| set.iter().any(|s| s == *c))
        .map(|c| c.to_string())
        .collect();
    out.dedup();
    Ok(out)
}

fn to_set(names: &[String]) -> Capabilities {
    names
        .iter()
        .filter_map(|n| Capability::from_str(n).ok())
        .collect()
}

/// OCI capabilities: `caps` in bounding, effective and permitted; `ambient`
/// also in inheritable and ambient. Inheritable is otherwise empty, so
/// file capabilities of binaries in the image cannot add to the set.
pub(crate) fn linux_capabilities(caps: &[String], ambient: &[String]) -> LinuxCapabilities {
    let mut all: Vec<String> = caps.to_vec();
    for a in ambient {
        if !all.contains(a) {
            all.push(a.clone());
        }
    }
    let mut c = LinuxCapabilities::default();
    c.set_bounding(Some(to_set(&all)));
    c.set_effective(Some(to_set(&all)));
    c.set_permitted(Some(to_set(&all)));
    c.set_inheritable(Some(to_set(ambient)));
    c.set_ambient(Some(to_set(ambient)));
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn every_known_cap_parses_in_oci_spec() {
        for c in ALL_CAPABILITIES {
            assert!(Capability::from_str(c).is_ok(), "{c}");
        }
    }

    #[test]
    fn add_drop_table() {
        let defaults = s(DEFAULT_CAPABILITIES);
        let available = s(&["CHOWN", "KILL", "NET_ADMIN", "SYS_ADMIN"]);
        // (add, drop, expected)
        let rows: &[(&[&str], &[&str], &[&str])] = &[
            (
                &[],
                &[],
                &[
                    "CHOWN",
                    "DAC_OVERRIDE",
                    "FOWNER",
                    "FSETID",
                    "KILL",
                    "SETGID",
                    "SETUID",
                    "SETPCAP",
                    "NET_BIND_SERVICE",
                ],
            ),
            (
                &["NET_ADMIN", "cap_sys_time"],
                &["CAP_KILL", "chown", "DAC_OVERRIDE", "FOWNER", "FSETID"],
                &[
                    "SETGID",
                    "SETUID",
                    "SETPCAP",
                    "NET_BIND_SERVICE",
                    "NET_ADMIN",
                    "SYS_TIME",
                ],
            ),
            (&[], &["ALL"], &[]),
            (&["NET_RAW"], &["ALL"], &["NET_RAW"]),
            (&["ALL"], &[], &["CHOWN", "KILL", "NET_ADMIN", "SYS_ADMIN"]),
            (&["ALL"], &["SYS_ADMIN"], &["CHOWN", "KILL", "NET_ADMIN"]),
            (&["all"], &["all"], &[]),
        ];
        for (add, drop, want) in rows {
            let got = compute(&defaults, &s(add), &s(drop), &available, "c1").unwrap();
            let mut want = s(want);
            want.sort_by_key(|w| ALL_CAPABILITIES.iter().position(|c| c == w));
            assert_eq!(got, want, "add {add:?} drop {drop:?}");
        }
    }

    #[test]
    fn unknown_caps_are_errors() {
        let err = compute(&[], &s(&["SYS_FOO"]), &[], &[], "c1")
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "unknown capability \"SYS_FOO\" in add_capabilities of container c1"
        );
        assert!(compute(&[], &[], &s(&["NOPE"]), &[], "c1").is_err());
        assert!(compute(&s(&["NOPE"]), &[], &[], &[], "c1").is_err());
    }

    #[test]
    fn mask_to_names() {
        assert_eq!(caps_from_mask(0b1), s(&["CHOWN"]));
        let all_but_sys_resource = 0x1fffeffffffu64;
        let caps = caps_from_mask(all_but_sys_resource);
        assert_eq!(caps.len(), ALL_CAPABILITIES.len() - 1);
        assert!(!caps.contains(&"SYS_RESOURCE".to_string()));
    }

    #[test]
    fn oci_sets() {
        let c = linux_capabilities(&s(&["CHOWN"]), &s(&["NET_RAW"]));
        let both: Capabilities = [Capability::Chown, Capability::NetRaw].into();
        assert_eq!(c.bounding().as_ref().unwrap(), &both);
        assert_eq!(c.effective().as_ref().unwrap(), &both);
        assert_eq!(c.permitted().as_ref().unwrap(), &both);
        let amb: Capabilities = [Capability::NetRaw].into();
        assert_eq!(c.inheritable().as_ref().unwrap(), &amb);
        assert_eq!(c.ambient().as_ref().unwrap(), &amb);
    }
}
