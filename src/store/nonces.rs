//! Nonces (and token ids) spent by verified webhooks, kept on disk.
//!
//! Vonage, Plivo, Sinch and MessageBird sign a one-time value with each request. A
//! request whose value another request already spent is a replay: captured once (from a
//! log, a proxy), it must not be taken again, and Plivo's V2 signature does not even
//! cover the body, so a captured one could carry any message. Kept in memory, that
//! guard would forget everything at a restart; kept here, it forgets a value only once
//! no request carrying it could pass the provider's check any more.
//!
//! Each record also holds a keyed hash of the request that spent the value. The
//! provider's byte-for-byte retry of that request (after a failed store, or after our
//! answer was lost) is let through: it is the same delivery, and dedupe stores nothing
//! twice. Any other request with the value is refused. The first request to commit its
//! record wins, so two concurrent requests with one value cannot both get in.

use redb::ReadableTable;

use super::housekeeping::{Stretch, byte_stretch};
use super::records::{self, SpentNonceRecord};
use super::{Store, StoreError, readable_or_skipped};
use crate::providers::SpentNonce;

/// How long a spent nonce is kept past its last accepted second. A webhook handler
/// reads the clock before verifying, and its spend job may run seconds later under load;
/// the record must still be there for it.
const PURGE_GRACE_SECS: i64 = 300;

// A retry is let through to be stored again, and only dedupe keeps it from being stored
// twice: message dedupe keys must outlive the longest-lived nonce (Plivo's).
const _: () =
    assert!(crate::providers::plivo::NONCE_TTL_SECS * 1000 <= super::messages::DEDUPE_WINDOW_MS);

/// What a request's nonces say about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceSpend {
    /// None was spent before: they are spent now.
    Fresh,
    /// Spent by this very request before: the provider's retry.
    Retry,
    /// One was spent by another request: a replay, refused. Nothing was recorded.
    Replay,
}

impl Store {
    /// Spends `nonces` for `provider`, for the request whose fingerprint is `request`
    /// (see the webhook handler), unless one was spent by another request that could
    /// still be accepted at `now` (unix seconds).
    pub async fn spend_nonces(
        &self,
        provider: &str,
        nonces: Vec<SpentNonce>,
        request: [u8; 32],
        now: i64,
    ) -> Result<NonceSpend, StoreError> {
        let request = self.keys.blind_index("webhook-request", &request);
        let keyed: Vec<([u8; 32], i64)> = nonces
            .iter()
            .map(|spent| {
                let value = [provider.as_bytes(), spent.nonce.as_bytes()].join(&0);
                (self.keys.blind_index("nonce", &value), spent.last_accepted)
            })
            .collect();
        self.writer
            .submit(move |tables| {
                let mut retry = false;
                let mut fresh = Vec::with_capacity(keyed.len());
                for (key, last_accepted) in keyed {
                    let read = tables
                        .spent_nonces
                        .get(key.as_slice())?
                        .map(|v| records::decode::<SpentNonceRecord>(v.value()));
                    // An unreadable record cannot say whose it was; it is replaced.
                    let name = hex::encode(&key[..4]);
                    match readable_or_skipped(read.transpose(), "spent nonce", name)?.flatten() {
                        Some(SpentNonceRecord::V1 {
                            last_accepted: until,
                            request: by,
                        }) if until >= now => {
                            if by != request {
                                return Ok(NonceSpend::Replay);
                            }
                            retry = true;
                        }
                        _ => fresh.push((key, last_accepted)),
                    }
                }
                for (key, last_accepted) in fresh {
                    let record = records::encode(&SpentNonceRecord::V1 {
                        last_accepted,
                        request,
                    })?;
                    tables
                        .spent_nonces
                        .insert(key.as_slice(), record.as_slice())?;
                }
                Ok(if retry {
                    NonceSpend::Retry
                } else {
                    NonceSpend::Fresh
                })
            })
            .await
    }

    /// Deletes, among the next stretch of spent nonces after key `after`, those no request
    /// could be accepted with any more at `now` (unix seconds), with [`PURGE_GRACE_SECS`]
    /// to spare. Returns how many went, and where the next job starts.
    pub async fn purge_spent_nonces_batch(
        &self,
        now: i64,
        after: Option<Vec<u8>>,
    ) -> Result<(usize, Option<Vec<u8>>), StoreError> {
        self.writer
            .submit(move |tables| {
                let Stretch { records, next } =
                    byte_stretch::<SpentNonceRecord>(&tables.spent_nonces, after.as_deref())?;
                let mut purged = 0;
                for (key, read) in records {
                    // An unreadable record protects nothing: it goes.
                    let due = match read {
                        Ok(SpentNonceRecord::V1 { last_accepted, .. }) => {
                            last_accepted.saturating_add(PURGE_GRACE_SECS) < now
                        }
                        Err(_) => true,
                    };
                    if due {
                        tables.spent_nonces.remove(key.as_slice())?;
                        purged += 1;
                    }
                }
                Ok((purged, next))
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::{UNREADABLE, store};

    fn nonce(value: &str, last_accepted: i64) -> Vec<SpentNonce> {
        vec![SpentNonce {
            nonce: value.into(),
            last_accepted,
        }]
    }

    #[tokio::test]
    async fn a_nonce_is_spent_once_and_its_request_may_retry() {
        let (store, _dir) = store();
        let (request, other) = ([1; 32], [2; 32]);
        let spend = |provider: &'static str, value, request, now| {
            store.spend_nonces(provider, nonce(value, 400), request, now)
        };
        assert_eq!(
            spend("p", "n1", request, 100).await.unwrap(),
            NonceSpend::Fresh
        );
        assert_eq!(
            spend("p", "n1", request, 200).await.unwrap(),
            NonceSpend::Retry
        );
        assert_eq!(
            spend("p", "n1", other, 200).await.unwrap(),
            NonceSpend::Replay
        );
        // At its last second a request carrying it could still pass: refused.
        assert_eq!(
            spend("p", "n1", other, 400).await.unwrap(),
            NonceSpend::Replay
        );
        // Another provider's nonces are its own.
        assert_eq!(
            spend("q", "n1", other, 200).await.unwrap(),
            NonceSpend::Fresh
        );
        // Once no request could carry it, it is free.
        assert_eq!(
            spend("p", "n1", other, 401).await.unwrap(),
            NonceSpend::Fresh
        );
    }

    /// Plivo spends two nonces per request (V3 and V2): one spent by another request is
    /// enough to refuse it, and then none of its nonces is recorded.
    #[tokio::test]
    async fn a_request_with_any_nonce_spent_by_another_records_none() {
        let (store, _dir) = store();
        let two = |a: &str, b: &str| {
            let mut both = nonce(a, 400);
            both.extend(nonce(b, 400));
            both
        };
        assert_eq!(
            store
                .spend_nonces("p", nonce("v2", 400), [1; 32], 100)
                .await
                .unwrap(),
            NonceSpend::Fresh
        );
        assert_eq!(
            store
                .spend_nonces("p", two("v3", "v2"), [2; 32], 100)
                .await
                .unwrap(),
            NonceSpend::Replay
        );
        assert_eq!(
            store
                .spend_nonces("p", nonce("v3", 400), [3; 32], 100)
                .await
                .unwrap(),
            NonceSpend::Fresh,
            "the refused request's other nonce was not recorded"
        );
    }

    #[tokio::test]
    async fn spent_nonces_go_once_no_request_could_carry_them() {
        let (store, _dir) = store();
        for (value, last) in [("a", 100), ("b", 200), ("c", 300)] {
            store
                .spend_nonces("p", nonce(value, last), [1; 32], 0)
                .await
                .unwrap();
        }
        store
            .writer
            .submit(|tables| {
                tables
                    .spent_nonces
                    .insert([0_u8; 32].as_slice(), UNREADABLE)?;
                Ok(())
            })
            .await
            .unwrap();
        // Kept a grace period past their last second: b is not due yet.
        let (purged, _) = store
            .purge_spent_nonces_batch(200 + PURGE_GRACE_SECS, None)
            .await
            .unwrap();
        assert_eq!(purged, 2, "a and the unreadable one");
        let (purged, next) = store
            .purge_spent_nonces_batch(201 + PURGE_GRACE_SECS, None)
            .await
            .unwrap();
        assert_eq!((purged, next), (1, None), "b");
        assert_eq!(
            store
                .spend_nonces("p", nonce("c", 400), [2; 32], 201)
                .await
                .unwrap(),
            NonceSpend::Replay,
            "c is kept"
        );
    }
}
