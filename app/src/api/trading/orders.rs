//! The trader's ticket, orders and portfolio, and the trading banner.

use leptos::prelude::*;

use super::*;
use crate::error::AppError;

#[server(endpoint = "trading/ticket")]
pub async fn ticket() -> Result<TicketView, AppError> {
    use crate::api::context::{request_meta, require_user, services};

    let (user, _) = require_user().await?;
    let ticket = services()?.trading.ticket(user.id, &request_meta()).await?;
    Ok(views::ticket_view(ticket))
}

/// The ticket's prices on another account (a Binance key quotes Binance's prices).
#[server(endpoint = "trading/quotes")]
pub async fn venue_quotes(venue: String) -> Result<Vec<PriceView>, AppError> {
    use crate::api::context::{request_meta, require_user, services};
    use domain::trading::VenueChoice;

    let (user, _) = require_user().await?;
    let venue = VenueChoice::parse(&venue)?;
    let quotes = services()?
        .trading
        .venue_quotes(user.id, venue, &request_meta())
        .await?;
    Ok(views::price_views(quotes))
}

/// `price` is the limit for a limit order and, for a market order, the quote the trader saw
/// (and approved, for a large order).
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
    use crate::api::context::{request_meta, require_user, services};
    use domain::order::{OrderForm, OrderTicket, OrderType};
    use domain::trading::VenueChoice;

    let (user, _) = require_user().await?;
    let (limit_price, quoted_price) = match OrderType::parse(&order_type) {
        Some(OrderType::Limit) => (price, None),
        _ => (None, price),
    };
    let ticket = OrderTicket::try_from(OrderForm {
        symbol,
        side,
        order_type,
        quantity,
        limit_price,
        quoted_price,
    })?;
    let venue = VenueChoice::parse(&venue)?;
    let order = services()?
        .trading
        .place(user.id, venue, ticket, approval_nonce, request_meta())
        .await?;
    Ok(views::order_view(&order))
}

#[server(endpoint = "trading/orders")]
pub async fn list_orders() -> Result<Vec<OrderView>, AppError> {
    use crate::api::context::{require_user, services};

    let (user, _) = require_user().await?;
    let orders = services()?.trading.orders(user.id, 200).await?;
    Ok(orders.iter().map(views::order_view).collect())
}

/// How many orders the trade page lists; the orders page has them all.
pub const RECENT_ORDERS: usize = 8;

/// The trade page's few newest orders: only these are sent (and embedded in the page for
/// hydration), not the orders page's 200.
#[server(endpoint = "trading/recent-orders")]
pub async fn recent_orders() -> Result<Vec<OrderView>, AppError> {
    use crate::api::context::{require_user, services};

    let (user, _) = require_user().await?;
    let orders = services()?
        .trading
        .orders(user.id, RECENT_ORDERS as u64)
        .await?;
    Ok(orders.iter().map(views::order_view).collect())
}

#[server(endpoint = "trading/order")]
pub async fn get_order(id: String) -> Result<OrderView, AppError> {
    use crate::api::context::{require_user, services};
    use domain::trading::OrderId;

    let (user, _) = require_user().await?;
    let id = OrderId(views::uuid(&id)?);
    let order = services()?.trading.order(user.id, id).await?;
    Ok(views::order_view(&order))
}

#[server(endpoint = "trading/cancel")]
pub async fn cancel_order(id: String) -> Result<OrderView, AppError> {
    use crate::api::context::{request_meta, require_user, services};
    use domain::trading::OrderId;

    let (user, _) = require_user().await?;
    let id = OrderId(views::uuid(&id)?);
    let order = services()?
        .trading
        .cancel(user.id, id, request_meta())
        .await?;
    Ok(views::order_view(&order))
}

/// The owner approves an order a reviewer released that still needs their step-up: the
/// approval (`approval_nonce`, from `stepup/order-approve`) must be bound to exactly this
/// order's venue, type and terms. Then the order is sent.
#[server(endpoint = "trading/approve-held")]
pub async fn approve_held_order(id: String, approval_nonce: String) -> Result<OrderView, AppError> {
    use crate::api::context::{request_meta, require_user, services};
    use domain::trading::OrderId;

    let (user, _) = require_user().await?;
    let id = OrderId(views::uuid(&id)?);
    let order = services()?
        .trading
        .approve_held(user.id, id, &approval_nonce, request_meta())
        .await?;
    Ok(views::order_view(&order))
}

#[server(endpoint = "trading/portfolio")]
pub async fn portfolio() -> Result<PortfolioView, AppError> {
    use crate::api::context::{require_user, services};

    let (user, _) = require_user().await?;
    let report = services()?.trading.portfolio_report(user.id).await?;
    Ok(PortfolioView {
        cash: views::plain(report.cash.round_dp(2)),
        positions: report.positions.iter().map(views::position_view).collect(),
        fills: report.fills.iter().map(views::fill_view).collect(),
    })
}

/// The banner's data; `None` when nobody is signed in.
#[server(endpoint = "trading/status")]
pub async fn trading_status() -> Result<Option<TradingStatusView>, AppError> {
    use crate::api::context::{current_user, services};

    let Some((user, _)) = current_user().await? else {
        return Ok(None);
    };
    let status = services()?.trading.trading_status(user.id).await?;
    Ok(Some(views::status_view(status)))
}
