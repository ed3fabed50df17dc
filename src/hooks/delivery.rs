//! One signed POST to one endpoint, and what it means for the queue: delivered (2xx),
//! retried later with exponential backoff, or given up after `webhooks_give_up`.

use std::net::IpAddr;

use bytes::Bytes;
use reqwest::header::CONTENT_TYPE;

use super::{Hooks, ssrf};
use crate::config::HooksConfig;
use crate::outbound::backoff;
use crate::providers::generic;
use crate::store::records::QueuedDeliveryV1;
use crate::store::{DeliveryLogV1, QueuedDelivery, WebhookView, now_ms};

/// The receiver's status code, or why there was none.
pub type Outcome = Result<u16, String>;

/// Whether the receiver took it: any 2xx.
pub fn delivered(outcome: &Outcome) -> bool {
    matches!(outcome, Ok(status) if (200..300).contains(status))
}

/// The `webhook-id` of a message for an endpoint: the same on every retry, so receivers
/// can drop repeats.
pub fn message_webhook_id(webhook_id: u64, message_id: u64) -> String {
    format!("msg_{webhook_id}_{message_id}")
}

impl Hooks {
    /// Signs and POSTs `body` to the endpoint.
    pub(super) async fn post(&self, hook: &WebhookView, id: &str, body: Bytes) -> Outcome {
        let url = reqwest::Url::parse(&hook.url).map_err(|_| "the URL is not valid".to_owned())?;
        // Literal IPs never reach the guarded resolver.
        let literal = match url.host() {
            Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
            _ => None,
        };
        if let Some(ip) = literal {
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

    /// Makes one queued delivery and records it.
    pub(super) async fn deliver(&self, queued: QueuedDelivery) {
        let store = &self.inner.store;
        let (webhook_id, message_id) = (queued.webhook_id, queued.message_id);
        let hook = match store.webhook(webhook_id) {
            // Deleting an endpoint removes its queue too.
            Ok(None) => return,
            Ok(Some(hook)) => hook,
            Err(error) => {
                tracing::error!(%error, webhook_id, "cannot read a webhook");
                return;
            }
        };
        let attempt = queued.state.attempts + 1;
        let outcome = match store.message(message_id) {
            Ok(Some(message)) => {
                let body = (self.inner.encode)(&message);
                self.post(&hook, &message_webhook_id(webhook_id, message_id), body)
                    .await
            }
            // Expired or deleted before it could be delivered: nothing left to send.
            Ok(None) => Err("the message was deleted before delivery".to_owned()),
            Err(error) => Err(format!("the message could not be read: {error}")),
        };
        let gone = matches!(store.message(message_id), Ok(None));
        let next = if delivered(&outcome) || gone {
            None
        } else {
            next_attempt(&self.inner.config, queued.state, attempt)
        };
        if !delivered(&outcome) {
            let detail = match &outcome {
                Ok(status) => format!("message {message_id}: HTTP {status}"),
                Err(error) => format!("message {message_id}: {error}"),
            };
            let code = if next.is_some() {
                "user_webhook_retrying"
            } else {
                "user_webhook_gave_up"
            };
            self.inner.diagnostics.record_about(
                crate::diagnostics::ErrorSource::Background,
                code,
                format!("user webhook {webhook_id}"),
                detail,
            );
        }
        let entry = DeliveryLogV1 {
            message_id: Some(message_id),
            at_ms: now_ms(),
            attempt,
            status: outcome.as_ref().ok().copied(),
            error: outcome.err(),
            next_retry_ms: next.map(|state| state.next_at_ms),
        };
        if let Err(error) = store.record_webhook_attempt(webhook_id, entry, next).await {
            tracing::error!(%error, webhook_id, "cannot record a webhook attempt");
        }
    }
}

/// The queue state after a failed attempt, or `None` when it is time to give up.
fn next_attempt(
    config: &HooksConfig,
    state: QueuedDeliveryV1,
    attempts: u32,
) -> Option<QueuedDeliveryV1> {
    let wait = backoff::delay(config.backoff, config.backoff_max, attempts - 1);
    let next_at_ms = now_ms().saturating_add(i64::try_from(wait.as_millis()).unwrap_or(i64::MAX));
    let give_up_ms = i64::try_from(config.give_up.as_millis()).unwrap_or(i64::MAX);
    (next_at_ms.saturating_sub(state.queued_at_ms) <= give_up_ms).then_some(QueuedDeliveryV1 {
        attempts,
        next_at_ms,
        queued_at_ms: state.queued_at_ms,
    })
}

/// A transport error as the delivery log shows it: its causes, without the URL (which
/// may carry a token and is stored sealed).
fn describe(error: reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "could not connect"
    } else {
        "request failed"
    };
    let mut text = kind.to_owned();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
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
        let fresh = QueuedDeliveryV1 {
            attempts: 0,
            next_at_ms: now_ms(),
            queued_at_ms: now_ms(),
        };
        let next = next_attempt(&config, fresh, 1).unwrap();
        let wait = next.next_at_ms - now_ms();
        assert!((3_500..=6_500).contains(&wait), "{wait}");
        let old = QueuedDeliveryV1 {
            queued_at_ms: now_ms() - 3_600_000,
            ..fresh
        };
        assert_eq!(next_attempt(&config, old, 7), None);
    }
}
