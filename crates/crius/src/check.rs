//! `crius check`: what a person runs when a node is not ready. Each check reads the
//! machine (kernel, runtimes, CNI, disk, the socket) or asks the daemon, and says OK, WARN
//! or FAIL with one line on how to fix it. Only a FAIL makes the exit status non-zero.

use std::fmt::Write as _;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::config::Config;

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Ok,
    Warn,
    Fail,
}

impl Level {
    fn as_str(self) -> &'static str {
        match self {
            Level::Ok => "OK",
            Level::Warn => "WARN",
            Level::Fail => "FAIL",
        }
    }
}

/// One row of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub level: Level,
    pub check: String,
    pub detail: String,
    /// What to do about it; empty when OK.
    pub fix: String,
}

fn ok(check: impl Into<String>, detail: impl Into<String>) -> Finding {
    Finding {
        level: Level::Ok,
        check: check.into(),
        detail: detail.into(),
        fix: String::new(),
    }
}

fn warn(check: impl Into<String>, detail: impl Into<String>, fix: impl Into<String>) -> Finding {
    Finding {
        level: Level::Warn,
        check: check.into(),
        detail: detail.into(),
        fix: fix.into(),
    }
}

fn fail(check: impl Into<String>, detail: impl Into<String>, fix: impl Into<String>) -> Finding {
    Finding {
        level: Level::Fail,
        check: check.into(),
        detail: detail.into(),
        fix: fix.into(),
    }
}

/// Runs every check against `config` (the daemon's effective config).
pub async fn run(config: &Config) -> Vec<Finding> {
    let mut out = kernel();
    out.extend(handlers(config));
    out.extend(cni(config));
    out.extend(disk(config));
    out.extend(socket_and_daemon(config).await);
    out
}

/// The report as a table, a fix under each row that is not OK.
pub fn render(findings: &[Finding]) -> String {
    let width = findings.iter().map(|f| f.check.len()).max().unwrap_or(5);
    let mut text = String::new();
    let _ = writeln!(text, "{:<6} {:<width$}  DETAIL", "STATUS", "CHECK");
    for f in findings {
        let _ = writeln!(
            text,
            "{:<6} {:<width$}  {}",
            f.level.as_str(),
            f.check,
            f.detail
        );
        if !f.fix.is_empty() {
            let _ = writeln!(text, "{:<6} {:<width$}  fix: {}", "", "", f.fix);
        }
    }
    let count = |l| findings.iter().filter(|f| f.level == l).count();
    let _ = writeln!(
        text,
        "\n{} OK, {} WARN, {} FAIL",
        count(Level::Ok),
        count(Level::Warn),
        count(Level::Fail)
    );
    text
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// (major, minor, patch) of a dotted version at the start of `s` ("1.1.5+ds1" -> 1.1.5).
pub fn parse_version(s: &str) -> Option<(u64, u64, u64)> {
    let core: String = s
        .trim_start_matches('v')
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    let mut parts = core.split('.').map(|p| p.parse::<u64>().ok());
    Some((
        parts.next()??,
        parts.next()??,
        parts.next().flatten().unwrap_or(0),
    ))
}

fn kernel() -> Vec<Finding> {
    let mut out = Vec::new();
    if read("/proc/filesystems")
        .lines()
        .any(|l| l.split_whitespace().last() == Some("overlay"))
    {
        out.push(ok("overlayfs", "overlay is in /proc/filesystems"));
    } else {
        out.push(fail(
            "overlayfs",
            "no overlay filesystem: container layers cannot be mounted",
            "modprobe overlay (and add it to /etc/modules-load.d)",
        ));
    }
    let release = read("/proc/sys/kernel/osrelease").trim().to_string();
    match parse_version(&release) {
        Some(v) if v >= (5, 12, 0) => out.push(ok(
            "id-mapped mounts",
            format!("kernel {release} (5.12 or later)"),
        )),
        _ => out.push(warn(
            "id-mapped mounts",
            format!("kernel {release} predates 5.12"),
            "user-namespaced pods need a kernel 5.12 or later",
        )),
    }
    match read("/proc/sys/user/max_user_namespaces")
        .trim()
        .parse::<u64>()
    {
        Ok(n) if n > 0 => out.push(ok("user namespaces", format!("max_user_namespaces {n}"))),
        _ => out.push(warn(
            "user namespaces",
            "max_user_namespaces is 0 or unreadable",
            "sysctl -w user.max_user_namespaces=63359 to allow user-namespaced pods",
        )),
    }
    out.extend(cgroups());
    if read("/proc/self/status")
        .lines()
        .any(|l| l.starts_with("Seccomp:"))
    {
        out.push(ok(
            "seccomp",
            "the kernel filters system calls (Seccomp in /proc/self/status)",
        ));
    } else {
        out.push(fail(
            "seccomp",
            "the kernel has no seccomp",
            "use a kernel built with CONFIG_SECCOMP_FILTER: RuntimeDefault profiles need it",
        ));
    }
    let lsm = read("/sys/kernel/security/lsm");
    if lsm.split(',').any(|m| m == "apparmor" || m == "selinux") {
        out.push(ok("LSM", format!("active: {}", lsm.trim())));
    } else {
        out.push(warn(
            "LSM",
            "neither AppArmor nor SELinux is active",
            "pods asking for an AppArmor or SELinux profile get none; enable one in the kernel command line if they need it",
        ));
    }
    out
}

fn cgroups() -> Vec<Finding> {
    let fs_type = |p: &str| {
        nix::sys::statfs::statfs(p)
            .ok()
            .map(|s| s.filesystem_type())
    };
    let root = fs_type("/sys/fs/cgroup");
    if root == Some(nix::sys::statfs::CGROUP2_SUPER_MAGIC) {
        let controllers = read("/sys/fs/cgroup/cgroup.controllers");
        let missing: Vec<&str> = ["cpu", "memory", "pids", "io"]
            .into_iter()
            .filter(|c| !controllers.split_whitespace().any(|x| x == *c))
            .collect();
        let mut out = vec![ok("cgroup layout", "cgroup v2, unified")];
        out.push(if missing.is_empty() {
            ok("cgroup controllers", controllers.trim().to_string())
        } else {
            fail(
                "cgroup controllers",
                format!("missing: {}", missing.join(", ")),
                "enable them in the root cgroup.subtree_control (or the kernel command line)",
            )
        });
        return out;
    }
    let hybrid = fs_type("/sys/fs/cgroup/unified") == Some(nix::sys::statfs::CGROUP2_SUPER_MAGIC);
    let mut out = vec![warn(
        "cgroup layout",
        if hybrid {
            "cgroup v1, hybrid (a v2 hierarchy at /sys/fs/cgroup/unified)"
        } else {
            "cgroup v1"
        },
        "boot with systemd.unified_cgroup_hierarchy=1 for cgroup v2; the kubelet needs failCgroupV1: false on v1, and crun refuses hybrid",
    )];
    let missing: Vec<&str> = ["cpu", "memory", "pids", "cpuset", "devices", "freezer"]
        .into_iter()
        .filter(|c| !Path::new("/sys/fs/cgroup").join(c).is_dir())
        .collect();
    out.push(if missing.is_empty() {
        ok(
            "cgroup controllers",
            "cpu, memory, pids, cpuset, devices, freezer mounted",
        )
    } else {
        fail(
            "cgroup controllers",
            format!("not mounted: {}", missing.join(", ")),
            "mount each v1 controller under /sys/fs/cgroup/NAME",
        )
    });
    out.push(if Path::new("/run/systemd/system").is_dir() {
        ok("systemd", "systemd is PID 1")
    } else {
        warn(
            "systemd",
            "systemd is not PID 1",
            "use cgroup_manager = \"cgroupfs\" (and the kubelet's cgroupDriver: cgroupfs)",
        )
    });
    out
}

/// `runc`'s first release with the fix for CVE-2024-21626 (leaked fds, container breakout).
const RUNC_CVE_2024_21626_FIXED: (u64, u64, u64) = (1, 1, 12);

fn handlers(config: &Config) -> Vec<Finding> {
    let mut out = Vec::new();
    // Runtimes named without a slash are found as the daemon finds them.
    let resolved = config.resolved(crate::config::exe_dir().as_deref());
    let rt = &resolved.crius.runtime;
    for (name, handler) in &rt.runtimes {
        let check = format!("runtime {name}");
        let is_default = *name == rt.default_runtime;
        let path = &handler.runtime_path;
        // A relative path is a bare name found neither next to crius nor in PATH.
        let executable = path.is_absolute()
            && std::fs::metadata(path)
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false);
        if !executable {
            let detail = if path.is_absolute() {
                format!("{} is missing or not executable", path.display())
            } else {
                format!(
                    "{} not found next to the crius executable or in PATH",
                    path.display()
                )
            };
            let fix = format!(
                "install it, or change [crius.runtime.runtimes.{name}] runtime_path{}",
                if is_default {
                    ""
                } else {
                    " (or remove the table)"
                }
            );
            out.push(if is_default {
                fail(check, detail, fix)
            } else {
                warn(check, detail, fix)
            });
            continue;
        }
        let flag = if handler.runtime_type == crate::config::RuntimeType::Vm {
            "-v"
        } else {
            "--version"
        };
        let version = output(path, &[flag]);
        let first = version.lines().next().unwrap_or("").trim().to_string();
        let features = if handler.runtime_type == crate::config::RuntimeType::Oci {
            let f = output(path, &["features"]);
            serde_json::from_str::<serde_json::Value>(&f).ok().map(|v| {
                let mut have = Vec::new();
                if v.pointer("/linux/mountExtensions/idmap/enabled") == Some(&true.into()) {
                    have.push("idmap");
                }
                if v.pointer("/linux/seccomp/enabled") == Some(&true.into()) {
                    have.push("seccomp");
                }
                if v.pointer("/linux/cgroup/v2") == Some(&true.into()) {
                    have.push("cgroup v2");
                }
                have.join(", ")
            })
        } else {
            None
        };
        let detail = match &features {
            Some(f) if !f.is_empty() => format!("{} ({first}; features: {f})", path.display()),
            _ => format!("{} ({first})", path.display()),
        };
        if first.starts_with("runc version") {
            let v = first.trim_start_matches("runc version").trim();
            if parse_version(v).is_some_and(|v| v < RUNC_CVE_2024_21626_FIXED) {
                if distribution_fixed(path, "CVE-2024-21626") {
                    out.push(ok(
                        check,
                        format!("{detail}; CVE-2024-21626 fixed by the distribution"),
                    ));
                } else {
                    out.push(fail(
                        check,
                        format!("{detail}: vulnerable to CVE-2024-21626 (container breakout)"),
                        "upgrade runc to 1.1.12 or later",
                    ));
                }
                continue;
            }
        }
        if first.is_empty() {
            out.push(warn(
                check,
                format!("{} gave no version", path.display()),
                format!("run {} {flag} by hand to see why", path.display()),
            ));
        } else {
            out.push(ok(check, detail));
        }
    }
    out
}

/// The first 4 KiB of stdout of `path args`, bounded by 5 s; empty on any failure.
fn output(path: &Path, args: &[&str]) -> String {
    let child = Command::new(path)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn();
    let Ok(mut child) = child else {
        return String::new();
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return String::new();
            }
        }
    }
    child
        .wait_with_output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// Whether the Debian package that owns `path` says in its changelog that it fixed `cve`
/// (distributions backport fixes without changing the upstream version).
fn distribution_fixed(path: &Path, cve: &str) -> bool {
    let owner = output(
        Path::new("/usr/bin/dpkg"),
        &["-S", &path.display().to_string()],
    );
    let Some(package) = owner
        .split(':')
        .next()
        .map(str::trim)
        .filter(|p| !p.is_empty())
    else {
        return false;
    };
    let changelog = PathBuf::from(format!("/usr/share/doc/{package}/changelog.Debian.gz"));
    if !changelog.exists() {
        return false;
    }
    output(Path::new("/bin/zcat"), &[&changelog.display().to_string()]).contains(cve)
}

fn cni(config: &Config) -> Vec<Finding> {
    let net = &config.crius.network;
    let cni = crius_net::Cni::new(crius_net::CniConfig {
        conf_dir: net.network_dir.clone(),
        plugin_dirs: net.plugin_dirs.clone(),
        cache_dir: PathBuf::new(),
        timeout: Duration::from_secs(5),
    });
    let name = match cni.network_status() {
        Ok(name) => name,
        Err(err) => {
            return vec![fail(
                "CNI config",
                err.to_string(),
                format!(
                    "put a conflist in {} whose plugins are in {}",
                    net.network_dir.display(),
                    net.plugin_dirs
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )]
        }
    };
    let mut out = vec![ok(
        "CNI config",
        format!(
            "network {name:?} in {} parses; its plugins are present",
            net.network_dir.display()
        ),
    )];
    if let Some(bridge) = bridge_name(&net.network_dir, &name) {
        let args = [
            "-C", "FORWARD", "-i", &bridge, "!", "-o", &bridge, "-j", "DROP",
        ];
        let held = Command::new("iptables")
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        out.push(if held {
            ok("CNI bridge forward rule", format!("pod traffic of {bridge} stays on the node"))
        } else {
            warn(
                "CNI bridge forward rule",
                format!("no FORWARD drop rule for {bridge}: pod traffic may be routed off the node"),
                format!("iptables -I FORWARD -i {bridge} ! -o {bridge} -j DROP (unless pods should reach beyond the node)"),
            )
        });
    }
    out
}

/// The bridge device of network `name`'s bridge plugin, if its conflist in `dir` has one.
fn bridge_name(dir: &Path, name: &str) -> Option<String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .collect();
    files.sort();
    files.into_iter().find_map(|f| {
        let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&f).ok()?).ok()?;
        if v.get("name")?.as_str()? != name {
            return None;
        }
        let plugins = v.get("plugins").and_then(|p| p.as_array()).cloned();
        let plugins = plugins.unwrap_or_else(|| vec![v.clone()]);
        plugins.iter().find_map(|p| {
            (p.get("type")?.as_str()? == "bridge").then(|| {
                p.get("bridge")
                    .and_then(|b| b.as_str())
                    .unwrap_or("cni0")
                    .to_string()
            })
        })
    })
}

/// The nearest existing directory at or above `path`.
fn existing_ancestor(path: &Path) -> Option<&Path> {
    path.ancestors().find(|p| p.exists())
}

fn disk(config: &Config) -> Vec<Finding> {
    let mut out = Vec::new();
    for (key, dir) in [
        ("root", &config.crius.root),
        ("runroot", &config.crius.runroot),
    ] {
        let check = format!("free disk {key}");
        let Some(at) = existing_ancestor(dir) else {
            continue;
        };
        let Ok(st) = nix::sys::statvfs::statvfs(at) else {
            out.push(warn(
                check,
                format!("cannot statvfs {}", at.display()),
                "check the path",
            ));
            continue;
        };
        let block = st.fragment_size();
        let free = st.blocks_available() * block;
        let total = (st.blocks() * block).max(1);
        let pct = free as f64 * 100.0 / total as f64;
        let detail = format!(
            "{}: {:.1} GiB free of {:.1} GiB ({pct:.0}%)",
            dir.display(),
            free as f64 / f64::from(1u32 << 30),
            total as f64 / f64::from(1u32 << 30)
        );
        // The kubelet's default hard eviction thresholds: nodefs 10%, imagefs 15%.
        let fix =
            "free space or move it: below 10% the kubelet evicts pods, below 15% it removes images";
        out.push(if free < 1 << 30 || pct < 10.0 {
            fail(check, detail, fix)
        } else if pct < 15.0 {
            warn(check, detail, fix)
        } else {
            ok(check, detail)
        });
    }
    out
}

async fn socket_and_daemon(config: &Config) -> Vec<Finding> {
    let socket = &config.crius.api.listen;
    let meta = match std::fs::metadata(socket) {
        Ok(m) if m.file_type().is_socket() => m,
        Ok(_) => {
            return vec![fail(
                "socket",
                format!("{} is not a socket", socket.display()),
                "remove it and restart crius",
            )]
        }
        Err(_) => {
            return vec![fail(
                "socket",
                format!("{} does not exist", socket.display()),
                "start crius (systemctl start crius, or deploy/install.sh)",
            )]
        }
    };
    let mode = meta.permissions().mode() & 0o777;
    let mut out = vec![if mode & 0o007 != 0 {
        fail(
            "socket",
            format!(
                "{} has mode {mode:o}: other users can drive the runtime",
                socket.display()
            ),
            format!("chmod o-rwx {}", socket.display()),
        )
    } else {
        ok(
            "socket",
            format!("{} (mode {mode:o}, uid {})", socket.display(), {
                use std::os::unix::fs::MetadataExt;
                meta.uid()
            }),
        )
    }];
    match crate::status::query(socket, false, Duration::from_secs(5)).await {
        Ok(report) if report.ready => out.push(ok("daemon", "answers Version and Status; ready")),
        Ok(report) => out.push(fail(
            "daemon",
            format!(
                "answers but is not ready: {}",
                report
                    .text
                    .lines()
                    .filter(|l| l.contains("false"))
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
            "see crius status --verbose and the daemon's log",
        )),
        Err(err) => out.push(fail(
            "daemon",
            format!("does not answer: {err:#}"),
            "restart crius and read its log (journalctl -u crius, or /var/log/crius.log)",
        )),
    }
    out.extend(pause_image(config, socket).await);
    out
}

async fn pause_image(config: &Config, socket: &Path) -> Vec<Finding> {
    let image = &config.crius.image.pause_image;
    let binary = config
        .resolved(crate::config::exe_dir().as_deref())
        .crius
        .image
        .pause_binary;
    let present = async {
        let channel =
            crate::status::connect(socket, Duration::from_secs(5), Some(Duration::from_secs(5)))
                .await
                .ok()?;
        let mut images = crius_cri_api::v1::image_service_client::ImageServiceClient::new(channel);
        let reply = images
            .image_status(crius_cri_api::v1::ImageStatusRequest {
                image: Some(crius_cri_api::v1::ImageSpec {
                    image: image.clone(),
                    ..Default::default()
                }),
                verbose: false,
            })
            .await
            .ok()?;
        Some(reply.into_inner().image.is_some())
    }
    .await;
    let fallback = binary.is_file();
    vec![match (present, fallback) {
        (Some(true), _) => ok("pause image", format!("{image} is in the store")),
        (_, true) => ok(
            "pause image",
            format!(
                "{image} not pulled yet; the first pod pulls it, or builds one from {}",
                binary.display()
            ),
        ),
        (_, false) => fail(
            "pause image",
            format!(
                "{image} is not in the store and {} is missing",
                binary.display()
            ),
            format!("crius pull {image}, or install crius-pause (deploy/install.sh)"),
        ),
    }]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_with_distribution_suffixes() {
        assert_eq!(parse_version("1.1.5+ds1"), Some((1, 1, 5)));
        assert_eq!(parse_version("v1.5.3"), Some((1, 5, 3)));
        assert_eq!(parse_version("6.18.44-fc-v1272"), Some((6, 18, 44)));
        assert_eq!(parse_version("1.8"), Some((1, 8, 0)));
        assert_eq!(parse_version("x"), None);
        assert!(parse_version("1.1.11").unwrap() < RUNC_CVE_2024_21626_FIXED);
    }

    #[test]
    fn the_table_has_a_fix_under_each_problem_and_counts() {
        let text = render(&[
            ok("overlayfs", "present"),
            warn("cgroup layout", "v1", "boot with v2"),
            fail("daemon", "down", "start it"),
        ]);
        assert!(text.contains("OK     overlayfs"), "{text}");
        assert!(text.contains("fix: boot with v2"), "{text}");
        assert!(text.contains("1 OK, 1 WARN, 1 FAIL"), "{text}");
    }

    #[test]
    fn the_bridge_of_the_named_network_is_found() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("10-a.conflist"),
            r#"{"cniVersion":"1.0.0","name":"a","plugins":[{"type":"bridge","bridge":"br-a"},{"type":"portmap"}]}"#,
        )
        .unwrap();
        assert_eq!(bridge_name(dir.path(), "a").as_deref(), Some("br-a"));
        assert_eq!(bridge_name(dir.path(), "b"), None);
    }
}
