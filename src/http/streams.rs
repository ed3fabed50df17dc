//! What the streaming front ends (SSE, WebSocket, Socket.IO) share: who is calling
//! (including `?access_token=`, since browsers cannot set headers on EventSource or
//! WebSocket), which inboxes they may follow, and the per-user/per-address limits.

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use super::caller::{client_ip, session_holds};
use super::messages::{blocking, current_inbox};
use super::{ApiError, AppState};
use crate::auth::permissions::Caller;
use crate::realtime::{ConnectionGuard, Refused, Transport};
use crate::store::{Inbox, Store};

/// The caller of a streaming endpoint: an `Authorization` header as everywhere, or an
/// access token in the `access_token` query parameter. The token in a URL can end up in
/// proxy logs, so only these endpoints take it, and burnbox itself never logs queries.
pub struct StreamCaller {
    pub caller: Caller,
    pub ip: IpAddr,
}

impl FromRequestParts<Arc<AppState>> for StreamCaller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, ApiError> {
        let ip = client_ip(parts, state)?;
        let token = parts.uri.query().and_then(|query| {
            form_urlencoded::parse(query.as_bytes())
                .find(|(key, _)| key == "access_token")
                .map(|(_, value)| value.into_owned())
        });
        // The query's token wins over any header but a Bearer one: a browser may attach
        // Basic credentials it cached to the handshake, which a page cannot prevent.
        let bearer_header = super::caller::authorization(&parts.headers)
            .is_some_and(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"));
        let caller = match token {
            Some(token) if !bearer_header => token_caller(state, &token).await?,
            _ => Caller::from_request_parts(parts, state).await?,
        };
        Ok(Self { caller, ip })
    }
}

/// The caller behind an access token (Socket.IO's handshake `auth.token` too).
pub(super) async fn token_caller(state: &AppState, token: &str) -> Result<Caller, ApiError> {
    let caller = super::caller::bearer(state, token.trim()).await?;
    state.limits.check_caller(&caller)?;
    Ok(caller)
}

/// The inbox of each number, after checking the caller may read it: exactly the check of
/// `GET /api/v1/messages/{number}` (lease holder, public number, admin), by a caller
/// whose credentials still hold (see [`still_allowed`]).
pub(super) async fn inboxes(
    state: &AppState,
    caller: Caller,
    numbers: Vec<u64>,
) -> Result<Vec<(u64, Inbox)>, ApiError> {
    let store = state.store.clone();
    blocking(move || {
        allowed_now(&store, &caller)?;
        numbers
            .into_iter()
            .map(|number| current_inbox(&store, &caller, number).map(|inbox| (number, inbox)))
            .collect::<Result<Vec<_>, ApiError>>()
    })
    .await
}

/// Whether a connection's caller may still do what it could when it connected. A stream
/// outlives the request that opened it, so each front end asks again on every new
/// subscription and every keepalive: a logout, a password reset, a disabled account or
/// a changed role ends its streams within one keepalive interval. A store that cannot
/// answer leaves the connection as it is (the next keepalive asks again).
pub(super) async fn still_allowed(state: &AppState, caller: Caller) -> bool {
    let store = state.store.clone();
    !matches!(
        blocking(move || allowed_now(&store, &caller)).await,
        Err(ApiError::BadCredentials)
    )
}

/// A token's session is still live (and its own), and the account is enabled with the
/// role it had when the caller was admitted.
fn allowed_now(store: &Store, caller: &Caller) -> Result<(), ApiError> {
    if let Some(session_id) = caller.session_id
        && !session_holds(store, session_id, caller.user_id)?
    {
        return Err(ApiError::BadCredentials);
    }
    match store.user(caller.user_id)? {
        Some(user) if !user.disabled && user.role == caller.role => Ok(()),
        _ => Err(ApiError::BadCredentials),
    }
}

/// The last event of a stream whose caller's session ended (SSE and Socket.IO; a
/// WebSocket closes with 4401). Not a `resume`: reconnecting with the same credentials
/// fails.
pub(super) const SIGNED_OUT: &str = r#"{"type":"closed","reason":"signed_out"}"#;

/// Counts a new streaming connection, or refuses it over the configured limits.
pub(super) fn open(
    state: &AppState,
    transport: Transport,
    caller: &Caller,
    ip: IpAddr,
) -> Result<ConnectionGuard, ApiError> {
    state
        .realtime
        .connections
        .open(transport, caller.user_id, ip)
        .map_err(|refused| match refused {
            Refused::PerUser { max } => ApiError::TooManyConnections {
                max,
                per: "account",
            },
            Refused::PerAddress { max } => ApiError::TooManyConnections {
                max,
                per: "client address",
            },
        })
}

/// Parses a list of number ids: `1,2,3` (SSE's query) — also what WebSocket and
/// Socket.IO clients send as a JSON array.
pub(super) fn parse_numbers(text: &str, max: usize) -> Result<Vec<u64>, ApiError> {
    let mut numbers = Vec::new();
    for part in text
        .split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty())
    {
        numbers.push(part.parse().map_err(|_| {
            ApiError::validation("numbers", "must be number ids separated by commas")
        })?);
    }
    numbers.sort_unstable();
    numbers.dedup();
    check_numbers(&numbers, max)?;
    Ok(numbers)
}

pub(super) fn check_numbers(numbers: &[u64], max: usize) -> Result<(), ApiError> {
    if numbers.is_empty() {
        return Err(ApiError::validation(
            "numbers",
            "name at least one number id",
        ));
    }
    if numbers.len() > max {
        return Err(ApiError::validation(
            "numbers",
            format!("at most {max} numbers per connection"),
        ));
    }
    Ok(())
}
