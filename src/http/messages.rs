//! Reading stored messages and the number pool (admin only until accounts exist).

use std::sync::Arc;

use axum::Json;
use axum::extract::{RawQuery, State};
use serde::Serialize;
use utoipa::ToSchema;

use super::json::ApiPath;
use super::openapi::Problem;
use super::{ApiError, AppState};
use crate::auth::permissions::{Action, Caller, authorize};
use crate::realtime::hub::Received;
use crate::search::{Filter, SearchError};
use crate::store::{Inbox, MessagePage, MessageView, Scope, Store};

/// Page size when the client does not ask; large enough for an inbox at a glance.
const DEFAULT_LIMIT: usize = 50;
/// Largest page a client may ask for, bounding the work of one request.
pub(super) const MAX_LIMIT: usize = 500;

#[derive(Debug, Serialize, ToSchema)]
pub struct MessageJson {
    pub id: u64,
    /// The pool number's id; null for the unrouted inbox.
    pub number_id: Option<u64>,
    /// The receiving number, E.164.
    pub number: String,
    /// The sender: a phone number or an alphanumeric sender id.
    pub from: String,
    pub text: String,
    /// RFC 3339, UTC.
    #[schema(format = DateTime)]
    pub received_at: String,
    /// When the message is deleted; RFC 3339, UTC.
    #[schema(format = DateTime)]
    pub expires_at: String,
    /// The provider instance that delivered it.
    pub provider: String,
    pub provider_message_id: String,
    pub read: bool,
    /// True when the message came in parts and some never arrived (within
    /// `multipart_timeout`): the text has `[…]` where they would be.
    pub partial: bool,
    /// True for a binary SMS whose octets are not text (a WAP push, a SIM update):
    /// `text` is the octets in lowercase hex, header removed. Binary SMS that are text
    /// (UTF-8, or UCS-2 as phones send it) read as ordinary messages.
    pub binary: bool,
    /// The one-time code in the text (separators removed), or null.
    pub otp: Option<String>,
    /// The service the message is from, when recognisable ("Google", "WhatsApp", …).
    pub service: Option<String>,
    /// With `q=`: the best matching passage, HTML-escaped, matches in `<mark>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snippet: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MessagesJson {
    /// Newest first.
    pub messages: Vec<MessageJson>,
    /// Pass as `?before=` to get the next, older page; null on the last page.
    pub next_before: Option<u64>,
}

pub(super) fn rfc3339(ms: i64) -> String {
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
        let (otp, service) = view.otp_and_service();
        Self {
            otp,
            service,
            id: view.id,
            number_id: view.number_id,
            number: view.number,
            from: view.from,
            text: view.text,
            received_at: rfc3339(view.received_at_ms),
            expires_at: rfc3339(i64::try_from(view.expires_at_ms).unwrap_or(i64::MAX)),
            provider: view.provider,
            provider_message_id: view.provider_message_id,
            read: view.read,
            partial: view.partial,
            binary: view.binary,
            snippet: None,
        }
    }
}

/// One real-time event, the same JSON on WebSocket, SSE and Socket.IO.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventJson {
    /// Always `message`.
    #[serde(rename = "type")]
    #[schema(example = "message")]
    pub kind: &'static str,
    /// The message id; pass the last one seen as `after` (or `Last-Event-ID`) to resume.
    pub id: u64,
    /// The pool number's id.
    pub number_id: Option<u64>,
    /// The message, exactly as the REST API shows it.
    pub message: MessageJson,
}

/// Encodes a stored message as its real-time event, once, for every subscriber.
pub fn event_json(view: &MessageView) -> bytes::Bytes {
    let event = EventJson {
        kind: "message",
        id: view.id,
        number_id: view.number_id,
        message: MessageJson::from(view.clone()),
    };
    // Serialising plain strings and numbers cannot fail; an empty event would be dropped.
    serde_json::to_vec(&event)
        .map(bytes::Bytes::from)
        .unwrap_or_default()
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
    /// Full-text search: ranked results instead of newest first.
    q: Option<String>,
    /// Only messages from this sender (case-insensitive exact match).
    from: Option<String>,
    /// Only messages stored at or after this time (unix ms).
    since_ms: Option<i64>,
}

impl PageQuery {
    fn parse(raw: Option<&str>) -> Result<Self, ApiError> {
        let mut query = Self {
            limit: DEFAULT_LIMIT,
            before: None,
            q: None,
            from: None,
            since_ms: None,
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
                "q" => query.q = Some(value.trim().to_owned()).filter(|q| !q.is_empty()),
                "from" => query.from = Some(value.trim().to_owned()).filter(|f| !f.is_empty()),
                "since" => {
                    let since = time::OffsetDateTime::parse(
                        value.trim(),
                        &time::format_description::well_known::Rfc3339,
                    )
                    .map_err(|_| {
                        ApiError::validation(
                            "since",
                            "must be an RFC 3339 time like 2026-01-31T12:00:00Z",
                        )
                    })?;
                    query.since_ms = Some((since.unix_timestamp_nanos() / 1_000_000) as i64);
                }
                _ => {}
            }
        }
        Ok(query)
    }
}

/// List the messages of all the caller's current leases (admins: every message).
///
/// Newest first, a page at a time; with `q` the best full-text matches instead.
#[utoipa::path(
    get,
    path = "/api/v1/messages",
    operation_id = "list_messages",
    tag = "messages",
    security(("basic" = []), ("bearer" = [])),
    params(
        ("limit" = Option<usize>, Query, minimum = 1, maximum = 500,
            description = "Page size, 1 to 500; default 50."),
        ("before" = Option<u64>, Query,
            description = "Only messages older than this id: the `next_before` of the previous page."),
        ("q" = Option<String>, Query,
            description = "Full-text search over text and sender; results are ranked and carry a `snippet`."),
        ("from" = Option<String>, Query,
            description = "Only messages from this sender (case-insensitive exact match)."),
        ("since" = Option<String>, Query, format = DateTime,
            description = "Only messages received at or after this RFC 3339 time."),
    ),
    responses(
        (status = 200, description = "One page of messages.", body = MessagesJson),
        (status = 400, description = "`validation_failed`: `field` names the invalid `limit`, `before` or `q`.",
            body = Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn list_all(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    RawQuery(raw): RawQuery,
) -> Result<Json<MessagesJson>, ApiError> {
    let query = PageQuery::parse(raw.as_deref())?;
    let store = state.store.clone();
    let scope = blocking(move || {
        let scope = if authorize(&caller, Action::ReadAllMessages).is_ok() {
            Scope::All
        } else {
            let leases = store.active_leases(caller.user_id)?;
            Scope::Inboxes(leases.iter().map(|lease| Inbox::Lease(lease.id)).collect())
        };
        Ok::<_, ApiError>(scope)
    })
    .await?;
    page(&state, scope, query).await.map(Json)
}

/// List the messages of one number's current inbox, or of the unrouted inbox (admins).
///
/// A number's inbox is readable by its lease holder, by anyone if the number is public,
/// and by admins. Newest first; with `q` the best full-text matches instead.
#[utoipa::path(
    get,
    path = "/api/v1/messages/{inbox}",
    operation_id = "list_inbox_messages",
    tag = "messages",
    security(("basic" = []), ("bearer" = [])),
    params(
        ("inbox" = String, Path,
            description = "A number id, or `unrouted` for messages to numbers outside the pool."),
        ("limit" = Option<usize>, Query, minimum = 1, maximum = 500,
            description = "Page size, 1 to 500; default 50."),
        ("before" = Option<u64>, Query,
            description = "Only messages older than this id: the `next_before` of the previous page."),
        ("q" = Option<String>, Query,
            description = "Full-text search over text and sender; results are ranked and carry a `snippet`."),
        ("from" = Option<String>, Query,
            description = "Only messages from this sender (case-insensitive exact match)."),
        ("since" = Option<String>, Query, format = DateTime,
            description = "Only messages received at or after this RFC 3339 time."),
    ),
    responses(
        (status = 200, description = "One page of messages.", body = MessagesJson),
        (status = 400, description = "`validation_failed`: `field` names the invalid `number_id`, `limit`, `before` or `q`.",
            body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`forbidden`: the unrouted inbox is for admins.",
            body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not_found`: no such number, or not one the caller may read.",
            body = Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn list_inbox(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    ApiPath(inbox): ApiPath<String>,
    RawQuery(raw): RawQuery,
) -> Result<Json<MessagesJson>, ApiError> {
    let query = PageQuery::parse(raw.as_deref())?;
    let store = state.store.clone();
    let inbox = blocking(move || {
        let inbox = if inbox == "unrouted" {
            authorize(&caller, Action::ReadAllMessages)
                .map_err(|d| ApiError::denied(d, "inbox"))?;
            Inbox::Unrouted
        } else {
            let number_id = inbox.parse().map_err(|_| {
                ApiError::validation("number_id", "must be a number id or `unrouted`")
            })?;
            current_inbox(&store, &caller, number_id)?
        };
        Ok::<_, ApiError>(inbox)
    })
    .await?;
    page(&state, Scope::Inboxes(vec![inbox]), query)
        .await
        .map(Json)
}

/// One page of `scope`: newest first, or with `q=` the best search hits.
async fn page(
    state: &Arc<AppState>,
    scope: Scope,
    query: PageQuery,
) -> Result<MessagesJson, ApiError> {
    let store = state.store.clone();
    let Some(q) = query.q.clone() else {
        let page = blocking(move || filtered_page(&store, &scope, &query)).await?;
        return Ok(page.into());
    };
    let search = state.search.clone();
    blocking(move || {
        let filter = match &scope {
            Scope::All => Filter::All,
            Scope::Inboxes(inboxes) => {
                Filter::Inboxes(inboxes.iter().map(|inbox| inbox.key()).collect())
            }
        };
        let hits = search
            .search_before(&q, &filter, query.limit, query.before)
            .map_err(|error| match error {
                SearchError::BadQuery(message) => ApiError::validation("q", message),
                other => ApiError::Internal(other.to_string()),
            })?;
        let mut messages = Vec::with_capacity(hits.len());
        for hit in hits {
            // The index filters by inbox already; checking the stored message again means
            // a stale index entry can never show anyone a message outside their scope.
            let Some(message) = store.message(hit.message_id)? else {
                continue;
            };
            if let Scope::Inboxes(inboxes) = &scope
                && !inboxes.contains(&message.inbox)
            {
                continue;
            }
            let mut json = MessageJson::from(message);
            json.snippet = Some(hit.snippet);
            messages.push(json);
        }
        Ok::<_, ApiError>(MessagesJson {
            messages,
            next_before: None,
        })
    })
    .await
}

/// Most messages one filtered page looks at; with `next_before` the client goes on from
/// there, so a selective filter never makes one request walk the whole store.
const MAX_SCAN: usize = 2_000;

/// A page newest first, applying `from` and `since`.
fn filtered_page(store: &Store, scope: &Scope, query: &PageQuery) -> Result<MessagePage, ApiError> {
    if query.from.is_none() && query.since_ms.is_none() {
        return Ok(store.list_messages(scope, query.before, query.limit)?);
    }
    let mut found = Vec::with_capacity(query.limit);
    let mut cursor = query.before;
    let mut scanned = 0;
    loop {
        let chunk = store.list_messages(scope, cursor, 200)?;
        let more = chunk.next_before.is_some();
        for message in chunk.messages {
            scanned += 1;
            cursor = Some(message.id);
            // Ids follow storage order: past `since`, nothing older can match.
            if query
                .since_ms
                .is_some_and(|since| message.stored_at_ms < since)
            {
                return Ok(MessagePage {
                    messages: found,
                    next_before: None,
                });
            }
            let from_matches = query
                .from
                .as_ref()
                .is_none_or(|from| message.from.eq_ignore_ascii_case(from));
            if from_matches {
                found.push(message);
                if found.len() == query.limit {
                    return Ok(MessagePage {
                        messages: found,
                        next_before: cursor,
                    });
                }
            }
            if scanned >= MAX_SCAN {
                return Ok(MessagePage {
                    messages: found,
                    next_before: cursor,
                });
            }
        }
        if !more {
            return Ok(MessagePage {
                messages: found,
                next_before: None,
            });
        }
    }
}

/// The inbox a caller reads for a number, after checking they may: the active lease's
/// (its holder, admins), or the number's own (public numbers; admins while it is idle).
pub(super) fn current_inbox(
    store: &Store,
    caller: &Caller,
    number_id: u64,
) -> Result<Inbox, ApiError> {
    // One snapshot for both the permission and the inbox, so a lease changing hands in
    // between cannot point the caller at the next holder's inbox.
    let access = store
        .number_access(number_id)?
        .ok_or(ApiError::NotFound("number"))?;
    authorize(
        caller,
        Action::ReadNumber {
            public: access.open_to_everyone(),
            holder: access.holder(),
        },
    )
    .map_err(|d| ApiError::denied(d, "number"))?;
    Ok(access.inbox(number_id))
}

/// The newest message of a number's current inbox.
#[utoipa::path(
    get,
    path = "/api/v1/numbers/{id}/messages/latest",
    operation_id = "latest_message",
    tag = "messages",
    security(("basic" = []), ("bearer" = [])),
    params(("id" = u64, Path, description = "The number id.")),
    responses(
        (status = 200, description = "The newest message.", body = MessageJson),
        (status = 404, description = "`not_found`: no such number, not one the caller may read, or its inbox is empty.",
            body = Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn latest(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    ApiPath(number_id): ApiPath<u64>,
) -> Result<Json<MessageJson>, ApiError> {
    let store = state.store.clone();
    let message = blocking(move || {
        let inbox = current_inbox(&store, &caller, number_id)?;
        let page = store.list_messages(&Scope::Inboxes(vec![inbox]), None, 1)?;
        page.messages
            .into_iter()
            .next()
            .ok_or(ApiError::NotFound("message"))
    })
    .await?;
    Ok(Json(message.into()))
}

/// Longest a client may wait for the next message in one request; longer than most
/// proxies' idle timeouts would only produce cut connections.
pub(super) const MAX_WAIT_SECS: u64 = 120;
const DEFAULT_WAIT_SECS: u64 = 30;

/// `?after=&timeout=&from=`, validated with errors that name the parameter.
struct WaitQuery {
    after: Option<u64>,
    timeout: std::time::Duration,
    from: Option<String>,
    /// Only messages that carry a one-time code.
    otp: bool,
}

impl WaitQuery {
    fn parse(raw: Option<&str>) -> Result<Self, ApiError> {
        let mut query = Self {
            after: None,
            timeout: std::time::Duration::from_secs(DEFAULT_WAIT_SECS),
            from: None,
            otp: false,
        };
        for (key, value) in form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
            match key.as_ref() {
                "after" => {
                    query.after = Some(
                        value
                            .parse()
                            .map_err(|_| ApiError::validation("after", "must be a message id"))?,
                    );
                }
                "timeout" => {
                    let secs: u64 = value
                        .parse()
                        .ok()
                        .filter(|secs| (1..=MAX_WAIT_SECS).contains(secs))
                        .ok_or_else(|| {
                            ApiError::validation(
                                "timeout",
                                format!("must be 1 to {MAX_WAIT_SECS} seconds"),
                            )
                        })?;
                    query.timeout = std::time::Duration::from_secs(secs);
                }
                "from" => {
                    query.from = Some(value.trim().to_owned()).filter(|from| !from.is_empty())
                }
                "otp" => {
                    query.otp = match value.as_ref() {
                        "true" | "1" => true,
                        "false" | "0" => false,
                        _ => return Err(ApiError::validation("otp", "must be true or false")),
                    };
                }
                _ => {}
            }
        }
        Ok(query)
    }

    fn matches(&self, message: &MessageView) -> bool {
        self.from
            .as_ref()
            .is_none_or(|from| message.from.eq_ignore_ascii_case(from))
            && (!self.otp || message.otp_and_service().0.is_some())
    }
}

/// Wait for the next message to a number (long poll).
///
/// Answers as soon as a message newer than `after` (default: the newest now) that matches
/// `from` is in the number's current inbox, or with 204 when `timeout` passes first.
/// What test scripts poll for.
#[utoipa::path(
    get,
    path = "/api/v1/numbers/{id}/messages/next",
    operation_id = "wait_for_next_message",
    tag = "messages",
    security(("basic" = []), ("bearer" = [])),
    params(
        ("id" = u64, Path, description = "The number id."),
        ("after" = Option<u64>, Query,
            description = "Only messages newer than this message id; default: the newest message now."),
        ("timeout" = Option<u64>, Query, minimum = 1, maximum = 120,
            description = "Seconds to wait, 1 to 120; default 30."),
        ("from" = Option<String>, Query,
            description = "Only messages from this sender (case-insensitive exact match)."),
        ("otp" = Option<bool>, Query,
            description = "true: only messages that carry a one-time code."),
    ),
    responses(
        (status = 200, description = "The first matching new message.", body = MessageJson),
        (status = 204, description = "No matching message arrived within `timeout`."),
        (status = 400, description = "`validation_failed`: `field` names the invalid `after`, `timeout` or `otp`.",
            body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not_found`: no such number, or not one the caller may read.",
            body = Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn wait_next(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    ApiPath(number_id): ApiPath<u64>,
    RawQuery(raw): RawQuery,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;

    let query = Arc::new(WaitQuery::parse(raw.as_deref())?);
    let after = query.after;
    let deadline = tokio::time::Instant::now() + query.timeout;
    let store = state.store.clone();
    let (inbox, mut cursor) = blocking(move || {
        let inbox = current_inbox(&store, &caller, number_id)?;
        let cursor = match after {
            Some(after) => after,
            None => store.latest_message_id()?,
        };
        Ok::<_, ApiError>((inbox, cursor))
    })
    .await?;
    // Subscribe before the first look, so a message stored in between still wakes us;
    // only this inbox's messages do.
    let mut arrivals = state.realtime.hub.subscribe(&[inbox]);
    loop {
        let store = state.store.clone();
        let filter = Arc::clone(&query);
        let (found, seen) = blocking(move || {
            let batch = store.messages_after(inbox, cursor, 100)?;
            let seen = batch.last().map(|m| m.id);
            Ok::<_, ApiError>((batch.into_iter().find(|m| filter.matches(m)), seen))
        })
        .await?;
        if let Some(message) = found {
            return Ok(Json(MessageJson::from(message)).into_response());
        }
        if let Some(seen) = seen {
            // Skipped messages that did not match; look again from there at once, as
            // long as the wait lasts (a long inbox read from the start could take longer).
            if tokio::time::Instant::now() >= deadline {
                return Ok(axum::http::StatusCode::NO_CONTENT.into_response());
            }
            cursor = seen;
            continue;
        }
        tokio::select! {
            // Whatever arrived (or was missed while this waiter lagged), the next store
            // read sees it, so queued events need no look of their own.
            received = arrivals.recv() => {
                if let Received::Lagged = received {
                    arrivals = state.realtime.hub.subscribe(&[inbox]);
                }
                arrivals.discard_queued();
            }
            () = tokio::time::sleep_until(deadline) => {
                return Ok(axum::http::StatusCode::NO_CONTENT.into_response());
            }
        }
    }
}

/// The message if it is `number_id`'s and the caller may manage it.
fn managed_message(
    store: &Store,
    caller: &Caller,
    number_id: u64,
    message_id: u64,
) -> Result<MessageView, ApiError> {
    let message = store
        .message(message_id)?
        .filter(|m| m.number_id == Some(number_id))
        .ok_or(ApiError::NotFound("message"))?;
    let holder = match message.inbox {
        Inbox::Lease(lease) => store.lease(lease)?.map(|lease| lease.holder),
        Inbox::Number(_) | Inbox::Unrouted => None,
    };
    authorize(caller, Action::ManageMessage { holder })
        .map_err(|d| ApiError::denied(d, "message"))?;
    Ok(message)
}

/// Mark a message read.
#[utoipa::path(
    post,
    path = "/api/v1/messages/{number_id}/{message_id}/read",
    operation_id = "mark_message_read",
    tag = "messages",
    security(("basic" = []), ("bearer" = [])),
    params(
        ("number_id" = u64, Path, description = "The number the message was sent to."),
        ("message_id" = u64, Path, description = "The message id."),
    ),
    responses(
        (status = 204, description = "The message is marked read."),
        (status = 404, description = "`not_found`: no such message on this number, or not one the caller manages (lease holders and admins do).",
            body = Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn mark_read(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    ApiPath((number_id, message_id)): ApiPath<(u64, u64)>,
) -> Result<axum::http::StatusCode, ApiError> {
    let store = state.store.clone();
    blocking(move || managed_message(&store, &caller, number_id, message_id)).await?;
    state.store.mark_read(message_id).await?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}

/// Delete a message now, before its retention ends.
#[utoipa::path(
    delete,
    path = "/api/v1/messages/{number_id}/{message_id}",
    operation_id = "delete_message",
    tag = "messages",
    security(("basic" = []), ("bearer" = [])),
    params(
        ("number_id" = u64, Path, description = "The number the message was sent to."),
        ("message_id" = u64, Path, description = "The message id."),
    ),
    responses(
        (status = 204, description = "The message is deleted, for good: until it would have expired, a provider's retry or another provider's copy of it is answered as a duplicate and not stored."),
        (status = 404, description = "`not_found`: no such message on this number, or not one the caller manages (lease holders and admins do).",
            body = Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn delete_one(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    ApiPath((number_id, message_id)): ApiPath<(u64, u64)>,
) -> Result<axum::http::StatusCode, ApiError> {
    let store = state.store.clone();
    blocking(move || managed_message(&store, &caller, number_id, message_id)).await?;
    state.store.delete_message(message_id).await?;
    state.indexer.delete(&[message_id]);
    Ok(axum::http::StatusCode::NO_CONTENT)
}

/// Runs blocking store work off the async workers.
pub(super) async fn blocking<T, E>(
    work: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, ApiError>
where
    T: Send + 'static,
    E: Into<ApiError> + Send + 'static,
{
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(Into::into)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(text: &str, binary: bool) -> MessageView {
        MessageView {
            id: 1,
            inbox: Inbox::Unrouted,
            number_id: None,
            number: "+12025550101".into(),
            from: "+14155550199".into(),
            text: text.into(),
            received_at_ms: 0,
            stored_at_ms: 0,
            expires_at_ms: 0,
            provider: "p".into(),
            provider_message_id: "m1".into(),
            read: false,
            partial: false,
            binary,
        }
    }

    #[test]
    fn the_otp_filter_and_the_message_agree_on_binary_messages() {
        let wants_code = WaitQuery::parse(Some("otp=true")).unwrap();
        // Octets 12 34 56 shown as hex look like a bare code, but are none.
        let binary = view("123456", true);
        assert_eq!(MessageJson::from(binary.clone()).otp, None);
        assert!(!wants_code.matches(&binary));
        let text = view("123456", false);
        assert!(wants_code.matches(&text));
        assert_eq!(MessageJson::from(text).otp.as_deref(), Some("123456"));
    }
}
