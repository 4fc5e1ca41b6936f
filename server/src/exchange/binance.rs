//! Signed REST adapter for Binance spot: what an API key may do, placing, looking up and
//! cancelling orders by our client order id, and the last price.
//!
//! Requests are signed like Binance's `SIGNED` endpoints: HMAC-SHA256 of the query string with
//! the API secret, the key in `X-MBX-APIKEY`. The key, the secret, the signature and the full
//! URL never reach an error or a log line; logs name the endpoint path and the HTTP status.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use std::str::FromStr;

use async_trait::async_trait;
use domain::keys::{
    ApiCredentials, Exchange, ExchangeError, ExchangeName, KeyEnvironment, KeyPermissions,
    OrderType, VenueAck, VenueOrder, VenueOrderStatus,
};
use domain::ports::Clock;
use domain::risk::OrderSide;
use hmac::{Hmac, Mac};
use reqwest::header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use reqwest::{Method, StatusCode, Url};
use rust_decimal::Decimal;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use sha2::Sha256;

const ACCOUNT_PATH: &str = "/api/v3/account";
const RESTRICTIONS_PATH: &str = "/sapi/v1/account/apiRestrictions";
const ORDER_PATH: &str = "/api/v3/order";
const TICKER_PATH: &str = "/api/v3/ticker/price";
/// How long to back off when Binance rate-limits without saying for how long.
const DEFAULT_BACKOFF_SECS: u64 = 60;
/// The longest `Retry-After` we carry (an hour, as the circuit breaker's longest pause).
const MAX_RETRY_AFTER_SECS: u64 = 3600;
/// Binance's default; kept small so a captured request cannot be replayed for long.
const RECV_WINDOW_MS: u32 = 5000;

const TESTNET_NOT_ACCEPTED: &str = "Binance testnet does not accept this key. Is it a live key?";
const LIVE_NOT_ACCEPTED: &str = "Binance does not accept this key or this server's IP.";
const BAD_SIGNATURE: &str = "Binance says the request signature is invalid. Check the API secret \
                             (CryptoPulse supports HMAC keys, not RSA or Ed25519 keys).";
const RESTRICTIONS_UNREADABLE: &str = "Binance did not say whether this key can withdraw or is \
                                       IP-restricted, so it cannot be accepted. Try again later.";
const NOT_UNDERSTOOD: &str = "Binance sent an answer CryptoPulse does not understand";

/// Where the adapter finds Binance and how long it waits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BinanceSettings {
    pub testnet_url: String,
    pub live_url: String,
    /// Time to open a connection (capped at `timeout`).
    pub connect_timeout: Duration,
    /// Time for a whole request, connection included.
    pub timeout: Duration,
}

impl BinanceSettings {
    pub const DEFAULT_TESTNET_URL: &str = "https://testnet.binance.vision";
    pub const DEFAULT_LIVE_URL: &str = "https://api.binance.com";
}

impl Default for BinanceSettings {
    fn default() -> Self {
        Self {
            testnet_url: Self::DEFAULT_TESTNET_URL.into(),
            live_url: Self::DEFAULT_LIVE_URL.into(),
            connect_timeout: Duration::from_secs(3),
            timeout: Duration::from_secs(10),
        }
    }
}

/// Configuration the adapter cannot work with; reported at startup.
#[derive(Debug, thiserror::Error)]
pub enum BinanceSetupError {
    #[error("the Binance {environment} URL {url:?} is not usable: {reason}")]
    Url {
        environment: &'static str,
        url: String,
        reason: &'static str,
    },
    #[error("could not build the HTTP client for Binance: {0}")]
    Client(#[from] reqwest::Error),
}

/// The Binance spot adapter (testnet and live).
#[derive(Debug, Clone)]
pub struct BinanceExchange {
    client: reqwest::Client,
    /// Base URLs without a trailing slash.
    testnet: String,
    live: String,
    clock: Arc<dyn Clock>,
}

impl BinanceExchange {
    pub fn new(
        settings: BinanceSettings,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, BinanceSetupError> {
        let testnet = base_url("testnet", &settings.testnet_url)?;
        let live = base_url("live", &settings.live_url)?;
        let client = reqwest::Client::builder()
            .connect_timeout(settings.connect_timeout.min(settings.timeout))
            .timeout(settings.timeout)
            // A followed redirect would carry X-MBX-APIKEY to wherever it points.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("CryptoPulse/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            client,
            testnet,
            live,
            clock,
        })
    }

    fn base(&self, environment: KeyEnvironment) -> Result<&str, ExchangeError> {
        match environment {
            KeyEnvironment::Testnet => Ok(&self.testnet),
            KeyEnvironment::Live => Ok(&self.live),
            KeyEnvironment::Paper => Err(ExchangeError::Rejected(
                "Binance has no paper environment; use the built-in paper exchange.".into(),
            )),
        }
    }

    /// One signed request. `params` go first, then `timestamp` and `recvWindow`; a POST carries
    /// them as a form body, other methods as the query. Only the status, the body and a
    /// `Retry-After` come back; transport errors are already mapped.
    async fn signed(
        &self,
        method: Method,
        environment: KeyEnvironment,
        path: &'static str,
        params: &[(&'static str, String)],
        credentials: &ApiCredentials,
    ) -> Result<Reply, ExchangeError> {
        let base = self.base(environment)?;
        let timestamp_ms = self.clock.now().unix_timestamp_nanos() / 1_000_000;
        let mut payload = String::new();
        for (name, value) in params {
            payload.push_str(&format!("{name}={value}&"));
        }
        payload.push_str(&format!(
            "timestamp={timestamp_ms}&recvWindow={RECV_WINDOW_MS}"
        ));
        let signature = sign(credentials.api_secret(), &payload)?;
        let mut api_key =
            HeaderValue::from_str(credentials.api_key().expose_secret()).map_err(|_| {
                ExchangeError::Rejected(
                    "The API key contains characters Binance does not use.".into(),
                )
            })?;
        // Keeps the key out of any Debug output of the request (hyper, reqwest, our own).
        api_key.set_sensitive(true);
        let signed = format!("{payload}&signature={signature}");
        let request = if method == Method::POST {
            self.client
                .post(format!("{base}{path}"))
                .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(signed)
        } else {
            self.client
                .request(method.clone(), format!("{base}{path}?{signed}"))
        };
        let sent = request.header("X-MBX-APIKEY", api_key).send().await;
        let response = sent.map_err(|e| transport_error(environment, &method, path, &e))?;
        reply(environment, &method, path, response).await
    }
}

/// Reads a response. The body read can fail too (a reset mid-answer), mapped like the send.
async fn reply(
    environment: KeyEnvironment,
    method: &Method,
    path: &'static str,
    response: reqwest::Response,
) -> Result<Reply, ExchangeError> {
    let status = response.status();
    let retry_after = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        // Honoured up to the breaker's longest pause; an absurd value is not carried further.
        .map(|secs| secs.min(MAX_RETRY_AFTER_SECS));
    let body = response
        .bytes()
        .await
        .map_err(|e| transport_error(environment, method, path, &e))?;
    tracing::debug!(%environment, %method, endpoint = path, status = status.as_u16(), "Binance answered");
    Ok(Reply {
        status,
        body: body.to_vec(),
        retry_after,
    })
}

#[async_trait]
impl Exchange for BinanceExchange {
    fn name(&self) -> ExchangeName {
        ExchangeName::Binance
    }

    async fn key_permissions(
        &self,
        environment: KeyEnvironment,
        credentials: &ApiCredentials,
    ) -> Result<KeyPermissions, ExchangeError> {
        self.base(environment)?;
        // Both at once, so a slow Binance costs one timeout, not two.
        let (account, restrictions) = tokio::join!(
            self.signed(Method::GET, environment, ACCOUNT_PATH, &[], credentials),
            self.signed(
                Method::GET,
                environment,
                RESTRICTIONS_PATH,
                &[],
                credentials
            ),
        );
        // The account answer decides first: an unknown key is "not accepted", whatever /sapi says.
        let account = parse_account(environment, account?)?;
        let restrictions = parse_restrictions(environment, restrictions?)?;
        Ok(combine(&account, restrictions.as_ref()))
    }

    async fn place_order(
        &self,
        environment: KeyEnvironment,
        credentials: Option<&ApiCredentials>,
        order: &VenueOrder,
    ) -> Result<VenueAck, ExchangeError> {
        let credentials = credentials.ok_or_else(needs_a_key)?;
        let params = order_params(order)?;
        let reply = self
            .signed(Method::POST, environment, ORDER_PATH, &params, credentials)
            .await?;
        if reply.status.is_success() {
            return parse_order(environment, &reply);
        }
        if error_of(&reply).is_some_and(|e| e.is_duplicate_order()) {
            // Binance refuses a client order id that is still open: that is our earlier attempt.
            tracing::info!(%environment, "Binance already has this order; looking it up");
            return self
                .find_order(
                    environment,
                    Some(credentials),
                    &order.symbol,
                    &order.client_order_id,
                )
                .await?
                .ok_or_else(|| {
                    ExchangeError::Timeout(
                        "Binance reports the order but cannot show it yet".into(),
                    )
                });
        }
        Err(order_refusal(
            environment,
            &Method::POST,
            ORDER_PATH,
            &reply,
        ))
    }

    async fn find_order(
        &self,
        environment: KeyEnvironment,
        credentials: Option<&ApiCredentials>,
        symbol: &str,
        client_order_id: &str,
    ) -> Result<Option<VenueAck>, ExchangeError> {
        let credentials = credentials.ok_or_else(needs_a_key)?;
        let params = lookup_params(symbol, client_order_id)?;
        let reply = self
            .signed(Method::GET, environment, ORDER_PATH, &params, credentials)
            .await?;
        if reply.status.is_success() {
            return parse_order(environment, &reply).map(Some);
        }
        if error_of(&reply).is_some_and(|e| e.code == ORDER_DOES_NOT_EXIST) {
            return Ok(None);
        }
        Err(order_refusal(environment, &Method::GET, ORDER_PATH, &reply))
    }

    async fn cancel_order(
        &self,
        environment: KeyEnvironment,
        credentials: Option<&ApiCredentials>,
        symbol: &str,
        client_order_id: &str,
    ) -> Result<VenueAck, ExchangeError> {
        let credentials = credentials.ok_or_else(needs_a_key)?;
        let params = lookup_params(symbol, client_order_id)?;
        let reply = self
            .signed(
                Method::DELETE,
                environment,
                ORDER_PATH,
                &params,
                credentials,
            )
            .await?;
        if reply.status.is_success() {
            return parse_order(environment, &reply);
        }
        if error_of(&reply).is_some_and(|e| e.code == UNKNOWN_ORDER) {
            // Not open any more: it filled or was cancelled meanwhile; answer with how it ended.
            return self
                .find_order(environment, Some(credentials), symbol, client_order_id)
                .await?
                .ok_or_else(|| {
                    ExchangeError::Rejected("Binance has no order with this id.".into())
                });
        }
        Err(order_refusal(
            environment,
            &Method::DELETE,
            ORDER_PATH,
            &reply,
        ))
    }

    async fn price(
        &self,
        environment: KeyEnvironment,
        symbol: &str,
    ) -> Result<Decimal, ExchangeError> {
        let base = self.base(environment)?;
        let symbol = param("symbol", symbol)?;
        let sent = self
            .client
            .get(format!("{base}{TICKER_PATH}?symbol={symbol}"))
            .send()
            .await;
        let response =
            sent.map_err(|e| transport_error(environment, &Method::GET, TICKER_PATH, &e))?;
        let reply = reply(environment, &Method::GET, TICKER_PATH, response).await?;
        if !reply.status.is_success() {
            return Err(order_refusal(
                environment,
                &Method::GET,
                TICKER_PATH,
                &reply,
            ));
        }
        serde_json::from_slice::<Ticker>(&reply.body)
            .ok()
            .and_then(|t| Decimal::from_str(&t.price).ok())
            .filter(|p| *p > Decimal::ZERO)
            .ok_or_else(|| {
                tracing::warn!(%environment, endpoint = TICKER_PATH, "Binance price not understood");
                ExchangeError::Unreachable(NOT_UNDERSTOOD.into())
            })
    }
}

fn needs_a_key() -> ExchangeError {
    ExchangeError::Rejected("Binance orders are signed with an API key; none was given.".into())
}

/// A value Binance gets as-is. Everything we send is plain ASCII (symbols, decimals, our own
/// client order ids), so anything else is refused rather than encoded.
fn param(name: &'static str, value: &str) -> Result<String, ExchangeError> {
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

fn order_params(order: &VenueOrder) -> Result<Vec<(&'static str, String)>, ExchangeError> {
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
        OrderType::Market => params.push(("type", "MARKET".into())),
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

fn lookup_params(
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
struct OrderReply {
    order_id: i64,
    status: String,
    executed_qty: String,
    /// Binance's spelling.
    cummulative_quote_qty: String,
}

#[derive(Debug, Deserialize)]
struct Ticker {
    price: String,
}

fn parse_order(environment: KeyEnvironment, reply: &Reply) -> Result<VenueAck, ExchangeError> {
    let not_understood = || {
        tracing::warn!(%environment, endpoint = ORDER_PATH, "Binance order answer not understood");
        // The order may exist; a retry looks it up again rather than sending it twice.
        ExchangeError::Timeout(NOT_UNDERSTOOD.into())
    };
    let order: OrderReply = serde_json::from_slice(&reply.body).map_err(|_| not_understood())?;
    let filled = Decimal::from_str(&order.executed_qty).map_err(|_| not_understood())?;
    let quote = Decimal::from_str(&order.cummulative_quote_qty).map_err(|_| not_understood())?;
    let status = match order.status.as_str() {
        "FILLED" => VenueOrderStatus::Filled,
        "NEW" | "PENDING_NEW" | "PARTIALLY_FILLED" | "PENDING_CANCEL" => VenueOrderStatus::Open,
        // EXPIRED: a market order that found too little liquidity; what filled is kept.
        "CANCELED" | "EXPIRED" | "EXPIRED_IN_MATCH" => VenueOrderStatus::Cancelled,
        "REJECTED" => VenueOrderStatus::Rejected("Binance rejected the order.".into()),
        _ => return Err(not_understood()),
    };
    // Old orders report a negative quote amount ("not recorded"): then no average price.
    let average_price = (filled > Decimal::ZERO && quote >= Decimal::ZERO)
        .then(|| (quote / filled).round_dp(8).normalize());
    Ok(VenueAck {
        exchange_order_id: order.order_id.to_string(),
        status,
        filled_quantity: filled.normalize(),
        average_price,
    })
}

fn error_of(reply: &Reply) -> Option<BinanceErrorBody> {
    serde_json::from_slice(&reply.body).ok()
}

/// Maps a refused order request. The trader sees our words, never Binance's message.
fn order_refusal(
    environment: KeyEnvironment,
    method: &Method,
    path: &'static str,
    reply: &Reply,
) -> ExchangeError {
    let status = reply.status;
    let code = error_of(reply).map(|e| e.code);
    tracing::warn!(%environment, %method, endpoint = path, status = status.as_u16(), code, "Binance refused the request");
    if status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::IM_A_TEAPOT
        || matches!(code, Some(-1003 | -1015))
    {
        return ExchangeError::RateLimited(reply.retry_after.unwrap_or(DEFAULT_BACKOFF_SECS));
    }
    if status.is_server_error() {
        let why = format!("Binance answered HTTP {}", status.as_u16());
        // Binance: a 5XX means the execution status is unknown, it may have gone through.
        return if *method == Method::GET {
            ExchangeError::Unreachable(why)
        } else {
            ExchangeError::Timeout(why)
        };
    }
    let rejected = |why: &str| ExchangeError::Rejected(why.to_owned());
    match code {
        Some(-1022) => rejected(BAD_SIGNATURE),
        Some(-1021) => {
            ExchangeError::Unreachable("this server's clock is out of step with Binance's".into())
        }
        Some(-2015 | -2014 | -2008 | -1002) => rejected(match environment {
            KeyEnvironment::Testnet => "Binance testnet does not accept this key for trading.",
            _ => "Binance does not accept this key for trading (or this server's IP).",
        }),
        Some(-2010) if error_of(reply).is_some_and(|e| e.is_insufficient_balance()) => {
            rejected("The Binance account's balance is too low for this order.")
        }
        Some(-2010) => rejected("Binance refused the order."),
        Some(-1013) => rejected(
            "Binance refused the quantity or price: it does not fit the symbol's step size, tick \
             size or minimum order value.",
        ),
        Some(-1121) => rejected("Binance does not list this symbol."),
        Some(-2011) => rejected("Binance has no open order with this id."),
        Some(code) if status.is_client_error() => {
            ExchangeError::Rejected(format!("Binance refused the order (code {code})."))
        }
        _ if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN => {
            rejected("Binance does not accept this key for trading.")
        }
        _ => ExchangeError::Unreachable(format!("Binance answered HTTP {}", status.as_u16())),
    }
}

struct Reply {
    status: StatusCode,
    body: Vec<u8>,
    /// Seconds, when Binance asks us to back off.
    retry_after: Option<u64>,
}

/// `GET /api/v3/account`, the part we use. Its `canWithdraw` and `canDeposit` describe the
/// account, not the key (they are true for a read-only key too), so they are not read.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Account {
    can_trade: bool,
}

/// `GET /sapi/v1/account/apiRestrictions`: what this key may do.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Restrictions {
    ip_restrict: bool,
    enable_reading: Option<bool>,
    enable_spot_and_margin_trading: bool,
    enable_withdrawals: bool,
}

/// Binance's error body: `{"code":-2015,"msg":"..."}`. The code decides; the message is only
/// compared with the two texts Binance uses to tell -2010 refusals apart, and nothing Binance
/// echoes reaches the trader or the logs.
#[derive(Debug, Deserialize)]
struct BinanceErrorBody {
    code: i64,
    #[serde(default)]
    msg: String,
}

/// `GET /api/v3/order` for an id Binance does not know.
const ORDER_DOES_NOT_EXIST: i64 = -2013;
/// `DELETE /api/v3/order` for an order that is not open (or unknown).
const UNKNOWN_ORDER: i64 = -2011;

impl BinanceErrorBody {
    fn is_duplicate_order(&self) -> bool {
        self.code == -2010 && self.msg.starts_with("Duplicate order sent")
    }

    fn is_insufficient_balance(&self) -> bool {
        self.code == -2010 && self.msg.starts_with("Account has insufficient balance")
    }
}

fn combine(account: &Account, restrictions: Option<&Restrictions>) -> KeyPermissions {
    match restrictions {
        Some(r) => KeyPermissions {
            can_read: r.enable_reading.unwrap_or(true),
            can_trade: account.can_trade && r.enable_spot_and_margin_trading,
            can_withdraw: r.enable_withdrawals,
            ip_restricted: r.ip_restrict,
        },
        // Testnet only (live fails closed before this): the Spot Test Network has no /sapi
        // endpoints and no withdrawals at all, its funds cannot leave it.
        None => KeyPermissions {
            can_read: true,
            can_trade: account.can_trade,
            can_withdraw: false,
            ip_restricted: false,
        },
    }
}

fn parse_account(environment: KeyEnvironment, reply: Reply) -> Result<Account, ExchangeError> {
    if !reply.status.is_success() {
        return Err(refusal(environment, ACCOUNT_PATH, &reply));
    }
    serde_json::from_slice(&reply.body).map_err(|_| {
        tracing::warn!(%environment, endpoint = ACCOUNT_PATH, "Binance account answer not understood");
        ExchangeError::Unreachable(NOT_UNDERSTOOD.into())
    })
}

fn parse_restrictions(
    environment: KeyEnvironment,
    reply: Reply,
) -> Result<Option<Restrictions>, ExchangeError> {
    if reply.status == StatusCode::NOT_FOUND && environment == KeyEnvironment::Testnet {
        tracing::debug!(
            endpoint = RESTRICTIONS_PATH,
            "testnet has no /sapi; using the account alone"
        );
        return Ok(None);
    }
    if reply.status == StatusCode::NOT_FOUND {
        tracing::warn!(%environment, endpoint = RESTRICTIONS_PATH, status = 404, "key restrictions unavailable; refusing");
        return Err(ExchangeError::Rejected(RESTRICTIONS_UNREADABLE.into()));
    }
    if !reply.status.is_success() {
        return Err(refusal(environment, RESTRICTIONS_PATH, &reply));
    }
    match serde_json::from_slice(&reply.body) {
        Ok(restrictions) => Ok(Some(restrictions)),
        Err(_) => {
            tracing::warn!(%environment, endpoint = RESTRICTIONS_PATH, "key restrictions not understood; refusing");
            Err(ExchangeError::Rejected(RESTRICTIONS_UNREADABLE.into()))
        }
    }
}

/// Maps a non-success answer. "Rejected" means the key itself is the problem (a re-check
/// suspends it); everything else is "Unreachable" and changes nothing.
fn refusal(environment: KeyEnvironment, path: &'static str, reply: &Reply) -> ExchangeError {
    let status = reply.status;
    let code = serde_json::from_slice::<BinanceErrorBody>(&reply.body)
        .ok()
        .map(|e| e.code);
    tracing::warn!(%environment, endpoint = path, status = status.as_u16(), code, "Binance refused the request");
    let not_accepted = || {
        ExchangeError::Rejected(match environment {
            KeyEnvironment::Testnet => TESTNET_NOT_ACCEPTED.into(),
            _ => LIVE_NOT_ACCEPTED.into(),
        })
    };
    if status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::IM_A_TEAPOT {
        return ExchangeError::Unreachable("rate limited".into());
    }
    if status.is_server_error() {
        return ExchangeError::Unreachable(format!("Binance answered HTTP {}", status.as_u16()));
    }
    match code {
        Some(-1022) => ExchangeError::Rejected(BAD_SIGNATURE.into()),
        // Not the key's fault: this server's clock is off (or the request sat in a queue).
        Some(-1021) => {
            ExchangeError::Unreachable("this server's clock is out of step with Binance's".into())
        }
        // Invalid key / IP / permission, bad key format, unknown key id, unauthorized.
        Some(-2015 | -2014 | -2008 | -1002) => not_accepted(),
        _ if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN => {
            not_accepted()
        }
        _ => ExchangeError::Unreachable(format!("Binance answered HTTP {}", status.as_u16())),
    }
}

/// Never formats `err` itself: reqwest's message includes the URL, and so the signature.
/// A GET that fails changed nothing. A POST or DELETE that fails after connecting may have been
/// acted on: that is a `Timeout` (outcome unknown), resolved later by looking the order up.
fn transport_error(
    environment: KeyEnvironment,
    method: &Method,
    path: &'static str,
    err: &reqwest::Error,
) -> ExchangeError {
    let (kind, message) = if err.is_timeout() {
        ("timeout", "Binance did not answer in time")
    } else if err.is_connect() {
        ("connect", "could not connect to Binance")
    } else {
        ("transport", "the request to Binance failed")
    };
    tracing::warn!(%environment, %method, endpoint = path, kind, "Binance request failed");
    if *method != Method::GET && !err.is_connect() {
        ExchangeError::Timeout(message.into())
    } else {
        ExchangeError::Unreachable(message.into())
    }
}

/// `hex(HMAC-SHA256(secret, payload))`, as Binance's `SIGNED` endpoints expect.
fn sign(secret: &SecretString, payload: &str) -> Result<String, ExchangeError> {
    // HMAC accepts keys of any length; the error arm is unreachable in practice.
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.expose_secret().as_bytes()).map_err(|_| {
            ExchangeError::Rejected("The API secret cannot be used for signing.".into())
        })?;
    mac.update(payload.as_bytes());
    Ok(hex::encode(mac.finalize().into_bytes()))
}

/// Checks a configured base URL: https (plain http only to this machine, for stand-ins), no
/// query or fragment. Returned without a trailing slash.
fn base_url(environment: &'static str, raw: &str) -> Result<String, BinanceSetupError> {
    let fail = |reason| BinanceSetupError::Url {
        environment,
        url: raw.to_owned(),
        reason,
    };
    let url = Url::parse(raw.trim()).map_err(|_| fail("not a URL"))?;
    let loopback = url
        .host_str()
        .map(|h| h.trim_start_matches('[').trim_end_matches(']'))
        .is_some_and(|h| h == "localhost" || h.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback()));
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        "http" => return Err(fail("plain http is only allowed to this machine")),
        _ => return Err(fail("the scheme must be https")),
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(fail("it must not have a query or fragment"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(fail("it must not carry credentials"));
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

#[cfg(test)]
mod tests {
    use domain::ports::SystemClock;

    use super::*;

    #[test]
    fn signature_matches_binance_documented_example() {
        // The HMAC example from Binance's spot REST API documentation.
        let secret =
            SecretString::from("NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j");
        let payload = "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1\
                       &recvWindow=5000&timestamp=1499827319559";
        assert_eq!(
            sign(&secret, payload).expect("HMAC takes any key"),
            "c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71"
        );
    }

    #[test]
    fn base_urls_must_be_https_except_to_this_machine() {
        let ok = |raw: &str| base_url("live", raw).expect("usable URL");
        assert_eq!(ok("https://api.binance.com"), "https://api.binance.com");
        assert_eq!(ok("https://api.binance.com/"), "https://api.binance.com");
        assert_eq!(ok("http://127.0.0.1:8080/"), "http://127.0.0.1:8080");
        assert_eq!(ok("http://localhost:1"), "http://localhost:1");
        assert_eq!(ok("http://[::1]:1"), "http://[::1]:1");
        for bad in [
            "http://api.binance.com",
            "ftp://api.binance.com",
            "https://api.binance.com/?x=1",
            "https://user:pw@api.binance.com",
            "api.binance.com",
        ] {
            assert!(base_url("live", bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn defaults_point_at_binance() {
        let settings = BinanceSettings::default();
        assert_eq!(settings.testnet_url, "https://testnet.binance.vision");
        assert_eq!(settings.live_url, "https://api.binance.com");
        assert!(BinanceExchange::new(settings, Arc::new(SystemClock)).is_ok());
    }

    #[tokio::test]
    async fn paper_environment_is_refused_without_a_request() {
        let settings = BinanceSettings {
            // Nothing listens here; a request would fail as Unreachable, not Rejected.
            testnet_url: "http://127.0.0.1:9".into(),
            live_url: "http://127.0.0.1:9".into(),
            ..BinanceSettings::default()
        };
        let exchange =
            BinanceExchange::new(settings, Arc::new(SystemClock)).expect("valid settings");
        let credentials = ApiCredentials::parse(
            SecretString::from("binance-key-0001"),
            SecretString::from("binance-secret-0001"),
        )
        .expect("well-formed credentials");
        let err = exchange
            .key_permissions(KeyEnvironment::Paper, &credentials)
            .await
            .expect_err("Binance has no paper environment");
        assert!(matches!(err, ExchangeError::Rejected(_)), "{err:?}");
    }

    #[test]
    fn account_level_withdraw_flag_does_not_make_a_key_withdraw_capable() {
        let account: Account = serde_json::from_str(
            r#"{"canTrade":true,"canWithdraw":true,"canDeposit":true,"permissions":["SPOT"]}"#,
        )
        .expect("account JSON");
        let restrictions: Restrictions = serde_json::from_str(
            r#"{"ipRestrict":false,"createTime":1698645219000,"enableReading":true,
                "enableWithdrawals":false,"enableSpotAndMarginTrading":true}"#,
        )
        .expect("restrictions JSON");
        let permissions = combine(&account, Some(&restrictions));
        assert!(!permissions.can_withdraw);
        assert!(permissions.can_trade && permissions.can_read);
    }
}
