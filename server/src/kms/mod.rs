//! KMS adapters: the file-backed local KMS (default) and AWS KMS, the data-key cache in front
//! of either, and a fault-injecting wrapper for tests.

pub mod aws;
pub mod cache;
pub mod faulty;
pub mod local;

pub use aws::{AwsKms, AwsKmsSettings};
pub use cache::{CacheStats, CachingKms};
pub use faulty::{FaultMode, FaultyKms};
pub use local::{FileKms, FileKmsError};
