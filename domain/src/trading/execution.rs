//! Sending orders and what the exchanges answer: the first send, retries of held orders once
//! their exchange is back (claimed first, so exactly one sender sends), the owner's approval of
//! a held order, and the sweep that asks exchanges about resting orders. The same client order
//! id is reused on every attempt, so an order is never executed twice.

use std::sync::Arc;

use rust_decimal::Decimal;
use time::Duration;

use super::breaker::Gate;
use super::cancellation::Stops;
use super::error::{Conflict, Outage, Refusal, TradingError, audit_or_store};
use super::placement::moved_too_far;
use super::service::{draft, paused_reason, paused_until, plain};
use super::{
    ApprovalState, Fill, HoldKind, Order, OrderId, OrderStatus, OrderUpdate, TradingService,
};
use crate::account::UserId;
use crate::audit::{Actor, AuditDraft, Outcome, RequestMeta};
use crate::audit_action::AuditAction;
use crate::exchange::{
    Exchange, ExchangeError, ExchangeName, VenueAck, VenueOrder, VenueOrderStatus,
};
use crate::keys::{KeyId, KeyPurpose, KeyVaultError};
use crate::order::{OrderTerms, OrderType};
use crate::risk::{TradingState, market_bound};
use crate::stepup::{OrderIntent, OrderToApprove};

/// Every order in one status (and hold kind), a page at a time, oldest first: a job's run
/// reaches the newest orders too, whatever the oldest ones are waiting for.
struct OrderPages {
    status: OrderStatus,
    hold: Option<HoldKind>,
    after: Option<(time::OffsetDateTime, OrderId)>,
    done: bool,
}

impl OrderPages {
    const SIZE: u64 = 200;

    fn new(status: OrderStatus, hold: Option<HoldKind>) -> Self {
        Self {
            status,
            hold,
            after: None,
            done: false,
        }
    }

    /// The next page; empty once every order was read.
    async fn next(&mut self, service: &TradingService) -> Result<Vec<Order>, TradingError> {
        if self.done {
            return Ok(Vec::new());
        }
        let page = service
            .store
            .orders_in_status(self.status, self.hold, self.after, Self::SIZE)
            .await?;
        self.done = (page.len() as u64) < Self::SIZE;
        if let Some(last) = page.last() {
            self.after = Some((last.created_at, last.id));
        }
        Ok(page)
    }
}

/// What became of an attempt to send (or cancel) an order.
pub(super) enum SendOutcome {
    Answered(VenueAck),
    Held(String),
    Cancelled(String),
    /// Judged again before sending and refused: never sent.
    Denied(String),
    /// To be cancelled, but its exchange (which may have it) could not be asked yet: held,
    /// never sent again, and asked again by the retry job.
    CancelPending(String),
}

/// The audit event of a claim: `order` leaves `from` to be sent (or cancelled) by `actor`.
pub(super) fn claim_draft(
    order: &Order,
    from: OrderStatus,
    actor: Actor,
    meta: &RequestMeta,
) -> AuditDraft {
    draft(
        actor,
        AuditAction::TradeOrderClaimed,
        Outcome::Success,
        meta,
    )
    .resource(order.id.resource())
    .detail("owner", order.owner.to_string())
    .detail("client_order_id", order.client_order_id.clone())
    .detail("from", from.as_str())
    .detail("attempt", order.attempts.saturating_add(1))
}

/// The order as the exchange gets it; the same on every attempt.
pub(super) fn venue_order(order: &Order) -> VenueOrder {
    VenueOrder {
        client_order_id: order.client_order_id.clone(),
        symbol: order.symbol.clone(),
        side: order.side,
        order_type: order.order_type,
        quantity: order.quantity,
        limit_price: match order.order_type {
            OrderType::Limit => order.limit_price,
            OrderType::Market => Some(market_bound(order.side, judged_price(order))),
        },
    }
}

/// The price a market order's value was judged at: the higher of the price its owner saw and
/// the venue's quote (`risk::screening_price`), which its notional holds.
fn judged_price(order: &Order) -> Decimal {
    order
        .notional
        .checked_div(order.quantity)
        .map_or(order.reference_price, |price| price.normalize())
}

/// How long an order may stay `submitting` before it is taken for stranded: far longer than a
/// send takes (the exchange clients give up within seconds), so a live sender is never overtaken.
pub const STRANDED_AFTER: Duration = Duration::minutes(2);

const STRANDED_REASON: &str = "The server stopped while sending this order. It is checked with \
     the exchange and sent at most once: if the exchange has it, its answer is recorded here.";

/// The reason a retried cancel records: the owner's or the stop's own reason was shown when it
/// was asked for.
const CANCEL_CONFIRMED: &str = "Cancelled as requested.";

/// How often a pending cancel is asked again (each time writes its claim and outcome).
const CANCEL_ASKED_EVERY: Duration = Duration::seconds(30);

fn cancel_pending(exchange: ExchangeName, why: &str) -> SendOutcome {
    SendOutcome::CancelPending(format!(
        "Cancel requested, not confirmed yet: {why}. The order will not be sent again; {} is \
         asked again, and the order is cancelled there if it has it.",
        exchange.label()
    ))
}

fn rejected(why: &str) -> SendOutcome {
    SendOutcome::Answered(VenueAck {
        exchange_order_id: String::new(),
        status: VenueOrderStatus::Rejected(why.to_owned()),
        filled_quantity: Decimal::ZERO,
        average_price: None,
    })
}

impl TradingService {
    /// Sends a `Submitting` order. On a retry, first asks the exchange whether an earlier,
    /// unanswered attempt arrived: the same client order id is never executed twice.
    pub(super) async fn send(
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
                Err(KeyVaultError::Unusable) if retry => {
                    // Suspended since the last send: it places nothing more, but the exchange
                    // may have this order already.
                    return self
                        .look_up_before_rejecting(order, exchange, key, actor, meta)
                        .await;
                }
                Err(KeyVaultError::KmsUnavailable) => {
                    // Not sent: if the gate let it through as the venue's probe, the next
                    // order probes instead.
                    self.breakers
                        .abandon_probe((venue.exchange, venue.environment), self.now());
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
                    self.breakers
                        .abandon_probe((venue.exchange, venue.environment), self.now());
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
                    self.breakers
                        .abandon_probe((venue.exchange, venue.environment), self.now());
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
                // It answered: the venue is up (a probe that ends here closes the breaker).
                self.breakers.succeeded(venue_key);
                rejected(&why)
            }
            Err(other) => rejected(&other.to_string()),
        };
        self.settle(order, outcome, actor, meta).await
    }

    /// A held order whose earlier send went unanswered, on a key that may no longer place
    /// orders: the exchange is asked (a look-up, which a suspended key may do) and what it has
    /// is recorded; an order it never got is rejected.
    async fn look_up_before_rejecting(
        &self,
        order: Order,
        exchange: Arc<dyn Exchange>,
        key: KeyId,
        actor: Actor,
        meta: RequestMeta,
    ) -> Result<Order, TradingError> {
        let venue = (order.venue.exchange, order.venue.environment);
        let purpose = KeyPurpose::Lookup(order.id.to_string());
        let still_held = |why: &str| {
            SendOutcome::Held(format!(
                "{why}; the order stays held and {} is asked about it again.",
                order.venue.exchange.label()
            ))
        };
        let outcome = match self
            .vault
            .use_key(actor.clone(), order.owner, key, purpose, meta.clone())
            .await
        {
            Ok((_, credentials)) => match exchange
                .find_order(
                    order.venue.environment,
                    Some(&credentials),
                    &order.symbol,
                    &order.client_order_id,
                )
                .await
            {
                Ok(found) => {
                    self.breakers.succeeded(venue);
                    match found {
                        Some(ack) => SendOutcome::Answered(ack),
                        None => rejected(
                            "The key can no longer place orders, and the exchange never got this one.",
                        ),
                    }
                }
                Err(e) if e.is_outage() => {
                    self.breakers.failed(venue, self.now());
                    still_held(&format!(
                        "{} could not be asked whether it has this order",
                        order.venue.exchange.label()
                    ))
                }
                Err(e) => {
                    self.breakers.abandon_probe(venue, self.now());
                    rejected(&e.to_string())
                }
            },
            // Passing failures: the exchange may still have the order, so it stays held.
            Err(KeyVaultError::KmsUnavailable) => {
                self.breakers.abandon_probe(venue, self.now());
                still_held("The key service is unavailable")
            }
            Err(KeyVaultError::AuditUnavailable) => {
                self.breakers.abandon_probe(venue, self.now());
                still_held("The audit log was unavailable")
            }
            Err(e) => {
                self.breakers.abandon_probe(venue, self.now());
                rejected(&format!("The key could not be used: {e}."))
            }
        };
        self.settle(order, outcome, actor, meta).await
    }

    /// Cancels a claimed held order. One never sent is cancelled here; one whose earlier send
    /// went unanswered (`sent_before`) may be at its exchange, which is asked first (see
    /// [`Self::cancel_unanswered`]), unless the venue is paused: then the cancel waits.
    pub(super) async fn withdraw(
        &self,
        order: Order,
        sent_before: bool,
        reason: String,
        actor: Actor,
        meta: RequestMeta,
    ) -> Result<Order, TradingError> {
        if !sent_before {
            return self
                .settle(order, SendOutcome::Cancelled(reason), actor, meta)
                .await;
        }
        let exchange = order.venue.exchange;
        if let Gate::Paused(until) = self
            .breakers
            .gate((exchange, order.venue.environment), self.now())
        {
            let why = paused_until(exchange, until);
            return self
                .settle(order, cancel_pending(exchange, &why), actor, meta)
                .await;
        }
        self.cancel_unanswered(order, reason, actor, meta).await
    }

    /// Cancels a claimed held order whose earlier send went unanswered. Its exchange may have
    /// it, so it is asked first: an order resting there is cancelled there, one it filled or
    /// ended is recorded as it says, and only one it never got is cancelled in our records
    /// alone. While the exchange, the key service or the audit log cannot be asked (an outage,
    /// which passes), the order stays held with the cancel pending: never sent again, and the
    /// retry job asks again. What will not pass (the exchange refuses to answer, the key is
    /// unusable) ends it here, with the reason, rather than asking forever.
    async fn cancel_unanswered(
        &self,
        order: Order,
        reason: String,
        actor: Actor,
        meta: RequestMeta,
    ) -> Result<Order, TradingError> {
        let name = order.venue.exchange;
        let label = name.label();
        let venue = (name, order.venue.environment);
        let unconfirmed = |why: String| {
            SendOutcome::Cancelled(format!(
                "{reason} {why}, so it could not be checked whether {label} got this order: \
                 check your account there."
            ))
        };
        let Some(exchange) = self.exchanges.get(name).cloned() else {
            self.breakers.abandon_probe(venue, self.now());
            let outcome = unconfirmed(format!("{label} is no longer enabled"));
            return self.settle(order, outcome, actor, meta).await;
        };
        let credentials = match order.venue.key {
            None => None,
            Some(key) => match self
                .vault
                .use_key(
                    actor.clone(),
                    order.owner,
                    key,
                    KeyPurpose::Cancel(order.id.to_string()),
                    meta.clone(),
                )
                .await
            {
                Ok((_, credentials)) => Some(credentials),
                Err(e) => {
                    self.breakers.abandon_probe(venue, self.now());
                    let outcome = match e {
                        KeyVaultError::KmsUnavailable => {
                            cancel_pending(name, "the key service is unavailable")
                        }
                        KeyVaultError::AuditUnavailable => {
                            cancel_pending(name, "the audit log was unavailable")
                        }
                        other => unconfirmed(format!("Its key could not be used ({other})")),
                    };
                    return self.settle(order, outcome, actor, meta).await;
                }
            },
        };
        let env = order.venue.environment;
        let found = exchange
            .find_order(
                env,
                credentials.as_ref(),
                &order.symbol,
                &order.client_order_id,
            )
            .await;
        let outcome = match found {
            Ok(None) => {
                self.breakers.succeeded(venue);
                SendOutcome::Cancelled(format!("{reason} {label} confirmed it never got it."))
            }
            Ok(Some(resting)) if resting.status == VenueOrderStatus::Open => match exchange
                .cancel_order(
                    env,
                    credentials.as_ref(),
                    &order.symbol,
                    &order.client_order_id,
                )
                .await
            {
                Ok(done) => {
                    self.breakers.succeeded(venue);
                    match done.status {
                        // Accepted, not yet done (Binance's PENDING_CANCEL): asked again.
                        VenueOrderStatus::Open => {
                            cancel_pending(name, &format!("{label} has not confirmed it yet"))
                        }
                        VenueOrderStatus::Cancelled
                            if done.filled_quantity == order.filled_quantity =>
                        {
                            SendOutcome::Cancelled(format!(
                                "{reason} It had reached {label}, and was cancelled there."
                            ))
                        }
                        _ => SendOutcome::Answered(done),
                    }
                }
                Err(e) if e.is_outage() => {
                    self.breakers.failed(venue, self.now());
                    cancel_pending(
                        name,
                        &format!("{label} has it, but did not cancel it ({e})"),
                    )
                }
                // Refused: it rests there, recorded as open (where its owner sees it and can
                // cancel it, and the sweep follows it); the caller hears why.
                Err(e) => {
                    self.breakers.succeeded(venue);
                    drop(credentials);
                    self.settle(order, SendOutcome::Answered(resting), actor, meta)
                        .await?;
                    return Err(TradingError::Unavailable(Outage::CancelFailed(e)));
                }
            },
            // Filled, cancelled or rejected there: recorded as the exchange says.
            Ok(Some(ended)) => {
                self.breakers.succeeded(venue);
                SendOutcome::Answered(ended)
            }
            Err(e) if e.is_outage() => {
                self.breakers.failed(venue, self.now());
                cancel_pending(
                    name,
                    &format!("{label} could not be asked whether it has this order ({e})"),
                )
            }
            Err(e) => {
                self.breakers.abandon_probe(venue, self.now());
                unconfirmed(format!("{label} refused to answer ({e})"))
            }
        };
        drop(credentials);
        self.settle(order, outcome, actor, meta).await
    }

    pub(super) async fn settle(
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
                    // A market order ends here when the book had too little at or better
                    // than its bound (`risk::market_bound`).
                    VenueOrderStatus::Cancelled if order.order_type == OrderType::Market => (
                        OrderStatus::Cancelled,
                        Some(format!(
                            "Expired: the exchange offered too little within this order's \
                             price bound ({}, from the price it was checked at). Any part \
                             filled within it is kept.",
                            plain(market_bound(order.side, judged_price(&order)))
                        )),
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
                    OrderStatus::Rejected => AuditAction::TradeOrderRejected,
                    OrderStatus::Filled => AuditAction::TradeOrderFilled,
                    OrderStatus::Cancelled => AuditAction::TradeOrderCancelled,
                    _ => AuditAction::TradeOrderAccepted,
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
                AuditAction::TradeOrderHeld,
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
                AuditAction::TradeOrderDenied,
            ),
            SendOutcome::CancelPending(reason) => (
                OrderUpdate {
                    status: OrderStatus::Held,
                    hold: Some(HoldKind::Cancelling),
                    status_reason: Some(reason),
                    filled_quantity: order.filled_quantity,
                    average_price: order.average_price,
                    exchange_order_id: order.exchange_order_id.clone(),
                },
                None,
                AuditAction::TradeOrderHeld,
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
                AuditAction::TradeOrderCancelled,
            ),
        };
        let draft = draft(
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

    /// Finds orders left `submitting` by a server that stopped between recording and sending
    /// them (a crash, a kill -9): nobody knows whether their exchange got them. Each is held for
    /// its exchange, and [`Self::retry_held`] then asks the exchange by the client order id
    /// before sending anything: one that arrived is settled with the exchange's answer, one that
    /// did not is judged again at the current price and sent once. Returns how many it found.
    pub async fn recover_stranded(&self) -> Result<usize, TradingError> {
        let stranded_before = self.now() - STRANDED_AFTER;
        let mut pages = OrderPages::new(OrderStatus::Submitting, None);
        let mut recovered = 0;
        loop {
            let submitting = pages.next(self).await?;
            if submitting.is_empty() {
                return Ok(recovered);
            }
            for order in submitting {
                if order.updated_at < stranded_before && self.recover(order).await? {
                    recovered += 1;
                }
            }
        }
    }

    /// One order of [`Self::recover_stranded`]: whether it was held (or its cancel marked).
    async fn recover(&self, order: Order) -> Result<bool, TradingError> {
        // A retried cancel keeps its mark while claimed: it stays a cancel, never a send.
        let outcome = if order.hold == Some(HoldKind::Cancelling) {
            cancel_pending(
                order.venue.exchange,
                "the server stopped while cancelling this order",
            )
        } else {
            SendOutcome::Held(STRANDED_REASON.into())
        };
        match self
            .settle(
                order,
                outcome,
                Actor::system("trading"),
                RequestMeta::default(),
            )
            .await
        {
            Ok(_) => Ok(true),
            // Its sender answered meanwhile, or another server took it first.
            Err(TradingError::NotFound) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Sends orders held for an exchange outage (or released by a reviewer) once their
    /// exchange's breaker lets them through, and asks it about those whose cancel is pending
    /// (cancelling them there, never sending them). Each order is claimed first, so two servers
    /// (or two runs) never act on the same order. Returns how many were sent.
    pub async fn retry_held(&self) -> Result<usize, TradingError> {
        let mut sent = 0;
        // Cancels first: they only ever take orders off an exchange.
        for hold in [HoldKind::Cancelling, HoldKind::Exchange] {
            let mut pages = OrderPages::new(OrderStatus::Held, Some(hold));
            loop {
                let held = pages.next(self).await?;
                if held.is_empty() {
                    break;
                }
                for order in held {
                    if self.retry_one(order).await? {
                        sent += 1;
                    }
                }
            }
        }
        Ok(sent)
    }

    /// One order of [`Self::retry_held`]: whether it was sent.
    async fn retry_one(&self, order: Order) -> Result<bool, TradingError> {
        let now = self.now();
        let cancelling = order.hold == Some(HoldKind::Cancelling);
        if cancelling && order.updated_at + CANCEL_ASKED_EVERY > now {
            // Asked moments ago (the key service was out, or the exchange had not
            // confirmed): not again on every tick.
            return Ok(false);
        }
        if let Gate::Paused(_) = self
            .breakers
            .gate((order.venue.exchange, order.venue.environment), now)
        {
            return Ok(false);
        }
        let venue = (order.venue.exchange, order.venue.environment);
        // Trading state and kill switches apply at send time too; known before the claim,
        // so that an order a stop cancels is claimed as a cancel.
        let blocked = if cancelling {
            None
        } else {
            match self.blocked_at_send(order.owner).await {
                Ok(blocked) => blocked,
                Err(e) => {
                    self.breakers.abandon_probe(venue, now);
                    return Err(e);
                }
            }
        };
        let claim = claim_draft(
            &order,
            OrderStatus::Held,
            Actor::system("trading"),
            &RequestMeta::default(),
        );
        let to_claim = if cancelling || blocked.is_some() {
            order.claim_to_cancel()
        } else {
            order.claim_to_send()
        };
        match self.store.claim_order(to_claim, claim).await {
            Ok(true) => {}
            Ok(false) => {
                self.breakers.abandon_probe(venue, now);
                return Ok(false);
            }
            Err(e) => {
                // Not claimed without its audit event: the order stays held.
                self.breakers.abandon_probe(venue, now);
                return Err(e.into());
            }
        }
        let sent_before = order.sent_before();
        let mut order = order;
        order.attempts += 1;
        order.status = OrderStatus::Submitting;
        let cancelled = if cancelling {
            self.cancel_unanswered(
                order,
                CANCEL_CONFIRMED.into(),
                Actor::system("trading"),
                RequestMeta::default(),
            )
            .await
        } else if let Some(reason) = blocked {
            self.breakers.abandon_probe(venue, now);
            self.withdraw(
                order,
                sent_before,
                reason,
                Actor::system("trading"),
                RequestMeta::default(),
            )
            .await
        } else {
            // It waited: the price (and the limits) may have moved since it was screened.
            self.send_checked(
                order,
                Actor::system("trading"),
                sent_before,
                true,
                RequestMeta::default(),
            )
            .await?;
            return Ok(true);
        };
        match cancelled {
            // A cancel the exchange refused: recorded as resting there, with the rest of
            // the run still to do.
            Ok(_) | Err(TradingError::Unavailable(Outage::CancelFailed(_))) => {}
            Err(e) => return Err(e),
        }
        Ok(false)
    }

    pub(super) async fn blocked_at_send(
        &self,
        owner: UserId,
    ) -> Result<Option<String>, TradingError> {
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
        let mut changed = 0;
        let mut stops = Stops::new();
        // Every open order: a stop covers the newest as well as the oldest.
        let mut pages = OrderPages::new(OrderStatus::Open, None);
        loop {
            let open = pages.next(self).await?;
            if open.is_empty() {
                return Ok(changed);
            }
            changed += self.refresh_page(open, &mut stops).await?;
        }
    }

    /// One page of [`TradingService::refresh_open`]; returns how many orders changed.
    async fn refresh_page(
        &self,
        open: Vec<Order>,
        stops: &mut Stops,
    ) -> Result<usize, TradingError> {
        let mut changed = 0;
        for order in open {
            let Some(exchange) = self.exchanges.get(order.venue.exchange).cloned() else {
                continue;
            };
            if order.venue.key.is_some() && !self.keyed_checks.due(order.id, self.now()) {
                continue;
            }
            // A stop set while the exchange could not take the order off (down, refusing) is
            // applied here, once the order is looked up and still rests there.
            let stop = stops.reason_for(self, &order).await?;
            let credentials = match order.venue.key {
                None => None,
                Some(key) => {
                    match self
                        .vault
                        .use_key(
                            Actor::system("trading"),
                            order.owner,
                            key,
                            KeyPurpose::Lookup(order.id.to_string()),
                            RequestMeta::default(),
                        )
                        .await
                    {
                        Ok((_, credentials)) => Some(credentials),
                        // Revoked, KMS down: the order stays as it is, checked later.
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
                    if let Some(reason) = stop {
                        // A stop forbids it on the book, where it no longer is: ended here.
                        let claim = claim_draft(
                            &order,
                            OrderStatus::Open,
                            Actor::system("risk"),
                            &RequestMeta::default(),
                        );
                        if self
                            .store
                            .claim_order(order.claim_to_cancel(), claim)
                            .await?
                        {
                            self.settle(
                                order,
                                SendOutcome::Cancelled(reason.to_owned()),
                                Actor::system("risk"),
                                RequestMeta::default(),
                            )
                            .await?;
                            changed += 1;
                        }
                        continue;
                    }
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
                if let Some(reason) = stop {
                    // Asked again each round until the exchange confirms; meanwhile its fills
                    // are still recorded (the branch below).
                    match self
                        .cancel_open(
                            order,
                            Actor::system("risk"),
                            Some(reason),
                            RequestMeta::default(),
                        )
                        .await
                    {
                        Ok(_) => changed += 1,
                        Err(TradingError::Unavailable(_) | TradingError::Refused(_)) => {}
                        Err(e) => return Err(e),
                    }
                }
                continue;
            }
            let claim = claim_draft(
                &order,
                OrderStatus::Open,
                Actor::system("trading"),
                &RequestMeta::default(),
            );
            if !self.store.claim_order(order.claim_to_send(), claim).await? {
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
            return Err(Refusal::NotAwaitingApproval.into());
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
        // The approval commits to the price its owner saw: after a long review, a market order
        // whose price moved is refused here, before the approval is spent (and the order stays
        // as it is, to be cancelled and placed again at the current price).
        if order.order_type == OrderType::Market
            && let Ok(current) = self.venue_price(order.venue, &order.symbol).await
            && moved_too_far(order.reference_price, current)
        {
            return Err(Refusal::PriceMoved {
                symbol: order.symbol,
                from: order.reference_price,
                to: current,
            }
            .into());
        }
        self.spend_approval(&intent, &meta).await?;
        let now = self.now();
        let draft = draft(
            Actor::user(owner),
            AuditAction::TradeHeldOrderApproved,
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
            return Err(TradingError::Conflict(Conflict::OrderChanged));
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
        // Known before the claim, so that an order a stop cancels is claimed as a cancel.
        let blocked = match self.blocked_at_send(owner).await {
            Ok(blocked) => blocked,
            Err(e) => {
                self.breakers.abandon_probe(venue, now);
                return Err(e);
            }
        };
        let claim = claim_draft(&order, OrderStatus::Held, Actor::user(owner), &meta);
        let to_claim = if blocked.is_some() {
            order.claim_to_cancel()
        } else {
            order.claim_to_send()
        };
        let claimed = self.store.claim_order(to_claim, claim).await;
        if !matches!(claimed, Ok(true)) {
            self.breakers.abandon_probe(venue, now);
        }
        if !claimed.map_err(audit_or_store)? {
            return self.order(owner, id).await;
        }
        let sent_before = order.sent_before();
        order.attempts += 1;
        order.status = OrderStatus::Submitting;
        if let Some(reason) = blocked {
            self.breakers.abandon_probe(venue, now);
            return self
                .withdraw(order, sent_before, reason, Actor::user(owner), meta)
                .await;
        }
        // It waited for review: judged again at the current price before it is sent.
        self.send_checked(order, Actor::user(owner), sent_before, true, meta)
            .await
    }
}
