//! What the agent API reads from outside: the proposal body and the `symbols` list, their
//! parsers, and the JSON Schema constraints that say exactly what the parsers accept.
//!
//! The OpenAPI document promises that every request valid by it is accepted, so each pattern
//! here is built from the same constants the domain parsers check. This file depends only on
//! serde, utoipa and the domain, so the fuzz targets (`fuzz/`) compile this very file and check
//! that promise against the parsers.

use domain::order::{MAX_AMOUNT_SCALE, OrderForm, OrderFormError, OrderTicket, Symbol};
use domain::trading::agent::MAX_RATIONALE_CHARS;
use serde::Deserialize;
use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, OneOfBuilder, Schema, Type};
use utoipa::openapi::{RefOr, schema::SchemaType};
use utoipa::{PartialSchema, ToSchema};

/// At most this many symbols in one price request.
pub const MAX_SYMBOLS: usize = 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ProposalSide {
    Buy,
    Sell,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ProposalType {
    Market,
    Limit,
}

/// A trade the agent proposes; the trader signs it off (or autonomous mode places it).
/// Its schema is written by hand ([`proposal_schema`]): a derived one could not say that a
/// limit proposal needs its price and a market proposal must not have one.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProposalBody {
    pub symbol: String,
    pub side: ProposalSide,
    #[serde(rename = "type")]
    pub order_type: ProposalType,
    pub quantity: String,
    /// Limit proposals only.
    #[serde(default)]
    pub limit_price: Option<String>,
    pub rationale: String,
}

impl ProposalBody {
    /// The proposal as the order form both inbound adapters parse into a ticket.
    pub fn order_form(&self) -> OrderForm {
        OrderForm {
            symbol: self.symbol.clone(),
            side: match self.side {
                ProposalSide::Buy => "buy",
                ProposalSide::Sell => "sell",
            }
            .into(),
            order_type: match self.order_type {
                ProposalType::Market => "market",
                ProposalType::Limit => "limit",
            }
            .into(),
            quantity: self.quantity.clone(),
            limit_price: self.limit_price.clone(),
            quoted_price: None,
        }
    }
}

/// Why a proposal body was not read; the text goes back to the agent in the HOLD.
#[derive(Debug)]
pub enum ProposalError {
    /// Not JSON of the proposal's shape (serde's message).
    Json(serde_json::Error),
    /// JSON of the right shape whose fields do not parse.
    Form(OrderFormError),
    /// A NUL character in the rationale, which PostgreSQL cannot store in text.
    RationaleNul,
}

/// A proposal body: JSON of the documented shape whose order fields parse into a ticket. The
/// rationale's length is the use case's to check (it trims first).
pub fn parse_proposal(body: &[u8]) -> Result<(ProposalBody, OrderTicket), ProposalError> {
    let proposal: ProposalBody = serde_json::from_slice(body).map_err(ProposalError::Json)?;
    let ticket = OrderTicket::try_from(proposal.order_form()).map_err(ProposalError::Form)?;
    if proposal.rationale.contains('\0') {
        return Err(ProposalError::RationaleNul);
    }
    Ok((proposal, ticket))
}

/// Why a `symbols` list was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SymbolsError {
    Empty,
    Symbol(OrderFormError),
    TooMany,
}

/// The distinct symbols of a comma-separated list: at least one, at most [`MAX_SYMBOLS`].
pub fn parse_symbols(raw: &str) -> Result<Vec<Symbol>, SymbolsError> {
    let mut symbols: Vec<Symbol> = Vec::new();
    for raw in raw.split(',').filter(|s| !s.trim().is_empty()) {
        let symbol = Symbol::parse(raw).map_err(|e| SymbolsError::Symbol(e.into()))?;
        if !symbols.contains(&symbol) {
            symbols.push(symbol);
        }
    }
    if symbols.is_empty() {
        return Err(SymbolsError::Empty);
    }
    if symbols.len() > MAX_SYMBOLS {
        return Err(SymbolsError::TooMany);
    }
    Ok(symbols)
}

/// The rationale as the document states it: any text without NUL (its length is `maxLength`).
pub const RATIONALE_PATTERN: &str = "^[^\\u0000]*$";

/// A symbol as the document states it: a pair quoted in USDT, 5 to 20 ASCII letters or digits
/// (the parser also trims and upper-cases, which the document need not promise).
pub const SYMBOL_PATTERN: &str = "^[A-Za-z0-9]{1,16}USDT$";

/// A quantity or price the domain accepts, as a regular expression: a plain positive decimal
/// below 10^12 with at most [`MAX_AMOUNT_SCALE`] places (no sign, exponent or separator).
/// The one value of exactly 10^12 is accepted too but left out of the pattern, which may be
/// stricter than the parser, never looser.
pub fn amount_pattern() -> String {
    let places = MAX_AMOUNT_SCALE as usize;
    // A fraction below 1 that is not zero: k leading zeros, a non-zero digit, then the rest.
    let fractions: Vec<String> = (0..places)
        .map(|zeros| {
            let rest = places - zeros - 1;
            format!("0{{{zeros}}}[1-9][0-9]{{0,{rest}}}")
        })
        .collect();
    format!(
        "^(?:[1-9][0-9]{{0,11}}(?:\\.[0-9]{{1,{places}}})?|0?\\.(?:{}))$",
        fractions.join("|")
    )
}

/// The `symbols` query parameter as the document states it: one to [`MAX_SYMBOLS`] of the
/// `traded` symbols, comma-separated (the only ones with a price to give).
pub fn symbols_pattern(traded: &[&str]) -> String {
    let one = traded.join("|");
    format!(
        "^(?:{one})(?:,(?:{one})){{0,{}}}$",
        MAX_SYMBOLS.saturating_sub(1)
    )
}

fn string_schema(pattern: Option<String>, description: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(pattern)
        .description(Some(description))
}

fn enum_schema(values: &[&str]) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(values.iter().copied()))
}

/// One branch of the proposal schema: the common fields, `type` fixed, and the limit price
/// required (limit) or absent/null (market). Unknown fields are refused.
fn proposal_branch(order_type: ProposalType) -> ObjectBuilder {
    let amount = amount_pattern();
    let mut branch = ObjectBuilder::new()
        .schema_type(Type::Object)
        .property(
            "symbol",
            string_schema(
                Some(SYMBOL_PATTERN.into()),
                "The trading pair, like BTCUSDT.",
            )
            .examples(["BTCUSDT"]),
        )
        .required("symbol")
        .property("side", enum_schema(&["buy", "sell"]))
        .required("side")
        .property(
            "quantity",
            string_schema(
                Some(amount.clone()),
                "A positive plain decimal (\"0.01\"): at most 8 places, below 10^12; no \
                 number, sign, exponent or separator.",
            )
            .examples(["0.01"]),
        )
        .required("quantity")
        .property(
            "rationale",
            string_schema(
                Some(RATIONALE_PATTERN.into()),
                "Shown to the trader as quoted text; never interpreted. No NUL characters.",
            )
            .max_length(Some(MAX_RATIONALE_CHARS)),
        )
        .required("rationale")
        .additional_properties(Some(AdditionalProperties::<Schema>::FreeForm(false)));
    branch = match order_type {
        ProposalType::Market => branch.property("type", enum_schema(&["market"])).property(
            "limit_price",
            ObjectBuilder::new()
                .schema_type(SchemaType::Type(Type::Null))
                .description(Some("Market proposals have no limit price.")),
        ),
        ProposalType::Limit => branch
            .property("type", enum_schema(&["limit"]))
            .property(
                "limit_price",
                string_schema(Some(amount), "The limit, a decimal like the quantity.")
                    .examples(["64000"]),
            )
            .required("limit_price"),
    };
    branch.required("type")
}

/// The proposal body's schema: a market or a limit proposal.
pub fn proposal_schema() -> Schema {
    OneOfBuilder::new()
        .item(proposal_branch(ProposalType::Market).title(Some("Market proposal")))
        .item(proposal_branch(ProposalType::Limit).title(Some("Limit proposal")))
        .description(Some(
            "A trade the agent proposes; the trader signs it off (or autonomous mode places \
             it). Decimals are strings. Unknown fields are refused.",
        ))
        .into()
}

impl PartialSchema for ProposalBody {
    fn schema() -> RefOr<Schema> {
        RefOr::T(proposal_schema())
    }
}

impl ToSchema for ProposalBody {}
