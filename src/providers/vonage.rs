//! Vonage (Nexmo) SMS API webhooks: inbound messages and delivery receipts, signed with the
//! account's signature secret in a `sig` parameter (once Vonage support enables signing).
//!
//! The signature covers every parameter but not the URL, as GET query, POST form or POST
//! JSON alike. Its `timestamp` is checked against a window and its `nonce` remembered.

use hmac::{Hmac, KeyInit, Mac};
use md5::Md5;
use sha1::Sha1;
use sha2::{Digest, Sha256, Sha512};
use subtle::ConstantTimeEq;

use super::fields::{flat_params, hex_octets, international_sender, missing, utc_datetime_ms};
use super::replay::{TOLERANCE_SECS, check_window, parse_unix};
use super::{WebhookError, WebhookEvent, WebhookRequest};
use crate::domain::{DeliveryReport, DeliveryStatus, InboundSms, Secret};

const SIG: &str = "sig";

/// How the account signs (Dashboard → Settings → "Signature method").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureMethod {
    /// `md5(params + secret)`: the legacy "MD5 hash".
    Md5Hash,
    HmacMd5,
    HmacSha1,
    HmacSha256,
    HmacSha512,
}

impl SignatureMethod {
    pub fn parse(name: &str) -> Result<Self, String> {
        Ok(match name.trim().to_ascii_lowercase().as_str() {
            "md5hash" => Self::Md5Hash,
            "md5" => Self::HmacMd5,
            "sha1" => Self::HmacSha1,
            "sha256" => Self::HmacSha256,
            "sha512" => Self::HmacSha512,
            other => {
                return Err(format!(
                    "`signature_method` {other:?}: use md5hash, md5, sha1, sha256 or sha512"
                ));
            }
        })
    }
}

#[derive(Debug, Clone)]
pub struct VonageAdapter {
    secret: Secret,
    method: SignatureMethod,
}

impl VonageAdapter {
    pub fn new(secret: Secret, method: &str) -> Result<Self, String> {
        Ok(Self {
            secret,
            method: SignatureMethod::parse(method)?,
        })
    }

    pub fn verify_and_parse(
        &self,
        request: &WebhookRequest<'_>,
    ) -> Result<WebhookEvent, WebhookError> {
        let params = flat_params(request)?;
        let pairs: Vec<(&str, &str)> = params.iter().map(|(k, v)| (&**k, &**v)).collect();
        // The signed text escapes `&` and `=` in values but not in names, so a name that
        // holds them could carry what was signed as other parameters (the nonce among
        // them) under the same signature. Vonage's names never do.
        if pairs.iter().any(|(key, _)| key.contains(['&', '='])) {
            return Err(WebhookError::Malformed(
                "a parameter name contains `&` or `=`".to_owned(),
            ));
        }
        let provided = get(&pairs, SIG).ok_or(WebhookError::Unsigned(SIG))?;
        let expected = sign(self.method, self.secret.expose(), &pairs);
        let authentic = expected
            .as_bytes()
            .ct_eq(provided.trim().to_ascii_lowercase().as_bytes());
        if !bool::from(authentic) {
            return Err(WebhookError::BadSignature);
        }
        let timestamp = parse_unix(
            "timestamp",
            get(&pairs, "timestamp").ok_or_else(|| missing("timestamp"))?,
        )?;
        check_window(request.now_unix, timestamp, TOLERANCE_SECS)?;
        // Without a nonce, the signature itself identifies this exact request.
        let nonce = match get(&pairs, "nonce") {
            Some(nonce) => format!("nonce:{nonce}"),
            None => format!("sig:{expected}"),
        };
        request.spent.note(
            &nonce,
            timestamp
                .max(request.now_unix)
                .saturating_add(TOLERANCE_SECS),
        );
        parse(&pairs)
    }
}

fn get<'p>(pairs: &[(&str, &'p str)], name: &str) -> Option<&'p str> {
    pairs
        .iter()
        .find(|(key, _)| *key == name)
        .map(|(_, value)| *value)
}

/// The lowercase hex `sig` for `params` (any `sig` among them is left out).
pub fn sign(method: SignatureMethod, secret: &str, params: &[(&str, &str)]) -> String {
    let text = string_to_sign(params);
    let key = secret.as_bytes();
    match method {
        SignatureMethod::Md5Hash => {
            let mut hasher = Md5::new();
            hasher.update(text.as_bytes());
            hasher.update(key);
            hex::encode(hasher.finalize())
        }
        SignatureMethod::HmacMd5 => hmac_hex::<Hmac<Md5>>(key, &text),
        SignatureMethod::HmacSha1 => hmac_hex::<Hmac<Sha1>>(key, &text),
        SignatureMethod::HmacSha256 => hmac_hex::<Hmac<Sha256>>(key, &text),
        SignatureMethod::HmacSha512 => hmac_hex::<Hmac<Sha512>>(key, &text),
    }
}

/// `&k1=v1&k2=v2…` sorted by key, with `&` and `=` in values replaced by `_`.
fn string_to_sign(params: &[(&str, &str)]) -> String {
    let mut sorted: Vec<&(&str, &str)> = params.iter().filter(|(key, _)| *key != SIG).collect();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    let mut out = String::new();
    for (key, value) in sorted {
        out.push('&');
        out.push_str(key);
        out.push('=');
        out.extend(
            value
                .chars()
                .map(|c| if c == '&' || c == '=' { '_' } else { c }),
        );
    }
    out
}

fn hmac_hex<M: Mac + KeyInit>(key: &[u8], text: &str) -> String {
    // HMAC takes keys of any length; an empty result never matches a signature.
    let Ok(mut mac) = <M as KeyInit>::new_from_slice(key) else {
        return String::new();
    };
    mac.update(text.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

fn parse(pairs: &[(&str, &str)]) -> Result<WebhookEvent, WebhookError> {
    let required = |name: &str| get(pairs, name).ok_or_else(|| missing(name));
    let id = required("messageId")?;
    if let Some(status) = get(pairs, "status") {
        let at_ms = get(pairs, "message-timestamp")
            .and_then(|t| utc_datetime_ms("message-timestamp", t).ok());
        let report = DeliveryReport::new(id, status_of(status), get(pairs, "err-code"), at_ms)?;
        return Ok(report.into());
    }
    let from = international_sender(required("msisdn")?);
    let to = required("to")?;
    let received_at_ms = get(pairs, "message-timestamp")
        .map(|t| utc_datetime_ms("message-timestamp", t))
        .transpose()?;
    let sms = if get(pairs, "type") == Some("binary") {
        // The octets (`data`) and their User Data Header (`udh`), both hex; a
        // concatenation element in the header says which part this is.
        let udh = get(pairs, "udh")
            .map(|udh| hex_octets("udh", udh))
            .transpose()?;
        let data = hex_octets("data", required("data")?)?;
        InboundSms::binary(
            id,
            &from,
            to,
            &udh.unwrap_or_default(),
            data,
            received_at_ms,
        )?
    } else {
        let text = get(pairs, "text").unwrap_or("");
        InboundSms::new(id, &from, to, text, received_at_ms)?
    };
    if sms.part.is_some() || get(pairs, "concat") != Some("true") {
        return Ok(sms.into());
    }
    // A long message the network split: each part comes on its own, possibly out of
    // order; the store puts them back together.
    let number = |name: &str| {
        required(name)?
            .parse::<u16>()
            .map_err(|_| WebhookError::Malformed(format!("{name} is not a number")))
    };
    let reference = required("concat-ref")?;
    Ok(sms
        .with_part(reference, number("concat-total")?, number("concat-part")?)?
        .into())
}

/// `status` of a delivery receipt.
fn status_of(status: &str) -> DeliveryStatus {
    match status {
        "accepted" | "buffered" => DeliveryStatus::Sent,
        "delivered" => DeliveryStatus::Delivered,
        "failed" | "rejected" => DeliveryStatus::Failed,
        "expired" => DeliveryStatus::Undelivered,
        _ => DeliveryStatus::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::SpentNonce;
    use http::{HeaderMap, HeaderValue};
    use serde_json::Value;

    const OLD_PARAMS: &[(&str, &str)] = &[("a", "1"), ("b", "2"), ("timestamp", "1461605396")];
    const URL: &str = "https://burnbox.example.org/webhooks/vonage";
    const SECRET: &str = "vonage-signature-secret";
    const NOW: i64 = 1_700_000_000;

    #[test]
    fn vectors_python_sdk_v2() {
        assert_eq!(string_to_sign(OLD_PARAMS), "&a=1&b=2&timestamp=1461605396");
        let cases = [
            (SignatureMethod::Md5Hash, "6af838ef94998832dbfc29020b564830"),
            (SignatureMethod::HmacMd5, "c15c21ced558c93a226c305f58f902f2"),
            (
                SignatureMethod::HmacSha1,
                "3e19a4e6880fdc2c1426bfd0587c98b9532f0210",
            ),
            (
                SignatureMethod::HmacSha256,
                "a321e824b9b816be7c3f28859a31749a098713d39f613c80d455bbaffae1cd24",
            ),
            (
                SignatureMethod::HmacSha512,
                "812a18f76680fa0fe1b8bd9ee1625466ceb1bd96242e4d050d2cfd9a7b40166c63ed26ec9702168781b6edcf1633db8ff95af9341701004eec3fcf9550572ee8",
            ),
        ];
        for (method, expected) in cases {
            assert_eq!(sign(method, "secret", OLD_PARAMS), expected, "{method:?}");
        }
    }

    #[test]
    fn vectors_http_client() {
        let params = [
            ("param1", "value1"),
            ("param2", "value2"),
            ("timestamp", "1234567890"),
        ];
        assert_eq!(
            sign(SignatureMethod::HmacSha256, "signature_secret", &params),
            "280c4320703dbc98bfa22db676655ed2acfbfe8792b062ff7622e67f1183c287"
        );
        assert_eq!(
            sign(SignatureMethod::HmacMd5, "signature_secret", &params),
            "724c2bf6ca423c36e20631b11d1c5753"
        );
        let special = [
            ("param1", "value&1"),
            ("param2", "value=2"),
            ("timestamp", "1234567890"),
        ];
        assert_eq!(
            sign(SignatureMethod::HmacMd5, "signature_secret", &special),
            "2bbf0abafb2c55e5af6231513896a2ac"
        );
        // test_sign_params_with_dynamic_timestamp: the SDK adds the (mocked) time 12345.
        let dynamic = [
            ("param1", "value1"),
            ("param2", "value2"),
            ("timestamp", "12345"),
        ];
        assert_eq!(
            sign(SignatureMethod::HmacMd5, "signature_secret", &dynamic),
            "bc7e95bb4e341090b3a202a2885903a5"
        );
        let with_sig = [
            ("param", "value"),
            ("timestamp", "1234567890"),
            ("sig", "655a4d0b7f064dff438defc52b012cf5"),
        ];
        assert_eq!(
            sign(SignatureMethod::HmacMd5, "signature_secret", &with_sig),
            "655a4d0b7f064dff438defc52b012cf5"
        );
    }

    fn inbound(id: &str, timestamp: i64, nonce: &str) -> Vec<(&'static str, String)> {
        vec![
            ("msisdn", "447700900001".into()),
            ("to", "447700900000".into()),
            ("messageId", id.into()),
            ("text", "Your code: 5512 & more=yes".into()),
            ("type", "text".into()),
            ("keyword", "YOUR".into()),
            ("api-key", "abcd1234".into()),
            ("message-timestamp", "2023-11-14 22:13:20".into()),
            ("timestamp", timestamp.to_string()),
            ("nonce", nonce.into()),
        ]
    }

    fn signed(
        method: SignatureMethod,
        params: &[(&'static str, String)],
    ) -> Vec<(&'static str, String)> {
        let pairs: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let mut out = params.to_vec();
        out.push(("sig", sign(method, SECRET, &pairs)));
        out
    }

    fn form(params: &[(&str, String)]) -> String {
        form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params)
            .finish()
    }

    fn adapter(method: &str) -> VonageAdapter {
        VonageAdapter::new(Secret::new(SECRET), method).unwrap()
    }

    fn post(adapter: &VonageAdapter, body: &str, json: bool) -> Result<WebhookEvent, WebhookError> {
        post_spending(adapter, body, json).0
    }

    fn post_spending(
        adapter: &VonageAdapter,
        body: &str,
        json: bool,
    ) -> (Result<WebhookEvent, WebhookError>, Vec<SpentNonce>) {
        let mut headers = HeaderMap::new();
        let content_type = if json {
            "application/json"
        } else {
            "application/x-www-form-urlencoded"
        };
        headers.insert("content-type", HeaderValue::from_static(content_type));
        let request = WebhookRequest {
            public_url: URL,
            headers: &headers,
            body: body.as_bytes(),
            now_unix: NOW,
            spent: Default::default(),
        };
        let verified = adapter.verify_and_parse(&request);
        (verified, request.spent.take())
    }

    fn get_request(adapter: &VonageAdapter, query: &str) -> Result<WebhookEvent, WebhookError> {
        let url = format!("{URL}?{query}");
        adapter.verify_and_parse(&WebhookRequest {
            public_url: &url,
            headers: &HeaderMap::new(),
            body: b"",
            now_unix: NOW,
            spent: Default::default(),
        })
    }

    #[test]
    fn signed_post_form_passes_with_every_method() {
        for (name, method) in [
            ("md5hash", SignatureMethod::Md5Hash),
            ("md5", SignatureMethod::HmacMd5),
            ("sha1", SignatureMethod::HmacSha1),
            ("sha256", SignatureMethod::HmacSha256),
            ("sha512", SignatureMethod::HmacSha512),
        ] {
            let params = signed(method, &inbound("0A0000001", NOW, name));
            let WebhookEvent::Sms(sms) = post(&adapter(name), &form(&params), false).unwrap()
            else {
                panic!("an SMS")
            };
            assert_eq!(sms.provider_message_id.as_str(), "0A0000001");
            assert_eq!(sms.from.as_str(), "+447700900001");
            assert_eq!(sms.to.as_str(), "+447700900000");
            assert_eq!(sms.text, "Your code: 5512 & more=yes");
            assert_eq!(sms.received_at_ms, Some(NOW * 1000));
        }
    }

    #[test]
    fn signed_get_and_json_pass() {
        let params = signed(
            SignatureMethod::HmacSha256,
            &inbound("0A0000002", NOW, "g1"),
        );
        assert!(get_request(&adapter("sha256"), &form(&params)).is_ok());

        let params = signed(
            SignatureMethod::HmacSha256,
            &inbound("0A0000003", NOW, "j1"),
        );
        let object: serde_json::Map<String, Value> = params
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Value::String(v.clone())))
            .collect();
        let body = serde_json::to_string(&object).unwrap();
        assert!(post(&adapter("sha256"), &body, true).is_ok());
    }

    #[test]
    fn forged_or_wrong_method_is_refused() {
        let params = signed(
            SignatureMethod::HmacSha256,
            &inbound("0A0000004", NOW, "f1"),
        );
        let mut tampered = params.clone();
        tampered[3].1 = "Your code: 0000".into();
        assert_eq!(
            post(&adapter("sha256"), &form(&tampered), false).unwrap_err(),
            WebhookError::BadSignature
        );
        // Signed right, but the account is configured for another method.
        assert_eq!(
            post(&adapter("sha512"), &form(&params), false).unwrap_err(),
            WebhookError::BadSignature
        );
        let unsigned = inbound("0A0000005", NOW, "f2");
        assert_eq!(
            post(&adapter("sha256"), &form(&unsigned), false).unwrap_err(),
            WebhookError::Unsigned("sig")
        );
    }

    #[test]
    fn stale_timestamp_is_refused() {
        for timestamp in [NOW - 301, NOW + 301] {
            let params = signed(
                SignatureMethod::HmacSha256,
                &inbound("0A0000006", timestamp, "s1"),
            );
            assert_eq!(
                post(&adapter("sha256"), &form(&params), false).unwrap_err(),
                WebhookError::Stale
            );
        }
    }

    /// `nonce=r3&text` = `hello` signs like `nonce` = `r3` and `text` = `hello`, so without
    /// the check the request would pass with no nonce for the replay guard to see.
    #[test]
    fn a_name_holding_other_parameters_is_refused() {
        let adapter = adapter("sha256");
        let honest = signed(
            SignatureMethod::HmacSha256,
            &inbound("0A0000008", NOW, "r3"),
        );
        let signature = honest.last().unwrap().1.clone();
        let mut smuggled: Vec<(&str, String)> = honest
            .iter()
            .filter(|(key, _)| !matches!(*key, "nonce" | "text" | "sig"))
            .cloned()
            .collect();
        smuggled.push(("nonce=r3&text", "Your code: 5512 & more=yes".into()));
        let pairs: Vec<(&str, &str)> = smuggled.iter().map(|(k, v)| (*k, v.as_str())).collect();
        assert_eq!(sign(SignatureMethod::HmacSha256, SECRET, &pairs), signature);
        smuggled.push(("sig", signature));
        assert!(matches!(
            post(&adapter, &form(&smuggled), false),
            Err(WebhookError::Malformed(_))
        ));
    }

    #[test]
    fn a_verified_request_spends_its_nonce_and_a_forged_one_nothing() {
        let params = signed(
            SignatureMethod::HmacSha256,
            &inbound("0A0000007", NOW, "r1"),
        );
        let (verified, spent) = post_spending(&adapter("sha256"), &form(&params), false);
        assert!(verified.is_ok());
        let until = NOW + TOLERANCE_SECS;
        assert_eq!(
            spent,
            [SpentNonce {
                nonce: "nonce:r1".into(),
                last_accepted: until
            }]
        );
        let (verified, spent) = post_spending(&adapter("sha512"), &form(&params), false);
        assert_eq!(verified.unwrap_err(), WebhookError::BadSignature);
        assert!(spent.is_empty());
    }

    #[test]
    fn delivery_receipt_is_a_report() {
        let dlr: Vec<(&str, String)> = vec![
            ("msisdn", "447700900001".into()),
            ("to", "AcmeInc".into()),
            ("network-code", "12345".into()),
            ("messageId", "0A0000008".into()),
            ("price", "0.03330000".into()),
            ("status", "expired".into()),
            ("scts", "2311142213".into()),
            ("err-code", "5".into()),
            ("message-timestamp", "2023-11-14 22:13:20".into()),
            ("timestamp", NOW.to_string()),
            ("nonce", "d1".into()),
        ];
        let event = post(
            &adapter("md5hash"),
            &form(&signed(SignatureMethod::Md5Hash, &dlr)),
            false,
        );
        let WebhookEvent::Report(report) = event.unwrap() else {
            panic!("a report")
        };
        assert_eq!(report.provider_message_id.as_str(), "0A0000008");
        assert_eq!(report.status, DeliveryStatus::Undelivered);
        assert_eq!(report.error_code.as_deref(), Some("5"));
        assert_eq!(report.at_ms, Some(NOW * 1000));
    }

    /// A `type=binary` inbound with hex `data` and `udh` instead of `text`.
    fn binary(id: &str, nonce: &str, udh: &str, data: &str) -> Vec<(&'static str, String)> {
        let mut params = inbound(id, NOW, nonce);
        params.retain(|(key, _)| !matches!(*key, "text" | "keyword"));
        params.iter_mut().find(|(key, _)| *key == "type").unwrap().1 = "binary".into();
        params.push(("udh", udh.into()));
        params.push(("data", data.into()));
        params
    }

    #[test]
    fn binary_sms_carry_their_octets_and_place() {
        let adapter = adapter("sha256");
        let post_binary = |params: Vec<(&'static str, String)>| {
            post(
                &adapter,
                &form(&signed(SignatureMethod::HmacSha256, &params)),
                false,
            )
        };
        // Part 2 of 3 of 8-bit reference 0xA7, UCS-2 "Hi".
        let event = post_binary(binary("0A0000009", "b1", "050003A70302", "00480069"));
        let WebhookEvent::Sms(sms) = event.unwrap() else {
            panic!("an SMS")
        };
        assert_eq!(sms.data.as_deref(), Some([0, b'H', 0, b'i'].as_slice()));
        assert_eq!(sms.text, "");
        let part = sms.part.unwrap();
        assert_eq!(
            (part.reference.as_str(), part.total, part.index),
            ("udh8:167", 3, 2)
        );

        // No header: one whole binary SMS.
        let event = post_binary(binary("0A0000010", "b2", "", "cafe"));
        let WebhookEvent::Sms(sms) = event.unwrap() else {
            panic!("an SMS")
        };
        assert_eq!(
            (sms.data.as_deref(), sms.part),
            (Some([0xca, 0xfe].as_slice()), None)
        );

        // A header without a concatenation element, but Vonage's own concat fields.
        let mut split = binary("0A0000014", "b6", "", "0041");
        split.extend([
            ("concat", "true".into()),
            ("concat-ref", "c9".into()),
            ("concat-total", "2".into()),
            ("concat-part", "2".into()),
        ]);
        let WebhookEvent::Sms(sms) = post_binary(split).unwrap() else {
            panic!("an SMS")
        };
        let part = sms.part.unwrap();
        assert_eq!(
            (part.reference.as_str(), part.total, part.index),
            ("c9", 2, 2)
        );
        assert_eq!(sms.data.as_deref(), Some([0, b'A'].as_slice()));

        // A truncated header: the SMS is kept whole as hex, even with concat fields.
        let mut truncated = binary("0A0000011", "b3", "0500030103", "00");
        truncated.extend([
            ("concat", "true".into()),
            ("concat-ref", "c9".into()),
            ("concat-total", "2".into()),
            ("concat-part", "1".into()),
        ]);
        let WebhookEvent::Sms(sms) = post_binary(truncated).unwrap() else {
            panic!("an SMS")
        };
        assert_eq!((sms.text.as_str(), sms.hex), ("050003010300", true));
        assert_eq!(sms.part, None);
        // Octets that are not hex, or no data at all: refused.
        assert!(matches!(
            post_binary(binary("0A0000012", "b4", "", "xyz")).unwrap_err(),
            WebhookError::Malformed(_)
        ));
        let mut no_data = binary("0A0000013", "b5", "", "");
        no_data.retain(|(key, _)| *key != "data");
        assert_eq!(post_binary(no_data).unwrap_err(), missing("data"));
    }

    #[test]
    fn statuses_map() {
        let cases = [
            ("accepted", DeliveryStatus::Sent),
            ("buffered", DeliveryStatus::Sent),
            ("delivered", DeliveryStatus::Delivered),
            ("failed", DeliveryStatus::Failed),
            ("rejected", DeliveryStatus::Failed),
            ("expired", DeliveryStatus::Undelivered),
            ("unknown", DeliveryStatus::Unknown),
        ];
        for (text, status) in cases {
            assert_eq!(status_of(text), status, "{text}");
        }
    }

    #[test]
    fn unknown_methods_are_refused() {
        assert!(VonageAdapter::new(Secret::new("x"), "sha384").is_err());
        assert!(VonageAdapter::new(Secret::new("x"), "SHA256").is_ok());
    }
}
