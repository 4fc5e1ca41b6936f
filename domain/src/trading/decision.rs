//! The decision on an order, as pure functions: given what placement gathered (the order's
//! value, the trader's limits, controls, usage and history, where the order comes from and
//! whether it carries an approval), which rules hit, what the anomaly score is, and what
//! happens to the order. No store, no clock (`now` is an input), no I/O: placement reads the
//! inputs and carries the decision out.

use std::net::IpAddr;

use rust_decimal::Decimal;
use time::OffsetDateTime;

use super::error::Refusal;
use super::portfolio::Portfolio;
use super::{ApprovalState, CaseEvidence, OrderSource, Usage, UserControls};
use crate::order::OrderSide;
use crate::risk::{
    self, AnomalyScore, IpBlocklist, RiskLimits, Rule, RuleHit, Screening, TradeSample,
    TradingState, Verdict,
};

/// What the rules look at for one order.
#[derive(Debug, Clone)]
pub struct OrderFacts<'a> {
    pub now: OffsetDateTime,
    pub symbol: &'a str,
    pub side: OrderSide,
    pub quantity: Decimal,
    /// The value every rule judges the order at (quantity × the screening price).
    pub notional: Decimal,
    pub source: OrderSource,
    /// Whether the order carries an order-bound step-up approval to spend.
    pub approval_offered: bool,
    pub limits: &'a RiskLimits,
    /// Orders strictly above this need an order-bound approval.
    pub step_up_threshold: Decimal,
    pub controls: &'a UserControls,
    pub global_kill: bool,
    pub usage: Usage,
    /// How much of the symbol the trader holds (a sell of at most this lowers exposure).
    pub held: Decimal,
    /// The request's client IP and pseudonymous device id, when known.
    pub ip: Option<&'a str>,
    pub device: Option<&'a str>,
    pub blocklist: &'a IpBlocklist,
    /// Whether the trader placed an order from this IP / this device before.
    pub seen_ip: bool,
    pub seen_device: bool,
    /// The trader's recent trades, oldest first: the anomaly score's baseline.
    pub history: &'a [TradeSample],
    /// The trader's open anomaly cases.
    pub open_cases: u64,
}

/// What happens to an order.
#[derive(Debug, Clone, PartialEq)]
pub enum OrderDecision {
    /// Autonomous mode may not place it (above the autonomous cap, or it needs a step-up): the
    /// proposal waits for the trader. Nothing is recorded.
    NeedsSignOff,
    /// It needs its owner's order-bound approval and carries none: refused (the refusal is
    /// audited with these hits), nothing placed.
    NeedsApproval { hits: Vec<RuleHit> },
    /// Record it as decided.
    Decided(Box<Decided>),
}

/// An order decision to record.
#[derive(Debug, Clone, PartialEq)]
pub struct Decided {
    /// The screening verdict, before a spent approval turns a step-up into an allow.
    pub verdict: Verdict,
    /// Every rule that fired (and the approval, when one is spent).
    pub hits: Vec<RuleHit>,
    pub anomaly: AnomalyScore,
    pub approval: ApprovalState,
    /// Spend the offered approval before recording: the order needs it and is not denied.
    pub spends_approval: bool,
    pub disposition: Disposition,
    /// The anomaly case to open, with its evidence.
    pub case: Option<CaseEvidence>,
    /// The trader's new trading state (a quarantine), when it changes.
    pub new_state: Option<TradingState>,
    /// The anomaly's quarantine target when a case opens with one, whether or not it changed
    /// the state read here: the store applies it to the state as it is when the decision is
    /// written (only ever tightening), so a release committed meanwhile does not leave an open
    /// case's trader unquarantined.
    pub quarantine: Option<TradingState>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// Send it now (held instead while its exchange is paused after an outage).
    Send,
    Denied {
        reason: String,
    },
    /// Waits for a reviewer.
    HeldForReview {
        reason: String,
    },
}

const APPROVED_MESSAGE: &str = "Approved for this order with a fresh step-up.";
const HELD_FOR_REVIEW: &str = "Held for review by a compliance reviewer.";
const HELD_FOR_REVIEW_AND_APPROVAL: &str = "Held for review by a compliance reviewer. It also needs your approval with your security key or code: after the review, approve it on the Orders page to send it.";

/// Whether a bot may still place on its own, judged under the trader's placement lock with the
/// facts read there: the first look when the proposal arrived ran before queued proposals
/// were placed, and one of them may have opened a case, or the trader may have turned
/// autonomous mode off, since.
fn autonomy_stands(facts: &OrderFacts) -> bool {
    facts.controls.autonomous
        && facts.controls.state == TradingState::Active
        && !facts.controls.kill_switch
        && !facts.global_kill
        && facts.open_cases == 0
}

/// The first and second lines of screening and what follows from them: deny, hold for a
/// reviewer (opening a case and maybe quarantining the trader), ask for an order-bound
/// approval, or send.
pub fn decide_order(facts: &OrderFacts) -> OrderDecision {
    // The autonomous cap is judged at the screening value too (a sell limit written far below
    // the market is worth the market, not its limit).
    if facts.source == OrderSource::Autonomous
        && (facts.notional > facts.limits.autonomous_cap || !autonomy_stands(facts))
    {
        return OrderDecision::NeedsSignOff;
    }
    // Novelty only means something once there is a history to compare with.
    let has_history = !facts.history.is_empty();
    let hits = risk::first_line(&Screening {
        symbol: facts.symbol,
        notional: facts.notional,
        effect: risk::order_effect(facts.side, facts.quantity, facts.held),
        limits: facts.limits,
        step_up_threshold: facts.step_up_threshold,
        state: facts.controls.state,
        global_kill: facts.global_kill,
        user_kill: facts.controls.kill_switch,
        used_today: facts.usage.used_today,
        orders_in_window: facts.usage.orders_in_window,
        unapproved_notional: facts.usage.unapproved_notional,
        ip: facts.ip.and_then(|ip| ip.parse::<IpAddr>().ok()),
        blocklist: Some(facts.blocklist),
        new_ip: has_history && facts.ip.is_some() && !facts.seen_ip,
        new_device: has_history && facts.device.is_some() && !facts.seen_device,
    });
    let candidate = TradeSample {
        at: facts.now,
        symbol: facts.symbol.to_owned(),
        notional: facts.notional,
        ip: facts.ip.map(str::to_owned),
        device: facts.device.map(str::to_owned),
    };
    let anomaly = risk::score(facts.history, &candidate);
    let screened = risk::decide(hits, Some(&anomaly), facts.limits.anomaly_threshold);
    let mut hits = screened.hits;
    let mut verdict = screened.verdict;

    // A hold never swallows a step-up: an order that needs one keeps the obligation even when
    // a rule (or the anomaly score) holds it for a reviewer. Held without an approval, it is
    // recorded as `Awaiting` and is sent only after its owner approves it.
    let needs_step_up = hits.iter().any(|h| h.verdict == Verdict::StepUp);
    let mut approval = if needs_step_up {
        ApprovalState::Awaiting
    } else {
        ApprovalState::NotNeeded
    };
    let mut spends_approval = false;
    if needs_step_up && verdict != Verdict::Deny {
        if facts.source == OrderSource::Autonomous {
            return OrderDecision::NeedsSignOff;
        }
        if facts.approval_offered {
            spends_approval = true;
            approval = ApprovalState::Approved;
            if verdict == Verdict::StepUp {
                verdict = Verdict::Allow;
            }
            hits.push(RuleHit {
                rule: Rule::LargeOrder,
                verdict: Verdict::Allow,
                message: APPROVED_MESSAGE.into(),
            });
        } else if verdict != Verdict::Hold {
            return OrderDecision::NeedsApproval { hits };
        }
        // Held for review anyway: recorded (the reviewer sees it) and awaiting the owner's
        // approval, which the reviewer's release does not replace.
    }

    let disposition = match verdict {
        Verdict::Deny => Disposition::Denied {
            reason: reasons(&hits, Verdict::Deny).join(" "),
        },
        Verdict::Hold => Disposition::HeldForReview {
            reason: if approval == ApprovalState::Awaiting {
                HELD_FOR_REVIEW_AND_APPROVAL
            } else {
                HELD_FOR_REVIEW
            }
            .into(),
        },
        Verdict::Allow | Verdict::StepUp => Disposition::Send,
    };

    // An anomalous order opens a case even when a first-line rule already denies it: the burst
    // that trips the limits is exactly what a reviewer should see. One open case per
    // quarantine is enough: further refused orders go on the record (the audit chain) rather
    // than into a pile of cases.
    let quarantine = risk::quarantine_target(anomaly.score, facts.limits.anomaly_threshold);
    let already_under_review = verdict == Verdict::Deny && facts.open_cases > 0;
    let state_before = facts.controls.state;
    let mut case = None;
    let mut new_state = None;
    let mut quarantine_to_apply = None;
    if (quarantine.is_some() || verdict == Verdict::Hold) && !already_under_review {
        quarantine_to_apply = quarantine;
        let state_after = match quarantine {
            // An anomaly only tightens (`Standing::after`); what stands after the case is the
            // store's to keep.
            Some(target) => state_before.stricter(target),
            None => state_before,
        };
        if state_after != state_before {
            new_state = Some(state_after);
        }
        case = Some(CaseEvidence {
            hits: hits.clone(),
            anomaly: anomaly.clone(),
            recent: facts.history.to_vec(),
            candidate,
            state_before,
            state_after,
        });
    }

    OrderDecision::Decided(Box::new(Decided {
        verdict: screened.verdict,
        hits,
        anomaly,
        approval,
        spends_approval,
        disposition,
        case,
        new_state,
        quarantine: quarantine_to_apply,
    }))
}

/// The paper exchange's balance: a buy needs the cash, a sell the coins. Judged before the
/// rules, at the screening value; keyed exchanges keep their own balances.
pub fn paper_funds_refusal(
    side: OrderSide,
    symbol: &str,
    quantity: Decimal,
    notional: Decimal,
    portfolio: &Portfolio,
) -> Option<Refusal> {
    let held = portfolio.quantity(symbol);
    match side {
        OrderSide::Buy if notional > portfolio.cash => Some(Refusal::InsufficientCash {
            needed: notional,
            cash: portfolio.cash,
        }),
        OrderSide::Sell if quantity > held => Some(Refusal::InsufficientHolding {
            symbol: symbol.to_owned(),
            held,
            quantity,
        }),
        _ => None,
    }
}

/// The sentences of the hits with `verdict`.
pub fn reasons(hits: &[RuleHit], verdict: Verdict) -> Vec<String> {
    hits.iter()
        .filter(|h| h.verdict == verdict)
        .map(|h| h.message.clone())
        .collect()
}

/// The codes of the rules that fired, for the audit event.
pub fn rule_codes(hits: &[RuleHit]) -> String {
    hits.iter()
        .map(|h| h.rule.code())
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;
    use crate::ids::UserId;
    use crate::trading::portfolio::Position;

    const NOW: OffsetDateTime = datetime!(2026-11-23 12:00 UTC);

    fn d(raw: &str) -> Decimal {
        raw.parse().expect("decimal")
    }

    fn limits() -> RiskLimits {
        RiskLimits {
            max_order_notional: d("1000"),
            daily_notional: d("5000"),
            velocity_max_orders: 5,
            velocity_window_secs: 60,
            symbol_allowlist: vec!["BTCUSDT".into(), "ETHUSDT".into()],
            anomaly_threshold: 0.9,
            autonomous_cap: d("100"),
        }
    }

    fn controls() -> UserControls {
        UserControls::default_for(UserId(uuid::Uuid::nil()))
    }

    /// Five earlier trades of 200 USDT in BTCUSDT at this hour, from this IP and device.
    fn history() -> Vec<TradeSample> {
        (1..=5)
            .map(|i| TradeSample {
                at: NOW - time::Duration::days(i),
                symbol: "BTCUSDT".into(),
                notional: d("200"),
                ip: Some("198.51.100.7".into()),
                device: Some("dev-1".into()),
            })
            .collect()
    }

    struct World {
        limits: RiskLimits,
        controls: UserControls,
        blocklist: IpBlocklist,
        history: Vec<TradeSample>,
    }

    impl World {
        fn new() -> Self {
            Self {
                limits: limits(),
                controls: controls(),
                blocklist: IpBlocklist::from_entries(&["203.0.113.0/24".to_owned()]).0,
                history: history(),
            }
        }

        /// A 200 USDT ticket buy of BTCUSDT from the usual IP and device.
        fn facts(&self) -> OrderFacts<'_> {
            OrderFacts {
                now: NOW,
                symbol: "BTCUSDT",
                side: OrderSide::Buy,
                quantity: d("0.002"),
                notional: d("200"),
                source: OrderSource::Ticket,
                approval_offered: false,
                limits: &self.limits,
                step_up_threshold: d("500"),
                controls: &self.controls,
                global_kill: false,
                usage: Usage::default(),
                held: Decimal::ZERO,
                ip: Some("198.51.100.7"),
                device: Some("dev-1"),
                blocklist: &self.blocklist,
                seen_ip: true,
                seen_device: true,
                history: &self.history,
                open_cases: 0,
            }
        }
    }

    fn decided(decision: OrderDecision) -> Decided {
        match decision {
            OrderDecision::Decided(decided) => *decided,
            other => panic!("expected a recorded decision, got {other:?}"),
        }
    }

    fn rules(decided: &Decided) -> Vec<Rule> {
        decided.hits.iter().map(|h| h.rule).collect()
    }

    fn denied_by(facts: &OrderFacts, rule: Rule) {
        let decided = decided(decide_order(facts));
        assert_eq!(decided.verdict, Verdict::Deny, "{decided:?}");
        assert!(rules(&decided).contains(&rule), "{decided:?}");
        assert!(
            matches!(decided.disposition, Disposition::Denied { .. }),
            "{decided:?}"
        );
    }

    #[test]
    fn a_usual_order_within_every_limit_is_sent() {
        let world = World::new();
        let decided = decided(decide_order(&world.facts()));
        assert_eq!(decided.verdict, Verdict::Allow);
        assert!(decided.hits.is_empty(), "{:?}", decided.hits);
        assert_eq!(decided.disposition, Disposition::Send);
        assert_eq!(decided.approval, ApprovalState::NotNeeded);
        assert!(!decided.spends_approval);
        assert_eq!(decided.case, None);
        assert_eq!(decided.new_state, None);
    }

    #[test]
    fn an_order_above_the_per_order_limit_is_denied_with_the_limit_in_the_reason() {
        let world = World::new();
        let facts = OrderFacts {
            notional: d("1500"),
            step_up_threshold: d("5000"),
            ..world.facts()
        };
        denied_by(&facts, Rule::MaxOrderNotional);
        let Disposition::Denied { reason } = decided(decide_order(&facts)).disposition else {
            panic!("denied");
        };
        assert!(reason.contains("the limit per order is 1,000"), "{reason}");
    }

    #[test]
    fn an_order_past_the_daily_limit_is_denied() {
        let world = World::new();
        let facts = OrderFacts {
            usage: Usage {
                used_today: d("4900"),
                orders_in_window: 0,
                unapproved_notional: Decimal::ZERO,
            },
            ..world.facts()
        };
        denied_by(&facts, Rule::DailyNotional);
    }

    #[test]
    fn a_symbol_off_the_allowlist_is_denied() {
        let world = World::new();
        denied_by(
            &OrderFacts {
                symbol: "DOGEUSDT",
                ..world.facts()
            },
            Rule::SymbolNotAllowed,
        );
    }

    #[test]
    fn an_order_from_a_blocked_range_is_denied() {
        let world = World::new();
        denied_by(
            &OrderFacts {
                ip: Some("203.0.113.9"),
                seen_ip: true,
                ..world.facts()
            },
            Rule::BlockedIp,
        );
    }

    #[test]
    fn either_kill_switch_denies_every_order() {
        let world = World::new();
        denied_by(
            &OrderFacts {
                global_kill: true,
                ..world.facts()
            },
            Rule::KillSwitchGlobal,
        );
        let stopped = UserControls {
            kill_switch: true,
            ..controls()
        };
        denied_by(
            &OrderFacts {
                controls: &stopped,
                ..world.facts()
            },
            Rule::KillSwitchUser,
        );
    }

    #[test]
    fn a_halted_trader_cannot_buy() {
        let world = World::new();
        let halted = UserControls {
            state: TradingState::Halted,
            ..controls()
        };
        denied_by(
            &OrderFacts {
                controls: &halted,
                ..world.facts()
            },
            Rule::TradingState,
        );
    }

    #[test]
    fn too_many_orders_in_the_window_hold_the_order_for_a_reviewer_and_open_a_case() {
        let world = World::new();
        let decided = decided(decide_order(&OrderFacts {
            usage: Usage {
                used_today: d("200"),
                orders_in_window: 5,
                unapproved_notional: Decimal::ZERO,
            },
            ..world.facts()
        }));
        assert_eq!(decided.verdict, Verdict::Hold);
        assert_eq!(
            decided.disposition,
            Disposition::HeldForReview {
                reason: HELD_FOR_REVIEW.into()
            }
        );
        let case = decided.case.expect("a case for the reviewer");
        assert_eq!(case.state_before, TradingState::Active);
        assert_eq!(case.recent.len(), 5);
    }

    #[test]
    fn an_anomalous_order_is_held_and_quarantines_the_trader() {
        let world = World::new();
        // A new symbol, IP and device at ten times the usual size, with a low threshold.
        let limits = RiskLimits {
            anomaly_threshold: 0.3,
            ..limits()
        };
        let decided = decided(decide_order(&OrderFacts {
            limits: &limits,
            symbol: "ETHUSDT",
            notional: d("990"),
            ip: Some("192.0.2.1"),
            device: Some("dev-2"),
            seen_ip: false,
            seen_device: false,
            step_up_threshold: d("5000"),
            approval_offered: true,
            ..world.facts()
        }));
        assert_eq!(decided.verdict, Verdict::Hold);
        assert!(rules(&decided).contains(&Rule::AnomalyScore));
        let quarantined = decided.new_state.expect("quarantined");
        assert_ne!(quarantined, TradingState::Active);
        let case = decided.case.expect("a case");
        assert_eq!(case.state_after, quarantined);
        assert_eq!(case.candidate.symbol, "ETHUSDT");
    }

    #[test]
    fn a_denied_order_opens_no_second_case_while_one_is_open() {
        let world = World::new();
        let limits = RiskLimits {
            anomaly_threshold: 0.0,
            ..limits()
        };
        let facts = OrderFacts {
            limits: &limits,
            global_kill: true,
            ..world.facts()
        };
        assert!(decided(decide_order(&facts)).case.is_some());
        let again = decided(decide_order(&OrderFacts {
            open_cases: 1,
            ..facts
        }));
        assert_eq!(again.verdict, Verdict::Deny);
        assert_eq!(again.case, None);
        assert_eq!(again.new_state, None);
    }

    #[test]
    fn a_large_order_without_an_approval_needs_one_and_is_not_recorded() {
        let world = World::new();
        let decision = decide_order(&OrderFacts {
            notional: d("800"),
            ..world.facts()
        });
        let OrderDecision::NeedsApproval { hits } = decision else {
            panic!("expected an approval request, got {decision:?}");
        };
        assert_eq!(reasons(&hits, Verdict::StepUp).len(), 1);
        assert_eq!(rule_codes(&hits), "large_order");
    }

    #[test]
    fn orders_split_below_the_threshold_need_an_approval_once_they_add_up_to_it() {
        let mut world = World::new();
        let after_small_ones = OrderFacts {
            usage: Usage {
                unapproved_notional: d("300.01"),
                ..Usage::default()
            },
            ..world.facts()
        };
        let decision = decide_order(&after_small_ones);
        let OrderDecision::NeedsApproval { hits } = decision else {
            panic!("expected an approval request, got {decision:?}");
        };
        assert_eq!(rule_codes(&hits), "large_order");
        // With the approval it goes out, recorded as approved (which starts the count again).
        let approved = decided(decide_order(&OrderFacts {
            approval_offered: true,
            ..after_small_ones.clone()
        }));
        assert_eq!(approved.disposition, Disposition::Send);
        assert_eq!(approved.approval, ApprovalState::Approved);
        // A bot's small orders add up too, and the one that passes waits for the trader.
        world.controls.autonomous = true;
        let autonomous = OrderFacts {
            source: OrderSource::Autonomous,
            notional: d("90"),
            usage: Usage {
                unapproved_notional: d("450"),
                ..Usage::default()
            },
            ..world.facts()
        };
        assert_eq!(decide_order(&autonomous), OrderDecision::NeedsSignOff);
    }

    #[test]
    fn a_new_ip_or_device_needs_an_approval_once_there_is_a_history() {
        let world = World::new();
        let unseen = OrderFacts {
            seen_ip: false,
            seen_device: false,
            ..world.facts()
        };
        assert!(matches!(
            decide_order(&unseen),
            OrderDecision::NeedsApproval { .. }
        ));
        // Without a history nothing is new yet.
        let first = decided(decide_order(&OrderFacts {
            history: &[],
            ..unseen
        }));
        assert_eq!(first.verdict, Verdict::Allow);
    }

    #[test]
    fn an_offered_approval_is_spent_and_turns_the_step_up_into_an_allow() {
        let world = World::new();
        let decided = decided(decide_order(&OrderFacts {
            notional: d("800"),
            approval_offered: true,
            ..world.facts()
        }));
        assert!(decided.spends_approval);
        assert_eq!(decided.approval, ApprovalState::Approved);
        // The recorded verdict is the screening's; the order goes out.
        assert_eq!(decided.verdict, Verdict::StepUp);
        assert_eq!(decided.disposition, Disposition::Send);
        let approved = decided.hits.last().expect("the approval hit");
        assert_eq!(
            (approved.rule, approved.verdict),
            (Rule::LargeOrder, Verdict::Allow)
        );
    }

    #[test]
    fn a_denied_order_never_spends_an_approval() {
        let world = World::new();
        let decided = decided(decide_order(&OrderFacts {
            notional: d("1500"),
            approval_offered: true,
            ..world.facts()
        }));
        assert_eq!(decided.verdict, Verdict::Deny);
        assert!(!decided.spends_approval);
        assert_eq!(decided.approval, ApprovalState::Awaiting);
    }

    #[test]
    fn a_held_order_that_needs_a_step_up_is_recorded_awaiting_its_owners_approval() {
        let world = World::new();
        let decided = decided(decide_order(&OrderFacts {
            notional: d("800"),
            usage: Usage {
                used_today: Decimal::ZERO,
                orders_in_window: 5,
                unapproved_notional: Decimal::ZERO,
            },
            ..world.facts()
        }));
        assert_eq!(decided.verdict, Verdict::Hold);
        assert_eq!(decided.approval, ApprovalState::Awaiting);
        assert!(!decided.spends_approval);
        assert_eq!(
            decided.disposition,
            Disposition::HeldForReview {
                reason: HELD_FOR_REVIEW_AND_APPROVAL.into()
            }
        );
    }

    #[test]
    fn autonomous_mode_leaves_orders_above_the_cap_or_needing_a_step_up_to_the_trader() {
        let mut world = World::new();
        world.controls.autonomous = true;
        let autonomous = OrderFacts {
            source: OrderSource::Autonomous,
            ..world.facts()
        };
        // 200 USDT is above the cap of 100.
        assert_eq!(decide_order(&autonomous), OrderDecision::NeedsSignOff);
        let below_cap = OrderFacts {
            notional: d("90"),
            ..autonomous.clone()
        };
        assert!(matches!(
            decide_order(&below_cap),
            OrderDecision::Decided(_)
        ));
        // Judged again under the placement lock: a case another proposal opened meanwhile, or
        // autonomous mode turned off, leaves it to the trader.
        assert_eq!(
            decide_order(&OrderFacts {
                open_cases: 1,
                ..below_cap.clone()
            }),
            OrderDecision::NeedsSignOff
        );
        let off = UserControls {
            autonomous: false,
            ..world.controls.clone()
        };
        assert_eq!(
            decide_order(&OrderFacts {
                controls: &off,
                ..below_cap.clone()
            }),
            OrderDecision::NeedsSignOff
        );
        let reducing = UserControls {
            state: TradingState::Reducing,
            ..world.controls.clone()
        };
        assert_eq!(
            decide_order(&OrderFacts {
                controls: &reducing,
                ..below_cap.clone()
            }),
            OrderDecision::NeedsSignOff
        );
        // Even an offered approval is not the trader's sign-off.
        assert_eq!(
            decide_order(&OrderFacts {
                seen_ip: false,
                approval_offered: true,
                ..below_cap
            }),
            OrderDecision::NeedsSignOff
        );
    }

    #[test]
    fn the_paper_balance_refuses_a_buy_without_the_cash_and_a_sell_without_the_coins() {
        let portfolio = Portfolio {
            cash: d("1000"),
            positions: vec![Position {
                symbol: "BTCUSDT".into(),
                quantity: d("0.5"),
                average_cost: d("100"),
                realized_pnl: Decimal::ZERO,
            }],
        };
        assert_eq!(
            paper_funds_refusal(OrderSide::Buy, "BTCUSDT", d("1"), d("1000.01"), &portfolio),
            Some(Refusal::InsufficientCash {
                needed: d("1000.01"),
                cash: d("1000"),
            })
        );
        assert_eq!(
            paper_funds_refusal(OrderSide::Buy, "BTCUSDT", d("1"), d("1000"), &portfolio),
            None
        );
        assert_eq!(
            paper_funds_refusal(OrderSide::Sell, "BTCUSDT", d("0.6"), d("1"), &portfolio),
            Some(Refusal::InsufficientHolding {
                symbol: "BTCUSDT".into(),
                held: d("0.5"),
                quantity: d("0.6"),
            })
        );
        assert_eq!(
            paper_funds_refusal(OrderSide::Sell, "BTCUSDT", d("0.5"), d("1"), &portfolio),
            None
        );
    }
}
