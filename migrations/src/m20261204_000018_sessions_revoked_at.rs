//! When a user's sessions were last ended all at once ("sign out everywhere", a password
//! change), in unix seconds. A session copied under a new id (a step-up cycles the id) by a
//! request that overlapped that moment must not come back: it is created only if its sign-in
//! is not older. Also an index to find the proposal an order was placed for.

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
        db.execute_unprepared("ALTER TABLE users ADD COLUMN sessions_revoked_at BIGINT")
            .await?;
        // A held order an agent placed is checked against its proposal before it is sent.
        db.execute_unprepared("CREATE INDEX proposals_order_id ON proposals (order_id)")
            .await?;
        Ok(())
    }
}
