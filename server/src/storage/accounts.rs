//! Users in the database.

use std::sync::Arc;

use async_trait::async_trait;
use domain::account::{Email, NewUser, PasswordHash, Role, User, UserCredentials, UserId};
use domain::audit::{AuditDraft, canonical_time, parse_canonical_time};
use domain::ports::{AccountStore, Clock, StoreError};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder,
};
use uuid::Uuid;

use super::audit::AuditChain;
use super::entities::{session, user};
use super::{DbResult, converted};

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
        email: Email::parse(&row.email).map_err(|_| corrupt("email"))?,
        role: Role::parse(&row.role).map_err(|_| corrupt("role"))?,
        created_at: parse_canonical_time(&row.created_at).ok_or_else(|| corrupt("created_at"))?,
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
        role: Role,
        audit: AuditDraft,
    ) -> Result<User, StoreError> {
        converted(async {
            let txn = self.chain.begin().await?;
            let row = user::Entity::find_by_id(id.to_string())
                .one(txn.conn())
                .await?
                .ok_or(StoreError::NotFound)?;
            let mut active: user::ActiveModel = row.clone().into();
            active.role = Set(role.as_str().to_owned());
            user::Entity::update(active).exec(txn.conn()).await?;
            txn.commit_with(audit, self.clock.now()).await?;
            let mut user = to_user(&row)?;
            user.role = role;
            Ok(user)
        })
        .await
    }

    async fn set_password(
        &self,
        id: UserId,
        hash: PasswordHash,
        audit: AuditDraft,
    ) -> Result<(), StoreError> {
        converted(async {
            let txn = self.chain.begin().await?;
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
            let ended = session::Entity::delete_many()
                .filter(session::Column::UserId.eq(id.to_string()))
                .exec(txn.conn())
                .await?
                .rows_affected;
            txn.commit_with(audit.detail("sessions_ended", ended), self.clock.now())
                .await?;
            Ok(())
        })
        .await
    }
}
