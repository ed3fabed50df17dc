//! Who is calling: a Bearer access token (checked against its session, so logout is
//! immediate), or HTTP Basic for scripts (checked under the guessing limit).
//!
//! Basic is refused on a request a web page makes (one that carries `Origin`). A browser
//! that once answered the Basic prompt keeps those credentials and attaches them to
//! whatever any site sends here, WebSocket handshakes included, which no CORS rule
//! stops; a token is never attached that way.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::header;
use axum::http::request::Parts;
use base64::Engine;

use super::{ApiError, AppState, forwarded};
use crate::auth::password_guard::GuardError;
use crate::auth::permissions::Caller;
use crate::store::{Store, StoreError};

impl FromRequestParts<Arc<AppState>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, ApiError> {
        if !parts.headers.contains_key(header::AUTHORIZATION) {
            return Err(ApiError::Unauthenticated);
        }
        let (scheme, credentials) =
            authorization(&parts.headers).ok_or(ApiError::BadCredentials)?;
        if scheme.eq_ignore_ascii_case("bearer") {
            let caller = bearer(state, credentials.trim()).await?;
            state.limits.check_caller(&caller)?;
            return Ok(caller);
        }
        if !scheme.eq_ignore_ascii_case("basic") {
            return Err(ApiError::Unauthenticated);
        }
        if parts.headers.contains_key(header::ORIGIN) {
            return Err(ApiError::validation(
                "authorization",
                "HTTP Basic is for scripts; a web page must send an access token",
            ));
        }
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(credentials.trim())
            .map_err(|_| ApiError::BadCredentials)?;
        let decoded = String::from_utf8(decoded).map_err(|_| ApiError::BadCredentials)?;
        let (username, password) = decoded.split_once(':').ok_or(ApiError::BadCredentials)?;
        let client = client_ip(parts, state)?;
        let verified = state
            .passwords
            .verify(client, username, password)
            .await
            .map_err(ApiError::from)?;
        let caller = Caller {
            user_id: verified.user_id,
            role: verified.role,
            session_id: None,
        };
        state.limits.check_caller(&caller)?;
        Ok(caller)
    }
}

/// `Authorization: <scheme> <credentials>`, split; `None` when absent or not that form.
pub(super) fn authorization(headers: &axum::http::HeaderMap) -> Option<(&str, &str)> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .split_once(' ')
}

pub(super) async fn bearer(state: &AppState, token: &str) -> Result<Caller, ApiError> {
    let claims = state.tokens.verify(token).ok_or(ApiError::BadCredentials)?;
    let store = state.store.clone();
    let holds = tokio::task::spawn_blocking(move || {
        session_holds(&store, claims.session_id, claims.user_id)
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))??;
    if !holds {
        return Err(ApiError::BadCredentials);
    }
    Ok(Caller {
        user_id: claims.user_id,
        role: claims.role,
        session_id: Some(claims.session_id),
    })
}

/// Whether session `session_id` is live and `user_id`'s: a token whose session was
/// logged out (or that names someone else's) is dead, and so is a stream opened with it.
pub(super) fn session_holds(
    store: &Store,
    session_id: u64,
    user_id: u64,
) -> Result<bool, StoreError> {
    Ok(store
        .live_session(session_id)?
        .is_some_and(|session| session.user_id == user_id))
}

/// The client's address, for per-address limits.
pub fn client_ip(parts: &Parts, state: &AppState) -> Result<std::net::IpAddr, ApiError> {
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip())
        .ok_or_else(|| ApiError::Internal("no peer address".into()))?;
    Ok(forwarded::client_ip(
        &state.config.trusted_proxies,
        peer,
        &parts.headers,
    ))
}

impl From<GuardError> for ApiError {
    fn from(error: GuardError) -> Self {
        match error {
            // Disabled accounts look like wrong passwords unless a handler knows better.
            GuardError::Invalid | GuardError::Disabled(..) => Self::BadCredentials,
            GuardError::Limited { retry_after } => Self::RateLimited {
                retry_after,
                limit: None,
            },
            GuardError::Store(error) => error.into(),
        }
    }
}

/// The client's address as a handler argument (see [`forwarded::client_ip`]).
pub struct ClientIp(pub std::net::IpAddr);

impl FromRequestParts<Arc<AppState>> for ClientIp {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, ApiError> {
        client_ip(parts, state).map(ClientIp)
    }
}
