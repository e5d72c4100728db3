//! containers-registries.conf(5) version 2: where image bytes come from.
//!
//! Supported: `unqualified-search-registries`, `[aliases]`, and `[[registry]]`
//! tables with `prefix`, `location`, `insecure`, `blocked`,
//! `mirror-by-digest-only` and `[[registry.mirror]]` (`location`, `insecure`,
//! `pull-from-mirror`). Drop-ins in `registries.conf.d/*.conf` next to the main
//! file are applied in name order: a registry with the same prefix replaces the
//! earlier one, a search list replaces the earlier list, aliases are merged.
//!
//! A mirror changes where bytes are fetched from, never the name an image is
//! recorded under.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::reference::{self, canonical_registry, ImageName, DOCKER_HUB};
use crate::Error;

/// The file read when the store config names none.
pub const DEFAULT_REGISTRIES_CONF: &str = "/etc/containers/registries.conf";

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct ConfFile {
    unqualified_search_registries: Option<Vec<String>>,
    #[serde(default)]
    registry: Vec<RegistryTable>,
    aliases: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct RegistryTable {
    prefix: Option<String>,
    location: Option<String>,
    #[serde(default)]
    insecure: bool,
    #[serde(default)]
    blocked: bool,
    #[serde(default)]
    mirror_by_digest_only: bool,
    #[serde(default)]
    mirror: Vec<MirrorTable>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct MirrorTable {
    location: String,
    #[serde(default)]
    insecure: bool,
    pull_from_mirror: Option<String>,
}

/// Which references a mirror serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PullFromMirror {
    All,
    DigestOnly,
    TagOnly,
}

/// One `[[registry.mirror]]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mirror {
    pub location: String,
    pub insecure: bool,
    pub pull_from: PullFromMirror,
}

/// One `[[registry]]` table, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Registry {
    /// What the table matches: `host[:port][/path]` or `*.domain`.
    pub prefix: String,
    /// Where matching references really live (empty for wildcard prefixes: unchanged).
    pub location: String,
    pub insecure: bool,
    pub blocked: bool,
    pub mirror_by_digest_only: bool,
    pub mirrors: Vec<Mirror>,
}

/// A place to fetch an image from, in the order to try.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// The reference rewritten for this endpoint (its registry is where bytes come from).
    pub name: ImageName,
    /// Plain HTTP is allowed.
    pub insecure: bool,
    /// A mirror rather than the source location.
    pub mirror: bool,
}

/// The whole parsed configuration.
#[derive(Clone, Debug, Default)]
pub struct Registries {
    /// Registries tried for short names, in order. Empty: docker.io.
    pub search: Vec<String>,
    pub registries: Vec<Registry>,
    pub aliases: BTreeMap<String, String>,
    /// host[:port] allowed over plain HTTP from the daemon config.
    pub insecure_hosts: Vec<String>,
    /// The files that were read, for logs.
    pub sources: Vec<PathBuf>,
}

fn conf_err(path: &Path, reason: impl Into<String>) -> Error {
    Error::InvalidRegistriesConf {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

impl Registries {
    /// Reads `path` (or the default file) and the `registries.conf.d` drop-ins
    /// next to it. A missing default file is no error: short names then go to
    /// docker.io and every registry is contacted directly.
    pub fn load(path: Option<&Path>, insecure_hosts: &[String]) -> Result<Registries, Error> {
        let main = path.map_or_else(|| PathBuf::from(DEFAULT_REGISTRIES_CONF), Path::to_path_buf);
        let mut regs = Registries {
            insecure_hosts: insecure_hosts
                .iter()
                .map(|h| canonical_registry(h))
                .collect(),
            ..Registries::default()
        };
        match std::fs::read_to_string(&main) {
            Ok(text) => {
                regs.apply(&main, &text)?;
                regs.sources.push(main.clone());
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && path.is_none() => {}
            Err(e) => return Err(Error::io(&main, e)),
        }
        let dropin_dir = main
            .parent()
            .unwrap_or_else(|| Path::new("/"))
            .join("registries.conf.d");
        let mut dropins = Vec::new();
        match std::fs::read_dir(&dropin_dir) {
            Ok(entries) => {
                for entry in entries {
                    let entry = entry.map_err(|e| Error::io(&dropin_dir, e))?;
                    let p = entry.path();
                    if p.extension().is_some_and(|x| x == "conf") {
                        dropins.push(p);
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(&dropin_dir, e)),
        }
        dropins.sort();
        for p in dropins {
            let text = std::fs::read_to_string(&p).map_err(|e| Error::io(&p, e))?;
            regs.apply(&p, &text)?;
            regs.sources.push(p);
        }
        Ok(regs)
    }

    /// Parses one file's text and merges it into `self` (drop-in semantics).
    pub fn apply(&mut self, path: &Path, text: &str) -> Result<(), Error> {
        let file: ConfFile = toml::from_str(text).map_err(|e| conf_err(path, e.to_string()))?;
        if let Some(search) = file.unqualified_search_registries {
            for s in &search {
                if s.contains('/') || ImageName::with_explicit_registry(s).is_err() {
                    return Err(conf_err(
                        path,
                        format!("unqualified-search-registries: {s:?} is not a host[:port]"),
                    ));
                }
            }
            self.search = search.iter().map(|s| canonical_registry(s)).collect();
        }
        for table in file.registry {
            let reg = validate_registry(path, table)?;
            self.registries.retain(|r| r.prefix != reg.prefix);
            self.registries.push(reg);
        }
        if let Some(aliases) = file.aliases {
            for (short, target) in aliases {
                let parsed = reference::parse(&target)
                    .map_err(|e| conf_err(path, format!("alias {short:?}: {e}")))?;
                if parsed.is_short() || parsed.tag.is_some() || parsed.digest.is_some() {
                    return Err(conf_err(
                        path,
                        format!("alias {short:?}: {target:?} must be a fully qualified name without tag or digest"),
                    ));
                }
                self.aliases.insert(short, target);
            }
        }
        Ok(())
    }

    /// The fully qualified names a reference may mean, in the order to try.
    /// Qualified references mean themselves; short names go through
    /// `[aliases]`, then each of `unqualified-search-registries`, and to
    /// docker.io when the list is empty.
    pub fn candidates(&self, input: &str) -> Result<Vec<ImageName>, Error> {
        let parsed = reference::parse(input)?;
        if !parsed.is_short() {
            return Ok(vec![parsed.qualify(DOCKER_HUB)]);
        }
        if let Some(target) = self.aliases.get(&parsed.path) {
            let mut alias = reference::parse(target)?;
            alias.tag = parsed.tag.clone();
            alias.digest = parsed.digest.clone();
            return Ok(vec![alias.qualify(DOCKER_HUB)]);
        }
        if self.search.is_empty() {
            return Ok(vec![parsed.qualify(DOCKER_HUB)]);
        }
        let mut seen = HashSet::new();
        Ok(self
            .search
            .iter()
            .map(|reg| parsed.qualify(reg))
            .filter(|n| seen.insert(n.to_string()))
            .collect())
    }

    /// The `[[registry]]` table that applies to `name`: the longest matching
    /// prefix, exact prefixes before wildcards.
    pub fn find(&self, name: &ImageName) -> Option<&Registry> {
        let full = name.to_string();
        let host = host_of(&name.registry);
        self.registries
            .iter()
            .filter_map(|r| {
                if let Some(domain) = r.prefix.strip_prefix("*.") {
                    let matches = host.len() > domain.len()
                        && host.ends_with(domain)
                        && host.as_bytes()[host.len() - domain.len() - 1] == b'.';
                    // wildcards rank below any exact prefix
                    matches.then_some((r, r.prefix.len()))
                } else {
                    prefix_matches(&full, &r.prefix).then_some((r, 10_000 + r.prefix.len()))
                }
            })
            .max_by_key(|(_, rank)| *rank)
            .map(|(r, _)| r)
    }

    /// Whether plain HTTP is allowed for `registry` (host[:port]).
    pub fn is_insecure(&self, registry: &str) -> bool {
        let registry = canonical_registry(registry);
        if self.insecure_hosts.contains(&registry) {
            return true;
        }
        let as_name = ImageName {
            registry: registry.clone(),
            repository: String::new(),
            tag: None,
            digest: None,
        };
        self.find(&as_name).is_some_and(|r| r.insecure)
    }

    /// Where to fetch `name` from, mirrors first, then the source location.
    /// Fails with `RegistryBlocked` when the matching table is blocked.
    pub fn endpoints(&self, name: &ImageName) -> Result<Vec<Endpoint>, Error> {
        let Some(reg) = self.find(name) else {
            return Ok(vec![Endpoint {
                name: name.clone(),
                insecure: self.is_insecure(&name.registry),
                mirror: false,
            }]);
        };
        if reg.blocked {
            return Err(Error::RegistryBlocked {
                image: name.to_string(),
                registry: name.registry.clone(),
            });
        }
        let by_digest = name.digest.is_some();
        let mut out = Vec::new();
        for m in &reg.mirrors {
            let serves = match m.pull_from {
                PullFromMirror::All => !reg.mirror_by_digest_only || by_digest,
                PullFromMirror::DigestOnly => by_digest,
                PullFromMirror::TagOnly => !by_digest,
            };
            if !serves {
                continue;
            }
            let rewritten = rewrite(name, &reg.prefix, &m.location)?;
            let insecure = m.insecure || self.is_insecure(&rewritten.registry);
            out.push(Endpoint {
                name: rewritten,
                insecure,
                mirror: true,
            });
        }
        let source = if reg.location.is_empty() {
            name.clone()
        } else {
            rewrite(name, &reg.prefix, &reg.location)?
        };
        let insecure = reg.insecure || self.is_insecure(&source.registry);
        out.push(Endpoint {
            name: source,
            insecure,
            mirror: false,
        });
        Ok(out)
    }

    /// Every registry host that may be reached over plain HTTP under this config.
    pub fn all_insecure_hosts(&self) -> Vec<String> {
        let mut hosts: Vec<String> = self.insecure_hosts.clone();
        for r in &self.registries {
            if r.insecure && !r.location.is_empty() {
                hosts.push(registry_of(&r.location));
            }
            for m in &r.mirrors {
                if m.insecure {
                    hosts.push(registry_of(&m.location));
                }
            }
        }
        hosts.sort();
        hosts.dedup();
        hosts
    }
}

fn registry_of(location: &str) -> String {
    canonical_registry(location.split('/').next().unwrap_or(location))
}

fn host_of(registry: &str) -> &str {
    if registry.starts_with('[') {
        return registry;
    }
    registry.rsplit_once(':').map_or(registry, |(h, _)| h)
}

/// `full` starts with `prefix` and the prefix ends at a component boundary.
fn prefix_matches(full: &str, prefix: &str) -> bool {
    let Some(rest) = full.strip_prefix(prefix) else {
        return false;
    };
    match rest.as_bytes().first() {
        None | Some(b'/') | Some(b'@') => true,
        // a ':' after a bare host would be a port of another registry
        Some(b':') => prefix.contains('/'),
        Some(_) => false,
    }
}

/// Replaces the matched `prefix` of `name` with `location`.
fn rewrite(name: &ImageName, prefix: &str, location: &str) -> Result<ImageName, Error> {
    let repo_name = name.name();
    let rest = repo_name.strip_prefix(prefix).unwrap_or("");
    let base = ImageName::with_explicit_registry(&format!("{location}{rest}"))?;
    Ok(ImageName {
        registry: base.registry,
        repository: base.repository,
        tag: name.tag.clone(),
        digest: name.digest.clone(),
    })
}

fn validate_registry(path: &Path, t: RegistryTable) -> Result<Registry, Error> {
    let prefix = match (&t.prefix, &t.location) {
        (Some(p), _) if !p.is_empty() => p.clone(),
        (_, Some(l)) if !l.is_empty() => l.clone(),
        _ => {
            return Err(conf_err(
                path,
                "a [[registry]] needs a prefix or a location",
            ))
        }
    };
    let location = t.location.clone().unwrap_or_default();
    if let Some(domain) = prefix.strip_prefix("*.") {
        if domain.is_empty() || domain.contains('/') || domain.contains('*') {
            return Err(conf_err(
                path,
                format!("invalid wildcard prefix {prefix:?}"),
            ));
        }
    } else {
        check_location(path, &prefix, "prefix")?;
        if location.is_empty() && !t.blocked {
            return Err(conf_err(
                path,
                format!("registry {prefix:?}: location is empty"),
            ));
        }
    }
    if !location.is_empty() {
        check_location(path, &location, "location")?;
    }
    let mut mirrors = Vec::new();
    for m in t.mirror {
        check_location(path, &m.location, "mirror location")?;
        let pull_from = match m.pull_from_mirror.as_deref() {
            None | Some("") | Some("all") => PullFromMirror::All,
            Some("digest-only") => PullFromMirror::DigestOnly,
            Some("tag-only") => PullFromMirror::TagOnly,
            Some(other) => {
                return Err(conf_err(
                    path,
                    format!("mirror {}: unknown pull-from-mirror {other:?}", m.location),
                ))
            }
        };
        mirrors.push(Mirror {
            location: m.location,
            insecure: m.insecure,
            pull_from,
        });
    }
    Ok(Registry {
        prefix: canonical_prefix(&prefix),
        location,
        insecure: t.insecure,
        blocked: t.blocked,
        mirror_by_digest_only: t.mirror_by_digest_only,
        mirrors,
    })
}

/// `index.docker.io/x` and `docker.io/x` are the same prefix.
fn canonical_prefix(prefix: &str) -> String {
    match prefix.split_once('/') {
        Some((host, rest)) => format!("{}/{rest}", canonical_registry(host)),
        None => canonical_registry(prefix),
    }
}

fn check_location(path: &Path, value: &str, what: &str) -> Result<(), Error> {
    ImageName::with_explicit_registry(value)
        .map(|_| ())
        .map_err(|e| conf_err(path, format!("{what} {value:?}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(text: &str) -> Registries {
        let mut r = Registries::default();
        r.apply(Path::new("test.conf"), text).unwrap();
        r
    }

    fn n(s: &str) -> ImageName {
        reference::parse(s).unwrap().qualify(DOCKER_HUB)
    }

    const CRITEST: &str = r#"
unqualified-search-registries = ["docker.io"]
[[registry]]
prefix = "docker.io"
location = "docker.io"
[[registry.mirror]]
location = "127.0.0.1:5000"
insecure = true
[[registry]]
prefix = "registry.k8s.io"
location = "registry.k8s.io"
[[registry.mirror]]
location = "127.0.0.1:5000"
insecure = true
[[registry]]
prefix = "127.0.0.1:5000"
location = "127.0.0.1:5000"
insecure = true
"#;

    #[test]
    fn critest_file_sends_names_to_the_local_mirror() {
        let r = conf(CRITEST);
        let eps = r.endpoints(&n("registry.k8s.io/pause:3.10")).unwrap();
        assert_eq!(eps.len(), 2);
        assert_eq!(eps[0].name.to_string(), "127.0.0.1:5000/pause:3.10");
        assert!(eps[0].insecure && eps[0].mirror);
        assert_eq!(eps[1].name.to_string(), "registry.k8s.io/pause:3.10");
        assert!(!eps[1].insecure && !eps[1].mirror);

        let eps = r.endpoints(&n("busybox")).unwrap();
        assert_eq!(
            eps[0].name.to_string(),
            "127.0.0.1:5000/library/busybox:latest"
        );

        let eps = r.endpoints(&n("127.0.0.1:5000/x/y:1")).unwrap();
        assert_eq!(eps.len(), 1);
        assert!(eps[0].insecure);
        assert_eq!(r.all_insecure_hosts(), vec!["127.0.0.1:5000".to_string()]);
    }

    #[test]
    fn longest_prefix_wins_and_rewrites_the_path() {
        let r = conf(
            r#"
[[registry]]
prefix = "example.com"
location = "a.example.net"
[[registry]]
prefix = "example.com/team/app"
location = "b.example.net/mirror/app"
[[registry]]
prefix = "*.corp.example"
blocked = true
"#,
        );
        let eps = r.endpoints(&n("example.com/team/app:1")).unwrap();
        assert_eq!(eps[0].name.to_string(), "b.example.net/mirror/app:1");
        let eps = r.endpoints(&n("example.com/team/application:1")).unwrap();
        assert_eq!(eps[0].name.to_string(), "a.example.net/team/application:1");
        let eps = r.endpoints(&n("example.com:5000/team/app:1")).unwrap();
        assert_eq!(eps[0].name.to_string(), "example.com:5000/team/app:1");
        let err = r.endpoints(&n("reg.corp.example/x")).unwrap_err();
        assert!(err.is_blocked(), "{err}");
        assert!(r.endpoints(&n("corp.example/x")).is_ok());
    }

    #[test]
    fn mirrors_in_order_and_pull_from_mirror() {
        let r = conf(
            r#"
[[registry]]
location = "quay.io"
mirror-by-digest-only = false
[[registry.mirror]]
location = "m1.local:5000/q"
[[registry.mirror]]
location = "m2.local"
pull-from-mirror = "digest-only"
[[registry.mirror]]
location = "m3.local"
pull-from-mirror = "tag-only"
insecure = true
"#,
        );
        let by_tag: Vec<String> = r
            .endpoints(&n("quay.io/a/b:1"))
            .unwrap()
            .iter()
            .map(|e| e.name.to_string())
            .collect();
        assert_eq!(
            by_tag,
            ["m1.local:5000/q/a/b:1", "m3.local/a/b:1", "quay.io/a/b:1"]
        );
        let d = format!("sha256:{}", "0".repeat(64));
        let by_digest: Vec<String> = r
            .endpoints(&n(&format!("quay.io/a/b@{d}")))
            .unwrap()
            .iter()
            .map(|e| e.name.name())
            .collect();
        assert_eq!(
            by_digest,
            ["m1.local:5000/q/a/b", "m2.local/a/b", "quay.io/a/b"]
        );
    }

    #[test]
    fn mirror_by_digest_only_skips_mirrors_for_tags() {
        let r = conf(
            r#"
[[registry]]
location = "quay.io"
mirror-by-digest-only = true
[[registry.mirror]]
location = "m1.local"
"#,
        );
        assert_eq!(r.endpoints(&n("quay.io/a:1")).unwrap().len(), 1);
        let d = format!("sha256:{}", "0".repeat(64));
        assert_eq!(r.endpoints(&n(&format!("quay.io/a@{d}"))).unwrap().len(), 2);
    }

    #[test]
    fn short_names_aliases_and_search_order() {
        let r = conf(
            r#"
unqualified-search-registries = ["quay.io", "docker.io"]
[aliases]
"pause" = "registry.k8s.io/pause"
"#,
        );
        let c: Vec<String> = r
            .candidates("busybox:1")
            .unwrap()
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert_eq!(c, ["quay.io/busybox:1", "docker.io/library/busybox:1"]);
        let c = r.candidates("pause:3.10").unwrap();
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].to_string(), "registry.k8s.io/pause:3.10");
        let c = r.candidates("ghcr.io/x/y").unwrap();
        assert_eq!(c[0].to_string(), "ghcr.io/x/y:latest");
        // no config at all
        let none = Registries::default();
        assert_eq!(
            none.candidates("busybox").unwrap()[0].to_string(),
            "docker.io/library/busybox:latest"
        );
    }

    #[test]
    fn dropins_replace_same_prefix_and_search_list() {
        let mut r = conf(CRITEST);
        r.apply(
            Path::new("50-x.conf"),
            r#"
unqualified-search-registries = ["quay.io"]
[[registry]]
prefix = "registry.k8s.io"
location = "registry.k8s.io"
blocked = true
"#,
        )
        .unwrap();
        assert_eq!(r.search, ["quay.io"]);
        assert!(r
            .endpoints(&n("registry.k8s.io/pause:3.10"))
            .unwrap_err()
            .is_blocked());
        assert_eq!(
            r.registries
                .iter()
                .filter(|x| x.prefix == "registry.k8s.io")
                .count(),
            1
        );
    }

    #[test]
    fn load_reads_file_and_dropin_dir() {
        let dir = tempfile::tempdir().unwrap();
        let main = dir.path().join("registries.conf");
        std::fs::write(&main, CRITEST).unwrap();
        std::fs::create_dir(dir.path().join("registries.conf.d")).unwrap();
        std::fs::write(
            dir.path().join("registries.conf.d/10-a.conf"),
            "[aliases]\n\"bb\" = \"docker.io/library/busybox\"\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("registries.conf.d/ignored.txt"),
            "garbage [",
        )
        .unwrap();
        let r = Registries::load(Some(&main), &["10.0.0.1:80".to_string()]).unwrap();
        assert_eq!(r.sources.len(), 2);
        assert_eq!(
            r.candidates("bb").unwrap()[0].to_string(),
            "docker.io/library/busybox:latest"
        );
        assert!(r.is_insecure("10.0.0.1:80"));
        assert!(r.is_insecure("127.0.0.1:5000"));
        assert!(!r.is_insecure("docker.io"));
        // a named file that is missing is an error; the default missing is not
        assert!(Registries::load(Some(&dir.path().join("nope.conf")), &[]).is_err());
    }

    #[test]
    fn bad_files_are_rejected_with_the_path() {
        for text in [
            "[[registry]]\nprefix = \"x.io\"\n",
            "unqualified-search-registries = [\"a/b\"]",
            "[[registry]]\nlocation = \"bad host\"\n",
            "[[registry]]\nlocation = \"q.io\"\n[[registry.mirror]]\nlocation = \"m\"\npull-from-mirror = \"sometimes\"\n",
            "[aliases]\n\"x\" = \"x\"\n",
            "not toml [",
        ] {
            let mut r = Registries::default();
            let err = r.apply(Path::new("/etc/bad.conf"), text).unwrap_err();
            assert!(err.to_string().contains("/etc/bad.conf"), "{err}");
        }
    }
}
