//! `cryptopulse report verify` and `report public-key`, run as the real binary on reports a real
//! app made: an untouched CSV and PDF pass; each kind of tampering fails with exit 1 and names
//! the row; verification needs no settings and no database.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use domain::account::Role;
use domain::audit::report::{
    MANIFEST_TAG, REPORT_FORMAT, ReportManifest, SIGNATURE_TAG, signed_message, verify_report,
};
use domain::audit::{ReportKey, ReportPublicKey};

use crate::helpers::{TestApp, spawn_app};

/// Runs the binary in a clean directory (no developer's .env), with settings that would fail
/// to load and a database that does not exist: `report verify` must use neither.
fn cryptopulse(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cryptopulse"))
        .args(args)
        .current_dir(dir)
        .env("CRYPTOPULSE_CONFIG", dir.join("no-such-settings.toml"))
        .env(
            "CRYPTOPULSE_DATABASE_URL",
            "postgres://nobody@127.0.0.1:1/none",
        )
        .output()
        .expect("the binary runs")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

struct Verifier {
    dir: tempfile::TempDir,
    key: ReportPublicKey,
}

impl Verifier {
    fn new(key: ReportPublicKey) -> Self {
        Self {
            dir: tempfile::tempdir().expect("temp dir"),
            key,
        }
    }

    fn file(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, bytes).expect("write report");
        path
    }

    /// `report verify FILE --public-key KEY`: (exit code, output).
    fn pinned(&self, name: &str, bytes: &[u8]) -> (Option<i32>, String) {
        let path = self.file(name, bytes);
        let path = path.to_str().expect("utf-8 path");
        let out = cryptopulse(
            self.dir.path(),
            &["report", "verify", path, "--public-key", self.key.as_str()],
        );
        (out.status.code(), text(&out))
    }

    /// Fails with exit 1 and an output containing every one of `expected`.
    fn fails(&self, case: &str, bytes: &[u8], expected: &[&str]) {
        let (code, out) = self.pinned(&format!("{case}.csv"), bytes);
        assert_eq!(code, Some(1), "{case}: {out}");
        assert!(out.contains("report verification FAILED"), "{case}: {out}");
        for part in expected {
            assert!(out.contains(part), "{case}: expected {part:?} in: {out}");
        }
    }
}

/// Some events from real requests: sign-ups, sign-ins, a failed sign-in.
async fn activity(app: &TestApp) {
    for email in ["ana@example.com", "ben@example.com", "cid@example.com"] {
        let client = app.new_client();
        assert_eq!(app.sign_up(&client, email).await.status(), 200);
        app.log_in(&app.new_client(), email, "wrong password").await;
    }
}

async fn download_csv(app: &TestApp, reviewer: &reqwest::Client, query: &str) -> String {
    let response = reviewer
        .get(format!("{}/reports/audit.csv{query}", app.address))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    response.text().await.expect("body")
}

/// The report split into lines: 0 is the header, 1..=n the rows, then the two trailer lines
/// (rows made by these requests hold no line breaks).
fn lines(report: &str) -> Vec<String> {
    report.lines().map(str::to_owned).collect()
}

fn join(lines: &[String]) -> Vec<u8> {
    lines
        .iter()
        .map(|l| format!("{l}\n"))
        .collect::<String>()
        .into_bytes()
}

/// The seq cell of a data line.
fn seq_of(line: &str) -> String {
    line.split(',').nth(1).expect("seq cell").to_owned()
}

/// The manifest JSON exactly as the file holds it (the unquoted second cell).
fn manifest_json(line: &str) -> String {
    line.strip_prefix(&format!("{MANIFEST_TAG},\""))
        .and_then(|rest| rest.strip_suffix('"'))
        .expect("manifest line")
        .replace("\"\"", "\"")
}

fn manifest_line(json: &str) -> String {
    format!("{MANIFEST_TAG},\"{}\"", json.replace('"', "\"\""))
}

#[tokio::test]
async fn report_verify_passes_an_untouched_csv_and_names_the_row_for_each_tamper() {
    let app = spawn_app().await;
    activity(&app).await;
    let reviewer = app.signed_in_as("rex@example.com", Role::Reviewer).await;
    let checkpoint = app
        .backend
        .services
        .audit
        .checkpoint_if_moved()
        .await
        .expect("checkpoint")
        .expect("the chain moved");
    let key = app.backend.services.audit.report_public_key();
    let verifier = Verifier::new(key.clone());

    let report = download_csv(&app, &reviewer, "").await;
    let l = lines(&report);
    let rows = l.len() - 3;
    assert!(rows >= 8, "{report}");
    assert!(l[rows + 1].starts_with(MANIFEST_TAG) && l[rows + 2].starts_with(SIGNATURE_TAG));

    // Untouched: pinned and not pinned.
    let (code, out) = verifier.pinned("untouched.csv", report.as_bytes());
    assert_eq!(code, Some(0), "{out}");
    for part in [
        "report OK",
        &format!("rows: {rows} (seq 1 to {rows})"),
        "filter: every event",
        "by rex@example.com",
        "signature: valid under the pinned key",
        key.as_str(),
        &key.fingerprint(),
        &format!(
            "latest signed checkpoint: seq {} hash {}",
            checkpoint.seq, checkpoint.hash
        ),
    ] {
        assert!(out.contains(part), "expected {part:?} in: {out}");
    }
    let path = verifier.file("unpinned.csv", report.as_bytes());
    let out = cryptopulse(
        verifier.dir.path(),
        &["report", "verify", path.to_str().expect("path")],
    );
    // Intact, but anyone could have signed it: not a success for a script reading the code.
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(text(&out).contains("(not pinned)"), "{}", text(&out));
    assert!(
        text(&out).starts_with("report intact, signer NOT checked")
            && !text(&out).contains("report OK"),
        "{}",
        text(&out)
    );

    // One edited cell.
    let mut edited = l.clone();
    edited[4] = edited[4].replacen(",success,", ",failure,", 1);
    assert_ne!(edited[4], l[4], "row 4 was a success");
    verifier.fails(
        "edited",
        &join(&edited),
        &[&format!(
            "row 4 (seq {}): the hash does not match",
            seq_of(&l[4])
        )],
    );

    // A deleted row.
    let mut deleted = l.clone();
    deleted.remove(3);
    verifier.fails(
        "deleted",
        &join(&deleted),
        &[
            "row 3 is missing",
            &format!("seq {} removed", seq_of(&l[3])),
        ],
    );

    // Two swapped rows.
    let mut swapped = l.clone();
    swapped.swap(5, 6);
    verifier.fails(
        "swapped",
        &join(&swapped),
        &["rows 5 and 6 are out of order"],
    );

    // An added row: a copy of row 2 after it, and a made-up row at the end.
    let mut added = l.clone();
    added.insert(3, l[2].clone());
    verifier.fails("added", &join(&added), &["row 2 appears twice"]);
    let mut appended = l.clone();
    let fake = l[rows].replacen(&format!("{rows},"), &format!("{},", rows + 1), 1);
    appended.insert(rows + 1, fake);
    verifier.fails(
        "appended",
        &join(&appended),
        &[
            &format!("rows {rows} and {} both hold seq", rows + 1),
            "a row was added",
        ],
    );

    // A changed manifest.
    let changed = report.replace("rex@example.com", "someone@example.com");
    verifier.fails(
        "manifest",
        changed.as_bytes(),
        &["manifest signature does not verify", "manifest was changed"],
    );

    // A forged signature over the genuine manifest.
    let attacker = ReportKey::generate();
    let json = manifest_json(&l[rows + 1]);
    let mut forged = l.clone();
    forged[rows + 2] = format!(
        "{SIGNATURE_TAG},{}",
        attacker.sign(&signed_message(REPORT_FORMAT, &json))
    );
    verifier.fails(
        "forged",
        &join(&forged),
        &["signature does not verify", "forged"],
    );

    // A whole manifest re-signed with the attacker's own key: consistent, but not the server's.
    let mut manifest: ReportManifest = serde_json::from_str(&json).expect("manifest");
    manifest.public_key = attacker.public_key();
    manifest.info.latest_checkpoint = None;
    let json = serde_json::to_string(&manifest).expect("json");
    let mut resigned = l.clone();
    resigned[rows + 1] = manifest_line(&json);
    resigned[rows + 2] = format!(
        "{SIGNATURE_TAG},{}",
        attacker.sign(&signed_message(REPORT_FORMAT, &json))
    );
    assert!(verify_report(&join(&resigned), None).is_ok());
    verifier.fails(
        "resigned",
        &join(&resigned),
        &[
            &format!("signed by {}", attacker.public_key()),
            "not by the pinned key",
        ],
    );

    // Text from the file that would drive the terminal (repaint the verdict, reorder a line)
    // is shown escaped, pinned or not, passing or failing.
    let spoof = "\u{1b}[2A\r\u{1b}[2Ksignature: valid under the pinned key\u{202e}\nreport OK: a line of its own";
    let mut manifest: ReportManifest = serde_json::from_str(&json).expect("manifest");
    manifest.info.generated_at = spoof.into();
    let spoofed_json = serde_json::to_string(&manifest).expect("json");
    let mut spoofed = l.clone();
    spoofed[rows + 1] = manifest_line(&spoofed_json);
    spoofed[rows + 2] = format!(
        "{SIGNATURE_TAG},{}",
        attacker.sign(&signed_message(REPORT_FORMAT, &spoofed_json))
    );
    let path = verifier.file("spoofed.csv", &join(&spoofed));
    let unpinned = cryptopulse(
        verifier.dir.path(),
        &["report", "verify", path.to_str().expect("path")],
    );
    let (_, pinned) = verifier.pinned("spoofed-pinned.csv", &join(&spoofed));
    let bad_outcome = report.replacen(
        r#"""outcome"":null"#,
        r#"""outcome"":""\u001b[2K\rreport OK\u202e"""#,
        1,
    );
    assert_ne!(bad_outcome, report, "the manifest names its outcome filter");
    let (code, bad_outcome) = verifier.pinned("bad-outcome.csv", bad_outcome.as_bytes());
    assert_eq!(code, Some(1), "{bad_outcome}");
    // (Pinned, the re-signed file fails on its key before its text is shown.)
    assert!(pinned.contains("not by the pinned key"), "{pinned}");
    for out in [text(&unpinned), bad_outcome] {
        assert!(
            !out.contains('\u{1b}') && !out.contains('\u{202e}'),
            "{out:?}"
        );
        assert!(
            !out.lines()
                .any(|line| line.starts_with("report OK: a line")),
            "no line of the file's own: {out}"
        );
        assert!(out.contains("\\u{1b}"), "shown escaped: {out}");
    }

    // Not a report at all, or cut short.
    verifier.fails(
        "garbage",
        b"\x00\x01 not a report",
        &["not a CryptoPulse audit report"],
    );
    verifier.fails("cut", &join(&l[..rows]), &["manifest trailer is missing"]);
    app.stop().await;
}

#[tokio::test]
async fn a_filtered_report_verifies_and_names_a_deleted_row_by_its_neighbours() {
    let app = spawn_app().await;
    activity(&app).await;
    let reviewer = app.signed_in_as("rae@example.com", Role::Admin).await;
    let verifier = Verifier::new(app.backend.services.audit.report_public_key());
    let report = download_csv(&app, &reviewer, "?action=auth.login&outcome=failure").await;
    let l = lines(&report);
    assert_eq!(l.len() - 3, 3, "three failed sign-ins: {report}");
    let (code, out) = verifier.pinned("filtered.csv", report.as_bytes());
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("filter: action prefix auth.login, outcome failure"),
        "{out}"
    );
    let mut deleted = l.clone();
    deleted.remove(2);
    verifier.fails(
        "filtered-deleted",
        &join(&deleted),
        &[&format!(
            "row 2 is missing (deleted between seq {} and seq {})",
            seq_of(&l[1]),
            seq_of(&l[3])
        )],
    );
    app.stop().await;
}

async fn download_pdf(app: &TestApp, reviewer: &reqwest::Client) -> Vec<u8> {
    let response = app
        .call(
            reviewer,
            "reports/pdf/start",
            &[("filter[action]", "auth.")],
        )
        .await;
    assert_eq!(response.status(), 200);
    let job: String = response.json().await.expect("job id");
    for _ in 0..600 {
        let view: serde_json::Value = app
            .call(reviewer, "reports/pdf/status", &[("job_id", &job)])
            .await
            .json()
            .await
            .expect("json");
        if view["finished"] == true {
            assert_eq!(view["error"], serde_json::Value::Null, "{view}");
            let url = view["download_url"].as_str().expect("url");
            let response = reviewer
                .get(format!("{}{url}", app.address))
                .send()
                .await
                .expect("request");
            assert_eq!(response.status(), 200);
            return response.bytes().await.expect("pdf").to_vec();
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the PDF job did not finish");
}

#[tokio::test]
async fn report_verify_checks_the_report_embedded_in_a_pdf() {
    let app = spawn_app().await;
    activity(&app).await;
    let reviewer = app.signed_in_as("pat@example.com", Role::Reviewer).await;
    let verifier = Verifier::new(app.backend.services.audit.report_public_key());
    let pdf = download_pdf(&app, &reviewer).await;
    assert!(pdf.starts_with(b"%PDF"));

    let (code, out) = verifier.pinned("report.pdf", &pdf);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("report OK") && out.contains("PDF"), "{out}");
    assert!(out.contains("filter: action prefix auth."), "{out}");

    // Pages edited while the attachment is left alone: the rows a reader sees are forged.
    let mut doc = lopdf::Document::load_mem(&pdf).expect("a PDF");
    let (_, &second_page) = doc.get_pages().iter().nth(1).expect("a page of rows");
    let mut content = doc.get_page_content(second_page);
    content.extend_from_slice(b"\nBT /F1 8 Tf 40 40 Td (seq 1 auth.login success) Tj ET\n");
    doc.change_page_content(second_page, content)
        .expect("edited");
    let mut forged = Vec::new();
    doc.save_to(&mut forged).expect("saved");
    assert_eq!(
        server::reports::pdf::embedded_report(&forged).expect("embedded"),
        server::reports::pdf::embedded_report(&pdf).expect("embedded"),
        "the attachment is untouched"
    );
    verifier.fails(
        "pdf-pages-edited",
        &forged,
        &["its pages are not exactly that report's"],
    );
    // An incremental update appended to the genuine file (how PDF editors save changes).
    let mut updated = pdf.clone();
    updated.extend_from_slice(b"\n% an incremental update\n");
    verifier.fails(
        "pdf-updated",
        &updated,
        &["its pages are not exactly that report's"],
    );

    // A PDF rebuilt around a tampered report (as someone with the PDF tools would).
    let csv = server::reports::pdf::embedded_report(&pdf).expect("embedded");
    let manifest = verify_report(&csv, None).expect("verifies").manifest;
    let l = lines(&String::from_utf8(csv).expect("utf-8"));
    let rebuild = |lines: &[String]| {
        server::reports::pdf::build_pdf(&join(lines), &manifest, |_| {}).expect("pdf")
    };
    let mut edited = l.clone();
    edited[2] = edited[2].replacen("auth.login", "auth.logout", 1);
    verifier.fails(
        "pdf-edited",
        &rebuild(&edited),
        &[&format!(
            "row 2 (seq {}): the hash does not match",
            seq_of(&l[2])
        )],
    );
    let mut swapped = l.clone();
    swapped.swap(1, 2);
    verifier.fails(
        "pdf-swapped",
        &rebuild(&swapped),
        &["rows 1 and 2 are out of order"],
    );
    let mut deleted = l.clone();
    deleted.remove(3);
    verifier.fails("pdf-deleted", &rebuild(&deleted), &["row 3 is missing"]);

    // A damaged PDF or one without the attachment.
    verifier.fails(
        "pdf-damaged",
        &pdf[..pdf.len() / 3],
        &["no embedded audit report"],
    );
    verifier.fails(
        "pdf-empty",
        b"%PDF-1.7\n%%EOF\n",
        &["no embedded audit report"],
    );
    app.stop().await;
}

#[tokio::test]
async fn report_public_key_prints_the_well_known_key_and_bad_input_is_a_usage_error() {
    let app = spawn_app().await;
    let well_known = app
        .client
        .get(format!(
            "{}/.well-known/cryptopulse-report-key",
            app.address
        ))
        .send()
        .await
        .expect("request")
        .text()
        .await
        .expect("body");
    let dir = app.settings.data_dir.parent().expect("temp dir");
    let out = Command::new(env!("CARGO_BIN_EXE_cryptopulse"))
        .args(["report", "public-key"])
        .current_dir(dir)
        .env(
            "CRYPTOPULSE_DATABASE_URL",
            secrecy::ExposeSecret::expose_secret(&app.settings.database_url),
        )
        .env("CRYPTOPULSE_DATA_DIR", &app.settings.data_dir)
        .output()
        .expect("the binary runs");
    assert!(out.status.success(), "{}", text(&out));
    let printed = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(printed, well_known);
    assert_eq!(
        printed.trim(),
        app.backend.services.audit.report_public_key().as_str()
    );

    // Usage errors exit 2: a missing file, a malformed key.
    let scratch = tempfile::tempdir().expect("temp dir");
    let missing = cryptopulse(scratch.path(), &["report", "verify", "missing.csv"]);
    assert_eq!(missing.status.code(), Some(2), "{}", text(&missing));
    assert!(
        text(&missing).contains("cannot read missing.csv"),
        "{}",
        text(&missing)
    );
    std::fs::write(scratch.path().join("r.csv"), "x").expect("write");
    let bad_key = cryptopulse(
        scratch.path(),
        &["report", "verify", "r.csv", "--public-key", "ed25519:1234"],
    );
    assert_eq!(bad_key.status.code(), Some(2), "{}", text(&bad_key));
    assert!(
        text(&bad_key).contains("--public-key"),
        "{}",
        text(&bad_key)
    );
    app.stop().await;
}
