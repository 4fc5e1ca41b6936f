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
    /// A request to grant or remove the admin role, waiting for a second admin.
    pub pending: Option<PendingRole>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingRole {
    pub role: UserRole,
    /// The requesting admin's email.
    pub requested_by: String,
    pub requested_at: String,
    /// When it lapses unless a second admin makes the same change.
    pub expires_at: String,
}

#[cfg(feature = "ssr")]
impl UserSummary {
    fn new(
        user: &domain::account::User,
        requests: &[domain::account::RoleRequest],
        emails: &std::collections::HashMap<domain::account::UserId, domain::account::Email>,
    ) -> Self {
        use domain::audit::canonical_time;

        let pending = requests
            .iter()
            .find(|r| r.target == user.id)
            .map(|r| PendingRole {
                role: r.role.into(),
                requested_by: emails
                    .get(&r.requested_by)
                    .map(|e| e.as_str().to_owned())
                    .unwrap_or_else(|| r.requested_by.to_string()),
                requested_at: canonical_time(r.requested_at),
                expires_at: canonical_time(r.requested_at + domain::account::ROLE_REQUEST_TTL),
            });
        Self {
            id: user.id.to_string(),
            email: user.email.as_str().to_owned(),
            role: user.role.into(),
            created_at: canonical_time(user.created_at),
            pending,
        }
    }
}

#[server(endpoint = "admin/users")]
pub async fn list_users() -> Result<Vec<UserSummary>, AppError> {
    use super::context::{require_admin_reader, services};

    let reader = require_admin_reader().await?;
    let accounts = services()?.accounts.clone();
    let users = accounts.list_users(&reader).await?;
    let requests = accounts.role_requests(&reader).await?;
    let emails: std::collections::HashMap<_, _> =
        users.iter().map(|u| (u.id, u.email.clone())).collect();
    Ok(users
        .iter()
        .map(|u| UserSummary::new(u, &requests, &emails))
        .collect())
}

#[server(endpoint = "admin/set-role")]
pub async fn set_user_role(user_id: String, role: String) -> Result<UserSummary, AppError> {
    use super::context::{request_meta, require_admin_proof, services};
    use domain::account::{AccountError, Role, RoleChange, UserId};

    let admin = require_admin_proof().await?;
    let role = Role::parse(&role).map_err(AccountError::from)?;
    // An unparsable id is reported exactly like an unknown one.
    let target = uuid::Uuid::parse_str(&user_id)
        .map(UserId)
        .map_err(|_| AppError::NotFound)?;
    let accounts = services()?.accounts.clone();
    match accounts
        .change_role(&admin, target, role, request_meta())
        .await?
    {
        RoleChange::Changed(user) => Ok(UserSummary::new(&user, &[], &Default::default())),
        RoleChange::Requested(request) => {
            let user = accounts.user(target).await?.ok_or(AppError::NotFound)?;
            let emails = accounts
                .user(request.requested_by)
                .await?
                .map(|admin| (admin.id, admin.email))
                .into_iter()
                .collect();
            Ok(UserSummary::new(&user, &[request], &emails))
        }
    }
}
