//! The reports page: choose the events, then download a signed CSV (streamed) or have a PDF
//! built in the background. Each report verifies offline with `cryptopulse report verify`.

use crate::ui::server_data::server_data;
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;

use super::audit::{CARD, FilterFields, JOB_POLL, ProgressBar, draft_following, filter_from_query};
use super::{ErrorNotice, PRIMARY_BUTTON, PageHeader, RequireRole, SECONDARY_BUTTON};
use crate::api::UserRole;
use crate::api::audit::report_public_key;
use crate::api::reports::{PdfJobView, ReportFilterForm, pdf_report_status, start_pdf_report};
use crate::error::AppError;

#[component]
pub fn ReportsPage() -> impl IntoView {
    view! {
        <Title text="Audit reports" />
        <PageHeader title="Audit reports" description="Download the audit events you choose as a signed report a regulator can check without access to this system." />
        <RequireRole roles=&[UserRole::Reviewer, UserRole::Admin]>
            <ReportDesk />
        </RequireRole>
    }
}

/// The CSV download's address for a filter (a plain link: works without JavaScript).
fn csv_href(filter: &ReportFilterForm) -> String {
    let query = filter.to_query_string();
    if query.is_empty() {
        "/reports/audit.csv".to_owned()
    } else {
        format!("/reports/audit.csv?{query}")
    }
}

#[component]
fn ReportDesk() -> impl IntoView {
    let query = use_query_map();
    let filter = Memo::new(move |_| query.with(filter_from_query));
    let draft = draft_following(filter);
    view! {
        <div class="grid gap-6 lg:grid-cols-3 lg:items-start">
            <section class=format!("{CARD} p-6 lg:col-span-2") aria-labelledby="report-filter-heading">
                <h2 id="report-filter-heading" class="mb-1 font-semibold">"Which events"</h2>
                <p class="mb-4 text-sm text-slate-600">"Leave a field empty to include everything. The report covers the log as it is when you start the download."</p>
                // Without JavaScript, "Apply" reloads the page with these filters in its address,
                // and the download link below is built from them.
                <form method="get" action="/reports" data-testid="report-filter">
                    <FilterFields draft />
                    <noscript>
                        <button type="submit" class=format!("{SECONDARY_BUTTON} mt-4")>"Apply"</button>
                    </noscript>
                </form>
                <div class="mt-6 flex flex-wrap items-start gap-4 border-t border-slate-100 pt-4">
                    <a href=move || csv_href(&draft.get()) download class=PRIMARY_BUTTON data-testid="download-csv">
                        "Download CSV"
                    </a>
                    <PdfControl draft />
                </div>
            </section>
            <HowToVerify />
        </div>
    }
}

#[component]
fn HowToVerify() -> impl IntoView {
    let key = server_data(|| (), |_| report_public_key());
    view! {
        <section class=format!("{CARD} p-6 text-sm text-slate-700") aria-labelledby="verify-report-heading">
            <h2 id="verify-report-heading" class="mb-2 font-semibold text-slate-900">"What a report contains"</h2>
            <p>"Every matching event with its seq, hashes and the fields they cover, then a manifest (filter, who made it and when, row count, SHA-256 of the rows, the latest signed checkpoint) signed with the server's Ed25519 report key. A PDF carries the same CSV as an attachment. Each download is recorded in the audit log."</p>
            <h3 class="mt-4 mb-1 font-semibold text-slate-900">"Check one offline"</h3>
            <pre class="overflow-x-auto whitespace-pre rounded-md bg-slate-900 p-3 font-mono text-xs text-slate-100">"cryptopulse report verify FILE \\\n    --public-key KEY"</pre>
            <p class="mt-2">
                "KEY is published at "
                <a href="/.well-known/cryptopulse-report-key" rel="external" class="font-mono text-xs text-indigo-700 hover:underline">"/.well-known/cryptopulse-report-key"</a>
                ":"
            </p>
            <Transition fallback=|| view! { <p class="mt-1 text-xs text-slate-500">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match key.await {
                        Ok(key) => view! { <p class="mt-1 break-all font-mono text-xs text-slate-900" data-testid="report-key">{key}</p> }.into_any(),
                        Err(e) => view! { <ErrorNotice error=Signal::stored(Some(e)) /> }.into_any(),
                    }
                })}
            </Transition>
            <p class="mt-2">"It names the exact row that was edited, removed, added or moved, and exits with status 1 if anything does not match."</p>
        </section>
    }
}

#[component]
fn PdfControl(draft: RwSignal<ReportFilterForm>) -> impl IntoView {
    let (status, set_status) = signal(None::<PdfJobView>);
    let (error, set_error) = signal(None::<AppError>);
    let (running, set_running) = signal(false);
    // A PDF built for another filter is not offered for this one.
    Effect::watch(
        move || draft.get(),
        move |_, _, _| {
            if !running.get_untracked() {
                set_status.set(None);
            }
        },
        false,
    );
    let begin = move |_| {
        set_running.set(true);
        set_error.set(None);
        set_status.set(None);
        let filter = draft.get_untracked();
        leptos::task::spawn_local(async move {
            match start_pdf_report(filter).await {
                Ok(job_id) => loop {
                    match pdf_report_status(job_id.clone()).await {
                        Ok(s) => {
                            let finished = s.finished;
                            // The page was left: nobody is watching any more.
                            if set_status.try_set(Some(s)).is_some() {
                                return;
                            }
                            if finished {
                                set_running.set(false);
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
        <div class="flex min-w-64 flex-1 flex-col gap-2">
            <div class="flex flex-wrap items-center gap-3">
                <button type="button" class=SECONDARY_BUTTON data-testid="build-pdf" disabled=move || running.get() on:click=begin>
                    {move || if running.get() { "Building PDF…" } else { "Build PDF" }}
                </button>
                {move || status.get().and_then(|s| s.download_url).map(|url| view! {
                    <a href=url download class=PRIMARY_BUTTON data-testid="download-pdf">"Download PDF"</a>
                })}
            </div>
            {move || status.get().map(|s| view! { <PdfProgress status=s /> })}
            <ErrorNotice error />
        </div>
    }
}

#[component]
fn PdfProgress(status: PdfJobView) -> impl IntoView {
    if let Some(message) = status.error {
        return view! {
            <div role="alert" class="rounded-md border border-red-200 bg-red-50 px-4 py-3 text-sm text-red-800" data-testid="pdf-error">{message}</div>
        }
        .into_any();
    }
    let summary = if status.finished {
        format!("Ready: {} events laid out.", status.done)
    } else {
        format!("{} of {} events laid out…", status.done, status.total)
    };
    view! {
        <div class="max-w-sm" data-testid="pdf-progress" data-finished=status.finished.to_string()>
            <ProgressBar done=status.done total=status.total label="PDF progress" />
            <p class="mt-1 text-xs text-slate-600">{summary}</p>
        </div>
    }
    .into_any()
}
