//! Security alerts for operators: a decoy key touched, a security key that looks cloned.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::account::{AccountStore, Email, UserId};
use crate::audit::{Actor, AuditDraft, AuditLog, Outcome, RequestMeta};
use crate::audit_action::AuditAction;
use crate::authz::{Admin, AdminReader};
use crate::clock::Clock;
use crate::store_error::StoreError;

/// A security alert for operators (e.g. a decoy key was touched).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecurityAlert {
    pub id: Uuid,
    pub kind: String,
    pub message: String,
    pub resource: Option<String>,
    /// Who set it off, as the audit log names actors (`user:<id>`, `system:<component>`).
    pub actor: Option<String>,
    pub raised_at: OffsetDateTime,
    pub acknowledged_at: Option<OffsetDateTime>,
}

/// Raises and lists security alerts. Raising also counts the alert in the metrics.
#[async_trait]
pub trait SecurityAlerts: Send + Sync + fmt::Debug {
    async fn raise(&self, alert: SecurityAlert, audit: AuditDraft) -> Result<(), StoreError>;
    async fn recent(&self, limit: u64) -> Result<Vec<SecurityAlert>, StoreError>;
    async fn acknowledge(
        &self,
        id: Uuid,
        at: OffsetDateTime,
        audit: AuditDraft,
    ) -> Result<(), StoreError>;
}

impl SecurityAlert {
    /// The user who set it off, when it was a user.
    pub fn user(&self) -> Option<UserId> {
        self.actor
            .as_deref()?
            .strip_prefix("user:")
            .and_then(|id| Uuid::parse_str(id).ok())
            .map(UserId)
    }

    /// How the audit log names this alert.
    pub fn resource_name(id: Uuid) -> String {
        format!("security_alert:{id}")
    }
}

/// Alert kinds the user an alert is about may see on their own overview.
pub const SUBJECT_VISIBLE_KINDS: &[&str] = &["security_key_cloned"];

/// An open alert without its message: what it is and when it was raised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenAlert {
    pub id: Uuid,
    pub kind: String,
    pub raised_at: OffsetDateTime,
}

impl OpenAlert {
    fn of(alert: &SecurityAlert) -> Self {
        Self {
            id: alert.id,
            kind: alert.kind.clone(),
            raised_at: alert.raised_at,
        }
    }
}

/// An alert as the admin's list shows it: with the email of the user who set it off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertListing {
    pub alert: SecurityAlert,
    pub actor_email: Option<Email>,
}

/// The security alert use cases: the admin's list, acknowledging, the open count.
#[derive(Debug, Clone)]
pub struct AlertService {
    alerts: Arc<dyn SecurityAlerts>,
    accounts: Arc<dyn AccountStore>,
    audit: Arc<dyn AuditLog>,
    clock: Arc<dyn Clock>,
}

/// Why an alert was not acknowledged.
#[derive(Debug, thiserror::Error)]
pub enum AcknowledgeError {
    #[error("not found")]
    NotFound,
    /// The alert is about the admin asking (recorded as refused).
    #[error("an alert about you is acknowledged by another admin")]
    AboutYou,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl AlertService {
    /// How many of the newest alerts the list shows and the open count looks at.
    pub const LISTED: u64 = 100;

    pub fn new(
        alerts: Arc<dyn SecurityAlerts>,
        accounts: Arc<dyn AccountStore>,
        audit: Arc<dyn AuditLog>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            alerts,
            accounts,
            audit,
            clock,
        }
    }

    /// The newest alerts, newest first. An admin action (security-key window): alerts name
    /// decoys and the users who touched them.
    pub async fn list(&self, _admin: &Admin) -> Result<Vec<AlertListing>, StoreError> {
        let alerts = self.alerts.recent(Self::LISTED).await?;
        let ids: Vec<UserId> = alerts.iter().filter_map(SecurityAlert::user).collect();
        let emails = self.accounts.emails(&ids).await?;
        Ok(alerts
            .into_iter()
            .map(|alert| {
                let actor_email = alert.user().and_then(|id| emails.get(&id).cloned());
                AlertListing { alert, actor_email }
            })
            .collect())
    }

    /// Marks a listed alert as seen. Never by the admin it is about (a decoy they touched, a
    /// case about their trading): that would take it off the other admins' open count.
    pub async fn acknowledge(
        &self,
        admin: &Admin,
        id: Uuid,
        meta: RequestMeta,
    ) -> Result<(), AcknowledgeError> {
        let alerts = self.alerts.recent(Self::LISTED).await?;
        let alert = alerts
            .iter()
            .find(|alert| alert.id == id)
            .ok_or(AcknowledgeError::NotFound)?;
        let draft = |outcome| {
            AuditDraft::new(
                Actor::user(admin.id()),
                AuditAction::SecurityAlertAcknowledged,
                outcome,
                meta.clone(),
            )
            .resource(SecurityAlert::resource_name(id))
        };
        if alert.user() == Some(admin.id()) {
            self.audit
                .record(draft(Outcome::Denied).detail("reason", "an alert about the admin"))
                .await?;
            return Err(AcknowledgeError::AboutYou);
        }
        Ok(self
            .alerts
            .acknowledge(id, self.clock.now(), draft(Outcome::Success))
            .await?)
    }

    /// The newest alerts nobody has acknowledged, for the admin's overview: kind and time only.
    /// The messages name decoys and the users who touched them, which stays behind the admin's
    /// key window ([`Self::list`]).
    pub async fn open_alerts(&self, _reader: &AdminReader) -> Result<Vec<OpenAlert>, StoreError> {
        let alerts = self.alerts.recent(Self::LISTED).await?;
        Ok(alerts
            .iter()
            .filter(|a| a.acknowledged_at.is_none())
            .map(OpenAlert::of)
            .collect())
    }

    /// A user's own open alerts of the kinds a user may be told about (their security key was
    /// disabled as cloned). Decoy and anomaly alerts also name users, but telling the suspect
    /// would give the detection away.
    pub async fn open_alerts_about(&self, user: UserId) -> Result<Vec<OpenAlert>, StoreError> {
        let alerts = self.alerts.recent(Self::LISTED).await?;
        Ok(alerts
            .iter()
            .filter(|a| {
                a.acknowledged_at.is_none()
                    && a.user() == Some(user)
                    && SUBJECT_VISIBLE_KINDS.contains(&a.kind.as_str())
            })
            .map(OpenAlert::of)
            .collect())
    }

    /// How many of the newest alerts nobody has acknowledged (the navigation's badge).
    pub async fn open_count(&self, _reader: &AdminReader) -> Result<u32, StoreError> {
        let alerts = self.alerts.recent(Self::LISTED).await?;
        Ok(alerts
            .iter()
            .filter(|a| a.acknowledged_at.is_none())
            .count() as u32)
    }
}
