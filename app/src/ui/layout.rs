//! The frame around every page: header with role-aware navigation, content, footer.

use leptos::prelude::*;
use leptos_router::components::A;

use crate::api::UserRole;
use crate::use_auth;

const NAV_LINK: &str = "whitespace-nowrap rounded-md px-2.5 py-2 text-sm font-medium text-slate-300 hover:bg-slate-800 hover:text-white aria-[current=page]:bg-slate-800 aria-[current=page]:text-white";

/// Navigation entries and who sees them; later pages slot in here.
const NAV: &[(&str, &str, &[UserRole])] = &[
    ("/", "Overview", &[]),
    ("/trade", "Trade", &[]),
    ("/orders", "Orders", &[]),
    ("/agents", "Agents", &[]),
    ("/keys", "Keys", &[]),
    ("/review", "Review", &[UserRole::Reviewer, UserRole::Admin]),
    (
        "/audit",
        "Audit log",
        &[UserRole::Reviewer, UserRole::Admin],
    ),
    (
        "/reports",
        "Reports",
        &[UserRole::Reviewer, UserRole::Admin],
    ),
    ("/admin/users", "Users", &[UserRole::Admin]),
    ("/admin/vault", "Vault & alerts", &[UserRole::Admin]),
    ("/admin/risk", "Risk", &[UserRole::Admin]),
    ("/security", "Security", &[]),
    ("/account", "Account", &[]),
];

#[component]
pub fn Layout(children: Children) -> impl IntoView {
    let auth = use_auth();
    // Effects run only in the browser: this flips once hydration is done (tests wait for it).
    let (hydrated, set_hydrated) = signal(false);
    // Set one frame later: suspended content resolves in microtasks after this effect, and all of
    // them run before the next frame, so the marker means every handler is attached.
    Effect::new(move |_| request_animation_frame(move || set_hydrated.set(true)));
    view! {
        <div class="flex min-h-full flex-col" data-hydrated=move || hydrated.get().to_string()>
            <a href="#main" class="sr-only focus:not-sr-only focus:absolute focus:left-2 focus:top-2 focus:rounded focus:bg-white focus:px-3 focus:py-2">
                "Skip to content"
            </a>
            // Two rows: the brand and the user's menu, then the navigation, which wraps rather
            // than pushing "Sign out" off screen for an admin's dozen pages.
            <header class="bg-slate-900">
                <div class="mx-auto flex max-w-7xl items-center justify-between gap-4 px-4 py-3">
                    <A href="/" attr:class="flex items-center gap-2 text-white">
                        <span aria-hidden="true" class="grid h-8 w-8 place-items-center rounded-md bg-indigo-500 font-bold">"P"</span>
                        <span class="text-lg font-semibold tracking-tight">"CryptoPulse"</span>
                    </A>
                    <Transition fallback=|| ()>{move || view! { <UserMenu user=auth.current() log_out=auth.log_out /> }}</Transition>
                </div>
                <Transition fallback=|| ()>
                    {move || {
                        let user = auth.current();
                        let role = user.as_ref().map(|u| u.role);
                        let links = NAV
                            .iter()
                            .filter(|(_, _, roles)| {
                                roles.is_empty() || role.is_some_and(|r| roles.contains(&r))
                            })
                            .map(|(href, label, _)| view! { <A href=*href attr:class=NAV_LINK>{*label}</A> })
                            .collect_view();
                        user.is_some().then(|| view! {
                            <div class="border-t border-slate-800">
                                <nav aria-label="Main" class="mx-auto flex max-w-7xl flex-wrap items-center gap-1 px-4 py-1.5">{links}</nav>
                            </div>
                        })
                    }}
                </Transition>
            </header>
            <super::trading::TradingBanner />
            <main id="main" class="mx-auto w-full max-w-6xl flex-1 px-4 py-8">{children()}</main>
            <footer class="border-t border-slate-200 bg-white">
                <div class="mx-auto max-w-6xl px-4 py-4 text-xs text-slate-500">
                    "CryptoPulse · every action is recorded in a tamper-evident audit log. "
                    <A href="/controls" attr:class="underline hover:text-slate-700">"Control map"</A>
                </div>
            </footer>
        </div>
    }
}

#[component]
/// Built in a closure the session wakes, which can run after a page's tree is gone (a client
/// hung up while the session was loading): so it is handed what it needs rather than looking
/// it up in a context that may no longer be there.
fn UserMenu(
    user: Option<crate::api::SessionUser>,
    log_out: ServerAction<crate::api::auth::LogOut>,
) -> impl IntoView {
    match user {
        Some(user) => view! {
            <div class="flex items-center gap-3">
                <div class="hidden text-right sm:block">
                    <div class="text-sm text-white" data-testid="signed-in-email">{user.email.clone()}</div>
                    <div class="text-xs text-slate-400">{user.role.label()}</div>
                </div>
                <ActionForm action=log_out>
                    <button type="submit" class="whitespace-nowrap rounded-md border border-slate-600 px-3 py-1.5 text-sm text-slate-200 hover:bg-slate-800">
                        "Sign out"
                    </button>
                </ActionForm>
            </div>
        }
        .into_any(),
        None => view! {
            <div class="flex items-center gap-2">
                <A href="/login" attr:class=NAV_LINK>"Sign in"</A>
                <A href="/signup" attr:class="rounded-md bg-indigo-500 px-3 py-2 text-sm font-medium text-white hover:bg-indigo-400">
                    "Create account"
                </A>
            </div>
        }
        .into_any(),
    }
}
