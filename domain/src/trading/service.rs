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
    AnomalyCase, BlockedRange, CaseEvidence, CaseId, CaseStatus, ControlsChange, Fill, HoldKind,
    Order, OrderDecisionWrite, OrderId, OrderSource, OrderStatus, OrderUpdate, TradingStore,
    UserControls, Venue,
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
    self, FailSafe, IpBlocklist, LimitField, OrderSide, RiskLimits, Rule, RuleHit, Screening,
    StateEvent, TradeSample, TradingState, Verdict,
};
use crate::stepup::{OrderIntent, OrderTerms, StepUpError, StepUpService};

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

/// Parsed, validated order input.
struct ParsedOrder {
    venue: Venue,
    terms: OrderTerms,
    order_type: OrderType,
    limit_price: Option<Decimal>,
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

    async fn resolve_venue(&self, owner: UserId, raw: &str) -> Result<Venue, TradingError> {
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
        } = parsed;
        // A market order's quote must still be about right, or the approval and the limits
        // would have been judged on a price that is gone.
        if order_type == OrderType::Market
            && let Ok(current) = self.quote(venue, &terms.symbol).await
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
        let placing = self.placements.lock(owner).await;
        let now = self.now();
        let notional = terms.notional();
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
        if verdict == Verdict::StepUp {
            if source == OrderSource::Autonomous {
                return Err(TradingError::ApprovalRequired {
                    reasons: reasons(&hits, Verdict::StepUp),
                });
            }
            let Some(nonce) = approval_nonce else {
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
            };
            let intent = OrderIntent {
                account: owner,
                terms: terms.clone(),
                nonce,
            };
            self.stepup
                .consume_order_approval(&intent, meta.clone())
                .await
                .map_err(|e| match e {
                    StepUpError::AuditUnavailable => TradingError::AuditUnavailable,
                    other => TradingError::Approval(other),
                })?;
            verdict = Verdict::Allow;
            hits.push(RuleHit {
                rule: Rule::LargeOrder,
                verdict: Verdict::Allow,
                message: "Approved for this order with a fresh step-up.".into(),
            });
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
                status_reason = Some("Held for review by a compliance reviewer.".into());
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
        self.store
            .record_decision(OrderDecisionWrite {
                order: order.clone(),
                case: case.clone(),
                new_state,
                audit,
            })
            .await
            .map_err(|e| match e {
                // Fail closed: without its audit record, the order does not exist.
                StoreError::Backend(_) => TradingError::AuditUnavailable,
                other => TradingError::Store(other),
            })?;
        drop(placing);
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
            let _ = self.store.set_case_rationale(case.id, &text).await;
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
            if update.status == OrderStatus::Rejected {
                Outcome::Failure
            } else {
                Outcome::Success
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
            if !self.store.claim_order(order.id, OrderStatus::Held).await? {
                continue;
            }
            let mut order = order;
            order.attempts += 1;
            order.status = OrderStatus::Submitting;
            // Trading state and kill switches apply at send time too.
            if let Some(reason) = self.blocked_at_send(order.owner).await? {
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
            self.send(
                order,
                Actor::system("trading"),
                retry,
                RequestMeta::default(),
            )
            .await?;
            sent += 1;
        }
        Ok(sent)
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
            if !self.store.claim_order(order.id, OrderStatus::Open).await? {
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
                if !self.store.claim_order(id, OrderStatus::Held).await? {
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
                                Actor::user(owner),
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
                if !self.store.claim_order(id, OrderStatus::Open).await? {
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
                        return self
                            .settle(order, SendOutcome::Answered(ack), Actor::user(owner), meta)
                            .await;
                    }
                    Err(e) => {
                        // The exchange still has it: put the order back as it was.
                        let ack = VenueAck {
                            exchange_order_id: order.exchange_order_id.clone().unwrap_or_default(),
                            status: VenueOrderStatus::Open,
                            filled_quantity: order.filled_quantity,
                            average_price: order.average_price,
                        };
                        self.settle(order, SendOutcome::Answered(ack), Actor::user(owner), meta)
                            .await?;
                        Err(TradingError::Unavailable(format!(
                            "The order could not be cancelled ({e}); it is still open."
                        )))
                    }
                }
            }
            _ => Err(TradingError::Invalid(format!(
                "A {} order cannot be cancelled.",
                order.status.as_str()
            ))),
        }
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

    pub async fn set_global_kill_switch(
        &self,
        admin: UserId,
        on: bool,
        meta: RequestMeta,
    ) -> Result<(), TradingError> {
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
            .map_err(audit_or_store)
    }

    pub async fn change_controls(
        &self,
        admin: UserId,
        user: UserId,
        change: ControlsChange,
        meta: RequestMeta,
    ) -> Result<UserControls, TradingError> {
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
        self.store
            .change_controls(user, change, draft)
            .await
            .map_err(audit_or_store)
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

    pub async fn create_agent_token(
        &self,
        owner: UserId,
        name: &str,
        scopes: &[String],
        meta: RequestMeta,
    ) -> Result<NewAgentToken, TradingError> {
        let name = agent::parse_token_name(name).map_err(TradingError::Invalid)?;
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
        let token = AgentToken {
            id: Uuid::new_v4(),
            owner,
            name,
            prefix: {
                use secrecy::ExposeSecret as _;
                secret.expose_secret().chars().take(10).collect()
            },
            scopes: parsed,
            created_at: self.now(),
            last_used_at: None,
            revoked_at: None,
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
        );
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

    /// The token behind a bearer value, if it is live. Unknown and malformed values look the
    /// same to the caller.
    pub async fn authenticate_agent(&self, bearer: &str) -> Result<AgentToken, TradingError> {
        if !agent::looks_like_token(bearer) {
            return Err(TradingError::NotFound);
        }
        self.store
            .agent_token_by_hash(&agent::token_hash(bearer), self.now())
            .await?
            .ok_or(TradingError::NotFound)
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
        if proposal.quantity * price > limits.autonomous_cap {
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
            Ok(order) => {
                self.settle_proposal(proposal, order.id, meta, "autonomous")
                    .await
            }
            // Needs a human (step-up, or a bad input the trader should see): stays queued.
            Err(TradingError::ApprovalRequired { .. } | TradingError::Invalid(_)) => Ok(proposal),
            Err(e) => Err(e),
        }
    }

    async fn settle_proposal(
        &self,
        mut proposal: Proposal,
        order: OrderId,
        meta: RequestMeta,
        by: &str,
    ) -> Result<Proposal, TradingError> {
        let now = self.now();
        let draft = order_draft(
            Actor::user(proposal.owner),
            "agent.proposal_placed",
            Outcome::Success,
            &meta,
        )
        .resource(proposal.resource())
        .detail("order", order.to_string())
        .detail("by", by.to_owned());
        self.store
            .settle_proposal(
                proposal.owner,
                proposal.id,
                ProposalStatus::Placed,
                Some(order),
                now,
                draft,
            )
            .await
            .map_err(audit_or_store)?;
        proposal.status = ProposalStatus::Placed;
        proposal.order = Some(order);
        proposal.decided_at = Some(now);
        Ok(proposal)
    }

    pub async fn proposals(&self, owner: UserId) -> Result<Vec<Proposal>, TradingError> {
        Ok(self.store.proposals(owner, 100).await?)
    }

    /// The trader's sign-off: the proposal becomes a ticket order (screened, with step-up
    /// above the threshold, like any other).
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
            return Err(TradingError::Invalid(
                "This proposal was already decided.".into(),
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
            approval_nonce,
        };
        let order = self
            .place(user, request, OrderSource::Proposal, meta.clone())
            .await?;
        self.settle_proposal(proposal, order.id, meta, "trader")
            .await?;
        Ok(order)
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
