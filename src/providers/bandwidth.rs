//! Bandwidth Messaging v2 callbacks: a JSON array of events, authenticated only by HTTP
//! Basic credentials (the application's `CallbackCreds`). There is no signature and no
//! timestamp, so nothing but the message id guards against a replay: the store dedupes.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::Value;
use subtle::ConstantTimeEq;

use super::fields::{header, json_required, json_str, malformed, parse_json, rfc3339_ms};
use super::{WebhookError, WebhookEvent, WebhookRequest};
use crate::domain::{DeliveryReport, DeliveryStatus, InboundSms, Secret};

const AUTHORIZATION: &str = "authorization";

#[derive(Debug, Clone)]
pub struct BandwidthAdapter {
    username: String,
    password: Secret,
}

impl BandwidthAdapter {
    pub fn new(username: &str, password: Secret) -> Self {
        Self {
            username: username.to_owned(),
            password,
        }
    }

    /// Every event of the batch, in order (Bandwidth may put several in one request).
    pub fn verify_and_parse(
        &self,
        request: &WebhookRequest<'_>,
    ) -> Result<Vec<WebhookEvent>, WebhookError> {
        let (username, password) = basic_credentials(header(request.headers, AUTHORIZATION)?)
            .ok_or(WebhookError::Unsigned(AUTHORIZATION))?;
        // Both compared in full, so timing does not tell which one was wrong.
        let authentic = username.as_bytes().ct_eq(self.username.as_bytes())
            & password.as_bytes().ct_eq(self.password.expose().as_bytes());
        if !bool::from(authentic) {
            return Err(WebhookError::BadSignature);
        }
        match parse_json(request.body)? {
            Value::Array(events) => usable(events.iter().map(parse_event)),
            event @ Value::Object(_) => Ok(vec![parse_event(&event)?]),
            _ => Err(malformed("the body is not a JSON array of events")),
        }
    }
}

/// The events of a batch that can be used. One that cannot (a sender that is not a
/// number, text over the size limit) never will be, however often Bandwidth retries the
/// batch, and refusing the request would lose the good ones with it once the retries stop:
/// it is logged and left out. Only a batch with nothing usable is refused.
fn usable(
    events: impl Iterator<Item = Result<WebhookEvent, WebhookError>>,
) -> Result<Vec<WebhookEvent>, WebhookError> {
    let mut good = Vec::new();
    let mut first_error = None;
    for (index, event) in events.enumerate() {
        match event {
            Ok(event) => good.push(event),
            Err(error) => {
                tracing::warn!(index, %error, "a Bandwidth event that cannot be used is left out");
                first_error.get_or_insert(error);
            }
        }
    }
    match first_error {
        Some(error) if good.is_empty() => Err(error),
        _ => Ok(good),
    }
}

/// `(user, password)` of a `Basic` authorization value.
fn basic_credentials(value: &str) -> Option<(String, String)> {
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(BASE64.decode(encoded.trim()).ok()?).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

fn parse_event(event: &Value) -> Result<WebhookEvent, WebhookError> {
    let kind = json_required(event, &["type"])?;
    let time_ms = |path: &[&str]| -> Result<Option<i64>, WebhookError> {
        json_str(event, path)?
            .map(|at| rfc3339_ms(&path.join("."), &at))
            .transpose()
    };
    let status = match &*kind {
        "message-received" => {
            let id = json_required(event, &["message", "id"])?;
            let from = json_required(event, &["message", "from"])?;
            // `to` names the number this callback is for (a group message has several).
            let to = match json_str(event, &["to"])? {
                Some(to) => to,
                None => json_required(event, &["message", "to", "0"])?,
            };
            let text = json_str(event, &["message", "text"])?.unwrap_or_default();
            let received_at_ms = match time_ms(&["message", "time"])? {
                Some(at) => Some(at),
                None => time_ms(&["time"])?,
            };
            return Ok(InboundSms::new(&id, &from, &to, &text, received_at_ms)?.into());
        }
        "message-sending" => DeliveryStatus::Sent,
        "message-delivered" | "message-read" => DeliveryStatus::Delivered,
        "message-failed" => DeliveryStatus::Failed,
        _ => return Ok(WebhookEvent::Ignored),
    };
    let id = json_required(event, &["message", "id"])?;
    let code = json_str(event, &["errorCode"])?;
    let at_ms = json_str(event, &["time"])?.and_then(|at| rfc3339_ms("time", &at).ok());
    Ok(DeliveryReport::new(&id, status, code.as_deref(), at_ms)?.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderMap, HeaderValue};

    const USER: &str = "bw-callback";
    const PASSWORD: &str = "bw-callback-password";
    const RECEIVED: &str = r#"[{"type":"message-received","time":"2023-11-14T22:13:20.000Z","description":"Incoming message received","to":"+14155550100","message":{"id":"1589228074636lm4k2je7j7jklbn2","owner":"+14155550100","applicationId":"93de2206-9669-4e07-948d-329f4b722ee2","time":"2023-11-14T22:13:20.000Z","segmentCount":1,"direction":"in","to":["+14155550100"],"from":"+14155550001","text":"Your code is 4242","media":[],"tag":""}}]"#;

    fn auth(user: &str, password: &str) -> HeaderMap {
        let mut map = HeaderMap::new();
        let value = format!("Basic {}", BASE64.encode(format!("{user}:{password}")));
        map.insert(AUTHORIZATION, HeaderValue::from_str(&value).unwrap());
        map
    }

    fn verify(headers: &HeaderMap, body: &str) -> Result<Vec<WebhookEvent>, WebhookError> {
        BandwidthAdapter::new(USER, Secret::new(PASSWORD)).verify_and_parse(&WebhookRequest {
            public_url: "https://burnbox.example.org/webhooks/bandwidth",
            headers,
            body: body.as_bytes(),
            now_unix: 1_700_000_000,
            spent: Default::default(),
        })
    }

    #[test]
    fn right_credentials_pass() {
        let events = verify(&auth(USER, PASSWORD), RECEIVED).unwrap();
        let [WebhookEvent::Sms(sms)] = events.as_slice() else {
            panic!("one SMS: {events:?}")
        };
        assert_eq!(
            sms.provider_message_id.as_str(),
            "1589228074636lm4k2je7j7jklbn2"
        );
        assert_eq!(sms.from.as_str(), "+14155550001");
        assert_eq!(sms.to.as_str(), "+14155550100");
        assert_eq!(sms.text, "Your code is 4242");
        assert_eq!(sms.received_at_ms, Some(1_700_000_000_000));
    }

    #[test]
    fn wrong_or_missing_credentials_are_refused() {
        for (user, password) in [(USER, "wrong"), ("someone", PASSWORD), ("", "")] {
            assert_eq!(
                verify(&auth(user, password), RECEIVED).unwrap_err(),
                WebhookError::BadSignature
            );
        }
        assert_eq!(
            verify(&HeaderMap::new(), RECEIVED).unwrap_err(),
            WebhookError::Unsigned(AUTHORIZATION)
        );
        let mut bearer = HeaderMap::new();
        bearer.insert(AUTHORIZATION, HeaderValue::from_static("Bearer abc"));
        assert_eq!(
            verify(&bearer, RECEIVED).unwrap_err(),
            WebhookError::Unsigned(AUTHORIZATION)
        );
    }

    #[test]
    fn a_batch_yields_every_event() {
        let body = r#"[
            {"type":"message-delivered","time":"2023-11-14T22:13:21.000Z","to":"+14155550001","message":{"id":"out-1","direction":"out"}},
            {"type":"message-failed","time":"2023-11-14T22:13:22.000Z","errorCode":4720,"to":"+14155550002","message":{"id":"out-2","direction":"out"}},
            {"type":"message-sending","time":"2023-11-14T22:13:23.000Z","message":{"id":"out-3"}},
            {"type":"message-read","message":{"id":"out-4"}},
            {"type":"something-new","message":{"id":"out-5"}}
        ]"#;
        let events = verify(&auth(USER, PASSWORD), body).unwrap();
        let statuses: Vec<_> = events
            .iter()
            .map(|event| match event {
                WebhookEvent::Report(r) => Some((
                    r.provider_message_id.as_str(),
                    r.status,
                    r.error_code.clone(),
                )),
                _ => None,
            })
            .collect();
        assert_eq!(
            statuses,
            vec![
                Some(("out-1", DeliveryStatus::Delivered, None)),
                Some(("out-2", DeliveryStatus::Failed, Some("4720".to_owned()))),
                Some(("out-3", DeliveryStatus::Sent, None)),
                Some(("out-4", DeliveryStatus::Delivered, None)),
                None,
            ]
        );
    }

    #[test]
    fn an_unusable_event_is_left_out_and_the_rest_kept() {
        let received = |id: &str, from: &str| {
            format!(
                r#"{{"type":"message-received","time":"2023-11-14T22:13:20.000Z","to":"+14155550001","message":{{"id":"{id}","from":"{from}","text":"hi","time":"2023-11-14T22:13:20.000Z"}}}}"#
            )
        };
        // No sender: it can never be stored.
        let broken = r#"{"type":"message-received","to":"+14155550001","message":{"id":"in-1"}}"#;
        let body = format!("[{broken},{}]", received("in-2", "+14155550100"));
        let events = verify(&auth(USER, PASSWORD), &body).unwrap();
        let ids: Vec<_> = events
            .iter()
            .map(|event| match event {
                WebhookEvent::Sms(sms) => sms.provider_message_id.as_str(),
                _ => "not an SMS",
            })
            .collect();
        assert_eq!(ids, ["in-2"]);
        // Nothing usable at all: refused, so the problem is seen.
        let body = format!("[{broken}]");
        assert!(verify(&auth(USER, PASSWORD), &body).is_err());
    }

    #[test]
    fn not_an_array_is_malformed() {
        assert!(matches!(
            verify(&auth(USER, PASSWORD), "\"hello\""),
            Err(WebhookError::Malformed(_))
        ));
    }
}
