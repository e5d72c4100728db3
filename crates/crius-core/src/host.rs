//! Facts about the host that change what the daemon may ask of the kernel.

use std::fs;

const CAP_SYS_RESOURCE: u32 = 24;

/// The lowest `oom_score_adj` a container may be given. Without CAP_SYS_RESOURCE no process
/// may go below its own current value, so every request is clamped to it (the runtime would
/// fail otherwise); with the capability the kernel minimum applies.
pub fn oom_score_adj_min() -> i32 {
    let own = fs::read_to_string("/proc/self/oom_score_adj")
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok())
        .unwrap_or(0);
    if has_effective_cap(CAP_SYS_RESOURCE) {
        -1000
    } else {
        own
    }
}

fn has_effective_cap(cap: u32) -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| parse_cap_eff(&s))
        .is_some_and(|mask| mask & (1u64 << cap) != 0)
}

fn parse_cap_eff(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
}

/// Whether the kernel has mount_setattr(2) (Linux 5.12), which a runtime needs to make a
/// mount read-only recursively.
pub fn kernel_has_mount_setattr() -> bool {
    kernel_at_least((5, 12))
}

/// Whether the kernel can id-map mounts of overlayfs layers (5.19) and of tmpfs (6.3),
/// which a pod in a user namespace of its own needs for its rootfs and its shm.
pub fn kernel_has_idmapped_tmpfs() -> bool {
    kernel_at_least((6, 3))
}

/// Whether the running kernel's release is at least `version` (major, minor).
fn kernel_at_least(version: (u32, u32)) -> bool {
    fs::read_to_string("/proc/sys/kernel/osrelease")
        .ok()
        .and_then(|r| parse_release(&r))
        .is_some_and(|v| v >= version)
}

/// `6.1.0-18-amd64` -> (6, 1).
fn parse_release(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.trim().split(|c: char| !c.is_ascii_digit());
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// Whether AppArmor is enabled on this host.
pub fn apparmor_enabled() -> bool {
    fs::read_to_string("/sys/module/apparmor/parameters/enabled")
        .map(|s| s.trim() == "Y")
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_releases_give_major_and_minor() {
        assert_eq!(parse_release("6.1.0-18-amd64\n"), Some((6, 1)));
        assert_eq!(parse_release("5.12.3"), Some((5, 12)));
        assert_eq!(parse_release("6.18.44-fc-v657"), Some((6, 18)));
        assert_eq!(parse_release("garbage"), None);
    }

    #[test]
    fn cap_eff_is_parsed_from_proc_status() {
        let status = "Name:\tx\nCapInh:\t0000000000000000\nCapEff:\t000001fffeffffff\n";
        let mask = parse_cap_eff(status).unwrap();
        assert_eq!(mask & (1 << 24), 0, "bit 24 is clear in fe");
        assert_ne!(mask & (1 << 21), 0);
        assert_eq!(parse_cap_eff("Name:\tx\n"), None);
    }
}
