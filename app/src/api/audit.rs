//! The audit log as reviewers and admins see it.

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::AppError;

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
    pub request_id: Option<String>,
    pub details: String,
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
            request_id: e.meta.request_id,
            details: e.details.to_string(),
            hash: e.hash.to_hex(),
        }
    }
}

/// The result of checking the whole chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainReport {
    pub events_checked: u64,
    pub head_seq: i64,
    pub head_hash: String,
    /// The first broken seq and why, if any.
    pub broken_at: Option<(i64, String)>,
}

#[cfg(feature = "ssr")]
impl From<domain::audit::service::ReviewedEvent> for AuditEventView {
    fn from(reviewed: domain::audit::service::ReviewedEvent) -> Self {
        let mut view = AuditEventView::from(reviewed.event);
        view.actor_email = reviewed.actor_email.map(|e| e.as_str().to_owned());
        view
    }
}

#[cfg(feature = "ssr")]
impl From<Result<domain::audit::VerifiedLog, domain::audit::BrokenLog>> for ChainReport {
    fn from(outcome: Result<domain::audit::VerifiedLog, domain::audit::BrokenLog>) -> Self {
        match outcome {
            Ok(verified) => ChainReport {
                events_checked: verified.checked,
                head_seq: verified.head.seq,
                head_hash: verified.head.hash.to_hex(),
                broken_at: None,
            },
            Err(broken) => ChainReport {
                events_checked: broken.checked,
                head_seq: broken.last_good.seq,
                head_hash: broken.last_good.hash.to_hex(),
                broken_at: Some((broken.error.seq, broken.error.kind.to_string())),
            },
        }
    }
}

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

#[server(endpoint = "audit/verify")]
pub async fn verify_audit_chain() -> Result<ChainReport, AppError> {
    use super::context::{request_meta, require_reviewer, services};

    let reviewer = require_reviewer().await?;
    let outcome = services()?.audit.verify(&reviewer, request_meta()).await?;
    Ok(outcome.into())
}
