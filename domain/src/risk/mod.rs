//! The two lines of order screening, as pure functions the server enforces and the browser's
//! order ticket previews (this module builds for WASM: no I/O, no clock, no randomness).

pub mod anomaly;
pub mod limits;
pub mod pricing;
pub mod rules;
pub mod state;

/// The order's side lives with the rest of the order's vocabulary.
pub use crate::order::OrderSide;
pub use anomaly::{AnomalyScore, Contribution, Feature, HISTORY_LEN, TradeSample, score};
pub use limits::{FailSafe, IpBlocklist, LimitField, LimitScope, RiskLimits, resolve_limits};
pub use pricing::{
    MAX_LIMIT_THROUGH_QUOTE, PriceRefusal, market_bound, order_value, screening_price,
};
pub use rules::{Decision, Rule, RuleHit, Screening, Verdict, decide, first_line};
pub use state::{OrderEffect, Standing, StateEvent, TradingState, order_effect, quarantine_target};
