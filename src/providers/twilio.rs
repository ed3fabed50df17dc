//! Twilio webhooks, and SignalWire's Twilio-compatible ones.
//!
//! Twilio signs `url + sorted params` with HMAC-SHA1 keyed by the Auth Token; for JSON
//! bodies it puts a SHA-256 of the body into the URL and signs the URL alone. SignalWire's
//! compatibility API uses the same algorithm with the project Signing Key, and its
//! RELAY/SWML callbacks sign `url + raw body` and send the MAC as hex ("scheme A").

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use http::HeaderMap;
use sha1::Sha1;
use sha2::{Digest, Sha256};
use subtle::{Choice, ConstantTimeEq};

use super::fields::{is_json, query_of};
use super::{Ack, WebhookError, WebhookEvent, WebhookRequest};
use crate::domain::{DeliveryReport, DeliveryStatus, InboundSms, Secret};

/// Empty TwiML: acknowledge without sending a reply SMS.
pub const ACK: Ack = Ack {
    content_type: "text/xml; charset=utf-8",
    body: r#"<?xml version="1.0" encoding="UTF-8"?><Response></Response>"#,
};

const TWILIO_HEADER: &str = "X-Twilio-Signature";
const SIGNALWIRE_HEADER: &str = "X-SignalWire-Signature";
const BODY_HASH_PARAM: &str = "bodySHA256";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flavour {
    Twilio,
    Signalwire,
}

/// Verifies Twilio-style webhooks. `Debug` is safe to log: [`Secret`] redacts itself.
#[derive(Debug, Clone)]
pub struct TwilioAdapter {
    key: Secret,
    flavour: Flavour,
}

impl TwilioAdapter {
    /// Twilio, keyed by the account's Auth Token.
    pub fn twilio(token: Secret) -> Self {
        Self {
            key: token,
            flavour: Flavour::Twilio,
        }
    }

    /// SignalWire, keyed by the project Signing Key (`PSK_…`), not the API token.
    pub fn signalwire(signing_key: Secret) -> Self {
        Self {
            key: signing_key,
            flavour: Flavour::Signalwire,
        }
    }

    pub fn verify_and_parse(
        &self,
        request: &WebhookRequest<'_>,
    ) -> Result<WebhookEvent, WebhookError> {
        let signatures = self.signature_headers(request.headers)?;
        let key = self.key.expose().as_bytes();
        let url = request.public_url;

        if is_json(request.headers) {
            let authentic = match query_param(url, BODY_HASH_PARAM) {
                Some(claimed) => {
                    let body_hash = body_sha256_hex(request.body);
                    // Evaluate both checks fully so timing does not reveal which one failed.
                    let hash_ok = body_hash.as_bytes().ct_eq(claimed.as_bytes());
                    hash_ok & base64_signature_matches(key, url, &[], &signatures)
                }
                None if self.flavour == Flavour::Signalwire => {
                    hex_signature_matches(key, url, request.body, &signatures)
                }
                None => Choice::from(0),
            };
            if !bool::from(authentic) {
                return Err(WebhookError::BadSignature);
            }
            return sms_from_json(request.body);
        }

        let params: Vec<(Cow<'_, str>, Cow<'_, str>)> =
            form_urlencoded::parse(request.body).collect();
        let borrowed: Vec<(&str, &str)> = params.iter().map(|(n, v)| (&**n, &**v)).collect();
        if !bool::from(base64_signature_matches(key, url, &borrowed, &signatures)) {
            return Err(WebhookError::BadSignature);
        }
        if request.body.is_empty() {
            // A GET webhook (or an empty POST) carries its fields in the signed URL.
            let query: Vec<(Cow<'_, str>, Cow<'_, str>)> =
                form_urlencoded::parse(query_of(url).as_bytes()).collect();
            let borrowed: Vec<(&str, &str)> = query.iter().map(|(n, v)| (&**n, &**v)).collect();
            return sms_from_form(&borrowed);
        }
        sms_from_form(&borrowed)
    }

    /// The signature header values this flavour honours, in the order they are tried.
    fn signature_headers<'h>(&self, headers: &'h HeaderMap) -> Result<Vec<&'h str>, WebhookError> {
        let names: &[&str] = match self.flavour {
            Flavour::Twilio => &[TWILIO_HEADER],
            // SignalWire sends its own header, Twilio's, or both, depending on the product.
            Flavour::Signalwire => &[SIGNALWIRE_HEADER, TWILIO_HEADER],
        };
        let present: Vec<&http::HeaderValue> =
            names.iter().filter_map(|name| headers.get(*name)).collect();
        if present.is_empty() {
            return Err(WebhookError::Unsigned(names[0]));
        }
        // A value that is not visible ASCII cannot be a valid signature; treating it as an
        // empty candidate makes the request fail as BadSignature rather than as unsigned.
        Ok(present
            .into_iter()
            .map(|value| value.to_str().unwrap_or(""))
            .collect())
    }
}

/// The base64 Twilio signature of `url` with form `params` (pass no params for JSON bodies
/// and GET requests). Used by `burnbox simulate`, tests and benchmarks.
pub fn sign(token: &str, url: &str, params: &[(&str, &str)]) -> String {
    hmac_sha1(token.as_bytes(), &[string_to_sign(url, params).as_bytes()])
        .map(|mac| BASE64.encode(mac))
        .unwrap_or_default()
}

/// The lowercase hex SHA-256 Twilio puts into the `bodySHA256` query parameter.
pub fn body_sha256_hex(body: &[u8]) -> String {
    hex::encode(Sha256::digest(body))
}

/// SignalWire scheme A: lowercase hex HMAC-SHA1 of `url + body`.
pub fn sign_signalwire_json(key: &str, url: &str, body: &[u8]) -> String {
    hmac_sha1(key.as_bytes(), &[url.as_bytes(), body])
        .map(hex::encode)
        .unwrap_or_default()
}

/// `url` followed by `name + value` for each name in ascending order and each distinct
/// value of that name in ascending order, as the Twilio SDKs build it.
fn string_to_sign(url: &str, params: &[(&str, &str)]) -> String {
    let mut out = String::from(url);
    out.push_str(&params_to_sign(params));
    out
}

/// The part of the string to sign after the URL: each name, in ascending order, with
/// each of its distinct values, also in ascending order.
fn params_to_sign(params: &[(&str, &str)]) -> String {
    let mut sorted: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (name, value) in params {
        sorted.entry(name).or_default().insert(value);
    }
    let mut out = String::new();
    for (name, values) in sorted {
        for value in values {
            out.push_str(name);
            out.push_str(value);
        }
    }
    out
}

/// `None` only if the MAC rejects the key, which HMAC never does; callers treat it as a
/// mismatch so that an impossible failure can never turn into an accepted request.
fn hmac_sha1(key: &[u8], parts: &[&[u8]]) -> Option<Vec<u8>> {
    let mut mac = <Hmac<Sha1> as KeyInit>::new_from_slice(key).ok()?;
    for part in parts {
        mac.update(part);
    }
    Some(mac.finalize().into_bytes().to_vec())
}

fn base64_signature_matches(
    key: &[u8],
    url: &str,
    params: &[(&str, &str)],
    signatures: &[&str],
) -> Choice {
    let provided: Vec<Vec<u8>> = signatures
        .iter()
        .filter_map(|s| BASE64.decode(s.trim()).ok())
        .collect();
    // The parameters are the same for every URL form: sort them once.
    let suffix = params_to_sign(params);
    let mut matched = Choice::from(0);
    for candidate in url_candidates(url) {
        let Some(expected) = hmac_sha1(key, &[candidate.as_bytes(), suffix.as_bytes()]) else {
            continue;
        };
        for signature in &provided {
            matched |= expected.as_slice().ct_eq(signature.as_slice());
        }
    }
    matched
}

fn hex_signature_matches(key: &[u8], url: &str, body: &[u8], signatures: &[&str]) -> Choice {
    let provided: Vec<String> = signatures
        .iter()
        .map(|s| s.trim().to_ascii_lowercase())
        .collect();
    let mut matched = Choice::from(0);
    for candidate in url_candidates(url) {
        let Some(expected) = hmac_sha1(key, &[candidate.as_bytes(), body]).map(hex::encode) else {
            continue;
        };
        for signature in &provided {
            matched |= expected.as_bytes().ct_eq(signature.as_bytes());
        }
    }
    matched
}

/// The URL as given, plus the two forms the SDKs also accept because Twilio's backend is
/// inconsistent about ports: with the scheme's default port added (only when the URL has
/// no port) and with any port removed.
fn url_candidates(url: &str) -> Vec<String> {
    let mut candidates = vec![url.to_owned()];
    let Some((scheme, rest)) = url.split_once("://") else {
        return candidates;
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let host_start = authority.rfind('@').map_or(0, |at| at + 1);
    let host_and_port = &authority[host_start..];
    let port_colon = if host_and_port.starts_with('[') {
        // IPv6 literal: only a colon after the closing bracket starts a port.
        host_and_port.find("]:").map(|bracket| bracket + 1)
    } else {
        host_and_port.rfind(':')
    };
    let without_port = match port_colon {
        Some(colon) => &authority[..host_start + colon],
        None => authority,
    };

    let mut push = |candidate: String| {
        if !candidates.contains(&candidate) {
            candidates.push(candidate);
        }
    };
    push(format!("{scheme}://{without_port}{tail}"));
    if port_colon.is_none() {
        let default_port = if scheme.eq_ignore_ascii_case("https") {
            Some(443)
        } else if scheme.eq_ignore_ascii_case("http") {
            Some(80)
        } else {
            None
        };
        if let Some(port) = default_port {
            push(format!("{scheme}://{authority}:{port}{tail}"));
        }
    }
    candidates
}

fn query_param(url: &str, name: &str) -> Option<String> {
    form_urlencoded::parse(query_of(url).as_bytes())
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

/// Builds the event from Twilio's field names, given a lookup that reports a field as
/// absent (`Ok(None)`) or unusable (`Err`): a status callback (`MessageStatus`, or a
/// `SmsStatus` other than `received`) is a delivery report, anything else a message.
fn sms_from_fields<'a>(
    field: impl Fn(&str) -> Result<Option<&'a str>, WebhookError>,
) -> Result<WebhookEvent, WebhookError> {
    let mut id = None;
    // SmsSid and SmsMessageSid are legacy duplicates of MessageSid.
    for name in ["MessageSid", "SmsSid", "SmsMessageSid"] {
        if let Some(value) = field(name)?.filter(|value| !value.is_empty()) {
            if id.is_some_and(|id| id != value) {
                return Err(WebhookError::Malformed(format!(
                    "`{name}` differs from the message id"
                )));
            }
            id = id.or(Some(value));
        }
    }
    let id = id.ok_or_else(|| missing("MessageSid"))?;
    // The signed text joins names and values with no separator, so the parameters of a
    // captured request can be cut apart differently under the same signature: an id
    // swallowing the parameters after it would be new to dedupe. Real ids have a fixed
    // shape that cannot hold a parameter name.
    if !is_message_sid(id) {
        return Err(WebhookError::Malformed(
            "`MessageSid` is neither a Twilio nor a SignalWire message id".to_owned(),
        ));
    }
    let status = match field("MessageStatus")? {
        Some(status) => Some(status),
        None => field("SmsStatus")?,
    };
    if let Some(status) = status.filter(|s| !matches!(*s, "received" | "receiving")) {
        let error_code = field("ErrorCode")?;
        return Ok(DeliveryReport::new(id, status_of(status), error_code, None)?.into());
    }
    let from = field("From")?.ok_or_else(|| missing("From"))?;
    let to = field("To")?.ok_or_else(|| missing("To"))?;
    let body = field("Body")?.unwrap_or("");
    Ok(InboundSms::new(id, from, to, body, None)?.into())
}

/// Twilio's (and SignalWire's) `MessageStatus` values in our vocabulary.
fn status_of(status: &str) -> DeliveryStatus {
    match status {
        "accepted" | "scheduled" | "queued" => DeliveryStatus::Queued,
        "sending" | "sent" => DeliveryStatus::Sent,
        "delivered" | "read" => DeliveryStatus::Delivered,
        "failed" | "canceled" => DeliveryStatus::Failed,
        "undelivered" => DeliveryStatus::Undelivered,
        _ => DeliveryStatus::Unknown,
    }
}

/// Twilio's message SIDs (`SM`/`MM` and 32 hex digits; two capitals for whatever prefix
/// comes next) or SignalWire's (a UUID).
fn is_message_sid(id: &str) -> bool {
    let hex =
        |part: &str, len: usize| part.len() == len && part.bytes().all(|b| b.is_ascii_hexdigit());
    let twilio = id.len() == 34
        && id.as_bytes()[..2].iter().all(u8::is_ascii_uppercase)
        && hex(&id[2..], 32);
    let mut parts = id.split('-');
    let uuid = [8, 4, 4, 4, 12]
        .iter()
        .all(|len| parts.next().is_some_and(|part| hex(part, *len)))
        && parts.next().is_none();
    twilio || uuid
}

fn missing(name: &str) -> WebhookError {
    WebhookError::Malformed(format!("the webhook has no `{name}` field"))
}

fn sms_from_form(params: &[(&str, &str)]) -> Result<WebhookEvent, WebhookError> {
    sms_from_fields(|name| {
        Ok(params
            .iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| *value))
    })
}

fn sms_from_json(body: &[u8]) -> Result<WebhookEvent, WebhookError> {
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|_| WebhookError::Malformed("the body is not valid JSON".to_owned()))?;
    let object = value
        .as_object()
        .ok_or_else(|| WebhookError::Malformed("the JSON body is not an object".to_owned()))?;
    sms_from_fields(|name| match object.get(name) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(text)) => Ok(Some(text.as_str())),
        Some(_) => Err(WebhookError::Malformed(format!(
            "the field `{name}` is not a string"
        ))),
    })
}

#[cfg(test)]
// A failed unwrap is how a test reports an unexpected outcome.
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use http::HeaderValue;

    const TOKEN: &str = "12345";
    const BASE_URL: &str = "https://mycompany.com/myapp.php?foo=1&bar=2";
    const PARAMS: &[(&str, &str)] = &[
        ("CallSid", "CA1234567890ABCDE"),
        ("Digits", "1234"),
        ("From", "+14158675309"),
        ("To", "+18005551212"),
        ("Caller", "+14158675309"),
    ];
    const JSON_BODY: &str = r#"{"property": "value", "boolean": true}"#;
    const JSON_BODY_HASH: &str = "0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620";

    const SW_KEY: &str = "PSK_7TruNcSNTxp4zNrykMj4EPzF";
    const SW_URL: &str = "https://81f2-2-45-18-191.ngrok-free.app/";
    const SW_BODY: &str = r#"{"call":{"call_id":"b5d63b2e-f75b-4dc8-b6d4-269b635f96c0","node_id":"fa3570ae-f8bd-42c2-83f4-9950d906c91b@us-west","segment_id":"b5d63b2e-f75b-4dc8-b6d4-269b635f96c0","call_state":"created","direction":"inbound","type":"phone","from":"+12135877632","to":"+12089806814","from_number":"+12135877632","to_number":"+12089806814","project_id":"4b7ae78a-d02e-4889-a63b-08b156d5916e","space_id":"62615f44-2a34-4235-b38b-76b5a1de6ef8"},"vars":{}}"#;
    const SW_SIGNATURE: &str = "b18500437ebb010220ddd770cbe6fd531ea0ba0d";

    const SMS_URL: &str = "https://burnbox.example.org/webhooks/twilio/main";
    const SMS_PARAMS: &[(&str, &str)] = &[
        ("ToCountry", "US"),
        ("SmsMessageSid", "SM0123456789abcdef0123456789abcdef"),
        ("NumMedia", "0"),
        ("SmsSid", "SM0123456789abcdef0123456789abcdef"),
        ("SmsStatus", "received"),
        ("Body", "Your code is 481 516"),
        ("To", "+14155550199"),
        ("NumSegments", "1"),
        ("MessageSid", "SM0123456789abcdef0123456789abcdef"),
        ("AccountSid", "AC0123456789abcdef0123456789abcdef"),
        ("From", "+14155550100"),
        ("FromCity", ""),
        ("ApiVersion", "2010-04-01"),
    ];

    fn form_body(params: &[(&str, &str)]) -> String {
        form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params)
            .finish()
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    fn form_headers(signature: &str) -> HeaderMap {
        headers(&[
            ("content-type", "application/x-www-form-urlencoded"),
            ("x-twilio-signature", signature),
        ])
    }

    fn verify(
        adapter: &TwilioAdapter,
        url: &str,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<InboundSms, WebhookError> {
        verify_event(adapter, url, headers, body).map(|event| match event {
            WebhookEvent::Sms(sms) => sms,
            other => panic!("not a message: {other:?}"),
        })
    }

    fn verify_event(
        adapter: &TwilioAdapter,
        url: &str,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<WebhookEvent, WebhookError> {
        adapter.verify_and_parse(&WebhookRequest {
            public_url: url,
            headers,
            body,
            now_unix: 1_700_000_000,
            spent: Default::default(),
        })
    }

    /// The signed text has no separators, so a captured request's parameters can be cut
    /// apart anew under the same signature; an id that swallows the ones after it must
    /// not pass as a new message.
    #[test]
    fn parameters_cut_apart_anew_do_not_make_a_new_message() {
        let url = "https://example.com/webhooks/twilio";
        let sid = "SM0123456789abcdef0123456789abcdef";
        let original = [
            ("MessageSid", sid),
            ("NumMedia", "0"),
            ("NumSegments", "1"),
            ("From", "+14155550100"),
            ("To", "+14155550199"),
            ("Body", "code 1234"),
        ];
        let headers = form_headers(&sign(TOKEN, url, &original));
        let swallowed = format!("{sid}NumMedia0NumSegments1");
        let resplit = [
            ("MessageSid", swallowed.as_str()),
            ("From", "+14155550100"),
            ("To", "+14155550199"),
            ("Body", "code 1234"),
        ];
        assert_eq!(sign(TOKEN, url, &resplit), sign(TOKEN, url, &original));
        let event = verify_event(&twilio(), url, &headers, form_body(&resplit).as_bytes());
        assert!(
            matches!(&event, Err(WebhookError::Malformed(m)) if m.contains("MessageSid")),
            "{event:?}"
        );
        // A legacy copy of the id that disagrees is refused as well.
        let disagreeing = [
            ("MessageSid", sid),
            ("SmsSid", "SM00000000000000000000000000000001"),
            ("From", "+14155550100"),
            ("To", "+14155550199"),
        ];
        let headers = form_headers(&sign(TOKEN, url, &disagreeing));
        let event = verify_event(&twilio(), url, &headers, form_body(&disagreeing).as_bytes());
        assert!(
            matches!(event, Err(WebhookError::Malformed(_))),
            "{event:?}"
        );
        // SignalWire's ids are UUIDs.
        assert!(is_message_sid("b3877c40-da60-4998-90ad-b792e98472af"));
        assert!(!is_message_sid("b3877c40-da60-4998-90ad-b792e98472af-00"));
        assert!(!is_message_sid("SM42"));
    }

    #[test]
    fn status_callbacks_are_reports() {
        let url = "https://example.com/webhooks/twilio/status";
        let params = [
            ("MessageSid", "SM0123456789abcdef0123456789abcd42"),
            ("SmsSid", "SM0123456789abcdef0123456789abcd42"),
            ("MessageStatus", "undelivered"),
            ("SmsStatus", "undelivered"),
            ("ErrorCode", "30003"),
            ("To", "+14155550199"),
            ("From", "+14155550100"),
        ];
        let headers = form_headers(&sign(TOKEN, url, &params));
        let event = verify_event(&twilio(), url, &headers, form_body(&params).as_bytes());
        let WebhookEvent::Report(report) = event.unwrap() else {
            panic!("a report")
        };
        assert_eq!(
            report.provider_message_id.as_str(),
            "SM0123456789abcdef0123456789abcd42"
        );
        assert_eq!(report.status, DeliveryStatus::Undelivered);
        assert_eq!(report.error_code.as_deref(), Some("30003"));
        for (twilio, ours) in [
            ("queued", DeliveryStatus::Queued),
            ("sent", DeliveryStatus::Sent),
            ("delivered", DeliveryStatus::Delivered),
            ("read", DeliveryStatus::Delivered),
            ("failed", DeliveryStatus::Failed),
            ("partially_delivered", DeliveryStatus::Unknown),
        ] {
            assert_eq!(status_of(twilio), ours, "{twilio}");
        }
    }

    fn twilio() -> TwilioAdapter {
        TwilioAdapter::twilio(Secret::new(TOKEN))
    }

    #[test]
    fn vector_form_params() {
        assert_eq!(
            sign(TOKEN, BASE_URL, PARAMS),
            "RSOYDt4T1cUTdK1PDd93/VVr8B8="
        );
    }

    #[test]
    fn vector_string_to_sign_sorts_params() {
        assert_eq!(
            string_to_sign(BASE_URL, PARAMS),
            "https://mycompany.com/myapp.php?foo=1&bar=2CallSidCA1234567890ABCDE\
             Caller+14158675309Digits1234From+14158675309To+18005551212"
        );
    }

    #[test]
    fn vector_https_explicit_443() {
        let url = "https://mycompany.com:443/myapp.php?foo=1&bar=2";
        assert_eq!(sign(TOKEN, url, PARAMS), "kvajT1Ptam85bY51eRf/AJRuM3w=");
    }

    #[test]
    fn vector_http_explicit_80() {
        let url = "http://mycompany.com:80/myapp.php?foo=1&bar=2";
        assert_eq!(sign(TOKEN, url, PARAMS), "0ZXoZLH/DfblKGATFgpif+LLRf4=");
    }

    #[test]
    fn vector_http_port_1234() {
        let url = "http://mycompany.com:1234/myapp.php?foo=1&bar=2";
        assert_eq!(sign(TOKEN, url, PARAMS), "Zmvh+3yNM1Phv2jhDCwEM3q5ebU=");
    }

    #[test]
    fn vector_repeated_params_sorted_and_distinct() {
        let params = [
            ("Sid", "CA123"),
            ("SidAccount", "AC123"),
            ("Digits", "5678"),
            ("Digits", "1234"),
            ("Digits", "1234"),
        ];
        assert_eq!(
            sign(TOKEN, BASE_URL, &params),
            "IK+Dwps556ElfBT0I3Rgjkr1wJU="
        );
    }

    #[test]
    fn vector_json_body_hash() {
        assert_eq!(body_sha256_hex(JSON_BODY.as_bytes()), JSON_BODY_HASH);
    }

    #[test]
    fn vector_json_body_url_signature() {
        let url = format!("{BASE_URL}&bodySHA256={JSON_BODY_HASH}");
        assert_eq!(sign(TOKEN, &url, &[]), "a9nBmqA0ju/hNViExpshrM61xv4=");
    }

    #[test]
    fn vector_json_body_verifies_then_needs_sms_fields() {
        let url = format!("{BASE_URL}&bodySHA256={JSON_BODY_HASH}");
        let headers = headers(&[
            ("content-type", "application/json"),
            ("x-twilio-signature", "a9nBmqA0ju/hNViExpshrM61xv4="),
        ]);
        let result = verify(&twilio(), &url, &headers, JSON_BODY.as_bytes());
        assert_eq!(result.unwrap_err(), missing("MessageSid"));
    }

    #[test]
    fn vector_signalwire_scheme_a() {
        assert_eq!(
            sign_signalwire_json(SW_KEY, SW_URL, SW_BODY.as_bytes()),
            SW_SIGNATURE
        );
    }

    #[test]
    fn vector_signalwire_scheme_b_is_twilio() {
        let adapter = TwilioAdapter::signalwire(Secret::new(TOKEN));
        let headers = headers(&[("x-signalwire-signature", "RSOYDt4T1cUTdK1PDd93/VVr8B8=")]);
        // The vector is a voice callback, so it authenticates and then lacks SMS fields.
        let result = verify(&adapter, BASE_URL, &headers, form_body(PARAMS).as_bytes());
        assert_eq!(result.unwrap_err(), missing("MessageSid"));
    }

    fn signalwire_json(key: &str, url: &str, body: &str) -> Result<InboundSms, WebhookError> {
        let adapter = TwilioAdapter::signalwire(Secret::new(key));
        let headers = headers(&[
            ("content-type", "application/json"),
            ("x-signalwire-signature", SW_SIGNATURE),
        ]);
        verify(&adapter, url, &headers, body.as_bytes())
    }

    #[test]
    fn signalwire_scheme_a_verifies_vector() {
        // Authentic, but a call event rather than an SMS.
        let result = signalwire_json(SW_KEY, SW_URL, SW_BODY);
        assert_eq!(result.unwrap_err(), missing("MessageSid"));
    }

    #[test]
    fn signalwire_scheme_a_rejects_wrong_key() {
        let result = signalwire_json("PSK_wrong", SW_URL, SW_BODY);
        assert_eq!(result.unwrap_err(), WebhookError::BadSignature);
    }

    #[test]
    fn signalwire_scheme_a_rejects_altered_body() {
        let body = SW_BODY.replace("+12135877632", "+12135877633");
        let result = signalwire_json(SW_KEY, SW_URL, &body);
        assert_eq!(result.unwrap_err(), WebhookError::BadSignature);
    }

    #[test]
    fn signalwire_scheme_a_rejects_altered_url() {
        let result = signalwire_json(SW_KEY, "https://81f2-2-45-18-191.ngrok-free.app/x", SW_BODY);
        assert_eq!(result.unwrap_err(), WebhookError::BadSignature);
    }

    #[test]
    fn twilio_json_without_body_hash_is_rejected() {
        let headers = headers(&[
            ("content-type", "application/json"),
            ("x-twilio-signature", &sign(TOKEN, BASE_URL, &[])),
        ]);
        let result = verify(&twilio(), BASE_URL, &headers, JSON_BODY.as_bytes());
        assert_eq!(result.unwrap_err(), WebhookError::BadSignature);
    }

    #[test]
    fn valid_sms_form_passes() {
        let signature = sign(TOKEN, SMS_URL, SMS_PARAMS);
        let body = form_body(SMS_PARAMS);
        let sms = verify(
            &twilio(),
            SMS_URL,
            &form_headers(&signature),
            body.as_bytes(),
        )
        .unwrap();
        assert_eq!(
            sms.provider_message_id.as_str(),
            "SM0123456789abcdef0123456789abcdef"
        );
        assert_eq!(sms.from.as_str(), "+14155550100");
        assert_eq!(sms.to.as_str(), "+14155550199");
        assert_eq!(sms.text, "Your code is 481 516");
        assert_eq!(sms.received_at_ms, None);
    }

    #[test]
    fn legacy_sid_and_missing_body_are_accepted() {
        let params = [
            ("SmsSid", "SM00000000000000000000000000000001"),
            ("From", "Google"),
            ("To", "+14155550199"),
        ];
        let signature = sign(TOKEN, SMS_URL, &params);
        let body = form_body(&params);
        let sms = verify(
            &twilio(),
            SMS_URL,
            &form_headers(&signature),
            body.as_bytes(),
        )
        .unwrap();
        assert_eq!(
            sms.provider_message_id.as_str(),
            "SM00000000000000000000000000000001"
        );
        assert_eq!(sms.text, "");
    }

    #[test]
    fn get_webhook_reads_fields_from_signed_query() {
        let url = format!("{SMS_URL}?{}", form_body(SMS_PARAMS));
        let headers = headers(&[("x-twilio-signature", &sign(TOKEN, &url, &[]))]);
        let sms = verify(&twilio(), &url, &headers, b"").unwrap();
        assert_eq!(sms.text, "Your code is 481 516");
    }

    #[test]
    fn signature_for_443_form_validates_url_without_port() {
        let signature = sign(
            TOKEN,
            "https://burnbox.example.org:443/webhooks/twilio/main",
            SMS_PARAMS,
        );
        let body = form_body(SMS_PARAMS);
        assert!(
            verify(
                &twilio(),
                SMS_URL,
                &form_headers(&signature),
                body.as_bytes()
            )
            .is_ok()
        );
    }

    #[test]
    fn signature_without_port_validates_url_with_443() {
        let signature = sign(TOKEN, SMS_URL, SMS_PARAMS);
        let body = form_body(SMS_PARAMS);
        let url = "https://burnbox.example.org:443/webhooks/twilio/main";
        assert!(verify(&twilio(), url, &form_headers(&signature), body.as_bytes()).is_ok());
    }

    #[test]
    fn port_forms_for_http_and_custom_ports() {
        let candidates = url_candidates("http://h.example/p?q=1");
        assert_eq!(
            candidates,
            ["http://h.example/p?q=1", "http://h.example:80/p?q=1"]
        );
        let candidates = url_candidates("https://user:pw@[::1]:8443/p");
        assert_eq!(
            candidates,
            ["https://user:pw@[::1]:8443/p", "https://user:pw@[::1]/p"]
        );
    }

    #[test]
    fn flipped_body_byte_is_rejected() {
        let signature = sign(TOKEN, SMS_URL, SMS_PARAMS);
        let mut body = form_body(SMS_PARAMS).into_bytes();
        let index = body.iter().position(|&b| b == b'4').unwrap();
        body[index] = b'5';
        let result = verify(&twilio(), SMS_URL, &form_headers(&signature), &body);
        assert_eq!(result.unwrap_err(), WebhookError::BadSignature);
    }

    #[test]
    fn missing_header_is_unsigned() {
        let body = form_body(SMS_PARAMS);
        let headers = headers(&[("content-type", "application/x-www-form-urlencoded")]);
        let result = verify(&twilio(), SMS_URL, &headers, body.as_bytes());
        assert_eq!(
            result.unwrap_err(),
            WebhookError::Unsigned("X-Twilio-Signature")
        );
    }

    #[test]
    fn garbage_signature_is_bad() {
        let body = form_body(SMS_PARAMS);
        let result = verify(
            &twilio(),
            SMS_URL,
            &form_headers("not base64!"),
            body.as_bytes(),
        );
        assert_eq!(result.unwrap_err(), WebhookError::BadSignature);
    }

    #[test]
    fn signed_body_missing_to_is_malformed() {
        let params: Vec<(&str, &str)> = SMS_PARAMS
            .iter()
            .copied()
            .filter(|(name, _)| *name != "To")
            .collect();
        let signature = sign(TOKEN, SMS_URL, &params);
        let body = form_body(&params);
        let result = verify(
            &twilio(),
            SMS_URL,
            &form_headers(&signature),
            body.as_bytes(),
        );
        let err = result.unwrap_err();
        assert!(
            matches!(&err, WebhookError::Malformed(m) if m.contains("`To`")),
            "{err:?}"
        );
    }

    #[test]
    fn invalid_recipient_is_invalid_message() {
        let params = [
            ("MessageSid", "SM00000000000000000000000000000001"),
            ("From", "+14155550100"),
            ("To", "nobody"),
        ];
        let signature = sign(TOKEN, SMS_URL, &params);
        let body = form_body(&params);
        let result = verify(
            &twilio(),
            SMS_URL,
            &form_headers(&signature),
            body.as_bytes(),
        );
        assert!(matches!(result, Err(WebhookError::InvalidMessage(_))));
    }

    fn json_sms() -> String {
        r#"{"MessageSid":"SM00000000000000000000000000000009","From":"+14155550100","To":"+14155550199","Body":"hi"}"#.to_owned()
    }

    #[test]
    fn json_sms_with_body_hash_passes() {
        let body = json_sms();
        let url = format!("{SMS_URL}?bodySHA256={}", body_sha256_hex(body.as_bytes()));
        let headers = headers(&[
            ("content-type", "application/json; charset=utf-8"),
            ("x-twilio-signature", &sign(TOKEN, &url, &[])),
        ]);
        let sms = verify(&twilio(), &url, &headers, body.as_bytes()).unwrap();
        assert_eq!(
            sms.provider_message_id.as_str(),
            "SM00000000000000000000000000000009"
        );
        assert_eq!(sms.text, "hi");
    }

    #[test]
    fn json_with_tampered_body_hash_is_rejected() {
        let body = json_sms();
        let mut hash = body_sha256_hex(body.as_bytes());
        hash.replace_range(0..1, if hash.starts_with('0') { "1" } else { "0" });
        // Signed correctly over the tampered URL: only the hash check can catch it.
        let url = format!("{SMS_URL}?bodySHA256={hash}");
        let headers = headers(&[
            ("content-type", "application/json"),
            ("x-twilio-signature", &sign(TOKEN, &url, &[])),
        ]);
        let result = verify(&twilio(), &url, &headers, body.as_bytes());
        assert_eq!(result.unwrap_err(), WebhookError::BadSignature);
    }

    #[test]
    fn signalwire_accepts_its_header_twilio_does_not() {
        let signature = sign(TOKEN, SMS_URL, SMS_PARAMS);
        let body = form_body(SMS_PARAMS);
        let headers = headers(&[
            ("content-type", "application/x-www-form-urlencoded"),
            ("x-signalwire-signature", &signature),
        ]);
        let signalwire = TwilioAdapter::signalwire(Secret::new(TOKEN));
        assert!(verify(&signalwire, SMS_URL, &headers, body.as_bytes()).is_ok());
        let result = verify(&twilio(), SMS_URL, &headers, body.as_bytes());
        assert_eq!(
            result.unwrap_err(),
            WebhookError::Unsigned("X-Twilio-Signature")
        );
    }

    #[test]
    fn signalwire_accepts_twilio_header_and_names_its_own_when_unsigned() {
        let signature = sign(TOKEN, SMS_URL, SMS_PARAMS);
        let body = form_body(SMS_PARAMS);
        let signalwire = TwilioAdapter::signalwire(Secret::new(TOKEN));
        assert!(
            verify(
                &signalwire,
                SMS_URL,
                &form_headers(&signature),
                body.as_bytes()
            )
            .is_ok()
        );
        let result = verify(&signalwire, SMS_URL, &HeaderMap::new(), body.as_bytes());
        assert_eq!(
            result.unwrap_err(),
            WebhookError::Unsigned("X-SignalWire-Signature")
        );
    }
}
