//! The trading ports, one small trait per area: controls and limits, the IP blocklist, orders,
//! anomaly cases, agents. [`TradingStore`] is all of them together, implemented for any type
//! that implements each, so the service holds one handle.
//!
//! Writes take their audit events and commit with them or not at all. Reads by owner return
//! `None`/nothing for other users' rows.

use std::collections::BTreeMap;
use std::fmt;

use async_trait::async_trait;
use time::OffsetDateTime;
use uuid::Uuid;

use super::agent::{AgentToken, Proposal, ProposalStatus};
use super::{
    AnomalyCase, BlockedRange, CaseFile, CaseId, CaseStatus, Claim, ControlsChange, Fill, HoldKind,
    Order, OrderClaim, OrderDecisionWrite, OrderId, OrderStatus, OrderUpdate, PaperAccount,
    Portfolio, Usage, UsageWindows, UserControls,
};
use crate::account::{User, UserId};
use crate::audit::AuditDraft;
use crate::exchange::ExchangeName;
use crate::order::OrderSide;
use crate::risk::TradeSample;
use crate::store_error::StoreError;

/// Raw limit values by field key, as stored (validated when resolved).
pub type RawLimits = BTreeMap<String, String>;

/// One user as the admin's risk page shows them.
#[derive(Debug, Clone, PartialEq)]
pub struct UserRisk {
    pub user: User,
    pub controls: UserControls,
    /// The user's own limit overrides.
    pub overrides: RawLimits,
    pub open_cases: u64,
}

/// Every user's controls, overrides and open cases with the global limits and kill switch,
/// read together for the admin's risk page.
#[derive(Debug, Clone, PartialEq)]
pub struct ControlsOverview {
    pub global_kill: bool,
    pub global_limits: RawLimits,
    /// Every user, in sign-up order.
    pub users: Vec<UserRisk>,
}

/// A reviewer's decision on a case, as written.
#[derive(Debug, Clone)]
pub struct CaseDecisionWrite {
    pub id: CaseId,
    pub status: CaseStatus,
    pub reviewer: UserId,
    pub note: String,
    pub at: OffsetDateTime,
    /// Without the subject's state after the decision: the store works it out inside the write
    /// (`CaseStatus::standing_after`) and adds it to the event as `state_after`.
    pub audit: AuditDraft,
}

/// Limits, the global kill switch and each trader's controls.
#[async_trait]
pub trait ControlStore: Send + Sync + fmt::Debug {
    /// Raw limit values: (global, this user's overrides), by field key.
    async fn limits(&self, user: UserId) -> Result<(RawLimits, RawLimits), StoreError>;
    /// Sets (`Some`) or clears (`None`) a global (`user: None`) or per-user limit.
    async fn set_limit(
        &self,
        user: Option<UserId>,
        field: &str,
        value: Option<&str>,
        audit: AuditDraft,
    ) -> Result<(), StoreError>;
    async fn global_kill_switch(&self) -> Result<bool, StoreError>;
    async fn set_global_kill_switch(&self, on: bool, audit: AuditDraft) -> Result<(), StoreError>;
    /// The user's controls; defaults (active, no kill switch) for a user never changed.
    async fn controls(&self, user: UserId) -> Result<UserControls, StoreError>;
    /// Users whose controls differ from the defaults.
    async fn restricted_users(&self) -> Result<Vec<UserControls>, StoreError>;
    async fn change_controls(
        &self,
        user: UserId,
        change: ControlsChange,
        audit: AuditDraft,
    ) -> Result<UserControls, StoreError>;
    /// Every user with their controls, overrides and open cases, and the global settings, in
    /// a fixed number of queries (not one per user).
    async fn controls_overview(&self) -> Result<ControlsOverview, StoreError>;
}

/// The IP ranges no order may come from.
#[async_trait]
pub trait BlockedRangeStore: Send + Sync + fmt::Debug {
    async fn blocklist(&self) -> Result<Vec<BlockedRange>, StoreError>;
    /// `Conflict` if the same range is already listed.
    async fn add_blocked_range(
        &self,
        range: &BlockedRange,
        audit: AuditDraft,
    ) -> Result<(), StoreError>;
    /// `NotFound` for an unknown id.
    async fn remove_blocked_range(&self, id: Uuid, audit: AuditDraft) -> Result<(), StoreError>;
}

/// Orders, their decisions, claims, exchange answers and fills.
#[async_trait]
pub trait OrderStore: Send + Sync + fmt::Debug {
    /// What the user's orders count for in `windows`, without the order `leaving_out` (one
    /// judged again before it is sent). An order counts in the day (and the unapproved total)
    /// from when it was placed, or, for a held order sent later, from then
    /// ([`OrderStore::count_from`]).
    async fn usage(
        &self,
        user: UserId,
        windows: UsageWindows,
        leaving_out: Option<OrderId>,
    ) -> Result<Usage, StoreError>;
    /// The user's last `limit` orders that traded (filled, open, or ended after a partial
    /// fill), oldest first, each with its [`super::counted_notional`].
    async fn trade_history(&self, user: UserId, limit: u64)
    -> Result<Vec<TradeSample>, StoreError>;
    /// Whether the user ever placed an order from this IP / this device that was not denied and
    /// did not lack a step-up approval it needed (`ApprovalState::Awaiting`): an order refused
    /// or held for want of a second factor never makes an IP or device familiar.
    async fn seen_before(
        &self,
        user: UserId,
        ip: Option<&str>,
        device: Option<&str>,
    ) -> Result<(bool, bool), StoreError>;
    async fn record_decision(&self, write: OrderDecisionWrite) -> Result<(), StoreError>;
    /// Moves an order to `Submitting` if it is still as `claim` read it (its status and
    /// attempts), counts the attempt and, for a cancel, marks it as one, committing `audit`
    /// with it; `false` (and nothing written) if anyone claimed it since.
    async fn claim_order(&self, claim: OrderClaim, audit: AuditDraft) -> Result<bool, StoreError>;
    /// A held order (claimed, `Submitting`) passed its re-check at `at` and goes out now: from
    /// then on it counts in [`OrderStore::usage`] in that day and the unapproved total, not
    /// from when it was placed. `NotFound` if it is not being sent.
    async fn count_from(&self, id: OrderId, at: OffsetDateTime) -> Result<(), StoreError>;
    /// Stores an exchange's answer (and the fill it brought, if any) for a `Submitting` or
    /// `Open` order. Fills are cumulative: `update.filled_quantity` is the new total.
    async fn record_update(
        &self,
        id: OrderId,
        update: OrderUpdate,
        fill: Option<Fill>,
        audit: AuditDraft,
    ) -> Result<(), StoreError>;
    /// The owner approved an order waiting for approval (`Held/Approval`): it becomes
    /// `Held/Exchange` with `ApprovalState::Approved`, ready to send. `false` if the order was
    /// not (or no longer) waiting for the owner's approval.
    async fn approve_held_order(
        &self,
        owner: UserId,
        id: OrderId,
        at: OffsetDateTime,
        audit: AuditDraft,
    ) -> Result<bool, StoreError>;
    async fn order(&self, owner: UserId, id: OrderId) -> Result<Option<Order>, StoreError>;
    /// The owner's orders, newest first.
    async fn orders(&self, owner: UserId, limit: u64) -> Result<Vec<Order>, StoreError>;
    /// Every user's orders in a status (and hold kind), oldest first, after `after` (the
    /// creation time and id of the last order of the previous page): the retry and sweep jobs.
    async fn orders_in_status(
        &self,
        status: OrderStatus,
        hold: Option<HoldKind>,
        after: Option<(OffsetDateTime, OrderId)>,
        limit: u64,
    ) -> Result<Vec<Order>, StoreError>;
    /// Resting (`Open`) orders of `owner`, or of every user, oldest first; only those on
    /// `side` when given.
    async fn resting_orders(
        &self,
        owner: Option<UserId>,
        side: Option<OrderSide>,
        limit: u64,
    ) -> Result<Vec<Order>, StoreError>;
    /// The owner's fills in the order they were recorded; only those on `exchange` when given.
    async fn fills(
        &self,
        owner: UserId,
        exchange: Option<ExchangeName>,
    ) -> Result<Vec<Fill>, StoreError>;
    /// The owner's newest fills on every venue, newest first.
    async fn recent_fills(&self, owner: UserId, limit: u64) -> Result<Vec<Fill>, StoreError>;
    /// The paper account: `Portfolio::from_fills` of the owner's paper fills, without reading
    /// all of them on every order.
    async fn paper_portfolio(&self, owner: UserId) -> Result<Portfolio, StoreError>;
    /// What the owner's live paper orders (held, being sent, resting) may still take.
    async fn paper_claims(&self, owner: UserId) -> Result<Vec<Claim>, StoreError>;
}

/// Anomaly cases and reviewers' decisions.
#[async_trait]
pub trait CaseStore: Send + Sync + fmt::Debug {
    async fn cases(
        &self,
        status: Option<CaseStatus>,
        limit: u64,
    ) -> Result<Vec<AnomalyCase>, StoreError>;
    async fn case(&self, id: CaseId) -> Result<Option<AnomalyCase>, StoreError>;
    /// Cases (newest first) with their subject's and reviewer's accounts and the subject's
    /// state now, in a fixed number of queries.
    async fn case_files(
        &self,
        status: Option<CaseStatus>,
        limit: u64,
    ) -> Result<Vec<CaseFile>, StoreError>;
    async fn case_file(&self, id: CaseId) -> Result<Option<CaseFile>, StoreError>;
    async fn open_cases_for(&self, user: UserId) -> Result<u64, StoreError>;
    /// Decides an open case, sets the subject's state and moves the case's held orders to
    /// `Held/Exchange` (released: they go out) or `Cancelled` (confirmed). A released order
    /// still awaiting its owner's step-up approval goes to `Held/Approval` instead, never out.
    /// `false` if the case was no longer open.
    async fn decide_case(&self, write: CaseDecisionWrite) -> Result<bool, StoreError>;
    /// Stores a case's advisory rationale with its audit event, or neither.
    async fn set_case_rationale(
        &self,
        id: CaseId,
        rationale: &str,
        audit: AuditDraft,
    ) -> Result<(), StoreError>;
}

/// Agent tokens and the proposals agents make.
#[async_trait]
pub trait AgentStore: Send + Sync + fmt::Debug {
    async fn insert_agent_token(
        &self,
        token: &AgentToken,
        hash: &str,
        audit: AuditDraft,
    ) -> Result<(), StoreError>;
    /// A not revoked token by the SHA-256 of its secret (expired ones too, so their use can
    /// be audited); stamps `last_used_at` unless it has expired.
    async fn agent_token_by_hash(
        &self,
        hash: &str,
        at: OffsetDateTime,
    ) -> Result<Option<AgentToken>, StoreError>;
    async fn agent_tokens(&self, owner: UserId) -> Result<Vec<AgentToken>, StoreError>;
    /// `NotFound` for another owner's or an unknown token.
    async fn revoke_agent_token(
        &self,
        owner: UserId,
        id: Uuid,
        at: OffsetDateTime,
        audit: AuditDraft,
    ) -> Result<(), StoreError>;
    async fn insert_proposal(
        &self,
        proposal: &Proposal,
        audit: AuditDraft,
    ) -> Result<(), StoreError>;
    async fn proposals(&self, owner: UserId, limit: u64) -> Result<Vec<Proposal>, StoreError>;
    async fn proposal(&self, owner: UserId, id: Uuid) -> Result<Option<Proposal>, StoreError>;
    /// The proposal `order` was placed for, if any.
    async fn proposal_for_order(
        &self,
        owner: UserId,
        order: OrderId,
    ) -> Result<Option<Proposal>, StoreError>;
    /// Moves a proposal from `Pending` to `status` (with the order placed for it); `false` if
    /// it was no longer pending.
    async fn settle_proposal(
        &self,
        owner: UserId,
        id: Uuid,
        status: ProposalStatus,
        order: Option<OrderId>,
        at: OffsetDateTime,
        audit: AuditDraft,
    ) -> Result<bool, StoreError>;
}

/// The settings an order is screened and sent under, besides its owner's order history.
#[derive(Debug, Clone, PartialEq)]
pub struct ScreeningSettings {
    pub global_limits: RawLimits,
    /// The trader's own limit overrides.
    pub own_limits: RawLimits,
    pub global_kill: bool,
    pub controls: UserControls,
    /// Every blocked range's CIDR, in no particular order.
    pub blocked_cidrs: Vec<String>,
    /// The trader's open anomaly cases.
    pub open_cases: u64,
}

/// Which of the owner's orders screening reads once their limits are known: their usage since
/// `day_start` and `window_start`, their last `history_len` trades, and whether `ip` and
/// `device` are familiar.
#[derive(Debug, Clone, Copy)]
pub struct OrderRecordQuery<'a> {
    pub owner: UserId,
    pub windows: UsageWindows,
    pub history_len: u64,
    pub ip: Option<&'a str>,
    pub device: Option<&'a str>,
}

/// What screening reads of the trader's own orders once their limits are known.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderRecord {
    pub usage: Usage,
    /// [`OrderStore::trade_history`], oldest first.
    pub history: Vec<TradeSample>,
    /// [`OrderStore::seen_before`] of the order's IP and device.
    pub seen_ip: bool,
    pub seen_device: bool,
}

/// The reads of screening, together.
#[async_trait]
pub trait ScreeningStore: ControlStore + BlockedRangeStore + CaseStore + OrderStore {
    /// One read per area here; a store that can read them in one round trip should (the SQL
    /// store does: each statement costs a hand-off to the database's connection).
    async fn screening_settings(&self, user: UserId) -> Result<ScreeningSettings, StoreError> {
        let (global_limits, own_limits) = self.limits(user).await?;
        Ok(ScreeningSettings {
            global_limits,
            own_limits,
            global_kill: self.global_kill_switch().await?,
            controls: self.controls(user).await?,
            blocked_cidrs: self
                .blocklist()
                .await?
                .into_iter()
                .map(|range| range.cidr)
                .collect(),
            open_cases: self.open_cases_for(user).await?,
        })
    }

    /// The paper account with its live orders' claims, and the screening settings: what an
    /// order is checked against before its limits are known.
    async fn account_and_settings(
        &self,
        owner: UserId,
    ) -> Result<(PaperAccount, ScreeningSettings), StoreError> {
        // Claims first: an order that fills between the two reads is then counted twice
        // (claimed and in the book), never not at all.
        let claims = self.paper_claims(owner).await?;
        let account = PaperAccount {
            portfolio: self.paper_portfolio(owner).await?,
            claims,
        };
        Ok((account, self.screening_settings(owner).await?))
    }

    async fn order_record(&self, query: OrderRecordQuery<'_>) -> Result<OrderRecord, StoreError> {
        OrderRecord::read_one_by_one(self, query).await
    }
}

impl OrderRecord {
    /// The record in three [`OrderStore`] reads: [`ScreeningStore::order_record`] of a store
    /// that does not batch them (or not on every database).
    pub async fn read_one_by_one<S: OrderStore + ?Sized>(
        store: &S,
        query: OrderRecordQuery<'_>,
    ) -> Result<Self, StoreError> {
        let OrderRecordQuery {
            owner,
            windows,
            history_len,
            ip,
            device,
        } = query;
        let usage = store.usage(owner, windows, None).await?;
        let history = store.trade_history(owner, history_len).await?;
        let (seen_ip, seen_device) = store.seen_before(owner, ip, device).await?;
        Ok(Self {
            usage,
            history,
            seen_ip,
            seen_device,
        })
    }
}

/// Persistence for trading: every area's port, so one handle serves the service.
pub trait TradingStore:
    ControlStore + BlockedRangeStore + OrderStore + CaseStore + AgentStore + ScreeningStore
{
}

impl<T> TradingStore for T where
    T: ControlStore
        + BlockedRangeStore
        + OrderStore
        + CaseStore
        + AgentStore
        + ScreeningStore
        + ?Sized
{
}

/// One trader's placements, one at a time across every app server sharing the database
/// (PostgreSQL advisory locks). A single server (SQLite) needs only its in-process lock.
#[async_trait]
pub trait TraderLocks: Send + Sync + fmt::Debug {
    /// Waits, for a bounded time, until no other server is placing for `trader`; the lock is
    /// held until the guard is dropped. An error when it cannot be had: nothing is placed.
    async fn lock(&self, trader: UserId) -> Result<TraderLockGuard, StoreError>;
}

/// Holds a [`TraderLocks`] lock until dropped.
pub struct TraderLockGuard {
    _held: Box<dyn Send>,
}

impl TraderLockGuard {
    pub fn new(held: impl Send + 'static) -> Self {
        Self {
            _held: Box::new(held),
        }
    }
}

impl fmt::Debug for TraderLockGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TraderLockGuard")
    }
}

/// Reviewers and operators hear about new cases here (an optional webhook); in-app alerts are
/// raised by the service itself.
#[async_trait]
pub trait CaseNotifier: Send + Sync + fmt::Debug {
    /// Best effort: must not fail the order.
    async fn case_opened(&self, case: &AnomalyCase);
    /// Advisory text for reviewers (an optional language model); `None` when not configured.
    async fn rationale(&self, case: &AnomalyCase) -> Option<String> {
        let _ = case;
        None
    }
}

#[derive(Debug, Default)]
pub struct NoNotifier;

#[async_trait]
impl CaseNotifier for NoNotifier {
    async fn case_opened(&self, _case: &AnomalyCase) {}
}
