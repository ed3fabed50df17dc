//! Sending SMS through provider REST APIs, and the cheap authenticated call that tells
//! whether a provider account answers at all (the health probe).
//!
//! One small file per API builds its requests and reads its answers; this file runs
//! them and sorts failures into retryable (the provider or the network is having a bad
//! moment: 5xx, 429, timeouts, refused connections, refused credentials) and permanent
//! (the provider looked at this message and will never take it: 4xx validation).
//!
//! Failure details are built from HTTP statuses and provider error *codes* only, never
//! from the provider's free-text messages: those often quote the recipient's number, and
//! attempt details are stored and shown.

mod plivo;
mod telnyx;
mod twilio;
mod vonage;

use std::time::Duration;

use reqwest::StatusCode;

use crate::domain::{PhoneNumber, ProviderMessageId, Secret};

/// The most of a provider's answer we read; real ones are a few hundred bytes.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Connecting may take at most this long, within the overall timeout: a provider that
/// does not accept a connection in 5 s is down for our purposes.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How to reach one provider account's REST API.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Scheme, host and path prefix without a trailing slash, e.g. `https://api.twilio.com`
    /// or a SignalWire space's `https://example.signalwire.com/api/laml`.
    pub base_url: String,
    pub credentials: ApiCredentials,
    /// Where the provider should post delivery reports (`<public_url>/webhooks/<name>/status`),
    /// when the public URL is known; otherwise the account's own setting applies.
    pub status_callback: Option<String>,
}

/// API credentials, per API family.
#[derive(Debug, Clone)]
pub enum ApiCredentials {
    /// Twilio, and SignalWire's compatibility API: HTTP Basic with the account (project)
    /// id and the auth (API) token.
    Twilio {
        account_sid: String,
        auth_token: Secret,
    },
    /// Vonage SMS API: key and secret as request parameters.
    Vonage { api_key: Secret, api_secret: Secret },
    /// Plivo: HTTP Basic with the auth id and auth token.
    Plivo { auth_id: String, auth_token: Secret },
    /// Telnyx API v2: a bearer API key; the messaging profile is optional when the
    /// sending number is assigned to one.
    Telnyx {
        api_key: Secret,
        messaging_profile_id: Option<String>,
    },
}

/// Why a send or probe failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Worth trying again, here later or through another provider now.
    #[error("{0}")]
    Retryable(String),
    /// The provider refused this message for good; no retry or other provider helps.
    #[error("{0}")]
    Permanent(String),
}

impl SendError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Retryable(_))
    }

    pub fn detail(&self) -> &str {
        match self {
            Self::Retryable(detail) | Self::Permanent(detail) => detail,
        }
    }
}

/// What the provider answered to a send: its id for the message, and for providers
/// that split long texts into separately tracked parts (Vonage), the other parts' ids,
/// whose delivery reports must find the message too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    pub message_id: ProviderMessageId,
    pub part_ids: Vec<ProviderMessageId>,
}

/// A configured account's API client.
#[derive(Debug, Clone)]
pub struct SendClient {
    http: reqwest::Client,
    api: ApiConfig,
}

impl SendClient {
    /// A client whose every call gives up after `timeout`.
    pub fn new(api: ApiConfig, timeout: Duration) -> Result<Self, String> {
        crate::tls::install_crypto_provider();
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(CONNECT_TIMEOUT.min(timeout))
            .user_agent(concat!("burnbox/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|error| format!("cannot build an HTTP client: {error}"))?;
        Ok(Self { http, api })
    }

    /// Sends `text` from `from` to `to`.
    pub async fn send(
        &self,
        from: &PhoneNumber,
        to: &PhoneNumber,
        text: &str,
    ) -> Result<Sent, SendError> {
        let message = Message {
            from,
            to,
            text,
            status_callback: self.api.status_callback.as_deref(),
        };
        let base = self.api.base_url.as_str();
        let request = match &self.api.credentials {
            ApiCredentials::Twilio {
                account_sid,
                auth_token,
            } => twilio::send(&self.http, base, account_sid, auth_token, &message),
            ApiCredentials::Vonage {
                api_key,
                api_secret,
            } => vonage::send(&self.http, base, api_key, api_secret, &message),
            ApiCredentials::Plivo {
                auth_id,
                auth_token,
            } => plivo::send(&self.http, base, auth_id, auth_token, &message),
            ApiCredentials::Telnyx {
                api_key,
                messaging_profile_id,
            } => telnyx::send(
                &self.http,
                base,
                api_key,
                messaging_profile_id.as_deref(),
                &message,
            ),
        };
        let (status, body) = execute(request).await?;
        match &self.api.credentials {
            ApiCredentials::Twilio { .. } => twilio::sent(status, &body),
            ApiCredentials::Vonage { .. } => vonage::sent(status, &body),
            ApiCredentials::Plivo { .. } => plivo::sent(status, &body),
            ApiCredentials::Telnyx { .. } => telnyx::sent(status, &body),
        }
    }

    /// One cheap authenticated read (account details or balance): succeeds only if the
    /// API answers and accepts the credentials.
    pub async fn probe(&self) -> Result<(), SendError> {
        let base = self.api.base_url.as_str();
        let request = match &self.api.credentials {
            ApiCredentials::Twilio {
                account_sid,
                auth_token,
            } => twilio::probe(&self.http, base, account_sid, auth_token),
            ApiCredentials::Vonage {
                api_key,
                api_secret,
            } => vonage::probe(&self.http, base, api_key, api_secret),
            ApiCredentials::Plivo {
                auth_id,
                auth_token,
            } => plivo::probe(&self.http, base, auth_id, auth_token),
            ApiCredentials::Telnyx { api_key, .. } => telnyx::probe(&self.http, base, api_key),
        };
        let (status, _) = execute(request).await?;
        match http_failure(status, None) {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }
}

/// One outbound message, as the per-API builders need it.
struct Message<'a> {
    from: &'a PhoneNumber,
    to: &'a PhoneNumber,
    text: &'a str,
    status_callback: Option<&'a str>,
}

/// Runs a request and reads at most [`MAX_ANSWER_BYTES`] of the answer. Anything that
/// keeps us from an answer (timeout, refused connection, TLS failure) is retryable.
async fn execute(request: reqwest::RequestBuilder) -> Result<(StatusCode, Vec<u8>), SendError> {
    let mut response = request.send().await.map_err(transport)?;
    let status = response.status();
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(transport)? {
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(SendError::Retryable(format!(
                "HTTP {}: the answer is larger than {MAX_ANSWER_BYTES} bytes",
                status.as_u16()
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((status, body))
}

/// A transport failure in words, without the URL (it can carry credentials in the query).
fn transport(error: reqwest::Error) -> SendError {
    let what = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "could not connect"
    } else if error.is_body() || error.is_decode() {
        "the answer broke off"
    } else {
        "the request failed"
    };
    SendError::Retryable(what.to_owned())
}

/// Sorts a non-success HTTP status: `None` for 2xx. `code` is the provider's own error
/// code, when its answer has one. Refused credentials (401, 403) count as retryable:
/// the message is fine, this account cannot send it now, and another provider may.
fn http_failure(status: StatusCode, code: Option<&str>) -> Option<SendError> {
    if status.is_success() {
        return None;
    }
    let detail = match code {
        Some(code) => format!("HTTP {}, provider error {code}", status.as_u16()),
        None => format!("HTTP {}", status.as_u16()),
    };
    let retryable = status.is_server_error()
        || matches!(
            status,
            StatusCode::TOO_MANY_REQUESTS
                | StatusCode::REQUEST_TIMEOUT
                | StatusCode::UNAUTHORIZED
                | StatusCode::FORBIDDEN
        );
    Some(if retryable {
        SendError::Retryable(detail)
    } else {
        SendError::Permanent(detail)
    })
}

/// The provider id in a 2xx answer, or a retryable error: the provider said yes but we
/// cannot tell to what, and only a retry (which may send twice) can find out.
fn message_id(id: Option<&str>, status: StatusCode) -> Result<ProviderMessageId, SendError> {
    id.and_then(|id| ProviderMessageId::parse(id).ok())
        .ok_or_else(|| no_id(status))
}

fn no_id(status: StatusCode) -> SendError {
    SendError::Retryable(format!(
        "HTTP {}: the answer names no message id",
        status.as_u16()
    ))
}

/// A JSON answer, or `Null` when it is not JSON (an HTML error page from a proxy).
fn json(body: &[u8]) -> serde_json::Value {
    serde_json::from_slice(body).unwrap_or(serde_json::Value::Null)
}

/// A JSON field as text, whether the provider sent a string or a number.
fn text_of(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::String(text) => Some(text.clone()),
        serde_json::Value::Number(number) => Some(number.to_string()),
        _ => None,
    }
}

/// A number without its `+`, as Vonage and Plivo write them.
fn digits(number: &PhoneNumber) -> &str {
    number.as_str().trim_start_matches('+')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_sort_into_retryable_and_permanent() {
        for code in [500, 502, 503, 429, 408, 401, 403] {
            let status = StatusCode::from_u16(code).unwrap();
            assert!(http_failure(status, None).unwrap().is_retryable(), "{code}");
        }
        for code in [400, 404, 422] {
            let status = StatusCode::from_u16(code).unwrap();
            assert!(
                !http_failure(status, None).unwrap().is_retryable(),
                "{code}"
            );
        }
        assert_eq!(http_failure(StatusCode::CREATED, None), None);
        assert_eq!(
            http_failure(StatusCode::BAD_REQUEST, Some("21211"))
                .unwrap()
                .detail(),
            "HTTP 400, provider error 21211"
        );
    }
}
