//! Audit report downloads: the streamed CSV route, the PDF route, and the PDF layout.

pub mod pdf;
pub mod routes;

use domain::audit::AuditFilter;
use time::OffsetDateTime;

/// `yyyymmddThhmmssZ`: sortable and safe in any file name.
fn compact(at: OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    )
}

/// `cryptopulse-audit-<from|all>-<to|now>-<generated>.<ext>`: ASCII only, nothing a user typed.
pub fn report_file_name(filter: &AuditFilter, generated: OffsetDateTime, ext: &str) -> String {
    let from = filter.from.map_or_else(|| "all".to_owned(), compact);
    let to = filter.to.map_or_else(|| "now".to_owned(), compact);
    format!("cryptopulse-audit-{from}-{to}-{}.{ext}", compact(generated))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn file_names_are_safe_and_say_what_they_hold() {
        let filter = AuditFilter {
            from: Some(datetime!(2026-11-01 0:00 UTC)),
            actor_id: Some("\"; rm -rf /".into()),
            ..AuditFilter::default()
        };
        assert_eq!(
            report_file_name(&filter, datetime!(2026-11-28 9:05:07.5 +01:00), "csv"),
            "cryptopulse-audit-20261101T000000Z-now-20261128T080507Z.csv"
        );
    }
}
