//! Times a pull from a local registry against `tar -x` of the same layers on
//! the same disk.
//!
//! ```text
//! cargo run --release -p crius-image --example pull_bench -- [REF] [--layout OCI_DIR] [--runs N]
//! ```
//!
//! REF defaults to `$CRIUS_TEST_REGISTRY/crius-test/multilayer:latest` and the
//! layout (where the layer blobs are read for tar) to
//! `$CRIUS_TEST_OCI_DIR/multilayer`, both from /var/tmp/crius-fixtures/env
//! (written by e2e/fixtures/setup.sh). Every run pulls into a fresh store, so
//! each pull downloads, verifies, decompresses, unpacks and syncs every layer.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crius_image::{ImageStore, ImageStoreConfig};

fn fixture_vars() -> HashMap<String, String> {
    let mut vars: HashMap<String, String> = std::env::vars().collect();
    if let Ok(text) = std::fs::read_to_string("/var/tmp/crius-fixtures/env") {
        for line in text.lines() {
            if let Some((k, v)) = line.split_once('=') {
                vars.entry(k.to_string()).or_insert_with(|| v.to_string());
            }
        }
    }
    vars
}

/// Layer blobs and media types of the layout's single (or "latest") manifest.
fn layout_layers(layout: &Path) -> Result<Vec<(PathBuf, String)>, Box<dyn std::error::Error>> {
    let blob = |d: &str| {
        layout
            .join("blobs/sha256")
            .join(d.trim_start_matches("sha256:"))
    };
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json"))?)?;
    let mut digest = index["manifests"][0]["digest"]
        .as_str()
        .ok_or("index.json has no manifest")?
        .to_string();
    let mut manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(blob(&digest))?)?;
    if let Some(list) = manifest["manifests"].as_array() {
        digest = list
            .iter()
            .find(|m| m["platform"]["architecture"] == crius_image::host_platform().1)
            .and_then(|m| m["digest"].as_str())
            .ok_or("no host manifest in the index")?
            .to_string();
        manifest = serde_json::from_slice(&std::fs::read(blob(&digest))?)?;
    }
    let layers = manifest["layers"]
        .as_array()
        .ok_or("manifest has no layers")?;
    Ok(layers
        .iter()
        .filter_map(|l| {
            Some((
                blob(l["digest"].as_str()?),
                l["mediaType"].as_str()?.to_string(),
            ))
        })
        .collect())
}

fn tar_extract(layers: &[(PathBuf, String)], dest: &Path, sync: bool) -> Duration {
    let start = Instant::now();
    for (i, (blob, media_type)) in layers.iter().enumerate() {
        let dir = dest.join(i.to_string());
        std::fs::create_dir_all(&dir).expect("mkdir");
        let mut cmd = Command::new("tar");
        if media_type.ends_with("gzip") {
            cmd.arg("-xzf");
        } else if media_type.ends_with("zstd") {
            cmd.args(["--zstd", "-xf"]);
        } else {
            cmd.arg("-xf");
        }
        let st = cmd
            .arg(blob)
            .arg("-C")
            .arg(&dir)
            .arg("--same-owner")
            .arg("--xattrs")
            .status()
            .expect("tar");
        assert!(st.success(), "tar failed on {}", blob.display());
    }
    if sync {
        let st = Command::new("sync")
            .arg("-f")
            .arg(dest)
            .status()
            .expect("sync");
        assert!(st.success());
    }
    start.elapsed()
}

fn stats(name: &str, mut v: Vec<Duration>) {
    v.sort();
    let median = v[v.len() / 2];
    let p90 = v[((v.len() * 9).div_ceil(10))
        .saturating_sub(1)
        .min(v.len() - 1)];
    println!(
        "{name:<34} median {:>8.1} ms   p90 {:>8.1} ms   min {:>8.1} ms   (n={})",
        median.as_secs_f64() * 1e3,
        p90.as_secs_f64() * 1e3,
        v[0].as_secs_f64() * 1e3,
        v.len()
    );
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let vars = fixture_vars();
    let mut reference = None;
    let mut layout = None;
    let mut runs = 5usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--layout" => layout = args.next().map(PathBuf::from),
            "--runs" => runs = args.next().and_then(|n| n.parse().ok()).ok_or("--runs N")?,
            _ => reference = Some(a),
        }
    }
    let registry = vars
        .get("CRIUS_TEST_REGISTRY")
        .cloned()
        .unwrap_or_else(|| "127.0.0.1:5000".to_string());
    let reference = reference.unwrap_or_else(|| format!("{registry}/crius-test/multilayer:latest"));
    let layout = layout.unwrap_or_else(|| {
        PathBuf::from(
            vars.get("CRIUS_TEST_OCI_DIR")
                .cloned()
                .unwrap_or_else(|| "/var/tmp/crius-fixtures/oci".to_string()),
        )
        .join("multilayer")
    });
    let layers = layout_layers(&layout)?;
    let total: u64 = layers
        .iter()
        .map(|(p, _)| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .sum();
    println!(
        "image {reference}: {} layers, {:.1} MB compressed; layout {}",
        layers.len(),
        total as f64 / 1e6,
        layout.display()
    );

    let work = tempfile::Builder::new()
        .prefix("crius-pull-bench-")
        .tempdir_in("/var/tmp")?;
    let host = reference.split('/').next().unwrap_or_default().to_string();
    let mut pulls = Vec::new();
    let mut tars = Vec::new();
    let mut tars_sync = Vec::new();
    for i in 0..runs {
        let mut config = ImageStoreConfig::new(work.path().join(format!("store-{i}")));
        config.registries_conf = Some(work.path().join("no-registries.conf"));
        std::fs::write(work.path().join("no-registries.conf"), "")?;
        config.insecure_registries = vec![host.clone()];
        let store = ImageStore::open(config)?;
        let start = Instant::now();
        store.pull(&reference, None).await?;
        pulls.push(start.elapsed());
        assert_eq!(store.download_count() as usize, layers.len());
        std::fs::remove_dir_all(store.root())?;

        let dest = work.path().join(format!("tar-{i}"));
        tars.push(tar_extract(&layers, &dest, false));
        std::fs::remove_dir_all(&dest)?;
        let dest = work.path().join(format!("tar-sync-{i}"));
        tars_sync.push(tar_extract(&layers, &dest, true));
        std::fs::remove_dir_all(&dest)?;
    }
    stats("crius pull (download+verify+unpack)", pulls.clone());
    stats("tar -x of the layer files", tars.clone());
    stats("tar -x + sync -f", tars_sync.clone());
    let med = |mut v: Vec<Duration>| {
        v.sort();
        v[v.len() / 2].as_secs_f64()
    };
    println!(
        "ratio pull / tar: {:.2}   pull / (tar + sync): {:.2}",
        med(pulls.clone()) / med(tars),
        med(pulls) / med(tars_sync)
    );
    Ok(())
}
