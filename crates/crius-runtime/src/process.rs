//! The last steps of a container process, shared by a container's init and
//! by exec: find the executable, then rlimits, OOM score, user, groups,
//! capabilities, no_new_privs, seccomp, and execve with no host descriptor
//! left open.

use std::convert::Infallible;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use libseccomp::ScmpFilterContext;
use oci_spec::runtime::{PosixRlimit, PosixRlimitType, Process};

use crate::caps::{self, CapSets};
use crate::error::{Error, Result};

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A process ready to become the container's program.
pub struct Prepared {
    path: CString,
    argv: Vec<CString>,
    envp: Vec<CString>,
    caps: CapSets,
    seccomp: Option<ScmpFilterContext>,
    uid: u32,
    gid: u32,
    groups: Vec<u32>,
    umask: Option<u32>,
    no_new_privs: bool,
    rlimits: Vec<PosixRlimit>,
}

fn cstr(s: &str) -> Result<CString> {
    CString::new(s).map_err(|_| Error::Spec(format!("{s:?} holds a NUL byte")))
}

/// Parses and checks everything about `p` that can fail before the process
/// is committed: capabilities, the working directory and the executable
/// (`seccomp` comes compiled).
pub fn prepare(p: &Process, seccomp: Option<ScmpFilterContext>) -> Result<Prepared> {
    let caps = caps::parse(p.capabilities().as_ref())?;
    let env: Vec<String> = p.env().clone().unwrap_or_default();
    let args = p.args().clone().unwrap_or_default();
    let arg0 = args
        .first()
        .ok_or_else(|| Error::Spec("process.args is empty".into()))?;
    enter_cwd(p.cwd())?;
    let path_var = env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH);
    let exe = lookup(arg0, path_var)?;
    let user = p.user();
    Ok(Prepared {
        path: CString::new(exe.as_os_str().as_bytes())
            .map_err(|_| Error::Spec("executable path".into()))?,
        argv: args.iter().map(|a| cstr(a)).collect::<Result<_>>()?,
        envp: env.iter().map(|e| cstr(e)).collect::<Result<_>>()?,
        caps,
        seccomp,
        uid: user.uid(),
        gid: user.gid(),
        groups: user.additional_gids().clone().unwrap_or_default(),
        umask: user.umask(),
        no_new_privs: p.no_new_privileges() == Some(true),
        rlimits: p.rlimits().clone().unwrap_or_default(),
    })
}

/// chdir into `cwd` and check that the result is inside the container's
/// root: a cwd reached through a leaked host descriptor (/proc/self/fd/N)
/// is refused (CVE-2024-21626).
pub fn enter_cwd(cwd: &Path) -> Result<()> {
    if !cwd.is_absolute() {
        return Err(Error::Spec(format!(
            "process.cwd {} is not absolute",
            cwd.display()
        )));
    }
    nix::unistd::chdir(cwd)
        .map_err(|e| Error::sys(format!("chdir to cwd {}", cwd.display()), e))?;
    match nix::unistd::getcwd() {
        Ok(p) if p.is_absolute() => Ok(()),
        _ => Err(Error::Init(format!(
            "cwd {} is outside the container's root",
            cwd.display()
        ))),
    }
}

/// `exec.LookPath`: a name with a slash is taken as is, others are searched in PATH.
pub fn lookup(name: &str, path_var: &str) -> Result<PathBuf> {
    let is_exec = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| {
            use std::os::unix::fs::PermissionsExt;
            m.is_file() && m.permissions().mode() & 0o111 != 0
        })
    };
    if name.contains('/') {
        let p = PathBuf::from(name);
        if is_exec(&p) {
            return Ok(p);
        }
        return Err(Error::Init(format!(
            "exec: {name:?}: stat {name}: no such file or directory or not executable"
        )));
    }
    for dir in path_var.split(':') {
        let dir = if dir.is_empty() { "." } else { dir };
        let p = Path::new(dir).join(name);
        if is_exec(&p) {
            return Ok(p);
        }
    }
    Err(Error::ExecutableNotFound(name.to_string()))
}

fn rlimit_resource(t: PosixRlimitType) -> libc::__rlimit_resource_t {
    match t {
        PosixRlimitType::RlimitCpu => libc::RLIMIT_CPU,
        PosixRlimitType::RlimitFsize => libc::RLIMIT_FSIZE,
        PosixRlimitType::RlimitData => libc::RLIMIT_DATA,
        PosixRlimitType::RlimitStack => libc::RLIMIT_STACK,
        PosixRlimitType::RlimitCore => libc::RLIMIT_CORE,
        PosixRlimitType::RlimitRss => libc::RLIMIT_RSS,
        PosixRlimitType::RlimitNproc => libc::RLIMIT_NPROC,
        PosixRlimitType::RlimitNofile => libc::RLIMIT_NOFILE,
        PosixRlimitType::RlimitMemlock => libc::RLIMIT_MEMLOCK,
        PosixRlimitType::RlimitAs => libc::RLIMIT_AS,
        PosixRlimitType::RlimitLocks => libc::RLIMIT_LOCKS,
        PosixRlimitType::RlimitSigpending => libc::RLIMIT_SIGPENDING,
        PosixRlimitType::RlimitMsgqueue => libc::RLIMIT_MSGQUEUE,
        PosixRlimitType::RlimitNice => libc::RLIMIT_NICE,
        PosixRlimitType::RlimitRtprio => libc::RLIMIT_RTPRIO,
        PosixRlimitType::RlimitRttime => libc::RLIMIT_RTTIME,
    }
}

fn apply_rlimits(rl: &[PosixRlimit]) -> Result<()> {
    for r in rl {
        let lim = libc::rlimit {
            rlim_cur: r.soft(),
            rlim_max: r.hard(),
        };
        // SAFETY: `lim` is a valid rlimit for the whole call.
        if unsafe { libc::setrlimit(rlimit_resource(r.typ()), &lim) } < 0 {
            return Err(Error::sys(
                format!("set rlimit {:?}", r.typ()),
                nix::errno::Errno::last(),
            ));
        }
    }
    Ok(())
}

/// The process's OOM score, written while the runtime still runs as host root in the
/// host's namespaces (a process that became root of a user namespace may no longer
/// write its own); the container's processes inherit it through fork and exec.
pub fn set_oom_score_adj(p: &Process) -> Result<()> {
    let Some(v) = p.oom_score_adj() else {
        return Ok(());
    };
    std::fs::write("/proc/self/oom_score_adj", v.to_string())
        .map_err(|e| Error::io("write oom_score_adj", "/proc/self/oom_score_adj", e))
}

fn set_ids(p: &Prepared) -> Result<()> {
    // SAFETY: prctl with PR_SET_KEEPCAPS takes plain integers.
    unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) };
    let groups: Vec<libc::gid_t> = p.groups.clone();
    // SAFETY: `groups` is valid for its length.
    if unsafe { libc::setgroups(groups.len(), groups.as_ptr()) } < 0 {
        let e = nix::errno::Errno::last();
        // setgroups is denied in a user namespace with setgroups=deny; only
        // an empty list can be skipped.
        if !(e == nix::errno::Errno::EPERM && groups.is_empty()) {
            return Err(Error::sys("setgroups", e));
        }
    }
    // SAFETY: plain integer arguments.
    if unsafe { libc::setresgid(p.gid, p.gid, p.gid) } < 0 {
        return Err(Error::sys(
            format!("setgid {}", p.gid),
            nix::errno::Errno::last(),
        ));
    }
    // SAFETY: plain integer arguments.
    if unsafe { libc::setresuid(p.uid, p.uid, p.uid) } < 0 {
        return Err(Error::sys(
            format!("setuid {}", p.uid),
            nix::errno::Errno::last(),
        ));
    }
    // SAFETY: as above.
    unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0) };
    Ok(())
}

/// Applies the process's credentials and limits and execs it. Returns only on error.
pub fn finish(p: Prepared) -> Result<Infallible> {
    apply_rlimits(&p.rlimits)?;
    if !p.no_new_privs {
        // Without no_new_privs, loading a filter needs CAP_SYS_ADMIN: do it while we have it.
        if let Some(f) = &p.seccomp {
            crate::seccomp::load(f)?;
        }
    }
    caps::drop_bounding(&p.caps.bounding)?;
    set_ids(&p)?;
    caps::apply(&p.caps)?;
    if let Some(m) = p.umask {
        // SAFETY: umask only changes this process's creation mask.
        unsafe { libc::umask(m) };
    }
    if p.no_new_privs {
        // SAFETY: prctl with plain integers.
        if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } < 0 {
            return Err(Error::sys("set no_new_privs", nix::errno::Errno::last()));
        }
        if let Some(f) = &p.seccomp {
            crate::seccomp::load(f)?;
        }
    }
    close_host_fds();
    let e = nix::unistd::execve(&p.path, &p.argv, &p.envp).unwrap_err();
    Err(Error::sys(format!("exec {}", p.path.to_string_lossy()), e))
}

/// Marks every descriptor above stdio close-on-exec, so nothing of the
/// runtime's reaches the program (CVE-2024-21626).
pub fn close_host_fds() {
    // SAFETY: close_range only sets flags on this process's descriptors.
    let r = unsafe { libc::close_range(3, u32::MAX, libc::CLOSE_RANGE_CLOEXEC as i32) };
    if r < 0 {
        for fd in 3..1024 {
            // SAFETY: F_SETFD on any number is harmless; unknown ones fail with EBADF.
            unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_in_path() {
        assert_eq!(
            lookup("sh", "/nonexistent:/bin").unwrap(),
            PathBuf::from("/bin/sh")
        );
        assert!(matches!(
            lookup("no-such-binary-x", "/bin"),
            Err(Error::ExecutableNotFound(_))
        ));
        assert!(lookup("/bin/sh", "").is_ok());
    }
}
