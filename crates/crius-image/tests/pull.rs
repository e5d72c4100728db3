//! Pulls from the fixture registries (e2e/fixtures/setup.sh): plain images,
//! indexes, auth, deduplication, lookups and removal.

mod common;

use std::os::unix::fs::MetadataExt;

use common::{block_on, fixture_store, ls, Fixtures};
use crius_image::{Credentials, Error};

#[test]
fn pull_busybox_records_it_and_keeps_hard_links() {
    let f = Fixtures::load();
    let t = fixture_store(&f);
    let name = f.image("busybox");
    let img = block_on(t.store.pull(&name, None)).unwrap();
    assert_eq!(img.id, f.get("CRIUS_TEST_BUSYBOX_ID"));
    assert_eq!(img.repo_tags, vec![name.clone()]);
    assert_eq!(
        img.repo_digests,
        vec![format!(
            "{}/crius-test/busybox@{}",
            f.registry(),
            f.get("CRIUS_TEST_BUSYBOX_DIGEST")
        )]
    );
    assert!(img.size > 500_000, "size {}", img.size);
    assert_eq!(t.store.list(), vec![img.clone()]);

    let layers = t.store.layer_paths(&img.id).unwrap();
    assert_eq!(layers.len(), 1);
    let bin = layers[0].join("bin");
    let busybox = std::fs::metadata(bin.join("busybox")).unwrap();
    let ls_meta = std::fs::metadata(bin.join("ls")).unwrap();
    assert_eq!(
        ls_meta.ino(),
        busybox.ino(),
        "/bin/ls is a hard link to busybox"
    );
    assert!(
        busybox.nlink() > 100,
        "busybox has {} links",
        busybox.nlink()
    );
    assert_eq!(busybox.mode() & 0o777, 0o755);
    let tmp = std::fs::metadata(layers[0].join("tmp")).unwrap();
    assert_eq!(tmp.mode() & 0o7777, 0o1777);
    let home = std::fs::metadata(layers[0].join("home/crius-user")).unwrap();
    assert_eq!((home.uid(), home.gid()), (1000, 1000));
    assert!(
        std::fs::symlink_metadata(layers[0].join("lib64/ld-linux-x86-64.so.2"))
            .unwrap()
            .file_type()
            .is_symlink()
    );

    let config = t.store.image_config(&name).unwrap();
    let cmd = config.config().as_ref().and_then(|c| c.cmd().clone());
    assert_eq!(cmd, Some(vec!["sh".to_string()]));
}

#[test]
fn resolve_by_id_prefix_tag_digest_and_short_name() {
    let f = Fixtures::load();
    let conf = format!(
        "unqualified-search-registries = [\"{r}\"]\n[[registry]]\nlocation = \"{r}\"\ninsecure = true\n",
        r = f.registry()
    );
    let t = common::store_with(&conf, |_| {});
    // a short name goes through unqualified-search-registries
    let img = block_on(t.store.pull("crius-test/busybox", None)).unwrap();
    assert_eq!(img.repo_tags, vec![f.image("busybox")]);
    let hex = img.id.strip_prefix("sha256:").unwrap();
    for name in [
        img.id.clone(),
        hex.to_string(),
        hex[..12].to_string(),
        f.image("busybox"),
        "crius-test/busybox".to_string(),
        "crius-test/busybox:latest".to_string(),
        img.repo_digests[0].clone(),
    ] {
        assert_eq!(t.store.resolve(&name).unwrap().id, img.id, "{name}");
    }
    for missing in ["crius-test/busybox:other", "nothing", "abcdef0123"] {
        let err = t.store.resolve(missing).unwrap_err();
        assert!(err.is_not_found(), "{missing}: {err}");
    }
    let err = t.store.resolve("Not A Name").unwrap_err();
    assert!(err.is_invalid_argument(), "{err}");
}

#[test]
fn index_pulls_the_host_platform_manifest() {
    let f = Fixtures::load();
    let t = fixture_store(&f);
    let img = block_on(t.store.pull(&f.image("busybox-index"), None)).unwrap();
    assert_eq!(img.id, f.get("CRIUS_TEST_BUSYBOX_INDEX_ID"));
    // the repo digest is what the tag points to: the index
    assert_eq!(
        img.repo_digests,
        vec![format!(
            "{}/crius-test/busybox-index@{}",
            f.registry(),
            f.get("CRIUS_TEST_BUSYBOX_INDEX_DIGEST")
        )]
    );
    let layer = &t.store.layer_paths(&img.id).unwrap()[0];
    assert!(layer.join("bin/busybox").exists());
    assert!(!layer.join("etc/crius-platform").exists());

    // pulling by the index digest finds the same image
    let by_digest = format!(
        "{}/crius-test/busybox-index@{}",
        f.registry(),
        f.get("CRIUS_TEST_BUSYBOX_INDEX_DIGEST")
    );
    let again = block_on(t.store.pull(&by_digest, None)).unwrap();
    assert_eq!(again.id, img.id);
}

#[test]
fn index_without_the_host_platform_is_refused() {
    let f = Fixtures::load();
    let t = fixture_store(&f);
    let err = block_on(t.store.pull(&f.image("arm64-only"), None)).unwrap_err();
    match &err {
        Error::NoMatchingPlatform {
            platform,
            available,
            ..
        } => {
            assert!(platform.starts_with("linux/"), "{platform}");
            assert!(available.contains("linux/arm64"), "{available}");
        }
        other => panic!("expected NoMatchingPlatform, got {other}"),
    }
    assert!(err.to_string().contains("arm64-only"), "{err}");
    assert!(t.store.list().is_empty());
}

#[test]
fn unknown_image_is_not_found_and_bad_names_are_invalid() {
    let f = Fixtures::load();
    let t = fixture_store(&f);
    let err = block_on(t.store.pull(&f.image("does-not-exist"), None)).unwrap_err();
    assert!(err.is_not_found(), "{err}");
    assert!(err.to_string().contains("does-not-exist"), "{err}");
    let missing_tag = format!("{}/crius-test/busybox:no-such-tag", f.registry());
    assert!(block_on(t.store.pull(&missing_tag, None))
        .unwrap_err()
        .is_not_found());
    let err = block_on(t.store.pull("Busybox:latest", None)).unwrap_err();
    assert!(err.is_invalid_argument(), "{err}");
}

#[test]
fn unreachable_registry_is_reported_as_such() {
    let t = common::store_with("", |_| {});
    let port = common::closed_port();
    let name = format!("127.0.0.1:{port}/x/y:1");
    let err = block_on(t.store.pull(&name, None)).unwrap_err();
    assert!(err.is_unavailable(), "{err}");
    assert!(
        err.to_string().contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );
}

#[test]
fn basic_auth_with_request_or_config_credentials() {
    let f = Fixtures::load();
    let t = fixture_store(&f);
    let name = format!(
        "{}/crius-test/busybox:latest",
        f.get("CRIUS_TEST_AUTH_REGISTRY")
    );

    let err = block_on(t.store.pull(&name, None)).unwrap_err();
    assert!(err.is_unauthorized(), "no credentials: {err}");

    let wrong = Credentials {
        username: f.get("CRIUS_TEST_AUTH_USER"),
        password: "wrong-password".into(),
        ..Default::default()
    };
    let err = block_on(t.store.pull(&name, Some(&wrong))).unwrap_err();
    assert!(err.is_unauthorized(), "wrong password: {err}");
    assert!(t.store.list().is_empty());

    let right = Credentials {
        username: f.get("CRIUS_TEST_AUTH_USER"),
        password: f.get("CRIUS_TEST_AUTH_PASS"),
        ..Default::default()
    };
    let img = block_on(t.store.pull(&name, Some(&right))).unwrap();
    assert_eq!(img.id, f.get("CRIUS_TEST_BUSYBOX_ID"));

    // the same from the daemon config, as base64 "auth"
    use base64::Engine as _;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!(
        "{}:{}",
        f.get("CRIUS_TEST_AUTH_USER"),
        f.get("CRIUS_TEST_AUTH_PASS")
    ));
    let conf = format!(
        "[[registry]]\nlocation = \"{}\"\ninsecure = true\n",
        f.get("CRIUS_TEST_AUTH_REGISTRY")
    );
    let t2 = common::store_with(&conf, |c| {
        c.registry_auths.insert(
            f.get("CRIUS_TEST_AUTH_REGISTRY"),
            Credentials {
                auth,
                ..Default::default()
            },
        );
    });
    let img2 = block_on(t2.store.pull(&name, None)).unwrap();
    assert_eq!(img2.id, img.id);
}

#[test]
fn concurrent_pulls_download_each_layer_once() {
    let f = Fixtures::load();
    let t = fixture_store(&f);
    let multi = f.image("multilayer");
    let (a, b) = block_on(async {
        let s1 = t.store.clone();
        let s2 = t.store.clone();
        let m1 = multi.clone();
        let m2 = multi.clone();
        let h1 = tokio::spawn(async move { s1.pull(&m1, None).await });
        let h2 = tokio::spawn(async move { s2.pull(&m2, None).await });
        (h1.await.unwrap(), h2.await.unwrap())
    });
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.id, f.get("CRIUS_TEST_MULTILAYER_ID"));
    assert_eq!(a, b);
    assert_eq!(
        t.store.download_count(),
        4,
        "four layers, each downloaded once"
    );
    assert_eq!(ls(&t.root().join("layers")).len(), 4);

    // busybox is the multilayer image's bottom layer: nothing to download
    let bb = block_on(t.store.pull(&f.image("busybox"), None)).unwrap();
    assert_eq!(t.store.download_count(), 4);
    assert_eq!(
        t.store.layer_paths(&bb.id).unwrap()[0],
        t.store.layer_paths(&a.id).unwrap()[0]
    );

    // a re-pull of a present image downloads nothing either
    block_on(t.store.pull(&multi, None)).unwrap();
    assert_eq!(t.store.download_count(), 4);

    // concurrent pulls of two images sharing a layer
    let t2 = fixture_store(&f);
    let bb_name = f.image("busybox");
    block_on(async {
        let (x, y) = tokio::join!(t2.store.pull(&multi, None), t2.store.pull(&bb_name, None));
        x.unwrap();
        y.unwrap();
    });
    assert_eq!(t2.store.download_count(), 4);
}

#[test]
fn remove_takes_one_tag_or_the_whole_image() {
    let f = Fixtures::load();
    let t = fixture_store(&f);
    let bb = block_on(t.store.pull(&f.image("busybox"), None)).unwrap();
    let idx = block_on(t.store.pull(&f.image("busybox-index"), None)).unwrap();
    assert_eq!(bb.id, idx.id, "same config behind both names");
    let img = t.store.resolve(&bb.id).unwrap();
    assert_eq!(img.repo_tags.len(), 2);
    assert_eq!(t.store.list().len(), 1);

    // removing one of two tags keeps the image
    t.store.remove(&f.image("busybox-index")).unwrap();
    let img = t.store.resolve(&bb.id).unwrap();
    assert_eq!(img.repo_tags, vec![f.image("busybox")]);
    assert!(t
        .store
        .resolve(&f.image("busybox-index"))
        .unwrap_err()
        .is_not_found());

    // removing the last tag removes the image, its layers and blobs
    t.store.remove(&f.image("busybox")).unwrap();
    assert!(t.store.list().is_empty());
    assert!(t.store.resolve(&bb.id).unwrap_err().is_not_found());
    assert!(ls(&t.root().join("layers")).is_empty());
    assert!(ls(&t.root().join("blobs/sha256")).is_empty());
    assert!(t.store.remove(&bb.id).unwrap_err().is_not_found());

    // by id while several tags remain: the whole image goes
    block_on(t.store.pull(&f.image("busybox"), None)).unwrap();
    block_on(t.store.pull(&f.image("busybox-index"), None)).unwrap();
    t.store.remove(&bb.id).unwrap();
    assert!(t.store.list().is_empty());

    // a layer shared with another image stays
    let multi = block_on(t.store.pull(&f.image("multilayer"), None)).unwrap();
    block_on(t.store.pull(&f.image("busybox"), None)).unwrap();
    t.store.remove(&bb.id).unwrap();
    assert_eq!(ls(&t.root().join("layers")).len(), 4);
    assert!(t.store.layer_paths(&multi.id).unwrap()[0]
        .join("bin/busybox")
        .exists());
}

#[test]
fn the_index_survives_reopen_and_fs_usage_counts_it() {
    let f = Fixtures::load();
    let t = fixture_store(&f);
    let before = t.store.fs_usage().unwrap();
    let img = block_on(t.store.pull(&f.image("multilayer"), None)).unwrap();
    let after = t.store.fs_usage().unwrap();
    assert!(
        after.used_bytes >= before.used_bytes + 24 * 1024 * 1024,
        "{before:?} -> {after:?}"
    );
    assert!(
        after.inodes_used > before.inodes_used + 30,
        "{before:?} -> {after:?}"
    );
    assert!(t.root().starts_with(&after.mountpoint), "{after:?}");

    let mut config = crius_image::ImageStoreConfig::new(t.root());
    config.registries_conf = Some(t.dir.path().join("registries.conf"));
    let reopened = crius_image::ImageStore::open(config).unwrap();
    assert_eq!(reopened.list(), vec![img.clone()]);
    assert_eq!(reopened.resolve(&f.image("multilayer")).unwrap().id, img.id);
}

#[test]
fn pause_image_is_installed_locally_and_pinned() {
    let t = common::store_with("", |_| {});
    let dir = common::disk_tempdir();
    let bin = dir.path().join("pause");
    std::fs::write(&bin, b"\x7fELF not really").unwrap();
    let img = t
        .store
        .install_pause_image("registry.k8s.io/pause:3.10", &bin)
        .unwrap();
    assert!(img.pinned);
    assert_eq!(
        img.repo_tags,
        vec!["registry.k8s.io/pause:3.10".to_string()]
    );
    assert_eq!(t.store.resolve("registry.k8s.io/pause:3.10").unwrap(), img);
    let config = t.store.image_config(&img.id).unwrap();
    let entrypoint = config
        .config()
        .as_ref()
        .and_then(|c| c.entrypoint().clone());
    assert_eq!(entrypoint, Some(vec!["/pause".to_string()]));
    let layer = &t.store.layer_paths(&img.id).unwrap()[0];
    let m = std::fs::metadata(layer.join("pause")).unwrap();
    assert_eq!(m.mode() & 0o777, 0o755);
    assert_eq!(
        std::fs::read(layer.join("pause")).unwrap(),
        b"\x7fELF not really"
    );
    // the same binary again: same id, no duplicate
    let again = t
        .store
        .install_pause_image("registry.k8s.io/pause:3.10", &bin)
        .unwrap();
    assert_eq!(again, img);
    assert_eq!(t.store.list().len(), 1);
}
