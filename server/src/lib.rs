//! CryptoPulse's server: configuration, startup, storage and security adapters, CLI commands.

pub mod cli;
pub mod config;
pub mod security;
pub mod startup;
pub mod storage;
pub mod telemetry;
