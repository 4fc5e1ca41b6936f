//! Limits and rule configuration (`domain::risk`): every limit field an administrator or a
//! trader types, blocked IP ranges, and the stored codes of rules, verdicts, anomaly
//! features and trading states. Validation is idempotent (its normalised output validates to
//! itself) and what it accepts stays within each field's bounds.
#![no_main]

use std::str::FromStr;

use domain::risk::anomaly::Feature;
use domain::risk::limits::{IpBlocklist, LimitField};
use domain::risk::rules::{Rule, Verdict};
use domain::risk::state::TradingState;
use libfuzzer_sys::fuzz_target;
use rust_decimal::Decimal;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let Ok(raw) = std::str::from_utf8(rest) else {
        return;
    };
    let field = LimitField::ALL[usize::from(selector) % LimitField::ALL.len()];
    if let Ok(normal) = field.validate(raw) {
        assert_eq!(
            field.validate(&normal).as_deref(),
            Ok(normal.as_str()),
            "{field:?} {raw:?}"
        );
        match field {
            LimitField::MaxOrderNotional
            | LimitField::DailyNotional
            | LimitField::AutonomousCap => {
                let value = Decimal::from_str(&normal).expect("an amount");
                assert!(value >= Decimal::ZERO && value <= Decimal::from(1_000_000_000));
            }
            LimitField::AnomalyThreshold => {
                let value = Decimal::from_str(&normal).expect("a ratio");
                assert!(value >= Decimal::ZERO && value <= Decimal::ONE);
            }
            LimitField::VelocityMaxOrders | LimitField::VelocityWindowSecs => {
                normal.parse::<u32>().expect("a count");
            }
            LimitField::SymbolAllowlist => {
                for symbol in normal.split(',').filter(|s| !s.is_empty()) {
                    assert!((2..=20).contains(&symbol.len()));
                    assert!(
                        symbol
                            .bytes()
                            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
                    );
                }
            }
        }
    }
    if let Ok(net) = IpBlocklist::parse_entry(raw) {
        // The stored form of an entry parses back to the same range.
        assert_eq!(IpBlocklist::parse_entry(&net.to_string()), Ok(net));
        let (list, bad) = IpBlocklist::from_entries(&[raw.to_owned()]);
        assert!(bad.is_empty());
        assert!(list.contains(net.network()).is_some());
    }
    if let Some(rule) = Rule::from_code(raw) {
        assert_eq!(Rule::from_code(rule.code()), Some(rule));
    }
    if let Some(verdict) = Verdict::parse(raw) {
        assert_eq!(Verdict::parse(verdict.as_str()), Some(verdict));
    }
    if let Some(feature) = Feature::from_code(raw) {
        assert_eq!(Feature::from_code(feature.code()), Some(feature));
    }
    if let Some(state) = TradingState::parse(raw) {
        assert_eq!(TradingState::parse(state.as_str()), Some(state));
    }
    if let Some(field) = LimitField::from_key(raw) {
        assert_eq!(LimitField::from_key(field.key()), Some(field));
    }
});
