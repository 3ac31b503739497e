//! Users over REST (admins only; see [`crate::http::auth::ACCESS`]): list, create, and change
//! one's role, disabled flag or password.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use cronfleet_common::job::{optional, required};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::json_object;
use crate::accounts::{UserChange, UserView};
use crate::http::error::{ErrorBody, HttpError};
use crate::http::{ApiBody, AppState, RequestContext};
use crate::identity::Role;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_users, create_user))
        .routes(routes!(change_user))
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
    let mut object = json_object(&body, &["name", "role", "password"])?;
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

/// `{"role", "disabled", "password"}`, each optional. Disabling a user, resetting their
/// password or changing their role ends their sessions; a disabled user's tokens stop working
/// at once. The last enabled admin cannot be demoted or disabled (409).
#[utoipa::path(patch, path = "/users/{name}", tag = "access", request_body = Object, params(("name" = String, Path)),
    responses((status = 200, body = Object), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn change_user(
    State(state): State<AppState>,
    Path(name): Path<String>,
    context: RequestContext,
    ApiBody(body): ApiBody,
) -> Result<Json<UserView>, HttpError> {
    let mut object = json_object(&body, &["role", "disabled", "password"])?;
    let role: Option<String> = optional(&mut object, "role").map_err(HttpError::invalid)?;
    let change = UserChange {
        role: role
            .as_deref()
            .map(Role::parse)
            .transpose()
            .map_err(HttpError::invalid)?,
        disabled: optional(&mut object, "disabled").map_err(HttpError::invalid)?,
        password: optional(&mut object, "password").map_err(HttpError::invalid)?,
    };
    let user = state
        .store
        .change_user(&name, &change, &context.meta(b""))
        .await?;
    Ok(Json(user))
}
