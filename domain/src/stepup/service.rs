//! The step-up service: the admin proof, the factor summary, step-up itself and the factor
//! reset. Each factor's own use cases live beside it (totp, recovery, security_key, approval).

use std::sync::Arc;

use rust_decimal::Decimal;
use time::Duration;
use webauthn_rs::prelude::{PasskeyAuthentication, PublicKeyCredential, Webauthn};

use super::{
    FactorStore, SecurityKey, SensitiveAction, StepUpError, StepUpGrant, StepUpMethod,
    StepUpPolicy, TotpCode,
};
use crate::account::{AccountStore, UserId};
use crate::alerts::SecurityAlerts;
use crate::audit::{Actor, AuditDraft, AuditLog, Outcome, RequestMeta};
use crate::audit_action::AuditAction;
use crate::clock::Clock;
use crate::vault::Kms;

/// What the security page shows about a user's factors.
#[derive(Debug, Clone)]
pub struct FactorSummary {
    pub totp_enabled: bool,
    pub totp_pending: bool,
    pub recovery_codes_left: u32,
    pub security_keys: Vec<SecurityKey>,
}

impl FactorSummary {
    pub fn has_any(&self) -> bool {
        self.totp_enabled || self.has_usable_key()
    }

    /// A registered key that is not disabled (after a counter regression).
    pub fn has_usable_key(&self) -> bool {
        self.security_keys.iter().any(|k| k.flagged_at.is_none())
    }
}

/// Which factors a user can step up with right now: what a page or a check needs to know,
/// read in one statement rather than the three of a [`FactorSummary`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UsableFactors {
    /// A confirmed authenticator app.
    pub totp: bool,
    /// A security key that is not disabled.
    pub security_key: bool,
}

impl UsableFactors {
    pub fn any(&self) -> bool {
        self.totp || self.security_key
    }
}

/// A second-factor proof offered for a step-up or an order approval.
pub enum FactorProof<'a> {
    Totp(&'a TotpCode),
    RecoveryCode(&'a str),
    SecurityKey {
        credential: &'a PublicKeyCredential,
        state: &'a PasskeyAuthentication,
    },
}

/// The ports the step-up service uses.
#[derive(Debug, Clone)]
pub struct StepUpPorts {
    pub store: Arc<dyn FactorStore>,
    /// Seals the TOTP secret like an exchange key.
    pub kms: Arc<dyn Kms>,
    pub audit: Arc<dyn AuditLog>,
    pub clock: Arc<dyn Clock>,
    /// A cloned key is an incident for operators, not only a refusal.
    pub alerts: Arc<dyn SecurityAlerts>,
    /// Roles are read from here when an admin proof is issued.
    pub accounts: Arc<dyn AccountStore>,
}

#[derive(Debug, Clone)]
pub struct StepUpService {
    pub(super) store: Arc<dyn FactorStore>,
    pub(super) kms: Arc<dyn Kms>,
    pub(super) audit: Arc<dyn AuditLog>,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) webauthn: Arc<Webauthn>,
    pub(super) policy: StepUpPolicy,
    pub(super) alerts: Arc<dyn SecurityAlerts>,
    accounts: Arc<dyn AccountStore>,
}

/// The privilege window a grant opens, as the security page shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrivilegeWindow {
    /// How the window was opened and the seconds left in it, while it is open.
    pub open: Option<(StepUpMethod, i64)>,
    /// It allows admin actions (a user-verified security key).
    pub admin_grade: bool,
    /// How long a step-up keeps the session privileged.
    pub length: Duration,
}

pub(super) fn draft(
    user: UserId,
    action: AuditAction,
    outcome: Outcome,
    meta: &RequestMeta,
) -> AuditDraft {
    AuditDraft::new(Actor::user(user), action, outcome, meta.clone())
        .resource(format!("user:{user}"))
}

impl StepUpService {
    pub fn new(ports: StepUpPorts, webauthn: Arc<Webauthn>, policy: StepUpPolicy) -> Self {
        let StepUpPorts {
            store,
            kms,
            audit,
            clock,
            alerts,
            accounts,
        } = ports;
        Self {
            store,
            kms,
            audit,
            clock,
            webauthn,
            policy,
            alerts,
            accounts,
        }
    }

    /// Whether `grant` still covers `action` now.
    pub fn check_window(
        &self,
        grant: Option<&StepUpGrant>,
        action: SensitiveAction,
    ) -> Result<(), StepUpError> {
        self.policy.check(grant, action, self.clock.now())
    }

    /// The window `grant` opened, as it stands now.
    pub fn window(&self, grant: Option<&StepUpGrant>) -> PrivilegeWindow {
        let now = self.clock.now();
        PrivilegeWindow {
            open: grant.and_then(|g| Some((g.method, self.policy.remaining(g, now)?))),
            admin_grade: self
                .policy
                .check(grant, SensitiveAction::Administer, now)
                .is_ok(),
            length: self.policy.window,
        }
    }

    /// Orders with a notional above this need an approval bound to the order.
    pub fn order_threshold(&self) -> Decimal {
        self.policy.order_threshold
    }

    /// Whether this session may add a second factor; a refusal says what is missing.
    ///
    /// With factors already, a step-up (so a stolen session cannot add the thief's factor), with
    /// the account's security key if it has a usable one (see [`Self::check_lasting_change`]);
    /// for the first one, a sign-in within the window (`signed_in_at`, unix seconds).
    pub async fn authorize_enrolment(
        &self,
        user: UserId,
        grant: Option<&StepUpGrant>,
        signed_in_at: i64,
    ) -> Result<(), StepUpError> {
        let factors = self.usable_factors(user).await?;
        if factors.any() {
            return self.check_lasting_change(factors, grant);
        }
        self.require_recent_sign_in(signed_in_at)
    }

    /// Whether this session may turn the authenticator app off or replace the recovery codes.
    pub async fn authorize_factor_change(
        &self,
        user: UserId,
        grant: Option<&StepUpGrant>,
    ) -> Result<(), StepUpError> {
        let factors = self.usable_factors(user).await?;
        self.check_lasting_change(factors, grant)
    }

    /// Whether `grant` covers a change that outlasts the window: the account's factors, an agent
    /// token, autonomous agent orders. A step-up within the window; on an account with a usable
    /// security key (`factors`), one made with that key. Otherwise one phished TOTP code would
    /// be lasting power over an account its owner protects with a key: ten new recovery codes
    /// (each approves a large order and opens a new window), the thief's app in place of the
    /// owner's, or a bot trading for them.
    pub fn check_lasting_change(
        &self,
        factors: UsableFactors,
        grant: Option<&StepUpGrant>,
    ) -> Result<(), StepUpError> {
        let action = if factors.security_key {
            SensitiveAction::ManageKeys
        } else {
            SensitiveAction::ManageFactors
        };
        self.check_window(grant, action)
    }

    /// A sign-in at `signed_in_at` (unix seconds) at most one window ago, and not in the future.
    pub(super) fn require_recent_sign_in(&self, signed_in_at: i64) -> Result<(), StepUpError> {
        let age = self.clock.now().unix_timestamp() - signed_in_at;
        if (0..=self.policy.window.whole_seconds()).contains(&age) {
            Ok(())
        } else {
            Err(StepUpError::RecentSignInRequired)
        }
    }

    /// Proof that `user` is an admin whose privilege window was opened with a user-verified
    /// security key (the role is read from the store, the window from the session's grant).
    pub async fn admin(
        &self,
        user: UserId,
        grant: Option<&StepUpGrant>,
    ) -> Result<crate::authz::Admin, StepUpError> {
        let is_admin = self
            .accounts
            .find_user(user)
            .await?
            .is_some_and(|found| found.role == crate::account::Role::Admin);
        if !is_admin {
            return Err(StepUpError::Forbidden);
        }
        self.policy
            .check(grant, SensitiveAction::Administer, self.clock.now())?;
        Ok(crate::authz::Admin::new(user))
    }

    pub(super) async fn audit_only(&self, draft: AuditDraft) -> Result<(), StepUpError> {
        self.audit
            .record(draft)
            .await
            .map(|_| ())
            .map_err(|_| StepUpError::AuditUnavailable)
    }

    pub async fn usable_factors(&self, user: UserId) -> Result<UsableFactors, StepUpError> {
        Ok(self.store.usable_factors(user).await?)
    }

    pub async fn summary(&self, user: UserId) -> Result<FactorSummary, StepUpError> {
        let totp = self.store.totp(user).await?;
        Ok(FactorSummary {
            totp_enabled: totp.as_ref().is_some_and(|t| t.confirmed),
            totp_pending: totp.as_ref().is_some_and(|t| !t.confirmed),
            recovery_codes_left: self.store.recovery_codes_left(user).await?,
            security_keys: self.store.security_keys(user).await?,
        })
    }

    /// Removes every second factor of `user`, for someone who lost them all (run by an operator
    /// after checking who is asking). Returns how many keys and whether an app was removed.
    pub async fn reset_factors(
        &self,
        user: UserId,
        actor: Actor,
        meta: RequestMeta,
    ) -> Result<(usize, bool), StepUpError> {
        let by = |action: AuditAction| {
            AuditDraft::new(actor.clone(), action, Outcome::Success, meta.clone())
                .resource(format!("user:{user}"))
                .detail("reason", "factor reset")
        };
        let mut keys = 0;
        for key in self.store.security_keys(user).await? {
            if self
                .store
                .remove_security_key(
                    user,
                    key.id,
                    by(AuditAction::StepupKeyRemoved).detail("key", key.id.to_string()),
                )
                .await?
            {
                keys += 1;
            }
        }
        let totp = self
            .store
            .remove_totp(user, by(AuditAction::StepupTotpRemoved))
            .await?;
        Ok((keys, totp))
    }

    /// Verifies a proof and returns the grant that opens the privilege window.
    pub async fn step_up(
        &self,
        user: UserId,
        proof: FactorProof<'_>,
        meta: RequestMeta,
    ) -> Result<StepUpGrant, StepUpError> {
        let (method, user_verified) = self.verify(user, proof, "step-up", &meta).await?;
        Ok(StepUpGrant {
            method,
            user_verified,
            at: self.clock.now().unix_timestamp(),
        })
    }

    pub(super) async fn verify(
        &self,
        user: UserId,
        proof: FactorProof<'_>,
        purpose: &str,
        meta: &RequestMeta,
    ) -> Result<(StepUpMethod, bool), StepUpError> {
        match proof {
            FactorProof::Totp(code) => {
                self.verify_totp(user, code, purpose, meta).await?;
                Ok((StepUpMethod::Totp, false))
            }
            FactorProof::RecoveryCode(code) => {
                self.verify_recovery_code(user, code, purpose, meta).await?;
                Ok((StepUpMethod::RecoveryCode, false))
            }
            FactorProof::SecurityKey { credential, state } => {
                let result = self
                    .verify_key(user, credential, state, purpose, meta)
                    .await?;
                Ok((StepUpMethod::SecurityKey, result.user_verified()))
            }
        }
    }
}
