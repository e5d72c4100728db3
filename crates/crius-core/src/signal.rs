//! Stop signals: the CRI's `Signal` enum (numbered by the enum, not the kernel), an
//! image's `StopSignal` text, and the kernel numbers `kill` takes.

use crius_cri_api::v1::Signal;

/// The first real-time signal as programs see it: the kernel's 32 plus the two glibc
/// keeps for itself (runc, containerd and `kill -l` agree).
const SIGRTMIN: i32 = 34;
const SIGRTMAX: i32 = 64;

/// The classic signals, each canonical name before its aliases.
const CLASSIC: &[(Signal, i32)] = &[
    (Signal::Sighup, libc::SIGHUP),
    (Signal::Sigint, libc::SIGINT),
    (Signal::Sigquit, libc::SIGQUIT),
    (Signal::Sigill, libc::SIGILL),
    (Signal::Sigtrap, libc::SIGTRAP),
    (Signal::Sigabrt, libc::SIGABRT),
    (Signal::Sigiot, libc::SIGIOT),
    (Signal::Sigbus, libc::SIGBUS),
    (Signal::Sigfpe, libc::SIGFPE),
    (Signal::Sigkill, libc::SIGKILL),
    (Signal::Sigusr1, libc::SIGUSR1),
    (Signal::Sigsegv, libc::SIGSEGV),
    (Signal::Sigusr2, libc::SIGUSR2),
    (Signal::Sigpipe, libc::SIGPIPE),
    (Signal::Sigalrm, libc::SIGALRM),
    (Signal::Sigterm, libc::SIGTERM),
    (Signal::Sigstkflt, libc::SIGSTKFLT),
    (Signal::Sigchld, libc::SIGCHLD),
    (Signal::Sigcld, libc::SIGCHLD),
    (Signal::Sigcont, libc::SIGCONT),
    (Signal::Sigstop, libc::SIGSTOP),
    (Signal::Sigtstp, libc::SIGTSTP),
    (Signal::Sigttin, libc::SIGTTIN),
    (Signal::Sigttou, libc::SIGTTOU),
    (Signal::Sigurg, libc::SIGURG),
    (Signal::Sigxcpu, libc::SIGXCPU),
    (Signal::Sigxfsz, libc::SIGXFSZ),
    (Signal::Sigvtalrm, libc::SIGVTALRM),
    (Signal::Sigprof, libc::SIGPROF),
    (Signal::Sigwinch, libc::SIGWINCH),
    (Signal::Sigio, libc::SIGIO),
    (Signal::Sigpoll, libc::SIGPOLL),
    (Signal::Sigpwr, libc::SIGPWR),
    (Signal::Sigsys, libc::SIGSYS),
];

/// The kernel number of a CRI signal; `None` for `SIGNAL_RUNTIME_DEFAULT`.
pub fn cri_to_number(sig: Signal) -> Option<i32> {
    let value = sig as i32;
    // SIGRTMIN (35) .. SIGRTMAX (65) in the enum are 34 .. 64 in the kernel.
    if (Signal::Sigrtmin as i32..=Signal::Sigrtmax as i32).contains(&value) {
        return Some(value - Signal::Sigrtmin as i32 + SIGRTMIN);
    }
    CLASSIC.iter().find(|(s, _)| *s == sig).map(|(_, n)| *n)
}

/// The CRI signal for a kernel number, by its canonical name; `SIGNAL_RUNTIME_DEFAULT`
/// for a number that is no signal.
pub fn number_to_cri(n: i32) -> Signal {
    if (SIGRTMIN..=SIGRTMAX).contains(&n) {
        return Signal::try_from(n - SIGRTMIN + Signal::Sigrtmin as i32)
            .unwrap_or(Signal::RuntimeDefault);
    }
    CLASSIC
        .iter()
        .find(|(_, num)| *num == n)
        .map_or(Signal::RuntimeDefault, |(s, _)| *s)
}

/// The number of an image's StopSignal, in any spelling an image uses: "SIGTERM",
/// "TERM", "15", "SIGRTMIN+3", "RTMAX-1".
pub fn parse_signal(name: &str) -> Option<i32> {
    let name = name.trim();
    if name.is_empty() {
        return None;
    }
    if let Ok(n) = name.parse::<i32>() {
        return (1..=SIGRTMAX).contains(&n).then_some(n);
    }
    let upper = name.to_ascii_uppercase();
    let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
    let rt = |base: i32, rest: &str, sign: i32| -> Option<i32> {
        let n = if rest.is_empty() {
            base
        } else {
            let (op, k) = rest.split_at(1);
            let k: i32 = k.parse().ok()?;
            match (op, sign) {
                ("+", 1) | ("-", -1) => base + sign * k,
                _ => return None,
            }
        };
        (SIGRTMIN..=SIGRTMAX).contains(&n).then_some(n)
    };
    if let Some(rest) = bare.strip_prefix("RTMIN") {
        return rt(SIGRTMIN, rest, 1);
    }
    if let Some(rest) = bare.strip_prefix("RTMAX") {
        return rt(SIGRTMAX, rest, -1);
    }
    let full = format!("SIG{bare}");
    CLASSIC
        .iter()
        .find(|(s, _)| s.signal_name() == Some(full.as_str()))
        .map(|(_, n)| *n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_cri_signal_maps_to_a_kernel_number_and_back_by_its_canonical_name() {
        let aliases = [
            (Signal::Sigcld, Signal::Sigchld),
            (Signal::Sigiot, Signal::Sigabrt),
            (Signal::Sigpoll, Signal::Sigio),
        ];
        for value in 1..=65 {
            let sig = Signal::try_from(value).unwrap();
            let n = cri_to_number(sig).unwrap_or_else(|| panic!("{sig:?} has no number"));
            assert!((1..=64).contains(&n), "{sig:?} -> {n}");
            let back = number_to_cri(n);
            let want = aliases
                .iter()
                .find(|(a, _)| *a == sig)
                .map_or(sig, |(_, c)| *c);
            assert_eq!(back, want, "{sig:?} -> {n} -> {back:?}");
        }
        assert_eq!(cri_to_number(Signal::RuntimeDefault), None);
        assert_eq!(cri_to_number(Signal::Sigterm), Some(15));
        assert_eq!(cri_to_number(Signal::Sigusr1), Some(10));
        assert_eq!(cri_to_number(Signal::Sigrtmin), Some(34));
        assert_eq!(cri_to_number(Signal::Sigrtminplus15), Some(49));
        assert_eq!(cri_to_number(Signal::Sigrtmaxminus14), Some(50));
        assert_eq!(cri_to_number(Signal::Sigrtmax), Some(64));
        assert_eq!(number_to_cri(0), Signal::RuntimeDefault);
        assert_eq!(number_to_cri(65), Signal::RuntimeDefault);
        assert_eq!(number_to_cri(32), Signal::RuntimeDefault);
    }

    #[test]
    fn image_stop_signals_parse_in_every_spelling() {
        assert_eq!(parse_signal("SIGTERM"), Some(15));
        assert_eq!(parse_signal("term"), Some(15));
        assert_eq!(parse_signal("SIGQUIT"), Some(3));
        assert_eq!(parse_signal("SIGWINCH"), Some(28));
        assert_eq!(parse_signal("9"), Some(9));
        assert_eq!(parse_signal("SIGRTMIN"), Some(34));
        assert_eq!(parse_signal("SIGRTMIN+3"), Some(37));
        assert_eq!(parse_signal("RTMAX-1"), Some(63));
        assert_eq!(parse_signal("SIGRTMIN-1"), None);
        assert_eq!(parse_signal("SIGRTMAX-40"), None);
        assert_eq!(parse_signal(""), None);
        assert_eq!(parse_signal("SIGNOPE"), None);
        assert_eq!(parse_signal("99"), None);
    }
}
