//! Container root file systems: real overlay mounts over pulled layers, and
//! the built-in pause image running under runc.

mod common;

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{block_on, fixture_store, Comp, Fixtures, ScratchRegistry};
use crius_image::ImageStore;

/// Unmounts and removes the container's rootfs on drop, even when a test fails.
struct Mounted {
    container_dir: PathBuf,
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = ImageStore::unmount_rootfs(&self.container_dir);
    }
}

fn is_mountpoint(p: &Path) -> bool {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let target = p.to_string_lossy().into_owned();
    info.lines()
        .any(|l| l.split(' ').nth(4) == Some(target.as_str()))
}

#[test]
fn multilayer_rootfs_shows_the_merged_view_and_writes_go_to_upper() {
    let f = Fixtures::load();
    let t = fixture_store(&f);
    let img = block_on(t.store.pull(&f.image("multilayer"), None)).unwrap();
    let ctr = t.dir.path().join("containers/c1");
    std::fs::create_dir_all(&ctr).unwrap();
    let guard = Mounted {
        container_dir: ctr.clone(),
    };
    let rootfs = t.store.mount_rootfs(&img.id, &ctr).unwrap();
    assert_eq!(rootfs, ctr.join("rootfs"));
    assert!(is_mountpoint(&rootfs));

    // every layer shows through, the top one wins
    assert_eq!(
        std::fs::read_to_string(rootfs.join("etc/crius-layer")).unwrap(),
        "zstd\n"
    );
    assert_eq!(
        std::fs::read_to_string(rootfs.join("zstd/hello"))
            .unwrap()
            .trim_end(),
        "compressed with zstd"
    );
    assert!(rootfs.join("bin/busybox").exists());
    let big = std::fs::read(rootfs.join("data/big.bin")).unwrap();
    assert_eq!(
        common::sha256(&big),
        f.get("CRIUS_TEST_MULTILAYER_BIG_SHA256")
    );
    // whiteouts and the opaque dir hide the lower layer's entries
    assert!(!rootfs.join("data/remove-me").exists());
    assert!(!rootfs.join("data/remove-dir").exists());
    assert!(rootfs.join("data/keep").exists());
    assert_eq!(
        common::ls(&rootfs.join("opaque")),
        vec!["upper".to_string()]
    );
    // links
    assert_eq!(
        std::fs::read_link(rootfs.join("data/symlink-rel")).unwrap(),
        Path::new("keep")
    );
    assert_eq!(
        std::fs::read_link(rootfs.join("data/symlink-abs")).unwrap(),
        Path::new("/data/keep")
    );
    let hl = std::fs::metadata(rootfs.join("data/hardlink")).unwrap();
    let target = std::fs::metadata(rootfs.join("data/hardlink-target")).unwrap();
    assert_eq!(hl.ino(), target.ino());
    assert_eq!(hl.nlink(), 2);

    // writes land in upper; deleting a lower file leaves a whiteout in upper
    let layers = t.store.layer_paths(&img.id).unwrap();
    std::fs::write(rootfs.join("new-file"), "written").unwrap();
    assert_eq!(
        std::fs::read_to_string(ctr.join("upper/new-file")).unwrap(),
        "written"
    );
    std::fs::remove_file(rootfs.join("data/keep")).unwrap();
    assert!(!rootfs.join("data/keep").exists());
    let wh = std::fs::symlink_metadata(ctr.join("upper/data/keep")).unwrap();
    assert!(wh.file_type().is_char_device() && wh.rdev() == 0);
    assert!(
        layers[1].join("data/keep").exists(),
        "the layer itself is untouched"
    );
    std::fs::write(rootfs.join("etc/crius-layer"), "changed").unwrap();
    assert_eq!(
        std::fs::read_to_string(layers[3].join("etc/crius-layer")).unwrap(),
        "zstd\n"
    );

    // mounting again is a no-op; unmount removes rootfs, upper and work
    assert_eq!(t.store.mount_rootfs(&img.id, &ctr).unwrap(), rootfs);
    ImageStore::unmount_rootfs(&ctr).unwrap();
    assert!(!is_mountpoint(&rootfs));
    for d in ["rootfs", "upper", "work"] {
        assert!(!ctr.join(d).exists(), "{d} left behind");
    }
    ImageStore::unmount_rootfs(&ctr).unwrap();
    drop(guard);

    // a second container of the same image starts clean
    let ctr2 = t.dir.path().join("containers/c2");
    let _g2 = Mounted {
        container_dir: ctr2.clone(),
    };
    let rootfs2 = t.store.mount_rootfs(&img.id, &ctr2).unwrap();
    assert!(rootfs2.join("data/keep").exists());
    assert!(!rootfs2.join("new-file").exists());
}

#[test]
fn unknown_image_cannot_be_mounted() {
    let t = common::store_with("", |_| {});
    let ctr = t.dir.path().join("c");
    let err = t
        .store
        .mount_rootfs(&format!("sha256:{}", "0".repeat(64)), &ctr)
        .unwrap_err();
    assert!(err.is_not_found(), "{err}");
}

#[test]
fn an_image_with_many_layers_mounts_past_the_option_length_limit() {
    // 70 layers of ~75-byte absolute paths: the lowerdir list is far over a page
    let reg = ScratchRegistry::start();
    let layout = common::disk_tempdir();
    let tars: Vec<(Vec<u8>, Comp)> = (0..70)
        .map(|i| {
            let name = format!("layer-{i:02}");
            let tar = common::tar_of(&[
                (&format!("files/{name}"), name.as_bytes()),
                ("top", name.as_bytes()),
            ]);
            (tar, if i % 2 == 0 { Comp::Gzip } else { Comp::None })
        })
        .collect();
    common::write_oci_layout(layout.path(), "latest", &tars);
    let name = reg.push(layout.path(), "latest", "many/layers");
    let t = common::store_with(
        &format!(
            "[[registry]]\nlocation = \"{}\"\ninsecure = true\n",
            reg.addr
        ),
        |_| {},
    );
    let img = block_on(t.store.pull(&name, None)).unwrap();
    let layers = t.store.layer_paths(&img.id).unwrap();
    assert_eq!(layers.len(), 70);
    let joined: usize = layers.iter().map(|p| p.as_os_str().len() + 1).sum();
    assert!(
        joined > 4096,
        "test needs a long lowerdir list, got {joined} bytes"
    );

    let ctr = t.dir.path().join("containers/many");
    let _g = Mounted {
        container_dir: ctr.clone(),
    };
    let rootfs = t.store.mount_rootfs(&img.id, &ctr).unwrap();
    assert_eq!(common::ls(&rootfs.join("files")).len(), 70);
    assert_eq!(
        std::fs::read_to_string(rootfs.join("top")).unwrap(),
        "layer-69"
    );
    std::fs::write(rootfs.join("w"), "x").unwrap();
    assert!(ctr.join("upper/w").exists());
    ImageStore::unmount_rootfs(&ctr).unwrap();
    assert!(!ctr.join("rootfs").exists());
}

/// The crius-pause binary built by `cargo build -p crius-pause`.
fn pause_binary() -> PathBuf {
    if let Ok(p) = std::env::var("CRIUS_PAUSE_BINARY") {
        return PathBuf::from(p);
    }
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    for profile in ["debug", "release"] {
        let p = target.join(profile).join("crius-pause");
        if p.exists() {
            return p;
        }
    }
    panic!("crius-pause not built: run `cargo build -p crius-pause` (or set CRIUS_PAUSE_BINARY)");
}

/// A runc container; killed and deleted on drop.
struct RuncContainer {
    root: PathBuf,
    id: String,
    child: Option<Child>,
}

impl RuncContainer {
    fn runc(&self) -> Command {
        let mut c = Command::new("runc");
        c.arg("--root").arg(&self.root);
        c
    }

    fn status(&self) -> Option<String> {
        let out = self.runc().args(["state", &self.id]).output().ok()?;
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        v["status"].as_str().map(str::to_string)
    }
}

impl Drop for RuncContainer {
    fn drop(&mut self) {
        let _ = self.runc().args(["kill", &self.id, "KILL"]).output();
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = self.runc().args(["delete", "--force", &self.id]).output();
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

#[test]
fn pause_image_runs_in_runc_and_exits_zero_on_sigterm() {
    if Command::new("runc").arg("--version").output().is_err() {
        panic!("runc is not installed");
    }
    let t = common::store_with("", |_| {});
    let img = t
        .store
        .install_pause_image("registry.k8s.io/pause:3.10", &pause_binary())
        .unwrap();
    let bundle = t.dir.path().join("bundle");
    std::fs::create_dir_all(&bundle).unwrap();
    let _m = Mounted {
        container_dir: bundle.clone(),
    };
    let rootfs = t
        .store
        .mount_rootfs("registry.k8s.io/pause:3.10", &bundle)
        .unwrap();
    assert_eq!(common::ls(&rootfs), vec!["pause".to_string()]);

    let out = Command::new("runc")
        .arg("spec")
        .current_dir(&bundle)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let spec_path = bundle.join("config.json");
    let mut spec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&spec_path).unwrap()).unwrap();
    spec["root"]["path"] = serde_json::json!(rootfs);
    spec["root"]["readonly"] = serde_json::json!(true);
    spec["process"]["terminal"] = serde_json::json!(false);
    spec["process"]["args"] = serde_json::json!(["/pause"]);
    std::fs::write(&spec_path, serde_json::to_vec_pretty(&spec).unwrap()).unwrap();

    let id = format!("crius-image-test-pause-{}", std::process::id());
    let mut ctr = RuncContainer {
        root: t.dir.path().join("runc-root"),
        id: id.clone(),
        child: None,
    };
    let child = ctr
        .runc()
        .args(["run", "--bundle"])
        .arg(&bundle)
        .arg(&id)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    ctr.child = Some(child);
    let start = Instant::now();
    while ctr.status().as_deref() != Some("running") {
        if let Some(st) = ctr.child.as_mut().unwrap().try_wait().unwrap() {
            let mut err = String::new();
            use std::io::Read;
            let _ = ctr
                .child
                .as_mut()
                .unwrap()
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err);
            panic!("runc run exited early ({st}): {err}");
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "container did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // still running a moment later: pause sleeps
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(ctr.status().as_deref(), Some("running"));

    let out = ctr.runc().args(["kill", &id, "TERM"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let start = Instant::now();
    let status = loop {
        if let Some(st) = ctr.child.as_mut().unwrap().try_wait().unwrap() {
            break st;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "pause ignored SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0), "pause exit status");
    assert!(img.pinned);
}
