//! Issue 11 (controls hold): approvals. An order-bound approval covers the whole order (venue
//! and order type included), a proposal is placed at most once, a hold never swallows a
//! step-up, and an order without its step-up never makes an IP familiar.

use domain::account::Role;
use serde_json::Value;

use crate::binance::{Binance, Mode, TRADE_KEY, TRADE_SECRET};
#[allow(unused_imports)]
use crate::helpers::*;

async fn json(response: reqwest::Response) -> Value {
    let status = response.status();
    let body = response.text().await.expect("body");
    serde_json::from_str(&body).unwrap_or_else(|_| panic!("{status}: {body}"))
}

async fn quote(app: &TestApp, client: &reqwest::Client, symbol: &str) -> String {
    let ticket = json(app.call(client, "trading/ticket", &[]).await).await;
    ticket["prices"]
        .as_array()
        .expect("prices")
        .iter()
        .find(|p| p["symbol"] == symbol)
        .and_then(|p| p["price"].as_str())
        .expect("a quote for the symbol")
        .to_owned()
}

/// Asks for an approval of `order` (venue, order_type, symbol, side, quantity, price) and
/// answers it with the security key; returns the approval's nonce.
pub(crate) async fn approve_with_key(
    app: &TestApp,
    client: &reqwest::Client,
    key: &mut webauthn_authenticator_rs::softtoken::SoftToken,
    order: &[(&str, &str)],
) -> String {
    let options = app.call(client, "stepup/order-options", order).await;
    assert_eq!(options.status(), 200);
    let options = json(options).await;
    let nonce = options["nonce"].as_str().expect("nonce").to_owned();
    let assertion = sign_request(key, options["webauthn"].as_str().expect("webauthn request"));
    let mut form = order.to_vec();
    form.push(("method", "security-key"));
    form.push(("response", &assertion));
    let approved = app.call(client, "stepup/order-approve", &form).await;
    assert_eq!(approved.status(), 200);
    nonce
}

/// `trading/place` for an approval's order fields (venue, order_type, symbol, side, quantity,
/// price), with the nonce.
async fn place(
    app: &TestApp,
    client: &reqwest::Client,
    order: &[(&str, &str)],
    nonce: &str,
) -> reqwest::Response {
    let mut form = order.to_vec();
    form.push(("approval_nonce", nonce));
    app.call(client, "trading/place", &form).await
}

fn order<'a>(
    venue: &'a str,
    order_type: &'a str,
    quantity: &'a str,
    price: &'a str,
) -> Vec<(&'static str, &'a str)> {
    vec![
        ("venue", venue),
        ("order_type", order_type),
        ("symbol", "BTCUSDT"),
        ("side", "buy"),
        ("quantity", quantity),
        ("price", price),
    ]
}

#[tokio::test]
async fn an_approval_for_a_paper_order_is_refused_for_the_same_terms_on_a_binance_key() {
    let binance = Binance::testnet(Mode::Normal).await;
    let url = binance.url.clone();
    let app = spawn_app_with(|s| s.exchanges.binance_testnet_url = url).await;
    binance.follow_clock(app.clock.clone());
    let trader = app.signed_in_as("trader@example.com", Role::Trader).await;
    let mut key = soft_key();
    assert_eq!(
        app.register_key(&trader, &mut key, "Key").await.status(),
        200
    );
    let added = app
        .call(
            &trader,
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
    let binance_key = json(added).await["id"].as_str().expect("key id").to_owned();

    // A limit buy of 0.2 BTC at the paper quote is over 10,000 USDT, so it needs an approval;
    // at that limit it is acceptable on either exchange.
    let price = quote(&app, &trader, "BTCUSDT").await;
    let on_paper = order("paper", "limit", "0.2", &price);
    let nonce = approve_with_key(&app, &trader, &mut key, &on_paper).await;

    // The same symbol, side, quantity, price and nonce on the Binance key: refused, nothing
    // placed, nothing sent to Binance.
    let on_binance = order(&binance_key, "limit", "0.2", &price);
    let refused = place(&app, &trader, &on_binance, &nonce).await;
    assert_eq!(refused.status(), 400);
    assert!(
        json(refused).await.to_string().contains("does not match"),
        "refused as another order"
    );
    assert_eq!(app.count("SELECT COUNT(*) FROM orders").await, 0);
    assert_eq!(
        app.count(
            "SELECT COUNT(*) FROM audit_events WHERE action = 'stepup.order_approval_refused'"
        )
        .await,
        1
    );

    // The approval is still good for the order it was made for, once.
    let placed = json(place(&app, &trader, &on_paper, &nonce).await).await;
    assert_eq!(placed["venue"], "Paper exchange (built in)", "{placed}");
    assert_eq!(
        app.count("SELECT COUNT(*) FROM orders WHERE exchange = 'binance'")
            .await,
        0
    );
    assert_eq!(
        place(&app, &trader, &on_paper, &nonce).await.status(),
        400,
        "spent"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_limit_approval_is_refused_for_a_market_order_with_the_same_terms() {
    let app = spawn_app().await;
    let trader = app.signed_in_as("trader@example.com", Role::Trader).await;
    let mut key = soft_key();
    assert_eq!(
        app.register_key(&trader, &mut key, "Key").await.status(),
        200
    );
    let price = quote(&app, &trader, "BTCUSDT").await;
    let limit = order("paper", "limit", "0.2", &price);
    let nonce = approve_with_key(&app, &trader, &mut key, &limit).await;

    // A market order with the quote as its price has the same symbol, side, quantity and price.
    let market = order("paper", "market", "0.2", &price);
    let refused = place(&app, &trader, &market, &nonce).await;
    assert_eq!(refused.status(), 400);
    assert!(json(refused).await.to_string().contains("does not match"));
    assert_eq!(app.count("SELECT COUNT(*) FROM orders").await, 0);

    // The limit order it was made for goes through.
    let placed = place(&app, &trader, &limit, &nonce).await;
    assert_eq!(placed.status(), 200);
    let placed = json(placed).await;
    assert_eq!(placed["order_type"], "limit", "{placed}");
    assert_ne!(placed["status"], "denied", "{placed}");

    // And a market approval covers the market order.
    let nonce = approve_with_key(&app, &trader, &mut key, &market).await;
    let placed = place(&app, &trader, &market, &nonce).await;
    assert_eq!(placed.status(), 200);
    assert_eq!(json(placed).await["status"], "filled");
    assert_eq!(app.count("SELECT COUNT(*) FROM orders").await, 2);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_concurrent_sign_offs_of_one_proposal_place_exactly_one_order() {
    let app = spawn_app().await;
    let trader = app.signed_in_as("trader@example.com", Role::Trader).await;
    // Creating an agent token needs a step-up.
    let _key = app.stepped_up_with_new_key(&trader).await;
    let token = json(
        app.call(
            &trader,
            "agent/token-create",
            &[("name", "bot"), ("scopes[0]", "proposals:write")],
        )
        .await,
    )
    .await;
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
    let id = json(proposal).await["proposal"]["id"]
        .as_str()
        .expect("proposal id")
        .to_owned();
    let price = quote(&app, &trader, "BTCUSDT").await;
    let form = [("id", id.as_str()), ("quoted_price", price.as_str())];

    let (first, second) = tokio::join!(
        app.call(&trader, "agent/sign-off", &form),
        app.call(&trader, "agent/sign-off", &form)
    );
    let mut statuses = [first.status().as_u16(), second.status().as_u16()];
    statuses.sort_unstable();
    assert_eq!(
        statuses,
        [200, 409],
        "one sign-off places, the other is told"
    );
    assert_eq!(app.count("SELECT COUNT(*) FROM orders").await, 1);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM audit_events WHERE action = 'agent.proposal_placed'")
            .await,
        1
    );
    let overview = json(app.call(&trader, "agent/overview", &[]).await).await;
    assert_eq!(overview["proposals"][0]["status"], "placed");
    assert!(overview["proposals"][0]["order_id"].is_string());

    // Later sign-offs are refused the same way, and place nothing.
    let late = app.call(&trader, "agent/sign-off", &form).await;
    assert_eq!(late.status(), 409);
    assert_eq!(app.count("SELECT COUNT(*) FROM orders").await, 1);
    app.stop().await;
}

/// A market buy of 0.05 BTC (2,874 to 3,126 USDT over the paper feed's whole range) at the current quote, without an approval.
async fn place_small(app: &TestApp, trader: &reqwest::Client) -> reqwest::Response {
    let price = quote(app, trader, "BTCUSDT").await;
    app.call(
        trader,
        "trading/place",
        &order("paper", "market", "0.05", &price),
    )
    .await
}

/// The threshold is per order, so a stolen session could once split 50,000 USDT into orders of
/// 9,999 and never meet a second factor. What goes out without an approval adds up: past the
/// threshold since the last approved order today, the next order needs one.
#[tokio::test]
async fn orders_split_below_the_step_up_threshold_need_an_approval_once_they_add_up_to_it() {
    let app = spawn_app().await;
    // Similar orders in a burst are not what this is about.
    app.exec(
        "UPDATE risk_limits SET value = '1' WHERE scope = 'global' AND field = 'anomaly_threshold'",
    )
    .await;
    let trader = app.signed_in_as("trader@example.com", Role::Trader).await;
    let mut key = soft_key();
    assert_eq!(
        app.register_key(&trader, &mut key, "Key").await.status(),
        200
    );
    let unapproved = |ticket: &Value| {
        ticket["unapproved_notional"]
            .as_str()
            .expect("unapproved_notional")
            .parse::<f64>()
            .expect("a number")
    };

    // Three go out: 8,622 to 9,378 USDT without a second factor.
    for _ in 0..3 {
        let placed = json(place_small(&app, &trader).await).await;
        assert_eq!(placed["status"], "filled", "{placed}");
    }
    let ticket = json(app.call(&trader, "trading/ticket", &[]).await).await;
    let before = unapproved(&ticket);
    assert!((8600.0..9400.0).contains(&before), "{ticket}");

    // The fourth (however the price moved) would take it past 10,000: it needs an approval,
    // and nothing is recorded.
    let refused = place_small(&app, &trader).await;
    assert_eq!(refused.status(), 403);
    let body = json(refused).await.to_string();
    assert!(
        body.contains("since your last one in the past 24 hours come to")
            && body.contains("10,000 USDT"),
        "{body}"
    );
    assert_eq!(app.count("SELECT COUNT(*) FROM orders").await, 3);

    // Approved with the key, it goes out, and the count starts again from it.
    let price = quote(&app, &trader, "BTCUSDT").await;
    let fourth = order("paper", "market", "0.05", &price);
    let nonce = approve_with_key(&app, &trader, &mut key, &fourth).await;
    let approved = json(place(&app, &trader, &fourth, &nonce).await).await;
    assert_eq!(approved["status"], "filled", "{approved}");
    let ticket = json(app.call(&trader, "trading/ticket", &[]).await).await;
    assert_eq!(unapproved(&ticket), 0.0, "{ticket}");
    let fifth = json(place_small(&app, &trader).await).await;
    assert_eq!(fifth["status"], "filled", "{fifth}");
    let ticket = json(app.call(&trader, "trading/ticket", &[]).await).await;
    assert!(unapproved(&ticket) > 2000.0, "{ticket}");
    assert_eq!(
        app.count("SELECT COUNT(*) FROM orders WHERE approval_state = 'approved'")
            .await,
        1
    );
    app.stop().await;
}

async fn set_velocity_limit(app: &TestApp, max_orders: u32) {
    app.exec(&format!(
        "UPDATE risk_limits SET value = '{max_orders}' \
         WHERE scope = 'global' AND field = 'velocity_max_orders'"
    ))
    .await;
}

/// After one small order, a 0.2 BTC market order (above the step-up threshold, without an
/// approval) that the velocity limit (one order a minute) holds for review.
async fn large_order_held_for_review(app: &TestApp, trader: &reqwest::Client) -> Value {
    let price = quote(app, trader, "BTCUSDT").await;
    let small = order("paper", "market", "0.001", &price);
    let first = app.call(trader, "trading/place", &small).await;
    assert_eq!(json(first).await["status"], "filled");
    set_velocity_limit(app, 1).await;
    let large = order("paper", "market", "0.2", &price);
    let held = app.call(trader, "trading/place", &large).await;
    assert_eq!(held.status(), 200);
    let held = json(held).await;
    assert_eq!(held["status"], "held", "{held}");
    held
}

/// A reviewer releases the case `held` opened.
async fn release_case_of(app: &TestApp, held: &Value) {
    let case_id = held["case_id"].as_str().expect("case");
    let reviewer = app
        .signed_in_as("reviewer@example.com", Role::Reviewer)
        .await;
    let released = app
        .call(
            &reviewer,
            "review/decide",
            &[
                ("id", case_id),
                ("decision", "release"),
                ("note", "Velocity explained by the trader."),
            ],
        )
        .await;
    assert_eq!(released.status(), 200);
}

#[tokio::test]
async fn an_order_needing_step_up_that_is_also_held_stays_unsent_after_release_until_its_owner_approves_it()
 {
    let app = spawn_app().await;
    let trader = app.signed_in_as("trader@example.com", Role::Trader).await;
    let mut key = soft_key();
    assert_eq!(
        app.register_key(&trader, &mut key, "Key").await.status(),
        200
    );
    // One order a minute: the next one is held for review (velocity). At 0.2 BTC it is also
    // above the step-up threshold, and no approval is given.
    let held = large_order_held_for_review(&app, &trader).await;
    assert_eq!(
        held["awaiting_approval"], false,
        "waits for the reviewer first"
    );
    let order_id = held["id"].as_str().expect("id").to_owned();
    // It cannot be approved past the reviewer.
    let early = app
        .call(
            &trader,
            "trading/approve-held",
            &[("id", &order_id), ("approval_nonce", "00")],
        )
        .await;
    assert_eq!(early.status(), 400);

    // The reviewer releases it: it is not sent, it waits for its owner's approval.
    release_case_of(&app, &held).await;
    let trading = app.backend.services.trading.clone();
    assert_eq!(trading.retry_held().await.expect("retry"), 0);
    let waiting = json(
        app.call(&trader, "trading/order", &[("id", &order_id)])
            .await,
    )
    .await;
    assert_eq!(waiting["status"], "held", "{waiting}");
    assert_eq!(waiting["awaiting_approval"], true, "{waiting}");
    assert_eq!(app.backend.paper.placements(&client_order_id(&order_id)), 0);

    // An approval for other terms does not release it.
    let reference = waiting["reference_price"]
        .as_str()
        .expect("price")
        .to_owned();
    let other = order("paper", "market", "0.3", &reference);
    let other_nonce = approve_with_key(&app, &trader, &mut key, &other).await;
    let wrong = app
        .call(
            &trader,
            "trading/approve-held",
            &[("id", &order_id), ("approval_nonce", &other_nonce)],
        )
        .await;
    assert_eq!(wrong.status(), 400);
    assert_eq!(trading.retry_held().await.expect("retry"), 0);

    // The owner approves exactly this order: now it is sent, once.
    let exact = order("paper", "market", "0.2", &reference);
    let nonce = approve_with_key(&app, &trader, &mut key, &exact).await;
    let approved = app
        .call(
            &trader,
            "trading/approve-held",
            &[("id", &order_id), ("approval_nonce", &nonce)],
        )
        .await;
    assert_eq!(approved.status(), 200);
    let approved = json(approved).await;
    assert_eq!(approved["status"], "filled", "{approved}");
    assert_eq!(approved["awaiting_approval"], false);
    assert_eq!(app.backend.paper.placements(&client_order_id(&order_id)), 1);
    assert_eq!(trading.retry_held().await.expect("retry"), 0);
    let again = app
        .call(
            &trader,
            "trading/approve-held",
            &[("id", &order_id), ("approval_nonce", &nonce)],
        )
        .await;
    assert_eq!(again.status(), 400);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM audit_events WHERE action = 'trade.held_order_approved'")
            .await,
        1
    );
    app.stop().await;
}

/// An approval commits to the price its owner saw. A market order released after a long
/// review, while the price moved, is refused at approval, and the approval is not spent.
#[tokio::test]
async fn a_held_market_order_is_not_approved_after_the_price_moved() {
    let app = spawn_app().await;
    let trader = app.signed_in_as("trader@example.com", Role::Trader).await;
    let mut key = soft_key();
    assert_eq!(
        app.register_key(&trader, &mut key, "Key").await.status(),
        200
    );
    let held = large_order_held_for_review(&app, &trader).await;
    let order_id = held["id"].as_str().expect("id").to_owned();
    release_case_of(&app, &held).await;

    // The review took hours; the price moved well past what placement allows.
    let reference = held["reference_price"].as_str().expect("price").to_owned();
    until_the_price_moves_from(&app, &trader, &reference).await;
    let exact = order("paper", "market", "0.2", &reference);
    let nonce = approve_with_key(&app, &trader, &mut key, &exact).await;
    let refused = app
        .call(
            &trader,
            "trading/approve-held",
            &[("id", &order_id), ("approval_nonce", &nonce)],
        )
        .await;
    assert!(refused.status().is_client_error(), "{}", refused.status());
    let why = refused.text().await.expect("body");
    assert!(why.contains("moved from"), "{why}");
    // Nothing was spent or sent: the order still waits, and the approval is still unused.
    let waiting = json(
        app.call(&trader, "trading/order", &[("id", &order_id)])
            .await,
    )
    .await;
    assert_eq!(waiting["status"], "held", "{waiting}");
    assert_eq!(waiting["awaiting_approval"], true, "{waiting}");
    assert_eq!(app.backend.paper.placements(&client_order_id(&order_id)), 0);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM audit_events WHERE action = 'trade.held_order_approved'")
            .await,
        0
    );
    app.stop().await;
}

/// Advances the clock a minute at a time until the paper BTC price has moved more than 1.5 %
/// from `seen` (further than a market order's quote may drift), keeping `client`'s session
/// alive meanwhile: it may take hours of the test clock.
async fn until_the_price_moves_from(app: &TestApp, client: &reqwest::Client, seen: &str) {
    let seen: f64 = seen.parse().expect("price");
    for minutes in 1..=12 * 60 {
        app.clock.advance(time::Duration::minutes(1));
        if minutes % 10 == 0 {
            assert!(!app.who_am_i(client).await.is_null());
        }
        let now: f64 = app
            .backend
            .paper
            .current_price("BTCUSDT")
            .expect("a price")
            .to_string()
            .parse()
            .expect("number");
        if ((now - seen) / seen).abs() > 0.015 {
            return;
        }
    }
    panic!("the paper price moves 1.5 % within 12 hours");
}

/// An approval commits to the price its owner saw. An approved market order held while its
/// venue is paused goes out later only if the price is still about that one.
#[tokio::test]
async fn an_approved_market_order_held_while_the_price_moved_is_not_sent_at_the_new_price() {
    use server::exchange::paper::PaperOutage;

    let app = spawn_app().await;
    let trader = app.signed_in_as("trader@example.com", Role::Trader).await;
    let mut key = soft_key();
    assert_eq!(
        app.register_key(&trader, &mut key, "Key").await.status(),
        200
    );
    let paper = app.backend.paper.clone();
    let trading = app.backend.services.trading.clone();

    // An order sent while the paper exchange is down is held, and pauses the venue.
    let price = quote(&app, &trader, "BTCUSDT").await;
    let limit = format!("{:.2}", price.parse::<f64>().expect("price") * 1.02);
    paper.set_outage(Some(PaperOutage::Down));
    let first = app
        .call(
            &trader,
            "trading/place",
            &order("paper", "limit", "0.001", &limit),
        )
        .await;
    assert_eq!(json(first).await["status"], "held");
    paper.set_outage(None);

    // A large market order, approved with the security key, is held while the venue is paused.
    let price = quote(&app, &trader, "BTCUSDT").await;
    let terms = order("paper", "market", "0.2", &price);
    let nonce = approve_with_key(&app, &trader, &mut key, &terms).await;
    let held = json(place(&app, &trader, &terms, &nonce).await).await;
    assert_eq!(held["status"], "held", "{held}");
    let id = held["id"].as_str().expect("id").to_owned();
    let owner = app.who_am_i(&trader).await["id"]
        .as_str()
        .expect("id")
        .to_owned();

    until_the_price_moves_from(&app, &trader, &price).await;
    trading.retry_held().await.expect("retry");
    let after = trading
        .orders(
            domain::account::UserId(uuid::Uuid::parse_str(&owner).expect("uuid")),
            10,
        )
        .await
        .expect("orders")
        .into_iter()
        .find(|o| o.id.to_string() == id)
        .expect("the order");
    assert_eq!(
        after.status,
        domain::trading::OrderStatus::Denied,
        "{after:?}"
    );
    let reason = after.status_reason.unwrap_or_default();
    assert!(reason.contains("since you approved it"), "{reason}");
    assert_eq!(paper.placements(&client_order_id(&id)), 0, "never sent");
    app.stop().await;
}

/// The exchange's idempotency key for an order (`cp-` and the order id, without dashes).
fn client_order_id(order_id: &str) -> String {
    format!(
        "cp-{}",
        uuid::Uuid::parse_str(order_id).expect("order id").simple()
    )
}

#[tokio::test]
async fn orders_refused_or_held_for_a_missing_approval_do_not_make_a_new_ip_familiar() {
    let app = spawn_app_with(|s| s.trust_forwarded_for = true).await;
    let trader = app.signed_in_as("trader@example.com", Role::Trader).await;
    let home = "198.51.100.7";
    let new = "203.0.113.50";
    let price = quote(&app, &trader, "BTCUSDT").await;
    let small = order("paper", "market", "0.001", &price);

    // A history from the usual address.
    let first = app.call_from(&trader, home, "trading/place", &small).await;
    assert_eq!(json(first).await["status"], "filled");

    // From a new address the order needs a step-up; refused, it does not make the address
    // familiar, however often it is tried.
    for _ in 0..2 {
        let refused = app.call_from(&trader, new, "trading/place", &small).await;
        assert_eq!(refused.status(), 403);
        assert!(json(refused).await.get("OrderApprovalRequired").is_some());
    }

    // Held for review (velocity) without the step-up it needed: recorded, but it does not make
    // the address familiar either.
    set_velocity_limit(&app, 1).await;
    let held = app.call_from(&trader, new, "trading/place", &small).await;
    assert_eq!(held.status(), 200);
    let held = json(held).await;
    assert_eq!(held["status"], "held", "{held}");
    set_velocity_limit(&app, 10).await;
    app.clock.advance(time::Duration::seconds(120));

    let again = app.call_from(&trader, new, "trading/place", &small).await;
    assert_eq!(again.status(), 403, "the new address still needs a step-up");
    assert!(json(again).await.get("OrderApprovalRequired").is_some());
    // The usual address still needs none.
    let home_again = app.call_from(&trader, home, "trading/place", &small).await;
    assert_eq!(json(home_again).await["status"], "filled");
    app.stop().await;
}

/// The device is the user agent's hash, and leaving the header out is a device of its own: a
/// stolen cookie replayed without one from a familiar address still needs the step-up.
#[tokio::test]
async fn an_order_without_a_user_agent_after_a_history_with_one_is_from_a_new_device() {
    let app = spawn_app_with(|s| s.trust_forwarded_for = true).await;
    let trader = app.signed_in_as("trader@example.com", Role::Trader).await;
    let home = "198.51.100.7";
    let price = quote(&app, &trader, "BTCUSDT").await;
    let small = order("paper", "market", "0.001", &price);
    let place = |user_agent: Option<&'static str>| {
        let (app, trader, small) = (&app, &trader, small.clone());
        async move {
            let mut request = trader
                .post(format!("{}/api/trading/place", app.address))
                .header("x-forwarded-for", home)
                .form(&small);
            if let Some(user_agent) = user_agent {
                request = request.header("user-agent", user_agent);
            }
            request.send().await.expect("request sent")
        }
    };

    let first = place(Some("UA-A")).await;
    assert_eq!(json(first).await["status"], "filled");
    for user_agent in [Some("UA-B"), None] {
        let refused = place(user_agent).await;
        assert_eq!(refused.status(), 403, "{user_agent:?}");
        assert!(json(refused).await.get("OrderApprovalRequired").is_some());
    }
    let familiar = place(Some("UA-A")).await;
    assert_eq!(json(familiar).await["status"], "filled");
    app.stop().await;
}
