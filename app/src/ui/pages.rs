//! The overview (the role's cards, then quick links) and the not-found page.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::components::A;

use super::PRIMARY_BUTTON;
use super::overview::RoleCards;
use crate::api::{SessionUser, UserRole};
use crate::use_auth;

#[component]
pub fn Home() -> impl IntoView {
    let auth = use_auth();
    view! {
        <Title text="" />
        <Transition fallback=|| view! { <p class="text-sm text-slate-500">"Loading…"</p> }>
            {move || {
                let session = auth.session();
                // Built once, after the session is known (see `RequireRole`): the role cards
                // start resources, which must not be started by a throwaway pass.
                Unsuspend::new(move || match session {
                    None => ().into_any(),
                    Some(Ok(Some(user))) => view! { <Overview user /> }.into_any(),
                    Some(_) => view! { <Welcome /> }.into_any(),
                })
            }}
        </Transition>
    }
}

#[component]
fn Welcome() -> impl IntoView {
    view! {
        <section class="rounded-2xl bg-gradient-to-br from-slate-900 to-indigo-900 px-8 py-14 text-white shadow">
            <p class="text-sm font-medium uppercase tracking-wider text-indigo-300">"Security & compliance console"</p>
            <h1 class="mt-2 max-w-2xl text-3xl font-semibold tracking-tight sm:text-4xl">
                "Trade with keys you control and evidence regulators can verify."
            </h1>
            <p class="mt-4 max-w-2xl text-slate-300">
                "CryptoPulse guards exchange keys, screens every trade and records every action in a hash-chained audit log."
            </p>
            <div class="mt-8 flex flex-wrap gap-3">
                <A href="/signup" attr:class=PRIMARY_BUTTON>"Create an account"</A>
                <A href="/login" attr:class="inline-flex items-center rounded-md border border-white/30 px-4 py-2 text-sm font-medium text-white hover:bg-white/10">
                    "Sign in"
                </A>
            </div>
        </section>
    }
}

struct Tile {
    href: &'static str,
    title: &'static str,
    text: &'static str,
    roles: &'static [UserRole],
}

const TILES: &[Tile] = &[
    Tile {
        href: "/account",
        title: "Account & sessions",
        text: "See your role and end sessions on other devices.",
        roles: &[],
    },
    Tile {
        href: "/audit",
        title: "Audit log",
        text: "Browse recorded events and verify the hash chain end to end.",
        roles: &[UserRole::Reviewer, UserRole::Admin],
    },
    Tile {
        href: "/controls",
        title: "Control map",
        text: "SOC 2, MiFID II and GDPR controls, the features that meet them and the tests that prove it.",
        roles: &[],
    },
    Tile {
        href: "/admin/users",
        title: "Users & roles",
        text: "Grant reviewer and admin roles.",
        roles: &[UserRole::Admin],
    },
];

#[component]
fn Overview(user: SessionUser) -> impl IntoView {
    let tiles = TILES
        .iter()
        .filter(|t| t.roles.is_empty() || t.roles.contains(&user.role))
        .map(|t| {
            view! {
                <A href=t.href attr:class="group block rounded-xl border border-slate-200 bg-white p-6 shadow-sm transition hover:border-indigo-300 hover:shadow">
                    <h2 class="font-semibold text-slate-900 group-hover:text-indigo-700">{t.title}</h2>
                    <p class="mt-1 text-sm text-slate-600">{t.text}</p>
                </A>
            }
        })
        .collect_view();
    view! {
        <header class="mb-6">
            <h1 class="text-2xl font-semibold tracking-tight">"Overview"</h1>
            <p class="mt-1 text-sm text-slate-600">
                "Signed in as " <span class="font-medium text-slate-900">{user.email.clone()}</span> " · " {user.role.label()}
            </p>
        </header>
        <RoleCards role=user.role />
        <h2 class="mb-3 mt-8 text-sm font-semibold uppercase tracking-wide text-slate-500">"Quick links"</h2>
        <div class="grid gap-4 sm:grid-cols-2 lg:grid-cols-3" data-testid="quick-links">{tiles}</div>
    }
}

#[component]
pub fn NotFound() -> impl IntoView {
    #[cfg(feature = "ssr")]
    if let Some(response) = use_context::<leptos_axum::ResponseOptions>() {
        response.set_status(http::StatusCode::NOT_FOUND);
    }
    view! {
        <Title text="Not found" />
        <div class="mx-auto max-w-md rounded-xl border border-slate-200 bg-white p-8 text-center shadow-sm">
            <h1 class="text-xl font-semibold">"Page not found"</h1>
            <p class="mt-2 text-sm text-slate-600">"There is nothing at this address."</p>
            <A href="/" attr:class=format!("{PRIMARY_BUTTON} mt-6")>"Back to the overview"</A>
        </div>
    }
}
