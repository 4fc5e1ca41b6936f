use std::sync::Arc;

use reqwest::header::{COOKIE, SET_COOKIE};

use crate::helpers::{
    PASSWORD, TestClock, TestDatabase, client_for, spawn_app, spawn_app_with, spawn_on,
    test_settings,
};

fn session_cookie(response: &reqwest::Response) -> String {
    response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.contains("cryptopulse_session="))
        .expect("session cookie set")
        .to_owned()
}

fn cookie_pair(set_cookie: &str) -> String {
    set_cookie.split(';').next().expect("pair").to_owned()
}

/// A client without a cookie jar, replaying exactly `cookie`.
async fn who_am_i_with_cookie(address: &str, cookie: &str) -> serde_json::Value {
    let client = reqwest::Client::new();
    client
        .post(format!("{address}/api/auth/me"))
        .header("origin", address)
        .header(COOKIE, cookie)
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json")
}

#[tokio::test]
async fn the_session_cookie_is_http_only_same_site_strict_and_host_wide() {
    let app = spawn_app().await;
    let response = app.sign_up(&app.client, "gina@example.com").await;
    let cookie = session_cookie(&response);
    assert!(cookie.starts_with("cryptopulse_session="), "{cookie}");
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Strict"), "{cookie}");
    assert!(cookie.contains("Path=/"), "{cookie}");
    assert!(
        !cookie.contains("Secure"),
        "plain http must not set Secure: {cookie}"
    );
    app.stop().await;
}

#[tokio::test]
async fn under_tls_the_cookie_is_secure_with_the_host_prefix_and_hsts_is_sent() {
    let app = spawn_app_with(|s| s.public_url = "https://pulse.example.com".into()).await;
    let response = app.sign_up(&app.client, "hana@example.com").await;
    let cookie = session_cookie(&response);
    assert!(
        cookie.starts_with("__Host-cryptopulse_session="),
        "{cookie}"
    );
    assert!(cookie.contains("Secure"), "{cookie}");
    assert!(
        response
            .headers()
            .get("strict-transport-security")
            .is_some()
    );
    app.stop().await;
}

#[tokio::test]
async fn login_rotates_the_session_id_and_the_old_id_stops_working() {
    let app = spawn_app().await;
    app.sign_up(&app.new_client(), "ivan@example.com").await;
    let first = session_cookie(&app.log_in(&app.client, "ivan@example.com", PASSWORD).await);
    let second = session_cookie(&app.log_in(&app.client, "ivan@example.com", PASSWORD).await);
    assert_ne!(cookie_pair(&first), cookie_pair(&second));
    assert!(
        who_am_i_with_cookie(&app.address, &cookie_pair(&first))
            .await
            .is_null()
    );
    assert_eq!(
        who_am_i_with_cookie(&app.address, &cookie_pair(&second)).await["email"],
        "ivan@example.com"
    );
    app.stop().await;
}

#[tokio::test]
async fn logout_ends_the_session_for_good() {
    let app = spawn_app().await;
    let cookie = cookie_pair(&session_cookie(
        &app.sign_up(&app.client, "judy@example.com").await,
    ));
    assert_eq!(
        app.call(&app.client, "auth/logout", &[]).await.status(),
        200
    );
    assert!(app.who_am_i(&app.client).await.is_null());
    assert!(
        who_am_i_with_cookie(&app.address, &cookie).await.is_null(),
        "a replayed cookie must not work"
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM audit_events WHERE action = 'auth.logout'")
            .await,
        1
    );
    app.stop().await;
}

#[tokio::test]
async fn logging_out_everywhere_ends_every_session_of_that_user_only() {
    let app = spawn_app().await;
    let laptop = app.new_client();
    let phone = app.new_client();
    app.sign_up(&laptop, "kim@example.com").await;
    assert_eq!(
        app.log_in(&phone, "kim@example.com", PASSWORD)
            .await
            .status(),
        200
    );
    let someone_else = app.new_client();
    app.sign_up(&someone_else, "lee@example.com").await;

    assert_eq!(
        app.call(&laptop, "auth/logout-everywhere", &[])
            .await
            .status(),
        200
    );
    assert!(app.who_am_i(&laptop).await.is_null());
    assert!(app.who_am_i(&phone).await.is_null());
    assert_eq!(
        app.who_am_i(&someone_else).await["email"],
        "lee@example.com"
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM audit_events WHERE action = 'auth.logout_everywhere'")
            .await,
        1
    );
    app.stop().await;
}

#[tokio::test]
async fn changing_the_password_needs_the_current_one_and_a_recent_proof_and_ends_every_session() {
    const NEW: &str = "a different horse, a different staple";
    let app = spawn_app().await;
    let laptop = app.new_client();
    let phone = app.new_client();
    app.sign_up(&laptop, "pat@example.com").await;
    assert_eq!(
        app.log_in(&phone, "pat@example.com", PASSWORD)
            .await
            .status(),
        200
    );
    let change = |client: &reqwest::Client, current: &str, new: &str| {
        let (app, client) = (&app, client.clone());
        let (current, new) = (current.to_owned(), new.to_owned());
        async move {
            app.call(
                &client,
                "auth/password",
                &[
                    ("current_password", current.as_str()),
                    ("new_password", new.as_str()),
                ],
            )
            .await
        }
    };
    let events = |outcome: &'static str| {
        let app = &app;
        async move {
            app.count(&format!(
                "SELECT COUNT(*) FROM audit_events WHERE action = 'auth.password_changed' \
                 AND outcome = '{outcome}'"
            ))
            .await
        }
    };

    // A wrong current password, or a new one too short: refused, nothing changes.
    let wrong = change(&laptop, "not my password at all", NEW).await;
    assert_eq!(wrong.status(), 400);
    let message = wrong.text().await.expect("body");
    assert!(
        message.contains("current password is not right"),
        "{message}"
    );
    assert_eq!(change(&laptop, PASSWORD, "short").await.status(), 400);
    assert_eq!(events("failure").await, 1);
    assert_eq!(app.who_am_i(&phone).await["email"], "pat@example.com");

    // A session signed in longer ago than the step-up window (and no factor to step up with)
    // cannot: a stolen, older session cannot lock its owner out.
    app.clock.advance(time::Duration::minutes(11));
    let stale = change(&phone, PASSWORD, NEW).await;
    assert_eq!(stale.status(), 403, "{}", stale.text().await.expect("body"));
    assert_eq!(events("success").await, 0);

    // Freshly signed in, with the current password: changed, and every session ends.
    let fresh = app.new_client();
    assert_eq!(
        app.log_in(&fresh, "pat@example.com", PASSWORD)
            .await
            .status(),
        200
    );
    let changed = change(&fresh, PASSWORD, NEW).await;
    assert!(
        changed.status().is_success() || changed.status().is_redirection(),
        "{}",
        changed.status()
    );
    for client in [&laptop, &phone, &fresh] {
        assert!(app.who_am_i(client).await.is_null(), "signed out");
    }
    assert_eq!(events("success").await, 1);
    // The browsers it was used from are strangers again (their sign-ins count under the
    // account), all but the one that changed it.
    assert_eq!(app.count("SELECT COUNT(*) FROM trusted_devices").await, 1);
    assert_ne!(
        app.log_in(&app.new_client(), "pat@example.com", PASSWORD)
            .await
            .status(),
        200,
        "the old password no longer works"
    );
    assert_eq!(
        app.log_in(&app.new_client(), "pat@example.com", NEW)
            .await
            .status(),
        200
    );
    app.stop().await;
}

#[tokio::test]
async fn sessions_survive_a_server_restart() {
    let db = TestDatabase::new().await;
    let settings = test_settings(&db);
    let clock = Arc::new(TestClock::default());
    let first = spawn_on(db.clone(), settings.clone(), clock.clone()).await;
    let cookie = cookie_pair(&session_cookie(
        &first.sign_up(&first.client, "mia@example.com").await,
    ));
    first.stop().await;

    let second = spawn_on(db, settings, clock).await;
    assert_eq!(
        who_am_i_with_cookie(&second.address, &cookie).await["email"],
        "mia@example.com"
    );
    let _ = client_for(&second.address);
    second.stop().await;
}

#[tokio::test]
async fn an_idle_session_expires() {
    let app = spawn_app().await;
    app.sign_up(&app.client, "noah@example.com").await;
    app.clock.advance(time::Duration::minutes(29));
    assert_eq!(app.who_am_i(&app.client).await["email"], "noah@example.com");
    app.clock.advance(time::Duration::minutes(31));
    assert!(app.who_am_i(&app.client).await.is_null());
    app.stop().await;
}

#[tokio::test]
async fn a_busy_session_still_ends_at_its_absolute_lifetime() {
    let app = spawn_app().await;
    app.sign_up(&app.client, "olga@example.com").await;
    // Stay active every 20 minutes for 11h40m: still signed in.
    for _ in 0..35 {
        app.clock.advance(time::Duration::minutes(20));
        assert_eq!(app.who_am_i(&app.client).await["email"], "olga@example.com");
    }
    app.clock.advance(time::Duration::minutes(21));
    assert!(app.who_am_i(&app.client).await.is_null());
    app.stop().await;
}

#[tokio::test]
async fn a_request_in_flight_during_logout_cannot_write_the_session_back() {
    use tower_sessions::SessionStore;
    use tower_sessions::session::{Id, Record};

    let app = spawn_app().await;
    let store = app.backend.sessions.clone();
    let mut record = Record {
        id: Id::default(),
        data: [("note".to_owned(), serde_json::json!("in flight"))]
            .into_iter()
            .collect(),
        expiry_date: time::OffsetDateTime::now_utc() + time::Duration::minutes(30),
    };
    store.create(&mut record).await.expect("created");
    assert!(store.load(&record.id).await.expect("load").is_some());
    store.delete(&record.id).await.expect("deleted");
    // The end of a request that loaded the session before the delete.
    store.save(&record).await.expect("save is a no-op");
    assert!(store.load(&record.id).await.expect("load").is_none());
    app.stop().await;
}

/// A step-up gives the session a new id, which stores it as a new row. One that overlapped
/// "sign out everywhere" or a password change (its request loaded the session before, and
/// saves after) must not bring the ended session back under its new id.
#[tokio::test]
async fn a_session_copied_under_a_new_id_after_its_user_signed_out_everywhere_is_not_stored() {
    use domain::ports::Clock;
    use tower_sessions::SessionStore;
    use tower_sessions::session::{Id, Record};

    let app = spawn_app().await;
    let client = app.new_client();
    app.sign_up(&client, "owner@example.com").await;
    let user = app.who_am_i(&client).await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let store = app.backend.sessions.clone();
    let micros = domain::clock::unix_micros;
    let signed_in_at = micros(app.clock.now());
    let signed_in = |at: i64| Record {
        id: Id::default(),
        data: [
            ("uid".to_owned(), serde_json::json!(user)),
            ("auth_at_us".to_owned(), serde_json::json!(at)),
        ]
        .into_iter()
        .collect(),
        expiry_date: time::OffsetDateTime::now_utc() + time::Duration::minutes(30),
    };
    let sessions_of_user = format!("SELECT COUNT(*) FROM sessions WHERE user_id = '{user}'");

    // Half a second into a second, so "just before" below is the same second.
    app.clock.advance(time::Duration::milliseconds(120_500));
    let revoked_at = micros(app.clock.now());
    let response = app.call(&client, "auth/logout-everywhere", &[]).await;
    assert_eq!(response.status(), 200);
    assert_eq!(app.count(&sessions_of_user).await, 0);

    // The in-flight step-up's copy, signed in before the revocation: not stored.
    let mut copy = signed_in(signed_in_at);
    store.create(&mut copy).await.expect("create is a no-op");
    assert!(store.load(&copy.id).await.expect("load").is_none());
    // Nor a sign-in that began a moment before it, in the same second (it read the password
    // before a change committed): times are compared to the microsecond.
    let mut overlapping = signed_in(revoked_at - 1);
    store
        .create(&mut overlapping)
        .await
        .expect("create is a no-op");
    assert!(store.load(&overlapping.id).await.expect("load").is_none());
    assert_eq!(app.count(&sessions_of_user).await, 0);

    // A sign-in after it is stored as usual.
    app.clock.advance(time::Duration::milliseconds(1));
    let mut fresh = signed_in(micros(app.clock.now()));
    store.create(&mut fresh).await.expect("created");
    assert!(store.load(&fresh.id).await.expect("load").is_some());
    assert_eq!(app.count(&sessions_of_user).await, 1);
    app.stop().await;
}

/// A page reads the signed-in user once and reuses them for the rest of that request (its
/// server functions each need them); nothing of one request's user may reach another's page,
/// however many load at once.
#[tokio::test]
async fn pages_loaded_at_once_each_show_only_their_own_account() {
    let app = spawn_app().await;
    let alice = app
        .signed_in_as("alice-pages@example.com", domain::account::Role::Trader)
        .await;
    let bob = app
        .signed_in_as("bob-pages@example.com", domain::account::Role::Trader)
        .await;
    let loads = (0..40).map(|i| {
        let (client, mine, theirs) = if i % 2 == 0 {
            (alice.clone(), "alice-pages@", "bob-pages@")
        } else {
            (bob.clone(), "bob-pages@", "alice-pages@")
        };
        let page = if i % 4 < 2 { "/trade" } else { "/account" };
        let url = format!("{}{page}", app.address);
        async move {
            let response = client.get(&url).send().await.expect("page");
            assert_eq!(response.status(), 200, "{url}");
            let body = response.text().await.expect("body");
            assert!(body.contains(mine), "{url} does not name its own user");
            assert!(!body.contains(theirs), "{url} shows another user's account");
        }
    });
    futures::future::join_all(loads).await;
}
