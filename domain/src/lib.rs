//! CryptoPulse's product rules in plain Rust: the order's vocabulary, accounts and their
//! proofs of authority, the hash-chained audit log, envelope encryption of secrets, the key
//! vault, step-up, risk screening and trading, and the small ports the server implements. No web
//! framework, ORM or runtime here. `order`, `risk` and `audit_action` build without the `full`
//! feature, for the browser. The repository's ARCHITECTURE.md maps the modules.

#[cfg(feature = "full")]
pub mod account;
#[cfg(feature = "full")]
pub mod alerts;
#[cfg(feature = "full")]
pub mod audit;
pub mod audit_action;
#[cfg(feature = "full")]
pub mod authz;
#[cfg(feature = "full")]
pub mod clock;
#[cfg(feature = "full")]
pub mod exchange;
#[cfg(feature = "full")]
pub mod ids;
#[cfg(feature = "full")]
pub mod keys;
pub mod order;
#[cfg(feature = "full")]
pub mod ports;
pub mod risk;
#[cfg(feature = "full")]
pub mod stepup;
#[cfg(feature = "full")]
pub mod store_error;
pub mod text;
#[cfg(feature = "full")]
pub mod trading;
#[cfg(feature = "full")]
pub mod vault;
