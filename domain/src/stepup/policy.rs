//! Which action needs which assurance, and the privilege window a step-up opens (Kanidm's
//! model): pure rules, `now` is a parameter.

use std::fmt;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use super::StepUpError;
use super::totp::TotpLockout;
use crate::account::BackoffPolicy;

/// How a step-up was performed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepUpMethod {
    Totp,
    RecoveryCode,
    SecurityKey,
}

impl StepUpMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            StepUpMethod::Totp => "totp",
            StepUpMethod::RecoveryCode => "recovery-code",
            StepUpMethod::SecurityKey => "security-key",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        [Self::Totp, Self::RecoveryCode, Self::SecurityKey]
            .into_iter()
            .find(|m| m.as_str() == raw)
    }
}

impl fmt::Display for StepUpMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a successful step-up proved, kept in the server-side session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepUpGrant {
    pub method: StepUpMethod,
    /// The authenticator verified the user (PIN or biometric), not just their presence.
    pub user_verified: bool,
    /// Unix seconds.
    pub at: i64,
}

/// Actions that need a recent step-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SensitiveAction {
    /// Changing the second factors (a security key, the authenticator app, new recovery codes)
    /// of an account without a usable security key.
    ManageFactors,
    /// Changing any second factor of an account that has a usable security key: a TOTP or
    /// recovery code cannot add a thief's key or app, remove the owner's, nor mint recovery codes.
    ManageKeys,
    /// Roles, limits, blocklist, kill switch, decoy keys, master-key rotation and re-wrap-all.
    Administer,
}

/// The assurance an action needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Assurance {
    /// Any second factor.
    AnyFactor,
    /// A WebAuthn key with user verification: TOTP is not enough.
    SecurityKey,
}

impl SensitiveAction {
    pub fn required_assurance(self) -> Assurance {
        match self {
            SensitiveAction::ManageFactors => Assurance::AnyFactor,
            SensitiveAction::ManageKeys | SensitiveAction::Administer => Assurance::SecurityKey,
        }
    }
}

/// Configurable step-up settings.
#[derive(Debug, Clone, PartialEq)]
pub struct StepUpPolicy {
    /// How long a step-up keeps the session privileged.
    pub window: Duration,
    /// Orders with a notional above this need an approval bound to the order.
    pub order_threshold: Decimal,
    /// An order approval must be used this soon.
    pub approval_lifetime: Duration,
    pub totp_lockout: TotpLockout,
}

impl StepUpPolicy {
    pub const DEFAULT_WINDOW: Duration = Duration::minutes(10);
    pub const MAX_WINDOW: Duration = Duration::minutes(60);

    /// `window` is clamped to 1..=60 minutes (Kanidm's default is 10).
    pub fn new(window: Duration, order_threshold: Decimal) -> Self {
        Self {
            window: window.clamp(Duration::minutes(1), Self::MAX_WINDOW),
            order_threshold,
            approval_lifetime: Duration::minutes(5),
            totp_lockout: TotpLockout {
                // Three free failures: the wait starts at the fourth.
                backoff: BackoffPolicy {
                    free_failures: 4,
                    max_wait: Duration::minutes(15),
                },
            },
        }
    }

    /// Whether a grant still covers `action` at `now`.
    pub fn check(
        &self,
        grant: Option<&StepUpGrant>,
        action: SensitiveAction,
        now: OffsetDateTime,
    ) -> Result<(), StepUpError> {
        let needed = action.required_assurance();
        let Some(grant) = grant else {
            return Err(StepUpError::Required(needed));
        };
        let age = now.unix_timestamp() - grant.at;
        if age < 0 || age > self.window.whole_seconds() {
            return Err(StepUpError::Required(needed));
        }
        match needed {
            Assurance::AnyFactor => Ok(()),
            Assurance::SecurityKey
                if grant.method == StepUpMethod::SecurityKey && grant.user_verified =>
            {
                Ok(())
            }
            Assurance::SecurityKey => Err(StepUpError::Required(needed)),
        }
    }

    /// Seconds left in the window, if it is open.
    pub fn remaining(&self, grant: &StepUpGrant, now: OffsetDateTime) -> Option<i64> {
        let left = grant.at + self.window.whole_seconds() - now.unix_timestamp();
        (left > 0 && grant.at <= now.unix_timestamp()).then_some(left)
    }

    /// "Above the threshold": an order exactly at the threshold goes through without step-up.
    pub fn order_needs_step_up(&self, notional: Decimal) -> bool {
        notional > self.order_threshold
    }
}

impl Default for StepUpPolicy {
    fn default() -> Self {
        Self::new(Self::DEFAULT_WINDOW, Decimal::from(10_000))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn grant(method: StepUpMethod, uv: bool, at: OffsetDateTime) -> StepUpGrant {
        StepUpGrant {
            method,
            user_verified: uv,
            at: at.unix_timestamp(),
        }
    }

    #[test]
    fn a_step_up_opens_a_window_that_closes_after_the_configured_minutes() {
        let policy = StepUpPolicy::new(Duration::minutes(10), Decimal::from(1000));
        let at = datetime!(2026-11-23 12:00 UTC);
        let g = grant(StepUpMethod::Totp, false, at);
        assert!(
            policy
                .check(
                    Some(&g),
                    SensitiveAction::ManageFactors,
                    at + Duration::minutes(10)
                )
                .is_ok()
        );
        assert!(matches!(
            policy.check(
                Some(&g),
                SensitiveAction::ManageFactors,
                at + Duration::minutes(10) + Duration::seconds(1)
            ),
            Err(StepUpError::Required(Assurance::AnyFactor))
        ));
        assert!(
            policy
                .check(None, SensitiveAction::ManageFactors, at)
                .is_err()
        );
        // A grant from the future (clock skew, forged session data) opens nothing.
        assert!(
            policy
                .check(
                    Some(&g),
                    SensitiveAction::ManageFactors,
                    at - Duration::seconds(5)
                )
                .is_err()
        );
    }

    #[test]
    fn managing_keys_needs_a_user_verified_key_and_other_factors_need_any() {
        let policy = StepUpPolicy::default();
        let at = datetime!(2026-11-28 12:00 UTC);
        for g in [
            grant(StepUpMethod::Totp, false, at),
            grant(StepUpMethod::RecoveryCode, false, at),
            grant(StepUpMethod::SecurityKey, false, at),
        ] {
            assert!(
                policy
                    .check(Some(&g), SensitiveAction::ManageFactors, at)
                    .is_ok()
            );
            assert!(matches!(
                policy.check(Some(&g), SensitiveAction::ManageKeys, at),
                Err(StepUpError::Required(Assurance::SecurityKey))
            ));
        }
        let key = grant(StepUpMethod::SecurityKey, true, at);
        assert!(
            policy
                .check(Some(&key), SensitiveAction::ManageKeys, at)
                .is_ok()
        );
    }

    #[test]
    fn the_window_is_clamped_to_at_most_sixty_minutes() {
        let policy = StepUpPolicy::new(Duration::hours(5), Decimal::ONE);
        assert_eq!(policy.window, Duration::minutes(60));
        let policy = StepUpPolicy::new(Duration::ZERO, Decimal::ONE);
        assert_eq!(policy.window, Duration::minutes(1));
    }

    #[test]
    fn admin_actions_need_a_user_verified_security_key_not_totp() {
        let policy = StepUpPolicy::default();
        let at = datetime!(2026-11-23 12:00 UTC);
        for g in [
            grant(StepUpMethod::Totp, false, at),
            grant(StepUpMethod::RecoveryCode, false, at),
            grant(StepUpMethod::SecurityKey, false, at),
        ] {
            assert!(matches!(
                policy.check(Some(&g), SensitiveAction::Administer, at),
                Err(StepUpError::Required(Assurance::SecurityKey))
            ));
        }
        let key = grant(StepUpMethod::SecurityKey, true, at);
        assert!(
            policy
                .check(Some(&key), SensitiveAction::Administer, at)
                .is_ok()
        );
    }

    #[test]
    fn orders_above_the_threshold_need_step_up_and_at_it_do_not() {
        let policy = StepUpPolicy::new(Duration::minutes(10), Decimal::from(10_000));
        assert!(!policy.order_needs_step_up(Decimal::from(10_000)));
        assert!(policy.order_needs_step_up(Decimal::new(1_000_001, 2)));
    }
}
