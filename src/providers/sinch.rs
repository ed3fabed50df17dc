//! Sinch SMS REST API callbacks, signed (once HMAC signing is set up for the account)
//! with `x-sinch-webhook-signature` = base64 HMAC-SHA256 of `body.nonce.timestamp`.
//!
//! Sinch's SDK does not check the timestamp's age; we do, and remember the nonce.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;
use sha2::Sha256;

use super::fields::{
    header, hex_octets, international_sender, json_required, json_str, malformed, parse_json,
    rfc3339_ms,
};
use super::replay::{TOLERANCE_SECS, check_window, parse_unix};
use super::{WebhookError, WebhookEvent, WebhookRequest};
use crate::domain::{DeliveryReport, DeliveryStatus, InboundSms, Secret};

const SIGNATURE_HEADER: &str = "x-sinch-webhook-signature";
const NONCE_HEADER: &str = "x-sinch-webhook-signature-nonce";
const TIMESTAMP_HEADER: &str = "x-sinch-webhook-signature-timestamp";

#[derive(Debug, Clone)]
pub struct SinchAdapter {
    secret: Secret,
}

impl SinchAdapter {
    /// `secret` is the webhook signing secret set for the service plan's callbacks.
    pub fn new(secret: Secret) -> Self {
        Self { secret }
    }

    pub fn verify_and_parse(
        &self,
        request: &WebhookRequest<'_>,
    ) -> Result<WebhookEvent, WebhookError> {
        let signature = header(request.headers, SIGNATURE_HEADER)?;
        let nonce = header(request.headers, NONCE_HEADER)?;
        let timestamp_text = header(request.headers, TIMESTAMP_HEADER)?;
        let provided = BASE64
            .decode(signature.trim())
            .map_err(|_| WebhookError::BadSignature)?;
        let Ok(mut mac) =
            <Hmac<Sha256> as KeyInit>::new_from_slice(self.secret.expose().as_bytes())
        else {
            return Err(WebhookError::BadSignature);
        };
        mac.update(request.body);
        mac.update(b".");
        mac.update(nonce.as_bytes());
        mac.update(b".");
        mac.update(timestamp_text.as_bytes());
        mac.verify_slice(&provided)
            .map_err(|_| WebhookError::BadSignature)?;

        let timestamp = parse_unix(TIMESTAMP_HEADER, timestamp_text)?;
        check_window(request.now_unix, timestamp, TOLERANCE_SECS)?;
        request.spent.note(
            nonce,
            timestamp
                .max(request.now_unix)
                .saturating_add(TOLERANCE_SECS),
        );
        parse(&parse_json(request.body)?)
    }
}

/// The base64 signature a Sinch callback carries (for tests and tools).
pub fn sign(secret: &str, body: &[u8], nonce: &str, timestamp: &str) -> String {
    let Ok(mut mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()) else {
        return String::new();
    };
    mac.update(body);
    mac.update(format!(".{nonce}.{timestamp}").as_bytes());
    BASE64.encode(mac.finalize().into_bytes())
}

fn parse(body: &Value) -> Result<WebhookEvent, WebhookError> {
    let kind = json_required(body, &["type"])?;
    match &*kind {
        "mo_text" | "mo_media" | "mo_binary" => {
            let id = json_required(body, &["id"])?;
            let from = json_required(body, &["from"])?;
            let from = international_sender(&from);
            let to = json_required(body, &["to"])?;
            let received_at_ms = json_str(body, &["received_at"])?
                .map(|at| rfc3339_ms("received_at", &at))
                .transpose()?;
            if kind == "mo_binary" {
                // `body` is the octets in base64, `udh` their User Data Header in hex.
                let data = BASE64
                    .decode(json_required(body, &["body"])?.trim())
                    .map_err(|_| malformed("the field `body` is not base64"))?;
                let udh = json_str(body, &["udh"])?
                    .map(|udh| hex_octets("udh", &udh))
                    .transpose()?;
                let sms = InboundSms::binary(
                    &id,
                    &from,
                    &to,
                    &udh.unwrap_or_default(),
                    data,
                    received_at_ms,
                )?;
                return Ok(sms.into());
            }
            // An MMS (mo_media) carries its text inside the body object.
            let text = if kind == "mo_text" {
                json_str(body, &["body"])?
            } else {
                json_str(body, &["body", "message"])?
            }
            .unwrap_or_default();
            Ok(InboundSms::new(&id, &from, &to, &text, received_at_ms)?.into())
        }
        "recipient_delivery_report_sms" | "recipient_delivery_report_mms" => {
            let batch = json_required(body, &["batch_id"])?;
            let status = json_required(body, &["status"])?;
            let at_ms = json_str(body, &["at"])?.and_then(|at| rfc3339_ms("at", &at).ok());
            let code = json_str(body, &["code"])?;
            Ok(DeliveryReport::new(&batch, status_of(&status), code.as_deref(), at_ms)?.into())
        }
        "delivery_report_sms" | "delivery_report_mms" => {
            // A batch summary: one status per group of recipients. The first group stands
            // for the batch; per-recipient reports are the precise kind.
            let batch = json_required(body, &["batch_id"])?;
            let status = json_required(body, &["statuses", "0", "status"])?;
            let code = json_str(body, &["statuses", "0", "code"])?;
            Ok(DeliveryReport::new(&batch, status_of(&status), code.as_deref(), None)?.into())
        }
        // Event types we have no use for.
        _ => Ok(WebhookEvent::Ignored),
    }
}

/// Delivery report `status`.
fn status_of(status: &str) -> DeliveryStatus {
    match status {
        "Queued" => DeliveryStatus::Queued,
        "Dispatched" => DeliveryStatus::Sent,
        "Delivered" => DeliveryStatus::Delivered,
        "Aborted" | "Cancelled" | "Rejected" | "Deleted" | "Failed" => DeliveryStatus::Failed,
        "Expired" => DeliveryStatus::Undelivered,
        _ => DeliveryStatus::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::SpentNonce;
    use http::{HeaderMap, HeaderValue};

    const VECTOR_SECRET: &str = "foo_secret1234";
    const VECTOR_NONCE: &str = "01FJA8B4A7BM43YGWSG9GBV067";
    const VECTOR_TIMESTAMP: i64 = 1_634_579_353;
    const VECTOR_BODY: &str = r#"{"app_id":"01EB37HMH1M6SV18BSNS3G135H","accepted_time":"2020-11-17T15:09:11.659Z","project_id":"c36f3d3d-1513-2edd-ae42-11995557ff61","message_delivery_report":{"message_id":"01EQBC1A3BEK731GY4YXEN0C2R","conversation_id":"01EPYATA64TMNZ1FV02JKF12JF","status":"QUEUED_ON_CHANNEL","contact_id":"01EXA07N79THJ20WSN6AS30TMW"}}"#;
    const VECTOR_SIGNATURE: &str = "Yc+3R1pIS78xLASybulhs8BsSo9BPB3Pr92QCUoczfk=";

    const SECRET: &str = "sinch-callback-secret";
    const NOW: i64 = 1_700_000_000;
    const MO: &str = r#"{"id":"01FC66621XXXXX119Z8PMV1QPQ","from":"447700900001","to":"12345678","body":"Your code is 8812","type":"mo_text","operator_id":"23410","received_at":"2023-11-14T22:13:20.000Z"}"#;

    fn headers(signature: &str, nonce: &str, timestamp: i64) -> HeaderMap {
        let mut map = HeaderMap::new();
        map.insert(SIGNATURE_HEADER, HeaderValue::from_str(signature).unwrap());
        map.insert(NONCE_HEADER, HeaderValue::from_str(nonce).unwrap());
        map.insert(TIMESTAMP_HEADER, HeaderValue::from(timestamp));
        map
    }

    fn signed(body: &str, nonce: &str, timestamp: i64) -> HeaderMap {
        headers(
            &sign(SECRET, body.as_bytes(), nonce, &timestamp.to_string()),
            nonce,
            timestamp,
        )
    }

    fn verify_with(
        adapter: &SinchAdapter,
        headers: &HeaderMap,
        body: &str,
        now: i64,
    ) -> Result<WebhookEvent, WebhookError> {
        verify_with_spending(adapter, headers, body, now).0
    }

    fn verify_with_spending(
        adapter: &SinchAdapter,
        headers: &HeaderMap,
        body: &str,
        now: i64,
    ) -> (Result<WebhookEvent, WebhookError>, Vec<SpentNonce>) {
        let request = WebhookRequest {
            public_url: "https://burnbox.example.org/webhooks/sinch",
            headers,
            body: body.as_bytes(),
            now_unix: now,
            spent: Default::default(),
        };
        let verified = adapter.verify_and_parse(&request);
        (verified, request.spent.take())
    }

    fn adapter() -> SinchAdapter {
        SinchAdapter::new(Secret::new(SECRET))
    }

    #[test]
    fn vector_conversation_event_signature() {
        assert_eq!(
            sign(
                VECTOR_SECRET,
                VECTOR_BODY.as_bytes(),
                VECTOR_NONCE,
                "1634579353"
            ),
            VECTOR_SIGNATURE
        );
        // Through the adapter: authentic, and (a Conversation API event) not an SMS.
        let adapter = SinchAdapter::new(Secret::new(VECTOR_SECRET));
        let headers = headers(VECTOR_SIGNATURE, VECTOR_NONCE, VECTOR_TIMESTAMP);
        let result = verify_with(&adapter, &headers, VECTOR_BODY, VECTOR_TIMESTAMP);
        assert_eq!(result.unwrap_err(), super::super::fields::missing("type"));
    }

    #[test]
    fn signed_mo_text_passes() {
        let event = verify_with(&adapter(), &signed(MO, "n1", NOW), MO, NOW).unwrap();
        let WebhookEvent::Sms(sms) = event else {
            panic!("an SMS")
        };
        assert_eq!(
            sms.provider_message_id.as_str(),
            "01FC66621XXXXX119Z8PMV1QPQ"
        );
        assert_eq!(sms.from.as_str(), "+447700900001");
        assert_eq!(sms.to.as_str(), "+12345678");
        assert_eq!(sms.text, "Your code is 8812");
        assert_eq!(sms.received_at_ms, Some(NOW * 1000));
    }

    #[test]
    fn forged_signature_is_refused() {
        let headers = headers(
            &sign("wrong", MO.as_bytes(), "n2", &NOW.to_string()),
            "n2",
            NOW,
        );
        assert_eq!(
            verify_with(&adapter(), &headers, MO, NOW).unwrap_err(),
            WebhookError::BadSignature
        );
        // Nonce and timestamp are signed: changing either breaks it.
        let good = sign(SECRET, MO.as_bytes(), "n3", &NOW.to_string());
        assert_eq!(
            verify_with(&adapter(), &headers_with(&good, "n4", NOW), MO, NOW).unwrap_err(),
            WebhookError::BadSignature
        );
        assert_eq!(
            verify_with(&adapter(), &headers_with(&good, "n3", NOW + 1), MO, NOW).unwrap_err(),
            WebhookError::BadSignature
        );
    }

    fn headers_with(signature: &str, nonce: &str, timestamp: i64) -> HeaderMap {
        headers(signature, nonce, timestamp)
    }

    #[test]
    fn stale_timestamp_is_refused() {
        for ts in [NOW - 301, NOW + 301] {
            assert_eq!(
                verify_with(&adapter(), &signed(MO, "n5", ts), MO, NOW).unwrap_err(),
                WebhookError::Stale
            );
        }
    }

    #[test]
    fn a_verified_request_spends_its_nonce_and_a_forged_one_nothing() {
        let (verified, spent) = verify_with_spending(&adapter(), &signed(MO, "n6", NOW), MO, NOW);
        assert!(verified.is_ok());
        let until = NOW + TOLERANCE_SECS;
        assert_eq!(
            spent,
            [SpentNonce {
                nonce: "n6".into(),
                last_accepted: until
            }]
        );
        let forged = SinchAdapter::new(Secret::new("another secret"));
        let (verified, spent) = verify_with_spending(&forged, &signed(MO, "n6", NOW), MO, NOW);
        assert_eq!(verified.unwrap_err(), WebhookError::BadSignature);
        assert!(spent.is_empty());
    }

    #[test]
    fn reports() {
        let report = r#"{"type":"recipient_delivery_report_sms","batch_id":"01FC66621VHDBN119Z8PMV1AHY","recipient":"447700900001","code":402,"status":"Expired","at":"2023-11-14T22:13:20.000Z"}"#;
        let event = verify_with(&adapter(), &signed(report, "n7", NOW), report, NOW).unwrap();
        let WebhookEvent::Report(report) = event else {
            panic!("a report")
        };
        assert_eq!(
            report.provider_message_id.as_str(),
            "01FC66621VHDBN119Z8PMV1AHY"
        );
        assert_eq!(report.status, DeliveryStatus::Undelivered);
        assert_eq!(report.error_code.as_deref(), Some("402"));
        assert_eq!(report.at_ms, Some(NOW * 1000));

        let batch = r#"{"type":"delivery_report_sms","batch_id":"B1","statuses":[{"code":0,"status":"Delivered","count":1}]}"#;
        let event = verify_with(&adapter(), &signed(batch, "n8", NOW), batch, NOW).unwrap();
        assert!(matches!(event, WebhookEvent::Report(r) if r.status == DeliveryStatus::Delivered));
    }

    #[test]
    fn binary_mo_carries_its_octets_and_place() {
        let verify =
            |body: &str, nonce: &str| verify_with(&adapter(), &signed(body, nonce, NOW), body, NOW);
        // Part 1 of 2 of 16-bit reference 0x0102, behind an application port element.
        let part = r#"{"type":"mo_binary","id":"b1","from":"447700900001","to":"12345678","body":"AEgAaQ==","udh":"0C05040B8423F00804010202 01","received_at":"2023-11-14T22:13:20.000Z"}"#
            .replace(' ', "");
        let WebhookEvent::Sms(sms) = verify(&part, "n9").unwrap() else {
            panic!("an SMS")
        };
        assert_eq!(sms.data.as_deref(), Some([0, b'H', 0, b'i'].as_slice()));
        assert_eq!(sms.received_at_ms, Some(NOW * 1000));
        let place = sms.part.unwrap();
        assert_eq!(
            (place.reference.as_str(), place.total, place.index),
            ("udh16:258", 2, 1)
        );

        let whole = r#"{"type":"mo_binary","id":"b2","from":"447700900001","to":"12345678","body":"AAE=","udh":""}"#;
        let WebhookEvent::Sms(sms) = verify(whole, "n10").unwrap() else {
            panic!("an SMS")
        };
        assert_eq!(
            (sms.data.as_deref(), sms.part),
            (Some([0, 1].as_slice()), None)
        );

        // A truncated header: kept whole, as hex.
        let truncated = r#"{"type":"mo_binary","id":"b3","from":"447700900001","to":"12345678","body":"AAE=","udh":"0605"}"#;
        let WebhookEvent::Sms(sms) = verify(truncated, "n11").unwrap() else {
            panic!("an SMS")
        };
        assert_eq!(
            (sms.text.as_str(), sms.hex, sms.data),
            ("06050001", true, None)
        );
        let not_base64 = r#"{"type":"mo_binary","id":"b4","from":"447700900001","to":"12345678","body":"%%","udh":""}"#;
        assert!(matches!(
            verify(not_base64, "n12").unwrap_err(),
            WebhookError::Malformed(_)
        ));
    }

    #[test]
    fn statuses_map() {
        let cases = [
            ("Queued", DeliveryStatus::Queued),
            ("Dispatched", DeliveryStatus::Sent),
            ("Delivered", DeliveryStatus::Delivered),
            ("Aborted", DeliveryStatus::Failed),
            ("Cancelled", DeliveryStatus::Failed),
            ("Rejected", DeliveryStatus::Failed),
            ("Deleted", DeliveryStatus::Failed),
            ("Failed", DeliveryStatus::Failed),
            ("Expired", DeliveryStatus::Undelivered),
            ("Unknown", DeliveryStatus::Unknown),
        ];
        for (text, status) in cases {
            assert_eq!(status_of(text), status, "{text}");
        }
    }
}
