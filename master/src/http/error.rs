//! The HTTP error: one type for every handler of the API and the pages, with two renderings.
//! The API's is `{"error": {code, message, field}}`; the pages' is the same message on a page
//! in the layout, with the same status and headers ([`HttpError::page`], and
//! [`as_page`] for a handler's error answer, applied by the pages' router). Dependency and
//! internal failures are logged once here and the client gets a generic message.

use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use cronfleet_common::FieldError;
use serde::Serialize;
use utoipa::ToSchema;

use super::layout::{self, Nav};
use crate::accounts::AccountError;
use crate::domain::DomainError;
use crate::health::Dependency;
use crate::notify::channel_store::ChannelError;
use crate::read::ReadError;
use crate::store::StoreError;

#[derive(Debug)]
pub struct HttpError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
    pub current_version: Option<u64>,
    /// The dependency found unreachable, for a 503: the response carries it as an extension,
    /// so the master answers the next requests that need it at once.
    pub dependency: Option<Dependency>,
}

/// The error body.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code, e.g. `invalid_field`, `version_conflict`.
    pub code: String,
    pub message: String,
    /// The request field at fault, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// The job's current version, on a version conflict.
    #[serde(skip_serializing_if = "Option::is_none", rename = "currentVersion")]
    pub current_version: Option<u64>,
}

impl HttpError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            field: None,
            current_version: None,
            dependency: None,
        }
    }

    pub fn field(
        status: StatusCode,
        code: &'static str,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            field: Some(field.into()),
            current_version: None,
            dependency: None,
        }
    }

    pub fn invalid(error: FieldError) -> Self {
        let message = error.to_string();
        Self::field(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            error.field,
            message,
        )
    }

    /// A query parameter that cannot be used: 400, naming it.
    pub fn query(error: FieldError) -> Self {
        let message = error.to_string();
        Self::field(
            StatusCode::BAD_REQUEST,
            "invalid_field",
            error.field,
            message,
        )
    }

    pub fn not_found(what: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", what)
    }

    /// A dependency is down: 503 with `Retry-After`.
    pub fn unavailable(what: &str, error: impl std::fmt::Display) -> Self {
        tracing::warn!(dependency = what, error = %error, "dependency unavailable");
        let dependency = [Dependency::Postgres, Dependency::Etcd]
            .into_iter()
            .find(|d| d.name() == what);
        Self {
            dependency,
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                format!("{what} is unavailable; retry shortly"),
            )
        }
    }

    pub fn internal(error: impl std::fmt::Display) -> Self {
        tracing::error!(error = %error, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error",
        )
    }

    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                code: self.code.to_owned(),
                message: self.message.clone(),
                field: self.field.clone(),
                current_version: self.current_version,
            },
        }
    }
}

/// The message an error answer carries, kept on the response for its HTML rendering.
#[derive(Debug, Clone)]
struct Shown(String);

impl HttpError {
    /// The HTML rendering: this error as a page in the layout.
    pub fn page(self, nav: &Nav) -> Response {
        as_page(self.into_response(), nav)
    }
}

/// An error answer rendered as a page in the layout, keeping its status and headers; any
/// other response as it is.
pub fn as_page(response: Response, nav: &Nav) -> Response {
    let Some(Shown(message)) = response.extensions().get::<Shown>().cloned() else {
        return response;
    };
    let (mut parts, _) = response.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    let html = layout::error_html(parts.status, &message, nav);
    Response::from_parts(parts, Body::from(html))
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let body = self.body();
        let shown = Shown(self.message);
        let mut response = (self.status, Json(body)).into_response();
        response.extensions_mut().insert(shown);
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if let Some(dependency) = self.dependency {
            response.extensions_mut().insert(dependency);
        }
        response
    }
}

impl From<DomainError> for HttpError {
    fn from(error: DomainError) -> Self {
        let message = error.to_string();
        match error {
            DomainError::NotFound(_) => Self::new(StatusCode::NOT_FOUND, "not_found", message),
            DomainError::AlreadyExists(_) => {
                Self::field(StatusCode::CONFLICT, "already_exists", "name", message)
            }
            DomainError::VersionConflict { current, .. } => Self {
                current_version: Some(current),
                ..Self::field(StatusCode::CONFLICT, "version_conflict", "version", message)
            },
            DomainError::AlreadyPaused(_) => {
                Self::new(StatusCode::CONFLICT, "already_paused", message)
            }
            DomainError::NotPaused(_) => Self::new(StatusCode::CONFLICT, "not_paused", message),
            DomainError::Link { field, .. } => Self::field(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_field",
                field,
                message,
            ),
            DomainError::ChainedFrom { .. } => {
                Self::new(StatusCode::CONFLICT, "chained_from", message)
            }
            DomainError::NameMismatch { .. } => Self::field(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_field",
                "name",
                message,
            ),
        }
    }
}

impl From<StoreError> for HttpError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Domain(domain) => domain.into(),
            StoreError::IdempotencyMismatch => Self::field(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                "Idempotency-Key",
                "this Idempotency-Key was already used with a different request",
            ),
            StoreError::Database(e) if is_unavailable(&e) => Self::unavailable("PostgreSQL", e),
            other => Self::internal(other),
        }
    }
}

fn is_unavailable(error: &sqlx::Error) -> bool {
    matches!(
        error,
        sqlx::Error::PoolTimedOut
            | sqlx::Error::Io(_)
            | sqlx::Error::PoolClosed
            | sqlx::Error::Tls(_)
    )
}

impl From<etcd_client::Error> for HttpError {
    fn from(error: etcd_client::Error) -> Self {
        Self::unavailable("etcd", error)
    }
}

impl From<mongodb::error::Error> for HttpError {
    fn from(error: mongodb::error::Error) -> Self {
        Self::unavailable("MongoDB", error)
    }
}

impl From<AccountError> for HttpError {
    fn from(error: AccountError) -> Self {
        let message = error.to_string();
        match error {
            AccountError::Invalid(field) => Self::invalid(field),
            AccountError::UserExists(_) => {
                Self::field(StatusCode::CONFLICT, "already_exists", "name", message)
            }
            AccountError::NoSuchUser(_) => Self::field(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_field",
                "user",
                message,
            ),
            AccountError::NoSuchToken(_) => Self::not_found(message),
            AccountError::LastAdmin(_) => Self::new(StatusCode::CONFLICT, "last_admin", message),
            AccountError::Store(store) => store.into(),
        }
    }
}

impl From<ChannelError> for HttpError {
    fn from(error: ChannelError) -> Self {
        let message = error.to_string();
        match error {
            ChannelError::Invalid(field) => Self::invalid(field),
            ChannelError::Exists(_) => {
                Self::field(StatusCode::CONFLICT, "already_exists", "name", message)
            }
            ChannelError::NotFound(_) => Self::not_found(message),
            ChannelError::InUse { .. } => {
                Self::new(StatusCode::CONFLICT, "channel_in_use", message)
            }
            ChannelError::Store(store) => store.into(),
        }
    }
}

impl From<ReadError> for HttpError {
    fn from(error: ReadError) -> Self {
        match error {
            ReadError::Mongo(e) => e.into(),
            ReadError::Etcd(e) => e.into(),
            ReadError::Store(e) => e.into(),
        }
    }
}

impl From<askama::Error> for HttpError {
    fn from(error: askama::Error) -> Self {
        Self::internal(format!("could not render the page: {error}"))
    }
}
