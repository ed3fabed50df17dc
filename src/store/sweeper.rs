//! Retention: deletes expired messages through the expiry index.
//!
//! Each batch of at most `batch` deletions is one job in the group-commit writer, so
//! webhook writes queue behind at most one small batch, never behind a whole sweep.

use std::time::Duration;

use redb::ReadableTable;
use tokio_util::sync::CancellationToken;

use super::housekeeping::SCAN;
use super::messages::expire_message;
use super::tables::{Tables, meta};
use super::{NewMessage, Store, StoreError, Walks, bump_meta, now_ms, readable_or_skipped};
use crate::diagnostics::{ErrorSource, RecentErrors};

impl Store {
    /// Deletes up to `batch` messages whose expiry is at or before `now_ms`.
    /// Returns the ids deleted; fewer than `batch` means none are left.
    pub async fn sweep_expired_batch(
        &self,
        now_ms: i64,
        batch: usize,
    ) -> Result<Vec<u64>, StoreError> {
        let now = u64::try_from(now_ms).unwrap_or(0);
        self.writer
            .submit(move |tables| sweep_in(tables, now, batch))
            .await
    }

    /// Sweeps until nothing expired is left or `stop` is cancelled, reporting each
    /// batch's ids to `on_deleted` (the search index forgets them). Returns the number
    /// deleted.
    pub async fn sweep_expired(
        &self,
        batch: usize,
        on_deleted: &(dyn Fn(&[u64]) + Send + Sync),
        stop: &CancellationToken,
    ) -> Result<usize, StoreError> {
        let mut total = 0;
        loop {
            let deleted = self.sweep_expired_batch(now_ms(), batch).await?;
            total += deleted.len();
            on_deleted(&deleted);
            if deleted.len() < batch || stop.is_cancelled() {
                return Ok(total);
            }
        }
    }
}

fn sweep_in(tables: &mut Tables<'_>, now: u64, batch: usize) -> Result<Vec<u64>, StoreError> {
    let mut due = Vec::with_capacity(batch);
    for entry in tables
        .expiry
        .range(..(now.saturating_add(1), 0))?
        .take(batch)
    {
        due.push(entry?.0.value());
    }
    if due.is_empty() {
        return Ok(Vec::new());
    }
    let mut deleted = Vec::with_capacity(due.len());
    let mut expired = 0;
    for (expires_at, message_id) in due {
        // The entry found goes whatever its record says, so no entry is picked twice.
        tables.expiry.remove((expires_at, message_id))?;
        // An unreadable record is deleted all the same; its index entries cannot be
        // found without it, and they point at an id that no longer exists.
        let removed = readable_or_skipped(
            expire_message(tables, message_id, now),
            "message",
            message_id,
        )?;
        // Not what was left of a message deleted or expired earlier: counted then.
        if removed != Some(false) {
            expired += 1;
        }
        deleted.push(message_id);
    }
    bump_meta(&mut tables.meta, meta::EXPIRED_TOTAL, expired)?;
    Ok(deleted)
}

/// Told the ids of every batch of expired messages the sweeper deletes.
pub type OnDeleted = Box<dyn Fn(&[u64]) + Send + Sync>;
/// Told of the messages the sweeper stores (multipart messages completed with gaps).
pub type OnStored = Box<dyn Fn(&[NewMessage]) + Send + Sync>;

/// What the sweeper does and how often.
#[derive(Debug, Clone, Copy)]
pub struct SweepSettings {
    pub interval: Duration,
    /// Deletions (or completions) per write transaction.
    pub batch: usize,
    /// How long an ended lease's number rests.
    pub quarantine: Duration,
    /// How long a multipart message waits for missing parts.
    pub multipart_timeout: Duration,
    /// Retention of messages without a per-number override.
    pub retention: Duration,
    /// Accounts from open registration not confirmed within this are deleted.
    pub unverified_accounts_after: Duration,
}

/// The background task: every `interval` until `stop` is cancelled, ends leases whose
/// time is up (their numbers go into `quarantine`), stores multipart messages whose
/// missing parts are overdue, tidies what has outlived its use (see [`tidy`]) and
/// deletes expired messages. A backlog (after downtime longer than the retention) is
/// worked off batch by batch, and shutdown does not wait for it: the loops stop between
/// batches once `stop` is cancelled.
pub async fn run(
    on_deleted: OnDeleted,
    on_stored: OnStored,
    store: Store,
    settings: SweepSettings,
    errors: RecentErrors,
    stop: CancellationToken,
) {
    let SweepSettings {
        interval,
        batch,
        quarantine,
        multipart_timeout,
        retention,
        unverified_accounts_after: _,
    } = settings;
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Sessions, accounts, leases, invites and spent nonces are tidied a bounded stretch
    // of each table per tick, walking it round: most come at human rates, and spent
    // nonces (one per webhook of a few providers) get more stretches while they keep
    // finding many due (see `tidy`).
    let mut walks = Walks::default();
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = ticker.tick() => {}
        }
        loop {
            match store.expire_leases_batch(now_ms(), batch, quarantine).await {
                Ok(ended) if ended == batch && !stop.is_cancelled() => continue,
                Ok(0) => {}
                Ok(ended) => tracing::info!(ended, "leases expired"),
                Err(error) => {
                    tracing::warn!(%error, "lease expiry failed; retrying next interval");
                    errors.record(ErrorSource::Background, "lease_expiry", error.to_string());
                }
            }
            break;
        }
        match store
            .complete_overdue_parts(multipart_timeout, retention, batch)
            .await
        {
            Ok((stored, dropped)) => {
                if !stored.is_empty() {
                    tracing::info!(
                        messages = stored.len(),
                        "multipart messages stored with missing parts"
                    );
                    on_stored(&stored);
                }
                if dropped > 0 {
                    tracing::warn!(dropped, "unreadable pending multipart records dropped");
                    errors.record(
                        ErrorSource::Background,
                        "multipart",
                        format!("{dropped} unreadable pending multipart record(s) dropped"),
                    );
                }
            }
            Err(error) => {
                tracing::warn!(%error, "multipart completion failed; retrying next interval");
                errors.record(ErrorSource::Background, "multipart", error.to_string());
            }
        }
        tidy(&store, &mut walks, &settings, &on_deleted, &errors, &stop).await;
        loop {
            match store.sweep_outbound_batch(now_ms(), batch).await {
                Ok((messages, reports))
                    if (messages == batch || reports == batch) && !stop.is_cancelled() =>
                {
                    continue;
                }
                Ok((0, 0)) => {}
                Ok((messages, reports)) => {
                    tracing::info!(
                        messages,
                        reports,
                        "retention sweep deleted sent messages and reports"
                    );
                }
                Err(error) => {
                    tracing::warn!(%error, "outbound retention sweep failed; retrying next interval");
                    errors.record(
                        ErrorSource::Background,
                        "retention_sweep",
                        error.to_string(),
                    );
                }
            }
            break;
        }
        match store.sweep_expired(batch, &on_deleted, &stop).await {
            Ok(0) => {}
            Ok(deleted) => tracing::info!(deleted, "retention sweep deleted expired messages"),
            Err(error) => {
                tracing::warn!(%error, "retention sweep failed; retrying next interval");
                errors.record(
                    ErrorSource::Background,
                    "retention_sweep",
                    error.to_string(),
                );
            }
        }
    }
    tracing::debug!("retention sweeper stopped");
}

/// One step of each housekeeping walk: ended sessions, unconfirmed sign-ups and
/// temporary accounts past their end (with everything they own), ended leases whose
/// messages are all gone (kept at least `retention` after they ended), expired invites,
/// webhook nonces no request could be accepted with any more.
async fn tidy(
    store: &Store,
    walks: &mut Walks,
    settings: &SweepSettings,
    on_deleted: &OnDeleted,
    errors: &RecentErrors,
    stop: &CancellationToken,
) {
    let failed = |what: &'static str, error: StoreError| {
        tracing::warn!(%error, what, "housekeeping failed; retrying next interval");
        errors.record(ErrorSource::Background, what, error.to_string());
    };
    let sessions = store
        .purge_sessions_batch(now_ms(), walks.sessions.unwrap_or(0))
        .await;
    step(&mut walks.sessions, "sessions", sessions, &failed);
    let now = now_ms();
    match store
        .accounts_due(
            now,
            settings.unverified_accounts_after,
            walks.accounts.unwrap_or(0),
        )
        .await
    {
        Ok(due) => {
            walks.accounts = due.next;
            if due.unconfirmed > 0 {
                tracing::info!(removed = due.unconfirmed, "unconfirmed sign-ups removed");
            }
            for id in due.expired {
                if stop.is_cancelled() {
                    break;
                }
                match store
                    .delete_expired_account(id, now, settings.quarantine)
                    .await
                {
                    Ok(Some(messages)) => {
                        on_deleted(&messages);
                        tracing::debug!(
                            account = id,
                            messages = messages.len(),
                            "temporary account deleted"
                        );
                    }
                    Ok(None) => {}
                    Err(error) => failed("temporary_accounts", error),
                }
            }
        }
        Err(error) => failed("accounts", error),
    }
    let leases = store
        .purge_leases_batch(now_ms(), settings.retention, walks.leases.unwrap_or(0))
        .await;
    step(&mut walks.leases, "leases", leases, &failed);
    let invites = store
        .purge_invites_batch(now_ms(), walks.invites.clone())
        .await;
    step(&mut walks.invites, "invites", invites, &failed);
    // Spent nonces come at webhook rates: while stretches keep finding many that are
    // due, the walk goes on (each stretch its own writer job) instead of falling behind.
    let now_unix = now_ms() / 1000;
    for _ in 0..NONCE_STRETCHES_PER_TICK {
        let nonces = store
            .purge_spent_nonces_batch(now_unix, walks.spent_nonces.clone())
            .await;
        let purged = step(&mut walks.spent_nonces, "spent nonces", nonces, &failed);
        let lap_ended = walks.spent_nonces.is_none();
        if lap_ended || purged.is_none_or(|purged| purged < SCAN / 2) || stop.is_cancelled() {
            break;
        }
    }
}

/// Moves a walk on after one stretch: to where the next stretch starts, or back to the
/// start after the last. A stretch that failed is reported and the walk stays, to try
/// again next tick. Returns how many records went, if the stretch ran.
fn step<K>(
    walk: &mut Option<K>,
    what: &'static str,
    outcome: Result<(usize, Option<K>), StoreError>,
    failed: &impl Fn(&'static str, StoreError),
) -> Option<usize> {
    match outcome {
        Ok((purged, next)) => {
            *walk = next;
            if purged > 0 {
                tracing::debug!(purged, what, "housekeeping deleted records past their use");
            }
            Some(purged)
        }
        Err(error) => {
            failed(what, error);
            None
        }
    }
}

/// Stretches of spent nonces purged per tick at most: with 1,024 per stretch and the
/// default 30-second tick, up to about 190 million a day.
const NONCE_STRETCHES_PER_TICK: usize = 64;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::InboundSms;
    use crate::store::testing::{UNREADABLE, store};

    /// Stores `count` messages with ids `{prefix}0`… and text `prefix`, kept `retention`.
    async fn stored(store: &Store, prefix: &str, count: usize, retention: Duration) -> Vec<u64> {
        let mut ids = Vec::with_capacity(count);
        for i in 0..count {
            let id = format!("{prefix}{i}");
            let sms = InboundSms::new(&id, "a", "+12025550101", prefix, None).unwrap();
            let outcome = store.ingest("p".into(), sms, retention).await.unwrap();
            ids.push(outcome.message_id().unwrap());
        }
        ids
    }

    #[tokio::test]
    async fn a_record_that_cannot_be_read_is_swept_without_failing_the_batch() {
        let (store, _dir) = store();
        let ids = stored(&store, "m", 2, Duration::ZERO).await;
        let damaged = ids[0];
        store
            .writer
            .submit(move |tables| {
                tables.messages.insert(damaged, UNREADABLE)?;
                Ok(())
            })
            .await
            .unwrap();
        let later = now_ms() + 1_000;
        assert_eq!(store.sweep_expired_batch(later, 10).await.unwrap(), ids);
        assert!(
            store
                .sweep_expired_batch(later, 10)
                .await
                .unwrap()
                .is_empty()
        );
        let counts = store.counts().unwrap();
        assert_eq!((counts.messages, counts.expired_total), (0, 2));
    }

    #[tokio::test]
    async fn a_sweep_stops_between_batches_once_told_to() {
        let (store, _dir) = store();
        stored(&store, "m", 5, Duration::ZERO).await;
        let stopped = CancellationToken::new();
        stopped.cancel();
        let forgotten = std::sync::Mutex::new(Vec::new());
        let on_deleted = |ids: &[u64]| forgotten.lock().unwrap().extend_from_slice(ids);
        assert_eq!(
            store.sweep_expired(2, &on_deleted, &stopped).await.unwrap(),
            2,
            "one batch, then it stops"
        );
        let running = CancellationToken::new();
        assert_eq!(
            store.sweep_expired(2, &on_deleted, &running).await.unwrap(),
            3,
            "the rest, batch after batch"
        );
        assert_eq!(forgotten.lock().unwrap().len(), 5);
        assert_eq!(store.counts().unwrap().messages, 0);
    }

    #[tokio::test]
    async fn deletes_only_what_expired_in_bounded_batches() {
        let (store, _dir) = store();
        let short = Duration::from_millis(1);
        stored(&store, "old", 5, short).await;
        let keep = InboundSms::new("new", "a", "+12025550101", "new", None).unwrap();
        store
            .ingest("p".into(), keep, Duration::from_secs(3600))
            .await
            .unwrap();

        let later = now_ms() + 1_000;
        assert_eq!(store.sweep_expired_batch(later, 2).await.unwrap().len(), 2);
        assert_eq!(store.sweep_expired_batch(later, 10).await.unwrap().len(), 3);
        assert!(
            store
                .sweep_expired_batch(later, 10)
                .await
                .unwrap()
                .is_empty()
        );

        let page = store
            .list_messages(&crate::store::Scope::All, None, 10)
            .unwrap();
        assert_eq!(page.messages.len(), 1);
        assert_eq!(page.messages[0].text, "new");
        let counts = store.counts().unwrap();
        assert_eq!((counts.messages, counts.expired_total), (1, 5));
        // A provider's late retry of an expired message is a duplicate, not the
        // message back, until the dedupe window closes; then the same id is new.
        let again = || InboundSms::new("old0", "a", "+12025550101", "again", None).unwrap();
        let retry = store.ingest("p".into(), again(), short).await.unwrap();
        assert_eq!(retry, crate::store::IngestOutcome::Duplicate(None));
        assert_eq!(store.counts().unwrap().messages, 1);

        let window_closed = later + crate::store::messages::DEDUPE_WINDOW_MS;
        assert_eq!(
            store
                .sweep_expired_batch(window_closed, 10)
                .await
                .unwrap()
                .len(),
            6,
            "what was left of the five, and the hour-long message"
        );
        // The five are not counted again; the hour-long message expired now.
        assert_eq!(store.counts().unwrap().expired_total, 6);
        let reused = store.ingest("p".into(), again(), short).await.unwrap();
        assert!(!reused.is_duplicate(), "{reused:?}");
    }
}
