//! Loading a device filter (see `devices.rs`) and attaching it to a cgroup v2
//! directory, through the `bpf(2)` syscall.
//!
//! The program is attached with `BPF_F_ALLOW_MULTI`, so programs attached by
//! others (to this cgroup or its parents) keep running beside it and each can
//! deny. It is named [`PROGRAM_NAME`]; when a cgroup is reused, the programs
//! of that name found on it are detached once the new one is in place, so at
//! no moment is the cgroup without a filter.

use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use super::devices::{DeviceFilter, Insn};
use crate::error::{Error, Result};

/// The name the kernel keeps with the program (at most 15 bytes).
pub const PROGRAM_NAME: &str = "crius_devices";

const BPF_PROG_LOAD: libc::c_int = 5;
const BPF_PROG_ATTACH: libc::c_int = 8;
const BPF_PROG_DETACH: libc::c_int = 9;
const BPF_PROG_GET_FD_BY_ID: libc::c_int = 13;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_int = 15;
const BPF_PROG_QUERY: libc::c_int = 16;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;

/// `union bpf_attr` as one zeroed, 8-byte aligned block: each command fills
/// the fields it reads at their offsets. It is larger than any command this
/// file sends, since the kernel writes some answers (the query's revision)
/// past the fields asked for; the kernel accepts a larger block whose tail is
/// zero.
#[repr(C, align(8))]
struct Attr([u8; 128]);

impl Attr {
    fn new() -> Self {
        Attr([0; 128])
    }

    fn u32(mut self, at: usize, v: u32) -> Self {
        self.0[at..at + 4].copy_from_slice(&v.to_ne_bytes());
        self
    }

    fn u64(mut self, at: usize, v: u64) -> Self {
        self.0[at..at + 8].copy_from_slice(&v.to_ne_bytes());
        self
    }

    fn bytes(mut self, at: usize, v: &[u8]) -> Self {
        self.0[at..at + v.len()].copy_from_slice(v);
        self
    }

    fn get_u32(&self, at: usize) -> u32 {
        u32::from_ne_bytes(self.0[at..at + 4].try_into().expect("4 bytes"))
    }

    /// Runs `cmd`, which reads this block and may write answers into it.
    fn call(&mut self, cmd: libc::c_int) -> std::io::Result<libc::c_long> {
        // SAFETY: the block is as large as the kernel reads for `cmd` (and
        // zeroed past what was set); any pointer stored in it points at a
        // buffer the caller keeps alive, with its length beside it.
        let r = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                cmd,
                self.0.as_mut_ptr(),
                std::mem::size_of::<Attr>() as libc::c_uint,
            )
        };
        if r < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(r)
        }
    }

    /// Runs `cmd` and takes the new file descriptor it returns.
    fn call_fd(&mut self, cmd: libc::c_int) -> std::io::Result<OwnedFd> {
        let fd = self.call(cmd)?;
        // SAFETY: these commands return a new descriptor that nothing else owns.
        Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
    }
}

fn err(dir: &Path, reason: String) -> Error {
    Error::Cgroup {
        path: dir.display().to_string(),
        reason,
    }
}

/// Loads `insns` as a device program; on failure loads it again with the
/// verifier's log and puts the log in the error.
fn load(insns: &[Insn], dir: &Path) -> Result<OwnedFd> {
    let license = c"Apache-2.0";
    let mut name = [0u8; 16];
    name[..PROGRAM_NAME.len()].copy_from_slice(PROGRAM_NAME.as_bytes());
    // prog_type, insn_cnt, insns, license, log_level, log_size, log_buf,
    // kern_version, prog_flags, prog_name.
    let attr = |log: &mut [u8]| {
        Attr::new()
            .u32(0, BPF_PROG_TYPE_CGROUP_DEVICE)
            .u32(4, insns.len() as u32)
            .u64(8, insns.as_ptr() as u64)
            .u64(16, license.as_ptr() as u64)
            .u32(24, u32::from(!log.is_empty()))
            .u32(28, log.len() as u32)
            // Without a log, the kernel wants no buffer either.
            .u64(
                32,
                if log.is_empty() {
                    0
                } else {
                    log.as_mut_ptr() as u64
                },
            )
            .bytes(48, &name)
    };
    match attr(&mut []).call_fd(BPF_PROG_LOAD) {
        Ok(fd) => Ok(fd),
        Err(e) => {
            let mut log = vec![0u8; 64 * 1024];
            let _ = attr(&mut log).call_fd(BPF_PROG_LOAD);
            let end = log.iter().position(|b| *b == 0).unwrap_or(log.len());
            Err(err(
                dir,
                format!(
                    "load the device filter (bpf BPF_PROG_LOAD): {e}; verifier log: {:?}",
                    String::from_utf8_lossy(&log[..end]).trim()
                ),
            ))
        }
    }
}

/// The ids of the device programs attached to `cgroup` itself.
fn query(cgroup: &File, dir: &Path) -> Result<Vec<u32>> {
    let mut ids = vec![0u32; 64];
    loop {
        // target_fd, attach_type, query_flags, attach_flags, prog_ids, prog_cnt.
        let mut attr = Attr::new()
            .u32(0, cgroup.as_raw_fd() as u32)
            .u32(4, BPF_CGROUP_DEVICE)
            .u64(16, ids.as_mut_ptr() as u64)
            .u32(24, ids.len() as u32);
        match attr.call(BPF_PROG_QUERY) {
            Ok(_) => {
                ids.truncate(attr.get_u32(24) as usize);
                return Ok(ids);
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => {
                ids = vec![0; attr.get_u32(24) as usize + 16];
            }
            Err(e) => {
                return Err(err(
                    dir,
                    format!("list device programs (bpf BPF_PROG_QUERY): {e}"),
                ))
            }
        }
    }
}

/// The program `id` when it carries [`PROGRAM_NAME`] (and still exists).
fn ours(id: u32) -> Option<OwnedFd> {
    let fd = Attr::new().u32(0, id).call_fd(BPF_PROG_GET_FD_BY_ID).ok()?;
    // struct bpf_prog_info up to its name: type, id, tag[8], two lengths,
    // three pointers, created_by_uid, nr_map_ids, map_ids, name[16].
    let mut info = [0u8; 80];
    Attr::new()
        .u32(0, fd.as_raw_fd() as u32)
        .u32(4, info.len() as u32)
        .u64(8, info.as_mut_ptr() as u64)
        .call(BPF_OBJ_GET_INFO_BY_FD)
        .ok()?;
    let name = &info[64..80];
    let end = name.iter().position(|b| *b == 0).unwrap_or(name.len());
    (&name[..end] == PROGRAM_NAME.as_bytes()).then_some(fd)
}

fn open_cgroup(dir: &Path) -> Result<File> {
    File::open(dir).map_err(|e| Error::io("open cgroup", dir, e))
}

/// Enforces `filter` on the processes of the cgroup v2 directory `dir`
/// (and its descendants), replacing the filter this runtime put there before.
pub fn attach(dir: &Path, filter: &DeviceFilter) -> Result<()> {
    let cgroup = open_cgroup(dir)?;
    let old: Vec<OwnedFd> = query(&cgroup, dir)?.into_iter().filter_map(ours).collect();
    let prog = load(&filter.program(), dir)?;
    // target_fd, attach_bpf_fd, attach_type, attach_flags.
    Attr::new()
        .u32(0, cgroup.as_raw_fd() as u32)
        .u32(4, prog.as_raw_fd() as u32)
        .u32(8, BPF_CGROUP_DEVICE)
        .u32(12, BPF_F_ALLOW_MULTI)
        .call(BPF_PROG_ATTACH)
        .map_err(|e| {
            err(
                dir,
                format!("attach the device filter (bpf BPF_PROG_ATTACH): {e}"),
            )
        })?;
    for fd in old {
        Attr::new()
            .u32(0, cgroup.as_raw_fd() as u32)
            .u32(4, fd.as_raw_fd() as u32)
            .u32(8, BPF_CGROUP_DEVICE)
            .call(BPF_PROG_DETACH)
            .map_err(|e| {
                err(
                    dir,
                    format!("detach the earlier device filter (bpf BPF_PROG_DETACH): {e}"),
                )
            })?;
    }
    Ok(())
}

/// The ids of the device filters this runtime attached to `dir`.
pub fn attached(dir: &Path) -> Result<Vec<u32>> {
    let cgroup = open_cgroup(dir)?;
    Ok(query(&cgroup, dir)?
        .into_iter()
        .filter(|id| ours(*id).is_some())
        .collect())
}
