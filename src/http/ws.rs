//! WebSocket: `GET /api/v1/ws` — JSON frames to follow several numbers on one socket.
//!
//! Client frames: `{"type":"subscribe","numbers":[1,2],"after":N}` (`after` optional:
//! replay stored messages newer than N first), `{"type":"unsubscribe","numbers":[1]}`,
//! `{"type":"ping"}`. Server frames: `subscribed`/`unsubscribed` acks, `message` events
//! (the same JSON as SSE and Socket.IO), `pong`, `error`, and `resume` right before a
//! close that the client should follow by reconnecting with `after`.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::openapi::Problem;
use super::streams::{self, StreamCaller};
use super::{ApiError, AppState};
use crate::auth::permissions::Caller;
use crate::realtime::{ConnectionGuard, Next, Session, Subscription, Transport};

/// Close codes, each saying why (4000–4999 are the application's own).
pub mod close {
    /// The server is shutting down or restarting: reconnect later and resume.
    pub const RESTART: u16 = 1012;
    /// The store failed: reconnect later and resume.
    pub const INTERNAL: u16 = 1011;
    /// The client fell behind: reconnect and resume after the id in the reason.
    pub const TOO_SLOW: u16 = 4008;
    /// No valid credentials.
    pub const UNAUTHORIZED: u16 = 4401;
    /// A subscription named a number the caller may not read.
    pub const FORBIDDEN_NUMBER: u16 = 4403;
    /// Nothing, not even a pong, arrived within `realtime_idle_timeout`.
    pub const IDLE: u16 = 4408;
    /// Too many connections or requests; retry later.
    pub const TOO_MANY: u16 = 4429;
}

/// Bytes read from the socket at a time. Client frames are small JSON; tungstenite's
/// default (128 KiB, allocated up front) would cost that much memory per idle connection.
const READ_BUFFER: usize = 4 * 1024;

/// A client's goodbye is awaited this long after our close frame, so it arrives before
/// the socket closes (closing with unread input would reset the connection).
const CLOSE_LINGER: Duration = Duration::from_secs(2);

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum ClientFrame {
    Subscribe {
        numbers: Vec<u64>,
        #[serde(default)]
        after: Option<u64>,
    },
    Unsubscribe {
        numbers: Vec<u64>,
    },
    Ping,
}

#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ServerFrame<'a> {
    Subscribed {
        numbers: &'a [u64],
        /// Where the subscription starts: the `after` to resume from if the connection
        /// drops before a message comes.
        after: u64,
    },
    Unsubscribed {
        numbers: &'a [u64],
    },
    Pong,
    Error {
        code: &'static str,
        message: String,
    },
    Resume {
        after: u64,
        reason: &'static str,
    },
}

impl ServerFrame<'_> {
    fn message(&self) -> Message {
        Message::Text(Utf8Bytes::from(
            serde_json::to_string(self).unwrap_or_default(),
        ))
    }
}

/// Follow numbers' new messages over a WebSocket.
///
/// After the upgrade, send `{"type":"subscribe","numbers":[<number id>…],"after":<id>}`;
/// the server acks with `subscribed` (its `after`: where the subscription starts, to
/// resume from if the connection drops before a message) and then sends each new message
/// as an [`EventJson`] frame (`after`: stored messages newer than that id come first). Close codes: 4401 no
/// valid credentials, 4403 a number the caller may not read, 4008 too slow (reconnect
/// with the `after` of the preceding `resume` frame), 4408 idle, 4429 too many
/// connections, 1012 server restarting (reconnect later and resume), 1011 store failure.
///
/// Authenticate with the `Authorization` header, or `?access_token=` from browsers.
#[utoipa::path(
    get,
    path = "/api/v1/ws",
    operation_id = "websocket",
    tag = "realtime",
    security(("basic" = []), ("bearer" = []), ("access_token" = [])),
    params(
        ("access_token" = Option<String>, Query,
            description = "An access token, for clients that cannot send `Authorization` (browsers)."),
    ),
    responses(
        (status = 101, description = "Switched to the WebSocket protocol; frames carry `EventJson` messages."),
        (status = 400, description = "`validation_failed`: not a WebSocket upgrade request (field upgrade).",
            body = Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn connect(
    caller: Result<StreamCaller, ApiError>,
    State(state): State<Arc<AppState>>,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let upgrade = upgrade.map_err(|rejection| {
        ApiError::validation("upgrade", format!("not a WebSocket request: {rejection}"))
    })?;
    // Refusals happen after the upgrade, as close codes: browsers cannot read the status
    // of a failed handshake, but they do see a close code.
    let admitted = caller.and_then(|StreamCaller { caller, ip }| {
        streams::open(&state, Transport::WebSocket, &caller, ip).map(|guard| (caller, guard))
    });
    let max_message = state.config.api_body_limit;
    Ok(upgrade
        .read_buffer_size(READ_BUFFER)
        // Each frame goes out at once: events are latency-sensitive, and a buffer kept per
        // connection would be memory held by idle sockets.
        .write_buffer_size(0)
        .max_message_size(max_message)
        // A frame is buffered whole before the message limit applies: cap it too.
        .max_frame_size(max_message)
        .on_upgrade(move |socket| {
            let realtime = Arc::clone(&state);
            realtime.realtime.track(async move {
                match admitted {
                    Ok((caller, guard)) => serve(state, socket, caller, guard).await,
                    Err(error) => refuse(socket, &error).await,
                }
            })
        }))
}

/// Closes a socket whose handshake was refused, with a code that says why.
async fn refuse(mut socket: WebSocket, error: &ApiError) {
    let code = match error {
        // The handshake's only input is its credentials: a malformed one (HTTP Basic
        // from a web page, say) is no valid credentials too.
        ApiError::Unauthenticated | ApiError::BadCredentials | ApiError::Validation { .. } => {
            close::UNAUTHORIZED
        }
        ApiError::RateLimited { .. } | ApiError::TooManyConnections { .. } => close::TOO_MANY,
        _ => close::INTERNAL,
    };
    let _ = socket.send(error_frame(error)).await;
    goodbye(socket, code, &error.to_string()).await;
}

fn error_frame(error: &ApiError) -> Message {
    ServerFrame::Error {
        code: error.code(),
        message: error.to_string(),
    }
    .message()
}

/// Sends a close frame (reason cut to the protocol's 123 bytes) and waits briefly for
/// the client's reply.
async fn goodbye(mut socket: WebSocket, code: u16, reason: &str) {
    let mut cut = reason.len().min(123);
    while !reason.is_char_boundary(cut) {
        cut -= 1;
    }
    let frame = CloseFrame {
        code,
        reason: Utf8Bytes::from(&reason[..cut]),
    };
    if socket.send(Message::Close(Some(frame))).await.is_err() {
        return;
    }
    let _ = tokio::time::timeout(CLOSE_LINGER, async {
        while let Some(Ok(message)) = socket.recv().await {
            if matches!(message, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
}

/// Why a connection ends.
enum End {
    /// Close with this code and reason (after an optional last frame).
    Close {
        code: u16,
        reason: String,
        last: Option<Message>,
    },
    /// The client is gone or cannot take data; just drop the socket.
    Drop,
}

async fn serve(
    state: Arc<AppState>,
    mut socket: WebSocket,
    caller: Caller,
    guard: ConnectionGuard,
) {
    let config = state.realtime.config.clone();
    let mut session = Session::new(config.max_subscriptions);
    let mut closing = std::pin::pin!(state.realtime.closing());
    let mut keepalive =
        tokio::time::interval_at(Instant::now() + config.keepalive, config.keepalive);
    let mut last_heard = Instant::now();
    let end = loop {
        let outgoing = tokio::select! {
            biased;
            () = &mut closing => {
                let after = session.resume_after().unwrap_or(0);
                break End::Close {
                    code: close::RESTART,
                    reason: format!("server restarting; reconnect later and resume after {after}"),
                    last: Some(ServerFrame::Resume { after, reason: "shutdown" }.message()),
                };
            }
            incoming = socket.recv() => {
                let Some(Ok(incoming)) = incoming else { break End::Drop };
                last_heard = Instant::now();
                match handle(&state, caller, &mut session, incoming).await {
                    Ok(Some(reply)) => reply,
                    Ok(None) => continue,
                    Err(end) => break end,
                }
            }
            next = session.next() => match next {
                Ok(Next::Event(event)) => match Utf8Bytes::try_from(event.json.clone()) {
                    Ok(text) => Message::Text(text),
                    Err(_) => continue,
                },
                Ok(Next::Lagged { .. }) => {
                    let after = session.resume_after().unwrap_or(0);
                    break End::Close {
                        code: close::TOO_SLOW,
                        reason: format!("too slow; reconnect and resume after {after}"),
                        last: Some(ServerFrame::Resume { after, reason: "too_slow" }.message()),
                    };
                }
                Err(error) => {
                    tracing::error!(%error, "WebSocket subscription could not read the store");
                    let after = session.resume_after().unwrap_or(0);
                    break End::Close {
                        code: close::INTERNAL,
                        reason: format!("store unavailable; reconnect later and resume after {after}"),
                        last: Some(ServerFrame::Resume { after, reason: "unavailable" }.message()),
                    };
                }
            },
            _ = keepalive.tick() => {
                if last_heard.elapsed() >= config.idle_timeout {
                    break End::Close { code: close::IDLE, reason: "idle".into(), last: None };
                }
                if !streams::still_allowed(&state, caller).await {
                    break signed_out();
                }
                Message::Ping(bytes::Bytes::new())
            }
        };
        // One write at a time, bounded: a client that does not read is dropped (it
        // resumes by id), and meanwhile the hub keeps queueing for it or drops it.
        if !send(&mut socket, outgoing, config.write_timeout).await {
            break End::Drop;
        }
    };
    // The connection no longer counts (status, limits) from here: only the goodbye is
    // left, and a client may reconnect while it lingers.
    drop(guard);
    if let End::Close { code, reason, last } = end {
        if let Some(last) = last
            && !send(&mut socket, last, config.write_timeout).await
        {
            return;
        }
        goodbye(socket, code, &reason).await;
    }
}

/// The end of a connection whose session was logged out or whose account changed.
fn signed_out() -> End {
    let error = ApiError::BadCredentials;
    End::Close {
        code: close::UNAUTHORIZED,
        reason: "the session has ended; sign in again".into(),
        last: Some(error_frame(&error)),
    }
}

async fn send(socket: &mut WebSocket, message: Message, limit: Duration) -> bool {
    matches!(
        tokio::time::timeout(limit, socket.send(message)).await,
        Ok(Ok(()))
    )
}

/// One client frame: the reply to send, nothing, or the end of the connection.
async fn handle(
    state: &AppState,
    caller: Caller,
    session: &mut Session,
    incoming: Message,
) -> Result<Option<Message>, End> {
    let text = match incoming {
        Message::Text(text) => text,
        Message::Close(_) => return Err(End::Drop),
        Message::Ping(_) | Message::Pong(_) => return Ok(None),
        Message::Binary(_) => {
            return Ok(Some(error_frame(&ApiError::validation(
                "frame",
                "send JSON text frames",
            ))));
        }
    };
    // Frames count against the caller's API rate, as requests would: a client that
    // floods them is cut off instead of keeping a worker busy.
    if let Err(error) = state.limits.check_caller(&caller) {
        return Err(End::Close {
            code: close::TOO_MANY,
            reason: error.to_string(),
            last: Some(error_frame(&error)),
        });
    }
    let frame: ClientFrame = match serde_json::from_str(text.as_str()) {
        Ok(frame) => frame,
        Err(error) => {
            return Ok(Some(error_frame(&ApiError::validation(
                "frame",
                format!("not a subscribe, unsubscribe or ping frame: {error}"),
            ))));
        }
    };
    match frame {
        ClientFrame::Ping => Ok(Some(ServerFrame::Pong.message())),
        ClientFrame::Unsubscribe { mut numbers } => {
            numbers.sort_unstable();
            numbers.dedup();
            numbers.retain(|number| session.remove(*number));
            Ok(Some(
                ServerFrame::Unsubscribed { numbers: &numbers }.message(),
            ))
        }
        ClientFrame::Subscribe { mut numbers, after } => {
            numbers.sort_unstable();
            numbers.dedup();
            if let Err(error) =
                streams::check_numbers(&numbers, state.realtime.config.max_subscriptions).and_then(
                    |()| {
                        session.check(&numbers).map_err(|_| {
                            ApiError::validation(
                                "numbers",
                                format!(
                                    "at most {} numbers per connection",
                                    state.realtime.config.max_subscriptions
                                ),
                            )
                        })
                    },
                )
            {
                return Ok(Some(error_frame(&error)));
            }
            let resolved = match streams::inboxes(state, caller, numbers.clone()).await {
                Ok(resolved) => resolved,
                Err(ApiError::BadCredentials) => return Err(signed_out()),
                Err(error @ (ApiError::NotFound(_) | ApiError::Forbidden)) => {
                    return Err(End::Close {
                        code: close::FORBIDDEN_NUMBER,
                        reason: format!("{error}"),
                        last: Some(error_frame(&error)),
                    });
                }
                Err(error) => return Ok(Some(error_frame(&error))),
            };
            let after = session.add(&resolved, |inboxes| {
                Subscription::open(&state.realtime.hub, state.store.clone(), inboxes, after)
            });
            Ok(Some(
                ServerFrame::Subscribed {
                    numbers: &numbers,
                    after,
                }
                .message(),
            ))
        }
    }
}
