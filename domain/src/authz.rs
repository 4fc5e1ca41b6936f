//! Proofs of authority. An admin or reviewer use case takes one of these instead of a bare
//! `UserId`, so every inbound adapter (server functions, the agent API, the CLI) has to get the
//! role (and, for admins, the security-key window) checked by the account or step-up service
//! first: nothing outside this crate can build one.

use crate::ids::UserId;

/// A signed-in reviewer or admin, checked by `AccountService::reviewer`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reviewer(UserId);

/// A signed-in admin by role alone, checked by `AccountService::admin_reader`: enough to read
/// what admin pages list (users, the KMS status, how many alerts are open), never to change
/// anything or to see decoys and alerts themselves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdminReader(UserId);

/// An admin whose privilege window was opened with a user-verified security key, checked by
/// `StepUpService::admin`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admin(UserId);

impl Reviewer {
    pub(crate) fn new(user: UserId) -> Self {
        Self(user)
    }

    pub fn id(&self) -> UserId {
        self.0
    }
}

impl AdminReader {
    pub(crate) fn new(user: UserId) -> Self {
        Self(user)
    }

    pub fn id(&self) -> UserId {
        self.0
    }
}

impl Admin {
    pub(crate) fn new(user: UserId) -> Self {
        Self(user)
    }

    pub fn id(&self) -> UserId {
        self.0
    }

    /// Admins may do what reviewers do.
    pub fn as_reviewer(&self) -> Reviewer {
        Reviewer(self.0)
    }

    /// An admin with an open window may read what any admin may.
    pub fn as_reader(&self) -> AdminReader {
        AdminReader(self.0)
    }
}
