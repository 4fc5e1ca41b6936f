//! The paper account's snapshot (`paper_books`): the replay of a trader's paper fills up to one
//! of them, so that reading the account replays only the fills recorded since, not every fill
//! on every order. Fills stay the record; a missing or older snapshot only means a longer
//! replay.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::ConnectionTrait;

#[derive(DeriveMigrationName)]
pub struct Migration;

// `through_fill_id`: the last fill (by id, the order fills are recorded in) the book includes.
// `(owner, id)` lets the fills after it be found without reading the earlier ones.
const SCHEMA: [&str; 2] = [
    "CREATE TABLE IF NOT EXISTS paper_books (
        owner           TEXT PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
        through_fill_id BIGINT NOT NULL,
        book            TEXT NOT NULL,
        updated_at      TEXT NOT NULL
    )",
    "CREATE INDEX IF NOT EXISTS fills_owner_id ON fills (owner, id)",
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
