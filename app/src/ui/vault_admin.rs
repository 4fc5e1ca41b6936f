//! The admin's vault controls: master key rotation, re-wrapping everyone's keys, decoy keys and
//! the security alerts they raise.

use crate::ui::server_data::server_data;
use leptos::html;
use leptos::prelude::*;
use leptos_meta::Title;

use super::keys::{RewrapControl, RewrapScope, short_time};
use super::{
    ErrorNotice, INPUT_CLASS, LABEL_CLASS, PRIMARY_BUTTON, PageHeader, RequireRole,
    SECONDARY_BUTTON,
};
use crate::api::UserRole;
use crate::api::keys::{
    AcknowledgeAlert, AlertView, KeyView, PlantCanary, RotateMasterKey, kms_status, list_alerts,
    list_canaries,
};

#[component]
pub fn VaultAdminPage() -> impl IntoView {
    view! {
        <Title text="Vault & alerts" />
        <PageHeader title="Vault & alerts" description="Rotate the master key, re-wrap every stored key under it, plant decoy keys and follow the alerts they raise." />
        <RequireRole roles=&[UserRole::Admin]>
            <VaultAdmin />
        </RequireRole>
    }
}

#[component]
fn VaultAdmin() -> impl IntoView {
    let rotate = ServerAction::<RotateMasterKey>::new();
    let plant = ServerAction::<PlantCanary>::new();
    let acknowledge = ServerAction::<AcknowledgeAlert>::new();
    let kms = server_data(move || rotate.version().get(), |_| kms_status());
    // Reading alerts and decoys needs the admin's key window too: reload them after any
    // admin action here (which opens it).
    let canaries = server_data(
        move || (plant.version().get(), rotate.version().get()),
        |_| list_canaries(),
    );
    let alerts = server_data(
        move || {
            (
                acknowledge.version().get(),
                plant.version().get(),
                rotate.version().get(),
            )
        },
        |_| list_alerts(),
    );
    let rotate_error = Signal::derive(move || rotate.value().get().and_then(Result::err));
    view! {
        <div class="grid gap-6 lg:grid-cols-2">
            <section class="rounded-xl border border-slate-200 bg-white p-6 shadow-sm">
                <h2 class="font-semibold">"Master key"</h2>
                <p class="mt-1 text-sm text-slate-600">"New keys are sealed under the current version. Older versions stay loaded so existing keys keep working until they are re-wrapped."</p>
                <Transition fallback=|| view! { <p class="mt-4 text-sm text-slate-500">"Loading…"</p> }>
                    {move || Suspend::new(async move {
                        match kms.await {
                            Ok(overview) => view! {
                                <dl class="mt-4 grid grid-cols-2 gap-2 text-sm">
                                    <dt class="text-slate-500">"Backend"</dt>
                                    <dd class="font-medium">{if overview.backend == "local" { "Local master key file" } else { "AWS KMS" }}</dd>
                                    <dt class="text-slate-500">"Current key"</dt>
                                    <dd class="font-mono" data-testid="current-kms-key">{overview.current_key_id.clone()}</dd>
                                </dl>
                                {(!overview.can_rotate_here).then(|| view! {
                                    <p class="mt-3 text-sm text-slate-600">"AWS KMS rotates key material itself; to move to another key, change kms.aws_key_id and re-wrap."</p>
                                })}
                            }
                            .into_any(),
                            Err(e) => view! { <ErrorNotice error=Signal::stored(Some(e)) /> }.into_any(),
                        }
                    })}
                </Transition>
                <div class="mt-4">
                    <button type="button" class=PRIMARY_BUTTON data-testid="rotate-master-key"
                        disabled=move || rotate.pending().get()
                        on:click=move |_| { rotate.dispatch(RotateMasterKey {}); }>
                        {move || if rotate.pending().get() { "Rotating…" } else { "Add a new master key version" }}
                    </button>
                    <div class="mt-3"><ErrorNotice error=rotate_error /></div>
                </div>
                <div class="mt-6 flex flex-wrap items-start justify-between gap-4 border-t border-slate-100 pt-4">
                    <div class="max-w-xs">
                        <h3 class="text-sm font-semibold">"Re-wrap every user's keys"</h3>
                        <p class="text-sm text-slate-600">"After a rotation: moves every stored data key under the current version so old versions can be retired."</p>
                    </div>
                    <RewrapControl label="Re-wrap all users' keys" scope=RewrapScope::Everyone on_finished=move || {} />
                </div>
            </section>
            <section class="rounded-xl border border-slate-200 bg-white p-6 shadow-sm">
                <h2 class="font-semibold">"Security alerts"</h2>
                <p class="mt-1 text-sm text-slate-600">"Raised when a decoy key is touched. Each one is also in the audit log and counted in /metrics."</p>
                <Transition fallback=|| view! { <p class="mt-4 text-sm text-slate-500">"Loading…"</p> }>
                    {move || Suspend::new(async move {
                        match alerts.await {
                            Ok(list) => view! { <AlertList alerts=list acknowledge /> }.into_any(),
                            Err(e) => view! { <AdminReadError error=e /> }.into_any(),
                        }
                    })}
                </Transition>
            </section>
            <section class="rounded-xl border border-slate-200 bg-white p-6 shadow-sm lg:col-span-2">
                <h2 class="font-semibold">"Decoy keys"</h2>
                <p class="mt-1 text-sm text-slate-600">"A decoy looks like any other key in its owner's vault. Nobody has a reason to use it, so any attempt to decrypt or use it raises an alert."</p>
                <div class="mt-4 grid gap-6 lg:grid-cols-3">
                    <PlantForm plant />
                    <div class="lg:col-span-2">
                        <Transition fallback=|| view! { <p class="text-sm text-slate-500">"Loading…"</p> }>
                            {move || Suspend::new(async move {
                                match canaries.await {
                                    Ok(list) => view! { <CanaryTable canaries=list /> }.into_any(),
                                    Err(e) => view! { <AdminReadError error=e /> }.into_any(),
                                }
                            })}
                        </Transition>
                    </div>
                </div>
            </section>
        </div>
    }
}

/// A read that needs the admin's key window: says so, and offers the step-up on request (so
/// the page does not open with several prompts at once).
#[component]
fn AdminReadError(error: crate::error::AppError) -> impl IntoView {
    use crate::error::AppError;
    let AppError::StepUpRequired(need) = error else {
        return view! { <ErrorNotice error=Signal::stored(Some(error)) /> }.into_any();
    };
    let (asked, set_asked) = signal(false);
    view! {
        <div class="mt-3 space-y-3 text-sm text-slate-600" data-testid="admin-read-locked">
            <p>"Shown once you confirm with your security key, like every admin action. Reload the page after confirming."</p>
            {move || if asked.get() {
                view! { <super::stepup::StepUpPanel need /> }.into_any()
            } else {
                view! {
                    <button type="button" class=SECONDARY_BUTTON on:click=move |_| set_asked.set(true)>
                        "Confirm with my security key"
                    </button>
                }.into_any()
            }}
        </div>
    }
    .into_any()
}

#[component]
fn PlantForm(plant: ServerAction<PlantCanary>) -> impl IntoView {
    let form = NodeRef::<html::Form>::new();
    let error = Signal::derive(move || plant.value().get().and_then(Result::err));
    Effect::new(move |_| {
        if let Some(Ok(_)) = plant.value().get()
            && let Some(form) = form.get()
        {
            form.reset();
        }
    });
    view! {
        <ActionForm action=plant node_ref=form attr:class="space-y-3" attr:data-testid="plant-canary-form">
            <div>
                <label for="canary-owner" class=LABEL_CLASS>"Place in the vault of (email)"</label>
                <input id="canary-owner" name="owner_email" type="email" required class=INPUT_CLASS />
            </div>
            <div>
                <label for="canary-label" class=LABEL_CLASS>"Label it shows"</label>
                <input id="canary-label" name="label" type="text" maxlength="60" required placeholder="e.g. Old bot key" class=INPUT_CLASS />
            </div>
            <div class="grid grid-cols-2 gap-3">
                <div>
                    <label for="canary-exchange" class=LABEL_CLASS>"Exchange"</label>
                    <select id="canary-exchange" name="exchange" class=INPUT_CLASS>
                        <option value="binance">"Binance"</option>
                        <option value="paper">"Paper"</option>
                    </select>
                </div>
                <div>
                    <label for="canary-environment" class=LABEL_CLASS>"Environment"</label>
                    <select id="canary-environment" name="environment" class=INPUT_CLASS>
                        <option value="live">"Live"</option>
                        <option value="testnet">"Testnet"</option>
                        <option value="paper">"Paper"</option>
                    </select>
                </div>
            </div>
            <ErrorNotice error />
            <button type="submit" class=format!("{PRIMARY_BUTTON} w-full") disabled=move || plant.pending().get()>"Plant decoy"</button>
        </ActionForm>
    }
}

#[component]
fn CanaryTable(canaries: Vec<KeyView>) -> impl IntoView {
    if canaries.is_empty() {
        return view! { <p class="text-sm text-slate-500">"No decoys planted."</p> }.into_any();
    }
    let rows = canaries
        .into_iter()
        .map(|c| {
            view! {
                <tr data-testid="canary-row">
                    <td class="px-3 py-2 font-medium">{c.label}</td>
                    <td class="px-3 py-2 font-mono text-xs">{c.mask}</td>
                    <td class="px-3 py-2 text-slate-700">{c.owner_email.unwrap_or_else(|| "deleted user".into())}</td>
                    <td class="px-3 py-2 text-xs">{format!("{} · {}", c.exchange_label, c.environment)}</td>
                    <td class="px-3 py-2 text-xs text-slate-600">{short_time(&c.created_at)}</td>
                    <td class="px-3 py-2 text-xs">
                        {match c.last_used_at {
                            Some(at) => view! { <span class="font-medium text-red-700">{format!("touched {}", short_time(&at))}</span> }.into_any(),
                            None => view! { <span class="text-slate-500">"untouched"</span> }.into_any(),
                        }}
                    </td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <table class="min-w-full divide-y divide-slate-200 text-left text-sm" data-testid="canary-table">
            <thead class="text-xs font-medium uppercase tracking-wide text-slate-500">
                <tr>
                    <th scope="col" class="px-3 py-2">"Label"</th>
                    <th scope="col" class="px-3 py-2">"Mask"</th>
                    <th scope="col" class="px-3 py-2">"Owner"</th>
                    <th scope="col" class="px-3 py-2">"Exchange"</th>
                    <th scope="col" class="px-3 py-2">"Planted (UTC)"</th>
                    <th scope="col" class="px-3 py-2">"Status"</th>
                </tr>
            </thead>
            <tbody class="divide-y divide-slate-100">{rows}</tbody>
        </table>
    }
    .into_any()
}

#[component]
fn AlertList(alerts: Vec<AlertView>, acknowledge: ServerAction<AcknowledgeAlert>) -> impl IntoView {
    if alerts.is_empty() {
        return view! { <p class="mt-4 text-sm text-slate-500" data-testid="no-alerts">"No alerts."</p> }
            .into_any();
    }
    let items = alerts
        .into_iter()
        .map(|a| {
            let open = a.acknowledged_at.is_none();
            let id = a.id.clone();
            let tone = if open {
                "border-red-200 bg-red-50"
            } else {
                "border-slate-200 bg-slate-50"
            };
            view! {
                <li class=format!("rounded-md border px-4 py-3 {tone}") data-testid="alert" data-open=open.to_string()>
                    <div class="flex items-start justify-between gap-3">
                        <div>
                            <p class="text-sm font-medium text-slate-900">{a.message}</p>
                            <p class="mt-0.5 text-xs text-slate-600">
                                {format!("{} · {} UTC", a.kind, short_time(&a.raised_at))}
                                {a.actor_email.map(|email| format!(" · by {email}"))}
                                {a.acknowledged_at.map(|at| format!(" · acknowledged {}", short_time(&at)))}
                            </p>
                        </div>
                        {open.then(|| view! {
                            <button type="button" class=SECONDARY_BUTTON data-testid="acknowledge-alert"
                                on:click=move |_| { acknowledge.dispatch(AcknowledgeAlert { alert_id: id.clone() }); }>
                                "Acknowledge"
                            </button>
                        })}
                    </div>
                </li>
            }
        })
        .collect_view();
    view! { <ul class="mt-4 space-y-2" data-testid="alerts">{items}</ul> }.into_any()
}
