//! Audit reports: the filter form (one parser for the CSV download, the PDF jobs and the
//! auditor's view), and the server functions that start a PDF report and report its progress.
//! The CSV itself streams from the plain route `GET /reports/audit.csv` (server/src/reports).

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::AppError;

/// The filter as the pages send it: strings, "" meaning "any".
///
/// `from` and `to` take `YYYY-MM-DD` (a UTC day; a `to` day is included whole),
/// `YYYY-MM-DDTHH:MM[:SS]` (UTC, what a datetime-local input gives) or RFC 3339; `to` is
/// exclusive otherwise. `actor` is an email (the user's id is looked up) or an actor id as
/// recorded; `action` a prefix such as `trade.`; `outcome` success, failure or denied.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ReportFilterForm {
    pub from: String,
    pub to: String,
    pub actor: String,
    pub action: String,
    pub outcome: String,
    pub resource: String,
    pub request_id: String,
}

/// The longest value a text condition may have (ids, prefixes, resources).
pub const MAX_FILTER_TEXT: usize = 200;

impl ReportFilterForm {
    fn fields(&self) -> [(&'static str, &str); 7] {
        [
            ("from", &self.from),
            ("to", &self.to),
            ("actor", &self.actor),
            ("action", &self.action),
            ("outcome", &self.outcome),
            ("resource", &self.resource),
            ("request_id", &self.request_id),
        ]
    }

    /// The query string of the CSV download (`/reports/audit.csv?…`); empty fields are left out.
    pub fn to_query_string(&self) -> String {
        self.fields()
            .into_iter()
            .filter(|(_, value)| !value.trim().is_empty())
            .map(|(name, value)| format!("{name}={}", percent_encode(value.trim())))
            .collect::<Vec<_>>()
            .join("&")
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(byte as char)
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

#[cfg(feature = "ssr")]
mod parse {
    use domain::audit::{AuditFilter, Outcome};
    use time::format_description::well_known::Rfc3339;
    use time::macros::format_description;
    use time::{Date, OffsetDateTime, PrimitiveDateTime};

    use super::{MAX_FILTER_TEXT, ReportFilterForm};
    use crate::api::context::Services;
    use crate::error::AppError;

    fn invalid(message: impl Into<String>) -> AppError {
        AppError::Invalid(message.into())
    }

    /// A point in time; a bare date is the start of that UTC day, or (`end_of_day`) the start
    /// of the next one, so a `to` date includes the whole day.
    pub(super) fn parse_time(
        field: &str,
        raw: &str,
        end_of_day: bool,
    ) -> Result<Option<OffsetDateTime>, AppError> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Ok(None);
        }
        let bad = || {
            invalid(format!(
                "`{field}` must be a date (YYYY-MM-DD) or a time (YYYY-MM-DDTHH:MM, UTC), not `{raw}`."
            ))
        };
        if let Ok(date) = Date::parse(raw, format_description!("[year]-[month]-[day]")) {
            let day = if end_of_day {
                date.next_day().ok_or_else(bad)?
            } else {
                date
            };
            return Ok(Some(day.midnight().assume_utc()));
        }
        for format in [
            format_description!("[year]-[month]-[day]T[hour]:[minute]"),
            format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]"),
        ] {
            if let Ok(at) = PrimitiveDateTime::parse(raw, format) {
                return Ok(Some(at.assume_utc()));
            }
        }
        OffsetDateTime::parse(raw, &Rfc3339)
            .map(|at| Some(at.to_offset(time::UtcOffset::UTC)))
            .map_err(|_| bad())
    }

    fn text(field: &str, raw: &str) -> Result<Option<String>, AppError> {
        let value = raw.trim();
        if value.is_empty() {
            return Ok(None);
        }
        if value.chars().count() > MAX_FILTER_TEXT || !domain::text::is_plain(value) {
            return Err(invalid(format!(
                "`{field}` must be at most {MAX_FILTER_TEXT} printable characters."
            )));
        }
        Ok(Some(value.to_owned()))
    }

    impl ReportFilterForm {
        /// Every condition but the actor's email lookup: the raw actor is left as given.
        pub fn parse_conditions(&self) -> Result<AuditFilter, AppError> {
            let from = parse_time("from", &self.from, false)?;
            let to = parse_time("to", &self.to, true)?;
            if let (Some(from), Some(to)) = (from, to)
                && from >= to
            {
                return Err(invalid("The period ends before it starts."));
            }
            let outcome = match self.outcome.trim() {
                "" => None,
                raw => Some(Outcome::parse(raw).ok_or_else(|| {
                    invalid(format!(
                        "`outcome` must be success, failure or denied, not `{raw}`."
                    ))
                })?),
            };
            Ok(AuditFilter {
                from,
                to,
                actor_id: text("actor", &self.actor)?,
                action_prefix: text("action", &self.action)?,
                outcome,
                resource: text("resource", &self.resource)?,
                request_id: text("request_id", &self.request_id)?,
                up_to_seq: None,
            })
        }

        /// The filter, with an actor given as an email turned into that user's id.
        pub async fn to_filter(&self, services: &Services) -> Result<AuditFilter, AppError> {
            let mut filter = self.parse_conditions()?;
            if let Some(actor) = filter.actor_id.as_deref()
                && actor.contains('@')
            {
                // A look-up, not a new address: accounts older than the ASCII rule still match.
                let email = domain::account::Email::from_stored(actor)
                    .ok_or_else(|| invalid(format!("`{actor}` is not a valid email.")))?;
                let user = services
                    .accounts
                    .user_by_email(&email)
                    .await?
                    .ok_or_else(|| invalid(format!("No user has the email {actor}.")))?;
                filter.actor_id = Some(user.id.to_string());
            }
            Ok(filter)
        }
    }
}

/// A PDF report job as the page polls it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PdfJobView {
    pub done: u64,
    pub total: u64,
    pub finished: bool,
    /// Why the job failed, worded for the user.
    pub error: Option<String>,
    /// Where to fetch the PDF once it is ready.
    pub download_url: Option<String>,
}

/// Starts building a PDF of the events the filter selects; returns the job's id.
#[server(endpoint = "reports/pdf/start")]
pub async fn start_pdf_report(filter: ReportFilterForm) -> Result<String, AppError> {
    use super::context::{request_meta, require_reviewer, services};

    let reviewer = require_reviewer().await?;
    let services = services()?;
    let filter = filter.to_filter(&services).await?;
    use domain::audit::reports::PdfJobRefused;
    let job = services
        .report_jobs
        .start_pdf(&reviewer, filter, request_meta())
        .map_err(|refused| match refused {
            PdfJobRefused::YoursRunning => AppError::Conflict(refused.to_string()),
            PdfJobRefused::Busy => AppError::Unavailable(refused.to_string()),
        })?;
    Ok(job.to_string())
}

/// The PDF job's progress (only its requester may see it).
#[server(endpoint = "reports/pdf/status")]
pub async fn pdf_report_status(job_id: String) -> Result<PdfJobView, AppError> {
    use super::context::{require_reviewer, services};
    use domain::audit::jobs::JobId;
    use domain::audit::reports::PdfOutcome;

    let reviewer = require_reviewer().await?;
    let id = JobId::parse(&job_id).ok_or(AppError::NotFound)?;
    let status = services()?
        .report_jobs
        .pdf_status(reviewer.id(), id)
        .ok_or(AppError::NotFound)?;
    let (error, download_url) = match &status.result {
        Some(PdfOutcome::Ready { .. }) => (None, Some(format!("/reports/pdf/{id}"))),
        Some(PdfOutcome::Failed(why)) => (Some(why.clone()), None),
        None => (None, None),
    };
    Ok(PdfJobView {
        done: status.done,
        total: status.total,
        finished: status.finished,
        error,
        download_url,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_string_leaves_out_empty_fields_and_encodes_the_rest() {
        let form = ReportFilterForm {
            from: "2026-11-01".into(),
            actor: "ann+ops@example.com".into(),
            action: "trade.".into(),
            resource: "a b&c=d".into(),
            ..ReportFilterForm::default()
        };
        assert_eq!(
            form.to_query_string(),
            "from=2026-11-01&actor=ann%2Bops%40example.com&action=trade.&resource=a%20b%26c%3Dd"
        );
        assert_eq!(ReportFilterForm::default().to_query_string(), "");
    }

    #[cfg(feature = "ssr")]
    #[test]
    fn dates_times_and_bad_input_parse_as_documented() {
        use time::macros::datetime;
        let form = ReportFilterForm {
            from: "2026-11-01".into(),
            to: "2026-11-02".into(),
            outcome: "denied".into(),
            ..ReportFilterForm::default()
        };
        let filter = form.parse_conditions().expect("valid");
        assert_eq!(filter.from, Some(datetime!(2026-11-01 0:00 UTC)));
        // A `to` day is included whole.
        assert_eq!(filter.to, Some(datetime!(2026-11-03 0:00 UTC)));
        assert_eq!(filter.outcome, Some(domain::audit::Outcome::Denied));
        let at = |raw: &str| parse::parse_time("from", raw, false).expect(raw);
        assert_eq!(
            at("2026-11-01T10:30"),
            Some(datetime!(2026-11-01 10:30 UTC))
        );
        assert_eq!(
            at("2026-11-01T10:30:00+02:00"),
            Some(datetime!(2026-11-01 8:30 UTC))
        );
        for bad in [
            ReportFilterForm {
                from: "yesterday".into(),
                ..ReportFilterForm::default()
            },
            ReportFilterForm {
                from: "2026-11-02".into(),
                to: "2026-11-01".into(),
                ..ReportFilterForm::default()
            },
            ReportFilterForm {
                outcome: "maybe".into(),
                ..ReportFilterForm::default()
            },
            ReportFilterForm {
                resource: "x".repeat(MAX_FILTER_TEXT + 1),
                ..ReportFilterForm::default()
            },
        ] {
            assert!(
                matches!(bad.parse_conditions(), Err(AppError::Invalid(_))),
                "{bad:?}"
            );
        }
    }
}
