//! TOTP (RFC 6238) second factor: codes, the lockout after wrong codes, the sealed secret, and
//! enrolment, verification and removal.

use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use time::{Duration, OffsetDateTime};
use totp_rs::{Algorithm, Builder, Secret, Totp};

use super::recovery::{RECOVERY_CODE_COUNT, generate_recovery_codes, recovery_code_hash};
use super::service::draft;
use super::{StepUpError, StepUpGrant, StepUpMethod, StepUpService};
use crate::account::{BackoffPolicy, User, UserId};
use crate::audit::{Outcome, RequestMeta};
use crate::audit_action::AuditAction;
use crate::store_error::StoreError;
use crate::vault::{self, SealedSecret, SecretBinding};

/// RFC 6238 parameters every mainstream authenticator app supports.
const TOTP_DIGITS: usize = 6;
const TOTP_STEP: u64 = 30;
/// One step either side of now, for clock drift between the phone and the server.
const TOTP_SKEW: u8 = 1;
const TOTP_ISSUER: &str = "CryptoPulse";

/// How long a started set-up can be confirmed, and with how many codes. Past either it must be
/// started again, which needs what starting needed (a step-up, or a fresh sign-in for a first
/// factor), so a stolen session cannot guess its way to a first code.
pub const ENROLMENT_TTL: Duration = Duration::minutes(10);
pub const ENROLMENT_ATTEMPTS: u32 = 5;

/// A six-digit code as typed: spaces are tolerated, anything else is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TotpCode(String);

impl TotpCode {
    pub fn parse(raw: &str) -> Result<Self, StepUpError> {
        let digits: String = raw.chars().filter(|c| !c.is_whitespace()).collect();
        if digits.len() == TOTP_DIGITS && digits.chars().all(|c| c.is_ascii_digit()) {
            Ok(Self(digits))
        } else {
            Err(StepUpError::MalformedTotpCode)
        }
    }
}

fn totp(secret: &[u8], account: &str) -> Result<Totp, StepUpError> {
    // otpauth labels cannot contain ':'.
    let account: String = account.chars().filter(|c| *c != ':').collect();
    Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(TOTP_DIGITS as u8)
        .with_skew(u16::from(TOTP_SKEW))
        .with_step_duration(TOTP_STEP)
        .with_secret(secret.to_vec())
        .with_issuer(Some(TOTP_ISSUER))
        .with_account_name(account)
        .build()
        .map_err(|e| StepUpError::Internal(format!("totp parameters: {e}")))
}

/// The time step `code` belongs to, if it is valid at `now` (±1 step). Constant-time compare.
pub fn matching_step(secret: &[u8], code: &TotpCode, now: OffsetDateTime) -> Option<u64> {
    let totp = totp(secret, "check").ok()?;
    let current = u64::try_from(now.unix_timestamp()).ok()? / TOTP_STEP;
    let mut found = None;
    for step in current.saturating_sub(u64::from(TOTP_SKEW))..=current + u64::from(TOTP_SKEW) {
        let expected = totp.generate(step * TOTP_STEP).to_string();
        if constant_time_eq(expected.as_bytes(), code.0.as_bytes()) {
            found = Some(step);
        }
    }
    found
}

/// The code for `at` (enrolment tests and the CLI's self-check use it).
pub fn code_at(secret: &[u8], at: OffsetDateTime) -> String {
    totp(secret, "code")
        .map(|t| {
            t.generate(u64::try_from(at.unix_timestamp()).unwrap_or(0))
                .to_string()
        })
        .unwrap_or_default()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// After the free failures, TOTP is locked for a doubling wait and at least until the current
/// 30-second step ends, so the codes valid right now cannot be guessed at speed.
///
/// Every code is counted before it is checked: the store reserves the attempt with a conditional
/// write that fails while the app is locked, so concurrent submissions cannot all be checked
/// before the lock lands. A correct code takes back only its own count; it never clears wrong
/// codes, so a success (the owner's, or a lucky one) hands out no fresh free guesses. Wrong codes
/// are forgotten only with time: [`Self::FAILURES_FORGOTTEN_AFTER`] after the first of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TotpLockout {
    pub backoff: BackoffPolicy,
}

impl TotpLockout {
    /// A count of wrong codes starts again this long after its first wrong code.
    pub const FAILURES_FORGOTTEN_AFTER: Duration = Duration::hours(24);

    pub fn locked_until(&self, failures: u32, now: OffsetDateTime) -> Option<OffsetDateTime> {
        let wait = self.backoff.wait_after(failures);
        if wait <= Duration::ZERO {
            return None;
        }
        let step = TOTP_STEP as i64;
        let step_end =
            OffsetDateTime::from_unix_timestamp((now.unix_timestamp() / step + 1) * step)
                .unwrap_or(now);
        Some((now + wait).max(step_end))
    }
}

/// The outcome of reserving a TOTP attempt, before its code is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TotpAttempt {
    /// Counted, as a wrong code until a success takes it back; `failures` is the count with it.
    Reserved { failures: u32 },
    /// Refused without counting: the app is locked until then.
    Locked(OffsetDateTime),
    /// No confirmed authenticator app.
    NoFactor,
}

/// A TOTP factor as stored: the secret is sealed, never kept in the clear.
#[derive(Debug, Clone)]
pub struct TotpFactor {
    pub user: UserId,
    pub sealed: SealedSecret,
    pub confirmed: bool,
    /// The last time step accepted; a code of this step or older is a replay.
    pub last_step: Option<u64>,
    pub failures: u32,
    pub locked_until: Option<OffsetDateTime>,
    pub created_at: OffsetDateTime,
}

/// Shown once, right after enrolment starts.
#[derive(Debug)]
pub struct TotpEnrolment {
    pub secret_base32: SecretString,
    pub otpauth_url: SecretString,
}

fn totp_binding(user: UserId) -> SecretBinding {
    // The vault's binding fields name an exchange and environment; for a TOTP secret they
    // name the factor instead, so the ciphertext cannot be moved to a key row or another user.
    SecretBinding {
        owner: user,
        record_id: user.0,
        exchange: "totp".into(),
        environment: "step-up".into(),
    }
}

impl StepUpService {
    /// Generates and seals a new secret; it becomes active once a first code confirms it.
    pub async fn begin_totp_enrolment(
        &self,
        user: &User,
        meta: RequestMeta,
    ) -> Result<TotpEnrolment, StepUpError> {
        if self.store.totp(user.id).await?.is_some_and(|t| t.confirmed) {
            return Err(StepUpError::TotpAlreadySetUp);
        }
        // 160 bits, as RFC 4226 recommends.
        let mut bytes = zeroize::Zeroizing::new(vec![0u8; 20]);
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        let base32 = SecretString::from(Secret::from(bytes.to_vec()).to_base32());
        let sealed = vault::seal(self.kms.as_ref(), &totp_binding(user.id), &base32).await?;
        let url = SecretString::from(
            totp(&bytes, user.email.as_str())?
                .to_url()
                .map_err(|e| StepUpError::Internal(format!("otpauth url: {e}")))?,
        );
        let factor = TotpFactor {
            user: user.id,
            sealed,
            confirmed: false,
            last_step: None,
            failures: 0,
            locked_until: None,
            created_at: self.clock.now(),
        };
        self.store
            .save_pending_totp(
                &factor,
                draft(
                    user.id,
                    AuditAction::StepupTotpEnrolmentStarted,
                    Outcome::Success,
                    &meta,
                ),
            )
            .await
            .map_err(|e| match e {
                StoreError::Conflict => StepUpError::TotpAlreadySetUp,
                other => other.into(),
            })?;
        Ok(TotpEnrolment {
            secret_base32: base32,
            otpauth_url: url,
        })
    }

    async fn totp_secret(
        &self,
        factor: &TotpFactor,
    ) -> Result<zeroize::Zeroizing<Vec<u8>>, StepUpError> {
        let base32 = vault::open(
            self.kms.as_ref(),
            &totp_binding(factor.user),
            &factor.sealed,
        )
        .await?;
        Secret::try_from_base32(base32.expose_secret())
            .map(|s| zeroize::Zeroizing::new(s.as_ref().to_vec()))
            .map_err(|e| StepUpError::Internal(format!("stored totp secret: {e}")))
    }

    /// Confirms enrolment with a first code; returns the recovery codes (shown once) and the
    /// grant that opens the privilege window.
    pub async fn confirm_totp(
        &self,
        user: UserId,
        code: &TotpCode,
        meta: RequestMeta,
    ) -> Result<(Vec<SecretString>, StepUpGrant), StepUpError> {
        let factor = self
            .store
            .totp(user)
            .await?
            .filter(|f| !f.confirmed)
            .ok_or(StepUpError::NoCeremony)?;
        let now = self.clock.now();
        if now - factor.created_at > ENROLMENT_TTL {
            return Err(StepUpError::NoCeremony);
        }
        // Opened before the attempt is counted: a key-service outage costs no attempts.
        let secret = self.totp_secret(&factor).await?;
        if !self
            .store
            .reserve_enrolment_attempt(user, ENROLMENT_ATTEMPTS)
            .await?
        {
            self.audit_only(
                draft(
                    user,
                    AuditAction::StepupTotpEnrolmentFailed,
                    Outcome::Denied,
                    &meta,
                )
                .detail("reason", "too many codes: start the set-up again"),
            )
            .await?;
            return Err(StepUpError::NoCeremony);
        }
        let Some(step) = matching_step(&secret, code, now) else {
            self.audit_only(draft(
                user,
                AuditAction::StepupTotpEnrolmentFailed,
                Outcome::Failure,
                &meta,
            ))
            .await?;
            return Err(StepUpError::WrongCode);
        };
        let codes = generate_recovery_codes();
        let hashes: Vec<String> = codes
            .iter()
            .map(|c| recovery_code_hash(c.expose_secret()))
            .collect();
        let confirmed = self
            .store
            .confirm_totp(
                user,
                step,
                now,
                &hashes,
                draft(
                    user,
                    AuditAction::StepupTotpEnrolled,
                    Outcome::Success,
                    &meta,
                )
                .detail("recovery_codes", RECOVERY_CODE_COUNT as u64),
            )
            .await?;
        if !confirmed {
            return Err(StepUpError::NoCeremony);
        }
        // The code just proved the factor: it opens the window like a step-up would.
        let grant = StepUpGrant {
            method: StepUpMethod::Totp,
            user_verified: false,
            at: now.unix_timestamp(),
        };
        Ok((codes, grant))
    }

    /// Checks a code: the attempt is reserved (counted) first, so it is refused while locked
    /// however many arrive at once; a step is accepted once (replays are refused even under
    /// concurrent submissions, by the store's conditional write); failures back off.
    pub(super) async fn verify_totp(
        &self,
        user: UserId,
        code: &TotpCode,
        purpose: &str,
        meta: &RequestMeta,
    ) -> Result<(), StepUpError> {
        let no_app = || StepUpError::NoTotpApp;
        let factor = self
            .store
            .totp(user)
            .await?
            .filter(|f| f.confirmed)
            .ok_or_else(no_app)?;
        // Opened before the attempt is counted: a key-service outage costs no attempts.
        let secret = self.totp_secret(&factor).await?;
        let now = self.clock.now();
        let lockout = self.policy.totp_lockout;
        match self.store.reserve_totp_attempt(user, now, lockout).await? {
            TotpAttempt::Reserved { .. } => {}
            TotpAttempt::NoFactor => return Err(no_app()),
            TotpAttempt::Locked(until) => {
                self.audit_only(
                    draft(user, AuditAction::StepupTotpLocked, Outcome::Denied, meta)
                        .detail("purpose", purpose),
                )
                .await?;
                return Err(StepUpError::LockedOut(
                    (until - now).whole_seconds().max(1) as u64
                ));
            }
        }
        // From here the attempt is counted as a failure; only an accepted step takes it back.
        let failure = |action: AuditAction| {
            draft(user, action, Outcome::Denied, meta).detail("purpose", purpose)
        };
        let Some(step) = matching_step(&secret, code, now) else {
            self.audit_only(failure(AuditAction::StepupTotpFailed))
                .await?;
            return Err(StepUpError::WrongCode);
        };
        let accepted = self
            .store
            .accept_totp_step(
                user,
                step,
                lockout,
                draft(
                    user,
                    AuditAction::StepupTotpSucceeded,
                    Outcome::Success,
                    meta,
                )
                .detail("purpose", purpose),
            )
            .await?;
        if accepted {
            Ok(())
        } else {
            self.audit_only(failure(AuditAction::StepupTotpReplayed))
                .await?;
            Err(StepUpError::Replayed)
        }
    }

    /// Turns TOTP off and drops the recovery codes. Needs a privilege window (checked by the
    /// caller with `SensitiveAction::ManageFactors`).
    pub async fn remove_totp(&self, user: UserId, meta: RequestMeta) -> Result<(), StepUpError> {
        if self
            .store
            .remove_totp(
                user,
                draft(
                    user,
                    AuditAction::StepupTotpRemoved,
                    Outcome::Success,
                    &meta,
                ),
            )
            .await?
        {
            Ok(())
        } else {
            Err(StepUpError::NotFound)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::StepUpPolicy;
    use super::*;
    use time::macros::datetime;

    const SECRET: &[u8] = b"12345678901234567890";

    #[test]
    fn totp_codes_match_rfc_6238_vectors_and_drift_by_one_step() {
        // RFC 6238 appendix B, SHA-1, truncated to 6 digits: T = 59 s gives 287082.
        let at = OffsetDateTime::from_unix_timestamp(59).expect("valid time");
        let code = TotpCode::parse("287 082").expect("six digits");
        assert_eq!(matching_step(SECRET, &code, at), Some(1));
        // One step later it is still accepted (drift), two steps later it is not.
        assert_eq!(
            matching_step(SECRET, &code, at + Duration::seconds(30)),
            Some(1)
        );
        assert_eq!(
            matching_step(SECRET, &code, at + Duration::seconds(60)),
            None
        );
        assert_eq!(
            matching_step(SECRET, &code, at - Duration::seconds(60)),
            None
        );
    }

    #[test]
    fn totp_locks_after_three_failures_at_least_until_the_step_ends() {
        let lockout = StepUpPolicy::default().totp_lockout;
        let now = datetime!(2026-11-23 12:00:05 UTC);
        for failures in 0..=3 {
            assert_eq!(lockout.locked_until(failures, now), None);
        }
        // The fourth failure: one second of backoff, stretched to the end of the step.
        assert_eq!(
            lockout.locked_until(4, now),
            Some(datetime!(2026-11-23 12:00:30 UTC))
        );
        // Later failures double beyond the step, up to 15 minutes.
        assert_eq!(
            lockout.locked_until(10, now),
            Some(now + Duration::seconds(64))
        );
        assert_eq!(
            lockout.locked_until(40, now),
            Some(now + Duration::minutes(15))
        );
    }

    #[test]
    fn totp_codes_must_be_six_digits() {
        for bad in ["", "12345", "1234567", "12345a", "１２３４５６"] {
            assert!(TotpCode::parse(bad).is_err(), "{bad}");
        }
    }
}
