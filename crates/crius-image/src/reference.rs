//! Image references: parsing, validation and docker-style normalization.
//!
//! Grammar (the distribution reference grammar):
//! `[domain[:port]/]path[:tag][@algorithm:hex]`, path components
//! `[a-z0-9]+(([._]|__|-+)[a-z0-9]+)*`, tags `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.

use std::fmt;

use crate::Error;

/// The registry short names resolve to when nothing else says otherwise.
pub const DOCKER_HUB: &str = "docker.io";

const MAX_NAME_LEN: usize = 255;

/// A parsed reference as written, before any registry is chosen for a short name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsedReference {
    /// `host[:port]` when the reference names one explicitly.
    pub domain: Option<String>,
    /// Repository path inside the registry, as written (`busybox`, `library/busybox`).
    pub path: String,
    /// The tag as written.
    pub tag: Option<String>,
    /// The digest as written.
    pub digest: Option<String>,
}

/// A fully qualified image name: registry, repository and tag and/or digest.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ImageName {
    /// `host[:port]`, `docker.io` for Docker Hub.
    pub registry: String,
    /// Path inside the registry (`library/busybox`).
    pub repository: String,
    /// The tag, if any (`latest` when neither tag nor digest was given).
    pub tag: Option<String>,
    /// `sha256:...` when pulled by digest.
    pub digest: Option<String>,
}

fn invalid(reference: &str, reason: impl Into<String>) -> Error {
    Error::InvalidReference {
        reference: reference.to_string(),
        reason: reason.into(),
    }
}

/// `[a-z0-9]+(([._]|__|-+)[a-z0-9]+)*`
fn valid_path_component(c: &str) -> bool {
    let b = c.as_bytes();
    if b.is_empty() {
        return false;
    }
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        // a separator run: ".", "_", "__", or one or more "-"
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

/// `host[:port]` or `[ipv6][:port]`.
fn valid_domain(d: &str) -> bool {
    let (host, port) = if let Some(rest) = d.strip_prefix('[') {
        let Some(end) = rest.find(']') else {
            return false;
        };
        let ip = &rest[..end];
        if ip.parse::<std::net::Ipv6Addr>().is_err() {
            return false;
        }
        let after = &rest[end + 1..];
        match after.strip_prefix(':') {
            Some(p) => ("", Some(p)),
            None if after.is_empty() => ("", None),
            None => return false,
        }
    } else {
        match d.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (d, None),
        }
    };
    if let Some(p) = port {
        if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
    }
    if d.starts_with('[') {
        return true;
    }
    !host.is_empty()
        && host.split('.').all(|label| {
            let b = label.as_bytes();
            !b.is_empty()
                && b.iter().all(|x| x.is_ascii_alphanumeric() || *x == b'-')
                && b[0] != b'-'
                && b[b.len() - 1] != b'-'
        })
}

/// `[\w][\w.-]{0,127}`
fn valid_tag(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|x| x.is_ascii_alphanumeric() || matches!(x, b'_' | b'.' | b'-'))
}

/// `sha256:<64 lowercase hex>` or `sha512:<128 lowercase hex>`.
pub fn valid_digest(d: &str) -> bool {
    let Some((alg, hex)) = d.split_once(':') else {
        return false;
    };
    let len = match alg {
        "sha256" => 64,
        "sha512" => 128,
        _ => return false,
    };
    hex.len() == len && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Parses a reference without deciding the registry of a short name.
pub fn parse(input: &str) -> Result<ParsedReference, Error> {
    if input.is_empty() {
        return Err(invalid(input, "empty reference"));
    }
    if input.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid(input, "contains whitespace"));
    }
    let (rest, digest) = match input.split_once('@') {
        Some((r, d)) => {
            if !valid_digest(d) {
                return Err(invalid(input, format!("invalid digest {d:?}")));
            }
            (r, Some(d.to_string()))
        }
        None => (input, None),
    };
    // The tag is after the last ':' that follows the last '/'.
    let last_slash = rest.rfind('/');
    let (name, tag) = match rest.rfind(':') {
        Some(colon) if last_slash.is_none_or(|s| colon > s) => {
            let t = &rest[colon + 1..];
            if !valid_tag(t) {
                return Err(invalid(input, format!("invalid tag {t:?}")));
            }
            (&rest[..colon], Some(t.to_string()))
        }
        _ => (rest, None),
    };
    if name.is_empty() {
        return Err(invalid(input, "empty repository name"));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(invalid(input, "repository name longer than 255 characters"));
    }
    let (domain, path) = match name.split_once('/') {
        Some((first, remainder))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            (Some(first.to_string()), remainder)
        }
        Some((first, _)) if first.bytes().any(|b| b.is_ascii_uppercase()) => {
            // docker treats an uppercase first component as a registry host
            (Some(first.to_string()), &name[first.len() + 1..])
        }
        _ => (None, name),
    };
    if let Some(d) = &domain {
        if !valid_domain(d) {
            return Err(invalid(input, format!("invalid registry host {d:?}")));
        }
    }
    for component in path.split('/') {
        if !valid_path_component(component) {
            return Err(invalid(
                input,
                format!("invalid repository path component {component:?} (lowercase letters, digits and separators only)"),
            ));
        }
    }
    Ok(ParsedReference {
        domain,
        path: path.to_string(),
        tag,
        digest,
    })
}

impl ParsedReference {
    /// True when the reference names no registry (`busybox`, `library/busybox:1`).
    pub fn is_short(&self) -> bool {
        self.domain.is_none()
    }

    /// Qualifies the reference with `registry` (its own domain wins when it has one).
    /// Docker Hub single-component names get the `library/` namespace; a reference
    /// with neither tag nor digest gets `latest`.
    pub fn qualify(&self, registry: &str) -> ImageName {
        let registry = self.domain.as_deref().unwrap_or(registry);
        let registry = canonical_registry(registry);
        let repository = if registry == DOCKER_HUB && !self.path.contains('/') {
            format!("library/{}", self.path)
        } else {
            self.path.clone()
        };
        let tag = match (&self.tag, &self.digest) {
            (None, None) => Some("latest".to_string()),
            (t, _) => t.clone(),
        };
        ImageName {
            registry,
            repository,
            tag,
            digest: self.digest.clone(),
        }
    }
}

/// Docker Hub has several host names; records and config lookups use `docker.io`.
pub fn canonical_registry(registry: &str) -> String {
    match registry {
        "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB.to_string(),
        other => other.to_string(),
    }
}

impl ImageName {
    /// Parses `host[/path...]` text whose first component is always the registry
    /// (a `location` from registries.conf, which may be `localhost` or a bare host).
    pub fn with_explicit_registry(text: &str) -> Result<ImageName, Error> {
        let (registry, rest) = text.split_once('/').unwrap_or((text, ""));
        if !valid_domain(registry) {
            return Err(invalid(text, format!("invalid registry host {registry:?}")));
        }
        if rest.is_empty() {
            return Ok(ImageName {
                registry: registry.to_string(),
                repository: String::new(),
                tag: None,
                digest: None,
            });
        }
        // the registry is already known: parse the rest under a neutral host
        let parsed = parse(&format!("placeholder.invalid/{rest}")).map_err(|e| match e {
            Error::InvalidReference { reason, .. } => invalid(text, reason),
            other => other,
        })?;
        Ok(ImageName {
            registry: registry.to_string(),
            repository: parsed.path,
            tag: parsed.tag,
            digest: parsed.digest,
        })
    }

    /// `registry/repository`.
    pub fn name(&self) -> String {
        if self.repository.is_empty() {
            self.registry.clone()
        } else {
            format!("{}/{}", self.registry, self.repository)
        }
    }

    /// `registry/repository:tag`, when there is a tag.
    pub fn tagged(&self) -> Option<String> {
        self.tag.as_ref().map(|t| format!("{}:{t}", self.name()))
    }

    /// `registry/repository@digest` for the given digest.
    pub fn with_digest(&self, digest: &str) -> String {
        format!("{}@{digest}", self.name())
    }
}

impl fmt::Display for ImageName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// Normalizes a name the way docker does without any registries.conf:
/// "busybox" -> "docker.io/library/busybox:latest". Rejects names that do not parse.
pub fn normalize_reference(name: &str) -> Result<String, Error> {
    let qualified = parse(name)?.qualify(DOCKER_HUB);
    // The bound holds for the qualified name too, or the normal form would not parse.
    if qualified.registry.len() + 1 + qualified.repository.len() > MAX_NAME_LEN {
        return Err(invalid(
            name,
            "repository name longer than 255 characters once qualified",
        ));
    }
    Ok(qualified.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_go_to_docker_hub_library() {
        let cases = [
            ("busybox", "docker.io/library/busybox:latest"),
            ("busybox:1.36", "docker.io/library/busybox:1.36"),
            ("library/busybox", "docker.io/library/busybox:latest"),
            ("someuser/app:v1", "docker.io/someuser/app:v1"),
            ("docker.io/busybox", "docker.io/library/busybox:latest"),
            (
                "index.docker.io/library/busybox:1",
                "docker.io/library/busybox:1",
            ),
            ("registry.k8s.io/pause:3.10", "registry.k8s.io/pause:3.10"),
            ("localhost/foo", "localhost/foo:latest"),
            ("localhost:5000/foo/bar:t", "localhost:5000/foo/bar:t"),
            (
                "127.0.0.1:5000/crius-test/busybox",
                "127.0.0.1:5000/crius-test/busybox:latest",
            ),
            ("[::1]:5000/a/b:c", "[::1]:5000/a/b:c"),
            ("a__b/c.d-e---f:_x.Y-z", "docker.io/a__b/c.d-e---f:_x.Y-z"),
        ];
        for (input, want) in cases {
            assert_eq!(normalize_reference(input).unwrap(), want, "{input}");
        }
    }

    #[test]
    fn digests_are_kept_and_imply_no_latest() {
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            normalize_reference(&format!("busybox@{d}")).unwrap(),
            format!("docker.io/library/busybox@{d}")
        );
        assert_eq!(
            normalize_reference(&format!("quay.io/x/y:1@{d}")).unwrap(),
            format!("quay.io/x/y:1@{d}")
        );
    }

    #[test]
    fn bad_names_are_rejected() {
        for bad in [
            "",
            "Busybox",
            "busybox:",
            "busybox:-x",
            "busy box",
            "a//b",
            "a/",
            "/a",
            "a..b",
            "a-",
            "-a",
            "a:b:c",
            "busybox@sha256:abc",
            "busybox@md5:0123456789abcdef0123456789abcdef",
            "example.com:port/x",
            "ex_ample.com/x",
            &format!("x:{}", "t".repeat(129)),
            &"a".repeat(256),
        ] {
            let err = normalize_reference(bad).unwrap_err();
            assert!(err.is_invalid_argument(), "{bad:?} gave {err}");
        }
    }

    #[test]
    fn short_detection() {
        assert!(parse("busybox").unwrap().is_short());
        assert!(parse("user/busybox").unwrap().is_short());
        assert!(!parse("localhost/busybox").unwrap().is_short());
        assert!(!parse("quay.io/busybox").unwrap().is_short());
        assert!(!parse("host:1/busybox").unwrap().is_short());
    }

    #[test]
    fn qualify_with_other_registry_has_no_library() {
        let p = parse("busybox:1").unwrap();
        assert_eq!(p.qualify("quay.io").to_string(), "quay.io/busybox:1");
        assert_eq!(
            p.qualify("docker.io").to_string(),
            "docker.io/library/busybox:1"
        );
    }

    #[test]
    fn explicit_registry_locations() {
        let n = ImageName::with_explicit_registry("mirror/some/path").unwrap();
        assert_eq!(n.registry, "mirror");
        assert_eq!(n.repository, "some/path");
        let n = ImageName::with_explicit_registry("127.0.0.1:5000").unwrap();
        assert_eq!(n.name(), "127.0.0.1:5000");
        assert!(ImageName::with_explicit_registry("bad host/x").is_err());
    }
}
