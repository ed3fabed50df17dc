//! One signed POST to one endpoint, and what it means for the queue: delivered (2xx),
//! retried later with exponential backoff, or given up `webhooks_give_up` after the
//! message was queued.

use bytes::Bytes;
use reqwest::header::CONTENT_TYPE;

use super::{Hooks, ssrf};
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
        if let Some(ip) = ssrf::literal_ip(&url) {
            ssrf::check_literal(ip, self.inner.config.allow_private)
                .map_err(|refused| refused.to_string())?;
        }
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
            error: outcome.err(),
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

    /// Makes one queued delivery and records it.
    pub(super) async fn deliver(&self, delivery: QueuedDelivery) {
        let (webhook_id, message_id) = (delivery.webhook_id, delivery.message_id);
        let store = self.inner.store.clone();
        let found = tokio::task::spawn_blocking(move || read(&store, &delivery)).await;
        let (hook, message) = match found {
            Ok(Ok(Found::Ready(found))) => *found,
            // Made by a task that finished after the dispatcher read the queue.
            Ok(Ok(Found::Done)) => return,
            // Deleting an endpoint empties its queue; this only tidies up after a race.
            Ok(Ok(Found::NoEndpoint)) => {
                self.finish(delivery, None, None).await;
                return;
            }
            Ok(Err(error)) => {
                tracing::error!(%error, webhook_id, "cannot read a webhook delivery");
                return;
            }
            Err(error) => {
                tracing::error!(%error, webhook_id, "webhook delivery task failed");
                return;
            }
        };
        let attempt = delivery.state.attempts + 1;
        let outcome = match &message {
            Some(message) => {
                let id = message_webhook_id(webhook_id, message_id);
                self.post(&hook, &id, (self.inner.encode)(message)).await
            }
            None => Err("the message expired or was deleted before it could be delivered".into()),
        };
        let retry_at_ms = if delivered(&outcome) || message.is_none() {
            None
        } else {
            retry_at(&self.inner.config, delivery.state, attempt, now_ms())
        };
        if !delivered(&outcome) {
            self.note_failure(webhook_id, message_id, &outcome, retry_at_ms.is_some());
        }
        let entry = DeliveryLogV1 {
            message_id: Some(message_id),
            at_ms: now_ms(),
            attempt,
            status: outcome.as_ref().ok().copied(),
            error: outcome.err(),
            next_retry_ms: retry_at_ms,
        };
        self.finish(delivery, Some(entry), retry_at_ms).await;
    }

    async fn finish(
        &self,
        delivery: QueuedDelivery,
        entry: Option<DeliveryLogV1>,
        retry_at_ms: Option<i64>,
    ) {
        if let Err(error) = self
            .inner
            .store
            .finish_webhook_delivery(delivery, entry, retry_at_ms)
            .await
        {
            let webhook_id = delivery.webhook_id;
            tracing::error!(%error, webhook_id, "cannot record a webhook attempt");
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

/// What a queued delivery finds in the store.
enum Found {
    /// The endpoint, and the message unless it expired or was deleted (boxed: the
    /// other cases carry nothing).
    Ready(Box<(WebhookView, Option<MessageView>)>),
    /// No longer queued as read: made meanwhile.
    Done,
    NoEndpoint,
}

fn read(store: &crate::store::Store, delivery: &QueuedDelivery) -> Result<Found, StoreError> {
    if !store.webhook_delivery_pending(delivery)? {
        return Ok(Found::Done);
    }
    let Some(hook) = store.webhook(delivery.webhook_id)? else {
        return Ok(Found::NoEndpoint);
    };
    let message = store.message(delivery.message_id)?;
    Ok(Found::Ready(Box::new((hook, message))))
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
    fn only_2xx_counts_as_delivered() {
        assert!(delivered(&Ok(200)));
        assert!(delivered(&Ok(204)));
        assert!(!delivered(&Ok(301)));
        assert!(!delivered(&Ok(500)));
        assert!(!delivered(&Err("timed out".into())));
    }
}
