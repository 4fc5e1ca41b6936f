//! Positions and the paper cash balance, derived from fills (the fills are the record; a
//! position is never stored, so it can never disagree with them).

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::Fill;
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

impl Portfolio {
    pub fn from_fills(fills: &[Fill]) -> Self {
        let mut cash = PAPER_STARTING_CASH;
        let mut book: BTreeMap<&str, Position> = BTreeMap::new();
        for fill in fills {
            let notional = fill.quantity * fill.price;
            let position = book
                .entry(fill.symbol.as_str())
                .or_insert_with(|| Position {
                    symbol: fill.symbol.clone(),
                    quantity: Decimal::ZERO,
                    average_cost: Decimal::ZERO,
                    realized_pnl: Decimal::ZERO,
                });
            match fill.side {
                OrderSide::Buy => {
                    cash -= notional;
                    let held = position.quantity * position.average_cost;
                    position.quantity += fill.quantity;
                    if !position.quantity.is_zero() {
                        position.average_cost = ((held + notional) / position.quantity)
                            .round_dp(8)
                            .normalize();
                    }
                }
                OrderSide::Sell => {
                    cash += notional;
                    position.realized_pnl += (fill.price - position.average_cost) * fill.quantity;
                    position.quantity -= fill.quantity;
                    if position.quantity.is_zero() {
                        position.average_cost = Decimal::ZERO;
                    }
                }
            }
        }
        Self {
            cash: cash.normalize(),
            positions: book
                .into_values()
                .filter(|p| !p.quantity.is_zero())
                .map(|mut p| {
                    p.quantity = p.quantity.normalize();
                    p.realized_pnl = p.realized_pnl.normalize();
                    p
                })
                .collect(),
        }
    }

    pub fn quantity(&self, symbol: &str) -> Decimal {
        self.positions
            .iter()
            .find(|p| p.symbol == symbol)
            .map_or(Decimal::ZERO, |p| p.quantity)
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
}
