//! The one place that decides which price the rules judge an order at: the value it can really
//! execute at, never a number the client chose that the exchange will ignore.
//!
//! - A **market** order executes at the market: it needs a fresh quote, and is judged at the
//!   higher of that quote and the one the trader saw (the drift allowed between the two may not
//!   carry an order under a limit or the step-up threshold).
//! - A **buy limit** executes at its limit or lower, so the limit bounds its value.
//! - A **sell limit** executes at its limit or higher: a sell limit below the market fills at
//!   once at the market price, so it is judged at the higher of its limit and the quote, and it
//!   needs a quote to be judged at all.
//! - A limit more than [`MAX_LIMIT_THROUGH_QUOTE`] through the quote (a buy far above it, a sell
//!   far below it) is refused: it would trade at once at a price far from the one written on it,
//!   which is a fat finger or an attempt to slip a large order past the value checks.

use rust_decimal::Decimal;

use super::OrderSide;

/// How far (relative, 5 %) a limit may be on the marketable side of the current quote. Enough
/// for an aggressive limit that must fill in a fast market; beyond it, the written price says
/// nothing about what the order will trade at, so the order is refused rather than "treated as
/// market": the trader should see the price it would really trade at before sending it.
pub const MAX_LIMIT_THROUGH_QUOTE: Decimal = Decimal::from_parts(5, 0, 0, false, 2);

/// Why an order cannot be given a screening price.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PriceRefusal {
    /// The order's value depends on the market price and there is no fresh quote.
    NoQuote,
    /// A limit more than [`MAX_LIMIT_THROUGH_QUOTE`] through the quote.
    LimitThroughQuote {
        side: OrderSide,
        limit: Decimal,
        quote: Decimal,
    },
}

/// The price the rules (per-order and daily limits, step-up threshold, autonomous cap, anomaly
/// score, paper balance) judge an order at.
///
/// `limit` is `None` for a market order. `quote` is the venue's current price, `None` when it
/// gave none. `client_quote` is the price the trader was shown (market orders).
pub fn screening_price(
    side: OrderSide,
    limit: Option<Decimal>,
    quote: Option<Decimal>,
    client_quote: Option<Decimal>,
) -> Result<Decimal, PriceRefusal> {
    match limit {
        None => {
            let quote = quote.ok_or(PriceRefusal::NoQuote)?;
            Ok(client_quote.map_or(quote, |seen| seen.max(quote)))
        }
        Some(limit) => {
            if let Some(quote) = quote {
                let through = match side {
                    OrderSide::Buy => {
                        limit > quote.saturating_mul(Decimal::ONE + MAX_LIMIT_THROUGH_QUOTE)
                    }
                    OrderSide::Sell => {
                        limit < quote.saturating_mul(Decimal::ONE - MAX_LIMIT_THROUGH_QUOTE)
                    }
                };
                if through {
                    return Err(PriceRefusal::LimitThroughQuote { side, limit, quote });
                }
            }
            match side {
                // Fills at the limit or lower: the limit bounds the value, quote or not.
                OrderSide::Buy => Ok(limit),
                OrderSide::Sell => Ok(limit.max(quote.ok_or(PriceRefusal::NoQuote)?)),
            }
        }
    }
}

/// The worst price a market order judged at `judged_at` may fill at, sent as its bound (an
/// immediate-or-cancel limit): a buy at most that price, so what it spends never exceeds the
/// value the limits and the step-up threshold saw, however thin the book; a sell at least
/// [`MAX_LIMIT_THROUGH_QUOTE`] below it (the band a limit may be set through the quote), so a
/// thin book cannot take the asset for nothing. Rounded towards the judged price on its own
/// decimal grid, which is a multiple of the venue's price step because the judged price is.
pub fn market_bound(side: OrderSide, judged_at: Decimal) -> Decimal {
    match side {
        OrderSide::Buy => judged_at,
        OrderSide::Sell => judged_at
            .saturating_mul(Decimal::ONE - MAX_LIMIT_THROUGH_QUOTE)
            .round_dp_with_strategy(
                judged_at.normalize().scale(),
                rust_decimal::RoundingStrategy::AwayFromZero,
            ),
    }
}

/// Quantity × price, or `None` when it does not fit a decimal (refuse the order, never wrap
/// or saturate into a value that passes a check).
pub fn order_value(quantity: Decimal, price: Decimal) -> Option<Decimal> {
    quantity.checked_mul(price)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(raw: &str) -> Decimal {
        raw.parse().expect("decimal")
    }

    #[test]
    fn a_market_order_is_bounded_at_the_price_it_was_judged_at() {
        assert_eq!(
            market_bound(OrderSide::Buy, d("65000.01000000")),
            d("65000.01")
        );
        // 5 % below, on the judged price's grid, rounded towards it.
        assert_eq!(market_bound(OrderSide::Sell, d("65000")), d("61750"));
        assert_eq!(market_bound(OrderSide::Sell, d("65000.01")), d("61750.01"));
        assert_eq!(
            market_bound(OrderSide::Sell, d("0.00012345")),
            d("0.00011728")
        );
        assert!(market_bound(OrderSide::Sell, d("0.00012345")) >= d("0.00012345") * d("0.95"));
    }

    #[test]
    fn a_market_order_is_judged_at_the_higher_of_the_quote_and_the_price_the_trader_saw() {
        let buy = screening_price(OrderSide::Buy, None, Some(d("100")), Some(d("99.5")));
        assert_eq!(buy, Ok(d("100")));
        let sell = screening_price(OrderSide::Sell, None, Some(d("100")), Some(d("100.8")));
        assert_eq!(sell, Ok(d("100.8")));
        assert_eq!(
            screening_price(OrderSide::Buy, None, Some(d("100")), None),
            Ok(d("100"))
        );
    }

    #[test]
    fn a_market_order_without_a_quote_has_no_price_whatever_the_client_sent() {
        for side in [OrderSide::Buy, OrderSide::Sell] {
            assert_eq!(
                screening_price(side, None, None, Some(d("100"))),
                Err(PriceRefusal::NoQuote)
            );
        }
    }

    #[test]
    fn a_sell_limit_below_the_market_is_judged_at_the_market() {
        assert_eq!(
            screening_price(OrderSide::Sell, Some(d("98")), Some(d("100")), None),
            Ok(d("100"))
        );
        // Above the market it rests and can only fill at its limit or better.
        assert_eq!(
            screening_price(OrderSide::Sell, Some(d("120")), Some(d("100")), None),
            Ok(d("120"))
        );
        assert_eq!(
            screening_price(OrderSide::Sell, Some(d("120")), None, None),
            Err(PriceRefusal::NoQuote)
        );
    }

    #[test]
    fn a_buy_limit_is_judged_at_its_limit_with_or_without_a_quote() {
        assert_eq!(
            screening_price(OrderSide::Buy, Some(d("90")), Some(d("100")), None),
            Ok(d("90"))
        );
        assert_eq!(
            screening_price(OrderSide::Buy, Some(d("103")), Some(d("100")), None),
            Ok(d("103"))
        );
        assert_eq!(
            screening_price(OrderSide::Buy, Some(d("90")), None, None),
            Ok(d("90"))
        );
    }

    #[test]
    fn a_limit_far_through_the_quote_is_refused_and_the_band_edge_is_not() {
        assert_eq!(
            screening_price(
                OrderSide::Sell,
                Some(d("0.00000001")),
                Some(d("65000")),
                None
            ),
            Err(PriceRefusal::LimitThroughQuote {
                side: OrderSide::Sell,
                limit: d("0.00000001"),
                quote: d("65000"),
            })
        );
        assert!(screening_price(OrderSide::Sell, Some(d("94.99")), Some(d("100")), None).is_err());
        assert_eq!(
            screening_price(OrderSide::Sell, Some(d("95")), Some(d("100")), None),
            Ok(d("100"))
        );
        assert!(screening_price(OrderSide::Buy, Some(d("105.01")), Some(d("100")), None).is_err());
        assert_eq!(
            screening_price(OrderSide::Buy, Some(d("105")), Some(d("100")), None),
            Ok(d("105"))
        );
    }

    #[test]
    fn a_value_that_does_not_fit_is_none_not_a_saturated_number() {
        assert_eq!(order_value(Decimal::MAX, d("65000")), None);
        assert_eq!(order_value(d("0.5"), d("65000")), Some(d("32500")));
    }
}
