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

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabel {
    source: &'static str,
}

#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Mutex<Registry>>,
    security_events: Family<KindLabel, Counter>,
    visitor_pages: Family<SourceLabel, Counter>,
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
        let visitor_pages = Family::<SourceLabel, Counter>::default();
        registry.register(
            "visitor_pages",
            "Signed-out /login and /signup pages served, by source (memory or render)",
            visitor_pages.clone(),
        );
        Self {
            registry: Arc::new(Mutex::new(registry)),
            security_events,
            visitor_pages,
        }
    }

    /// The counter of visitor pages served from `source` ("memory" or "render"), to keep and
    /// increment per page without a label lookup.
    pub fn visitor_pages_from(&self, source: &'static str) -> Counter {
        self.visitor_pages
            .get_or_create(&SourceLabel { source })
            .clone()
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
