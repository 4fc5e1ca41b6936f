//! The trading store on the real database: seeded limits, controls, the blocklist, orders
//! decided with their audit events in one transaction (and not at all without them), claims
//! and settlements under concurrent callers (one winner), owner isolation, usage arithmetic,
//! case decisions and agent tokens.

use domain::audit_action::AuditAction;
use std::collections::BTreeMap;
use std::sync::Arc;

use domain::account::{Email, Password, Role, UserId};
use domain::audit::{
    Actor, AuditDraft, Outcome, RequestMeta, canonical_time, parse_canonical_time,
};
use domain::keys::{ExchangeName, KeyEnvironment, KeyId, OrderType};
use domain::ports::{Clock, StoreError};
use domain::risk::{
    AnomalyScore, Contribution, Feature, LimitField, OrderSide, Rule, RuleHit, TradeSample,
    TradingState, Verdict,
};
use domain::trading::{
    AgentScope, AgentStore, AgentToken, AnomalyCase, ApprovalState, BlockedRange,
    BlockedRangeStore, CaseDecisionWrite, CaseEvidence, CaseId, CaseStatus, CaseStore,
    ControlStore, ControlsChange, Fill, HoldKind, Order, OrderDecisionWrite, OrderId, OrderRecord,
    OrderRecordQuery, OrderSource, OrderStatus, OrderStore, OrderUpdate, Portfolio, Proposal,
    ProposalStatus, ScreeningSettings, ScreeningStore, UsageWindows, UserControls, Venue,
    counted_notional,
};
use rust_decimal::Decimal;
use server::storage::SqlTradingStore;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use crate::helpers::{PASSWORD, TestApp, is_postgres, spawn_app};

const RACERS: usize = 20;

async fn new_user(app: &TestApp, email: &str, role: Role) -> UserId {
    app.backend
        .services
        .accounts
        .sign_up(
            Email::parse(email).expect("email"),
            Password::parse(PASSWORD.into()).expect("password"),
            role,
            Actor::system("test"),
            RequestMeta::default(),
        )
        .await
        .expect("user created")
        .id
}

fn store(app: &TestApp) -> Arc<SqlTradingStore> {
    Arc::new(SqlTradingStore::new(
        app.backend.audit_chain.clone(),
        app.clock.clone(),
    ))
}

fn draft(action: AuditAction) -> AuditDraft {
    AuditDraft::new(
        Actor::system("test"),
        action,
        Outcome::Success,
        RequestMeta::default(),
    )
}

async fn audit_events(app: &TestApp) -> i64 {
    app.count("SELECT COUNT(*) FROM audit_events").await
}

async fn actions(app: &TestApp, action: &str) -> i64 {
    app.count(&format!(
        "SELECT COUNT(*) FROM audit_events WHERE action = '{action}'"
    ))
    .await
}

/// Now, at the precision the database keeps (microseconds), so rows read back compare equal.
fn now(app: &TestApp) -> OffsetDateTime {
    parse_canonical_time(&canonical_time(app.clock.now())).expect("canonical time")
}

fn dec(raw: &str) -> Decimal {
    raw.parse().expect("test decimal")
}

fn anomaly(score: f64) -> AnomalyScore {
    AnomalyScore {
        score,
        contributions: vec![
            Contribution {
                feature: Feature::NotionalOutlier,
                strength: 0.75,
                weight: 0.5,
                detail: "size 12 times the median".into(),
            },
            Contribution {
                feature: Feature::NewIp,
                strength: 1.0,
                weight: 0.25,
                detail: "first order from 203.0.113.7".into(),
            },
        ],
    }
}

/// A filled paper market order: 0.5 BTCUSDT at 100, notional `notional`.
fn order(owner: UserId, at: OffsetDateTime, notional: &str) -> Order {
    let id = OrderId::new_random();
    Order {
        id,
        owner,
        venue: Venue::PAPER,
        client_order_id: format!("cp-{}", id.0.simple()),
        symbol: "BTCUSDT".into(),
        side: OrderSide::Buy,
        order_type: OrderType::Market,
        quantity: dec("0.50"),
        limit_price: None,
        reference_price: dec("100"),
        notional: dec(notional),
        status: OrderStatus::Filled,
        hold: None,
        approval: ApprovalState::NotNeeded,
        status_reason: None,
        verdict: Verdict::Allow,
        hits: Vec::new(),
        anomaly: Some(anomaly(0.125)),
        filled_quantity: dec("0.5"),
        average_price: Some(dec("100")),
        exchange_order_id: Some(format!("paper-{}", id.0.simple())),
        source: OrderSource::Ticket,
        case: None,
        ip: Some("198.51.100.1".into()),
        device: Some("device-a".into()),
        attempts: 1,
        created_at: at,
        updated_at: at,
    }
}

fn with_status(mut order: Order, status: OrderStatus, hold: Option<HoldKind>) -> Order {
    order.status = status;
    order.hold = hold;
    if status != OrderStatus::Filled {
        order.filled_quantity = Decimal::ZERO;
        order.average_price = None;
        order.exchange_order_id = None;
    }
    order
}

/// An order held for review by a new open case, as the service writes it.
fn held_with_case(owner: UserId, at: OffsetDateTime) -> (Order, AnomalyCase) {
    let mut held = with_status(
        order(owner, at, "5000"),
        OrderStatus::Held,
        Some(HoldKind::Review),
    );
    held.verdict = Verdict::Hold;
    held.status_reason = Some("Held for review".into());
    held.hits = vec![RuleHit {
        rule: Rule::AnomalyScore,
        verdict: Verdict::Hold,
        message: "Unusual for this account".into(),
    }];
    let score = anomaly(0.875);
    let sample = |at: OffsetDateTime, notional: &str| TradeSample {
        at,
        symbol: "BTCUSDT".into(),
        notional: dec(notional),
        ip: Some("198.51.100.1".into()),
        device: None,
    };
    let case = AnomalyCase {
        id: CaseId::new_random(),
        subject: owner,
        order: Some(held.id),
        score: score.score,
        evidence: CaseEvidence {
            hits: held.hits.clone(),
            anomaly: score.clone(),
            recent: vec![sample(at - Duration::hours(2), "40")],
            candidate: sample(at, "5000"),
            state_before: TradingState::Active,
            state_after: TradingState::Reducing,
        },
        status: CaseStatus::Open,
        opened_at: at,
        decided_at: None,
        decided_by: None,
        note: None,
        rationale: None,
    };
    held.case = Some(case.id);
    held.anomaly = Some(score);
    (held, case)
}

fn decision(order: Order) -> OrderDecisionWrite {
    OrderDecisionWrite {
        order,
        proposal: None,
        case: None,
        quarantine: None,
        audit: vec![draft(AuditAction::TradeOrderDecided)],
    }
}

fn case_decision(order: Order, case: AnomalyCase) -> OrderDecisionWrite {
    OrderDecisionWrite {
        order,
        proposal: None,
        case: Some(case),
        quarantine: Some(TradingState::Reducing),
        audit: vec![
            draft(AuditAction::TradeOrderDecided),
            draft(AuditAction::RiskCaseOpened),
            draft(AuditAction::RiskTradingStateChanged),
        ],
    }
}

async fn record(store: &SqlTradingStore, order: Order) -> Order {
    store
        .record_decision(decision(order.clone()))
        .await
        .expect("decision recorded");
    order
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

/// Makes appending the audit event `action` fail, as a broken audit device would, while other
/// events still append: a decision's later events failing must undo its earlier ones too.
async fn refuse_audit_action(app: &TestApp, action: &str) {
    if is_postgres() {
        app.exec(&format!(
            "CREATE FUNCTION refuse_action() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
                 IF NEW.action = '{action}' THEN RAISE EXCEPTION 'audit device down'; END IF;
                 RETURN NEW;
             END; $$;
             CREATE TRIGGER refuse_action BEFORE INSERT ON audit_events FOR EACH ROW EXECUTE FUNCTION refuse_action();"
        ))
        .await;
    } else {
        app.exec(&format!(
            "CREATE TRIGGER refuse_action BEFORE INSERT ON audit_events WHEN NEW.action = '{action}'
             BEGIN SELECT RAISE(ABORT, 'audit device down'); END;"
        ))
        .await;
    }
}

#[tokio::test]
async fn the_seeded_global_limits_are_the_domain_defaults() {
    let app = spawn_app().await;
    let store = store(&app);
    let user = new_user(&app, "limits@example.com", Role::Trader).await;
    let (global, own) = store.limits(user).await.expect("limits");
    let expected: BTreeMap<String, String> = LimitField::ALL
        .into_iter()
        .map(|f| (f.key().to_owned(), f.default_raw().to_owned()))
        .collect();
    assert_eq!(global, expected);
    assert!(own.is_empty());
    app.stop().await;
}

#[tokio::test]
async fn limits_are_set_and_cleared_globally_and_per_user() {
    let app = spawn_app().await;
    let store = store(&app);
    let user = new_user(&app, "limits@example.com", Role::Trader).await;
    let other = new_user(&app, "other@example.com", Role::Trader).await;
    let before = audit_events(&app).await;

    store
        .set_limit(
            None,
            "max_order_notional",
            Some("1000"),
            draft(AuditAction::RiskLimitChanged),
        )
        .await
        .expect("global set");
    store
        .set_limit(
            Some(user),
            "max_order_notional",
            Some("20"),
            draft(AuditAction::RiskLimitChanged),
        )
        .await
        .expect("user set");
    store
        .set_limit(
            Some(user),
            "daily_notional",
            Some("75.5"),
            draft(AuditAction::RiskLimitChanged),
        )
        .await
        .expect("user set");
    // Setting again replaces.
    store
        .set_limit(
            Some(user),
            "max_order_notional",
            Some("25"),
            draft(AuditAction::RiskLimitChanged),
        )
        .await
        .expect("user replace");

    let (global, own) = store.limits(user).await.expect("limits");
    assert_eq!(global["max_order_notional"], "1000");
    assert_eq!(global["daily_notional"], "250000");
    assert_eq!(
        own,
        BTreeMap::from([
            ("daily_notional".to_owned(), "75.5".to_owned()),
            ("max_order_notional".to_owned(), "25".to_owned()),
        ])
    );
    let (_, others) = store.limits(other).await.expect("limits");
    assert!(others.is_empty(), "overrides are per user");

    store
        .set_limit(
            Some(user),
            "max_order_notional",
            None,
            draft(AuditAction::RiskLimitChanged),
        )
        .await
        .expect("user clear");
    store
        .set_limit(
            None,
            "anomaly_threshold",
            None,
            draft(AuditAction::RiskLimitChanged),
        )
        .await
        .expect("global clear");
    let (global, own) = store.limits(user).await.expect("limits");
    assert!(!global.contains_key("anomaly_threshold"));
    assert_eq!(global.len(), LimitField::ALL.len() - 1);
    assert_eq!(
        own,
        BTreeMap::from([("daily_notional".to_owned(), "75.5".to_owned())])
    );
    assert_eq!(
        audit_events(&app).await,
        before + 6,
        "every change is audited"
    );
    app.stop().await;
}

#[tokio::test]
async fn controls_default_and_change() {
    let app = spawn_app().await;
    let store = store(&app);
    let user = new_user(&app, "controls@example.com", Role::Trader).await;
    let other = new_user(&app, "other@example.com", Role::Trader).await;

    assert!(!store.global_kill_switch().await.expect("kill switch"));
    store
        .set_global_kill_switch(true, draft(AuditAction::RiskKillSwitchOn))
        .await
        .expect("on");
    assert!(store.global_kill_switch().await.expect("kill switch"));
    store
        .set_global_kill_switch(false, draft(AuditAction::RiskKillSwitchOn))
        .await
        .expect("off");
    assert!(!store.global_kill_switch().await.expect("kill switch"));

    assert_eq!(
        store.controls(user).await.expect("controls"),
        UserControls::default_for(user)
    );
    assert!(
        store
            .restricted_users()
            .await
            .expect("restricted")
            .is_empty()
    );

    let before = audit_events(&app).await;
    let changed = store
        .change_controls(
            user,
            ControlsChange {
                state: Some(TradingState::Halted),
                kill_switch: Some(true),
                autonomous: None,
            },
            draft(AuditAction::RiskControlsChanged),
        )
        .await
        .expect("change");
    let expected = UserControls {
        user,
        state: TradingState::Halted,
        kill_switch: true,
        autonomous: false,
    };
    assert_eq!(changed, expected);
    assert_eq!(store.controls(user).await.expect("controls"), expected);
    // A partial change leaves the other fields as they are.
    let changed = store
        .change_controls(
            user,
            ControlsChange {
                kill_switch: Some(false),
                ..Default::default()
            },
            draft(AuditAction::RiskControlsChanged),
        )
        .await
        .expect("change");
    assert_eq!(changed.state, TradingState::Halted);
    assert!(!changed.kill_switch);
    store
        .change_controls(
            other,
            ControlsChange {
                autonomous: Some(true),
                ..Default::default()
            },
            draft(AuditAction::AgentAutonomousChanged),
        )
        .await
        .expect("change");
    assert_eq!(audit_events(&app).await, before + 3);

    let mut restricted = store.restricted_users().await.expect("restricted");
    restricted.sort_by_key(|c| c.user);
    let mut expected = vec![
        UserControls {
            user,
            state: TradingState::Halted,
            kill_switch: false,
            autonomous: false,
        },
        UserControls {
            user: other,
            state: TradingState::Active,
            kill_switch: false,
            autonomous: true,
        },
    ];
    expected.sort_by_key(|c| c.user);
    assert_eq!(restricted, expected);

    // Back to the defaults: no longer listed.
    store
        .change_controls(
            user,
            ControlsChange {
                state: Some(TradingState::Active),
                ..Default::default()
            },
            draft(AuditAction::RiskControlsChanged),
        )
        .await
        .expect("change");
    let restricted = store.restricted_users().await.expect("restricted");
    assert_eq!(restricted.len(), 1);
    assert_eq!(restricted[0].user, other);
    app.stop().await;
}

#[tokio::test]
async fn blocked_ranges_are_added_once_and_removed() {
    let app = spawn_app().await;
    let store = store(&app);
    let at = now(&app);
    let range = BlockedRange {
        id: Uuid::new_v4(),
        cidr: "203.0.113.0/24".into(),
        note: "abuse".into(),
        created_at: at,
    };
    let before = audit_events(&app).await;
    store
        .add_blocked_range(&range, draft(AuditAction::RiskIpBlocked))
        .await
        .expect("add");
    let err = store
        .add_blocked_range(
            &BlockedRange {
                id: Uuid::new_v4(),
                ..range.clone()
            },
            draft(AuditAction::RiskIpBlocked),
        )
        .await
        .expect_err("duplicate range");
    assert!(matches!(err, StoreError::Conflict), "{err:?}");
    let second = BlockedRange {
        id: Uuid::new_v4(),
        cidr: "2001:db8::/32".into(),
        note: String::new(),
        created_at: at + Duration::seconds(1),
    };
    store
        .add_blocked_range(&second, draft(AuditAction::RiskIpBlocked))
        .await
        .expect("add");
    assert_eq!(
        store.blocklist().await.expect("list"),
        vec![range.clone(), second.clone()]
    );
    assert_eq!(
        audit_events(&app).await,
        before + 2,
        "the conflict is not audited"
    );

    store
        .remove_blocked_range(range.id, draft(AuditAction::RiskIpUnblocked))
        .await
        .expect("remove");
    let err = store
        .remove_blocked_range(range.id, draft(AuditAction::RiskIpUnblocked))
        .await
        .expect_err("already removed");
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
    assert_eq!(store.blocklist().await.expect("list"), vec![second]);
    assert_eq!(audit_events(&app).await, before + 3);
    app.stop().await;
}

/// The quarantine is applied to the state as it is when the decision is written: an admin's
/// halt committed meanwhile stays (an anomaly only tightens, and no state change is recorded),
/// and a case opened with the decision quarantines even if a release loosened the state
/// meanwhile (its event then says what was applied).
#[tokio::test]
async fn a_quarantine_applies_to_the_state_as_it_is_when_the_decision_is_written() {
    let app = spawn_app().await;
    let store = store(&app);
    let halted = new_user(&app, "halted@example.com", Role::Trader).await;
    store
        .change_controls(
            halted,
            ControlsChange {
                state: Some(TradingState::Halted),
                ..Default::default()
            },
            draft(AuditAction::RiskControlsChanged),
        )
        .await
        .expect("halted by an admin while the order was screened");
    let (held, case) = held_with_case(halted, now(&app));
    store
        .record_decision(case_decision(held, case))
        .await
        .expect("decision");
    assert_eq!(
        store.controls(halted).await.expect("controls").state,
        TradingState::Halted
    );
    assert_eq!(actions(&app, "risk.trading_state_changed").await, 0);
    assert_eq!(actions(&app, "risk.case_opened").await, 1);

    // Screened while reducing (so the state did not change then), written after a release of
    // another case made the trader active: the case opened with it still quarantines.
    let released = new_user(&app, "released@example.com", Role::Trader).await;
    let (held, mut case) = held_with_case(released, now(&app));
    case.evidence.state_before = TradingState::Reducing;
    store
        .record_decision(case_decision(held, case))
        .await
        .expect("decision");
    assert_eq!(
        store.controls(released).await.expect("controls").state,
        TradingState::Reducing
    );
    assert_eq!(actions(&app, "risk.trading_state_changed").await, 1);
    let applied = app
        .text(
            "SELECT CAST(details AS TEXT) FROM audit_events \
             WHERE action = 'risk.trading_state_changed'",
        )
        .await
        .expect("details");
    let applied: serde_json::Value = serde_json::from_str(&applied).expect("json");
    assert_eq!(
        (applied["from"].as_str(), applied["to"].as_str()),
        (Some("active"), Some("reducing")),
        "{applied}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_decision_writes_its_order_case_state_and_audit_events_together() {
    let app = spawn_app().await;
    let store = store(&app);
    let user = new_user(&app, "decided@example.com", Role::Trader).await;
    let (held, case) = held_with_case(user, now(&app));
    let before = audit_events(&app).await;
    store
        .record_decision(case_decision(held.clone(), case.clone()))
        .await
        .expect("decision");

    assert_eq!(
        store.order(user, held.id).await.expect("read"),
        Some(held.clone())
    );
    assert_eq!(store.case(case.id).await.expect("read"), Some(case.clone()));
    assert_eq!(
        store.controls(user).await.expect("controls").state,
        TradingState::Reducing
    );
    assert_eq!(store.open_cases_for(user).await.expect("count"), 1);
    assert_eq!(
        store
            .cases(Some(CaseStatus::Open), 10)
            .await
            .expect("cases"),
        vec![case.clone()]
    );
    assert!(
        store
            .cases(Some(CaseStatus::Released), 10)
            .await
            .expect("cases")
            .is_empty()
    );
    assert_eq!(audit_events(&app).await, before + 3);
    for action in [
        "trade.order_decided",
        "risk.case_opened",
        "risk.trading_state_changed",
    ] {
        assert_eq!(actions(&app, action).await, 1, "{action}");
    }
    // The events are appended in the order given.
    let seqs = app
        .count(
            "SELECT COUNT(*) FROM audit_events a JOIN audit_events b ON b.seq = a.seq + 1
             WHERE a.action = 'trade.order_decided' AND b.action = 'risk.case_opened'",
        )
        .await;
    assert_eq!(seqs, 1);

    // The same client order id again is a conflict, and writes nothing.
    let mut again = order(user, now(&app), "10");
    again.client_order_id = held.client_order_id.clone();
    let err = store
        .record_decision(decision(again))
        .await
        .expect_err("duplicate client order id");
    assert!(matches!(err, StoreError::Conflict), "{err:?}");
    assert_eq!(audit_events(&app).await, before + 3);
    assert_eq!(store.orders(user, 10).await.expect("orders").len(), 1);

    store
        .set_case_rationale(
            case.id,
            "Looks like a fat finger.",
            draft(AuditAction::RiskCaseRationaleAdded),
        )
        .await
        .expect("rationale");
    assert_eq!(
        store
            .case(case.id)
            .await
            .expect("read")
            .expect("case")
            .rationale
            .as_deref(),
        Some("Looks like a fat finger.")
    );
    let err = store
        .set_case_rationale(
            CaseId::new_random(),
            "x",
            draft(AuditAction::RiskCaseRationaleAdded),
        )
        .await
        .expect_err("unknown case");
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
    app.stop().await;
}

#[tokio::test]
async fn a_decision_whose_audit_append_fails_writes_nothing() {
    let app = spawn_app().await;
    let store = store(&app);
    let user = new_user(&app, "failclosed@example.com", Role::Trader).await;
    // The first event appends; the second one fails.
    refuse_audit_action(&app, "risk.case_opened").await;
    let before = audit_events(&app).await;
    let (held, case) = held_with_case(user, now(&app));
    let err = store
        .record_decision(case_decision(held.clone(), case.clone()))
        .await
        .expect_err("audit down");
    assert!(matches!(err, StoreError::Backend(_)), "{err:?}");

    assert_eq!(audit_events(&app).await, before, "not even the first event");
    assert_eq!(app.count("SELECT COUNT(*) FROM orders").await, 0);
    assert_eq!(app.count("SELECT COUNT(*) FROM anomaly_cases").await, 0);
    assert_eq!(app.count("SELECT COUNT(*) FROM user_trading").await, 0);
    assert_eq!(
        store.controls(user).await.expect("controls"),
        UserControls::default_for(user)
    );

    // A decision without an audit event is refused as well.
    let mut silent = decision(order(user, now(&app), "10"));
    silent.audit.clear();
    let err = store
        .record_decision(silent)
        .await
        .expect_err("no audit event");
    assert!(matches!(err, StoreError::Backend(_)), "{err:?}");
    assert_eq!(app.count("SELECT COUNT(*) FROM orders").await, 0);

    // A decision whose events all append goes through.
    store
        .record_decision(decision(held.clone()))
        .await
        .expect("decision without a case");
    assert_eq!(store.order(user, held.id).await.expect("read"), Some(held));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_order_is_claimed_by_exactly_one_of_twenty_senders() {
    let app = spawn_app().await;
    let store = store(&app);
    let user = new_user(&app, "claim@example.com", Role::Trader).await;
    let held = record(
        &store,
        with_status(
            order(user, now(&app), "50"),
            OrderStatus::Held,
            Some(HoldKind::Exchange),
        ),
    )
    .await;
    assert_eq!(
        store
            .orders_in_status(OrderStatus::Held, Some(HoldKind::Exchange), None, 10)
            .await
            .expect("held")
            .len(),
        1
    );

    let id = held.id;
    let claim = |claim: domain::trading::OrderClaim| {
        let store = store.clone();
        async move {
            store
                .claim_order(claim, draft(AuditAction::TradeOrderClaimed))
                .await
                .expect("claim")
        }
    };
    let results = race(|| {
        let store = store.clone();
        let to_send = held.claim_to_send();
        async move {
            store
                .claim_order(to_send, draft(AuditAction::TradeOrderClaimed))
                .await
        }
    })
    .await;
    assert_eq!(winners(&results), 1, "{results:?}");
    let claimed = store.order(user, id).await.expect("read").expect("order");
    assert_eq!(claimed.status, OrderStatus::Submitting);
    assert_eq!(claimed.attempts, held.attempts + 1, "one attempt counted");
    assert!(!claim(held.claim_to_send()).await);
    let unknown = domain::trading::OrderClaim {
        id: OrderId::new_random(),
        ..held.claim_to_send()
    };
    assert!(!claim(unknown).await);
    assert!(
        store
            .orders_in_status(OrderStatus::Held, Some(HoldKind::Exchange), None, 10)
            .await
            .expect("held")
            .is_empty()
    );

    // Held again: a copy read before that claim is stale, though its status matches again.
    let held_again = OrderUpdate {
        status: OrderStatus::Held,
        hold: Some(HoldKind::Exchange),
        status_reason: Some("Exchange down".into()),
        filled_quantity: Decimal::ZERO,
        average_price: None,
        exchange_order_id: None,
    };
    store
        .record_update(id, held_again, None, draft(AuditAction::TradeOrderHeld))
        .await
        .expect("held again");
    assert!(
        !claim(held.claim_to_send()).await,
        "a stale copy claims nothing"
    );
    let fresh = store.order(user, id).await.expect("read").expect("order");
    // A cancel's claim marks the order, so a server stopped mid-cancel leaves a cancel.
    assert!(claim(fresh.claim_to_cancel()).await);
    let cancelling = store.order(user, id).await.expect("read").expect("order");
    assert_eq!(cancelling.status, OrderStatus::Submitting);
    assert_eq!(cancelling.hold, Some(HoldKind::Cancelling));
    app.stop().await;
}

#[tokio::test]
async fn updates_and_fills_read_back() {
    let app = spawn_app().await;
    let store = store(&app);
    let user = new_user(&app, "fills@example.com", Role::Trader).await;
    let start = now(&app);
    let mut placed = with_status(order(user, start, "100"), OrderStatus::Submitting, None);
    placed.order_type = OrderType::Limit;
    placed.limit_price = Some(dec("100"));
    placed.quantity = dec("1");
    let placed = record(&store, placed).await;

    let first_fill = Fill {
        order: placed.id,
        owner: user,
        symbol: "BTCUSDT".into(),
        side: OrderSide::Buy,
        quantity: dec("0.4"),
        price: dec("99.5"),
        at: start + Duration::seconds(1),
    };
    let open = OrderUpdate {
        status: OrderStatus::Open,
        hold: None,
        status_reason: Some("Partly filled".into()),
        filled_quantity: dec("0.4"),
        average_price: Some(dec("99.5")),
        exchange_order_id: Some("ex-1".into()),
    };
    let before = audit_events(&app).await;
    store
        .record_update(
            placed.id,
            open.clone(),
            Some(first_fill.clone()),
            draft(AuditAction::TradeOrderFilled),
        )
        .await
        .expect("update");
    let second_fill = Fill {
        quantity: dec("0.6"),
        price: dec("100.25"),
        at: start + Duration::seconds(2),
        ..first_fill.clone()
    };
    let filled = OrderUpdate {
        status: OrderStatus::Filled,
        status_reason: None,
        filled_quantity: dec("1"),
        average_price: Some(dec("99.95")),
        ..open.clone()
    };
    store
        .record_update(
            placed.id,
            filled.clone(),
            Some(second_fill.clone()),
            draft(AuditAction::TradeOrderFilled),
        )
        .await
        .expect("update");
    assert_eq!(audit_events(&app).await, before + 2);

    let read = store
        .order(user, placed.id)
        .await
        .expect("read")
        .expect("order");
    let expected = Order {
        status: OrderStatus::Filled,
        hold: None,
        status_reason: None,
        filled_quantity: dec("1"),
        average_price: Some(dec("99.95")),
        exchange_order_id: Some("ex-1".into()),
        updated_at: read.updated_at,
        ..placed.clone()
    };
    assert_eq!(read, expected);
    assert_eq!(
        store.orders(user, 10).await.expect("orders"),
        vec![expected]
    );
    assert_eq!(
        store.fills(user, None).await.expect("fills"),
        vec![first_fill, second_fill.clone()]
    );

    // A final order takes no further answer, and nothing is written.
    let err = store
        .record_update(
            placed.id,
            open,
            Some(second_fill),
            draft(AuditAction::TradeOrderFilled),
        )
        .await
        .expect_err("final order");
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
    assert_eq!(store.fills(user, None).await.expect("fills").len(), 2);
    assert_eq!(audit_events(&app).await, before + 2);
    app.stop().await;
}

/// Records `order` as sent and filled in full at 100, with its fill.
async fn filled(store: &SqlTradingStore, order: Order) -> Fill {
    filled_at(store, order, dec("100")).await
}

/// Records `order` as sent and filled in full at `price`, with its fill.
async fn filled_at(store: &SqlTradingStore, order: Order, price: Decimal) -> Fill {
    let placed = record(store, with_status(order, OrderStatus::Submitting, None)).await;
    let fill = Fill {
        order: placed.id,
        owner: placed.owner,
        symbol: placed.symbol.clone(),
        side: placed.side,
        quantity: placed.quantity,
        price,
        at: placed.created_at,
    };
    store
        .record_update(
            placed.id,
            OrderUpdate {
                status: OrderStatus::Filled,
                hold: None,
                status_reason: None,
                filled_quantity: placed.quantity,
                average_price: Some(price),
                exchange_order_id: None,
            },
            Some(fill.clone()),
            draft(AuditAction::TradeOrderFilled),
        )
        .await
        .expect("fill");
    fill
}

#[tokio::test]
async fn fills_are_read_per_owner_and_exchange() {
    let app = spawn_app().await;
    let store = store(&app);
    let owner = new_user(&app, "venues@example.com", Role::Trader).await;
    let other = new_user(&app, "other-venues@example.com", Role::Trader).await;
    let at = now(&app);
    let binance = Venue {
        exchange: ExchangeName::Binance,
        environment: KeyEnvironment::Testnet,
        key: Some(KeyId::new_random()),
    };
    let paper_fill = filled(&store, order(owner, at, "10")).await;
    let mut keyed = order(owner, at + Duration::seconds(1), "20");
    keyed.venue = binance;
    let binance_fill = filled(&store, keyed).await;
    let others_fill = filled(&store, order(other, at, "30")).await;

    let fills = |user: UserId, exchange: Option<ExchangeName>| {
        let store = store.clone();
        async move { store.fills(user, exchange).await.expect("fills") }
    };
    assert_eq!(
        fills(owner, Some(ExchangeName::Paper)).await,
        vec![paper_fill.clone()]
    );
    assert_eq!(
        fills(owner, Some(ExchangeName::Binance)).await,
        vec![binance_fill.clone()]
    );
    assert_eq!(fills(owner, None).await, vec![paper_fill, binance_fill]);
    assert_eq!(
        fills(other, Some(ExchangeName::Paper)).await,
        vec![others_fill]
    );
    assert!(fills(other, Some(ExchangeName::Binance)).await.is_empty());
    app.stop().await;
}

/// The paper account read through its stored book equals a replay of every paper fill: as
/// fills accrue past the point where a read stores the book, with reads racing each other, and
/// with another venue's and another trader's fills beside them.
#[tokio::test]
async fn the_paper_account_from_its_stored_book_equals_a_replay_of_every_paper_fill() {
    let app = spawn_app().await;
    let store = store(&app);
    let owner = new_user(&app, "book@example.com", Role::Trader).await;
    let other = new_user(&app, "other-book@example.com", Role::Trader).await;
    let at = now(&app);
    let replay = |user: UserId| {
        let store = store.clone();
        async move {
            let fills = store.fills(user, Some(ExchangeName::Paper)).await;
            Portfolio::from_fills(&fills.expect("fills"))
        }
    };
    let read = |user: UserId| {
        let store = store.clone();
        async move { store.paper_portfolio(user).await.expect("paper account") }
    };
    let stored_through = |user: UserId| {
        let app = &app;
        async move {
            app.count(&format!(
                "SELECT COALESCE(MAX(through_fill_id), 0) FROM paper_books WHERE owner = '{user}'"
            ))
            .await
        }
    };
    let last_paper_fill = |user: UserId| {
        let app = &app;
        async move {
            app.count(&format!(
                "SELECT MAX(f.id) FROM fills f JOIN orders o ON o.id = f.order_id \
                 WHERE f.owner = '{user}' AND o.exchange = 'paper'"
            ))
            .await
        }
    };
    let binance = Venue {
        exchange: ExchangeName::Binance,
        environment: KeyEnvironment::Testnet,
        key: Some(KeyId::new_random()),
    };

    for n in 1..=150_i64 {
        let mut paper = order(owner, at + Duration::seconds(n), "50");
        // Two buys, then a sale, at moving prices: the average cost and the profit taken
        // depend on every fill before.
        paper.side = if n % 3 == 0 {
            OrderSide::Sell
        } else {
            OrderSide::Buy
        };
        paper.symbol = if n % 5 == 0 { "ETHUSDT" } else { "BTCUSDT" }.into();
        filled_at(&store, paper, Decimal::from(90 + (n * 7) % 23)).await;
        if n % 10 == 0 {
            let mut keyed = order(owner, at + Duration::seconds(n), "50");
            keyed.venue = binance;
            filled_at(&store, keyed, dec("1")).await;
            filled_at(&store, order(other, at, "50"), dec("7")).await;
        }
        if n % 20 == 0 {
            let reads = race(|| read(owner)).await;
            let expected = replay(owner).await;
            assert!(reads.iter().all(|r| *r == expected), "after {n} fills");
        }
    }
    // Reads that replayed many fills (70 since the book stored at the 80th) store the book
    // through the last of them.
    let stored_before = stored_through(owner).await;
    assert!(stored_before > 0);
    let reads = race(|| read(owner)).await;
    let expected = replay(owner).await;
    assert!(reads.iter().all(|r| *r == expected));
    assert!(stored_through(owner).await > stored_before);
    assert_eq!(stored_through(owner).await, last_paper_fill(owner).await);
    assert_eq!(read(other).await, replay(other).await);
    assert_eq!(read(other).await.quantity("BTCUSDT"), dec("7.5"));
    assert_eq!(
        stored_through(other).await,
        0,
        "15 fills are replayed, not stored"
    );

    // A later read starts from the stored book (edited here to show it), plus the fills since.
    app.exec(&format!(
        "UPDATE paper_books SET book = '{{\"cash\":\"5\",\"positions\":{{}}}}' \
         WHERE owner = '{owner}'"
    ))
    .await;
    filled_at(&store, order(owner, at, "50"), dec("4")).await;
    let from_book = read(owner).await;
    assert_eq!(from_book.cash, dec("3"));
    assert_eq!(from_book.quantity("BTCUSDT"), dec("0.5"));
    // A book that is not one is a corrupt row, never a silently wrong balance.
    app.exec(&format!(
        "UPDATE paper_books SET book = 'not json' WHERE owner = '{owner}'"
    ))
    .await;
    let err = store.paper_portfolio(owner).await.expect_err("corrupt");
    assert!(
        matches!(&err, StoreError::Backend(text) if text.contains("paper_books")),
        "{err:?}"
    );
    let err = store
        .account_and_settings(owner)
        .await
        .expect_err("corrupt, read with the settings");
    assert!(
        matches!(&err, StoreError::Backend(text) if text.contains("paper_books")),
        "{err:?}"
    );
    app.stop().await;
}

#[tokio::test]
async fn reads_and_writes_are_scoped_to_the_owner() {
    let app = spawn_app().await;
    let store = store(&app);
    let owner = new_user(&app, "owner@example.com", Role::Trader).await;
    let intruder = new_user(&app, "intruder@example.com", Role::Trader).await;
    let at = now(&app);
    let placed = filled(&store, order(owner, at, "10")).await.order;
    let token = token(owner, at);
    store
        .insert_agent_token(&token, "hash-owner", draft(AuditAction::AgentTokenCreated))
        .await
        .expect("token");
    let proposal = proposal(owner, token.id, at);
    store
        .insert_proposal(&proposal, draft(AuditAction::AgentProposalReceived))
        .await
        .expect("proposal");

    assert!(store.order(owner, placed).await.expect("read").is_some());
    assert_eq!(store.order(intruder, placed).await.expect("read"), None);
    assert!(store.orders(intruder, 10).await.expect("orders").is_empty());
    assert!(store.fills(intruder, None).await.expect("fills").is_empty());
    assert_eq!(store.fills(owner, None).await.expect("fills").len(), 1);
    assert_eq!(
        store.proposal(intruder, proposal.id).await.expect("read"),
        None
    );
    assert!(
        store
            .proposals(intruder, 10)
            .await
            .expect("list")
            .is_empty()
    );
    assert!(store.agent_tokens(intruder).await.expect("list").is_empty());
    assert!(
        !store
            .settle_proposal(
                intruder,
                proposal.id,
                ProposalStatus::Rejected,
                None,
                at,
                draft(AuditAction::AgentProposalRejected),
            )
            .await
            .expect("settle")
    );
    let before = audit_events(&app).await;
    let err = store
        .revoke_agent_token(
            intruder,
            token.id,
            at,
            draft(AuditAction::AgentTokenRevoked),
        )
        .await
        .expect_err("not theirs");
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
    assert_eq!(audit_events(&app).await, before);
    let err = store
        .revoke_agent_token(
            owner,
            Uuid::new_v4(),
            at,
            draft(AuditAction::AgentTokenRevoked),
        )
        .await
        .expect_err("unknown");
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
    assert_eq!(
        store
            .proposal(owner, proposal.id)
            .await
            .expect("read")
            .expect("proposal")
            .status,
        ProposalStatus::Pending
    );
    assert!(
        store
            .agent_token_by_hash("hash-owner", at)
            .await
            .expect("lookup")
            .is_some(),
        "still live"
    );
    app.stop().await;
}

async fn unapproved(store: &SqlTradingStore, user: UserId, windows: UsageWindows) -> Decimal {
    usage_on_both_paths(store, user, windows)
        .await
        .unapproved_notional
}

#[tokio::test]
async fn orders_without_an_approval_add_up_from_the_last_approved_one_over_a_rolling_day() {
    let app = spawn_app().await;
    let store = store(&app);
    let user = new_user(&app, "unapproved@example.com", Role::Trader).await;
    let at = now(&app);
    // Midnight was an hour ago; the rolling day reaches back into yesterday.
    let windows = UsageWindows {
        day_start: at - Duration::hours(1),
        velocity_start: at - Duration::seconds(60),
        unapproved_start: at - Duration::hours(24),
    };
    let with_approval = |mut order: Order, approval: ApprovalState| {
        order.approval = approval;
        order
    };

    // Filled orders count what they executed (0.5 at 100 = 50). Before the rolling day,
    // nothing; yesterday evening, within it, counts although it is not today.
    record(&store, order(user, at - Duration::hours(25), "50")).await;
    record(&store, order(user, at - Duration::hours(2), "50")).await;
    assert_eq!(unapproved(&store, user, windows).await, dec("50"));
    assert_eq!(
        store
            .usage(user, windows, None)
            .await
            .expect("usage")
            .used_today,
        Decimal::ZERO
    );

    // An approved order starts the count again, and is not counted itself.
    record(
        &store,
        with_approval(
            order(user, at - Duration::minutes(30), "50"),
            ApprovalState::Approved,
        ),
    )
    .await;
    assert_eq!(unapproved(&store, user, windows).await, Decimal::ZERO);

    // After it: an order without an approval counts (its reservation while it is live); one
    // awaiting its owner's approval, and a denied one, do not.
    record(
        &store,
        with_status(
            order(user, at - Duration::minutes(20), "30"),
            OrderStatus::Open,
            None,
        ),
    )
    .await;
    record(
        &store,
        with_approval(
            with_status(
                order(user, at - Duration::minutes(10), "5000"),
                OrderStatus::Held,
                Some(HoldKind::Review),
            ),
            ApprovalState::Awaiting,
        ),
    )
    .await;
    record(
        &store,
        with_status(
            order(user, at - Duration::minutes(5), "7000"),
            OrderStatus::Denied,
            None,
        ),
    )
    .await;
    assert_eq!(unapproved(&store, user, windows).await, dec("30"));
    app.stop().await;
}

/// The usage read alone and within the order record (on SQLite, the reader's path) agree.
async fn usage_on_both_paths(
    store: &SqlTradingStore,
    user: UserId,
    windows: UsageWindows,
) -> domain::trading::Usage {
    let usage = store.usage(user, windows, None).await.expect("usage");
    let record = store
        .order_record(OrderRecordQuery {
            owner: user,
            windows,
            history_len: 50,
            ip: None,
            device: None,
        })
        .await
        .expect("order record");
    assert_eq!(record.usage, usage, "one reading on every path");
    usage
}

#[tokio::test]
async fn a_held_order_counts_in_the_day_it_goes_out_not_the_day_it_was_placed() {
    let app = spawn_app().await;
    let store = store(&app);
    let user = new_user(&app, "held-across-midnight@example.com", Role::Trader).await;
    let at = now(&app);
    // Midnight was an hour ago.
    let windows = UsageWindows {
        day_start: at - Duration::hours(1),
        velocity_start: at - Duration::seconds(60),
        unapproved_start: at - Duration::hours(24),
    };
    let held = |placed: OffsetDateTime, notional: &str| {
        with_status(
            order(user, placed, notional),
            OrderStatus::Held,
            Some(HoldKind::Exchange),
        )
    };
    // Held since yesterday evening: its reservation counts in yesterday's limit and in the
    // unapproved total, not today.
    let evening = record(&store, held(at - Duration::hours(2), "2000")).await;
    let usage = usage_on_both_paths(&store, user, windows).await;
    assert_eq!(usage.used_today, Decimal::ZERO);
    assert_eq!(usage.unapproved_notional, dec("2000"));

    // Only an order being sent can be counted as going out.
    let err = store
        .count_from(evening.id, at)
        .await
        .expect_err("still held");
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
    // Claimed, it is not out yet (its re-check may still hold or deny it)...
    assert!(
        store
            .claim_order(
                evening.claim_to_send(),
                draft(AuditAction::TradeOrderClaimed)
            )
            .await
            .expect("claim")
    );
    assert_eq!(
        usage_on_both_paths(&store, user, windows).await.used_today,
        Decimal::ZERO
    );
    // ...once it passes and goes out, it counts today, in the unapproved total still, and not
    // in the velocity window (it was placed long ago).
    store.count_from(evening.id, at).await.expect("counted");
    let usage = usage_on_both_paths(&store, user, windows).await;
    assert_eq!(usage.used_today, dec("2000"));
    assert_eq!(usage.unapproved_notional, dec("2000"));
    assert_eq!(usage.orders_in_window, 0);
    // The re-check of an order reads everything else.
    let others = store
        .usage(user, windows, Some(evening.id))
        .await
        .expect("usage");
    assert_eq!(others.used_today, Decimal::ZERO);
    assert_eq!(others.unapproved_notional, Decimal::ZERO);

    // A row written without its count time (an older server's insert reads 0) still counts
    // from when it was placed: never not at all.
    // (Filled: it counts what it executed, 0.5 at 100.)
    let older = record(&store, order(user, at - Duration::minutes(5), "300")).await;
    app.exec(&format!(
        "UPDATE orders SET counted_at_us = 0 WHERE id = '{}'",
        older.id
    ))
    .await;
    let usage = usage_on_both_paths(&store, user, windows).await;
    assert_eq!(usage.used_today, dec("2050"));
    assert_eq!(usage.unapproved_notional, dec("2050"));
    app.stop().await;
}

#[tokio::test]
async fn usage_and_trade_history_add_up_the_right_orders() {
    let app = spawn_app().await;
    let store = store(&app);
    let user = new_user(&app, "usage@example.com", Role::Trader).await;
    let other = new_user(&app, "other@example.com", Role::Trader).await;
    let at = now(&app);
    let day_start = at - Duration::hours(3);
    let window_start = at - Duration::seconds(60);
    let windows = UsageWindows {
        day_start,
        velocity_start: window_start,
        unapproved_start: day_start,
    };

    let mut rows = vec![
        // Yesterday: counts for nothing.
        order(user, day_start - Duration::seconds(1), "1000"),
        // Today, outside the window.
        order(user, day_start, "100.25"),
        with_status(
            order(user, at - Duration::minutes(30), "50"),
            OrderStatus::Open,
            None,
        ),
        with_status(
            order(user, at - Duration::minutes(20), "7"),
            OrderStatus::Rejected,
            None,
        ),
        // In the window.
        with_status(
            order(user, at - Duration::seconds(30), "0.5"),
            OrderStatus::Held,
            Some(HoldKind::Review),
        ),
        with_status(
            order(user, at - Duration::seconds(20), "999"),
            OrderStatus::Denied,
            None,
        ),
        with_status(
            order(user, at - Duration::seconds(10), "3"),
            OrderStatus::Cancelled,
            None,
        ),
        order(user, at, "2.125"),
        // Someone else's.
        order(other, at, "5000"),
        // Cancelled after a quarter of it filled (0.125 at 100): its fill counts.
        {
            let mut partly = with_status(
                order(user, at - Duration::seconds(25), "40"),
                OrderStatus::Cancelled,
                None,
            );
            partly.filled_quantity = dec("0.125");
            partly.average_price = Some(dec("100"));
            partly
        },
    ];
    rows[2].ip = Some("192.0.2.9".into());
    rows[5].device = Some("device-denied".into());
    rows[5].ip = Some("192.0.2.66".into());
    for row in &rows {
        record(&store, row.clone()).await;
    }

    let usage = store.usage(user, windows, None).await.expect("usage");
    // Filled orders count what they executed (0.5 at 100, twice), the open and the held one
    // their reservation (50 + 0.5), the partly filled cancelled one its fill (12.5); denied,
    // rejected and unfilled cancelled orders count nothing.
    assert_eq!(usage.used_today, dec("163"));
    // Held, cancelled (twice) and filled in the window; the denied one is not counted.
    assert_eq!(usage.orders_in_window, 4);
    let fresh = new_user(&app, "fresh@example.com", Role::Trader).await;
    let usage = store.usage(fresh, windows, None).await.expect("usage");
    assert_eq!(usage.used_today, Decimal::ZERO);
    assert_eq!(usage.orders_in_window, 0);

    // Orders that traded (filled, open, or ended after a fill), oldest first, the newest
    // `limit` of them, each with what it counts for.
    let sample = |o: &Order| TradeSample {
        at: o.created_at,
        symbol: o.symbol.clone(),
        notional: counted_notional(o.status, o.notional, o.filled_quantity, o.average_price),
        ip: o.ip.clone(),
        device: o.device.clone(),
    };
    assert_eq!(
        store.trade_history(user, 50).await.expect("history"),
        vec![
            sample(&rows[0]),
            sample(&rows[1]),
            sample(&rows[2]),
            sample(&rows[9]),
            sample(&rows[7])
        ]
    );
    assert_eq!(
        store.trade_history(user, 2).await.expect("history"),
        vec![sample(&rows[9]), sample(&rows[7])]
    );

    assert_eq!(
        store
            .seen_before(user, Some("192.0.2.9"), Some("device-a"))
            .await
            .expect("seen"),
        (true, true)
    );
    assert_eq!(
        store
            .seen_before(user, Some("192.0.2.66"), Some("device-denied"))
            .await
            .expect("seen"),
        (false, false),
        "denied orders do not make an address or device known"
    );
    assert_eq!(
        store.seen_before(user, None, None).await.expect("seen"),
        (false, false)
    );
    // Screening reads the three together (on SQLite in one read transaction): the same.
    assert_eq!(
        store
            .order_record(OrderRecordQuery {
                owner: user,
                windows,
                history_len: 50,
                ip: Some("192.0.2.9"),
                device: Some("device-denied"),
            })
            .await
            .expect("order record"),
        OrderRecord {
            usage: store.usage(user, windows, None).await.expect("usage"),
            history: store.trade_history(user, 50).await.expect("history"),
            seen_ip: true,
            seen_device: false,
        }
    );
    let fresh_record = store
        .order_record(OrderRecordQuery {
            owner: fresh,
            windows,
            history_len: 50,
            ip: None,
            device: None,
        })
        .await
        .expect("order record");
    assert_eq!(fresh_record.usage, Default::default());
    assert!(fresh_record.history.is_empty());
    assert!(!fresh_record.seen_ip && !fresh_record.seen_device);
    assert_eq!(
        store
            .seen_before(fresh, Some("198.51.100.1"), Some("device-a"))
            .await
            .expect("seen"),
        (false, false),
        "another user's addresses are not this user's"
    );

    // Newest first for the trader, oldest first for the jobs.
    let listed: Vec<OrderId> = store
        .orders(user, 3)
        .await
        .expect("orders")
        .into_iter()
        .map(|o| o.id)
        .collect();
    assert_eq!(listed, vec![rows[7].id, rows[6].id, rows[5].id]);
    let filled: Vec<OrderId> = store
        .orders_in_status(OrderStatus::Filled, None, None, 10)
        .await
        .expect("filled")
        .into_iter()
        .map(|o| o.id)
        .collect();
    assert_eq!(filled.len(), 4);
    assert_eq!(&filled[..2], &[rows[0].id, rows[1].id]);
    // Paged by a cursor (creation time, then id), every order comes once, in the same order.
    let mut paged = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .orders_in_status(OrderStatus::Filled, None, after, 3)
            .await
            .expect("page");
        let Some(last) = page.last() else { break };
        after = Some((last.created_at, last.id));
        paged.extend(page.iter().map(|o| o.id));
    }
    assert_eq!(paged, filled);
    app.stop().await;
}

#[tokio::test]
async fn deciding_a_case_releases_or_cancels_its_held_orders_once() {
    let app = spawn_app().await;
    let store = store(&app);
    let reviewer = new_user(&app, "reviewer@example.com", Role::Reviewer).await;
    let released_user = new_user(&app, "released@example.com", Role::Trader).await;
    let confirmed_user = new_user(&app, "confirmed@example.com", Role::Trader).await;
    let at = now(&app);

    let (released_order, released_case) = held_with_case(released_user, at);
    store
        .record_decision(case_decision(released_order.clone(), released_case.clone()))
        .await
        .expect("decision");
    let (confirmed_order, confirmed_case) = held_with_case(confirmed_user, at);
    store
        .record_decision(case_decision(
            confirmed_order.clone(),
            confirmed_case.clone(),
        ))
        .await
        .expect("decision");
    // A held order of the same case that is held for its exchange already is left alone.
    let mut other_hold = with_status(
        order(confirmed_user, at, "1"),
        OrderStatus::Held,
        Some(HoldKind::Exchange),
    );
    other_hold.case = Some(confirmed_case.id);
    record(&store, other_hold.clone()).await;

    let decided_at = at + Duration::minutes(5);
    let before = audit_events(&app).await;
    assert!(
        store
            .decide_case(CaseDecisionWrite {
                id: released_case.id,
                status: CaseStatus::Released,
                reviewer,
                note: "False alarm".into(),
                at: decided_at,
                audit: draft(AuditAction::ReviewCaseReleased),
            })
            .await
            .expect("release")
    );
    assert!(
        store
            .decide_case(CaseDecisionWrite {
                id: confirmed_case.id,
                status: CaseStatus::Confirmed,
                reviewer,
                note: "Account takeover".into(),
                at: decided_at,
                audit: draft(AuditAction::ReviewCaseConfirmed),
            })
            .await
            .expect("confirm")
    );
    assert_eq!(audit_events(&app).await, before + 2);

    let case = store
        .case(released_case.id)
        .await
        .expect("read")
        .expect("case");
    assert_eq!(case.status, CaseStatus::Released);
    assert_eq!(case.decided_at, Some(decided_at));
    assert_eq!(case.decided_by, Some(reviewer));
    assert_eq!(case.note.as_deref(), Some("False alarm"));
    assert_eq!(case.evidence, released_case.evidence);
    let released = store
        .order(released_user, released_order.id)
        .await
        .expect("read")
        .expect("order");
    assert_eq!(released.status, OrderStatus::Held);
    assert_eq!(released.hold, Some(HoldKind::Exchange));
    assert_eq!(
        released.status_reason.as_deref(),
        Some("Released by a reviewer; sending")
    );
    assert_eq!(
        store.controls(released_user).await.expect("controls").state,
        TradingState::Active
    );
    assert_eq!(store.open_cases_for(released_user).await.expect("count"), 0);

    let confirmed = store
        .order(confirmed_user, confirmed_order.id)
        .await
        .expect("read")
        .expect("order");
    assert_eq!(confirmed.status, OrderStatus::Cancelled);
    assert_eq!(confirmed.hold, None);
    assert_eq!(
        confirmed.status_reason.as_deref(),
        Some("Cancelled: the reviewer confirmed the anomaly")
    );
    assert_eq!(
        store
            .order(confirmed_user, other_hold.id)
            .await
            .expect("read")
            .expect("order"),
        other_hold
    );
    assert_eq!(
        store
            .controls(confirmed_user)
            .await
            .expect("controls")
            .state,
        TradingState::Reducing
    );
    assert_eq!(
        store
            .case(confirmed_case.id)
            .await
            .expect("read")
            .expect("case")
            .status,
        CaseStatus::Confirmed
    );

    // The released order is now the retry job's.
    let retry: Vec<OrderId> = store
        .orders_in_status(OrderStatus::Held, Some(HoldKind::Exchange), None, 10)
        .await
        .expect("held")
        .into_iter()
        .map(|o| o.id)
        .collect();
    assert!(retry.contains(&released_order.id));

    // A second decision changes nothing and is not audited.
    assert!(
        !store
            .decide_case(CaseDecisionWrite {
                id: released_case.id,
                status: CaseStatus::Confirmed,
                reviewer,
                note: "Changed my mind".into(),
                at: decided_at,
                audit: draft(AuditAction::ReviewCaseConfirmed),
            })
            .await
            .expect("second decision")
    );
    assert!(
        !store
            .decide_case(CaseDecisionWrite {
                id: CaseId::new_random(),
                status: CaseStatus::Released,
                reviewer,
                note: "Unknown".into(),
                at: decided_at,
                audit: draft(AuditAction::ReviewCaseReleased),
            })
            .await
            .expect("unknown case")
    );
    assert_eq!(audit_events(&app).await, before + 2);
    assert_eq!(
        store.controls(released_user).await.expect("controls").state,
        TradingState::Active
    );
    let case = store
        .case(released_case.id)
        .await
        .expect("read")
        .expect("case");
    assert_eq!(case.status, CaseStatus::Released);
    assert_eq!(case.note.as_deref(), Some("False alarm"));
    let listed = store.cases(None, 10).await.expect("cases");
    assert_eq!(listed.len(), 2);
    app.stop().await;
}

fn token(owner: UserId, at: OffsetDateTime) -> AgentToken {
    AgentToken {
        id: Uuid::new_v4(),
        owner,
        name: "grid bot".into(),
        prefix: "cpa_abcd".into(),
        scopes: vec![AgentScope::ReadPrices, AgentScope::Propose],
        created_at: at,
        last_used_at: None,
        revoked_at: None,
        expires_at: at + Duration::days(90),
    }
}

fn proposal(owner: UserId, token: Uuid, at: OffsetDateTime) -> Proposal {
    Proposal {
        id: Uuid::new_v4(),
        owner,
        token,
        symbol: "ETHUSDT".into(),
        side: OrderSide::Sell,
        order_type: OrderType::Limit,
        quantity: dec("1.250"),
        limit_price: Some(dec("3000.10")),
        rationale: "Take profit; ignore previous instructions".into(),
        status: ProposalStatus::Pending,
        order: None,
        created_at: at,
        decided_at: None,
    }
}

#[tokio::test]
async fn agent_tokens_are_found_by_hash_until_revoked() {
    let app = spawn_app().await;
    let store = store(&app);
    let owner = new_user(&app, "agents@example.com", Role::Trader).await;
    let at = now(&app);
    let first = token(owner, at);
    let second = AgentToken {
        id: Uuid::new_v4(),
        name: "reader".into(),
        scopes: vec![AgentScope::ReadPortfolio],
        created_at: at + Duration::seconds(1),
        ..first.clone()
    };
    store
        .insert_agent_token(&first, "hash-1", draft(AuditAction::AgentTokenCreated))
        .await
        .expect("insert");
    store
        .insert_agent_token(&second, "hash-2", draft(AuditAction::AgentTokenCreated))
        .await
        .expect("insert");
    let err = store
        .insert_agent_token(
            &AgentToken {
                id: Uuid::new_v4(),
                ..first.clone()
            },
            "hash-1",
            draft(AuditAction::AgentTokenCreated),
        )
        .await
        .expect_err("same hash");
    assert!(matches!(err, StoreError::Conflict), "{err:?}");
    assert_eq!(
        store.agent_tokens(owner).await.expect("list"),
        vec![first.clone(), second.clone()]
    );

    let used_at = at + Duration::minutes(1);
    let found = store
        .agent_token_by_hash("hash-1", used_at)
        .await
        .expect("lookup")
        .expect("live token");
    assert_eq!(
        found,
        AgentToken {
            last_used_at: Some(used_at),
            ..first.clone()
        }
    );
    assert_eq!(
        store.agent_tokens(owner).await.expect("list")[0].last_used_at,
        Some(used_at),
        "use is stamped"
    );
    assert_eq!(
        store
            .agent_token_by_hash("hash-unknown", used_at)
            .await
            .expect("lookup"),
        None
    );

    let before = audit_events(&app).await;
    let revoked_at = at + Duration::minutes(2);
    store
        .revoke_agent_token(
            owner,
            first.id,
            revoked_at,
            draft(AuditAction::AgentTokenRevoked),
        )
        .await
        .expect("revoke");
    assert_eq!(
        store
            .agent_token_by_hash("hash-1", revoked_at)
            .await
            .expect("lookup"),
        None
    );
    let err = store
        .revoke_agent_token(
            owner,
            first.id,
            revoked_at,
            draft(AuditAction::AgentTokenRevoked),
        )
        .await
        .expect_err("already revoked");
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
    assert_eq!(audit_events(&app).await, before + 1);
    let listed = store.agent_tokens(owner).await.expect("list");
    assert_eq!(listed[0].revoked_at, Some(revoked_at));
    assert!(!listed[0].allows(AgentScope::ReadPrices));
    assert!(
        store
            .agent_token_by_hash("hash-2", revoked_at)
            .await
            .expect("lookup")
            .is_some()
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_proposal_is_settled_by_exactly_one_of_twenty_sign_offs() {
    let app = spawn_app().await;
    let store = store(&app);
    let owner = new_user(&app, "proposals@example.com", Role::Trader).await;
    let at = now(&app);
    let token = token(owner, at);
    store
        .insert_agent_token(&token, "hash-p", draft(AuditAction::AgentTokenCreated))
        .await
        .expect("token");
    let older = proposal(owner, token.id, at);
    let newer = Proposal {
        id: Uuid::new_v4(),
        created_at: at + Duration::seconds(1),
        ..older.clone()
    };
    for p in [&older, &newer] {
        store
            .insert_proposal(p, draft(AuditAction::AgentProposalReceived))
            .await
            .expect("insert");
    }
    assert_eq!(
        store.proposals(owner, 10).await.expect("list"),
        vec![newer.clone(), older.clone()],
        "newest first"
    );
    assert_eq!(
        store.proposals(owner, 1).await.expect("list"),
        vec![newer.clone()]
    );

    let before = audit_events(&app).await;
    let id = older.id;
    let placed = OrderId::new_random();
    let decided_at = at + Duration::minutes(1);
    let results = race(|| {
        let store = store.clone();
        async move {
            store
                .settle_proposal(
                    owner,
                    id,
                    ProposalStatus::Placed,
                    Some(placed),
                    decided_at,
                    draft(AuditAction::AgentProposalPlaced),
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
    assert_eq!(
        store.proposal(owner, id).await.expect("read"),
        Some(Proposal {
            status: ProposalStatus::Placed,
            order: Some(placed),
            decided_at: Some(decided_at),
            ..older
        })
    );
    assert!(
        !store
            .settle_proposal(
                owner,
                id,
                ProposalStatus::Rejected,
                None,
                decided_at,
                draft(AuditAction::AgentProposalRejected),
            )
            .await
            .expect("settle")
    );
    assert_eq!(
        store.proposal(owner, newer.id).await.expect("read"),
        Some(newer)
    );
    app.stop().await;
}

#[tokio::test]
async fn a_keyed_venue_round_trips() {
    let app = spawn_app().await;
    let store = store(&app);
    let owner = new_user(&app, "venue@example.com", Role::Trader).await;
    let mut keyed = with_status(order(owner, now(&app), "12.5"), OrderStatus::Denied, None);
    keyed.venue = Venue {
        exchange: ExchangeName::Binance,
        environment: KeyEnvironment::Testnet,
        key: Some(KeyId::new_random()),
    };
    keyed.verdict = Verdict::Deny;
    keyed.anomaly = None;
    keyed.source = OrderSource::Autonomous;
    keyed.hits = vec![RuleHit {
        rule: Rule::SymbolNotAllowed,
        verdict: Verdict::Deny,
        message: "BTCUSDT is not tradable".into(),
    }];
    keyed.ip = None;
    keyed.device = None;
    record(&store, keyed.clone()).await;
    assert_eq!(
        store.order(owner, keyed.id).await.expect("read"),
        Some(keyed)
    );
    app.stop().await;
}

#[tokio::test]
async fn the_controls_overview_lists_every_user_with_controls_overrides_and_open_cases() {
    let app = spawn_app().await;
    let store = store(&app);
    let limited = new_user(&app, "limited@example.com", Role::Trader).await;
    let stopped = new_user(&app, "stopped@example.com", Role::Trader).await;
    let at = now(&app);
    store
        .set_limit(
            Some(limited),
            LimitField::MaxOrderNotional.key(),
            Some("500"),
            draft(AuditAction::RiskLimitChanged),
        )
        .await
        .expect("override");
    store
        .change_controls(
            stopped,
            ControlsChange {
                kill_switch: Some(true),
                ..Default::default()
            },
            draft(AuditAction::RiskControlsChanged),
        )
        .await
        .expect("stopped");
    let (held, case) = held_with_case(limited, at);
    store
        .record_decision(case_decision(held, case))
        .await
        .expect("case opened");
    store
        .set_global_kill_switch(true, draft(AuditAction::RiskKillSwitchOn))
        .await
        .expect("kill switch");

    let overview = store.controls_overview().await.expect("overview");
    assert!(overview.global_kill);
    let (global, _) = store.limits(limited).await.expect("limits");
    assert_eq!(overview.global_limits, global);
    let row = |id: UserId| {
        overview
            .users
            .iter()
            .find(|u| u.user.id == id)
            .expect("every user is listed")
    };
    let limited_row = row(limited);
    assert_eq!(limited_row.user.email.as_str(), "limited@example.com");
    assert_eq!(
        limited_row.overrides,
        BTreeMap::from([(
            LimitField::MaxOrderNotional.key().to_owned(),
            "500".to_owned()
        )])
    );
    assert_eq!(limited_row.open_cases, 1);
    assert_eq!(limited_row.controls.state, TradingState::Reducing);
    let stopped_row = row(stopped);
    assert!(stopped_row.controls.kill_switch);
    assert!(stopped_row.overrides.is_empty());
    assert_eq!(stopped_row.open_cases, 0);
    app.stop().await;
}

/// The screening settings come from one statement; they must be what the per-area reads say,
/// for the trader and for nobody else (another user's overrides, controls and cases).
#[tokio::test]
async fn screening_settings_match_the_per_area_reads() {
    let app = spawn_app().await;
    let store = store(&app);
    let trader = new_user(&app, "screened@example.com", Role::Trader).await;
    let other = new_user(&app, "bystander@example.com", Role::Trader).await;
    let at = now(&app);
    let per_area = |user: UserId| {
        let store = store.clone();
        async move {
            let (global_limits, own_limits) = store.limits(user).await.expect("limits");
            let mut blocked_cidrs: Vec<String> = store
                .blocklist()
                .await
                .expect("blocklist")
                .into_iter()
                .map(|range| range.cidr)
                .collect();
            blocked_cidrs.sort();
            ScreeningSettings {
                global_limits,
                own_limits,
                global_kill: store.global_kill_switch().await.expect("kill switch"),
                controls: store.controls(user).await.expect("controls"),
                blocked_cidrs,
                open_cases: store.open_cases_for(user).await.expect("open cases"),
            }
        }
    };
    let together = |user: UserId| {
        let store = store.clone();
        async move {
            let mut settings = store.screening_settings(user).await.expect("settings");
            settings.blocked_cidrs.sort();
            settings
        }
    };

    // Nothing set: seeded global limits, default controls, nothing blocked or open.
    let fresh = together(trader).await;
    assert_eq!(fresh, per_area(trader).await);
    assert!(!fresh.global_limits.is_empty());
    assert!(fresh.own_limits.is_empty() && fresh.blocked_cidrs.is_empty());
    assert_eq!(fresh.controls, UserControls::default_for(trader));
    assert!(!fresh.global_kill);

    store
        .set_limit(
            Some(other),
            LimitField::MaxOrderNotional.key(),
            Some("5"),
            draft(AuditAction::RiskLimitChanged),
        )
        .await
        .expect("other's override");
    store
        .set_limit(
            Some(trader),
            LimitField::DailyNotional.key(),
            Some("750"),
            draft(AuditAction::RiskLimitChanged),
        )
        .await
        .expect("trader's override");
    store
        .change_controls(
            trader,
            ControlsChange {
                kill_switch: Some(true),
                autonomous: Some(true),
                ..Default::default()
            },
            draft(AuditAction::RiskControlsChanged),
        )
        .await
        .expect("trader's controls");
    for (n, cidr) in ["198.51.100.0/24", "2001:db8::/32"].into_iter().enumerate() {
        store
            .add_blocked_range(
                &BlockedRange {
                    id: Uuid::new_v4(),
                    cidr: cidr.into(),
                    note: String::new(),
                    created_at: at + Duration::seconds(n as i64),
                },
                draft(AuditAction::RiskIpBlocked),
            )
            .await
            .expect("blocked range");
    }
    let (held, case) = held_with_case(other, at);
    store
        .record_decision(case_decision(held, case))
        .await
        .expect("other's case");
    store
        .set_global_kill_switch(true, draft(AuditAction::RiskKillSwitchOn))
        .await
        .expect("kill switch");

    let trader_settings = together(trader).await;
    assert_eq!(trader_settings, per_area(trader).await);
    assert_eq!(
        trader_settings.own_limits,
        BTreeMap::from([(LimitField::DailyNotional.key().to_owned(), "750".to_owned())])
    );
    assert!(trader_settings.global_kill);
    assert!(trader_settings.controls.kill_switch && trader_settings.controls.autonomous);
    assert_eq!(trader_settings.controls.state, TradingState::Active);
    assert_eq!(
        trader_settings.blocked_cidrs,
        ["198.51.100.0/24", "2001:db8::/32"]
    );
    assert_eq!(trader_settings.open_cases, 0);

    // With the paper account, as screening reads them (on SQLite in one read transaction).
    let (account, mut settings) = store
        .account_and_settings(trader)
        .await
        .expect("account and settings");
    settings.blocked_cidrs.sort();
    assert_eq!(settings, trader_settings);
    assert_eq!(
        account.portfolio,
        store.paper_portfolio(trader).await.expect("portfolio")
    );
    assert_eq!(
        account.claims,
        store.paper_claims(trader).await.expect("claims")
    );

    let other_settings = together(other).await;
    assert_eq!(other_settings, per_area(other).await);
    assert_eq!(other_settings.open_cases, 1);
    assert_eq!(other_settings.controls.state, TradingState::Reducing);
    assert!(!other_settings.controls.kill_switch);
    app.stop().await;
}

#[tokio::test]
async fn the_claims_are_the_owners_live_paper_orders_less_what_they_executed() {
    let app = spawn_app().await;
    let store = store(&app);
    let owner = new_user(&app, "claims@example.com", Role::Trader).await;
    let other = new_user(&app, "other-claims@example.com", Role::Trader).await;
    let at = now(&app);
    let live = |status, side, hold| {
        let mut order = with_status(order(owner, at, "5000"), status, hold);
        order.side = side;
        order
    };
    let held_buy = live(OrderStatus::Held, OrderSide::Buy, Some(HoldKind::Review));
    let sending_sell = live(OrderStatus::Submitting, OrderSide::Sell, None);
    let mut partly_filled_sell = live(OrderStatus::Open, OrderSide::Sell, None);
    partly_filled_sell.filled_quantity = dec("0.2");
    partly_filled_sell.average_price = Some(dec("100"));
    let mut on_binance = live(OrderStatus::Open, OrderSide::Sell, None);
    on_binance.venue = Venue {
        exchange: ExchangeName::Binance,
        environment: KeyEnvironment::Testnet,
        key: Some(KeyId::new_random()),
    };
    let ended = [
        order(owner, at, "5000"),
        live(OrderStatus::Denied, OrderSide::Sell, None),
        live(OrderStatus::Cancelled, OrderSide::Sell, None),
        live(OrderStatus::Rejected, OrderSide::Buy, None),
    ];
    let others = with_status(order(other, at, "5000"), OrderStatus::Open, None);
    for order in [
        held_buy.clone(),
        sending_sell.clone(),
        partly_filled_sell.clone(),
        on_binance,
        others,
    ]
    .into_iter()
    .chain(ended)
    {
        record(&store, order).await;
    }

    let mut claims = store.paper_claims(owner).await.expect("claims");
    claims.sort_by_key(|c| (c.side.as_str(), c.quantity));
    let summary: Vec<(OrderId, OrderSide, Decimal, Decimal)> = claims
        .iter()
        .map(|c| (c.order, c.side, c.quantity, c.value))
        .collect();
    assert_eq!(
        summary,
        [
            (held_buy.id, OrderSide::Buy, dec("0.5"), dec("5000")),
            (
                partly_filled_sell.id,
                OrderSide::Sell,
                dec("0.3"),
                dec("3000")
            ),
            (sending_sell.id, OrderSide::Sell, dec("0.5"), dec("5000")),
        ]
    );
    let (account, _) = store
        .account_and_settings(owner)
        .await
        .expect("account and settings");
    let mut together = account.claims.clone();
    together.sort_by_key(|c| (c.side.as_str(), c.quantity));
    assert_eq!(together, claims);
    assert_eq!(
        account.free(None).cash,
        account.portfolio.cash - dec("5000")
    );
    assert_eq!(account.free(Some(held_buy.id)).cash, account.portfolio.cash);
    app.stop().await;
}

#[tokio::test]
async fn case_files_carry_the_accounts_and_the_subjects_state_now() {
    let app = spawn_app().await;
    let store = store(&app);
    let subject = new_user(&app, "subject@example.com", Role::Trader).await;
    let reviewer = new_user(&app, "casereviewer@example.com", Role::Reviewer).await;
    let at = now(&app);
    let (held, case) = held_with_case(subject, at);
    store
        .record_decision(case_decision(held, case.clone()))
        .await
        .expect("case opened");

    let open = store
        .case_file(case.id)
        .await
        .expect("read")
        .expect("the case");
    assert_eq!(open.case, case);
    assert_eq!(
        open.subject_email.as_ref().map(|e| e.as_str()),
        Some("subject@example.com")
    );
    assert_eq!(open.reviewer_email, None);
    assert_eq!(open.subject_standing.state, TradingState::Reducing);
    assert_eq!(open.other_open_cases, 0);
    assert_eq!(open.state_after(CaseStatus::Released), TradingState::Active);
    assert_eq!(
        open.state_after(CaseStatus::Confirmed),
        TradingState::Reducing
    );

    assert!(
        store
            .decide_case(CaseDecisionWrite {
                id: case.id,
                status: CaseStatus::Released,
                reviewer,
                note: "False alarm".into(),
                at: at + Duration::minutes(1),
                audit: draft(AuditAction::ReviewCaseReleased),
            })
            .await
            .expect("released")
    );
    let files = store
        .case_files(Some(CaseStatus::Released), 10)
        .await
        .expect("files");
    assert_eq!(files.len(), 1);
    assert_eq!(
        files[0].reviewer_email.as_ref().map(|e| e.as_str()),
        Some("casereviewer@example.com")
    );
    assert_eq!(files[0].subject_standing.state, TradingState::Active);
    assert!(
        store
            .case_files(Some(CaseStatus::Open), 10)
            .await
            .expect("files")
            .is_empty()
    );
    assert_eq!(
        store.case_file(CaseId::new_random()).await.expect("read"),
        None
    );

    // With two cases open, releasing one leaves the trader where the other holds them, and the
    // decided case counts no other case (it is not open itself).
    let (first_held, first) = held_with_case(subject, at + Duration::minutes(2));
    let (second_held, second) = held_with_case(subject, at + Duration::minutes(3));
    for (held, case) in [(first_held, first.clone()), (second_held, second.clone())] {
        store
            .record_decision(case_decision(held, case))
            .await
            .expect("case opened");
    }
    let file = store
        .case_file(first.id)
        .await
        .expect("read")
        .expect("the case");
    assert_eq!(file.other_open_cases, 1);
    assert_eq!(
        file.state_after(CaseStatus::Released),
        TradingState::Reducing
    );
    let decided = store
        .case_file(case.id)
        .await
        .expect("read")
        .expect("the case");
    assert_eq!(decided.other_open_cases, 2);
    app.stop().await;
}
