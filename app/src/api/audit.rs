//! The audit log as reviewers and admins see it: search with keyset paging, one event with its
//! hash links, chain verification as a background job, and signed checkpoints.

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use super::reports::ReportFilterForm;
use crate::error::AppError;

/// Events per page of the auditor's view.
pub const AUDIT_PAGE_SIZE: u64 = 50;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEventView {
    pub seq: i64,
    pub occurred_at: String,
    /// `kind:id` as recorded, e.g. `user:5ece…` or `system:cli`.
    pub actor: String,
    /// The user's current email when the actor is a known user (for reading, not evidence).
    pub actor_email: Option<String>,
    pub action: String,
    pub resource: Option<String>,
    pub outcome: String,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
    /// Canonical (compact, sorted) JSON, as hashed.
    pub details: String,
    pub prev_hash: String,
    pub hash: String,
}

#[cfg(feature = "ssr")]
impl From<domain::audit::AuditEvent> for AuditEventView {
    fn from(e: domain::audit::AuditEvent) -> Self {
        let actor = match &e.actor.id {
            Some(id) => format!("{}:{id}", e.actor.kind.as_str()),
            None => e.actor.kind.as_str().to_owned(),
        };
        Self {
            seq: e.seq,
            occurred_at: domain::audit::canonical_time(e.occurred_at),
            actor,
            actor_email: None,
            action: e.action,
            resource: e.resource,
            outcome: e.outcome.as_str().to_owned(),
            ip: e.meta.ip,
            user_agent: e.meta.user_agent,
            request_id: e.meta.request_id,
            details: e.details.to_string(),
            prev_hash: e.prev_hash.to_hex(),
            hash: e.hash.to_hex(),
        }
    }
}

#[cfg(feature = "ssr")]
impl From<domain::audit::service::ReviewedEvent> for AuditEventView {
    fn from(reviewed: domain::audit::service::ReviewedEvent) -> Self {
        let mut view = AuditEventView::from(reviewed.event);
        view.actor_email = reviewed.actor_email.map(|e| e.as_str().to_owned());
        view
    }
}

/// Where a page of the log starts: the newest events, or next to a seq already shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum AuditCursor {
    #[default]
    Newest,
    /// The events just older than this seq.
    Before(i64),
    /// The events just newer than this seq.
    After(i64),
}

impl AuditCursor {
    /// Reads `before=` / `after=` from a page's query (anything unparsable is the newest page).
    pub fn from_query(before: Option<&str>, after: Option<&str>) -> Self {
        let parse = |raw: Option<&str>| raw.and_then(|r| r.trim().parse::<i64>().ok());
        match (parse(before), parse(after)) {
            (Some(seq), _) => AuditCursor::Before(seq),
            (None, Some(seq)) => AuditCursor::After(seq),
            (None, None) => AuditCursor::Newest,
        }
    }

    /// The `before` and `after` arguments of [`search_audit`].
    pub fn bounds(self) -> (Option<i64>, Option<i64>) {
        match self {
            AuditCursor::Newest => (None, None),
            AuditCursor::Before(seq) => (Some(seq), None),
            AuditCursor::After(seq) => (None, Some(seq)),
        }
    }
}

/// One page of matching events, newest first, with the cursors of its neighbours.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditPageView {
    pub events: Vec<AuditEventView>,
    /// `after=` for the page of newer matches, when there are any.
    pub newer: Option<i64>,
    /// `before=` for the page of older matches, when there are any.
    pub older: Option<i64>,
}

/// One event and the events it links to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventDetailView {
    pub event: AuditEventView,
    /// The details, indented for reading.
    pub details_pretty: String,
    /// The event whose hash this one's prev_hash must equal (none for the first event).
    pub previous: Option<ChainLink>,
    /// The event that chains onto this one, if any yet.
    pub next: Option<ChainLink>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainLink {
    pub seq: i64,
    pub hash: String,
    /// For the previous event: its hash equals this event's prev_hash. For the next event:
    /// its prev_hash equals this event's hash.
    pub links: bool,
}

/// The result of checking the whole chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainReport {
    pub events_checked: u64,
    pub head_seq: i64,
    pub head_hash: String,
    /// The first broken seq and why, if any.
    pub broken_at: Option<(i64, String)>,
    /// The signed checkpoint the chain was checked against, if there was one.
    pub checkpoint: Option<CheckpointView>,
}

/// A background verification's progress, and its result once finished.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyJobView {
    pub checked: u64,
    /// The head seq when the job started (what `checked` counts towards).
    pub total: u64,
    pub finished: bool,
    pub report: Option<ChainReport>,
    /// Set when the job could not run to the end (a storage failure), worded for the reader.
    pub error: Option<String>,
}

/// A signed chain head.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointView {
    pub seq: i64,
    pub hash: String,
    pub signed_at: String,
    /// `schedule` or `manual`, when known.
    pub trigger: Option<String>,
    pub public_key: String,
    /// Whether its signature verifies under this server's report key (a forged row is listed,
    /// and flagged, rather than hidden).
    pub valid: bool,
}

#[cfg(feature = "ssr")]
mod convert {
    //! Domain results into the wire types above.

    use domain::audit::jobs::{JobStatus, VerifyResult};
    use domain::audit::reports::{AuditPage, AuditSearchPage, EventDetail, PageCursor};
    use domain::audit::signing::SignedCheckpoint;
    use domain::audit::{BrokenLog, VerifiedLog};

    use super::*;

    impl AuditCursor {
        pub(super) fn into_page(self, limit: u64) -> AuditPage {
            let cursor = match self {
                AuditCursor::Newest => PageCursor::Newest,
                AuditCursor::Before(seq) => PageCursor::Before(seq),
                AuditCursor::After(seq) => PageCursor::After(seq),
            };
            AuditPage { cursor, limit }
        }
    }

    impl From<AuditSearchPage> for AuditPageView {
        fn from(page: AuditSearchPage) -> Self {
            Self {
                events: page.events.into_iter().map(AuditEventView::from).collect(),
                newer: page.newer,
                older: page.older,
            }
        }
    }

    impl From<EventDetail> for EventDetailView {
        fn from(detail: EventDetail) -> Self {
            let prev_hash = detail.event.event.prev_hash;
            let hash = detail.event.event.hash;
            let details_pretty = serde_json::to_string_pretty(&detail.event.event.details)
                .unwrap_or_else(|_| detail.event.event.details.to_string());
            Self {
                event: AuditEventView::from(detail.event),
                details_pretty,
                previous: detail.previous.map(|p| ChainLink {
                    seq: p.seq,
                    hash: p.hash.to_hex(),
                    links: p.hash == prev_hash,
                }),
                next: detail.next.map(|n| ChainLink {
                    seq: n.seq,
                    hash: n.hash.to_hex(),
                    links: n.prev_hash == hash,
                }),
            }
        }
    }

    impl From<SignedCheckpoint> for CheckpointView {
        fn from(c: SignedCheckpoint) -> Self {
            Self {
                seq: c.seq,
                hash: c.hash.clone(),
                signed_at: c.signed_at.clone(),
                trigger: None,
                public_key: c.public_key.to_string(),
                // Only ever built from checkpoints the service has verified or just signed.
                valid: true,
            }
        }
    }

    impl From<domain::audit::checkpoints::CheckpointView> for CheckpointView {
        fn from(view: domain::audit::checkpoints::CheckpointView) -> Self {
            Self {
                trigger: Some(view.trigger.as_str().to_owned()),
                valid: view.valid,
                ..CheckpointView::from(view.checkpoint)
            }
        }
    }

    impl From<Result<VerifiedLog, BrokenLog>> for ChainReport {
        fn from(outcome: Result<VerifiedLog, BrokenLog>) -> Self {
            match outcome {
                Ok(verified) => ChainReport {
                    events_checked: verified.checked,
                    head_seq: verified.head.seq,
                    head_hash: verified.head.hash.to_hex(),
                    broken_at: None,
                    checkpoint: verified.checkpoint.map(CheckpointView::from),
                },
                Err(broken) => ChainReport {
                    events_checked: broken.checked,
                    head_seq: broken.last_good.seq,
                    head_hash: broken.last_good.hash.to_hex(),
                    broken_at: Some((broken.error.seq, broken.error.kind.to_string())),
                    checkpoint: broken.checkpoint.map(CheckpointView::from),
                },
            }
        }
    }

    impl From<JobStatus<VerifyResult>> for VerifyJobView {
        fn from(status: JobStatus<VerifyResult>) -> Self {
            let (report, error) = match status.result {
                Some(VerifyResult::Checked(outcome)) => (Some(ChainReport::from(outcome)), None),
                Some(VerifyResult::Failed) => (
                    None,
                    Some("the audit log could not be read to the end; try again.".to_owned()),
                ),
                None => (None, None),
            };
            Self {
                checked: status.done,
                total: status.total,
                finished: status.finished,
                report,
                error,
            }
        }
    }
}

/// One page of the events matching `filter`, newest first (at most [`AUDIT_PAGE_SIZE`]):
/// the newest, those just older than `before`, or those just newer than `after`.
#[server(endpoint = "audit/search")]
pub async fn search_audit(
    #[server(default)] filter: ReportFilterForm,
    #[server(default)] before: Option<i64>,
    #[server(default)] after: Option<i64>,
) -> Result<AuditPageView, AppError> {
    use super::context::{require_reviewer, services};

    let reviewer = require_reviewer().await?;
    let cursor = match (before, after) {
        (Some(_), Some(_)) => {
            return Err(AppError::Invalid(
                "Ask for the events before a seq or after one, not both.".into(),
            ));
        }
        (Some(seq), None) => AuditCursor::Before(seq),
        (None, Some(seq)) => AuditCursor::After(seq),
        (None, None) => AuditCursor::Newest,
    };
    let services = services()?;
    let filter = filter.to_filter(&services).await?;
    let page = services
        .audit
        .search(&reviewer, &filter, cursor.into_page(AUDIT_PAGE_SIZE))
        .await?;
    Ok(AuditPageView::from(page))
}

/// One event, with the seq and hash of the events either side of it.
#[server(endpoint = "audit/event")]
pub async fn audit_event(seq: i64) -> Result<EventDetailView, AppError> {
    use super::context::{require_reviewer, services};

    let reviewer = require_reviewer().await?;
    let detail = services()?
        .audit
        .event_detail(&reviewer, seq)
        .await?
        .ok_or(AppError::NotFound)?;
    Ok(EventDetailView::from(detail))
}

/// Starts verifying the whole chain in the background; poll `audit/verify/status`.
#[server(endpoint = "audit/verify/start")]
pub async fn start_chain_verification() -> Result<String, AppError> {
    use super::context::{request_meta, require_reviewer, services};

    let reviewer = require_reviewer().await?;
    let job = services()?
        .audit_jobs
        .start_verify(&reviewer, request_meta());
    Ok(job.to_string())
}

/// A verification's progress; only the reviewer who started it may read it.
#[server(endpoint = "audit/verify/status")]
pub async fn chain_verification_status(job_id: String) -> Result<VerifyJobView, AppError> {
    use super::context::{require_reviewer, services};
    use domain::audit::jobs::JobId;

    let reviewer = require_reviewer().await?;
    let job = JobId::parse(&job_id).ok_or(AppError::NotFound)?;
    let status = services()?
        .audit_jobs
        .status(reviewer.id(), job)
        .ok_or(AppError::NotFound)?;
    Ok(VerifyJobView::from(status))
}

/// The newest signed checkpoints, newest first.
#[server(endpoint = "audit/checkpoints")]
pub async fn list_checkpoints() -> Result<Vec<CheckpointView>, AppError> {
    use super::context::{require_reviewer, services};

    let reviewer = require_reviewer().await?;
    let list = services()?.audit.checkpoints(&reviewer, 20).await?;
    Ok(list.into_iter().map(CheckpointView::from).collect())
}

/// Signs the current chain head now (audited).
#[server(endpoint = "audit/checkpoints/sign")]
pub async fn sign_checkpoint_now() -> Result<CheckpointView, AppError> {
    use super::context::{request_meta, require_reviewer, services};

    let reviewer = require_reviewer().await?;
    let signed = services()?
        .audit
        .sign_checkpoint(&reviewer, request_meta())
        .await?;
    Ok(CheckpointView {
        trigger: Some(
            domain::audit::checkpoints::CheckpointTrigger::Manual
                .as_str()
                .to_owned(),
        ),
        ..CheckpointView::from(signed)
    })
}

/// The newest events (the reviewer overview's short list).
#[server(endpoint = "audit/recent")]
pub async fn recent_audit_events(limit: u32) -> Result<Vec<AuditEventView>, AppError> {
    use super::context::{require_reviewer, services};

    let reviewer = require_reviewer().await?;
    let events = services()?
        .audit
        .recent(&reviewer, u64::from(limit))
        .await?;
    Ok(events.into_iter().map(AuditEventView::from).collect())
}

/// Verifies the whole chain within the request (scripts; the page uses the job).
#[server(endpoint = "audit/verify")]
pub async fn verify_audit_chain() -> Result<ChainReport, AppError> {
    use super::context::{request_meta, require_reviewer, services};

    let reviewer = require_reviewer().await?;
    let outcome = services()?
        .audit
        .verify(&reviewer, request_meta(), |_| {})
        .await?;
    Ok(outcome.into())
}

/// The report key's public half (also served at `/.well-known/cryptopulse-report-key`).
#[server(endpoint = "audit/report-key")]
pub async fn report_public_key() -> Result<String, AppError> {
    use super::context::services;

    Ok(services()?.audit.report_public_key().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_query_names_its_cursor_and_anything_else_is_the_newest_page() {
        let cursor = |before, after| AuditCursor::from_query(before, after);
        assert_eq!(cursor(None, None), AuditCursor::Newest);
        assert_eq!(cursor(Some("120"), None), AuditCursor::Before(120));
        assert_eq!(cursor(None, Some(" 7 ")), AuditCursor::After(7));
        // A link never carries both; if one does, going older wins.
        assert_eq!(cursor(Some("9"), Some("3")), AuditCursor::Before(9));
        assert_eq!(cursor(Some("nine"), None), AuditCursor::Newest);
        for c in [
            AuditCursor::Newest,
            AuditCursor::Before(5),
            AuditCursor::After(5),
        ] {
            let (before, after) = c.bounds();
            let text = |v: Option<i64>| v.map(|s| s.to_string());
            assert_eq!(
                AuditCursor::from_query(text(before).as_deref(), text(after).as_deref()),
                c
            );
        }
    }
}
