//! The second line of screening: how unlike the trader's own recent orders a new order is.
//!
//! Six features, each a strength in 0..=1, compared with the trader's last [`HISTORY_LEN`]
//! orders:
//!
//! | Feature | Strength | Weight |
//! |---|---|---|
//! | Order size far from usual | robust z = \|x − median\| / max(1.4826·MAD, 5 % of median, 1e-9); (z − 3) / 7 clamped, so z ≤ 3 is normal and z ≥ 10 is maximal | 0.6 |
//! | Many orders in a short time | n = earlier orders in the 5 minutes before this one; (n − 2) / 6 clamped | 0.5 |
//! | Symbol never traded | 1 if the symbol is not in the history | 0.3 |
//! | New IP address | 1 if the IP is not in the history (0 if unknown) | 0.3 |
//! | New device | 1 if the device is not in the history (0 if unknown) | 0.3 |
//! | Unusual hour | share of orders within ±1 hour (UTC, wrapping at midnight): 1 at 0 %, 0 at 10 % or more, linear between | 0.25 |
//!
//! The median and MAD make the size feature robust: one earlier outlier does not hide the next;
//! the 5 %-of-median floor keeps a trader who always orders exactly 100 USDT from scoring 101 as
//! an outlier.
//!
//! They combine as a noisy-OR, `score = 1 − Π(1 − weight · strength)`: each feature can only
//! raise the score, none can mask another, and each contribution (`weight · strength`) is a
//! reason a reviewer can read. A maximal size outlier alone scores 0.6; with a new symbol 0.72.
//!
//! Cold start: with fewer than 5 earlier orders, every feature but velocity is scaled by
//! `len / 5`, since everything is new for a newcomer and that is not an anomaly. Velocity is
//! never damped: a burst is suspicious from the first order.

use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime, UtcOffset};

use super::rules::format_amount;

/// How many of the newest orders the score compares with.
pub const HISTORY_LEN: usize = 50;
/// Below this many earlier orders, history-based features are damped.
const COLD_START_LEN: usize = 5;
const VELOCITY_WINDOW: Duration = Duration::minutes(5);

/// One order, as the second line sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TradeSample {
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub symbol: String,
    /// In USDT.
    pub notional: Decimal,
    pub ip: Option<String>,
    pub device: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Feature {
    NotionalOutlier,
    UnusualHour,
    NewSymbol,
    NewIp,
    NewDevice,
    Velocity,
}

impl Feature {
    pub const ALL: [Feature; 6] = [
        Self::NotionalOutlier,
        Self::UnusualHour,
        Self::NewSymbol,
        Self::NewIp,
        Self::NewDevice,
        Self::Velocity,
    ];

    pub fn code(self) -> &'static str {
        match self {
            Feature::NotionalOutlier => "notional_outlier",
            Feature::UnusualHour => "unusual_hour",
            Feature::NewSymbol => "new_symbol",
            Feature::NewIp => "new_ip",
            Feature::NewDevice => "new_device",
            Feature::Velocity => "velocity",
        }
    }

    pub fn from_code(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.code() == code)
    }

    pub fn label(self) -> &'static str {
        match self {
            Feature::NotionalOutlier => "Order size far from usual",
            Feature::UnusualHour => "Unusual hour",
            Feature::NewSymbol => "Symbol never traded",
            Feature::NewIp => "New IP address",
            Feature::NewDevice => "New device",
            Feature::Velocity => "Many orders in a short time",
        }
    }

    /// The most this feature alone adds to the score (see the module documentation).
    pub fn weight(self) -> f64 {
        match self {
            Feature::NotionalOutlier => 0.6,
            Feature::Velocity => 0.5,
            Feature::NewSymbol => 0.3,
            Feature::UnusualHour => 0.25,
            Feature::NewIp => 0.3,
            Feature::NewDevice => 0.3,
        }
    }

    /// Whether the cold-start damping applies.
    fn needs_history(self) -> bool {
        self != Feature::Velocity
    }
}

/// One feature's part in a score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Contribution {
    pub feature: Feature,
    /// 0..=1, after cold-start damping.
    pub strength: f64,
    pub weight: f64,
    /// What was measured, for the reviewer.
    pub detail: String,
}

impl Contribution {
    pub fn impact(&self) -> f64 {
        self.strength * self.weight
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnomalyScore {
    /// 0..=1.
    pub score: f64,
    /// Every feature, highest impact first.
    pub contributions: Vec<Contribution>,
}

impl AnomalyScore {
    /// The `n` contributions with the highest impact.
    pub fn top(&self, n: usize) -> &[Contribution] {
        &self.contributions[..n.min(self.contributions.len())]
    }
}

/// Scores `candidate` against `history` (oldest first; only the newest [`HISTORY_LEN`] count).
pub fn score(history: &[TradeSample], candidate: &TradeSample) -> AnomalyScore {
    let history = &history[history.len().saturating_sub(HISTORY_LEN)..];
    let n = history.len();
    let damping = n.min(COLD_START_LEN) as f64 / COLD_START_LEN as f64;

    let measured = [
        (
            Feature::NotionalOutlier,
            notional_outlier(history, candidate),
        ),
        (Feature::UnusualHour, unusual_hour(history, candidate)),
        (Feature::NewSymbol, new_symbol(history, candidate)),
        (
            Feature::NewIp,
            new_value(
                history,
                candidate.ip.as_deref(),
                |t| t.ip.as_deref(),
                "IP address",
            ),
        ),
        (
            Feature::NewDevice,
            new_value(
                history,
                candidate.device.as_deref(),
                |t| t.device.as_deref(),
                "device",
            ),
        ),
        (Feature::Velocity, velocity(history, candidate)),
    ];

    let mut contributions: Vec<Contribution> = measured
        .into_iter()
        .map(|(feature, (strength, mut detail))| {
            let mut strength = unit(strength);
            if feature.needs_history() && n < COLD_START_LEN && strength > 0.0 {
                strength *= damping;
                detail.push_str(&format!(
                    "; counted at {:.0} % (only {n} earlier orders)",
                    damping * 100.0
                ));
            }
            Contribution {
                feature,
                strength,
                weight: feature.weight(),
                detail,
            }
        })
        .collect();
    // Stable, so ties keep the feature order.
    contributions.sort_by(|a, b| b.impact().total_cmp(&a.impact()));

    let kept: f64 = contributions
        .iter()
        .map(|c| 1.0 - unit(c.impact()))
        .product();
    AnomalyScore {
        score: unit(1.0 - kept),
        contributions,
    }
}

/// Clamps to 0..=1; NaN counts as maximal, so an arithmetic slip fails safe.
fn unit(x: f64) -> f64 {
    if x.is_nan() { 1.0 } else { x.clamp(0.0, 1.0) }
}

fn to_f64(d: Decimal) -> f64 {
    d.to_f64().unwrap_or(f64::NAN)
}

fn median(values: &mut [Decimal]) -> Option<Decimal> {
    values.sort_unstable();
    let len = values.len();
    match len {
        0 => None,
        _ if len % 2 == 1 => Some(values[len / 2]),
        _ => Some(values[len / 2 - 1].saturating_add(values[len / 2]) / Decimal::TWO),
    }
}

fn notional_outlier(history: &[TradeSample], candidate: &TradeSample) -> (f64, String) {
    let mut notionals: Vec<Decimal> = history.iter().map(|t| t.notional).collect();
    let Some(median) = median(&mut notionals) else {
        return (0.0, "no earlier orders to compare with".into());
    };
    let mut deviations: Vec<Decimal> = notionals
        .iter()
        .map(|x| x.saturating_sub(median).abs())
        .collect();
    let mad = self::median(&mut deviations).unwrap_or(Decimal::ZERO);
    let scale = (1.4826 * to_f64(mad))
        .max(0.05 * to_f64(median).abs())
        .max(1e-9);
    let z = to_f64(candidate.notional.saturating_sub(median).abs()) / scale;
    let strength = (z - 3.0) / 7.0;
    (
        strength,
        format!(
            "robust z = {z:.1} (median {} USDT, MAD {})",
            format_amount(median.round_dp(2)),
            format_amount(mad.round_dp(2))
        ),
    )
}

fn utc_hour(at: OffsetDateTime) -> u8 {
    at.to_offset(UtcOffset::UTC).hour()
}

fn unusual_hour(history: &[TradeSample], candidate: &TradeSample) -> (f64, String) {
    if history.is_empty() {
        return (0.0, "no earlier orders to compare with".into());
    }
    let hour = utc_hour(candidate.at);
    let near = history
        .iter()
        .filter(|t| {
            let d = utc_hour(t.at).abs_diff(hour);
            d.min(24 - d) <= 1
        })
        .count();
    let share = near as f64 / history.len() as f64;
    let strength = (0.10 - share) / 0.10;
    (
        strength,
        format!(
            "{near} of {} trades between {:02}:00 and {:02}:59 UTC",
            history.len(),
            (hour + 23) % 24,
            (hour + 1) % 24
        ),
    )
}

fn new_symbol(history: &[TradeSample], candidate: &TradeSample) -> (f64, String) {
    let symbol = candidate.symbol.trim();
    let seen = history
        .iter()
        .filter(|t| t.symbol.trim().eq_ignore_ascii_case(symbol))
        .count();
    if seen == 0 {
        (1.0, format!("first order in {symbol}"))
    } else {
        (0.0, format!("{seen} earlier orders in {symbol}"))
    }
}

fn new_value(
    history: &[TradeSample],
    value: Option<&str>,
    of: impl Fn(&TradeSample) -> Option<&str>,
    what: &str,
) -> (f64, String) {
    let Some(value) = value else {
        return (0.0, format!("{what} not known"));
    };
    let seen = history.iter().filter(|t| of(t) == Some(value)).count();
    if seen == 0 {
        (1.0, format!("first order from this {what}"))
    } else {
        (0.0, format!("{seen} earlier orders from this {what}"))
    }
}

fn velocity(history: &[TradeSample], candidate: &TradeSample) -> (f64, String) {
    let since = candidate.at.checked_sub(VELOCITY_WINDOW);
    let recent = history
        .iter()
        .filter(|t| t.at <= candidate.at && since.is_none_or(|since| t.at >= since))
        .count();
    let strength = (recent as f64 - 2.0) / 6.0;
    (
        strength,
        format!("{recent} orders in the 5 minutes before this one"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    use time::macros::datetime;

    fn dec(raw: &str) -> Decimal {
        raw.parse().expect("test decimal")
    }

    fn sample(at: OffsetDateTime, symbol: &str, notional: &str) -> TradeSample {
        TradeSample {
            at,
            symbol: symbol.into(),
            notional: dec(notional),
            ip: Some("192.0.2.10".into()),
            device: Some("laptop".into()),
        }
    }

    /// Twelve BTCUSDT orders of 90 to 110 USDT, one a day around 14:00 UTC, from one IP and
    /// one device.
    fn habitual() -> Vec<TradeSample> {
        let start = datetime!(2025-03-01 14:05 UTC);
        let sizes = [
            "100", "95", "108", "92", "103", "110", "97", "101", "90", "105", "99", "104",
        ];
        sizes
            .iter()
            .enumerate()
            .map(|(day, size)| {
                let at = start + Duration::days(day as i64) + Duration::minutes(7 * day as i64);
                sample(at, "BTCUSDT", size)
            })
            .collect()
    }

    fn contribution(score: &AnomalyScore, feature: Feature) -> &Contribution {
        score
            .contributions
            .iter()
            .find(|c| c.feature == feature)
            .expect("every feature is reported")
    }

    fn assert_well_formed(score: &AnomalyScore) {
        assert!((0.0..=1.0).contains(&score.score), "{score:?}");
        assert_eq!(score.contributions.len(), Feature::ALL.len());
        for pair in score.contributions.windows(2) {
            assert!(pair[0].impact() >= pair[1].impact(), "{score:?}");
        }
        for c in &score.contributions {
            assert!((0.0..=1.0).contains(&c.strength), "{c:?}");
            assert_eq!(c.weight, c.feature.weight());
        }
        // The score is the noisy-OR of the contributions.
        let kept: f64 = score
            .contributions
            .iter()
            .map(|c| 1.0 - c.impact())
            .product();
        assert!((score.score - (1.0 - kept)).abs() < 1e-12);
    }

    #[test]
    fn feature_names() {
        for f in Feature::ALL {
            assert_eq!(Feature::from_code(f.code()), Some(f));
            assert!(f.weight() > 0.0 && f.weight() < 1.0);
        }
        assert_eq!(
            Feature::NotionalOutlier.label(),
            "Order size far from usual"
        );
        assert_eq!(Feature::Velocity.label(), "Many orders in a short time");
    }

    #[test]
    fn first_ever_order_is_not_an_anomaly() {
        let candidate = sample(datetime!(2025-03-01 03:00 UTC), "DOGEUSDT", "25000");
        let s = score(&[], &candidate);
        assert_well_formed(&s);
        assert!(s.score < 0.3, "{s:?}");
    }

    #[test]
    fn cold_start_damps_novelty_but_not_velocity() {
        let at = datetime!(2025-03-01 14:00 UTC);
        let history = vec![
            sample(at - Duration::minutes(4), "BTCUSDT", "100"),
            sample(at - Duration::minutes(3), "BTCUSDT", "100"),
            sample(at - Duration::minutes(2), "BTCUSDT", "100"),
            sample(at - Duration::minutes(1), "BTCUSDT", "100"),
        ];
        let mut candidate = sample(at, "ETHUSDT", "100");
        candidate.device = Some("phone".into());
        let s = score(&history, &candidate);
        assert_well_formed(&s);
        // Four of five: novelty counts at 80 %.
        let new_symbol = contribution(&s, Feature::NewSymbol);
        assert!((new_symbol.strength - 0.8).abs() < 1e-12, "{new_symbol:?}");
        assert!(
            new_symbol.detail.contains("counted at 80 %"),
            "{new_symbol:?}"
        );
        assert!((contribution(&s, Feature::NewDevice).strength - 0.8).abs() < 1e-12);
        // Four orders in five minutes: (4 - 2) / 6, undamped.
        let velocity = contribution(&s, Feature::Velocity);
        assert!(
            (velocity.strength - 2.0 / 6.0).abs() < 1e-12,
            "{velocity:?}"
        );
        assert_eq!(velocity.detail, "4 orders in the 5 minutes before this one");
    }

    #[test]
    fn a_habitual_order_scores_low() {
        let history = habitual();
        let candidate = sample(datetime!(2025-03-14 14:20 UTC), "BTCUSDT", "102");
        let s = score(&history, &candidate);
        assert_well_formed(&s);
        assert!(s.score < 0.2, "{s:?}");
        let hour = contribution(&s, Feature::UnusualHour);
        assert_eq!(hour.detail, "12 of 12 trades between 13:00 and 15:59 UTC");
    }

    #[test]
    fn a_burst_then_a_huge_order_in_a_new_symbol_scores_high() {
        let mut history = habitual();
        let at = datetime!(2025-03-14 14:30 UTC);
        for (minutes_before, size) in [(4, "100"), (3, "98"), (2, "103")] {
            history.push(sample(
                at - Duration::minutes(minutes_before),
                "BTCUSDT",
                size,
            ));
        }
        let mut candidate = sample(at, "DOGEUSDT", "5000");

        // With the trader's own IP and device, the size (0.6), the new symbol (0.3) and the
        // burst ((3 - 2) / 6 · 0.5) make 1 − 0.4 · 0.7 · (1 − 1/12) ≈ 0.74.
        let s = score(&history, &candidate);
        assert_well_formed(&s);
        assert!(
            (s.score - (1.0 - 0.4 * 0.7 * (1.0 - 1.0 / 12.0))).abs() < 1e-9,
            "{s:?}"
        );
        assert_eq!(s.top(1)[0].feature, Feature::NotionalOutlier);

        // From an address the trader never used (a taken-over session), it crosses 0.8.
        candidate.ip = Some("203.0.113.7".into());
        let s = score(&history, &candidate);
        assert_well_formed(&s);
        assert!(s.score >= 0.8, "{s:?}");
        let top = s.top(2);
        assert_eq!(top[0].feature, Feature::NotionalOutlier);
        assert_eq!(top[0].strength, 1.0);
        assert!(
            top[0].detail.starts_with("robust z = "),
            "{}",
            top[0].detail
        );
        assert!(
            top[0].detail.contains("(median 100 USDT, MAD 3)"),
            "{}",
            top[0].detail
        );
        assert_eq!(s.top(100).len(), Feature::ALL.len());
    }

    #[test]
    fn constant_history_does_not_divide_by_zero() {
        let start = datetime!(2025-03-01 10:00 UTC);
        let history: Vec<TradeSample> = (0..10)
            .map(|i| sample(start + Duration::days(i), "BTCUSDT", "100"))
            .collect();
        let at = datetime!(2025-03-12 10:00 UTC);

        // MAD = 0: the 5 %-of-median floor (5 USDT) is the scale, so 101 is normal...
        let s = score(&history, &sample(at, "BTCUSDT", "101"));
        assert_well_formed(&s);
        assert_eq!(contribution(&s, Feature::NotionalOutlier).strength, 0.0);
        assert!(s.score < 0.01, "{s:?}");
        // ...and 150 (z = 10) is maximal.
        let s = score(&history, &sample(at, "BTCUSDT", "150"));
        assert_eq!(contribution(&s, Feature::NotionalOutlier).strength, 1.0);

        // Median 0 as well: the 1e-9 floor keeps it finite.
        let zeros: Vec<TradeSample> = (0..10)
            .map(|i| sample(start + Duration::days(i), "BTCUSDT", "0"))
            .collect();
        for size in ["0", "1"] {
            let s = score(&zeros, &sample(at, "BTCUSDT", size));
            assert_well_formed(&s);
            assert!(!s.score.is_nan());
        }
        let same = score(&zeros, &sample(at, "BTCUSDT", "0"));
        assert_eq!(contribution(&same, Feature::NotionalOutlier).strength, 0.0);
    }

    #[test]
    fn notional_strength_is_linear_between_z_3_and_10() {
        let start = datetime!(2025-03-01 10:00 UTC);
        let history: Vec<TradeSample> = (0..10)
            .map(|i| sample(start + Duration::days(i), "BTCUSDT", "100"))
            .collect();
        let at = datetime!(2025-03-12 10:00 UTC);
        // Scale 5 USDT: 115 is z = 3, 132.5 is z = 6.5 (half way).
        let strength = |size: &str| {
            contribution(
                &score(&history, &sample(at, "BTCUSDT", size)),
                Feature::NotionalOutlier,
            )
            .strength
        };
        assert_eq!(strength("115"), 0.0);
        assert!((strength("132.5") - 0.5).abs() < 1e-12);
        assert_eq!(strength("85"), 0.0);
        assert!((strength("67.5") - 0.5).abs() < 1e-12);
    }

    #[test]
    fn unusual_hour_wraps_at_midnight_and_is_linear() {
        // 20 orders: at 23:30 on two days, the rest at 12:00.
        let start = datetime!(2025-03-01 12:00 UTC);
        let mut history: Vec<TradeSample> = (0..18)
            .map(|i| sample(start + Duration::days(i), "BTCUSDT", "100"))
            .collect();
        history.push(sample(datetime!(2025-03-20 23:30 UTC), "BTCUSDT", "100"));
        history.push(sample(datetime!(2025-03-21 23:30 UTC), "BTCUSDT", "100"));
        history.sort_by_key(|t| t.at);

        // 00:15 is within an hour of 23:xx: 2 of 20 = 10 %, normal.
        let s = score(
            &history,
            &sample(datetime!(2025-03-25 00:15 UTC), "BTCUSDT", "100"),
        );
        let hour = contribution(&s, Feature::UnusualHour);
        assert_eq!(hour.strength, 0.0);
        assert_eq!(hour.detail, "2 of 20 trades between 23:00 and 01:59 UTC");

        // 06:00 is like nothing before: maximal.
        let s = score(
            &history,
            &sample(datetime!(2025-03-25 06:00 UTC), "BTCUSDT", "100"),
        );
        assert_eq!(contribution(&s, Feature::UnusualHour).strength, 1.0);

        // 22:10 sees only the 23:30 orders... which are 1 hour away: 10 %, normal.
        let s = score(
            &history,
            &sample(datetime!(2025-03-25 22:10 UTC), "BTCUSDT", "100"),
        );
        assert_eq!(contribution(&s, Feature::UnusualHour).strength, 0.0);

        // One of 20 (5 %) is half way.
        history.pop();
        history.push(sample(datetime!(2025-03-22 12:00 UTC), "BTCUSDT", "100"));
        let s = score(
            &history,
            &sample(datetime!(2025-03-25 00:15 UTC), "BTCUSDT", "100"),
        );
        assert!((contribution(&s, Feature::UnusualHour).strength - 0.5).abs() < 1e-12);
    }

    #[test]
    fn offsets_are_read_in_utc() {
        let history = habitual();
        // 16:20 at UTC+2 is 14:20 UTC, the usual hour.
        let at = datetime!(2025-03-14 16:20 +2);
        let s = score(&history, &sample(at, "BTCUSDT", "100"));
        assert_eq!(contribution(&s, Feature::UnusualHour).strength, 0.0);
    }

    #[test]
    fn unknown_ip_or_device_is_not_new() {
        let history = habitual();
        let mut candidate = sample(datetime!(2025-03-14 14:20 UTC), "BTCUSDT", "100");
        candidate.ip = None;
        candidate.device = None;
        let s = score(&history, &candidate);
        assert_eq!(contribution(&s, Feature::NewIp).strength, 0.0);
        assert_eq!(
            contribution(&s, Feature::NewIp).detail,
            "IP address not known"
        );
        assert_eq!(contribution(&s, Feature::NewDevice).strength, 0.0);
        candidate.device = Some("tablet".into());
        let s = score(&history, &candidate);
        assert_eq!(contribution(&s, Feature::NewDevice).strength, 1.0);
        assert_eq!(
            contribution(&s, Feature::NewDevice).detail,
            "first order from this device"
        );
    }

    #[test]
    fn velocity_counts_the_five_minutes_before() {
        let at = datetime!(2025-03-14 14:30 UTC);
        let mut history = habitual();
        // Just outside the window, then eight inside (one at the very start).
        history.push(sample(at - Duration::seconds(301), "BTCUSDT", "100"));
        for s in (0..=280).step_by(40) {
            history.push(sample(at - Duration::seconds(300 - s), "BTCUSDT", "100"));
        }
        let s = score(&history, &sample(at, "BTCUSDT", "100"));
        let v = contribution(&s, Feature::Velocity);
        assert_eq!(v.detail, "8 orders in the 5 minutes before this one");
        assert_eq!(v.strength, 1.0);
        assert!(s.score >= 0.5);
    }

    #[test]
    fn only_the_newest_history_counts() {
        let start = datetime!(2024-01-01 14:00 UTC);
        // An old ETHUSDT order, then HISTORY_LEN BTCUSDT orders.
        let mut history = vec![sample(start, "ETHUSDT", "100")];
        history.extend(
            (1..=HISTORY_LEN as i64).map(|i| sample(start + Duration::days(i), "BTCUSDT", "100")),
        );
        let s = score(
            &history,
            &sample(datetime!(2024-06-01 14:00 UTC), "ETHUSDT", "100"),
        );
        let symbol = contribution(&s, Feature::NewSymbol);
        assert_eq!(symbol.strength, 1.0);
        assert_eq!(symbol.detail, "first order in ETHUSDT");
    }

    #[test]
    fn score_stays_in_range_for_extremes() {
        let start = datetime!(2025-03-01 00:00 UTC);
        let at = datetime!(2025-03-01 00:05 UTC);
        let histories: Vec<Vec<TradeSample>> = vec![
            Vec::new(),
            vec![sample(start, "BTCUSDT", "0")],
            (0..60)
                .map(|i| {
                    sample(
                        start + Duration::seconds(i),
                        "BTCUSDT",
                        "79228162514264337593543950335",
                    )
                })
                .collect(),
            (0..60)
                .map(|i| sample(start + Duration::seconds(i), "X", "0.00000001"))
                .collect(),
        ];
        for history in &histories {
            for size in ["0", "0.00000001", "1", "79228162514264337593543950335"] {
                for symbol in ["BTCUSDT", "NEWCOIN"] {
                    let s = score(history, &sample(at, symbol, size));
                    assert_well_formed(&s);
                }
            }
        }
    }

    // serde_json comes with the `full` feature only.
    #[cfg(feature = "full")]
    #[test]
    fn serialises_with_rfc3339_times() {
        let s = sample(datetime!(2025-03-01 14:05 UTC), "BTCUSDT", "100.5");
        let json = serde_json::to_string(&s).expect("serialise");
        assert!(json.contains("\"2025-03-01T14:05:00Z\""), "{json}");
        let back: TradeSample = serde_json::from_str(&json).expect("deserialise");
        assert_eq!(back, s);
        let scored = score(&habitual(), &s);
        let json = serde_json::to_string(&scored).expect("serialise");
        assert!(json.contains("\"notional_outlier\""), "{json}");
        let back: AnomalyScore = serde_json::from_str(&json).expect("deserialise");
        assert_eq!(back, scored);
    }
}
