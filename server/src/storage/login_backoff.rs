//! Login back-off counts in the database: every app server sees the same counts, and a restart
//! does not hand an attacker a fresh set of guesses. Rows are keyed by a SHA-256 of the throttle
//! key, so the table holds no email address, not even one a stranger typed.

use std::sync::Arc;

use async_trait::async_trait;
use domain::account::BackoffPolicy;
use domain::ports::{Clock, LoginThrottle, StoreError};
use sea_orm::ConnectionTrait;
use sea_orm::sea_query::{
    Alias, Expr, ExprTrait, InsertStatement, OnConflict, Query, UpdateStatement,
};
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};

use super::audit::AuditChain;
use super::{DbResult, converted, from_micros, micros, tuples};

/// Counts quiet for this long are forgotten, an attempt a crash left in flight included.
const FORGET_AFTER: Duration = Duration::hours(24);

#[derive(Debug, Clone)]
pub struct SqlLoginThrottle {
    chain: AuditChain,
    clock: Arc<dyn Clock>,
    account_policy: BackoffPolicy,
    ip_policy: BackoffPolicy,
}

/// One key of an attempt, as stored.
struct HashedKey {
    hash: String,
    policy: BackoffPolicy,
    is_address: bool,
}

fn table() -> Alias {
    Alias::new("login_backoff")
}

fn column(name: &'static str) -> Expr {
    Expr::col((table(), Alias::new(name)))
}

impl SqlLoginThrottle {
    pub fn new(
        chain: AuditChain,
        clock: Arc<dyn Clock>,
        account_policy: BackoffPolicy,
        ip_policy: BackoffPolicy,
    ) -> Self {
        Self {
            chain,
            clock,
            account_policy,
            ip_policy,
        }
    }

    fn hashed(&self, keys: &[String]) -> Vec<HashedKey> {
        let mut hashed: Vec<HashedKey> = keys
            .iter()
            .map(|key| {
                let is_address = key.starts_with("ip:");
                HashedKey {
                    hash: hex::encode(Sha256::digest(key.as_bytes())),
                    policy: if is_address {
                        self.ip_policy
                    } else {
                        self.account_policy
                    },
                    is_address,
                }
            })
            .collect();
        // Rows are always taken in one order, so two attempts never wait on each other's.
        hashed.sort_by(|a, b| a.hash.cmp(&b.hash));
        hashed.dedup_by(|a, b| a.hash == b.hash);
        hashed
    }

    /// Deletes the counts quiet for a day (housekeeping).
    pub async fn forget_stale(&self) -> Result<u64, StoreError> {
        let now = self.clock.now();
        converted(async {
            let txn = self.chain.begin().await?;
            let deleted = txn
                .conn()
                .execute(
                    &Query::delete()
                        .from_table(table())
                        .and_where(column("last_us").lt(micros(now - FORGET_AFTER)))
                        .take(),
                )
                .await?
                .rows_affected();
            txn.commit_unaudited().await?;
            Ok(deleted)
        })
        .await
    }
}

/// Counts one more attempt in flight for `key_hash`; a count quiet for a day starts over.
/// `waited_from_us` keeps the previous `last_us`: the time this attempt's wait counts from.
fn count_in_flight(key_hash: &str, now_us: i64, stale_us: i64) -> InsertStatement {
    let stale = || column("last_us").lt(stale_us);
    Query::insert()
        .into_table(table())
        .columns(
            [
                "key_hash",
                "failures",
                "in_flight",
                "last_us",
                "waited_from_us",
            ]
            .map(Alias::new),
        )
        .values_panic([
            key_hash.into(),
            0i64.into(),
            1i64.into(),
            now_us.into(),
            now_us.into(),
        ])
        .on_conflict(
            OnConflict::column(Alias::new("key_hash"))
                .value(
                    Alias::new("failures"),
                    Expr::case(stale(), 0i64).finally(column("failures")),
                )
                .value(
                    Alias::new("in_flight"),
                    Expr::case(stale(), 1i64).finally(column("in_flight").add(1i64)),
                )
                .value(Alias::new("waited_from_us"), column("last_us"))
                .value(
                    Alias::new("last_us"),
                    Expr::case(column("last_us").gt(now_us), column("last_us")).finally(now_us),
                )
                .to_owned(),
        )
        .take()
}

/// Ends one attempt for `key_hash`: a failure is counted; a success clears an account's count.
fn settle(key: &HashedKey, succeeded: bool, now_us: i64) -> UpdateStatement {
    let mut update = Query::update();
    update.table(table()).value(
        Alias::new("in_flight"),
        Expr::case(column("in_flight").gt(0i64), column("in_flight").sub(1i64)).finally(0i64),
    );
    if !succeeded {
        update
            .value(Alias::new("failures"), column("failures").add(1i64))
            .value(Alias::new("last_us"), now_us);
    } else if !key.is_address {
        update.value(Alias::new("failures"), 0i64);
    }
    update
        .and_where(column("key_hash").eq(key.hash.as_str()))
        .take()
}

#[async_trait]
impl LoginThrottle for SqlLoginThrottle {
    async fn begin(
        &self,
        keys: &[String],
        now: OffsetDateTime,
    ) -> Result<Result<(), u64>, StoreError> {
        if keys.is_empty() {
            return Ok(Ok(()));
        }
        let keys = self.hashed(keys);
        converted(async {
            let now_us = micros(now);
            // Counted first, then judged, in one writer's turn: of any number of parallel
            // attempts each sees the ones before it, so only the free ones run at once.
            let txn = self.chain.begin().await?;
            for key in &keys {
                txn.conn()
                    .execute(&count_in_flight(
                        &key.hash,
                        now_us,
                        micros(now - FORGET_AFTER),
                    ))
                    .await?;
            }
            let rows: Vec<(String, i64, i64, i64)> = tuples(
                txn.conn(),
                &Query::select()
                    .columns(
                        ["key_hash", "failures", "in_flight", "waited_from_us"].map(Alias::new),
                    )
                    .from(table())
                    .and_where(column("key_hash").is_in(keys.iter().map(|key| key.hash.clone())))
                    .take(),
            )
            .await?;
            let mut longest = Duration::ZERO;
            for (hash, failures, in_flight, waited_from_us) in rows {
                let Some(key) = keys.iter().find(|key| key.hash == hash) else {
                    continue;
                };
                // Failures and the other attempts in flight; this one is not judged by itself.
                let before = failures.saturating_add(in_flight).saturating_sub(1);
                let wait = key
                    .policy
                    .wait_after(u32::try_from(Ord::max(before, 0)).unwrap_or(u32::MAX));
                // `waited_from` can be a moment after `now`: a parallel attempt that read the
                // clock later got its turn first. Within the free failures there is no wait.
                if wait > Duration::ZERO {
                    let from = from_micros(waited_from_us).unwrap_or(now);
                    longest = Ord::max(longest, from + wait - now);
                }
            }
            if longest > Duration::ZERO {
                // Dropping the turn rolls it back: a refused attempt is not counted.
                drop(txn);
                return Ok(Err(Ord::max(longest.whole_seconds(), 0) as u64
                    + u64::from(longest.subsec_nanoseconds() > 0)));
            }
            txn.commit_unaudited().await?;
            Ok(Ok(()))
        })
        .await
    }

    async fn finish(&self, keys: &[String], succeeded: bool, now: OffsetDateTime) {
        if keys.is_empty() {
            return;
        }
        let keys = self.hashed(keys);
        let settled: DbResult<()> = async {
            let now_us = micros(now);
            let txn = self.chain.begin().await?;
            for key in &keys {
                txn.conn().execute(&settle(key, succeeded, now_us)).await?;
            }
            // Nothing left to remember: no failures and nothing in flight.
            txn.conn()
                .execute(
                    &Query::delete()
                        .from_table(table())
                        .and_where(
                            column("key_hash").is_in(keys.iter().map(|key| key.hash.clone())),
                        )
                        .and_where(column("failures").eq(0i64))
                        .and_where(column("in_flight").eq(0i64))
                        .take(),
                )
                .await?;
            txn.commit_unaudited().await
        }
        .await;
        if let Err(e) = settled {
            // The attempt stays counted as in flight, which counts as a failure: fail-safe.
            tracing::warn!(error = %e, succeeded, "could not store a login attempt's outcome");
        }
    }
}
