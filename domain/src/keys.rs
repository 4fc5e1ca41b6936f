//! Exchange API keys: validated entry, the permission policy and the key vault use cases
//! (add, list, use with a receipt, re-check, re-wrap, revoke, canaries).
//!
//! Plaintext credentials exist only inside [`ApiCredentials`] (secrecy types: redacting `Debug`,
//! no `Serialize`, zeroed on drop) for the duration of one exchange call.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::account::UserId;
use crate::audit::{Actor, AuditDraft, AuditEvent, Outcome, RequestMeta};
use crate::ports::{AuditLog, Clock, StoreError};
use crate::vault::{
    self, Kms, KmsError, RotationRecord, SealedSecret, SecretBinding, VaultError, WrappedKey,
};

macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident = $text:literal / $label:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(rename_all = "kebab-case")]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            pub fn label(self) -> &'static str {
                match self { $($name::$variant => $label),+ }
            }

            pub fn parse(raw: &str) -> Result<Self, KeyInputError> {
                match raw.trim() {
                    $($text => Ok($name::$variant),)+
                    _ => Err(KeyInputError::Unknown(stringify!($name))),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

string_enum!(
    /// The exchanges CryptoPulse can talk to.
    ExchangeName {
        Paper = "paper" / "Paper exchange (built in)",
        Binance = "binance" / "Binance",
    }
);

string_enum!(
    /// Where a key trades: a testnet, the built-in paper exchange, or real money.
    KeyEnvironment {
        Testnet = "testnet" / "Testnet",
        Paper = "paper" / "Paper",
        Live = "live" / "Live",
    }
);

string_enum!(
    /// What the trader allows CryptoPulse to do with the key.
    KeyScope {
        ReadOnly = "read-only" / "Read only",
        Trade = "trade" / "Trade",
    }
);

string_enum!(
    KeyStatus {
        Active = "active" / "Active",
        Suspended = "suspended" / "Suspended",
        Revoked = "revoked" / "Revoked",
    }
);

impl ExchangeName {
    /// The environments an exchange offers.
    pub fn environments(self) -> &'static [KeyEnvironment] {
        match self {
            ExchangeName::Paper => &[KeyEnvironment::Paper],
            ExchangeName::Binance => &[KeyEnvironment::Testnet, KeyEnvironment::Live],
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyInputError {
    #[error("unknown {0}")]
    Unknown(&'static str),
    #[error("the label must be 1 to {max} characters without control characters", max = KeyLabel::MAX_CHARS)]
    Label,
    #[error(
        "the {0} must be {min} to {max} visible characters without spaces",
        min = ApiCredentials::MIN_CHARS,
        max = ApiCredentials::MAX_CHARS
    )]
    Credential(&'static str),
    #[error("{exchange} has no {environment} environment", exchange = .0.label(), environment = .1.as_str())]
    Environment(ExchangeName, KeyEnvironment),
}

/// A trader's name for a key ("Main testnet bot").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyLabel(String);

impl KeyLabel {
    pub const MAX_CHARS: usize = 60;

    pub fn parse(raw: &str) -> Result<Self, KeyInputError> {
        let trimmed = raw.trim();
        let chars = trimmed.chars().count();
        if chars == 0 || chars > Self::MAX_CHARS || trimmed.chars().any(char::is_control) {
            return Err(KeyInputError::Label);
        }
        Ok(Self(trimmed.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An exchange API key and its secret, in plaintext. Only ever held for one exchange call.
pub struct ApiCredentials {
    api_key: SecretString,
    api_secret: SecretString,
}

impl fmt::Debug for ApiCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiCredentials([redacted])")
    }
}

impl ApiCredentials {
    pub const MIN_CHARS: usize = 8;
    pub const MAX_CHARS: usize = 256;

    pub fn parse(api_key: SecretString, api_secret: SecretString) -> Result<Self, KeyInputError> {
        let valid = |s: &str| {
            (Self::MIN_CHARS..=Self::MAX_CHARS).contains(&s.len())
                && s.bytes().all(|b| b.is_ascii_graphic())
        };
        if !valid(api_key.expose_secret().trim()) {
            return Err(KeyInputError::Credential("API key"));
        }
        if !valid(api_secret.expose_secret().trim()) {
            return Err(KeyInputError::Credential("API secret"));
        }
        Ok(Self {
            api_key: SecretString::from(api_key.expose_secret().trim().to_owned()),
            api_secret: SecretString::from(api_secret.expose_secret().trim().to_owned()),
        })
    }

    pub fn api_key(&self) -> &SecretString {
        &self.api_key
    }

    pub fn api_secret(&self) -> &SecretString {
        &self.api_secret
    }

    /// What the UI shows: the API key's last four characters.
    pub fn mask(&self) -> String {
        vault::mask(self.api_key.expose_secret())
    }

    /// The sealed form: key and secret joined by a newline (neither may contain whitespace).
    fn to_plaintext(&self) -> SecretString {
        SecretString::from(format!(
            "{}\n{}",
            self.api_key.expose_secret(),
            self.api_secret.expose_secret()
        ))
    }

    fn from_plaintext(plaintext: &SecretString) -> Option<Self> {
        let (key, secret) = plaintext.expose_secret().split_once('\n')?;
        Some(Self {
            api_key: SecretString::from(key.to_owned()),
            api_secret: SecretString::from(secret.to_owned()),
        })
    }

    /// Random credentials for a decoy key, in the form exchanges issue (64 letters and digits,
    /// as Binance does), so its mask looks like any other key's.
    fn random_decoy() -> Self {
        Self {
            api_key: SecretString::from(random_alphanumeric(64)),
            api_secret: SecretString::from(random_alphanumeric(64)),
        }
    }
}

/// `len` random ASCII letters and digits, uniformly (rejection sampling, no modulo bias).
fn random_alphanumeric(len: usize) -> String {
    use aes_gcm::aead::OsRng;
    use aes_gcm::aead::rand_core::RngCore;
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    // The largest multiple of 62 that fits in a byte: bytes at or above it are drawn again.
    const ZONE: u8 = 248;
    let mut out = String::with_capacity(len);
    let mut bytes = Zeroizing::new([0u8; 64]);
    while out.len() < len {
        OsRng.fill_bytes(bytes.as_mut());
        for &b in bytes.iter().filter(|&&b| b < ZONE) {
            if out.len() == len {
                break;
            }
            out.push(char::from(ALPHABET[usize::from(b) % ALPHABET.len()]));
        }
    }
    out
}

/// What the exchange says a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct KeyPermissions {
    pub can_read: bool,
    pub can_trade: bool,
    pub can_withdraw: bool,
    /// The key only works from listed IP addresses.
    pub ip_restricted: bool,
}

/// Why a key's permissions are not acceptable, in words for the trader.
pub fn permission_problem(scope: KeyScope, permissions: &KeyPermissions) -> Option<String> {
    if permissions.can_withdraw {
        return Some(
            "This key can withdraw funds. Create a key without withdrawal permission and add that one instead."
                .into(),
        );
    }
    if !permissions.can_read {
        return Some("The exchange says this key cannot read the account.".into());
    }
    if scope == KeyScope::Trade && !permissions.can_trade {
        return Some(
            "You chose the trade scope, but the exchange says this key cannot trade. Enable spot trading on the key or choose read only."
                .into(),
        );
    }
    None
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct KeyId(pub Uuid);

impl KeyId {
    pub fn new_random() -> Self {
        Self(Uuid::new_v4())
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Uuid::parse_str(raw.trim()).ok().map(Self)
    }

    /// How audit events name this key.
    pub fn resource(&self) -> String {
        format!("exchange_key:{}", self.0)
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A stored key as everyone but the vault sees it: no ciphertext, no plaintext.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    pub id: KeyId,
    pub owner: UserId,
    pub exchange: ExchangeName,
    pub environment: KeyEnvironment,
    pub scope: KeyScope,
    pub label: String,
    pub mask: String,
    pub status: KeyStatus,
    pub status_reason: Option<String>,
    pub permissions: KeyPermissions,
    /// The KMS key (and version) the data key is wrapped under; `None` once revoked.
    pub kms_key_id: Option<String>,
    pub created_at: OffsetDateTime,
    pub last_used_at: Option<OffsetDateTime>,
    pub last_checked_at: Option<OffsetDateTime>,
    pub revoked_at: Option<OffsetDateTime>,
}

impl KeyRecord {
    pub fn binding(&self) -> SecretBinding {
        SecretBinding {
            owner: self.owner,
            record_id: self.id.0,
            exchange: self.exchange.as_str().to_owned(),
            environment: self.environment.as_str().to_owned(),
        }
    }
}

/// A key as the vault reads it: the record, its sealed secret (gone once revoked), and whether
/// it is a decoy.
#[derive(Debug, Clone)]
pub struct StoredKey {
    pub record: KeyRecord,
    pub sealed: Option<SealedSecret>,
    pub canary: bool,
}

/// Why a key is being decrypted; written into its use receipt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyPurpose {
    /// The trader asked to re-check the key's permissions.
    PermissionCheck,
    /// The periodic permission re-check.
    ScheduledCheck,
    /// Signing an order.
    Order(String),
    /// Revoking it: only ever a purpose for decoys, whose revocation raises their alert.
    Revocation,
}

impl KeyPurpose {
    pub fn describe(&self) -> String {
        match self {
            KeyPurpose::PermissionCheck => "permission check".into(),
            KeyPurpose::ScheduledCheck => "scheduled permission check".into(),
            KeyPurpose::Order(id) => format!("order {id}"),
            KeyPurpose::Revocation => "revocation".into(),
        }
    }
}

/// Persistence of key records. Each write carries its audit event; the adapter commits both in
/// one transaction or neither. Reads by owner return `None` for other users' keys.
#[async_trait]
pub trait KeyStore: Send + Sync + fmt::Debug {
    async fn insert(
        &self,
        record: &KeyRecord,
        sealed: &SealedSecret,
        canary: bool,
        audit: AuditDraft,
    ) -> Result<(), StoreError>;
    /// The owner's keys, newest first (decoys included: they must look like any other key).
    async fn list(&self, owner: UserId) -> Result<Vec<KeyRecord>, StoreError>;
    async fn find(&self, owner: UserId, id: KeyId) -> Result<Option<StoredKey>, StoreError>;
    /// Stamps `last_used_at` and appends the use receipt, atomically.
    async fn record_use(
        &self,
        id: KeyId,
        at: OffsetDateTime,
        audit: AuditDraft,
    ) -> Result<(), StoreError>;
    async fn record_check(
        &self,
        id: KeyId,
        permissions: KeyPermissions,
        status: KeyStatus,
        reason: Option<String>,
        at: OffsetDateTime,
        audit: AuditDraft,
    ) -> Result<(), StoreError>;
    /// Swaps the wrapped data key if it is still `old`; `Ok(false)` if the row changed meanwhile.
    async fn replace_wrapped_key(
        &self,
        id: KeyId,
        old: &WrappedKey,
        new: &WrappedKey,
        audit: AuditDraft,
    ) -> Result<bool, StoreError>;
    /// Deletes the ciphertext and marks the key revoked. `NotFound` for another owner's key.
    async fn revoke(
        &self,
        owner: UserId,
        id: KeyId,
        at: OffsetDateTime,
        audit: AuditDraft,
    ) -> Result<KeyRecord, StoreError>;
    /// Keys that still hold a ciphertext, as (owner, id), optionally for one owner.
    async fn sealed_keys(&self, owner: Option<UserId>) -> Result<Vec<(UserId, KeyId)>, StoreError>;
    /// All decoy keys, newest first.
    async fn canaries(&self) -> Result<Vec<KeyRecord>, StoreError>;
}

/// Asks an exchange what a key may do.
#[async_trait]
pub trait Exchange: Send + Sync + fmt::Debug {
    fn name(&self) -> ExchangeName;
    async fn key_permissions(
        &self,
        environment: KeyEnvironment,
        credentials: &ApiCredentials,
    ) -> Result<KeyPermissions, ExchangeError>;

    /// Places an order. Placing the same `client_order_id` twice must not trade twice: the
    /// exchange either answers with the first order or refuses the duplicate.
    /// `credentials` is `None` only for the paper exchange, which needs no key.
    async fn place_order(
        &self,
        environment: KeyEnvironment,
        credentials: Option<&ApiCredentials>,
        order: &VenueOrder,
    ) -> Result<VenueAck, ExchangeError> {
        let _ = (environment, credentials, order);
        Err(ExchangeError::Rejected(
            "this exchange does not take orders".into(),
        ))
    }

    /// Looks an order up by its client order id: how a held order learns whether an earlier,
    /// unanswered attempt reached the exchange. `Ok(None)` means it certainly did not.
    async fn find_order(
        &self,
        environment: KeyEnvironment,
        credentials: Option<&ApiCredentials>,
        symbol: &str,
        client_order_id: &str,
    ) -> Result<Option<VenueAck>, ExchangeError> {
        let _ = (environment, credentials, symbol, client_order_id);
        Err(ExchangeError::Rejected(
            "this exchange does not take orders".into(),
        ))
    }

    /// Cancels a resting order; answers with the order as it stands (it may have filled).
    async fn cancel_order(
        &self,
        environment: KeyEnvironment,
        credentials: Option<&ApiCredentials>,
        symbol: &str,
        client_order_id: &str,
    ) -> Result<VenueAck, ExchangeError> {
        let _ = (environment, credentials, symbol, client_order_id);
        Err(ExchangeError::Rejected(
            "this exchange cannot cancel orders here".into(),
        ))
    }

    /// The last traded price of `symbol`.
    async fn price(
        &self,
        environment: KeyEnvironment,
        symbol: &str,
    ) -> Result<rust_decimal::Decimal, ExchangeError> {
        let _ = (environment, symbol);
        Err(ExchangeError::Rejected(
            "this exchange has no price feed".into(),
        ))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OrderType {
    Market,
    Limit,
}

impl OrderType {
    pub fn as_str(self) -> &'static str {
        match self {
            OrderType::Market => "market",
            OrderType::Limit => "limit",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "market" => Some(OrderType::Market),
            "limit" => Some(OrderType::Limit),
            _ => None,
        }
    }
}

/// Where an order goes: the built-in paper exchange (no key), or an exchange through one of the
/// trader's keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Venue {
    pub exchange: ExchangeName,
    pub environment: KeyEnvironment,
    pub key: Option<KeyId>,
}

impl Venue {
    pub const PAPER: Venue = Venue {
        exchange: ExchangeName::Paper,
        environment: KeyEnvironment::Paper,
        key: None,
    };
}

/// An order as sent to an exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VenueOrder {
    /// Ours, unique per order and reused on every retry: the exchange's idempotency key.
    pub client_order_id: String,
    pub symbol: String,
    pub side: crate::risk::OrderSide,
    pub order_type: OrderType,
    pub quantity: rust_decimal::Decimal,
    /// Required for limit orders, ignored for market orders.
    pub limit_price: Option<rust_decimal::Decimal>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VenueOrderStatus {
    /// Completely filled.
    Filled,
    /// Resting on the book (a limit order that is not marketable yet), maybe partly filled.
    Open,
    /// Cancelled before it filled completely.
    Cancelled,
    /// The exchange refused the order (insufficient balance, bad symbol, ...).
    Rejected(String),
}

/// The exchange's answer about an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VenueAck {
    pub exchange_order_id: String,
    pub status: VenueOrderStatus,
    pub filled_quantity: rust_decimal::Decimal,
    /// Volume-weighted price of the fills so far; `None` before any fill.
    pub average_price: Option<rust_decimal::Decimal>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExchangeError {
    /// The exchange does not accept the key (unknown, wrong environment, bad signature).
    #[error("the exchange refused the key: {0}")]
    Rejected(String),
    /// Certainly not received (connection refused, DNS, breaker open).
    #[error("the exchange could not be reached: {0}")]
    Unreachable(String),
    /// Sent but unanswered in time: the exchange may or may not have acted on it.
    #[error("the exchange did not answer in time: {0}")]
    Timeout(String),
    /// The exchange asked us to slow down; retry after the given seconds.
    #[error("the exchange is rate limiting us; retry in {0} s")]
    RateLimited(u64),
}

impl ExchangeError {
    /// Failures that say the exchange is down or overloaded rather than that the request was
    /// wrong: these open the circuit breaker and hold orders for a retry.
    pub fn is_outage(&self) -> bool {
        !matches!(self, ExchangeError::Rejected(_))
    }
}

/// The exchanges this server is configured for.
#[derive(Debug, Clone, Default)]
pub struct Exchanges(Vec<Arc<dyn Exchange>>);

impl Exchanges {
    pub fn new(exchanges: Vec<Arc<dyn Exchange>>) -> Self {
        Self(exchanges)
    }

    pub fn get(&self, name: ExchangeName) -> Option<&Arc<dyn Exchange>> {
        self.0.iter().find(|e| e.name() == name)
    }
}

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

#[derive(Debug, thiserror::Error)]
pub enum KeyVaultError {
    #[error(transparent)]
    Invalid(#[from] KeyInputError),
    #[error("key not found")]
    NotFound,
    /// The key's permissions break the policy; the message is for the trader.
    #[error("{0}")]
    Refused(String),
    #[error("this key was revoked")]
    Revoked,
    /// Suspended keys and decoys: nothing more is said.
    #[error("this key cannot be used")]
    Unusable,
    #[error("the exchange refused the key: {0}")]
    ExchangeRejected(String),
    #[error("the exchange could not be reached")]
    ExchangeUnavailable,
    #[error("the key management service is unavailable")]
    KmsUnavailable,
    #[error("the stored key does not decrypt")]
    Tampered,
    #[error("the audit log could not be written")]
    AuditUnavailable,
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for KeyVaultError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::NotFound => KeyVaultError::NotFound,
            other => KeyVaultError::Store(other),
        }
    }
}

impl From<VaultError> for KeyVaultError {
    fn from(err: VaultError) -> Self {
        match err {
            VaultError::Tampered => KeyVaultError::Tampered,
            VaultError::Kms(KmsError::InvalidCiphertext) => KeyVaultError::Tampered,
            VaultError::Kms(_) => KeyVaultError::KmsUnavailable,
        }
    }
}

/// What a trader submits on the key-entry form.
#[derive(Debug)]
pub struct NewKeyRequest {
    pub exchange: ExchangeName,
    pub environment: KeyEnvironment,
    pub scope: KeyScope,
    pub label: KeyLabel,
    pub credentials: ApiCredentials,
}

/// Progress of a re-wrap run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RewrapProgress {
    pub total: u64,
    pub rewrapped: u64,
    pub already_current: u64,
    pub failed: u64,
}

impl RewrapProgress {
    pub fn done(&self) -> u64 {
        self.rewrapped + self.already_current + self.failed
    }
}

/// Outcome of a periodic permission re-check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RecheckReport {
    pub checked: u64,
    pub suspended: u64,
    pub failed: u64,
}

#[derive(Debug, Clone)]
pub struct KeyVaultService {
    pub keys: Arc<dyn KeyStore>,
    pub kms: Arc<dyn Kms>,
    pub exchanges: Exchanges,
    pub audit: Arc<dyn AuditLog>,
    pub alerts: Arc<dyn SecurityAlerts>,
    pub clock: Arc<dyn Clock>,
}

impl KeyVaultService {
    async fn permissions(
        &self,
        exchange: ExchangeName,
        environment: KeyEnvironment,
        credentials: &ApiCredentials,
    ) -> Result<KeyPermissions, KeyVaultError> {
        let adapter = self.exchanges.get(exchange).ok_or_else(|| {
            KeyVaultError::Refused(format!(
                "{} is not enabled on this server.",
                exchange.label()
            ))
        })?;
        adapter
            .key_permissions(environment, credentials)
            .await
            .map_err(|e| match e {
                ExchangeError::Rejected(why) => KeyVaultError::ExchangeRejected(why),
                // The adapter logs the cause; the trader hears "unreachable".
                ExchangeError::Unreachable(_)
                | ExchangeError::Timeout(_)
                | ExchangeError::RateLimited(_) => KeyVaultError::ExchangeUnavailable,
            })
    }

    /// Checks the key with its exchange, seals it and stores it. Refusals are audited; the
    /// credentials themselves never reach the audit log.
    pub async fn add_key(
        &self,
        owner: UserId,
        request: NewKeyRequest,
        meta: RequestMeta,
    ) -> Result<KeyRecord, KeyVaultError> {
        if !request
            .exchange
            .environments()
            .contains(&request.environment)
        {
            return Err(KeyInputError::Environment(request.exchange, request.environment).into());
        }
        let mask = request.credentials.mask();
        let refused = |reason: &str| {
            AuditDraft::new(
                Actor::user(owner),
                "vault.key_refused",
                Outcome::Denied,
                meta.clone(),
            )
            .detail("exchange", request.exchange.as_str())
            .detail("environment", request.environment.as_str())
            .detail("scope", request.scope.as_str())
            .detail("reason", reason)
        };
        let permissions = match self
            .permissions(request.exchange, request.environment, &request.credentials)
            .await
        {
            Ok(permissions) => permissions,
            Err(KeyVaultError::ExchangeRejected(why)) => {
                self.audit
                    .record(refused(&why))
                    .await
                    .map_err(|_| KeyVaultError::AuditUnavailable)?;
                return Err(KeyVaultError::ExchangeRejected(why));
            }
            Err(other) => return Err(other),
        };
        if let Some(problem) = permission_problem(request.scope, &permissions) {
            self.audit
                .record(refused(&problem))
                .await
                .map_err(|_| KeyVaultError::AuditUnavailable)?;
            return Err(KeyVaultError::Refused(problem));
        }
        let record = KeyRecord {
            id: KeyId::new_random(),
            owner,
            exchange: request.exchange,
            environment: request.environment,
            scope: request.scope,
            label: request.label.as_str().to_owned(),
            mask,
            status: KeyStatus::Active,
            status_reason: None,
            permissions,
            kms_key_id: None,
            created_at: self.clock.now(),
            last_used_at: None,
            last_checked_at: Some(self.clock.now()),
            revoked_at: None,
        };
        self.store_sealed(
            record,
            &request.credentials,
            false,
            Actor::user(owner),
            meta,
        )
        .await
    }

    async fn store_sealed(
        &self,
        mut record: KeyRecord,
        credentials: &ApiCredentials,
        canary: bool,
        actor: Actor,
        meta: RequestMeta,
    ) -> Result<KeyRecord, KeyVaultError> {
        let sealed = vault::seal(
            self.kms.as_ref(),
            &record.binding(),
            &credentials.to_plaintext(),
        )
        .await?;
        record.kms_key_id = Some(sealed.wrapped_key.kms_key_id.clone());
        let action = if canary {
            "vault.canary_planted"
        } else {
            "vault.key_added"
        };
        let draft = AuditDraft::new(actor, action, Outcome::Success, meta)
            .resource(record.id.resource())
            .detail("owner", record.owner.to_string())
            .detail("exchange", record.exchange.as_str())
            .detail("environment", record.environment.as_str())
            .detail("scope", record.scope.as_str())
            .detail("label", record.label.clone())
            .detail("mask", record.mask.clone())
            .detail("kms_key_id", sealed.wrapped_key.kms_key_id.clone());
        self.keys
            .insert(&record, &sealed, canary, draft)
            .await
            .map_err(store_or_audit)?;
        Ok(record)
    }

    pub async fn list_keys(&self, owner: UserId) -> Result<Vec<KeyRecord>, KeyVaultError> {
        Ok(self.keys.list(owner).await?)
    }

    /// Decrypts a key for one purpose. The use receipt is written first: if the audit log
    /// cannot be written, nothing is decrypted. A decoy raises an alert and is never decrypted.
    pub async fn use_key(
        &self,
        actor: Actor,
        owner: UserId,
        id: KeyId,
        purpose: KeyPurpose,
        meta: RequestMeta,
    ) -> Result<(KeyRecord, ApiCredentials), KeyVaultError> {
        let stored = self
            .keys
            .find(owner, id)
            .await?
            .ok_or(KeyVaultError::NotFound)?;
        if stored.canary {
            self.trip_canary(&actor, &stored.record, &purpose, meta)
                .await?;
            return Err(KeyVaultError::Unusable);
        }
        let Some(sealed) = stored.sealed.as_ref() else {
            return Err(KeyVaultError::Revoked);
        };
        let usable = match stored.record.status {
            KeyStatus::Active => true,
            KeyStatus::Suspended => !matches!(purpose, KeyPurpose::Order(_)),
            KeyStatus::Revoked => false,
        };
        if !usable {
            return Err(KeyVaultError::Unusable);
        }
        let now = self.clock.now();
        let receipt = AuditDraft::new(
            actor.clone(),
            "vault.key_used",
            Outcome::Success,
            meta.clone(),
        )
        .resource(id.resource())
        .detail("owner", owner.to_string())
        .detail("purpose", purpose.describe())
        .detail("kms_key_id", sealed.wrapped_key.kms_key_id.clone());
        self.keys
            .record_use(id, now, receipt)
            .await
            .map_err(store_or_audit)?;
        match vault::open(self.kms.as_ref(), &stored.record.binding(), sealed).await {
            Ok(plaintext) => {
                let credentials =
                    ApiCredentials::from_plaintext(&plaintext).ok_or(KeyVaultError::Tampered)?;
                let mut record = stored.record;
                record.last_used_at = Some(now);
                Ok((record, credentials))
            }
            Err(err) => {
                let err = KeyVaultError::from(err);
                let failure =
                    AuditDraft::new(actor, "vault.key_use_failed", Outcome::Failure, meta)
                        .resource(id.resource())
                        .detail("purpose", purpose.describe())
                        .detail("error", err.to_string());
                // Best effort: the use receipt is already written.
                let _ = self.audit.record(failure).await;
                Err(err)
            }
        }
    }

    async fn trip_canary(
        &self,
        actor: &Actor,
        record: &KeyRecord,
        purpose: &KeyPurpose,
        meta: RequestMeta,
    ) -> Result<(), KeyVaultError> {
        let alert = SecurityAlert {
            id: Uuid::new_v4(),
            kind: "canary_key_used".into(),
            message: format!(
                "Decoy key \"{}\" ({}) was used for {} from {}.",
                record.label,
                record.mask,
                purpose.describe(),
                meta.ip
                    .clone()
                    .unwrap_or_else(|| "an unknown address".into())
            ),
            resource: Some(record.id.resource()),
            actor: Some(match &actor.id {
                Some(id) => format!("{}:{id}", actor.kind.as_str()),
                None => actor.kind.as_str().to_owned(),
            }),
            raised_at: self.clock.now(),
            acknowledged_at: None,
        };
        let draft = AuditDraft::new(
            actor.clone(),
            "security.canary_tripped",
            Outcome::Denied,
            meta,
        )
        .resource(record.id.resource())
        .detail("owner", record.owner.to_string())
        .detail("purpose", purpose.describe())
        .detail("alert", alert.id.to_string());
        self.alerts
            .raise(alert, draft)
            .await
            .map_err(store_or_audit)
    }

    /// Decrypts the key, asks its exchange what it may do and records the result. A key that
    /// gained withdrawal permission (or lost what its scope needs) is suspended.
    pub async fn check_key(
        &self,
        actor: Actor,
        owner: UserId,
        id: KeyId,
        purpose: KeyPurpose,
        meta: RequestMeta,
    ) -> Result<KeyRecord, KeyVaultError> {
        let (mut record, credentials) = self
            .use_key(actor.clone(), owner, id, purpose, meta.clone())
            .await?;
        let permissions = self
            .permissions(record.exchange, record.environment, &credentials)
            .await;
        drop(credentials);
        let (status, reason) = match &permissions {
            Ok(p) => match permission_problem(record.scope, p) {
                Some(problem) => (KeyStatus::Suspended, Some(problem)),
                None => (KeyStatus::Active, None),
            },
            Err(KeyVaultError::ExchangeRejected(why)) => (
                KeyStatus::Suspended,
                Some(format!("The exchange no longer accepts this key: {why}")),
            ),
            Err(_) => return permissions.map(|_| record),
        };
        let permissions = permissions.unwrap_or_default();
        let now = self.clock.now();
        let outcome = if status == KeyStatus::Active {
            Outcome::Success
        } else {
            Outcome::Denied
        };
        let mut draft = AuditDraft::new(actor, "vault.key_checked", outcome, meta)
            .resource(id.resource())
            .detail("status", status.as_str())
            .detail("can_trade", permissions.can_trade)
            .detail("can_withdraw", permissions.can_withdraw)
            .detail("ip_restricted", permissions.ip_restricted);
        if let Some(reason) = &reason {
            draft = draft.detail("reason", reason.clone());
        }
        self.keys
            .record_check(id, permissions, status, reason.clone(), now, draft)
            .await
            .map_err(store_or_audit)?;
        record.permissions = permissions;
        record.status = status;
        record.status_reason = reason;
        record.last_checked_at = Some(now);
        Ok(record)
    }

    /// Re-checks every sealed, non-decoy key (the scheduled job).
    pub async fn recheck_all(&self) -> Result<RecheckReport, KeyVaultError> {
        let mut report = RecheckReport::default();
        for (owner, id) in self.keys.sealed_keys(None).await? {
            let Some(stored) = self.keys.find(owner, id).await? else {
                continue;
            };
            if stored.canary {
                // Checked like any key (without decrypting it or asking its exchange), so its
                // check time and receipts do not give it away.
                match self.recheck_decoy(&stored).await {
                    Ok(()) => report.checked += 1,
                    Err(_) => report.failed += 1,
                }
                continue;
            }
            match self
                .check_key(
                    Actor::system("vault.recheck"),
                    owner,
                    id,
                    KeyPurpose::ScheduledCheck,
                    RequestMeta::default(),
                )
                .await
            {
                Ok(record) if record.status == KeyStatus::Suspended => {
                    report.checked += 1;
                    report.suspended += 1;
                }
                Ok(_) => report.checked += 1,
                Err(_) => report.failed += 1,
            }
        }
        Ok(report)
    }

    /// The scheduled check of a decoy: the same two events a real key's check writes (its use
    /// receipt, then the check), marked `decoy` for reviewers, and the same columns stamped. It
    /// is never decrypted, its exchange is never asked, and its planted permissions stand.
    async fn recheck_decoy(&self, stored: &StoredKey) -> Result<(), KeyVaultError> {
        let record = &stored.record;
        let Some(sealed) = stored.sealed.as_ref() else {
            return Ok(());
        };
        let actor = Actor::system("vault.recheck");
        let purpose = KeyPurpose::ScheduledCheck;
        let now = self.clock.now();
        let receipt = AuditDraft::new(
            actor.clone(),
            "vault.key_used",
            Outcome::Success,
            RequestMeta::default(),
        )
        .resource(record.id.resource())
        .detail("owner", record.owner.to_string())
        .detail("purpose", purpose.describe())
        .detail("kms_key_id", sealed.wrapped_key.kms_key_id.clone())
        .detail("decoy", true);
        self.keys
            .record_use(record.id, now, receipt)
            .await
            .map_err(store_or_audit)?;
        let mut check = AuditDraft::new(
            actor,
            "vault.key_checked",
            Outcome::Success,
            RequestMeta::default(),
        )
        .resource(record.id.resource())
        .detail("status", record.status.as_str())
        .detail("can_trade", record.permissions.can_trade)
        .detail("can_withdraw", record.permissions.can_withdraw)
        .detail("ip_restricted", record.permissions.ip_restricted)
        .detail("decoy", true);
        if let Some(reason) = &record.status_reason {
            check = check.detail("reason", reason.clone());
        }
        self.keys
            .record_check(
                record.id,
                record.permissions,
                record.status,
                record.status_reason.clone(),
                now,
                check,
            )
            .await
            .map_err(store_or_audit)
    }

    /// Re-wraps data keys under the KMS's current key: one owner's, or everyone's (`None`).
    /// The ciphertexts do not change; `progress` is told after each key.
    pub async fn rewrap_keys(
        &self,
        actor: Actor,
        owner: Option<UserId>,
        meta: RequestMeta,
        mut progress: impl FnMut(RewrapProgress) + Send,
    ) -> Result<RewrapProgress, KeyVaultError> {
        let targets = self.keys.sealed_keys(owner).await?;
        let current = self.kms.current_key_id();
        let mut state = RewrapProgress {
            total: targets.len() as u64,
            ..RewrapProgress::default()
        };
        progress(state);
        for (key_owner, id) in targets {
            match self
                .rewrap_one(&actor, key_owner, id, &current, &meta)
                .await
            {
                Ok(true) => state.rewrapped += 1,
                Ok(false) => state.already_current += 1,
                Err(_) => state.failed += 1,
            }
            progress(state);
        }
        let outcome = if state.failed == 0 {
            Outcome::Success
        } else {
            Outcome::Failure
        };
        let scope = owner.map_or_else(|| "all".to_owned(), |o| o.to_string());
        let summary = AuditDraft::new(actor, "vault.rewrap", outcome, meta)
            .detail("scope", scope)
            .detail("kms_key_id", current)
            .detail("total", state.total)
            .detail("rewrapped", state.rewrapped)
            .detail("already_current", state.already_current)
            .detail("failed", state.failed);
        self.audit
            .record(summary)
            .await
            .map_err(|_| KeyVaultError::AuditUnavailable)?;
        Ok(state)
    }

    async fn rewrap_one(
        &self,
        actor: &Actor,
        owner: UserId,
        id: KeyId,
        current: &str,
        meta: &RequestMeta,
    ) -> Result<bool, KeyVaultError> {
        let stored = self
            .keys
            .find(owner, id)
            .await?
            .ok_or(KeyVaultError::NotFound)?;
        let Some(sealed) = stored.sealed else {
            return Ok(false);
        };
        if sealed.wrapped_key.kms_key_id == current {
            return Ok(false);
        }
        let rewrapped = vault::rewrap(self.kms.as_ref(), &stored.record.binding(), &sealed).await?;
        let draft = AuditDraft::new(
            actor.clone(),
            "vault.key_rewrapped",
            Outcome::Success,
            meta.clone(),
        )
        .resource(id.resource())
        .detail("from", sealed.wrapped_key.kms_key_id.clone())
        .detail("to", rewrapped.wrapped_key.kms_key_id.clone());
        let swapped = self
            .keys
            .replace_wrapped_key(id, &sealed.wrapped_key, &rewrapped.wrapped_key, draft)
            .await
            .map_err(store_or_audit)?;
        if swapped {
            Ok(true)
        } else {
            Err(KeyVaultError::NotFound)
        }
    }

    /// Deletes the key's ciphertext (crypto-shredding: the wrapped data key goes with it).
    /// Revoking a decoy looks the same to its owner and raises the alert using it would: the
    /// alert first, so if it cannot be raised, nothing is revoked.
    pub async fn revoke(
        &self,
        owner: UserId,
        id: KeyId,
        meta: RequestMeta,
    ) -> Result<KeyRecord, KeyVaultError> {
        let stored = self
            .keys
            .find(owner, id)
            .await?
            .ok_or(KeyVaultError::NotFound)?;
        if stored.canary {
            self.trip_canary(
                &Actor::user(owner),
                &stored.record,
                &KeyPurpose::Revocation,
                meta.clone(),
            )
            .await?;
        }
        let draft = AuditDraft::new(
            Actor::user(owner),
            "vault.key_revoked",
            Outcome::Success,
            meta,
        )
        .resource(id.resource())
        .detail("owner", owner.to_string());
        self.keys
            .revoke(owner, id, self.clock.now(), draft)
            .await
            .map_err(store_or_audit)
    }

    /// Plants a decoy key in `owner`'s vault. Any later attempt to use it raises an alert.
    pub async fn plant_canary(
        &self,
        admin: UserId,
        owner: UserId,
        label: KeyLabel,
        exchange: ExchangeName,
        environment: KeyEnvironment,
        meta: RequestMeta,
    ) -> Result<KeyRecord, KeyVaultError> {
        if !exchange.environments().contains(&environment) {
            return Err(KeyInputError::Environment(exchange, environment).into());
        }
        let credentials = ApiCredentials::random_decoy();
        let now = self.clock.now();
        let record = KeyRecord {
            id: KeyId::new_random(),
            owner,
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
        self.store_sealed(record, &credentials, true, Actor::user(admin), meta)
            .await
    }

    pub async fn canaries(&self) -> Result<Vec<KeyRecord>, KeyVaultError> {
        Ok(self.keys.canaries().await?)
    }

    /// Adds a master key version (local KMS) and returns its id. The `kms.rotate` event is
    /// written first, while the KMS holds its rotation lock: if the audit log cannot be written,
    /// the key file and the current version stay as they were (`AuditUnavailable`). Should the
    /// key file then fail to take the version, a failure event says so.
    pub async fn rotate_master_key(
        &self,
        admin: UserId,
        meta: RequestMeta,
    ) -> Result<String, KeyVaultError> {
        let rotation = AuditedRotation {
            audit: self.audit.as_ref(),
            actor: Actor::user(admin),
            meta: meta.clone(),
            from: self.kms.current_key_id(),
            recorded: std::sync::Mutex::new(None),
        };
        match self.kms.add_version(&rotation).await {
            Ok(key_id) => Ok(key_id),
            Err(KmsError::NotRecorded) => Err(KeyVaultError::AuditUnavailable),
            Err(err) => {
                let recorded = rotation.recorded.lock().ok().and_then(|r| r.clone());
                if let Some(to) = recorded {
                    let failure =
                        AuditDraft::new(Actor::user(admin), "kms.rotate", Outcome::Failure, meta)
                            .detail("from", rotation.from.clone())
                            .detail("to", to)
                            .detail("error", err.to_string());
                    // Best effort: the success event is already in the chain.
                    let _ = self.audit.record(failure).await;
                }
                Err(match err {
                    KmsError::Refused(_) => KeyVaultError::Refused(format!(
                        "The master key cannot be rotated here: {err}."
                    )),
                    _ => KeyVaultError::KmsUnavailable,
                })
            }
        }
    }

    /// The owner's key-use receipts and other key events, newest first.
    pub async fn receipts(
        &self,
        owner: UserId,
        limit: u64,
    ) -> Result<Vec<AuditEvent>, KeyVaultError> {
        let resources: Vec<String> = self
            .keys
            .list(owner)
            .await?
            .iter()
            .map(|k| k.id.resource())
            .collect();
        Ok(self.audit.for_resources(&resources, limit).await?)
    }
}

/// Writes the `kms.rotate` event for [`KeyVaultService::rotate_master_key`].
struct AuditedRotation<'a> {
    audit: &'a dyn AuditLog,
    actor: Actor,
    meta: RequestMeta,
    from: String,
    /// The new key id, once its event is written.
    recorded: std::sync::Mutex<Option<String>>,
}

#[async_trait]
impl RotationRecord for AuditedRotation<'_> {
    async fn record(&self, new_key_id: &str) -> Result<(), KmsError> {
        let draft = AuditDraft::new(
            self.actor.clone(),
            "kms.rotate",
            Outcome::Success,
            self.meta.clone(),
        )
        .detail("from", self.from.clone())
        .detail("to", new_key_id);
        self.audit
            .record(draft)
            .await
            .map_err(|_| KmsError::NotRecorded)?;
        if let Ok(mut recorded) = self.recorded.lock() {
            *recorded = Some(new_key_id.to_owned());
        }
        Ok(())
    }
}

/// A write that carries an audit event commits both or neither, so a backend failure means the
/// change was not recorded (and did not happen).
fn store_or_audit(err: StoreError) -> KeyVaultError {
    match err {
        StoreError::NotFound => KeyVaultError::NotFound,
        StoreError::Conflict => KeyVaultError::Store(StoreError::Conflict),
        StoreError::Backend(_) => KeyVaultError::AuditUnavailable,
    }
}
