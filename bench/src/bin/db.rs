//! Database figures for `scripts/bench.sh`, each printed as one `BENCH key=value …` line:
//!
//! - `raw-commit`: the database's own commit rate, one-row INSERT + COMMIT in a loop (the
//!   ceiling for durable appends);
//! - `audit-append`: the product's audit appends (`Backend::audit_log.record`), from
//!   `--concurrency` tasks at once;
//! - `chain-load`: seals `--n` events onto the chain and bulk-inserts them (as the tests do);
//! - `verify`: the in-app chain verification (`AuditService::verify_as_operator`, what
//!   `cryptopulse audit verify` and the verify job run), with this process's memory growth;
//! - `raw-scan`: the ceiling for verification, one streaming SELECT of the same rows and a
//!   SHA-256 over each row's fields chained to the previous digest;
//! - `paper-account`: reading a trader's paper account (what every order and ticket does) after
//!   `--fills` paper fills, through the product (its stored book) and as a replay of every fill.

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use domain::audit::{Actor, ActorKind, AuditDraft, AuditEvent, Outcome, RequestMeta};
use domain::audit_action::AuditAction;
use domain::clock::SystemClock;
use futures::TryStreamExt;
use sea_orm::sqlx::postgres::PgPoolOptions;
use sea_orm::sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
};
use sea_orm::sqlx::{self, Row};
use sea_orm::{ConnectionTrait, EntityTrait, TransactionTrait};
use secrecy::SecretString;
use server::config::Settings;
use server::startup::Backend;
use server::storage::entities::audit_event;
use server::storage::to_row;
use sha2::{Digest, Sha256};

#[derive(Parser)]
struct Cli {
    /// `sqlite://FILE?mode=rwc` or `postgres://…`.
    #[arg(long)]
    url: String,
    /// Where the local master key lives (the product's `data_dir`).
    #[arg(long, default_value = "data")]
    data_dir: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    RawCommit {
        #[arg(long)]
        n: usize,
    },
    AuditAppend {
        #[arg(long)]
        n: usize,
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
    },
    ChainLoad {
        #[arg(long)]
        n: usize,
    },
    Verify,
    RawScan,
    /// Paper-account reads for a trader with `--fills` paper fills (one order filled in that
    /// many pieces, bulk-inserted).
    PaperAccount {
        #[arg(long, default_value_t = 10_000)]
        fills: usize,
        #[arg(long, default_value_t = 200)]
        reads: usize,
    },
    /// Remote KMS calls per decrypt: 64 tasks decrypting `--keys` data keys in turn for
    /// `--secs` through the product's data-key cache (its default TTL) over the local KMS.
    Kms {
        #[arg(long, default_value_t = 64)]
        keys: usize,
        #[arg(long, default_value_t = 10)]
        secs: u64,
    },
}

type BenchResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

#[tokio::main]
async fn main() -> BenchResult<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::RawCommit { n } => raw_commit(&cli.url, n).await,
        Command::AuditAppend { n, concurrency } => {
            audit_append(&backend(&cli.url, &cli.data_dir).await?, n, concurrency).await
        }
        Command::ChainLoad { n } => chain_load(&backend(&cli.url, &cli.data_dir).await?, n).await,
        Command::Verify => verify(&cli.url, &cli.data_dir).await,
        Command::RawScan => raw_scan(&cli.url).await,
        Command::Kms { keys, secs } => kms_calls(keys, Duration::from_secs(secs)).await,
        Command::PaperAccount { fills, reads } => {
            paper_account(&backend(&cli.url, &cli.data_dir).await?, fills, reads).await
        }
    }
}

/// The product's backend on `url`, exactly as the CLI opens it (migrations included).
async fn backend(url: &str, data_dir: &std::path::Path) -> BenchResult<Backend> {
    let settings = Settings {
        database_url: SecretString::from(url.to_owned()),
        data_dir: data_dir.to_owned(),
        ..Settings::default()
    };
    Ok(Backend::connect(&settings, Arc::new(SystemClock)).await?)
}

fn is_sqlite(url: &str) -> bool {
    url.starts_with("sqlite:")
}

/// SQLite as the product opens it: WAL, and sqlx's default synchronous=FULL made explicit.
async fn sqlite_pool(url: &str, connections: u32) -> BenchResult<sqlx::SqlitePool> {
    let options = SqliteConnectOptions::from_str(url)?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full);
    Ok(SqlitePoolOptions::new()
        .max_connections(connections)
        .connect_with(options)
        .await?)
}

async fn pg_pool(url: &str, connections: u32) -> BenchResult<sqlx::PgPool> {
    Ok(PgPoolOptions::new()
        .max_connections(connections)
        .connect(url)
        .await?)
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)].as_secs_f64() * 1e6
}

fn report(kind: &str, n: usize, elapsed: Duration, mut latencies: Vec<Duration>, extra: &str) {
    latencies.sort_unstable();
    println!(
        "BENCH kind={kind} n={n} secs={:.3} rate={:.1} p50_us={:.0} p99_us={:.0}{extra}",
        elapsed.as_secs_f64(),
        n as f64 / elapsed.as_secs_f64(),
        percentile(&latencies, 50.0),
        percentile(&latencies, 99.0),
    );
}

/// One-row INSERT + COMMIT in a loop, on one connection: what the database can make durable
/// one transaction at a time.
async fn raw_commit(url: &str, n: usize) -> BenchResult<()> {
    const CREATE: &str =
        "CREATE TABLE IF NOT EXISTS bench_commit (id BIGINT PRIMARY KEY, payload TEXT NOT NULL)";
    let mut latencies = Vec::with_capacity(n);
    if is_sqlite(url) {
        let pool = sqlite_pool(url, 1).await?;
        sqlx::query(CREATE).execute(&pool).await?;
        sqlx::query("DELETE FROM bench_commit")
            .execute(&pool)
            .await?;
        let started_loop = Instant::now();
        for i in 0..n {
            let t = Instant::now();
            sqlx::query("INSERT INTO bench_commit (id, payload) VALUES (?, ?)")
                .bind(i as i64)
                .bind("raw commit payload of about the size of an audit row's details")
                .execute(&pool)
                .await?;
            latencies.push(t.elapsed());
        }
        report("raw_commit", n, started_loop.elapsed(), latencies, "");
    } else {
        let pool = pg_pool(url, 1).await?;
        sqlx::query(CREATE).execute(&pool).await?;
        sqlx::query("DELETE FROM bench_commit")
            .execute(&pool)
            .await?;
        let started_loop = Instant::now();
        for i in 0..n {
            let t = Instant::now();
            sqlx::query("INSERT INTO bench_commit (id, payload) VALUES ($1, $2)")
                .bind(i as i64)
                .bind("raw commit payload of about the size of an audit row's details")
                .execute(&pool)
                .await?;
            latencies.push(t.elapsed());
        }
        report("raw_commit", n, started_loop.elapsed(), latencies, "");
    }
    Ok(())
}

/// An event like the product writes for an order: actor, action, resource, meta and details.
fn draft(i: usize) -> AuditDraft {
    const ACTIONS: [AuditAction; 4] = [
        AuditAction::TradeOrderFilled,
        AuditAction::TradeOrderDenied,
        AuditAction::AuthLogin,
        AuditAction::VaultKeyUsed,
    ];
    const OUTCOMES: [Outcome; 3] = [Outcome::Success, Outcome::Failure, Outcome::Denied];
    AuditDraft::new(
        Actor {
            kind: ActorKind::User,
            id: Some(format!("actor-{}", i % 7)),
        },
        ACTIONS[i % ACTIONS.len()],
        OUTCOMES[i % OUTCOMES.len()],
        RequestMeta {
            ip: Some("10.0.0.1".into()),
            user_agent: Some("cryptopulse-bench".into()),
            request_id: Some(format!("req-{i}")),
        },
    )
    .resource(format!("order:{}", i % 5))
    .detail("n", i)
}

/// The product's durable append, `concurrency` tasks at once, `n` events in all.
async fn audit_append(backend: &Backend, n: usize, concurrency: usize) -> BenchResult<()> {
    let concurrency = concurrency.max(1);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..concurrency {
        let log = backend.audit_log.clone();
        tasks.spawn(async move {
            let mut latencies = Vec::new();
            let mut i = worker;
            while i < n {
                let t = Instant::now();
                log.record(draft(i)).await?;
                latencies.push(t.elapsed());
                i += concurrency;
            }
            Ok::<_, domain::ports::StoreError>(latencies)
        });
    }
    let mut latencies = Vec::with_capacity(n);
    while let Some(done) = tasks.join_next().await {
        latencies.extend(done??);
    }
    report(
        "audit_append",
        n,
        started.elapsed(),
        latencies,
        &format!(" concurrency={concurrency}"),
    );
    Ok(())
}

/// Seals `n` events onto the chain and inserts them 1000 at a time in one transaction that
/// holds the chain lock, as the server's own appends do.
async fn chain_load(backend: &Backend, n: usize) -> BenchResult<()> {
    let started = Instant::now();
    let txn = backend.db.begin().await?;
    txn.execute_unprepared("UPDATE audit_chain_lock SET lock_count = lock_count + 1 WHERE id = 1")
        .await?;
    let mut head = backend.audit_log.head().await?;
    let start = time::OffsetDateTime::now_utc() - time::Duration::days(30);
    let mut batch = Vec::with_capacity(1000);
    for i in 0..n {
        let at = start + time::Duration::milliseconds(i as i64);
        let event = AuditEvent::seal(head, draft(i), at);
        head = event.head();
        batch.push(to_row(&event));
        if batch.len() == 1000 || i + 1 == n {
            audit_event::Entity::insert_many(std::mem::take(&mut batch))
                .exec_without_returning(&txn)
                .await?;
        }
    }
    backend.audit_chain.record_loaded_head(&txn, head).await?;
    txn.commit().await?;
    report("chain_load", n, started.elapsed(), Vec::new(), "");
    Ok(())
}

/// A trader whose one paper order was filled in `fills` pieces (bulk-inserted, as `chain_load`
/// does), then `reads` reads of their paper account: the product's (from its stored book, after
/// a first read that replays and stores it) against a replay of every fill, the way every order
/// read it before the book was stored.
async fn paper_account(backend: &Backend, fills: usize, reads: usize) -> BenchResult<()> {
    use domain::account::{Email, Password, Role};
    use domain::keys::OrderType;
    use domain::risk::{OrderSide, Verdict};
    use domain::trading::{
        ApprovalState, Order, OrderDecisionWrite, OrderId, OrderSource, OrderStatus, OrderStore,
        Portfolio, Venue,
    };
    use rust_decimal::Decimal;
    use sea_orm::ActiveValue::Set;
    use server::storage::SqlTradingStore;
    use server::storage::entities::fill;

    let suffix = time::OffsetDateTime::now_utc().unix_timestamp_nanos();
    let owner = backend
        .services
        .accounts
        .sign_up(
            Email::parse(&format!("paper-{suffix}@bench.example"))?,
            Password::parse("correct horse battery staple 42".into())?,
            Role::Trader,
            Actor::system("bench"),
            RequestMeta::default(),
        )
        .await?
        .id;
    let now = time::OffsetDateTime::now_utc();
    let id = OrderId::new_random();
    let quantity = Decimal::new(1, 3);
    let order = Order {
        id,
        owner,
        venue: Venue::PAPER,
        client_order_id: format!("cp-{}", id.0.simple()),
        symbol: "BTCUSDT".into(),
        side: OrderSide::Buy,
        order_type: OrderType::Market,
        quantity: quantity * Decimal::from(fills),
        limit_price: None,
        reference_price: Decimal::from(60_000),
        notional: Decimal::from(60) * Decimal::from(fills),
        status: OrderStatus::Open,
        hold: None,
        approval: ApprovalState::NotNeeded,
        status_reason: None,
        verdict: Verdict::Allow,
        hits: Vec::new(),
        anomaly: None,
        filled_quantity: Decimal::ZERO,
        average_price: None,
        exchange_order_id: Some(format!("paper-{}", id.0.simple())),
        source: OrderSource::Ticket,
        case: None,
        ip: None,
        device: None,
        attempts: 1,
        created_at: now,
        updated_at: now,
    };
    let store = SqlTradingStore::new(backend.audit_chain.clone(), Arc::new(SystemClock));
    store
        .record_decision(OrderDecisionWrite {
            order,
            proposal: None,
            case: None,
            quarantine: None,
            audit: vec![AuditDraft::new(
                Actor::system("bench"),
                AuditAction::TradeOrderDecided,
                Outcome::Success,
                RequestMeta::default(),
            )],
        })
        .await?;
    let txn = backend.db.begin().await?;
    let mut batch = Vec::with_capacity(1000);
    for i in 0..fills {
        let at = now + time::Duration::milliseconds(i as i64);
        batch.push(fill::ActiveModel {
            order_id: Set(id.to_string()),
            owner: Set(owner.to_string()),
            symbol: Set("BTCUSDT".into()),
            side: Set("buy".into()),
            quantity: Set(quantity.to_string()),
            price: Set((Decimal::from(60_000) + Decimal::from(i % 97)).to_string()),
            at: Set(domain::audit::canonical_time(at)),
            at_us: Set((at.unix_timestamp_nanos() / 1000) as i64),
            ..Default::default()
        });
        if batch.len() == 1000 || i + 1 == fills {
            fill::Entity::insert_many(std::mem::take(&mut batch))
                .exec_without_returning(&txn)
                .await?;
        }
    }
    txn.commit().await?;

    let replayed = async || -> BenchResult<Portfolio> {
        let fills = store
            .fills(owner, Some(domain::exchange::ExchangeName::Paper))
            .await?;
        Ok(Portfolio::from_fills(&fills))
    };
    let mut replay_latencies = Vec::with_capacity(reads);
    let started = Instant::now();
    let mut expected = None;
    for _ in 0..reads {
        let t = Instant::now();
        expected = Some(replayed().await?);
        replay_latencies.push(t.elapsed());
    }
    report(
        "paper_account_replay",
        reads,
        started.elapsed(),
        replay_latencies,
        &format!(" fills={fills}"),
    );

    let t = Instant::now();
    let first = backend.services.trading.portfolio(owner).await?;
    let first_us = t.elapsed().as_micros();
    let mut latencies = Vec::with_capacity(reads);
    let started = Instant::now();
    for _ in 0..reads {
        let t = Instant::now();
        let read = backend.services.trading.portfolio(owner).await?;
        latencies.push(t.elapsed());
        if Some(&read) != expected.as_ref() || read != first {
            return Err("the paper account read differs from a replay of its fills".into());
        }
    }
    report(
        "paper_account",
        reads,
        started.elapsed(),
        latencies,
        &format!(" fills={fills} first_read_us={first_us}"),
    );
    Ok(())
}

/// The cache the server puts in front of its KMS, with the server's default TTL, over a local
/// KMS: how many decrypts reach the KMS under a steady load of decrypts of a set of keys.
async fn kms_calls(keys: usize, run_for: Duration) -> BenchResult<()> {
    use domain::vault::{EncryptionContext, Kms};
    use server::kms::{CachingKms, FileKms};

    let ttl = Duration::from_secs(u64::from(Settings::default().kms.data_key_cache_seconds));
    let master = hex::encode(Sha256::digest(b"cryptopulse-bench master key"));
    let kms = Arc::new(CachingKms::new(
        Arc::new(FileKms::from_env_value(&master)?),
        ttl,
    ));
    let mut wrapped = Vec::with_capacity(keys.max(1));
    for i in 0..keys.max(1) {
        let context = EncryptionContext::from([("key".to_owned(), format!("bench-{i}"))]);
        let (_, key) = kms.generate_data_key(&context).await?;
        wrapped.push((key, context));
    }
    let wrapped = Arc::new(wrapped);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..64usize {
        let (kms, wrapped) = (kms.clone(), wrapped.clone());
        tasks.spawn(async move {
            let mut i = worker;
            while started.elapsed() < run_for {
                let (key, context) = &wrapped[i % wrapped.len()];
                kms.decrypt_data_key(key, context).await?;
                i += 1;
                // Decrypts come with requests, not in a tight loop: let the others run.
                tokio::task::yield_now().await;
            }
            Ok::<_, domain::vault::KmsError>(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    let stats = kms.stats();
    println!(
        "BENCH kind=kms decrypts={} remote={} ratio_pct={:.4} ttl_secs={} keys={} secs={:.1}",
        stats.decrypts,
        stats.remote_decrypts,
        100.0 * stats.remote_decrypts as f64 / stats.decrypts.max(1) as f64,
        ttl.as_secs(),
        wrapped.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// (VmRSS, VmHWM) of this process in KiB.
fn memory_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn memory_extra(before: (u64, u64)) -> String {
    let after = memory_kib();
    format!(
        " rss_before_kib={} hwm_after_kib={} growth_kib={}",
        before.0,
        after.1,
        after.1.saturating_sub(before.0)
    )
}

/// The in-app verification: the same service call as `cryptopulse audit verify`.
async fn verify(url: &str, data_dir: &std::path::Path) -> BenchResult<()> {
    let backend = backend(url, data_dir).await?;
    let before = memory_kib();
    let started = Instant::now();
    let outcome = backend
        .services
        .audit
        .verify_as_operator(None, |_| {})
        .await?;
    let elapsed = started.elapsed();
    let verified = outcome.map_err(|broken| {
        format!(
            "chain broken at seq {}: {}",
            broken.error.seq, broken.error.kind
        )
    })?;
    report(
        "verify",
        verified.checked as usize,
        elapsed,
        Vec::new(),
        &memory_extra(before),
    );
    Ok(())
}

/// Feeds one row's fields into a digest chained to the previous one, so every byte of every
/// row is hashed in order (the work the verification cannot avoid).
fn hash_row(prev: &[u8; 32], row: &[Option<String>]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(prev);
    for field in row {
        match field {
            Some(text) => {
                hasher.update((text.len() as u64).to_le_bytes());
                hasher.update(text.as_bytes());
            }
            None => hasher.update([0xff; 8]),
        }
    }
    hasher.finalize().into()
}

const SCAN: &str = "SELECT seq, occurred_at, actor_kind, actor_id, action, resource, outcome, ip, user_agent, request_id, details, prev_hash, hash FROM audit_events ORDER BY seq";

/// One streaming SELECT of every audit row and a SHA-256 chain over them.
async fn raw_scan(url: &str) -> BenchResult<()> {
    let before = memory_kib();
    let started = Instant::now();
    let mut digest = [0u8; 32];
    let mut n = 0usize;
    // Column 0 is the seq (an integer); the rest are text, some nullable.
    let mut fields: Vec<Option<String>> = Vec::with_capacity(13);
    if is_sqlite(url) {
        let pool = sqlite_pool(url, 1).await?;
        let mut rows = sqlx::query(SCAN).fetch(&pool);
        while let Some(row) = rows.try_next().await? {
            fields.clear();
            fields.push(Some(row.try_get::<i64, _>(0)?.to_string()));
            for i in 1..13 {
                fields.push(row.try_get::<Option<String>, _>(i)?);
            }
            digest = hash_row(&digest, &fields);
            n += 1;
        }
    } else {
        let pool = pg_pool(url, 1).await?;
        let mut rows = sqlx::query(SCAN).fetch(&pool);
        while let Some(row) = rows.try_next().await? {
            fields.clear();
            fields.push(Some(row.try_get::<i64, _>(0)?.to_string()));
            for i in 1..13 {
                fields.push(row.try_get::<Option<String>, _>(i)?);
            }
            digest = hash_row(&digest, &fields);
            n += 1;
        }
    }
    let extra = format!(
        "{} digest={}",
        memory_extra(before),
        hex::encode(&digest[..8])
    );
    report("raw_scan", n, started.elapsed(), Vec::new(), &extra);
    Ok(())
}
