//! The paper exchange's price feed: a deterministic function of the symbol and the time, so a
//! test (or a chart) can say exactly what the price was at any second.

use std::f64::consts::TAU;
use std::str::FromStr;

use rust_decimal::{Decimal, RoundingStrategy};
use time::OffsetDateTime;

/// The paper exchange's symbols and their base prices.
#[derive(Debug, Clone, Copy)]
pub struct PaperPrices;

/// (a day, an hour, five minutes) in seconds, and each wave's relative amplitude.
const WAVES: [(f64, f64); 3] = [(86_400.0, 0.03), (3_600.0, 0.01), (300.0, 0.002)];

impl PaperPrices {
    /// Every symbol the paper exchange trades, with its base price in USDT.
    pub const SYMBOLS: &'static [(&'static str, &'static str)] = &[
        ("BTCUSDT", "60000"),
        ("ETHUSDT", "3000"),
        ("SOLUSDT", "150"),
        ("BNBUSDT", "600"),
        ("XRPUSDT", "0.6"),
        ("ADAUSDT", "0.45"),
        ("DOGEUSDT", "0.15"),
        ("LTCUSDT", "80"),
    ];

    /// Whether the paper exchange trades `symbol`.
    pub fn is_traded(symbol: &str) -> bool {
        Self::base(symbol).is_some()
    }

    /// The symbol's base price (the centre its price swings around).
    pub fn base(symbol: &str) -> Option<Decimal> {
        Self::SYMBOLS
            .iter()
            .find(|(s, _)| *s == symbol)
            .and_then(|(_, base)| Decimal::from_str(base).ok())
    }

    /// Decimal places of the symbol's tick: 2 for prices of 1 USDT and more, 5 below.
    pub fn tick_places(symbol: &str) -> Option<u32> {
        Self::base(symbol).map(tick_places)
    }

    /// The price at a moment: a pure function of the symbol and the whole unix second,
    /// `base × (1 + 0.03·sin(2πt/86400 + φ) + 0.01·sin(2πt/3600 + φ) + 0.002·sin(2πt/300 + φ))`
    /// with a phase φ derived from the symbol's bytes, rounded to the symbol's tick. Always
    /// positive; `None` for a symbol the paper exchange does not trade.
    pub fn price_at(symbol: &str, at: OffsetDateTime) -> Option<Decimal> {
        let base = Self::base(symbol)?;
        let places = tick_places(base);
        // Whole seconds up to ±2^53 are exact in an f64; later dates are not a concern.
        let t = at.unix_timestamp() as f64;
        let phase = phase(symbol);
        let swing: f64 = WAVES
            .iter()
            .map(|(period, amplitude)| amplitude * (TAU * t / period + phase).sin())
            .sum();
        // At most ±4.2 %, so the factor stays near 1; ten places are plenty before rounding.
        let factor = Decimal::from_f64_retain(1.0 + swing)?.round_dp(10);
        let tick = Decimal::new(1, places);
        let price = (base * factor)
            .round_dp_with_strategy(places, RoundingStrategy::MidpointAwayFromZero)
            .max(tick);
        Some(price)
    }

    /// `points` prices, oldest first, `step_secs` apart and ending at `end`: for charts.
    /// Empty for an unknown symbol, no points or a step that is not positive.
    pub fn history(
        symbol: &str,
        end: OffsetDateTime,
        points: usize,
        step_secs: i64,
    ) -> Vec<(OffsetDateTime, Decimal)> {
        if !Self::is_traded(symbol) || step_secs <= 0 {
            return Vec::new();
        }
        (0..points)
            .rev()
            .filter_map(|back| {
                let back = i64::try_from(back).ok()?;
                let at = end.checked_sub(time::Duration::seconds(back.checked_mul(step_secs)?))?;
                Some((at, Self::price_at(symbol, at)?))
            })
            .collect()
    }
}

fn tick_places(base: Decimal) -> u32 {
    if base >= Decimal::ONE { 2 } else { 5 }
}

/// A phase in [0, 2π) from the symbol's bytes (FNV-1a), so symbols do not move in lockstep.
fn phase(symbol: &str) -> f64 {
    let hash = symbol
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
        });
    TAU * (hash % 1_000_000) as f64 / 1_000_000.0
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    #[test]
    fn the_same_second_gives_the_same_price() {
        let at = datetime!(2026-11-23 10:15:42 UTC);
        for (symbol, _) in PaperPrices::SYMBOLS {
            let first = PaperPrices::price_at(symbol, at).expect("traded");
            // A different sub-second instant in the same second: same price.
            let later = at + time::Duration::milliseconds(900);
            assert_eq!(PaperPrices::price_at(symbol, later), Some(first));
            assert_eq!(PaperPrices::price_at(symbol, at), Some(first));
        }
    }

    #[test]
    fn prices_move_over_time() {
        let at = datetime!(2026-11-23 10:00:00 UTC);
        let a = PaperPrices::price_at("BTCUSDT", at);
        let b = PaperPrices::price_at("BTCUSDT", at + time::Duration::minutes(17));
        assert_ne!(a, b);
    }

    #[test]
    fn symbols_have_their_own_phase() {
        let phases: Vec<f64> = PaperPrices::SYMBOLS.iter().map(|(s, _)| phase(s)).collect();
        for (i, a) in phases.iter().enumerate() {
            for b in &phases[i + 1..] {
                assert!((a - b).abs() > 1e-6, "{phases:?}");
            }
        }
        // Relative to their bases, two symbols are not at the same point of their swing.
        let at = datetime!(2026-11-23 10:00:00 UTC);
        let relative = |symbol: &str| {
            PaperPrices::price_at(symbol, at).expect("traded")
                / PaperPrices::base(symbol).expect("traded")
        };
        assert_ne!(
            relative("BTCUSDT").round_dp(4),
            relative("ETHUSDT").round_dp(4)
        );
        assert_ne!(
            PaperPrices::price_at("BTCUSDT", at),
            PaperPrices::price_at("ETHUSDT", at)
        );
    }

    #[test]
    fn prices_stay_positive_near_their_base_and_on_the_tick() {
        let start = datetime!(2026-01-01 00:00:00 UTC);
        for (symbol, _) in PaperPrices::SYMBOLS {
            let base = PaperPrices::base(symbol).expect("traded");
            let places = PaperPrices::tick_places(symbol).expect("traded");
            // Two days in odd steps, so every wave is sampled at many points.
            for step in 0..2_000_i64 {
                let at = start + time::Duration::seconds(step * 86 + step % 7);
                let price = PaperPrices::price_at(symbol, at).expect("traded");
                assert!(price > Decimal::ZERO, "{symbol} at {at}: {price}");
                assert!(price.scale() <= places, "{symbol} off tick: {price}");
                let drift = ((price - base) / base).abs();
                assert!(drift <= Decimal::new(43, 3), "{symbol} at {at}: {price}");
            }
        }
    }

    #[test]
    fn ticks_are_cents_above_one_and_finer_below() {
        assert_eq!(PaperPrices::tick_places("BTCUSDT"), Some(2));
        assert_eq!(PaperPrices::tick_places("LTCUSDT"), Some(2));
        assert_eq!(PaperPrices::tick_places("XRPUSDT"), Some(5));
        assert_eq!(PaperPrices::tick_places("DOGEUSDT"), Some(5));
        assert_eq!(PaperPrices::tick_places("XYZUSDT"), None);
    }

    #[test]
    fn unknown_symbols_have_no_price() {
        let at = datetime!(2026-11-23 10:00:00 UTC);
        assert_eq!(PaperPrices::price_at("XYZUSDT", at), None);
        assert_eq!(PaperPrices::price_at("btcusdt", at), None);
        assert!(PaperPrices::history("XYZUSDT", at, 10, 60).is_empty());
    }

    #[test]
    fn history_ends_at_the_end_oldest_first() {
        let end = datetime!(2026-11-23 10:00:00 UTC);
        let history = PaperPrices::history("ETHUSDT", end, 5, 60);
        assert_eq!(history.len(), 5);
        assert_eq!(history[0].0, end - time::Duration::minutes(4));
        assert_eq!(history[4].0, end);
        for (at, price) in &history {
            assert_eq!(PaperPrices::price_at("ETHUSDT", *at), Some(*price));
        }
        assert!(PaperPrices::history("ETHUSDT", end, 0, 60).is_empty());
        assert!(PaperPrices::history("ETHUSDT", end, 5, 0).is_empty());
    }
}
