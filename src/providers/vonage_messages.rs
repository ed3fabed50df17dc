//! Vonage Messages API webhooks (inbound and status), signed with an HS256 JWT bearer
//! token keyed by the account's signature secret.
//!
//! The token has no `exp`: its `iat` must be inside the window, its `jti` is remembered,
//! and its `payload_hash` (hex SHA-256 of the raw body) ties it to this body.

use serde_json::Value;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::fields::{
    international_sender, json_required, json_str, optional_header, parse_json, rfc3339_ms,
};
use super::jwt::{self, Alg};
use super::replay::{TOLERANCE_SECS, check_window};
use super::{WebhookError, WebhookEvent, WebhookRequest};
use crate::domain::{DeliveryReport, DeliveryStatus, InboundSms, Secret};

const AUTHORIZATION: &str = "authorization";

#[derive(Debug, Clone)]
pub struct VonageMessagesAdapter {
    secret: Secret,
}

impl VonageMessagesAdapter {
    /// `secret` is the account's signature secret (Dashboard → Settings).
    pub fn new(secret: Secret) -> Self {
        Self { secret }
    }

    pub fn verify_and_parse(
        &self,
        request: &WebhookRequest<'_>,
    ) -> Result<WebhookEvent, WebhookError> {
        // Vonage may send an unsigned callback after an internal error, and retries it
        // only on a 5xx answer: refused with a 503, so the message is not lost.
        let token = optional_header(request.headers, AUTHORIZATION)?
            .and_then(jwt::bearer)
            .ok_or(WebhookError::UnsignedRetry(AUTHORIZATION))?;
        let claims = jwt::verify(token, self.secret.expose().as_bytes(), &[Alg::Hs256])?;
        let claimed_hash = jwt::str_claim(&claims, "payload_hash")?;
        let body_hash = hex::encode(Sha256::digest(request.body));
        if !bool::from(
            body_hash
                .as_bytes()
                .ct_eq(claimed_hash.to_ascii_lowercase().as_bytes()),
        ) {
            return Err(WebhookError::BadSignature);
        }
        let issued_at = jwt::int_claim(&claims, "iat")?;
        check_window(request.now_unix, issued_at, TOLERANCE_SECS)?;
        let token_id = jwt::str_claim(&claims, "jti")?;
        request.spent.note(
            token_id,
            issued_at
                .max(request.now_unix)
                .saturating_add(TOLERANCE_SECS),
        );
        parse(&parse_json(request.body)?)
    }
}

fn parse(body: &Value) -> Result<WebhookEvent, WebhookError> {
    let id = json_required(body, &["message_uuid"])?;
    let at_ms = json_str(body, &["timestamp"])?
        .map(|at| rfc3339_ms("timestamp", &at))
        .transpose()?;
    if let Some(status) = json_str(body, &["status"])? {
        let code = match json_str(body, &["error", "code"])? {
            Some(code) => Some(code),
            None => json_str(body, &["error", "title"])?,
        };
        let report = DeliveryReport::new(&id, status_of(&status), code.as_deref(), at_ms)?;
        return Ok(report.into());
    }
    let channel = json_str(body, &["channel"])?;
    let message_type = json_str(body, &["message_type"])?;
    if channel.is_some_and(|c| c != "sms") || message_type.is_some_and(|t| t != "text") {
        // The same application can receive WhatsApp, MMS, Viber…: not SMS.
        return Ok(WebhookEvent::Ignored);
    }
    let from = number(body, "from")?;
    let to = number(body, "to")?;
    let text = json_str(body, &["text"])?.unwrap_or_default();
    Ok(InboundSms::new(&id, &international_sender(&from), &to, &text, at_ms)?.into())
}

/// `from`/`to` are plain strings now; early versions sent `{type, number}` objects.
fn number(body: &Value, field: &str) -> Result<String, WebhookError> {
    if body.get(field).is_some_and(Value::is_object) {
        return Ok(json_required(body, &[field, "number"])?.into_owned());
    }
    Ok(json_required(body, &[field])?.into_owned())
}

/// `status` of a message status webhook.
fn status_of(status: &str) -> DeliveryStatus {
    match status {
        "submitted" => DeliveryStatus::Sent,
        "delivered" | "read" => DeliveryStatus::Delivered,
        "rejected" => DeliveryStatus::Failed,
        "undeliverable" => DeliveryStatus::Undelivered,
        _ => DeliveryStatus::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::SpentNonce;
    use http::{HeaderMap, HeaderValue};
    use jsonwebtoken::{Algorithm, EncodingKey, Header};

    const SECRET: &str = "messages-signature-secret";
    const NOW: i64 = 1_700_000_000;
    const INBOUND: &str = r#"{"channel":"sms","message_uuid":"aaaaaaaa-bbbb-cccc-dddd-0123456789ab","to":"447700900000","from":"447700900001","timestamp":"2023-11-14T22:13:20.000Z","text":"Your code is 1234","message_type":"text","sms":{"num_messages":"1","keyword":"YOUR"},"usage":{"price":"0.0057","currency":"EUR"}}"#;

    /// Mints the token as Vonage does (and as PyJWT would in a test harness).
    fn token(secret: &str, body: &str, iat: i64, jti: &str) -> String {
        let claims = serde_json::json!({
            "iat": iat,
            "jti": jti,
            "iss": "Vonage",
            "payload_hash": hex::encode(Sha256::digest(body.as_bytes())),
            "api_key": "abcd1234",
            "application_id": "aaaaaaaa-bbbb-cccc-dddd-0123456789ab",
        });
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    fn verify(
        adapter: &VonageMessagesAdapter,
        token: &str,
        body: &str,
    ) -> Result<WebhookEvent, WebhookError> {
        verify_spending(adapter, token, body).0
    }

    fn verify_spending(
        adapter: &VonageMessagesAdapter,
        token: &str,
        body: &str,
    ) -> (Result<WebhookEvent, WebhookError>, Vec<SpentNonce>) {
        let mut headers = HeaderMap::new();
        headers.insert(
            "authorization",
            HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
        );
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        let request = WebhookRequest {
            public_url: "https://burnbox.example.org/webhooks/vonage-messages",
            headers: &headers,
            body: body.as_bytes(),
            now_unix: NOW,
            spent: Default::default(),
        };
        let verified = adapter.verify_and_parse(&request);
        (verified, request.spent.take())
    }

    fn adapter() -> VonageMessagesAdapter {
        VonageMessagesAdapter::new(Secret::new(SECRET))
    }

    #[test]
    fn signed_inbound_passes() {
        let event = verify(&adapter(), &token(SECRET, INBOUND, NOW, "j1"), INBOUND).unwrap();
        let WebhookEvent::Sms(sms) = event else {
            panic!("an SMS")
        };
        assert_eq!(
            sms.provider_message_id.as_str(),
            "aaaaaaaa-bbbb-cccc-dddd-0123456789ab"
        );
        assert_eq!(sms.from.as_str(), "+447700900001");
        assert_eq!(sms.to.as_str(), "+447700900000");
        assert_eq!(sms.text, "Your code is 1234");
        assert_eq!(sms.received_at_ms, Some(NOW * 1000));
    }

    #[test]
    fn forged_token_or_other_body_is_refused() {
        let forged = token("not-the-secret", INBOUND, NOW, "j2");
        assert_eq!(
            verify(&adapter(), &forged, INBOUND).unwrap_err(),
            WebhookError::BadSignature
        );
        let good = token(SECRET, INBOUND, NOW, "j3");
        let other_body = INBOUND.replace("1234", "9999");
        assert_eq!(
            verify(&adapter(), &good, &other_body).unwrap_err(),
            WebhookError::BadSignature
        );
    }

    #[test]
    fn stale_iat_is_refused() {
        for iat in [NOW - 301, NOW + 301] {
            let stale = token(SECRET, INBOUND, iat, "j4");
            assert_eq!(
                verify(&adapter(), &stale, INBOUND).unwrap_err(),
                WebhookError::Stale
            );
        }
    }

    #[test]
    fn a_verified_request_spends_its_token_id_and_a_forged_one_nothing() {
        let (verified, spent) =
            verify_spending(&adapter(), &token(SECRET, INBOUND, NOW, "j5"), INBOUND);
        assert!(verified.is_ok());
        let until = NOW + TOLERANCE_SECS;
        assert_eq!(
            spent,
            [SpentNonce {
                nonce: "j5".into(),
                last_accepted: until
            }]
        );
        let forged = token("another secret", INBOUND, NOW, "j5");
        let (verified, spent) = verify_spending(&adapter(), &forged, INBOUND);
        assert_eq!(verified.unwrap_err(), WebhookError::BadSignature);
        assert!(spent.is_empty());
    }

    #[test]
    fn other_algorithms_and_missing_tokens_are_refused() {
        let claims = serde_json::json!({"iat": NOW, "jti": "j6",
            "payload_hash": hex::encode(Sha256::digest(INBOUND.as_bytes()))});
        let hs512 = jsonwebtoken::encode(
            &Header::new(Algorithm::HS512),
            &claims,
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap();
        assert_eq!(
            verify(&adapter(), &hs512, INBOUND).unwrap_err(),
            WebhookError::BadSignature
        );
        let result = adapter().verify_and_parse(&WebhookRequest {
            public_url: "https://x/",
            headers: &HeaderMap::new(),
            body: INBOUND.as_bytes(),
            now_unix: NOW,
            spent: Default::default(),
        });
        assert_eq!(
            result.unwrap_err(),
            WebhookError::UnsignedRetry("authorization")
        );
    }

    #[test]
    fn status_is_a_report_and_other_channels_are_ignored() {
        let status = r#"{"message_uuid":"out-1","to":"447700900001","from":"AcmeInc","timestamp":"2023-11-14T22:13:20.000Z","status":"rejected","error":{"type":"https://developer.vonage.com/api-errors/messages#1250","title":"1250","detail":"Invalid number"},"channel":"sms"}"#;
        let event = verify(&adapter(), &token(SECRET, status, NOW, "j7"), status).unwrap();
        let WebhookEvent::Report(report) = event else {
            panic!("a report")
        };
        assert_eq!(report.provider_message_id.as_str(), "out-1");
        assert_eq!(report.status, DeliveryStatus::Failed);
        assert_eq!(report.error_code.as_deref(), Some("1250"));

        let whatsapp = INBOUND.replace(r#""channel":"sms""#, r#""channel":"whatsapp""#);
        let event = verify(&adapter(), &token(SECRET, &whatsapp, NOW, "j8"), &whatsapp).unwrap();
        assert!(matches!(event, WebhookEvent::Ignored));
    }

    #[test]
    fn statuses_map() {
        let cases = [
            ("submitted", DeliveryStatus::Sent),
            ("delivered", DeliveryStatus::Delivered),
            ("read", DeliveryStatus::Delivered),
            ("rejected", DeliveryStatus::Failed),
            ("undeliverable", DeliveryStatus::Undelivered),
            ("new", DeliveryStatus::Unknown),
        ];
        for (text, status) in cases {
            assert_eq!(status_of(text), status, "{text}");
        }
    }
}
