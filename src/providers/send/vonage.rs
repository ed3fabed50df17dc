//! Vonage SMS API: `POST {base}/sms/json`, form-encoded `api_key`, `api_secret`, `from`,
//! `to` (digits, no `+`), `text` (and `callback` for delivery receipts). The answer is
//! always HTTP 200: each part of the message has its own `status` ("0" is success) and
//! `message-id` in `messages[]`.

use reqwest::{Client, RequestBuilder, StatusCode};

use super::{Message, SendError, Sent, digits, http_failure, json, message_id, no_id, text_of};
use crate::domain::Secret;

pub(super) fn send(
    http: &Client,
    base: &str,
    api_key: &Secret,
    api_secret: &Secret,
    message: &Message<'_>,
) -> RequestBuilder {
    let mut form = vec![
        ("api_key", api_key.expose()),
        ("api_secret", api_secret.expose()),
        ("from", digits(message.from)),
        ("to", digits(message.to)),
        ("text", message.text),
    ];
    // Vonage picks GSM-7 or needs to be told the text is Unicode; "unicode" is safe for
    // both (GSM text just uses more segments), guessing wrong garbles the message.
    if !message.text.is_ascii() {
        form.push(("type", "unicode"));
    }
    if let Some(callback) = message.status_callback {
        form.push(("callback", callback));
    }
    http.post(format!("{base}/sms/json")).form(&form)
}

/// Message statuses worth retrying: 1 throttled, 5 internal error, 4 invalid
/// credentials (the account's problem, not the message's).
const RETRYABLE_STATUSES: [&str; 3] = ["1", "4", "5"];

pub(super) fn sent(status: StatusCode, body: &[u8]) -> Result<Sent, SendError> {
    if let Some(error) = http_failure(status, None) {
        return Err(error);
    }
    let answer = json(body);
    let parts = answer["messages"].as_array().cloned().unwrap_or_default();
    let mut ids = Vec::with_capacity(parts.len());
    let mut refused = None;
    for part in &parts {
        let part_status = text_of(&part["status"]).unwrap_or_default();
        if part_status == "0" {
            ids.push(message_id(part["message-id"].as_str(), status)?);
        } else {
            refused.get_or_insert(part_status);
        }
    }
    if let Some(part_status) = refused {
        if ids.is_empty() {
            let detail = format!("Vonage status {part_status}");
            return Err(if RETRYABLE_STATUSES.contains(&part_status.as_str()) {
                SendError::Retryable(detail)
            } else {
                SendError::Permanent(detail)
            });
        }
        // Some parts went out (and are charged): sending the whole text again would
        // deliver those twice, so the message counts as sent, short of a part.
        tracing::warn!(
            accepted = ids.len(),
            parts = parts.len(),
            status = %part_status,
            "Vonage took only some parts of a long message"
        );
    }
    let mut ids = ids.into_iter();
    let Some(first) = ids.next() else {
        return Err(no_id(status));
    };
    Ok(Sent {
        message_id: first,
        part_ids: ids.collect(),
    })
}

/// The account balance: `GET {base}/account/get-balance?api_key=…&api_secret=…`.
pub(super) fn probe(
    http: &Client,
    base: &str,
    api_key: &Secret,
    api_secret: &Secret,
) -> RequestBuilder {
    http.get(format!("{base}/account/get-balance")).query(&[
        ("api_key", api_key.expose()),
        ("api_secret", api_secret.expose()),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_part_and_sorts_statuses() {
        let ok = br#"{"message-count": "2", "messages": [
            {"to": "447700900000", "message-id": "0A01", "status": "0"},
            {"to": "447700900000", "message-id": "0A02", "status": "0"}]}"#;
        let sent = sent(StatusCode::OK, ok).unwrap();
        assert_eq!(sent.message_id.as_str(), "0A01");
        assert_eq!(sent.part_ids.len(), 1);
        assert_eq!(sent.part_ids[0].as_str(), "0A02");
        let throttled =
            br#"{"message-count": "1", "messages": [{"status": "1", "error-text": "Throttled"}]}"#;
        assert!(
            super::sent(StatusCode::OK, throttled)
                .unwrap_err()
                .is_retryable()
        );
        // One part out, one throttled: out is out, the text is not sent again.
        let partly = br#"{"message-count": "2", "messages": [
            {"to": "447700900000", "message-id": "0A03", "status": "0"},
            {"status": "1", "error-text": "Throttled"}]}"#;
        let sent_partly = super::sent(StatusCode::OK, partly).unwrap();
        assert_eq!(sent_partly.message_id.as_str(), "0A03");
        assert!(sent_partly.part_ids.is_empty());
        let invalid = br#"{"message-count": "1", "messages": [{"status": "3", "error-text": "Invalid to +44"}]}"#;
        assert_eq!(
            super::sent(StatusCode::OK, invalid).unwrap_err(),
            SendError::Permanent("Vonage status 3".into())
        );
        assert!(
            super::sent(StatusCode::OK, b"{}")
                .unwrap_err()
                .is_retryable()
        );
    }
}
