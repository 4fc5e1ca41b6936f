//! The exchange port: what CryptoPulse asks of an exchange (a key's permissions, orders, prices),
//! the credentials it signs with, and the venue an order goes to.
//!
//! Plaintext credentials exist only inside [`ApiCredentials`] (secrecy types: redacting `Debug`,
//! no `Serialize`, zeroed on drop) for the duration of one exchange call.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::ids::{KeyId, string_enum};
use crate::vault;

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

impl ExchangeName {
    /// The environments an exchange offers.
    pub fn environments(self) -> &'static [KeyEnvironment] {
        match self {
            ExchangeName::Paper => &[KeyEnvironment::Paper],
            ExchangeName::Binance => &[KeyEnvironment::Testnet, KeyEnvironment::Live],
        }
    }
}

/// An API key or secret that is not 8 to 256 visible characters without spaces; names which.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "the {field} must be {min} to {max} visible characters without spaces",
    min = ApiCredentials::MIN_CHARS,
    max = ApiCredentials::MAX_CHARS
)]
pub struct InvalidCredential {
    pub field: &'static str,
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

    pub fn parse(
        api_key: SecretString,
        api_secret: SecretString,
    ) -> Result<Self, InvalidCredential> {
        let valid = |s: &str| {
            (Self::MIN_CHARS..=Self::MAX_CHARS).contains(&s.len())
                && s.bytes().all(|b| b.is_ascii_graphic())
        };
        if !valid(api_key.expose_secret().trim()) {
            return Err(InvalidCredential { field: "API key" });
        }
        if !valid(api_secret.expose_secret().trim()) {
            return Err(InvalidCredential {
                field: "API secret",
            });
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
    pub(crate) fn to_plaintext(&self) -> SecretString {
        SecretString::from(format!(
            "{}\n{}",
            self.api_key.expose_secret(),
            self.api_secret.expose_secret()
        ))
    }

    pub(crate) fn from_plaintext(plaintext: &SecretString) -> Option<Self> {
        let (key, secret) = plaintext.expose_secret().split_once('\n')?;
        Some(Self {
            api_key: SecretString::from(key.to_owned()),
            api_secret: SecretString::from(secret.to_owned()),
        })
    }

    /// Random credentials for a decoy key, in the form exchanges issue (64 letters and digits,
    /// as Binance does), so its mask looks like any other key's.
    pub(crate) fn random_decoy() -> Self {
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

    /// The price a buy of `symbol` pays now: the best ask where there is a book (the paper
    /// exchange's feed otherwise). Orders are judged at it.
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

pub use crate::order::OrderType;

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

    /// Whether orders here trade the trader's paper account: the paper exchange, with or
    /// without a paper key (its fills are the paper account's either way).
    pub fn trades_paper_account(self) -> bool {
        self.exchange == ExchangeName::Paper
    }
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
    /// A limit order's limit. A market order's bound (`risk::market_bound`): the worst price it
    /// may fill at, which an exchange with a book gets as an immediate-or-cancel limit, so the
    /// order never executes beyond the value it was judged at. The paper exchange has no book: it
    /// fills a market order at its quote of the moment.
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
