//! Issue 11 (controls hold): screening judges the value an order can really execute at — a
//! sell limit below the market is worth the market, a market order needs a fresh quote, the
//! allowed quote drift cannot carry an order under the step-up threshold, a held order is judged
//! again before it is sent, partial fills count, and no input or exchange answer can overflow.

use std::str::FromStr;

use domain::account::Role;
use domain::ports::Clock;
use rust_decimal::{Decimal, RoundingStrategy};
use serde_json::{Value, json};
use server::exchange::paper::{PaperOutage, PaperPrices};

use crate::binance::{Binance, Mode, TRADE_KEY, TRADE_SECRET};
use crate::helpers::{TestApp, soft_key, spawn_app, spawn_app_with};

/// Larger than any decimal product can hold: `Decimal::MAX`.
const HUGE: &str = "79228162514264337593543950335";

async fn json_of(response: reqwest::Response) -> Value {
    let status = response.status();
    let body = response.text().await.expect("body");
    serde_json::from_str(&body).unwrap_or_else(|_| panic!("{status}: {body}"))
}

async fn quote(app: &TestApp, client: &reqwest::Client, symbol: &str) -> Decimal {
    let ticket = json_of(app.call(client, "trading/ticket", &[]).await).await;
    let raw = ticket["prices"]
        .as_array()
        .expect("prices")
        .iter()
        .find(|p| p["symbol"] == symbol)
        .and_then(|p| p["price"].as_str())
        .unwrap_or_else(|| panic!("a quote for {symbol}: {ticket}"));
    Decimal::from_str(raw).expect("price")
}

/// An order through the ticket; `kind` is the side and type, e.g. "sell limit".
async fn place(
    app: &TestApp,
    client: &reqwest::Client,
    venue: &str,
    symbol: &str,
    kind: &str,
    quantity: &str,
    price: &str,
) -> reqwest::Response {
    let (side, order_type) = kind.split_once(' ').expect("side and type");
    app.call(
        client,
        "trading/place",
        &[
            ("venue", venue),
            ("symbol", symbol),
            ("side", side),
            ("order_type", order_type),
            ("quantity", quantity),
            ("price", price),
        ],
    )
    .await
}

async fn placed(response: reqwest::Response) -> Value {
    let status = response.status();
    let body = json_of(response).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// The 400 body's message.
async fn refused(response: reqwest::Response) -> String {
    let status = response.status();
    let body = json_of(response).await;
    assert_eq!(status, 400, "{body}");
    body["Invalid"]
        .as_str()
        .expect("an Invalid message")
        .to_owned()
}

fn plain(d: Decimal) -> String {
    d.normalize().to_string()
}

fn price_2dp(d: Decimal) -> String {
    plain(d.round_dp_with_strategy(2, RoundingStrategy::ToZero))
}

fn quantity_8dp(d: Decimal) -> String {
    plain(d.round_dp_with_strategy(8, RoundingStrategy::ToZero))
}

/// No anomaly holds, so these tests see the first-line rules alone.
async fn no_anomaly_holds(app: &TestApp) {
    app.exec(
        "UPDATE risk_limits SET value = '1' WHERE scope = 'global' AND field = 'anomaly_threshold'",
    )
    .await;
}

async fn decided_events(app: &TestApp) -> i64 {
    app.count("SELECT COUNT(*) FROM audit_events WHERE action = 'trade.order_decided'")
        .await
}

#[tokio::test]
async fn a_sell_limit_far_below_the_market_is_refused_and_nothing_is_stored() {
    let app = spawn_app().await;
    let trader = app.signed_in_as("trader@example.com", Role::Trader).await;
    let btc = quote(&app, &trader, "BTCUSDT").await;
    let bought = placed(
        place(
            &app,
            &trader,
            "paper",
            "BTCUSDT",
            "buy market",
            "0.01",
            &plain(btc),
        )
        .await,
    )
    .await;
    assert_eq!(bought["status"], "filled", "{bought}");

    // A limit of one hundred-millionth of a USDT would be judged as worth nothing and then
    // fill at the market: refused, with the reason.
    for limit in [
        "0.00000001".to_owned(),
        price_2dp(btc * Decimal::new(90, 2)),
    ] {
        let message = refused(
            place(
                &app,
                &trader,
                "paper",
                "BTCUSDT",
                "sell limit",
                "0.01",
                &limit,
            )
            .await,
        )
        .await;
        assert!(message.contains("below the current price"), "{message}");
    }
    assert_eq!(app.count("SELECT COUNT(*) FROM orders").await, 1);
    assert_eq!(decided_events(&app).await, 1);
    app.stop().await;
}

#[tokio::test]
async fn a_sell_limit_slightly_below_the_quote_is_screened_at_the_quote_and_needs_a_step_up() {
    let app = spawn_app_with(|s| s.step_up.order_threshold = "1000".into()).await;
    no_anomaly_holds(&app).await;
    let trader = app.signed_in_as("trader@example.com", Role::Trader).await;
    let mut key = soft_key();
    assert_eq!(
        app.register_key(&trader, &mut key, "Key").await.status(),
        200
    );
    // Two buys below the threshold: 0.02 BTC held. Together they pass it, so the second
    // carries an approval.
    for approved in [false, true] {
        let btc = plain(quote(&app, &trader, "BTCUSDT").await);
        let terms = [
            ("venue", "paper"),
            ("order_type", "market"),
            ("symbol", "BTCUSDT"),
            ("side", "buy"),
            ("quantity", "0.01"),
            ("price", btc.as_str()),
        ];
        let nonce = if approved {
            Some(crate::approvals::approve_with_key(&app, &trader, &mut key, &terms).await)
        } else {
            None
        };
        let mut form = terms.to_vec();
        if let Some(nonce) = &nonce {
            form.push(("approval_nonce", nonce.as_str()));
        }
        let bought = placed(app.call(&trader, "trading/place", &form).await).await;
        assert_eq!(bought["status"], "filled", "{bought}");
    }
    // Worth about 1010 USDT at the quote, about 990 at a limit 2 % below it.
    let btc = quote(&app, &trader, "BTCUSDT").await;
    let quantity = quantity_8dp(Decimal::from(1000) / (btc * Decimal::new(99, 2)));
    let limit = price_2dp(btc * Decimal::new(98, 2));
    let response = place(
        &app,
        &trader,
        "paper",
        "BTCUSDT",
        "sell limit",
        &quantity,
        &limit,
    )
    .await;
    assert_eq!(response.status(), 403);
    let body = json_of(response).await;
    assert!(body.get("OrderApprovalRequired").is_some(), "{body}");
    assert_eq!(app.count("SELECT COUNT(*) FROM orders").await, 2);
    app.stop().await;
}

#[tokio::test]
async fn a_market_order_is_checked_at_the_higher_of_the_quoted_and_current_price() {
    let app = spawn_app_with(|s| s.step_up.order_threshold = "1000".into()).await;
    no_anomaly_holds(&app).await;
    let trader = app.signed_in_as("trader@example.com", Role::Trader).await;
    // The trader quotes 0.5 % below the market (within the 1 % drift allowed): worth about
    // 997.5 USDT at their price, about 1002.5 at the current one.
    let btc = quote(&app, &trader, "BTCUSDT").await;
    let seen = price_2dp(btc * Decimal::new(995, 3));
    let quantity = quantity_8dp(Decimal::from(1000) / (btc * Decimal::new(9975, 4)));
    let response = place(
        &app,
        &trader,
        "paper",
        "BTCUSDT",
        "buy market",
        &quantity,
        &seen,
    )
    .await;
    assert_eq!(response.status(), 403);
    let body = json_of(response).await;
    assert!(body.get("OrderApprovalRequired").is_some(), "{body}");
    assert_eq!(app.count("SELECT COUNT(*) FROM orders").await, 0);

    // The same drift cannot carry an order under the per-order limit either.
    app.exec(
        "UPDATE risk_limits SET value = '900' WHERE scope = 'global' AND field = 'max_order_notional'",
    )
    .await;
    let btc = quote(&app, &trader, "BTCUSDT").await;
    let seen = price_2dp(btc * Decimal::new(995, 3));
    let quantity = quantity_8dp(Decimal::from(900) / (btc * Decimal::new(9975, 4)));
    let order = placed(
        place(
            &app,
            &trader,
            "paper",
            "BTCUSDT",
            "buy market",
            &quantity,
            &seen,
        )
        .await,
    )
    .await;
    assert_eq!(order["status"], "denied", "{order}");
    app.stop().await;
}

#[tokio::test]
async fn a_market_order_without_a_current_price_is_refused_and_nothing_is_stored() {
    let app = spawn_app().await;
    let trader = app.signed_in_as("trader@example.com", Role::Trader).await;
    let eth = quote(&app, &trader, "ETHUSDT").await;
    app.backend.paper.set_outage(Some(PaperOutage::Down));

    // The client's price is not a quote: with none from the venue, nothing is placed.
    let message = refused(
        place(
            &app,
            &trader,
            "paper",
            "ETHUSDT",
            "buy market",
            "0.5",
            &plain(eth),
        )
        .await,
    )
    .await;
    assert!(message.contains("no current price"), "{message}");
    // A sell limit trades at the market when that is higher: it needs a price too.
    let message = refused(
        place(
            &app,
            &trader,
            "paper",
            "ETHUSDT",
            "sell limit",
            "0.5",
            &plain(eth),
        )
        .await,
    )
    .await;
    assert!(message.contains("no current price"), "{message}");
    assert_eq!(app.count("SELECT COUNT(*) FROM orders").await, 0);
    assert_eq!(decided_events(&app).await, 0);

    // A buy limit never trades above its limit, so it is judged at it and held.
    let held = placed(
        place(
            &app,
            &trader,
            "paper",
            "ETHUSDT",
            "buy limit",
            "0.5",
            &plain(eth),
        )
        .await,
    )
    .await;
    assert_eq!(held["status"], "held", "{held}");
    app.stop().await;
}

#[tokio::test]
async fn a_held_order_is_judged_again_at_the_current_price_and_denied_if_it_no_longer_passes() {
    let app = spawn_app().await;
    no_anomaly_holds(&app).await;
    let trader = app.signed_in_as("trader@example.com", Role::Trader).await;
    let paper = app.backend.paper.clone();
    let trading = app.backend.services.trading.clone();
    let eth = quote(&app, &trader, "ETHUSDT").await;

    // An outage pauses the paper venue: a small buy limit is held...
    paper.set_outage(Some(PaperOutage::Down));
    let small = placed(
        place(
            &app,
            &trader,
            "paper",
            "ETHUSDT",
            "buy limit",
            "0.1",
            &price_2dp(eth * Decimal::new(102, 2)),
        )
        .await,
    )
    .await;
    assert_eq!(small["status"], "held", "{small}");
    // ...and, with prices back but the venue still paused, a market order worth about one ETH.
    paper.set_outage(None);
    let eth = quote(&app, &trader, "ETHUSDT").await;
    let large = placed(
        place(
            &app,
            &trader,
            "paper",
            "ETHUSDT",
            "buy market",
            "1",
            &plain(eth),
        )
        .await,
    )
    .await;
    assert_eq!(large["status"], "held", "{large}");

    // Meanwhile the per-order limit drops below the large order's value.
    app.exec(
        "UPDATE risk_limits SET value = '1000' WHERE scope = 'global' AND field = 'max_order_notional'",
    )
    .await;
    app.clock.advance(time::Duration::seconds(11));
    trading.retry_held().await.expect("retry");

    let small = json_of(
        app.call(
            &trader,
            "trading/order",
            &[("id", small["id"].as_str().expect("id"))],
        )
        .await,
    )
    .await;
    assert_eq!(small["status"], "filled", "{small}");
    let id = large["id"].as_str().expect("id");
    let large = json_of(app.call(&trader, "trading/order", &[("id", id)]).await).await;
    assert_eq!(large["status"], "denied", "{large}");
    let reason = large["status_reason"].as_str().expect("reason");
    assert!(reason.contains("the limit per order is 1,000"), "{reason}");
    assert_eq!(
        paper.placements(&format!("cp-{}", id.replace('-', ""))),
        0,
        "never sent"
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM audit_events WHERE action = 'trade.order_denied'")
            .await,
        1
    );
    app.stop().await;
}

/// The order's status and reason as stored (the trader's session may have ended while the
/// clock moved on).
async fn stored_order(app: &TestApp, id: &str) -> (String, String) {
    let field = |column: &str| format!("SELECT {column} FROM orders WHERE id = '{id}'");
    (
        app.text(&field("status")).await.expect("status"),
        app.text(&field("COALESCE(status_reason, '')"))
            .await
            .unwrap_or_default(),
    )
}

/// Moves the test clock forward to `at`.
fn advance_to(app: &TestApp, at: time::OffsetDateTime) {
    app.clock.advance(at - app.clock.now());
}

/// A held order sent after midnight counts in the day it goes out. Counted in the day it was
/// placed, it and a full new day of orders both went out.
#[tokio::test]
async fn a_held_order_sent_after_midnight_counts_in_that_days_limit() {
    let app = spawn_app().await;
    no_anomaly_holds(&app).await;
    app.exec(
        "UPDATE risk_limits SET value = '3000' WHERE scope = 'global' AND field = 'daily_notional'",
    )
    .await;
    // A minute before midnight (UTC).
    let midnight = app.clock.now().replace_time(time::Time::MIDNIGHT) + time::Duration::days(1);
    advance_to(&app, midnight - time::Duration::minutes(1));
    let trader = app.signed_in_as("trader@example.com", Role::Trader).await;
    let paper = app.backend.paper.clone();
    // About 1,800 USDT each: one fits the day's 3,000, two do not.
    let buy_limit = |eth: Decimal| {
        let limit = price_2dp(eth * Decimal::new(102, 2));
        let quantity =
            quantity_8dp(Decimal::from(1800) / Decimal::from_str(&limit).expect("limit"));
        (quantity, limit)
    };

    let (quantity, limit) = buy_limit(quote(&app, &trader, "ETHUSDT").await);
    paper.set_outage(Some(PaperOutage::Down));
    let held = placed(
        place(
            &app,
            &trader,
            "paper",
            "ETHUSDT",
            "buy limit",
            &quantity,
            &limit,
        )
        .await,
    )
    .await;
    assert_eq!(held["status"], "held", "{held}");
    paper.set_outage(None);

    // It goes out two minutes later, in the new day...
    advance_to(&app, midnight + time::Duration::minutes(1));
    assert_eq!(
        app.backend
            .services
            .trading
            .retry_held()
            .await
            .expect("retry"),
        1
    );
    let held_id = held["id"].as_str().expect("id");
    assert_eq!(stored_order(&app, held_id).await.0, "filled");

    // ...and counts in it: the same again passes the day's limit.
    let (quantity, limit) = buy_limit(quote(&app, &trader, "ETHUSDT").await);
    let second = placed(
        place(
            &app,
            &trader,
            "paper",
            "ETHUSDT",
            "buy limit",
            &quantity,
            &limit,
        )
        .await,
    )
    .await;
    assert_eq!(second["status"], "denied", "{second}");
    let (_, reason) = stored_order(&app, second["id"].as_str().expect("id")).await;
    assert!(reason.contains("Over your daily limit"), "{reason}");
    app.stop().await;
}

/// A held order is judged again with what went out without an approval since the trader's
/// last approved order: its value rising while it waited cannot carry that total past the
/// step-up threshold unapproved.
#[tokio::test]
async fn a_held_order_whose_value_rose_does_not_take_the_unapproved_total_past_the_threshold() {
    let app = spawn_app().await;
    no_anomaly_holds(&app).await;
    let threshold = app
        .settings
        .step_up
        .order_threshold()
        .expect("a step-up threshold");
    // Start near ETH's lowest price of the coming day, so that it rises while the orders wait.
    let start = app.clock.now();
    let lowest = (0..24 * 60)
        .map(|minute| start + time::Duration::minutes(minute))
        .min_by_key(|at| PaperPrices::price_at("ETHUSDT", *at).expect("ETH price"))
        .expect("a minute");
    advance_to(&app, lowest);
    let trader = app.signed_in_as("trader@example.com", Role::Trader).await;
    let paper = app.backend.paper.clone();

    // Held by an outage: a buy limit worth half the threshold...
    let eth = quote(&app, &trader, "ETHUSDT").await;
    let limit = Decimal::from_str(&price_2dp(eth * Decimal::new(102, 2))).expect("limit");
    let first_quantity = quantity_8dp(threshold / Decimal::TWO / limit);
    paper.set_outage(Some(PaperOutage::Down));
    let first = placed(
        place(
            &app,
            &trader,
            "paper",
            "ETHUSDT",
            "buy limit",
            &first_quantity,
            &plain(limit),
        )
        .await,
    )
    .await;
    assert_eq!(first["status"], "held", "{first}");
    paper.set_outage(None);
    // ...then, with prices back and the venue still paused, a market buy that brings what goes
    // out without an approval to 99 % of it: neither needs one.
    let eth = quote(&app, &trader, "ETHUSDT").await;
    let first_value = Decimal::from_str(&first_quantity).expect("quantity") * limit;
    let second_quantity = quantity_8dp((threshold * Decimal::new(99, 2) - first_value) / eth);
    let second = placed(
        place(
            &app,
            &trader,
            "paper",
            "ETHUSDT",
            "buy market",
            &second_quantity,
            &plain(eth),
        )
        .await,
    )
    .await;
    assert_eq!(second["status"], "held", "{second}");

    // Later the same day ETH is 3 % higher: the market buy alone stays far below the threshold,
    // but with the first order it passes it.
    let risen = (1..20 * 60)
        .map(|minute| lowest + time::Duration::minutes(minute))
        .find(|at| {
            PaperPrices::price_at("ETHUSDT", *at).expect("ETH price") >= eth * Decimal::new(103, 2)
        })
        .expect("ETH rises 3 % from its lowest within the day");
    advance_to(&app, risen);
    app.backend
        .services
        .trading
        .retry_held()
        .await
        .expect("retry");

    let first_id = first["id"].as_str().expect("id");
    let (status, _) = stored_order(&app, first_id).await;
    assert!(status == "open" || status == "filled", "sent: {status}");
    let second_id = second["id"].as_str().expect("id");
    let (status, reason) = stored_order(&app, second_id).await;
    assert_eq!(status, "denied", "{reason}");
    assert!(
        reason.contains("went out without an approval") && reason.contains("Place it again"),
        "{reason}"
    );
    assert_eq!(
        paper.placements(&format!("cp-{}", second_id.replace('-', ""))),
        0,
        "never sent"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_partly_filled_order_that_is_cancelled_counts_its_fill_in_todays_usage() {
    let app = spawn_app().await;
    let trader = app.signed_in_as("trader@example.com", Role::Trader).await;
    let trading = app.backend.services.trading.clone();
    let sol = quote(&app, &trader, "SOLUSDT").await;
    // Below the market: it rests.
    let limit = Decimal::from_str(&price_2dp(sol * Decimal::new(97, 2))).expect("limit");
    let order = placed(
        place(
            &app,
            &trader,
            "paper",
            "SOLUSDT",
            "buy limit",
            "2",
            &plain(limit),
        )
        .await,
    )
    .await;
    assert_eq!(order["status"], "open", "{order}");
    let id = order["id"].as_str().expect("id").to_owned();

    // A quarter of it trades, then the trader cancels the rest.
    app.backend
        .paper
        .fill_partly(&format!("cp-{}", id.replace('-', "")), Decimal::new(5, 1))
        .expect("a resting order");
    trading.refresh_open().await.expect("refresh");
    let cancelled = placed(app.call(&trader, "trading/cancel", &[("id", &id)]).await).await;
    assert_eq!(cancelled["status"], "cancelled", "{cancelled}");
    assert_eq!(cancelled["filled_quantity"], "0.5", "{cancelled}");

    let executed = (limit * Decimal::new(5, 1)).round_dp(2);
    let ticket = json_of(app.call(&trader, "trading/ticket", &[]).await).await;
    assert_eq!(
        ticket["used_today"]
            .as_str()
            .map(|u| Decimal::from_str(u).expect("decimal")),
        Some(executed),
        "{ticket}"
    );
    // The anomaly history sees the executed trade too.
    let owner = domain::account::UserId(
        uuid::Uuid::parse_str(app.who_am_i(&trader).await["id"].as_str().expect("id"))
            .expect("uuid"),
    );
    let store =
        server::storage::SqlTradingStore::new(app.backend.audit_chain.clone(), app.clock.clone());
    let history = domain::trading::OrderStore::trade_history(&store, owner, 50)
        .await
        .expect("history");
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].notional.round_dp(2), executed);
    app.stop().await;
}

/// A trader with an active Binance testnet trade key; returns the key's id.
async fn binance_key(app: &TestApp, trader: &reqwest::Client) -> String {
    let response = app
        .call(
            trader,
            "keys/add",
            &[
                ("exchange", "binance"),
                ("environment", "testnet"),
                ("scope", "trade"),
                ("label", "Binance testnet"),
                ("api_key", TRADE_KEY),
                ("api_secret", TRADE_SECRET),
            ],
        )
        .await;
    json_of(response).await["id"]
        .as_str()
        .expect("key id")
        .to_owned()
}

#[tokio::test]
async fn a_huge_quantity_is_refused_by_the_ticket_and_the_agent_api_and_nothing_is_written() {
    let binance = Binance::testnet(Mode::Normal).await;
    let url = binance.url.clone();
    let app = spawn_app_with(|s| s.exchanges.binance_testnet_url = url).await;
    binance.follow_clock(app.clock.clone());
    let trader = app.signed_in_as("trader@example.com", Role::Trader).await;
    let key = binance_key(&app, &trader).await;
    let btc = quote(&app, &trader, "BTCUSDT").await;
    let audit_before = app.count("SELECT COUNT(*) FROM audit_events").await;

    for (venue, kind, quantity, price) in [
        ("paper", "buy market", HUGE, plain(btc)),
        ("paper", "sell market", HUGE, plain(btc)),
        ("paper", "sell limit", "0.01", HUGE.to_owned()),
        (key.as_str(), "buy market", HUGE, "65000".to_owned()),
        (key.as_str(), "buy limit", HUGE, "65000".to_owned()),
        (
            key.as_str(),
            "buy limit",
            "1000000000000",
            "1000000000000".to_owned(),
        ),
    ] {
        let response = place(&app, &trader, venue, "BTCUSDT", kind, quantity, &price).await;
        let status = response.status();
        let body = response.text().await.expect("body");
        assert_eq!(status, 400, "{venue} {kind} {quantity} @ {price}: {body}");
    }
    assert_eq!(app.count("SELECT COUNT(*) FROM orders").await, 0);
    // What the form refuses leaves no trace; an order refused past it (a limit far through
    // the market) is recorded as a refused attempt, and nothing else.
    assert_eq!(
        app.count("SELECT COUNT(*) FROM audit_events WHERE action <> 'trade.order_refused'")
            .await,
        audit_before,
        "no other audit event"
    );

    // The agent API: a HOLD (422), nothing queued, nothing placed, even in autonomous mode.
    app.stepped_up_with_new_key(&trader).await;
    let created = app
        .call(
            &trader,
            "agent/token-create",
            &[("name", "bot"), ("scopes[0]", "proposals:write")],
        )
        .await;
    let secret = json_of(created).await["secret"]
        .as_str()
        .expect("secret")
        .to_owned();
    let autonomous = app
        .call(&trader, "agent/autonomous", &[("on", "true")])
        .await;
    assert_eq!(autonomous.status(), 200);
    for body in [
        json!({"symbol": "BTCUSDT", "side": "buy", "type": "market", "quantity": HUGE, "rationale": "x"}),
        json!({"symbol": "BTCUSDT", "side": "sell", "type": "limit", "quantity": HUGE, "limit_price": "1", "rationale": "x"}),
        json!({"symbol": "BTCUSDT", "side": "buy", "type": "limit", "quantity": "1", "limit_price": HUGE, "rationale": "x"}),
    ] {
        let response = reqwest::Client::new()
            .post(format!("{}/api/agent/v1/proposals", app.address))
            .bearer_auth(&secret)
            .json(&body)
            .send()
            .await
            .expect("request sent");
        assert_eq!(response.status(), 422, "{body}");
    }
    assert_eq!(app.count("SELECT COUNT(*) FROM proposals").await, 0);
    assert_eq!(app.count("SELECT COUNT(*) FROM orders").await, 0);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM audit_events WHERE action = 'agent.proposal_received'")
            .await,
        0
    );
    app.stop().await;
}

#[tokio::test]
async fn an_absurd_retry_after_from_binance_is_clamped_and_panics_nothing() {
    let binance = Binance::testnet(Mode::Normal).await;
    let url = binance.url.clone();
    let app = spawn_app_with(|s| s.exchanges.binance_testnet_url = url).await;
    binance.follow_clock(app.clock.clone());
    let trader = app.signed_in_as("trader@example.com", Role::Trader).await;
    let key = binance_key(&app, &trader).await;
    let trading = app.backend.services.trading.clone();

    binance.set_mode(Mode::RateLimitedFor(u64::MAX));
    // A buy limit needs no quote (it never trades above its limit): it is sent, and Binance
    // asks us to wait for 584 billion years.
    let held =
        placed(place(&app, &trader, &key, "BTCUSDT", "buy limit", "0.01", "65000").await).await;
    assert_eq!(held["status"], "held", "{held}");
    let reason = held["status_reason"].as_str().expect("reason");
    assert!(reason.contains("asked us to slow down"), "{reason}");
    // The trading job runs through it without panicking, and leaves Binance alone for an hour.
    app.clock.advance(time::Duration::seconds(11));
    assert_eq!(trading.retry_held().await.expect("retry"), 0);
    binance.set_mode(Mode::Normal);
    app.clock.advance(time::Duration::minutes(59));
    assert_eq!(trading.retry_held().await.expect("retry"), 0);
    app.clock.advance(time::Duration::minutes(2));
    assert_eq!(trading.retry_held().await.expect("retry"), 1);
    // (The session has idled out by now: the order is read from the database.)
    assert_eq!(
        app.count("SELECT COUNT(*) FROM orders WHERE status = 'filled'")
            .await,
        1
    );
    app.stop().await;
}

#[tokio::test]
async fn the_binance_adapter_carries_a_retry_after_of_at_most_an_hour() {
    use domain::keys::{
        ApiCredentials, Exchange, ExchangeError, KeyEnvironment, OrderType, VenueOrder,
    };
    use domain::risk::OrderSide;
    use secrecy::SecretString;
    use server::exchange::{BinanceExchange, BinanceSettings};

    let binance = Binance::testnet(Mode::RateLimitedFor(u64::MAX)).await;
    let exchange = BinanceExchange::new(
        BinanceSettings {
            testnet_url: binance.url.clone(),
            live_url: binance.url.clone(),
            connect_timeout: std::time::Duration::from_secs(2),
            timeout: std::time::Duration::from_secs(2),
        },
        std::sync::Arc::new(domain::ports::SystemClock),
    )
    .expect("valid Binance settings");
    let credentials = ApiCredentials::parse(
        SecretString::from(TRADE_KEY),
        SecretString::from(TRADE_SECRET),
    )
    .expect("credentials");
    let sent = exchange
        .place_order(
            KeyEnvironment::Testnet,
            Some(&credentials),
            &VenueOrder {
                client_order_id: "cp-clamp".into(),
                symbol: "BTCUSDT".into(),
                side: OrderSide::Buy,
                order_type: OrderType::Market,
                quantity: Decimal::new(1, 2),
                // Its bound, as the trading service sends every market order.
                limit_price: Some(Decimal::new(65_000, 0)),
            },
        )
        .await;
    assert_eq!(sent, Err(ExchangeError::RateLimited(3600)));
}

#[tokio::test]
async fn a_held_order_denied_when_judged_again_does_not_leave_its_venue_paused() {
    let app = spawn_app().await;
    no_anomaly_holds(&app).await;
    let trader = app.signed_in_as("trader@example.com", Role::Trader).await;
    let paper = app.backend.paper.clone();
    let trading = app.backend.services.trading.clone();
    let eth = quote(&app, &trader, "ETHUSDT").await;

    // First held (the probe when the venue is retried): about 1530 USDT.
    paper.set_outage(Some(PaperOutage::Down));
    let first = placed(
        place(
            &app,
            &trader,
            "paper",
            "ETHUSDT",
            "buy limit",
            "0.5",
            &price_2dp(eth * Decimal::new(102, 2)),
        )
        .await,
    )
    .await;
    assert_eq!(first["status"], "held", "{first}");
    paper.set_outage(None);
    let eth = quote(&app, &trader, "ETHUSDT").await;
    let second = placed(
        place(
            &app,
            &trader,
            "paper",
            "ETHUSDT",
            "buy market",
            "0.1",
            &plain(eth),
        )
        .await,
    )
    .await;
    assert_eq!(second["status"], "held", "{second}");

    app.exec(
        "UPDATE risk_limits SET value = '1000' WHERE scope = 'global' AND field = 'max_order_notional'",
    )
    .await;
    app.clock.advance(time::Duration::seconds(11));
    trading.retry_held().await.expect("retry");
    let status = |order: &Value| {
        let id = order["id"].as_str().expect("id").to_owned();
        let app = &app;
        async move {
            let sql =
                format!("SELECT COUNT(*) FROM orders WHERE id = '{id}' AND status = 'denied'");
            let denied = app.count(&sql).await;
            let sql =
                format!("SELECT COUNT(*) FROM orders WHERE id = '{id}' AND status = 'filled'");
            (denied, app.count(&sql).await)
        }
    };
    assert_eq!(status(&first).await, (1, 0), "the probe is denied");
    assert_eq!(
        status(&second).await,
        (0, 1),
        "the next order probes and is sent"
    );
    app.stop().await;
}
