//! The agent API: a small JSON API for trading bots, authenticated by a bearer token the trader
//! created (`Authorization: Bearer cpa_...`), never by a session cookie.
//!
//! An agent may read prices, read its trader's portfolio and propose trades, each only with the
//! matching scope. Everything else under `/api/agent/v1` (placing, cancelling, withdrawing,
//! reading keys, approving its own proposals, ...) is refused with a HOLD that is recorded in
//! the audit log. A malformed proposal is a HOLD too: nothing is queued, nothing is placed.
//!
//! The OpenAPI document is served, without a token, at [`OPENAPI_PATH`].

use std::net::SocketAddr;

use axum::Router;
use axum::body::{Body, Bytes, to_bytes};
use axum::extract::{ConnectInfo, Query, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use domain::audit::{RequestMeta, canonical_time};
use domain::trading::{
    AgentScope, AgentToken, OrderRequest, Portfolio, Proposal, TradingError, TradingService, Venue,
};
use http::request::Parts;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde::{Deserialize, Serialize};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

/// Where the agent API is mounted.
pub const PREFIX: &str = "/api/agent/v1";
/// Where its OpenAPI document is served (public).
pub const OPENAPI_PATH: &str = "/api/agent/openapi.json";

/// At most this many symbols in one price request.
pub const MAX_SYMBOLS: usize = 20;
/// A proposal body larger than this is a HOLD (the rationale is capped at 2000 characters).
const MAX_BODY_BYTES: usize = 16 * 1024;
/// How much of a caller-supplied path or parser message a HOLD reason repeats.
const MAX_REASON_CHARS: usize = 300;
const MAX_USER_AGENT_CHARS: usize = 256;
/// The security scheme's name in the OpenAPI document.
const SECURITY_SCHEME: &str = "agent_token";

#[derive(Debug, Clone)]
struct AgentState {
    trading: TradingService,
}

/// The agent API's routes, with their own state. Mount it outside the session and same-origin
/// (CSRF) layers: agents send no cookies and no `Origin`, and the bearer token is the only
/// credential these routes look at.
pub fn router(trading: TradingService) -> Router {
    Router::new()
        .route(OPENAPI_PATH, get(openapi_json))
        .route(
            "/api/agent/v1/prices",
            get(prices).fallback(refuse_operation),
        )
        .route(
            "/api/agent/v1/portfolio",
            get(portfolio).fallback(refuse_operation),
        )
        .route(
            "/api/agent/v1/proposals",
            post(propose).fallback(refuse_operation),
        )
        .route(PREFIX, any(refuse_operation))
        .route("/api/agent/v1/", any(refuse_operation))
        .route("/api/agent/v1/{*rest}", any(refuse_operation))
        .with_state(AgentState { trading })
}

// --- wire types -------------------------------------------------------------------------------

/// An error that is not a trading decision (authentication, bad query, outage).
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// `unauthorized`, `invalid_request`, `unavailable` or `internal`.
    pub error: String,
    /// What to fix, when there is something to fix.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// A refusal: nothing was queued or placed, and the attempt is in the trader's audit log.
#[derive(Debug, Serialize, ToSchema)]
pub struct Hold {
    /// Always `hold`.
    #[schema(example = "hold")]
    pub decision: String,
    pub reason: String,
}

#[derive(Debug, Deserialize)]
struct PricesQuery {
    symbols: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PriceView {
    #[schema(example = "BTCUSDT")]
    pub symbol: String,
    /// A decimal, as a string.
    #[schema(example = "64250.5")]
    pub price: String,
    /// When the price was read (RFC 3339, UTC).
    pub at: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PricesResponse {
    pub prices: Vec<PriceView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PositionView {
    pub symbol: String,
    /// A decimal, as a string.
    pub quantity: String,
    /// Average price paid for the quantity held; a decimal, as a string.
    pub average_cost: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PortfolioResponse {
    /// Paper cash balance; a decimal, as a string.
    pub cash: String,
    /// The cash balance's currency.
    #[schema(example = "USDT")]
    pub currency: String,
    pub positions: Vec<PositionView>,
}

#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ProposalSide {
    Buy,
    Sell,
}

#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ProposalType {
    Market,
    Limit,
}

/// A trade the agent proposes; the trader signs it off (or autonomous mode places it).
/// Decimals are strings (`"0.01"`): no numbers, exponents or signs. Unknown fields are refused.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProposalBody {
    #[schema(example = "BTCUSDT")]
    pub symbol: String,
    pub side: ProposalSide,
    #[serde(rename = "type")]
    pub order_type: ProposalType,
    #[schema(example = "0.01")]
    pub quantity: String,
    /// Limit proposals only.
    #[serde(default)]
    pub limit_price: Option<String>,
    /// Shown to the trader as quoted text (at most 2000 characters); never interpreted.
    pub rationale: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProposalView {
    pub id: uuid::Uuid,
    /// `pending` (waiting for the trader), `placed` or `rejected`.
    pub status: String,
    pub symbol: String,
    pub side: String,
    #[serde(rename = "type")]
    pub order_type: String,
    pub quantity: String,
    pub limit_price: Option<String>,
    pub rationale: String,
    pub created_at: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProposalAccepted {
    /// Always `queued`.
    #[schema(example = "queued")]
    pub decision: String,
    pub proposal: ProposalView,
    /// The order autonomous mode placed for it, if it did.
    pub placed_order: Option<uuid::Uuid>,
}

// --- OpenAPI ----------------------------------------------------------------------------------

struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            SECURITY_SCHEME,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("cpa_ token")
                    .description(Some(
                        "An agent token created by the trader on the Agents page. It can read \
                         prices and the trader's portfolio and propose trades, as its scopes \
                         allow; it can never place, cancel or withdraw.",
                    ))
                    .build(),
            ),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "CryptoPulse agent API",
        description = "Read prices and your trader's portfolio, and propose trades for the \
                       trader to sign off. Any other call is refused with a HOLD and recorded."
    ),
    paths(prices, portfolio, propose),
    components(schemas(
        ErrorBody,
        Hold,
        PriceView,
        PricesResponse,
        PositionView,
        PortfolioResponse,
        ProposalSide,
        ProposalType,
        ProposalBody,
        ProposalView,
        ProposalAccepted
    )),
    modifiers(&BearerScheme),
    security(("agent_token" = [])),
    tags((name = "agent", description = "The trading-bot API"))
)]
pub struct ApiDoc;

async fn openapi_json() -> Response {
    axum::Json(ApiDoc::openapi()).into_response()
}

// --- responses --------------------------------------------------------------------------------

fn json(status: StatusCode, body: &impl Serialize) -> Response {
    (status, axum::Json(body)).into_response()
}

fn unauthorized() -> Response {
    let mut response = json(
        StatusCode::UNAUTHORIZED,
        &ErrorBody {
            error: "unauthorized".into(),
            message: None,
        },
    );
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

fn error(status: StatusCode, error: &str, message: Option<String>) -> Response {
    json(
        status,
        &ErrorBody {
            error: error.into(),
            message,
        },
    )
}

fn trading_failure(err: TradingError) -> Response {
    match err {
        TradingError::Invalid(msg) => error(StatusCode::BAD_REQUEST, "invalid_request", Some(msg)),
        TradingError::AuditUnavailable => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            Some("The audit log could not be written, so nothing was done.".into()),
        ),
        TradingError::Unavailable(msg) => {
            error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", Some(msg))
        }
        other => {
            tracing::error!(error = %other, "agent API request failed");
            error(StatusCode::INTERNAL_SERVER_ERROR, "internal", None)
        }
    }
}

fn truncate(text: &str) -> String {
    let mut out: String = text.chars().take(MAX_REASON_CHARS).collect();
    if text.chars().nth(MAX_REASON_CHARS).is_some() {
        out.push('…');
    }
    out
}

// --- request context --------------------------------------------------------------------------

/// The request's metadata as the request-context middleware recorded it; rebuilt from the
/// connection and headers if the router is served without that middleware.
fn request_meta(parts: &Parts) -> RequestMeta {
    if let Some(meta) = parts.extensions.get::<RequestMeta>() {
        return meta.clone();
    }
    RequestMeta {
        ip: parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| crate::security::middleware::canonical_ip(c.0.ip()).to_string()),
        user_agent: parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|ua| ua.chars().take(MAX_USER_AGENT_CHARS).collect()),
        request_id: None,
    }
}

/// The bearer value of the `Authorization` header, if there is exactly one well-formed one.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let value = values.next()?;
    if values.next().is_some() {
        return None;
    }
    let value = value.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = token.trim();
    (!token.is_empty()).then_some(token)
}

/// The live token behind the request, or the response to send (401 for a missing, unknown,
/// revoked or expired token, or 5xx on an outage).
async fn authenticate(state: &AgentState, parts: &Parts) -> Result<AgentToken, Response> {
    let Some(secret) = bearer(&parts.headers) else {
        return Err(unauthorized());
    };
    match state
        .trading
        .authenticate_agent(secret, &request_meta(parts))
        .await
    {
        Ok(token) => Ok(token),
        Err(TradingError::NotFound) => Err(unauthorized()),
        Err(other) => Err(trading_failure(other)),
    }
}

/// Records the refusal (`agent.signal_held`) and answers it. The refusal stands even if the
/// audit log cannot be written: nothing was done either way.
async fn hold(
    state: &AgentState,
    token: &AgentToken,
    status: StatusCode,
    reason: String,
    meta: RequestMeta,
) -> Response {
    if let Err(e) = state.trading.agent_held(token, &reason, meta).await {
        tracing::error!(error = %e, token = %token.id, "could not record an agent's held signal");
    }
    json(
        status,
        &Hold {
            decision: "hold".into(),
            reason,
        },
    )
}

/// Authenticates and checks one scope; the token, or the response to send.
async fn authorize(
    state: &AgentState,
    parts: &Parts,
    scope: AgentScope,
    what: &str,
) -> Result<(AgentToken, RequestMeta), Response> {
    let token = authenticate(state, parts).await?;
    let meta = request_meta(parts);
    if !token.allows(scope) {
        return Err(hold(
            state,
            &token,
            StatusCode::FORBIDDEN,
            format!(
                "this token may not {what} (it lacks the {} scope)",
                scope.as_str()
            ),
            meta,
        )
        .await);
    }
    Ok((token, meta))
}

// --- handlers ---------------------------------------------------------------------------------

/// Current paper-exchange prices.
#[utoipa::path(
    get,
    path = "/api/agent/v1/prices",
    tag = "agent",
    params(
        ("symbols" = String, Query,
         description = "Comma-separated symbols, at most 20", example = "BTCUSDT,ETHUSDT")
    ),
    responses(
        (status = 200, description = "The prices", body = PricesResponse),
        (status = 400, description = "No, too many or unknown symbols", body = ErrorBody),
        (status = 401, description = "Missing, unknown, revoked or expired token", body = ErrorBody),
        (status = 403, description = "The token lacks prices:read", body = Hold),
        (status = 503, description = "The paper exchange has no price right now", body = ErrorBody)
    ),
    security(("agent_token" = []))
)]
async fn prices(State(state): State<AgentState>, parts: Parts) -> Response {
    if let Err(response) = authorize(&state, &parts, AgentScope::ReadPrices, "read prices").await {
        return response;
    }
    let query = match Query::<PricesQuery>::try_from_uri(&parts.uri) {
        Ok(Query(query)) => query,
        Err(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                Some("Pass symbols=BTCUSDT,ETHUSDT.".into()),
            );
        }
    };
    let mut symbols: Vec<String> = Vec::new();
    for raw in query.symbols.as_deref().unwrap_or("").split(',') {
        let symbol = raw.trim().to_ascii_uppercase();
        if symbol.is_empty() {
            continue;
        }
        if !(2..=20).contains(&symbol.len()) || !symbol.chars().all(|c| c.is_ascii_alphanumeric()) {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                Some("A symbol is 2 to 20 letters or digits, e.g. BTCUSDT.".into()),
            );
        }
        if !symbols.contains(&symbol) {
            symbols.push(symbol);
        }
    }
    if symbols.is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            Some("Pass symbols=BTCUSDT,ETHUSDT.".into()),
        );
    }
    if symbols.len() > MAX_SYMBOLS {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            Some(format!("At most {MAX_SYMBOLS} symbols per request.")),
        );
    }
    let mut prices = Vec::with_capacity(symbols.len());
    for symbol in symbols {
        match state.trading.quote(Venue::PAPER, &symbol).await {
            Ok(price) => prices.push(PriceView {
                price: price.normalize().to_string(),
                at: canonical_time(state.trading.clock.now()),
                symbol,
            }),
            Err(TradingError::Invalid(_)) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    Some(format!("Unknown symbol {symbol}.")),
                );
            }
            Err(other) => return trading_failure(other),
        }
    }
    json(StatusCode::OK, &PricesResponse { prices })
}

/// The token owner's paper cash and open positions.
#[utoipa::path(
    get,
    path = "/api/agent/v1/portfolio",
    tag = "agent",
    responses(
        (status = 200, description = "The portfolio of the token's owner", body = PortfolioResponse),
        (status = 401, description = "Missing, unknown, revoked or expired token", body = ErrorBody),
        (status = 403, description = "The token lacks portfolio:read", body = Hold)
    ),
    security(("agent_token" = []))
)]
async fn portfolio(State(state): State<AgentState>, parts: Parts) -> Response {
    let token = match authorize(
        &state,
        &parts,
        AgentScope::ReadPortfolio,
        "read the portfolio",
    )
    .await
    {
        Ok((token, _)) => token,
        Err(response) => return response,
    };
    match state.trading.portfolio(token.owner).await {
        Ok(portfolio) => json(StatusCode::OK, &portfolio_view(&portfolio)),
        Err(e) => trading_failure(e),
    }
}

fn portfolio_view(portfolio: &Portfolio) -> PortfolioResponse {
    PortfolioResponse {
        cash: portfolio.cash.normalize().to_string(),
        currency: domain::trading::portfolio::QUOTE_CURRENCY.into(),
        positions: portfolio
            .positions
            .iter()
            .map(|p| PositionView {
                symbol: p.symbol.clone(),
                quantity: p.quantity.normalize().to_string(),
                average_cost: p.average_cost.normalize().to_string(),
            })
            .collect(),
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
        (status = 403, description = "The token lacks proposals:write", body = Hold),
        (status = 422, description = "Malformed proposal: nothing queued", body = Hold),
        (status = 503, description = "Could not be recorded: nothing queued", body = ErrorBody)
    ),
    security(("agent_token" = []))
)]
async fn propose(State(state): State<AgentState>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let (token, meta) = match authorize(&state, &parts, AgentScope::Propose, "propose trades").await
    {
        Ok(found) => found,
        Err(response) => return response,
    };
    let body = match read_body(body).await {
        Ok(body) => body,
        Err(reason) => {
            return hold(
                &state,
                &token,
                StatusCode::UNPROCESSABLE_ENTITY,
                reason,
                meta,
            )
            .await;
        }
    };
    let proposal = match serde_json::from_slice::<ProposalBody>(&body) {
        Ok(proposal) => proposal,
        Err(e) => {
            let reason = truncate(&format!("malformed proposal: {e}"));
            return hold(
                &state,
                &token,
                StatusCode::UNPROCESSABLE_ENTITY,
                reason,
                meta,
            )
            .await;
        }
    };
    let (side, order_type) = (
        match proposal.side {
            ProposalSide::Buy => "buy",
            ProposalSide::Sell => "sell",
        },
        match proposal.order_type {
            ProposalType::Market => "market",
            ProposalType::Limit => "limit",
        },
    );
    if matches!(proposal.order_type, ProposalType::Market) && proposal.limit_price.is_some() {
        let reason = "limit_price is only for limit proposals".to_owned();
        return hold(
            &state,
            &token,
            StatusCode::UNPROCESSABLE_ENTITY,
            reason,
            meta,
        )
        .await;
    }
    let request = OrderRequest {
        venue: "paper".into(),
        symbol: proposal.symbol,
        side: side.into(),
        order_type: order_type.into(),
        quantity: proposal.quantity,
        limit_price: proposal.limit_price,
        quoted_price: None,
        approval_nonce: None,
    };
    match state
        .trading
        .propose(&token, request, &proposal.rationale, meta.clone())
        .await
    {
        Ok(proposal) => json(
            StatusCode::ACCEPTED,
            &ProposalAccepted {
                decision: "queued".into(),
                placed_order: proposal.order.map(|o| o.0),
                proposal: proposal_view(&proposal),
            },
        ),
        Err(TradingError::Invalid(reason)) => {
            hold(
                &state,
                &token,
                StatusCode::UNPROCESSABLE_ENTITY,
                reason,
                meta,
            )
            .await
        }
        Err(TradingError::Forbidden(reason)) => {
            hold(&state, &token, StatusCode::FORBIDDEN, reason, meta).await
        }
        Err(other) => trading_failure(other),
    }
}

async fn read_body(body: Body) -> Result<Bytes, String> {
    to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|_| format!("the request body is larger than {MAX_BODY_BYTES} bytes"))
}

fn proposal_view(proposal: &Proposal) -> ProposalView {
    ProposalView {
        id: proposal.id,
        status: proposal.status.as_str().into(),
        symbol: proposal.symbol.clone(),
        side: proposal.side.as_str().into(),
        order_type: proposal.order_type.as_str().into(),
        quantity: proposal.quantity.normalize().to_string(),
        limit_price: proposal.limit_price.map(|p| p.normalize().to_string()),
        rationale: proposal.rationale.clone(),
        created_at: canonical_time(proposal.created_at),
    }
}

/// Every other method and path under the prefix: an agent may not do it. A valid token's
/// attempt is recorded as a held signal; without one, 401.
async fn refuse_operation(State(state): State<AgentState>, parts: Parts) -> Response {
    let token = match authenticate(&state, &parts).await {
        Ok(token) => token,
        Err(response) => return response,
    };
    let meta = request_meta(&parts);
    let reason = truncate(&format!(
        "agents cannot {} {}",
        parts.method,
        parts.uri.path()
    ));
    hold(&state, &token, StatusCode::FORBIDDEN, reason, meta).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for v in values {
            map.append(
                header::AUTHORIZATION,
                HeaderValue::from_str(v).expect("value"),
            );
        }
        map
    }

    #[test]
    fn only_one_well_formed_bearer_header_counts() {
        assert_eq!(bearer(&headers(&["Bearer cpa_x"])), Some("cpa_x"));
        assert_eq!(bearer(&headers(&["bearer  cpa_x "])), Some("cpa_x"));
        assert_eq!(bearer(&headers(&[])), None);
        assert_eq!(bearer(&headers(&["Basic abc"])), None);
        assert_eq!(bearer(&headers(&["Bearer"])), None);
        assert_eq!(bearer(&headers(&["Bearer "])), None);
        assert_eq!(bearer(&headers(&["Bearer a", "Bearer b"])), None);
    }

    #[test]
    fn the_document_lists_the_three_paths_and_the_bearer_scheme() {
        let doc = serde_json::to_value(ApiDoc::openapi()).expect("json");
        for path in [
            "/api/agent/v1/prices",
            "/api/agent/v1/portfolio",
            "/api/agent/v1/proposals",
        ] {
            assert!(doc["paths"][path].is_object(), "{path}");
        }
        assert_eq!(
            doc["components"]["securitySchemes"][SECURITY_SCHEME]["scheme"],
            "bearer"
        );
    }
}
