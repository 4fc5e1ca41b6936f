//! The trading banner.

use crate::ui::server_data::server_data;
use domain::risk::TradingState;
use leptos::prelude::*;

use crate::api::trading::{TradingStatusView, trading_status};

/// The banner on every page: kill switch, quarantine, paused exchanges.
#[component]
pub fn TradingBanner() -> impl IntoView {
    let auth = crate::use_auth();
    let status = server_data(
        move || auth.session().map(|u| u.ok().flatten().map(|u| u.id)),
        |_| trading_status(),
    );
    view! {
        <Transition fallback=|| ()>
            {move || status.get().and_then(Result::ok).flatten().map(|s| view! { <BannerLines status=s /> })}
        </Transition>
    }
}

#[component]
fn BannerLines(status: TradingStatusView) -> impl IntoView {
    let mut lines: Vec<(&'static str, String)> = Vec::new();
    if status.global_kill {
        lines.push((
            "bg-red-700",
            "Kill switch on: all trading is stopped by an administrator. You can still cancel orders.".into(),
        ));
    }
    if status.user_kill {
        lines.push((
            "bg-red-700",
            "Your trading is stopped by an administrator. You can still cancel orders.".into(),
        ));
    }
    match status.state {
        TradingState::Active => {}
        TradingState::Reducing => lines.push((
            "bg-amber-600",
            format!(
                "Your account is quarantined (reducing only): new buys are refused and agent trading is paused while a reviewer looks at {} open case(s).",
                status.open_cases
            ),
        )),
        TradingState::Halted => lines.push((
            "bg-red-700",
            "Your account is halted: only cancels are allowed until a reviewer releases it.".into(),
        )),
    }
    if status.state == TradingState::Active && status.open_cases > 0 {
        lines.push((
            "bg-amber-600",
            format!(
                "{} order(s) of yours are held for review.",
                status.open_cases
            ),
        ));
    }
    for venue in &status.paused {
        lines.push((
            "bg-slate-700",
            format!("Trading on {venue} is paused after an outage; orders are held and sent automatically when it is back."),
        ));
    }
    lines
        .into_iter()
        .map(|(color, text)| {
            view! {
                <div role="status" data-testid="trading-banner" class=format!("{color} text-white")>
                    <div class="mx-auto max-w-6xl px-4 py-2 text-sm font-medium">{text}</div>
                </div>
            }
        })
        .collect_view()
}
