//! CryptoPulse's server: configuration, startup, storage and security adapters, CLI commands.

pub mod agent_api;
pub mod assets;
pub mod cli;
pub mod config;
pub mod exchange;
pub mod jobs;
pub mod kms;
pub mod metrics;
pub mod notify;
pub mod reports;
pub mod security;
pub mod startup;
pub mod storage;
pub mod telemetry;
pub mod visitor_pages;
