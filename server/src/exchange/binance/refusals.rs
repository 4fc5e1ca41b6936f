//! A refused request or a failed transport as an `ExchangeError`: rate limits, outcomes that
//! may have gone through, and the words the trader sees (never Binance's message).

use domain::keys::{ExchangeError, KeyEnvironment};
use reqwest::{Method, StatusCode};

use super::wire::{BinanceErrorBody, Reply, error_of};

/// How long to back off when Binance rate-limits without saying for how long.
const DEFAULT_BACKOFF_SECS: u64 = 60;

const TESTNET_NOT_ACCEPTED: &str = "Binance testnet does not accept this key. Is it a live key?";
const LIVE_NOT_ACCEPTED: &str = "Binance does not accept this key or this server's IP.";
const BAD_SIGNATURE: &str = "Binance says the request signature is invalid. Check the API secret \
                             (CryptoPulse supports HMAC keys, not RSA or Ed25519 keys).";
pub(super) const RESTRICTIONS_UNREADABLE: &str = "Binance did not say whether this key can \
                                                  withdraw or is IP-restricted, so it cannot be \
                                                  accepted. Try again later.";
pub(super) const NOT_UNDERSTOOD: &str = "Binance sent an answer CryptoPulse does not understand";

/// Maps a refused order request. The trader sees our words, never Binance's message.
pub(super) fn order_refusal(
    environment: KeyEnvironment,
    method: &Method,
    path: &'static str,
    reply: &Reply,
) -> ExchangeError {
    let status = reply.status;
    let code = error_of(reply).map(|e| e.code);
    tracing::warn!(%environment, %method, endpoint = path, status = status.as_u16(), code, "Binance refused the request");
    if status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::IM_A_TEAPOT
        || matches!(code, Some(-1003 | -1015))
    {
        return ExchangeError::RateLimited(reply.retry_after.unwrap_or(DEFAULT_BACKOFF_SECS));
    }
    if status.is_server_error() {
        let why = format!("Binance answered HTTP {}", status.as_u16());
        // Binance: a 5XX means the execution status is unknown, it may have gone through.
        return if *method == Method::GET {
            ExchangeError::Unreachable(why)
        } else {
            ExchangeError::Timeout(why)
        };
    }
    let rejected = |why: &str| ExchangeError::Rejected(why.to_owned());
    match code {
        Some(-1022) => rejected(BAD_SIGNATURE),
        Some(-1021) => {
            ExchangeError::Unreachable("this server's clock is out of step with Binance's".into())
        }
        Some(-2015 | -2014 | -2008 | -1002) => rejected(match environment {
            KeyEnvironment::Testnet => "Binance testnet does not accept this key for trading.",
            _ => "Binance does not accept this key for trading (or this server's IP).",
        }),
        Some(-2010) if error_of(reply).is_some_and(|e| e.is_insufficient_balance()) => {
            rejected("The Binance account's balance is too low for this order.")
        }
        Some(-2010) => rejected("Binance refused the order."),
        Some(-1013) => rejected(
            "Binance refused the quantity or price: it does not fit the symbol's step size, tick \
             size or minimum order value.",
        ),
        Some(-1121) => rejected("Binance does not list this symbol."),
        Some(-2011) => rejected("Binance has no open order with this id."),
        Some(code) if status.is_client_error() => {
            ExchangeError::Rejected(format!("Binance refused the order (code {code})."))
        }
        _ if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN => {
            rejected("Binance does not accept this key for trading.")
        }
        _ => ExchangeError::Unreachable(format!("Binance answered HTTP {}", status.as_u16())),
    }
}

/// Maps a non-success answer. "Rejected" means the key itself is the problem (a re-check
/// suspends it); everything else is "Unreachable" and changes nothing.
pub(super) fn refusal(
    environment: KeyEnvironment,
    path: &'static str,
    reply: &Reply,
) -> ExchangeError {
    let status = reply.status;
    let code = serde_json::from_slice::<BinanceErrorBody>(&reply.body)
        .ok()
        .map(|e| e.code);
    tracing::warn!(%environment, endpoint = path, status = status.as_u16(), code, "Binance refused the request");
    let not_accepted = || {
        ExchangeError::Rejected(match environment {
            KeyEnvironment::Testnet => TESTNET_NOT_ACCEPTED.into(),
            _ => LIVE_NOT_ACCEPTED.into(),
        })
    };
    if status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::IM_A_TEAPOT {
        return ExchangeError::Unreachable("rate limited".into());
    }
    if status.is_server_error() {
        return ExchangeError::Unreachable(format!("Binance answered HTTP {}", status.as_u16()));
    }
    match code {
        Some(-1022) => ExchangeError::Rejected(BAD_SIGNATURE.into()),
        // Not the key's fault: this server's clock is off (or the request sat in a queue).
        Some(-1021) => {
            ExchangeError::Unreachable("this server's clock is out of step with Binance's".into())
        }
        // Invalid key / IP / permission, bad key format, unknown key id, unauthorized.
        Some(-2015 | -2014 | -2008 | -1002) => not_accepted(),
        _ if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN => {
            not_accepted()
        }
        _ => ExchangeError::Unreachable(format!("Binance answered HTTP {}", status.as_u16())),
    }
}

/// Never formats `err` itself: reqwest's message includes the URL, and so the signature.
/// A GET that fails changed nothing. A POST or DELETE that fails after connecting may have been
/// acted on: that is a `Timeout` (outcome unknown), resolved later by looking the order up.
pub(super) fn transport_error(
    environment: KeyEnvironment,
    method: &Method,
    path: &'static str,
    err: &reqwest::Error,
) -> ExchangeError {
    let (kind, message) = if err.is_timeout() {
        ("timeout", "Binance did not answer in time")
    } else if err.is_connect() {
        ("connect", "could not connect to Binance")
    } else {
        ("transport", "the request to Binance failed")
    };
    tracing::warn!(%environment, %method, endpoint = path, kind, "Binance request failed");
    if *method != Method::GET && !err.is_connect() {
        ExchangeError::Timeout(message.into())
    } else {
        ExchangeError::Unreachable(message.into())
    }
}
