//! Security keys and passkeys (WebAuthn): ceremony state, registration, assertions (a counter
//! that goes backwards disables the key and raises an alert), and who may add or remove one.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;
use webauthn_rs::prelude::{
    AuthenticationResult, CreationChallengeResponse, Credential, Passkey, PasskeyAuthentication,
    PasskeyRegistration, PublicKeyCredential, RegisterPublicKeyCredential,
    RequestChallengeResponse, WebauthnError,
};

use super::service::draft;
use super::{Assurance, SensitiveAction, StepUpError, StepUpGrant, StepUpService};
use crate::account::{User, UserId};
use crate::alerts::SecurityAlert;
use crate::audit::{Outcome, RequestMeta};
use crate::audit_action::AuditAction;
use crate::store_error::StoreError;

/// How long a WebAuthn ceremony (registration or authentication) may take, from the options
/// to the answer. An answer after that is refused and the ceremony must start again.
pub const CEREMONY_LIFETIME: Duration = Duration::minutes(5);

/// How many times one answer is judged again after losing the write to another use of the
/// same key at the same instant; each loss means a higher stored counter.
const KEY_USE_ROUNDS: usize = 4;
const KEY_OVERTAKEN: &str = "another use of the key was saved while this one was checked";
const KEY_GONE: &str = "the key was disabled or removed while it was used";
const KEY_CHALLENGE_ANSWERED: &str = "this challenge was already answered with the key";

/// Ceremony state as kept in the server-side session, with when it began: the session outlives
/// a ceremony, so the state carries its own expiry.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ceremony<T> {
    state: T,
    /// Unix seconds.
    started_at: i64,
}

impl<T> Ceremony<T> {
    pub fn start(state: T, now: OffsetDateTime) -> Self {
        Self {
            state,
            started_at: now.unix_timestamp(),
        }
    }

    /// The state, if the ceremony began at most [`CEREMONY_LIFETIME`] ago (and not in the
    /// future); otherwise `NoCeremony`.
    pub fn live(self, now: OffsetDateTime) -> Result<T, StepUpError> {
        let age = now.unix_timestamp() - self.started_at;
        if (0..=CEREMONY_LIFETIME.whole_seconds()).contains(&age) {
            Ok(self.state)
        } else {
            Err(StepUpError::NoCeremony)
        }
    }
}

/// A registered security key or passkey. `credential` is webauthn-rs's `Passkey` as JSON: it
/// holds the public key and the signature counter, nothing secret.
#[derive(Debug, Clone)]
pub struct SecurityKey {
    pub id: Uuid,
    pub user: UserId,
    pub name: String,
    pub credential_id: String,
    pub credential: String,
    pub created_at: OffsetDateTime,
    pub last_used_at: Option<OffsetDateTime>,
    /// Set when the key's counter went backwards; a flagged key is never accepted again.
    pub flagged_at: Option<OffsetDateTime>,
    /// The fingerprint of the challenge it last answered ([`challenge_fingerprint`]).
    pub last_challenge: Option<String>,
}

/// A SHA-256 of the ceremony state (which holds the random challenge), hex: what a key's use
/// records so that one challenge is answered once, even by two requests at the same instant.
fn challenge_fingerprint(state: &PasskeyAuthentication) -> Result<String, StepUpError> {
    let state = serde_json::to_vec(state)
        .map_err(|e| StepUpError::Internal(format!("ceremony state: {e}")))?;
    Ok(hex::encode(Sha256::digest(state)))
}

impl SecurityKey {
    fn passkey(&self) -> Result<Passkey, StepUpError> {
        serde_json::from_str(&self.credential)
            .map_err(|e| StepUpError::Internal(format!("stored credential: {e}")))
    }
}

/// A key's name as typed: 1 to 40 printable characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyName(String);

impl KeyName {
    pub fn parse(raw: &str) -> Result<Self, StepUpError> {
        let name = raw.trim();
        if name.is_empty() || name.chars().count() > 40 || !crate::text::is_plain(name) {
            return Err(StepUpError::InvalidKeyName);
        }
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Adding or removing a security key (see [`StepUpService::authorize_key_change`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyChange {
    Add,
    Remove,
}

impl KeyChange {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyChange::Add => "add",
            KeyChange::Remove => "remove",
        }
    }
}

impl StepUpService {
    pub async fn begin_key_registration(
        &self,
        user: &User,
    ) -> Result<(CreationChallengeResponse, PasskeyRegistration), StepUpError> {
        let existing = self.store.security_keys(user.id).await?;
        let mut exclude = Vec::new();
        for key in &existing {
            exclude.push(key.passkey()?.cred_id().clone());
        }
        self.webauthn
            .start_passkey_registration(
                user.id.0,
                user.email.as_str(),
                user.email.as_str(),
                Some(exclude),
            )
            .map_err(|e| StepUpError::Internal(format!("webauthn registration: {e}")))
    }

    pub async fn finish_key_registration(
        &self,
        user: UserId,
        name: KeyName,
        response: &RegisterPublicKeyCredential,
        state: &PasskeyRegistration,
        meta: RequestMeta,
    ) -> Result<SecurityKey, StepUpError> {
        let passkey = match self.webauthn.finish_passkey_registration(response, state) {
            Ok(passkey) => passkey,
            Err(e) => {
                self.audit_only(
                    draft(
                        user,
                        AuditAction::StepupKeyRegistrationFailed,
                        Outcome::Failure,
                        &meta,
                    )
                    .detail("reason", webauthn_reason(&e)),
                )
                .await?;
                return Err(StepUpError::KeyRejected);
            }
        };
        let credential_id = base64_url(passkey.cred_id().as_ref());
        if self.store.credential_registered(&credential_id).await? {
            self.audit_only(
                draft(
                    user,
                    AuditAction::StepupKeyRegistrationFailed,
                    Outcome::Denied,
                    &meta,
                )
                .detail("reason", "credential already registered"),
            )
            .await?;
            return Err(StepUpError::KeyAlreadyRegistered);
        }
        let key = SecurityKey {
            id: Uuid::new_v4(),
            user,
            name: name.as_str().to_owned(),
            credential_id,
            credential: serde_json::to_string(&passkey)
                .map_err(|e| StepUpError::Internal(format!("credential: {e}")))?,
            created_at: self.clock.now(),
            last_used_at: None,
            flagged_at: None,
            last_challenge: None,
        };
        self.store
            .insert_security_key(
                &key,
                draft(
                    user,
                    AuditAction::StepupKeyRegistered,
                    Outcome::Success,
                    &meta,
                )
                .detail("key", key.id.to_string())
                .detail("name", key.name.clone()),
            )
            .await
            .map_err(|e| match e {
                StoreError::Conflict => StepUpError::KeyAlreadyRegistered,
                other => other.into(),
            })?;
        Ok(key)
    }

    /// Starts an assertion over the user's usable keys. `None` when they have none.
    pub async fn begin_key_authentication(
        &self,
        user: UserId,
    ) -> Result<Option<(RequestChallengeResponse, PasskeyAuthentication)>, StepUpError> {
        let mut passkeys = Vec::new();
        for key in self.store.security_keys(user).await? {
            if key.flagged_at.is_none() {
                passkeys.push(key.passkey()?);
            }
        }
        if passkeys.is_empty() {
            return Ok(None);
        }
        self.webauthn
            .start_passkey_authentication(&passkeys)
            .map(Some)
            .map_err(|e| StepUpError::Internal(format!("webauthn authentication: {e}")))
    }

    /// Verifies an assertion; saves the new counter, or flags the key when it went backwards.
    ///
    /// The key is the one webauthn-rs verified: the credential named by `rawId` (the result's
    /// `cred_id()`), never the response's free-text `id`. A response whose `id` is not its
    /// `rawId` is refused, so flags, counters and audit events always name the key that signed.
    pub(super) async fn verify_key(
        &self,
        user: UserId,
        credential: &PublicKeyCredential,
        state: &PasskeyAuthentication,
        purpose: &str,
        meta: &RequestMeta,
    ) -> Result<AuthenticationResult, StepUpError> {
        let keys = self.store.security_keys(user).await?;
        let raw_id = base64_url(&credential.raw_id);
        let key = keys.iter().find(|k| k.credential_id == raw_id);
        if key.is_some_and(|k| k.flagged_at.is_some()) {
            self.audit_only(
                draft(user, AuditAction::StepupKeyFailed, Outcome::Denied, meta)
                    .detail("purpose", purpose)
                    .detail("credential", raw_id.clone())
                    .detail("reason", "key disabled after a counter regression"),
            )
            .await?;
            return Err(StepUpError::KeyRejected);
        }
        match self
            .webauthn
            .finish_passkey_authentication(credential, state)
        {
            Ok(result) => {
                let verified_id = base64_url(result.cred_id().as_ref());
                let key = keys.iter().find(|k| k.credential_id == verified_id);
                let key = match key {
                    Some(key) if credential.id == verified_id => key,
                    _ => {
                        // Signed by a key of this user, but the response names another
                        // credential (or none of theirs): nothing is recorded against any key.
                        self.audit_only(
                            draft(user, AuditAction::StepupKeyFailed, Outcome::Denied, meta)
                                .detail("purpose", purpose)
                                .detail("credential", verified_id)
                                .detail("reason", "the response's id is not the key that signed"),
                        )
                        .await?;
                        return Err(StepUpError::KeyRejected);
                    }
                };
                let mut key = key.clone();
                let challenge = challenge_fingerprint(state)?;
                // Each round that loses the race to another use of the key reads a higher
                // stored counter or another challenge, so this ends as a success or a refusal.
                for round in 0..KEY_USE_ROUNDS {
                    if key.last_challenge.as_deref() == Some(challenge.as_str()) {
                        // Two requests carrying one answer at once: the other one was saved.
                        return Err(self
                            .key_refused(user, &raw_id, purpose, meta, KEY_CHALLENGE_ANSWERED)
                            .await?);
                    }
                    let mut passkey = key.passkey()?;
                    // webauthn-rs compares the counter with the copy taken when the challenge
                    // was issued. A clone answering that challenge after the owner used the key
                    // in between counts above that copy, but not above the key as stored now.
                    let stored_counter = Credential::from(passkey.clone()).counter;
                    if (result.counter() != 0 || stored_counter != 0)
                        && result.counter() <= stored_counter
                    {
                        if round == 0 {
                            return Err(self
                                .counter_regressed(user, Some(&key), &raw_id, purpose, meta)
                                .await?);
                        }
                        // Overtaken by a use that counted further while this answer was being
                        // checked (two tabs answering at once): refused as stale, not taken for
                        // a clone, which its next use would show.
                        return Err(self
                            .key_refused(user, &raw_id, purpose, meta, KEY_OVERTAKEN)
                            .await?);
                    }
                    passkey.update_credential(&result);
                    let stored = serde_json::to_string(&passkey)
                        .map_err(|e| StepUpError::Internal(format!("credential: {e}")))?;
                    let recorded = self
                        .store
                        .record_security_key_use(
                            user,
                            key.id,
                            &key.credential,
                            key.last_challenge.as_deref(),
                            &stored,
                            &challenge,
                            self.clock.now(),
                            draft(
                                user,
                                AuditAction::StepupKeySucceeded,
                                Outcome::Success,
                                meta,
                            )
                            .detail("purpose", purpose)
                            .detail("key", key.id.to_string())
                            .detail("user_verified", result.user_verified())
                            .detail("counter", u64::from(result.counter())),
                        )
                        .await;
                    match recorded {
                        Ok(()) => return Ok(result),
                        // Another request carrying this answer was saved first.
                        Err(StoreError::Conflict) => {
                            return Err(self
                                .key_refused(user, &raw_id, purpose, meta, KEY_CHALLENGE_ANSWERED)
                                .await?);
                        }
                        // Used, disabled or removed since it was read (two answers at the same
                        // instant): judged again against the key as it is now, so the later
                        // write never moves the counter back.
                        Err(StoreError::NotFound) => {
                            match self
                                .store
                                .security_keys(user)
                                .await?
                                .into_iter()
                                .find(|k| k.id == key.id)
                            {
                                Some(now) if now.flagged_at.is_none() => key = now,
                                _ => break,
                            }
                        }
                        Err(other) => return Err(other.into()),
                    }
                }
                Err(self
                    .key_refused(user, &raw_id, purpose, meta, KEY_GONE)
                    .await?)
            }
            Err(WebauthnError::CredentialPossibleCompromise) => {
                // webauthn-rs found the credential by `rawId` and checked its signature before
                // comparing counters: that key is the one to disable, whatever `id` says.
                Err(self
                    .counter_regressed(user, key, &raw_id, purpose, meta)
                    .await?)
            }
            Err(e) => {
                self.audit_only(
                    draft(user, AuditAction::StepupKeyFailed, Outcome::Denied, meta)
                        .detail("purpose", purpose)
                        .detail("reason", webauthn_reason(&e)),
                )
                .await?;
                Err(StepUpError::KeyRejected)
            }
        }
    }

    /// Audits an answer from a known key that is refused without disabling it; returns the
    /// refusal to answer with.
    async fn key_refused(
        &self,
        user: UserId,
        raw_id: &str,
        purpose: &str,
        meta: &RequestMeta,
        reason: &str,
    ) -> Result<StepUpError, StepUpError> {
        self.audit_only(
            draft(user, AuditAction::StepupKeyFailed, Outcome::Denied, meta)
                .detail("purpose", purpose)
                .detail("credential", raw_id.to_owned())
                .detail("reason", reason.to_owned()),
        )
        .await?;
        Ok(StepUpError::KeyRejected)
    }

    /// Disables `key` (a signature whose counter did not move past the stored one: a sign of a
    /// cloned key), audits it and raises the alert; returns the refusal to answer with.
    async fn counter_regressed(
        &self,
        user: UserId,
        key: Option<&SecurityKey>,
        raw_id: &str,
        purpose: &str,
        meta: &RequestMeta,
    ) -> Result<StepUpError, StepUpError> {
        let regressed = draft(
            user,
            AuditAction::StepupKeyCounterRegressed,
            Outcome::Denied,
            meta,
        )
        .detail("purpose", purpose)
        .detail("credential", raw_id.to_owned());
        match key {
            Some(key) => {
                self.store
                    .flag_security_key(
                        user,
                        key.id,
                        self.clock.now(),
                        regressed.detail("key", key.id.to_string()),
                    )
                    .await?;
            }
            None => self.audit_only(regressed).await?,
        }
        self.raise_clone_alert(user, key, raw_id, meta).await?;
        Ok(StepUpError::CounterRegressed)
    }

    async fn raise_clone_alert(
        &self,
        user: UserId,
        key: Option<&SecurityKey>,
        credential_id: &str,
        meta: &RequestMeta,
    ) -> Result<(), StepUpError> {
        let name = key.map_or_else(
            || format!("with credential id {credential_id}"),
            |k| format!("\u{201c}{}\u{201d}", k.name),
        );
        let alert = SecurityAlert {
            id: Uuid::new_v4(),
            kind: "security_key_cloned".into(),
            message: format!(
                "Security key {name} of user {user} signed with a counter that went backwards (a sign of a cloned key), from {}. The key was disabled.",
                meta.ip
                    .clone()
                    .unwrap_or_else(|| "an unknown address".into())
            ),
            resource: Some(format!("user:{user}")),
            actor: Some(format!("user:{user}")),
            raised_at: self.clock.now(),
            acknowledged_at: None,
        };
        let mut audit = draft(
            user,
            AuditAction::SecurityKeyCloneSuspected,
            Outcome::Denied,
            meta,
        )
        .detail("credential", credential_id.to_owned())
        .detail("alert", alert.id.to_string());
        if let Some(key) = key {
            audit = audit.detail("key", key.id.to_string());
        }
        self.alerts.raise(alert, audit).await.map_err(|e| match e {
            StoreError::Backend(_) | StoreError::Unavailable(_) => StepUpError::AuditUnavailable,
            other => other.into(),
        })
    }

    /// Whether this session may add or remove a security key; a refusal is audited.
    ///
    /// With a usable (unflagged) key on the account, only a step-up with a user-verified key
    /// will do: a TOTP or recovery code cannot add a thief's key nor remove the owner's. With
    /// other factors only, any step-up, and to add a first key also a sign-in within the window
    /// (that key opens admin actions, now or once its owner is promoted). With no factor at all,
    /// a sign-in within the window. `signed_in_at` is the session's sign-in, unix seconds.
    pub async fn authorize_key_change(
        &self,
        user: &User,
        change: KeyChange,
        grant: Option<&StepUpGrant>,
        signed_in_at: i64,
        meta: &RequestMeta,
    ) -> Result<(), StepUpError> {
        let summary = self.summary(user.id).await?;
        let now = self.clock.now();
        let recent_sign_in = || self.require_recent_sign_in(signed_in_at);
        let first_key = !summary.has_usable_key();
        let verdict = if !first_key {
            self.policy.check(grant, SensitiveAction::ManageKeys, now)
        } else if summary.has_any() || change == KeyChange::Remove {
            self.policy
                .check(grant, SensitiveAction::ManageFactors, now)
                .and_then(|()| {
                    // Anyone's first key, not only an admin's: a key added from an app code
                    // would otherwise become admin-grade the day its owner is promoted.
                    if change == KeyChange::Add {
                        recent_sign_in()
                    } else {
                        Ok(())
                    }
                })
        } else {
            recent_sign_in()
        };
        if let Err(refused) = &verdict {
            let needs = match refused {
                StepUpError::Required(Assurance::SecurityKey) => "security-key",
                StepUpError::Required(Assurance::AnyFactor) => "any-factor",
                StepUpError::RecentSignInRequired => "recent-sign-in",
                _ => "other",
            };
            self.audit_only(
                draft(
                    user.id,
                    AuditAction::StepupKeyChangeRefused,
                    Outcome::Denied,
                    meta,
                )
                .detail("change", change.as_str())
                .detail("needs", needs)
                .detail("window_method", grant.map_or("none", |g| g.method.as_str())),
            )
            .await?;
        }
        verdict
    }

    /// Removes one of the user's keys. Needs a privilege window (`ManageFactors`).
    pub async fn remove_key(
        &self,
        user: UserId,
        id: Uuid,
        meta: RequestMeta,
    ) -> Result<(), StepUpError> {
        if self
            .store
            .remove_security_key(
                user,
                id,
                draft(user, AuditAction::StepupKeyRemoved, Outcome::Success, &meta)
                    .detail("key", id.to_string()),
            )
            .await?
        {
            Ok(())
        } else {
            Err(StepUpError::NotFound)
        }
    }
}

pub(super) fn base64_url(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A short, non-sensitive reason for the audit log.
fn webauthn_reason(e: &WebauthnError) -> String {
    let text = format!("{e:?}");
    text.chars().take(80).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn a_ceremony_is_answerable_for_five_minutes_and_not_from_the_future() {
        let at = datetime!(2026-11-28 12:00 UTC);
        let ceremony = || Ceremony::start("state", at);
        assert_eq!(ceremony().live(at).ok(), Some("state"));
        assert_eq!(
            ceremony().live(at + Duration::minutes(5)).ok(),
            Some("state")
        );
        assert!(matches!(
            ceremony().live(at + Duration::minutes(5) + Duration::seconds(1)),
            Err(StepUpError::NoCeremony)
        ));
        assert!(ceremony().live(at - Duration::seconds(1)).is_err());
    }

    #[test]
    fn key_names_are_short_and_printable() {
        assert!(KeyName::parse("  YubiKey 5C ").is_ok());
        assert!(KeyName::parse("").is_err());
        assert!(KeyName::parse(&"x".repeat(41)).is_err());
        assert!(KeyName::parse("a\u{7}b").is_err());
    }
}
