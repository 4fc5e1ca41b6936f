//! Risk limits as administrators type them, and how they resolve for one user.
//!
//! Limits are stored as raw text (globally and per user) so a bad value can be shown, audited
//! and fixed rather than lost. Resolution fails safe: a value that is missing or does not
//! validate is replaced by the strictest value for that field, never by a lenient default, and
//! the caller audits each such replacement.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::{IpNet, Ipv4Net};
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use serde::{Deserialize, Serialize};

/// One configurable limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitField {
    MaxOrderNotional,
    DailyNotional,
    VelocityMaxOrders,
    VelocityWindowSecs,
    SymbolAllowlist,
    AnomalyThreshold,
    AutonomousCap,
}

/// Amounts above a billion USDT are typos, not limits.
const MAX_AMOUNT: i64 = 1_000_000_000;
const HELD_PREFIX: &str = "held:";
const MAX_DECIMAL_PLACES: usize = 8;
const MAX_VELOCITY_ORDERS: u32 = 10_000;
const MAX_WINDOW_SECS: u32 = 86_400;

impl LimitField {
    pub const ALL: [LimitField; 7] = [
        Self::MaxOrderNotional,
        Self::DailyNotional,
        Self::VelocityMaxOrders,
        Self::VelocityWindowSecs,
        Self::SymbolAllowlist,
        Self::AnomalyThreshold,
        Self::AutonomousCap,
    ];

    /// The stored key; stable.
    pub fn key(self) -> &'static str {
        match self {
            LimitField::MaxOrderNotional => "max_order_notional",
            LimitField::DailyNotional => "daily_notional",
            LimitField::VelocityMaxOrders => "velocity_max_orders",
            LimitField::VelocityWindowSecs => "velocity_window_secs",
            LimitField::SymbolAllowlist => "symbol_allowlist",
            LimitField::AnomalyThreshold => "anomaly_threshold",
            LimitField::AutonomousCap => "autonomous_cap",
        }
    }

    pub fn from_key(key: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.key() == key)
    }

    /// The per-user key of a hold: a ceiling kept for an admin who loosened this field
    /// globally. Unlike a value of their own, it does not replace the global value: the
    /// stricter of the two applies, so a later global tightening still reaches them.
    pub fn held_key(self) -> String {
        format!("{HELD_PREFIX}{}", self.key())
    }

    /// The field a per-user key holds: `(field, false)` for a value of the user's own,
    /// `(field, true)` for a hold ([`Self::held_key`]).
    pub fn from_user_key(key: &str) -> Option<(Self, bool)> {
        match key.strip_prefix(HELD_PREFIX) {
            Some(field) => Self::from_key(field).map(|f| (f, true)),
            None => Self::from_key(key).map(|f| (f, false)),
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            LimitField::MaxOrderNotional => "Max notional per order (USDT)",
            LimitField::DailyNotional => "Daily notional (USDT)",
            LimitField::VelocityMaxOrders => "Max orders per window",
            LimitField::VelocityWindowSecs => "Velocity window (seconds)",
            LimitField::SymbolAllowlist => "Tradable symbols",
            LimitField::AnomalyThreshold => "Anomaly threshold (0 to 1)",
            LimitField::AutonomousCap => "Autonomous agent cap per order (USDT)",
        }
    }

    pub fn help(self) -> &'static str {
        match self {
            LimitField::MaxOrderNotional => {
                "Orders worth more than this are refused; 0 refuses every order."
            }
            LimitField::DailyNotional => {
                "The total value a trader may order per UTC day; 0 refuses every order."
            }
            LimitField::VelocityMaxOrders => {
                "Once a trader has placed this many orders within the window, the next one is held for review."
            }
            LimitField::VelocityWindowSecs => {
                "The length of the window the order count above is measured over, from 1 second to 1 day."
            }
            LimitField::SymbolAllowlist => {
                "Comma-separated symbols that may be traded, such as BTCUSDT,ETHUSDT; empty allows none."
            }
            LimitField::AnomalyThreshold => {
                "Orders whose anomaly score reaches this value are held and open a case; 0 holds every order."
            }
            LimitField::AutonomousCap => {
                "The largest order an automated agent may place without a person approving it; 0 means always ask."
            }
        }
    }

    /// The raw text of the strictest value: what a missing or broken value falls back to.
    pub fn strictest_raw(self) -> &'static str {
        match self {
            LimitField::MaxOrderNotional => "0",
            LimitField::DailyNotional => "0",
            LimitField::VelocityMaxOrders => "0",
            LimitField::VelocityWindowSecs => "86400",
            LimitField::SymbolAllowlist => "",
            LimitField::AnomalyThreshold => "0",
            LimitField::AutonomousCap => "0",
        }
    }

    /// The values a fresh installation is seeded with.
    pub fn default_raw(self) -> &'static str {
        match self {
            LimitField::MaxOrderNotional => "50000",
            LimitField::DailyNotional => "250000",
            LimitField::VelocityMaxOrders => "10",
            LimitField::VelocityWindowSecs => "60",
            LimitField::SymbolAllowlist => {
                "BTCUSDT,ETHUSDT,SOLUSDT,BNBUSDT,XRPUSDT,ADAUSDT,DOGEUSDT,LTCUSDT"
            }
            LimitField::AnomalyThreshold => "0.8",
            LimitField::AutonomousCap => "500",
        }
    }

    /// The stricter of two valid values, normalised: the lower amount, count or threshold, the
    /// longer velocity window, the symbols both allow. `None` if either does not validate.
    pub fn stricter(self, a: &str, b: &str) -> Option<String> {
        let (a, b) = (self.parse_value(a).ok()?, self.parse_value(b).ok()?);
        let stricter = match (a, b) {
            (Value::Amount(a), Value::Amount(b)) => Value::Amount(a.min(b)),
            (Value::Ratio(a), Value::Ratio(b)) => Value::Ratio(a.min(b)),
            (Value::Count(a), Value::Count(b)) if self == LimitField::VelocityWindowSecs => {
                Value::Count(a.max(b))
            }
            (Value::Count(a), Value::Count(b)) => Value::Count(a.min(b)),
            (Value::Symbols(a), Value::Symbols(b)) => {
                // Sorted, so the same set always reads the same.
                let mut both: Vec<_> = a.into_iter().filter(|s| b.contains(s)).collect();
                both.sort();
                Value::Symbols(both)
            }
            _ => return None,
        };
        Some(stricter.render())
    }

    /// Checks an administrator's input and returns it normalised (trimmed, trailing zeros
    /// dropped, symbols uppercased and deduplicated), or a message saying what to type.
    pub fn validate(self, raw: &str) -> Result<String, String> {
        self.parse_value(raw).map(|v| v.render())
    }

    fn parse_value(self, raw: &str) -> Result<Value, String> {
        match self {
            LimitField::MaxOrderNotional
            | LimitField::DailyNotional
            | LimitField::AutonomousCap => {
                parse_decimal(raw, Decimal::from(MAX_AMOUNT), "1,000,000,000").map(Value::Amount)
            }
            LimitField::VelocityMaxOrders => {
                parse_integer(raw, 0, MAX_VELOCITY_ORDERS).map(Value::Count)
            }
            LimitField::VelocityWindowSecs => {
                parse_integer(raw, 1, MAX_WINDOW_SECS).map(Value::Count)
            }
            LimitField::SymbolAllowlist => parse_symbols(raw).map(Value::Symbols),
            LimitField::AnomalyThreshold => parse_decimal(raw, Decimal::ONE, "1").map(Value::Ratio),
        }
    }
}

impl fmt::Display for LimitField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

/// A validated limit value.
enum Value {
    Amount(Decimal),
    Count(u32),
    Symbols(Vec<String>),
    Ratio(Decimal),
}

impl Value {
    fn render(&self) -> String {
        match self {
            Value::Amount(d) | Value::Ratio(d) => d.normalize().to_string(),
            Value::Count(n) => n.to_string(),
            Value::Symbols(symbols) => symbols.join(","),
        }
    }
}

/// A plain decimal: digits and at most one dot. Signs, exponents and thousands separators are
/// refused rather than guessed at ("1,000" could be a thousand or one).
fn parse_decimal(raw: &str, max: Decimal, max_text: &str) -> Result<Decimal, String> {
    let text = raw.trim();
    if text.is_empty() {
        return Err("Enter a number.".into());
    }
    let (int_part, frac_part) = text.split_once('.').unwrap_or((text, ""));
    let digits_only = |s: &str| s.chars().all(|c| c.is_ascii_digit());
    if !digits_only(int_part) || !digits_only(frac_part) || int_part.len() + frac_part.len() == 0 {
        return Err(format!(
            "\u{201c}{text}\u{201d} is not a plain number: use digits and at most one dot, like 50000 or 0.8 (no sign, exponent or thousands separators)."
        ));
    }
    let frac_part = frac_part.trim_end_matches('0');
    if frac_part.len() > MAX_DECIMAL_PLACES {
        return Err(format!("Use at most {MAX_DECIMAL_PLACES} decimal places."));
    }
    let int_part = int_part.trim_start_matches('0');
    // Anything with more integer digits than the maximum is too large; checking the length
    // first keeps huge inputs away from the decimal parser.
    if int_part.len() > max_text.chars().filter(char::is_ascii_digit).count() {
        return Err(format!("Enter at most {max_text}."));
    }
    let int_part = if int_part.is_empty() { "0" } else { int_part };
    let canonical = if frac_part.is_empty() {
        int_part.to_string()
    } else {
        format!("{int_part}.{frac_part}")
    };
    let value = Decimal::from_str(&canonical)
        .map_err(|_| format!("\u{201c}{text}\u{201d} is not a number we can read."))?;
    if value > max {
        return Err(format!("Enter at most {max_text}."));
    }
    Ok(value.normalize())
}

fn parse_integer(raw: &str, min: u32, max: u32) -> Result<u32, String> {
    let text = raw.trim();
    if text.is_empty() {
        return Err("Enter a whole number.".into());
    }
    if !text.chars().all(|c| c.is_ascii_digit()) {
        return Err(format!(
            "\u{201c}{text}\u{201d} is not a whole number: use digits only, from {min} to {max}."
        ));
    }
    let digits = text.trim_start_matches('0');
    // Too many digits saturates, which the range check then refuses.
    let value = if digits.is_empty() {
        0
    } else {
        digits.parse::<u32>().unwrap_or(u32::MAX)
    };
    if value < min || value > max {
        return Err(format!("Enter a whole number from {min} to {max}."));
    }
    Ok(value)
}

fn parse_symbols(raw: &str) -> Result<Vec<String>, String> {
    let mut symbols: Vec<String> = Vec::new();
    for piece in raw.split(',') {
        let piece = piece.trim();
        if piece.is_empty() {
            continue;
        }
        let Ok(symbol) = crate::order::Symbol::parse(piece) else {
            return Err(format!(
                "\u{201c}{piece}\u{201d} is not a symbol: use pairs quoted in USDT, like BTCUSDT, separated by commas."
            ));
        };
        let symbol = symbol.as_str().to_owned();
        if !symbols.contains(&symbol) {
            symbols.push(symbol);
        }
    }
    Ok(symbols)
}

/// The limits that apply to one user's orders.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RiskLimits {
    pub max_order_notional: Decimal,
    pub daily_notional: Decimal,
    pub velocity_max_orders: u32,
    pub velocity_window_secs: u32,
    pub symbol_allowlist: Vec<String>,
    pub anomaly_threshold: f64,
    pub autonomous_cap: Decimal,
}

impl RiskLimits {
    /// Nothing passes: every order is refused by notional, held by velocity and opens a case.
    pub fn strictest() -> Self {
        Self {
            max_order_notional: Decimal::ZERO,
            daily_notional: Decimal::ZERO,
            velocity_max_orders: 0,
            velocity_window_secs: MAX_WINDOW_SECS,
            symbol_allowlist: Vec::new(),
            anomaly_threshold: 0.0,
            autonomous_cap: Decimal::ZERO,
        }
    }

    /// Whether `symbol` is on the allowlist (compared in upper case).
    pub fn allows_symbol(&self, symbol: &str) -> bool {
        let symbol = symbol.trim();
        self.symbol_allowlist
            .iter()
            .any(|s| s.eq_ignore_ascii_case(symbol))
    }

    fn apply(&mut self, field: LimitField, value: Value) {
        match (field, value) {
            (LimitField::MaxOrderNotional, Value::Amount(d)) => self.max_order_notional = d,
            (LimitField::DailyNotional, Value::Amount(d)) => self.daily_notional = d,
            (LimitField::AutonomousCap, Value::Amount(d)) => self.autonomous_cap = d,
            (LimitField::VelocityMaxOrders, Value::Count(n)) => self.velocity_max_orders = n,
            (LimitField::VelocityWindowSecs, Value::Count(n)) => self.velocity_window_secs = n,
            (LimitField::SymbolAllowlist, Value::Symbols(s)) => self.symbol_allowlist = s,
            // Validated to 0..=1, so the conversion cannot fail; 0 (strictest) if it did.
            (LimitField::AnomalyThreshold, Value::Ratio(d)) => {
                self.anomaly_threshold = d.to_f64().unwrap_or(0.0)
            }
            // `parse_value` pairs each field with its own kind of value, so this cannot happen;
            // if it did, the field would keep its strictest value.
            _ => {}
        }
    }
}

/// Where a limit's value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LimitScope {
    Global,
    User,
}

impl LimitScope {
    pub fn as_str(self) -> &'static str {
        match self {
            LimitScope::Global => "global",
            LimitScope::User => "user",
        }
    }
}

/// A limit that fell back to its strictest value; the caller audits each one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailSafe {
    pub field: LimitField,
    pub scope: LimitScope,
    /// The stored text that did not validate; `None` when nothing was stored.
    pub raw: Option<String>,
    pub reason: String,
}

/// The limits for one user: a per-user value overrides the global one; a missing or invalid
/// value becomes the strictest one, reported as a [`FailSafe`]. Unknown keys are ignored.
pub fn resolve_limits(
    global: &BTreeMap<String, String>,
    user: &BTreeMap<String, String>,
) -> (RiskLimits, Vec<FailSafe>) {
    let mut limits = RiskLimits::strictest();
    let mut fail_safes = Vec::new();
    for field in LimitField::ALL {
        let held = user.get(&field.held_key());
        let (scope, raw) = match (user.get(field.key()), global.get(field.key()), held) {
            (Some(raw), _, _) => (LimitScope::User, Some(raw.clone())),
            // If either does not parse, that one goes on to the fail-safe below: a hold must
            // never leave its admin looser than everyone else's strictest value.
            (None, Some(global), Some(held)) => match field.stricter(held, global) {
                Some(stricter) => (LimitScope::User, Some(stricter)),
                None if field.parse_value(held).is_err() => (LimitScope::User, Some(held.clone())),
                None => (LimitScope::Global, Some(global.clone())),
            },
            (None, Some(raw), None) => (LimitScope::Global, Some(raw.clone())),
            (None, None, _) => (LimitScope::Global, None),
        };
        let Some(raw) = raw else {
            fail_safes.push(FailSafe {
                field,
                scope,
                raw: None,
                reason: "No global value is set.".into(),
            });
            continue;
        };
        match field.parse_value(&raw) {
            Ok(value) => limits.apply(field, value),
            Err(reason) => fail_safes.push(FailSafe {
                field,
                scope,
                raw: Some(raw),
                reason,
            }),
        }
    }
    (limits, fail_safes)
}

/// Addresses and ranges whose orders are refused.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IpBlocklist(Vec<IpNet>);

impl IpBlocklist {
    pub fn new(entries: Vec<IpNet>) -> Self {
        Self(entries)
    }

    /// One entry: a single address (blocked as /32 or /128) or a CIDR range. IPv4-mapped IPv6
    /// entries are stored as IPv4, so they match however the address arrives.
    pub fn parse_entry(raw: &str) -> Result<IpNet, String> {
        let text = raw.trim();
        let net = if let Ok(net) = IpNet::from_str(text) {
            net
        } else if let Ok(addr) = IpAddr::from_str(text) {
            IpNet::from(addr)
        } else {
            return Err(format!(
                "\u{201c}{text}\u{201d} is not an IP address or range: use an address like 203.0.113.7 or 2001:db8::1, or a range like 198.51.100.0/24."
            ));
        };
        Ok(canonical_net(net.trunc()))
    }

    /// Builds a list from stored entries; the ones that do not parse are returned so the caller
    /// can report them (the others still apply).
    pub fn from_entries(entries: &[String]) -> (IpBlocklist, Vec<String>) {
        let mut nets = Vec::new();
        let mut bad = Vec::new();
        for entry in entries {
            match Self::parse_entry(entry) {
                Ok(net) => nets.push(net),
                Err(_) => bad.push(entry.clone()),
            }
        }
        (IpBlocklist(nets), bad)
    }

    /// The first entry that covers `ip`, if any.
    pub fn contains(&self, ip: IpAddr) -> Option<&IpNet> {
        let canonical = ip.to_canonical();
        self.0
            .iter()
            .find(|net| net.contains(&canonical) || net.contains(&ip))
    }

    pub fn entries(&self) -> &[IpNet] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// `::ffff:a.b.c.d/p` (p >= 96) becomes `a.b.c.d/(p - 96)`.
fn canonical_net(net: IpNet) -> IpNet {
    if let IpNet::V6(v6) = net
        && v6.prefix_len() >= 96
        && let Some(v4) = v6.addr().to_ipv4_mapped()
        && let Ok(v4net) = Ipv4Net::new(v4, v6.prefix_len() - 96)
    {
        return IpNet::V4(v4net);
    }
    net
}

#[cfg(test)]
mod tests {

    #[test]
    fn the_stricter_of_two_values_is_per_field() {
        let f = LimitField::MaxOrderNotional;
        assert_eq!(f.stricter("50000", "90000.00").as_deref(), Some("50000"));
        assert_eq!(
            LimitField::VelocityWindowSecs
                .stricter("60", "30")
                .as_deref(),
            Some("60")
        );
        assert_eq!(
            LimitField::VelocityMaxOrders
                .stricter("10", "20")
                .as_deref(),
            Some("10")
        );
        assert_eq!(
            LimitField::AnomalyThreshold
                .stricter("0.8", "0.95")
                .as_deref(),
            Some("0.8")
        );
        assert_eq!(
            LimitField::SymbolAllowlist
                .stricter("BTCUSDT,ETHUSDT", "ethusdt,SOLUSDT")
                .as_deref(),
            Some("ETHUSDT")
        );
        assert_eq!(f.stricter("50000", "lots"), None);
    }

    use super::*;

    use std::net::{Ipv4Addr, Ipv6Addr};

    fn dec(raw: &str) -> Decimal {
        raw.parse().expect("test decimal")
    }

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn defaults() -> BTreeMap<String, String> {
        LimitField::ALL
            .into_iter()
            .map(|f| (f.key().to_string(), f.default_raw().to_string()))
            .collect()
    }

    fn seeded() -> RiskLimits {
        RiskLimits {
            max_order_notional: dec("50000"),
            daily_notional: dec("250000"),
            velocity_max_orders: 10,
            velocity_window_secs: 60,
            symbol_allowlist: [
                "BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT", "XRPUSDT", "ADAUSDT", "DOGEUSDT",
                "LTCUSDT",
            ]
            .map(String::from)
            .to_vec(),
            anomaly_threshold: 0.8,
            autonomous_cap: dec("500"),
        }
    }

    #[test]
    fn keys_round_trip() {
        for f in LimitField::ALL {
            assert_eq!(LimitField::from_key(f.key()), Some(f));
            assert!(!f.label().is_empty());
            assert!(f.help().ends_with('.'));
        }
        assert_eq!(LimitField::from_key("max_leverage"), None);
    }

    #[test]
    fn strictest_and_default_raw_values_validate() {
        for f in LimitField::ALL {
            assert_eq!(
                f.validate(f.strictest_raw()).as_deref(),
                Ok(f.strictest_raw())
            );
            assert_eq!(f.validate(f.default_raw()).as_deref(), Ok(f.default_raw()));
        }
        let strictest: BTreeMap<String, String> = LimitField::ALL
            .into_iter()
            .map(|f| (f.key().to_string(), f.strictest_raw().to_string()))
            .collect();
        let (limits, fail_safes) = resolve_limits(&strictest, &BTreeMap::new());
        assert!(fail_safes.is_empty());
        assert_eq!(limits, RiskLimits::strictest());
    }

    #[test]
    fn amounts_accept_plain_decimals() {
        for f in [
            LimitField::MaxOrderNotional,
            LimitField::DailyNotional,
            LimitField::AutonomousCap,
        ] {
            assert_eq!(f.validate("50000").as_deref(), Ok("50000"));
            assert_eq!(f.validate(" 12 ").as_deref(), Ok("12"));
            assert_eq!(f.validate("0").as_deref(), Ok("0"));
            assert_eq!(f.validate("00012.50").as_deref(), Ok("12.5"));
            assert_eq!(f.validate("0.12345678").as_deref(), Ok("0.12345678"));
            assert_eq!(f.validate("0.123456780").as_deref(), Ok("0.12345678"));
            assert_eq!(f.validate(".5").as_deref(), Ok("0.5"));
            assert_eq!(f.validate("7.").as_deref(), Ok("7"));
            assert_eq!(f.validate("1000000000").as_deref(), Ok("1000000000"));
            assert_eq!(f.validate("1000000000.0").as_deref(), Ok("1000000000"));
        }
    }

    #[test]
    fn amounts_reject_anything_else() {
        for f in [
            LimitField::MaxOrderNotional,
            LimitField::DailyNotional,
            LimitField::AutonomousCap,
        ] {
            for bad in [
                "",
                "  ",
                "1e3",
                "-1",
                "+1",
                "1,000",
                "1 000",
                "1_000",
                "0.123456789",
                ".",
                "1.2.3",
                "abc",
                "NaN",
                "inf",
                "1000000000.00000001",
                "1000000001",
                "99999999999999999999999999999999",
                "\u{0661}",
            ] {
                let err = f.validate(bad).expect_err(bad);
                assert!(!err.is_empty(), "{bad}");
            }
        }
        let err = LimitField::DailyNotional
            .validate("1,000")
            .expect_err("separator");
        assert!(err.contains("thousands separators"), "{err}");
        let err = LimitField::DailyNotional
            .validate("0.123456789")
            .expect_err("too precise");
        assert_eq!(err, "Use at most 8 decimal places.");
        let err = LimitField::DailyNotional
            .validate("2000000000")
            .expect_err("too large");
        assert_eq!(err, "Enter at most 1,000,000,000.");
    }

    #[test]
    fn velocity_orders_range() {
        let f = LimitField::VelocityMaxOrders;
        assert_eq!(f.validate("0").as_deref(), Ok("0"));
        assert_eq!(f.validate(" 010 ").as_deref(), Ok("10"));
        assert_eq!(f.validate("10000").as_deref(), Ok("10000"));
        for bad in [
            "",
            "10001",
            "-1",
            "1.5",
            "1e3",
            "1,000",
            "99999999999999999999",
            "ten",
        ] {
            assert!(f.validate(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn velocity_window_range() {
        let f = LimitField::VelocityWindowSecs;
        assert_eq!(f.validate("1").as_deref(), Ok("1"));
        assert_eq!(f.validate(" 12 ").as_deref(), Ok("12"));
        assert_eq!(f.validate("86400").as_deref(), Ok("86400"));
        for bad in ["", "0", "86401", "-1", "60.0", "1e3", "1,000"] {
            assert!(f.validate(bad).is_err(), "{bad}");
        }
        assert_eq!(
            f.validate("0").expect_err("zero"),
            "Enter a whole number from 1 to 86400."
        );
    }

    #[test]
    fn symbol_allowlist_normalises() {
        let f = LimitField::SymbolAllowlist;
        assert_eq!(f.validate("").as_deref(), Ok(""));
        assert_eq!(f.validate(" , ").as_deref(), Ok(""));
        assert_eq!(
            f.validate(" btcusdt, ETHUSDT ,BtcUsdt,").as_deref(),
            Ok("BTCUSDT,ETHUSDT")
        );
        assert_eq!(f.validate("tusdt").as_deref(), Ok("TUSDT"));
        assert_eq!(
            f.validate("A234567890123456USDT").as_deref(),
            Ok("A234567890123456USDT")
        );
        for bad in [
            "B",
            "USDT",
            "AB",
            // Quoted in another asset: valued in BTC, it would pass every USDT limit.
            "ETHBTC",
            "USDTBTC",
            "A2345678901234567USDT",
            "BTC-USDT",
            "BTC/USDT",
            "BTC USDT",
            "BTCUSDT;ETHUSDT",
            "ÄÖÜUSDT",
        ] {
            assert!(f.validate(bad).is_err(), "{bad}");
        }
        let err = f.validate("BTCUSDT,BTC-USDT").expect_err("dash");
        assert!(err.contains("BTC-USDT"), "{err}");
    }

    #[test]
    fn anomaly_threshold_range() {
        let f = LimitField::AnomalyThreshold;
        assert_eq!(f.validate("0").as_deref(), Ok("0"));
        assert_eq!(f.validate("0.80").as_deref(), Ok("0.8"));
        assert_eq!(f.validate(" 1 ").as_deref(), Ok("1"));
        assert_eq!(f.validate("1.0").as_deref(), Ok("1"));
        for bad in ["", "1.01", "2", "-0.1", "8e-1", "0,8", "0.123456789"] {
            assert!(f.validate(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn resolve_global_only() {
        let (limits, fail_safes) = resolve_limits(&defaults(), &BTreeMap::new());
        assert!(fail_safes.is_empty(), "{fail_safes:?}");
        assert_eq!(limits, seeded());
    }

    #[test]
    fn resolve_user_overrides_global() {
        let user = map(&[
            ("max_order_notional", "1000"),
            ("symbol_allowlist", "btcusdt"),
            ("anomaly_threshold", "0.5"),
        ]);
        let (limits, fail_safes) = resolve_limits(&defaults(), &user);
        assert!(fail_safes.is_empty());
        assert_eq!(
            limits,
            RiskLimits {
                max_order_notional: dec("1000"),
                symbol_allowlist: vec!["BTCUSDT".into()],
                anomaly_threshold: 0.5,
                ..seeded()
            }
        );
    }

    #[test]
    fn a_hold_is_a_ceiling_under_the_global_value_and_an_own_value_replaces_both() {
        let held = map(&[
            ("held:max_order_notional", "1000"),
            ("held:velocity_window_secs", "600"),
        ]);
        let (limits, fail_safes) = resolve_limits(&defaults(), &held);
        assert!(fail_safes.is_empty());
        assert_eq!(limits.max_order_notional, dec("1000"));
        assert_eq!(limits.velocity_window_secs, 600);
        // A global value stricter than the hold applies.
        let mut tight = defaults();
        tight.insert("max_order_notional".into(), "500".into());
        let (limits, _) = resolve_limits(&tight, &held);
        assert_eq!(limits.max_order_notional, dec("500"));
        // A value of the user's own is not held.
        let mut own = held.clone();
        own.insert("max_order_notional".into(), "2000".into());
        assert_eq!(
            resolve_limits(&defaults(), &own).0.max_order_notional,
            dec("2000")
        );
        // A hold that does not parse fails safe, and so does a global value beside a hold.
        let broken = map(&[("held:max_order_notional", "lots")]);
        let (limits, fail_safes) = resolve_limits(&defaults(), &broken);
        assert_only_field_strictest(&limits, LimitField::MaxOrderNotional);
        assert_eq!(fail_safes.len(), 1);
        let mut broken_global = defaults();
        broken_global.insert("max_order_notional".into(), "lots".into());
        let (limits, fail_safes) = resolve_limits(&broken_global, &held);
        assert_eq!(
            limits.max_order_notional,
            RiskLimits::strictest().max_order_notional
        );
        assert_eq!(fail_safes.len(), 1);
        assert_eq!(fail_safes[0].raw.as_deref(), Some("lots"));
        assert_eq!(
            LimitField::from_user_key("held:daily_notional"),
            Some((LimitField::DailyNotional, true))
        );
        assert_eq!(LimitField::from_user_key("held:nothing"), None);
    }

    #[test]
    fn resolve_unknown_keys_are_ignored() {
        let mut global = defaults();
        global.insert("max_leverage".into(), "garbage".into());
        let user = map(&[("favourite_colour", "blue")]);
        let (limits, fail_safes) = resolve_limits(&global, &user);
        assert!(fail_safes.is_empty());
        assert_eq!(limits, seeded());
    }

    /// The field of `limits` that `field` controls equals the strictest one, and every other
    /// field kept its seeded value.
    fn assert_only_field_strictest(limits: &RiskLimits, field: LimitField) {
        let strict = RiskLimits::strictest();
        let seeded = seeded();
        let mut expected = seeded.clone();
        match field {
            LimitField::MaxOrderNotional => expected.max_order_notional = strict.max_order_notional,
            LimitField::DailyNotional => expected.daily_notional = strict.daily_notional,
            LimitField::VelocityMaxOrders => {
                expected.velocity_max_orders = strict.velocity_max_orders
            }
            LimitField::VelocityWindowSecs => {
                expected.velocity_window_secs = strict.velocity_window_secs
            }
            LimitField::SymbolAllowlist => expected.symbol_allowlist = strict.symbol_allowlist,
            LimitField::AnomalyThreshold => expected.anomaly_threshold = strict.anomaly_threshold,
            LimitField::AutonomousCap => expected.autonomous_cap = strict.autonomous_cap,
        }
        assert_eq!(limits, &expected, "{field:?}");
    }

    #[test]
    fn resolve_unparsable_user_value_fails_safe_per_field() {
        for field in LimitField::ALL {
            // The allowlist accepts "" (it is the strictest value), so use a bad symbol.
            let bad = "1,000 / BTC-USDT";
            let user = map(&[(field.key(), bad)]);
            let (limits, fail_safes) = resolve_limits(&defaults(), &user);
            assert_only_field_strictest(&limits, field);
            assert_eq!(fail_safes.len(), 1, "{field:?}");
            let fs = &fail_safes[0];
            assert_eq!(fs.field, field);
            assert_eq!(fs.scope, LimitScope::User);
            assert_eq!(fs.raw.as_deref(), Some(bad));
            assert_eq!(Err(fs.reason.clone()), field.validate(bad));
        }
    }

    #[test]
    fn resolve_missing_global_value_fails_safe_per_field() {
        for field in LimitField::ALL {
            let mut global = defaults();
            global.remove(field.key());
            let (limits, fail_safes) = resolve_limits(&global, &BTreeMap::new());
            assert_only_field_strictest(&limits, field);
            assert_eq!(
                fail_safes,
                vec![FailSafe {
                    field,
                    scope: LimitScope::Global,
                    raw: None,
                    reason: "No global value is set.".into(),
                }]
            );
        }
    }

    #[test]
    fn resolve_invalid_global_value_fails_safe_per_field() {
        for field in LimitField::ALL {
            let mut global = defaults();
            global.insert(field.key().into(), "-1e3!".into());
            let (limits, fail_safes) = resolve_limits(&global, &BTreeMap::new());
            assert_only_field_strictest(&limits, field);
            assert_eq!(fail_safes.len(), 1);
            assert_eq!(fail_safes[0].scope, LimitScope::Global);
            assert_eq!(fail_safes[0].raw.as_deref(), Some("-1e3!"));
        }
    }

    #[test]
    fn resolve_valid_user_value_covers_missing_global() {
        let mut global = defaults();
        global.remove("daily_notional");
        let user = map(&[("daily_notional", "1000")]);
        let (limits, fail_safes) = resolve_limits(&global, &user);
        assert!(fail_safes.is_empty());
        assert_eq!(limits.daily_notional, dec("1000"));
    }

    #[test]
    fn resolve_nothing_at_all_is_strictest() {
        let (limits, fail_safes) = resolve_limits(&BTreeMap::new(), &BTreeMap::new());
        assert_eq!(limits, RiskLimits::strictest());
        assert_eq!(fail_safes.len(), LimitField::ALL.len());
        assert!(fail_safes.iter().all(|f| f.scope == LimitScope::Global));
    }

    #[test]
    fn allows_symbol_ignores_case() {
        let limits = seeded();
        assert!(limits.allows_symbol("btcusdt"));
        assert!(limits.allows_symbol("ETHUSDT"));
        assert!(!limits.allows_symbol("PEPEUSDT"));
        assert!(!RiskLimits::strictest().allows_symbol("BTCUSDT"));
    }

    fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(a, b, c, d))
    }

    #[test]
    fn blocklist_single_address() {
        let net = IpBlocklist::parse_entry(" 203.0.113.7 ").expect("address");
        assert_eq!(net.to_string(), "203.0.113.7/32");
        let list = IpBlocklist::new(vec![net]);
        assert_eq!(list.contains(v4(203, 0, 113, 7)), Some(&net));
        assert_eq!(list.contains(v4(203, 0, 113, 8)), None);
    }

    #[test]
    fn blocklist_cidr() {
        let net = IpBlocklist::parse_entry("198.51.100.77/24").expect("cidr");
        assert_eq!(net.to_string(), "198.51.100.0/24");
        let list = IpBlocklist::new(vec![net]);
        assert!(list.contains(v4(198, 51, 100, 0)).is_some());
        assert!(list.contains(v4(198, 51, 100, 255)).is_some());
        assert!(list.contains(v4(198, 51, 101, 0)).is_none());
    }

    #[test]
    fn blocklist_ipv6() {
        let (list, bad) =
            IpBlocklist::from_entries(&["2001:db8::1".to_string(), "2001:db8:1::/48".to_string()]);
        assert!(bad.is_empty());
        assert_eq!(list.entries()[0].to_string(), "2001:db8::1/128");
        let ip = |s: &str| IpAddr::V6(s.parse::<Ipv6Addr>().expect("v6"));
        assert!(list.contains(ip("2001:db8::1")).is_some());
        assert!(list.contains(ip("2001:db8::2")).is_none());
        assert!(list.contains(ip("2001:db8:1:ffff::9")).is_some());
        assert!(list.contains(v4(32, 1, 13, 184)).is_none());
    }

    #[test]
    fn blocklist_ipv4_mapped() {
        let (list, _) = IpBlocklist::from_entries(&["203.0.113.0/24".to_string()]);
        let mapped = IpAddr::V6("::ffff:203.0.113.9".parse().expect("mapped"));
        assert_eq!(
            list.contains(mapped).map(ToString::to_string).as_deref(),
            Some("203.0.113.0/24")
        );
        // A mapped entry matches the plain IPv4 address too.
        let entry = IpBlocklist::parse_entry("::ffff:192.0.2.1").expect("mapped entry");
        assert_eq!(entry.to_string(), "192.0.2.1/32");
        let list = IpBlocklist::new(vec![entry]);
        assert!(list.contains(v4(192, 0, 2, 1)).is_some());
        assert!(
            list.contains(IpAddr::V6("::ffff:192.0.2.1".parse().expect("mapped")))
                .is_some()
        );
    }

    #[test]
    fn blocklist_garbage() {
        for bad in [
            "",
            "banana",
            "300.1.1.1",
            "10.0.0.0/33",
            "2001:db8::/129",
            "10.0.0.1-10.0.0.9",
        ] {
            let err = IpBlocklist::parse_entry(bad).expect_err(bad);
            assert!(err.contains("not an IP address or range"), "{err}");
        }
        let (list, bad) = IpBlocklist::from_entries(&[
            "10.0.0.1".to_string(),
            "banana".to_string(),
            "10.0.0.0/8".to_string(),
        ]);
        assert_eq!(list.len(), 2);
        assert_eq!(bad, vec!["banana".to_string()]);
        assert!(IpBlocklist::default().contains(v4(10, 0, 0, 1)).is_none());
    }
}
