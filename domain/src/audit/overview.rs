//! What the role overviews read from the log: security events over the last day, counted by
//! hour (the admin's chart), and the newest report downloads (the reviewer's card).
//!
//! **Security events** are defined once, here ([`is_security_event`]):
//! - every event whose outcome is `denied` or `failure` (a refused request, a failed check), and
//! - every event of the sign-in (`auth.*`), step-up and security-key (`stepup.*`), security
//!   alert (`security.*`), master key (`kms.*`) and exchange-key (`vault.key_*`) areas, whatever
//!   its outcome — except `vault.key_used`, the routine decryption of a key for an order, which
//!   counts only when it fails.

use std::collections::BTreeMap;

use time::{Duration, OffsetDateTime, Time};

use super::service::{AuditService, ReviewedEvent};
use super::{AuditEvent, AuditFilter, Outcome, SCAN_PAGE};
use crate::audit_action::AuditAction;
use crate::authz::{AdminReader, Reviewer};
use crate::store_error::StoreError;

/// Action areas whose every event is a security event.
pub const SECURITY_AREAS: &[&str] = &["auth.", "stepup.", "security.", "kms.", "vault.key_"];
/// Actions inside those areas that are routine, and count only when refused or failed.
pub const ROUTINE_ACTIONS: &[AuditAction] = &[AuditAction::VaultKeyUsed];
/// Outcomes that make any event a security event.
pub const SECURITY_OUTCOMES: &[Outcome] = &[Outcome::Denied, Outcome::Failure];

/// Whether an event with this action and outcome is a security event (see the module docs).
pub fn is_security_event(action: &str, outcome: Outcome) -> bool {
    SECURITY_OUTCOMES.contains(&outcome)
        || (SECURITY_AREAS.iter().any(|area| action.starts_with(area))
            && !ROUTINE_ACTIONS
                .iter()
                .any(|routine| action == routine.as_str()))
}

/// How many hourly bars the admin's chart has: the current hour and the 23 before it.
pub const SECURITY_HOURS: usize = 24;
/// The most events the chart reads per query; past it the chart says it is incomplete rather
/// than reading without bound.
pub const SECURITY_SCAN_LIMIT: u64 = 10_000;

/// One bar of the chart: an hour (UTC) and its security events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SecurityHour {
    pub start: OffsetDateTime,
    /// Denied or failed.
    pub refused: u32,
    /// The rest (successful sign-ins, key and step-up changes, alerts).
    pub other: u32,
}

impl SecurityHour {
    pub fn total(&self) -> u32 {
        self.refused + self.other
    }
}

/// Security events over the last day, hour by hour, oldest hour first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityActivity {
    pub hours: Vec<SecurityHour>,
    /// The start of the first hour.
    pub since: OffsetDateTime,
    /// When it was counted.
    pub until: OffsetDateTime,
    /// More events than [`SECURITY_SCAN_LIMIT`] matched one of the queries: counts are a floor.
    pub incomplete: bool,
}

/// The start of the hour `at` falls in (UTC).
fn hour_start(at: OffsetDateTime) -> OffsetDateTime {
    let at = at.to_offset(time::UtcOffset::UTC);
    at.replace_time(Time::from_hms(at.hour(), 0, 0).unwrap_or(Time::MIDNIGHT))
}

/// The first hour the chart shows when it is `now`.
pub fn security_window_start(now: OffsetDateTime) -> OffsetDateTime {
    hour_start(now) - Duration::hours(SECURITY_HOURS as i64 - 1)
}

/// Counts security events into the hours ending with the one `now` falls in. Events that are
/// not security events, or fall outside the window, are ignored.
pub fn security_hours<'a>(
    events: impl IntoIterator<Item = &'a AuditEvent>,
    now: OffsetDateTime,
) -> Vec<SecurityHour> {
    let since = security_window_start(now);
    let mut hours: Vec<SecurityHour> = (0..SECURITY_HOURS)
        .map(|i| SecurityHour {
            start: since + Duration::hours(i as i64),
            refused: 0,
            other: 0,
        })
        .collect();
    for event in events {
        if !is_security_event(&event.action, event.outcome) || event.occurred_at < since {
            continue;
        }
        let index = usize::try_from((event.occurred_at - since).whole_hours()).unwrap_or(0);
        if let Some(hour) = hours.get_mut(index) {
            if SECURITY_OUTCOMES.contains(&event.outcome) {
                hour.refused += 1;
            } else {
                hour.other += 1;
            }
        }
    }
    hours
}

/// Queries whose results together contain every security event since `since`: one per
/// security outcome and one per area (the SQL filters are conjunctions, so the union is
/// assembled here; [`is_security_event`] has the last word on each event).
fn security_queries(since: OffsetDateTime) -> Vec<AuditFilter> {
    let window = AuditFilter {
        from: Some(since),
        ..AuditFilter::default()
    };
    SECURITY_OUTCOMES
        .iter()
        .map(|outcome| AuditFilter {
            outcome: Some(*outcome),
            ..window.clone()
        })
        .chain(SECURITY_AREAS.iter().map(|area| AuditFilter {
            action_prefix: Some((*area).to_owned()),
            ..window.clone()
        }))
        .collect()
}

impl AuditService {
    /// The admin's chart: security events over the last day by hour. A handful of indexed
    /// queries (one per outcome and area), each bounded by [`SECURITY_SCAN_LIMIT`].
    pub async fn security_activity(
        &self,
        _reader: &AdminReader,
        now: OffsetDateTime,
    ) -> Result<SecurityActivity, StoreError> {
        let since = security_window_start(now);
        // By seq: an event found by two queries counts once.
        let mut found: BTreeMap<i64, AuditEvent> = BTreeMap::new();
        let mut incomplete = false;
        for filter in security_queries(since) {
            let mut after = 0;
            let mut read = 0;
            loop {
                let page = self.log.search_after(&filter, after, SCAN_PAGE).await?;
                let full = page.len() as u64 == SCAN_PAGE;
                read += page.len() as u64;
                if let Some(last) = page.last() {
                    after = last.seq;
                }
                for event in page {
                    found.entry(event.seq).or_insert(event);
                }
                if !full {
                    break;
                }
                if read >= SECURITY_SCAN_LIMIT {
                    incomplete = true;
                    break;
                }
            }
        }
        Ok(SecurityActivity {
            hours: security_hours(found.values(), now),
            since,
            until: now,
            incomplete,
        })
    }

    /// The newest report downloads (who downloaded which report), newest first.
    pub async fn recent_report_downloads(
        &self,
        _reviewer: &Reviewer,
        limit: u64,
    ) -> Result<Vec<ReviewedEvent>, StoreError> {
        let filter = AuditFilter {
            action_prefix: Some(AuditAction::ReportDownload.as_str().to_owned()),
            ..AuditFilter::default()
        };
        let events = self
            .log
            .search_before(&filter, i64::MAX, limit.clamp(1, Self::MAX_RECENT))
            .await?;
        self.with_emails(events).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{Actor, AuditDraft, ChainHead, RequestMeta};
    use time::macros::datetime;

    fn event(action: AuditAction, outcome: Outcome, at: OffsetDateTime) -> AuditEvent {
        AuditEvent::seal(
            ChainHead::EMPTY,
            AuditDraft::new(Actor::anonymous(), action, outcome, RequestMeta::default()),
            at,
        )
    }

    #[test]
    fn refusals_and_the_security_areas_are_security_events_routine_trading_is_not() {
        assert!(is_security_event("auth.login", Outcome::Success));
        assert!(is_security_event("stepup.key_registered", Outcome::Success));
        assert!(is_security_event("trade.order_denied", Outcome::Denied));
        assert!(is_security_event("vault.key_used", Outcome::Failure));
        assert!(!is_security_event("vault.key_used", Outcome::Success));
        assert!(!is_security_event("trade.order_accepted", Outcome::Success));
        assert!(!is_security_event("audit.verify", Outcome::Success));
    }

    #[test]
    fn the_queries_cover_every_security_event() {
        let since = datetime!(2026-11-28 00:00 UTC);
        let queries = security_queries(since);
        let outcomes = [Outcome::Success, Outcome::Failure, Outcome::Denied];
        for action in AuditAction::ALL {
            for outcome in outcomes {
                let e = event(*action, outcome, since + Duration::minutes(5));
                if is_security_event(&e.action, e.outcome) {
                    assert!(
                        queries.iter().any(|q| q.matches(&e)),
                        "{action} {outcome:?} is a security event no query finds"
                    );
                }
            }
        }
    }

    #[test]
    fn events_land_in_their_hour_and_old_ones_are_left_out() {
        let now = datetime!(2026-11-28 15:20 UTC);
        let events = [
            event(
                AuditAction::AuthLogin,
                Outcome::Failure,
                datetime!(2026-11-28 15:01 UTC),
            ),
            event(
                AuditAction::AuthLogin,
                Outcome::Failure,
                datetime!(2026-11-28 15:19 UTC),
            ),
            event(
                AuditAction::AuthLogin,
                Outcome::Success,
                datetime!(2026-11-28 14:59 UTC),
            ),
            // The first hour of the window starts at 16:00 the day before.
            event(
                AuditAction::StepupKeyFailed,
                Outcome::Failure,
                datetime!(2026-11-27 16:00 UTC),
            ),
            event(
                AuditAction::AuthLogin,
                Outcome::Failure,
                datetime!(2026-11-27 15:59 UTC),
            ),
            event(
                AuditAction::TradeOrderAccepted,
                Outcome::Success,
                datetime!(2026-11-28 15:05 UTC),
            ),
        ];
        let hours = security_hours(events.iter(), now);
        assert_eq!(hours.len(), SECURITY_HOURS);
        assert_eq!(hours[0].start, datetime!(2026-11-27 16:00 UTC));
        assert_eq!((hours[0].refused, hours[0].other), (1, 0));
        assert_eq!(hours[23].start, datetime!(2026-11-28 15:00 UTC));
        assert_eq!((hours[23].refused, hours[23].other), (2, 0));
        assert_eq!((hours[22].refused, hours[22].other), (0, 1));
        let total: u32 = hours.iter().map(SecurityHour::total).sum();
        assert_eq!(total, 4);
    }
}
