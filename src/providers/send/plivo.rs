//! Plivo Message API: `POST {base}/v1/Account/{auth_id}/Message/`, JSON `src`, `dst`
//! (digits, no `+`), `text` (and `url` for status callbacks), HTTP Basic
//! `auth_id:auth_token`. The answer is `202 {"message_uuid": ["…"], "api_id": …}`;
//! errors are `{"error": …}` with a 4xx status.

use reqwest::{Client, RequestBuilder, StatusCode};

use super::{Message, SendError, Sent, digits, http_failure, json, message_id};
use crate::domain::Secret;

pub(super) fn send(
    http: &Client,
    base: &str,
    auth_id: &str,
    auth_token: &Secret,
    message: &Message<'_>,
) -> RequestBuilder {
    let mut body = serde_json::json!({
        "src": digits(message.from),
        "dst": digits(message.to),
        "text": message.text,
    });
    if let Some(callback) = message.status_callback {
        body["url"] = callback.into();
        body["method"] = "POST".into();
    }
    http.post(format!("{base}/v1/Account/{auth_id}/Message/"))
        .basic_auth(auth_id, Some(auth_token.expose()))
        .json(&body)
}

pub(super) fn sent(status: StatusCode, body: &[u8]) -> Result<Sent, SendError> {
    if let Some(error) = http_failure(status, None) {
        return Err(error);
    }
    let answer = json(body);
    Ok(Sent {
        message_id: message_id(answer["message_uuid"][0].as_str(), status)?,
        part_ids: Vec::new(),
    })
}

/// The account details: `GET {base}/v1/Account/{auth_id}/`.
pub(super) fn probe(
    http: &Client,
    base: &str,
    auth_id: &str,
    auth_token: &Secret,
) -> RequestBuilder {
    http.get(format!("{base}/v1/Account/{auth_id}/"))
        .basic_auth(auth_id, Some(auth_token.expose()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_uuid() {
        let ok = br#"{"api_id": "a1", "message": "message(s) queued", "message_uuid": ["db3ce55a-7f1d-11e1-8ea7-1231380bc196"]}"#;
        assert_eq!(
            sent(StatusCode::ACCEPTED, ok).unwrap().message_id.as_str(),
            "db3ce55a-7f1d-11e1-8ea7-1231380bc196"
        );
        let bad = br#"{"api_id": "a2", "error": "invalid dst"}"#;
        assert!(
            !sent(StatusCode::BAD_REQUEST, bad)
                .unwrap_err()
                .is_retryable()
        );
    }
}
