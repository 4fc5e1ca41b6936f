//! CryptoPulse's server: configuration, startup, storage and security adapters, CLI commands.

pub mod cli;
pub mod config;
pub mod exchange;
pub mod kms;
pub mod metrics;
pub mod security;
pub mod startup;
pub mod storage;
pub mod telemetry;
