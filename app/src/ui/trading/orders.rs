//! The order table (cancel, approve a released order with a security key) and the Orders page.

use crate::ui::server_data::{ServerData, server_data};
use leptos::prelude::*;
use leptos_meta::Title;

use super::portfolio::FillsAndPositions;
use super::{CARD, TD, TH, money, status_badge};
use crate::api::stepup::{approve_order, order_approval_options};
use crate::api::trading::{
    OrderView, PortfolioView, approve_held_order, cancel_order, list_orders, portfolio,
};
use crate::error::AppError;
use crate::ui::keys::short_time;
use crate::ui::webauthn::get_assertion;
use crate::ui::{ErrorNotice, PageHeader, RequireRole, SECONDARY_BUTTON};

#[component]
pub(crate) fn OrderTable(
    orders: Vec<OrderView>,
    on_change: impl Fn() + Copy + Send + Sync + 'static,
) -> impl IntoView {
    let (error, set_error) = signal(None::<AppError>);
    if orders.is_empty() {
        return view! { <p class="px-4 py-4 text-sm text-slate-500" data-testid="no-orders">"No orders yet."</p> }.into_any();
    }
    let cancel = move |id: String| {
        leptos::task::spawn_local(async move {
            match cancel_order(id).await {
                Ok(_) => {
                    set_error.set(None);
                    on_change();
                }
                Err(e) => set_error.set(Some(e)),
            }
        });
    };
    // A released order that still needs its owner's step-up: approve exactly that order (its
    // venue, type and terms are the WebAuthn challenge), then it is sent.
    let approve_held = move |o: OrderView| {
        leptos::task::spawn_local(async move {
            let options = match order_approval_options(
                o.venue_id.clone(),
                o.order_type.clone(),
                o.symbol.clone(),
                o.side.clone(),
                o.quantity.clone(),
                o.reference_price.clone(),
            )
            .await
            {
                Ok(options) => options,
                Err(e) => return set_error.set(Some(e)),
            };
            let Some(request) = options.webauthn.clone() else {
                return set_error.set(Some(AppError::Invalid(
                    "Approving a held order needs a security key: add one on the Security page."
                        .into(),
                )));
            };
            let assertion = match get_assertion(request).await {
                Ok(a) => a,
                Err(e) => return set_error.set(Some(AppError::Invalid(e.message()))),
            };
            let approved = approve_order(
                o.venue_id,
                o.order_type,
                o.symbol,
                o.side,
                o.quantity,
                o.reference_price,
                "security-key".into(),
                assertion,
            )
            .await;
            if let Err(e) = approved {
                return set_error.set(Some(e));
            }
            match approve_held_order(o.id, options.nonce).await {
                Ok(_) => {
                    set_error.set(None);
                    on_change();
                }
                Err(e) => set_error.set(Some(e)),
            }
        });
    };
    view! {
        <div class="px-4 pt-3 empty:hidden"><ErrorNotice error=error /></div>
        <div class="overflow-x-auto">
            <table class="min-w-full divide-y divide-slate-200" data-testid="orders">
                <thead class="bg-slate-50"><tr>
                    <th class=TH>"Order"</th><th class=TH>"Notional"</th><th class=TH>"Status"</th><th class=TH>"Why"</th><th class=TH></th>
                </tr></thead>
                <tbody class="divide-y divide-slate-100">
                    {orders.into_iter().map(|o| {
                        let id = o.id.clone();
                        let held_for_approval = o.awaiting_approval.then(|| o.clone());
                        let why = o.status_reason.clone().unwrap_or_else(|| {
                            o.hits.iter().map(|h| h.message.clone()).collect::<Vec<_>>().join(" ")
                        });
                        let score = o.score.map(|s| format!("anomaly score {s:.2}"));
                        view! { <tr data-testid="order-row" data-status=o.status.clone()>
                            <td class=TD>
                                <span class=if o.side == "buy" { "font-medium text-emerald-700" } else { "font-medium text-red-700" }>{o.side.to_uppercase()}</span>
                                {format!(" {} {} · {}", o.quantity, o.symbol, o.order_type)}
                                {o.limit_price.map(|l| format!(" @ {}", money(&l)))}
                                <div class="text-xs text-slate-500">{short_time(&o.created_at)}" · "{o.venue.clone()}{(o.source != "ticket").then(|| format!(" · via {}", o.source))}</div>
                            </td>
                            <td class=format!("{TD} tabular-nums")>{money(&o.notional)}</td>
                            <td class=TD><span class=format!("rounded-full px-2 py-0.5 text-xs font-medium {}", status_badge(&o.status))>{o.status.clone()}</span></td>
                            <td class="max-w-xs px-4 py-2 text-xs text-slate-600">
                                {why}
                                {score.map(|s| view! { <div class="text-slate-400">{s}</div> })}
                            </td>
                            <td class=TD>
                                {held_for_approval.map(|order| view! {
                                    <button type="button" class="mr-3 text-sm font-medium text-indigo-700 hover:underline" data-testid="approve-held" on:click=move |_| approve_held(order.clone())>"Approve with security key"</button>
                                })}
                                {o.can_cancel.then(|| view! {
                                    <button type="button" class="text-sm text-red-700 hover:underline" on:click=move |_| cancel(id.clone())>"Cancel"</button>
                                })}
                            </td>
                        </tr> }
                    }).collect_view()}
                </tbody>
            </table>
        </div>
    }
    .into_any()
}

#[component]
pub fn OrdersPage() -> impl IntoView {
    // Before the role check, as on the Trade page.
    let (refresh, set_refresh) = signal(0u32);
    let orders = server_data(move || refresh.get(), |_| list_orders());
    let book = server_data(move || refresh.get(), |_| portfolio());
    view! {
        <Title text="Orders" />
        <PageHeader title="Orders and fills" description="Each order keeps the decision taken on it and why. Held orders are sent automatically once their exchange is back, exactly once." />
        <RequireRole>
            <OrdersAndFills orders book set_refresh />
        </RequireRole>
    }
}

#[component]
fn OrdersAndFills(
    orders: ServerData<Result<Vec<OrderView>, AppError>>,
    book: ServerData<Result<PortfolioView, AppError>>,
    set_refresh: WriteSignal<u32>,
) -> impl IntoView {
    view! {
        <div class="space-y-6">
            <section class=CARD>
                <div class="flex items-center justify-between border-b border-slate-200 px-4 py-3">
                    <h2 class="font-semibold">"Orders"</h2>
                    <button type="button" class=SECONDARY_BUTTON on:click=move |_| set_refresh.update(|n| *n += 1)>"Refresh"</button>
                </div>
                <Transition fallback=|| ()>
                    {move || orders.get().map(|o| match o {
                        Ok(o) => view! { <OrderTable orders=o on_change=move || set_refresh.update(|n| *n += 1) /> }.into_any(),
                        Err(e) => view! { <div class="p-4"><ErrorNotice error=Signal::stored(Some(e)) /></div> }.into_any(),
                    })}
                </Transition>
            </section>
            <Transition fallback=|| ()>
                {move || book.get().map(|b| match b {
                    Ok(b) => view! { <FillsAndPositions book=b /> }.into_any(),
                    Err(e) => view! { <ErrorNotice error=Signal::stored(Some(e)) /> }.into_any(),
                })}
            </Transition>
        </div>
    }
}
