//! Binance adapter against a local stand-in (written by the exchange helper).
//!
//! The stand-in is a small axum server on 127.0.0.1:0 that behaves like Binance's signed REST
//! endpoints for a few recorded keys: it checks `X-MBX-APIKEY`, the `timestamp`/`recvWindow` and
//! the HMAC-SHA256 signature, answers with recorded JSON, and keeps every request it saw. Its
//! order book is just enough of Binance's to test placement: market orders fill at a fixed price,
//! limit orders fill when marketable and rest otherwise, `newClientOrderId` is refused only while
//! an order with that id is still open (as on Binance), and every execution is counted.

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use std::str::FromStr;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use domain::keys::{
    ApiCredentials, Exchange, ExchangeError, KeyEnvironment, KeyPermissions, OrderType, VenueAck,
    VenueOrder, VenueOrderStatus,
};
use domain::ports::{Clock, SystemClock};
use domain::risk::OrderSide;
use hmac::{Hmac, Mac};
use rust_decimal::Decimal;
use secrecy::SecretString;
use serde_json::{Value, json};
use server::exchange::{BinanceExchange, BinanceSettings};
use sha2::Sha256;

use crate::helpers::TestClock;

const ACCOUNT: &str = "/api/v3/account";
const RESTRICTIONS: &str = "/sapi/v1/account/apiRestrictions";
const ORDER: &str = "/api/v3/order";
const TICKER: &str = "/api/v3/ticker/bookTicker";

/// The stand-in's prices; market orders fill here.
pub(crate) const PRICES: [(&str, &str); 3] = [
    ("BTCUSDT", "65000.00"),
    ("ETHUSDT", "3200.00"),
    ("SOLUSDT", "150.00"),
];
/// LOT_SIZE step for every symbol.
const STEP: &str = "0.00001";
/// Each key's quote balance: a larger order is refused for insufficient balance.
const BALANCE_USDT: u32 = 100_000;

/// A spot trading key: reads and trades, cannot withdraw.
pub(crate) const TRADE_KEY: &str =
    "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A";
pub(crate) const TRADE_SECRET: &str =
    "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j";
pub(crate) const WITHDRAW_KEY: &str =
    "wKey7sD0a1LqZt9XhV3mB6nC2pR8yF4uJ5gE1kT0oI9wQ7zS3xA6dN2cH8vM4bLe";
pub(crate) const WITHDRAW_SECRET: &str =
    "wSec3fG7hJ1kL5zX9cV2bN6mQ4wE8rT0yU3iO7pA1sD5fG9hJ2kL6zX0cV4bN8mQ";
const READ_ONLY_KEY: &str = "rKey2aS6dF0gH4jK8lZ1xC5vB9nM3qW7eR2tY6uI0oP4aS8dF1gH5jK9lZ3xC7vB";
const READ_ONLY_SECRET: &str = "rSec8qW2eR6tY0uI4oP9aS3dF7gH1jK5lZ8xC2vB6nM0qW4eR7tY1uI5oP9aS3dF";
const IP_KEY: &str = "iKey5zX9cV3bN7mQ1wE5rT9yU2iO6pA0sD4fG8hJ1kL5zX9cV3bN7mQ0wE4rT8yU";
const IP_SECRET: &str = "iSec1pA5sD9fG3hJ7kL0zX4cV8bN2mQ6wE9rT3yU7iO1pA5sD8fG2hJ6kL0zX4cV";
/// A key only the live stand-in knows: "a live key on the testnet".
pub(crate) const LIVE_ONLY_KEY: &str =
    "lKey4mQ8wE2rT6yU0iO3pA7sD1fG5hJ9kL2zX6cV0bN4mQ8wE1rT5yU9iO3pA7sD";
pub(crate) const LIVE_ONLY_SECRET: &str =
    "lSec6yU0iO4pA8sD2fG6hJ0kL3zX7cV1bN5mQ9wE2rT6yU0iO4pA8sD1fG5hJ9kL";

fn credentials(key: &str, secret: &str) -> ApiCredentials {
    ApiCredentials::parse(SecretString::from(key), SecretString::from(secret))
        .expect("well-formed test credentials")
}

/// `GET /api/v3/account` as Binance documents it. `canWithdraw` is true even for keys that
/// cannot withdraw: it describes the account, not the key.
fn account_json(can_trade: bool) -> Value {
    json!({
        "makerCommission": 15,
        "takerCommission": 15,
        "buyerCommission": 0,
        "sellerCommission": 0,
        "commissionRates": {
            "maker": "0.00150000",
            "taker": "0.00150000",
            "buyer": "0.00000000",
            "seller": "0.00000000"
        },
        "canTrade": can_trade,
        "canWithdraw": true,
        "canDeposit": true,
        "brokered": false,
        "requireSelfTradePrevention": false,
        "preventSor": false,
        "updateTime": 123456789,
        "accountType": "SPOT",
        "balances": [
            {"asset": "BTC", "free": "4723846.89208129", "locked": "0.00000000"},
            {"asset": "LTC", "free": "4763368.68006011", "locked": "0.00000000"}
        ],
        "permissions": ["SPOT"],
        "uid": 354937868
    })
}

/// `GET /sapi/v1/account/apiRestrictions` as Binance documents it.
fn restrictions_json(trade: bool, withdraw: bool, ip_restrict: bool) -> Value {
    json!({
        "ipRestrict": ip_restrict,
        "createTime": 1698645219000_i64,
        "enableReading": true,
        "enableWithdrawals": withdraw,
        "enableInternalTransfer": false,
        "enableMargin": false,
        "enableFutures": false,
        "permitsUniversalTransfer": false,
        "enableVanillaOptions": false,
        "enableFixApiTrade": false,
        "enableFixReadOnly": false,
        "enableSpotAndMarginTrading": trade,
        "enablePortfolioMarginTrading": false
    })
}

struct RecordedKey {
    secret: &'static str,
    account: Value,
    restrictions: Value,
    trades: bool,
}

/// How the stand-in behaves beyond its recorded keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Like Binance: verify and answer.
    Normal,
    /// Like the Spot Test Network: no /sapi endpoints (404).
    NoSapi,
    /// Every request fails with HTTP 500.
    ServerError,
    /// Every request is answered with HTTP 429.
    RateLimited,
    /// Every request is answered with HTTP 429 and this `Retry-After` (seconds).
    RateLimitedFor(u64),
    /// Never answers.
    Hang,
    /// Executes orders, then never answers: the reply is lost.
    LoseReplies,
    /// Accepts a cancel without finishing it yet (`PENDING_CANCEL`): the order stays open.
    PendingCancels,
    /// Looks orders up, but refuses to cancel them (the key lost its trading permission).
    RefuseCancels,
    /// Refuses every order request, look-ups included (the key was disabled there).
    RefuseOrderRequests,
    /// A thin book: the best bid and ask are the price table's, for dust; behind them the only
    /// offers are ten times above it and the only bids a tenth of it (someone waiting for a
    /// market order to sweep them).
    ThinBook,
}

/// A request as the stand-in saw it.
#[derive(Debug, Clone)]
pub(crate) struct SeenRequest {
    pub(crate) method: Method,
    path: String,
    query: String,
    pub(crate) body: String,
    headers: Vec<(String, String)>,
}

/// An order on the stand-in's book.
#[derive(Debug, Clone)]
struct BookOrder {
    key: &'static str,
    order_id: i64,
    client_order_id: String,
    symbol: String,
    side: &'static str,
    order_type: &'static str,
    quantity: Decimal,
    price: Option<Decimal>,
    status: &'static str,
    executed: Decimal,
    quote: Decimal,
}

struct StandIn {
    keys: HashMap<&'static str, RecordedKey>,
    mode: Mutex<Mode>,
    /// The clock timestamps are checked against (the app's, when it has a test clock).
    clock: Mutex<Arc<dyn Clock>>,
    seen: Mutex<Vec<SeenRequest>>,
    book: Mutex<Vec<BookOrder>>,
}

impl StandIn {
    fn mode(&self) -> Mode {
        *self.mode.lock().expect("stand-in lock")
    }

    fn now_ms(&self) -> i128 {
        self.clock
            .lock()
            .expect("stand-in lock")
            .now()
            .unix_timestamp_nanos()
            / 1_000_000
    }
}

/// A running stand-in and the requests it saw.
pub(crate) struct Binance {
    pub(crate) url: String,
    state: Arc<StandIn>,
}

impl Binance {
    /// A stand-in that knows the test keys except the live-only one.
    pub(crate) async fn testnet(mode: Mode) -> Self {
        Self::start(mode, false).await
    }

    /// A stand-in that also knows the live-only key.
    async fn live(mode: Mode) -> Self {
        Self::start(mode, true).await
    }

    async fn start(mode: Mode, live: bool) -> Self {
        let mut keys = HashMap::new();
        let mut record = |key, secret, can_trade, trade, withdraw, ip| {
            keys.insert(
                key,
                RecordedKey {
                    secret,
                    account: account_json(can_trade),
                    restrictions: restrictions_json(trade, withdraw, ip),
                    trades: can_trade && trade,
                },
            );
        };
        record(TRADE_KEY, TRADE_SECRET, true, true, false, false);
        record(WITHDRAW_KEY, WITHDRAW_SECRET, true, true, true, false);
        record(READ_ONLY_KEY, READ_ONLY_SECRET, true, false, false, false);
        record(IP_KEY, IP_SECRET, true, true, false, true);
        if live {
            record(LIVE_ONLY_KEY, LIVE_ONLY_SECRET, true, true, false, false);
        }
        let state = Arc::new(StandIn {
            keys,
            mode: Mutex::new(mode),
            clock: Mutex::new(Arc::new(SystemClock)),
            seen: Mutex::new(Vec::new()),
            book: Mutex::new(Vec::new()),
        });
        let router = Router::new().fallback(handle).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the stand-in");
        let address = listener.local_addr().expect("stand-in address");
        tokio::spawn(async move {
            // Ends with the test's runtime.
            let _ = axum::serve(listener, router).await;
        });
        Self {
            url: format!("http://{address}"),
            state,
        }
    }

    pub(crate) fn seen(&self) -> Vec<SeenRequest> {
        self.state.seen.lock().expect("stand-in lock").clone()
    }

    /// How many requests reached the stand-in so far.
    pub(crate) fn seen_count(&self) -> usize {
        self.state.seen.lock().expect("stand-in lock").len()
    }

    pub(crate) fn set_mode(&self, mode: Mode) {
        *self.state.mode.lock().expect("stand-in lock") = mode;
    }

    /// Checks timestamps against `clock`: an app under a test clock signs with that time.
    pub(crate) fn follow_clock(&self, clock: Arc<dyn Clock>) {
        *self.state.clock.lock().expect("stand-in lock") = clock;
    }

    /// The market reaches a resting order's limit: it fills completely at that price.
    pub(crate) fn fill_resting(&self, client_order_id: &str) {
        let mut book = self.state.book.lock().expect("stand-in lock");
        let order = book
            .iter_mut()
            .find(|o| o.client_order_id == client_order_id && o.status == "NEW")
            .expect("a resting order with that id");
        order.status = "FILLED";
        order.executed = order.quantity;
        order.quote = order.quantity * order.price.expect("a limit order");
    }

    /// How many times an order with this client order id was executed.
    pub(crate) fn executions(&self, client_order_id: &str) -> usize {
        self.state
            .book
            .lock()
            .expect("stand-in lock")
            .iter()
            .filter(|o| o.client_order_id == client_order_id)
            .count()
    }
}

fn binance_error(status: StatusCode, code: i64, msg: &str) -> Response {
    (status, Json(json!({"code": code, "msg": msg}))).into_response()
}

/// Splits `a=1&b=2` into pairs (the adapter sends nothing that needs percent-decoding).
fn params(query: &str) -> HashMap<&str, &str> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .collect()
}

async fn handle(
    State(state): State<Arc<StandIn>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    let query = uri.query().unwrap_or_default().to_owned();
    let body = String::from_utf8_lossy(&body).into_owned();
    state.seen.lock().expect("stand-in lock").push(SeenRequest {
        method: method.clone(),
        path: path.clone(),
        query: query.clone(),
        body: body.clone(),
        headers: headers
            .iter()
            .map(|(name, value)| {
                (
                    name.as_str().to_owned(),
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                )
            })
            .collect(),
    });

    let mode = state.mode();
    match mode {
        Mode::ServerError => {
            return binance_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                -1001,
                "Internal error; unable to process your request. Please try again.",
            );
        }
        Mode::RateLimited => {
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [("retry-after", "30")],
                Json(json!({"code": -1003, "msg": "Too much request weight used."})),
            )
                .into_response();
        }
        Mode::RateLimitedFor(seconds) => {
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [("retry-after", seconds.to_string())],
                Json(json!({"code": -1003, "msg": "Too much request weight used."})),
            )
                .into_response();
        }
        Mode::Hang => {
            tokio::time::sleep(Duration::from_secs(60)).await;
            return StatusCode::GATEWAY_TIMEOUT.into_response();
        }
        Mode::Normal
        | Mode::NoSapi
        | Mode::LoseReplies
        | Mode::PendingCancels
        | Mode::RefuseCancels
        | Mode::RefuseOrderRequests
        | Mode::ThinBook => {}
    }
    if path == TICKER && method == Method::GET {
        return ticker(&query);
    }
    let known_path = (path == ACCOUNT && method == Method::GET)
        || (path == RESTRICTIONS && method == Method::GET && mode != Mode::NoSapi)
        || path == ORDER;
    if !known_path {
        // What the real testnet does for /sapi: a bare 404.
        return StatusCode::NOT_FOUND.into_response();
    }

    let Some((key, recorded)) = headers
        .get("x-mbx-apikey")
        .and_then(|v| v.to_str().ok())
        .and_then(|key| state.keys.get_key_value(key))
    else {
        return binance_error(
            StatusCode::UNAUTHORIZED,
            -2015,
            "Invalid API-key, IP, or permissions for action.",
        );
    };

    // Binance signs the query string followed by the body ("totalParams").
    let total = format!("{query}{body}");
    let Some((payload, signature)) = total.rsplit_once("&signature=") else {
        return binance_error(
            StatusCode::BAD_REQUEST,
            -1102,
            "Mandatory parameter 'signature' was not sent, was empty/null, or malformed.",
        );
    };
    let fields = params(payload);
    let recv_window: i128 = fields
        .get("recvWindow")
        .and_then(|v| v.parse().ok())
        .unwrap_or(5000);
    let Some(timestamp) = fields.get("timestamp").and_then(|v| v.parse::<i128>().ok()) else {
        return binance_error(
            StatusCode::BAD_REQUEST,
            -1102,
            "Mandatory parameter 'timestamp' was not sent, was empty/null, or malformed.",
        );
    };
    let server_time = state.now_ms();
    if timestamp >= server_time + 1000 || server_time - timestamp > recv_window {
        return binance_error(
            StatusCode::BAD_REQUEST,
            -1021,
            "Timestamp for this request is outside of the recvWindow.",
        );
    }
    if !signature_valid(recorded.secret, payload, signature) {
        return binance_error(
            StatusCode::BAD_REQUEST,
            -1022,
            "Signature for this request is not valid.",
        );
    }
    if path == ORDER {
        let refused = match mode {
            Mode::RefuseOrderRequests => true,
            Mode::RefuseCancels => method == Method::DELETE,
            _ => false,
        };
        if refused {
            return binance_error(
                StatusCode::UNAUTHORIZED,
                -2015,
                "Invalid API-key, IP, or permissions for action.",
            );
        }
        let answer = order_request(&state, key, recorded, &method, &fields, mode);
        if mode == Mode::LoseReplies && method == Method::POST {
            tokio::time::sleep(Duration::from_secs(60)).await;
        }
        return answer;
    }
    let body = if path == ACCOUNT {
        &recorded.account
    } else {
        &recorded.restrictions
    };
    Json(body.clone()).into_response()
}

fn price_of(symbol: &str) -> Option<Decimal> {
    PRICES
        .iter()
        .find(|(s, _)| *s == symbol)
        .map(|(_, p)| Decimal::from_str(p).expect("price table"))
}

fn invalid_symbol() -> Response {
    binance_error(StatusCode::BAD_REQUEST, -1121, "Invalid symbol.")
}

/// `GET /api/v3/ticker/bookTicker`: public, no key. The top of the book is at the price table
/// (in `ThinBook` too: a dust-sized level, with the real offers far beyond it).
fn ticker(query: &str) -> Response {
    let fields = params(query);
    let Some(symbol) = fields.get("symbol") else {
        return binance_error(
            StatusCode::BAD_REQUEST,
            -1102,
            "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.",
        );
    };
    match price_of(symbol) {
        Some(price) => Json(json!({
            "symbol": symbol,
            "bidPrice": format!("{price:.8}"),
            "bidQty": "0.00100000",
            "askPrice": format!("{price:.8}"),
            "askQty": "0.00100000",
        }))
        .into_response(),
        None => invalid_symbol(),
    }
}

fn order_json(order: &BookOrder) -> Value {
    json!({
        "symbol": order.symbol,
        "orderId": order.order_id,
        "orderListId": -1,
        "clientOrderId": order.client_order_id,
        "transactTime": 1507725176595_i64,
        "price": format!("{:.8}", order.price.unwrap_or_default()),
        "origQty": format!("{:.8}", order.quantity),
        "executedQty": format!("{:.8}", order.executed),
        "cummulativeQuoteQty": format!("{:.8}", order.quote),
        "status": order.status,
        "timeInForce": "GTC",
        "type": order.order_type,
        "side": order.side,
        "workingTime": 1507725176595_i64,
        "selfTradePreventionMode": "NONE"
    })
}

/// `POST`, `GET` and `DELETE /api/v3/order`, already authenticated.
fn order_request(
    state: &StandIn,
    key: &'static str,
    recorded: &RecordedKey,
    method: &Method,
    fields: &HashMap<&str, &str>,
    mode: Mode,
) -> Response {
    let mut book = state.book.lock().expect("stand-in lock");
    let symbol = fields.get("symbol").copied().unwrap_or_default();
    if *method != Method::POST {
        let Some(client_id) = fields.get("origClientOrderId") else {
            return binance_error(
                StatusCode::BAD_REQUEST,
                -1102,
                "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!",
            );
        };
        // The newest order with that id (a closed order's id may be reused).
        let found = book
            .iter_mut()
            .rev()
            .find(|o| o.key == key && o.symbol == symbol && o.client_order_id == *client_id);
        return match (method.as_str(), found) {
            ("GET", Some(order)) => Json(order_json(order)).into_response(),
            ("GET", None) => binance_error(StatusCode::BAD_REQUEST, -2013, "Order does not exist."),
            ("DELETE", Some(order)) if order.status == "NEW" && mode == Mode::PendingCancels => {
                let mut pending = order.clone();
                pending.status = "PENDING_CANCEL";
                Json(order_json(&pending)).into_response()
            }
            ("DELETE", Some(order)) if order.status == "NEW" => {
                order.status = "CANCELED";
                Json(order_json(order)).into_response()
            }
            ("DELETE", _) => binance_error(StatusCode::BAD_REQUEST, -2011, "Unknown order sent."),
            _ => StatusCode::METHOD_NOT_ALLOWED.into_response(),
        };
    }
    if !recorded.trades {
        return binance_error(
            StatusCode::UNAUTHORIZED,
            -2015,
            "Invalid API-key, IP, or permissions for action.",
        );
    }
    let Some(market_price) = price_of(symbol) else {
        return invalid_symbol();
    };
    let illegal = |name: &str| {
        binance_error(
            StatusCode::BAD_REQUEST,
            -1100,
            &format!("Illegal characters found in parameter '{name}'."),
        )
    };
    let side = match fields.get("side") {
        Some(&"BUY") => "BUY",
        Some(&"SELL") => "SELL",
        _ => return illegal("side"),
    };
    let order_type = match fields.get("type") {
        Some(&"MARKET") => "MARKET",
        Some(&"LIMIT") => "LIMIT",
        _ => return illegal("type"),
    };
    let Some(quantity) = fields
        .get("quantity")
        .and_then(|q| Decimal::from_str(q).ok())
        .filter(|q| *q > Decimal::ZERO)
    else {
        return illegal("quantity");
    };
    if (quantity % Decimal::from_str(STEP).expect("step")) != Decimal::ZERO {
        return binance_error(StatusCode::BAD_REQUEST, -1013, "Filter failure: LOT_SIZE");
    }
    let Some(client_id) = fields.get("newClientOrderId") else {
        panic!("the adapter always sends its own client order id");
    };
    let (limit, immediate_or_cancel) = if order_type == "LIMIT" {
        match (
            fields.get("price").and_then(|p| Decimal::from_str(p).ok()),
            fields.get("timeInForce"),
        ) {
            (Some(price), Some(&"GTC")) => (Some(price), false),
            (Some(price), Some(&"IOC")) => (Some(price), true),
            _ => return illegal("price"),
        }
    } else {
        (None, false)
    };
    // Where the order would execute: the last trade, or what a thin book offers.
    let fill_price = match (mode, side) {
        (Mode::ThinBook, "BUY") => market_price * Decimal::TEN,
        (Mode::ThinBook, _) => market_price / Decimal::TEN,
        _ => market_price,
    };
    if book
        .iter()
        .any(|o| o.key == key && o.client_order_id == *client_id && o.status == "NEW")
    {
        return binance_error(StatusCode::BAD_REQUEST, -2010, "Duplicate order sent.");
    }
    if quantity * market_price > Decimal::from(BALANCE_USDT) {
        return binance_error(
            StatusCode::BAD_REQUEST,
            -2010,
            "Account has insufficient balance for requested action.",
        );
    }
    let marketable = match (limit, side) {
        (None, _) => true,
        (Some(limit), "BUY") => limit >= fill_price,
        (Some(limit), _) => limit <= fill_price,
    };
    let unfilled = if immediate_or_cancel {
        "EXPIRED"
    } else {
        "NEW"
    };
    let order = BookOrder {
        key,
        order_id: 4_000_000 + book.len() as i64,
        client_order_id: (*client_id).to_owned(),
        symbol: symbol.to_owned(),
        side,
        order_type,
        quantity,
        price: limit,
        status: if marketable { "FILLED" } else { unfilled },
        executed: if marketable { quantity } else { Decimal::ZERO },
        quote: if marketable {
            quantity * fill_price
        } else {
            Decimal::ZERO
        },
    };
    let answer = Json(order_json(&order)).into_response();
    book.push(order);
    answer
}

/// Constant-time check, as a real verifier would do it.
fn signature_valid(secret: &str, payload: &str, signature_hex: &str) -> bool {
    let Ok(signature) = hex::decode(signature_hex) else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(payload.as_bytes());
    mac.verify_slice(&signature).is_ok()
}

fn adapter_with(
    testnet: &str,
    live: &str,
    timeout: Duration,
    clock: Arc<dyn Clock>,
) -> BinanceExchange {
    BinanceExchange::new(
        BinanceSettings {
            testnet_url: testnet.into(),
            live_url: live.into(),
            connect_timeout: timeout,
            timeout,
        },
        clock,
    )
    .expect("valid Binance settings")
}

/// The adapter with both environments pointing at `binance`.
fn adapter(binance: &Binance) -> BinanceExchange {
    adapter_with(
        &binance.url,
        &binance.url,
        Duration::from_secs(2),
        Arc::new(SystemClock),
    )
}

/// Every request carried the key in the header only, never the secret, and a signature that
/// verifies over the exact query string.
fn assert_signed_requests(seen: &[SeenRequest], key: &str, secret: &str) {
    assert!(!seen.is_empty(), "the adapter sent nothing");
    for request in seen {
        let everything = format!("{} {} {:?}", request.path, request.query, request.headers);
        assert!(!everything.contains(secret), "secret leaked: {request:?}");
        assert!(
            request
                .headers
                .iter()
                .any(|(name, value)| name == "x-mbx-apikey" && value == key),
            "X-MBX-APIKEY missing: {request:?}"
        );
        assert!(
            !request.query.contains(key),
            "key in the query: {request:?}"
        );
        let (payload, signature) = request
            .query
            .rsplit_once("&signature=")
            .expect("signature last in the query");
        assert!(
            payload.starts_with("timestamp=") && payload.ends_with("&recvWindow=5000"),
            "unexpected payload {payload}"
        );
        assert_eq!(signature.len(), 64, "hex SHA-256 signature");
        assert!(
            signature_valid(secret, payload, signature),
            "signature does not verify: {request:?}"
        );
    }
}

/// Nothing secret in what the trader or the logs would see.
fn assert_clean(text: &str, key: &str, secret: &str) {
    assert!(!text.contains(secret), "secret in {text:?}");
    assert!(!text.contains(key), "key in {text:?}");
    assert!(!text.contains("signature="), "signature in {text:?}");
    assert!(!text.contains("timestamp="), "query in {text:?}");
}

fn rejected(result: Result<KeyPermissions, ExchangeError>) -> String {
    match result {
        Err(ExchangeError::Rejected(why)) => why,
        other => panic!("expected Rejected, got {other:?}"),
    }
}

fn unreachable(result: Result<KeyPermissions, ExchangeError>) -> String {
    match result {
        Err(ExchangeError::Unreachable(why)) => why,
        other => panic!("expected Unreachable, got {other:?}"),
    }
}

/// Collects every log line written while the guard lives (this thread only, which is where a
/// `#[tokio::test]` runs everything).
struct LogCapture {
    lines: Arc<Mutex<Vec<u8>>>,
    _guard: tracing::subscriber::DefaultGuard,
}

#[derive(Clone)]
struct CaptureWriter(Arc<Mutex<Vec<u8>>>);

impl Write for CaptureWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl LogCapture {
    fn start() -> Self {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let writer = CaptureWriter(lines.clone());
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        Self {
            lines,
            _guard: tracing::subscriber::set_default(subscriber),
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.lines.lock().expect("log buffer")).into_owned()
    }
}

#[tokio::test]
async fn trade_key_reads_and_trades_but_cannot_withdraw() {
    let logs = LogCapture::start();
    let binance = Binance::testnet(Mode::Normal).await;
    let permissions = adapter(&binance)
        .key_permissions(
            KeyEnvironment::Testnet,
            &credentials(TRADE_KEY, TRADE_SECRET),
        )
        .await
        .expect("a trade key is accepted");
    assert_eq!(
        permissions,
        KeyPermissions {
            can_read: true,
            can_trade: true,
            can_withdraw: false,
            ip_restricted: false,
        }
    );
    let seen = binance.seen();
    let mut paths: Vec<&str> = seen.iter().map(|r| r.path.as_str()).collect();
    paths.sort_unstable();
    assert_eq!(paths, [ACCOUNT, RESTRICTIONS]);
    assert_signed_requests(&seen, TRADE_KEY, TRADE_SECRET);
    let logs = logs.text();
    assert_clean(&logs, TRADE_KEY, TRADE_SECRET);
    assert!(logs.contains(ACCOUNT), "the endpoint is logged: {logs}");
}

#[tokio::test]
async fn key_with_withdrawals_enabled_is_reported() {
    let binance = Binance::live(Mode::Normal).await;
    let permissions = adapter(&binance)
        .key_permissions(
            KeyEnvironment::Live,
            &credentials(WITHDRAW_KEY, WITHDRAW_SECRET),
        )
        .await
        .expect("the key is valid");
    assert!(permissions.can_withdraw);
    assert!(permissions.can_read && permissions.can_trade);
    assert_signed_requests(&binance.seen(), WITHDRAW_KEY, WITHDRAW_SECRET);
}

#[tokio::test]
async fn read_only_key_cannot_trade() {
    let binance = Binance::live(Mode::Normal).await;
    let permissions = adapter(&binance)
        .key_permissions(
            KeyEnvironment::Live,
            &credentials(READ_ONLY_KEY, READ_ONLY_SECRET),
        )
        .await
        .expect("the key is valid");
    assert_eq!(
        permissions,
        KeyPermissions {
            can_read: true,
            // The account may trade; this key may not.
            can_trade: false,
            can_withdraw: false,
            ip_restricted: false,
        }
    );
}

#[tokio::test]
async fn ip_restricted_key_is_reported() {
    let binance = Binance::live(Mode::Normal).await;
    let permissions = adapter(&binance)
        .key_permissions(KeyEnvironment::Live, &credentials(IP_KEY, IP_SECRET))
        .await
        .expect("the key is valid");
    assert!(permissions.ip_restricted);
    assert!(permissions.can_trade && !permissions.can_withdraw);
}

#[tokio::test]
async fn live_key_on_the_testnet_is_rejected_with_a_hint() {
    let logs = LogCapture::start();
    let testnet = Binance::testnet(Mode::Normal).await;
    let why = rejected(
        adapter(&testnet)
            .key_permissions(
                KeyEnvironment::Testnet,
                &credentials(LIVE_ONLY_KEY, LIVE_ONLY_SECRET),
            )
            .await,
    );
    assert_eq!(
        why,
        "Binance testnet does not accept this key. Is it a live key?"
    );
    assert_clean(&why, LIVE_ONLY_KEY, LIVE_ONLY_SECRET);
    let logs = logs.text();
    assert_clean(&logs, LIVE_ONLY_KEY, LIVE_ONLY_SECRET);
    assert!(logs.contains("status=401"), "the status is logged: {logs}");
}

#[tokio::test]
async fn unknown_key_on_live_is_rejected() {
    let live = Binance::live(Mode::Normal).await;
    let why = rejected(
        adapter(&live)
            .key_permissions(
                KeyEnvironment::Live,
                &credentials("unknownKey0000000000000000", "unknownSecret000000000000"),
            )
            .await,
    );
    assert_eq!(why, "Binance does not accept this key or this server's IP.");
}

#[tokio::test]
async fn wrong_secret_is_rejected_as_a_bad_signature() {
    let binance = Binance::live(Mode::Normal).await;
    let wrong = "NotTheRightSecret0000000000000000000000000000000000000000000000";
    let why = rejected(
        adapter(&binance)
            .key_permissions(KeyEnvironment::Live, &credentials(TRADE_KEY, wrong))
            .await,
    );
    assert!(why.contains("signature"), "{why}");
    assert_clean(&why, TRADE_KEY, wrong);
    let seen = binance.seen();
    assert!(!seen.is_empty());
    for request in &seen {
        let (payload, signature) = request.query.rsplit_once("&signature=").expect("signed");
        assert!(!signature_valid(TRADE_SECRET, payload, signature));
        assert!(
            signature_valid(wrong, payload, signature),
            "signed with what it was given"
        );
    }
}

#[tokio::test]
async fn testnet_without_sapi_falls_back_to_the_account() {
    let testnet = Binance::testnet(Mode::NoSapi).await;
    let permissions = adapter(&testnet)
        .key_permissions(
            KeyEnvironment::Testnet,
            &credentials(TRADE_KEY, TRADE_SECRET),
        )
        .await
        .expect("the testnet has no /sapi; the account answer is enough");
    // The account says canWithdraw: true, but that is the account's flag and testnet funds
    // cannot leave the testnet.
    assert_eq!(
        permissions,
        KeyPermissions {
            can_read: true,
            can_trade: true,
            can_withdraw: false,
            ip_restricted: false,
        }
    );
    assert!(binance_saw(&testnet, RESTRICTIONS), "it asked first");
}

fn binance_saw(binance: &Binance, path: &str) -> bool {
    binance.seen().iter().any(|r| r.path == path)
}

#[tokio::test]
async fn live_without_restrictions_fails_closed() {
    let live = Binance::live(Mode::NoSapi).await;
    let why = rejected(
        adapter(&live)
            .key_permissions(KeyEnvironment::Live, &credentials(TRADE_KEY, TRADE_SECRET))
            .await,
    );
    assert!(why.contains("withdraw"), "{why}");
}

#[tokio::test]
async fn server_error_is_unreachable() {
    let logs = LogCapture::start();
    let binance = Binance::live(Mode::ServerError).await;
    let why = unreachable(
        adapter(&binance)
            .key_permissions(KeyEnvironment::Live, &credentials(TRADE_KEY, TRADE_SECRET))
            .await,
    );
    assert_clean(&why, TRADE_KEY, TRADE_SECRET);
    assert!(why.contains("500"), "{why}");
    assert_clean(&logs.text(), TRADE_KEY, TRADE_SECRET);
}

#[tokio::test]
async fn rate_limit_is_unreachable() {
    let binance = Binance::live(Mode::RateLimited).await;
    let why = unreachable(
        adapter(&binance)
            .key_permissions(KeyEnvironment::Live, &credentials(TRADE_KEY, TRADE_SECRET))
            .await,
    );
    assert_eq!(why, "rate limited");
}

#[tokio::test]
async fn nothing_listening_is_unreachable_quickly() {
    let logs = LogCapture::start();
    // A port that was just free: bind, note it, close it.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("address");
    drop(listener);
    let url = format!("http://{address}");
    let exchange = adapter_with(&url, &url, Duration::from_secs(5), Arc::new(SystemClock));
    let started = Instant::now();
    let why = unreachable(
        exchange
            .key_permissions(
                KeyEnvironment::Testnet,
                &credentials(TRADE_KEY, TRADE_SECRET),
            )
            .await,
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(why, "could not connect to Binance");
    assert_clean(&logs.text(), TRADE_KEY, TRADE_SECRET);
}

#[tokio::test]
async fn silent_server_is_unreachable_within_the_timeout() {
    let logs = LogCapture::start();
    let binance = Binance::live(Mode::Hang).await;
    let exchange = adapter_with(
        &binance.url,
        &binance.url,
        Duration::from_secs(1),
        Arc::new(SystemClock),
    );
    let started = Instant::now();
    let why = unreachable(
        exchange
            .key_permissions(KeyEnvironment::Live, &credentials(TRADE_KEY, TRADE_SECRET))
            .await,
    );
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(900), "{elapsed:?}");
    // Both requests run at once, so about one timeout bounds the whole check (slack for a busy
    // CI machine; two sequential timeouts plus that slack would not fit).
    assert!(elapsed < Duration::from_millis(2500), "{elapsed:?}");
    assert_eq!(why, "Binance did not answer in time");
    assert_clean(&logs.text(), TRADE_KEY, TRADE_SECRET);
}

#[tokio::test]
async fn clock_out_of_step_is_not_blamed_on_the_key() {
    let binance = Binance::live(Mode::Normal).await;
    let clock = Arc::new(TestClock::default());
    clock.advance(time::Duration::seconds(-10));
    let exchange = adapter_with(&binance.url, &binance.url, Duration::from_secs(2), clock);
    let why = unreachable(
        exchange
            .key_permissions(KeyEnvironment::Live, &credentials(TRADE_KEY, TRADE_SECRET))
            .await,
    );
    assert!(why.contains("clock"), "{why}");
}

#[tokio::test]
async fn paper_environment_sends_nothing() {
    let binance = Binance::live(Mode::Normal).await;
    let why = rejected(
        adapter(&binance)
            .key_permissions(KeyEnvironment::Paper, &credentials(TRADE_KEY, TRADE_SECRET))
            .await,
    );
    assert!(why.contains("paper"), "{why}");
    assert!(binance.seen().is_empty());
}

#[tokio::test]
async fn testnet_and_live_use_their_own_base_urls() {
    let testnet = Binance::testnet(Mode::NoSapi).await;
    let live = Binance::live(Mode::Normal).await;
    let exchange = adapter_with(
        &testnet.url,
        &live.url,
        Duration::from_secs(2),
        Arc::new(SystemClock),
    );
    exchange
        .key_permissions(
            KeyEnvironment::Live,
            &credentials(LIVE_ONLY_KEY, LIVE_ONLY_SECRET),
        )
        .await
        .expect("live knows the live key");
    assert!(testnet.seen().is_empty());
    assert_eq!(live.seen().len(), 2);
    exchange
        .key_permissions(
            KeyEnvironment::Testnet,
            &credentials(TRADE_KEY, TRADE_SECRET),
        )
        .await
        .expect("testnet knows the trade key");
    assert_eq!(testnet.seen().len(), 2);
    assert_eq!(live.seen().len(), 2);
}

// --- orders -----------------------------------------------------------------------------------

fn order(client_order_id: &str, symbol: &str, side: OrderSide, quantity: &str) -> VenueOrder {
    VenueOrder {
        client_order_id: client_order_id.into(),
        symbol: symbol.into(),
        side,
        order_type: OrderType::Market,
        quantity: Decimal::from_str(quantity).expect("quantity"),
        // Its bound: what the trading service sends with every market order.
        limit_price: Some(price_of(symbol).unwrap_or(Decimal::ONE)),
    }
}

fn limit(client_order_id: &str, side: OrderSide, quantity: &str, price: &str) -> VenueOrder {
    VenueOrder {
        order_type: OrderType::Limit,
        limit_price: Some(Decimal::from_str(price).expect("price")),
        ..order(client_order_id, "BTCUSDT", side, quantity)
    }
}

fn dec(raw: &str) -> Decimal {
    Decimal::from_str(raw).expect("decimal")
}

fn trade_credentials() -> ApiCredentials {
    credentials(TRADE_KEY, TRADE_SECRET)
}

fn order_rejected(result: Result<VenueAck, ExchangeError>) -> String {
    match result {
        Err(ExchangeError::Rejected(why)) => why,
        other => panic!("expected Rejected, got {other:?}"),
    }
}

#[tokio::test]
async fn a_market_order_is_signed_in_the_body_and_fills() {
    let logs = LogCapture::start();
    let binance = Binance::testnet(Mode::Normal).await;
    let ack = adapter(&binance)
        .place_order(
            KeyEnvironment::Testnet,
            Some(&trade_credentials()),
            &order("cp-market-1", "BTCUSDT", OrderSide::Buy, "0.01"),
        )
        .await
        .expect("placed");
    assert_eq!(ack.status, VenueOrderStatus::Filled);
    assert_eq!(ack.filled_quantity, dec("0.01"));
    assert_eq!(ack.average_price, Some(dec("65000")));
    assert!(!ack.exchange_order_id.is_empty());
    assert_eq!(binance.executions("cp-market-1"), 1);

    let seen = binance.seen();
    let post = seen
        .iter()
        .find(|r| r.method == Method::POST && r.path == ORDER)
        .expect("a POST /api/v3/order");
    // Parameters in the form body, nothing in the URL; the key only in its header.
    assert!(post.query.is_empty(), "{post:?}");
    let (payload, signature) = post.body.rsplit_once("&signature=").expect("signed body");
    assert!(signature_valid(TRADE_SECRET, payload, signature));
    let fields = params(payload);
    assert_eq!(fields["symbol"], "BTCUSDT");
    assert_eq!(fields["side"], "BUY");
    // Immediate-or-cancel at its bound, never a bare MARKET order.
    assert_eq!(fields["type"], "LIMIT");
    assert_eq!(fields["timeInForce"], "IOC");
    assert_eq!(fields["price"], "65000");
    assert_eq!(fields["quantity"], "0.01");
    assert_eq!(fields["newClientOrderId"], "cp-market-1");
    assert_eq!(fields["recvWindow"], "5000");
    assert!(
        post.headers
            .iter()
            .any(|(n, v)| n == "x-mbx-apikey" && v == TRADE_KEY)
    );
    assert!(!format!("{post:?}").contains(TRADE_SECRET));
    assert_clean(&logs.text(), TRADE_KEY, TRADE_SECRET);
}

#[tokio::test]
async fn a_limit_order_rests_is_found_and_cancels() {
    let binance = Binance::testnet(Mode::Normal).await;
    let exchange = adapter(&binance);
    let key = trade_credentials();
    // Below the market: it rests.
    let resting = exchange
        .place_order(
            KeyEnvironment::Testnet,
            Some(&key),
            &limit("cp-limit-1", OrderSide::Buy, "0.5", "60000"),
        )
        .await
        .expect("placed");
    assert_eq!(resting.status, VenueOrderStatus::Open);
    assert_eq!(resting.filled_quantity, Decimal::ZERO);
    assert_eq!(resting.average_price, None);
    let fields = binance
        .seen()
        .iter()
        .rev()
        .find(|r| r.method == Method::POST)
        .map(|r| r.body.clone())
        .expect("posted");
    assert!(
        fields.contains("type=LIMIT&timeInForce=GTC&price=60000&"),
        "{fields}"
    );

    let found = exchange
        .find_order(KeyEnvironment::Testnet, Some(&key), "BTCUSDT", "cp-limit-1")
        .await
        .expect("looked up")
        .expect("Binance has it");
    assert_eq!(found, resting);
    let cancelled = exchange
        .cancel_order(KeyEnvironment::Testnet, Some(&key), "BTCUSDT", "cp-limit-1")
        .await
        .expect("cancelled");
    assert_eq!(cancelled.status, VenueOrderStatus::Cancelled);
    // Cancelling what is no longer open answers with how it ended.
    let again = exchange
        .cancel_order(KeyEnvironment::Testnet, Some(&key), "BTCUSDT", "cp-limit-1")
        .await
        .expect("answered");
    assert_eq!(again.status, VenueOrderStatus::Cancelled);

    // Above the market: fills at once, at the market.
    let marketable = exchange
        .place_order(
            KeyEnvironment::Testnet,
            Some(&key),
            &limit("cp-limit-2", OrderSide::Buy, "0.5", "70000"),
        )
        .await
        .expect("placed");
    assert_eq!(marketable.status, VenueOrderStatus::Filled);
    assert_eq!(marketable.average_price, Some(dec("65000")));
}

#[tokio::test]
async fn an_order_binance_never_saw_is_not_found() {
    let binance = Binance::testnet(Mode::Normal).await;
    let found = adapter(&binance)
        .find_order(
            KeyEnvironment::Testnet,
            Some(&trade_credentials()),
            "BTCUSDT",
            "cp-never-sent",
        )
        .await
        .expect("asked");
    assert_eq!(found, None);
}

#[tokio::test]
async fn sending_an_open_order_again_answers_with_the_first_and_trades_once() {
    let binance = Binance::testnet(Mode::Normal).await;
    let exchange = adapter(&binance);
    let key = trade_credentials();
    let resting = limit("cp-twice", OrderSide::Buy, "0.1", "50000");
    let first = exchange
        .place_order(KeyEnvironment::Testnet, Some(&key), &resting)
        .await
        .expect("placed");
    let second = exchange
        .place_order(KeyEnvironment::Testnet, Some(&key), &resting)
        .await
        .expect("the duplicate is looked up");
    assert_eq!(first, second);
    assert_eq!(binance.executions("cp-twice"), 1);
}

#[tokio::test]
async fn a_lost_reply_is_a_timeout_and_the_order_is_found_afterwards() {
    let logs = LogCapture::start();
    let binance = Binance::testnet(Mode::LoseReplies).await;
    let exchange = adapter_with(
        &binance.url,
        &binance.url,
        Duration::from_secs(1),
        Arc::new(SystemClock),
    );
    let key = trade_credentials();
    let sent = exchange
        .place_order(
            KeyEnvironment::Testnet,
            Some(&key),
            &order("cp-lost", "ETHUSDT", OrderSide::Buy, "1"),
        )
        .await;
    // Sent, executed, unanswered: the outcome is unknown, not "unreachable".
    assert!(matches!(sent, Err(ExchangeError::Timeout(_))), "{sent:?}");
    binance.set_mode(Mode::Normal);
    let found = exchange
        .find_order(KeyEnvironment::Testnet, Some(&key), "ETHUSDT", "cp-lost")
        .await
        .expect("asked")
        .expect("Binance executed it");
    assert_eq!(found.status, VenueOrderStatus::Filled);
    assert_eq!(found.average_price, Some(dec("3200")));
    assert_eq!(binance.executions("cp-lost"), 1);
    assert_clean(&logs.text(), TRADE_KEY, TRADE_SECRET);
}

#[tokio::test]
async fn a_server_error_on_an_order_leaves_its_outcome_unknown() {
    let binance = Binance::testnet(Mode::ServerError).await;
    let exchange = adapter(&binance);
    let key = trade_credentials();
    let sent = exchange
        .place_order(
            KeyEnvironment::Testnet,
            Some(&key),
            &order("cp-500", "BTCUSDT", OrderSide::Buy, "0.01"),
        )
        .await;
    assert!(matches!(sent, Err(ExchangeError::Timeout(_))), "{sent:?}");
    let lookup = exchange
        .find_order(KeyEnvironment::Testnet, Some(&key), "BTCUSDT", "cp-500")
        .await;
    assert!(
        matches!(lookup, Err(ExchangeError::Unreachable(_))),
        "{lookup:?}"
    );
    let price = exchange.price(KeyEnvironment::Testnet, "BTCUSDT").await;
    assert!(
        price.as_ref().is_err_and(ExchangeError::is_outage),
        "{price:?}"
    );
}

#[tokio::test]
async fn a_rate_limited_order_waits_as_long_as_binance_asks() {
    let binance = Binance::testnet(Mode::RateLimited).await;
    let sent = adapter(&binance)
        .place_order(
            KeyEnvironment::Testnet,
            Some(&trade_credentials()),
            &order("cp-429", "BTCUSDT", OrderSide::Buy, "0.01"),
        )
        .await;
    assert_eq!(sent, Err(ExchangeError::RateLimited(30)));
}

#[tokio::test]
async fn refused_orders_are_explained_in_our_words_and_trade_nothing() {
    let logs = LogCapture::start();
    let binance = Binance::testnet(Mode::Normal).await;
    let exchange = adapter(&binance);
    let key = trade_credentials();
    let refusal = |why: &str| {
        for binance_text in [
            "Filter failure",
            "insufficient balance for",
            "Invalid symbol",
            "Invalid API-key",
        ] {
            assert!(
                !why.contains(binance_text),
                "Binance's words reached the trader: {why}"
            );
        }
    };

    let why = order_rejected(
        exchange
            .place_order(
                KeyEnvironment::Testnet,
                Some(&key),
                &order("cp-lot", "BTCUSDT", OrderSide::Buy, "0.000001"),
            )
            .await,
    );
    assert!(why.contains("step size"), "{why}");
    refusal(&why);

    let why = order_rejected(
        exchange
            .place_order(
                KeyEnvironment::Testnet,
                Some(&key),
                &order("cp-rich", "BTCUSDT", OrderSide::Buy, "10"),
            )
            .await,
    );
    assert!(why.contains("balance is too low"), "{why}");
    refusal(&why);

    let why = order_rejected(
        exchange
            .place_order(
                KeyEnvironment::Testnet,
                Some(&key),
                &order("cp-doge", "DOGEUSDT", OrderSide::Buy, "1"),
            )
            .await,
    );
    assert!(why.contains("does not list"), "{why}");
    refusal(&why);

    let why = order_rejected(
        exchange
            .place_order(
                KeyEnvironment::Testnet,
                Some(&credentials(READ_ONLY_KEY, READ_ONLY_SECRET)),
                &order("cp-read-only", "BTCUSDT", OrderSide::Buy, "0.01"),
            )
            .await,
    );
    assert!(
        why.contains("does not accept this key for trading"),
        "{why}"
    );
    refusal(&why);

    // A symbol that would need encoding is refused before anything is sent.
    let before = binance.seen().len();
    let why = order_rejected(
        exchange
            .place_order(
                KeyEnvironment::Testnet,
                Some(&key),
                &order("cp-inject", "BTCUSDT&side=SELL", OrderSide::Buy, "0.01"),
            )
            .await,
    );
    assert!(why.contains("symbol"), "{why}");
    assert_eq!(binance.seen().len(), before);

    for id in ["cp-lot", "cp-rich", "cp-doge", "cp-read-only", "cp-inject"] {
        assert_eq!(binance.executions(id), 0, "{id}");
    }
    assert_clean(&logs.text(), TRADE_KEY, TRADE_SECRET);
}

#[tokio::test]
async fn the_price_is_public_and_unknown_symbols_are_refused() {
    let binance = Binance::testnet(Mode::Normal).await;
    let exchange = adapter(&binance);
    assert_eq!(
        exchange
            .price(KeyEnvironment::Testnet, "SOLUSDT")
            .await
            .expect("price"),
        dec("150")
    );
    let ticker = binance
        .seen()
        .into_iter()
        .find(|r| r.path == TICKER)
        .expect("asked the ticker");
    assert_eq!(ticker.query, "symbol=SOLUSDT");
    assert!(
        !ticker.headers.iter().any(|(n, _)| n == "x-mbx-apikey"),
        "a public endpoint gets no key"
    );
    let unknown = exchange.price(KeyEnvironment::Testnet, "DOGEUSDT").await;
    assert!(
        matches!(unknown, Err(ExchangeError::Rejected(_))),
        "{unknown:?}"
    );
}

#[tokio::test]
async fn orders_without_a_key_or_on_paper_send_nothing() {
    let binance = Binance::testnet(Mode::Normal).await;
    let exchange = adapter(&binance);
    let market = order("cp-nokey", "BTCUSDT", OrderSide::Buy, "0.01");
    order_rejected(
        exchange
            .place_order(KeyEnvironment::Testnet, None, &market)
            .await,
    );
    let why = order_rejected(
        exchange
            .place_order(KeyEnvironment::Paper, Some(&trade_credentials()), &market)
            .await,
    );
    assert!(why.contains("paper"), "{why}");
    assert!(binance.seen().is_empty());
}
