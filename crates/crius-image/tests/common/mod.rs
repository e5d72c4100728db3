//! Shared pieces of the integration tests: the fixture registries, stores in
//! temp dirs, scratch registries, and OCI images built on the spot.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crius_image::{ImageStore, ImageStoreConfig};
use sha2::{Digest, Sha256};

/// Values written by e2e/fixtures/setup.sh.
pub struct Fixtures {
    vars: HashMap<String, String>,
}

const ENV_FILE: &str = "/var/tmp/crius-fixtures/env";

impl Fixtures {
    /// Reads the fixture variables from the environment or the env file.
    pub fn load() -> Fixtures {
        let mut vars: HashMap<String, String> = std::env::vars()
            .filter(|(k, _)| k.starts_with("CRIUS_TEST_"))
            .collect();
        if !vars.contains_key("CRIUS_TEST_REGISTRY") {
            let text = std::fs::read_to_string(ENV_FILE).unwrap_or_else(|e| {
                panic!(
                    "test registries are not set up ({ENV_FILE}: {e}); run e2e/fixtures/setup.sh as root first"
                )
            });
            for line in text.lines() {
                if let Some((k, v)) = line.split_once('=') {
                    vars.entry(k.trim().to_string())
                        .or_insert_with(|| v.trim().to_string());
                }
            }
        }
        let f = Fixtures { vars };
        let reg = f.get("CRIUS_TEST_REGISTRY");
        assert!(
            http_status(&reg, "/v2/").is_some(),
            "the test registry {reg} does not answer; run e2e/fixtures/setup.sh as root"
        );
        f
    }

    /// One variable; panics naming setup.sh when it is missing.
    pub fn get(&self, key: &str) -> String {
        self.vars
            .get(key)
            .cloned()
            .unwrap_or_else(|| panic!("{key} is not set; run e2e/fixtures/setup.sh as root first"))
    }

    pub fn registry(&self) -> String {
        self.get("CRIUS_TEST_REGISTRY")
    }

    /// "REGISTRY/crius-test/NAME:latest" on the plain registry.
    pub fn image(&self, name: &str) -> String {
        format!("{}/crius-test/{name}:latest", self.registry())
    }
}

/// A store in a temp dir on the real disk (overlayfs and trusted xattrs work there).
pub struct TestStore {
    pub store: ImageStore,
    /// What the store was opened with (a reload takes it again, changed or not).
    pub config: ImageStoreConfig,
    pub dir: tempfile::TempDir,
}

impl TestStore {
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("images")
    }
}

/// A temp dir under /var/tmp (not tmpfs).
pub fn disk_tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("crius-image-test-")
        .tempdir_in("/var/tmp")
        .unwrap()
}

/// A store whose registries.conf is `conf` (written into the temp dir).
pub fn store_with(conf: &str, tweak: impl FnOnce(&mut ImageStoreConfig)) -> TestStore {
    let dir = disk_tempdir();
    let conf_path = dir.path().join("registries.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let mut config = ImageStoreConfig::new(dir.path().join("images"));
    config.registries_conf = Some(conf_path);
    tweak(&mut config);
    let store = ImageStore::open(config.clone()).unwrap();
    TestStore { store, config, dir }
}

/// A store that treats the fixture registries as insecure.
pub fn fixture_store(f: &Fixtures) -> TestStore {
    let conf = format!(
        "[[registry]]\nlocation = \"{}\"\ninsecure = true\n[[registry]]\nlocation = \"{}\"\ninsecure = true\n",
        f.registry(),
        f.get("CRIUS_TEST_AUTH_REGISTRY")
    );
    store_with(&conf, |_| {})
}

/// GET http://addr/path, returning the status code.
pub fn http_status(addr: &str, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).ok()?;
    let head = String::from_utf8_lossy(&buf[..n]);
    head.split_whitespace().nth(1)?.parse().ok()
}

/// A port on 127.0.0.1 nothing listens on (bound, then released).
pub fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// A docker-registry of the test's own, on a free port, storage in a temp dir.
/// Stopped by its PID on drop.
pub struct ScratchRegistry {
    pub addr: String,
    pub dir: tempfile::TempDir,
    child: Child,
}

impl ScratchRegistry {
    pub fn start() -> ScratchRegistry {
        Self::start_with("")
    }

    /// Starts with extra top-level config (e.g. an `auth:` section).
    pub fn start_with(extra_config: &str) -> ScratchRegistry {
        let dir = disk_tempdir();
        let port = closed_port();
        let addr = format!("127.0.0.1:{port}");
        let config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n{extra_config}",
            dir.path().join("data").display()
        );
        std::fs::write(dir.path().join("config.yml"), config).unwrap();
        let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
        let mut cmd = Command::new("docker-registry");
        cmd.arg("serve")
            .arg(dir.path().join("config.yml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("REGISTRY_")) {
            cmd.env_remove(k);
        }
        let child = cmd
            .spawn()
            .expect("docker-registry not installed (run e2e/fixtures/setup.sh)");
        let reg = ScratchRegistry { addr, dir, child };
        let start = Instant::now();
        while !matches!(
            http_status(&reg.addr, "/v2/"),
            Some(200) | Some(400) | Some(401)
        ) {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "scratch registry on {} did not start",
                reg.addr
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        reg
    }

    /// Pushes `layout:tag` (an OCI layout dir) as `repo:tag` with skopeo.
    pub fn push(&self, layout: &Path, tag: &str, repo: &str) -> String {
        self.push_args(layout, tag, repo, &["--preserve-digests"])
    }

    /// Pushes with extra skopeo arguments (`--format v2s2`, `--all`).
    pub fn push_args(&self, layout: &Path, tag: &str, repo: &str, extra: &[&str]) -> String {
        let dest = format!("{}/{repo}:{tag}", self.addr);
        let out = Command::new("skopeo")
            .args(["copy", "--quiet", "--dest-tls-verify=false"])
            .args(extra)
            .arg(format!("oci:{}:{tag}", layout.display()))
            .arg(format!("docker://{dest}"))
            .output()
            .expect("skopeo not installed (run e2e/fixtures/setup.sh)");
        assert!(
            out.status.success(),
            "skopeo copy failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        dest
    }

    /// Where the registry keeps a blob's bytes.
    pub fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap();
        self.dir
            .path()
            .join("data/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }
}

impl Drop for ScratchRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// How a built layer is compressed.
#[derive(Clone, Copy)]
pub enum Comp {
    None,
    Gzip,
    Zstd,
}

/// A tar with regular files (path, content), all root-owned, mode 0644.
pub fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, data) in files {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o644);
        h.set_mtime(1);
        h.set_size(data.len() as u64);
        b.append_data(&mut h, path, *data).unwrap();
    }
    b.into_inner().unwrap()
}

/// Writes a one-manifest OCI layout at `dir` tagged `tag` from tars, returning
/// (manifest digest, config digest, layer blob digests).
pub fn write_oci_layout(
    dir: &Path,
    tag: &str,
    layers: &[(Vec<u8>, Comp)],
) -> (String, String, Vec<String>) {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |data: &[u8]| -> String {
        let d = sha256(data);
        std::fs::write(blobs.join(d.strip_prefix("sha256:").unwrap()), data).unwrap();
        d
    };
    let mut diff_ids = Vec::new();
    let mut descs = Vec::new();
    let mut layer_digests = Vec::new();
    for (tar, comp) in layers {
        diff_ids.push(sha256(tar));
        let (data, mt) = match comp {
            Comp::None => (tar.clone(), "application/vnd.oci.image.layer.v1.tar"),
            Comp::Gzip => {
                let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                e.write_all(tar).unwrap();
                (
                    e.finish().unwrap(),
                    "application/vnd.oci.image.layer.v1.tar+gzip",
                )
            }
            Comp::Zstd => (
                zstd::encode_all(tar.as_slice(), 3).unwrap(),
                "application/vnd.oci.image.layer.v1.tar+zstd",
            ),
        };
        let d = put(&data);
        layer_digests.push(d.clone());
        descs.push(serde_json::json!({"mediaType": mt, "digest": d, "size": data.len()}));
    }
    let (os, arch, _) = crius_image::host_platform();
    let config = serde_json::json!({
        "architecture": arch, "os": os,
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    let config_raw = serde_json::to_vec(&config).unwrap();
    let config_digest = put(&config_raw);
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_raw.len()},
        "layers": descs,
    });
    let manifest_raw = serde_json::to_vec(&manifest).unwrap();
    let manifest_digest = put(&manifest_raw);
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest, "size": manifest_raw.len(),
            "annotations": {"org.opencontainers.image.ref.name": tag}
        }]
    });
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    (manifest_digest, config_digest, layer_digests)
}

/// Entries directly under `dir`, sorted.
pub fn ls(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Runs a future on a fresh multi-thread runtime.
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}
