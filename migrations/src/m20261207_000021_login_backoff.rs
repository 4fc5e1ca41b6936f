//! Login back-off counts move from each app server's memory to the database: with several
//! servers each counted its own failures (so guesses went N times as fast), and a restart
//! forgot them all. Rows are keyed by a SHA-256 of the throttle key (account, address or
//! remembered browser), so no email address is stored.

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
        // Failures and the latest failure; attempts under way are each server's own
        // (server/src/storage/login_backoff.rs says why). `claimed_us`: when an attempt past
        // the free failures last claimed its turn, kept apart from `last_us` so that a claim
        // never keeps a count from being forgotten.
        db.execute_unprepared(
            "CREATE TABLE login_backoff (
                key_hash TEXT NOT NULL PRIMARY KEY,
                failures BIGINT NOT NULL,
                last_us BIGINT NOT NULL,
                claimed_us BIGINT NOT NULL
            )",
        )
        .await?;
        // Housekeeping deletes the counts quiet for a day.
        db.execute_unprepared("CREATE INDEX login_backoff_last ON login_backoff (last_us)")
            .await?;
        Ok(())
    }
}
