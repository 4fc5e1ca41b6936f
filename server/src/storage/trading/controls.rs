//! Limits, the global kill switch, each trader's controls, the admin's overview of them, and
//! the IP blocklist.

use std::collections::HashMap;

use async_trait::async_trait;
use domain::account::UserId;
use domain::audit::{AuditDraft, canonical_time};
use domain::ports::StoreError;
use domain::risk::{LimitField, StateEvent, TradingState};
use domain::trading::{
    BlockedRange, BlockedRangeStore, CaseStatus, ControlStore, ControlsChange, ControlsOverview,
    OrderRecord, OrderRecordQuery, OrderStore, PaperAccount, RawLimits, ScreeningSettings,
    ScreeningStore, UserControls, UserRisk,
};
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict, Query, SelectStatement, UnionType};
use sea_orm::{ActiveValue::Set, ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder};
use uuid::Uuid;

use super::super::accounts::to_user;
use super::super::entities::{
    anomaly_case, ip_block, risk_limit, trading_setting, user, user_trading,
};
use super::super::sqlite_reader::rows;
use super::super::{DbResult, converted, tuples};
use super::cases::open_cases_by_subject;
use super::orders::{
    PaperRow, familiarity_query, history_of, history_query, paper_book_and_later_fills,
    paper_claims_query, usage_of, usage_query,
};
use super::rows::{ClaimRow, HistoryRow, UsageRow, to_blocked, to_claim, to_controls};
use super::{GLOBAL_SCOPE, KILL_SWITCH_KEY, SqlTradingStore, all, corrupt, micros, standing_in};

#[async_trait]
impl ControlStore for SqlTradingStore {
    async fn limits(&self, user: UserId) -> Result<(RawLimits, RawLimits), StoreError> {
        converted(async {
            let rows = risk_limit::Entity::find()
                .filter(
                    risk_limit::Column::Scope.is_in([GLOBAL_SCOPE.to_owned(), user.to_string()]),
                )
                .all(&self.db)
                .await?;
            let (mut global, mut own) = (RawLimits::new(), RawLimits::new());
            for row in rows {
                if row.scope == GLOBAL_SCOPE {
                    global.insert(row.field, row.value);
                } else {
                    own.insert(row.field, row.value);
                }
            }
            Ok((global, own))
        })
        .await
    }

    async fn set_limit(
        &self,
        user: Option<UserId>,
        field: &str,
        value: Option<&str>,
        audit: AuditDraft,
    ) -> Result<(), StoreError> {
        converted(async {
            let scope = user.map_or_else(|| GLOBAL_SCOPE.to_owned(), |u| u.to_string());
            let now = self.clock.now();
            let txn = self.chain.begin().await?;
            match value {
                Some(value) => {
                    risk_limit::Entity::insert(risk_limit::ActiveModel {
                        scope: Set(scope),
                        field: Set(field.to_owned()),
                        value: Set(value.to_owned()),
                        updated_at: Set(canonical_time(now)),
                    })
                    .on_conflict(
                        OnConflict::columns([risk_limit::Column::Scope, risk_limit::Column::Field])
                            .update_columns([
                                risk_limit::Column::Value,
                                risk_limit::Column::UpdatedAt,
                            ])
                            .to_owned(),
                    )
                    .exec_without_returning(txn.conn())
                    .await?;
                }
                None => {
                    risk_limit::Entity::delete_many()
                        .filter(risk_limit::Column::Scope.eq(scope))
                        .filter(risk_limit::Column::Field.eq(field))
                        .exec(txn.conn())
                        .await?;
                }
            }
            // Another admin setting or removing a user's own value lifts a hold on it.
            if let Some(user) = user
                && let Some((field, false)) = LimitField::from_user_key(field)
            {
                risk_limit::Entity::delete_many()
                    .filter(risk_limit::Column::Scope.eq(user.to_string()))
                    .filter(risk_limit::Column::Field.eq(field.held_key()))
                    .exec(txn.conn())
                    .await?;
            }
            txn.commit_with(audit, now).await?;
            Ok(())
        })
        .await
    }

    async fn global_kill_switch(&self) -> Result<bool, StoreError> {
        converted(async {
            let row = trading_setting::Entity::find_by_id(KILL_SWITCH_KEY.to_owned())
                .one(&self.db)
                .await?;
            Ok(kill_switch_value(row.as_ref().map(|r| r.value.as_str()))?)
        })
        .await
    }

    async fn set_global_kill_switch(&self, on: bool, audit: AuditDraft) -> Result<(), StoreError> {
        converted(async {
            let now = self.clock.now();
            let txn = self.chain.begin().await?;
            trading_setting::Entity::insert(trading_setting::ActiveModel {
                key: Set(KILL_SWITCH_KEY.to_owned()),
                value: Set(on.to_string()),
                updated_at: Set(canonical_time(now)),
            })
            .on_conflict(
                OnConflict::column(trading_setting::Column::Key)
                    .update_columns([
                        trading_setting::Column::Value,
                        trading_setting::Column::UpdatedAt,
                    ])
                    .to_owned(),
            )
            .exec_without_returning(txn.conn())
            .await?;
            txn.commit_with(audit, now).await?;
            Ok(())
        })
        .await
    }

    async fn controls(&self, user: UserId) -> Result<UserControls, StoreError> {
        converted(async {
            match user_trading::Entity::find_by_id(user.to_string())
                .one(&self.db)
                .await?
            {
                Some(row) => to_controls(&row),
                None => Ok(UserControls::default_for(user)),
            }
        })
        .await
    }

    async fn restricted_users(&self) -> Result<Vec<UserControls>, StoreError> {
        converted(async {
            let rows = user_trading::Entity::find()
                .filter(
                    Condition::any()
                        .add(user_trading::Column::State.ne(TradingState::Active.as_str()))
                        .add(user_trading::Column::KillSwitch.eq(true))
                        .add(user_trading::Column::Autonomous.eq(true)),
                )
                .order_by_asc(user_trading::Column::UserId)
                .all(&self.db)
                .await?;
            all(&rows, to_controls)
        })
        .await
    }

    async fn change_controls(
        &self,
        user: UserId,
        change: ControlsChange,
        audit: AuditDraft,
    ) -> Result<UserControls, StoreError> {
        converted(async {
            let now = self.clock.now();
            // Read and written under the chain lock, so concurrent changes cannot lose each other.
            let txn = self.chain.begin().await?;
            let mut controls = match user_trading::Entity::find_by_id(user.to_string())
                .one(txn.conn())
                .await?
            {
                Some(row) => to_controls(&row)?,
                None => UserControls::default_for(user),
            };
            // A state set by hand is also what stands once the trader's cases are decided.
            let mut standing = standing_in(txn.conn(), user).await?;
            if let Some(state) = change.state {
                standing = standing.after(StateEvent::AdminSet(state));
                controls.state = standing.state;
            }
            if let Some(kill_switch) = change.kill_switch {
                controls.kill_switch = kill_switch;
            }
            if let Some(autonomous) = change.autonomous {
                controls.autonomous = autonomous;
            }
            user_trading::Entity::insert(user_trading::ActiveModel {
                user_id: Set(user.to_string()),
                state: Set(controls.state.as_str().to_owned()),
                settled_state: Set(Some(standing.settled.as_str().to_owned())),
                kill_switch: Set(controls.kill_switch),
                autonomous: Set(controls.autonomous),
                updated_at: Set(canonical_time(now)),
            })
            .on_conflict(
                OnConflict::column(user_trading::Column::UserId)
                    .update_columns([
                        user_trading::Column::State,
                        user_trading::Column::SettledState,
                        user_trading::Column::KillSwitch,
                        user_trading::Column::Autonomous,
                        user_trading::Column::UpdatedAt,
                    ])
                    .to_owned(),
            )
            .exec_without_returning(txn.conn())
            .await?;
            txn.commit_with(audit, now).await?;
            Ok(controls)
        })
        .await
    }

    async fn controls_overview(&self) -> Result<ControlsOverview, StoreError> {
        let global_kill = self.global_kill_switch().await?;
        converted(async {
            let users = user::Entity::find()
                .order_by_asc(user::Column::CreatedAt)
                .all(&self.db)
                .await?;
            let controls: HashMap<UserId, UserControls> = all(
                &user_trading::Entity::find().all(&self.db).await?,
                to_controls,
            )?
            .into_iter()
            .map(|c| (c.user, c))
            .collect();
            let mut global_limits = RawLimits::new();
            let mut overrides: HashMap<String, RawLimits> = HashMap::new();
            for row in risk_limit::Entity::find().all(&self.db).await? {
                if row.scope == GLOBAL_SCOPE {
                    global_limits.insert(row.field, row.value);
                } else {
                    overrides
                        .entry(row.scope)
                        .or_default()
                        .insert(row.field, row.value);
                }
            }
            let open = open_cases_by_subject(&self.db, None).await?;
            let users = users
                .iter()
                .map(|row| {
                    let user = to_user(row)?;
                    Ok(UserRisk {
                        controls: controls
                            .get(&user.id)
                            .cloned()
                            .unwrap_or_else(|| UserControls::default_for(user.id)),
                        overrides: overrides.remove(&row.id).unwrap_or_default(),
                        open_cases: open.get(&row.id).copied().unwrap_or(0),
                        user,
                    })
                })
                .collect::<DbResult<_>>()?;
            Ok(ControlsOverview {
                global_kill,
                global_limits,
                users,
            })
        })
        .await
    }
}

/// The stored global kill switch; never set reads as off.
fn kill_switch_value(value: Option<&str>) -> Result<bool, StoreError> {
    match value {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(_) => Err(corrupt("trading_settings", KILL_SWITCH_KEY, "value")),
    }
}

#[async_trait]
impl ScreeningStore for SqlTradingStore {
    /// One statement: each branch of a `UNION ALL` reads one area as `(kind, a, b, c)` text rows,
    /// where five statements cost five hand-offs to the connection's thread per order.
    /// On SQLite, on the reader: every signed-in page's trading banner reads this, and a
    /// dozen rows through sqlx are a dozen hand-offs from its worker thread.
    async fn screening_settings(&self, user: UserId) -> Result<ScreeningSettings, StoreError> {
        if let Some(reader) = &self.reader {
            return reader
                .read(move |txn| {
                    let rows = rows(txn, &screening_settings_query(user), |row| {
                        SettingsRow::try_from(row)
                    })?;
                    Ok(screening_settings_of(user, rows)?)
                })
                .await;
        }
        converted(async {
            let rows = tuples(&self.db, &screening_settings_query(user)).await?;
            screening_settings_of(user, rows)
        })
        .await
    }

    /// On SQLite, with the paper account in one read transaction on the reader.
    async fn account_and_settings(
        &self,
        owner: UserId,
    ) -> Result<(PaperAccount, ScreeningSettings), StoreError> {
        let Some(reader) = &self.reader else {
            // Claims first: an order that fills between the two reads is then counted twice
            // (claimed and in the book), never not at all.
            let claims = self.paper_claims(owner).await?;
            let account = PaperAccount {
                portfolio: self.paper_portfolio(owner).await?,
                claims,
            };
            return Ok((account, self.screening_settings(owner).await?));
        };
        let owner_id = owner.to_string();
        let paper_query = paper_book_and_later_fills(&owner_id);
        let (paper_rows, claims, settings) = reader
            .read(move |txn| {
                let paper_rows = rows(txn, &paper_query, |row| PaperRow::try_from(row))?;
                let claim_rows = rows(txn, &paper_claims_query(owner), |row| {
                    ClaimRow::try_from(row)
                })?;
                let settings_rows = rows(txn, &screening_settings_query(owner), |row| {
                    SettingsRow::try_from(row)
                })?;
                Ok((
                    paper_rows,
                    all(&claim_rows, to_claim)?,
                    screening_settings_of(owner, settings_rows)?,
                ))
            })
            .await?;
        let portfolio =
            converted::<_, StoreError>(self.paper_account(&owner_id, paper_rows)).await?;
        Ok((PaperAccount { portfolio, claims }, settings))
    }

    /// On SQLite, the three reads in one read transaction on the reader.
    async fn order_record(&self, query: OrderRecordQuery<'_>) -> Result<OrderRecord, StoreError> {
        let Some(reader) = &self.reader else {
            return OrderRecord::read_one_by_one(self, query).await;
        };
        let (owner, windows) = (query.owner, query.windows);
        let usage_query = usage_query(owner, micros(windows.earliest()));
        let history_query = history_query(owner, query.history_len);
        let familiarity_query = familiarity_query(owner, query.ip, query.device);
        reader
            .read(move |txn| {
                let usage_rows = rows(txn, &usage_query, |row| UsageRow::try_from(row))?;
                let history_rows = rows(txn, &history_query, |row| HistoryRow::try_from(row))?;
                let familiar = rows(txn, &familiarity_query, |row| <(bool, bool)>::try_from(row))?;
                let (seen_ip, seen_device) = familiar
                    .first()
                    .copied()
                    .ok_or_else(|| StoreError::Backend("SELECT EXISTS returned no row".into()))?;
                Ok(OrderRecord {
                    usage: usage_of(owner, &usage_rows, windows, None)?,
                    history: history_of(history_rows)?,
                    seen_ip,
                    seen_device,
                })
            })
            .await
    }
}

/// `(kind, a, b, c)` rows: every limit (scope, field, value), the global kill switch, the
/// user's controls (state, kill switch, autonomous), every blocked range, and the count of the
/// user's open cases.
fn screening_settings_query(user: UserId) -> SelectStatement {
    let user_id = user.to_string();
    let flag =
        |column: user_trading::Column| Expr::case(Expr::col(column), "true").finally("false");
    let branch = |kind: &str, a: Expr, b: Expr, c: Expr| {
        Query::select()
            .expr_as(Expr::val(kind), "kind")
            .expr_as(a, "a")
            .expr_as(b, "b")
            .expr_as(c, "c")
            .to_owned()
    };
    let mut query = branch(
        LIMIT,
        Expr::col(risk_limit::Column::Scope),
        Expr::col(risk_limit::Column::Field),
        Expr::col(risk_limit::Column::Value),
    )
    .from(risk_limit::Entity)
    .and_where(risk_limit::Column::Scope.is_in([GLOBAL_SCOPE, user_id.as_str()]))
    .to_owned();
    query
        .union(
            UnionType::All,
            branch(
                KILL,
                Expr::col(trading_setting::Column::Value),
                Expr::val(""),
                Expr::val(""),
            )
            .from(trading_setting::Entity)
            .and_where(trading_setting::Column::Key.eq(KILL_SWITCH_KEY))
            .to_owned(),
        )
        .union(
            UnionType::All,
            branch(
                CONTROLS,
                Expr::col(user_trading::Column::State),
                flag(user_trading::Column::KillSwitch).into(),
                flag(user_trading::Column::Autonomous).into(),
            )
            .from(user_trading::Entity)
            .and_where(user_trading::Column::UserId.eq(user_id.as_str()))
            .to_owned(),
        )
        .union(
            UnionType::All,
            branch(
                BLOCK,
                Expr::col(ip_block::Column::Cidr),
                Expr::val(""),
                Expr::val(""),
            )
            .from(ip_block::Entity)
            .to_owned(),
        )
        .union(
            UnionType::All,
            branch(
                OPEN_CASES,
                Expr::col(anomaly_case::Column::Id).count().cast_as("TEXT"),
                Expr::val(""),
                Expr::val(""),
            )
            .from(anomaly_case::Entity)
            .and_where(anomaly_case::Column::Subject.eq(user_id.as_str()))
            .and_where(anomaly_case::Column::Status.eq(CaseStatus::Open.as_str()))
            .to_owned(),
        );
    query
}

fn screening_settings_of(user: UserId, rows: Vec<SettingsRow>) -> DbResult<ScreeningSettings> {
    let user_id = user.to_string();
    let mut settings = ScreeningSettings {
        global_limits: RawLimits::new(),
        own_limits: RawLimits::new(),
        global_kill: false,
        controls: UserControls::default_for(user),
        blocked_cidrs: Vec::new(),
        open_cases: 0,
    };
    for (kind, a, b, c) in rows {
        match kind.as_str() {
            LIMIT if a == GLOBAL_SCOPE => {
                settings.global_limits.insert(b, c);
            }
            LIMIT => {
                settings.own_limits.insert(b, c);
            }
            KILL => settings.global_kill = kill_switch_value(Some(&a))?,
            CONTROLS => {
                let bad = |what| corrupt("user_trading", &user_id, what);
                let flag = |value: &str, what| match value {
                    "true" => Ok(true),
                    "false" => Ok(false),
                    _ => Err(bad(what)),
                };
                settings.controls = UserControls {
                    user,
                    state: TradingState::parse(&a).ok_or_else(|| bad("state"))?,
                    kill_switch: flag(&b, "kill_switch")?,
                    autonomous: flag(&c, "autonomous")?,
                };
            }
            BLOCK => settings.blocked_cidrs.push(a),
            OPEN_CASES => {
                settings.open_cases = a
                    .parse()
                    .map_err(|_| StoreError::Backend(format!("open case count {a:?}")))?;
            }
            other => {
                return Err(
                    StoreError::Backend(format!("unexpected screening row {other:?}")).into(),
                );
            }
        }
    }
    Ok(settings)
}

/// `(kind, a, b, c)`, as [`screening_settings_query`] reads it.
type SettingsRow = (String, String, String, String);
const LIMIT: &str = "limit";
const KILL: &str = "kill";
const CONTROLS: &str = "controls";
const BLOCK: &str = "block";
const OPEN_CASES: &str = "open_cases";

#[async_trait]
impl BlockedRangeStore for SqlTradingStore {
    async fn blocklist(&self) -> Result<Vec<BlockedRange>, StoreError> {
        converted(async {
            let rows = ip_block::Entity::find().all(&self.db).await?;
            let mut ranges = all(&rows, to_blocked)?;
            // Canonical times do not sort as text; sort on the parsed times.
            ranges.sort_by(|a, b| (a.created_at, &a.cidr).cmp(&(b.created_at, &b.cidr)));
            Ok(ranges)
        })
        .await
    }

    async fn add_blocked_range(
        &self,
        range: &BlockedRange,
        audit: AuditDraft,
    ) -> Result<(), StoreError> {
        converted(async {
            let txn = self.chain.begin().await?;
            // A range already listed fails the UNIQUE constraint: `Conflict`.
            ip_block::Entity::insert(ip_block::ActiveModel {
                id: Set(range.id.to_string()),
                cidr: Set(range.cidr.clone()),
                note: Set(range.note.clone()),
                created_at: Set(canonical_time(range.created_at)),
            })
            .exec_without_returning(txn.conn())
            .await?;
            txn.commit_with(audit, self.clock.now()).await?;
            Ok(())
        })
        .await
    }

    async fn remove_blocked_range(&self, id: Uuid, audit: AuditDraft) -> Result<(), StoreError> {
        converted(async {
            let txn = self.chain.begin().await?;
            let deleted = ip_block::Entity::delete_many()
                .filter(ip_block::Column::Id.eq(id.to_string()))
                .exec(txn.conn())
                .await?;
            if deleted.rows_affected == 0 {
                return Err(StoreError::NotFound.into());
            }
            txn.commit_with(audit, self.clock.now()).await?;
            Ok(())
        })
        .await
    }
}
