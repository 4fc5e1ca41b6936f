//! CryptoPulse's Leptos application: pages, components and server functions, shared by the
//! server (SSR, feature `ssr`) and the browser (hydration, feature `hydrate`).
// Leptos views are deeply nested types; SSR of the larger pages needs more than the default.
#![recursion_limit = "256"]

pub mod api;
pub mod controls;
pub mod error;
pub mod ui;

use leptos::prelude::*;
use leptos_meta::{HashedStylesheet, MetaTags, Title, provide_meta_context};
use leptos_router::components::{Route, Router, Routes};
use leptos_router::path;
use ui::server_data::{ServerData, server_data};

use api::SessionUser;
use api::auth::{ChangePassword, LogIn, LogOut, LogOutEverywhere, SignUp, who_am_i};
use error::AppError;

/// The HTML document around the app, rendered on the server.
pub fn shell(options: LeptosOptions) -> impl IntoView {
    view! {
        <!DOCTYPE html>
        <html lang="en" class="h-full bg-slate-50">
            <head>
                <meta charset="utf-8" />
                <meta name="viewport" content="width=device-width, initial-scale=1" />
                <meta name="color-scheme" content="light" />
                <AutoReload options=options.clone() />
                // Names the stylesheet with its content hash (hash-files), like the scripts.
                <HashedStylesheet options=options.clone() id="leptos" />
                <HydrationScripts options />
                <MetaTags />
            </head>
            <body class="h-full text-slate-900 antialiased">
                <App />
            </body>
        </html>
    }
}

/// The app's routes for the server's router, worked out once per process.
///
/// Working them out renders the app with resource loading switched off for the whole process
/// (leptos_server's `SuppressResourceLoad` is a global flag): a page rendering at that moment
/// gets resources that never load, and its response never ends (leptos-rs/leptos#4773). The
/// API tests build one server per test in one process, so pages stalled now and then while
/// another test started. Done once, before the first router exists, nothing renders meanwhile.
#[cfg(feature = "ssr")]
pub fn route_list() -> Vec<leptos_axum::AxumRouteListing> {
    static ROUTES: std::sync::OnceLock<Vec<leptos_axum::AxumRouteListing>> =
        std::sync::OnceLock::new();
    ROUTES
        .get_or_init(|| leptos_axum::generate_route_list(App))
        .clone()
}

/// The session as the UI knows it, plus the actions that change it.
#[derive(Clone, Copy)]
pub struct Auth {
    pub user: ServerData<Result<Option<SessionUser>, AppError>>,
    pub sign_up: ServerAction<SignUp>,
    pub log_in: ServerAction<LogIn>,
    pub log_out: ServerAction<LogOut>,
    pub log_out_everywhere: ServerAction<LogOutEverywhere>,
    /// Ends every session too, so the session is read again after it.
    pub change_password: ServerAction<ChangePassword>,
}

impl Auth {
    /// The session as loaded so far: `None` while loading, and also once the app's root has
    /// been disposed. On the server that happens when a response is dropped mid-render (a
    /// failed session save replaces it with a 503) while a page's resource still completes
    /// and wakes the closures that read this one: `get` would panic there.
    pub fn session(&self) -> Option<Result<Option<SessionUser>, AppError>> {
        self.user.try_get().flatten()
    }

    /// The signed-in user once known (`None` while loading or when signed out).
    pub fn current(&self) -> Option<SessionUser> {
        self.session().and_then(Result::ok).flatten()
    }
}

pub fn use_auth() -> Auth {
    expect_context::<Auth>()
}

#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    let sign_up = ServerAction::<SignUp>::new();
    let log_in = ServerAction::<LogIn>::new();
    let log_out = ServerAction::<LogOut>::new();
    let log_out_everywhere = ServerAction::<LogOutEverywhere>::new();
    let change_password = ServerAction::<ChangePassword>::new();
    let user = server_data(
        move || {
            (
                sign_up.version().get(),
                log_in.version().get(),
                log_out.version().get(),
                log_out_everywhere.version().get(),
                change_password.version().get(),
            )
        },
        |_| who_am_i(),
    );
    provide_context(Auth {
        user,
        sign_up,
        log_in,
        log_out,
        log_out_everywhere,
        change_password,
    });

    view! {
        <Title formatter=|page: String| if page.is_empty() { "CryptoPulse".to_owned() } else { format!("{page} · CryptoPulse") } />
        <Router>
            <ui::layout::Layout>
                <Routes fallback=ui::pages::NotFound>
                    <Route path=path!("/") view=ui::pages::Home />
                    <Route path=path!("/login") view=ui::auth::LoginPage />
                    <Route path=path!("/signup") view=ui::auth::SignupPage />
                    <Route path=path!("/account") view=ui::account::AccountPage />
                    <Route path=path!("/audit") view=ui::audit::AuditPage />
                    <Route path=path!("/audit/event/:seq") view=ui::audit::AuditEventPage />
                    <Route path=path!("/reports") view=ui::reports::ReportsPage />
                    <Route path=path!("/admin/users") view=ui::admin::UsersPage />
                    <Route path=path!("/keys") view=ui::keys::KeysPage />
                    <Route path=path!("/security") view=ui::stepup::SecurityPage />
                    <Route path=path!("/admin/vault") view=ui::vault_admin::VaultAdminPage />
                    <Route path=path!("/trade") view=ui::trading::TradePage />
                    <Route path=path!("/orders") view=ui::trading::OrdersPage />
                    <Route path=path!("/agents") view=ui::agents::AgentsPage />
                    <Route path=path!("/review") view=ui::review::ReviewPage />
                    <Route path=path!("/admin/risk") view=ui::risk_admin::RiskAdminPage />
                    <Route path=path!("/controls") view=ui::controls::ControlsPage />
                </Routes>
            </ui::layout::Layout>
        </Router>
    }
}
