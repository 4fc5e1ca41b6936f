//! The order's own vocabulary, parsed once at the edge: side, type, symbol, quantity, price,
//! the terms an approval binds, and the typed [`OrderTicket`] placement takes. A leaf that
//! builds for WASM (no `full`-only imports), so the browser's ticket parses with the same code.

use std::fmt;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OrderSide {
    Buy,
    Sell,
}

impl OrderSide {
    pub fn as_str(self) -> &'static str {
        match self {
            OrderSide::Buy => "buy",
            OrderSide::Sell => "sell",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "buy" => Some(OrderSide::Buy),
            "sell" => Some(OrderSide::Sell),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OrderType {
    Market,
    Limit,
}

impl OrderType {
    pub fn as_str(self) -> &'static str {
        match self {
            OrderType::Market => "market",
            OrderType::Limit => "limit",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "market" => Some(OrderType::Market),
            "limit" => Some(OrderType::Limit),
            _ => None,
        }
    }
}

/// The largest quantity or price an order may state (10^12). Their product (at most 10^24) and
/// a day of such products stay far below `Decimal::MAX` (about 7.9 × 10^28).
pub const MAX_ORDER_AMOUNT: Decimal = Decimal::from_parts(0xD4A5_1000, 0xE8, 0, false, 0);

/// The most decimal places a quantity or price may have.
pub const MAX_AMOUNT_SCALE: u32 = 8;

/// The asset every pair is quoted in. Every limit, the step-up threshold and the paper balance
/// are in USDT, and an order's value is its quantity times a price in the pair's quote asset:
/// a pair quoted in BTC would be valued in BTC and pass a USDT limit many times over.
pub const QUOTE_ASSET: &str = "USDT";

/// Not a tradable symbol: a pair quoted in USDT, 5 to 20 ASCII letters or digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a symbol is a pair quoted in USDT, like BTCUSDT (5 to 20 letters or digits)")]
pub struct InvalidSymbol;

/// Why a quantity or price was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InvalidAmount {
    /// Not a plain decimal (no exponents, signs or separators).
    #[error("not a plain decimal number")]
    NotADecimal,
    #[error("not positive")]
    NotPositive,
    #[error("more than {MAX_AMOUNT_SCALE} decimal places")]
    TooPrecise,
    #[error("above {MAX_ORDER_AMOUNT}")]
    TooLarge,
}

/// A trading pair as exchanges name it (`BTCUSDT`): upper case, 5 to 20 letters or digits,
/// quoted in [`QUOTE_ASSET`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Symbol(String);

impl Symbol {
    pub fn parse(raw: &str) -> Result<Self, InvalidSymbol> {
        let symbol = raw.trim().to_ascii_uppercase();
        let quoted_in_usdt = symbol
            .strip_suffix(QUOTE_ASSET)
            .is_some_and(|base| !base.is_empty());
        if symbol.len() > 20
            || !quoted_in_usdt
            || !symbol.chars().all(|c| c.is_ascii_alphanumeric())
        {
            return Err(InvalidSymbol);
        }
        Ok(Self(symbol))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<&str> for Symbol {
    type Error = InvalidSymbol;

    fn try_from(raw: &str) -> Result<Self, Self::Error> {
        Self::parse(raw)
    }
}

/// A positive plain decimal of at most 8 places, at most [`MAX_ORDER_AMOUNT`], normalised:
/// bounded, so every product and sum the rules take of it fits a decimal.
fn parse_amount(raw: &str) -> Result<Decimal, InvalidAmount> {
    let raw = raw.trim();
    if raw.is_empty() || !raw.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return Err(InvalidAmount::NotADecimal);
    }
    let value: Decimal = raw.parse().map_err(|_| InvalidAmount::NotADecimal)?;
    check_amount(value)
}

fn check_amount(value: Decimal) -> Result<Decimal, InvalidAmount> {
    if value <= Decimal::ZERO {
        return Err(InvalidAmount::NotPositive);
    }
    if value.scale() > MAX_AMOUNT_SCALE {
        return Err(InvalidAmount::TooPrecise);
    }
    if value > MAX_ORDER_AMOUNT {
        return Err(InvalidAmount::TooLarge);
    }
    Ok(value.normalize())
}

macro_rules! amount {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        pub struct $name(Decimal);

        impl $name {
            pub fn parse(raw: &str) -> Result<Self, InvalidAmount> {
                parse_amount(raw).map(Self)
            }

            pub fn value(self) -> Decimal {
                self.0
            }
        }

        impl TryFrom<Decimal> for $name {
            type Error = InvalidAmount;

            fn try_from(value: Decimal) -> Result<Self, Self::Error> {
                check_amount(value).map(Self)
            }
        }

        impl From<$name> for Decimal {
            fn from(amount: $name) -> Decimal {
                amount.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

amount!(
    /// How much of the base asset an order buys or sells.
    Quantity
);
amount!(
    /// A price in the quote currency (a limit, or the quote the trader saw).
    Price
);

/// The fields of an order an approval commits to, before the server adds the nonce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderTerms {
    pub symbol: String,
    pub side: OrderSide,
    pub quantity: Decimal,
    pub price: Decimal,
}

impl OrderTerms {
    pub fn new(symbol: &Symbol, side: OrderSide, quantity: Quantity, price: Price) -> Self {
        Self {
            symbol: symbol.as_str().to_owned(),
            side,
            quantity: quantity.value(),
            price: price.value(),
        }
    }

    pub fn parse(
        symbol: &str,
        side: &str,
        quantity: &str,
        price: &str,
    ) -> Result<Self, OrderFormError> {
        Ok(Self::new(
            &Symbol::parse(symbol)?,
            OrderSide::parse(side).ok_or(OrderFormError::Side)?,
            Quantity::parse(quantity).map_err(OrderFormError::Quantity)?,
            Price::parse(price).map_err(OrderFormError::Price)?,
        ))
    }

    pub fn notional(&self) -> Decimal {
        self.quantity
            .checked_mul(self.price)
            .unwrap_or(Decimal::MAX)
    }
}

/// Why an order form could not be read. The wording for people is the app's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OrderFormError {
    #[error(transparent)]
    Symbol(#[from] InvalidSymbol),
    #[error("the side must be buy or sell")]
    Side,
    #[error("the order type must be market or limit")]
    OrderType,
    #[error("quantity: {0}")]
    Quantity(InvalidAmount),
    #[error("price: {0}")]
    Price(InvalidAmount),
    #[error("a limit order needs a limit price")]
    LimitPriceMissing,
    #[error("a limit price is only for limit orders")]
    LimitPriceOnMarket,
}

/// An order form as it arrives from the ticket or an agent, unparsed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrderForm {
    pub symbol: String,
    pub side: String,
    pub order_type: String,
    pub quantity: String,
    /// Limit orders only.
    pub limit_price: Option<String>,
    /// Market orders: the price the trader saw (and approved, for a large order).
    pub quoted_price: Option<String>,
}

/// An order as the trader (or an agent) asked for it, every field parsed: placement never sees
/// raw strings. A limit order always has its limit; a market order carries the quote the
/// trader saw when there was one (an agent's proposal has none until the trader signs it off).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderTicket {
    symbol: Symbol,
    side: OrderSide,
    quantity: Quantity,
    order_type: OrderType,
    /// The limit (limit orders) or the quote seen (market orders).
    price: Option<Price>,
}

impl OrderTicket {
    pub fn market(
        symbol: Symbol,
        side: OrderSide,
        quantity: Quantity,
        quoted: Option<Price>,
    ) -> Self {
        Self {
            symbol,
            side,
            quantity,
            order_type: OrderType::Market,
            price: quoted,
        }
    }

    pub fn limit(symbol: Symbol, side: OrderSide, quantity: Quantity, limit: Price) -> Self {
        Self {
            symbol,
            side,
            quantity,
            order_type: OrderType::Limit,
            price: Some(limit),
        }
    }

    pub fn symbol(&self) -> &Symbol {
        &self.symbol
    }

    pub fn side(&self) -> OrderSide {
        self.side
    }

    pub fn quantity(&self) -> Quantity {
        self.quantity
    }

    pub fn order_type(&self) -> OrderType {
        self.order_type
    }

    /// The limit of a limit order; `None` for a market order.
    pub fn limit_price(&self) -> Option<Price> {
        match self.order_type {
            OrderType::Limit => self.price,
            OrderType::Market => None,
        }
    }

    /// The quote a market order's trader saw, if any; `None` for a limit order.
    pub fn quoted_price(&self) -> Option<Price> {
        match self.order_type {
            OrderType::Market => self.price,
            OrderType::Limit => None,
        }
    }

    /// A market ticket with the quote the trader saw when signing it off.
    pub fn with_quote(self, quoted: Option<Price>) -> Self {
        match self.order_type {
            OrderType::Market => Self {
                price: quoted,
                ..self
            },
            OrderType::Limit => self,
        }
    }

    /// The terms an approval binds: the price written on the order (its limit, or the quote
    /// the trader saw). `None` for a market order without a quote.
    pub fn terms(&self) -> Option<OrderTerms> {
        self.price
            .map(|price| OrderTerms::new(&self.symbol, self.side, self.quantity, price))
    }
}

impl TryFrom<&OrderForm> for OrderTicket {
    type Error = OrderFormError;

    fn try_from(form: &OrderForm) -> Result<Self, Self::Error> {
        let order_type = OrderType::parse(&form.order_type).ok_or(OrderFormError::OrderType)?;
        let symbol = Symbol::parse(&form.symbol)?;
        let side = OrderSide::parse(&form.side).ok_or(OrderFormError::Side)?;
        let quantity = Quantity::parse(&form.quantity).map_err(OrderFormError::Quantity)?;
        let price = |raw: &Option<String>| {
            raw.as_deref()
                .filter(|p| !p.trim().is_empty())
                .map(Price::parse)
                .transpose()
                .map_err(OrderFormError::Price)
        };
        match order_type {
            OrderType::Limit => {
                let limit = price(&form.limit_price)?.ok_or(OrderFormError::LimitPriceMissing)?;
                Ok(Self::limit(symbol, side, quantity, limit))
            }
            OrderType::Market => {
                if price(&form.limit_price)?.is_some() {
                    return Err(OrderFormError::LimitPriceOnMarket);
                }
                Ok(Self::market(
                    symbol,
                    side,
                    quantity,
                    price(&form.quoted_price)?,
                ))
            }
        }
    }
}

impl TryFrom<OrderForm> for OrderTicket {
    type Error = OrderFormError;

    fn try_from(form: OrderForm) -> Result<Self, Self::Error> {
        Self::try_from(&form)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(order_type: &str, limit: Option<&str>, quoted: Option<&str>) -> OrderForm {
        OrderForm {
            symbol: " btcusdt ".into(),
            side: "Buy".into(),
            order_type: order_type.into(),
            quantity: "0.50".into(),
            limit_price: limit.map(Into::into),
            quoted_price: quoted.map(Into::into),
        }
    }

    #[test]
    fn a_limit_form_becomes_a_ticket_with_its_limit_and_normalised_fields() {
        let ticket = OrderTicket::try_from(form("limit", Some("65000.50"), None)).expect("valid");
        assert_eq!(ticket.symbol().as_str(), "BTCUSDT");
        assert_eq!(ticket.side(), OrderSide::Buy);
        assert_eq!(ticket.quantity().value(), Decimal::new(5, 1));
        assert_eq!(
            ticket.limit_price().map(Price::value),
            Some(Decimal::new(650005, 1))
        );
        assert_eq!(ticket.quoted_price(), None);
        let terms = ticket.terms().expect("a limit has terms");
        assert_eq!(
            terms,
            OrderTerms::parse("BTCUSDT", "buy", "0.5", "65000.5").expect("valid")
        );
    }

    #[test]
    fn a_market_form_keeps_the_quote_seen_and_may_come_without_one() {
        let seen = OrderTicket::try_from(form("market", None, Some("100"))).expect("valid");
        assert_eq!(
            seen.quoted_price().map(Price::value),
            Some(Decimal::from(100))
        );
        assert_eq!(seen.limit_price(), None);
        let proposal = OrderTicket::try_from(form("market", None, Some(" "))).expect("valid");
        assert_eq!(proposal.quoted_price(), None);
        assert_eq!(proposal.terms(), None);
        let signed = proposal.with_quote(Some(Price::parse("101").expect("price")));
        assert_eq!(
            signed.quoted_price().map(Price::value),
            Some(Decimal::from(101))
        );
    }

    #[test]
    fn only_pairs_quoted_in_usdt_are_symbols() {
        assert_eq!(
            Symbol::parse(" ethusdt ").expect("valid").as_str(),
            "ETHUSDT"
        );
        assert_eq!(Symbol::parse("TUSDT").expect("valid").as_str(), "TUSDT");
        // Valued in BTC or EUR, a quantity times its price would pass every USDT limit.
        for bad in [
            "ETHBTC",
            "BTCEUR",
            "USDT",
            "USDTBTC",
            "BTC/USDT",
            "A2345678901234567USDT",
        ] {
            assert_eq!(Symbol::parse(bad), Err(InvalidSymbol), "{bad}");
        }
    }

    #[test]
    fn a_form_that_does_not_make_an_order_says_which_field_is_wrong() {
        let cases = [
            (form("stop", None, None), OrderFormError::OrderType),
            (form("limit", None, None), OrderFormError::LimitPriceMissing),
            (
                form("market", Some("1"), None),
                OrderFormError::LimitPriceOnMarket,
            ),
            (
                form("limit", Some("-1"), None),
                OrderFormError::Price(InvalidAmount::NotADecimal),
            ),
            (
                OrderForm {
                    symbol: "BTC/USDT".into(),
                    ..form("market", None, None)
                },
                OrderFormError::Symbol(InvalidSymbol),
            ),
            (
                OrderForm {
                    side: "short".into(),
                    ..form("market", None, None)
                },
                OrderFormError::Side,
            ),
            (
                OrderForm {
                    quantity: "0".into(),
                    ..form("market", None, None)
                },
                OrderFormError::Quantity(InvalidAmount::NotPositive),
            ),
        ];
        for (form, expected) in cases {
            assert_eq!(OrderTicket::try_from(&form), Err(expected), "{form:?}");
        }
    }

    #[test]
    fn order_amounts_are_bounded_so_their_value_always_fits() {
        assert_eq!(MAX_ORDER_AMOUNT, Decimal::from(1_000_000_000_000_u64));
        let largest = OrderTerms::parse("BTCUSDT", "buy", "1000000000000", "1000000000000")
            .expect("the bound itself is accepted");
        assert!(largest.quantity.checked_mul(largest.price).is_some());
        assert_eq!(
            Quantity::try_from(MAX_ORDER_AMOUNT + Decimal::ONE),
            Err(InvalidAmount::TooLarge)
        );
    }

    #[test]
    fn order_terms_refuse_bad_input() {
        for (symbol, side, qty, price) in [
            ("B", "buy", "1", "1"),
            ("BTC/USDT", "buy", "1", "1"),
            ("BTCUSDT", "hold", "1", "1"),
            ("BTCUSDT", "buy", "0", "1"),
            ("BTCUSDT", "buy", "-1", "1"),
            ("BTCUSDT", "buy", "1e3", "1"),
            ("BTCUSDT", "buy", "0.000000001", "1"),
            ("BTCUSDT", "buy", "1", "NaN"),
            ("BTCUSDT", "buy", "79228162514264337593543950335", "1"),
            ("BTCUSDT", "buy", "1000000000000.00000001", "1"),
            ("BTCUSDT", "sell", "1", "1000000000001"),
        ] {
            assert!(
                OrderTerms::parse(symbol, side, qty, price).is_err(),
                "{symbol} {side} {qty} {price}"
            );
        }
    }
}
