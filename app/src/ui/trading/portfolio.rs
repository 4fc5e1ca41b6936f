//! The paper account's cash and positions, and the fills behind them.

use leptos::prelude::*;

use super::{CARD, TD, TH, money};
use crate::api::trading::{PortfolioView, PositionView};
use crate::ui::keys::short_time;

#[component]
pub(super) fn Positions(cash: String, positions: Vec<PositionView>) -> impl IntoView {
    view! {
        <section class=CARD data-testid="positions">
            <div class="flex items-center justify-between border-b border-slate-200 px-4 py-3">
                <h2 class="font-semibold">"Paper account"</h2>
                <span class="text-sm text-slate-600">"Cash "<span class="font-medium tabular-nums">{money(&cash)}" USDT"</span></span>
            </div>
            {if positions.is_empty() {
                view! { <p class="px-4 py-4 text-sm text-slate-500">"No positions yet."</p> }.into_any()
            } else {
                view! {
                    <table class="min-w-full divide-y divide-slate-200">
                        <thead class="bg-slate-50"><tr>
                            <th class=TH>"Symbol"</th><th class=TH>"Quantity"</th><th class=TH>"Avg cost"</th><th class=TH>"Price"</th><th class=TH>"Value"</th><th class=TH>"Unrealised P&L"</th>
                        </tr></thead>
                        <tbody class="divide-y divide-slate-100">
                            {positions.into_iter().map(|p| {
                                let pnl = p.unrealized_pnl.clone().unwrap_or_default();
                                let pnl_class = if pnl.starts_with('-') { "text-red-700" } else { "text-emerald-700" };
                                view! { <tr>
                                    <td class=TD>{p.symbol}</td>
                                    <td class=format!("{TD} tabular-nums")>{p.quantity}</td>
                                    <td class=format!("{TD} tabular-nums")>{money(&p.average_cost)}</td>
                                    <td class=format!("{TD} tabular-nums")>{p.price.map(|x| money(&x)).unwrap_or_else(|| "—".into())}</td>
                                    <td class=format!("{TD} tabular-nums")>{p.market_value.map(|x| money(&x)).unwrap_or_else(|| "—".into())}</td>
                                    <td class=format!("{TD} tabular-nums {pnl_class}")>{money(&pnl)}</td>
                                </tr> }
                            }).collect_view()}
                        </tbody>
                    </table>
                }.into_any()
            }}
        </section>
    }
}

#[component]
pub(super) fn FillsAndPositions(book: PortfolioView) -> impl IntoView {
    view! {
        <Positions cash=book.cash.clone() positions=book.positions.clone() />
        <section class=CARD>
            <div class="border-b border-slate-200 px-4 py-3"><h2 class="font-semibold">"Fills"</h2></div>
            {if book.fills.is_empty() {
                view! { <p class="px-4 py-4 text-sm text-slate-500">"No fills yet."</p> }.into_any()
            } else {
                view! {
                    <table class="min-w-full divide-y divide-slate-200" data-testid="fills">
                        <thead class="bg-slate-50"><tr><th class=TH>"Time"</th><th class=TH>"Side"</th><th class=TH>"Quantity"</th><th class=TH>"Symbol"</th><th class=TH>"Price"</th></tr></thead>
                        <tbody class="divide-y divide-slate-100">
                            {book.fills.into_iter().map(|f| view! { <tr>
                                <td class=TD>{short_time(&f.at)}</td>
                                <td class=TD>{f.side}</td>
                                <td class=format!("{TD} tabular-nums")>{f.quantity}</td>
                                <td class=TD>{f.symbol}</td>
                                <td class=format!("{TD} tabular-nums")>{money(&f.price)}</td>
                            </tr> }).collect_view()}
                        </tbody>
                    </table>
                }.into_any()
            }}
        </section>
    }
}
