//! One signed POST to one endpoint, and what it means for the queue: delivered (2xx),
//! retried later with exponential backoff, or given up `webhooks_give_up` after the
//! message was queued.

use bytes::Bytes;
use reqwest::header::CONTENT_TYPE;

use super::Hooks;
use crate::config::HooksConfig;
use crate::diagnostics::ErrorSource;
use crate::outbound::backoff;
use crate::providers::generic;
use crate::store::records::QueuedDeliveryV1;
use crate::store::{DeliveryLogV1, MessageView, QueuedDelivery, StoreError, WebhookView, now_ms};

/// The receiver's status code, or why there was none (URL-free: it goes in the log).
type Outcome = Result<u16, String>;

/// Whether the receiver took it: any 2xx. Redirects are not followed, so 3xx fails.
fn delivered(outcome: &Outcome) -> bool {
    matches!(outcome, Ok(status) if (200..300).contains(status))
}

/// The longest error text kept in a delivery log entry: root causes from TLS or DNS
/// can be long, and every endpoint keeps its last 50 entries.
const MAX_ERROR_CHARS: usize = 300;

/// `error` cut to [`MAX_ERROR_CHARS`] characters (never inside one).
fn clipped(mut error: String) -> String {
    if let Some((cut, _)) = error.char_indices().nth(MAX_ERROR_CHARS) {
        error.truncate(cut);
        error.push('…');
    }
    error
}

/// The `webhook-id` of a message for an endpoint: the same on every retry (and after a
/// restart), so receivers can drop repeats.
fn message_webhook_id(webhook_id: u64, message_id: u64) -> String {
    format!("msg_{webhook_id}_{message_id}")
}

impl Hooks {
    /// Signs and POSTs `body` to the endpoint. The answer's body is never read.
    async fn post(&self, hook: &WebhookView, id: &str, body: Bytes) -> Outcome {
        let url =
            reqwest::Url::parse(&hook.url).map_err(|_| "the stored URL is not valid".to_owned())?;
        // Literal IPs never reach the guarded resolver.
        self.inner
            .guard
            .check_literal(&url)
            .map_err(|refused| refused.to_string())?;
        let timestamp = now_ms() / 1000;
        let signature = generic::sign(&hook.secret, id, timestamp, &body)?;
        let response = self
            .inner
            .client
            .post(url)
            .header(CONTENT_TYPE, "application/json")
            .header("webhook-id", id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body)
            .send()
            .await
            .map_err(describe)?;
        Ok(response.status().as_u16())
    }

    /// Sends a signed test event now and records it in the delivery log (it is not
    /// queued: the caller sees the outcome at once).
    pub async fn send_test(&self, hook: &WebhookView) -> DeliveryLogV1 {
        let at_ms = now_ms();
        let body = serde_json::json!({"type": "test", "webhook_id": hook.id}).to_string();
        let outcome = self
            .post(hook, &format!("test_{}_{at_ms}", hook.id), body.into())
            .await;
        let entry = DeliveryLogV1 {
            message_id: None,
            at_ms,
            attempt: 1,
            status: outcome.as_ref().ok().copied(),
            error: outcome.err().map(clipped),
            next_retry_ms: None,
        };
        if let Err(error) = self
            .inner
            .store
            .record_webhook_test(hook.id, entry.clone())
            .await
        {
            tracing::error!(%error, webhook_id = hook.id, "cannot record a webhook test");
        }
        entry
    }

    /// Makes one queued delivery and records it. [`Ended::Unrecorded`] when the queue
    /// row is left as it was (the store could not be read or written).
    pub(super) async fn deliver(&self, delivery: QueuedDelivery) -> Ended {
        let (webhook_id, message_id) = (delivery.webhook_id, delivery.message_id);
        let store = self.inner.store.clone();
        let found = tokio::task::spawn_blocking(move || read(&store, &delivery)).await;
        let (hook, message) = match found {
            Ok(Ok(Found::Ready(found))) => *found,
            // Made by a task that finished after the dispatcher read the queue.
            Ok(Ok(Found::Done)) => return Ended::Recorded,
            // Deleting an endpoint empties its queue; this only tidies up after a race.
            Ok(Ok(Found::NoEndpoint)) => return self.finish(delivery, None, None).await,
            Ok(Ok(Found::Unreadable(what))) => {
                return self.give_up_unreadable(delivery, what).await;
            }
            Ok(Err(error)) => {
                tracing::error!(%error, webhook_id, "cannot read a webhook delivery");
                return Ended::Unrecorded;
            }
            Err(error) => {
                tracing::error!(%error, webhook_id, "webhook delivery task failed");
                return Ended::Unrecorded;
            }
        };
        let attempt = delivery.state.attempts + 1;
        let outcome = match &message {
            Ok(message) => {
                let id = message_webhook_id(webhook_id, message_id);
                self.post(&hook, &id, (self.inner.encode)(message)).await
            }
            Err(why) => Err((*why).into()),
        };
        let retry_at_ms = if delivered(&outcome) || message.is_err() {
            None
        } else {
            retry_at(&self.inner.config, delivery.state, attempt, now_ms())
        };
        if !delivered(&outcome) {
            self.note_failure(webhook_id, message_id, &outcome, retry_at_ms.is_some());
        }
        let entry = log_entry(delivery, outcome, retry_at_ms);
        self.finish(delivery, Some(entry), retry_at_ms).await
    }

    /// A stored endpoint or message that cannot be decrypted or decoded stays so:
    /// retrying would fail forever, so the delivery ends with the reason in the log.
    async fn give_up_unreadable(&self, delivery: QueuedDelivery, what: &'static str) -> Ended {
        let outcome = Err(format!("gave up: {what} cannot be read"));
        self.note_failure(delivery.webhook_id, delivery.message_id, &outcome, false);
        let entry = log_entry(delivery, outcome, None);
        self.finish(delivery, Some(entry), None).await
    }

    async fn finish(
        &self,
        delivery: QueuedDelivery,
        entry: Option<DeliveryLogV1>,
        retry_at_ms: Option<i64>,
    ) -> Ended {
        match self
            .inner
            .store
            .finish_webhook_delivery(delivery, entry, retry_at_ms)
            .await
        {
            Ok(()) => Ended::Recorded,
            Err(error) => {
                let webhook_id = delivery.webhook_id;
                tracing::error!(%error, webhook_id, "cannot record a webhook attempt");
                Ended::Unrecorded
            }
        }
    }

    /// A failed attempt in the admin's recent errors: ids and the reason, no URL.
    fn note_failure(&self, webhook_id: u64, message_id: u64, outcome: &Outcome, retrying: bool) {
        let reason = match outcome {
            Ok(status) => format!("HTTP {status}"),
            Err(error) => error.clone(),
        };
        let code = if retrying {
            "user_webhook_retrying"
        } else {
            "user_webhook_gave_up"
        };
        self.inner.diagnostics.record_about(
            ErrorSource::Background,
            code,
            format!("user webhook {webhook_id}"),
            format!("user webhook {webhook_id}, message {message_id}: {reason}"),
        );
    }
}

/// How a delivery task ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ended {
    /// The queue row was updated (made, re-queued or removed), or was gone already.
    Recorded,
    /// The row is unchanged and still due: the store could not be read or written.
    Unrecorded,
}

/// What a queued delivery finds in the store.
enum Found {
    /// The endpoint, and the message, or why it is not to be sent (boxed: the other
    /// cases carry nothing).
    Ready(Box<(WebhookView, Result<MessageView, &'static str>)>),
    /// No longer queued as read: made meanwhile.
    Done,
    NoEndpoint,
    /// The endpoint or the message is stored but cannot be opened (names which).
    Unreadable(&'static str),
}

fn read(store: &crate::store::Store, delivery: &QueuedDelivery) -> Result<Found, StoreError> {
    if !store.webhook_delivery_pending(delivery)? {
        return Ok(Found::Done);
    }
    let hook = match store.webhook(delivery.webhook_id) {
        Ok(Some(hook)) => hook,
        Ok(None) => return Ok(Found::NoEndpoint),
        Err(error) => return unreadable(error, "the endpoint"),
    };
    let message = match store.message(delivery.message_id) {
        Ok(Some(message)) => message,
        Ok(None) => {
            let gone = "the message expired or was deleted before it could be delivered";
            return Ok(Found::Ready(Box::new((hook, Err(gone)))));
        }
        Err(error) => return unreadable(error, "the message"),
    };
    // A retry hours later goes out only while the owner could still read the message
    // (see `may_deliver_now`): a revoked lease or a disabled account stops it.
    if !store.may_deliver_now(hook.owner, message.inbox)? {
        let withheld = "gave up: the owner can no longer read the message (its lease ended, or the account was disabled)";
        return Ok(Found::Ready(Box::new((hook, Err(withheld)))));
    }
    Ok(Found::Ready(Box::new((hook, Ok(message)))))
}

/// A record that cannot be decrypted or decoded is [`Found::Unreadable`]; other store
/// errors (I/O) may pass, so they stay errors and the delivery is tried again later.
fn unreadable(error: StoreError, what: &'static str) -> Result<Found, StoreError> {
    match error {
        StoreError::Codec(_) | StoreError::Crypto(_) => {
            tracing::error!(%error, "{what} of a webhook delivery cannot be opened");
            Ok(Found::Unreadable(what))
        }
        other => Err(other),
    }
}

/// The delivery log's entry for an attempt at `delivery`.
fn log_entry(
    delivery: QueuedDelivery,
    outcome: Outcome,
    retry_at_ms: Option<i64>,
) -> DeliveryLogV1 {
    DeliveryLogV1 {
        message_id: Some(delivery.message_id),
        at_ms: now_ms(),
        attempt: delivery.state.attempts + 1,
        status: outcome.as_ref().ok().copied(),
        error: outcome.err().map(clipped),
        next_retry_ms: retry_at_ms,
    }
}

/// When to try again after failed attempt number `attempt`, or `None` once the next
/// try would fall after the give-up time.
fn retry_at(
    config: &HooksConfig,
    state: QueuedDeliveryV1,
    attempt: u32,
    now_ms: i64,
) -> Option<i64> {
    let wait = backoff::delay(config.backoff, config.backoff_max, attempt - 1);
    let next = now_ms.saturating_add(i64::try_from(wait.as_millis()).unwrap_or(i64::MAX));
    let give_up = i64::try_from(config.give_up.as_millis()).unwrap_or(i64::MAX);
    (next.saturating_sub(state.queued_at_ms) <= give_up).then_some(next)
}

/// A transport error as the delivery log shows it: what failed and its root cause
/// (refused connection, certificate, SSRF guard), never the URL (`reqwest::Error`'s own
/// text includes it, and URLs often carry tokens).
fn describe(error: reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "could not connect"
    } else {
        "request failed"
    };
    let mut root = None;
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        root = Some(cause);
        source = cause.source();
    }
    match root {
        Some(cause) => format!("{kind}: {cause}"),
        None => kind.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn retries_back_off_until_the_give_up_time() {
        let config = HooksConfig {
            allow_private: false,
            max_per_user: 5,
            timeout: Duration::from_secs(1),
            backoff: Duration::from_secs(5),
            backoff_max: Duration::from_secs(60),
            give_up: Duration::from_secs(3600),
        };
        let now = now_ms();
        let fresh = QueuedDeliveryV1 {
            attempts: 0,
            queued_at_ms: now,
        };
        // 5 s ± the backoff's jitter, then twice as long.
        let first = retry_at(&config, fresh, 1, now).unwrap() - now;
        assert!((4_000..=6_000).contains(&first), "{first}");
        let second = retry_at(&config, fresh, 2, now).unwrap() - now;
        assert!((8_000..=12_000).contains(&second), "{second}");
        // Capped at backoff_max.
        let late = retry_at(&config, fresh, 20, now).unwrap() - now;
        assert!(late <= 72_000, "{late}");
        // Nothing after the give-up time.
        let old = QueuedDeliveryV1 {
            queued_at_ms: now - 3_590_000,
            ..fresh
        };
        assert_eq!(retry_at(&config, old, 7, now), None);
    }

    #[test]
    fn long_errors_are_cut_on_a_character_boundary() {
        assert_eq!(clipped("refused".into()), "refused");
        let exact = "é".repeat(MAX_ERROR_CHARS);
        assert_eq!(clipped(exact.clone()), exact);
        let long = clipped("é".repeat(MAX_ERROR_CHARS + 5));
        assert_eq!(long.chars().count(), MAX_ERROR_CHARS + 1);
        assert!(long.ends_with("é…"));
    }

    #[test]
    fn only_2xx_counts_as_delivered() {
        assert!(delivered(&Ok(200)));
        assert!(delivered(&Ok(204)));
        assert!(!delivered(&Ok(301)));
        assert!(!delivered(&Ok(500)));
        assert!(!delivered(&Err("timed out".into())));
    }
}
