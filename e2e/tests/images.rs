//! The image service against the fixture registries: pull, status, list, remove by tag,
//! id and digest, filesystem info, mirrors, basic auth, image indexes and platforms, and
//! images in use.

mod common;

use common::*;
use crius_e2e::{cri, fixture, CriusDaemon};
use nix::sys::signal::Signal;

fn spec(name: &str) -> Option<cri::ImageSpec> {
    Some(cri::ImageSpec {
        image: name.to_string(),
        ..Default::default()
    })
}

async fn status(images: &mut Images, name: &str) -> Option<cri::Image> {
    images
        .image_status(cri::ImageStatusRequest {
            image: spec(name),
            verbose: false,
        })
        .await
        .unwrap_or_else(|e| panic!("ImageStatus {name}: {e:?}"))
        .into_inner()
        .image
}

async fn remove(images: &mut Images, name: &str) {
    images
        .remove_image(cri::RemoveImageRequest { image: spec(name) })
        .await
        .unwrap_or_else(|e| panic!("RemoveImage {name}: {e:?}"));
}

async fn list(images: &mut Images) -> Vec<cri::Image> {
    images
        .list_images(cri::ListImagesRequest { filter: None })
        .await
        .unwrap()
        .into_inner()
        .images
}

async fn try_pull(
    images: &mut Images,
    name: &str,
    auth: Option<cri::AuthConfig>,
) -> Result<String, tonic::Status> {
    images
        .pull_image(cri::PullImageRequest {
            image: spec(name),
            auth,
            sandbox_config: None,
        })
        .await
        .map(|r| r.into_inner().image_ref)
}

fn repo_of(name: &str) -> &str {
    name.rsplit_once(':').map(|(r, _)| r).unwrap_or(name)
}

#[tokio::test]
async fn pulled_busybox_has_status_list_entry_and_image_fs_info() {
    let daemon = builder().start().await.unwrap();
    let (_, mut images) = clients(&daemon).await;
    let name = busybox();
    let id = fixture("CRIUS_TEST_BUSYBOX_ID").unwrap();
    let digest = fixture("CRIUS_TEST_BUSYBOX_DIGEST").unwrap();
    assert!(status(&mut images, &name).await.is_none(), "not pulled yet");

    let image_ref = pull(&mut images, &name).await;
    assert_eq!(image_ref, id);

    let image = status(&mut images, &name).await.expect("pulled image");
    assert_eq!(image.id, id);
    assert_eq!(image.repo_tags, vec![name.clone()]);
    assert_eq!(
        image.repo_digests,
        vec![format!("{}@{digest}", repo_of(&name))]
    );
    assert!(
        image.size > 500_000 && image.size < 50_000_000,
        "size {}",
        image.size
    );
    // No USER in the image config: root.
    assert_eq!(image.uid.as_ref().map(|u| u.value), Some(0), "{image:?}");
    assert_eq!(image.username, "");
    assert!(!image.pinned);

    // The same image by id, short id, digest and as the short-hex form.
    for other in [
        id.clone(),
        id.trim_start_matches("sha256:")[..12].to_string(),
        format!("{}@{digest}", repo_of(&name)),
    ] {
        let by = status(&mut images, &other).await;
        assert_eq!(by.map(|i| i.id), Some(id.clone()), "ImageStatus {other}");
    }

    // Verbose status carries the image config.
    let verbose = images
        .image_status(cri::ImageStatusRequest {
            image: spec(&name),
            verbose: true,
        })
        .await
        .unwrap()
        .into_inner();
    let info: serde_json::Value = serde_json::from_str(&verbose.info["info"]).unwrap();
    assert!(info.to_string().contains("\"sh\""), "{info}");

    let listed = list(&mut images).await;
    let entry = listed
        .iter()
        .find(|i| i.id == id)
        .unwrap_or_else(|| panic!("busybox not listed: {listed:?}"));
    assert_eq!(entry.repo_tags, image.repo_tags);
    assert_eq!(entry.size, image.size);
    let filtered = images
        .list_images(cri::ListImagesRequest {
            filter: Some(cri::ImageFilter { image: spec(&name) }),
        })
        .await
        .unwrap()
        .into_inner()
        .images;
    assert_eq!(
        filtered.iter().map(|i| i.id.clone()).collect::<Vec<_>>(),
        vec![id.clone()]
    );

    let fs = images
        .image_fs_info(cri::ImageFsInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    let usage = fs.image_filesystems.first().expect("an image filesystem");
    let mountpoint = &usage.fs_id.as_ref().unwrap().mountpoint;
    // The filesystem holding the store: its mount point (a prefix of the daemon root), or
    // the store dir itself.
    assert!(
        daemon.root.starts_with(mountpoint)
            || std::path::Path::new(mountpoint).starts_with(&daemon.root),
        "image fs {mountpoint} does not hold the daemon root {}",
        daemon.root.display()
    );
    // The store's own usage, not the whole disk's.
    let used = usage.used_bytes.as_ref().unwrap().value;
    assert!(
        used < 200_000_000,
        "used {used}: the whole disk, not the store?"
    );
    assert!(
        used >= image.size / 2,
        "used {used} < image size {}",
        image.size
    );
    assert!(usage.inodes_used.as_ref().unwrap().value > 10);
    assert!(usage.timestamp > 0);
}

#[tokio::test]
async fn a_pull_by_digest_records_the_digest_and_no_tag() {
    let daemon = builder().start().await.unwrap();
    let (_, mut images) = clients(&daemon).await;
    let name = busybox();
    let id = fixture("CRIUS_TEST_BUSYBOX_ID").unwrap();
    let digest = fixture("CRIUS_TEST_BUSYBOX_DIGEST").unwrap();
    let by_digest = format!("{}@{digest}", repo_of(&name));
    assert_eq!(pull(&mut images, &by_digest).await, id);
    let image = status(&mut images, &by_digest)
        .await
        .expect("pulled by digest");
    assert_eq!(image.id, id);
    assert!(image.repo_tags.is_empty(), "{image:?}");
    assert_eq!(image.repo_digests, vec![by_digest.clone()]);
    assert!(
        status(&mut images, &name).await.is_none(),
        "the tag was never pulled"
    );
    // The tag pulled later lands on the same image.
    assert_eq!(pull(&mut images, &name).await, id);
    let image = status(&mut images, &by_digest).await.unwrap();
    assert_eq!(image.repo_tags, vec![name.clone()]);
    assert_eq!(image.repo_digests, vec![by_digest]);
    assert_eq!(list(&mut images).await.len(), 1);
}

#[tokio::test]
async fn remove_image_by_tag_id_and_digest() {
    let daemon = builder().start().await.unwrap();
    let (_, mut images) = clients(&daemon).await;
    let name = busybox();
    let id = fixture("CRIUS_TEST_BUSYBOX_ID").unwrap();
    let digest = fixture("CRIUS_TEST_BUSYBOX_DIGEST").unwrap();
    let by_digest = format!("{}@{digest}", repo_of(&name));

    for how in [name.clone(), id.clone(), by_digest.clone()] {
        pull(&mut images, &name).await;
        assert!(status(&mut images, &id).await.is_some());
        remove(&mut images, &how).await;
        for probe in [&name, &id, &by_digest] {
            assert!(
                status(&mut images, probe).await.is_none(),
                "{probe} still there after RemoveImage {how}"
            );
        }
        assert!(
            !list(&mut images).await.iter().any(|i| i.id == id),
            "still listed after RemoveImage {how}"
        );
    }
    // Removing what is not there succeeds.
    remove(&mut images, &name).await;

    // The index image resolves to the same config: one image, two tags. Removing one tag
    // keeps the image under the other.
    let index = format!("{}/crius-test/busybox-index:latest", registry());
    pull(&mut images, &name).await;
    pull(&mut images, &index).await;
    let both = status(&mut images, &id).await.unwrap();
    let mut tags = both.repo_tags.clone();
    tags.sort();
    let mut want = vec![name.clone(), index.clone()];
    want.sort();
    assert_eq!(tags, want);
    remove(&mut images, &index).await;
    let left = status(&mut images, &id)
        .await
        .expect("image kept for its other tag");
    assert_eq!(left.repo_tags, vec![name.clone()]);
    assert!(status(&mut images, &index).await.is_none());
}

#[tokio::test]
async fn concurrent_removals_of_one_image_all_succeed() {
    let daemon = builder().start().await.unwrap();
    let (_, mut images) = clients(&daemon).await;
    let id = fixture("CRIUS_TEST_BUSYBOX_ID").unwrap();
    // Several rounds: the calls must meet between one's lookup and another's removal.
    for round in 0..10 {
        pull(&mut images, &busybox()).await;
        let mut calls = tokio::task::JoinSet::new();
        for _ in 0..32 {
            let mut images = images.clone();
            let id = id.clone();
            calls.spawn(async move {
                images
                    .remove_image(cri::RemoveImageRequest { image: spec(&id) })
                    .await
            });
        }
        while let Some(result) = calls.join_next().await {
            let result = result.expect("task");
            assert!(
                result.is_ok(),
                "round {round}: RemoveImage {id}: {result:?}"
            );
        }
        assert!(status(&mut images, &id).await.is_none(), "round {round}");
    }
}

#[tokio::test]
async fn a_pull_through_a_mirror_is_listed_under_the_requested_name() {
    let reg = registry();
    let conf = format!(
        r#"[[registry]]
prefix = "mirror.invalid/crius-test"
location = "mirror.invalid/crius-test"

[[registry.mirror]]
location = "{reg}/crius-test"
insecure = true
"#
    );
    let daemon = builder().registries_conf(&conf).start().await.unwrap();
    let (_, mut images) = clients(&daemon).await;
    let name = "mirror.invalid/crius-test/busybox:latest";
    let image_ref = pull(&mut images, name).await;
    assert_eq!(image_ref, fixture("CRIUS_TEST_BUSYBOX_ID").unwrap());
    let image = status(&mut images, name).await.expect("mirrored image");
    assert_eq!(image.repo_tags, vec![name.to_string()]);
    assert!(
        image
            .repo_digests
            .iter()
            .all(|d| d.starts_with("mirror.invalid/crius-test/busybox@sha256:")),
        "{image:?}"
    );
    // Not known under the mirror's own name.
    assert!(status(&mut images, &busybox()).await.is_none());
}

fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[tokio::test]
async fn basic_auth_pulls_with_auth_config_and_is_unauthenticated_without() {
    let daemon = builder().start().await.unwrap();
    let (_, mut images) = clients(&daemon).await;
    let host = fixture("CRIUS_TEST_AUTH_REGISTRY").unwrap();
    let user = fixture("CRIUS_TEST_AUTH_USER").unwrap();
    let pass = fixture("CRIUS_TEST_AUTH_PASS").unwrap();
    let name = format!("{host}/crius-test/busybox:latest");

    let err = try_pull(&mut images, &name, None).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err:?}");
    assert!(err.message().contains(&host), "{err:?}");
    let wrong = cri::AuthConfig {
        username: user.clone(),
        password: "not-the-password".into(),
        ..Default::default()
    };
    let err = try_pull(&mut images, &name, Some(wrong)).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err:?}");
    assert!(status(&mut images, &name).await.is_none());

    let good = cri::AuthConfig {
        username: user.clone(),
        password: pass.clone(),
        server_address: host.clone(),
        ..Default::default()
    };
    let id = try_pull(&mut images, &name, Some(good)).await.unwrap();
    assert_eq!(id, fixture("CRIUS_TEST_BUSYBOX_ID").unwrap());
    assert!(status(&mut images, &name).await.is_some());

    // The `auth` form (base64 of user:password) works too.
    remove(&mut images, &name).await;
    let encoded = cri::AuthConfig {
        auth: base64(format!("{user}:{pass}").as_bytes()),
        ..Default::default()
    };
    try_pull(&mut images, &name, Some(encoded)).await.unwrap();
    assert!(status(&mut images, &name).await.is_some());
}

/// Retries `pull` until it succeeds (a SIGHUP reload is asynchronous) or 10 s pass.
async fn pull_after_reload(
    daemon: &CriusDaemon,
    images: &mut Images,
    name: &str,
) -> Result<String, tonic::Status> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match try_pull(images, name, None).await {
            Err(_) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            Err(e) => panic!(
                "{name} not pulled after the reload: {e:?}\n{}",
                daemon.log_tail(20)
            ),
            ok => return ok,
        }
    }
}

#[tokio::test]
async fn sighup_applies_new_insecure_registries_and_credentials() {
    let plain = registry();
    let host = fixture("CRIUS_TEST_AUTH_REGISTRY").unwrap();
    let user = fixture("CRIUS_TEST_AUTH_USER").unwrap();
    let pass = fixture("CRIUS_TEST_AUTH_PASS").unwrap();
    // Neither fixture registry is insecure yet: they speak plain HTTP only.
    let daemon = CriusDaemon::builder()
        .config(&format!(
            "[crius.image]\npause_image = \"{}\"\n",
            pause_image()
        ))
        .start()
        .await
        .unwrap();
    let (_, mut images) = clients(&daemon).await;
    let plain_image = busybox();
    let auth_image = format!("{host}/crius-test/busybox:latest");
    try_pull(&mut images, &plain_image, None)
        .await
        .expect_err("a plain-HTTP registry not configured insecure");

    std::fs::write(
        daemon.config_dir.join("90-insecure.conf"),
        format!("[crius.image]\ninsecure_registries = [\"{plain}\", \"{host}\"]\n"),
    )
    .unwrap();
    daemon.signal(Signal::SIGHUP).unwrap();
    pull_after_reload(&daemon, &mut images, &plain_image)
        .await
        .unwrap();
    let err = try_pull(&mut images, &auth_image, None).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err:?}");

    std::fs::write(
        daemon.config_dir.join("91-auths.conf"),
        format!("[crius.image.auths.\"{host}\"]\nusername = \"{user}\"\npassword = \"{pass}\"\n"),
    )
    .unwrap();
    daemon.signal(Signal::SIGHUP).unwrap();
    let id = pull_after_reload(&daemon, &mut images, &auth_image)
        .await
        .unwrap();
    assert_eq!(id, fixture("CRIUS_TEST_BUSYBOX_ID").unwrap());
}

#[tokio::test]
async fn credentials_from_the_global_auth_file_apply_at_the_next_pull() {
    let host = fixture("CRIUS_TEST_AUTH_REGISTRY").unwrap();
    let user = fixture("CRIUS_TEST_AUTH_USER").unwrap();
    let pass = fixture("CRIUS_TEST_AUTH_PASS").unwrap();
    let auth_dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let auth_file = auth_dir.path().join("auth.json");
    let daemon = builder()
        .config(&format!(
            "[crius.image]\nglobal_auth_file = \"{}\"\n",
            auth_file.display()
        ))
        .start()
        .await
        .unwrap();
    let (_, mut images) = clients(&daemon).await;
    let name = format!("{host}/crius-test/busybox:latest");

    // No file yet: no credentials.
    let err = try_pull(&mut images, &name, None).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err:?}");

    // What `podman login --authfile` writes; no reload needed.
    let auth = base64(format!("{user}:{pass}").as_bytes());
    std::fs::write(
        &auth_file,
        format!("{{\"auths\": {{\"{host}\": {{\"auth\": \"{auth}\"}}}}}}"),
    )
    .unwrap();
    let id = try_pull(&mut images, &name, None).await.unwrap();
    assert_eq!(id, fixture("CRIUS_TEST_BUSYBOX_ID").unwrap());

    // A broken file is the node's fault, and named.
    remove(&mut images, &name).await;
    std::fs::write(&auth_file, "{\"auths\": ").unwrap();
    let err = try_pull(&mut images, &name, None).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("auth.json"), "{err:?}");
}

#[tokio::test]
async fn an_index_image_pulls_the_amd64_image_and_an_arm64_only_image_fails_clearly() {
    let daemon = builder().start().await.unwrap();
    let (_, mut images) = clients(&daemon).await;
    let index = format!("{}/crius-test/busybox-index:latest", registry());
    let id = pull(&mut images, &index).await;
    assert_eq!(id, fixture("CRIUS_TEST_BUSYBOX_INDEX_ID").unwrap());
    let image = status(&mut images, &index).await.unwrap();
    assert_eq!(image.repo_tags, vec![index.clone()]);
    let index_digest = fixture("CRIUS_TEST_BUSYBOX_INDEX_DIGEST").unwrap();
    assert!(
        image
            .repo_digests
            .contains(&format!("{}@{index_digest}", repo_of(&index))),
        "the index digest is not a repo digest: {image:?}"
    );

    let arm = format!("{}/crius-test/arm64-only:latest", registry());
    let err = try_pull(&mut images, &arm, None).await.unwrap_err();
    let msg = err.message();
    assert!(
        msg.contains("platform") && msg.contains("linux/amd64") && msg.contains("arm64"),
        "unclear error: {err:?}"
    );
    assert!(
        msg.contains("arm64-only"),
        "the image is not named: {err:?}"
    );
    assert!(status(&mut images, &arm).await.is_none());
    assert_eq!(
        list(&mut images).await.len(),
        1,
        "a failed pull left an image"
    );
}

#[tokio::test]
async fn remove_image_used_by_a_container_is_failed_precondition() {
    let daemon = bridge_daemon().await;
    let (mut rt, mut images) = clients(&daemon).await;
    let name = busybox();
    pull(&mut images, &name).await;
    let config = pod_config(&daemon, "user");
    let pod = run_pod(&mut rt, &config).await;
    let ctr = create(
        &mut rt,
        &pod,
        &config,
        container_config("c", &["sleep", "3600"]),
    )
    .await;
    for how in [name.clone(), fixture("CRIUS_TEST_BUSYBOX_ID").unwrap()] {
        let err = images
            .remove_image(cri::RemoveImageRequest { image: spec(&how) })
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
        assert!(
            err.message().contains(&ctr),
            "the user is not named: {err:?}"
        );
    }
    assert!(status(&mut images, &name).await.is_some());

    rt.remove_container(cri::RemoveContainerRequest {
        container_id: ctr.clone(),
    })
    .await
    .unwrap();
    remove(&mut images, &name).await;
    assert!(status(&mut images, &name).await.is_none());
    remove_pod(&mut rt, &pod).await;
}

#[tokio::test]
async fn concurrent_pulls_of_the_multilayer_image_give_one_image_whose_files_a_container_sees() {
    let daemon = bridge_daemon().await;
    let (mut rt, images) = clients(&daemon).await;
    let name = format!("{}/crius-test/multilayer:latest", registry());
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let (mut images, name) = (images.clone(), name.clone());
        tasks.spawn(async move { pull(&mut images, &name).await });
    }
    let mut refs = Vec::new();
    while let Some(r) = tasks.join_next().await {
        refs.push(r.unwrap());
    }
    let id = fixture("CRIUS_TEST_MULTILAYER_ID").unwrap();
    assert!(refs.iter().all(|r| *r == id), "{refs:?}");
    let mut images = images;
    let listed = list(&mut images).await;
    assert_eq!(
        listed.iter().filter(|i| i.id == id).count(),
        1,
        "{listed:?}"
    );
    // Stored once: the store's usage is about one copy of the 24 MiB layer.
    let fs = images
        .image_fs_info(cri::ImageFsInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    let used = fs.image_filesystems[0].used_bytes.as_ref().unwrap().value;
    assert!(
        used < 90 * 1024 * 1024,
        "{used} bytes used: layers stored more than once?"
    );
    // A name that is not there filters to nothing, not an error.
    let none = images
        .list_images(cri::ListImagesRequest {
            filter: Some(cri::ImageFilter {
                image: spec(&format!("{}/crius-test/not-here:latest", registry())),
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .images;
    assert!(none.is_empty(), "{none:?}");

    // The container sees the layers merged: whiteouts, opaque dir, links, the last layer.
    let config = pod_config(&daemon, "layers");
    let pod = run_pod(&mut rt, &config).await;
    let mut ctr = container_config("layers", &["sleep", "3600"]);
    ctr.image = spec(&name);
    let ctr = run_container(&mut rt, &pod, &config, ctr).await;
    let script = "cat /etc/crius-layer; cat /zstd/hello; ls /opaque; \
                  test -e /data/remove-me || echo no-remove-me; \
                  test -e /data/remove-dir || echo no-remove-dir; \
                  readlink /data/symlink-rel; stat -c %h /data/hardlink; \
                  sha256sum /data/big.bin";
    let out = exec_ok(&mut rt, &ctr, &["sh", "-c", script]).await;
    let big = fixture("CRIUS_TEST_MULTILAYER_BIG_SHA256").unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "zstd", "{out}");
    assert_eq!(lines[1], "compressed with zstd", "{out}");
    assert_eq!(lines[2], "upper", "{out}");
    assert_eq!(lines[3], "no-remove-me", "{out}");
    assert_eq!(lines[4], "no-remove-dir", "{out}");
    assert_eq!(lines[5], "keep", "{out}");
    assert_eq!(lines[6], "2", "{out}");
    assert_eq!(
        lines[7].split_whitespace().next(),
        Some(big.trim_start_matches("sha256:")),
        "{out}"
    );
    remove_pod(&mut rt, &pod).await;
}

#[tokio::test]
async fn the_configured_pause_image_is_reported_pinned_however_it_came() {
    // The fixture pause image is the daemon's pause image; pulled like any other, it must
    // still be pinned so that the kubelet's image GC never removes it.
    let daemon = builder().start().await.unwrap();
    let (_, mut images) = clients(&daemon).await;
    let pause_id = pull(&mut images, &pause_image()).await;
    let busybox_id = pull(&mut images, &busybox()).await;

    let pause = status(&mut images, &pause_image()).await.expect("pause");
    assert!(pause.pinned, "ImageStatus of the pause image: {pause:?}");
    assert!(status(&mut images, &pause_id).await.unwrap().pinned);
    let busybox = status(&mut images, &busybox()).await.expect("busybox");
    assert!(!busybox.pinned, "{busybox:?}");

    let listed = list(&mut images).await;
    let pinned: Vec<&str> = listed
        .iter()
        .filter(|i| i.pinned)
        .map(|i| i.id.as_str())
        .collect();
    assert_eq!(pinned, vec![pause_id.as_str()], "{listed:?}");
    assert!(listed.iter().any(|i| i.id == busybox_id && !i.pinned));
}

/// Whether ListImages and ImageStatus both report `name` pinned (and agree).
async fn pinned(images: &mut Images, name: &str) -> bool {
    let image = status(images, name)
        .await
        .unwrap_or_else(|| panic!("{name} is not in the store"));
    let listed = list(images)
        .await
        .into_iter()
        .find(|i| i.id == image.id)
        .unwrap_or_else(|| panic!("{name} is not listed"));
    assert_eq!(
        listed.pinned, image.pinned,
        "ListImages and ImageStatus disagree on {name}"
    );
    image.pinned
}

#[tokio::test]
async fn pinned_images_patterns_pin_matching_images_reload_on_sighup_and_stay_removable() {
    let reg = registry();
    let multilayer = format!("{reg}/crius-test/multilayer:latest");
    // An exact name, in another case than the store's, and a glob.
    let daemon = builder()
        .config(&format!(
            "[crius.image]\npinned_images = [\"{}\", \"{reg}/crius-test/multi*\"]\n",
            busybox().to_uppercase()
        ))
        .start()
        .await
        .unwrap();
    let (_, mut images) = clients(&daemon).await;
    pull(&mut images, &busybox()).await;
    pull(&mut images, &multilayer).await;
    assert!(pinned(&mut images, &busybox()).await, "exact name");
    assert!(pinned(&mut images, &multilayer).await, "glob");

    // A keyword pattern replaces the list on SIGHUP: busybox matches nothing any more.
    std::fs::write(
        daemon.config_dir.join("90-pins.conf"),
        "[crius.image]\npinned_images = [\"*/crius-test/multilayer:*\"]\n",
    )
    .unwrap();
    daemon.signal(Signal::SIGHUP).unwrap();
    eventually(
        "the reloaded pins apply",
        std::time::Duration::from_secs(10),
        || {
            let mut images = images.clone();
            async move { (!pinned(&mut images, &busybox()).await).then_some(()) }
        },
    )
    .await;
    assert!(pinned(&mut images, &multilayer).await, "keyword");

    // Pinning keeps the kubelet's GC away, not an explicit RemoveImage (as CRI-O).
    remove(&mut images, &multilayer).await;
    assert!(status(&mut images, &multilayer).await.is_none());
}

#[tokio::test]
async fn a_malformed_pinned_images_pattern_stops_start_up_naming_the_key() {
    let mut daemon = CriusDaemon::builder()
        .config("[crius.image]\npinned_images = [\"registry.k8s.io/*/pause\"]\n")
        .spawn()
        .unwrap();
    let exit = daemon
        .wait_exit(std::time::Duration::from_secs(15))
        .await
        .unwrap();
    assert!(!exit.success());
    let log = daemon.log();
    assert!(
        log.contains(":2: key crius.image.pinned_images"),
        "no file:line and key in {log}"
    );
    assert!(
        log.contains("\"registry.k8s.io/*/pause\" has a * inside"),
        "{log}"
    );
    assert!(
        !daemon.root.exists(),
        "state made before the config was read"
    );
}

/// A client's deadline that passes during a pull is answered DEADLINE_EXCEEDED, as gRPC
/// defines it (critest's "public image should timeout if requested"), not CANCELLED; the
/// same pull without a deadline then succeeds. The client here is tonic's generated one
/// over a bare HTTP/2 connection: it sends the deadline but, unlike a tonic `Channel`,
/// does not enforce it itself, so the code seen is the server's.
#[tokio::test]
async fn a_pull_past_the_clients_deadline_is_deadline_exceeded() {
    let daemon = builder().start().await.unwrap();
    let stream = tokio::net::UnixStream::connect(&daemon.socket)
        .await
        .unwrap();
    let (send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let transport = tower::service_fn(
        move |req: tonic::codegen::http::Request<tonic::body::Body>| {
            let mut send = send.clone();
            async move { send.send_request(req).await }
        },
    );
    let mut bare = cri::image_service_client::ImageServiceClient::with_origin(
        transport,
        "http://localhost".parse().unwrap(),
    );
    let name = busybox();
    let mut request = tonic::Request::new(cri::PullImageRequest {
        image: spec(&name),
        auth: None,
        sandbox_config: None,
    });
    request.set_timeout(std::time::Duration::from_millis(1));
    let err = bare
        .pull_image(request)
        .await
        .expect_err("a pull within 1 ms");
    assert_eq!(err.code(), tonic::Code::DeadlineExceeded, "{err:?}");
    let (_, mut images) = clients(&daemon).await;
    pull(&mut images, &name).await;
    assert!(status(&mut images, &name).await.is_some());
}
