//! What the order ticket shows: the trader's limits, controls, usage, positions, prices and
//! trade keys, so the browser previews the very checks the server applies.

use rust_decimal::Decimal;

use super::error::{Outage, QuoteFailure, TradingError};

use super::portfolio::{Portfolio, ValuedPosition};
use super::service::{VenueChoice, vault_error};
use super::{ScreeningSettings, TradingService, UserControls};
use crate::account::UserId;
use crate::audit::RequestMeta;
use crate::exchange::ExchangeName;
use crate::keys::{KeyRecord, KeyScope, KeyStatus};
use crate::risk::RiskLimits;

/// What the order ticket needs to preview, in the browser, the checks the server applies.
#[derive(Debug, Clone)]
pub struct Ticket {
    pub limits: RiskLimits,
    pub step_up_threshold: Decimal,
    pub controls: UserControls,
    pub global_kill: bool,
    pub used_today: Decimal,
    pub orders_in_window: u32,
    pub unapproved_notional: Decimal,
    pub cash: Decimal,
    pub positions: Vec<ValuedPosition>,
    /// What a new order may still use: the paper cash and holdings less what the live orders
    /// may take (what the server judges a new order against).
    pub free: Portfolio,
    /// Paper prices of the allowed symbols; none while the paper feed is down.
    pub prices: Vec<(String, Decimal)>,
    /// The owner's keys that can place orders on an exchange (active, trade scope).
    pub trade_keys: Vec<KeyRecord>,
    pub open_cases: u64,
    pub has_security_key: bool,
    pub has_totp: bool,
}

impl TradingService {
    /// Everything the order ticket shows and previews with the server's own rules.
    pub async fn ticket(&self, owner: UserId, meta: &RequestMeta) -> Result<Ticket, TradingError> {
        let now = self.now();
        let (
            account,
            limits,
            ScreeningSettings {
                global_kill,
                controls,
                open_cases,
                ..
            },
        ) = self.screening_for(owner, meta).await?;
        let usage = self.usage(owner, &limits, now).await?;
        // A paper feed that is down leaves the ticket without prices, not broken.
        let prices = match self
            .quotes(owner, VenueChoice::Paper, &limits.symbol_allowlist)
            .await
        {
            Ok(prices) => prices,
            Err(TradingError::Unavailable(_)) => Vec::new(),
            Err(other) => return Err(other),
        };
        let trade_keys = self
            .vault
            .list_keys(owner)
            .await
            .map_err(vault_error)?
            .into_iter()
            .filter(|k| {
                k.status == KeyStatus::Active
                    && k.scope == KeyScope::Trade
                    && k.exchange != ExchangeName::Paper
            })
            .collect();
        let factors = self
            .stepup
            .usable_factors(owner)
            .await
            .map_err(|e| TradingError::Unavailable(Outage::Factors(e)))?;
        Ok(Ticket {
            step_up_threshold: self.step_up_threshold(),
            controls,
            global_kill,
            used_today: usage.used_today,
            orders_in_window: usage.orders_in_window,
            unapproved_notional: usage.unapproved_notional,
            cash: account.portfolio.cash,
            positions: self.valued(&account.portfolio).await,
            free: account.free(None),
            prices,
            trade_keys,
            open_cases,
            has_security_key: factors.security_key,
            has_totp: factors.totp,
            limits,
        })
    }

    /// The ticket's prices on a venue (the paper exchange, or one of the owner's trade keys:
    /// a Binance key quotes Binance's prices), one per symbol the owner may trade that the
    /// venue quotes.
    pub async fn venue_quotes(
        &self,
        owner: UserId,
        venue: VenueChoice,
        meta: &RequestMeta,
    ) -> Result<Vec<(String, Decimal)>, TradingError> {
        let limits = self.limits_for(owner, meta).await?;
        self.quotes(owner, venue, &limits.symbol_allowlist).await
    }

    /// One price per symbol the venue quotes. Stops at the first outage, so a dead exchange
    /// costs one timeout.
    async fn quotes(
        &self,
        owner: UserId,
        venue: VenueChoice,
        symbols: &[String],
    ) -> Result<Vec<(String, Decimal)>, TradingError> {
        let venue = self.resolve_venue(owner, venue).await?;
        let mut prices = Vec::new();
        for symbol in symbols {
            match self.venue_price(venue, symbol).await {
                Ok(price) => prices.push((symbol.clone(), price)),
                Err(outage @ QuoteFailure::Outage { .. }) if prices.is_empty() => {
                    return Err(outage.into());
                }
                Err(QuoteFailure::Outage { .. }) => break,
                // Not listed there: the ticket simply has no price for it.
                Err(_) => {}
            }
        }
        Ok(prices)
    }
}
