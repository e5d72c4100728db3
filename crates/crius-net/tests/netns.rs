//! Network namespace pins against the real kernel (run as root).

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;

use crius_net::{in_netns, Error, NetNs};

/// Removes the pin even when an assertion fails.
struct PinGuard(NetNs);

impl Drop for PinGuard {
    fn drop(&mut self) {
        let _ = self.0.remove();
    }
}

fn netns_id(path: &Path) -> String {
    in_netns(path, || std::fs::read_link("/proc/thread-self/ns/net"))
        .expect("enter")
        .expect("readlink")
        .display()
        .to_string()
}

#[test]
fn created_netns_is_pinned_separate_and_has_loopback_up() {
    assert!(nix::unistd::geteuid().is_root(), "run as root");
    let dir = tempfile::tempdir().unwrap();
    let pins = dir.path().join("netns");
    let ns = PinGuard(NetNs::create(&pins, "pod-a").unwrap());
    assert_eq!(ns.0.path(), pins.join("pod-a"));
    assert!(ns.0.is_pinned());

    let host = std::fs::read_link("/proc/self/ns/net")
        .unwrap()
        .display()
        .to_string();
    let inside = netns_id(ns.0.path());
    assert_ne!(host, inside, "the pin must hold a namespace of its own");
    // Same namespace every time it is entered: the pin keeps it alive without processes.
    assert_eq!(inside, netns_id(ns.0.path()));

    // Loopback works only if lo is up: talk to ourselves over 127.0.0.1 inside.
    let echoed =
        ns.0.run(|| -> std::io::Result<Vec<u8>> {
            let listener = TcpListener::bind("127.0.0.1:0")?;
            let addr = listener.local_addr()?;
            let mut client = TcpStream::connect(addr)?;
            let (mut server, _) = listener.accept()?;
            client.write_all(b"ping")?;
            let mut buf = [0u8; 4];
            server.read_exact(&mut buf)?;
            Ok(buf.to_vec())
        })
        .unwrap()
        .unwrap();
    assert_eq!(echoed, b"ping");

    // The namespace has nothing but lo.
    let links = common::ip_in(ns.0.path(), &["-o", "link", "show"]);
    let links = String::from_utf8_lossy(&links.stdout).into_owned();
    assert_eq!(links.lines().count(), 1, "{links}");
    assert!(links.contains(": lo:") && links.contains("UP"), "{links}");
}

#[test]
fn remove_unmounts_and_unlinks_and_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let ns = NetNs::create(dir.path(), "pod-b").unwrap();
    let _guard = PinGuard(ns.clone());
    let path = ns.path().to_path_buf();
    ns.remove().unwrap();
    assert!(!path.exists());
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mountinfo.contains(&path.display().to_string()),
        "pin still mounted"
    );
    ns.remove().unwrap();
    assert!(!ns.is_pinned());
    // The name can be used again afterwards.
    let again = NetNs::create(dir.path(), "pod-b").unwrap();
    let _guard2 = PinGuard(again.clone());
    assert!(again.is_pinned());
}

#[test]
fn create_refuses_an_existing_pin() {
    let dir = tempfile::tempdir().unwrap();
    let ns = PinGuard(NetNs::create(dir.path(), "dup").unwrap());
    let err = NetNs::create(dir.path(), "dup").unwrap_err();
    assert!(matches!(err, Error::NetNsExists { .. }), "{err}");
    assert!(err.to_string().contains("dup"));
    // The first one is untouched.
    assert!(ns.0.is_pinned());
    assert!(matches!(
        NetNs::create(dir.path(), "../escape"),
        Err(Error::NetNsCreate { .. })
    ));
}

#[test]
fn in_netns_reports_bad_paths_and_passes_values_back() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing");
    assert!(matches!(
        in_netns(&missing, || ()),
        Err(Error::NetNsEnter { .. })
    ));
    // A plain file is not a namespace: setns must fail, not run the closure.
    let plain = dir.path().join("plain");
    std::fs::write(&plain, b"").unwrap();
    let mut ran = false;
    let err = in_netns(&plain, || ran = true).unwrap_err();
    assert!(err.to_string().contains("setns"), "{err}");
    assert!(!ran);
    assert!(!NetNs::from_path(plain).is_pinned());
    // The caller's own namespace works and values come back.
    assert_eq!(in_netns(Path::new("/proc/self/ns/net"), || 42).unwrap(), 42);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creating_from_a_tokio_runtime_leaves_worker_threads_in_the_host_namespace() {
    let host = std::fs::read_link("/proc/self/ns/net").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut guards = Vec::new();
    for i in 0..4 {
        let pins = dir.path().to_path_buf();
        let ns = tokio::task::spawn_blocking(move || NetNs::create(&pins, &format!("t{i}")))
            .await
            .unwrap()
            .unwrap();
        guards.push(PinGuard(ns));
        let here = std::fs::read_link("/proc/thread-self/ns/net").unwrap();
        assert_eq!(here, host, "a runtime thread changed namespace");
    }
    for handle in (0..4).map(|_| {
        tokio::task::spawn_blocking(|| std::fs::read_link("/proc/thread-self/ns/net").unwrap())
    }) {
        assert_eq!(handle.await.unwrap(), host);
    }
}

#[test]
fn list_finds_the_pins_in_a_dir() {
    let dir = tempfile::tempdir().unwrap();
    assert!(NetNs::list(&dir.path().join("absent")).unwrap().is_empty());
    let a = PinGuard(NetNs::create(dir.path(), "a").unwrap());
    let b = PinGuard(NetNs::create(dir.path(), "b").unwrap());
    // A stale empty file (left by a crash before the bind mount) is listed but not pinned.
    std::fs::write(dir.path().join("c"), b"").unwrap();
    let listed = NetNs::list(dir.path()).unwrap();
    let paths: Vec<_> = listed.iter().map(|n| n.path().to_path_buf()).collect();
    assert_eq!(paths, [a.0.path(), b.0.path(), &dir.path().join("c")]);
    assert_eq!(
        listed.iter().map(NetNs::is_pinned).collect::<Vec<_>>(),
        [true, true, false]
    );
    b.0.remove().unwrap();
    listed[2].remove().unwrap();
    assert_eq!(NetNs::list(dir.path()).unwrap(), std::slice::from_ref(&a.0));
}
