//! Agent access: bearer tokens a trader creates for a bot, and the trade proposals bots make.
//! An agent can read prices and its trader's portfolio and propose; it can never place, cancel,
//! withdraw or read keys. A proposal waits for the trader's sign-off (or, opted in, is placed by
//! autonomous mode below a cap while the trader is not quarantined).

use base64::Engine as _;
use rand::RngCore;
use rust_decimal::Decimal;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use super::OrderId;
use crate::account::UserId;
use crate::order::{OrderSide, OrderType};

/// What a token allows. There is deliberately no scope to place, cancel or withdraw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AgentScope {
    #[serde(rename = "prices:read")]
    ReadPrices,
    #[serde(rename = "portfolio:read")]
    ReadPortfolio,
    #[serde(rename = "proposals:write")]
    Propose,
}

impl AgentScope {
    pub const ALL: [AgentScope; 3] = [
        AgentScope::ReadPrices,
        AgentScope::ReadPortfolio,
        AgentScope::Propose,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AgentScope::ReadPrices => "prices:read",
            AgentScope::ReadPortfolio => "portfolio:read",
            AgentScope::Propose => "proposals:write",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == raw.trim())
    }

    pub fn label(self) -> &'static str {
        match self {
            AgentScope::ReadPrices => "Read prices",
            AgentScope::ReadPortfolio => "Read my portfolio",
            AgentScope::Propose => "Propose trades (I sign off)",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentToken {
    pub id: Uuid,
    pub owner: UserId,
    pub name: String,
    /// The first characters of the secret, so the trader can tell tokens apart.
    pub prefix: String,
    pub scopes: Vec<AgentScope>,
    pub created_at: OffsetDateTime,
    pub last_used_at: Option<OffsetDateTime>,
    pub revoked_at: Option<OffsetDateTime>,
    /// From this instant on the token is refused (401, audited).
    pub expires_at: OffsetDateTime,
}

impl AgentToken {
    pub fn is_expired(&self, now: OffsetDateTime) -> bool {
        now >= self.expires_at
    }

    pub fn allows(&self, scope: AgentScope) -> bool {
        self.revoked_at.is_none() && self.scopes.contains(&scope)
    }

    pub fn resource(&self) -> String {
        format!("agent_token:{}", self.id)
    }
}

/// A token just created: the secret is shown to the trader once and stored only as a hash.
#[derive(Debug)]
pub struct NewAgentToken {
    pub token: AgentToken,
    pub secret: SecretString,
}

const TOKEN_PREFIX: &str = "cpa_";

/// How long a token lives unless the trader chooses otherwise.
pub const DEFAULT_TOKEN_LIFETIME_DAYS: u32 = 90;
/// The longest lifetime a trader may choose.
pub const MAX_TOKEN_LIFETIME_DAYS: u32 = 365;

/// A token lifetime outside 1 to [`MAX_TOKEN_LIFETIME_DAYS`] days.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a token lives 1 to {MAX_TOKEN_LIFETIME_DAYS} days")]
pub struct InvalidTokenLifetime;

/// A token name that is empty, longer than [`MAX_TOKEN_NAME_CHARS`] or not on one line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a token name is 1 to {MAX_TOKEN_NAME_CHARS} characters on one line")]
pub struct InvalidTokenName;

/// A token's lifetime: the default when not given, else 1 to 365 days.
pub fn token_lifetime(days: Option<u32>) -> Result<Duration, InvalidTokenLifetime> {
    let days = days.unwrap_or(DEFAULT_TOKEN_LIFETIME_DAYS);
    if days == 0 || days > MAX_TOKEN_LIFETIME_DAYS {
        return Err(InvalidTokenLifetime);
    }
    Ok(Duration::days(i64::from(days)))
}

/// A fresh bearer secret (256 random bits) and the hash that is stored.
pub fn generate_token_secret() -> (SecretString, String) {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let secret = format!(
        "{TOKEN_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    );
    let hash = token_hash(&secret);
    (SecretString::from(secret), hash)
}

/// Tokens carry 256 random bits, so a fast unsalted hash is enough to make a stolen table
/// useless while keeping the per-request lookup cheap.
pub fn token_hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Whether a presented bearer value even looks like one of our tokens (cheap pre-check).
pub fn looks_like_token(raw: &str) -> bool {
    raw.starts_with(TOKEN_PREFIX)
        && raw.len() == TOKEN_PREFIX.len() + 43
        && raw[TOKEN_PREFIX.len()..]
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// The longest token name, in characters.
pub const MAX_TOKEN_NAME_CHARS: usize = 60;

pub fn parse_token_name(raw: &str) -> Result<String, InvalidTokenName> {
    let name = raw.trim();
    if name.is_empty()
        || name.chars().count() > MAX_TOKEN_NAME_CHARS
        || !crate::text::is_plain(name)
    {
        return Err(InvalidTokenName);
    }
    Ok(name.to_owned())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProposalStatus {
    /// Waiting for the trader.
    Pending,
    /// Turned into an order (which may itself be held or denied: see the order).
    Placed,
    /// The trader said no.
    Rejected,
}

impl ProposalStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ProposalStatus::Pending => "pending",
            ProposalStatus::Placed => "placed",
            ProposalStatus::Rejected => "rejected",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "pending" => Some(ProposalStatus::Pending),
            "placed" => Some(ProposalStatus::Placed),
            "rejected" => Some(ProposalStatus::Rejected),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proposal {
    pub id: Uuid,
    pub owner: UserId,
    pub token: Uuid,
    pub symbol: String,
    pub side: OrderSide,
    pub order_type: OrderType,
    pub quantity: Decimal,
    pub limit_price: Option<Decimal>,
    /// The agent's words: shown to the trader as quoted text, never interpreted.
    pub rationale: String,
    pub status: ProposalStatus,
    pub order: Option<OrderId>,
    pub created_at: OffsetDateTime,
    pub decided_at: Option<OffsetDateTime>,
}

impl Proposal {
    pub fn resource(&self) -> String {
        format!("proposal:{}", self.id)
    }
}

pub const MAX_RATIONALE_CHARS: usize = 2000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_lives_ninety_days_unless_the_trader_chooses_one_to_365() {
        assert_eq!(token_lifetime(None), Ok(Duration::days(90)));
        assert_eq!(token_lifetime(Some(1)), Ok(Duration::days(1)));
        assert_eq!(token_lifetime(Some(365)), Ok(Duration::days(365)));
        assert!(token_lifetime(Some(0)).is_err());
        assert!(token_lifetime(Some(366)).is_err());
    }

    #[test]
    fn a_token_is_expired_from_its_expiry_instant_on() {
        let created = OffsetDateTime::UNIX_EPOCH;
        let token = AgentToken {
            id: Uuid::nil(),
            owner: UserId(Uuid::nil()),
            name: "bot".into(),
            prefix: "cpa_".into(),
            scopes: vec![AgentScope::ReadPrices],
            created_at: created,
            last_used_at: None,
            revoked_at: None,
            expires_at: created + Duration::days(90),
        };
        assert!(!token.is_expired(created + Duration::days(90) - Duration::seconds(1)));
        assert!(token.is_expired(created + Duration::days(90)));
    }
}
