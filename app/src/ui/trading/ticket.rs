//! The Trade page: the order ticket, its live preview of the server's screening rules, and
//! the approval of large orders with a security key or code.

use crate::ui::server_data::{ServerData, server_data};
use domain::risk::{self, OrderSide, PriceRefusal, Screening, Verdict};
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::components::A;
use rust_decimal::Decimal;

use super::orders::OrderTable;
use super::portfolio::Positions;
use super::{CARD, dec, money};
use crate::api::stepup::{approve_order, order_approval_options};
use crate::api::trading::{
    OrderView, TicketView, place_order, recent_orders, ticket, venue_quotes,
};
use crate::error::AppError;
use crate::ui::webauthn::get_assertion;
use crate::ui::{
    ErrorNotice, INPUT_CLASS, LABEL_CLASS, PRIMARY_BUTTON, PageHeader, RequireRole,
    SECONDARY_BUTTON,
};

#[component]
pub fn TradePage() -> impl IntoView {
    // Created before the role check, so the page's data loads alongside the session lookup
    // rather than after it (the server functions check the caller themselves).
    let (refresh, set_refresh) = signal(0u32);
    let ticket_data = server_data(move || refresh.get(), |_| ticket());
    let orders = server_data(move || refresh.get(), |_| recent_orders());
    view! {
        <Title text="Trade" />
        <PageHeader title="Trade" description="Every order is screened by your limits and an anomaly score before it reaches the exchange. Large orders are approved one by one with your security key or app code." />
        <RequireRole>
            <TradeDesk ticket_data orders set_refresh />
        </RequireRole>
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Approval {
    None,
    Needed(Vec<String>),
    Preparing,
    WaitingForKey,
    Verifying,
    Failed(String),
}

/// The ticket's inputs and last result live above the ticket, so they survive the ticket
/// reloading its limits and positions after each order.
#[derive(Debug, Clone, Copy)]
struct TicketForm {
    venue: RwSignal<String>,
    symbol: RwSignal<String>,
    side: RwSignal<String>,
    order_type: RwSignal<String>,
    quantity: RwSignal<String>,
    limit: RwSignal<String>,
    placed: RwSignal<Option<OrderView>>,
}

impl TicketForm {
    fn new() -> Self {
        Self {
            venue: RwSignal::new("paper".into()),
            symbol: RwSignal::new(String::new()),
            side: RwSignal::new("buy".into()),
            order_type: RwSignal::new("market".into()),
            quantity: RwSignal::new(String::new()),
            limit: RwSignal::new(String::new()),
            placed: RwSignal::new(None),
        }
    }
}

#[component]
fn TradeDesk(
    ticket_data: ServerData<Result<TicketView, AppError>>,
    orders: ServerData<Result<Vec<OrderView>, AppError>>,
    set_refresh: WriteSignal<u32>,
) -> impl IntoView {
    let form = TicketForm::new();
    view! {
        <div class="grid gap-6 lg:grid-cols-5">
            <div class="lg:col-span-2">
                <Transition fallback=|| view! { <p class="text-sm text-slate-500">"Loading the ticket…"</p> }>
                    {move || ticket_data.get().map(|t| match t {
                        Ok(t) => view! { <Ticket data=t form on_placed=move || set_refresh.update(|n| *n += 1) /> }.into_any(),
                        Err(e) => view! { <ErrorNotice error=Signal::stored(Some(e)) /> }.into_any(),
                    })}
                </Transition>
            </div>
            <div class="space-y-6 lg:col-span-3">
                <Transition fallback=|| ()>
                    {move || ticket_data.get().and_then(Result::ok).map(|t| view! { <Positions cash=t.cash.clone() positions=t.positions.clone() /> })}
                </Transition>
                <section class=CARD>
                    <div class="flex items-center justify-between border-b border-slate-200 px-4 py-3">
                        <h2 class="font-semibold">"Recent orders"</h2>
                        <A href="/orders" attr:class="text-sm text-indigo-700 hover:underline">"All orders and fills"</A>
                    </div>
                    <Transition fallback=|| ()>
                        {move || orders.get().map(|o| match o {
                            Ok(o) => view! { <OrderTable orders=o on_change=move || set_refresh.update(|n| *n += 1) /> }.into_any(),
                            Err(e) => view! { <div class="p-4"><ErrorNotice error=Signal::stored(Some(e)) /></div> }.into_any(),
                        })}
                    </Transition>
                </section>
            </div>
        </div>
    }
}

#[component]
fn Ticket(
    data: TicketView,
    form: TicketForm,
    on_placed: impl Fn() + Copy + Send + Sync + 'static,
) -> impl IntoView {
    let data = StoredValue::new(data);
    let TicketForm {
        venue,
        symbol,
        side,
        order_type,
        quantity,
        limit,
        placed,
    } = form;
    let offered = data.with_value(|d| d.prices.iter().any(|p| p.symbol == symbol.get_untracked()));
    if !offered {
        symbol.set(data.with_value(|d| {
            d.prices
                .first()
                .map(|p| p.symbol.clone())
                .unwrap_or_default()
        }));
    }
    let (set_venue, set_symbol, set_side, set_order_type, set_quantity, set_limit, set_placed) = (
        venue.write_only(),
        symbol.write_only(),
        side.write_only(),
        order_type.write_only(),
        quantity.write_only(),
        limit.write_only(),
        placed.write_only(),
    );
    // The layout's hydration marker can flip before this suspended ticket is live; the ticket
    // says so itself (effects run only once it is live in the browser; end-to-end tests wait).
    let ready = RwSignal::new(false);
    Effect::new(move |_| ready.set(true));
    let (approval, set_approval) = signal(Approval::None);
    let (error, set_error) = signal(None::<AppError>);
    let (busy, set_busy) = signal(false);
    let (code, set_code) = signal(String::new());

    // Each account quotes its own exchange's prices; the paper ones come with the ticket.
    let prices = RwSignal::new(data.with_value(|d| d.prices.clone()));
    let (prices_error, set_prices_error) = signal(None::<AppError>);
    Effect::new(move |previous: Option<String>| {
        let chosen = venue.get();
        // Also when the ticket reloads (after an order) with another account still chosen.
        if previous.map_or(chosen != "paper", |p| p != chosen) {
            prices.set(Vec::new());
            set_prices_error.set(None);
            let asked = chosen.clone();
            leptos::task::spawn_local(async move {
                let answer = venue_quotes(asked.clone()).await;
                // A slower answer for an account no longer chosen is dropped.
                if venue.get_untracked() != asked {
                    return;
                }
                match answer {
                    Ok(quotes) => prices.set(quotes),
                    Err(e) => set_prices_error.set(Some(e)),
                }
            });
        }
        chosen
    });
    let quote = move || {
        let s = symbol.get();
        prices.with(|p| p.iter().find(|p| p.symbol == s).map(|p| p.price.clone()))
    };
    // The price the order carries (its limit, or the quote the trader saw): what the approval
    // covers.
    let order_price = move || {
        if order_type.get() == "limit" {
            Some(limit.get())
        } else {
            quote()
        }
    };
    // The price the rules judge the order at: the very function the server screens with, so a
    // sell limit below the market previews at the market value, and a limit far through the
    // market is refused here as it is there.
    let judged_price = move || -> Option<Result<Decimal, PriceRefusal>> {
        let side = OrderSide::parse(&side.get())?;
        let limit = if order_type.get() == "limit" {
            Some(dec(&limit.get())?)
        } else {
            None
        };
        let quote = quote().and_then(|q| dec(&q));
        Some(risk::screening_price(side, limit, quote, None))
    };
    let notional = move || {
        let q = dec(&quantity.get())?;
        let p = judged_price()?.ok()?;
        risk::order_value(q, p)
    };
    let price_refusal = move || match judged_price()? {
        Err(PriceRefusal::LimitThroughQuote { side, quote, .. }) => Some(format!(
            "A {} limit this far {} the market ({} USDT) would trade at once at the market price; set a limit within {}% of it, or place a market order.",
            side.as_str(),
            if side == OrderSide::Buy {
                "above"
            } else {
                "below"
            },
            money(&quote.normalize().to_string()),
            (risk::MAX_LIMIT_THROUGH_QUOTE * Decimal::ONE_HUNDRED).normalize()
        )),
        Err(PriceRefusal::NoQuote) => Some(
            "No current price from this exchange: the order cannot be valued right now.".into(),
        ),
        Ok(_) => None,
    };
    // The same first-line rules the server enforces, with what the browser knows.
    let checks = move || {
        let n = notional()?;
        let s = symbol.get();
        let side = OrderSide::parse(&side.get())?;
        let q = dec(&quantity.get())?;
        Some(data.with_value(|d| {
            // What is free to sell, as the server judges it: open and held sells claim theirs.
            let held = d
                .free_quantities
                .iter()
                .find(|(symbol, _)| *symbol == s)
                .and_then(|(_, quantity)| dec(quantity))
                .unwrap_or_default();
            let screening = Screening {
                symbol: &s,
                notional: n,
                effect: risk::order_effect(side, q, held),
                limits: &d.limits,
                step_up_threshold: dec(&d.step_up_threshold).unwrap_or_default(),
                state: d.state,
                global_kill: d.kill_switch_global,
                user_kill: d.kill_switch_user,
                used_today: dec(&d.used_today).unwrap_or_default(),
                orders_in_window: d.orders_in_window,
                unapproved_notional: dec(&d.unapproved_notional).unwrap_or_default(),
                ip: None,
                blocklist: None,
                new_ip: false,
                new_device: false,
            };
            risk::first_line(&screening)
        }))
    };

    let submit = move |nonce: Option<String>| {
        set_busy.set(true);
        set_error.set(None);
        let (v, s, sd, t, q, l) = (
            venue.get_untracked(),
            symbol.get_untracked(),
            side.get_untracked(),
            order_type.get_untracked(),
            quantity.get_untracked(),
            limit.get_untracked(),
        );
        let price = if t == "limit" { Some(l) } else { quote() };
        leptos::task::spawn_local(async move {
            let result = place_order(v, s, sd, t, q, price, nonce).await;
            set_busy.set(false);
            match result {
                Ok(order) => {
                    set_approval.set(Approval::None);
                    set_quantity.set(String::new());
                    set_placed.set(Some(order));
                    on_placed();
                }
                Err(AppError::OrderApprovalRequired(reasons)) => {
                    set_approval.set(Approval::Needed(reasons))
                }
                Err(e) => {
                    set_approval.set(Approval::None);
                    set_error.set(Some(e));
                }
            }
        });
    };

    // Approve exactly this order (its digest, over the account, type and terms, is the
    // WebAuthn challenge), then place it.
    let approve = move |method: &'static str| {
        let terms = (
            venue.get_untracked(),
            order_type.get_untracked(),
            symbol.get_untracked(),
            side.get_untracked(),
            quantity.get_untracked(),
            order_price().unwrap_or_default(),
        );
        let typed_code = code.get_untracked();
        set_approval.set(Approval::Preparing);
        leptos::task::spawn_local(async move {
            let (v, t, s, sd, q, p) = terms;
            let options = match order_approval_options(
                v.clone(),
                t.clone(),
                s.clone(),
                sd.clone(),
                q.clone(),
                p.clone(),
            )
            .await
            {
                Ok(o) => o,
                Err(e) => return set_approval.set(Approval::Failed(e.to_string())),
            };
            let response = if method == "security-key" {
                let Some(request) = options.webauthn.clone() else {
                    return set_approval.set(Approval::Failed(
                        "You have no security key yet. Add one on the Security page, or use your authenticator app.".into(),
                    ));
                };
                set_approval.set(Approval::WaitingForKey);
                match get_assertion(request).await {
                    Ok(a) => a,
                    Err(e) => return set_approval.set(Approval::Failed(e.message())),
                }
            } else {
                typed_code
            };
            set_approval.set(Approval::Verifying);
            if let Err(e) = approve_order(v, t, s, sd, q, p, method.into(), response).await {
                return set_approval.set(Approval::Failed(e.to_string()));
            }
            set_code.set(String::new());
            submit(Some(options.nonce));
        });
    };

    let venues = data.with_value(|d| d.venues.clone());
    let symbols = data.with_value(|d| d.prices.clone());
    let has_totp = data.with_value(|d| d.has_totp);
    let has_key = data.with_value(|d| d.has_security_key);
    view! {
        <section class=CARD data-testid="order-ticket" data-ready=move || ready.get().to_string()>
            <div class="border-b border-slate-200 px-4 py-3">
                <h2 class="font-semibold">"Order ticket"</h2>
                <p class="text-xs text-slate-500">{move || {
                    let paper = venue.get() == "paper";
                    data.with_value(|d| {
                        let used = format!("used today {} of {} USDT", money(&d.used_today), money(&d.limits.daily_notional.normalize().to_string()));
                        // A keyed account's balance lives on its exchange; only the paper cash is ours.
                        let free = if d.free_cash == d.cash { String::new() } else { format!(" ({} free after your open orders)", money(&d.free_cash)) };
                        if paper { format!("Paper cash {} USDT{free} · {used}", money(&d.cash)) } else { format!("Limits across accounts: {used}") }
                    })
                }}</p>
            </div>
            <form class="space-y-4 p-4" on:submit=move |ev| { ev.prevent_default(); submit(None); }>
                <div>
                    <label class=LABEL_CLASS for="venue">"Account"</label>
                    <select id="venue" class=INPUT_CLASS prop:value=venue on:change=move |ev| set_venue.set(event_target_value(&ev))>
                        {venues.into_iter().map(|v| {
                            let selected = v.id == venue.get_untracked();
                            view! { <option value=v.id.clone() selected=selected>{v.label.clone()}</option> }
                        }).collect_view()}
                    </select>
                    <ErrorNotice error=prices_error />
                </div>
                <div class="grid grid-cols-2 gap-3">
                    <div>
                        <label class=LABEL_CLASS for="symbol">"Symbol"</label>
                        <select id="symbol" name="symbol" class=INPUT_CLASS prop:value=symbol on:change=move |ev| set_symbol.set(event_target_value(&ev))>
                            {symbols.into_iter().map(|p| {
                                let selected = p.symbol == symbol.get_untracked();
                                view! { <option value=p.symbol.clone() selected=selected>{p.symbol.clone()}</option> }
                            }).collect_view()}
                        </select>
                    </div>
                    <div>
                        <span class=LABEL_CLASS>"Price"</span>
                        <p class="py-2 text-sm font-medium tabular-nums" data-testid="quote">{move || quote().map(|q| format!("{} USDT", money(&q))).unwrap_or_else(|| "—".into())}</p>
                    </div>
                </div>
                <fieldset>
                    <legend class=LABEL_CLASS>"Side"</legend>
                    <div class="grid grid-cols-2 gap-2">
                        {["buy", "sell"].into_iter().map(|s| view! {
                            <label class=move || format!("cursor-pointer rounded-md border px-3 py-2 text-center text-sm font-medium {}",
                                if side.get() == s { if s == "buy" { "border-emerald-600 bg-emerald-50 text-emerald-800" } else { "border-red-600 bg-red-50 text-red-800" } } else { "border-slate-300 text-slate-600" })>
                                <input type="radio" name="side" value=s class="sr-only" prop:checked=move || side.get() == s on:change=move |_| set_side.set(s.to_string()) />
                                {if s == "buy" { "Buy" } else { "Sell" }}
                            </label>
                        }).collect_view()}
                    </div>
                </fieldset>
                <div class="grid grid-cols-2 gap-3">
                    <div>
                        <label class=LABEL_CLASS for="order-type">"Type"</label>
                        <select id="order-type" name="order_type" class=INPUT_CLASS prop:value=order_type on:change=move |ev| set_order_type.set(event_target_value(&ev))>
                            <option value="market" selected=order_type.get_untracked() == "market">"Market"</option>
                            <option value="limit" selected=order_type.get_untracked() == "limit">"Limit"</option>
                        </select>
                    </div>
                    <div>
                        <label class=LABEL_CLASS for="quantity">"Quantity"</label>
                        <input id="quantity" name="quantity" class=INPUT_CLASS inputmode="decimal" autocomplete="off" placeholder="0.01"
                            prop:value=quantity on:input=move |ev| set_quantity.set(event_target_value(&ev)) />
                    </div>
                </div>
                <Show when=move || order_type.get() == "limit">
                    <div>
                        <label class=LABEL_CLASS for="limit-price">"Limit price (USDT)"</label>
                        <input id="limit-price" name="limit_price" class=INPUT_CLASS inputmode="decimal" autocomplete="off"
                            prop:value=limit on:input=move |ev| set_limit.set(event_target_value(&ev)) />
                    </div>
                </Show>
                <div class="rounded-md bg-slate-50 px-3 py-2">
                    <div class="flex items-baseline justify-between">
                        <span class="text-sm text-slate-600">"Notional"</span>
                        <span class="text-lg font-semibold tabular-nums" data-testid="notional">
                            {move || notional().map(|n| format!("{} USDT", money(&n.round_dp(2).normalize().to_string()))).unwrap_or_else(|| "—".into())}
                        </span>
                    </div>
                    <ul class="mt-2 space-y-1 text-sm" data-testid="checks" aria-live="polite">
                        {move || price_refusal().map(|why| view! { <li class="flex gap-2 text-red-700" data-rule="price"><span aria-hidden="true">"✕"</span><span>{why}</span></li> })}
                        {move || match checks() {
                            None if price_refusal().is_some() => ().into_any(),
                            None => view! { <li class="text-slate-500">"Enter a quantity to see which checks apply."</li> }.into_any(),
                            Some(hits) if hits.is_empty() => view! { <li class="text-emerald-700">"✓ Within your limits: goes straight to the exchange."</li> }.into_any(),
                            Some(hits) => hits.into_iter().map(|h| {
                                let color = match h.verdict {
                                    Verdict::Deny => "text-red-700",
                                    Verdict::Hold => "text-amber-800",
                                    Verdict::StepUp => "text-indigo-800",
                                    Verdict::Allow => "text-slate-600",
                                };
                                let mark = match h.verdict {
                                    Verdict::Deny => "✕",
                                    Verdict::Hold => "⏸",
                                    Verdict::StepUp => "🔑",
                                    Verdict::Allow => "✓",
                                };
                                view! { <li class=format!("flex gap-2 {color}") data-rule=h.rule.code()><span aria-hidden="true">{mark}</span><span>{h.message}</span></li> }
                            }).collect_view().into_any(),
                        }}
                    </ul>
                </div>
                <ErrorNotice error=error />
                {move || match approval.get() {
                    Approval::None => ().into_any(),
                    state => view! {
                        <div role="alert" data-testid="order-approval" class="space-y-3 rounded-lg border border-indigo-300 bg-indigo-50 p-4 text-sm text-indigo-950">
                            <p class="font-medium">"Approve this order"</p>
                            {match &state {
                                Approval::Needed(reasons) => reasons.iter().map(|r| view! { <p>{r.clone()}</p> }).collect_view().into_any(),
                                _ => ().into_any(),
                            }}
                            <p class="text-xs text-indigo-800">"Your approval covers exactly this account, order type, symbol, side, quantity and price, once."</p>
                            <div class="flex flex-wrap items-end gap-2">
                                {has_key.then(|| view! {
                                    <button type="button" class=PRIMARY_BUTTON data-testid="approve-with-key" disabled=busy on:click=move |_| approve("security-key")>
                                        "Approve with my security key"
                                    </button>
                                })}
                                {has_totp.then(|| view! {
                                    <input aria-label="Code from your authenticator app" class="w-28 rounded-md border border-slate-300 px-2 py-2 text-sm" inputmode="numeric" autocomplete="one-time-code" placeholder="123456"
                                        prop:value=code on:input=move |ev| set_code.set(event_target_value(&ev)) />
                                    <button type="button" class=SECONDARY_BUTTON on:click=move |_| approve("totp")>"Approve with code"</button>
                                })}
                                {(!has_key && !has_totp).then(|| view! {
                                    <p>"You have no security key or authenticator app yet. "<A href="/security" attr:class="underline">"Add one on the Security page"</A>" to place large orders."</p>
                                })}
                            </div>
                            <p aria-live="polite" data-testid="approval-status">{match state {
                                Approval::Preparing => "Preparing the approval…".to_string(),
                                Approval::WaitingForKey => "Touch your security key to approve this order.".into(),
                                Approval::Verifying => "Checking and placing…".into(),
                                Approval::Failed(why) => why,
                                _ => String::new(),
                            }}</p>
                        </div>
                    }.into_any(),
                }}
                <button type="submit" class=format!("{PRIMARY_BUTTON} w-full") data-testid="place-order" disabled=busy>
                    {move || if busy.get() { "Placing…".to_string() } else { format!("Place {} order", side.get()) }}
                </button>
                {move || placed.get().map(|o| view! { <PlacedNotice order=o /> })}
            </form>
        </section>
    }
}

#[component]
fn PlacedNotice(order: OrderView) -> impl IntoView {
    let (tone, headline) = match order.status.as_str() {
        "filled" => (
            "border-emerald-200 bg-emerald-50 text-emerald-900",
            format!(
                "Filled: {} {} {} at {} USDT.",
                order.side,
                order.quantity,
                order.symbol,
                order.average_price.clone().unwrap_or_default()
            ),
        ),
        "open" => (
            "border-sky-200 bg-sky-50 text-sky-900",
            format!(
                "Placed: {} {} {} rests on the book at {}.",
                order.side,
                order.quantity,
                order.symbol,
                order.limit_price.clone().unwrap_or_default()
            ),
        ),
        "held" => (
            "border-amber-200 bg-amber-50 text-amber-950",
            "Held — not sent yet.".to_string(),
        ),
        "denied" => (
            "border-red-200 bg-red-50 text-red-900",
            "Denied — nothing was sent.".to_string(),
        ),
        _ => (
            "border-slate-200 bg-slate-50 text-slate-900",
            format!("Order {}.", order.status),
        ),
    };
    view! {
        <div role="status" data-testid="order-result" data-status=order.status.clone() class=format!("rounded-md border px-3 py-2 text-sm {tone}")>
            <p class="font-medium">{headline}</p>
            {order.status_reason.clone().map(|r| view! { <p class="mt-1">{r}</p> })}
        </div>
    }
}
