//! The real server binary as a child process (so it can be killed with SIGKILL), its
//! databases, and HTTP clients that talk to it like a browser.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, HeaderValue, ORIGIN};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, Statement};

pub const PASSWORD: &str = "correct horse battery staple";

/// `CRYPTOPULSE_TEST_PG_URL` when set and non-empty (the PostgreSQL pass of scripts/test.sh).
pub fn pg_admin_url() -> Option<String> {
    std::env::var("CRYPTOPULSE_TEST_PG_URL")
        .ok()
        .filter(|v| !v.is_empty())
}

pub fn under_ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

/// `admin_url` with its database name replaced by `name`.
pub fn pg_url_for(admin_url: &str, name: &str) -> String {
    let base = admin_url
        .rsplit_once('/')
        .map(|(base, _)| base)
        .unwrap_or(admin_url);
    format!("{base}/{name}")
}

/// Creates a fresh database on the PostgreSQL server at `admin_url`; returns its URL.
pub async fn fresh_pg_database(admin_url: &str) -> String {
    let name = format!("cryptopulse_test_{}", uuid::Uuid::new_v4().simple());
    let admin = Database::connect(admin_url)
        .await
        .expect("CRYPTOPULSE_TEST_PG_URL must be reachable");
    admin
        .execute_unprepared(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create test database");
    admin.close().await.ok();
    pg_url_for(admin_url, &name)
}

/// The database for a test: a fresh PostgreSQL database in the PostgreSQL pass, otherwise a
/// SQLite file (WAL; sqlx's default `synchronous = FULL`) in `dir`.
pub async fn test_database_url(dir: &Path) -> String {
    match pg_admin_url() {
        Some(admin) => fresh_pg_database(&admin).await,
        None => format!("sqlite://{}/faults.db?mode=rwc", dir.display()),
    }
}

/// How to start the server: a working directory (data dir, logs) and settings as environment.
#[derive(Clone)]
pub struct ServerConfig {
    pub dir: PathBuf,
    pub env: Vec<(String, String)>,
}

impl ServerConfig {
    pub fn new(dir: &Path, database_url: &str) -> Self {
        let data = dir.join("data");
        let env = [
            ("CRYPTOPULSE_BIND", "127.0.0.1:0".to_owned()),
            ("CRYPTOPULSE_DATABASE_URL", database_url.to_owned()),
            ("CRYPTOPULSE_DATA_DIR", data.display().to_string()),
            ("CRYPTOPULSE_LOG_FORMAT", "json".to_owned()),
            ("CRYPTOPULSE_LOG_LEVEL", "info".to_owned()),
            // Cheap hashing and no rate limits: the load here is the test's, not an attacker's.
            (
                "CRYPTOPULSE_PASSWORD_HASHING__MEMORY_KIB",
                "1024".to_owned(),
            ),
            ("CRYPTOPULSE_PASSWORD_HASHING__ITERATIONS", "1".to_owned()),
            ("CRYPTOPULSE_PASSWORD_HASHING__PARALLELISM", "1".to_owned()),
            (
                "CRYPTOPULSE_RATE_LIMIT__REQUESTS_PER_MINUTE",
                "1000000".to_owned(),
            ),
            (
                "CRYPTOPULSE_RATE_LIMIT__AUTH_PER_MINUTE",
                "1000000".to_owned(),
            ),
            (
                "CRYPTOPULSE_VAULT__RECHECK_INTERVAL_MINUTES",
                "0".to_owned(),
            ),
            ("CRYPTOPULSE_TRADING__JOB_INTERVAL_SECONDS", "60".to_owned()),
            ("LEPTOS_OUTPUT_NAME", "cryptopulse".to_owned()),
            ("LEPTOS_SITE_ROOT", dir.join("site").display().to_string()),
            ("LEPTOS_SITE_PKG_DIR", "pkg".to_owned()),
        ];
        Self {
            dir: dir.to_owned(),
            env: env.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
        }
    }

    pub fn with(mut self, key: &str, value: &str) -> Self {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Runs `cryptopulse <args>` with these settings; returns (exit code, stdout + stderr).
    pub fn run_cli(&self, args: &[&str]) -> (Option<i32>, String) {
        let out = self.command().args(args).output().expect("the binary runs");
        (
            out.status.code(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }

    fn command(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_cryptopulse"));
        // Only the settings given here: an inherited CRYPTOPULSE_* variable would change them.
        for (key, _) in std::env::vars() {
            if key.starts_with("CRYPTOPULSE_") || key.starts_with("LEPTOS_") {
                command.env_remove(key);
            }
        }
        command
            .current_dir(&self.dir)
            .envs(self.env.iter().cloned());
        command
    }
}

/// A running server process.
pub struct Server {
    child: Child,
    pub address: String,
    pub log: PathBuf,
}

impl Server {
    /// Starts the binary and waits (by reading its log) until it listens.
    pub async fn start(config: &ServerConfig) -> Self {
        static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let run = RUNS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let log = config.dir.join(format!("server-{run}.log"));
        let file = std::fs::File::create(&log).expect("log file");
        let child = config
            .command()
            .stdout(Stdio::from(file.try_clone().expect("log file")))
            .stderr(Stdio::from(file))
            .spawn()
            .expect("server starts");
        let mut server = Self {
            child,
            address: String::new(),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let text = std::fs::read_to_string(&server.log).unwrap_or_default();
            if let Some(address) = listening_address(&text) {
                server.address = address;
                return server;
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("the server exited ({status}) before listening:\n{text}");
            }
            assert!(
                Instant::now() < deadline,
                "the server did not listen within 60 s:\n{text}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGTERM, as a deploy or `systemctl stop` sends, and waits for the exit: the server
    /// finishes what it has started first.
    pub async fn stop(&mut self) -> std::process::ExitStatus {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(sent.success(), "SIGTERM was not delivered");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().expect("the server's status") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the server did not stop within 60 s of SIGTERM:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGKILL: no shutdown code runs.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Fails if the server log shows a panic or an answer of 500.
    pub fn assert_log_clean(&self) {
        let text = self.log_text();
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            // With the lines around it: a panic's message is on the line after.
            let context = lines[i.saturating_sub(3)..lines.len().min(i + 4)].join("\n");
            assert!(
                !line.contains("panicked") && !line.contains("\"status\":500"),
                "server log {}:\n{context}",
                self.log.display()
            );
        }
    }

    /// The log lines of the request `answer` answers (to explain a failed assertion).
    pub fn log_lines_of(&self, answer: &Answer) -> String {
        let Some(id) = &answer.request_id else {
            return String::new();
        };
        self.log_text()
            .lines()
            .filter(|line| line.contains(id.as_str()))
            .collect::<Vec<_>>()
            .join("\n")
    }

    pub fn client(&self) -> reqwest::Client {
        client_for(&self.address)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
        // A failed test shows what the server said last (its temporary directory goes away).
        if std::thread::panicking() {
            let text = self.log_text();
            let lines: Vec<&str> = text.lines().collect();
            eprintln!(
                "--- last lines of {}:\n{}",
                self.log.display(),
                lines[lines.len().saturating_sub(40)..].join("\n")
            );
        }
    }
}

fn listening_address(log: &str) -> Option<String> {
    let line = log
        .lines()
        .find(|l| l.contains("CryptoPulse listening on http://"))?;
    let start = line.find("listening on http://")? + "listening on ".len();
    let rest = &line[start..];
    let end = rest
        .find(|c: char| c == '"' || c.is_whitespace())
        .unwrap_or(rest.len());
    Some(rest[..end].to_owned())
}

/// A browser-like client for `address`: cookies, our Origin, no redirects, a bounded wait.
pub fn client_for(address: &str) -> reqwest::Client {
    let mut headers = HeaderMap::new();
    headers.insert(ORIGIN, HeaderValue::from_str(address).expect("origin"));
    reqwest::Client::builder()
        .cookie_store(true)
        .default_headers(headers)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

/// The answer to a server function call: status, request id, body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub request_id: Option<String>,
    pub body: String,
}

impl Answer {
    /// Reads a response to its end.
    pub async fn read(response: reqwest::Response) -> Result<Self, reqwest::Error> {
        let status = response.status().as_u16();
        let request_id = response
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        Ok(Self {
            status,
            request_id,
            body: response.text().await?,
        })
    }
}

/// POSTs form fields to the server function `endpoint`.
pub async fn call(
    client: &reqwest::Client,
    address: &str,
    endpoint: &str,
    form: &[(&str, &str)],
) -> Result<Answer, reqwest::Error> {
    let response = client
        .post(format!("{address}/api/{endpoint}"))
        .header(ORIGIN, address)
        .form(form)
        .send()
        .await?;
    Answer::read(response).await
}

pub async fn sign_up(
    client: &reqwest::Client,
    address: &str,
    email: &str,
) -> Result<Answer, reqwest::Error> {
    call(
        client,
        address,
        "auth/signup",
        &[
            ("email", email),
            ("password", PASSWORD),
            ("password_confirm", PASSWORD),
        ],
    )
    .await
}

/// A sign-up the server acknowledged (a session cookie came with it).
pub fn acknowledged(answer: &Answer) -> bool {
    matches!(answer.status, 200 | 302 | 303)
}

/// Direct database access for the checks after a run.
pub struct Db(pub DatabaseConnection);

impl Db {
    pub async fn connect(url: &str) -> Self {
        Self(Database::connect(url).await.expect("database for checks"))
    }

    pub async fn count(&self, sql: &str) -> i64 {
        let backend = self.0.get_database_backend();
        let row = self
            .0
            .query_one_raw(Statement::from_string(backend, sql.to_owned()))
            .await
            .expect(sql)
            .expect("row");
        row.try_get_by_index::<i64>(0).expect("count")
    }

    /// Rows of `sql`'s first column, as text.
    pub async fn strings(&self, sql: &str) -> Vec<String> {
        let backend = self.0.get_database_backend();
        self.0
            .query_all_raw(Statement::from_string(backend, sql.to_owned()))
            .await
            .expect(sql)
            .iter()
            .map(|row| row.try_get_by_index::<String>(0).expect("text"))
            .collect()
    }

    /// The chain is seq 1..N with no gap and no duplicate.
    pub async fn assert_chain_contiguous(&self) -> i64 {
        let count = self.count("SELECT COUNT(*) FROM audit_events").await;
        let distinct = self
            .count("SELECT COUNT(DISTINCT seq) FROM audit_events")
            .await;
        let max = self
            .count("SELECT COALESCE(MAX(seq), 0) FROM audit_events")
            .await;
        let min = self
            .count("SELECT COALESCE(MIN(seq), 1) FROM audit_events")
            .await;
        assert_eq!(count, distinct, "duplicate seq in the audit chain");
        assert_eq!((min, max), (1, count), "the audit chain has a gap");
        count
    }
}

/// Polls `probe` every 50 ms until it is true; returns how long that took, or panics after
/// `limit` naming `what`.
pub async fn wait_until<F, Fut>(what: &str, limit: Duration, mut probe: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    loop {
        if probe().await {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < limit,
            "{what}: not within {} s",
            limit.as_secs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `cryptopulse audit verify` against `config`'s database exits 0.
pub fn assert_audit_verifies(config: &ServerConfig) {
    let (code, text) = config.run_cli(&["audit", "verify"]);
    assert_eq!(code, Some(0), "audit verify failed:\n{text}");
}
