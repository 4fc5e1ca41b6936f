//! When an order starts to count against its owner's daily limit and the total that may go out
//! without an approval, in unix microseconds: when it is placed, or, for a held order, when its
//! re-check before sending passes. Counted by the day it was placed, a held order sent after
//! midnight left the next day's limit untouched, so it and a full day of new orders both went
//! out.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::ConnectionTrait;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        // SQLite adds a NOT NULL column only with a default; every row gets its own value
        // below, and the app always writes one.
        db.execute_unprepared(
            "ALTER TABLE orders ADD COLUMN counted_at_us BIGINT NOT NULL DEFAULT 0",
        )
        .await?;
        db.execute_unprepared("UPDATE orders SET counted_at_us = created_at_us")
            .await?;
        // Screening reads a trader's orders counted since the earliest of its windows.
        db.execute_unprepared("CREATE INDEX orders_owner_counted ON orders (owner, counted_at_us)")
            .await?;
        Ok(())
    }
}
