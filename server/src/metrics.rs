//! Prometheus metrics, served on `/metrics` to loopback clients only.

use std::sync::{Arc, Mutex};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: String,
}

#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Mutex<Registry>>,
    security_events: Family<KindLabel, Counter>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("cryptopulse");
        let security_events = Family::<KindLabel, Counter>::default();
        registry.register(
            "security_events",
            "Security events by kind (e.g. canary_key_used)",
            security_events.clone(),
        );
        Self {
            registry: Arc::new(Mutex::new(registry)),
            security_events,
        }
    }

    pub fn security_event(&self, kind: &str) {
        self.security_events
            .get_or_create(&KindLabel {
                kind: kind.to_owned(),
            })
            .inc();
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Ok(registry) = self.registry.lock() {
            // Writing into a String cannot fail.
            let _ = encode(&mut out, &registry);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn security_events_are_counted_by_kind() {
        let metrics = Metrics::new();
        metrics.security_event("canary_key_used");
        metrics.security_event("canary_key_used");
        let text = metrics.render();
        assert!(
            text.contains("cryptopulse_security_events_total{kind=\"canary_key_used\"} 2"),
            "{text}"
        );
    }
}
