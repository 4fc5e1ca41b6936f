//! What stands once no anomaly case holds a trader (`user_trading.settled_state`): the state an
//! administrator last set by hand, or a quarantine a reviewer confirmed. Releasing a trader's
//! last open case returns them to it; before, a release always returned them to `active`, so a
//! reviewer could lift a halt an administrator had set with their security key.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::ConnectionTrait;

#[derive(DeriveMigrationName)]
pub struct Migration;

// NULL: nothing stands, `active`. Existing rows: a restricted trader with no open case is
// restricted by an administrator or a confirmed case, which is what stands; a trader with an
// open case keeps NULL (which restriction the case added cannot be told apart any more).
const SCHEMA: [&str; 2] = [
    "ALTER TABLE user_trading ADD COLUMN settled_state TEXT
        CHECK (settled_state IN ('active', 'reducing', 'halted'))",
    "UPDATE user_trading SET settled_state = state
        WHERE state <> 'active'
          AND NOT EXISTS (SELECT 1 FROM anomaly_cases
                          WHERE anomaly_cases.subject = user_trading.user_id
                            AND anomaly_cases.status = 'open')",
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
