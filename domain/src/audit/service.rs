//! The audit use cases: reviewers read the newest events and verify the chain; the operator's
//! console verifies it against a head recorded earlier.

use std::sync::Arc;

use super::{
    Actor, AuditDraft, AuditEvent, AuditLog, BrokenLog, ChainHead, Outcome, RequestMeta,
    VerifiedLog, check_anchor, verify_log,
};
use crate::account::{AccountStore, Email};
use crate::audit_action::AuditAction;
use crate::authz::Reviewer;
use crate::ids::UserId;
use crate::store_error::StoreError;

/// An event as reviewers read it: with the acting user's current email (for reading, not
/// evidence: the chain records the id).
#[derive(Debug, Clone, PartialEq)]
pub struct ReviewedEvent {
    pub event: AuditEvent,
    pub actor_email: Option<Email>,
}

#[derive(Debug, Clone)]
pub struct AuditService {
    log: Arc<dyn AuditLog>,
    accounts: Arc<dyn AccountStore>,
}

impl AuditService {
    /// The most events one page of the log shows.
    pub const MAX_RECENT: u64 = 200;

    pub fn new(log: Arc<dyn AuditLog>, accounts: Arc<dyn AccountStore>) -> Self {
        Self { log, accounts }
    }

    /// The newest events, newest first: at least one, at most [`Self::MAX_RECENT`].
    pub async fn recent(
        &self,
        _reviewer: &Reviewer,
        limit: u64,
    ) -> Result<Vec<ReviewedEvent>, StoreError> {
        let events = self.log.recent(limit.clamp(1, Self::MAX_RECENT)).await?;
        // Name only the users who appear on this page.
        let mut ids: Vec<UserId> = events.iter().filter_map(|e| e.actor.user_id()).collect();
        ids.sort();
        ids.dedup();
        let emails = self.accounts.emails(&ids).await?;
        Ok(events
            .into_iter()
            .map(|event| {
                let actor_email = event
                    .actor
                    .user_id()
                    .and_then(|id| emails.get(&id).cloned());
                ReviewedEvent { event, actor_email }
            })
            .collect())
    }

    /// Verifies the whole chain and records that the reviewer did (and what they found).
    pub async fn verify(
        &self,
        reviewer: &Reviewer,
        meta: RequestMeta,
    ) -> Result<Result<VerifiedLog, BrokenLog>, StoreError> {
        let outcome = verify_log(self.log.as_ref(), |_| {}).await?;
        let (checked, head, broken_at, result) = match &outcome {
            Ok(verified) => (verified.checked, verified.head, None, Outcome::Success),
            Err(broken) => (
                broken.checked,
                broken.last_good,
                Some(broken.error.seq),
                Outcome::Failure,
            ),
        };
        self.log
            .record(
                AuditDraft::new(
                    Actor::user(reviewer.id()),
                    AuditAction::AuditVerify,
                    result,
                    meta,
                )
                .detail("events_checked", checked)
                .detail("head_seq", head.seq)
                .detail("broken_at", broken_at),
            )
            .await?;
        Ok(outcome)
    }

    /// The operator's check at the server's console: the whole chain, then (if given) that it
    /// still holds `anchor`, a head recorded earlier, which catches events cut from the end.
    /// `progress` is told how many events were checked after each batch.
    pub async fn verify_as_operator(
        &self,
        anchor: Option<ChainHead>,
        progress: impl FnMut(u64) + Send,
    ) -> Result<Result<VerifiedLog, BrokenLog>, StoreError> {
        let outcome = verify_log(self.log.as_ref(), progress).await?;
        Ok(match (outcome, anchor) {
            (Ok(verified), Some(anchor)) => match check_anchor(self.log.as_ref(), anchor).await? {
                Ok(()) => Ok(verified),
                Err(error) => Err(BrokenLog {
                    checked: verified.checked,
                    last_good: verified.head,
                    error,
                }),
            },
            (outcome, _) => outcome,
        })
    }
}
