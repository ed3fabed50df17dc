//! Users' outbound webhooks: register, list, delete, the delivery log and "send test".
//! A webhook is visible only to its owner (others get 404), admins included: its URL
//! often carries a token.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::json::{ApiJson, ApiPath};
use super::messages::{blocking, rfc3339};
use super::openapi::Problem;
use super::{ApiError, AppState};
use crate::auth::permissions::{Action, Caller, authorize};
use crate::domain::WebhookUrl;
use crate::hooks::ssrf::{Guard, ResolveError};
use crate::store::{DeliveryLogV1, NewWebhook, WebhookView};

/// Longest description accepted.
pub const MAX_DESCRIPTION_CHARS: usize = 200;
/// Random bytes in a generated signing secret.
const SECRET_BYTES: usize = 24;

/// An endpoint to register.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewWebhookJson {
    /// An absolute URL, scheme https or http, at most 2048 characters. Its host must
    /// not be (or resolve to) a loopback, private, link-local or other internal address
    /// unless the server allows it (`webhooks_allow_private`).
    #[schema(max_length = 2048)]
    pub url: String,
    /// A note for yourself, at most 200 characters.
    #[schema(max_length = 200)]
    pub description: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookJson {
    pub id: u64,
    pub url: String,
    pub description: Option<String>,
    #[schema(format = DateTime)]
    pub created_at: String,
}

/// A new endpoint, with its signing secret: shown only now.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedWebhookJson {
    #[serde(flatten)]
    pub webhook: WebhookJson,
    /// `whsec_<base64>`: verify `webhook-signature` with it (Standard Webhooks).
    pub secret: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhooksJson {
    pub webhooks: Vec<WebhookJson>,
}

/// One delivery attempt.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryJson {
    /// The message delivered; null for a test event.
    pub message_id: Option<u64>,
    #[schema(format = DateTime)]
    pub at: String,
    /// 1 for the first attempt of a message.
    pub attempt: u32,
    /// The receiver's HTTP status, when it answered.
    pub status: Option<u16>,
    /// Why there was no answer (connection, timeout, SSRF guard).
    pub error: Option<String>,
    /// When the next attempt is due; null once delivered or given up.
    #[schema(format = DateTime)]
    pub next_retry: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveriesJson {
    /// The most recent attempts (up to 50), newest first.
    pub deliveries: Vec<DeliveryJson>,
}

impl From<&WebhookView> for WebhookJson {
    fn from(view: &WebhookView) -> Self {
        Self {
            id: view.id,
            url: view.url.clone(),
            description: view.description.clone(),
            created_at: rfc3339(view.created_at_ms),
        }
    }
}

impl From<DeliveryLogV1> for DeliveryJson {
    fn from(entry: DeliveryLogV1) -> Self {
        Self {
            message_id: entry.message_id,
            at: rfc3339(entry.at_ms),
            attempt: entry.attempt,
            status: entry.status,
            error: entry.error,
            next_retry: entry.next_retry_ms.map(rfc3339),
        }
    }
}

/// The SSRF guard at registration: refuses a URL that could not be delivered to now
/// (deliveries check again at every connection, so this is not the protection, only an
/// early, clear answer).
async fn check_destination(
    url: &WebhookUrl,
    guard: &Guard,
    timeout: Duration,
) -> Result<(), ApiError> {
    match tokio::time::timeout(timeout, guard.check_url(url.as_url())).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(ResolveError::Refused(refused))) => Err(ApiError::WebhookUrlRefused(refused)),
        Ok(Err(ResolveError::Unresolvable(_))) => Err(ApiError::validation(
            "url",
            "names a host that does not resolve",
        )),
        Err(_) => Err(ApiError::validation(
            "url",
            "names a host that did not resolve in time",
        )),
    }
}

/// `whsec_` and 24 random bytes in base64, as Standard Webhooks secrets are written.
fn generate_secret() -> Result<String, ApiError> {
    let mut key = [0u8; SECRET_BYTES];
    getrandom::fill(&mut key)
        .map_err(|error| ApiError::Internal(format!("no randomness for a secret: {error}")))?;
    Ok(format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(key)
    ))
}

/// The caller's own webhook, or 404.
async fn owned(state: &AppState, caller: &Caller, id: u64) -> Result<WebhookView, ApiError> {
    let store = state.store.clone();
    let hook = blocking(move || store.webhook(id))
        .await?
        .ok_or(ApiError::NotFound("webhook"))?;
    authorize(caller, Action::ManageWebhook { owner: hook.owner })
        .map_err(|denied| ApiError::denied(denied, "webhook"))?;
    Ok(hook)
}

/// Register a webhook URL (users and admins).
///
/// Each new message of the caller's leases is POSTed to it as the real-time event JSON
/// (`{"type":"message","id":…,"number_id":…,"message":{…}}`), signed with the Standard
/// Webhooks scheme (`webhook-id`, `webhook-timestamp`, `webhook-signature`) using the
/// secret in the answer, which is shown only now. Any 2xx counts as delivered; other
/// answers and failures are retried with exponential backoff for up to
/// `webhooks_give_up` (24 h by default). Delivery is at least once: `webhook-id` is the
/// same on every attempt, so receivers can drop repeats.
#[utoipa::path(
    post,
    path = "/api/v1/webhooks",
    operation_id = "create_webhook",
    tag = "user-webhooks",
    security(("basic" = []), ("bearer" = [])),
    request_body = NewWebhookJson,
    responses(
        (status = 201, description = "Registered; the secret is shown only now.", body = CreatedWebhookJson),
        (status = 400, description = "`validation_failed`: `field` names the invalid `url` (not http(s), no host, a host that does not resolve) or `description`. \
            `webhook_url_refused`: the host is or resolves to a loopback, private, link-local or other internal address, or one of this server's own (SSRF guard).",
            body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`forbidden`: guests cannot register webhooks.",
            body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`webhook_limit_reached`: the caller has as many webhooks as allowed.",
            body = Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn create(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    ApiJson(body): ApiJson<NewWebhookJson>,
) -> Result<(StatusCode, Json<CreatedWebhookJson>), ApiError> {
    authorize(&caller, Action::RegisterWebhooks)
        .map_err(|denied| ApiError::denied(denied, "webhook"))?;
    let config = state.hooks.config();
    let url = WebhookUrl::parse(&body.url)
        .map_err(|error| ApiError::validation("url", error.to_string()))?;
    let description = body
        .description
        .map(|text| text.trim().to_owned())
        .filter(|text| !text.is_empty());
    if description
        .as_ref()
        .is_some_and(|text| text.chars().count() > MAX_DESCRIPTION_CHARS)
    {
        return Err(ApiError::validation(
            "description",
            "is longer than 200 characters",
        ));
    }
    check_destination(&url, state.hooks.guard(), config.timeout).await?;
    let secret = generate_secret()?;
    let id = state
        .store
        .create_webhook(NewWebhook {
            owner: caller.user_id,
            url: url.into_string(),
            secret: secret.clone(),
            description,
            max_per_owner: config.max_per_user,
        })
        .await?
        .ok_or(ApiError::WebhookLimitReached {
            max: config.max_per_user,
        })?;
    let store = state.store.clone();
    let hook = blocking(move || store.webhook(id))
        .await?
        .ok_or(ApiError::NotFound("webhook"))?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedWebhookJson {
            webhook: WebhookJson::from(&hook),
            secret,
        }),
    ))
}

/// The caller's webhooks.
#[utoipa::path(
    get,
    path = "/api/v1/webhooks",
    operation_id = "list_webhooks",
    tag = "user-webhooks",
    security(("basic" = []), ("bearer" = [])),
    responses(
        (status = 200, description = "The caller's webhooks, oldest first (secrets are never shown again).", body = WebhooksJson),
        (status = 403, description = "`forbidden`: guests have no webhooks.",
            body = Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn list(
    caller: Caller,
    State(state): State<Arc<AppState>>,
) -> Result<Json<WebhooksJson>, ApiError> {
    authorize(&caller, Action::RegisterWebhooks)
        .map_err(|denied| ApiError::denied(denied, "webhook"))?;
    let store = state.store.clone();
    let owner = caller.user_id;
    let hooks = blocking(move || store.webhooks_of(owner)).await?;
    Ok(Json(WebhooksJson {
        webhooks: hooks.iter().map(WebhookJson::from).collect(),
    }))
}

/// Delete one of the caller's webhooks; its pending deliveries are dropped.
#[utoipa::path(
    delete,
    path = "/api/v1/webhooks/{id}",
    operation_id = "delete_webhook",
    tag = "user-webhooks",
    security(("basic" = []), ("bearer" = [])),
    params(("id" = u64, Path, description = "Webhook id")),
    responses(
        (status = 204, description = "Deleted."),
        (status = 404, description = "`not_found`: no such webhook of the caller's.",
            body = Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn delete(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    ApiPath(id): ApiPath<u64>,
) -> Result<StatusCode, ApiError> {
    owned(&state, &caller, id).await?;
    if state.store.delete_webhook(id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound("webhook"))
    }
}

/// The webhook's delivery log: the most recent attempts, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/webhooks/{id}/deliveries",
    operation_id = "webhook_deliveries",
    tag = "user-webhooks",
    security(("basic" = []), ("bearer" = [])),
    params(("id" = u64, Path, description = "Webhook id")),
    responses(
        (status = 200, description = "Recent attempts: status code or error, attempt number, next retry.", body = DeliveriesJson),
        (status = 404, description = "`not_found`: no such webhook of the caller's.",
            body = Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn deliveries(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    ApiPath(id): ApiPath<u64>,
) -> Result<Json<DeliveriesJson>, ApiError> {
    let hook = owned(&state, &caller, id).await?;
    Ok(Json(DeliveriesJson {
        deliveries: hook.log.into_iter().rev().map(DeliveryJson::from).collect(),
    }))
}

/// Send a signed test event (`{"type":"test","webhook_id":…}`) now and answer how it
/// went. It is not retried.
#[utoipa::path(
    post,
    path = "/api/v1/webhooks/{id}/test",
    operation_id = "test_webhook",
    tag = "user-webhooks",
    security(("basic" = []), ("bearer" = [])),
    params(("id" = u64, Path, description = "Webhook id")),
    responses(
        (status = 200, description = "The attempt (also in the delivery log); a failed one is still 200.", body = DeliveryJson),
        (status = 404, description = "`not_found`: no such webhook of the caller's.",
            body = Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn test(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    ApiPath(id): ApiPath<u64>,
) -> Result<Json<DeliveryJson>, ApiError> {
    let hook = owned(&state, &caller, id).await?;
    Ok(Json(DeliveryJson::from(state.hooks.send_test(&hook).await)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn internal_destinations_are_refused_unless_allowed() {
        for internal in [
            "http://127.0.0.1:8080/",
            "http://127.1/",
            "http://0x7f000001/",
            "http://[::1]/",
            "http://[::ffff:10.0.0.1]/",
            "http://169.254.169.254/latest",
            "http://localhost:9/",
        ] {
            let url = WebhookUrl::parse(internal).unwrap();
            let error = check_destination(&url, &Guard::new(false), TIMEOUT)
                .await
                .unwrap_err();
            assert_eq!(error.code(), "webhook_url_refused", "{internal}");
            check_destination(&url, &Guard::new(true), TIMEOUT)
                .await
                .unwrap();
        }
        let nowhere = WebhookUrl::parse("https://no-such-host.invalid/").unwrap();
        let error = check_destination(&nowhere, &Guard::new(false), TIMEOUT)
            .await
            .unwrap_err();
        assert_eq!(error.code(), "validation_failed");
    }

    /// A literal IP is the user's own text; what a name resolves to inside our network
    /// is not theirs to learn.
    #[tokio::test]
    async fn a_refusal_names_only_a_literal_address() {
        let check = |url: &str| {
            let url = WebhookUrl::parse(url).unwrap();
            async move {
                check_destination(&url, &Guard::new(false), TIMEOUT)
                    .await
                    .unwrap_err()
                    .to_string()
            }
        };
        let literal = check("http://127.0.0.1:8080/").await;
        assert!(
            literal.contains("is 127.0.0.1, a loopback address"),
            "{literal}"
        );
        let by_name = check("http://localhost:9/").await;
        assert!(
            by_name.contains("resolves to an internal (loopback) address"),
            "{by_name}"
        );
        assert!(
            !by_name.contains("127.0.0.1") && !by_name.contains("::1"),
            "{by_name}"
        );
    }

    #[test]
    fn secrets_are_standard_webhooks_secrets() {
        let secret = generate_secret().unwrap();
        assert!(secret.starts_with("whsec_"));
        assert!(crate::providers::generic::sign(&secret, "id", 1, b"{}").is_ok());
        assert_ne!(secret, generate_secret().unwrap());
    }
}
