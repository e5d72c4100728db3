//! The floor under PullImage: how long plain `tar` takes to unpack the same layer blobs,
//! read from an OCI layout on disk, into a fresh dir on the same disk.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{anyhow, bail, Context};
use serde::{Deserialize, Serialize};

use crate::stats::summarize;

/// Where the layers are and where to unpack them.
#[derive(Clone, Debug, clap::Args)]
pub struct FloorArgs {
    /// An OCI image layout holding one image (index.json, blobs/sha256).
    #[arg(long, default_value = "/var/tmp/crius-fixtures/oci/multilayer")]
    pub oci_layout: PathBuf,
    /// Dir on the disk the runtimes unpack to; fresh subdirs are made and removed there.
    #[arg(long)]
    pub work_dir: PathBuf,
    /// Unpacks to time.
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// Where to write the JSON result.
    #[arg(long)]
    pub out: PathBuf,
}

/// One compressed layer of the image.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Layer {
    /// Blob path.
    pub path: PathBuf,
    /// OCI media type.
    pub media_type: String,
    /// Compressed size in bytes.
    pub size: u64,
}

/// The floor's figures.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FloorResult {
    /// The layout measured.
    pub oci_layout: PathBuf,
    /// Its layers, in order.
    pub layers: Vec<Layer>,
    /// Time to unpack all layers, one sample per run, in ms.
    pub samples: Vec<f64>,
    /// Median of `samples`.
    pub median_ms: f64,
    /// The commands used.
    pub method: String,
}

/// The layers of the single image in the layout, from index.json and its manifest.
pub fn layout_layers(layout: &Path) -> anyhow::Result<Vec<Layer>> {
    let read_json = |path: PathBuf| -> anyhow::Result<serde_json::Value> {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))
    };
    let blob = |digest: &str| -> anyhow::Result<PathBuf> {
        let hex = digest
            .strip_prefix("sha256:")
            .ok_or_else(|| anyhow!("digest {digest} in {} is not sha256", layout.display()))?;
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            bail!("digest {digest} in {} is malformed", layout.display());
        }
        Ok(layout.join("blobs/sha256").join(hex))
    };
    let index = read_json(layout.join("index.json"))?;
    let manifest_digest = index["manifests"][0]["digest"]
        .as_str()
        .ok_or_else(|| anyhow!("{}/index.json names no manifest", layout.display()))?;
    let manifest = read_json(blob(manifest_digest)?)?;
    let layers = manifest["layers"]
        .as_array()
        .ok_or_else(|| anyhow!("manifest {manifest_digest} has no layers"))?;
    layers
        .iter()
        .map(|l| {
            let digest = l["digest"]
                .as_str()
                .ok_or_else(|| anyhow!("a layer of {manifest_digest} has no digest"))?;
            Ok(Layer {
                path: blob(digest)?,
                media_type: l["mediaType"].as_str().unwrap_or_default().to_string(),
                size: l["size"].as_u64().unwrap_or(0),
            })
        })
        .collect()
}

/// The shell command that unpacks `layer` into `dest`.
pub fn unpack_command(layer: &Layer, dest: &Path) -> anyhow::Result<String> {
    let blob = shell_quote(&layer.path.display().to_string());
    let dest = shell_quote(&dest.display().to_string());
    let mt = layer.media_type.as_str();
    if mt.ends_with("+zstd") {
        Ok(format!("zstd -d -q -c {blob} | tar -x -C {dest}"))
    } else if mt.ends_with("+gzip") || mt.ends_with(".gzip") {
        Ok(format!("tar -xzf {blob} -C {dest}"))
    } else if mt.ends_with(".tar") || mt.ends_with("diff.tar") {
        Ok(format!("tar -xf {blob} -C {dest}"))
    } else {
        bail!(
            "layer {} has media type {mt}, which tar cannot unpack here",
            layer.path.display()
        )
    }
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Times `args.runs` unpacks of every layer and writes the result.
pub fn run(args: &FloorArgs) -> anyhow::Result<FloorResult> {
    let layers = layout_layers(&args.oci_layout)?;
    std::fs::create_dir_all(&args.work_dir)
        .with_context(|| format!("cannot make {}", args.work_dir.display()))?;
    let mut samples = Vec::new();
    for _ in 0..args.runs {
        let dest = tempfile::Builder::new()
            .prefix("floor-")
            .tempdir_in(&args.work_dir)
            .with_context(|| format!("cannot make a dir in {}", args.work_dir.display()))?;
        let script = layers
            .iter()
            .map(|l| unpack_command(l, dest.path()))
            .collect::<anyhow::Result<Vec<_>>>()?
            .join(" && ");
        let start = Instant::now();
        let status = Command::new("/bin/bash")
            .args(["-e", "-o", "pipefail", "-c", &script])
            .stdin(Stdio::null())
            .status()
            .context("cannot run /bin/sh")?;
        let ms = start.elapsed().as_secs_f64() * 1000.0;
        if !status.success() {
            bail!(
                "unpacking {} failed ({status}): {script}",
                args.oci_layout.display()
            );
        }
        samples.push(ms);
    }
    let median_ms = summarize(&samples).map(|s| s.median).unwrap_or(f64::NAN);
    let result = FloorResult {
        oci_layout: args.oci_layout.clone(),
        layers,
        samples,
        median_ms,
        method: "tar -xzf BLOB -C DIR (gzip) / zstd -d -c BLOB | tar -x -C DIR (zstd), all layers in order into a fresh dir, no fsync".to_string(),
    };
    std::fs::write(&args.out, serde_json::to_string_pretty(&result)?)
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(media_type: &str) -> Layer {
        Layer {
            path: PathBuf::from("/b/it's"),
            media_type: media_type.to_string(),
            size: 1,
        }
    }

    #[test]
    fn commands_follow_the_media_type() {
        let dest = Path::new("/d");
        assert_eq!(
            unpack_command(&layer("application/vnd.oci.image.layer.v1.tar+gzip"), dest).unwrap(),
            r"tar -xzf '/b/it'\''s' -C '/d'"
        );
        assert_eq!(
            unpack_command(&layer("application/vnd.oci.image.layer.v1.tar+zstd"), dest).unwrap(),
            r"zstd -d -q -c '/b/it'\''s' | tar -x -C '/d'"
        );
        assert_eq!(
            unpack_command(
                &layer("application/vnd.docker.image.rootfs.diff.tar.gzip"),
                dest
            )
            .unwrap(),
            r"tar -xzf '/b/it'\''s' -C '/d'"
        );
        assert!(unpack_command(&layer("application/octet-stream"), dest).is_err());
    }

    #[test]
    fn layers_come_from_the_manifest_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = dir.path().join("blobs/sha256");
        std::fs::create_dir_all(&blobs).unwrap();
        let (m, a, b) = ("1".repeat(64), "a".repeat(64), "b".repeat(64));
        std::fs::write(
            dir.path().join("index.json"),
            format!(r#"{{"manifests":[{{"digest":"sha256:{m}"}}]}}"#),
        )
        .unwrap();
        std::fs::write(
            blobs.join(&m),
            format!(
                r#"{{"layers":[{{"digest":"sha256:{a}","mediaType":"x+gzip","size":3}},{{"digest":"sha256:{b}","mediaType":"x+zstd","size":4}}]}}"#
            ),
        )
        .unwrap();
        let layers = layout_layers(dir.path()).unwrap();
        assert_eq!(layers.len(), 2);
        assert_eq!(layers[0].path, blobs.join(&a));
        assert_eq!(layers[1].media_type, "x+zstd");
        assert_eq!(layers[1].size, 4);
    }

    #[test]
    fn traversing_digests_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("index.json"),
            r#"{"manifests":[{"digest":"sha256:../../etc/passwd"}]}"#,
        )
        .unwrap();
        assert!(layout_layers(dir.path()).is_err());
    }

    #[test]
    fn unpacks_a_real_gzip_layer() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        std::fs::create_dir_all(&src).unwrap();
        std::fs::write(src.join("hello"), "hi").unwrap();
        let blob = dir.path().join("layer.tgz");
        let ok = Command::new("tar")
            .arg("-czf")
            .arg(&blob)
            .arg("-C")
            .arg(&src)
            .arg(".")
            .status()
            .unwrap();
        assert!(ok.success());
        let dest = dir.path().join("dest");
        std::fs::create_dir_all(&dest).unwrap();
        let l = Layer {
            path: blob,
            media_type: "application/vnd.oci.image.layer.v1.tar+gzip".to_string(),
            size: 0,
        };
        let ok = Command::new("/bin/sh")
            .args(["-c", &unpack_command(&l, &dest).unwrap()])
            .status()
            .unwrap();
        assert!(ok.success());
        assert_eq!(std::fs::read_to_string(dest.join("hello")).unwrap(), "hi");
    }
}
