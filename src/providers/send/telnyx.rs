//! Telnyx Messaging API v2: `POST {base}/v2/messages`, JSON `from`, `to`, `text` (and
//! `messaging_profile_id`, `webhook_url`), `Authorization: Bearer <API key>`. The answer is
//! `{"data": {"id": …}}`; errors are `{"errors": [{"code": "40310", …}]}`.

use reqwest::{Client, RequestBuilder, StatusCode};

use super::{Message, SendError, Sent, http_failure, json, message_id, text_of};
use crate::domain::Secret;

pub(super) fn send(
    http: &Client,
    base: &str,
    api_key: &Secret,
    messaging_profile_id: Option<&str>,
    message: &Message<'_>,
) -> RequestBuilder {
    let mut body = serde_json::json!({
        "from": message.from.as_str(),
        "to": message.to.as_str(),
        "text": message.text,
    });
    if let Some(profile) = messaging_profile_id {
        body["messaging_profile_id"] = profile.into();
    }
    if let Some(callback) = message.status_callback {
        body["webhook_url"] = callback.into();
    }
    http.post(format!("{base}/v2/messages"))
        .bearer_auth(api_key.expose())
        .json(&body)
}

pub(super) fn sent(status: StatusCode, body: &[u8]) -> Result<Sent, SendError> {
    let answer = json(body);
    if let Some(error) = http_failure(status, text_of(&answer["errors"][0]["code"]).as_deref()) {
        return Err(error);
    }
    Ok(Sent {
        message_id: message_id(answer["data"]["id"].as_str(), status)?,
        part_ids: Vec::new(),
    })
}

/// The account balance: `GET {base}/v2/balance`.
pub(super) fn probe(http: &Client, base: &str, api_key: &Secret) -> RequestBuilder {
    http.get(format!("{base}/v2/balance"))
        .bearer_auth(api_key.expose())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_id_and_error_codes() {
        let ok = br#"{"data": {"id": "40385f64-5717-4562-b3fc-2c963f66afa6", "record_type": "message"}}"#;
        assert_eq!(
            sent(StatusCode::OK, ok).unwrap().message_id.as_str(),
            "40385f64-5717-4562-b3fc-2c963f66afa6"
        );
        let bad = br#"{"errors": [{"code": "40310", "title": "Invalid 'to' address"}]}"#;
        assert_eq!(
            sent(StatusCode::UNPROCESSABLE_ENTITY, bad).unwrap_err(),
            SendError::Permanent("HTTP 422, provider error 40310".into())
        );
    }
}
