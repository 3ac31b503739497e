//! What handlers take from a request: who asks ([`RequestContext`], and the store's view of
//! it), query parameters and the body, each refused as a JSON error naming the field.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode, Uri};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::error::HttpError;
use super::telemetry::RequestId;
use super::{auth, MAX_BODY_BYTES};
use crate::store::{Idempotency, RequestMeta};

/// Who is asking (from the authenticated principal), and what.
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub actor: String,
    pub request_id: String,
    pub idempotency_key: Option<String>,
    /// Whose idempotency keys these are: the user and the token (or session) they came with.
    pub caller: String,
    pub method: Method,
    pub uri: Uri,
}

impl<S: Send + Sync> FromRequestParts<S> for RequestContext {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, HttpError> {
        let principal = auth::principal(&parts.extensions).ok_or_else(|| {
            HttpError::new(StatusCode::UNAUTHORIZED, "unauthenticated", "sign in first")
        })?;
        let header = |name: &str| {
            parts
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
                .filter(|v| !v.is_empty())
        };
        let idempotency_key = header("idempotency-key").map(str::to_owned);
        if idempotency_key.as_ref().is_some_and(|k| k.len() > 255) {
            return Err(HttpError::field(
                StatusCode::BAD_REQUEST,
                "invalid_field",
                "Idempotency-Key",
                "Idempotency-Key: at most 255 characters",
            ));
        }
        let request_id = parts
            .extensions
            .get::<RequestId>()
            .map_or_else(|| uuid::Uuid::now_v7().to_string(), |id| id.0.clone());
        let caller = match &principal.token {
            Some((id, _)) => format!("{}/token:{id}", principal.user),
            None => format!("{}/session", principal.user),
        };
        Ok(Self {
            actor: principal.actor(),
            request_id,
            idempotency_key,
            caller,
            method: parts.method.clone(),
            uri: parts.uri.clone(),
        })
    }
}

/// `Query` whose rejection is a JSON error naming the parameter.
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, HttpError> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(value)) => Ok(Self(value)),
            Err(rejection) => {
                let text = rejection.body_text();
                let detail = text
                    .split_once("query string: ")
                    .map_or(text.as_str(), |(_, d)| d)
                    .to_owned();
                let field = detail
                    .split_once(':')
                    .map(|(f, _)| f.trim().to_owned())
                    .filter(|f| !f.contains(' '));
                Err(HttpError {
                    field,
                    ..HttpError::new(StatusCode::BAD_REQUEST, "invalid_field", detail)
                })
            }
        }
    }
}

/// The request body; one over [`MAX_BODY_BYTES`] is a JSON 413.
#[derive(Debug)]
pub struct ApiBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for ApiBody {
    type Rejection = HttpError;

    async fn from_request(request: Request, state: &S) -> Result<Self, HttpError> {
        Bytes::from_request(request, state)
            .await
            .map(Self)
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    HttpError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "too_large",
                        format!("the body is larger than {MAX_BODY_BYTES} bytes"),
                    )
                } else {
                    HttpError::new(StatusCode::BAD_REQUEST, "bad_body", rejection.body_text())
                }
            })
    }
}

impl RequestContext {
    /// The store's view of this request. An idempotency key belongs to its caller (user and
    /// token): another caller's identical key is another key. A retry must mean the same
    /// request — same method, path and JSON body by meaning (key order and whitespace aside).
    pub fn meta(&self, body: &[u8]) -> RequestMeta {
        let idempotency = self.idempotency_key.as_ref().map(|key| {
            let mut hash = Sha256::new();
            hash.update(self.method.as_str().as_bytes());
            hash.update(b" ");
            hash.update(self.uri.path().as_bytes());
            hash.update(b"\n");
            match serde_json::from_slice::<Value>(body) {
                Ok(value) => hash.update(canonical_json(&value).as_bytes()),
                Err(_) => hash.update(body),
            }
            Idempotency {
                key: format!("{}/{key}", self.caller),
                request_hash: format!("{:x}", hash.finalize()),
            }
        });
        RequestMeta {
            actor: self.actor.clone(),
            request_id: self.request_id.clone(),
            idempotency,
        }
    }
}

/// `value` as JSON text with every object's keys sorted and no whitespace.
fn canonical_json(value: &Value) -> String {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            let fields: Vec<String> = entries
                .into_iter()
                .map(|(key, value)| {
                    format!("{}:{}", Value::from(key.as_str()), canonical_json(value))
                })
                .collect();
            format!("{{{}}}", fields.join(","))
        }
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(canonical_json).collect();
            format!("[{}]", items.join(","))
        }
        other => other.to_string(),
    }
}
