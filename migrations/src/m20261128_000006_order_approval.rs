//! Orders remember whether they needed their owner's order-bound step-up approval and whether
//! they have it (`approval_state`): a hold never replaces the approval, an order awaiting it is
//! never sent, and an order without it never makes an IP or device familiar.
//!
//! An order a reviewer released while it still awaits its owner's approval is `held` with no
//! `hold_kind` (the column's CHECK predates that kind, and SQLite cannot change a CHECK in
//! place): the store reads that as "held for the owner's approval".

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::ConnectionTrait;

#[derive(DeriveMigrationName)]
pub struct Migration;

// Orders placed before this migration did not record it; they read as `not_needed`.
const SCHEMA: [&str; 1] = [
    "ALTER TABLE orders ADD COLUMN approval_state TEXT NOT NULL DEFAULT 'not_needed' \
     CHECK (approval_state IN ('not_needed', 'awaiting', 'approved'))",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for statement in SCHEMA {
            db.execute_unprepared(statement).await?;
        }
        Ok(())
    }
}
