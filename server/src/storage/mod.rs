//! sea-orm adapters for the domain's storage ports, on SQLite (default) or PostgreSQL.

mod accounts;
mod audit;
pub mod entities;
mod keys;
mod sessions;
pub mod stepup;
pub mod trading;

use std::time::Duration;

use migrations::{Migrator, MigratorTrait};
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbErr};

pub use accounts::SqlAccountStore;
pub use audit::{SqlAuditLog, append_in};
pub use keys::{SqlKeyStore, SqlSecurityAlerts};
pub use sessions::SqlSessionStore;
pub use stepup::SqlFactorStore;
pub use trading::SqlTradingStore;

use domain::ports::StoreError;

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

pub(crate) fn backend_error(err: DbErr) -> StoreError {
    let text = err.to_string();
    if text.contains("UNIQUE constraint failed") || text.contains("duplicate key value") {
        StoreError::Conflict
    } else {
        StoreError::Backend(text)
    }
}
