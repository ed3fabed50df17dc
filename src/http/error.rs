//! The one error shape of the API: `application/problem+json` (RFC 9457) with a
//! stable machine-readable `code`. Every failure a client can see is a variant here.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::auth::permissions::Denied;
use crate::providers::WebhookError;
use crate::store::{LeaseRefusal, RefreshRefusal, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0} was not found")]
    NotFound(&'static str),
    #[error("this method is not allowed here")]
    MethodNotAllowed,
    #[error("authentication is required")]
    Unauthenticated,
    #[error("the credentials are not valid")]
    BadCredentials,
    #[error("your role does not allow this")]
    Forbidden,
    #[error("`{field}`: {message}")]
    Validation {
        /// Usually a literal; a body field found at run time (a nested path) otherwise.
        field: std::borrow::Cow<'static, str>,
        message: String,
    },
    #[error("the request body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("the request body could not be read")]
    BodyUnreadable,
    #[error("no provider is configured under this name")]
    UnknownProvider,
    #[error("a provider of this name exists already")]
    ProviderExists,
    #[error("provider {0} is defined in the configuration file: change it there and restart")]
    ProviderReadOnly(String),
    #[error("{0}")]
    ProviderInUse(String),
    #[error("{0}")]
    Lease(#[from] LeaseRefusal),
    #[error("{0}")]
    Refresh(RefreshRefusal),
    #[error("the username is taken")]
    UsernameTaken,
    #[error("that number is already in the pool")]
    NumberExists,
    #[error("{0}")]
    Conflict(&'static str),
    #[error("this server does not take registrations")]
    RegistrationClosed,
    #[error("the invite code is unknown, already used or expired")]
    InviteInvalid,
    #[error("this server sends no e-mail; ask an admin")]
    EmailDisabled,
    #[error("the link is unknown, already used or expired")]
    LinkInvalid,
    #[error("another account uses that e-mail address")]
    EmailTaken,
    #[error("the account's e-mail address is not confirmed yet; follow the link mailed to it")]
    EmailUnverified,
    #[error("the mail relay did not take the message; retry later")]
    MailUnavailable,
    #[error(transparent)]
    Webhook(#[from] WebhookError),
    #[error("too many attempts; retry in {} s", retry_after.as_secs().max(1))]
    RateLimited {
        retry_after: std::time::Duration,
        /// The limit that was hit, per minute, when it is a request-rate limit.
        limit: Option<u32>,
    },
    #[error("{max} real-time connections per {per} are open already; close one first")]
    TooManyConnections { max: usize, per: &'static str },
    #[error("the request took too long")]
    Timeout,
    #[error("the store is not available; retry later")]
    Unavailable,
    #[error(
        "no provider can send from this number: its provider has no API credentials and no fallback that has"
    )]
    SendingUnavailable,
    #[error(
        "the webhook URL's host {}; this server does not call internal addresses",
        .0.host_problem()
    )]
    WebhookUrlRefused(crate::hooks::ssrf::Refused),
    #[error("you have {max} webhooks, as many as allowed; delete one first")]
    WebhookLimitReached { max: usize },
    #[error("internal error")]
    Internal(String),
}

/// Every code [`ApiError::code`] can answer, with its HTTP status and what it means. The
/// OpenAPI `Problem` schema and the docs page list these, and a test checks that they and
/// `code`/`status` agree, so the published list cannot drift from the code.
pub const ERROR_CODES: &[(&str, u16, &str)] = &[
    (
        "validation_failed",
        400,
        "a parameter or body field is invalid; `field` names it",
    ),
    ("body_unreadable", 400, "the request body could not be read"),
    (
        "webhook_malformed",
        400,
        "the webhook request is not in the provider's format",
    ),
    (
        "webhook_invalid_message",
        400,
        "the webhook carries an invalid message",
    ),
    ("unauthenticated", 401, "no credentials were sent"),
    (
        "bad_credentials",
        401,
        "the password or access token is not valid",
    ),
    (
        "refresh_token_invalid",
        401,
        "the refresh token is not one this server issued",
    ),
    (
        "refresh_token_ended",
        401,
        "the refresh token's session expired or was revoked",
    ),
    (
        "refresh_token_reused",
        401,
        "the refresh token was already spent; its session is now revoked",
    ),
    (
        "webhook_unsigned",
        401,
        "the webhook carries no provider signature",
    ),
    (
        "webhook_signature_invalid",
        401,
        "the webhook signature does not match",
    ),
    (
        "webhook_stale",
        401,
        "the webhook signature timestamp is outside the accepted window",
    ),
    (
        "webhook_replayed",
        401,
        "the webhook's nonce or token id was already used (a replayed request)",
    ),
    ("forbidden", 403, "the caller's role does not allow this"),
    (
        "not_found",
        404,
        "no such resource, or one the caller may not see",
    ),
    (
        "provider_not_found",
        404,
        "no provider is configured under this name",
    ),
    (
        "provider_exists",
        409,
        "a provider of this name exists already (or the name is reserved)",
    ),
    (
        "provider_read_only",
        409,
        "the provider is defined in the configuration file; the API cannot change it",
    ),
    (
        "provider_in_use",
        409,
        "other providers list this one as their fallback; change them first",
    ),
    (
        "method_not_allowed",
        405,
        "the route exists but not with this method",
    ),
    (
        "no_number_available",
        409,
        "no number matching the request is free",
    ),
    (
        "number_unavailable",
        409,
        "the requested number is leased, public, disabled or in quarantine",
    ),
    (
        "lease_limit_reached",
        409,
        "the caller holds as many active leases as their role allows",
    ),
    ("lease_ended", 409, "the lease has already ended"),
    ("username_taken", 409, "the username is taken"),
    ("number_exists", 409, "the number is already in the pool"),
    (
        "registration_closed",
        403,
        "this server does not take registrations (setting `registration`)",
    ),
    (
        "invite_invalid",
        403,
        "the invite code is unknown, already used or expired",
    ),
    (
        "email_disabled",
        403,
        "this server sends no e-mail (no `smtp_host`), so an admin has to help",
    ),
    (
        "email_unverified",
        403,
        "the account waits for its e-mail address to be confirmed through the mailed link",
    ),
    (
        "link_invalid",
        400,
        "the e-mailed link is unknown, already used or expired",
    ),
    (
        "email_taken",
        409,
        "another account uses that e-mail address",
    ),
    (
        "conflict",
        409,
        "the change would leave the instance unmanageable (e.g. an admin removing themselves)",
    ),
    (
        "payload_too_large",
        413,
        "the request body is larger than the configured limit",
    ),
    (
        "rate_limited",
        429,
        "too many requests; retry after `Retry-After` seconds",
    ),
    (
        "too_many_connections",
        429,
        "the account or client address has as many real-time connections open as allowed",
    ),
    (
        "internal",
        500,
        "an unexpected error; the server log has details",
    ),
    (
        "timeout",
        503,
        "the request took longer than the server allows",
    ),
    (
        "unavailable",
        503,
        "the store is not available; retry later",
    ),
    (
        "webhook_unsigned_retry",
        503,
        "the webhook carries no signature, from a provider that retries unsigned callbacks on 5xx",
    ),
    (
        "mail_unavailable",
        503,
        "the mail relay did not take the message; retry later",
    ),
    (
        "sending_unavailable",
        409,
        "no provider can send from this number (no API credentials configured, and no fallback)",
    ),
    (
        "webhook_url_refused",
        400,
        "the webhook URL's host is or resolves to a loopback, private, link-local or other internal address, or one of this server's own (SSRF guard, setting `webhooks_allow_private`)",
    ),
    (
        "webhook_limit_reached",
        409,
        "the caller has as many webhooks as allowed (setting `webhooks_max_per_user`)",
    ),
];

impl ApiError {
    /// The stable code clients match on. Never change a published code; add new ones to
    /// [`ERROR_CODES`] too.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotFound(_) => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::Unauthenticated => "unauthenticated",
            Self::BadCredentials => "bad_credentials",
            Self::Forbidden => "forbidden",
            Self::Validation { .. } => "validation_failed",
            Self::PayloadTooLarge { .. } => "payload_too_large",
            Self::BodyUnreadable => "body_unreadable",
            Self::UnknownProvider => "provider_not_found",
            Self::ProviderExists => "provider_exists",
            Self::ProviderReadOnly(_) => "provider_read_only",
            Self::ProviderInUse(_) => "provider_in_use",
            Self::Lease(LeaseRefusal::NoneAvailable) => "no_number_available",
            Self::Lease(LeaseRefusal::NumberUnavailable) => "number_unavailable",
            Self::Lease(LeaseRefusal::NumberNotFound | LeaseRefusal::LeaseNotFound) => "not_found",
            Self::Lease(LeaseRefusal::TooManyLeases) => "lease_limit_reached",
            Self::Lease(LeaseRefusal::LeaseEnded) => "lease_ended",
            Self::Lease(LeaseRefusal::HolderGone) => "unauthenticated",
            Self::Refresh(RefreshRefusal::Invalid) => "refresh_token_invalid",
            Self::Refresh(RefreshRefusal::Ended) => "refresh_token_ended",
            Self::Refresh(RefreshRefusal::Reused) => "refresh_token_reused",
            Self::UsernameTaken => "username_taken",
            Self::NumberExists => "number_exists",
            Self::Conflict(_) => "conflict",
            Self::RegistrationClosed => "registration_closed",
            Self::InviteInvalid => "invite_invalid",
            Self::EmailDisabled => "email_disabled",
            Self::LinkInvalid => "link_invalid",
            Self::EmailTaken => "email_taken",
            Self::EmailUnverified => "email_unverified",
            Self::MailUnavailable => "mail_unavailable",
            Self::Webhook(WebhookError::Unsigned(_)) => "webhook_unsigned",
            Self::Webhook(WebhookError::UnsignedRetry(_)) => "webhook_unsigned_retry",
            Self::Webhook(WebhookError::BadSignature) => "webhook_signature_invalid",
            Self::Webhook(WebhookError::Stale) => "webhook_stale",
            Self::Webhook(WebhookError::Replayed) => "webhook_replayed",
            Self::Webhook(WebhookError::Malformed(_)) => "webhook_malformed",
            Self::Webhook(WebhookError::InvalidMessage(_)) => "webhook_invalid_message",
            Self::RateLimited { .. } => "rate_limited",
            Self::TooManyConnections { .. } => "too_many_connections",
            Self::Timeout => "timeout",
            Self::Unavailable => "unavailable",
            Self::SendingUnavailable => "sending_unavailable",
            Self::WebhookUrlRefused(_) => "webhook_url_refused",
            Self::WebhookLimitReached { .. } => "webhook_limit_reached",
            Self::Internal(_) => "internal",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::NotFound(_)
            | Self::UnknownProvider
            | Self::Lease(LeaseRefusal::NumberNotFound | LeaseRefusal::LeaseNotFound) => {
                StatusCode::NOT_FOUND
            }
            Self::Lease(LeaseRefusal::HolderGone) => StatusCode::UNAUTHORIZED,
            Self::Lease(_)
            | Self::UsernameTaken
            | Self::NumberExists
            | Self::EmailTaken
            | Self::SendingUnavailable
            | Self::ProviderExists
            | Self::ProviderReadOnly(_)
            | Self::ProviderInUse(_)
            | Self::WebhookLimitReached { .. }
            | Self::Conflict(_) => StatusCode::CONFLICT,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Unauthenticated | Self::BadCredentials | Self::Refresh(_) => {
                StatusCode::UNAUTHORIZED
            }
            Self::Webhook(
                WebhookError::Unsigned(_)
                | WebhookError::BadSignature
                | WebhookError::Stale
                | WebhookError::Replayed,
            ) => StatusCode::UNAUTHORIZED,
            Self::Forbidden
            | Self::RegistrationClosed
            | Self::InviteInvalid
            | Self::EmailDisabled
            | Self::EmailUnverified => StatusCode::FORBIDDEN,
            Self::Validation { .. }
            | Self::WebhookUrlRefused(_)
            | Self::LinkInvalid
            | Self::BodyUnreadable
            | Self::Webhook(WebhookError::Malformed(_) | WebhookError::InvalidMessage(_)) => {
                StatusCode::BAD_REQUEST
            }
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::RateLimited { .. } | Self::TooManyConnections { .. } => {
                StatusCode::TOO_MANY_REQUESTS
            }
            Self::Timeout
            | Self::Unavailable
            | Self::MailUnavailable
            | Self::Webhook(WebhookError::UnsignedRetry(_)) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A refused permission: hidden resources are "not found" (`what`), others 403.
    pub fn denied(denied: Denied, what: &'static str) -> Self {
        match denied {
            Denied::Forbidden => Self::Forbidden,
            Denied::Hidden => Self::NotFound(what),
        }
    }

    pub fn validation(
        field: impl Into<std::borrow::Cow<'static, str>>,
        message: impl Into<String>,
    ) -> Self {
        Self::Validation {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::WriterStopped | StoreError::BatchRolledBack | StoreError::Storage(_) => {
                tracing::error!(%error, "store failure answered with 503");
                Self::Unavailable
            }
            other => Self::Internal(other.to_string()),
        }
    }
}

#[derive(Serialize)]
struct ProblemBody<'a> {
    #[serde(rename = "type")]
    kind: String,
    title: &'a str,
    status: u16,
    detail: String,
    code: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
}

/// The media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// What an error response carries for the recent-errors log; never sent to the client.
#[derive(Debug, Clone)]
pub struct FailureNote {
    pub code: &'static str,
    pub detail: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let detail = match &self {
            // Internal details go to the log (with the request id from the trace span),
            // never to the client.
            Self::Internal(detail) => {
                tracing::error!(detail, "internal error");
                "an unexpected error occurred; the server log has details".to_owned()
            }
            other => other.to_string(),
        };
        let code = self.code();
        // A code missing from the published list is a bug the test suite should trip over.
        debug_assert!(
            ERROR_CODES.iter().any(|(known, _, _)| *known == code),
            "error code {code} is missing from ERROR_CODES"
        );
        let problem = ProblemBody {
            kind: format!("urn:burnbox:error:{code}"),
            title: status.canonical_reason().unwrap_or("Error"),
            status: status.as_u16(),
            detail,
            code,
            field: match &self {
                Self::Validation { field, .. } => Some(field.as_ref()),
                Self::WebhookUrlRefused(_) => Some("url"),
                _ => None,
            },
        };
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        let mut response = (status, body).into_response();
        // For the recent-errors log (see `record_failures`): the code, and for internal
        // errors the detail the client is not shown.
        response.extensions_mut().insert(FailureNote {
            code,
            detail: match &self {
                Self::Internal(detail) => detail.clone(),
                _ => problem.detail.clone(),
            },
        });
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if let Self::RateLimited { retry_after, limit } = &self {
            // Whole seconds, rounded up, so a client that waits exactly this long succeeds.
            let seconds =
                (retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0)).max(1);
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
            // The IETF RateLimit header fields (draft-ietf-httpapi-ratelimit-headers).
            if let Some(limit) = limit {
                headers.insert("ratelimit-limit", HeaderValue::from(*limit));
                headers.insert("ratelimit-remaining", HeaderValue::from(0u32));
                headers.insert("ratelimit-reset", HeaderValue::from(seconds));
                if let Ok(policy) = HeaderValue::from_str(&format!("{limit};w=60")) {
                    headers.insert("ratelimit-policy", policy);
                }
            }
        }
        if matches!(self, Self::Unauthenticated | Self::BadCredentials) {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"burnbox\", charset=\"UTF-8\""),
            );
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn errors_render_as_problem_json_with_their_code() {
        let response = ApiError::validation("limit", "must be 1 to 500").into_response();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(response.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
        let body = axum::body::to_bytes(response.into_body(), 4096)
            .await
            .unwrap();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["code"], "validation_failed");
        assert_eq!(json["field"], "limit");
        assert_eq!(json["status"], 400);
    }

    /// One error of every code (`code` is an exhaustive match, so a new variant needs a
    /// sample here to be covered).
    fn one_of_each() -> Vec<ApiError> {
        use crate::domain::InboundSmsError;
        let mut errors = vec![
            ApiError::NotFound("thing"),
            ApiError::MethodNotAllowed,
            ApiError::Unauthenticated,
            ApiError::BadCredentials,
            ApiError::Forbidden,
            ApiError::validation("limit", "bad"),
            ApiError::PayloadTooLarge { limit: 1 },
            ApiError::BodyUnreadable,
            ApiError::UnknownProvider,
            ApiError::ProviderExists,
            ApiError::ProviderReadOnly("p".into()),
            ApiError::ProviderInUse("x".into()),
            ApiError::UsernameTaken,
            ApiError::NumberExists,
            ApiError::Conflict("x"),
            ApiError::RegistrationClosed,
            ApiError::InviteInvalid,
            ApiError::EmailDisabled,
            ApiError::LinkInvalid,
            ApiError::EmailTaken,
            ApiError::EmailUnverified,
            ApiError::MailUnavailable,
            ApiError::RateLimited {
                retry_after: std::time::Duration::from_secs(1),
                limit: None,
            },
            ApiError::TooManyConnections {
                max: 1,
                per: "account",
            },
            ApiError::Timeout,
            ApiError::Unavailable,
            ApiError::Internal(String::new()),
            ApiError::Webhook(WebhookError::Unsigned("signature")),
            ApiError::Webhook(WebhookError::UnsignedRetry("authorization")),
            ApiError::Webhook(WebhookError::BadSignature),
            ApiError::Webhook(WebhookError::Stale),
            ApiError::Webhook(WebhookError::Replayed),
            ApiError::SendingUnavailable,
            ApiError::WebhookUrlRefused(crate::hooks::ssrf::Refused {
                kind: "loopback",
                ip: std::net::Ipv4Addr::LOCALHOST.into(),
                by_name: false,
            }),
            ApiError::WebhookLimitReached { max: 5 },
            ApiError::Webhook(WebhookError::Malformed(String::new())),
            ApiError::Webhook(WebhookError::InvalidMessage(InboundSmsError::MissingId)),
        ];
        errors.extend(
            [
                LeaseRefusal::NoneAvailable,
                LeaseRefusal::NumberUnavailable,
                LeaseRefusal::NumberNotFound,
                LeaseRefusal::TooManyLeases,
                LeaseRefusal::LeaseNotFound,
                LeaseRefusal::LeaseEnded,
                LeaseRefusal::HolderGone,
            ]
            .map(ApiError::Lease),
        );
        errors.extend(
            [
                RefreshRefusal::Invalid,
                RefreshRefusal::Ended,
                RefreshRefusal::Reused,
            ]
            .map(ApiError::Refresh),
        );
        errors
    }

    #[test]
    fn the_published_codes_are_exactly_the_codes_answered() {
        let mut answered = std::collections::BTreeSet::new();
        for error in one_of_each() {
            let code = error.code();
            let published = ERROR_CODES
                .iter()
                .find(|(known, _, _)| *known == code)
                .unwrap_or_else(|| panic!("{code} is not in ERROR_CODES"));
            assert_eq!(published.1, error.status().as_u16(), "status of {code}");
            answered.insert(code);
        }
        let published: std::collections::BTreeSet<_> =
            ERROR_CODES.iter().map(|(code, _, _)| *code).collect();
        assert_eq!(published.len(), ERROR_CODES.len(), "codes are unique");
        assert_eq!(published, answered, "every published code is answered");
    }

    #[tokio::test]
    async fn internal_errors_hide_their_detail() {
        let response = ApiError::Internal("disk path /secret".into()).into_response();
        let body = axum::body::to_bytes(response.into_body(), 4096)
            .await
            .unwrap();
        assert!(!String::from_utf8_lossy(&body).contains("/secret"));
    }
}
