//! The role overviews at `/` (issue 13 item 6): each role's server function returns its cards'
//! data, the reviewer and admin ones refuse a trader, and the admin's chart counts security
//! events into the right hour.

use domain::account::Role;
use domain::audit::{Actor, AuditDraft, Outcome, RequestMeta};
use domain::audit_action::AuditAction;
use serde_json::Value;

use crate::helpers::{PASSWORD, TestApp, spawn_app};

async fn json(response: reqwest::Response) -> Value {
    let status = response.status();
    let body = response.text().await.expect("body");
    serde_json::from_str(&body).unwrap_or_else(|_| panic!("{status}: {body}"))
}

async fn overview(app: &TestApp, client: &reqwest::Client, role: &str) -> Value {
    let response = app.call(client, &format!("overview/{role}"), &[]).await;
    assert_eq!(response.status(), 200, "overview/{role}");
    json(response).await
}

async fn btc_price(app: &TestApp, client: &reqwest::Client) -> f64 {
    let ticket = json(app.call(client, "trading/ticket", &[]).await).await;
    ticket["prices"]
        .as_array()
        .expect("prices")
        .iter()
        .find(|p| p["symbol"] == "BTCUSDT")
        .and_then(|p| p["price"].as_str())
        .expect("a BTCUSDT quote")
        .parse()
        .expect("price")
}

async fn place(app: &TestApp, client: &reqwest::Client, order_type: &str, price: &str) -> Value {
    let response = app
        .call(
            client,
            "trading/place",
            &[
                ("venue", "paper"),
                ("symbol", "BTCUSDT"),
                ("side", "buy"),
                ("order_type", order_type),
                ("quantity", "0.001"),
                ("price", price),
            ],
        )
        .await;
    json(response).await
}

/// Signs in again after the clock moved past the session's lifetime.
async fn sign_in_again(app: &TestApp, email: &str) -> reqwest::Client {
    let client = app.new_client();
    assert_eq!(app.log_in(&client, email, PASSWORD).await.status(), 200);
    client
}

#[tokio::test]
async fn a_trader_gets_403_from_the_reviewer_and_admin_overviews() {
    let app = spawn_app().await;
    let trader = app.signed_in_as("trader@example.com", Role::Trader).await;
    for role in ["reviewer", "admin"] {
        let response = app.call(&trader, &format!("overview/{role}"), &[]).await;
        assert_eq!(response.status(), 403, "overview/{role}");
    }
    // A reviewer is not an admin either; a visitor gets nothing at all.
    let reviewer = app
        .signed_in_as("reviewer@example.com", Role::Reviewer)
        .await;
    assert_eq!(
        app.call(&reviewer, "overview/admin", &[]).await.status(),
        403
    );
    let visitor = app.new_client();
    for role in ["trader", "reviewer", "admin"] {
        let response = app.call(&visitor, &format!("overview/{role}"), &[]).await;
        assert_eq!(response.status(), 401, "overview/{role}");
    }
    app.stop().await;
}

#[tokio::test]
async fn the_trader_overview_shows_state_positions_orders_and_keys_due() {
    let app = spawn_app().await;
    let email = "trader@example.com";
    let trader = app.signed_in_as(email, Role::Trader).await;
    let key = app
        .call(
            &trader,
            "keys/add",
            &[
                ("exchange", "paper"),
                ("environment", "paper"),
                ("scope", "trade"),
                ("label", "Old bot key"),
                ("api_key", "pk-live-7c1d9e2b44aa3a2f"),
                ("api_secret", "sk-9f8e7d6c5b4a39281706f5e4d3c2b1a0"),
            ],
        )
        .await;
    assert_eq!(key.status(), 200);
    let fresh = overview(&app, &trader, "trader").await;
    assert_eq!(
        fresh["keys_due"].as_array().expect("keys_due").len(),
        0,
        "{fresh}"
    );
    assert_eq!(fresh["state"], "active");
    assert_eq!(fresh["reasons"].as_array().expect("reasons").len(), 0);

    // 80 days on, the key is due within the reminder period.
    app.clock.advance(time::Duration::days(80));
    let trader = sign_in_again(&app, email).await;
    let price = btc_price(&app, &trader).await;
    let filled = place(&app, &trader, "market", &format!("{price}")).await;
    assert_eq!(filled["status"], "filled", "{filled}");
    let resting = place(&app, &trader, "limit", &format!("{}", price as u64 / 2)).await;
    assert_eq!(resting["status"], "open", "{resting}");

    let o = overview(&app, &trader, "trader").await;
    let due = o["keys_due"].as_array().expect("keys_due");
    assert_eq!(due.len(), 1, "{o}");
    assert_eq!(due[0]["label"], "Old bot key");
    assert_eq!(due[0]["days_left"], 9, "{o}");
    assert_eq!(o["rotation_days"], 90);
    let positions = o["positions"].as_array().expect("positions");
    assert_eq!(positions.len(), 1, "{o}");
    assert_eq!(positions[0]["symbol"], "BTCUSDT");
    assert!(positions[0]["market_value"].is_string(), "{o}");
    let orders = o["open_orders"].as_array().expect("open_orders");
    assert_eq!(orders.len(), 1, "only the resting order is open: {o}");
    assert_eq!(orders[0]["id"], resting["id"]);
    assert_eq!(o["alerts"].as_array().expect("alerts").len(), 0);

    // Past 90 days it is overdue.
    app.clock.advance(time::Duration::days(11));
    let trader = sign_in_again(&app, email).await;
    let o = overview(&app, &trader, "trader").await;
    assert_eq!(o["keys_due"][0]["days_left"], -1, "{o}");
    app.stop().await;
}

#[tokio::test]
async fn the_trader_overview_says_why_trading_is_stopped() {
    let app = spawn_app().await;
    let trader = app.signed_in_as("trader@example.com", Role::Trader).await;
    // As an admin's switch leaves it (the switch itself is tested with its step-up elsewhere).
    app.exec("DELETE FROM trading_settings WHERE key = 'kill_switch'")
        .await;
    app.exec(
        "INSERT INTO trading_settings (key, value, updated_at) VALUES ('kill_switch', 'true', '2026-11-28T00:00:00Z')",
    )
    .await;
    let o = overview(&app, &trader, "trader").await;
    assert_eq!(o["global_kill"], true, "{o}");
    let reasons = o["reasons"].as_array().expect("reasons");
    assert!(
        reasons
            .iter()
            .any(|r| r.as_str().is_some_and(|r| r.contains("kill switch"))),
        "{o}"
    );
    app.stop().await;
}

#[tokio::test]
async fn the_reviewer_overview_buckets_open_cases_by_age() {
    let app = spawn_app().await;
    // Every order is held as anomalous and opens a case.
    app.exec(
        "UPDATE risk_limits SET value = '0' WHERE scope = 'global' AND field = 'anomaly_threshold'",
    )
    .await;
    let mut clients = Vec::new();
    for (i, wait_after) in [(0, 25), (1, 2), (2, 0)] {
        let email = format!("trader{i}@example.com");
        let trader = app.signed_in_as(&email, Role::Trader).await;
        let price = btc_price(&app, &trader).await;
        let held = place(&app, &trader, "market", &format!("{price}")).await;
        assert_eq!(held["status"], "held", "{held}");
        assert!(held["case_id"].is_string(), "{held}");
        app.clock.advance(time::Duration::hours(wait_after));
        clients.push(trader);
    }
    let reviewer = app
        .signed_in_as("reviewer@example.com", Role::Reviewer)
        .await;
    let reviewer_id = app.who_am_i(&reviewer).await["id"]
        .as_str()
        .expect("id")
        .parse::<uuid::Uuid>()
        .expect("uuid");
    // A download as the report run records it (the reports tests check the run itself).
    let report = AuditDraft::new(
        Actor::user(domain::ids::UserId(reviewer_id)),
        AuditAction::ReportDownload,
        Outcome::Success,
        RequestMeta::default(),
    )
    .resource("audit-report")
    .detail("format", "csv")
    .detail("rows", 42)
    .detail(
        "filter",
        serde_json::json!({ "action_prefix": "trade.", "outcome": "denied" }),
    );
    app.backend
        .audit_log
        .record(report)
        .await
        .expect("recorded");

    let o = overview(&app, &reviewer, "reviewer").await;
    assert_eq!(o["open_cases"], 3, "{o}");
    let counts: Vec<u64> = o["buckets"]
        .as_array()
        .expect("buckets")
        .iter()
        .map(|b| b["count"].as_u64().expect("count"))
        .collect();
    assert_eq!(counts, vec![1, 1, 1], "{o}");
    let oldest: Vec<&str> = o["oldest"]
        .as_array()
        .expect("oldest")
        .iter()
        .map(|c| c["subject_email"].as_str().expect("email"))
        .collect();
    assert_eq!(
        oldest,
        vec![
            "trader0@example.com",
            "trader1@example.com",
            "trader2@example.com"
        ]
    );
    let downloads = o["downloads"].as_array().expect("downloads");
    assert_eq!(downloads.len(), 1, "{o}");
    assert_eq!(downloads[0]["by"], "reviewer@example.com");
    assert_eq!(downloads[0]["format"], "CSV");
    assert_eq!(downloads[0]["rows"], 42);
    assert_eq!(downloads[0]["filter"], "action trade.*, denied");
    app.stop().await;
}

#[tokio::test]
async fn the_admin_chart_counts_failed_sign_ins_in_their_hour() {
    let app = spawn_app().await;
    let admin_email = "admin@example.com";
    let _admin = app.signed_in_as(admin_email, Role::Admin).await;
    let stranger = app.new_client();
    for _ in 0..3 {
        let response = app
            .log_in(&stranger, "nobody@example.com", "wrong password")
            .await;
        assert_eq!(response.status(), 401);
    }
    // Routine trading is not a security event.
    let trader = app.signed_in_as("trader@example.com", Role::Trader).await;
    let price = btc_price(&app, &trader).await;
    let _ = place(&app, &trader, "market", &format!("{price}")).await;

    // Three hours later the failures are three bars back.
    app.clock.advance(time::Duration::hours(3));
    let admin = sign_in_again(&app, admin_email).await;
    let o = overview(&app, &admin, "admin").await;
    assert_eq!(o["global_kill"], false);
    let hours = o["security"]["hours"].as_array().expect("hours");
    assert_eq!(hours.len(), 24);
    let refused: Vec<u64> = hours
        .iter()
        .map(|h| h["refused"].as_u64().expect("refused"))
        .collect();
    assert_eq!(refused[20], 3, "{refused:?}");
    assert_eq!(refused.iter().sum::<u64>(), 3, "{refused:?}");
    // The sign-ins are security events too: two then, one now.
    assert_eq!(hours[20]["other"], 2, "{o}");
    assert_eq!(hours[23]["other"], 1, "{o}");
    let bar_start = hours[20]["start"].as_str().expect("start");
    let failed_at = app
        .count(
            "SELECT COUNT(*) FROM audit_events WHERE action = 'auth.login' AND outcome = 'failure'",
        )
        .await;
    assert_eq!(failed_at, 3);
    assert!(bar_start.ends_with(":00:00Z"), "{bar_start}");

    // A day later they have left the chart.
    app.clock.advance(time::Duration::hours(24));
    let admin = sign_in_again(&app, admin_email).await;
    let o = overview(&app, &admin, "admin").await;
    let total: u64 = o["security"]["hours"]
        .as_array()
        .expect("hours")
        .iter()
        .map(|h| h["refused"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(total, 0, "{o}");
    app.stop().await;
}
