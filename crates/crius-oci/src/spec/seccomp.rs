//! Seccomp: picking the profile (RuntimeDefault, Localhost, Unconfined and
//! the deprecated path strings) and turning a profile file into OCI
//! `linux.seccomp`, with rules that depend on capabilities, architecture
//! and kernel version resolved for this container.

use std::io::Read;
use std::path::{Component, Path, PathBuf};

use crius_cri_api::v1::{security_profile::ProfileType, SecurityProfile};
use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompFilterFlag, LinuxSyscall,
};
use serde::Deserialize;
use tracing::debug;

use crate::Error;

/// The built-in profile used for RuntimeDefault: an allow list of syscalls,
/// everything else fails with EPERM.
pub const DEFAULT_PROFILE_JSON: &str = include_str!("seccomp_default.json");

/// Profile files bigger than this are refused.
const MAX_PROFILE_SIZE: u64 = 4 << 20;

/// Which seccomp profile a container runs under.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum SeccompChoice {
    Unconfined,
    RuntimeDefault,
    Localhost(PathBuf),
}

/// A condition on a rule: capabilities held, architecture, kernel.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Filter {
    #[serde(default)]
    caps: Vec<String>,
    #[serde(default)]
    arches: Vec<String>,
    #[serde(default)]
    min_kernel: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Rule {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    names: Vec<String>,
    action: LinuxSeccompAction,
    #[serde(default)]
    errno_ret: Option<u32>,
    #[serde(default)]
    args: Option<Vec<LinuxSeccompArg>>,
    #[serde(default)]
    includes: Option<Filter>,
    #[serde(default)]
    excludes: Option<Filter>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ArchMapEntry {
    architecture: Arch,
    #[serde(default)]
    sub_architectures: Vec<Arch>,
}

/// A profile file: the OCI `linux.seccomp` shape, plus the Docker/containers
/// extensions (archMap, per-rule includes/excludes).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ProfileFile {
    default_action: LinuxSeccompAction,
    #[serde(default)]
    default_errno_ret: Option<u32>,
    #[serde(default)]
    architectures: Vec<Arch>,
    #[serde(default)]
    arch_map: Vec<ArchMapEntry>,
    #[serde(default)]
    flags: Vec<LinuxSeccompFilterFlag>,
    #[serde(default)]
    syscalls: Vec<Rule>,
}

/// Facts about the host a profile's conditions are checked against.
#[derive(Clone, Debug)]
pub(crate) struct SeccompHost {
    /// Go-style architecture name: amd64, arm64, ...
    pub goarch: &'static str,
    pub native: Option<Arch>,
    pub kernel: Option<(u32, u32)>,
}

impl SeccompHost {
    pub(crate) fn current() -> Self {
        SeccompHost {
            goarch: goarch(),
            native: native_arch(),
            kernel: kernel_version(),
        }
    }
}

fn goarch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "x86" => "386",
        "aarch64" => "arm64",
        "arm" => "arm",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        other => other,
    }
}

fn native_arch() -> Option<Arch> {
    match std::env::consts::ARCH {
        "x86_64" => Some(Arch::ScmpArchX86_64),
        "x86" => Some(Arch::ScmpArchX86),
        "aarch64" => Some(Arch::ScmpArchAarch64),
        "arm" => Some(Arch::ScmpArchArm),
        "powerpc64" => Some(Arch::ScmpArchPpc64le),
        "s390x" => Some(Arch::ScmpArchS390x),
        "riscv64" => Some(Arch::ScmpArchRiscv64),
        _ => None,
    }
}

/// "6.18.44-foo" -> (6, 18).
pub(crate) fn parse_kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut it = release.trim().split(|c: char| !c.is_ascii_digit());
    let major = it.next()?.parse().ok()?;
    let minor = it.next()?.parse().ok()?;
    Some((major, minor))
}

fn kernel_version() -> Option<(u32, u32)> {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .ok()
        .and_then(|r| parse_kernel_version(&r))
}

fn invalid(profile: &str, reason: &str) -> Error {
    Error::InvalidSeccompProfile {
        profile: profile.to_string(),
        reason: reason.to_string(),
    }
}

/// A profile path: absolute as given, or relative to the profile root
/// (and then never climbing out of it).
fn profile_path(root: &Path, reference: &str, shown: &str) -> Result<PathBuf, Error> {
    if reference.is_empty() {
        return Err(invalid(shown, "empty localhost profile path"));
    }
    let p = Path::new(reference);
    if p.is_absolute() {
        return Ok(p.to_path_buf());
    }
    if p.components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(invalid(
            shown,
            "a relative profile path must stay inside the seccomp profile root",
        ));
    }
    Ok(root.join(p))
}

/// Picks the profile: the structured `profile` wins over the deprecated
/// `path` string; with neither, `unset` applies.
pub(crate) fn choose(
    profile: Option<&SecurityProfile>,
    deprecated_path: &str,
    unset: SeccompChoice,
    root: &Path,
) -> Result<SeccompChoice, Error> {
    if let Some(p) = profile {
        return match ProfileType::try_from(p.profile_type) {
            Ok(ProfileType::RuntimeDefault) => Ok(SeccompChoice::RuntimeDefault),
            Ok(ProfileType::Unconfined) => Ok(SeccompChoice::Unconfined),
            Ok(ProfileType::Localhost) => Ok(SeccompChoice::Localhost(profile_path(
                root,
                &p.localhost_ref,
                &p.localhost_ref,
            )?)),
            Err(_) => Err(invalid(
                &format!("profile_type {}", p.profile_type),
                "unknown profile type",
            )),
        };
    }
    match deprecated_path {
        "" => Ok(unset),
        "runtime/default" | "docker/default" => Ok(SeccompChoice::RuntimeDefault),
        "unconfined" => Ok(SeccompChoice::Unconfined),
        other => match other.strip_prefix("localhost/") {
            Some(rest) => Ok(SeccompChoice::Localhost(profile_path(root, rest, other)?)),
            None => Err(invalid(
                other,
                "expected runtime/default, docker/default, unconfined or localhost/<path>",
            )),
        },
    }
}

fn cap_name(c: &str) -> String {
    super::caps::normalize(c)
}

fn applies(rule: &Rule, caps: &[String], host: &SeccompHost) -> bool {
    if let Some(inc) = &rule.includes {
        if !inc.caps.iter().all(|c| caps.contains(&cap_name(c))) {
            return false;
        }
        if !inc.arches.is_empty() && !inc.arches.iter().any(|a| a == host.goarch) {
            return false;
        }
        if let Some(min) = inc.min_kernel.as_deref() {
            if let (Some(want), Some(have)) = (parse_kernel_version(min), host.kernel) {
                if have < want {
                    return false;
                }
            }
        }
    }
    if let Some(exc) = &rule.excludes {
        if exc.caps.iter().any(|c| caps.contains(&cap_name(c))) {
            return false;
        }
        if exc.arches.iter().any(|a| a == host.goarch) {
            return false;
        }
        if let Some(min) = exc.min_kernel.as_deref() {
            if let (Some(want), Some(have)) = (parse_kernel_version(min), host.kernel) {
                if have >= want {
                    return false;
                }
            }
        }
    }
    true
}

/// A parsed profile -> OCI seccomp for a container holding `caps` (names
/// without CAP_).
fn resolve(file: &ProfileFile, caps: &[String], host: &SeccompHost) -> LinuxSeccomp {
    let mut architectures = file.architectures.clone();
    if architectures.is_empty() {
        if let Some(entry) = file
            .arch_map
            .iter()
            .find(|e| Some(e.architecture) == host.native)
        {
            architectures.push(entry.architecture);
            architectures.extend(entry.sub_architectures.iter().copied());
        }
    }
    let mut syscalls = Vec::new();
    for rule in &file.syscalls {
        if !applies(rule, caps, host) {
            continue;
        }
        let mut names = rule.names.clone();
        if let Some(n) = &rule.name {
            names.push(n.clone());
        }
        if names.is_empty() {
            continue;
        }
        let mut s = LinuxSyscall::default();
        s.set_names(names);
        s.set_action(rule.action);
        s.set_errno_ret(rule.errno_ret);
        s.set_args(rule.args.clone());
        syscalls.push(s);
    }
    let mut out = LinuxSeccomp::default();
    out.set_default_action(file.default_action);
    out.set_default_errno_ret(file.default_errno_ret);
    if !architectures.is_empty() {
        out.set_architectures(Some(architectures));
    }
    if !file.flags.is_empty() {
        out.set_flags(Some(file.flags.clone()));
    }
    out.set_syscalls(Some(syscalls));
    out
}

/// The built-in RuntimeDefault profile for a container holding `caps`.
/// Parsed once: every RuntimeDefault container resolves the same file.
pub(crate) fn default_profile(caps: &[String], host: &SeccompHost) -> Result<LinuxSeccomp, Error> {
    static PARSED: std::sync::OnceLock<Result<ProfileFile, String>> = std::sync::OnceLock::new();
    let parsed = PARSED
        .get_or_init(|| serde_json::from_str(DEFAULT_PROFILE_JSON).map_err(|e| e.to_string()));
    match parsed {
        Ok(file) => Ok(resolve(file, caps, host)),
        Err(e) => Err(invalid(
            "runtime/default",
            &format!("built-in profile does not parse: {e}"),
        )),
    }
}

/// A profile file from disk (OCI or Docker format).
pub(crate) fn load_profile(
    path: &Path,
    caps: &[String],
    host: &SeccompHost,
) -> Result<LinuxSeccomp, Error> {
    debug!(path = %path.display(), "loading seccomp profile");
    let read_err = |e| Error::SeccompProfileRead {
        path: path.to_path_buf(),
        source: e,
    };
    let f = std::fs::File::open(path).map_err(read_err)?;
    let mut text = String::new();
    f.take(MAX_PROFILE_SIZE)
        .read_to_string(&mut text)
        .map_err(read_err)?;
    let file: ProfileFile =
        serde_json::from_str(&text).map_err(|e| Error::SeccompProfileParse {
            path: path.to_path_buf(),
            source: e,
        })?;
    Ok(resolve(&file, caps, host))
}

/// The OCI seccomp section for `choice`, or None when unconfined.
pub(crate) fn seccomp_for(
    choice: &SeccompChoice,
    caps: &[String],
    host: &SeccompHost,
) -> Result<Option<LinuxSeccomp>, Error> {
    match choice {
        SeccompChoice::Unconfined => Ok(None),
        SeccompChoice::RuntimeDefault => default_profile(caps, host).map(Some),
        SeccompChoice::Localhost(p) => load_profile(p, caps, host).map(Some),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host() -> SeccompHost {
        SeccompHost {
            goarch: "amd64",
            native: Some(Arch::ScmpArchX86_64),
            kernel: Some((6, 1)),
        }
    }

    fn allowed(s: &LinuxSeccomp, name: &str) -> Vec<LinuxSyscall> {
        s.syscalls()
            .as_ref()
            .unwrap()
            .iter()
            .filter(|r| r.names().iter().any(|n| n == name))
            .cloned()
            .collect()
    }

    fn caps(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn default_profile_shape() {
        let p = default_profile(&caps(&["CHOWN", "KILL"]), &host()).unwrap();
        assert_eq!(p.default_action(), LinuxSeccompAction::ScmpActErrno);
        assert_eq!(p.default_errno_ret(), Some(1));
        assert_eq!(
            p.architectures().as_deref(),
            Some(&[Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32][..])
        );
        for name in [
            "read",
            "write",
            "execve",
            "exit_group",
            "futex",
            "arch_prctl",
            "ptrace",
        ] {
            let r = allowed(&p, name);
            assert!(
                r.iter()
                    .any(|r| r.action() == LinuxSeccompAction::ScmpActAllow),
                "{name} should be allowed"
            );
        }
        for name in [
            "mount",
            "umount2",
            "unshare",
            "setns",
            "reboot",
            "kexec_load",
            "keyctl",
            "init_module",
            "sethostname",
            "io_uring_setup",
            "cacheflush",
        ] {
            assert!(allowed(&p, name).is_empty(), "{name} should not be allowed");
        }
        // clone only without namespace flags; clone3 answers ENOSYS.
        let clone = allowed(&p, "clone");
        assert_eq!(clone.len(), 1);
        let arg = clone[0].args().as_ref().unwrap()[0];
        assert_eq!(arg.index(), 0);
        assert_eq!(arg.value(), 0x7e02_0000);
        assert_eq!(
            arg.op(),
            oci_spec::runtime::LinuxSeccompOperator::ScmpCmpMaskedEq
        );
        let clone3 = allowed(&p, "clone3");
        assert_eq!(clone3.len(), 1);
        assert_eq!(clone3[0].action(), LinuxSeccompAction::ScmpActErrno);
        assert_eq!(clone3[0].errno_ret(), Some(38));
    }

    #[test]
    fn default_profile_follows_capabilities() {
        let p = default_profile(&caps(&["SYS_ADMIN", "SYS_TIME"]), &host()).unwrap();
        for name in ["mount", "unshare", "setns", "clone3", "settimeofday"] {
            assert!(!allowed(&p, name).is_empty(), "{name} with the cap");
        }
        // clone is now allowed without argument checks.
        let clone = allowed(&p, "clone");
        assert!(clone.iter().all(|r| r.args().is_none()));
        assert!(allowed(&p, "clone3")
            .iter()
            .all(|r| r.action() == LinuxSeccompAction::ScmpActAllow));
    }

    #[test]
    fn min_kernel_and_arch_conditions() {
        let old = SeccompHost {
            kernel: Some((4, 4)),
            ..host()
        };
        let p = default_profile(&[], &old).unwrap();
        assert!(allowed(&p, "ptrace").is_empty());
        let arm = SeccompHost {
            goarch: "arm64",
            native: Some(Arch::ScmpArchAarch64),
            kernel: Some((6, 1)),
        };
        let p = default_profile(&[], &arm).unwrap();
        assert!(allowed(&p, "arch_prctl").is_empty());
        assert!(!allowed(&p, "cacheflush").is_empty());
        assert_eq!(
            p.architectures().as_deref(),
            Some(&[Arch::ScmpArchAarch64, Arch::ScmpArchArm][..])
        );
    }

    #[test]
    fn choose_table() {
        let root = Path::new("/var/lib/kubelet/seccomp");
        let sp = |t: ProfileType, r: &str| SecurityProfile {
            profile_type: t as i32,
            localhost_ref: r.into(),
        };
        let rd = SeccompChoice::RuntimeDefault;
        let un = SeccompChoice::Unconfined;
        let lh = |p: &str| SeccompChoice::Localhost(PathBuf::from(p));
        // (profile, deprecated path, expected)
        let rows: Vec<(Option<SecurityProfile>, &str, Option<SeccompChoice>)> = vec![
            (None, "", Some(un.clone())),
            (
                Some(sp(ProfileType::RuntimeDefault, "")),
                "",
                Some(rd.clone()),
            ),
            (
                Some(sp(ProfileType::Unconfined, "")),
                "runtime/default",
                Some(un.clone()),
            ),
            (
                Some(sp(ProfileType::Localhost, "/etc/p.json")),
                "",
                Some(lh("/etc/p.json")),
            ),
            (
                Some(sp(ProfileType::Localhost, "profiles/p.json")),
                "",
                Some(lh("/var/lib/kubelet/seccomp/profiles/p.json")),
            ),
            (Some(sp(ProfileType::Localhost, "../p.json")), "", None),
            (Some(sp(ProfileType::Localhost, "")), "", None),
            (None, "runtime/default", Some(rd.clone())),
            (None, "docker/default", Some(rd.clone())),
            (None, "unconfined", Some(un.clone())),
            (None, "localhost//abs/p.json", Some(lh("/abs/p.json"))),
            (
                None,
                "localhost/rel.json",
                Some(lh("/var/lib/kubelet/seccomp/rel.json")),
            ),
            (None, "bogus", None),
        ];
        for (p, path, want) in rows {
            let got = choose(p.as_ref(), path, un.clone(), root).ok();
            assert_eq!(got, want, "{p:?} {path:?}");
        }
        assert_eq!(choose(None, "", rd.clone(), root).unwrap(), rd);
    }

    #[test]
    fn localhost_profiles_in_both_formats() {
        let dir = tempfile::tempdir().unwrap();
        let oci = dir.path().join("oci.json");
        std::fs::write(
            &oci,
            r#"{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_X86_64"],
               "syscalls":[{"names":["sethostname"],"action":"SCMP_ACT_ERRNO","errnoRet":1}]}"#,
        )
        .unwrap();
        let p = load_profile(&oci, &[], &host()).unwrap();
        assert_eq!(p.default_action(), LinuxSeccompAction::ScmpActAllow);
        let r = allowed(&p, "sethostname");
        assert_eq!(r[0].action(), LinuxSeccompAction::ScmpActErrno);

        let docker = dir.path().join("docker.json");
        std::fs::write(
            &docker,
            r#"{"defaultAction":"SCMP_ACT_ERRNO",
               "archMap":[{"architecture":"SCMP_ARCH_X86_64","subArchitectures":["SCMP_ARCH_X86"]}],
               "syscalls":[{"name":"read","action":"SCMP_ACT_ALLOW"},
                           {"names":["mount"],"action":"SCMP_ACT_ALLOW","includes":{"caps":["CAP_SYS_ADMIN"]}}]}"#,
        )
        .unwrap();
        let p = load_profile(&docker, &[], &host()).unwrap();
        assert_eq!(
            p.architectures().as_deref(),
            Some(&[Arch::ScmpArchX86_64, Arch::ScmpArchX86][..])
        );
        assert!(!allowed(&p, "read").is_empty());
        assert!(allowed(&p, "mount").is_empty());

        let bad = dir.path().join("bad.json");
        std::fs::write(&bad, "{not json").unwrap();
        assert!(matches!(
            load_profile(&bad, &[], &host()),
            Err(Error::SeccompProfileParse { .. })
        ));
        assert!(matches!(
            load_profile(&dir.path().join("missing.json"), &[], &host()),
            Err(Error::SeccompProfileRead { .. })
        ));
    }

    #[test]
    fn kernel_versions() {
        assert_eq!(parse_kernel_version("6.18.44-fc-v657"), Some((6, 18)));
        assert_eq!(parse_kernel_version("4.8"), Some((4, 8)));
        assert_eq!(parse_kernel_version("x"), None);
    }
}
