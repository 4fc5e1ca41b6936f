//! Users in the database.

use std::sync::Arc;

use async_trait::async_trait;
use domain::account::{
    Email, NewUser, PasswordHash, Role, RoleRequest, TRUSTED_DEVICES_PER_USER, User,
    UserCredentials, UserId,
};
use domain::audit::{AuditDraft, canonical_time, parse_canonical_time};
use domain::ports::{AccountStore, Clock, StoreError};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, TransactionTrait,
};
use uuid::Uuid;

use super::audit::AuditChain;
use super::entities::{role_request, trusted_device, user};
use super::sessions::{end_sessions_in, forget_devices_in, revoke_agent_tokens_in};
use super::{DbResult, converted, from_micros, micros};

#[derive(Debug, Clone)]
pub struct SqlAccountStore {
    db: DatabaseConnection,
    chain: AuditChain,
    clock: Arc<dyn Clock>,
}

impl SqlAccountStore {
    pub fn new(chain: impl Into<AuditChain>, clock: Arc<dyn Clock>) -> Self {
        let chain = chain.into();
        Self {
            db: chain.db().clone(),
            chain,
            clock,
        }
    }
}

pub(super) fn to_user(row: &user::Model) -> DbResult<User> {
    let corrupt =
        |what: &str| StoreError::Backend(format!("user row {} has an invalid {what}", row.id));
    Ok(User {
        id: UserId(Uuid::parse_str(&row.id).map_err(|_| corrupt("id"))?),
        email: Email::from_stored(&row.email).ok_or_else(|| corrupt("email"))?,
        role: Role::parse(&row.role).map_err(|_| corrupt("role"))?,
        created_at: parse_canonical_time(&row.created_at).ok_or_else(|| corrupt("created_at"))?,
    })
}

/// Sets the role of a user whose role is still `from` (`Conflict` otherwise: someone changed it
/// meanwhile), inside `txn`. Any pending admin-role request for them goes, and so do the ones
/// they made if they are no longer an admin.
async fn change_role_in(
    txn: &super::audit::AuditedTxn,
    id: UserId,
    from: Role,
    role: Role,
) -> DbResult<User> {
    let row = user::Entity::find_by_id(id.to_string())
        .one(txn.conn())
        .await?
        .ok_or(StoreError::NotFound)?;
    let updated = user::Entity::update_many()
        .set(user::ActiveModel {
            role: Set(role.as_str().to_owned()),
            ..Default::default()
        })
        .filter(user::Column::Id.eq(id.to_string()))
        .filter(user::Column::Role.eq(from.as_str()))
        .exec(txn.conn())
        .await?;
    if updated.rows_affected != 1 {
        return Err(StoreError::Conflict.into());
    }
    role_request::Entity::delete_by_id(id.to_string())
        .exec(txn.conn())
        .await?;
    if role != Role::Admin {
        role_request::Entity::delete_many()
            .filter(role_request::Column::RequestedBy.eq(id.to_string()))
            .exec(txn.conn())
            .await?;
    }
    let mut user = to_user(&row)?;
    user.role = role;
    Ok(user)
}

fn to_role_request(row: &role_request::Model) -> DbResult<RoleRequest> {
    let corrupt = |what: &str| {
        StoreError::Backend(format!(
            "role request for {} has an invalid {what}",
            row.target_id
        ))
    };
    let id = |text: &str, what: &str| Uuid::parse_str(text).map(UserId).map_err(|_| corrupt(what));
    Ok(RoleRequest {
        target: id(&row.target_id, "target")?,
        from: Role::parse(&row.from_role).map_err(|_| corrupt("from_role"))?,
        role: Role::parse(&row.role).map_err(|_| corrupt("role"))?,
        requested_by: id(&row.requested_by, "requester")?,
        requested_at: from_micros(row.requested_at_us).ok_or_else(|| corrupt("time"))?,
    })
}

#[async_trait]
impl AccountStore for SqlAccountStore {
    async fn create_user(&self, new_user: NewUser, audit: AuditDraft) -> Result<User, StoreError> {
        let row = user::ActiveModel {
            id: Set(new_user.id.to_string()),
            email: Set(new_user.email.as_str().to_owned()),
            password_hash: Set(new_user.password_hash.0.clone()),
            role: Set(new_user.role.as_str().to_owned()),
            created_at: Set(canonical_time(new_user.created_at)),
            sessions_revoked_at: Set(None),
        };
        converted(async {
            let txn = self.chain.begin().await?;
            user::Entity::insert(row)
                .exec_without_returning(txn.conn())
                .await?;
            txn.commit_with(audit, self.clock.now()).await?;
            Ok(User {
                id: new_user.id,
                email: new_user.email,
                role: new_user.role,
                created_at: new_user.created_at,
            })
        })
        .await
    }

    async fn find_credentials(&self, email: &Email) -> Result<Option<UserCredentials>, StoreError> {
        converted(async {
            let row = user::Entity::find()
                .filter(user::Column::Email.eq(email.as_str()))
                .one(&self.db)
                .await?;
            row.map(|row| {
                Ok(UserCredentials {
                    user: to_user(&row)?,
                    password_hash: PasswordHash(row.password_hash),
                })
            })
            .transpose()
        })
        .await
    }

    async fn find_user(&self, id: UserId) -> Result<Option<User>, StoreError> {
        converted(async {
            let row = user::Entity::find_by_id(id.to_string())
                .one(&self.db)
                .await?;
            row.as_ref().map(to_user).transpose()
        })
        .await
    }

    async fn list_users(&self) -> Result<Vec<User>, StoreError> {
        converted(async {
            let rows = user::Entity::find()
                .order_by_asc(user::Column::CreatedAt)
                .all(&self.db)
                .await?;
            rows.iter().map(to_user).collect()
        })
        .await
    }

    async fn find_users(&self, ids: &[UserId]) -> Result<Vec<User>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        converted(async {
            let rows = user::Entity::find()
                .filter(user::Column::Id.is_in(ids.iter().map(ToString::to_string)))
                .all(&self.db)
                .await?;
            rows.iter().map(to_user).collect()
        })
        .await
    }

    async fn set_role(
        &self,
        id: UserId,
        from: Role,
        role: Role,
        audit: AuditDraft,
    ) -> Result<User, StoreError> {
        converted(async {
            let txn = self.chain.begin().await?;
            let user = change_role_in(&txn, id, from, role).await?;
            txn.commit_with(audit, self.clock.now()).await?;
            Ok(user)
        })
        .await
    }

    async fn set_password(
        &self,
        id: UserId,
        hash: PasswordHash,
        revoke_agent_tokens: bool,
        keep_device: Option<String>,
        audit: AuditDraft,
    ) -> Result<(), StoreError> {
        converted(async {
            let now = self.clock.now();
            let mut txn = self.chain.begin().await?;
            let updated = user::Entity::update_many()
                .set(user::ActiveModel {
                    password_hash: Set(hash.0),
                    ..Default::default()
                })
                .filter(user::Column::Id.eq(id.to_string()))
                .exec(txn.conn())
                .await?;
            if updated.rows_affected != 1 {
                return Err(StoreError::NotFound.into());
            }
            // Whoever signed in with the old password is signed out with it.
            let ended = end_sessions_in(&txn, id, now).await?;
            // And the browsers it signed in from are strangers again, but the one asking.
            forget_devices_in(&txn, id, keep_device).await?;
            // Bots whose tokens someone with the old password may have made stop too, if asked.
            let mut revoked = 0;
            if revoke_agent_tokens {
                revoked =
                    revoke_agent_tokens_in(&mut txn, id, &audit, "password changed", now).await?;
            }
            txn.commit_with(
                audit
                    .detail("sessions_ended", ended)
                    .detail("agents_revoked", revoked),
                now,
            )
            .await?;
            Ok(())
        })
        .await
    }

    async fn role_requests(&self) -> Result<Vec<RoleRequest>, StoreError> {
        converted(async {
            let rows = role_request::Entity::find()
                .order_by_asc(role_request::Column::RequestedAtUs)
                .all(&self.db)
                .await?;
            rows.iter().map(to_role_request).collect()
        })
        .await
    }

    async fn request_role(
        &self,
        request: RoleRequest,
        audit: AuditDraft,
    ) -> Result<(), StoreError> {
        converted(async {
            let txn = self.chain.begin().await?;
            role_request::Entity::delete_by_id(request.target.to_string())
                .exec(txn.conn())
                .await?;
            role_request::Entity::insert(role_request::ActiveModel {
                target_id: Set(request.target.to_string()),
                from_role: Set(request.from.as_str().to_owned()),
                role: Set(request.role.as_str().to_owned()),
                requested_by: Set(request.requested_by.to_string()),
                requested_at_us: Set(micros(request.requested_at)),
            })
            .exec_without_returning(txn.conn())
            .await?;
            txn.commit_with(audit, self.clock.now()).await?;
            Ok(())
        })
        .await
    }

    async fn confirm_role_request(
        &self,
        request: &RoleRequest,
        audit: AuditDraft,
    ) -> Result<User, StoreError> {
        converted(async {
            let txn = self.chain.begin().await?;
            // Only that very request: one confirmed or replaced meanwhile changes nothing.
            let removed = role_request::Entity::delete_many()
                .filter(role_request::Column::TargetId.eq(request.target.to_string()))
                .filter(role_request::Column::Role.eq(request.role.as_str()))
                .filter(role_request::Column::RequestedBy.eq(request.requested_by.to_string()))
                .filter(role_request::Column::RequestedAtUs.eq(micros(request.requested_at)))
                .exec(txn.conn())
                .await?;
            if removed.rows_affected != 1 {
                return Err(StoreError::Conflict.into());
            }
            // The one who asked must still be an admin: a request does not outlive its
            // requester's authority.
            let requester_is_admin = user::Entity::find_by_id(request.requested_by.to_string())
                .filter(user::Column::Role.eq(Role::Admin.as_str()))
                .one(txn.conn())
                .await?
                .is_some();
            if !requester_is_admin {
                return Err(StoreError::Conflict.into());
            }
            let user = change_role_in(&txn, request.target, request.from, request.role).await?;
            txn.commit_with(audit, self.clock.now()).await?;
            Ok(user)
        })
        .await
    }

    async fn trusted_device(
        &self,
        token_hash: &str,
    ) -> Result<Option<(UserId, time::OffsetDateTime)>, StoreError> {
        converted(async {
            let row = trusted_device::Entity::find_by_id(token_hash.to_owned())
                .one(&self.db)
                .await?;
            row.map(|row| {
                let corrupt = || -> super::DbError {
                    StoreError::Backend("a trusted device row is unreadable".into()).into()
                };
                let user = Uuid::parse_str(&row.user_id)
                    .map(UserId)
                    .map_err(|_| corrupt())?;
                let given_at = from_micros(row.created_at_us).ok_or_else(corrupt)?;
                Ok((user, given_at))
            })
            .transpose()
        })
        .await
    }

    async fn trust_device(
        &self,
        user: UserId,
        token_hash: &str,
        at: time::OffsetDateTime,
    ) -> Result<(), StoreError> {
        converted(async {
            let txn = self.db.begin().await?;
            // A known token is renewed: removed and stored again with its new time.
            trusted_device::Entity::delete_by_id(token_hash.to_owned())
                .exec(&txn)
                .await?;
            trusted_device::Entity::insert(trusted_device::ActiveModel {
                token_hash: Set(token_hash.to_owned()),
                user_id: Set(user.to_string()),
                created_at_us: Set(micros(at)),
            })
            .exec_without_returning(&txn)
            .await?;
            // At most one more than are kept, so reading them all is cheap.
            let newest_first: Vec<String> = trusted_device::Entity::find()
                .select_only()
                .column(trusted_device::Column::TokenHash)
                .filter(trusted_device::Column::UserId.eq(user.to_string()))
                .order_by_desc(trusted_device::Column::CreatedAtUs)
                .order_by_desc(trusted_device::Column::TokenHash)
                .into_tuple()
                .all(&txn)
                .await?;
            let forgotten: Vec<String> = newest_first
                .into_iter()
                .skip(TRUSTED_DEVICES_PER_USER)
                .collect();
            if !forgotten.is_empty() {
                trusted_device::Entity::delete_many()
                    .filter(trusted_device::Column::TokenHash.is_in(forgotten))
                    .exec(&txn)
                    .await?;
            }
            txn.commit().await?;
            Ok(())
        })
        .await
    }
}
