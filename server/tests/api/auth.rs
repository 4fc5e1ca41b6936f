use domain::account::Role;

use crate::helpers::{PASSWORD, spawn_app, spawn_app_with};

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

/// Sign-up says when an email is taken (it signs the new account in, so it cannot hide it);
/// probing that way is recorded and backs off the prober's network like failed sign-ins.
#[tokio::test]
async fn sign_ups_refused_for_a_taken_email_are_recorded_and_back_off_the_network() {
    let app = spawn_app_with(|s| s.login.ip_free_failures = 2).await;
    let owner = app.new_client();
    assert_eq!(app.sign_up(&owner, "dora@example.com").await.status(), 200);
    let prober = app.new_client();
    for _ in 0..2 {
        assert_eq!(app.sign_up(&prober, "dora@example.com").await.status(), 409);
    }
    let refused = "SELECT COUNT(*) FROM audit_events WHERE action = 'account.create' \
                   AND outcome = 'denied' AND details LIKE '%email already registered%'";
    assert_eq!(app.count(refused).await, 2);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM audit_events WHERE details LIKE '%dora@%'")
            .await,
        0,
        "the address probed is not written down"
    );
    // The network now waits, even for an address nobody has.
    let response = app.sign_up(&prober, "fresh@example.com").await;
    assert_eq!(response.status(), 429);
    assert!(response.headers().contains_key("retry-after"));
    assert_eq!(app.count("SELECT COUNT(*) FROM users").await, 1);
    // The owner's own browser is not locked out by it.
    assert_eq!(app.call(&owner, "auth/logout", &[]).await.status(), 200);
    assert_eq!(
        app.log_in(&owner, "dora@example.com", PASSWORD)
            .await
            .status(),
        200
    );
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

    // A reviewer releases quarantines: one admin alone only asks for the role...
    let response = app
        .call(
            &admin,
            "admin/set-role",
            &[("user_id", erin_id), ("role", "reviewer")],
        )
        .await;
    assert_eq!(response.status(), 200);
    let reviewers = "SELECT COUNT(*) FROM users WHERE role = 'reviewer'";
    assert_eq!(app.count(reviewers).await, 0);
    assert_eq!(
        app.count(
            "SELECT COUNT(*) FROM audit_events WHERE action = 'account.role_change_requested'"
        )
        .await,
        1
    );
    // ...which a second admin's same change grants.
    let second = app.admin_with_key("second-admin@example.com").await;
    let response = app
        .call(
            &second,
            "admin/set-role",
            &[("user_id", erin_id), ("role", "reviewer")],
        )
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(app.count(reviewers).await, 1);
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
        2
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

/// OWASP's device cookies: a stranger's failures back off the account for every browser but
/// the ones its owner signed in from before, which are counted on their own.
#[tokio::test]
async fn strangers_failures_do_not_lock_out_a_browser_that_signed_in_before() {
    let app = spawn_app().await;
    let owner = app.new_client();
    let signed_up = app.sign_up(&owner, "erin@example.com").await;
    assert_eq!(signed_up.status(), 200);
    let cookie = signed_up
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("cryptopulse_device="))
        .expect("a device cookie")
        .to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let token = cookie["cryptopulse_device=".len()..]
        .split(';')
        .next()
        .expect("value")
        .to_owned();
    // Only its hash is kept, and it is never written to the audit log.
    assert_eq!(app.count("SELECT COUNT(*) FROM trusted_devices").await, 1);
    assert_eq!(
        app.count(&format!(
            "SELECT COUNT(*) FROM trusted_devices WHERE token_hash = '{token}'"
        ))
        .await,
        0
    );
    assert_eq!(
        app.count(&format!(
            "SELECT COUNT(*) FROM audit_events WHERE details LIKE '%{token}%'"
        ))
        .await,
        0
    );
    assert_eq!(app.call(&owner, "auth/logout", &[]).await.status(), 200);

    let stranger = app.new_client();
    for _ in 0..8 {
        let response = app
            .log_in(&stranger, "erin@example.com", "a wrong guess!")
            .await;
        assert!([401, 429].contains(&response.status().as_u16()));
    }
    // A browser new to the account waits, even with the right password...
    let fresh = app.new_client();
    assert_eq!(
        app.log_in(&fresh, "erin@example.com", PASSWORD)
            .await
            .status(),
        429
    );
    // ...the owner's browser does not.
    assert_eq!(
        app.log_in(&owner, "erin@example.com", PASSWORD)
            .await
            .status(),
        200
    );
    assert_eq!(app.who_am_i(&owner).await["email"], "erin@example.com");
    let known = "SELECT COUNT(*) FROM audit_events WHERE action = 'auth.login' \
                 AND outcome = 'success' AND details LIKE '%\"device\":\"known\"%'";
    assert_eq!(app.count(known).await, 1);
    assert_eq!(app.call(&owner, "auth/logout", &[]).await.status(), 200);

    // Its own failures still back it off: guessing from a stolen device cookie is no faster.
    for _ in 0..5 {
        assert_eq!(
            app.log_in(&owner, "erin@example.com", "a wrong guess!")
                .await
                .status(),
            401
        );
    }
    assert_eq!(
        app.log_in(&owner, "erin@example.com", PASSWORD)
            .await
            .status(),
        429
    );
    // Shown for another account, the cookie is a stranger's.
    let other = app.new_client();
    app.sign_up(&other, "fay@example.com").await;
    assert_eq!(app.call(&other, "auth/logout", &[]).await.status(), 200);
    assert_eq!(
        app.log_in(&owner, "fay@example.com", PASSWORD)
            .await
            .status(),
        200
    );
    app.stop().await;
}

/// A password change forgets every browser but the one asking: otherwise someone keeping the
/// account's sign-in back-off high would lock its owner out the moment they used it. "Sign out
/// everywhere" (no step-up needed, so a stolen session can use it) forgets none.
#[tokio::test]
async fn a_password_change_keeps_the_asking_browser_trusted_and_signing_out_keeps_them_all() {
    let app = spawn_app().await;
    let owner = app.new_client();
    assert_eq!(app.sign_up(&owner, "gil@example.com").await.status(), 200);
    let phone = app.new_client();
    assert_eq!(
        app.log_in(&phone, "gil@example.com", PASSWORD)
            .await
            .status(),
        200
    );
    assert_eq!(app.count("SELECT COUNT(*) FROM trusted_devices").await, 2);
    assert_eq!(
        app.call(&phone, "auth/logout-everywhere", &[])
            .await
            .status(),
        200
    );
    assert_eq!(app.count("SELECT COUNT(*) FROM trusted_devices").await, 2);

    assert_eq!(
        app.log_in(&owner, "gil@example.com", PASSWORD)
            .await
            .status(),
        200
    );
    let new_password = "a brand new passphrase";
    let changed = app
        .call(
            &owner,
            "auth/password",
            &[
                ("current_password", PASSWORD),
                ("new_password", new_password),
            ],
        )
        .await;
    assert_eq!(changed.status(), 200);
    assert_eq!(app.count("SELECT COUNT(*) FROM trusted_devices").await, 1);

    let stranger = app.new_client();
    for _ in 0..8 {
        let response = app
            .log_in(&stranger, "gil@example.com", "a wrong guess!")
            .await;
        assert!([401, 429].contains(&response.status().as_u16()));
    }
    // The forgotten phone waits like a stranger; the browser that asked does not.
    assert_eq!(
        app.log_in(&phone, "gil@example.com", new_password)
            .await
            .status(),
        429
    );
    assert_eq!(
        app.log_in(&owner, "gil@example.com", new_password)
            .await
            .status(),
        200
    );
    assert_eq!(app.who_am_i(&owner).await["email"], "gil@example.com");
    // With the account's sign-in back-off held high by the stranger, the owner still changes
    // the password from that browser: its own failures count there, not the account's.
    let again = app
        .call(
            &owner,
            "auth/password",
            &[
                ("current_password", new_password),
                ("new_password", "yet another passphrase"),
            ],
        )
        .await;
    assert_eq!(again.status(), 200);
    app.stop().await;
}

/// Four eyes on the admin role: one admin cannot make a second admin account of their own (and
/// use it to lift what another admin set on them), nor remove another admin alone.
#[tokio::test]
async fn granting_or_removing_the_admin_role_takes_a_second_admin() {
    let app = spawn_app().await;
    let first = app.admin_with_key("first@example.com").await;
    let second = app.admin_with_key("second@example.com").await;
    let puppet = app.signed_in_as("puppet@example.com", Role::Trader).await;
    let id_of = |client| {
        let app = &app;
        async move {
            app.who_am_i(client).await["id"]
                .as_str()
                .expect("id")
                .to_owned()
        }
    };
    let puppet_id = id_of(&puppet).await;
    let first_id = id_of(&first).await;
    let set_role = |admin, user: String, role: &'static str| {
        let app = &app;
        async move {
            let response = app
                .call(
                    admin,
                    "admin/set-role",
                    &[("user_id", &user), ("role", role)],
                )
                .await;
            assert_eq!(response.status(), 200);
            response.json::<serde_json::Value>().await.expect("json")
        }
    };
    let is_admin = |email: &'static str| {
        let app = &app;
        async move {
            app.count(&format!(
                "SELECT COUNT(*) FROM users WHERE email = '{email}' AND role = 'admin'"
            ))
            .await
                == 1
        }
    };
    let events = |action: &'static str| {
        let app = &app;
        async move {
            app.count(&format!(
                "SELECT COUNT(*) FROM audit_events WHERE action = '{action}'"
            ))
            .await
        }
    };

    // The first admin's grant is a request; asking again does not confirm it.
    for _ in 0..2 {
        let requested = set_role(&first, puppet_id.clone(), "admin").await;
        assert_eq!(requested["role"], "trader", "{requested}");
        assert_eq!(requested["pending"]["role"], "admin", "{requested}");
        assert_eq!(requested["pending"]["requested_by"], "first@example.com");
        assert!(!is_admin("puppet@example.com").await);
    }
    assert_eq!(events("account.role_change_requested").await, 2);
    assert_eq!(events("account.role_change").await, 0);
    // A request is not a privilege: the puppet still cannot read admin pages.
    assert_eq!(app.call(&puppet, "admin/users", &[]).await.status(), 403);
    // The list shows it to every admin.
    let users: serde_json::Value = app
        .call(&second, "admin/users", &[])
        .await
        .json()
        .await
        .expect("users");
    let listed = users
        .as_array()
        .expect("list")
        .iter()
        .find(|u| u["email"] == "puppet@example.com")
        .expect("listed")
        .clone();
    assert_eq!(listed["pending"]["role"], "admin", "{listed}");

    // A different change by the second admin does not confirm it: it is a request of its own.
    let reviewer = set_role(&second, puppet_id.clone(), "reviewer").await;
    assert_eq!(reviewer["role"], "trader", "{reviewer}");
    assert_eq!(reviewer["pending"]["role"], "reviewer", "{reviewer}");
    assert!(!is_admin("puppet@example.com").await);
    // The second admin making the same change confirms it.
    set_role(&first, puppet_id.clone(), "admin").await;
    let granted = set_role(&second, puppet_id.clone(), "admin").await;
    assert_eq!(granted["role"], "admin", "{granted}");
    assert!(granted["pending"].is_null(), "{granted}");
    assert!(is_admin("puppet@example.com").await);
    assert_eq!(app.count("SELECT COUNT(*) FROM role_requests").await, 0);
    assert_eq!(
        app.count(&format!(
            "SELECT COUNT(*) FROM audit_events WHERE action = 'account.role_change' \
             AND details LIKE '%{first_id}%'"
        ))
        .await,
        1,
        "the grant names the admin who asked for it"
    );

    // Removing an admin takes two as well.
    let removal = set_role(&second, first_id.clone(), "trader").await;
    assert_eq!(removal["role"], "admin", "{removal}");
    assert!(is_admin("first@example.com").await);

    // A request does not outlive its requester's authority: the first admin asks, loses the
    // role (here at the operator's CLI), and the second admin's same change is only a request.
    let other = app.signed_in_as("other@example.com", Role::Trader).await;
    let other_id = id_of(&other).await;
    set_role(&first, other_id.clone(), "admin").await;
    server::cli::set_role(&app.settings, "first@example.com", "trader")
        .await
        .expect("demoted");
    let after = set_role(&second, other_id.clone(), "admin").await;
    assert_eq!(after["role"], "trader", "{after}");
    assert_eq!(after["pending"]["requested_by"], "second@example.com");
    assert!(!is_admin("other@example.com").await);
    app.stop().await;
}
