//! The pages the mailed links open: confirm an e-mail address, choose a new password.
//!
//! Opening a link only shows a page; the person's click (a form POST) spends the token.
//! Mail scanners that fetch every link therefore cannot use it up. Plain HTML forms, no
//! script: they work in any browser, and the strict content policy stays strict.

use std::sync::{Arc, LazyLock};

use axum::extract::rejection::FormRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Form, Router};
use serde::Deserialize;

use super::caller::ClientIp;
use super::email_links::{RESET_PAGE, VERIFY_PAGE, spend_reset, spend_verification};
use super::{ApiError, AppState};
use crate::html::escape;

const STYLE: &str = "\
body{font-family:system-ui,sans-serif;max-width:28rem;margin:4rem auto;padding:0 1rem;color:#222}\
label{display:block;margin:1rem 0}input{display:block;width:100%;padding:.5rem;margin-top:.25rem}\
button{padding:.6rem 1.2rem;margin-top:1rem}small{color:#777}";

/// The page's own style only (by its hash); forms may post only back to this server.
static PAGE_POLICY: LazyLock<HeaderValue> = LazyLock::new(|| {
    let policy = format!(
        "default-src 'none'; style-src {}; form-action 'self'; frame-ancestors 'none'; \
         base-uri 'none'",
        crate::html::style_source(STYLE)
    );
    HeaderValue::from_str(&policy)
        .unwrap_or_else(|_| HeaderValue::from_static("default-src 'none'; form-action 'self'"))
});

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route(VERIFY_PAGE, get(verify_page).post(verify_submit))
        .route(RESET_PAGE, get(reset_page).post(reset_submit))
}

#[derive(Debug, Deserialize)]
pub struct TokenQuery {
    #[serde(default)]
    token: String,
}

#[derive(Debug, Deserialize)]
pub struct VerifyForm {
    token: String,
}

#[derive(Debug, Deserialize)]
pub struct ResetForm {
    token: String,
    password: String,
    password_again: String,
}

async fn verify_page(Query(query): Query<TokenQuery>) -> Response {
    page(
        "Confirm your e-mail address",
        &format!(
            "<p>Confirm the e-mail address of your burnbox account.</p>\
             <form method=\"post\"><input type=\"hidden\" name=\"token\" value=\"{}\">\
             <button type=\"submit\">Confirm my address</button></form>",
            // The token comes from the URL, so it is attacker-chosen: escaped like all text.
            escape(&query.token)
        ),
    )
}

async fn verify_submit(
    State(state): State<Arc<AppState>>,
    ClientIp(client): ClientIp,
    form: Result<Form<VerifyForm>, FormRejection>,
) -> Response {
    let outcome = async {
        state.limits.check_anonymous(client)?;
        let Form(form) = form.map_err(|_| ApiError::LinkInvalid)?;
        spend_verification(&state, &form.token).await
    }
    .await;
    match outcome {
        Ok((_, user)) => {
            // An account an admin disabled stays disabled: the link only confirms.
            let next = if user.disabled {
                "It is disabled; an admin can enable it."
            } else {
                "Log in with its password."
            };
            page(
                "Address confirmed",
                &format!(
                    "<p>Thank you. The address of the account <b>{}</b> is confirmed. {next}</p>",
                    escape(&user.username)
                ),
            )
        }
        Err(error) => failure(error),
    }
}

async fn reset_page(Query(query): Query<TokenQuery>) -> Response {
    page(
        "Choose a new password",
        &format!(
            "<form method=\"post\"><input type=\"hidden\" name=\"token\" value=\"{}\">\
             <label>New password <input type=\"password\" name=\"password\" minlength=\"{min}\" \
             autocomplete=\"new-password\" required></label>\
             <label>Once more <input type=\"password\" name=\"password_again\" minlength=\"{min}\" \
             autocomplete=\"new-password\" required></label>\
             <button type=\"submit\">Set the password</button></form>",
            escape(&query.token),
            min = crate::store::MIN_PASSWORD_CHARS,
        ),
    )
}

async fn reset_submit(
    State(state): State<Arc<AppState>>,
    ClientIp(client): ClientIp,
    form: Result<Form<ResetForm>, FormRejection>,
) -> Response {
    let outcome = async {
        state.limits.check_anonymous(client)?;
        let Form(form) = form.map_err(|_| ApiError::LinkInvalid)?;
        if form.password != form.password_again {
            return Err(ApiError::validation(
                "password_again",
                "the two passwords differ",
            ));
        }
        spend_reset(&state, &form.token, &form.password).await
    }
    .await;
    match outcome {
        Ok(()) => page(
            "Password changed",
            "<p>Your password is changed and every session of the account has ended. \
             Log in with the new password.</p>",
        ),
        Err(error) => failure(error),
    }
}

/// The error as a page, with the status, headers (`Retry-After` on a 429) and stable
/// code of the API's answer.
fn failure(error: ApiError) -> Response {
    let hint = match error {
        ApiError::LinkInvalid => "Ask for a new link: this one was already used or has expired.",
        ApiError::Validation { .. } => "Go back and try again.",
        _ => "Try again in a moment.",
    };
    let response = page(
        "That did not work",
        &format!(
            "<p>{}</p><p>{hint}</p><p><small>code: {}</small></p>",
            escape(&error.to_string()),
            error.code()
        ),
    );
    // The API's answer gives status, headers and the note for the error log; the page
    // gives the body and its own content type and policy.
    let (mut parts, _) = error.into_response().into_parts();
    let (page_parts, body) = response.into_parts();
    parts.headers.extend(page_parts.headers);
    Response::from_parts(parts, body)
}

fn page(title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"referrer\" content=\"no-referrer\">\
         <title>{title} · burnbox</title><style>{STYLE}</style></head>\
         <body><h1>{title}</h1>{body}</body></html>"
    );
    let mut response = Html(html).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_SECURITY_POLICY, PAGE_POLICY.clone());
    response
}
