//! Login back-off counts in the database: every app server sees the same failures, and a
//! restart does not hand an attacker a fresh set of guesses. Rows are keyed by a SHA-256 of the
//! throttle key, so the table holds no email address, not even one a stranger typed.
//!
//! Attempts under way count as failures until they end, so parallel guesses cannot all slip
//! through; those are kept in this process's memory. As rows, a crash would leave them counted
//! (a burst of sign-ins cut by a restart would back off everyone behind one address), and they
//! cannot tell a slow attempt from a dead one. Past its free failures a key admits one attempt
//! at a time across every app server: the attempt claims the key's row (`claimed_us`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

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
/// How long a failure just stored is also counted from memory: a read of the stored counts that
/// began before it was stored may have missed it (no read takes this long).
const JUST_STORED: std::time::Duration = std::time::Duration::from_secs(60);
/// Past this many keys in memory, those with nothing left to count are dropped.
const MAX_LOCAL_KEYS: usize = 10_000;

#[derive(Debug, Clone)]
pub struct SqlLoginThrottle {
    chain: AuditChain,
    clock: Arc<dyn Clock>,
    account_policy: BackoffPolicy,
    ip_policy: BackoffPolicy,
    /// What this process counts beside the table, per key hash.
    local: Arc<Mutex<HashMap<String, Local>>>,
}

/// A key's attempts as this process knows them, beside its row.
#[derive(Debug, Clone, Default)]
struct Local {
    /// Attempts under way.
    under_way: u32,
    /// The latest start among them: a wait they cause counts from it.
    last_begun: Option<OffsetDateTime>,
    /// Failures stored lately: when the store finished, and when the failure was.
    just_stored: Vec<(Instant, OffsetDateTime)>,
    /// Failures that could not be stored (the database refused the write), and the latest.
    unstored: u32,
    last_unstored: Option<OffsetDateTime>,
}

impl Local {
    /// What this process adds to the stored failures, for a read of them begun at `read_at`,
    /// and the latest time among it.
    fn counted(&self, read_at: Instant, now: OffsetDateTime) -> (u32, Option<OffsetDateTime>) {
        let missed: Vec<OffsetDateTime> = self
            .just_stored
            .iter()
            .filter(|(stored_at, _)| *stored_at >= read_at)
            .map(|(_, failed_at)| *failed_at)
            .collect();
        let unstored = self
            .last_unstored
            .filter(|last| *last >= now - FORGET_AFTER)
            .map_or(0, |_| self.unstored);
        let count = self
            .under_way
            .saturating_add(u32::try_from(missed.len()).unwrap_or(u32::MAX))
            .saturating_add(unstored);
        let latest = missed
            .into_iter()
            .chain(self.last_begun.filter(|_| self.under_way > 0))
            .chain(self.last_unstored.filter(|_| unstored > 0))
            .max();
        (count, latest)
    }

    fn forget_old(&mut self, now: OffsetDateTime) {
        self.just_stored
            .retain(|(stored_at, _)| stored_at.elapsed() < JUST_STORED);
        if self
            .last_unstored
            .is_some_and(|last| last < now - FORGET_AFTER)
        {
            self.unstored = 0;
            self.last_unstored = None;
        }
    }

    fn is_empty(&self) -> bool {
        self.under_way == 0 && self.just_stored.is_empty() && self.unstored == 0
    }
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
            local: Arc::default(),
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

    fn local(&self) -> std::sync::MutexGuard<'_, HashMap<String, Local>> {
        self.local
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Ends an attempt under way for `keys` in this process, with how its outcome was stored.
    fn end_attempt(&self, keys: &[HashedKey], outcome: Ended, now: OffsetDateTime) {
        let mut local = self.local();
        for key in keys {
            let Some(entry) = local.get_mut(&key.hash) else {
                continue;
            };
            entry.under_way = entry.under_way.saturating_sub(1);
            match outcome {
                Ended::NotRun => {}
                Ended::FailureStored => entry.just_stored.push((Instant::now(), now)),
                Ended::FailureNotStored => {
                    entry.unstored = entry.unstored.saturating_add(1);
                    entry.last_unstored = Some(now);
                }
                Ended::Succeeded if !key.is_address => {
                    entry.unstored = 0;
                    entry.last_unstored = None;
                }
                Ended::Succeeded => {}
            }
            entry.forget_old(now);
            if entry.is_empty() {
                local.remove(&key.hash);
            }
        }
    }

    /// Claims the turn of each `(key hash, claim read)` by moving the row's `claimed_us` on, in
    /// one writer's turn: false (and nothing written) if another attempt moved one first. The
    /// failure time stays as it is, so a claim never keeps a count from being forgotten.
    async fn claim(&self, claims: &[(String, i64)], now: OffsetDateTime) -> DbResult<bool> {
        let txn = self.chain.begin().await?;
        for (hash, seen) in claims {
            let moved = txn
                .conn()
                .execute(
                    &Query::update()
                        .table(table())
                        // Always a new value, or a second claim of the same read would match.
                        .value(Alias::new("claimed_us"), Ord::max(micros(now), seen + 1))
                        .and_where(column("key_hash").eq(hash.as_str()))
                        .and_where(column("claimed_us").eq(*seen))
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
        .columns(["key_hash", "failures", "last_us", "claimed_us"].map(Alias::new))
        .values_panic([key_hash.into(), 1i64.into(), now_us.into(), 0i64.into()])
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
        let read_at = Instant::now();
        let stored: Vec<(String, i64, i64, i64)> = converted::<_, StoreError>(tuples(
            self.chain.db(),
            &Query::select()
                .columns(["key_hash", "failures", "last_us", "claimed_us"].map(Alias::new))
                .from(table())
                .and_where(column("key_hash").is_in(hashes(&keys)))
                .and_where(column("last_us").gte(micros(now - FORGET_AFTER)))
                .take(),
        ))
        .await?;
        let claims = {
            // Judged and counted under one lock: of any number of parallel attempts each sees
            // the ones before it, so only the free ones run at once.
            let mut local = self.local();
            let mut longest = Duration::ZERO;
            let mut claims = Vec::new();
            for key in &keys {
                let row = stored.iter().find(|(hash, ..)| *hash == key.hash);
                let failures = row.map_or(0, |(_, failures, ..)| {
                    u32::try_from(Ord::max(*failures, 0)).unwrap_or(u32::MAX)
                });
                let (here, here_latest) = local
                    .get(&key.hash)
                    .map_or((0, None), |entry| entry.counted(read_at, now));
                let wait = key.policy.wait_after(failures.saturating_add(here));
                // The wait counts from the latest failure, claim or start. That can be a moment
                // after `now`: a parallel attempt that read the clock later got here first.
                // Within the free failures there is no wait at all.
                if wait > Duration::ZERO {
                    let from = row
                        .into_iter()
                        .flat_map(|(_, _, last_us, claimed_us)| [*last_us, *claimed_us])
                        .filter_map(from_micros)
                        .chain(here_latest)
                        .max()
                        .unwrap_or(now);
                    longest = Ord::max(longest, from + wait - now);
                }
                if let Some((hash, _, _, claimed_us)) = row
                    && failures >= key.policy.free_failures
                {
                    claims.push((hash.clone(), *claimed_us));
                }
            }
            if longest > Duration::ZERO {
                return Ok(Err(whole_seconds_up(longest)));
            }
            if local.len() > MAX_LOCAL_KEYS {
                local.retain(|_, entry| {
                    entry.forget_old(now);
                    !entry.is_empty()
                });
            }
            for key in &keys {
                let entry = local.entry(key.hash.clone()).or_default();
                entry.under_way = entry.under_way.saturating_add(1);
                entry.last_begun = Some(entry.last_begun.map_or(now, |last| Ord::max(last, now)));
            }
            claims
        };
        if claims.is_empty() {
            return Ok(Ok(()));
        }
        // Past the free failures, each app server would otherwise let one attempt through when
        // the wait ends: only the one that moves the row's claim goes ahead.
        let claimed = self.claim(&claims, now).await;
        if !matches!(claimed, Ok(true)) {
            self.end_attempt(&keys, Ended::NotRun, now);
        }
        match claimed {
            Ok(true) => Ok(Ok(())),
            Ok(false) => Ok(Err(1)),
            Err(e) => Err(e.into()),
        }
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
        // Only now: until the outcome is stored, the attempt still counts (as a failure).
        let ended = match (&stored, succeeded) {
            (_, true) => Ended::Succeeded,
            (Ok(()), false) => Ended::FailureStored,
            (Err(_), false) => Ended::FailureNotStored,
        };
        self.end_attempt(&keys, ended, now);
        if let Err(e) = stored {
            // A failure that could not be stored stays counted here, for a day; a success that
            // could not clear the stored count leaves it, which only errs on the safe side.
            tracing::warn!(error = %e, succeeded, "could not store a login attempt's outcome");
        }
    }
}

/// How an attempt under way ended, as far as this process's own count goes.
#[derive(Debug, Clone, Copy)]
enum Ended {
    /// Refused after all (its claim was lost): it counts for nothing.
    NotRun,
    Succeeded,
    FailureStored,
    FailureNotStored,
}

/// `duration` in whole seconds, rounded up (a Retry-After never says 0 for a wait).
fn whole_seconds_up(duration: Duration) -> u64 {
    Ord::max(duration.whole_seconds(), 0) as u64 + u64::from(duration.subsec_nanoseconds() > 0)
}
