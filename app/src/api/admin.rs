//! User administration (admins only).

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use super::UserRole;
use crate::error::AppError;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserSummary {
    pub id: String,
    pub email: String,
    pub role: UserRole,
    pub created_at: String,
}

#[cfg(feature = "ssr")]
impl From<&domain::account::User> for UserSummary {
    fn from(user: &domain::account::User) -> Self {
        Self {
            id: user.id.to_string(),
            email: user.email.as_str().to_owned(),
            role: user.role.into(),
            created_at: domain::audit::canonical_time(user.created_at),
        }
    }
}

#[server(endpoint = "admin/users")]
pub async fn list_users() -> Result<Vec<UserSummary>, AppError> {
    use super::context::{require_admin_reader, services};

    let reader = require_admin_reader().await?;
    let users = services()?.accounts.list_users(&reader).await?;
    Ok(users.iter().map(UserSummary::from).collect())
}

#[server(endpoint = "admin/set-role")]
pub async fn set_user_role(user_id: String, role: String) -> Result<UserSummary, AppError> {
    use super::context::{request_meta, require_admin_proof, services};
    use domain::account::{AccountError, Role, UserId};

    let admin = require_admin_proof().await?;
    let role = Role::parse(&role).map_err(AccountError::from)?;
    // An unparsable id is reported exactly like an unknown one.
    let target = uuid::Uuid::parse_str(&user_id)
        .map(UserId)
        .map_err(|_| AppError::NotFound)?;
    let user = services()?
        .accounts
        .change_role(&admin, target, role, request_meta())
        .await?;
    Ok(UserSummary::from(&user))
}
