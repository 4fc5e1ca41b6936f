//! Domain values as the wire views of mod.rs (server side only): pure conversions, no I/O.

use domain::audit::canonical_time;
use domain::keys::KeyRecord;
use domain::risk::LimitField;
use domain::trading::{
    AgentOverview, AgentToken, CaseFile, CaseStatus, Fill, HoldKind, Order, OrderStatus, Proposal,
    RiskOverview, Ticket, TradingStatus, ValuedPosition,
};
use rust_decimal::Decimal;

use super::*;
use crate::error::AppError;

pub fn plain(d: Decimal) -> String {
    d.normalize().to_string()
}

/// A malformed id is reported exactly like an unknown one.
pub fn uuid(raw: &str) -> Result<uuid::Uuid, AppError> {
    uuid::Uuid::parse_str(raw.trim()).map_err(|_| AppError::NotFound)
}

pub fn price_views(quotes: Vec<(String, Decimal)>) -> Vec<PriceView> {
    quotes
        .into_iter()
        .map(|(symbol, price)| PriceView {
            symbol,
            price: plain(price),
        })
        .collect()
}

pub fn features(score: &domain::risk::AnomalyScore) -> Vec<FeatureView> {
    score
        .contributions
        .iter()
        .map(|c| FeatureView {
            code: c.feature.code().to_owned(),
            label: c.feature.label().to_owned(),
            strength: c.strength,
            weight: c.weight,
            impact: c.impact(),
            detail: c.detail.clone(),
        })
        .collect()
}

pub fn hits(hits: &[domain::risk::RuleHit]) -> Vec<RuleHitView> {
    hits.iter()
        .map(|h| RuleHitView {
            rule: h.rule.code().to_owned(),
            verdict: h.verdict.as_str().to_owned(),
            message: h.message.clone(),
        })
        .collect()
}

pub fn order_view(order: &Order) -> OrderView {
    OrderView {
        id: order.id.to_string(),
        venue: match order.venue.key {
            None => order.venue.exchange.label().to_owned(),
            Some(_) => format!(
                "{} {}",
                order.venue.exchange.label(),
                order.venue.environment.label().to_lowercase()
            ),
        },
        symbol: order.symbol.clone(),
        side: order.side.as_str().to_owned(),
        order_type: order.order_type.as_str().to_owned(),
        quantity: plain(order.quantity),
        limit_price: order.limit_price.map(plain),
        reference_price: plain(order.reference_price),
        notional: plain(order.notional.round_dp(2)),
        status: order.status.as_str().to_owned(),
        status_reason: order.status_reason.clone(),
        verdict: order.verdict.as_str().to_owned(),
        verdict_label: order.verdict.label().to_owned(),
        hits: hits(&order.hits),
        score: order.anomaly.as_ref().map(|a| a.score),
        features: order.anomaly.as_ref().map(features).unwrap_or_default(),
        filled_quantity: plain(order.filled_quantity),
        average_price: order.average_price.map(plain),
        source: order.source.as_str().to_owned(),
        case_id: order.case.map(|c| c.to_string()),
        created_at: canonical_time(order.created_at),
        // A pending cancel is already on its way: asking again changes nothing.
        can_cancel: matches!(order.status, OrderStatus::Held | OrderStatus::Open)
            && order.hold != Some(HoldKind::Cancelling),
        awaiting_approval: order.status == OrderStatus::Held
            && order.hold == Some(HoldKind::Approval),
        venue_id: order
            .venue
            .key
            .map_or_else(|| "paper".to_owned(), |k| k.to_string()),
    }
}

pub fn position_view(valued: &ValuedPosition) -> PositionView {
    let p = &valued.position;
    PositionView {
        symbol: p.symbol.clone(),
        quantity: plain(p.quantity),
        average_cost: plain(p.average_cost.round_dp(2)),
        price: valued.price.map(plain),
        market_value: valued.market_value().map(|v| plain(v.round_dp(2))),
        unrealized_pnl: valued.unrealized_pnl().map(|v| plain(v.round_dp(2))),
    }
}

pub fn fill_view(fill: &Fill) -> FillView {
    FillView {
        order_id: fill.order.to_string(),
        symbol: fill.symbol.clone(),
        side: fill.side.as_str().to_owned(),
        quantity: plain(fill.quantity),
        price: plain(fill.price),
        at: canonical_time(fill.at),
    }
}

/// The paper exchange first, then each key that can place orders.
fn venue_views(trade_keys: &[KeyRecord]) -> Vec<VenueView> {
    let paper = VenueView {
        id: "paper".into(),
        label: "Paper exchange (built in, no key needed)".into(),
    };
    std::iter::once(paper)
        .chain(trade_keys.iter().map(|key| VenueView {
            id: key.id.to_string(),
            label: format!(
                "{} {} — {} ({})",
                key.exchange.label(),
                key.environment.label().to_lowercase(),
                key.label,
                key.mask
            ),
        }))
        .collect()
}

pub fn ticket_view(ticket: Ticket) -> TicketView {
    TicketView {
        step_up_threshold: plain(ticket.step_up_threshold),
        state: ticket.controls.state,
        kill_switch_user: ticket.controls.kill_switch,
        kill_switch_global: ticket.global_kill,
        used_today: plain(ticket.used_today.round_dp(2)),
        orders_in_window: ticket.orders_in_window,
        unapproved_notional: plain(ticket.unapproved_notional),
        cash: plain(ticket.cash.round_dp(2)),
        positions: ticket.positions.iter().map(position_view).collect(),
        free_cash: plain(ticket.free.cash.round_dp(2)),
        free_quantities: ticket
            .free
            .positions
            .iter()
            .map(|p| (p.symbol.clone(), plain(p.quantity)))
            .collect(),
        prices: price_views(ticket.prices),
        venues: venue_views(&ticket.trade_keys),
        open_cases: ticket.open_cases,
        has_security_key: ticket.has_security_key,
        has_totp: ticket.has_totp,
        limits: ticket.limits,
    }
}

pub fn status_view(status: TradingStatus) -> TradingStatusView {
    TradingStatusView {
        global_kill: status.global_kill,
        user_kill: status.controls.kill_switch,
        state: status.controls.state,
        open_cases: status.open_cases,
        paused: status
            .paused
            .iter()
            .map(|(e, env)| format!("{} {}", e.label(), env.label().to_lowercase()))
            .collect(),
    }
}

fn limit_row(field: LimitField, value: Option<String>) -> LimitRow {
    LimitRow {
        key: field.key().to_owned(),
        label: field.label().to_owned(),
        help: field.help().to_owned(),
        value,
    }
}

pub fn stop_effect_view(effect: domain::trading::StopEffect) -> StopEffectView {
    let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    StopEffectView {
        cancelled: count(effect.cancelled),
        still_resting: count(effect.still_resting),
    }
}

pub fn risk_overview_view(overview: RiskOverview) -> RiskOverviewView {
    RiskOverviewView {
        global_kill: overview.global_kill,
        limits: LimitField::ALL
            .iter()
            .map(|f| limit_row(*f, overview.global_limits.get(f.key()).cloned()))
            .collect(),
        users: overview
            .users
            .into_iter()
            .map(|u| UserControlView {
                user_id: u.user.id.to_string(),
                email: u.user.email.as_str().to_owned(),
                role: u.user.role.as_str().to_owned(),
                state: u.controls.state,
                kill_switch: u.controls.kill_switch,
                autonomous: u.controls.autonomous,
                open_cases: u.open_cases,
                overrides: u
                    .overrides
                    .iter()
                    .filter_map(|(key, value)| {
                        let (field, held) = LimitField::from_user_key(key)?;
                        let mut row = limit_row(field, Some(value.clone()));
                        if held {
                            // Set when they loosened it globally: a ceiling, so a stricter
                            // global value still applies.
                            row.label = format!("{}, held at most", row.label);
                        }
                        Some(row)
                    })
                    .collect(),
            })
            .collect(),
        blocklist: overview
            .blocklist
            .into_iter()
            .map(|b| BlockView {
                id: b.id.to_string(),
                cidr: b.cidr,
                note: b.note,
                created_at: canonical_time(b.created_at),
            })
            .collect(),
    }
}

pub fn trade_point(sample: &domain::risk::TradeSample) -> TradePoint {
    use rust_decimal::prelude::ToPrimitive;
    TradePoint {
        at: canonical_time(sample.at),
        symbol: sample.symbol.clone(),
        notional: sample.notional.to_f64().unwrap_or(0.0),
        ip: sample.ip.clone(),
        device: sample.device.clone(),
    }
}

pub fn case_view(file: &CaseFile) -> CaseView {
    let case = &file.case;
    CaseView {
        id: case.id.to_string(),
        subject_id: case.subject.to_string(),
        subject_email: file
            .subject_email
            .as_ref()
            .map_or_else(|| "(deleted user)".into(), |e| e.as_str().to_owned()),
        order_id: case.order.map(|o| o.to_string()),
        score: case.score,
        status: case.status.as_str().to_owned(),
        opened_at: canonical_time(case.opened_at),
        decided_at: case.decided_at.map(canonical_time),
        decided_by_email: file.reviewer_email.as_ref().map(|e| e.as_str().to_owned()),
        note: case.note.clone(),
        rationale: case.rationale.clone(),
        hits: hits(&case.evidence.hits),
        features: features(&case.evidence.anomaly),
        recent: case.evidence.recent.iter().map(trade_point).collect(),
        candidate: trade_point(&case.evidence.candidate),
        state_before: case.evidence.state_before,
        state_after: case.evidence.state_after,
        state_now: file.subject_standing.state,
        state_settled: file.subject_standing.settled,
        other_open_cases: file.other_open_cases,
        on_release: file.state_after(CaseStatus::Released),
        on_confirm: file.state_after(CaseStatus::Confirmed),
    }
}

pub fn token_view(token: &AgentToken, now: time::OffsetDateTime) -> AgentTokenView {
    AgentTokenView {
        expires_at: canonical_time(token.expires_at),
        expired: token.is_expired(now),
        id: token.id.to_string(),
        name: token.name.clone(),
        prefix: token.prefix.clone(),
        scopes: token.scopes.iter().map(|s| s.as_str().to_owned()).collect(),
        created_at: canonical_time(token.created_at),
        last_used_at: token.last_used_at.map(canonical_time),
        revoked_at: token.revoked_at.map(canonical_time),
    }
}

fn proposal_view(proposal: &Proposal, tokens: &[AgentToken]) -> ProposalView {
    ProposalView {
        id: proposal.id.to_string(),
        token_name: tokens
            .iter()
            .find(|t| t.id == proposal.token)
            .map(|t| t.name.clone()),
        symbol: proposal.symbol.clone(),
        side: proposal.side.as_str().to_owned(),
        order_type: proposal.order_type.as_str().to_owned(),
        quantity: plain(proposal.quantity),
        limit_price: proposal.limit_price.map(plain),
        rationale: proposal.rationale.clone(),
        status: proposal.status.as_str().to_owned(),
        order_id: proposal.order.map(|o| o.to_string()),
        created_at: canonical_time(proposal.created_at),
    }
}

pub fn agent_overview_view(overview: AgentOverview) -> AgentOverviewView {
    AgentOverviewView {
        proposals: overview
            .proposals
            .iter()
            .map(|p| proposal_view(p, &overview.tokens))
            .collect(),
        tokens: overview
            .tokens
            .iter()
            .map(|t| token_view(t, overview.as_of))
            .collect(),
        autonomous: overview.autonomous,
        autonomous_cap: plain(overview.autonomous_cap),
    }
}
