//! The audit chain in the database. Every audited write runs in an [`AuditedTxn`], which takes
//! the chain lock first and appends the event as its last statement before committing.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use domain::audit::filter::{bound_time, second_prefix};
use domain::audit::signing::ReportKey;
use domain::audit::{
    Actor, ActorKind, AuditDraft, AuditEvent, AuditFilter, BreakKind, ChainBreak, ChainHash,
    ChainHead, ChainVerifier, Outcome, RecordedHead, RequestMeta, canonical_time,
    parse_canonical_time,
};
use domain::ports::{AuditLog, Clock, StoreError};
use sea_orm::sea_query::{Alias, Expr, ExprTrait, Func, Query, UpdateStatement};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, DatabaseConnection,
    DatabaseTransaction, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect, QueryTrait,
    Select, TransactionTrait,
};
use time::OffsetDateTime;
use tokio::sync::{Mutex, OwnedMutexGuard, watch};

use super::entities::audit_event;
use super::sqlite_reader::{ReaderShape, SqliteReader, rows};
use super::{DbResult, converted, tuples};

/// The most audited writes one commit carries; a long queue is committed in slices of this size
/// so no writer waits behind an unbounded batch.
const MAX_BATCH: usize = 128;
/// How often a writer whose batch is still open checks that someone will commit it (only matters
/// when the writer expected to continue the batch went away before joining it).
const IDLE_BATCH_CHECK: Duration = Duration::from_millis(5);
const SAVEPOINT: &str = "audited_write";

/// The audit chain's writer for one database: every audited write goes through [`Self::begin`].
///
/// Writes are group-committed. Audited writes are serialised by the chain lock anyway, so
/// instead of one transaction (and one fsync) per write, the writes waiting their turn share one
/// database transaction: each runs inside its own savepoint (a failed or abandoned write is
/// rolled back alone), and the transaction commits when nobody else is waiting or after
/// [`MAX_BATCH`] writes. No writer is answered before the commit that carries its write: a
/// writer whose batch fails gets the error, as it would have alone.
#[derive(Debug, Clone)]
pub struct AuditChain {
    db: DatabaseConnection,
    group: Arc<Group>,
}

#[derive(Debug, Default)]
struct Group {
    queue: Arc<Mutex<Queue>>,
    /// Writers waiting for their turn: while there are any, the open batch is left for them.
    waiting: AtomicUsize,
    commits: AtomicU64,
    /// Signs the head of record at every commit that moves it, and checks it before chaining
    /// onto it (the report key, set once it is unsealed at startup).
    head_key: std::sync::OnceLock<ReportKey>,
    /// The newest head this process has committed as the record: a record found behind it
    /// is an old one put back outside the server (its signature still verifies).
    committed_record: AtomicI64,
    /// That head with its hash: what a stopping server signs into the checkpoint journal.
    last_committed: std::sync::Mutex<Option<ChainHead>>,
}

#[derive(Debug, Default)]
struct Queue {
    open: Option<Batch>,
    next_batch: u64,
}

#[derive(Debug)]
struct Batch {
    id: u64,
    txn: DatabaseTransaction,
    /// Writes released into this batch, waiting for its commit.
    members: usize,
    /// A writer's savepoint is open: it is still writing, or it went away without finishing
    /// (then the savepoint is rolled back before anything else happens in the batch).
    in_savepoint: bool,
    /// The chain head after the writes released into this batch, once one has appended: the
    /// batch holds the chain lock, so nobody else moves the head until it commits. `None`: read
    /// it from the database.
    head: Option<ChainHead>,
    committed: watch::Sender<Option<Result<(), StoreError>>>,
}

impl AuditChain {
    pub fn new(db: DatabaseConnection) -> Self {
        Self {
            db,
            group: Arc::default(),
        }
    }

    pub fn db(&self) -> &DatabaseConnection {
        &self.db
    }

    /// Another writer on the same database with the same head key, as a second server would
    /// have: its own queue and batches (tests of what replicas do to each other).
    pub fn replica(&self) -> Self {
        let replica = Self::new(self.db.clone());
        if let Some(key) = self.group.head_key.get() {
            replica.sign_heads_with(ReportKey::from_secret_bytes(*key.secret_bytes()));
        }
        replica
    }

    /// From now on every commit signs the head of record with `key`, and every batch checks
    /// the record before chaining onto it. Set once, at startup, before anything is appended.
    pub fn sign_heads_with(&self, key: ReportKey) {
        if self.group.head_key.set(key).is_err() {
            tracing::warn!("the audit chain's head key was already set; keeping the first");
        }
    }

    /// A head of record left unsigned by a version before heads were signed: signed now, if
    /// the newest event is the one it names and no server that signs heads has started on this
    /// chain yet (its `system.start` says `heads_signed`, and removing that event breaks the
    /// chain), and audited as `audit.head_signed`. Otherwise the record stays as it is: it was
    /// changed outside the server, appends refuse to chain onto it, and `audit verify` names
    /// it. Returns the head signed, if one was.
    pub async fn sign_unsigned_head(
        &self,
        now: OffsetDateTime,
    ) -> Result<Option<ChainHead>, StoreError> {
        converted(self.sign_if_upgrading(now)).await
    }

    async fn sign_if_upgrading(&self, now: OffsetDateTime) -> DbResult<Option<ChainHead>> {
        let Some(key) = self.group.head_key.get() else {
            return Ok(None);
        };
        let txn = self.begin().await?;
        let recorded = recorded_head(txn.conn()).await?;
        let newest = newest_row(txn.conn()).await?;
        let upgrading = recorded.signature.is_none()
            && recorded.head.seq > 0
            && newest == recorded.head
            && !started_signing_heads(txn.conn()).await?;
        if !upgrading {
            txn.commit_unaudited().await?;
            return Ok(None);
        }
        sign_record(
            txn,
            key,
            recorded.head,
            Actor::system("audit"),
            "the head of record carried no signature",
            now,
        )
        .await?;
        Ok(Some(recorded.head))
    }

    /// The operator's way out once they have looked at events added past the head of record
    /// (`audit verify` reported `PastRecord` and nothing before it): the newest event, which
    /// must be `reviewed` (as `audit verify` printed it), becomes the head of record, signed,
    /// audited as `audit.head_signed` with the range adopted and the operator's reason.
    ///
    /// Only that finding can be adopted: the present record must be signed by this server and
    /// its row still as recorded. A forged, unsigned or dangling record could hide a rewrite or
    /// a cut before it, which no review of the newest events can rule out (restore a backup).
    pub async fn adopt_reviewed_head(
        &self,
        reviewed: ChainHead,
        reason: &str,
        now: OffsetDateTime,
    ) -> Result<(), AdoptError> {
        let Some(key) = self.group.head_key.get() else {
            return Err(AdoptError::NoKey);
        };
        let txn = self.begin().await.map_err(StoreError::from)?;
        let checked = async {
            let recorded = recorded_head(txn.conn()).await?;
            let newest = newest_row(txn.conn()).await?;
            let at_record = row_at(txn.conn(), recorded.head.seq).await?;
            Ok::<_, super::DbError>((recorded, newest, at_record))
        }
        .await
        .map_err(StoreError::from)?;
        let (recorded, newest, at_record) = checked;
        // Vouched for: signed by this server, and its row still the one it signed. A record at
        // seq 0 is the empty chain's only (every append records a head, and migration 17
        // recorded the newest row): over events it was cleared, which vouches for nothing.
        let vouched = if recorded.head.seq == 0 {
            newest.seq == 0
        } else {
            key.public_key()
                .verifies_head(recorded.head, recorded.signature.as_deref())
                && at_record == Some(recorded.head)
        };
        let refusal = if !vouched {
            Some(AdoptError::RecordNotVouched)
        } else if newest.seq <= recorded.head.seq {
            Some(AdoptError::NothingPastRecord)
        } else if newest != reviewed {
            Some(AdoptError::NotTheNewest(newest))
        } else {
            // Checked again under the chain lock: what `audit verify` saw may have been
            // changed since, and only a range that links from the record to the head
            // reviewed is signed.
            range_breaks(txn.conn(), recorded.head, reviewed)
                .await
                .map_err(StoreError::from)?
                .map(AdoptError::RangeChanged)
        };
        if let Some(refusal) = refusal {
            txn.commit_unaudited().await.map_err(StoreError::from)?;
            return Err(refusal);
        }
        let reason = format!(
            "the operator adopted events {} to {} added past the head of record after reviewing \
             them: {reason}",
            recorded.head.seq + 1,
            reviewed.seq
        );
        sign_record(txn, key, reviewed, Actor::system("cli"), &reason, now)
            .await
            .map_err(StoreError::from)?;
        Ok(())
    }

    /// Moves the head of record to `head`, signed, in `txn` (which must hold the chain lock):
    /// for events loaded in bulk outside [`Self::begin`] (benchmarks and tests).
    pub async fn record_loaded_head(
        &self,
        txn: &DatabaseTransaction,
        head: ChainHead,
    ) -> Result<(), StoreError> {
        let signature = self.group.head_key.get().map(|key| key.sign_head(head));
        converted(async {
            txn.execute(&record_head(head, signature)).await?;
            Ok(())
        })
        .await
    }

    /// The newest head this process committed, as it committed it (not read back from the
    /// database, which someone with access may since have cut).
    pub fn last_committed_head(&self) -> Option<ChainHead> {
        *self
            .group
            .last_committed
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Database commits so far (each may carry many writes).
    pub fn commits(&self) -> u64 {
        self.group.commits.load(Ordering::Relaxed)
    }

    /// Writers waiting for their turn right now.
    pub fn writers_waiting(&self) -> usize {
        self.group.waiting.load(Ordering::SeqCst)
    }

    /// Waits for this writer's turn and opens its savepoint in the current batch (starting one,
    /// with the chain lock, if none is open).
    pub async fn begin(&self) -> DbResult<AuditedTxn> {
        let mut queue = {
            let _waiting = Waiting::enter(&self.group.waiting);
            self.group.queue.clone().lock_owned().await
        };
        settle_abandoned(&mut queue).await?;
        if queue.open.is_none() {
            let txn = self.db.begin().await?;
            // Taking the lock row first serialises appends (across replicas too) and, on SQLite,
            // makes this transaction a writer up front so it cannot deadlock on upgrade.
            txn.execute_unprepared(
                "UPDATE audit_chain_lock SET lock_count = lock_count + 1 WHERE id = 1",
            )
            .await?;
            queue.next_batch += 1;
            queue.open = Some(Batch {
                id: queue.next_batch,
                txn,
                members: 0,
                in_savepoint: false,
                head: None,
                committed: watch::channel(None).0,
            });
        }
        // Marked first and opened through the turn: a writer cancelled right here is cleaned
        // up by the turn's Drop (a savepoint that was never made fails the rollback, and then
        // the whole batch is rolled back rather than left holding the lock for nobody).
        let mut head = None;
        if let Some(batch) = queue.open.as_mut() {
            batch.in_savepoint = true;
            head = batch.head;
        }
        let mut turn = AuditedTxn {
            queue: Some(queue),
            group: self.group.clone(),
            head,
        };
        if let Err(e) = turn
            .conn()
            .execute_unprepared(&format!("SAVEPOINT {SAVEPOINT}"))
            .await
        {
            if let Some(queue) = turn.queue.as_mut() {
                fail_batch(queue, &e).await;
            }
            return Err(e.into());
        }
        Ok(turn)
    }
}

/// Counts a writer as waiting until it gets its turn or gives up.
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn enter(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        Self(count)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// One writer's turn in the audit chain: its writes go through [`Self::conn`] and it must end
/// with [`Self::commit_with`]. Dropped without it, its writes are rolled back (and only its).
#[derive(Debug)]
pub struct AuditedTxn {
    queue: Option<OwnedMutexGuard<Queue>>,
    group: Arc<Group>,
    /// The chain head after this writer's appends so far (`None`: not known yet). It becomes
    /// the batch's head only when the writer's savepoint is released: a rolled-back write's
    /// events are gone, and so is the head they made.
    head: Option<ChainHead>,
}

impl AuditedTxn {
    pub fn conn(&self) -> &DatabaseTransaction {
        #[allow(clippy::expect_used)]
        let batch = self
            .queue
            .as_ref()
            .and_then(|queue| queue.open.as_ref())
            .expect("a writer's turn always has an open batch until it ends");
        &batch.txn
    }

    /// Seals `draft` onto the chain head and stores it in this writer's savepoint. For a write
    /// with several events: all but the last; the last goes through [`Self::commit_with`].
    pub async fn append(&mut self, draft: AuditDraft, now: OffsetDateTime) -> DbResult<AuditEvent> {
        let head = match self.head {
            Some(head) => head,
            None => {
                read_head(
                    self.conn(),
                    self.group.head_key.get(),
                    self.group.committed_record.load(Ordering::SeqCst),
                )
                .await?
            }
        };
        let event = AuditEvent::seal(head, draft, now);
        audit_event::Entity::insert(to_row(&event))
            .exec_without_returning(self.conn())
            .await?;
        self.head = Some(event.head());
        Ok(event)
    }

    /// Appends the event, then returns once the batch carrying it has committed; if the append
    /// fails, nothing this writer did lands.
    pub async fn commit_with(
        mut self,
        draft: AuditDraft,
        now: OffsetDateTime,
    ) -> DbResult<AuditEvent> {
        let appended = self.append(draft, now).await;
        self.join_commit(appended).await
    }

    /// Commits writes that are not audit events with the batch: the session rows, written on
    /// many requests. On SQLite every write needs the one write lock; outside the batch they
    /// would wait for it (and time out under load) while the batch keeps it busy.
    pub async fn commit_unaudited(self) -> DbResult<()> {
        self.join_commit(Ok(())).await
    }

    /// Releases this writer's savepoint into the batch (or rolls it back if `written` failed)
    /// and returns once the batch has committed.
    async fn join_commit<T>(mut self, written: DbResult<T>) -> DbResult<T> {
        // The turn stays in `self` until it is handed on, so a writer cancelled in between is
        // cleaned up by Drop.
        let Some(queue) = self.queue.as_mut() else {
            return Err(DbErr::Custom("audited write already ended".into()).into());
        };
        let written = match written {
            Ok(written) => written,
            Err(e) => {
                settle_abandoned(queue).await?;
                if let Some(queue) = self.queue.take() {
                    finish_if_idle(queue, &self.group).await;
                }
                return Err(e);
            }
        };
        let released = match queue.open.as_ref() {
            Some(batch) => {
                batch
                    .txn
                    .execute_unprepared(&format!("RELEASE SAVEPOINT {SAVEPOINT}"))
                    .await
            }
            None => Err(DbErr::Custom("no open audit batch".into())),
        };
        if let Err(e) = released {
            fail_batch(queue, &e).await;
            return Err(e.into());
        }
        let Some(batch) = queue.open.as_mut() else {
            return Err(DbErr::Custom("no open audit batch".into()).into());
        };
        batch.in_savepoint = false;
        batch.members += 1;
        if self.head.is_some() {
            batch.head = self.head;
        }
        let (id, outcome) = (batch.id, batch.committed.subscribe());
        let commit_now =
            batch.members >= MAX_BATCH || self.group.waiting.load(Ordering::SeqCst) == 0;
        let Some(queue) = self.queue.take() else {
            return Err(DbErr::Custom("audited write already ended".into()).into());
        };
        if commit_now {
            commit_batch(queue, &self.group).await?;
            return Ok(written);
        }
        // Others are waiting: leave the batch open for them; one of them commits it.
        drop(queue);
        await_commit(outcome, &self.group, id).await?;
        Ok(written)
    }
}

impl Drop for AuditedTxn {
    fn drop(&mut self) {
        // A writer that went away mid-write (an error returned early, a cancelled request):
        // roll back its savepoint now, so the batch's lock is not held for nobody.
        if let Some(mut queue) = self.queue.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let group = self.group.clone();
            runtime.spawn(async move {
                if settle_abandoned(&mut queue).await.is_ok() {
                    finish_if_idle(queue, &group).await;
                }
            });
        }
    }
}

/// Rolls back a savepoint left open by a writer that went away; if that fails, the whole batch
/// fails (its members get the error; none of it is committed).
async fn settle_abandoned(queue: &mut OwnedMutexGuard<Queue>) -> DbResult<()> {
    let Some(batch) = queue.open.as_mut().filter(|batch| batch.in_savepoint) else {
        return Ok(());
    };
    let rolled_back = match batch
        .txn
        .execute_unprepared(&format!("ROLLBACK TO SAVEPOINT {SAVEPOINT}"))
        .await
    {
        Ok(_) => {
            batch
                .txn
                .execute_unprepared(&format!("RELEASE SAVEPOINT {SAVEPOINT}"))
                .await
        }
        Err(e) => Err(e),
    };
    match rolled_back {
        Ok(_) => {
            batch.in_savepoint = false;
            Ok(())
        }
        Err(e) => {
            fail_batch(queue, &e).await;
            Err(e.into())
        }
    }
}

/// Ends a batch nobody is about to join: committed if it carries writes, else rolled back.
async fn finish_if_idle(queue: OwnedMutexGuard<Queue>, group: &Arc<Group>) {
    let members = queue.open.as_ref().map_or(0, |batch| batch.members);
    if group.waiting.load(Ordering::SeqCst) > 0 {
        return;
    }
    if members == 0 {
        let mut queue = queue;
        if let Some(batch) = queue.open.take() {
            roll_back(batch.txn).await;
        }
    } else {
        // Its members hear the outcome through the batch's channel.
        let _ = commit_batch(queue, group).await;
    }
}

/// Rolls a batch back and waits for it: the connection must not go back to the pool still
/// holding the write lock (SQLite) or the chain lock row (PostgreSQL).
async fn roll_back(txn: DatabaseTransaction) {
    if let Err(e) = txn.rollback().await {
        // After some errors (a full disk) the database has already rolled the transaction back;
        // sqlx still counts it open, so the pool closes that connection (see
        // `close_if_in_transaction` in storage/mod.rs).
        tracing::warn!(error = %e, "audit batch rollback");
    }
}

/// Rolls the open batch back and tells its members it failed.
async fn fail_batch(queue: &mut OwnedMutexGuard<Queue>, reason: &DbErr) {
    if let Some(batch) = queue.open.take() {
        roll_back(batch.txn).await;
        // The kind survives (a database outage stays one), so each writer answers alike.
        batch
            .committed
            .send_replace(Some(Err(super::classify(reason))));
    }
}

/// Commits the open batch and tells its members. The commit runs as its own task, so a
/// cancelled request cannot leave it half done; the queue stays locked until it has finished.
async fn commit_batch(queue: OwnedMutexGuard<Queue>, group: &Arc<Group>) -> DbResult<()> {
    let group = group.clone();
    let committing = tokio::spawn(async move {
        let mut queue = queue;
        let Some(batch) = queue.open.take() else {
            return Ok(());
        };
        // A failed commit leaves the connection's transaction state in doubt: the pool closes
        // it rather than reuse it (`close_if_in_transaction` in storage/mod.rs).
        let result = async {
            if let Some(head) = batch.head {
                let signature = group.head_key.get().map(|key| key.sign_head(head));
                batch.txn.execute(&record_head(head, signature)).await?;
            }
            batch.txn.commit().await
        }
        .await
        .map_err(|e| super::classify(&e));
        if let (Ok(()), Some(head)) = (&result, batch.head) {
            group.committed_record.fetch_max(head.seq, Ordering::SeqCst);
            let mut last = group
                .last_committed
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if last.is_none_or(|last| last.seq < head.seq) {
                *last = Some(head);
            }
        }
        group.commits.fetch_add(1, Ordering::Relaxed);
        batch.committed.send_replace(Some(result.clone()));
        result
    });
    match committing.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.into()),
        Err(e) => Err(DbErr::Custom(format!("audit batch commit task: {e}")).into()),
    }
}

/// Waits for the batch `id` to commit. If the writer expected to continue it went away before
/// its turn, nobody would: then this writer commits it.
async fn await_commit(
    mut outcome: watch::Receiver<Option<Result<(), StoreError>>>,
    group: &Arc<Group>,
    id: u64,
) -> DbResult<()> {
    loop {
        if let Some(result) = outcome.borrow_and_update().clone() {
            return result.map_err(Into::into);
        }
        match tokio::time::timeout(IDLE_BATCH_CHECK, outcome.changed()).await {
            Ok(Ok(())) => continue,
            Ok(Err(_)) => {
                return Err(DbErr::Custom("audit batch ended without a commit".into()).into());
            }
            Err(_) => {
                if let Ok(mut queue) = group.queue.clone().try_lock_owned()
                    && queue.open.as_ref().is_some_and(|batch| batch.id == id)
                    && group.waiting.load(Ordering::SeqCst) == 0
                {
                    settle_abandoned(&mut queue).await?;
                    commit_batch(queue, group).await?;
                }
            }
        }
    }
}

/// Rows of the chain: it starts at seq 1. A row below that was inserted outside the server;
/// the verifier reports it (`BreakKind::BeforeFirst`), and no view shows it as an event.
fn in_chain() -> Expr {
    audit_event::Column::Seq.gt(0)
}

/// The one-row table whose update serialises appends; it also keeps the head of record.
fn chain_lock() -> Alias {
    Alias::new("audit_chain_lock")
}

/// Moves the head of record, with its signature, in the commit of the batch that appended up
/// to it.
fn record_head(head: ChainHead, signature: Option<String>) -> UpdateStatement {
    Query::update()
        .table(chain_lock())
        .value(Alias::new("head_seq"), head.seq)
        .value(Alias::new("head_hash"), head.hash.to_hex())
        .value(Alias::new("head_signature"), signature)
        .and_where(Expr::col(Alias::new("id")).eq(1))
        .take()
}

/// The head of record: where the last committed append left the chain, and its signature.
async fn recorded_head(db: &impl ConnectionTrait) -> DbResult<RecordedHead> {
    let query = Query::select()
        .columns([
            Alias::new("head_seq"),
            Alias::new("head_hash"),
            Alias::new("head_signature"),
        ])
        .from(chain_lock())
        .and_where(Expr::col(Alias::new("id")).eq(1))
        .take();
    let rows: Vec<(i64, Option<String>, Option<String>)> = tuples(db, &query).await?;
    Ok(match rows.first() {
        Some((seq, Some(hash), signature)) if *seq > 0 => RecordedHead {
            head: ChainHead {
                seq: *seq,
                hash: ChainHash::from_hex(hash).ok_or_else(|| {
                    DbErr::Custom("the audit chain's recorded head has a malformed hash".into())
                })?,
            },
            signature: signature.clone(),
        },
        _ => RecordedHead::default(),
    })
}

/// Why [`AuditChain::adopt_reviewed_head`] did nothing.
#[derive(Debug, thiserror::Error)]
pub enum AdoptError {
    #[error("the newest event is {0}, not the head given: review the chain again")]
    NotTheNewest(ChainHead),
    #[error(
        "the head of record is not one this server signed, or its event is gone or changed: \
         nothing after it can be vouched for by a review; restore a backup"
    )]
    RecordNotVouched,
    #[error("no events past the head of record: there is nothing to adopt")]
    NothingPastRecord,
    #[error("the events to adopt changed since they were verified ({0}): review the chain again")]
    RangeChanged(ChainBreak),
    #[error("the report key is not loaded, so no head can be signed")]
    NoKey,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The first break in the events after `from` up to `to`, read in `txn` a page at a time: they
/// must link from `from` and end exactly at `to`.
async fn range_breaks(
    txn: &DatabaseTransaction,
    from: ChainHead,
    to: ChainHead,
) -> DbResult<Option<ChainBreak>> {
    const PAGE: u64 = 1_000;
    let mut verifier = ChainVerifier::starting_at(from);
    while verifier.head().seq < to.seq {
        let rows = audit_event::Entity::find()
            .filter(audit_event::Column::Seq.gt(verifier.head().seq))
            .filter(audit_event::Column::Seq.lte(to.seq))
            .order_by_asc(audit_event::Column::Seq)
            .limit(PAGE)
            .all(txn)
            .await?;
        if rows.is_empty() {
            break;
        }
        for row in rows {
            if let Err(found) = verifier.check(&from_row(row)) {
                return Ok(Some(found));
            }
        }
    }
    Ok((verifier.head() != to).then_some(ChainBreak {
        seq: to.seq,
        kind: BreakKind::AnchorMismatch,
    }))
}

/// Moves the head of record to `head`, signed, and commits that with its `audit.head_signed`
/// event.
async fn sign_record(
    txn: AuditedTxn,
    key: &ReportKey,
    head: ChainHead,
    actor: Actor,
    reason: &str,
    now: OffsetDateTime,
) -> DbResult<()> {
    txn.conn()
        .execute(&record_head(head, Some(key.sign_head(head))))
        .await?;
    tracing::warn!(
        seq = head.seq,
        reason,
        "signed the audit chain's head of record"
    );
    txn.commit_with(
        AuditDraft::new(
            actor,
            domain::audit_action::AuditAction::AuditHeadSigned,
            Outcome::Success,
            RequestMeta::default(),
        )
        .detail("seq", head.seq)
        .detail("hash", head.hash.to_hex())
        .detail("reason", reason),
        now,
    )
    .await?;
    Ok(())
}

/// Whether a server that signs heads of record has started on this chain, or a head was
/// signed on it already.
async fn started_signing_heads(db: &impl ConnectionTrait) -> DbResult<bool> {
    use domain::audit_action::AuditAction;
    let signed = audit_event::Entity::find()
        .select_only()
        .column(audit_event::Column::Seq)
        .filter(in_chain())
        .filter(audit_event::Column::Action.eq(AuditAction::AuditHeadSigned.as_str()))
        .into_tuple::<i64>()
        .one(db)
        .await?;
    if signed.is_some() {
        return Ok(true);
    }
    // Parsed, not matched as text: the hash covers the parsed details, so a row re-stored
    // with other spacing still verifies, and must still count.
    let starts: Vec<String> = audit_event::Entity::find()
        .select_only()
        .column(audit_event::Column::Details)
        .filter(in_chain())
        .filter(audit_event::Column::Action.eq(AuditAction::SystemStart.as_str()))
        .into_tuple()
        .all(db)
        .await?;
    Ok(starts.iter().any(|details| {
        serde_json::from_str::<serde_json::Value>(details)
            .ok()
            .and_then(|d| d.get(HEADS_SIGNED).cloned())
            == Some(serde_json::Value::Bool(true))
    }))
}

/// The `system.start` detail by which a server that signs heads of record says so.
pub const HEADS_SIGNED: &str = "heads_signed";

/// The head the next event chains onto, read inside `txn` (which must hold the chain lock):
/// the head of record, once its signature is checked. A newest row older than the record, or
/// another row at its seq, means events were cut or replaced at the end: chaining onto the
/// record keeps that visible to verification instead of sealing over it. A row past the
/// record, or a record the server did not sign, was written outside the server: nothing is
/// chained onto it (every audited write then fails) until the operator has looked, since
/// sealing over it would make it part of the chain.
async fn read_head(
    txn: &DatabaseTransaction,
    key: Option<&ReportKey>,
    committed_record: i64,
) -> DbResult<ChainHead> {
    let newest = newest_row(txn).await?;
    let recorded = recorded_head(txn).await?;
    if recorded.head.seq < committed_record {
        return Err(tampered(format!(
            "the audit log's head of record (seq {}) is behind one this server recorded (seq \
             {committed_record}): an earlier record was put back outside the server. Stop \
             the server (it journals the head it recorded) and run `cryptopulse audit verify`.",
            recorded.head.seq
        )));
    }
    if newest.seq > recorded.head.seq {
        return Err(tampered(format!(
            "the audit log holds events past its head of record (seq {}): they were added \
             outside the server. Run `cryptopulse audit verify`.",
            recorded.head.seq
        )));
    }
    if let Some(key) = key
        && recorded.head.seq > 0
        && !key
            .public_key()
            .verifies_head(recorded.head, recorded.signature.as_deref())
    {
        return Err(tampered(format!(
            "the audit log's head of record (seq {}) is not signed by this server: it was set \
             outside the server. Run `cryptopulse audit verify`.",
            recorded.head.seq
        )));
    }
    Ok(recorded.head)
}

/// Refused as an outage (503): nothing can be recorded until the operator has looked.
fn tampered(message: String) -> super::DbError {
    tracing::error!(target: "security", event = "audit.chain_tampered", "{message}");
    StoreError::Unavailable(message).into()
}

/// The newest stored event's seq and hash.
/// The event at `seq` as (seq, hash), if there is one.
async fn row_at(txn: &DatabaseTransaction, seq: i64) -> DbResult<Option<ChainHead>> {
    let row: Option<(i64, String)> = audit_event::Entity::find()
        .select_only()
        .column(audit_event::Column::Seq)
        .column(audit_event::Column::Hash)
        .filter(audit_event::Column::Seq.eq(seq))
        .into_tuple()
        .one(txn)
        .await?;
    Ok(row.and_then(|(seq, hash)| {
        Some(ChainHead {
            seq,
            hash: ChainHash::from_hex(&hash)?,
        })
    }))
}

async fn newest_row(txn: &DatabaseTransaction) -> DbResult<ChainHead> {
    // Only the two columns the seal needs (a whole row carries the event's details).
    let newest: Option<(i64, String)> = audit_event::Entity::find()
        .select_only()
        .column(audit_event::Column::Seq)
        .column(audit_event::Column::Hash)
        .filter(in_chain())
        .order_by_desc(audit_event::Column::Seq)
        .into_tuple()
        .one(txn)
        .await?;
    Ok(match newest {
        Some((seq, hash)) => ChainHead {
            seq,
            hash: ChainHash::from_hex(&hash)
                .ok_or_else(|| DbErr::Custom(format!("audit event {seq} has a malformed hash")))?,
        },
        None => ChainHead::EMPTY,
    })
}

/// An event as the row that stores it (also how tests bulk-load chains).
pub fn to_row(event: &AuditEvent) -> audit_event::ActiveModel {
    audit_event::ActiveModel {
        seq: Set(event.seq),
        occurred_at: Set(canonical_time(event.occurred_at)),
        actor_kind: Set(event.actor.kind.as_str().to_owned()),
        actor_id: Set(event.actor.id.clone()),
        action: Set(event.action.clone()),
        resource: Set(event.resource.clone()),
        outcome: Set(event.outcome.as_str().to_owned()),
        ip: Set(event.meta.ip.clone()),
        user_agent: Set(event.meta.user_agent.clone()),
        request_id: Set(event.meta.request_id.clone()),
        details: Set(event.details.to_string()),
        prev_hash: Set(event.prev_hash.to_hex()),
        hash: Set(event.hash.to_hex()),
    }
}

/// Reads a stored row back. A field not stored exactly as [`to_row`] writes it makes the
/// event fail verification at this seq (its hash reads as all zeros) rather than an error, so
/// `audit verify` names the broken event. Exactly, not merely readably: searches and reports
/// filter on the stored text, so a value that reads the same but is written differently (the
/// same instant at another offset, an unknown outcome read as a failure) would hide the event
/// from them while its hash still verified.
pub fn from_row(row: audit_event::Model) -> AuditEvent {
    let occurred_at = parse_canonical_time(&row.occurred_at);
    let actor_kind = ActorKind::parse(&row.actor_kind);
    let outcome = Outcome::parse(&row.outcome);
    let prev_hash = ChainHash::from_hex(&row.prev_hash);
    let hash = ChainHash::from_hex(&row.hash);
    let as_written = occurred_at.is_some_and(|at| canonical_time(at) == row.occurred_at)
        && actor_kind.is_some_and(|kind| kind.as_str() == row.actor_kind)
        && outcome.is_some_and(|outcome| outcome.as_str() == row.outcome)
        && prev_hash.is_some_and(|h| h.to_hex() == row.prev_hash)
        && hash.is_some_and(|h| h.to_hex() == row.hash);
    AuditEvent {
        seq: row.seq,
        occurred_at: occurred_at.unwrap_or(OffsetDateTime::UNIX_EPOCH),
        actor: Actor {
            kind: actor_kind.unwrap_or(ActorKind::Anonymous),
            id: row.actor_id,
        },
        action: row.action,
        resource: row.resource,
        outcome: outcome.unwrap_or(Outcome::Failure),
        meta: RequestMeta {
            ip: row.ip,
            user_agent: row.user_agent,
            request_id: row.request_id,
        },
        details: serde_json::from_str(&row.details)
            .unwrap_or(serde_json::Value::String(row.details)),
        prev_hash: prev_hash.unwrap_or(ChainHash::GENESIS),
        hash: hash.filter(|_| as_written).unwrap_or(ChainHash::GENESIS),
    }
}

/// `occurred_at` as `YYYY-MM-DDTHH:MM:SS.ffffff` (see `fixed_width_time`): the stored canonical
/// text drops trailing zeros of the fraction, so it does not sort by time on its own. A constant
/// expression (no input in it), portable to SQLite and PostgreSQL.
const FIXED_WIDTH_OCCURRED_AT: &str = "(CASE WHEN length(occurred_at) = 20 \
     THEN substr(occurred_at, 1, 19) || '.000000' \
     ELSE substr(replace(occurred_at, 'Z', '') || '00000', 1, 26) END)";

/// The SQL form of [`AuditFilter::matches`]; every input is a bound value.
fn filter_condition(filter: &AuditFilter) -> Condition {
    use audit_event::Column;
    let mut cond = Condition::all();
    if let Some(from) = filter.from {
        // The whole-second bound lets the occurred_at index narrow the scan; the fixed-width
        // comparison is the exact one.
        cond = cond
            .add(Column::OccurredAt.gte(second_prefix(from)))
            .add(Expr::cust(FIXED_WIDTH_OCCURRED_AT).gte(bound_time(from)));
    }
    if let Some(to) = filter.to {
        cond = cond
            .add(Column::OccurredAt.lt(second_prefix(to + time::Duration::SECOND)))
            .add(Expr::cust(FIXED_WIDTH_OCCURRED_AT).lt(bound_time(to)));
    }
    if let Some(actor) = filter.actor_id() {
        cond = cond.add(Column::ActorId.eq(actor));
    }
    if let Some(prefix) = filter.action_prefix() {
        // substr, not LIKE: LIKE is case-blind in SQLite and would need `%`/`_` escaped.
        let chars = i32::try_from(prefix.chars().count()).unwrap_or(i32::MAX);
        cond = cond.add(
            Expr::expr(
                Func::cust("substr")
                    .arg(Expr::col(Column::Action))
                    .arg(1i32)
                    .arg(chars),
            )
            .eq(prefix),
        );
    }
    if let Some(outcome) = filter.outcome {
        cond = cond.add(Column::Outcome.eq(outcome.as_str()));
    }
    if let Some(resource) = filter.resource() {
        cond = cond.add(Column::Resource.eq(resource));
    }
    if let Some(request_id) = filter.request_id() {
        cond = cond.add(Column::RequestId.eq(request_id));
    }
    if let Some(up_to) = filter.up_to_seq {
        cond = cond.add(Column::Seq.lte(up_to));
    }
    cond
}

#[derive(Debug, Clone)]
pub struct SqlAuditLog {
    db: DatabaseConnection,
    chain: AuditChain,
    clock: Arc<dyn Clock>,
    /// SQLite's events are read here: verification, reports and the audit pages read the chain
    /// a page at a time, and through sqlx every row is a message from the connection's thread
    /// (and each pooled connection a page cache and a thread heap of its own).
    reader: Option<Arc<SqliteReader>>,
}

impl SqlAuditLog {
    pub fn new(chain: impl Into<AuditChain>, clock: Arc<dyn Clock>) -> Self {
        let chain = chain.into();
        Self {
            db: chain.db().clone(),
            reader: SqliteReader::of(chain.db(), ReaderShape::CHAIN_SCANS),
            chain,
            clock,
        }
    }

    /// The first `limit` events `query` selects, in its order.
    async fn events(
        &self,
        query: Select<audit_event::Entity>,
        limit: u64,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        let query = query.limit(limit);
        if let Some(reader) = &self.reader {
            let statement = query.into_query();
            return reader
                .read(move |txn| rows(txn, &statement, event_of_row))
                .await;
        }
        converted(async {
            let rows = query.all(&self.db).await?;
            Ok(rows.into_iter().map(from_row).collect())
        })
        .await
    }
}

/// An event from a row of `audit_event::Entity::find()` (its columns in the model's order), as
/// [`from_row`] reads one: a text column holding something else (a tampered row) is read as
/// text, so verification names the broken event instead of failing the read.
fn event_of_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<AuditEvent> {
    use rusqlite::types::ValueRef;
    let text = |i: usize| -> rusqlite::Result<Option<String>> {
        Ok(match row.get_ref(i)? {
            ValueRef::Null => None,
            ValueRef::Integer(n) => Some(n.to_string()),
            ValueRef::Real(x) => Some(x.to_string()),
            ValueRef::Text(bytes) | ValueRef::Blob(bytes) => {
                Some(String::from_utf8_lossy(bytes).into_owned())
            }
        })
    };
    let required = |i: usize| text(i).map(Option::unwrap_or_default);
    Ok(from_row(audit_event::Model {
        seq: row.get(0)?,
        occurred_at: required(1)?,
        actor_kind: required(2)?,
        actor_id: text(3)?,
        action: required(4)?,
        resource: text(5)?,
        outcome: required(6)?,
        ip: text(7)?,
        user_agent: text(8)?,
        request_id: text(9)?,
        details: required(10)?,
        prev_hash: required(11)?,
        hash: required(12)?,
    }))
}

#[async_trait]
impl AuditLog for SqlAuditLog {
    async fn record(&self, draft: AuditDraft) -> Result<AuditEvent, StoreError> {
        converted(async {
            let txn = self.chain.begin().await?;
            txn.commit_with(draft, self.clock.now()).await
        })
        .await
    }

    async fn recent(&self, limit: u64) -> Result<Vec<AuditEvent>, StoreError> {
        let newest_first = audit_event::Entity::find()
            .filter(in_chain())
            .order_by_desc(audit_event::Column::Seq);
        self.events(newest_first, limit).await
    }

    async fn page(&self, after: i64, limit: u64) -> Result<Vec<AuditEvent>, StoreError> {
        let after_seq = audit_event::Entity::find()
            .filter(audit_event::Column::Seq.gt(after))
            .order_by_asc(audit_event::Column::Seq);
        self.events(after_seq, limit).await
    }

    async fn for_resources(
        &self,
        resources: &[String],
        limit: u64,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        if resources.is_empty() {
            return Ok(Vec::new());
        }
        let about = audit_event::Entity::find()
            .filter(in_chain())
            .filter(audit_event::Column::Resource.is_in(resources.iter().cloned()))
            .order_by_desc(audit_event::Column::Seq);
        self.events(about, limit).await
    }

    async fn search_after(
        &self,
        filter: &AuditFilter,
        after: i64,
        limit: u64,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        let query = audit_event::Entity::find()
            .filter(in_chain())
            .filter(audit_event::Column::Seq.gt(after))
            .filter(filter_condition(filter))
            .order_by_asc(audit_event::Column::Seq);
        self.events(query, limit).await
    }

    async fn search_before(
        &self,
        filter: &AuditFilter,
        before: i64,
        limit: u64,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        let query = audit_event::Entity::find()
            .filter(in_chain())
            .filter(audit_event::Column::Seq.lt(before))
            .filter(filter_condition(filter))
            .order_by_desc(audit_event::Column::Seq);
        self.events(query, limit).await
    }

    async fn head(&self) -> Result<ChainHead, StoreError> {
        let newest = self.recent(1).await?;
        Ok(newest.first().map_or(ChainHead::EMPTY, AuditEvent::head))
    }

    async fn event(&self, seq: i64) -> Result<Option<AuditEvent>, StoreError> {
        converted(async {
            if seq < 1 {
                return Ok(None);
            }
            let row = audit_event::Entity::find_by_id(seq).one(&self.db).await?;
            Ok(row.map(from_row))
        })
        .await
    }

    async fn recorded_head(&self) -> Result<Option<RecordedHead>, StoreError> {
        converted(async { Ok(Some(recorded_head(&self.db).await?)) }).await
    }

    async fn lowest_seq(&self) -> Result<Option<i64>, StoreError> {
        converted(async {
            let lowest: Option<Option<i64>> = audit_event::Entity::find()
                .select_only()
                .column_as(
                    Expr::from(Func::min(Expr::col(audit_event::Column::Seq))),
                    "lowest",
                )
                .into_tuple()
                .one(&self.db)
                .await?;
            Ok(lowest.flatten())
        })
        .await
    }
}
