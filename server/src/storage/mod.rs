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
mod login_backoff;
mod sessions;
mod sqlite_reader;
pub mod stepup;
mod trader_locks;
pub mod trading;

use std::time::Duration;

use domain::ports::StoreError;
use migrations::{Migrator, MigratorTrait};
use sea_orm::sea_query::SelectStatement;
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbErr, TryGetableMany,
};

pub use accounts::SqlAccountStore;
pub use audit::{AdoptError, AuditChain, HEADS_SIGNED, SqlAuditLog, to_row};
pub use keys::{SqlKeyStore, SqlSecurityAlerts};
pub use login_backoff::SqlLoginThrottle;
pub use sessions::{SqlSessionStore, watching_session_outages};
pub use stepup::SqlFactorStore;
pub use trader_locks::PgTraderLocks;
pub use trading::SqlTradingStore;

/// Opens the database named by `url` (`sqlite://…` or `postgres://…`) and applies migrations.
pub async fn connect(url: &str) -> Result<DatabaseConnection, DbErr> {
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .max_connections(if url.starts_with("sqlite") { 4 } else { 16 })
        .connect_timeout(Duration::from_secs(10))
        .sqlx_logging(false)
        // Deleted content (a revoked key's ciphertext, an ended session) is overwritten where
        // that costs no extra I/O, not left in the file's free space.
        .map_sqlx_sqlite_opts(|sqlite| sqlite.pragma("secure_delete", "FAST"))
        .map_sqlx_sqlite_pool_opts(|pool| pool.after_release(close_if_in_transaction));
    let db = Database::connect(options).await?;
    if db.get_database_backend() == sea_orm::DbBackend::Sqlite {
        // WAL lets readers proceed during a write and is stored in the file, so once is enough.
        // (sqlx already turns foreign keys on and sets a busy timeout on every connection.)
        db.execute_unprepared("PRAGMA journal_mode = WAL;").await?;
    }
    Migrator::up(&db, None).await?;
    Ok(db)
}

/// Keeps a SQLite connection out of the pool (it is closed, and the pool opens a fresh one)
/// when a transaction on it did not end cleanly.
///
/// When a COMMIT fails with SQLITE_FULL (a full disk), SQLite has already rolled the
/// transaction back, but sqlx still counts it open: the ROLLBACK it sends when the transaction
/// is dropped fails ("no transaction is active") and the count stays. Back in the pool, the
/// next `begin` on that connection opens only a SAVEPOINT; when its RELEASE fails to commit,
/// SQLite stays in a transaction, and every later RELEASE on that connection commits nothing:
/// it kept the write lock for good (all other writes: "database is locked") while its writers
/// were told their writes had committed.
fn close_if_in_transaction(
    conn: &mut sea_orm::sqlx::SqliteConnection,
    _: sea_orm::sqlx::pool::PoolConnectionMetadata,
) -> futures::future::BoxFuture<'_, Result<bool, sea_orm::sqlx::Error>> {
    use sea_orm::sqlx::Connection as _;
    Box::pin(async move {
        // Depth 0 is final: a dropped transaction's rollback is only ever queued while the
        // depth is above 0. This is the case of every statement run outside a transaction, so
        // it costs no round trip to the connection's worker thread.
        if !conn.is_in_transaction() {
            return Ok(true);
        }
        // The rollback of a dropped transaction is queued on the connection's worker; a ping
        // behind it returns once it has run.
        conn.ping().await?;
        let clean = !conn.is_in_transaction();
        if !clean {
            tracing::warn!("a database connection still in a transaction was closed");
        }
        Ok(clean)
    })
}

/// A database failure inside an adapter, already classified as the port's [`StoreError`].
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct DbError(#[from] StoreError);

pub type DbResult<T> = Result<T, DbError>;

impl From<DbErr> for DbError {
    fn from(err: DbErr) -> Self {
        Self(classify(&err))
    }
}

/// `err` as the port's error kind (also what a group commit tells each of its writers).
pub(crate) fn classify(err: &DbErr) -> StoreError {
    let text = err.to_string();
    // SQLite's and PostgreSQL's wording for a unique-constraint violation.
    if text.contains("UNIQUE constraint failed") || text.contains("duplicate key value") {
        StoreError::Conflict
    } else if is_outage(err) {
        StoreError::Unavailable(text)
    } else {
        StoreError::Backend(text)
    }
}

/// Whether `err` is the database being out of reach (connection lost or refused, pool timed
/// out, disk full, shutting down) rather than a fault in the statement or the data: the
/// request fails as a whole and can be retried once the database is back.
fn is_outage(err: &DbErr) -> bool {
    use sea_orm::{RuntimeErr, sqlx};
    let sqlx_error = match err {
        DbErr::ConnectionAcquire(_) => return true,
        DbErr::Conn(RuntimeErr::SqlxError(e))
        | DbErr::Exec(RuntimeErr::SqlxError(e))
        | DbErr::Query(RuntimeErr::SqlxError(e)) => e,
        DbErr::Conn(_) => return true,
        _ => return false,
    };
    match sqlx_error.as_ref() {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => {
            if let Some(pg) = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
                // Classes 08 (connection exception), 53 (insufficient resources: disk full,
                // out of memory, too many connections), 57P (shutdown, crash recovery).
                let code = pg.code();
                code.starts_with("08") || code.starts_with("53") || code.starts_with("57P")
            } else {
                // SQLite's primary result codes: BUSY, LOCKED, NOMEM, IOERR, FULL, CANTOPEN.
                db.code()
                    .and_then(|code| code.parse::<i64>().ok())
                    .is_some_and(|code| matches!(code & 0xff, 5 | 6 | 7 | 10 | 13 | 14))
            }
        }
        _ => false,
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
/// The rows of `query`, each read as a tuple of its columns in order.
pub(crate) async fn tuples<T: TryGetableMany>(
    db: &impl ConnectionTrait,
    query: &SelectStatement,
) -> DbResult<Vec<T>> {
    db.query_all(query)
        .await?
        .iter()
        .map(|row| Ok(row.try_get_many_by_index()?))
        .collect()
}

/// Unix microseconds, rounded down like `canonical_time` rounds, so a row's text time and its
/// number hold the same instant.
pub(crate) fn micros(at: time::OffsetDateTime) -> i64 {
    domain::clock::unix_micros(at)
}

pub(crate) fn from_micros(us: i64) -> Option<time::OffsetDateTime> {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1000).ok()
}

pub(crate) async fn converted<T, E: From<DbError>>(
    body: impl Future<Output = DbResult<T>>,
) -> Result<T, E> {
    body.await.map_err(E::from)
}
