//! Sign-in and sign-up pages.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::components::A;

use super::{ErrorNotice, INPUT_CLASS, LABEL_CLASS, PRIMARY_BUTTON};
use crate::use_auth;

#[component]
fn AuthCard(title: &'static str, subtitle: &'static str, children: Children) -> impl IntoView {
    view! {
        <Title text=title />
        <div class="mx-auto max-w-md">
            <div class="rounded-xl border border-slate-200 bg-white p-8 shadow-sm">
                <h1 class="text-xl font-semibold tracking-tight">{title}</h1>
                <p class="mt-1 mb-6 text-sm text-slate-600">{subtitle}</p>
                {children()}
            </div>
        </div>
    }
}

#[component]
pub fn LoginPage() -> impl IntoView {
    let action = use_auth().log_in;
    let error = Signal::derive(move || action.value().get().and_then(Result::err));
    view! {
        <AuthCard title="Sign in" subtitle="Welcome back. Sign in to your CryptoPulse console.">
            <ActionForm action=action attr:class="space-y-4">
                <div>
                    <label for="email" class=LABEL_CLASS>"Email"</label>
                    <input id="email" name="email" type="email" autocomplete="username" required class=INPUT_CLASS />
                </div>
                <div>
                    <label for="password" class=LABEL_CLASS>"Password"</label>
                    <input id="password" name="password" type="password" autocomplete="current-password" required class=INPUT_CLASS />
                </div>
                <ErrorNotice error />
                <button type="submit" class=format!("{PRIMARY_BUTTON} w-full") disabled=move || action.pending().get()>
                    {move || if action.pending().get() { "Signing in…" } else { "Sign in" }}
                </button>
            </ActionForm>
            <p class="mt-6 text-center text-sm text-slate-600">
                "New here? " <A href="/signup" attr:class="font-medium text-indigo-600 hover:text-indigo-500">"Create an account"</A>
            </p>
        </AuthCard>
    }
}

#[component]
pub fn SignupPage() -> impl IntoView {
    let action = use_auth().sign_up;
    let error = Signal::derive(move || action.value().get().and_then(Result::err));
    let (password, set_password) = signal(String::new());
    let (confirm, set_confirm) = signal(String::new());
    // The same rule the server enforces; shown live so nobody submits a doomed form.
    let long_enough = move || (12..=128).contains(&password.get().chars().count());
    let matches = move || !password.get().is_empty() && password.get() == confirm.get();
    let check = |met: bool| {
        if met {
            "text-emerald-700"
        } else {
            "text-slate-500"
        }
    };
    view! {
        <AuthCard title="Create your account" subtitle="Traders start here. Reviewer and admin roles are granted by an admin.">
            <ActionForm action=action attr:class="space-y-4">
                <div>
                    <label for="email" class=LABEL_CLASS>"Email"</label>
                    <input id="email" name="email" type="email" autocomplete="email" required class=INPUT_CLASS />
                </div>
                <div>
                    <label for="password" class=LABEL_CLASS>"Password"</label>
                    <input id="password" name="password" type="password" autocomplete="new-password" required
                        minlength="12" maxlength="128" class=INPUT_CLASS
                        on:input=move |ev| set_password.set(event_target_value(&ev)) />
                </div>
                <div>
                    <label for="password_confirm" class=LABEL_CLASS>"Repeat password"</label>
                    <input id="password_confirm" name="password_confirm" type="password" autocomplete="new-password" required
                        class=INPUT_CLASS on:input=move |ev| set_confirm.set(event_target_value(&ev)) />
                </div>
                <ul class="space-y-1 text-sm" aria-live="polite" data-testid="password-checks">
                    <li data-testid="check-length" data-met=move || long_enough().to_string() class=move || check(long_enough())>
                        {move || if long_enough() { "✓" } else { "○" }} " 12 to 128 characters"
                    </li>
                    <li data-testid="check-match" data-met=move || matches().to_string() class=move || check(matches())>
                        {move || if matches() { "✓" } else { "○" }} " Both passwords match"
                    </li>
                </ul>
                <ErrorNotice error />
                <button type="submit" class=format!("{PRIMARY_BUTTON} w-full") disabled=move || action.pending().get()>
                    {move || if action.pending().get() { "Creating account…" } else { "Create account" }}
                </button>
            </ActionForm>
            <p class="mt-6 text-center text-sm text-slate-600">
                "Already have an account? " <A href="/login" attr:class="font-medium text-indigo-600 hover:text-indigo-500">"Sign in"</A>
            </p>
        </AuthCard>
    }
}
