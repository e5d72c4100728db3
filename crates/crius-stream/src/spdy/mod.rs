//! SPDY/3.1, as the Kubernetes clients speak it after an HTTP upgrade: frames with
//! zlib-compressed header blocks ([`frame`]) and a server-side session ([`session`]).

mod dictionary;
pub(crate) mod frame;
pub(crate) mod session;

/// The value of the `Upgrade` header that asks for SPDY.
pub(crate) const UPGRADE: &str = "SPDY/3.1";
