//! Sending SMS: `POST /api/v1/messages` stores the message and queues it (202), and
//! `GET /api/v1/outbound/{id}` shows where it is: status, every attempt, delivery reports.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::json::{ApiJson, ApiPath};
use super::messages::{blocking, rfc3339};
use super::openapi::Problem;
use super::{ApiError, AppState};
use crate::auth::permissions::{Action, Caller, authorize};
use crate::domain::{OutboundText, PhoneNumber};
use crate::store::{AttemptOutcome, NewOutbound, OutboundView};

/// An SMS to send.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewMessage {
    /// The pool number to send from: one the caller holds a lease on (admins: any).
    pub number_id: u64,
    /// The recipient, E.164.
    #[schema(example = "+447700900123")]
    pub to: String,
    /// 1 to 1600 characters.
    #[schema(min_length = 1, max_length = 1600)]
    pub text: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct QueuedJson {
    /// The outbound message id, for `GET /api/v1/outbound/{id}`.
    pub id: u64,
    /// Always `pending`: sending happens in the background.
    #[schema(example = "pending")]
    pub status: &'static str,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OutboundJson {
    pub id: u64,
    /// The pool number it is sent from.
    pub number_id: u64,
    pub from: String,
    pub to: String,
    pub text: String,
    /// `pending` (waiting for a provider, perhaps between retries), `queued`, `sent`,
    /// `delivered`, `undelivered` or `failed`.
    #[schema(example = "sent")]
    pub status: &'static str,
    /// RFC 3339, UTC.
    #[schema(format = DateTime)]
    pub created_at: String,
    /// When the status or attempts last changed; RFC 3339, UTC.
    #[schema(format = DateTime)]
    pub updated_at: String,
    /// The provider instance that took it, once one has.
    pub sent_via: Option<String>,
    /// That provider's id for it.
    pub provider_message_id: Option<String>,
    /// Every provider call, oldest first.
    pub attempts: Vec<AttemptJson>,
    /// Every distinct delivery report, in arrival order.
    pub delivery_reports: Vec<DeliveryReportJson>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AttemptJson {
    /// The provider instance called; null when none could be (all unhealthy).
    pub provider: Option<String>,
    /// The pool number sent from (a fallback provider may use an equivalent number).
    pub number_id: Option<u64>,
    #[schema(format = DateTime)]
    pub at: String,
    /// How long the provider took to answer.
    pub latency_ms: u64,
    /// `accepted`, `retryable` (failed, worth retrying: 5xx, 429, timeout), `rejected`
    /// (refused for good) or `unavailable` (no provider could be called).
    #[schema(example = "accepted")]
    pub outcome: &'static str,
    /// The HTTP status and provider error code of a failure.
    pub detail: Option<String>,
    pub provider_message_id: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryReportJson {
    pub provider_message_id: String,
    /// `queued`, `sent`, `delivered`, `undelivered`, `failed` or `unknown`.
    #[schema(example = "delivered")]
    pub status: &'static str,
    /// The provider's or carrier's error code.
    pub error_code: Option<String>,
    /// When the provider says the status was reached, if it says; RFC 3339.
    #[schema(format = DateTime)]
    pub at: Option<String>,
    #[schema(format = DateTime)]
    pub received_at: String,
}

impl From<OutboundView> for OutboundJson {
    fn from(view: OutboundView) -> Self {
        let attempts = view
            .attempts
            .into_iter()
            .map(|attempt| {
                let (outcome, detail, provider_message_id) = match attempt.outcome {
                    AttemptOutcome::Accepted {
                        provider_message_id,
                    } => ("accepted", None, Some(provider_message_id)),
                    AttemptOutcome::Retryable(detail) => ("retryable", Some(detail), None),
                    AttemptOutcome::Rejected(detail) => ("rejected", Some(detail), None),
                    AttemptOutcome::Unavailable(detail) => ("unavailable", Some(detail), None),
                };
                AttemptJson {
                    provider: attempt.provider,
                    number_id: attempt.from_number_id,
                    at: rfc3339(attempt.at_ms),
                    latency_ms: attempt.latency_ms,
                    outcome,
                    detail,
                    provider_message_id,
                }
            })
            .collect();
        let delivery_reports = view
            .reports
            .into_iter()
            .map(|(provider_message_id, event)| DeliveryReportJson {
                provider_message_id,
                status: event.status.as_str(),
                error_code: event.error_code,
                at: event.at_ms.map(rfc3339),
                received_at: rfc3339(event.received_at_ms),
            })
            .collect();
        Self {
            id: view.id,
            number_id: view.number_id,
            from: view.from,
            to: view.to,
            text: view.text,
            status: view.status.as_str(),
            created_at: rfc3339(view.created_at_ms),
            updated_at: rfc3339(view.updated_at_ms),
            sent_via: view.accepted.as_ref().map(|a| a.provider.clone()),
            provider_message_id: view
                .accepted
                .and_then(|accepted| accepted.message_ids.into_iter().next()),
            attempts,
            delivery_reports,
        }
    }
}

/// Send an SMS from a pool number (admins; users when the server allows it).
///
/// The message is stored (encrypted) and answered 202 at once; it is sent in the
/// background through the number's provider, failing over to healthy fallback providers
/// and retrying with exponential backoff. Follow it at `Location`.
#[utoipa::path(
    post,
    path = "/api/v1/messages",
    operation_id = "send_message",
    tag = "messages",
    security(("basic" = []), ("bearer" = [])),
    request_body = NewMessage,
    responses(
        (status = 202, description = "Stored and queued; `Location` is the message's URL.", body = QueuedJson,
            headers(("Location" = String, description = "`/api/v1/outbound/{id}`"))),
        (status = 400, description = "`validation_failed`: `field` names the invalid `to`, `text` or `body`.",
            body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`forbidden`: guests never send; users only where `users_may_send` is on.",
            body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not_found`: no such number, or not one the caller holds.",
            body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`sending_unavailable`: no provider can send from this number.",
            body = Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn send(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    ApiJson(body): ApiJson<NewMessage>,
) -> Result<Response, ApiError> {
    authorize(
        &caller,
        Action::SendSms {
            users_may_send: state.config.users_may_send,
        },
    )
    .map_err(|denied| ApiError::denied(denied, "number"))?;
    let to = PhoneNumber::parse(&body.to)
        .map_err(|error| ApiError::validation("to", error.to_string()))?;
    let text = OutboundText::parse(&body.text)
        .map_err(|error| ApiError::validation("text", error.to_string()))?;
    let store = state.store.clone();
    let number_id = body.number_id;
    let (number, access) = blocking(move || {
        let number = store.number(number_id)?;
        let access = store.number_access(number_id)?;
        Ok::<_, ApiError>(number.zip(access))
    })
    .await?
    .ok_or(ApiError::NotFound("number"))?;
    authorize(
        &caller,
        Action::SendFrom {
            holder: access.holder(),
        },
    )
    .map_err(|denied| ApiError::denied(denied, "number"))?;
    if !state.outbox.can_send_from(&number.provider) {
        return Err(ApiError::SendingUnavailable);
    }
    let from = PhoneNumber::parse(&number.number)
        .map_err(|error| ApiError::Internal(format!("pool number {number_id}: {error}")))?;
    let id = state
        .store
        .create_outbound(NewOutbound {
            sender: caller.user_id,
            number_id,
            provider: number.provider,
            from,
            to,
            text,
            retention: state.config.retention,
        })
        .await?;
    state.outbox.enqueue(id);
    tracing::info!(
        outbound_id = id,
        number_id,
        sender = caller.user_id,
        "outbound message queued"
    );
    let mut response = (
        StatusCode::ACCEPTED,
        Json(QueuedJson {
            id,
            status: "pending",
        }),
    )
        .into_response();
    if let Ok(location) = HeaderValue::from_str(&format!("/api/v1/outbound/{id}")) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// An SMS sent through `POST /api/v1/messages`: status, attempts, delivery reports
/// (its sender and admins).
#[utoipa::path(
    get,
    path = "/api/v1/outbound/{id}",
    operation_id = "get_outbound_message",
    tag = "messages",
    security(("basic" = []), ("bearer" = [])),
    params(("id" = u64, Path, description = "The id `POST /api/v1/messages` answered.")),
    responses(
        (status = 200, description = "The message.", body = OutboundJson),
        (status = 400, description = "`validation_failed`: the id is not a number.",
            body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not_found`: no such message, or not the caller's.",
            body = Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn get(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    ApiPath(id): ApiPath<u64>,
) -> Result<Json<OutboundJson>, ApiError> {
    let store = state.store.clone();
    let view = blocking(move || store.outbound(id))
        .await?
        .ok_or(ApiError::NotFound("outbound message"))?;
    authorize(
        &caller,
        Action::ReadOutbound {
            sender: view.sender,
        },
    )
    .map_err(|denied| ApiError::denied(denied, "outbound message"))?;
    Ok(Json(view.into()))
}
