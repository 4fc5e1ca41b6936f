//! Trading and order-form errors as the person (or agent) asking is told them: the only place
//! that words them. Server functions convert with `?`; the agent API converts through
//! [`AppError::from_trading`] so it answers with the same kinds.

use domain::keys::KeyVaultError;
use domain::order::{InvalidAmount, MAX_AMOUNT_SCALE, MAX_ORDER_AMOUNT, OrderFormError, OrderType};
use domain::trading::portfolio::QUOTE_CURRENCY;
use domain::trading::{
    Conflict, InvalidReviewNote, Outage, QuoteFailure, Refusal, ReviewNote, TradingError,
    refusal_sentence,
};
use rust_decimal::Decimal;

use super::AppError;
use super::keys::key_vault_message;
use crate::api::stepup::StepUpNeed;

impl AppError {
    /// `err` as answered to the request `request_id` (logged with it when the cause is
    /// internal). Server functions reach this through `From`, which reads the id itself.
    pub fn from_trading(err: TradingError, request_id: Option<String>) -> Self {
        match err {
            TradingError::Form(e) => e.into(),
            TradingError::Refused(refusal) => refusal.into(),
            TradingError::NotFound => AppError::NotFound,
            TradingError::ApprovalRequired { reasons } => AppError::OrderApprovalRequired(reasons),
            TradingError::Approval(e) => e.into(),
            // The reason (separation of duties, a token's scope) is in the audit log.
            TradingError::Forbidden(_) => AppError::Forbidden,
            TradingError::Conflict(conflict) => AppError::Conflict(conflict_message(conflict)),
            TradingError::AuditUnavailable => AppError::Unavailable(
                "The audit log could not be written, so nothing was done. Try again shortly."
                    .into(),
            ),
            TradingError::Unavailable(outage) => outage_error(outage, request_id),
            TradingError::Store(e) => AppError::store_failure_for(request_id, e),
            // Autonomous mode's internal answer: the service keeps it to itself.
            other @ TradingError::SignOffRequired => AppError::internal_for(request_id, other),
        }
    }
}

impl From<TradingError> for AppError {
    fn from(err: TradingError) -> Self {
        AppError::from_trading(err, crate::api::context::request_meta().request_id)
    }
}

/// A refusal found while parsing input at the edge (e.g. an unknown venue).
impl From<Refusal> for AppError {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::FactorRequired => AppError::StepUpRequired(StepUpNeed::SetUpFactor),
            other => AppError::Invalid(refusal_message(other)),
        }
    }
}

impl From<InvalidReviewNote> for AppError {
    fn from(_: InvalidReviewNote) -> Self {
        AppError::Invalid(format!(
            "Write a note of {} to {} characters explaining the decision.",
            ReviewNote::MIN_CHARS,
            ReviewNote::MAX_CHARS
        ))
    }
}

impl From<OrderFormError> for AppError {
    fn from(err: OrderFormError) -> Self {
        AppError::Invalid(order_form_message(err))
    }
}

fn order_form_message(err: OrderFormError) -> String {
    match err {
        OrderFormError::Symbol(_) => {
            "Symbol must be 2 to 20 letters or digits, e.g. BTCUSDT.".into()
        }
        OrderFormError::Side => "Side must be buy or sell.".into(),
        OrderFormError::OrderType => "Order type must be market or limit.".into(),
        OrderFormError::Quantity(why) => amount_message("Quantity", why),
        OrderFormError::Price(why) => amount_message("Price", why),
        OrderFormError::LimitPriceMissing => "A limit order needs a limit price.".into(),
        OrderFormError::LimitPriceOnMarket => "A limit price is only for limit orders.".into(),
    }
}

fn amount_message(what: &str, why: InvalidAmount) -> String {
    match why {
        InvalidAmount::NotADecimal => format!("{what} must be a decimal number."),
        InvalidAmount::NotPositive | InvalidAmount::TooPrecise => {
            format!("{what} must be positive, with at most {MAX_AMOUNT_SCALE} decimal places.")
        }
        InvalidAmount::TooLarge => format!("{what} is too large: at most {MAX_ORDER_AMOUNT}."),
    }
}

fn plain(d: Decimal) -> String {
    d.normalize().to_string()
}

fn refusal_message(refusal: Refusal) -> String {
    match refusal {
        Refusal::ExchangeNotEnabled => "That exchange is not enabled.".into(),
        // The venue's own words (e.g. it does not list the symbol).
        Refusal::VenueRefused(why) => why,
        Refusal::UnknownVenue => "Choose an account to trade with.".into(),
        Refusal::KeyCannotTrade {
            label,
            status,
            scope,
        } => format!(
            "The key \"{label}\" cannot place orders (it is {} and {}).",
            status.label().to_lowercase(),
            scope.label().to_lowercase()
        ),
        Refusal::QuoteMissing => {
            "A market order needs the price you were quoted; reload the ticket.".into()
        }
        Refusal::PriceMoved { symbol, from, to } => format!(
            "The price of {symbol} moved from {} to {}. Check the new notional and submit again.",
            plain(from),
            plain(to)
        ),
        Refusal::NoQuote {
            symbol,
            order_type,
            cause,
        } => {
            let what = match order_type {
                OrderType::Market => "a market order trades at the market price",
                OrderType::Limit => "a sell limit below the market trades at the market price",
            };
            format!(
                "There is no current price for {symbol}: {} Without one this order cannot be \
                 checked ({what}), so it was not placed. Try again when prices are back.",
                quote_failure_message(cause)
            )
        }
        // An order's record states these too, so the domain words them once for both.
        screening @ (Refusal::LimitThroughQuote { .. } | Refusal::ValueTooLarge) => {
            refusal_sentence(&screening).unwrap_or_else(|| screening.to_string())
        }
        // The amounts are what is free: cash and holdings less what live orders may take.
        Refusal::InsufficientCash { needed, cash } => format!(
            "Not enough paper {QUOTE_CURRENCY}: this order needs {} and {} is free (your cash less your open and held buy orders).",
            plain(needed),
            plain(cash.max(Decimal::ZERO))
        ),
        Refusal::InsufficientHolding {
            symbol,
            held,
            quantity,
        } => format!(
            "You have {} {symbol} free to sell (what you hold less your open and held sell orders); you cannot sell {}.",
            plain(held.max(Decimal::ZERO)),
            plain(quantity)
        ),
        Refusal::OrderBusy => "The order is being sent right now; try again in a moment.".into(),
        Refusal::OrderChanged => "The order changed meanwhile; reload and try again.".into(),
        Refusal::NotCancellable { status } => {
            format!("A {} order cannot be cancelled.", status.as_str())
        }
        Refusal::NotAwaitingApproval => "This order is not waiting for your approval.".into(),
        Refusal::GlobalLimitRequired => {
            "A global limit cannot be removed; set a value instead.".into()
        }
        // The limit's and the blocklist's own explanations of what they accept.
        Refusal::InvalidLimit { reason, .. } | Refusal::InvalidRange(reason) => reason,
        Refusal::RangeNote { max } => {
            format!("The note must be at most {max} characters on one line.")
        }
        Refusal::AlreadyBlocked { cidr } => format!("{cidr} is already blocked."),
        Refusal::CaseDecided => "This case was already decided.".into(),
        Refusal::FactorRequired => StepUpNeed::SetUpFactor.message().into(),
        Refusal::TokenName { max } => {
            format!("Give the token a name of 1 to {max} characters, e.g. \"grid bot\".")
        }
        Refusal::TokenLifetime { max_days } => format!("A token can live 1 to {max_days} days."),
        Refusal::UnknownScope(raw) => format!("Unknown permission \"{raw}\"."),
        Refusal::NoScope => "Choose at least one permission for the token.".into(),
        Refusal::RationaleTooLong { max } => {
            format!("The rationale may be at most {max} characters.")
        }
        Refusal::ProposalDecided => "This proposal was already decided.".into(),
    }
}

fn quote_failure_message(failure: QuoteFailure) -> String {
    match failure {
        QuoteFailure::NotEnabled => "That exchange is not enabled.".into(),
        QuoteFailure::Refused(why) => why,
        QuoteFailure::Outage { exchange, cause } => {
            format!("{} has no price right now ({cause}).", exchange.label())
        }
    }
}

fn conflict_message(conflict: Conflict) -> String {
    match conflict {
        Conflict::ProposalSettled => "This proposal was already placed or rejected.".into(),
        Conflict::OrderChanged => "The order changed meanwhile; reload and try again.".into(),
    }
}

fn outage_error(outage: Outage, request_id: Option<String>) -> AppError {
    let message = match outage {
        Outage::NoPrice { exchange, cause } => {
            format!("{} has no price right now ({cause}).", exchange.label())
        }
        Outage::KeyVault(e) => key_vault_outage(&request_id, &e),
        Outage::CancelKey(e) => format!(
            "The order is still open: its key could not be used to cancel it. {}",
            key_vault_outage(&request_id, &e)
        ),
        Outage::CancelFailed(e) => {
            format!("The order could not be cancelled ({e}); it is still open.")
        }
        Outage::Factors(e) => {
            log_outage(&request_id, &e);
            "Your step-up factors could not be read right now, so nothing was done. Try again \
             shortly."
                .into()
        }
    };
    AppError::Unavailable(message)
}

/// The key vault's own wording; its storage and decryption failures are logged too.
fn key_vault_outage(request_id: &Option<String>, err: &KeyVaultError) -> String {
    if matches!(err, KeyVaultError::Store(_) | KeyVaultError::Tampered) {
        log_outage(request_id, err);
    }
    key_vault_message(err)
}

fn log_outage(request_id: &Option<String>, detail: &dyn std::fmt::Display) {
    tracing::warn!(
        request_id = request_id.as_deref().unwrap_or_default(),
        error = %detail,
        "trading dependency unavailable"
    );
}
