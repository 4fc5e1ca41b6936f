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

#[server(endpoint = "audit/recent")]
pub async fn recent_audit_events(limit: u32) -> Result<Vec<AuditEventView>, AppError> {
    use super::context::{require_role, services};
    use domain::account::Role;

    const MAX_EVENTS: u32 = 200;
    require_role(&[Role::Reviewer, Role::Admin]).await?;
    let services = services()?;
    let events = services
        .audit
        .recent(u64::from(limit.clamp(1, MAX_EVENTS)))
        .await?;
    // Name only the users who appear on this page.
    let mut actor_ids: Vec<domain::account::UserId> = events
        .iter()
        .filter(|e| e.actor.kind == domain::audit::ActorKind::User)
        .filter_map(|e| {
            e.actor
                .id
                .as_deref()
                .and_then(|id| uuid::Uuid::parse_str(id).ok())
        })
        .map(domain::account::UserId)
        .collect();
    actor_ids.sort();
    actor_ids.dedup();
    let emails: std::collections::HashMap<String, String> = services
        .accounts
        .store
        .find_users(&actor_ids)
        .await?
        .into_iter()
        .map(|u| (format!("user:{}", u.id), u.email.as_str().to_owned()))
        .collect();
    Ok(events
        .into_iter()
        .map(|event| {
            let mut view = AuditEventView::from(event);
            view.actor_email = emails.get(&view.actor).cloned();
            view
        })
        .collect())
}

#[server(endpoint = "audit/verify")]
pub async fn verify_audit_chain() -> Result<ChainReport, AppError> {
    use super::context::{request_meta, require_role, services};
    use domain::account::Role;
    use domain::audit::{Actor, AuditDraft, Outcome, verify_log};

    let user = require_role(&[Role::Reviewer, Role::Admin]).await?;
    let services = services()?;
    let outcome = verify_log(services.audit.as_ref(), |_| {}).await?;
    let report = match outcome {
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
    };
    let result = if report.broken_at.is_some() {
        Outcome::Failure
    } else {
        Outcome::Success
    };
    services
        .audit
        .record(
            AuditDraft::new(Actor::user(user.id), "audit.verify", result, request_meta())
                .detail("events_checked", report.events_checked)
                .detail("head_seq", report.head_seq)
                .detail("broken_at", report.broken_at.as_ref().map(|(seq, _)| *seq)),
        )
        .await?;
    Ok(report)
}
