//! Binance adapter against a local stand-in (written by the exchange helper).
//!
//! The stand-in is a small axum server on 127.0.0.1:0 that behaves like Binance's signed REST
//! endpoints for a few recorded keys: it checks `X-MBX-APIKEY`, the `timestamp`/`recvWindow` and
//! the HMAC-SHA256 signature, answers with recorded JSON, and keeps every request it saw.

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use domain::keys::{ApiCredentials, Exchange, ExchangeError, KeyEnvironment, KeyPermissions};
use domain::ports::{Clock, SystemClock};
use hmac::{Hmac, Mac};
use secrecy::SecretString;
use serde_json::{Value, json};
use server::exchange::{BinanceExchange, BinanceSettings};
use sha2::Sha256;

use crate::helpers::TestClock;

const ACCOUNT: &str = "/api/v3/account";
const RESTRICTIONS: &str = "/sapi/v1/account/apiRestrictions";

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
    /// Never answers.
    Hang,
}

/// A request as the stand-in saw it.
#[derive(Debug, Clone)]
struct SeenRequest {
    path: String,
    query: String,
    headers: Vec<(String, String)>,
}

struct StandIn {
    keys: HashMap<&'static str, RecordedKey>,
    mode: Mode,
    seen: Mutex<Vec<SeenRequest>>,
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
            mode,
            seen: Mutex::new(Vec::new()),
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

    fn seen(&self) -> Vec<SeenRequest> {
        self.state.seen.lock().expect("stand-in lock").clone()
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

fn now_ms() -> i128 {
    SystemClock.now().unix_timestamp_nanos() / 1_000_000
}

async fn handle(State(state): State<Arc<StandIn>>, uri: Uri, headers: HeaderMap) -> Response {
    let path = uri.path().to_owned();
    let query = uri.query().unwrap_or_default().to_owned();
    state.seen.lock().expect("stand-in lock").push(SeenRequest {
        path: path.clone(),
        query: query.clone(),
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

    match state.mode {
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
        Mode::Hang => {
            tokio::time::sleep(Duration::from_secs(60)).await;
            return StatusCode::GATEWAY_TIMEOUT.into_response();
        }
        Mode::Normal | Mode::NoSapi => {}
    }
    let known_path = path == ACCOUNT || (path == RESTRICTIONS && state.mode == Mode::Normal);
    if !known_path {
        // What the real testnet does for /sapi: a bare 404.
        return StatusCode::NOT_FOUND.into_response();
    }

    let Some(recorded) = headers
        .get("x-mbx-apikey")
        .and_then(|v| v.to_str().ok())
        .and_then(|key| state.keys.get(key))
    else {
        return binance_error(
            StatusCode::UNAUTHORIZED,
            -2015,
            "Invalid API-key, IP, or permissions for action.",
        );
    };

    // The signature covers the exact query string before `&signature=`.
    let Some((payload, signature)) = query.rsplit_once("&signature=") else {
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
    let server_time = now_ms();
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
    let body = if path == ACCOUNT {
        &recorded.account
    } else {
        &recorded.restrictions
    };
    Json(body.clone()).into_response()
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
