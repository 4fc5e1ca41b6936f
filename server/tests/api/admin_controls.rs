//! Issue 11 (controls hold): admin_controls.
//!
//! Separation of duties on the Risk page, the admin's key window for alerts and decoys, agent
//! tokens (step-up to create, expiry, revoked by "sign out everywhere"), and stops (kill switch,
//! HALTED) taking resting orders off the book.

use domain::account::Role;
use serde_json::Value;

#[allow(unused_imports)]
use crate::helpers::*;

async fn json(response: reqwest::Response) -> Value {
    let status = response.status();
    let body = response.text().await.expect("body");
    serde_json::from_str(&body).unwrap_or_else(|_| panic!("{status}: {body}"))
}

async fn user_id(app: &TestApp, client: &reqwest::Client) -> String {
    app.who_am_i(client).await["id"]
        .as_str()
        .expect("id")
        .to_owned()
}

/// A bot's HTTP client: no cookie store, no Origin header.
fn bot() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

async fn bot_prices(app: &TestApp, secret: &str) -> reqwest::StatusCode {
    bot()
        .get(format!(
            "{}/api/agent/v1/prices?symbols=BTCUSDT",
            app.address
        ))
        .bearer_auth(secret)
        .send()
        .await
        .expect("request sent")
        .status()
}

async fn create_token(app: &TestApp, client: &reqwest::Client, name: &str) -> reqwest::Response {
    app.call(
        client,
        "agent/token-create",
        &[("name", name), ("scopes[0]", "prices:read")],
    )
    .await
}

/// The secret of a token created by `client` (who must be stepped up).
async fn token_secret(app: &TestApp, client: &reqwest::Client, name: &str) -> String {
    let created = json(create_token(app, client, name).await).await;
    created["secret"].as_str().expect("secret").to_owned()
}

async fn count_where(app: &TestApp, table: &str, condition: &str) -> i64 {
    app.count(&format!("SELECT COUNT(*) FROM {table} WHERE {condition}"))
        .await
}

/// A paper limit order to buy far below the market: it rests on the book. Returns its id.
async fn resting_order(app: &TestApp, client: &reqwest::Client) -> String {
    let ticket = json(app.call(client, "trading/ticket", &[]).await).await;
    let price = ticket["prices"]
        .as_array()
        .expect("prices")
        .iter()
        .find(|p| p["symbol"] == "BTCUSDT")
        .and_then(|p| p["price"].as_str())
        .expect("a BTCUSDT quote")
        .parse::<f64>()
        .expect("price");
    let low = format!("{}", price as u64 / 2);
    let response = app
        .call(
            client,
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
        .await;
    assert_eq!(response.status(), 200);
    let order = json(response).await;
    assert_eq!(order["status"], "open", "{order}");
    order["id"].as_str().expect("id").to_owned()
}

async fn order_status(app: &TestApp, client: &reqwest::Client, id: &str) -> Value {
    json(app.call(client, "trading/order", &[("id", id)]).await).await
}

// --- item 12: separation of duties ---------------------------------------------------------------

#[tokio::test]
async fn an_admin_cannot_change_their_own_trading_state_kill_switch_or_limits() {
    let app = spawn_app().await;
    let admin = app.admin_with_key("admin@example.com").await;
    let other = app.admin_with_key("other-admin@example.com").await;
    let me = user_id(&app, &admin).await;

    for form in [
        vec![("user_id", me.as_str()), ("state", "active")],
        vec![("user_id", me.as_str()), ("kill_switch", "false")],
        vec![("user_id", me.as_str()), ("state", "halted")],
    ] {
        let response = app.call(&admin, "risk/user-controls", &form).await;
        assert_eq!(response.status(), 403, "{form:?}");
    }
    let response = app
        .call(
            &admin,
            "risk/set-limit",
            &[
                ("user_id", me.as_str()),
                ("field", "max_order_notional"),
                ("value", "99999999"),
            ],
        )
        .await;
    assert_eq!(response.status(), 403);
    // Clearing one's own override is a change too.
    let response = app
        .call(
            &admin,
            "risk/set-limit",
            &[("user_id", me.as_str()), ("field", "max_order_notional")],
        )
        .await;
    assert_eq!(response.status(), 403);

    // Nothing changed, and every refusal is on the record.
    let scope = format!("scope = '{me}'");
    assert_eq!(count_where(&app, "risk_limits", &scope).await, 0);
    assert_eq!(
        count_where(&app, "user_trading", &format!("user_id = '{me}'")).await,
        0
    );
    assert_eq!(
        count_where(
            &app,
            "audit_events",
            "action = 'risk.controls_changed' AND outcome = 'denied'"
        )
        .await,
        3
    );
    assert_eq!(
        count_where(
            &app,
            "audit_events",
            "action = 'risk.limit_changed' AND outcome = 'denied'"
        )
        .await,
        2
    );
    assert_eq!(
        count_where(
            &app,
            "audit_events",
            "outcome = 'success' AND action IN ('risk.controls_changed', 'risk.limit_changed')"
        )
        .await,
        0
    );

    // Another admin can.
    let response = app
        .call(
            &other,
            "risk/user-controls",
            &[("user_id", me.as_str()), ("state", "reducing")],
        )
        .await;
    assert_eq!(response.status(), 200);
    let response = app
        .call(
            &other,
            "risk/set-limit",
            &[
                ("user_id", me.as_str()),
                ("field", "max_order_notional"),
                ("value", "1000"),
            ],
        )
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(count_where(&app, "risk_limits", &scope).await, 1);
    let status = json(app.call(&admin, "trading/status", &[]).await).await;
    assert_eq!(status["state"], "reducing");
    app.stop().await;
}

/// A global limit is one admin's change, but it does not loosen that admin's own: theirs is
/// held at the earlier value until another admin lifts it. Tightening holds nothing.
#[tokio::test]
async fn an_admin_loosening_a_global_limit_stays_held_to_the_old_one() {
    use domain::audit::RequestMeta;
    use domain::risk::RiskLimits;
    use rust_decimal::Decimal;

    let app = spawn_app().await;
    let admin = app.admin_with_key("admin@example.com").await;
    let other = app.admin_with_key("other-admin@example.com").await;
    let me = user_id(&app, &admin).await;
    let my_id = domain::account::UserId(uuid::Uuid::parse_str(&me).expect("user id"));
    let held = |field: &str, value: &str| {
        format!("scope = '{me}' AND field = 'held:{field}' AND value = '{value}'")
    };
    let set_global = |field: &'static str, value: &'static str| {
        let (app, admin) = (&app, admin.clone());
        async move {
            app.call(
                &admin,
                "risk/set-limit",
                &[("field", field), ("value", value)],
            )
            .await
            .status()
        }
    };
    let applied = || async {
        app.backend
            .services
            .trading
            .limits_for(my_id, &RequestMeta::default())
            .await
            .expect("limits")
    };
    let notional = |limits: &RiskLimits| limits.max_order_notional;

    assert_eq!(set_global("max_order_notional", "90000").await, 200);
    assert_eq!(
        count_where(&app, "risk_limits", &held("max_order_notional", "50000")).await,
        1,
        "held at the earlier 50000"
    );
    assert_eq!(
        count_where(
            &app,
            "risk_limits",
            "scope = 'global' AND field = 'max_order_notional' AND value = '90000'"
        )
        .await,
        1
    );
    assert_eq!(notional(&applied().await), Decimal::from(50_000));
    // Loosening again keeps the hold where it was.
    assert_eq!(set_global("max_order_notional", "120000").await, 200);
    assert_eq!(
        count_where(&app, "risk_limits", &held("max_order_notional", "50000")).await,
        1
    );
    // A hold is a ceiling, not an exemption: a later global tightening, by another admin,
    // reaches the held admin too.
    let tighten = [("field", "max_order_notional"), ("value", "20000")];
    assert_eq!(
        app.call(&other, "risk/set-limit", &tighten).await.status(),
        200
    );
    assert_eq!(notional(&applied().await), Decimal::from(20_000));

    // A shorter velocity window is looser; a higher threshold too.
    assert_eq!(set_global("velocity_window_secs", "30").await, 200);
    assert_eq!(
        count_where(&app, "risk_limits", &held("velocity_window_secs", "60")).await,
        1
    );
    assert_eq!(applied().await.velocity_window_secs, 60);
    // The same symbols in another order loosen nothing and hold nothing; a wider list is
    // looser: held to the earlier symbols.
    let three = [
        ("field", "symbol_allowlist"),
        ("value", "BTCUSDT,ETHUSDT,SOLUSDT"),
    ];
    assert_eq!(
        app.call(&other, "risk/set-limit", &three).await.status(),
        200
    );
    assert_eq!(
        set_global("symbol_allowlist", "ETHUSDT,SOLUSDT,BTCUSDT").await,
        200
    );
    assert_eq!(
        count_where(
            &app,
            "risk_limits",
            &format!("scope = '{me}' AND field LIKE '%symbol_allowlist'")
        )
        .await,
        0
    );
    assert_eq!(
        set_global("symbol_allowlist", "SOLUSDT,BTCUSDT,ETHUSDT,XRPUSDT").await,
        200
    );
    assert_eq!(
        count_where(
            &app,
            "risk_limits",
            &held("symbol_allowlist", "BTCUSDT,ETHUSDT,SOLUSDT")
        )
        .await,
        1
    );
    let mut symbols = applied().await.symbol_allowlist;
    symbols.sort();
    assert_eq!(symbols, ["BTCUSDT", "ETHUSDT", "SOLUSDT"]);
    // Tightening holds nothing.
    assert_eq!(set_global("daily_notional", "1000").await, 200);
    assert_eq!(
        count_where(
            &app,
            "risk_limits",
            &format!("scope = '{me}' AND field LIKE '%daily_notional'")
        )
        .await,
        0
    );
    // The Risk page shows the hold on the admin's row.
    let overview = json(app.call(&other, "risk/overview", &[]).await).await;
    let row = overview["users"]
        .as_array()
        .expect("users")
        .iter()
        .find(|u| u["user_id"] == me.as_str())
        .expect("the admin's row");
    let labels = row["overrides"].to_string();
    assert!(
        labels.contains("Max notional per order (USDT), held at most"),
        "{labels}"
    );

    // The admin cannot lift their own hold; another admin can.
    let lift = [("user_id", me.as_str()), ("field", "max_order_notional")];
    assert_eq!(
        app.call(&admin, "risk/set-limit", &lift).await.status(),
        403
    );
    assert_eq!(
        app.call(&other, "risk/set-limit", &lift).await.status(),
        200
    );
    assert_eq!(
        count_where(
            &app,
            "risk_limits",
            &format!("scope = '{me}' AND field LIKE '%max_order_notional'")
        )
        .await,
        0
    );
    assert_eq!(notional(&applied().await), Decimal::from(20_000));
    // Another admin giving the admin a value of their own replaces the hold.
    let own = [
        ("user_id", me.as_str()),
        ("field", "velocity_window_secs"),
        ("value", "45"),
    ];
    assert_eq!(app.call(&other, "risk/set-limit", &own).await.status(), 200);
    assert_eq!(
        count_where(&app, "risk_limits", &held("velocity_window_secs", "60")).await,
        0
    );
    assert_eq!(applied().await.velocity_window_secs, 45);
    app.stop().await;
}

// --- item 14: alerts and decoys need the admin's key window ------------------------------------

#[tokio::test]
async fn alerts_and_decoys_need_the_admins_security_key_window() {
    let app = spawn_app().await;
    let keyed = app.admin_with_key("admin@example.com").await;
    let plain = app
        .signed_in_as("plain-admin@example.com", Role::Admin)
        .await;
    let trader = app.signed_in_as("trader@example.com", Role::Trader).await;

    // A decoy, touched: one alert.
    let decoy = app
        .call(
            &keyed,
            "admin/canary-plant",
            &[
                ("owner_email", "trader@example.com"),
                ("label", "Old bot key"),
                ("exchange", "binance"),
                ("environment", "live"),
            ],
        )
        .await;
    assert_eq!(decoy.status(), 200);
    let decoy = json(decoy).await;
    let decoy_id = decoy["id"].as_str().expect("id");
    let response = app
        .call(&trader, "keys/check", &[("key_id", decoy_id)])
        .await;
    assert_eq!(response.status(), 409);
    assert_eq!(app.count("SELECT COUNT(*) FROM security_alerts").await, 1);

    // Without a key step-up: nothing to read, nothing acknowledged.
    for endpoint in ["admin/alerts", "admin/canaries"] {
        let response = app.call(&plain, endpoint, &[]).await;
        assert_eq!(response.status(), 403, "{endpoint}");
        let body = response.text().await.expect("body");
        assert!(!body.contains("Old bot key"), "{endpoint}: {body}");
        assert!(!body.contains("trader@example.com"), "{endpoint}: {body}");
    }
    let alerts = json(app.call(&keyed, "admin/alerts", &[]).await).await;
    let alert_id = alerts[0]["id"].as_str().expect("alert id").to_owned();
    let response = app
        .call(
            &plain,
            "admin/alert-ack",
            &[("alert_id", alert_id.as_str())],
        )
        .await;
    assert_eq!(response.status(), 403);
    let open: u32 = app
        .call(&keyed, "alerts/open-count", &[])
        .await
        .json()
        .await
        .expect("count");
    assert_eq!(open, 1, "still unacknowledged");

    // With it: 200.
    assert_eq!(app.call(&keyed, "admin/canaries", &[]).await.status(), 200);
    let response = app
        .call(
            &keyed,
            "admin/alert-ack",
            &[("alert_id", alert_id.as_str())],
        )
        .await;
    assert_eq!(response.status(), 200);
    let open: u32 = app
        .call(&keyed, "alerts/open-count", &[])
        .await
        .json()
        .await
        .expect("count");
    assert_eq!(open, 0);
    app.stop().await;
}

#[tokio::test]
async fn an_admin_cannot_acknowledge_an_alert_about_themself() {
    let app = spawn_app().await;
    let planter = app.admin_with_key("planter@example.com").await;
    let suspect = app.admin_with_key("suspect@example.com").await;
    let decoy = app
        .call(
            &planter,
            "admin/canary-plant",
            &[
                ("owner_email", "suspect@example.com"),
                ("label", "Old bot key"),
                ("exchange", "binance"),
                ("environment", "live"),
            ],
        )
        .await;
    assert_eq!(decoy.status(), 200);
    let decoy_id = json(decoy).await["id"].as_str().expect("id").to_owned();
    let touched = app
        .call(&suspect, "keys/check", &[("key_id", decoy_id.as_str())])
        .await;
    assert_eq!(touched.status(), 409);
    let alerts = json(app.call(&suspect, "admin/alerts", &[]).await).await;
    let alert_id = alerts[0]["id"].as_str().expect("alert id").to_owned();

    let own = app
        .call(
            &suspect,
            "admin/alert-ack",
            &[("alert_id", alert_id.as_str())],
        )
        .await;
    assert_eq!(own.status(), 409);
    assert!(own.text().await.expect("body").contains("another admin"));
    let open: u32 = app
        .call(&planter, "alerts/open-count", &[])
        .await
        .json()
        .await
        .expect("count");
    assert_eq!(open, 1, "still open for the other admins");
    assert_eq!(
        app.count(
            "SELECT COUNT(*) FROM audit_events WHERE action = 'security.alert_acknowledged' \
             AND outcome = 'denied'"
        )
        .await,
        1
    );
    let other = app
        .call(
            &planter,
            "admin/alert-ack",
            &[("alert_id", alert_id.as_str())],
        )
        .await;
    assert_eq!(other.status(), 200);
    app.stop().await;
}

// --- item 13: agent tokens ---------------------------------------------------------------------

#[tokio::test]
async fn creating_an_agent_token_needs_a_step_up_and_nothing_is_created_without_one() {
    let app = spawn_app().await;
    let alice = app.signed_in_as("alice@example.com", Role::Trader).await;

    // No second factor at all: told to set one up.
    let response = create_token(&app, &alice, "grid bot").await;
    assert_eq!(response.status(), 403);
    let body = response.text().await.expect("body");
    assert!(body.contains("SetUpFactor"), "{body}");
    assert_eq!(app.count("SELECT COUNT(*) FROM agent_tokens").await, 0);

    // A key, but the window has closed: asked to step up, with that key.
    let mut key = app.stepped_up_with_new_key(&alice).await;
    app.clock.advance(time::Duration::minutes(11));
    let response = create_token(&app, &alice, "grid bot").await;
    assert_eq!(response.status(), 403);
    let body = response.text().await.expect("body");
    assert!(body.contains("SecurityKey"), "{body}");
    assert_eq!(app.count("SELECT COUNT(*) FROM agent_tokens").await, 0);
    assert_eq!(
        count_where(&app, "audit_events", "action = 'agent.token_created'").await,
        0
    );

    // After a step-up it works; a lifetime out of range is refused and changes nothing.
    assert_eq!(app.step_up_with_key(&alice, &mut key).await.status(), 200);
    for days in ["0", "366"] {
        let response = app
            .call(
                &alice,
                "agent/token-create",
                &[
                    ("name", "grid bot"),
                    ("scopes[0]", "prices:read"),
                    ("lifetime_days", days),
                ],
            )
            .await;
        assert_eq!(response.status(), 400, "{days}");
    }
    assert_eq!(app.count("SELECT COUNT(*) FROM agent_tokens").await, 0);
    let created = json(create_token(&app, &alice, "grid bot").await).await;
    let created_at = time::OffsetDateTime::parse(
        created["token"]["created_at"].as_str().expect("created"),
        &time::format_description::well_known::Rfc3339,
    )
    .expect("time");
    let expires_at = time::OffsetDateTime::parse(
        created["token"]["expires_at"].as_str().expect("expires"),
        &time::format_description::well_known::Rfc3339,
    )
    .expect("time");
    assert_eq!(expires_at - created_at, time::Duration::days(90));
    assert_eq!(created["token"]["expired"], false);
    assert_eq!(app.count("SELECT COUNT(*) FROM agent_tokens").await, 1);
    app.stop().await;
}

#[tokio::test]
async fn an_expired_agent_token_is_refused_with_401_and_audited() {
    let app = spawn_app().await;
    let alice = app.signed_in_as("alice@example.com", Role::Trader).await;
    app.stepped_up_with_new_key(&alice).await;
    let secret = token_secret(&app, &alice, "grid bot").await;
    assert_eq!(bot_prices(&app, &secret).await, 200);

    app.clock.advance(time::Duration::days(89));
    assert_eq!(bot_prices(&app, &secret).await, 200, "still live on day 89");
    app.clock.advance(time::Duration::days(1));
    assert_eq!(bot_prices(&app, &secret).await, 401);
    assert_eq!(
        count_where(
            &app,
            "audit_events",
            "action = 'agent.token_expired' AND outcome = 'denied'"
        )
        .await,
        1
    );
    // The trader sees it as expired.
    let fresh = app.new_client();
    assert_eq!(
        app.log_in(&fresh, "alice@example.com", PASSWORD)
            .await
            .status(),
        200
    );
    let overview = json(app.call(&fresh, "agent/overview", &[]).await).await;
    assert_eq!(overview["tokens"][0]["expired"], true, "{overview}");
    app.stop().await;
}

#[tokio::test]
async fn signing_out_everywhere_revokes_agent_tokens_when_asked_and_only_then() {
    let app = spawn_app().await;

    // Revoke on: the token is refused afterwards, and its revocation is audited.
    let alice = app.signed_in_as("alice@example.com", Role::Trader).await;
    app.stepped_up_with_new_key(&alice).await;
    let secret = token_secret(&app, &alice, "grid bot").await;
    assert_eq!(bot_prices(&app, &secret).await, 200);
    let response = app
        .call(
            &alice,
            "auth/logout-everywhere",
            &[("revoke_agent_tokens", "true")],
        )
        .await;
    assert!(response.status().is_redirection() || response.status() == 200);
    assert_eq!(bot_prices(&app, &secret).await, 401);
    assert_eq!(
        count_where(&app, "audit_events", "action = 'agent.token_revoked'").await,
        1
    );
    assert_eq!(
        count_where(&app, "agent_tokens", "revoked_at IS NOT NULL").await,
        1
    );

    // Revoke off: the bot keeps working.
    let bob = app.signed_in_as("bob@example.com", Role::Trader).await;
    app.stepped_up_with_new_key(&bob).await;
    let bob_secret = token_secret(&app, &bob, "bob bot").await;
    let response = app
        .call(
            &bob,
            "auth/logout-everywhere",
            &[("revoke_agent_tokens", "false")],
        )
        .await;
    assert!(response.status().is_redirection() || response.status() == 200);
    assert_eq!(app.who_am_i(&bob).await, Value::Null, "signed out");
    assert_eq!(bot_prices(&app, &bob_secret).await, 200);
    assert_eq!(
        count_where(&app, "audit_events", "action = 'agent.token_revoked'").await,
        1
    );
    app.stop().await;
}

/// Someone who had the old password (and a second factor) may have given a bot a token: the
/// owner's password change stops it too, unless they keep their bots on purpose.
#[tokio::test]
async fn changing_the_password_revokes_agent_tokens_when_asked_and_only_then() {
    const NEW: &str = "a different horse, a different staple";
    let app = spawn_app().await;
    let change = |client: &reqwest::Client, revoke: &'static str| {
        let (app, client) = (&app, client.clone());
        async move {
            app.call(
                &client,
                "auth/password",
                &[
                    ("current_password", PASSWORD),
                    ("new_password", NEW),
                    ("revoke_agent_tokens", revoke),
                ],
            )
            .await
            .status()
        }
    };

    let carol = app.signed_in_as("carol@example.com", Role::Trader).await;
    app.stepped_up_with_new_key(&carol).await;
    let secret = token_secret(&app, &carol, "grid bot").await;
    assert_eq!(bot_prices(&app, &secret).await, 200);
    let status = change(&carol, "true").await;
    assert!(status.is_success() || status.is_redirection(), "{status}");
    assert_eq!(bot_prices(&app, &secret).await, 401);
    assert_eq!(
        count_where(
            &app,
            "audit_events",
            "action = 'agent.token_revoked' AND details LIKE '%password changed%'"
        )
        .await,
        1
    );

    let dave = app.signed_in_as("dave@example.com", Role::Trader).await;
    app.stepped_up_with_new_key(&dave).await;
    let kept = token_secret(&app, &dave, "kept bot").await;
    let status = change(&dave, "false").await;
    assert!(status.is_success() || status.is_redirection(), "{status}");
    assert_eq!(app.who_am_i(&dave).await, Value::Null, "signed out");
    assert_eq!(bot_prices(&app, &kept).await, 200);
    assert_eq!(
        count_where(&app, "agent_tokens", "revoked_at IS NOT NULL").await,
        1
    );
    app.stop().await;
}

// --- item 16: stops cancel resting orders ------------------------------------------------------

#[tokio::test]
async fn turning_the_kill_switch_on_cancels_resting_orders_and_says_how_many() {
    let app = spawn_app().await;
    let admin = app.admin_with_key("admin@example.com").await;
    let alice = app.signed_in_as("alice@example.com", Role::Trader).await;
    let bob = app.signed_in_as("bob@example.com", Role::Trader).await;
    let a = resting_order(&app, &alice).await;
    let b = resting_order(&app, &bob).await;

    let response = app
        .call(&admin, "risk/kill-switch", &[("on", "true")])
        .await;
    assert_eq!(response.status(), 200);
    let effect: Value = response.json().await.expect("effect");
    assert_eq!(
        effect,
        serde_json::json!({"cancelled": 2, "still_resting": 0})
    );
    assert_eq!(order_status(&app, &alice, &a).await["status"], "cancelled");
    assert_eq!(order_status(&app, &bob, &b).await["status"], "cancelled");
    for id in [&a, &b] {
        assert_eq!(
            count_where(
                &app,
                "audit_events",
                &format!("action = 'trade.order_cancelled' AND resource = 'order:{id}'")
            )
            .await,
            1,
            "{id}"
        );
    }
    // Turning it off cancels nothing.
    assert_eq!(
        app.call(&admin, "risk/kill-switch", &[("on", "false")])
            .await
            .json::<Value>()
            .await
            .expect("effect")["cancelled"],
        0
    );
    app.stop().await;
}

#[tokio::test]
async fn halting_a_trader_or_stopping_them_cancels_only_their_resting_orders() {
    let app = spawn_app().await;
    let admin = app.admin_with_key("admin@example.com").await;
    let alice = app.signed_in_as("alice@example.com", Role::Trader).await;
    let bob = app.signed_in_as("bob@example.com", Role::Trader).await;
    let a = resting_order(&app, &alice).await;
    let b = resting_order(&app, &bob).await;
    let alice_id = user_id(&app, &alice).await;
    let bob_id = user_id(&app, &bob).await;

    let response = app
        .call(
            &admin,
            "risk/user-controls",
            &[("user_id", alice_id.as_str()), ("state", "halted")],
        )
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.json::<Value>().await.expect("effect")["cancelled"],
        1
    );
    assert_eq!(order_status(&app, &alice, &a).await["status"], "cancelled");
    assert_eq!(order_status(&app, &bob, &b).await["status"], "open");
    assert_eq!(
        count_where(
            &app,
            "audit_events",
            &format!("action = 'trade.order_cancelled' AND resource = 'order:{a}'")
        )
        .await,
        1
    );

    // A user's own kill switch does the same.
    let response = app
        .call(
            &admin,
            "risk/user-controls",
            &[("user_id", bob_id.as_str()), ("kill_switch", "true")],
        )
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.json::<Value>().await.expect("effect")["cancelled"],
        1
    );
    assert_eq!(order_status(&app, &bob, &b).await["status"], "cancelled");
    app.stop().await;
}
