//! Lets a provider's retry through the replay check.
//!
//! Providers that sign a nonce (Vonage, Plivo, Sinch, MessageBird) may retry a failed
//! delivery byte for byte, nonce included. The adapters remember a nonce as soon as its
//! signature checks out, so if storing then failed (a 503 from a busy store, a request
//! cut off by the timeout), the retry would be refused as a replay and the message lost.
//! Before storing, the handler notes the request's fingerprint here; once stored, it
//! forgets it. An identical request that meets a remembered nonce is let through only
//! while its fingerprint is noted, that is only if it never got stored. A replay of a
//! request that *was* stored is still refused.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};

use axum::http::HeaderMap;
use sha2::{Digest, Sha256};

/// Fingerprints kept at most (a pass is only created for requests with a valid
/// signature, so only providers can fill this). As many as an adapter remembers nonces:
/// passes are left open only by requests that failed to be stored, and a store that
/// fails for a while under load leaves one per request.
const CAPACITY: usize = 100_000;

/// How long a failed request may be retried: Plivo retries for a day, the others less.
pub const PASS_SECS: i64 = 24 * 3600;

#[derive(Debug)]
pub struct RetryPasses {
    passes: Mutex<Passes>,
    capacity: usize,
}

#[derive(Debug, Default)]
struct Passes {
    /// Fingerprint → until when its retries pass (unix seconds).
    due: HashMap<[u8; 32], i64>,
    /// Opening order, oldest first: the order passes fall due, as every pass lasts as
    /// long. Entries of closed passes stay until their turn and are skipped then.
    order: VecDeque<(i64, [u8; 32])>,
}

impl Default for RetryPasses {
    fn default() -> Self {
        Self::with_capacity(CAPACITY)
    }
}

impl RetryPasses {
    fn with_capacity(capacity: usize) -> Self {
        Self {
            passes: Mutex::default(),
            capacity: capacity.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Passes> {
        self.passes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Notes a verified request about to be stored; valid until `until` (unix seconds).
    /// When full, the oldest pass goes: the others stay good.
    pub fn open(&self, fingerprint: [u8; 32], until: i64, now: i64) {
        let mut passes = self.lock();
        while let Some(&(due, oldest)) = passes.order.front() {
            let expired = due <= now;
            let full = passes.due.len() >= self.capacity;
            let stale = passes.due.get(&oldest) != Some(&due);
            if !(expired || full || stale) {
                break;
            }
            passes.order.pop_front();
            if !stale {
                passes.due.remove(&oldest);
            }
        }
        passes.due.insert(fingerprint, until);
        passes.order.push_back((until, fingerprint));
        // Most passes are closed within moments; drop their entries in one go before
        // they pile up behind an older pass still open.
        if passes.order.len() > 2 * self.capacity {
            let Passes { due, order } = &mut *passes;
            order.retain(|(until, fingerprint)| due.get(fingerprint) == Some(until));
        }
    }

    /// The request got stored: its retries are replays again.
    pub fn close(&self, fingerprint: &[u8; 32]) {
        self.lock().due.remove(fingerprint);
    }

    pub fn is_open(&self, fingerprint: &[u8; 32], now: i64) -> bool {
        self.lock()
            .due
            .get(fingerprint)
            .is_some_and(|due| *due > now)
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
    fn passes_open_until_closed_or_due() {
        let passes = RetryPasses::default();
        let headers = HeaderMap::new();
        let a = fingerprint("p", "https://x/webhooks/p", &headers, b"body");
        assert_ne!(
            a,
            fingerprint("p", "https://x/webhooks/p", &headers, b"other")
        );
        assert!(!passes.is_open(&a, 0));
        passes.open(a, 100, 0);
        assert!(passes.is_open(&a, 99));
        assert!(!passes.is_open(&a, 100));
        passes.close(&a);
        assert!(!passes.is_open(&a, 50));
    }

    #[test]
    fn a_full_memory_lets_go_of_the_oldest_pass_only() {
        let passes = RetryPasses::with_capacity(3);
        for n in 1..=3u8 {
            passes.open([n; 32], 100 + i64::from(n), 0);
        }
        passes.open([4; 32], 104, 1);
        assert!(!passes.is_open(&[1; 32], 2), "the oldest went");
        for n in 2..=4u8 {
            assert!(passes.is_open(&[n; 32], 2), "pass {n} stays");
        }
        // A closed pass frees its place: nothing else has to go.
        passes.close(&[2; 32]);
        passes.open([5; 32], 105, 3);
        for n in 3..=5u8 {
            assert!(passes.is_open(&[n; 32], 4), "pass {n} stays");
        }
    }

    #[test]
    fn passes_opened_and_closed_leave_no_trace() {
        let passes = RetryPasses::with_capacity(3);
        passes.open([1; 32], 1_000, 0);
        for n in 0..100u8 {
            passes.open([n.wrapping_add(10); 32], 1_000, 1);
            passes.close(&[n.wrapping_add(10); 32]);
        }
        assert!(passes.is_open(&[1; 32], 2));
        assert!(
            passes.lock().order.len() <= 6,
            "closed passes are compacted away"
        );
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
