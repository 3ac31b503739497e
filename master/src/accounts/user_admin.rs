//! Changing users: role, disabled, password. Each change is an event in the audit log in the
//! same transaction, ends the sessions it makes wrong (a disabled user's, a reset password's
//! owner's), and keeps at least one enabled admin: the last one cannot be demoted or
//! disabled. A disabled user's sessions and tokens stop working at the next request, since
//! both are checked against `users.disabled` every time.

use serde_json::json;
use sqlx::Row;

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
        // Admin changes are serialised, so two of them cannot each leave the other admin last.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext('cronfleet users'))")
            .execute(&mut *tx)
            .await?;
        let row = sqlx::query(
            "SELECT role, disabled, created_at, created_by FROM users WHERE name = $1 FOR UPDATE",
        )
        .bind(name)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| AccountError::NoSuchUser(name.to_owned()))?;
        let role = Role::parse(row.try_get("role")?)?;
        let disabled: bool = row.try_get("disabled")?;
        let new_role = change.role.unwrap_or(role);
        let new_disabled = change.disabled.unwrap_or(disabled);
        let stays_admin = new_role == Role::Admin && !new_disabled;
        if role == Role::Admin && !disabled && !stays_admin {
            let others: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM users WHERE role = 'admin' AND NOT disabled AND name <> $1",
            )
            .bind(name)
            .fetch_one(&mut *tx)
            .await?;
            if others == 0 {
                return Err(AccountError::LastAdmin(name.to_owned()));
            }
        }
        if new_role != role {
            sqlx::query("UPDATE users SET role = $2 WHERE name = $1")
                .bind(name)
                .bind(new_role.as_str())
                .execute(&mut *tx)
                .await?;
            let payload = json!({ "before": { "role": role }, "after": { "role": new_role } });
            record(&mut tx, ("user", name), "UserRoleChanged", payload, meta).await?;
        }
        if new_disabled != disabled {
            sqlx::query("UPDATE users SET disabled = $2 WHERE name = $1")
                .bind(name)
                .bind(new_disabled)
                .execute(&mut *tx)
                .await?;
            let kind = if new_disabled {
                "UserDisabled"
            } else {
                "UserEnabled"
            };
            let payload = json!({ "before": { "disabled": disabled }, "after": { "disabled": new_disabled } });
            record(&mut tx, ("user", name), kind, payload, meta).await?;
        }
        if let Some(hash) = &hash {
            sqlx::query("UPDATE users SET password_hash = $2 WHERE name = $1")
                .bind(name)
                .bind(hash)
                .execute(&mut *tx)
                .await?;
            record(
                &mut tx,
                ("user", name),
                "UserPasswordReset",
                json!({}),
                meta,
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
