//! The admin's risk controls: kill switches, limits, per-user states, the IP blocklist.

use leptos::prelude::*;

use super::*;
use crate::error::AppError;

#[server(endpoint = "risk/overview")]
pub async fn risk_overview() -> Result<RiskOverviewView, AppError> {
    use crate::api::context::{require_admin_reader, services};

    let reader = require_admin_reader().await?;
    let overview = services()?.trading.risk_overview(&reader).await?;
    Ok(views::risk_overview_view(overview))
}

/// Global kill switch (MiFID II): stops every new order; cancels still work. Turning it on
/// cancels every resting order at its venue; returns how many were cancelled, and how many
/// their exchange did not take off yet.
#[server(endpoint = "risk/kill-switch")]
pub async fn set_kill_switch(on: bool) -> Result<StopEffectView, AppError> {
    use crate::api::context::{request_meta, require_admin_proof, services};

    let admin = require_admin_proof().await?;
    let stopped = services()?
        .trading
        .set_global_kill_switch(&admin, on, request_meta())
        .await?;
    Ok(views::stop_effect_view(stopped))
}

/// Changes another user's trading state or kill switch (never the admin's own). Stopping the
/// user cancels their resting orders (their buys when reducing only); returns what that did.
#[server(endpoint = "risk/user-controls")]
pub async fn set_user_controls(
    user_id: String,
    state: Option<String>,
    kill_switch: Option<bool>,
) -> Result<StopEffectView, AppError> {
    use crate::api::context::{request_meta, require_admin_proof, services};
    use domain::account::UserId;
    use domain::trading::ControlsChange;

    let admin = require_admin_proof().await?;
    let target = UserId(views::uuid(&user_id)?);
    let state = match state.as_deref() {
        None | Some("") => None,
        Some(raw) => Some(TradingState::parse(raw).ok_or_else(|| {
            AppError::Invalid("State must be active, reducing or halted.".into())
        })?),
    };
    let change = ControlsChange {
        state,
        kill_switch,
        autonomous: None,
    };
    let changed = services()?
        .trading
        .change_controls(&admin, target, change, request_meta())
        .await?;
    Ok(views::stop_effect_view(changed.stopped))
}

/// Sets a global limit (`user_id` empty) or a user's override; an empty value clears the
/// override.
#[server(endpoint = "risk/set-limit")]
pub async fn set_limit(
    user_id: Option<String>,
    field: String,
    value: Option<String>,
) -> Result<(), AppError> {
    use crate::api::context::{request_meta, require_admin_proof, services};
    use domain::account::UserId;
    use domain::risk::LimitField;

    let admin = require_admin_proof().await?;
    let target = match user_id.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(raw) => Some(UserId(views::uuid(raw)?)),
    };
    let field =
        LimitField::from_key(&field).ok_or_else(|| AppError::Invalid("Unknown limit.".into()))?;
    let value = value.filter(|v| !v.trim().is_empty());
    services()?
        .trading
        .set_limit(&admin, target, field, value.as_deref(), request_meta())
        .await?;
    Ok(())
}

#[server(endpoint = "risk/block-ip")]
pub async fn block_ip(cidr: String, note: String) -> Result<(), AppError> {
    use crate::api::context::{request_meta, require_admin_proof, services};

    let admin = require_admin_proof().await?;
    services()?
        .trading
        .add_blocked_range(&admin, &cidr, &note, request_meta())
        .await?;
    Ok(())
}

#[server(endpoint = "risk/unblock-ip")]
pub async fn unblock_ip(id: String) -> Result<(), AppError> {
    use crate::api::context::{request_meta, require_admin_proof, services};

    let admin = require_admin_proof().await?;
    let id = views::uuid(&id)?;
    services()?
        .trading
        .remove_blocked_range(&admin, id, request_meta())
        .await?;
    Ok(())
}
