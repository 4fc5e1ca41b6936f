//! A held order whose send went unanswered and that was then cancelled may be at its exchange:
//! it stays `held` (kind `exchange`) with `cancel_requested` set until the exchange has been
//! asked and, if it has the order, has cancelled it. The retry job never sends such an order.
//! (A new column rather than a new `hold_kind`: that column's CHECK cannot be changed in place
//! on SQLite.)

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::ConnectionTrait;

#[derive(DeriveMigrationName)]
pub struct Migration;

const SCHEMA: &str =
    "ALTER TABLE orders ADD COLUMN cancel_requested BOOLEAN NOT NULL DEFAULT FALSE";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.get_connection().execute_unprepared(SCHEMA).await?;
        Ok(())
    }
}
