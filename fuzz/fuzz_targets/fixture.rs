//! A small valid audit report the report targets edit (shared by `report_verify` and
//! `report_pdf`).

use std::sync::OnceLock;

use domain::audit::report::{ReportInfo, VerifiedReport};
use domain::audit::{
    Actor, AuditDraft, AuditEvent, AuditFilter, ChainHead, Outcome, ReportKey, ReportWriter,
    RequestMeta, SignedCheckpoint, canonical_time, verify_report,
};
use domain::audit_action::AuditAction;
use time::OffsetDateTime;

/// A small valid report (with formula cells and quotes) and its verification.
pub fn original() -> &'static (Vec<u8>, VerifiedReport) {
    static REPORT: OnceLock<(Vec<u8>, VerifiedReport)> = OnceLock::new();
    REPORT.get_or_init(|| {
        let key = ReportKey::from_secret_bytes([7; 32]);
        let t0 = OffsetDateTime::from_unix_timestamp(1_750_000_000).expect("time");
        let mut head = ChainHead::EMPTY;
        let mut writer = ReportWriter::new();
        let mut out = writer.header();
        for i in 1..=4_i64 {
            let meta = RequestMeta {
                ip: Some(format!("10.0.0.{i}")),
                user_agent: Some("=cmd|' /C calc'!A0, \"quoted\"".into()),
                request_id: (i % 2 == 0).then(|| format!("req-{i}")),
            };
            let draft = AuditDraft::new(
                Actor::system("cli"),
                AuditAction::AuthLogin,
                Outcome::Success,
                meta,
            )
            .resource(format!("user:{i}"))
            .detail("n", i);
            let event = AuditEvent::seal(head, draft, t0 + time::Duration::seconds(i));
            head = event.head();
            out.extend(writer.row(&event));
        }
        let info = ReportInfo {
            filter: AuditFilter {
                up_to_seq: Some(head.seq),
                ..AuditFilter::default()
            },
            generated_at: canonical_time(t0 + time::Duration::hours(1)),
            generated_by: "6f1c1a52-0000-4000-8000-000000000001".into(),
            generated_by_email: Some("reviewer@example.com".into()),
            chain_head: head,
            latest_checkpoint: Some(SignedCheckpoint::sign(
                head,
                t0 + time::Duration::minutes(30),
                &key,
            )),
        };
        let (_, trailer) = writer.finish(info, &key);
        out.extend(trailer);
        let verified = verify_report(&out, Some(&key.public_key())).expect("the fixture verifies");
        (out, verified)
    })
}
