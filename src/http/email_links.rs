//! Links mailed to account owners: confirm an address, reset a forgotten password.
//!
//! A link carries a single-use token (192 random bits, stored hashed, expiring). It
//! points at a small page of this server (`link_pages.rs`) rather than straight at the
//! API, because mail scanners open links: following one must never spend it. The page
//! asks the person to confirm, and that POST spends it, through the same functions the
//! JSON endpoints here use.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use serde::Deserialize;
use utoipa::ToSchema;

use super::auth::UserRef;
use super::caller::ClientIp;
use super::json::ApiJson;
use super::openapi::Problem;
use super::{ApiError, AppState};
use crate::auth::one_time;
use crate::diagnostics::ErrorSource;
use crate::domain::EmailAddress;
use crate::mail::{Letter, letters};
use crate::store::records::UserV3;
use crate::store::{EmailTokenPurpose, EmailTokenRefusal};

/// Where the mailed links point (pages of this server, see `link_pages.rs`).
pub const VERIFY_PAGE: &str = "/auth/verify-email";
pub const RESET_PAGE: &str = "/auth/reset-password";

/// Mails per address: 3 at once, then one every 10 minutes, so nobody can use the
/// server to flood someone's inbox.
const MAIL_BURST: u32 = 3;
const MAIL_REFILL_EVERY: Duration = Duration::from_secs(600);

pub fn mail_limiter() -> DefaultKeyedRateLimiter<String> {
    let quota = Quota::with_period(MAIL_REFILL_EVERY)
        .unwrap_or_else(|| unreachable!("the period is not zero"))
        .allow_burst(NonZeroU32::new(MAIL_BURST).unwrap_or(NonZeroU32::MIN));
    RateLimiter::keyed(quota)
}

/// The answer when an address has had its share of mail for now.
pub const MAIL_LIMITED: ApiError = ApiError::RateLimited {
    retry_after: MAIL_REFILL_EVERY,
    limit: None,
};

/// Whether one more mail may go to `email` now.
pub fn may_mail(state: &AppState, email: &EmailAddress) -> bool {
    state.mail_limiter.check_key(&email.lookup_key()).is_ok()
}

fn link(state: &AppState, page: &str, token: &str) -> Result<String, ApiError> {
    // `public_url` is required with SMTP (config.rs): links never come from a Host header.
    let base = state
        .config
        .public_url
        .as_ref()
        .ok_or_else(|| ApiError::Internal("e-mail links need public_url".into()))?;
    Ok(format!(
        "{}{page}?token={token}",
        base.as_str().trim_end_matches('/')
    ))
}

/// Creates a token for `purpose` and mails its link. Fails with `mail_unavailable` when
/// the relay does not take the mail (recorded for the admin too). Mails nothing when
/// `email` stopped being the account's address meanwhile: the link would not work.
pub async fn mail_link(
    state: &AppState,
    user_id: u64,
    username: &str,
    email: &EmailAddress,
    purpose: EmailTokenPurpose,
) -> Result<(), ApiError> {
    let mailer = state.mailer.as_ref().ok_or(ApiError::EmailDisabled)?;
    let (token, token_hash) = one_time::generate()?;
    let (ttl, letter) = match purpose {
        EmailTokenPurpose::VerifyEmail => {
            let ttl = state.config.email_verification_ttl;
            let url = link(state, VERIFY_PAGE, &token)?;
            (ttl, letters::verify_email(username, &url, ttl))
        }
        EmailTokenPurpose::ResetPassword => {
            let ttl = state.config.password_reset_ttl;
            let url = link(state, RESET_PAGE, &token)?;
            (ttl, letters::password_reset(username, &url, ttl))
        }
    };
    let expires_at_ms =
        crate::store::now_ms().saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX));
    let bound = state
        .store
        .create_email_token(token_hash, user_id, email, purpose, expires_at_ms)
        .await?;
    if !bound {
        return Ok(());
    }
    mailer.send(email, letter).await.map_err(|error| {
        tracing::warn!(%error, "e-mail not sent");
        state
            .diagnostics
            .record(ErrorSource::Mail, "mail_unavailable", error.to_string());
        ApiError::MailUnavailable
    })
}

/// Sends `letter` without making the caller wait (or learn whether it went out);
/// failures reach the log and system-status.
pub fn mail_in_background(state: &Arc<AppState>, email: EmailAddress, letter: Letter) {
    let Some(mailer) = state.mailer.clone() else {
        return;
    };
    let state = Arc::clone(state);
    state.background.clone().spawn(async move {
        if let Err(error) = mailer.send(&email, letter).await {
            tracing::warn!(%error, "e-mail not sent");
            state
                .diagnostics
                .record(ErrorSource::Mail, "mail_unavailable", error.to_string());
        }
    });
}

/// Spends a verification token. Shared by the API and the link page.
pub async fn spend_verification(state: &AppState, token: &str) -> Result<(u64, UserV3), ApiError> {
    state
        .store
        .verify_email(one_time::hash(token))
        .await?
        .map_err(refusal)
}

/// Spends a reset token, setting `password`. Shared by the API and the link page.
pub async fn spend_reset(
    state: &Arc<AppState>,
    token: &str,
    password: &str,
) -> Result<(), ApiError> {
    super::users::check_password_rules(password)?;
    let hash = crate::store::hash_password(password).await?;
    let (id, user) = state
        .store
        .reset_password(one_time::hash(token), hash)
        .await?
        .map_err(refusal)?;
    tracing::info!(user_id = id, "password reset through an e-mailed link");
    if let Some((email, true)) = state.store.user_email(id, &user)? {
        mail_in_background(state, email, letters::password_changed(&user.username));
    }
    Ok(())
}

fn refusal(refusal: EmailTokenRefusal) -> ApiError {
    match refusal {
        EmailTokenRefusal::Invalid => ApiError::LinkInvalid,
        EmailTokenRefusal::EmailTaken => ApiError::EmailTaken,
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LinkToken {
    /// The `token` parameter of the mailed link.
    pub token: String,
}

/// Confirm an e-mail address with the token from the mailed link.
///
/// For an account from open registration this also unlocks it: log in afterwards.
#[utoipa::path(
    post,
    path = "/api/v1/auth/verify-email",
    operation_id = "verify_email",
    tag = "auth",
    request_body = LinkToken,
    responses(
        (status = 200, description = "The address is confirmed; the account can log in.", body = UserRef),
        (status = 400, description = "`link_invalid`: the token is unknown, used or expired.",
            body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`email_taken`: another account confirmed that address first.",
            body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`rate_limited`: too many requests from this address.",
            body = Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn verify_email(
    State(state): State<Arc<AppState>>,
    ClientIp(client): ClientIp,
    ApiJson(body): ApiJson<LinkToken>,
) -> Result<Json<UserRef>, ApiError> {
    state.limits.check_anonymous(client)?;
    let (id, user) = spend_verification(&state, &body.token).await?;
    Ok(Json(UserRef {
        id,
        username: user.username,
        role: user.role.into(),
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetRequest {
    /// The confirmed e-mail address of the account.
    #[schema(format = Email)]
    pub email: String,
}

/// Ask for a password-reset link by e-mail.
///
/// Always answers 202, whether or not an account has that confirmed address, so the
/// answer does not reveal who has an account. The link works once, for
/// `password_reset_ttl`.
#[utoipa::path(
    post,
    path = "/api/v1/auth/password-reset",
    operation_id = "request_password_reset",
    tag = "auth",
    request_body = ResetRequest,
    responses(
        (status = 202, description = "If an account has this confirmed address, a link is on its way."),
        (status = 400, description = "`validation_failed`: `email` is not an address.",
            body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`email_disabled`: this server sends no e-mail; an admin resets passwords.",
            body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`rate_limited`: too many requests from this address.",
            body = Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn request_password_reset(
    State(state): State<Arc<AppState>>,
    ClientIp(client): ClientIp,
    ApiJson(body): ApiJson<ResetRequest>,
) -> Result<StatusCode, ApiError> {
    state.limits.check_anonymous(client)?;
    if state.mailer.is_none() {
        return Err(ApiError::EmailDisabled);
    }
    let email = EmailAddress::parse(&body.email)
        .map_err(|error| ApiError::validation("email", error.to_string()))?;
    if let Some((id, user)) = state.store.user_by_email(&email)?
        && let Some((email, true)) = state.store.user_email(id, &user)?
        && may_mail(&state, &email)
    {
        // To the address as confirmed, not as typed in the request. In the background, so the answer takes as long with or without an account.
        let background = state.background.clone();
        let state = Arc::clone(&state);
        background.spawn(async move {
            let purpose = EmailTokenPurpose::ResetPassword;
            // Failures are already logged and recorded for the admin.
            let _ = mail_link(&state, id, &user.username, &email, purpose).await;
        });
    }
    Ok(StatusCode::ACCEPTED)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetConfirm {
    /// The `token` parameter of the mailed link.
    pub token: String,
    /// The new password.
    #[schema(format = Password, min_length = 8)]
    pub password: String,
}

/// Set a new password with the token from a password-reset link.
///
/// Every session of the account ends; log in with the new password.
#[utoipa::path(
    post,
    path = "/api/v1/auth/password-reset/confirm",
    operation_id = "confirm_password_reset",
    tag = "auth",
    request_body = ResetConfirm,
    responses(
        (status = 204, description = "The password is changed and every session ended."),
        (status = 400, description = "`link_invalid`: the token is unknown, used or expired; `validation_failed`: the password is too short.",
            body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`rate_limited`: too many requests from this address.",
            body = Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn confirm_password_reset(
    State(state): State<Arc<AppState>>,
    ClientIp(client): ClientIp,
    ApiJson(body): ApiJson<ResetConfirm>,
) -> Result<StatusCode, ApiError> {
    state.limits.check_anonymous(client)?;
    spend_reset(&state, &body.token, &body.password).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Re-sends the verification link of an account that waits for it (the owner just
/// proved their password at login), within the per-address mail limit.
pub async fn resend_verification(state: &Arc<AppState>, id: u64, user: &UserV3) {
    let Ok(Some((email, false))) = state.store.user_email(id, user) else {
        return;
    };
    if may_mail(state, &email) {
        let purpose = EmailTokenPurpose::VerifyEmail;
        let _ = mail_link(state, id, &user.username, &email, purpose).await;
    }
}
