//! Signed REST adapter for Binance spot: what an API key may do, placing, looking up and
//! cancelling orders by our client order id, and the last price.
//!
//! Requests are signed like Binance's `SIGNED` endpoints: HMAC-SHA256 of the query string with
//! the API secret, the key in `X-MBX-APIKEY`. The key, the secret, the signature and the full
//! URL never reach an error or a log line; logs name the endpoint path and the HTTP status.
//!
//! The adapter's parts: [`settings`] (where Binance is), [`request`] (signing and sending),
//! [`wire`] (what goes over the wire and Binance's answer types), [`answers`] (reading an answer)
//! and [`refusals`] (a refused request or a failed transport as an `ExchangeError`).

mod answers;
mod refusals;
mod request;
mod settings;
mod wire;

use std::str::FromStr;
use std::sync::Arc;

use async_trait::async_trait;
use domain::keys::{
    ApiCredentials, Exchange, ExchangeError, ExchangeName, KeyEnvironment, KeyPermissions,
    VenueAck, VenueOrder,
};
use domain::ports::Clock;
use reqwest::Method;
use rust_decimal::Decimal;

use answers::{combine, parse_account, parse_order, parse_restrictions};
use refusals::{NOT_UNDERSTOOD, order_refusal, transport_error};
use request::reply;
use settings::base_url;
pub use settings::{BinanceSettings, BinanceSetupError};
use wire::{
    ACCOUNT_PATH, ORDER_DOES_NOT_EXIST, ORDER_PATH, RESTRICTIONS_PATH, TICKER_PATH, Ticker,
    UNKNOWN_ORDER, error_of, lookup_params, order_params, param,
};

/// The Binance spot adapter (testnet and live).
#[derive(Debug, Clone)]
pub struct BinanceExchange {
    client: reqwest::Client,
    /// Base URLs without a trailing slash.
    testnet: String,
    live: String,
    clock: Arc<dyn Clock>,
}

impl BinanceExchange {
    pub fn new(
        settings: BinanceSettings,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, BinanceSetupError> {
        let testnet = base_url("testnet", &settings.testnet_url)?;
        let live = base_url("live", &settings.live_url)?;
        let client = reqwest::Client::builder()
            .connect_timeout(settings.connect_timeout.min(settings.timeout))
            .timeout(settings.timeout)
            // A followed redirect would carry X-MBX-APIKEY to wherever it points.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("CryptoPulse/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            client,
            testnet,
            live,
            clock,
        })
    }

    fn base(&self, environment: KeyEnvironment) -> Result<&str, ExchangeError> {
        match environment {
            KeyEnvironment::Testnet => Ok(&self.testnet),
            KeyEnvironment::Live => Ok(&self.live),
            KeyEnvironment::Paper => Err(ExchangeError::Rejected(
                "Binance has no paper environment; use the built-in paper exchange.".into(),
            )),
        }
    }
}

#[async_trait]
impl Exchange for BinanceExchange {
    fn name(&self) -> ExchangeName {
        ExchangeName::Binance
    }

    async fn key_permissions(
        &self,
        environment: KeyEnvironment,
        credentials: &ApiCredentials,
    ) -> Result<KeyPermissions, ExchangeError> {
        self.base(environment)?;
        // Both at once, so a slow Binance costs one timeout, not two.
        let (account, restrictions) = tokio::join!(
            self.signed(Method::GET, environment, ACCOUNT_PATH, &[], credentials),
            self.signed(
                Method::GET,
                environment,
                RESTRICTIONS_PATH,
                &[],
                credentials
            ),
        );
        // The account answer decides first: an unknown key is "not accepted", whatever /sapi says.
        let account = parse_account(environment, account?)?;
        let restrictions = parse_restrictions(environment, restrictions?)?;
        Ok(combine(&account, restrictions.as_ref()))
    }

    async fn place_order(
        &self,
        environment: KeyEnvironment,
        credentials: Option<&ApiCredentials>,
        order: &VenueOrder,
    ) -> Result<VenueAck, ExchangeError> {
        let credentials = credentials.ok_or_else(needs_a_key)?;
        let params = order_params(order)?;
        let reply = self
            .signed(Method::POST, environment, ORDER_PATH, &params, credentials)
            .await?;
        if reply.status.is_success() {
            return parse_order(environment, &reply);
        }
        if error_of(&reply).is_some_and(|e| e.is_duplicate_order()) {
            // Binance refuses a client order id that is still open: that is our earlier attempt.
            tracing::info!(%environment, "Binance already has this order; looking it up");
            return self
                .find_order(
                    environment,
                    Some(credentials),
                    &order.symbol,
                    &order.client_order_id,
                )
                .await?
                .ok_or_else(|| {
                    ExchangeError::Timeout(
                        "Binance reports the order but cannot show it yet".into(),
                    )
                });
        }
        Err(order_refusal(
            environment,
            &Method::POST,
            ORDER_PATH,
            &reply,
        ))
    }

    async fn find_order(
        &self,
        environment: KeyEnvironment,
        credentials: Option<&ApiCredentials>,
        symbol: &str,
        client_order_id: &str,
    ) -> Result<Option<VenueAck>, ExchangeError> {
        let credentials = credentials.ok_or_else(needs_a_key)?;
        let params = lookup_params(symbol, client_order_id)?;
        let reply = self
            .signed(Method::GET, environment, ORDER_PATH, &params, credentials)
            .await?;
        if reply.status.is_success() {
            return parse_order(environment, &reply).map(Some);
        }
        if error_of(&reply).is_some_and(|e| e.code == ORDER_DOES_NOT_EXIST) {
            return Ok(None);
        }
        Err(order_refusal(environment, &Method::GET, ORDER_PATH, &reply))
    }

    async fn cancel_order(
        &self,
        environment: KeyEnvironment,
        credentials: Option<&ApiCredentials>,
        symbol: &str,
        client_order_id: &str,
    ) -> Result<VenueAck, ExchangeError> {
        let credentials = credentials.ok_or_else(needs_a_key)?;
        let params = lookup_params(symbol, client_order_id)?;
        let reply = self
            .signed(
                Method::DELETE,
                environment,
                ORDER_PATH,
                &params,
                credentials,
            )
            .await?;
        if reply.status.is_success() {
            return parse_order(environment, &reply);
        }
        if error_of(&reply).is_some_and(|e| e.code == UNKNOWN_ORDER) {
            // Not open any more: it filled or was cancelled meanwhile; answer with how it ended.
            return self
                .find_order(environment, Some(credentials), symbol, client_order_id)
                .await?
                .ok_or_else(|| {
                    ExchangeError::Rejected("Binance has no order with this id.".into())
                });
        }
        Err(order_refusal(
            environment,
            &Method::DELETE,
            ORDER_PATH,
            &reply,
        ))
    }

    async fn price(
        &self,
        environment: KeyEnvironment,
        symbol: &str,
    ) -> Result<Decimal, ExchangeError> {
        let base = self.base(environment)?;
        let symbol = param("symbol", symbol)?;
        let sent = self
            .client
            .get(format!("{base}{TICKER_PATH}?symbol={symbol}"))
            .send()
            .await;
        let response =
            sent.map_err(|e| transport_error(environment, &Method::GET, TICKER_PATH, &e))?;
        let reply = reply(environment, &Method::GET, TICKER_PATH, response).await?;
        if !reply.status.is_success() {
            return Err(order_refusal(
                environment,
                &Method::GET,
                TICKER_PATH,
                &reply,
            ));
        }
        serde_json::from_slice::<Ticker>(&reply.body)
            .ok()
            .and_then(|t| Decimal::from_str(&t.ask_price).ok())
            .filter(|p| *p > Decimal::ZERO)
            .ok_or_else(|| {
                tracing::warn!(%environment, endpoint = TICKER_PATH, "Binance price not understood");
                ExchangeError::Unreachable(NOT_UNDERSTOOD.into())
            })
    }
}

fn needs_a_key() -> ExchangeError {
    ExchangeError::Rejected("Binance orders are signed with an API key; none was given.".into())
}

#[cfg(test)]
mod tests {
    use domain::ports::SystemClock;
    use secrecy::SecretString;

    use super::*;

    #[tokio::test]
    async fn paper_environment_is_refused_without_a_request() {
        let settings = BinanceSettings {
            // Nothing listens here; a request would fail as Unreachable, not Rejected.
            testnet_url: "http://127.0.0.1:9".into(),
            live_url: "http://127.0.0.1:9".into(),
            ..BinanceSettings::default()
        };
        let exchange =
            BinanceExchange::new(settings, Arc::new(SystemClock)).expect("valid settings");
        let credentials = ApiCredentials::parse(
            SecretString::from("binance-key-0001"),
            SecretString::from("binance-secret-0001"),
        )
        .expect("well-formed credentials");
        let err = exchange
            .key_permissions(KeyEnvironment::Paper, &credentials)
            .await
            .expect_err("Binance has no paper environment");
        assert!(matches!(err, ExchangeError::Rejected(_)), "{err:?}");
    }
}
