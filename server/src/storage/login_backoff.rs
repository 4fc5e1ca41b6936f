//! Login back-off counts in the database: every app server sees the same failures, and a
//! restart does not hand an attacker a fresh set of guesses. Rows are keyed by a SHA-256 of the
//! throttle key, so the table holds no email address, not even one a stranger typed.
//!
//! Attempts under way count as failures until they end, so parallel guesses cannot all slip
//! through; those are kept in this process's memory. As rows, a crash would leave them counted
//! (a burst of sign-ins cut by a restart would back off everyone behind one address), and they
//! cannot tell a slow attempt from a dead one. Past its free failures a key admits one attempt
//! at a time across every app server: the attempt claims the key's row by moving its time.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use domain::account::BackoffPolicy;
use domain::ports::{Clock, LoginThrottle, StoreError};
use sea_orm::ConnectionTrait;
use sea_orm::sea_query::{Alias, Expr, ExprTrait, InsertStatement, OnConflict, Query};
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};

use super::audit::AuditChain;
use super::{DbResult, converted, from_micros, micros, tuples};

/// Failures quiet for this long are forgotten.
const FORGET_AFTER: Duration = Duration::hours(24);

#[derive(Debug, Clone)]
pub struct SqlLoginThrottle {
    chain: AuditChain,
    clock: Arc<dyn Clock>,
    account_policy: BackoffPolicy,
    ip_policy: BackoffPolicy,
    /// Attempts under way in this process, per key hash.
    in_flight: Arc<Mutex<HashMap<String, InFlight>>>,
    /// Attempts ended so far: an attempt that ended while `begin` read the stored counts may be
    /// in neither what it read nor what is under way, so `begin` reads again.
    ended: Arc<AtomicU64>,
}

#[derive(Debug, Clone, Copy)]
struct InFlight {
    count: u32,
    /// The latest start among them: a wait they cause counts from it.
    last_begun: OffsetDateTime,
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

fn hashes(keys: &[HashedKey]) -> impl Iterator<Item = String> + '_ {
    keys.iter().map(|key| key.hash.clone())
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
            in_flight: Arc::default(),
            ended: Arc::default(),
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
        hashed.sort_by(|a, b| a.hash.cmp(&b.hash));
        hashed.dedup_by(|a, b| a.hash == b.hash);
        hashed
    }

    fn attempts_under_way(&self) -> std::sync::MutexGuard<'_, HashMap<String, InFlight>> {
        self.in_flight
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Ends attempts under way for `keys` in this process.
    fn end_attempt(&self, keys: &[HashedKey]) {
        let mut under_way = self.attempts_under_way();
        for key in keys {
            if let Some(entry) = under_way.get_mut(&key.hash) {
                entry.count = entry.count.saturating_sub(1);
                if entry.count == 0 {
                    under_way.remove(&key.hash);
                }
            }
        }
        self.ended.fetch_add(1, Ordering::SeqCst);
    }

    /// Claims the turn of each `(key hash, time read)` by moving the row's time on, in one
    /// writer's turn: false (and nothing written) if another attempt moved one first.
    async fn claim(&self, claims: &[(String, i64)], now: OffsetDateTime) -> DbResult<bool> {
        let txn = self.chain.begin().await?;
        for (hash, seen) in claims {
            let moved = txn
                .conn()
                .execute(
                    &Query::update()
                        .table(table())
                        // Always a new value, or a second claim of the same read would match.
                        .value(Alias::new("last_us"), Ord::max(micros(now), seen + 1))
                        .and_where(column("key_hash").eq(hash.as_str()))
                        .and_where(column("last_us").eq(*seen))
                        .take(),
                )
                .await?
                .rows_affected();
            if moved != 1 {
                // Dropping the turn rolls back the claims made so far.
                return Ok(false);
            }
        }
        txn.commit_unaudited().await?;
        Ok(true)
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

    /// Counts one failure for each key; a count quiet for a day starts over.
    async fn count_failure(&self, keys: &[HashedKey], now: OffsetDateTime) -> DbResult<()> {
        let txn = self.chain.begin().await?;
        for key in keys {
            txn.conn()
                .execute(&count_failure(
                    &key.hash,
                    micros(now),
                    micros(now - FORGET_AFTER),
                ))
                .await?;
        }
        txn.commit_unaudited().await
    }

    /// Clears the failures of the accounts among `keys` (an address keeps its count).
    async fn clear_accounts(&self, keys: &[HashedKey]) -> DbResult<()> {
        let accounts: Vec<String> = keys
            .iter()
            .filter(|key| !key.is_address)
            .map(|key| key.hash.clone())
            .collect();
        if accounts.is_empty() {
            return Ok(());
        }
        let txn = self.chain.begin().await?;
        txn.conn()
            .execute(
                &Query::delete()
                    .from_table(table())
                    .and_where(column("key_hash").is_in(accounts))
                    .take(),
            )
            .await?;
        txn.commit_unaudited().await
    }
}

fn count_failure(key_hash: &str, now_us: i64, stale_us: i64) -> InsertStatement {
    Query::insert()
        .into_table(table())
        .columns(["key_hash", "failures", "last_us"].map(Alias::new))
        .values_panic([key_hash.into(), 1i64.into(), now_us.into()])
        .on_conflict(
            OnConflict::column(Alias::new("key_hash"))
                .value(
                    Alias::new("failures"),
                    Expr::case(column("last_us").lt(stale_us), 1i64)
                        .finally(column("failures").add(1i64)),
                )
                .value(Alias::new("last_us"), now_us)
                .to_owned(),
        )
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
        // Rarely more than once: only when an attempt ends during the read.
        for _ in 0..100 {
            let ended_before = self.ended.load(Ordering::SeqCst);
            let stored: Vec<(String, i64, i64)> = converted::<_, StoreError>(tuples(
                self.chain.db(),
                &Query::select()
                    .columns(["key_hash", "failures", "last_us"].map(Alias::new))
                    .from(table())
                    .and_where(column("key_hash").is_in(hashes(&keys)))
                    .and_where(column("last_us").gte(micros(now - FORGET_AFTER)))
                    .take(),
            ))
            .await?;
            let claims = {
                // Judged and counted under one lock: of any number of parallel attempts each
                // sees the ones before it, so only the free ones run at once.
                let mut under_way = self.attempts_under_way();
                if self.ended.load(Ordering::SeqCst) != ended_before {
                    continue;
                }
                let mut longest = Duration::ZERO;
                let mut claims = Vec::new();
                for key in &keys {
                    let row = stored.iter().find(|(hash, ..)| *hash == key.hash);
                    let failures = row.map_or(0, |(_, failures, _)| {
                        u32::try_from(Ord::max(*failures, 0)).unwrap_or(u32::MAX)
                    });
                    let begun = under_way.get(&key.hash);
                    let wait = key
                        .policy
                        .wait_after(failures.saturating_add(begun.map_or(0, |b| b.count)));
                    // The wait counts from the latest failure or start. That can be a moment
                    // after `now`: a parallel attempt that read the clock later got here
                    // first. Within the free failures there is no wait at all.
                    if wait > Duration::ZERO {
                        let from = row
                            .and_then(|(_, _, last_us)| from_micros(*last_us))
                            .into_iter()
                            .chain(begun.map(|b| b.last_begun))
                            .max()
                            .unwrap_or(now);
                        longest = Ord::max(longest, from + wait - now);
                    }
                    if let Some((hash, _, last_us)) = row
                        && failures >= key.policy.free_failures
                    {
                        claims.push((hash.clone(), *last_us));
                    }
                }
                if longest > Duration::ZERO {
                    return Ok(Err(whole_seconds_up(longest)));
                }
                for key in &keys {
                    let entry = under_way.entry(key.hash.clone()).or_insert(InFlight {
                        count: 0,
                        last_begun: now,
                    });
                    entry.count = entry.count.saturating_add(1);
                    entry.last_begun = Ord::max(entry.last_begun, now);
                }
                claims
            };
            if claims.is_empty() {
                return Ok(Ok(()));
            }
            // Past the free failures, each app server would otherwise let one attempt through
            // when the wait ends: only the one that moves the row's time goes ahead.
            let claimed = self.claim(&claims, now).await;
            if !matches!(claimed, Ok(true)) {
                self.end_attempt(&keys);
            }
            return match claimed {
                Ok(true) => Ok(Ok(())),
                Ok(false) => Ok(Err(1)),
                Err(e) => Err(e.into()),
            };
        }
        // Attempts kept ending during every read: refused rather than judged on a guess.
        Ok(Err(1))
    }

    async fn finish(&self, keys: &[String], succeeded: bool, now: OffsetDateTime) {
        if keys.is_empty() {
            return;
        }
        let keys = self.hashed(keys);
        let stored = if succeeded {
            self.clear_accounts(&keys).await
        } else {
            self.count_failure(&keys, now).await
        };
        match stored {
            // Only now: until the outcome is stored, the attempt still counts (as a failure).
            Ok(()) => self.end_attempt(&keys),
            Err(e) => {
                // A failure that could not be stored stays counted here, under way, until this
                // process ends; a success that could not clear the count leaves it, which only
                // errs on the safe side.
                if succeeded {
                    self.end_attempt(&keys);
                }
                tracing::warn!(error = %e, succeeded, "could not store a login attempt's outcome");
            }
        }
    }
}

/// `duration` in whole seconds, rounded up (a Retry-After never says 0 for a wait).
fn whole_seconds_up(duration: Duration) -> u64 {
    Ord::max(duration.whole_seconds(), 0) as u64 + u64::from(duration.subsec_nanoseconds() > 0)
}
