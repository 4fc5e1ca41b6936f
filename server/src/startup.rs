//! Builds the application (services, router, middleware) and runs it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use app::api::context::Services;
use app::shell;
use axum::Router;
use axum::extract::{ConnectInfo, FromRef};
use axum::middleware::{from_fn, from_fn_with_state};
use axum::serve::ListenerExt;
use domain::account::{AccountService, BackoffPolicy};
use domain::alerts::AlertService;
use domain::audit::checkpoints::load_or_create_report_key;
use domain::audit::service::{AuditPorts, AuditService};
use domain::audit::signing::ReportKey;
use domain::audit::{Actor, AuditDraft, AuditLog, Outcome, RequestMeta};
use domain::exchange::{Exchange, Exchanges};
use domain::keys::{KeyVaultPorts, KeyVaultService};
use domain::ports::{Clock, SystemClock};
use domain::stepup::{StepUpPolicy, StepUpPorts, StepUpService};
use domain::trading::{CircuitBreakers, TradingDeps, TradingService};
use domain::vault::Kms;
use http::{HeaderValue, Method, header};
use leptos::prelude::*;
use leptos_axum::{LeptosRoutes, file_and_error_handler_with_context};
use sea_orm::DatabaseConnection;
use secrecy::ExposeSecret;
use tokio::net::TcpListener;
use tokio_util::task::TaskTracker;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_sessions::cookie::SameSite;
use tower_sessions::{Expiry, SessionManagerLayer};
use webauthn_rs::prelude::WebauthnBuilder;

use crate::config::{KmsBackend, Settings};
use crate::exchange::{BinanceExchange, BinanceSettings, PaperExchange};
use crate::jobs::audit_jobs::TokioAuditJobs;
use crate::jobs::report_jobs::TokioReportJobs;
use crate::jobs::rewrap::TokioRewrapRunner;
use crate::jobs::{JobServices, Jobs, Schedule};
use crate::kms::{AwsKms, AwsKmsSettings, CachingKms, FileKms};
use crate::metrics::Metrics;
use crate::notify::{RationaleModel, WebhookNotifier};
use crate::security::hashing::Argon2Hasher;
use crate::security::middleware::{self, CspNonce, HeaderPolicy};
use crate::security::rate_limit::{self, RateLimits};
use crate::storage::checkpoints::{FileCheckpointJournal, SqlCheckpointStore, SqlReportKeyStore};
use crate::storage::stepup::SqlFactorStore;
use crate::storage::trading::SqlTradingStore;
use crate::storage::{
    self, AuditChain, SqlAccountStore, SqlAuditLog, SqlKeyStore, SqlLoginThrottle,
    SqlSecurityAlerts, SqlSessionStore,
};
use crate::visitor_pages::{VisitorPages, serve_visitor_pages};

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("database: {0}")]
    Database(#[from] sea_orm::DbErr),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("password hashing: {0}")]
    Hashing(String),
    #[error("audit log: {0}")]
    Audit(#[from] domain::ports::StoreError),
    #[error("key management: {0}")]
    Kms(String),
    #[error("exchanges: {0}")]
    Exchange(String),
    #[error("step-up: {0}")]
    StepUp(String),
}

/// Cloned for every request (leptos provides it as context): keep it a few refcount bumps.
#[derive(Debug, Clone, FromRef)]
struct AppState {
    leptos_options: LeptosOptions,
    services: Arc<Services>,
}

/// Everything the server and the CLI build from settings: database and services.
#[derive(Debug, Clone)]
pub struct Backend {
    pub db: DatabaseConnection,
    pub services: Services,
    /// The audit log itself, for the server's own events (start, stop) and tests.
    pub audit_log: Arc<dyn AuditLog>,
    /// Its writer (benchmarks and tests that load events in bulk record their head with it).
    pub audit_chain: AuditChain,
    pub sessions: SqlSessionStore,
    /// Login back-off counts (housekeeping forgets the stale ones).
    pub login_throttle: SqlLoginThrottle,
    pub metrics: Metrics,
    /// The built-in paper exchange (tests inject outages through it).
    pub paper: PaperExchange,
}

/// The KMS the settings ask for: the local master key (file or `master_key`) or AWS KMS,
/// behind the data-key cache.
pub async fn kms_from_settings(settings: &Settings) -> Result<Arc<dyn Kms>, StartupError> {
    let kms: Arc<dyn Kms> = match settings.kms.backend {
        KmsBackend::Local => match &settings.master_key {
            Some(value) => Arc::new(
                FileKms::from_env_value(value.expose_secret())
                    .map_err(|e| StartupError::Kms(e.to_string()))?,
            ),
            None => {
                // Creates the key file on first run; an existing one is only read.
                let path = crate::cli::ensure_master_key(&settings.data_dir)
                    .map_err(|e| StartupError::Kms(e.to_string()))?;
                Arc::new(FileKms::load(&path).map_err(|e| StartupError::Kms(e.to_string()))?)
            }
        },
        KmsBackend::Aws => {
            let aws = AwsKms::connect(AwsKmsSettings {
                key_id: settings.kms.aws_key_id.clone(),
                region: settings.kms.aws_region.clone(),
                endpoint: settings.kms.aws_endpoint.clone(),
            })
            .await
            .map_err(|e| StartupError::Kms(e.to_string()))?;
            // A disabled, missing or unreachable key stops startup rather than the first trade.
            let arn = aws
                .check()
                .await
                .map_err(|e| StartupError::Kms(e.to_string()))?;
            tracing::info!(key = %arn, "using AWS KMS");
            Arc::new(aws)
        }
    };
    let cache = Arc::new(CachingKms::new(
        kms,
        Duration::from_secs(u64::from(settings.kms.data_key_cache_seconds)),
    ));
    CachingKms::start_sweeper(&cache);
    Ok(cache)
}

fn exchanges_from_settings(
    settings: &Settings,
    paper: &PaperExchange,
    clock: Arc<dyn Clock>,
) -> Result<Exchanges, StartupError> {
    let mut exchanges: Vec<Arc<dyn Exchange>> = vec![Arc::new(paper.clone())];
    if settings.exchanges.binance_enabled {
        let binance = BinanceExchange::new(
            BinanceSettings {
                testnet_url: settings.exchanges.binance_testnet_url.clone(),
                live_url: settings.exchanges.binance_live_url.clone(),
                timeout: Duration::from_secs(u64::from(settings.exchanges.timeout_seconds)),
                ..BinanceSettings::default()
            },
            clock,
        )
        .map_err(|e| StartupError::Exchange(e.to_string()))?;
        exchanges.push(Arc::new(binance));
    }
    Ok(Exchanges::new(exchanges))
}

fn step_up_service(
    settings: &Settings,
    chain: &AuditChain,
    kms: Arc<dyn Kms>,
    audit: Arc<dyn domain::ports::AuditLog>,
    alerts: Arc<dyn domain::alerts::SecurityAlerts>,
    accounts: Arc<dyn domain::ports::AccountStore>,
    clock: Arc<dyn Clock>,
) -> Result<StepUpService, StartupError> {
    let invalid = |e: String| StartupError::StepUp(e);
    let (rp_id, origins) = settings
        .webauthn_rp()
        .ok_or_else(|| invalid("public_url has no domain name for WebAuthn".into()))?;
    let mut builder = WebauthnBuilder::new(&rp_id, &origins[0])
        .map_err(|e| invalid(format!("webauthn: {e}")))?
        .rp_name("CryptoPulse");
    for origin in &origins[1..] {
        builder = builder.append_allowed_origin(origin);
    }
    let webauthn = builder
        .build()
        .map_err(|e| invalid(format!("webauthn: {e}")))?;
    let threshold = settings
        .step_up
        .order_threshold()
        .ok_or_else(|| invalid("step_up.order_threshold is not a decimal".into()))?;
    let ports = StepUpPorts {
        store: Arc::new(SqlFactorStore::new(chain.clone(), clock.clone())),
        kms,
        audit,
        clock,
        alerts,
        accounts,
    };
    let policy = StepUpPolicy::new(
        time::Duration::minutes(i64::from(settings.step_up.window_minutes)),
        threshold,
    );
    Ok(StepUpService::new(ports, Arc::new(webauthn), policy))
}

impl Backend {
    /// Before the first append of a server (or a CLI command that writes): a head of record
    /// left unsigned by an older version is signed, if that is what it is (see
    /// [`AuditChain::sign_unsigned_head`]). Read-only commands leave it alone.
    pub async fn sign_unsigned_head(&self) -> Result<(), StartupError> {
        let unsigned = self
            .audit_log
            .recorded_head()
            .await?
            .is_some_and(|r| r.head.seq > 0 && r.signature.is_none());
        if !unsigned {
            return Ok(());
        }
        // Signed only over a chain that verifies up to it, checkpoints included (once, so the
        // whole scan is affordable): a record cleared over a rewritten chain is not an older
        // version's, and signing it would vouch for the rewrite.
        let verified = self.services.audit.verify_as_operator(None, |_| {}).await?;
        match verified {
            Err(broken) if broken.error.kind == domain::audit::BreakKind::UnsignedRecord => {}
            _ => return Ok(()),
        }
        self.audit_chain
            .sign_unsigned_head(self.services.clock.now())
            .await?;
        Ok(())
    }

    pub async fn connect(settings: &Settings, clock: Arc<dyn Clock>) -> Result<Self, StartupError> {
        let kms = kms_from_settings(settings).await?;
        Self::connect_with_kms(settings, clock, kms).await
    }

    /// As `connect`, with the KMS given (tests wrap it to inject faults).
    pub async fn connect_with_kms(
        settings: &Settings,
        clock: Arc<dyn Clock>,
        kms: Arc<dyn Kms>,
    ) -> Result<Self, StartupError> {
        let db = storage::connect(settings.database_url.expose_secret()).await?;
        // One writer for the audit chain, shared by every store, so their audited writes are
        // group-committed together.
        let chain = AuditChain::new(db.clone());
        let audit = Arc::new(SqlAuditLog::new(chain.clone(), clock.clone()));
        let idle_timeout =
            time::Duration::minutes(i64::from(settings.session.idle_timeout_minutes));
        let sessions = SqlSessionStore::new(chain.clone(), clock.clone(), idle_timeout);
        let hasher = Argon2Hasher::new(&settings.password_hashing)
            .map_err(|e| StartupError::Hashing(e.to_string()))?;
        let dummy_hash = hasher
            .dummy_hash()
            .await
            .map_err(|e| StartupError::Hashing(e.to_string()))?;
        let login = &settings.login;
        let max_wait = time::Duration::seconds(i64::from(login.max_backoff_seconds));
        let throttle = SqlLoginThrottle::new(
            chain.clone(),
            clock.clone(),
            BackoffPolicy {
                free_failures: login.account_free_failures,
                max_wait,
            },
            BackoffPolicy {
                free_failures: login.ip_free_failures,
                max_wait,
            },
        );
        let account_store: Arc<dyn domain::ports::AccountStore> =
            Arc::new(SqlAccountStore::new(chain.clone(), clock.clone()));
        let accounts = AccountService::new(
            account_store.clone(),
            audit.clone(),
            Arc::new(hasher),
            Arc::new(throttle.clone()),
            Arc::new(sessions.clone()),
            clock.clone(),
            dummy_hash,
        );
        // Opened (or made and sealed on first start) before anything is served or signed.
        let report_key = load_or_create_report_key(
            &SqlReportKeyStore::new(db.clone(), clock.clone()),
            kms.as_ref(),
        )
        .await
        .map_err(|e| StartupError::Kms(e.to_string()))?;
        chain.sign_heads_with(ReportKey::from_secret_bytes(*report_key.secret_bytes()));
        let metrics = Metrics::new();
        let kms_for_stepup = kms.clone();
        let alerts: Arc<dyn domain::alerts::SecurityAlerts> = Arc::new(SqlSecurityAlerts::new(
            chain.clone(),
            clock.clone(),
            metrics.clone(),
        ));
        let paper = PaperExchange::new(clock.clone());
        let exchanges = exchanges_from_settings(settings, &paper, clock.clone())?;
        let vault = KeyVaultService::new(
            KeyVaultPorts {
                keys: Arc::new(SqlKeyStore::new(chain.clone(), clock.clone())),
                kms,
                audit: audit.clone(),
                alerts: alerts.clone(),
                accounts: account_store.clone(),
                clock: clock.clone(),
            },
            exchanges.clone(),
        );
        let alert_service = AlertService::new(
            alerts.clone(),
            account_store.clone(),
            audit.clone(),
            clock.clone(),
        );
        let stepup = step_up_service(
            settings,
            &chain,
            kms_for_stepup,
            audit.clone(),
            alerts.clone(),
            account_store.clone(),
            clock.clone(),
        )?;
        let cool_down =
            time::Duration::seconds(i64::from(settings.trading.breaker_cool_down_seconds));
        // On PostgreSQL several app servers may share the database: a trader's placements are
        // serialised across them too. SQLite is one server's own file.
        let trader_locks: Option<Arc<dyn domain::trading::TraderLocks>> =
            if db.get_database_backend() == sea_orm::DbBackend::Postgres {
                Some(Arc::new(
                    storage::PgTraderLocks::connect(settings.database_url.expose_secret(), 16)
                        .await?,
                ))
            } else {
                None
            };
        let trading = TradingService::new(TradingDeps {
            store: Arc::new(SqlTradingStore::new(chain.clone(), clock.clone())),
            accounts: account_store.clone(),
            audit: audit.clone(),
            clock: clock.clone(),
            exchanges,
            vault: vault.clone(),
            stepup: stepup.clone(),
            breakers: CircuitBreakers::new(1, cool_down, time::Duration::minutes(5).max(cool_down)),
            alerts,
            trader_locks,
            notifier: Arc::new(WebhookNotifier::new(
                settings.trading.case_webhook_url.clone(),
                settings
                    .trading
                    .rationale_url
                    .clone()
                    .map(|base_url| RationaleModel {
                        base_url,
                        model: settings.trading.rationale_model.clone(),
                        api_key: settings.trading.rationale_api_key.clone(),
                    }),
            )),
        });
        let audit_service = AuditService::new(AuditPorts {
            log: audit.clone(),
            accounts: account_store,
            checkpoints: Arc::new(SqlCheckpointStore::new(chain.clone(), clock.clone())),
            journal: Arc::new(FileCheckpointJournal::new(
                &settings.data_dir,
                settings.audit.checkpoint_webhook_url.clone(),
            )),
            clock: clock.clone(),
            report_key,
        });
        let services = Services {
            stepup,
            accounts,
            security_alerts: alert_service,
            report_jobs: Arc::new(TokioReportJobs::new(audit_service.clone(), clock.clone())),
            audit_jobs: Arc::new(TokioAuditJobs::new(audit_service.clone())),
            audit: audit_service,
            clock,
            rewrap: Arc::new(TokioRewrapRunner::new(vault.clone())),
            vault,
            trading,
            absolute_session: time::Duration::hours(i64::from(
                settings.session.absolute_timeout_hours,
            )),
            secure_cookies: settings.is_https(),
        };
        Ok(Self {
            db,
            services,
            audit_log: audit,
            audit_chain: chain,
            sessions,
            login_throttle: throttle,
            metrics,
            paper,
        })
    }
}

#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    router: Router,
    backend: Backend,
    rate_limits: RateLimits,
    schedule: Schedule,
    /// Writes running on after their clients hung up (see `run_writes_to_completion`).
    writes: TaskTracker,
}

impl Application {
    /// Connects, migrates, binds the listener (port 0 picks a free one) and builds the router.
    pub async fn build(
        settings: &Settings,
        leptos_options: LeptosOptions,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StartupError> {
        let kms = kms_from_settings(settings).await?;
        Self::build_with_kms(settings, leptos_options, clock, kms).await
    }

    /// As `build`, with the KMS given.
    pub async fn build_with_kms(
        settings: &Settings,
        leptos_options: LeptosOptions,
        clock: Arc<dyn Clock>,
        kms: Arc<dyn Kms>,
    ) -> Result<Self, StartupError> {
        let backend = Backend::connect_with_kms(settings, clock, kms).await?;
        backend.sign_unsigned_head().await?;
        let listener =
            TcpListener::bind(settings.bind)
                .await
                .map_err(|source| StartupError::Bind {
                    addr: settings.bind,
                    source,
                })?;
        let rate_limits = RateLimits::new(
            settings.rate_limit.requests_per_minute,
            settings.rate_limit.auth_per_minute,
            settings.rate_limit.agent_per_minute_per_token,
        );
        let mut origins = settings.allowed_origins();
        if let Ok(local) = listener.local_addr() {
            // The address actually bound is always ours (matters when port 0 was asked for).
            if local.ip().is_loopback() {
                origins.push(format!("http://{local}"));
            }
        }
        let writes = TaskTracker::new();
        let router = router(
            settings,
            origins,
            leptos_options,
            &backend,
            rate_limits.clone(),
            writes.clone(),
        );
        backend
            .audit_log
            .record(
                AuditDraft::new(
                    Actor::system("server"),
                    domain::audit_action::AuditAction::SystemStart,
                    Outcome::Success,
                    RequestMeta::default(),
                )
                .detail("version", env!("CARGO_PKG_VERSION"))
                .detail(crate::storage::HEADS_SIGNED, true),
            )
            .await?;
        Ok(Self {
            listener,
            router,
            backend,
            rate_limits,
            schedule: Schedule::from_settings(settings),
            writes,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    pub fn backend(&self) -> &Backend {
        &self.backend
    }

    /// Serves until `shutdown` resolves, then lets open requests, and the writes whose clients
    /// hung up, finish for up to [`SHUTDOWN_GRACE`], then records `system.stop`.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let jobs = Jobs::start(
            self.schedule,
            JobServices {
                sessions: self.backend.sessions.clone(),
                login_throttle: self.backend.login_throttle.clone(),
                rate_limits: self.rate_limits.clone(),
                trading: self.backend.services.trading.clone(),
                paper: self.backend.paper.clone(),
                vault: self.backend.services.vault.clone(),
                audit: self.backend.services.audit.clone(),
            },
        );
        let service = self
            .router
            .into_make_service_with_connect_info::<SocketAddr>();
        // Pages stream in several writes: without TCP_NODELAY, Nagle's algorithm holds the last
        // one back until the client's delayed ACK (~40 ms per response).
        let listener = self.listener.tap_io(|tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(error = %e, "cannot set TCP_NODELAY");
            }
        });
        let (stopping, stop_asked) = tokio::sync::oneshot::channel::<()>();
        let serving = axum::serve(listener, service).with_graceful_shutdown(async move {
            shutdown.await;
            let _ = stopping.send(());
        });
        let writes = self.writes.clone();
        // Open connections end first, then the writes whose clients had already hung up: an
        // order recorded but not yet sent is carried through, not cut off by the exit.
        let drained = async move {
            let served = serving.await;
            writes.close();
            writes.wait().await;
            served
        };
        let result = tokio::select! {
            result = drained => result,
            () = async {
                match stop_asked.await {
                    Ok(()) => tokio::time::sleep(SHUTDOWN_GRACE).await,
                    // Serving ended without being asked to: its own branch has the result.
                    Err(_) => std::future::pending().await,
                }
            } => {
                tracing::warn!(
                    grace_seconds = SHUTDOWN_GRACE.as_secs(),
                    "requests still open after the shutdown grace period; stopping without them"
                );
                Ok(())
            }
        };
        jobs.stop();
        let stop = AuditDraft::new(
            Actor::system("server"),
            domain::audit_action::AuditAction::SystemStop,
            Outcome::Success,
            RequestMeta::default(),
        );
        if let Err(e) = self.backend.audit_log.record(stop).await {
            tracing::error!(error = %e, "could not record system.stop");
        }
        if let Some(head) = self.backend.audit_chain.last_committed_head() {
            match self
                .backend
                .services
                .audit
                .journal_stopping_head(head)
                .await
            {
                Ok(checkpoint) => {
                    tracing::info!(seq = checkpoint.seq, "journalled the audit head at stop")
                }
                Err(e) => tracing::error!(error = %e, "could not journal the audit head at stop"),
            }
        }
        result
    }
}

/// How long a stopping server waits for open requests (a page being rendered, a report being
/// downloaded) before it stops anyway: a client that never finishes its request, or never
/// reads its response, must not keep the server from stopping.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

fn router(
    settings: &Settings,
    origins: Vec<String>,
    leptos_options: LeptosOptions,
    backend: &Backend,
    rate_limits: RateLimits,
    writes: TaskTracker,
) -> Router {
    // Shared, not copied per request: cloning `Services` bumps dozens of reference counts.
    let services = Arc::new(backend.services.clone());
    let state = AppState {
        leptos_options: leptos_options.clone(),
        services: services.clone(),
    };
    let context = move || {
        provide_context(services.clone());
        provide_context(app::api::context::RequestUser::default());
        // Use the nonce the security-header middleware put in this response's CSP. Read in
        // place: `use_context` would clone the request's whole head (headers, extensions).
        if let Some(Some(nonce)) = with_context::<http::request::Parts, _>(|parts| {
            parts.extensions.get::<CspNonce>().map(|n| n.0.clone())
        }) {
            provide_context(leptos::nonce::Nonce::from_value(nonce));
        }
    };
    let routes = app::route_list();
    let session_cookie = if settings.is_https() {
        "__Host-cryptopulse_session"
    } else {
        "cryptopulse_session"
    };
    let session_layer = SessionManagerLayer::new(backend.sessions.clone())
        .with_name(session_cookie)
        .with_secure(settings.is_https())
        .with_http_only(true)
        .with_same_site(SameSite::Strict)
        .with_path("/")
        .with_always_save(true)
        .with_expiry(Expiry::OnInactivity(time::Duration::minutes(i64::from(
            settings.session.idle_timeout_minutes,
        ))));
    let cors = CorsLayer::new()
        .allow_origin(AllowOrigin::list(
            origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()),
        ))
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([header::CONTENT_TYPE, header::ACCEPT])
        .allow_credentials(true);

    let metrics = backend.metrics.clone();
    let report_key = backend.services.audit.report_public_key();
    let pages = Router::new()
        .route(
            "/metrics",
            axum::routing::get(
                move |connect: ConnectInfo<SocketAddr>, headers: http::HeaderMap| {
                    let metrics = metrics.clone();
                    async move { metrics_endpoint(&metrics, connect.0, &headers) }
                },
            ),
        )
        .route(
            "/.well-known/cryptopulse-report-key",
            axum::routing::get(move || {
                let key = report_key.clone();
                async move { report_key_endpoint(&key) }
            }),
        )
        .leptos_routes_with_context(&state, routes, context.clone(), {
            let options = leptos_options.clone();
            move || shell(options.clone())
        })
        .fallback(file_and_error_handler_with_context::<AppState, _>(
            context, shell,
        ))
        .with_state(state)
        // Report downloads: plain routes behind the same session and security layers.
        .merge(crate::reports::routes::router(backend.services.clone()));
    pages
        // Listed innermost first: each layer wraps the ones above it.
        .layer(from_fn_with_state(
            middleware::PAGE_RENDER_BUDGET,
            middleware::page_render_deadline,
        ))
        // Outside the render deadline, which bounds a first render; a kept page needs no bound.
        .layer(from_fn_with_state(
            VisitorPages::new(session_cookie, &backend.metrics),
            serve_visitor_pages,
        ))
        .layer(from_fn(middleware::server_fn_status))
        .layer(session_layer)
        .layer(from_fn(middleware::session_store_outage))
        .layer(from_fn_with_state(
            Arc::new(origins),
            middleware::require_same_origin,
        ))
        // The bearer-token agent API sits outside the session and same-origin layers (agents
        // send no cookies and no Origin) and inside request context, rate limits and headers.
        .merge(crate::agent_api::router(
            backend.services.trading.clone(),
            rate_limits.clone(),
        ))
        // /pkg files: also outside the session layer, with their own cache headers.
        .merge(crate::assets::router(&leptos_options))
        .layer(from_fn_with_state(rate_limits, rate_limit::enforce))
        .layer(cors)
        .layer(from_fn_with_state(
            Arc::new(HeaderPolicy {
                https: settings.is_https(),
            }),
            middleware::security_headers,
        ))
        .layer(from_fn_with_state(
            writes,
            middleware::run_writes_to_completion,
        ))
        .layer(from_fn_with_state(
            settings.trust_forwarded_for,
            middleware::request_context,
        ))
}

/// The public half of the report key, for anyone checking a report or checkpoint: public and
/// cacheable (it changes only if the key row is replaced).
fn report_key_endpoint(key: &domain::audit::signing::ReportPublicKey) -> axum::response::Response {
    use axum::response::IntoResponse;
    (
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        format!("{key}\n"),
    )
        .into_response()
}

/// Metrics are for the operator's scraper on this host: loopback peers only, and not through a
/// forwarding proxy (which would make every visitor look local).
fn metrics_endpoint(
    metrics: &Metrics,
    peer: SocketAddr,
    headers: &http::HeaderMap,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    if !middleware::canonical_ip(peer.ip()).is_loopback() || headers.contains_key("x-forwarded-for")
    {
        return (http::StatusCode::NOT_FOUND, "Not found").into_response();
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        metrics.render(),
    )
        .into_response()
}

/// The production entry point: serve until Ctrl-C or SIGTERM.
pub async fn serve(
    settings: Settings,
    leptos_options: LeptosOptions,
) -> Result<(), Box<dyn std::error::Error>> {
    let app = Application::build(&settings, leptos_options, Arc::new(SystemClock)).await?;
    tracing::info!(address = %app.local_addr(), "CryptoPulse listening on http://{}", app.local_addr());
    app.run_until(shutdown_signal()).await?;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
