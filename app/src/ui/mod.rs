//! Pages and the components they share.

pub mod account;
pub mod admin;
pub mod agents;
pub mod audit;
pub mod auth;
pub mod controls;
pub mod keys;
pub mod layout;
pub mod overview;
pub mod pages;
pub mod reports;
pub mod review;
pub mod risk_admin;
pub mod server_data;
pub mod stepup;
pub mod trading;
pub mod vault_admin;
pub mod webauthn;

use leptos::prelude::*;
use leptos_router::components::A;

use crate::api::UserRole;
use crate::error::AppError;
use crate::use_auth;

/// A red box with a server function's error message; when the server asks for a step-up, the
/// panel to give it instead.
#[component]
pub fn ErrorNotice(#[prop(into)] error: Signal<Option<AppError>>) -> impl IntoView {
    move || {
        error.get().map(|e| match e {
            AppError::StepUpRequired(need) => view! { <stepup::StepUpPanel need /> }.into_any(),
            e => view! {
                <div role="alert" class="rounded-md border border-red-200 bg-red-50 px-4 py-3 text-sm text-red-800">
                    {e.to_string()}
                </div>
            }
            .into_any(),
        })
    }
}

/// A page heading with an optional one-line description.
#[component]
pub fn PageHeader(
    #[prop(into)] title: String,
    #[prop(optional, into)] description: Option<String>,
) -> impl IntoView {
    view! {
        <header class="mb-6">
            <h1 class="text-2xl font-semibold tracking-tight text-slate-900">{title}</h1>
            {description.map(|d| view! { <p class="mt-1 text-sm text-slate-600">{d}</p> })}
        </header>
    }
}

/// Renders `children` only for a signed-in user whose role is in `roles` (any role if empty);
/// otherwise explains what is needed.
///
/// The session is read synchronously, so the `Transition` waits for it, and the page is built
/// inside `Unsuspend`, which the server renders once, after the check (as leptos_router's
/// `ProtectedRoute` does). An async `Suspend` here was polled on each of the suspense's passes
/// over its children, so the server built the page two or three times, one of them inside a
/// throwaway effect: those copies' resources took hydration ids and ran on after their owner
/// was dropped ("Services missing from context").
#[component]
pub fn RequireRole(
    #[prop(optional)] roles: &'static [UserRole],
    children: ChildrenFn,
) -> impl IntoView {
    let auth = use_auth();
    view! {
        <Transition fallback=|| view! { <p class="text-sm text-slate-500">"Loading…"</p> }>
            {
                let children = children.clone();
                move || {
                    let session = auth.session();
                    let children = children.clone();
                    Unsuspend::new(move || match session {
                        // Still loading: the transition shows its fallback meanwhile.
                        None => ().into_any(),
                        // Woken after the page's tree was dropped (a client hung up while the
                        // session was loading): the page's components would look for contexts
                        // that are gone, so nothing is built.
                        Some(_) if use_context::<crate::Auth>().is_none() => ().into_any(),
                        Some(Ok(Some(user))) if roles.is_empty() || roles.contains(&user.role) => {
                            children().into_any()
                        }
                        Some(Ok(Some(_))) => {
                            let needed = roles.iter().map(|r| r.label()).collect::<Vec<_>>().join(" or ");
                            view! {
                                <div class="rounded-lg border border-amber-200 bg-amber-50 p-6 text-amber-900">
                                    <h2 class="font-semibold">"Not available for your role"</h2>
                                    <p class="mt-1 text-sm">{format!("This page is for the {needed} role.")}</p>
                                </div>
                            }
                            .into_any()
                        }
                        Some(Ok(None)) => {
                            view! {
                                <div class="rounded-lg border border-slate-200 bg-white p-6">
                                    <h2 class="font-semibold">"Please sign in"</h2>
                                    <p class="mt-1 text-sm text-slate-600">"You need to be signed in to see this page."</p>
                                    <A href="/login" attr:class="mt-4 inline-block rounded-md bg-indigo-600 px-4 py-2 text-sm font-medium text-white hover:bg-indigo-500">
                                        "Sign in"
                                    </A>
                                </div>
                            }
                            .into_any()
                        }
                        Some(Err(e)) => view! { <ErrorNotice error=Signal::stored(Some(e)) /> }.into_any(),
                    })
                }
            }
        </Transition>
    }
}

pub const INPUT_CLASS: &str = "block w-full rounded-md border border-slate-300 bg-white px-3 py-2 text-sm shadow-sm placeholder:text-slate-400 focus:border-indigo-500 focus:outline-none focus:ring-2 focus:ring-indigo-500/30";
pub const LABEL_CLASS: &str = "block text-sm font-medium text-slate-700 mb-1";
pub const PRIMARY_BUTTON: &str = "inline-flex items-center justify-center rounded-md bg-indigo-600 px-4 py-2 text-sm font-semibold text-white shadow-sm hover:bg-indigo-500 focus:outline-none focus-visible:ring-2 focus-visible:ring-indigo-500 focus-visible:ring-offset-2 disabled:cursor-wait disabled:opacity-60";
pub const SECONDARY_BUTTON: &str = "inline-flex items-center justify-center rounded-md border border-slate-300 bg-white px-4 py-2 text-sm font-medium text-slate-700 shadow-sm hover:bg-slate-50 focus:outline-none focus-visible:ring-2 focus-visible:ring-indigo-500 disabled:opacity-60";
pub const DANGER_BUTTON: &str = "inline-flex items-center justify-center rounded-md bg-red-600 px-4 py-2 text-sm font-semibold text-white shadow-sm hover:bg-red-500 focus:outline-none focus-visible:ring-2 focus-visible:ring-red-500 focus-visible:ring-offset-2 disabled:opacity-60";
