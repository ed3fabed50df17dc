//! Login sessions: refresh-token families, rotated on every use.
//!
//! A family stores the current token's generation and a hash of its secret, and hashes
//! of the recently spent ones. A spent token coming back only happens when it was
//! copied: the whole family is revoked, logging out the thief and the victim alike (who
//! logs in again; the thief cannot).

use redb::{ReadableDatabase, ReadableTable};
use subtle::ConstantTimeEq;

use super::housekeeping::stretch;
use super::records::{self, SPENT_KEPT, SessionRecord, SessionV2};
use super::tables::{SESSIONS, Tables, meta};
use super::{Store, StoreError, next_id, now_ms, readable_or_skipped};

/// Why a refresh token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RefreshRefusal {
    #[error("the refresh token is not valid")]
    Invalid,
    #[error("the refresh token has expired or was revoked")]
    Ended,
    #[error("the refresh token was already used; every session of this login is now revoked")]
    Reused,
}

/// A session as token handling needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionView {
    pub id: u64,
    pub user_id: u64,
    pub generation: u64,
    pub expires_at_ms: i64,
}

impl Store {
    /// Starts a session for `user_id` whose first token's secret hashes to `secret_hash`.
    pub async fn create_session(
        &self,
        user_id: u64,
        secret_hash: [u8; 32],
        ttl_ms: i64,
    ) -> Result<SessionView, StoreError> {
        self.writer
            .submit(move |tables| {
                let id = next_id(&mut tables.meta, meta::NEXT_SESSION_ID)?;
                let now = now_ms();
                let session = SessionV2 {
                    user_id,
                    created_at_ms: now,
                    expires_at_ms: now.saturating_add(ttl_ms),
                    generation: 1,
                    secret_hash,
                    spent: Vec::new(),
                    revoked: false,
                };
                put(tables, id, &session)?;
                tables.sessions_by_user.insert((user_id, id), ())?;
                Ok(view(id, &session))
            })
            .await
    }

    /// Spends token `generation` of session `id` (its secret hashing to `presented`) and
    /// makes `next_hash` the secret of the next generation.
    pub async fn rotate_session(
        &self,
        id: u64,
        generation: u64,
        presented: [u8; 32],
        next_hash: [u8; 32],
        ttl_ms: i64,
    ) -> Result<Result<SessionView, RefreshRefusal>, StoreError> {
        self.writer
            .submit(move |tables| {
                let Some(mut session) = load(tables, id)? else {
                    return Ok(Err(RefreshRefusal::Invalid));
                };
                let now = now_ms();
                if session.revoked || session.expires_at_ms <= now {
                    return Ok(Err(RefreshRefusal::Ended));
                }
                // Every remembered hash is compared, whichever matches, in constant time.
                let spent = generation < session.generation
                    && session
                        .spent
                        .iter()
                        .fold(subtle::Choice::from(0), |found, hash| {
                            found | hash.ct_eq(&presented)
                        })
                        .into();
                if spent {
                    session.revoked = true;
                    put(tables, id, &session)?;
                    tracing::warn!(
                        session = id,
                        user = session.user_id,
                        "spent refresh token reused: session revoked"
                    );
                    return Ok(Err(RefreshRefusal::Reused));
                }
                let current = generation == session.generation
                    && bool::from(session.secret_hash.ct_eq(&presented));
                if !current {
                    return Ok(Err(RefreshRefusal::Invalid));
                }
                session.spent.push(session.secret_hash);
                if session.spent.len() > SPENT_KEPT {
                    session.spent.remove(0);
                }
                session.generation += 1;
                session.secret_hash = next_hash;
                session.expires_at_ms = now.saturating_add(ttl_ms);
                put(tables, id, &session)?;
                Ok(Ok(view(id, &session)))
            })
            .await
    }

    /// Revokes one session (logout). Only `user_id`'s own sessions are touched.
    pub async fn revoke_session(&self, id: u64, user_id: u64) -> Result<bool, StoreError> {
        self.writer
            .submit(move |tables| {
                let Some(mut session) = load(tables, id)?.filter(|s| s.user_id == user_id) else {
                    return Ok(false);
                };
                session.revoked = true;
                put(tables, id, &session)?;
                Ok(true)
            })
            .await
    }

    /// Revokes every session of a user (logout everywhere). Returns how many were active.
    pub async fn revoke_all_sessions(&self, user_id: u64) -> Result<usize, StoreError> {
        self.writer
            .submit(move |tables| revoke_all_in(tables, user_id, None))
            .await
    }

    /// Deletes the ended sessions (revoked, or past their refresh token's expiry) among
    /// the next [`SCAN`](super::housekeeping::SCAN) after id `after`: a token of an ended session is refused
    /// the same way whether its record is there or not, and without this every login
    /// ever made would stay on disk. Returns how many went, and where the next job
    /// starts (`None`: the walk reached the end of the table).
    pub async fn purge_sessions_batch(
        &self,
        now: i64,
        after: u64,
    ) -> Result<(usize, Option<u64>), StoreError> {
        self.writer
            .submit(move |tables| {
                let stretch = stretch::<SessionRecord>(&tables.sessions, after)?;
                let mut purged = 0;
                for (id, read) in stretch.records {
                    let read = read.map(SessionRecord::into_latest);
                    // Unreadable: it cannot be used either, so it goes.
                    let owner = match readable_or_skipped(read, "session", id)? {
                        Some(session) if !session.revoked && session.expires_at_ms > now => {
                            continue;
                        }
                        Some(session) => Some(session.user_id),
                        None => None,
                    };
                    tables.sessions.remove(id)?;
                    if let Some(user_id) = owner {
                        tables.sessions_by_user.remove((user_id, id))?;
                    }
                    purged += 1;
                }
                Ok((purged, stretch.next))
            })
            .await
    }

    /// The session if it is still live (not revoked, not expired): access tokens check
    /// this so that logout takes effect at once, not when the token expires.
    pub fn live_session(&self, id: u64) -> Result<Option<SessionView>, StoreError> {
        let txn = self.db.begin_read()?;
        let session = txn
            .open_table(SESSIONS)?
            .get(id)?
            .map(|v| records::decode::<SessionRecord>(v.value()))
            .transpose()?
            .map(SessionRecord::into_latest)
            .filter(|s| !s.revoked && s.expires_at_ms > now_ms());
        Ok(session.map(|s| view(id, &s)))
    }
}

/// Revokes every session of `user_id` inside a write job. Returns how many were active.
/// Revokes every session of `user_id` except `keep` (the caller's own, when a password
/// change should not log out the device it was made on).
pub(crate) fn revoke_all_in(
    tables: &mut Tables<'_>,
    user_id: u64,
    keep: Option<u64>,
) -> Result<usize, StoreError> {
    let mut ids = Vec::new();
    for entry in tables
        .sessions_by_user
        .range((user_id, 0)..=(user_id, u64::MAX))?
    {
        ids.push(entry?.0.value().1);
    }
    let mut revoked = 0;
    for id in ids.into_iter().filter(|id| Some(*id) != keep) {
        if let Some(mut session) = load(tables, id)?
            && !session.revoked
        {
            session.revoked = true;
            put(tables, id, &session)?;
            revoked += 1;
        }
    }
    Ok(revoked)
}

fn view(id: u64, session: &SessionV2) -> SessionView {
    SessionView {
        id,
        user_id: session.user_id,
        generation: session.generation,
        expires_at_ms: session.expires_at_ms,
    }
}

fn load(tables: &Tables<'_>, id: u64) -> Result<Option<SessionV2>, StoreError> {
    Ok(tables
        .sessions
        .get(id)?
        .map(|v| records::decode::<SessionRecord>(v.value()))
        .transpose()?
        .map(SessionRecord::into_latest))
}

fn put(tables: &mut Tables<'_>, id: u64, session: &SessionV2) -> Result<(), StoreError> {
    let bytes = records::encode(&SessionRecord::V2(session.clone()))?;
    tables.sessions.insert(id, bytes.as_slice())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use redb::ReadableTableMetadata;

    use super::*;
    use crate::store::testing::store;

    const DAY_MS: i64 = 86_400_000;

    #[tokio::test]
    async fn ended_sessions_are_purged_and_live_ones_kept() {
        let (store, _dir) = store();
        let live = store.create_session(1, [1; 32], DAY_MS).await.unwrap();
        let expired = store.create_session(1, [2; 32], -1).await.unwrap();
        let revoked = store.create_session(2, [3; 32], DAY_MS).await.unwrap();
        assert!(store.revoke_session(revoked.id, 2).await.unwrap());
        assert!(store.live_session(expired.id).unwrap().is_none());

        assert_eq!(
            store.purge_sessions_batch(now_ms(), 0).await.unwrap(),
            (2, None)
        );
        assert!(store.live_session(live.id).unwrap().is_some());
        // Their owners' indexes forgot them: logging out everywhere finds only the live one.
        assert_eq!(store.revoke_all_sessions(1).await.unwrap(), 1);
        assert_eq!(store.revoke_all_sessions(2).await.unwrap(), 0);
        let left = store
            .db
            .begin_read()
            .unwrap()
            .open_table(SESSIONS)
            .unwrap()
            .len()
            .unwrap();
        assert_eq!(left, 1);
    }

    #[tokio::test]
    async fn rotation_spends_tokens_and_reuse_revokes_the_family() {
        let (store, _dir) = store();
        let session = store.create_session(1, [1; 32], DAY_MS).await.unwrap();
        assert_eq!(session.generation, 1);
        let next = store
            .rotate_session(session.id, 1, [1; 32], [2; 32], DAY_MS)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(next.generation, 2);
        // A wrong secret for the current generation is refused but revokes nothing.
        assert_eq!(
            store
                .rotate_session(session.id, 2, [9; 32], [3; 32], DAY_MS)
                .await
                .unwrap(),
            Err(RefreshRefusal::Invalid)
        );
        assert!(store.live_session(session.id).unwrap().is_some());
        // An old generation with a made-up secret is merely invalid: guessing ids cannot
        // log anyone out.
        assert_eq!(
            store
                .rotate_session(session.id, 1, [7; 32], [3; 32], DAY_MS)
                .await
                .unwrap(),
            Err(RefreshRefusal::Invalid)
        );
        assert!(store.live_session(session.id).unwrap().is_some());
        assert_eq!(
            store
                .rotate_session(session.id, u64::MAX, [7; 32], [3; 32], DAY_MS)
                .await
                .unwrap(),
            Err(RefreshRefusal::Invalid)
        );
        // The spent first token comes back: the whole family dies, current token too.
        assert_eq!(
            store
                .rotate_session(session.id, 1, [1; 32], [3; 32], DAY_MS)
                .await
                .unwrap(),
            Err(RefreshRefusal::Reused)
        );
        assert!(store.live_session(session.id).unwrap().is_none());
        assert_eq!(
            store
                .rotate_session(session.id, 2, [2; 32], [3; 32], DAY_MS)
                .await
                .unwrap(),
            Err(RefreshRefusal::Ended)
        );
    }

    /// A thief who rotated twice is caught when the victim's older token comes back,
    /// not only the one just before the current.
    #[tokio::test]
    async fn a_token_spent_generations_ago_coming_back_revokes_the_family() {
        let (store, _dir) = store();
        let session = store.create_session(1, [1; 32], DAY_MS).await.unwrap();
        for (generation, secret) in [(1, 1u8), (2, 2), (3, 3)] {
            store
                .rotate_session(
                    session.id,
                    generation,
                    [secret; 32],
                    [secret + 1; 32],
                    DAY_MS,
                )
                .await
                .unwrap()
                .unwrap();
        }
        assert_eq!(
            store
                .rotate_session(session.id, 1, [1; 32], [9; 32], DAY_MS)
                .await
                .unwrap(),
            Err(RefreshRefusal::Reused)
        );
        assert!(store.live_session(session.id).unwrap().is_none());
    }

    /// A session written before spent tokens were kept still catches its last one.
    #[tokio::test]
    async fn a_first_layout_session_keeps_its_previous_token_as_spent() {
        let (store, _dir) = store();
        let session = store.create_session(1, [1; 32], DAY_MS).await.unwrap();
        let old = SessionRecord::V1(crate::store::records::SessionV1 {
            user_id: 1,
            created_at_ms: now_ms(),
            expires_at_ms: now_ms() + DAY_MS,
            generation: 2,
            secret_hash: [2; 32],
            previous_hash: Some([1; 32]),
            revoked: false,
        });
        let bytes = records::encode(&old).unwrap();
        let id = session.id;
        store
            .writer
            .submit(move |tables| {
                tables.sessions.insert(id, bytes.as_slice())?;
                Ok(())
            })
            .await
            .unwrap();
        assert_eq!(
            store
                .rotate_session(id, 1, [1; 32], [9; 32], DAY_MS)
                .await
                .unwrap(),
            Err(RefreshRefusal::Reused)
        );
    }

    #[tokio::test]
    async fn logout_ends_one_session_or_all_of_a_users() {
        let (store, _dir) = store();
        let a = store.create_session(1, [1; 32], DAY_MS).await.unwrap();
        let b = store.create_session(1, [2; 32], DAY_MS).await.unwrap();
        let other = store.create_session(2, [3; 32], DAY_MS).await.unwrap();
        assert!(
            !store.revoke_session(a.id, 2).await.unwrap(),
            "not another user's session"
        );
        assert!(store.revoke_session(a.id, 1).await.unwrap());
        assert!(store.live_session(a.id).unwrap().is_none());
        assert_eq!(store.revoke_all_sessions(1).await.unwrap(), 1);
        assert!(store.live_session(b.id).unwrap().is_none());
        assert!(store.live_session(other.id).unwrap().is_some());
        let expired = store.create_session(3, [4; 32], 0).await.unwrap();
        assert!(store.live_session(expired.id).unwrap().is_none());
    }
}
