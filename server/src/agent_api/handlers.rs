//! The agent API's handlers: parse the request, call one trading use case, map the answer.

use app::error::AppError;
use axum::body::{Body, Bytes, to_bytes};
use axum::extract::{Query, Request, State};
use axum::response::Response;
use domain::audit::canonical_time;
use domain::trading::{AgentScope, Venue};
use http::StatusCode;
use http::request::Parts;

use super::AgentState;
use super::auth::{authenticate, authorize, hold, request_meta};
use super::request::{
    MAX_SYMBOLS, ProposalBody, ProposalError, SymbolsError, parse_proposal, parse_symbols,
};
use super::responses::{failure, json, trading_failure, truncate};
use super::wire::{
    ErrorBody, Hold, PortfolioResponse, PriceView, PricesQuery, PricesResponse, ProposalAccepted,
};

/// A proposal body larger than this is a HOLD (the rationale is capped at 2000 characters).
const MAX_BODY_BYTES: usize = 16 * 1024;

/// Current paper-exchange prices.
#[utoipa::path(
    get,
    path = "/api/agent/v1/prices",
    tag = "agent",
    params(PricesQuery),
    responses(
        (status = 200, description = "The prices", body = PricesResponse),
        (status = 400, description = "No, too many or unknown symbols", body = ErrorBody),
        (status = 401, description = "Missing, unknown, revoked or expired token", body = ErrorBody),
        (status = 429, description = "Over the token's budget of requests per minute; see Retry-After", body = ErrorBody),
        (status = 403, description = "The token lacks prices:read", body = Hold),
        (status = 503, description = "The paper exchange has no price right now", body = ErrorBody)
    ),
    security(("agent_token" = []))
)]
pub(super) async fn prices(State(state): State<AgentState>, parts: Parts) -> Response {
    let meta = match authorize(&state, &parts, AgentScope::ReadPrices, "read prices").await {
        Ok((_, meta)) => meta,
        Err(response) => return response,
    };
    let symbols = match Query::<PricesQuery>::try_from_uri(&parts.uri)
        .map_err(|_| AppError::Invalid("Pass symbols=BTCUSDT,ETHUSDT.".into()))
        .and_then(|Query(query)| symbols(query.symbols.as_deref().unwrap_or("")))
    {
        Ok(symbols) => symbols,
        Err(err) => return failure(err),
    };
    let mut prices = Vec::with_capacity(symbols.len());
    for symbol in symbols {
        match state.trading.quote(Venue::PAPER, &symbol).await {
            Ok(quote) => prices.push(PriceView {
                symbol: quote.symbol.to_string(),
                price: quote.price.normalize().to_string(),
                at: canonical_time(quote.at),
            }),
            Err(err) => return trading_failure(err, &meta),
        }
    }
    json(StatusCode::OK, &PricesResponse { prices })
}

/// The distinct symbols of a comma-separated list, worded for the agent.
fn symbols(raw: &str) -> Result<Vec<domain::order::Symbol>, AppError> {
    parse_symbols(raw).map_err(|err| match err {
        SymbolsError::Empty => AppError::Invalid("Pass symbols=BTCUSDT,ETHUSDT.".into()),
        SymbolsError::Symbol(err) => AppError::from(err),
        SymbolsError::TooMany => {
            AppError::Invalid(format!("At most {MAX_SYMBOLS} symbols per request."))
        }
    })
}

/// The token owner's paper cash and open positions.
#[utoipa::path(
    get,
    path = "/api/agent/v1/portfolio",
    tag = "agent",
    responses(
        (status = 200, description = "The portfolio of the token's owner", body = PortfolioResponse),
        (status = 401, description = "Missing, unknown, revoked or expired token", body = ErrorBody),
        (status = 429, description = "Over the token's budget of requests per minute; see Retry-After", body = ErrorBody),
        (status = 403, description = "The token lacks portfolio:read", body = Hold)
    ),
    security(("agent_token" = []))
)]
pub(super) async fn portfolio(State(state): State<AgentState>, parts: Parts) -> Response {
    let (token, meta) = match authorize(
        &state,
        &parts,
        AgentScope::ReadPortfolio,
        "read the portfolio",
    )
    .await
    {
        Ok(found) => found,
        Err(response) => return response,
    };
    match state.trading.portfolio(token.owner).await {
        Ok(portfolio) => json(StatusCode::OK, &PortfolioResponse::from(&portfolio)),
        Err(err) => trading_failure(err, &meta),
    }
}

/// Proposes a trade. It is queued for the trader's sign-off (or placed by autonomous mode, when
/// the trader opted in and it is below the cap). Anything malformed is a HOLD.
#[utoipa::path(
    post,
    path = "/api/agent/v1/proposals",
    tag = "agent",
    request_body = ProposalBody,
    responses(
        (status = 202, description = "Queued for the trader", body = ProposalAccepted),
        (status = 401, description = "Missing, unknown, revoked or expired token", body = ErrorBody),
        (status = 429, description = "Over the token's budget of requests per minute; see Retry-After", body = ErrorBody),
        (status = 403, description = "The token lacks proposals:write", body = Hold),
        (status = 422, description = "Malformed proposal: nothing queued", body = Hold),
        (status = 503, description = "Could not be recorded: nothing queued", body = ErrorBody)
    ),
    security(("agent_token" = []))
)]
pub(super) async fn propose(State(state): State<AgentState>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let (token, meta) = match authorize(&state, &parts, AgentScope::Propose, "propose trades").await
    {
        Ok(found) => found,
        Err(response) => return response,
    };
    let malformed = |reason: String| {
        hold(
            &state,
            &token,
            StatusCode::UNPROCESSABLE_ENTITY,
            reason,
            meta.clone(),
        )
    };
    let body = match read_body(body).await {
        Ok(body) => body,
        Err(reason) => return malformed(reason).await,
    };
    let (proposal, ticket) = match parse_proposal(&body) {
        Ok(parsed) => parsed,
        Err(ProposalError::Json(e)) => {
            return malformed(truncate(&format!("malformed proposal: {e}"))).await;
        }
        Err(ProposalError::Form(err)) => return malformed(AppError::from(err).to_string()).await,
        Err(ProposalError::RationaleNul) => {
            return malformed("the rationale must not contain NUL characters".into()).await;
        }
    };
    match state
        .trading
        .propose(&token, ticket, &proposal.rationale, meta.clone())
        .await
    {
        Ok(proposal) => json(
            StatusCode::ACCEPTED,
            &ProposalAccepted {
                decision: "queued".into(),
                placed_order: proposal.order.map(|o| o.0),
                proposal: (&proposal).into(),
            },
        ),
        Err(err) => match AppError::from_trading(err, meta.request_id.clone()) {
            // A refusal is the agent's to fix, like a malformed body: a HOLD, recorded.
            refused @ AppError::Invalid(_) => malformed(refused.to_string()).await,
            refused @ AppError::Forbidden => {
                hold(
                    &state,
                    &token,
                    StatusCode::FORBIDDEN,
                    refused.to_string(),
                    meta,
                )
                .await
            }
            other => failure(other),
        },
    }
}

async fn read_body(body: Body) -> Result<Bytes, String> {
    to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|_| format!("the request body is larger than {MAX_BODY_BYTES} bytes"))
}

/// Every other method and path under the prefix: an agent may not do it. A valid token's
/// attempt is recorded as a held signal; without one, 401.
pub(super) async fn refuse_operation(State(state): State<AgentState>, parts: Parts) -> Response {
    let meta = request_meta(&parts);
    let token = match authenticate(&state, &parts, &meta).await {
        Ok(token) => token,
        Err(response) => return response,
    };
    let reason = truncate(&format!(
        "agents cannot {} {}",
        parts.method,
        parts.uri.path()
    ));
    hold(&state, &token, StatusCode::FORBIDDEN, reason, meta).await
}
