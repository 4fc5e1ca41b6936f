//! Login back-off counts live in the database: the same counts on every app server and after a
//! restart, parallel attempts counted before their outcome, and no email address stored.

use std::sync::Arc;

use domain::account::BackoffPolicy;
use domain::ports::{Clock, LoginThrottle};
use server::storage::SqlLoginThrottle;
use time::{Duration, OffsetDateTime};

use crate::helpers::{
    PASSWORD, TestApp, TestClock, TestDatabase, spawn_app, spawn_on, test_settings,
};

fn throttle(app: &TestApp) -> SqlLoginThrottle {
    throttle_writing_through(app, app.backend.audit_chain.clone())
}

/// A throttle as another app server on the same database has: its own memory and writer.
fn throttle_writing_through(app: &TestApp, chain: server::storage::AuditChain) -> SqlLoginThrottle {
    SqlLoginThrottle::new(
        chain,
        app.clock.clone(),
        BackoffPolicy {
            free_failures: 3,
            max_wait: Duration::minutes(15),
        },
        BackoffPolicy {
            free_failures: 10,
            max_wait: Duration::minutes(15),
        },
    )
}

fn keys(account: &str) -> Vec<String> {
    vec![format!("account:{account}"), "ip:127.0.0.1".to_owned()]
}

async fn fail(t: &SqlLoginThrottle, keys: &[String], now: OffsetDateTime) {
    t.begin(keys, now).await.expect("stored").expect("allowed");
    t.finish(keys, false, now).await;
}

async fn begin(t: &SqlLoginThrottle, keys: &[String], now: OffsetDateTime) -> Result<(), u64> {
    t.begin(keys, now).await.expect("stored")
}

#[tokio::test]
async fn an_account_backs_off_after_its_free_failures_and_recovers_with_time() {
    let app = spawn_app().await;
    let t = throttle(&app);
    let now = app.clock.now();
    let keys = keys("a@example.com");
    for _ in 0..3 {
        fail(&t, &keys, now).await;
    }
    assert_eq!(begin(&t, &keys, now).await, Err(1));
    let later = now + Duration::seconds(1);
    fail(&t, &keys, later).await;
    assert_eq!(begin(&t, &keys, later).await, Err(2));
    // Quiet for a day, the count starts over: one more failure is the first, not the fifth.
    let next_day = later + Duration::hours(24) + Duration::seconds(1);
    fail(&t, &keys, next_day).await;
    assert_eq!(begin(&t, &keys, next_day).await, Ok(()));
}

#[tokio::test]
async fn parallel_attempts_count_before_their_outcome_is_known() {
    let app = spawn_app().await;
    let t = Arc::new(throttle(&app));
    let now = app.clock.now();
    let keys = Arc::new(keys("b@example.com"));
    let attempts: Vec<_> = (0..10)
        .map(|_| {
            let (t, keys) = (t.clone(), keys.clone());
            tokio::spawn(async move { t.begin(&keys, now).await.expect("stored") })
        })
        .collect();
    let mut admitted = 0;
    for attempt in attempts {
        if attempt.await.expect("attempt").is_ok() {
            admitted += 1;
        }
    }
    assert_eq!(admitted, 3, "only the free attempts may run at once");
    for _ in 0..admitted {
        t.finish(&keys, false, now).await;
    }
    assert!(begin(&t, &keys, now).await.is_err());
}

/// Each app server keeps its own attempts under way; past the free failures the stored row is
/// claimed, so when a wait ends only one of them lets an attempt through.
#[tokio::test]
async fn past_its_free_failures_a_key_admits_one_attempt_at_a_time_across_app_servers() {
    let app = spawn_app().await;
    // Two servers' throttles: separate memories and audit writers, one database.
    let first = throttle(&app);
    let second = throttle_writing_through(&app, app.backend.audit_chain.replica());
    let now = app.clock.now();
    let keys = keys("c@example.com");
    for _ in 0..3 {
        fail(&first, &keys, now).await;
    }
    assert!(
        begin(&second, &keys, now).await.is_err(),
        "the second sees them"
    );
    // The one-second wait is over: one attempt, from either server, not one from each.
    let later = now + Duration::seconds(2);
    let (a, b) = tokio::join!(begin(&first, &keys, later), begin(&second, &keys, later));
    assert_eq!(
        [a, b].iter().filter(|admitted| admitted.is_ok()).count(),
        1,
        "{a:?} {b:?}"
    );
}

/// A claim marks the turn, not a failure: sign-ins from an address past its free failures do not
/// keep the address's count from being forgotten a day after its last failure.
#[tokio::test]
async fn a_claim_does_not_keep_a_count_from_being_forgotten() {
    let app = spawn_app().await;
    let t = throttle(&app);
    let now = app.clock.now();
    for n in 0..10 {
        fail(&t, &keys(&format!("user{n}@example.com")), now).await;
    }
    // Hours later someone behind the address signs in: the attempt claims the address's row.
    let later = now + Duration::hours(12);
    let owner = keys("owner@example.com");
    begin(&t, &owner, later).await.expect("the wait is over");
    t.finish(&owner, true, later).await;
    // A day after the last failure the address starts over: one more failure is its first.
    let next_day = now + Duration::hours(24) + Duration::seconds(1);
    fail(&t, &keys("other@example.com"), next_day).await;
    assert_eq!(
        begin(&t, &keys("another@example.com"), next_day).await,
        Ok(())
    );
}

/// Found by the benchmark's 64 logins at once from one address: an attempt that read the clock
/// just before a parallel one, and got its turn just after it, was told to wait a second although
/// no failure had been counted at all.
#[tokio::test]
async fn an_attempt_that_read_the_clock_before_a_parallel_one_is_not_held_back() {
    let app = spawn_app().await;
    let t = throttle(&app);
    let earlier = app.clock.now();
    let later = earlier + Duration::milliseconds(1);
    let (a, b) = (keys("a@example.com"), keys("b@example.com"));
    begin(&t, &a, later).await.expect("first attempt");
    assert_eq!(
        begin(&t, &b, earlier).await,
        Ok(()),
        "same address, no failures yet"
    );
    t.finish(&a, true, later).await;
    t.finish(&b, true, earlier).await;
    // Back-off itself is unchanged: past the free failures, the wait counts from the latest.
    for _ in 0..3 {
        fail(&t, &a, later).await;
    }
    assert!(begin(&t, &a, earlier).await.is_err());
}

#[tokio::test]
async fn a_success_clears_the_account_but_not_the_address() {
    let app = spawn_app().await;
    let t = throttle(&app);
    let now = app.clock.now();
    for n in 0..10 {
        fail(&t, &keys(&format!("user{n}@example.com")), now).await;
    }
    // Ten failures from one address: another account from it is held back too.
    assert!(begin(&t, &keys("new@example.com"), now).await.is_err());

    let app = spawn_app().await;
    let t = throttle(&app);
    let a = keys("a@example.com");
    fail(&t, &a, now).await;
    fail(&t, &a, now).await;
    begin(&t, &a, now).await.expect("third attempt allowed");
    t.finish(&a, true, now).await;
    fail(&t, &a, now).await;
    fail(&t, &a, now).await;
    assert_eq!(
        begin(&t, &a, now).await,
        Ok(()),
        "the success reset the account's count"
    );
    // What is stored is a hash of each key: no address, typed or real.
    assert!(app.count("SELECT COUNT(*) FROM login_backoff").await > 0);
    assert_eq!(
        app.count(
            "SELECT COUNT(*) FROM login_backoff WHERE key_hash LIKE '%@%' \
             OR key_hash LIKE '%127.0.0.1%'"
        )
        .await,
        0
    );
}

#[tokio::test]
async fn counts_quiet_for_a_day_are_forgotten_by_housekeeping() {
    let app = spawn_app().await;
    let t = throttle(&app);
    let now = app.clock.now();
    fail(&t, &keys("old@example.com"), now - Duration::hours(25)).await;
    fail(&t, &keys("new@example.com"), now).await;
    // The address row was touched just now; only the old account's row is a day quiet. (The
    // housekeeping job runs this too, at start, so it may have been first.)
    t.forget_stale().await.expect("forgotten");
    assert_eq!(app.count("SELECT COUNT(*) FROM login_backoff").await, 2);
}

/// An attacker guessing one account's password gains nothing from a restart of the server, nor,
/// with several app servers on one PostgreSQL database, from spreading guesses over them.
#[tokio::test]
async fn an_accounts_back_off_holds_after_a_restart_and_on_every_app_server() {
    let db = TestDatabase::new().await;
    let mut settings = test_settings(&db);
    settings.login.account_free_failures = 2;
    // The address's request budget is not what this is about.
    settings.rate_limit.auth_per_minute = 1_000;
    let clock = Arc::new(TestClock::default());
    let first = spawn_on(db.clone(), settings.clone(), clock.clone()).await;
    let owner = first.new_client();
    assert_eq!(
        first.sign_up(&owner, "erin@example.com").await.status(),
        200
    );
    let guesser = first.new_client();
    // Guess until the account waits a minute, so the restarts below take no part of the wait.
    let retry_after = loop {
        let guess = first
            .log_in(&guesser, "erin@example.com", "not the password")
            .await;
        match guess.status().as_u16() {
            401 => continue,
            429 => {
                let wait: i64 = guess.headers()["retry-after"]
                    .to_str()
                    .expect("ascii")
                    .parse()
                    .expect("seconds");
                if wait >= 60 {
                    break wait;
                }
                clock.advance(Duration::seconds(wait));
            }
            other => panic!("unexpected {other}"),
        }
    };
    let backed_off = first.log_in(&guesser, "erin@example.com", PASSWORD).await;
    assert_eq!(backed_off.status(), 429);

    // Two app servers on one database are a PostgreSQL deployment; on SQLite the second one is
    // only ever idle beside the first here, which one file allows.
    let second = spawn_on(db.clone(), settings.clone(), clock.clone()).await;
    let on_second = second.new_client();
    assert_eq!(
        second
            .log_in(&on_second, "erin@example.com", PASSWORD)
            .await
            .status(),
        429,
        "another app server sees the same count"
    );
    second.stop().await;
    first.stop().await;

    let restarted = spawn_on(db, settings, clock.clone()).await;
    let after_restart = restarted.new_client();
    assert_eq!(
        restarted
            .log_in(&after_restart, "erin@example.com", PASSWORD)
            .await
            .status(),
        429,
        "a restart hands out no fresh guesses"
    );
    // The wait still ends: once it is over the owner signs in, and that clears the count.
    clock.advance(Duration::seconds(retry_after + 1));
    assert_eq!(
        restarted
            .log_in(&after_restart, "erin@example.com", PASSWORD)
            .await
            .status(),
        200
    );
}
