//! Which audit events a search, a report or a page of the auditor's view is about.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::{AuditEvent, Outcome};

/// A conjunction of optional conditions; `Default` selects every event.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditFilter {
    /// occurred_at >= from (inclusive), < to (exclusive); UTC.
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub from: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub to: Option<OffsetDateTime>,
    /// The actor id exactly as recorded (a user's uuid, `cli`, an agent token id …).
    #[serde(default)]
    pub actor_id: Option<String>,
    /// Action prefix, e.g. `trade.` or `auth.login`.
    #[serde(default)]
    pub action_prefix: Option<String>,
    #[serde(default)]
    pub outcome: Option<Outcome>,
    /// Exact.
    #[serde(default)]
    pub resource: Option<String>,
    /// Exact.
    #[serde(default)]
    pub request_id: Option<String>,
    /// Only events with seq <= this (reports pin the chain head at start). Not a user filter.
    #[serde(default)]
    pub up_to_seq: Option<i64>,
}

/// An empty string is no condition: the forms send "" for "any".
fn given(value: &Option<String>) -> Option<&str> {
    value.as_deref().filter(|v| !v.is_empty())
}

impl AuditFilter {
    pub fn actor_id(&self) -> Option<&str> {
        given(&self.actor_id)
    }
    pub fn action_prefix(&self) -> Option<&str> {
        given(&self.action_prefix)
    }
    pub fn resource(&self) -> Option<&str> {
        given(&self.resource)
    }
    pub fn request_id(&self) -> Option<&str> {
        given(&self.request_id)
    }

    /// The same filter with empty strings turned into `None` (what manifests record).
    pub fn normalised(&self) -> Self {
        let keep = |v: Option<&str>| v.map(str::to_owned);
        Self {
            from: self.from,
            to: self.to,
            actor_id: keep(self.actor_id()),
            action_prefix: keep(self.action_prefix()),
            outcome: self.outcome,
            resource: keep(self.resource()),
            request_id: keep(self.request_id()),
            up_to_seq: self.up_to_seq,
        }
    }

    /// True when the filter selects every event (ignoring the pinned head).
    pub fn is_everything(&self) -> bool {
        Self {
            up_to_seq: None,
            ..self.normalised()
        } == Self::default()
    }

    /// Whether `event` passes: the same semantics the SQL adapter implements.
    pub fn matches(&self, event: &AuditEvent) -> bool {
        self.from.is_none_or(|from| event.occurred_at >= from)
            && self.to.is_none_or(|to| event.occurred_at < to)
            && self
                .actor_id()
                .is_none_or(|id| event.actor.id.as_deref() == Some(id))
            && self
                .action_prefix()
                .is_none_or(|prefix| event.action.starts_with(prefix))
            && self.outcome.is_none_or(|o| event.outcome == o)
            && self
                .resource()
                .is_none_or(|r| event.resource.as_deref() == Some(r))
            && self
                .request_id()
                .is_none_or(|r| event.meta.request_id.as_deref() == Some(r))
            && self.up_to_seq.is_none_or(|up_to| event.seq <= up_to)
    }
}

/// `YYYY-MM-DDTHH:MM:SS.ffffff` in UTC: one fixed width, so text order is time order. (The
/// stored canonical form drops trailing zeros of the fraction, which text order gets wrong.)
pub fn fixed_width_time(at: OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second(),
        at.microsecond()
    )
}

/// A filter bound in the fixed-width form, rounded up to the next whole microsecond: events are
/// stored at whole microseconds, so `>= from` and `< to` then select exactly what
/// [`AuditFilter::matches`] selects, even for a bound with sub-microsecond digits.
pub fn bound_time(at: OffsetDateTime) -> String {
    let sub_micro = at.nanosecond() % 1_000;
    let rounded = if sub_micro == 0 {
        at
    } else {
        at + time::Duration::nanoseconds(i64::from(1_000 - sub_micro))
    };
    fixed_width_time(rounded)
}

/// `YYYY-MM-DDTHH:MM:SS` of `at` in UTC: the whole-second prefix of the canonical form.
pub fn second_prefix(at: OffsetDateTime) -> String {
    fixed_width_time(at)[..19].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{Actor, AuditDraft, ChainHead, RequestMeta, canonical_time};
    use crate::audit_action::AuditAction;
    use time::macros::datetime;

    fn event(at: OffsetDateTime) -> AuditEvent {
        AuditEvent::seal(
            ChainHead::EMPTY,
            AuditDraft::new(
                Actor::system("cli"),
                AuditAction::TradeOrderFilled,
                Outcome::Success,
                RequestMeta {
                    request_id: Some("req-1".into()),
                    ..RequestMeta::default()
                },
            )
            .resource("order:1"),
            at,
        )
    }

    #[test]
    fn the_default_and_empty_strings_select_everything() {
        let e = event(datetime!(2026-11-23 12:00:00 UTC));
        assert!(AuditFilter::default().matches(&e));
        let blank = AuditFilter {
            actor_id: Some(String::new()),
            action_prefix: Some(String::new()),
            resource: Some(String::new()),
            request_id: Some(String::new()),
            ..AuditFilter::default()
        };
        assert!(blank.matches(&e));
        assert!(blank.is_everything());
        assert_eq!(blank.normalised(), AuditFilter::default());
    }

    #[test]
    fn each_condition_excludes_what_it_should() {
        let at = datetime!(2026-11-23 12:00:00.5 UTC);
        let e = event(at);
        let passes = |f: AuditFilter| f.matches(&e);
        assert!(passes(AuditFilter {
            from: Some(at),
            to: Some(at + time::Duration::microseconds(1)),
            ..Default::default()
        }));
        assert!(!passes(AuditFilter {
            to: Some(at),
            ..Default::default()
        }));
        assert!(!passes(AuditFilter {
            from: Some(at + time::Duration::microseconds(1)),
            ..Default::default()
        }));
        assert!(passes(AuditFilter {
            actor_id: Some("cli".into()),
            action_prefix: Some("trade.".into()),
            outcome: Some(Outcome::Success),
            resource: Some("order:1".into()),
            request_id: Some("req-1".into()),
            up_to_seq: Some(1),
            ..Default::default()
        }));
        for f in [
            AuditFilter {
                actor_id: Some("cl".into()),
                ..Default::default()
            },
            AuditFilter {
                action_prefix: Some("Trade.".into()),
                ..Default::default()
            },
            AuditFilter {
                outcome: Some(Outcome::Denied),
                ..Default::default()
            },
            AuditFilter {
                resource: Some("order:".into()),
                ..Default::default()
            },
            AuditFilter {
                request_id: Some("req-2".into()),
                ..Default::default()
            },
            AuditFilter {
                up_to_seq: Some(0),
                ..Default::default()
            },
        ] {
            assert!(!passes(f.clone()), "{f:?}");
        }
    }

    #[test]
    fn fixed_width_time_sorts_where_the_canonical_form_does_not() {
        let a = datetime!(2026-11-23 12:00:00.5 UTC);
        let b = datetime!(2026-11-23 12:00:00.55 UTC);
        // The canonical text gets these two the wrong way round ("…00.5Z" > "…00.55Z").
        assert!(canonical_time(a) > canonical_time(b));
        assert!(fixed_width_time(a) < fixed_width_time(b));
        assert_eq!(fixed_width_time(a), "2026-11-23T12:00:00.500000");
        assert_eq!(second_prefix(a), "2026-11-23T12:00:00");
        let sub_micro = datetime!(2026-11-23 12:00:00.0000005 UTC);
        assert_eq!(bound_time(sub_micro), "2026-11-23T12:00:00.000001");
        assert_eq!(bound_time(a), "2026-11-23T12:00:00.500000");
    }

    #[test]
    fn filters_round_trip_through_json() {
        let f = AuditFilter {
            from: Some(datetime!(2026-11-23 00:00 UTC)),
            outcome: Some(Outcome::Failure),
            action_prefix: Some("auth.".into()),
            ..Default::default()
        };
        let json = serde_json::to_string(&f).expect("serialises");
        assert_eq!(serde_json::from_str::<AuditFilter>(&json).ok(), Some(f));
    }
}
