//! Structured logs. Secrets never reach them: they live in types whose `Debug` redacts, and
//! request logging records method, path (no query) and status only.

use tracing::Subscriber;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::{LogFormat, Settings};

pub fn init(settings: &Settings) {
    // RUST_LOG, when set, overrides the configured level (for debugging a single module).
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(default_directives(&settings.log_level)));
    let result = match settings.log_format {
        LogFormat::Json => json_logs(filter, std::io::stdout)
            .try_init()
            .map_err(|e| e.to_string()),
        LogFormat::Pretty => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_target(true)
            .try_init()
            .map_err(|e| e.to_string()),
    };
    if result.is_err() {
        eprintln!("logging was already initialised");
    }
}

/// One JSON object per line, carrying the innermost span's fields (the `request` span's request
/// id, method and path for everything a handler logs).
fn json_logs<W>(filter: EnvFilter, writer: W) -> impl Subscriber + Send + Sync
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(true)
        .with_writer(writer)
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(false)
        .finish()
}

/// The configured level, with the dependencies' chatter held to warnings. `tower_sessions`
/// opens an info span ("call", no fields) around every request inside the session layer: as the
/// innermost span it would replace the `request` span (its request id and path) on every line
/// the handlers log, and it costs a span per request.
fn default_directives(level: &str) -> String {
    format!("{level},tower_sessions=warn,tower_sessions_core=warn,sqlx=warn,sea_orm=warn")
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("log buffer").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'w> MakeWriter<'w> for Captured {
        type Writer = Captured;
        fn make_writer(&'w self) -> Self::Writer {
            self.clone()
        }
    }

    #[test]
    fn a_handlers_log_line_inside_the_session_layer_carries_the_request_id() {
        let captured = Captured::default();
        let subscriber = json_logs(EnvFilter::new(default_directives("info")), captured.clone());
        tracing::subscriber::with_default(subscriber, || {
            let request = tracing::info_span!("request", request_id = "req-42", path = "/trade");
            let _request = request.enter();
            // What tower-sessions opens around the inner service (its target, its level).
            let session = tracing::info_span!(target: "tower_sessions::service", "call");
            let _session = session.enter();
            tracing::warn!("a handler's warning");
        });
        let logged =
            String::from_utf8(captured.0.lock().expect("log buffer").clone()).expect("utf-8 logs");
        let line: serde_json::Value =
            serde_json::from_str(logged.lines().next().expect("one line logged"))
                .expect("a JSON line");
        assert_eq!(line["message"], "a handler's warning");
        assert_eq!(line["span"]["name"], "request", "{logged}");
        assert_eq!(line["span"]["request_id"], "req-42", "{logged}");
    }
}
