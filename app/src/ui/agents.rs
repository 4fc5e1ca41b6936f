//! "Agents": the trader's bearer tokens for bots (shown once, revocable, scoped), autonomous
//! mode, and the queue of proposals bots made, each waiting for the trader's sign-off.

use crate::ui::server_data::{ServerData, server_data};
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::components::A;

use super::keys::short_time;
use super::trading::{CARD, TD, TH, money};
use super::webauthn::get_assertion;
use super::{
    DANGER_BUTTON, ErrorNotice, INPUT_CLASS, LABEL_CLASS, PRIMARY_BUTTON, PageHeader, RequireRole,
    SECONDARY_BUTTON,
};
use crate::api::stepup::{approve_order, order_approval_options};
use crate::api::trading::{
    AgentOverviewView, ProposalView, agent_overview, create_agent_token, reject_proposal,
    revoke_agent_token, set_autonomous, sign_off_proposal, ticket,
};
use crate::error::AppError;

const SCOPES: [(&str, &str); 3] = [
    ("prices:read", "Read prices"),
    ("portfolio:read", "Read my portfolio"),
    ("proposals:write", "Propose trades (I sign off)"),
];

#[component]
pub fn AgentsPage() -> impl IntoView {
    // Created before the role check, as on the Trade page.
    let (version, set_version) = signal(0u32);
    let overview = server_data(move || version.get(), |_| agent_overview());
    view! {
        <Title text="Agents" />
        <PageHeader title="Agents" description="Bots can read prices and your portfolio and propose trades with a rationale. They can never place, cancel or withdraw: every proposal waits here for your sign-off." />
        <RequireRole>
            <AgentDesk overview set_version />
        </RequireRole>
    }
}

#[component]
fn AgentDesk(
    overview: ServerData<Result<AgentOverviewView, AppError>>,
    set_version: WriteSignal<u32>,
) -> impl IntoView {
    let reload = move || set_version.update(|n| *n += 1);
    view! {
        <Transition fallback=|| view! { <p class="text-sm text-slate-500">"Loading…"</p> }>
            {move || overview.get().map(|o| match o {
                Ok(o) => view! { <AgentPanels overview=o reload /> }.into_any(),
                Err(e) => view! { <ErrorNotice error=Signal::stored(Some(e)) /> }.into_any(),
            })}
        </Transition>
    }
}

#[component]
fn AgentPanels(
    overview: AgentOverviewView,
    reload: impl Fn() + Copy + Send + Sync + 'static,
) -> impl IntoView {
    let (pending, decided): (Vec<_>, Vec<_>) = overview
        .proposals
        .into_iter()
        .partition(|p| p.status == "pending");
    view! {
        <div class="grid gap-6 lg:grid-cols-2">
            <div class="space-y-6">
                <Tokens tokens=overview.tokens reload />
                <Autonomous on=overview.autonomous cap=overview.autonomous_cap reload />
            </div>
            <section class=CARD data-testid="proposals">
                <div class="border-b border-slate-200 px-4 py-3">
                    <h2 class="font-semibold">"Proposals waiting for you"</h2>
                    <p class="text-sm text-slate-600">"Signed-off proposals are screened like any order; large ones need your security key."</p>
                </div>
                {if pending.is_empty() {
                    view! { <p class="px-4 py-4 text-sm text-slate-500">"No proposals waiting."</p> }.into_any()
                } else {
                    view! { <ul class="divide-y divide-slate-100">{pending.into_iter().map(|p| view! { <PendingProposal proposal=p reload /> }).collect_view()}</ul> }.into_any()
                }}
                {(!decided.is_empty()).then(|| view! {
                    <div class="border-t border-slate-200 px-4 py-3">
                        <h3 class="text-sm font-semibold text-slate-700">"Decided"</h3>
                        <ul class="mt-2 space-y-1 text-sm text-slate-600">
                            {decided.into_iter().map(|p| view! {
                                <li>{format!("{} {} {} {} · {} · {}", short_time(&p.created_at), p.side, p.quantity, p.symbol, p.status, p.token_name.unwrap_or_default())}
                                    {p.order_id.map(|_| view! { " · " <A href="/orders" attr:class="text-indigo-700 underline">"see order"</A> })}
                                </li>
                            }).collect_view()}
                        </ul>
                    </div>
                })}
            </section>
        </div>
    }
}

#[component]
fn Tokens(
    tokens: Vec<crate::api::trading::AgentTokenView>,
    reload: impl Fn() + Copy + Send + Sync + 'static,
) -> impl IntoView {
    let (name, set_name) = signal(String::new());
    let (scopes, set_scopes) = signal(vec!["prices:read".to_string()]);
    let (lifetime, set_lifetime) = signal(90u32);
    let (secret, set_secret) = signal(None::<String>);
    let (error, set_error) = signal(None::<AppError>);
    let create = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let (n, s, days) = (
            name.get_untracked(),
            scopes.get_untracked(),
            lifetime.get_untracked(),
        );
        leptos::task::spawn_local(async move {
            match create_agent_token(n, s, Some(days)).await {
                Ok(created) => {
                    set_error.set(None);
                    set_name.set(String::new());
                    set_secret.set(Some(created.secret));
                }
                Err(e) => set_error.set(Some(e)),
            }
        });
    };
    let revoke = move |id: String| {
        leptos::task::spawn_local(async move {
            match revoke_agent_token(id).await {
                Ok(()) => reload(),
                Err(e) => set_error.set(Some(e)),
            }
        });
    };
    view! {
        <section class=CARD>
            <div class="border-b border-slate-200 px-4 py-3">
                <h2 class="font-semibold">"Tokens"</h2>
                <p class="text-sm text-slate-600">"A token is shown once and stored only as a hash, and expires after the time you choose. Creating one needs your security key or authenticator code. Revoke it the moment a bot is retired or leaks."</p>
            </div>
            {move || secret.get().map(|s| view! {
                <div role="status" class="m-4 rounded-md border border-amber-300 bg-amber-50 p-3 text-sm text-amber-950">
                    <p class="font-medium">"Copy it now: it is shown only once."</p>
                    <code data-testid="token-secret" class="mt-2 block break-all rounded bg-white px-2 py-1 font-mono text-xs">{s}</code>
                    <button type="button" class=format!("{SECONDARY_BUTTON} mt-2") on:click=move |_| { set_secret.set(None); reload(); }>"Done"</button>
                </div>
            })}
            {if tokens.is_empty() {
                view! { <p class="px-4 py-3 text-sm text-slate-500">"No tokens yet."</p> }.into_any()
            } else {
                view! {
                    <table class="min-w-full divide-y divide-slate-200">
                        <thead class="bg-slate-50"><tr><th class=TH>"Name"</th><th class=TH>"Permissions"</th><th class=TH>"Last used"</th><th class=TH>"Expires"</th><th class=TH></th></tr></thead>
                        <tbody class="divide-y divide-slate-100">
                            {tokens.into_iter().map(|t| {
                                let id = t.id.clone();
                                let live = t.revoked_at.is_none();
                                let expires = if t.expired {
                                    format!("expired {}", short_time(&t.expires_at))
                                } else {
                                    short_time(&t.expires_at)
                                };
                                view! { <tr>
                                    <td class=TD><div class="font-medium">{t.name.clone()}</div><div class="font-mono text-xs text-slate-500">{format!("{}…", t.prefix)}</div></td>
                                    <td class="px-4 py-2 text-xs text-slate-600">{t.scopes.join(", ")}</td>
                                    <td class=TD>{t.last_used_at.as_deref().map(short_time).unwrap_or_else(|| "never".into())}</td>
                                    <td class=TD data-testid="token-expires">{expires}</td>
                                    <td class=TD>{if live {
                                        view! { <button type="button" class="text-sm text-red-700 hover:underline" on:click=move |_| revoke(id.clone())>"Revoke"</button> }.into_any()
                                    } else {
                                        view! { <span class="text-xs text-slate-500">{format!("revoked {}", t.revoked_at.as_deref().map(short_time).unwrap_or_default())}</span> }.into_any()
                                    }}</td>
                                </tr> }
                            }).collect_view()}
                        </tbody>
                    </table>
                }.into_any()
            }}
            <form class="space-y-3 border-t border-slate-200 p-4" on:submit=create data-testid="create-token">
                <div>
                    <label class=LABEL_CLASS for="token-name">"Name"</label>
                    <input id="token-name" class=INPUT_CLASS placeholder="grid bot" prop:value=name on:input=move |ev| set_name.set(event_target_value(&ev)) />
                </div>
                <fieldset class="space-y-1 text-sm">
                    <legend class=LABEL_CLASS>"Permissions"</legend>
                    {SCOPES.into_iter().map(|(value, label)| view! {
                        <label class="flex items-center gap-2">
                            <input type="checkbox" prop:checked=move || scopes.get().iter().any(|s| s == value)
                                on:change=move |ev| {
                                    let checked = event_target_checked(&ev);
                                    set_scopes.update(|s| {
                                        s.retain(|x| x != value);
                                        if checked { s.push(value.to_string()); }
                                    });
                                } />
                            {label}
                        </label>
                    }).collect_view()}
                </fieldset>
                <div>
                    <label class=LABEL_CLASS for="token-lifetime">"Expires after"</label>
                    <select id="token-lifetime" class=INPUT_CLASS
                        on:change=move |ev| set_lifetime.set(event_target_value(&ev).parse().unwrap_or(90))>
                        {[(30u32, "30 days"), (90, "90 days"), (365, "1 year")].into_iter().map(|(days, label)| view! {
                            <option value=days.to_string() selected=days == 90>{label}</option>
                        }).collect_view()}
                    </select>
                </div>
                <ErrorNotice error=error />
                <button type="submit" class=PRIMARY_BUTTON>"Create token"</button>
                <p class="text-xs text-slate-500">"Use it as "<code>"Authorization: Bearer <token>"</code>" on "<code>"/api/agent/v1/prices?symbols=BTCUSDT"</code>", "<code>"/api/agent/v1/portfolio"</code>" and "<code>"POST /api/agent/v1/proposals"</code>". The API is described in "<a href="/api/agent/openapi.json" class="text-indigo-700 underline">"openapi.json"</a>"."</p>
            </form>
        </section>
    }
}

#[component]
fn Autonomous(
    on: bool,
    cap: String,
    reload: impl Fn() + Copy + Send + Sync + 'static,
) -> impl IntoView {
    let (error, set_error) = signal(None::<AppError>);
    let toggle = move |_| {
        leptos::task::spawn_local(async move {
            match set_autonomous(!on).await {
                Ok(()) => reload(),
                Err(e) => set_error.set(Some(e)),
            }
        });
    };
    view! {
        <section class=format!("{CARD} p-4")>
            <h2 class="font-semibold">"Autonomous mode"</h2>
            <p class="mt-1 text-sm text-slate-600">{format!(
                "When on, proposals up to {} USDT are placed without your sign-off while your account is active. A quarantine or an open case pauses it; larger proposals still wait for you.",
                money(&cap)
            )}</p>
            <div class="mt-3 flex items-center gap-3">
                <button type="button" data-testid="autonomous-toggle" class=if on { DANGER_BUTTON } else { SECONDARY_BUTTON } on:click=toggle>
                    {if on { "Turn autonomous mode off" } else { "Turn autonomous mode on" }}
                </button>
                <span class="text-sm text-slate-600">{if on { "On" } else { "Off" }}</span>
            </div>
            <div class="mt-3 empty:hidden"><ErrorNotice error=error /></div>
        </section>
    }
}

#[component]
fn PendingProposal(
    proposal: ProposalView,
    reload: impl Fn() + Copy + Send + Sync + 'static,
) -> impl IntoView {
    let p = StoredValue::new(proposal.clone());
    let (error, set_error) = signal(None::<AppError>);
    let (needs_approval, set_needs_approval) = signal(None::<Vec<String>>);
    let (status, set_status) = signal(String::new());
    // The current quote, for market proposals.
    let quote = move || async move {
        let symbol = p.with_value(|p| p.symbol.clone());
        ticket()
            .await
            .ok()
            .and_then(|t| t.prices.into_iter().find(|x| x.symbol == symbol))
            .map(|x| x.price)
    };
    let sign = move |nonce: Option<String>, price: Option<String>| {
        let id = p.with_value(|p| p.id.clone());
        leptos::task::spawn_local(async move {
            let quoted = match price {
                Some(price) => Some(price),
                None => quote().await,
            };
            match sign_off_proposal(id, quoted, nonce).await {
                Ok(order) => {
                    set_status.set(format!("Placed: the order is {}.", order.status));
                    reload();
                }
                Err(AppError::OrderApprovalRequired(reasons)) => {
                    set_needs_approval.set(Some(reasons))
                }
                Err(e) => set_error.set(Some(e)),
            }
        });
    };
    let approve_with_key = move |_| {
        set_status.set("Touch your security key to approve this order.".into());
        leptos::task::spawn_local(async move {
            let (order_type, symbol, side, quantity, limit) = p.with_value(|p| {
                (
                    p.order_type.clone(),
                    p.symbol.clone(),
                    p.side.clone(),
                    p.quantity.clone(),
                    p.limit_price.clone(),
                )
            });
            let price = match limit {
                Some(l) => Some(l),
                None => quote().await,
            };
            let Some(price) = price else {
                return set_status
                    .set("No price for this symbol right now; try again shortly.".into());
            };
            // A proposal is always placed on the paper account.
            let options = match order_approval_options(
                "paper".into(),
                order_type.clone(),
                symbol.clone(),
                side.clone(),
                quantity.clone(),
                price.clone(),
            )
            .await
            {
                Ok(o) => o,
                Err(e) => return set_error.set(Some(e)),
            };
            let Some(request) = options.webauthn else {
                return set_status
                    .set("You have no security key yet: add one on the Security page.".into());
            };
            let assertion = match get_assertion(request).await {
                Ok(a) => a,
                Err(e) => return set_status.set(e.message()),
            };
            if let Err(e) = approve_order(
                "paper".into(),
                order_type,
                symbol,
                side,
                quantity,
                price.clone(),
                "security-key".into(),
                assertion,
            )
            .await
            {
                return set_error.set(Some(e));
            }
            set_needs_approval.set(None);
            sign(Some(options.nonce), Some(price));
        });
    };
    let reject = move |_| {
        let id = p.with_value(|p| p.id.clone());
        leptos::task::spawn_local(async move {
            match reject_proposal(id).await {
                Ok(()) => reload(),
                Err(e) => set_error.set(Some(e)),
            }
        });
    };
    view! {
        <li class="space-y-2 px-4 py-3" data-testid="proposal">
            <div class="flex flex-wrap items-baseline justify-between gap-2">
                <span class="text-sm font-medium">
                    <span class=if proposal.side == "buy" { "text-emerald-700" } else { "text-red-700" }>{proposal.side.to_uppercase()}</span>
                    {format!(" {} {} · {}", proposal.quantity, proposal.symbol, proposal.order_type)}
                    {proposal.limit_price.clone().map(|l| format!(" @ {}", money(&l)))}
                </span>
                <span class="text-xs text-slate-500">{format!("{} · {}", proposal.token_name.clone().unwrap_or_else(|| "revoked token".into()), short_time(&proposal.created_at))}</span>
            </div>
            // The agent's words are data: shown as quoted plain text, never interpreted.
            <blockquote class="border-l-4 border-slate-300 pl-3 text-sm italic text-slate-600">{proposal.rationale.clone()}</blockquote>
            <div class="flex gap-2">
                <button type="button" class=PRIMARY_BUTTON on:click=move |_| sign(None, None)>"Sign off and place"</button>
                <button type="button" class=SECONDARY_BUTTON on:click=reject>"Reject"</button>
            </div>
            {move || needs_approval.get().map(|reasons| view! {
                <div role="alert" class="rounded-md border border-indigo-300 bg-indigo-50 p-3 text-sm text-indigo-950">
                    {reasons.into_iter().map(|r| view! { <p>{r}</p> }).collect_view()}
                    <button type="button" class=format!("{PRIMARY_BUTTON} mt-2") on:click=approve_with_key>"Approve with my security key"</button>
                </div>
            })}
            <p class="text-sm text-slate-600 empty:hidden" aria-live="polite">{status}</p>
            <ErrorNotice error=error />
        </li>
    }
}
