//! Plivo messaging callbacks, signed with the account's Auth Token.
//!
//! V3 (`X-Plivo-Signature-V3`) covers the URL and every parameter; V2 covers only the URL
//! without its query, plus a nonce, so it is accepted only when no V3 signature is sent,
//! and a request checked by V3 spends its V2 nonce as well.
//! Neither carries a timestamp: the nonce, spent for a day (on disk, see `store::nonces`),
//! is the only replay guard (and the message id dedupes beyond that).

use std::borrow::Cow;
use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::{Choice, ConstantTimeEq};

use super::fields::{
    Form, form_get, form_params, form_required, international_sender, optional_header, query_of,
    utc_datetime_ms,
};
use super::{Ack, WebhookError, WebhookEvent, WebhookRequest};
use crate::domain::{DeliveryReport, DeliveryStatus, InboundSms, Secret};

/// Plivo reads Message XML from the answer; an empty `<Response>` sends no reply.
pub const ACK: Ack = Ack {
    content_type: "application/xml",
    body: r#"<?xml version="1.0" encoding="UTF-8"?><Response></Response>"#,
};

const V3_HEADERS: [&str; 2] = ["X-Plivo-Signature-V3", "X-Plivo-Signature-Ma-V3"];
const V3_NONCE: &str = "X-Plivo-Signature-V3-Nonce";
const V2_HEADERS: [&str; 2] = ["X-Plivo-Signature-V2", "X-Plivo-Signature-Ma-V2"];
const V2_NONCE: &str = "X-Plivo-Signature-V2-Nonce";

/// Plivo retries a callback for 24 hours; a nonce is remembered as long.
pub const NONCE_TTL_SECS: i64 = 24 * 3600;

/// GET callbacks carry their parameters in the URL; POST ones in a form body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
}

#[derive(Debug, Clone)]
pub struct PlivoAdapter {
    token: Secret,
}

impl PlivoAdapter {
    /// `token` is the Auth Token of the (sub)account the numbers belong to.
    pub fn new(token: Secret) -> Self {
        Self { token }
    }

    pub fn verify_and_parse(
        &self,
        request: &WebhookRequest<'_>,
    ) -> Result<WebhookEvent, WebhookError> {
        let params = form_params(request.public_url, request.body);
        let key = self.token.expose().as_bytes();
        let v3 = signature_values(request, &V3_HEADERS)?;
        let (authentic, nonce) = if v3.is_empty() {
            let v2 = signature_values(request, &V2_HEADERS)?;
            if v2.is_empty() {
                return Err(WebhookError::Unsigned(V3_HEADERS[0]));
            }
            let nonce = nonce_header(request, V2_NONCE)?;
            let expected = sign_v2(key, request.public_url, nonce);
            (any_matches(&expected, &v2), format!("v2:{nonce}"))
        } else {
            let nonce = nonce_header(request, V3_NONCE)?;
            let method = if request.body.is_empty() {
                Method::Get
            } else {
                Method::Post
            };
            let expected = sign_v3(
                key,
                request.public_url,
                nonce,
                method,
                &body_params(method, &params),
            );
            (any_matches(&expected, &v3), format!("v3:{nonce}"))
        };
        if !bool::from(authentic) {
            return Err(WebhookError::BadSignature);
        }
        let remember_until = request.now_unix.saturating_add(NONCE_TTL_SECS);
        // Plivo sends its V2 signature alongside V3. Strip V3 from a captured request and
        // its V2 signature still holds for any body (V2 covers only the URL), so the V2
        // nonce of a request checked by V3 is spent too: the stripped copy is a replay.
        if nonce.starts_with("v3:")
            && let Some(v2_nonce) = optional_header(request.headers, V2_NONCE)?
            && !v2_nonce.is_empty()
        {
            request
                .spent
                .note(&format!("v2:{v2_nonce}"), remember_until);
        }
        request.spent.note(&nonce, remember_until);
        parse(&params)
    }
}

/// The signatures sent under `names`; V3 headers may hold several, comma-separated (one
/// per auth token Plivo signed with).
fn signature_values<'r>(
    request: &'r WebhookRequest<'_>,
    names: &[&'static str],
) -> Result<Vec<&'r str>, WebhookError> {
    let mut values = Vec::new();
    for name in names {
        if let Some(value) = optional_header(request.headers, name)? {
            values.extend(value.split(',').map(str::trim).filter(|v| !v.is_empty()));
        }
    }
    Ok(values)
}

fn nonce_header<'r>(
    request: &'r WebhookRequest<'_>,
    name: &'static str,
) -> Result<&'r str, WebhookError> {
    optional_header(request.headers, name)?
        .filter(|nonce| !nonce.is_empty())
        .ok_or(WebhookError::Unsigned(name))
}

fn any_matches(expected: &str, provided: &[&str]) -> Choice {
    let mut matched = Choice::from(0);
    for value in provided {
        matched |= expected.as_bytes().ct_eq(value.as_bytes());
    }
    matched
}

/// The parameters the V3 string covers besides the URL: a POST's form fields. A GET's
/// fields are already in the URL's query, which the string includes.
fn body_params<'p>(method: Method, params: &'p Form<'_>) -> Vec<(&'p str, &'p str)> {
    match method {
        Method::Get => Vec::new(),
        Method::Post => params.iter().map(|(k, v)| (&**k, &**v)).collect(),
    }
}

/// V2: base64 HMAC-SHA256 of `scheme://host/path` (no query) followed by the nonce.
pub fn sign_v2(token: &[u8], url: &str, nonce: &str) -> String {
    let mut data = base_url(url).to_owned();
    data.push_str(nonce);
    hmac_b64(token, data.as_bytes())
}

/// V3: base64 HMAC-SHA256 of [`v3_string`] + `"."` + nonce.
pub fn sign_v3(
    token: &[u8],
    url: &str,
    nonce: &str,
    method: Method,
    params: &[(&str, &str)],
) -> String {
    let mut data = v3_string(url, method, params);
    data.push('.');
    data.push_str(nonce);
    hmac_b64(token, data.as_bytes())
}

/// What V3 signs before the nonce, as plivo-python builds it:
/// - GET: `base?` + the URL's query and `params` merged, sorted, as `k=v` joined by `&`;
/// - POST: `base?` + the URL's sorted query + `.` (when there is a query) + the sorted
///   params as `kv` with no separators; with no params at all, as GET.
///
/// Values are the decoded ones; repeated keys list each value, values sorted.
pub fn v3_string(url: &str, method: Method, params: &[(&str, &str)]) -> String {
    let mut out = base_url(url).to_owned();
    let mut query = sorted(form_urlencoded::parse(query_of(url).as_bytes()));
    if method == Method::Get {
        for (name, value) in params {
            query
                .entry(Cow::Borrowed(*name))
                .or_default()
                .push(Cow::Borrowed(*value));
        }
        for values in query.values_mut() {
            values.sort();
        }
    }
    let query_string = query
        .iter()
        .flat_map(|(name, values)| values.iter().map(move |value| format!("{name}={value}")))
        .collect::<Vec<_>>()
        .join("&");
    let with_body = method == Method::Post && !params.is_empty();
    if !query_string.is_empty() || with_body {
        out.push('?');
        out.push_str(&query_string);
    }
    if with_body {
        if !query_string.is_empty() {
            out.push('.');
        }
        let body = sorted(
            params
                .iter()
                .map(|(k, v)| (Cow::Borrowed(*k), Cow::Borrowed(*v))),
        );
        for (name, values) in &body {
            for value in values {
                out.push_str(name);
                out.push_str(value);
            }
        }
    }
    out
}

fn sorted<'a>(
    pairs: impl Iterator<Item = (Cow<'a, str>, Cow<'a, str>)>,
) -> BTreeMap<Cow<'a, str>, Vec<Cow<'a, str>>> {
    let mut map: BTreeMap<Cow<'a, str>, Vec<Cow<'a, str>>> = BTreeMap::new();
    for (name, value) in pairs {
        map.entry(name).or_default().push(value);
    }
    for values in map.values_mut() {
        values.sort();
    }
    map
}

/// `scheme://netloc/path`: the URL without query or fragment.
fn base_url(url: &str) -> &str {
    let end = url.find(['?', '#']).unwrap_or(url.len());
    &url[..end]
}

fn hmac_b64(key: &[u8], data: &[u8]) -> String {
    // HMAC takes keys of any length, so this cannot fail; an empty result never matches.
    let Ok(mut mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(key) else {
        return String::new();
    };
    mac.update(data);
    BASE64.encode(mac.finalize().into_bytes())
}

fn parse(params: &Form<'_>) -> Result<WebhookEvent, WebhookError> {
    let id = form_required(params, "MessageUUID")?;
    if let Some(status) = form_get(params, "Status") {
        // Report times are informative; a format we do not know must not bounce the report.
        let at_ms = ["DeliveryReportTime", "SentTime", "MessageTime"]
            .iter()
            .find_map(|name| form_get(params, name).filter(|t| !t.is_empty()))
            .and_then(|time| utc_datetime_ms("DeliveryReportTime", time).ok());
        let report =
            DeliveryReport::new(id, status_of(status), form_get(params, "ErrorCode"), at_ms)?;
        return Ok(report.into());
    }
    if form_get(params, "Type").is_some_and(|kind| kind.eq_ignore_ascii_case("whatsapp")) {
        // The same callback URL can receive WhatsApp messages; they are not SMS.
        return Ok(WebhookEvent::Ignored);
    }
    let from = form_required(params, "From")?;
    let to = form_required(params, "To")?;
    let text = form_get(params, "Text").unwrap_or("");
    Ok(InboundSms::new(id, &international_sender(from), to, text, None)?.into())
}

/// `Status` of a message status callback.
fn status_of(status: &str) -> DeliveryStatus {
    match status {
        "queued" => DeliveryStatus::Queued,
        "sent" => DeliveryStatus::Sent,
        "delivered" | "read" => DeliveryStatus::Delivered,
        "failed" | "rejected" => DeliveryStatus::Failed,
        "undelivered" => DeliveryStatus::Undelivered,
        _ => DeliveryStatus::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderMap, HeaderValue};

    const V3_TOKEN: &str = "Y2Q2ZDgxZmY5YWRiOTI5YmQ1Njg0MTAxZWIyOTc4";
    const V3_NONCE_VALUE: &str = "31627761595286130198";
    const V3_URL_QUERY: &str =
        "https://plivobin.non-prod.plivops.com/api/v1/validate_signature03.xml/?a=b&c=d";
    const V3_URL: &str = "https://plivobin.non-prod.plivops.com/api/v1/validate_signature03.xml";
    const V3_PARAMS: &[(&str, &str)] = &[
        ("Direction", "outbound"),
        ("From", "19792014278"),
        ("ALegUUID", "3e82ae9d-2c78-4d85-b1a4-6eae7dbafb36"),
        ("CallStatus", "in-progress"),
        ("BillRate", "0.002"),
        ("ParentAuthID", "MANWVLYTK4ZWU1YTY4QA"),
        (
            "To",
            "sip:PlivoSignature382029104058171078704104@phone-qa.voice.plivodev.com",
        ),
        ("ALegRequestUUID", "3e82ae9d-2c78-4d85-b1a4-6eae7dbafb36"),
        ("CallUUID", "3e82ae9d-2c78-4d85-b1a4-6eae7dbafb36"),
        ("RequestUUID", "3e82ae9d-2c78-4d85-b1a4-6eae7dbafb36"),
        (
            "SIP-H-To",
            "<sip:PlivoSignature382029104058171078704104@52.9.11.55;transport=udp>;tag=1",
        ),
        ("SessionStart", "2020-04-08 11:34:33.238707"),
        ("Event", "StartApp"),
    ];

    const TOKEN: &str = "MAtestauthtoken0000000000000000";
    const URL: &str = "https://burnbox.example.org/webhooks/plivo";
    const NOW: i64 = 1_700_000_000;

    fn sms_params(uuid: &str) -> Vec<(&'static str, String)> {
        vec![
            ("From", "447700900001".into()),
            ("To", "14155550100".into()),
            ("Text", "Your code is 123 456".into()),
            ("Type", "sms".into()),
            ("MessageUUID", uuid.into()),
            ("Units", "1".into()),
            ("TotalRate", "0.00000".into()),
            ("TotalAmount", "0.00000".into()),
            ("MessageIntent", "".into()),
        ]
    }

    fn form(params: &[(&str, String)]) -> String {
        form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params)
            .finish()
    }

    fn signed_v3(url: &str, params: &[(&str, String)], nonce: &str) -> HeaderMap {
        let pairs: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let signature = sign_v3(TOKEN.as_bytes(), url, nonce, Method::Post, &pairs);
        headers(&[("X-Plivo-Signature-V3", &signature), (V3_NONCE, nonce)])
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    fn verify_with(
        adapter: &PlivoAdapter,
        url: &str,
        headers: &HeaderMap,
        body: &str,
    ) -> Result<WebhookEvent, WebhookError> {
        adapter.verify_and_parse(&WebhookRequest {
            public_url: url,
            headers,
            body: body.as_bytes(),
            now_unix: NOW,
            spent: Default::default(),
        })
    }

    /// The nonces a request spends once verified (none if it is refused).
    fn spent_by(headers: &HeaderMap, body: &str) -> Vec<String> {
        let request = WebhookRequest {
            public_url: URL,
            headers,
            body: body.as_bytes(),
            now_unix: NOW,
            spent: Default::default(),
        };
        let verified = adapter().verify_and_parse(&request);
        let spent = request.spent.take();
        assert!(
            verified.is_ok() || spent.is_empty(),
            "{verified:?} spent {spent:?}"
        );
        assert!(
            spent
                .iter()
                .all(|n| n.last_accepted == NOW + NONCE_TTL_SECS)
        );
        spent.into_iter().map(|n| n.nonce).collect()
    }

    fn adapter() -> PlivoAdapter {
        PlivoAdapter::new(Secret::new(TOKEN))
    }

    #[test]
    fn vector_v2() {
        assert_eq!(
            sign_v2(b"my_auth_token", "https://answer.url", "12345"),
            "ehV3IKhLysWBxC1sy8INm0qGoQYdYsHwuoKjsX7FsXc="
        );
    }

    #[test]
    fn vectors_v3() {
        let cases = [
            (
                V3_URL_QUERY,
                Method::Post,
                "k7Pusd4OxCIjR5IfA9iedDNu/h/gbdYqdzG/MiYtd1c=",
            ),
            (
                V3_URL_QUERY,
                Method::Get,
                "UBq8jAtd32wR8EK9VgxbBn4n5rpI/l1H9iN4WfSEHFQ=",
            ),
            (
                V3_URL,
                Method::Post,
                "iAjE5QqI37mbkYe4w3jTMudqEzbDufdqi7sYwTu64e0=",
            ),
            (
                V3_URL,
                Method::Get,
                "i/MQsaQSAd6fiKhOh2qeeeLHZ9faldADSb3/7+Akfbc=",
            ),
        ];
        for (url, method, expected) in cases {
            assert_eq!(
                sign_v3(V3_TOKEN.as_bytes(), url, V3_NONCE_VALUE, method, V3_PARAMS),
                expected,
                "{method:?} {url}"
            );
        }
    }

    #[test]
    fn vector_v3_post_verifies_through_the_adapter_then_is_not_an_sms() {
        // The vector is a voice callback: authentic, but without a MessageUUID.
        let body = form(
            &V3_PARAMS
                .iter()
                .map(|(k, v)| (*k, (*v).to_owned()))
                .collect::<Vec<_>>(),
        );
        let headers = headers(&[
            (
                "X-Plivo-Signature-V3",
                "k7Pusd4OxCIjR5IfA9iedDNu/h/gbdYqdzG/MiYtd1c=",
            ),
            (V3_NONCE, V3_NONCE_VALUE),
        ]);
        let adapter = PlivoAdapter::new(Secret::new(V3_TOKEN));
        let result = verify_with(&adapter, V3_URL_QUERY, &headers, &body);
        assert_eq!(
            result.unwrap_err(),
            super::super::fields::missing("MessageUUID")
        );
    }

    #[test]
    fn vector_v3_get_verifies_with_params_in_the_query() {
        let query = form(
            &V3_PARAMS
                .iter()
                .map(|(k, v)| (*k, (*v).to_owned()))
                .collect::<Vec<_>>(),
        );
        let url = format!("{V3_URL}?{query}");
        let signature = sign_v3(V3_TOKEN.as_bytes(), &url, V3_NONCE_VALUE, Method::Get, &[]);
        assert_eq!(signature, "i/MQsaQSAd6fiKhOh2qeeeLHZ9faldADSb3/7+Akfbc=");
    }

    #[test]
    fn v3_sms_post_passes_and_yields_fields() {
        let params = sms_params("m-1");
        let event = verify_with(
            &adapter(),
            URL,
            &signed_v3(URL, &params, "n1"),
            &form(&params),
        );
        let WebhookEvent::Sms(sms) = event.unwrap() else {
            panic!("an SMS")
        };
        assert_eq!(sms.provider_message_id.as_str(), "m-1");
        assert_eq!(sms.from.as_str(), "+447700900001");
        assert_eq!(sms.to.as_str(), "+14155550100");
        assert_eq!(sms.text, "Your code is 123 456");
    }

    /// A captured request signed both ways cannot be replayed with its V3 signature
    /// removed and another body: V2 alone would still hold, as it does not cover the
    /// body. So a request checked by V3 spends its V2 nonce too, and the stripped copy
    /// spends that same nonce (which the webhook handler then refuses as spent).
    #[test]
    fn a_request_checked_by_v3_spends_its_v2_nonce_too() {
        let params = sms_params("m-real");
        let v2 = sign_v2(TOKEN.as_bytes(), URL, "v2-nonce");
        let mut both = signed_v3(URL, &params, "v3-nonce");
        both.insert("X-Plivo-Signature-V2", HeaderValue::from_str(&v2).unwrap());
        both.insert(V2_NONCE, HeaderValue::from_static("v2-nonce"));
        assert_eq!(
            spent_by(&both, &form(&params)),
            ["v2:v2-nonce", "v3:v3-nonce"]
        );

        let forged = sms_params("m-forged");
        let v2_only = headers(&[("X-Plivo-Signature-V2", &v2), (V2_NONCE, "v2-nonce")]);
        assert_eq!(spent_by(&v2_only, &form(&forged)), ["v2:v2-nonce"]);
    }

    #[test]
    fn several_v3_values_in_one_header_pass_if_one_matches() {
        let params = sms_params("m-2");
        let pairs: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let good = sign_v3(TOKEN.as_bytes(), URL, "n2", Method::Post, &pairs);
        let bad = sign_v3(b"other-token", URL, "n2", Method::Post, &pairs);
        let value = format!("{bad}, {good}");
        let headers = headers(&[("X-Plivo-Signature-V3", &value), (V3_NONCE, "n2")]);
        assert!(verify_with(&adapter(), URL, &headers, &form(&params)).is_ok());
        // Only wrong values: refused.
        let headers = super::tests::headers(&[("X-Plivo-Signature-V3", &bad), (V3_NONCE, "n3")]);
        assert_eq!(
            verify_with(&adapter(), URL, &headers, &form(&params)).unwrap_err(),
            WebhookError::BadSignature
        );
    }

    #[test]
    fn forged_or_tampered_is_refused() {
        let params = sms_params("m-3");
        let headers = signed_v3(URL, &params, "n4");
        let mut tampered = params.clone();
        tampered[2].1 = "Your code is 999 999".into();
        assert_eq!(
            verify_with(&adapter(), URL, &headers, &form(&tampered)).unwrap_err(),
            WebhookError::BadSignature
        );
        let other = PlivoAdapter::new(Secret::new("wrong"));
        assert_eq!(
            verify_with(&other, URL, &headers, &form(&params)).unwrap_err(),
            WebhookError::BadSignature
        );
    }

    #[test]
    fn a_verified_request_spends_its_nonce_and_a_forged_one_nothing() {
        let params = sms_params("m-4");
        let headers = signed_v3(URL, &params, "n5");
        assert_eq!(spent_by(&headers, &form(&params)), ["v3:n5"]);
        let mut tampered = params.clone();
        tampered[2].1 = "Your code is 000 000".into();
        assert!(spent_by(&headers, &form(&tampered)).is_empty());
    }

    #[test]
    fn v2_alone_is_accepted_and_spends_its_nonce() {
        let params = sms_params("m-5");
        let signature = sign_v2(TOKEN.as_bytes(), URL, "n6");
        let headers = headers(&[("X-Plivo-Signature-V2", &signature), (V2_NONCE, "n6")]);
        assert!(verify_with(&adapter(), URL, &headers, &form(&params)).is_ok());
        assert_eq!(spent_by(&headers, &form(&params)), ["v2:n6"]);
    }

    #[test]
    fn a_bad_v3_is_not_rescued_by_a_good_v2() {
        let params = sms_params("m-6");
        let v2 = sign_v2(TOKEN.as_bytes(), URL, "n7");
        let headers = headers(&[
            ("X-Plivo-Signature-V3", "AAAA"),
            (V3_NONCE, "n7"),
            ("X-Plivo-Signature-V2", &v2),
            (V2_NONCE, "n7"),
        ]);
        assert_eq!(
            verify_with(&adapter(), URL, &headers, &form(&params)).unwrap_err(),
            WebhookError::BadSignature
        );
    }

    #[test]
    fn unsigned_is_refused() {
        let params = sms_params("m-7");
        assert_eq!(
            verify_with(&adapter(), URL, &HeaderMap::new(), &form(&params)).unwrap_err(),
            WebhookError::Unsigned("X-Plivo-Signature-V3")
        );
        let headers = headers(&[("X-Plivo-Signature-V3", "x")]);
        assert_eq!(
            verify_with(&adapter(), URL, &headers, &form(&params)).unwrap_err(),
            WebhookError::Unsigned(V3_NONCE)
        );
    }

    #[test]
    fn get_callback_verifies_against_its_query() {
        let params = sms_params("m-8");
        let url = format!("{URL}?{}", form(&params));
        let signature = sign_v3(TOKEN.as_bytes(), &url, "n8", Method::Get, &[]);
        let headers = headers(&[("X-Plivo-Signature-V3", &signature), (V3_NONCE, "n8")]);
        let event = verify_with(&adapter(), &url, &headers, "").unwrap();
        assert!(
            matches!(event, WebhookEvent::Sms(sms) if sms.provider_message_id.as_str() == "m-8")
        );
    }

    #[test]
    fn status_callback_is_a_report() {
        let params: Vec<(&str, String)> = vec![
            ("MessageUUID", "out-1".into()),
            ("Status", "undelivered".into()),
            ("ErrorCode", "200".into()),
            ("To", "447700900001".into()),
            ("From", "14155550100".into()),
            ("DeliveryReportTime", "2024-01-01 00:00:01.500000".into()),
        ];
        let event = verify_with(
            &adapter(),
            URL,
            &signed_v3(URL, &params, "n9"),
            &form(&params),
        );
        let WebhookEvent::Report(report) = event.unwrap() else {
            panic!("a report")
        };
        assert_eq!(report.provider_message_id.as_str(), "out-1");
        assert_eq!(report.status, DeliveryStatus::Undelivered);
        assert_eq!(report.error_code.as_deref(), Some("200"));
        assert_eq!(report.at_ms, Some(1_704_067_201_500));
    }

    #[test]
    fn statuses_map() {
        let cases = [
            ("queued", DeliveryStatus::Queued),
            ("sent", DeliveryStatus::Sent),
            ("delivered", DeliveryStatus::Delivered),
            ("read", DeliveryStatus::Delivered),
            ("failed", DeliveryStatus::Failed),
            ("rejected", DeliveryStatus::Failed),
            ("undelivered", DeliveryStatus::Undelivered),
            ("mystery", DeliveryStatus::Unknown),
        ];
        for (text, status) in cases {
            assert_eq!(status_of(text), status, "{text}");
        }
    }
}
