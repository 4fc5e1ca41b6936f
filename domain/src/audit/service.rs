//! The audit use cases: reviewers read the newest events and verify the chain; the server
//! signs checkpoints of the head; the operator's console verifies the chain against the latest
//! checkpoint (and, if given, a head recorded by hand).

use std::sync::Arc;

use super::checkpoints::{
    CheckpointError, CheckpointJournal, CheckpointStore, CheckpointTrigger, CheckpointView,
    JournalCheck, StoredCheckpoint,
};
use super::signing::{ReportKey, ReportPublicKey, SignedCheckpoint};
use super::{
    Actor, AuditDraft, AuditEvent, AuditLog, BreakKind, BrokenLog, ChainBreak, ChainHead,
    ChainVerifier, Outcome, RecordedHead, RequestMeta, SCAN_PAGE, VerifiedLog, check_anchor,
    verify_log_seeing,
};
use crate::account::{AccountStore, Email};
use crate::audit_action::AuditAction;
use crate::authz::Reviewer;
use crate::clock::Clock;
use crate::ids::UserId;
use crate::store_error::StoreError;

/// An event as reviewers read it: with the acting user's current email (for reading, not
/// evidence: the chain records the id).
#[derive(Debug, Clone, PartialEq)]
pub struct ReviewedEvent {
    pub event: AuditEvent,
    pub actor_email: Option<Email>,
}

/// What the audit service is built from.
#[derive(Debug)]
pub struct AuditPorts {
    pub log: Arc<dyn AuditLog>,
    pub accounts: Arc<dyn AccountStore>,
    pub checkpoints: Arc<dyn CheckpointStore>,
    pub journal: Arc<dyn CheckpointJournal>,
    pub clock: Arc<dyn Clock>,
    /// The server's report key, opened through the KMS at startup.
    pub report_key: ReportKey,
}

#[derive(Debug, Clone)]
pub struct AuditService {
    pub(super) log: Arc<dyn AuditLog>,
    pub(super) accounts: Arc<dyn AccountStore>,
    pub(super) clock: Arc<dyn Clock>,
    checkpoints: Arc<dyn CheckpointStore>,
    journal: Arc<dyn CheckpointJournal>,
    report_key: Arc<ReportKey>,
    public_key: ReportPublicKey,
}

/// The actor id of the periodic checkpoint job.
const CHECKPOINT_JOB: &str = "checkpoints";

impl AuditService {
    /// The most events one page of the log shows.
    pub const MAX_RECENT: u64 = 200;
    /// The most checkpoints one listing shows.
    pub const MAX_CHECKPOINTS: u64 = 200;

    pub fn new(ports: AuditPorts) -> Self {
        Self {
            log: ports.log,
            accounts: ports.accounts,
            clock: ports.clock,
            checkpoints: ports.checkpoints,
            journal: ports.journal,
            public_key: ports.report_key.public_key(),
            report_key: Arc::new(ports.report_key),
        }
    }

    /// The public half of the key that signs reports and checkpoints.
    pub fn report_public_key(&self) -> ReportPublicKey {
        self.public_key.clone()
    }

    /// The key itself, for signing report manifests inside the domain.
    pub(crate) fn report_key(&self) -> &ReportKey {
        &self.report_key
    }

    /// The chain head now (for progress bars: the number of events a verification reads).
    pub async fn chain_head(&self) -> Result<ChainHead, StoreError> {
        self.log.head().await
    }

    /// The newest events, newest first: at least one, at most [`Self::MAX_RECENT`].
    pub async fn recent(
        &self,
        _reviewer: &Reviewer,
        limit: u64,
    ) -> Result<Vec<ReviewedEvent>, StoreError> {
        let events = self.log.recent(limit.clamp(1, Self::MAX_RECENT)).await?;
        self.with_emails(events).await
    }

    /// Names the users on a page, in one query (their current email: for reading, not
    /// evidence: the chain records the id).
    pub(super) async fn with_emails(
        &self,
        events: Vec<AuditEvent>,
    ) -> Result<Vec<ReviewedEvent>, StoreError> {
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

    /// Verifies the whole chain and its latest checkpoint, and records that the reviewer did
    /// (and what they found). `progress` is told how many events were checked after each batch.
    pub async fn verify(
        &self,
        reviewer: &Reviewer,
        meta: RequestMeta,
        progress: impl FnMut(u64) + Send,
    ) -> Result<Result<VerifiedLog, BrokenLog>, StoreError> {
        let outcome = self.check_chain(None, progress).await?;
        let (checked, head, broken_at, checkpoint, result) = match &outcome {
            Ok(verified) => (
                verified.checked,
                verified.head,
                None,
                verified.checkpoint.as_ref(),
                Outcome::Success,
            ),
            Err(broken) => (
                broken.checked,
                broken.last_good,
                Some(broken.error.seq),
                broken.checkpoint.as_ref(),
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
                .detail("broken_at", broken_at)
                .detail("checkpoint_seq", checkpoint.map(|c| c.seq)),
            )
            .await?;
        Ok(outcome)
    }

    /// The operator's check at the server's console: the whole chain, then that it still holds
    /// `anchor` (a head recorded by hand, if given) and the latest signed checkpoint, which
    /// catch events cut from the end or rewritten after the checkpoint.
    pub async fn verify_as_operator(
        &self,
        anchor: Option<ChainHead>,
        progress: impl FnMut(u64) + Send,
    ) -> Result<Result<VerifiedLog, BrokenLog>, StoreError> {
        self.check_chain(anchor, progress).await
    }

    /// The whole chain, then the heads it must still hold: `anchor`, the latest signed
    /// checkpoints, and the head of record.
    pub(crate) async fn check_chain(
        &self,
        anchor: Option<ChainHead>,
        progress: impl FnMut(u64) + Send,
    ) -> Result<Result<VerifiedLog, BrokenLog>, StoreError> {
        self.check_chain_seeing(anchor, progress, |_| {}).await
    }

    /// As [`AuditService::check_chain`], showing `seen` each event of the chain once it has
    /// verified.
    pub(crate) async fn check_chain_seeing(
        &self,
        anchor: Option<ChainHead>,
        progress: impl FnMut(u64) + Send,
        seen: impl FnMut(&AuditEvent) + Send,
    ) -> Result<Result<VerifiedLog, BrokenLog>, StoreError> {
        let verified = match verify_log_seeing(self.log.as_ref(), progress, seen).await? {
            Ok(verified) => verified,
            Err(broken) => return Ok(Err(broken)),
        };
        // Read after the scan: it moves only forward, in the commit that writes the rows it
        // names, so every row the scan read is at or before it.
        let recorded = self.log.recorded_head().await?;
        let broken = |error: ChainBreak, checkpoint: Option<SignedCheckpoint>| BrokenLog {
            checked: verified.checked,
            last_good: verified.head,
            error,
            checkpoint,
        };
        if let Some(anchor) = anchor
            && let Err(error) = check_anchor(self.log.as_ref(), anchor).await?
        {
            return Ok(Err(broken(error, None)));
        }
        let (stored, journal) = self.checkpoint_candidates().await?;
        // A forged or altered row in the table is a finding in itself: only the report key
        // (sealed by the KMS, never in the database in clear) makes signatures that verify.
        // So is a line of the journal that does not verify: besides a forgery, that is what
        // deleting the report key leaves behind, once a new key has been made to sign a
        // rewritten chain.
        let unverified = stored
            .as_ref()
            .map(|s| &s.checkpoint)
            .filter(|c| !c.verify(Some(&self.public_key)))
            .or(journal.unverified.as_ref());
        if let Some(checkpoint) = unverified {
            let error = ChainBreak {
                seq: checkpoint.seq,
                kind: BreakKind::BadCheckpoint,
            };
            return Ok(Err(broken(error, Some(checkpoint.clone()))));
        }
        let journalled = journal.latest;
        // Both copies are checked: rows deleted from the table leave the file's newer one.
        let mut anchors: Vec<SignedCheckpoint> = stored
            .map(|s| s.checkpoint)
            .into_iter()
            .chain(journalled)
            .collect();
        anchors.sort_by_key(|c| std::cmp::Reverse(c.seq));
        anchors.dedup();
        for checkpoint in &anchors {
            let Some(head) = checkpoint.head() else {
                let error = ChainBreak {
                    seq: checkpoint.seq,
                    kind: BreakKind::BadCheckpoint,
                };
                return Ok(Err(broken(error, Some(checkpoint.clone()))));
            };
            if let Err(error) = check_anchor(self.log.as_ref(), head).await? {
                return Ok(Err(broken(error, Some(checkpoint.clone()))));
            }
        }
        if let Some(recorded) = &recorded {
            // The record only moves forward, and every checkpoint is of a head it reached: one
            // behind the latest checkpoint is an old signed record put back (its signature
            // still verifies), which would let events since be cut or rewritten.
            if let Some(latest) = anchors.first()
                && recorded.head.seq < latest.seq
            {
                let error = ChainBreak {
                    seq: recorded.head.seq,
                    kind: BreakKind::StaleRecord,
                };
                return Ok(Err(broken(error, Some(latest.clone()))));
            }
            if let Err(error) = self.check_record(recorded, verified.head).await? {
                return Ok(Err(broken(error, None)));
            }
        }
        Ok(Ok(VerifiedLog {
            checkpoint: anchors.into_iter().next(),
            ..verified
        }))
    }

    /// The head of record against the chain scanned up to `scanned`: signed by this server,
    /// still there (events cut from the end since the latest checkpoint, or rewritten, leave it
    /// pointing at a row that is gone or different), and nothing past it (only the server moves
    /// it, and signs it when it does). In that order: `PastRecord` is the one finding an
    /// operator may resolve by adopting the newest event (`audit sign-head`), so it is reported
    /// only when everything up to the record is as the server left it.
    async fn check_record(
        &self,
        recorded: &RecordedHead,
        scanned: ChainHead,
    ) -> Result<Result<(), ChainBreak>, StoreError> {
        if recorded.head.seq > 0 {
            if !self
                .public_key
                .verifies_head(recorded.head, recorded.signature.as_deref())
            {
                return Ok(Err(ChainBreak {
                    seq: recorded.head.seq,
                    kind: if recorded.signature.is_some() {
                        BreakKind::ForgedRecord
                    } else {
                        BreakKind::UnsignedRecord
                    },
                }));
            }
            if let Err(error) = check_anchor(self.log.as_ref(), recorded.head).await? {
                return Ok(Err(error));
            }
        } else if scanned.seq > 0 {
            // Every append records a head (and migration 17 recorded the newest row), so an
            // empty record over events was cleared: nothing past it is vouched for.
            return Ok(Err(ChainBreak {
                seq: 1,
                kind: BreakKind::ClearedRecord,
            }));
        }
        if scanned.seq > recorded.head.seq {
            return Ok(Err(ChainBreak {
                seq: recorded.head.seq + 1,
                kind: BreakKind::PastRecord,
            }));
        }
        Ok(Ok(()))
    }

    /// The table's newest checkpoint (signature unchecked) and the journal's, judged.
    async fn checkpoint_candidates(
        &self,
    ) -> Result<(Option<StoredCheckpoint>, JournalCheck), StoreError> {
        let stored = self.checkpoints.latest().await?;
        let journal = self.journal.check(&self.public_key).await?;
        Ok((stored, journal))
    }

    /// The newest checkpoint whose signature verifies, from the table or the journal file.
    pub async fn latest_checkpoint(&self) -> Result<Option<SignedCheckpoint>, StoreError> {
        let (stored, journal) = self.checkpoint_candidates().await?;
        let stored = stored
            .map(|s| s.checkpoint)
            .filter(|c| c.verify(Some(&self.public_key)));
        Ok(stored
            .into_iter()
            .chain(journal.latest)
            .max_by_key(|c| c.seq))
    }

    /// The newest checkpoints in the table, each flagged whether its signature verifies.
    pub async fn checkpoints(
        &self,
        _reviewer: &Reviewer,
        limit: u64,
    ) -> Result<Vec<CheckpointView>, StoreError> {
        let stored = self
            .checkpoints
            .list(limit.clamp(1, Self::MAX_CHECKPOINTS))
            .await?;
        Ok(stored
            .into_iter()
            .map(|s| CheckpointView {
                valid: s.checkpoint.verify(Some(&self.public_key)),
                checkpoint: s.checkpoint,
                trigger: s.trigger,
            })
            .collect())
    }

    /// Signs the current head now, at a reviewer's request (audited as `audit.checkpoint`).
    pub async fn sign_checkpoint(
        &self,
        reviewer: &Reviewer,
        meta: RequestMeta,
    ) -> Result<SignedCheckpoint, CheckpointError> {
        self.checkpoint(CheckpointTrigger::Manual, Actor::user(reviewer.id()), meta)
            .await
    }

    /// The periodic job: signs the head if the chain moved since the latest checkpoint.
    ///
    /// Every checkpoint is itself audited (`audit.checkpoint`, appended right after the head it
    /// signs), which moves the head. So that the job terminates, "moved" ignores events that
    /// only record checkpoints: after a quiet period the job signs once, records that, and then
    /// finds nothing new. A checkpoint event is still covered by the next checkpoint signed
    /// after any other event.
    pub async fn checkpoint_if_moved(&self) -> Result<Option<SignedCheckpoint>, CheckpointError> {
        let since = self.latest_checkpoint().await?.map_or(0, |c| c.seq);
        if !self.moved_since(since).await? {
            return Ok(None);
        }
        self.checkpoint(
            CheckpointTrigger::Schedule,
            Actor::system(CHECKPOINT_JOB),
            RequestMeta::default(),
        )
        .await
        .map(Some)
    }

    /// Whether an event other than a checkpoint's record follows `seq`.
    async fn moved_since(&self, seq: i64) -> Result<bool, StoreError> {
        let mut after = seq;
        loop {
            let page = self.log.page(after, SCAN_PAGE).await?;
            let Some(last) = page.last() else {
                return Ok(false);
            };
            if page
                .iter()
                .any(|e| e.action != AuditAction::AuditCheckpoint)
            {
                return Ok(true);
            }
            after = last.seq;
        }
    }

    /// Signs the head, stores the checkpoint with its audit event, then appends it to the
    /// journal file (after the commit, so the file never names a checkpoint the database
    /// rolled back).
    ///
    /// The head signed is one this call verified as extending the latest checkpoint: the
    /// events after it are read and linked from its hash. A chain cut or rewritten since is
    /// never signed over (that would bless the tampering); the call fails and `audit verify`
    /// names the break. This reads only the events since the last checkpoint, not the chain.
    async fn checkpoint(
        &self,
        trigger: CheckpointTrigger,
        actor: Actor,
        meta: RequestMeta,
    ) -> Result<SignedCheckpoint, CheckpointError> {
        let head = self.verified_head().await?;
        if head.seq == 0 {
            // Nothing to sign: an empty chain has no event a checkpoint could anchor.
            return Err(CheckpointError::EmptyChain);
        }
        let checkpoint = SignedCheckpoint::sign(head, self.clock.now(), &self.report_key);
        let draft = AuditDraft::new(actor, AuditAction::AuditCheckpoint, Outcome::Success, meta)
            .resource(format!("checkpoint:{}", checkpoint.seq))
            .detail("seq", checkpoint.seq)
            .detail("hash", checkpoint.hash.clone())
            .detail("signed_at", checkpoint.signed_at.clone())
            .detail("trigger", trigger.as_str())
            .detail("signature", checkpoint.signature.clone());
        self.checkpoints.save(&checkpoint, trigger, draft).await?;
        self.journal.append(&checkpoint).await?;
        Ok(checkpoint)
    }

    /// Signs `head`, the newest one this server committed (as it knows it, not read from the
    /// database), into the journal file as it stops. Events cut from the chain and an older
    /// signed head of record put back while the server is stopped then miss a journalled
    /// checkpoint, which `audit verify` reports. No audit event: the chain is closed by then.
    pub async fn journal_stopping_head(
        &self,
        head: ChainHead,
    ) -> Result<SignedCheckpoint, StoreError> {
        let checkpoint = SignedCheckpoint::sign(head, self.clock.now(), &self.report_key);
        self.journal.append(&checkpoint).await?;
        Ok(checkpoint)
    }

    /// The head reached by linking every event after the latest checkpoint onto it.
    async fn verified_head(&self) -> Result<ChainHead, CheckpointError> {
        let start = match self.latest_checkpoint().await? {
            Some(checkpoint) => {
                let head = checkpoint.head().ok_or(StoreError::NotFound)?;
                if let Err(error) = check_anchor(self.log.as_ref(), head).await? {
                    return Err(CheckpointError::ChainBroken(error));
                }
                head
            }
            None => ChainHead::EMPTY,
        };
        let mut verifier = ChainVerifier::starting_at(start);
        loop {
            let batch = self.log.page(verifier.head().seq, SCAN_PAGE).await?;
            if batch.is_empty() {
                return Ok(verifier.head());
            }
            for event in &batch {
                verifier
                    .check(event)
                    .map_err(CheckpointError::ChainBroken)?;
            }
        }
    }
}
