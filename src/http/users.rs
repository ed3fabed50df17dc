//! `/api/v1/admin/users`: accounts, managed by admins.

use std::sync::Arc;

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::json::{ApiJson, ApiPath};
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
    let username = checked_username(&body.username)?;
    check_password_rules(&body.password)?;
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

#[derive(Debug, Serialize, ToSchema)]
pub struct UserDetailsJson {
    pub id: u64,
    pub username: String,
    pub role: RoleJson,
    pub disabled: bool,
    #[schema(format = DateTime)]
    pub created_at: String,
    /// The account's e-mail address, if it gave one.
    #[schema(format = Email)]
    pub email: Option<String>,
    /// Whether its owner confirmed `email` through the mailed link.
    pub email_verified: bool,
    /// When a temporary account (an anonymous guest's) is deleted with everything it
    /// owns; absent for permanent accounts.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    pub expires_at: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UsersJson {
    pub users: Vec<UserDetailsJson>,
}

fn details(
    state: &AppState,
    id: u64,
    user: crate::store::records::UserV3,
    expires_at_ms: Option<i64>,
) -> Result<UserDetailsJson, ApiError> {
    let email = state.store.user_email(id, &user)?;
    Ok(UserDetailsJson {
        id,
        username: user.username,
        role: user.role.into(),
        disabled: user.disabled,
        created_at: super::messages::rfc3339(user.created_at_ms),
        email: email.map(|(address, _)| address.as_str().to_owned()),
        email_verified: user.email_verified,
        expires_at: expires_at_ms.map(super::messages::rfc3339),
    })
}

/// List accounts, optionally only those whose name contains `q`.
#[utoipa::path(
    get,
    path = "/api/v1/admin/users",
    operation_id = "list_users",
    tag = "admin",
    security(("basic" = []), ("bearer" = [])),
    params(("q" = Option<String>, Query, description = "Only usernames containing this.")),
    responses(
        (status = 200, description = "The accounts, in id order.", body = UsersJson),
        (status = 403, description = "`forbidden`: admins only.",
            body = Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn list(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    RawQuery(raw): RawQuery,
) -> Result<Json<UsersJson>, ApiError> {
    authorize(&caller, Action::ManageUsers).map_err(|d| ApiError::denied(d, "users"))?;
    let q = form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
        .find(|(key, _)| key == "q")
        .map(|(_, value)| value.trim().to_owned())
        .filter(|q| !q.is_empty());
    let store = state.store.clone();
    let (users, ends) = super::messages::blocking(move || {
        Ok::<_, ApiError>((store.list_users(q.as_deref())?, store.account_expiries()?))
    })
    .await?;
    Ok(Json(UsersJson {
        users: users
            .into_iter()
            .map(|(id, user)| details(&state, id, user, ends.get(&id).copied()))
            .collect::<Result<_, _>>()?,
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserUpdate {
    pub role: Option<RoleJson>,
    /// A disabled account cannot log in; its sessions end at once.
    pub disabled: Option<bool>,
    /// A new password for the account (for servers that send no e-mail, this is how a
    /// forgotten password is reset). Its sessions end.
    #[schema(format = Password, min_length = 8)]
    pub password: Option<String>,
}

/// Change an account's role, password, or disable it. Any of these ends its sessions:
/// tokens carry the old role.
#[utoipa::path(
    put,
    path = "/api/v1/admin/users/{id}",
    operation_id = "update_user",
    tag = "admin",
    security(("basic" = []), ("bearer" = [])),
    params(("id" = u64, Path, description = "The account id.")),
    request_body = UserUpdate,
    responses(
        (status = 200, description = "The account as it is now.", body = UserDetailsJson),
        (status = 400, description = "`validation_failed`: the password is too short.",
            body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`forbidden`: admins only.",
            body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not_found`: no such account.",
            body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`conflict`: admins cannot disable or demote themselves.",
            body = Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn update(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    ApiPath(id): ApiPath<u64>,
    ApiJson(body): ApiJson<UserUpdate>,
) -> Result<Json<UserDetailsJson>, ApiError> {
    authorize(&caller, Action::ManageUsers).map_err(|d| ApiError::denied(d, "users"))?;
    let demotes_self = id == caller.user_id
        && (body.disabled == Some(true)
            || body
                .role
                .is_some_and(|role| !matches!(role, RoleJson::Admin)));
    if demotes_self {
        // An instance with no admin left cannot be managed at all.
        return Err(ApiError::Conflict(
            "you cannot disable or demote your own account",
        ));
    }
    if let Some(password) = &body.password {
        check_password_rules(password)?;
        let keep = (id == caller.user_id)
            .then_some(caller.session_id)
            .flatten();
        state
            .store
            .set_password(id, password, keep, None)
            .await?
            .ok_or(ApiError::NotFound("account"))?;
    }
    let user = state
        .store
        .update_user(id, body.role.map(Role::from), body.disabled)
        .await?
        .ok_or(ApiError::NotFound("account"))?;
    let expires_at_ms = state.store.account_expiry(id)?;
    Ok(Json(details(&state, id, user, expires_at_ms)?))
}

/// Delete an account with everything it owns: sessions end, leases are revoked (their
/// numbers rest in quarantine) and every message of its leases is deleted.
#[utoipa::path(
    delete,
    path = "/api/v1/admin/users/{id}",
    operation_id = "delete_user",
    tag = "admin",
    security(("basic" = []), ("bearer" = [])),
    params(("id" = u64, Path, description = "The account id.")),
    responses(
        (status = 204, description = "Deleted, with all its data."),
        (status = 403, description = "`forbidden`: admins only.",
            body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not_found`: no such account.",
            body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`conflict`: admins cannot delete themselves.",
            body = Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn delete(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    ApiPath(id): ApiPath<u64>,
) -> Result<StatusCode, ApiError> {
    authorize(&caller, Action::ManageUsers).map_err(|d| ApiError::denied(d, "users"))?;
    if id == caller.user_id {
        return Err(ApiError::Conflict("you cannot delete your own account"));
    }
    let deleted = state
        .store
        .delete_user(id, state.config.quarantine)
        .await?
        .ok_or(ApiError::NotFound("account"))?;
    state.indexer.delete(&deleted);
    Ok(StatusCode::NO_CONTENT)
}

/// A valid username, lower-cased.
pub(super) fn checked_username(input: &str) -> Result<String, ApiError> {
    let username = input.trim().to_ascii_lowercase();
    if valid_username(&username) {
        Ok(username)
    } else {
        Err(ApiError::validation(
            "username",
            "use 3 to 32 of a-z, 0-9, '.', '-' and '_'",
        ))
    }
}

pub(super) fn check_password_rules(password: &str) -> Result<(), ApiError> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(ApiError::validation(
            "password",
            format!("must be at least {MIN_PASSWORD_CHARS} characters"),
        ));
    }
    Ok(())
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewInvite {
    /// The role the invited account gets; default `user`.
    pub role: Option<RoleJson>,
    /// Seconds the code stays valid; default 7 days.
    pub expires_in_secs: Option<u64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct InviteJson {
    /// Give this to the person; it is shown only now and works once.
    pub code: String,
    pub role: RoleJson,
    #[schema(format = DateTime)]
    pub expires_at: String,
}

/// How long an invite code is valid unless the admin says otherwise.
const DEFAULT_INVITE_SECS: u64 = 7 * 86_400;

/// Issue a single-use invite code (for `registration = "invite"`).
#[utoipa::path(
    post,
    path = "/api/v1/admin/invites",
    operation_id = "create_invite",
    tag = "admin",
    security(("basic" = []), ("bearer" = [])),
    request_body = NewInvite,
    responses(
        (status = 201, description = "The code; it is shown only now.", body = InviteJson),
        (status = 400, description = "`validation_failed`: `field` names the invalid `expires_in_secs` or `body`.",
            body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`forbidden`: admins only.",
            body = Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn create_invite(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    ApiJson(body): ApiJson<NewInvite>,
) -> Result<(StatusCode, Json<InviteJson>), ApiError> {
    authorize(&caller, Action::ManageUsers).map_err(|d| ApiError::denied(d, "invites"))?;
    let secs = body.expires_in_secs.unwrap_or(DEFAULT_INVITE_SECS);
    if !(60..=365 * 86_400).contains(&secs) {
        return Err(ApiError::validation(
            "expires_in_secs",
            "must be from 60 seconds to 365 days",
        ));
    }
    let role = body.role.unwrap_or(RoleJson::User);
    let (code, code_hash) = crate::auth::one_time::generate()?;
    let expires_at_ms =
        crate::store::now_ms().saturating_add(i64::try_from(secs * 1000).unwrap_or(i64::MAX));
    state
        .store
        .create_invite(code_hash, caller.user_id, role.into(), expires_at_ms)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(InviteJson {
            code,
            role,
            expires_at: super::messages::rfc3339(expires_at_ms),
        }),
    ))
}
