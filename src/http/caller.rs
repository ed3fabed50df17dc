//! Who is calling: HTTP Basic, checked by [`BasicAuth`](crate::auth::basic::BasicAuth).
//! Tokens join it with the accounts work; Basic stays for scripts.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::header;
use axum::http::request::Parts;
use base64::Engine;

use super::{ApiError, AppState, forwarded};
use crate::auth::basic::BasicAuthError;
use crate::auth::permissions::Caller;

impl FromRequestParts<Arc<AppState>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, ApiError> {
        let value = parts
            .headers
            .get(header::AUTHORIZATION)
            .ok_or(ApiError::Unauthenticated)?
            .to_str()
            .map_err(|_| ApiError::BadCredentials)?;
        let (scheme, encoded) = value.split_once(' ').ok_or(ApiError::BadCredentials)?;
        if !scheme.eq_ignore_ascii_case("basic") {
            return Err(ApiError::Unauthenticated);
        }
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .map_err(|_| ApiError::BadCredentials)?;
        let decoded = String::from_utf8(decoded).map_err(|_| ApiError::BadCredentials)?;
        let (username, password) = decoded.split_once(':').ok_or(ApiError::BadCredentials)?;
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip())
            .ok_or_else(|| ApiError::Internal("no peer address".into()))?;
        let client = forwarded::client_ip(&state.config.trusted_proxies, peer, &parts.headers);
        let verified = state
            .basic_auth
            .verify(client, username, password)
            .await
            .map_err(|error| match error {
                BasicAuthError::Invalid => ApiError::BadCredentials,
                BasicAuthError::Limited { retry_after } => ApiError::RateLimited { retry_after },
                BasicAuthError::Store(error) => error.into(),
            })?;
        Ok(Caller {
            user_id: verified.user_id,
            role: verified.role,
        })
    }
}
