//! Hostile images served by a real registry (docker-registry, pushed with
//! skopeo): layers that try to reach outside their directory, and images past
//! the configured bounds. Each pull either succeeds with the layer contained or
//! fails naming the image and the bound, and a host-side sentinel is unchanged
//! and the store holds nothing of the failed pull.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use common::{block_on, store_with, Comp, ScratchRegistry};
use crius_image::Error;

/// One path: name, mode, uid, gid, mtime, ctime, ctime ns, contents.
type PathState = (String, u32, u32, u32, i64, i64, i64, Vec<u8>);

/// A bound set on the store's config.
type Tweak = Box<dyn Fn(&mut crius_image::ImageStoreConfig)>;

/// What lstat says of every path of a small tree (ctime included), plus contents.
fn snapshot(dir: &Path) -> Vec<PathState> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(p) = stack.pop() {
        let m = std::fs::symlink_metadata(&p).unwrap();
        if m.is_dir() {
            stack.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        }
        let content = if m.is_file() {
            std::fs::read(&p).unwrap()
        } else {
            Vec::new()
        };
        out.push((
            p.display().to_string(),
            m.mode(),
            m.uid(),
            m.gid(),
            m.mtime(),
            m.ctime(),
            m.ctime_nsec(),
            content,
        ));
    }
    out.sort();
    out
}

fn sentinel() -> tempfile::TempDir {
    let d = common::disk_tempdir();
    std::fs::create_dir(d.path().join("etc")).unwrap();
    std::fs::write(d.path().join("etc/passwd"), b"root:x:0:0::/root:/bin/sh\n").unwrap();
    d
}

/// A tar written entry by entry with raw names and link names.
fn hostile_tar(entries: &[(&str, tar::EntryType, &str, u32)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, kind, link, mode) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(*kind);
        h.set_mode(*mode);
        h.set_mtime(42);
        h.set_uid(4242);
        h.set_gid(4242);
        h.set_size(0);
        let old = h.as_old_mut();
        old.name[..name.len()].copy_from_slice(name.as_bytes());
        old.linkname[..link.len()].copy_from_slice(link.as_bytes());
        h.set_cksum();
        b.append(&h, std::io::empty()).unwrap();
    }
    b.into_inner().unwrap()
}

fn scratch_store(
    reg: &ScratchRegistry,
    tweak: impl FnOnce(&mut crius_image::ImageStoreConfig),
) -> common::TestStore {
    store_with(
        &format!(
            "[[registry]]\nlocation = \"{}\"\ninsecure = true\n",
            reg.addr
        ),
        tweak,
    )
}

/// Nothing of a failed pull is left: no record, no layer dir, no temp dir.
fn assert_store_empty(t: &common::TestStore) {
    assert!(t.store.list().is_empty(), "{:?}", t.store.list());
    let layers = common::ls(&t.root().join("layers"));
    assert!(layers.is_empty(), "left behind: {layers:?}");
}

#[test]
fn a_layer_that_swaps_its_directories_for_links_out_changes_nothing_outside() {
    let s = sentinel();
    let out = s.path().join("etc").display().to_string();
    let before = snapshot(s.path());
    let reg = ScratchRegistry::start();

    // legal content: a directory replaced by a symlink out (a symlink is just
    // data in the layer); the end-of-layer pass must not chmod through it
    let layout = common::disk_tempdir();
    let swap = hostile_tar(&[
        ("etc/", tar::EntryType::Directory, "", 0o777),
        ("etc", tar::EntryType::Symlink, &out, 0o777),
        (
            "up",
            tar::EntryType::Symlink,
            "../../../../../../../../..",
            0o777,
        ),
    ]);
    common::write_oci_layout(
        layout.path(),
        "v1",
        &[
            (common::tar_of(&[("ok", b"1")]), Comp::Gzip),
            (swap, Comp::Gzip),
        ],
    );
    let name = reg.push(layout.path(), "v1", "hostile/swap");
    let t = scratch_store(&reg, |_| {});
    block_on(t.store.pull(&name, None)).unwrap();
    assert_eq!(before, snapshot(s.path()));

    // writing through the swapped directory fails the pull and leaves nothing
    for (i, tail) in [
        ("etc/passwd", tar::EntryType::Regular, "", 0o644),
        ("etc/.wh.passwd", tar::EntryType::Regular, "", 0o644),
        ("etc/.wh..wh..opq", tar::EntryType::Regular, "", 0o644),
        ("stolen", tar::EntryType::Link, "etc/passwd", 0o644),
        ("up/tmp/x", tar::EntryType::Regular, "", 0o644),
    ]
    .into_iter()
    .enumerate()
    {
        let layout = common::disk_tempdir();
        let evil = hostile_tar(&[
            ("etc/", tar::EntryType::Directory, "", 0o755),
            ("etc", tar::EntryType::Symlink, &out, 0o777),
            (
                "up",
                tar::EntryType::Symlink,
                "../../../../../../../../..",
                0o777,
            ),
            tail,
        ]);
        common::write_oci_layout(
            layout.path(),
            "v1",
            &[
                (common::tar_of(&[("ok", b"1")]), Comp::Gzip),
                (evil, Comp::Zstd),
            ],
        );
        let name = reg.push(layout.path(), "v1", &format!("hostile/write{i}"));
        let t = scratch_store(&reg, |_| {});
        let err = block_on(t.store.pull(&name, None)).unwrap_err();
        assert!(
            matches!(err, Error::UnsafeLayerPath { .. }),
            "{tail:?}: {err}"
        );
        let msg = err.to_string();
        assert!(msg.contains(&name) && msg.contains("symlink"), "{msg}");
        assert_store_empty(&t);
        assert_eq!(before, snapshot(s.path()), "{tail:?}");
    }
}

#[test]
fn an_image_past_a_bound_fails_naming_the_image_and_the_key_and_leaves_nothing() {
    let reg = ScratchRegistry::start();
    let layout = common::disk_tempdir();
    let files: Vec<(String, Vec<u8>)> = (0..50)
        .map(|i| (format!("f{i}"), vec![b'x'; 40_000]))
        .collect();
    let refs: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(n, d)| (n.as_str(), d.as_slice()))
        .collect();
    let tars = vec![
        (common::tar_of(&[("small", b"s")]), Comp::Gzip),
        (common::tar_of(&refs), Comp::Gzip),
    ];
    common::write_oci_layout(layout.path(), "v1", &tars);
    let name = reg.push(layout.path(), "v1", "bounds/image");

    let cases: Vec<(&str, Tweak)> = vec![
        (
            "max_layer_entries",
            Box::new(|c| c.limits.layer.max_entries = 20),
        ),
        (
            "max_layer_size",
            Box::new(|c| c.limits.layer.max_size = 1 << 20),
        ),
        (
            "max_manifest_size",
            Box::new(|c| c.limits.max_manifest_size = 300),
        ),
        (
            "max_config_size",
            Box::new(|c| c.limits.max_config_size = 100),
        ),
    ];
    for (key, tweak) in cases {
        let t = scratch_store(&reg, |c| tweak(c));
        let err = block_on(t.store.pull(&name, None)).unwrap_err();
        match &err {
            Error::LimitExceeded { key: k, .. } => assert_eq!(*k, key),
            other => panic!("{key}: expected LimitExceeded, got {other}"),
        }
        let msg = err.to_string();
        assert!(msg.contains(&name), "{msg}");
        assert!(msg.contains(&format!("crius.image.{key}")), "{msg}");
        assert_store_empty(&t);
        let blobs = common::ls(&t.root().join("blobs/sha256"));
        assert!(blobs.is_empty(), "{key}: blobs left {blobs:?}");
    }
    // with the defaults it pulls
    let t = scratch_store(&reg, |_| {});
    block_on(t.store.pull(&name, None)).unwrap();
}
