//! Held orders go out when their exchange is back; open orders are refreshed from their venue,
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
        match trading.retry_held().await {
            Ok(0) => {}
            Ok(sent) => tracing::info!(sent, "held orders sent"),
            Err(e) => tracing::warn!(error = %e, "could not retry held orders"),
        }
    }
}
