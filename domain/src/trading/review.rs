//! Anomaly cases for reviewers: announcing a new case, reading cases with what a reviewer needs
//! around them, and the reviewer's decision (four eyes: never about themself, always with a
//! note, always audited). Reviewer use cases take a [`Reviewer`] proof.

use uuid::Uuid;

use super::error::{Forbidden, Refusal, TradingError, audit_or_store};
use super::ports::CaseDecisionWrite;
use super::service::draft;
use super::{AnomalyCase, CaseFile, CaseId, CaseStatus, TradingService};
use crate::alerts::SecurityAlert;
use crate::audit::{Actor, Outcome, RequestMeta};
use crate::audit_action::AuditAction;
use crate::authz::Reviewer;

/// How many cases a reviewer's list shows.
const CASE_LIST_LIMIT: u64 = 200;

/// A reviewer's note on a decision: 3 to 1000 characters once trimmed, lines of text (no
/// control characters but line breaks and tabs; PostgreSQL cannot even store a NUL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReviewNote(String);

/// A note too short, too long, or not plain text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a review note is {min} to {max} characters of plain text", min = ReviewNote::MIN_CHARS, max = ReviewNote::MAX_CHARS)]
pub struct InvalidReviewNote;

impl ReviewNote {
    pub const MIN_CHARS: usize = 3;
    pub const MAX_CHARS: usize = 1000;

    pub fn parse(raw: &str) -> Result<Self, InvalidReviewNote> {
        let note = raw.trim();
        let chars = note.chars().count();
        // Line breaks and tabs lay a note out; nothing else may move or hide its text.
        let plain =
            |c: char| !crate::text::hides_or_moves_text(c) || matches!(c, '\n' | '\r' | '\t');
        if !(Self::MIN_CHARS..=Self::MAX_CHARS).contains(&chars) || !note.chars().all(plain) {
            return Err(InvalidReviewNote);
        }
        Ok(Self(note.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What the reviewer decides about a case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaseDecision {
    /// Nothing wrong: the trader is released and the held orders go out.
    Release,
    /// The anomaly is real: the quarantine stays and the held orders are cancelled.
    Confirm,
}

impl CaseDecision {
    /// "release" or "confirm".
    pub fn parse(raw: &str) -> Option<Self> {
        match raw.trim() {
            "release" => Some(CaseDecision::Release),
            "confirm" => Some(CaseDecision::Confirm),
            _ => None,
        }
    }
}

impl TradingService {
    /// The newest cases (in one status, or all) with their accounts and the subjects' state;
    /// never a case about the reviewer: its evidence would tell them what tripped the detector.
    pub async fn cases(
        &self,
        reviewer: &Reviewer,
        status: Option<CaseStatus>,
    ) -> Result<Vec<CaseFile>, TradingError> {
        let mut files = self.store.case_files(status, CASE_LIST_LIMIT).await?;
        files.retain(|file| file.case.subject != reviewer.id());
        Ok(files)
    }

    /// One case; a case about the reviewer is not found (see [`Self::cases`]).
    pub async fn case(&self, reviewer: &Reviewer, id: CaseId) -> Result<CaseFile, TradingError> {
        self.store
            .case_file(id)
            .await?
            .filter(|file| file.case.subject != reviewer.id())
            .ok_or(TradingError::NotFound)
    }

    /// A reviewer's decision. Never about themself; everything audited.
    pub async fn decide_case(
        &self,
        reviewer: &Reviewer,
        id: CaseId,
        decision: CaseDecision,
        note: ReviewNote,
        meta: RequestMeta,
    ) -> Result<CaseFile, TradingError> {
        let case = self.store.case(id).await?.ok_or(TradingError::NotFound)?;
        if case.subject == reviewer.id() {
            let refusal = draft(
                Actor::user(reviewer.id()),
                match decision {
                    CaseDecision::Release => AuditAction::ReviewCaseReleased,
                    CaseDecision::Confirm => AuditAction::ReviewCaseConfirmed,
                },
                Outcome::Denied,
                &meta,
            )
            .resource(id.resource())
            .detail("reason", "a case about the reviewer");
            self.audit_or_fail(refusal).await?;
            return Err(TradingError::Forbidden(Forbidden::OwnCase));
        }
        if case.status != CaseStatus::Open {
            return Err(Refusal::CaseDecided.into());
        }
        let (status, action) = match decision {
            CaseDecision::Release => (CaseStatus::Released, AuditAction::ReviewCaseReleased),
            CaseDecision::Confirm => (CaseStatus::Confirmed, AuditAction::ReviewCaseConfirmed),
        };
        let event = draft(Actor::user(reviewer.id()), action, Outcome::Success, &meta)
            .resource(id.resource())
            .detail("subject", case.subject.to_string())
            .detail("note", note.as_str().to_owned());
        let decided = self
            .store
            .decide_case(CaseDecisionWrite {
                id,
                status,
                reviewer: reviewer.id(),
                note: note.as_str().to_owned(),
                at: self.now(),
                audit: event,
            })
            .await
            .map_err(audit_or_store)?;
        if !decided {
            return Err(Refusal::CaseDecided.into());
        }
        self.case(reviewer, id).await
    }

    /// In-app alert and the optional webhook; neither may undo the recorded decision.
    pub(super) async fn announce_case(&self, case: &AnomalyCase, meta: &RequestMeta) {
        let top: Vec<&str> = case
            .evidence
            .anomaly
            .top(2)
            .iter()
            .map(|c| c.feature.label())
            .collect();
        let alert = SecurityAlert {
            id: Uuid::new_v4(),
            kind: "anomaly_case_opened".into(),
            message: format!(
                "Anomaly case opened (score {:.2}: {}). The trader is now {}.",
                case.score,
                top.join(", "),
                case.evidence.state_after.label().to_lowercase()
            ),
            resource: Some(case.id.resource()),
            actor: Some(format!("user:{}", case.subject)),
            raised_at: case.opened_at,
            acknowledged_at: None,
        };
        let event = draft(
            Actor::system("risk"),
            AuditAction::SecurityAlertRaised,
            Outcome::Success,
            meta,
        )
        .resource(case.id.resource())
        .detail("alert", alert.id.to_string())
        .detail("kind", "anomaly_case_opened");
        // The case itself is already recorded with its audit events; the alert store logs
        // its own failures.
        let _ = self.alerts.raise(alert, event).await;
        self.notifier.case_opened(case).await;
        if let Some(text) = self.notifier.rationale(case).await {
            let event = draft(
                Actor::system("risk"),
                AuditAction::RiskCaseRationaleAdded,
                Outcome::Success,
                meta,
            )
            .resource(case.id.resource())
            .detail("chars", text.chars().count());
            // Advisory only: a rationale whose audit event cannot be written is not stored (the
            // store commits both or neither), and the recorded decision stands.
            let _ = self.store.set_case_rationale(case.id, &text, event).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_review_note_is_three_to_a_thousand_characters_once_trimmed() {
        assert_eq!(
            ReviewNote::parse("  ok!  ").map(|n| n.as_str().to_owned()),
            Ok("ok!".to_owned())
        );
        assert_eq!(ReviewNote::parse(" no "), Err(InvalidReviewNote));
        assert!(ReviewNote::parse(&"x".repeat(1000)).is_ok());
        assert_eq!(ReviewNote::parse(&"x".repeat(1001)), Err(InvalidReviewNote));
        assert!(ReviewNote::parse("line one\nline two\tend").is_ok());
        for control in [
            "a\0bc",
            "abc\u{1b}[2J",
            "ab\u{7f}c",
            "approved\u{202e}detcejer",
            "a\u{2028}bc",
        ] {
            assert_eq!(
                ReviewNote::parse(control),
                Err(InvalidReviewNote),
                "{control:?}"
            );
        }
    }

    #[test]
    fn a_decision_is_release_or_confirm() {
        assert_eq!(CaseDecision::parse("release"), Some(CaseDecision::Release));
        assert_eq!(CaseDecision::parse("confirm"), Some(CaseDecision::Confirm));
        assert_eq!(CaseDecision::parse("maybe"), None);
    }
}
