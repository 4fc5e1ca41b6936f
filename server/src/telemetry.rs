//! Structured logs. Secrets never reach them: they live in types whose `Debug` redacts, and
//! request logging records method, path (no query) and status only.

use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, Settings};

pub fn init(settings: &Settings) {
    // RUST_LOG, when set, overrides the configured level (for debugging a single module).
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new(format!(
            "{},tower_sessions_core=warn,sqlx=warn,sea_orm=warn",
            settings.log_level
        ))
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(true);
    let result = match settings.log_format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
    if result.is_err() {
        eprintln!("logging was already initialised");
    }
}
