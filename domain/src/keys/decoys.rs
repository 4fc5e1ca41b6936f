//! Decoy keys (canaries): planted by an admin in a user's vault, they look like any key, are
//! never decrypted, and raise an alert whenever someone tries to use or revoke them.

use time::OffsetDateTime;

use super::KeyInputError;
use super::{KeyLabel, KeyRecord, KeyScope, KeyStatus, KeyVaultError, KeyVaultService};
use crate::account::Email;
use crate::audit::{Actor, RequestMeta};
use crate::authz::Admin;
use crate::exchange::{ApiCredentials, ExchangeName, KeyEnvironment, KeyPermissions};
use crate::ids::KeyId;

/// A decoy as the admin's list shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Canary {
    pub record: KeyRecord,
    pub owner_email: Option<Email>,
    /// When it last set off an alert: a decoy is never decrypted, so this is its "last used".
    pub last_tripped_at: Option<OffsetDateTime>,
}

/// A decoy just planted, and whose vault it sits in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlantedCanary {
    pub record: KeyRecord,
    pub owner_email: Email,
}

impl KeyVaultService {
    /// Plants a decoy key in the vault of the user with `owner`'s email. Any later attempt to
    /// use it raises an alert.
    pub async fn plant_canary(
        &self,
        admin: &Admin,
        owner: &Email,
        label: KeyLabel,
        exchange: ExchangeName,
        environment: KeyEnvironment,
        meta: RequestMeta,
    ) -> Result<PlantedCanary, KeyVaultError> {
        let owner = self
            .accounts
            .find_credentials(owner)
            .await?
            .ok_or(KeyVaultError::UnknownOwner)?
            .user;
        if !exchange.environments().contains(&environment) {
            return Err(KeyInputError::Environment(exchange, environment).into());
        }
        let credentials = ApiCredentials::random_decoy();
        let now = self.clock.now();
        let record = KeyRecord {
            id: KeyId::new_random(),
            owner: owner.id,
            exchange,
            environment,
            scope: KeyScope::Trade,
            label: label.as_str().to_owned(),
            mask: credentials.mask(),
            status: KeyStatus::Active,
            status_reason: None,
            permissions: KeyPermissions {
                can_read: true,
                can_trade: true,
                can_withdraw: false,
                ip_restricted: false,
            },
            kms_key_id: None,
            created_at: now,
            last_used_at: None,
            last_checked_at: Some(now),
            revoked_at: None,
        };
        let record = self
            .store_sealed(record, &credentials, true, Actor::user(admin.id()), meta)
            .await?;
        Ok(PlantedCanary {
            record,
            owner_email: owner.email,
        })
    }

    /// Every decoy, newest first, with its owner and when it last set off an alert. An admin
    /// action (security-key window), since the list tells an insider which keys to avoid.
    pub async fn canaries(&self, _admin: &Admin) -> Result<Vec<Canary>, KeyVaultError> {
        /// How far back the alerts are searched for a decoy's last trip.
        const ALERTS_SEARCHED: u64 = 1000;
        let records = self.keys.canaries().await?;
        let owners: Vec<_> = records.iter().map(|c| c.owner).collect();
        let emails = self.accounts.emails(&owners).await?;
        let alerts = self.alerts.recent(ALERTS_SEARCHED).await?;
        Ok(records
            .into_iter()
            .map(|record| {
                let resource = record.id.resource();
                Canary {
                    owner_email: emails.get(&record.owner).cloned(),
                    last_tripped_at: alerts
                        .iter()
                        .filter(|a| a.resource.as_deref() == Some(resource.as_str()))
                        .map(|a| a.raised_at)
                        .max(),
                    record,
                }
            })
            .collect())
    }
}
