//! The step-up factor store on the real database: conditional writes under concurrent
//! requests (one winner, no replay), failure counting, ownership, and one audit event per
//! successful write and none otherwise.

use domain::audit_action::AuditAction;
use std::sync::Arc;

use domain::account::{BackoffPolicy, Email, Password, Role, UserId};
use domain::audit::{Actor, AuditDraft, Outcome, RequestMeta};
use domain::ports::{Clock, StoreError};
use domain::stepup::{
    FactorStore, OrderApproval, SecurityKey, StepUpMethod, StepUpPolicy, TotpAttempt, TotpFactor,
    TotpLockout, UsableFactors,
};
use domain::vault::{SealedSecret, WrappedKey};
use server::storage::SqlFactorStore;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use crate::helpers::{PASSWORD, TestApp, spawn_app};

const RACERS: usize = 20;

fn clock_now(app: &TestApp) -> OffsetDateTime {
    app.clock.now()
}

async fn new_user(app: &TestApp, email: &str) -> UserId {
    app.backend
        .services
        .accounts
        .sign_up(
            Email::parse(email).expect("email"),
            Password::parse(PASSWORD.into()).expect("password"),
            Role::Trader,
            Actor::system("test"),
            RequestMeta::default(),
        )
        .await
        .expect("user created")
        .id
}

fn store(app: &TestApp) -> Arc<SqlFactorStore> {
    Arc::new(SqlFactorStore::new(
        app.backend.audit_chain.clone(),
        app.clock.clone(),
    ))
}

fn draft(user: UserId, action: AuditAction) -> AuditDraft {
    AuditDraft::new(
        Actor::user(user),
        action,
        Outcome::Success,
        RequestMeta::default(),
    )
}

fn lockout() -> TotpLockout {
    StepUpPolicy::default().totp_lockout
}

async fn audit_events(app: &TestApp) -> i64 {
    app.count("SELECT COUNT(*) FROM audit_events").await
}

fn sealed() -> SealedSecret {
    SealedSecret {
        wrapped_key: WrappedKey {
            kms_key_id: "local:1".into(),
            blob: vec![1, 2, 3],
        },
        nonce: [0; 12],
        ciphertext: vec![4, 5, 6],
    }
}

fn hashes(prefix: &str) -> Vec<String> {
    (0..10).map(|n| format!("{prefix}-{n}")).collect()
}

/// An authenticator app being set up: not confirmed, no step used.
fn pending_totp(user: UserId, created_at: OffsetDateTime) -> TotpFactor {
    TotpFactor {
        user,
        sealed: sealed(),
        confirmed: false,
        last_step: None,
        failures: 0,
        locked_until: None,
        created_at,
    }
}

/// A user with a confirmed TOTP factor (last step 100) and recovery codes `codes-0..9`.
async fn enrolled(app: &TestApp, store: &SqlFactorStore, email: &str) -> UserId {
    let user = new_user(app, email).await;
    let now = clock_now(app);
    store
        .save_pending_totp(
            &pending_totp(user, now),
            draft(user, AuditAction::StepupTotpEnrolmentStarted),
        )
        .await
        .expect("pending factor saved");
    assert!(
        store
            .confirm_totp(
                user,
                100,
                now,
                &hashes("codes"),
                draft(user, AuditAction::StepupTotpEnrolled)
            )
            .await
            .expect("confirm")
    );
    user
}

/// Runs `RACERS` copies of `call` at once on the multi-threaded runtime.
async fn race<F, Fut, T>(call: F) -> Vec<T>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let tasks: Vec<_> = (0..RACERS).map(|_| tokio::spawn(call())).collect();
    let mut out = Vec::new();
    for task in tasks {
        out.push(task.await.expect("task"));
    }
    out
}

fn winners(results: &[Result<bool, StoreError>]) -> usize {
    results
        .iter()
        .map(|r| r.as_ref().expect("no storage error"))
        .filter(|won| **won)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_totp_step_is_accepted_once_even_under_concurrent_submissions() {
    let app = spawn_app().await;
    let store = store(&app);
    let user = enrolled(&app, &store, "totp@example.com").await;
    let factor = store.totp(user).await.expect("read").expect("factor");
    assert!(factor.confirmed);
    assert_eq!(factor.last_step, Some(100));
    assert_eq!(
        factor.sealed.ciphertext,
        sealed().ciphertext,
        "sealed parts round-trip"
    );
    assert_eq!(factor.sealed.wrapped_key.blob, sealed().wrapped_key.blob);

    let before = audit_events(&app).await;
    let results = race(|| {
        let store = store.clone();
        async move {
            store
                .accept_totp_step(
                    user,
                    101,
                    lockout(),
                    draft(user, AuditAction::StepupTotpSucceeded),
                )
                .await
        }
    })
    .await;
    assert_eq!(winners(&results), 1, "{results:?}");
    assert_eq!(
        audit_events(&app).await,
        before + 1,
        "only the winner is audited"
    );

    for stale in [101, 100, 7] {
        assert!(
            !store
                .accept_totp_step(
                    user,
                    stale,
                    lockout(),
                    draft(user, AuditAction::StepupTotpSucceeded)
                )
                .await
                .expect("accept"),
            "step {stale} is a replay"
        );
    }
    assert_eq!(audit_events(&app).await, before + 1);
    assert!(
        store
            .accept_totp_step(
                user,
                102,
                lockout(),
                draft(user, AuditAction::StepupTotpSucceeded)
            )
            .await
            .expect("accept")
    );
    assert_eq!(
        store
            .totp(user)
            .await
            .expect("read")
            .expect("factor")
            .last_step,
        Some(102)
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unconfirmed_factor_accepts_no_step_and_confirms_once() {
    let app = spawn_app().await;
    let store = store(&app);
    let user = new_user(&app, "pending@example.com").await;
    let now = clock_now(&app);
    let pending = pending_totp(user, now);
    store
        .save_pending_totp(
            &pending,
            draft(user, AuditAction::StepupTotpEnrolmentStarted),
        )
        .await
        .expect("save");
    // Starting over replaces the pending secret.
    store
        .save_pending_totp(
            &pending,
            draft(user, AuditAction::StepupTotpEnrolmentStarted),
        )
        .await
        .expect("replace pending");
    assert_eq!(app.count("SELECT COUNT(*) FROM totp_factors").await, 1);
    let before = audit_events(&app).await;
    assert!(
        !store
            .accept_totp_step(
                user,
                5,
                lockout(),
                draft(user, AuditAction::StepupTotpSucceeded)
            )
            .await
            .expect("accept")
    );

    let results = race(|| {
        let store = store.clone();
        async move {
            store
                .confirm_totp(
                    user,
                    50,
                    now,
                    &hashes("codes"),
                    draft(user, AuditAction::StepupTotpEnrolled),
                )
                .await
        }
    })
    .await;
    assert_eq!(winners(&results), 1, "{results:?}");
    assert_eq!(audit_events(&app).await, before + 1);
    assert_eq!(store.recovery_codes_left(user).await.expect("count"), 10);

    // A confirmed factor is not replaced by a new enrolment, and nothing is audited.
    let err = store
        .save_pending_totp(
            &pending,
            draft(user, AuditAction::StepupTotpEnrolmentStarted),
        )
        .await
        .expect_err("confirmed factor exists");
    assert!(matches!(err, StoreError::Conflict), "{err:?}");
    assert_eq!(audit_events(&app).await, before + 1);
    assert!(
        store
            .totp(user)
            .await
            .expect("read")
            .expect("factor")
            .confirmed
    );

    assert!(
        store
            .remove_totp(user, draft(user, AuditAction::StepupTotpRemoved))
            .await
            .expect("remove")
    );
    assert_eq!(store.recovery_codes_left(user).await.expect("count"), 0);
    assert!(store.totp(user).await.expect("read").is_none());
    assert!(
        !store
            .remove_totp(user, draft(user, AuditAction::StepupTotpRemoved))
            .await
            .expect("remove")
    );
    assert_eq!(audit_events(&app).await, before + 2);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_attempts_are_reserved_only_until_the_lock_and_a_success_takes_back_its_own() {
    // Issue 11: attempts are counted before their code is checked (this replaced the test
    // that counted failures after the check, and in which a success cleared every failure).
    let app = spawn_app().await;
    let store = store(&app);
    let user = enrolled(&app, &store, "failures@example.com").await;
    let before = audit_events(&app).await;
    let now = clock_now(&app);
    let lockout = TotpLockout {
        backoff: BackoffPolicy {
            free_failures: 3,
            max_wait: Duration::minutes(15),
        },
    };
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.reserve_totp_attempt(user, now, lockout).await })
        })
        .collect();
    let mut reserved = Vec::new();
    let mut locked = 0;
    let expected = lockout
        .locked_until(3, now)
        .expect("a wait after three attempts");
    for task in tasks {
        match task.await.expect("task").expect("reservation") {
            TotpAttempt::Reserved { failures } => reserved.push(failures),
            TotpAttempt::Locked(until) => {
                assert!((until - expected).abs() < Duration::seconds(1), "{until}");
                locked += 1;
            }
            TotpAttempt::NoFactor => panic!("the factor exists"),
        }
    }
    reserved.sort_unstable();
    assert_eq!(
        reserved,
        vec![1, 2, 3],
        "each reservation saw its own count"
    );
    assert_eq!(locked, 7, "the lock set by the third refused the rest");
    // The outcome of an attempt is audited by the service, not the reservation.
    assert_eq!(audit_events(&app).await, before);
    let factor = store.totp(user).await.expect("read").expect("factor");
    assert_eq!(factor.failures, 3);
    assert!(factor.locked_until.is_some());

    // A success takes back only its own attempt: the other two stay counted, and the lock its
    // reservation set goes with it.
    assert!(
        store
            .accept_totp_step(
                user,
                101,
                lockout,
                draft(user, AuditAction::StepupTotpSucceeded)
            )
            .await
            .expect("accept")
    );
    let factor = store.totp(user).await.expect("read").expect("factor");
    assert_eq!((factor.failures, factor.locked_until), (2, None));
    assert_eq!(
        store
            .reserve_totp_attempt(user, now, lockout)
            .await
            .expect("reserve"),
        TotpAttempt::Reserved { failures: 3 }
    );
    // A day after the count began, it starts again.
    let later = now + TotpLockout::FAILURES_FORGOTTEN_AFTER + Duration::minutes(1);
    assert_eq!(
        store
            .reserve_totp_attempt(user, later, lockout)
            .await
            .expect("reserve"),
        TotpAttempt::Reserved { failures: 1 }
    );

    // Without a factor there is nothing to reserve, and nothing is written.
    let stranger = new_user(&app, "nofactor@example.com").await;
    let before = audit_events(&app).await;
    assert_eq!(
        store
            .reserve_totp_attempt(stranger, now, lockout)
            .await
            .expect("reserve"),
        TotpAttempt::NoFactor
    );
    assert_eq!(audit_events(&app).await, before);
    assert!(store.totp(stranger).await.expect("read").is_none());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_recovery_code_is_used_once_even_under_concurrent_submissions() {
    let app = spawn_app().await;
    let store = store(&app);
    let user = enrolled(&app, &store, "codes@example.com").await;
    let other = enrolled(&app, &store, "other-codes@example.com").await;
    let now = clock_now(&app);
    let before = audit_events(&app).await;

    let results = race(|| {
        let store = store.clone();
        async move {
            store
                .use_recovery_code(
                    user,
                    "codes-3",
                    now,
                    draft(user, AuditAction::StepupRecoveryCodeUsed),
                )
                .await
        }
    })
    .await;
    assert_eq!(winners(&results), 1, "{results:?}");
    assert_eq!(audit_events(&app).await, before + 1);
    assert_eq!(store.recovery_codes_left(user).await.expect("count"), 9);
    // The other user's identical hash is theirs, still unused.
    assert_eq!(store.recovery_codes_left(other).await.expect("count"), 10);
    assert!(
        !store
            .use_recovery_code(
                user,
                "no-such-code",
                now,
                draft(user, AuditAction::StepupRecoveryCodeUsed)
            )
            .await
            .expect("use")
    );
    assert_eq!(audit_events(&app).await, before + 1);

    // New codes replace all the old ones, used or not.
    store
        .replace_recovery_codes(
            user,
            &hashes("fresh"),
            now,
            draft(user, AuditAction::StepupRecoveryCodesReplaced),
        )
        .await
        .expect("replace");
    assert_eq!(store.recovery_codes_left(user).await.expect("count"), 10);
    assert!(
        !store
            .use_recovery_code(
                user,
                "codes-4",
                now,
                draft(user, AuditAction::StepupRecoveryCodeUsed)
            )
            .await
            .expect("use")
    );
    assert!(
        store
            .use_recovery_code(
                user,
                "fresh-4",
                now,
                draft(user, AuditAction::StepupRecoveryCodeUsed)
            )
            .await
            .expect("use")
    );
    assert_eq!(audit_events(&app).await, before + 3);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_order_approval_is_spent_once_by_its_owner_before_it_expires() {
    let app = spawn_app().await;
    let store = store(&app);
    let user = new_user(&app, "orders@example.com").await;
    let other = new_user(&app, "other-orders@example.com").await;
    let now = clock_now(&app);
    let approval = |digest: &str, lifetime: Duration| OrderApproval {
        digest: digest.into(),
        user,
        method: StepUpMethod::Totp,
        approved_at: now,
        expires_at: now + lifetime,
    };
    let before = audit_events(&app).await;
    store
        .insert_order_approval(
            &approval("live", Duration::minutes(5)),
            draft(user, AuditAction::StepupOrderApproved),
        )
        .await
        .expect("insert");
    let err = store
        .insert_order_approval(
            &approval("live", Duration::minutes(5)),
            draft(user, AuditAction::StepupOrderApproved),
        )
        .await
        .expect_err("same digest");
    assert!(matches!(err, StoreError::Conflict), "{err:?}");
    assert_eq!(audit_events(&app).await, before + 1);

    // Someone else cannot spend it.
    assert!(
        !store
            .consume_order_approval(
                other,
                "live",
                now,
                draft(other, AuditAction::StepupOrderApprovalUsed)
            )
            .await
            .expect("consume")
    );
    let results = race(|| {
        let store = store.clone();
        async move {
            store
                .consume_order_approval(
                    user,
                    "live",
                    now,
                    draft(user, AuditAction::StepupOrderApprovalUsed),
                )
                .await
        }
    })
    .await;
    assert_eq!(winners(&results), 1, "{results:?}");
    assert_eq!(audit_events(&app).await, before + 2);

    store
        .insert_order_approval(
            &approval("stale", Duration::seconds(-1)),
            draft(user, AuditAction::StepupOrderApproved),
        )
        .await
        .expect("insert");
    assert!(
        !store
            .consume_order_approval(
                user,
                "stale",
                now,
                draft(user, AuditAction::StepupOrderApprovalUsed)
            )
            .await
            .expect("consume"),
        "expired"
    );
    // An approval is dead at its expiry instant, not a second later.
    store
        .insert_order_approval(
            &approval("edge", Duration::minutes(5)),
            draft(user, AuditAction::StepupOrderApproved),
        )
        .await
        .expect("insert");
    assert!(
        !store
            .consume_order_approval(
                user,
                "edge",
                now + Duration::minutes(5),
                draft(user, AuditAction::StepupOrderApprovalUsed)
            )
            .await
            .expect("consume")
    );
    assert_eq!(audit_events(&app).await, before + 4);
    app.stop().await;
}

fn key(user: UserId, credential_id: &str, created_at: OffsetDateTime) -> SecurityKey {
    SecurityKey {
        id: Uuid::new_v4(),
        user,
        name: format!("key {credential_id}"),
        credential_id: credential_id.into(),
        credential: format!("{{\"cred\":\"{credential_id}\",\"counter\":0}}"),
        created_at,
        last_used_at: None,
        flagged_at: None,
        last_challenge: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn security_keys_belong_to_one_user_and_a_flagged_key_is_not_used() {
    let app = spawn_app().await;
    let store = store(&app);
    let alice = new_user(&app, "alice@example.com").await;
    let mallory = new_user(&app, "mallory@example.com").await;
    let now = clock_now(&app);
    // Within one second, so text order and time order disagree ("…00.5Z" < "…00Z").
    let base = now.replace_nanosecond(0).expect("whole second");
    let first = key(alice, "cred-a", base);
    let second = key(alice, "cred-b", base + Duration::milliseconds(500));
    let before = audit_events(&app).await;
    for k in [&second, &first] {
        store
            .insert_security_key(k, draft(alice, AuditAction::StepupKeyRegistered))
            .await
            .expect("insert");
    }
    let ids: Vec<Uuid> = store
        .security_keys(alice)
        .await
        .expect("list")
        .iter()
        .map(|k| k.id)
        .collect();
    assert_eq!(ids, [first.id, second.id], "oldest first");
    assert!(store.credential_registered("cred-a").await.expect("lookup"));
    assert!(!store.credential_registered("cred-z").await.expect("lookup"));

    // The same credential cannot be registered again, by anyone.
    let err = store
        .insert_security_key(
            &key(mallory, "cred-a", now),
            draft(mallory, AuditAction::StepupKeyRegistered),
        )
        .await
        .expect_err("duplicate credential");
    assert!(matches!(err, StoreError::Conflict), "{err:?}");
    assert_eq!(audit_events(&app).await, before + 2);

    // Mallory can neither remove, use nor flag Alice's key.
    assert!(
        !store
            .remove_security_key(
                mallory,
                first.id,
                draft(mallory, AuditAction::StepupKeyRemoved)
            )
            .await
            .expect("remove")
    );
    let err = store
        .record_security_key_use(
            mallory,
            first.id,
            &first.credential,
            None,
            "{}",
            "challenge-1",
            now,
            draft(mallory, AuditAction::StepupKeySucceeded),
        )
        .await
        .expect_err("not hers");
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
    let err = store
        .flag_security_key(
            mallory,
            first.id,
            now,
            draft(mallory, AuditAction::StepupKeyCounterRegressed),
        )
        .await
        .expect_err("not hers");
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
    assert_eq!(
        audit_events(&app).await,
        before + 2,
        "refused writes are not audited"
    );
    let keys = store.security_keys(alice).await.expect("list");
    assert_eq!(keys.len(), 2);
    assert!(
        keys.iter()
            .all(|k| k.flagged_at.is_none() && k.last_used_at.is_none())
    );

    store
        .record_security_key_use(
            alice,
            first.id,
            &first.credential,
            None,
            "{\"counter\":7}",
            "challenge-1",
            now,
            draft(alice, AuditAction::StepupKeySucceeded),
        )
        .await
        .expect("use");
    let used = store.security_keys(alice).await.expect("list").remove(0);
    assert_eq!(used.credential, "{\"counter\":7}");
    assert!(used.last_used_at.is_some());
    assert_eq!(used.last_challenge.as_deref(), Some("challenge-1"));

    // The same answer judged against the key as read before that use, with a counter that did
    // not move (most synced passkeys stay at 0): that challenge is answered, nothing is written.
    let err = store
        .record_security_key_use(
            alice,
            first.id,
            "{\"counter\":7}",
            None,
            "{\"counter\":7}",
            "challenge-1",
            now,
            draft(alice, AuditAction::StepupKeySucceeded),
        )
        .await
        .expect_err("answered already");
    assert!(matches!(err, StoreError::Conflict), "{err:?}");

    // A second use judged against the key as it was read before the first one (two answers at
    // the same instant) writes nothing: the counter is never moved back.
    let err = store
        .record_security_key_use(
            alice,
            first.id,
            &first.credential,
            None,
            "{\"counter\":6}",
            "challenge-2",
            now,
            draft(alice, AuditAction::StepupKeySucceeded),
        )
        .await
        .expect_err("stale");
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
    let kept = store.security_keys(alice).await.expect("list").remove(0);
    assert_eq!(kept.credential, "{\"counter\":7}");

    // Once flagged, the key's counter is never moved on again; the first flag time stays.
    store
        .flag_security_key(
            alice,
            first.id,
            now,
            draft(alice, AuditAction::StepupKeyCounterRegressed),
        )
        .await
        .expect("flag");
    store
        .flag_security_key(
            alice,
            first.id,
            now + Duration::minutes(1),
            draft(alice, AuditAction::StepupKeyCounterRegressed),
        )
        .await
        .expect("flag again");
    let flagged = store.security_keys(alice).await.expect("list").remove(0);
    assert_eq!(
        flagged.flagged_at.map(|t| t.unix_timestamp()),
        Some(now.unix_timestamp())
    );
    let err = store
        .record_security_key_use(
            alice,
            first.id,
            "{\"counter\":7}",
            Some("challenge-1"),
            "{\"counter\":8}",
            "challenge-3",
            now,
            draft(alice, AuditAction::StepupKeySucceeded),
        )
        .await
        .expect_err("flagged");
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
    assert_eq!(audit_events(&app).await, before + 5);

    assert!(
        store
            .remove_security_key(alice, first.id, draft(alice, AuditAction::StepupKeyRemoved))
            .await
            .expect("remove")
    );
    assert_eq!(store.security_keys(alice).await.expect("list").len(), 1);
    assert_eq!(audit_events(&app).await, before + 6);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn usable_factors_are_a_confirmed_app_and_a_key_that_is_not_disabled_of_that_user_only() {
    let app = spawn_app().await;
    let store = store(&app);
    let alice = new_user(&app, "alice@example.com").await;
    let bob = new_user(&app, "bob@example.com").await;
    let now = clock_now(&app);
    let usable = |totp, security_key| UsableFactors { totp, security_key };
    let factors_of = |user| {
        let store = store.clone();
        async move {
            let usable = store.usable_factors(user).await.expect("usable factors");
            // The one-statement read answers as the full reads do.
            let totp = store.totp(user).await.expect("totp");
            let keys = store.security_keys(user).await.expect("keys");
            assert_eq!(
                usable,
                UsableFactors {
                    totp: totp.is_some_and(|t| t.confirmed),
                    security_key: keys.iter().any(|k| k.flagged_at.is_none()),
                }
            );
            usable
        }
    };
    assert_eq!(factors_of(alice).await, usable(false, false));

    // An app being set up is not usable yet.
    let pending = pending_totp(alice, now);
    store
        .save_pending_totp(
            &pending,
            draft(alice, AuditAction::StepupTotpEnrolmentStarted),
        )
        .await
        .expect("save");
    assert_eq!(factors_of(alice).await, usable(false, false));
    assert!(
        store
            .confirm_totp(
                alice,
                50,
                now,
                &hashes("codes"),
                draft(alice, AuditAction::StepupTotpEnrolled)
            )
            .await
            .expect("confirm")
    );
    assert_eq!(factors_of(alice).await, usable(true, false));

    let register = |user, credential_id: &'static str| {
        let store = store.clone();
        async move {
            let key = key(user, credential_id, now);
            store
                .insert_security_key(&key, draft(user, AuditAction::StepupKeyRegistered))
                .await
                .expect("insert");
            key
        }
    };
    // Alice's key is hers; once disabled it is not usable, and another key of hers is.
    let first = register(alice, "cred-usable-1").await;
    assert_eq!(factors_of(alice).await, usable(true, true));
    assert_eq!(factors_of(bob).await, usable(false, false));
    store
        .flag_security_key(
            alice,
            first.id,
            now,
            draft(alice, AuditAction::StepupKeyCounterRegressed),
        )
        .await
        .expect("flag");
    assert_eq!(factors_of(alice).await, usable(true, false));
    register(alice, "cred-usable-2").await;
    assert_eq!(factors_of(alice).await, usable(true, true));

    // Bob's key alone, without an app.
    register(bob, "cred-usable-3").await;
    assert_eq!(factors_of(bob).await, usable(false, true));
    app.stop().await;
}
