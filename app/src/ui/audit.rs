//! The audit log page: recent events and an end-to-end chain check.

use leptos::prelude::*;
use leptos_meta::Title;

use super::{ErrorNotice, PRIMARY_BUTTON, PageHeader, RequireRole};
use crate::api::UserRole;
use crate::api::audit::{AuditEventView, ChainReport, VerifyAuditChain, recent_audit_events};

#[component]
pub fn AuditPage() -> impl IntoView {
    view! {
        <Title text="Audit log" />
        <PageHeader title="Audit log" description="Append-only and hash-chained: each event commits to the one before it, so any edit, deletion or reordering is detected." />
        <RequireRole roles=&[UserRole::Reviewer, UserRole::Admin]>
            <AuditLog />
        </RequireRole>
    }
}

#[component]
fn AuditLog() -> impl IntoView {
    let verify = ServerAction::<VerifyAuditChain>::new();
    let events = Resource::new(move || verify.version().get(), |_| recent_audit_events(100));
    let verify_error = Signal::derive(move || verify.value().get().and_then(Result::err));
    view! {
        <section class="mb-6 rounded-xl border border-slate-200 bg-white p-6 shadow-sm">
            <div class="flex flex-wrap items-center justify-between gap-4">
                <div>
                    <h2 class="font-semibold">"Chain integrity"</h2>
                    <p class="text-sm text-slate-600">"Recomputes every event's hash from the first event to the newest."</p>
                </div>
                <button type="button" class=PRIMARY_BUTTON data-testid="verify-chain"
                    disabled=move || verify.pending().get()
                    on:click=move |_| { verify.dispatch(VerifyAuditChain {}); }>
                    {move || if verify.pending().get() { "Verifying…" } else { "Verify chain" }}
                </button>
            </div>
            <div class="mt-4" aria-live="polite">
                {move || verify.value().get().and_then(Result::ok).map(|report| view! { <ChainStatus report /> })}
                <ErrorNotice error=verify_error />
            </div>
        </section>
        <section class="overflow-hidden rounded-xl border border-slate-200 bg-white shadow-sm">
            <h2 class="border-b border-slate-200 px-6 py-4 font-semibold">"Latest events"</h2>
            <Transition fallback=|| view! { <p class="px-6 py-4 text-sm text-slate-500">"Loading events…"</p> }>
                {move || Suspend::new(async move {
                    match events.await {
                        Ok(list) => view! { <EventTable events=list /> }.into_any(),
                        Err(e) => view! { <div class="p-6"><ErrorNotice error=Signal::stored(Some(e)) /></div> }.into_any(),
                    }
                })}
            </Transition>
        </section>
    }
}

#[component]
fn ChainStatus(report: ChainReport) -> impl IntoView {
    let short = |h: &str| h.chars().take(16).collect::<String>();
    match report.broken_at {
        None => view! {
            <div data-testid="chain-status" data-intact="true" class="rounded-md border border-emerald-200 bg-emerald-50 px-4 py-3 text-sm text-emerald-900">
                <strong>"Chain intact. "</strong>
                {format!("{} events verified; head seq {}, hash {}…", report.events_checked, report.head_seq, short(&report.head_hash))}
            </div>
        }
        .into_any(),
        Some((seq, reason)) => view! {
            <div data-testid="chain-status" data-intact="false" role="alert" class="rounded-md border border-red-200 bg-red-50 px-4 py-3 text-sm text-red-900">
                <strong>{format!("Chain broken at seq {seq}. ")}</strong>
                {format!("{reason}. {} events before it verified.", report.events_checked)}
            </div>
        }
        .into_any(),
    }
}

fn outcome_badge(outcome: &str) -> &'static str {
    match outcome {
        "success" => "bg-emerald-50 text-emerald-700 ring-emerald-200",
        "denied" => "bg-amber-50 text-amber-800 ring-amber-200",
        _ => "bg-red-50 text-red-700 ring-red-200",
    }
}

#[component]
fn EventTable(events: Vec<AuditEventView>) -> impl IntoView {
    if events.is_empty() {
        return view! { <p class="px-6 py-4 text-sm text-slate-500">"No events yet."</p> }
            .into_any();
    }
    let rows = events
        .into_iter()
        .map(|e| {
            let badge = format!("inline-flex rounded px-2 py-0.5 text-xs font-medium ring-1 ring-inset {}", outcome_badge(&e.outcome));
            view! {
                <tr class="align-top">
                    <td class="px-3 py-2 font-mono text-xs text-slate-500">{e.seq}</td>
                    <td class="px-3 py-2 whitespace-nowrap text-xs text-slate-600" title=e.occurred_at.clone()>{e.occurred_at.replace('T', " ").chars().take(19).collect::<String>()}</td>
                    <td class="px-3 py-2 font-mono text-xs">{e.action}</td>
                    <td class="px-3 py-2"><span class=badge>{e.outcome}</span></td>
                    <td class="px-3 py-2 max-w-56 truncate text-xs text-slate-700" title=e.actor.clone()>
                        {e.actor_email.clone().unwrap_or_else(|| e.actor.clone())}
                    </td>
                    <td class="px-3 py-2 font-mono text-xs text-slate-600">{e.ip.unwrap_or_default()}</td>
                    <td class="px-3 py-2 max-w-64 truncate font-mono text-xs text-slate-500" title=e.details.clone()>{e.details.clone()}</td>
                    <td class="px-3 py-2 font-mono text-xs text-slate-400" title=e.hash.clone()>{e.hash.chars().take(8).collect::<String>()}"…"</td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <div class="overflow-x-auto">
            <table class="min-w-full divide-y divide-slate-200 text-left text-sm" data-testid="audit-table">
                <thead class="bg-slate-50 text-xs font-medium uppercase tracking-wide text-slate-500">
                    <tr>
                        <th scope="col" class="px-3 py-2">"Seq"</th>
                        <th scope="col" class="px-3 py-2">"Time (UTC)"</th>
                        <th scope="col" class="px-3 py-2">"Action"</th>
                        <th scope="col" class="px-3 py-2">"Result"</th>
                        <th scope="col" class="px-3 py-2">"Actor"</th>
                        <th scope="col" class="px-3 py-2">"IP"</th>
                        <th scope="col" class="px-3 py-2">"Details"</th>
                        <th scope="col" class="px-3 py-2">"Hash"</th>
                    </tr>
                </thead>
                <tbody class="divide-y divide-slate-100">{rows}</tbody>
            </table>
        </div>
    }
    .into_any()
}
