//! Bulk audit events and report helpers shared by the report tests here and the 200k-event
//! streaming test (its own test binary, `server/tests/report_stream.rs`).

use domain::audit::{
    Actor, ActorKind, AuditDraft, AuditEvent, AuditFilter, ChainHead, Outcome, RequestMeta,
};
use domain::audit_action::AuditAction;
use sea_orm::{ConnectionTrait, EntityTrait, TransactionTrait};
use server::storage::entities::audit_event;
use server::storage::to_row;
use time::OffsetDateTime;

use crate::helpers::TestApp;

/// Seals `n` events onto the chain and inserts them in bulk, in one transaction holding the
/// chain lock (as the server's own appends do). Event `i` happens at `start + i * step`.
pub async fn append_events(
    app: &TestApp,
    n: usize,
    start: OffsetDateTime,
    step: time::Duration,
    draft: impl Fn(usize) -> AuditDraft,
) -> ChainHead {
    let txn = app.db().begin().await.expect("begin");
    txn.execute_unprepared("UPDATE audit_chain_lock SET lock_count = lock_count + 1 WHERE id = 1")
        .await
        .expect("chain lock");
    let mut head = app.backend.audit_log.head().await.expect("head");
    let mut batch = Vec::with_capacity(1000);
    for i in 0..n {
        let event = AuditEvent::seal(head, draft(i), start + step * (i as i32));
        head = event.head();
        batch.push(to_row(&event));
        if batch.len() == 1000 || i + 1 == n {
            audit_event::Entity::insert_many(std::mem::take(&mut batch))
                .exec_without_returning(&txn)
                .await
                .expect("insert batch");
        }
    }
    app.backend
        .audit_chain
        .record_loaded_head(&txn, head)
        .await
        .expect("head of record");
    txn.commit().await.expect("commit");
    head
}

pub const ACTIONS: [AuditAction; 4] = [
    AuditAction::TradeOrderFilled,
    AuditAction::TradeOrderDenied,
    AuditAction::AuthLogin,
    AuditAction::VaultKeyUsed,
];
pub const OUTCOMES: [Outcome; 3] = [Outcome::Success, Outcome::Failure, Outcome::Denied];

pub fn varied(i: usize) -> AuditDraft {
    AuditDraft::new(
        Actor {
            kind: ActorKind::User,
            id: Some(format!("actor-{}", i % 7)),
        },
        ACTIONS[i % ACTIONS.len()],
        OUTCOMES[i % OUTCOMES.len()],
        RequestMeta {
            ip: Some("10.0.0.1".into()),
            user_agent: Some("bulk".into()),
            request_id: Some(format!("req-{}", i % 11)),
        },
    )
    .resource(format!("order:{}", i % 5))
    .detail("n", i)
}

pub async fn downloads(app: &TestApp) -> Vec<AuditEvent> {
    app.backend
        .audit_log
        .search_after(
            &AuditFilter {
                action_prefix: Some(AuditAction::ReportDownload.as_str().into()),
                ..AuditFilter::default()
            },
            0,
            100,
        )
        .await
        .expect("search")
}
