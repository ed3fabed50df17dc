//! Socket.IO at `/socket.io/` (socketioxide), for the official `socket.io-client` v4.
//!
//! Connect with `auth: { token: "<access token>" }`; a missing or bad token, or one over
//! the connection limits, is refused with `connect_error` whose message is the error code
//! (`unauthenticated`, `bad_credentials`, `too_many_connections`, …). Then
//! `emit("subscribe", { numbers: [1, 2], after: N }, ack)`: the ack is
//! `{ ok: true, numbers, after }` or `{ ok: false, code, message }`. New messages arrive as
//! `message` events carrying the same JSON as WebSocket and SSE; to resume after a
//! reconnect, subscribe again with the last id seen as `after` (the store replays the
//! rest). `emit("unsubscribe", { numbers }, ack)` stops following them; its ack lists the
//! numbers that were followed. A socket's requests take effect in the order it sent
//! them, acks included. Before the server drops a client that fell behind, or shuts
//! down, it emits `resume` (`{ after, reason }`) and disconnects.
//!
//! Delivery goes through the hub per socket, like every front end: that is what gives
//! gap-free resume and the slow-client rule.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::json;
use socketioxide::SocketIo;
use socketioxide::adapter::Adapter;
use socketioxide::extract::{AckSender, SocketRef, TryData};
use socketioxide::handler::{ConnectHandler, FromMessageParts, Value};
use socketioxide::layer::SocketIoLayer;
use socketioxide::socket::Socket;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::caller::client_ip;
use super::{ApiError, AppState, streams};
use crate::auth::permissions::Caller;
use crate::realtime::{ConnectionGuard, Next, Session, Subscription, Transport};

/// Handshake `auth` payload.
#[derive(Debug, Deserialize)]
struct Auth {
    token: String,
}

#[derive(Debug, Deserialize)]
struct SubscribeRequest {
    numbers: Vec<u64>,
    #[serde(default)]
    after: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct UnsubscribeRequest {
    numbers: Vec<u64>,
}

/// A refused handshake; socket.io-client shows `message` in `connect_error`.
#[derive(Debug)]
struct Refusal(&'static str);

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

/// What the handshake established, kept on the socket for its event handlers.
#[derive(Clone)]
struct Admitted {
    caller: Caller,
    commands: mpsc::Sender<Command>,
    /// Cancelled when the socket disconnects, which ends its session task.
    gone: CancellationToken,
    /// Held until the socket's session task ends.
    guard: Arc<std::sync::Mutex<Option<ConnectionGuard>>>,
    line: Arc<Line>,
}

/// Serves one socket's requests in the order they arrived. socketioxide runs each event
/// handler as a task of its own, and a subscribe checks access in the store before it
/// reaches the session; without a line, an unsubscribe sent right behind it would be
/// applied first and leave the client following what it just left.
///
/// Each place waits only on the one just ahead of it, so moving the line on wakes one
/// request, however many are waiting.
#[derive(Debug, Default)]
struct Line {
    /// What the next place waits on: done when the last place taken is.
    last: std::sync::Mutex<Option<oneshot::Receiver<()>>>,
}

impl Line {
    fn place(&self) -> Place {
        let (done, behind_waits_on) = oneshot::channel();
        let ahead = self
            .last
            .lock()
            .map(|mut last| last.replace(behind_waits_on))
            .unwrap_or_default();
        Place {
            ahead,
            done: Some(done),
        }
    }
}

/// A request's place in its socket's line. Taken while socketioxide reads the packet
/// (extractors run in arrival order, before the handler's task is spawned); the turn
/// passes on when it is dropped.
struct Place {
    /// Resolves when the request ahead is done; `None` once it is.
    ahead: Option<oneshot::Receiver<()>>,
    /// Dropped when this request is done, which lets the one behind go.
    done: Option<oneshot::Sender<()>>,
}

impl Place {
    async fn turn(&mut self) {
        if let Some(ahead) = &mut self.ahead {
            // Only ever dropped, never sent: either way the request ahead is done.
            let _ = ahead.await;
            self.ahead = None;
        }
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        // Gone before its turn (its data did not parse, say): the one behind still
        // waits for the one ahead.
        if let (Some(ahead), Some(done)) = (self.ahead.take(), self.done.take())
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(async move {
                let _ = ahead.await;
                drop(done);
            });
        }
    }
}

#[derive(Debug)]
struct NotAdmitted;

impl std::fmt::Display for NotAdmitted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the socket was not admitted")
    }
}

impl std::error::Error for NotAdmitted {}

impl<A: Adapter> FromMessageParts<A> for Place {
    type Error = NotAdmitted;

    fn from_message_parts(
        socket: &Arc<Socket<A>>,
        _: &mut Value,
        _: &Option<i64>,
    ) -> Result<Self, NotAdmitted> {
        let admitted = socket.extensions.get::<Admitted>().ok_or(NotAdmitted)?;
        Ok(admitted.line.place())
    }
}

enum Command {
    /// Acked by the session task itself, so the ack precedes the subscription's events.
    Subscribe {
        numbers: Vec<(u64, crate::store::Inbox)>,
        after: Option<u64>,
        ack: AckSender,
    },
    Unsubscribe {
        numbers: Vec<u64>,
        ack: AckSender,
    },
    /// A refused request, acked in its turn like the others.
    Refuse {
        error: ApiError,
        ack: AckSender,
    },
}

/// The Socket.IO layer for one listener's router.
pub fn layer(state: &Arc<AppState>) -> SocketIoLayer {
    let config = &state.realtime.config;
    let (layer, io) = SocketIo::builder()
        .ping_interval(config.keepalive)
        .ping_timeout(config.idle_timeout)
        // Packets a socket may have waiting in the transport; past that, emits fail and
        // the socket is treated as too slow.
        .max_buffer_size(config.queue)
        .max_payload(u64::try_from(state.config.api_body_limit).unwrap_or(u64::MAX))
        .build_layer();
    let on_connect = {
        let state = Arc::clone(state);
        move |socket: SocketRef| {
            let state = Arc::clone(&state);
            async move { connected(state, socket) }
        }
    };
    let authenticate = {
        let state = Arc::clone(state);
        move |socket: SocketRef, TryData(auth): TryData<Auth>| {
            let state = Arc::clone(&state);
            async move { admit(&state, &socket, auth.ok()).await }
        }
    };
    io.ns("/", on_connect.with(authenticate));
    layer
}

/// Checks the handshake token and the connection limits.
async fn admit(state: &AppState, socket: &SocketRef, auth: Option<Auth>) -> Result<(), Refusal> {
    let auth = auth.ok_or(Refusal(ApiError::Unauthenticated.code()))?;
    let caller = streams::token_caller(state, &auth.token)
        .await
        .map_err(|error| Refusal(error.code()))?;
    let ip = client_ip(socket.req_parts(), state).map_err(|error| Refusal(error.code()))?;
    let guard = streams::open(state, Transport::SocketIo, &caller, ip)
        .map_err(|error| Refusal(error.code()))?;
    let (commands, _) = mpsc::channel(1);
    socket.extensions.insert(Admitted {
        caller,
        commands,
        gone: CancellationToken::new(),
        guard: Arc::new(std::sync::Mutex::new(Some(guard))),
        line: Arc::default(),
    });
    Ok(())
}

/// A socket is in: start its session task and listen for its requests.
fn connected(state: Arc<AppState>, socket: SocketRef) {
    let Some(mut admitted) = socket.extensions.get::<Admitted>() else {
        socket.disconnect().ok();
        return;
    };
    let guard = admitted
        .guard
        .lock()
        .map(|mut guard| guard.take())
        .ok()
        .flatten();
    let (commands, inbox) = mpsc::channel(8);
    admitted.commands = commands;
    let gone = admitted.gone.clone();
    let caller = admitted.caller;
    socket.extensions.insert(admitted);
    socket.on_disconnect(async |socket: SocketRef| {
        if let Some(admitted) = socket.extensions.get::<Admitted>() {
            admitted.gone.cancel();
        }
    });
    let task = session(
        Arc::clone(&state),
        caller,
        socket.clone(),
        inbox,
        guard,
        gone,
    );
    tokio::spawn(state.realtime.track(task));

    // Each request holds its place until its command is in the session's queue, which
    // the session applies and acks in order.
    let on_subscribe = {
        let state = Arc::clone(&state);
        move |mut place: Place,
              socket: SocketRef,
              TryData(request): TryData<SubscribeRequest>,
              ack: AckSender| {
            let state = Arc::clone(&state);
            async move {
                place.turn().await;
                let Some(admitted) = socket.extensions.get::<Admitted>() else {
                    return;
                };
                let command = match subscription(&state, admitted.caller, request).await {
                    Ok((numbers, after)) => Command::Subscribe {
                        numbers,
                        after,
                        ack,
                    },
                    Err(error) => Command::Refuse { error, ack },
                };
                admitted.commands.send(command).await.ok();
            }
        }
    };
    socket.on("subscribe", on_subscribe);
    socket.on(
        "unsubscribe",
        async |mut place: Place,
               socket: SocketRef,
               TryData(request): TryData<UnsubscribeRequest>,
               ack: AckSender| {
            place.turn().await;
            let Some(admitted) = socket.extensions.get::<Admitted>() else {
                return;
            };
            let command = match request {
                Ok(request) => Command::Unsubscribe {
                    numbers: request.numbers,
                    ack,
                },
                Err(error) => Command::Refuse {
                    error: ApiError::validation(
                        "numbers",
                        format!("expected {{numbers}}: {error}"),
                    ),
                    ack,
                },
            };
            admitted.commands.send(command).await.ok();
        },
    );
}

fn refused(ack: AckSender, error: &ApiError) {
    ack.send(&json!({"ok": false, "code": error.code(), "message": error.to_string()}))
        .ok();
}

/// What a subscribe request asks for, once checked: the numbers with their inboxes, and
/// the resume point.
async fn subscription(
    state: &AppState,
    caller: Caller,
    request: Result<SubscribeRequest, socketioxide::ParserError>,
) -> Result<(Vec<(u64, crate::store::Inbox)>, Option<u64>), ApiError> {
    // Subscriptions count against the caller's API rate, as requests would.
    state.limits.check_caller(&caller)?;
    let mut request = request.map_err(|error| {
        ApiError::validation("numbers", format!("expected {{numbers, after}}: {error}"))
    })?;
    request.numbers.sort_unstable();
    request.numbers.dedup();
    streams::check_numbers(&request.numbers, state.realtime.config.max_subscriptions)?;
    // The same check as reading the number's messages over REST.
    let numbers = streams::inboxes(state, caller, request.numbers).await?;
    Ok((numbers, request.after))
}

/// One socket's subscriptions: applies its requests and emits its events until it
/// disconnects, falls behind, or the server shuts down.
async fn session(
    state: Arc<AppState>,
    caller: Caller,
    socket: SocketRef,
    mut commands: mpsc::Receiver<Command>,
    guard: Option<ConnectionGuard>,
    gone: CancellationToken,
) {
    let max = state.realtime.config.max_subscriptions;
    let mut session = Session::new(max);
    let mut closing = std::pin::pin!(state.realtime.closing());
    let keepalive = state.realtime.config.keepalive;
    let mut recheck = tokio::time::interval_at(tokio::time::Instant::now() + keepalive, keepalive);
    let mut undelivered = None;
    let reason = loop {
        tokio::select! {
            biased;
            () = &mut closing => break "shutdown",
            () = gone.cancelled() => break "",
            _ = recheck.tick() => {
                if !streams::still_allowed(&state, caller).await {
                    if let Ok(closed) = serde_json::from_str::<&serde_json::value::RawValue>(streams::SIGNED_OUT) {
                        socket.emit("closed", closed).ok();
                    }
                    socket.clone().disconnect().ok();
                    break "";
                }
            }
            command = commands.recv() => match command {
                None => break "",
                Some(Command::Subscribe { numbers, after, ack }) => {
                    let ids: Vec<u64> = numbers.iter().map(|(number, _)| *number).collect();
                    if session.check(&ids).is_err() {
                        let error = ApiError::validation(
                            "numbers",
                            format!("at most {max} numbers per connection"),
                        );
                        refused(ack, &error);
                        continue;
                    }
                    let after = session.add(&numbers, |inboxes| {
                        Subscription::open(&state.realtime.hub, state.store.clone(), inboxes, after)
                    });
                    ack.send(&json!({"ok": true, "numbers": ids, "after": after})).ok();
                }
                Some(Command::Refuse { error, ack }) => refused(ack, &error),
                Some(Command::Unsubscribe { numbers, ack }) => {
                    let removed: Vec<u64> = numbers.into_iter().filter(|number| session.remove(*number)).collect();
                    ack.send(&json!({"ok": true, "numbers": removed})).ok();
                }
            },
            next = session.next() => match next {
                Ok(Next::Event(event)) => {
                    let Some(raw) = std::str::from_utf8(&event.json)
                        .ok()
                        .and_then(|json| serde_json::from_str::<&serde_json::value::RawValue>(json).ok())
                    else {
                        continue;
                    };
                    // Full transport buffer: the client does not keep up. The
                    // subscription counts the event as handed out; it was not, so the
                    // resume point goes back before it.
                    if socket.emit("message", raw).is_err() {
                        undelivered = Some(event.id);
                        break "too_slow";
                    }
                }
                Ok(Next::Lagged { .. }) => break "too_slow",
                Err(error) => {
                    tracing::error!(%error, "Socket.IO subscription could not read the store");
                    break "unavailable";
                }
            },
        }
    };
    if !reason.is_empty() {
        let mut after = session.resume_after().unwrap_or(0);
        if let Some(id) = undelivered {
            after = after.min(id.saturating_sub(1));
        }
        socket
            .emit(
                "resume",
                &json!({"type": "resume", "after": after, "reason": reason}),
            )
            .ok();
        socket.disconnect().ok();
    }
    drop(guard);
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures::FutureExt;

    use super::*;

    async fn served(place: &mut Place) -> bool {
        tokio::time::timeout(Duration::from_secs(5), place.turn())
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn places_are_served_in_order_and_one_gone_early_holds_up_nobody() {
        let line = Line::default();
        let (mut first, second, mut third) = (line.place(), line.place(), line.place());
        // The second one leaves before its turn (its data did not parse, say).
        drop(second);
        assert!(served(&mut first).await);
        assert!(
            third.turn().now_or_never().is_none(),
            "the third waits while the first is served"
        );
        drop(first);
        assert!(served(&mut third).await, "the second's turn was skipped");
    }
}
