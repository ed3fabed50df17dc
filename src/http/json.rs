//! A JSON body extractor whose rejections are problem+json like every other error.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use serde::de::DeserializeOwned;

use super::{ApiError, AppState};

/// `axum::Json`, but a body that is not JSON, or does not fit `T`, is answered with a
/// `validation_failed` problem that names what is wrong.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned> FromRequest<Arc<AppState>> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &Arc<AppState>) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(request, state).await {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(JsonRejection::JsonDataError(error)) => {
                Err(ApiError::validation("body", error.body_text()))
            }
            Err(JsonRejection::MissingJsonContentType(_)) => Err(ApiError::validation(
                "content-type",
                "send application/json",
            )),
            Err(JsonRejection::BytesRejection(error))
                if error.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE =>
            {
                Err(ApiError::PayloadTooLarge {
                    limit: state.config.api_body_limit,
                })
            }
            Err(error) => Err(ApiError::validation("body", error.body_text())),
        }
    }
}

/// `axum::extract::Path`, but a segment that does not parse (say `/numbers/abc`) is a
/// `validation_failed` problem naming the path, like every other bad input.
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> axum::extract::FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(value)| Self(value))
            .map_err(|rejection| ApiError::validation("path", rejection.body_text()))
    }
}
