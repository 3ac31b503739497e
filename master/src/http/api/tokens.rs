//! API tokens over REST (admins only; see [`crate::http::auth::ACCESS`]).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use cronfleet_common::job::{optional, required};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::json_object;
use crate::accounts::TokenView;
use crate::http::error::{ErrorBody, HttpError};
use crate::http::{ApiBody, AppState, RequestContext};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_tokens, create_token))
        .routes(routes!(revoke_token))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TokenList {
    #[schema(value_type = Vec<Object>)]
    pub items: Vec<TokenView>,
}

#[utoipa::path(get, path = "/tokens", tag = "access", responses((status = 200, body = TokenList), (status = 403, body = ErrorBody)))]
async fn list_tokens(State(state): State<AppState>) -> Result<Json<TokenList>, HttpError> {
    Ok(Json(TokenList {
        items: state.store.tokens().await?,
    }))
}

/// `{"user", "name", "expiresInDays"?}`; the answer's `token` is shown this once.
#[utoipa::path(post, path = "/tokens", tag = "access", request_body = Object,
    responses((status = 201, body = Object), (status = 422, body = ErrorBody)))]
async fn create_token(
    State(state): State<AppState>,
    context: RequestContext,
    ApiBody(body): ApiBody,
) -> Result<Response, HttpError> {
    let mut object = json_object(&body, &["user", "name", "expiresInDays"])?;
    let user: String = required(&mut object, "user").map_err(HttpError::invalid)?;
    let name: String = required(&mut object, "name").map_err(HttpError::invalid)?;
    let expires: Option<u32> =
        optional(&mut object, "expiresInDays").map_err(HttpError::invalid)?;
    let (token, view) = state
        .store
        .create_token(&user, &name, expires, &context.meta(b""))
        .await?;
    let mut answer = serde_json::to_value(view).unwrap_or(Value::Null);
    answer["token"] = Value::String(token.plaintext);
    Ok((StatusCode::CREATED, Json(answer)).into_response())
}

#[utoipa::path(delete, path = "/tokens/{id}", tag = "access", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
async fn revoke_token(
    State(state): State<AppState>,
    context: RequestContext,
    Path(id): Path<String>,
) -> Result<StatusCode, HttpError> {
    state.store.revoke_token(&id, &context.meta(b"")).await?;
    Ok(StatusCode::NO_CONTENT)
}
