use domain::account::Role;
use domain::audit::verify_log;

use crate::helpers::{is_postgres, spawn_app};

#[tokio::test]
async fn concurrent_actions_never_fork_or_gap_the_chain() {
    let app = spawn_app().await;
    let signups = (0..20).map(|n| {
        let client = app.new_client();
        let app = &app;
        async move {
            app.sign_up(&client, &format!("user{n}@example.com"))
                .await
                .status()
        }
    });
    let statuses = futures::future::join_all(signups).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");

    let verified = verify_log(app.backend.audit_log.as_ref(), |_| {})
        .await
        .expect("read")
        .expect("intact");
    let events = app.count("SELECT COUNT(*) FROM audit_events").await;
    assert_eq!(verified.checked as i64, events);
    assert_eq!(
        app.count("SELECT MAX(seq) FROM audit_events").await,
        events,
        "no gaps"
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM audit_events WHERE action = 'account.create'")
            .await,
        20
    );
    app.stop().await;
}

#[tokio::test]
async fn the_audit_table_refuses_updates_and_deletes() {
    let app = spawn_app().await;
    app.sign_up(&app.client, "ruth@example.com").await;
    use sea_orm::ConnectionTrait;
    for sql in [
        "UPDATE audit_events SET action = 'forged' WHERE seq = 1",
        "DELETE FROM audit_events WHERE seq = 1",
    ] {
        let err = app.db().execute_unprepared(sql).await.expect_err(sql);
        assert!(err.to_string().contains("append-only"), "{err}");
    }
    app.stop().await;
}

/// A fresh app where `count` traders have signed up (a few audit events to tamper with).
async fn app_with_sign_ups(prefix: &str, count: usize) -> crate::helpers::TestApp {
    let app = spawn_app().await;
    for n in 0..count {
        app.sign_up(&app.new_client(), &format!("{prefix}{n}@example.com"))
            .await;
    }
    app
}

async fn disable_append_only_guard(app: &crate::helpers::TestApp) {
    // An attacker with database owner rights can do this; the chain must still catch them.
    if is_postgres() {
        app.exec("ALTER TABLE audit_events DISABLE TRIGGER USER")
            .await;
    } else {
        app.exec("DROP TRIGGER audit_events_no_update; DROP TRIGGER audit_events_no_delete;")
            .await;
    }
}

/// Clears the record's signature as a database writer can, then runs what a start runs first
/// in the store: the head it signed, if any.
async fn clear_the_signature_and_start_signing(
    app: &crate::helpers::TestApp,
) -> Option<domain::audit::ChainHead> {
    app.exec("UPDATE audit_chain_lock SET head_signature = NULL WHERE id = 1")
        .await;
    app.backend
        .audit_chain
        .sign_unsigned_head(time::OffsetDateTime::now_utc())
        .await
        .expect("runs")
}

/// `cryptopulse audit sign-head HEAD --reason REASON`, its output dropped.
async fn sign_head(
    app: &crate::helpers::TestApp,
    head: &str,
    reason: &str,
) -> Result<(), server::cli::CliError> {
    server::cli::audit_sign_head(&app.settings, head, reason, &mut Vec::new()).await
}

async fn cli_verify(app: &crate::helpers::TestApp) -> (bool, String) {
    cli_verify_expecting(app, None).await
}

async fn cli_verify_expecting(app: &crate::helpers::TestApp, head: Option<&str>) -> (bool, String) {
    let mut out = Vec::new();
    let intact = server::cli::audit_verify(&app.settings, head, &mut out)
        .await
        .expect("verify runs");
    (intact, String::from_utf8(out).expect("utf8"))
}

async fn assert_cli_reports_break_at(app: &crate::helpers::TestApp, seq: i64) {
    let (intact, report) = cli_verify(app).await;
    assert!(!intact, "{report}");
    assert!(
        report.contains(&format!("BROKEN at seq {seq}:")),
        "{report}"
    );
}

#[tokio::test]
async fn the_cli_verifier_names_the_first_tampered_seq() {
    let app = app_with_sign_ups("t", 4).await;
    let (intact, report) = cli_verify(&app).await;
    assert!(intact, "{report}");
    assert!(report.contains("audit chain intact"), "{report}");

    disable_append_only_guard(&app).await;
    app.exec("UPDATE audit_events SET details = '{\"role\":\"admin\"}' WHERE seq = 3")
        .await;
    assert_cli_reports_break_at(&app, 3).await;
    app.stop().await;
}

/// A value of another type in a text column (SQLite keeps what it is given): the verifier still
/// reads the row and names it, rather than failing to read the chain.
#[tokio::test]
async fn the_cli_verifier_names_a_row_tampered_with_a_value_of_another_type() {
    // PostgreSQL's columns keep their type: a number assigned to one is stored as its text.
    let tamperings: &[(i64, &str)] = if is_postgres() {
        &[(3, "outcome = 7")]
    } else {
        &[
            (2, "details = X'00FF'"),
            (3, "outcome = 7"),
            (4, "prev_hash = 1.5"),
        ]
    };
    for &(seq, tampering) in tamperings {
        let app = app_with_sign_ups("type", 4).await;
        disable_append_only_guard(&app).await;
        app.exec(&format!(
            "UPDATE audit_events SET {tampering} WHERE seq = {seq}"
        ))
        .await;
        assert_cli_reports_break_at(&app, seq).await;
        app.stop().await;
    }
}

#[tokio::test]
async fn the_cli_verifier_catches_a_deleted_event() {
    let app = app_with_sign_ups("d", 4).await;
    disable_append_only_guard(&app).await;
    app.exec("DELETE FROM audit_events WHERE seq = 4").await;
    assert_cli_reports_break_at(&app, 4).await;
    app.stop().await;
}

#[tokio::test]
async fn a_recorded_head_catches_events_cut_from_the_end() {
    let app = app_with_sign_ups("cut", 3).await;
    let (_, report) = cli_verify(&app).await;
    let head = report
        .split("--expect-head ")
        .nth(1)
        .expect("head printed")
        .trim()
        .to_owned();
    let (intact, _) = cli_verify_expecting(&app, Some(&head)).await;
    assert!(intact);

    disable_append_only_guard(&app).await;
    let last = app.count("SELECT MAX(seq) FROM audit_events").await;
    app.exec(&format!("DELETE FROM audit_events WHERE seq = {last}"))
        .await;
    // The remaining chain is internally consistent, but it ends before the head of record,
    // and before the head kept by hand.
    let (intact, report) = cli_verify(&app).await;
    assert!(!intact);
    assert!(
        report.contains(&format!("BROKEN at seq {last}:")),
        "{report}"
    );
    let (intact, report) = cli_verify_expecting(&app, Some(&head)).await;
    assert!(!intact);
    assert!(
        report.contains(&format!("BROKEN at seq {last}:")),
        "{report}"
    );
    assert!(
        server::cli::audit_verify(&app.settings, Some("not-a-head"), &mut Vec::new())
            .await
            .is_err()
    );
    app.stop().await;
}

/// What someone who can write the database (but has not the report key, sealed by the KMS)
/// would add: an event chained correctly onto the newest one, its hash computed as the format
/// documents. Returns its seq and hash.
async fn forge_event_after_the_newest(app: &crate::helpers::TestApp) -> (i64, String) {
    use domain::audit::{Actor, AuditDraft, AuditEvent, Outcome, RequestMeta};
    use sea_orm::EntityTrait;
    let head = app.backend.audit_log.head().await.expect("head");
    let forged = AuditEvent::seal(
        head,
        AuditDraft::new(
            Actor::user(domain::ids::UserId::new_random()),
            domain::audit_action::AuditAction::ReviewCaseConfirmed,
            Outcome::Success,
            RequestMeta::default(),
        )
        .resource("case:framed"),
        time::OffsetDateTime::now_utc(),
    );
    server::storage::entities::audit_event::Entity::insert(server::storage::to_row(&forged))
        .exec_without_returning(app.db())
        .await
        .expect("an INSERT is not blocked by the append-only triggers");
    (forged.seq, forged.head().hash.to_hex())
}

/// The chain starts at seq 1 and the scan reads from there, so a row inserted below it (a
/// made-up key use or case decision, say) was never checked, yet the views showed it.
#[tokio::test]
async fn an_event_inserted_below_the_first_seq_is_a_finding_and_shown_nowhere() {
    use domain::audit::{Actor, AuditDraft, AuditEvent, AuditFilter, ChainHead, Outcome};
    use sea_orm::EntityTrait;
    let app = app_with_sign_ups("below", 2).await;
    let forged = AuditEvent::seal(
        ChainHead {
            seq: -2,
            hash: ChainHead::EMPTY.hash,
        },
        AuditDraft::new(
            Actor::user(domain::ids::UserId::new_random()),
            domain::audit_action::AuditAction::VaultKeyUsed,
            Outcome::Success,
            domain::audit::RequestMeta::default(),
        )
        .resource("key:victim"),
        time::OffsetDateTime::now_utc(),
    );
    assert_eq!(forged.seq, -1);
    let insert = || {
        server::storage::entities::audit_event::Entity::insert(server::storage::to_row(&forged))
            .exec_without_returning(app.db())
    };
    assert!(insert().await.is_err(), "a trigger refuses a seq below 1");
    // Someone who can write the database can drop the trigger too.
    app.exec(if crate::helpers::is_postgres() {
        "DROP TRIGGER audit_events_seq_from_one ON audit_events"
    } else {
        "DROP TRIGGER audit_events_seq_from_one"
    })
    .await;
    insert().await.expect("inserted once the trigger is gone");

    let (intact, report) = cli_verify(&app).await;
    assert!(!intact, "{report}");
    assert!(
        report.contains("BROKEN at seq -1:") && report.contains("inserted outside the server"),
        "{report}"
    );
    let log = &app.backend.audit_log;
    let shown = |events: Vec<AuditEvent>| events.iter().any(|event| event.seq < 1);
    assert!(!shown(log.recent(1_000).await.expect("recent")));
    assert!(
        !shown(
            log.for_resources(&["key:victim".to_owned()], 100)
                .await
                .expect("receipts")
        ),
        "a key's receipts do not show it"
    );
    assert!(
        !shown(
            log.search_before(&AuditFilter::default(), i64::MAX, 1_000)
                .await
                .expect("search")
        ),
        "the audit search does not show it"
    );
    assert!(
        !shown(
            log.search_after(&AuditFilter::default(), -10, 1_000)
                .await
                .expect("search")
        ),
        "nor a search that pages from below 1 (the cursor comes from the client)"
    );
    assert!(log.event(-1).await.expect("event").is_none());
    assert!(log.head().await.expect("head").seq > 0);
    app.stop().await;
}

#[tokio::test]
async fn an_event_added_after_the_newest_is_found_and_nothing_is_chained_onto_it() {
    let app = app_with_sign_ups("forge", 3).await;
    let users = app.count("SELECT COUNT(*) FROM users").await;
    let (seq, hash) = forge_event_after_the_newest(&app).await;
    let (intact, report) = cli_verify(&app).await;
    assert!(!intact, "{report}");
    assert!(
        report.contains(&format!("BROKEN at seq {seq}:"))
            && report.contains("added outside the server"),
        "{report}"
    );
    // Nothing is sealed over it: every audited write now fails, and says nothing was done.
    let response = app.sign_up(&app.new_client(), "after@example.com").await;
    assert_eq!(response.status(), 503);
    assert_eq!(app.count("SELECT COUNT(*) FROM users").await, users);
    assert_eq!(app.count("SELECT MAX(seq) FROM audit_events").await, seq);

    // The operator is told the way out: review what is past the record, then adopt it.
    assert!(
        report.contains(&format!("audit sign-head {seq}:{hash} --reason")),
        "{report}"
    );

    // Moving the head of record onto it too: the record is not the server's signature, and
    // nothing since the latest checkpoint can be vouched for, so no adoption is offered.
    let original = app.head_of_record().await;
    app.exec(&format!(
        "UPDATE audit_chain_lock SET head_seq = {seq}, head_hash = '{hash}' WHERE id = 1"
    ))
    .await;
    let (intact, report) = cli_verify(&app).await;
    assert!(!intact, "{report}");
    assert!(
        report.contains(&format!("BROKEN at seq {seq}:"))
            && report.contains("not signed by this server's report key")
            && report.contains("restore a backup")
            && !report.contains("sign-head"),
        "{report}"
    );
    let refused = sign_head(&app, &format!("{seq}:{hash}"), "looked at it").await;
    assert!(refused.is_err(), "a forged record is not adopted over");
    // Nor does clearing the signature get it signed: this chain's server signs heads already.
    assert_eq!(clear_the_signature_and_start_signing(&app).await, None);
    let (intact, report) = cli_verify(&app).await;
    assert!(
        !intact && report.contains("carries no signature"),
        "{report}"
    );
    assert!(
        sign_head(&app, &format!("{seq}:{hash}"), "looked at it")
            .await
            .is_err(),
        "an unsigned record is not adopted over"
    );
    // Nor does clearing the record altogether: it would offer the whole chain, rewritten at
    // will, for adoption.
    app.exec(
        "UPDATE audit_chain_lock SET head_seq = 0, head_hash = NULL, head_signature = NULL \
         WHERE id = 1",
    )
    .await;
    let (intact, report) = cli_verify(&app).await;
    assert!(
        !intact
            && report.contains("BROKEN at seq 1:")
            && report.contains("cleared outside the server")
            && report.contains("restore a backup")
            && !report.contains("sign-head"),
        "{report}"
    );
    assert!(
        sign_head(&app, &format!("{seq}:{hash}"), "looked at it")
            .await
            .is_err(),
        "a cleared record is not adopted over"
    );
    assert_eq!(
        app.sign_up(&app.new_client(), "later@example.com")
            .await
            .status(),
        503
    );

    // With the server's own record back, the operator adopts the event past it: only the
    // newest, named exactly, and with a reason.
    app.exec(&format!(
        "UPDATE audit_chain_lock SET head_seq = {}, head_hash = '{}', head_signature = '{}' \
         WHERE id = 1",
        original.0, original.1, original.2
    ))
    .await;
    let wrong = sign_head(&app, &format!("{}:{hash}", seq - 1), "looked at it").await;
    assert!(wrong.is_err());
    let no_reason = sign_head(&app, &format!("{seq}:{hash}"), " ").await;
    assert!(no_reason.is_err());
    sign_head(
        &app,
        &format!("{seq}:{hash}"),
        "case:framed confirmed with the reviewer by phone",
    )
    .await
    .expect("adopted");
    let adopted = app
        .text(
            "SELECT CAST(details AS TEXT) FROM audit_events WHERE action = 'audit.head_signed' \
             AND actor_id = 'cli'",
        )
        .await
        .expect("details");
    assert!(
        adopted.contains(&format!(
            "events {seq} to {seq} added past the head of record"
        )) && adopted.contains("confirmed with the reviewer by phone"),
        "{adopted}"
    );
    assert_eq!(
        app.sign_up(&app.new_client(), "later@example.com")
            .await
            .status(),
        200
    );
    let (intact, report) = cli_verify(&app).await;
    assert!(intact, "{report}");
    // A healthy chain has nothing to adopt.
    let head = app.backend.audit_log.head().await.expect("head");
    assert!(sign_head(&app, &head.to_string(), "again").await.is_err());
    app.stop().await;
}

#[tokio::test]
async fn adoption_checks_again_under_the_lock_that_the_events_link_up_to_the_head_given() {
    use domain::audit::{Actor, AuditDraft, AuditEvent, ChainHead, Outcome, RequestMeta};
    use sea_orm::EntityTrait;
    let app = app_with_sign_ups("relink", 2).await;
    let record = app.backend.audit_log.head().await.expect("head");
    // One event past the record, linked; a second that does not link to it (as a writer
    // racing the operator's review could leave the range).
    let (seq, hash) = forge_event_after_the_newest(&app).await;
    let unlinked = AuditEvent::seal(
        ChainHead {
            seq,
            hash: record.hash,
        },
        AuditDraft::new(
            Actor::user(domain::ids::UserId::new_random()),
            domain::audit_action::AuditAction::ReviewCaseConfirmed,
            Outcome::Success,
            RequestMeta::default(),
        ),
        time::OffsetDateTime::now_utc(),
    );
    server::storage::entities::audit_event::Entity::insert(server::storage::to_row(&unlinked))
        .exec_without_returning(app.db())
        .await
        .expect("inserted");
    assert_ne!(hash, unlinked.head().hash.to_hex());
    let adopted = app
        .backend
        .audit_chain
        .adopt_reviewed_head(
            unlinked.head(),
            "looked at it",
            time::OffsetDateTime::now_utc(),
        )
        .await;
    assert!(
        matches!(
            adopted,
            Err(server::storage::AdoptError::RangeChanged(ref b)) if b.seq == seq + 1
        ),
        "{adopted:?}"
    );
    assert_eq!(
        app.count("SELECT MAX(seq) FROM audit_events").await,
        seq + 1,
        "nothing adopted"
    );
    assert_eq!(
        app.count("SELECT head_seq FROM audit_chain_lock WHERE id = 1")
            .await,
        record.seq
    );
    app.stop().await;
}

#[tokio::test]
async fn a_rewritten_newest_event_hidden_behind_an_added_one_is_not_offered_for_adoption() {
    // A database writer replaces the event at the head of record (recomputing its hash) and
    // adds one after it, hoping the finding reads as "events past the record" and an operator
    // adopts the lot.
    let app = app_with_sign_ups("rewrite", 3).await;
    disable_append_only_guard(&app).await;
    let head = app.backend.audit_log.head().await.expect("head");
    let before = app
        .backend
        .audit_log
        .page(head.seq - 2, 1)
        .await
        .expect("page")
        .remove(0)
        .head();
    app.exec(&format!(
        "DELETE FROM audit_events WHERE seq = {}",
        head.seq
    ))
    .await;
    let rewritten = domain::audit::AuditEvent::seal(
        before,
        domain::audit::AuditDraft::new(
            domain::audit::Actor::system("audit"),
            domain::audit_action::AuditAction::SystemStart,
            domain::audit::Outcome::Success,
            domain::audit::RequestMeta::default(),
        ),
        time::OffsetDateTime::now_utc(),
    );
    {
        use sea_orm::EntityTrait;
        server::storage::entities::audit_event::Entity::insert(server::storage::to_row(&rewritten))
            .exec_without_returning(app.db())
            .await
            .expect("insert");
    }
    let (seq, hash) = forge_event_after_the_newest(&app).await;
    let (intact, report) = cli_verify(&app).await;
    assert!(!intact, "{report}");
    assert!(
        report.contains(&format!("BROKEN at seq {}:", head.seq)) && !report.contains("sign-head"),
        "the rewritten event is the finding, not the one added: {report}"
    );
    assert!(
        sign_head(&app, &format!("{seq}:{hash}"), "looked at it")
            .await
            .is_err()
    );
    assert_eq!(
        app.sign_up(&app.new_client(), "after@example.com")
            .await
            .status(),
        503
    );
    app.stop().await;
}

#[tokio::test]
async fn a_start_re_stored_with_other_spacing_still_keeps_a_cleared_signature_unsigned() {
    // The hash covers the parsed details, so re-storing the server's start with other spacing
    // leaves the chain intact: it must not hide that this chain's server signs heads, or a
    // cleared signature would be signed again at the next start over whatever the record says.
    let app = app_with_sign_ups("spacing", 1).await;
    disable_append_only_guard(&app).await;
    app.exec(
        "UPDATE audit_events SET details = REPLACE(details, '\"heads_signed\":true', \
         '\"heads_signed\": true') WHERE action = 'system.start'",
    )
    .await;
    assert_eq!(
        app.count(
            "SELECT COUNT(*) FROM audit_events WHERE action = 'system.start' \
             AND details LIKE '%\"heads_signed\": true%'"
        )
        .await,
        1
    );
    assert_eq!(clear_the_signature_and_start_signing(&app).await, None);
    app.backend.sign_unsigned_head().await.expect("runs");
    assert_eq!(
        app.text("SELECT head_signature FROM audit_chain_lock WHERE id = 1")
            .await,
        None
    );
    app.stop().await;
}

#[tokio::test]
async fn a_head_of_record_left_unsigned_by_an_older_version_is_signed_once_and_audited() {
    use domain::audit::{Actor, AuditDraft, AuditEvent, ChainHead, Outcome, RequestMeta};
    use sea_orm::{ConnectionTrait, EntityTrait, TransactionTrait};
    let db = crate::helpers::TestDatabase::new().await;
    let settings = crate::helpers::test_settings(&db);
    // A chain as a version before heads were signed left it: events, and an unsigned record.
    let legacy = server::startup::Backend::connect(
        &settings,
        std::sync::Arc::new(domain::clock::SystemClock),
    )
    .await
    .expect("backend");
    let txn = legacy.db.begin().await.expect("begin");
    let mut head = ChainHead::EMPTY;
    for n in 0..5 {
        let event = AuditEvent::seal(
            head,
            AuditDraft::new(
                Actor::system("server"),
                domain::audit_action::AuditAction::SystemStart,
                Outcome::Success,
                RequestMeta::default(),
            )
            .detail("version", format!("0.0.{n}")),
            time::OffsetDateTime::now_utc(),
        );
        head = event.head();
        server::storage::entities::audit_event::Entity::insert(server::storage::to_row(&event))
            .exec_without_returning(&txn)
            .await
            .expect("insert");
    }
    txn.execute_unprepared(&format!(
        "UPDATE audit_chain_lock SET head_seq = {}, head_hash = '{}', head_signature = NULL \
         WHERE id = 1",
        head.seq,
        head.hash.to_hex()
    ))
    .await
    .expect("record");
    txn.commit().await.expect("commit");
    drop(legacy);

    // A read-only check leaves it alone (and says the record is unsigned)...
    let mut out = Vec::new();
    let intact = server::cli::audit_verify(&settings, None, &mut out)
        .await
        .expect("verify runs");
    let report = String::from_utf8(out).expect("utf8");
    assert!(
        !intact && report.contains("carries no signature"),
        "{report}"
    );
    // ...the next start signs it, audited, and the chain verifies.
    let app = crate::helpers::spawn_on(
        db,
        settings,
        std::sync::Arc::new(crate::helpers::TestClock::default()),
    )
    .await;
    let signed = "SELECT COUNT(*) FROM audit_events WHERE action = 'audit.head_signed' \
                  AND details LIKE '%\"seq\":5%'";
    assert_eq!(app.count(signed).await, 1);
    assert_eq!(
        app.sign_up(&app.new_client(), "new@example.com")
            .await
            .status(),
        200
    );
    let (intact, report) = cli_verify(&app).await;
    assert!(intact, "{report}");
    app.stop().await;
}

#[tokio::test]
async fn reviewers_read_the_log_and_verify_it_in_the_app() {
    let app = spawn_app().await;
    let reviewer = app.signed_in_as("sam@example.com", Role::Reviewer).await;
    let events: Vec<serde_json::Value> = app
        .call(&reviewer, "audit/recent", &[("limit", "5")])
        .await
        .json()
        .await
        .expect("json");
    assert!(!events.is_empty() && events.len() <= 5);
    let login = events
        .iter()
        .find(|e| e["action"] == "auth.login")
        .expect("the reviewer's login");
    assert_eq!(login["actor_email"], "sam@example.com", "{login}");
    assert!(
        events[0]["seq"].as_i64() > events[events.len() - 1]["seq"].as_i64(),
        "newest first"
    );

    let report: serde_json::Value = app
        .call(&reviewer, "audit/verify", &[])
        .await
        .json()
        .await
        .expect("json");
    assert!(report["broken_at"].is_null(), "{report}");
    assert!(report["events_checked"].as_u64().expect("count") >= 3);

    disable_append_only_guard(&app).await;
    app.exec("UPDATE audit_events SET outcome = 'failure' WHERE seq = 2")
        .await;
    let report: serde_json::Value = app
        .call(&reviewer, "audit/verify", &[])
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(report["broken_at"][0], 2, "{report}");
    app.stop().await;
}
