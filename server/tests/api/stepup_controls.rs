//! Issue 11 (controls hold): stepup_controls. Security keys are managed with a security key,
//! TOTP attempts are reserved before they are checked, the key webauthn-rs verified is the one
//! that counts, ceremonies expire and end at sign-in, and one-time secrets stay out of `Debug`.

use domain::account::Role;
use domain::ports::Clock;
use serde_json::Value;
use webauthn_authenticator_rs::WebauthnAuthenticator;
use webauthn_authenticator_rs::softtoken::SoftToken;

#[allow(unused_imports)]
use crate::helpers::*;

async fn json(response: reqwest::Response) -> Value {
    let status = response.status();
    let body = response.text().await.expect("body");
    serde_json::from_str(&body).unwrap_or_else(|_| panic!("{status}: {body}"))
}

async fn audits(app: &TestApp, action: &str) -> i64 {
    app.count(&format!(
        "SELECT COUNT(*) FROM audit_events WHERE action = '{action}'"
    ))
    .await
}

/// RFC 4648 base32 without padding, as the secret is shown to the user.
fn base32_bytes(text: &str) -> Vec<u8> {
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let (mut bits, mut count, mut out) = (0u64, 0u32, Vec::new());
    for c in text.trim_end_matches('=').bytes() {
        let value = alphabet.iter().position(|a| *a == c).expect("base32") as u64;
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

/// Sets up the authenticator app (which also opens a TOTP-grade window); returns the secret
/// and the recovery codes.
async fn enrol_totp(app: &TestApp, client: &reqwest::Client) -> (Vec<u8>, Vec<String>) {
    let setup = app.call(client, "stepup/totp-setup", &[]).await;
    assert_eq!(setup.status(), 200);
    let secret = base32_bytes(json(setup).await["secret"].as_str().expect("secret"));
    let code = domain::stepup::code_at(&secret, app.clock.now());
    let confirm = app
        .call(client, "stepup/totp-confirm", &[("code", &code)])
        .await;
    assert_eq!(confirm.status(), 200);
    let codes = serde_json::from_value(json(confirm).await).expect("codes");
    (secret, codes)
}

/// Moves the clock to the start of the next 30-second step, so a fresh code exists.
fn next_step(app: &TestApp) {
    let now = app.clock.now().unix_timestamp();
    app.clock.advance(time::Duration::seconds(30 - now % 30));
}

async fn step_up_totp(app: &TestApp, client: &reqwest::Client, code: &str) -> reqwest::Response {
    app.call(
        client,
        "stepup/verify",
        &[("method", "totp"), ("response", code)],
    )
    .await
}

fn wrong_code(secret: &[u8], app: &TestApp) -> &'static str {
    let now = app.clock.now();
    let near: Vec<String> = [-30, 0, 30]
        .iter()
        .map(|s| domain::stepup::code_at(secret, now + time::Duration::seconds(*s)))
        .collect();
    ["111111", "222222", "333333", "444444"]
        .into_iter()
        .find(|c| !near.iter().any(|n| n == c))
        .expect("a wrong code")
}

async fn key_id(app: &TestApp, client: &reqwest::Client, name: &str) -> String {
    let factors = json(app.call(client, "stepup/factors", &[]).await).await;
    factors["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .find(|k| k["name"] == name)
        .expect("key")["id"]
        .as_str()
        .expect("id")
        .to_owned()
}

// --- 9. Security keys are managed with a security key ------------------------------------

#[tokio::test]
async fn a_totp_or_recovery_code_step_up_can_neither_add_nor_remove_a_security_key_but_a_key_step_up_can()
 {
    let app = spawn_app().await;
    let trader = app.signed_in_as("trader@example.com", Role::Trader).await;
    let mut first = soft_key();
    assert_eq!(
        app.register_key(&trader, &mut first, "First")
            .await
            .status(),
        200
    );
    // Setting up the app needs a step-up now that there is a key; confirming it opens a
    // TOTP-grade window.
    assert_eq!(
        app.step_up_with_key(&trader, &mut first).await.status(),
        200
    );
    let (secret, codes) = enrol_totp(&app, &trader).await;
    let first_id = key_id(&app, &trader, "First").await;

    let refused_before = audits(&app, "stepup.key_change_refused").await;
    next_step(&app);
    let code = domain::stepup::code_at(&secret, app.clock.now());
    let totp = json(step_up_totp(&app, &trader, &code).await).await;
    assert_eq!(totp["method"], "totp");
    let mut second = soft_key();
    for attempt in ["totp", "recovery-code"] {
        if attempt == "recovery-code" {
            let used = app
                .call(
                    &trader,
                    "stepup/verify",
                    &[("method", "recovery-code"), ("response", &codes[0])],
                )
                .await;
            assert_eq!(used.status(), 200);
        }
        let add = app.register_key(&trader, &mut second, "Thief's key").await;
        assert_eq!(add.status(), 403, "{attempt}");
        assert_eq!(
            json(add).await,
            serde_json::json!({"StepUpRequired": "SecurityKey"})
        );
        let remove = app
            .call(&trader, "stepup/key-remove", &[("id", &first_id)])
            .await;
        assert_eq!(remove.status(), 403, "{attempt}");
        assert_eq!(
            json(remove).await,
            serde_json::json!({"StepUpRequired": "SecurityKey"})
        );
    }
    // Nothing changed, and each refusal is on the record.
    assert_eq!(app.count("SELECT COUNT(*) FROM security_keys").await, 1);
    assert_eq!(audits(&app, "stepup.key_registered").await, 1);
    assert_eq!(audits(&app, "stepup.key_removed").await, 0);
    assert_eq!(
        audits(&app, "stepup.key_change_refused").await - refused_before,
        4
    );

    // With a key step-up, both go through.
    assert_eq!(
        app.step_up_with_key(&trader, &mut first).await.status(),
        200
    );
    assert_eq!(
        app.register_key(&trader, &mut second, "Second")
            .await
            .status(),
        200
    );
    let second_id = key_id(&app, &trader, "Second").await;
    assert_eq!(
        app.call(&trader, "stepup/key-remove", &[("id", &second_id)])
            .await
            .status(),
        200
    );
    assert_eq!(app.count("SELECT COUNT(*) FROM security_keys").await, 1);
    app.stop().await;
}

#[tokio::test]
async fn an_admins_first_key_needs_a_fresh_sign_in_even_after_a_totp_step_up() {
    first_key_needs_a_fresh_sign_in_even_after_a_totp_step_up(Role::Admin).await;
}

/// A trader's first key opens admin actions the day they are promoted, so a stolen session
/// with a phished app code must not plant one either.
#[tokio::test]
async fn a_traders_first_key_needs_a_fresh_sign_in_too_as_a_promotion_would_make_it_admin_grade() {
    first_key_needs_a_fresh_sign_in_even_after_a_totp_step_up(Role::Trader).await;
}

async fn first_key_needs_a_fresh_sign_in_even_after_a_totp_step_up(role: Role) {
    let app = spawn_app().await;
    let admin = app.signed_in_as("admin@example.com", role).await;
    let (secret, _) = enrol_totp(&app, &admin).await;
    // The sign-in is old now; a TOTP step-up alone must not bootstrap an admin-grade key.
    app.clock.advance(time::Duration::minutes(11));
    next_step(&app);
    let code = domain::stepup::code_at(&secret, app.clock.now());
    assert_eq!(step_up_totp(&app, &admin, &code).await.status(), 200);
    let mut key = soft_key();
    let refused = app.register_key(&admin, &mut key, "Admin key").await;
    assert_eq!(refused.status(), 403);
    assert_eq!(
        json(refused).await,
        serde_json::json!({"StepUpRequired": "RecentSignIn"})
    );
    assert_eq!(app.count("SELECT COUNT(*) FROM security_keys").await, 0);
    assert_eq!(audits(&app, "stepup.key_change_refused").await, 1);

    // Signed in again (which ends the earlier window) and stepped up again: allowed.
    assert_eq!(
        app.log_in(&admin, "admin@example.com", PASSWORD)
            .await
            .status(),
        200
    );
    next_step(&app);
    let code = domain::stepup::code_at(&secret, app.clock.now());
    assert_eq!(step_up_totp(&app, &admin, &code).await.status(), 200);
    assert_eq!(
        app.register_key(&admin, &mut key, "Admin key")
            .await
            .status(),
        200
    );
    app.stop().await;
}

/// Most synced passkeys always report a signature counter of 0, so the counter check passes
/// however often one answer is sent: several requests carrying it at once, each holding the
/// session's challenge, must still open one window between them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_answer_of_a_key_whose_counter_stays_zero_opens_one_window_even_sent_eight_times_at_once()
 {
    let app = spawn_app().await;
    let trader = app.signed_in_as("trader@example.com", Role::Trader).await;
    let mut key = soft_key();
    assert_eq!(
        app.register_key(&trader, &mut key, "Synced passkey")
            .await
            .status(),
        200
    );
    // The same key, about to count past u32::MAX: its next assertion carries counter 0. In its
    // CBOR form the counter is the text key "counter" then the unsigned 0 (one byte); u32::MAX
    // is 0x1a and four bytes.
    let cbor = key.to_cbor().expect("cbor");
    let field = b"\x67counter\x00";
    let at = cbor
        .windows(field.len())
        .position(|w| w == field)
        .expect("a counter of 0 after registration");
    let mut patched = cbor[..at + field.len() - 1].to_vec();
    patched.extend_from_slice(&[0x1a, 0xff, 0xff, 0xff, 0xff]);
    patched.extend_from_slice(&cbor[at + field.len()..]);
    let mut key = SoftToken::from_cbor(&patched).expect("soft key");
    let assertion = app.key_assertion(&trader, &mut key).await;
    let form = [("method", "security-key"), ("response", assertion.as_str())];
    let answers = (0..8).map(|_| app.call(&trader, "stepup/verify", &form));
    let statuses: Vec<u16> = futures::future::join_all(answers)
        .await
        .iter()
        .map(|r| r.status().as_u16())
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(audits(&app, "stepup.key_succeeded").await, 1);
    // The others were refused: as that answer's repeat (400, its reason on record) when they
    // read the key after the first was saved, or for the session the step-up moved to a new
    // id (401) when they arrived after that.
    assert!(
        statuses.iter().all(|s| [200, 400, 401].contains(s)),
        "{statuses:?}"
    );
    let repeats = app
        .count(
            "SELECT COUNT(*) FROM audit_events WHERE action = 'stepup.key_failed' \
             AND details LIKE '%challenge was already answered%'",
        )
        .await;
    assert!(
        repeats as usize <= statuses.iter().filter(|s| **s == 400).count(),
        "{repeats} {statuses:?}"
    );
    app.stop().await;
}

// --- 10. TOTP attempts are reserved before the code is checked -------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_hundred_concurrent_wrong_codes_get_at_most_four_checked_before_the_lock() {
    let app = spawn_app_with(|s| {
        s.rate_limit.auth_per_minute = 10_000;
        s.rate_limit.requests_per_minute = 10_000;
    })
    .await;
    let trader = app.signed_in_as("trader@example.com", Role::Trader).await;
    let (secret, _) = enrol_totp(&app, &trader).await;
    next_step(&app);
    let wrong = wrong_code(&secret, &app);

    // One session, 300 guesses at once.
    let form = [("method", "totp"), ("response", wrong)];
    let guesses = (0..300).map(|_| app.call(&trader, "stepup/verify", &form));
    let statuses: Vec<u16> = futures::future::join_all(guesses)
        .await
        .iter()
        .map(|r| r.status().as_u16())
        .collect();
    assert!(
        statuses.iter().all(|s| [400, 429].contains(s)),
        "{statuses:?}"
    );
    // Three free failures, and the fourth code checked sets the lock: no more are checked.
    let checked = audits(&app, "stepup.totp_failed").await;
    assert!((1..=4).contains(&checked), "{checked} codes were checked");
    assert_eq!(
        statuses.iter().filter(|s| **s == 400).count() as i64,
        checked
    );
    assert_eq!(
        audits(&app, "stepup.totp_locked").await,
        300 - checked,
        "every other guess was refused, unchecked"
    );
    // Even the right code waits for the lock to end.
    let code = domain::stepup::code_at(&secret, app.clock.now());
    assert_eq!(step_up_totp(&app, &trader, &code).await.status(), 429);
    assert_eq!(audits(&app, "stepup.totp_succeeded").await, 0);
    app.stop().await;
}

#[tokio::test]
async fn a_correct_code_does_not_wipe_earlier_wrong_codes_only_time_does() {
    let app = spawn_app().await;
    let trader = app.signed_in_as("trader@example.com", Role::Trader).await;
    let (secret, _) = enrol_totp(&app, &trader).await;
    next_step(&app);
    let wrong = wrong_code(&secret, &app);
    for _ in 0..3 {
        assert_eq!(step_up_totp(&app, &trader, wrong).await.status(), 400);
    }
    // The owner's correct code works (its own attempt is taken back)...
    let code = domain::stepup::code_at(&secret, app.clock.now());
    assert_eq!(step_up_totp(&app, &trader, &code).await.status(), 200);
    // ...but hands out no fresh free guesses: the next wrong code is the fourth, and locks.
    next_step(&app);
    let wrong = wrong_code(&secret, &app);
    assert_eq!(step_up_totp(&app, &trader, wrong).await.status(), 400);
    let code = domain::stepup::code_at(&secret, app.clock.now());
    assert_eq!(step_up_totp(&app, &trader, &code).await.status(), 429);

    // A day after the first of them, the wrong codes are forgotten (the session has ended by
    // then: sign in again).
    app.clock.advance(time::Duration::hours(25));
    assert_eq!(
        app.log_in(&trader, "trader@example.com", PASSWORD)
            .await
            .status(),
        200
    );
    next_step(&app);
    let wrong = wrong_code(&secret, &app);
    for _ in 0..3 {
        assert_eq!(step_up_totp(&app, &trader, wrong).await.status(), 400);
    }
    let code = domain::stepup::code_at(&secret, app.clock.now());
    assert_eq!(step_up_totp(&app, &trader, &code).await.status(), 200);
    app.stop().await;
}

// --- 11. The verified credential decides -------------------------------------------------

/// A trader with two registered keys, "A" and "B"; returns A's authenticator and B's
/// credential id.
async fn trader_with_two_keys(app: &TestApp) -> (reqwest::Client, SoftToken, String) {
    let trader = app.signed_in_as("trader@example.com", Role::Trader).await;
    let mut a = soft_key();
    assert_eq!(app.register_key(&trader, &mut a, "A").await.status(), 200);
    assert_eq!(app.step_up_with_key(&trader, &mut a).await.status(), 200);
    let mut b = soft_key();
    assert_eq!(app.register_key(&trader, &mut b, "B").await.status(), 200);
    let b_credential = app
        .text("SELECT credential_id FROM security_keys WHERE name = 'B'")
        .await
        .expect("B's credential id");
    (trader, a, b_credential)
}

fn with_id(assertion: &str, id: &str) -> String {
    let mut value: Value = serde_json::from_str(assertion).expect("assertion json");
    value["id"] = Value::String(id.to_owned());
    value.to_string()
}

#[tokio::test]
async fn an_assertion_whose_id_names_another_key_is_refused_and_that_key_is_untouched() {
    let app = spawn_app().await;
    let (trader, mut a, b_credential) = trader_with_two_keys(&app).await;
    let succeeded = audits(&app, "stepup.key_succeeded").await;

    let assertion = app.key_assertion(&trader, &mut a).await;
    let forged = with_id(&assertion, &b_credential);
    let refused = app
        .call(
            &trader,
            "stepup/verify",
            &[("method", "security-key"), ("response", &forged)],
        )
        .await;
    assert_eq!(refused.status(), 400);
    assert_eq!(audits(&app, "stepup.key_succeeded").await, succeeded);
    assert!(
        app.text("SELECT last_used_at FROM security_keys WHERE name = 'B'")
            .await
            .is_none(),
        "B was recorded as used"
    );
    assert!(
        app.text("SELECT flagged_at FROM security_keys WHERE name = 'B'")
            .await
            .is_none()
    );
    assert_eq!(
        app.count(
            "SELECT COUNT(*) FROM audit_events WHERE action = 'stepup.key_failed' \
             AND details LIKE '%not the key that signed%'"
        )
        .await,
        1
    );
    // The same key, honestly named, still works.
    assert_eq!(app.step_up_with_key(&trader, &mut a).await.status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn a_cloned_key_is_flagged_even_when_its_assertion_names_another_key() {
    let app = spawn_app().await;
    let (trader, mut a, b_credential) = trader_with_two_keys(&app).await;
    let mut clone = SoftToken::from_cbor(&a.to_cbor().expect("cbor")).expect("clone");
    // The genuine key moves its counter on; the clone is left behind.
    assert_eq!(app.step_up_with_key(&trader, &mut a).await.status(), 200);
    assert_eq!(app.step_up_with_key(&trader, &mut a).await.status(), 200);

    let assertion = app.key_assertion(&trader, &mut clone).await;
    let regressed = app
        .call(
            &trader,
            "stepup/verify",
            &[
                ("method", "security-key"),
                ("response", &with_id(&assertion, &b_credential)),
            ],
        )
        .await;
    assert_eq!(regressed.status(), 400);
    assert!(json(regressed).await.to_string().contains("cloned"));
    // The key that signed (A) is disabled; B, named in the forged id, is not.
    assert!(
        app.text("SELECT flagged_at FROM security_keys WHERE name = 'A'")
            .await
            .is_some()
    );
    assert!(
        app.text("SELECT flagged_at FROM security_keys WHERE name = 'B'")
            .await
            .is_none()
    );
    assert_eq!(audits(&app, "stepup.key_counter_regressed").await, 1);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM security_alerts WHERE kind = 'security_key_cloned'")
            .await,
        1
    );
    app.stop().await;
}

// --- 15. Ceremony state expires and ends at sign-in ----------------------------------------

/// Asks for creation options and lets `key` answer them; returns the credential JSON.
async fn begin_registration(
    app: &TestApp,
    client: &reqwest::Client,
    key: &mut SoftToken,
) -> String {
    let options = app.call(client, "stepup/key-options", &[]).await;
    assert_eq!(options.status(), 200);
    let options: String = options.json().await.expect("options");
    let credential = key
        .do_registration(
            url::Url::parse(WEBAUTHN_ORIGIN).expect("origin"),
            serde_json::from_str(&options).expect("creation options"),
        )
        .expect("software key registers");
    serde_json::to_string(&credential).expect("credential json")
}

async fn finish_registration(
    app: &TestApp,
    client: &reqwest::Client,
    credential: &str,
) -> reqwest::Response {
    app.call(
        client,
        "stepup/key-register",
        &[("name", "Late key"), ("credential", credential)],
    )
    .await
}

#[tokio::test]
async fn a_key_ceremony_answered_after_five_minutes_is_refused() {
    let app = spawn_app().await;
    let trader = app.signed_in_as("trader@example.com", Role::Trader).await;

    let mut late = soft_key();
    let credential = begin_registration(&app, &trader, &mut late).await;
    app.clock.advance(time::Duration::minutes(6));
    let refused = finish_registration(&app, &trader, &credential).await;
    assert_eq!(refused.status(), 400);
    assert!(json(refused).await.to_string().contains("expired"));
    assert_eq!(app.count("SELECT COUNT(*) FROM security_keys").await, 0);

    // A step-up's challenge expires the same way.
    let fresh = app.new_client();
    assert_eq!(
        app.log_in(&fresh, "trader@example.com", PASSWORD)
            .await
            .status(),
        200
    );
    let mut key = soft_key();
    assert_eq!(
        app.register_key(&fresh, &mut key, "Key").await.status(),
        200
    );
    let assertion = app.key_assertion(&fresh, &mut key).await;
    app.clock.advance(time::Duration::minutes(6));
    let refused = app
        .call(
            &fresh,
            "stepup/verify",
            &[("method", "security-key"), ("response", &assertion)],
        )
        .await;
    assert_eq!(refused.status(), 400);
    assert_eq!(audits(&app, "stepup.key_succeeded").await, 0);
    app.stop().await;
}

#[tokio::test]
async fn a_ceremony_begun_before_signing_in_again_cannot_be_finished_after_it() {
    let app = spawn_app().await;
    let trader = app.signed_in_as("trader@example.com", Role::Trader).await;

    let mut key = soft_key();
    let credential = begin_registration(&app, &trader, &mut key).await;
    assert_eq!(
        app.log_in(&trader, "trader@example.com", PASSWORD)
            .await
            .status(),
        200
    );
    assert_eq!(
        finish_registration(&app, &trader, &credential)
            .await
            .status(),
        400
    );
    assert_eq!(app.count("SELECT COUNT(*) FROM security_keys").await, 0);

    // The same for a step-up's challenge.
    let mut key = soft_key();
    assert_eq!(
        app.register_key(&trader, &mut key, "Key").await.status(),
        200
    );
    let assertion = app.key_assertion(&trader, &mut key).await;
    assert_eq!(
        app.log_in(&trader, "trader@example.com", PASSWORD)
            .await
            .status(),
        200
    );
    let refused = app
        .call(
            &trader,
            "stepup/verify",
            &[("method", "security-key"), ("response", &assertion)],
        )
        .await;
    assert_eq!(refused.status(), 400);
    assert_eq!(audits(&app, "stepup.key_succeeded").await, 0);
    app.stop().await;
}

#[tokio::test]
async fn an_order_challenge_begun_before_signing_in_again_cannot_be_approved_after_it() {
    let app = spawn_app().await;
    let trader = app.signed_in_as("trader@example.com", Role::Trader).await;
    let (secret, _) = enrol_totp(&app, &trader).await;
    let order = [
        ("venue", "paper"),
        ("order_type", "limit"),
        ("symbol", "BTCUSDT"),
        ("side", "buy"),
        ("quantity", "0.5"),
        ("price", "65000"),
    ];
    let options = app.call(&trader, "stepup/order-options", &order).await;
    assert_eq!(options.status(), 200);
    assert_eq!(
        app.log_in(&trader, "trader@example.com", PASSWORD)
            .await
            .status(),
        200
    );
    next_step(&app);
    let code = domain::stepup::code_at(&secret, app.clock.now());
    let mut form = order.to_vec();
    form.extend([("method", "totp"), ("response", code.as_str())]);
    let refused = app.call(&trader, "stepup/order-approve", &form).await;
    assert_eq!(refused.status(), 400);
    assert!(json(refused).await.to_string().contains("start again"));
    assert_eq!(audits(&app, "stepup.order_approved").await, 0);
    app.stop().await;
}

// --- 20. One-time secrets stay out of Debug output ---------------------------------------

#[test]
fn one_time_secrets_do_not_show_in_debug_output() {
    use secrecy::SecretString;
    let secret = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";
    let setup = app::api::stepup::TotpSetupView {
        secret: secret.into(),
        otpauth_url: format!("otpauth://totp/CryptoPulse:a?secret={secret}"),
        qr_svg: format!("<svg><!-- {secret} --></svg>"),
    };
    let codes =
        app::api::stepup::RecoveryCodesView(vec!["abcd-efgh-ijkl-mnop".into(), secret.into()]);
    // Built from JSON, so fields added to the token's view later do not break this test.
    let token: app::api::trading::CreatedAgentToken = serde_json::from_value(serde_json::json!({
        "token": {
            "id": "t1",
            "name": "bot",
            "prefix": "cpa_abcd",
            "scopes": ["propose"],
            "created_at": "2026-11-28T00:00:00Z",
            "last_used_at": null,
            "revoked_at": null,
            "expires_at": "2027-02-26T00:00:00Z",
            "expired": false,
        },
        "secret": format!("cpa_{secret}"),
    }))
    .expect("token json");
    let enrolment = domain::stepup::TotpEnrolment {
        secret_base32: SecretString::from(secret),
        otpauth_url: SecretString::from(format!("otpauth://totp/x?secret={secret}")),
    };
    for printed in [
        format!("{setup:?}"),
        format!("{codes:?}"),
        format!("{token:?}"),
        format!("{enrolment:?}"),
    ] {
        assert!(!printed.contains(secret), "{printed}");
        assert!(!printed.contains("abcd-efgh"), "{printed}");
    }
    // The wire form is unchanged: the codes are still a plain list.
    assert_eq!(
        serde_json::to_value(&codes).expect("json"),
        serde_json::json!(["abcd-efgh-ijkl-mnop", secret])
    );
}
