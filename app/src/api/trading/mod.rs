//! Trading: the order ticket, orders, fills and positions; the trading banner; the admin's risk
//! controls (kill switch, limits, per-user states, IP blocklist); anomaly cases for reviewers;
//! and the trader's agent tokens and proposal queue.

use domain::risk::{RiskLimits, TradingState};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleHitView {
    pub rule: String,
    pub verdict: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureView {
    pub code: String,
    pub label: String,
    pub strength: f64,
    pub weight: f64,
    pub impact: f64,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderView {
    pub id: String,
    pub venue: String,
    pub symbol: String,
    pub side: String,
    pub order_type: String,
    pub quantity: String,
    pub limit_price: Option<String>,
    pub reference_price: String,
    pub notional: String,
    pub status: String,
    pub status_reason: Option<String>,
    pub verdict: String,
    pub verdict_label: String,
    pub hits: Vec<RuleHitView>,
    pub score: Option<f64>,
    pub features: Vec<FeatureView>,
    pub filled_quantity: String,
    pub average_price: Option<String>,
    pub source: String,
    pub case_id: Option<String>,
    pub created_at: String,
    pub can_cancel: bool,
    /// Released by a reviewer, but it still needs its owner's step-up approval to be sent.
    pub awaiting_approval: bool,
    /// "paper" or the key id: what an approval for this order names as its venue.
    pub venue_id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PositionView {
    pub symbol: String,
    pub quantity: String,
    pub average_cost: String,
    pub price: Option<String>,
    pub market_value: Option<String>,
    pub unrealized_pnl: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PriceView {
    pub symbol: String,
    pub price: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VenueView {
    /// "paper" or a key id.
    pub id: String,
    pub label: String,
}

/// Everything the ticket needs to preview, in the browser, the checks the server will apply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TicketView {
    pub limits: RiskLimits,
    pub step_up_threshold: String,
    pub state: TradingState,
    pub kill_switch_user: bool,
    pub kill_switch_global: bool,
    pub used_today: String,
    pub orders_in_window: u32,
    /// What went out without an approval since the last approved order (in 24 hours): the ticket asks
    /// for the key once a new order would take it past the threshold.
    pub unapproved_notional: String,
    pub cash: String,
    pub positions: Vec<PositionView>,
    /// The paper cash and the quantities by symbol a new order may still use: what is held
    /// less what the trader's live orders may take.
    pub free_cash: String,
    pub free_quantities: Vec<(String, String)>,
    pub prices: Vec<PriceView>,
    pub venues: Vec<VenueView>,
    pub open_cases: u64,
    pub has_security_key: bool,
    pub has_totp: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FillView {
    pub order_id: String,
    pub symbol: String,
    pub side: String,
    pub quantity: String,
    pub price: String,
    pub at: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PortfolioView {
    pub cash: String,
    pub positions: Vec<PositionView>,
    pub fills: Vec<FillView>,
}

/// What the banner on every page says about trading.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TradingStatusView {
    pub global_kill: bool,
    pub user_kill: bool,
    pub state: TradingState,
    pub open_cases: u64,
    /// Exchanges whose trading is paused after an outage.
    pub paused: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitRow {
    pub key: String,
    pub label: String,
    pub help: String,
    pub value: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserControlView {
    pub user_id: String,
    pub email: String,
    pub role: String,
    pub state: TradingState,
    pub kill_switch: bool,
    pub autonomous: bool,
    pub open_cases: u64,
    pub overrides: Vec<LimitRow>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockView {
    pub id: String,
    pub cidr: String,
    pub note: String,
    pub created_at: String,
}

/// What a stop (kill switch, halt, reducing only) did to the resting orders it covers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StopEffectView {
    pub cancelled: u32,
    /// Still at their exchange (it did not take the cancel): asked again until it confirms.
    pub still_resting: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RiskOverviewView {
    pub global_kill: bool,
    pub limits: Vec<LimitRow>,
    pub users: Vec<UserControlView>,
    pub blocklist: Vec<BlockView>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TradePoint {
    pub at: String,
    pub symbol: String,
    pub notional: f64,
    pub ip: Option<String>,
    pub device: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaseView {
    pub id: String,
    pub subject_id: String,
    pub subject_email: String,
    pub order_id: Option<String>,
    pub score: f64,
    pub status: String,
    pub opened_at: String,
    pub decided_at: Option<String>,
    pub decided_by_email: Option<String>,
    pub note: Option<String>,
    pub rationale: Option<String>,
    pub hits: Vec<RuleHitView>,
    pub features: Vec<FeatureView>,
    pub recent: Vec<TradePoint>,
    pub candidate: TradePoint,
    pub state_before: TradingState,
    pub state_after: TradingState,
    /// The subject's state now.
    pub state_now: TradingState,
    /// What stands once no case holds the subject: an admin's setting or a confirmed case.
    pub state_settled: TradingState,
    /// The subject's open cases other than this one.
    pub other_open_cases: u64,
    /// The subject's state if this case were released now, and if it were confirmed.
    pub on_release: TradingState,
    pub on_confirm: TradingState,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentTokenView {
    pub id: String,
    pub name: String,
    pub prefix: String,
    pub scopes: Vec<String>,
    pub created_at: String,
    pub last_used_at: Option<String>,
    pub revoked_at: Option<String>,
    pub expires_at: String,
    /// Past `expires_at`: the agent API refuses it.
    pub expired: bool,
}

/// No derived `Debug`: `secret` is the bearer token itself.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatedAgentToken {
    pub token: AgentTokenView,
    /// Shown once; only its hash is stored.
    pub secret: String,
}

impl std::fmt::Debug for CreatedAgentToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedAgentToken")
            .field("token", &self.token)
            .field("secret", &"[redacted]")
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProposalView {
    pub id: String,
    pub token_name: Option<String>,
    pub symbol: String,
    pub side: String,
    pub order_type: String,
    pub quantity: String,
    pub limit_price: Option<String>,
    pub rationale: String,
    pub status: String,
    pub order_id: Option<String>,
    pub created_at: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentOverviewView {
    pub tokens: Vec<AgentTokenView>,
    pub proposals: Vec<ProposalView>,
    pub autonomous: bool,
    pub autonomous_cap: String,
}

mod agents;
mod orders;
mod review;
mod risk_admin;
#[cfg(feature = "ssr")]
mod views;

pub use agents::*;
pub use orders::*;
pub use review::*;
pub use risk_admin::*;
#[cfg(feature = "ssr")]
pub use views::{order_view, plain, position_view, status_view};
