//! A trader's key history as they see it: each use with its purpose, additions, checks,
//! re-wraps and revocations, read from the audit log. A decoy must look like any key to its
//! "owner" (who may be the intruder): its planting reads as an addition and its trips are not
//! shown.

use time::OffsetDateTime;

use super::{KeyRecord, KeyVaultError, KeyVaultService};
use crate::audit::{ActorKind, AuditEvent, Outcome};
use crate::audit_action::AuditAction;
use crate::ids::{KeyId, UserId};

/// What happened to a key, with the details the trader is shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReceiptKind {
    /// Decrypted for a purpose (an order, a permission check).
    Used {
        purpose: Option<String>,
    },
    UseFailed {
        error: Option<String>,
    },
    Added,
    /// A permission check; `suspended_because` when it suspended the key.
    Checked {
        suspended_because: Option<String>,
    },
    Rewrapped {
        from: String,
        to: String,
    },
    Revoked,
    /// Another event about the key, named by its action.
    Other,
}

/// One line of a key's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyReceipt {
    pub seq: i64,
    pub at: OffsetDateTime,
    pub key: KeyId,
    pub key_label: String,
    pub key_mask: String,
    /// The action as the trader is shown it (a decoy's planting reads as `vault.key_added`).
    pub action: String,
    pub kind: ReceiptKind,
    pub outcome: Outcome,
    pub ip: Option<String>,
}

impl KeyReceipt {
    /// The receipt `event` gives for `key`, if the trader is shown one.
    pub fn of(event: AuditEvent, key: &KeyRecord) -> Option<Self> {
        let detail = |name: &str| {
            event
                .details
                .get(name)
                .and_then(|v| v.as_str())
                .map(str::to_owned)
        };
        let action = match AuditAction::parse(&event.action) {
            // Decoy trips are for operators; the key's "owner" may be the intruder.
            Some(AuditAction::SecurityCanaryTripped) => return None,
            Some(AuditAction::VaultCanaryPlanted) => Some(AuditAction::VaultKeyAdded),
            known => known,
        };
        let kind = match action {
            Some(AuditAction::VaultKeyUsed) => ReceiptKind::Used {
                purpose: detail("purpose"),
            },
            Some(AuditAction::VaultKeyUseFailed) => ReceiptKind::UseFailed {
                error: detail("error"),
            },
            Some(AuditAction::VaultKeyAdded) => ReceiptKind::Added,
            Some(AuditAction::VaultKeyChecked) => ReceiptKind::Checked {
                suspended_because: detail("reason"),
            },
            Some(AuditAction::VaultKeyRewrapped) => ReceiptKind::Rewrapped {
                from: detail("from").unwrap_or_default(),
                to: detail("to").unwrap_or_default(),
            },
            Some(AuditAction::VaultKeyRevoked) => ReceiptKind::Revoked,
            _ => ReceiptKind::Other,
        };
        Some(Self {
            seq: event.seq,
            at: event.occurred_at,
            key: key.id,
            key_label: key.label.clone(),
            key_mask: key.mask.clone(),
            ip: shown_ip(&event, key, &kind),
            action: action.map_or(event.action, |a| a.as_str().to_owned()),
            kind,
            outcome: event.outcome,
        })
    }
}

/// The address an event came from, shown only when the owner (or their agent token) acted:
/// an admin's address is theirs to keep, and on "added" a decoy's would be an admin's where a
/// real key's is the owner's, so no addition shows one.
fn shown_ip(event: &AuditEvent, key: &KeyRecord, kind: &ReceiptKind) -> Option<String> {
    let by_owner = match event.actor.kind {
        ActorKind::User => event.actor.user_id() == Some(key.owner),
        // A token only ever acts on its owner's keys.
        ActorKind::Agent => true,
        ActorKind::System | ActorKind::Anonymous => false,
    };
    (by_owner && *kind != ReceiptKind::Added)
        .then(|| event.meta.ip.clone())
        .flatten()
}

impl KeyVaultService {
    /// The owner's key-use receipts and other key events, newest first.
    pub async fn receipts(
        &self,
        owner: UserId,
        limit: u64,
    ) -> Result<Vec<KeyReceipt>, KeyVaultError> {
        let keys = self.keys.list(owner).await?;
        let resources: Vec<String> = keys.iter().map(|k| k.id.resource()).collect();
        let events = self.audit.for_resources(&resources, limit).await?;
        Ok(events
            .into_iter()
            .filter_map(|event| {
                let resource = event.resource.as_deref()?;
                let key = keys.iter().find(|k| k.id.resource() == resource)?;
                KeyReceipt::of(event, key)
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use uuid::Uuid;

    use super::*;
    use crate::audit::{Actor, ChainHash, RequestMeta};
    use crate::exchange::{ExchangeName, KeyEnvironment, KeyPermissions};
    use crate::keys::{KeyScope, KeyStatus};

    fn key() -> KeyRecord {
        KeyRecord {
            id: KeyId(Uuid::from_u128(1)),
            owner: UserId(Uuid::from_u128(2)),
            exchange: ExchangeName::Paper,
            environment: KeyEnvironment::Paper,
            scope: KeyScope::Trade,
            label: "Bot".into(),
            mask: "••••abcd".into(),
            status: KeyStatus::Active,
            status_reason: None,
            permissions: KeyPermissions::default(),
            kms_key_id: Some("local:v1".into()),
            created_at: OffsetDateTime::UNIX_EPOCH,
            last_used_at: None,
            last_checked_at: None,
            revoked_at: None,
        }
    }

    fn event(action: &str, details: serde_json::Value) -> AuditEvent {
        AuditEvent {
            seq: 7,
            occurred_at: OffsetDateTime::UNIX_EPOCH,
            actor: Actor::system("test"),
            action: action.into(),
            resource: Some(key().id.resource()),
            outcome: Outcome::Success,
            meta: RequestMeta::default(),
            details,
            prev_hash: ChainHash::GENESIS,
            hash: ChainHash::GENESIS,
        }
    }

    #[test]
    fn a_use_receipt_names_its_purpose() {
        let receipt = KeyReceipt::of(
            event("vault.key_used", json!({"purpose": "order 42"})),
            &key(),
        )
        .expect("shown");
        assert_eq!(receipt.action, "vault.key_used");
        assert_eq!(
            receipt.kind,
            ReceiptKind::Used {
                purpose: Some("order 42".into())
            }
        );
        assert_eq!((receipt.key_label.as_str(), receipt.seq), ("Bot", 7));
    }

    #[test]
    fn a_decoy_reads_as_an_ordinary_key_to_its_owner() {
        let planted =
            KeyReceipt::of(event("vault.canary_planted", json!({})), &key()).expect("shown");
        assert_eq!(planted.action, "vault.key_added");
        assert_eq!(planted.kind, ReceiptKind::Added);
        assert_eq!(
            KeyReceipt::of(event("security.canary_tripped", json!({})), &key()),
            None
        );
    }

    #[test]
    fn only_the_owners_own_address_is_shown_and_never_on_an_addition() {
        let from = |actor: Actor, action: &str| {
            let mut e = event(action, json!({}));
            e.actor = actor;
            e.meta.ip = Some("203.0.113.7".into());
            KeyReceipt::of(e, &key()).expect("shown").ip
        };
        let owner = Actor::user(key().owner);
        let admin = Actor::user(UserId(Uuid::from_u128(3)));
        assert_eq!(
            from(owner.clone(), "vault.key_used").as_deref(),
            Some("203.0.113.7")
        );
        assert_eq!(from(admin.clone(), "vault.key_rewrapped"), None);
        assert_eq!(from(Actor::system("recheck"), "vault.key_checked"), None);
        // A real key is added by its owner, a decoy planted by an admin: neither shows one.
        assert_eq!(from(owner, "vault.key_added"), None);
        assert_eq!(from(admin, "vault.canary_planted"), None);
    }

    #[test]
    fn a_check_that_suspended_the_key_says_why_and_unknown_events_keep_their_name() {
        let check = KeyReceipt::of(
            event("vault.key_checked", json!({"reason": "It can withdraw."})),
            &key(),
        )
        .expect("shown");
        assert_eq!(
            check.kind,
            ReceiptKind::Checked {
                suspended_because: Some("It can withdraw.".into())
            }
        );
        let other = KeyReceipt::of(event("vault.something_new", json!({})), &key()).expect("shown");
        assert_eq!(
            (other.action.as_str(), other.kind),
            ("vault.something_new", ReceiptKind::Other)
        );
    }
}
