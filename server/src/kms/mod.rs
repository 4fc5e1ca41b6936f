//! KMS adapters: the file-backed local KMS (default) and AWS KMS, plus a fault-injecting
//! wrapper for tests.

pub mod aws;
pub mod faulty;
pub mod local;

pub use aws::{AwsKms, AwsKmsSettings};
pub use faulty::{FaultMode, FaultyKms};
pub use local::{FileKms, FileKmsError};
