use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use domain::ports::Clock;
use leptos::config::LeptosOptions;
use reqwest::header::{HeaderMap, HeaderValue, ORIGIN};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, Statement};
use secrecy::SecretString;
use server::config::{PasswordHashingSettings, Settings};
use server::startup::{Application, Backend};
use time::OffsetDateTime;

/// A clock tests can move forward.
#[derive(Debug, Default)]
pub struct TestClock {
    offset_seconds: AtomicI64,
}

impl TestClock {
    pub fn advance(&self, by: time::Duration) {
        self.offset_seconds
            .fetch_add(by.whole_seconds(), Ordering::SeqCst);
    }
}

impl Clock for TestClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
            + time::Duration::seconds(self.offset_seconds.load(Ordering::SeqCst))
    }
}

pub const PASSWORD: &str = "correct horse battery staple";

pub struct TestApp {
    pub address: String,
    pub settings: Settings,
    pub clock: Arc<TestClock>,
    pub backend: Backend,
    pub client: reqwest::Client,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    _dir: Arc<tempfile::TempDir>,
}

/// A database for one test: a fresh PostgreSQL database when `CRYPTOPULSE_TEST_PG_URL` is
/// set, otherwise a SQLite file in a temporary directory.
#[derive(Clone)]
pub struct TestDatabase {
    pub url: String,
    pub dir: Arc<tempfile::TempDir>,
}

impl TestDatabase {
    pub async fn new() -> Self {
        let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
        let url = match std::env::var("CRYPTOPULSE_TEST_PG_URL") {
            Ok(admin_url) if !admin_url.is_empty() => {
                let name = format!("cryptopulse_test_{}", uuid::Uuid::new_v4().simple());
                let admin = Database::connect(&admin_url)
                    .await
                    .expect("CRYPTOPULSE_TEST_PG_URL must be reachable");
                admin
                    .execute_unprepared(&format!("CREATE DATABASE {name}"))
                    .await
                    .expect("create test database");
                admin.close().await.ok();
                let base = admin_url
                    .rsplit_once('/')
                    .map(|(base, _)| base)
                    .unwrap_or(&admin_url);
                format!("{base}/{name}")
            }
            _ => format!("sqlite://{}/test.db?mode=rwc", dir.path().display()),
        };
        Self { url, dir }
    }
}

pub fn is_postgres() -> bool {
    std::env::var("CRYPTOPULSE_TEST_PG_URL").is_ok_and(|v| !v.is_empty())
}

pub fn test_settings(db: &TestDatabase) -> Settings {
    Settings {
        bind: "127.0.0.1:0".parse().expect("addr"),
        database_url: SecretString::from(db.url.clone()),
        data_dir: db.dir.path().join("data"),
        // Cheap hashing keeps the suite fast; production parameters are tested in config.
        password_hashing: PasswordHashingSettings {
            memory_kib: 1024,
            iterations: 1,
            parallelism: 1,
        },
        // Tests drive `retry_held`/`refresh_open` themselves; the background job (every 2 s in
        // production) would race them for held orders. At its slowest it runs once, at startup.
        trading: server::config::TradingSettings {
            job_interval_seconds: 60,
            ..Default::default()
        },
        ..Settings::default()
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(customise: impl FnOnce(&mut Settings)) -> TestApp {
    let db = TestDatabase::new().await;
    let mut settings = test_settings(&db);
    customise(&mut settings);
    spawn_on(db, settings, Arc::new(TestClock::default())).await
}

/// Starts the app on `db` with `settings`.
pub async fn spawn_on(db: TestDatabase, settings: Settings, clock: Arc<TestClock>) -> TestApp {
    let kms = server::startup::kms_from_settings(&settings)
        .await
        .expect("local KMS");
    spawn_with_kms(db, settings, clock, kms).await
}

/// Starts the app with its local KMS behind a switch that can make it fail.
pub async fn spawn_app_with_faulty_kms() -> (TestApp, Arc<server::kms::FaultyKms>) {
    let db = TestDatabase::new().await;
    let settings = test_settings(&db);
    let inner = server::startup::kms_from_settings(&settings)
        .await
        .expect("local KMS");
    let faulty = Arc::new(server::kms::FaultyKms::new(inner));
    let app = spawn_with_kms(db, settings, Arc::new(TestClock::default()), faulty.clone()).await;
    (app, faulty)
}

pub async fn spawn_with_kms(
    db: TestDatabase,
    settings: Settings,
    clock: Arc<TestClock>,
    kms: Arc<dyn domain::vault::Kms>,
) -> TestApp {
    let leptos_options = LeptosOptions::builder()
        .output_name("cryptopulse")
        .site_root(db.dir.path().join("site").display().to_string())
        .build();
    // Bind first, then learn the port: readiness without sleeping.
    let app = Application::build_with_kms(&settings, leptos_options, clock.clone(), kms)
        .await
        .expect("app builds");
    let address = format!("http://{}", app.local_addr());
    let backend = app.backend().clone();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async move {
        let _ = rx.await;
    }));
    TestApp {
        client: client_for(&address),
        address,
        settings,
        clock,
        backend,
        shutdown: Some(tx),
        server: Some(server),
        _dir: db.dir,
    }
}

/// A browser-like client: keeps cookies and sends our Origin on every request.
pub fn client_for(address: &str) -> reqwest::Client {
    let mut headers = HeaderMap::new();
    headers.insert(ORIGIN, HeaderValue::from_str(address).expect("origin"));
    reqwest::Client::builder()
        .cookie_store(true)
        .default_headers(headers)
        .redirect(reqwest::redirect::Policy::none())
        // A stalled answer (nothing for a minute) fails its test with this request named, rather
        // than hanging the suite. Not a total timeout: a 200k-row report streams for longer than
        // that in a debug build on a busy 2-core machine, and only silence is a failure.
        .connect_timeout(std::time::Duration::from_secs(10))
        .read_timeout(std::time::Duration::from_secs(60))
        .build()
        .expect("client")
}

impl TestApp {
    pub fn new_client(&self) -> reqwest::Client {
        client_for(&self.address)
    }

    pub fn db(&self) -> &DatabaseConnection {
        &self.backend.db
    }

    /// Calls a server function with form fields, as the browser does.
    pub async fn call(
        &self,
        client: &reqwest::Client,
        endpoint: &str,
        form: &[(&str, &str)],
    ) -> reqwest::Response {
        client
            .post(format!("{}/api/{endpoint}", self.address))
            .form(form)
            .send()
            .await
            .expect("request sent")
    }

    /// A server function called from `ip` (for apps that trust `X-Forwarded-For`).
    pub async fn call_from(
        &self,
        client: &reqwest::Client,
        ip: &str,
        endpoint: &str,
        form: &[(&str, &str)],
    ) -> reqwest::Response {
        client
            .post(format!("{}/api/{endpoint}", self.address))
            .header("x-forwarded-for", ip)
            .form(form)
            .send()
            .await
            .expect("request sent")
    }

    pub async fn sign_up(&self, client: &reqwest::Client, email: &str) -> reqwest::Response {
        self.call(
            client,
            "auth/signup",
            &[
                ("email", email),
                ("password", PASSWORD),
                ("password_confirm", PASSWORD),
            ],
        )
        .await
    }

    pub async fn log_in(
        &self,
        client: &reqwest::Client,
        email: &str,
        password: &str,
    ) -> reqwest::Response {
        self.call(
            client,
            "auth/login",
            &[("email", email), ("password", password)],
        )
        .await
    }

    /// The signed-in user's JSON, or `Value::Null`.
    pub async fn who_am_i(&self, client: &reqwest::Client) -> serde_json::Value {
        let response = self.call(client, "auth/me", &[]).await;
        assert_eq!(response.status(), 200);
        response.json().await.expect("json")
    }

    /// Creates a user with `role` directly through the account service, then signs in a new client.
    pub async fn signed_in_as(&self, email: &str, role: domain::account::Role) -> reqwest::Client {
        use domain::account::{Email, Password};
        use domain::audit::{Actor, RequestMeta};
        self.backend
            .services
            .accounts
            .sign_up(
                Email::parse(email).expect("email"),
                Password::parse(PASSWORD.into()).expect("password"),
                role,
                Actor::system("test"),
                RequestMeta::default(),
            )
            .await
            .expect("user created");
        let client = self.new_client();
        assert_eq!(self.log_in(&client, email, PASSWORD).await.status(), 200);
        client
    }

    pub async fn count(&self, sql: &str) -> i64 {
        scalar(self.db(), sql).await
    }

    /// One text cell (or `None` for NULL) from `sql`.
    pub async fn text(&self, sql: &str) -> Option<String> {
        let backend = self.db().get_database_backend();
        self.db()
            .query_one_raw(Statement::from_string(backend, sql.to_owned()))
            .await
            .expect("query")
            .expect("row")
            .try_get_by_index::<Option<String>>(0)
            .expect("text column")
    }

    /// The signed head of record as stored: (seq, hash, signature).
    pub async fn head_of_record(&self) -> (i64, String, String) {
        let column = |name: &str| format!("SELECT {name} FROM audit_chain_lock WHERE id = 1");
        (
            self.count(&column("head_seq")).await,
            self.text(&column("head_hash")).await.expect("hash"),
            self.text(&column("head_signature"))
                .await
                .expect("signature"),
        )
    }

    pub async fn exec(&self, sql: &str) {
        self.db().execute_unprepared(sql).await.expect(sql);
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            server
                .await
                .expect("server task")
                .expect("server stopped cleanly");
        }
    }
}

/// The one integer `sql` selects, on any connection (one opened while the app is stopped, say).
pub async fn scalar(db: &DatabaseConnection, sql: &str) -> i64 {
    let backend = db.get_database_backend();
    let row = db
        .query_one_raw(Statement::from_string(backend, sql.to_owned()))
        .await
        .expect("query")
        .expect("row");
    row.try_get_by_index::<i64>(0).expect("an integer")
}

/// The origin security-key ceremonies run on in tests: the default `public_url`.
pub const WEBAUTHN_ORIGIN: &str = "http://localhost:3000";

/// A software security key (webauthn-authenticator-rs), with user verification.
pub fn soft_key() -> webauthn_authenticator_rs::softtoken::SoftToken {
    webauthn_authenticator_rs::softtoken::SoftToken::new(true)
        .expect("soft token")
        .0
}

impl TestApp {
    /// Registers `key` for the signed-in `client` under `name`; returns the response.
    pub async fn register_key(
        &self,
        client: &reqwest::Client,
        key: &mut webauthn_authenticator_rs::softtoken::SoftToken,
        name: &str,
    ) -> reqwest::Response {
        use webauthn_authenticator_rs::WebauthnAuthenticator;
        let options = self.call(client, "stepup/key-options", &[]).await;
        if options.status() != 200 {
            return options;
        }
        let options: String = options.json().await.expect("options json");
        let options = serde_json::from_str(&options).expect("creation options");
        let origin = url::Url::parse(WEBAUTHN_ORIGIN).expect("origin");
        let credential = key
            .do_registration(origin, options)
            .expect("software key registers");
        let credential = serde_json::to_string(&credential).expect("credential json");
        self.call(
            client,
            "stepup/key-register",
            &[("name", name), ("credential", &credential)],
        )
        .await
    }

    /// Asks for step-up options and answers them with `key`; returns the assertion JSON.
    pub async fn key_assertion(
        &self,
        client: &reqwest::Client,
        key: &mut webauthn_authenticator_rs::softtoken::SoftToken,
    ) -> String {
        let options = self.call(client, "stepup/options", &[]).await;
        assert_eq!(options.status(), 200);
        let options: serde_json::Value = options.json().await.expect("json");
        let request = options["webauthn"].as_str().expect("webauthn options");
        sign_request(key, request)
    }

    /// A full step-up with `key`; returns the response.
    pub async fn step_up_with_key(
        &self,
        client: &reqwest::Client,
        key: &mut webauthn_authenticator_rs::softtoken::SoftToken,
    ) -> reqwest::Response {
        let assertion = self.key_assertion(client, key).await;
        self.call(
            client,
            "stepup/verify",
            &[("method", "security-key"), ("response", &assertion)],
        )
        .await
    }

    /// An admin, signed in, with a registered security key and an open privilege window.
    pub async fn admin_with_key(&self, email: &str) -> reqwest::Client {
        let admin = self.signed_in_as(email, domain::account::Role::Admin).await;
        let mut key = soft_key();
        assert_eq!(
            self.register_key(&admin, &mut key, "Admin key")
                .await
                .status(),
            200
        );
        assert_eq!(self.step_up_with_key(&admin, &mut key).await.status(), 200);
        admin
    }
}

/// Signs WebAuthn request options (JSON) with `key`; returns the assertion JSON.
pub fn sign_request(
    key: &mut webauthn_authenticator_rs::softtoken::SoftToken,
    request_json: &str,
) -> String {
    use webauthn_authenticator_rs::WebauthnAuthenticator;
    let request = serde_json::from_str(request_json).expect("request options");
    let origin = url::Url::parse(WEBAUTHN_ORIGIN).expect("origin");
    let assertion = key
        .do_authentication(origin, request)
        .expect("software key signs");
    serde_json::to_string(&assertion).expect("assertion json")
}

impl TestApp {
    /// Gives the signed-in `client` a first factor (a software security key, allowed right
    /// after sign-in) and opens its privilege window with it; returns the key.
    pub async fn stepped_up_with_new_key(
        &self,
        client: &reqwest::Client,
    ) -> webauthn_authenticator_rs::softtoken::SoftToken {
        let mut key = soft_key();
        assert_eq!(
            self.register_key(client, &mut key, "Test key")
                .await
                .status(),
            200
        );
        assert_eq!(self.step_up_with_key(client, &mut key).await.status(), 200);
        key
    }
}
