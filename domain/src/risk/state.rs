//! Per-user trading states, after NautilusTrader's: `Active` trades normally, `Reducing` only
//! lets a trader shrink what they hold, `Halted` only lets them cancel. An anomaly moves a user
//! to a stricter state at once (quarantine); only a person loosens it again.

use std::fmt;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::OrderSide;

/// What a user's account may do right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TradingState {
    Active,
    Reducing,
    Halted,
}

impl TradingState {
    pub const ALL: [TradingState; 3] = [Self::Active, Self::Reducing, Self::Halted];

    pub fn as_str(self) -> &'static str {
        match self {
            TradingState::Active => "active",
            TradingState::Reducing => "reducing",
            TradingState::Halted => "halted",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        let raw = raw.trim().to_ascii_lowercase();
        Self::ALL.into_iter().find(|s| s.as_str() == raw)
    }

    pub fn label(self) -> &'static str {
        match self {
            TradingState::Active => "Active",
            TradingState::Reducing => "Reducing only",
            TradingState::Halted => "Halted",
        }
    }

    /// Higher is stricter, so an automatic move can be checked to never loosen.
    pub fn strictness(self) -> u8 {
        match self {
            TradingState::Active => 0,
            TradingState::Reducing => 1,
            TradingState::Halted => 2,
        }
    }

    /// The stricter of the two states.
    pub fn stricter(self, other: TradingState) -> TradingState {
        if other.strictness() > self.strictness() {
            other
        } else {
            self
        }
    }

    /// Whether an order with this effect may go out in this state. Cancels always may: a
    /// cancel only ever lowers exposure.
    pub fn permits(self, effect: OrderEffect) -> bool {
        match (self, effect) {
            (_, OrderEffect::Cancel) => true,
            (TradingState::Active, _) => true,
            (TradingState::Reducing, OrderEffect::Reduces) => true,
            (TradingState::Reducing, OrderEffect::Opens) => false,
            (TradingState::Halted, _) => false,
        }
    }
}

/// A trader's state, and the state that stands once no case holds them (`settled`): the one an
/// administrator last set by hand, or a quarantine a reviewer confirmed; `Active` if neither.
///
/// A released case returns the trader to `settled`, never further: a reviewer (no security key
/// needed) must not lift a halt an administrator set with theirs, nor one a reviewer confirmed.
/// `state` is never looser than `settled`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Standing {
    pub state: TradingState,
    pub settled: TradingState,
}

impl Standing {
    /// A trader nothing has ever restricted.
    pub const ACTIVE: Standing = Standing {
        state: TradingState::Active,
        settled: TradingState::Active,
    };

    /// The standing after `event`.
    pub fn after(self, event: StateEvent) -> Standing {
        match event {
            // Automation may tighten but never loosen: an anomaly aimed at `Reducing` leaves a
            // halted user halted. What stands after the case is unchanged.
            StateEvent::AnomalyDetected(target) => Standing {
                state: self.state.stricter(target),
                ..self
            },
            StateEvent::AdminSet(state) => Standing {
                state,
                settled: state,
            },
            StateEvent::CaseReleased {
                other_open_cases: true,
            } => self,
            StateEvent::CaseReleased {
                other_open_cases: false,
            } => Standing {
                state: self.settled,
                ..self
            },
            // A confirmed case keeps the quarantine, past later releases; an administrator lifts
            // it by hand.
            StateEvent::CaseConfirmed => Standing {
                settled: self.state,
                ..self
            },
        }
    }
}

impl fmt::Display for TradingState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an order does to the trader's exposure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OrderEffect {
    /// Buys, or sells more than is held: new or larger exposure.
    Opens,
    /// A sell of at most the quantity held (spot only, no shorts).
    Reduces,
    /// Cancelling a resting order.
    Cancel,
}

impl OrderEffect {
    pub fn as_str(self) -> &'static str {
        match self {
            OrderEffect::Opens => "opens",
            OrderEffect::Reduces => "reduces",
            OrderEffect::Cancel => "cancel",
        }
    }
}

/// Classifies a new order. A sell counts as reducing only if it is positive and covered by
/// the position; anything else is treated as opening, the stricter reading.
pub fn order_effect(side: OrderSide, quantity: Decimal, position_quantity: Decimal) -> OrderEffect {
    match side {
        OrderSide::Sell if quantity > Decimal::ZERO && quantity <= position_quantity => {
            OrderEffect::Reduces
        }
        _ => OrderEffect::Opens,
    }
}

/// Something that moves a user between states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StateEvent {
    /// The second line opened a case; the target is `Reducing` or `Halted`.
    AnomalyDetected(TradingState),
    /// An administrator set the state by hand.
    AdminSet(TradingState),
    /// A reviewer released a case (false alarm).
    CaseReleased { other_open_cases: bool },
    /// A reviewer confirmed a case (real fraud).
    CaseConfirmed,
}

/// The quarantine an anomaly score calls for: none below the threshold, `Halted` in the upper
/// half of the range above it, `Reducing` in between. A NaN score is treated as maximal, so a
/// broken score fails safe.
pub fn quarantine_target(score: f64, threshold: f64) -> Option<TradingState> {
    let score = if score.is_nan() { 1.0 } else { score };
    if score < threshold {
        return None;
    }
    if score >= (threshold + 1.0) / 2.0 {
        Some(TradingState::Halted)
    } else {
        Some(TradingState::Reducing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use TradingState::{Active, Halted, Reducing};

    fn dec(raw: &str) -> Decimal {
        raw.parse().expect("test decimal")
    }

    #[test]
    fn names_round_trip() {
        for s in TradingState::ALL {
            assert_eq!(TradingState::parse(s.as_str()), Some(s));
            assert_eq!(s.to_string(), s.as_str());
        }
        assert_eq!(TradingState::parse(" HALTED "), Some(Halted));
        assert_eq!(TradingState::parse("paused"), None);
        assert_eq!(Reducing.label(), "Reducing only");
    }

    // serde_json comes with the `full` feature only.
    #[cfg(feature = "full")]
    #[test]
    fn serde_names_match_as_str() {
        for s in TradingState::ALL {
            let json = serde_json::to_string(&s).expect("serialise");
            assert_eq!(json, format!("\"{}\"", s.as_str()));
        }
        let json = serde_json::to_string(&OrderEffect::Reduces).expect("serialise");
        assert_eq!(json, "\"reduces\"");
    }

    #[test]
    fn strictness_orders_states() {
        assert!(Active.strictness() < Reducing.strictness());
        assert!(Reducing.strictness() < Halted.strictness());
        assert_eq!(Active.stricter(Halted), Halted);
        assert_eq!(Halted.stricter(Reducing), Halted);
    }

    #[test]
    fn permits_every_combination() {
        use OrderEffect::{Cancel, Opens, Reduces};
        let table = [
            (Active, Opens, true),
            (Active, Reduces, true),
            (Active, Cancel, true),
            (Reducing, Opens, false),
            (Reducing, Reduces, true),
            (Reducing, Cancel, true),
            (Halted, Opens, false),
            (Halted, Reduces, false),
            (Halted, Cancel, true),
        ];
        for (state, effect, expected) in table {
            assert_eq!(state.permits(effect), expected, "{state:?} {effect:?}");
        }
    }

    #[test]
    fn order_effect_classifies_spot_orders() {
        use OrderSide::{Buy, Sell};
        assert_eq!(order_effect(Buy, dec("1"), dec("5")), OrderEffect::Opens);
        assert_eq!(order_effect(Sell, dec("1"), dec("5")), OrderEffect::Reduces);
        assert_eq!(order_effect(Sell, dec("5"), dec("5")), OrderEffect::Reduces);
        assert_eq!(order_effect(Sell, dec("5.1"), dec("5")), OrderEffect::Opens);
        assert_eq!(order_effect(Sell, dec("1"), dec("0")), OrderEffect::Opens);
        assert_eq!(order_effect(Sell, dec("0"), dec("0")), OrderEffect::Opens);
        assert_eq!(order_effect(Sell, dec("-1"), dec("5")), OrderEffect::Opens);
    }

    fn standing(state: TradingState, settled: TradingState) -> Standing {
        Standing { state, settled }
    }

    /// Every standing the transitions can reach: `state` never looser than `settled`.
    fn standings() -> Vec<Standing> {
        TradingState::ALL
            .into_iter()
            .flat_map(|settled| {
                TradingState::ALL
                    .into_iter()
                    .filter(move |state| state.strictness() >= settled.strictness())
                    .map(move |state| standing(state, settled))
            })
            .collect()
    }

    fn events() -> Vec<StateEvent> {
        let mut events = vec![
            StateEvent::CaseConfirmed,
            StateEvent::CaseReleased {
                other_open_cases: true,
            },
            StateEvent::CaseReleased {
                other_open_cases: false,
            },
        ];
        for target in TradingState::ALL {
            events.push(StateEvent::AnomalyDetected(target));
            events.push(StateEvent::AdminSet(target));
        }
        events
    }

    #[test]
    fn anomaly_never_loosens_and_leaves_what_stands_after_the_case() {
        for before in standings() {
            for target in TradingState::ALL {
                let after = before.after(StateEvent::AnomalyDetected(target));
                assert_eq!(after.state, before.state.stricter(target));
                assert_eq!(after.settled, before.settled);
            }
        }
        assert_eq!(
            Standing::ACTIVE.after(StateEvent::AnomalyDetected(Reducing)),
            standing(Reducing, Active)
        );
        assert_eq!(
            standing(Halted, Halted).after(StateEvent::AnomalyDetected(Reducing)),
            standing(Halted, Halted)
        );
    }

    #[test]
    fn admin_sets_exactly_and_that_is_what_stands() {
        for before in standings() {
            for target in TradingState::ALL {
                assert_eq!(
                    before.after(StateEvent::AdminSet(target)),
                    standing(target, target)
                );
            }
        }
    }

    #[test]
    fn a_release_returns_to_what_stands_unless_other_cases_are_open() {
        for before in standings() {
            assert_eq!(
                before.after(StateEvent::CaseReleased {
                    other_open_cases: false
                }),
                standing(before.settled, before.settled)
            );
            assert_eq!(
                before.after(StateEvent::CaseReleased {
                    other_open_cases: true
                }),
                before
            );
        }
        // The quarantine of a trader nobody else restricted is lifted.
        assert_eq!(
            standing(Halted, Active).after(StateEvent::CaseReleased {
                other_open_cases: false
            }),
            Standing::ACTIVE
        );
    }

    #[test]
    fn a_reviewers_release_cannot_lift_an_admins_halt() {
        let halted_by_admin = Standing::ACTIVE.after(StateEvent::AdminSet(Halted));
        let quarantined = halted_by_admin.after(StateEvent::AnomalyDetected(Reducing));
        let released = quarantined.after(StateEvent::CaseReleased {
            other_open_cases: false,
        });
        assert_eq!(released.state, Halted);
        // Nor an admin's Reducing, tightened to Halted by an anomaly and then released.
        let reducing = Standing::ACTIVE.after(StateEvent::AdminSet(Reducing));
        let released =
            reducing
                .after(StateEvent::AnomalyDetected(Halted))
                .after(StateEvent::CaseReleased {
                    other_open_cases: false,
                });
        assert_eq!(released.state, Reducing);
    }

    #[test]
    fn a_confirmed_quarantine_outlasts_a_later_release() {
        let confirmed = Standing::ACTIVE
            .after(StateEvent::AnomalyDetected(Halted))
            .after(StateEvent::CaseConfirmed);
        assert_eq!(confirmed, standing(Halted, Halted));
        let released = confirmed
            .after(StateEvent::AnomalyDetected(Reducing))
            .after(StateEvent::CaseReleased {
                other_open_cases: false,
            });
        assert_eq!(released.state, Halted);
        // Until an administrator lifts it.
        assert_eq!(
            released.after(StateEvent::AdminSet(Active)),
            Standing::ACTIVE
        );
    }

    #[test]
    fn no_event_leaves_the_state_looser_than_what_stands() {
        for before in standings() {
            for event in events() {
                let after = before.after(event);
                assert!(
                    after.state.strictness() >= after.settled.strictness(),
                    "{before:?} after {event:?} is {after:?}"
                );
            }
        }
    }

    #[test]
    fn quarantine_target_boundaries() {
        // Threshold 0.8: Reducing in [0.8, 0.9), Halted from 0.9.
        assert_eq!(quarantine_target(0.79, 0.8), None);
        assert_eq!(quarantine_target(0.8, 0.8), Some(Reducing));
        assert_eq!(quarantine_target(0.89, 0.8), Some(Reducing));
        assert_eq!(quarantine_target(0.9, 0.8), Some(Halted));
        assert_eq!(quarantine_target(1.0, 0.8), Some(Halted));
        // Threshold 0: everything is a case, the upper half halts.
        assert_eq!(quarantine_target(0.0, 0.0), Some(Reducing));
        assert_eq!(quarantine_target(0.49, 0.0), Some(Reducing));
        assert_eq!(quarantine_target(0.5, 0.0), Some(Halted));
        // Threshold 1: only a perfect score, and it halts.
        assert_eq!(quarantine_target(0.99, 1.0), None);
        assert_eq!(quarantine_target(1.0, 1.0), Some(Halted));
        assert_eq!(quarantine_target(f64::NAN, 0.8), Some(Halted));
    }
}
