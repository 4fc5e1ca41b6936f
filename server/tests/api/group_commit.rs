//! Group commit of audited writes: many writers share one database commit, each is answered
//! only once its write is durable, and a writer that fails or goes away leaves nothing behind
//! while the rest of its batch lands.

use std::sync::Arc;
use std::time::Duration;

use domain::audit::{Actor, AuditDraft, Outcome, RequestMeta, verify_log};
use domain::audit_action::AuditAction;
use domain::ports::{AuditLog, SystemClock};
use sea_orm::ConnectionTrait;
use server::storage::SqlAuditLog;

use crate::helpers::{TestApp, spawn_app};

const WRITERS: usize = 32;
const WRITES_EACH: usize = 10;
/// The chain lock's counter, which an abandoned writer bumps to prove its write was undone.
const LOCK_COUNT: &str = "SELECT lock_count FROM audit_chain_lock WHERE id = 1";
const SKEW: i64 = 1_000_000;

fn draft(resource: &str) -> AuditDraft {
    AuditDraft::new(
        Actor::system("group-commit-test"),
        AuditAction::SystemStart,
        Outcome::Success,
        RequestMeta::default(),
    )
    .resource(resource)
}

async fn events_about(app: &TestApp, resource: &str) -> i64 {
    app.count(&format!(
        "SELECT COUNT(*) FROM audit_events WHERE resource = '{resource}'"
    ))
    .await
}

#[tokio::test]
async fn concurrent_writers_share_commits_and_the_chain_stays_whole() {
    let app = spawn_app().await;
    let chain = app.backend.audit_chain.replica();
    let log = Arc::new(SqlAuditLog::new(chain.clone(), Arc::new(SystemClock)));
    let before = app.count("SELECT COUNT(*) FROM audit_events").await;
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let log = log.clone();
            tokio::spawn(async move {
                let mut seqs = Vec::new();
                for i in 0..WRITES_EACH {
                    let event = log
                        .record(draft(&format!("gc:{w}:{i}")))
                        .await
                        .expect("acknowledged");
                    seqs.push(event.seq);
                }
                seqs
            })
        })
        .collect();
    let mut acknowledged = Vec::new();
    for writer in writers {
        acknowledged.extend(writer.await.expect("writer"));
    }
    let total = WRITERS * WRITES_EACH;
    acknowledged.sort_unstable();
    acknowledged.dedup();
    assert_eq!(acknowledged.len(), total, "every write got its own seq");
    // Every acknowledged seq is stored (durable before the answer), with no gaps in the chain.
    let stored = app.count("SELECT COUNT(*) FROM audit_events").await;
    assert_eq!(stored, before + total as i64);
    let verified = verify_log(app.backend.audit_log.as_ref(), |_| {})
        .await
        .expect("read")
        .expect("the chain verifies");
    assert_eq!(verified.head.seq, stored);
    assert!(
        chain.commits() < total as u64,
        "{total} concurrent writes took {} commits: none were grouped",
        chain.commits()
    );
}

#[tokio::test]
async fn a_writer_that_fails_rolls_back_alone_and_its_batch_commits() {
    let app = spawn_app().await;
    let chain = app.backend.audit_chain.replica();
    let lock_before = app.count(LOCK_COUNT).await;

    let abandoned = chain.begin().await.expect("turn");
    abandoned
        .conn()
        .execute_unprepared(&format!(
            "UPDATE audit_chain_lock SET lock_count = lock_count + {SKEW} WHERE id = 1"
        ))
        .await
        .expect("write");
    // An error returned early: the writer's turn ends without its audit event.
    drop(abandoned);

    let kept = chain.begin().await.expect("turn after an abandoned one");
    let event = kept
        .commit_with(draft("gc:kept"), time::OffsetDateTime::now_utc())
        .await
        .expect("committed");
    assert_eq!(events_about(&app, "gc:kept").await, 1);
    assert!(event.seq > 0);
    let lock_after = app.count(LOCK_COUNT).await;
    assert!(
        lock_after < lock_before + SKEW,
        "the abandoned writer's update landed ({lock_before} -> {lock_after})"
    );
}

#[tokio::test]
async fn a_cancelled_writer_leaves_nothing_and_does_not_stall_the_others() {
    let app = spawn_app().await;
    let chain = app.backend.audit_chain.replica();
    let lock_before = app.count(LOCK_COUNT).await;

    // A request cancelled mid-write (its client went away): the future is dropped while its
    // savepoint is open.
    let cancelled = {
        let chain = chain.clone();
        async move {
            let txn = chain.begin().await.expect("turn");
            txn.conn()
                .execute_unprepared(&format!(
                    "UPDATE audit_chain_lock SET lock_count = lock_count + {SKEW} WHERE id = 1"
                ))
                .await
                .expect("write");
            std::future::pending::<()>().await;
        }
    };
    assert!(
        tokio::time::timeout(Duration::from_millis(200), cancelled)
            .await
            .is_err()
    );

    let log = SqlAuditLog::new(chain.clone(), Arc::new(SystemClock));
    let after_cancel = tokio::time::timeout(Duration::from_secs(10), log.record(draft("gc:after")))
        .await
        .expect("the next writer is not stalled")
        .expect("committed");
    assert!(after_cancel.seq > 0);
    assert_eq!(events_about(&app, "gc:after").await, 1);
    let lock_after = app.count(LOCK_COUNT).await;
    assert!(
        lock_after < lock_before + SKEW,
        "the cancelled writer's update landed ({lock_before} -> {lock_after})"
    );
}

#[tokio::test]
async fn a_batch_whose_next_writer_goes_away_still_commits_the_earlier_write() {
    let app = spawn_app().await;
    let chain = app.backend.audit_chain.replica();
    let first = chain.begin().await.expect("turn");
    // A second writer queues behind the first, so the first leaves its batch open for it...
    let second = tokio::spawn({
        let chain = chain.clone();
        async move {
            let _turn = chain.begin().await;
            std::future::pending::<()>().await;
        }
    });
    while chain.writers_waiting() == 0 {
        tokio::task::yield_now().await;
    }
    let committing = tokio::spawn(async move {
        first
            .commit_with(draft("gc:left-waiting"), time::OffsetDateTime::now_utc())
            .await
    });
    // ...and then goes away (mid-turn, or before it): the earlier write must still commit.
    tokio::time::sleep(Duration::from_millis(50)).await;
    second.abort();
    let event = tokio::time::timeout(Duration::from_secs(10), committing)
        .await
        .expect("the first writer is answered")
        .expect("task")
        .expect("committed");
    assert!(event.seq > 0);
    assert_eq!(events_about(&app, "gc:left-waiting").await, 1);
}

/// The chain head is kept in memory within a batch. Writers that append an event and then go
/// away (rolled back) sit between ones that commit in the same batches: the head their events
/// made must be forgotten with them, or the next event would be sealed onto a missing one.
#[tokio::test]
async fn events_rolled_back_mid_batch_leave_the_chain_whole() {
    let app = spawn_app().await;
    let chain = app.backend.audit_chain.replica();
    let log = Arc::new(SqlAuditLog::new(chain.clone(), Arc::new(SystemClock)));
    let before = app.count("SELECT COUNT(*) FROM audit_events").await;
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (chain, log) = (chain.clone(), log.clone());
            tokio::spawn(async move {
                for i in 0..WRITES_EACH {
                    if (w + i) % 2 == 0 {
                        log.record(draft("gc:kept")).await.expect("acknowledged");
                    } else {
                        let mut turn = chain.begin().await.expect("turn");
                        turn.append(draft("gc:abandoned"), time::OffsetDateTime::now_utc())
                            .await
                            .expect("appended in the savepoint");
                        // An error after the append: the writer's turn ends without committing.
                        drop(turn);
                    }
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.expect("writer");
    }
    let kept = (WRITERS * WRITES_EACH / 2) as i64;
    assert_eq!(events_about(&app, "gc:kept").await, kept);
    assert_eq!(events_about(&app, "gc:abandoned").await, 0);
    let verified = verify_log(app.backend.audit_log.as_ref(), |_| {})
        .await
        .expect("read")
        .expect("the chain verifies");
    assert_eq!(verified.head.seq, before + kept);
    assert!(
        chain.commits() < kept as u64,
        "{kept} writes took {} commits: no batch carried two, so nothing here was tested",
        chain.commits()
    );
}
