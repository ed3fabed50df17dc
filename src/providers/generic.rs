//! Standard Webhooks (standardwebhooks.com): the provider for scripts, gammu-smsd and
//! Android forwarders, which sign `{id}.{timestamp}.{body}` with HMAC-SHA256.

use std::fmt;

use base64::Engine as _;
use base64::alphabet;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::{Choice, ConstantTimeEq};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::fields::header;
use super::{Ack, WebhookError, WebhookRequest};
use crate::domain::{InboundSms, Secret};

pub const ACK: Ack = Ack {
    content_type: "application/json",
    body: r#"{"status":"accepted"}"#,
};

/// How far a signature timestamp may be from our clock: the Standard Webhooks default,
/// which is also every other adapter's window.
pub const TOLERANCE_SECS: i64 = super::replay::TOLERANCE_SECS;

const SECRET_PREFIX: &str = "whsec_";
const ID_HEADER: &str = "webhook-id";
const TIMESTAMP_HEADER: &str = "webhook-timestamp";
const SIGNATURE_HEADER: &str = "webhook-signature";

/// Hand-written secrets often lose their `=` padding; the key bytes are the same either way.
const LENIENT_BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

#[derive(Clone)]
pub struct GenericAdapter {
    key: Vec<u8>,
}

impl fmt::Debug for GenericAdapter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GenericAdapter")
            .field("key", &"<redacted>")
            .finish()
    }
}

impl GenericAdapter {
    /// Accepts `whsec_<base64>` or bare base64; the key is the decoded bytes.
    pub fn new(secret: &Secret) -> Result<Self, String> {
        Ok(Self {
            key: decode_secret(secret.expose())?,
        })
    }

    pub fn verify_and_parse(
        &self,
        request: &WebhookRequest<'_>,
    ) -> Result<InboundSms, WebhookError> {
        let msg_id = header(request.headers, ID_HEADER)?;
        let timestamp = header(request.headers, TIMESTAMP_HEADER)?;
        let signatures = header(request.headers, SIGNATURE_HEADER)?;

        let timestamp = super::replay::parse_unix(TIMESTAMP_HEADER, timestamp)?;
        super::replay::check_window(request.now_unix, timestamp, TOLERANCE_SECS)?;

        let Some(expected) = hmac_sha256(&self.key, msg_id, timestamp, request.body) else {
            return Err(WebhookError::BadSignature);
        };
        let mut matched = Choice::from(0);
        for entry in signatures.split_ascii_whitespace() {
            // Other versions (e.g. asymmetric `v1a`) are not ours to check; skipping them
            // lets senders rotate schemes by sending both.
            let Some(("v1", encoded)) = entry.split_once(',') else {
                continue;
            };
            if let Ok(provided) = STANDARD.decode(encoded) {
                matched |= expected.as_slice().ct_eq(provided.as_slice());
            }
        }
        if !bool::from(matched) {
            return Err(WebhookError::BadSignature);
        }

        parse_payload(request.body)
    }
}

/// The `webhook-signature` entry (`v1,<base64>`) for a message, as a sender computes it.
pub fn sign(secret: &str, msg_id: &str, timestamp: i64, body: &[u8]) -> Result<String, String> {
    let key = decode_secret(secret)?;
    let mac = hmac_sha256(&key, msg_id, timestamp, body)
        .ok_or_else(|| "the secret cannot be used as an HMAC key".to_owned())?;
    Ok(format!("v1,{}", STANDARD.encode(mac)))
}

fn decode_secret(secret: &str) -> Result<Vec<u8>, String> {
    let encoded = secret.trim();
    let encoded = encoded.strip_prefix(SECRET_PREFIX).unwrap_or(encoded);
    if encoded.is_empty() {
        return Err("the generic provider secret is empty; expected whsec_<base64>".to_owned());
    }
    let key = LENIENT_BASE64.decode(encoded).map_err(|_| {
        "the generic provider secret is not valid base64; expected whsec_<base64>".to_owned()
    })?;
    if key.is_empty() {
        return Err("the generic provider secret decodes to an empty key".to_owned());
    }
    Ok(key)
}

/// `None` only if the MAC rejects the key, which HMAC never does; the verifier treats it as
/// a mismatch so that an impossible failure can never turn into an accepted request.
fn hmac_sha256(key: &[u8], msg_id: &str, timestamp: i64, body: &[u8]) -> Option<Vec<u8>> {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).ok()?;
    mac.update(msg_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    Some(mac.finalize().into_bytes().to_vec())
}

/// Reads the SMS fields by hand rather than through serde so that error messages name the
/// field without echoing any of its (private) content.
fn parse_payload(body: &[u8]) -> Result<InboundSms, WebhookError> {
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|_| WebhookError::Malformed("the body is not valid JSON".to_owned()))?;
    let object = value
        .as_object()
        .ok_or_else(|| WebhookError::Malformed("the JSON body is not an object".to_owned()))?;
    let field = |name: &str| match object.get(name) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(text)) => Ok(Some(text.as_str())),
        Some(_) => Err(WebhookError::Malformed(format!(
            "the field `{name}` is not a string"
        ))),
    };
    let required = |name: &str| {
        field(name)?
            .ok_or_else(|| WebhookError::Malformed(format!("the payload has no `{name}` field")))
    };

    let id = required("id")?;
    let from = required("from")?;
    let to = required("to")?;
    let text = required("text")?;
    let received_at_ms = field("received_at")?.map(parse_received_at).transpose()?;
    Ok(InboundSms::new(id, from, to, text, received_at_ms)?)
}

fn parse_received_at(value: &str) -> Result<i64, WebhookError> {
    let invalid = || WebhookError::Malformed("`received_at` is not an RFC 3339 timestamp".into());
    let instant = OffsetDateTime::parse(value, &Rfc3339).map_err(|_| invalid())?;
    i64::try_from(instant.unix_timestamp_nanos() / 1_000_000).map_err(|_| invalid())
}

#[cfg(test)]
// A failed unwrap is how a test reports an unexpected outcome.
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use http::{HeaderMap, HeaderValue};

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const MSG_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TIMESTAMP: i64 = 1_614_265_330;
    const BODY: &str = r#"{"test": 2432232314}"#;
    const SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    const SMS_BODY: &str = r#"{"id":"gammu-42","from":"+14155550100","to":"+14155550199","text":"code 7731","received_at":"2024-05-01T12:00:00.250+02:00","sim":1}"#;

    fn adapter() -> GenericAdapter {
        GenericAdapter::new(&Secret::new(SECRET)).unwrap()
    }

    fn headers(id: Option<&str>, ts: Option<&str>, sig: Option<&str>) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in [
            (ID_HEADER, id),
            (TIMESTAMP_HEADER, ts),
            (SIGNATURE_HEADER, sig),
        ] {
            if let Some(value) = value {
                map.insert(name, HeaderValue::from_str(value).unwrap());
            }
        }
        map
    }

    fn verify(headers: &HeaderMap, body: &[u8], now: i64) -> Result<InboundSms, WebhookError> {
        adapter().verify_and_parse(&WebhookRequest {
            public_url: "https://burnbox.example.org/webhooks/generic/main",
            headers,
            body,
            now_unix: now,
            spent: Default::default(),
        })
    }

    fn signed(body: &str, ts: i64) -> HeaderMap {
        let signature = sign(SECRET, MSG_ID, ts, body.as_bytes()).unwrap();
        headers(Some(MSG_ID), Some(&ts.to_string()), Some(&signature))
    }

    #[test]
    fn vector_standard_webhooks_signature() {
        assert_eq!(
            sign(SECRET, MSG_ID, TIMESTAMP, BODY.as_bytes()).unwrap(),
            SIGNATURE
        );
    }

    #[test]
    fn vector_verifies_then_fails_as_not_an_sms() {
        let headers = headers(Some(MSG_ID), Some("1614265330"), Some(SIGNATURE));
        let result = verify(&headers, BODY.as_bytes(), TIMESTAMP);
        assert_eq!(
            result.unwrap_err(),
            WebhookError::Malformed("the payload has no `id` field".to_owned())
        );
    }

    #[test]
    fn multi_signature_header_with_one_good_entry_passes() {
        let signatures = format!(
            "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= v1a,ignored {SIGNATURE} v2,xyz"
        );
        let headers = headers(Some(MSG_ID), Some("1614265330"), Some(&signatures));
        let result = verify(&headers, BODY.as_bytes(), TIMESTAMP);
        assert!(
            matches!(result, Err(WebhookError::Malformed(_))),
            "{result:?}"
        );
    }

    #[test]
    fn only_bogus_entries_fail() {
        let signatures = "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= v2,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
        let headers = headers(Some(MSG_ID), Some("1614265330"), Some(signatures));
        let result = verify(&headers, BODY.as_bytes(), TIMESTAMP);
        assert_eq!(result.unwrap_err(), WebhookError::BadSignature);
    }

    #[test]
    fn expired_timestamp_is_stale() {
        let now = 1_700_000_000;
        let result = verify(&signed(SMS_BODY, now - 301), SMS_BODY.as_bytes(), now);
        assert_eq!(result.unwrap_err(), WebhookError::Stale);
    }

    #[test]
    fn future_timestamp_is_stale() {
        let now = 1_700_000_000;
        let result = verify(&signed(SMS_BODY, now + 301), SMS_BODY.as_bytes(), now);
        assert_eq!(result.unwrap_err(), WebhookError::Stale);
    }

    #[test]
    fn edge_of_window_is_accepted() {
        let now = 1_700_000_000;
        assert!(verify(&signed(SMS_BODY, now - 300), SMS_BODY.as_bytes(), now).is_ok());
        assert!(verify(&signed(SMS_BODY, now + 300), SMS_BODY.as_bytes(), now).is_ok());
    }

    #[test]
    fn flipped_body_byte_is_bad_signature() {
        let now = 1_700_000_000;
        let headers = signed(SMS_BODY, now);
        let mut body = SMS_BODY.as_bytes().to_vec();
        let index = body.iter().position(|&b| b == b'7').unwrap();
        body[index] = b'8';
        assert_eq!(
            verify(&headers, &body, now).unwrap_err(),
            WebhookError::BadSignature
        );
    }

    #[test]
    fn missing_headers_are_unsigned() {
        let ts = TIMESTAMP.to_string();
        let cases = [
            (headers(None, Some(&ts), Some(SIGNATURE)), ID_HEADER),
            (
                headers(Some(MSG_ID), None, Some(SIGNATURE)),
                TIMESTAMP_HEADER,
            ),
            (headers(Some(MSG_ID), Some(&ts), None), SIGNATURE_HEADER),
        ];
        for (headers, name) in cases {
            let result = verify(&headers, BODY.as_bytes(), TIMESTAMP);
            assert_eq!(result.unwrap_err(), WebhookError::Unsigned(name));
        }
    }

    #[test]
    fn non_integer_timestamp_is_malformed() {
        let headers = headers(Some(MSG_ID), Some("2021-02-25"), Some(SIGNATURE));
        let result = verify(&headers, BODY.as_bytes(), TIMESTAMP);
        assert!(
            matches!(result, Err(WebhookError::Malformed(_))),
            "{result:?}"
        );
    }

    #[test]
    fn bad_secrets_are_rejected() {
        for secret in ["", "whsec_", "whsec_not*base64!", "%%%"] {
            assert!(
                GenericAdapter::new(&Secret::new(secret)).is_err(),
                "{secret:?}"
            );
            assert!(sign(secret, MSG_ID, TIMESTAMP, b"").is_err(), "{secret:?}");
        }
    }

    #[test]
    fn secret_without_prefix_or_padding_is_the_same_key() {
        let bare = SECRET.trim_start_matches(SECRET_PREFIX);
        assert_eq!(
            sign(bare, MSG_ID, TIMESTAMP, BODY.as_bytes()).unwrap(),
            SIGNATURE
        );
        let key = GenericAdapter::new(&Secret::new(format!("{SECRET_PREFIX}aGVsbG8"))).unwrap();
        assert_eq!(key.key, b"hello");
    }

    #[test]
    fn debug_hides_the_key() {
        let printed = format!("{:?}", adapter());
        assert_eq!(printed, r#"GenericAdapter { key: "<redacted>" }"#);
    }

    #[test]
    fn valid_sms_payload_yields_fields() {
        let now = 1_714_557_600;
        let sms = verify(&signed(SMS_BODY, now), SMS_BODY.as_bytes(), now).unwrap();
        assert_eq!(sms.provider_message_id.as_str(), "gammu-42");
        assert_eq!(sms.from.as_str(), "+14155550100");
        assert_eq!(sms.to.as_str(), "+14155550199");
        assert_eq!(sms.text, "code 7731");
        // 2024-05-01T10:00:00.250Z
        assert_eq!(sms.received_at_ms, Some(1_714_557_600_250));
    }

    #[test]
    fn payload_without_received_at_has_no_timestamp() {
        let body = r#"{"id":"a1","from":"VERIFY","to":"+14155550199","text":""}"#;
        let sms = verify(&signed(body, TIMESTAMP), body.as_bytes(), TIMESTAMP).unwrap();
        assert_eq!(sms.received_at_ms, None);
    }

    #[test]
    fn invalid_received_at_is_malformed() {
        let body = r#"{"id":"a1","from":"+14155550100","to":"+14155550199","text":"x","received_at":"yesterday"}"#;
        let result = verify(&signed(body, TIMESTAMP), body.as_bytes(), TIMESTAMP);
        let err = result.unwrap_err();
        assert!(
            matches!(&err, WebhookError::Malformed(m) if m.contains("received_at")),
            "{err:?}"
        );
    }

    #[test]
    fn missing_field_is_malformed() {
        let body = r#"{"id":"a1","from":"+14155550100","text":"x"}"#;
        let result = verify(&signed(body, TIMESTAMP), body.as_bytes(), TIMESTAMP);
        assert_eq!(
            result.unwrap_err(),
            WebhookError::Malformed("the payload has no `to` field".to_owned())
        );
    }
}
