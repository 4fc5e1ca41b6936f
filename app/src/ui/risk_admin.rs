//! "Risk": the admin's kill switch, global limits, per-user trading states and kill switches,
//! and the IP blocklist. Every change needs a fresh security-key step-up (the server asks for it
//! and the error notice shows the step-up panel) and is audited.

use crate::ui::server_data::{ServerData, server_data};
use leptos::prelude::*;
use leptos_meta::Title;

use super::keys::short_time;
use super::trading::{CARD, TD, TH};
use super::{
    DANGER_BUTTON, ErrorNotice, INPUT_CLASS, PRIMARY_BUTTON, PageHeader, RequireRole,
    SECONDARY_BUTTON,
};
use crate::api::UserRole;
use crate::api::trading::{
    LimitRow, RiskOverviewView, StopEffectView, UserControlView, block_ip, risk_overview,
    set_kill_switch, set_limit, set_user_controls, unblock_ip,
};
use crate::error::AppError;

#[component]
pub fn RiskAdminPage() -> impl IntoView {
    // Created before the role check, as on the Trade page.
    let (version, set_version) = signal(0u32);
    let overview = server_data(move || version.get(), |_| risk_overview());
    view! {
        <Title text="Risk controls" />
        <PageHeader title="Risk controls" description="The kill switch, limits, each trader's state and blocked addresses. Changes need your security key and are recorded in the audit log." />
        <RequireRole roles=&[UserRole::Admin]>
            <RiskDesk overview set_version />
        </RequireRole>
    }
}

/// Runs a server call, then reloads the overview; errors (including the step-up request) show
/// in the page's notice.
fn run<F>(
    call: F,
    set_error: WriteSignal<Option<AppError>>,
    set_version: WriteSignal<u32>,
    set_status: WriteSignal<String>,
    done: &'static str,
) where
    F: std::future::Future<Output = Result<(), AppError>> + 'static,
{
    run_then(call, set_error, set_version, set_status, move |()| {
        done.to_owned()
    });
}

/// What a stop did to resting orders, for the status line: an exchange that did not take a
/// cancel is said so, not passed over.
fn cancelled_note(effect: StopEffectView) -> String {
    let done = match effect.cancelled {
        0 if effect.still_resting == 0 => "No resting orders to cancel.".to_owned(),
        0 => String::new(),
        1 => "1 resting order was cancelled.".into(),
        n => format!("{n} resting orders were cancelled."),
    };
    let left = match effect.still_resting {
        0 => return done,
        1 => "1 resting order could not be cancelled at its exchange yet: it is asked again \
              until the exchange confirms."
            .to_owned(),
        n => format!(
            "{n} resting orders could not be cancelled at their exchange yet: each is asked \
             again until the exchange confirms."
        ),
    };
    format!("{done} {left}").trim_start().to_owned()
}

/// Like [`run`], with a status line built from the call's answer.
fn run_then<T, F>(
    call: F,
    set_error: WriteSignal<Option<AppError>>,
    set_version: WriteSignal<u32>,
    set_status: WriteSignal<String>,
    done: impl FnOnce(T) -> String + 'static,
) where
    T: 'static,
    F: std::future::Future<Output = Result<T, AppError>> + 'static,
{
    leptos::task::spawn_local(async move {
        match call.await {
            Ok(answer) => {
                set_error.set(None);
                set_status.set(done(answer));
                set_version.update(|n| *n += 1);
            }
            Err(e) => {
                set_status.set(String::new());
                set_error.set(Some(e));
            }
        }
    });
}

#[derive(Clone, Copy)]
struct Ctx {
    set_error: WriteSignal<Option<AppError>>,
    set_version: WriteSignal<u32>,
    set_status: WriteSignal<String>,
}

#[component]
fn RiskDesk(
    overview: ServerData<Result<RiskOverviewView, AppError>>,
    set_version: WriteSignal<u32>,
) -> impl IntoView {
    let (error, set_error) = signal(None::<AppError>);
    let (status, set_status) = signal(String::new());
    let ctx = Ctx {
        set_error,
        set_version,
        set_status,
    };
    view! {
        <div class="space-y-6">
            <div class="empty:hidden"><ErrorNotice error=error /></div>
            <p class="text-sm text-emerald-700 empty:hidden" aria-live="polite" data-testid="risk-status">{status}</p>
            <Transition fallback=|| view! { <p class="text-sm text-slate-500">"Loading…"</p> }>
                {move || overview.get().map(|o| match o {
                    Ok(o) => view! { <RiskPanels overview=o ctx /> }.into_any(),
                    Err(e) => view! { <ErrorNotice error=Signal::stored(Some(e)) /> }.into_any(),
                })}
            </Transition>
        </div>
    }
}

#[component]
fn RiskPanels(overview: RiskOverviewView, ctx: Ctx) -> impl IntoView {
    let Ctx {
        set_error,
        set_version,
        set_status,
    } = ctx;
    let on = overview.global_kill;
    let (confirm, set_confirm) = signal(false);
    let flip = move |_| {
        set_confirm.set(false);
        run_then(
            set_kill_switch(!on),
            set_error,
            set_version,
            set_status,
            move |stopped| {
                if on {
                    "Kill switch off: trading resumes.".to_owned()
                } else {
                    format!(
                        "Kill switch on: every new order is refused. {}",
                        cancelled_note(stopped)
                    )
                }
            },
        );
    };
    view! {
        <section class=format!("{CARD} p-5") data-testid="kill-switch">
            <div class="flex flex-wrap items-center justify-between gap-4">
                <div>
                    <h2 class=if on { "text-lg font-bold text-red-700" } else { "text-lg font-semibold text-emerald-700" }>
                        {if on { "KILL SWITCH ON — all new orders are refused" } else { "Trading is on for everyone" }}
                    </h2>
                    <p class="text-sm text-slate-600">"The kill switch (MiFID II) stops every new order on every exchange and cancels resting orders at their exchange; cancels still work, and held orders are cancelled instead of sent."</p>
                </div>
                {move || if confirm.get() {
                    view! {
                        <div class="flex gap-2">
                            <button type="button" class=if on { PRIMARY_BUTTON } else { DANGER_BUTTON }
                                data-testid=if on { "kill-switch-off" } else { "kill-switch-on" } on:click=flip>
                                {if on { "Yes, resume trading" } else { "Yes, stop all trading" }}
                            </button>
                            <button type="button" class=SECONDARY_BUTTON on:click=move |_| set_confirm.set(false)>"Cancel"</button>
                        </div>
                    }.into_any()
                } else {
                    view! {
                        <button type="button" class=if on { PRIMARY_BUTTON } else { DANGER_BUTTON } on:click=move |_| set_confirm.set(true)>
                            {if on { "Turn the kill switch off…" } else { "Turn the kill switch on…" }}
                        </button>
                    }.into_any()
                }}
            </div>
        </section>
        <section class=CARD>
            <div class="border-b border-slate-200 px-4 py-3">
                <h2 class="font-semibold">"Global limits"</h2>
                <p class="text-sm text-slate-600">"Apply to every trader without an override. A value that cannot be read counts as the strictest possible, and that is audited."</p>
            </div>
            <table class="min-w-full divide-y divide-slate-200">
                <thead class="bg-slate-50"><tr><th class=TH>"Limit"</th><th class=TH>"Value"</th></tr></thead>
                <tbody class="divide-y divide-slate-100">
                    {overview.limits.into_iter().map(|row| view! { <LimitEditor row user_id=None ctx /> }).collect_view()}
                </tbody>
            </table>
        </section>
        <section class=CARD data-testid="user-controls">
            <div class="border-b border-slate-200 px-4 py-3">
                <h2 class="font-semibold">"Traders"</h2>
                <p class="text-sm text-slate-600">"Active: everything. Reducing only: selling what they hold, and cancels. Halted: cancels only."</p>
            </div>
            <div class="overflow-x-auto">
                <table class="min-w-full divide-y divide-slate-200">
                    <thead class="bg-slate-50"><tr><th class=TH>"User"</th><th class=TH>"State"</th><th class=TH>"Own kill switch"</th><th class=TH>"Open cases"</th><th class=TH>"Limit overrides"</th></tr></thead>
                    <tbody class="divide-y divide-slate-100">
                        {overview.users.into_iter().map(|u| view! { <UserRow user=u limits=overview_limit_keys() ctx /> }).collect_view()}
                    </tbody>
                </table>
            </div>
        </section>
        <Blocklist blocks=overview.blocklist ctx />
    }
}

fn overview_limit_keys() -> Vec<(&'static str, &'static str)> {
    domain::risk::LimitField::ALL
        .iter()
        .map(|f| (f.key(), f.label()))
        .collect()
}

#[component]
fn LimitEditor(row: LimitRow, user_id: Option<String>, ctx: Ctx) -> impl IntoView {
    let (value, set_value) = signal(row.value.clone().unwrap_or_default());
    let key = row.key.clone();
    let save = move |_| {
        let (key, user_id, v) = (key.clone(), user_id.clone(), value.get_untracked());
        run(
            set_limit(user_id, key, Some(v)),
            ctx.set_error,
            ctx.set_version,
            ctx.set_status,
            "Limit saved.",
        );
    };
    view! {
        <tr>
            <td class="px-4 py-2 text-sm">
                <div class="font-medium text-slate-800">{row.label.clone()}</div>
                <div class="text-xs text-slate-500">{row.help.clone()}</div>
            </td>
            <td class=TD>
                <div class="flex gap-2">
                    <input class=format!("{INPUT_CLASS} w-56") aria-label=row.label.clone() prop:value=value
                        on:input=move |ev| set_value.set(event_target_value(&ev)) />
                    <button type="button" class=SECONDARY_BUTTON on:click=save>"Save"</button>
                </div>
            </td>
        </tr>
    }
}

#[component]
fn UserRow(
    user: UserControlView,
    limits: Vec<(&'static str, &'static str)>,
    ctx: Ctx,
) -> impl IntoView {
    let id = StoredValue::new(user.user_id.clone());
    let state = user.state;
    let kill = user.kill_switch;
    let (field, set_field) = signal(limits.first().map(|l| l.0.to_string()).unwrap_or_default());
    let (value, set_value) = signal(String::new());
    let set_state = move |ev: leptos::ev::Event| {
        let chosen = event_target_value(&ev);
        let stops = chosen != "active";
        run_then(
            set_user_controls(id.get_value(), Some(chosen), None),
            ctx.set_error,
            ctx.set_version,
            ctx.set_status,
            move |stopped| {
                if stops {
                    format!("Trading state changed. {}", cancelled_note(stopped))
                } else {
                    "Trading state changed.".to_owned()
                }
            },
        );
    };
    let toggle_kill = move |_| {
        run_then(
            set_user_controls(id.get_value(), None, Some(!kill)),
            ctx.set_error,
            ctx.set_version,
            ctx.set_status,
            move |stopped| {
                if kill {
                    "Kill switch changed.".to_owned()
                } else {
                    format!("Trader stopped. {}", cancelled_note(stopped))
                }
            },
        );
    };
    let add_override = move |_| {
        let v = value.get_untracked();
        run(
            set_limit(Some(id.get_value()), field.get_untracked(), Some(v)),
            ctx.set_error,
            ctx.set_version,
            ctx.set_status,
            "Override saved.",
        );
    };
    view! {
        <tr data-testid="user-row">
            <td class=TD>
                <div class="font-medium text-slate-800">{user.email.clone()}</div>
                <div class="text-xs text-slate-500">{user.role.clone()}{user.autonomous.then_some(" · autonomous agents on")}</div>
            </td>
            <td class=TD>
                <select class=format!("{INPUT_CLASS} min-w-36") aria-label=format!("Trading state of {}", user.email) on:change=set_state>
                    {[("active", "Active"), ("reducing", "Reducing only"), ("halted", "Halted")].into_iter().map(|(v, l)| view! {
                        <option value=v selected=state.as_str() == v>{l}</option>
                    }).collect_view()}
                </select>
            </td>
            <td class=TD>
                <button type="button" class=if kill { DANGER_BUTTON } else { SECONDARY_BUTTON } on:click=toggle_kill>
                    {if kill { "Stopped — resume" } else { "Stop this trader" }}
                </button>
            </td>
            <td class=TD>{user.open_cases.to_string()}</td>
            <td class="px-4 py-2 text-xs text-slate-600">
                <ul class="space-y-1">
                    {user.overrides.iter().map(|o| {
                        let key = o.key.clone();
                        let clear = move |_| {
                            run(
                                set_limit(Some(id.get_value()), key.clone(), None),
                                ctx.set_error,
                                ctx.set_version,
                                ctx.set_status,
                                "Override removed.",
                            );
                        };
                        view! { <li>{format!("{}: {}", o.label, o.value.clone().unwrap_or_default())}" "<button type="button" class="text-red-700 underline" on:click=clear>"remove"</button></li> }
                    }).collect_view()}
                </ul>
                <div class="mt-1 flex flex-wrap gap-1">
                    <select class="max-w-44 rounded border border-slate-300 px-1 py-1 text-xs" aria-label="Limit to override" on:change=move |ev| set_field.set(event_target_value(&ev))>
                        {limits.iter().map(|(k, l)| view! { <option value=*k>{*l}</option> }).collect_view()}
                    </select>
                    <input class="w-24 rounded border border-slate-300 px-1 py-1 text-xs" aria-label="Override value" prop:value=value
                        on:input=move |ev| set_value.set(event_target_value(&ev)) />
                    <button type="button" class="rounded border border-slate-300 px-2 text-xs" on:click=add_override>"Set"</button>
                </div>
            </td>
        </tr>
    }
}

#[component]
fn Blocklist(blocks: Vec<crate::api::trading::BlockView>, ctx: Ctx) -> impl IntoView {
    let (cidr, set_cidr) = signal(String::new());
    let (note, set_note) = signal(String::new());
    let add = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        run(
            block_ip(cidr.get_untracked(), note.get_untracked()),
            ctx.set_error,
            ctx.set_version,
            ctx.set_status,
            "Address blocked: orders from it are denied.",
        );
    };
    view! {
        <section class=CARD data-testid="blocklist">
            <div class="border-b border-slate-200 px-4 py-3">
                <h2 class="font-semibold">"Blocked addresses"</h2>
                <p class="text-sm text-slate-600">"Orders from these IP addresses or ranges are denied."</p>
            </div>
            {if blocks.is_empty() {
                view! { <p class="px-4 py-3 text-sm text-slate-500">"Nothing blocked."</p> }.into_any()
            } else {
                view! {
                    <table class="min-w-full divide-y divide-slate-200">
                        <thead class="bg-slate-50"><tr><th class=TH>"Range"</th><th class=TH>"Note"</th><th class=TH>"Added"</th><th class=TH></th></tr></thead>
                        <tbody class="divide-y divide-slate-100">
                            {blocks.into_iter().map(|b| {
                                let id = b.id.clone();
                                let remove = move |_| run(unblock_ip(id.clone()), ctx.set_error, ctx.set_version, ctx.set_status, "Address unblocked.");
                                view! { <tr>
                                    <td class=format!("{TD} font-mono")>{b.cidr}</td>
                                    <td class=TD>{b.note}</td>
                                    <td class=TD>{short_time(&b.created_at)}</td>
                                    <td class=TD><button type="button" class="text-sm text-red-700 hover:underline" on:click=remove>"Remove"</button></td>
                                </tr> }
                            }).collect_view()}
                        </tbody>
                    </table>
                }.into_any()
            }}
            <form class="flex flex-wrap items-end gap-2 border-t border-slate-200 px-4 py-3" on:submit=add>
                <input class=format!("{INPUT_CLASS} w-56") placeholder="203.0.113.0/24" aria-label="IP address or range" prop:value=cidr
                    on:input=move |ev| set_cidr.set(event_target_value(&ev)) />
                <input class=format!("{INPUT_CLASS} w-72") placeholder="Why (optional)" aria-label="Note" prop:value=note
                    on:input=move |ev| set_note.set(event_target_value(&ev)) />
                <button type="submit" class=PRIMARY_BUTTON>"Block"</button>
            </form>
        </section>
    }
}
