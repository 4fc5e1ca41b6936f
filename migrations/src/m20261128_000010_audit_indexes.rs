//! Indexes for the auditor's filters and report queries (period, actor, request id, resource;
//! `action` has had one since the foundation).

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::ConnectionTrait;

#[derive(DeriveMigrationName)]
pub struct Migration;

// The actor filter matches the id alone (kind is implied by it), which the foundation's
// (actor_kind, actor_id) index cannot serve.
const SCHEMA: [&str; 4] = [
    "CREATE INDEX IF NOT EXISTS audit_events_occurred_at ON audit_events (occurred_at)",
    "CREATE INDEX IF NOT EXISTS audit_events_actor_id ON audit_events (actor_id)",
    "CREATE INDEX IF NOT EXISTS audit_events_request_id ON audit_events (request_id)",
    "CREATE INDEX IF NOT EXISTS audit_events_resource ON audit_events (resource)",
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
