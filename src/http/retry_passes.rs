//! Lets a provider's retry through the replay check, or answers it.
//!
//! Providers that sign a nonce (Vonage, Plivo, Sinch, MessageBird) may retry a delivery
//! byte for byte, nonce included. The adapters remember a nonce as soon as its signature
//! checks out, so such a retry meets a spent nonce. Two cases:
//! - storing failed (a 503 from a busy store, a request cut off by the timeout): the
//!   retry must be stored, or the message is lost. Before storing, the handler opens a
//!   pass for the request's fingerprint; an identical request that meets a remembered
//!   nonce is let through while its pass is open;
//! - it was stored, but the provider never heard the answer: the retry is a duplicate,
//!   answered 2xx and changing nothing. Once stored, the pass becomes a note that it was.
//!
//! A request with a spent nonce that is neither (anything not byte for byte the same) is
//! still refused as a replay. Open passes and stored notes are kept apart, each with its
//! own capacity, so a flood of stored requests never pushes out a pass a lost message
//! still needs; losing a stored note only means its retry is refused, as a replay.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};

use axum::http::HeaderMap;
use sha2::{Digest, Sha256};

/// Fingerprints kept at most in each set (a pass is only created for requests with a
/// valid signature, so only providers can fill them). As many as an adapter remembers
/// nonces.
const CAPACITY: usize = 100_000;

/// How long a request's retries are recognised: Plivo retries for a day, the others less.
pub const PASS_SECS: i64 = 24 * 3600;

#[derive(Debug)]
pub struct RetryPasses {
    /// Verified requests not stored (yet): their retries pass the replay check.
    open: Mutex<Fingerprints>,
    /// Requests stored: their retries are answered without storing anything.
    stored: Mutex<Fingerprints>,
    capacity: usize,
}

/// What a retry meeting a spent nonce is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Of a request never stored: let it through.
    Unstored,
    /// Of a request stored already: answer it as the first time, store nothing.
    Stored,
    /// Not a retry we know: a replay.
    Unknown,
}

/// A set of fingerprints, each good until a time, forgotten oldest first when full.
#[derive(Debug, Default)]
struct Fingerprints {
    /// Fingerprint → until when it counts (unix seconds).
    due: HashMap<[u8; 32], i64>,
    /// Insertion order, oldest first: the order entries fall due, as every entry lasts as
    /// long. Entries removed early stay until their turn and are skipped then.
    order: VecDeque<(i64, [u8; 32])>,
}

impl Fingerprints {
    fn insert(&mut self, fingerprint: [u8; 32], until: i64, now: i64, capacity: usize) {
        while let Some(&(due, oldest)) = self.order.front() {
            let expired = due <= now;
            let full = self.due.len() >= capacity;
            let stale = self.due.get(&oldest) != Some(&due);
            if !(expired || full || stale) {
                break;
            }
            self.order.pop_front();
            if !stale {
                self.due.remove(&oldest);
            }
        }
        self.due.insert(fingerprint, until);
        self.order.push_back((until, fingerprint));
        // Most open passes are closed within moments; drop their entries in one go
        // before they pile up behind an older one still there.
        if self.order.len() > 2 * capacity {
            let Self { due, order } = self;
            order.retain(|(until, fingerprint)| due.get(fingerprint) == Some(until));
        }
    }

    fn remove(&mut self, fingerprint: &[u8; 32]) {
        self.due.remove(fingerprint);
    }

    fn contains(&self, fingerprint: &[u8; 32], now: i64) -> bool {
        self.due.get(fingerprint).is_some_and(|due| *due > now)
    }
}

impl Default for RetryPasses {
    fn default() -> Self {
        Self::with_capacity(CAPACITY)
    }
}

impl RetryPasses {
    fn with_capacity(capacity: usize) -> Self {
        Self {
            open: Mutex::default(),
            stored: Mutex::default(),
            capacity: capacity.max(1),
        }
    }

    fn lock(set: &Mutex<Fingerprints>) -> std::sync::MutexGuard<'_, Fingerprints> {
        set.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Notes a verified request about to be stored; valid until `until` (unix seconds).
    /// When full, the oldest pass goes: the others stay good.
    pub fn open(&self, fingerprint: [u8; 32], until: i64, now: i64) {
        Self::lock(&self.open).insert(fingerprint, until, now, self.capacity);
    }

    /// The request got stored: its retries, until `until`, are duplicates.
    pub fn close(&self, fingerprint: &[u8; 32], until: i64, now: i64) {
        Self::lock(&self.open).remove(fingerprint);
        Self::lock(&self.stored).insert(*fingerprint, until, now, self.capacity);
    }

    /// What a request with this fingerprint that met a spent nonce is.
    pub fn retry(&self, fingerprint: &[u8; 32], now: i64) -> Retry {
        if Self::lock(&self.open).contains(fingerprint, now) {
            Retry::Unstored
        } else if Self::lock(&self.stored).contains(fingerprint, now) {
            Retry::Stored
        } else {
            Retry::Unknown
        }
    }
}

/// What makes two deliveries the same request: provider, URL, body, and every header
/// that can carry a signature, nonce or timestamp (other headers, like a retry counter,
/// may change between attempts).
pub fn fingerprint(provider: &str, url: &str, headers: &HeaderMap, body: &[u8]) -> [u8; 32] {
    let mut signed: Vec<(String, &[u8])> = headers
        .iter()
        .filter(|(name, _)| {
            let name = name.as_str();
            name == "authorization"
                || ["signature", "nonce", "timestamp", "jwt"]
                    .iter()
                    .any(|part| name.contains(part))
        })
        .map(|(name, value)| (name.as_str().to_owned(), value.as_bytes()))
        .collect();
    signed.sort();
    let mut hash = Sha256::new();
    for part in [provider.as_bytes(), url.as_bytes(), body] {
        hash.update((part.len() as u64).to_le_bytes());
        hash.update(part);
    }
    for (name, value) in signed {
        hash.update(name.as_bytes());
        hash.update([0]);
        hash.update(value);
        hash.update([0]);
    }
    hash.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_retry_passes_until_stored_and_is_a_duplicate_after() {
        let passes = RetryPasses::default();
        let headers = HeaderMap::new();
        let a = fingerprint("p", "https://x/webhooks/p", &headers, b"body");
        assert_ne!(
            a,
            fingerprint("p", "https://x/webhooks/p", &headers, b"other")
        );
        assert_eq!(passes.retry(&a, 0), Retry::Unknown);
        passes.open(a, 100, 0);
        assert_eq!(passes.retry(&a, 99), Retry::Unstored);
        assert_eq!(passes.retry(&a, 100), Retry::Unknown, "due");
        passes.close(&a, 200, 50);
        assert_eq!(passes.retry(&a, 150), Retry::Stored);
        assert_eq!(passes.retry(&a, 200), Retry::Unknown, "forgotten in time");
    }

    #[test]
    fn a_full_memory_lets_go_of_the_oldest_pass_only() {
        let passes = RetryPasses::with_capacity(3);
        for n in 1..=3u8 {
            passes.open([n; 32], 100 + i64::from(n), 0);
        }
        passes.open([4; 32], 104, 1);
        assert_eq!(passes.retry(&[1; 32], 2), Retry::Unknown, "the oldest went");
        for n in 2..=4u8 {
            assert_eq!(passes.retry(&[n; 32], 2), Retry::Unstored, "pass {n} stays");
        }
        // A closed pass frees its place: nothing else has to go.
        passes.close(&[2; 32], 200, 3);
        passes.open([5; 32], 105, 3);
        for n in 3..=5u8 {
            assert_eq!(passes.retry(&[n; 32], 4), Retry::Unstored, "pass {n} stays");
        }
    }

    #[test]
    fn stored_notes_never_push_out_an_open_pass() {
        let passes = RetryPasses::with_capacity(3);
        passes.open([1; 32], 1_000, 0);
        for n in 0..100u8 {
            let stored = [n.wrapping_add(10); 32];
            passes.open(stored, 1_000, 1);
            passes.close(&stored, 1_000, 1);
        }
        assert_eq!(passes.retry(&[1; 32], 2), Retry::Unstored);
        assert_eq!(
            passes.retry(&[109; 32], 2),
            Retry::Stored,
            "the newest note"
        );
        assert_eq!(
            passes.retry(&[10; 32], 2),
            Retry::Unknown,
            "the oldest went"
        );
        let open = RetryPasses::lock(&passes.open);
        assert!(open.order.len() <= 6, "closed passes are compacted away");
    }

    #[test]
    fn only_signature_headers_count() {
        let mut first = HeaderMap::new();
        first.insert("x-plivo-signature-v3-nonce", "n1".parse().unwrap());
        first.insert("x-retry-count", "1".parse().unwrap());
        let mut retry = first.clone();
        retry.insert("x-retry-count", "2".parse().unwrap());
        let mut other = first.clone();
        other.insert("x-plivo-signature-v3-nonce", "n2".parse().unwrap());
        let print = |h: &HeaderMap| fingerprint("p", "u", h, b"b");
        assert_eq!(print(&first), print(&retry));
        assert_ne!(print(&first), print(&other));
    }
}
