//! Typed, layered configuration: defaults → optional TOML file → `CRYPTOPULSE_*` environment
//! (a `.env` file is read into the environment first by `main`). Loaded once at startup; an
//! unknown or invalid setting stops startup with a message naming it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// Environment variables with our prefix that are not settings (read elsewhere).
const NOT_SETTINGS: [&str; 5] = [
    "config",
    "test_pg_url",
    "test_moto_server",
    "admin_password",
    "cache_dir",
];

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Address to listen on; loopback unless deliberately changed.
    pub bind: SocketAddr,
    /// The URL people use to reach the app, e.g. `https://pulse.example.com`. Its scheme decides
    /// whether cookies are `Secure` and HSTS is sent.
    pub public_url: String,
    /// Further origins allowed to make state-changing requests (e.g. `http://127.0.0.1:3000`
    /// beside `http://localhost:3000`).
    pub extra_origins: Vec<String>,
    pub database_url: SecretString,
    /// Where the local master key and the SQLite file live (git-ignored).
    pub data_dir: PathBuf,
    /// Trust the last `X-Forwarded-For` entry as the client address (only behind a proxy).
    pub trust_forwarded_for: bool,
    pub log_format: LogFormat,
    pub log_level: String,
    pub session: SessionSettings,
    pub login: LoginSettings,
    pub rate_limit: RateLimitSettings,
    pub password_hashing: PasswordHashingSettings,
    /// The local KMS master key (`<version>:<64 hex>` lines, or one bare 64-hex key), instead
    /// of the key file in `data_dir`. Never commit it.
    pub master_key: Option<SecretString>,
    pub kms: KmsSettings,
    pub exchanges: ExchangeSettings,
    pub vault: VaultSettings,
    pub step_up: StepUpSettings,
    pub trading: TradingSettings,
    pub audit: AuditSettings,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditSettings {
    /// How often the chain head is signed when it moved since the latest checkpoint (minutes,
    /// at most a day); 0 turns the periodic checkpoint off (on-demand ones still work).
    pub checkpoint_interval_minutes: u32,
    /// Where each new checkpoint is also POSTed as JSON (best effort); off when empty. The
    /// append-only copy is `<data_dir>/audit-checkpoints.jsonl`.
    pub checkpoint_webhook_url: Option<String>,
}

impl Default for AuditSettings {
    fn default() -> Self {
        Self {
            checkpoint_interval_minutes: 10,
            checkpoint_webhook_url: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TradingSettings {
    /// How often held orders are retried and resting paper orders matched (1 to 60 s).
    pub job_interval_seconds: u32,
    /// Seconds trading on an exchange pauses after an outage (doubling while it lasts).
    pub breaker_cool_down_seconds: u32,
    /// Where new anomaly cases are POSTed as JSON (no personal data beyond ids); off when empty.
    pub case_webhook_url: Option<String>,
    /// An OpenAI-compatible chat-completions base URL (e.g. `http://127.0.0.1:8080/v1`) that
    /// writes an advisory rationale for reviewers; off when empty.
    pub rationale_url: Option<String>,
    pub rationale_model: String,
    /// Bearer key for that endpoint, if it needs one (env or secret file only).
    pub rationale_api_key: Option<SecretString>,
}

impl Default for TradingSettings {
    fn default() -> Self {
        Self {
            job_interval_seconds: 2,
            breaker_cool_down_seconds: 10,
            case_webhook_url: None,
            rationale_url: None,
            rationale_model: "gpt-4o-mini".into(),
            rationale_api_key: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StepUpSettings {
    /// How long a step-up keeps a session privileged (1 to 60 minutes).
    pub window_minutes: u32,
    /// Orders with a notional (quantity × price, in quote currency) above this need an approval
    /// bound to the order.
    #[serde(deserialize_with = "amount_text")]
    pub order_threshold: String,
    /// The WebAuthn relying-party id; the host of `public_url` when empty. Security keys are
    /// bound to it: changing it later strands every registered key.
    pub rp_id: Option<String>,
}

/// An amount as text: written as a string (`"10000.5"`) or as a number, which is how an
/// environment variable (`CRYPTOPULSE_STEP_UP__ORDER_THRESHOLD=5000`) or TOML gives it.
fn amount_text<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Written {
        Text(String),
        Whole(i64),
        Fraction(f64),
    }
    Ok(match Written::deserialize(deserializer)? {
        Written::Text(text) => text,
        Written::Whole(whole) => whole.to_string(),
        Written::Fraction(fraction) => fraction.to_string(),
    })
}

impl Default for StepUpSettings {
    fn default() -> Self {
        Self {
            window_minutes: 10,
            order_threshold: "10000".into(),
            rp_id: None,
        }
    }
}

impl StepUpSettings {
    pub fn order_threshold(&self) -> Option<rust_decimal::Decimal> {
        self.order_threshold
            .trim()
            .parse::<rust_decimal::Decimal>()
            .ok()
            .filter(|d| *d >= rust_decimal::Decimal::ZERO)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KmsBackend {
    /// A master key file in `data_dir` (or `master_key`).
    Local,
    Aws,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KmsSettings {
    pub backend: KmsBackend,
    /// Key id or ARN that wraps new data keys (AWS backend).
    pub aws_key_id: String,
    pub aws_region: String,
    /// e.g. a VPC endpoint or a local stand-in; the SDK default when empty.
    pub aws_endpoint: Option<String>,
    /// How long an unwrapped data key is kept in memory for further decrypts (0: never).
    pub data_key_cache_seconds: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExchangeSettings {
    /// Offer Binance besides the built-in paper exchange.
    pub binance_enabled: bool,
    pub binance_testnet_url: String,
    pub binance_live_url: String,
    pub timeout_seconds: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VaultSettings {
    /// How often every stored key's permissions are asked again; 0 turns the job off.
    pub recheck_interval_minutes: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Json,
    Pretty,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SessionSettings {
    /// A session unused for this long ends.
    pub idle_timeout_minutes: u32,
    /// A session ends this long after sign-in, however busy.
    pub absolute_timeout_hours: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoginSettings {
    /// Failures per account before backoff starts.
    pub account_free_failures: u32,
    /// Failures per client address before backoff starts.
    pub ip_free_failures: u32,
    pub max_backoff_seconds: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitSettings {
    /// Requests per minute per client address, all routes.
    pub requests_per_minute: u32,
    /// Sign-up and login attempts per minute per client address.
    pub auth_per_minute: u32,
    /// Agent API requests per minute per token, from whatever addresses.
    pub agent_per_minute_per_token: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PasswordHashingSettings {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 3000)),
            public_url: "http://localhost:3000".into(),
            extra_origins: vec!["http://127.0.0.1:3000".into()],
            database_url: SecretString::from("sqlite://data/cryptopulse.db?mode=rwc"),
            data_dir: PathBuf::from("data"),
            trust_forwarded_for: false,
            log_format: LogFormat::Json,
            log_level: "info".into(),
            session: SessionSettings::default(),
            login: LoginSettings::default(),
            rate_limit: RateLimitSettings::default(),
            password_hashing: PasswordHashingSettings::default(),
            master_key: None,
            kms: KmsSettings::default(),
            exchanges: ExchangeSettings::default(),
            vault: VaultSettings::default(),
            step_up: StepUpSettings::default(),
            trading: TradingSettings::default(),
            audit: AuditSettings::default(),
        }
    }
}

impl Default for KmsSettings {
    fn default() -> Self {
        Self {
            backend: KmsBackend::Local,
            aws_key_id: String::new(),
            aws_region: "us-east-1".into(),
            aws_endpoint: None,
            data_key_cache_seconds: 60,
        }
    }
}

impl Default for ExchangeSettings {
    fn default() -> Self {
        Self {
            binance_enabled: true,
            binance_testnet_url: "https://testnet.binance.vision".into(),
            binance_live_url: "https://api.binance.com".into(),
            timeout_seconds: 10,
        }
    }
}

impl Default for VaultSettings {
    fn default() -> Self {
        Self {
            recheck_interval_minutes: 360,
        }
    }
}

impl Default for SessionSettings {
    fn default() -> Self {
        Self {
            idle_timeout_minutes: 30,
            absolute_timeout_hours: 12,
        }
    }
}

impl Default for LoginSettings {
    fn default() -> Self {
        Self {
            account_free_failures: 5,
            ip_free_failures: 20,
            max_backoff_seconds: 900,
        }
    }
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        Self {
            requests_per_minute: 600,
            auth_per_minute: 20,
            agent_per_minute_per_token: 120,
        }
    }
}

impl Default for PasswordHashingSettings {
    fn default() -> Self {
        // OWASP's argon2id recommendation (19 MiB, 2 passes, 1 lane).
        Self {
            memory_kib: 19_456,
            iterations: 2,
            parallelism: 1,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration error: {0}")]
    Load(Box<figment::Error>),
    #[error("configuration error: {0}")]
    Invalid(String),
}

impl Settings {
    /// Loads defaults, then `file` if given, then `CRYPTOPULSE_*` variables (nested keys with
    /// `__`, e.g. `CRYPTOPULSE_SESSION__IDLE_TIMEOUT_MINUTES`).
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut figment = Figment::new();
        if let Some(file) = file {
            if !file.exists() {
                return Err(ConfigError::Invalid(format!(
                    "config file {} does not exist",
                    file.display()
                )));
            }
            figment = figment.merge(Toml::file(file));
        }
        figment = figment.merge(
            Env::prefixed("CRYPTOPULSE_")
                .ignore(&NOT_SETTINGS)
                .split("__"),
        );
        let settings: Settings = figment
            .extract()
            .map_err(|e| ConfigError::Load(Box::new(e)))?;
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |msg: String| Err(ConfigError::Invalid(msg));
        for origin in std::iter::once(&self.public_url).chain(&self.extra_origins) {
            if parse_origin(origin).is_none() {
                return invalid(format!(
                    "`{origin}` is not an origin like https://host[:port]"
                ));
            }
        }
        let url = self.database_url.expose_secret();
        if !(url.starts_with("sqlite:")
            || url.starts_with("postgres://")
            || url.starts_with("postgresql://"))
        {
            return invalid(
                "database_url must start with sqlite:, postgres:// or postgresql://".into(),
            );
        }
        if self.session.idle_timeout_minutes == 0 || self.session.absolute_timeout_hours == 0 {
            return invalid("session timeouts must be positive".into());
        }
        if self.session.idle_timeout_minutes as u64
            > self.session.absolute_timeout_hours as u64 * 60
        {
            return invalid(
                "session.idle_timeout_minutes must not exceed the absolute timeout".into(),
            );
        }
        if self.session.absolute_timeout_hours > 24 * 366 {
            return invalid("session.absolute_timeout_hours must be at most a year".into());
        }
        if self.login.max_backoff_seconds > 86_400 {
            return invalid("login.max_backoff_seconds must be at most a day".into());
        }
        let limits = &self.rate_limit;
        if limits.requests_per_minute == 0
            || limits.auth_per_minute == 0
            || limits.agent_per_minute_per_token == 0
        {
            return invalid("rate limits must be positive".into());
        }
        let h = &self.password_hashing;
        if argon2::Params::new(h.memory_kib, h.iterations, h.parallelism, None).is_err() {
            return invalid("password_hashing parameters are out of argon2's range".into());
        }
        if !matches!(
            self.log_level.as_str(),
            "trace" | "debug" | "info" | "warn" | "error"
        ) {
            return invalid("log_level must be one of trace, debug, info, warn, error".into());
        }
        if self.kms.backend == KmsBackend::Aws && self.kms.aws_key_id.trim().is_empty() {
            return invalid("kms.aws_key_id is required when kms.backend = \"aws\"".into());
        }
        for url in [
            &self.exchanges.binance_testnet_url,
            &self.exchanges.binance_live_url,
        ] {
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                return invalid(format!("exchange URL `{url}` must start with https://"));
            }
        }
        if !(1..=120).contains(&self.exchanges.timeout_seconds) {
            return invalid("exchanges.timeout_seconds must be between 1 and 120".into());
        }
        if !(1..=60).contains(&self.step_up.window_minutes) {
            return invalid("step_up.window_minutes must be between 1 and 60".into());
        }
        if self.step_up.order_threshold().is_none() {
            return invalid("step_up.order_threshold must be a non-negative decimal number".into());
        }
        if !(1..=60).contains(&self.trading.job_interval_seconds) {
            return invalid("trading.job_interval_seconds must be between 1 and 60".into());
        }
        if !(1..=3600).contains(&self.trading.breaker_cool_down_seconds) {
            return invalid("trading.breaker_cool_down_seconds must be between 1 and 3600".into());
        }
        outbound_url(
            "trading.case_webhook_url",
            self.trading.case_webhook_url.as_deref(),
        )?;
        outbound_url(
            "trading.rationale_url",
            self.trading.rationale_url.as_deref(),
        )?;
        if self.audit.checkpoint_interval_minutes > 24 * 60 {
            return invalid(
                "audit.checkpoint_interval_minutes must be at most 1440 (a day)".into(),
            );
        }
        outbound_url(
            "audit.checkpoint_webhook_url",
            self.audit.checkpoint_webhook_url.as_deref(),
        )?;
        if self.webauthn_rp().is_none() {
            return invalid(
                "step_up.rp_id must be a domain name that public_url's host equals or ends with \
                 (WebAuthn does not work on a bare IP address)"
                    .into(),
            );
        }
        Ok(())
    }

    /// Whether the app is reached over TLS (cookies get `Secure` and the `__Host-` prefix).
    pub fn is_https(&self) -> bool {
        self.public_url.starts_with("https://")
    }

    /// The WebAuthn relying-party id and the origins keys may be used from: `public_url`, and
    /// each extra origin on the same domain. `None` when the settings cannot work (an IP host).
    pub fn webauthn_rp(&self) -> Option<(String, Vec<url::Url>)> {
        let public = url::Url::parse(&self.public_url).ok()?;
        let host = public.domain()?.to_owned();
        let rp_id = self
            .step_up
            .rp_id
            .clone()
            .filter(|id| !id.trim().is_empty())
            .unwrap_or_else(|| host.clone());
        let on_domain = |domain: &str| domain == rp_id || domain.ends_with(&format!(".{rp_id}"));
        if !on_domain(&host) {
            return None;
        }
        let mut origins = vec![public];
        for extra in &self.extra_origins {
            if let Ok(url) = url::Url::parse(extra)
                && url.domain().is_some_and(on_domain)
            {
                origins.push(url);
            }
        }
        Some((rp_id, origins))
    }

    /// Every origin allowed to send state-changing requests, normalised.
    /// The origins state-changing requests and CORS accept: `public_url` and the extra ones,
    /// but under https no plain-http extra (the default lists `http://127.0.0.1:3000` for
    /// trying the app locally): a page served over http could otherwise send credentialed
    /// requests a TLS deployment never meant to take.
    pub fn allowed_origins(&self) -> Vec<String> {
        let https = self.is_https();
        std::iter::once(&self.public_url)
            .chain(
                self.extra_origins
                    .iter()
                    .filter(|origin| !(https && origin.trim().starts_with("http://"))),
            )
            .filter_map(|o| parse_origin(o))
            .collect()
    }
}

/// Normalises `scheme://host[:port]` (a trailing slash is allowed); anything else is `None`.
fn parse_origin(raw: &str) -> Option<String> {
    let trimmed = raw.trim().trim_end_matches('/');
    let (scheme, rest) = trimmed.split_once("://")?;
    let valid = matches!(scheme, "http" | "https")
        && !rest.is_empty()
        && !rest.contains(['/', '?', '#', '@', ' '])
        && rest
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
    valid.then(|| format!("{scheme}://{}", rest.to_ascii_lowercase()))
}

/// An outbound URL from the settings (webhooks, the language model): https, or plain http
/// only to this machine (a stand-in), so what is sent (a bearer token, case ids) never crosses
/// a network in clear. Empty or unset is allowed: the feature is off.
fn outbound_url(field: &str, raw: Option<&str>) -> Result<(), ConfigError> {
    let Some(raw) = raw.filter(|u| !u.is_empty()) else {
        return Ok(());
    };
    match url::Url::parse(raw) {
        Ok(url) if url.scheme() == "https" => Ok(()),
        Ok(url) if url.scheme() == "http" && loopback_host(&url) => Ok(()),
        Ok(url) if url.scheme() == "http" => Err(ConfigError::Invalid(format!(
            "{field} must be an https URL (plain http only to this machine)"
        ))),
        _ => Err(ConfigError::Invalid(format!(
            "{field} must be an https URL"
        ))),
    }
}

/// Whether `url` names this machine (`localhost` or a loopback address).
pub(crate) fn loopback_host(url: &url::Url) -> bool {
    url.host_str()
        .map(|h| h.trim_start_matches('[').trim_end_matches(']'))
        .is_some_and(|h| {
            h == "localhost"
                || h.parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_normalised_and_paths_refused() {
        assert_eq!(
            parse_origin("https://Pulse.Example.com/"),
            Some("https://pulse.example.com".into())
        );
        assert_eq!(
            parse_origin("http://127.0.0.1:3000"),
            Some("http://127.0.0.1:3000".into())
        );
        assert_eq!(parse_origin("https://a.com/path"), None);
        assert_eq!(parse_origin("ftp://a.com"), None);
        assert_eq!(parse_origin("a.com"), None);
    }

    #[test]
    fn under_https_no_plain_http_origin_is_allowed() {
        let local = Settings::default();
        assert!(
            local
                .allowed_origins()
                .contains(&"http://127.0.0.1:3000".to_owned())
        );
        let deployed = Settings {
            public_url: "https://pulse.example.com".into(),
            extra_origins: vec![
                "http://127.0.0.1:3000".into(),
                "https://admin.example.com".into(),
            ],
            ..Settings::default()
        };
        assert_eq!(
            deployed.allowed_origins(),
            vec![
                "https://pulse.example.com".to_owned(),
                "https://admin.example.com".to_owned()
            ]
        );
    }

    #[test]
    fn outbound_urls_are_https_or_plain_http_to_this_machine_only() {
        let check = |url: &str| {
            let mut settings = Settings::default();
            settings.trading.rationale_url = Some(url.into());
            settings.validate().map_err(|e| e.to_string())
        };
        for ok in [
            "https://llm.example.com/v1/chat",
            "http://127.0.0.1:8080/hook",
            "http://localhost/hook",
            "http://[::1]:9/x",
            "",
        ] {
            assert_eq!(check(ok), Ok(()), "{ok}");
        }
        for refused in [
            "http://llm.example.com/v1",
            "http://10.0.0.5/hook",
            "ftp://a.com",
            "llm",
        ] {
            let err = check(refused).expect_err(refused);
            assert!(
                err.contains("trading.rationale_url must be an https URL"),
                "{err}"
            );
        }
    }

    #[test]
    fn defaults_are_valid_and_local() {
        let settings = Settings::default();
        settings.validate().expect("defaults validate");
        assert!(settings.bind.ip().is_loopback());
        assert!(!settings.is_https());
    }

    #[test]
    fn the_order_threshold_may_be_written_as_a_number_or_as_text() {
        let dir = std::env::temp_dir().join(format!("cp-threshold-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let file = dir.join("threshold.toml");
        for (written, read) in [
            ("5000", "5000"),
            ("2500.5", "2500.5"),
            ("\"7500.25\"", "7500.25"),
        ] {
            std::fs::write(&file, format!("[step_up]\norder_threshold = {written}\n"))
                .expect("write");
            let settings = Settings::load(Some(&file)).expect(written);
            assert_eq!(
                settings.step_up.order_threshold(),
                Some(read.parse().expect("decimal")),
                "{written}"
            );
        }
        std::fs::write(&file, "[step_up]\norder_threshold = -1\n").expect("write");
        assert!(Settings::load(Some(&file)).is_err(), "negative");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn unknown_keys_in_a_file_stop_startup_with_the_key_named() {
        let dir = std::env::temp_dir().join(format!("cp-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let file = dir.join("bad.toml");
        std::fs::write(&file, "bind = \"127.0.0.1:4000\"\nsesion_timeout = 5\n").expect("write");
        let err = Settings::load(Some(&file))
            .expect_err("must be refused")
            .to_string();
        assert!(err.contains("sesion_timeout"), "{err}");
        std::fs::write(&file, "[session]\nidle_timeout_minutes = \"soon\"\n").expect("write");
        let err = Settings::load(Some(&file))
            .expect_err("must be refused")
            .to_string();
        assert!(err.contains("idle_timeout_minutes"), "{err}");
        std::fs::write(&file, "public_url = \"localhost\"\n").expect("write");
        assert!(Settings::load(Some(&file)).is_err());
        std::fs::remove_dir_all(&dir).ok();
    }
}
