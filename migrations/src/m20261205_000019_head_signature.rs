//! The head of record's signature: every batch that appends events signs the (seq, hash) it
//! moves `audit_chain_lock` to with the server's report key (sealed by the KMS, never in the
//! database in clear). Someone who can write the database can compute event hashes, so without
//! it they could add events after the newest one, or move the record, and the chain would
//! still verify; with it, rows past the record, or a record the server did not sign, are found.
//!
//! A record written before this (NULL) is signed once at the next start, if the newest row is
//! the one it names; that is audited (`audit.head_signed`).

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
        manager
            .get_connection()
            .execute_unprepared("ALTER TABLE audit_chain_lock ADD COLUMN head_signature TEXT")
            .await?;
        Ok(())
    }
}
