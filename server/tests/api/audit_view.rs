//! The auditor's view of the log through its server functions: filtered search with keyset
//! paging, one event with its chain links, verification as a background job, checkpoints.

use std::time::Duration;

use domain::account::Role;
use domain::audit::{Actor, AuditDraft, AuditEvent, AuditFilter, Outcome, RequestMeta};
use domain::audit_action::AuditAction;
use serde_json::Value;

use crate::helpers::{PASSWORD, TestApp, is_postgres, spawn_app};

const PAGE: usize = 50;

async fn json(response: reqwest::Response) -> Value {
    let status = response.status();
    let body = response.text().await.expect("body");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).expect("json")
}

fn seqs(page: &Value) -> Vec<i64> {
    page["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["seq"].as_i64().expect("seq"))
        .collect()
}

/// Every event in the log, oldest first.
async fn all_events(app: &TestApp) -> Vec<AuditEvent> {
    app.backend
        .audit_log
        .page(0, 100_000)
        .await
        .expect("read the log")
}

/// The newest page the view should show for `filter`.
fn expected_newest(events: &[AuditEvent], filter: &AuditFilter) -> Vec<i64> {
    events
        .iter()
        .rev()
        .filter(|e| filter.matches(e))
        .take(PAGE)
        .map(|e| e.seq)
        .collect()
}

/// A log with traders who signed up, signed in, and failed a sign-in; and a reviewer.
async fn app_with_history(traders: usize) -> (TestApp, reqwest::Client) {
    let app = spawn_app().await;
    for n in 0..traders {
        let client = app.new_client();
        let email = format!("trader{n}@example.com");
        assert_eq!(app.sign_up(&client, &email).await.status(), 200);
        if n % 3 == 0 {
            let stranger = app.new_client();
            let response = app
                .log_in(&stranger, &email, "not the password at all")
                .await;
            assert_eq!(response.status(), 401);
        }
    }
    let reviewer = app.signed_in_as("rita@example.com", Role::Reviewer).await;
    (app, reviewer)
}

#[tokio::test]
async fn each_filter_narrows_the_results_to_the_matching_events() {
    let (app, reviewer) = app_with_history(6).await;
    let trader = app.new_client();
    assert_eq!(
        app.log_in(&trader, "trader1@example.com", PASSWORD)
            .await
            .status(),
        200
    );
    let trader_id = app.who_am_i(&trader).await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let events = all_events(&app).await;
    let with_resource = events
        .iter()
        .find(|e| e.resource.is_some())
        .expect("an event about a resource");
    let with_request = events
        .iter()
        .rev()
        .find(|e| e.meta.request_id.is_some())
        .expect("an event with a request id");
    let day = with_request.occurred_at.date();
    let next_day = day.next_day().expect("a next day");
    let resource = with_resource.resource.clone().expect("resource");
    let request_id = with_request.meta.request_id.clone().expect("request id");

    let cases: Vec<(Vec<(&str, String)>, AuditFilter)> = vec![
        (
            vec![("filter[action]", "auth.".into())],
            AuditFilter {
                action_prefix: Some("auth.".into()),
                ..AuditFilter::default()
            },
        ),
        (
            vec![("filter[outcome]", "failure".into())],
            AuditFilter {
                outcome: Some(Outcome::Failure),
                ..AuditFilter::default()
            },
        ),
        (
            vec![("filter[actor]", "trader1@example.com".into())],
            AuditFilter {
                actor_id: Some(trader_id.clone()),
                ..AuditFilter::default()
            },
        ),
        (
            vec![("filter[actor]", trader_id.clone())],
            AuditFilter {
                actor_id: Some(trader_id.clone()),
                ..AuditFilter::default()
            },
        ),
        (
            vec![("filter[resource]", resource.clone())],
            AuditFilter {
                resource: Some(resource.clone()),
                ..AuditFilter::default()
            },
        ),
        (
            vec![("filter[request_id]", request_id.clone())],
            AuditFilter {
                request_id: Some(request_id.clone()),
                ..AuditFilter::default()
            },
        ),
        (
            vec![
                ("filter[from]", day.to_string()),
                ("filter[to]", day.to_string()),
            ],
            AuditFilter {
                from: Some(day.midnight().assume_utc()),
                to: Some(next_day.midnight().assume_utc()),
                ..AuditFilter::default()
            },
        ),
        (
            vec![("filter[from]", next_day.to_string())],
            AuditFilter {
                from: Some(next_day.midnight().assume_utc()),
                ..AuditFilter::default()
            },
        ),
        (
            vec![
                ("filter[action]", "auth.login".into()),
                ("filter[outcome]", "success".into()),
                ("filter[actor]", "trader1@example.com".into()),
            ],
            AuditFilter {
                action_prefix: Some("auth.login".into()),
                outcome: Some(Outcome::Success),
                actor_id: Some(trader_id.clone()),
                ..AuditFilter::default()
            },
        ),
    ];
    for (form, filter) in cases {
        let fields: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let page = json(app.call(&reviewer, "audit/search", &fields).await).await;
        let expected = expected_newest(&events, &filter);
        assert_eq!(seqs(&page), expected, "{form:?}");
        // Not vacuous: only the period starting tomorrow selects nothing.
        let tomorrow = form == [("filter[from]", next_day.to_string())];
        assert_eq!(expected.is_empty(), tomorrow, "{form:?}");
    }
    let logins = json(
        app.call(&reviewer, "audit/search", &[("filter[action]", "auth.")])
            .await,
    )
    .await;
    for event in logins["events"].as_array().expect("events") {
        assert!(
            event["action"]
                .as_str()
                .expect("action")
                .starts_with("auth.")
        );
    }
    assert!(
        logins["events"]
            .as_array()
            .expect("events")
            .iter()
            .any(|e| e["actor_email"] == "trader1@example.com"),
        "events name their actor's email: {logins}"
    );
    app.stop().await;
}

#[tokio::test]
async fn bad_filters_are_refused_with_a_clear_message() {
    let (app, reviewer) = app_with_history(1).await;
    for form in [
        vec![("filter[from]", "last tuesday")],
        vec![("filter[outcome]", "maybe")],
        vec![("filter[actor]", "nobody@example.com")],
        vec![("before", "10"), ("after", "2")],
        vec![("before", "ten")],
    ] {
        let response = app.call(&reviewer, "audit/search", &form).await;
        assert_eq!(response.status(), 400, "{form:?}");
        let body = response.text().await.expect("body");
        assert!(!body.contains("Something went wrong"), "{body}");
    }
    app.stop().await;
}

#[tokio::test]
async fn paging_covers_the_whole_chain_with_no_overlap_or_gap() {
    let (app, reviewer) = app_with_history(2).await;
    // Recorded straight into the log: signing up this many would hit the sign-in rate limit.
    for n in 0..120 {
        let action = if n % 2 == 0 {
            AuditAction::AccountCreate
        } else {
            AuditAction::AuthLogin
        };
        app.backend
            .audit_log
            .record(
                AuditDraft::new(
                    Actor::system("test"),
                    action,
                    Outcome::Success,
                    RequestMeta::default(),
                )
                .detail("n", n),
            )
            .await
            .expect("recorded");
    }
    let head = all_events(&app).await.last().expect("events").seq;
    assert!(
        head > 2 * PAGE as i64,
        "enough events for three pages: {head}"
    );

    // Older, from the newest page to the first event.
    let mut pages = vec![json(app.call(&reviewer, "audit/search", &[]).await).await];
    assert!(
        pages[0]["newer"].is_null(),
        "the newest page has nothing newer"
    );
    while let Some(before) = pages.last().and_then(|p| p["older"].as_i64()) {
        let page = json(
            app.call(
                &reviewer,
                "audit/search",
                &[("before", &before.to_string())],
            )
            .await,
        )
        .await;
        pages.push(page);
        assert!(pages.len() < 100, "paging terminates");
    }
    let walked: Vec<i64> = pages.iter().flat_map(seqs).collect();
    assert_eq!(
        walked,
        (1..=head).rev().collect::<Vec<_>>(),
        "every seq once, newest first"
    );
    assert!(pages.iter().all(|p| seqs(p).len() <= PAGE));
    assert!(pages.last().is_some_and(|p| p["older"].is_null()));

    // And back: each newer page is the page shown before it.
    let mut back = pages.last().cloned().expect("a page");
    for expected in pages.iter().rev().skip(1) {
        let after = back["newer"].as_i64().expect("a newer page");
        back = json(
            app.call(&reviewer, "audit/search", &[("after", &after.to_string())])
                .await,
        )
        .await;
        assert_eq!(seqs(&back), seqs(expected));
    }
    assert!(back["newer"].is_null());

    // Filtered paging covers exactly the matching events.
    let filter = AuditFilter {
        action_prefix: Some("account.".into()),
        ..AuditFilter::default()
    };
    let matching: Vec<i64> = all_events(&app)
        .await
        .iter()
        .rev()
        .filter(|e| filter.matches(e))
        .map(|e| e.seq)
        .collect();
    assert!(matching.len() > PAGE, "the filter spans pages");
    let mut walked = Vec::new();
    let mut before: Option<i64> = None;
    loop {
        let mut form = vec![("filter[action]", "account.".to_owned())];
        if let Some(seq) = before {
            form.push(("before", seq.to_string()));
        }
        let fields: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let page = json(app.call(&reviewer, "audit/search", &fields).await).await;
        walked.extend(seqs(&page));
        match page["older"].as_i64() {
            Some(seq) => before = Some(seq),
            None => break,
        }
    }
    assert_eq!(walked, matching);
    app.stop().await;
}

#[tokio::test]
async fn an_event_links_to_its_neighbours_and_an_unknown_seq_is_not_found() {
    let (app, reviewer) = app_with_history(2).await;
    let events = all_events(&app).await;
    let middle = &events[1];
    let detail = json(
        app.call(
            &reviewer,
            "audit/event",
            &[("seq", &middle.seq.to_string())],
        )
        .await,
    )
    .await;
    assert_eq!(detail["event"]["seq"], middle.seq);
    assert_eq!(detail["event"]["hash"], middle.hash.to_hex());
    assert_eq!(detail["event"]["prev_hash"], middle.prev_hash.to_hex());
    assert_eq!(detail["previous"]["seq"], events[0].seq);
    assert_eq!(detail["previous"]["hash"], events[0].hash.to_hex());
    assert_eq!(detail["previous"]["links"], true);
    assert_eq!(detail["next"]["seq"], events[2].seq);
    assert_eq!(detail["next"]["links"], true);
    let pretty = detail["details_pretty"].as_str().expect("details");
    assert_eq!(
        serde_json::from_str::<Value>(pretty).expect("json details"),
        middle.details
    );

    let first = json(app.call(&reviewer, "audit/event", &[("seq", "1")]).await).await;
    assert!(first["previous"].is_null());
    assert_eq!(first["event"]["prev_hash"], "0".repeat(64));

    let newest = events.last().expect("events").seq;
    for unknown in [newest + 1000, 0, -3] {
        let response = app
            .call(&reviewer, "audit/event", &[("seq", &unknown.to_string())])
            .await;
        assert_eq!(response.status(), 404, "seq {unknown}");
    }
    let response = app.call(&reviewer, "audit/event", &[("seq", "abc")]).await;
    assert_eq!(response.status(), 400);
    app.stop().await;
}

/// Polls a verification job until it finishes.
async fn finished_job(app: &TestApp, client: &reqwest::Client, job: &str) -> Value {
    for _ in 0..200 {
        let status = json(
            app.call(client, "audit/verify/status", &[("job_id", job)])
                .await,
        )
        .await;
        let checked = status["checked"].as_u64().expect("checked");
        let total = status["total"].as_u64().expect("total");
        assert!(checked <= total || status["finished"] == true, "{status}");
        if status["finished"] == true {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the verification did not finish");
}

async fn start_verify(app: &TestApp, client: &reqwest::Client) -> String {
    json(app.call(client, "audit/verify/start", &[]).await)
        .await
        .as_str()
        .expect("job id")
        .to_owned()
}

#[tokio::test]
async fn verification_runs_as_a_job_that_only_its_requester_can_read() {
    let (app, reviewer) = app_with_history(3).await;
    let head = all_events(&app).await.last().expect("events").seq;
    let job = start_verify(&app, &reviewer).await;

    let other = app.signed_in_as("otto@example.com", Role::Reviewer).await;
    let response = app
        .call(&other, "audit/verify/status", &[("job_id", &job)])
        .await;
    assert_eq!(
        response.status(),
        404,
        "another reviewer cannot read the job"
    );
    let response = app
        .call(&reviewer, "audit/verify/status", &[("job_id", "not-a-job")])
        .await;
    assert_eq!(response.status(), 404);

    let status = finished_job(&app, &reviewer, &job).await;
    let report = &status["report"];
    assert!(report["broken_at"].is_null(), "{status}");
    assert!(
        report["events_checked"].as_i64().expect("checked") >= head,
        "{status}"
    );
    assert!(status["total"].as_i64().expect("total") >= head, "{status}");
    assert_eq!(status["checked"], status["report"]["events_checked"]);
    // The job records who verified, like the in-page check.
    let verified = app
        .count("SELECT COUNT(*) FROM audit_events WHERE action = 'audit.verify'")
        .await;
    assert_eq!(verified, 1);

    // With a signed checkpoint, the result names it.
    let checkpoint = json(app.call(&reviewer, "audit/checkpoints/sign", &[]).await).await;
    let job = start_verify(&app, &reviewer).await;
    let status = finished_job(&app, &reviewer, &job).await;
    assert_eq!(
        status["report"]["checkpoint"]["seq"], checkpoint["seq"],
        "{status}"
    );

    // A tampered event: the job names the first bad seq.
    if is_postgres() {
        app.exec("ALTER TABLE audit_events DISABLE TRIGGER USER")
            .await;
    } else {
        app.exec("DROP TRIGGER audit_events_no_update; DROP TRIGGER audit_events_no_delete;")
            .await;
    }
    app.exec("UPDATE audit_events SET outcome = 'denied' WHERE seq = 3")
        .await;
    let job = start_verify(&app, &reviewer).await;
    let status = finished_job(&app, &reviewer, &job).await;
    assert_eq!(status["report"]["broken_at"][0], 3, "{status}");
    assert!(
        status["report"]["broken_at"][1]
            .as_str()
            .is_some_and(|why| !why.is_empty()),
        "{status}"
    );
    app.stop().await;
}

#[tokio::test]
async fn checkpoints_are_listed_newest_first_after_signing() {
    let (app, reviewer) = app_with_history(1).await;
    let empty = json(app.call(&reviewer, "audit/checkpoints", &[]).await).await;
    assert_eq!(empty, serde_json::json!([]));
    let first = json(app.call(&reviewer, "audit/checkpoints/sign", &[]).await).await;
    app.sign_up(&app.new_client(), "later@example.com").await;
    let second = json(app.call(&reviewer, "audit/checkpoints/sign", &[]).await).await;
    assert!(second["seq"].as_i64() > first["seq"].as_i64());
    assert_eq!(second["trigger"], "manual");
    let list = json(app.call(&reviewer, "audit/checkpoints", &[]).await).await;
    let listed: Vec<i64> = list
        .as_array()
        .expect("list")
        .iter()
        .map(|c| c["seq"].as_i64().expect("seq"))
        .collect();
    assert_eq!(
        listed,
        vec![
            second["seq"].as_i64().expect("seq"),
            first["seq"].as_i64().expect("seq")
        ]
    );
    assert!(
        list.as_array()
            .expect("list")
            .iter()
            .all(|c| c["valid"] == true)
    );
    let key = json(app.call(&reviewer, "audit/report-key", &[]).await).await;
    assert_eq!(list[0]["public_key"], key);
    app.stop().await;
}

#[tokio::test]
async fn traders_are_refused_and_visitors_asked_to_sign_in_on_every_audit_call() {
    let (app, reviewer) = app_with_history(1).await;
    let job = start_verify(&app, &reviewer).await;
    let trader = app.new_client();
    assert_eq!(app.sign_up(&trader, "tess@example.com").await.status(), 200);
    let visitor = app.new_client();
    let calls: [(&str, Vec<(&str, &str)>); 7] = [
        ("audit/search", vec![]),
        ("audit/event", vec![("seq", "1")]),
        ("audit/verify/start", vec![]),
        ("audit/verify/status", vec![("job_id", job.as_str())]),
        ("audit/checkpoints", vec![]),
        ("audit/checkpoints/sign", vec![]),
        ("audit/verify", vec![]),
    ];
    let before = app.count("SELECT COUNT(*) FROM audit_checkpoints").await;
    for (endpoint, form) in &calls {
        let response = app.call(&trader, endpoint, form).await;
        assert_eq!(response.status(), 403, "trader on {endpoint}");
        let response = app.call(&visitor, endpoint, form).await;
        assert_eq!(response.status(), 401, "visitor on {endpoint}");
    }
    assert_eq!(
        app.count("SELECT COUNT(*) FROM audit_checkpoints").await,
        before,
        "nothing was signed"
    );
    app.stop().await;
}
