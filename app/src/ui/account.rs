//! The signed-in user's account and sessions.

use leptos::prelude::*;
use leptos_meta::Title;

use super::{
    DANGER_BUTTON, ErrorNotice, INPUT_CLASS, LABEL_CLASS, PageHeader, RequireRole, SECONDARY_BUTTON,
};
use crate::use_auth;

#[component]
pub fn AccountPage() -> impl IntoView {
    view! {
        <Title text="Account" />
        <PageHeader title="Account" description="Your identity, role, password and sessions." />
        <RequireRole>
            <AccountDetails />
        </RequireRole>
    }
}

#[component]
fn AccountDetails() -> impl IntoView {
    let auth = use_auth();
    let user = auth.current();
    let everywhere = auth.log_out_everywhere;
    let error = Signal::derive(move || everywhere.value().get().and_then(Result::err));
    view! {
        <div class="grid gap-6 md:grid-cols-2">
            <section class="rounded-xl border border-slate-200 bg-white p-6 shadow-sm">
                <h2 class="font-semibold">"Profile"</h2>
                <dl class="mt-4 space-y-3 text-sm">
                    <div class="flex justify-between gap-4">
                        <dt class="text-slate-500">"Email"</dt>
                        <dd class="font-medium">{user.as_ref().map(|u| u.email.clone())}</dd>
                    </div>
                    <div class="flex justify-between gap-4">
                        <dt class="text-slate-500">"Role"</dt>
                        <dd class="font-medium">{user.as_ref().map(|u| u.role.label())}</dd>
                    </div>
                </dl>
            </section>
            <section class="rounded-xl border border-slate-200 bg-white p-6 shadow-sm">
                <h2 class="font-semibold">"Sessions"</h2>
                <p class="mt-1 text-sm text-slate-600">
                    "Sessions end after a period without activity and a fixed time after sign-in. If you signed in on a device you no longer control, end every session at once."
                </p>
                <div class="mt-4 flex flex-wrap gap-3">
                    <ActionForm action=auth.log_out>
                        <button type="submit" class=SECONDARY_BUTTON>"Sign out here"</button>
                    </ActionForm>
                    <ActionForm action=everywhere>
                        <label class="mb-2 flex items-center gap-2 text-sm text-slate-700">
                            <input type="checkbox" name="revoke_agent_tokens" value="true" checked data-testid="revoke-agent-tokens" />
                            "Also revoke my agent tokens (bots must get new ones)"
                        </label>
                        <button type="submit" class=DANGER_BUTTON disabled=move || everywhere.pending().get()>
                            "Sign out everywhere"
                        </button>
                    </ActionForm>
                </div>
                <div class="mt-3"><ErrorNotice error /></div>
            </section>
            <PasswordChange />
        </div>
    }
}

/// Changing the password ends every session, this one included.
#[component]
fn PasswordChange() -> impl IntoView {
    let change = use_auth().change_password;
    let error = Signal::derive(move || change.value().get().and_then(Result::err));
    view! {
        <section class="rounded-xl border border-slate-200 bg-white p-6 shadow-sm" data-testid="password-change">
            <h2 class="font-semibold">"Password"</h2>
            <p class="mt-1 text-sm text-slate-600">
                "Changing it signs you out everywhere, this browser included. With a security key or an authenticator app on the account, confirm with it first."
            </p>
            <ActionForm action=change attr:class="mt-4 space-y-3">
                <div>
                    <label class=LABEL_CLASS for="current-password">"Current password"</label>
                    <input id="current-password" name="current_password" type="password" required autocomplete="current-password" maxlength="128" class=INPUT_CLASS />
                </div>
                <div>
                    <label class=LABEL_CLASS for="new-password">"New password"</label>
                    <input id="new-password" name="new_password" type="password" required autocomplete="new-password" minlength="12" maxlength="128" class=INPUT_CLASS />
                </div>
                <label class="flex items-center gap-2 text-sm text-slate-700">
                    <input type="checkbox" name="revoke_agent_tokens" value="true" checked data-testid="password-revokes-agent-tokens" />
                    "Also revoke my agent tokens (bots must get new ones)"
                </label>
                <ErrorNotice error />
                <button type="submit" class=SECONDARY_BUTTON disabled=move || change.pending().get()>"Change password"</button>
            </ActionForm>
        </section>
    }
}
