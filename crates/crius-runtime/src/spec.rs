//! Loading and checking a bundle's `config.json` before anything is made.

use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;

use crate::error::{Error, Result};

/// A bundle with its parsed, checked spec and the absolute rootfs path.
#[derive(Debug, Clone)]
pub struct Bundle {
    pub path: PathBuf,
    pub spec: Spec,
    pub rootfs: PathBuf,
}

/// Reads `<bundle>/config.json`, checks the version and the fields the
/// runtime needs, and resolves the rootfs against the bundle.
pub fn load(bundle: &Path) -> Result<Bundle> {
    let path = std::fs::canonicalize(bundle).map_err(|source| Error::Bundle {
        path: bundle.to_path_buf(),
        source,
    })?;
    let config = path.join("config.json");
    let text = std::fs::read(&config).map_err(|source| Error::Bundle {
        path: config.clone(),
        source,
    })?;
    let value: serde_json::Value = serde_json::from_slice(&text).map_err(|e| Error::Config {
        path: path.clone(),
        reason: format!("does not parse: {e}"),
    })?;
    if let Some(v) = value.get("ociVersion").and_then(|v| v.as_str()) {
        check_version(v)?;
    }
    crate::caps::check_names(&value)?;
    let spec: Spec = serde_json::from_value(value).map_err(|e| Error::Config {
        path: path.clone(),
        reason: format!("does not parse: {e}"),
    })?;
    check_version(spec.version())?;
    let root = spec
        .root()
        .as_ref()
        .ok_or_else(|| Error::Spec("root is missing".into()))?;
    let rootfs = if root.path().is_absolute() {
        root.path().clone()
    } else {
        path.join(root.path())
    };
    let rootfs = std::fs::canonicalize(&rootfs).map_err(|e| Error::io("rootfs", &rootfs, e))?;
    if !rootfs.is_dir() {
        return Err(Error::Spec(format!(
            "rootfs {} is not a directory",
            rootfs.display()
        )));
    }
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| Error::Spec("process is missing".into()))?;
    if process.args().as_ref().is_none_or(|a| a.is_empty()) {
        return Err(Error::Spec("process.args is empty".into()));
    }
    if spec.linux().is_none() {
        return Err(Error::Spec(
            "linux is missing: only Linux containers are supported".into(),
        ));
    }
    Ok(Bundle { path, spec, rootfs })
}

/// Accepts the runtime-spec versions 1.0.0 through 1.2.x (with a "-dev" or
/// other suffix, as runc's own `spec` writes).
pub fn check_version(version: &str) -> Result<()> {
    let core = version.split(['-', '+']).next().unwrap_or("");
    let parts: Vec<&str> = core.split('.').collect();
    let ok = parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        && parts[0] == "1"
        && parts[1].parse::<u32>().is_ok_and(|m| m <= 2);
    if ok {
        Ok(())
    } else {
        Err(Error::OciVersion {
            version: version.to_string(),
        })
    }
}

/// runc's rule for container ids: no path separators, nothing that could
/// climb out of the state root.
pub fn check_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 1024
        && !id.starts_with(['.', '-'])
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-+".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidId(id.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        for v in ["1.0.0", "1.0.2-dev", "1.1.0", "1.2.1", "1.2.0+dev"] {
            check_version(v).unwrap();
        }
        for v in ["", "2.0.0", "0.9.0", "1.3.0", "1.0", "x.y.z", "1.0.0.0"] {
            assert!(check_version(v).is_err(), "{v}");
        }
    }

    #[test]
    fn ids() {
        for id in ["a", "abc-123", "x_y.z+1"] {
            check_id(id).unwrap();
        }
        for id in ["", "../x", "a/b", ".", "..", "-x", "a b"] {
            assert!(check_id(id).is_err(), "{id}");
        }
    }
}
