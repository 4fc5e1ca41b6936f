//! The exchange key vault: a trader's keys (entry, list, check, revoke, re-wrap, receipts) and
//! the admin's controls (master key rotation, re-wrap of everyone's keys, decoys, alerts).
//! Secrets travel only inward: no response carries key material, only masks.

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::AppError;

/// A key as the browser sees it: never the key or secret, only the mask.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyView {
    pub id: String,
    pub label: String,
    pub exchange: String,
    pub exchange_label: String,
    pub environment: String,
    pub scope: String,
    pub mask: String,
    pub status: String,
    pub status_reason: Option<String>,
    pub can_trade: bool,
    pub can_withdraw: bool,
    pub ip_restricted: bool,
    /// The KMS key version the data key is wrapped under.
    pub kms_key_id: Option<String>,
    /// Whether that is the KMS's current version (otherwise a re-wrap is due).
    pub wrapped_under_current: bool,
    pub created_at: String,
    pub last_used_at: Option<String>,
    pub last_checked_at: Option<String>,
    pub revoked_at: Option<String>,
    pub owner_email: Option<String>,
}

#[cfg(feature = "ssr")]
impl KeyView {
    fn new(record: &domain::keys::KeyRecord, current_kms_key: &str) -> Self {
        use domain::audit::canonical_time;
        Self {
            id: record.id.to_string(),
            label: record.label.clone(),
            exchange: record.exchange.as_str().to_owned(),
            exchange_label: record.exchange.label().to_owned(),
            environment: record.environment.as_str().to_owned(),
            scope: record.scope.as_str().to_owned(),
            mask: record.mask.clone(),
            status: record.status.as_str().to_owned(),
            status_reason: record.status_reason.clone(),
            can_trade: record.permissions.can_trade,
            can_withdraw: record.permissions.can_withdraw,
            ip_restricted: record.permissions.ip_restricted,
            wrapped_under_current: record.kms_key_id.as_deref() == Some(current_kms_key),
            kms_key_id: record.kms_key_id.clone(),
            created_at: canonical_time(record.created_at),
            last_used_at: record.last_used_at.map(canonical_time),
            last_checked_at: record.last_checked_at.map(canonical_time),
            revoked_at: record.revoked_at.map(canonical_time),
            owner_email: None,
        }
    }
}

/// One line of a key's history: "used at … for …", added, re-wrapped, revoked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyReceipt {
    pub seq: i64,
    pub at: String,
    pub key_id: String,
    pub key_label: String,
    pub key_mask: String,
    pub action: String,
    pub outcome: String,
    /// What the key was used for, or what happened to it, in words.
    pub description: String,
    pub ip: Option<String>,
}

/// A re-wrap run's progress, polled by the page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RewrapStatus {
    pub total: u64,
    pub rewrapped: u64,
    pub already_current: u64,
    pub failed: u64,
    pub finished: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KmsOverview {
    pub backend: String,
    pub current_key_id: String,
    pub can_rotate_here: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertView {
    pub id: String,
    pub kind: String,
    pub message: String,
    pub resource: Option<String>,
    /// The email of the user who set it off, when it was a user.
    pub actor_email: Option<String>,
    pub raised_at: String,
    pub acknowledged_at: Option<String>,
}

#[cfg(feature = "ssr")]
mod support {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    use domain::account::{Role, User, UserId};
    use domain::keys::{KeyId, KeyVaultError, RewrapProgress};

    use super::*;
    use crate::api::context::services;

    impl From<KeyVaultError> for AppError {
        fn from(err: KeyVaultError) -> Self {
            use KeyVaultError as E;
            match err {
                E::Invalid(e) => AppError::Invalid(crate::error::capitalise(&e.to_string())),
                E::NotFound => AppError::NotFound,
                E::Refused(why) => AppError::Invalid(why),
                E::Revoked => AppError::Conflict("This key was revoked.".into()),
                E::Unusable => AppError::Conflict("This key cannot be used right now.".into()),
                E::ExchangeRejected(why) => AppError::Invalid(why),
                E::ExchangeUnavailable => AppError::Unavailable(
                    "The exchange could not be reached. Nothing was saved; try again shortly."
                        .into(),
                ),
                E::KmsUnavailable => AppError::Unavailable(
                    "The key management service is unavailable. Nothing was decrypted or saved."
                        .into(),
                ),
                E::AuditUnavailable => AppError::Unavailable(
                    "The audit log could not be written, so nothing was decrypted or saved.".into(),
                ),
                E::Tampered => AppError::internal("a stored exchange key failed to decrypt"),
                E::Store(e) => AppError::internal(e),
            }
        }
    }

    /// Parses a key id from the browser; a malformed id is reported like an unknown one.
    pub fn key_id(raw: &str) -> Result<KeyId, AppError> {
        KeyId::parse(raw).ok_or(AppError::NotFound)
    }

    pub fn view(record: &domain::keys::KeyRecord) -> Result<KeyView, AppError> {
        Ok(KeyView::new(
            record,
            &services()?.vault.kms.current_key_id(),
        ))
    }

    #[derive(Debug, Clone, Copy)]
    struct Job {
        started_by: UserId,
        progress: RewrapProgress,
        finished: bool,
    }

    /// Re-wrap runs in the background, so the page can show progress. Only the user who
    /// started a run can see it.
    #[derive(Debug, Clone, Default)]
    pub struct RewrapJobs(Arc<Mutex<HashMap<uuid::Uuid, Job>>>);

    impl RewrapJobs {
        fn update(&self, id: uuid::Uuid, progress: RewrapProgress, finished: bool) {
            if let Ok(mut jobs) = self.0.lock()
                && let Some(job) = jobs.get_mut(&id)
            {
                job.progress = progress;
                job.finished = finished;
            }
        }

        /// Starts re-wrapping `scope`'s keys (everyone's when `None`) and returns the run's id.
        pub fn start(
            &self,
            actor: &User,
            scope: Option<UserId>,
            meta: domain::audit::RequestMeta,
        ) -> Result<String, AppError> {
            let vault = services()?.vault;
            let id = uuid::Uuid::new_v4();
            {
                let mut jobs = self
                    .0
                    .lock()
                    .map_err(|_| AppError::internal("rewrap job registry poisoned"))?;
                // Finished runs are kept only while someone may still be polling them.
                if jobs.len() > 1000 {
                    jobs.retain(|_, job| !job.finished);
                }
                jobs.insert(
                    id,
                    Job {
                        started_by: actor.id,
                        progress: RewrapProgress::default(),
                        finished: false,
                    },
                );
            }
            let jobs = self.clone();
            let actor = domain::audit::Actor::user(actor.id);
            tokio::spawn(async move {
                let progress_jobs = jobs.clone();
                let result = vault
                    .rewrap_keys(actor, scope, meta, move |p| {
                        progress_jobs.update(id, p, false)
                    })
                    .await;
                match result {
                    Ok(done) => jobs.update(id, done, true),
                    Err(e) => {
                        tracing::error!(error = %e, "re-wrap run failed");
                        let mut failed = jobs
                            .0
                            .lock()
                            .ok()
                            .and_then(|j| j.get(&id).map(|job| job.progress))
                            .unwrap_or_default();
                        failed.failed += failed.total.saturating_sub(failed.done());
                        jobs.update(id, failed, true);
                    }
                }
            });
            Ok(id.to_string())
        }

        pub fn status(&self, user: &User, raw_id: &str) -> Result<RewrapStatus, AppError> {
            let id = uuid::Uuid::parse_str(raw_id.trim()).map_err(|_| AppError::NotFound)?;
            let jobs = self
                .0
                .lock()
                .map_err(|_| AppError::internal("rewrap job registry poisoned"))?;
            let job = jobs
                .get(&id)
                .filter(|job| job.started_by == user.id)
                .ok_or(AppError::NotFound)?;
            Ok(RewrapStatus {
                total: job.progress.total,
                rewrapped: job.progress.rewrapped,
                already_current: job.progress.already_current,
                failed: job.progress.failed,
                finished: job.finished,
            })
        }
    }

    pub fn is_admin(user: &User) -> bool {
        user.role == Role::Admin
    }
}

#[cfg(feature = "ssr")]
pub use support::RewrapJobs;

#[server(endpoint = "keys/list")]
pub async fn list_keys() -> Result<Vec<KeyView>, AppError> {
    use super::context::{require_user, services};

    let (user, _) = require_user().await?;
    let records = services()?.vault.list_keys(user.id).await?;
    records.iter().map(support::view).collect()
}

#[server(endpoint = "keys/add")]
pub async fn add_key(
    exchange: String,
    environment: String,
    scope: String,
    label: String,
    api_key: String,
    api_secret: String,
) -> Result<KeyView, AppError> {
    use domain::keys::{
        ApiCredentials, ExchangeName, KeyEnvironment, KeyLabel, KeyScope, NewKeyRequest,
    };
    use secrecy::SecretString;

    use super::context::{request_meta, require_user, services};

    // Into secrecy types before anything else can copy or print them.
    let api_key = SecretString::from(api_key);
    let api_secret = SecretString::from(api_secret);
    let (user, _) = require_user().await?;
    let request = NewKeyRequest {
        exchange: ExchangeName::parse(&exchange)?,
        environment: KeyEnvironment::parse(&environment)?,
        scope: KeyScope::parse(&scope)?,
        label: KeyLabel::parse(&label)?,
        credentials: ApiCredentials::parse(api_key, api_secret)?,
    };
    let record = services()?
        .vault
        .add_key(user.id, request, request_meta())
        .await?;
    support::view(&record)
}

#[server(endpoint = "keys/check")]
pub async fn check_key(key_id: String) -> Result<KeyView, AppError> {
    use domain::audit::Actor;
    use domain::keys::KeyPurpose;

    use super::context::{request_meta, require_user, services};

    let (user, _) = require_user().await?;
    let id = support::key_id(&key_id)?;
    let record = services()?
        .vault
        .check_key(
            Actor::user(user.id),
            user.id,
            id,
            KeyPurpose::PermissionCheck,
            request_meta(),
        )
        .await?;
    support::view(&record)
}

#[server(endpoint = "keys/revoke")]
pub async fn revoke_key(key_id: String) -> Result<KeyView, AppError> {
    use super::context::{request_meta, require_user, services};

    let (user, _) = require_user().await?;
    let id = support::key_id(&key_id)?;
    let record = services()?
        .vault
        .revoke(user.id, id, request_meta())
        .await?;
    support::view(&record)
}

/// Starts re-wrapping the caller's keys under the current KMS key; poll `keys/rewrap-status`.
#[server(endpoint = "keys/rewrap")]
pub async fn rewrap_my_keys() -> Result<String, AppError> {
    use super::context::{request_meta, require_user, services};

    let (user, _) = require_user().await?;
    services()?
        .rewrap_jobs
        .start(&user, Some(user.id), request_meta())
}

#[server(endpoint = "keys/rewrap-status")]
pub async fn rewrap_progress(job_id: String) -> Result<RewrapStatus, AppError> {
    use super::context::{require_user, services};

    let (user, _) = require_user().await?;
    services()?.rewrap_jobs.status(&user, &job_id)
}

#[server(endpoint = "keys/receipts")]
pub async fn key_receipts() -> Result<Vec<KeyReceipt>, AppError> {
    use std::collections::HashMap;

    use super::context::{require_user, services};

    const MAX_RECEIPTS: u64 = 100;
    let (user, _) = require_user().await?;
    let vault = services()?.vault;
    let keys: HashMap<String, (String, String, String)> = vault
        .list_keys(user.id)
        .await?
        .into_iter()
        .map(|k| (k.id.resource(), (k.id.to_string(), k.label, k.mask)))
        .collect();
    let events = vault.receipts(user.id, MAX_RECEIPTS).await?;
    Ok(events
        .into_iter()
        .filter_map(|event| {
            let (key_id, key_label, key_mask) = keys.get(event.resource.as_deref()?)?.clone();
            let detail = |name: &str| {
                event
                    .details
                    .get(name)
                    .and_then(|v| v.as_str())
                    .map(str::to_owned)
            };
            // A decoy's planting reads as any key's entry: its owner may be the intruder.
            let action = match event.action.as_str() {
                "vault.canary_planted" => "vault.key_added".to_owned(),
                _ => event.action.clone(),
            };
            let description = match action.as_str() {
                "vault.key_used" => format!(
                    "Decrypted for {}",
                    detail("purpose").unwrap_or_else(|| "an unstated purpose".into())
                ),
                "vault.key_use_failed" => format!(
                    "Decryption failed ({})",
                    detail("error").unwrap_or_default()
                ),
                "vault.key_added" => "Added and sealed".into(),
                "vault.key_checked" => match detail("reason") {
                    Some(reason) => format!("Permission check: suspended. {reason}"),
                    None => "Permission check: fine".into(),
                },
                "vault.key_rewrapped" => format!(
                    "Data key re-wrapped from {} to {}",
                    detail("from").unwrap_or_default(),
                    detail("to").unwrap_or_default()
                ),
                "vault.key_revoked" => "Revoked; ciphertext deleted".into(),
                // Decoy trips are for operators; the key's "owner" may be the intruder.
                "security.canary_tripped" => return None,
                other => other.to_owned(),
            };
            Some(KeyReceipt {
                seq: event.seq,
                at: domain::audit::canonical_time(event.occurred_at),
                key_id,
                key_label,
                key_mask,
                action,
                outcome: event.outcome.as_str().to_owned(),
                description,
                ip: event.meta.ip,
            })
        })
        .collect())
}

#[server(endpoint = "admin/kms")]
pub async fn kms_status() -> Result<KmsOverview, AppError> {
    use domain::account::Role;

    use super::context::{require_role, services};

    require_role(&[Role::Admin]).await?;
    let services = services()?;
    let current_key_id = services.vault.kms.current_key_id();
    Ok(KmsOverview {
        backend: if current_key_id.starts_with("local:") {
            "local".into()
        } else {
            "aws".into()
        },
        can_rotate_here: current_key_id.starts_with("local:"),
        current_key_id,
    })
}

/// Adds a new master key version (local KMS); new and re-wrapped keys use it.
#[server(endpoint = "admin/kms-rotate")]
pub async fn rotate_master_key() -> Result<KmsOverview, AppError> {
    use super::context::{request_meta, services};

    let admin = super::context::require_admin().await?;
    let current_key_id = services()?
        .vault
        .rotate_master_key(admin.id, request_meta())
        .await
        .inspect_err(|e| tracing::warn!(error = %e, "master key rotation failed"))?;
    Ok(KmsOverview {
        backend: "local".into(),
        can_rotate_here: true,
        current_key_id,
    })
}

#[server(endpoint = "admin/rewrap-all")]
pub async fn rewrap_all_keys() -> Result<String, AppError> {
    use super::context::{request_meta, services};

    let admin = super::context::require_admin().await?;
    services()?.rewrap_jobs.start(&admin, None, request_meta())
}

/// The decoys and whose vault they sit in: an admin action (security-key window), since the
/// list tells an insider exactly which keys to avoid.
#[server(endpoint = "admin/canaries")]
pub async fn list_canaries() -> Result<Vec<KeyView>, AppError> {
    use super::context::services;

    super::context::require_admin().await?;
    let services = services()?;
    let canaries = services.vault.canaries().await?;
    let owners: Vec<_> = canaries.iter().map(|c| c.owner).collect();
    let emails: std::collections::HashMap<_, _> = services
        .accounts
        .store
        .find_users(&owners)
        .await?
        .into_iter()
        .map(|u| (u.id, u.email.as_str().to_owned()))
        .collect();
    // A decoy is never decrypted, so "last used" is when it last set off an alert.
    let alerts = services.vault.alerts.recent(1000).await?;
    let current = services.vault.kms.current_key_id();
    Ok(canaries
        .iter()
        .map(|c| {
            let mut view = KeyView::new(c, &current);
            view.owner_email = emails.get(&c.owner).cloned();
            view.last_used_at = alerts
                .iter()
                .filter(|a| a.resource.as_deref() == Some(c.id.resource().as_str()))
                .map(|a| domain::audit::canonical_time(a.raised_at))
                .max();
            view
        })
        .collect())
}

/// Plants a decoy key in the vault of the user with `owner_email`.
#[server(endpoint = "admin/canary-plant")]
pub async fn plant_canary(
    owner_email: String,
    label: String,
    exchange: String,
    environment: String,
) -> Result<KeyView, AppError> {
    use domain::account::Email;
    use domain::keys::{ExchangeName, KeyEnvironment, KeyLabel};

    use super::context::{request_meta, services};

    let admin = super::context::require_admin().await?;
    let services = services()?;
    let email = Email::parse(&owner_email)
        .map_err(|e| AppError::Invalid(crate::error::capitalise(&e.to_string())))?;
    let owner = services
        .accounts
        .store
        .find_credentials(&email)
        .await?
        .ok_or_else(|| AppError::Invalid("No user has that email.".into()))?
        .user;
    let record = services
        .vault
        .plant_canary(
            admin.id,
            owner.id,
            KeyLabel::parse(&label)?,
            ExchangeName::parse(&exchange)?,
            KeyEnvironment::parse(&environment)?,
            request_meta(),
        )
        .await?;
    let mut view = support::view(&record)?;
    view.owner_email = Some(owner.email.as_str().to_owned());
    Ok(view)
}

/// Security alerts, like every admin action, need the admin's security-key window: they name
/// decoys and the users who touched them.
#[server(endpoint = "admin/alerts")]
pub async fn list_alerts() -> Result<Vec<AlertView>, AppError> {
    use domain::audit::canonical_time;

    use super::context::services;

    super::context::require_admin().await?;
    let services = services()?;
    let alerts = services.vault.alerts.recent(100).await?;
    let user_of = |actor: &Option<String>| {
        actor
            .as_deref()
            .and_then(|a| a.strip_prefix("user:"))
            .and_then(|id| uuid::Uuid::parse_str(id).ok())
            .map(domain::account::UserId)
    };
    let ids: Vec<_> = alerts.iter().filter_map(|a| user_of(&a.actor)).collect();
    let emails: std::collections::HashMap<_, _> = services
        .accounts
        .store
        .find_users(&ids)
        .await?
        .into_iter()
        .map(|u| (u.id, u.email.as_str().to_owned()))
        .collect();
    Ok(alerts
        .into_iter()
        .map(|a| AlertView {
            id: a.id.to_string(),
            actor_email: user_of(&a.actor).and_then(|id| emails.get(&id).cloned()),
            kind: a.kind,
            message: a.message,
            resource: a.resource,
            raised_at: canonical_time(a.raised_at),
            acknowledged_at: a.acknowledged_at.map(canonical_time),
        })
        .collect())
}

#[server(endpoint = "admin/alert-ack")]
pub async fn acknowledge_alert(alert_id: String) -> Result<(), AppError> {
    use domain::audit::{Actor, AuditDraft, Outcome};

    use super::context::{request_meta, require_admin, services};

    let admin = require_admin().await?;
    let id = uuid::Uuid::parse_str(alert_id.trim()).map_err(|_| AppError::NotFound)?;
    let services = services()?;
    let draft = AuditDraft::new(
        Actor::user(admin.id),
        "security.alert_acknowledged",
        Outcome::Success,
        request_meta(),
    )
    .resource(format!("security_alert:{id}"));
    services
        .vault
        .alerts
        .acknowledge(id, services.clock.now(), draft)
        .await?;
    Ok(())
}

/// How many unacknowledged alerts there are (admins only; others see zero).
#[server(endpoint = "alerts/open-count")]
pub async fn open_alert_count() -> Result<u32, AppError> {
    use super::context::{current_user, services};

    let Some((user, _)) = current_user().await? else {
        return Ok(0);
    };
    if !support::is_admin(&user) {
        return Ok(0);
    }
    let alerts = services()?.vault.alerts.recent(100).await?;
    Ok(alerts
        .iter()
        .filter(|a| a.acknowledged_at.is_none())
        .count() as u32)
}
