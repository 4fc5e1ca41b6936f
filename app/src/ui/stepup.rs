//! Step-up in the browser: the panel that appears wherever the server asks for a fresh second
//! factor, and the Security page where people manage their keys, app and recovery codes.

use crate::ui::server_data::server_data;
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::components::A;

use super::keys::short_time;
use super::webauthn::{create_credential, get_assertion};
use super::{
    DANGER_BUTTON, ErrorNotice, INPUT_CLASS, LABEL_CLASS, PRIMARY_BUTTON, PageHeader, RequireRole,
    SECONDARY_BUTTON,
};
use crate::api::stepup::{
    FactorsView, SecurityKeyView, StepUpNeed, StepUpStatus, TotpSetupView, factors,
    key_registration_options, new_recovery_codes, register_key, remove_key, step_up,
    step_up_options, totp_confirm, totp_remove, totp_setup,
};
use crate::error::AppError;

/// Where a step-up attempt stands, so every state has words on screen.
#[derive(Debug, Clone, PartialEq)]
enum Progress {
    Idle,
    Preparing,
    WaitingForKey,
    Verifying,
    Done(StepUpStatus),
    Failed(String),
}

/// Shown in place of an error when the server wants a step-up: lets the person confirm with a
/// security key (or, where enough, an authenticator code or recovery code), then repeat.
#[component]
pub fn StepUpPanel(need: StepUpNeed) -> impl IntoView {
    let (progress, set_progress) = signal(Progress::Idle);
    let (code, set_code) = signal(String::new());
    let (use_recovery, set_use_recovery) = signal(false);
    // Only offer a code box to people who have an authenticator app.
    let available = LocalResource::new(factors);
    let has_app = move || {
        available
            .get()
            .and_then(Result::ok)
            .is_some_and(|f| f.totp_enabled)
    };

    let use_key = move |_| {
        set_progress.set(Progress::Preparing);
        leptos::task::spawn_local(async move {
            let options = match step_up_options().await {
                Ok(o) => o,
                Err(e) => return set_progress.set(Progress::Failed(e.to_string())),
            };
            let Some(request) = options.webauthn else {
                return set_progress.set(Progress::Failed(
                    "You have no security key registered yet. Add one on the Security page first."
                        .into(),
                ));
            };
            set_progress.set(Progress::WaitingForKey);
            let assertion = match get_assertion(request).await {
                Ok(a) => a,
                Err(e) => return set_progress.set(Progress::Failed(e.message())),
            };
            set_progress.set(Progress::Verifying);
            match step_up("security-key".into(), assertion).await {
                Ok(status) => set_progress.set(Progress::Done(status)),
                Err(e) => set_progress.set(Progress::Failed(e.to_string())),
            }
        });
    };
    let submit_code = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let method = if use_recovery.get_untracked() {
            "recovery-code"
        } else {
            "totp"
        };
        let value = code.get_untracked();
        set_progress.set(Progress::Verifying);
        leptos::task::spawn_local(async move {
            match step_up(method.into(), value).await {
                Ok(status) => {
                    set_code.set(String::new());
                    set_progress.set(Progress::Done(status));
                }
                Err(e) => set_progress.set(Progress::Failed(e.to_string())),
            }
        });
    };
    let busy = move || {
        matches!(
            progress.get(),
            Progress::Preparing | Progress::WaitingForKey | Progress::Verifying
        )
    };

    view! {
        <div role="alert" data-testid="step-up-panel" class="rounded-lg border border-amber-300 bg-amber-50 p-4 text-sm text-amber-950">
            <div class="flex items-start gap-3">
                <svg aria-hidden="true" viewBox="0 0 24 24" class="mt-0.5 h-5 w-5 flex-none text-amber-600" fill="none" stroke="currentColor" stroke-width="2"><path d="M12 3l7 3v6c0 4.5-3 7.5-7 9-4-1.5-7-4.5-7-9V6l7-3z" /><path d="M9.5 12l2 2 3.5-4" /></svg>
                <div class="flex-1 space-y-3">
                    <p class="font-medium">{need.message()}</p>
                    {match need {
                        StepUpNeed::RecentSignIn => view! {
                            <p>"Signing in again proves the password is yours before a lasting change to the account."</p>
                        }.into_any(),
                        StepUpNeed::SetUpFactor => view! {
                            <p><a href="/security" class="font-medium underline">"Set up a second factor"</a></p>
                        }.into_any(),
                        _ => view! {
                            <div class="space-y-3">
                                <button type="button" class=PRIMARY_BUTTON data-testid="step-up-key" disabled=busy on:click=use_key>
                                    "Use my security key"
                                </button>
                                {move || (need == StepUpNeed::AnyFactor && has_app()).then(|| view! {
                                    <form class="flex flex-wrap items-end gap-2" on:submit=submit_code>
                                        <div>
                                            <label class=LABEL_CLASS for="step-up-code">
                                                {move || if use_recovery.get() { "Recovery code" } else { "Or a code from your authenticator app" }}
                                            </label>
                                            <input id="step-up-code" name="code" class=INPUT_CLASS autocomplete="one-time-code"
                                                inputmode=move || if use_recovery.get() { "text" } else { "numeric" }
                                                placeholder=move || if use_recovery.get() { "xxxx-xxxx-xxxx-xxxx" } else { "123456" }
                                                prop:value=code on:input=move |ev| set_code.set(event_target_value(&ev)) />
                                        </div>
                                        <button type="submit" class=SECONDARY_BUTTON disabled=busy>"Confirm"</button>
                                        <button type="button" class="text-xs text-amber-800 underline" on:click=move |_| set_use_recovery.update(|r| *r = !*r)>
                                            {move || if use_recovery.get() { "Use an app code instead" } else { "Lost your phone? Use a recovery code" }}
                                        </button>
                                    </form>
                                })}
                            </div>
                        }.into_any(),
                    }}
                    <p aria-live="polite" data-testid="step-up-status">
                        {move || match progress.get() {
                            Progress::Idle => String::new(),
                            Progress::Preparing => "Preparing the request…".into(),
                            Progress::WaitingForKey => "Waiting for your security key: insert it and touch it, or use your passkey.".into(),
                            Progress::Verifying => "Checking…".into(),
                            Progress::Done(s) => format!(
                                "Confirmed with your {}. You can repeat your action now; this lasts {} minutes.",
                                method_label(&s.method),
                                s.seconds_left / 60
                            ),
                            Progress::Failed(msg) => msg,
                        }}
                    </p>
                    <p class="text-xs text-amber-800">
                        <A href="/security" attr:class="underline">"Manage security keys and codes"</A>
                    </p>
                </div>
            </div>
        </div>
    }
}

fn method_label(method: &str) -> &'static str {
    match method {
        "security-key" => "security key",
        "totp" => "authenticator app",
        "recovery-code" => "recovery code",
        _ => "second factor",
    }
}

#[component]
pub fn SecurityPage() -> impl IntoView {
    view! {
        <Title text="Security" />
        <PageHeader title="Security" description="Second factors confirm sensitive actions: large orders, changes to your factors and, for admins, every admin action." />
        <RequireRole>
            <Security />
        </RequireRole>
    }
}

#[component]
fn Security() -> impl IntoView {
    // Bumped after every change; reloads the factor list.
    let (changes, set_changes) = signal(0u32);
    let changed = move || set_changes.update(|n| *n += 1);
    let view_state = server_data(move || changes.get(), |_| factors());
    view! {
        <Transition fallback=|| view! { <p class="text-sm text-slate-500">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match view_state.await {
                    Ok(f) => view! { <SecurityPanels f on_change=changed /> }.into_any(),
                    Err(e) => view! { <ErrorNotice error=Signal::stored(Some(e)) /> }.into_any(),
                }
            })}
        </Transition>
    }
}

#[component]
fn SecurityPanels(
    f: FactorsView,
    on_change: impl Fn() + Copy + Send + Sync + 'static,
) -> impl IntoView {
    let window = match (f.window_seconds_left, f.window_method.clone()) {
        (Some(left), Some(method)) => view! {
            <div class="rounded-lg border border-emerald-200 bg-emerald-50 px-4 py-3 text-sm text-emerald-900" data-testid="privilege-window">
                {format!(
                    "Confirmed with your {} — sensitive actions are open for about {} more minute{}.{}",
                    method_label(&method),
                    (left + 59) / 60,
                    if (left + 59) / 60 == 1 { "" } else { "s" },
                    if f.is_admin && !f.window_admin_grade { " Admin actions still need your security key." } else { "" },
                )}
            </div>
        }.into_any(),
        _ => view! {
            <div class="rounded-lg border border-slate-200 bg-white px-4 py-3 text-sm text-slate-600" data-testid="privilege-window">
                {format!(
                    "Your session is read-only for sensitive actions. Confirming with a second factor opens them for {} minutes.",
                    f.window_minutes
                )}
            </div>
        }.into_any(),
    };
    let admin_note = (f.is_admin && !f.keys.iter().any(|k| !k.flagged)).then(|| view! {
        <div class="rounded-lg border border-red-200 bg-red-50 px-4 py-3 text-sm text-red-900" data-testid="admin-key-missing">
            "As an admin you need a security key (with a PIN or fingerprint) for every admin action. Add one below."
        </div>
    });
    view! {
        <div class="space-y-6">
            {window}
            {admin_note}
            <SecurityKeys keys=f.keys.clone() on_change />
            <AuthenticatorApp enabled=f.totp_enabled recovery_left=f.recovery_codes_left on_change />
        </div>
    }
}

const CARD: &str = "rounded-xl border border-slate-200 bg-white p-6 shadow-sm";

#[component]
fn SecurityKeys(
    keys: Vec<SecurityKeyView>,
    on_change: impl Fn() + Copy + Send + Sync + 'static,
) -> impl IntoView {
    let (name, set_name) = signal(String::new());
    let (status, set_status) = signal(None::<String>);
    let (error, set_error) = signal(None::<AppError>);
    let (busy, set_busy) = signal(false);
    let add = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let key_name = name.get_untracked();
        set_error.set(None);
        set_busy.set(true);
        set_status.set(Some("Preparing…".into()));
        leptos::task::spawn_local(async move {
            let result = async {
                let options = key_registration_options().await.map_err(Err)?;
                set_status.set(Some(
                    "Waiting for your security key: insert it and touch it, or confirm with your passkey.".into(),
                ));
                let credential = create_credential(options).await.map_err(|e| Ok(e.message()))?;
                set_status.set(Some("Saving…".into()));
                register_key(key_name, credential).await.map_err(Err)
            }
            .await;
            set_busy.set(false);
            match result {
                Ok(key) => {
                    set_name.set(String::new());
                    set_status.set(Some(format!("Added \u{201c}{}\u{201d}.", key.name)));
                    on_change();
                }
                Err(Ok(message)) => set_status.set(Some(message)),
                Err(Err(e)) => {
                    set_status.set(None);
                    set_error.set(Some(e));
                }
            }
        });
    };
    let rows = if keys.is_empty() {
        view! { <p class="text-sm text-slate-500" data-testid="no-keys">"No security keys yet."</p> }.into_any()
    } else {
        let items = keys
            .into_iter()
            .map(|k| view! { <KeyRow key=k on_change /> })
            .collect_view();
        view! { <ul class="divide-y divide-slate-100" data-testid="security-keys">{items}</ul> }
            .into_any()
    };
    view! {
        <section class=CARD>
            <h2 class="text-lg font-semibold">"Security keys and passkeys"</h2>
            <p class="mt-1 text-sm text-slate-600">"The strongest factor: a key you touch (YubiKey, Titan) or a passkey on your phone or laptop. Register more than one so losing a key does not lock you out."</p>
            <div class="mt-4">{rows}</div>
            <form class="mt-4 flex flex-wrap items-end gap-3" on:submit=add>
                <div class="min-w-64 flex-1">
                    <label class=LABEL_CLASS for="key-name">"Name for the new key"</label>
                    <input id="key-name" name="name" class=INPUT_CLASS maxlength="40" required placeholder="YubiKey on my keyring"
                        prop:value=name on:input=move |ev| set_name.set(event_target_value(&ev)) />
                </div>
                <button type="submit" class=PRIMARY_BUTTON data-testid="add-key" disabled=move || busy.get()>"Add security key"</button>
            </form>
            <p class="mt-2 text-sm text-slate-700" aria-live="polite" data-testid="key-status">{move || status.get()}</p>
            <div class="mt-2"><ErrorNotice error /></div>
        </section>
    }
}

#[component]
fn KeyRow(
    key: SecurityKeyView,
    on_change: impl Fn() + Copy + Send + Sync + 'static,
) -> impl IntoView {
    let (confirming, set_confirming) = signal(false);
    let (error, set_error) = signal(None::<AppError>);
    let id = key.id.clone();
    let remove = move |_| {
        let id = id.clone();
        set_error.set(None);
        leptos::task::spawn_local(async move {
            match remove_key(id).await {
                Ok(()) => on_change(),
                Err(e) => set_error.set(Some(e)),
            }
        });
    };
    let used = key
        .last_used_at
        .as_deref()
        .map(|t| format!("last used {}", short_time(t)))
        .unwrap_or_else(|| "never used".into());
    view! {
        <li class="py-3">
            <div class="flex flex-wrap items-center justify-between gap-3">
                <div>
                    <p class="font-medium">
                        {key.name.clone()}
                        {key.flagged.then(|| view! {
                            <span class="ml-2 rounded-full bg-red-100 px-2 py-0.5 text-xs font-medium text-red-800" title="Its signature counter went backwards, a sign the key may have been cloned.">"Disabled: possible clone"</span>
                        })}
                    </p>
                    <p class="text-xs text-slate-500">{format!("Added {} · {}", short_time(&key.created_at), used)}</p>
                </div>
                {move || if confirming.get() {
                    view! {
                        <div class="flex items-center gap-2">
                            <span class="text-sm text-slate-700">"Remove this key?"</span>
                            <button type="button" class=DANGER_BUTTON on:click=remove.clone()>"Remove"</button>
                            <button type="button" class=SECONDARY_BUTTON on:click=move |_| set_confirming.set(false)>"Keep"</button>
                        </div>
                    }.into_any()
                } else {
                    view! { <button type="button" class=SECONDARY_BUTTON on:click=move |_| set_confirming.set(true)>"Remove…"</button> }.into_any()
                }}
            </div>
            <div class="mt-2"><ErrorNotice error /></div>
        </li>
    }
}

#[component]
fn AuthenticatorApp(
    enabled: bool,
    recovery_left: u32,
    on_change: impl Fn() + Copy + Send + Sync + 'static,
) -> impl IntoView {
    let (setup, set_setup) = signal(None::<TotpSetupView>);
    let (codes, set_codes) = signal(None::<Vec<String>>);
    let (code, set_code) = signal(String::new());
    let (error, set_error) = signal(None::<AppError>);
    let start = move |_| {
        set_error.set(None);
        leptos::task::spawn_local(async move {
            match totp_setup().await {
                Ok(s) => set_setup.set(Some(s)),
                Err(e) => set_error.set(Some(e)),
            }
        });
    };
    let confirm = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let value = code.get_untracked();
        set_error.set(None);
        leptos::task::spawn_local(async move {
            match totp_confirm(value).await {
                Ok(list) => {
                    set_setup.set(None);
                    set_code.set(String::new());
                    set_codes.set(Some(list.0));
                }
                Err(e) => set_error.set(Some(e)),
            }
        });
    };
    let regenerate = move |_| {
        set_error.set(None);
        leptos::task::spawn_local(async move {
            match new_recovery_codes().await {
                Ok(list) => set_codes.set(Some(list.0)),
                Err(e) => set_error.set(Some(e)),
            }
        });
    };
    let remove = move |_| {
        set_error.set(None);
        leptos::task::spawn_local(async move {
            match totp_remove().await {
                Ok(()) => on_change(),
                Err(e) => set_error.set(Some(e)),
            }
        });
    };
    view! {
        <section class=CARD>
            <h2 class="text-lg font-semibold">"Authenticator app"</h2>
            <p class="mt-1 text-sm text-slate-600">"Six-digit codes from an app such as Aegis, 1Password or Google Authenticator. Each code works once. Not accepted for admin actions."</p>
            {move || {
                if let Some(list) = codes.get() {
                    let items = list.into_iter().map(|c| view! { <li class="font-mono">{c}</li> }).collect_view();
                    return view! {
                        <div class="mt-4 rounded-lg border border-indigo-200 bg-indigo-50 p-4" data-testid="recovery-codes">
                            <p class="text-sm font-medium text-indigo-950">"Your recovery codes — shown only now. Store them somewhere safe; each works once if you lose your phone."</p>
                            <ul class="mt-3 grid grid-cols-2 gap-1 text-sm text-indigo-950">{items}</ul>
                            <button type="button" class=format!("{SECONDARY_BUTTON} mt-3") on:click=move |_| { set_codes.set(None); on_change(); }>"I have saved them"</button>
                        </div>
                    }.into_any();
                }
                if let Some(s) = setup.get() {
                    return view! {
                        <div class="mt-4 grid gap-4 md:grid-cols-[auto_1fr]" data-testid="totp-setup">
                            <div class="rounded-lg border border-slate-200 p-2" inner_html=s.qr_svg.clone() aria-label="QR code for your authenticator app"></div>
                            <div class="space-y-3 text-sm">
                                <p>"1. Scan the code with your app, or type this key into it:"</p>
                                <p class="break-all rounded bg-slate-100 px-2 py-1 font-mono" data-testid="totp-secret">{s.secret.clone()}</p>
                                <form class="flex flex-wrap items-end gap-2" on:submit=confirm>
                                    <div>
                                        <label class=LABEL_CLASS for="totp-code">"2. Enter the code the app shows"</label>
                                        <input id="totp-code" name="code" class=INPUT_CLASS inputmode="numeric" autocomplete="one-time-code" placeholder="123456"
                                            prop:value=code on:input=move |ev| set_code.set(event_target_value(&ev)) />
                                    </div>
                                    <button type="submit" class=PRIMARY_BUTTON data-testid="totp-confirm">"Turn on"</button>
                                </form>
                            </div>
                        </div>
                    }.into_any();
                }
                if enabled {
                    view! {
                        <div class="mt-4 flex flex-wrap items-center gap-3">
                            <span class="rounded-full bg-emerald-100 px-2 py-0.5 text-xs font-medium text-emerald-800">"On"</span>
                            <span class="text-sm text-slate-600">{format!("{recovery_left} recovery code{} left", if recovery_left == 1 { "" } else { "s" })}</span>
                            <button type="button" class=SECONDARY_BUTTON on:click=regenerate>"New recovery codes"</button>
                            <button type="button" class=SECONDARY_BUTTON on:click=remove>"Turn off"</button>
                        </div>
                    }.into_any()
                } else {
                    view! {
                        <button type="button" class=format!("{PRIMARY_BUTTON} mt-4") data-testid="totp-start" on:click=start>"Set up an authenticator app"</button>
                    }.into_any()
                }
            }}
            <div class="mt-3"><ErrorNotice error /></div>
        </section>
    }
}
