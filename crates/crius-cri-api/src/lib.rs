//! The Kubernetes Container Runtime Interface, v1, as crius serves it: the messages,
//! the `RuntimeService` and `ImageService` servers and clients, generated from
//! crius's own definition in `proto/cri/api.proto` (the CRI of Kubernetes 1.37,
//! k8s.io/cri-api v0.37.2).
//!
//! The daemon serves it; the e2e harness and the bench talk to the daemon with its
//! clients, so all three agree on one contract.

/// crius's pull progress side service (`crius.pull.v1`, `proto/crius/pull.proto`),
/// served on the CRI socket for `crius pull`.
#[allow(clippy::all, missing_docs)]
pub mod pull {
    tonic::include_proto!("crius.pull.v1");
}

/// CRI v1 (`runtime.v1`).
#[allow(clippy::all, missing_docs)]
pub mod v1 {
    tonic::include_proto!("runtime.v1");

    impl std::fmt::Debug for AuthConfig {
        /// Names which credentials are present, never their values.
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            let set = |s: &str| if s.is_empty() { "" } else { "<redacted>" };
            f.debug_struct("AuthConfig")
                .field("username", &self.username)
                .field("password", &set(&self.password))
                .field("auth", &set(&self.auth))
                .field("server_address", &self.server_address)
                .field("identity_token", &set(&self.identity_token))
                .field("registry_token", &set(&self.registry_token))
                .finish()
        }
    }

    impl Signal {
        /// The signal's name as the kernel and OCI images spell it ("SIGTERM"), or
        /// `None` for `SIGNAL_RUNTIME_DEFAULT`.
        pub fn signal_name(self) -> Option<&'static str> {
            match self {
                Signal::RuntimeDefault => None,
                other => other.as_str_name().strip_prefix("SIGNAL_"),
            }
        }
    }
}

/// Serde for `KeyValue.value`: bytes on the wire since CRI 1.37, kept as a JSON string
/// in records (as every record before then has it) when it is UTF-8, else as a list of
/// bytes. Both forms load.
mod env_value {
    use serde::de::{Deserializer, Error, SeqAccess, Visitor};
    use serde::Serializer;

    pub fn serialize<S: Serializer>(value: &[u8], s: S) -> Result<S::Ok, S::Error> {
        match std::str::from_utf8(value) {
            Ok(text) => s.serialize_str(text),
            Err(_) => s.collect_seq(value),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        struct Value;
        impl<'de> Visitor<'de> for Value {
            type Value = Vec<u8>;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string or a list of bytes")
            }

            fn visit_str<E: Error>(self, v: &str) -> Result<Vec<u8>, E> {
                Ok(v.as_bytes().to_vec())
            }

            fn visit_bytes<E: Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0));
                while let Some(b) = seq.next_element::<u8>()? {
                    out.push(b);
                }
                Ok(out)
            }
        }
        d.deserialize_any(Value)
    }
}

#[cfg(test)]
mod tests;
