//! Recent errors, kept in memory for the admin's system-status page.
//!
//! Self-hosters rarely read server logs until something is visibly broken; a provider
//! whose webhooks all fail their signature check (a wrong secret, a proxy rewriting the
//! URL) looks like "no SMS arrive". Keeping the last failures where the admin already
//! looks turns that into a one-line diagnosis. Only the newest [`CAPACITY`] are kept,
//! in memory: nothing here reaches the disk.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

/// How many recent errors are kept.
pub const CAPACITY: usize = 50;

/// Where an error happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorSource {
    /// An API request answered with a server error (5xx).
    Api,
    /// A provider webhook refused (bad signature, malformed payload) or failed.
    Webhook,
    /// An e-mail that could not be sent.
    Mail,
    /// A background task: the retention sweeper or the search indexer.
    Background,
    /// Outbound SMS: a failed send attempt, a message given up, a provider whose
    /// circuit breaker opened.
    Outbound,
}

/// One recorded failure.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorEvent {
    /// When it happened, unix milliseconds.
    pub at_ms: i64,
    pub source: ErrorSource,
    /// The stable error code (as in problem+json bodies), or a short task name.
    pub code: String,
    /// What happened, in words. Never a secret; may name a provider or a route.
    pub detail: String,
    /// How many times it happened (repeats of the same failure are folded into one
    /// entry, so a flood of forged webhooks cannot push everything else out).
    pub count: u64,
    /// When it last happened, unix milliseconds.
    pub last_at_ms: i64,
    /// What repeats are recognised by (e.g. the provider or route); not shown.
    #[serde(skip)]
    subject: String,
}

/// Repeats further apart than this start a new entry.
const FOLD_WINDOW_MS: i64 = 5 * 60 * 1000;

/// A bounded log of recent failures, shared by everything that can fail.
#[derive(Debug, Clone, Default)]
pub struct RecentErrors {
    inner: Arc<Mutex<Log>>,
}

#[derive(Debug, Default)]
struct Log {
    events: VecDeque<ErrorEvent>,
    total: u64,
}

impl RecentErrors {
    pub fn record(&self, source: ErrorSource, code: impl Into<String>, detail: impl Into<String>) {
        self.record_about(source, code, "", detail);
    }

    /// Records a failure concerning `subject` (a provider, a route): a repeat of the
    /// same failure about the same subject within a few minutes updates the existing
    /// entry (count, time, latest detail) instead of adding one.
    pub fn record_about(
        &self,
        source: ErrorSource,
        code: impl Into<String>,
        subject: impl Into<String>,
        detail: impl Into<String>,
    ) {
        let now = time::OffsetDateTime::now_utc().unix_timestamp() * 1000;
        let (code, subject, detail) = (code.into(), subject.into(), detail.into());
        // A panic elsewhere while holding the lock leaves the log usable: it is only a log.
        let mut log = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        log.total += 1;
        let repeat = log.events.iter().position(|event| {
            event.source == source
                && event.code == code
                && event.subject == subject
                && now - event.last_at_ms <= FOLD_WINDOW_MS
        });
        if let Some(index) = repeat
            && let Some(mut event) = log.events.remove(index)
        {
            event.count += 1;
            event.last_at_ms = now;
            event.detail = detail;
            log.events.push_back(event);
            return;
        }
        if log.events.len() == CAPACITY {
            log.events.pop_front();
        }
        log.events.push_back(ErrorEvent {
            at_ms: now,
            source,
            code,
            detail,
            count: 1,
            last_at_ms: now,
            subject,
        });
    }

    /// The kept errors, most recently seen first, and how many were ever recorded.
    pub fn snapshot(&self) -> (Vec<ErrorEvent>, u64) {
        let log = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        (log.events.iter().rev().cloned().collect(), log.total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_and_counts_all() {
        let errors = RecentErrors::default();
        for i in 0..CAPACITY + 5 {
            errors.record_about(
                ErrorSource::Api,
                "internal",
                i.to_string(),
                format!("failure {i}"),
            );
        }
        let (events, total) = errors.snapshot();
        assert_eq!(total, (CAPACITY + 5) as u64);
        assert_eq!(events.len(), CAPACITY);
        assert_eq!(events[0].detail, format!("failure {}", CAPACITY + 4));
        assert_eq!(events[CAPACITY - 1].detail, "failure 5");
    }

    #[test]
    fn repeats_about_one_subject_fold_into_one_entry() {
        let errors = RecentErrors::default();
        errors.record_about(ErrorSource::Background, "x", "", "other");
        for i in 0..1000 {
            errors.record_about(
                ErrorSource::Webhook,
                "webhook_signature_invalid",
                "twilio",
                format!("from {i}"),
            );
        }
        let (events, total) = errors.snapshot();
        assert_eq!(total, 1001);
        assert_eq!(
            events.len(),
            2,
            "the flood did not push the other error out"
        );
        assert_eq!(
            (events[0].count, events[0].detail.as_str()),
            (1000, "from 999")
        );
        assert_eq!(events[1].detail, "other");
    }
}
