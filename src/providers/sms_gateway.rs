//! SMS Gateway for Android (capcom6): the phone itself posts each received SMS, signed
//! with `X-Signature` = hex HMAC-SHA256 of `body + X-Timestamp` under the app's signing key.
//!
//! The payload's `messageId` is derived from the content, so two identical texts share it:
//! the envelope `id` (stable across the app's retries) is the message's identity here.

use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;
use sha2::Sha256;

use super::fields::{header, json_required, json_str, parse_json, rfc3339_ms};
use super::replay::{TOLERANCE_SECS, check_window, parse_unix};
use super::{WebhookError, WebhookEvent, WebhookRequest};
use crate::domain::{DeliveryReport, DeliveryStatus, InboundSms, PhoneNumber, Secret};

const SIGNATURE_HEADER: &str = "x-signature";
const TIMESTAMP_HEADER: &str = "x-timestamp";

#[derive(Debug, Clone)]
pub struct SmsGatewayAdapter {
    signing_key: Secret,
    /// The phone's own number, for messages whose `recipient` the phone does not know
    /// (not every SIM reports its number).
    own_number: Option<PhoneNumber>,
}

impl SmsGatewayAdapter {
    /// `signing_key` is Settings → Webhooks → Signing Key in the app.
    pub fn new(signing_key: Secret, own_number: Option<PhoneNumber>) -> Self {
        Self {
            signing_key,
            own_number,
        }
    }

    pub fn verify_and_parse(
        &self,
        request: &WebhookRequest<'_>,
    ) -> Result<WebhookEvent, WebhookError> {
        let signature = header(request.headers, SIGNATURE_HEADER)?;
        let timestamp_text = header(request.headers, TIMESTAMP_HEADER)?;
        let provided = hex::decode(signature.trim()).map_err(|_| WebhookError::BadSignature)?;
        let Some(mac) = mac(self.signing_key.expose(), request.body, timestamp_text) else {
            return Err(WebhookError::BadSignature);
        };
        mac.verify_slice(&provided)
            .map_err(|_| WebhookError::BadSignature)?;
        // The phone's clock signs: the 5-minute window also absorbs its skew.
        let timestamp = parse_unix(TIMESTAMP_HEADER, timestamp_text)?;
        check_window(request.now_unix, timestamp, TOLERANCE_SECS)?;
        self.parse(&parse_json(request.body)?)
    }

    fn parse(&self, envelope: &Value) -> Result<WebhookEvent, WebhookError> {
        let event = json_required(envelope, &["event"])?;
        let payload = |name: &str| json_str(envelope, &["payload", name]);
        let status = match &*event {
            "sms:received" => {
                let id = json_required(envelope, &["id"])?;
                let from = json_required(envelope, &["payload", "sender"])?;
                let to = match payload("recipient")? {
                    Some(to) => to.into_owned(),
                    None => self
                        .own_number
                        .as_ref()
                        .map(|number| number.as_str().to_owned())
                        .ok_or_else(|| super::fields::missing("payload.recipient"))?,
                };
                let text = json_required(envelope, &["payload", "message"])?;
                let received_at_ms = payload("receivedAt")?
                    .map(|at| rfc3339_ms("receivedAt", &at))
                    .transpose()?;
                return Ok(InboundSms::new(&id, &from, &to, &text, received_at_ms)?.into());
            }
            "sms:sent" => DeliveryStatus::Sent,
            "sms:delivered" => DeliveryStatus::Delivered,
            "sms:failed" | "sms:cancelled" => DeliveryStatus::Failed,
            // sms:data-received (binary), system:ping and future events.
            _ => return Ok(WebhookEvent::Ignored),
        };
        let id = json_required(envelope, &["payload", "messageId"])?;
        let code = payload("reason")?;
        let at = ["deliveredAt", "sentAt", "failedAt"]
            .iter()
            .find_map(|name| payload(name).ok().flatten());
        let at_ms = at.and_then(|at| rfc3339_ms("at", &at).ok());
        Ok(DeliveryReport::new(&id, status, code.as_deref(), at_ms)?.into())
    }
}

/// The lowercase hex `X-Signature` the app sends (for tests and tools).
pub fn sign(signing_key: &str, body: &[u8], timestamp: &str) -> String {
    mac(signing_key, body, timestamp)
        .map(|mac| hex::encode(mac.finalize().into_bytes()))
        .unwrap_or_default()
}

fn mac(signing_key: &str, body: &[u8], timestamp: &str) -> Option<Hmac<Sha256>> {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(signing_key.as_bytes()).ok()?;
    mac.update(body);
    mac.update(timestamp.as_bytes());
    Some(mac)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderMap, HeaderValue};

    const KEY: &str = "abcd1234";
    const TIMESTAMP: i64 = 1_719_046_000;
    const BODY: &str = r#"{"deviceId":"ffffffffceb0b1db0000018e937c815b","event":"sms:received","id":"Ey6ECgOkVVFjz3CL48B8C","payload":{"messageId":"abc123","message":"Android is always a sweet treat!","sender":"6505551212","recipient":"+1234567890","simNumber":1,"receivedAt":"2024-06-22T15:46:11.000+07:00"},"webhookId":"LreFUt-Z3sSq0JufY9uWB"}"#;
    const SIGNATURE: &str = "80a54ffadc9a044d5f33843e77faeb81c814896a6fee3ff88bf9d53ab470a857";

    fn headers(signature: &str, timestamp: i64) -> HeaderMap {
        let mut map = HeaderMap::new();
        map.insert(SIGNATURE_HEADER, HeaderValue::from_str(signature).unwrap());
        map.insert(TIMESTAMP_HEADER, HeaderValue::from(timestamp));
        map
    }

    fn verify_with(
        adapter: &SmsGatewayAdapter,
        headers: &HeaderMap,
        body: &str,
        now: i64,
    ) -> Result<WebhookEvent, WebhookError> {
        adapter.verify_and_parse(&WebhookRequest {
            public_url: "http://192.168.1.10:8080/webhooks/phone",
            headers,
            body: body.as_bytes(),
            now_unix: now,
            spent: Default::default(),
        })
    }

    fn adapter() -> SmsGatewayAdapter {
        SmsGatewayAdapter::new(Secret::new(KEY), None)
    }

    fn signed(body: &str) -> HeaderMap {
        headers(
            &sign(KEY, body.as_bytes(), &TIMESTAMP.to_string()),
            TIMESTAMP,
        )
    }

    #[test]
    fn vector_signature() {
        assert_eq!(sign(KEY, BODY.as_bytes(), "1719046000"), SIGNATURE);
    }

    #[test]
    fn vector_verifies_and_dedupes_on_the_envelope_id() {
        let event =
            verify_with(&adapter(), &headers(SIGNATURE, TIMESTAMP), BODY, TIMESTAMP).unwrap();
        let WebhookEvent::Sms(sms) = event else {
            panic!("an SMS")
        };
        assert_eq!(sms.provider_message_id.as_str(), "Ey6ECgOkVVFjz3CL48B8C");
        assert_eq!(sms.from.as_str(), "6505551212");
        assert_eq!(sms.to.as_str(), "+1234567890");
        assert_eq!(sms.text, "Android is always a sweet treat!");
        // 15:46:11 at +07:00.
        assert_eq!(sms.received_at_ms, Some(1_719_045_971_000));
    }

    #[test]
    fn forged_signature_is_refused() {
        let tampered = BODY.replace("sweet", "sour!");
        assert_eq!(
            verify_with(
                &adapter(),
                &headers(SIGNATURE, TIMESTAMP),
                &tampered,
                TIMESTAMP
            )
            .unwrap_err(),
            WebhookError::BadSignature
        );
        let other = SmsGatewayAdapter::new(Secret::new("zzzz9999"), None);
        assert_eq!(
            verify_with(&other, &headers(SIGNATURE, TIMESTAMP), BODY, TIMESTAMP).unwrap_err(),
            WebhookError::BadSignature
        );
        // The timestamp is signed.
        assert_eq!(
            verify_with(
                &adapter(),
                &headers(SIGNATURE, TIMESTAMP + 1),
                BODY,
                TIMESTAMP
            )
            .unwrap_err(),
            WebhookError::BadSignature
        );
    }

    #[test]
    fn stale_timestamp_is_refused() {
        for now in [TIMESTAMP + 301, TIMESTAMP - 301] {
            assert_eq!(
                verify_with(&adapter(), &headers(SIGNATURE, TIMESTAMP), BODY, now).unwrap_err(),
                WebhookError::Stale
            );
        }
    }

    #[test]
    fn unknown_recipient_falls_back_to_the_phone_number() {
        let body = BODY.replace(r#""recipient":"+1234567890""#, r#""recipient":null"#);
        assert_eq!(
            verify_with(&adapter(), &signed(&body), &body, TIMESTAMP).unwrap_err(),
            super::super::fields::missing("payload.recipient")
        );
        let own = SmsGatewayAdapter::new(
            Secret::new(KEY),
            Some(PhoneNumber::parse("+15550001111").unwrap()),
        );
        let event = verify_with(&own, &signed(&body), &body, TIMESTAMP).unwrap();
        assert!(matches!(event, WebhookEvent::Sms(sms) if sms.to.as_str() == "+15550001111"));
    }

    #[test]
    fn status_events_map() {
        let cases = [
            (
                "sms:sent",
                r#""sentAt":"2024-06-22T08:46:11.000Z""#,
                DeliveryStatus::Sent,
            ),
            (
                "sms:delivered",
                r#""deliveredAt":"2024-06-22T08:46:11.000Z""#,
                DeliveryStatus::Delivered,
            ),
            (
                "sms:failed",
                r#""reason":"RESULT_ERROR_GENERIC_FAILURE""#,
                DeliveryStatus::Failed,
            ),
            ("sms:cancelled", r#""x":1"#, DeliveryStatus::Failed),
        ];
        for (event, extra, status) in cases {
            let body = format!(
                r#"{{"deviceId":"d","event":"{event}","id":"e-1","payload":{{"messageId":"out-1","phoneNumber":"+15550002222",{extra}}},"webhookId":"w"}}"#
            );
            let result = verify_with(&adapter(), &signed(&body), &body, TIMESTAMP).unwrap();
            let WebhookEvent::Report(report) = result else {
                panic!("{event}: a report")
            };
            assert_eq!(report.provider_message_id.as_str(), "out-1");
            assert_eq!(report.status, status, "{event}");
        }
        let data = r#"{"deviceId":"d","event":"sms:data-received","id":"e-2","payload":{"messageId":"x","data":"AAE=","sender":"1","recipient":"+15550002222"},"webhookId":"w"}"#;
        let result = verify_with(&adapter(), &signed(data), data, TIMESTAMP).unwrap();
        assert!(matches!(result, WebhookEvent::Ignored));
    }
}
