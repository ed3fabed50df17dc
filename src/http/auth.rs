//! `/api/v1/auth/*`: log in, refresh, log out, and guest sessions.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::caller::ClientIp;
use super::json::ApiJson;
use super::openapi::Problem;
use super::users::RoleJson;
use super::{ApiError, AppState};
use crate::auth::password_guard::GuardError;
use crate::auth::permissions::{Action, Caller, authorize};
use crate::auth::tokens::{AccessClaims, RefreshToken};
use crate::domain::EmailAddress;
use crate::store::{EmailTokenPurpose, RefreshRefusal, Role};

/// Guest sessions per client address: a burst of 5, then one every 2 minutes. Guests
/// need no account, so this is what keeps one client from emptying the pool.
const GUEST_BURST: u32 = 5;
const GUEST_REFILL_EVERY: Duration = Duration::from_secs(120);

pub fn guest_limiter() -> DefaultKeyedRateLimiter<std::net::IpAddr> {
    let quota = Quota::with_period(GUEST_REFILL_EVERY)
        .unwrap_or_else(|| unreachable!("the period is not zero"))
        .allow_burst(NonZeroU32::new(GUEST_BURST).unwrap_or(NonZeroU32::MIN));
    RateLimiter::keyed(quota)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TokensJson {
    /// Send as `Authorization: Bearer <access_token>`.
    pub access_token: String,
    #[schema(example = "Bearer")]
    pub token_type: &'static str,
    /// Seconds the access token is valid.
    pub expires_in: u64,
    /// Spend it at `/api/v1/auth/refresh` for new tokens; it works once.
    pub refresh_token: String,
    /// Seconds the refresh token (and so the session) is valid.
    pub refresh_expires_in: u64,
    pub user: UserRef,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UserRef {
    pub id: u64,
    pub username: String,
    pub role: RoleJson,
}

/// Issues an access token for `session` and pairs it with `refresh`.
fn tokens(
    state: &AppState,
    user_id: u64,
    username: String,
    role: Role,
    refresh: &RefreshToken,
    refresh_ttl: Duration,
) -> Result<TokensJson, ApiError> {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let claims = AccessClaims {
        user_id,
        role,
        session_id: refresh.session_id,
    };
    // A guest cannot refresh, so its one access token lasts its whole session. Logout
    // still ends it at once: every request checks the session.
    let access_ttl = if role == Role::Guest {
        refresh_ttl
    } else {
        state.config.access_token_ttl
    };
    let access_token = state.tokens.issue(claims, now, access_ttl)?;
    Ok(TokensJson {
        access_token,
        token_type: "Bearer",
        expires_in: access_ttl.as_secs(),
        refresh_token: refresh.encode(),
        refresh_expires_in: refresh_ttl.as_secs(),
        user: UserRef {
            id: user_id,
            username,
            role: role.into(),
        },
    })
}

/// Starts a session and returns its first tokens.
async fn start_session(
    state: &AppState,
    user_id: u64,
    username: String,
    role: Role,
    ttl: Duration,
) -> Result<TokensJson, ApiError> {
    let first = RefreshToken::generate(0, 1)?;
    let session = state
        .store
        .create_session(user_id, first.secret_hash(), millis(ttl))
        .await?;
    let refresh = first.for_session(session.id);
    tokens(state, user_id, username, role, &refresh, ttl)
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

fn session_ttl(state: &AppState, role: Role) -> Duration {
    match role {
        Role::Guest => state.config.guest_session,
        Role::User | Role::Admin => state.config.refresh_token_ttl,
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Login {
    pub username: String,
    #[schema(format = Password)]
    pub password: String,
}

/// Log in with a username and password; returns an access and a refresh token.
#[utoipa::path(
    post,
    path = "/api/v1/auth/login",
    operation_id = "login",
    tag = "auth",
    request_body = Login,
    responses(
        (status = 200, description = "Logged in: the session's first tokens.", body = TokensJson),
        (status = 400, description = "`validation_failed`: the body is not a login.",
            body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`bad_credentials`: wrong username or password (or a disabled account).",
            body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`email_unverified`: the right password, but the account's e-mail address is not confirmed yet; a fresh link was mailed.",
            body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`rate_limited`: too many requests or failed guesses from this address or for this account.",
            body = Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn login(
    State(state): State<Arc<AppState>>,
    ClientIp(client): ClientIp,
    ApiJson(body): ApiJson<Login>,
) -> Result<Json<TokensJson>, ApiError> {
    state.limits.check_anonymous(client)?;
    let verified = match state
        .passwords
        .verify(client, &body.username, &body.password)
        .await
    {
        Ok(verified) => verified,
        // The owner (who knows the password) of an account from open registration that
        // still waits for its address to be confirmed: say so, and send a fresh link.
        Err(GuardError::Disabled(id, user))
            if state.mailer.is_some() && user.awaiting_verification =>
        {
            super::email_links::resend_verification(&state, id, &user).await;
            return Err(ApiError::EmailUnverified);
        }
        Err(error) => return Err(error.into()),
    };
    let ttl = session_ttl(&state, verified.role);
    let tokens = start_session(
        &state,
        verified.user_id,
        body.username.to_ascii_lowercase(),
        verified.role,
        ttl,
    )
    .await?;
    Ok(Json(tokens))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Refresh {
    /// The `refresh_token` of the last token pair.
    pub refresh_token: String,
}

/// Spend a refresh token for a new token pair.
///
/// A refresh token works once: presenting a spent one again revokes the whole session.
/// Guest sessions cannot be refreshed.
#[utoipa::path(
    post,
    path = "/api/v1/auth/refresh",
    operation_id = "refresh",
    tag = "auth",
    request_body = Refresh,
    responses(
        (status = 200, description = "The new token pair.", body = TokensJson),
        (status = 400, description = "`validation_failed`: the body is not a refresh request.",
            body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`refresh_token_invalid`: not a token of this server; `refresh_token_ended`: the session expired, was revoked or is a guest's; `refresh_token_reused`: already spent, so the session is now revoked.",
            body = Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn refresh(
    State(state): State<Arc<AppState>>,
    ClientIp(client): ClientIp,
    ApiJson(body): ApiJson<Refresh>,
) -> Result<Json<TokensJson>, ApiError> {
    state.limits.check_anonymous(client)?;
    let presented = RefreshToken::parse(&body.refresh_token)
        .ok_or(ApiError::Refresh(RefreshRefusal::Invalid))?;
    let ended = || ApiError::Refresh(RefreshRefusal::Ended);
    // Revoked or expired sessions end here; a live one is rotated below, where a spent
    // or forged token is told apart and reuse revokes the session.
    let owner = state
        .store
        .live_session(presented.session_id)?
        .ok_or_else(ended)?
        .user_id;
    let user = state.store.user(owner)?.ok_or_else(ended)?;
    if user.role == Role::Guest {
        // A guest session never outlives its first hour: refreshing cannot extend it.
        return Err(ended());
    }
    let ttl = session_ttl(&state, user.role);
    let next = presented.next().ok_or_else(ended)??;
    state
        .store
        .rotate_session(
            presented.session_id,
            presented.generation,
            presented.secret_hash(),
            next.secret_hash(),
            millis(ttl),
        )
        .await?
        .map_err(ApiError::Refresh)?;
    Ok(Json(tokens(
        &state,
        owner,
        user.username,
        user.role,
        &next,
        ttl,
    )?))
}

/// Log out: end the session of the access token used.
#[utoipa::path(
    post,
    path = "/api/v1/auth/logout",
    operation_id = "logout",
    tag = "auth",
    security(("bearer" = [])),
    responses(
        (status = 204, description = "The session has ended; its tokens no longer work."),
        (status = 400, description = "`validation_failed`: called with HTTP Basic, which has no session (`field` is `authorization`).",
            body = Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn logout(
    caller: Caller,
    State(state): State<Arc<AppState>>,
) -> Result<StatusCode, ApiError> {
    let session = caller.session_id.ok_or_else(|| {
        ApiError::validation(
            "authorization",
            "log out with the access token of the session to end",
        )
    })?;
    state.store.revoke_session(session, caller.user_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Log out everywhere: end every session of the caller.
#[utoipa::path(
    post,
    path = "/api/v1/auth/logout-all",
    operation_id = "logout_all",
    tag = "auth",
    security(("basic" = []), ("bearer" = [])),
    responses((status = 204, description = "Every session of the caller has ended.")),
)]
pub async fn logout_all(
    caller: Caller,
    State(state): State<Arc<AppState>>,
) -> Result<StatusCode, ApiError> {
    state.store.revoke_all_sessions(caller.user_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Start a guest session: no registration, limited in time and to one lease.
///
/// Rate-limited per client address. Guest sessions cannot be refreshed.
#[utoipa::path(
    post,
    path = "/api/v1/auth/guest",
    operation_id = "start_guest_session",
    tag = "auth",
    responses(
        (status = 201, description = "A new guest account and its session's tokens.", body = TokensJson),
        (status = 409, description = "`username_taken`: the random guest name collided; try again.",
            body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`rate_limited`: too many guest sessions or requests from this address.",
            body = Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn guest(
    State(state): State<Arc<AppState>>,
    ClientIp(client): ClientIp,
) -> Result<(StatusCode, Json<TokensJson>), ApiError> {
    state.limits.check_anonymous(client)?;
    if let Err(not_until) = state
        .guest_limiter
        .check_key(&crate::auth::password_guard::limit_key(client))
    {
        return Err(ApiError::RateLimited {
            retry_after: not_until.wait_time_from(DefaultClock::default().now()),
            limit: None,
        });
    }
    let mut suffix = [0u8; 6];
    getrandom::fill(&mut suffix).map_err(|_| ApiError::Internal("no randomness".into()))?;
    let username = format!("guest-{}", hex::encode(suffix));
    // Guests never log in with a password: give them one nobody knows.
    let password = crate::auth::password::generate()?;
    let user_id = state
        .store
        .create_guest(&username, &password, state.config.guest_session)
        .await?
        .map_err(|_| ApiError::UsernameTaken)?;
    let tokens = start_session(
        &state,
        user_id,
        username,
        Role::Guest,
        state.config.guest_session,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(tokens)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Register {
    pub username: String,
    #[schema(format = Password, min_length = 8)]
    pub password: String,
    /// Required when `registration` is `open` and the server sends e-mail: the account
    /// works once the address is confirmed through the mailed link. Optional otherwise;
    /// a confirmed address lets its owner reset a forgotten password.
    #[schema(format = Email)]
    pub email: Option<String>,
    /// Required when `registration` is `invite`.
    pub invite: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Registered {
    pub user: UserRef,
    /// True when the account waits for an admin to enable it (`registration = "open"`
    /// on a server that sends no e-mail); log in once it is enabled.
    pub pending_approval: bool,
    /// True when a confirmation link was mailed to `email`. For open registration the
    /// account works once the link is followed.
    pub verification_sent: bool,
}

/// Create an account yourself, as the `registration` setting allows.
#[utoipa::path(
    post,
    path = "/api/v1/auth/register",
    operation_id = "register",
    tag = "auth",
    request_body = Register,
    responses(
        (status = 201, description = "The account exists; log in (after approval when `pending_approval`).", body = Registered),
        (status = 400, description = "`validation_failed`: `field` names the invalid `username`, `password` or `invite`.",
            body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`registration_closed`: the server takes no registrations. `invite_invalid`: the invite code is unknown, used or expired.",
            body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`username_taken`: an account of that name exists.",
            body = Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn register(
    State(state): State<Arc<AppState>>,
    ClientIp(client): ClientIp,
    ApiJson(body): ApiJson<Register>,
) -> Result<(StatusCode, Json<Registered>), ApiError> {
    use crate::config::Registration;
    use crate::store::RegistrationRefusal;

    state.limits.check_anonymous(client)?;
    let mails = state.mailer.is_some();
    let email = body
        .email
        .as_deref()
        .map(EmailAddress::parse)
        .transpose()
        .map_err(|error| ApiError::validation("email", error.to_string()))?;
    let invite = match state.config.registration {
        Registration::Closed => return Err(ApiError::RegistrationClosed),
        Registration::Invite => {
            let code = body
                .invite
                .as_deref()
                .filter(|code| !code.trim().is_empty())
                .ok_or_else(|| ApiError::validation("invite", "an invite code is required"))?;
            Some(crate::auth::one_time::hash(code))
        }
        Registration::Open if mails && email.is_none() => {
            return Err(ApiError::validation(
                "email",
                "an e-mail address is required: the account works once it is confirmed",
            ));
        }
        Registration::Open => None,
    };
    let username = super::users::checked_username(&body.username)?;
    super::users::check_password_rules(&body.password)?;
    let verify = email.clone().filter(|_| mails);
    // Open registration locks the account until a person vouches for it: its owner by
    // following the mailed link, or else an admin.
    let locked = state.config.registration == Registration::Open;
    let (id, role) = state
        .store
        .register(
            &username,
            &body.password,
            invite,
            locked,
            email,
            verify.is_some(),
        )
        .await?
        .map_err(|refusal| match refusal {
            RegistrationRefusal::UsernameTaken => ApiError::UsernameTaken,
            RegistrationRefusal::BadInvite => ApiError::InviteInvalid,
        })?;
    if let Some(email) = &verify {
        let purpose = crate::store::EmailTokenPurpose::VerifyEmail;
        let sent = if super::email_links::may_mail(&state, email) {
            super::email_links::mail_link(&state, id, &username, email, purpose).await
        } else {
            Err(super::email_links::MAIL_LIMITED)
        };
        if let Err(error) = sent {
            if locked {
                // Nobody could ever unlock it: take it back, so the name is free for a
                // second try once mail works again.
                state.store.delete_user(id, state.config.quarantine).await?;
                return Err(error);
            }
            // An invited account works without the confirmation; only resets need it.
            return Ok(registered(id, username, role, false, false));
        }
    }
    Ok(registered(
        id,
        username,
        role,
        locked && !mails,
        verify.is_some(),
    ))
}

fn registered(
    id: u64,
    username: String,
    role: Role,
    pending_approval: bool,
    verification_sent: bool,
) -> (StatusCode, Json<Registered>) {
    (
        StatusCode::CREATED,
        Json(Registered {
            user: UserRef {
                id,
                username,
                role: role.into(),
            },
            pending_approval,
            verification_sent,
        }),
    )
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    #[schema(format = Password)]
    pub current_password: String,
    #[schema(format = Password, min_length = 8)]
    pub new_password: String,
}

/// Change your password.
///
/// Every other session of the account ends (the one making the change stays logged
/// in); a confirmed e-mail address is told of the change.
#[utoipa::path(
    post,
    path = "/api/v1/auth/password",
    operation_id = "change_password",
    tag = "auth",
    security(("basic" = []), ("bearer" = [])),
    request_body = PasswordChange,
    responses(
        (status = 204, description = "Changed; other sessions have ended."),
        (status = 400, description = "`validation_failed`: the new password is too short.",
            body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`bad_credentials`: `current_password` is wrong.",
            body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`forbidden`: guests have no password.",
            body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`rate_limited`: too many wrong passwords from this address.",
            body = Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn change_password(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    ClientIp(client): ClientIp,
    ApiJson(body): ApiJson<PasswordChange>,
) -> Result<StatusCode, ApiError> {
    authorize(&caller, Action::ManageOwnAccount).map_err(|d| ApiError::denied(d, "account"))?;
    let user = state
        .store
        .user(caller.user_id)?
        .ok_or(ApiError::Unauthenticated)?;
    // Through the guard: wrong guesses here count like failed logins.
    state
        .passwords
        .verify(client, &user.username, &body.current_password)
        .await?;
    super::users::check_password_rules(&body.new_password)?;
    // Only over the password just checked: if a reset or another change landed since,
    // `current_password` is no longer current.
    let user = state
        .store
        .set_password(
            caller.user_id,
            &body.new_password,
            caller.session_id,
            Some(user.password_hash),
        )
        .await?
        .ok_or(ApiError::BadCredentials)?;
    if let Some((email, true)) = state.store.user_email(caller.user_id, &user)? {
        super::email_links::mail_in_background(
            &state,
            email,
            crate::mail::letters::password_changed(&user.username),
        );
    }
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmailChange {
    #[schema(format = Email)]
    pub email: String,
    #[schema(format = Password)]
    pub current_password: String,
}

/// Change your e-mail address.
///
/// The new address is unconfirmed until you follow the link mailed to it; until then
/// password resets are not available. The previous address, if it was confirmed, is
/// told of the change. Every outstanding link of the account stops working. Asking
/// again for the same unconfirmed address mails a fresh link.
#[utoipa::path(
    put,
    path = "/api/v1/auth/email",
    operation_id = "change_email",
    tag = "auth",
    security(("basic" = []), ("bearer" = [])),
    request_body = EmailChange,
    responses(
        (status = 202, description = "Changed; a confirmation link is on its way to the new address."),
        (status = 204, description = "That is already the account's confirmed address: nothing changed."),
        (status = 400, description = "`validation_failed`: `email` is not an e-mail address.",
            body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`bad_credentials`: `current_password` is wrong.",
            body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`forbidden`: guests have no address. \
            `email_disabled`: the server sends no mail, so a new address could never be confirmed.",
            body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`rate_limited`: too many wrong passwords from this address, \
            or the new address has had its share of mail for now (nothing changed; see `Retry-After`).",
            body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`mail_unavailable`: the address changed, but the mail relay did not take the link; ask again.",
            body = Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn change_email(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    ClientIp(client): ClientIp,
    ApiJson(body): ApiJson<EmailChange>,
) -> Result<StatusCode, ApiError> {
    authorize(&caller, Action::ManageOwnAccount).map_err(|d| ApiError::denied(d, "account"))?;
    if state.mailer.is_none() {
        return Err(ApiError::EmailDisabled);
    }
    let email = EmailAddress::parse(&body.email)
        .map_err(|error| ApiError::validation("email", error.to_string()))?;
    let user = state
        .store
        .user(caller.user_id)?
        .ok_or(ApiError::Unauthenticated)?;
    state
        .passwords
        .verify(client, &user.username, &body.current_password)
        .await?;
    if let Some((current, true)) = state.store.user_email(caller.user_id, &user)?
        && current.lookup_key() == email.lookup_key()
    {
        return Ok(StatusCode::NO_CONTENT);
    }
    // Before anything changes: a change kills the links already mailed, so one whose
    // new link could not be sent would leave the owner with none that works.
    if !super::email_links::may_mail(&state, &email) {
        return Err(super::email_links::MAIL_LIMITED);
    }
    let (user, previous) = state
        .store
        .change_email(caller.user_id, email.clone(), user.password_hash)
        .await?
        .ok_or(ApiError::BadCredentials)?;
    if let Some(previous) = previous {
        super::email_links::mail_in_background(
            &state,
            previous,
            crate::mail::letters::email_changed(&user.username),
        );
    }
    super::email_links::mail_link(
        &state,
        caller.user_id,
        &user.username,
        &email,
        EmailTokenPurpose::VerifyEmail,
    )
    .await?;
    Ok(StatusCode::ACCEPTED)
}
