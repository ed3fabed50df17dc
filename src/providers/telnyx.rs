//! Telnyx messaging webhooks (API v2), signed with Ed25519 over `"{timestamp}|{body}"`.
//!
//! Telnyx holds the private key; the account's public key (Mission Control → Keys & Credentials
//! → Public Key) is all we need, and the URL is not signed, so proxies cannot break it.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::Value;

use super::fields::{header, json_required, json_str, parse_json, rfc3339_ms};
use super::replay::{TOLERANCE_SECS, check_window, parse_unix};
use super::{WebhookError, WebhookEvent, WebhookRequest};
use crate::domain::{DeliveryReport, DeliveryStatus, InboundSms};

const SIGNATURE_HEADER: &str = "telnyx-signature-ed25519";
const TIMESTAMP_HEADER: &str = "telnyx-timestamp";
const PUBLIC_KEY_BYTES: usize = 32;

#[derive(Debug, Clone)]
pub struct TelnyxAdapter {
    public_key: [u8; PUBLIC_KEY_BYTES],
}

impl TelnyxAdapter {
    /// `public_key` is the base64 Ed25519 public key shown in the Telnyx portal.
    pub fn new(public_key: &str) -> Result<Self, String> {
        let bytes = BASE64
            .decode(public_key.trim())
            .map_err(|_| "`public_key` is not base64".to_owned())?;
        let public_key = <[u8; PUBLIC_KEY_BYTES]>::try_from(bytes.as_slice()).map_err(|_| {
            format!("`public_key` must decode to {PUBLIC_KEY_BYTES} bytes (an Ed25519 public key)")
        })?;
        Ok(Self { public_key })
    }

    pub fn verify_and_parse(
        &self,
        request: &WebhookRequest<'_>,
    ) -> Result<WebhookEvent, WebhookError> {
        let signature = header(request.headers, SIGNATURE_HEADER)?;
        let timestamp_text = header(request.headers, TIMESTAMP_HEADER)?;
        let timestamp = parse_unix(TIMESTAMP_HEADER, timestamp_text)?;
        check_window(request.now_unix, timestamp, TOLERANCE_SECS)?;
        let signature = BASE64
            .decode(signature.trim())
            .map_err(|_| WebhookError::BadSignature)?;
        // The signed text uses the header exactly as sent, not our re-rendering of it.
        let mut signed = Vec::with_capacity(timestamp_text.len() + 1 + request.body.len());
        signed.extend_from_slice(timestamp_text.as_bytes());
        signed.push(b'|');
        signed.extend_from_slice(request.body);
        let key = aws_lc_rs::signature::UnparsedPublicKey::new(
            &aws_lc_rs::signature::ED25519,
            &self.public_key,
        );
        key.verify(&signed, &signature)
            .map_err(|_| WebhookError::BadSignature)?;

        parse_event(&parse_json(request.body)?)
    }
}

fn parse_event(envelope: &Value) -> Result<WebhookEvent, WebhookError> {
    let data = |path: &[&str]| {
        let mut full = vec!["data"];
        full.extend_from_slice(path);
        json_str(envelope, &full).map(|value| value.map(|v| v.into_owned()))
    };
    let event_type = json_required(envelope, &["data", "event_type"])?;
    match &*event_type {
        "message.received" => {
            if data(&["payload", "direction"])?.is_some_and(|d| d != "inbound") {
                return Ok(WebhookEvent::Ignored);
            }
            let id = json_required(envelope, &["data", "payload", "id"])?;
            let from = json_required(envelope, &["data", "payload", "from", "phone_number"])?;
            let to = json_required(envelope, &["data", "payload", "to", "0", "phone_number"])?;
            // MMS may carry only media; the text is then empty.
            let text = data(&["payload", "text"])?.unwrap_or_default();
            let received_at = match data(&["payload", "received_at"])? {
                Some(at) => Some(at),
                None => data(&["occurred_at"])?,
            };
            let received_at_ms = received_at
                .map(|at| rfc3339_ms("received_at", &at))
                .transpose()?;
            Ok(InboundSms::new(&id, &from, &to, &text, received_at_ms)?.into())
        }
        "message.finalized" => {
            let id = json_required(envelope, &["data", "payload", "id"])?;
            let status = data(&["payload", "to", "0", "status"])?.unwrap_or_default();
            let error_code = data(&["payload", "errors", "0", "code"])?;
            let at_ms = data(&["occurred_at"])?
                .map(|at| rfc3339_ms("occurred_at", &at))
                .transpose()?;
            Ok(DeliveryReport::new(&id, status_of(&status), error_code.as_deref(), at_ms)?.into())
        }
        // `message.sent` repeats what `message.finalized` will say; other event types
        // (calls, number orders) are not ours to handle.
        _ => Ok(WebhookEvent::Ignored),
    }
}

/// `payload.to[].status`.
fn status_of(status: &str) -> DeliveryStatus {
    match status {
        "queued" => DeliveryStatus::Queued,
        "sending" | "sent" => DeliveryStatus::Sent,
        "delivered" => DeliveryStatus::Delivered,
        "sending_failed" => DeliveryStatus::Failed,
        "delivery_failed" => DeliveryStatus::Undelivered,
        // "delivery_unconfirmed": the carrier never said either way.
        _ => DeliveryStatus::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
    use http::{HeaderMap, HeaderValue};

    const SEED_HEX: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
    const PUBLIC_KEY: &str = "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";
    const TIMESTAMP: i64 = 1_704_067_200;
    const BODY: &str = r#"{"data":{"event_type":"message.received","id":"b301ed3f-1490-491f-995f-6e64e69674d4","occurred_at":"2024-01-01T00:00:00.000+00:00","payload":{"id":"84cca175-9755-4859-b67f-4730d7f58aa3","direction":"inbound","from":{"phone_number":"+13125550001"},"to":[{"phone_number":"+17735550002"}],"text":"Hello","encoding":"GSM-7","parts":1,"type":"SMS"},"record_type":"event"},"meta":{"attempt":1,"delivered_to":"https://example.com/webhooks"}}"#;
    const SIGNATURE: &str =
        "AZr4CWHZu5SnlaTy3AZzYBJ29LkxIHycDR/kg6OE5Z4EvJCje0Y1fqOQidp3U25OreWhiTt/EUI6l6xN9d5fBw==";

    fn key_pair() -> Ed25519KeyPair {
        Ed25519KeyPair::from_seed_unchecked(&hex::decode(SEED_HEX).unwrap()).unwrap()
    }

    fn sign(timestamp: i64, body: &str) -> String {
        let message = format!("{timestamp}|{body}");
        BASE64.encode(key_pair().sign(message.as_bytes()).as_ref())
    }

    fn headers(signature: &str, timestamp: i64) -> HeaderMap {
        let mut map = HeaderMap::new();
        map.insert(SIGNATURE_HEADER, HeaderValue::from_str(signature).unwrap());
        map.insert(TIMESTAMP_HEADER, HeaderValue::from(timestamp));
        map
    }

    fn verify(headers: &HeaderMap, body: &str, now: i64) -> Result<WebhookEvent, WebhookError> {
        TelnyxAdapter::new(PUBLIC_KEY)
            .unwrap()
            .verify_and_parse(&WebhookRequest {
                public_url: "https://burnbox.example.org/webhooks/telnyx",
                headers,
                body: body.as_bytes(),
                now_unix: now,
                spent: Default::default(),
            })
    }

    #[test]
    fn vector_public_key_from_rfc8032_seed() {
        assert_eq!(BASE64.encode(key_pair().public_key().as_ref()), PUBLIC_KEY);
    }

    #[test]
    fn vector_signature_is_reproduced_and_verifies() {
        assert_eq!(sign(TIMESTAMP, BODY), SIGNATURE);
        let WebhookEvent::Sms(sms) =
            verify(&headers(SIGNATURE, TIMESTAMP), BODY, TIMESTAMP).unwrap()
        else {
            panic!("an SMS")
        };
        assert_eq!(
            sms.provider_message_id.as_str(),
            "84cca175-9755-4859-b67f-4730d7f58aa3"
        );
        assert_eq!(sms.from.as_str(), "+13125550001");
        assert_eq!(sms.to.as_str(), "+17735550002");
        assert_eq!(sms.text, "Hello");
        assert_eq!(sms.received_at_ms, Some(TIMESTAMP * 1000));
    }

    #[test]
    fn forged_signature_is_refused() {
        let tampered = BODY.replace("Hello", "Hellp");
        assert_eq!(
            verify(&headers(SIGNATURE, TIMESTAMP), &tampered, TIMESTAMP).unwrap_err(),
            WebhookError::BadSignature
        );
        let other = Ed25519KeyPair::from_seed_unchecked(&[7u8; 32]).unwrap();
        let forged = BASE64.encode(
            other
                .sign(format!("{TIMESTAMP}|{BODY}").as_bytes())
                .as_ref(),
        );
        assert_eq!(
            verify(&headers(&forged, TIMESTAMP), BODY, TIMESTAMP).unwrap_err(),
            WebhookError::BadSignature
        );
        // The timestamp is signed too.
        assert_eq!(
            verify(&headers(SIGNATURE, TIMESTAMP + 1), BODY, TIMESTAMP).unwrap_err(),
            WebhookError::BadSignature
        );
        assert_eq!(
            verify(&headers("not base64!", TIMESTAMP), BODY, TIMESTAMP).unwrap_err(),
            WebhookError::BadSignature
        );
    }

    #[test]
    fn stale_timestamp_is_refused() {
        for now in [TIMESTAMP + 301, TIMESTAMP - 301] {
            assert_eq!(
                verify(&headers(SIGNATURE, TIMESTAMP), BODY, now).unwrap_err(),
                WebhookError::Stale
            );
        }
        assert!(verify(&headers(SIGNATURE, TIMESTAMP), BODY, TIMESTAMP + 300).is_ok());
    }

    #[test]
    fn missing_headers_are_unsigned() {
        let mut map = headers(SIGNATURE, TIMESTAMP);
        map.remove(SIGNATURE_HEADER);
        assert_eq!(
            verify(&map, BODY, TIMESTAMP).unwrap_err(),
            WebhookError::Unsigned(SIGNATURE_HEADER)
        );
    }

    #[test]
    fn finalized_is_a_report_and_sent_is_ignored() {
        let finalized = r#"{"data":{"event_type":"message.finalized","id":"e1","occurred_at":"2024-01-01T00:00:05.000+00:00","payload":{"id":"m1","direction":"outbound","to":[{"phone_number":"+13125550001","status":"delivery_failed"}],"errors":[{"code":"40002","title":"Blocked"}]}}}"#;
        let event = verify(
            &headers(&sign(TIMESTAMP, finalized), TIMESTAMP),
            finalized,
            TIMESTAMP,
        );
        let WebhookEvent::Report(report) = event.unwrap() else {
            panic!("a report")
        };
        assert_eq!(report.provider_message_id.as_str(), "m1");
        assert_eq!(report.status, DeliveryStatus::Undelivered);
        assert_eq!(report.error_code.as_deref(), Some("40002"));
        assert_eq!(report.at_ms, Some(TIMESTAMP * 1000 + 5000));

        let sent = r#"{"data":{"event_type":"message.sent","id":"e2","payload":{"id":"m1"}}}"#;
        let event = verify(&headers(&sign(TIMESTAMP, sent), TIMESTAMP), sent, TIMESTAMP);
        assert!(matches!(event.unwrap(), WebhookEvent::Ignored));
    }

    #[test]
    fn statuses_map() {
        let cases = [
            ("queued", DeliveryStatus::Queued),
            ("sending", DeliveryStatus::Sent),
            ("sent", DeliveryStatus::Sent),
            ("delivered", DeliveryStatus::Delivered),
            ("sending_failed", DeliveryStatus::Failed),
            ("delivery_failed", DeliveryStatus::Undelivered),
            ("delivery_unconfirmed", DeliveryStatus::Unknown),
            ("something_new", DeliveryStatus::Unknown),
        ];
        for (text, status) in cases {
            assert_eq!(status_of(text), status, "{text}");
        }
    }

    #[test]
    fn bad_public_keys_are_refused() {
        assert!(TelnyxAdapter::new("not base64!").is_err());
        assert!(TelnyxAdapter::new("AAAA").is_err());
    }
}
