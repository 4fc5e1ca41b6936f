//! Reading Binance's successful answers: an order's state and what a key may do.

use std::str::FromStr;

use domain::keys::{ExchangeError, KeyEnvironment, KeyPermissions, VenueAck, VenueOrderStatus};
use reqwest::StatusCode;
use rust_decimal::Decimal;

use super::refusals::{NOT_UNDERSTOOD, RESTRICTIONS_UNREADABLE, refusal};
use super::wire::{
    ACCOUNT_PATH, Account, ORDER_PATH, OrderReply, RESTRICTIONS_PATH, Reply, Restrictions,
};

pub(super) fn parse_order(
    environment: KeyEnvironment,
    reply: &Reply,
) -> Result<VenueAck, ExchangeError> {
    let not_understood = || {
        tracing::warn!(%environment, endpoint = ORDER_PATH, "Binance order answer not understood");
        // The order may exist; a retry looks it up again rather than sending it twice.
        ExchangeError::Timeout(NOT_UNDERSTOOD.into())
    };
    let order: OrderReply = serde_json::from_slice(&reply.body).map_err(|_| not_understood())?;
    let filled = Decimal::from_str(&order.executed_qty).map_err(|_| not_understood())?;
    let quote = Decimal::from_str(&order.cummulative_quote_qty).map_err(|_| not_understood())?;
    let status = match order.status.as_str() {
        "FILLED" => VenueOrderStatus::Filled,
        "NEW" | "PENDING_NEW" | "PARTIALLY_FILLED" | "PENDING_CANCEL" => VenueOrderStatus::Open,
        // EXPIRED: a market order (sent immediate-or-cancel at its bound) that found too little
        // at or better than its bound; what filled is kept.
        "CANCELED" | "EXPIRED" | "EXPIRED_IN_MATCH" => VenueOrderStatus::Cancelled,
        "REJECTED" => VenueOrderStatus::Rejected("Binance rejected the order.".into()),
        _ => return Err(not_understood()),
    };
    // Old orders report a negative quote amount ("not recorded"): then no average price.
    let average_price = (filled > Decimal::ZERO && quote >= Decimal::ZERO)
        .then(|| (quote / filled).round_dp(8).normalize());
    Ok(VenueAck {
        exchange_order_id: order.order_id.to_string(),
        status,
        filled_quantity: filled.normalize(),
        average_price,
    })
}

pub(super) fn combine(account: &Account, restrictions: Option<&Restrictions>) -> KeyPermissions {
    match restrictions {
        Some(r) => KeyPermissions {
            can_read: r.enable_reading.unwrap_or(true),
            can_trade: account.can_trade && r.enable_spot_and_margin_trading,
            can_withdraw: r.enable_withdrawals,
            ip_restricted: r.ip_restrict,
        },
        // Testnet only (live fails closed before this): the Spot Test Network has no /sapi
        // endpoints and no withdrawals at all, its funds cannot leave it.
        None => KeyPermissions {
            can_read: true,
            can_trade: account.can_trade,
            can_withdraw: false,
            ip_restricted: false,
        },
    }
}

pub(super) fn parse_account(
    environment: KeyEnvironment,
    reply: Reply,
) -> Result<Account, ExchangeError> {
    if !reply.status.is_success() {
        return Err(refusal(environment, ACCOUNT_PATH, &reply));
    }
    serde_json::from_slice(&reply.body).map_err(|_| {
        tracing::warn!(%environment, endpoint = ACCOUNT_PATH, "Binance account answer not understood");
        ExchangeError::Unreachable(NOT_UNDERSTOOD.into())
    })
}

pub(super) fn parse_restrictions(
    environment: KeyEnvironment,
    reply: Reply,
) -> Result<Option<Restrictions>, ExchangeError> {
    if reply.status == StatusCode::NOT_FOUND && environment == KeyEnvironment::Testnet {
        tracing::debug!(
            endpoint = RESTRICTIONS_PATH,
            "testnet has no /sapi; using the account alone"
        );
        return Ok(None);
    }
    if reply.status == StatusCode::NOT_FOUND {
        tracing::warn!(%environment, endpoint = RESTRICTIONS_PATH, status = 404, "key restrictions unavailable; refusing");
        return Err(ExchangeError::Rejected(RESTRICTIONS_UNREADABLE.into()));
    }
    if !reply.status.is_success() {
        return Err(refusal(environment, RESTRICTIONS_PATH, &reply));
    }
    match serde_json::from_slice(&reply.body) {
        Ok(restrictions) => Ok(Some(restrictions)),
        Err(_) => {
            tracing::warn!(%environment, endpoint = RESTRICTIONS_PATH, "key restrictions not understood; refusing");
            Err(ExchangeError::Rejected(RESTRICTIONS_UNREADABLE.into()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_level_withdraw_flag_does_not_make_a_key_withdraw_capable() {
        let account: Account = serde_json::from_str(
            r#"{"canTrade":true,"canWithdraw":true,"canDeposit":true,"permissions":["SPOT"]}"#,
        )
        .expect("account JSON");
        let restrictions: Restrictions = serde_json::from_str(
            r#"{"ipRestrict":false,"createTime":1698645219000,"enableReading":true,
                "enableWithdrawals":false,"enableSpotAndMarginTrading":true}"#,
        )
        .expect("restrictions JSON");
        let permissions = combine(&account, Some(&restrictions));
        assert!(!permissions.can_withdraw);
        assert!(permissions.can_trade && permissions.can_read);
    }
}
