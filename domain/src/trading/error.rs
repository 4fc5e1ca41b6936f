//! What a trading use case can refuse or fail with, as data. The words people read are the
//! app's (`app/src/error/`); the `Display` texts here are for logs.

use rust_decimal::Decimal;

use super::OrderStatus;
use super::agent::{
    AgentScope, InvalidTokenLifetime, InvalidTokenName, MAX_TOKEN_LIFETIME_DAYS,
    MAX_TOKEN_NAME_CHARS,
};
use crate::exchange::{ExchangeError, ExchangeName};
use crate::keys::{KeyScope, KeyStatus, KeyVaultError};
use crate::order::{OrderFormError, OrderSide, OrderType};
use crate::risk::LimitField;
use crate::stepup::StepUpError;
use crate::store_error::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum TradingError {
    /// The input does not make an order (an order read back from a proposal, say).
    #[error(transparent)]
    Form(#[from] OrderFormError),
    /// A refusal the trader (or admin) can fix; nothing was done.
    #[error("refused: {0}")]
    Refused(#[from] Refusal),
    #[error("not found")]
    NotFound,
    /// The order needs a step-up approval bound to it; nothing was placed. `reasons` are the
    /// sentences of the rules that ask for it.
    #[error("the order needs an order-bound approval")]
    ApprovalRequired { reasons: Vec<String> },
    /// Autonomous mode cannot place this proposal (above the cap, or it needs a step-up): it
    /// stays queued for the trader. Never leaves the service.
    #[error("the proposal needs the trader's sign-off")]
    SignOffRequired,
    #[error(transparent)]
    Approval(StepUpError),
    #[error("forbidden: {0}")]
    Forbidden(Forbidden),
    /// Someone else got there first; nothing was done.
    #[error("conflict: {0}")]
    Conflict(Conflict),
    #[error("the audit log could not be written, so nothing was done")]
    AuditUnavailable,
    #[error("unavailable: {0}")]
    Unavailable(Outage),
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for TradingError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::NotFound => TradingError::NotFound,
            other => TradingError::Store(other),
        }
    }
}

impl From<QuoteFailure> for TradingError {
    fn from(failure: QuoteFailure) -> Self {
        match failure {
            QuoteFailure::NotEnabled => Refusal::ExchangeNotEnabled.into(),
            QuoteFailure::Refused(why) => Refusal::VenueRefused(why).into(),
            QuoteFailure::Outage { exchange, cause } => {
                TradingError::Unavailable(Outage::NoPrice { exchange, cause })
            }
        }
    }
}

/// A write whose store failed: without its audit event nothing was written (fail closed).
pub(super) fn audit_or_store(err: StoreError) -> TradingError {
    match err {
        StoreError::NotFound => TradingError::NotFound,
        StoreError::Backend(_) | StoreError::Unavailable(_) => TradingError::AuditUnavailable,
        other => TradingError::Store(other),
    }
}

/// Why there is no price on a venue right now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuoteFailure {
    #[error("the exchange is not enabled")]
    NotEnabled,
    /// The venue answered but has no price for it (e.g. a symbol it does not list).
    #[error("the venue refused: {0}")]
    Refused(String),
    #[error("{exchange} has no price right now: {cause}")]
    Outage {
        exchange: ExchangeName,
        cause: ExchangeError,
    },
}

/// A refusal the caller can do something about.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    // --- venue and price
    #[error("that exchange is not enabled")]
    ExchangeNotEnabled,
    /// The venue's own reason (e.g. it does not list the symbol).
    #[error("the venue refused: {0}")]
    VenueRefused(String),
    /// Neither "paper" nor the id of one of the trader's keys.
    #[error("not a venue")]
    UnknownVenue,
    #[error("key {label:?} cannot place orders ({status}, {scope})")]
    KeyCannotTrade {
        label: String,
        status: KeyStatus,
        scope: KeyScope,
    },
    /// A market order without the price the trader was quoted.
    #[error("a market order without the quote seen")]
    QuoteMissing,
    /// A market order's quote moved too far since the trader saw it.
    #[error("the price of {symbol} moved from {from} to {to}")]
    PriceMoved {
        symbol: String,
        from: Decimal,
        to: Decimal,
    },
    /// The order's value depends on the market price and there is none.
    #[error("no current price for {symbol}: {cause}")]
    NoQuote {
        symbol: String,
        order_type: OrderType,
        cause: QuoteFailure,
    },
    /// A limit more than [`crate::risk::MAX_LIMIT_THROUGH_QUOTE`] through the quote.
    #[error("a {side:?} limit of {limit} is far through the quote of {quote} for {symbol}")]
    LimitThroughQuote {
        symbol: String,
        side: OrderSide,
        limit: Decimal,
        quote: Decimal,
    },
    #[error("the order's value is too large to compute")]
    ValueTooLarge,
    #[error("paper cash {cash} is short of {needed}")]
    InsufficientCash { needed: Decimal, cash: Decimal },
    #[error("selling {quantity} {symbol} with {held} held")]
    InsufficientHolding {
        symbol: String,
        held: Decimal,
        quantity: Decimal,
    },

    // --- orders after placement
    /// Claimed by a sender at this very moment.
    #[error("the order is being sent")]
    OrderBusy,
    #[error("the order changed meanwhile")]
    OrderChanged,
    #[error("a {status:?} order cannot be cancelled")]
    NotCancellable { status: OrderStatus },
    #[error("the order is not waiting for its owner's approval")]
    NotAwaitingApproval,

    // --- admin controls
    #[error("a global limit cannot be removed")]
    GlobalLimitRequired,
    /// `reason` is the limit's own explanation of what it accepts.
    #[error("invalid {field:?}: {reason}")]
    InvalidLimit { field: LimitField, reason: String },
    /// `reason` is the blocklist's own explanation of what it accepts.
    #[error("invalid IP range: {0}")]
    InvalidRange(String),
    #[error("the note must be one line of at most {max} characters")]
    RangeNote { max: usize },
    #[error("{cidr} is already blocked")]
    AlreadyBlocked { cidr: String },

    // --- review
    #[error("the case was already decided")]
    CaseDecided,

    // --- agents
    /// Creating an agent token needs a second factor set up first.
    #[error("no second factor is set up")]
    FactorRequired,
    #[error("a token name is 1 to {max} characters on one line")]
    TokenName { max: usize },
    #[error("a token lives 1 to {max_days} days")]
    TokenLifetime { max_days: u32 },
    #[error("unknown permission {0:?}")]
    UnknownScope(String),
    #[error("a token needs at least one permission")]
    NoScope,
    #[error("the rationale is longer than {max} characters")]
    RationaleTooLong { max: usize },
    #[error("the proposal was already decided")]
    ProposalDecided,
}

impl From<InvalidTokenName> for Refusal {
    fn from(_: InvalidTokenName) -> Self {
        Refusal::TokenName {
            max: MAX_TOKEN_NAME_CHARS,
        }
    }
}

impl From<InvalidTokenLifetime> for Refusal {
    fn from(_: InvalidTokenLifetime) -> Self {
        Refusal::TokenLifetime {
            max_days: MAX_TOKEN_LIFETIME_DAYS,
        }
    }
}

/// Why a caller may not do this at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Forbidden {
    /// Separation of duties: another admin sets an admin's own controls and limits.
    #[error("an admin's own controls are set by another admin")]
    OwnControls,
    #[error("a reviewer does not review a case about themself")]
    OwnCase,
    /// The agent token lacks the scope.
    #[error("the token lacks {0:?}")]
    TokenScope(AgentScope),
}

/// What someone else did first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Conflict {
    #[error("the proposal was already placed or rejected")]
    ProposalSettled,
    #[error("the order changed meanwhile")]
    OrderChanged,
}

/// A system this use case needs is not answering; nothing was done.
#[derive(Debug, thiserror::Error)]
pub enum Outage {
    #[error("{exchange} has no price right now: {cause}")]
    NoPrice {
        exchange: ExchangeName,
        cause: ExchangeError,
    },
    /// The trader's keys could not be read.
    #[error("the key vault failed: {0}")]
    KeyVault(KeyVaultError),
    /// The order's key could not be used to cancel it; it is still open.
    #[error("the key could not be used to cancel the order: {0}")]
    CancelKey(KeyVaultError),
    /// The venue did not cancel it; it is still open.
    #[error("the order could not be cancelled: {0}")]
    CancelFailed(ExchangeError),
    /// The step-up factors could not be read.
    #[error("the step-up factors could not be read: {0}")]
    Factors(StepUpError),
}
