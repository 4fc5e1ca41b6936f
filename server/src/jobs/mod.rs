//! Background work, each loop in its own module: none lives in `app/` or `startup.rs`.
//!
//! [`Jobs::start`] spawns the loops when the server starts serving; they run until
//! [`Jobs::stop`] (or a drop) aborts them at shutdown. A loop logs a failed round and carries on.

pub mod audit_jobs;
pub mod checkpoints;
pub mod housekeeping;
pub mod key_recheck;
pub mod report_jobs;
pub mod rewrap;
pub mod trading;

use std::time::Duration;

use domain::audit::service::AuditService;
use domain::keys::KeyVaultService;
use domain::trading::TradingService;
use tokio::task::JoinHandle;

use crate::config::Settings;
use crate::exchange::PaperExchange;
use crate::security::rate_limit::RateLimits;
use crate::storage::{SqlLoginThrottle, SqlSessionStore};

/// How often the configurable loops run (housekeeping is fixed at once a minute).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    /// Held orders retried, stranded ones found, open orders refreshed
    /// (`trading.job_interval_seconds`).
    pub trading_every: Duration,
    /// Key permissions asked again; `None` when `vault.recheck_interval_minutes` is 0.
    pub key_recheck_every: Option<Duration>,
    /// The audit chain head signed (when it moved); `None` when
    /// `audit.checkpoint_interval_minutes` is 0.
    pub checkpoint_every: Option<Duration>,
}

impl Schedule {
    pub fn from_settings(settings: &Settings) -> Self {
        Self {
            trading_every: Duration::from_secs(u64::from(settings.trading.job_interval_seconds)),
            key_recheck_every: match settings.vault.recheck_interval_minutes {
                0 => None,
                minutes => Some(Duration::from_secs(u64::from(minutes) * 60)),
            },
            checkpoint_every: match settings.audit.checkpoint_interval_minutes {
                0 => None,
                minutes => Some(Duration::from_secs(u64::from(minutes) * 60)),
            },
        }
    }
}

/// What the loops work on.
#[derive(Debug, Clone)]
pub struct JobServices {
    pub sessions: SqlSessionStore,
    pub login_throttle: SqlLoginThrottle,
    pub rate_limits: RateLimits,
    pub trading: TradingService,
    pub paper: PaperExchange,
    pub vault: KeyVaultService,
    pub audit: AuditService,
}

/// The running loops. Dropping this aborts them too, so none outlives the server.
#[derive(Debug)]
pub struct Jobs {
    tasks: Vec<JoinHandle<()>>,
}

impl Jobs {
    /// Spawns every loop the schedule turns on (needs a Tokio runtime).
    pub fn start(schedule: Schedule, services: JobServices) -> Self {
        let mut tasks = vec![
            tokio::spawn(housekeeping::run(
                services.sessions,
                services.login_throttle,
                services.rate_limits,
            )),
            tokio::spawn(trading::run(
                services.trading,
                services.paper,
                schedule.trading_every,
            )),
        ];
        if let Some(every) = schedule.key_recheck_every {
            tasks.push(tokio::spawn(key_recheck::run(services.vault, every)));
        }
        if let Some(every) = schedule.checkpoint_every {
            tasks.push(tokio::spawn(checkpoints::run(services.audit, every)));
        }
        Self { tasks }
    }

    /// Aborts every loop; a round in progress stops at its next await.
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for Jobs {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}
