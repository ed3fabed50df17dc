//! `POST /webhooks/{provider}`: verify, store durably, then acknowledge.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Extension;
use axum::body::Body;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, HeaderValue, Uri, header};
use axum::response::{IntoResponse, Response};

use super::{ApiError, AppState, Scheme, forwarded};
use crate::providers::WebhookRequest;
use crate::search::indexer::OwnedDocument;

pub async fn receive(
    State(state): State<Arc<AppState>>,
    Path(provider_name): Path<String>,
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
    let url = forwarded::reconstruct(
        state.config.public_url.as_ref(),
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

    let request = WebhookRequest {
        public_url: &url,
        headers: &headers,
        body: &body,
        now_unix: time::OffsetDateTime::now_utc().unix_timestamp(),
    };
    let sms = provider
        .adapter
        .verify_and_parse(&request)
        .map_err(|error| {
            tracing::warn!(provider = %provider.name, peer = %peer.ip(), %error, "webhook refused");
            ApiError::Webhook(error)
        })?;

    let searchable = (
        sms.text.clone(),
        sms.from.as_str().to_owned(),
        sms.received_at_ms,
    );
    let outcome = state
        .store
        .ingest(Arc::clone(&provider.name), sms, state.config.retention)
        .await?;
    if !outcome.duplicate {
        // Durable now: tell waiters, and index it for search (both never block ingest).
        state.hub.publish(outcome.message_id);
        let (text, from, received_at_ms) = searchable;
        state.indexer.add(OwnedDocument {
            message_id: outcome.message_id,
            inbox: outcome.inbox.key(),
            received_at_ms: received_at_ms.unwrap_or_else(crate::store::now_ms),
            text,
            from,
        });
    }
    tracing::info!(
        provider = %provider.name,
        message_id = outcome.message_id,
        duplicate = outcome.duplicate,
        inbox = ?outcome.inbox,
        "webhook stored"
    );
    let ack = provider.adapter.ack();
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(ack.content_type),
        )],
        ack.body,
    )
        .into_response())
}
