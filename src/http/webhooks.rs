//! `POST /webhooks/{provider}`: verify, store durably, then acknowledge.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Extension;
use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, Uri, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use super::json::ApiPath;
use super::openapi::Problem;
use super::{ApiError, AppState, Scheme, forwarded};
use crate::diagnostics::ErrorSource;
use crate::domain::{DeliveryReport, InboundSms};
use crate::providers::registry::ProviderInstance;
use crate::providers::{WebhookError, WebhookEvent, WebhookRequest};
use crate::search::indexer::OwnedDocument;
use crate::store::{IngestOutcome, NewMessage, NonceSpend};

/// What Twilio and SignalWire post (form-encoded); other fields are accepted and ignored.
/// Documentation only: the adapter reads the raw body, because the signature covers it.
#[derive(Deserialize, ToSchema)]
#[allow(dead_code, non_snake_case)]
pub struct TwilioWebhookForm {
    /// The provider's message id (`SmsSid` or `SmsMessageSid` are accepted too).
    pub MessageSid: String,
    /// The sender.
    pub From: String,
    /// The pool number, E.164.
    pub To: String,
    pub Body: Option<String>,
}

/// What the `generic` provider (Standard Webhooks) posts; other fields are ignored.
/// Documentation only: the adapter reads the raw body, because the signature covers it.
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct GenericWebhookJson {
    /// The sender's message id, unique per message; repeats are stored once.
    pub id: String,
    /// The sender: a phone number or an alphanumeric sender id.
    pub from: String,
    /// The pool number, E.164.
    pub to: String,
    pub text: String,
    /// When the message was received, RFC 3339; default: when the webhook arrives.
    #[schema(format = DateTime)]
    pub received_at: Option<String>,
}

/// Receive an SMS from a provider (provider-signed; no account).
///
/// The signature is checked against the provider instance's secret and the public URL
/// of the request, the message is stored durably, then acknowledged in the provider's
/// format. A repeated delivery is acknowledged and stored once. Each kind is verified
/// with its provider's own scheme:
/// Twilio and SignalWire `X-Twilio-Signature`; `generic` Standard Webhooks (`webhook-id`,
/// `webhook-timestamp`, `webhook-signature`); Vonage SMS API the `sig` parameter (with
/// `timestamp` and `nonce`); Vonage Messages API an `Authorization: Bearer` JWT; Plivo
/// `X-Plivo-Signature-V3` (or `-V2`) with its nonce; Telnyx `telnyx-signature-ed25519`
/// and `telnyx-timestamp`; Sinch `x-sinch-webhook-signature` with `-nonce` and
/// `-timestamp`; Bandwidth `Authorization: Basic`; MessageBird
/// `MessageBird-Signature-JWT`; Bird `messagebird-signature` and
/// `messagebird-request-timestamp`; SMS Gateway for Android `X-Signature` and
/// `X-Timestamp`. Timestamps must be within 5 minutes of the server clock.
///
/// A verified delivery report is stored durably (once, however often it is repeated),
/// linked to the outbound message it is about, then acknowledged; other verified events
/// that are neither (e.g. Telnyx `message.sent`) are acknowledged.
#[utoipa::path(
    post,
    path = "/webhooks/{provider}",
    operation_id = "receive_webhook",
    tag = "webhooks",
    params(
        ("provider" = String, Path, description = "The provider instance name from the configuration."),
        ("X-Twilio-Signature" = Option<String>, Header, description = "Twilio and SignalWire: the request signature."),
        ("webhook-id" = Option<String>, Header, description = "generic: the message id that is signed."),
        ("webhook-timestamp" = Option<String>, Header, description = "generic: Unix seconds, within 5 minutes of the server clock."),
        ("webhook-signature" = Option<String>, Header, description = "generic: `v1,<base64 HMAC-SHA256>`, space-separated if several."),
        ("Authorization" = Option<String>, Header, description = "vonage-messages: `Bearer <HS256 JWT>` with `payload_hash`, `iat`, `jti`; bandwidth: `Basic` callback credentials."),
        ("X-Plivo-Signature-V3" = Option<String>, Header, description = "plivo: base64 HMAC-SHA256 of URL, parameters and nonce; comma-separated if several (`X-Plivo-Signature-V2` is accepted when V3 is absent)."),
        ("X-Plivo-Signature-V3-Nonce" = Option<String>, Header, description = "plivo: the nonce signed with V3 (`X-Plivo-Signature-V2-Nonce` for V2); each is accepted once."),
        ("telnyx-signature-ed25519" = Option<String>, Header, description = "telnyx: base64 Ed25519 signature of `timestamp|body`."),
        ("telnyx-timestamp" = Option<String>, Header, description = "telnyx: Unix seconds, within 5 minutes of the server clock."),
        ("x-sinch-webhook-signature" = Option<String>, Header, description = "sinch: base64 HMAC-SHA256 of `body.nonce.timestamp`; with `x-sinch-webhook-signature-nonce` (accepted once) and `x-sinch-webhook-signature-timestamp`."),
        ("MessageBird-Signature-JWT" = Option<String>, Header, description = "messagebird: HS256/384/512 JWT with `url_hash`, `payload_hash`, `nbf`, `exp`, `jti` (accepted once)."),
        ("messagebird-signature" = Option<String>, Header, description = "bird: base64 HMAC-SHA256 of `timestamp\\nURL\\nsha256(body)`, with `messagebird-request-timestamp`."),
        ("X-Signature" = Option<String>, Header, description = "sms-gateway: hex HMAC-SHA256 of `body + X-Timestamp`, with `X-Timestamp` (Unix seconds)."),
    ),
    request_body(
        description = "The provider's payload, exactly as signed.",
        content(
            (TwilioWebhookForm = "application/x-www-form-urlencoded"),
            (GenericWebhookJson = "application/json"),
        ),
    ),
    responses(
        (status = 200, description = "Stored (or a repeat, or an event deliberately ignored): the provider's acknowledgement: TwiML for Twilio and SignalWire, Message XML for Plivo, JSON for generic, an empty body for the others.",
            content(
                (String = "text/xml", example = json!("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response></Response>")),
                (serde_json::Value = "application/json", example = json!({"status": "accepted"})),
                (String = "text/plain", example = json!("")),
            )),
        (status = 400, description = "`webhook_malformed`: not in the provider's format; `webhook_invalid_message`: a required field is invalid; `validation_failed`: no Host to verify the signature against; `body_unreadable`: the body could not be read.",
            body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`webhook_unsigned`: no signature; `webhook_signature_invalid`: the signature (or Basic credentials) does not match; `webhook_stale`: the signature timestamp is too old or too new; `webhook_replayed`: the nonce or token id was already used.",
            body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`provider_not_found`: no provider instance of that name.",
            body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`unavailable`: the store cannot take the message or report now (the provider retries). `webhook_unsigned_retry`: unsigned, from a provider that sends unsigned callbacks after its own errors and retries them on 5xx (Vonage Messages).",
            body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "`payload_too_large`: the body is larger than the webhook body limit.",
            body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`rate_limited`: too many webhooks from this address.",
            body = Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn receive(
    State(state): State<Arc<AppState>>,
    ApiPath(provider_name): ApiPath<String>,
    Extension(scheme): Extension<Scheme>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let client = forwarded::client_ip(&state.config.trusted_proxies, peer.ip(), &headers);
    state.limits.check_webhook(client)?;
    let provider = state
        .providers
        .get(&provider_name)
        .ok_or(ApiError::UnknownProvider)?;
    let limit = state.config.webhook_body_limit;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    if declared.is_some_and(|length| length > limit) {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    let body = axum::body::to_bytes(body, limit).await.map_err(|error| {
        if std::error::Error::source(&error)
            .is_some_and(|source| source.is::<http_body_util::LengthLimitError>())
        {
            ApiError::PayloadTooLarge { limit }
        } else {
            ApiError::BodyUnreadable
        }
    })?;
    // The instance's own public URL, if it has one, is what its provider signs.
    let url = forwarded::reconstruct(
        provider
            .config
            .public_url
            .as_ref()
            .or(state.config.public_url.as_ref()),
        &state.config.trusted_proxies,
        peer.ip(),
        scheme,
        &headers,
        &uri,
    )
    .ok_or_else(|| {
        ApiError::validation(
            "Host",
            "the request names no host to verify the signature against",
        )
    })?;

    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let request = WebhookRequest {
        public_url: &url,
        headers: &headers,
        body: &body,
        now_unix: now,
        spent: Default::default(),
    };
    let refuse = |error: WebhookError| {
        tracing::warn!(provider = %provider.name, %client, %error, "webhook refused");
        let refused = ApiError::Webhook(error);
        state.diagnostics.record_about(
            ErrorSource::Webhook,
            refused.code(),
            provider.name.to_string(),
            format!("provider {} from {client}: {refused}", provider.name),
        );
        refused
    };
    let events = provider
        .adapter
        .verify_and_parse(&request)
        .map_err(refuse)?;

    // A nonce another request spent makes this one a replay. Spent before the events
    // are stored: a request refused here stores nothing, and the provider's own retry of
    // a request whose store failed carries the same fingerprint, so it passes.
    let spent = request.spent.take();
    if !spent.is_empty() {
        let print = fingerprint(&provider.name, &url, &headers, &body);
        let spend = state
            .store
            .spend_nonces(&provider.name, spent, print, now)
            .await?;
        if spend == NonceSpend::Replay {
            return Err(refuse(WebhookError::Replayed));
        }
    }

    // Each event is durable before the next; if one fails the provider retries the
    // request, and what was already stored is recognised as a repeat.
    for event in events {
        match event {
            WebhookEvent::Sms(sms) => store_sms(&state, &provider, sms).await?,
            WebhookEvent::Report(report) => store_report(&state, &provider, report).await?,
            WebhookEvent::Ignored => {}
        }
    }
    Ok(acknowledged(&provider))
}

/// What makes two deliveries the same request: provider, URL, body, and every header
/// that can carry a signature, nonce or timestamp (other headers, like a retry counter,
/// may change between attempts).
fn fingerprint(provider: &str, url: &str, headers: &HeaderMap, body: &[u8]) -> [u8; 32] {
    let mut signed: Vec<(&str, &[u8])> = headers
        .iter()
        .filter(|(name, _)| {
            let name = name.as_str();
            name == "authorization"
                || ["signature", "nonce", "timestamp", "jwt"]
                    .iter()
                    .any(|part| name.contains(part))
        })
        .map(|(name, value)| (name.as_str(), value.as_bytes()))
        .collect();
    signed.sort();
    let mut hash = Sha256::new();
    for part in [provider.as_bytes(), url.as_bytes(), body] {
        hash.update((part.len() as u64).to_le_bytes());
        hash.update(part);
    }
    for (name, value) in signed {
        hash.update(name.as_bytes());
        hash.update([0]);
        hash.update(value);
        hash.update([0]);
    }
    hash.finalize().into()
}

/// The provider's own acknowledgement (empty TwiML, Message XML, plain 200…).
fn acknowledged(provider: &ProviderInstance) -> Response {
    let ack = provider.adapter.ack();
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(ack.content_type),
        )],
        ack.body,
    )
        .into_response()
}

/// Stores one verified message durably, then tells waiters and the search index.
async fn store_sms(
    state: &AppState,
    provider: &ProviderInstance,
    sms: InboundSms,
) -> Result<(), ApiError> {
    let outcome = state
        .store
        .ingest(Arc::clone(&provider.name), sms, state.config.retention)
        .await?;
    if let IngestOutcome::Stored(message) = &outcome {
        announce(state, message);
    }
    tracing::info!(provider = %provider.name, ?outcome, "webhook stored");
    Ok(())
}

/// A message is durable now: tell the real-time publisher (which reads new messages
/// from the store in id order), and index it for search. Neither blocks.
pub fn announce(state: &AppState, message: &NewMessage) {
    state.realtime.hub.committed(message.message_id);
    state.indexer.add(OwnedDocument {
        message_id: message.message_id,
        inbox: message.inbox.key(),
        received_at_ms: message.received_at_ms,
        text: message.text.clone(),
        from: message.from.clone(),
    });
}

/// Stores one verified delivery report durably (once), linked to its outbound message.
async fn store_report(
    state: &AppState,
    provider: &ProviderInstance,
    report: DeliveryReport,
) -> Result<(), ApiError> {
    let status = report.status;
    let outcome = state
        .store
        .store_report(&provider.name, report, state.config.retention)
        .await?;
    tracing::info!(
        provider = %provider.name,
        reported = status.as_str(),
        outbound_id = outcome.outbound_id,
        repeated = outcome.repeated,
        status = outcome.status.map(|s| s.as_str()),
        "delivery report stored"
    );
    Ok(())
}

/// Receive a delivery report (status callback) from a provider: the same as
/// `POST /webhooks/{provider}`, under the path burnbox gives providers as the status
/// callback URL (provider-signed; no account).
#[utoipa::path(
    post,
    path = "/webhooks/{provider}/status",
    operation_id = "receive_status_webhook",
    tag = "webhooks",
    params(
        ("provider" = String, Path, description = "The provider instance name from the configuration."),
    ),
    request_body(
        description = "The provider's status callback, exactly as signed (see `receive_webhook` for each provider's signature headers).",
        content((TwilioWebhookForm = "application/x-www-form-urlencoded")),
    ),
    responses(
        (status = 200, description = "Stored (or a repeat): the provider's acknowledgement.",
            content(
                (String = "text/xml", example = json!("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response></Response>")),
                (String = "text/plain", example = json!("")),
            )),
        (status = 400, description = "`webhook_malformed`: not in the provider's format; `webhook_invalid_message`: a required field is invalid; `validation_failed`: no Host to verify the signature against.",
            body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`webhook_unsigned`: no signature; `webhook_signature_invalid`: the signature does not match; `webhook_stale`: the signed timestamp is outside the window; `webhook_replayed`: the nonce or token id was already used.",
            body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`provider_not_found`: no provider instance of that name.",
            body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "`payload_too_large`: the body is larger than the webhook body limit.",
            body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`rate_limited`: too many webhooks from this address.",
            body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`unavailable`: the store cannot take the report now (the provider retries). `webhook_unsigned_retry`: unsigned, from a provider that sends unsigned callbacks after its own errors and retries them on 5xx (Vonage Messages).",
            body = Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn receive_status(
    state: State<Arc<AppState>>,
    provider_name: ApiPath<String>,
    scheme: Extension<Scheme>,
    peer: ConnectInfo<SocketAddr>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    receive(state, provider_name, scheme, peer, uri, headers, body).await
}

/// Receive a delivery report from a provider configured to call with GET (Vonage, Plivo).
#[utoipa::path(
    get,
    path = "/webhooks/{provider}/status",
    operation_id = "receive_status_webhook_get",
    tag = "webhooks",
    params(
        ("provider" = String, Path, description = "The provider instance name from the configuration."),
    ),
    responses(
        (status = 200, description = "Stored (or a repeat): the provider's acknowledgement.",
            content((String = "text/plain", example = json!("")))),
        (status = 400, description = "`webhook_malformed`: not in the provider's format; `webhook_invalid_message`: a required field is invalid; `validation_failed`: no Host to verify the signature against.",
            body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`webhook_unsigned`: no signature; `webhook_signature_invalid`: the signature does not match; `webhook_stale`: the signed timestamp is outside the window; `webhook_replayed`: the nonce or token id was already used.",
            body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`provider_not_found`: no provider instance of that name.",
            body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`rate_limited`: too many webhooks from this address.",
            body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`unavailable`: the store cannot take the report now. `webhook_unsigned_retry`: unsigned, from a provider that sends unsigned callbacks after its own errors and retries them on 5xx (Vonage Messages).",
            body = Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn receive_status_get(
    state: State<Arc<AppState>>,
    provider_name: ApiPath<String>,
    scheme: Extension<Scheme>,
    peer: ConnectInfo<SocketAddr>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    receive(state, provider_name, scheme, peer, uri, headers, body).await
}

/// Receive an SMS from a provider configured to call with GET (provider-signed; no account).
///
/// The message fields are in the signed query string instead of a body: Twilio
/// (`X-Twilio-Signature` over the full URL), Vonage SMS API (`sig`, `timestamp`, `nonce`
/// among the parameters), Plivo (V3 signature over the URL) and MessageBird (JWT with the
/// URL's hash).
#[utoipa::path(
    get,
    path = "/webhooks/{provider}",
    operation_id = "receive_webhook_get",
    tag = "webhooks",
    params(
        ("provider" = String, Path, description = "The provider instance name from the configuration."),
        ("X-Twilio-Signature" = Option<String>, Header, description = "Twilio: the request signature, over the full URL."),
        ("sig" = Option<String>, Query, description = "Vonage SMS API: the signature of the other parameters."),
        ("MessageSid" = Option<String>, Query, description = "Twilio: the provider's message id (`SmsSid` or `SmsMessageSid` are accepted too)."),
        ("From" = Option<String>, Query, description = "Twilio: the sender."),
        ("To" = Option<String>, Query, description = "Twilio: the pool number, E.164."),
        ("Body" = Option<String>, Query, description = "Twilio: the text."),
    ),
    responses(
        (status = 200, description = "Stored (or a repeat): the provider's acknowledgement (TwiML for Twilio, an empty body for Vonage).",
            content(
                (String = "text/xml", example = json!("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response></Response>")),
                (String = "text/plain", example = json!("")),
            )),
        (status = 400, description = "`webhook_malformed`: not in the provider's format; `webhook_invalid_message`: a required field is invalid; `validation_failed`: no Host to verify the signature against.",
            body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`webhook_unsigned`: no signature; `webhook_signature_invalid`: the signature does not match; `webhook_stale`: the signed timestamp is outside the window; `webhook_replayed`: the nonce or token id was already used.",
            body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`provider_not_found`: no provider instance of that name.",
            body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`unavailable`: the store cannot take the message or report now (the provider retries). `webhook_unsigned_retry`: unsigned, from a provider that sends unsigned callbacks after its own errors and retries them on 5xx (Vonage Messages).",
            body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`rate_limited`: too many webhooks from this address.",
            body = Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn receive_get(
    state: State<Arc<AppState>>,
    provider_name: ApiPath<String>,
    scheme: Extension<Scheme>,
    peer: ConnectInfo<SocketAddr>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    // The same handler: a separate function only so GET is documented as its own operation.
    receive(state, provider_name, scheme, peer, uri, headers, body).await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A provider's retry may change a retry counter, never the signed parts.
    #[test]
    fn only_signature_headers_count() {
        let mut first = HeaderMap::new();
        first.insert("x-plivo-signature-v3-nonce", "n1".parse().unwrap());
        first.insert("x-retry-count", "1".parse().unwrap());
        let mut retry = first.clone();
        retry.insert("x-retry-count", "2".parse().unwrap());
        let mut other = first.clone();
        other.insert("x-plivo-signature-v3-nonce", "n2".parse().unwrap());
        let print = |h: &HeaderMap| fingerprint("p", "u", h, b"b");
        assert_eq!(print(&first), print(&retry));
        assert_ne!(print(&first), print(&other));
        assert_ne!(print(&first), fingerprint("p", "u", &first, b"other body"));
    }
}
