//! The socket between the runtime and the processes it forks: short text
//! messages on a SOCK_SEQPACKET pair, so each send is one receive.

use std::os::fd::{AsRawFd, OwnedFd};

use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};

use crate::error::{Error, Result};

/// One end of the pair.
#[derive(Debug)]
pub struct Sync(pub OwnedFd);

/// A connected pair (parent end, child end), both close-on-exec.
pub fn pair() -> Result<(Sync, Sync)> {
    let (a, b) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(|e| Error::sys("sync socketpair", e))?;
    Ok((Sync(a), Sync(b)))
}

impl Sync {
    pub fn send(&self, msg: &str) -> Result<()> {
        let b = msg.as_bytes();
        // SAFETY: `b` is valid for its length; MSG_NOSIGNAL avoids SIGPIPE.
        let n = unsafe {
            libc::send(
                self.0.as_raw_fd(),
                b.as_ptr().cast(),
                b.len(),
                libc::MSG_NOSIGNAL,
            )
        };
        if n < 0 {
            return Err(Error::sys("sync send", nix::errno::Errno::last()));
        }
        Ok(())
    }

    /// The next message; `None` when the other side closed (exited or exec'd).
    pub fn recv(&self) -> Result<Option<String>> {
        self.recv_with(0)
    }

    /// The error a child already reported, if one is waiting: a failed
    /// step of the parent may only be the echo of the child's exit.
    pub fn pending_error(&self) -> Option<Error> {
        match self.recv_with(libc::MSG_DONTWAIT) {
            Ok(Some(m)) => m.strip_prefix("err:").map(|m| Error::Init(m.to_string())),
            _ => None,
        }
    }

    fn recv_with(&self, flags: i32) -> Result<Option<String>> {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            // SAFETY: `buf` is writable for its length.
            let n = unsafe {
                libc::recv(
                    self.0.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    flags,
                )
            };
            if n < 0 {
                let e = nix::errno::Errno::last();
                if e == nix::errno::Errno::EINTR {
                    continue;
                }
                return Err(Error::sys("sync receive", e));
            }
            if n == 0 {
                return Ok(None);
            }
            buf.truncate(n as usize);
            return Ok(Some(String::from_utf8_lossy(&buf).into_owned()));
        }
    }

    /// Receives and checks for `want`; an `err:` message becomes the error.
    pub fn expect(&self, want: &str) -> Result<String> {
        match self.recv()? {
            Some(m) if m.starts_with("err:") => Err(Error::Init(m[4..].to_string())),
            Some(m) if m.starts_with(want) => Ok(m[want.len()..].to_string()),
            Some(m) => Err(Error::Init(format!(
                "expected {want:?} from the container process, got {m:?}"
            ))),
            None => Err(Error::Init(format!(
                "the container process exited before {}",
                want.trim_end_matches(':')
            ))),
        }
    }
}
