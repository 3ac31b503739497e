//! Notification channels: operators and admins read them (whoever writes jobs needs their
//! names; a view carries header names and whether a secret is set, never a secret or a header
//! value), admins write them (see [`crate::http::auth::ACCESS`]). Every write is an event of
//! the `channel` stream in the audit log.
//!
//! Channel writes take no `Idempotency-Key`: a repeated create answers 409, a repeated update
//! changes nothing more, and a repeated delete answers 404.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use cronfleet_common::FieldError;
use serde::Serialize;
use serde_json::{json, Value};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::channel_name;
use crate::http::error::{ErrorBody, HttpError};
use crate::http::{views, ApiBody, AppState, RequestContext};
use crate::notify::channel::ChannelInput;
use crate::notify::channel_store::ChannelView;
use crate::store::RequestMeta;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_channels, create_channel))
        .routes(routes!(get_channel, update_channel, delete_channel))
}

/// A channel as written: a signed webhook or a list of e-mail recipients. Unknown fields, and
/// the other kind's fields, are refused.
#[derive(Debug, ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct ChannelBody {
    /// 1-64 of `[A-Za-z0-9._-]`; on update, absent or the name in the path.
    pub name: Option<String>,
    /// `webhook` or `email`.
    pub kind: String,
    /// Webhook: an `http://` or `https://` URL without credentials. Link-local and cloud
    /// metadata addresses are refused unless the master allows them
    /// (`--webhook-allow-link-local`).
    pub url: Option<String>,
    /// Webhook: the HMAC-SHA256 key the deliveries are signed with, 16-256 bytes. Required on
    /// create; on update, absent keeps the current one. Never shown again.
    pub secret: Option<String>,
    /// Webhook: extra headers sent with every delivery, name to value (at most 16). On
    /// update, they replace the current ones. Values are never shown again.
    pub headers: Option<BTreeMap<String, String>>,
    /// E-mail: 1-20 addresses.
    pub recipients: Option<Vec<String>>,
}

/// A channel as shown: `name`, `kind`, the webhook's `url` and header names (`headers`) or
/// the e-mail `recipients`, `secretSet`, `version`, and who created and last changed it when.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChannelList {
    #[schema(value_type = Vec<Object>)]
    pub items: Vec<ChannelView>,
}

/// The store's view of a channel write: who, and the request id. Without the
/// `Idempotency-Key`, which channel writes do not honour.
fn meta(context: &RequestContext) -> RequestMeta {
    RequestMeta {
        idempotency: None,
        ..context.meta(b"")
    }
}

fn json_body(body: &[u8]) -> Result<Value, HttpError> {
    serde_json::from_slice(body)
        .map_err(|e| HttpError::invalid(FieldError::new("body", format!("is not valid JSON: {e}"))))
}

#[utoipa::path(get, path = "/channels", tag = "channels",
    responses((status = 200, body = ChannelList), (status = 403, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn list_channels(State(state): State<AppState>) -> Result<Json<ChannelList>, HttpError> {
    Ok(Json(ChannelList {
        items: state.store.channels().await?,
    }))
}

#[utoipa::path(get, path = "/channels/{name}", tag = "channels", params(("name" = String, Path)),
    responses((status = 200, body = Object), (status = 404, body = ErrorBody)))]
async fn get_channel(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<ChannelView>, HttpError> {
    let name = channel_name(&name)?;
    Ok(Json(state.store.channel_view(&name).await?))
}

#[utoipa::path(post, path = "/channels", tag = "channels", request_body = ChannelBody,
    responses((status = 201, body = Object, headers(("Location" = String))), (status = 409, body = ErrorBody),
              (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn create_channel(
    State(state): State<AppState>,
    context: RequestContext,
    ApiBody(body): ApiBody,
) -> Result<Response, HttpError> {
    let input = ChannelInput::from_json(json_body(&body)?, state.webhook_allow_link_local)
        .map_err(HttpError::invalid)?;
    let view = state.store.create_channel(input, &meta(&context)).await?;
    let location = format!("/api/v1/channels/{}", views::path_segment(&view.name));
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(view),
    )
        .into_response())
}

/// Replaces a channel's settings; a webhook's secret left out is kept.
#[utoipa::path(put, path = "/channels/{name}", tag = "channels", request_body = ChannelBody,
    params(("name" = String, Path)),
    responses((status = 200, body = Object), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn update_channel(
    State(state): State<AppState>,
    Path(name): Path<String>,
    context: RequestContext,
    ApiBody(body): ApiBody,
) -> Result<Json<ChannelView>, HttpError> {
    let name = channel_name(&name)?;
    let mut value = json_body(&body)?;
    if let Value::Object(object) = &mut value {
        match object.get("name") {
            None | Some(Value::Null) => {
                object.insert("name".into(), json!(name.as_str()));
            }
            Some(given) if given.as_str() == Some(name.as_str()) => {}
            Some(given) => {
                return Err(HttpError::invalid(FieldError::new(
                    "name",
                    format!(
                    "{given} is not {name}, the channel in the path; a channel cannot be renamed"
                ),
                )))
            }
        }
    }
    let input = ChannelInput::from_json(value, state.webhook_allow_link_local)
        .map_err(HttpError::invalid)?;
    Ok(Json(
        state.store.update_channel(input, &meta(&context)).await?,
    ))
}

/// Deletes a channel no job's notify rules name (409 `channel_in_use` otherwise). Its
/// delivery log stays.
#[utoipa::path(delete, path = "/channels/{name}", tag = "channels", params(("name" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn delete_channel(
    State(state): State<AppState>,
    Path(name): Path<String>,
    context: RequestContext,
) -> Result<StatusCode, HttpError> {
    let name = channel_name(&name)?;
    state.store.delete_channel(&name, &meta(&context)).await?;
    Ok(StatusCode::NO_CONTENT)
}
