//! Hostile images through the CRI: a layer that tries to write through a
//! directory it swapped for a symlink out, and an image past a configured
//! bound, pushed to the fixture registry and pulled by the real daemon. The
//! pull fails with a status and a message naming the image and what is wrong,
//! a host-side sentinel is unchanged, and the store holds nothing of it.

mod common;

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use common::*;
use crius_e2e::{cri, unique_name};
use sha2::Digest;

fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(data)))
}

/// A tar of raw entries (name, type, link name), written without the tar
/// crate's own path checks.
fn raw_tar(entries: &[(&str, tar::EntryType, &str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, kind, link, data) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(*kind);
        h.set_mode(0o777);
        h.set_mtime(42);
        h.set_size(data.len() as u64);
        let old = h.as_old_mut();
        old.name[..name.len()].copy_from_slice(name.as_bytes());
        old.linkname[..link.len()].copy_from_slice(link.as_bytes());
        h.set_cksum();
        b.append(&h, *data).unwrap();
    }
    b.into_inner().unwrap()
}

/// Writes an OCI layout of gzip layers and pushes it to the fixture registry
/// with skopeo; returns the image name.
fn push_image(layers: &[Vec<u8>], repo: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let blobs = dir.path().join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |data: &[u8]| {
        let d = sha256(data);
        std::fs::write(blobs.join(&d[7..]), data).unwrap();
        d
    };
    let mut descs = Vec::new();
    let mut diff_ids = Vec::new();
    for tar in layers {
        diff_ids.push(sha256(tar));
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(tar).unwrap();
        let data = gz.finish().unwrap();
        descs.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": put(&data), "size": data.len()
        }));
    }
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux", "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .unwrap();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": put(&config), "size": config.len()},
        "layers": descs,
    }))
    .unwrap();
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": put(&manifest), "size": manifest.len(),
        "annotations": {"org.opencontainers.image.ref.name": "v1"}}]});
    std::fs::write(dir.path().join("index.json"), index.to_string()).unwrap();
    std::fs::write(
        dir.path().join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    let name = format!("{}/{repo}:v1", registry());
    let out = Command::new("skopeo")
        .args([
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
            "--preserve-digests",
        ])
        .arg(format!("oci:{}:v1", dir.path().display()))
        .arg(format!("docker://{name}"))
        .output()
        .expect("skopeo (e2e/fixtures/setup.sh installs it)");
    assert!(
        out.status.success(),
        "skopeo: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    name
}

/// lstat of every path of a tree (ctime included) and file contents.
fn snapshot(dir: &Path) -> Vec<(String, u32, u32, i64, i64, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(p) = stack.pop() {
        let m = std::fs::symlink_metadata(&p).unwrap();
        if m.is_dir() {
            stack.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        }
        let data = if m.is_file() {
            std::fs::read(&p).unwrap()
        } else {
            Vec::new()
        };
        out.push((
            p.display().to_string(),
            m.mode(),
            m.uid(),
            m.ctime(),
            m.ctime_nsec(),
            data,
        ));
    }
    out.sort();
    out
}

async fn try_pull(images: &mut Images, name: &str) -> Result<String, tonic::Status> {
    images
        .pull_image(cri::PullImageRequest {
            image: Some(cri::ImageSpec {
                image: name.to_string(),
                ..Default::default()
            }),
            auth: None,
            sandbox_config: None,
        })
        .await
        .map(|r| r.into_inner().image_ref)
}

#[tokio::test]
async fn hostile_layers_and_images_past_a_bound_fail_the_pull_and_leave_nothing() {
    let sentinel = tempfile::tempdir_in("/var/tmp").unwrap();
    std::fs::create_dir(sentinel.path().join("etc")).unwrap();
    std::fs::write(
        sentinel.path().join("etc/passwd"),
        "root:x:0:0::/root:/bin/sh\n",
    )
    .unwrap();
    let before = snapshot(sentinel.path());
    let out = sentinel.path().join("etc").display().to_string();

    let daemon = builder()
        .config("[crius.image]\nmax_layer_entries = 20\n")
        .start()
        .await
        .unwrap();
    let (_, mut images) = clients(&daemon).await;
    let layers_dir = daemon.root.join("images/layers");

    let hostile = push_image(
        &[
            raw_tar(&[("ok", tar::EntryType::Regular, "", b"1")]),
            raw_tar(&[
                ("etc/", tar::EntryType::Directory, "", b""),
                ("etc", tar::EntryType::Symlink, &out, b""),
                (
                    "etc/passwd",
                    tar::EntryType::Regular,
                    "",
                    b"pwned::0:0::/:/bin/sh\n",
                ),
            ]),
        ],
        &unique_name("crius-e2e/hostile-"),
    );
    let err = try_pull(&mut images, &hostile).await.unwrap_err();
    let msg = err.message();
    assert!(
        msg.contains(&hostile) && msg.contains("etc/passwd") && msg.contains("symlink"),
        "the message names neither the image nor the path: {err:?}"
    );

    let files: Vec<(String, Vec<u8>)> = (0..50)
        .map(|i| (format!("f{i}"), vec![b'x'; 100]))
        .collect();
    let entries: Vec<(&str, tar::EntryType, &str, &[u8])> = files
        .iter()
        .map(|(n, d)| (n.as_str(), tar::EntryType::Regular, "", d.as_slice()))
        .collect();
    let big = push_image(
        &[
            raw_tar(&[("ok", tar::EntryType::Regular, "", b"2")]),
            raw_tar(&entries),
        ],
        &unique_name("crius-e2e/bounds-"),
    );
    let err = try_pull(&mut images, &big).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err:?}");
    assert!(
        err.message().contains(&big) && err.message().contains("crius.image.max_layer_entries"),
        "the message names neither the image nor the bound: {err:?}"
    );

    assert_eq!(before, snapshot(sentinel.path()), "the sentinel changed");
    let listed = images
        .list_images(cri::ListImagesRequest { filter: None })
        .await
        .unwrap()
        .into_inner()
        .images;
    assert!(listed.is_empty(), "a failed pull left an image: {listed:?}");
    let left: Vec<_> = std::fs::read_dir(&layers_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "layer dirs left behind: {left:?}");
    // the daemon still pulls a good image within the bound
    try_pull(&mut images, &pause_image()).await.unwrap();
}
