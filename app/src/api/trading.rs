//! Trading: the order ticket, orders, fills and positions; the trading banner; the admin's risk
//! controls (kill switch, limits, per-user states, IP blocklist); anomaly cases for reviewers;
//! and the trader's agent tokens and proposal queue.

use domain::risk::{RiskLimits, TradingState};
use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::AppError;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleHitView {
    pub rule: String,
    pub verdict: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureView {
    pub code: String,
    pub label: String,
    pub strength: f64,
    pub weight: f64,
    pub impact: f64,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderView {
    pub id: String,
    pub venue: String,
    pub symbol: String,
    pub side: String,
    pub order_type: String,
    pub quantity: String,
    pub limit_price: Option<String>,
    pub reference_price: String,
    pub notional: String,
    pub status: String,
    pub status_reason: Option<String>,
    pub verdict: String,
    pub verdict_label: String,
    pub hits: Vec<RuleHitView>,
    pub score: Option<f64>,
    pub features: Vec<FeatureView>,
    pub filled_quantity: String,
    pub average_price: Option<String>,
    pub source: String,
    pub case_id: Option<String>,
    pub created_at: String,
    pub can_cancel: bool,
    /// Released by a reviewer, but it still needs its owner's step-up approval to be sent.
    pub awaiting_approval: bool,
    /// "paper" or the key id: what an approval for this order names as its venue.
    pub venue_id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PositionView {
    pub symbol: String,
    pub quantity: String,
    pub average_cost: String,
    pub price: Option<String>,
    pub market_value: Option<String>,
    pub unrealized_pnl: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PriceView {
    pub symbol: String,
    pub price: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VenueView {
    /// "paper" or a key id.
    pub id: String,
    pub label: String,
}

/// Everything the ticket needs to preview, in the browser, the checks the server will apply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TicketView {
    pub limits: RiskLimits,
    pub step_up_threshold: String,
    pub state: TradingState,
    pub kill_switch_user: bool,
    pub kill_switch_global: bool,
    pub used_today: String,
    pub orders_in_window: u32,
    pub cash: String,
    pub positions: Vec<PositionView>,
    pub prices: Vec<PriceView>,
    pub venues: Vec<VenueView>,
    pub open_cases: u64,
    pub has_security_key: bool,
    pub has_totp: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FillView {
    pub order_id: String,
    pub symbol: String,
    pub side: String,
    pub quantity: String,
    pub price: String,
    pub at: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PortfolioView {
    pub cash: String,
    pub positions: Vec<PositionView>,
    pub fills: Vec<FillView>,
}

/// What the banner on every page says about trading.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TradingStatusView {
    pub global_kill: bool,
    pub user_kill: bool,
    pub state: TradingState,
    pub open_cases: u64,
    /// Exchanges whose trading is paused after an outage.
    pub paused: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitRow {
    pub key: String,
    pub label: String,
    pub help: String,
    pub value: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserControlView {
    pub user_id: String,
    pub email: String,
    pub role: String,
    pub state: TradingState,
    pub kill_switch: bool,
    pub autonomous: bool,
    pub open_cases: u64,
    pub overrides: Vec<LimitRow>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockView {
    pub id: String,
    pub cidr: String,
    pub note: String,
    pub created_at: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RiskOverviewView {
    pub global_kill: bool,
    pub limits: Vec<LimitRow>,
    pub users: Vec<UserControlView>,
    pub blocklist: Vec<BlockView>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TradePoint {
    pub at: String,
    pub symbol: String,
    pub notional: f64,
    pub ip: Option<String>,
    pub device: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaseView {
    pub id: String,
    pub subject_id: String,
    pub subject_email: String,
    pub order_id: Option<String>,
    pub score: f64,
    pub status: String,
    pub opened_at: String,
    pub decided_at: Option<String>,
    pub decided_by_email: Option<String>,
    pub note: Option<String>,
    pub rationale: Option<String>,
    pub hits: Vec<RuleHitView>,
    pub features: Vec<FeatureView>,
    pub recent: Vec<TradePoint>,
    pub candidate: TradePoint,
    pub state_before: TradingState,
    pub state_after: TradingState,
    /// The subject's state now.
    pub state_now: TradingState,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentTokenView {
    pub id: String,
    pub name: String,
    pub prefix: String,
    pub scopes: Vec<String>,
    pub created_at: String,
    pub last_used_at: Option<String>,
    pub revoked_at: Option<String>,
    pub expires_at: String,
    /// Past `expires_at`: the agent API refuses it.
    pub expired: bool,
}

/// No derived `Debug`: `secret` is the bearer token itself.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatedAgentToken {
    pub token: AgentTokenView,
    /// Shown once; only its hash is stored.
    pub secret: String,
}

impl std::fmt::Debug for CreatedAgentToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedAgentToken")
            .field("token", &self.token)
            .field("secret", &"[redacted]")
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProposalView {
    pub id: String,
    pub token_name: Option<String>,
    pub symbol: String,
    pub side: String,
    pub order_type: String,
    pub quantity: String,
    pub limit_price: Option<String>,
    pub rationale: String,
    pub status: String,
    pub order_id: Option<String>,
    pub created_at: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentOverviewView {
    pub tokens: Vec<AgentTokenView>,
    pub proposals: Vec<ProposalView>,
    pub autonomous: bool,
    pub autonomous_cap: String,
}

#[cfg(feature = "ssr")]
mod support {
    use domain::audit::canonical_time;
    use domain::trading::{AnomalyCase, Order, OrderStatus, TradingError};

    use super::*;

    pub fn price_views(quotes: Vec<(String, rust_decimal::Decimal)>) -> Vec<PriceView> {
        quotes
            .into_iter()
            .map(|(symbol, price)| PriceView {
                symbol,
                price: plain(price),
            })
            .collect()
    }

    impl From<TradingError> for AppError {
        fn from(err: TradingError) -> Self {
            match err {
                TradingError::Invalid(msg) => AppError::Invalid(msg),
                TradingError::NotFound => AppError::NotFound,
                TradingError::ApprovalRequired { reasons } => {
                    AppError::OrderApprovalRequired(reasons)
                }
                TradingError::Approval(e) => AppError::from(e),
                TradingError::Forbidden(_) => AppError::Forbidden,
                TradingError::Conflict(msg) => AppError::Conflict(msg),
                TradingError::AuditUnavailable => AppError::Unavailable(
                    "The audit log could not be written, so nothing was done. Try again shortly."
                        .into(),
                ),
                TradingError::Unavailable(msg) => AppError::Unavailable(msg),
                TradingError::Store(e) => AppError::internal(e),
            }
        }
    }

    pub fn plain(d: rust_decimal::Decimal) -> String {
        d.normalize().to_string()
    }

    pub fn features(score: &domain::risk::AnomalyScore) -> Vec<FeatureView> {
        score
            .contributions
            .iter()
            .map(|c| FeatureView {
                code: c.feature.code().to_owned(),
                label: c.feature.label().to_owned(),
                strength: c.strength,
                weight: c.weight,
                impact: c.impact(),
                detail: c.detail.clone(),
            })
            .collect()
    }

    pub fn hits(hits: &[domain::risk::RuleHit]) -> Vec<RuleHitView> {
        hits.iter()
            .map(|h| RuleHitView {
                rule: h.rule.code().to_owned(),
                verdict: h.verdict.as_str().to_owned(),
                message: h.message.clone(),
            })
            .collect()
    }

    pub fn order_view(order: &Order) -> OrderView {
        OrderView {
            id: order.id.to_string(),
            venue: match order.venue.key {
                None => order.venue.exchange.label().to_owned(),
                Some(_) => format!(
                    "{} {}",
                    order.venue.exchange.label(),
                    order.venue.environment.label().to_lowercase()
                ),
            },
            symbol: order.symbol.clone(),
            side: order.side.as_str().to_owned(),
            order_type: order.order_type.as_str().to_owned(),
            quantity: plain(order.quantity),
            limit_price: order.limit_price.map(plain),
            reference_price: plain(order.reference_price),
            notional: plain(order.notional.round_dp(2)),
            status: order.status.as_str().to_owned(),
            status_reason: order.status_reason.clone(),
            verdict: order.verdict.as_str().to_owned(),
            verdict_label: order.verdict.label().to_owned(),
            hits: hits(&order.hits),
            score: order.anomaly.as_ref().map(|a| a.score),
            features: order.anomaly.as_ref().map(features).unwrap_or_default(),
            filled_quantity: plain(order.filled_quantity),
            average_price: order.average_price.map(plain),
            source: order.source.as_str().to_owned(),
            case_id: order.case.map(|c| c.to_string()),
            created_at: canonical_time(order.created_at),
            can_cancel: matches!(order.status, OrderStatus::Held | OrderStatus::Open),
            awaiting_approval: order.status == OrderStatus::Held
                && order.hold == Some(domain::trading::HoldKind::Approval),
            venue_id: order
                .venue
                .key
                .map_or_else(|| "paper".to_owned(), |k| k.to_string()),
        }
    }

    pub fn trade_point(sample: &domain::risk::TradeSample) -> TradePoint {
        use rust_decimal::prelude::ToPrimitive;
        TradePoint {
            at: canonical_time(sample.at),
            symbol: sample.symbol.clone(),
            notional: sample.notional.to_f64().unwrap_or(0.0),
            ip: sample.ip.clone(),
            device: sample.device.clone(),
        }
    }

    pub async fn case_view(case: &AnomalyCase) -> Result<CaseView, AppError> {
        let services = crate::api::context::services()?;
        let mut ids = vec![case.subject];
        ids.extend(case.decided_by);
        let users = services.accounts.store.find_users(&ids).await?;
        let email = |id| {
            users
                .iter()
                .find(|u| u.id == id)
                .map(|u| u.email.as_str().to_owned())
        };
        let state_now = services.trading.store.controls(case.subject).await?.state;
        Ok(CaseView {
            id: case.id.to_string(),
            subject_id: case.subject.to_string(),
            subject_email: email(case.subject).unwrap_or_else(|| "(deleted user)".into()),
            order_id: case.order.map(|o| o.to_string()),
            score: case.score,
            status: case.status.as_str().to_owned(),
            opened_at: canonical_time(case.opened_at),
            decided_at: case.decided_at.map(canonical_time),
            decided_by_email: case.decided_by.and_then(email),
            note: case.note.clone(),
            rationale: case.rationale.clone(),
            hits: hits(&case.evidence.hits),
            features: features(&case.evidence.anomaly),
            recent: case.evidence.recent.iter().map(trade_point).collect(),
            candidate: trade_point(&case.evidence.candidate),
            state_before: case.evidence.state_before,
            state_after: case.evidence.state_after,
            state_now,
        })
    }

    pub fn token_view(
        token: &domain::trading::AgentToken,
        now: time::OffsetDateTime,
    ) -> AgentTokenView {
        AgentTokenView {
            expires_at: canonical_time(token.expires_at),
            expired: token.is_expired(now),
            id: token.id.to_string(),
            name: token.name.clone(),
            prefix: token.prefix.clone(),
            scopes: token.scopes.iter().map(|s| s.as_str().to_owned()).collect(),
            created_at: canonical_time(token.created_at),
            last_used_at: token.last_used_at.map(canonical_time),
            revoked_at: token.revoked_at.map(canonical_time),
        }
    }

    /// A malformed id is reported exactly like an unknown one.
    pub fn uuid(raw: &str) -> Result<uuid::Uuid, AppError> {
        uuid::Uuid::parse_str(raw.trim()).map_err(|_| AppError::NotFound)
    }

    pub async fn positions_with_prices(
        portfolio: &domain::trading::Portfolio,
    ) -> Result<Vec<PositionView>, AppError> {
        let trading = crate::api::context::services()?.trading;
        let mut out = Vec::new();
        for p in &portfolio.positions {
            let price = trading
                .quote(domain::trading::Venue::PAPER, &p.symbol)
                .await
                .ok();
            out.push(PositionView {
                symbol: p.symbol.clone(),
                quantity: plain(p.quantity),
                average_cost: plain(p.average_cost.round_dp(2)),
                price: price.map(plain),
                market_value: price.map(|x| plain((x * p.quantity).round_dp(2))),
                unrealized_pnl: price
                    .map(|x| plain(((x - p.average_cost) * p.quantity).round_dp(2))),
            });
        }
        Ok(out)
    }
}
#[cfg(feature = "ssr")]
pub use support::plain;

// --- trader -----------------------------------------------------------------------------------

#[server(endpoint = "trading/ticket")]
pub async fn ticket() -> Result<TicketView, AppError> {
    use super::context::{request_meta, require_user, services};
    let (user, _) = require_user().await?;
    let services = services()?;
    let trading = &services.trading;
    let meta = request_meta();
    let context = trading.ticket_context(user.id, &meta).await?;
    // A paper feed that is down (fault injection) leaves the ticket without prices, not broken.
    let prices = match trading
        .quotes(user.id, "paper", &context.limits.symbol_allowlist)
        .await
    {
        Ok(quotes) => support::price_views(quotes),
        Err(domain::trading::TradingError::Unavailable(_)) => Vec::new(),
        Err(other) => return Err(other.into()),
    };
    let mut venues = vec![VenueView {
        id: "paper".into(),
        label: "Paper exchange (built in, no key needed)".into(),
    }];
    for key in services.vault.list_keys(user.id).await? {
        if key.status == domain::keys::KeyStatus::Active
            && key.scope == domain::keys::KeyScope::Trade
            && key.exchange != domain::keys::ExchangeName::Paper
        {
            venues.push(VenueView {
                id: key.id.to_string(),
                label: format!(
                    "{} {} — {} ({})",
                    key.exchange.label(),
                    key.environment.label().to_lowercase(),
                    key.label,
                    key.mask
                ),
            });
        }
    }
    let factors = services.stepup.summary(user.id).await?;
    Ok(TicketView {
        step_up_threshold: support::plain(context.step_up_threshold),
        state: context.controls.state,
        kill_switch_user: context.controls.kill_switch,
        kill_switch_global: context.global_kill,
        used_today: support::plain(context.used_today.round_dp(2)),
        orders_in_window: context.orders_in_window,
        cash: support::plain(context.portfolio.cash.round_dp(2)),
        positions: support::positions_with_prices(&context.portfolio).await?,
        prices,
        venues,
        open_cases: context.open_cases,
        has_security_key: factors.security_keys.iter().any(|k| k.flagged_at.is_none()),
        has_totp: factors.totp_enabled,
        limits: context.limits,
    })
}

/// `price` is the limit for a limit order and, for a market order, the quote the trader saw
/// (and approved, for a large order).
/// The ticket's prices on another account (a Binance key quotes Binance's prices).
#[server(endpoint = "trading/quotes")]
pub async fn venue_quotes(venue: String) -> Result<Vec<PriceView>, AppError> {
    use super::context::{request_meta, require_user, services};

    let (user, _) = require_user().await?;
    let trading = &services()?.trading;
    let limits = trading.limits_for(user.id, &request_meta()).await?;
    let quotes = trading
        .quotes(user.id, &venue, &limits.symbol_allowlist)
        .await?;
    Ok(support::price_views(quotes))
}

#[server(endpoint = "trading/place")]
pub async fn place_order(
    venue: String,
    symbol: String,
    side: String,
    order_type: String,
    quantity: String,
    price: Option<String>,
    approval_nonce: Option<String>,
) -> Result<OrderView, AppError> {
    use super::context::{request_meta, require_user, services};
    use domain::trading::{OrderRequest, OrderSource};

    let (user, _) = require_user().await?;
    let (limit_price, quoted_price) = if order_type.trim().eq_ignore_ascii_case("limit") {
        (price, None)
    } else {
        (None, price)
    };
    let order = services()?
        .trading
        .place(
            &user,
            OrderRequest {
                venue,
                symbol,
                side,
                order_type,
                quantity,
                limit_price,
                quoted_price,
                approval_nonce,
            },
            OrderSource::Ticket,
            request_meta(),
        )
        .await?;
    Ok(support::order_view(&order))
}

#[server(endpoint = "trading/orders")]
pub async fn list_orders() -> Result<Vec<OrderView>, AppError> {
    use super::context::{require_user, services};

    let (user, _) = require_user().await?;
    let orders = services()?.trading.orders(user.id, 200).await?;
    Ok(orders.iter().map(support::order_view).collect())
}

#[server(endpoint = "trading/order")]
pub async fn get_order(id: String) -> Result<OrderView, AppError> {
    use super::context::{require_user, services};
    use domain::trading::OrderId;

    let (user, _) = require_user().await?;
    let id = OrderId(support::uuid(&id)?);
    let order = services()?.trading.order(user.id, id).await?;
    Ok(support::order_view(&order))
}

#[server(endpoint = "trading/cancel")]
pub async fn cancel_order(id: String) -> Result<OrderView, AppError> {
    use super::context::{request_meta, require_user, services};
    use domain::trading::OrderId;

    let (user, _) = require_user().await?;
    let id = OrderId(support::uuid(&id)?);
    let order = services()?
        .trading
        .cancel(user.id, id, request_meta())
        .await?;
    Ok(support::order_view(&order))
}

/// The owner approves an order a reviewer released that still needs their step-up: the
/// approval (`approval_nonce`, from `stepup/order-approve`) must be bound to exactly this
/// order's venue, type and terms. Then the order is sent.
#[server(endpoint = "trading/approve-held")]
pub async fn approve_held_order(id: String, approval_nonce: String) -> Result<OrderView, AppError> {
    use super::context::{request_meta, require_user, services};
    use domain::trading::OrderId;

    let (user, _) = require_user().await?;
    let id = OrderId(support::uuid(&id)?);
    let order = services()?
        .trading
        .approve_held(user.id, id, &approval_nonce, request_meta())
        .await?;
    Ok(support::order_view(&order))
}

#[server(endpoint = "trading/portfolio")]
pub async fn portfolio() -> Result<PortfolioView, AppError> {
    use super::context::{require_user, services};
    use domain::audit::canonical_time;

    let (user, _) = require_user().await?;
    let trading = &services()?.trading;
    let fills = trading.fills(user.id).await?;
    let portfolio = trading.portfolio(user.id).await?;
    Ok(PortfolioView {
        cash: support::plain(portfolio.cash.round_dp(2)),
        positions: support::positions_with_prices(&portfolio).await?,
        fills: fills
            .iter()
            .rev()
            .take(200)
            .map(|f| FillView {
                order_id: f.order.to_string(),
                symbol: f.symbol.clone(),
                side: f.side.as_str().to_owned(),
                quantity: support::plain(f.quantity),
                price: support::plain(f.price),
                at: canonical_time(f.at),
            })
            .collect(),
    })
}

/// The banner's data; `None` when nobody is signed in.
#[server(endpoint = "trading/status")]
pub async fn trading_status() -> Result<Option<TradingStatusView>, AppError> {
    use super::context::{current_user, services};
    use domain::keys::ExchangeName;

    let Some((user, _)) = current_user().await? else {
        return Ok(None);
    };
    let services = services()?;
    let trading = &services.trading;
    let controls = trading.store.controls(user.id).await?;
    let now = services.clock.now();
    let paused = ExchangeName::ALL
        .iter()
        .flat_map(|e| e.environments().iter().map(move |env| (*e, *env)))
        .filter(|venue| trading.breakers.paused_until(*venue, now).is_some())
        .map(|(e, env)| format!("{} {}", e.label(), env.label().to_lowercase()))
        .collect();
    Ok(Some(TradingStatusView {
        global_kill: trading.store.global_kill_switch().await?,
        user_kill: controls.kill_switch,
        state: controls.state,
        open_cases: trading.store.open_cases_for(user.id).await?,
        paused,
    }))
}

// --- admin: risk controls -----------------------------------------------------------------------

#[server(endpoint = "risk/overview")]
pub async fn risk_overview() -> Result<RiskOverviewView, AppError> {
    use super::context::{require_role, services};
    use domain::account::Role;
    use domain::audit::canonical_time;
    use domain::risk::LimitField;

    let admin = require_role(&[Role::Admin]).await?;
    let services = services()?;
    let trading = &services.trading;
    let users = services.accounts.store.list_users().await?;
    let mut views = Vec::new();
    for user in &users {
        let controls = trading.store.controls(user.id).await?;
        let (_, own) = trading.store.limits(user.id).await?;
        views.push(UserControlView {
            user_id: user.id.to_string(),
            email: user.email.as_str().to_owned(),
            role: user.role.as_str().to_owned(),
            state: controls.state,
            kill_switch: controls.kill_switch,
            autonomous: controls.autonomous,
            open_cases: trading.store.open_cases_for(user.id).await?,
            overrides: own
                .iter()
                .filter_map(|(key, value)| {
                    LimitField::from_key(key).map(|f| LimitRow {
                        key: key.clone(),
                        label: f.label().to_owned(),
                        help: f.help().to_owned(),
                        value: Some(value.clone()),
                    })
                })
                .collect(),
        });
    }
    let (global, _) = trading.store.limits(admin.id).await?;
    Ok(RiskOverviewView {
        global_kill: trading.store.global_kill_switch().await?,
        limits: LimitField::ALL
            .iter()
            .map(|f| LimitRow {
                key: f.key().to_owned(),
                label: f.label().to_owned(),
                help: f.help().to_owned(),
                value: global.get(f.key()).cloned(),
            })
            .collect(),
        users: views,
        blocklist: trading
            .store
            .blocklist()
            .await?
            .into_iter()
            .map(|b| BlockView {
                id: b.id.to_string(),
                cidr: b.cidr,
                note: b.note,
                created_at: canonical_time(b.created_at),
            })
            .collect(),
    })
}

/// Global kill switch (MiFID II): stops every new order; cancels still work. Turning it on
/// cancels every resting order at its venue; returns how many were cancelled.
#[server(endpoint = "risk/kill-switch")]
pub async fn set_kill_switch(on: bool) -> Result<u32, AppError> {
    use super::context::{request_meta, require_admin, services};

    let admin = require_admin().await?;
    let cancelled = services()?
        .trading
        .set_global_kill_switch(admin.id, on, request_meta())
        .await?;
    Ok(u32::try_from(cancelled).unwrap_or(u32::MAX))
}

/// Changes another user's trading state or kill switch (never the admin's own). Stopping the
/// user cancels their resting orders; returns how many were cancelled.
#[server(endpoint = "risk/user-controls")]
pub async fn set_user_controls(
    user_id: String,
    state: Option<String>,
    kill_switch: Option<bool>,
) -> Result<u32, AppError> {
    use super::context::{request_meta, require_admin, services};
    use domain::account::UserId;
    use domain::trading::ControlsChange;

    let admin = require_admin().await?;
    let target = UserId(support::uuid(&user_id)?);
    let services = services()?;
    if services.accounts.store.find_user(target).await?.is_none() {
        return Err(AppError::NotFound);
    }
    let state = match state.as_deref() {
        None | Some("") => None,
        Some(raw) => Some(TradingState::parse(raw).ok_or_else(|| {
            AppError::Invalid("State must be active, reducing or halted.".into())
        })?),
    };
    let changed = services
        .trading
        .change_controls(
            admin.id,
            target,
            ControlsChange {
                state,
                kill_switch,
                autonomous: None,
            },
            request_meta(),
        )
        .await?;
    Ok(u32::try_from(changed.cancelled).unwrap_or(u32::MAX))
}

/// Sets a global limit (`user_id` empty) or a user's override; an empty value clears the
/// override.
#[server(endpoint = "risk/set-limit")]
pub async fn set_limit(
    user_id: Option<String>,
    field: String,
    value: Option<String>,
) -> Result<(), AppError> {
    use super::context::{request_meta, require_admin, services};
    use domain::account::UserId;

    let admin = require_admin().await?;
    let services = services()?;
    let target = match user_id.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(raw) => {
            let id = UserId(support::uuid(raw)?);
            if services.accounts.store.find_user(id).await?.is_none() {
                return Err(AppError::NotFound);
            }
            Some(id)
        }
    };
    let value = value.filter(|v| !v.trim().is_empty());
    services
        .trading
        .set_limit(admin.id, target, &field, value.as_deref(), request_meta())
        .await?;
    Ok(())
}

#[server(endpoint = "risk/block-ip")]
pub async fn block_ip(cidr: String, note: String) -> Result<(), AppError> {
    use super::context::{request_meta, require_admin, services};

    let admin = require_admin().await?;
    services()?
        .trading
        .add_blocked_range(admin.id, &cidr, &note, request_meta())
        .await?;
    Ok(())
}

#[server(endpoint = "risk/unblock-ip")]
pub async fn unblock_ip(id: String) -> Result<(), AppError> {
    use super::context::{request_meta, require_admin, services};

    let admin = require_admin().await?;
    let id = support::uuid(&id)?;
    services()?
        .trading
        .remove_blocked_range(admin.id, id, request_meta())
        .await?;
    Ok(())
}

// --- reviewers: anomaly cases -------------------------------------------------------------------

#[server(endpoint = "review/cases")]
pub async fn list_cases(status: Option<String>) -> Result<Vec<CaseView>, AppError> {
    use super::context::{require_role, services};
    use domain::account::Role;
    use domain::trading::CaseStatus;

    require_role(&[Role::Reviewer, Role::Admin]).await?;
    let status = match status.as_deref() {
        None | Some("") | Some("all") => None,
        Some(raw) => Some(
            CaseStatus::parse(raw)
                .ok_or_else(|| AppError::Invalid("Unknown case status.".into()))?,
        ),
    };
    let cases = services()?.trading.cases(status).await?;
    let mut views = Vec::with_capacity(cases.len());
    for case in &cases {
        views.push(support::case_view(case).await?);
    }
    Ok(views)
}

#[server(endpoint = "review/case")]
pub async fn get_case(id: String) -> Result<CaseView, AppError> {
    use super::context::{require_role, services};
    use domain::account::Role;
    use domain::trading::CaseId;

    require_role(&[Role::Reviewer, Role::Admin]).await?;
    let case = services()?
        .trading
        .case(CaseId(support::uuid(&id)?))
        .await?;
    support::case_view(&case).await
}

#[server(endpoint = "review/decide")]
pub async fn decide_case(id: String, decision: String, note: String) -> Result<CaseView, AppError> {
    use super::context::{request_meta, require_role, services};
    use domain::account::Role;
    use domain::trading::CaseId;

    let reviewer = require_role(&[Role::Reviewer, Role::Admin]).await?;
    let release = match decision.as_str() {
        "release" => true,
        "confirm" => false,
        _ => {
            return Err(AppError::Invalid(
                "Decide to release the trader or confirm the quarantine.".into(),
            ));
        }
    };
    let case = services()?
        .trading
        .decide_case(
            reviewer.id,
            CaseId(support::uuid(&id)?),
            release,
            &note,
            request_meta(),
        )
        .await?;
    support::case_view(&case).await
}

// --- trader: agents -----------------------------------------------------------------------------

#[server(endpoint = "agent/overview")]
pub async fn agent_overview() -> Result<AgentOverviewView, AppError> {
    use super::context::{request_meta, require_user, services};
    use domain::audit::canonical_time;

    let (user, _) = require_user().await?;
    let services = services()?;
    let now = services.clock.now();
    let trading = services.trading;
    let tokens = trading.agent_tokens(user.id).await?;
    let proposals = trading.proposals(user.id).await?;
    let controls = trading.store.controls(user.id).await?;
    let limits = trading.limits_for(user.id, &request_meta()).await?;
    Ok(AgentOverviewView {
        proposals: proposals
            .iter()
            .map(|p| ProposalView {
                id: p.id.to_string(),
                token_name: tokens
                    .iter()
                    .find(|t| t.id == p.token)
                    .map(|t| t.name.clone()),
                symbol: p.symbol.clone(),
                side: p.side.as_str().to_owned(),
                order_type: p.order_type.as_str().to_owned(),
                quantity: support::plain(p.quantity),
                limit_price: p.limit_price.map(support::plain),
                rationale: p.rationale.clone(),
                status: p.status.as_str().to_owned(),
                order_id: p.order.map(|o| o.to_string()),
                created_at: canonical_time(p.created_at),
            })
            .collect(),
        tokens: tokens.iter().map(|t| support::token_view(t, now)).collect(),
        autonomous: controls.autonomous,
        autonomous_cap: support::plain(limits.autonomous_cap),
    })
}

/// Creates a bearer token for a bot. A token is a credential, so this needs a fresh step-up
/// with any second factor; someone without one is asked to set one up first. It expires
/// after `lifetime_days` (default 90, at most 365).
#[server(endpoint = "agent/token-create")]
pub async fn create_agent_token(
    name: String,
    scopes: Vec<String>,
    #[server(default)] lifetime_days: Option<u32>,
) -> Result<CreatedAgentToken, AppError> {
    use super::context::{request_meta, require_step_up, require_user, services};
    use super::stepup::StepUpNeed;
    use domain::stepup::SensitiveAction;
    use secrecy::ExposeSecret;

    let (user, _) = require_user().await?;
    let services = services()?;
    if !services.stepup.summary(user.id).await?.has_any() {
        return Err(AppError::StepUpRequired(StepUpNeed::SetUpFactor));
    }
    let (stepped_up, _) = require_step_up(SensitiveAction::ManageFactors).await?;
    if stepped_up.id != user.id {
        return Err(AppError::Forbidden);
    }
    let created = services
        .trading
        .create_agent_token(user.id, &name, &scopes, lifetime_days, request_meta())
        .await?;
    Ok(CreatedAgentToken {
        token: support::token_view(&created.token, services.clock.now()),
        secret: created.secret.expose_secret().to_owned(),
    })
}

#[server(endpoint = "agent/token-revoke")]
pub async fn revoke_agent_token(id: String) -> Result<(), AppError> {
    use super::context::{request_meta, require_user, services};

    let (user, _) = require_user().await?;
    services()?
        .trading
        .revoke_agent_token(user.id, support::uuid(&id)?, request_meta())
        .await?;
    Ok(())
}

#[server(endpoint = "agent/sign-off")]
pub async fn sign_off_proposal(
    id: String,
    quoted_price: Option<String>,
    approval_nonce: Option<String>,
) -> Result<OrderView, AppError> {
    use super::context::{request_meta, require_user, services};

    let (user, _) = require_user().await?;
    let order = services()?
        .trading
        .sign_off(
            &user,
            support::uuid(&id)?,
            quoted_price,
            approval_nonce,
            request_meta(),
        )
        .await?;
    Ok(support::order_view(&order))
}

#[server(endpoint = "agent/reject")]
pub async fn reject_proposal(id: String) -> Result<(), AppError> {
    use super::context::{request_meta, require_user, services};

    let (user, _) = require_user().await?;
    services()?
        .trading
        .reject_proposal(user.id, support::uuid(&id)?, request_meta())
        .await?;
    Ok(())
}

#[server(endpoint = "agent/autonomous")]
pub async fn set_autonomous(on: bool) -> Result<(), AppError> {
    use super::context::{request_meta, require_step_up, services};
    use domain::stepup::SensitiveAction;

    // Letting a bot trade unattended is a privilege change: it needs a fresh step-up.
    let (user, _) = require_step_up(SensitiveAction::ManageFactors).await?;
    services()?
        .trading
        .set_autonomous(user.id, on, request_meta())
        .await?;
    Ok(())
}
