//! The one error type of the streaming server.

/// What went wrong serving a stream.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configured address does not parse.
    #[error("bad streaming server address {addr:?}: {reason}")]
    BadAddress {
        /// The address as configured.
        addr: String,
        /// Why it does not parse.
        reason: String,
    },
    /// The listening socket could not be made.
    #[error("listen for streaming on {addr}: {source}")]
    Listen {
        /// The address asked for.
        addr: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// Too many one-time URLs are waiting to be used.
    #[error("too many pending streaming requests ({max}); try again later")]
    TooManyRequests {
        /// The limit.
        max: usize,
    },
    /// A SPDY frame broke the protocol.
    #[error("spdy {what}: {reason}")]
    Spdy {
        /// The frame or part of it.
        what: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A WebSocket frame broke the protocol.
    #[error("websocket {what}: {reason}")]
    WebSocket {
        /// The frame or part of it.
        what: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

impl Error {
    pub(crate) fn spdy(what: &'static str, reason: impl Into<String>) -> Self {
        Error::Spdy {
            what,
            reason: reason.into(),
        }
    }

    pub(crate) fn ws(what: &'static str, reason: impl Into<String>) -> Self {
        Error::WebSocket {
            what,
            reason: reason.into(),
        }
    }
}

/// Results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
