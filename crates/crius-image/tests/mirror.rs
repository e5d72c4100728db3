//! registries.conf in action: mirrors (named by the source), mirror fallback,
//! blocked registries, aliases; and a registry serving corrupted bytes.

mod common;

use common::{block_on, closed_port, store_with, Comp, Fixtures, ScratchRegistry};
use crius_image::Error;

#[test]
fn image_pulled_through_a_mirror_is_listed_under_the_source_name() {
    let f = Fixtures::load();
    // registry.k8s.io cannot be reached from here: only the mirror can serve it
    let conf = format!(
        r#"
[[registry]]
prefix = "registry.k8s.io"
location = "registry.k8s.io"
[[registry.mirror]]
location = "{}"
insecure = true
"#,
        f.registry()
    );
    let t = store_with(&conf, |_| {});
    let img = block_on(
        t.store
            .pull("registry.k8s.io/crius-test/busybox:latest", None),
    )
    .unwrap();
    assert_eq!(img.id, f.get("CRIUS_TEST_BUSYBOX_ID"));
    assert_eq!(
        img.repo_tags,
        vec!["registry.k8s.io/crius-test/busybox:latest".to_string()]
    );
    assert_eq!(
        img.repo_digests,
        vec![format!(
            "registry.k8s.io/crius-test/busybox@{}",
            f.get("CRIUS_TEST_BUSYBOX_DIGEST")
        )]
    );
    assert!(!t.store.list()[0]
        .repo_tags
        .iter()
        .any(|t| t.contains("127.0.0.1")));
    assert_eq!(
        t.store
            .resolve("registry.k8s.io/crius-test/busybox:latest")
            .unwrap()
            .id,
        img.id
    );
}

#[test]
fn the_next_mirror_is_tried_when_the_first_is_unreachable() {
    let f = Fixtures::load();
    let dead = format!("127.0.0.1:{}", closed_port());
    let conf = format!(
        r#"
unqualified-search-registries = ["docker.io"]
[[registry]]
prefix = "docker.io/crius-test"
location = "docker.io/crius-test"
[[registry.mirror]]
location = "{dead}/crius-test"
insecure = true
[[registry.mirror]]
location = "{}/crius-test"
insecure = true
"#,
        f.registry()
    );
    let t = store_with(&conf, |_| {});
    let img = block_on(t.store.pull("crius-test/multilayer", None)).unwrap();
    assert_eq!(img.id, f.get("CRIUS_TEST_MULTILAYER_ID"));
    assert_eq!(
        img.repo_tags,
        vec!["docker.io/crius-test/multilayer:latest".to_string()]
    );
    assert_eq!(t.store.download_count(), 4);
}

#[test]
fn when_no_endpoint_has_the_image_the_answer_is_not_found() {
    let f = Fixtures::load();
    let dead = format!("127.0.0.1:{}", closed_port());
    let conf = format!(
        r#"
[[registry]]
prefix = "example.test"
location = "{dead}"
insecure = true
[[registry.mirror]]
location = "{}"
insecure = true
"#,
        f.registry()
    );
    let t = store_with(&conf, |_| {});
    // the mirror says "unknown", the source cannot be reached
    let err = block_on(t.store.pull("example.test/crius-test/nothing-here:1", None)).unwrap_err();
    assert!(err.is_not_found(), "{err}");
    assert!(
        err.to_string()
            .contains("example.test/crius-test/nothing-here:1"),
        "{err}"
    );
}

#[test]
fn blocked_registries_are_refused_before_any_request() {
    let f = Fixtures::load();
    let conf = format!(
        "[[registry]]\nlocation = \"{}\"\nblocked = true\n",
        f.registry()
    );
    let t = store_with(&conf, |_| {});
    let err = block_on(t.store.pull(&f.image("busybox"), None)).unwrap_err();
    assert!(matches!(err, Error::RegistryBlocked { .. }), "{err}");
    assert_eq!(t.store.download_count(), 0);
}

#[test]
fn aliases_and_reload_pick_up_a_changed_file() {
    let f = Fixtures::load();
    let t = store_with("", |_| {});
    // with no config a short name means docker.io, which is not reachable here
    assert!(block_on(t.store.pull("bb", None)).is_err());
    let conf = format!(
        "[aliases]\n\"bb\" = \"{}/crius-test/busybox\"\n[[registry]]\nlocation = \"{}\"\ninsecure = true\n",
        f.registry(),
        f.registry()
    );
    std::fs::write(t.dir.path().join("registries.conf"), conf).unwrap();
    t.store.reload_registries(&t.config).unwrap();
    let img = block_on(t.store.pull("bb", None)).unwrap();
    assert_eq!(img.repo_tags, vec![f.image("busybox")]);
    assert_eq!(t.store.resolve("bb").unwrap().id, img.id);
    // a broken file is reported and the old config stays in force
    std::fs::write(t.dir.path().join("registries.conf"), "[[registry]\n").unwrap();
    let err = t.store.reload_registries(&t.config).unwrap_err();
    assert!(err.to_string().contains("registries.conf"), "{err}");
    assert_eq!(t.store.resolve("bb").unwrap().id, img.id);
}

#[test]
fn a_corrupted_blob_fails_the_pull_and_leaves_nothing_behind() {
    let reg = ScratchRegistry::start();
    let layout = common::disk_tempdir();
    let payload: Vec<u8> = (0..200_000u32).flat_map(|i| i.to_le_bytes()).collect();
    let tars = vec![
        (common::tar_of(&[("good", b"fine")]), Comp::Gzip),
        (common::tar_of(&[("data.bin", &payload)]), Comp::Gzip),
    ];
    let (_, _, layer_digests) = common::write_oci_layout(layout.path(), "v1", &tars);
    let name = reg.push(layout.path(), "v1", "corrupt/image");

    // flip bytes in the middle of the second layer, on the registry's own disk
    let blob = reg.blob_file(&layer_digests[1]);
    let mut bytes = std::fs::read(&blob).unwrap();
    let mid = bytes.len() / 2;
    for b in &mut bytes[mid..mid + 16] {
        *b ^= 0xff;
    }
    std::fs::write(&blob, &bytes).unwrap();
    let actual_digest = common::sha256(&bytes);

    let t = store_with(
        &format!(
            "[[registry]]\nlocation = \"{}\"\ninsecure = true\n",
            reg.addr
        ),
        |_| {},
    );
    let err = block_on(t.store.pull(&name, None)).unwrap_err();
    match &err {
        Error::LayerDigestMismatch {
            layer,
            expected,
            actual,
            image,
        } => {
            assert_eq!(layer, &layer_digests[1]);
            assert_eq!(expected, &layer_digests[1]);
            assert_eq!(actual, &actual_digest);
            assert_eq!(image, &name);
        }
        other => panic!("expected LayerDigestMismatch, got {other}"),
    }
    assert!(err.to_string().contains(&layer_digests[1]), "{err}");

    // no image record, and no layer directory a later pull would trust
    assert!(t.store.list().is_empty());
    let layers = common::ls(&t.root().join("layers"));
    assert!(layers.iter().all(|l| !l.starts_with(".tmp-")), "{layers:?}");
    let corrupt_chain_present = t.root().join("layers").read_dir().unwrap().any(|e| {
        let p = e.unwrap().path();
        p.join("diff/data.bin").exists()
    });
    assert!(!corrupt_chain_present);
    assert!(t.store.resolve(&name).unwrap_err().is_not_found());

    // a store reopened after the failure holds no image either
    let mut config = crius_image::ImageStoreConfig::new(t.root());
    config.registries_conf = Some(t.dir.path().join("registries.conf"));
    assert!(crius_image::ImageStore::open(config)
        .unwrap()
        .list()
        .is_empty());
}

#[test]
fn an_unsafe_layer_fails_the_pull_with_the_path() {
    let reg = ScratchRegistry::start();
    let layout = common::disk_tempdir();
    // a tar entry climbing out of the layer dir, written with raw header bytes
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o644);
    h.set_size(5);
    let name = b"../../../../../../../../tmp/crius-escape-test";
    h.as_old_mut().name[..name.len()].copy_from_slice(name);
    h.set_cksum();
    b.append(&h, &b"pwned"[..]).unwrap();
    let tar = b.into_inner().unwrap();
    common::write_oci_layout(layout.path(), "v1", &[(tar, Comp::Gzip)]);
    let image = reg.push(layout.path(), "v1", "evil/slip");
    let t = store_with(
        &format!(
            "[[registry]]\nlocation = \"{}\"\ninsecure = true\n",
            reg.addr
        ),
        |_| {},
    );
    let err = block_on(t.store.pull(&image, None)).unwrap_err();
    match &err {
        Error::UnsafeLayerPath { path, .. } => {
            assert!(path.contains("crius-escape-test"), "{path}")
        }
        other => panic!("expected UnsafeLayerPath, got {other}"),
    }
    assert!(!std::path::Path::new("/tmp/crius-escape-test").exists());
    assert!(t.store.list().is_empty());
    assert!(common::ls(&t.root().join("layers")).is_empty());
}

#[test]
fn zstd_and_uncompressed_layers_from_a_scratch_registry() {
    let reg = ScratchRegistry::start();
    let layout = common::disk_tempdir();
    let tars = vec![
        (common::tar_of(&[("a", b"plain")]), Comp::None),
        (common::tar_of(&[("b", b"zstd")]), Comp::Zstd),
        (common::tar_of(&[("c", b"gzip")]), Comp::Gzip),
    ];
    let (manifest_digest, config_digest, _) = common::write_oci_layout(layout.path(), "v1", &tars);
    let image = reg.push(layout.path(), "v1", "formats/mixed");
    let t = store_with(
        &format!(
            "[[registry]]\nlocation = \"{}\"\ninsecure = true\n",
            reg.addr
        ),
        |_| {},
    );
    let img = block_on(t.store.pull(&image, None)).unwrap();
    assert_eq!(img.id, config_digest);
    assert_eq!(
        img.repo_digests,
        vec![format!("{}/formats/mixed@{manifest_digest}", reg.addr)]
    );
    let layers = t.store.layer_paths(&img.id).unwrap();
    assert_eq!(std::fs::read(layers[0].join("a")).unwrap(), b"plain");
    assert_eq!(std::fs::read(layers[1].join("b")).unwrap(), b"zstd");
    assert_eq!(std::fs::read(layers[2].join("c")).unwrap(), b"gzip");
}

#[test]
fn docker_schema2_manifests_and_manifest_lists() {
    let f = Fixtures::load();
    let reg = ScratchRegistry::start();
    let oci = std::path::PathBuf::from(f.get("CRIUS_TEST_OCI_DIR"));
    // skopeo converts the OCI image to a Docker v2 schema 2 manifest on push,
    // and the OCI index to a Docker manifest list
    let single = reg.push_args(
        &oci.join("busybox"),
        "latest",
        "docker/busybox",
        &["--format", "v2s2"],
    );
    let list = reg.push_args(
        &oci.join("busybox-index"),
        "latest",
        "docker/busybox-list",
        &["--format", "v2s2", "--all"],
    );
    let raw = std::process::Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{list}"))
        .output()
        .unwrap();
    let raw: serde_json::Value = serde_json::from_slice(&raw.stdout).unwrap();
    assert_eq!(
        raw["mediaType"],
        "application/vnd.docker.distribution.manifest.list.v2+json"
    );
    let t = store_with(
        &format!(
            "[[registry]]\nlocation = \"{}\"\ninsecure = true\n",
            reg.addr
        ),
        |_| {},
    );
    let a = block_on(t.store.pull(&single, None)).unwrap();
    let b = block_on(t.store.pull(&list, None)).unwrap();
    assert_eq!(a.id, b.id);
    let layer = &t.store.layer_paths(&a.id).unwrap()[0];
    assert!(layer.join("bin/busybox").exists());
    let config = t.store.image_config(&a.id).unwrap();
    assert_eq!(
        config.config().as_ref().and_then(|c| c.cmd().clone()),
        Some(vec!["sh".to_string()])
    );
}

#[test]
fn a_cancelled_pull_leaves_no_record_and_no_half_layer() {
    let f = Fixtures::load();
    let t = common::fixture_store(&f);
    let name = f.image("multilayer");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let store = t.store.clone();
    let layers = t.root().join("layers");
    let layers2 = layers.clone();
    rt.block_on(async move {
        let task = tokio::spawn(async move { store.pull(&name, None).await });
        // cancel while a layer is being unpacked into a temp dir
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let unpacking =
                layers2.exists() && common::ls(&layers2).iter().any(|l| l.starts_with(".tmp-"));
            if unpacking {
                break;
            }
            assert!(
                !task.is_finished(),
                "the pull finished before it could be cancelled"
            );
            assert!(
                std::time::Instant::now() < deadline,
                "no layer download seen"
            );
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
        task.abort();
        assert!(task.await.unwrap_err().is_cancelled());
    });
    // unpack threads notice the closed download and clean up
    drop(rt);
    assert!(t.store.list().is_empty());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while common::ls(&layers).iter().any(|l| l.starts_with(".tmp-")) {
        assert!(
            std::time::Instant::now() < deadline,
            "temp layers left: {:?}",
            common::ls(&layers)
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let started = t.store.download_count();
    assert!(started >= 1);
    // whatever layers did complete are whole and reused by the next pull
    let before = common::ls(&layers).len();
    let img = block_on(t.store.pull(&f.image("multilayer"), None)).unwrap();
    assert_eq!(img.id, f.get("CRIUS_TEST_MULTILAYER_ID"));
    assert_eq!((t.store.download_count() - started) as usize, 4 - before);
    assert_eq!(common::ls(&layers).len(), 4);
}
