//! A trader's placements, one at a time across app servers sharing one PostgreSQL database:
//! a transaction-scoped advisory lock, held on a connection of a small pool of its own so that
//! waiting for it never takes a connection the lock holder needs to finish.

use std::time::Duration;

use async_trait::async_trait;
use domain::account::UserId;
use domain::ports::StoreError;
use domain::trading::{TraderLockGuard, TraderLocks};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, DbErr, Statement,
    TransactionTrait,
};

/// The advisory lock space of placements (the first of the two keys): "CPPL".
const PLACEMENT_LOCK_SPACE: i32 = 0x4350_504C;
/// A server waiting longer than this for another's placement gives up (the trader is told to
/// try again); a placement holds the lock for milliseconds.
const LOCK_WAIT: &str = "5s";

#[derive(Debug, Clone)]
pub struct PgTraderLocks {
    pool: DatabaseConnection,
}

impl PgTraderLocks {
    /// A pool of up to `connections` for the locks, on the database at `url` (PostgreSQL).
    pub async fn connect(url: &str, connections: u32) -> Result<Self, DbErr> {
        let mut options = ConnectOptions::new(url.to_owned());
        options
            .max_connections(connections)
            .min_connections(0)
            .connect_timeout(Duration::from_secs(10))
            .acquire_timeout(Duration::from_secs(5))
            .sqlx_logging(false);
        let pool = Database::connect(options).await?;
        if pool.get_database_backend() != DbBackend::Postgres {
            return Err(DbErr::Custom(
                "trader locks across servers need PostgreSQL".into(),
            ));
        }
        Ok(Self { pool })
    }
}

/// The second key: the trader's id folded to 32 bits (a collision only makes two traders wait
/// for each other).
fn trader_key(trader: UserId) -> i32 {
    let bytes = trader.0.as_bytes();
    let mut folded = [0u8; 4];
    for (i, byte) in bytes.iter().enumerate() {
        folded[i % 4] ^= byte;
    }
    i32::from_be_bytes(folded)
}

#[async_trait]
impl TraderLocks for PgTraderLocks {
    async fn lock(&self, trader: UserId) -> Result<TraderLockGuard, StoreError> {
        let unavailable =
            |e: DbErr| StoreError::Unavailable(format!("the placement lock was not taken: {e}"));
        let txn = self.pool.begin().await.map_err(unavailable)?;
        txn.execute_unprepared(&format!("SET LOCAL lock_timeout = '{LOCK_WAIT}'"))
            .await
            .map_err(unavailable)?;
        txn.execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT pg_advisory_xact_lock($1, $2)",
            [PLACEMENT_LOCK_SPACE.into(), trader_key(trader).into()],
        ))
        .await
        .map_err(unavailable)?;
        // Dropping the transaction rolls it back, which releases the lock (the pool sends the
        // ROLLBACK as the connection comes back).
        Ok(TraderLockGuard::new(txn))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_byte_of_the_id_moves_the_key() {
        let id = uuid::Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);
        let key = trader_key(UserId(id));
        for byte in 0..16 {
            let mut other = *id.as_bytes();
            other[byte] ^= 0x01;
            assert_ne!(trader_key(UserId(uuid::Uuid::from_bytes(other))), key);
        }
    }
}
