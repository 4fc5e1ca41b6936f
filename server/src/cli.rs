//! Command-line interface of the server binary: serve, init, create-admin, set-role, audit verify,
//! report verify / public-key.

use std::io::{BufRead, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::{Parser, Subcommand};
use domain::account::{Email, Password, Role};
use domain::audit::report::VerifiedReport;
use domain::audit::{
    Actor, AuditFilter, BreakKind, ChainHead, ReportPublicKey, RequestMeta, verify_report,
    verify_report_from,
};
use domain::ports::SystemClock;

use crate::config::Settings;
use crate::startup::Backend;

#[derive(Debug, Parser)]
#[command(
    name = "cryptopulse",
    version,
    about = "CryptoPulse security & compliance console"
)]
pub struct Cli {
    /// Optional TOML settings file (environment variables override it).
    #[arg(long, global = true, env = "CRYPTOPULSE_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the web server (the default).
    Serve,
    /// Create the data directory and the local master key (mode 0600) if they are missing.
    Init,
    /// Create an admin account. The password is read from CRYPTOPULSE_ADMIN_PASSWORD or prompted for.
    CreateAdmin {
        #[arg(long)]
        email: String,
    },
    /// Change a user's role (recorded in the audit log as done by the CLI).
    SetRole {
        #[arg(long)]
        email: String,
        #[arg(long)]
        role: String,
    },
    /// Remove every security key, authenticator app and recovery code of a user who lost them
    /// all (check who is asking first). Recorded in the audit log as done by the CLI.
    ResetFactors {
        #[arg(long)]
        email: String,
    },
    /// Audit log commands.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Audit report commands: verify a downloaded report offline, print the report key.
    Report {
        #[command(subcommand)]
        command: ReportCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum ReportCommand {
    /// Verify a downloaded audit report (CSV, or PDF with the CSV embedded) offline — no
    /// settings or database needed. Exits 0 when it verifies under --public-key, 1 naming the
    /// row at fault if it does not verify, 3 when it is intact but --public-key was not given
    /// (the signer is then not checked).
    Verify {
        /// The report file.
        file: PathBuf,
        /// The server's report key (`ed25519:<hex>`, as served at
        /// /.well-known/cryptopulse-report-key or printed by `report public-key`). Without it
        /// the signature is only checked against the key the file itself names.
        #[arg(long, value_name = "KEY")]
        public_key: Option<String>,
    },
    /// Print the server's report public key (reads it from the database).
    PublicKey,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Verify the whole hash chain; exits 1 and names the first broken seq if it is broken.
    Verify {
        /// A head printed by an earlier run (`SEQ:HASH`); the chain must still contain it, which
        /// catches events cut from the end.
        #[arg(long, value_name = "SEQ:HASH")]
        expect_head: Option<String>,
    },
    /// After reviewing a chain the server refuses to extend (events past its head of record, or
    /// a record it did not sign, as `audit verify` reports): make the newest event, given as
    /// `SEQ:HASH`, the signed head of record. Audited.
    SignHead {
        #[arg(value_name = "SEQ:HASH")]
        head: String,
        /// What was reviewed and why the events are adopted (recorded in the audit event).
        #[arg(long)]
        reason: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Startup(#[from] crate::startup::StartupError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Account(#[from] domain::account::AccountError),
    #[error("{0}")]
    Store(#[from] domain::ports::StoreError),
}

pub const MASTER_KEY_FILE: &str = "master.key";

/// Creates `data_dir` and a fresh 256-bit master key (version 1) if absent, and checks the key
/// file: it must be private to its owner and hold well-formed `<version>:<hex>` lines.
pub fn ensure_master_key(data_dir: &Path) -> Result<PathBuf, CliError> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(data_dir)?;
    let path = data_dir.join(MASTER_KEY_FILE);
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
    {
        Ok(mut file) => {
            let key = domain::vault::DataKey::generate();
            let line = zeroize::Zeroizing::new(format!("1:{}\n", hex::encode(key.expose())));
            file.write_all(line.as_bytes())?;
            file.sync_all()?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e.into()),
    }
    // One place checks the file (private, well-formed): the KMS that will use it.
    crate::kms::FileKms::load(&path).map_err(|e| CliError::Usage(e.to_string()))?;
    Ok(path)
}

fn read_new_password() -> Result<Password, CliError> {
    let raw = match std::env::var("CRYPTOPULSE_ADMIN_PASSWORD") {
        Ok(value) => value,
        Err(_) if std::io::stdin().is_terminal() => {
            let first = rpassword::prompt_password("New admin password (12-128 characters): ")?;
            let second = rpassword::prompt_password("Repeat the password: ")?;
            if first != second {
                return Err(CliError::Usage("the passwords do not match".into()));
            }
            first
        }
        Err(_) => {
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line)?;
            line.trim_end_matches(['\r', '\n']).to_owned()
        }
    };
    Password::parse(raw).map_err(|e| CliError::Usage(e.to_string()))
}

fn cli_meta() -> RequestMeta {
    RequestMeta {
        ip: None,
        user_agent: Some("cryptopulse-cli".into()),
        request_id: Some(uuid::Uuid::new_v4().to_string()),
    }
}

pub async fn create_admin(settings: &Settings, email: &str) -> Result<(), CliError> {
    let email = Email::parse(email).map_err(|e| CliError::Usage(e.to_string()))?;
    let password = read_new_password()?;
    let backend = Backend::connect(settings, Arc::new(SystemClock)).await?;
    backend.sign_unsigned_head().await?;
    let user = backend
        .services
        .accounts
        .sign_up(
            email,
            password,
            Role::Admin,
            Actor::system("cli"),
            cli_meta(),
        )
        .await
        .map_err(|e| match e {
            domain::account::AccountError::EmailUnavailable => CliError::Usage(
                "an account with this email exists; use `set-role` to make it an admin".into(),
            ),
            other => other.into(),
        })?;
    println!("created admin {} ({})", user.email.as_str(), user.id);
    Ok(())
}

pub async fn set_role(settings: &Settings, email: &str, role: &str) -> Result<(), CliError> {
    let email = existing_email(email)?;
    let role = Role::parse(role).map_err(|e| CliError::Usage(e.to_string()))?;
    let backend = Backend::connect(settings, Arc::new(SystemClock)).await?;
    backend.sign_unsigned_head().await?;
    let user = backend
        .services
        .accounts
        .change_role_as_operator(&email, role, cli_meta())
        .await
        .map_err(|e| match e {
            domain::account::AccountError::NotFound => {
                CliError::Usage(format!("no account with email {}", email.as_str()))
            }
            other => other.into(),
        })?;
    println!("{} is now {}", user.email.as_str(), user.role);
    Ok(())
}

/// An existing account's address, as stored (older accounts may predate the ASCII rule).
fn existing_email(raw: &str) -> Result<Email, CliError> {
    Email::from_stored(raw)
        .ok_or_else(|| CliError::Usage(domain::account::ValidationError::Email.to_string()))
}

pub async fn reset_factors(settings: &Settings, email: &str) -> Result<(), CliError> {
    let email = existing_email(email)?;
    let backend = Backend::connect(settings, Arc::new(SystemClock)).await?;
    backend.sign_unsigned_head().await?;
    let user = backend
        .services
        .accounts
        .user_by_email(&email)
        .await?
        .ok_or_else(|| CliError::Usage(format!("no account with email {}", email.as_str())))?;
    // Sessions end before the factors go, so none opened with the lost key (maybe by a thief)
    // can add a "first" factor of its own in between, and again after, so none opened in
    // between keeps a step-up window.
    let end_sessions = || {
        backend.services.accounts.end_sessions_for_operator(
            user.id,
            Actor::system("cli"),
            "factor reset",
            cli_meta(),
        )
    };
    let (mut sessions, mut tokens) = end_sessions().await?;
    let (keys, totp) = backend
        .services
        .stepup
        .reset_factors(user.id, Actor::system("cli"), cli_meta())
        .await
        .map_err(|e| CliError::Usage(format!("could not reset factors: {e}")))?;
    let (more_sessions, more_tokens) = end_sessions().await?;
    (sessions, tokens) = (sessions + more_sessions, tokens + more_tokens);
    println!(
        "{}: removed {keys} security key(s){}, ended {sessions} session(s), revoked {tokens} agent token(s) and turned autonomous agent orders off; they can add a first factor within the step-up window after signing in again (if their password may be known to someone else, have them change it first)",
        email.as_str(),
        if totp {
            " and the authenticator app with its recovery codes"
        } else {
            ""
        }
    );
    Ok(())
}

/// Verifies the chain, printing progress to stderr. Returns whether the chain is intact.
pub async fn audit_verify(
    settings: &Settings,
    expect_head: Option<&str>,
    out: &mut impl Write,
) -> Result<bool, CliError> {
    let anchor = expect_head
        .map(|raw| {
            ChainHead::parse(raw).ok_or_else(|| {
                CliError::Usage("--expect-head takes SEQ:HASH as printed by `audit verify`".into())
            })
        })
        .transpose()?;
    let backend = Backend::connect(settings, Arc::new(SystemClock)).await?;
    let show_progress = std::io::stderr().is_terminal();
    let outcome = backend
        .services
        .audit
        .verify_as_operator(anchor, |checked| {
            if show_progress {
                eprint!("\rverified {checked} events…");
            } else if checked % 100_000 == 0 {
                eprintln!("verified {checked} events…");
            }
        })
        .await?;
    if show_progress {
        eprintln!();
    }
    match outcome {
        Ok(verified) => {
            writeln!(
                out,
                "audit chain intact: {} events, head seq {}, head hash {}",
                verified.checked,
                verified.head.seq,
                verified.head.hash.to_hex()
            )?;
            match &verified.checkpoint {
                Some(checkpoint) => writeln!(
                    out,
                    "checked against signed checkpoint seq {} ({}), signed at {} by {}",
                    checkpoint.seq,
                    printable(&checkpoint.hash),
                    printable(&checkpoint.signed_at),
                    checkpoint.public_key
                )?,
                None => writeln!(out, "no signed checkpoint yet to check against")?,
            }
            writeln!(
                out,
                "record this head to detect truncation later: --expect-head {}",
                verified.head
            )?;
            Ok(true)
        }
        Err(broken) => {
            writeln!(
                out,
                "audit chain BROKEN at seq {}: {} ({} events before it verified)",
                broken.error.seq, broken.error.kind, broken.checked
            )?;
            if let Some(checkpoint) = &broken.checkpoint {
                writeln!(
                    out,
                    // Found unverified, this row's text is anyone's: shown escaped.
                    "found by signed checkpoint seq {} ({}), signed at {}",
                    checkpoint.seq,
                    printable(&checkpoint.hash),
                    printable(&checkpoint.signed_at)
                )?;
            }
            match broken.error.kind {
                BreakKind::PastRecord => {
                    // Everything up to the record is as the server left it: what is past it
                    // can be reviewed and adopted.
                    let newest = backend.audit_log.head().await?;
                    writeln!(
                        out,
                        "the server records nothing until this is resolved. Newest event: \
                         {newest}. After reviewing the events from seq {}, `cryptopulse audit \
                         sign-head {newest} --reason \"...\"` adopts them as the head of record \
                         (audited); or restore a backup",
                        broken.error.seq
                    )?;
                }
                BreakKind::ForgedRecord
                | BreakKind::UnsignedRecord
                | BreakKind::ClearedRecord
                | BreakKind::StaleRecord => writeln!(
                    out,
                    "the server records nothing until this is resolved. Its head of record was \
                     changed outside the server, so the events since the latest checkpoint \
                     cannot be vouched for: restore a backup"
                )?,
                _ => {}
            }
            Ok(false)
        }
    }
}

/// `audit sign-head SEQ:HASH --reason TEXT`: after the operator reviewed events added past the
/// head of record, the newest event (which must be `SEQ:HASH`) becomes the signed head of
/// record. Only when the whole chain verifies but for those events (`PastRecord`).
pub async fn audit_sign_head(
    settings: &Settings,
    reviewed: &str,
    reason: &str,
    out: &mut impl Write,
) -> Result<(), CliError> {
    let reviewed = ChainHead::parse(reviewed).ok_or_else(|| {
        CliError::Usage("sign-head takes SEQ:HASH as printed by `audit verify`".into())
    })?;
    let reason = reason.trim();
    if reason.is_empty() || !domain::text::is_plain(reason) || reason.len() > 500 {
        return Err(CliError::Usage(
            "--reason: say in one line (up to 500 characters) what was reviewed and why the \
             events are adopted"
                .into(),
        ));
    }
    let backend = Backend::connect(settings, Arc::new(SystemClock)).await?;
    match backend
        .services
        .audit
        .verify_as_operator(None, |_| {})
        .await?
    {
        Err(broken) if broken.error.kind == BreakKind::PastRecord => {}
        Err(broken) => {
            return Err(CliError::Usage(format!(
                "refused: the chain is broken at seq {} ({}), not only by events past its head \
                 of record; adopting the newest event would seal that. Restore a backup",
                broken.error.seq, broken.error.kind
            )));
        }
        Ok(_) => {
            return Err(CliError::Usage(
                "the audit chain verifies: there is nothing to adopt".into(),
            ));
        }
    }
    backend
        .audit_chain
        .adopt_reviewed_head(reviewed, reason, backend.services.clock.now())
        .await
        .map_err(|e| match e {
            crate::storage::AdoptError::Store(e) => CliError::Store(e),
            other => CliError::Usage(other.to_string()),
        })?;
    writeln!(
        out,
        "head of record is now seq {} ({}), signed; recorded as audit.head_signed",
        reviewed.seq,
        reviewed.hash.to_hex()
    )?;
    Ok(())
}

/// Prints the server's report public key, `ed25519:<hex>`.
pub async fn report_public_key(settings: &Settings, out: &mut impl Write) -> Result<(), CliError> {
    let backend = Backend::connect(settings, Arc::new(SystemClock)).await?;
    writeln!(out, "{}", backend.services.audit.report_public_key())?;
    Ok(())
}

/// What `report verify` concluded about a readable file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportVerdict {
    /// Intact and signed by the pinned key.
    Verified,
    /// Intact and signed by the key the file names, which anyone can make: who produced it is
    /// unknown until the key is compared with the server's.
    SignerNotChecked,
    Failed,
}

/// Verifies a report file offline and prints a summary or the problem; an unreadable file or a
/// malformed `--public-key` is an error (exit 2).
pub fn report_verify(
    file: &Path,
    public_key: Option<&str>,
    out: &mut impl Write,
) -> Result<ReportVerdict, CliError> {
    let pinned = public_key
        .map(|raw| {
            ReportPublicKey::parse(raw).ok_or_else(|| {
                CliError::Usage(
                    "--public-key takes an Ed25519 key: ed25519:<64 hex digits> (or bare hex)"
                        .into(),
                )
            })
        })
        .transpose()?;
    let cannot_read =
        |e: std::io::Error| CliError::Usage(format!("cannot read {}: {e}", file.display()));
    let mut opened = std::fs::File::open(file).map_err(cannot_read)?;
    let mut magic = Vec::with_capacity(4);
    (&mut opened)
        .take(4)
        .read_to_end(&mut magic)
        .map_err(cannot_read)?;
    let is_pdf = magic == b"%PDF";
    // A CSV report is read as it is checked (memory does not grow with it); a PDF is read
    // whole to find the CSV report it carries.
    let verified: Result<VerifiedReport, String> = if is_pdf {
        let pdf = std::fs::read(file).map_err(cannot_read)?;
        report_in_pdf(&pdf).and_then(|csv| {
            let verified = verify_report(&csv, pinned.as_ref()).map_err(|p| p.to_string())?;
            pages_of(&csv, &verified, &pdf)?;
            Ok(verified)
        })
    } else {
        verify_report_from(opened, pinned.as_ref()).map_err(|p| p.to_string())
    };
    // What the file supplies (its manifest's text, a parser's message quoting it) is shown
    // through `printable`: on a terminal it could otherwise repaint or add to the verdict.
    match verified {
        Ok(verified) => {
            let kind = if is_pdf {
                "PDF: its embedded CSV report, and pages that are exactly that report's"
            } else {
                "CSV"
            };
            let file = printable(&file.display().to_string());
            if verified.pinned {
                writeln!(out, "report OK: {file} ({kind})")?;
            } else {
                // Anyone can sign a forged file with a key of their own, so this is not "OK".
                writeln!(
                    out,
                    "report intact, signer NOT checked: {file} ({kind}); pass the server's key \
                     as --public-key to check who signed it"
                )?;
            }
            write_report_summary(out, &verified)?;
            Ok(if verified.pinned {
                ReportVerdict::Verified
            } else {
                ReportVerdict::SignerNotChecked
            })
        }
        Err(problem) => {
            writeln!(
                out,
                "report verification FAILED: {}: {}",
                printable(&file.display().to_string()),
                printable(&problem)
            )?;
            Ok(ReportVerdict::Failed)
        }
    }
}

/// `text` with every control character (line ends included), every line or paragraph
/// separator and every bidirectional override shown as a `\u{..}` escape: nothing a file
/// supplies can move the cursor, start a line of its own or reorder one.
fn printable(text: &str) -> String {
    let mut shown = String::with_capacity(text.len());
    for c in text.chars() {
        if domain::text::hides_or_moves_text(c) {
            shown.push_str(&c.escape_unicode().to_string());
        } else {
            shown.push(c);
        }
    }
    shown
}

/// The pages a reader sees are checked as well as the report the PDF carries: the PDF must be
/// exactly what this server builds from that report, so printed rows cannot be edited, and
/// pages cannot be added by an incremental update, while the attachment still verifies.
fn pages_of(csv: &[u8], verified: &VerifiedReport, pdf: &[u8]) -> Result<(), String> {
    let rebuilt = crate::reports::pdf::build_pdf(csv, &verified.manifest, |_| {})
        .map_err(|e| format!("its pages could not be rebuilt from its embedded report: {e}"))?;
    if rebuilt == pdf {
        Ok(())
    } else {
        Err(
            "its embedded CSV report verifies, but its pages are not exactly that report's: \
             the PDF was edited or added to after it was made (or made by another version of \
             CryptoPulse). The embedded report is the record."
                .into(),
        )
    }
}

/// The CSV report a PDF carries as its `audit-report.csv` attachment.
fn report_in_pdf(pdf: &[u8]) -> Result<Vec<u8>, String> {
    crate::reports::pdf::embedded_report(pdf)
        .map_err(|e| format!("no embedded audit report could be read from the PDF: {e}"))
}

fn write_report_summary(out: &mut impl Write, verified: &VerifiedReport) -> std::io::Result<()> {
    let m = &verified.manifest;
    let info = &m.info;
    match (m.first_seq, m.last_seq) {
        (Some(first), Some(last)) => writeln!(
            out,
            "rows: {} (seq {first} to {last}), each row's hash recomputed, links and digest checked",
            verified.rows
        )?,
        _ => writeln!(out, "rows: 0")?,
    }
    writeln!(out, "filter: {}", printable(&describe_filter(&info.filter)))?;
    writeln!(
        out,
        "generated at {} by {} ({})",
        printable(&info.generated_at),
        printable(info.generated_by_email.as_deref().unwrap_or("(no email)")),
        printable(&info.generated_by)
    )?;
    writeln!(
        out,
        "chain head when generated: seq {} hash {}",
        info.chain_head.seq,
        info.chain_head.hash.to_hex()
    )?;
    writeln!(
        out,
        "signed by {} (fingerprint {})",
        m.public_key,
        m.public_key.fingerprint()
    )?;
    if verified.pinned {
        writeln!(out, "signature: valid under the pinned key")?;
    } else {
        writeln!(
            out,
            "signature: valid under the key in the file (not pinned) — compare it with the server's \
             /.well-known/cryptopulse-report-key, or pass --public-key"
        )?;
    }
    match &info.latest_checkpoint {
        Some(cp) => writeln!(
            out,
            "latest signed checkpoint: seq {} hash {} signed at {} (signature valid)",
            cp.seq,
            printable(&cp.hash.to_string()),
            printable(&cp.signed_at.to_string())
        )?,
        None => writeln!(out, "latest signed checkpoint: none when generated")?,
    }
    writeln!(out, "rows sha256: {}", printable(&m.rows_sha256))
}

fn describe_filter(filter: &AuditFilter) -> String {
    let time = |t: Option<time::OffsetDateTime>| t.map(domain::audit::canonical_time);
    let parts: Vec<String> = [
        ("from", time(filter.from)),
        ("to (exclusive)", time(filter.to)),
        ("actor", filter.actor_id().map(str::to_owned)),
        ("action prefix", filter.action_prefix().map(str::to_owned)),
        ("outcome", filter.outcome.map(|o| o.as_str().to_owned())),
        ("resource", filter.resource().map(str::to_owned)),
        ("request id", filter.request_id().map(str::to_owned)),
    ]
    .into_iter()
    .filter_map(|(name, value)| value.map(|v| format!("{name} {v}")))
    .collect();
    let mut text = if parts.is_empty() {
        "every event".to_owned()
    } else {
        parts.join(", ")
    };
    if let Some(up_to) = filter.up_to_seq {
        text.push_str(&format!(" (up to seq {up_to})"));
    }
    text
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn the_master_key_is_created_private_and_reused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().join("data");
        let path = ensure_master_key(&data).expect("created");
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let first = std::fs::read_to_string(&path).expect("read");
        assert!(
            first.starts_with("1:") && first.trim().len() == 2 + 64,
            "{first}"
        );
        ensure_master_key(&data).expect("reused");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), first);
    }

    #[test]
    fn a_readable_or_malformed_key_file_stops_startup() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = ensure_master_key(dir.path()).expect("created");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let err = ensure_master_key(dir.path())
            .expect_err("world-readable")
            .to_string();
        assert!(err.contains("readable by other users"), "{err}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        std::fs::write(&path, "not a key\n").expect("write");
        let err = ensure_master_key(dir.path())
            .expect_err("malformed")
            .to_string();
        assert!(err.contains("line 1"), "{err}");
    }
}
