//! The trader's agent tokens, proposal queue and autonomous mode.

use leptos::prelude::*;

use super::*;
use crate::error::AppError;

#[server(endpoint = "agent/overview")]
pub async fn agent_overview() -> Result<AgentOverviewView, AppError> {
    use crate::api::context::{request_meta, require_user, services};

    let (user, _) = require_user().await?;
    let overview = services()?
        .trading
        .agent_overview(user.id, &request_meta())
        .await?;
    Ok(views::agent_overview_view(overview))
}

/// Creates a bearer token for a bot. A token is a credential, so this needs a fresh step-up
/// with any second factor; someone without one is asked to set one up first. It expires
/// after `lifetime_days` (default 90, at most 365).
#[server(endpoint = "agent/token-create")]
pub async fn create_agent_token(
    name: String,
    scopes: Vec<String>,
    #[server(default)] lifetime_days: Option<u32>,
) -> Result<CreatedAgentToken, AppError> {
    use crate::api::context::{request_meta, require_user, services, step_up_grant};
    use secrecy::ExposeSecret;

    let (user, session) = require_user().await?;
    let grant = step_up_grant(&session).await?;
    let created = services()?
        .trading
        .create_agent_token(
            user.id,
            grant.as_ref(),
            &name,
            &scopes,
            lifetime_days,
            request_meta(),
        )
        .await?;
    Ok(CreatedAgentToken {
        // Just created, so not expired.
        token: views::token_view(&created.token, created.token.created_at),
        secret: created.secret.expose_secret().to_owned(),
    })
}

#[server(endpoint = "agent/token-revoke")]
pub async fn revoke_agent_token(id: String) -> Result<(), AppError> {
    use crate::api::context::{request_meta, require_user, services};

    let (user, _) = require_user().await?;
    let id = views::uuid(&id)?;
    services()?
        .trading
        .revoke_agent_token(user.id, id, request_meta())
        .await?;
    Ok(())
}

/// The trader signs a proposal off; `quoted_price` is the price they saw, for a market one.
#[server(endpoint = "agent/sign-off")]
pub async fn sign_off_proposal(
    id: String,
    quoted_price: Option<String>,
    approval_nonce: Option<String>,
) -> Result<OrderView, AppError> {
    use crate::api::context::{request_meta, require_user, services};
    use domain::order::{OrderFormError, Price};

    let (user, _) = require_user().await?;
    let id = views::uuid(&id)?;
    let quoted = quoted_price
        .filter(|p| !p.trim().is_empty())
        .map(|p| Price::parse(&p).map_err(OrderFormError::Price))
        .transpose()?;
    let order = services()?
        .trading
        .sign_off(user.id, id, quoted, approval_nonce, request_meta())
        .await?;
    Ok(views::order_view(&order))
}

#[server(endpoint = "agent/reject")]
pub async fn reject_proposal(id: String) -> Result<(), AppError> {
    use crate::api::context::{request_meta, require_user, services};

    let (user, _) = require_user().await?;
    let id = views::uuid(&id)?;
    services()?
        .trading
        .reject_proposal(user.id, id, request_meta())
        .await?;
    Ok(())
}

/// Letting a bot trade unattended is a privilege change: turning it on needs a fresh step-up;
/// turning it off needs none.
#[server(endpoint = "agent/autonomous")]
pub async fn set_autonomous(on: bool) -> Result<(), AppError> {
    use crate::api::context::{request_meta, require_user, services, step_up_grant};

    let (user, session) = require_user().await?;
    let grant = step_up_grant(&session).await?;
    services()?
        .trading
        .set_autonomous(user.id, grant.as_ref(), on, request_meta())
        .await?;
    Ok(())
}
