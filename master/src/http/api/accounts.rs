//! Users and API tokens over REST (admins only; see [`crate::http::auth::ACCESS`]).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use cronfleet_common::job::{optional, reject_unknown_fields, required};
use cronfleet_common::FieldError;
use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::accounts::{TokenView, UserView};
use crate::http::error::{ErrorBody, HttpError};
use crate::http::{ApiBody, AppState, RequestContext};
use crate::identity::Role;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_users, create_user))
        .routes(routes!(list_tokens, create_token))
        .routes(routes!(revoke_token))
}

fn object(body: &[u8], known: &[&str]) -> Result<Map<String, Value>, HttpError> {
    match serde_json::from_slice(body) {
        Ok(Value::Object(object)) => {
            reject_unknown_fields(&object, known).map_err(HttpError::invalid)?;
            Ok(object)
        }
        Ok(_) => Err(HttpError::invalid(FieldError::new(
            "body",
            "must be a JSON object",
        ))),
        Err(e) => Err(HttpError::invalid(FieldError::new(
            "body",
            format!("is not valid JSON: {e}"),
        ))),
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UserList {
    #[schema(value_type = Vec<Object>)]
    pub items: Vec<UserView>,
}

#[utoipa::path(get, path = "/users", tag = "access", responses((status = 200, body = UserList), (status = 403, body = ErrorBody)))]
async fn list_users(State(state): State<AppState>) -> Result<Json<UserList>, HttpError> {
    Ok(Json(UserList {
        items: state.store.users().await?,
    }))
}

/// `{"name", "role", "password"}`; the password is never returned or logged.
#[utoipa::path(post, path = "/users", tag = "access", request_body = Object,
    responses((status = 201, body = Object), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn create_user(
    State(state): State<AppState>,
    context: RequestContext,
    ApiBody(body): ApiBody,
) -> Result<Response, HttpError> {
    let mut object = object(&body, &["name", "role", "password"])?;
    let name: String = required(&mut object, "name").map_err(HttpError::invalid)?;
    let role: String = required(&mut object, "role").map_err(HttpError::invalid)?;
    let role = Role::parse(&role).map_err(HttpError::invalid)?;
    let password: String = required(&mut object, "password").map_err(HttpError::invalid)?;
    let user = state
        .store
        .create_user(&name, role, &password, &context.meta(b""))
        .await?;
    Ok((StatusCode::CREATED, Json(user)).into_response())
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
    let mut object = object(&body, &["user", "name", "expiresInDays"])?;
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
