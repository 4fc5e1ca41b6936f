//! The two lines of order screening, as pure functions the server enforces and the browser's
//! order ticket previews (this module builds for WASM: no I/O, no clock, no randomness).

use serde::{Deserialize, Serialize};

pub mod anomaly;
pub mod limits;
pub mod pricing;
pub mod rules;
pub mod state;

pub use anomaly::{AnomalyScore, Contribution, Feature, HISTORY_LEN, TradeSample, score};
pub use limits::{FailSafe, IpBlocklist, LimitField, LimitScope, RiskLimits, resolve_limits};
pub use pricing::{MAX_LIMIT_THROUGH_QUOTE, PriceRefusal, order_value, screening_price};
pub use rules::{Decision, Rule, RuleHit, Screening, Verdict, decide, first_line};
pub use state::{OrderEffect, StateEvent, TradingState, order_effect, quarantine_target};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OrderSide {
    Buy,
    Sell,
}

impl OrderSide {
    pub fn as_str(self) -> &'static str {
        match self {
            OrderSide::Buy => "buy",
            OrderSide::Sell => "sell",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "buy" => Some(OrderSide::Buy),
            "sell" => Some(OrderSide::Sell),
            _ => None,
        }
    }
}
