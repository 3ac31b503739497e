//! Changing users: role, disabled, password. Each change is an event in the audit log in the
//! same transaction, ends the sessions it makes wrong (a disabled user's, a reset password's
//! owner's), and keeps at least one enabled admin: the last one cannot be demoted or
//! disabled. A disabled user's sessions and tokens stop working at the next request, since
//! both are checked against `users.disabled` every time.

use serde_json::json;
use sqlx::postgres::PgRow;
use sqlx::{Postgres, Row, Transaction};

use super::{record, AccountError, UserView};
use crate::identity::{self, Role};
use crate::store::{begin, RequestMeta, Store};

/// A change to one user; fields left `None` stay as they are.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserChange {
    pub role: Option<Role>,
    pub disabled: Option<bool>,
    pub password: Option<String>,
}

impl Store {
    /// Applies `change` to user `name`, as `meta.actor`; returns the user as it is now.
    #[tracing::instrument(skip_all, fields(actor = %meta.actor, user = %name))]
    pub async fn change_user(
        &self,
        name: &str,
        change: &UserChange,
        meta: &RequestMeta,
    ) -> Result<UserView, AccountError> {
        let hash = change
            .password
            .as_deref()
            .map(identity::hash_password)
            .transpose()?;
        let mut tx = begin(&self.pool).await?;
        let row = lock_user(&mut tx, name).await?;
        let role = Role::parse(row.try_get("role")?)?;
        let disabled: bool = row.try_get("disabled")?;
        let new_role = change.role.unwrap_or(role);
        let new_disabled = change.disabled.unwrap_or(disabled);
        let stays_admin = new_role == Role::Admin && !new_disabled;
        if role == Role::Admin && !disabled && !stays_admin {
            keep_an_admin(&mut tx, name).await?;
        }
        let mut user = Changed {
            tx: &mut tx,
            name,
            meta,
        };
        if new_role != role {
            let payload = json!({ "before": { "role": role }, "after": { "role": new_role } });
            user.set("role", new_role.as_str(), "UserRoleChanged", payload)
                .await?;
        }
        if new_disabled != disabled {
            let kind = if new_disabled {
                "UserDisabled"
            } else {
                "UserEnabled"
            };
            let payload = json!({ "before": { "disabled": disabled }, "after": { "disabled": new_disabled } });
            user.set("disabled", new_disabled, kind, payload).await?;
        }
        if let Some(hash) = &hash {
            user.set(
                "password_hash",
                hash.as_str(),
                "UserPasswordReset",
                json!({}),
            )
            .await?;
        }
        if new_disabled || hash.is_some() || new_role != role {
            sqlx::query("DELETE FROM sessions WHERE user_name = $1")
                .bind(name)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(UserView {
            name: name.to_owned(),
            role: new_role,
            disabled: new_disabled,
            created_at: row.try_get("created_at")?,
            created_by: row.try_get("created_by")?,
        })
    }
}

/// The user's row, locked for the change; admin changes are serialised, so two of them
/// cannot each leave the other admin last.
async fn lock_user(tx: &mut Transaction<'_, Postgres>, name: &str) -> Result<PgRow, AccountError> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('cronfleet users'))")
        .execute(&mut **tx)
        .await?;
    sqlx::query(
        "SELECT role, disabled, created_at, created_by FROM users WHERE name = $1 FOR UPDATE",
    )
    .bind(name)
    .fetch_optional(&mut **tx)
    .await?
    .ok_or_else(|| AccountError::NoSuchUser(name.to_owned()))
}

/// Refuses a change that would leave no enabled admin but `name`.
async fn keep_an_admin(tx: &mut Transaction<'_, Postgres>, name: &str) -> Result<(), AccountError> {
    let others: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM users WHERE role = 'admin' AND NOT disabled AND name <> $1",
    )
    .bind(name)
    .fetch_one(&mut **tx)
    .await?;
    if others == 0 {
        return Err(AccountError::LastAdmin(name.to_owned()));
    }
    Ok(())
}

/// One user being changed in a transaction.
struct Changed<'a, 't> {
    tx: &'a mut Transaction<'t, Postgres>,
    name: &'a str,
    meta: &'a RequestMeta,
}

impl Changed<'_, '_> {
    /// Sets `column` (one of this module's, never user input) and records `kind`.
    async fn set<T>(
        &mut self,
        column: &'static str,
        value: T,
        kind: &str,
        payload: serde_json::Value,
    ) -> Result<(), AccountError>
    where
        T: for<'q> sqlx::Encode<'q, Postgres> + sqlx::Type<Postgres> + Send,
    {
        sqlx::query(&format!("UPDATE users SET {column} = $2 WHERE name = $1"))
            .bind(self.name)
            .bind(value)
            .execute(&mut **self.tx)
            .await?;
        record(self.tx, ("user", self.name), kind, payload, self.meta).await?;
        Ok(())
    }
}
