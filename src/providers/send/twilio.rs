//! Twilio Programmable Messaging (and SignalWire's compatibility API, which copies it):
//! `POST {base}/2010-04-01/Accounts/{AccountSid}/Messages.json`, form-encoded `To`, `From`,
//! `Body` (and `StatusCallback`), HTTP Basic `AccountSid:AuthToken`. The answer is the
//! Message resource, `201` with its `sid`; errors are `{"code": 21211, "message": …}`.

use reqwest::{Client, RequestBuilder, StatusCode};

use super::{Message, SendError, Sent, http_failure, json, message_id, text_of};
use crate::domain::Secret;

pub(super) fn send(
    http: &Client,
    base: &str,
    account_sid: &str,
    auth_token: &Secret,
    message: &Message<'_>,
) -> RequestBuilder {
    let mut form = vec![
        ("To", message.to.as_str()),
        ("From", message.from.as_str()),
        ("Body", message.text),
    ];
    if let Some(callback) = message.status_callback {
        form.push(("StatusCallback", callback));
    }
    http.post(format!(
        "{base}/2010-04-01/Accounts/{account_sid}/Messages.json"
    ))
    .basic_auth(account_sid, Some(auth_token.expose()))
    .form(&form)
}

pub(super) fn sent(status: StatusCode, body: &[u8]) -> Result<Sent, SendError> {
    let answer = json(body);
    if let Some(error) = http_failure(status, text_of(&answer["code"]).as_deref()) {
        return Err(error);
    }
    Ok(Sent {
        message_id: message_id(answer["sid"].as_str(), status)?,
        part_ids: Vec::new(),
    })
}

/// The account resource: `GET {base}/2010-04-01/Accounts/{AccountSid}.json`.
pub(super) fn probe(
    http: &Client,
    base: &str,
    account_sid: &str,
    auth_token: &Secret,
) -> RequestBuilder {
    http.get(format!("{base}/2010-04-01/Accounts/{account_sid}.json"))
        .basic_auth(account_sid, Some(auth_token.expose()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_sid_and_error_codes() {
        let ok = br#"{"sid": "SM123", "status": "queued"}"#;
        assert_eq!(
            sent(StatusCode::CREATED, ok).unwrap().message_id.as_str(),
            "SM123"
        );
        let bad =
            br#"{"code": 21211, "message": "The 'To' number +1555 is not valid", "status": 400}"#;
        let error = sent(StatusCode::BAD_REQUEST, bad).unwrap_err();
        assert_eq!(
            error,
            SendError::Permanent("HTTP 400, provider error 21211".into())
        );
        assert!(!error.detail().contains("+1555"), "no free text is kept");
        assert!(sent(StatusCode::CREATED, b"{}").unwrap_err().is_retryable());
    }
}
