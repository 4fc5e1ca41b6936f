//! The exchange key vault through the HTTP API: entry, masks, ownership, receipts, rotation,
//! revocation, fail-closed behaviour, decoys, and a search for leaked key material.

use domain::account::Role;
use serde_json::Value;

use crate::binance::{Binance, Mode, TRADE_KEY, TRADE_SECRET, WITHDRAW_KEY, WITHDRAW_SECRET};
use crate::helpers::{TestApp, is_postgres, spawn_app, spawn_app_with, spawn_app_with_faulty_kms};

const API_KEY: &str = "pk-live-7c1d9e2b44aa3a2f";
const API_SECRET: &str = "sk-9f8e7d6c5b4a39281706f5e4d3c2b1a0";

async fn add_paper_key(app: &TestApp, client: &reqwest::Client, label: &str) -> reqwest::Response {
    add_key_with(app, client, label, API_KEY, API_SECRET).await
}

async fn add_key_with(
    app: &TestApp,
    client: &reqwest::Client,
    label: &str,
    api_key: &str,
    api_secret: &str,
) -> reqwest::Response {
    app.call(
        client,
        "keys/add",
        &[
            ("exchange", "paper"),
            ("environment", "paper"),
            ("scope", "trade"),
            ("label", label),
            ("api_key", api_key),
            ("api_secret", api_secret),
        ],
    )
    .await
}

async fn added_key_id(app: &TestApp, client: &reqwest::Client, label: &str) -> String {
    let response = add_paper_key(app, client, label).await;
    assert_eq!(response.status(), 200);
    let key: Value = response.json().await.expect("json");
    key["id"].as_str().expect("id").to_owned()
}

async fn list(app: &TestApp, client: &reqwest::Client) -> Vec<Value> {
    let response = app.call(client, "keys/list", &[]).await;
    assert_eq!(response.status(), 200);
    response.json().await.expect("json")
}

fn assert_no_key_material(what: &str, text: &str) {
    for needle in [API_KEY, API_SECRET, &API_SECRET[3..19], &API_KEY[..12]] {
        assert!(!text.contains(needle), "{what} contains key material");
    }
}

/// Every text column of every table, as one string.
async fn dump_database(app: &TestApp) -> String {
    use sea_orm::{ConnectionTrait, Statement};
    let backend = app.db().get_database_backend();
    let mut out = String::new();
    for (table, columns) in [
        (
            "exchange_keys",
            "id || label || mask || status || permissions || coalesce(kms_key_id, '') || coalesce(wrapped_key, '') || coalesce(nonce, '') || coalesce(ciphertext, '') || coalesce(status_reason, '')",
        ),
        (
            "audit_events",
            "action || coalesce(resource, '') || details || coalesce(user_agent, '')",
        ),
        ("sessions", "data"),
        ("security_alerts", "kind || message"),
    ] {
        let rows = app
            .db()
            .query_all_raw(Statement::from_string(
                backend,
                format!("SELECT {columns} FROM {table}"),
            ))
            .await
            .expect(table);
        for row in rows {
            out.push_str(&row.try_get_by_index::<String>(0).expect("text"));
            out.push('\n');
        }
    }
    out
}

#[tokio::test]
async fn a_key_is_stored_sealed_and_only_its_mask_comes_back() {
    let app = spawn_app().await;
    let trader = app.signed_in_as("trader@example.com", Role::Trader).await;

    let response = add_paper_key(&app, &trader, "Main paper").await;
    assert_eq!(response.status(), 200);
    let body = response.text().await.expect("body");
    assert_no_key_material("the add response", &body);
    let key: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(key["mask"], "****3a2f");
    assert_eq!(key["status"], "active");
    assert_eq!(key["kms_key_id"], "local:v1");

    let keys = list(&app, &trader).await;
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["label"], "Main paper");
    assert_no_key_material("the list", &serde_json::to_string(&keys).expect("json"));

    // The page itself, rendered on the server for this trader.
    let page = trader
        .get(format!("{}/keys", app.address))
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("html");
    assert_no_key_material("the keys page", &page);

    // Nothing in the database's columns reads as the key or secret.
    assert_no_key_material("the database", &dump_database(&app).await);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM audit_events WHERE action = 'vault.key_added'")
            .await,
        1
    );
}

#[tokio::test]
async fn bad_input_is_refused_clearly_and_stores_nothing() {
    let app = spawn_app().await;
    let trader = app.signed_in_as("trader@example.com", Role::Trader).await;
    let cases: [(&[(&str, &str)], &str); 6] = [
        (
            &[
                ("exchange", "kraken"),
                ("environment", "paper"),
                ("scope", "trade"),
                ("label", "x"),
                ("api_key", API_KEY),
                ("api_secret", API_SECRET),
            ],
            "Unknown",
        ),
        (
            &[
                ("exchange", "paper"),
                ("environment", "live"),
                ("scope", "trade"),
                ("label", "x"),
                ("api_key", API_KEY),
                ("api_secret", API_SECRET),
            ],
            "no live environment",
        ),
        (
            &[
                ("exchange", "paper"),
                ("environment", "paper"),
                ("scope", "trade"),
                ("label", "  "),
                ("api_key", API_KEY),
                ("api_secret", API_SECRET),
            ],
            "label",
        ),
        (
            // A right-to-left override would make the label read differently on every page
            // and in the audit log.
            &[
                ("exchange", "paper"),
                ("environment", "paper"),
                ("scope", "trade"),
                ("label", "main \u{202e}tob"),
                ("api_key", API_KEY),
                ("api_secret", API_SECRET),
            ],
            "label",
        ),
        (
            &[
                ("exchange", "paper"),
                ("environment", "paper"),
                ("scope", "trade"),
                ("label", "x"),
                ("api_key", "short"),
                ("api_secret", API_SECRET),
            ],
            "API key",
        ),
        (
            &[
                ("exchange", "paper"),
                ("environment", "paper"),
                ("scope", "trade"),
                ("label", "x"),
                ("api_key", API_KEY),
                ("api_secret", "has a space in it"),
            ],
            "API secret",
        ),
    ];
    for (form, expected) in cases {
        let response = app.call(&trader, "keys/add", form).await;
        assert_eq!(response.status(), 400, "{form:?}");
        let body = response.text().await.expect("body");
        assert!(body.contains(expected), "{body}");
        assert_no_key_material("an error", &body);
    }
    // A missing field is a clear 400 too, not a 500.
    let response = app
        .call(&trader, "keys/add", &[("exchange", "paper")])
        .await;
    assert_eq!(response.status(), 400);
    assert_eq!(app.count("SELECT COUNT(*) FROM exchange_keys").await, 0);
}

#[tokio::test]
async fn keys_need_a_session() {
    let app = spawn_app().await;
    let anonymous = app.new_client();
    assert_eq!(app.call(&anonymous, "keys/list", &[]).await.status(), 401);
    assert_eq!(add_paper_key(&app, &anonymous, "x").await.status(), 401);
    assert_eq!(app.count("SELECT COUNT(*) FROM exchange_keys").await, 0);
}

#[tokio::test]
async fn another_users_key_id_is_not_found_on_every_key_route() {
    let app = spawn_app().await;
    let alice = app.signed_in_as("alice@example.com", Role::Trader).await;
    let mallory = app.signed_in_as("mallory@example.com", Role::Trader).await;
    let admin = app.signed_in_as("admin@example.com", Role::Admin).await;
    let alices_key = added_key_id(&app, &alice, "Alice's key").await;

    for client in [&mallory, &admin] {
        for endpoint in ["keys/check", "keys/revoke"] {
            let response = app
                .call(client, endpoint, &[("key_id", alices_key.as_str())])
                .await;
            assert_eq!(response.status(), 404, "{endpoint}");
        }
        assert!(list(&app, client).await.is_empty());
        let receipts: Vec<Value> = app
            .call(client, "keys/receipts", &[])
            .await
            .json()
            .await
            .expect("json");
        assert!(receipts.is_empty());
    }
    // Unknown and malformed ids look the same as someone else's.
    for id in [
        "00000000-0000-0000-0000-000000000000",
        "not-a-uuid",
        "' OR 1=1 --",
    ] {
        let response = app.call(&mallory, "keys/check", &[("key_id", id)]).await;
        assert_eq!(response.status(), 404, "{id}");
    }
    // Alice's key was neither used nor revoked.
    let keys = list(&app, &alice).await;
    assert_eq!(keys[0]["status"], "active");
    assert!(keys[0]["last_used_at"].is_null());
    assert_eq!(
        app.count("SELECT COUNT(*) FROM audit_events WHERE action = 'vault.key_used'")
            .await,
        0
    );
}

#[tokio::test]
async fn every_decryption_leaves_a_receipt_the_trader_can_read() {
    let app = spawn_app().await;
    let trader = app.signed_in_as("trader@example.com", Role::Trader).await;
    let id = added_key_id(&app, &trader, "Main paper").await;

    let response = app
        .call(&trader, "keys/check", &[("key_id", id.as_str())])
        .await;
    assert_eq!(response.status(), 200);
    let checked: Value = response.json().await.expect("json");
    assert_eq!(checked["status"], "active");
    assert!(checked["last_used_at"].is_string());

    let receipts: Vec<Value> = app
        .call(&trader, "keys/receipts", &[])
        .await
        .json()
        .await
        .expect("json");
    let actions: Vec<&str> = receipts
        .iter()
        .map(|r| r["action"].as_str().expect("action"))
        .collect();
    assert_eq!(
        actions,
        ["vault.key_checked", "vault.key_used", "vault.key_added"]
    );
    assert_eq!(receipts[1]["description"], "Decrypted for permission check");
    assert_eq!(receipts[1]["key_mask"], "****3a2f");
}

#[tokio::test]
async fn revoking_deletes_the_ciphertext_and_the_key_can_no_longer_be_used() {
    let app = spawn_app().await;
    let trader = app.signed_in_as("trader@example.com", Role::Trader).await;
    let id = added_key_id(&app, &trader, "Old key").await;
    let sealed = {
        use sea_orm::{ConnectionTrait, Statement};
        let row = app
            .db()
            .query_one_raw(Statement::from_string(
                app.db().get_database_backend(),
                format!("SELECT ciphertext FROM exchange_keys WHERE id = '{id}'"),
            ))
            .await
            .expect("read")
            .expect("the row");
        row.try_get_by_index::<String>(0).expect("ciphertext")
    };

    let response = app
        .call(&trader, "keys/revoke", &[("key_id", id.as_str())])
        .await;
    assert_eq!(response.status(), 200);
    // On SQLite the bytes are gone from the disk as well: not left in the file's free space,
    // nor in the write-ahead log. (A PostgreSQL server's files are its operator's to vacuum.)
    if !is_postgres() {
        use secrecy::ExposeSecret;
        let file = app
            .settings
            .database_url
            .expose_secret()
            .trim_start_matches("sqlite://")
            .trim_end_matches("?mode=rwc")
            .to_owned();
        let needle = &sealed.as_bytes()[..32];
        for path in [file.clone(), format!("{file}-wal")] {
            let bytes = std::fs::read(&path).unwrap_or_default();
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle),
                "{path} still holds the revoked ciphertext"
            );
        }
    }
    let revoked: Value = response.json().await.expect("json");
    assert_eq!(revoked["status"], "revoked");
    assert!(revoked["kms_key_id"].is_null());
    assert_eq!(
        app.count("SELECT COUNT(*) FROM exchange_keys WHERE ciphertext IS NULL AND wrapped_key IS NULL AND nonce IS NULL")
            .await,
        1
    );
    let response = app
        .call(&trader, "keys/check", &[("key_id", id.as_str())])
        .await;
    assert_eq!(response.status(), 409);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM audit_events WHERE action = 'vault.key_revoked'")
            .await,
        1
    );
}

#[tokio::test]
async fn rotating_the_master_key_and_rewrapping_keeps_every_key_usable() {
    let app = spawn_app().await;
    let admin = app.admin_with_key("admin@example.com").await;
    let trader = app.signed_in_as("trader@example.com", Role::Trader).await;
    let first = added_key_id(&app, &trader, "First").await;
    let _second = added_key_id(&app, &trader, "Second").await;

    // Only admins rotate the master key.
    assert_eq!(
        app.call(&trader, "admin/kms-rotate", &[]).await.status(),
        403
    );
    let response = app.call(&admin, "admin/kms-rotate", &[]).await;
    assert_eq!(response.status(), 200);
    let overview: Value = response.json().await.expect("json");
    assert_eq!(overview["current_key_id"], "local:v2");

    // Old keys still open under v1 until re-wrapped.
    let keys = list(&app, &trader).await;
    assert!(keys.iter().all(|k| k["kms_key_id"] == "local:v1"));
    assert!(keys.iter().all(|k| k["wrapped_under_current"] == false));
    let response = app
        .call(&trader, "keys/check", &[("key_id", first.as_str())])
        .await;
    assert_eq!(response.status(), 200);

    let job: String = app
        .call(&trader, "keys/rewrap", &[])
        .await
        .json()
        .await
        .expect("job id");
    let status = wait_for_rewrap(&app, &trader, &job).await;
    assert_eq!(status["total"], 2);
    assert_eq!(status["rewrapped"], 2);
    assert_eq!(status["failed"], 0);
    // Another user cannot read someone else's run.
    assert_eq!(
        app.call(&admin, "keys/rewrap-status", &[("job_id", job.as_str())])
            .await
            .status(),
        404
    );

    let keys = list(&app, &trader).await;
    assert!(
        keys.iter().all(|k| k["kms_key_id"] == "local:v2"),
        "{keys:?}"
    );
    let response = app
        .call(&trader, "keys/check", &[("key_id", first.as_str())])
        .await;
    assert_eq!(response.status(), 200);

    // A second run finds nothing to do.
    let job: String = app
        .call(&admin, "admin/rewrap-all", &[])
        .await
        .json()
        .await
        .expect("job id");
    let status = wait_for_rewrap(&app, &admin, &job).await;
    assert_eq!(status["already_current"], 2);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM audit_events WHERE action = 'vault.key_rewrapped'")
            .await,
        2
    );
    // The key file now holds both versions.
    let key_file =
        std::fs::read_to_string(app.settings.data_dir.join("master.key")).expect("key file");
    assert_eq!(key_file.lines().filter(|l| !l.trim().is_empty()).count(), 2);
}

async fn wait_for_rewrap(app: &TestApp, client: &reqwest::Client, job: &str) -> Value {
    for _ in 0..200 {
        let status: Value = app
            .call(client, "keys/rewrap-status", &[("job_id", job)])
            .await
            .json()
            .await
            .expect("json");
        if status["finished"] == true {
            return status;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("re-wrap run did not finish");
}

#[tokio::test]
async fn an_unavailable_kms_fails_closed() {
    use server::kms::FaultMode;

    let (app, kms) = spawn_app_with_faulty_kms().await;
    let trader = app.signed_in_as("trader@example.com", Role::Trader).await;
    let id = added_key_id(&app, &trader, "Main").await;
    let events_before = app.count("SELECT COUNT(*) FROM audit_events").await;

    for mode in [FaultMode::Unavailable, FaultMode::Refusing] {
        kms.set_mode(mode);
        let response = add_paper_key(&app, &trader, "Second").await;
        assert_eq!(response.status(), 503, "{mode:?}");
        let body = response.text().await.expect("body");
        assert!(body.contains("key management service"), "{body}");
    }
    assert_eq!(app.count("SELECT COUNT(*) FROM exchange_keys").await, 1);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM audit_events").await,
        events_before,
        "a refused add records nothing"
    );

    // Using a key: the receipt is written, the decryption fails, the failure is recorded.
    kms.set_mode(FaultMode::Unavailable);
    let response = app
        .call(&trader, "keys/check", &[("key_id", id.as_str())])
        .await;
    assert_eq!(response.status(), 503);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM audit_events WHERE action = 'vault.key_use_failed'")
            .await,
        1
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM audit_events WHERE action = 'vault.key_checked'")
            .await,
        0
    );

    kms.set_mode(FaultMode::Healthy);
    let response = app
        .call(&trader, "keys/check", &[("key_id", id.as_str())])
        .await;
    assert_eq!(response.status(), 200);
}

/// Makes every audit append fail, as a full disk or a broken audit device would.
pub(crate) async fn break_audit_log(app: &TestApp) {
    if crate::helpers::is_postgres() {
        app.exec(
            "CREATE FUNCTION audit_down() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'audit device down'; END; $$;
             CREATE TRIGGER audit_down BEFORE INSERT ON audit_events FOR EACH ROW EXECUTE FUNCTION audit_down();",
        )
        .await;
    } else {
        app.exec(
            "CREATE TRIGGER audit_down BEFORE INSERT ON audit_events BEGIN SELECT RAISE(ABORT, 'audit device down'); END;",
        )
        .await;
    }
}

#[tokio::test]
async fn no_audit_write_means_no_decryption_and_no_new_key() {
    let app = spawn_app().await;
    let trader = app.signed_in_as("trader@example.com", Role::Trader).await;
    let id = added_key_id(&app, &trader, "Main").await;
    break_audit_log(&app).await;

    let response = app
        .call(&trader, "keys/check", &[("key_id", id.as_str())])
        .await;
    assert_eq!(response.status(), 503);
    let body = response.text().await.expect("body");
    assert!(body.contains("audit log"), "{body}");
    assert!(list(&app, &trader).await[0]["last_used_at"].is_null());

    let response = add_paper_key(&app, &trader, "Second").await;
    assert_eq!(response.status(), 503);
    assert_eq!(app.count("SELECT COUNT(*) FROM exchange_keys").await, 1);

    let response = app
        .call(&trader, "keys/revoke", &[("key_id", id.as_str())])
        .await;
    assert_eq!(response.status(), 503);
    assert_eq!(list(&app, &trader).await[0]["status"], "active");
}

#[tokio::test]
async fn receipts_show_only_the_owners_own_addresses_so_a_decoy_reads_like_a_real_key() {
    let app = spawn_app_with(|s| s.trust_forwarded_for = true).await;
    let admin = app.admin_with_key("admin@example.com").await;
    let trader = app.signed_in_as("trader@example.com", Role::Trader).await;
    let (admin_ip, trader_ip) = ("203.0.113.7", "198.51.100.9");
    let real = add_paper_key(&app, &trader, "Real").await;
    assert_eq!(real.status(), 200);
    let real: Value = real.json().await.expect("json");
    let real_id = real["id"].as_str().expect("id");
    let form = [
        ("owner_email", "trader@example.com"),
        ("label", "Old bot key"),
        ("exchange", "binance"),
        ("environment", "live"),
    ];
    let planted = app
        .call_from(&admin, admin_ip, "admin/canary-plant", &form)
        .await;
    assert_eq!(planted.status(), 200);
    let decoy: Value = planted.json().await.expect("json");
    let decoy_id = decoy["id"].as_str().expect("id");
    // An admin's re-wrap writes one event per key, in every vault.
    let rotated = app
        .call_from(&admin, admin_ip, "admin/kms-rotate", &[])
        .await;
    assert_eq!(rotated.status(), 200);
    let job: String = app
        .call_from(&admin, admin_ip, "admin/rewrap-all", &[])
        .await
        .json()
        .await
        .expect("job id");
    wait_for_rewrap(&app, &admin, &job).await;
    let checked = app
        .call_from(&trader, trader_ip, "keys/check", &[("key_id", real_id)])
        .await;
    assert_eq!(checked.status(), 200);

    let receipts: Vec<Value> = app
        .call(&trader, "keys/receipts", &[])
        .await
        .json()
        .await
        .expect("json");
    let text = serde_json::to_string(&receipts).expect("json");
    assert!(!text.contains(admin_ip), "{text}");
    let of = |id: &str, action: &str| {
        receipts
            .iter()
            .find(|r| r["key_id"] == id && r["action"] == action)
            .unwrap_or_else(|| panic!("{action} of {id} in {text}"))
            .clone()
    };
    assert_eq!(of(real_id, "vault.key_used")["ip"], trader_ip);
    assert_eq!(of(real_id, "vault.key_rewrapped")["ip"], Value::Null);
    // Added: the decoy's line and the real key's are alike.
    let (real_added, decoy_added) = (
        of(real_id, "vault.key_added"),
        of(decoy_id, "vault.key_added"),
    );
    assert_eq!(real_added["ip"], Value::Null);
    assert_eq!(decoy_added["ip"], Value::Null);
    assert_eq!(real_added["description"], decoy_added["description"]);
    app.stop().await;
}

#[tokio::test]
async fn touching_a_decoy_key_raises_an_alert_and_decrypts_nothing() {
    let app = spawn_app().await;
    let admin = app.admin_with_key("admin@example.com").await;
    let trader = app.signed_in_as("trader@example.com", Role::Trader).await;
    let _real = added_key_id(&app, &trader, "Real").await;

    let form = [
        ("owner_email", "trader@example.com"),
        ("label", "Old bot key"),
        ("exchange", "binance"),
        ("environment", "live"),
    ];
    assert_eq!(
        app.call(&trader, "admin/canary-plant", &form)
            .await
            .status(),
        403
    );
    let response = app.call(&admin, "admin/canary-plant", &form).await;
    assert_eq!(response.status(), 200);
    let decoy: Value = response.json().await.expect("json");
    let decoy_id = decoy["id"].as_str().expect("id").to_owned();

    // To its owner the decoy is just another key.
    let keys = list(&app, &trader).await;
    assert_eq!(keys.len(), 2);
    let listed = keys
        .iter()
        .find(|k| k["id"] == decoy_id.as_str())
        .expect("listed");
    assert_eq!(listed["status"], "active");
    assert!(listed.get("canary").is_none());

    let response = app
        .call(&trader, "keys/check", &[("key_id", decoy_id.as_str())])
        .await;
    assert_eq!(response.status(), 409);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM audit_events WHERE action = 'vault.key_used'")
            .await,
        0,
        "a decoy is never decrypted"
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM audit_events WHERE action = 'security.canary_tripped'")
            .await,
        1
    );

    let alerts: Vec<Value> = app
        .call(&admin, "admin/alerts", &[])
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0]["kind"], "canary_key_used");
    assert!(
        alerts[0]["message"]
            .as_str()
            .expect("message")
            .contains("Old bot key")
    );
    assert_eq!(alerts[0]["actor_email"], "trader@example.com");
    let canaries: Vec<Value> = app
        .call(&admin, "admin/canaries", &[])
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(canaries.len(), 1);
    assert!(canaries[0]["last_used_at"].is_string(), "shown as touched");
    let open: u32 = app
        .call(&admin, "alerts/open-count", &[])
        .await
        .json()
        .await
        .expect("count");
    assert_eq!(open, 1);
    assert_eq!(app.call(&trader, "admin/alerts", &[]).await.status(), 403);

    let metrics = reqwest::get(format!("{}/metrics", app.address))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("cryptopulse_security_events_total{kind=\"canary_key_used\"} 1"),
        "{metrics}"
    );

    let alert_id = alerts[0]["id"].as_str().expect("id");
    let response = app
        .call(&admin, "admin/alert-ack", &[("alert_id", alert_id)])
        .await;
    assert_eq!(response.status(), 200);
    let open: u32 = app
        .call(&admin, "alerts/open-count", &[])
        .await
        .json()
        .await
        .expect("count");
    assert_eq!(open, 0);
}

#[tokio::test]
async fn metrics_are_not_served_through_a_proxy() {
    let app = spawn_app().await;
    let response = reqwest::Client::new()
        .get(format!("{}/metrics", app.address))
        .header("x-forwarded-for", "203.0.113.9")
        .send()
        .await
        .expect("metrics");
    assert_eq!(response.status(), 404);
}

async fn add_binance_testnet_key(
    app: &TestApp,
    client: &reqwest::Client,
    api_key: &str,
    api_secret: &str,
) -> reqwest::Response {
    app.call(
        client,
        "keys/add",
        &[
            ("exchange", "binance"),
            ("environment", "testnet"),
            ("scope", "trade"),
            ("label", "Binance testnet"),
            ("api_key", api_key),
            ("api_secret", api_secret),
        ],
    )
    .await
}

#[tokio::test]
async fn binance_keys_are_checked_with_the_exchange_and_withdrawal_keys_refused() {
    let binance = Binance::testnet(Mode::Normal).await;
    let url = binance.url.clone();
    let app = spawn_app_with(|s| s.exchanges.binance_testnet_url = url).await;
    let trader = app.signed_in_as("trader@example.com", Role::Trader).await;

    let response = add_binance_testnet_key(&app, &trader, WITHDRAW_KEY, WITHDRAW_SECRET).await;
    assert_eq!(response.status(), 400);
    let body = response.text().await.expect("body");
    assert!(body.contains("can withdraw funds"), "{body}");
    assert!(!body.contains(WITHDRAW_SECRET) && !body.contains(WITHDRAW_KEY));
    assert_eq!(app.count("SELECT COUNT(*) FROM exchange_keys").await, 0);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM audit_events WHERE action = 'vault.key_refused'")
            .await,
        1
    );

    // A key the testnet does not know (a live key, say) is refused with a hint.
    let response = add_binance_testnet_key(
        &app,
        &trader,
        "unknownLiveKey0000000000",
        "unknownSecret000000000",
    )
    .await;
    assert_eq!(response.status(), 400);
    let body = response.text().await.expect("body");
    assert!(body.contains("testnet"), "{body}");

    let response = add_binance_testnet_key(&app, &trader, TRADE_KEY, TRADE_SECRET).await;
    assert_eq!(response.status(), 200);
    let key: Value = response.json().await.expect("json");
    assert_eq!(key["can_trade"], true);
    assert_eq!(key["can_withdraw"], false);
    let id = key["id"].as_str().expect("id");
    let response = app.call(&trader, "keys/check", &[("key_id", id)]).await;
    assert_eq!(response.status(), 200);
    assert_no_secret_in_db(&app, TRADE_SECRET).await;
}

async fn assert_no_secret_in_db(app: &TestApp, secret: &str) {
    let dump = dump_database(app).await;
    assert!(!dump.contains(secret), "the database holds the secret");
}

#[tokio::test]
async fn an_unreachable_exchange_saves_nothing() {
    let app = spawn_app_with(|s| {
        // Nothing listens on port 9 (discard) here; connecting fails at once.
        s.exchanges.binance_testnet_url = "http://127.0.0.1:9".into();
    })
    .await;
    let trader = app.signed_in_as("trader@example.com", Role::Trader).await;
    let response = add_binance_testnet_key(&app, &trader, TRADE_KEY, TRADE_SECRET).await;
    assert_eq!(response.status(), 503);
    let body = response.text().await.expect("body");
    assert!(body.contains("exchange could not be reached"), "{body}");
    assert_eq!(app.count("SELECT COUNT(*) FROM exchange_keys").await, 0);
}
