//! Long audit work (verifying the whole chain, building a PDF report) runs in the background
//! while the page polls its progress. The server runs the jobs on its runtime; this is the port
//! the server functions reach it through.

use std::fmt;

use uuid::Uuid;

use super::{BrokenLog, RequestMeta, VerifiedLog};
use crate::authz::Reviewer;
use crate::ids::UserId;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct JobId(pub Uuid);

impl JobId {
    pub fn new() -> Self {
        Self(Uuid::new_v4())
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Uuid::parse_str(raw.trim()).ok().map(Self)
    }
}

impl Default for JobId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A job as its requester sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobStatus<R> {
    /// Units done so far (events checked, rows laid out).
    pub done: u64,
    /// Units expected (the chain head's seq when the job started, raised to `done` if the chain
    /// grew since): progress bars only.
    pub total: u64,
    pub finished: bool,
    /// Set once finished.
    pub result: Option<R>,
}

impl<R> Default for JobStatus<R> {
    fn default() -> Self {
        Self {
            done: 0,
            total: 0,
            finished: false,
            result: None,
        }
    }
}

impl<R> JobStatus<R> {
    /// Records `done` units. Events appended after a verification read its head are checked
    /// too, so the expected total grows with them rather than showing "12 of 10".
    pub fn advance_to(&mut self, done: u64) {
        self.done = done;
        self.total = self.total.max(done);
    }
}

/// What a chain verification job found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerifyResult {
    /// The chain was read to the end (intact) or to its first break.
    Checked(Result<VerifiedLog, BrokenLog>),
    /// Storage failed part-way (logged on the server); nothing was concluded.
    Failed,
}

/// Runs audit jobs in the background (the server runs them on its runtime).
pub trait AuditJobRunner: Send + Sync + fmt::Debug {
    /// Starts verifying the whole chain (and its latest checkpoint) as `reviewer`; the job
    /// records its `audit.verify` event like the in-page verification does.
    fn start_verify(&self, reviewer: &Reviewer, meta: RequestMeta) -> JobId;
    /// The verification's progress, if `requester` started it (nobody else may see it).
    fn status(&self, requester: UserId, id: JobId) -> Option<JobStatus<VerifyResult>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_past_the_expected_total_raises_the_total() {
        let mut status = JobStatus::<VerifyResult> {
            total: 10,
            ..JobStatus::default()
        };
        status.advance_to(4);
        assert_eq!((status.done, status.total), (4, 10));
        status.advance_to(12);
        assert_eq!((status.done, status.total), (12, 12));
    }
}
