//! Trading through the HTTP API: placement and screening, order-bound step-up, exchange outages
//! (held, then sent exactly once), kill switches, fail-safe limits, quarantine and review, the
//! audit log failing closed, and another user's ids.

use domain::account::Role;
use serde_json::Value;
use server::exchange::paper::PaperOutage;

use crate::binance::{Binance, Mode, PRICES, TRADE_KEY, TRADE_SECRET};
use crate::helpers::{
    PASSWORD, TestApp, TestClock, TestDatabase, is_postgres, sign_request, soft_key, spawn_app,
    spawn_app_with, spawn_on, test_settings,
};

async fn json(response: reqwest::Response) -> Value {
    let status = response.status();
    let body = response.text().await.expect("body");
    serde_json::from_str(&body).unwrap_or_else(|_| panic!("{status}: {body}"))
}

async fn quote(app: &TestApp, client: &reqwest::Client, symbol: &str) -> String {
    let ticket = app.call(client, "trading/ticket", &[]).await;
    assert_eq!(ticket.status(), 200);
    let ticket = json(ticket).await;
    ticket["prices"]
        .as_array()
        .expect("prices")
        .iter()
        .find(|p| p["symbol"] == symbol)
        .and_then(|p| p["price"].as_str())
        .expect("a quote for the symbol")
        .to_owned()
}

/// A market order at the current quote; returns the raw response.
async fn market(
    app: &TestApp,
    client: &reqwest::Client,
    symbol: &str,
    side: &str,
    quantity: &str,
    nonce: Option<&str>,
) -> reqwest::Response {
    let price = quote(app, client, symbol).await;
    market_at(app, client, symbol, side, quantity, &price, nonce).await
}

/// As `market`, with the quote given (when the ticket has none: exchange down, symbol delisted).
async fn market_at(
    app: &TestApp,
    client: &reqwest::Client,
    symbol: &str,
    side: &str,
    quantity: &str,
    price: &str,
    nonce: Option<&str>,
) -> reqwest::Response {
    let mut form = vec![
        ("venue", "paper"),
        ("symbol", symbol),
        ("side", side),
        ("order_type", "market"),
        ("quantity", quantity),
        ("price", price),
    ];
    if let Some(nonce) = nonce {
        form.push(("approval_nonce", nonce));
    }
    app.call(client, "trading/place", &form).await
}

/// A buy limit order on `venue`; returns the raw response.
async fn limit_at(
    app: &TestApp,
    client: &reqwest::Client,
    venue: &str,
    symbol: &str,
    quantity: &str,
    price: &str,
) -> reqwest::Response {
    paper_or_venue_limit(app, client, venue, "buy", symbol, quantity, price).await
}

/// A limit order on `venue`; returns the raw response.
async fn paper_or_venue_limit(
    app: &TestApp,
    client: &reqwest::Client,
    venue: &str,
    side: &str,
    symbol: &str,
    quantity: &str,
    price: &str,
) -> reqwest::Response {
    app.call(
        client,
        "trading/place",
        &[
            ("venue", venue),
            ("symbol", symbol),
            ("side", side),
            ("order_type", "limit"),
            ("quantity", quantity),
            ("price", price),
        ],
    )
    .await
}

async fn placed(response: reqwest::Response) -> Value {
    assert_eq!(response.status(), 200);
    json(response).await
}

async fn user_id(app: &TestApp, client: &reqwest::Client) -> String {
    app.who_am_i(client).await["id"]
        .as_str()
        .expect("id")
        .to_owned()
}

/// The client order ids of the signed-in trader's orders, newest first: what the paper
/// exchange counts executions by.
async fn client_order_ids(app: &TestApp, trader: &reqwest::Client) -> Vec<String> {
    let owner =
        domain::account::UserId(uuid::Uuid::parse_str(&user_id(app, trader).await).expect("uuid"));
    app.backend
        .services
        .trading
        .orders(owner, 10)
        .await
        .expect("orders")
        .into_iter()
        .map(|o| o.client_order_id)
        .collect()
}

/// A paper buy limit 2 % above `price` (a quote read while the venue was up): a buy limit is
/// judged at its limit, so it needs no quote and is held while its venue is down, and it fills
/// at the market once sent.
async fn buy_limit_above(
    app: &TestApp,
    trader: &reqwest::Client,
    symbol: &str,
    quantity: &str,
    price: &str,
) -> reqwest::Response {
    let above = format!("{:.2}", price.parse::<f64>().expect("price") * 1.02);
    limit_at(app, trader, "paper", symbol, quantity, &above).await
}

#[tokio::test]
async fn a_small_market_order_fills_and_shows_in_orders_fills_and_positions() {
    let app = spawn_app().await;
    let trader = app.signed_in_as("trader@example.com", Role::Trader).await;
    let order = placed(market(&app, &trader, "BTCUSDT", "buy", "0.01", None).await).await;
    assert_eq!(order["status"], "filled", "{order}");
    assert_eq!(order["verdict"], "allow");
    assert_eq!(order["filled_quantity"], "0.01");

    let orders = json(app.call(&trader, "trading/orders", &[]).await).await;
    assert_eq!(orders.as_array().expect("orders").len(), 1);
    let book = json(app.call(&trader, "trading/portfolio", &[]).await).await;
    assert_eq!(book["positions"][0]["symbol"], "BTCUSDT");
    assert_eq!(book["positions"][0]["quantity"], "0.01");
    assert_eq!(book["fills"].as_array().expect("fills").len(), 1);
    assert!(
        app.count("SELECT COUNT(*) FROM audit_events WHERE action = 'trade.order_decided'")
            .await
            == 1
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM audit_events WHERE action = 'trade.order_filled'")
            .await,
        1
    );
    // Selling what is held reduces the position; selling more than held is refused up front.
    let sell = placed(market(&app, &trader, "BTCUSDT", "sell", "0.004", None).await).await;
    assert_eq!(sell["status"], "filled");
    let too_much = market(&app, &trader, "BTCUSDT", "sell", "1", None).await;
    assert_eq!(too_much.status(), 400);
    app.stop().await;
}

#[tokio::test]
async fn bad_order_input_is_refused_and_writes_nothing() {
    let app = spawn_app().await;
    let trader = app.signed_in_as("trader@example.com", Role::Trader).await;
    let price = quote(&app, &trader, "BTCUSDT").await;
    for (field, value) in [
        ("quantity", "-1"),
        ("quantity", "1e3"),
        ("quantity", ""),
        ("side", "short"),
        ("order_type", "stop"),
        ("symbol", "BTC/USDT"),
        ("symbol", "ETHBTC"),
        ("venue", "not-a-key"),
    ] {
        let mut form = vec![
            ("venue", "paper"),
            ("symbol", "BTCUSDT"),
            ("side", "buy"),
            ("order_type", "market"),
            ("quantity", "0.01"),
            ("price", price.as_str()),
        ];
        form.retain(|(k, _)| *k != field);
        form.push((field, value));
        let response = app.call(&trader, "trading/place", &form).await;
        assert_eq!(response.status(), 400, "{field}={value}");
    }
    // A limit order without its price, and a stale quote.
    let response = app
        .call(
            &trader,
            "trading/place",
            &[
                ("venue", "paper"),
                ("symbol", "BTCUSDT"),
                ("side", "buy"),
                ("order_type", "limit"),
                ("quantity", "0.01"),
            ],
        )
        .await;
    assert_eq!(response.status(), 400);
    let response = app
        .call(
            &trader,
            "trading/place",
            &[
                ("venue", "paper"),
                ("symbol", "BTCUSDT"),
                ("side", "buy"),
                ("order_type", "market"),
                ("quantity", "0.01"),
                ("price", "1"),
            ],
        )
        .await;
    assert_eq!(response.status(), 400);
    assert_eq!(app.count("SELECT COUNT(*) FROM orders").await, 0);
    // Malformed input never reaches the rules; the stale quote did, and is recorded as a
    // refused attempt with its reason.
    assert_eq!(
        app.count("SELECT COUNT(*) FROM audit_events WHERE action = 'trade.order_refused'")
            .await,
        1
    );
    assert_eq!(
        app.count(
            "SELECT COUNT(*) FROM audit_events WHERE action = 'trade.order_refused' \
             AND details LIKE '%price_moved%' AND details LIKE '%BTCUSDT%'"
        )
        .await,
        1
    );
    app.stop().await;
}

#[tokio::test]
async fn a_large_order_needs_an_approval_bound_to_exactly_that_order() {
    let app = spawn_app().await;
    let trader = app.signed_in_as("trader@example.com", Role::Trader).await;
    let mut key = soft_key();
    assert_eq!(
        app.register_key(&trader, &mut key, "Key").await.status(),
        200
    );

    // 0.2 BTC is about 12,000 USDT: above the 10,000 threshold.
    let price = quote(&app, &trader, "BTCUSDT").await;
    let refused = market(&app, &trader, "BTCUSDT", "buy", "0.2", None).await;
    assert_eq!(refused.status(), 403);
    let body = json(refused).await;
    assert!(body.get("OrderApprovalRequired").is_some(), "{body}");
    assert_eq!(app.count("SELECT COUNT(*) FROM orders").await, 0);

    let terms = [
        ("venue", "paper"),
        ("order_type", "market"),
        ("symbol", "BTCUSDT"),
        ("side", "buy"),
        ("quantity", "0.2"),
        ("price", price.as_str()),
    ];
    let options = json(app.call(&trader, "stepup/order-options", &terms).await).await;
    let nonce = options["nonce"].as_str().expect("nonce").to_owned();
    let assertion = sign_request(&mut key, options["webauthn"].as_str().expect("request"));
    let mut form = terms.to_vec();
    form.push(("method", "security-key"));
    form.push(("response", &assertion));
    assert_eq!(
        app.call(&trader, "stepup/order-approve", &form)
            .await
            .status(),
        200
    );

    // The approval does not cover another quantity...
    let other = app
        .call(
            &trader,
            "trading/place",
            &[
                ("venue", "paper"),
                ("symbol", "BTCUSDT"),
                ("side", "buy"),
                ("order_type", "market"),
                ("quantity", "0.3"),
                ("price", &price),
                ("approval_nonce", &nonce),
            ],
        )
        .await;
    assert_eq!(other.status(), 400);
    // ...and that attempt did not use it up; the exact order goes through once.
    let exact = [
        ("venue", "paper"),
        ("symbol", "BTCUSDT"),
        ("side", "buy"),
        ("order_type", "market"),
        ("quantity", "0.2"),
        ("price", price.as_str()),
        ("approval_nonce", nonce.as_str()),
    ];
    let order = placed(app.call(&trader, "trading/place", &exact).await).await;
    assert_eq!(order["status"], "filled", "{order}");
    let again = app.call(&trader, "trading/place", &exact).await;
    assert_eq!(again.status(), 400, "an approval is spent once");
    assert_eq!(
        app.count("SELECT COUNT(*) FROM orders WHERE status = 'filled'")
            .await,
        1
    );
    app.stop().await;
}

#[tokio::test]
async fn an_exchange_outage_holds_orders_and_sends_each_exactly_once_when_it_is_back() {
    let app = spawn_app().await;
    let trader = app.signed_in_as("trader@example.com", Role::Trader).await;
    let paper = app.backend.paper.clone();
    let trading = app.backend.services.trading.clone();

    // A market order needs a current price, which a dead venue cannot give (it is refused, see
    // screening.rs); a buy limit is held.
    let eth = quote(&app, &trader, "ETHUSDT").await;
    paper.set_outage(Some(PaperOutage::Down));
    let held = placed(buy_limit_above(&app, &trader, "ETHUSDT", "0.5", &eth).await).await;
    assert_eq!(held["status"], "held", "{held}");
    assert!(
        held["status_reason"]
            .as_str()
            .expect("reason")
            .contains("could not be reached")
    );
    // While the breaker is open, new orders are held without being sent.
    let second = placed(buy_limit_above(&app, &trader, "ETHUSDT", "0.25", &eth).await).await;
    assert_eq!(second["status"], "held");
    let status = json(app.call(&trader, "trading/status", &[]).await).await;
    assert_eq!(status["paused"].as_array().expect("paused").len(), 1);
    // The ticket still loads, without prices, while the feed is down.
    let ticket = json(app.call(&trader, "trading/ticket", &[]).await).await;
    assert_eq!(
        ticket["prices"].as_array().map(Vec::len),
        Some(0),
        "{ticket}"
    );

    // Still down after the cool-down: the probe fails and nothing is sent.
    app.clock.advance(time::Duration::seconds(11));
    trading.retry_held().await.expect("retry");
    assert_eq!(
        app.count("SELECT COUNT(*) FROM orders WHERE status = 'held'")
            .await,
        2
    );

    paper.set_outage(None);
    app.clock.advance(time::Duration::seconds(60));
    assert_eq!(trading.retry_held().await.expect("retry"), 2);
    assert_eq!(trading.retry_held().await.expect("retry"), 0);
    let orders = json(app.call(&trader, "trading/orders", &[]).await).await;
    for order in orders.as_array().expect("orders") {
        assert_eq!(order["status"], "filled", "{order}");
    }
    for id in &client_order_ids(&app, &trader).await {
        assert_eq!(paper.placements(id), 1, "{id} executed exactly once");
    }
    assert_eq!(app.count("SELECT COUNT(*) FROM fills").await, 2);
    app.stop().await;
}

#[tokio::test]
async fn a_lost_reply_is_resolved_by_asking_the_exchange_not_by_sending_again() {
    let app = spawn_app().await;
    let trader = app.signed_in_as("trader@example.com", Role::Trader).await;
    let paper = app.backend.paper.clone();
    paper.set_outage(Some(PaperOutage::LoseReplies));
    let held = placed(market(&app, &trader, "SOLUSDT", "buy", "2", None).await).await;
    assert_eq!(held["status"], "held");
    paper.set_outage(None);
    app.clock.advance(time::Duration::seconds(11));
    assert_eq!(
        app.backend
            .services
            .trading
            .retry_held()
            .await
            .expect("retry"),
        1
    );
    let client_ids = client_order_ids(&app, &trader).await;
    assert_eq!(client_ids.len(), 1);
    assert_eq!(paper.placements(&client_ids[0]), 1);
    assert_eq!(app.count("SELECT COUNT(*) FROM fills").await, 1);
    app.stop().await;
}

/// A held order whose send went unanswered may be at its exchange. Cancelling it (the owner,
/// or a stop met at send time) asks the exchange first and cancels it there; while the exchange
/// cannot be asked, the cancel waits and the order is never sent again.
#[tokio::test]
async fn cancelling_a_held_order_whose_send_went_unanswered_cancels_it_at_the_exchange() {
    use domain::exchange::Exchange;
    let app = spawn_app().await;
    let trader = app.signed_in_as("trader@example.com", Role::Trader).await;
    let paper = app.backend.paper.clone();
    let trading = app.backend.services.trading.clone();
    let sol: f64 = quote(&app, &trader, "SOLUSDT")
        .await
        .parse()
        .expect("price");
    // Far below the market: at the exchange it rests.
    let below = format!("{:.2}", sol * 0.5);
    let owner = domain::account::UserId(
        uuid::Uuid::parse_str(&user_id(&app, &trader).await).expect("uuid"),
    );
    let at_paper = |id: &str| {
        let (trading, paper) = (trading.clone(), paper.clone());
        let id = id.to_owned();
        async move {
            let order = trading
                .orders(owner, 10)
                .await
                .expect("orders")
                .into_iter()
                .find(|o| o.id.to_string() == id)
                .expect("the order");
            let found = paper
                .find_order(
                    order.venue.environment,
                    None,
                    &order.symbol,
                    &order.client_order_id,
                )
                .await
                .expect("the paper book answers");
            (order.client_order_id, found.map(|ack| ack.status))
        }
    };
    let order_view = |id: &str| {
        let id = id.to_owned();
        let (app, trader) = (&app, &trader);
        async move { json(app.call(trader, "trading/order", &[("id", &id)]).await).await }
    };

    // Executed by the exchange, but its reply was lost: held, and resting there.
    paper.set_outage(Some(PaperOutage::LoseReplies));
    let rests = placed(limit_at(&app, &trader, "paper", "SOLUSDT", "2", &below).await).await;
    assert_eq!(rests["status"], "held", "{rests}");
    let rests = rests["id"].as_str().expect("id").to_owned();
    let (rests_client_id, there) = at_paper(&rests).await;
    assert_eq!(there, Some(domain::exchange::VenueOrderStatus::Open));

    // The owner cancels while the exchange is paused, then down: the cancel waits, visibly.
    paper.set_outage(Some(PaperOutage::Down));
    let waiting = placed(app.call(&trader, "trading/cancel", &[("id", &rests)]).await).await;
    assert_eq!(waiting["status"], "held", "{waiting}");
    assert_eq!(waiting["can_cancel"], false, "{waiting}");
    let reason = waiting["status_reason"].as_str().expect("reason");
    assert!(
        reason.contains("Cancel requested, not confirmed yet"),
        "{reason}"
    );
    // Asking again changes nothing: the cancel is already on its way.
    let claims = format!(
        "SELECT COUNT(*) FROM audit_events WHERE action = 'trade.order_claimed' \
         AND resource = 'order:{rests}'"
    );
    let claimed = app.count(&claims).await;
    let again = placed(app.call(&trader, "trading/cancel", &[("id", &rests)]).await).await;
    assert_eq!(again["status"], "held", "{again}");
    assert_eq!(app.count(&claims).await, claimed, "not claimed again");
    app.clock.advance(time::Duration::seconds(61));
    assert_eq!(
        trading.retry_held().await.expect("retry"),
        0,
        "nothing sent"
    );
    let still = order_view(&rests).await;
    assert_eq!(still["status"], "held", "{still}");
    assert!(
        still["status_reason"]
            .as_str()
            .expect("reason")
            .contains("could not be asked"),
        "{still}"
    );
    // A server stopping mid-cancel leaves it a cancel, never a send.
    app.exec(&format!(
        "UPDATE orders SET status = 'submitting' WHERE id = '{rests}'"
    ))
    .await;
    app.clock
        .advance(domain::trading::STRANDED_AFTER + time::Duration::seconds(1));
    assert_eq!(trading.recover_stranded().await.expect("sweep"), 1);
    let stranded = order_view(&rests).await;
    assert_eq!(stranded["status"], "held", "{stranded}");
    assert_eq!(stranded["can_cancel"], false, "{stranded}");

    // Back: the retry asks the exchange and cancels it there, without sending it again.
    paper.set_outage(None);
    app.clock.advance(time::Duration::seconds(120));
    assert_eq!(
        trading.retry_held().await.expect("retry"),
        0,
        "nothing sent"
    );
    let cancelled = order_view(&rests).await;
    assert_eq!(cancelled["status"], "cancelled", "{cancelled}");
    let reason = cancelled["status_reason"].as_str().expect("reason");
    assert!(reason.contains("was cancelled there"), "{reason}");
    assert_eq!(
        at_paper(&rests).await.1,
        Some(domain::exchange::VenueOrderStatus::Cancelled)
    );
    assert_eq!(paper.placements(&rests_client_id), 1, "placed once");

    // Never got by the exchange (it was down): the owner's cancel is confirmed there at once.
    paper.set_outage(Some(PaperOutage::Down));
    let never = placed(limit_at(&app, &trader, "paper", "SOLUSDT", "1", &below).await).await;
    assert_eq!(never["status"], "held", "{never}");
    let never = never["id"].as_str().expect("id").to_owned();
    paper.set_outage(None);
    app.clock.advance(time::Duration::seconds(120));
    let gone = placed(app.call(&trader, "trading/cancel", &[("id", &never)]).await).await;
    assert_eq!(gone["status"], "cancelled", "{gone}");
    let reason = gone["status_reason"].as_str().expect("reason");
    assert!(reason.contains("confirmed it never got it"), "{reason}");
    let (never_client_id, there) = at_paper(&never).await;
    assert_eq!(there, None);
    assert_eq!(paper.placements(&never_client_id), 0);

    // A stop met at send time takes an unanswered order off the exchange too.
    paper.set_outage(Some(PaperOutage::LoseReplies));
    let stopped = placed(limit_at(&app, &trader, "paper", "SOLUSDT", "1", &below).await).await;
    assert_eq!(stopped["status"], "held", "{stopped}");
    let stopped = stopped["id"].as_str().expect("id").to_owned();
    paper.set_outage(None);
    app.exec(
        "INSERT INTO trading_settings (key, value, updated_at) \
         VALUES ('kill_switch', 'true', '2026-11-28T00:00:00Z')",
    )
    .await;
    app.clock.advance(time::Duration::seconds(120));
    assert_eq!(
        trading.retry_held().await.expect("retry"),
        0,
        "nothing sent"
    );
    let killed = order_view(&stopped).await;
    assert_eq!(killed["status"], "cancelled", "{killed}");
    let reason = killed["status_reason"].as_str().expect("reason");
    assert!(
        reason.contains("kill switch") && reason.contains("was cancelled there"),
        "{reason}"
    );
    assert_eq!(
        at_paper(&stopped).await.1,
        Some(domain::exchange::VenueOrderStatus::Cancelled)
    );
    app.stop().await;
}

/// A server that stops between recording an order and sending it (a crash, a kill -9) leaves
/// it `submitting`: sent or not, nobody would ever know. The rows are set here as such a stop
/// leaves them; the trading job's sweep holds them and the retry asks the exchange first.
#[tokio::test]
async fn an_order_stranded_by_a_stopped_server_is_checked_with_the_exchange_and_sent_at_most_once()
{
    let app = spawn_app().await;
    let trader = app.signed_in_as("stranded@example.com", Role::Trader).await;
    let paper = app.backend.paper.clone();
    let trading = app.backend.services.trading.clone();
    // One the exchange carried out (its answer was never recorded), and one it never got (held
    // while the venue's breaker is open, so never sent).
    let eth = quote(&app, &trader, "ETHUSDT").await;
    paper.set_outage(Some(PaperOutage::LoseReplies));
    let arrived = placed(market(&app, &trader, "SOLUSDT", "buy", "2", None).await).await;
    let never_sent = placed(buy_limit_above(&app, &trader, "ETHUSDT", "0.1", &eth).await).await;
    paper.set_outage(None);
    for order in [&arrived, &never_sent] {
        assert_eq!(order["status"], "held", "{order}");
    }
    app.exec(
        "UPDATE orders SET status = 'submitting', hold_kind = NULL, status_reason = NULL, \
           attempts = 1",
    )
    .await;
    let client_ids = client_order_ids(&app, &trader).await;
    assert_eq!(client_ids.len(), 2);
    let placements = |paper: &server::exchange::PaperExchange| {
        client_ids
            .iter()
            .map(|id| paper.placements(id))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        placements(&paper).iter().sum::<u32>(),
        1,
        "one reached the exchange"
    );

    // A sender may still be at work: an order is not taken for stranded before its time.
    app.clock
        .advance(domain::trading::STRANDED_AFTER - time::Duration::seconds(1));
    assert_eq!(trading.recover_stranded().await.expect("sweep"), 0);
    app.clock.advance(time::Duration::seconds(2));
    assert_eq!(trading.recover_stranded().await.expect("sweep"), 2);
    assert_eq!(
        trading.recover_stranded().await.expect("sweep"),
        0,
        "taken once"
    );
    // The trader sees why they wait.
    let orders = json(app.call(&trader, "trading/orders", &[]).await).await;
    for order in orders.as_array().expect("orders") {
        assert_eq!(order["status"], "held", "{order}");
        let reason = order["status_reason"].as_str().expect("a reason");
        assert!(reason.contains("server stopped while sending"), "{reason}");
    }
    assert_eq!(
        app.count(
            "SELECT COUNT(*) FROM audit_events WHERE action = 'trade.order_held' \
               AND actor_id = 'trading' AND details LIKE '%server stopped while sending%'"
        )
        .await,
        2
    );

    // Sent at most once: the one the exchange has is settled with its answer, the other goes
    // out now.
    assert_eq!(trading.retry_held().await.expect("retry"), 2);
    let orders = json(app.call(&trader, "trading/orders", &[]).await).await;
    for order in orders.as_array().expect("orders") {
        assert_eq!(order["status"], "filled", "{order}");
    }
    assert_eq!(placements(&paper), vec![1, 1], "each executed exactly once");
    assert_eq!(app.count("SELECT COUNT(*) FROM fills").await, 2);
    app.stop().await;
}

#[tokio::test]
async fn the_kill_switch_needs_an_admin_key_stops_new_orders_and_shows_everywhere() {
    let app = spawn_app().await;
    let trader = app.signed_in_as("trader@example.com", Role::Trader).await;
    // An admin without a fresh key step-up cannot flip it.
    let plain_admin = app
        .signed_in_as("plain-admin@example.com", Role::Admin)
        .await;
    let refused = app
        .call(&plain_admin, "risk/kill-switch", &[("on", "true")])
        .await;
    assert_eq!(refused.status(), 403);
    let admin = app.admin_with_key("admin@example.com").await;
    assert_eq!(
        app.call(&admin, "risk/kill-switch", &[("on", "true")])
            .await
            .status(),
        200
    );
    let status = json(app.call(&trader, "trading/status", &[]).await).await;
    assert_eq!(status["global_kill"], true);
    let denied = placed(market(&app, &trader, "BTCUSDT", "buy", "0.01", None).await).await;
    assert_eq!(denied["status"], "denied");
    assert!(
        denied["hits"]
            .as_array()
            .expect("hits")
            .iter()
            .any(|h| h["rule"] == "kill_switch_global")
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM audit_events WHERE action = 'risk.kill_switch_on'")
            .await,
        1
    );
    // A trader cannot flip it.
    assert_eq!(
        app.call(&trader, "risk/kill-switch", &[("on", "false")])
            .await
            .status(),
        403
    );
    assert_eq!(
        app.call(&admin, "risk/kill-switch", &[("on", "false")])
            .await
            .status(),
        200
    );
    let ok = placed(market(&app, &trader, "BTCUSDT", "buy", "0.01", None).await).await;
    assert_eq!(ok["status"], "filled");
    app.stop().await;
}

#[tokio::test]
async fn a_stop_whose_cancel_could_not_reach_the_exchange_is_applied_once_it_is_back() {
    let app = spawn_app().await;
    let admin = app.admin_with_key("admin@example.com").await;
    let alice = app.signed_in_as("alice@example.com", Role::Trader).await;
    let bob = app.signed_in_as("bob@example.com", Role::Trader).await;
    let paper = app.backend.paper.clone();
    let trading = app.backend.services.trading.clone();
    let sol: f64 = quote(&app, &alice, "SOLUSDT").await.parse().expect("price");
    let (below, above) = (format!("{:.2}", sol * 0.5), format!("{:.2}", sol * 2.0));
    let order_view = |client: &reqwest::Client, id: &str| {
        let (app, client, id) = (&app, client.clone(), id.to_owned());
        async move { json(app.call(&client, "trading/order", &[("id", &id)]).await).await }
    };
    let id_of = |order: &Value| order["id"].as_str().expect("id").to_owned();

    // Bob holds SOL and rests a buy below and a sell above the market.
    let bought = placed(market(&app, &bob, "SOLUSDT", "buy", "2", None).await).await;
    assert_eq!(bought["status"], "filled", "{bought}");
    let bob_buy = placed(limit_at(&app, &bob, "paper", "SOLUSDT", "1", &below).await).await;
    let bob_sell =
        placed(paper_or_venue_limit(&app, &bob, "paper", "sell", "SOLUSDT", "1", &above).await)
            .await;
    let (bob_buy, bob_sell) = (id_of(&bob_buy), id_of(&bob_sell));
    assert_eq!(order_view(&bob, &bob_sell).await["status"], "open");

    // Restricted to reducing while the exchange is down: the buy cannot be taken off yet.
    paper.set_outage(Some(PaperOutage::Down));
    let bob_id = user_id(&app, &bob).await;
    let response = app
        .call(
            &admin,
            "risk/user-controls",
            &[("user_id", bob_id.as_str()), ("state", "reducing")],
        )
        .await;
    assert_eq!(response.status(), 200);
    let effect = response.json::<Value>().await.expect("effect");
    assert_eq!(
        effect,
        serde_json::json!({"cancelled": 0, "still_resting": 1})
    );
    assert_eq!(order_view(&bob, &bob_buy).await["status"], "open");
    trading.refresh_open().await.expect("sweep while down");
    assert_eq!(order_view(&bob, &bob_buy).await["status"], "open");

    // Back: the next sweep takes the buy off, with the stop's reason; the sell may stay.
    paper.set_outage(None);
    trading.refresh_open().await.expect("sweep");
    let buy = order_view(&bob, &bob_buy).await;
    assert_eq!(buy["status"], "cancelled", "{buy}");
    assert_eq!(
        buy["status_reason"],
        "Cancelled: your trading is restricted to reducing positions."
    );
    assert_eq!(order_view(&bob, &bob_sell).await["status"], "open");

    // The kill switch, flipped while the exchange is down: nothing comes off at once...
    let alice_buy = placed(limit_at(&app, &alice, "paper", "SOLUSDT", "1", &below).await).await;
    let alice_buy = id_of(&alice_buy);
    paper.set_outage(Some(PaperOutage::Down));
    let response = app
        .call(&admin, "risk/kill-switch", &[("on", "true")])
        .await;
    assert_eq!(response.status(), 200);
    let effect = response.json::<Value>().await.expect("effect");
    assert_eq!(
        effect,
        serde_json::json!({"cancelled": 0, "still_resting": 2})
    );
    // ...and everything resting comes off once it is back, each cancel audited.
    paper.set_outage(None);
    assert_eq!(trading.refresh_open().await.expect("sweep"), 2);
    for (client, id) in [(&alice, &alice_buy), (&bob, &bob_sell)] {
        let order = order_view(client, id).await;
        assert_eq!(order["status"], "cancelled", "{order}");
        assert_eq!(order["status_reason"], "Cancelled: the kill switch is on.");
        let cancelled = format!(
            "SELECT COUNT(*) FROM audit_events WHERE action = 'trade.order_cancelled' \
             AND resource = 'order:{id}' AND actor_kind = 'system'"
        );
        assert_eq!(app.count(&cancelled).await, 1, "{id}");
    }
    assert_eq!(trading.refresh_open().await.expect("sweep"), 0);

    // An order the paper book forgot (a restart) cannot be cancelled there; the sweep, which
    // would rest it again, ends it here instead while the stop holds.
    let response = app
        .call(&admin, "risk/kill-switch", &[("on", "false")])
        .await;
    assert_eq!(response.status(), 200);
    let forgotten = placed(limit_at(&app, &alice, "paper", "SOLUSDT", "1", &below).await).await;
    let forgotten = id_of(&forgotten);
    paper.restart();
    let response = app
        .call(&admin, "risk/kill-switch", &[("on", "true")])
        .await;
    let effect = response.json::<Value>().await.expect("effect");
    assert_eq!(
        effect,
        serde_json::json!({"cancelled": 0, "still_resting": 1})
    );
    assert_eq!(trading.refresh_open().await.expect("sweep"), 1);
    let order = order_view(&alice, &forgotten).await;
    assert_eq!(order["status"], "cancelled", "{order}");
    assert_eq!(order["status_reason"], "Cancelled: the kill switch is on.");
    assert_eq!(
        paper.placements(&format!("cp-{}", forgotten.replace('-', ""))),
        0,
        "not rested again (the book was forgotten)"
    );
    app.stop().await;
}

#[tokio::test]
async fn an_unparsable_limit_falls_back_to_the_strictest_value_and_is_audited() {
    let app = spawn_app().await;
    let trader = app.signed_in_as("trader@example.com", Role::Trader).await;
    app.exec(
        "UPDATE risk_limits SET value = 'lots' WHERE scope = 'global' AND field = 'max_order_notional'",
    )
    .await;
    let denied = placed(market(&app, &trader, "BTCUSDT", "buy", "0.001", None).await).await;
    assert_eq!(denied["status"], "denied", "{denied}");
    assert!(
        app.count(
            "SELECT COUNT(*) FROM audit_events WHERE action = 'risk.limit_fail_safe' AND details LIKE '%max_order_notional%'"
        )
        .await
            >= 1
    );
    let btc = quote(&app, &trader, "BTCUSDT").await;
    app.exec("DELETE FROM risk_limits WHERE scope = 'global' AND field = 'symbol_allowlist'")
        .await;
    app.exec("UPDATE risk_limits SET value = '50000' WHERE field = 'max_order_notional'")
        .await;
    let denied =
        placed(market_at(&app, &trader, "BTCUSDT", "buy", "0.001", &btc, None).await).await;
    assert!(
        denied["hits"]
            .as_array()
            .expect("hits")
            .iter()
            .any(|h| h["rule"] == "symbol_not_allowed"),
        "{denied}"
    );
    app.stop().await;
}

#[tokio::test]
async fn admins_set_per_user_limits_and_states_with_a_key_step_up() {
    let app = spawn_app().await;
    let trader = app.signed_in_as("trader@example.com", Role::Trader).await;
    let other = app.signed_in_as("other@example.com", Role::Trader).await;
    let trader_id = user_id(&app, &trader).await;
    let admin = app.admin_with_key("admin@example.com").await;
    let set = app
        .call(
            &admin,
            "risk/set-limit",
            &[
                ("user_id", &trader_id),
                ("field", "daily_notional"),
                ("value", "100"),
            ],
        )
        .await;
    assert_eq!(set.status(), 200);
    let bad = app
        .call(
            &admin,
            "risk/set-limit",
            &[("field", "daily_notional"), ("value", "a lot")],
        )
        .await;
    assert_eq!(bad.status(), 400);
    let denied = placed(market(&app, &trader, "ETHUSDT", "buy", "0.05", None).await).await;
    assert_eq!(denied["status"], "denied", "{denied}");
    let fine = placed(market(&app, &other, "ETHUSDT", "buy", "0.05", None).await).await;
    assert_eq!(fine["status"], "filled");

    // HALTED: only cancels. REDUCING: only selling what is held.
    assert_eq!(
        app.call(
            &admin,
            "risk/user-controls",
            &[
                ("user_id", &user_id(&app, &other).await),
                ("state", "reducing")
            ],
        )
        .await
        .status(),
        200
    );
    let buy = placed(market(&app, &other, "ETHUSDT", "buy", "0.01", None).await).await;
    assert_eq!(buy["status"], "denied");
    let sell = placed(market(&app, &other, "ETHUSDT", "sell", "0.01", None).await).await;
    assert_eq!(sell["status"], "filled");
    assert_eq!(
        app.call(
            &admin,
            "risk/user-controls",
            &[
                ("user_id", &user_id(&app, &other).await),
                ("state", "halted")
            ],
        )
        .await
        .status(),
        200
    );
    let sell = placed(market(&app, &other, "ETHUSDT", "sell", "0.01", None).await).await;
    assert_eq!(sell["status"], "denied");
    // Unknown or malformed user ids are not found.
    for id in ["00000000-0000-0000-0000-000000000000", "garbage"] {
        let response = app
            .call(
                &admin,
                "risk/user-controls",
                &[("user_id", id), ("state", "halted")],
            )
            .await;
        assert_eq!(response.status(), 404, "{id}");
    }
    app.stop().await;
}

#[tokio::test]
async fn live_orders_claim_what_they_may_take_so_stacked_sells_cannot_oversell() {
    let app = spawn_app().await;
    let trader = app.signed_in_as("stacker@example.com", Role::Trader).await;
    let bought = placed(market(&app, &trader, "BTCUSDT", "buy", "0.01", None).await).await;
    assert_eq!(bought["status"], "filled", "{bought}");
    let price: f64 = quote(&app, &trader, "BTCUSDT")
        .await
        .parse()
        .expect("price");
    let sell_limit = |quantity: &'static str| {
        let (app, trader) = (&app, trader.clone());
        let above = above_now(price);
        async move {
            paper_or_venue_limit(app, &trader, "paper", "sell", "BTCUSDT", quantity, &above).await
        }
    };
    // A sell limit above the market rests, and claims the coins it may deliver.
    let resting_sell = placed(sell_limit("0.01").await).await;
    assert_eq!(resting_sell["status"], "open", "{resting_sell}");
    // So the same coins cannot be offered again, by a limit or at the market.
    let again = sell_limit("0.01").await;
    assert_eq!(again.status(), 400);
    let message = json(again).await.to_string();
    assert!(message.contains("0 BTCUSDT free to sell"), "{message}");
    let market_sell = market(&app, &trader, "BTCUSDT", "sell", "0.005", None).await;
    assert_eq!(market_sell.status(), 400);
    // The ticket previews with what is free, as the server judges.
    let ticket = json(app.call(&trader, "trading/ticket", &[]).await).await;
    assert_eq!(ticket["free_quantities"][0][0], "BTCUSDT", "{ticket}");
    assert_eq!(ticket["free_quantities"][0][1], "0", "{ticket}");
    assert_eq!(ticket["positions"][0]["quantity"], "0.01", "{ticket}");
    assert_eq!(ticket["free_cash"], ticket["cash"], "{ticket}");

    // A resting buy (far below the market) claims cash the same way (the domain's
    // `PaperAccount::free` test covers the arithmetic).
    let below = format!("{:.2}", price * 0.97);
    let resting_buy = placed(
        paper_or_venue_limit(&app, &trader, "paper", "buy", "BTCUSDT", "0.01", &below).await,
    )
    .await;
    assert_eq!(resting_buy["status"], "open", "{resting_buy}");
    let ticket = json(app.call(&trader, "trading/ticket", &[]).await).await;
    let amount =
        |field: &str| -> f64 { ticket[field].as_str().expect(field).parse().expect(field) };
    let reserved: f64 = resting_buy["notional"]
        .as_str()
        .expect("notional")
        .parse()
        .expect("notional");
    assert!(
        (amount("cash") - amount("free_cash") - reserved).abs() < 0.02,
        "{ticket}"
    );

    // Restricted to reducing, the resting buy comes off the book (it would add exposure when
    // it fills); the resting sell stays, and still nothing more can be sold.
    let admin = app.admin_with_key("admin@example.com").await;
    let trader_id = user_id(&app, &trader).await;
    let cancelled = app
        .call(
            &admin,
            "risk/user-controls",
            &[("user_id", trader_id.as_str()), ("state", "reducing")],
        )
        .await;
    assert_eq!(cancelled.status(), 200);
    assert_eq!(
        cancelled.json::<Value>().await.expect("effect")["cancelled"],
        1
    );
    let order = |id: Value| {
        let (app, trader) = (&app, trader.clone());
        async move {
            json(
                app.call(
                    &trader,
                    "trading/order",
                    &[("id", id.as_str().expect("id"))],
                )
                .await,
            )
            .await
        }
    };
    assert_eq!(
        order(resting_buy["id"].clone()).await["status"],
        "cancelled"
    );
    assert_eq!(order(resting_sell["id"].clone()).await["status"], "open");
    assert_eq!(sell_limit("0.01").await.status(), 400);

    // Cancelling the resting sell frees its coins.
    let cancel = app
        .call(
            &trader,
            "trading/cancel",
            &[("id", resting_sell["id"].as_str().expect("id"))],
        )
        .await;
    assert_eq!(cancel.status(), 200);
    let sold = placed(market(&app, &trader, "BTCUSDT", "sell", "0.01", None).await).await;
    assert_eq!(sold["status"], "filled", "{sold}");
    let book = json(app.call(&trader, "trading/portfolio", &[]).await).await;
    assert!(
        book["positions"].as_array().expect("positions").is_empty(),
        "{book}"
    );

    // A paper key as the venue trades the same paper account, so the same balance holds: no
    // selling what is not held through it either.
    let key = app
        .call(
            &trader,
            "keys/add",
            &[
                ("exchange", "paper"),
                ("environment", "paper"),
                ("scope", "trade"),
                ("label", "Paper through a key"),
                ("api_key", "pk-paper-4b1e2c9d77"),
                ("api_secret", "sk-paper-0a9b8c7d6e5f4a3b"),
            ],
        )
        .await;
    let key = json(key).await["id"].as_str().expect("key id").to_owned();
    let short = paper_or_venue_limit(
        &app,
        &trader,
        &key,
        "sell",
        "BTCUSDT",
        "0.01",
        &above_now(price),
    )
    .await;
    assert_eq!(short.status(), 400);
    assert!(json(short).await.to_string().contains("free to sell"));
    app.stop().await;
}

/// A sell limit 3 % above `price`: it rests on the paper book.
fn above_now(price: f64) -> String {
    format!("{:.2}", price * 1.03)
}

/// A reviewer's decision on a case, with its note.
async fn decide(
    app: &TestApp,
    reviewer: &reqwest::Client,
    case_id: &str,
    decision: &str,
    note: &str,
) -> reqwest::Response {
    app.call(
        reviewer,
        "review/decide",
        &[("id", case_id), ("decision", decision), ("note", note)],
    )
    .await
}

/// Six ordinary small orders, then one far larger in a symbol never traded, in a burst.
async fn burst(app: &TestApp, trader: &reqwest::Client) -> Value {
    for _ in 0..6 {
        let order = placed(market(app, trader, "BTCUSDT", "buy", "0.001", None).await).await;
        assert_eq!(order["status"], "filled", "{order}");
    }
    placed(market(app, trader, "ETHUSDT", "buy", "2.5", None).await).await
}

#[tokio::test]
async fn a_burst_of_odd_orders_opens_a_case_quarantines_the_trader_and_a_reviewer_releases_it() {
    let app = spawn_app().await;
    let trader = app.signed_in_as("trader@example.com", Role::Trader).await;
    let odd = burst(&app, &trader).await;
    assert_eq!(odd["status"], "held", "{odd}");
    assert!(odd["score"].as_f64().expect("score") >= 0.8, "{odd}");
    let case_id = odd["case_id"].as_str().expect("case").to_owned();
    let status = json(app.call(&trader, "trading/status", &[]).await).await;
    assert_ne!(status["state"], "active", "{status}");
    assert_eq!(status["open_cases"], 1);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM security_alerts WHERE kind = 'anomaly_case_opened'")
            .await,
        1
    );
    // New buys are refused while quarantined; selling what is held still works.
    let buy = placed(market(&app, &trader, "BTCUSDT", "buy", "0.001", None).await).await;
    assert_eq!(buy["status"], "denied");
    if status["state"] == "reducing" {
        let sell = placed(market(&app, &trader, "BTCUSDT", "sell", "0.001", None).await).await;
        assert_eq!(sell["status"], "filled");
    }

    // The trader cannot see cases; a reviewer can, and must write a note.
    assert_eq!(
        app.call(&trader, "review/case", &[("id", &case_id)])
            .await
            .status(),
        403
    );
    let reviewer = app
        .signed_in_as("reviewer@example.com", Role::Reviewer)
        .await;
    let case = json(
        app.call(&reviewer, "review/case", &[("id", &case_id)])
            .await,
    )
    .await;
    assert_eq!(case["subject_email"], "trader@example.com");
    assert!(!case["features"].as_array().expect("features").is_empty());
    assert_eq!(case["recent"].as_array().expect("recent").len(), 6);
    assert_eq!(case["on_release"], "active", "{case}");
    assert_eq!(case["on_confirm"], status["state"], "{case}");
    let no_note = decide(&app, &reviewer, &case_id, "release", "").await;
    assert_eq!(no_note.status(), 400);
    let released = decide(
        &app,
        &reviewer,
        &case_id,
        "release",
        "Trader confirmed the ETH purchase by phone.",
    )
    .await;
    assert_eq!(released.status(), 200);
    let status = json(app.call(&trader, "trading/status", &[]).await).await;
    assert_eq!(status["state"], "active");
    // The held order goes out once.
    let trading = app.backend.services.trading.clone();
    assert_eq!(trading.retry_held().await.expect("retry"), 1);
    assert_eq!(trading.retry_held().await.expect("retry"), 0);
    let again = decide(&app, &reviewer, &case_id, "confirm", "late").await;
    assert_eq!(again.status(), 400);
    app.stop().await;
}

/// An admin quarantined by the anomaly response cannot appoint, alone, the reviewer who would
/// release them: a reviewer's powers take a second admin, like an admin's.
#[tokio::test]
async fn a_quarantined_admin_cannot_appoint_the_reviewer_who_releases_them() {
    let app = spawn_app().await;
    let admin = app.admin_with_key("admin@example.com").await;
    let odd = burst(&app, &admin).await;
    assert_eq!(odd["status"], "held", "{odd}");
    let case_id = odd["case_id"].as_str().expect("case").to_owned();
    let sock = app.signed_in_as("sock@example.com", Role::Trader).await;
    let sock_id = user_id(&app, &sock).await;
    let asked = app
        .call(
            &admin,
            "admin/set-role",
            &[("user_id", sock_id.as_str()), ("role", "reviewer")],
        )
        .await;
    assert_eq!(asked.status(), 200);
    let asked = json(asked).await;
    assert_eq!(asked["role"], "trader", "{asked}");
    assert_eq!(asked["pending"]["role"], "reviewer", "{asked}");
    let released = decide(&app, &sock, &case_id, "release", "looks fine").await;
    assert_eq!(released.status(), 403);
    let status = json(app.call(&admin, "trading/status", &[]).await).await;
    assert_ne!(status["state"], "active", "{status}");
    assert_eq!(status["open_cases"], 1);
    app.stop().await;
}

/// Deciding a case needs the reviewer role only; halting a trader needs an administrator's
/// security key. So releasing a case returns the trader to what an administrator set, not to
/// active; only an administrator lifts their own halt.
#[tokio::test]
async fn a_reviewers_release_cannot_lift_a_halt_an_admin_set_while_the_case_was_open() {
    let app = spawn_app().await;
    let trader = app.signed_in_as("trader@example.com", Role::Trader).await;
    let odd = burst(&app, &trader).await;
    let case_id = odd["case_id"].as_str().expect("case").to_owned();
    let trader_id = user_id(&app, &trader).await;
    let admin = app.admin_with_key("admin@example.com").await;
    let set_state = |state: &'static str| {
        let (app, admin, trader_id) = (&app, admin.clone(), trader_id.clone());
        async move {
            app.call(
                &admin,
                "risk/user-controls",
                &[("user_id", &trader_id), ("state", state)],
            )
            .await
            .status()
        }
    };
    assert_eq!(set_state("halted").await, 200);

    let reviewer = app
        .signed_in_as("reviewer@example.com", Role::Reviewer)
        .await;
    // The reviewer is told before deciding what each decision leaves the trader in.
    let case = json(
        app.call(&reviewer, "review/case", &[("id", &case_id)])
            .await,
    )
    .await;
    assert_eq!(case["state_now"], "halted", "{case}");
    assert_eq!(case["state_settled"], "halted", "{case}");
    assert_eq!(case["other_open_cases"], 0, "{case}");
    assert_eq!(case["on_release"], "halted", "{case}");
    assert_eq!(case["on_confirm"], "halted", "{case}");
    let released = decide(
        &app,
        &reviewer,
        &case_id,
        "release",
        "The ETH purchase was the trader's.",
    )
    .await;
    assert_eq!(released.status(), 200);
    let status = json(app.call(&trader, "trading/status", &[]).await).await;
    assert_eq!(status["state"], "halted", "{status}");
    assert_eq!(status["open_cases"], 0, "{status}");
    assert_eq!(
        app.count(
            "SELECT COUNT(*) FROM audit_events WHERE action = 'review.case_released' \
             AND details LIKE '%\"state_after\":\"halted\"%'"
        )
        .await,
        1
    );
    let buy = placed(market(&app, &trader, "BTCUSDT", "buy", "0.001", None).await).await;
    assert_eq!(buy["status"], "denied", "{buy}");

    // Only the administrator lifts it.
    assert_eq!(set_state("active").await, 200);
    let status = json(app.call(&trader, "trading/status", &[]).await).await;
    assert_eq!(status["state"], "active", "{status}");
    app.stop().await;
}

#[tokio::test]
async fn nobody_reviews_their_own_case_and_a_confirmed_case_cancels_the_held_order() {
    let app = spawn_app().await;
    let admin_trader = app.signed_in_as("admin@example.com", Role::Admin).await;
    let odd = burst(&app, &admin_trader).await;
    let case_id = odd["case_id"].as_str().expect("case").to_owned();
    let own = decide(&app, &admin_trader, &case_id, "release", "it was me").await;
    assert_eq!(own.status(), 403);
    assert_eq!(
        app.count(
            "SELECT COUNT(*) FROM audit_events WHERE action = 'review.case_released' \
             AND outcome = 'denied' AND details LIKE '%a case about the reviewer%'"
        )
        .await,
        1,
        "the refusal is recorded"
    );
    // Nor reads it: its evidence would tell them what tripped the detector.
    let own_case = app
        .call(&admin_trader, "review/case", &[("id", &case_id)])
        .await;
    assert_eq!(own_case.status(), 404);
    let listed = json(app.call(&admin_trader, "review/cases", &[]).await).await;
    assert!(
        !listed.to_string().contains(&case_id),
        "not listed for its subject: {listed}"
    );
    let reviewer = app
        .signed_in_as("reviewer@example.com", Role::Reviewer)
        .await;
    let confirmed = decide(
        &app,
        &reviewer,
        &case_id,
        "confirm",
        "Pattern matches account takeover.",
    )
    .await;
    assert_eq!(confirmed.status(), 200);
    let order = json(
        app.call(
            &admin_trader,
            "trading/order",
            &[("id", odd["id"].as_str().expect("id"))],
        )
        .await,
    )
    .await;
    assert_eq!(order["status"], "cancelled");
    let status = json(app.call(&admin_trader, "trading/status", &[]).await).await;
    assert_ne!(status["state"], "active");
    app.stop().await;
}

#[tokio::test]
async fn another_users_orders_cases_proposals_and_tokens_are_not_found() {
    let app = spawn_app().await;
    let alice = app.signed_in_as("alice@example.com", Role::Trader).await;
    let mallory = app.signed_in_as("mallory@example.com", Role::Trader).await;
    let price = quote(&app, &alice, "BTCUSDT").await;
    // A resting limit order far below the market: cancellable.
    let low = format!("{}", price.parse::<f64>().expect("price") as u64 / 2);
    let resting = placed(
        app.call(
            &alice,
            "trading/place",
            &[
                ("venue", "paper"),
                ("symbol", "BTCUSDT"),
                ("side", "buy"),
                ("order_type", "limit"),
                ("quantity", "0.01"),
                ("price", &low),
            ],
        )
        .await,
    )
    .await;
    assert_eq!(resting["status"], "open", "{resting}");
    let order_id = resting["id"].as_str().expect("id").to_owned();
    for endpoint in ["trading/order", "trading/cancel"] {
        for id in [
            order_id.as_str(),
            "garbage",
            "00000000-0000-0000-0000-000000000000",
        ] {
            let response = app.call(&mallory, endpoint, &[("id", id)]).await;
            assert_eq!(response.status(), 404, "{endpoint} {id}");
        }
    }
    // Creating a token needs a step-up.
    app.stepped_up_with_new_key(&alice).await;
    let token = json(
        app.call(
            &alice,
            "agent/token-create",
            &[("name", "bot"), ("scopes[0]", "proposals:write")],
        )
        .await,
    )
    .await;
    let token_id = token["token"]["id"].as_str().expect("token id").to_owned();
    let secret = token["secret"].as_str().expect("secret").to_owned();
    let proposal = app
        .client
        .post(format!("{}/api/agent/v1/proposals", app.address))
        .bearer_auth(&secret)
        .json(&serde_json::json!({
            "symbol": "BTCUSDT", "side": "buy", "type": "market", "quantity": "0.001",
            "rationale": "test"
        }))
        .send()
        .await
        .expect("proposal sent");
    assert_eq!(proposal.status(), 202);
    let proposal = json(proposal).await;
    let proposal_id = proposal["proposal"]["id"]
        .as_str()
        .expect("proposal id")
        .to_owned();
    for (endpoint, id) in [
        ("agent/sign-off", proposal_id.as_str()),
        ("agent/reject", proposal_id.as_str()),
        ("agent/token-revoke", token_id.as_str()),
    ] {
        let response = app.call(&mallory, endpoint, &[("id", id)]).await;
        assert_eq!(response.status(), 404, "{endpoint}");
    }
    // Cases are for reviewers only; a trader gets 403 whatever the id.
    assert_eq!(app.call(&mallory, "review/cases", &[]).await.status(), 403);
    // Alice's things are untouched and hers to act on.
    assert_eq!(
        app.call(&alice, "trading/cancel", &[("id", &order_id)])
            .await
            .status(),
        200
    );
    let overview = json(app.call(&alice, "agent/overview", &[]).await).await;
    assert_eq!(overview["proposals"][0]["status"], "pending");
    assert!(overview["tokens"][0]["revoked_at"].is_null());
    let mallory_view = json(app.call(&mallory, "agent/overview", &[]).await).await;
    assert!(
        mallory_view["proposals"]
            .as_array()
            .expect("list")
            .is_empty()
    );
    let mallory_orders = json(app.call(&mallory, "trading/orders", &[]).await).await;
    assert!(mallory_orders.as_array().expect("list").is_empty());
    let mallory_recent = json(app.call(&mallory, "trading/recent-orders", &[]).await).await;
    assert!(mallory_recent.as_array().expect("list").is_empty());
    app.stop().await;
}

#[tokio::test]
async fn the_trade_page_gets_only_the_newest_few_orders() {
    let app = spawn_app().await;
    let trader = app.signed_in_as("trader@example.com", Role::Trader).await;
    let mut placed_ids = Vec::new();
    // Nine: one more than the page shows, within the default velocity limit of ten.
    for _ in 0..9 {
        let order = placed(market(&app, &trader, "BTCUSDT", "buy", "0.001", None).await).await;
        placed_ids.push(order["id"].as_str().expect("id").to_owned());
    }
    let all = json(app.call(&trader, "trading/orders", &[]).await).await;
    assert_eq!(all.as_array().expect("orders").len(), 9);
    let recent = json(app.call(&trader, "trading/recent-orders", &[]).await).await;
    let recent: Vec<&str> = recent
        .as_array()
        .expect("orders")
        .iter()
        .map(|o| o["id"].as_str().expect("id"))
        .collect();
    // The newest 8, newest first: the same as the head of the full list.
    let newest: Vec<&str> = placed_ids
        .iter()
        .rev()
        .take(8)
        .map(String::as_str)
        .collect();
    assert_eq!(recent, newest);
    // Signed out: refused, like every trading endpoint.
    let anonymous = app.new_client();
    assert_eq!(
        app.call(&anonymous, "trading/recent-orders", &[])
            .await
            .status(),
        401
    );
    app.stop().await;
}

#[tokio::test]
async fn no_audit_write_means_no_order() {
    let app = spawn_app().await;
    let trader = app.signed_in_as("trader@example.com", Role::Trader).await;
    let price = quote(&app, &trader, "BTCUSDT").await;
    crate::keys::break_audit_log(&app).await;
    let response = app
        .call(
            &trader,
            "trading/place",
            &[
                ("venue", "paper"),
                ("symbol", "BTCUSDT"),
                ("side", "buy"),
                ("order_type", "market"),
                ("quantity", "0.01"),
                ("price", &price),
            ],
        )
        .await;
    assert_eq!(response.status(), 503);
    assert_eq!(app.count("SELECT COUNT(*) FROM orders").await, 0);
    assert_eq!(app.backend.paper.placements("anything"), 0);
    app.stop().await;
}

/// A trader with an active Binance testnet trade key on `binance`; returns the key's id.
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
    json(response).await["id"]
        .as_str()
        .expect("key id")
        .to_owned()
}

async fn binance_market(
    app: &TestApp,
    trader: &reqwest::Client,
    key: &str,
    symbol: &str,
    quantity: &str,
) -> Value {
    let price = PRICES
        .iter()
        .find(|(s, _)| *s == symbol)
        .map(|(_, p)| *p)
        .expect("stand-in price");
    placed(
        app.call(
            trader,
            "trading/place",
            &[
                ("venue", key),
                ("symbol", symbol),
                ("side", "buy"),
                ("order_type", "market"),
                ("quantity", quantity),
                ("price", price),
            ],
        )
        .await,
    )
    .await
}

#[tokio::test]
async fn a_binance_order_is_signed_held_while_binance_is_down_and_executed_once_after() {
    let binance = Binance::testnet(Mode::Normal).await;
    let url = binance.url.clone();
    let app = spawn_app_with(|s| {
        s.exchanges.binance_testnet_url = url;
        s.exchanges.timeout_seconds = 1;
    })
    .await;
    binance.follow_clock(app.clock.clone());
    let trader = app.signed_in_as("trader@example.com", Role::Trader).await;
    let key = binance_key(&app, &trader).await;
    let trading = app.backend.services.trading.clone();

    // Up: signed with the vault's key, filled at Binance's price.
    let filled = binance_market(&app, &trader, &key, "BTCUSDT", "0.01").await;
    assert_eq!(filled["status"], "filled", "{filled}");
    assert_eq!(filled["average_price"], "65000");

    // Down (HTTP 500: Binance may or may not have acted): held with the reason. (A market
    // order would be refused: Binance gives no price either. A buy limit is judged at its
    // limit, and at Binance's price it fills there.)
    binance.set_mode(Mode::ServerError);
    let held = placed(limit_at(&app, &trader, &key, "ETHUSDT", "0.5", "3200.00").await).await;
    assert_eq!(held["status"], "held", "{held}");
    let reason = held["status_reason"].as_str().expect("reason");
    assert!(reason.contains("Binance"), "{reason}");
    // A reply lost after Binance executed the order: held too.
    binance.set_mode(Mode::LoseReplies);
    app.clock.advance(time::Duration::seconds(11));
    assert_eq!(trading.retry_held().await.expect("retry"), 1);
    let lost = binance_market(&app, &trader, &key, "SOLUSDT", "3").await;
    assert_eq!(lost["status"], "held", "{lost}");

    // Back: each held order is looked up first and executed exactly once.
    binance.set_mode(Mode::Normal);
    app.clock.advance(time::Duration::seconds(60));
    trading.retry_held().await.expect("retry");
    assert_eq!(trading.retry_held().await.expect("retry"), 0);
    let orders = json(app.call(&trader, "trading/orders", &[]).await).await;
    let orders = orders.as_array().expect("orders");
    assert_eq!(orders.len(), 3);
    for order in orders {
        assert_eq!(order["status"], "filled", "{order}");
    }
    let owner = domain::account::UserId(
        uuid::Uuid::parse_str(&user_id(&app, &trader).await).expect("uuid"),
    );
    for order in trading.orders(owner, 10).await.expect("orders") {
        assert_eq!(
            binance.executions(&order.client_order_id),
            1,
            "{} executed exactly once",
            order.symbol
        );
    }
    assert_eq!(app.count("SELECT COUNT(*) FROM fills").await, 3);
    // Binance fills are Binance's balance, not the paper account's.
    let book = json(app.call(&trader, "trading/portfolio", &[]).await).await;
    assert_eq!(book["cash"], "100000");
    assert_eq!(book["fills"].as_array().expect("fills").len(), 3);
    app.stop().await;
}

/// A market order on a real book executes at what the book offers, not at the quote its limits
/// were judged at: on a thin book a small buy would sweep offers far above it (and a sell,
/// bids far below), spending many times the value the limits and the step-up threshold saw.
/// It is sent immediate-or-cancel at the price it was judged at, so it fills there or expires.
#[tokio::test]
async fn a_binance_market_order_never_fills_beyond_the_price_it_was_judged_at() {
    let binance = Binance::testnet(Mode::ThinBook).await;
    let url = binance.url.clone();
    let app = spawn_app_with(|s| s.exchanges.binance_testnet_url = url).await;
    binance.follow_clock(app.clock.clone());
    let trader = app.signed_in_as("trader@example.com", Role::Trader).await;
    let key = binance_key(&app, &trader).await;

    // The ticker says 65,000; the only offers are at 650,000.
    let buy = binance_market(&app, &trader, &key, "BTCUSDT", "0.01").await;
    assert_eq!(buy["status"], "cancelled", "{buy}");
    let reason = buy["status_reason"].as_str().expect("reason");
    assert!(
        reason.contains("Expired") && reason.contains("65000"),
        "{reason}"
    );
    let sell = placed(
        app.call(
            &trader,
            "trading/place",
            &[
                ("venue", key.as_str()),
                ("symbol", "BTCUSDT"),
                ("side", "sell"),
                ("order_type", "market"),
                ("quantity", "0.01"),
                ("price", "65000.00"),
            ],
        )
        .await,
    )
    .await;
    assert_eq!(sell["status"], "cancelled", "{sell}");
    assert_eq!(app.count("SELECT COUNT(*) FROM fills").await, 0);
    let posted: Vec<String> = binance
        .seen()
        .iter()
        .filter(|r| r.method == axum::http::Method::POST)
        .map(|r| r.body.clone())
        .collect();
    assert_eq!(posted.len(), 2, "{posted:?}");
    assert!(
        posted[0].contains("side=BUY&type=LIMIT&timeInForce=IOC&price=65000&"),
        "{}",
        posted[0]
    );
    // A sell may go 5 % below the price it was judged at, no further.
    assert!(
        posted[1].contains("side=SELL&type=LIMIT&timeInForce=IOC&price=61750&"),
        "{}",
        posted[1]
    );

    // Where the book is as the quote says, the same order fills there.
    binance.set_mode(Mode::Normal);
    let filled = binance_market(&app, &trader, &key, "BTCUSDT", "0.01").await;
    assert_eq!(filled["status"], "filled", "{filled}");
    assert_eq!(filled["average_price"], "65000");
    app.stop().await;
}

/// A range blocked while an order waits to be sent (held through an outage, or in review)
/// stops that order when it is sent: it is judged against the blocklist as it is then.
#[tokio::test]
async fn a_held_order_placed_from_an_address_blocked_meanwhile_is_never_sent() {
    let binance = Binance::testnet(Mode::Normal).await;
    let url = binance.url.clone();
    let app = spawn_app_with(|s| {
        s.exchanges.binance_testnet_url = url;
        s.exchanges.timeout_seconds = 1;
    })
    .await;
    binance.follow_clock(app.clock.clone());
    let trader = app.signed_in_as("trader@example.com", Role::Trader).await;
    let key = binance_key(&app, &trader).await;
    binance.set_mode(Mode::ServerError);
    let held = placed(limit_at(&app, &trader, &key, "ETHUSDT", "0.5", "3200.00").await).await;
    assert_eq!(held["status"], "held", "{held}");
    let placed_from = app
        .text("SELECT ip FROM orders")
        .await
        .expect("the order's address");
    app.exec(&format!(
        "INSERT INTO ip_blocklist (id, cidr, note, created_at) \
         VALUES ('blocked-meanwhile', '{placed_from}', 'seen in an attack', '2026-01-01T00:00:00Z')"
    ))
    .await;

    binance.set_mode(Mode::Normal);
    app.clock.advance(time::Duration::seconds(60));
    app.backend
        .services
        .trading
        .retry_held()
        .await
        .expect("retry");
    let orders = json(app.call(&trader, "trading/orders", &[]).await).await;
    let order = &orders[0];
    assert_eq!(order["status"], "denied", "{order}");
    let reason = order["status_reason"].as_str().expect("reason");
    assert!(reason.contains("blocked"), "{reason}");
    let client_order_id = app
        .text("SELECT client_order_id FROM orders")
        .await
        .expect("client order id");
    assert_eq!(binance.executions(&client_order_id), 0);
    app.stop().await;
}

#[tokio::test]
async fn orders_submitted_at_the_same_instant_cannot_share_a_limit() {
    let app = spawn_app().await;
    let trader = app.signed_in_as("trader@example.com", Role::Trader).await;
    app.exec(
        "UPDATE risk_limits SET value = '1000' WHERE scope = 'global' AND field = 'daily_notional'",
    )
    .await;
    let sol = quote(&app, &trader, "SOLUSDT").await;
    let price: f64 = sol.parse().expect("price");
    // Each alone fits the day's limit; both together do not.
    let quantity = format!("{:.2}", 600.0 / price);
    let (first, second) = tokio::join!(
        market_at(&app, &trader, "SOLUSDT", "buy", &quantity, &sol, None),
        market_at(&app, &trader, "SOLUSDT", "buy", &quantity, &sol, None),
    );
    let mut statuses = vec![
        placed(first).await["status"]
            .as_str()
            .expect("status")
            .to_owned(),
        placed(second).await["status"]
            .as_str()
            .expect("status")
            .to_owned(),
    ];
    statuses.sort();
    assert_eq!(statuses, ["denied", "filled"]);
    app.stop().await;
}

/// Two app servers sharing one PostgreSQL database: a trader's orders sent to both at the same
/// instant are screened one after the other there too, so they cannot share a limit either.
#[tokio::test]
async fn orders_placed_through_two_app_servers_at_once_cannot_share_a_limit() {
    if !is_postgres() {
        // A SQLite file is one app server's own (README); the test above covers that case.
        return;
    }
    let db = TestDatabase::new().await;
    let settings = test_settings(&db);
    let clock = std::sync::Arc::new(TestClock::default());
    let first = spawn_on(db.clone(), settings.clone(), clock.clone()).await;
    let second = spawn_on(db, settings, clock).await;
    first
        .exec(
            "UPDATE risk_limits SET value = '1000' WHERE scope = 'global' AND field = 'daily_notional'",
        )
        .await;
    // A few traders, one pair of orders each: every order alone fits the day's limit, any two
    // together do not.
    for round in 0..4 {
        let email = format!("trader{round}@example.com");
        let on_first = first.signed_in_as(&email, Role::Trader).await;
        let on_second = second.new_client();
        assert_eq!(
            second.log_in(&on_second, &email, PASSWORD).await.status(),
            200
        );
        let sol = quote(&first, &on_first, "SOLUSDT").await;
        let quantity = format!("{:.2}", 600.0 / sol.parse::<f64>().expect("price"));
        let (a, b) = tokio::join!(
            market_at(&first, &on_first, "SOLUSDT", "buy", &quantity, &sol, None),
            market_at(&second, &on_second, "SOLUSDT", "buy", &quantity, &sol, None),
        );
        let mut statuses = vec![
            placed(a).await["status"]
                .as_str()
                .expect("status")
                .to_owned(),
            placed(b).await["status"]
                .as_str()
                .expect("status")
                .to_owned(),
        ];
        statuses.sort();
        assert_eq!(statuses, ["denied", "filled"], "round {round}");
    }
    second.stop().await;
    first.stop().await;
}

#[tokio::test]
async fn a_rate_limited_binance_is_left_alone_as_long_as_it_asks() {
    let binance = Binance::testnet(Mode::Normal).await;
    let url = binance.url.clone();
    let app = spawn_app_with(|s| s.exchanges.binance_testnet_url = url).await;
    binance.follow_clock(app.clock.clone());
    let trader = app.signed_in_as("trader@example.com", Role::Trader).await;
    let key = binance_key(&app, &trader).await;
    let trading = app.backend.services.trading.clone();

    // The stand-in answers 429 with Retry-After: 30, longer than the 10 s cool-down. (To its
    // price look-up too: a buy limit, judged at its limit, is what gets as far as sending.)
    binance.set_mode(Mode::RateLimited);
    let held = placed(limit_at(&app, &trader, &key, "BTCUSDT", "0.01", "65000.00").await).await;
    assert_eq!(held["status"], "held", "{held}");
    let reason = held["status_reason"].as_str().expect("reason");
    assert!(reason.contains("asked us to slow down"), "{reason}");
    binance.set_mode(Mode::Normal);
    let asked_before = binance.seen_count();
    app.clock.advance(time::Duration::seconds(11));
    assert_eq!(trading.retry_held().await.expect("retry"), 0);
    assert_eq!(
        binance.seen_count(),
        asked_before,
        "nothing sent while it asked us to wait"
    );
    app.clock.advance(time::Duration::seconds(20));
    assert_eq!(trading.retry_held().await.expect("retry"), 1);
    let orders = json(app.call(&trader, "trading/orders", &[]).await).await;
    assert_eq!(orders[0]["status"], "filled", "{orders}");
    app.stop().await;
}

#[tokio::test]
async fn a_resting_paper_order_survives_a_restart_of_the_paper_book() {
    let app = spawn_app().await;
    let trader = app.signed_in_as("trader@example.com", Role::Trader).await;
    let paper = app.backend.paper.clone();
    let trading = app.backend.services.trading.clone();
    let sol: f64 = quote(&app, &trader, "SOLUSDT")
        .await
        .parse()
        .expect("price");
    // Far below the market: it rests.
    let below = format!("{:.2}", sol * 0.5);
    let order = placed(
        app.call(
            &trader,
            "trading/place",
            &[
                ("venue", "paper"),
                ("symbol", "SOLUSDT"),
                ("side", "buy"),
                ("order_type", "limit"),
                ("quantity", "2"),
                ("price", &below),
            ],
        )
        .await,
    )
    .await;
    assert_eq!(order["status"], "open", "{order}");

    // The process restarts: the in-memory book is empty, our order row still says open.
    paper.restart();
    trading.refresh_open().await.expect("refresh");
    let id = order["id"].as_str().expect("id");
    let again = json(app.call(&trader, "trading/order", &[("id", id)]).await).await;
    assert_eq!(again["status"], "open", "{again}");
    // The book knows it again, so it can be cancelled there.
    let cancelled = placed(app.call(&trader, "trading/cancel", &[("id", id)]).await).await;
    assert_eq!(cancelled["status"], "cancelled", "{cancelled}");
    assert_eq!(app.count("SELECT COUNT(*) FROM fills").await, 0);
    app.stop().await;
}

#[tokio::test]
async fn a_resting_binance_order_is_looked_up_now_and_then_and_its_fill_recorded() {
    let binance = Binance::testnet(Mode::Normal).await;
    let url = binance.url.clone();
    let app = spawn_app_with(|s| s.exchanges.binance_testnet_url = url).await;
    binance.follow_clock(app.clock.clone());
    let trader = app.signed_in_as("trader@example.com", Role::Trader).await;
    let key = binance_key(&app, &trader).await;
    let trading = app.backend.services.trading.clone();

    // Below Binance's 65,000: it rests there.
    let order = placed(
        app.call(
            &trader,
            "trading/place",
            &[
                ("venue", &key),
                ("symbol", "BTCUSDT"),
                ("side", "buy"),
                ("order_type", "limit"),
                ("quantity", "0.02"),
                ("price", "60000"),
            ],
        )
        .await,
    )
    .await;
    assert_eq!(order["status"], "open", "{order}");
    let id = order["id"].as_str().expect("id");
    let key_uses = "SELECT COUNT(*) FROM audit_events WHERE action = 'vault.key_used'";
    let uses_after_placing = app.count(key_uses).await;

    // Still resting: looked up once (one key use, with its receipt), nothing changes.
    assert_eq!(trading.refresh_open().await.expect("refresh"), 0);
    assert_eq!(app.count(key_uses).await, uses_after_placing + 1);
    // It fills on Binance; the next round within the minute does not decrypt the key again.
    let client_order_id = binance
        .seen()
        .iter()
        .rev()
        .find(|r| r.method == axum::http::Method::POST)
        .and_then(|r| {
            r.body
                .split('&')
                .find_map(|p| p.strip_prefix("newClientOrderId="))
                .map(str::to_owned)
        })
        .expect("the posted client order id");
    binance.fill_resting(&client_order_id);
    assert_eq!(trading.refresh_open().await.expect("refresh"), 0);
    assert_eq!(app.count(key_uses).await, uses_after_placing + 1);

    app.clock.advance(time::Duration::seconds(61));
    assert_eq!(trading.refresh_open().await.expect("refresh"), 1);
    let filled = json(app.call(&trader, "trading/order", &[("id", id)]).await).await;
    assert_eq!(filled["status"], "filled", "{filled}");
    assert_eq!(filled["average_price"], "60000");
    assert_eq!(app.count("SELECT COUNT(*) FROM fills").await, 1);
    assert_eq!(binance.executions(&client_order_id), 1);
    app.stop().await;
}

#[tokio::test]
async fn a_resting_binance_order_is_cancelled_with_the_traders_key() {
    let binance = Binance::testnet(Mode::Normal).await;
    let url = binance.url.clone();
    let app = spawn_app_with(|s| s.exchanges.binance_testnet_url = url).await;
    binance.follow_clock(app.clock.clone());
    let trader = app.signed_in_as("trader@example.com", Role::Trader).await;
    let key = binance_key(&app, &trader).await;
    let order = placed(
        app.call(
            &trader,
            "trading/place",
            &[
                ("venue", &key),
                ("symbol", "ETHUSDT"),
                ("side", "buy"),
                ("order_type", "limit"),
                ("quantity", "1"),
                ("price", "3000"),
            ],
        )
        .await,
    )
    .await;
    assert_eq!(order["status"], "open", "{order}");
    let id = order["id"].as_str().expect("id");
    let cancelled = placed(app.call(&trader, "trading/cancel", &[("id", id)]).await).await;
    assert_eq!(cancelled["status"], "cancelled", "{cancelled}");
    assert!(
        binance
            .seen()
            .iter()
            .any(|r| r.method == axum::http::Method::DELETE),
        "the cancel reached Binance"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_key_with_a_resting_order_is_not_revoked_and_once_suspended_still_takes_it_off() {
    let binance = Binance::testnet(Mode::Normal).await;
    let url = binance.url.clone();
    let app = spawn_app_with(|s| s.exchanges.binance_testnet_url = url).await;
    binance.follow_clock(app.clock.clone());
    let admin = app.admin_with_key("admin@example.com").await;
    let trader = app.signed_in_as("trader@example.com", Role::Trader).await;
    let key = binance_key(&app, &trader).await;
    let order = placed(limit_at(&app, &trader, &key, "ETHUSDT", "1", "3000").await).await;
    assert_eq!(order["status"], "open", "{order}");
    let id = order["id"].as_str().expect("id");

    // Revoking would delete the only means to cancel it at Binance: refused, nothing changes.
    let refused = app
        .call(&trader, "keys/revoke", &[("key_id", key.as_str())])
        .await;
    assert_eq!(refused.status(), 409);
    let why = refused.text().await.expect("body");
    assert!(why.contains("Cancel them first"), "{why}");
    let revoked = "SELECT COUNT(*) FROM audit_events WHERE action = 'vault.key_revoked'";
    assert_eq!(app.count(revoked).await, 0);
    assert_eq!(
        app.count(
            "SELECT COUNT(*) FROM exchange_keys WHERE ciphertext IS NOT NULL AND status = 'active'"
        )
        .await,
        1
    );

    // Nor while an order whose send went unanswered is held again (the exchange may have it).
    app.exec(&format!(
        "UPDATE orders SET status = 'held', attempts = 1 WHERE id = '{id}'"
    ))
    .await;
    let refused = app
        .call(&trader, "keys/revoke", &[("key_id", key.as_str())])
        .await;
    assert_eq!(refused.status(), 409);
    app.exec(&format!(
        "UPDATE orders SET status = 'open' WHERE id = '{id}'"
    ))
    .await;

    // Suspended (as a re-check that finds withdrawals enabled leaves it): it signs no new
    // order, yet it still follows the resting one, and a stop can still take it off the book.
    app.exec("UPDATE exchange_keys SET status = 'suspended'")
        .await;
    app.clock.advance(time::Duration::seconds(61));
    app.backend
        .services
        .trading
        .refresh_open()
        .await
        .expect("refresh");
    let lookup = format!(
        "SELECT COUNT(*) FROM audit_events WHERE action = 'vault.key_used' \
         AND details LIKE '%checking order {id}%'"
    );
    assert_eq!(
        app.count(&lookup).await,
        1,
        "looked up with the suspended key"
    );
    let blocked = limit_at(&app, &trader, &key, "ETHUSDT", "1", "3000").await;
    if blocked.status() == 200 {
        let blocked = json(blocked).await;
        assert_eq!(blocked["status"], "rejected", "{blocked}");
    } else {
        assert!(blocked.status().is_client_error(), "{}", blocked.status());
    }
    let response = app
        .call(&admin, "risk/kill-switch", &[("on", "true")])
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.json::<Value>().await.expect("effect")["cancelled"],
        1
    );
    let after = json(app.call(&trader, "trading/order", &[("id", id)]).await).await;
    assert_eq!(after["status"], "cancelled", "{after}");
    assert!(
        binance
            .seen()
            .iter()
            .any(|r| r.method == axum::http::Method::DELETE),
        "the cancel reached Binance"
    );
    let receipt = format!(
        "SELECT COUNT(*) FROM audit_events WHERE action = 'vault.key_used' \
         AND details LIKE '%cancelling order {id}%'"
    );
    assert_eq!(app.count(&receipt).await, 1);

    // Nothing left at the exchange: now it can be revoked.
    let response = app
        .call(&trader, "keys/revoke", &[("key_id", key.as_str())])
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(app.count(revoked).await, 1);
    app.stop().await;
}

#[tokio::test]
async fn a_held_order_on_a_key_suspended_since_its_send_is_looked_up_not_sent_again() {
    let binance = Binance::testnet(Mode::Normal).await;
    let url = binance.url.clone();
    let app = spawn_app_with(|s| s.exchanges.binance_testnet_url = url).await;
    binance.follow_clock(app.clock.clone());
    let trader = app.signed_in_as("trader@example.com", Role::Trader).await;
    let key = binance_key(&app, &trader).await;
    let trading = app.backend.services.trading.clone();

    // Sent once, unanswered (429): held, and it may be at the exchange.
    binance.set_mode(Mode::RateLimited);
    let held = placed(limit_at(&app, &trader, &key, "BTCUSDT", "0.01", "65000.00").await).await;
    assert_eq!(held["status"], "held", "{held}");
    let id = held["id"].as_str().expect("id").to_owned();
    binance.set_mode(Mode::Normal);
    app.exec("UPDATE exchange_keys SET status = 'suspended'")
        .await;
    let posts = || {
        binance
            .seen()
            .iter()
            .filter(|r| r.method == axum::http::Method::POST)
            .count()
    };
    let posted_before = posts();
    app.clock.advance(time::Duration::seconds(31));
    trading.retry_held().await.expect("retry");

    // Asked with a look-up, never placed again; the exchange never got it, so it is rejected.
    assert_eq!(
        posts(),
        posted_before,
        "nothing placed with a suspended key"
    );
    let after = json(app.call(&trader, "trading/order", &[("id", &id)]).await).await;
    assert_eq!(after["status"], "rejected", "{after}");
    let reason = after["status_reason"].as_str().unwrap_or_default();
    assert!(reason.contains("never got this one"), "{reason}");
    let lookup = format!(
        "SELECT COUNT(*) FROM audit_events WHERE action = 'vault.key_used' \
         AND details LIKE '%checking order {id}%'"
    );
    assert_eq!(app.count(&lookup).await, 1);
    app.stop().await;
}

/// A buy limit below Binance's price, placed while Binance loses its replies: it rests there,
/// and is held here as unanswered. Returns its id and client order id.
async fn held_resting_at_binance(
    app: &TestApp,
    trader: &reqwest::Client,
    binance: &Binance,
    key: &str,
) -> (String, String) {
    // Past any pause an earlier lost reply set, so that this one is sent.
    app.clock.advance(time::Duration::seconds(31));
    binance.set_mode(Mode::LoseReplies);
    let held = placed(limit_at(app, trader, key, "ETHUSDT", "0.5", "3000.00").await).await;
    assert_eq!(held["status"], "held", "{held}");
    binance.set_mode(Mode::Normal);
    let id = held["id"].as_str().expect("id").to_owned();
    let owner =
        domain::account::UserId(uuid::Uuid::parse_str(&user_id(app, trader).await).expect("uuid"));
    let client_order_id = app
        .backend
        .services
        .trading
        .orders(owner, 50)
        .await
        .expect("orders")
        .into_iter()
        .find(|o| o.id.to_string() == id)
        .expect("the order")
        .client_order_id;
    (id, client_order_id)
}

#[tokio::test]
async fn a_held_binance_order_is_cancelled_as_binance_answers_pending_refused_or_not_at_all() {
    let binance = Binance::testnet(Mode::Normal).await;
    let url = binance.url.clone();
    let app = spawn_app_with(|s| {
        s.exchanges.binance_testnet_url = url;
        s.exchanges.timeout_seconds = 1;
    })
    .await;
    binance.follow_clock(app.clock.clone());
    let trader = app.signed_in_as("trader@example.com", Role::Trader).await;
    let key = binance_key(&app, &trader).await;
    let trading = app.backend.services.trading.clone();
    let count =
        |method: axum::http::Method| binance.seen().iter().filter(|r| r.method == method).count();
    let order_view = |id: &str| {
        let (app, trader, id) = (&app, &trader, id.to_owned());
        async move { json(app.call(trader, "trading/order", &[("id", &id)]).await).await }
    };
    let cancel = |id: &str| {
        let (app, trader, id) = (&app, &trader, id.to_owned());
        async move { app.call(trader, "trading/cancel", &[("id", &id)]).await }
    };

    // Binance accepts the cancel but has not finished it (PENDING_CANCEL): the cancel stays
    // pending here, never a send, and is asked again until Binance confirms.
    let (pending, pending_client_id) = held_resting_at_binance(&app, &trader, &binance, &key).await;
    let posts = count(axum::http::Method::POST);
    binance.set_mode(Mode::PendingCancels);
    // Past the pause the lost reply set, so that the cancel asks Binance.
    app.clock.advance(time::Duration::seconds(31));
    let waiting = placed(cancel(&pending).await).await;
    assert_eq!(waiting["status"], "held", "{waiting}");
    assert_eq!(waiting["can_cancel"], false, "{waiting}");
    let reason = waiting["status_reason"].as_str().expect("reason");
    assert!(reason.contains("has not confirmed it yet"), "{reason}");
    assert_eq!(count(axum::http::Method::DELETE), 1);
    binance.set_mode(Mode::Normal);
    app.clock.advance(time::Duration::seconds(31));
    assert_eq!(
        trading.retry_held().await.expect("retry"),
        0,
        "nothing sent"
    );
    let done = order_view(&pending).await;
    assert_eq!(done["status"], "cancelled", "{done}");
    let reason = done["status_reason"].as_str().expect("reason");
    assert!(
        reason.contains("It had reached Binance, and was cancelled there."),
        "{reason}"
    );
    assert_eq!(count(axum::http::Method::DELETE), 2);
    assert_eq!(count(axum::http::Method::POST), posts, "never placed again");
    assert_eq!(binance.executions(&pending_client_id), 1);

    // Binance refuses the cancel: the order rests there, so it is recorded as open, and the
    // owner is told; once Binance takes the cancel, it comes off.
    let (refused, _) = held_resting_at_binance(&app, &trader, &binance, &key).await;
    binance.set_mode(Mode::RefuseCancels);
    app.clock.advance(time::Duration::seconds(31));
    let response = cancel(&refused).await;
    assert_eq!(response.status(), 503);
    let why = response.text().await.expect("body");
    assert!(why.contains("it is still open"), "{why}");
    assert_eq!(order_view(&refused).await["status"], "open");
    binance.set_mode(Mode::Normal);
    let cancelled = placed(cancel(&refused).await).await;
    assert_eq!(cancelled["status"], "cancelled", "{cancelled}");

    // Binance refuses to say whether it has the order (the key was disabled there): the cancel
    // ends here, saying it is unconfirmed, and nothing is sent.
    let (unknown, _) = held_resting_at_binance(&app, &trader, &binance, &key).await;
    let posts = count(axum::http::Method::POST);
    binance.set_mode(Mode::RefuseOrderRequests);
    app.clock.advance(time::Duration::seconds(31));
    let ended = placed(cancel(&unknown).await).await;
    assert_eq!(ended["status"], "cancelled", "{ended}");
    let reason = ended["status_reason"].as_str().expect("reason");
    assert!(reason.contains("refused to answer"), "{reason}");
    assert!(reason.contains("check your account there"), "{reason}");
    app.clock.advance(time::Duration::seconds(31));
    trading.retry_held().await.expect("retry");
    assert_eq!(count(axum::http::Method::POST), posts, "never placed again");
    app.stop().await;
}
