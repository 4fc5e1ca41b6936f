//! Held orders go out when their exchange is back (with the orders a stopped server left
//! `submitting`, checked with their exchange first); open orders are refreshed from their venue,
//! and resting paper orders fill as the price feed reaches them.

use std::time::Duration;

use domain::trading::TradingService;

use crate::exchange::PaperExchange;

pub async fn run(trading: TradingService, paper: PaperExchange, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await; // immediate; the first round comes one interval after startup
    loop {
        tick.tick().await;
        paper.sweep();
        if let Err(e) = trading.refresh_open().await {
            tracing::warn!(error = %e, "could not refresh open orders");
        }
        // Before the retry: a stranded order is held here and sent (at most once) by it.
        match trading.recover_stranded().await {
            Ok(0) => {}
            Ok(stranded) => tracing::warn!(
                stranded,
                "orders left submitting by a stopped server are held to be checked"
            ),
            Err(e) => tracing::warn!(error = %e, "could not look for stranded orders"),
        }
        match trading.retry_held().await {
            Ok(0) => {}
            Ok(sent) => tracing::info!(sent, "held orders sent"),
            Err(e) => tracing::warn!(error = %e, "could not retry held orders"),
        }
    }
}
