//! Step-up authentication: second factors (TOTP, recovery codes, security keys / passkeys), the
//! privilege window a step-up opens (Kanidm's model), which action needs which assurance, and
//! approvals bound to one canonical order (PSD2-style dynamic linking).
//!
//! Secrets follow the vault's rules: the TOTP secret is sealed like an exchange key, recovery
//! codes are stored as hashes, and WebAuthn ceremony state never leaves the server.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use rand::RngCore;
use rust_decimal::Decimal;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};
use totp_rs::{Algorithm, Builder, Secret, Totp};
use uuid::Uuid;
use webauthn_rs::prelude::{
    AuthenticationResult, CreationChallengeResponse, Passkey, PasskeyAuthentication,
    PasskeyRegistration, PublicKeyCredential, RegisterPublicKeyCredential,
    RequestChallengeResponse, Webauthn, WebauthnError,
};

use crate::account::{BackoffPolicy, User, UserId};
use crate::audit::{Actor, AuditDraft, Outcome, RequestMeta};
use crate::keys::{OrderType, SecurityAlert, SecurityAlerts, Venue};
use crate::ports::{AuditLog, Clock, StoreError};
use crate::vault::{self, Kms, KmsError, SealedSecret, SecretBinding, VaultError};

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
    /// Removing a security key, turning TOTP off, new recovery codes.
    ManageFactors,
    /// Adding or removing a security key on an account that has a usable one: a TOTP or
    /// recovery code cannot add a thief's key nor remove the owner's.
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

#[derive(Debug, thiserror::Error)]
pub enum StepUpError {
    #[error("this action needs a fresh step-up")]
    Required(Assurance),
    #[error("this needs another role")]
    Forbidden,
    #[error("{0}")]
    Invalid(String),
    #[error("that code is not valid")]
    WrongCode,
    #[error("that code was already used")]
    Replayed,
    #[error("too many wrong codes; try again in {0} seconds")]
    LockedOut(u64),
    #[error("no such factor")]
    NotFound,
    #[error("the security key could not be verified")]
    KeyRejected,
    #[error(
        "this security key reported a signature counter that went backwards; it may be cloned and has been disabled"
    )]
    CounterRegressed,
    #[error("this security key is already registered")]
    KeyAlreadyRegistered,
    #[error("no step-up is in progress, or it has expired; start again")]
    NoCeremony,
    #[error("adding a first second factor needs a recent sign-in")]
    RecentSignInRequired,
    #[error("this approval does not match the order")]
    OrderMismatch,
    #[error("the audit log is unavailable")]
    AuditUnavailable,
    #[error("the key service is unavailable: {0}")]
    KmsUnavailable(String),
    #[error("storage failure: {0}")]
    Store(StoreError),
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<StoreError> for StepUpError {
    fn from(e: StoreError) -> Self {
        StepUpError::Store(e)
    }
}

impl From<VaultError> for StepUpError {
    fn from(e: VaultError) -> Self {
        match e {
            VaultError::Kms(KmsError::Unavailable(why)) => StepUpError::KmsUnavailable(why),
            other => StepUpError::Internal(other.to_string()),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Ceremony state

/// How long a WebAuthn ceremony (registration or authentication) may take, from the options
/// to the answer. An answer after that is refused and the ceremony must start again.
pub const CEREMONY_LIFETIME: Duration = Duration::minutes(5);

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

// ---------------------------------------------------------------------------------------------
// TOTP

/// RFC 6238 parameters every mainstream authenticator app supports.
const TOTP_DIGITS: usize = 6;
const TOTP_STEP: u64 = 30;
/// One step either side of now, for clock drift between the phone and the server.
const TOTP_SKEW: u8 = 1;
const TOTP_ISSUER: &str = "CryptoPulse";

/// A six-digit code as typed: spaces are tolerated, anything else is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TotpCode(String);

impl TotpCode {
    pub fn parse(raw: &str) -> Result<Self, StepUpError> {
        let digits: String = raw.chars().filter(|c| !c.is_whitespace()).collect();
        if digits.len() == TOTP_DIGITS && digits.chars().all(|c| c.is_ascii_digit()) {
            Ok(Self(digits))
        } else {
            Err(StepUpError::Invalid(
                "Enter the 6-digit code from your authenticator app.".into(),
            ))
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

// ---------------------------------------------------------------------------------------------
// Recovery codes

pub const RECOVERY_CODE_COUNT: usize = 10;

/// Ten random 80-bit codes, shown once: `xxxx-xxxx-xxxx-xxxx` in lowercase base32.
pub fn generate_recovery_codes() -> Vec<SecretString> {
    let alphabet = b"abcdefghijklmnopqrstuvwxyz234567";
    (0..RECOVERY_CODE_COUNT)
        .map(|_| {
            let mut bytes = [0u8; 16];
            rand::rngs::OsRng.fill_bytes(&mut bytes);
            let chars: Vec<char> = bytes
                .iter()
                .map(|b| alphabet[usize::from(*b) % 32] as char)
                .collect();
            let groups: Vec<String> = chars.chunks(4).map(|c| c.iter().collect()).collect();
            SecretString::from(groups.join("-"))
        })
        .collect()
}

/// The stored form of a recovery code. The codes carry 80 random bits, so a plain SHA-256 is
/// enough (as for API tokens); a slow hash would only slow down every check of ten codes.
pub fn recovery_code_hash(code: &str) -> String {
    let normalised: String = code
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect();
    hex::encode(Sha256::digest(format!(
        "cryptopulse-recovery-v1:{normalised}"
    )))
}

// ---------------------------------------------------------------------------------------------
// Security keys (WebAuthn)

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
        if name.is_empty() || name.chars().count() > 40 || name.chars().any(char::is_control) {
            return Err(StepUpError::Invalid(
                "Give the key a name of 1 to 40 characters, e.g. \"YubiKey on my keyring\".".into(),
            ));
        }
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

// ---------------------------------------------------------------------------------------------
// Order-bound approvals

pub use crate::risk::OrderSide;

/// The largest quantity or price an order may state (10^12). Their product (at most 10^24) and
/// a day of such products stay far below `Decimal::MAX` (about 7.9 × 10^28).
pub const MAX_ORDER_AMOUNT: Decimal = Decimal::from_parts(0xD4A5_1000, 0xE8, 0, false, 0);

/// The fields of an order an approval commits to, before the server adds the nonce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderTerms {
    pub symbol: String,
    pub side: OrderSide,
    pub quantity: Decimal,
    pub price: Decimal,
}

impl OrderTerms {
    pub fn parse(
        symbol: &str,
        side: &str,
        quantity: &str,
        price: &str,
    ) -> Result<Self, StepUpError> {
        let symbol = symbol.trim().to_ascii_uppercase();
        if !(2..=20).contains(&symbol.len()) || !symbol.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(StepUpError::Invalid(
                "Symbol must be 2 to 20 letters or digits, e.g. BTCUSDT.".into(),
            ));
        }
        let positive = |raw: &str, what: &str| -> Result<Decimal, StepUpError> {
            // Plain decimals only: no exponents, signs or separators.
            let raw = raw.trim();
            if raw.is_empty() || !raw.chars().all(|c| c.is_ascii_digit() || c == '.') {
                return Err(StepUpError::Invalid(format!(
                    "{what} must be a decimal number."
                )));
            }
            let value: Decimal = raw
                .parse()
                .map_err(|_| StepUpError::Invalid(format!("{what} must be a decimal number.")))?;
            if value <= Decimal::ZERO || value.scale() > 8 {
                return Err(StepUpError::Invalid(format!(
                    "{what} must be positive, with at most 8 decimal places."
                )));
            }
            // Bounded, so every product and sum the rules take of it fits a decimal.
            if value > MAX_ORDER_AMOUNT {
                return Err(StepUpError::Invalid(format!(
                    "{what} is too large: at most 1000000000000."
                )));
            }
            Ok(value.normalize())
        };
        Ok(Self {
            symbol,
            side: OrderSide::parse(side)
                .ok_or_else(|| StepUpError::Invalid("Side must be buy or sell.".into()))?,
            quantity: positive(quantity, "Quantity")?,
            price: positive(price, "Price")?,
        })
    }

    pub fn notional(&self) -> Decimal {
        self.quantity
            .checked_mul(self.price)
            .unwrap_or(Decimal::MAX)
    }
}

/// An order as the trader asks to approve it, before the server adds the account and a nonce:
/// where it goes (paper, or an exchange, environment and key), its type, and its terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderToApprove {
    pub venue: Venue,
    pub order_type: OrderType,
    pub terms: OrderTerms,
}

/// The canonical order an approval covers: the account, the venue (exchange, environment and
/// key), the order type, its terms, and a server nonce. An approval for one venue or type is
/// no approval for another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderIntent {
    pub account: UserId,
    pub venue: Venue,
    pub order_type: OrderType,
    pub terms: OrderTerms,
    /// 16 random bytes, hex: makes every challenge unpredictable and every approval unique.
    pub nonce: String,
}

impl OrderIntent {
    pub fn new(account: UserId, order: OrderToApprove) -> Self {
        let mut nonce = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        Self::with_nonce(account, order, hex::encode(nonce))
    }

    /// The intent for `order` under an existing nonce (an approval being answered or used).
    pub fn with_nonce(account: UserId, order: OrderToApprove, nonce: String) -> Self {
        Self {
            account,
            venue: order.venue,
            order_type: order.order_type,
            terms: order.terms,
            nonce,
        }
    }

    /// SHA-256 over length-prefixed fields, so no two different orders share a digest.
    pub fn digest(&self) -> [u8; 32] {
        let quantity = self.terms.quantity.normalize().to_string();
        let price = self.terms.price.normalize().to_string();
        let account = self.account.to_string();
        let key = self
            .venue
            .key
            .map(|k| k.to_string())
            .unwrap_or_else(|| "none".into());
        let mut hasher = Sha256::new();
        hasher.update(b"cryptopulse-order-v2");
        for field in [
            account.as_str(),
            self.venue.exchange.as_str(),
            self.venue.environment.as_str(),
            key.as_str(),
            self.order_type.as_str(),
            self.terms.symbol.as_str(),
            self.terms.side.as_str(),
            quantity.as_str(),
            price.as_str(),
            self.nonce.as_str(),
        ] {
            hasher.update((field.len() as u64).to_be_bytes());
            hasher.update(field.as_bytes());
        }
        hasher.finalize().into()
    }

    pub fn digest_hex(&self) -> String {
        hex::encode(self.digest())
    }
}

/// A pending order approval, held in the server-side session until answered.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OrderChallenge {
    pub digest: String,
    pub nonce: String,
    pub issued_at: i64,
    /// Present when the user has security keys: the assertion must sign the order's digest.
    pub webauthn: Option<PasskeyAuthentication>,
}

/// A granted approval: usable once, for the order with this digest, until `expires_at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderApproval {
    pub digest: String,
    pub user: UserId,
    pub method: StepUpMethod,
    pub approved_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
}

/// Makes the WebAuthn challenge the order's digest, so the authenticator's signature itself
/// commits to the order (the digest already carries a random nonce, so it stays unpredictable).
fn bind_challenge(
    mut options: RequestChallengeResponse,
    state: PasskeyAuthentication,
    digest: [u8; 32],
) -> Result<(RequestChallengeResponse, PasskeyAuthentication), StepUpError> {
    options.public_key.challenge = digest.to_vec();
    let mut value = serde_json::to_value(&state)
        .map_err(|e| StepUpError::Internal(format!("ceremony state: {e}")))?;
    let slot = value
        .pointer_mut("/ast/challenge")
        .ok_or_else(|| StepUpError::Internal("ceremony state has no challenge".into()))?;
    *slot = serde_json::Value::String(base64_url(&digest));
    let state = serde_json::from_value(value)
        .map_err(|e| StepUpError::Internal(format!("ceremony state: {e}")))?;
    Ok((options, state))
}

// ---------------------------------------------------------------------------------------------
// Port

/// Persistence of second factors and order approvals. Each write carries its audit event and the
/// adapter commits both in one transaction or neither. Conditional writes return `false` when
/// their condition no longer holds (a concurrent request won).
#[async_trait]
pub trait FactorStore: Send + Sync + fmt::Debug {
    async fn totp(&self, user: UserId) -> Result<Option<TotpFactor>, StoreError>;
    /// Stores an unconfirmed secret, replacing an earlier unconfirmed one. `Conflict` when a
    /// confirmed factor exists.
    async fn save_pending_totp(
        &self,
        factor: &TotpFactor,
        audit: AuditDraft,
    ) -> Result<(), StoreError>;
    /// Confirms the pending factor with its first accepted step and stores fresh recovery
    /// code hashes (replacing any earlier ones).
    async fn confirm_totp(
        &self,
        user: UserId,
        step: u64,
        at: OffsetDateTime,
        recovery_hashes: &[String],
        audit: AuditDraft,
    ) -> Result<bool, StoreError>;
    /// Reserves one attempt before a code is checked, in one conditional write: refused (not
    /// counted) while `locked_until` is after `now`; otherwise the count goes up by one (starting
    /// again at one when the count began [`TotpLockout::FAILURES_FORGOTTEN_AFTER`] ago) and
    /// `locked_until` is set from `lockout` and the new count.
    async fn reserve_totp_attempt(
        &self,
        user: UserId,
        now: OffsetDateTime,
        lockout: TotpLockout,
    ) -> Result<TotpAttempt, StoreError>;
    /// Accepts `step` if it is newer than the last accepted one and takes back the attempt's
    /// reservation (one off the count; the lock goes only if the count is back below the free
    /// failures). Other wrong codes stay counted.
    async fn accept_totp_step(
        &self,
        user: UserId,
        step: u64,
        lockout: TotpLockout,
        audit: AuditDraft,
    ) -> Result<bool, StoreError>;
    async fn remove_totp(&self, user: UserId, audit: AuditDraft) -> Result<bool, StoreError>;

    async fn recovery_codes_left(&self, user: UserId) -> Result<u32, StoreError>;
    async fn replace_recovery_codes(
        &self,
        user: UserId,
        hashes: &[String],
        at: OffsetDateTime,
        audit: AuditDraft,
    ) -> Result<(), StoreError>;
    /// Marks an unused code with this hash used.
    async fn use_recovery_code(
        &self,
        user: UserId,
        hash: &str,
        at: OffsetDateTime,
        audit: AuditDraft,
    ) -> Result<bool, StoreError>;

    /// The user's keys, oldest first.
    async fn security_keys(&self, user: UserId) -> Result<Vec<SecurityKey>, StoreError>;
    /// Whether any account already registered this credential id.
    async fn credential_registered(&self, credential_id: &str) -> Result<bool, StoreError>;
    async fn insert_security_key(
        &self,
        key: &SecurityKey,
        audit: AuditDraft,
    ) -> Result<(), StoreError>;
    /// Saves the updated credential (its counter) and the time of use.
    async fn record_security_key_use(
        &self,
        user: UserId,
        id: Uuid,
        credential: &str,
        at: OffsetDateTime,
        audit: AuditDraft,
    ) -> Result<(), StoreError>;
    async fn flag_security_key(
        &self,
        user: UserId,
        id: Uuid,
        at: OffsetDateTime,
        audit: AuditDraft,
    ) -> Result<(), StoreError>;
    /// `false` when the key is not the user's.
    async fn remove_security_key(
        &self,
        user: UserId,
        id: Uuid,
        audit: AuditDraft,
    ) -> Result<bool, StoreError>;

    async fn insert_order_approval(
        &self,
        approval: &OrderApproval,
        audit: AuditDraft,
    ) -> Result<(), StoreError>;
    /// Marks the user's unexpired, unused approval for `digest` used.
    async fn consume_order_approval(
        &self,
        user: UserId,
        digest: &str,
        now: OffsetDateTime,
        audit: AuditDraft,
    ) -> Result<bool, StoreError>;
}

// ---------------------------------------------------------------------------------------------
// Use cases

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

/// A second-factor proof offered for a step-up or an order approval.
pub enum FactorProof<'a> {
    Totp(&'a TotpCode),
    RecoveryCode(&'a str),
    SecurityKey {
        credential: &'a PublicKeyCredential,
        state: &'a PasskeyAuthentication,
    },
}

#[derive(Debug, Clone)]
pub struct StepUpService {
    pub store: Arc<dyn FactorStore>,
    pub kms: Arc<dyn Kms>,
    pub audit: Arc<dyn AuditLog>,
    pub clock: Arc<dyn Clock>,
    pub webauthn: Arc<Webauthn>,
    pub policy: StepUpPolicy,
    /// A cloned key is an incident for operators, not only a refusal.
    pub alerts: Arc<dyn SecurityAlerts>,
    /// Roles are read from here when an admin proof is issued.
    pub accounts: Arc<dyn crate::ports::AccountStore>,
}

fn draft(user: UserId, action: &str, outcome: Outcome, meta: &RequestMeta) -> AuditDraft {
    AuditDraft::new(Actor::user(user), action, outcome, meta.clone())
        .resource(format!("user:{user}"))
}

impl StepUpService {
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

    async fn audit_only(&self, draft: AuditDraft) -> Result<(), StepUpError> {
        self.audit
            .record(draft)
            .await
            .map(|_| ())
            .map_err(|_| StepUpError::AuditUnavailable)
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

    // --- TOTP -------------------------------------------------------------------------------

    /// Generates and seals a new secret; it becomes active once a first code confirms it.
    pub async fn begin_totp_enrolment(
        &self,
        user: &User,
        meta: RequestMeta,
    ) -> Result<TotpEnrolment, StepUpError> {
        if self.store.totp(user.id).await?.is_some_and(|t| t.confirmed) {
            return Err(StepUpError::Invalid(
                "An authenticator app is already set up. Remove it first to set up another.".into(),
            ));
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
                    "stepup.totp_enrolment_started",
                    Outcome::Success,
                    &meta,
                ),
            )
            .await
            .map_err(|e| match e {
                StoreError::Conflict => {
                    StepUpError::Invalid("An authenticator app is already set up.".into())
                }
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

    /// Confirms enrolment with a first code; returns the recovery codes, shown once.
    pub async fn confirm_totp(
        &self,
        user: UserId,
        code: &TotpCode,
        meta: RequestMeta,
    ) -> Result<Vec<SecretString>, StepUpError> {
        let factor = self
            .store
            .totp(user)
            .await?
            .filter(|f| !f.confirmed)
            .ok_or(StepUpError::NoCeremony)?;
        let now = self.clock.now();
        let secret = self.totp_secret(&factor).await?;
        let Some(step) = matching_step(&secret, code, now) else {
            self.audit_only(draft(
                user,
                "stepup.totp_enrolment_failed",
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
                draft(user, "stepup.totp_enrolled", Outcome::Success, &meta)
                    .detail("recovery_codes", RECOVERY_CODE_COUNT as u64),
            )
            .await?;
        if !confirmed {
            return Err(StepUpError::NoCeremony);
        }
        Ok(codes)
    }

    /// Checks a code: the attempt is reserved (counted) first, so it is refused while locked
    /// however many arrive at once; a step is accepted once (replays are refused even under
    /// concurrent submissions, by the store's conditional write); failures back off.
    async fn verify_totp(
        &self,
        user: UserId,
        code: &TotpCode,
        purpose: &str,
        meta: &RequestMeta,
    ) -> Result<(), StepUpError> {
        let no_app = || {
            StepUpError::Invalid(
                "You have no authenticator app set up; use your security key.".into(),
            )
        };
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
                    draft(user, "stepup.totp_locked", Outcome::Denied, meta)
                        .detail("purpose", purpose),
                )
                .await?;
                return Err(StepUpError::LockedOut(
                    (until - now).whole_seconds().max(1) as u64
                ));
            }
        }
        // From here the attempt is counted as a failure; only an accepted step takes it back.
        let failure =
            |action: &str| draft(user, action, Outcome::Denied, meta).detail("purpose", purpose);
        let Some(step) = matching_step(&secret, code, now) else {
            self.audit_only(failure("stepup.totp_failed")).await?;
            return Err(StepUpError::WrongCode);
        };
        let accepted = self
            .store
            .accept_totp_step(
                user,
                step,
                lockout,
                draft(user, "stepup.totp_succeeded", Outcome::Success, meta)
                    .detail("purpose", purpose),
            )
            .await?;
        if accepted {
            Ok(())
        } else {
            self.audit_only(failure("stepup.totp_replayed")).await?;
            Err(StepUpError::Replayed)
        }
    }

    async fn verify_recovery_code(
        &self,
        user: UserId,
        code: &str,
        purpose: &str,
        meta: &RequestMeta,
    ) -> Result<(), StepUpError> {
        let used = self
            .store
            .use_recovery_code(
                user,
                &recovery_code_hash(code),
                self.clock.now(),
                draft(user, "stepup.recovery_code_used", Outcome::Success, meta)
                    .detail("purpose", purpose),
            )
            .await?;
        if used {
            return Ok(());
        }
        self.audit_only(
            draft(user, "stepup.recovery_code_failed", Outcome::Denied, meta)
                .detail("purpose", purpose),
        )
        .await?;
        Err(StepUpError::WrongCode)
    }

    /// Turns TOTP off and drops the recovery codes. Needs a privilege window (checked by the
    /// caller with `SensitiveAction::ManageFactors`).
    pub async fn remove_totp(&self, user: UserId, meta: RequestMeta) -> Result<(), StepUpError> {
        if self
            .store
            .remove_totp(
                user,
                draft(user, "stepup.totp_removed", Outcome::Success, &meta),
            )
            .await?
        {
            Ok(())
        } else {
            Err(StepUpError::NotFound)
        }
    }

    /// New recovery codes replace the old ones; shown once.
    pub async fn regenerate_recovery_codes(
        &self,
        user: UserId,
        meta: RequestMeta,
    ) -> Result<Vec<SecretString>, StepUpError> {
        if !self.summary(user).await?.totp_enabled {
            return Err(StepUpError::Invalid(
                "Set up an authenticator app first; recovery codes stand in for it.".into(),
            ));
        }
        let codes = generate_recovery_codes();
        let hashes: Vec<String> = codes
            .iter()
            .map(|c| recovery_code_hash(c.expose_secret()))
            .collect();
        self.store
            .replace_recovery_codes(
                user,
                &hashes,
                self.clock.now(),
                draft(
                    user,
                    "stepup.recovery_codes_replaced",
                    Outcome::Success,
                    &meta,
                ),
            )
            .await?;
        Ok(codes)
    }

    // --- Security keys -------------------------------------------------------------------------

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
                        "stepup.key_registration_failed",
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
                    "stepup.key_registration_failed",
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
        };
        self.store
            .insert_security_key(
                &key,
                draft(user, "stepup.key_registered", Outcome::Success, &meta)
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
    async fn verify_key(
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
                draft(user, "stepup.key_failed", Outcome::Denied, meta)
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
                            draft(user, "stepup.key_failed", Outcome::Denied, meta)
                                .detail("purpose", purpose)
                                .detail("credential", verified_id)
                                .detail("reason", "the response's id is not the key that signed"),
                        )
                        .await?;
                        return Err(StepUpError::KeyRejected);
                    }
                };
                let mut passkey = key.passkey()?;
                passkey.update_credential(&result);
                let stored = serde_json::to_string(&passkey)
                    .map_err(|e| StepUpError::Internal(format!("credential: {e}")))?;
                self.store
                    .record_security_key_use(
                        user,
                        key.id,
                        &stored,
                        self.clock.now(),
                        draft(user, "stepup.key_succeeded", Outcome::Success, meta)
                            .detail("purpose", purpose)
                            .detail("key", key.id.to_string())
                            .detail("user_verified", result.user_verified())
                            .detail("counter", u64::from(result.counter())),
                    )
                    .await?;
                Ok(result)
            }
            Err(WebauthnError::CredentialPossibleCompromise) => {
                // webauthn-rs found the credential by `rawId` and checked its signature before
                // comparing counters: that key is the one to disable, whatever `id` says.
                let regressed = draft(user, "stepup.key_counter_regressed", Outcome::Denied, meta)
                    .detail("purpose", purpose)
                    .detail("credential", raw_id.clone());
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
                self.raise_clone_alert(user, key, &raw_id, meta).await?;
                Err(StepUpError::CounterRegressed)
            }
            Err(e) => {
                self.audit_only(
                    draft(user, "stepup.key_failed", Outcome::Denied, meta)
                        .detail("purpose", purpose)
                        .detail("reason", webauthn_reason(&e)),
                )
                .await?;
                Err(StepUpError::KeyRejected)
            }
        }
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
        let mut audit = draft(user, "security.key_clone_suspected", Outcome::Denied, meta)
            .detail("credential", credential_id.to_owned())
            .detail("alert", alert.id.to_string());
        if let Some(key) = key {
            audit = audit.detail("key", key.id.to_string());
        }
        self.alerts.raise(alert, audit).await.map_err(|e| match e {
            StoreError::Backend(_) => StepUpError::AuditUnavailable,
            other => other.into(),
        })
    }

    /// Whether this session may add or remove a security key; a refusal is audited.
    ///
    /// With a usable (unflagged) key on the account, only a step-up with a user-verified key
    /// will do: a TOTP or recovery code cannot add a thief's key nor remove the owner's. With
    /// other factors only, any step-up (and for an admin's first key also a sign-in within the
    /// window, since that key will open admin actions). With no factor at all (a first factor),
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
        let recent_sign_in = || {
            let age = now.unix_timestamp() - signed_in_at;
            if (0..=self.policy.window.whole_seconds()).contains(&age) {
                Ok(())
            } else {
                Err(StepUpError::RecentSignInRequired)
            }
        };
        let first_key = !summary.has_usable_key();
        let verdict = if !first_key {
            self.policy.check(grant, SensitiveAction::ManageKeys, now)
        } else if summary.has_any() || change == KeyChange::Remove {
            self.policy
                .check(grant, SensitiveAction::ManageFactors, now)
                .and_then(|()| {
                    if change == KeyChange::Add && user.role == crate::account::Role::Admin {
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
                draft(user.id, "stepup.key_change_refused", Outcome::Denied, meta)
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
                draft(user, "stepup.key_removed", Outcome::Success, &meta)
                    .detail("key", id.to_string()),
            )
            .await?
        {
            Ok(())
        } else {
            Err(StepUpError::NotFound)
        }
    }

    /// Removes every second factor of `user`, for someone who lost them all (run by an operator
    /// after checking who is asking). Returns how many keys and whether an app was removed.
    pub async fn reset_factors(
        &self,
        user: UserId,
        actor: Actor,
        meta: RequestMeta,
    ) -> Result<(usize, bool), StepUpError> {
        let by = |action: &str| {
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
                    by("stepup.key_removed").detail("key", key.id.to_string()),
                )
                .await?
            {
                keys += 1;
            }
        }
        let totp = self
            .store
            .remove_totp(user, by("stepup.totp_removed"))
            .await?;
        Ok((keys, totp))
    }

    // --- Step-up and order approval --------------------------------------------------------------

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

    async fn verify(
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

    /// Starts an approval for one order: a fresh nonce, the digest, and (with keys) a WebAuthn
    /// challenge equal to the digest.
    pub async fn begin_order_approval(
        &self,
        user: UserId,
        order: OrderToApprove,
    ) -> Result<(OrderChallenge, Option<RequestChallengeResponse>), StepUpError> {
        let intent = OrderIntent::new(user, order);
        let digest = intent.digest();
        let (options, state) = match self.begin_key_authentication(user).await? {
            Some((options, state)) => {
                let (options, state) = bind_challenge(options, state, digest)?;
                (Some(options), Some(state))
            }
            None => (None, None),
        };
        Ok((
            OrderChallenge {
                digest: hex::encode(digest),
                nonce: intent.nonce,
                issued_at: self.clock.now().unix_timestamp(),
                webauthn: state,
            },
            options,
        ))
    }

    /// Approves exactly the order the challenge was issued for: the terms sent back are hashed
    /// again with the challenge's nonce and must give the same digest.
    pub async fn approve_order(
        &self,
        user: UserId,
        challenge: &OrderChallenge,
        order: OrderToApprove,
        proof: FactorProof<'_>,
        meta: RequestMeta,
    ) -> Result<OrderApproval, StepUpError> {
        let now = self.clock.now();
        let intent = OrderIntent::with_nonce(user, order, challenge.nonce.clone());
        let digest = intent.digest_hex();
        if digest != challenge.digest {
            self.audit_only(
                draft(user, "stepup.order_mismatch", Outcome::Denied, &meta)
                    .detail("challenge", challenge.digest.clone())
                    .detail("offered", digest),
            )
            .await?;
            return Err(StepUpError::OrderMismatch);
        }
        if now.unix_timestamp() - challenge.issued_at
            > self.policy.approval_lifetime.whole_seconds()
        {
            return Err(StepUpError::NoCeremony);
        }
        // A WebAuthn proof must answer this challenge's state, which signs the digest.
        let proof = match proof {
            FactorProof::SecurityKey { credential, .. } => {
                let state = challenge.webauthn.as_ref().ok_or(StepUpError::NoCeremony)?;
                FactorProof::SecurityKey { credential, state }
            }
            other => other,
        };
        let purpose = format!("order:{digest}");
        let (method, _) = self.verify(user, proof, &purpose, &meta).await?;
        let approval = OrderApproval {
            digest: digest.clone(),
            user,
            method,
            approved_at: now,
            expires_at: now + self.policy.approval_lifetime,
        };
        self.store
            .insert_order_approval(
                &approval,
                draft(user, "stepup.order_approved", Outcome::Success, &meta)
                    .detail("order_digest", digest)
                    .detail(
                        "venue",
                        format!("{}/{}", intent.venue.exchange, intent.venue.environment),
                    )
                    .detail(
                        "key",
                        intent.venue.key.map(|k| k.to_string()).unwrap_or_default(),
                    )
                    .detail("type", intent.order_type.as_str())
                    .detail("symbol", intent.terms.symbol.clone())
                    .detail("side", intent.terms.side.as_str())
                    .detail("quantity", intent.terms.quantity.to_string())
                    .detail("price", intent.terms.price.to_string())
                    .detail("method", method.as_str()),
            )
            .await?;
        Ok(approval)
    }

    /// Spends the approval for exactly this order (venue, type, terms and nonce). Order placement
    /// calls this; a second call, another order, venue or type, or a changed quantity gets
    /// `OrderMismatch`.
    pub async fn consume_order_approval(
        &self,
        intent: &OrderIntent,
        meta: RequestMeta,
    ) -> Result<(), StepUpError> {
        let digest = intent.digest_hex();
        let user = intent.account;
        let consumed = self
            .store
            .consume_order_approval(
                user,
                &digest,
                self.clock.now(),
                draft(user, "stepup.order_approval_used", Outcome::Success, &meta)
                    .detail("order_digest", digest.clone()),
            )
            .await?;
        if consumed {
            return Ok(());
        }
        self.audit_only(
            draft(
                user,
                "stepup.order_approval_refused",
                Outcome::Denied,
                &meta,
            )
            .detail("order_digest", digest),
        )
        .await?;
        Err(StepUpError::OrderMismatch)
    }
}

fn base64_url(bytes: &[u8]) -> String {
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

    fn terms(qty: &str) -> OrderTerms {
        OrderTerms::parse("btcusdt", "buy", qty, "65000.50").expect("valid terms")
    }

    fn paper_market(terms: OrderTerms) -> OrderToApprove {
        OrderToApprove {
            venue: Venue::PAPER,
            order_type: OrderType::Market,
            terms,
        }
    }

    #[test]
    fn the_order_digest_commits_to_every_field() {
        use crate::keys::{ExchangeName, KeyEnvironment, KeyId};

        let account = UserId(Uuid::from_u128(7));
        let base = OrderIntent::with_nonce(account, paper_market(terms("0.5")), "00".repeat(16));
        let binance = |environment, key: u128| Venue {
            exchange: ExchangeName::Binance,
            environment,
            key: Some(KeyId(Uuid::from_u128(key))),
        };
        let on_binance_testnet = OrderIntent {
            venue: binance(KeyEnvironment::Testnet, 1),
            ..base.clone()
        };
        let same_value = OrderIntent {
            terms: terms("0.50000"),
            ..base.clone()
        };
        assert_eq!(
            base.digest(),
            same_value.digest(),
            "trailing zeros are not a new order"
        );
        let changes = [
            OrderIntent {
                terms: terms("0.6"),
                ..base.clone()
            },
            OrderIntent {
                account: UserId(Uuid::from_u128(8)),
                ..base.clone()
            },
            OrderIntent {
                nonce: "11".repeat(16),
                ..base.clone()
            },
            OrderIntent {
                terms: OrderTerms::parse("ETHUSDT", "buy", "0.5", "65000.50").expect("valid"),
                ..base.clone()
            },
            OrderIntent {
                terms: OrderTerms::parse("BTCUSDT", "sell", "0.5", "65000.50").expect("valid"),
                ..base.clone()
            },
            OrderIntent {
                terms: OrderTerms::parse("BTCUSDT", "buy", "0.5", "65000.51").expect("valid"),
                ..base.clone()
            },
            // The venue: another exchange, another environment, another key.
            on_binance_testnet.clone(),
            OrderIntent {
                venue: binance(KeyEnvironment::Live, 1),
                ..base.clone()
            },
            OrderIntent {
                venue: binance(KeyEnvironment::Testnet, 2),
                ..base.clone()
            },
            // The order type.
            OrderIntent {
                order_type: OrderType::Limit,
                ..base.clone()
            },
        ];
        for changed in &changes {
            assert_ne!(base.digest(), changed.digest(), "{changed:?}");
        }
        assert_ne!(
            on_binance_testnet.digest(),
            changes[changes.len() - 2].digest(),
            "another key on the same exchange is another venue"
        );
    }

    #[test]
    fn order_amounts_are_bounded_so_their_value_always_fits() {
        assert_eq!(MAX_ORDER_AMOUNT, Decimal::from(1_000_000_000_000_u64));
        let largest = OrderTerms::parse("BTCUSDT", "buy", "1000000000000", "1000000000000")
            .expect("the bound itself is accepted");
        assert!(largest.quantity.checked_mul(largest.price).is_some());
    }

    #[test]
    fn order_terms_refuse_bad_input() {
        for (symbol, side, qty, price) in [
            ("B", "buy", "1", "1"),
            ("BTC/USDT", "buy", "1", "1"),
            ("BTCUSDT", "hold", "1", "1"),
            ("BTCUSDT", "buy", "0", "1"),
            ("BTCUSDT", "buy", "-1", "1"),
            ("BTCUSDT", "buy", "1e3", "1"),
            ("BTCUSDT", "buy", "0.000000001", "1"),
            ("BTCUSDT", "buy", "1", "NaN"),
            ("BTCUSDT", "buy", "79228162514264337593543950335", "1"),
            ("BTCUSDT", "buy", "1000000000000.00000001", "1"),
            ("BTCUSDT", "sell", "1", "1000000000001"),
        ] {
            assert!(
                OrderTerms::parse(symbol, side, qty, price).is_err(),
                "{symbol} {side} {qty} {price}"
            );
        }
    }

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

    #[test]
    fn recovery_codes_are_distinct_and_hash_the_same_however_typed() {
        let codes = generate_recovery_codes();
        assert_eq!(codes.len(), RECOVERY_CODE_COUNT);
        let hashes: std::collections::HashSet<String> = codes
            .iter()
            .map(|c| recovery_code_hash(c.expose_secret()))
            .collect();
        assert_eq!(hashes.len(), RECOVERY_CODE_COUNT);
        let code = codes[0].expose_secret();
        assert_eq!(code.len(), 19);
        assert_eq!(
            recovery_code_hash(code),
            recovery_code_hash(&format!(" {} ", code.to_uppercase().replace('-', "")))
        );
    }

    #[test]
    fn key_names_are_short_and_printable() {
        assert!(KeyName::parse("  YubiKey 5C ").is_ok());
        assert!(KeyName::parse("").is_err());
        assert!(KeyName::parse(&"x".repeat(41)).is_err());
        assert!(KeyName::parse("a\u{7}b").is_err());
    }

    #[test]
    fn the_webauthn_challenge_for_an_order_is_its_digest_and_a_software_key_signs_it() {
        use webauthn_authenticator_rs::WebauthnAuthenticator;
        use webauthn_authenticator_rs::softtoken::SoftToken;
        use webauthn_rs::prelude::WebauthnBuilder;

        let origin = url::Url::parse("http://localhost:3000").expect("url");
        let webauthn = WebauthnBuilder::new("localhost", &origin)
            .expect("builder")
            .build()
            .expect("webauthn");
        let (token, _) = SoftToken::new(true).expect("soft token");
        let mut authenticator = token;
        let (ccr, reg_state) = webauthn
            .start_passkey_registration(Uuid::from_u128(1), "a@example.com", "a", None)
            .expect("start registration");
        let reg = authenticator
            .do_registration(origin.clone(), ccr)
            .expect("authenticator registers");
        let passkey = webauthn
            .finish_passkey_registration(&reg, &reg_state)
            .expect("registration verifies");

        let intent = OrderIntent::new(UserId(Uuid::from_u128(1)), paper_market(terms("1")));
        let (rcr, state) = webauthn
            .start_passkey_authentication(std::slice::from_ref(&passkey))
            .expect("start authentication");
        let (rcr, state) = bind_challenge(rcr, state, intent.digest()).expect("bind");
        let challenge: &[u8] = rcr.public_key.challenge.as_ref();
        assert_eq!(challenge, intent.digest().as_slice());
        let assertion = authenticator
            .do_authentication(origin.clone(), rcr)
            .expect("authenticator signs");
        let client_data: serde_json::Value =
            serde_json::from_slice(assertion.response.client_data_json.as_ref()).expect("json");
        assert_eq!(
            client_data["challenge"],
            serde_json::Value::String(base64_url(&intent.digest()))
        );
        webauthn
            .finish_passkey_authentication(&assertion, &state)
            .expect("the signed digest verifies");

        // An assertion made for one order's challenge does not answer another's.
        let other = OrderIntent::new(UserId(Uuid::from_u128(1)), paper_market(terms("1")));
        let (rcr2, state2) = webauthn
            .start_passkey_authentication(&[passkey])
            .expect("start authentication");
        let (_, state2) = bind_challenge(rcr2, state2, other.digest()).expect("bind");
        assert!(
            webauthn
                .finish_passkey_authentication(&assertion, &state2)
                .is_err()
        );
    }
}
