//! What any storage adapter can fail with. A leaf: every port uses it.

/// Failures of a storage adapter. Details stay server-side; callers only branch on the kind.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("a record with the same unique value already exists")]
    Conflict,
    #[error("record not found")]
    NotFound,
    #[error("storage failure: {0}")]
    Backend(String),
    /// The database itself is out of reach: unreachable, timed out, or out of space. Nothing
    /// was written; the same request can succeed once it is back.
    #[error("database unavailable: {0}")]
    Unavailable(String),
}
