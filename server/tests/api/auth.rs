use domain::account::Role;

use crate::helpers::{PASSWORD, spawn_app};

#[tokio::test]
async fn sign_up_creates_a_signed_in_trader_and_audits_it() {
    let app = spawn_app().await;
    let response = app.sign_up(&app.client, "Alice@Example.com").await;
    assert_eq!(response.status(), 200);

    let me = app.who_am_i(&app.client).await;
    assert_eq!(me["email"], "alice@example.com");
    assert_eq!(me["role"], "trader");
    assert_eq!(
        app.count("SELECT COUNT(*) FROM users WHERE role = 'trader'")
            .await,
        1
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM audit_events WHERE action = 'account.create'")
            .await,
        1
    );
    app.stop().await;
}

#[tokio::test]
async fn sign_up_refuses_bad_input_with_a_clear_400_and_creates_nothing() {
    let app = spawn_app().await;
    let cases: [(&[(&str, &str)], &str); 4] = [
        (
            &[
                ("email", "not-an-email"),
                ("password", PASSWORD),
                ("password_confirm", PASSWORD),
            ],
            "email address",
        ),
        (
            &[
                ("email", "a@example.com"),
                ("password", "short"),
                ("password_confirm", "short"),
            ],
            "between 12 and 128",
        ),
        (
            &[
                ("email", "a@example.com"),
                ("password", PASSWORD),
                ("password_confirm", "something else!"),
            ],
            "do not match",
        ),
        (
            &[("email", "a@example.com"), ("password", PASSWORD)],
            "incomplete or malformed",
        ),
    ];
    for (form, message) in cases {
        let response = app.call(&app.client, "auth/signup", form).await;
        assert_eq!(response.status(), 400, "{form:?}");
        let body = response.text().await.expect("body");
        assert!(body.contains(message), "{form:?}: {body}");
    }
    assert_eq!(app.count("SELECT COUNT(*) FROM users").await, 0);
    app.stop().await;
}

#[tokio::test]
async fn a_second_sign_up_with_the_same_email_is_refused_without_a_second_account() {
    let app = spawn_app().await;
    assert_eq!(
        app.sign_up(&app.client, "bob@example.com").await.status(),
        200
    );
    let other = app.new_client();
    let response = app.sign_up(&other, "BOB@example.com").await;
    assert_eq!(response.status(), 409);
    assert_eq!(app.count("SELECT COUNT(*) FROM users").await, 1);
    assert!(app.who_am_i(&other).await.is_null());
    app.stop().await;
}

#[tokio::test]
async fn wrong_password_and_unknown_email_get_the_same_answer() {
    let app = spawn_app().await;
    app.sign_up(&app.new_client(), "carol@example.com").await;

    let wrong_password = app
        .log_in(&app.client, "carol@example.com", "not the password")
        .await;
    let wrong_status = wrong_password.status();
    let wrong_body = wrong_password.text().await.expect("body");
    let unknown = app
        .log_in(&app.client, "nobody@example.com", "not the password")
        .await;
    let unknown_status = unknown.status();
    let unknown_body = unknown.text().await.expect("body");

    assert_eq!(wrong_status, 401);
    assert_eq!(wrong_status, unknown_status);
    assert_eq!(wrong_body, unknown_body);
    assert!(wrong_body.contains("BadCredentials"), "{wrong_body}");
    assert!(app.who_am_i(&app.client).await.is_null());
    assert_eq!(
        app.count(
            "SELECT COUNT(*) FROM audit_events WHERE action = 'auth.login' AND outcome = 'failure'"
        )
        .await,
        2
    );
    app.stop().await;
}

#[tokio::test]
async fn malformed_login_input_is_just_a_failed_login() {
    let app = spawn_app().await;
    let long = "x".repeat(10_000);
    let long_email = format!("{long}@example.com");
    for (email, password) in [
        ("", ""),
        ("no-at-sign", PASSWORD),
        (long_email.as_str(), PASSWORD),
        ("a@example.com", long.as_str()),
    ] {
        let response = app.log_in(&app.client, email, password).await;
        assert_eq!(response.status(), 401, "{email:?}");
    }
    app.stop().await;
}

#[tokio::test]
async fn repeated_failures_back_off_the_account_even_for_the_right_password() {
    let app = spawn_app().await;
    app.sign_up(&app.new_client(), "dave@example.com").await;
    for _ in 0..5 {
        assert_eq!(
            app.log_in(&app.client, "dave@example.com", "wrong password!")
                .await
                .status(),
            401
        );
    }
    let response = app.log_in(&app.client, "dave@example.com", PASSWORD).await;
    assert_eq!(response.status(), 429);
    assert!(response.headers().get("retry-after").is_some());
    assert!(app.who_am_i(&app.client).await.is_null());
    assert_eq!(
        app.count(
            "SELECT COUNT(*) FROM audit_events WHERE action = 'auth.login' AND outcome = 'denied'"
        )
        .await,
        1
    );

    // Once the wait is over the right password works again.
    app.clock.advance(time::Duration::seconds(2));
    assert_eq!(
        app.log_in(&app.client, "dave@example.com", PASSWORD)
            .await
            .status(),
        200
    );
    app.stop().await;
}

#[tokio::test]
async fn roles_guard_the_admin_and_audit_functions() {
    let app = spawn_app().await;
    let anonymous = app.new_client();
    assert_eq!(app.call(&anonymous, "admin/users", &[]).await.status(), 401);
    assert_eq!(
        app.call(&anonymous, "audit/recent", &[("limit", "10")])
            .await
            .status(),
        401
    );

    let trader = app.signed_in_as("trader@example.com", Role::Trader).await;
    assert_eq!(app.call(&trader, "admin/users", &[]).await.status(), 403);
    assert_eq!(
        app.call(&trader, "audit/recent", &[("limit", "10")])
            .await
            .status(),
        403
    );
    assert_eq!(app.call(&trader, "audit/verify", &[]).await.status(), 403);

    let reviewer = app
        .signed_in_as("reviewer@example.com", Role::Reviewer)
        .await;
    assert_eq!(
        app.call(&reviewer, "audit/recent", &[("limit", "10")])
            .await
            .status(),
        200
    );
    assert_eq!(app.call(&reviewer, "admin/users", &[]).await.status(), 403);
    app.stop().await;
}

#[tokio::test]
async fn an_admin_changes_roles_and_each_change_is_audited() {
    let app = spawn_app().await;
    let admin = app.admin_with_key("admin@example.com").await;
    app.sign_up(&app.new_client(), "erin@example.com").await;

    let users: Vec<serde_json::Value> = app
        .call(&admin, "admin/users", &[])
        .await
        .json()
        .await
        .expect("json");
    let erin = users
        .iter()
        .find(|u| u["email"] == "erin@example.com")
        .expect("erin listed");
    let erin_id = erin["id"].as_str().expect("id");
    let admin_id = users
        .iter()
        .find(|u| u["email"] == "admin@example.com")
        .expect("admin")["id"]
        .as_str()
        .expect("id");

    let response = app
        .call(
            &admin,
            "admin/set-role",
            &[("user_id", erin_id), ("role", "reviewer")],
        )
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM users WHERE role = 'reviewer'")
            .await,
        1
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM audit_events WHERE action = 'account.role_change'")
            .await,
        1
    );

    // Bad input changes nothing.
    let bad = app
        .call(
            &admin,
            "admin/set-role",
            &[("user_id", erin_id), ("role", "root")],
        )
        .await;
    assert_eq!(bad.status(), 400);
    let unknown_id = uuid::Uuid::new_v4().to_string();
    for id in [unknown_id.as_str(), "not-a-uuid", "1 OR 1=1"] {
        assert_eq!(
            app.call(
                &admin,
                "admin/set-role",
                &[("user_id", id), ("role", "admin")]
            )
            .await
            .status(),
            404
        );
    }
    let own = app
        .call(
            &admin,
            "admin/set-role",
            &[("user_id", admin_id), ("role", "trader")],
        )
        .await;
    assert_eq!(own.status(), 400);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM users WHERE role = 'admin'")
            .await,
        1
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM audit_events WHERE action = 'account.role_change'")
            .await,
        1
    );
    app.stop().await;
}

#[tokio::test]
async fn the_cli_creates_admins_and_changes_roles() {
    let app = spawn_app().await;
    server::cli::set_role(&app.settings, "nobody@example.com", "admin")
        .await
        .expect_err("unknown email");
    app.sign_up(&app.new_client(), "frank@example.com").await;
    server::cli::set_role(&app.settings, "frank@example.com", "admin")
        .await
        .expect("role set");
    assert_eq!(
        app.count("SELECT COUNT(*) FROM users WHERE role = 'admin'")
            .await,
        1
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM audit_events WHERE action = 'account.role_change' AND actor_kind = 'system'").await,
        1
    );
    assert!(
        server::cli::set_role(&app.settings, "frank@example.com", "superuser")
            .await
            .is_err()
    );
    app.stop().await;
}
