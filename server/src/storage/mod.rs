//! sea-orm adapters for the domain's storage ports, on SQLite (default) or PostgreSQL.
//!
//! # Database errors are converted once
//! Adapter code writes plain `?` on sea-orm results. [`DbError`] is `From<DbErr>` (the one
//! place a driver error is read, and where a unique-constraint violation becomes
//! `StoreError::Conflict`) and `From<StoreError>` (a missing row, a corrupt value); the domain's
//! `StoreError` cannot be `From<DbErr>` itself (both types are foreign here). A port method
//! wraps its body in [`converted`], which hands the error back as the port's type:
//!
//! ```text
//! async fn find_user(&self, id: UserId) -> Result<Option<User>, StoreError> {
//!     converted(async {
//!         let row = user::Entity::find_by_id(id.to_string()).one(&self.db).await?;
//!         row.as_ref().map(to_user).transpose()
//!     })
//!     .await
//! }
//! ```
//!
//! Helpers the bodies share (row mappers, queries, `AuditedTxn`) return [`DbResult`],
//! so `?` works on them too. A caller that must tell a conflict apart asks
//! [`DbError::is_conflict`] rather than reading the driver's text.

mod accounts;
mod audit;
pub mod checkpoints;
pub mod entities;
mod keys;
mod sessions;
pub mod stepup;
pub mod trading;

use std::time::Duration;

use domain::ports::StoreError;
use migrations::{Migrator, MigratorTrait};
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbErr};

pub use accounts::SqlAccountStore;
pub use audit::{SqlAuditLog, append_in, to_row};
pub use keys::{SqlKeyStore, SqlSecurityAlerts};
pub use sessions::SqlSessionStore;
pub use stepup::SqlFactorStore;
pub use trading::SqlTradingStore;

/// Opens the database named by `url` (`sqlite://…` or `postgres://…`) and applies migrations.
pub async fn connect(url: &str) -> Result<DatabaseConnection, DbErr> {
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .max_connections(if url.starts_with("sqlite") { 4 } else { 16 })
        .connect_timeout(Duration::from_secs(10))
        .sqlx_logging(false);
    let db = Database::connect(options).await?;
    if db.get_database_backend() == sea_orm::DbBackend::Sqlite {
        // WAL lets readers proceed during a write and is stored in the file, so once is enough.
        // (sqlx already turns foreign keys on and sets a busy timeout on every connection.)
        db.execute_unprepared("PRAGMA journal_mode = WAL;").await?;
    }
    Migrator::up(&db, None).await?;
    Ok(db)
}

/// A database failure inside an adapter, already classified as the port's [`StoreError`].
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct DbError(#[from] StoreError);

pub type DbResult<T> = Result<T, DbError>;

impl From<DbErr> for DbError {
    fn from(err: DbErr) -> Self {
        let text = err.to_string();
        // SQLite's and PostgreSQL's wording for a unique-constraint violation.
        Self(
            if text.contains("UNIQUE constraint failed") || text.contains("duplicate key value") {
                StoreError::Conflict
            } else {
                StoreError::Backend(text)
            },
        )
    }
}

impl From<DbError> for StoreError {
    fn from(err: DbError) -> Self {
        err.0
    }
}

impl DbError {
    pub fn is_conflict(&self) -> bool {
        matches!(self.0, StoreError::Conflict)
    }
}

/// Runs a port method's body, written with plain `?`, and returns its error as the port's
/// error type (`StoreError`, or any other type that is `From<DbError>`).
pub(crate) async fn converted<T, E: From<DbError>>(
    body: impl Future<Output = DbResult<T>>,
) -> Result<T, E> {
    body.await.map_err(E::from)
}
