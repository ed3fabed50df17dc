//! Reading stored messages and the number pool (admin only until accounts exist).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use serde::Serialize;

use super::admin_auth::Admin;
use super::{ApiError, AppState};
use crate::store::{Inbox, MessagePage, MessageView, NumberView};

/// Page size when the client does not ask; large enough for an inbox at a glance.
const DEFAULT_LIMIT: usize = 50;
/// Largest page a client may ask for, bounding the work of one request.
const MAX_LIMIT: usize = 500;

#[derive(Debug, Serialize)]
pub struct MessageJson {
    pub id: u64,
    /// The pool number's id; null for the unrouted inbox.
    pub number_id: Option<u64>,
    pub number: String,
    pub from: String,
    pub text: String,
    /// RFC 3339, UTC.
    pub received_at: String,
    pub expires_at: String,
    pub provider: String,
    pub provider_message_id: String,
}

#[derive(Debug, Serialize)]
pub struct MessagesJson {
    /// Newest first.
    pub messages: Vec<MessageJson>,
    /// Pass as `?before=` to get the next, older page; null on the last page.
    pub next_before: Option<u64>,
}

fn rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

impl From<MessageView> for MessageJson {
    fn from(view: MessageView) -> Self {
        Self {
            id: view.id,
            number_id: match view.inbox {
                Inbox::Number(id) => Some(id),
                Inbox::Unrouted => None,
            },
            number: view.number,
            from: view.from,
            text: view.text,
            received_at: rfc3339(view.received_at_ms),
            expires_at: rfc3339(i64::try_from(view.expires_at_ms).unwrap_or(i64::MAX)),
            provider: view.provider,
            provider_message_id: view.provider_message_id,
        }
    }
}

impl From<MessagePage> for MessagesJson {
    fn from(page: MessagePage) -> Self {
        Self {
            messages: page.messages.into_iter().map(MessageJson::from).collect(),
            next_before: page.next_before,
        }
    }
}

/// `?limit=&before=`, validated with errors that name the parameter.
struct PageQuery {
    limit: usize,
    before: Option<u64>,
}

impl PageQuery {
    fn parse(raw: Option<&str>) -> Result<Self, ApiError> {
        let mut query = Self {
            limit: DEFAULT_LIMIT,
            before: None,
        };
        for (key, value) in form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
            match key.as_ref() {
                "limit" => {
                    query.limit = value
                        .parse()
                        .ok()
                        .filter(|limit| (1..=MAX_LIMIT).contains(limit))
                        .ok_or_else(|| {
                            ApiError::validation(
                                "limit",
                                format!("must be a whole number from 1 to {MAX_LIMIT}"),
                            )
                        })?;
                }
                "before" => {
                    query.before = Some(value.parse().map_err(|_| {
                        ApiError::validation("before", "must be a message id from `next_before`")
                    })?);
                }
                _ => {}
            }
        }
        Ok(query)
    }
}

/// `GET /api/v1/messages`: every message, newest first.
pub async fn list_all(
    _admin: Admin,
    State(state): State<Arc<AppState>>,
    RawQuery(raw): RawQuery,
) -> Result<Json<MessagesJson>, ApiError> {
    let query = PageQuery::parse(raw.as_deref())?;
    let store = state.store.clone();
    let page =
        tokio::task::spawn_blocking(move || store.list_messages(None, query.before, query.limit))
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))??;
    Ok(Json(page.into()))
}

/// `GET /api/v1/messages/{number_id}`, or `/api/v1/messages/unrouted`.
pub async fn list_inbox(
    _admin: Admin,
    State(state): State<Arc<AppState>>,
    Path(inbox): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Json<MessagesJson>, ApiError> {
    let query = PageQuery::parse(raw.as_deref())?;
    let inbox = if inbox == "unrouted" {
        Inbox::Unrouted
    } else {
        let id = inbox
            .parse()
            .map_err(|_| ApiError::validation("number_id", "must be a number id or `unrouted`"))?;
        Inbox::Number(id)
    };
    let store = state.store.clone();
    let page = tokio::task::spawn_blocking(move || {
        if let Inbox::Number(id) = inbox
            && !store.number_exists(id)?
        {
            return Ok(None);
        }
        store
            .list_messages(Some(inbox), query.before, query.limit)
            .map(Some)
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))??
    .ok_or(ApiError::NotFound("number"))?;
    Ok(Json(page.into()))
}

#[derive(Debug, Serialize)]
pub struct NumberJson {
    pub id: u64,
    pub number: String,
    pub provider: String,
    /// Seconds; null means the server-wide `retention`.
    pub retention_secs: Option<u64>,
}

#[derive(Debug, Serialize)]
pub struct NumbersJson {
    pub numbers: Vec<NumberJson>,
}

/// `GET /api/v1/numbers`: the pool.
pub async fn list_numbers(
    _admin: Admin,
    State(state): State<Arc<AppState>>,
) -> Result<Json<NumbersJson>, ApiError> {
    let numbers = state.store.list_numbers()?;
    Ok(Json(NumbersJson {
        numbers: numbers
            .into_iter()
            .map(
                |NumberView {
                     id,
                     number,
                     provider,
                     retention_secs,
                 }| NumberJson {
                    id,
                    number,
                    provider,
                    retention_secs,
                },
            )
            .collect(),
    }))
}
