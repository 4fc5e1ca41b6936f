//! CryptoPulse's product rules in plain Rust: account types and policies, the hash-chained
//! audit log, envelope encryption of secrets, and the small ports the server implements. No web framework, ORM or runtime here.

pub mod account;
pub mod audit;
pub mod keys;
pub mod ports;
pub mod stepup;
pub mod vault;
