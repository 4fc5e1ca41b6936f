//! Agent use cases: the trader's tokens, authenticating a bot's bearer token, the proposals
//! bots make, autonomous placement below the cap, and the trader's sign-off or rejection.

use rust_decimal::Decimal;
use time::OffsetDateTime;
use uuid::Uuid;

use super::agent::{
    self, AgentScope, AgentToken, MAX_RATIONALE_CHARS, NewAgentToken, Proposal, ProposalStatus,
};
use super::error::{Conflict, Forbidden, Outage, Refusal, TradingError, audit_or_store};
use super::placement::Placement;
use super::service::{agent_actor, draft, plain};
use super::{ControlsChange, Order, OrderSource, TradingService, UserControls, Venue};
use crate::account::UserId;
use crate::audit::{Actor, Outcome, RequestMeta, canonical_time};
use crate::audit_action::AuditAction;
use crate::order::{OrderTicket, OrderType, Price, Quantity, Symbol};
use crate::risk::{self, TradingState};
use crate::stepup::StepUpGrant;

/// How many proposals the trader's queue shows.
const PROPOSAL_LIST_LIMIT: u64 = 100;

/// The trader's agents page: tokens, proposals and autonomous mode.
#[derive(Debug, Clone)]
pub struct AgentOverview {
    pub tokens: Vec<AgentToken>,
    /// Newest first.
    pub proposals: Vec<Proposal>,
    pub autonomous: bool,
    pub autonomous_cap: Decimal,
    /// When this was read (a token past its expiry is refused from then on).
    pub as_of: OffsetDateTime,
}

impl TradingService {
    /// The trader's tokens and proposals, and whether autonomous mode is on and up to what.
    pub async fn agent_overview(
        &self,
        owner: UserId,
        meta: &RequestMeta,
    ) -> Result<AgentOverview, TradingError> {
        Ok(AgentOverview {
            tokens: self.store.agent_tokens(owner).await?,
            proposals: self.store.proposals(owner, PROPOSAL_LIST_LIMIT).await?,
            autonomous: self.store.controls(owner).await?.autonomous,
            autonomous_cap: self.limits_for(owner, meta).await?.autonomous_cap,
            as_of: self.now(),
        })
    }

    /// Creates a bearer token for the owner's bot. A token is a credential: the owner needs a
    /// second factor and a fresh step-up (`grant`, the session's). It lives `lifetime_days`
    /// (default 90, at most 365).
    pub async fn create_agent_token(
        &self,
        owner: UserId,
        grant: Option<&StepUpGrant>,
        name: &str,
        scopes: &[String],
        lifetime_days: Option<u32>,
        meta: RequestMeta,
    ) -> Result<NewAgentToken, TradingError> {
        let factors = self
            .stepup
            .usable_factors(owner)
            .await
            .map_err(|e| TradingError::Unavailable(Outage::Factors(e)))?;
        if !factors.any() {
            return Err(Refusal::FactorRequired.into());
        }
        self.stepup
            .check_lasting_change(factors, grant)
            .map_err(TradingError::Approval)?;
        let name = agent::parse_token_name(name).map_err(Refusal::from)?;
        let lifetime = agent::token_lifetime(lifetime_days).map_err(Refusal::from)?;
        let mut parsed = Vec::new();
        for raw in scopes {
            let scope = AgentScope::parse(raw).ok_or_else(|| Refusal::UnknownScope(raw.clone()))?;
            if !parsed.contains(&scope) {
                parsed.push(scope);
            }
        }
        if parsed.is_empty() {
            return Err(Refusal::NoScope.into());
        }
        let (secret, hash) = agent::generate_token_secret();
        let now = self.now();
        let token = AgentToken {
            id: Uuid::new_v4(),
            owner,
            name,
            prefix: {
                use secrecy::ExposeSecret as _;
                secret.expose_secret().chars().take(10).collect()
            },
            scopes: parsed,
            created_at: now,
            last_used_at: None,
            revoked_at: None,
            expires_at: now + lifetime,
        };
        let event = draft(
            Actor::user(owner),
            AuditAction::AgentTokenCreated,
            Outcome::Success,
            &meta,
        )
        .resource(token.resource())
        .detail("name", token.name.clone())
        .detail(
            "scopes",
            token
                .scopes
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(" "),
        )
        .detail("expires_at", canonical_time(token.expires_at));
        self.store
            .insert_agent_token(&token, &hash, event)
            .await
            .map_err(audit_or_store)?;
        Ok(NewAgentToken { token, secret })
    }

    pub async fn agent_tokens(&self, owner: UserId) -> Result<Vec<AgentToken>, TradingError> {
        Ok(self.store.agent_tokens(owner).await?)
    }

    pub async fn revoke_agent_token(
        &self,
        owner: UserId,
        id: Uuid,
        meta: RequestMeta,
    ) -> Result<(), TradingError> {
        let event = draft(
            Actor::user(owner),
            AuditAction::AgentTokenRevoked,
            Outcome::Success,
            &meta,
        )
        .resource(format!("agent_token:{id}"));
        self.store
            .revoke_agent_token(owner, id, self.now(), event)
            .await
            .map_err(audit_or_store)
    }

    /// The token behind a bearer value, if it is live. Unknown, malformed, revoked and expired
    /// values look the same to the caller; the use of an expired token is audited.
    pub async fn authenticate_agent(
        &self,
        bearer: &str,
        meta: &RequestMeta,
    ) -> Result<AgentToken, TradingError> {
        if !agent::looks_like_token(bearer) {
            return Err(TradingError::NotFound);
        }
        let now = self.now();
        let token = self
            .store
            .agent_token_by_hash(&agent::token_hash(bearer), now)
            .await?
            .ok_or(TradingError::NotFound)?;
        if token.is_expired(now) {
            self.audit_or_fail(
                draft(
                    agent_actor(token.id),
                    AuditAction::AgentTokenExpired,
                    Outcome::Denied,
                    meta,
                )
                .resource(token.resource())
                .detail("owner", token.owner.to_string())
                .detail("expired_at", canonical_time(token.expires_at)),
            )
            .await?;
            return Err(TradingError::NotFound);
        }
        Ok(token)
    }

    /// Records an agent's refusal or a held signal: nothing is placed, and the trader and
    /// reviewers can see that the agent tried.
    pub async fn agent_held(
        &self,
        token: &AgentToken,
        reason: &str,
        meta: RequestMeta,
    ) -> Result<(), TradingError> {
        self.audit_or_fail(
            draft(
                agent_actor(token.id),
                AuditAction::AgentSignalHeld,
                Outcome::Denied,
                &meta,
            )
            .resource(token.resource())
            .detail("owner", token.owner.to_string())
            .detail("reason", reason.to_owned()),
        )
        .await
    }

    /// Queues an agent's proposal (always for the paper exchange). With autonomous mode on, an
    /// Active trader, and a value within the cap, it is placed at once (still screened).
    pub async fn propose(
        &self,
        token: &AgentToken,
        ticket: OrderTicket,
        rationale: &str,
        meta: RequestMeta,
    ) -> Result<Proposal, TradingError> {
        if !token.allows(AgentScope::Propose) {
            return Err(TradingError::Forbidden(Forbidden::TokenScope(
                AgentScope::Propose,
            )));
        }
        let rationale = rationale.trim();
        if rationale.chars().count() > MAX_RATIONALE_CHARS {
            return Err(Refusal::RationaleTooLong {
                max: MAX_RATIONALE_CHARS,
            }
            .into());
        }
        let proposal = Proposal {
            id: Uuid::new_v4(),
            owner: token.owner,
            token: token.id,
            symbol: ticket.symbol().as_str().to_owned(),
            side: ticket.side(),
            order_type: ticket.order_type(),
            quantity: ticket.quantity().value(),
            limit_price: ticket.limit_price().map(Price::value),
            rationale: rationale.to_owned(),
            status: ProposalStatus::Pending,
            order: None,
            created_at: self.now(),
            decided_at: None,
        };
        let event = draft(
            agent_actor(token.id),
            AuditAction::AgentProposalReceived,
            Outcome::Success,
            &meta,
        )
        .resource(proposal.resource())
        .detail("owner", token.owner.to_string())
        .detail("symbol", proposal.symbol.clone())
        .detail("side", proposal.side.as_str())
        .detail("quantity", plain(proposal.quantity));
        self.store
            .insert_proposal(&proposal, event)
            .await
            .map_err(audit_or_store)?;
        self.try_autonomous(proposal, ticket, meta).await
    }

    async fn try_autonomous(
        &self,
        proposal: Proposal,
        ticket: OrderTicket,
        meta: RequestMeta,
    ) -> Result<Proposal, TradingError> {
        let owner = proposal.owner;
        let controls = self.store.controls(owner).await?;
        if !controls.autonomous
            || controls.state != TradingState::Active
            || controls.kill_switch
            || self.store.open_cases_for(owner).await? > 0
        {
            return Ok(proposal);
        }
        let limits = self.limits_for(owner, &meta).await?;
        let ticket = match ticket.limit_price() {
            Some(_) => ticket,
            None => match self
                .venue_price(Venue::PAPER, ticket.symbol().as_str())
                .await
            {
                // A market proposal is placed at the quote it was judged by.
                Ok(quote) => match Price::try_from(quote) {
                    Ok(quote) => ticket.with_quote(Some(quote)),
                    Err(_) => return Ok(proposal),
                },
                Err(_) => return Ok(proposal),
            },
        };
        let price = ticket.terms().map(|t| t.price).unwrap_or(Decimal::MAX);
        // A first look only (placement judges the cap again at the screening value); a value
        // that does not fit is certainly above the cap.
        if risk::order_value(proposal.quantity, price).is_none_or(|v| v > limits.autonomous_cap) {
            return Ok(proposal);
        }
        let placed = self
            .place_ticket(Placement {
                owner,
                actor: agent_actor(proposal.token),
                venue: Venue::PAPER,
                ticket,
                proposal: Some(proposal.id),
                approval_nonce: None,
                source: OrderSource::Autonomous,
                meta,
            })
            .await;
        match placed {
            // The proposal was settled as placed together with the order's decision.
            Ok(order) => {
                let mut proposal = proposal;
                proposal.status = ProposalStatus::Placed;
                proposal.order = Some(order.id);
                proposal.decided_at = Some(order.created_at);
                Ok(proposal)
            }
            // Needs a human (step-up, or a refusal the trader should see): stays queued.
            Err(
                TradingError::SignOffRequired
                | TradingError::ApprovalRequired { .. }
                | TradingError::Refused(_)
                | TradingError::Form(_),
            ) => Ok(proposal),
            // The trader decided it meanwhile: report it as it is now.
            Err(TradingError::Conflict(_)) => Ok(self
                .store
                .proposal(owner, proposal.id)
                .await?
                .unwrap_or(proposal)),
            Err(e) => Err(e),
        }
    }

    /// The trader's own opt-in to autonomous agent orders below the cap. Letting a bot trade
    /// unattended is a privilege change: it needs a fresh step-up (`grant`, the session's).
    /// Turning it off needs none: it only takes power away, and an owner who lost their
    /// factors must still be able to stop a bot a thief set going.
    pub async fn set_autonomous(
        &self,
        user: UserId,
        grant: Option<&StepUpGrant>,
        on: bool,
        meta: RequestMeta,
    ) -> Result<UserControls, TradingError> {
        // Turning it on lasts beyond the window (with a key on the account, only the key will
        // do).
        if on {
            let factors = self
                .stepup
                .usable_factors(user)
                .await
                .map_err(|e| TradingError::Unavailable(Outage::Factors(e)))?;
            self.stepup
                .check_lasting_change(factors, grant)
                .map_err(TradingError::Approval)?;
        }
        self.store
            .change_controls(
                user,
                ControlsChange {
                    autonomous: Some(on),
                    ..ControlsChange::default()
                },
                draft(
                    Actor::user(user),
                    AuditAction::AgentAutonomousChanged,
                    Outcome::Success,
                    &meta,
                )
                .resource(format!("user:{user}"))
                .detail("autonomous", on),
            )
            .await
            .map_err(audit_or_store)
    }

    /// The trader's proposals, newest first.
    pub async fn proposals(&self, owner: UserId) -> Result<Vec<Proposal>, TradingError> {
        Ok(self.store.proposals(owner, PROPOSAL_LIST_LIMIT).await?)
    }

    /// The trader's sign-off: the proposal becomes a ticket order (screened, with step-up
    /// above the threshold, like any other; `quoted` is the price the trader saw for a market
    /// proposal). The proposal is settled as placed in the same transaction as the order's
    /// decision, only if it is still pending: two sign-offs (or a sign-off racing autonomous
    /// mode) give one order, and the other gets `Conflict`.
    pub async fn sign_off(
        &self,
        owner: UserId,
        id: Uuid,
        quoted: Option<Price>,
        approval_nonce: Option<String>,
        meta: RequestMeta,
    ) -> Result<Order, TradingError> {
        let proposal = self
            .store
            .proposal(owner, id)
            .await?
            .ok_or(TradingError::NotFound)?;
        if proposal.status != ProposalStatus::Pending {
            return Err(TradingError::Conflict(Conflict::ProposalSettled));
        }
        self.place_ticket(Placement {
            owner,
            actor: Actor::user(owner),
            venue: Venue::PAPER,
            ticket: proposal_ticket(&proposal)?.with_quote(quoted),
            proposal: Some(proposal.id),
            approval_nonce,
            source: OrderSource::Proposal,
            meta,
        })
        .await
    }

    pub async fn reject_proposal(
        &self,
        owner: UserId,
        id: Uuid,
        meta: RequestMeta,
    ) -> Result<(), TradingError> {
        let event = draft(
            Actor::user(owner),
            AuditAction::AgentProposalRejected,
            Outcome::Success,
            &meta,
        )
        .resource(format!("proposal:{id}"));
        let settled = self
            .store
            .settle_proposal(owner, id, ProposalStatus::Rejected, None, self.now(), event)
            .await
            .map_err(audit_or_store)?;
        if settled {
            return Ok(());
        }
        match self.store.proposal(owner, id).await? {
            None => Err(TradingError::NotFound),
            Some(_) => Err(Refusal::ProposalDecided.into()),
        }
    }
}

/// The order a proposal asks for (without a quote, for a market proposal).
fn proposal_ticket(proposal: &Proposal) -> Result<OrderTicket, TradingError> {
    use crate::order::OrderFormError;

    let symbol = Symbol::parse(&proposal.symbol).map_err(OrderFormError::from)?;
    let quantity = Quantity::try_from(proposal.quantity).map_err(OrderFormError::Quantity)?;
    Ok(match (proposal.order_type, proposal.limit_price) {
        (OrderType::Limit, Some(limit)) => OrderTicket::limit(
            symbol,
            proposal.side,
            quantity,
            Price::try_from(limit).map_err(OrderFormError::Price)?,
        ),
        (OrderType::Limit, None) => return Err(OrderFormError::LimitPriceMissing.into()),
        (OrderType::Market, _) => OrderTicket::market(symbol, proposal.side, quantity, None),
    })
}
