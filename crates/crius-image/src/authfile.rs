//! containers-auth.json(5): the credentials file that `podman login`, skopeo and CRI-O's
//! `global_auth_file` share. Keys name a registry (`host[:port]`) or a part of one
//! (`host/namespace[/repo]`); the most specific key that covers an image wins. Docker's
//! legacy keys (`https://index.docker.io/v1/`) are understood too.

use std::collections::HashMap;
use std::fs;
use std::path::Path;

use serde::Deserialize;

use crate::reference::canonical_registry;
use crate::{Credentials, Error};

#[derive(Debug, Default, Deserialize)]
struct RawFile {
    #[serde(default)]
    auths: HashMap<String, RawEntry>,
}

#[derive(Debug, Default, Deserialize)]
struct RawEntry {
    /// base64 of `user:password`.
    #[serde(default)]
    auth: String,
    #[serde(default, rename = "identitytoken")]
    identity_token: String,
}

/// The credentials of an auth file, by normalized key (`host[/path]`).
#[derive(Debug, Default)]
pub struct AuthFile {
    entries: HashMap<String, Credentials>,
}

impl AuthFile {
    /// Reads `path`; a file that does not exist holds no credentials.
    pub fn load(path: &Path) -> Result<AuthFile, Error> {
        let text = match fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(AuthFile::default()),
            Err(e) => return Err(Error::io(path, e)),
        };
        Self::parse(&text).map_err(|reason| Error::AuthFile {
            path: path.to_path_buf(),
            reason,
        })
    }

    /// Parses the JSON text of an auth file.
    pub fn parse(text: &str) -> Result<AuthFile, String> {
        let raw: RawFile = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let entries = raw
            .auths
            .into_iter()
            .filter_map(|(key, e)| {
                let key = normalize_key(&key)?;
                let creds = Credentials {
                    auth: e.auth,
                    identity_token: e.identity_token,
                    ..Default::default()
                };
                Some((key, creds))
            })
            .collect();
        Ok(AuthFile { entries })
    }

    /// The credentials for `repository` on `registry`: those of the longest key that is the
    /// registry itself or a path prefix of `registry/repository`.
    pub fn lookup(&self, registry: &str, repository: &str) -> Option<&Credentials> {
        let registry = canonical_registry(registry);
        let mut key = if repository.is_empty() {
            registry.clone()
        } else {
            format!("{registry}/{repository}")
        };
        loop {
            if let Some(c) = self.entries.get(&key) {
                return Some(c);
            }
            if key.len() <= registry.len() {
                return None;
            }
            key.truncate(key.rfind('/')?);
        }
    }
}

/// `https://index.docker.io/v1/` -> `docker.io`; `quay.io/ns/` -> `quay.io/ns`.
fn normalize_key(key: &str) -> Option<String> {
    let key = key
        .trim()
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let key = key
        .strip_suffix("/v1/")
        .or_else(|| key.strip_suffix("/v2/"))
        .unwrap_or(key)
        .trim_end_matches('/');
    let (host, path) = key.split_once('/').unwrap_or((key, ""));
    if host.is_empty() {
        return None;
    }
    let host = canonical_registry(host);
    Some(if path.is_empty() {
        host
    } else {
        format!("{host}/{path}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"{
        "auths": {
            "quay.io": {"auth": "aG9zdDpwYXNz"},
            "quay.io/team": {"auth": "dGVhbTpwYXNz"},
            "quay.io/team/special/": {"auth": "c3BlY2lhbDpwYXNz"},
            "https://index.docker.io/v1/": {"auth": "aHViOnBhc3M="},
            "127.0.0.1:5001": {"auth": "bG9jYWw6cGFzcw==", "identitytoken": "tok"}
        },
        "credHelpers": {"gcr.io": "gcloud"}
    }"#;

    fn auth_of(f: &AuthFile, registry: &str, repo: &str) -> Option<String> {
        f.lookup(registry, repo).map(|c| c.auth.clone())
    }

    #[test]
    fn the_most_specific_key_wins() {
        let f = AuthFile::parse(FILE).unwrap();
        assert_eq!(
            auth_of(&f, "quay.io", "other/app").as_deref(),
            Some("aG9zdDpwYXNz")
        );
        assert_eq!(
            auth_of(&f, "quay.io", "team/app").as_deref(),
            Some("dGVhbTpwYXNz")
        );
        assert_eq!(
            auth_of(&f, "quay.io", "team/special").as_deref(),
            Some("c3BlY2lhbDpwYXNz")
        );
        // A key is a path prefix, not a string prefix.
        assert_eq!(
            auth_of(&f, "quay.io", "teamwork/app").as_deref(),
            Some("aG9zdDpwYXNz")
        );
    }

    #[test]
    fn docker_hub_keys_in_every_spelling_match() {
        let f = AuthFile::parse(FILE).unwrap();
        for registry in ["docker.io", "index.docker.io", "registry-1.docker.io"] {
            assert_eq!(
                auth_of(&f, registry, "library/busybox").as_deref(),
                Some("aHViOnBhc3M="),
                "{registry}"
            );
        }
    }

    #[test]
    fn ports_identity_tokens_and_unknown_registries() {
        let f = AuthFile::parse(FILE).unwrap();
        let c = f.lookup("127.0.0.1:5001", "crius-test/busybox").unwrap();
        assert_eq!(c.auth, "bG9jYWw6cGFzcw==");
        assert_eq!(c.identity_token, "tok");
        assert!(f.lookup("127.0.0.1:5000", "crius-test/busybox").is_none());
        assert!(f.lookup("gcr.io", "app").is_none());
    }

    #[test]
    fn bad_json_is_refused_and_a_missing_file_is_empty() {
        assert!(AuthFile::parse("{\"auths\": [").is_err());
        assert!(AuthFile::parse("{}").unwrap().entries.is_empty());
        let f = AuthFile::load(Path::new("/nonexistent/auth.json")).unwrap();
        assert!(f.entries.is_empty());
    }

    #[test]
    fn a_bad_file_names_itself() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth.json");
        std::fs::write(&path, "not json").unwrap();
        let err = AuthFile::load(&path).unwrap_err();
        assert!(err.to_string().contains("auth.json"), "{err}");
    }
}
