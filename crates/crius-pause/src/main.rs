//! `crius-pause`: the first process of every pod sandbox.
//!
//! It holds the pod's namespaces open, reaps orphaned children (it may run as
//! PID 1 of the pod's PID namespace) and exits 0 on SIGTERM or SIGINT. It is
//! linked statically (see build.rs) so an image holding only this file runs.

use std::mem::MaybeUninit;

/// Signals the process waits for; all of them stay blocked and are taken with
/// `sigwaitinfo`, so no code runs in signal-handler context.
const SIGNALS: [libc::c_int; 3] = [libc::SIGTERM, libc::SIGINT, libc::SIGCHLD];

extern "C" fn noop_handler(_: libc::c_int) {}

fn fail(what: &str) -> ! {
    eprintln!("crius-pause: {what}: {}", std::io::Error::last_os_error());
    std::process::exit(1)
}

/// Reaps every child that has exited, without blocking.
fn reap_children() {
    loop {
        let mut status = 0;
        // SAFETY: waitpid only writes the status into our local integer.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid <= 0 {
            return;
        }
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    if let Some(arg) = args.next() {
        if arg == "-v" || arg == "--version" {
            println!("crius-pause {}", env!("CARGO_PKG_VERSION"));
            return;
        }
    }

    // A signal without a handler is dropped for PID 1 of a PID namespace, so
    // give each one a handler even though the signals are taken synchronously.
    let mut set = MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigemptyset initializes the set we pass it.
    if unsafe { libc::sigemptyset(set.as_mut_ptr()) } != 0 {
        fail("sigemptyset");
    }
    // SAFETY: the set was initialized by sigemptyset above.
    let mut set = unsafe { set.assume_init() };
    for sig in SIGNALS {
        // SAFETY: a zeroed sigaction is a valid value to fill in.
        let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
        action.sa_sigaction = noop_handler as extern "C" fn(libc::c_int) as libc::sighandler_t;
        action.sa_flags = libc::SA_RESTART;
        // SAFETY: `action` is fully initialized and the handler does nothing.
        if unsafe { libc::sigaction(sig, &action, std::ptr::null_mut()) } != 0 {
            fail("sigaction");
        }
        // SAFETY: `set` is an initialized sigset_t.
        unsafe { libc::sigaddset(&mut set, sig) };
    }
    // SAFETY: `set` is initialized; the old mask is not needed.
    if unsafe { libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) } != 0 {
        fail("sigprocmask");
    }

    // Children that exited before the mask was in place.
    reap_children();
    loop {
        // SAFETY: `set` is initialized; the siginfo pointer may be null.
        let sig = unsafe { libc::sigwaitinfo(&set, std::ptr::null_mut()) };
        match sig {
            libc::SIGTERM | libc::SIGINT => {
                reap_children();
                std::process::exit(0);
            }
            libc::SIGCHLD => reap_children(),
            _ => {}
        }
    }
}
