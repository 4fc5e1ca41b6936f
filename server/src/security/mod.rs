//! Authentication adapters and the HTTP security middleware.

pub mod hashing;
pub mod middleware;
pub mod rate_limit;
