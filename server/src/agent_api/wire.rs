//! The agent API's JSON types (with their conversions from the domain) and its OpenAPI
//! document.

use axum::response::{IntoResponse, Response};
use domain::audit::canonical_time;
use domain::trading::{Portfolio, Proposal};
use serde::{Deserialize, Serialize};
use utoipa::openapi::Required;
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{IntoParams, Modify, OpenApi, ToSchema};

use super::request::{MAX_SYMBOLS, ProposalBody, ProposalSide, ProposalType, symbols_pattern};
use crate::exchange::paper::PaperPrices;

/// The security scheme's name in the OpenAPI document.
const SECURITY_SCHEME: &str = "agent_token";

/// An error that is not a trading decision (authentication, bad query, outage).
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// `unauthorized`, `invalid_request`, `forbidden`, `not_found`, `conflict`, `rate_limited`,
    /// `unavailable` or `internal`.
    pub error: String,
    /// What to fix, when there is something to fix; for `internal`, the request id to quote.
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
pub(super) struct PricesQuery {
    pub(super) symbols: Option<String>,
}

/// Documented by hand: the pattern names the symbols the paper exchange prices, so every list
/// the document allows gets prices (any other is a 400).
impl IntoParams for PricesQuery {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        let traded: Vec<&str> = PaperPrices::SYMBOLS.iter().map(|(s, _)| *s).collect();
        vec![
            ParameterBuilder::new()
                .name("symbols")
                .parameter_in(ParameterIn::Query)
                .required(Required::True)
                .description(Some(format!(
                    "Comma-separated symbols the paper exchange trades, at most {MAX_SYMBOLS}"
                )))
                .schema(Some(
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .pattern(Some(symbols_pattern(&traded))),
                ))
                .example(Some(serde_json::Value::from("BTCUSDT,ETHUSDT")))
                .build(),
        ]
    }
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

impl From<&Portfolio> for PortfolioResponse {
    fn from(portfolio: &Portfolio) -> Self {
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
}

impl From<&Proposal> for ProposalView {
    fn from(proposal: &Proposal) -> Self {
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
}

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
    paths(super::handlers::prices, super::handlers::portfolio, super::handlers::propose),
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

pub(super) async fn openapi_json() -> Response {
    axum::Json(ApiDoc::openapi()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

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
