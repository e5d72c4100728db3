//! The container's terminal: a pty opened inside the container (its own
//! devpts), the master handed over `--console-socket`, the slave made the
//! process's controlling terminal and stdio.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;

use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};

use crate::error::{Error, Result};

fn ioctl_err(what: &str) -> Error {
    Error::sys(format!("terminal: {what}"), nix::errno::Errno::last())
}

/// Opens the pty, sends its master on `sock`, and makes the slave our
/// stdio; `console` also binds it onto /dev/console (for a container's init).
pub fn setup(sock: &UnixStream, console: bool) -> Result<()> {
    let master = nix::fcntl::open(
        "/dev/ptmx",
        nix::fcntl::OFlag::O_RDWR | nix::fcntl::OFlag::O_NOCTTY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| Error::sys("terminal: open /dev/ptmx", e))?;
    let unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK reads an int from the valid pointer.
    if unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock) } < 0 {
        return Err(ioctl_err("unlock pty"));
    }
    let mut n: libc::c_uint = 0;
    // SAFETY: TIOCGPTN writes an unsigned int to the valid pointer.
    if unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCGPTN, &mut n) } < 0 {
        return Err(ioctl_err("pty number"));
    }
    // SAFETY: TIOCGPTPEER opens the slave of this master and returns a new descriptor.
    let fd = unsafe {
        libc::ioctl(
            master.as_raw_fd(),
            libc::TIOCGPTPEER,
            libc::O_RDWR | libc::O_NOCTTY,
        )
    };
    if fd < 0 {
        return Err(ioctl_err("open pty slave"));
    }
    // SAFETY: the kernel returned this descriptor to us alone.
    let slave = unsafe { OwnedFd::from_raw_fd(fd) };
    let name = format!("/dev/pts/{n}");
    if console {
        crate::rootfs::mount_console(&name)?;
    }
    let fds = [master.as_raw_fd()];
    let iov = [std::io::IoSlice::new(name.as_bytes())];
    sendmsg::<()>(
        sock.as_raw_fd(),
        &iov,
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .map_err(|e| Error::sys("terminal: send master on the console socket", e))?;
    drop(master);
    // SAFETY: TIOCSCTTY with 0 on our own session's terminal.
    if unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCSCTTY, 0) } < 0 {
        return Err(ioctl_err("set controlling terminal"));
    }
    nix::unistd::dup2_stdin(&slave).map_err(|e| Error::sys("terminal: dup2", e))?;
    nix::unistd::dup2_stdout(&slave).map_err(|e| Error::sys("terminal: dup2", e))?;
    nix::unistd::dup2_stderr(&slave).map_err(|e| Error::sys("terminal: dup2", e))?;
    Ok(())
}
