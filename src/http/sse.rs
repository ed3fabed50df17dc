//! Server-sent events: `GET /api/v1/events?numbers=…` — new messages of the followed
//! numbers as `message` events whose `id:` is the message id, so a reconnecting
//! EventSource (`Last-Event-ID`) gets exactly what it missed.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::Stream;

use super::messages::EventJson;
use super::openapi::Problem;
use super::streams::{self, StreamCaller};
use super::{ApiError, AppState};
use crate::auth::permissions::Caller;
use crate::realtime::{ConnectionGuard, Next, Subscription, Transport};

/// How long an EventSource waits before reconnecting after the stream ends (the `retry:`
/// hint): soon, since it resumes by id and loses nothing either way.
const RETRY: Duration = Duration::from_secs(2);
/// After a shutdown, a little longer, so a restarting server is back.
const RETRY_AFTER_SHUTDOWN: Duration = Duration::from_secs(5);

/// `?numbers=&after=`.
struct EventsQuery {
    numbers: Vec<u64>,
    after: Option<u64>,
}

impl EventsQuery {
    fn parse(raw: Option<&str>, max: usize) -> Result<Self, ApiError> {
        let mut numbers = None;
        let mut after = None;
        for (key, value) in form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
            match key.as_ref() {
                "numbers" => numbers = Some(streams::parse_numbers(&value, max)?),
                "after" => {
                    after = Some(
                        value
                            .parse()
                            .map_err(|_| ApiError::validation("after", "must be a message id"))?,
                    );
                }
                _ => {}
            }
        }
        Ok(Self {
            numbers: numbers
                .ok_or_else(|| ApiError::validation("numbers", "name at least one number id"))?,
            after,
        })
    }
}

/// Follow numbers' new messages as server-sent events.
///
/// Each event is `event: message`, `id: <message id>` and one line of `data:` holding an
/// [`EventJson`]. With `after` (or the `Last-Event-ID` header an EventSource sends when it
/// reconnects, which wins) every stored message newer than that id comes first, so
/// nothing is missed across reconnects or server restarts. Comment lines keep the
/// connection alive. The first event, `ready` (`{"type":"ready","numbers":[…],"after":N}`),
/// says the subscription is in place and carries the `retry:` hint; `N`, also its `id:`, is
/// where the stream starts, so a reconnect before the first message misses nothing. A
/// client that falls behind, or a server shutting down, gets a last `resume` event
/// (`{"type":"resume","after":N,"reason":…}`, `id: N`) and the stream ends. When the caller's
/// session ends (logout, password reset, account disabled or its role changed), a last
/// `closed` event (`{"type":"closed","reason":"signed_out"}`) ends it within one
/// keepalive interval; reconnecting needs new credentials.
///
/// Browsers cannot set headers on an EventSource, so this endpoint also takes the access
/// token as `?access_token=`. Prefer the header where you can: URLs end up in logs.
#[utoipa::path(
    get,
    path = "/api/v1/events",
    operation_id = "stream_events",
    tag = "realtime",
    security(("basic" = []), ("bearer" = []), ("access_token" = [])),
    params(
        ("numbers" = String, Query, description = "Comma-separated number ids to follow."),
        ("after" = Option<u64>, Query,
            description = "Replay stored messages newer than this id first; default: only new messages."),
        ("Last-Event-ID" = Option<u64>, Header,
            description = "Sent by a reconnecting EventSource; overrides `after`."),
        ("access_token" = Option<String>, Query,
            description = "An access token, for clients that cannot send `Authorization` (EventSource)."),
    ),
    responses(
        (status = 200, description = "An event stream of `message` events.",
            body = EventJson, content_type = "text/event-stream"),
        (status = 400, description = "`validation_failed`: `field` names the invalid `numbers` or `after`.",
            body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not_found`: a number does not exist or is not one the caller may read.",
            body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`too_many_connections`: the account or address has as many streams open as allowed.",
            body = Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn events(
    StreamCaller { caller, ip }: StreamCaller,
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let config = &state.realtime.config;
    let mut query = EventsQuery::parse(raw.as_deref(), config.max_subscriptions)?;
    if let Some(last) = headers.get("last-event-id") {
        query.after = Some(
            last.to_str()
                .ok()
                .and_then(|value| value.trim().parse().ok())
                .ok_or_else(|| ApiError::validation("Last-Event-ID", "must be a message id"))?,
        );
    }
    // Everything that can be refused is refused here, as a problem, before the stream.
    let numbers = streams::inboxes(&state, caller, query.numbers).await?;
    let guard = streams::open(&state, Transport::Sse, &caller, ip)?;
    let inboxes: Vec<_> = numbers.iter().map(|(_, inbox)| *inbox).collect();
    let subscription = Subscription::open(
        &state.realtime.hub,
        state.store.clone(),
        &inboxes,
        query.after,
    );
    // Where this stream starts, as the event id too: EventSource sends it back as
    // `Last-Event-ID` when it reconnects, so a drop before the first message loses
    // nothing that arrived meanwhile.
    let ready = serde_json::json!({
        "type": "ready",
        "numbers": numbers.iter().map(|(number, _)| number).collect::<Vec<_>>(),
        "after": subscription.cursor(),
    })
    .to_string();
    let stream = event_stream(Arc::clone(&state), caller, subscription, guard, ready);
    let mut response = Sse::new(stream)
        .keep_alive(
            KeepAlive::new()
                .interval(config.keepalive)
                .text("keepalive"),
        )
        .into_response();
    let headers = response.headers_mut();
    // Messages are private: no cache may keep them; and buffering proxies (nginx) must
    // pass each event on at once.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}

/// The events of one connection: a `ready` event with the `retry:` hint (an event with
/// data, since EventSource drops empty ones), then messages until the client falls
/// behind, the store fails or the server shuts down.
fn event_stream(
    state: Arc<AppState>,
    caller: Caller,
    subscription: Subscription,
    guard: ConnectionGuard,
    ready: String,
) -> impl Stream<Item = Result<Event, Infallible>> + Send + 'static {
    enum Phase {
        Start(String),
        Streaming,
        Done,
    }
    struct Open {
        state: Arc<AppState>,
        caller: Caller,
        subscription: Subscription,
        _guard: ConnectionGuard,
        closing: std::pin::Pin<Box<tokio_util::sync::WaitForCancellationFutureOwned>>,
        /// When to ask again whether the caller's session still holds.
        recheck: tokio::time::Interval,
    }
    let keepalive = state.realtime.config.keepalive;
    let open = Open {
        closing: Box::pin(state.realtime.closing()),
        recheck: tokio::time::interval_at(tokio::time::Instant::now() + keepalive, keepalive),
        state,
        caller,
        subscription,
        _guard: guard,
    };
    futures_util::stream::unfold(
        (open, Phase::Start(ready)),
        |(mut open, phase)| async move {
            match phase {
                Phase::Done => return None,
                Phase::Start(ready) => {
                    let hint = Event::default()
                        .event("ready")
                        .id(open.subscription.cursor().to_string())
                        .retry(RETRY)
                        .data(ready);
                    return Some((Ok(hint), (open, Phase::Streaming)));
                }
                Phase::Streaming => {}
            }
            let next = loop {
                tokio::select! {
                    biased;
                    () = &mut open.closing => {
                        let event = resume_event(open.subscription.cursor(), "shutdown")
                            .retry(RETRY_AFTER_SHUTDOWN);
                        return Some((Ok(event), (open, Phase::Done)));
                    }
                    _ = open.recheck.tick() => {
                        if !streams::still_allowed(&open.state, open.caller).await {
                            let event = Event::default().event("closed").data(streams::SIGNED_OUT);
                            return Some((Ok(event), (open, Phase::Done)));
                        }
                    }
                    next = open.subscription.next() => break next,
                }
            };
            let (event, phase) = match next {
                Ok(Next::Event(event)) => (
                    Event::default()
                        .event("message")
                        .id(event.id.to_string())
                        .data(String::from_utf8_lossy(&event.json)),
                    Phase::Streaming,
                ),
                Ok(Next::Lagged { resume_after }) => {
                    (resume_event(resume_after, "too_slow"), Phase::Done)
                }
                Err(error) => {
                    tracing::error!(%error, "event stream could not read the store");
                    (
                        resume_event(open.subscription.cursor(), "unavailable"),
                        Phase::Done,
                    )
                }
            };
            Some((Ok(event), (open, phase)))
        },
    )
}

/// The last event of a stream that ends early: where to pick up (as its id too, for
/// EventSource's own reconnect), and why.
fn resume_event(after: u64, reason: &str) -> Event {
    Event::default()
        .event("resume")
        .id(after.to_string())
        .data(format!(
            "{{\"type\":\"resume\",\"after\":{after},\"reason\":\"{reason}\"}}"
        ))
}
