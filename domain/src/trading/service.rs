//! The trading service: its ports and collaborators (private, so adapters reach them only
//! through use cases), its constructor, the owner's read-only use cases, and the helpers every
//! room shares.

use std::collections::HashMap;
use std::sync::Arc;

use rust_decimal::Decimal;
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};

use super::breaker::CircuitBreakers;
use super::error::{Outage, QuoteFailure, Refusal, TradingError};
use super::portfolio::{PaperAccount, Portfolio, ValuedPosition};
use super::ports::{
    CaseNotifier, RawLimits, ScreeningSettings, TraderLockGuard, TraderLocks, TradingStore,
};
use super::{Fill, Order, OrderId, Usage, UsageWindows, Venue};
use crate::account::AccountStore;
use crate::account::UserId;
use crate::alerts::SecurityAlerts;
use crate::audit::AuditLog;
use crate::audit::{Actor, ActorKind, AuditDraft, Outcome, RequestMeta};
use crate::audit_action::AuditAction;
use crate::clock::SharedClock;
use crate::exchange::{ExchangeError, ExchangeName, Exchanges};
use crate::ids::KeyId;
use crate::keys::{KeyScope, KeyStatus, KeyVaultError, KeyVaultService};
use crate::order::Symbol;
use crate::risk::{self, FailSafe, RiskLimits};
use crate::stepup::StepUpService;

/// What the trading service is built from (at startup).
#[derive(Debug, Clone)]
pub struct TradingDeps {
    pub store: Arc<dyn TradingStore>,
    /// Users by id: the subjects of admin controls must exist.
    pub accounts: Arc<dyn AccountStore>,
    pub audit: Arc<dyn AuditLog>,
    pub clock: SharedClock,
    pub exchanges: Exchanges,
    pub vault: KeyVaultService,
    pub stepup: StepUpService,
    pub alerts: Arc<dyn SecurityAlerts>,
    pub breakers: CircuitBreakers,
    pub notifier: Arc<dyn CaseNotifier>,
    /// Where several app servers share the database (PostgreSQL): their placements for one
    /// trader, one at a time.
    pub trader_locks: Option<Arc<dyn TraderLocks>>,
}

#[derive(Debug, Clone)]
pub struct TradingService {
    pub(super) store: Arc<dyn TradingStore>,
    pub(super) accounts: Arc<dyn AccountStore>,
    pub(super) audit: Arc<dyn AuditLog>,
    pub(super) clock: SharedClock,
    pub(super) exchanges: Exchanges,
    pub(super) vault: KeyVaultService,
    pub(super) stepup: StepUpService,
    pub(super) alerts: Arc<dyn SecurityAlerts>,
    pub(super) breakers: CircuitBreakers,
    pub(super) notifier: Arc<dyn CaseNotifier>,
    pub(super) placements: PlacementLocks,
    pub(super) keyed_checks: KeyedOrderChecks,
}

/// One placement at a time per trader: screening reads the day's usage and the velocity count,
/// so two orders screened at once could each pass a limit that both together break. Held from
/// screening until the decision is stored (not while the order is sent): in this process, then,
/// where several app servers share the database, across them ([`TraderLocks`]).
#[derive(Debug, Clone, Default)]
pub(super) struct PlacementLocks {
    local: Arc<std::sync::Mutex<HashMap<UserId, Arc<tokio::sync::Mutex<()>>>>>,
    shared: Option<Arc<dyn TraderLocks>>,
}

/// A trader's placement lock; the shared one is released first.
#[derive(Debug)]
pub(super) struct PlacementGuard {
    _shared: Option<TraderLockGuard>,
    _local: tokio::sync::OwnedMutexGuard<()>,
}

impl PlacementLocks {
    fn new(shared: Option<Arc<dyn TraderLocks>>) -> Self {
        Self {
            local: Arc::default(),
            shared,
        }
    }

    pub(super) async fn lock(&self, user: UserId) -> Result<PlacementGuard, TradingError> {
        let lock = {
            let mut locks = self.local.lock().unwrap_or_else(|e| e.into_inner());
            // Forget traders nobody is placing for, so the map stays small.
            locks.retain(|_, l| Arc::strong_count(l) > 1);
            locks.entry(user).or_default().clone()
        };
        // In this process first: at most one shared lock asked for per trader and server.
        let local = lock.lock_owned().await;
        let shared = match &self.shared {
            Some(shared) => Some(shared.lock(user).await?),
            None => None,
        };
        Ok(PlacementGuard {
            _shared: shared,
            _local: local,
        })
    }
}

/// How often a resting order on a keyed exchange is looked up: each look-up decrypts the key
/// and leaves a receipt, so not on every round of the job.
pub const KEYED_ORDER_CHECK_EVERY: Duration = Duration::seconds(60);

/// When each resting order on a keyed exchange was last looked up (in memory: after a restart
/// every such order is simply due).
#[derive(Debug, Clone, Default)]
pub(super) struct KeyedOrderChecks(Arc<std::sync::Mutex<HashMap<OrderId, OffsetDateTime>>>);

impl KeyedOrderChecks {
    /// Whether `order` is due for a look-up now; if so, the look-up is counted as done.
    pub(super) fn due(&self, order: OrderId, now: OffsetDateTime) -> bool {
        let mut checks = self.0.lock().unwrap_or_else(|e| e.into_inner());
        // Forget orders not seen for a while (they were filled or cancelled meanwhile).
        checks.retain(|_, at| now - *at < KEYED_ORDER_CHECK_EVERY * 10);
        match checks.get(&order) {
            Some(at) if now - *at < KEYED_ORDER_CHECK_EVERY => false,
            _ => {
                checks.insert(order, now);
                true
            }
        }
    }
}

/// Where the trader wants an order to go, as they name it: the paper exchange, or one of their
/// trade keys (resolved, and checked to be active and allowed to trade, by the service).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VenueChoice {
    Paper,
    Key(KeyId),
}

impl VenueChoice {
    /// "paper" (or nothing), or a key id.
    pub fn parse(raw: &str) -> Result<Self, Refusal> {
        let raw = raw.trim();
        if raw.is_empty() || raw == "paper" {
            return Ok(VenueChoice::Paper);
        }
        KeyId::parse(raw)
            .map(VenueChoice::Key)
            .ok_or(Refusal::UnknownVenue)
    }
}

/// The owner's paper account: cash, positions valued at the current paper price, and fills.
#[derive(Debug, Clone, PartialEq)]
pub struct PortfolioReport {
    pub cash: Decimal,
    pub positions: Vec<ValuedPosition>,
    /// The newest fills first, at most [`PortfolioReport::MAX_FILLS`].
    pub fills: Vec<Fill>,
}

impl PortfolioReport {
    pub const MAX_FILLS: usize = 200;
}

/// A price and when it was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quote {
    pub symbol: Symbol,
    pub price: Decimal,
    pub at: OffsetDateTime,
}

impl TradingService {
    pub fn new(deps: TradingDeps) -> Self {
        Self {
            store: deps.store,
            accounts: deps.accounts,
            audit: deps.audit,
            clock: deps.clock,
            exchanges: deps.exchanges,
            vault: deps.vault,
            stepup: deps.stepup,
            alerts: deps.alerts,
            breakers: deps.breakers,
            notifier: deps.notifier,
            placements: PlacementLocks::new(deps.trader_locks),
            keyed_checks: KeyedOrderChecks::default(),
        }
    }

    pub(super) fn now(&self) -> OffsetDateTime {
        self.clock.now()
    }

    pub fn step_up_threshold(&self) -> Decimal {
        self.stepup.order_threshold()
    }

    pub(super) async fn audit_or_fail(&self, draft: AuditDraft) -> Result<(), TradingError> {
        self.audit
            .record(draft)
            .await
            .map(|_| ())
            .map_err(|_| TradingError::AuditUnavailable)
    }

    /// Effective limits for a user. Every fallback to the strictest value is audited, and if
    /// that audit cannot be written the caller gets an error (fail closed).
    pub async fn limits_for(
        &self,
        user: UserId,
        meta: &RequestMeta,
    ) -> Result<RiskLimits, TradingError> {
        let (global, own) = self.store.limits(user).await?;
        self.resolve_limits(user, &global, &own, meta).await
    }

    /// The paper account and the settings an order is screened under, with the limits
    /// resolved as [`Self::limits_for`] resolves them: one read for all of them.
    pub(super) async fn screening_for(
        &self,
        owner: UserId,
        meta: &RequestMeta,
    ) -> Result<(PaperAccount, RiskLimits, ScreeningSettings), TradingError> {
        let (account, settings) = self.store.account_and_settings(owner).await?;
        let limits = self.settings_limits(owner, &settings, meta).await?;
        Ok((account, limits, settings))
    }

    /// The limits in `settings`, resolved as [`Self::limits_for`] resolves them.
    pub(super) async fn settings_limits(
        &self,
        user: UserId,
        settings: &ScreeningSettings,
        meta: &RequestMeta,
    ) -> Result<RiskLimits, TradingError> {
        self.resolve_limits(user, &settings.global_limits, &settings.own_limits, meta)
            .await
    }

    /// [`Self::limits_for`] on limits already read.
    async fn resolve_limits(
        &self,
        user: UserId,
        global: &RawLimits,
        own: &RawLimits,
        meta: &RequestMeta,
    ) -> Result<RiskLimits, TradingError> {
        let (limits, fail_safes) = risk::resolve_limits(global, own);
        for FailSafe {
            field,
            scope,
            raw,
            reason,
        } in fail_safes
        {
            self.audit_or_fail(
                draft(
                    Actor::system("risk"),
                    AuditAction::RiskLimitFailSafe,
                    Outcome::Denied,
                    meta,
                )
                .resource(format!("user:{user}"))
                .detail("field", field.key())
                .detail("scope", scope.as_str())
                .detail("raw", raw.unwrap_or_else(|| "(missing)".into()))
                .detail("reason", reason)
                .detail("applied", field.strictest_raw()),
            )
            .await?;
        }
        Ok(limits)
    }

    /// What the trader has used today (UTC) and how many orders they placed within the velocity
    /// window, as of `now`.
    pub(super) async fn usage(
        &self,
        owner: UserId,
        limits: &RiskLimits,
        now: OffsetDateTime,
    ) -> Result<Usage, TradingError> {
        Ok(self
            .store
            .usage(owner, UsageWindows::at(now, limits), None)
            .await?)
    }

    /// The paper account: fills on a keyed exchange are that exchange's balance, not ours.
    pub async fn portfolio(&self, owner: UserId) -> Result<Portfolio, TradingError> {
        Ok(self.store.paper_portfolio(owner).await?)
    }

    /// The paper account with its positions valued at the current paper price, and every fill
    /// (newest first) on any venue.
    pub async fn portfolio_report(&self, owner: UserId) -> Result<PortfolioReport, TradingError> {
        let portfolio = self.portfolio(owner).await?;
        let fills = self
            .store
            .recent_fills(owner, PortfolioReport::MAX_FILLS as u64)
            .await?;
        Ok(PortfolioReport {
            cash: portfolio.cash,
            positions: self.valued(&portfolio).await,
            fills,
        })
    }

    /// Positions valued at the current paper price; a position without a price has no value.
    pub(super) async fn valued(&self, portfolio: &Portfolio) -> Vec<ValuedPosition> {
        let mut valued = Vec::with_capacity(portfolio.positions.len());
        for position in &portfolio.positions {
            let price = self.venue_price(Venue::PAPER, &position.symbol).await.ok();
            valued.push(ValuedPosition {
                position: position.clone(),
                price,
            });
        }
        valued
    }

    /// The current price on a venue (paper by default).
    pub async fn quote(&self, venue: Venue, symbol: &Symbol) -> Result<Quote, TradingError> {
        let price = self.venue_price(venue, symbol.as_str()).await?;
        Ok(Quote {
            symbol: symbol.clone(),
            price,
            at: self.now(),
        })
    }

    /// The venue's current price, or why there is none.
    pub(super) async fn venue_price(
        &self,
        venue: Venue,
        symbol: &str,
    ) -> Result<Decimal, QuoteFailure> {
        let exchange = self
            .exchanges
            .get(venue.exchange)
            .ok_or(QuoteFailure::NotEnabled)?;
        exchange
            .price(venue.environment, symbol)
            .await
            .map_err(|e| match e {
                ExchangeError::Rejected(why) => QuoteFailure::Refused(why),
                cause => QuoteFailure::Outage {
                    exchange: venue.exchange,
                    cause,
                },
            })
    }

    /// The paper exchange, or one of the owner's active trade keys.
    pub async fn resolve_venue(
        &self,
        owner: UserId,
        choice: VenueChoice,
    ) -> Result<Venue, TradingError> {
        let id = match choice {
            VenueChoice::Paper => return Ok(Venue::PAPER),
            VenueChoice::Key(id) => id,
        };
        let keys = self.vault.list_keys(owner).await.map_err(|e| match e {
            KeyVaultError::Store(s) => TradingError::Store(s),
            other => TradingError::Unavailable(Outage::KeyVault(other)),
        })?;
        let key = keys
            .into_iter()
            .find(|k| k.id == id)
            .ok_or(TradingError::NotFound)?;
        if key.status != KeyStatus::Active || key.scope != KeyScope::Trade {
            return Err(Refusal::KeyCannotTrade {
                label: key.label.to_string(),
                status: key.status,
                scope: key.scope,
            }
            .into());
        }
        Ok(Venue {
            exchange: key.exchange,
            environment: key.environment,
            key: Some(id),
        })
    }

    /// The owner's orders, newest first.
    pub async fn orders(&self, owner: UserId, limit: u64) -> Result<Vec<Order>, TradingError> {
        Ok(self.store.orders(owner, limit).await?)
    }

    pub async fn order(&self, owner: UserId, id: OrderId) -> Result<Order, TradingError> {
        self.store
            .order(owner, id)
            .await?
            .ok_or(TradingError::NotFound)
    }
}

/// A stable pseudonymous device id: the user agent's hash (no fingerprinting beyond it). A
/// request without one is a device of its own, not none: leaving the header out must not skip
/// the new-device check.
pub fn device_id(user_agent: Option<&str>) -> Option<String> {
    let user_agent = user_agent.filter(|ua| !ua.trim().is_empty()).unwrap_or("");
    Some(hex::encode(&Sha256::digest(user_agent.as_bytes())[..8]))
}

pub(super) fn start_of_day(now: OffsetDateTime) -> OffsetDateTime {
    now.replace_time(time::Time::MIDNIGHT)
}

/// A decimal as people write it (no trailing zeros).
pub(super) fn plain(d: Decimal) -> String {
    d.normalize().to_string()
}

pub(super) fn draft(
    actor: Actor,
    action: AuditAction,
    outcome: Outcome,
    meta: &RequestMeta,
) -> AuditDraft {
    AuditDraft::new(actor, action, outcome, meta.clone())
}

/// What a held order says while its exchange is paused.
pub(super) fn paused_reason(exchange: ExchangeName, until: OffsetDateTime) -> String {
    format!("{}; the order is held.", paused_until(exchange, until))
}

/// "Trading on Binance is paused after an outage until 12:00:30 UTC".
pub(super) fn paused_until(exchange: ExchangeName, until: OffsetDateTime) -> String {
    format!(
        "Trading on {} is paused after an outage until {:02}:{:02}:{:02} UTC",
        exchange.label(),
        until.hour(),
        until.minute(),
        until.second()
    )
}

/// The trader's keys could not be read: the store's failure as it is, anything else an outage.
pub(super) fn vault_error(err: KeyVaultError) -> TradingError {
    match err {
        KeyVaultError::Store(s) => TradingError::Store(s),
        other => TradingError::Unavailable(Outage::KeyVault(other)),
    }
}

/// How audit events name an agent acting for its trader.
pub(super) fn agent_actor(id: impl ToString) -> Actor {
    Actor {
        kind: ActorKind::Agent,
        id: Some(id.to_string()),
    }
}

/// Where the velocity window that ends `now` starts.
pub(super) fn velocity_window_start(limits: &RiskLimits, now: OffsetDateTime) -> OffsetDateTime {
    now - Duration::seconds(i64::from(limits.velocity_window_secs))
}
