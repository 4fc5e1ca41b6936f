//! Anomaly cases and reviewers' decisions.

use std::collections::HashMap;

use async_trait::async_trait;
use domain::account::{Email, UserId};
use domain::audit::{AuditDraft, canonical_time};
use domain::ports::StoreError;
use domain::risk::Standing;
use domain::trading::{
    AnomalyCase, ApprovalState, CaseDecisionWrite, CaseFile, CaseId, CaseStatus, CaseStore,
    HoldKind, OrderStatus,
};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect,
};

use super::super::accounts::to_user;
use super::super::entities::{anomaly_case, order, user, user_trading};
use super::super::{DbResult, converted};
use super::rows::{hold_column, to_case, to_standing};
use super::{Fields, SqlTradingStore, all, put_state, standing_in};

const RELEASED_REASON: &str = "Released by a reviewer; sending";
const RELEASED_AWAITING_APPROVAL_REASON: &str = "Released by a reviewer. It still needs your approval with your security key or code before it is sent: approve it here.";
const CONFIRMED_REASON: &str = "Cancelled: the reviewer confirmed the anomaly";

impl SqlTradingStore {
    /// The cases with their subjects' and reviewers' accounts, the subjects' standing now and
    /// how many cases each subject has open, in three queries whatever the number of cases.
    async fn with_people(&self, cases: Vec<AnomalyCase>) -> DbResult<Vec<CaseFile>> {
        let subjects: Vec<String> = distinct(cases.iter().map(|c| c.subject));
        let people = distinct(
            cases
                .iter()
                .flat_map(|c| std::iter::once(c.subject).chain(c.decided_by)),
        );
        let emails: HashMap<UserId, Email> = user::Entity::find()
            .filter(user::Column::Id.is_in(people))
            .all(&self.db)
            .await?
            .iter()
            .map(to_user)
            .map(|u| u.map(|u| (u.id, u.email)))
            .collect::<DbResult<_>>()?;
        let standings: HashMap<String, Standing> = user_trading::Entity::find()
            .filter(user_trading::Column::UserId.is_in(subjects.clone()))
            .all(&self.db)
            .await?
            .iter()
            .map(|row| Ok((row.user_id.clone(), to_standing(row)?)))
            .collect::<DbResult<_>>()?;
        let open_cases = open_cases_by_subject(&self.db, Some(subjects)).await?;
        Ok(cases
            .into_iter()
            .map(|case| {
                let subject = case.subject.to_string();
                let open = open_cases.get(&subject).copied().unwrap_or(0);
                let this_one = u64::from(case.status == CaseStatus::Open);
                CaseFile {
                    subject_email: emails.get(&case.subject).cloned(),
                    reviewer_email: case.decided_by.and_then(|u| emails.get(&u).cloned()),
                    subject_standing: standings.get(&subject).copied().unwrap_or(Standing::ACTIVE),
                    other_open_cases: open.saturating_sub(this_one),
                    case,
                }
            })
            .collect())
    }
}

/// How many open cases each trader has (those in `subjects`, or everyone); traders with none
/// are absent.
pub(super) async fn open_cases_by_subject<C: ConnectionTrait>(
    conn: &C,
    subjects: Option<Vec<String>>,
) -> DbResult<HashMap<String, u64>> {
    let mut query = anomaly_case::Entity::find()
        .select_only()
        .column(anomaly_case::Column::Subject)
        .column_as(Expr::col(anomaly_case::Column::Id).count(), "open")
        .filter(anomaly_case::Column::Status.eq(CaseStatus::Open.as_str()));
    if let Some(subjects) = subjects {
        query = query.filter(anomaly_case::Column::Subject.is_in(subjects));
    }
    let open: Vec<(String, i64)> = query
        .group_by(anomaly_case::Column::Subject)
        .into_tuple()
        .all(conn)
        .await?;
    Ok(open
        .into_iter()
        .map(|(subject, n)| (subject, u64::try_from(n).unwrap_or(0)))
        .collect())
}

/// Sorted, deduplicated ids, for an `IN` list.
fn distinct(users: impl Iterator<Item = UserId>) -> Vec<String> {
    let mut ids: Vec<String> = users.map(|u| u.to_string()).collect();
    ids.sort();
    ids.dedup();
    ids
}

#[async_trait]
impl CaseStore for SqlTradingStore {
    async fn cases(
        &self,
        status: Option<CaseStatus>,
        limit: u64,
    ) -> Result<Vec<AnomalyCase>, StoreError> {
        converted(async {
            let mut query = anomaly_case::Entity::find();
            if let Some(status) = status {
                query = query.filter(anomaly_case::Column::Status.eq(status.as_str()));
            }
            let rows = query
                .order_by_desc(anomaly_case::Column::OpenedAtUs)
                .order_by_desc(anomaly_case::Column::Id)
                .limit(limit)
                .all(&self.db)
                .await?;
            all(&rows, to_case)
        })
        .await
    }

    async fn case(&self, id: CaseId) -> Result<Option<AnomalyCase>, StoreError> {
        converted(async {
            anomaly_case::Entity::find_by_id(id.to_string())
                .one(&self.db)
                .await?
                .as_ref()
                .map(to_case)
                .transpose()
        })
        .await
    }

    async fn open_cases_for(&self, user: UserId) -> Result<u64, StoreError> {
        converted(async {
            Ok(anomaly_case::Entity::find()
                .filter(anomaly_case::Column::Subject.eq(user.to_string()))
                .filter(anomaly_case::Column::Status.eq(CaseStatus::Open.as_str()))
                .count(&self.db)
                .await?)
        })
        .await
    }

    async fn decide_case(&self, write: CaseDecisionWrite) -> Result<bool, StoreError> {
        let CaseDecisionWrite {
            id,
            status,
            reviewer,
            note,
            at,
            audit,
        } = write;
        converted(async {
            if status == CaseStatus::Open {
                return Err(StoreError::Backend(format!(
                    "case {id} can only be decided as released or confirmed"
                ))
                .into());
            }
            let txn = self.chain.begin().await?;
            let decided = anomaly_case::Entity::update_many()
                .set(anomaly_case::ActiveModel {
                    status: Set(status.as_str().to_owned()),
                    decided_at: Set(Some(canonical_time(at))),
                    decided_by: Set(Some(reviewer.to_string())),
                    note: Set(Some(note)),
                    ..Default::default()
                })
                .filter(anomaly_case::Column::Id.eq(id.to_string()))
                .filter(anomaly_case::Column::Status.eq(CaseStatus::Open.as_str()))
                .exec(txn.conn())
                .await?;
            if decided.rows_affected != 1 {
                return Ok(false);
            }
            let subject: Option<String> = anomaly_case::Entity::find_by_id(id.to_string())
                .select_only()
                .column(anomaly_case::Column::Subject)
                .into_tuple()
                .one(txn.conn())
                .await?;
            let subject = subject.ok_or(StoreError::NotFound)?;
            let subject = Fields {
                table: "anomaly_cases",
                id: &id.to_string(),
            }
            .user(&subject, "subject")?;
            // This case is decided above, so any case still open is another one.
            let others_open = anomaly_case::Entity::find()
                .filter(anomaly_case::Column::Subject.eq(subject.to_string()))
                .filter(anomaly_case::Column::Status.eq(CaseStatus::Open.as_str()))
                .count(txn.conn())
                .await?
                > 0;
            let before = standing_in(txn.conn(), subject).await?;
            let after = status.standing_after(before, others_open);
            put_state(txn.conn(), subject, after.state, Some(after.settled), at).await?;
            let held = order::ActiveModel {
                updated_at: Set(canonical_time(at)),
                ..Default::default()
            };
            if status == CaseStatus::Released {
                // Released, but still without the step-up it needed: it waits for its owner.
                order::Entity::update_many()
                    .set(order::ActiveModel {
                        hold_kind: Set(hold_column(Some(HoldKind::Approval))),
                        status_reason: Set(Some(RELEASED_AWAITING_APPROVAL_REASON.to_owned())),
                        ..held.clone()
                    })
                    .filter(order::Column::CaseId.eq(id.to_string()))
                    .filter(order::Column::Status.eq(OrderStatus::Held.as_str()))
                    .filter(order::Column::HoldKind.eq(HoldKind::Review.as_str()))
                    .filter(order::Column::ApprovalState.eq(ApprovalState::Awaiting.as_str()))
                    .exec(txn.conn())
                    .await?;
            }
            let held = if status == CaseStatus::Released {
                order::ActiveModel {
                    hold_kind: Set(Some(HoldKind::Exchange.as_str().to_owned())),
                    status_reason: Set(Some(RELEASED_REASON.to_owned())),
                    ..held
                }
            } else {
                order::ActiveModel {
                    status: Set(OrderStatus::Cancelled.as_str().to_owned()),
                    hold_kind: Set(None),
                    status_reason: Set(Some(CONFIRMED_REASON.to_owned())),
                    ..held
                }
            };
            order::Entity::update_many()
                .set(held)
                .filter(order::Column::CaseId.eq(id.to_string()))
                .filter(order::Column::Status.eq(OrderStatus::Held.as_str()))
                .filter(order::Column::HoldKind.eq(HoldKind::Review.as_str()))
                .exec(txn.conn())
                .await?;
            let audit = audit.detail("state_after", after.state.as_str());
            txn.commit_with(audit, self.clock.now()).await?;
            Ok(true)
        })
        .await
    }

    async fn case_files(
        &self,
        status: Option<CaseStatus>,
        limit: u64,
    ) -> Result<Vec<CaseFile>, StoreError> {
        let cases = self.cases(status, limit).await?;
        converted(self.with_people(cases)).await
    }

    async fn case_file(&self, id: CaseId) -> Result<Option<CaseFile>, StoreError> {
        let Some(case) = self.case(id).await? else {
            return Ok(None);
        };
        let files = converted::<_, StoreError>(self.with_people(vec![case])).await?;
        Ok(files.into_iter().next())
    }

    async fn set_case_rationale(
        &self,
        id: CaseId,
        rationale: &str,
        audit: AuditDraft,
    ) -> Result<(), StoreError> {
        converted(async {
            let txn = self.chain.begin().await?;
            let updated = anomaly_case::Entity::update_many()
                .set(anomaly_case::ActiveModel {
                    rationale: Set(Some(rationale.to_owned())),
                    ..Default::default()
                })
                .filter(anomaly_case::Column::Id.eq(id.to_string()))
                .exec(txn.conn())
                .await?;
            if updated.rows_affected == 0 {
                return Err(StoreError::NotFound.into());
            }
            txn.commit_with(audit, self.clock.now()).await?;
            Ok(())
        })
        .await
    }
}
