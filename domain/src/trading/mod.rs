//! Trading: orders screened by the two lines in [`crate::risk`], sent to an exchange through the
//! [`crate::exchange::Exchange`] port, held (never lost, never sent twice) while an exchange is
//! down, and the per-user controls (trading state, kill switches, limits) admins set.
//!
//! Rooms: `service` (the service, its constructor, the owner's reads and shared helpers),
//! `ticket` (what the order ticket shows), `placement` (valuing, screening and placing an
//! order), `decision` (the pure [`decide_order`]), `execution` (sending, retries, exchange
//! answers, a held order's approval), `cancellation`, `controls` (admin controls, the trading
//! status, the risk overview), `review` (anomaly cases), `agent` and `agent_service` (tokens,
//! proposals, autonomous mode), `ports` (the stores, one trait per area), `error`, `breaker`,
//! `portfolio`. Each room adds its use cases in its own `impl TradingService` block.

pub mod agent;
mod agent_service;
pub mod breaker;
mod cancellation;
mod controls;
pub mod decision;
mod error;
mod execution;
mod placement;
pub mod portfolio;
pub mod ports;
mod review;
mod service;
mod ticket;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::account::{Email, UserId};
use crate::audit::AuditDraft;
use crate::order::{OrderSide, OrderType};
use crate::risk::{
    AnomalyScore, RiskLimits, RuleHit, Standing, StateEvent, TradeSample, TradingState, Verdict,
};

pub use agent::{AgentScope, AgentToken, NewAgentToken, Proposal, ProposalStatus};
pub use agent_service::AgentOverview;
pub use breaker::CircuitBreakers;
pub use cancellation::StopEffect;
pub use controls::{ControlsChanged, MAX_RANGE_NOTE_CHARS, RiskOverview, TradingStatus};
pub use decision::{OrderDecision, OrderFacts, decide_order};
pub use error::{Conflict, Forbidden, Outage, QuoteFailure, Refusal, TradingError};
pub use execution::STRANDED_AFTER;
pub use placement::refusal_sentence;
pub use portfolio::{Claim, PaperAccount, PaperBook, Portfolio, Position, ValuedPosition};
pub use ports::{
    AgentStore, BlockedRangeStore, CaseDecisionWrite, CaseNotifier, CaseStore, ControlStore,
    ControlsOverview, NoNotifier, OrderRecord, OrderRecordQuery, OrderStore, RawLimits,
    ScreeningSettings, ScreeningStore, TraderLockGuard, TraderLocks, TradingStore, UserRisk,
};
pub use review::{CaseDecision, InvalidReviewNote, ReviewNote};
pub use service::{
    KEYED_ORDER_CHECK_EVERY, PortfolioReport, Quote, TradingDeps, TradingService, VenueChoice,
    device_id,
};
pub use ticket::Ticket;

pub use crate::ids::{CaseId, OrderId};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    /// Refused by the first or second line; never sent.
    Denied,
    /// Waiting: for a reviewer (anomaly, velocity) or for its exchange to come back.
    Held,
    /// Being sent right now (claimed by exactly one sender).
    Submitting,
    /// Resting on the exchange's book.
    Open,
    Filled,
    Cancelled,
    /// The exchange refused it (balance, symbol, ...).
    Rejected,
}

impl OrderStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Denied => "denied",
            OrderStatus::Held => "held",
            OrderStatus::Submitting => "submitting",
            OrderStatus::Open => "open",
            OrderStatus::Filled => "filled",
            OrderStatus::Cancelled => "cancelled",
            OrderStatus::Rejected => "rejected",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        [
            OrderStatus::Denied,
            OrderStatus::Held,
            OrderStatus::Submitting,
            OrderStatus::Open,
            OrderStatus::Filled,
            OrderStatus::Cancelled,
            OrderStatus::Rejected,
        ]
        .into_iter()
        .find(|s| s.as_str() == raw)
    }

    pub fn is_final(self) -> bool {
        matches!(
            self,
            OrderStatus::Denied
                | OrderStatus::Filled
                | OrderStatus::Cancelled
                | OrderStatus::Rejected
        )
    }
}

/// What an order counts for in the day's usage and the anomaly history. An order that can
/// still trade (held, being sent, resting) reserves the value it was screened at, or what it
/// has already executed if that is more; once it is done, what it executed counts, so a partly
/// filled order that is cancelled or expires still counts its fills, and a filled order counts
/// the value it filled at, not the price written on it. A denied order never traded.
pub fn counted_notional(
    status: OrderStatus,
    screened: Decimal,
    filled_quantity: Decimal,
    average_price: Option<Decimal>,
) -> Decimal {
    let executed = match average_price {
        _ if filled_quantity <= Decimal::ZERO => Decimal::ZERO,
        // A fill without a price: its value is not known, so the screened value stands in.
        None => screened,
        // Never wraps into a small number: a value that does not fit counts as the largest.
        Some(price) => filled_quantity.checked_mul(price).unwrap_or(Decimal::MAX),
    };
    match status {
        OrderStatus::Denied => Decimal::ZERO,
        OrderStatus::Held | OrderStatus::Submitting | OrderStatus::Open => screened.max(executed),
        OrderStatus::Filled | OrderStatus::Cancelled | OrderStatus::Rejected => executed,
    }
}

/// Why a held order waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HoldKind {
    /// Its exchange was unreachable; the retry job sends it when the breaker closes.
    Exchange,
    /// A reviewer decides (anomaly case or velocity).
    Review,
    /// Released by a reviewer, but the order needed its owner's step-up approval and does not
    /// have it yet: it is sent only once the owner approves exactly this order.
    Approval,
    /// Cancelled (by its owner or a stop) after a send that went unanswered, so its exchange
    /// may have it: never sent again; the retry job asks the exchange and cancels it there
    /// before it is recorded cancelled.
    Cancelling,
}

impl HoldKind {
    pub fn as_str(self) -> &'static str {
        match self {
            HoldKind::Exchange => "exchange",
            HoldKind::Review => "review",
            HoldKind::Approval => "approval",
            HoldKind::Cancelling => "cancelling",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "exchange" => Some(HoldKind::Exchange),
            "review" => Some(HoldKind::Review),
            "approval" => Some(HoldKind::Approval),
            "cancelling" => Some(HoldKind::Cancelling),
            _ => None,
        }
    }
}

/// Whether an order needed its owner's step-up approval (bound to exactly that order), and
/// whether it has it. A hold never replaces the approval: an order that needed one and was
/// held instead keeps `Awaiting` until its owner approves it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalState {
    NotNeeded,
    /// Needed and not given: the order is never sent in this state.
    Awaiting,
    /// An order-bound approval was spent on it.
    Approved,
}

impl ApprovalState {
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalState::NotNeeded => "not_needed",
            ApprovalState::Awaiting => "awaiting",
            ApprovalState::Approved => "approved",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "not_needed" => Some(ApprovalState::NotNeeded),
            "awaiting" => Some(ApprovalState::Awaiting),
            "approved" => Some(ApprovalState::Approved),
            _ => None,
        }
    }
}

/// Who put the order in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderSource {
    /// The trader, on the order ticket.
    Ticket,
    /// The trader signing off an agent's proposal.
    Proposal,
    /// An agent's proposal placed by autonomous mode, below the cap.
    Autonomous,
}

impl OrderSource {
    pub fn as_str(self) -> &'static str {
        match self {
            OrderSource::Ticket => "ticket",
            OrderSource::Proposal => "proposal",
            OrderSource::Autonomous => "autonomous",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "ticket" => Some(OrderSource::Ticket),
            "proposal" => Some(OrderSource::Proposal),
            "autonomous" => Some(OrderSource::Autonomous),
            _ => None,
        }
    }
}

/// Where an order goes (defined beside the exchange port, so step-up approvals can bind it).
pub use crate::exchange::Venue;

/// An order and the decision taken on it.
#[derive(Debug, Clone, PartialEq)]
pub struct Order {
    pub id: OrderId,
    pub owner: UserId,
    pub venue: Venue,
    /// Unique, reused on every retry: the exchange's idempotency key.
    pub client_order_id: String,
    pub symbol: String,
    pub side: OrderSide,
    pub order_type: OrderType,
    pub quantity: Decimal,
    pub limit_price: Option<Decimal>,
    /// The price the notional was computed with (the limit, or the quote for a market order).
    pub reference_price: Decimal,
    pub notional: Decimal,
    pub status: OrderStatus,
    pub hold: Option<HoldKind>,
    /// Whether it needed (and has) its owner's order-bound step-up approval.
    pub approval: ApprovalState,
    /// What the trader reads next to the status ("Paper exchange unreachable; retrying").
    pub status_reason: Option<String>,
    pub verdict: Verdict,
    pub hits: Vec<RuleHit>,
    pub anomaly: Option<AnomalyScore>,
    pub filled_quantity: Decimal,
    pub average_price: Option<Decimal>,
    pub exchange_order_id: Option<String>,
    pub source: OrderSource,
    pub case: Option<CaseId>,
    pub ip: Option<String>,
    pub device: Option<String>,
    pub attempts: u32,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

impl Order {
    /// Whether an earlier send may have reached the exchange (it went out, or the exchange
    /// gave it an id): before sending or cancelling it again, the exchange is asked.
    pub fn sent_before(&self) -> bool {
        self.attempts > 0 || self.exchange_order_id.is_some()
    }

    /// A claim to send this order, as read.
    pub fn claim_to_send(&self) -> OrderClaim {
        OrderClaim {
            id: self.id,
            from: self.status,
            attempts: self.attempts,
            cancel: false,
        }
    }

    /// A claim to cancel this order, as read.
    pub fn claim_to_cancel(&self) -> OrderClaim {
        OrderClaim {
            cancel: true,
            ..self.claim_to_send()
        }
    }
}

/// A claim on an order, to send or to cancel it. It moves the order from `from` to
/// `Submitting` only if nobody claimed it since it was read (every claim counts an attempt, so
/// `attempts` as read tells), so a stale copy is never acted on. A cancel marks the order as
/// one, so a server stopped mid-cancel leaves a cancel to finish, never a send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrderClaim {
    pub id: OrderId,
    pub from: OrderStatus,
    pub attempts: u32,
    pub cancel: bool,
}

/// One execution of (part of) an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fill {
    pub order: OrderId,
    pub owner: UserId,
    pub symbol: String,
    pub side: OrderSide,
    pub quantity: Decimal,
    pub price: Decimal,
    pub at: OffsetDateTime,
}

/// What an exchange answer changes on an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderUpdate {
    pub status: OrderStatus,
    pub hold: Option<HoldKind>,
    pub status_reason: Option<String>,
    pub filled_quantity: Decimal,
    pub average_price: Option<Decimal>,
    pub exchange_order_id: Option<String>,
}

/// A trader's controls, as admins and the anomaly response set them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserControls {
    pub user: UserId,
    pub state: TradingState,
    pub kill_switch: bool,
    /// Agent proposals below the autonomous cap are placed without sign-off.
    pub autonomous: bool,
}

impl UserControls {
    pub fn default_for(user: UserId) -> Self {
        Self {
            user,
            state: TradingState::Active,
            kill_switch: false,
            autonomous: false,
        }
    }
}

/// A change to a trader's controls; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ControlsChange {
    pub state: Option<TradingState>,
    pub kill_switch: Option<bool>,
    pub autonomous: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockedRange {
    pub id: Uuid,
    /// As the admin typed it, normalised (`203.0.113.0/24`).
    pub cidr: String,
    pub note: String,
    pub created_at: OffsetDateTime,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CaseStatus {
    Open,
    /// The reviewer found nothing wrong: the trader is released, held orders go out.
    Released,
    /// The reviewer confirmed the anomaly: the quarantine stays, held orders are cancelled.
    Confirmed,
}

impl CaseStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CaseStatus::Open => "open",
            CaseStatus::Released => "released",
            CaseStatus::Confirmed => "confirmed",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "open" => Some(CaseStatus::Open),
            "released" => Some(CaseStatus::Released),
            "confirmed" => Some(CaseStatus::Confirmed),
            _ => None,
        }
    }

    /// The subject's standing once a case is decided as `self`, from their standing and whether
    /// other cases of theirs stay open, both as they are inside the write that records it.
    pub fn standing_after(self, before: Standing, other_open_cases: bool) -> Standing {
        match self {
            CaseStatus::Open => before,
            CaseStatus::Released => before.after(StateEvent::CaseReleased { other_open_cases }),
            CaseStatus::Confirmed => before.after(StateEvent::CaseConfirmed),
        }
    }
}

/// What a reviewer sees: the decision, the score breakdown and the trader's recent trades.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaseEvidence {
    pub hits: Vec<RuleHit>,
    pub anomaly: AnomalyScore,
    pub recent: Vec<TradeSample>,
    pub candidate: TradeSample,
    pub state_before: TradingState,
    pub state_after: TradingState,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AnomalyCase {
    pub id: CaseId,
    pub subject: UserId,
    pub order: Option<OrderId>,
    pub score: f64,
    pub evidence: CaseEvidence,
    pub status: CaseStatus,
    pub opened_at: OffsetDateTime,
    pub decided_at: Option<OffsetDateTime>,
    pub decided_by: Option<UserId>,
    pub note: Option<String>,
    /// Advisory text from the optional language model; never acted upon.
    pub rationale: Option<String>,
}

/// A case with what the reviewer reads around it.
#[derive(Debug, Clone, PartialEq)]
pub struct CaseFile {
    pub case: AnomalyCase,
    /// `None` once the account is deleted.
    pub subject_email: Option<Email>,
    pub reviewer_email: Option<Email>,
    /// The subject's standing now.
    pub subject_standing: Standing,
    /// The subject's open cases other than this one.
    pub other_open_cases: u64,
}

impl CaseFile {
    /// The subject's trading state if `decision` were taken now: what the reviewer is about to
    /// do to the trader.
    pub fn state_after(&self, decision: CaseStatus) -> TradingState {
        decision
            .standing_after(self.subject_standing, self.other_open_cases > 0)
            .state
    }
}

/// Amounts a trader has used, for the daily and velocity limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// What today's (UTC) orders count for ([`counted_notional`]): reservations of live
    /// orders, executed value of ended ones. A held order belongs to the day it was sent in.
    pub used_today: Decimal,
    /// Orders (not denied) created within the velocity window.
    pub orders_in_window: u32,
    /// What the orders placed without an approval (`ApprovalState::NotNeeded`) since the
    /// trader's last approved order, within [`UNAPPROVED_LOOKBACK`], count for (as `used_today`
    /// does): how close the next order is to needing a step-up however the value was split.
    pub unapproved_notional: Decimal,
}

/// How far back orders without an approval add up: a rolling day, so midnight starts nothing
/// afresh.
pub const UNAPPROVED_LOOKBACK: time::Duration = time::Duration::hours(24);

/// Where each [`Usage`] figure starts; the store reads the trader's orders since the earliest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsageWindows {
    /// Midnight (UTC) today: the daily limit.
    pub day_start: OffsetDateTime,
    /// The velocity window.
    pub velocity_start: OffsetDateTime,
    /// [`UNAPPROVED_LOOKBACK`] ago.
    pub unapproved_start: OffsetDateTime,
}

impl UsageWindows {
    pub fn at(now: OffsetDateTime, limits: &RiskLimits) -> Self {
        Self {
            day_start: service::start_of_day(now),
            velocity_start: service::velocity_window_start(limits, now),
            unapproved_start: now - UNAPPROVED_LOOKBACK,
        }
    }

    /// The re-check of a held order before sending: today's figure and the unapproved total;
    /// velocity was judged when it was placed.
    pub fn at_send(now: OffsetDateTime) -> Self {
        Self {
            day_start: service::start_of_day(now),
            velocity_start: now,
            unapproved_start: now - UNAPPROVED_LOOKBACK,
        }
    }

    pub fn earliest(&self) -> OffsetDateTime {
        self.day_start
            .min(self.velocity_start)
            .min(self.unapproved_start)
    }
}

/// Everything written when an order is decided, committed in one transaction: the order, its
/// decision's audit events, an anomaly case and the trader's new state. If the audit log cannot
/// be written, none of it is (fail closed).
#[derive(Debug, Clone)]
pub struct OrderDecisionWrite {
    pub order: Order,
    /// The agent proposal this order places: it must still be pending, and is settled as
    /// placed in the same transaction (`Conflict` otherwise, and nothing is written), so a
    /// proposal is placed at most once.
    pub proposal: Option<Uuid>,
    pub case: Option<AnomalyCase>,
    /// The anomaly's quarantine target: applied to the trader's state as it is in this write,
    /// only ever tightening; the `risk.trading_state_changed` draft among `audit` is rewritten
    /// to the change applied, or left out when there is none.
    pub quarantine: Option<TradingState>,
    pub audit: Vec<AuditDraft>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(raw: &str) -> Decimal {
        raw.parse().expect("decimal")
    }

    #[test]
    fn a_partly_filled_order_that_ends_counts_what_it_executed() {
        for status in [OrderStatus::Cancelled, OrderStatus::Rejected] {
            assert_eq!(
                counted_notional(status, d("1000"), d("0.4"), Some(d("1500"))),
                d("600")
            );
            assert_eq!(counted_notional(status, d("1000"), d("0"), None), d("0"));
        }
    }

    #[test]
    fn a_filled_order_counts_its_executed_value_and_a_live_one_its_reservation() {
        assert_eq!(
            counted_notional(OrderStatus::Filled, d("0.01"), d("1"), Some(d("65000"))),
            d("65000")
        );
        assert_eq!(
            counted_notional(OrderStatus::Open, d("1000"), d("0.1"), Some(d("1500"))),
            d("1000")
        );
        assert_eq!(
            counted_notional(OrderStatus::Held, d("1000"), d("0"), None),
            d("1000")
        );
        assert_eq!(
            counted_notional(OrderStatus::Denied, d("1000"), d("0"), None),
            d("0")
        );
        // A fill whose price is unknown counts the screened value, never nothing.
        assert_eq!(
            counted_notional(OrderStatus::Cancelled, d("1000"), d("0.1"), None),
            d("1000")
        );
    }
}
