//! Positions and the paper cash balance, derived from fills (the fills are the record). A stored
//! [`PaperBook`] is only a replay of the fills up to one of them, so it cannot disagree with them
//! either; reading the account replays the fills recorded after it.

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::{Fill, OrderId};
use crate::order::OrderSide;

/// Every paper account starts with this much quote currency.
pub const PAPER_STARTING_CASH: Decimal = Decimal::from_parts(100_000, 0, 0, false, 0);
pub const QUOTE_CURRENCY: &str = "USDT";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    pub symbol: String,
    pub quantity: Decimal,
    /// Average price paid for the quantity still held.
    pub average_cost: Decimal,
    /// Profit taken by sales so far.
    pub realized_pnl: Decimal,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Portfolio {
    pub cash: Decimal,
    /// Open positions (non-zero quantity), by symbol.
    pub positions: Vec<Position>,
}

/// The paper account after some fills, closed positions included: a symbol bought again keeps
/// the profit its earlier sales took. A snapshot of it lets a read replay only the fills since.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaperBook {
    pub cash: Decimal,
    pub positions: BTreeMap<String, Position>,
}

impl Default for PaperBook {
    fn default() -> Self {
        Self {
            cash: PAPER_STARTING_CASH,
            positions: BTreeMap::new(),
        }
    }
}

impl PaperBook {
    /// One fill, applied in the order fills were recorded.
    pub fn apply(&mut self, symbol: &str, side: OrderSide, quantity: Decimal, price: Decimal) {
        let notional = quantity * price;
        let position = self
            .positions
            .entry(symbol.to_owned())
            .or_insert_with(|| Position {
                symbol: symbol.to_owned(),
                quantity: Decimal::ZERO,
                average_cost: Decimal::ZERO,
                realized_pnl: Decimal::ZERO,
            });
        match side {
            OrderSide::Buy => {
                self.cash -= notional;
                let held = position.quantity * position.average_cost;
                position.quantity += quantity;
                if !position.quantity.is_zero() {
                    position.average_cost = ((held + notional) / position.quantity)
                        .round_dp(8)
                        .normalize();
                }
            }
            OrderSide::Sell => {
                self.cash += notional;
                position.realized_pnl += (price - position.average_cost) * quantity;
                position.quantity -= quantity;
                if position.quantity.is_zero() {
                    position.average_cost = Decimal::ZERO;
                }
            }
        }
    }

    /// The account as shown: cash and the positions still open.
    pub fn portfolio(&self) -> Portfolio {
        Portfolio {
            cash: self.cash.normalize(),
            positions: self
                .positions
                .values()
                .filter(|p| !p.quantity.is_zero())
                .map(|p| Position {
                    quantity: p.quantity.normalize(),
                    realized_pnl: p.realized_pnl.normalize(),
                    ..p.clone()
                })
                .collect(),
        }
    }
}

impl Portfolio {
    /// Replays `fills` (in the order they were recorded) from the starting cash.
    pub fn from_fills(fills: &[Fill]) -> Self {
        let mut book = PaperBook::default();
        for fill in fills {
            book.apply(&fill.symbol, fill.side, fill.quantity, fill.price);
        }
        book.portfolio()
    }

    pub fn quantity(&self, symbol: &str) -> Decimal {
        self.positions
            .iter()
            .find(|p| p.symbol == symbol)
            .map_or(Decimal::ZERO, |p| p.quantity)
    }
}

/// What one live paper order (held, being sent or resting) may still take from the account
/// once it executes: the coins a sell delivers, the cash a buy spends (at the value it was
/// screened at).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub order: OrderId,
    pub symbol: String,
    pub side: OrderSide,
    /// The quantity not executed yet.
    pub quantity: Decimal,
    /// The screened value of that quantity.
    pub value: Decimal,
}

impl Claim {
    /// The part of an order of `quantity`, screened at `notional`, that `filled` has not used.
    pub fn unexecuted(
        order: OrderId,
        symbol: String,
        side: OrderSide,
        quantity: Decimal,
        filled: Decimal,
        notional: Decimal,
    ) -> Claim {
        let left = (quantity - filled).max(Decimal::ZERO);
        // A value that cannot be split counts whole: the stricter reading.
        let value = notional
            .checked_mul(left)
            .and_then(|v| v.checked_div(quantity))
            .unwrap_or(notional);
        Claim {
            order,
            symbol,
            side,
            quantity: left,
            value,
        }
    }
}

/// The paper account with the claims of its live orders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaperAccount {
    pub portfolio: Portfolio,
    pub claims: Vec<Claim>,
}

impl PaperAccount {
    /// What an order may still use: the cash and holdings less what the other live orders
    /// (all but `except`, the order being judged if it is live itself) may take. Judged on
    /// this, orders placed together cannot spend more than the cash or sell more than is held,
    /// so a trader restricted to reducing cannot stack sells into a short.
    pub fn free(&self, except: Option<OrderId>) -> Portfolio {
        let mut free = self.portfolio.clone();
        for claim in self.claims.iter().filter(|c| Some(c.order) != except) {
            match claim.side {
                OrderSide::Buy => free.cash -= claim.value,
                OrderSide::Sell => {
                    match free.positions.iter_mut().find(|p| p.symbol == claim.symbol) {
                        Some(position) => position.quantity -= claim.quantity,
                        None => free.positions.push(Position {
                            symbol: claim.symbol.clone(),
                            quantity: -claim.quantity,
                            average_cost: Decimal::ZERO,
                            realized_pnl: Decimal::ZERO,
                        }),
                    }
                }
            }
        }
        free
    }
}

/// A position valued at the current price, when the venue has one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValuedPosition {
    pub position: Position,
    pub price: Option<Decimal>,
}

impl ValuedPosition {
    pub fn market_value(&self) -> Option<Decimal> {
        self.price.map(|price| price * self.position.quantity)
    }

    pub fn unrealized_pnl(&self) -> Option<Decimal> {
        self.price
            .map(|price| (price - self.position.average_cost) * self.position.quantity)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::account::UserId;
    use crate::trading::OrderId;
    use time::macros::datetime;

    fn fill(side: OrderSide, quantity: &str, price: &str) -> Fill {
        Fill {
            order: OrderId::new_random(),
            owner: UserId(uuid::Uuid::nil()),
            symbol: "BTCUSDT".into(),
            side,
            quantity: quantity.parse().expect("decimal"),
            price: price.parse().expect("decimal"),
            at: datetime!(2026-11-23 12:00 UTC),
        }
    }

    #[test]
    fn buys_and_sells_move_cash_quantity_and_average_cost() {
        let p = Portfolio::from_fills(&[
            fill(OrderSide::Buy, "1", "100"),
            fill(OrderSide::Buy, "1", "200"),
            fill(OrderSide::Sell, "0.5", "300"),
        ]);
        assert_eq!(p.cash, "99850".parse::<Decimal>().expect("decimal"));
        assert_eq!(p.positions.len(), 1);
        assert_eq!(p.quantity("BTCUSDT"), "1.5".parse::<Decimal>().expect("d"));
        assert_eq!(p.positions[0].average_cost, Decimal::from(150));
        assert_eq!(p.positions[0].realized_pnl, Decimal::from(75));
    }

    #[test]
    fn a_closed_position_disappears_and_an_empty_account_has_the_starting_cash() {
        assert_eq!(Portfolio::from_fills(&[]).cash, PAPER_STARTING_CASH);
        let p = Portfolio::from_fills(&[
            fill(OrderSide::Buy, "2", "10"),
            fill(OrderSide::Sell, "2", "12"),
        ]);
        assert!(p.positions.is_empty());
        assert_eq!(p.cash, Decimal::from(100_004));
    }

    fn claim(side: OrderSide, symbol: &str, quantity: &str, filled: &str, notional: &str) -> Claim {
        Claim::unexecuted(
            OrderId::new_random(),
            symbol.into(),
            side,
            dec(quantity),
            dec(filled),
            dec(notional),
        )
    }

    fn dec(raw: &str) -> Decimal {
        raw.parse().expect("decimal")
    }

    #[test]
    fn live_orders_take_what_they_may_still_execute_from_the_free_cash_and_holdings() {
        let portfolio = Portfolio::from_fills(&[fill(OrderSide::Buy, "2", "10")]);
        let partly_filled_sell = claim(OrderSide::Sell, "BTCUSDT", "1.5", "0.5", "30");
        assert_eq!(partly_filled_sell.quantity, dec("1.0"));
        let buy = claim(OrderSide::Buy, "ETHUSDT", "4", "1", "400");
        assert_eq!(buy.value, dec("300"));
        let short = claim(OrderSide::Sell, "ETHUSDT", "3", "0", "300");
        let account = PaperAccount {
            portfolio: portfolio.clone(),
            claims: vec![partly_filled_sell.clone(), buy.clone(), short.clone()],
        };
        let free = account.free(None);
        assert_eq!(free.quantity("BTCUSDT"), dec("1"));
        assert_eq!(free.quantity("ETHUSDT"), dec("-3"));
        assert_eq!(free.cash, portfolio.cash - dec("300"));
        // The order being judged does not claim against itself.
        let free = account.free(Some(partly_filled_sell.order));
        assert_eq!(free.quantity("BTCUSDT"), dec("2"));
        assert_eq!(account.free(Some(buy.order)).cash, portfolio.cash);
        // An overfilled order claims nothing; a zero quantity cannot divide its value.
        assert_eq!(
            claim(OrderSide::Sell, "BTCUSDT", "1", "2", "10").quantity,
            Decimal::ZERO
        );
        assert_eq!(
            claim(OrderSide::Buy, "BTCUSDT", "0", "0", "10").value,
            dec("10")
        );
    }

    #[test]
    fn a_book_resumed_from_its_stored_form_at_any_fill_ends_as_a_full_replay() {
        // Closed and bought again (realized profit carries over), partial sales, a second
        // symbol, and amounts whose scale must survive storage.
        let fills = [
            fill(OrderSide::Buy, "2", "10"),
            fill(OrderSide::Sell, "2", "12.50"),
            fill(OrderSide::Buy, "1.000", "11"),
            fill(OrderSide::Buy, "3", "13.3"),
            fill(OrderSide::Sell, "0.5", "14"),
        ];
        let mut other = fill(OrderSide::Buy, "0.25", "2000");
        other.symbol = "ETHUSDT".into();
        let mut fills = fills.to_vec();
        fills.insert(2, other);
        let whole = Portfolio::from_fills(&fills);
        for split in 0..=fills.len() {
            let mut book = PaperBook::default();
            for f in &fills[..split] {
                book.apply(&f.symbol, f.side, f.quantity, f.price);
            }
            let stored = serde_json::to_string(&book).expect("stored");
            let mut resumed: PaperBook = serde_json::from_str(&stored).expect("read back");
            assert_eq!(resumed, book, "split {split}");
            for f in &fills[split..] {
                resumed.apply(&f.symbol, f.side, f.quantity, f.price);
            }
            assert_eq!(resumed.portfolio(), whole, "split {split}");
        }
        let btc = whole.positions.iter().find(|p| p.symbol == "BTCUSDT");
        assert_eq!(btc.map(|p| p.realized_pnl), Some(Decimal::new(56375, 4)));
    }
}
