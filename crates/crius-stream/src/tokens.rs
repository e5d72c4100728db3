//! One-time tokens for streaming URLs: random, used once, gone after a short time, as the
//! kubelet's streaming package does. The Exec/Attach/PortForward RPC stores the validated
//! request under a fresh token; the HTTP request that presents the token takes it out.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;

use crate::error::{Error, Result};

/// Random bytes per token (128 bits).
const TOKEN_BYTES: usize = 16;

/// Pending requests by token.
pub(crate) struct TokenStore<T> {
    entries: Mutex<HashMap<String, (Instant, T)>>,
    ttl: Duration,
    max: usize,
}

impl<T> TokenStore<T> {
    /// A store whose tokens live `ttl`, holding at most `max` at once.
    pub fn new(ttl: Duration, max: usize) -> Self {
        TokenStore {
            entries: Mutex::new(HashMap::new()),
            ttl,
            max,
        }
    }

    /// Stores `value` under a fresh token and returns the token.
    pub fn insert(&self, value: T) -> Result<String> {
        self.insert_at(value, Instant::now())
    }

    /// Takes the value of `token` out if it is there and not expired.
    pub fn take(&self, token: &str) -> Option<T> {
        self.take_at(token, Instant::now())
    }

    pub(crate) fn insert_at(&self, value: T, now: Instant) -> Result<String> {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.retain(|_, (at, _)| now.saturating_duration_since(*at) < self.ttl);
        if entries.len() >= self.max {
            return Err(Error::TooManyRequests { max: self.max });
        }
        loop {
            let bytes: [u8; TOKEN_BYTES] = rand::random();
            let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
            if let std::collections::hash_map::Entry::Vacant(v) = entries.entry(token.clone()) {
                v.insert((now, value));
                return Ok(token);
            }
        }
    }

    pub(crate) fn take_at(&self, token: &str, now: Instant) -> Option<T> {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let (at, value) = entries.remove(token)?;
        (now.saturating_duration_since(at) < self.ttl).then_some(value)
    }

    /// How many tokens are stored (expired ones included until the next insert).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_works_once() {
        let store = TokenStore::new(Duration::from_secs(60), 10);
        let t = store.insert("exec").unwrap();
        assert_eq!(store.take(&t), Some("exec"));
        assert_eq!(store.take(&t), None);
    }

    #[test]
    fn tokens_expire_after_the_ttl() {
        let store = TokenStore::new(Duration::from_secs(60), 10);
        let start = Instant::now();
        let fresh = store.insert_at(1, start).unwrap();
        let stale = store.insert_at(2, start).unwrap();
        assert_eq!(
            store.take_at(&fresh, start + Duration::from_secs(59)),
            Some(1)
        );
        assert_eq!(store.take_at(&stale, start + Duration::from_secs(60)), None);
    }

    #[test]
    fn expired_tokens_make_room_and_the_limit_holds() {
        let store = TokenStore::new(Duration::from_secs(60), 2);
        let start = Instant::now();
        store.insert_at(1, start).unwrap();
        store.insert_at(2, start).unwrap();
        assert!(matches!(
            store.insert_at(3, start + Duration::from_secs(1)),
            Err(Error::TooManyRequests { max: 2 })
        ));
        let later = start + Duration::from_secs(61);
        store.insert_at(4, later).unwrap();
        assert_eq!(store.len(), 1);
    }

    #[test]
    fn tokens_are_random_and_url_safe() {
        let store = TokenStore::new(Duration::from_secs(60), 100);
        let a = store.insert(()).unwrap();
        let b = store.insert(()).unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 22);
        assert!(a
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
        assert_eq!(store.take("not-a-token"), None);
    }
}
