//! Audit reports: filtered search in SQL, the streamed CSV download (flat memory, pinned head,
//! self-verifying, audited), formula neutralisation, roles, and PDF jobs.

use domain::account::Role;
use domain::audit::report::verify_report;
use domain::audit::{Actor, ActorKind, AuditDraft, AuditFilter, Outcome, RequestMeta};
use domain::audit_action::AuditAction;
use time::OffsetDateTime;

use crate::helpers::{TestApp, spawn_app};
use crate::report_fixtures::{append_events, downloads, varied};

async fn reviewer_id(app: &TestApp, email: &str) -> domain::authz::Reviewer {
    let email = domain::account::Email::parse(email).expect("email");
    let user = app
        .backend
        .services
        .accounts
        .user_by_email(&email)
        .await
        .expect("lookup")
        .expect("user");
    app.backend
        .services
        .accounts
        .reviewer(user.id)
        .await
        .expect("reviewer")
}

#[tokio::test]
async fn sql_filters_select_exactly_what_the_filter_matches() {
    let app = spawn_app().await;
    // Fractions of a second of every length: the stored text does not sort by time on its own.
    let start = time::macros::datetime!(2026-11-01 10:00:00 UTC);
    append_events(
        &app,
        300,
        start,
        time::Duration::microseconds(123_450),
        varied,
    )
    .await;
    let all = app
        .backend
        .audit_log
        .search_after(&AuditFilter::default(), 0, 10_000)
        .await
        .expect("all");
    let at = |i: i32| start + time::Duration::microseconds(123_450) * i;
    let filters = [
        AuditFilter {
            from: Some(at(40)),
            to: Some(at(200)),
            ..AuditFilter::default()
        },
        AuditFilter {
            from: Some(at(41) + time::Duration::microseconds(1)),
            to: Some(time::macros::datetime!(2026-11-01 10:00:10 UTC)),
            ..AuditFilter::default()
        },
        AuditFilter {
            actor_id: Some("actor-3".into()),
            action_prefix: Some("trade.".into()),
            ..AuditFilter::default()
        },
        AuditFilter {
            action_prefix: Some("Trade.".into()),
            ..AuditFilter::default()
        },
        AuditFilter {
            action_prefix: Some("auth.login".into()),
            outcome: Some(Outcome::Denied),
            ..AuditFilter::default()
        },
        AuditFilter {
            action_prefix: Some("%".into()),
            ..AuditFilter::default()
        },
        AuditFilter {
            resource: Some("order:2".into()),
            request_id: Some("req-4".into()),
            up_to_seq: Some(200),
            ..AuditFilter::default()
        },
    ];
    for filter in filters {
        let expected: Vec<i64> = all
            .iter()
            .filter(|e| filter.matches(e))
            .map(|e| e.seq)
            .collect();
        let ascending: Vec<i64> = app
            .backend
            .audit_log
            .search_after(&filter, 0, 10_000)
            .await
            .expect("search")
            .iter()
            .map(|e| e.seq)
            .collect();
        assert_eq!(ascending, expected, "{filter:?}");
        let mut descending: Vec<i64> = app
            .backend
            .audit_log
            .search_before(&filter, i64::MAX, 10_000)
            .await
            .expect("search")
            .iter()
            .map(|e| e.seq)
            .collect();
        descending.reverse();
        assert_eq!(descending, expected, "{filter:?}");
    }
    app.stop().await;
}

#[tokio::test]
async fn search_pages_both_ways_and_details_link_neighbours() {
    let app = spawn_app().await;
    app.signed_in_as("rita@example.com", Role::Reviewer).await;
    let reviewer = reviewer_id(&app, "rita@example.com").await;
    let start = OffsetDateTime::now_utc() - time::Duration::hours(1);
    append_events(&app, 50, start, time::Duration::SECOND, varied).await;
    let audit = &app.backend.services.audit;
    let filter = AuditFilter {
        action_prefix: Some("trade.".into()),
        ..AuditFilter::default()
    };
    use domain::audit::reports::{AuditPage, PageCursor};
    let newest = audit
        .search(
            &reviewer,
            &filter,
            AuditPage {
                cursor: PageCursor::Newest,
                limit: 10,
            },
        )
        .await
        .expect("page");
    assert_eq!(newest.events.len(), 10);
    assert!(
        newest
            .events
            .windows(2)
            .all(|w| w[0].event.seq > w[1].event.seq)
    );
    assert!(newest.events.iter().all(|e| filter.matches(&e.event)));
    assert_eq!(newest.newer, None);
    let older_cursor = newest.older.expect("older page");
    let older = audit
        .search(
            &reviewer,
            &filter,
            AuditPage {
                cursor: PageCursor::Before(older_cursor),
                limit: 10,
            },
        )
        .await
        .expect("page");
    assert!(older.events[0].event.seq < newest.events[9].event.seq);
    let back = audit
        .search(
            &reviewer,
            &filter,
            AuditPage {
                cursor: PageCursor::After(older.newer.expect("newer link")),
                limit: 10,
            },
        )
        .await
        .expect("page");
    assert_eq!(back, newest);

    let middle = newest.events[5].event.seq;
    let detail = audit
        .event_detail(&reviewer, middle)
        .await
        .expect("read")
        .expect("found");
    assert_eq!(detail.previous.expect("previous").seq, middle - 1);
    assert_eq!(detail.next.expect("next").seq, middle + 1);
    assert!(detail.links_hold());
    assert_eq!(
        audit
            .event_detail(&reviewer, 1_000_000)
            .await
            .expect("read"),
        None
    );
    app.stop().await;
}

#[tokio::test]
async fn formula_cells_are_neutralised_in_the_file_and_restored_by_verify() {
    let app = spawn_app().await;
    let reviewer = app.signed_in_as("fay@example.com", Role::Admin).await;
    let dangerous = [
        "=HYPERLINK(\"http://evil\")",
        "+1+1",
        "-2",
        "@SUM(A1)",
        "\tcmd",
        "'quoted",
    ];
    let start = OffsetDateTime::now_utc() - time::Duration::minutes(5);
    append_events(&app, dangerous.len(), start, time::Duration::SECOND, |i| {
        AuditDraft::new(
            Actor {
                kind: ActorKind::Agent,
                id: Some(dangerous[i].to_owned()),
            },
            AuditAction::AgentProposalReceived,
            Outcome::Success,
            RequestMeta::default(),
        )
        .resource(dangerous[i])
    })
    .await;
    let body = reviewer
        .get(format!("{}/reports/audit.csv?action=agent.", app.address))
        .send()
        .await
        .expect("request")
        .bytes()
        .await
        .expect("body");
    let text = String::from_utf8_lossy(&body);
    for cell in dangerous {
        // Every dangerous cell starts with a quote in the file: no line has a bare one.
        for line in text.lines().skip(1).filter(|l| !l.starts_with('#')) {
            for field in line.split(',') {
                let field = field.trim_start_matches('"');
                assert!(
                    !field.starts_with(['=', '+', '-', '@', '\t']),
                    "unneutralised cell {field:?} in {line}"
                );
            }
        }
        assert!(
            text.contains(&format!("'{}", cell.replace('"', "\"\""))),
            "{cell}"
        );
    }
    let verified = verify_report(&body, Some(&app.backend.services.audit.report_public_key()))
        .expect("verifies: cells are restored before hashing");
    assert_eq!(verified.manifest.row_count, dangerous.len() as u64);
    app.stop().await;
}

#[tokio::test]
async fn only_reviewers_and_admins_download_and_bad_filters_record_nothing() {
    let app = spawn_app().await;
    let trader = app.signed_in_as("ted@example.com", Role::Trader).await;
    let reviewer = app.signed_in_as("rae@example.com", Role::Reviewer).await;
    let url = format!("{}/reports/audit.csv", app.address);
    let status = |client: reqwest::Client, url: String| async move {
        client.get(url).send().await.expect("request").status()
    };
    assert_eq!(status(app.new_client(), url.clone()).await, 401);
    assert_eq!(status(trader.clone(), url.clone()).await, 403);
    let events_before = app.count("SELECT COUNT(*) FROM audit_events").await;
    for bad in [
        "?from=yesterday",
        "?from=2026-11-02&to=2026-11-01",
        "?outcome=maybe",
        "?actor=nobody@example.com",
    ] {
        let response = reviewer
            .get(format!("{url}{bad}"))
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 400, "{bad}");
        let message = response.text().await.expect("text");
        assert!(!message.trim().is_empty(), "{bad}: a clear message");
    }
    assert_eq!(
        app.count("SELECT COUNT(*) FROM audit_events").await,
        events_before,
        "nothing recorded for refused downloads"
    );
    // An actor given by email selects that user's events only.
    let response = reviewer
        .get(format!("{url}?actor=ted%40example.com"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    let body = response.bytes().await.expect("body");
    let verified = verify_report(&body, None).expect("verifies");
    let ted = domain::account::Email::parse("ted@example.com").expect("email");
    let ted = app
        .backend
        .services
        .accounts
        .user_by_email(&ted)
        .await
        .expect("lookup")
        .expect("ted");
    assert_eq!(
        verified.manifest.info.filter.actor_id.as_deref(),
        Some(ted.id.to_string().as_str())
    );
    assert!(verified.manifest.row_count >= 1, "ted's sign-in at least");
    app.stop().await;
}

#[tokio::test]
async fn a_report_is_recorded_as_started_before_its_first_row_leaves() {
    let app = spawn_app().await;
    let reviewer = app.signed_in_as("sam@example.com", Role::Reviewer).await;
    let started = || {
        app.count(
            "SELECT COUNT(*) FROM audit_events WHERE action = 'report.started' \
             AND resource = 'audit-report' AND details LIKE '%\"format\":\"csv\"%'",
        )
    };
    assert_eq!(started().await, 0);
    // Only the status line is read, then the connection is dropped: whatever arrived, the
    // download is on record.
    let response = reviewer
        .get(format!("{}/reports/audit.csv", app.address))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    drop(response);
    assert_eq!(started().await, 1);
    app.stop().await;
}

async fn pdf_status(app: &TestApp, client: &reqwest::Client, job: &str) -> reqwest::Response {
    app.call(client, "reports/pdf/status", &[("job_id", job)])
        .await
}

#[tokio::test]
async fn a_pdf_job_builds_a_pdf_whose_embedded_report_verifies_for_its_requester_only() {
    let app = spawn_app().await;
    let reviewer = app.signed_in_as("pia@example.com", Role::Reviewer).await;
    let other = app.signed_in_as("oz@example.com", Role::Reviewer).await;
    let start = OffsetDateTime::now_utc() - time::Duration::hours(2);
    append_events(&app, 500, start, time::Duration::SECOND, varied).await;

    let response = app
        .call(
            &reviewer,
            "reports/pdf/start",
            &[("filter[action]", "trade.")],
        )
        .await;
    assert_eq!(response.status(), 200);
    let job: String = response.json().await.expect("job id");
    let mut view = serde_json::Value::Null;
    for _ in 0..600 {
        let response = pdf_status(&app, &reviewer, &job).await;
        assert_eq!(response.status(), 200);
        view = response.json().await.expect("json");
        if view["finished"] == true {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(view["finished"], true, "{view}");
    assert_eq!(view["error"], serde_json::Value::Null, "{view}");
    let url = view["download_url"]
        .as_str()
        .expect("download url")
        .to_owned();
    assert!(view["total"].as_u64().expect("total") > 0);
    assert_eq!(view["done"], view["total"]);

    // Nobody else sees or fetches it.
    assert_eq!(pdf_status(&app, &other, &job).await.status(), 404);
    let stolen = other
        .get(format!("{}{url}", app.address))
        .send()
        .await
        .expect("request");
    assert_eq!(stolen.status(), 404);
    let anonymous = app
        .new_client()
        .get(format!("{}{url}", app.address))
        .send()
        .await
        .expect("request");
    assert_eq!(anonymous.status(), 401);

    let response = reviewer
        .get(format!("{}{url}", app.address))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/pdf");
    let disposition = response.headers()["content-disposition"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(disposition.ends_with(".pdf\""), "{disposition}");
    let pdf = response.bytes().await.expect("pdf");
    assert!(pdf.starts_with(b"%PDF-"));
    let csv = server::reports::pdf::embedded_report(&pdf).expect("embedded report");
    let verified = verify_report(&csv, Some(&app.backend.services.audit.report_public_key()))
        .expect("the embedded report verifies");
    // 500 bulk events, every other one a trade action.
    assert_eq!(verified.manifest.row_count, 250);
    assert_eq!(
        verified.manifest.info.filter.action_prefix.as_deref(),
        Some("trade.")
    );
    let recorded = downloads(&app).await;
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].details["format"], "pdf");
    assert_eq!(recorded[0].details["row_count"], 250);
    app.stop().await;
}
