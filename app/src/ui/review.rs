//! "Review": anomaly cases for compliance reviewers — the queue, each case's evidence drawn
//! (recent trades over time, the score's contributions), and the decision with a required note.

use crate::ui::server_data::{ServerData, server_data};
use leptos::prelude::*;
use leptos_meta::Title;

use super::keys::short_time;
use super::trading::{CARD, money};
use super::{DANGER_BUTTON, ErrorNotice, LABEL_CLASS, PRIMARY_BUTTON, PageHeader, RequireRole};
use crate::api::UserRole;
use crate::api::trading::{CaseView, TradePoint, decide_case, get_case, list_cases};
use crate::error::AppError;
use domain::risk::TradingState;

#[component]
pub fn ReviewPage() -> impl IntoView {
    // Created before the role check, as on the Trade page.
    let (filter, set_filter) = signal("open".to_string());
    let (refresh, set_refresh) = signal(0u32);
    let cases = server_data(
        move || (filter.get(), refresh.get()),
        |(f, _)| list_cases(Some(f)),
    );
    view! {
        <Title text="Review" />
        <PageHeader title="Anomaly cases" description="Quarantined traders wait for your decision. Release them (held orders go out) or confirm the quarantine (held orders are cancelled). Every decision needs a note and is audited." />
        <RequireRole roles=&[UserRole::Reviewer, UserRole::Admin]>
            <ReviewDesk cases filter set_filter set_refresh />
        </RequireRole>
    }
}

fn score_badge(score: f64) -> &'static str {
    if score >= 0.9 {
        "bg-red-100 text-red-800"
    } else if score >= 0.8 {
        "bg-amber-100 text-amber-900"
    } else {
        "bg-slate-100 text-slate-700"
    }
}

#[component]
fn ReviewDesk(
    cases: ServerData<Result<Vec<CaseView>, AppError>>,
    filter: ReadSignal<String>,
    set_filter: WriteSignal<String>,
    set_refresh: WriteSignal<u32>,
) -> impl IntoView {
    let (selected, set_selected) = signal(None::<String>);
    view! {
        <div class="grid gap-6 lg:grid-cols-5">
            <section class=format!("{CARD} lg:col-span-2") data-testid="case-list">
                <div class="flex gap-1 border-b border-slate-200 px-3 py-2" role="tablist">
                    {[("open", "Open"), ("released", "Released"), ("confirmed", "Confirmed"), ("all", "All")].into_iter().map(|(value, label)| view! {
                        <button type="button" role="tab" aria-selected=move || (filter.get() == value).to_string()
                            class=move || format!("rounded-md px-3 py-1 text-sm {}", if filter.get() == value { "bg-slate-900 text-white" } else { "text-slate-600 hover:bg-slate-100" })
                            on:click=move |_| set_filter.set(value.to_string())>{label}</button>
                    }).collect_view()}
                </div>
                <Transition fallback=|| view! { <p class="p-4 text-sm text-slate-500">"Loading cases…"</p> }>
                    {move || cases.get().map(|c| match c {
                        Ok(list) if list.is_empty() => view! { <p class="p-4 text-sm text-slate-500">"No cases here."</p> }.into_any(),
                        Ok(list) => view! {
                            <ul class="divide-y divide-slate-100">
                                {list.into_iter().map(|case| {
                                    let id = case.id.clone();
                                    let id_for_class = case.id.clone();
                                    view! {
                                        <li>
                                            <button type="button" class=move || format!("w-full px-4 py-3 text-left hover:bg-slate-50 {}", if selected.get().as_deref() == Some(id_for_class.as_str()) { "bg-indigo-50" } else { "" })
                                                on:click=move |_| set_selected.set(Some(id.clone()))>
                                                <div class="flex items-center justify-between gap-2">
                                                    <span class="truncate text-sm font-medium text-slate-900">{case.subject_email.clone()}</span>
                                                    <span class=format!("rounded-full px-2 py-0.5 text-xs font-semibold {}", score_badge(case.score))>{format!("{:.2}", case.score)}</span>
                                                </div>
                                                <div class="mt-1 text-xs text-slate-500">{format!("{} · {} · now {}", short_time(&case.opened_at), case.status, case.state_now.label().to_lowercase())}</div>
                                            </button>
                                        </li>
                                    }
                                }).collect_view()}
                            </ul>
                        }.into_any(),
                        Err(e) => view! { <div class="p-4"><ErrorNotice error=Signal::stored(Some(e)) /></div> }.into_any(),
                    })}
                </Transition>
            </section>
            <div class="lg:col-span-3">
                {move || match selected.get() {
                    None => view! { <p class="rounded-xl border border-dashed border-slate-300 p-8 text-center text-sm text-slate-500">"Choose a case to see its evidence."</p> }.into_any(),
                    Some(id) => view! { <CaseDetail id on_decided=move || set_refresh.update(|n| *n += 1) /> }.into_any(),
                }}
            </div>
        </div>
    }
}

#[component]
fn CaseDetail(id: String, on_decided: impl Fn() + Copy + Send + Sync + 'static) -> impl IntoView {
    let (version, set_version) = signal(0u32);
    let case_id = id.clone();
    let case = server_data(move || version.get(), move |_| get_case(case_id.clone()));
    let (note, set_note) = signal(String::new());
    let (error, set_error) = signal(None::<AppError>);
    let (busy, set_busy) = signal(false);
    let decide = move |decision: &'static str| {
        let id = id.clone();
        let text = note.get_untracked();
        set_busy.set(true);
        leptos::task::spawn_local(async move {
            let result = decide_case(id, decision.into(), text).await;
            set_busy.set(false);
            match result {
                Ok(_) => {
                    set_error.set(None);
                    set_note.set(String::new());
                    set_version.update(|n| *n += 1);
                    on_decided();
                }
                Err(e) => set_error.set(Some(e)),
            }
        });
    };
    let decide = StoredValue::new(decide);
    view! {
        <Transition fallback=|| view! { <p class="text-sm text-slate-500">"Loading the case…"</p> }>
            {move || case.get().map(|c| match c {
                Err(e) => view! { <ErrorNotice error=Signal::stored(Some(e)) /> }.into_any(),
                Ok(c) => view! {
                    <section class=CARD data-testid="case-detail">
                        <div class="border-b border-slate-200 px-4 py-3">
                            <div class="flex flex-wrap items-center justify-between gap-2">
                                <h2 class="font-semibold">{c.subject_email.clone()}</h2>
                                <span class=format!("rounded-full px-2 py-0.5 text-sm font-semibold {}", score_badge(c.score))>{format!("score {:.2}", c.score)}</span>
                            </div>
                            <p class="mt-1 text-sm text-slate-600">{format!(
                                "Opened {} · trading state {} → {} (now {}) · case {}",
                                short_time(&c.opened_at), c.state_before.label().to_lowercase(), c.state_after.label().to_lowercase(), c.state_now.label().to_lowercase(), c.status
                            )}</p>
                        </div>
                        <div class="space-y-5 p-4">
                            <div>
                                <h3 class="text-sm font-semibold text-slate-800">"Recent trades and the flagged order"</h3>
                                <TradeChart recent=c.recent.clone() candidate=c.candidate.clone() />
                            </div>
                            <div>
                                <h3 class="text-sm font-semibold text-slate-800">"What drove the score"</h3>
                                <ul class="mt-2 space-y-2">
                                    {c.features.iter().map(|f| {
                                        let width = (f.impact / 0.6 * 100.0).clamp(0.0, 100.0);
                                        view! { <li class="text-sm">
                                            <div class="flex justify-between gap-2"><span class="font-medium">{f.label.clone()}</span><span class="tabular-nums text-slate-500">{format!("{:.2}", f.impact)}</span></div>
                                            // SVG geometry, not inline CSS: the CSP forbids style attributes.
                                            <svg viewBox="0 0 100 4" preserveAspectRatio="none" class="mt-1 h-2 w-full" aria-hidden="true">
                                                <rect width="100" height="4" rx="1" class="fill-slate-100" />
                                                <rect width=format!("{width:.1}") height="4" rx="1" class="fill-indigo-500" />
                                            </svg>
                                            <p class="mt-0.5 text-xs text-slate-500">{f.detail.clone()}</p>
                                        </li> }
                                    }).collect_view()}
                                </ul>
                            </div>
                            <div>
                                <h3 class="text-sm font-semibold text-slate-800">"Rules that fired"</h3>
                                {if c.hits.is_empty() {
                                    view! { <p class="text-sm text-slate-500">"None: the anomaly score alone opened this case."</p> }.into_any()
                                } else {
                                    view! { <ul class="mt-1 list-disc pl-5 text-sm text-slate-700">{c.hits.iter().map(|h| view! { <li>{format!("{}: {}", h.verdict, h.message)}</li> }).collect_view()}</ul> }.into_any()
                                }}
                            </div>
                            <div>
                                <h3 class="text-sm font-semibold text-slate-800">"Addresses and devices"</h3>
                                <p class="text-sm text-slate-700">{format!(
                                    "Flagged order from {} (device {}). Recent trades used {} address(es) and {} device(s).",
                                    c.candidate.ip.clone().unwrap_or_else(|| "an unknown address".into()),
                                    c.candidate.device.clone().unwrap_or_else(|| "unknown".into()),
                                    distinct(c.recent.iter().map(|t| t.ip.clone())),
                                    distinct(c.recent.iter().map(|t| t.device.clone())),
                                )}</p>
                            </div>
                            {c.rationale.clone().map(|r| view! {
                                <div class="rounded-md border border-slate-200 bg-slate-50 p-3">
                                    <h3 class="text-xs font-semibold uppercase tracking-wide text-slate-500">"Advisory text from the language model — not a decision"</h3>
                                    <p class="mt-1 whitespace-pre-line text-sm text-slate-700">{r}</p>
                                </div>
                            })}
                            {if c.status == "open" {
                                view! {
                                    <div class="space-y-3 border-t border-slate-200 pt-4">
                                        <label class=LABEL_CLASS for="case-note">"Decision note (required)"</label>
                                        <textarea id="case-note" data-testid="case-note" rows="3" class="block w-full rounded-md border border-slate-300 px-3 py-2 text-sm"
                                            prop:value=note on:input=move |ev| set_note.set(event_target_value(&ev))></textarea>
                                        <ul class="space-y-1 text-sm text-slate-700" data-testid="case-outcomes">
                                            <li><span class="font-medium">"Release: "</span>{release_outcome(&c)}</li>
                                            <li><span class="font-medium">"Confirm: "</span>{confirm_outcome(&c)}</li>
                                        </ul>
                                        <ErrorNotice error=error />
                                        <div class="flex flex-wrap gap-2">
                                            <button type="button" class=PRIMARY_BUTTON data-testid="case-release" disabled=busy on:click=move |_| decide.with_value(|d| d("release"))>"Release trader"</button>
                                            <button type="button" class=DANGER_BUTTON data-testid="case-confirm" disabled=busy on:click=move |_| decide.with_value(|d| d("confirm"))>"Confirm quarantine"</button>
                                        </div>
                                    </div>
                                }.into_any()
                            } else {
                                view! {
                                    <div class="rounded-md border border-slate-200 bg-slate-50 p-3 text-sm" data-testid="case-decision">
                                        <p class="font-medium">{format!("Case {} by {} on {}.", c.status, c.decided_by_email.clone().unwrap_or_default(), c.decided_at.as_deref().map(short_time).unwrap_or_default())}</p>
                                        <p class="mt-1 text-slate-700">{c.note.clone().unwrap_or_default()}</p>
                                    </div>
                                }.into_any()
                            }}
                        </div>
                    </section>
                }.into_any(),
            })}
        </Transition>
    }
}

/// What releasing does, worked out by the server from the trader's standing now. A released
/// order is judged again before it is sent, in the state the trader is left in.
fn release_outcome(case: &CaseView) -> String {
    let order = match (case.order_id.is_some(), case.on_release) {
        (false, _) => "",
        (true, TradingState::Active) => {
            "the held order is checked again and sent (one that needed the trader's own approval waits for it), and "
        }
        (true, TradingState::Reducing) => {
            "the held order is sent only if it sells what the trader holds, and "
        }
        (true, TradingState::Halted) => "the held order is cancelled, and ",
    };
    let state = case.on_release.label().to_lowercase();
    match case.other_open_cases {
        0 if case.on_release == TradingState::Active => {
            format!("{order}the trader returns to active trading.")
        }
        0 => format!(
            "{order}the trader returns to {state}, set by an admin or an earlier confirmed case; only an admin can lift it."
        ),
        1 => format!("{order}the trader stays {state}: another case is still open."),
        n => format!("{order}the trader stays {state}: {n} other cases are still open."),
    }
}

/// What confirming does.
fn confirm_outcome(case: &CaseView) -> String {
    let order = if case.order_id.is_some() {
        "the held order is cancelled, and "
    } else {
        ""
    };
    format!(
        "{order}the trader stays {} until an admin changes it.",
        case.on_confirm.label().to_lowercase()
    )
}

fn distinct(values: impl Iterator<Item = Option<String>>) -> usize {
    let mut seen: Vec<String> = values.flatten().collect();
    seen.sort();
    seen.dedup();
    seen.len()
}

/// Recent trades (grey) and the flagged order (red): time across, notional up (log scale when
/// the sizes span more than two orders of magnitude).
#[component]
fn TradeChart(recent: Vec<TradePoint>, candidate: TradePoint) -> impl IntoView {
    const W: f64 = 560.0;
    const H: f64 = 200.0;
    const PAD: f64 = 36.0;
    let all: Vec<&TradePoint> = recent.iter().chain(std::iter::once(&candidate)).collect();
    // One slot per order, oldest to newest: a burst within a few seconds would otherwise pile
    // up on one spot (the times are in each dot's tooltip and under the axis).
    let slots = all.len().saturating_sub(1).max(1) as f64;
    let n_min = all
        .iter()
        .map(|p| p.notional)
        .fold(f64::INFINITY, f64::min)
        .max(1e-9);
    let n_max = all
        .iter()
        .map(|p| p.notional)
        .fold(0.0, f64::max)
        .max(n_min * 1.01);
    let log = n_max / n_min > 100.0;
    let scale = move |n: f64| {
        let (lo, hi, v) = if log {
            (n_min.ln(), n_max.ln(), n.max(1e-9).ln())
        } else {
            (0.0, n_max, n)
        };
        H - PAD - (v - lo) / (hi - lo).max(1e-9) * (H - 2.0 * PAD)
    };
    let x = move |slot: usize| PAD + slot as f64 / slots * (W - 2.0 * PAD);
    let dot = move |slot: usize, p: &TradePoint, flagged: bool| {
        let title = format!(
            "{} {} USDT at {}",
            p.symbol,
            money(&format!("{:.2}", p.notional)),
            short_time(&p.at)
        );
        view! {
            <circle cx=format!("{:.1}", x(slot)) cy=format!("{:.1}", scale(p.notional)) r=if flagged { "7" } else { "4" }
                class=if flagged { "fill-red-600" } else { "fill-slate-400" }>
                <title>{title}</title>
            </circle>
        }
    };
    view! {
        <svg viewBox=format!("0 0 {W} {H}") class="mt-2 w-full rounded-md border border-slate-200 bg-white" role="img"
            aria-label="Notional of the trader's recent orders, oldest to newest, with the flagged order in red">
            <line x1=PAD y1=H - PAD x2=W - PAD y2=H - PAD class="stroke-slate-300" />
            <line x1=PAD y1=PAD x2=PAD y2=H - PAD class="stroke-slate-300" />
            <text x=PAD - 4.0 y=PAD + 4.0 text-anchor="end" class="fill-slate-500 text-[10px]">{money(&format!("{n_max:.0}"))}</text>
            <text x=PAD - 4.0 y=H - PAD text-anchor="end" class="fill-slate-500 text-[10px]">{if log { money(&format!("{n_min:.0}")) } else { "0".into() }}</text>
            <text x=PAD y=H - 12.0 class="fill-slate-500 text-[10px]">{short_time(&all.first().map(|p| p.at.clone()).unwrap_or_default())}</text>
            <text x=W - PAD y=H - 12.0 text-anchor="end" class="fill-slate-500 text-[10px]">{short_time(&candidate.at)}</text>
            <text x=W / 2.0 y=14.0 text-anchor="middle" class="fill-slate-500 text-[10px]">{if log { "notional (USDT, log scale)" } else { "notional (USDT)" }}</text>
            <text x=W / 2.0 y=H - 12.0 text-anchor="middle" class="fill-slate-400 text-[10px]">"one dot per order, oldest to newest"</text>
            {recent.iter().enumerate().map(|(slot, p)| dot(slot, p, false)).collect_view()}
            {dot(recent.len(), &candidate, true)}
        </svg>
    }
}
