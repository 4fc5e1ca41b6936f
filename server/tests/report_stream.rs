//! The 200k-event CSV download, in a test binary of its own: its memory figure is this
//! process's resident-set growth while the in-process server streams, which other tests
//! running in parallel in the same process would distort.

use std::io::Write as _;
use std::time::Instant;

use domain::account::Role;
use domain::audit::report::verify_report;
use domain::audit::{Actor, AuditDraft, Outcome, RequestMeta};
use domain::audit_action::AuditAction;
use time::OffsetDateTime;

#[path = "api/helpers.rs"]
#[allow(dead_code)]
mod helpers;
#[path = "api/report_fixtures.rs"]
#[allow(dead_code)]
mod report_fixtures;

use helpers::spawn_app;
use report_fixtures::{append_events, downloads, varied};

/// This process's resident set in KiB (the server runs in it).
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kib| kib.parse().ok())
        })
        .unwrap_or(0)
}

/// Streams a CSV download to `path`, sampling RSS; returns (bytes, ms to first byte, peak RSS
/// growth in KiB). `after_first_chunk` runs once the first bytes have arrived.
async fn stream_to_file(
    response: reqwest::Response,
    path: &std::path::Path,
    after_first_chunk: impl AsyncFnOnce(),
) -> (u64, u128, u64) {
    let started = Instant::now();
    let baseline = rss_kib();
    let mut peak = baseline;
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).expect("file"));
    let mut response = response;
    let mut total = 0u64;
    let mut first_byte_ms = None;
    let mut hook = Some(after_first_chunk);
    while let Some(chunk) = response.chunk().await.expect("chunk") {
        total += chunk.len() as u64;
        file.write_all(&chunk).expect("write");
        peak = peak.max(rss_kib());
        if first_byte_ms.is_none() {
            first_byte_ms = Some(started.elapsed().as_millis());
            if let Some(hook) = hook.take() {
                hook().await;
            }
        }
    }
    file.flush().expect("flush");
    (
        total,
        first_byte_ms.unwrap_or_default(),
        peak.saturating_sub(baseline),
    )
}

#[tokio::test]
async fn a_200k_event_csv_streams_in_flat_memory_pins_its_head_and_verifies() {
    let test_started = Instant::now();
    let app = spawn_app().await;
    let reviewer = app.signed_in_as("vera@example.com", Role::Reviewer).await;
    let start = OffsetDateTime::now_utc() - time::Duration::days(1);
    let head = append_events(
        &app,
        200_000,
        start,
        time::Duration::milliseconds(1),
        varied,
    )
    .await;
    let inserted_in = test_started.elapsed();

    let response = reviewer
        .get(format!("{}/reports/audit.csv", app.address))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    assert_eq!(headers["content-type"], "text/csv; charset=utf-8");
    assert_eq!(headers["cache-control"], "no-store");
    let disposition = headers["content-disposition"].to_str().expect("ascii");
    assert!(
        disposition.starts_with("attachment; filename=\"cryptopulse-audit-all-now-")
            && disposition.ends_with(".csv\""),
        "{disposition}"
    );
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("report.csv");
    let late = std::sync::Arc::new(std::sync::Mutex::new(None));
    let late_slot = late.clone();
    let log = app.backend.audit_log.clone();
    let streaming = Instant::now();
    let (bytes, first_byte_ms, growth_kib) = stream_to_file(response, &path, async move || {
        // Appended mid-download: the report's head was pinned when it started.
        let event = log
            .record(AuditDraft::new(
                Actor::system("test"),
                AuditAction::SystemStart,
                Outcome::Success,
                RequestMeta::default(),
            ))
            .await
            .expect("late event");
        *late_slot.lock().expect("lock") = Some(event.seq);
    })
    .await;
    let streamed_in = streaming.elapsed();
    println!(
        "200k-event CSV: {bytes} bytes, first byte after {first_byte_ms} ms, streamed in {streamed_in:?}, \
         server RSS growth while streaming {:.1} MiB (insert took {inserted_in:?})",
        growth_kib as f64 / 1024.0
    );
    assert!(
        growth_kib < 16 * 1024,
        "memory grew {growth_kib} KiB while streaming"
    );

    let report = std::fs::read(&path).expect("read back");
    let public_key = app.backend.services.audit.report_public_key();
    let verified = verify_report(&report, Some(&public_key)).expect("the report verifies");
    let manifest = &verified.manifest;
    // Everything up to the head when the download started: sign-up events plus the 200k.
    assert!(manifest.row_count >= 200_000);
    assert_eq!(manifest.last_seq, Some(head.seq));
    assert_eq!(manifest.row_count as i64, head.seq);
    let late_seq = late.lock().expect("lock").expect("late event recorded");
    assert!(late_seq > head.seq, "the late event is not in the report");
    // The first chunk came long before the last: it was a fraction of the body.
    assert!(bytes > 10_000_000, "{bytes}");

    let recorded = downloads(&app).await;
    assert_eq!(recorded.len(), 1);
    let event = &recorded[0];
    assert_eq!(event.outcome, Outcome::Success);
    assert_eq!(event.details["format"], "csv");
    assert_eq!(event.details["row_count"], manifest.row_count);
    assert_eq!(event.details["rows_sha256"], manifest.rows_sha256.as_str());
    assert!(event.seq > head.seq);
    println!("200k test total {:?}", test_started.elapsed());
    app.stop().await;
}
