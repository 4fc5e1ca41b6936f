//! Read-only SQLite connections for the reads an order is screened on, and (a reader of its
//! own) for the audit chain's pages. sqlx runs each SQLite connection on a thread of its own,
//! so every statement is a hand-off to that thread and back and every row a message: an
//! order's five screening reads cost about as much CPU as the rest of the order put together
//! (see `docs/benchmarks.md`). Here a batch of statements runs in one read transaction on one
//! of the reader's threads: one hand-off, one consistent snapshot.
//!
//! The statements are the same sea-query statements the sea-orm path runs (PostgreSQL keeps
//! that path), rendered for SQLite. The connections are opened read-only and `query_only`, so
//! nothing written can go around the audited writes.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use domain::ports::StoreError;
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OpenFlags, Row, Transaction, TransactionBehavior};
use sea_orm::sea_query::{SelectStatement, SqliteQueryBuilder, Value};
use sea_orm::{DatabaseBackend, DatabaseConnection};

/// How a reader is sized for what it reads.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReaderShape {
    /// The threads' name, before their number (15 bytes in all show in `top` and `perf`).
    name: &'static str,
    /// Threads, each with its connection, and so batches read at once.
    threads: usize,
    /// Each connection's page cache in KiB (SQLite's `cache_size`); `None` keeps SQLite's 2 MiB.
    cache_kib: Option<u32>,
}

impl ReaderShape {
    /// An order's screening reads: short, many at once, and over the same pages (the trader's
    /// recent orders and fills), so each connection keeps SQLite's cache. More threads would
    /// only queue for the two cores here, and each new connection parses the schema again.
    pub(crate) const SCREENING: Self = Self {
        name: "sqlite-screen",
        threads: 4,
        cache_kib: None,
    };
    /// The chain read a page at a time (verification, reports, the audit pages): few at once,
    /// and a long scan rarely reads a page twice. Each thread keeps about as much memory as
    /// the largest page it built and each connection its cache: with four threads and SQLite's
    /// cache a first CSV download grew the server by 30-40 MiB (`docs/benchmarks.md`, "Report
    /// memory").
    pub(crate) const CHAIN_SCANS: Self = Self {
        name: "sqlite-chain",
        threads: 2,
        cache_kib: Some(256),
    };
}

/// As long as sqlx waits for a lock on its own connections.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The file a reader thread opens its connection to, and the connection's cache.
#[derive(Debug, Clone)]
struct DbFile {
    path: PathBuf,
    cache_kib: Option<u32>,
}

/// A batch of reads, run on a reader thread with its file and connection (opened on first use).
type Job = Box<dyn FnOnce(&DbFile, &mut Option<Connection>) + Send>;

/// Read-only connections to one SQLite file, each on a long-lived thread of its own that runs
/// one batch of reads at a time.
///
/// Long-lived threads rather than tokio's blocking pool: a page of rows is allocated on the
/// thread that reads it and freed on the request's, and the allocator keeps freed pages per
/// thread. Spread over however many idle blocking threads the pool had, a report's pages left
/// tens of MiB behind (`docs/benchmarks.md`, CSV growth); on the same few threads they are reused.
#[derive(Debug)]
pub(crate) struct SqliteReader {
    jobs: flume::Sender<Job>,
}

impl SqliteReader {
    /// A reader of the file behind `db`: `None` for PostgreSQL and for an in-memory SQLite
    /// database (another connection would not see it).
    pub(crate) fn of(db: &DatabaseConnection, shape: ReaderShape) -> Option<Arc<Self>> {
        if db.get_database_backend() != DatabaseBackend::Sqlite {
            return None;
        }
        let options = db.get_sqlite_connection_pool().connect_options();
        let path = options.get_filename();
        let name = path.to_string_lossy();
        // sqlx names an in-memory database `file:sqlx-in-memory-N`; `?mode=memory` keeps the
        // name but no file.
        if name.starts_with(':') || name.starts_with("file:") || !path.is_file() {
            return None;
        }
        match Self::new(path.to_path_buf(), shape) {
            Ok(reader) => Some(Arc::new(reader)),
            Err(e) => {
                tracing::warn!(error = %e, "no SQLite reader threads: these reads go through sqlx");
                None
            }
        }
    }

    /// Starts the reader threads; they end when the reader is dropped and its queue drains.
    fn new(path: PathBuf, shape: ReaderShape) -> std::io::Result<Self> {
        let (jobs, queue) = flume::unbounded::<Job>();
        let file = DbFile {
            path,
            cache_kib: shape.cache_kib,
        };
        for n in 0..shape.threads {
            let (queue, file) = (queue.clone(), file.clone());
            std::thread::Builder::new()
                .name(format!("{}-{n}", shape.name))
                .spawn(move || run_reader_thread(&file, &queue))?;
        }
        Ok(Self { jobs })
    }

    /// Runs `reads` in one read transaction on a reader thread, after the batches queued before
    /// it. A batch whose caller went away while it queued is not run.
    pub(crate) async fn read<T, F>(&self, reads: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        let (reply, outcome) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |file, connection| {
            if !reply.is_closed() {
                _ = reply.send(read_in_transaction(file, connection, reads));
            }
        });
        self.jobs
            .send(job)
            .map_err(|_| StoreError::Backend("SQLite reader stopped".into()))?;
        outcome
            .await
            .map_err(|_| StoreError::Backend("SQLite read failed: its thread panicked".into()))?
    }
}

/// Takes batches until the reader is dropped. A batch that panics loses its answer (its caller
/// gets an error) and the connection it was using, not the thread.
fn run_reader_thread(file: &DbFile, queue: &flume::Receiver<Job>) {
    let mut connection: Option<Connection> = None;
    while let Ok(job) = queue.recv() {
        let mut slot = connection.take();
        let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(file, &mut slot)));
        if ran.is_ok() {
            connection = slot;
        }
    }
}

/// `reads` in one deferred transaction on `connection`, opened first if there is none.
fn read_in_transaction<T>(
    file: &DbFile,
    connection: &mut Option<Connection>,
    reads: impl FnOnce(&Transaction<'_>) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let open_connection = match connection {
        Some(open_connection) => open_connection,
        None => connection.insert(open(file).map_err(store_error)?),
    };
    let outcome = (|| {
        // Deferred: the snapshot starts at the first read and ends with the transaction.
        let txn = open_connection
            .transaction_with_behavior(TransactionBehavior::Deferred)
            .map_err(store_error)?;
        let value = reads(&txn)?;
        txn.finish().map_err(store_error)?;
        Ok(value)
    })();
    // A connection whose transaction could not end is not reused.
    if !open_connection.is_autocommit() {
        *connection = None;
    }
    outcome
}

fn open(file: &DbFile) -> rusqlite::Result<Connection> {
    let connection = Connection::open_with_flags(
        &file.path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    connection.busy_timeout(BUSY_TIMEOUT)?;
    connection.pragma_update(None, "query_only", true)?;
    if let Some(kib) = file.cache_kib {
        // A negative size is in KiB rather than pages.
        connection.pragma_update(None, "cache_size", -i64::from(kib))?;
    }
    Ok(connection)
}

/// The rows of `query`, each read by `row` (a tuple's `TryFrom<&Row>` reads its columns in
/// order, as `try_get_many_by_index` does on the sea-orm path).
pub(crate) fn rows<T>(
    txn: &Transaction<'_>,
    query: &SelectStatement,
    row: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
) -> Result<Vec<T>, StoreError> {
    let (sql, values) = query.build(SqliteQueryBuilder);
    let params = values
        .into_iter()
        .map(sql_value)
        .collect::<Result<Vec<_>, _>>()?;
    let mut statement = txn.prepare_cached(&sql).map_err(store_error)?;
    let rows = statement
        .query_map(rusqlite::params_from_iter(params), row)
        .map_err(store_error)?;
    rows.collect::<rusqlite::Result<Vec<_>>>()
        .map_err(store_error)
}

/// A bound value as SQLite stores it (as sqlx binds it: booleans as integers).
fn sql_value(value: Value) -> Result<SqlValue, StoreError> {
    fn int(value: Option<impl Into<i64>>) -> SqlValue {
        value.map_or(SqlValue::Null, |v| SqlValue::Integer(v.into()))
    }
    Ok(match value {
        Value::Bool(v) => int(v),
        Value::TinyInt(v) => int(v),
        Value::SmallInt(v) => int(v),
        Value::Int(v) => int(v),
        Value::BigInt(v) => int(v),
        Value::TinyUnsigned(v) => int(v),
        Value::SmallUnsigned(v) => int(v),
        Value::Unsigned(v) => int(v),
        Value::BigUnsigned(v) => match v.map(i64::try_from).transpose() {
            Ok(v) => int(v),
            Err(_) => return Err(StoreError::Backend("a bound value exceeds i64".into())),
        },
        Value::Double(v) => v.map_or(SqlValue::Null, SqlValue::Real),
        Value::String(v) => v.map_or(SqlValue::Null, SqlValue::Text),
        other => {
            return Err(StoreError::Backend(format!(
                "a SQLite read binds an unsupported value: {other:?}"
            )));
        }
    })
}

/// As `storage::classify` sorts SQLite's codes: busy, locked, out of memory, I/O, full and
/// cannot-open are the database being out of reach.
fn store_error(err: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode::{
        CannotOpen, DatabaseBusy, DatabaseLocked, DiskFull, OutOfMemory, SystemIoFailure,
    };
    match err.sqlite_error_code() {
        Some(
            CannotOpen | DatabaseBusy | DatabaseLocked | DiskFull | OutOfMemory | SystemIoFailure,
        ) => StoreError::Unavailable(err.to_string()),
        _ => StoreError::Backend(err.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader_of_new_file(dir: &tempfile::TempDir) -> Arc<SqliteReader> {
        shaped_reader_of_new_file(dir, ReaderShape::SCREENING)
    }

    fn shaped_reader_of_new_file(dir: &tempfile::TempDir, shape: ReaderShape) -> Arc<SqliteReader> {
        let path = dir.path().join("app.db");
        let writer = Connection::open(&path).expect("create");
        writer
            .execute_batch("CREATE TABLE t (v INTEGER); INSERT INTO t VALUES (1);")
            .expect("seed");
        Arc::new(SqliteReader::new(path, shape).expect("reader threads"))
    }

    #[tokio::test]
    async fn reads_see_committed_rows_and_cannot_write() {
        let dir = tempfile::tempdir().expect("dir");
        let reader = reader_of_new_file(&dir);
        let count = |reader: Arc<SqliteReader>| async move {
            reader
                .read(|txn| {
                    txn.query_row("SELECT COUNT(*) FROM t", [], |row| row.get::<_, i64>(0))
                        .map_err(store_error)
                })
                .await
        };
        assert_eq!(count(reader.clone()).await.ok(), Some(1));
        let write = reader
            .read(|txn| {
                txn.execute("INSERT INTO t VALUES (2)", [])
                    .map_err(store_error)
            })
            .await;
        assert!(write.is_err(), "{write:?}");
        // The reader reads on, and saw nothing written.
        assert_eq!(count(reader.clone()).await.ok(), Some(1));
    }

    #[tokio::test]
    async fn a_read_that_panics_is_an_error_and_the_reader_reads_on() {
        let dir = tempfile::tempdir().expect("dir");
        let reader = reader_of_new_file(&dir);
        for _ in 0..=ReaderShape::SCREENING.threads {
            let panicked = reader
                .read(|_| -> Result<(), StoreError> { panic!("a read that panics") })
                .await;
            assert!(
                matches!(&panicked, Err(StoreError::Backend(m)) if m.contains("panicked")),
                "{panicked:?}"
            );
        }
        let value = reader
            .read(|txn| {
                txn.query_row("SELECT v FROM t", [], |row| row.get::<_, i64>(0))
                    .map_err(store_error)
            })
            .await;
        assert_eq!(value.ok(), Some(1));
    }

    #[tokio::test]
    async fn a_file_that_cannot_be_opened_is_an_error_per_read() {
        let dir = tempfile::tempdir().expect("dir");
        let reader = Arc::new(
            SqliteReader::new(dir.path().join("missing.db"), ReaderShape::SCREENING)
                .expect("threads"),
        );
        for _ in 0..2 {
            let read = reader.read(|_| Ok(())).await;
            assert!(matches!(read, Err(StoreError::Unavailable(_))), "{read:?}");
        }
    }

    /// The names of the threads 64 concurrent reads ran on (each takes a moment, so that they
    /// spread over every thread there is).
    async fn threads_reads_ran_on(
        reader: &Arc<SqliteReader>,
    ) -> std::collections::BTreeSet<String> {
        let reads = (0..64).map(|_| {
            let reader = reader.clone();
            tokio::spawn(async move {
                reader
                    .read(|_| {
                        std::thread::sleep(Duration::from_millis(2));
                        Ok(std::thread::current().name().map(str::to_owned))
                    })
                    .await
            })
        });
        let mut threads = std::collections::BTreeSet::new();
        for read in reads.collect::<Vec<_>>() {
            let name = read.await.expect("task").expect("read");
            threads.insert(name.expect("a named thread"));
        }
        threads
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reads_run_on_the_readers_own_few_threads() {
        let dir = tempfile::tempdir().expect("dir");
        let threads = threads_reads_ran_on(&reader_of_new_file(&dir)).await;
        assert!(
            threads.len() <= ReaderShape::SCREENING.threads,
            "{threads:?}"
        );
        assert!(
            threads.iter().all(|t| t.starts_with("sqlite-screen-")),
            "{threads:?}"
        );
    }

    /// The chain's reader is sized for long scans: two threads, each connection with a small
    /// cache; the screening reader keeps SQLite's own cache.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_chain_reader_scans_on_two_threads_with_a_small_cache() {
        let cache_size = |reader: Arc<SqliteReader>| async move {
            reader
                .read(|txn| {
                    txn.query_row("PRAGMA cache_size", [], |row| row.get::<_, i64>(0))
                        .map_err(store_error)
                })
                .await
                .expect("read")
        };
        let dir = tempfile::tempdir().expect("dir");
        let chain = shaped_reader_of_new_file(&dir, ReaderShape::CHAIN_SCANS);
        assert_eq!(cache_size(chain.clone()).await, -256);
        let threads = threads_reads_ran_on(&chain).await;
        assert!(threads.len() <= 2, "{threads:?}");
        assert!(
            threads.iter().all(|t| t.starts_with("sqlite-chain-")),
            "{threads:?}"
        );

        let other = tempfile::tempdir().expect("dir");
        let screening = reader_of_new_file(&other);
        // SQLite's default: -2000 (KiB).
        assert_eq!(cache_size(screening).await, -2000);
    }

    /// The SQLite every connection here links (sqlx's and this reader's) is built with the
    /// query planner stability guarantee (`.cargo/config.toml`): without it, binding a `LIMIT ?`
    /// expires the statement and each execution parses and plans it again.
    #[test]
    fn a_cached_statement_with_a_bound_limit_is_not_prepared_again() {
        use rusqlite::StatementStatus;
        let dir = tempfile::tempdir().expect("dir");
        let connection = Connection::open(dir.path().join("app.db")).expect("open");
        connection
            .execute_batch("CREATE TABLE t (v INTEGER); INSERT INTO t VALUES (1), (2), (3);")
            .expect("seed");
        for limit in [1_i64, 2, 1, 3] {
            let mut statement = connection
                .prepare_cached("SELECT v FROM t ORDER BY v LIMIT ?")
                .expect("prepare");
            let rows = statement
                .query_map([limit], |row| row.get::<_, i64>(0))
                .expect("query")
                .count();
            assert_eq!(rows as i64, limit);
            assert_eq!(statement.get_status(StatementStatus::RePrepare), 0);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_burst_of_reads_shares_the_few_connections() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let dir = tempfile::tempdir().expect("dir");
        let reader = reader_of_new_file(&dir);
        let (inside, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let reads = (0..16).map(|_| {
            let (reader, inside, most) = (reader.clone(), inside.clone(), most.clone());
            tokio::spawn(async move {
                reader
                    .read(move |txn| {
                        let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        // Long enough for the burst to pile up behind the first reads.
                        std::thread::sleep(Duration::from_millis(20));
                        inside.fetch_sub(1, Ordering::SeqCst);
                        txn.query_row("SELECT v FROM t", [], |row| row.get::<_, i64>(0))
                            .map_err(store_error)
                    })
                    .await
            })
        });
        for read in reads.collect::<Vec<_>>() {
            assert_eq!(read.await.expect("task").ok(), Some(1));
        }
        let most = most.load(Ordering::SeqCst);
        assert!(
            (1..=ReaderShape::SCREENING.threads).contains(&most),
            "{most} reads at once"
        );
    }

    #[test]
    fn values_bind_as_sqlite_stores_them() {
        assert_eq!(
            sql_value(Value::Bool(Some(true))).ok(),
            Some(SqlValue::Integer(1))
        );
        assert_eq!(sql_value(Value::BigInt(None)).ok(), Some(SqlValue::Null));
        assert_eq!(
            sql_value(Value::String(Some("x".into()))).ok(),
            Some(SqlValue::Text("x".into()))
        );
        assert_eq!(
            sql_value(Value::BigUnsigned(Some(50))).ok(),
            Some(SqlValue::Integer(50))
        );
        assert!(sql_value(Value::BigUnsigned(Some(u64::MAX))).is_err());
        assert!(sql_value(Value::Bytes(Some(vec![1]))).is_err());
    }
}
