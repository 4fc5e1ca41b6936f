//! The agent API's request parsers, compiled from the server's own source
//! (`server/src/agent_api/request.rs`), and the promise its OpenAPI document makes: every
//! value the document's patterns allow is accepted. Raw bytes check that nothing panics and
//! that an accepted proposal's ticket says what the body said.
#![no_main]

#[path = "../../server/src/agent_api/request.rs"]
#[allow(dead_code)]
mod request;

use std::sync::OnceLock;

use domain::order::{OrderSide, OrderType, Price, Quantity};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use regex::Regex;
use request::{
    ProposalSide, ProposalType, RATIONALE_PATTERN, SYMBOL_PATTERN, amount_pattern, parse_proposal,
    parse_symbols, symbols_pattern,
};

/// A decimal-looking string: digits, at most one dot, sometimes junk.
#[derive(Debug, Arbitrary)]
struct Amount {
    int_digits: Vec<u8>,
    frac_digits: Option<Vec<u8>>,
    junk: Option<String>,
}

impl Amount {
    fn text(&self) -> String {
        if let Some(junk) = &self.junk {
            return junk.clone();
        }
        let digits = |d: &[u8]| {
            d.iter()
                .take(14)
                .map(|b| char::from(b'0' + b % 10))
                .collect()
        };
        let mut text: String = digits(&self.int_digits);
        if let Some(frac) = &self.frac_digits {
            text.push('.');
            text.push_str(&digits(frac));
        }
        text
    }
}

/// A symbol-looking string: letters and digits, sometimes junk.
#[derive(Debug, Arbitrary)]
struct SymbolText {
    chars: Vec<u8>,
    junk: Option<String>,
}

impl SymbolText {
    fn text(&self) -> String {
        const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        match &self.junk {
            Some(junk) => junk.clone(),
            None => self
                .chars
                .iter()
                .take(24)
                .map(|b| char::from(ALNUM[usize::from(*b) % ALNUM.len()]))
                .collect(),
        }
    }
}

#[derive(Debug, Arbitrary)]
struct Structured {
    symbol: SymbolText,
    side: bool,
    limit: bool,
    quantity: Amount,
    limit_price: Option<Amount>,
    rationale: String,
    symbols: Vec<SymbolText>,
    list: Vec<u8>,
}

#[derive(Debug, Arbitrary)]
enum Input {
    Raw(Vec<u8>),
    Structured(Structured),
}

fn patterns() -> &'static (Regex, Regex, Regex) {
    static PATTERNS: OnceLock<(Regex, Regex, Regex)> = OnceLock::new();
    PATTERNS.get_or_init(|| {
        (
            Regex::new(SYMBOL_PATTERN).expect("symbol pattern"),
            Regex::new(&amount_pattern()).expect("amount pattern"),
            Regex::new(RATIONALE_PATTERN).expect("rationale pattern"),
        )
    })
}

/// What the document allows must parse, also with the trailing newline a Python-style `$`
/// lets a generator add.
fn allowed_amounts_parse(text: &str) {
    let (_, amount, _) = patterns();
    if amount.is_match(text) {
        for candidate in [text.to_owned(), format!("{text}\n")] {
            assert!(
                Quantity::parse(&candidate).is_ok(),
                "{candidate:?} allowed, refused"
            );
            assert!(
                Price::parse(&candidate).is_ok(),
                "{candidate:?} allowed, refused"
            );
        }
    }
}

fn raw(bytes: &[u8]) {
    let Ok((body, ticket)) = parse_proposal(bytes) else {
        return;
    };
    assert_eq!(
        ticket.symbol().as_str(),
        body.symbol.trim().to_ascii_uppercase()
    );
    let side = match body.side {
        ProposalSide::Buy => OrderSide::Buy,
        ProposalSide::Sell => OrderSide::Sell,
    };
    assert_eq!(ticket.side(), side);
    match body.order_type {
        ProposalType::Limit => assert_eq!(ticket.order_type(), OrderType::Limit),
        ProposalType::Market => {
            assert_eq!(ticket.order_type(), OrderType::Market);
            assert_eq!(ticket.limit_price(), None);
        }
    }
}

fn structured(input: Structured) {
    let (symbol_re, amount_re, rationale_re) = patterns();
    let symbol = input.symbol.text();
    let quantity = input.quantity.text();
    let limit_price = input.limit_price.as_ref().map(Amount::text);
    allowed_amounts_parse(&quantity);
    if let Some(limit) = &limit_price {
        allowed_amounts_parse(limit);
    }
    let mut body = serde_json::json!({
        "symbol": symbol,
        "side": if input.side { "buy" } else { "sell" },
        "type": if input.limit { "limit" } else { "market" },
        "quantity": quantity,
        "rationale": input.rationale,
    });
    if let Some(limit) = &limit_price {
        body["limit_price"] = limit.clone().into();
    }
    let bytes = serde_json::to_vec(&body).expect("json");
    let valid_by_document = symbol_re.is_match(&symbol)
        && rationale_re.is_match(&input.rationale)
        && amount_re.is_match(&quantity)
        && match (input.limit, &limit_price) {
            (true, Some(limit)) => amount_re.is_match(limit),
            (true, None) => false,
            (false, limit) => limit.is_none(),
        };
    let parsed = parse_proposal(&bytes);
    if valid_by_document {
        assert!(
            parsed.is_ok(),
            "valid by the document, refused: {body} {parsed:?}"
        );
    }
    raw(&bytes);

    // The symbols list: any list the document allows for some set of symbols parses.
    let texts: Vec<String> = input.symbols.iter().map(SymbolText::text).collect();
    let traded: Vec<&str> = texts
        .iter()
        .map(String::as_str)
        .filter(|s| symbol_re.is_match(s))
        .take(8)
        .collect();
    if !traded.is_empty() {
        let list: Vec<&str> = input
            .list
            .iter()
            .map(|i| traded[usize::from(*i) % traded.len()])
            .collect();
        let list = list.join(",");
        let pattern = Regex::new(&symbols_pattern(&traded)).expect("symbols pattern");
        if pattern.is_match(&list) {
            let symbols = parse_symbols(&list);
            assert!(symbols.is_ok(), "{list:?} allowed, refused: {symbols:?}");
        }
    }
    let _ = parse_symbols(&input.rationale);
}

fuzz_target!(|input: Input| {
    match input {
        Input::Raw(bytes) => raw(&bytes),
        Input::Structured(input) => structured(input),
    }
});
