//! Users and API tokens in PostgreSQL. Every change is also an event in the audit log (streams
//! `user` and `token`), appended in the same transaction.

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use serde_json::{json, Value};
use sqlx::{Postgres, Row, Transaction};

use crate::identity::{self, NewToken, Role};

mod user_admin;

use crate::store::{append, begin, NewEvent, RequestMeta, Store, StoreError};
pub use user_admin::UserChange;

/// The event types of the `user` and `token` streams.
pub const KINDS: &[&str] = &[
    "UserCreated",
    "UserRoleChanged",
    "UserDisabled",
    "UserEnabled",
    "UserPasswordReset",
    "TokenCreated",
    "TokenRevoked",
];

/// Who is making a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub user: String,
    pub role: Role,
    /// The token it came with (id, name), when it is not a session.
    pub token: Option<(String, String)>,
}

impl Principal {
    /// The actor recorded on events.
    pub fn actor(&self) -> String {
        match &self.token {
            Some((_, name)) => format!("{} (token {name})", self.user),
            None => self.user.clone(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UserView {
    pub name: String,
    pub role: Role,
    pub disabled: bool,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenView {
    pub id: String,
    pub user: String,
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
}

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error(transparent)]
    Invalid(#[from] cronfleet_common::FieldError),
    #[error("user {0} already exists")]
    UserExists(String),
    #[error("user {0} does not exist")]
    NoSuchUser(String),
    #[error("token {0} does not exist")]
    NoSuchToken(String),
    #[error("{0} is the last enabled admin: make another admin first")]
    LastAdmin(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for AccountError {
    fn from(error: sqlx::Error) -> Self {
        AccountError::Store(StoreError::Database(error))
    }
}

/// How often a token's `last_used_at` is written at most.
const LAST_USE_RESOLUTION_SECS: i64 = 60;

impl Store {
    /// Creates a user (an admin when bootstrapping from the command line).
    #[tracing::instrument(skip_all, fields(actor = %meta.actor))]
    pub async fn create_user(
        &self,
        name: &str,
        role: Role,
        password: &str,
        meta: &RequestMeta,
    ) -> Result<UserView, AccountError> {
        identity::check_user_name(name)?;
        let hash = identity::hash_password(password)?;
        let mut tx = begin(&self.pool).await?;
        let inserted = sqlx::query(
            "INSERT INTO users (name, password_hash, role, created_by) VALUES ($1, $2, $3, $4)
             ON CONFLICT (name) DO NOTHING RETURNING created_at",
        )
        .bind(name)
        .bind(&hash)
        .bind(role.as_str())
        .bind(&meta.actor)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = inserted else {
            return Err(AccountError::UserExists(name.to_owned()));
        };
        record(
            &mut tx,
            ("user", name),
            "UserCreated",
            json!({ "after": { "name": name, "role": role } }),
            meta,
        )
        .await?;
        tx.commit().await?;
        Ok(UserView {
            name: name.to_owned(),
            role,
            disabled: false,
            created_at: row.try_get("created_at")?,
            created_by: meta.actor.clone(),
        })
    }

    /// Whether any user exists (the first one must be made from the command line).
    pub async fn has_users(&self) -> Result<bool, AccountError> {
        Ok(sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM users)")
            .fetch_one(&self.pool)
            .await?)
    }

    pub async fn users(&self) -> Result<Vec<UserView>, AccountError> {
        let rows = sqlx::query(
            "SELECT name, role, disabled, created_at, created_by FROM users ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(UserView {
                    name: row.try_get("name")?,
                    role: Role::parse(row.try_get("role")?).map_err(AccountError::Invalid)?,
                    disabled: row.try_get("disabled")?,
                    created_at: row.try_get("created_at")?,
                    created_by: row.try_get("created_by")?,
                })
            })
            .collect()
    }

    /// The user a name and password identify, if they match and the user is enabled.
    pub async fn check_password(
        &self,
        name: &str,
        password: &str,
    ) -> Result<Option<Principal>, AccountError> {
        let row =
            sqlx::query("SELECT password_hash, role FROM users WHERE name = $1 AND NOT disabled")
                .bind(name)
                .fetch_optional(&self.pool)
                .await?;
        let Some(row) = row else {
            identity::verify_decoy(password);
            return Ok(None);
        };
        let hash: String = row.try_get("password_hash")?;
        if !identity::verify_password(&hash, password) {
            return Ok(None);
        }
        let role = Role::parse(row.try_get("role")?)?;
        Ok(Some(Principal {
            user: name.to_owned(),
            role,
            token: None,
        }))
    }

    /// Makes a token for `user`; the returned plaintext is the only copy.
    #[tracing::instrument(skip_all, fields(actor = %meta.actor))]
    pub async fn create_token(
        &self,
        user: &str,
        name: &str,
        expires_in_days: Option<u32>,
        meta: &RequestMeta,
    ) -> Result<(NewToken, TokenView), AccountError> {
        if name.is_empty() || name.len() > 64 || name.chars().any(char::is_control) {
            return Err(cronfleet_common::FieldError::new(
                "name",
                "must be 1-64 printable characters",
            )
            .into());
        }
        if expires_in_days.is_some_and(|days| days == 0 || days > 3650) {
            return Err(cronfleet_common::FieldError::new(
                "expiresInDays",
                "must be between 1 and 3650",
            )
            .into());
        }
        let token = identity::new_token().map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let expires_at = expires_in_days.map(|days| Utc::now() + Duration::days(i64::from(days)));
        let mut tx = begin(&self.pool).await?;
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM users WHERE name = $1)")
                .bind(user)
                .fetch_one(&mut *tx)
                .await?;
        if !exists {
            return Err(AccountError::NoSuchUser(user.to_owned()));
        }
        let created_at: DateTime<Utc> = sqlx::query_scalar(
            "INSERT INTO api_tokens (id, user_name, name, secret_hash, created_by, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING created_at",
        )
        .bind(&token.id)
        .bind(user)
        .bind(name)
        .bind(&token.secret_hash)
        .bind(&meta.actor)
        .bind(expires_at)
        .fetch_one(&mut *tx)
        .await?;
        let payload = json!({ "after": { "id": token.id, "user": user, "name": name, "expiresAt": expires_at } });
        record(&mut tx, ("token", &token.id), "TokenCreated", payload, meta).await?;
        tx.commit().await?;
        let view = TokenView {
            id: token.id.clone(),
            user: user.to_owned(),
            name: name.to_owned(),
            created_at,
            created_by: meta.actor.clone(),
            expires_at,
            revoked_at: None,
            last_used_at: None,
        };
        Ok((token, view))
    }

    /// Revokes a token; it stops working at once.
    #[tracing::instrument(skip_all, fields(actor = %meta.actor))]
    pub async fn revoke_token(&self, id: &str, meta: &RequestMeta) -> Result<(), AccountError> {
        let mut tx = begin(&self.pool).await?;
        let revoked = sqlx::query(
            "UPDATE api_tokens SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL",
        )
        .bind(id)
        .execute(&mut *tx)
        .await?;
        if revoked.rows_affected() == 0 {
            return Err(AccountError::NoSuchToken(id.to_owned()));
        }
        record(&mut tx, ("token", id), "TokenRevoked", json!({}), meta).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn tokens(&self) -> Result<Vec<TokenView>, AccountError> {
        let rows = sqlx::query(
            "SELECT id, user_name, name, created_at, created_by, expires_at, revoked_at, last_used_at
             FROM api_tokens ORDER BY created_at DESC",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(TokenView {
                    id: row.try_get("id")?,
                    user: row.try_get("user_name")?,
                    name: row.try_get("name")?,
                    created_at: row.try_get("created_at")?,
                    created_by: row.try_get("created_by")?,
                    expires_at: row.try_get("expires_at")?,
                    revoked_at: row.try_get("revoked_at")?,
                    last_used_at: row.try_get("last_used_at")?,
                })
            })
            .collect()
    }

    /// The principal a presented bearer token stands for, if it is valid, unexpired, unrevoked
    /// and its user enabled. Records the use (at most once a minute per token).
    pub async fn authenticate_token(
        &self,
        presented: &str,
    ) -> Result<Option<Principal>, AccountError> {
        let Some((id, presented_hash)) = identity::parse_token(presented) else {
            return Ok(None);
        };
        let row = sqlx::query(
            "SELECT t.secret_hash, t.name, t.user_name, u.role, t.last_used_at FROM api_tokens t
             JOIN users u ON u.name = t.user_name
             WHERE t.id = $1 AND t.revoked_at IS NULL AND (t.expires_at IS NULL OR t.expires_at > now())
               AND NOT u.disabled",
        )
        .bind(&id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let stored: Vec<u8> = row.try_get("secret_hash")?;
        if !identity::same_secret(&stored, &presented_hash) {
            return Ok(None);
        }
        let last_used: Option<DateTime<Utc>> = row.try_get("last_used_at")?;
        if last_used.is_none_or(|t| Utc::now() - t > Duration::seconds(LAST_USE_RESOLUTION_SECS)) {
            sqlx::query("UPDATE api_tokens SET last_used_at = now() WHERE id = $1")
                .bind(&id)
                .execute(&self.pool)
                .await?;
        }
        Ok(Some(Principal {
            user: row.try_get("user_name")?,
            role: Role::parse(row.try_get("role")?)?,
            token: Some((id, row.try_get("name")?)),
        }))
    }
}

/// Appends one event of the `user` or `token` stream.
async fn record(
    tx: &mut Transaction<'_, Postgres>,
    (stream, subject): (&str, &str),
    kind: &str,
    payload: Value,
    meta: &RequestMeta,
) -> Result<(), sqlx::Error> {
    let event = NewEvent {
        stream,
        subject,
        version: None,
        kind,
        payload: &payload,
    };
    append(tx, event, meta).await.map(drop)
}

/// How long a page session lasts.
const SESSION_HOURS: i64 = 12;

/// A signed-in page session.
#[derive(Debug, Clone)]
pub struct Session {
    pub principal: Principal,
    /// The token every form of this session must carry.
    pub csrf: String,
}

fn random_hex(bytes: usize) -> Result<String, StoreError> {
    let mut buffer = vec![0u8; bytes];
    getrandom::fill(&mut buffer).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    Ok(buffer.iter().map(|b| format!("{b:02x}")).collect())
}

fn session_hash(id: &str) -> Vec<u8> {
    use sha2::Digest as _;
    sha2::Sha256::digest(id.as_bytes()).to_vec()
}

impl Store {
    /// Starts a session for a principal; returns the cookie value.
    pub async fn open_session(&self, principal: &Principal) -> Result<String, AccountError> {
        let id = random_hex(32)?;
        sqlx::query("DELETE FROM sessions WHERE expires_at < now()")
            .execute(&self.pool)
            .await?;
        sqlx::query(
            "INSERT INTO sessions (id_hash, user_name, csrf, expires_at) VALUES ($1, $2, $3, now() + make_interval(hours => $4))",
        )
        .bind(session_hash(&id))
        .bind(&principal.user)
        .bind(random_hex(16)?)
        .bind(i32::try_from(SESSION_HOURS).unwrap_or(12))
        .execute(&self.pool)
        .await?;
        Ok(id)
    }

    /// The session a cookie value stands for, if it is live and its user enabled.
    pub async fn session(&self, id: &str) -> Result<Option<Session>, AccountError> {
        if id.len() != 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(None);
        }
        let row = sqlx::query(
            "SELECT s.user_name, s.csrf, u.role FROM sessions s JOIN users u ON u.name = s.user_name
             WHERE s.id_hash = $1 AND s.expires_at > now() AND NOT u.disabled",
        )
        .bind(session_hash(id))
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(Session {
            principal: Principal {
                user: row.try_get("user_name")?,
                role: Role::parse(row.try_get("role")?)?,
                token: None,
            },
            csrf: row.try_get("csrf")?,
        }))
    }

    /// Ends a session.
    pub async fn close_session(&self, id: &str) -> Result<(), AccountError> {
        sqlx::query("DELETE FROM sessions WHERE id_hash = $1")
            .bind(session_hash(id))
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
