//! Black-box tests of the HTTP API through `spawn_app()` (port 0, fresh database).
//! With `CRYPTOPULSE_TEST_PG_URL` set, every test runs against a fresh PostgreSQL database.

mod admin_controls;
mod agent;
mod approvals;
mod assets;
mod audit;
mod audit_view;
mod auth;
mod binance;
mod checkpoints;
mod group_commit;
mod helpers;
mod keys;
mod kms;
mod login_backoff;
mod overview;
mod platform_controls;
mod report_fixtures;
mod report_verify;
mod reports;
mod screening;
mod security;
mod sessions;
mod shutdown;
mod stepup;
mod stepup_controls;
mod stepup_store;
mod trading;
mod trading_store;
mod upgrades;
mod visitor_pages;
