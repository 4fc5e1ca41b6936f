//! "Exchange keys": enter a key once, see only its mask, check, re-wrap and revoke it, and read
//! the receipts of every time it was decrypted.

use crate::ui::server_data::server_data;
use domain::audit_action::AuditAction;
use leptos::html;
use leptos::prelude::*;
use leptos_meta::Title;

use super::{
    DANGER_BUTTON, ErrorNotice, INPUT_CLASS, LABEL_CLASS, PRIMARY_BUTTON, PageHeader, RequireRole,
    SECONDARY_BUTTON,
};
use crate::api::keys::{
    AddKey, CheckKey, KeyReceipt, KeyView, RevokeKey, RewrapStatus, key_receipts, list_keys,
    rewrap_all_keys, rewrap_my_keys, rewrap_progress,
};
use crate::error::AppError;

/// (value, label) of a select option.
type Choice = (&'static str, &'static str);

/// Exchanges and the environments each offers, mirrored from the server's rules.
const EXCHANGES: &[(&str, &str, &[Choice])] = &[
    ("paper", "Paper exchange (built in)", &[("paper", "Paper")]),
    (
        "binance",
        "Binance",
        &[("testnet", "Testnet"), ("live", "Live")],
    ),
];

#[component]
pub fn KeysPage() -> impl IntoView {
    view! {
        <Title text="Exchange keys" />
        <PageHeader title="Exchange keys" description="Keys are checked with the exchange, sealed with a fresh data key from the KMS, and never shown again: you only ever see the last four characters." />
        <RequireRole>
            <KeyVault />
        </RequireRole>
    }
}

#[component]
fn KeyVault() -> impl IntoView {
    let add = ServerAction::<AddKey>::new();
    let check = ServerAction::<CheckKey>::new();
    let revoke = ServerAction::<RevokeKey>::new();
    let (rewrap_done, set_rewrap_done) = signal(0u32);
    let changes = move || {
        (
            add.version().get(),
            check.version().get(),
            revoke.version().get(),
            rewrap_done.get(),
        )
    };
    let keys = server_data(changes, |_| list_keys());
    let receipts = server_data(changes, |_| key_receipts());
    let row_error = Signal::derive(move || {
        check
            .value()
            .get()
            .and_then(Result::err)
            .or_else(|| revoke.value().get().and_then(Result::err))
    });
    view! {
        <div class="space-y-6">
            <section class="overflow-hidden rounded-xl border border-slate-200 bg-white shadow-sm">
                <div class="flex flex-wrap items-start justify-between gap-3 border-b border-slate-200 px-6 py-4">
                    <div>
                        <h2 class="font-semibold">"Your keys"</h2>
                        <p class="text-sm text-slate-600">"Re-wrapping moves each key's data key under the KMS's current master key; the secret itself never leaves the vault."</p>
                    </div>
                    <RewrapControl
                        label="Re-wrap my keys"
                        scope=RewrapScope::Mine
                        on_finished=move || set_rewrap_done.update(|n| *n += 1)
                    />
                </div>
                <div class="px-6 pt-4 empty:hidden"><ErrorNotice error=row_error /></div>
                <Transition fallback=|| view! { <p class="px-6 py-4 text-sm text-slate-500">"Loading keys…"</p> }>
                    {move || Suspend::new(async move {
                        match keys.await {
                            Ok(list) => view! { <KeyTable keys=list check revoke /> }.into_any(),
                            Err(e) => view! { <div class="p-6"><ErrorNotice error=Signal::stored(Some(e)) /></div> }.into_any(),
                        }
                    })}
                </Transition>
            </section>
            <div class="grid gap-6 lg:grid-cols-5">
                <div class="lg:col-span-2">
                    <AddKeyForm add />
                </div>
                <section class="rounded-xl border border-slate-200 bg-white shadow-sm lg:col-span-3">
                    <div class="border-b border-slate-200 px-6 py-4">
                        <h2 class="font-semibold">"Key use receipts"</h2>
                        <p class="text-sm text-slate-600">"Every decryption is recorded in the audit chain before it happens, with what it was for."</p>
                    </div>
                    <Transition fallback=|| view! { <p class="px-6 py-4 text-sm text-slate-500">"Loading receipts…"</p> }>
                        {move || Suspend::new(async move {
                            match receipts.await {
                                Ok(list) => view! { <Receipts receipts=list /> }.into_any(),
                                Err(e) => view! { <div class="p-6"><ErrorNotice error=Signal::stored(Some(e)) /></div> }.into_any(),
                            }
                        })}
                    </Transition>
                </section>
            </div>
        </div>
    }
}

#[component]
fn AddKeyForm(add: ServerAction<AddKey>) -> impl IntoView {
    let form = NodeRef::<html::Form>::new();
    let (exchange, set_exchange) = signal("paper".to_owned());
    let error = Signal::derive(move || add.value().get().and_then(Result::err));
    let saved = move || add.value().get().and_then(Result::ok);
    // The inputs are never bound to signals, so the secret lives only in the DOM field until
    // it is posted; after a successful save the form is cleared.
    Effect::new(move |_| {
        if let Some(Ok(_)) = add.value().get()
            && let Some(form) = form.get()
        {
            form.reset();
            set_exchange.set("paper".to_owned());
        }
    });
    let environments = move || {
        let selected = exchange.get();
        EXCHANGES
            .iter()
            .find(|(id, _, _)| *id == selected)
            .map(|(_, _, envs)| *envs)
            .unwrap_or(EXCHANGES[0].2)
            .iter()
            .map(|(value, label)| view! { <option value=*value>{*label}</option> })
            .collect_view()
    };
    view! {
        <section class="rounded-xl border border-slate-200 bg-white p-6 shadow-sm">
            <h2 class="font-semibold">"Add a key"</h2>
            <p class="mt-1 mb-4 text-sm text-slate-600">"Create the key on the exchange without withdrawal permission. It is sent once and stored encrypted."</p>
            <ActionForm action=add node_ref=form attr:class="space-y-4" attr:autocomplete="off" attr:data-testid="add-key-form">
                <div>
                    <label for="key-exchange" class=LABEL_CLASS>"Exchange"</label>
                    <select id="key-exchange" name="exchange" class=INPUT_CLASS
                        on:change=move |ev| set_exchange.set(event_target_value(&ev))>
                        {EXCHANGES.iter().map(|(value, label, _)| view! { <option value=*value>{*label}</option> }).collect_view()}
                    </select>
                </div>
                <div class="grid grid-cols-2 gap-3">
                    <div>
                        <label for="key-environment" class=LABEL_CLASS>"Environment"</label>
                        <select id="key-environment" name="environment" class=INPUT_CLASS>{environments}</select>
                    </div>
                    <div>
                        <label for="key-scope" class=LABEL_CLASS>"Scope"</label>
                        <select id="key-scope" name="scope" class=INPUT_CLASS>
                            <option value="trade">"Trade"</option>
                            <option value="read-only">"Read only"</option>
                        </select>
                    </div>
                </div>
                <div>
                    <label for="key-label" class=LABEL_CLASS>"Label"</label>
                    <input id="key-label" name="label" type="text" maxlength="60" required placeholder="e.g. Main paper account" class=INPUT_CLASS />
                </div>
                <div>
                    <label for="key-api-key" class=LABEL_CLASS>"API key"</label>
                    <input id="key-api-key" name="api_key" type="password" autocomplete="off" spellcheck="false" required minlength="8" maxlength="256" class=format!("{INPUT_CLASS} font-mono") />
                </div>
                <div>
                    <label for="key-api-secret" class=LABEL_CLASS>"API secret"</label>
                    <input id="key-api-secret" name="api_secret" type="password" autocomplete="off" spellcheck="false" required minlength="8" maxlength="256" class=format!("{INPUT_CLASS} font-mono") />
                </div>
                <ErrorNotice error />
                {move || saved().map(|key| view! {
                    <div role="status" data-testid="key-saved" class="rounded-md border border-emerald-200 bg-emerald-50 px-4 py-3 text-sm text-emerald-900">
                        {format!("Saved \"{}\" ({}). The form was cleared.", key.label, key.mask)}
                    </div>
                })}
                <button type="submit" class=format!("{PRIMARY_BUTTON} w-full") disabled=move || add.pending().get()>
                    {move || if add.pending().get() { "Asking the exchange what this key may do…" } else { "Check and save key" }}
                </button>
            </ActionForm>
        </section>
    }
}

fn badge(text: &str, tone: &str) -> impl IntoView + use<> {
    let class = format!(
        "inline-flex items-center rounded px-2 py-0.5 text-xs font-medium ring-1 ring-inset {tone}"
    );
    view! { <span class=class>{text.to_owned()}</span> }
}

const GREEN: &str = "bg-emerald-50 text-emerald-700 ring-emerald-200";
const AMBER: &str = "bg-amber-50 text-amber-800 ring-amber-200";
const RED: &str = "bg-red-50 text-red-700 ring-red-200";
const GREY: &str = "bg-slate-50 text-slate-600 ring-slate-200";
const BLUE: &str = "bg-indigo-50 text-indigo-700 ring-indigo-200";

/// `2026-11-23T18:04:05Z` → `2026-11-23 18:04`.
pub(crate) fn short_time(at: &str) -> String {
    at.replace('T', " ").chars().take(16).collect()
}

#[component]
fn KeyTable(
    keys: Vec<KeyView>,
    check: ServerAction<CheckKey>,
    revoke: ServerAction<RevokeKey>,
) -> impl IntoView {
    if keys.is_empty() {
        return view! { <p class="px-6 py-6 text-sm text-slate-500" data-testid="no-keys">"No keys yet. Add one with the form."</p> }
            .into_any();
    }
    let rows = keys
        .into_iter()
        .map(|key| view! { <KeyRow key check revoke /> })
        .collect_view();
    view! {
        <div class="overflow-x-auto">
            <table class="min-w-full divide-y divide-slate-200 text-left text-sm" data-testid="keys-table">
                <thead class="bg-slate-50 text-xs font-medium uppercase tracking-wide text-slate-500">
                    <tr>
                        <th scope="col" class="px-4 py-2">"Key"</th>
                        <th scope="col" class="px-4 py-2">"Exchange"</th>
                        <th scope="col" class="px-4 py-2">"Permissions"</th>
                        <th scope="col" class="px-4 py-2">"Sealed under"</th>
                        <th scope="col" class="px-4 py-2">"Created / last used (UTC)"</th>
                        <th scope="col" class="px-4 py-2"><span class="sr-only">"Actions"</span></th>
                    </tr>
                </thead>
                <tbody class="divide-y divide-slate-100">{rows}</tbody>
            </table>
        </div>
    }
    .into_any()
}

#[component]
fn KeyRow(
    key: KeyView,
    check: ServerAction<CheckKey>,
    revoke: ServerAction<RevokeKey>,
) -> impl IntoView {
    let (confirming, set_confirming) = signal(false);
    let revoked = key.status == "revoked";
    let status = match key.status.as_str() {
        "active" => badge("Active", GREEN).into_any(),
        "suspended" => badge("Suspended", AMBER).into_any(),
        _ => badge("Revoked", GREY).into_any(),
    };
    let env_tone = if key.environment == "live" { RED } else { BLUE };
    let permissions = if revoked {
        view! { <span class="text-xs text-slate-400">"—"</span> }.into_any()
    } else {
        view! {
            <div class="flex flex-wrap gap-1">
                {badge(if key.scope == "trade" { "Trade scope" } else { "Read-only scope" }, GREY)}
                {if key.can_withdraw { badge("Can withdraw", RED).into_any() } else { badge("No withdrawals", GREEN).into_any() }}
                {key.ip_restricted.then(|| badge("IP restricted", GREEN))}
            </div>
        }
        .into_any()
    };
    let sealed = match (&key.kms_key_id, key.wrapped_under_current) {
        (None, _) => view! { <span class="text-xs text-slate-400">"ciphertext deleted"</span> }.into_any(),
        (Some(id), true) => view! { <span class="font-mono text-xs text-slate-600" data-testid="sealed-under">{id.clone()}</span> }.into_any(),
        (Some(id), false) => view! {
            <span class="font-mono text-xs text-slate-600" data-testid="sealed-under">{id.clone()}</span>
            " "
            {badge("re-wrap due", AMBER)}
        }
        .into_any(),
    };
    let id_for_check = key.id.clone();
    let id_for_revoke = key.id.clone();
    let checking = move || check.pending().get();
    view! {
        <tr class="align-top" data-testid="key-row" data-key-id=key.id.clone() data-status=key.status.clone()>
            <td class="px-4 py-3">
                <div class="font-medium text-slate-900">{key.label.clone()}</div>
                <div class="mt-0.5 flex items-center gap-2">
                    <span class="font-mono text-xs text-slate-600" data-testid="key-mask">{key.mask.clone()}</span>
                    {status}
                </div>
                {key.status_reason.clone().filter(|_| !revoked).map(|r| view! { <p class="mt-1 max-w-xs text-xs text-amber-800">{r}</p> })}
            </td>
            <td class="px-4 py-3">
                <div class="text-slate-800">{key.exchange_label.clone()}</div>
                <div class="mt-0.5">{badge(&key.environment, env_tone)}</div>
            </td>
            <td class="px-4 py-3">{permissions}</td>
            <td class="px-4 py-3">{sealed}</td>
            <td class="px-4 py-3 whitespace-nowrap text-xs text-slate-600">
                <div>{short_time(&key.created_at)}</div>
                <div data-testid="last-used">{key.last_used_at.as_deref().map_or_else(|| "never used".to_owned(), |t| format!("used {}", short_time(t)))}</div>
            </td>
            <td class="px-4 py-3 text-right whitespace-nowrap">
                {(!revoked).then(|| view! {
                    <div class="flex justify-end gap-2">
                        <button type="button" class=SECONDARY_BUTTON data-testid="check-key" disabled=checking
                            on:click=move |_| { check.dispatch(CheckKey { key_id: id_for_check.clone() }); }>
                            "Check"
                        </button>
                        <Show
                            when=move || confirming.get()
                            fallback=move || view! {
                                <button type="button" class=SECONDARY_BUTTON data-testid="revoke-key" on:click=move |_| set_confirming.set(true)>"Revoke"</button>
                            }
                        >
                            {
                                let id = id_for_revoke.clone();
                                view! {
                                    <button type="button" class=DANGER_BUTTON data-testid="confirm-revoke"
                                        on:click=move |_| { revoke.dispatch(RevokeKey { key_id: id.clone() }); }>
                                        "Delete ciphertext"
                                    </button>
                                    <button type="button" class=SECONDARY_BUTTON on:click=move |_| set_confirming.set(false)>"Keep"</button>
                                }
                            }
                        </Show>
                    </div>
                })}
            </td>
        </tr>
    }
}

/// Whose keys a re-wrap run covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RewrapScope {
    Mine,
    /// Every user's keys (admins).
    Everyone,
}

/// Starts a re-wrap run and shows its progress until it finishes.
#[component]
pub fn RewrapControl(
    label: &'static str,
    scope: RewrapScope,
    on_finished: impl Fn() + Copy + Send + Sync + 'static,
) -> impl IntoView {
    let (status, set_status) = signal(None::<RewrapStatus>);
    let (error, set_error) = signal(None::<AppError>);
    let (running, set_running) = signal(false);
    let begin = move |_| {
        set_running.set(true);
        set_error.set(None);
        set_status.set(None);
        leptos::task::spawn_local(async move {
            let started = match scope {
                RewrapScope::Mine => rewrap_my_keys().await,
                RewrapScope::Everyone => rewrap_all_keys().await,
            };
            match started {
                Ok(job_id) => {
                    follow_rewrap(job_id, set_status, set_error, set_running, on_finished).await
                }
                Err(e) => {
                    set_error.set(Some(e));
                    set_running.set(false);
                }
            }
        });
    };
    view! {
        <div class="flex min-w-64 flex-col items-end gap-2">
            <button type="button" class=SECONDARY_BUTTON data-testid="rewrap" disabled=move || running.get() on:click=begin>
                {move || if running.get() { "Re-wrapping…" } else { label }}
            </button>
            {move || status.get().map(|s| view! { <RewrapBar status=s /> })}
            <ErrorNotice error=error />
        </div>
    }
}

/// How often a running re-wrap is asked for its progress.
const REWRAP_POLL: std::time::Duration = std::time::Duration::from_millis(300);

/// Shows a re-wrap run's progress until it finishes, or until the control is gone.
async fn follow_rewrap(
    job_id: String,
    set_status: WriteSignal<Option<RewrapStatus>>,
    set_error: WriteSignal<Option<AppError>>,
    set_running: WriteSignal<bool>,
    on_finished: impl Fn() + Copy + Send + Sync + 'static,
) {
    loop {
        match rewrap_progress(job_id.clone()).await {
            Ok(s) => {
                // The page was left: nobody is watching any more.
                if set_status.try_set(Some(s)).is_some() {
                    return;
                }
                if s.finished {
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
        gloo_timers::future::sleep(REWRAP_POLL).await;
    }
}

#[component]
fn RewrapBar(status: RewrapStatus) -> impl IntoView {
    let done = status.rewrapped + status.already_current + status.failed;
    let percent = (done * 100).checked_div(status.total).unwrap_or(100);
    let summary = if status.finished {
        format!(
            "Done: {} re-wrapped, {} already current{}.",
            status.rewrapped,
            status.already_current,
            if status.failed > 0 {
                format!(", {} failed", status.failed)
            } else {
                String::new()
            }
        )
    } else {
        format!("{done} of {} keys…", status.total)
    };
    let bar_tone = if status.failed > 0 {
        "fill-amber-500"
    } else {
        "fill-indigo-600"
    };
    view! {
        <div class="w-64" data-testid="rewrap-progress" data-finished=status.finished.to_string()>
            <div class="h-2 overflow-hidden rounded-full bg-slate-100" role="progressbar"
                aria-valuemin="0" aria-valuemax=status.total.to_string() aria-valuenow=done.to_string()>
                // SVG geometry, not an inline style: the CSP refuses style attributes.
                <svg viewBox="0 0 100 4" preserveAspectRatio="none" class="h-full w-full" aria-hidden="true">
                    <rect width=percent.to_string() height="4" class=bar_tone />
                </svg>
            </div>
            <p class="mt-1 text-right text-xs text-slate-600" data-testid="rewrap-summary">{summary}</p>
        </div>
    }
}

#[component]
fn Receipts(receipts: Vec<KeyReceipt>) -> impl IntoView {
    if receipts.is_empty() {
        return view! { <p class="px-6 py-4 text-sm text-slate-500">"No receipts yet."</p> }
            .into_any();
    }
    let chart = UseChart::new(&receipts);
    let items = receipts
        .into_iter()
        .map(|r| {
            let tone = match (AuditAction::parse(&r.action), r.outcome.as_str()) {
                (_, "failure") | (_, "denied") => "bg-red-500",
                (Some(AuditAction::VaultKeyUsed), _) => "bg-indigo-500",
                (Some(AuditAction::VaultKeyRevoked), _) => "bg-slate-400",
                _ => "bg-emerald-500",
            };
            view! {
                <li class="relative flex gap-3 pb-4" data-testid="receipt" data-action=r.action.clone()>
                    <span class=format!("mt-1.5 h-2.5 w-2.5 flex-none rounded-full {tone}")></span>
                    <div class="min-w-0">
                        <p class="text-sm text-slate-900">
                            <span class="font-medium">{r.key_label.clone()}</span>
                            " "
                            <span class="font-mono text-xs text-slate-500">{r.key_mask.clone()}</span>
                            " — "
                            {r.description.clone()}
                        </p>
                        <p class="text-xs text-slate-500">
                            {format!("{} UTC", short_time(&r.at))}
                            {r.ip.clone().map(|ip| format!(" · from {ip}"))}
                            {format!(" · audit #{}", r.seq)}
                        </p>
                    </div>
                </li>
            }
        })
        .collect_view();
    view! {
        <div class="px-6 py-4">
            {chart.view()}
            <ol class="mt-4 border-l border-slate-200 pl-4" data-testid="receipts">{items}</ol>
        </div>
    }
    .into_any()
}

/// Decryptions per day over the last two weeks of receipts, drawn as bars.
struct UseChart {
    days: Vec<(String, u32)>,
}

impl UseChart {
    const DAYS: usize = 14;

    fn new(receipts: &[KeyReceipt]) -> Self {
        let mut days: Vec<String> = receipts
            .iter()
            .map(|r| r.at.chars().take(10).collect())
            .collect();
        days.sort();
        days.dedup();
        let days: Vec<(String, u32)> = days
            .into_iter()
            .rev()
            .take(Self::DAYS)
            .rev()
            .map(|day| {
                let uses = receipts
                    .iter()
                    .filter(|r| r.action == AuditAction::VaultKeyUsed && r.at.starts_with(&day))
                    .count() as u32;
                (day, uses)
            })
            .collect();
        Self { days }
    }

    fn view(&self) -> impl IntoView + use<> {
        let max = self.days.iter().map(|(_, n)| *n).max().unwrap_or(0).max(1);
        let width = 28 * self.days.len().max(1) as u32;
        let bars = self
            .days
            .iter()
            .enumerate()
            .map(|(i, (day, uses))| {
                let height = 52 * uses / max;
                let x = i as u32 * 28 + 4;
                view! {
                    <g>
                        <title>{format!("{day}: {uses} decryptions")}</title>
                        <rect x=x y=70 - height width="20" height=height.max(1) rx="2" class="fill-indigo-500" />
                        <text x=x + 10 y=66 - height text-anchor="middle" class="fill-slate-700 text-[9px]">{uses.to_string()}</text>
                        <text x=x + 10 y="84" text-anchor="middle" class="fill-slate-500 text-[9px]">{day[8..].to_owned()}</text>
                    </g>
                }
            })
            .collect_view();
        view! {
            <figure>
                <figcaption class="mb-1 text-xs font-medium text-slate-600">"Decryptions per day (UTC)"</figcaption>
                <svg role="img" aria-label="Decryptions per day" data-testid="use-chart" width=width height="88" viewBox=format!("0 0 {width} 88")>{bars}</svg>
            </figure>
        }
    }
}
