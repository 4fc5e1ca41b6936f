//! Agent tokens and the proposals agents make.

use async_trait::async_trait;
use domain::account::UserId;
use domain::audit::{AuditDraft, canonical_time};
use domain::ports::StoreError;
use domain::trading::{AgentStore, AgentToken, OrderId, Proposal, ProposalStatus};
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use time::OffsetDateTime;
use uuid::Uuid;

use super::super::converted;
use super::super::entities::{agent_token, proposal};
use super::rows::{to_proposal, to_token};
use super::{SqlTradingStore, all, amount, micros};

#[async_trait]
impl AgentStore for SqlTradingStore {
    async fn insert_agent_token(
        &self,
        token: &AgentToken,
        hash: &str,
        audit: AuditDraft,
    ) -> Result<(), StoreError> {
        converted(async {
            let txn = self.chain.begin().await?;
            agent_token::Entity::insert(agent_token::ActiveModel {
                id: Set(token.id.to_string()),
                owner: Set(token.owner.to_string()),
                name: Set(token.name.clone()),
                prefix: Set(token.prefix.clone()),
                token_hash: Set(hash.to_owned()),
                scopes: Set(token
                    .scopes
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(" ")),
                created_at: Set(canonical_time(token.created_at)),
                last_used_at: Set(token.last_used_at.map(canonical_time)),
                revoked_at: Set(token.revoked_at.map(canonical_time)),
                expires_at: Set(Some(canonical_time(token.expires_at))),
                expires_at_us: Set(Some(micros(token.expires_at))),
            })
            .exec_without_returning(txn.conn())
            .await?;
            txn.commit_with(audit, self.clock.now()).await?;
            Ok(())
        })
        .await
    }

    async fn agent_token_by_hash(
        &self,
        hash: &str,
        at: OffsetDateTime,
    ) -> Result<Option<AgentToken>, StoreError> {
        converted(async {
            let Some(row) = agent_token::Entity::find()
                .filter(agent_token::Column::TokenHash.eq(hash))
                .filter(agent_token::Column::RevokedAt.is_null())
                .one(&self.db)
                .await?
            else {
                return Ok(None);
            };
            let mut token = to_token(&row)?;
            if token.is_expired(at) {
                // Refused by the caller: an expired token's use is not a use.
                return Ok(Some(token));
            }
            // Best effort: a missed stamp must not turn a valid token away. It joins the audit
            // chain's write batch, as every frequent write does (see `commit_unaudited`).
            let stamped = async {
                let txn = self.chain.begin().await?;
                agent_token::Entity::update_many()
                    .set(agent_token::ActiveModel {
                        last_used_at: Set(Some(canonical_time(at))),
                        ..Default::default()
                    })
                    .filter(agent_token::Column::Id.eq(row.id.clone()))
                    .filter(agent_token::Column::RevokedAt.is_null())
                    .exec(txn.conn())
                    .await?;
                txn.commit_unaudited().await
            }
            .await;
            match stamped {
                Ok(_) => token.last_used_at = Some(at),
                Err(err) => {
                    tracing::warn!(token = %row.id, error = %err, "could not stamp agent token use");
                }
            }
            Ok(Some(token))
        })
        .await
    }

    async fn agent_tokens(&self, owner: UserId) -> Result<Vec<AgentToken>, StoreError> {
        converted(async {
            let rows = agent_token::Entity::find()
                .filter(agent_token::Column::Owner.eq(owner.to_string()))
                .all(&self.db)
                .await?;
            let mut tokens = all(&rows, to_token)?;
            // Canonical times do not sort as text; sort on the parsed times, oldest first.
            tokens.sort_by_key(|t| (t.created_at, t.id));
            Ok(tokens)
        })
        .await
    }

    async fn revoke_agent_token(
        &self,
        owner: UserId,
        id: Uuid,
        at: OffsetDateTime,
        audit: AuditDraft,
    ) -> Result<(), StoreError> {
        converted(async {
            let txn = self.chain.begin().await?;
            let revoked = agent_token::Entity::update_many()
                .set(agent_token::ActiveModel {
                    revoked_at: Set(Some(canonical_time(at))),
                    ..Default::default()
                })
                .filter(agent_token::Column::Id.eq(id.to_string()))
                .filter(agent_token::Column::Owner.eq(owner.to_string()))
                .filter(agent_token::Column::RevokedAt.is_null())
                .exec(txn.conn())
                .await?;
            if revoked.rows_affected != 1 {
                return Err(StoreError::NotFound.into());
            }
            txn.commit_with(audit, self.clock.now()).await?;
            Ok(())
        })
        .await
    }

    async fn insert_proposal(
        &self,
        proposal: &Proposal,
        audit: AuditDraft,
    ) -> Result<(), StoreError> {
        converted(async {
            let txn = self.chain.begin().await?;
            proposal::Entity::insert(proposal::ActiveModel {
                id: Set(proposal.id.to_string()),
                owner: Set(proposal.owner.to_string()),
                token_id: Set(proposal.token.to_string()),
                symbol: Set(proposal.symbol.clone()),
                side: Set(proposal.side.as_str().to_owned()),
                order_type: Set(proposal.order_type.as_str().to_owned()),
                quantity: Set(amount(proposal.quantity)),
                limit_price: Set(proposal.limit_price.map(amount)),
                rationale: Set(proposal.rationale.clone()),
                status: Set(proposal.status.as_str().to_owned()),
                order_id: Set(proposal.order.map(|o| o.to_string())),
                created_at: Set(canonical_time(proposal.created_at)),
                created_at_us: Set(micros(proposal.created_at)),
                decided_at: Set(proposal.decided_at.map(canonical_time)),
            })
            .exec_without_returning(txn.conn())
            .await?;
            txn.commit_with(audit, self.clock.now()).await?;
            Ok(())
        })
        .await
    }

    async fn proposals(&self, owner: UserId, limit: u64) -> Result<Vec<Proposal>, StoreError> {
        converted(async {
            let rows = proposal::Entity::find()
                .filter(proposal::Column::Owner.eq(owner.to_string()))
                .order_by_desc(proposal::Column::CreatedAtUs)
                .order_by_desc(proposal::Column::Id)
                .limit(limit)
                .all(&self.db)
                .await?;
            all(&rows, to_proposal)
        })
        .await
    }

    async fn proposal(&self, owner: UserId, id: Uuid) -> Result<Option<Proposal>, StoreError> {
        converted(async {
            proposal::Entity::find()
                .filter(proposal::Column::Id.eq(id.to_string()))
                .filter(proposal::Column::Owner.eq(owner.to_string()))
                .one(&self.db)
                .await?
                .as_ref()
                .map(to_proposal)
                .transpose()
        })
        .await
    }

    async fn proposal_for_order(
        &self,
        owner: UserId,
        order: OrderId,
    ) -> Result<Option<Proposal>, StoreError> {
        converted(async {
            proposal::Entity::find()
                .filter(proposal::Column::OrderId.eq(order.to_string()))
                .filter(proposal::Column::Owner.eq(owner.to_string()))
                .one(&self.db)
                .await?
                .as_ref()
                .map(to_proposal)
                .transpose()
        })
        .await
    }

    async fn settle_proposal(
        &self,
        owner: UserId,
        id: Uuid,
        status: ProposalStatus,
        order: Option<OrderId>,
        at: OffsetDateTime,
        audit: AuditDraft,
    ) -> Result<bool, StoreError> {
        converted(async {
            if status == ProposalStatus::Pending {
                return Err(StoreError::Backend(format!(
                    "proposal {id} can only be settled as placed or rejected"
                ))
                .into());
            }
            let txn = self.chain.begin().await?;
            let settled = proposal::Entity::update_many()
                .set(proposal::ActiveModel {
                    status: Set(status.as_str().to_owned()),
                    order_id: Set(order.map(|o| o.to_string())),
                    decided_at: Set(Some(canonical_time(at))),
                    ..Default::default()
                })
                .filter(proposal::Column::Id.eq(id.to_string()))
                .filter(proposal::Column::Owner.eq(owner.to_string()))
                .filter(proposal::Column::Status.eq(ProposalStatus::Pending.as_str()))
                .exec(txn.conn())
                .await?;
            if settled.rows_affected != 1 {
                return Ok(false);
            }
            txn.commit_with(audit, self.clock.now()).await?;
            Ok(true)
        })
        .await
    }
}
