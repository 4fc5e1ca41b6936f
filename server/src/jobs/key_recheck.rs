//! Asks the exchanges again what every stored key may do: a key that gained withdrawal
//! permission (or lost what its scope needs) is suspended by the vault.

use std::time::Duration;

use domain::keys::KeyVaultService;

pub async fn run(vault: KeyVaultService, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.tick().await; // the first tick is immediate; keys were checked at entry
    loop {
        tick.tick().await;
        match vault.recheck_all().await {
            Ok(report) => tracing::info!(
                checked = report.checked,
                suspended = report.suspended,
                failed = report.failed,
                "scheduled key permission check"
            ),
            Err(e) => tracing::error!(error = %e, "scheduled key permission check failed"),
        }
    }
}
