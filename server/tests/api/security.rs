use reqwest::header::ORIGIN;

use crate::helpers::{PASSWORD, is_postgres, spawn_app, spawn_app_with};

#[tokio::test]
async fn pages_carry_the_security_headers_and_a_csp_nonce_that_matches_the_scripts() {
    let app = spawn_app().await;
    let response = reqwest::get(format!("{}/login", app.address))
        .await
        .expect("page");
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    let csp = headers["content-security-policy"]
        .to_str()
        .expect("csp")
        .to_owned();
    for expected in [
        "default-src 'self'",
        "frame-ancestors 'none'",
        "object-src 'none'",
        "base-uri 'none'",
        "'wasm-unsafe-eval'",
    ] {
        assert!(csp.contains(expected), "{expected} missing from {csp}");
    }
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["x-frame-options"], "DENY");
    assert_eq!(headers["referrer-policy"], "same-origin");
    assert_eq!(headers["cache-control"], "no-store");
    assert!(headers.contains_key("x-request-id"));
    assert!(
        !headers.contains_key("strict-transport-security"),
        "no HSTS over plain http"
    );

    let nonce = csp
        .split("'nonce-")
        .nth(1)
        .and_then(|rest| rest.split('\'').next())
        .expect("nonce in CSP");
    let html = response.text().await.expect("html");
    assert!(
        html.contains(&format!("nonce=\"{nonce}\"")),
        "the hydration script must carry the CSP nonce"
    );
    let second = reqwest::get(format!("{}/login", app.address))
        .await
        .expect("page");
    assert!(
        !second.headers()["content-security-policy"]
            .to_str()
            .expect("csp")
            .contains(nonce),
        "nonces are per response"
    );
    app.stop().await;
}

#[tokio::test]
async fn request_ids_come_from_the_server_not_the_client() {
    let app = spawn_app().await;
    let response = reqwest::Client::new()
        .get(format!("{}/", app.address))
        .header("x-request-id", "attacker-chosen")
        .send()
        .await
        .expect("page");
    assert_ne!(response.headers()["x-request-id"], "attacker-chosen");
    app.stop().await;
}

#[tokio::test]
async fn state_changing_requests_from_other_origins_are_refused_and_change_nothing() {
    let app = spawn_app().await;
    let form = [
        ("email", "csrf@example.com"),
        ("password", PASSWORD),
        ("password_confirm", PASSWORD),
    ];
    let plain = reqwest::Client::new();
    let url = format!("{}/api/auth/signup", app.address);

    let no_origin = plain.post(&url).form(&form).send().await.expect("sent");
    assert_eq!(no_origin.status(), 403);
    let evil = plain
        .post(&url)
        .header(ORIGIN, "https://evil.example")
        .form(&form)
        .send()
        .await
        .expect("sent");
    assert_eq!(evil.status(), 403);
    let cross_site = plain
        .post(&url)
        .header(ORIGIN, &app.address)
        .header("sec-fetch-site", "cross-site")
        .form(&form)
        .send()
        .await
        .expect("sent");
    assert_eq!(cross_site.status(), 403);
    assert_eq!(app.count("SELECT COUNT(*) FROM users").await, 0);

    let same_origin_without_origin_header = plain
        .post(&url)
        .header("sec-fetch-site", "same-origin")
        .form(&form)
        .send()
        .await
        .expect("sent");
    assert_eq!(same_origin_without_origin_header.status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn cors_answers_only_the_configured_origin() {
    let app = spawn_app().await;
    let preflight = |origin: &'static str| {
        reqwest::Client::new()
            .request(
                reqwest::Method::OPTIONS,
                format!("{}/api/auth/login", app.address),
            )
            .header(ORIGIN, origin)
            .header("access-control-request-method", "POST")
            .send()
    };
    let evil = preflight("https://evil.example").await.expect("sent");
    assert!(!evil.headers().contains_key("access-control-allow-origin"));
    let ours = preflight("http://localhost:3000").await.expect("sent");
    assert_eq!(
        ours.headers()["access-control-allow-origin"],
        "http://localhost:3000"
    );
    app.stop().await;
}

#[tokio::test]
async fn sign_up_and_login_are_rate_limited_per_address_with_retry_after() {
    let app = spawn_app_with(|s| s.rate_limit.auth_per_minute = 3).await;
    for n in 0..3 {
        let response = app
            .log_in(
                &app.client,
                &format!("u{n}@example.com"),
                "whatever password",
            )
            .await;
        assert_eq!(response.status(), 401);
    }
    let limited = app.sign_up(&app.client, "late@example.com").await;
    assert_eq!(limited.status(), 429);
    let retry_after: u64 = limited.headers()["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    assert_eq!(app.count("SELECT COUNT(*) FROM users").await, 0);
    // Other routes still answer.
    assert_eq!(app.call(&app.client, "auth/me", &[]).await.status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn every_route_is_rate_limited() {
    let app = spawn_app_with(|s| s.rate_limit.requests_per_minute = 5).await;
    let mut statuses = Vec::new();
    for _ in 0..8 {
        statuses.push(
            reqwest::get(format!("{}/", app.address))
                .await
                .expect("page")
                .status()
                .as_u16(),
        );
    }
    assert!(statuses.contains(&429), "{statuses:?}");
    app.stop().await;
}

#[tokio::test]
async fn internal_failures_are_opaque_carry_the_request_id_and_change_nothing() {
    let app = spawn_app().await;
    // Make every audit append fail: the action it records must fail with it (fail closed).
    if is_postgres() {
        app.exec(
            "CREATE FUNCTION refuse_audit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'audit store down'; END; $$; \
             CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_events FOR EACH ROW EXECUTE FUNCTION refuse_audit();",
        )
        .await;
    } else {
        app.exec("CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_events BEGIN SELECT RAISE(ABORT, 'audit store down'); END;")
            .await;
    }
    let response = app.sign_up(&app.client, "pat@example.com").await;
    assert_eq!(response.status(), 500);
    let request_id = response.headers()["x-request-id"]
        .to_str()
        .expect("id")
        .to_owned();
    let body = response.text().await.expect("body");
    assert!(body.contains(&request_id), "{body}");
    for leak in [
        "audit store down",
        "audit_events",
        "INSERT",
        "sqlite",
        "postgres",
    ] {
        assert!(
            !body.to_lowercase().contains(&leak.to_lowercase()),
            "{leak} leaked: {body}"
        );
    }
    assert_eq!(
        app.count("SELECT COUNT(*) FROM users").await,
        0,
        "no user without its audit event"
    );
    assert!(app.who_am_i(&app.client).await.is_null());
    app.stop().await;
}

#[tokio::test]
async fn passwords_never_reach_the_database_the_audit_log_or_a_response() {
    let app = spawn_app().await;
    let signup = app
        .sign_up(&app.client, "quinn@example.com")
        .await
        .text()
        .await
        .expect("body");
    let wrong = app
        .log_in(
            &app.new_client(),
            "quinn@example.com",
            "quinn's wrong password",
        )
        .await
        .text()
        .await
        .expect("body");
    assert!(!signup.contains(PASSWORD) && !wrong.contains("wrong password"));
    let dump = dump_text_columns(&app).await;
    assert!(
        !dump.contains(PASSWORD),
        "the password is stored somewhere in plain text"
    );
    assert!(!dump.contains("quinn's wrong password"));
    assert!(dump.contains("$argon2id$"), "the hash is stored");
    app.stop().await;
}

async fn dump_text_columns(app: &crate::helpers::TestApp) -> String {
    use sea_orm::{ConnectionTrait, Statement};
    let backend = app.db().get_database_backend();
    let mut dump = String::new();
    for sql in [
        "SELECT email || ' ' || password_hash || ' ' || role FROM users",
        "SELECT data FROM sessions",
        "SELECT action || ' ' || COALESCE(resource, '') || ' ' || details FROM audit_events",
    ] {
        for row in app
            .db()
            .query_all_raw(Statement::from_string(backend, sql.to_owned()))
            .await
            .expect(sql)
        {
            dump.push_str(&row.try_get_by_index::<String>(0).expect("text"));
            dump.push('\n');
        }
    }
    dump
}

#[tokio::test]
async fn unknown_pages_are_404_with_the_same_headers() {
    let app = spawn_app().await;
    let response = reqwest::get(format!("{}/no/such/page", app.address))
        .await
        .expect("page");
    assert_eq!(response.status(), 404);
    assert!(response.headers().contains_key("content-security-policy"));
    assert!(
        response
            .text()
            .await
            .expect("html")
            .contains("Page not found")
    );
    app.stop().await;
}
