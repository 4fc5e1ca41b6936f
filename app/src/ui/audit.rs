//! The auditor's view of the log: filters kept in the URL (linkable, and Back works), keyset
//! paging, one event with its hash links, chain verification as a background job, and the
//! signed checkpoints the verification checks against.

use crate::ui::server_data::server_data;
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::NavigateOptions;
use leptos_router::components::A;
use leptos_router::hooks::{use_navigate, use_params_map, use_query_map};
use leptos_router::params::ParamsMap;

use super::{
    ErrorNotice, INPUT_CLASS, LABEL_CLASS, PRIMARY_BUTTON, PageHeader, RequireRole,
    SECONDARY_BUTTON,
};
use crate::api::UserRole;
use crate::api::audit::{
    AuditCursor, AuditEventView, AuditPageView, ChainReport, CheckpointView, EventDetailView,
    SignCheckpointNow, VerifyJobView, audit_event, chain_verification_status, list_checkpoints,
    search_audit, start_chain_verification,
};
use crate::api::reports::ReportFilterForm;
use crate::error::AppError;

pub(crate) const CARD: &str = "rounded-xl border border-slate-200 bg-white shadow-sm";

#[component]
pub fn AuditPage() -> impl IntoView {
    view! {
        <Title text="Audit log" />
        <PageHeader title="Audit log" description="Append-only and hash-chained: each event commits to the one before it, so any edit, deletion or reordering is detected." />
        <RequireRole roles=&[UserRole::Reviewer, UserRole::Admin]>
            <AuditDesk />
        </RequireRole>
    }
}

/// The filter a page's query names (the same keys as the report download's query).
pub(crate) fn filter_from_query(query: &ParamsMap) -> ReportFilterForm {
    let field = |key: &str| query.get_str(key).unwrap_or_default().trim().to_owned();
    ReportFilterForm {
        from: field("from"),
        to: field("to"),
        actor: field("actor"),
        action: field("action"),
        outcome: field("outcome"),
        resource: field("resource"),
        request_id: field("request_id"),
    }
}

/// `path` with the filter's query, and `extra` (a paging cursor) after it.
fn href_with(path: &str, filter: &ReportFilterForm, extra: Option<(&str, i64)>) -> String {
    let mut query = filter.to_query_string();
    if let Some((key, seq)) = extra {
        if !query.is_empty() {
            query.push('&');
        }
        query.push_str(&format!("{key}={seq}"));
    }
    if query.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{query}")
    }
}

#[component]
fn AuditDesk() -> impl IntoView {
    let query = use_query_map();
    let filter = Memo::new(move |_| query.with(filter_from_query));
    let cursor = Memo::new(move |_| {
        query.with(|q| AuditCursor::from_query(q.get_str("before"), q.get_str("after")))
    });
    // Bumped when this page adds events (a verification, a checkpoint) so the list shows them.
    let (changed, set_changed) = signal(0u32);
    // Each page comes back with the filter it was fetched for: links and the `data-query` a
    // reader (or a test) waits on then describe the rows shown, never a filter still loading.
    let results = server_data(
        move || (filter.get(), cursor.get(), changed.get()),
        |(filter, cursor, _)| async move {
            let (before, after) = cursor.bounds();
            search_audit(filter.clone(), before, after)
                .await
                .map(|page| (filter, page))
        },
    );
    let (loading, set_loading) = signal(false);
    let refresh = move || set_changed.update(|n| *n += 1);
    view! {
        <div class="space-y-6">
            <div class="grid gap-6 lg:grid-cols-2">
                <VerifyPanel on_finished=refresh />
                <CheckpointsPanel on_signed=refresh />
            </div>
            <FilterCard filter />
            <section
                class=move || format!("{CARD} overflow-hidden transition-opacity {}", if loading.get() { "opacity-60" } else { "" })
                aria-labelledby="events-heading"
                aria-busy=move || loading.get().to_string()
            >
                <Transition fallback=|| view! { <p class="px-6 py-4 text-sm text-slate-500">"Loading events…"</p> } set_pending=set_loading>
                    {move || Suspend::new(async move {
                        match results.await {
                            Ok((filter, page)) => view! { <EventResults page filter /> }.into_any(),
                            Err(e) => view! { <div class="p-6"><ErrorNotice error=Signal::stored(Some(e)) /></div> }.into_any(),
                        }
                    })}
                </Transition>
            </section>
        </div>
    }
}

/// The filter inputs, bound to `draft`; their names are the query keys, so the form also works
/// as a plain GET form before the page is interactive.
#[component]
pub(crate) fn FilterFields(draft: RwSignal<ReportFilterForm>) -> impl IntoView {
    type Field = fn(&mut ReportFilterForm) -> &mut String;
    let bind = move |get: Field| {
        (
            move || {
                let mut f = draft.get();
                get(&mut f).clone()
            },
            move |ev| {
                let value = event_target_value(&ev);
                draft.update(|f| *get(f) = value);
            },
        )
    };
    let (from, set_from) = bind(|f| &mut f.from);
    let (to, set_to) = bind(|f| &mut f.to);
    let (actor, set_actor) = bind(|f| &mut f.actor);
    let (action, set_action) = bind(|f| &mut f.action);
    let (outcome, set_outcome) = bind(|f| &mut f.outcome);
    let (resource, set_resource) = bind(|f| &mut f.resource);
    let (request_id, set_request_id) = bind(|f| &mut f.request_id);
    let outcome_option = move |value: &'static str, label: &'static str| {
        view! { <option value=value selected=move || outcome() == value>{label}</option> }
    };
    view! {
        <div class="grid gap-4 sm:grid-cols-2 lg:grid-cols-4">
            <div>
                <label for="filter-from" class=LABEL_CLASS>"From (UTC)"</label>
                <input id="filter-from" name="from" type="date" class=INPUT_CLASS data-testid="filter-from"
                    prop:value=from on:input=set_from />
            </div>
            <div>
                <label for="filter-to" class=LABEL_CLASS>"To (UTC, inclusive)"</label>
                <input id="filter-to" name="to" type="date" class=INPUT_CLASS data-testid="filter-to"
                    prop:value=to on:input=set_to />
            </div>
            <div>
                <label for="filter-actor" class=LABEL_CLASS>"Actor"</label>
                <input id="filter-actor" name="actor" type="text" placeholder="email or actor id" class=INPUT_CLASS
                    data-testid="filter-actor" prop:value=actor on:input=set_actor />
            </div>
            <div>
                <label for="filter-action" class=LABEL_CLASS>"Action starts with"</label>
                <input id="filter-action" name="action" type="text" placeholder="e.g. auth. or trade.order" class=format!("{INPUT_CLASS} font-mono")
                    data-testid="filter-action" prop:value=action on:input=set_action />
            </div>
            <div>
                <label for="filter-outcome" class=LABEL_CLASS>"Outcome"</label>
                <select id="filter-outcome" name="outcome" class=INPUT_CLASS data-testid="filter-outcome"
                    prop:value=outcome on:change=set_outcome>
                    {outcome_option("", "Any")}
                    {outcome_option("success", "Success")}
                    {outcome_option("denied", "Denied")}
                    {outcome_option("failure", "Failure")}
                </select>
            </div>
            <div>
                <label for="filter-resource" class=LABEL_CLASS>"Resource (exact)"</label>
                <input id="filter-resource" name="resource" type="text" placeholder="e.g. order:…" class=format!("{INPUT_CLASS} font-mono")
                    data-testid="filter-resource" prop:value=resource on:input=set_resource />
            </div>
            <div class="sm:col-span-2">
                <label for="filter-request-id" class=LABEL_CLASS>"Request id (exact)"</label>
                <input id="filter-request-id" name="request_id" type="text" class=format!("{INPUT_CLASS} font-mono")
                    data-testid="filter-request-id" prop:value=request_id on:input=set_request_id />
            </div>
        </div>
    }
}

/// A draft filter that starts as the URL's and follows it when the URL changes (Back).
pub(crate) fn draft_following(filter: Memo<ReportFilterForm>) -> RwSignal<ReportFilterForm> {
    let draft = RwSignal::new(filter.get_untracked());
    Effect::watch(
        move || filter.get(),
        move |f, _, _| draft.set(f.clone()),
        false,
    );
    draft
}

#[component]
fn FilterCard(filter: Memo<ReportFilterForm>) -> impl IntoView {
    let draft = draft_following(filter);
    let navigate = use_navigate();
    let apply = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        // A new filter starts again at the newest matching events.
        navigate(
            &href_with("/audit", &draft.get(), None),
            NavigateOptions::default(),
        );
    };
    let active = move || filter.get() != ReportFilterForm::default();
    view! {
        <section class=format!("{CARD} p-6") aria-labelledby="filter-heading">
            <div class="mb-4 flex flex-wrap items-baseline justify-between gap-2">
                <h2 id="filter-heading" class="font-semibold">"Filter events"</h2>
                <A href=move || href_with("/reports", &filter.get(), None) attr:class="text-sm font-medium text-indigo-700 hover:underline">
                    "Download these events as a signed report →"
                </A>
            </div>
            <form method="get" action="/audit" on:submit=apply data-testid="audit-filter">
                <FilterFields draft />
                <div class="mt-4 flex flex-wrap gap-3">
                    <button type="submit" class=PRIMARY_BUTTON data-testid="apply-filter">"Apply filters"</button>
                    {move || active().then(|| view! {
                        <A href="/audit" attr:class=SECONDARY_BUTTON attr:data-testid="clear-filter">"Clear"</A>
                    })}
                </div>
            </form>
        </section>
    }
}

pub(crate) fn outcome_badge(outcome: &str) -> String {
    let tone = match outcome {
        "success" => "bg-emerald-50 text-emerald-700 ring-emerald-200",
        "denied" => "bg-amber-50 text-amber-800 ring-amber-200",
        _ => "bg-red-50 text-red-700 ring-red-200",
    };
    format!("inline-flex rounded px-2 py-0.5 text-xs font-medium ring-1 ring-inset {tone}")
}

/// `2026-11-28T16:24:44.123456Z` → `2026-11-28 16:24:44`.
fn readable_time(at: &str) -> String {
    at.replace('T', " ").chars().take(19).collect()
}

fn short_hash(hash: &str) -> String {
    format!("{}…", hash.chars().take(12).collect::<String>())
}

#[component]
fn EventResults(page: AuditPageView, filter: ReportFilterForm) -> impl IntoView {
    let AuditPageView {
        events,
        newer,
        older,
    } = page;
    let summary = match (events.first(), events.last()) {
        (Some(only), _) if events.len() == 1 => format!("1 event (seq {})", only.seq),
        (Some(first), Some(last)) => format!(
            "{} events, seq {} down to {}",
            events.len(),
            first.seq,
            last.seq
        ),
        _ => String::new(),
    };
    let newer_href = newer.map(|seq| href_with("/audit", &filter, Some(("after", seq))));
    let older_href = older.map(|seq| href_with("/audit", &filter, Some(("before", seq))));
    let pager = move || {
        let newer_href = newer_href.clone();
        let older_href = older_href.clone();
        view! {
            <nav class="flex items-center gap-2" aria-label="Pages of events">
                {match newer_href {
                    Some(href) => view! { <A href=href attr:class=SECONDARY_BUTTON attr:data-testid="page-newer">"← Newer"</A> }.into_any(),
                    None => view! { <span class=format!("{SECONDARY_BUTTON} cursor-default opacity-40") aria-disabled="true">"← Newer"</span> }.into_any(),
                }}
                {match older_href {
                    Some(href) => view! { <A href=href attr:class=SECONDARY_BUTTON attr:data-testid="page-older">"Older →"</A> }.into_any(),
                    None => view! { <span class=format!("{SECONDARY_BUTTON} cursor-default opacity-40") aria-disabled="true">"Older →"</span> }.into_any(),
                }}
            </nav>
        }
    };
    let body = if events.is_empty() {
        view! { <p class="px-6 py-8 text-center text-sm text-slate-500" data-testid="no-events">"No events match these filters."</p> }.into_any()
    } else {
        view! { <EventTable events /> }.into_any()
    };
    let query = filter.to_query_string();
    view! {
        <div class="flex flex-wrap items-center justify-between gap-3 border-b border-slate-200 px-6 py-3" data-testid="events-results" data-query=query>
            <div>
                <h2 id="events-heading" class="font-semibold">"Events"</h2>
                <p class="text-xs text-slate-500" data-testid="events-summary">{summary}</p>
            </div>
            {pager()}
        </div>
        {body}
        <div class="flex justify-end border-t border-slate-100 px-6 py-3">{pager()}</div>
    }
}

#[component]
fn EventTable(events: Vec<AuditEventView>) -> impl IntoView {
    let navigate = use_navigate();
    let rows = events
        .into_iter()
        .map(|e| {
            let href = format!("/audit/event/{}", e.seq);
            let open = {
                let navigate = navigate.clone();
                let href = href.clone();
                move |_| navigate(&href, NavigateOptions::default())
            };
            let actor_title = e.actor.clone();
            let badge = outcome_badge(&e.outcome);
            let action = e.action.clone();
            let actor = e.actor_email.clone().unwrap_or_else(|| e.actor.clone());
            view! {
                <tr class="cursor-pointer align-top hover:bg-indigo-50/60" data-testid="audit-row" data-seq=e.seq data-action=action on:click=open>
                    <td class="px-3 py-2 font-mono text-xs">
                        <A href=href attr:class="text-indigo-700 hover:underline" attr:data-testid="open-event">{format!("#{}", e.seq)}</A>
                    </td>
                    <td class="whitespace-nowrap px-3 py-2 text-xs text-slate-600" title=e.occurred_at.clone()>{readable_time(&e.occurred_at)}</td>
                    <td class="max-w-56 truncate px-3 py-2 text-xs text-slate-800" title=actor_title>{actor}</td>
                    <td class="px-3 py-2 font-mono text-xs">{e.action}</td>
                    <td class="px-3 py-2"><span class=badge>{e.outcome}</span></td>
                    <td class="max-w-48 truncate px-3 py-2 font-mono text-xs text-slate-600" title=e.resource.clone()>{e.resource.clone().unwrap_or_default()}</td>
                    <td class="max-w-40 truncate px-3 py-2 font-mono text-xs text-slate-500" title=e.request_id.clone()>{e.request_id.clone().unwrap_or_default()}</td>
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
                        <th scope="col" class="px-3 py-2">"Actor"</th>
                        <th scope="col" class="px-3 py-2">"Action"</th>
                        <th scope="col" class="px-3 py-2">"Outcome"</th>
                        <th scope="col" class="px-3 py-2">"Resource"</th>
                        <th scope="col" class="px-3 py-2">"Request id"</th>
                    </tr>
                </thead>
                <tbody class="divide-y divide-slate-100">{rows}</tbody>
            </table>
        </div>
    }
}

/// A thin progress bar (SVG geometry, not an inline style: the CSP refuses style attributes).
#[component]
pub(crate) fn ProgressBar(done: u64, total: u64, #[prop(into)] label: String) -> impl IntoView {
    let percent = (done.min(total) * 100).checked_div(total).unwrap_or(100);
    view! {
        <div class="h-2 overflow-hidden rounded-full bg-slate-100" role="progressbar" aria-label=label
            aria-valuemin="0" aria-valuemax=total.to_string() aria-valuenow=done.min(total).to_string()>
            <svg viewBox="0 0 100 4" preserveAspectRatio="none" class="h-full w-full" aria-hidden="true">
                <rect width=percent.to_string() height="4" class="fill-indigo-600" />
            </svg>
        </div>
    }
}

/// How often a running job is asked for its progress.
pub(crate) const JOB_POLL: std::time::Duration = std::time::Duration::from_millis(300);

#[component]
fn VerifyPanel(on_finished: impl Fn() + Copy + Send + Sync + 'static) -> impl IntoView {
    let (status, set_status) = signal(None::<VerifyJobView>);
    let (error, set_error) = signal(None::<AppError>);
    let (running, set_running) = signal(false);
    let begin = move |_| {
        set_running.set(true);
        set_error.set(None);
        set_status.set(None);
        leptos::task::spawn_local(async move {
            match start_chain_verification().await {
                Ok(job_id) => loop {
                    match chain_verification_status(job_id.clone()).await {
                        Ok(s) => {
                            let finished = s.finished;
                            // The page was left: nobody is watching any more.
                            if set_status.try_set(Some(s)).is_some() {
                                return;
                            }
                            if finished {
                                set_running.set(false);
                                on_finished();
                                return;
                            }
                        }
                        Err(e) => {
                            set_error.set(Some(e));
                            set_running.set(false);
                            return;
                        }
                    }
                    gloo_timers::future::sleep(JOB_POLL).await;
                },
                Err(e) => {
                    set_error.set(Some(e));
                    set_running.set(false);
                }
            }
        });
    };
    view! {
        <section class=format!("{CARD} p-6") aria-labelledby="verify-heading">
            <div class="flex flex-wrap items-start justify-between gap-4">
                <div class="max-w-md">
                    <h2 id="verify-heading" class="font-semibold">"Chain integrity"</h2>
                    <p class="text-sm text-slate-600">"Recomputes every event's hash from the first to the newest, then checks the chain still holds the latest signed checkpoint (which catches events cut from the end)."</p>
                </div>
                <button type="button" class=PRIMARY_BUTTON data-testid="verify-chain" disabled=move || running.get() on:click=begin>
                    {move || if running.get() { "Verifying…" } else { "Verify chain" }}
                </button>
            </div>
            <div class="mt-4 space-y-3" aria-live="polite">
                {move || status.get().map(|s| view! { <VerifyProgress status=s /> })}
                <ErrorNotice error />
            </div>
        </section>
    }
}

#[component]
fn VerifyProgress(status: VerifyJobView) -> impl IntoView {
    if let Some(message) = status.error {
        return view! {
            <div role="alert" data-testid="chain-status" data-intact="unknown" class="rounded-md border border-red-200 bg-red-50 px-4 py-3 text-sm text-red-900">
                {format!("The check could not finish: {message}")}
            </div>
        }
        .into_any();
    }
    match status.report {
        Some(report) if status.finished => view! { <ChainStatus report /> }.into_any(),
        _ => view! {
            <div data-testid="verify-progress">
                <ProgressBar done=status.checked total=status.total label="Events verified" />
                <p class="mt-1 text-xs text-slate-600">{format!("{} of {} events checked…", status.checked, status.total)}</p>
            </div>
        }
        .into_any(),
    }
}

fn checkpoint_name(c: &CheckpointView) -> String {
    format!(
        "the checkpoint signed at seq {} ({} UTC)",
        c.seq,
        readable_time(&c.signed_at)
    )
}

#[component]
fn ChainStatus(report: ChainReport) -> impl IntoView {
    match report.broken_at {
        None => {
            let anchor = match &report.checkpoint {
                Some(c) => format!(" It matches {}.", checkpoint_name(c)),
                None => " No signed checkpoint yet to compare the end of the chain with.".into(),
            };
            view! {
                <div data-testid="chain-status" data-intact="true" class="rounded-md border border-emerald-200 bg-emerald-50 px-4 py-3 text-sm text-emerald-900">
                    <strong>{format!("Chain intact through seq {}. ", report.head_seq)}</strong>
                    {format!("{} events verified (head hash {}).", report.events_checked, short_hash(&report.head_hash))}
                    {anchor}
                </div>
            }
            .into_any()
        }
        Some((seq, reason)) => view! {
            <div data-testid="chain-status" data-intact="false" data-broken-seq=seq role="alert" class="rounded-md border border-red-200 bg-red-50 px-4 py-3 text-sm text-red-900">
                <strong>{format!("Chain broken at seq {seq}: ")}</strong>
                {format!("{reason}. The {} events before it verified.", report.events_checked)}
                {report.checkpoint.map(|c| format!(" Checked against {}.", checkpoint_name(&c)))}
                " "
                <A href=format!("/audit/event/{seq}") attr:class="font-medium underline">"Open that event"</A>
            </div>
        }
        .into_any(),
    }
}

#[component]
fn CheckpointsPanel(on_signed: impl Fn() + Copy + Send + Sync + 'static) -> impl IntoView {
    let sign = ServerAction::<SignCheckpointNow>::new();
    let list = server_data(move || sign.version().get(), |_| list_checkpoints());
    let sign_error = Signal::derive(move || sign.value().get().and_then(Result::err));
    Effect::watch(
        move || sign.value().get(),
        move |value, _, _| {
            if let Some(Ok(_)) = value {
                on_signed();
            }
        },
        false,
    );
    view! {
        <section class=format!("{CARD} p-6") aria-labelledby="checkpoints-heading">
            <div class="flex flex-wrap items-start justify-between gap-4">
                <div class="max-w-md">
                    <h2 id="checkpoints-heading" class="font-semibold">"Signed checkpoints"</h2>
                    <p class="text-sm text-slate-600">"The server signs the chain head with its report key every few minutes when the log moved, and keeps a copy outside the database."</p>
                </div>
                <button type="button" class=SECONDARY_BUTTON data-testid="sign-checkpoint" disabled=move || sign.pending().get()
                    on:click=move |_| { sign.dispatch(SignCheckpointNow {}); }>
                    {move || if sign.pending().get() { "Signing…" } else { "Sign checkpoint now" }}
                </button>
            </div>
            <div class="mt-3"><ErrorNotice error=sign_error /></div>
            <Transition fallback=|| view! { <p class="mt-4 text-sm text-slate-500">"Loading checkpoints…"</p> }>
                {move || Suspend::new(async move {
                    match list.await {
                        Ok(list) => view! { <CheckpointTable checkpoints=list /> }.into_any(),
                        Err(e) => view! { <ErrorNotice error=Signal::stored(Some(e)) /> }.into_any(),
                    }
                })}
            </Transition>
        </section>
    }
}

#[component]
fn CheckpointTable(checkpoints: Vec<CheckpointView>) -> impl IntoView {
    if checkpoints.is_empty() {
        return view! { <p class="mt-4 text-sm text-slate-500" data-testid="no-checkpoints">"No checkpoints signed yet."</p> }.into_any();
    }
    let rows = checkpoints
        .into_iter()
        .take(6)
        .map(|c| {
            view! {
                <tr data-testid="checkpoint-row" data-seq=c.seq>
                    <td class="px-2 py-1.5 font-mono text-xs">
                        <A href=format!("/audit/event/{}", c.seq) attr:class="text-indigo-700 hover:underline">{c.seq}</A>
                    </td>
                    <td class="px-2 py-1.5 font-mono text-xs text-slate-500" title=c.hash.clone()>{short_hash(&c.hash)}</td>
                    <td class="whitespace-nowrap px-2 py-1.5 text-xs text-slate-600">{readable_time(&c.signed_at)}</td>
                    <td class="px-2 py-1.5 text-xs text-slate-600">{c.trigger.unwrap_or_default()}</td>
                    <td class="px-2 py-1.5 text-xs">{if c.valid {
                        view! { <span class="text-emerald-700">"valid"</span> }.into_any()
                    } else {
                        view! { <span class="font-medium text-red-700" data-testid="forged-checkpoint">"does not verify"</span> }.into_any()
                    }}</td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <table class="mt-4 min-w-full divide-y divide-slate-200 text-left text-sm" data-testid="checkpoint-table">
            <thead class="text-xs font-medium uppercase tracking-wide text-slate-500">
                <tr>
                    <th scope="col" class="px-2 py-1.5">"Seq"</th>
                    <th scope="col" class="px-2 py-1.5">"Hash"</th>
                    <th scope="col" class="px-2 py-1.5">"Signed (UTC)"</th>
                    <th scope="col" class="px-2 py-1.5">"Trigger"</th>
                    <th scope="col" class="px-2 py-1.5">"Signature"</th>
                </tr>
            </thead>
            <tbody class="divide-y divide-slate-100">{rows}</tbody>
        </table>
    }
    .into_any()
}

/// One event: every field, its details, and the hashes that link it into the chain.
#[component]
pub fn AuditEventPage() -> impl IntoView {
    let params = use_params_map();
    let seq =
        Memo::new(move |_| params.with(|p| p.get_str("seq").and_then(|s| s.parse::<i64>().ok())));
    view! {
        <Title text="Audit event" />
        <nav class="mb-3 text-sm">
            <A href="/audit" attr:class="font-medium text-indigo-700 hover:underline">"← Audit log"</A>
        </nav>
        <header class="mb-6">
            <h1 class="text-2xl font-semibold tracking-tight text-slate-900">
                {move || seq.get().map_or_else(|| "Audit event".to_owned(), |s| format!("Audit event #{s}"))}
            </h1>
        </header>
        <RequireRole roles=&[UserRole::Reviewer, UserRole::Admin]>
            <EventDetailLoader seq />
        </RequireRole>
    }
}

#[component]
fn EventDetailLoader(seq: Memo<Option<i64>>) -> impl IntoView {
    let detail = server_data(
        move || seq.get(),
        |seq| async move {
            match seq {
                Some(seq) => audit_event(seq).await,
                None => Err(AppError::NotFound),
            }
        },
    );
    view! {
        <Transition fallback=|| view! { <p class="text-sm text-slate-500">"Loading event…"</p> }>
            {move || Suspend::new(async move {
                match detail.await {
                    Ok(detail) => view! { <EventDetail detail /> }.into_any(),
                    Err(AppError::NotFound) => view! {
                        <div class="rounded-lg border border-slate-200 bg-white p-6 text-sm text-slate-700" data-testid="event-not-found">
                            "There is no event with this sequence number."
                        </div>
                    }.into_any(),
                    Err(e) => view! { <ErrorNotice error=Signal::stored(Some(e)) /> }.into_any(),
                }
            })}
        </Transition>
    }
}

#[component]
fn EventDetail(detail: EventDetailView) -> impl IntoView {
    let EventDetailView {
        event: e,
        details_pretty,
        previous,
        next,
    } = detail;
    let filter_href = |key: &str, value: &str| {
        let mut f = ReportFilterForm::default();
        match key {
            "actor" => f.actor = value.to_owned(),
            "resource" => f.resource = value.to_owned(),
            _ => f.request_id = value.to_owned(),
        }
        href_with("/audit", &f, None)
    };
    let actor_id = e
        .actor
        .split_once(':')
        .map_or(e.actor.as_str(), |(_, id)| id)
        .to_owned();
    let actor_link = filter_href("actor", &actor_id);
    let resource = e.resource.clone().map(|r| (filter_href("resource", &r), r));
    let request = e
        .request_id
        .clone()
        .map(|r| (filter_href("request_id", &r), r));
    let link = "text-indigo-700 hover:underline";
    let dt = "text-slate-500";
    let previous_view = match previous {
        Some(p) => view! {
            <A href=format!("/audit/event/{}", p.seq) attr:class=link attr:data-testid="previous-event">{format!("event #{}", p.seq)}</A>
            {if p.links { " — its hash equals this prev_hash ✓".to_owned() } else { format!(" — but its hash is {}: the link is broken", short_hash(&p.hash)) }}
        }
        .into_any(),
        None if e.seq == 1 => view! { <span>"the chain's start (all zeros)"</span> }.into_any(),
        None => view! { <span class="text-red-700">"no event before this one: events are missing"</span> }.into_any(),
    };
    let next_view = match next {
        Some(n) => view! {
            <A href=format!("/audit/event/{}", n.seq) attr:class=link attr:data-testid="next-event">{format!("event #{}", n.seq)}</A>
            {if n.links { " chains onto this hash ✓".to_owned() } else { " does not chain onto this hash: the link is broken".to_owned() }}
        }
        .into_any(),
        None => view! { <span class="text-slate-500">"none yet (this is the newest event)"</span> }.into_any(),
    };
    view! {
        <div class="grid gap-6 lg:grid-cols-5" data-testid="event-detail" data-seq=e.seq>
            <section class=format!("{CARD} p-6 lg:col-span-3")>
                <h2 class="mb-4 font-semibold">"What happened"</h2>
                <dl class="grid grid-cols-[9rem_1fr] gap-x-4 gap-y-2 text-sm">
                    <dt class=dt>"Time (UTC)"</dt><dd class="font-mono text-xs">{e.occurred_at.clone()}</dd>
                    <dt class=dt>"Action"</dt><dd class="font-mono" data-testid="event-action">{e.action.clone()}</dd>
                    <dt class=dt>"Outcome"</dt><dd><span class=outcome_badge(&e.outcome)>{e.outcome.clone()}</span></dd>
                    <dt class=dt>"Actor"</dt>
                    <dd>
                        {e.actor_email.clone().map(|email| view! { <span class="mr-2">{email}</span> })}
                        <A href=actor_link attr:class=format!("{link} font-mono text-xs") attr:title="All events by this actor">{e.actor.clone()}</A>
                    </dd>
                    <dt class=dt>"Resource"</dt>
                    <dd class="font-mono text-xs break-all">{match resource {
                        Some((href, r)) => view! { <A href=href attr:class=link attr:title="All events about this resource">{r}</A> }.into_any(),
                        None => view! { <span class="text-slate-400">"—"</span> }.into_any(),
                    }}</dd>
                    <dt class=dt>"Request id"</dt>
                    <dd class="font-mono text-xs break-all">{match request {
                        Some((href, r)) => view! { <A href=href attr:class=link attr:title="All events of this request">{r}</A> }.into_any(),
                        None => view! { <span class="text-slate-400">"—"</span> }.into_any(),
                    }}</dd>
                    <dt class=dt>"IP"</dt><dd class="font-mono text-xs">{e.ip.clone().unwrap_or_else(|| "—".into())}</dd>
                    <dt class=dt>"User agent"</dt><dd class="text-xs text-slate-700 break-all">{e.user_agent.clone().unwrap_or_else(|| "—".into())}</dd>
                </dl>
                <h3 class="mt-6 mb-2 text-sm font-semibold">"Details"</h3>
                <pre class="overflow-x-auto rounded-md bg-slate-900 p-4 font-mono text-xs text-slate-100" data-testid="event-details">{details_pretty}</pre>
            </section>
            <section class=format!("{CARD} p-6 lg:col-span-2")>
                <h2 class="mb-1 font-semibold">"Place in the chain"</h2>
                <p class="mb-4 text-sm text-slate-600">"This event's hash covers the previous event's hash and every field on the left, so changing any of them, or removing an event, breaks the chain here."</p>
                <dl class="space-y-4 text-sm">
                    <div>
                        <dt class=dt>"Previous hash"</dt>
                        <dd class="mt-1 break-all font-mono text-xs" data-testid="prev-hash">{e.prev_hash.clone()}</dd>
                        <dd class="mt-1 text-xs">{previous_view}</dd>
                    </div>
                    <div>
                        <dt class=dt>"This event's hash"</dt>
                        <dd class="mt-1 break-all font-mono text-xs" data-testid="event-hash">{e.hash.clone()}</dd>
                    </div>
                    <div>
                        <dt class=dt>"Next event"</dt>
                        <dd class="mt-1 text-xs">{next_view}</dd>
                    </div>
                </dl>
            </section>
        </div>
    }
}
