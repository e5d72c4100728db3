//! The runc commands on containers: create, start, state, kill, delete,
//! pause, resume, ps, update, exec and run.
//!
//! No runtime binary per container stage (runc execs `runc init`): `create`
//! forks stage 1, which joins and unshares the namespaces while the parent
//! makes the cgroups, and forks the container's init (so a new pid namespace
//! takes effect); the init sets up the rootfs, moves itself into its cgroups
//! (`cgroup::Gate`), and blocks on the exec fifo until `start` opens it,
//! then becomes the program. The only exec before it is the one through
//! the read-only view of the binary (`sealed`).

use std::collections::HashMap;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sched::CloneFlags;
use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{ForkResult, Pid};
use oci_spec::runtime::{LinuxNamespaceType, LinuxResources, Process, Spec};

use crate::cgroup;
use crate::error::{Error, Result};
use crate::log;
use crate::rootfs::{self, RootfsSetup};
use crate::spec::{self, Bundle};
use crate::state::{self, Record, Status};
use crate::sync::{self, Sync};

/// The global flags.
#[derive(Debug, Clone)]
pub struct Globals {
    pub root: PathBuf,
    pub systemd_cgroup: bool,
}

/// `create` and `run` flags.
#[derive(Debug, Clone, Default)]
pub struct CreateOpts {
    pub id: String,
    pub bundle: PathBuf,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    pub no_pivot: bool,
}

/// `exec` flags.
#[derive(Debug, Clone, Default)]
pub struct ExecOpts {
    pub id: String,
    pub process: Option<PathBuf>,
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: Option<PathBuf>,
    pub user: Option<String>,
    pub tty: bool,
    pub detach: bool,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
}

fn ns_flag(t: LinuxNamespaceType) -> Result<CloneFlags> {
    Ok(match t {
        LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
        LinuxNamespaceType::Cgroup => CloneFlags::CLONE_NEWCGROUP,
        LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
        LinuxNamespaceType::User => CloneFlags::CLONE_NEWUSER,
        LinuxNamespaceType::Pid => CloneFlags::CLONE_NEWPID,
        LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
        LinuxNamespaceType::Time => {
            return Err(Error::Spec("time namespaces are not supported".into()))
        }
    })
}

fn ns_name(t: LinuxNamespaceType) -> &'static str {
    match t {
        LinuxNamespaceType::Mount => "mnt",
        LinuxNamespaceType::Cgroup => "cgroup",
        LinuxNamespaceType::Uts => "uts",
        LinuxNamespaceType::Ipc => "ipc",
        LinuxNamespaceType::User => "user",
        LinuxNamespaceType::Pid => "pid",
        LinuxNamespaceType::Network => "net",
        LinuxNamespaceType::Time => "time",
    }
}

/// Namespaces to join (opened now, user first) and to make.
struct Namespaces {
    join: Vec<(CloneFlags, OwnedFd, PathBuf)>,
    new: CloneFlags,
}

fn namespaces(spec: &Spec) -> Result<Namespaces> {
    let mut join = Vec::new();
    let mut new = CloneFlags::empty();
    for ns in spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().clone())
        .unwrap_or_default()
    {
        let flag = ns_flag(ns.typ())?;
        match ns.path() {
            Some(p) if !p.as_os_str().is_empty() => {
                let f = std::fs::File::open(p).map_err(|e| Error::io("open namespace", p, e))?;
                join.push((flag, OwnedFd::from(f), p.clone()));
            }
            _ => new |= flag,
        }
    }
    join.sort_by_key(|(f, _, _)| *f != CloneFlags::CLONE_NEWUSER);
    let has_mnt = new.contains(CloneFlags::CLONE_NEWNS)
        || join.iter().any(|(f, _, _)| *f == CloneFlags::CLONE_NEWNS);
    if !has_mnt {
        return Err(Error::Spec(
            "a mount namespace is required: without one the container's mounts would land on the host".into(),
        ));
    }
    Ok(Namespaces { join, new })
}

fn hook_state(spec: &Spec, id: &str, status: &str, pid: i32, bundle: &Path) -> String {
    serde_json::json!({
        "ociVersion": spec.version(),
        "id": id,
        "status": status,
        "pid": pid,
        "bundle": bundle,
        "annotations": spec.annotations().clone().unwrap_or_default(),
    })
    .to_string()
}

/// Undoes a half-made create: kills the init, removes cgroups and the state dir.
struct CreateUndo {
    dir: Option<PathBuf>,
    cgroups: Vec<PathBuf>,
    children: Vec<Pid>,
    init: Option<i32>,
}

impl Drop for CreateUndo {
    fn drop(&mut self) {
        if let Some(pid) = self.init {
            let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
            let _ = waitpid(Pid::from_raw(pid), None);
        }
        for c in &self.children {
            let _ = nix::sys::signal::kill(*c, Signal::SIGKILL);
            let _ = waitpid(*c, None);
        }
        if !self.cgroups.is_empty() {
            if let Err(e) = cgroup::destroy(&self.cgroups) {
                log::warn(&format!("undo create: {e}"));
            }
        }
        if let Some(d) = &self.dir {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

fn write_pid_file(path: &Path, pid: i32) -> Result<()> {
    let tmp = path.with_extension("crius-tmp");
    std::fs::write(&tmp, pid.to_string()).map_err(|e| Error::io("write pid file", &tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io("write pid file", path, e))
}

fn set_subreaper() {
    // SAFETY: prctl with plain integers.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
}

/// Forks; the child runs `f` and exits, reporting its error on `child_end`.
fn fork_child(child_end: &Sync, f: impl FnOnce() -> Result<()>) -> Result<Pid> {
    fork_child_into(child_end, None, |_| f())
}

const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// [`fork_child`], the child started in the cgroup2 directory `cgroup` when
/// one is given (clone3 with CLONE_INTO_CGROUP, Linux 5.7: unlike a move by
/// pid, no global lock). `f` learns whether that worked; where the kernel
/// refuses, it is a plain fork.
fn fork_child_into(
    child_end: &Sync,
    cgroup: Option<&OwnedFd>,
    f: impl FnOnce(bool) -> Result<()>,
) -> Result<Pid> {
    let into = cgroup.and_then(|fd| {
        // SAFETY: clone_args is plain integers; zero is "not used" for each.
        let mut args: libc::clone_args = unsafe { std::mem::zeroed() };
        args.flags = CLONE_INTO_CGROUP;
        args.exit_signal = libc::SIGCHLD as u64;
        args.cgroup = fd.as_raw_fd() as u64;
        // SAFETY: without CLONE_VM or a stack, clone3 is fork: the child
        // goes on with a copy of this (single-threaded) process.
        let r = unsafe {
            libc::syscall(
                libc::SYS_clone3,
                &mut args as *mut libc::clone_args,
                std::mem::size_of::<libc::clone_args>(),
            )
        };
        match r {
            -1 => None,
            0 => Some(ForkResult::Child),
            pid => Some(ForkResult::Parent {
                child: Pid::from_raw(pid as i32),
            }),
        }
    });
    let forked = match into {
        Some(r) => r,
        // SAFETY: the runtime is single-threaded, so the child may run any code.
        None => unsafe { nix::unistd::fork() }.map_err(|e| Error::sys("fork", e))?,
    };
    match forked {
        ForkResult::Parent { child } => Ok(child),
        ForkResult::Child => {
            let code = match f(into.is_some()) {
                Ok(()) => 0,
                Err(e) => {
                    // After `create` returned nobody reads the socket: the
                    // error goes to the log and to the process's stderr.
                    if child_end.send(&format!("err:{e}")).is_err() {
                        eprintln!("crius-runtime: {e}");
                    }
                    log::error(&e.to_string());
                    1
                }
            };
            // SAFETY: _exit ends the child without running the parent's atexit handlers.
            unsafe { libc::_exit(code) }
        }
    }
}

/// The container's cgroup2 directory, opened for CLONE_INTO_CGROUP.
fn open_v2_dir(dirs: &[PathBuf]) -> Option<OwnedFd> {
    let d = cgroup::v2_dir(dirs)?;
    nix::fcntl::open(
        d,
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .ok()
}

fn write_id_maps(pid: Pid, spec: &Spec) -> Result<()> {
    let linux = spec.linux().as_ref();
    for (file, maps) in [
        ("uid_map", linux.and_then(|l| l.uid_mappings().clone())),
        ("gid_map", linux.and_then(|l| l.gid_mappings().clone())),
    ] {
        let maps = maps.unwrap_or_default();
        if maps.is_empty() {
            return Err(Error::Spec(format!(
                "a user namespace needs {file} entries (linux.{}Mappings)",
                &file[..3]
            )));
        }
        let text: String = maps
            .iter()
            .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
            .collect();
        let path = format!("/proc/{pid}/{file}");
        std::fs::write(&path, &text).map_err(|e| {
            Error::Spec(format!(
                "the kernel refused the {file} {:?}: {e}",
                text.trim()
            ))
        })?;
    }
    Ok(())
}

/// `create`: the container's init waits on the exec fifo when this returns.
pub fn create(g: &Globals, o: &CreateOpts) -> Result<Record> {
    let rec = create_inner(g, o, false)?;
    Ok(rec)
}

fn create_inner(g: &Globals, o: &CreateOpts, keep_subreaper: bool) -> Result<Record> {
    spec::check_id(&o.id)?;
    if g.systemd_cgroup {
        return Err(Error::Other(
            "--systemd-cgroup: the systemd cgroup driver is not supported by crius-runtime".into(),
        ));
    }
    let Bundle {
        path: bundle,
        spec,
        rootfs,
    } = spec::load(&o.bundle)?;
    let process = spec
        .process()
        .clone()
        .ok_or_else(|| Error::Spec("process is missing".into()))?;
    let linux = spec.linux().clone().unwrap_or_default();
    let ns = namespaces(&spec)?;
    let seccomp = linux
        .seccomp()
        .as_ref()
        .map(crate::seccomp::compile)
        .transpose()?;
    crate::caps::parse(process.capabilities().as_ref())?;
    for opt in spec.mounts().iter().flatten() {
        rootfs::parse_options(opt.options().as_deref().unwrap_or(&[]))?;
    }
    let inner = cgroup::inner_path(linux.cgroups_path().as_deref(), &o.id)?;
    // In the host's user namespace, before any fork: see `rootfs::idmap`.
    let idmapped = rootfs::idmap::IdmappedMounts::prepare(&spec, &bundle)?;
    let terminal = process.terminal() == Some(true);
    let console = match (&o.console_socket, terminal) {
        (Some(p), true) => {
            Some(UnixStream::connect(p).map_err(|e| Error::io("connect console socket", p, e))?)
        }
        (None, true) => {
            return Err(Error::Spec(
                "process.terminal needs --console-socket to pass the terminal on".into(),
            ))
        }
        _ => None,
    };

    std::fs::create_dir_all(&g.root).map_err(|e| Error::io("create state root", &g.root, e))?;
    let dir = state::dir(&g.root, &o.id);
    match std::fs::create_dir(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(Error::Exists(o.id.clone()))
        }
        Err(e) => return Err(Error::io("create state dir", &dir, e)),
    }
    let mut undo = CreateUndo {
        dir: Some(dir.clone()),
        cgroups: Vec::new(),
        children: Vec::new(),
        init: None,
    };
    let fifo = dir.join(state::EXEC_FIFO);
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o622))
        .map_err(|e| Error::sys(format!("mkfifo {}", fifo.display()), e))?;
    // Past the umask: an init in a user namespace is "other" to this file, and reaches it
    // only through the descriptor it holds (the state dir is the runtime's alone).
    std::fs::set_permissions(&fifo, std::os::unix::fs::PermissionsExt::from_mode(0o622))
        .map_err(|e| Error::io("chmod exec fifo", &fifo, e))?;
    // Opened here, in the host's user namespace: the init of a user namespace cannot
    // pass the state dirs by path.
    let fifo_fd = open_path(&fifo)?;

    // Read here, in the runtime's cgroup namespace: from the container's own,
    // mountinfo shows the host's hierarchies rooted outside it.
    let hierarchies = cgroup::hierarchies();
    let dirs = cgroup::dirs_for(&hierarchies, &inner);

    set_subreaper();
    let (parent, child) = sync::pair()?;
    let in_userns = ns.new.contains(CloneFlags::CLONE_NEWUSER)
        || ns
            .join
            .iter()
            .any(|(f, _, _)| *f == CloneFlags::CLONE_NEWUSER);
    // Stage 1 makes the namespaces while the cgroups are made here; the init
    // it forks makes its mounts while it is moved into them (cgroup::Gate).
    let stage1 = fork_child(&child, || {
        crate::process::set_oom_score_adj(&process)?;
        join_namespaces(&ns.join)?;
        if ns.new.contains(CloneFlags::CLONE_NEWUSER) {
            nix::sched::unshare(CloneFlags::CLONE_NEWUSER)
                .map_err(|e| Error::sys("unshare user namespace", e))?;
            child.send("userns")?;
            child.expect("mapped")?;
            become_root()?;
        }
        // The cgroup namespace is the init's to make, once it is in its cgroups.
        let rest = ns.new & !(CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWCGROUP);
        nix::sched::unshare(rest).map_err(|e| Error::sys(format!("unshare {rest:?}"), e))?;
        // Not before the cgroups exist: a failed create kills this stage, and
        // must find no init behind it.
        child.expect("go")?;
        // Root of the host's user namespace, the init moves itself (cgroup::join_self).
        let v2 = if in_userns { None } else { open_v2_dir(&dirs) };
        let init = fork_child_into(&child, v2.as_ref(), |in_v2| {
            init_main(InitCtx {
                spec: &spec,
                bundle: &bundle,
                rootfs: &rootfs,
                id: &o.id,
                gate: &cgroup::Gate::new(
                    &child,
                    ns.new.contains(CloneFlags::CLONE_NEWCGROUP),
                    (!in_userns).then_some((dirs.as_slice(), in_v2)),
                ),
                sync: &child,
                fifo: &fifo_fd,
                console: console.as_ref(),
                seccomp,
                cgroup_dirs: &dirs,
                hierarchies: &hierarchies,
                in_userns,
                idmapped: &idmapped,
                no_pivot: o.no_pivot,
                process: &process,
            })
        })?;
        child.send(&format!("pid:{init}"))?;
        Ok(())
    })?;
    drop(child);
    undo.children.push(stage1);
    undo.cgroups = dirs.clone();
    cgroup::create(&dirs)?;
    cgroup::apply(&dirs, &with_default_device_rules(&linux), false)?;
    if ns.new.contains(CloneFlags::CLONE_NEWUSER) {
        parent.expect("userns")?;
        write_id_maps(stage1, &spec)?;
        parent.send("mapped")?;
    }
    parent
        .send("go")
        .map_err(|e| parent.pending_error().unwrap_or(e))?;
    let init = take_pid(&parent, stage1, &mut undo)?;
    let start_time = state::process_start_time(init)
        .ok_or_else(|| Error::Init("the container's init exited during setup".into()))?;
    if in_userns {
        // An init that failed meanwhile has said why: that is the error to report.
        cgroup::join(&dirs, init).map_err(|e| parent.pending_error().unwrap_or(e))?;
    }
    // Fails only when the init has exited; the loop below reports its error.
    let _ = parent.send(&format!("go:{init}"));
    loop {
        match parent.recv()? {
            Some(m) if m == "hooks" => {
                let st = hook_state(&spec, &o.id, "creating", init, &bundle);
                if let Some(h) = spec.hooks() {
                    #[allow(deprecated)]
                    crate::hooks::run(h.prestart().as_deref().unwrap_or(&[]), &st)?;
                    crate::hooks::run(h.create_runtime().as_deref().unwrap_or(&[]), &st)?;
                }
                parent.send("go")?;
            }
            Some(m) if m == "ready" => break,
            Some(m) if m.starts_with("err:") => return Err(Error::Init(m[4..].to_string())),
            Some(m) => return Err(Error::Init(format!("unexpected message {m:?}"))),
            None => {
                return Err(Error::Init(
                    "the container's init exited during setup".into(),
                ))
            }
        }
    }
    let rec = Record {
        id: o.id.clone(),
        pid: init,
        start_time,
        bundle: bundle.clone(),
        rootfs: rootfs.clone(),
        created: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        cgroup_dirs: dirs,
        spec: spec.clone(),
    };
    rec.save(&g.root)?;
    if let Some(p) = &o.pid_file {
        write_pid_file(p, init)?;
    }
    undo.dir = None;
    undo.cgroups.clear();
    undo.init = None;
    if !keep_subreaper {
        // SAFETY: prctl with plain integers.
        unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0) };
    }
    Ok(rec)
}

/// The spec's resources with device rules that allow the default devices
/// (and the spec's own), after its rules, as runc adds them.
fn with_default_device_rules(linux: &oci_spec::runtime::Linux) -> LinuxResources {
    let mut res = linux.resources().clone().unwrap_or_default();
    let Some(mut rules) = res.devices().clone() else {
        return res;
    };
    let rule = |typ, major: Option<i64>, minor: Option<i64>| {
        let mut r = oci_spec::runtime::LinuxDeviceCgroup::default();
        r.set_allow(true);
        r.set_typ(Some(typ));
        r.set_major(major);
        r.set_minor(minor);
        r.set_access(Some("rwm".into()));
        r
    };
    use oci_spec::runtime::LinuxDeviceType as T;
    for (maj, min) in [
        (1, Some(3)),
        (1, Some(5)),
        (1, Some(7)),
        (1, Some(8)),
        (1, Some(9)),
        (5, Some(0)),
        (5, Some(1)),
        (5, Some(2)),
        (136, None),
    ] {
        rules.push(rule(T::C, Some(maj), min));
    }
    for d in linux.devices().iter().flatten() {
        rules.push(rule(d.typ(), Some(d.major()), Some(d.minor())));
    }
    res.set_devices(Some(rules));
    res
}

/// The pid the namespace stage reports for the process it forked (which
/// `undo` now owns), once that stage has exited cleanly.
fn take_pid(parent: &Sync, stage1: Pid, undo: &mut CreateUndo) -> Result<i32> {
    let pid: i32 = parent
        .expect("pid:")?
        .parse()
        .map_err(|_| Error::Init("bad pid from the container process".into()))?;
    undo.init = Some(pid);
    match waitpid(stage1, None) {
        Ok(WaitStatus::Exited(_, 0)) => {
            undo.children.clear();
            Ok(pid)
        }
        other => Err(Error::Init(format!(
            "namespace setup process ended with {other:?}"
        ))),
    }
}

/// Joins the opened namespaces `join`. A user namespace is joined last, and its root
/// become: the others, owned by the host's (a pod's pinned network namespace) or by that
/// user namespace, are joined first while the runtime is still host root; those that
/// only the user namespace's root may join (EPERM before) are tried again after it.
fn join_namespaces(join: &[(CloneFlags, OwnedFd, PathBuf)]) -> Result<()> {
    let setns = |(flag, fd, path): &(CloneFlags, OwnedFd, PathBuf)| {
        nix::sched::setns(fd, *flag)
            .map_err(|e| Error::sys(format!("join namespace {}", path.display()), e))
    };
    let user = join
        .iter()
        .find(|(f, _, _)| *f == CloneFlags::CLONE_NEWUSER);
    let mut later = Vec::new();
    for ns in join
        .iter()
        .filter(|(f, _, _)| *f != CloneFlags::CLONE_NEWUSER)
    {
        match nix::sched::setns(&ns.1, ns.0) {
            Ok(()) => {}
            Err(nix::errno::Errno::EPERM) if user.is_some() => later.push(ns),
            Err(e) => return Err(Error::sys(format!("join namespace {}", ns.2.display()), e)),
        }
    }
    if let Some(user) = user {
        setns(user)?;
        become_root()?;
    }
    later.into_iter().try_for_each(setns)
}

fn become_root() -> Result<()> {
    // SAFETY: plain integer arguments.
    if unsafe { libc::setresgid(0, 0, 0) } < 0 || unsafe { libc::setresuid(0, 0, 0) } < 0 {
        return Err(Error::sys(
            "become root in the user namespace",
            nix::errno::Errno::last(),
        ));
    }
    Ok(())
}

struct InitCtx<'a> {
    spec: &'a Spec,
    bundle: &'a Path,
    rootfs: &'a Path,
    id: &'a str,
    /// Passed once the cgroups are made; the init is in them from then on.
    gate: &'a cgroup::Gate<'a>,
    sync: &'a Sync,
    /// The exec fifo, an O_PATH descriptor.
    fifo: &'a OwnedFd,
    console: Option<&'a UnixStream>,
    seccomp: Option<libseccomp::ScmpFilterContext>,
    cgroup_dirs: &'a [PathBuf],
    hierarchies: &'a [cgroup::Hierarchy],
    in_userns: bool,
    idmapped: &'a rootfs::idmap::IdmappedMounts,
    no_pivot: bool,
    process: &'a Process,
}

/// The container's init, from its new namespaces to the program.
fn init_main(c: InitCtx) -> Result<()> {
    nix::unistd::setsid().map_err(|e| Error::sys("setsid", e))?;
    RootfsSetup {
        spec: c.spec,
        rootfs: c.rootfs,
        bundle: c.bundle,
        cgroup_dirs: c.cgroup_dirs,
        hierarchies: c.hierarchies,
        in_userns: c.in_userns,
        idmapped: c.idmapped,
        cgroup_gate: c.gate,
    }
    .prepare()?;
    let host_pid = c.gate.pass()?;
    #[allow(deprecated)]
    let runtime_hooks = c.spec.hooks().as_ref().is_some_and(|h| {
        h.prestart().as_ref().is_some_and(|v| !v.is_empty())
            || h.create_runtime().as_ref().is_some_and(|v| !v.is_empty())
    });
    if runtime_hooks {
        c.sync.send("hooks")?;
        c.sync.expect("go")?;
    }
    if let Some(h) = c
        .spec
        .hooks()
        .as_ref()
        .and_then(|h| h.create_container().clone())
    {
        crate::hooks::run(&h, &hook_state(c.spec, c.id, "created", host_pid, c.bundle))?;
    }
    let fifo = c.fifo;
    let host_proc = open_path(Path::new("/proc/self/fd"))?;
    rootfs::enter(c.rootfs, c.no_pivot)?;
    rootfs::apply_root_propagation(c.spec)?;
    let linux = c.spec.linux().clone().unwrap_or_default();
    for (k, v) in linux.sysctl().clone().unwrap_or_default() {
        set_sysctl(&k, &v)?;
    }
    if let Some(h) = c.spec.hostname().as_deref().filter(|h| !h.is_empty()) {
        nix::unistd::sethostname(h).map_err(|e| Error::sys(format!("set hostname {h}"), e))?;
    }
    if let Some(d) = c.spec.domainname().as_deref().filter(|d| !d.is_empty()) {
        let cs = std::ffi::CString::new(d).map_err(|_| Error::Spec("domainname".into()))?;
        // SAFETY: valid pointer and length.
        if unsafe { libc::setdomainname(cs.as_ptr(), d.len()) } < 0 {
            return Err(Error::sys(
                format!("set domainname {d}"),
                nix::errno::Errno::last(),
            ));
        }
    }
    if let Some(sock) = c.console {
        crate::tty::setup(sock, true)?;
    }
    rootfs::finalize(c.spec)?;
    let prepared = crate::process::prepare(c.process, c.seccomp)?;
    c.sync.send("ready")?;
    // Block until `start` opens the fifo for reading.
    let fifo_w = nix::fcntl::openat(
        &host_proc,
        format!("{}", fifo.as_raw_fd()).as_str(),
        nix::fcntl::OFlag::O_WRONLY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| Error::sys("open exec fifo", e))?;
    nix::unistd::write(&fifo_w, b"0").map_err(|e| Error::sys("write exec fifo", e))?;
    drop(fifo_w);
    drop(host_proc);
    if let Some(h) = c
        .spec
        .hooks()
        .as_ref()
        .and_then(|h| h.start_container().clone())
    {
        crate::hooks::run(&h, &hook_state(c.spec, c.id, "running", host_pid, c.bundle))?;
    }
    crate::process::finish(prepared)?;
    Ok(())
}

fn open_path(p: &Path) -> Result<OwnedFd> {
    nix::fcntl::open(
        p,
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| Error::sys(format!("open {}", p.display()), e))
}

fn set_sysctl(key: &str, value: &str) -> Result<()> {
    if key.contains("..") || key.contains('/') || key.is_empty() {
        return Err(Error::Spec(format!("sysctl {key:?} is not a sysctl name")));
    }
    let path = format!("/proc/sys/{}", key.replace('.', "/"));
    std::fs::write(&path, value).map_err(|e| Error::io("write sysctl", path, e))
}

/// `start`: lets the created init go on to the program.
pub fn start(g: &Globals, id: &str) -> Result<()> {
    let rec = Record::load(&g.root, id)?;
    match rec.status(&g.root) {
        Status::Created => {}
        Status::Stopped => {
            return Err(bad(
                id,
                Status::Stopped,
                "cannot start a container that has stopped",
            ))
        }
        s => return Err(bad(id, s, "cannot start an already running container")),
    }
    let fifo = state::dir(&g.root, id).join(state::EXEC_FIFO);
    let f = nix::fcntl::open(
        &fifo,
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_NONBLOCK | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| Error::sys(format!("open {}", fifo.display()), e))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut pfd = libc::pollfd {
            fd: f.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd for the call.
        unsafe { libc::poll(&mut pfd, 1, 10) };
        let mut b = [0u8; 1];
        match nix::unistd::read(&f, &mut b) {
            Ok(1) => break,
            Ok(_) | Err(nix::errno::Errno::EAGAIN) => {}
            Err(e) => return Err(Error::sys("read exec fifo", e)),
        }
        if !rec.init_alive() {
            return Err(Error::Init(format!(
                "container {id}'s init exited before it was started"
            )));
        }
        if Instant::now() > deadline {
            return Err(Error::Init(format!(
                "container {id}'s init did not take the start signal"
            )));
        }
    }
    let _ = std::fs::remove_file(&fifo);
    if let Some(h) = rec
        .spec
        .hooks()
        .as_ref()
        .and_then(|h| h.poststart().clone())
    {
        if let Err(e) = crate::hooks::run(
            &h,
            &hook_state(&rec.spec, id, "running", rec.pid, &rec.bundle),
        ) {
            log::warn(&format!("poststart hook: {e}"));
        }
    }
    Ok(())
}

fn bad(id: &str, s: Status, reason: &str) -> Error {
    Error::BadState {
        id: id.to_string(),
        status: s.as_str().to_string(),
        reason: reason.to_string(),
    }
}

/// `state`: runc's JSON.
pub fn state(g: &Globals, id: &str) -> Result<String> {
    Ok(Record::load(&g.root, id)?.state_json(&g.root))
}

/// `list`-like helper: every container's state.
pub fn list(g: &Globals) -> Vec<Record> {
    state::list(&g.root)
        .into_iter()
        .filter_map(|id| Record::load(&g.root, &id).ok())
        .collect()
}

/// A signal by number or name (`9`, `KILL`, `SIGKILL`).
pub fn parse_signal(s: &str) -> Result<i32> {
    if let Ok(n) = s.parse::<i32>() {
        return Ok(n);
    }
    let name = s.to_ascii_uppercase();
    let name = if name.starts_with("SIG") {
        name
    } else {
        format!("SIG{name}")
    };
    name.parse::<Signal>()
        .map(|s| s as i32)
        .map_err(|_| Error::Other(format!("unknown signal {s:?}")))
}

fn send(pid: i32, sig: i32) -> Result<()> {
    // SAFETY: kill with plain integers.
    if unsafe { libc::kill(pid, sig) } < 0 {
        let e = nix::errno::Errno::last();
        if e != nix::errno::Errno::ESRCH {
            return Err(Error::sys(format!("kill {pid}"), e));
        }
    }
    Ok(())
}

/// `kill`: a signal to the init, or with `all` to every process of the container.
pub fn kill(g: &Globals, id: &str, sig: i32, all: bool) -> Result<()> {
    let rec = Record::load(&g.root, id)?;
    let status = rec.status(&g.root);
    if status == Status::Stopped && !all {
        return Err(bad(id, status, "container not running"));
    }
    if all {
        signal_all(&rec, sig)?;
    } else {
        send(rec.pid, sig)?;
        if status == Status::Paused && sig == libc::SIGKILL {
            cgroup::set_frozen(&rec.cgroup_dirs, false)?;
        }
    }
    Ok(())
}

fn signal_all(rec: &Record, sig: i32) -> Result<()> {
    let frozen = cgroup::is_frozen(&rec.cgroup_dirs);
    // Freeze first so nothing forks out of the signal's way.
    let froze = !frozen && cgroup::set_frozen(&rec.cgroup_dirs, true).is_ok();
    let mut pids = cgroup::pids(&rec.cgroup_dirs);
    if rec.init_alive() && !pids.contains(&rec.pid) {
        pids.push(rec.pid);
    }
    let res = pids.iter().try_for_each(|p| send(*p, sig));
    if froze || (frozen && sig == libc::SIGKILL) {
        cgroup::set_frozen(&rec.cgroup_dirs, false)?;
    }
    res
}

fn wait_gone(rec: &Record) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while rec.init_alive() {
        if Instant::now() > deadline {
            return Err(Error::Other(format!(
                "container {}'s init {} did not exit after SIGKILL",
                rec.id, rec.pid
            )));
        }
        // Our child when we made it (run): reap it, or the zombie stays.
        let _ = waitpid(
            Pid::from_raw(rec.pid),
            Some(nix::sys::wait::WaitPidFlag::WNOHANG),
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(())
}

/// `delete`: removes a stopped (or created) container; `force` kills a running one first.
pub fn delete(g: &Globals, id: &str, force: bool) -> Result<()> {
    let rec = Record::load(&g.root, id)?;
    let status = rec.status(&g.root);
    match status {
        Status::Stopped => {}
        Status::Created => {
            signal_all(&rec, libc::SIGKILL)?;
            wait_gone(&rec)?;
        }
        _ if force => {
            signal_all(&rec, libc::SIGKILL)?;
            wait_gone(&rec)?;
        }
        s => {
            return Err(Error::Other(format!(
                "cannot delete container {id} that is not stopped: {}",
                s.as_str()
            )))
        }
    }
    // Processes left in the cgroup after the init (kill --all was not used) go too.
    if !cgroup::pids(&rec.cgroup_dirs).is_empty() {
        let _ = signal_all(&rec, libc::SIGKILL);
    }
    cgroup::destroy(&rec.cgroup_dirs)?;
    std::fs::remove_dir_all(state::dir(&g.root, id))
        .map_err(|e| Error::io("remove state dir", state::dir(&g.root, id), e))?;
    if let Some(h) = rec.spec.hooks().as_ref().and_then(|h| h.poststop().clone()) {
        if let Err(e) = crate::hooks::run(&h, &hook_state(&rec.spec, id, "stopped", 0, &rec.bundle))
        {
            log::warn(&format!("poststop hook: {e}"));
        }
    }
    Ok(())
}

/// `pause` / `resume`.
pub fn set_paused(g: &Globals, id: &str, paused: bool) -> Result<()> {
    let rec = Record::load(&g.root, id)?;
    let s = rec.status(&g.root);
    match (paused, s) {
        (true, Status::Running) | (false, Status::Paused) => {
            cgroup::set_frozen(&rec.cgroup_dirs, paused)
        }
        (true, _) => Err(bad(id, s, "container not running")),
        (false, _) => Err(bad(id, s, "container not paused")),
    }
}

/// `ps`: the host pids of the container's processes.
pub fn ps(g: &Globals, id: &str) -> Result<Vec<i32>> {
    let rec = Record::load(&g.root, id)?;
    Ok(cgroup::pids(&rec.cgroup_dirs))
}

/// `update --resources`.
pub fn update(g: &Globals, id: &str, res: &LinuxResources) -> Result<()> {
    let rec = Record::load(&g.root, id)?;
    if rec.status(&g.root) == Status::Stopped {
        return Err(bad(
            id,
            Status::Stopped,
            "cannot update a stopped container",
        ));
    }
    cgroup::apply(&rec.cgroup_dirs, res, true)
}

/// `run`: create, start, wait, delete; the container's exit status.
pub fn run(g: &Globals, o: &CreateOpts) -> Result<i32> {
    let rec = create_inner(g, o, true)?;
    if let Err(e) = start(g, &o.id) {
        let _ = delete(g, &o.id, true);
        return Err(e);
    }
    let code = wait_child(rec.pid);
    delete(g, &o.id, true)?;
    Ok(code)
}

/// Waits for a child (we are its subreaper) and returns its shell-style exit code.
fn wait_child(pid: i32) -> i32 {
    loop {
        match waitpid(Pid::from_raw(pid), None) {
            Ok(WaitStatus::Exited(_, c)) => return c,
            Ok(WaitStatus::Signaled(_, s, _)) => return 128 + s as i32,
            Ok(_) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return 255,
        }
    }
}

fn exec_process(rec: &Record, o: &ExecOpts) -> Result<Process> {
    if let Some(path) = &o.process {
        let text = std::fs::read(path).map_err(|e| Error::io("read process", path, e))?;
        return serde_json::from_slice(&text)
            .map_err(|e| Error::Spec(format!("process file {}: {e}", path.display())));
    }
    let mut p = rec.spec.process().clone().unwrap_or_default();
    if o.args.is_empty() {
        return Err(Error::Spec("exec needs a command".into()));
    }
    p.set_args(Some(o.args.clone()));
    p.set_terminal(Some(o.tty));
    let mut env = p.env().clone().unwrap_or_default();
    for e in &o.env {
        let key = e.split('=').next().unwrap_or("");
        env.retain(|x| x.split('=').next() != Some(key));
        env.push(e.clone());
    }
    p.set_env(Some(env));
    if let Some(cwd) = &o.cwd {
        p.set_cwd(cwd.clone());
    }
    if let Some(u) = &o.user {
        let mut user = p.user().clone();
        let (uid, gid) = u.split_once(':').unwrap_or((u, ""));
        user.set_uid(
            uid.parse()
                .map_err(|_| Error::Spec(format!("--user {u:?}: not uid[:gid]")))?,
        );
        if !gid.is_empty() {
            user.set_gid(
                gid.parse()
                    .map_err(|_| Error::Spec(format!("--user {u:?}: not uid[:gid]")))?,
            );
        }
        p.set_user(user);
    }
    Ok(p)
}

/// `exec`: a new process in a running container. Without `detach`, waits
/// and returns its exit status.
pub fn exec(g: &Globals, o: &ExecOpts) -> Result<i32> {
    let rec = Record::load(&g.root, &o.id)?;
    let status = rec.status(&g.root);
    if status == Status::Stopped {
        return Err(bad(&o.id, status, "cannot exec in a stopped container"));
    }
    let process = exec_process(&rec, o)?;
    let seccomp = rec
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.seccomp().as_ref())
        .map(crate::seccomp::compile)
        .transpose()?;
    crate::caps::parse(process.capabilities().as_ref())?;
    // The init's namespaces, user first and mount last.
    let mut order: Vec<LinuxNamespaceType> = rec
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().clone())
        .unwrap_or_default()
        .iter()
        .map(|n| n.typ())
        .collect();
    order.sort_by_key(|t| match t {
        LinuxNamespaceType::User => 0,
        LinuxNamespaceType::Mount => 2,
        _ => 1,
    });
    let mut join = Vec::new();
    for t in order {
        let name = ns_name(t);
        let theirs = format!("/proc/{}/ns/{name}", rec.pid);
        let same = match (
            std::fs::metadata(&theirs),
            std::fs::metadata(format!("/proc/self/ns/{name}")),
        ) {
            (Ok(a), Ok(b)) => {
                use std::os::unix::fs::MetadataExt;
                a.ino() == b.ino() && a.dev() == b.dev()
            }
            _ => false,
        };
        if same {
            continue;
        }
        let f =
            std::fs::File::open(&theirs).map_err(|e| Error::io("open namespace", &theirs, e))?;
        join.push((ns_flag(t)?, OwnedFd::from(f), PathBuf::from(theirs)));
    }
    let terminal = process.terminal() == Some(true);
    let console = match (&o.console_socket, terminal) {
        (Some(p), true) => {
            Some(UnixStream::connect(p).map_err(|e| Error::io("connect console socket", p, e))?)
        }
        (None, true) => return Err(Error::Spec("--tty needs --console-socket".into())),
        _ => None,
    };
    if !o.detach {
        set_subreaper();
    }
    let (parent, child) = sync::pair()?;
    let v2 = open_v2_dir(&rec.cgroup_dirs);
    let stage1 = fork_child_into(&child, v2.as_ref(), |in_v2| {
        child.expect("go")?;
        // Still root of the host's user namespace: see cgroup::join_self.
        cgroup::join_self(&rec.cgroup_dirs, in_v2)?;
        crate::process::set_oom_score_adj(&process)?;
        join_namespaces(&join)?;
        let proc_pid = fork_child(&child, || {
            child.expect("go")?;
            if let Some(sock) = &console {
                nix::unistd::setsid().map_err(|e| Error::sys("setsid", e))?;
                crate::tty::setup(sock, false)?;
            }
            let prepared = crate::process::prepare(&process, seccomp)?;
            crate::process::finish(prepared)?;
            Ok(())
        })?;
        child.send(&format!("pid:{proc_pid}"))?;
        Ok(())
    })?;
    drop(child);
    let mut undo = CreateUndo {
        dir: None,
        cgroups: Vec::new(),
        children: vec![stage1],
        init: None,
    };
    parent.send("go")?;
    let pid = take_pid(&parent, stage1, &mut undo)?;
    parent.send("go")?;
    // The socket closes on a successful execve; an error comes first.
    match parent.recv()? {
        None => {}
        Some(m) if m.starts_with("err:") => return Err(Error::Init(m[4..].to_string())),
        Some(m) => return Err(Error::Init(format!("unexpected message {m:?}"))),
    }
    undo.init = None;
    drop(undo);
    if let Some(p) = &o.pid_file {
        write_pid_file(p, pid)?;
    }
    if o.detach {
        return Ok(0);
    }
    Ok(wait_child(pid))
}

/// Annotations helper for features/state consumers.
pub fn annotations(spec: &Spec) -> HashMap<String, String> {
    spec.annotations().clone().unwrap_or_default()
}
