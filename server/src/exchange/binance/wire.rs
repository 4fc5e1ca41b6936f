//! What goes over the wire: endpoint paths, request parameters, and the parts of Binance's
//! answers we read.

use domain::keys::{ExchangeError, OrderType, VenueOrder};
use domain::risk::OrderSide;
use reqwest::StatusCode;
use rust_decimal::Decimal;
use serde::Deserialize;

pub(super) const ACCOUNT_PATH: &str = "/api/v3/account";
pub(super) const RESTRICTIONS_PATH: &str = "/sapi/v1/account/apiRestrictions";
pub(super) const ORDER_PATH: &str = "/api/v3/order";
/// The best bid and ask. The quote is the ask, what a buy pays now: a market buy judged there
/// and bounded there (`risk::market_bound`) fills the top of the book, where the last trade
/// price may lie a tick below it; a sell judged at the ask is judged no lower than it is worth.
pub(super) const TICKER_PATH: &str = "/api/v3/ticker/bookTicker";

/// A value Binance gets as-is. Everything we send is plain ASCII (symbols, decimals, our own
/// client order ids), so anything else is refused rather than encoded.
pub(super) fn param(name: &'static str, value: &str) -> Result<String, ExchangeError> {
    let plain = !value.is_empty()
        && value.len() <= 36
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
    if plain {
        Ok(value.to_owned())
    } else {
        Err(ExchangeError::Rejected(format!(
            "The order's {name} cannot be sent to Binance."
        )))
    }
}

/// A positive decimal in plain notation (no exponent), as Binance reads it.
fn decimal_param(name: &'static str, value: Decimal) -> Result<String, ExchangeError> {
    if value <= Decimal::ZERO {
        return Err(ExchangeError::Rejected(format!(
            "The order's {name} must be positive."
        )));
    }
    param(name, &value.normalize().to_string())
}

pub(super) fn order_params(
    order: &VenueOrder,
) -> Result<Vec<(&'static str, String)>, ExchangeError> {
    let mut params = vec![
        ("symbol", param("symbol", &order.symbol)?),
        (
            "side",
            match order.side {
                OrderSide::Buy => "BUY",
                OrderSide::Sell => "SELL",
            }
            .to_owned(),
        ),
    ];
    match order.order_type {
        OrderType::Market => {
            // Never a bare MARKET order: it would fill up a thin book at any price, far beyond
            // the value it was judged at. Immediate-or-cancel at its bound fills what the book
            // offers up to there now, and the rest expires.
            let bound = order.limit_price.ok_or_else(|| {
                ExchangeError::Rejected("A market order needs its price bound.".into())
            })?;
            params.push(("type", "LIMIT".into()));
            params.push(("timeInForce", "IOC".into()));
            params.push(("price", decimal_param("price", bound)?));
        }
        OrderType::Limit => {
            let price = order.limit_price.ok_or_else(|| {
                ExchangeError::Rejected("A limit order needs a limit price.".into())
            })?;
            params.push(("type", "LIMIT".into()));
            // Good till cancelled: rests on the book until it fills or the trader cancels.
            params.push(("timeInForce", "GTC".into()));
            params.push(("price", decimal_param("price", price)?));
        }
    }
    params.push(("quantity", decimal_param("quantity", order.quantity)?));
    // The idempotency key: the same id on every retry of this order.
    params.push((
        "newClientOrderId",
        param("client order id", &order.client_order_id)?,
    ));
    // RESULT carries the status and executed amounts, without the per-fill list.
    params.push(("newOrderRespType", "RESULT".into()));
    Ok(params)
}

pub(super) fn lookup_params(
    symbol: &str,
    client_order_id: &str,
) -> Result<Vec<(&'static str, String)>, ExchangeError> {
    Ok(vec![
        ("symbol", param("symbol", symbol)?),
        (
            "origClientOrderId",
            param("client order id", client_order_id)?,
        ),
    ])
}

/// An order as `POST`, `GET` and `DELETE /api/v3/order` answer it, the part we use.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct OrderReply {
    pub(super) order_id: i64,
    pub(super) status: String,
    pub(super) executed_qty: String,
    /// Binance's spelling.
    pub(super) cummulative_quote_qty: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Ticker {
    pub(super) ask_price: String,
}

pub(super) fn error_of(reply: &Reply) -> Option<BinanceErrorBody> {
    serde_json::from_slice(&reply.body).ok()
}

pub(super) struct Reply {
    pub(super) status: StatusCode,
    pub(super) body: Vec<u8>,
    /// Seconds, when Binance asks us to back off.
    pub(super) retry_after: Option<u64>,
}

/// `GET /api/v3/account`, the part we use. Its `canWithdraw` and `canDeposit` describe the
/// account, not the key (they are true for a read-only key too), so they are not read.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Account {
    pub(super) can_trade: bool,
}

/// `GET /sapi/v1/account/apiRestrictions`: what this key may do.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Restrictions {
    pub(super) ip_restrict: bool,
    pub(super) enable_reading: Option<bool>,
    pub(super) enable_spot_and_margin_trading: bool,
    pub(super) enable_withdrawals: bool,
}

/// Binance's error body: `{"code":-2015,"msg":"..."}`. The code decides; the message is only
/// compared with the two texts Binance uses to tell -2010 refusals apart, and nothing Binance
/// echoes reaches the trader or the logs.
#[derive(Debug, Deserialize)]
pub(super) struct BinanceErrorBody {
    pub(super) code: i64,
    #[serde(default)]
    msg: String,
}

/// `GET /api/v3/order` for an id Binance does not know.
pub(super) const ORDER_DOES_NOT_EXIST: i64 = -2013;
/// `DELETE /api/v3/order` for an order that is not open (or unknown).
pub(super) const UNKNOWN_ORDER: i64 = -2011;

impl BinanceErrorBody {
    pub(super) fn is_duplicate_order(&self) -> bool {
        self.code == -2010 && self.msg.starts_with("Duplicate order sent")
    }

    pub(super) fn is_insufficient_balance(&self) -> bool {
        self.code == -2010 && self.msg.starts_with("Account has insufficient balance")
    }
}
