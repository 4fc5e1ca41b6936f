//! The ceilings the product's figures are divided by, built with the same profile as the server:
//!
//! - `hello`: a bare axum endpoint answering a short text;
//! - `static --bytes N`: a bare axum endpoint answering an HTML page of exactly N bytes (the
//!   size of the SSR page it stands beside);
//! - `insert --db FILE`: one INSERT per POST on SQLite (WAL, synchronous=FULL) with group
//!   commit: a single writer task takes every request waiting, inserts them in one
//!   transaction and answers each only after that transaction committed.
//!
//! Each prints `listening on ADDR` once its socket is bound.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use clap::{Parser, Subcommand};
use sea_orm::sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sea_orm::sqlx::{self, SqlitePool};
use tokio::sync::{mpsc, oneshot};

#[derive(Parser)]
struct Cli {
    #[arg(long, default_value = "127.0.0.1:0")]
    bind: SocketAddr,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Hello,
    Static {
        #[arg(long)]
        bytes: usize,
    },
    Insert {
        #[arg(long)]
        db: PathBuf,
        /// Most rows committed in one transaction.
        #[arg(long, default_value_t = 512)]
        max_batch: usize,
    },
}

type Reply = oneshot::Sender<Result<(), String>>;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cli = Cli::parse();
    let app = match cli.command {
        Command::Hello => Router::new().route("/", get(|| async { "Hello, world!" })),
        Command::Static { bytes } => {
            let page = Bytes::from(page_of(bytes));
            Router::new().route(
                "/",
                get(move || {
                    let page = page.clone();
                    async move { ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], page) }
                }),
            )
        }
        Command::Insert { db, max_batch } => {
            let pool = open_sqlite(&db).await?;
            sqlx::query(
                "CREATE TABLE IF NOT EXISTS bench_rows (id INTEGER PRIMARY KEY, payload BLOB NOT NULL, created_at TEXT NOT NULL)",
            )
            .execute(&pool)
            .await?;
            let (tx, rx) = mpsc::channel::<(Bytes, Reply)>(4096);
            tokio::spawn(writer(pool, rx, max_batch.max(1)));
            Router::new().route("/insert", post(insert)).with_state(tx)
        }
    };
    let listener = tokio::net::TcpListener::bind(cli.bind).await?;
    println!("listening on {}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}

/// An HTML page of exactly `bytes` bytes (at least the fixed frame).
fn page_of(bytes: usize) -> Vec<u8> {
    let head = b"<!DOCTYPE html><html><head><title>bench</title></head><body><p>";
    let tail = b"</p></body></html>";
    let fill = bytes.saturating_sub(head.len() + tail.len());
    let mut page = Vec::with_capacity(bytes.max(head.len() + tail.len()));
    page.extend_from_slice(head);
    page.extend((0..fill).map(|i| b"lorem ipsum "[i % 12]));
    page.extend_from_slice(tail);
    page
}

/// The same connection settings the ceiling is judged against: WAL and synchronous=FULL, so a
/// commit is on disk when it returns. One connection: SQLite has one writer anyway.
async fn open_sqlite(path: &std::path::Path) -> Result<SqlitePool, sqlx::Error> {
    let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full);
    sqlx::pool::PoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
}

async fn insert(State(tx): State<mpsc::Sender<(Bytes, Reply)>>, body: Bytes) -> impl IntoResponse {
    let (reply, answer) = oneshot::channel();
    if tx.send((body, reply)).await.is_err() {
        return (StatusCode::SERVICE_UNAVAILABLE, "writer stopped").into_response();
    }
    match answer.await {
        Ok(Ok(())) => (StatusCode::OK, "committed").into_response(),
        Ok(Err(e)) => (StatusCode::INTERNAL_SERVER_ERROR, e).into_response(),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "writer stopped").into_response(),
    }
}

/// Group commit: wait for one request, take every other one already queued (up to
/// `max_batch`), commit them together, then answer each. Nobody hears "ok" before the commit.
async fn writer(pool: SqlitePool, mut rx: mpsc::Receiver<(Bytes, Reply)>, max_batch: usize) {
    let mut batch = Vec::with_capacity(max_batch);
    while let Some(first) = rx.recv().await {
        batch.push(first);
        while batch.len() < max_batch {
            match rx.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let outcome = commit_batch(&pool, &batch).await.map_err(|e| e.to_string());
        for (_, reply) in batch.drain(..) {
            // A client that went away no longer needs its answer.
            let _ = reply.send(outcome.clone());
        }
    }
}

async fn commit_batch(pool: &SqlitePool, batch: &[(Bytes, Reply)]) -> Result<(), sqlx::Error> {
    let now = time::OffsetDateTime::now_utc().to_string();
    let mut txn = pool.begin().await?;
    for (payload, _) in batch {
        sqlx::query("INSERT INTO bench_rows (payload, created_at) VALUES (?, ?)")
            .bind(payload.as_ref())
            .bind(&now)
            .execute(&mut *txn)
            .await?;
    }
    txn.commit().await
}
