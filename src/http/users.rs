//! `/api/v1/admin/users`: accounts, managed by admins.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::json::ApiJson;
use super::openapi::Problem;
use super::{ApiError, AppState};
use crate::auth::permissions::{Action, Caller, authorize};
use crate::store::{MIN_PASSWORD_CHARS, Role, valid_username};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    /// 3 to 32 of a-z, 0-9, '.', '-' and '_' (upper case is folded to lower).
    pub username: String,
    /// At least 8 characters.
    #[schema(format = Password, min_length = 8)]
    pub password: String,
    pub role: RoleJson,
}

/// What an account may do: admins everything; users lease numbers and read their inboxes;
/// guests hold one lease for a limited time.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RoleJson {
    Admin,
    User,
    Guest,
}

impl From<Role> for RoleJson {
    fn from(role: Role) -> Self {
        match role {
            Role::Admin => Self::Admin,
            Role::User => Self::User,
            Role::Guest => Self::Guest,
        }
    }
}

impl From<RoleJson> for Role {
    fn from(role: RoleJson) -> Self {
        match role {
            RoleJson::Admin => Role::Admin,
            RoleJson::User => Role::User,
            RoleJson::Guest => Role::Guest,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UserJson {
    pub id: u64,
    pub username: String,
    pub role: RoleJson,
}

/// Create an account (admins).
#[utoipa::path(
    post,
    path = "/api/v1/admin/users",
    operation_id = "create_user",
    tag = "admin",
    security(("basic" = []), ("bearer" = [])),
    request_body = NewUser,
    responses(
        (status = 201, description = "The account was created.", body = UserJson),
        (status = 400, description = "`validation_failed`: `field` names the invalid `username`, `password` or `body`.",
            body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`forbidden`: admins only.",
            body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`username_taken`: an account of that name exists.",
            body = Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn create(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    ApiJson(body): ApiJson<NewUser>,
) -> Result<(StatusCode, Json<UserJson>), ApiError> {
    authorize(&caller, Action::ManageUsers).map_err(|d| ApiError::denied(d, "users"))?;
    let username = body.username.trim().to_ascii_lowercase();
    if !valid_username(&username) {
        return Err(ApiError::validation(
            "username",
            "use 3 to 32 of a-z, 0-9, '.', '-' and '_'",
        ));
    }
    if body.password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(ApiError::validation(
            "password",
            format!("must be at least {MIN_PASSWORD_CHARS} characters"),
        ));
    }
    let id = state
        .store
        .create_user(&username, &body.password, body.role.into())
        .await?
        .map_err(|_| ApiError::UsernameTaken)?;
    Ok((
        StatusCode::CREATED,
        Json(UserJson {
            id,
            username,
            role: body.role,
        }),
    ))
}
