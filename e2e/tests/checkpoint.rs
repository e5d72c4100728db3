//! CheckpointContainer and restores from a checkpoint archive, through the CRI socket: a
//! counter kept only in a shell's memory, checkpointed with CRIU through the runtime and
//! restored in another pod when CRIU works on this node; when it does not, Status says
//! why (CRIU's own words) and CheckpointContainer fails with that reason, leaving the
//! container running and no archive. Bad paths and bad archives (truncated, altered,
//! escaping their root, outside the allowed dirs) are clear errors that leave nothing.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use crius_e2e::{cri, parse_info, CriusDaemon};
use sha2::{Digest, Sha256};

/// The dir checkpoints may go to (the daemon's `checkpoint_dirs`), removed on drop.
fn allowed_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("crius-e2e-ckpt-")
        .tempdir_in(crius_e2e::TEST_BASE_DIR)
        .expect("checkpoint dir")
}

async fn daemon_for(dir: &Path) -> CriusDaemon {
    builder()
        .config(&format!(
            "[crius.runtime]\ncheckpoint_dirs = [\"{}\"]\n",
            dir.display()
        ))
        .start()
        .await
        .expect("daemon")
}

/// Status's word on checkpointing: available, or the reason it is not.
async fn checkpoint_status(rt: &mut Runtime) -> Result<String, String> {
    let reply = rt
        .status(cri::StatusRequest { verbose: true })
        .await
        .expect("Status")
        .into_inner();
    let info = parse_info(&reply.info, "info").expect("Status info");
    let c = &info["checkpoint"];
    match c["available"].as_bool() {
        Some(true) => Ok(c["criu"].as_str().unwrap_or_default().to_string()),
        Some(false) => Err(c["reason"].as_str().expect("a reason").to_string()),
        None => panic!("Status info has no checkpoint entry: {info}"),
    }
}

fn checkpoint_req(id: &str, location: &str) -> cri::CheckpointContainerRequest {
    cri::CheckpointContainerRequest {
        container_id: id.to_string(),
        location: location.to_string(),
        timeout: 60,
    }
}

/// Nothing of a failed checkpoint or restore: no staging or unpack dir under the root.
fn assert_no_checkpoint_leftovers(daemon: &CriusDaemon) {
    let left = dir_entries(&daemon.root.join("checkpoints"));
    assert!(
        left.is_empty(),
        "left in {}/checkpoints: {left:?}",
        daemon.root.display()
    );
}

const COUNTER: &str = "i=0; while :; do i=$((i+1)); echo $i > /tmp/count; sleep 0.1; done";

async fn count(rt: &mut Runtime, id: &str) -> u64 {
    let out = exec_ok(rt, id, &["cat", "/tmp/count"]).await;
    out.trim()
        .parse()
        .unwrap_or_else(|_| panic!("count {out:?}"))
}

#[tokio::test]
async fn a_checkpointed_counter_survives_a_restore_or_the_node_says_why_it_cannot() {
    let dir = allowed_dir();
    let daemon = daemon_for(dir.path()).await;
    let (mut rt, mut images) = clients(&daemon).await;
    pull(&mut images, &busybox()).await;
    let pod_cfg = host_network(pod_config(&daemon, "ckpt"));
    let pod = run_pod(&mut rt, &pod_cfg).await;
    let id = run_container(&mut rt, &pod, &pod_cfg, shell("counter", COUNTER)).await;
    let first = eventually("the counter to start", Duration::from_secs(10), || {
        let mut rt = rt.clone();
        let id = id.clone();
        async move {
            let n = try_exec(&mut rt, &id, &["cat", "/tmp/count"], 10)
                .await
                .ok()?;
            String::from_utf8_lossy(&n.stdout)
                .trim()
                .parse::<u64>()
                .ok()
        }
    })
    .await;
    let archive = dir.path().join("counter.tar");
    let status = checkpoint_status(&mut rt).await;
    let started = std::time::Instant::now();
    let result = rt
        .checkpoint_container(checkpoint_req(&id, archive.to_str().unwrap()))
        .await;
    match status {
        Err(reason) => {
            let err = result.expect_err("CheckpointContainer while CRIU cannot work");
            assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
            assert!(
                err.message().contains(&reason),
                "the error gives Status's reason {reason:?}: {err:?}"
            );
            assert!(!archive.exists(), "an archive was left");
            assert!(
                dir_entries(dir.path()).is_empty(),
                "{:?}",
                dir_entries(dir.path())
            );
            assert_no_checkpoint_leftovers(&daemon);
            // The container runs on, its counter still counting.
            let later = eventually("the counter to go on", Duration::from_secs(10), || {
                let mut rt = rt.clone();
                let id = id.clone();
                async move {
                    let n = try_exec(&mut rt, &id, &["cat", "/tmp/count"], 10)
                        .await
                        .ok()?;
                    let n: u64 = String::from_utf8_lossy(&n.stdout).trim().parse().ok()?;
                    (n > first).then_some(n)
                }
            })
            .await;
            assert!(later > first);
            eprintln!("checkpoint round trip not run: this node cannot checkpoint: {reason}");
        }
        Ok(criu) => {
            result.unwrap_or_else(|e| panic!("CheckpointContainer with criu {criu}: {e:?}"));
            eprintln!("checkpoint took {:?}", started.elapsed());
            let at_checkpoint = count(&mut rt, &id).await;
            assert!(archive.is_file());
            // Restore into another pod, the archive given as the image.
            let other_cfg = host_network(pod_config(&daemon, "ckpt-restored"));
            let other = run_pod(&mut rt, &other_cfg).await;
            let mut cfg = shell("counter", COUNTER);
            cfg.image = Some(cri::ImageSpec {
                image: archive.display().to_string(),
                ..Default::default()
            });
            let started = std::time::Instant::now();
            let restored = run_container(&mut rt, &other, &other_cfg, cfg).await;
            eprintln!("restore took {:?}", started.elapsed());
            let n = count(&mut rt, &restored).await;
            assert!(
                n >= first && n >= at_checkpoint.saturating_sub(50),
                "the restored counter {n} did not go on from {at_checkpoint}"
            );
            remove_pod(&mut rt, &other).await;
        }
    }
    remove_pod(&mut rt, &pod).await;
    assert_nothing_left(&daemon, &mut rt).await;
}

/// An archive in the documented layout, written by the test itself: manifest first, with
/// the SHA-256 of every other file.
fn write_archive(path: &Path, files: &[(&str, Vec<u8>)]) {
    let sums: serde_json::Map<String, serde_json::Value> = files
        .iter()
        .map(|(name, data)| (name.to_string(), hex::encode(Sha256::digest(data)).into()))
        .collect();
    let manifest = serde_json::json!({
        "version": 1,
        "container_id": "c0ffee",
        "pod_id": "beef",
        "image_id": crius_e2e::fixture("CRIUS_TEST_BUSYBOX_ID").unwrap(),
        "created_at": 1,
        "files": sums,
    })
    .to_string();
    let mut b = tar::Builder::new(std::fs::File::create(path).unwrap());
    let mut add = |name: &str, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o600);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, name, data).unwrap();
    };
    add("manifest.json", manifest.as_bytes());
    for (name, data) in files {
        add(name, data);
    }
    b.finish().unwrap();
}

fn archive_parts() -> Vec<(&'static str, Vec<u8>)> {
    let config = serde_json::json!({
        "image_id": crius_e2e::fixture("CRIUS_TEST_BUSYBOX_ID").unwrap(),
        "image_name": busybox(),
        "config": {},
    });
    vec![
        ("config.dump", config.to_string().into_bytes()),
        ("spec.dump", br#"{"ociVersion":"1.0.2-dev"}"#.to_vec()),
        ("rootfs-diff.tar", vec![0u8; 1024]),
        ("checkpoint/pages-1.img", vec![7u8; 64 * 1024]),
    ]
}

#[tokio::test]
async fn bad_checkpoint_paths_and_archives_are_clear_errors_that_leave_nothing() {
    let dir = allowed_dir();
    let daemon = daemon_for(dir.path()).await;
    let (mut rt, mut images) = clients(&daemon).await;
    pull(&mut images, &busybox()).await;
    let pod_cfg = host_network(pod_config(&daemon, "ckpt-bad"));
    let pod = run_pod(&mut rt, &pod_cfg).await;
    let id = run_container(&mut rt, &pod, &pod_cfg, shell("victim", "sleep 600")).await;
    let status = checkpoint_status(&mut rt).await;

    // Checkpoint paths.
    let outside = daemon.dir.join("outside.tar");
    let inside = dir.path().join("x.tar");
    let escaping = format!("{}/../escaped.tar", dir.path().display());
    for (cid, location, code, want) in [
        (
            id.as_str(),
            outside.to_str().unwrap(),
            tonic::Code::InvalidArgument,
            "outside the allowed checkpoint dirs",
        ),
        (
            id.as_str(),
            "relative.tar",
            tonic::Code::InvalidArgument,
            "absolute",
        ),
        (
            id.as_str(),
            escaping.as_str(),
            tonic::Code::InvalidArgument,
            "..",
        ),
        (id.as_str(), "", tonic::Code::InvalidArgument, "absolute"),
        (
            "",
            inside.to_str().unwrap(),
            tonic::Code::InvalidArgument,
            "container_id",
        ),
        (
            "no-such-container",
            inside.to_str().unwrap(),
            tonic::Code::NotFound,
            "no-such-container",
        ),
    ] {
        let err = rt
            .checkpoint_container(checkpoint_req(cid, location))
            .await
            .expect_err(location);
        assert_eq!(err.code(), code, "{location}: {err:?}");
        assert!(err.message().contains(want), "{location}: {err:?}");
    }
    assert!(!outside.exists() && !inside.exists());
    assert!(!dir.path().parent().unwrap().join("escaped.tar").exists());

    // Restores: the archive's path given as the image.
    let valid = dir.path().join("valid.tar");
    write_archive(&valid, &archive_parts());
    let good = std::fs::read(&valid).unwrap();
    let truncated = dir.path().join("truncated.tar");
    std::fs::write(&truncated, &good[..good.len() / 2]).unwrap();
    let forged = dir.path().join("forged.tar");
    let mut bytes = good.clone();
    let at = bytes.windows(4).position(|w| w == b"ociV").unwrap();
    bytes[at] = b'X';
    std::fs::write(&forged, bytes).unwrap();
    let escape = dir.path().join("escape.tar");
    {
        let mut b = tar::Builder::new(std::fs::File::create(&escape).unwrap());
        let mut h = tar::Header::new_old();
        h.as_old_mut().name[..12].copy_from_slice(b"../../pwned!");
        h.set_size(1);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        b.append(&h, &b"x"[..]).unwrap();
        b.finish().unwrap();
    }
    let elsewhere = daemon.dir.join("elsewhere.tar");
    std::fs::copy(&valid, &elsewhere).unwrap();
    let cases: Vec<(PathBuf, tonic::Code, &str)> = vec![
        (truncated, tonic::Code::InvalidArgument, "truncated"),
        (
            forged,
            tonic::Code::InvalidArgument,
            "does not match its manifest",
        ),
        (escape, tonic::Code::InvalidArgument, "leaves its root"),
        (
            elsewhere,
            tonic::Code::InvalidArgument,
            "outside the allowed checkpoint dirs",
        ),
        (
            dir.path().join("missing.tar"),
            tonic::Code::InvalidArgument,
            "cannot open",
        ),
    ];
    for (archive, code, want) in cases {
        let mut cfg = shell("restored", "sleep 600");
        cfg.image = Some(cri::ImageSpec {
            image: archive.display().to_string(),
            ..Default::default()
        });
        let err = rt
            .create_container(cri::CreateContainerRequest {
                pod_sandbox_id: pod.clone(),
                config: Some(cfg),
                sandbox_config: Some(pod_cfg.clone()),
            })
            .await
            .expect_err(&archive.display().to_string());
        assert_eq!(err.code(), code, "{}: {err:?}", archive.display());
        assert!(
            err.message().contains(want),
            "{}: {err:?}",
            archive.display()
        );
        assert_no_checkpoint_leftovers(&daemon);
    }
    assert!(!daemon.dir.join("pwned!").exists());
    // A well-formed archive passes the checks and meets CRIU's verdict.
    let mut cfg = shell("restored", "sleep 600");
    cfg.image = Some(cri::ImageSpec {
        image: valid.display().to_string(),
        ..Default::default()
    });
    let err = rt
        .create_container(cri::CreateContainerRequest {
            pod_sandbox_id: pod.clone(),
            config: Some(cfg),
            sandbox_config: Some(pod_cfg.clone()),
        })
        .await
        .expect_err("a restore of process images the test made up");
    match &status {
        Err(reason) => {
            assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
            assert!(err.message().contains(reason.as_str()), "{err:?}");
        }
        Ok(_) => assert_ne!(err.code(), tonic::Code::InvalidArgument, "{err:?}"),
    }
    assert_no_checkpoint_leftovers(&daemon);
    let ctrs = rt
        .list_containers(cri::ListContainersRequest { filter: None })
        .await
        .unwrap()
        .into_inner()
        .containers;
    assert_eq!(ctrs.len(), 1, "{ctrs:?}");
    assert_eq!(
        dir_entries(&daemon.root.join("containers")),
        vec![id.clone()]
    );

    remove_pod(&mut rt, &pod).await;
    assert_nothing_left(&daemon, &mut rt).await;
}
