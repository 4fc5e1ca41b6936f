//! The first line of screening: fixed rules every order passes before it reaches an exchange.
//! The server enforces them; the browser's order ticket runs the same code as a preview, with
//! what it cannot know (the IP blocklist) left out.
//!
//! Every rule that fires is reported, not only the first, so the trader and the reviewer see
//! the whole picture; the verdict is the most severe one.

use std::fmt;
use std::net::IpAddr;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::anomaly::AnomalyScore;
use super::limits::{IpBlocklist, RiskLimits};
use super::state::{OrderEffect, TradingState};

/// What happens to an order, from least to most severe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Allow,
    /// Goes out once the trader approves it with a second factor.
    StepUp,
    /// Waits for a reviewer.
    Hold,
    Deny,
}

impl Verdict {
    pub const ALL: [Verdict; 4] = [Self::Allow, Self::StepUp, Self::Hold, Self::Deny];

    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allow => "allow",
            Verdict::StepUp => "step_up",
            Verdict::Hold => "hold",
            Verdict::Deny => "deny",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        let raw = raw.trim().to_ascii_lowercase();
        Self::ALL.into_iter().find(|v| v.as_str() == raw)
    }

    pub fn label(self) -> &'static str {
        match self {
            Verdict::Allow => "Allowed",
            Verdict::StepUp => "Needs your security key or code",
            Verdict::Hold => "Held for review",
            Verdict::Deny => "Denied",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The rules, in the order they are checked and reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    KillSwitchGlobal,
    KillSwitchUser,
    TradingState,
    BlockedIp,
    SymbolNotAllowed,
    MaxOrderNotional,
    DailyNotional,
    Velocity,
    NewIp,
    NewDevice,
    LargeOrder,
    AnomalyScore,
}

impl Rule {
    pub const ALL: [Rule; 12] = [
        Self::KillSwitchGlobal,
        Self::KillSwitchUser,
        Self::TradingState,
        Self::BlockedIp,
        Self::SymbolNotAllowed,
        Self::MaxOrderNotional,
        Self::DailyNotional,
        Self::Velocity,
        Self::NewIp,
        Self::NewDevice,
        Self::LargeOrder,
        Self::AnomalyScore,
    ];

    /// Stored in the database; never change one.
    pub fn code(self) -> &'static str {
        match self {
            Rule::KillSwitchGlobal => "kill_switch_global",
            Rule::KillSwitchUser => "kill_switch_user",
            Rule::TradingState => "trading_state",
            Rule::BlockedIp => "blocked_ip",
            Rule::SymbolNotAllowed => "symbol_not_allowed",
            Rule::MaxOrderNotional => "max_order_notional",
            Rule::DailyNotional => "daily_notional",
            Rule::Velocity => "velocity",
            Rule::NewIp => "new_ip",
            Rule::NewDevice => "new_device",
            Rule::LargeOrder => "large_order",
            Rule::AnomalyScore => "anomaly_score",
        }
    }

    pub fn from_code(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.code() == code)
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// One rule that fired, with what it means for the order and a sentence for the trader.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleHit {
    pub rule: Rule,
    pub verdict: Verdict,
    pub message: String,
}

impl RuleHit {
    fn new(rule: Rule, verdict: Verdict, message: String) -> Self {
        Self {
            rule,
            verdict,
            message,
        }
    }
}

/// Everything the first line looks at for one order.
#[derive(Debug, Clone)]
pub struct Screening<'a> {
    pub symbol: &'a str,
    /// Price × quantity in USDT.
    pub notional: Decimal,
    pub effect: OrderEffect,
    pub limits: &'a RiskLimits,
    /// Orders strictly above this need an approval with a second factor.
    pub step_up_threshold: Decimal,
    pub state: TradingState,
    pub global_kill: bool,
    pub user_kill: bool,
    /// Notional of today's (UTC) orders so far, this one excluded.
    pub used_today: Decimal,
    /// Orders in the last `limits.velocity_window_secs`, this one excluded.
    pub orders_in_window: u32,
    /// What the orders placed without an approval since the trader's last approved one (in
    /// the past 24 hours) count for, this one excluded: orders split below the threshold add
    /// up to it.
    pub unapproved_notional: Decimal,
    /// `None` where the IP is not known (the browser's preview).
    pub ip: Option<IpAddr>,
    /// `None` where the blocklist is not known (the browser's preview).
    pub blocklist: Option<&'a IpBlocklist>,
    pub new_ip: bool,
    pub new_device: bool,
}

/// The rules that fire for this order, one hit per rule, in [`Rule`] order.
pub fn first_line(s: &Screening) -> Vec<RuleHit> {
    let mut hits = Vec::new();
    // A cancel only lowers exposure, and a kill switch must never stop a trader from pulling
    // resting orders (MiFID II RTS 6 art. 12), so cancels skip every rule.
    if s.effect == OrderEffect::Cancel {
        return hits;
    }

    // The kill switches stop everything but cancels, reducing orders included.
    if s.global_kill {
        hits.push(RuleHit::new(
            Rule::KillSwitchGlobal,
            Verdict::Deny,
            "Trading is halted by the kill switch.".into(),
        ));
    }
    if s.user_kill {
        hits.push(RuleHit::new(
            Rule::KillSwitchUser,
            Verdict::Deny,
            "Trading on your account is halted by the kill switch.".into(),
        ));
    }

    if !s.state.permits(s.effect) {
        let allowed = match s.state {
            TradingState::Reducing => "only sells of coins you hold, and cancels, are accepted",
            TradingState::Active | TradingState::Halted => "only cancels are accepted",
        };
        hits.push(RuleHit::new(
            Rule::TradingState,
            Verdict::Deny,
            format!(
                "Your account is set to \u{201c}{}\u{201d}: {allowed}.",
                s.state.label()
            ),
        ));
    }

    if let (Some(ip), Some(blocklist)) = (s.ip, s.blocklist)
        && let Some(net) = blocklist.contains(ip)
    {
        hits.push(RuleHit::new(
            Rule::BlockedIp,
            Verdict::Deny,
            format!("Orders from {ip} are blocked (it is in {net} on the blocklist)."),
        ));
    }

    if !s.limits.allows_symbol(s.symbol) {
        hits.push(RuleHit::new(
            Rule::SymbolNotAllowed,
            Verdict::Deny,
            format!(
                "{} is not on the list of tradable symbols.",
                s.symbol.trim().to_ascii_uppercase()
            ),
        ));
    }

    if s.notional > s.limits.max_order_notional {
        hits.push(RuleHit::new(
            Rule::MaxOrderNotional,
            Verdict::Deny,
            format!(
                "This order is worth {} USDT; the limit per order is {} USDT.",
                format_amount(s.notional),
                format_amount(s.limits.max_order_notional)
            ),
        ));
    }

    if s.used_today.saturating_add(s.notional) > s.limits.daily_notional {
        hits.push(RuleHit::new(
            Rule::DailyNotional,
            Verdict::Deny,
            format!(
                "Over your daily limit: {} of {} USDT used today; this order adds {}.",
                format_amount(s.used_today),
                format_amount(s.limits.daily_notional),
                format_amount(s.notional)
            ),
        ));
    }

    if s.orders_in_window >= s.limits.velocity_max_orders {
        hits.push(RuleHit::new(
            Rule::Velocity,
            Verdict::Hold,
            format!(
                "{} orders in the last {} s; the limit is {}. This order waits for a review.",
                s.orders_in_window, s.limits.velocity_window_secs, s.limits.velocity_max_orders
            ),
        ));
    }

    if s.new_ip {
        hits.push(RuleHit::new(
            Rule::NewIp,
            Verdict::StepUp,
            "Needs your security key or code: this order comes from an IP address you have not used before.".into(),
        ));
    }
    if s.new_device {
        hits.push(RuleHit::new(
            Rule::NewDevice,
            Verdict::StepUp,
            "Needs your security key or code: this order comes from a device you have not used before.".into(),
        ));
    }

    // Strictly above, as in the server's step-up policy. Splitting an order does not avoid
    // it: within a rolling day, no more than the threshold goes out without a second factor
    // between approvals (cumulative, as PSD2's exemptions for small payments are).
    if s.notional > s.step_up_threshold {
        hits.push(RuleHit::new(
            Rule::LargeOrder,
            Verdict::StepUp,
            format!(
                "Needs your security key: orders above {} USDT are approved one by one.",
                format_amount(s.step_up_threshold)
            ),
        ));
    } else if s.unapproved_notional.saturating_add(s.notional) > s.step_up_threshold {
        hits.push(RuleHit::new(
            Rule::LargeOrder,
            Verdict::StepUp,
            format!(
                "Needs your security key or code: your orders without an approval since your last one in the past 24 hours come to {} USDT, and with this one they pass {} USDT.",
                format_amount(s.unapproved_notional),
                format_amount(s.step_up_threshold)
            ),
        ));
    }

    hits
}

/// The outcome of screening: the most severe verdict and every hit behind it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub verdict: Verdict,
    pub hits: Vec<RuleHit>,
}

/// Combines the first line's hits with the second line's score. A score at or above
/// `threshold` holds the order; a NaN score or threshold counts as reaching it (fail safe).
pub fn decide(mut hits: Vec<RuleHit>, anomaly: Option<&AnomalyScore>, threshold: f64) -> Decision {
    if let Some(anomaly) = anomaly
        && (anomaly.score >= threshold || anomaly.score.is_nan() || threshold.is_nan())
    {
        let reasons: Vec<&str> = anomaly
            .contributions
            .iter()
            .filter(|c| c.impact() > 0.0)
            .take(2)
            .map(|c| c.feature.label())
            .collect();
        let why = if reasons.is_empty() {
            "no single sign stands out".to_string()
        } else {
            reasons.join(", ")
        };
        hits.push(RuleHit::new(
            Rule::AnomalyScore,
            Verdict::Hold,
            format!(
                "Unusual for your account (anomaly score {:.2}): {why}. This order waits for a review.",
                anomaly.score
            ),
        ));
    }
    let verdict = hits
        .iter()
        .map(|h| h.verdict)
        .max()
        .unwrap_or(Verdict::Allow);
    Decision { verdict, hits }
}

/// A decimal as a trader reads it: thousands separated by commas, no trailing zeros, at most
/// eight decimal places (`240000.50` → `240,000.5`).
pub fn format_amount(value: Decimal) -> String {
    let value = value.round_dp(8).normalize();
    let text = value.abs().to_string();
    let (int_part, frac_part) = text.split_once('.').unwrap_or((&text, ""));
    let mut grouped = String::with_capacity(text.len() + text.len() / 3 + 1);
    if value.is_sign_negative() && !value.is_zero() {
        grouped.push('-');
    }
    for (i, c) in int_part.chars().enumerate() {
        if i > 0 && (int_part.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    if !frac_part.is_empty() {
        grouped.push('.');
        grouped.push_str(frac_part);
    }
    grouped
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::net::Ipv4Addr;

    use crate::risk::anomaly::{Contribution, Feature};

    fn dec(raw: &str) -> Decimal {
        raw.parse().expect("test decimal")
    }

    fn limits() -> RiskLimits {
        RiskLimits {
            max_order_notional: dec("50000"),
            daily_notional: dec("250000"),
            velocity_max_orders: 10,
            velocity_window_secs: 60,
            symbol_allowlist: vec!["BTCUSDT".into(), "ETHUSDT".into()],
            anomaly_threshold: 0.8,
            autonomous_cap: dec("500"),
        }
    }

    const HOME: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10));
    const BAD: IpAddr = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7));

    fn blocklist() -> IpBlocklist {
        IpBlocklist::from_entries(&["203.0.113.0/24".to_string()]).0
    }

    /// A small buy that passes every rule.
    fn order<'a>(limits: &'a RiskLimits, blocklist: &'a IpBlocklist) -> Screening<'a> {
        Screening {
            symbol: "BTCUSDT",
            notional: dec("100"),
            effect: OrderEffect::Opens,
            limits,
            step_up_threshold: dec("10000"),
            state: TradingState::Active,
            global_kill: false,
            user_kill: false,
            used_today: dec("0"),
            orders_in_window: 0,
            unapproved_notional: dec("0"),
            ip: Some(HOME),
            blocklist: Some(blocklist),
            new_ip: false,
            new_device: false,
        }
    }

    fn rules(hits: &[RuleHit]) -> Vec<(Rule, Verdict)> {
        hits.iter().map(|h| (h.rule, h.verdict)).collect()
    }

    #[test]
    fn names_round_trip() {
        for v in Verdict::ALL {
            assert_eq!(Verdict::parse(v.as_str()), Some(v));
            assert!(!v.label().is_empty());
        }
        assert_eq!(Verdict::parse("maybe"), None);
        assert_eq!(Verdict::StepUp.label(), "Needs your security key or code");
        for r in Rule::ALL {
            assert_eq!(Rule::from_code(r.code()), Some(r));
        }
        assert_eq!(Rule::from_code("KillSwitchGlobal"), None);
        assert_eq!(Rule::KillSwitchGlobal.code(), "kill_switch_global");
    }

    #[test]
    fn verdicts_order_by_severity() {
        assert!(Verdict::Allow < Verdict::StepUp);
        assert!(Verdict::StepUp < Verdict::Hold);
        assert!(Verdict::Hold < Verdict::Deny);
    }

    #[test]
    fn an_ordinary_order_passes() {
        let (l, b) = (limits(), blocklist());
        assert!(first_line(&order(&l, &b)).is_empty());
        let d = decide(first_line(&order(&l, &b)), None, 0.8);
        assert_eq!(d.verdict, Verdict::Allow);
        assert!(d.hits.is_empty());
    }

    #[test]
    fn global_kill_switch_denies() {
        let (l, b) = (limits(), blocklist());
        let hits = first_line(&Screening {
            global_kill: true,
            ..order(&l, &b)
        });
        assert_eq!(rules(&hits), [(Rule::KillSwitchGlobal, Verdict::Deny)]);
        assert_eq!(hits[0].message, "Trading is halted by the kill switch.");
    }

    #[test]
    fn user_kill_switch_denies() {
        let (l, b) = (limits(), blocklist());
        let hits = first_line(&Screening {
            user_kill: true,
            ..order(&l, &b)
        });
        assert_eq!(rules(&hits), [(Rule::KillSwitchUser, Verdict::Deny)]);
    }

    #[test]
    fn kill_switch_denies_a_reducing_order() {
        let (l, b) = (limits(), blocklist());
        let hits = first_line(&Screening {
            global_kill: true,
            user_kill: true,
            effect: OrderEffect::Reduces,
            ..order(&l, &b)
        });
        assert_eq!(
            rules(&hits),
            [
                (Rule::KillSwitchGlobal, Verdict::Deny),
                (Rule::KillSwitchUser, Verdict::Deny)
            ]
        );
    }

    #[test]
    fn a_cancel_passes_everything() {
        let strictest = RiskLimits::strictest();
        let b = blocklist();
        let hits = first_line(&Screening {
            symbol: "PEPEUSDT",
            notional: dec("1000000"),
            effect: OrderEffect::Cancel,
            limits: &strictest,
            step_up_threshold: dec("0"),
            state: TradingState::Halted,
            global_kill: true,
            user_kill: true,
            used_today: dec("999999999"),
            orders_in_window: 1000,
            unapproved_notional: dec("999999999"),
            ip: Some(BAD),
            blocklist: Some(&b),
            new_ip: true,
            new_device: true,
        });
        assert!(hits.is_empty(), "{hits:?}");
    }

    #[test]
    fn reducing_state_allows_a_reducing_sell_and_denies_a_buy() {
        let (l, b) = (limits(), blocklist());
        let sell = Screening {
            state: TradingState::Reducing,
            effect: OrderEffect::Reduces,
            ..order(&l, &b)
        };
        assert!(first_line(&sell).is_empty());
        let buy = Screening {
            state: TradingState::Reducing,
            ..order(&l, &b)
        };
        let hits = first_line(&buy);
        assert_eq!(rules(&hits), [(Rule::TradingState, Verdict::Deny)]);
        assert!(
            hits[0].message.contains("Reducing only"),
            "{}",
            hits[0].message
        );
    }

    #[test]
    fn halted_state_denies_both() {
        let (l, b) = (limits(), blocklist());
        for effect in [OrderEffect::Opens, OrderEffect::Reduces] {
            let hits = first_line(&Screening {
                state: TradingState::Halted,
                effect,
                ..order(&l, &b)
            });
            assert_eq!(rules(&hits), [(Rule::TradingState, Verdict::Deny)]);
            assert!(hits[0].message.contains("Halted"), "{}", hits[0].message);
            assert!(hits[0].message.contains("only cancels"));
        }
    }

    #[test]
    fn blocked_ip_denies() {
        let (l, b) = (limits(), blocklist());
        let hits = first_line(&Screening {
            ip: Some(BAD),
            ..order(&l, &b)
        });
        assert_eq!(rules(&hits), [(Rule::BlockedIp, Verdict::Deny)]);
        assert!(hits[0].message.contains("203.0.113.7"));
        assert!(hits[0].message.contains("203.0.113.0/24"));
        // The mapped form of the same address is blocked too.
        let mapped = IpAddr::V6("::ffff:203.0.113.7".parse().expect("mapped"));
        let hits = first_line(&Screening {
            ip: Some(mapped),
            ..order(&l, &b)
        });
        assert_eq!(rules(&hits), [(Rule::BlockedIp, Verdict::Deny)]);
    }

    #[test]
    fn browser_preview_skips_the_ip_rule() {
        let (l, b) = (limits(), blocklist());
        let no_list = Screening {
            ip: Some(BAD),
            blocklist: None,
            ..order(&l, &b)
        };
        assert!(first_line(&no_list).is_empty());
        let no_ip = Screening {
            ip: None,
            ..order(&l, &b)
        };
        assert!(first_line(&no_ip).is_empty());
        let neither = Screening {
            ip: None,
            blocklist: None,
            ..order(&l, &b)
        };
        assert!(first_line(&neither).is_empty());
    }

    #[test]
    fn symbol_not_allowed_denies() {
        let (l, b) = (limits(), blocklist());
        let hits = first_line(&Screening {
            symbol: "SOLUSDT",
            ..order(&l, &b)
        });
        assert_eq!(rules(&hits), [(Rule::SymbolNotAllowed, Verdict::Deny)]);
        assert_eq!(
            hits[0].message,
            "SOLUSDT is not on the list of tradable symbols."
        );
        let lower = Screening {
            symbol: "ethusdt",
            ..order(&l, &b)
        };
        assert!(first_line(&lower).is_empty());
    }

    #[test]
    fn max_order_notional_boundary() {
        let (l, b) = (limits(), blocklist());
        // Large enough to need a step-up, so compare with that alone.
        let at_max = first_line(&Screening {
            notional: dec("50000"),
            ..order(&l, &b)
        });
        assert_eq!(rules(&at_max), [(Rule::LargeOrder, Verdict::StepUp)]);
        let over = first_line(&Screening {
            notional: dec("50000.01"),
            ..order(&l, &b)
        });
        assert_eq!(
            rules(&over),
            [
                (Rule::MaxOrderNotional, Verdict::Deny),
                (Rule::LargeOrder, Verdict::StepUp)
            ]
        );
        assert_eq!(
            over[0].message,
            "This order is worth 50,000.01 USDT; the limit per order is 50,000 USDT."
        );
    }

    #[test]
    fn daily_notional_boundary() {
        let (l, b) = (limits(), blocklist());
        let at_limit = first_line(&Screening {
            used_today: dec("249900"),
            notional: dec("100"),
            ..order(&l, &b)
        });
        assert!(at_limit.is_empty());
        let hits = first_line(&Screening {
            used_today: dec("240000"),
            notional: dec("20000"),
            step_up_threshold: dec("50000"),
            ..order(&l, &b)
        });
        assert_eq!(rules(&hits), [(Rule::DailyNotional, Verdict::Deny)]);
        assert_eq!(
            hits[0].message,
            "Over your daily limit: 240,000 of 250,000 USDT used today; this order adds 20,000."
        );
    }

    #[test]
    fn velocity_boundary() {
        let (l, b) = (limits(), blocklist());
        let below = first_line(&Screening {
            orders_in_window: 9,
            ..order(&l, &b)
        });
        assert!(below.is_empty());
        let hits = first_line(&Screening {
            orders_in_window: 10,
            ..order(&l, &b)
        });
        assert_eq!(rules(&hits), [(Rule::Velocity, Verdict::Hold)]);
        assert!(
            hits[0]
                .message
                .starts_with("10 orders in the last 60 s; the limit is 10."),
            "{}",
            hits[0].message
        );
    }

    #[test]
    fn new_ip_and_new_device_step_up() {
        let (l, b) = (limits(), blocklist());
        let hits = first_line(&Screening {
            new_ip: true,
            ..order(&l, &b)
        });
        assert_eq!(rules(&hits), [(Rule::NewIp, Verdict::StepUp)]);
        let hits = first_line(&Screening {
            new_device: true,
            ..order(&l, &b)
        });
        assert_eq!(rules(&hits), [(Rule::NewDevice, Verdict::StepUp)]);
    }

    #[test]
    fn large_order_boundary() {
        let (l, b) = (limits(), blocklist());
        let at = first_line(&Screening {
            notional: dec("10000"),
            ..order(&l, &b)
        });
        assert!(at.is_empty());
        let hits = first_line(&Screening {
            notional: dec("10000.00000001"),
            ..order(&l, &b)
        });
        assert_eq!(rules(&hits), [(Rule::LargeOrder, Verdict::StepUp)]);
        assert_eq!(
            hits[0].message,
            "Needs your security key: orders above 10,000 USDT are approved one by one."
        );
    }

    #[test]
    fn orders_split_below_the_threshold_add_up_to_it() {
        let (l, b) = (limits(), blocklist());
        let up_to = first_line(&Screening {
            unapproved_notional: dec("9900"),
            notional: dec("100"),
            ..order(&l, &b)
        });
        assert!(up_to.is_empty());
        let past = first_line(&Screening {
            unapproved_notional: dec("9900"),
            notional: dec("100.01"),
            ..order(&l, &b)
        });
        assert_eq!(rules(&past), [(Rule::LargeOrder, Verdict::StepUp)]);
        assert_eq!(
            past[0].message,
            "Needs your security key or code: your orders without an approval since your last one in the past 24 hours come to 9,900 USDT, and with this one they pass 10,000 USDT."
        );
        // One hit for the rule, and the per-order sentence when the order alone is above.
        let both = first_line(&Screening {
            unapproved_notional: dec("9900"),
            notional: dec("10000.01"),
            ..order(&l, &b)
        });
        assert_eq!(rules(&both), [(Rule::LargeOrder, Verdict::StepUp)]);
        assert!(both[0].message.contains("approved one by one"));
    }

    #[test]
    fn strictest_limits_deny_and_hold_everything() {
        let l = RiskLimits::strictest();
        let b = blocklist();
        let hits = first_line(&Screening {
            notional: dec("1"),
            ..order(&l, &b)
        });
        assert_eq!(
            rules(&hits),
            [
                (Rule::SymbolNotAllowed, Verdict::Deny),
                (Rule::MaxOrderNotional, Verdict::Deny),
                (Rule::DailyNotional, Verdict::Deny),
                (Rule::Velocity, Verdict::Hold),
            ]
        );
    }

    #[test]
    fn every_rule_at_once_reports_in_rule_order() {
        let (l, b) = (limits(), blocklist());
        let hits = first_line(&Screening {
            symbol: "DOGEUSDT",
            notional: dec("60000"),
            state: TradingState::Halted,
            global_kill: true,
            user_kill: true,
            used_today: dec("200000"),
            orders_in_window: 50,
            ip: Some(BAD),
            new_ip: true,
            new_device: true,
            ..order(&l, &b)
        });
        let fired: Vec<Rule> = hits.iter().map(|h| h.rule).collect();
        assert_eq!(fired, Rule::ALL[..11]);
        let d = decide(hits, None, 0.8);
        assert_eq!(d.verdict, Verdict::Deny);
        assert_eq!(d.hits.len(), 11);
    }

    fn anomaly(score: f64) -> AnomalyScore {
        let c = |feature: Feature, strength: f64| Contribution {
            feature,
            strength,
            weight: feature.weight(),
            detail: String::new(),
        };
        AnomalyScore {
            score,
            contributions: vec![
                c(Feature::NotionalOutlier, 1.0),
                c(Feature::NewSymbol, 1.0),
                c(Feature::Velocity, 0.1),
                c(Feature::NewIp, 0.0),
            ],
        }
    }

    #[test]
    fn decide_picks_the_most_severe() {
        let hit = |rule, verdict| RuleHit::new(rule, verdict, String::new());
        let d = decide(
            vec![
                hit(Rule::NewIp, Verdict::StepUp),
                hit(Rule::Velocity, Verdict::Hold),
                hit(Rule::LargeOrder, Verdict::StepUp),
            ],
            None,
            0.8,
        );
        assert_eq!(d.verdict, Verdict::Hold);
        assert_eq!(d.hits.len(), 3);
        let d = decide(vec![hit(Rule::NewDevice, Verdict::StepUp)], None, 0.8);
        assert_eq!(d.verdict, Verdict::StepUp);
    }

    #[test]
    fn decide_adds_the_anomaly_hold() {
        let step_up = RuleHit::new(Rule::LargeOrder, Verdict::StepUp, String::new());
        let d = decide(vec![step_up.clone()], Some(&anomaly(0.8765)), 0.8);
        assert_eq!(d.verdict, Verdict::Hold);
        assert_eq!(d.hits.len(), 2);
        let hold = &d.hits[1];
        assert_eq!(hold.rule, Rule::AnomalyScore);
        assert_eq!(hold.verdict, Verdict::Hold);
        assert_eq!(
            hold.message,
            "Unusual for your account (anomaly score 0.88): Order size far from usual, Symbol never traded. This order waits for a review."
        );
        // At the threshold it holds; just below it does not.
        assert_eq!(
            decide(vec![], Some(&anomaly(0.8)), 0.8).verdict,
            Verdict::Hold
        );
        let below = decide(vec![step_up], Some(&anomaly(0.79)), 0.8);
        assert_eq!(below.verdict, Verdict::StepUp);
        assert_eq!(below.hits.len(), 1);
        // A deny stays a deny.
        let deny = RuleHit::new(Rule::KillSwitchGlobal, Verdict::Deny, String::new());
        assert_eq!(
            decide(vec![deny], Some(&anomaly(1.0)), 0.8).verdict,
            Verdict::Deny
        );
    }

    #[test]
    fn decide_with_threshold_zero_holds_a_featureless_order() {
        let quiet = AnomalyScore {
            score: 0.0,
            contributions: Vec::new(),
        };
        let d = decide(vec![], Some(&quiet), 0.0);
        assert_eq!(d.verdict, Verdict::Hold);
        assert!(d.hits[0].message.contains("anomaly score 0.00"));
        assert!(d.hits[0].message.contains("no single sign stands out"));
    }

    #[test]
    fn format_amount_groups_thousands() {
        assert_eq!(format_amount(dec("0")), "0");
        assert_eq!(format_amount(dec("999")), "999");
        assert_eq!(format_amount(dec("1000")), "1,000");
        assert_eq!(format_amount(dec("240000.50")), "240,000.5");
        assert_eq!(
            format_amount(dec("1234567.123456789")),
            "1,234,567.12345679"
        );
        assert_eq!(format_amount(dec("-1500")), "-1,500");
        assert_eq!(format_amount(dec("0.00000001")), "0.00000001");
    }
}
