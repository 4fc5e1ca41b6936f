//! The chain head of record: every batch that appends events moves `audit_chain_lock`'s
//! `head_seq`/`head_hash` in its own commit. The next event chains onto that head, not onto the
//! newest row, so events cut from the end (by someone who can write the database) leave a gap
//! that verification finds, instead of being sealed over by the next append.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::ConnectionTrait;

#[derive(DeriveMigrationName)]
pub struct Migration;

const SCHEMA: [&str; 3] = [
    "ALTER TABLE audit_chain_lock ADD COLUMN head_seq BIGINT NOT NULL DEFAULT 0",
    "ALTER TABLE audit_chain_lock ADD COLUMN head_hash TEXT",
    // The chain as it stands when this runs is the record to start from.
    "UPDATE audit_chain_lock SET \
       head_seq = COALESCE((SELECT MAX(seq) FROM audit_events), 0), \
       head_hash = (SELECT hash FROM audit_events ORDER BY seq DESC LIMIT 1) \
     WHERE id = 1",
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
