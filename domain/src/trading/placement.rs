//! Placing an order: value it at the price it can really execute at, screen and decide it
//! ([`super::decision`]), record the decision with its audit events (fail closed), then send
//! it, or hold it while its exchange is down. Also the ticket's data, and the check again at
//! the current price of an order that waited.

use rust_decimal::Decimal;
use uuid::Uuid;

use super::breaker::Gate;
use super::cancellation::Resting;
use super::decision::{
    Decided, Disposition, OrderDecision, OrderFacts, decide_order, paper_funds_refusal, reasons,
    rule_codes,
};
use super::error::{QuoteFailure, Refusal, TradingError};
use super::execution::SendOutcome;
use super::service::{VenueChoice, device_id, draft, paused_reason, plain};
use super::{
    AnomalyCase, ApprovalState, CaseId, CaseStatus, HoldKind, Order, OrderDecisionWrite, OrderId,
    OrderRecord, OrderRecordQuery, OrderSource, OrderStatus, ScreeningSettings, TradingService,
    UsageWindows, UserControls, Venue,
};
use crate::account::UserId;
use crate::audit::{Actor, Outcome, RequestMeta};
use crate::audit_action::AuditAction;
use crate::order::{OrderSide, OrderTerms, OrderTicket, OrderType, Price};
use crate::risk::{self, IpBlocklist, PriceRefusal, Rule, RuleHit, Screening, Verdict};
use crate::stepup::{OrderIntent, OrderToApprove, StepUpError};
use crate::store_error::StoreError;

/// A market order's quote may drift this much (relative) before the trader must look again.
const MAX_QUOTE_DRIFT: Decimal = Decimal::from_parts(1, 0, 0, false, 2);

/// Whether the market moved from `seen` (the price the trader saw, or approved) to `current`
/// further than a market order's quote may drift.
pub(super) fn moved_too_far(seen: Decimal, current: Decimal) -> bool {
    !seen.is_zero() && ((current - seen) / seen).abs() > MAX_QUOTE_DRIFT
}

/// An order on its way to a decision.
pub(super) struct Placement {
    pub owner: UserId,
    pub actor: Actor,
    pub venue: Venue,
    pub ticket: OrderTicket,
    /// The agent proposal this order places, if any: settled with the decision, at most once.
    pub proposal: Option<Uuid>,
    /// The nonce of a step-up approval granted for exactly this order.
    pub approval_nonce: Option<String>,
    pub source: OrderSource,
    pub meta: RequestMeta,
}

/// Why an order cannot be given the value the rules judge it at.
pub(super) enum ScreeningRefusal {
    /// No fresh quote, and the order's value depends on it: refused when placed, held again
    /// when retried.
    NoQuote(QuoteFailure),
    /// The order can never pass as written (a limit far through the market, a value too large
    /// to compute): refused when placed, denied when retried.
    Refused(Refusal),
}

/// The value (quantity × the price from [`risk::screening_price`]) every rule judges an order
/// at: the per-order and daily limits, the step-up threshold, the autonomous cap, the paper
/// balance and the anomaly score. `quote` is the venue's current price or why there is none.
pub(super) fn screening_value(
    terms: &OrderTerms,
    order_type: OrderType,
    quote: Result<Decimal, QuoteFailure>,
) -> Result<Decimal, ScreeningRefusal> {
    let (limit, client_quote) = match order_type {
        OrderType::Market => (None, Some(terms.price)),
        OrderType::Limit => (Some(terms.price), None),
    };
    let price = risk::screening_price(terms.side, limit, quote.clone().ok(), client_quote)
        .map_err(|refusal| match refusal {
            PriceRefusal::NoQuote => {
                ScreeningRefusal::NoQuote(quote.err().unwrap_or(QuoteFailure::NotEnabled))
            }
            PriceRefusal::LimitThroughQuote { side, limit, quote } => {
                ScreeningRefusal::Refused(Refusal::LimitThroughQuote {
                    symbol: terms.symbol.clone(),
                    side,
                    limit,
                    quote,
                })
            }
        })?;
    risk::order_value(terms.quantity, price)
        .ok_or(ScreeningRefusal::Refused(Refusal::ValueTooLarge))
}

/// The code recorded for a refusal that stops a well-formed order before the rules judge it;
/// `None` for the others (a form without the quote seen, or a venue or key that cannot be used,
/// is a bad request).
fn refused_before_the_rules(refusal: &Refusal) -> Option<&'static str> {
    Some(match refusal {
        Refusal::PriceMoved { .. } => "price_moved",
        Refusal::NoQuote { .. } => "no_quote",
        Refusal::LimitThroughQuote { .. } => "limit_through_quote",
        Refusal::ValueTooLarge => "value_too_large",
        Refusal::InsufficientCash { .. } => "insufficient_cash",
        Refusal::InsufficientHolding { .. } => "insufficient_holding",
        _ => return None,
    })
}

/// The sentence for a screening refusal (a limit far through the market, a value too large),
/// as a held order's record states it when it is checked again, and as the trader reads it when
/// placing: one wording for both. `None` for the other refusals.
pub fn refusal_sentence(refusal: &Refusal) -> Option<String> {
    Some(match refusal {
        Refusal::LimitThroughQuote {
            symbol,
            side,
            limit,
            quote,
        } => {
            let (direction, at) = match side {
                OrderSide::Buy => ("above", "buy at once"),
                OrderSide::Sell => ("below", "sell at once"),
            };
            let band = plain(risk::MAX_LIMIT_THROUGH_QUOTE * Decimal::ONE_HUNDRED);
            format!(
                "A {} limit of {} is more than {band}% {direction} the current price of {symbol} ({}): it would {at} at the market price, not at its limit. Use a market order, or a limit within {band}% of the price.",
                side.as_str(),
                plain(*limit),
                plain(*quote),
            )
        }
        Refusal::ValueTooLarge => {
            "This order's value is too large to compute; enter a smaller quantity.".into()
        }
        _ => return None,
    })
}

impl TradingService {
    /// Screens, decides and (if allowed) sends an order from the trader's ticket.
    pub async fn place(
        &self,
        owner: UserId,
        venue: VenueChoice,
        ticket: OrderTicket,
        approval_nonce: Option<String>,
        meta: RequestMeta,
    ) -> Result<Order, TradingError> {
        let venue = self.resolve_venue(owner, venue).await?;
        self.place_ticket(Placement {
            owner,
            actor: Actor::user(owner),
            venue,
            ticket,
            proposal: None,
            approval_nonce,
            source: OrderSource::Ticket,
            meta,
        })
        .await
    }

    pub(super) async fn place_ticket(&self, placement: Placement) -> Result<Order, TradingError> {
        let (owner, actor, meta) = (
            placement.owner,
            placement.actor.clone(),
            placement.meta.clone(),
        );
        let (ticket, venue) = (placement.ticket.clone(), placement.venue);
        let placed = self.screen_and_place(placement).await;
        // Refused before the rules could judge it (no price or a moved one, a limit far through
        // the market, short of paper funds): still an order attempt, so it leaves a trace.
        if let Err(TradingError::Refused(refusal)) = &placed
            && let Some(reason) = refused_before_the_rules(refusal)
        {
            self.audit_or_fail(
                draft(
                    actor,
                    AuditAction::TradeOrderRefused,
                    Outcome::Denied,
                    &meta,
                )
                .resource(format!("user:{owner}"))
                .detail("venue", format!("{}/{}", venue.exchange, venue.environment))
                .detail("key", venue.key.map(|k| k.to_string()).unwrap_or_default())
                .detail("symbol", ticket.symbol().to_string())
                .detail("side", ticket.side().as_str())
                .detail("type", ticket.order_type().as_str())
                .detail("quantity", plain(ticket.quantity().value()))
                .detail("reason", reason),
            )
            .await?;
        }
        placed
    }

    async fn screen_and_place(&self, placement: Placement) -> Result<Order, TradingError> {
        let Placement {
            owner,
            actor,
            venue,
            ticket,
            proposal,
            approval_nonce,
            source,
            meta,
        } = placement;
        let order_type = ticket.order_type();
        let terms = ticket.terms().ok_or(Refusal::QuoteMissing)?;
        // The rules judge the value the order can really execute at: a fresh quote is taken
        // (a market order or a sell limit without one is refused, never judged on the
        // client's number), and a market order's quote must still be about right, or the
        // approval would have been given for a price that is gone.
        let quote = self.venue_price(venue, &terms.symbol).await;
        if order_type == OrderType::Market
            && let Ok(current) = quote
            && moved_too_far(terms.price, current)
        {
            return Err(Refusal::PriceMoved {
                symbol: terms.symbol,
                from: terms.price,
                to: current,
            }
            .into());
        }
        let notional =
            screening_value(&terms, order_type, quote).map_err(|refusal| match refusal {
                ScreeningRefusal::NoQuote(cause) => Refusal::NoQuote {
                    symbol: terms.symbol.clone(),
                    order_type,
                    cause,
                },
                ScreeningRefusal::Refused(refusal) => refusal,
            })?;
        let placing = self.placements.lock(owner).await?;
        let now = self.now();
        let (account, settings) = self.store.account_and_settings(owner).await?;
        let portfolio = account.free(None);
        if venue.trades_paper_account()
            && let Some(refusal) = paper_funds_refusal(
                terms.side,
                &terms.symbol,
                terms.quantity,
                notional,
                &portfolio,
            )
        {
            return Err(refusal.into());
        }
        let limits = self.settings_limits(owner, &settings, &meta).await?;
        let ScreeningSettings {
            global_kill,
            controls,
            blocked_cidrs,
            open_cases,
            ..
        } = settings;
        let device = device_id(meta.user_agent.as_deref());
        let (blocklist, _) = IpBlocklist::from_entries(&blocked_cidrs);
        let OrderRecord {
            usage,
            history,
            seen_ip,
            seen_device,
        } = self
            .store
            .order_record(OrderRecordQuery {
                owner,
                windows: UsageWindows::at(now, &limits),
                history_len: risk::HISTORY_LEN as u64,
                ip: meta.ip.as_deref(),
                device: device.as_deref(),
            })
            .await?;
        let decision = decide_order(&OrderFacts {
            now,
            symbol: &terms.symbol,
            side: terms.side,
            quantity: terms.quantity,
            notional,
            source,
            approval_offered: approval_nonce.is_some(),
            limits: &limits,
            step_up_threshold: self.step_up_threshold(),
            controls: &controls,
            global_kill,
            usage,
            held: portfolio.quantity(&terms.symbol),
            ip: meta.ip.as_deref(),
            device: device.as_deref(),
            blocklist: &blocklist,
            seen_ip,
            seen_device,
            history: &history,
            open_cases,
        });
        let decided = match decision {
            OrderDecision::Decided(decided) => *decided,
            OrderDecision::NeedsSignOff => return Err(TradingError::SignOffRequired),
            OrderDecision::NeedsApproval { hits } => {
                self.audit_or_fail(
                    draft(
                        actor,
                        AuditAction::TradeOrderNeedsApproval,
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
        };
        if decided.spends_approval
            && let Some(nonce) = approval_nonce
        {
            let intent = OrderIntent::with_nonce(
                owner,
                OrderToApprove {
                    venue,
                    order_type,
                    terms: terms.clone(),
                },
                nonce,
            );
            self.spend_approval(&intent, &meta).await?;
        }
        let Decided {
            verdict,
            hits,
            anomaly,
            approval,
            disposition,
            case,
            new_state,
            quarantine,
            ..
        } = decided;
        let (status, hold, status_reason) = match disposition {
            Disposition::Denied { reason } => (OrderStatus::Denied, None, Some(reason)),
            Disposition::HeldForReview { reason } => {
                (OrderStatus::Held, Some(HoldKind::Review), Some(reason))
            }
            Disposition::Send => match self.breakers.gate((venue.exchange, venue.environment), now)
            {
                Gate::Paused(until) => (
                    OrderStatus::Held,
                    Some(HoldKind::Exchange),
                    Some(paused_reason(venue.exchange, until)),
                ),
                Gate::Pass => (OrderStatus::Submitting, None, None),
            },
        };

        let order_id = OrderId::new_random();
        let case = case.map(|evidence| AnomalyCase {
            id: CaseId::new_random(),
            subject: owner,
            order: Some(order_id),
            score: anomaly.score,
            evidence,
            status: CaseStatus::Open,
            opened_at: now,
            decided_at: None,
            decided_by: None,
            note: None,
            rationale: None,
        });
        let order = Order {
            id: order_id,
            owner,
            venue,
            client_order_id: format!("cp-{}", order_id.0.simple()),
            symbol: terms.symbol.clone(),
            side: terms.side,
            order_type,
            quantity: terms.quantity,
            limit_price: ticket.limit_price().map(Price::value),
            reference_price: terms.price,
            notional,
            status,
            hold,
            approval,
            status_reason,
            verdict,
            hits,
            anomaly: Some(anomaly),
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
        let audit = decision_audit(
            &order,
            &actor,
            case.as_ref(),
            quarantine,
            &controls,
            proposal,
            &meta,
        );
        let recorded = self
            .store
            .record_decision(OrderDecisionWrite {
                order: order.clone(),
                proposal,
                case: case.clone(),
                quarantine,
                audit,
            })
            .await;
        if recorded.is_err() && status == OrderStatus::Submitting {
            // Never sent: if the gate let it through as the venue's probe, the next order
            // probes instead.
            self.breakers
                .abandon_probe((venue.exchange, venue.environment), now);
        }
        recorded.map_err(|e| match e {
            // Fail closed: without its audit record, the order does not exist.
            StoreError::Backend(_) | StoreError::Unavailable(_) => TradingError::AuditUnavailable,
            // The proposal was placed (or rejected) meanwhile: nothing was written.
            StoreError::Conflict if proposal.is_some() => {
                TradingError::Conflict(super::Conflict::ProposalSettled)
            }
            other => TradingError::Store(other),
        })?;
        drop(placing);
        // Quarantined: the resting orders the new state forbids come off the book too (all of
        // them when halted, the buys when reducing only). Best effort: the quarantine is
        // recorded either way, and each cancellation is audited. The target, not only a change
        // seen at screening: a release committed meanwhile is quarantined again by the write,
        // and its trader's resting orders must follow.
        if let Some(which) = new_state.or(quarantine).and_then(Resting::cancelled_by) {
            let reason = which.state_reason();
            let _ = self
                .cancel_resting(Some(owner), which, Actor::system("risk"), reason, &meta)
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

    /// Spends an order-bound step-up approval; nothing else is done if it does not match.
    pub(super) async fn spend_approval(
        &self,
        intent: &OrderIntent,
        meta: &RequestMeta,
    ) -> Result<(), TradingError> {
        self.stepup
            .consume_order_approval(intent, meta.clone())
            .await
            .map_err(|e| match e {
                StepUpError::AuditUnavailable => TradingError::AuditUnavailable,
                other => TradingError::Approval(other),
            })
    }

    /// Judges a held order again at the current price, just before it is sent: `None` when it
    /// still passes; held again when the venue has no quote (which also keeps the venue's
    /// breaker open, as a failed probe); denied when a first-line rule now refuses it, or when
    /// its value now needs a step-up it was never given.
    pub(super) async fn rescreen(
        &self,
        order: &Order,
    ) -> Result<Option<SendOutcome>, TradingError> {
        let venue = order.venue;
        let terms = OrderTerms {
            symbol: order.symbol.clone(),
            side: order.side,
            quantity: order.quantity,
            price: order.limit_price.unwrap_or(order.reference_price),
        };
        let quote = self.venue_price(venue, &order.symbol).await;
        // An approval commits to the price its owner saw: a market order that waited while the
        // price moved further than placement allows needs a new one.
        let moved_since_approval = match &quote {
            Ok(current)
                if order.approval == ApprovalState::Approved
                    && order.order_type == OrderType::Market
                    && moved_too_far(order.reference_price, *current) =>
            {
                Some(*current)
            }
            _ => None,
        };
        let notional = match screening_value(&terms, order.order_type, quote) {
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
            Err(ScreeningRefusal::Refused(refusal)) => {
                let why = refusal_sentence(&refusal).unwrap_or_else(|| refusal.to_string());
                return Ok(Some(SendOutcome::Denied(format!("Not sent: {why}"))));
            }
        };
        let owner = order.owner;
        let _placing = self.placements.lock(owner).await?;
        let now = self.now();
        let meta = RequestMeta::default();
        let (
            account,
            limits,
            ScreeningSettings {
                global_kill,
                controls,
                blocked_cidrs,
                ..
            },
        ) = self.screening_for(owner, &meta).await?;
        // The address it was placed from, against the blocklist as it is now: a range blocked
        // while the order waited (an outage, a review) stops it too.
        let (blocklist, _) = IpBlocklist::from_entries(&blocked_cidrs);
        let placed_from = order.ip.as_deref().and_then(|ip| ip.parse().ok());
        let portfolio = account.free(Some(order.id));
        let held = portfolio.quantity(&order.symbol);
        // Everything else that counts: the order itself is judged at its value now.
        let usage = self
            .store
            .usage(owner, UsageWindows::at_send(now), Some(order.id))
            .await?;
        let mut hits = risk::first_line(&Screening {
            symbol: &order.symbol,
            notional,
            effect: risk::order_effect(order.side, order.quantity, held),
            limits: &limits,
            step_up_threshold: self.step_up_threshold(),
            state: controls.state,
            global_kill,
            user_kill: controls.kill_switch,
            used_today: usage.used_today,
            // Velocity and novelty were judged when it was placed; they do not change by
            // waiting. What went out without an approval does: with this order's value now, it
            // may pass the step-up threshold (judged below).
            orders_in_window: 0,
            unapproved_notional: usage.unapproved_notional,
            ip: placed_from,
            blocklist: Some(&blocklist),
            new_ip: false,
            new_device: false,
        });
        // Judged on what is free: the other live orders' claims are taken off first.
        if venue.trades_paper_account() && order.side == OrderSide::Buy && notional > portfolio.cash
        {
            hits.push(RuleHit {
                rule: Rule::MaxOrderNotional,
                verdict: Verdict::Deny,
                message: format!(
                    "Not enough paper USDT: this order now needs {} and {} is free (your cash less your other open and held buy orders).",
                    plain(notional.round_dp(2)),
                    plain(portfolio.cash.max(Decimal::ZERO))
                ),
            });
        }
        if venue.trades_paper_account() && order.side == OrderSide::Sell && order.quantity > held {
            hits.push(RuleHit {
                rule: Rule::MaxOrderNotional,
                verdict: Verdict::Deny,
                message: format!(
                    "Only {} {} is free to sell now (what you hold less your other open and held sell orders).",
                    plain(held.max(Decimal::ZERO)),
                    order.symbol
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
        if let Some(current) = moved_since_approval {
            refusals.push(format!(
                "The price of {} moved from {} to {} since you approved it. Place it again to approve it at the current price.",
                order.symbol,
                plain(order.reference_price),
                plain(current)
            ));
        }
        // (One its owner approved carries their sign-off instead.)
        if order.source == OrderSource::Autonomous
            && order.approval != ApprovalState::Approved
            && let Some(why) = self
                .autonomy_withdrawn(order, controls.autonomous, now)
                .await?
        {
            refusals.push(why);
        }
        // An order approved with a step-up carries that approval; one that was not may not
        // cross the threshold by waiting, alone or with what went out unapproved meanwhile.
        let threshold = self.step_up_threshold();
        if order.approval != ApprovalState::Approved
            && hits
                .iter()
                .any(|h| h.rule == Rule::LargeOrder && h.verdict == Verdict::StepUp)
        {
            // A bot's order was never the trader's to approve: it needs their sign-off.
            let again = if order.source == OrderSource::Autonomous {
                "Your agent can propose it again for your sign-off."
            } else {
                "Place it again to approve it."
            };
            refusals.push(if notional > threshold {
                format!(
                    "At the current price it is worth {} USDT, above the {} USDT that needs your approval, which it does not have. {again}",
                    plain(notional.round_dp(2)),
                    plain(threshold)
                )
            } else {
                format!(
                    "At the current price it is worth {} USDT; with your orders that went out without an approval since your last one in the past 24 hours ({} USDT), it passes the {} USDT that needs your approval, which it does not have. {again}",
                    plain(notional.round_dp(2)),
                    plain(usage.unapproved_notional.round_dp(2)),
                    plain(threshold)
                )
            });
        }
        if refusals.is_empty() {
            // It goes out now: it counts in today's limit and the unapproved total from this
            // moment, stored before the lock is let go so the next placement sees it.
            self.store.count_from(order.id, now).await?;
            return Ok(None);
        }
        Ok(Some(SendOutcome::Denied(format!(
            "Not sent: checked again at the current price before sending. {}",
            refusals.join(" ")
        ))))
    }
}

impl TradingService {
    /// Why an order a bot placed on its own may no longer go out: its owner turned autonomous
    /// mode off, or its token was revoked (a password change, "sign out everywhere") or ran
    /// out, since it was placed and held. Nobody signed it off, so it needs the bot's standing.
    async fn autonomy_withdrawn(
        &self,
        order: &Order,
        autonomous: bool,
        now: time::OffsetDateTime,
    ) -> Result<Option<String>, TradingError> {
        if !autonomous {
            return Ok(Some(
                "Autonomous mode was turned off after the agent placed it.".into(),
            ));
        }
        let token = match self.store.proposal_for_order(order.owner, order.id).await? {
            Some(proposal) => self
                .store
                .agent_tokens(order.owner)
                .await?
                .into_iter()
                .find(|t| t.id == proposal.token),
            None => None,
        };
        Ok(match token {
            Some(t) if t.revoked_at.is_none() && !t.is_expired(now) => None,
            _ => Some("The agent token that placed it was revoked or has expired since.".into()),
        })
    }
}

/// The audit events of a decision: the order's, and the case opened, the quarantine and the
/// proposal placed with it.
fn decision_audit(
    order: &Order,
    actor: &Actor,
    case: Option<&AnomalyCase>,
    quarantine: Option<risk::TradingState>,
    controls: &UserControls,
    proposal: Option<Uuid>,
    meta: &RequestMeta,
) -> Vec<crate::audit::AuditDraft> {
    let owner = order.owner;
    let venue = order.venue;
    let score = order.anomaly.as_ref().map_or(0.0, |a| a.score);
    let mut audit = vec![
        draft(
            actor.clone(),
            AuditAction::TradeOrderDecided,
            match order.verdict {
                Verdict::Deny => Outcome::Denied,
                _ => Outcome::Success,
            },
            meta,
        )
        .resource(order.id.resource())
        .detail("owner", owner.to_string())
        .detail("source", order.source.as_str())
        .detail("venue", format!("{}/{}", venue.exchange, venue.environment))
        .detail("symbol", order.symbol.clone())
        .detail("side", order.side.as_str())
        .detail("type", order.order_type.as_str())
        .detail("quantity", plain(order.quantity))
        .detail("price", plain(order.reference_price))
        .detail("notional", plain(order.notional))
        .detail("verdict", order.verdict.as_str())
        .detail("approval", order.approval.as_str())
        .detail("status", order.status.as_str())
        .detail("rules", rule_codes(&order.hits))
        .detail("score", format!("{score:.3}")),
    ];
    if let Some(case) = case {
        audit.push(
            draft(
                Actor::system("risk"),
                AuditAction::RiskCaseOpened,
                Outcome::Success,
                meta,
            )
            .resource(case.id.resource())
            .detail("subject", owner.to_string())
            .detail("order", order.id.to_string())
            .detail("score", format!("{:.3}", case.score))
            .detail(
                "features",
                case.evidence
                    .anomaly
                    .top(3)
                    .iter()
                    .map(|c| c.feature.code())
                    .collect::<Vec<_>>()
                    .join(","),
            ),
        );
    }
    // The store rewrites it to the change it applies, or leaves it out when nothing changes.
    if let Some(target) = quarantine {
        audit.push(
            draft(
                Actor::system("risk"),
                AuditAction::RiskTradingStateChanged,
                Outcome::Success,
                meta,
            )
            .resource(format!("user:{owner}"))
            .detail("from", controls.state.as_str())
            .detail("to", controls.state.stricter(target).as_str())
            .detail("reason", "anomaly score above threshold"),
        );
    }
    if let Some(proposal) = proposal {
        audit.push(
            draft(
                Actor::user(owner),
                AuditAction::AgentProposalPlaced,
                Outcome::Success,
                meta,
            )
            .resource(format!("proposal:{proposal}"))
            .detail("order", order.id.to_string())
            .detail(
                "by",
                if order.source == OrderSource::Autonomous {
                    "autonomous"
                } else {
                    "trader"
                },
            ),
        );
    }
    audit
}
