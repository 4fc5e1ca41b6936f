//! Signed requests, as Binance's `SIGNED` endpoints expect them, and reading the answer.

use domain::keys::{ApiCredentials, ExchangeError, KeyEnvironment};
use hmac::{Hmac, Mac};
use reqwest::Method;
use reqwest::header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

use super::BinanceExchange;
use super::refusals::transport_error;
use super::wire::Reply;

/// The longest `Retry-After` we carry (an hour, as the circuit breaker's longest pause).
const MAX_RETRY_AFTER_SECS: u64 = 3600;
/// Binance's default; kept small so a captured request cannot be replayed for long.
const RECV_WINDOW_MS: u32 = 5000;

impl BinanceExchange {
    /// One signed request. `params` go first, then `timestamp` and `recvWindow`; a POST carries
    /// them as a form body, other methods as the query. Only the status, the body and a
    /// `Retry-After` come back; transport errors are already mapped.
    pub(super) async fn signed(
        &self,
        method: Method,
        environment: KeyEnvironment,
        path: &'static str,
        params: &[(&'static str, String)],
        credentials: &ApiCredentials,
    ) -> Result<Reply, ExchangeError> {
        let base = self.base(environment)?;
        let timestamp_ms = self.clock.now().unix_timestamp_nanos() / 1_000_000;
        let mut payload = String::new();
        for (name, value) in params {
            payload.push_str(&format!("{name}={value}&"));
        }
        payload.push_str(&format!(
            "timestamp={timestamp_ms}&recvWindow={RECV_WINDOW_MS}"
        ));
        let signature = sign(credentials.api_secret(), &payload)?;
        let mut api_key =
            HeaderValue::from_str(credentials.api_key().expose_secret()).map_err(|_| {
                ExchangeError::Rejected(
                    "The API key contains characters Binance does not use.".into(),
                )
            })?;
        // Keeps the key out of any Debug output of the request (hyper, reqwest, our own).
        api_key.set_sensitive(true);
        let signed = format!("{payload}&signature={signature}");
        let request = if method == Method::POST {
            self.client
                .post(format!("{base}{path}"))
                .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(signed)
        } else {
            self.client
                .request(method.clone(), format!("{base}{path}?{signed}"))
        };
        let sent = request.header("X-MBX-APIKEY", api_key).send().await;
        let response = sent.map_err(|e| transport_error(environment, &method, path, &e))?;
        reply(environment, &method, path, response).await
    }
}

/// Reads a response. The body read can fail too (a reset mid-answer), mapped like the send.
pub(super) async fn reply(
    environment: KeyEnvironment,
    method: &Method,
    path: &'static str,
    response: reqwest::Response,
) -> Result<Reply, ExchangeError> {
    let status = response.status();
    let retry_after = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        // Honoured up to the breaker's longest pause; an absurd value is not carried further.
        .map(|secs| secs.min(MAX_RETRY_AFTER_SECS));
    let body = response
        .bytes()
        .await
        .map_err(|e| transport_error(environment, method, path, &e))?;
    tracing::debug!(%environment, %method, endpoint = path, status = status.as_u16(), "Binance answered");
    Ok(Reply {
        status,
        body: body.to_vec(),
        retry_after,
    })
}

/// `hex(HMAC-SHA256(secret, payload))`, as Binance's `SIGNED` endpoints expect.
fn sign(secret: &SecretString, payload: &str) -> Result<String, ExchangeError> {
    // HMAC accepts keys of any length; the error arm is unreachable in practice.
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.expose_secret().as_bytes()).map_err(|_| {
            ExchangeError::Rejected("The API secret cannot be used for signing.".into())
        })?;
    mac.update(payload.as_bytes());
    Ok(hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_binance_documented_example() {
        // The HMAC example from Binance's spot REST API documentation.
        let secret =
            SecretString::from("NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j");
        let payload = "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1\
                       &recvWindow=5000&timestamp=1499827319559";
        assert_eq!(
            sign(&secret, payload).expect("HMAC takes any key"),
            "c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71"
        );
    }
}
