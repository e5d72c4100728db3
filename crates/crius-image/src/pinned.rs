//! `pinned_images`: the names the kubelet must never garbage-collect, in CRI-O's forms.
//!
//! A pattern is an exact name (`registry.k8s.io/pause:3.10`), a glob with one `*` at the
//! end (`registry.k8s.io/*`: every name that starts so), or a keyword between two `*`
//! (`*pause*`: every name that holds it). Names are compared case-insensitively, as CRI-O
//! does, with the image's repo tags and repo digests as the store keeps them (fully
//! qualified: `docker.io/library/busybox:latest`, never the short name pulled). A
//! pattern is checked when the config is loaded: a `*` anywhere else, an empty pattern
//! or one with white space is refused there, instead of silently matching nothing.

use serde::{Deserialize, Serialize};

use crate::Image;

/// One `pinned_images` entry, lower-cased.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Pattern {
    /// The whole name.
    Exact(String),
    /// Names starting with this.
    Prefix(String),
    /// Names holding this.
    Keyword(String),
}

impl Pattern {
    fn parse(text: &str) -> Result<Pattern, String> {
        if text.is_empty() {
            return Err("a pattern is empty".to_string());
        }
        if text.chars().any(char::is_whitespace) {
            return Err(format!("pattern {text:?} holds white space"));
        }
        let lower = text.to_ascii_lowercase();
        let pattern = match (lower.strip_prefix('*'), lower.strip_suffix('*')) {
            (Some(_), Some(_)) if lower.len() == 1 => Pattern::Prefix(String::new()),
            (Some(_), Some(_)) => Pattern::Keyword(lower[1..lower.len() - 1].to_string()),
            (None, Some(prefix)) => Pattern::Prefix(prefix.to_string()),
            (Some(_), None) => {
                return Err(format!(
                    "pattern {text:?} starts with * but does not end with one: a * may only \
                     end a name (a glob) or open and close a keyword"
                ))
            }
            (None, None) => Pattern::Exact(lower),
        };
        let inner = match &pattern {
            Pattern::Exact(s) | Pattern::Prefix(s) | Pattern::Keyword(s) => s,
        };
        if inner.contains('*') {
            return Err(format!(
                "pattern {text:?} has a * inside: a * may only end a name (a glob) or open \
                 and close a keyword"
            ));
        }
        if matches!(&pattern, Pattern::Keyword(k) if k.is_empty()) {
            return Err(format!("pattern {text:?} has an empty keyword"));
        }
        Ok(pattern)
    }

    fn matches(&self, name: &str) -> bool {
        let name = name.to_ascii_lowercase();
        match self {
            Pattern::Exact(s) => name == *s,
            Pattern::Prefix(s) => name.starts_with(s.as_str()),
            Pattern::Keyword(s) => name.contains(s.as_str()),
        }
    }
}

/// The checked `pinned_images` list. It (de)serializes as the list of strings it was
/// made from, so a config holding one is valid by construction.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Vec<String>", into = "Vec<String>")]
pub struct PinnedImages {
    texts: Vec<String>,
    patterns: Vec<Pattern>,
}

impl PinnedImages {
    /// Checks every pattern; the error names the first bad one.
    pub fn new(texts: Vec<String>) -> Result<PinnedImages, String> {
        let patterns = texts
            .iter()
            .map(|t| Pattern::parse(t))
            .collect::<Result<_, _>>()?;
        Ok(PinnedImages { texts, patterns })
    }

    /// The patterns as configured.
    pub fn texts(&self) -> &[String] {
        &self.texts
    }

    /// Whether any name of `image` matches a pattern.
    pub fn matches(&self, image: &Image) -> bool {
        image
            .repo_tags
            .iter()
            .chain(&image.repo_digests)
            .any(|name| self.patterns.iter().any(|p| p.matches(name)))
    }
}

impl TryFrom<Vec<String>> for PinnedImages {
    type Error = String;

    fn try_from(texts: Vec<String>) -> Result<Self, String> {
        PinnedImages::new(texts)
    }
}

impl From<PinnedImages> for Vec<String> {
    fn from(p: PinnedImages) -> Vec<String> {
        p.texts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(tags: &[&str], digests: &[&str]) -> Image {
        Image {
            id: "sha256:1".into(),
            repo_tags: tags.iter().map(|s| s.to_string()).collect(),
            repo_digests: digests.iter().map(|s| s.to_string()).collect(),
            size: 1,
            pinned: false,
        }
    }

    fn pins(texts: &[&str]) -> PinnedImages {
        PinnedImages::new(texts.iter().map(|s| s.to_string()).collect()).unwrap()
    }

    #[test]
    fn exact_names_match_a_whole_tag_or_digest_in_any_case() {
        let p = pins(&["docker.io/library/busybox:1.36"]);
        assert!(p.matches(&image(&["docker.io/library/busybox:1.36"], &[])));
        assert!(p.matches(&image(&["Docker.io/library/BusyBox:1.36"], &[])));
        assert!(!p.matches(&image(&["docker.io/library/busybox:1.3"], &[])));
        assert!(!p.matches(&image(&["docker.io/library/busybox:1.36-x"], &[])));
        // The short name is not what the store keeps.
        assert!(!pins(&["busybox:1.36"]).matches(&image(&["docker.io/library/busybox:1.36"], &[])));
        let digest = "quay.io/a/b@sha256:abcd";
        assert!(pins(&[digest]).matches(&image(&[], &[digest])));
    }

    #[test]
    fn a_trailing_star_matches_names_that_start_so() {
        let p = pins(&["registry.k8s.io/*"]);
        assert!(p.matches(&image(&["registry.k8s.io/pause:3.10"], &[])));
        assert!(!p.matches(&image(&["mirror.io/registry.k8s.io/pause:3.10"], &[])));
        assert!(!p.matches(&image(&["docker.io/library/busybox:latest"], &[])));
        let every = pins(&["*"]);
        assert!(every.matches(&image(&["docker.io/library/busybox:latest"], &[])));
        // An image with no name at all (every tag removed) matches nothing.
        assert!(!every.matches(&image(&[], &[])));
    }

    #[test]
    fn a_keyword_between_stars_matches_names_that_hold_it() {
        let p = pins(&["*/pause:*"]);
        assert!(p.matches(&image(&["registry.k8s.io/pause:3.10"], &[])));
        assert!(p.matches(&image(&["127.0.0.1:5000/x/pause:latest"], &[])));
        assert!(!p.matches(&image(&["registry.k8s.io/pause-x:3.10"], &[])));
    }

    #[test]
    fn no_patterns_pin_nothing() {
        assert!(!PinnedImages::default().matches(&image(&["a/b:c"], &[])));
    }

    #[test]
    fn malformed_patterns_are_refused_with_the_pattern() {
        for (bad, why) in [
            ("", "empty"),
            ("docker.io/library/busybox :1", "white space"),
            ("registry.k8s.io/*/pause", "a * inside"),
            ("*:latest", "starts with *"),
            ("**", "empty keyword"),
            ("a**", "a * inside"),
        ] {
            let err = PinnedImages::new(vec!["ok/x:1".into(), bad.into()]).unwrap_err();
            assert!(err.contains(why), "{bad:?}: {err}");
            if !bad.is_empty() {
                assert!(err.contains(&format!("{bad:?}")), "{bad:?}: {err}");
            }
        }
    }

    #[test]
    fn it_serializes_as_the_configured_strings() {
        let p = pins(&["A/b:*", "*x*"]);
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(json, r#"["A/b:*","*x*"]"#);
        let back: PinnedImages = serde_json::from_str(&json).unwrap();
        assert_eq!(back, p);
        assert!(serde_json::from_str::<PinnedImages>(r#"["a*b"]"#).is_err());
    }
}
