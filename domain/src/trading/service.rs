//! Order placement: parse, screen (first line + anomaly score), decide, record the decision with
//! its audit events (fail closed), then send — or hold while the exchange is down and send
//! later, exactly once, under the same client order id.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use async_trait::async_trait;
use rust_decimal::Decimal;
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use super::agent::{
    self, AgentScope, AgentToken, MAX_RATIONALE_CHARS, NewAgentToken, Proposal, ProposalStatus,
};
use super::breaker::{CircuitBreakers, Gate};
use super::portfolio::Portfolio;
use super::{
    AnomalyCase, ApprovalState, BlockedRange, CaseEvidence, CaseId, CaseStatus, ControlsChange,
    Fill, HoldKind, Order, OrderDecisionWrite, OrderId, OrderSource, OrderStatus, OrderUpdate,
    TradingStore, UserControls, Venue,
};
use crate::account::{User, UserId};
use crate::audit::{Actor, AuditDraft, Outcome, RequestMeta};
use crate::keys::{
    ExchangeError, ExchangeName, Exchanges, KeyPurpose, KeyScope, KeyStatus, KeyVaultError,
    KeyVaultService, OrderType, SecurityAlert, SecurityAlerts, VenueAck, VenueOrder,
    VenueOrderStatus,
};
use crate::ports::{AuditLog, SharedClock, StoreError};
use crate::risk::{
    self, FailSafe, IpBlocklist, LimitField, OrderSide, PriceRefusal, RiskLimits, Rule, RuleHit,
    Screening, StateEvent, TradeSample, TradingState, Verdict,
};
use crate::stepup::{OrderIntent, OrderTerms, OrderToApprove, StepUpError, StepUpService};

/// A market order's quote may drift this much (relative) before the trader must look again.
const MAX_QUOTE_DRIFT: Decimal = Decimal::from_parts(1, 0, 0, false, 2);

#[derive(Debug, thiserror::Error)]
pub enum TradingError {
    /// Bad input or a refusal the trader can fix; the message is for them.
    #[error("{0}")]
    Invalid(String),
    #[error("not found")]
    NotFound,
    /// The order needs a step-up approval bound to it; nothing was placed.
    #[error("this order needs your approval with a security key or code")]
    ApprovalRequired { reasons: Vec<String> },
    #[error(transparent)]
    Approval(StepUpError),
    #[error("{0}")]
    Forbidden(String),
    /// Someone else got there first (a proposal already placed or rejected); nothing was done.
    #[error("{0}")]
    Conflict(String),
    #[error("the order could not be recorded with its audit event, so nothing was done")]
    AuditUnavailable,
    #[error("{0}")]
    Unavailable(String),
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

/// What an admin's change of a user's controls did.
#[derive(Debug, Clone)]
pub struct ControlsChanged {
    pub controls: UserControls,
    /// Resting orders cancelled because the change stopped the user.
    pub cancelled: usize,
}

/// An order as it arrives from the ticket or an agent proposal, unparsed.
#[derive(Debug, Clone, Default)]
pub struct OrderRequest {
    /// "paper", or the id of one of the trader's trade keys.
    pub venue: String,
    pub symbol: String,
    pub side: String,
    pub order_type: String,
    pub quantity: String,
    /// Limit orders only.
    pub limit_price: Option<String>,
    /// Market orders: the price the trader saw (and approved, for a large order).
    pub quoted_price: Option<String>,
    /// The nonce of a step-up approval granted for exactly this order.
    pub approval_nonce: Option<String>,
}

/// What the order ticket needs to preview checks in the browser with the server's own rules.
#[derive(Debug, Clone)]
pub struct TicketContext {
    pub limits: RiskLimits,
    pub step_up_threshold: Decimal,
    pub controls: UserControls,
    pub global_kill: bool,
    pub used_today: Decimal,
    pub orders_in_window: u32,
    pub portfolio: Portfolio,
    pub open_cases: u64,
}

#[derive(Debug, Clone)]
pub struct TradingService {
    pub store: Arc<dyn TradingStore>,
    pub audit: Arc<dyn AuditLog>,
    pub clock: SharedClock,
    pub exchanges: Exchanges,
    pub vault: KeyVaultService,
    pub stepup: StepUpService,
    pub breakers: CircuitBreakers,
    pub alerts: Arc<dyn SecurityAlerts>,
    pub notifier: Arc<dyn CaseNotifier>,
    pub placements: PlacementLocks,
    pub keyed_checks: KeyedOrderChecks,
}

/// How often a resting order on a keyed exchange is looked up: each look-up decrypts the key
/// and leaves a receipt, so not on every round of the job.
pub const KEYED_ORDER_CHECK_EVERY: Duration = Duration::seconds(60);

/// When each resting order on a keyed exchange was last looked up (in memory: after a restart
/// every such order is simply due).
#[derive(Debug, Clone, Default)]
pub struct KeyedOrderChecks(Arc<std::sync::Mutex<HashMap<OrderId, OffsetDateTime>>>);

impl KeyedOrderChecks {
    /// Whether `order` is due for a look-up now; if so, the look-up is counted as done.
    fn due(&self, order: OrderId, now: OffsetDateTime) -> bool {
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

/// One placement at a time per trader: screening reads the day's usage and the velocity count,
/// so two orders screened at once could each pass a limit that both together break. Held from
/// screening until the decision is stored (not while the order is sent). In-process only: a
/// deployment with several app servers needs the database to serialise instead.
#[derive(Debug, Clone, Default)]
pub struct PlacementLocks(Arc<std::sync::Mutex<HashMap<UserId, Arc<tokio::sync::Mutex<()>>>>>);

impl PlacementLocks {
    async fn lock(&self, user: UserId) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut locks = self.0.lock().unwrap_or_else(|e| e.into_inner());
            // Forget traders nobody is placing for, so the map stays small.
            locks.retain(|_, l| Arc::strong_count(l) > 1);
            locks.entry(user).or_default().clone()
        };
        lock.lock_owned().await
    }
}

/// A stable pseudonymous device id: the user agent's hash (no fingerprinting beyond it).
pub fn device_id(user_agent: Option<&str>) -> Option<String> {
    user_agent
        .filter(|ua| !ua.trim().is_empty())
        .map(|ua| hex::encode(&Sha256::digest(ua.as_bytes())[..8]))
}

fn start_of_day(now: OffsetDateTime) -> OffsetDateTime {
    now.replace_time(time::Time::MIDNIGHT)
}

fn plain(d: Decimal) -> String {
    d.normalize().to_string()
}

fn order_draft(actor: Actor, action: &str, outcome: Outcome, meta: &RequestMeta) -> AuditDraft {
    AuditDraft::new(actor, action, outcome, meta.clone())
}

/// The audit event of a claim: `order` leaves `from` to be sent (or cancelled) by `actor`.
fn claim_draft(order: &Order, from: OrderStatus, actor: Actor, meta: &RequestMeta) -> AuditDraft {
    order_draft(actor, "trade.order_claimed", Outcome::Success, meta)
        .resource(order.id.resource())
        .detail("owner", order.owner.to_string())
        .detail("client_order_id", order.client_order_id.clone())
        .detail("from", from.as_str())
        .detail("attempt", order.attempts.saturating_add(1))
}

/// Parsed, validated order input.
struct ParsedOrder {
    venue: Venue,
    terms: OrderTerms,
    order_type: OrderType,
    limit_price: Option<Decimal>,
    /// The agent proposal this order places, if any: settled with the decision, at most once.
    proposal: Option<Uuid>,
}

impl TradingService {
    fn now(&self) -> OffsetDateTime {
        self.clock.now()
    }

    pub fn step_up_threshold(&self) -> Decimal {
        self.stepup.policy.order_threshold
    }

    async fn audit_or_fail(&self, draft: AuditDraft) -> Result<(), TradingError> {
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
        let (limits, fail_safes) = risk::resolve_limits(&global, &own);
        for FailSafe {
            field,
            scope,
            raw,
            reason,
        } in fail_safes
        {
            self.audit_or_fail(
                order_draft(
                    Actor::system("risk"),
                    "risk.limit_fail_safe",
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

    /// The paper account: fills on a keyed exchange are that exchange's balance, not ours.
    pub async fn portfolio(&self, owner: UserId) -> Result<Portfolio, TradingError> {
        Ok(Portfolio::from_fills(
            &self.store.fills(owner, Some(ExchangeName::Paper)).await?,
        ))
    }

    pub async fn ticket_context(
        &self,
        user: UserId,
        meta: &RequestMeta,
    ) -> Result<TicketContext, TradingError> {
        let now = self.now();
        let limits = self.limits_for(user, meta).await?;
        let usage = self
            .store
            .usage(
                user,
                start_of_day(now),
                now - Duration::seconds(i64::from(limits.velocity_window_secs)),
            )
            .await?;
        Ok(TicketContext {
            step_up_threshold: self.step_up_threshold(),
            controls: self.store.controls(user).await?,
            global_kill: self.store.global_kill_switch().await?,
            used_today: usage.used_today,
            orders_in_window: usage.orders_in_window,
            portfolio: self.portfolio(user).await?,
            open_cases: self.store.open_cases_for(user).await?,
            limits,
        })
    }

    /// The current price on a venue (paper by default).
    pub async fn quote(&self, venue: Venue, symbol: &str) -> Result<Decimal, TradingError> {
        let exchange = self
            .exchanges
            .get(venue.exchange)
            .ok_or_else(|| TradingError::Invalid("That exchange is not enabled.".into()))?;
        exchange
            .price(venue.environment, symbol)
            .await
            .map_err(|e| match e {
                ExchangeError::Rejected(why) => TradingError::Invalid(why),
                other => TradingError::Unavailable(format!(
                    "{} has no price right now ({other}).",
                    venue.exchange.label()
                )),
            })
    }

    /// The venue's current price for screening, or why there is none (an outage, a symbol it
    /// does not list), in words for the trader.
    async fn fresh_quote(&self, venue: Venue, symbol: &str) -> Result<Decimal, String> {
        self.quote(venue, symbol).await.map_err(|e| e.to_string())
    }

    /// The ticket's prices on `venue` ("paper" or one of the owner's trade keys), one per symbol
    /// (the trader's allowlist) the venue quotes. Stops at the first outage, so a dead exchange
    /// costs one timeout.
    pub async fn quotes(
        &self,
        owner: UserId,
        venue: &str,
        symbols: &[String],
    ) -> Result<Vec<(String, Decimal)>, TradingError> {
        let venue = self.resolve_venue(owner, venue).await?;
        let mut prices = Vec::new();
        for symbol in symbols {
            match self.quote(venue, symbol).await {
                Ok(price) => prices.push((symbol.clone(), price)),
                Err(TradingError::Unavailable(why)) if prices.is_empty() => {
                    return Err(TradingError::Unavailable(why));
                }
                Err(TradingError::Unavailable(_)) => break,
                // Not listed there: the ticket simply has no price for it.
                Err(_) => {}
            }
        }
        Ok(prices)
    }

    /// "paper" (or empty), or one of the owner's active trade keys by id.
    pub async fn resolve_venue(&self, owner: UserId, raw: &str) -> Result<Venue, TradingError> {
        let raw = raw.trim();
        if raw.is_empty() || raw == "paper" {
            return Ok(Venue::PAPER);
        }
        let id = crate::keys::KeyId::parse(raw)
            .ok_or_else(|| TradingError::Invalid("Choose an account to trade with.".into()))?;
        let keys = self.vault.list_keys(owner).await.map_err(|e| match e {
            KeyVaultError::Store(s) => TradingError::Store(s),
            other => TradingError::Unavailable(other.to_string()),
        })?;
        let key = keys
            .into_iter()
            .find(|k| k.id == id)
            .ok_or(TradingError::NotFound)?;
        if key.status != KeyStatus::Active || key.scope != KeyScope::Trade {
            return Err(TradingError::Invalid(format!(
                "The key \"{}\" cannot place orders (it is {} and {}).",
                key.label,
                key.status.label().to_lowercase(),
                key.scope.label().to_lowercase()
            )));
        }
        Ok(Venue {
            exchange: key.exchange,
            environment: key.environment,
            key: Some(id),
        })
    }

    async fn parse_order(
        &self,
        owner: UserId,
        request: &OrderRequest,
    ) -> Result<ParsedOrder, TradingError> {
        let order_type = OrderType::parse(&request.order_type)
            .ok_or_else(|| TradingError::Invalid("Order type must be market or limit.".into()))?;
        let venue = self.resolve_venue(owner, &request.venue).await?;
        let (price_raw, limit_price) = match order_type {
            OrderType::Limit => {
                let raw = request
                    .limit_price
                    .as_deref()
                    .filter(|p| !p.trim().is_empty())
                    .ok_or_else(|| {
                        TradingError::Invalid("A limit order needs a limit price.".into())
                    })?;
                (raw.to_owned(), true)
            }
            OrderType::Market => {
                let raw = request
                    .quoted_price
                    .as_deref()
                    .filter(|p| !p.trim().is_empty())
                    .ok_or_else(|| {
                        TradingError::Invalid(
                            "A market order needs the price you were quoted; reload the ticket."
                                .into(),
                        )
                    })?;
                (raw.to_owned(), false)
            }
        };
        let terms = OrderTerms::parse(
            &request.symbol,
            &request.side,
            &request.quantity,
            &price_raw,
        )
        .map_err(|e| TradingError::Invalid(e.to_string()))?;
        Ok(ParsedOrder {
            venue,
            limit_price: limit_price.then_some(terms.price),
            terms,
            order_type,
            proposal: None,
        })
    }

    /// Screens, decides and (if allowed) sends an order from the signed-in trader.
    pub async fn place(
        &self,
        user: &User,
        request: OrderRequest,
        source: OrderSource,
        meta: RequestMeta,
    ) -> Result<Order, TradingError> {
        let owner = user.id;
        let parsed = self.parse_order(owner, &request).await?;
        let actor = match source {
            OrderSource::Autonomous => Actor {
                kind: crate::audit::ActorKind::Agent,
                id: Some(owner.to_string()),
            },
            _ => Actor::user(owner),
        };
        self.place_parsed(owner, actor, parsed, request.approval_nonce, source, meta)
            .await
    }

    async fn place_parsed(
        &self,
        owner: UserId,
        actor: Actor,
        parsed: ParsedOrder,
        approval_nonce: Option<String>,
        source: OrderSource,
        meta: RequestMeta,
    ) -> Result<Order, TradingError> {
        let ParsedOrder {
            venue,
            terms,
            order_type,
            limit_price,
            proposal,
        } = parsed;
        // The rules judge the value the order can really execute at: a fresh quote is taken
        // (a market order or a sell limit without one is refused, never judged on the
        // client's number), and a market order's quote must still be about right, or the
        // approval would have been given for a price that is gone.
        let quote = self.fresh_quote(venue, &terms.symbol).await;
        if order_type == OrderType::Market
            && let Ok(current) = quote
        {
            let drift = ((current - terms.price) / terms.price).abs();
            if drift > MAX_QUOTE_DRIFT {
                return Err(TradingError::Invalid(format!(
                    "The price of {} moved from {} to {}. Check the new notional and submit again.",
                    terms.symbol,
                    plain(terms.price),
                    plain(current)
                )));
            }
        }
        let notional = screening_value(
            &terms,
            order_type,
            limit_price,
            quote.as_ref(),
            (order_type == OrderType::Market).then_some(terms.price),
        )
        .map_err(|refusal| TradingError::Invalid(refusal.message()))?;
        let placing = self.placements.lock(owner).await;
        let now = self.now();
        let portfolio = self.portfolio(owner).await?;
        let held = portfolio.quantity(&terms.symbol);
        if venue == Venue::PAPER {
            match terms.side {
                OrderSide::Buy if notional > portfolio.cash => {
                    return Err(TradingError::Invalid(format!(
                        "Not enough paper USDT: this order needs {} and you have {}.",
                        plain(notional),
                        plain(portfolio.cash)
                    )));
                }
                OrderSide::Sell if terms.quantity > held => {
                    return Err(TradingError::Invalid(format!(
                        "You hold {} {}; you cannot sell {}.",
                        plain(held),
                        terms.symbol,
                        plain(terms.quantity)
                    )));
                }
                _ => {}
            }
        }
        let effect = risk::order_effect(terms.side, terms.quantity, held);
        let limits = self.limits_for(owner, &meta).await?;
        // The autonomous cap is judged at the screening value too (a sell limit written far
        // below the market is worth the market, not its limit).
        if source == OrderSource::Autonomous && notional > limits.autonomous_cap {
            return Err(TradingError::ApprovalRequired {
                reasons: vec![format!(
                    "Worth {} USDT at the current price, above the autonomous cap of {} USDT: it waits for your sign-off.",
                    plain(notional.round_dp(2)),
                    plain(limits.autonomous_cap)
                )],
            });
        }
        let controls = self.store.controls(owner).await?;
        let global_kill = self.store.global_kill_switch().await?;
        let usage = self
            .store
            .usage(
                owner,
                start_of_day(now),
                now - Duration::seconds(i64::from(limits.velocity_window_secs)),
            )
            .await?;
        let ip: Option<IpAddr> = meta.ip.as_deref().and_then(|ip| ip.parse().ok());
        let device = device_id(meta.user_agent.as_deref());
        let ranges: Vec<String> = self
            .store
            .blocklist()
            .await?
            .into_iter()
            .map(|r| r.cidr)
            .collect();
        let (blocklist, _) = IpBlocklist::from_entries(&ranges);
        let history = self
            .store
            .trade_history(owner, risk::HISTORY_LEN as u64)
            .await?;
        let (seen_ip, seen_device) = self
            .store
            .seen_before(owner, meta.ip.as_deref(), device.as_deref())
            .await?;
        // Novelty only means something once there is a history to compare with.
        let has_history = !history.is_empty();
        let hits = risk::first_line(&Screening {
            symbol: &terms.symbol,
            notional,
            effect,
            limits: &limits,
            step_up_threshold: self.step_up_threshold(),
            state: controls.state,
            global_kill,
            user_kill: controls.kill_switch,
            used_today: usage.used_today,
            orders_in_window: usage.orders_in_window,
            ip,
            blocklist: Some(&blocklist),
            new_ip: has_history && meta.ip.is_some() && !seen_ip,
            new_device: has_history && device.is_some() && !seen_device,
        });
        let candidate = TradeSample {
            at: now,
            symbol: terms.symbol.clone(),
            notional,
            ip: meta.ip.clone(),
            device: device.clone(),
        };
        let anomaly = risk::score(&history, &candidate);
        let decision = risk::decide(hits, Some(&anomaly), limits.anomaly_threshold);
        let mut hits = decision.hits;
        let mut verdict = decision.verdict;

        let order_id = OrderId::new_random();
        // A hold never swallows a step-up: an order that needs one keeps the obligation even
        // when a rule (or the anomaly score) holds it for a reviewer. Held without an approval,
        // it is recorded as `Awaiting` and is sent only after its owner approves it.
        let needs_step_up = hits.iter().any(|h| h.verdict == Verdict::StepUp);
        let mut approval = if needs_step_up {
            ApprovalState::Awaiting
        } else {
            ApprovalState::NotNeeded
        };
        if needs_step_up && verdict != Verdict::Deny {
            if source == OrderSource::Autonomous {
                return Err(TradingError::ApprovalRequired {
                    reasons: reasons(&hits, Verdict::StepUp),
                });
            }
            match approval_nonce {
                Some(nonce) => {
                    let intent = OrderIntent::with_nonce(
                        owner,
                        OrderToApprove {
                            venue,
                            order_type,
                            terms: terms.clone(),
                        },
                        nonce,
                    );
                    self.stepup
                        .consume_order_approval(&intent, meta.clone())
                        .await
                        .map_err(|e| match e {
                            StepUpError::AuditUnavailable => TradingError::AuditUnavailable,
                            other => TradingError::Approval(other),
                        })?;
                    approval = ApprovalState::Approved;
                    if verdict == Verdict::StepUp {
                        verdict = Verdict::Allow;
                    }
                    hits.push(RuleHit {
                        rule: Rule::LargeOrder,
                        verdict: Verdict::Allow,
                        message: "Approved for this order with a fresh step-up.".into(),
                    });
                }
                // Held for review anyway: recorded (the reviewer sees it) and awaiting the
                // owner's approval, which the reviewer's release does not replace.
                None if verdict == Verdict::Hold => {}
                None => {
                    self.audit_or_fail(
                        order_draft(
                            actor.clone(),
                            "trade.order_needs_approval",
                            Outcome::Denied,
                            &meta,
                        )
                        .resource(format!("user:{owner}"))
                        .detail("symbol", terms.symbol.clone())
                        .detail("side", terms.side.as_str())
                        .detail("notional", plain(notional))
                        .detail("rules", rule_codes(&hits)),
                    )
                    .await?;
                    return Err(TradingError::ApprovalRequired {
                        reasons: reasons(&hits, Verdict::StepUp),
                    });
                }
            }
        }

        let quarantine = risk::quarantine_target(anomaly.score, limits.anomaly_threshold);
        let mut status = OrderStatus::Submitting;
        let mut hold = None;
        let mut status_reason = None;
        let mut case = None;
        let mut new_state = None;
        match verdict {
            Verdict::Deny => {
                status = OrderStatus::Denied;
                status_reason = Some(reasons(&hits, Verdict::Deny).join(" "));
            }
            Verdict::Hold => {
                status = OrderStatus::Held;
                hold = Some(HoldKind::Review);
                status_reason = Some(if approval == ApprovalState::Awaiting {
                    "Held for review by a compliance reviewer. It also needs your approval with your security key or code: after the review, approve it on the Orders page to send it.".into()
                } else {
                    "Held for review by a compliance reviewer.".into()
                });
            }
            Verdict::Allow | Verdict::StepUp => {
                if let Gate::Paused(until) =
                    self.breakers.gate((venue.exchange, venue.environment), now)
                {
                    status = OrderStatus::Held;
                    hold = Some(HoldKind::Exchange);
                    status_reason = Some(paused_reason(venue.exchange, until));
                }
            }
        }
        // An anomalous order opens a case even when a first-line rule already denies it: the
        // burst that trips the limits is exactly what a reviewer should see.
        // One open case per quarantine is enough: further refused orders go on the record (the
        // audit chain) rather than into a pile of cases.
        let already_under_review =
            verdict == Verdict::Deny && self.store.open_cases_for(owner).await? > 0;
        if (quarantine.is_some() || verdict == Verdict::Hold) && !already_under_review {
            let state_after = match quarantine {
                Some(target) => controls.state.after(StateEvent::AnomalyDetected(target)),
                None => controls.state,
            };
            if state_after != controls.state {
                new_state = Some(state_after);
            }
            case = Some(AnomalyCase {
                id: CaseId::new_random(),
                subject: owner,
                order: Some(order_id),
                score: anomaly.score,
                evidence: CaseEvidence {
                    hits: hits.clone(),
                    anomaly: anomaly.clone(),
                    recent: history.clone(),
                    candidate: candidate.clone(),
                    state_before: controls.state,
                    state_after,
                },
                status: CaseStatus::Open,
                opened_at: now,
                decided_at: None,
                decided_by: None,
                note: None,
                rationale: None,
            });
        }

        let order = Order {
            id: order_id,
            owner,
            venue,
            client_order_id: format!("cp-{}", order_id.0.simple()),
            symbol: terms.symbol.clone(),
            side: terms.side,
            order_type,
            quantity: terms.quantity,
            limit_price,
            reference_price: terms.price,
            notional,
            status,
            hold,
            approval,
            status_reason,
            verdict: decision.verdict,
            hits: hits.clone(),
            anomaly: Some(anomaly.clone()),
            filled_quantity: Decimal::ZERO,
            average_price: None,
            exchange_order_id: None,
            source,
            case: case.as_ref().map(|c| c.id),
            ip: meta.ip.clone(),
            device,
            attempts: u32::from(status == OrderStatus::Submitting),
            created_at: now,
            updated_at: now,
        };
        let mut audit = vec![
            order_draft(
                actor.clone(),
                "trade.order_decided",
                match decision.verdict {
                    Verdict::Deny => Outcome::Denied,
                    _ => Outcome::Success,
                },
                &meta,
            )
            .resource(order.id.resource())
            .detail("owner", owner.to_string())
            .detail("source", source.as_str())
            .detail("venue", format!("{}/{}", venue.exchange, venue.environment))
            .detail("symbol", order.symbol.clone())
            .detail("side", order.side.as_str())
            .detail("type", order_type.as_str())
            .detail("quantity", plain(order.quantity))
            .detail("price", plain(order.reference_price))
            .detail("notional", plain(notional))
            .detail("verdict", decision.verdict.as_str())
            .detail("approval", approval.as_str())
            .detail("status", status.as_str())
            .detail("rules", rule_codes(&hits))
            .detail("score", format!("{:.3}", anomaly.score)),
        ];
        if let Some(case) = &case {
            audit.push(
                order_draft(
                    Actor::system("risk"),
                    "risk.case_opened",
                    Outcome::Success,
                    &meta,
                )
                .resource(case.id.resource())
                .detail("subject", owner.to_string())
                .detail("order", order.id.to_string())
                .detail("score", format!("{:.3}", case.score))
                .detail(
                    "features",
                    anomaly
                        .top(3)
                        .iter()
                        .map(|c| c.feature.code())
                        .collect::<Vec<_>>()
                        .join(","),
                ),
            );
        }
        if let Some(state) = new_state {
            audit.push(
                order_draft(
                    Actor::system("risk"),
                    "risk.trading_state_changed",
                    Outcome::Success,
                    &meta,
                )
                .resource(format!("user:{owner}"))
                .detail("from", controls.state.as_str())
                .detail("to", state.as_str())
                .detail("reason", "anomaly score above threshold"),
            );
        }
        if let Some(proposal) = proposal {
            audit.push(
                order_draft(
                    Actor::user(owner),
                    "agent.proposal_placed",
                    Outcome::Success,
                    &meta,
                )
                .resource(format!("proposal:{proposal}"))
                .detail("order", order.id.to_string())
                .detail(
                    "by",
                    if source == OrderSource::Autonomous {
                        "autonomous"
                    } else {
                        "trader"
                    },
                ),
            );
        }
        self.store
            .record_decision(OrderDecisionWrite {
                order: order.clone(),
                proposal,
                case: case.clone(),
                new_state,
                audit,
            })
            .await
            .map_err(|e| match e {
                // Fail closed: without its audit record, the order does not exist.
                StoreError::Backend(_) => TradingError::AuditUnavailable,
                // The proposal was placed (or rejected) meanwhile: nothing was written.
                StoreError::Conflict if proposal.is_some() => {
                    TradingError::Conflict("This proposal was already placed or rejected.".into())
                }
                other => TradingError::Store(other),
            })?;
        drop(placing);
        if new_state == Some(TradingState::Halted) {
            // Quarantined to HALTED: the trader's resting orders come off the book too. Best
            // effort: the halt is recorded either way, and each cancellation is audited.
            let _ = self
                .cancel_resting(
                    Some(owner),
                    Actor::system("risk"),
                    "Cancelled: your trading is halted.",
                    &meta,
                )
                .await;
        }
        if let Some(case) = &case {
            self.announce_case(case, &meta).await;
        }
        if order.status == OrderStatus::Submitting {
            return self.send(order, actor, false, meta).await;
        }
        Ok(order)
    }

    /// In-app alert and the optional webhook; neither may undo the recorded decision.
    async fn announce_case(&self, case: &AnomalyCase, meta: &RequestMeta) {
        let top: Vec<&str> = case
            .evidence
            .anomaly
            .top(2)
            .iter()
            .map(|c| c.feature.label())
            .collect();
        let alert = SecurityAlert {
            id: Uuid::new_v4(),
            kind: "anomaly_case_opened".into(),
            message: format!(
                "Anomaly case opened (score {:.2}: {}). The trader is now {}.",
                case.score,
                top.join(", "),
                case.evidence.state_after.label().to_lowercase()
            ),
            resource: Some(case.id.resource()),
            actor: Some(format!("user:{}", case.subject)),
            raised_at: case.opened_at,
            acknowledged_at: None,
        };
        let draft = order_draft(
            Actor::system("risk"),
            "security.alert_raised",
            Outcome::Success,
            meta,
        )
        .resource(case.id.resource())
        .detail("alert", alert.id.to_string())
        .detail("kind", "anomaly_case_opened");
        // The case itself is already recorded with its audit events; the alert store logs
        // its own failures.
        let _ = self.alerts.raise(alert, draft).await;
        self.notifier.case_opened(case).await;
        if let Some(text) = self.notifier.rationale(case).await {
            let draft = order_draft(
                Actor::system("risk"),
                "risk.case_rationale_added",
                Outcome::Success,
                meta,
            )
            .resource(case.id.resource())
            .detail("chars", text.chars().count());
            // Advisory only: a rationale whose audit event cannot be written is not stored (the
            // store commits both or neither), and the recorded decision stands.
            let _ = self.store.set_case_rationale(case.id, &text, draft).await;
        }
    }

    /// Sends a `Submitting` order. On a retry, first asks the exchange whether an earlier,
    /// unanswered attempt arrived: the same client order id is never executed twice.
    async fn send(
        &self,
        order: Order,
        actor: Actor,
        retry: bool,
        meta: RequestMeta,
    ) -> Result<Order, TradingError> {
        self.send_checked(order, actor, retry, false, meta).await
    }

    /// As [`Self::send`]; with `rescreen` (an order that waited), the order is first judged
    /// again at the current price, once the exchange has confirmed it never got it: held again
    /// without a quote, denied if it no longer passes.
    async fn send_checked(
        &self,
        order: Order,
        actor: Actor,
        retry: bool,
        rescreen: bool,
        meta: RequestMeta,
    ) -> Result<Order, TradingError> {
        let venue = order.venue;
        let Some(exchange) = self.exchanges.get(venue.exchange).cloned() else {
            return self
                .settle(
                    order,
                    rejected("That exchange is no longer enabled."),
                    actor,
                    meta,
                )
                .await;
        };
        let credentials = match venue.key {
            None => None,
            Some(key) => match self
                .vault
                .use_key(
                    actor.clone(),
                    order.owner,
                    key,
                    KeyPurpose::Order(order.id.to_string()),
                    meta.clone(),
                )
                .await
            {
                Ok((_, credentials)) => Some(credentials),
                Err(KeyVaultError::KmsUnavailable) => {
                    // Fail safe: no KMS, no signing; hold and retry like an exchange outage.
                    return self
                        .settle(
                            order,
                            SendOutcome::Held("The key service is unavailable; the order is held and will be sent when it is back.".into()),
                            actor,
                            meta,
                        )
                        .await;
                }
                Err(KeyVaultError::AuditUnavailable) => {
                    return self
                        .settle(
                            order,
                            SendOutcome::Held(
                                "The audit log was unavailable; the order is held.".into(),
                            ),
                            actor,
                            meta,
                        )
                        .await;
                }
                Err(other) => {
                    return self
                        .settle(
                            order,
                            rejected(&format!("The key could not be used: {other}.")),
                            actor,
                            meta,
                        )
                        .await;
                }
            },
        };
        let venue_order = venue_order(&order);
        let mut answer = Ok(None);
        if retry {
            answer = exchange
                .find_order(
                    venue.environment,
                    credentials.as_ref(),
                    &order.symbol,
                    &order.client_order_id,
                )
                .await;
        }
        let answer = match answer {
            Ok(Some(ack)) => Ok(ack),
            Ok(None) => {
                let refusal = if rescreen {
                    self.rescreen(&order).await.unwrap_or_else(|e| {
                        Some(SendOutcome::Held(format!(
                            "The order could not be checked again before sending ({e}); it stays held."
                        )))
                    })
                } else {
                    None
                };
                if let Some(outcome) = refusal {
                    drop(credentials);
                    // Not sent after all: if the gate let it through as the venue's probe, the
                    // next order probes instead (without a quote, the breaker already re-opened).
                    self.breakers
                        .abandon_probe((venue.exchange, venue.environment), self.now());
                    return self.settle(order, outcome, actor, meta).await;
                }
                exchange
                    .place_order(venue.environment, credentials.as_ref(), &venue_order)
                    .await
            }
            Err(e) => Err(e),
        };
        drop(credentials);
        let venue_key = (venue.exchange, venue.environment);
        let outcome = match answer {
            Ok(ack) => {
                self.breakers.succeeded(venue_key);
                SendOutcome::Answered(ack)
            }
            Err(e) if e.is_outage() => {
                let asked = match e {
                    ExchangeError::RateLimited(seconds) => {
                        Duration::seconds(i64::try_from(seconds).unwrap_or(i64::MAX))
                    }
                    _ => Duration::ZERO,
                };
                let until = self
                    .breakers
                    .failed_waiting(venue_key, self.now(), asked)
                    .unwrap_or_else(|| self.now());
                let what = match e {
                    ExchangeError::Timeout(_) => "did not answer in time",
                    ExchangeError::RateLimited(_) => "asked us to slow down",
                    _ => "could not be reached",
                };
                SendOutcome::Held(format!(
                    "{} {what}. {} It is checked and sent once, automatically.",
                    venue.exchange.label(),
                    paused_reason(venue.exchange, until)
                ))
            }
            Err(ExchangeError::Rejected(why)) | Err(ExchangeError::Unreachable(why)) => {
                rejected(&why)
            }
            Err(other) => rejected(&other.to_string()),
        };
        self.settle(order, outcome, actor, meta).await
    }

    async fn settle(
        &self,
        mut order: Order,
        outcome: SendOutcome,
        actor: Actor,
        meta: RequestMeta,
    ) -> Result<Order, TradingError> {
        let now = self.now();
        let (update, fill, action) = match outcome {
            SendOutcome::Answered(ack) => {
                let (status, reason) = match &ack.status {
                    VenueOrderStatus::Filled => (OrderStatus::Filled, None),
                    VenueOrderStatus::Open => (
                        OrderStatus::Open,
                        Some("Resting on the book until the price reaches the limit.".into()),
                    ),
                    VenueOrderStatus::Cancelled => (OrderStatus::Cancelled, None),
                    VenueOrderStatus::Rejected(why) => (
                        OrderStatus::Rejected,
                        Some(format!("The exchange refused the order: {why}")),
                    ),
                };
                let new_fill = ack.filled_quantity - order.filled_quantity;
                let fill = match ack.average_price {
                    Some(price) if new_fill > Decimal::ZERO => Some(Fill {
                        order: order.id,
                        owner: order.owner,
                        symbol: order.symbol.clone(),
                        side: order.side,
                        quantity: new_fill,
                        price,
                        at: now,
                    }),
                    _ => None,
                };
                let action = match status {
                    OrderStatus::Rejected => "trade.order_rejected",
                    OrderStatus::Filled => "trade.order_filled",
                    OrderStatus::Cancelled => "trade.order_cancelled",
                    _ => "trade.order_accepted",
                };
                (
                    OrderUpdate {
                        status,
                        hold: None,
                        status_reason: reason,
                        filled_quantity: ack.filled_quantity.max(order.filled_quantity),
                        average_price: ack.average_price.or(order.average_price),
                        exchange_order_id: Some(ack.exchange_order_id.clone()),
                    },
                    fill,
                    action,
                )
            }
            SendOutcome::Held(reason) => (
                OrderUpdate {
                    status: OrderStatus::Held,
                    hold: Some(HoldKind::Exchange),
                    status_reason: Some(reason),
                    filled_quantity: order.filled_quantity,
                    average_price: order.average_price,
                    exchange_order_id: order.exchange_order_id.clone(),
                },
                None,
                "trade.order_held",
            ),
            SendOutcome::Denied(reason) => (
                OrderUpdate {
                    status: OrderStatus::Denied,
                    hold: None,
                    status_reason: Some(reason),
                    filled_quantity: order.filled_quantity,
                    average_price: order.average_price,
                    exchange_order_id: order.exchange_order_id.clone(),
                },
                None,
                "trade.order_denied",
            ),
            SendOutcome::Cancelled(reason) => (
                OrderUpdate {
                    status: OrderStatus::Cancelled,
                    hold: None,
                    status_reason: Some(reason),
                    filled_quantity: order.filled_quantity,
                    average_price: order.average_price,
                    exchange_order_id: order.exchange_order_id.clone(),
                },
                None,
                "trade.order_cancelled",
            ),
        };
        let draft = order_draft(
            actor,
            action,
            match update.status {
                OrderStatus::Rejected => Outcome::Failure,
                OrderStatus::Denied => Outcome::Denied,
                _ => Outcome::Success,
            },
            &meta,
        )
        .resource(order.id.resource())
        .detail("owner", order.owner.to_string())
        .detail("client_order_id", order.client_order_id.clone())
        .detail("status", update.status.as_str())
        .detail("filled", plain(update.filled_quantity))
        .detail("reason", update.status_reason.clone().unwrap_or_default());
        self.store
            .record_update(order.id, update.clone(), fill.clone(), draft)
            .await?;
        order.status = update.status;
        order.hold = update.hold;
        order.status_reason = update.status_reason;
        order.filled_quantity = update.filled_quantity;
        order.average_price = update.average_price;
        order.exchange_order_id = update.exchange_order_id;
        order.updated_at = now;
        Ok(order)
    }

    /// Sends orders held for an exchange outage (or released by a reviewer) once their
    /// exchange's breaker lets them through. Each order is claimed before it is sent, so two
    /// servers (or two runs) never send the same order. Returns how many were sent.
    pub async fn retry_held(&self) -> Result<usize, TradingError> {
        let held = self
            .store
            .orders_in_status(OrderStatus::Held, Some(HoldKind::Exchange), 100)
            .await?;
        let mut sent = 0;
        for order in held {
            let now = self.now();
            if let Gate::Paused(_) = self
                .breakers
                .gate((order.venue.exchange, order.venue.environment), now)
            {
                continue;
            }
            let venue = (order.venue.exchange, order.venue.environment);
            let claim = claim_draft(
                &order,
                OrderStatus::Held,
                Actor::system("trading"),
                &RequestMeta::default(),
            );
            match self
                .store
                .claim_order(order.id, OrderStatus::Held, claim)
                .await
            {
                Ok(true) => {}
                Ok(false) => {
                    self.breakers.abandon_probe(venue, now);
                    continue;
                }
                Err(e) => {
                    // Not claimed without its audit event: the order stays held.
                    self.breakers.abandon_probe(venue, now);
                    return Err(e.into());
                }
            }
            let mut order = order;
            order.attempts += 1;
            order.status = OrderStatus::Submitting;
            // Trading state and kill switches apply at send time too.
            if let Some(reason) = self.blocked_at_send(order.owner).await? {
                self.breakers.abandon_probe(venue, now);
                self.settle(
                    order,
                    SendOutcome::Cancelled(reason),
                    Actor::system("trading"),
                    RequestMeta::default(),
                )
                .await?;
                continue;
            }
            let retry = order.attempts > 1 || order.exchange_order_id.is_some();
            // It waited: the price (and the limits) may have moved since it was screened.
            self.send_checked(
                order,
                Actor::system("trading"),
                retry,
                true,
                RequestMeta::default(),
            )
            .await?;
            sent += 1;
        }
        Ok(sent)
    }

    /// Judges a held order again at the current price, just before it is sent: `None` when it
    /// still passes; held again when the venue has no quote (which also keeps the venue's
    /// breaker open, as a failed probe); denied when a first-line rule now refuses it, or when
    /// its value now needs a step-up it was never given.
    async fn rescreen(&self, order: &Order) -> Result<Option<SendOutcome>, TradingError> {
        let venue = order.venue;
        let terms = OrderTerms {
            symbol: order.symbol.clone(),
            side: order.side,
            quantity: order.quantity,
            price: order.reference_price,
        };
        let quote = self.fresh_quote(venue, &order.symbol).await;
        let client_quote = (order.order_type == OrderType::Market).then_some(order.reference_price);
        let notional = match screening_value(
            &terms,
            order.order_type,
            order.limit_price,
            quote.as_ref(),
            client_quote,
        ) {
            Ok(notional) => notional,
            Err(ScreeningRefusal::NoQuote(_)) => {
                let now = self.now();
                let until = self
                    .breakers
                    .failed((venue.exchange, venue.environment), now)
                    .unwrap_or(now);
                return Ok(Some(SendOutcome::Held(format!(
                    "{} has no current price for {}, so the order cannot be checked again before it is sent. {}",
                    venue.exchange.label(),
                    order.symbol,
                    paused_reason(venue.exchange, until)
                ))));
            }
            Err(ScreeningRefusal::Refused(why)) => {
                return Ok(Some(SendOutcome::Denied(format!("Not sent: {why}"))));
            }
        };
        let owner = order.owner;
        let _placing = self.placements.lock(owner).await;
        let now = self.now();
        let meta = RequestMeta::default();
        let limits = self.limits_for(owner, &meta).await?;
        let controls = self.store.controls(owner).await?;
        let global_kill = self.store.global_kill_switch().await?;
        let portfolio = self.portfolio(owner).await?;
        let held = portfolio.quantity(&order.symbol);
        let day_start = start_of_day(now);
        let usage = self.store.usage(owner, day_start, now).await?;
        // Today's usage already holds this order's own reservation (it is being sent).
        let own = if order.created_at >= day_start {
            super::counted_notional(
                OrderStatus::Submitting,
                order.notional,
                order.filled_quantity,
                order.average_price,
            )
        } else {
            Decimal::ZERO
        };
        let mut hits = risk::first_line(&Screening {
            symbol: &order.symbol,
            notional,
            effect: risk::order_effect(order.side, order.quantity, held),
            limits: &limits,
            step_up_threshold: self.step_up_threshold(),
            state: controls.state,
            global_kill,
            user_kill: controls.kill_switch,
            used_today: usage.used_today.saturating_sub(own),
            // Velocity and novelty were judged when it was placed; they do not change by waiting.
            orders_in_window: 0,
            ip: None,
            blocklist: None,
            new_ip: false,
            new_device: false,
        });
        if venue == Venue::PAPER && order.side == OrderSide::Buy && notional > portfolio.cash {
            hits.push(RuleHit {
                rule: Rule::MaxOrderNotional,
                verdict: Verdict::Deny,
                message: format!(
                    "Not enough paper USDT: this order now needs {} and you have {}.",
                    plain(notional.round_dp(2)),
                    plain(portfolio.cash)
                ),
            });
        }
        if order.source == OrderSource::Autonomous && notional > limits.autonomous_cap {
            hits.push(RuleHit {
                rule: Rule::MaxOrderNotional,
                verdict: Verdict::Deny,
                message: format!(
                    "Worth {} USDT at the current price, above the autonomous cap of {} USDT.",
                    plain(notional.round_dp(2)),
                    plain(limits.autonomous_cap)
                ),
            });
        }
        let mut refusals = reasons(&hits, Verdict::Deny);
        // An order approved with a step-up carries that approval; one that was not may not
        // cross the threshold by waiting.
        if order.approval != ApprovalState::Approved {
            refusals.extend(
                hits.iter()
                    .filter(|h| h.rule == Rule::LargeOrder && h.verdict == Verdict::StepUp)
                    .map(|_| {
                        format!(
                            "At the current price it is worth {} USDT, above the {} USDT that needs your approval, which it does not have. Place it again to approve it.",
                            plain(notional.round_dp(2)),
                            plain(self.step_up_threshold())
                        )
                    }),
            );
        }
        if refusals.is_empty() {
            return Ok(None);
        }
        Ok(Some(SendOutcome::Denied(format!(
            "Not sent: checked again at the current price before sending. {}",
            refusals.join(" ")
        ))))
    }

    async fn blocked_at_send(&self, owner: UserId) -> Result<Option<String>, TradingError> {
        if self.store.global_kill_switch().await? {
            return Ok(Some("Cancelled: the kill switch is on.".into()));
        }
        let controls = self.store.controls(owner).await?;
        if controls.kill_switch {
            return Ok(Some(
                "Cancelled: your trading is stopped by an admin.".into(),
            ));
        }
        if controls.state == TradingState::Halted {
            return Ok(Some("Cancelled: your trading is halted.".into()));
        }
        Ok(None)
    }

    /// Asks the exchanges about resting orders and records fills.
    pub async fn refresh_open(&self) -> Result<usize, TradingError> {
        let open = self
            .store
            .orders_in_status(OrderStatus::Open, None, 200)
            .await?;
        let mut changed = 0;
        for order in open {
            let Some(exchange) = self.exchanges.get(order.venue.exchange).cloned() else {
                continue;
            };
            let credentials = match order.venue.key {
                None => None,
                Some(key) => {
                    if !self.keyed_checks.due(order.id, self.now()) {
                        continue;
                    }
                    match self
                        .vault
                        .use_key(
                            Actor::system("trading"),
                            order.owner,
                            key,
                            KeyPurpose::Order(order.id.to_string()),
                            RequestMeta::default(),
                        )
                        .await
                    {
                        Ok((_, credentials)) => Some(credentials),
                        // Revoked, suspended, KMS down: the order stays as it is, checked later.
                        Err(_) => continue,
                    }
                }
            };
            let found = exchange
                .find_order(
                    order.venue.environment,
                    credentials.as_ref(),
                    &order.symbol,
                    &order.client_order_id,
                )
                .await;
            drop(credentials);
            let ack = match found {
                Ok(Some(ack)) => ack,
                // The paper book lives in memory, so a restart forgets its resting orders. Rest
                // this one again under the same client order id (none of it had filled).
                Ok(None) if order.venue.key.is_none() && order.filled_quantity.is_zero() => {
                    match exchange
                        .place_order(order.venue.environment, None, &venue_order(&order))
                        .await
                    {
                        Ok(ack) => ack,
                        Err(_) => continue,
                    }
                }
                _ => continue,
            };
            if ack.status == VenueOrderStatus::Open && ack.filled_quantity == order.filled_quantity
            {
                continue;
            }
            let claim = claim_draft(
                &order,
                OrderStatus::Open,
                Actor::system("trading"),
                &RequestMeta::default(),
            );
            if !self
                .store
                .claim_order(order.id, OrderStatus::Open, claim)
                .await?
            {
                continue;
            }
            self.settle(
                order,
                SendOutcome::Answered(ack),
                Actor::system("trading"),
                RequestMeta::default(),
            )
            .await?;
            changed += 1;
        }
        Ok(changed)
    }

    /// Cancels a held or resting order of the owner's. Allowed in every trading state.
    pub async fn cancel(
        &self,
        owner: UserId,
        id: OrderId,
        meta: RequestMeta,
    ) -> Result<Order, TradingError> {
        let order = self
            .store
            .order(owner, id)
            .await?
            .ok_or(TradingError::NotFound)?;
        match order.status {
            OrderStatus::Held => {
                let claim = claim_draft(&order, OrderStatus::Held, Actor::user(owner), &meta);
                if !self
                    .store
                    .claim_order(id, OrderStatus::Held, claim)
                    .await
                    .map_err(audit_or_store)?
                {
                    return Err(TradingError::Invalid(
                        "The order is being sent right now; try again in a moment.".into(),
                    ));
                }
                self.settle(
                    order,
                    SendOutcome::Cancelled("Cancelled by you before it was sent.".into()),
                    Actor::user(owner),
                    meta,
                )
                .await
            }
            OrderStatus::Open => {
                self.cancel_open(order, Actor::user(owner), None, meta)
                    .await
            }
            _ => Err(TradingError::Invalid(format!(
                "A {} order cannot be cancelled.",
                order.status.as_str()
            ))),
        }
    }

    /// Cancels an `Open` order at its venue on behalf of `actor` (the owner, an admin or the
    /// risk system); `reason`, when given, is shown on the order once the venue confirms.
    async fn cancel_open(
        &self,
        order: Order,
        actor: Actor,
        reason: Option<&str>,
        meta: RequestMeta,
    ) -> Result<Order, TradingError> {
        let (owner, id) = (order.owner, order.id);
        let exchange = self
            .exchanges
            .get(order.venue.exchange)
            .cloned()
            .ok_or_else(|| TradingError::Invalid("That exchange is not enabled.".into()))?;
        // Before the claim: a key that cannot be used leaves the order as it was.
        let credentials = match order.venue.key {
            None => None,
            Some(key) => Some(
                self.vault
                    .use_key(
                        actor.clone(),
                        owner,
                        key,
                        KeyPurpose::Order(order.id.to_string()),
                        meta.clone(),
                    )
                    .await
                    .map_err(|e| {
                        TradingError::Unavailable(format!(
                            "The key could not be used to cancel the order ({e}); it is still open."
                        ))
                    })?
                    .1,
            ),
        };
        let claim = claim_draft(&order, OrderStatus::Open, actor.clone(), &meta);
        if !self
            .store
            .claim_order(id, OrderStatus::Open, claim)
            .await
            .map_err(audit_or_store)?
        {
            return Err(TradingError::Invalid(
                "The order changed meanwhile; reload and try again.".into(),
            ));
        }
        let answer = exchange
            .cancel_order(
                order.venue.environment,
                credentials.as_ref(),
                &order.symbol,
                &order.client_order_id,
            )
            .await;
        drop(credentials);
        match answer {
            Ok(ack) => {
                let outcome = match reason {
                    // Nothing more filled meanwhile: record the cancellation with its reason.
                    Some(reason)
                        if ack.status == VenueOrderStatus::Cancelled
                            && ack.filled_quantity == order.filled_quantity =>
                    {
                        SendOutcome::Cancelled(reason.to_owned())
                    }
                    _ => SendOutcome::Answered(ack),
                };
                self.settle(order, outcome, actor, meta).await
            }
            Err(e) => {
                // The exchange still has it: put the order back as it was.
                let ack = VenueAck {
                    exchange_order_id: order.exchange_order_id.clone().unwrap_or_default(),
                    status: VenueOrderStatus::Open,
                    filled_quantity: order.filled_quantity,
                    average_price: order.average_price,
                };
                self.settle(order, SendOutcome::Answered(ack), actor, meta)
                    .await?;
                Err(TradingError::Unavailable(format!(
                    "The order could not be cancelled ({e}); it is still open."
                )))
            }
        }
    }

    /// The owner approves an order that needed their step-up and was held instead, once a
    /// reviewer has released it (`Held/Approval`). The approval must be bound to exactly this
    /// order (its venue, type, symbol, side, quantity and reference price) under `nonce`; only
    /// then is the order sent, like any released order.
    pub async fn approve_held(
        &self,
        owner: UserId,
        id: OrderId,
        nonce: &str,
        meta: RequestMeta,
    ) -> Result<Order, TradingError> {
        let mut order = self
            .store
            .order(owner, id)
            .await?
            .ok_or(TradingError::NotFound)?;
        if order.status != OrderStatus::Held || order.hold != Some(HoldKind::Approval) {
            return Err(TradingError::Invalid(
                "This order is not waiting for your approval.".into(),
            ));
        }
        let intent = OrderIntent::with_nonce(
            owner,
            OrderToApprove {
                venue: order.venue,
                order_type: order.order_type,
                terms: OrderTerms {
                    symbol: order.symbol.clone(),
                    side: order.side,
                    quantity: order.quantity,
                    price: order.reference_price,
                },
            },
            nonce.trim().to_owned(),
        );
        self.stepup
            .consume_order_approval(&intent, meta.clone())
            .await
            .map_err(|e| match e {
                StepUpError::AuditUnavailable => TradingError::AuditUnavailable,
                other => TradingError::Approval(other),
            })?;
        let now = self.now();
        let draft = order_draft(
            Actor::user(owner),
            "trade.held_order_approved",
            Outcome::Success,
            &meta,
        )
        .resource(order.id.resource())
        .detail("owner", owner.to_string())
        .detail("order_digest", intent.digest_hex());
        if !self
            .store
            .approve_held_order(owner, id, now, draft)
            .await
            .map_err(audit_or_store)?
        {
            return Err(TradingError::Conflict(
                "The order changed meanwhile; reload and try again.".into(),
            ));
        }
        order.hold = Some(HoldKind::Exchange);
        order.approval = ApprovalState::Approved;
        // Sent now unless its exchange is paused; then the retry job sends it, exactly once.
        if let Gate::Paused(_) = self
            .breakers
            .gate((order.venue.exchange, order.venue.environment), now)
        {
            return Ok(order);
        }
        let venue = (order.venue.exchange, order.venue.environment);
        let claim = claim_draft(&order, OrderStatus::Held, Actor::user(owner), &meta);
        if !self
            .store
            .claim_order(id, OrderStatus::Held, claim)
            .await
            .map_err(audit_or_store)?
        {
            self.breakers.abandon_probe(venue, now);
            return self.order(owner, id).await;
        }
        order.attempts += 1;
        order.status = OrderStatus::Submitting;
        if let Some(reason) = self.blocked_at_send(owner).await? {
            self.breakers.abandon_probe(venue, now);
            return self
                .settle(
                    order,
                    SendOutcome::Cancelled(reason),
                    Actor::user(owner),
                    meta,
                )
                .await;
        }
        let retry = order.attempts > 1 || order.exchange_order_id.is_some();
        // It waited for review: judged again at the current price before it is sent.
        self.send_checked(order, Actor::user(owner), retry, true, meta)
            .await
    }

    pub async fn orders(&self, owner: UserId, limit: u64) -> Result<Vec<Order>, TradingError> {
        Ok(self.store.orders(owner, limit).await?)
    }

    pub async fn order(&self, owner: UserId, id: OrderId) -> Result<Order, TradingError> {
        self.store
            .order(owner, id)
            .await?
            .ok_or(TradingError::NotFound)
    }

    pub async fn fills(&self, owner: UserId) -> Result<Vec<Fill>, TradingError> {
        Ok(self.store.fills(owner, None).await?)
    }

    // --- admin controls ---------------------------------------------------------------------

    /// Turns the global kill switch on or off. Turning it on also cancels every resting order
    /// at its venue (each cancellation audited); returns how many were cancelled.
    pub async fn set_global_kill_switch(
        &self,
        admin: UserId,
        on: bool,
        meta: RequestMeta,
    ) -> Result<usize, TradingError> {
        self.store
            .set_global_kill_switch(
                on,
                order_draft(
                    Actor::user(admin),
                    if on {
                        "risk.kill_switch_on"
                    } else {
                        "risk.kill_switch_off"
                    },
                    Outcome::Success,
                    &meta,
                )
                .resource("trading:global"),
            )
            .await
            .map_err(audit_or_store)?;
        if !on {
            return Ok(0);
        }
        self.cancel_resting(
            None,
            Actor::user(admin),
            "Cancelled: the kill switch is on.",
            &meta,
        )
        .await
    }

    /// Cancels the resting (open) orders of `owner`, or of everyone, at their venues through
    /// the ordinary cancel path; each cancellation is audited. An order that cannot be
    /// cancelled right now (key unusable, venue down, changed meanwhile) stays as it was: the
    /// stop still holds, because nothing new is sent and held orders are cancelled at send
    /// time. Returns how many were cancelled.
    async fn cancel_resting(
        &self,
        owner: Option<UserId>,
        actor: Actor,
        reason: &str,
        meta: &RequestMeta,
    ) -> Result<usize, TradingError> {
        const PAGE: u64 = 200;
        let mut cancelled = 0;
        let mut tried = std::collections::HashSet::new();
        loop {
            let resting = self.store.resting_orders(owner, PAGE).await?;
            let fresh: Vec<Order> = resting.into_iter().filter(|o| tried.insert(o.id)).collect();
            if fresh.is_empty() {
                return Ok(cancelled);
            }
            for order in fresh {
                if let Ok(order) = self
                    .cancel_open(order, actor.clone(), Some(reason), meta.clone())
                    .await
                    && order.status == OrderStatus::Cancelled
                {
                    cancelled += 1;
                }
            }
        }
    }

    /// An admin changes another user's trading state, kill switch or autonomous mode. Never
    /// their own (separation of duties: another admin must). Stopping a user (kill switch on,
    /// or HALTED) also cancels their resting orders at the venue.
    pub async fn change_controls(
        &self,
        admin: UserId,
        user: UserId,
        change: ControlsChange,
        meta: RequestMeta,
    ) -> Result<ControlsChanged, TradingError> {
        self.refuse_own_controls(admin, user, "risk.controls_changed", &meta)
            .await?;
        let mut draft = order_draft(
            Actor::user(admin),
            "risk.controls_changed",
            Outcome::Success,
            &meta,
        )
        .resource(format!("user:{user}"));
        if let Some(state) = change.state {
            draft = draft.detail("state", state.as_str());
        }
        if let Some(kill) = change.kill_switch {
            draft = draft.detail("kill_switch", kill);
        }
        if let Some(autonomous) = change.autonomous {
            draft = draft.detail("autonomous", autonomous);
        }
        let stops = change.kill_switch == Some(true) || change.state == Some(TradingState::Halted);
        let controls = self
            .store
            .change_controls(user, change, draft)
            .await
            .map_err(audit_or_store)?;
        let cancelled = if stops {
            let reason = if controls.kill_switch {
                "Cancelled: an admin stopped your trading."
            } else {
                "Cancelled: your trading is halted."
            };
            self.cancel_resting(Some(user), Actor::user(admin), reason, &meta)
                .await?
        } else {
            0
        };
        Ok(ControlsChanged {
            controls,
            cancelled,
        })
    }

    /// Separation of duties: an admin's own controls and limits are set by another admin.
    /// The refusal is audited.
    async fn refuse_own_controls(
        &self,
        admin: UserId,
        subject: UserId,
        action: &str,
        meta: &RequestMeta,
    ) -> Result<(), TradingError> {
        if admin != subject {
            return Ok(());
        }
        self.audit_or_fail(
            order_draft(Actor::user(admin), action, Outcome::Denied, meta)
                .resource(format!("user:{subject}"))
                .detail(
                    "reason",
                    "an admin cannot change their own controls or limits",
                ),
        )
        .await?;
        Err(TradingError::Forbidden(
            "You cannot change your own trading controls or limits; ask another admin.".into(),
        ))
    }

    /// The trader's own opt-in to autonomous agent orders below the cap.
    pub async fn set_autonomous(
        &self,
        user: UserId,
        on: bool,
        meta: RequestMeta,
    ) -> Result<UserControls, TradingError> {
        self.store
            .change_controls(
                user,
                ControlsChange {
                    autonomous: Some(on),
                    ..ControlsChange::default()
                },
                order_draft(
                    Actor::user(user),
                    "agent.autonomous_changed",
                    Outcome::Success,
                    &meta,
                )
                .resource(format!("user:{user}"))
                .detail("autonomous", on),
            )
            .await
            .map_err(audit_or_store)
    }

    /// Sets or clears a limit. The value must validate: admins cannot store an unparsable one
    /// (the fail-safe exists for values that got there some other way).
    pub async fn set_limit(
        &self,
        admin: UserId,
        user: Option<UserId>,
        field: &str,
        value: Option<&str>,
        meta: RequestMeta,
    ) -> Result<(), TradingError> {
        if let Some(subject) = user {
            self.refuse_own_controls(admin, subject, "risk.limit_changed", &meta)
                .await?;
        }
        let field = LimitField::from_key(field)
            .ok_or_else(|| TradingError::Invalid("Unknown limit.".into()))?;
        let value = match value {
            Some(raw) => Some(field.validate(raw).map_err(TradingError::Invalid)?),
            None if user.is_none() => {
                return Err(TradingError::Invalid(
                    "A global limit cannot be removed; set a value instead.".into(),
                ));
            }
            None => None,
        };
        let draft = order_draft(
            Actor::user(admin),
            "risk.limit_changed",
            Outcome::Success,
            &meta,
        )
        .resource(match user {
            Some(u) => format!("user:{u}"),
            None => "trading:global".into(),
        })
        .detail("field", field.key())
        .detail("value", value.clone().unwrap_or_else(|| "(inherit)".into()));
        self.store
            .set_limit(user, field.key(), value.as_deref(), draft)
            .await
            .map_err(audit_or_store)
    }

    pub async fn add_blocked_range(
        &self,
        admin: UserId,
        raw: &str,
        note: &str,
        meta: RequestMeta,
    ) -> Result<BlockedRange, TradingError> {
        let net = IpBlocklist::parse_entry(raw).map_err(TradingError::Invalid)?;
        let note = note.trim();
        if note.chars().count() > 200 || note.chars().any(char::is_control) {
            return Err(TradingError::Invalid(
                "The note must be at most 200 characters on one line.".into(),
            ));
        }
        let range = BlockedRange {
            id: Uuid::new_v4(),
            cidr: net.to_string(),
            note: note.to_owned(),
            created_at: self.now(),
        };
        let draft = order_draft(
            Actor::user(admin),
            "risk.ip_blocked",
            Outcome::Success,
            &meta,
        )
        .resource(format!("ip_range:{}", range.id))
        .detail("cidr", range.cidr.clone());
        match self.store.add_blocked_range(&range, draft).await {
            Ok(()) => Ok(range),
            Err(StoreError::Conflict) => Err(TradingError::Invalid(format!(
                "{} is already blocked.",
                range.cidr
            ))),
            Err(e) => Err(audit_or_store(e)),
        }
    }

    pub async fn remove_blocked_range(
        &self,
        admin: UserId,
        id: Uuid,
        meta: RequestMeta,
    ) -> Result<(), TradingError> {
        let draft = order_draft(
            Actor::user(admin),
            "risk.ip_unblocked",
            Outcome::Success,
            &meta,
        )
        .resource(format!("ip_range:{id}"));
        self.store
            .remove_blocked_range(id, draft)
            .await
            .map_err(audit_or_store)
    }

    // --- review -------------------------------------------------------------------------------

    /// A reviewer's decision. Never about themself; a note is required; everything audited.
    pub async fn decide_case(
        &self,
        reviewer: UserId,
        id: CaseId,
        release: bool,
        note: &str,
        meta: RequestMeta,
    ) -> Result<AnomalyCase, TradingError> {
        let case = self.store.case(id).await?.ok_or(TradingError::NotFound)?;
        if case.subject == reviewer {
            return Err(TradingError::Forbidden(
                "You cannot review a case about yourself.".into(),
            ));
        }
        let note = note.trim();
        if note.chars().count() < 3 || note.chars().count() > 1000 {
            return Err(TradingError::Invalid(
                "Write a note of 3 to 1000 characters explaining the decision.".into(),
            ));
        }
        if case.status != CaseStatus::Open {
            return Err(TradingError::Invalid(
                "This case was already decided.".into(),
            ));
        }
        let controls = self.store.controls(case.subject).await?;
        let others_open = self.store.open_cases_for(case.subject).await? > 1;
        let (status, new_state) = if release {
            (
                CaseStatus::Released,
                controls.state.after(StateEvent::CaseReleased {
                    other_open_cases: others_open,
                }),
            )
        } else {
            (
                CaseStatus::Confirmed,
                controls.state.after(StateEvent::CaseConfirmed),
            )
        };
        let now = self.now();
        let draft = order_draft(
            Actor::user(reviewer),
            if release {
                "review.case_released"
            } else {
                "review.case_confirmed"
            },
            Outcome::Success,
            &meta,
        )
        .resource(id.resource())
        .detail("subject", case.subject.to_string())
        .detail("note", note.to_owned())
        .detail("state_after", new_state.as_str());
        let decided = self
            .store
            .decide_case(id, status, reviewer, note, now, new_state, draft)
            .await
            .map_err(audit_or_store)?;
        if !decided {
            return Err(TradingError::Invalid(
                "This case was already decided.".into(),
            ));
        }
        self.store.case(id).await?.ok_or(TradingError::NotFound)
    }

    pub async fn cases(
        &self,
        status: Option<CaseStatus>,
    ) -> Result<Vec<AnomalyCase>, TradingError> {
        Ok(self.store.cases(status, 200).await?)
    }

    pub async fn case(&self, id: CaseId) -> Result<AnomalyCase, TradingError> {
        self.store.case(id).await?.ok_or(TradingError::NotFound)
    }

    // --- agents -------------------------------------------------------------------------------

    /// Creates a bearer token for the owner's bot. The caller checks the owner's step-up
    /// first (a token is a credential). It lives `lifetime_days` (default 90, at most 365).
    pub async fn create_agent_token(
        &self,
        owner: UserId,
        name: &str,
        scopes: &[String],
        lifetime_days: Option<u32>,
        meta: RequestMeta,
    ) -> Result<NewAgentToken, TradingError> {
        let name = agent::parse_token_name(name).map_err(TradingError::Invalid)?;
        let lifetime = agent::token_lifetime(lifetime_days).map_err(TradingError::Invalid)?;
        let mut parsed = Vec::new();
        for raw in scopes {
            let scope = AgentScope::parse(raw)
                .ok_or_else(|| TradingError::Invalid(format!("Unknown permission \"{raw}\".")))?;
            if !parsed.contains(&scope) {
                parsed.push(scope);
            }
        }
        if parsed.is_empty() {
            return Err(TradingError::Invalid(
                "Choose at least one permission for the token.".into(),
            ));
        }
        let (secret, hash) = agent::generate_token_secret();
        let now = self.now();
        let token = AgentToken {
            id: Uuid::new_v4(),
            owner,
            name,
            prefix: {
                use secrecy::ExposeSecret as _;
                secret.expose_secret().chars().take(10).collect()
            },
            scopes: parsed,
            created_at: now,
            last_used_at: None,
            revoked_at: None,
            expires_at: now + lifetime,
        };
        let draft = order_draft(
            Actor::user(owner),
            "agent.token_created",
            Outcome::Success,
            &meta,
        )
        .resource(token.resource())
        .detail("name", token.name.clone())
        .detail(
            "scopes",
            token
                .scopes
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(" "),
        )
        .detail("expires_at", crate::audit::canonical_time(token.expires_at));
        self.store
            .insert_agent_token(&token, &hash, draft)
            .await
            .map_err(audit_or_store)?;
        Ok(NewAgentToken { token, secret })
    }

    pub async fn agent_tokens(&self, owner: UserId) -> Result<Vec<AgentToken>, TradingError> {
        Ok(self.store.agent_tokens(owner).await?)
    }

    pub async fn revoke_agent_token(
        &self,
        owner: UserId,
        id: Uuid,
        meta: RequestMeta,
    ) -> Result<(), TradingError> {
        let draft = order_draft(
            Actor::user(owner),
            "agent.token_revoked",
            Outcome::Success,
            &meta,
        )
        .resource(format!("agent_token:{id}"));
        self.store
            .revoke_agent_token(owner, id, self.now(), draft)
            .await
            .map_err(audit_or_store)
    }

    /// The token behind a bearer value, if it is live. Unknown, malformed, revoked and expired
    /// values look the same to the caller; the use of an expired token is audited.
    pub async fn authenticate_agent(
        &self,
        bearer: &str,
        meta: &RequestMeta,
    ) -> Result<AgentToken, TradingError> {
        if !agent::looks_like_token(bearer) {
            return Err(TradingError::NotFound);
        }
        let now = self.now();
        let token = self
            .store
            .agent_token_by_hash(&agent::token_hash(bearer), now)
            .await?
            .ok_or(TradingError::NotFound)?;
        if token.is_expired(now) {
            self.audit_or_fail(
                order_draft(
                    agent_actor(&token),
                    "agent.token_expired",
                    Outcome::Denied,
                    meta,
                )
                .resource(token.resource())
                .detail("owner", token.owner.to_string())
                .detail("expired_at", crate::audit::canonical_time(token.expires_at)),
            )
            .await?;
            return Err(TradingError::NotFound);
        }
        Ok(token)
    }

    /// Records an agent's refusal or a held signal: nothing is placed, and the trader and
    /// reviewers can see that the agent tried.
    pub async fn agent_held(
        &self,
        token: &AgentToken,
        reason: &str,
        meta: RequestMeta,
    ) -> Result<(), TradingError> {
        self.audit_or_fail(
            order_draft(
                agent_actor(token),
                "agent.signal_held",
                Outcome::Denied,
                &meta,
            )
            .resource(token.resource())
            .detail("owner", token.owner.to_string())
            .detail("reason", reason.to_owned()),
        )
        .await
    }

    /// Queues an agent's proposal. Every field is validated like a ticket order; anything
    /// malformed is a HOLD (nothing queued, nothing placed). With autonomous mode on, an
    /// Active trader, and a notional within the cap, it is placed at once (still screened).
    pub async fn propose(
        &self,
        token: &AgentToken,
        request: OrderRequest,
        rationale: &str,
        meta: RequestMeta,
    ) -> Result<Proposal, TradingError> {
        if !token.allows(AgentScope::Propose) {
            return Err(TradingError::Forbidden(
                "This token may not propose trades.".into(),
            ));
        }
        let rationale = rationale.trim();
        if rationale.chars().count() > MAX_RATIONALE_CHARS {
            return Err(TradingError::Invalid(format!(
                "The rationale may be at most {MAX_RATIONALE_CHARS} characters."
            )));
        }
        let order_type = OrderType::parse(&request.order_type)
            .ok_or_else(|| TradingError::Invalid("type must be market or limit".into()))?;
        let side = OrderSide::parse(&request.side)
            .ok_or_else(|| TradingError::Invalid("side must be buy or sell".into()))?;
        let price_for_check = match order_type {
            OrderType::Limit => request.limit_price.clone().ok_or_else(|| {
                TradingError::Invalid("a limit proposal needs limit_price".into())
            })?,
            OrderType::Market => "1".into(),
        };
        let terms = OrderTerms::parse(
            &request.symbol,
            side.as_str(),
            &request.quantity,
            &price_for_check,
        )
        .map_err(|e| TradingError::Invalid(e.to_string()))?;
        let now = self.now();
        let proposal = Proposal {
            id: Uuid::new_v4(),
            owner: token.owner,
            token: token.id,
            symbol: terms.symbol.clone(),
            side,
            order_type,
            quantity: terms.quantity,
            limit_price: (order_type == OrderType::Limit).then_some(terms.price),
            rationale: rationale.to_owned(),
            status: ProposalStatus::Pending,
            order: None,
            created_at: now,
            decided_at: None,
        };
        let draft = order_draft(
            agent_actor(token),
            "agent.proposal_received",
            Outcome::Success,
            &meta,
        )
        .resource(proposal.resource())
        .detail("owner", token.owner.to_string())
        .detail("symbol", proposal.symbol.clone())
        .detail("side", side.as_str())
        .detail("quantity", plain(proposal.quantity));
        self.store
            .insert_proposal(&proposal, draft)
            .await
            .map_err(audit_or_store)?;
        self.try_autonomous(proposal, meta).await
    }

    async fn try_autonomous(
        &self,
        proposal: Proposal,
        meta: RequestMeta,
    ) -> Result<Proposal, TradingError> {
        let owner = proposal.owner;
        let controls = self.store.controls(owner).await?;
        if !controls.autonomous
            || controls.state != TradingState::Active
            || controls.kill_switch
            || self.store.open_cases_for(owner).await? > 0
        {
            return Ok(proposal);
        }
        let limits = self.limits_for(owner, &meta).await?;
        let price = match proposal.limit_price {
            Some(p) => p,
            None => match self.quote(Venue::PAPER, &proposal.symbol).await {
                Ok(p) => p,
                Err(_) => return Ok(proposal),
            },
        };
        // A first look only (placement judges the cap again at the screening value); a value
        // that does not fit is certainly above the cap.
        if risk::order_value(proposal.quantity, price).is_none_or(|v| v > limits.autonomous_cap) {
            return Ok(proposal);
        }
        let parsed = ParsedOrder {
            venue: Venue::PAPER,
            terms: OrderTerms {
                symbol: proposal.symbol.clone(),
                side: proposal.side,
                quantity: proposal.quantity,
                price,
            },
            order_type: proposal.order_type,
            limit_price: proposal.limit_price,
            proposal: Some(proposal.id),
        };
        let actor = Actor {
            kind: crate::audit::ActorKind::Agent,
            id: Some(proposal.token.to_string()),
        };
        match self
            .place_parsed(
                owner,
                actor,
                parsed,
                None,
                OrderSource::Autonomous,
                meta.clone(),
            )
            .await
        {
            // The proposal was settled as placed together with the order's decision.
            Ok(order) => {
                let mut proposal = proposal;
                proposal.status = ProposalStatus::Placed;
                proposal.order = Some(order.id);
                proposal.decided_at = Some(order.created_at);
                Ok(proposal)
            }
            // Needs a human (step-up, or a bad input the trader should see): stays queued.
            Err(TradingError::ApprovalRequired { .. } | TradingError::Invalid(_)) => Ok(proposal),
            // The trader decided it meanwhile: report it as it is now.
            Err(TradingError::Conflict(_)) => Ok(self
                .store
                .proposal(owner, proposal.id)
                .await?
                .unwrap_or(proposal)),
            Err(e) => Err(e),
        }
    }

    pub async fn proposals(&self, owner: UserId) -> Result<Vec<Proposal>, TradingError> {
        Ok(self.store.proposals(owner, 100).await?)
    }

    /// The trader's sign-off: the proposal becomes a ticket order (screened, with step-up
    /// above the threshold, like any other). The proposal is settled as placed in the same
    /// transaction as the order's decision, only if it is still pending: two sign-offs (or a
    /// sign-off racing autonomous mode) give one order, and the other gets `Conflict`.
    pub async fn sign_off(
        &self,
        user: &User,
        id: Uuid,
        quoted_price: Option<String>,
        approval_nonce: Option<String>,
        meta: RequestMeta,
    ) -> Result<Order, TradingError> {
        let proposal = self
            .store
            .proposal(user.id, id)
            .await?
            .ok_or(TradingError::NotFound)?;
        if proposal.status != ProposalStatus::Pending {
            return Err(TradingError::Conflict(
                "This proposal was already placed or rejected.".into(),
            ));
        }
        let request = OrderRequest {
            venue: "paper".into(),
            symbol: proposal.symbol.clone(),
            side: proposal.side.as_str().into(),
            order_type: proposal.order_type.as_str().into(),
            quantity: plain(proposal.quantity),
            limit_price: proposal.limit_price.map(plain),
            quoted_price,
            approval_nonce: None,
        };
        let mut parsed = self.parse_order(user.id, &request).await?;
        parsed.proposal = Some(proposal.id);
        self.place_parsed(
            user.id,
            Actor::user(user.id),
            parsed,
            approval_nonce,
            OrderSource::Proposal,
            meta,
        )
        .await
    }

    pub async fn reject_proposal(
        &self,
        owner: UserId,
        id: Uuid,
        meta: RequestMeta,
    ) -> Result<(), TradingError> {
        let draft = order_draft(
            Actor::user(owner),
            "agent.proposal_rejected",
            Outcome::Success,
            &meta,
        )
        .resource(format!("proposal:{id}"));
        let settled = self
            .store
            .settle_proposal(owner, id, ProposalStatus::Rejected, None, self.now(), draft)
            .await
            .map_err(audit_or_store)?;
        if settled {
            return Ok(());
        }
        match self.store.proposal(owner, id).await? {
            None => Err(TradingError::NotFound),
            Some(_) => Err(TradingError::Invalid(
                "This proposal was already decided.".into(),
            )),
        }
    }
}

enum SendOutcome {
    Answered(VenueAck),
    Held(String),
    Cancelled(String),
    /// Judged again before sending and refused: never sent.
    Denied(String),
}

/// Why an order cannot be given the value the rules judge it at.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ScreeningRefusal {
    /// No fresh quote, and the order's value depends on it: refused when placed, held again
    /// when retried.
    NoQuote(String),
    /// The order can never pass as written (a limit far through the market, a value too large
    /// to compute): refused when placed, denied when retried.
    Refused(String),
}

impl ScreeningRefusal {
    fn message(&self) -> String {
        match self {
            ScreeningRefusal::NoQuote(why) | ScreeningRefusal::Refused(why) => why.clone(),
        }
    }
}

/// The value (quantity × the price from [`risk::screening_price`]) every rule judges an order
/// at: the per-order and daily limits, the step-up threshold, the autonomous cap, the paper
/// balance and the anomaly score. `quote` is the venue's current price or why there is none.
fn screening_value(
    terms: &OrderTerms,
    order_type: OrderType,
    limit_price: Option<Decimal>,
    quote: Result<&Decimal, &String>,
    client_quote: Option<Decimal>,
) -> Result<Decimal, ScreeningRefusal> {
    let limit = match order_type {
        OrderType::Market => None,
        OrderType::Limit => Some(limit_price.unwrap_or(terms.price)),
    };
    let price = risk::screening_price(terms.side, limit, quote.ok().copied(), client_quote)
        .map_err(|refusal| match refusal {
            PriceRefusal::NoQuote => {
                let why = quote.err().cloned().unwrap_or_default();
                let what = match order_type {
                    OrderType::Market => "a market order trades at the market price".to_owned(),
                    OrderType::Limit => {
                        "a sell limit below the market trades at the market price".to_owned()
                    }
                };
                ScreeningRefusal::NoQuote(format!(
                    "There is no current price for {}: {why} Without one this order cannot be checked ({what}), so it was not placed. Try again when prices are back.",
                    terms.symbol
                ))
            }
            PriceRefusal::LimitThroughQuote { side, limit, quote } => {
                let (direction, at) = match side {
                    OrderSide::Buy => ("above", "buy at once"),
                    OrderSide::Sell => ("below", "sell at once"),
                };
                ScreeningRefusal::Refused(format!(
                    "A {} limit of {} is more than {}% {direction} the current price of {} ({}): it would {at} at the market price, not at its limit. Use a market order, or a limit within {}% of the price.",
                    side.as_str(),
                    plain(limit),
                    plain(risk::MAX_LIMIT_THROUGH_QUOTE * Decimal::ONE_HUNDRED),
                    terms.symbol,
                    plain(quote),
                    plain(risk::MAX_LIMIT_THROUGH_QUOTE * Decimal::ONE_HUNDRED),
                ))
            }
        })?;
    risk::order_value(terms.quantity, price).ok_or_else(|| {
        ScreeningRefusal::Refused(
            "This order's value is too large to compute; enter a smaller quantity.".into(),
        )
    })
}

/// The order as the exchange gets it; the same on every attempt.
fn venue_order(order: &Order) -> VenueOrder {
    VenueOrder {
        client_order_id: order.client_order_id.clone(),
        symbol: order.symbol.clone(),
        side: order.side,
        order_type: order.order_type,
        quantity: order.quantity,
        limit_price: order.limit_price,
    }
}

fn rejected(why: &str) -> SendOutcome {
    SendOutcome::Answered(VenueAck {
        exchange_order_id: String::new(),
        status: VenueOrderStatus::Rejected(why.to_owned()),
        filled_quantity: Decimal::ZERO,
        average_price: None,
    })
}

fn agent_actor(token: &AgentToken) -> Actor {
    Actor {
        kind: crate::audit::ActorKind::Agent,
        id: Some(token.id.to_string()),
    }
}

fn paused_reason(exchange: ExchangeName, until: OffsetDateTime) -> String {
    format!(
        "Trading on {} is paused after an outage until {:02}:{:02}:{:02} UTC; the order is held.",
        exchange.label(),
        until.hour(),
        until.minute(),
        until.second()
    )
}

fn reasons(hits: &[RuleHit], verdict: Verdict) -> Vec<String> {
    hits.iter()
        .filter(|h| h.verdict == verdict)
        .map(|h| h.message.clone())
        .collect()
}

fn rule_codes(hits: &[RuleHit]) -> String {
    hits.iter()
        .map(|h| h.rule.code())
        .collect::<Vec<_>>()
        .join(",")
}

fn audit_or_store(err: StoreError) -> TradingError {
    match err {
        StoreError::NotFound => TradingError::NotFound,
        StoreError::Backend(_) => TradingError::AuditUnavailable,
        other => TradingError::Store(other),
    }
}
