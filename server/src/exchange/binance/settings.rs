//! Where the adapter finds Binance and how long it waits, checked once at startup.

use std::time::Duration;

use reqwest::Url;

/// Where the adapter finds Binance and how long it waits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BinanceSettings {
    pub testnet_url: String,
    pub live_url: String,
    /// Time to open a connection (capped at `timeout`).
    pub connect_timeout: Duration,
    /// Time for a whole request, connection included.
    pub timeout: Duration,
}

impl BinanceSettings {
    pub const DEFAULT_TESTNET_URL: &str = "https://testnet.binance.vision";
    pub const DEFAULT_LIVE_URL: &str = "https://api.binance.com";
}

impl Default for BinanceSettings {
    fn default() -> Self {
        Self {
            testnet_url: Self::DEFAULT_TESTNET_URL.into(),
            live_url: Self::DEFAULT_LIVE_URL.into(),
            connect_timeout: Duration::from_secs(3),
            timeout: Duration::from_secs(10),
        }
    }
}

/// Configuration the adapter cannot work with; reported at startup.
#[derive(Debug, thiserror::Error)]
pub enum BinanceSetupError {
    #[error("the Binance {environment} URL {url:?} is not usable: {reason}")]
    Url {
        environment: &'static str,
        url: String,
        reason: &'static str,
    },
    #[error("could not build the HTTP client for Binance: {0}")]
    Client(#[from] reqwest::Error),
}

/// Checks a configured base URL: https (plain http only to this machine, for stand-ins), no
/// query or fragment. Returned without a trailing slash.
pub(super) fn base_url(environment: &'static str, raw: &str) -> Result<String, BinanceSetupError> {
    let fail = |reason| BinanceSetupError::Url {
        environment,
        url: raw.to_owned(),
        reason,
    };
    let url = Url::parse(raw.trim()).map_err(|_| fail("not a URL"))?;
    let loopback = crate::config::loopback_host(&url);
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        "http" => return Err(fail("plain http is only allowed to this machine")),
        _ => return Err(fail("the scheme must be https")),
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(fail("it must not have a query or fragment"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(fail("it must not carry credentials"));
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use domain::ports::SystemClock;

    use super::super::BinanceExchange;
    use super::*;

    #[test]
    fn base_urls_must_be_https_except_to_this_machine() {
        let ok = |raw: &str| base_url("live", raw).expect("usable URL");
        assert_eq!(ok("https://api.binance.com"), "https://api.binance.com");
        assert_eq!(ok("https://api.binance.com/"), "https://api.binance.com");
        assert_eq!(ok("http://127.0.0.1:8080/"), "http://127.0.0.1:8080");
        assert_eq!(ok("http://localhost:1"), "http://localhost:1");
        assert_eq!(ok("http://[::1]:1"), "http://[::1]:1");
        for bad in [
            "http://api.binance.com",
            "ftp://api.binance.com",
            "https://api.binance.com/?x=1",
            "https://user:pw@api.binance.com",
            "api.binance.com",
        ] {
            assert!(base_url("live", bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn defaults_point_at_binance() {
        let settings = BinanceSettings::default();
        assert_eq!(settings.testnet_url, "https://testnet.binance.vision");
        assert_eq!(settings.live_url, "https://api.binance.com");
        assert!(BinanceExchange::new(settings, Arc::new(SystemClock)).is_ok());
    }
}
