//! The order ticket's parser (`domain::order`): the browser ticket, the server functions and
//! the agent API all read orders through it. Beyond "no panic": a parsed ticket keeps every
//! bound the rules rely on, and what it displays parses back to the same value.
#![no_main]

use domain::order::{
    MAX_AMOUNT_SCALE, MAX_ORDER_AMOUNT, OrderForm, OrderTerms, OrderTicket, OrderType, Price,
    Quantity, Symbol,
};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use rust_decimal::Decimal;

#[derive(Debug, Arbitrary)]
struct Input {
    symbol: String,
    side: String,
    order_type: String,
    quantity: String,
    limit_price: Option<String>,
    quoted_price: Option<String>,
}

fn check_amount(value: Decimal) {
    assert!(value > Decimal::ZERO, "{value} not positive");
    assert!(value <= MAX_ORDER_AMOUNT, "{value} too large");
    assert!(value.scale() <= MAX_AMOUNT_SCALE, "{value} too precise");
}

fn round_trip(raw: &str) {
    if let Ok(symbol) = Symbol::parse(raw) {
        assert_eq!(Symbol::parse(&symbol.to_string()), Ok(symbol.clone()));
        assert!(
            symbol
                .as_str()
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
        );
    }
    if let Ok(quantity) = Quantity::parse(raw) {
        check_amount(quantity.value());
        assert_eq!(
            Quantity::parse(&quantity.to_string()),
            Ok(quantity),
            "{raw:?}"
        );
        assert_eq!(Quantity::try_from(quantity.value()), Ok(quantity));
    }
    if let Ok(price) = Price::parse(raw) {
        check_amount(price.value());
        assert_eq!(Price::parse(&price.to_string()), Ok(price), "{raw:?}");
    }
}

fuzz_target!(|input: Input| {
    for raw in [
        &input.symbol,
        &input.quantity,
        &input.side,
        &input.order_type,
    ] {
        round_trip(raw);
    }
    let form = OrderForm {
        symbol: input.symbol,
        side: input.side,
        order_type: input.order_type,
        quantity: input.quantity,
        limit_price: input.limit_price,
        quoted_price: input.quoted_price,
    };
    let Ok(ticket) = OrderTicket::try_from(&form) else {
        return;
    };
    check_amount(ticket.quantity().value());
    match ticket.order_type() {
        OrderType::Limit => {
            let limit = ticket.limit_price().expect("a limit ticket has its limit");
            check_amount(limit.value());
            assert_eq!(ticket.quoted_price(), None);
        }
        OrderType::Market => assert_eq!(ticket.limit_price(), None),
    }
    // What the ticket says parses back into the same ticket.
    let reparsed = OrderForm {
        symbol: ticket.symbol().to_string(),
        side: ticket.side().as_str().into(),
        order_type: ticket.order_type().as_str().into(),
        quantity: ticket.quantity().to_string(),
        limit_price: ticket.limit_price().map(|p| p.to_string()),
        quoted_price: ticket.quoted_price().map(|p| p.to_string()),
    };
    assert_eq!(OrderTicket::try_from(&reparsed).as_ref(), Ok(&ticket));
    // The value an approval binds never overflows a decimal: the bounds make sure of it.
    if let Some(terms) = ticket.terms() {
        assert!(terms.quantity.checked_mul(terms.price).is_some());
        let again = OrderTerms::parse(
            &terms.symbol,
            terms.side.as_str(),
            &terms.quantity.to_string(),
            &terms.price.to_string(),
        );
        assert_eq!(again, Ok(terms));
    }
});
