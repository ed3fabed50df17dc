//! HTTP Basic authentication as the admin account. Tokens replace it for everyday use
//! once accounts exist; Basic stays for scripts and the first steps of a new install.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use base64::Engine;

use super::{ApiError, AppState};
use crate::store::Role;

/// Proof that the request is from an admin. Take it as a handler argument.
#[derive(Debug, Clone, Copy)]
pub struct Admin;

impl FromRequestParts<Arc<AppState>> for Admin {
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
        let (username, password) = (username.to_owned(), password.to_owned());
        let store = state.store.clone();
        // argon2 takes tens of milliseconds of CPU: keep it off the async workers.
        let user = tokio::task::spawn_blocking(move || store.check_password(&username, &password))
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))??;
        let (_, user) = user.ok_or(ApiError::BadCredentials)?;
        if user.role != Role::Admin {
            return Err(ApiError::Forbidden);
        }
        Ok(Admin)
    }
}
