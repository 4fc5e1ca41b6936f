//! Cancelling orders: the owner's own, and the resting orders a stop (kill switch, halt)
//! takes off the book. A cancel claims the order first, so it never races a sender.

use std::collections::{HashMap, HashSet};

use super::error::{Outage, Refusal, TradingError, audit_or_store};
use super::execution::{SendOutcome, claim_draft};
use super::{HoldKind, Order, OrderId, OrderStatus, TradingService};
use crate::account::UserId;
use crate::audit::{Actor, RequestMeta};
use crate::exchange::{VenueAck, VenueOrderStatus};
use crate::keys::KeyPurpose;
use crate::order::OrderSide;
use crate::risk::TradingState;

impl TradingService {
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
            // Already on its way: asking again would only ask the exchange again.
            OrderStatus::Held if order.hold == Some(HoldKind::Cancelling) => Ok(order),
            OrderStatus::Held => {
                let sent_before = order.sent_before();
                let claim = claim_draft(&order, OrderStatus::Held, Actor::user(owner), &meta);
                if !self
                    .store
                    .claim_order(order.claim_to_cancel(), claim)
                    .await
                    .map_err(audit_or_store)?
                {
                    return Err(Refusal::OrderBusy.into());
                }
                let reason = if sent_before {
                    "Cancelled by you."
                } else {
                    "Cancelled by you before it was sent."
                };
                self.withdraw(order, sent_before, reason.into(), Actor::user(owner), meta)
                    .await
            }
            OrderStatus::Open => {
                self.cancel_open(order, Actor::user(owner), None, meta)
                    .await
            }
            status => Err(Refusal::NotCancellable { status }.into()),
        }
    }

    /// Cancels an `Open` order at its venue on behalf of `actor` (the owner, an admin or the
    /// risk system); `reason`, when given, is shown on the order once the venue confirms.
    pub(super) async fn cancel_open(
        &self,
        order: Order,
        actor: Actor,
        reason: Option<&str>,
        meta: RequestMeta,
    ) -> Result<Order, TradingError> {
        let owner = order.owner;
        let exchange = self
            .exchanges
            .get(order.venue.exchange)
            .cloned()
            .ok_or(Refusal::ExchangeNotEnabled)?;
        // Before the claim: a key that cannot be used leaves the order as it was.
        let credentials = match order.venue.key {
            None => None,
            Some(key) => Some(
                self.vault
                    .use_key(
                        actor.clone(),
                        owner,
                        key,
                        KeyPurpose::Cancel(order.id.to_string()),
                        meta.clone(),
                    )
                    .await
                    .map_err(|e| TradingError::Unavailable(Outage::CancelKey(e)))?
                    .1,
            ),
        };
        let claim = claim_draft(&order, OrderStatus::Open, actor.clone(), &meta);
        if !self
            .store
            .claim_order(order.claim_to_cancel(), claim)
            .await
            .map_err(audit_or_store)?
        {
            return Err(Refusal::OrderChanged.into());
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
                Err(TradingError::Unavailable(Outage::CancelFailed(e)))
            }
        }
    }

    /// Cancels the `which` resting (open) orders of `owner`, or of everyone, at their venues
    /// through the ordinary cancel path; each cancellation is audited. An order that cannot be
    /// cancelled right now (key unusable, venue down, changed meanwhile) stays as it was: the
    /// stop still holds, because nothing new is sent and held orders are cancelled at send
    /// time. Returns how many were cancelled, and how many their exchange did not take off.
    pub(super) async fn cancel_resting(
        &self,
        owner: Option<UserId>,
        which: Resting,
        actor: Actor,
        reason: &str,
        meta: &RequestMeta,
    ) -> Result<StopEffect, TradingError> {
        const PAGE: u64 = 200;
        // An order changed between its read and its claim (a fill recorded meanwhile) is read
        // again and retried, a few times.
        const TRIES: u8 = 3;
        let mut effect = StopEffect::default();
        let mut tried = HashSet::new();
        let mut changed: HashMap<OrderId, u8> = HashMap::new();
        loop {
            let resting = self.store.resting_orders(owner, which.side(), PAGE).await?;
            let fresh: Vec<Order> = resting.into_iter().filter(|o| tried.insert(o.id)).collect();
            if fresh.is_empty() {
                return Ok(effect);
            }
            for order in fresh {
                let id = order.id;
                match self
                    .cancel_open(order, actor.clone(), Some(reason), meta.clone())
                    .await
                {
                    Ok(order) if order.status == OrderStatus::Cancelled => effect.cancelled += 1,
                    // Filled or ended there meanwhile: off the book all the same.
                    Ok(order) if order.status != OrderStatus::Open => {}
                    Err(TradingError::Refused(Refusal::OrderChanged)) => {
                        let times = changed.entry(id).or_default();
                        *times += 1;
                        if *times < TRIES {
                            tried.remove(&id);
                        } else {
                            effect.still_resting += 1;
                        }
                    }
                    // No longer enabled here: nothing can reach it (the operator's to handle).
                    Err(TradingError::Refused(Refusal::ExchangeNotEnabled)) => {}
                    // Its exchange did not take the cancel: the sweep asks again.
                    _ => effect.still_resting += 1,
                }
            }
        }
    }
}

/// What a stop did to the resting orders it covers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StopEffect {
    pub cancelled: usize,
    /// Not taken off yet (the exchange down or refusing, the key unusable): the sweep of open
    /// orders asks their exchange again until it confirms.
    pub still_resting: usize,
}

/// The stops in force, read once per sweep (each owner's controls at most once).
pub(super) struct Stops {
    global_kill: Option<bool>,
    /// Each owner's kill switch and trading state.
    controls: HashMap<UserId, (bool, TradingState)>,
}

impl Stops {
    pub(super) fn new() -> Self {
        Self {
            global_kill: None,
            controls: HashMap::new(),
        }
    }

    /// Why a stop takes `order` off the book, in the words setting that stop gave it.
    pub(super) async fn reason_for(
        &mut self,
        service: &TradingService,
        order: &Order,
    ) -> Result<Option<&'static str>, TradingError> {
        let global_kill = match self.global_kill {
            Some(on) => on,
            None => *self
                .global_kill
                .insert(service.store.global_kill_switch().await?),
        };
        if global_kill {
            return Ok(Some(GLOBAL_KILL_REASON));
        }
        let (kill_switch, state) = match self.controls.get(&order.owner) {
            Some(known) => *known,
            None => {
                let controls = service.store.controls(order.owner).await?;
                let known = (controls.kill_switch, controls.state);
                self.controls.insert(order.owner, known);
                known
            }
        };
        if kill_switch {
            return Ok(Some(USER_KILL_REASON));
        }
        Ok(Resting::cancelled_by(state)
            .filter(|which| which.side().is_none_or(|side| side == order.side))
            .map(Resting::state_reason))
    }
}

/// What each stop says on the resting orders it cancels.
pub(super) const GLOBAL_KILL_REASON: &str = "Cancelled: the kill switch is on.";
pub(super) const USER_KILL_REASON: &str = "Cancelled: an admin stopped your trading.";

/// Which resting orders a stop or a restriction takes off the book.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Resting {
    All,
    /// A buy that fills later would add exposure, which reducing-only forbids.
    Buys,
}

impl Resting {
    /// What moving a trader to `state` cancels: everything when halted, the buys when reducing
    /// only, nothing when active.
    pub(super) fn cancelled_by(state: TradingState) -> Option<Resting> {
        match state {
            TradingState::Halted => Some(Resting::All),
            TradingState::Reducing => Some(Resting::Buys),
            TradingState::Active => None,
        }
    }

    /// Why, as the trader reads it on each cancelled order, when a trading state cancels them.
    pub(super) fn state_reason(self) -> &'static str {
        match self {
            Resting::All => "Cancelled: your trading is halted.",
            Resting::Buys => "Cancelled: your trading is restricted to reducing positions.",
        }
    }

    fn side(self) -> Option<OrderSide> {
        match self {
            Resting::All => None,
            Resting::Buys => Some(OrderSide::Buy),
        }
    }
}
