//! Step-up through the HTTP API: authenticator app (enrolment, replay, the 20-concurrent case,
//! lockout, window edges), recovery codes, security keys with a software authenticator
//! (register, authenticate, replay, counter regression), order-bound approvals, and admin actions
//! that need a security key.

use domain::account::Role;
use serde_json::Value;
use webauthn_authenticator_rs::softtoken::SoftToken;

use crate::helpers::{TestApp, sign_request, soft_key, spawn_app, spawn_app_with};

async fn json(response: reqwest::Response) -> Value {
    let status = response.status();
    let body = response.text().await.expect("body");
    serde_json::from_str(&body).unwrap_or_else(|_| panic!("{status}: {body}"))
}

/// Sets up the authenticator app for `client`; returns the secret's bytes and the recovery codes.
async fn enrol_totp(app: &TestApp, client: &reqwest::Client) -> (Vec<u8>, Vec<String>) {
    let setup = app.call(client, "stepup/totp-setup", &[]).await;
    assert_eq!(setup.status(), 200);
    let setup = json(setup).await;
    let secret = setup["secret"].as_str().expect("secret").to_owned();
    assert!(setup["qr_svg"].as_str().expect("svg").starts_with("<?xml"));
    assert!(
        setup["otpauth_url"]
            .as_str()
            .expect("url")
            .starts_with("otpauth://totp/")
    );
    let bytes = totp_secret_bytes(&secret);
    let code = domain::stepup::code_at(&bytes, app.clock_now());
    let confirm = app
        .call(client, "stepup/totp-confirm", &[("code", &code)])
        .await;
    assert_eq!(confirm.status(), 200);
    let codes: Vec<String> = serde_json::from_value(json(confirm).await).expect("codes");
    (bytes, codes)
}

/// RFC 4648 base32 without padding, as the secret is shown to the user.
fn totp_secret_bytes(text: &str) -> Vec<u8> {
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut bits: u64 = 0;
    let mut count = 0;
    let mut out = Vec::new();
    for c in text.trim_end_matches('=').bytes() {
        let value = alphabet
            .iter()
            .position(|a| *a == c)
            .expect("base32 character") as u64;
        bits = (bits << 5) | value;
        count += 5;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
            bits &= (1 << count) - 1;
        }
    }
    out
}

impl TestApp {
    fn clock_now(&self) -> time::OffsetDateTime {
        use domain::ports::Clock;
        self.clock.now()
    }

    /// Moves the clock to the start of the next TOTP step, so a fresh code exists.
    fn next_totp_step(&self) {
        let now = self.clock_now().unix_timestamp();
        self.clock.advance(time::Duration::seconds(30 - now % 30));
    }

    async fn step_up_with_code(
        &self,
        client: &reqwest::Client,
        secret: &[u8],
    ) -> reqwest::Response {
        let code = domain::stepup::code_at(secret, self.clock_now());
        self.call(
            client,
            "stepup/verify",
            &[("method", "totp"), ("response", &code)],
        )
        .await
    }

    async fn audit_count(&self, action: &str) -> i64 {
        self.count(&format!(
            "SELECT COUNT(*) FROM audit_events WHERE action = '{action}'"
        ))
        .await
    }
}

#[tokio::test]
async fn a_started_app_set_up_takes_five_codes_at_most_and_is_not_confirmed_once_its_window_closed()
{
    let app = spawn_app().await;
    let trader = app.signed_in_as("guesser@example.com", Role::Trader).await;
    let enabled = || async {
        json(app.call(&trader, "stepup/factors", &[]).await).await["totp_enabled"] == true
    };
    let setup = json(app.call(&trader, "stepup/totp-setup", &[]).await).await;
    let secret = totp_secret_bytes(setup["secret"].as_str().expect("secret"));
    let right = domain::stepup::code_at(&secret, app.clock_now());
    let wrong = if right == "000000" {
        "111111"
    } else {
        "000000"
    };
    for _ in 0..5 {
        let guess = app
            .call(&trader, "stepup/totp-confirm", &[("code", wrong)])
            .await;
        assert_eq!(guess.status(), 400);
    }
    // Five codes spent: even the right one is refused, and the set-up must start again.
    let refused = app
        .call(&trader, "stepup/totp-confirm", &[("code", &right)])
        .await;
    assert_eq!(refused.status(), 400);
    let message = refused.text().await.expect("body");
    assert!(message.contains("start again"), "{message}");
    assert!(!enabled().await);
    assert_eq!(app.audit_count("stepup.totp_enrolment_failed").await, 6);

    // Started again (the sign-in's window for a first factor is still open), it works.
    let setup = json(app.call(&trader, "stepup/totp-setup", &[]).await).await;
    let secret = totp_secret_bytes(setup["secret"].as_str().expect("secret"));
    let code = domain::stepup::code_at(&secret, app.clock_now());
    let confirmed = app
        .call(&trader, "stepup/totp-confirm", &[("code", &code)])
        .await;
    assert_eq!(confirmed.status(), 200);
    assert!(enabled().await);

    // A set-up left unconfirmed cannot be confirmed once its window has closed, not even with
    // the right code: a session stolen later finds nothing to guess at.
    let other = app.signed_in_as("late@example.com", Role::Trader).await;
    let setup = json(app.call(&other, "stepup/totp-setup", &[]).await).await;
    let secret = totp_secret_bytes(setup["secret"].as_str().expect("secret"));
    app.clock.advance(time::Duration::minutes(11));
    let code = domain::stepup::code_at(&secret, app.clock_now());
    let late = app
        .call(&other, "stepup/totp-confirm", &[("code", &code)])
        .await;
    assert_ne!(late.status(), 200);
    assert_eq!(
        json(app.call(&other, "stepup/factors", &[]).await).await["totp_enabled"],
        false
    );
    app.stop().await;
}

#[tokio::test]
async fn authenticator_app_enrolment_shows_the_secret_once_and_stores_it_sealed() {
    let app = spawn_app().await;
    let trader = app.signed_in_as("trader@example.com", Role::Trader).await;

    let setup = json(app.call(&trader, "stepup/totp-setup", &[]).await).await;
    let secret = setup["secret"].as_str().expect("secret").to_owned();
    // A wrong first code does not turn the app on.
    let wrong = app
        .call(&trader, "stepup/totp-confirm", &[("code", "000000")])
        .await;
    assert_eq!(wrong.status(), 400);
    let malformed = app
        .call(&trader, "stepup/totp-confirm", &[("code", "12ab56")])
        .await;
    assert_eq!(malformed.status(), 400);
    assert!(
        !json(app.call(&trader, "stepup/factors", &[]).await).await["totp_enabled"]
            .as_bool()
            .expect("bool")
    );

    let code = domain::stepup::code_at(&totp_secret_bytes(&secret), app.clock_now());
    let confirm = app
        .call(&trader, "stepup/totp-confirm", &[("code", &code)])
        .await;
    assert_eq!(confirm.status(), 200);
    let codes: Vec<String> = serde_json::from_value(json(confirm).await).expect("codes");
    assert_eq!(codes.len(), 10);

    let factors = json(app.call(&trader, "stepup/factors", &[]).await).await;
    assert_eq!(factors["totp_enabled"], true);
    assert_eq!(factors["recovery_codes_left"], 10);
    // The secret and the codes are nowhere in the database or the audit log in the clear.
    let dump = app.dump_text_tables().await;
    assert!(!dump.contains(&secret), "TOTP secret stored in the clear");
    for code in &codes {
        assert!(
            !dump.contains(code.as_str()),
            "recovery code stored in the clear"
        );
    }
    // Setting up a second app while one is on is refused.
    assert_eq!(
        app.call(&trader, "stepup/totp-setup", &[]).await.status(),
        400
    );
    app.stop().await;
}

#[tokio::test]
async fn a_totp_code_is_accepted_once_and_a_replay_is_refused_and_audited() {
    let app = spawn_app().await;
    let trader = app.signed_in_as("trader@example.com", Role::Trader).await;
    let (secret, _) = enrol_totp(&app, &trader).await;
    app.next_totp_step();

    let first = app.step_up_with_code(&trader, &secret).await;
    assert_eq!(first.status(), 200);
    let status = json(first).await;
    assert_eq!(status["method"], "totp");
    assert_eq!(status["admin_grade"], false);
    let replay = app.step_up_with_code(&trader, &secret).await;
    assert_eq!(replay.status(), 400);
    assert!(json(replay).await.to_string().contains("already used"));
    assert_eq!(app.audit_count("stepup.totp_replayed").await, 1);
    // The code of the step just before (still inside the drift window) is older: also refused.
    let earlier = domain::stepup::code_at(&secret, app.clock_now() - time::Duration::seconds(30));
    let response = app
        .call(
            &trader,
            "stepup/verify",
            &[("method", "totp"), ("response", &earlier)],
        )
        .await;
    assert_eq!(response.status(), 400);
    app.stop().await;
}

#[tokio::test]
async fn twenty_concurrent_submissions_of_one_code_let_exactly_one_through() {
    let app = spawn_app_with(|s| s.rate_limit.auth_per_minute = 100).await;
    let trader = app.signed_in_as("trader@example.com", Role::Trader).await;
    let (secret, _) = enrol_totp(&app, &trader).await;
    app.next_totp_step();
    let code = domain::stepup::code_at(&secret, app.clock_now());

    // Twenty clients on the same account (e.g. a stolen code tried from many sessions at once).
    let mut clients = Vec::new();
    for _ in 0..20 {
        let client = app.new_client();
        assert_eq!(
            app.log_in(&client, "trader@example.com", crate::helpers::PASSWORD)
                .await
                .status(),
            200
        );
        clients.push(client);
    }
    let form = [("method", "totp"), ("response", code.as_str())];
    let attempts = clients
        .iter()
        .map(|client| app.call(client, "stepup/verify", &form));
    let statuses: Vec<u16> = futures::future::join_all(attempts)
        .await
        .iter()
        .map(|r| r.status().as_u16())
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    // The others are replays (400), or refused outright once the replays locked the app (429).
    assert!(
        statuses.iter().all(|s| [200, 400, 429].contains(s)),
        "{statuses:?}"
    );
    assert_eq!(app.audit_count("stepup.totp_succeeded").await, 1);
    app.stop().await;
}

#[tokio::test]
async fn wrong_codes_back_off_then_lock_until_the_wait_is_over() {
    let app = spawn_app().await;
    let trader = app.signed_in_as("trader@example.com", Role::Trader).await;
    let (secret, _) = enrol_totp(&app, &trader).await;
    app.next_totp_step();
    let good = domain::stepup::code_at(&secret, app.clock_now());
    let wrong = if good == "111111" { "222222" } else { "111111" };

    // Three free failures; the fourth locks at least until the current 30-second step ends.
    for _ in 0..4 {
        let response = app
            .call(
                &trader,
                "stepup/verify",
                &[("method", "totp"), ("response", wrong)],
            )
            .await;
        assert_eq!(response.status(), 400);
    }
    // Locked: even the right code is refused, with a wait, and nothing is spent.
    let locked = app.step_up_with_code(&trader, &secret).await;
    assert_eq!(locked.status(), 429);
    assert!(locked.headers().get("retry-after").is_some());
    assert!(app.audit_count("stepup.totp_locked").await >= 1);

    app.clock.advance(time::Duration::seconds(31));
    let after = app.step_up_with_code(&trader, &secret).await;
    assert_eq!(after.status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn the_privilege_window_closes_after_the_configured_minutes() {
    let app = spawn_app_with(|s| s.step_up.window_minutes = 5).await;
    let trader = app.signed_in_as("trader@example.com", Role::Trader).await;
    let (secret, _) = enrol_totp(&app, &trader).await;
    // Enrolment itself opened a window; let it lapse.
    app.clock.advance(time::Duration::minutes(6));

    // Without a step-up, managing factors is refused and says what is needed.
    let refused = app.call(&trader, "stepup/recovery-codes", &[]).await;
    assert_eq!(refused.status(), 403);
    assert_eq!(
        json(refused).await,
        serde_json::json!({"StepUpRequired": "AnyFactor"})
    );

    app.next_totp_step();
    assert_eq!(app.step_up_with_code(&trader, &secret).await.status(), 200);
    let factors = json(app.call(&trader, "stepup/factors", &[]).await).await;
    let left = factors["window_seconds_left"].as_i64().expect("open");
    assert!((295..=300).contains(&left), "{left}");
    // The test clock also follows real time, so stay a few seconds clear of the edge.
    app.clock.advance(time::Duration::seconds(295));
    assert_eq!(
        app.call(&trader, "stepup/recovery-codes", &[])
            .await
            .status(),
        200
    );
    app.clock.advance(time::Duration::seconds(10));
    assert_eq!(
        app.call(&trader, "stepup/recovery-codes", &[])
            .await
            .status(),
        403
    );
    app.stop().await;
}

#[tokio::test]
async fn a_recovery_code_steps_up_once() {
    let app = spawn_app().await;
    let trader = app.signed_in_as("trader@example.com", Role::Trader).await;
    let (_, codes) = enrol_totp(&app, &trader).await;
    let code = codes[3].to_uppercase();

    let used = app
        .call(
            &trader,
            "stepup/verify",
            &[("method", "recovery-code"), ("response", &code)],
        )
        .await;
    assert_eq!(used.status(), 200);
    assert_eq!(json(used).await["method"], "recovery-code");
    let again = app
        .call(
            &trader,
            "stepup/verify",
            &[("method", "recovery-code"), ("response", &code)],
        )
        .await;
    assert_eq!(again.status(), 400);
    let factors = json(app.call(&trader, "stepup/factors", &[]).await).await;
    assert_eq!(factors["recovery_codes_left"], 9);
    app.stop().await;
}

#[tokio::test]
async fn a_security_key_registers_steps_up_and_its_assertion_cannot_be_replayed() {
    let app = spawn_app().await;
    let trader = app.signed_in_as("trader@example.com", Role::Trader).await;
    let mut key = soft_key();
    let registered = app.register_key(&trader, &mut key, "YubiKey 5C").await;
    assert_eq!(registered.status(), 200);
    let registered = json(registered).await;
    assert_eq!(registered["name"], "YubiKey 5C");
    assert_eq!(app.audit_count("stepup.key_registered").await, 1);

    let assertion = app.key_assertion(&trader, &mut key).await;
    let first = app
        .call(
            &trader,
            "stepup/verify",
            &[("method", "security-key"), ("response", &assertion)],
        )
        .await;
    assert_eq!(first.status(), 200);
    let status = json(first).await;
    assert_eq!(status["method"], "security-key");
    assert_eq!(status["admin_grade"], true);
    // The ceremony state was used up: the same assertion is refused.
    let replay = app
        .call(
            &trader,
            "stepup/verify",
            &[("method", "security-key"), ("response", &assertion)],
        )
        .await;
    assert_eq!(replay.status(), 400);
    // Even against a fresh challenge, an old assertion does not verify.
    let _ = app.call(&trader, "stepup/options", &[]).await;
    let stale = app
        .call(
            &trader,
            "stepup/verify",
            &[("method", "security-key"), ("response", &assertion)],
        )
        .await;
    assert_eq!(stale.status(), 400);
    assert!(app.audit_count("stepup.key_failed").await >= 1);
    app.stop().await;
}

#[tokio::test]
async fn a_key_whose_counter_goes_backwards_is_refused_flagged_and_audited() {
    let app = spawn_app().await;
    let trader = app.signed_in_as("trader@example.com", Role::Trader).await;
    let mut key = soft_key();
    assert_eq!(
        app.register_key(&trader, &mut key, "Cloned key")
            .await
            .status(),
        200
    );
    // A clone: the same key material with the counter as it is now.
    let mut clone = SoftToken::from_cbor(&key.to_cbor().expect("cbor")).expect("clone");
    assert_eq!(app.step_up_with_key(&trader, &mut key).await.status(), 200);
    // A second browser with a privilege window open (which one holds the clone is unknown).
    let elsewhere = app.new_client();
    assert_eq!(
        app.log_in(&elsewhere, "trader@example.com", crate::helpers::PASSWORD)
            .await
            .status(),
        200
    );
    assert_eq!(
        app.step_up_with_key(&elsewhere, &mut key).await.status(),
        200
    );

    let regressed = app.step_up_with_key(&trader, &mut clone).await;
    assert_eq!(regressed.status(), 400);
    assert!(json(regressed).await.to_string().contains("cloned"));
    assert_eq!(app.audit_count("stepup.key_counter_regressed").await, 1);
    // Operators hear of it: an alert, and the security-event metric.
    assert_eq!(
        app.count("SELECT COUNT(*) FROM security_alerts WHERE kind = 'security_key_cloned'")
            .await,
        1
    );
    let metrics = reqwest::get(format!("{}/metrics", app.address))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("body");
    assert!(
        metrics.contains("cryptopulse_security_events_total{kind=\"security_key_cloned\"} 1"),
        "{metrics}"
    );
    // A clone may have opened a privilege window before: every session of the user ends, and
    // the owner signs in again.
    assert!(app.who_am_i(&trader).await.is_null());
    assert!(app.who_am_i(&elsewhere).await.is_null());
    assert_eq!(
        app.log_in(&trader, "trader@example.com", crate::helpers::PASSWORD)
            .await
            .status(),
        200
    );
    let factors = json(app.call(&trader, "stepup/factors", &[]).await).await;
    assert_eq!(factors["keys"][0]["flagged"], true);
    // The flagged key is no longer offered or accepted, even by the genuine authenticator.
    let options = json(app.call(&trader, "stepup/options", &[]).await).await;
    assert!(options["webauthn"].is_null());
    app.stop().await;
}

/// webauthn-rs checks the counter against the copy taken when the challenge was issued. A clone
/// answering a challenge fetched before the owner's latest use counts above that copy, so it is
/// checked against the key as stored when it answers.
#[tokio::test]
async fn a_clone_answering_a_challenge_issued_before_the_owners_last_use_is_caught() {
    let app = spawn_app().await;
    let trader = app.signed_in_as("trader@example.com", Role::Trader).await;
    let mut key = soft_key();
    assert_eq!(
        app.register_key(&trader, &mut key, "Cloned key")
            .await
            .status(),
        200
    );
    let mut clone = SoftToken::from_cbor(&key.to_cbor().expect("cbor")).expect("clone");
    let thief = app.new_client();
    assert_eq!(
        app.log_in(&thief, "trader@example.com", crate::helpers::PASSWORD)
            .await
            .status(),
        200
    );
    let options = json(app.call(&thief, "stepup/options", &[]).await).await;
    let challenge = options["webauthn"].as_str().expect("webauthn options");
    // The owner uses the key meanwhile; the clone's next count is no higher than theirs.
    assert_eq!(app.step_up_with_key(&trader, &mut key).await.status(), 200);
    // What a key-grade window (maybe the clone's, earlier) can leave running after it.
    let bot = [("name", "bot"), ("scopes[0]", "proposals:write")];
    assert_eq!(
        app.call(&trader, "agent/token-create", &bot).await.status(),
        200
    );
    assert_eq!(
        app.call(&trader, "agent/autonomous", &[("on", "true")])
            .await
            .status(),
        200
    );
    let assertion = sign_request(&mut clone, challenge);
    let answered = app
        .call(
            &thief,
            "stepup/verify",
            &[("method", "security-key"), ("response", &assertion)],
        )
        .await;
    assert_eq!(answered.status(), 400);
    assert!(json(answered).await.to_string().contains("cloned"));
    assert_eq!(app.audit_count("stepup.key_counter_regressed").await, 1);
    assert!(app.who_am_i(&thief).await.is_null());
    assert_eq!(
        app.count("SELECT COUNT(*) FROM security_keys WHERE flagged_at IS NOT NULL")
            .await,
        1
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM agent_tokens WHERE revoked_at IS NULL")
            .await,
        0,
        "the account's agent tokens are revoked with the key"
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM user_trading WHERE autonomous")
            .await,
        0,
        "and autonomous agent orders turned off"
    );
    app.stop().await;
}

#[tokio::test]
async fn adding_a_second_factor_or_removing_one_needs_a_step_up() {
    let app = spawn_app().await;
    let trader = app.signed_in_as("trader@example.com", Role::Trader).await;
    let mut first = soft_key();
    assert_eq!(
        app.register_key(&trader, &mut first, "First")
            .await
            .status(),
        200
    );
    let key_id = json(app.call(&trader, "stepup/factors", &[]).await).await["keys"][0]["id"]
        .as_str()
        .expect("id")
        .to_owned();

    // A session without a step-up cannot add another key, the app, or remove the key.
    assert_eq!(
        app.call(&trader, "stepup/key-options", &[]).await.status(),
        403
    );
    assert_eq!(
        app.call(&trader, "stepup/totp-setup", &[]).await.status(),
        403
    );
    assert_eq!(
        app.call(&trader, "stepup/key-remove", &[("id", &key_id)])
            .await
            .status(),
        403
    );

    assert_eq!(
        app.step_up_with_key(&trader, &mut first).await.status(),
        200
    );
    let mut second = soft_key();
    assert_eq!(
        app.register_key(&trader, &mut second, "Second")
            .await
            .status(),
        200
    );

    // Another user's key id, an unknown id and garbage are all "not found".
    let mallory = app.signed_in_as("mallory@example.com", Role::Trader).await;
    let mut mallorys = soft_key();
    assert_eq!(
        app.register_key(&mallory, &mut mallorys, "M")
            .await
            .status(),
        200
    );
    assert_eq!(
        app.step_up_with_key(&mallory, &mut mallorys).await.status(),
        200
    );
    for id in [
        key_id.as_str(),
        &uuid::Uuid::new_v4().to_string(),
        "1 OR 1=1",
    ] {
        assert_eq!(
            app.call(&mallory, "stepup/key-remove", &[("id", id)])
                .await
                .status(),
            404
        );
    }
    assert_eq!(
        app.call(&trader, "stepup/key-remove", &[("id", &key_id)])
            .await
            .status(),
        200
    );
    let factors = json(app.call(&trader, "stepup/factors", &[]).await).await;
    assert_eq!(factors["keys"].as_array().expect("keys").len(), 1);
    assert_eq!(app.audit_count("stepup.key_removed").await, 1);
    app.stop().await;
}

/// A phished authenticator code (or a recovery code) must not become lasting power over an
/// account its owner protects with a security key: no new recovery codes (each approves an
/// order and opens a window), no turning the app off to enrol the thief's, no agent token or
/// autonomous orders.
#[tokio::test]
async fn with_a_security_key_on_the_account_a_totp_or_recovery_step_up_cannot_change_its_factors() {
    let app = spawn_app().await;
    let trader = app.signed_in_as("trader@example.com", Role::Trader).await;
    let mut key = app.stepped_up_with_new_key(&trader).await;
    // The app is added under the key's window.
    let (secret, codes) = enrol_totp(&app, &trader).await;

    for step_up in ["totp", "recovery-code"] {
        app.next_totp_step();
        let opened = match step_up {
            "totp" => app.step_up_with_code(&trader, &secret).await,
            _ => {
                app.call(
                    &trader,
                    "stepup/verify",
                    &[("method", "recovery-code"), ("response", &codes[0])],
                )
                .await
            }
        };
        assert_eq!(opened.status(), 200, "{step_up}");
        // Nor a bot acting for the owner after the window: an agent token, autonomous orders.
        let token = [("name", "thief"), ("scopes[0]", "proposals:write")];
        let autonomous = [("on", "true")];
        for (endpoint, form) in [
            ("stepup/recovery-codes", &[][..]),
            ("stepup/totp-remove", &[][..]),
            ("agent/token-create", &token[..]),
            ("agent/autonomous", &autonomous[..]),
        ] {
            let refused = app.call(&trader, endpoint, form).await;
            assert_eq!(
                refused.status(),
                403,
                "{endpoint} after a {step_up} step-up"
            );
            assert_eq!(
                json(refused).await,
                serde_json::json!({"StepUpRequired": "SecurityKey"}),
                "{endpoint} after a {step_up} step-up"
            );
        }
    }
    // Nothing changed: the app is on and the codes are the enrolment's, less the one used.
    let factors = json(app.call(&trader, "stepup/factors", &[]).await).await;
    assert_eq!(factors["totp_enabled"], true, "{factors}");
    assert_eq!(factors["recovery_codes_left"], 9, "{factors}");
    assert_eq!(app.audit_count("stepup.recovery_codes_replaced").await, 0);
    assert_eq!(app.audit_count("stepup.totp_removed").await, 0);
    assert_eq!(app.count("SELECT COUNT(*) FROM agent_tokens").await, 0);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM user_trading WHERE autonomous")
            .await,
        0
    );

    // With the key, both are the owner's to do.
    assert_eq!(app.step_up_with_key(&trader, &mut key).await.status(), 200);
    let fresh = app.call(&trader, "stepup/recovery-codes", &[]).await;
    assert_eq!(fresh.status(), 200);
    let fresh: Vec<String> = serde_json::from_value(json(fresh).await).expect("codes");
    assert_eq!(fresh.len(), 10);
    assert_eq!(
        app.call(&trader, "stepup/totp-remove", &[]).await.status(),
        200
    );

    // Without a key, the app's own step-up still manages the factors.
    let other = app.signed_in_as("other@example.com", Role::Trader).await;
    let (other_secret, _) = enrol_totp(&app, &other).await;
    app.clock.advance(time::Duration::minutes(11));
    app.next_totp_step();
    assert_eq!(
        app.step_up_with_code(&other, &other_secret).await.status(),
        200
    );
    assert_eq!(
        app.call(&other, "stepup/recovery-codes", &[])
            .await
            .status(),
        200
    );
    app.stop().await;
}

#[tokio::test]
async fn a_first_factor_needs_a_recent_sign_in() {
    let app = spawn_app().await;
    let trader = app.signed_in_as("trader@example.com", Role::Trader).await;
    app.clock.advance(time::Duration::minutes(11));
    let refused = app.call(&trader, "stepup/key-options", &[]).await;
    assert_eq!(refused.status(), 403);
    assert_eq!(
        json(refused).await,
        serde_json::json!({"StepUpRequired": "RecentSignIn"})
    );
    app.stop().await;
}

#[tokio::test]
async fn admin_actions_need_a_security_key_step_up_and_totp_is_not_enough() {
    let app = spawn_app().await;
    let admin = app.signed_in_as("admin@example.com", Role::Admin).await;
    app.sign_up(&app.new_client(), "erin@example.com").await;
    let users = json(app.call(&admin, "admin/users", &[]).await).await;
    let erin = users
        .as_array()
        .expect("users")
        .iter()
        .find(|u| u["email"] == "erin@example.com")
        .expect("erin")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let set_role = |client: &reqwest::Client| {
        let erin = erin.clone();
        let client = client.clone();
        let app = &app;
        async move {
            app.call(
                &client,
                "admin/set-role",
                &[("user_id", &erin), ("role", "reviewer")],
            )
            .await
        }
    };

    let refused = set_role(&admin).await;
    assert_eq!(refused.status(), 403);
    assert_eq!(
        json(refused).await,
        serde_json::json!({"StepUpRequired": "SecurityKey"})
    );

    // An authenticator app step-up opens the window, but not for admin actions.
    let (secret, _) = enrol_totp(&app, &admin).await;
    app.next_totp_step();
    assert_eq!(app.step_up_with_code(&admin, &secret).await.status(), 200);
    for (endpoint, form) in [
        (
            "admin/set-role",
            vec![("user_id", erin.as_str()), ("role", "reviewer")],
        ),
        ("admin/kms-rotate", vec![]),
        ("admin/rewrap-all", vec![]),
        (
            "admin/canary-plant",
            vec![
                ("owner_email", "erin@example.com"),
                ("label", "Decoy"),
                ("exchange", "paper"),
                ("environment", "paper"),
            ],
        ),
    ] {
        let response = app.call(&admin, endpoint, &form).await;
        assert_eq!(response.status(), 403, "{endpoint}");
    }
    assert_eq!(
        app.count("SELECT COUNT(*) FROM users WHERE role = 'reviewer'")
            .await,
        0
    );

    let mut key = soft_key();
    assert_eq!(
        app.register_key(&admin, &mut key, "Admin key")
            .await
            .status(),
        200
    );
    assert_eq!(app.step_up_with_key(&admin, &mut key).await.status(), 200);
    assert_eq!(set_role(&admin).await.status(), 200);
    assert_eq!(
        app.count(
            "SELECT COUNT(*) FROM audit_events WHERE action = 'account.role_change_requested'"
        )
        .await,
        1,
        "asked for (a second admin grants it)"
    );

    // The window closes; the next admin action needs the key again.
    app.clock.advance(time::Duration::minutes(11));
    assert_eq!(set_role(&admin).await.status(), 403);
    app.stop().await;
}

#[tokio::test]
async fn signing_in_again_does_not_keep_an_earlier_step_up() {
    let app = spawn_app().await;
    let admin = app.admin_with_key("admin@example.com").await;
    assert_eq!(
        app.call(&admin, "admin/kms-rotate", &[]).await.status(),
        200
    );
    assert_eq!(
        app.log_in(&admin, "admin@example.com", crate::helpers::PASSWORD)
            .await
            .status(),
        200
    );
    assert_eq!(
        app.call(&admin, "admin/kms-rotate", &[]).await.status(),
        403
    );
    app.stop().await;
}

const ORDER: [(&str, &str); 6] = [
    ("venue", "paper"),
    ("order_type", "limit"),
    ("symbol", "BTCUSDT"),
    ("side", "buy"),
    ("quantity", "0.5"),
    ("price", "65000"),
];

fn order_with(field: &str, value: &'static str) -> Vec<(&'static str, &'static str)> {
    ORDER
        .iter()
        .map(|(k, v)| if *k == field { (*k, value) } else { (*k, *v) })
        .collect()
}

async fn order_options(app: &TestApp, client: &reqwest::Client, order: &[(&str, &str)]) -> Value {
    let response = app.call(client, "stepup/order-options", order).await;
    assert_eq!(response.status(), 200);
    json(response).await
}

async fn approve(
    app: &TestApp,
    client: &reqwest::Client,
    order: &[(&str, &str)],
    method: &str,
    response: &str,
) -> reqwest::Response {
    let mut form: Vec<(&str, &str)> = order.to_vec();
    form.push(("method", method));
    form.push(("response", response));
    app.call(client, "stepup/order-approve", &form).await
}

fn intent_for(
    user: uuid::Uuid,
    order: &[(&str, &str)],
    nonce: &str,
) -> domain::stepup::OrderIntent {
    let field = |name: &str| order.iter().find(|(k, _)| *k == name).expect("field").1;
    domain::stepup::OrderIntent {
        account: domain::account::UserId(user),
        venue: domain::trading::Venue::PAPER,
        order_type: domain::keys::OrderType::parse(field("order_type")).expect("type"),
        terms: domain::stepup::OrderTerms::parse(
            field("symbol"),
            field("side"),
            field("quantity"),
            field("price"),
        )
        .expect("terms"),
        nonce: nonce.to_owned(),
    }
}

#[tokio::test]
async fn an_order_approval_covers_exactly_one_order_once() {
    let app = spawn_app().await;
    let trader = app.signed_in_as("trader@example.com", Role::Trader).await;
    let user = uuid::Uuid::parse_str(app.who_am_i(&trader).await["id"].as_str().expect("id"))
        .expect("uuid");
    let mut key = soft_key();
    assert_eq!(
        app.register_key(&trader, &mut key, "Key").await.status(),
        200
    );

    // 0.5 × 65000 = 32500 is above the default threshold of 10000.
    let challenge = order_options(&app, &trader, &ORDER).await;
    assert_eq!(challenge["needs_step_up"], true);
    assert_eq!(challenge["notional"], "32500");
    let request = challenge["webauthn"].as_str().expect("webauthn");
    // The challenge the key signs is the order's digest.
    let options: Value = serde_json::from_str(request).expect("json");
    let digest = challenge["digest"].as_str().expect("digest");
    assert_eq!(
        options["publicKey"]["challenge"],
        base64_url(&hex::decode(digest).expect("hex"))
    );
    let assertion = sign_request(&mut key, request);

    // A changed quantity does not match the signed order, and uses the challenge up.
    let changed = approve(
        &app,
        &trader,
        &order_with("quantity", "5"),
        "security-key",
        &assertion,
    )
    .await;
    assert_eq!(changed.status(), 400);
    assert!(json(changed).await.to_string().contains("does not match"));
    let after_mismatch = approve(&app, &trader, &ORDER, "security-key", &assertion).await;
    assert_eq!(after_mismatch.status(), 400, "the challenge is single-use");

    // A fresh challenge for the same terms, answered properly.
    let challenge = order_options(&app, &trader, &ORDER).await;
    let nonce = challenge["nonce"].as_str().expect("nonce").to_owned();
    let assertion = sign_request(&mut key, challenge["webauthn"].as_str().expect("webauthn"));
    let approved = approve(&app, &trader, &ORDER, "security-key", &assertion).await;
    assert_eq!(approved.status(), 200);
    assert_eq!(json(approved).await["digest"], challenge["digest"]);
    // Replaying the approval's assertion gets nothing.
    assert_eq!(
        approve(&app, &trader, &ORDER, "security-key", &assertion)
            .await
            .status(),
        400
    );

    // Placement spends the approval: exactly this order, once.
    let stepup = &app.backend.services.stepup;
    let meta = domain::audit::RequestMeta::default();
    let other_quantity = intent_for(user, &order_with("quantity", "0.6"), &nonce);
    assert!(
        stepup
            .consume_order_approval(&other_quantity, meta.clone())
            .await
            .is_err()
    );
    let other_nonce = intent_for(user, &ORDER, &"ab".repeat(16));
    assert!(
        stepup
            .consume_order_approval(&other_nonce, meta.clone())
            .await
            .is_err()
    );
    let exact = intent_for(user, &ORDER, &nonce);
    stepup
        .consume_order_approval(&exact, meta.clone())
        .await
        .expect("the approved order is placed");
    assert!(
        stepup
            .consume_order_approval(&exact, meta.clone())
            .await
            .is_err()
    );
    assert_eq!(app.audit_count("stepup.order_approved").await, 1);
    assert_eq!(app.audit_count("stepup.order_approval_used").await, 1);
    assert!(app.audit_count("stepup.order_mismatch").await >= 1);
    app.stop().await;
}

#[tokio::test]
async fn an_assertion_for_one_order_cannot_approve_another() {
    let app = spawn_app().await;
    let trader = app.signed_in_as("trader@example.com", Role::Trader).await;
    let mut key = soft_key();
    assert_eq!(
        app.register_key(&trader, &mut key, "Key").await.status(),
        200
    );

    let first = order_options(&app, &trader, &ORDER).await;
    let signed_for_first = sign_request(&mut key, first["webauthn"].as_str().expect("webauthn"));
    // A second order replaces the pending challenge; the first order's signature does not
    // answer it, whichever terms are sent with it.
    let other = order_with("symbol", "ETHUSDT");
    let _second = order_options(&app, &trader, &other).await;
    assert_eq!(
        approve(&app, &trader, &other, "security-key", &signed_for_first)
            .await
            .status(),
        400
    );
    let _second = order_options(&app, &trader, &other).await;
    assert_eq!(
        approve(&app, &trader, &ORDER, "security-key", &signed_for_first)
            .await
            .status(),
        400
    );
    assert_eq!(app.audit_count("stepup.order_approved").await, 0);
    app.stop().await;
}

#[tokio::test]
async fn an_order_can_be_approved_with_a_totp_code_but_not_twice_with_it() {
    let app = spawn_app().await;
    let trader = app.signed_in_as("trader@example.com", Role::Trader).await;
    let (secret, _) = enrol_totp(&app, &trader).await;
    app.next_totp_step();
    let code = domain::stepup::code_at(&secret, app.clock_now());

    let challenge = order_options(&app, &trader, &ORDER).await;
    assert!(challenge["webauthn"].is_null());
    assert_eq!(challenge["totp"], true);
    assert_eq!(
        approve(&app, &trader, &ORDER, "totp", &code).await.status(),
        200
    );
    let _ = order_options(&app, &trader, &ORDER).await;
    assert_eq!(
        approve(&app, &trader, &ORDER, "totp", &code).await.status(),
        400
    );
    // Below the threshold, the options say no step-up is needed.
    let small = order_options(&app, &trader, &order_with("quantity", "0.1")).await;
    assert_eq!(small["needs_step_up"], false);
    // Bad order input is refused with a clear error.
    for (field, value) in [
        ("quantity", "-1"),
        ("price", "abc"),
        ("side", "hold"),
        ("symbol", "B"),
    ] {
        let response = app
            .call(&trader, "stepup/order-options", &order_with(field, value))
            .await;
        assert_eq!(response.status(), 400, "{field}={value}");
    }
    app.stop().await;
}

fn base64_url(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

impl TestApp {
    /// Every text column of the tables that hold factors and the audit log, concatenated.
    async fn dump_text_tables(&self) -> String {
        use sea_orm::{ConnectionTrait, Statement};
        let backend = self.db().get_database_backend();
        let mut out = String::new();
        for table in [
            "totp_factors",
            "recovery_codes",
            "security_keys",
            "audit_events",
        ] {
            let rows = self
                .db()
                .query_all_raw(Statement::from_string(
                    backend,
                    format!("SELECT * FROM {table}"),
                ))
                .await
                .expect("query");
            for row in rows {
                for i in 0..40 {
                    match row.try_get_by_index::<Option<String>>(i) {
                        Ok(Some(text)) => out.push_str(&text),
                        Ok(None) => {}
                        Err(_) => continue,
                    }
                    out.push('\n');
                }
            }
        }
        out
    }
}

#[tokio::test]
async fn an_operator_resets_the_factors_of_someone_who_lost_them_all() {
    let app = spawn_app().await;
    let admin = app.admin_with_key("admin@example.com").await;
    let _ = enrol_totp(&app, &admin).await;
    assert!(
        server::cli::reset_factors(&app.settings, "nobody@example.com")
            .await
            .is_err()
    );
    server::cli::reset_factors(&app.settings, "admin@example.com")
        .await
        .expect("reset");
    // The session opened with the lost key (maybe a thief's) ends with it: its key-grade window
    // no longer opens admin pages, and it cannot add a first factor of its own.
    assert_eq!(
        json(app.call(&admin, "auth/me", &[]).await).await,
        Value::Null
    );
    assert_eq!(app.call(&admin, "admin/canaries", &[]).await.status(), 401);
    assert_eq!(
        app.count(
            "SELECT COUNT(*) FROM audit_events WHERE action = 'auth.logout_everywhere' AND actor_kind = 'system'"
        )
        .await,
        2,
        "sessions end before the factors go and again after"
    );
    assert_eq!(
        app.count(
            "SELECT COUNT(*) FROM audit_events WHERE action = 'stepup.key_removed' AND actor_kind = 'system'"
        )
        .await,
        1
    );
    // Signing in again, the admin can register a new key as a first factor.
    let fresh = app.new_client();
    assert_eq!(
        app.log_in(&fresh, "admin@example.com", crate::helpers::PASSWORD)
            .await
            .status(),
        200
    );
    let factors = json(app.call(&fresh, "stepup/factors", &[]).await).await;
    assert_eq!(factors["keys"].as_array().expect("keys").len(), 0);
    assert_eq!(factors["totp_enabled"], false);
    assert_eq!(factors["recovery_codes_left"], 0);
    let mut key = soft_key();
    assert_eq!(
        app.register_key(&fresh, &mut key, "Replacement")
            .await
            .status(),
        200
    );
    app.stop().await;
}
