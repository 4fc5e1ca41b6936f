//! The embedded paper exchange: simulated trading with no real funds, and the default exchange.
//!
//! Prices come from [`PaperPrices`], a pure function of symbol and time. Orders live in memory:
//! market orders fill at once, limit orders fill at once when marketable and otherwise rest
//! until [`PaperExchange::sweep`] finds the price has reached them. A client order id is an
//! idempotency key: placing it again answers with the first order and never trades again.
//!
//! Tests inject outages with [`PaperExchange::set_outage`] and count executions with
//! [`PaperExchange::placements`], through a clone of the exchange the app also holds.

mod prices;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use domain::keys::{
    ApiCredentials, Exchange, ExchangeError, ExchangeName, KeyEnvironment, KeyPermissions,
    OrderType, VenueAck, VenueOrder, VenueOrderStatus,
};
use domain::ports::Clock;
use domain::risk::OrderSide;
use rust_decimal::Decimal;

pub use prices::PaperPrices;

const PAPER_ONLY: &str = "the paper exchange only has a paper environment";
const DOWN: &str = "the paper exchange is down (injected fault)";
const REPLY_LOST: &str = "the paper exchange's reply was lost (injected fault)";

/// An injected fault, for tests of how the server copes with an exchange outage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaperOutage {
    /// Every call fails with `Unreachable` and nothing is recorded.
    Down,
    /// Orders and cancels are carried out, but the call answers `Timeout`: the ambiguous case,
    /// where the caller cannot know whether the exchange acted. Lookups and prices still
    /// answer, which is how the caller finds out.
    LoseReplies,
}

/// The built-in paper exchange. Cheap to clone: clones share the order book and the fault
/// switch.
#[derive(Debug, Clone)]
pub struct PaperExchange {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    clock: Arc<dyn Clock>,
    book: Mutex<Book>,
    outage: Mutex<Option<PaperOutage>>,
}

#[derive(Debug, Default)]
struct Book {
    /// By client order id.
    orders: HashMap<String, PaperOrder>,
    /// How many times each client order id was executed (recorded and matched); stays ≤ 1.
    executions: HashMap<String, u32>,
    /// The last exchange order number handed out.
    sequence: u64,
}

#[derive(Debug, Clone)]
struct PaperOrder {
    order: VenueOrder,
    ack: VenueAck,
}

/// The book is plain data with no invariant a panic could break half-way, so a poisoned lock
/// is still usable.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl PaperExchange {
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            inner: Arc::new(Inner {
                clock,
                book: Mutex::new(Book::default()),
                outage: Mutex::new(None),
            }),
        }
    }

    /// Injects a fault (`None` heals the exchange).
    pub fn set_outage(&self, outage: Option<PaperOutage>) {
        *lock(&self.inner.outage) = outage;
    }

    pub fn outage(&self) -> Option<PaperOutage> {
        *lock(&self.inner.outage)
    }

    /// How many times an order with this client order id was executed. Never more than 1.
    pub fn placements(&self, client_order_id: &str) -> u32 {
        lock(&self.inner.book)
            .executions
            .get(client_order_id)
            .copied()
            .unwrap_or(0)
    }

    /// Forgets the book, as a restart of the process does (the book lives in memory).
    pub fn restart(&self) {
        *lock(&self.inner.book) = Book::default();
    }

    /// The current price of `symbol`, `None` if it is not traded here.
    pub fn current_price(&self, symbol: &str) -> Option<Decimal> {
        PaperPrices::price_at(symbol, self.inner.clock.now())
    }

    /// Fills resting limit orders the current price has reached, at their limit price, and
    /// returns those that changed as (client order id, new state), in the order they were
    /// placed. The matching engine runs whatever the fault switch says.
    pub fn sweep(&self) -> Vec<(String, VenueAck)> {
        let now = self.inner.clock.now();
        let mut book = lock(&self.inner.book);
        let mut changed: Vec<(String, VenueAck)> = book
            .orders
            .iter_mut()
            .filter(|(_, o)| o.ack.status == VenueOrderStatus::Open)
            .filter_map(|(id, o)| {
                let limit = o.order.limit_price?;
                let price = PaperPrices::price_at(&o.order.symbol, now)?;
                if !marketable(o.order.side, limit, price) {
                    return None;
                }
                o.ack.status = VenueOrderStatus::Filled;
                o.ack.filled_quantity = o.order.quantity;
                o.ack.average_price = Some(limit);
                Some((id.clone(), o.ack.clone()))
            })
            .collect();
        drop(book);
        changed.sort_by(|a, b| a.1.exchange_order_id.cmp(&b.1.exchange_order_id));
        for (id, ack) in &changed {
            tracing::debug!(client_order_id = %id, exchange_order_id = %ack.exchange_order_id, "paper limit order filled");
        }
        changed
    }

    /// A resting limit order trades `quantity` more at its limit, as when the other side of a
    /// real book is thin (for tests: the feed itself always fills a reached limit whole). Fills
    /// up to what is left; the whole quantity fills the order. `None` unless the order rests.
    pub fn fill_partly(&self, client_order_id: &str, quantity: Decimal) -> Option<VenueAck> {
        let mut book = lock(&self.inner.book);
        let order = book.orders.get_mut(client_order_id)?;
        if order.ack.status != VenueOrderStatus::Open || quantity <= Decimal::ZERO {
            return None;
        }
        let limit = order.order.limit_price?;
        let filled = (order.ack.filled_quantity + quantity).min(order.order.quantity);
        order.ack.filled_quantity = filled;
        order.ack.average_price = Some(limit);
        if filled == order.order.quantity {
            order.ack.status = VenueOrderStatus::Filled;
        }
        Some(order.ack.clone())
    }

    /// Cancels a resting order. A filled (or already cancelled) order stays as it is and is
    /// returned as such; `None` if the id is unknown. Runs whatever the fault switch says.
    pub fn cancel(&self, client_order_id: &str) -> Option<VenueAck> {
        let mut book = lock(&self.inner.book);
        let order = book.orders.get_mut(client_order_id)?;
        if order.ack.status == VenueOrderStatus::Open {
            order.ack.status = VenueOrderStatus::Cancelled;
        }
        Some(order.ack.clone())
    }

    fn stored(&self, symbol: &str, client_order_id: &str) -> Option<VenueAck> {
        lock(&self.inner.book)
            .orders
            .get(client_order_id)
            .filter(|o| o.order.symbol == symbol)
            .map(|o| o.ack.clone())
    }

    /// Records and matches an order, or answers with the one already placed under its id.
    fn execute(&self, order: &VenueOrder) -> Result<VenueAck, ExchangeError> {
        let mut book = lock(&self.inner.book);
        if let Some(existing) = book.orders.get(&order.client_order_id) {
            return Ok(existing.ack.clone());
        }
        let price =
            PaperPrices::price_at(&order.symbol, self.inner.clock.now()).ok_or_else(|| {
                ExchangeError::Rejected(format!(
                    "{} is not traded on the paper exchange",
                    order.symbol
                ))
            })?;
        if order.quantity <= Decimal::ZERO {
            return Err(ExchangeError::Rejected(
                "the quantity must be more than zero".into(),
            ));
        }
        let fills_now = match order.order_type {
            OrderType::Market => true,
            OrderType::Limit => {
                let limit = order.limit_price.ok_or_else(|| {
                    ExchangeError::Rejected("a limit order needs a limit price".into())
                })?;
                if limit <= Decimal::ZERO {
                    return Err(ExchangeError::Rejected(
                        "the limit price must be more than zero".into(),
                    ));
                }
                marketable(order.side, limit, price)
            }
        };
        book.sequence += 1;
        let ack = if fills_now {
            VenueAck {
                exchange_order_id: format!("paper-{:06}", book.sequence),
                status: VenueOrderStatus::Filled,
                filled_quantity: order.quantity,
                average_price: Some(price),
            }
        } else {
            VenueAck {
                exchange_order_id: format!("paper-{:06}", book.sequence),
                status: VenueOrderStatus::Open,
                filled_quantity: Decimal::ZERO,
                average_price: None,
            }
        };
        let mut order = order.clone();
        if order.order_type == OrderType::Market {
            order.limit_price = None;
        }
        *book
            .executions
            .entry(order.client_order_id.clone())
            .or_insert(0) += 1;
        book.orders.insert(
            order.client_order_id.clone(),
            PaperOrder {
                order,
                ack: ack.clone(),
            },
        );
        Ok(ack)
    }

    /// Fails every call while the exchange is down, and refuses other environments.
    fn reachable(&self, environment: KeyEnvironment) -> Result<Option<PaperOutage>, ExchangeError> {
        let outage = self.outage();
        if outage == Some(PaperOutage::Down) {
            return Err(ExchangeError::Unreachable(DOWN.into()));
        }
        if environment != KeyEnvironment::Paper {
            return Err(ExchangeError::Rejected(PAPER_ONLY.into()));
        }
        Ok(outage)
    }
}

/// A buy fills at or below its limit, a sell at or above.
fn marketable(side: OrderSide, limit: Decimal, price: Decimal) -> bool {
    match side {
        OrderSide::Buy => limit >= price,
        OrderSide::Sell => limit <= price,
    }
}

#[async_trait]
impl Exchange for PaperExchange {
    fn name(&self) -> ExchangeName {
        ExchangeName::Paper
    }

    /// Paper money cannot leave the paper exchange, so every well-formed key (the vault already
    /// validated its form) may read and trade, and none can withdraw.
    async fn key_permissions(
        &self,
        environment: KeyEnvironment,
        _credentials: &ApiCredentials,
    ) -> Result<KeyPermissions, ExchangeError> {
        self.reachable(environment)?;
        Ok(KeyPermissions {
            can_read: true,
            can_trade: true,
            can_withdraw: false,
            ip_restricted: false,
        })
    }

    /// Needs no key. Market orders fill completely at the current price; limit orders fill at
    /// the current price when marketable and rest otherwise.
    async fn place_order(
        &self,
        environment: KeyEnvironment,
        _credentials: Option<&ApiCredentials>,
        order: &VenueOrder,
    ) -> Result<VenueAck, ExchangeError> {
        let outage = self.reachable(environment)?;
        let answer = self.execute(order);
        if outage == Some(PaperOutage::LoseReplies) {
            return Err(ExchangeError::Timeout(REPLY_LOST.into()));
        }
        answer
    }

    async fn find_order(
        &self,
        environment: KeyEnvironment,
        _credentials: Option<&ApiCredentials>,
        symbol: &str,
        client_order_id: &str,
    ) -> Result<Option<VenueAck>, ExchangeError> {
        self.reachable(environment)?;
        Ok(self.stored(symbol, client_order_id))
    }

    async fn cancel_order(
        &self,
        environment: KeyEnvironment,
        _credentials: Option<&ApiCredentials>,
        symbol: &str,
        client_order_id: &str,
    ) -> Result<VenueAck, ExchangeError> {
        let outage = self.reachable(environment)?;
        let answer = match self.stored(symbol, client_order_id) {
            Some(_) => self.cancel(client_order_id).ok_or_else(|| {
                ExchangeError::Rejected("the paper exchange has no such order".into())
            }),
            None => Err(ExchangeError::Rejected(
                "the paper exchange has no such order".into(),
            )),
        };
        if outage == Some(PaperOutage::LoseReplies) {
            return Err(ExchangeError::Timeout(REPLY_LOST.into()));
        }
        answer
    }

    async fn price(
        &self,
        environment: KeyEnvironment,
        symbol: &str,
    ) -> Result<Decimal, ExchangeError> {
        self.reachable(environment)?;
        self.current_price(symbol).ok_or_else(|| {
            ExchangeError::Rejected(format!("{symbol} is not traded on the paper exchange"))
        })
    }
}

#[cfg(test)]
mod tests {
    use secrecy::SecretString;
    use time::OffsetDateTime;
    use time::macros::datetime;

    use super::*;

    /// A clock that stands still until moved.
    #[derive(Debug)]
    struct ManualClock(Mutex<OffsetDateTime>);

    impl ManualClock {
        fn at(at: OffsetDateTime) -> Arc<Self> {
            Arc::new(Self(Mutex::new(at)))
        }

        fn set(&self, at: OffsetDateTime) {
            *self.0.lock().expect("clock") = at;
        }
    }

    impl Clock for ManualClock {
        fn now(&self) -> OffsetDateTime {
            *self.0.lock().expect("clock")
        }
    }

    const START: OffsetDateTime = datetime!(2026-11-23 10:00:00 UTC);

    fn exchange() -> (PaperExchange, Arc<ManualClock>) {
        let clock = ManualClock::at(START);
        (PaperExchange::new(clock.clone()), clock)
    }

    fn credentials() -> ApiCredentials {
        ApiCredentials::parse(
            SecretString::from("paper-key-0001"),
            SecretString::from("paper-secret-0001"),
        )
        .expect("well-formed credentials")
    }

    fn dec(raw: &str) -> Decimal {
        raw.parse().expect("decimal")
    }

    fn market(id: &str, symbol: &str, side: OrderSide, quantity: &str) -> VenueOrder {
        VenueOrder {
            client_order_id: id.into(),
            symbol: symbol.into(),
            side,
            order_type: OrderType::Market,
            quantity: dec(quantity),
            limit_price: None,
        }
    }

    fn limit(
        id: &str,
        symbol: &str,
        side: OrderSide,
        quantity: &str,
        price: Decimal,
    ) -> VenueOrder {
        VenueOrder {
            order_type: OrderType::Limit,
            limit_price: Some(price),
            ..market(id, symbol, side, quantity)
        }
    }

    async fn place(
        exchange: &PaperExchange,
        order: &VenueOrder,
    ) -> Result<VenueAck, ExchangeError> {
        exchange
            .place_order(KeyEnvironment::Paper, None, order)
            .await
    }

    /// The first second after `START` at which the price is below (or above) the start price.
    fn first_move(symbol: &str, down: bool) -> (OffsetDateTime, Decimal) {
        let start = PaperPrices::price_at(symbol, START).expect("traded");
        (1..86_400)
            .map(|s| START + time::Duration::seconds(s))
            .map(|at| (at, PaperPrices::price_at(symbol, at).expect("traded")))
            .find(|(_, p)| if down { *p < start } else { *p > start })
            .expect("the price moves within a day")
    }

    #[tokio::test]
    async fn paper_keys_read_and_trade_but_never_withdraw() {
        let (exchange, _) = exchange();
        assert_eq!(exchange.name(), ExchangeName::Paper);
        let permissions = exchange
            .key_permissions(KeyEnvironment::Paper, &credentials())
            .await
            .expect("paper environment answers");
        assert_eq!(
            permissions,
            KeyPermissions {
                can_read: true,
                can_trade: true,
                can_withdraw: false,
                ip_restricted: false,
            }
        );
    }

    #[tokio::test]
    async fn paper_exchange_rejects_other_environments() {
        let (exchange, _) = exchange();
        let order = market("cp-env", "BTCUSDT", OrderSide::Buy, "1");
        for environment in [KeyEnvironment::Testnet, KeyEnvironment::Live] {
            let err = exchange
                .key_permissions(environment, &credentials())
                .await
                .expect_err("only the paper environment exists");
            assert_eq!(err, ExchangeError::Rejected(PAPER_ONLY.into()));
            let err = exchange
                .place_order(environment, Some(&credentials()), &order)
                .await
                .expect_err("only the paper environment exists");
            assert_eq!(err, ExchangeError::Rejected(PAPER_ONLY.into()));
            assert!(exchange.price(environment, "BTCUSDT").await.is_err());
            assert!(
                exchange
                    .find_order(environment, None, "BTCUSDT", "cp-env")
                    .await
                    .is_err()
            );
        }
        assert_eq!(exchange.placements("cp-env"), 0);
    }

    #[test]
    fn paper_offers_exactly_the_environments_it_answers() {
        assert_eq!(ExchangeName::Paper.environments(), &[KeyEnvironment::Paper]);
    }

    #[tokio::test]
    async fn the_price_is_the_feed_at_the_exchange_clock() {
        let (exchange, clock) = exchange();
        let price = exchange
            .price(KeyEnvironment::Paper, "SOLUSDT")
            .await
            .expect("traded");
        assert_eq!(Some(price), PaperPrices::price_at("SOLUSDT", START));
        let later = START + time::Duration::minutes(7);
        clock.set(later);
        let price = exchange
            .price(KeyEnvironment::Paper, "SOLUSDT")
            .await
            .expect("traded");
        assert_eq!(Some(price), PaperPrices::price_at("SOLUSDT", later));
    }

    #[tokio::test]
    async fn market_orders_fill_completely_at_the_current_price() {
        let (exchange, _) = exchange();
        let ack = place(
            &exchange,
            &market("cp-1", "BTCUSDT", OrderSide::Buy, "0.25"),
        )
        .await
        .expect("filled");
        assert_eq!(
            ack,
            VenueAck {
                exchange_order_id: "paper-000001".into(),
                status: VenueOrderStatus::Filled,
                filled_quantity: dec("0.25"),
                average_price: PaperPrices::price_at("BTCUSDT", START),
            }
        );
        let ack = place(&exchange, &market("cp-2", "ETHUSDT", OrderSide::Sell, "2"))
            .await
            .expect("filled");
        assert_eq!(ack.exchange_order_id, "paper-000002");
        assert_eq!(ack.status, VenueOrderStatus::Filled);
        assert_eq!(
            exchange
                .find_order(KeyEnvironment::Paper, None, "ETHUSDT", "cp-2")
                .await
                .expect("answers"),
            Some(ack)
        );
        assert_eq!(exchange.placements("cp-1"), 1);
        assert_eq!(exchange.placements("cp-2"), 1);
    }

    #[tokio::test]
    async fn marketable_limit_orders_fill_at_the_current_price() {
        let (exchange, _) = exchange();
        let price = PaperPrices::price_at("ETHUSDT", START).expect("traded");
        let buy = limit("cp-b", "ETHUSDT", OrderSide::Buy, "1", price + dec("10"));
        let ack = place(&exchange, &buy).await.expect("filled");
        assert_eq!(ack.status, VenueOrderStatus::Filled);
        assert_eq!(ack.average_price, Some(price));
        let sell = limit("cp-s", "ETHUSDT", OrderSide::Sell, "1", price);
        let ack = place(&exchange, &sell).await.expect("filled");
        assert_eq!(ack.status, VenueOrderStatus::Filled);
        assert_eq!(ack.average_price, Some(price));
    }

    #[tokio::test]
    async fn limit_orders_rest_until_a_sweep_finds_them_marketable() {
        let (exchange, clock) = exchange();
        let (dip_at, dip) = first_move("BTCUSDT", true);
        let (rise_at, rise) = first_move("BTCUSDT", false);
        let buy = limit("cp-buy", "BTCUSDT", OrderSide::Buy, "0.1", dip);
        let sell = limit("cp-sell", "BTCUSDT", OrderSide::Sell, "0.1", rise);
        for order in [&buy, &sell] {
            let ack = place(&exchange, order).await.expect("accepted");
            assert_eq!(ack.status, VenueOrderStatus::Open);
            assert_eq!(ack.filled_quantity, Decimal::ZERO);
            assert_eq!(ack.average_price, None);
        }
        assert!(exchange.sweep().is_empty(), "nothing is marketable yet");

        let (first_at, first_id, first_price, second_at, second_id, second_price) =
            if dip_at < rise_at {
                (dip_at, "cp-buy", dip, rise_at, "cp-sell", rise)
            } else {
                (rise_at, "cp-sell", rise, dip_at, "cp-buy", dip)
            };
        clock.set(first_at);
        let swept = exchange.sweep();
        assert_eq!(swept.len(), 1, "{swept:?}");
        assert_eq!(swept[0].0, first_id);
        assert_eq!(swept[0].1.status, VenueOrderStatus::Filled);
        assert_eq!(swept[0].1.filled_quantity, dec("0.1"));
        assert_eq!(swept[0].1.average_price, Some(first_price));
        assert!(exchange.sweep().is_empty(), "a filled order changes once");

        clock.set(second_at);
        let swept = exchange.sweep();
        assert_eq!(swept.len(), 1, "{swept:?}");
        assert_eq!(swept[0].0, second_id);
        assert_eq!(swept[0].1.average_price, Some(second_price));
        let found = exchange
            .find_order(KeyEnvironment::Paper, None, "BTCUSDT", second_id)
            .await
            .expect("answers");
        assert_eq!(found, Some(swept[0].1.clone()));
        assert_eq!(exchange.placements("cp-buy"), 1);
        assert_eq!(exchange.placements("cp-sell"), 1);
    }

    #[tokio::test]
    async fn placing_the_same_client_order_id_again_answers_with_the_first_order() {
        let (exchange, clock) = exchange();
        let order = market("cp-same", "BTCUSDT", OrderSide::Buy, "0.5");
        let first = place(&exchange, &order).await.expect("filled");
        clock.set(START + time::Duration::minutes(3));
        let again = place(&exchange, &order).await.expect("answered");
        assert_eq!(again, first, "the stored answer, not a second fill");
        // Even with other terms, the id decides.
        let changed = market("cp-same", "BTCUSDT", OrderSide::Sell, "9");
        assert_eq!(place(&exchange, &changed).await.expect("answered"), first);
        assert_eq!(exchange.placements("cp-same"), 1);
        assert_eq!(exchange.placements("cp-never"), 0);
    }

    #[tokio::test]
    async fn unknown_symbols_and_bad_orders_are_refused() {
        let (exchange, _) = exchange();
        let err = place(&exchange, &market("cp-x", "XYZ", OrderSide::Buy, "1"))
            .await
            .expect_err("not traded");
        assert_eq!(
            err,
            ExchangeError::Rejected("XYZ is not traded on the paper exchange".into())
        );
        assert!(!err.is_outage());
        let err = exchange
            .price(KeyEnvironment::Paper, "XYZ")
            .await
            .expect_err("not traded");
        assert_eq!(
            err,
            ExchangeError::Rejected("XYZ is not traded on the paper exchange".into())
        );
        let mut no_price = limit("cp-l", "BTCUSDT", OrderSide::Buy, "1", dec("1"));
        no_price.limit_price = None;
        assert!(matches!(
            place(&exchange, &no_price).await,
            Err(ExchangeError::Rejected(_))
        ));
        assert!(matches!(
            place(&exchange, &market("cp-z", "BTCUSDT", OrderSide::Buy, "0")).await,
            Err(ExchangeError::Rejected(_))
        ));
        assert!(matches!(
            place(
                &exchange,
                &limit("cp-n", "BTCUSDT", OrderSide::Buy, "1", dec("-1"))
            )
            .await,
            Err(ExchangeError::Rejected(_))
        ));
        for id in ["cp-x", "cp-l", "cp-z", "cp-n"] {
            assert_eq!(exchange.placements(id), 0);
        }
    }

    #[tokio::test]
    async fn a_down_exchange_answers_nothing_and_records_nothing() {
        let (exchange, _) = exchange();
        let watcher = exchange.clone();
        watcher.set_outage(Some(PaperOutage::Down));
        assert_eq!(exchange.outage(), Some(PaperOutage::Down));
        let order = market("cp-down", "BTCUSDT", OrderSide::Buy, "1");
        let err = place(&exchange, &order).await.expect_err("down");
        assert_eq!(err, ExchangeError::Unreachable(DOWN.into()));
        assert!(err.is_outage());
        assert!(matches!(
            exchange.price(KeyEnvironment::Paper, "BTCUSDT").await,
            Err(ExchangeError::Unreachable(_))
        ));
        assert!(matches!(
            exchange
                .find_order(KeyEnvironment::Paper, None, "BTCUSDT", "cp-down")
                .await,
            Err(ExchangeError::Unreachable(_))
        ));
        assert!(matches!(
            exchange
                .key_permissions(KeyEnvironment::Paper, &credentials())
                .await,
            Err(ExchangeError::Unreachable(_))
        ));
        assert_eq!(watcher.placements("cp-down"), 0);

        watcher.set_outage(None);
        assert_eq!(
            exchange
                .find_order(KeyEnvironment::Paper, None, "BTCUSDT", "cp-down")
                .await,
            Ok(None),
            "it certainly did not arrive"
        );
        let ack = place(&exchange, &order).await.expect("back up");
        assert_eq!(ack.status, VenueOrderStatus::Filled);
        assert_eq!(watcher.placements("cp-down"), 1);
    }

    #[tokio::test]
    async fn a_lost_reply_still_executes_once_and_a_lookup_finds_it() {
        let (exchange, _) = exchange();
        exchange.set_outage(Some(PaperOutage::LoseReplies));
        let order = market("cp-lost", "SOLUSDT", OrderSide::Buy, "2");
        let err = place(&exchange, &order).await.expect_err("reply lost");
        assert_eq!(err, ExchangeError::Timeout(REPLY_LOST.into()));
        assert!(err.is_outage());
        assert_eq!(exchange.placements("cp-lost"), 1, "it did execute");
        // Sending it again while replies are lost does not execute it again.
        assert!(place(&exchange, &order).await.is_err());
        assert_eq!(exchange.placements("cp-lost"), 1);
        // Lookups answer, which is how the caller resolves the ambiguity.
        let found = exchange
            .find_order(KeyEnvironment::Paper, None, "SOLUSDT", "cp-lost")
            .await
            .expect("lookups answer")
            .expect("it is there");
        assert_eq!(found.status, VenueOrderStatus::Filled);
        exchange.set_outage(None);
        assert_eq!(place(&exchange, &order).await, Ok(found));
        assert_eq!(exchange.placements("cp-lost"), 1);
    }

    #[tokio::test]
    async fn lookups_are_by_symbol_and_client_order_id() {
        let (exchange, _) = exchange();
        place(&exchange, &market("cp-a", "LTCUSDT", OrderSide::Buy, "1"))
            .await
            .expect("filled");
        let find = |symbol: &'static str, id: &'static str| {
            let exchange = exchange.clone();
            async move {
                exchange
                    .find_order(KeyEnvironment::Paper, None, symbol, id)
                    .await
                    .expect("answers")
            }
        };
        assert!(find("LTCUSDT", "cp-a").await.is_some());
        assert!(find("BTCUSDT", "cp-a").await.is_none());
        assert!(find("LTCUSDT", "cp-b").await.is_none());
    }

    #[tokio::test]
    async fn resting_orders_can_be_cancelled_filled_ones_stay_filled() {
        let (exchange, clock) = exchange();
        let (dip_at, dip) = first_move("XRPUSDT", true);
        let resting = limit("cp-rest", "XRPUSDT", OrderSide::Buy, "100", dip);
        assert_eq!(
            place(&exchange, &resting).await.expect("rests").status,
            VenueOrderStatus::Open
        );
        let cancelled = exchange.cancel("cp-rest").expect("known");
        assert_eq!(cancelled.status, VenueOrderStatus::Cancelled);
        assert_eq!(cancelled.filled_quantity, Decimal::ZERO);
        clock.set(dip_at);
        assert!(exchange.sweep().is_empty(), "a cancelled order never fills");
        assert_eq!(exchange.cancel("cp-rest"), Some(cancelled));

        let filled = place(
            &exchange,
            &market("cp-done", "XRPUSDT", OrderSide::Buy, "5"),
        )
        .await
        .expect("filled");
        assert_eq!(exchange.cancel("cp-done"), Some(filled.clone()));
        assert_eq!(
            exchange
                .cancel_order(KeyEnvironment::Paper, None, "XRPUSDT", "cp-done")
                .await,
            Ok(filled)
        );
        assert_eq!(exchange.cancel("cp-unknown"), None);
        assert!(matches!(
            exchange
                .cancel_order(KeyEnvironment::Paper, None, "XRPUSDT", "cp-unknown")
                .await,
            Err(ExchangeError::Rejected(_))
        ));
    }

    #[tokio::test]
    async fn cancel_order_through_the_trait_cancels_a_resting_order() {
        let (exchange, _) = exchange();
        let (_, dip) = first_move("ADAUSDT", true);
        place(
            &exchange,
            &limit("cp-c", "ADAUSDT", OrderSide::Buy, "10", dip),
        )
        .await
        .expect("rests");
        exchange.set_outage(Some(PaperOutage::Down));
        assert!(matches!(
            exchange
                .cancel_order(KeyEnvironment::Paper, None, "ADAUSDT", "cp-c")
                .await,
            Err(ExchangeError::Unreachable(_))
        ));
        exchange.set_outage(None);
        let ack = exchange
            .cancel_order(KeyEnvironment::Paper, None, "ADAUSDT", "cp-c")
            .await
            .expect("cancelled");
        assert_eq!(ack.status, VenueOrderStatus::Cancelled);
    }
}
