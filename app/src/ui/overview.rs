//! The role cards of the overview at `/`: the trader's trading state, positions, open orders,
//! alerts and keys due for rotation; the reviewer's open cases by age and report downloads; the
//! admin's kill switch, open alerts and the security-events chart (SVG drawn by
//! [`security_chart_svg`], on the server for the first page).

use crate::ui::server_data::server_data;
use leptos::prelude::*;
use leptos_router::components::A;

use super::ErrorNotice;
use super::keys::short_time;
use super::trading::{CARD, TD, TH, money};
use crate::api::UserRole;
use crate::api::overview::{
    AdminOverviewView, ReviewerOverviewView, SecurityChartView, TraderOverviewView, admin_overview,
    reviewer_overview, trader_overview,
};
use domain::risk::TradingState;

const CARD_HEAD: &str =
    "flex items-center justify-between gap-3 border-b border-slate-200 px-4 py-3";
const LINK: &str = "text-sm font-medium text-indigo-700 hover:text-indigo-500";
const STAT: &str = "text-2xl font-semibold tabular-nums text-slate-900";

/// The cards for `role`: admins see theirs and the reviewer's (they review too).
#[component]
pub fn RoleCards(role: UserRole) -> impl IntoView {
    match role {
        UserRole::Trader => view! { <TraderCards /> }.into_any(),
        UserRole::Reviewer => view! { <ReviewerCards /> }.into_any(),
        UserRole::Admin => view! { <AdminCards /> <ReviewerCards /> }.into_any(),
    }
}

fn loading() -> impl IntoView {
    view! { <p class="text-sm text-slate-500">"Loading…"</p> }
}

// --- trader ----------------------------------------------------------------------------------

#[component]
fn TraderCards() -> impl IntoView {
    let data = server_data(|| (), |_| trader_overview());
    view! {
        <Transition fallback=loading>
            {move || Suspend::new(async move {
                match data.await {
                    Ok(o) => view! { <TraderView overview=o /> }.into_any(),
                    Err(e) => view! { <ErrorNotice error=Signal::stored(Some(e)) /> }.into_any(),
                }
            })}
        </Transition>
    }
}

fn state_tone(state: TradingState, stopped: bool) -> (&'static str, &'static str) {
    match (state, stopped) {
        (_, true) | (TradingState::Halted, _) => ("HALTED", "bg-red-600 text-white"),
        (TradingState::Reducing, _) => ("REDUCING", "bg-amber-500 text-white"),
        (TradingState::Active, _) => ("ACTIVE", "bg-emerald-600 text-white"),
    }
}

#[component]
fn TraderView(overview: TraderOverviewView) -> impl IntoView {
    let o = overview;
    let (state_word, state_class) = state_tone(o.state, o.global_kill || o.user_kill);
    let reasons = if o.reasons.is_empty() {
        view! { <p class="mt-2 text-sm text-slate-600">"Orders are screened and sent normally."</p> }.into_any()
    } else {
        view! {
            <ul class="mt-2 space-y-1 text-sm text-slate-700" data-testid="state-reasons">
                {o.reasons.iter().map(|r| view! { <li>{r.clone()}</li> }).collect_view()}
            </ul>
        }
        .into_any()
    };
    let positions = if o.positions.is_empty() {
        view! { <p class="px-4 py-4 text-sm text-slate-500">"No positions yet."</p> }.into_any()
    } else {
        view! {
            <table class="min-w-full divide-y divide-slate-200">
                <thead class="bg-slate-50"><tr><th class=TH>"Symbol"</th><th class=TH>"Quantity"</th><th class=TH>"Value (USDT)"</th><th class=TH>"P&L"</th></tr></thead>
                <tbody class="divide-y divide-slate-100">
                    {o.positions.iter().map(|p| {
                        let pnl = p.unrealized_pnl.clone().unwrap_or_default();
                        let pnl_class = if pnl.starts_with('-') { "text-red-700" } else { "text-emerald-700" };
                        view! { <tr>
                            <td class=TD>{p.symbol.clone()}</td>
                            <td class=format!("{TD} tabular-nums")>{p.quantity.clone()}</td>
                            <td class=format!("{TD} tabular-nums")>{p.market_value.as_deref().map(money).unwrap_or_else(|| "—".into())}</td>
                            <td class=format!("{TD} tabular-nums {pnl_class}")>{if pnl.is_empty() { "—".to_owned() } else { money(&pnl) }}</td>
                        </tr> }
                    }).collect_view()}
                </tbody>
            </table>
        }
        .into_any()
    };
    let orders = if o.open_orders.is_empty() {
        view! { <p class="px-4 py-4 text-sm text-slate-500">"No open orders."</p> }.into_any()
    } else {
        view! {
            <ul class="divide-y divide-slate-100">
                {o.open_orders.iter().map(|order| view! {
                    <li class="flex items-center justify-between gap-3 px-4 py-2 text-sm" data-testid="open-order">
                        <span>
                            <span class="font-medium tabular-nums text-slate-900">{format!("{} {} {}", order.side, order.quantity, order.symbol)}</span>
                            <span class="text-slate-500">{format!(" · {}", order.order_type)}</span>
                            <span class="block text-xs text-slate-500">{short_time(&order.created_at)}</span>
                        </span>
                        <span class="whitespace-nowrap rounded bg-slate-100 px-2 py-0.5 text-xs font-medium text-slate-700">{status_words(&order.status, order.awaiting_approval)}</span>
                    </li>
                }).collect_view()}
            </ul>
        }
        .into_any()
    };
    let alerts = if o.alerts.is_empty() {
        view! { <p class="text-sm text-slate-500">"No open alerts about your account."</p> }
            .into_any()
    } else {
        view! {
            <ul class="space-y-2">
                {o.alerts.iter().map(|a| view! {
                    <li class="rounded-md border border-red-200 bg-red-50 px-3 py-2 text-sm text-red-800" data-testid="trader-alert">
                        <span class="font-medium">{a.title.clone()}</span>
                        <span class="block text-xs">{short_time(&a.raised_at)}" UTC · "<A href="/security" attr:class="underline">"Review your security keys"</A></span>
                    </li>
                }).collect_view()}
            </ul>
        }
        .into_any()
    };
    let rotation_days = o.rotation_days;
    let keys = if o.keys_due.is_empty() {
        view! { <p class="text-sm text-slate-500">{format!("No key is due. Keys are to be replaced every {rotation_days} days.")}</p> }.into_any()
    } else {
        view! {
            <ul class="divide-y divide-slate-100">
                {o.keys_due.iter().map(|k| {
                    let (when, tone) = if k.days_left < 0 {
                        (format!("{} days overdue", -k.days_left), "text-red-700")
                    } else {
                        (format!("due in {} days", k.days_left), "text-amber-700")
                    };
                    view! {
                        <li class="flex items-center justify-between gap-3 py-2 text-sm" data-testid="key-due">
                            <span>
                                <span class="font-medium text-slate-900">{k.label.clone()}</span>
                                <span class="ml-2 font-mono text-xs text-slate-500">{k.mask.clone()}</span>
                                <span class="block text-xs text-slate-500">{format!("{} · added {}", k.exchange_label, short_time(&k.created_at))}</span>
                            </span>
                            <span class=format!("whitespace-nowrap text-xs font-semibold {tone}")>{when}</span>
                        </li>
                    }
                }).collect_view()}
            </ul>
            <A href="/keys" attr:class=LINK>"Replace keys →"</A>
        }
        .into_any()
    };
    view! {
        <div class="grid gap-4 lg:grid-cols-3" data-testid="trader-overview">
            <section class="rounded-xl border border-slate-200 bg-white p-5 shadow-sm" data-testid="card-trading-state">
                <h2 class="text-sm font-semibold uppercase tracking-wide text-slate-500">"Trading state"</h2>
                <p class="mt-3"><span class=format!("inline-flex rounded-md px-2.5 py-1 text-sm font-bold tracking-wider {state_class}") data-testid="trading-state">{state_word}</span></p>
                {reasons}
                <p class="mt-3 text-xs text-slate-500">{match o.open_cases {
                    0 => "No open review case about your orders.".to_owned(),
                    1 => "1 open review case about your orders.".to_owned(),
                    n => format!("{n} open review cases about your orders."),
                }}</p>
            </section>
            <section class="rounded-xl border border-slate-200 bg-white p-5 shadow-sm" data-testid="card-alerts">
                <h2 class="text-sm font-semibold uppercase tracking-wide text-slate-500">"Alerts"</h2>
                <div class="mt-3">{alerts}</div>
            </section>
            <section class="rounded-xl border border-slate-200 bg-white p-5 shadow-sm" data-testid="card-keys-due">
                <h2 class="text-sm font-semibold uppercase tracking-wide text-slate-500">"Keys due for rotation"</h2>
                <div class="mt-3">{keys}</div>
            </section>
            <section class=format!("{CARD} lg:col-span-2") data-testid="card-positions">
                <div class=CARD_HEAD>
                    <h2 class="font-semibold">"Positions"</h2>
                    <span class="text-sm text-slate-600">"Cash "<span class="font-medium tabular-nums">{money(&o.cash)}</span>" · Total "<span class="font-semibold tabular-nums" data-testid="total-value">{money(&o.total_value)}" USDT"</span></span>
                </div>
                {positions}
            </section>
            <section class=CARD data-testid="card-open-orders">
                <div class=CARD_HEAD>
                    <h2 class="font-semibold">"Open orders"</h2>
                    <A href="/orders" attr:class=LINK>"All orders →"</A>
                </div>
                {orders}
            </section>
        </div>
    }
}

fn status_words(status: &str, awaiting_approval: bool) -> &'static str {
    match status {
        _ if awaiting_approval => "Awaiting your approval",
        "held" => "Held",
        "submitting" => "Sending",
        "open" => "Resting",
        _ => "Open",
    }
}

// --- reviewer --------------------------------------------------------------------------------

#[component]
fn ReviewerCards() -> impl IntoView {
    let data = server_data(|| (), |_| reviewer_overview());
    view! {
        <Transition fallback=loading>
            {move || Suspend::new(async move {
                match data.await {
                    Ok(o) => view! { <ReviewerView overview=o /> }.into_any(),
                    Err(e) => view! { <ErrorNotice error=Signal::stored(Some(e)) /> }.into_any(),
                }
            })}
        </Transition>
    }
}

#[component]
fn ReviewerView(overview: ReviewerOverviewView) -> impl IntoView {
    let o = overview;
    let count = if o.more_cases {
        format!("{}+", o.open_cases)
    } else {
        o.open_cases.to_string()
    };
    let buckets = o
        .buckets
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let tone = match (i, b.count) {
                (_, 0) => "border-slate-200 bg-white text-slate-900",
                (2, _) => "border-red-200 bg-red-50 text-red-800",
                (1, _) => "border-amber-200 bg-amber-50 text-amber-900",
                _ => "border-slate-200 bg-white text-slate-900",
            };
            view! {
                <div class=format!("rounded-lg border px-3 py-2 {tone}") data-testid="case-bucket">
                    <div class="text-xs font-medium uppercase tracking-wide opacity-80">{b.label.clone()}</div>
                    <div class="text-xl font-semibold tabular-nums" data-testid="case-bucket-count">{b.count}</div>
                </div>
            }
        })
        .collect_view();
    let oldest = if o.oldest.is_empty() {
        view! { <p class="px-4 py-4 text-sm text-slate-500">"No open cases. Nothing is waiting for a reviewer."</p> }.into_any()
    } else {
        view! {
            <table class="min-w-full divide-y divide-slate-200">
                <thead class="bg-slate-50"><tr><th class=TH>"Waiting"</th><th class=TH>"Trader"</th><th class=TH>"Score"</th><th class=TH>"Opened"</th></tr></thead>
                <tbody class="divide-y divide-slate-100">
                    {o.oldest.iter().map(|c| view! { <tr data-testid="oldest-case">
                        <td class=format!("{TD} font-medium")>{c.age.clone()}</td>
                        <td class=TD>{c.subject_email.clone().unwrap_or_else(|| "(deleted account)".into())}</td>
                        <td class=format!("{TD} tabular-nums")>{format!("{:.2}", c.score)}</td>
                        <td class=TD>{short_time(&c.opened_at)}</td>
                    </tr> }).collect_view()}
                </tbody>
            </table>
        }
        .into_any()
    };
    let downloads = if o.downloads.is_empty() {
        view! { <p class="px-4 py-4 text-sm text-slate-500">"No reports downloaded yet."</p> }
            .into_any()
    } else {
        view! {
            <table class="min-w-full divide-y divide-slate-200">
                <thead class="bg-slate-50"><tr><th class=TH>"When"</th><th class=TH>"Who"</th><th class=TH>"Report"</th></tr></thead>
                <tbody class="divide-y divide-slate-100">
                    {o.downloads.iter().map(|d| view! { <tr data-testid="report-download">
                        <td class=TD>{short_time(&d.at)}</td>
                        <td class=TD>{d.by.clone()}</td>
                        <td class="px-4 py-2 text-sm text-slate-700">
                            <span class="mr-2 rounded bg-slate-100 px-1.5 py-0.5 text-xs font-semibold text-slate-700">{d.format.clone()}</span>
                            {d.rows.map(|r| format!("{r} rows · ")).unwrap_or_default()}{d.filter.clone()}
                        </td>
                    </tr> }).collect_view()}
                </tbody>
            </table>
        }
        .into_any()
    };
    view! {
        <div class="mt-4 grid gap-4 lg:grid-cols-2" data-testid="reviewer-overview">
            <section class=CARD data-testid="card-open-cases">
                <div class=CARD_HEAD>
                    <h2 class="font-semibold">"Open cases by age"</h2>
                    <A href="/review" attr:class=LINK>"Review →"</A>
                </div>
                <div class="flex items-end gap-3 px-4 pt-4">
                    <span class=STAT data-testid="open-case-count">{count}</span>
                    <span class="pb-1 text-sm text-slate-600">"open, oldest first below"</span>
                </div>
                <div class="grid grid-cols-3 gap-2 px-4 py-3">{buckets}</div>
                {oldest}
            </section>
            <section class=CARD data-testid="card-report-downloads">
                <div class=CARD_HEAD>
                    <h2 class="font-semibold">"Recent report downloads"</h2>
                    <A href="/reports" attr:class=LINK>"Reports →"</A>
                </div>
                {downloads}
            </section>
        </div>
    }
}

// --- admin -----------------------------------------------------------------------------------

#[component]
fn AdminCards() -> impl IntoView {
    let data = server_data(|| (), |_| admin_overview());
    view! {
        <Transition fallback=loading>
            {move || Suspend::new(async move {
                match data.await {
                    Ok(o) => view! { <AdminView overview=o /> }.into_any(),
                    Err(e) => view! { <ErrorNotice error=Signal::stored(Some(e)) /> }.into_any(),
                }
            })}
        </Transition>
    }
}

#[component]
fn AdminView(overview: AdminOverviewView) -> impl IntoView {
    let o = overview;
    let (kill_word, kill_class, kill_text) = if o.global_kill {
        (
            "ON",
            "bg-red-600 text-white",
            "All trading is stopped. Turning it off needs your security key.",
        )
    } else {
        (
            "OFF",
            "bg-emerald-600 text-white",
            "Trading runs under the screening rules.",
        )
    };
    let alerts = if o.alerts.is_empty() {
        view! { <p class="text-sm text-slate-500">"No open alerts."</p> }.into_any()
    } else {
        view! {
            <ul class="divide-y divide-slate-100">
                {o.alerts.iter().map(|a| view! {
                    <li class="flex items-center justify-between gap-3 py-2 text-sm" data-testid="admin-alert">
                        <span class="font-medium text-slate-900">{a.title.clone()}</span>
                        <span class="whitespace-nowrap text-xs text-slate-500">{short_time(&a.raised_at)}</span>
                    </li>
                }).collect_view()}
            </ul>
        }
        .into_any()
    };
    let svg = security_chart_svg(&o.security);
    let refused = o.security.refused();
    let other = o.security.other();
    view! {
        <div class="grid gap-4 lg:grid-cols-3" data-testid="admin-overview">
            <section class="rounded-xl border border-slate-200 bg-white p-5 shadow-sm" data-testid="card-kill-switch">
                <h2 class="text-sm font-semibold uppercase tracking-wide text-slate-500">"Kill switch (global)"</h2>
                <p class="mt-3"><span class=format!("inline-flex rounded-md px-2.5 py-1 text-sm font-bold tracking-wider {kill_class}") data-testid="kill-switch-state">{kill_word}</span></p>
                <p class="mt-2 text-sm text-slate-600">{kill_text}</p>
                <A href="/admin/risk" attr:class=format!("{LINK} mt-3 inline-block")>"Risk controls →"</A>
            </section>
            <section class="rounded-xl border border-slate-200 bg-white p-5 shadow-sm lg:col-span-2" data-testid="card-open-alerts">
                <div class="flex items-center justify-between">
                    <h2 class="text-sm font-semibold uppercase tracking-wide text-slate-500">"Open alerts"</h2>
                    <A href="/admin/vault" attr:class=LINK>"Vault & alerts →"</A>
                </div>
                <p class="mt-2"><span class=STAT data-testid="open-alert-count">{o.open_alerts}</span><span class="ml-2 text-sm text-slate-600">"unacknowledged"</span></p>
                <div class="mt-2">{alerts}</div>
                {(o.open_alerts > 0).then(|| view! { <p class="mt-2 text-xs text-slate-500">"Details and acknowledging need your security key, on Vault & alerts."</p> })}
            </section>
            <section class=format!("{CARD} lg:col-span-3") data-testid="card-security-events">
                <div class=CARD_HEAD>
                    <div>
                        <h2 class="font-semibold">"Security events, last 24 hours"</h2>
                        <p class="text-xs text-slate-500">"Refused or failed requests, sign-ins, step-ups, key and alert activity; hourly, UTC."</p>
                    </div>
                    <div class="flex items-center gap-4 text-xs text-slate-600">
                        <span class="flex items-center gap-1.5"><span class="inline-block h-2.5 w-2.5 rounded-sm bg-red-600"></span>{format!("Refused or failed ({refused})")}</span>
                        <span class="flex items-center gap-1.5"><span class="inline-block h-2.5 w-2.5 rounded-sm bg-indigo-400"></span>{format!("Other ({other})")}</span>
                    </div>
                </div>
                <div class="px-4 py-3" data-testid="security-chart" inner_html=svg></div>
                {o.security.incomplete.then(|| view! { <p class="px-4 pb-3 text-xs text-amber-800">"More events than the chart reads at once: the bars are a lower bound."</p> })}
            </section>
        </div>
    }
}

// --- the chart -------------------------------------------------------------------------------

const CHART_W: u32 = 960;
const CHART_H: u32 = 260;
const LEFT: u32 = 48;
const RIGHT: u32 = 12;
const TOP: u32 = 14;
const BOTTOM: u32 = 42;
const GRID_LINES: u32 = 4;

/// The smallest scale top (a multiple of [`GRID_LINES`] steps of 1, 2 or 5 × 10ⁿ) at or above `max`.
pub fn nice_top(max: u32) -> u32 {
    let max = u64::from(max);
    let mut magnitude = 1u64;
    loop {
        for step in [1, 2, 5] {
            let top = step * magnitude * u64::from(GRID_LINES);
            if top >= max {
                return u32::try_from(top).unwrap_or(u32::MAX);
            }
        }
        magnitude *= 10;
    }
}

fn xml(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The admin's chart as SVG markup: stacked hourly bars (refused or failed at the bottom),
/// a y axis with gridlines, hour labels every three hours, axis titles, and a `<title>` and
/// `<desc>` for screen readers. Only numbers and fixed words go in, escaped all the same.
pub fn security_chart_svg(chart: &SecurityChartView) -> String {
    let plot_w = CHART_W - LEFT - RIGHT;
    let plot_h = CHART_H - TOP - BOTTOM;
    let max = chart
        .hours
        .iter()
        .map(|h| h.refused + h.other)
        .max()
        .unwrap_or(0);
    let top = nice_top(max.max(1));
    let n = chart.hours.len().max(1) as u32;
    let slot = f64::from(plot_w) / f64::from(n);
    let bar_w = (slot * 0.7).max(1.0);
    let y = |v: u32| f64::from(TOP) + f64::from(plot_h) * (1.0 - f64::from(v) / f64::from(top));
    let refused: u32 = chart.refused();
    let other: u32 = chart.other();
    let busiest = chart
        .hours
        .iter()
        .max_by_key(|h| h.refused + h.other)
        .filter(|h| h.refused + h.other > 0)
        .map_or_else(
            || "No security events in the period.".to_owned(),
            |h| {
                format!(
                    "Busiest hour {} UTC with {} events.",
                    h.label,
                    h.refused + h.other
                )
            },
        );
    let mut s = String::new();
    s.push_str(&format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {CHART_W} {CHART_H}" width="100%" role="img" aria-labelledby="security-chart-title security-chart-desc" class="block h-auto w-full font-sans">"#
    ));
    s.push_str(
        r#"<title id="security-chart-title">Security events per hour, last 24 hours (UTC)</title>"#,
    );
    s.push_str(&format!(
        r#"<desc id="security-chart-desc">{}</desc>"#,
        xml(&format!(
            "Stacked bars, one per hour from {} to {}: {refused} refused or failed and {other} other security events. {busiest}",
            short_time(&chart.since),
            short_time(&chart.until)
        ))
    ));
    // Gridlines and y labels.
    for i in 0..=GRID_LINES {
        let value = top / GRID_LINES * i;
        let gy = y(value);
        s.push_str(&format!(
            r##"<line x1="{LEFT}" x2="{}" y1="{gy:.1}" y2="{gy:.1}" stroke="{}" stroke-width="1"/>"##,
            CHART_W - RIGHT,
            if i == 0 { "#94a3b8" } else { "#e2e8f0" }
        ));
        s.push_str(&format!(
            r##"<text x="{}" y="{:.1}" text-anchor="end" font-size="12" fill="#64748b">{value}</text>"##,
            LEFT - 8,
            gy + 4.0
        ));
    }
    // Bars, bottom segment refused, top segment other.
    for (i, h) in chart.hours.iter().enumerate() {
        let x = f64::from(LEFT) + slot * i as f64 + (slot - bar_w) / 2.0;
        let total = h.refused + h.other;
        s.push_str(&format!(
            r#"<g data-hour="{}" data-refused="{}" data-other="{}"><title>{}</title>"#,
            xml(&h.start),
            h.refused,
            h.other,
            xml(&format!(
                "{} UTC: {} refused or failed, {} other",
                h.label, h.refused, h.other
            ))
        ));
        if h.refused > 0 {
            let y0 = y(h.refused);
            s.push_str(&format!(
                r##"<rect x="{x:.1}" y="{y0:.1}" width="{bar_w:.1}" height="{:.1}" fill="#dc2626" rx="2"/>"##,
                y(0) - y0
            ));
        }
        if h.other > 0 {
            let y1 = y(total);
            s.push_str(&format!(
                r##"<rect x="{x:.1}" y="{y1:.1}" width="{bar_w:.1}" height="{:.1}" fill="#818cf8" rx="2"/>"##,
                y(h.refused) - y1
            ));
        }
        s.push_str("</g>");
        if i % 3 == 0 || i + 1 == chart.hours.len() {
            s.push_str(&format!(
                r##"<text x="{:.1}" y="{}" text-anchor="middle" font-size="12" fill="#64748b">{}</text>"##,
                x + bar_w / 2.0,
                CHART_H - BOTTOM + 16,
                xml(&h.label)
            ));
        }
    }
    // Axis titles.
    s.push_str(&format!(
        r##"<text x="{}" y="{}" text-anchor="middle" font-size="12" fill="#475569">Hour (UTC)</text>"##,
        LEFT + plot_w / 2,
        CHART_H - 6
    ));
    s.push_str(&format!(
        r##"<text x="14" y="{}" text-anchor="middle" font-size="12" fill="#475569" transform="rotate(-90 14 {})">Events per hour</text>"##,
        TOP + plot_h / 2,
        TOP + plot_h / 2
    ));
    s.push_str("</svg>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::overview::HourBar;

    #[test]
    fn the_scale_top_is_a_round_number_at_or_above_the_maximum() {
        assert_eq!(nice_top(1), 4);
        assert_eq!(nice_top(4), 4);
        assert_eq!(nice_top(5), 8);
        assert_eq!(nice_top(17), 20);
        assert_eq!(nice_top(33), 40);
        assert_eq!(nice_top(41), 80);
        assert_eq!(nice_top(950), 2000);
    }

    #[test]
    fn the_chart_has_a_bar_per_hour_titles_and_axis_labels() {
        let hours = (0..24)
            .map(|i| HourBar {
                start: format!("2026-11-28T{i:02}:00:00Z"),
                label: format!("{i:02}:00"),
                refused: if i == 15 { 3 } else { 0 },
                other: if i == 15 { 1 } else { 0 },
            })
            .collect();
        let chart = SecurityChartView {
            hours,
            since: "2026-11-28T00:00:00Z".into(),
            until: "2026-11-28T23:10:00Z".into(),
            incomplete: false,
        };
        let svg = security_chart_svg(&chart);
        assert_eq!(svg.matches("<g data-hour=").count(), 24);
        assert!(
            svg.contains(r#"data-hour="2026-11-28T15:00:00Z" data-refused="3" data-other="1""#)
        );
        assert!(svg.contains("<title id=\"security-chart-title\">"));
        assert!(svg.contains("3 refused or failed and 1 other"));
        assert!(svg.contains("Busiest hour 15:00 UTC with 4 events."));
        assert!(svg.contains("Hour (UTC)") && svg.contains("Events per hour"));
        // One red and one indigo segment: the only hour with events.
        assert_eq!(svg.matches("<rect").count(), 2);
    }
}
