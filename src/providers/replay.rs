//! Replay protection shared by the adapters: the timestamp window, and a bounded memory of
//! the nonces (or JWT ids) seen inside it.
//!
//! A signature proves who sent a request, not when; without these a request captured once
//! (from a log, a proxy, a misconfigured endpoint) could be posted again for ever.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};

use super::{WebhookError, WebhookRequest};

/// How far a signed timestamp may be from our clock, in either direction: the 5 minutes
/// Telnyx and the Standard Webhooks spec name, and that the others' docs recommend. It
/// bounds both how long a captured request stays usable and how much clock skew a sender
/// (an Android phone, say) may have.
pub const TOLERANCE_SECS: i64 = 300;

/// Nonces remembered per adapter at most. Only requests whose signature checked out are
/// remembered, so only the provider itself can fill this; the bound keeps a provider's
/// burst (or a leaked key) from growing memory without limit.
pub const NONCE_CAPACITY: usize = 100_000;

/// Refuses `timestamp` (unix seconds) unless it is within `tolerance` of `now`.
pub fn check_window(now: i64, timestamp: i64, tolerance: i64) -> Result<(), WebhookError> {
    if now.abs_diff(timestamp) > tolerance.unsigned_abs() {
        return Err(WebhookError::Stale);
    }
    Ok(())
}

/// Parses a unix-seconds timestamp header or parameter.
pub fn parse_unix(name: &str, value: &str) -> Result<i64, WebhookError> {
    value
        .trim()
        .parse()
        .map_err(|_| WebhookError::Malformed(format!("{name} is not a unix timestamp")))
}

/// Nonces seen recently, each forgotten once the request that carried it would be refused
/// anyway (its timestamp left the window, or its token expired).
pub struct NonceCache {
    inner: Mutex<Inner>,
    capacity: usize,
}

/// Prints only the size: adapters are `Debug`, and a dump of every nonce is of no use
/// in a log and could be large.
impl std::fmt::Debug for NonceCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let remembered = self.inner.lock().map_or(0, |inner| inner.expiry.len());
        f.debug_struct("NonceCache")
            .field("remembered", &remembered)
            .field("capacity", &self.capacity)
            .finish()
    }
}

#[derive(Default)]
struct Inner {
    /// Nonce → the last second (unix) a request carrying it could still be accepted;
    /// it is forgotten after that.
    expiry: HashMap<String, i64>,
    /// Insertion order, for cheap expiry and eviction. Expiries are close to insertion
    /// order (they are "timestamp + window"), so popping from the front while expired
    /// forgets nearly everything that is due; the rest goes when its turn comes.
    order: VecDeque<(i64, String)>,
}

impl NonceCache {
    pub fn new(capacity: usize) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            capacity: capacity.max(1),
        }
    }

    /// Remembers `nonce` through `last_accepted` (unix seconds: the last second its
    /// request could pass the window or token check, which are inclusive); refuses it as
    /// a replay if it is remembered still.
    ///
    /// Call only after the signature checked out: an unauthenticated nonce must neither
    /// be remembered (anyone could fill the cache) nor be able to block the real one.
    pub fn check_and_remember(
        &self,
        nonce: &str,
        now: i64,
        last_accepted: i64,
    ) -> Result<(), WebhookError> {
        // A panic elsewhere while holding the lock leaves the map consistent (every
        // mutation below is a single call), so a poisoned lock is still usable.
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner.forget_expired(now);
        if inner.expiry.get(nonce).is_some_and(|last| *last >= now) {
            return Err(WebhookError::Replayed);
        }
        while inner.expiry.len() >= self.capacity {
            if !inner.evict_oldest() {
                break;
            }
        }
        inner.expiry.insert(nonce.to_owned(), last_accepted);
        inner.order.push_back((last_accepted, nonce.to_owned()));
        Ok(())
    }

    /// [`Self::check_and_remember`] for a webhook. A request the webhook handler lets
    /// through again (`replay_allowed`: byte-identical to one that was verified but then
    /// failed to be stored, so the provider's retry of it) is not refused as a replay.
    pub fn admit(
        &self,
        request: &WebhookRequest<'_>,
        nonce: &str,
        last_accepted: i64,
    ) -> Result<(), WebhookError> {
        match self.check_and_remember(nonce, request.now_unix, last_accepted) {
            Err(WebhookError::Replayed) if request.replay_allowed => Ok(()),
            other => other,
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner.expiry.len()
    }
}

impl Inner {
    fn forget_expired(&mut self, now: i64) {
        while self.order.front().is_some_and(|(last, _)| *last < now) {
            if let Some((due, nonce)) = self.order.pop_front() {
                // Only if the map still holds this entry (not a later re-insertion).
                if self.expiry.get(&nonce) == Some(&due) {
                    self.expiry.remove(&nonce);
                }
            }
        }
    }

    /// Drops the oldest remembered nonce; false if there is none.
    fn evict_oldest(&mut self) -> bool {
        match self.order.pop_front() {
            Some((due, nonce)) => {
                if self.expiry.get(&nonce) == Some(&due) {
                    self.expiry.remove(&nonce);
                }
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_retry_let_through_by_the_handler_passes_a_remembered_nonce() {
        let cache = NonceCache::new(10);
        let headers = http::HeaderMap::new();
        let mut request = WebhookRequest {
            public_url: "https://x/webhooks/p",
            headers: &headers,
            body: b"",
            now_unix: 1000,
            replay_allowed: false,
        };
        assert!(cache.admit(&request, "n1", 2000).is_ok());
        assert_eq!(
            cache.admit(&request, "n1", 2000),
            Err(WebhookError::Replayed)
        );
        request.replay_allowed = true;
        assert!(cache.admit(&request, "n1", 2000).is_ok());
    }

    #[test]
    fn window_is_inclusive_both_ways() {
        assert!(check_window(1000, 700, 300).is_ok());
        assert!(check_window(1000, 1300, 300).is_ok());
        assert_eq!(check_window(1000, 699, 300), Err(WebhookError::Stale));
        assert_eq!(check_window(1000, 1301, 300), Err(WebhookError::Stale));
        assert_eq!(check_window(0, i64::MIN, 300), Err(WebhookError::Stale));
    }

    #[test]
    fn a_nonce_is_refused_until_it_expires() {
        let cache = NonceCache::new(10);
        assert!(cache.check_and_remember("n1", 100, 400).is_ok());
        assert_eq!(
            cache.check_and_remember("n1", 399, 699),
            Err(WebhookError::Replayed)
        );
        assert!(cache.check_and_remember("n2", 399, 699).is_ok());
        // At its last second its request still passes the (inclusive) window: refused.
        assert_eq!(
            cache.check_and_remember("n1", 400, 700),
            Err(WebhookError::Replayed)
        );
        // After that it is forgotten (its request would be stale by now anyway).
        assert!(cache.check_and_remember("n1", 401, 701).is_ok());
        assert_eq!(cache.len(), 2);
    }

    #[test]
    fn memory_is_bounded() {
        let cache = NonceCache::new(3);
        for i in 0..10 {
            cache
                .check_and_remember(&format!("n{i}"), 100, 10_000)
                .unwrap();
        }
        assert_eq!(cache.len(), 3);
        // The newest are the ones kept.
        assert_eq!(
            cache.check_and_remember("n9", 100, 10_000),
            Err(WebhookError::Replayed)
        );
    }

    #[test]
    fn bad_timestamps_are_malformed() {
        assert_eq!(parse_unix("t", " 42 "), Ok(42));
        assert!(matches!(
            parse_unix("t", "soon"),
            Err(WebhookError::Malformed(_))
        ));
    }
}
