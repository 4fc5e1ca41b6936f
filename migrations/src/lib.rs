//! CryptoPulse's database schema, for SQLite (the embedded default) and PostgreSQL.

pub use sea_orm_migration::prelude::*;

mod m20261123_000001_foundation;
mod m20261123_000002_key_vault;
mod m20261123_000003_step_up;
mod m20261123_000004_trading;
mod m20261128_000006_order_approval;
mod m20261128_000007_totp_attempts;
mod m20261128_000008_agent_token_expiry;
mod m20261128_000009_audit_reports;
mod m20261128_000010_audit_indexes;
mod m20261129_000011_paper_books;
mod m20261130_000012_settled_state;
mod m20261201_000013_live_orders;
mod m20261202_000014_trusted_devices;
mod m20261202_000015_role_requests;
mod m20261203_000016_cancel_requests;
mod m20261203_000017_recorded_head;
mod m20261204_000018_sessions_revoked_at;
mod m20261205_000019_head_signature;
mod m20261206_000020_order_counted_at;
mod m20261207_000021_login_backoff;
mod m20261207_000022_audit_seq_from_one;
mod m20261208_000023_key_challenge;

#[derive(Debug)]
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261123_000001_foundation::Migration),
            Box::new(m20261123_000002_key_vault::Migration),
            Box::new(m20261123_000003_step_up::Migration),
            Box::new(m20261123_000004_trading::Migration),
            Box::new(m20261128_000008_agent_token_expiry::Migration),
            Box::new(m20261128_000007_totp_attempts::Migration),
            Box::new(m20261128_000006_order_approval::Migration),
            Box::new(m20261128_000009_audit_reports::Migration),
            Box::new(m20261128_000010_audit_indexes::Migration),
            Box::new(m20261129_000011_paper_books::Migration),
            Box::new(m20261130_000012_settled_state::Migration),
            Box::new(m20261201_000013_live_orders::Migration),
            Box::new(m20261202_000014_trusted_devices::Migration),
            Box::new(m20261202_000015_role_requests::Migration),
            Box::new(m20261203_000016_cancel_requests::Migration),
            Box::new(m20261203_000017_recorded_head::Migration),
            Box::new(m20261204_000018_sessions_revoked_at::Migration),
            Box::new(m20261205_000019_head_signature::Migration),
            Box::new(m20261206_000020_order_counted_at::Migration),
            Box::new(m20261207_000021_login_backoff::Migration),
            Box::new(m20261207_000022_audit_seq_from_one::Migration),
            Box::new(m20261208_000023_key_challenge::Migration),
        ]
    }
}
