//! Finding and detaching mounts under a directory (for `crius wipe`, and for tests that
//! clean up after a daemon).

use std::path::{Path, PathBuf};

use tracing::debug;

/// Mount points at or below `dir`, deepest first, from `/proc/self/mountinfo`.
pub fn mounts_under(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let text = std::fs::read_to_string("/proc/self/mountinfo")?;
    Ok(mounts_under_in(&text, dir))
}

/// Like [`mounts_under`], reading the given mountinfo text.
pub fn mounts_under_in(mountinfo: &str, dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|field| PathBuf::from(unescape(field)))
        .filter(|point| point.starts_with(dir))
        .collect();
    found.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    found.dedup();
    found
}

/// Decodes mountinfo's octal escapes (`\040` for a space, `\011`, `\012`, `\134`).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|b| (b'0'..=b'7').contains(b)))
            .map(|d| d.iter().fold(0u32, |acc, b| acc * 8 + u32::from(b - b'0')))
            .and_then(|value| u8::try_from(value).ok());
        match octal {
            Some(byte) => {
                out.push(byte);
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Lazily unmounts everything at or below `dir`, deepest first; returns how many it
/// detached. Mounts that are already gone are skipped.
pub fn detach_all_under(dir: &Path) -> std::io::Result<usize> {
    let mut count = 0;
    // A mount point may be stacked several times: repeat until nothing is left.
    for _ in 0..16 {
        let points = mounts_under(dir)?;
        if points.is_empty() {
            break;
        }
        for point in points {
            let started = std::time::Instant::now();
            let result = nix::mount::umount2(&point, nix::mount::MntFlags::MNT_DETACH);
            debug!(mount = %point.display(), ?result, elapsed = ?started.elapsed(), "umount2 MNT_DETACH");
            if result.is_ok() {
                count += 1;
            }
        }
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
30 22 0:40 / /var/lib/crius/overlay/abc/rootfs rw - overlay overlay rw
31 22 0:4 net:[4026532] /run/crius/netns/pod\\040one rw - nsfs nsfs rw
32 22 0:41 / /run/crius-other rw - tmpfs tmpfs rw
33 30 0:42 / /var/lib/crius/overlay/abc/rootfs/dev rw - tmpfs tmpfs rw
";

    #[test]
    fn finds_mounts_under_a_dir_deepest_first() {
        assert_eq!(
            mounts_under_in(SAMPLE, Path::new("/var/lib/crius")),
            vec![
                PathBuf::from("/var/lib/crius/overlay/abc/rootfs/dev"),
                PathBuf::from("/var/lib/crius/overlay/abc/rootfs"),
            ]
        );
    }

    #[test]
    fn decodes_escapes_and_respects_path_components() {
        assert_eq!(
            mounts_under_in(SAMPLE, Path::new("/run/crius")),
            vec![PathBuf::from("/run/crius/netns/pod one")]
        );
    }
}
