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
    fn new(record: &domain::keys::KeyRecord, wrapped_under_current: bool) -> Self {
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
            wrapped_under_current,
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
    use domain::keys::{KeyId, KeyRecord, ReceiptKind};

    use super::*;
    use crate::api::context::services;

    /// Parses a key id from the browser; a malformed id is reported like an unknown one.
    pub fn key_id(raw: &str) -> Result<KeyId, AppError> {
        KeyId::parse(raw).ok_or(AppError::NotFound)
    }

    pub fn view(record: &KeyRecord) -> Result<KeyView, AppError> {
        let wrapped_under_current = services()?.vault.wrapped_under_current(record);
        Ok(KeyView::new(record, wrapped_under_current))
    }

    impl From<domain::keys::KmsStatus> for KmsOverview {
        fn from(status: domain::keys::KmsStatus) -> Self {
            Self {
                backend: status.backend.as_str().to_owned(),
                can_rotate_here: status.backend.rotates_here(),
                current_key_id: status.current_key_id,
            }
        }
    }

    impl From<domain::keys::RewrapRun> for RewrapStatus {
        fn from(run: domain::keys::RewrapRun) -> Self {
            Self {
                total: run.progress.total,
                rewrapped: run.progress.rewrapped,
                already_current: run.progress.already_current,
                failed: run.progress.failed,
                finished: run.finished,
            }
        }
    }

    impl From<domain::alerts::AlertListing> for AlertView {
        fn from(listing: domain::alerts::AlertListing) -> Self {
            use domain::audit::canonical_time;
            let alert = listing.alert;
            Self {
                id: alert.id.to_string(),
                actor_email: listing.actor_email.map(|e| e.as_str().to_owned()),
                kind: alert.kind,
                message: alert.message,
                resource: alert.resource,
                raised_at: canonical_time(alert.raised_at),
                acknowledged_at: alert.acknowledged_at.map(canonical_time),
            }
        }
    }

    impl From<domain::keys::KeyReceipt> for KeyReceipt {
        fn from(receipt: domain::keys::KeyReceipt) -> Self {
            let description = match receipt.kind {
                ReceiptKind::Used { purpose } => format!(
                    "Decrypted for {}",
                    purpose.unwrap_or_else(|| "an unstated purpose".into())
                ),
                ReceiptKind::UseFailed { error } => {
                    format!("Decryption failed ({})", error.unwrap_or_default())
                }
                ReceiptKind::Added => "Added and sealed".into(),
                ReceiptKind::Checked {
                    suspended_because: Some(reason),
                } => format!("Permission check: suspended. {reason}"),
                ReceiptKind::Checked {
                    suspended_because: None,
                } => "Permission check: fine".into(),
                ReceiptKind::Rewrapped { from, to } => {
                    format!("Data key re-wrapped from {from} to {to}")
                }
                ReceiptKind::Revoked => "Revoked; ciphertext deleted".into(),
                ReceiptKind::Other => receipt.action.clone(),
            };
            Self {
                seq: receipt.seq,
                // Whole minutes (as the page shows them): the gap between a check's receipt and
                // its result, an exchange round trip for a real key and none for a decoy, stays
                // out of sight.
                at: domain::audit::canonical_time(
                    receipt
                        .at
                        .replace_second(0)
                        .and_then(|at| at.replace_nanosecond(0))
                        .unwrap_or(receipt.at),
                ),
                key_id: receipt.key.to_string(),
                key_label: receipt.key_label,
                key_mask: receipt.key_mask,
                action: receipt.action,
                outcome: receipt.outcome.as_str().to_owned(),
                description,
                ip: receipt.ip,
            }
        }
    }
}

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
    use domain::exchange::{ApiCredentials, ExchangeName, KeyEnvironment};
    use domain::keys::{KeyLabel, KeyScope, NewKeyRequest};
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
    use domain::keys::RewrapScope;

    use super::context::{request_meta, require_user, services};

    let (user, _) = require_user().await?;
    let run = services()?
        .rewrap
        .start(RewrapScope::Own(user.id), request_meta());
    Ok(run.to_string())
}

#[server(endpoint = "keys/rewrap-status")]
pub async fn rewrap_progress(job_id: String) -> Result<RewrapStatus, AppError> {
    use domain::keys::RewrapRunId;

    use super::context::{require_user, services};

    let (user, _) = require_user().await?;
    let run = RewrapRunId::parse(&job_id).ok_or(AppError::NotFound)?;
    let run = services()?
        .rewrap
        .status(user.id, run)
        .ok_or(AppError::NotFound)?;
    Ok(run.into())
}

#[server(endpoint = "keys/receipts")]
pub async fn key_receipts() -> Result<Vec<KeyReceipt>, AppError> {
    use super::context::{require_user, services};

    const MAX_RECEIPTS: u64 = 100;
    let (user, _) = require_user().await?;
    let receipts = services()?.vault.receipts(user.id, MAX_RECEIPTS).await?;
    Ok(receipts.into_iter().map(KeyReceipt::from).collect())
}

#[server(endpoint = "admin/kms")]
pub async fn kms_status() -> Result<KmsOverview, AppError> {
    use super::context::{require_admin_reader, services};

    let reader = require_admin_reader().await?;
    Ok(services()?.vault.kms_status(&reader).await.into())
}

/// Adds a new master key version (local KMS); new and re-wrapped keys use it.
#[server(endpoint = "admin/kms-rotate")]
pub async fn rotate_master_key() -> Result<KmsOverview, AppError> {
    use super::context::{request_meta, require_admin_proof, services};

    let admin = require_admin_proof().await?;
    let status = services()?
        .vault
        .rotate_master_key(&admin, request_meta())
        .await
        .inspect_err(|e| tracing::warn!(error = %e, "master key rotation failed"))?;
    Ok(status.into())
}

#[server(endpoint = "admin/rewrap-all")]
pub async fn rewrap_all_keys() -> Result<String, AppError> {
    use domain::keys::RewrapScope;

    use super::context::{request_meta, require_admin_proof, services};

    let admin = require_admin_proof().await?;
    let run = services()?
        .rewrap
        .start(RewrapScope::All(admin), request_meta());
    Ok(run.to_string())
}

/// The decoys and whose vault they sit in: an admin action (security-key window), since the
/// list tells an insider exactly which keys to avoid.
#[server(endpoint = "admin/canaries")]
pub async fn list_canaries() -> Result<Vec<KeyView>, AppError> {
    use super::context::{require_admin_proof, services};

    let admin = require_admin_proof().await?;
    let services = services()?;
    let vault = &services.vault;
    let canaries = vault.canaries(&admin).await?;
    Ok(canaries
        .into_iter()
        .map(|canary| {
            let mut view =
                KeyView::new(&canary.record, vault.wrapped_under_current(&canary.record));
            view.owner_email = canary.owner_email.map(|e| e.as_str().to_owned());
            view.last_used_at = canary.last_tripped_at.map(domain::audit::canonical_time);
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
    use domain::account::{AccountError, Email};
    use domain::exchange::{ExchangeName, KeyEnvironment};
    use domain::keys::KeyLabel;

    use super::context::{request_meta, require_admin_proof, services};

    let admin = require_admin_proof().await?;
    // A look-up of an existing account, so addresses older than the ASCII rule still match.
    let owner = Email::from_stored(&owner_email).ok_or(AccountError::Invalid(
        domain::account::ValidationError::Email,
    ))?;
    let planted = services()?
        .vault
        .plant_canary(
            &admin,
            &owner,
            KeyLabel::parse(&label)?,
            ExchangeName::parse(&exchange)?,
            KeyEnvironment::parse(&environment)?,
            request_meta(),
        )
        .await?;
    let mut view = support::view(&planted.record)?;
    view.owner_email = Some(planted.owner_email.as_str().to_owned());
    Ok(view)
}

/// Security alerts, like every admin action, need the admin's security-key window: they name
/// decoys and the users who touched them.
#[server(endpoint = "admin/alerts")]
pub async fn list_alerts() -> Result<Vec<AlertView>, AppError> {
    use super::context::{require_admin_proof, services};

    let admin = require_admin_proof().await?;
    let alerts = services()?.security_alerts.list(&admin).await?;
    Ok(alerts.into_iter().map(AlertView::from).collect())
}

#[server(endpoint = "admin/alert-ack")]
pub async fn acknowledge_alert(alert_id: String) -> Result<(), AppError> {
    use super::context::{request_meta, require_admin_proof, services};

    let admin = require_admin_proof().await?;
    let id = uuid::Uuid::parse_str(alert_id.trim()).map_err(|_| AppError::NotFound)?;
    use domain::alerts::AcknowledgeError;
    services()?
        .security_alerts
        .acknowledge(&admin, id, request_meta())
        .await
        .map_err(|e| match e {
            AcknowledgeError::NotFound => AppError::NotFound,
            AcknowledgeError::AboutYou => {
                AppError::Conflict("This alert is about you: another admin acknowledges it.".into())
            }
            AcknowledgeError::Store(e) => e.into(),
        })?;
    Ok(())
}

/// How many unacknowledged alerts there are (admins only; others see zero).
#[server(endpoint = "alerts/open-count")]
pub async fn open_alert_count() -> Result<u32, AppError> {
    use super::context::{current_user, services};

    let Some((user, _)) = current_user().await? else {
        return Ok(0);
    };
    let services = services()?;
    let reader = match services.accounts.admin_reader(user.id).await {
        Ok(reader) => reader,
        Err(domain::account::AccountError::Forbidden) => return Ok(0),
        Err(other) => return Err(other.into()),
    };
    Ok(services.security_alerts.open_count(&reader).await?)
}
