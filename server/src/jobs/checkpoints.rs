//! Signs a checkpoint of the audit chain head every `audit.checkpoint_interval_minutes`, when
//! the chain moved since the latest one (see `AuditService::checkpoint_if_moved`).

use std::time::Duration;

use domain::audit::service::AuditService;

pub async fn run(audit: AuditService, every: Duration) {
    // The first round waits a full interval: a server that just started has recorded little
    // beyond its own start, and restarts must not each add a checkpoint.
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    loop {
        tick.tick().await;
        match audit.checkpoint_if_moved().await {
            Ok(Some(checkpoint)) => {
                tracing::info!(seq = checkpoint.seq, hash = %checkpoint.hash, "signed audit checkpoint")
            }
            Ok(None) => tracing::debug!("audit chain unchanged since the latest checkpoint"),
            Err(e) => tracing::error!(error = %e, "audit checkpoint failed"),
        }
    }
}
