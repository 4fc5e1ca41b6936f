//! Trading in the database, one file per port: `controls` (limits, controls, the IP
//! blocklist, the admin's overview), `orders`, `cases`, `agents`; `rows` converts rows to
//! domain types and back.
//!
//! Every audited write runs in an [`AuditedTxn`]: the chain lock it takes first serialises the
//! writes, and the conditional updates re-check their condition after it, so of two concurrent
//! claims of an order, decisions on a case or sign-offs of a proposal exactly one matches a row.
//! A write whose condition fails returns before committing, and dropping the transaction rolls
//! it back, so nothing (not even the audit event) lands.
//!
//! Amounts are stored as normalised decimal text and added up in Rust, never in SQL. Times are
//! canonical text; where SQL filters or sorts by a time, the row carries the same instant as
//! unix microseconds (`*_at_us`).

mod agents;
mod cases;
mod controls;
mod orders;
mod rows;

use std::str::FromStr;
use std::sync::Arc;

use domain::account::UserId;
use domain::audit::{canonical_time, parse_canonical_time};
use domain::order::{OrderSide, OrderType};
use domain::ports::{Clock, StoreError};
use domain::risk::{Standing, TradingState};
use domain::trading::UserControls;
use rust_decimal::Decimal;
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveValue::{NotSet, Set},
    ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, EntityTrait,
};
use time::OffsetDateTime;
use uuid::Uuid;

use super::audit::AuditChain;
use super::entities::{order, user_trading};
use super::sqlite_reader::{ReaderShape, SqliteReader};
use super::{DbResult, micros};

/// The `risk_limits.scope` of the global limits; per-user limits use the user's id.
const GLOBAL_SCOPE: &str = "global";
const KILL_SWITCH_KEY: &str = "kill_switch";

#[derive(Debug, Clone)]
pub struct SqlTradingStore {
    db: DatabaseConnection,
    chain: AuditChain,
    clock: Arc<dyn Clock>,
    /// SQLite only: the screening reads, in one hand-off (see [`SqliteReader`]).
    reader: Option<Arc<SqliteReader>>,
}

impl SqlTradingStore {
    pub fn new(chain: impl Into<AuditChain>, clock: Arc<dyn Clock>) -> Self {
        let chain = chain.into();
        Self {
            db: chain.db().clone(),
            reader: SqliteReader::of(chain.db(), ReaderShape::SCREENING),
            chain,
            clock,
        }
    }
}

fn corrupt(table: &str, id: &str, what: &str) -> StoreError {
    StoreError::Backend(format!("{table} row {id} has an invalid {what}"))
}

/// The stored form of an amount: normalised, so equal amounts are equal text.
fn amount(value: Decimal) -> String {
    value.normalize().to_string()
}

fn json<T: serde::Serialize>(value: &T, what: &str) -> Result<String, StoreError> {
    serde_json::to_string(value)
        .map_err(|e| StoreError::Backend(format!("cannot encode the {what}: {e}")))
}

/// Reads one row's fields, naming the row in every error.
struct Fields<'a> {
    table: &'static str,
    id: &'a str,
}

impl Fields<'_> {
    fn bad(&self, what: &str) -> StoreError {
        corrupt(self.table, self.id, what)
    }

    fn uuid(&self, raw: &str, what: &str) -> Result<Uuid, StoreError> {
        Uuid::parse_str(raw).map_err(|_| self.bad(what))
    }

    fn user(&self, raw: &str, what: &str) -> Result<UserId, StoreError> {
        self.uuid(raw, what).map(UserId)
    }

    fn time(&self, raw: &str, what: &str) -> Result<OffsetDateTime, StoreError> {
        parse_canonical_time(raw).ok_or_else(|| self.bad(what))
    }

    fn opt_time(
        &self,
        raw: &Option<String>,
        what: &str,
    ) -> Result<Option<OffsetDateTime>, StoreError> {
        raw.as_deref().map(|t| self.time(t, what)).transpose()
    }

    fn decimal(&self, raw: &str, what: &str) -> Result<Decimal, StoreError> {
        Decimal::from_str(raw).map_err(|_| self.bad(what))
    }

    fn opt_decimal(&self, raw: &Option<String>, what: &str) -> Result<Option<Decimal>, StoreError> {
        raw.as_deref().map(|d| self.decimal(d, what)).transpose()
    }

    fn side(&self, raw: &str) -> Result<OrderSide, StoreError> {
        OrderSide::parse(raw).ok_or_else(|| self.bad("side"))
    }

    fn order_type(&self, raw: &str) -> Result<OrderType, StoreError> {
        OrderType::parse(raw).ok_or_else(|| self.bad("order type"))
    }

    fn json<T: serde::de::DeserializeOwned>(&self, raw: &str, what: &str) -> Result<T, StoreError> {
        serde_json::from_str(raw).map_err(|_| self.bad(what))
    }
}

fn all<T, R>(rows: &[R], convert: impl Fn(&R) -> DbResult<T>) -> DbResult<Vec<T>> {
    rows.iter().map(convert).collect()
}

/// Sets a user's trading state inside `conn`, creating their controls row (with the other
/// controls at their defaults) if they have none. With `settled`, also what stands once no case
/// holds them (`risk::Standing`); without, that is left as it is (an anomaly's quarantine is
/// not what stands after the case).
async fn put_state<C: ConnectionTrait>(
    conn: &C,
    user: UserId,
    state: TradingState,
    settled: Option<TradingState>,
    at: OffsetDateTime,
) -> DbResult<()> {
    let defaults = UserControls::default_for(user);
    let mut changed = vec![user_trading::Column::State, user_trading::Column::UpdatedAt];
    if settled.is_some() {
        changed.push(user_trading::Column::SettledState);
    }
    user_trading::Entity::insert(user_trading::ActiveModel {
        user_id: Set(user.to_string()),
        state: Set(state.as_str().to_owned()),
        settled_state: settled.map_or(NotSet, |settled| Set(Some(settled.as_str().to_owned()))),
        kill_switch: Set(defaults.kill_switch),
        autonomous: Set(defaults.autonomous),
        updated_at: Set(canonical_time(at)),
    })
    .on_conflict(
        OnConflict::column(user_trading::Column::UserId)
            .update_columns(changed)
            .to_owned(),
    )
    .exec_without_returning(conn)
    .await?;
    Ok(())
}

/// A trader's standing as stored, read inside the write that changes it (under the chain lock,
/// so a concurrent decision or an admin's change cannot be lost in between).
async fn standing_in<C: ConnectionTrait>(conn: &C, user: UserId) -> DbResult<Standing> {
    user_trading::Entity::find_by_id(user.to_string())
        .one(conn)
        .await?
        .as_ref()
        .map_or(Ok(Standing::ACTIVE), rows::to_standing)
}

fn owned_by(owner: UserId) -> Condition {
    Condition::all().add(order::Column::Owner.eq(owner.to_string()))
}
