//! "Trade": the order ticket (with the server's own screening rules previewed live), the
//! approval of large orders with a security key or code, positions and orders; and the
//! trading banner shown on every page. One file per part; the table styles and amount
//! formatting they share live here.

mod banner;
mod orders;
mod portfolio;
mod ticket;

use std::str::FromStr;

use rust_decimal::Decimal;

pub use banner::TradingBanner;
pub use orders::OrdersPage;
pub use ticket::TradePage;

pub(crate) const CARD: &str =
    "overflow-hidden rounded-xl border border-slate-200 bg-white shadow-sm";
pub(crate) const TH: &str =
    "px-4 py-2 text-left text-xs font-semibold uppercase tracking-wide text-slate-500";
pub(crate) const TD: &str = "px-4 py-2 text-sm text-slate-700 whitespace-nowrap";

fn dec(raw: &str) -> Option<Decimal> {
    let raw = raw.trim();
    if raw.is_empty() || !raw.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return None;
    }
    Decimal::from_str(raw).ok()
}

/// Groups thousands for reading (12,345.67); amounts stay exact strings everywhere else.
pub(crate) fn money(raw: &str) -> String {
    let (int, frac) = raw.split_once('.').unwrap_or((raw, ""));
    let mut grouped = String::new();
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    if frac.is_empty() {
        grouped
    } else {
        format!("{grouped}.{}", &frac[..frac.len().min(8)])
    }
}

pub(crate) fn status_badge(status: &str) -> &'static str {
    match status {
        "filled" => "bg-emerald-100 text-emerald-800",
        "open" | "submitting" => "bg-sky-100 text-sky-800",
        "held" => "bg-amber-100 text-amber-900",
        "denied" | "rejected" => "bg-red-100 text-red-800",
        _ => "bg-slate-100 text-slate-700",
    }
}

#[cfg(test)]
mod tests {
    use super::money;

    #[test]
    fn money_groups_thousands_and_keeps_decimals() {
        assert_eq!(money("1234567.5"), "1,234,567.5");
        assert_eq!(money("999"), "999");
        assert_eq!(money("0.00012"), "0.00012");
    }
}
