//! The overview at `/`, one server function per role: the trader's trading state, positions,
//! open orders, alerts and keys due for rotation; the reviewer's open cases by age and recent
//! report downloads; the admin's kill switch, open alerts and security events of the last day.

use domain::risk::TradingState;
use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use super::trading::{OrderView, PositionView};
use crate::error::AppError;

/// An open security alert, without its message (see `AlertService::open_alerts`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertNotice {
    pub id: String,
    pub kind: String,
    /// A readable name for the kind.
    pub title: String,
    pub raised_at: String,
}

/// A key the owner should replace soon (or should have replaced).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyDueView {
    pub id: String,
    pub label: String,
    pub exchange_label: String,
    pub mask: String,
    pub created_at: String,
    pub due_at: String,
    /// Whole days until it is due; negative once overdue.
    pub days_left: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraderOverviewView {
    pub state: TradingState,
    pub global_kill: bool,
    pub user_kill: bool,
    pub open_cases: u64,
    /// Exchanges paused after an outage.
    pub paused: Vec<String>,
    /// Why trading is restricted, one sentence each; empty when it is not.
    pub reasons: Vec<String>,
    pub cash: String,
    pub positions: Vec<PositionView>,
    /// Cash plus the positions that have a price.
    pub total_value: String,
    /// Held, being sent or resting, newest first (among the newest orders).
    pub open_orders: Vec<OrderView>,
    pub alerts: Vec<AlertNotice>,
    pub keys_due: Vec<KeyDueView>,
    pub rotation_days: i64,
}

/// How many open cases have waited how long.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgeBucket {
    pub label: String,
    pub count: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpenCaseSummary {
    pub id: String,
    pub subject_email: Option<String>,
    pub score: f64,
    pub opened_at: String,
    /// "35 min", "5 h", "3 d".
    pub age: String,
    pub age_minutes: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportDownloadView {
    pub seq: i64,
    pub at: String,
    pub by: String,
    pub format: String,
    pub rows: Option<u64>,
    /// The report's filter in words ("all events" when none).
    pub filter: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReviewerOverviewView {
    pub open_cases: u64,
    /// The case list is bounded: true when there may be more open cases than counted.
    pub more_cases: bool,
    /// Under an hour, under a day, older.
    pub buckets: Vec<AgeBucket>,
    /// Oldest first.
    pub oldest: Vec<OpenCaseSummary>,
    pub downloads: Vec<ReportDownloadView>,
}

/// One hour of the security chart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HourBar {
    /// RFC 3339 start of the hour (UTC).
    pub start: String,
    /// "14:00".
    pub label: String,
    pub refused: u32,
    pub other: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecurityChartView {
    pub hours: Vec<HourBar>,
    pub since: String,
    pub until: String,
    pub incomplete: bool,
}

impl SecurityChartView {
    pub fn refused(&self) -> u32 {
        self.hours.iter().map(|h| h.refused).sum()
    }
    pub fn other(&self) -> u32 {
        self.hours.iter().map(|h| h.other).sum()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminOverviewView {
    pub global_kill: bool,
    pub open_alerts: u32,
    pub alerts: Vec<AlertNotice>,
    pub security: SecurityChartView,
}

/// How many open orders and oldest cases a card lists.
pub const CARD_ROWS: usize = 8;
/// The most open cases the reviewer's case list returns (`TradingService::cases`).
pub const CASE_LIST_BOUND: usize = 200;
/// How many of the trader's newest orders the open-orders card looks through.
pub const RECENT_ORDERS: u64 = 200;
/// How many report downloads the reviewer's card lists.
pub const DOWNLOAD_ROWS: u64 = 8;

#[server(endpoint = "overview/trader")]
pub async fn trader_overview() -> Result<TraderOverviewView, AppError> {
    use super::context::{require_user, services};
    use super::trading::{order_view, plain, position_view, status_view};
    use domain::audit::canonical_time;
    use domain::keys::KEY_ROTATION_DAYS;
    use domain::trading::OrderStatus;

    let (user, _) = require_user().await?;
    let services = services()?;
    let now = services.clock.now();
    let status = services.trading.trading_status(user.id).await?;
    let portfolio = services.trading.portfolio_report(user.id).await?;
    let orders = services.trading.orders(user.id, RECENT_ORDERS).await?;
    let keys = services.vault.list_keys(user.id).await?;
    let alerts = services.security_alerts.open_alerts_about(user.id).await?;

    let total_value = portfolio.cash
        + portfolio
            .positions
            .iter()
            .filter_map(|p| p.market_value())
            .sum::<rust_decimal::Decimal>();
    let mut keys_due: Vec<KeyDueView> = keys
        .iter()
        .filter(|k| k.rotation_reminder(now))
        .map(|k| KeyDueView {
            id: k.id.to_string(),
            label: k.label.clone(),
            exchange_label: format!(
                "{} {}",
                k.exchange.label(),
                k.environment.label().to_lowercase()
            ),
            mask: k.mask.clone(),
            created_at: canonical_time(k.created_at),
            due_at: canonical_time(k.rotation_due_at()),
            days_left: (k.rotation_due_at() - now).whole_days(),
        })
        .collect();
    keys_due.sort_by_key(|k| k.days_left);
    let open_orders = orders
        .iter()
        .filter(|o| {
            matches!(
                o.status,
                OrderStatus::Held | OrderStatus::Submitting | OrderStatus::Open
            )
        })
        .take(CARD_ROWS)
        .map(order_view)
        .collect();
    let banner = status_view(status);
    Ok(TraderOverviewView {
        reasons: restriction_reasons(&banner),
        state: banner.state,
        global_kill: banner.global_kill,
        user_kill: banner.user_kill,
        open_cases: banner.open_cases,
        paused: banner.paused,
        cash: plain(portfolio.cash.round_dp(2)),
        positions: portfolio.positions.iter().map(position_view).collect(),
        total_value: plain(total_value.round_dp(2)),
        open_orders,
        alerts: alerts.into_iter().map(alert_notice).collect(),
        keys_due,
        rotation_days: KEY_ROTATION_DAYS,
    })
}

#[server(endpoint = "overview/reviewer")]
pub async fn reviewer_overview() -> Result<ReviewerOverviewView, AppError> {
    use super::context::{require_reviewer, services};
    use domain::audit::canonical_time;
    use domain::trading::CaseStatus;

    let reviewer = require_reviewer().await?;
    let services = services()?;
    let now = services.clock.now();
    let mut cases = services
        .trading
        .cases(&reviewer, Some(CaseStatus::Open))
        .await?;
    let downloads = services
        .audit
        .recent_report_downloads(&reviewer, DOWNLOAD_ROWS)
        .await?;

    cases.sort_by_key(|c| c.case.opened_at);
    let ages: Vec<i64> = cases
        .iter()
        .map(|c| (now - c.case.opened_at).whole_minutes().max(0))
        .collect();
    let count =
        |range: std::ops::Range<i64>| ages.iter().filter(|a| range.contains(a)).count() as u64;
    let buckets = vec![
        AgeBucket {
            label: "Under 1 hour".into(),
            count: count(0..60),
        },
        AgeBucket {
            label: "1 to 24 hours".into(),
            count: count(60..24 * 60),
        },
        AgeBucket {
            label: "Over 24 hours".into(),
            count: count(24 * 60..i64::MAX),
        },
    ];
    let oldest = cases
        .iter()
        .zip(&ages)
        .take(CARD_ROWS)
        .map(|(c, age)| OpenCaseSummary {
            id: c.case.id.to_string(),
            subject_email: c.subject_email.as_ref().map(|e| e.as_str().to_owned()),
            score: c.case.score,
            opened_at: canonical_time(c.case.opened_at),
            age: age_words(*age),
            age_minutes: *age,
        })
        .collect();
    Ok(ReviewerOverviewView {
        open_cases: cases.len() as u64,
        // `cases` returns the newest open cases only: say so rather than undercount.
        more_cases: cases.len() >= CASE_LIST_BOUND,
        buckets,
        oldest,
        downloads: downloads.into_iter().map(download_view).collect(),
    })
}

#[server(endpoint = "overview/admin")]
pub async fn admin_overview() -> Result<AdminOverviewView, AppError> {
    use super::context::{require_admin_reader, services};
    use domain::audit::canonical_time;

    let reader = require_admin_reader().await?;
    let services = services()?;
    let now = services.clock.now();
    // The global switch, read the way the trading banner reads it.
    let status = services.trading.trading_status(reader.id()).await?;
    let alerts = services.security_alerts.open_alerts(&reader).await?;
    let activity = services.audit.security_activity(&reader, now).await?;
    Ok(AdminOverviewView {
        global_kill: status.global_kill,
        open_alerts: alerts.len() as u32,
        alerts: alerts
            .into_iter()
            .take(CARD_ROWS)
            .map(alert_notice)
            .collect(),
        security: SecurityChartView {
            hours: activity
                .hours
                .iter()
                .map(|h| HourBar {
                    start: canonical_time(h.start),
                    label: format!("{:02}:00", h.start.hour()),
                    refused: h.refused,
                    other: h.other,
                })
                .collect(),
            since: canonical_time(activity.since),
            until: canonical_time(activity.until),
            incomplete: activity.incomplete,
        },
    })
}

/// Why trading is restricted, in the banner's words.
pub fn restriction_reasons(status: &super::trading::TradingStatusView) -> Vec<String> {
    let mut reasons = Vec::new();
    if status.global_kill {
        reasons.push("The platform kill switch is on: all trading is stopped.".to_owned());
    }
    if status.user_kill {
        reasons.push("An administrator stopped your trading.".to_owned());
    }
    match status.state {
        TradingState::Active if status.open_cases > 0 => reasons.push(format!(
            "{} order(s) of yours are held for review.",
            status.open_cases
        )),
        TradingState::Active => {}
        TradingState::Reducing => reasons.push(format!(
            "Quarantined while a reviewer looks at {} open case(s): sells only.",
            status.open_cases
        )),
        TradingState::Halted => {
            reasons.push("Halted: only cancels until a reviewer releases the account.".to_owned())
        }
    }
    for venue in &status.paused {
        reasons.push(format!("{venue} is paused after an outage."));
    }
    reasons
}

pub fn alert_title(kind: &str) -> &'static str {
    match kind {
        "security_key_cloned" => "Security key disabled as possibly cloned",
        "canary_key_used" => "Decoy key touched",
        "anomaly_case_opened" => "Anomaly case opened",
        _ => "Security alert",
    }
}

/// "35 min", "5 h", "3 d".
pub fn age_words(minutes: i64) -> String {
    match minutes {
        m if m < 60 => format!("{m} min"),
        m if m < 48 * 60 => format!("{} h", m / 60),
        m => format!("{} d", m / (24 * 60)),
    }
}

#[cfg(feature = "ssr")]
fn alert_notice(alert: domain::alerts::OpenAlert) -> AlertNotice {
    AlertNotice {
        id: alert.id.to_string(),
        title: alert_title(&alert.kind).to_owned(),
        kind: alert.kind,
        raised_at: domain::audit::canonical_time(alert.raised_at),
    }
}

/// A download event as the reviewer's card shows it. The details are what the report run
/// records: `format`, `rows`, `filter` (the report's `AuditFilter`).
#[cfg(feature = "ssr")]
fn download_view(reviewed: domain::audit::service::ReviewedEvent) -> ReportDownloadView {
    use domain::audit::{AuditFilter, canonical_time};

    let event = reviewed.event;
    let details = &event.details;
    let filter = details
        .get("filter")
        .and_then(|f| serde_json::from_value::<AuditFilter>(f.clone()).ok())
        .map_or_else(|| "unknown filter".to_owned(), |f| filter_words(&f));
    ReportDownloadView {
        seq: event.seq,
        at: canonical_time(event.occurred_at),
        by: reviewed
            .actor_email
            .map(|e| e.as_str().to_owned())
            .or(event.actor.id.clone())
            .unwrap_or_else(|| event.actor.kind.as_str().to_owned()),
        format: details
            .get("format")
            .and_then(|f| f.as_str())
            .unwrap_or("csv")
            .to_uppercase(),
        rows: details.get("rows").and_then(serde_json::Value::as_u64),
        filter,
    }
}

#[cfg(feature = "ssr")]
fn filter_words(filter: &domain::audit::AuditFilter) -> String {
    use domain::audit::canonical_time;

    let day = |at: time::OffsetDateTime| canonical_time(at).chars().take(10).collect::<String>();
    let mut parts = Vec::new();
    match (filter.from, filter.to) {
        (Some(from), Some(to)) => parts.push(format!("{} to {}", day(from), day(to))),
        (Some(from), None) => parts.push(format!("from {}", day(from))),
        (None, Some(to)) => parts.push(format!("until {}", day(to))),
        (None, None) => {}
    }
    if let Some(actor) = filter.actor_id() {
        parts.push(format!("actor {actor}"));
    }
    if let Some(action) = filter.action_prefix() {
        parts.push(format!("action {action}*"));
    }
    if let Some(outcome) = filter.outcome {
        parts.push(outcome.as_str().to_owned());
    }
    if let Some(resource) = filter.resource() {
        parts.push(format!("resource {resource}"));
    }
    if let Some(request) = filter.request_id() {
        parts.push(format!("request {request}"));
    }
    if parts.is_empty() {
        "all events".to_owned()
    } else {
        parts.join(", ")
    }
}
