//! The self-verifying CSV audit report (`docs/report-format.md` is the reader's description).
//!
//! A report is a header line, one line per event carrying every field its chain hash commits
//! to, and a two-line trailer: `#cryptopulse-manifest,"<json>"` and
//! `#cryptopulse-signature,<hex>`. The manifest holds the filter, who asked and when, the pinned
//! chain head, the latest signed checkpoint, the row count and seq range, and SHA-256 over the
//! exact header + row bytes; the server's Ed25519 report key signs the manifest JSON. So a
//! reader with only the file (and, ideally, the server's public key from elsewhere) can check
//! that nothing was edited, removed, added or reordered — and which row was.

use std::borrow::Cow;
use std::io::{Read, Seek, SeekFrom};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::filter::AuditFilter;
use super::signing::{ReportKey, ReportPublicKey, SignedCheckpoint};
use super::{
    Actor, ActorKind, AuditEvent, ChainHash, ChainHead, Outcome, RequestMeta, canonical_time,
    parse_canonical_time,
};

/// The format written: [`neutralise_cell`] escapes a formula at the start of a cell and after
/// every `;` and TAB in it.
pub const REPORT_FORMAT: &str = "cryptopulse-audit-report-v3";
/// The second format, still verified: a formula was escaped after a `;` but not after a TAB.
pub const REPORT_FORMAT_V2: &str = "cryptopulse-audit-report-v2";
/// The first format, still verified: a formula was escaped at the start of a cell only.
pub const REPORT_FORMAT_V1: &str = "cryptopulse-audit-report-v1";
/// Every format `verify_report` reads.
const FORMATS_READ: [&str; 3] = [REPORT_FORMAT, REPORT_FORMAT_V2, REPORT_FORMAT_V1];
/// First cell of the manifest line; the second is the manifest JSON.
pub const MANIFEST_TAG: &str = "#cryptopulse-manifest";
/// First cell of the signature line; the second is the Ed25519 signature in hex.
pub const SIGNATURE_TAG: &str = "#cryptopulse-signature";

/// The columns, in order. `row` is the 1-based data row number (not hashed by the chain, but
/// covered by `rows_sha256`), so a removed, added or reordered row can be named.
pub const COLUMNS: [&str; 14] = [
    "row",
    "seq",
    "occurred_at",
    "actor_kind",
    "actor_id",
    "action",
    "resource",
    "outcome",
    "ip",
    "user_agent",
    "request_id",
    "details",
    "prev_hash",
    "hash",
];

/// How an optional field that is present but empty (`Some("")`) is written; an empty cell is
/// `None`. A value that itself starts with `\` gets one more `\` in front, so no value can be
/// confused with this marker.
pub const EMPTY_MARKER: &str = "\\empty";

/// Who/what a report was made for; goes into the manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportInfo {
    pub filter: AuditFilter,
    /// `canonical_time` of the moment the report was started.
    pub generated_at: String,
    /// The requesting user's id.
    pub generated_by: String,
    pub generated_by_email: Option<String>,
    /// The chain head pinned when the report started: no row is newer.
    #[serde(with = "head_json")]
    pub chain_head: ChainHead,
    pub latest_checkpoint: Option<SignedCheckpoint>,
}

/// `ChainHead` as `{"seq": 12, "hash": "<hex>"}`.
mod head_json {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::{ChainHash, ChainHead};

    #[derive(Serialize, Deserialize)]
    struct HeadJson {
        seq: i64,
        hash: String,
    }

    pub fn serialize<S: Serializer>(head: &ChainHead, s: S) -> Result<S::Ok, S::Error> {
        HeadJson {
            seq: head.seq,
            hash: head.hash.to_hex(),
        }
        .serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<ChainHead, D::Error> {
        let raw = HeadJson::deserialize(d)?;
        let hash = ChainHash::from_hex(&raw.hash)
            .ok_or_else(|| serde::de::Error::custom("chain_head.hash is not 64 hex digits"))?;
        Ok(ChainHead { seq: raw.seq, hash })
    }
}

/// What the report's trailer vouches for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportManifest {
    pub format: String,
    #[serde(flatten)]
    pub info: ReportInfo,
    pub row_count: u64,
    pub first_seq: Option<i64>,
    pub last_seq: Option<i64>,
    /// SHA-256 (hex) over the exact bytes of the header line and every data line.
    pub rows_sha256: String,
    pub public_key: ReportPublicKey,
    /// Ed25519 over [`signed_message`] of the manifest JSON, hex. Written on its own trailer
    /// line, never inside the JSON it signs.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub signature: String,
}

/// The bytes the report signature covers: the report's format (`cryptopulse-audit-report-v2`)
/// and `\n`, followed by the manifest JSON exactly as it stands in the file (the unquoted second
/// cell of the manifest line). The prefix keeps report and checkpoint signatures (same key)
/// apart.
pub fn signed_message(format: &str, manifest_json: &str) -> Vec<u8> {
    let mut message = Vec::with_capacity(format.len() + 1 + manifest_json.len());
    message.extend_from_slice(format.as_bytes());
    message.push(b'\n');
    message.extend_from_slice(manifest_json.as_bytes());
    message
}

/// What a spreadsheet may read as the start of a formula, and `'`, the escape itself.
const FORMULA_START: [char; 7] = ['=', '+', '-', '@', '\t', '\r', '\''];

/// Characters a spreadsheet may split a line at besides the comma: `;` is the list separator
/// in most of continental Europe, and TAB is one an import dialog offers. Text after one
/// starts a cell of its own there, whatever CSV quoting says, since a quote only counts at the
/// start of a cell.
const INNER_SEPARATORS: [char; 2] = [';', '\t'];

/// Whether a separator followed by `next` is escaped: a `"` there would start a quoted cell.
fn escaped_after_separator(next: char) -> bool {
    FORMULA_START.contains(&next) || next == '"'
}

/// Spreadsheet formula injection: a cell starting with `=`, `+`, `-`, `@`, TAB or CR is
/// written with a leading `'` (which spreadsheets show as text), and so is what follows a `;`
/// or TAB inside a cell when it starts like that (or with `"`). A `'` in either place gets one
/// too, so [`restore_cell`] can always strip exactly one.
pub fn neutralise_cell(raw: &str) -> Cow<'_, str> {
    let leading = raw.starts_with(FORMULA_START);
    let inner = raw
        .match_indices(INNER_SEPARATORS)
        .any(|(at, _)| raw[at + 1..].starts_with(escaped_after_separator));
    if !leading && !inner {
        return Cow::Borrowed(raw);
    }
    let mut cell = String::with_capacity(raw.len() + 4);
    if leading {
        cell.push('\'');
    }
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        cell.push(c);
        if INNER_SEPARATORS.contains(&c)
            && chars.peek().copied().is_some_and(escaped_after_separator)
        {
            cell.push('\'');
        }
    }
    Cow::Owned(cell)
}

/// The inverse of [`neutralise_cell`] for a report of `format` ([`REPORT_FORMAT_V1`] escaped
/// the start of a cell only, [`REPORT_FORMAT_V2`] after a `;` but not a TAB).
pub fn restore_cell<'a>(raw: &'a str, format: &str) -> Cow<'a, str> {
    let cell = raw.strip_prefix('\'').unwrap_or(raw);
    let separators: &[char] = match format {
        REPORT_FORMAT_V1 => &[],
        REPORT_FORMAT_V2 => &[';'],
        _ => &INNER_SEPARATORS,
    };
    let escaped = |(at, _): (usize, &str)| cell[at + 1..].starts_with('\'');
    if separators.is_empty() || !cell.match_indices(separators).any(escaped) {
        return Cow::Borrowed(cell);
    }
    let mut restored = String::with_capacity(cell.len());
    let mut chars = cell.chars().peekable();
    while let Some(c) = chars.next() {
        restored.push(c);
        if separators.contains(&c) && chars.peek() == Some(&'\'') {
            chars.next();
        }
    }
    Cow::Owned(restored)
}

/// `None` → empty cell; `Some("")` → [`EMPTY_MARKER`]; a value starting with `\` → one more `\`.
fn encode_optional(value: Option<&str>) -> Cow<'_, str> {
    match value {
        None => Cow::Borrowed(""),
        Some("") => Cow::Borrowed(EMPTY_MARKER),
        Some(v) if v.starts_with('\\') => Cow::Owned(format!("\\{v}")),
        Some(v) => Cow::Borrowed(v),
    }
}

fn decode_optional(cell: &str) -> Option<String> {
    match cell {
        "" => None,
        EMPTY_MARKER => Some(String::new()),
        v => Some(v.strip_prefix('\\').unwrap_or(v).to_owned()),
    }
}

/// RFC 4180 quoting when needed (a comma, quote, CR or LF inside).
fn push_csv_cell(line: &mut String, cell: &str) {
    if cell.contains([',', '"', '\n', '\r']) {
        line.push('"');
        line.push_str(&cell.replace('"', "\"\""));
        line.push('"');
    } else {
        line.push_str(cell);
    }
}

fn csv_line<'a>(cells: impl IntoIterator<Item = Cow<'a, str>>) -> String {
    let mut line = String::with_capacity(512);
    for (i, cell) in cells.into_iter().enumerate() {
        if i > 0 {
            line.push(',');
        }
        push_csv_cell(&mut line, &neutralise_cell(&cell));
    }
    line.push('\n');
    line
}

fn header_line() -> String {
    csv_line(COLUMNS.iter().map(|c| Cow::Borrowed(*c)))
}

/// Streams a report: header, rows, then the signed manifest trailer. Memory is O(1) in rows.
pub struct ReportWriter {
    digest: Sha256,
    rows: u64,
    first_seq: Option<i64>,
    last_seq: Option<i64>,
}

impl std::fmt::Debug for ReportWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReportWriter")
            .field("rows", &self.rows)
            .field("first_seq", &self.first_seq)
            .field("last_seq", &self.last_seq)
            .finish_non_exhaustive()
    }
}

impl Default for ReportWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl ReportWriter {
    pub fn new() -> Self {
        Self {
            digest: Sha256::new(),
            rows: 0,
            first_seq: None,
            last_seq: None,
        }
    }

    /// The CSV header line (part of the digest). Call once, before any row.
    pub fn header(&mut self) -> Vec<u8> {
        let line = header_line().into_bytes();
        self.digest.update(&line);
        line
    }

    /// One CSV line for `event` (formula-neutralised cells), numbered after the previous one.
    pub fn row(&mut self, event: &AuditEvent) -> Vec<u8> {
        self.rows += 1;
        self.first_seq.get_or_insert(event.seq);
        self.last_seq = Some(event.seq);
        let line = csv_line([
            Cow::Owned(self.rows.to_string()),
            Cow::Owned(event.seq.to_string()),
            Cow::Owned(canonical_time(event.occurred_at)),
            Cow::Borrowed(event.actor.kind.as_str()),
            encode_optional(event.actor.id.as_deref()),
            Cow::Borrowed(event.action.as_str()),
            encode_optional(event.resource.as_deref()),
            Cow::Borrowed(event.outcome.as_str()),
            encode_optional(event.meta.ip.as_deref()),
            encode_optional(event.meta.user_agent.as_deref()),
            encode_optional(event.meta.request_id.as_deref()),
            // The JSON text exactly as the chain hashes it.
            Cow::Owned(event.details.to_string()),
            Cow::Owned(event.prev_hash.to_hex()),
            Cow::Owned(event.hash.to_hex()),
        ])
        .into_bytes();
        self.digest.update(&line);
        line
    }

    pub fn rows_written(&self) -> u64 {
        self.rows
    }

    /// Seals the report: the manifest (with its signature) and the trailer bytes to append.
    pub fn finish(self, info: ReportInfo, key: &ReportKey) -> (ReportManifest, Vec<u8>) {
        let mut manifest = ReportManifest {
            format: REPORT_FORMAT.to_owned(),
            info,
            row_count: self.rows,
            first_seq: self.first_seq,
            last_seq: self.last_seq,
            rows_sha256: hex::encode(self.digest.finalize()),
            public_key: key.public_key(),
            signature: String::new(),
        };
        // Serialising plain structs with string keys cannot fail; were it ever to, the empty
        // manifest would fail verification rather than pass it.
        // `;` only occurs inside JSON strings, where `\u003b` reads back the same: where `;`
        // separates cells, filter text or an email in the manifest cannot start a formula.
        let json = serde_json::to_string(&manifest)
            .unwrap_or_default()
            .replace(';', "\\u003b");
        manifest.signature = key.sign(&signed_message(REPORT_FORMAT, &json));
        let mut trailer = String::with_capacity(json.len() + 256);
        trailer.push_str(MANIFEST_TAG);
        trailer.push(',');
        push_csv_cell(&mut trailer, &json);
        trailer.push('\n');
        trailer.push_str(SIGNATURE_TAG);
        trailer.push(',');
        trailer.push_str(&manifest.signature);
        trailer.push('\n');
        (manifest, trailer.into_bytes())
    }
}

/// A report that passed every check.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedReport {
    pub manifest: ReportManifest,
    pub rows: u64,
    /// Whether the signature was checked against a key the caller supplied (rather than only
    /// the key the file names).
    pub pinned: bool,
}

/// Why a report does not verify. Display names the exact row (its 1-based row number and seq)
/// where it can.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReportProblem {
    #[error("not a CryptoPulse audit report: {0}")]
    Unreadable(String),
    #[error("the manifest trailer is missing: the report was cut short or its last lines removed")]
    NoManifest,
    #[error("the manifest trailer is malformed: {0}")]
    BadTrailer(String),
    #[error(
        "unsupported report format {0:?} (this verifier reads {REPORT_FORMAT}, {REPORT_FORMAT_V2} and {REPORT_FORMAT_V1})"
    )]
    UnsupportedFormat(String),
    #[error(
        "the manifest signature does not verify under {key}: the manifest was changed or the signature forged"
    )]
    BadSignature { key: ReportPublicKey },
    #[error(
        "the report is signed by {found}, not by the pinned key {pinned}: it was not made by that server (forged or foreign)"
    )]
    KeyMismatch {
        pinned: ReportPublicKey,
        found: ReportPublicKey,
    },
    #[error("the checkpoint in the manifest (seq {seq}) is not validly signed by the report key")]
    BadCheckpoint { seq: i64 },
    #[error("line {line}{}: {reason}", row_label(*row, None))]
    BadRow {
        line: u64,
        row: Option<u64>,
        reason: String,
    },
    #[error("row {row} (seq {seq}): the hash does not match its fields: the row was edited")]
    EditedRow { row: u64, seq: i64 },
    #[error(
        "row {row} (seq {seq}) was changed and its hash recomputed: row {next_row} (seq {next_seq}) links to a different hash"
    )]
    BrokenLink {
        row: u64,
        seq: i64,
        next_row: u64,
        next_seq: i64,
    },
    #[error(
        "row {row} (seq 1): prev_hash is not the genesis hash: the row was changed and its hash recomputed"
    )]
    BadGenesis { row: u64 },
    #[error("{}", missing_rows_text(*first, *last, *after_seq, *before_seq, *removed_seqs))]
    MissingRows {
        first: u64,
        last: u64,
        after_seq: Option<i64>,
        before_seq: i64,
        /// The seqs that were removed, when the report selects every event (so they are known).
        removed_seqs: Option<(i64, i64)>,
    },
    #[error(
        "rows {row} and {next} are out of order (swapped): seq {seq_found} stands where row {row} (seq {seq_expected}) belongs"
    )]
    SwappedRows {
        row: u64,
        next: u64,
        seq_found: i64,
        seq_expected: i64,
    },
    #[error("row {row} appears twice (seq {seq}): a row was added")]
    DuplicateRow { row: u64, seq: i64 },
    #[error("row {row} (seq {seq}) is out of place: found where row {position} belongs")]
    OutOfPlace { row: u64, position: u64, seq: i64 },
    #[error(
        "the row number of data line {position} was edited to {found}: the events around it are intact (seq {seq})"
    )]
    RowNumberEdited { position: u64, found: u64, seq: i64 },
    #[error("rows {prev_row} and {row} both hold seq {seq}: a row was added")]
    DuplicateSeq { prev_row: u64, row: u64, seq: i64 },
    #[error("rows {prev_row} and {row} are out of order: seq {seq} comes after seq {prev_seq}")]
    SeqOrder {
        prev_row: u64,
        prev_seq: i64,
        row: u64,
        seq: i64,
    },
    #[error(
        "{} removed before row {row} (seq {seq}): the report selects every event, so none may be missing",
        seq_range_text(*first_missing, *last_missing)
    )]
    MissingSeqs {
        row: u64,
        seq: i64,
        first_missing: i64,
        last_missing: i64,
    },
    #[error(
        "{} removed from the end: the report ends at seq {last_seq} but the pinned chain head is seq {head_seq}",
        seq_range_text(last_seq + 1, *head_seq)
    )]
    MissingTail { last_seq: i64, head_seq: i64 },
    #[error(
        "row {row} (seq {seq}) is not in the manifest, which lists {manifest_rows} rows: a row was added"
    )]
    ExtraRow {
        row: u64,
        seq: i64,
        manifest_rows: u64,
    },
    #[error(
        "row {} onwards is missing: the report has {rows} rows but the manifest lists {manifest_rows}{}",
        rows + 1,
        last_seq.map(|s| format!(" ending at seq {s}")).unwrap_or_default()
    )]
    MissingEnd {
        rows: u64,
        manifest_rows: u64,
        last_seq: Option<i64>,
    },
    #[error(
        "the rows run from seq {} to seq {}, but the manifest says {} to {}",
        opt(found.0), opt(found.1), opt(manifest.0), opt(manifest.1)
    )]
    SeqRange {
        found: (Option<i64>, Option<i64>),
        manifest: (Option<i64>, Option<i64>),
    },
    #[error("row {row} (seq {seq}) does not match the report's filter: a row was added")]
    OutsideFilter { row: u64, seq: i64 },
    #[error(
        "row {row} (seq {seq}) is newer than the pinned chain head (seq {head_seq}): a row was added"
    )]
    AfterHead { row: u64, seq: i64, head_seq: i64 },
    #[error(
        "row {row} (seq {seq}): its hash differs from the {what} signed for that seq: the row was changed"
    )]
    SignedHeadMismatch {
        row: u64,
        seq: i64,
        what: &'static str,
    },
    #[error(
        "the SHA-256 of the rows does not match the manifest: rows were changed and their hashes recomputed (or cells re-encoded)"
    )]
    DigestMismatch,
}

fn opt(seq: Option<i64>) -> String {
    seq.map_or_else(|| "(none)".to_owned(), |s| s.to_string())
}

fn row_label(row: Option<u64>, seq: Option<i64>) -> String {
    match (row, seq) {
        (Some(r), Some(s)) => format!(" (row {r}, seq {s})"),
        (Some(r), None) => format!(" (row {r})"),
        _ => String::new(),
    }
}

fn seq_range_text(first: i64, last: i64) -> String {
    if first == last {
        format!("seq {first}")
    } else {
        format!("seqs {first}..={last}")
    }
}

fn missing_rows_text(
    first: u64,
    last: u64,
    after_seq: Option<i64>,
    before_seq: i64,
    removed: Option<(i64, i64)>,
) -> String {
    let rows = if first == last {
        format!("row {first} is missing")
    } else {
        format!("rows {first}..={last} are missing")
    };
    let between = match after_seq {
        Some(a) => format!("between seq {a} and seq {before_seq}"),
        None => format!("before seq {before_seq}"),
    };
    let removed = removed
        .map(|(a, b)| format!("; {} removed", seq_range_text(a, b)))
        .unwrap_or_default();
    format!("{rows} (deleted {between}){removed}")
}

/// One parsed data line.
struct Row {
    number: u64,
    event: AuditEvent,
}

fn parse_row(record: &csv::StringRecord, line: u64, format: &str) -> Result<Row, ReportProblem> {
    let bad = |row: Option<u64>, reason: String| ReportProblem::BadRow { line, row, reason };
    if record.len() != COLUMNS.len() {
        return Err(bad(
            None,
            format!(
                "expected {} cells, found {} (a row was damaged or added by hand)",
                COLUMNS.len(),
                record.len()
            ),
        ));
    }
    let cells: Vec<Cow<'_, str>> = record.iter().map(|c| restore_cell(c, format)).collect();
    let cell = |i: usize| cells.get(i).map(|c| c.as_ref()).unwrap_or_default();
    let number: u64 = cell(0).parse().ok().filter(|n| *n > 0).ok_or_else(|| {
        bad(
            None,
            format!("row number {:?} is not a positive integer", cell(0)),
        )
    })?;
    let row = Some(number);
    let unreadable = |column: &str| bad(row, format!("cell `{column}` is not readable"));
    let seq: i64 = cell(1)
        .parse()
        .ok()
        .filter(|s| *s > 0)
        .ok_or_else(|| unreadable("seq"))?;
    let occurred_at = parse_canonical_time(cell(2)).ok_or_else(|| unreadable("occurred_at"))?;
    let kind = ActorKind::parse(cell(3)).ok_or_else(|| unreadable("actor_kind"))?;
    let outcome = Outcome::parse(cell(7)).ok_or_else(|| unreadable("outcome"))?;
    let details: Value = serde_json::from_str(cell(11)).map_err(|_| unreadable("details"))?;
    let prev_hash = ChainHash::from_hex(cell(12)).ok_or_else(|| unreadable("prev_hash"))?;
    let hash = ChainHash::from_hex(cell(13)).ok_or_else(|| unreadable("hash"))?;
    Ok(Row {
        number,
        event: AuditEvent {
            seq,
            occurred_at,
            actor: Actor {
                kind,
                id: decode_optional(cell(4)),
            },
            action: cell(5).to_owned(),
            resource: decode_optional(cell(6)),
            outcome,
            meta: RequestMeta {
                ip: decode_optional(cell(8)),
                user_agent: decode_optional(cell(9)),
                request_id: decode_optional(cell(10)),
            },
            details,
            prev_hash,
            hash,
        },
    })
}

fn csv_reader<R: Read>(source: R) -> csv::Reader<R> {
    csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(source)
}

/// How far from the end of a report its trailer may start. A real trailer (the manifest JSON
/// and the signature) is a few kilobytes; the limit keeps a file without one from being read
/// whole just to say so.
const TRAILER_SEARCH: u64 = 1024 * 1024;

/// Finds the trailer: where its first line starts, and its text. Reads only the end of the
/// report, growing the window from a few kilobytes up to [`TRAILER_SEARCH`].
fn find_trailer<R: Read + Seek>(source: &mut R) -> Result<(u64, String), ReportProblem> {
    // The last manifest line: an earlier look-alike could only sit inside a quoted cell, and
    // then it would not be the line the file ends with.
    let needle = format!("\n{MANIFEST_TAG},");
    let len = source.seek(SeekFrom::End(0)).map_err(unreadable)?;
    let mut window = len.min(16 * 1024);
    loop {
        let start = len - window;
        source.seek(SeekFrom::Start(start)).map_err(unreadable)?;
        let mut tail = Vec::new();
        source
            .by_ref()
            .take(window)
            .read_to_end(&mut tail)
            .map_err(unreadable)?;
        if let Some(at) = tail
            .windows(needle.len())
            .rposition(|w| w == needle.as_bytes())
        {
            let text = String::from_utf8(tail.split_off(at + 1)).map_err(|_| {
                ReportProblem::Unreadable("the manifest trailer is not UTF-8 text".into())
            })?;
            return Ok((start + at as u64 + 1, text));
        }
        if start == 0 || window >= TRAILER_SEARCH {
            return Err(ReportProblem::NoManifest);
        }
        window = (window * 8).min(TRAILER_SEARCH).min(len);
    }
}

fn unreadable(e: std::io::Error) -> ReportProblem {
    ReportProblem::Unreadable(format!("the file could not be read: {e}"))
}

/// A reader that hashes every byte read through it: the report's digest is taken in the same
/// pass that checks its rows.
struct Digesting<R> {
    inner: R,
    sha256: Sha256,
}

impl<R: Read> Read for Digesting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.sha256.update(&buf[..n]);
        Ok(n)
    }
}

/// Reads the two trailer lines: the manifest JSON (as written) and the signature.
fn read_trailer(trailer: &str) -> Result<(String, String), ReportProblem> {
    let mut records = csv_reader(trailer.as_bytes()).into_records();
    let mut next = |tag: &str| -> Result<String, ReportProblem> {
        let record = records
            .next()
            .ok_or(ReportProblem::NoManifest)?
            .map_err(|e| ReportProblem::BadTrailer(e.to_string()))?;
        match (record.get(0), record.get(1), record.len()) {
            (Some(t), Some(value), 2) if t == tag => Ok(value.to_owned()),
            _ => Err(ReportProblem::BadTrailer(format!(
                "expected a `{tag},…` line of two cells"
            ))),
        }
    };
    let json = next(MANIFEST_TAG)?;
    let signature = next(SIGNATURE_TAG)?;
    // Exactly the lowercase hex the writer wrote: padding or upper case would still verify
    // (the key trims and decodes either case) and come back in the verified manifest as a
    // signature that was never signed for.
    if !signature
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(ReportProblem::BadTrailer(
            "the signature is not plain lowercase hex".into(),
        ));
    }
    if records.next().is_some() {
        return Err(ReportProblem::BadTrailer(
            "there are lines after the signature".into(),
        ));
    }
    Ok((json, signature))
}

/// Verifies a CSV report held in memory (a PDF's attachment, a download); see
/// [`verify_report_from`].
pub fn verify_report(
    bytes: &[u8],
    pinned: Option<&ReportPublicKey>,
) -> Result<VerifiedReport, ReportProblem> {
    verify_report_from(std::io::Cursor::new(bytes), pinned)
}

/// Verifies a CSV report offline: trailer, signature (and the pinned key), every row's hash,
/// the row numbering and chain links, the manifest's counts and seq range, and the digest.
/// The first problem found is returned; row problems come before the digest so the exact row
/// is named.
///
/// Memory does not grow with the report: the trailer is read from the end of `source`, then
/// the rows are checked and hashed in one pass from its start (wherever `source` stood).
pub fn verify_report_from<R: Read + Seek>(
    mut source: R,
    pinned: Option<&ReportPublicKey>,
) -> Result<VerifiedReport, ReportProblem> {
    let header = header_line();
    let mut first_line = Vec::with_capacity(header.len());
    source.seek(SeekFrom::Start(0)).map_err(unreadable)?;
    (&mut source)
        .take(header.len() as u64)
        .read_to_end(&mut first_line)
        .map_err(unreadable)?;
    if first_line != header.as_bytes() {
        return Err(ReportProblem::Unreadable(
            "the first line is not the report header".into(),
        ));
    }
    let (trailer_at, trailer) = find_trailer(&mut source)?;
    let (json, signature) = read_trailer(&trailer)?;
    let mut manifest: ReportManifest = serde_json::from_str(&json)
        .map_err(|e| ReportProblem::BadTrailer(format!("the manifest JSON: {e}")))?;
    if !FORMATS_READ.contains(&manifest.format.as_str()) {
        return Err(ReportProblem::UnsupportedFormat(manifest.format));
    }
    if !manifest
        .public_key
        .verify(&signed_message(&manifest.format, &json), &signature)
    {
        return Err(ReportProblem::BadSignature {
            key: manifest.public_key,
        });
    }
    manifest.signature = signature;
    if let Some(pinned) = pinned
        && *pinned != manifest.public_key
    {
        return Err(ReportProblem::KeyMismatch {
            pinned: pinned.clone(),
            found: manifest.public_key,
        });
    }
    if let Some(cp) = &manifest.info.latest_checkpoint
        && !cp.verify(Some(&manifest.public_key))
    {
        return Err(ReportProblem::BadCheckpoint { seq: cp.seq });
    }

    source.seek(SeekFrom::Start(0)).map_err(unreadable)?;
    let mut body = csv_reader(Digesting {
        inner: source.take(trailer_at),
        sha256: Sha256::new(),
    });
    let rows = check_rows(&mut body, &manifest)?;
    let digest = hex::encode(body.into_inner().sha256.finalize());
    if digest != manifest.rows_sha256 {
        return Err(ReportProblem::DigestMismatch);
    }
    Ok(VerifiedReport {
        manifest,
        rows,
        pinned: pinned.is_some(),
    })
}

/// Every row-level check, reading `body` (header first) to its end; returns the number of data
/// rows.
fn check_rows<R: Read>(
    body: &mut csv::Reader<R>,
    manifest: &ReportManifest,
) -> Result<u64, ReportProblem> {
    let info = &manifest.info;
    // With no condition but the pinned head, the report holds the whole chain up to that head,
    // so seqs must run 1, 2, 3 … without gaps.
    let complete = info.filter.is_everything();
    let head = info.chain_head;
    let checkpoint = info.latest_checkpoint.as_ref().and_then(|cp| cp.head());

    let mut records = body.byte_records().map(|record| {
        let record = record.map_err(|e| match e.kind() {
            csv::ErrorKind::Io(io) => {
                ReportProblem::Unreadable(format!("the file could not be read: {io}"))
            }
            _ => ReportProblem::BadRow {
                line: e.position().map_or(0, |p| p.line()),
                row: None,
                reason: format!("not valid CSV: {e}"),
            },
        })?;
        let line = record.position().map_or(0, |p| p.line());
        csv::StringRecord::from_byte_record(record)
            .map(|record| (record, line))
            .map_err(|_| ReportProblem::Unreadable(format!("line {line} is not UTF-8 text")))
    });
    // The header, whose bytes were checked first.
    records.next().transpose()?;
    let mut records = records.map(|record| {
        let (record, line) = record?;
        parse_row(&record, line, &manifest.format)
    });
    let mut lookahead = records.next().transpose()?;
    let mut prev: Option<Row> = None;
    let mut position = 0u64;
    let mut first_seq = None;
    while let Some(row) = lookahead.take() {
        position += 1;
        lookahead = records.next().transpose()?;
        let seq = row.event.seq;
        first_seq.get_or_insert(seq);

        if row.event.compute_hash() != row.event.hash {
            return Err(ReportProblem::EditedRow {
                row: row.number,
                seq,
            });
        }
        if row.number != position {
            return Err(misnumbered(
                &row,
                position,
                prev.as_ref(),
                lookahead.as_ref(),
                complete,
            ));
        }
        // Look one row ahead first, so that two intact rows swapped (and renumbered) read as
        // a swap rather than as a gap.
        if let Some(next) = &lookahead
            && next.event.seq < seq
            && next.event.compute_hash() == next.event.hash
        {
            return Err(ReportProblem::SeqOrder {
                prev_row: row.number,
                prev_seq: seq,
                row: next.number,
                seq: next.event.seq,
            });
        }
        match &prev {
            Some(p) if seq == p.event.seq => {
                return Err(ReportProblem::DuplicateSeq {
                    prev_row: p.number,
                    row: row.number,
                    seq,
                });
            }
            Some(p) if seq < p.event.seq => {
                return Err(ReportProblem::SeqOrder {
                    prev_row: p.number,
                    prev_seq: p.event.seq,
                    row: row.number,
                    seq,
                });
            }
            Some(p) if seq == p.event.seq + 1 && row.event.prev_hash != p.event.hash => {
                return Err(ReportProblem::BrokenLink {
                    row: p.number,
                    seq: p.event.seq,
                    next_row: row.number,
                    next_seq: seq,
                });
            }
            Some(p) if complete && seq > p.event.seq + 1 => {
                return Err(ReportProblem::MissingSeqs {
                    row: row.number,
                    seq,
                    first_missing: p.event.seq + 1,
                    last_missing: seq - 1,
                });
            }
            None if complete && seq > 1 => {
                return Err(ReportProblem::MissingSeqs {
                    row: row.number,
                    seq,
                    first_missing: 1,
                    last_missing: seq - 1,
                });
            }
            _ => {}
        }
        if seq == 1 && row.event.prev_hash != ChainHash::GENESIS {
            return Err(ReportProblem::BadGenesis { row: row.number });
        }
        if seq > head.seq {
            return Err(ReportProblem::AfterHead {
                row: row.number,
                seq,
                head_seq: head.seq,
            });
        }
        if !info.filter.matches(&row.event) {
            return Err(ReportProblem::OutsideFilter {
                row: row.number,
                seq,
            });
        }
        for (what, signed) in [
            ("pinned chain head", Some(head)),
            ("checkpoint", checkpoint),
        ] {
            if let Some(signed) = signed
                && signed.seq == seq
                && signed.hash != row.event.hash
            {
                return Err(ReportProblem::SignedHeadMismatch {
                    row: row.number,
                    seq,
                    what,
                });
            }
        }
        if position > manifest.row_count {
            return Err(ReportProblem::ExtraRow {
                row: row.number,
                seq,
                manifest_rows: manifest.row_count,
            });
        }
        prev = Some(row);
    }

    let rows = position;
    if rows < manifest.row_count {
        return Err(ReportProblem::MissingEnd {
            rows,
            manifest_rows: manifest.row_count,
            last_seq: manifest.last_seq,
        });
    }
    let last_seq = prev.as_ref().map(|p| p.event.seq);
    if complete
        && let Some(last) = last_seq
        && last < head.seq
    {
        return Err(ReportProblem::MissingTail {
            last_seq: last,
            head_seq: head.seq,
        });
    }
    let found = (first_seq, last_seq);
    let listed = (manifest.first_seq, manifest.last_seq);
    if found != listed {
        return Err(ReportProblem::SeqRange {
            found,
            manifest: listed,
        });
    }
    Ok(rows)
}

/// Names what happened when a row's number is not its position.
fn misnumbered(
    row: &Row,
    position: u64,
    prev: Option<&Row>,
    next: Option<&Row>,
    complete: bool,
) -> ReportProblem {
    let seq = row.event.seq;
    if let Some(p) = prev
        && p.number == row.number
    {
        return ReportProblem::DuplicateRow {
            row: row.number,
            seq,
        };
    }
    if row.number == position + 1
        && let Some(n) = next
        && n.number == position
    {
        return ReportProblem::SwappedRows {
            row: position,
            next: position + 1,
            seq_found: seq,
            seq_expected: n.event.seq,
        };
    }
    // Only the number cell changed when the chain still links straight through.
    let linked = match prev {
        Some(p) => seq == p.event.seq + 1 && row.event.prev_hash == p.event.hash,
        None => seq == 1 && row.event.prev_hash == ChainHash::GENESIS,
    };
    // …or when the rows after it carry on numbered as if it still held its own number.
    if linked || next.is_some_and(|n| n.number == position + 1) {
        return ReportProblem::RowNumberEdited {
            position,
            found: row.number,
            seq,
        };
    }
    if row.number > position {
        let after_seq = prev.map(|p| p.event.seq);
        let removed_seqs = match after_seq {
            Some(a) if complete && seq > a + 1 => Some((a + 1, seq - 1)),
            None if complete && seq > 1 => Some((1, seq - 1)),
            _ => None,
        };
        return ReportProblem::MissingRows {
            first: position,
            last: row.number - 1,
            after_seq,
            before_seq: seq,
            removed_seqs,
        };
    }
    ReportProblem::OutOfPlace {
        row: row.number,
        position,
        seq,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use time::macros::datetime;

    use super::*;
    use crate::audit::AuditDraft;
    use crate::audit_action::AuditAction;

    const T0: time::OffsetDateTime = datetime!(2026-11-28 09:00:00.5 UTC);

    fn draft(i: usize) -> AuditDraft {
        let meta = RequestMeta {
            ip: Some(format!("10.0.0.{i}")),
            user_agent: Some("Mozilla/5.0 (X11, \"quoted\")".into()),
            request_id: Some(format!("req-{i}")),
        };
        AuditDraft::new(
            Actor::system("cli"),
            AuditAction::AuthLogin,
            Outcome::Success,
            meta,
        )
        .resource(format!("user:{i}"))
        .detail("n", i as u64)
    }

    fn seal_all(drafts: Vec<AuditDraft>) -> Vec<AuditEvent> {
        let mut head = ChainHead::EMPTY;
        drafts
            .into_iter()
            .enumerate()
            .map(|(i, d)| {
                let event = AuditEvent::seal(head, d, T0 + time::Duration::seconds(i as i64));
                head = event.head();
                event
            })
            .collect()
    }

    fn chain(n: usize) -> Vec<AuditEvent> {
        seal_all((1..=n).map(draft).collect())
    }

    fn info(events: &[AuditEvent], filter: AuditFilter, key: &ReportKey) -> ReportInfo {
        let head = events.last().map_or(ChainHead::EMPTY, AuditEvent::head);
        ReportInfo {
            filter: AuditFilter {
                up_to_seq: Some(head.seq),
                ..filter
            },
            generated_at: canonical_time(T0 + time::Duration::hours(1)),
            generated_by: "6f1c1a52-0000-4000-8000-000000000001".into(),
            generated_by_email: Some("reviewer@example.com".into()),
            chain_head: head,
            latest_checkpoint: (head.seq > 0)
                .then(|| SignedCheckpoint::sign(head, T0 + time::Duration::minutes(30), key)),
        }
    }

    fn write(events: &[AuditEvent], info: ReportInfo, key: &ReportKey) -> (String, ReportManifest) {
        let mut writer = ReportWriter::new();
        let mut out = writer.header();
        for event in events {
            out.extend(writer.row(event));
        }
        assert_eq!(writer.rows_written(), events.len() as u64);
        let (manifest, trailer) = writer.finish(info, key);
        out.extend(trailer);
        (String::from_utf8(out).expect("utf-8"), manifest)
    }

    fn report(n: usize, key: &ReportKey) -> (Vec<AuditEvent>, String) {
        let events = chain(n);
        let (text, _) = write(&events, info(&events, AuditFilter::default(), key), key);
        (events, text)
    }

    fn verify(text: &str) -> Result<VerifiedReport, ReportProblem> {
        verify_report(text.as_bytes(), None)
    }

    /// The report's lines (the fixtures have no line breaks inside cells).
    fn lines(text: &str) -> Vec<String> {
        text.lines().map(str::to_owned).collect()
    }

    fn join(lines: &[String]) -> String {
        lines.iter().map(|l| format!("{l}\n")).collect()
    }

    /// A data line for `event` numbered `number`, exactly as the writer makes it.
    fn line_for(event: &AuditEvent, number: u64) -> String {
        let mut writer = ReportWriter::new();
        writer.rows = number - 1;
        String::from_utf8(writer.row(event))
            .expect("utf-8")
            .trim_end()
            .to_owned()
    }

    fn parsed_rows(text: &str) -> Vec<AuditEvent> {
        let body = &text[..text.find(MANIFEST_TAG).expect("trailer")];
        csv_reader(body.as_bytes())
            .into_records()
            .skip(1)
            .map(|r| {
                parse_row(&r.expect("record"), 0, REPORT_FORMAT)
                    .expect("row")
                    .event
            })
            .collect()
    }

    #[test]
    fn an_untouched_report_verifies_and_round_trips_every_hashed_field() {
        let key = ReportKey::generate();
        let mut drafts: Vec<AuditDraft> = (1..=6).map(draft).collect();
        // None vs Some(""), values that need the escape, formula cells, CSV specials.
        drafts[0].meta = RequestMeta::default();
        drafts[0].actor = Actor::anonymous();
        drafts[1].meta = RequestMeta {
            ip: Some(String::new()),
            user_agent: Some("\\empty".into()),
            request_id: Some("\\".into()),
        };
        drafts[1].resource = Some(String::new());
        drafts[2].action = "=HYPERLINK(\"http://evil\",\"x\")".into();
        drafts[2].resource = Some("+1,2".into());
        drafts[2].meta.user_agent = Some("-cmd|' /C calc'!A0".into());
        drafts[2].meta.ip = Some("@SUM(1)".into());
        drafts[3].resource = Some("\tTAB".into());
        drafts[3].meta.request_id = Some("\rCR".into());
        drafts[3].meta.user_agent = Some("'quoted already".into());
        drafts[4].meta.user_agent = Some("multi\nline \"agent\"".into());
        drafts[5] = drafts[5]
            .clone()
            .detail("nested", json!({"z": [1, 2.5, "=x"], "a": null}));
        let events = seal_all(drafts);
        let (text, manifest) = write(&events, info(&events, AuditFilter::default(), &key), &key);

        let verified = verify_report(text.as_bytes(), Some(&key.public_key())).expect("verifies");
        assert_eq!(verified.rows, 6);
        assert!(verified.pinned);
        assert_eq!(verified.manifest, manifest);
        assert_eq!((manifest.first_seq, manifest.last_seq), (Some(1), Some(6)));
        assert_eq!(manifest.row_count, 6);
        assert_eq!(parsed_rows(&text), events);
        assert!(!verify(&text).expect("verifies").pinned);
    }

    #[test]
    fn formula_cells_are_neutralised_in_the_file() {
        let key = ReportKey::generate();
        let mut d = draft(1);
        d.action = "=1+1".into();
        d.resource = Some("@evil".into());
        d.meta.ip = Some("+41".into());
        d.meta.user_agent = Some("-2".into());
        d.meta.request_id = Some("\tx".into());
        let events = seal_all(vec![d]);
        let (text, _) = write(&events, info(&events, AuditFilter::default(), &key), &key);
        for record in csv_reader(text.as_bytes()).into_records() {
            let record = record.expect("record");
            for cell in record.iter() {
                assert!(
                    !cell.starts_with(['=', '+', '-', '@', '\t', '\r']),
                    "dangerous cell {cell:?}"
                );
            }
        }
        assert!(text.contains("'=1+1") && text.contains("'@evil") && text.contains("'+41"));
        verify(&text).expect("verifies");
    }

    /// Where the list separator is `;`, a spreadsheet splits every line at each `;`, so the text
    /// after one inside a cell (a user agent, a key label in the details) is a cell of its own.
    #[test]
    fn formulas_after_a_semicolon_are_neutralised_too() {
        let key = ReportKey::generate();
        let mut d = draft(1);
        d.meta.user_agent = Some("Mozilla;=1+1;x".into());
        d.resource = Some("a;@SUM(1);'b".into());
        let d = d.detail("label", "x;=HYPERLINK(\"http://evil\");\"=2\"");
        let events = seal_all(vec![d]);
        let (text, _) = write(&events, info(&events, AuditFilter::default(), &key), &key);
        let body: String = text.lines().filter(|l| !l.starts_with('#')).collect();
        for (at, _) in body.match_indices(';') {
            let next = body[at + 1..].chars().next();
            assert!(
                !matches!(next, Some('=' | '+' | '-' | '@' | '\t' | '\r' | '"')),
                "a formula after `;` at {at} in {body}"
            );
        }
        assert_eq!(parsed_rows(&text), events);
        verify(&text).expect("verifies");
    }

    /// The manifest line is split at `;` too: its JSON carries the filter's text and the
    /// requester's email, so it holds no `;` at all (JSON reads `\u003b` back as `;`).
    #[test]
    fn the_manifest_holds_no_semicolon() {
        let key = ReportKey::generate();
        let mut d = draft(1);
        d.resource = Some("x;=1+1".into());
        let events = seal_all(vec![d]);
        let filter = AuditFilter {
            resource: Some("x;=1+1".into()),
            ..Default::default()
        };
        let mut info = info(&events, filter, &key);
        info.generated_by_email = Some("a;=2@example.com".into());
        let (text, manifest) = write(&events, info, &key);
        let trailer: String = text.lines().filter(|l| l.starts_with('#')).collect();
        assert!(!trailer.contains(';'), "{trailer}");
        let verified = verify(&text).expect("verifies");
        assert_eq!(verified.manifest, manifest);
        assert_eq!(manifest.info.filter.resource.as_deref(), Some("x;=1+1"));
        assert_eq!(
            manifest.info.generated_by_email.as_deref(),
            Some("a;=2@example.com")
        );
    }

    /// `text` (a report as this format writes it) with its body rewritten by `rewrite` and
    /// signed again as `format` wrote it.
    fn as_older_format(
        text: &str,
        manifest: &ReportManifest,
        format: &str,
        key: &ReportKey,
        rewrite: impl Fn(String) -> String,
    ) -> String {
        let body = rewrite(
            text.split_inclusive('\n')
                .filter(|l| !l.starts_with('#'))
                .collect::<String>(),
        );
        let mut digest = Sha256::new();
        digest.update(body.as_bytes());
        let mut older = manifest.clone();
        older.format = format.to_owned();
        older.rows_sha256 = hex::encode(digest.finalize());
        older.signature = String::new();
        let json = serde_json::to_string(&older).expect("json");
        let signature = key.sign(&signed_message(format, &json));
        let mut file = body;
        file.push_str(MANIFEST_TAG);
        file.push(',');
        push_csv_cell(&mut file, &json);
        file.push_str(&format!("\n{SIGNATURE_TAG},{signature}\n"));
        file
    }

    /// A report downloaded before formulas after `;` were escaped still verifies.
    #[test]
    fn a_first_format_report_still_verifies() {
        let key = ReportKey::generate();
        let mut d = draft(1);
        d.meta.user_agent = Some("=1+1;'a".into());
        let events = seal_all(vec![d]);
        let (text, manifest) = write(&events, info(&events, AuditFilter::default(), &key), &key);
        // The same events as the first format wrote them: only the cell's start escaped.
        let file = as_older_format(&text, &manifest, REPORT_FORMAT_V1, &key, |body| {
            body.replace("'=1+1;''a", "'=1+1;'a")
        });
        let verified = verify_report(file.as_bytes(), Some(&key.public_key())).expect("verifies");
        assert_eq!(verified.manifest.format, REPORT_FORMAT_V1);
        // Read as a later format, the same bytes would be another event.
        assert!(text.contains("'=1+1;''a"), "{text}");
        assert!(!file.contains(";''"), "{file}");
    }

    /// A report downloaded before formulas after a TAB were escaped still verifies.
    #[test]
    fn a_second_format_report_still_verifies() {
        let key = ReportKey::generate();
        let mut d = draft(1);
        d.meta.user_agent = Some("Mozilla\t'=1+1;=2".into());
        let events = seal_all(vec![d]);
        let (text, manifest) = write(&events, info(&events, AuditFilter::default(), &key), &key);
        assert!(text.contains("Mozilla\t''=1+1;'=2"), "{text}");
        let file = as_older_format(&text, &manifest, REPORT_FORMAT_V2, &key, |body| {
            body.replace("Mozilla\t''=1+1;'=2", "Mozilla\t'=1+1;'=2")
        });
        let verified = verify_report(file.as_bytes(), Some(&key.public_key())).expect("verifies");
        assert_eq!(verified.manifest.format, REPORT_FORMAT_V2);
        // The same bytes signed as the current format are another event.
        let relabelled = as_older_format(&text, &manifest, REPORT_FORMAT, &key, |body| {
            body.replace("Mozilla\t''=1+1;'=2", "Mozilla\t'=1+1;'=2")
        });
        assert!(verify_report(relabelled.as_bytes(), Some(&key.public_key())).is_err());
    }

    #[test]
    fn cells_neutralise_and_restore_reversibly() {
        for raw in [
            "=a",
            "+a",
            "-a",
            "@a",
            "\ta",
            "\ra",
            "'a",
            "''",
            "'",
            "a",
            "",
            "a=b",
            "a;=1+1",
            "a;b",
            ";=a",
            ";'a",
            ";;=a",
            "=a;-b;@c",
            "a;\"=1\"",
            "';'",
            "a;",
            ";",
            "é;+ü",
            "Mozilla\t=cmd|' /C calc'!A0",
            "a\t\tb",
            "\t'",
            "a\t;=b",
            "a;\t=b",
            "a\t",
        ] {
            let out = neutralise_cell(raw);
            assert!(
                !out.starts_with(['=', '+', '-', '@', '\t', '\r']),
                "{out:?}"
            );
            for (at, _) in out.match_indices(INNER_SEPARATORS) {
                assert!(
                    !out[at + 1..].starts_with(escaped_after_separator)
                        || out[at + 1..].starts_with('\''),
                    "{out:?}"
                );
            }
            assert_eq!(restore_cell(&out, REPORT_FORMAT), raw);
        }
        assert_eq!(neutralise_cell("plain"), Cow::Borrowed("plain"));
        assert_eq!(neutralise_cell("a;b"), Cow::Borrowed("a;b"));
        assert_eq!(neutralise_cell("=x"), "'=x");
        assert_eq!(neutralise_cell("Mozilla;=1+1;x"), "Mozilla;'=1+1;x");
        assert_eq!(neutralise_cell("Mozilla\t=1+1"), "Mozilla\t'=1+1");
        // A first-format report escaped only the start of a cell, the second not after a TAB.
        assert_eq!(restore_cell("'=x;'y", REPORT_FORMAT_V1), "=x;'y");
        assert_eq!(restore_cell("'=x;'y\t'z", REPORT_FORMAT_V2), "=x;y\t'z");
    }

    #[test]
    fn optional_cells_distinguish_none_from_empty() {
        for value in [
            None,
            Some(""),
            Some("\\empty"),
            Some("\\"),
            Some("\\\\x"),
            Some("x"),
        ] {
            let cell = encode_optional(value);
            assert_eq!(decode_optional(&cell).as_deref(), value, "{cell:?}");
        }
        assert_eq!(encode_optional(None), "");
        assert_eq!(encode_optional(Some("")), EMPTY_MARKER);
    }

    #[test]
    fn an_edited_cell_names_its_row() {
        let key = ReportKey::generate();
        let (_, text) = report(5, &key);
        let mut l = lines(&text);
        l[3] = l[3].replace("auth.login", "auth.logout");
        let err = verify(&join(&l)).expect_err("edited");
        assert_eq!(err, ReportProblem::EditedRow { row: 3, seq: 3 });
        assert!(err.to_string().contains("row 3 (seq 3)"), "{err}");
    }

    #[test]
    fn an_edit_with_a_recomputed_hash_is_caught_by_the_next_link() {
        let key = ReportKey::generate();
        let (events, text) = report(5, &key);
        let mut forged = events[1].clone();
        forged.outcome = Outcome::Denied;
        forged.hash = forged.compute_hash();
        let mut l = lines(&text);
        l[2] = line_for(&forged, 2);
        let err = verify(&join(&l)).expect_err("edited");
        assert_eq!(
            err,
            ReportProblem::BrokenLink {
                row: 2,
                seq: 2,
                next_row: 3,
                next_seq: 3
            }
        );
        assert!(
            err.to_string().starts_with("row 2 (seq 2) was changed"),
            "{err}"
        );
    }

    #[test]
    fn a_deleted_row_is_named_with_the_seq_removed() {
        let key = ReportKey::generate();
        let (_, text) = report(5, &key);
        let mut l = lines(&text);
        l.remove(3);
        let err = verify(&join(&l)).expect_err("deleted");
        assert_eq!(
            err,
            ReportProblem::MissingRows {
                first: 3,
                last: 3,
                after_seq: Some(2),
                before_seq: 4,
                removed_seqs: Some((3, 3)),
            }
        );
        let text = err.to_string();
        assert!(
            text.contains("row 3 is missing") && text.contains("seq 3 removed"),
            "{text}"
        );

        // The first row too.
        let mut l = lines(&report(3, &key).1);
        l.remove(1);
        let err = verify(&join(&l)).expect_err("deleted");
        assert!(err.to_string().contains("row 1 is missing"), "{err}");
    }

    #[test]
    fn a_deleted_row_of_a_filtered_report_is_named_by_its_neighbours() {
        let key = ReportKey::generate();
        let events = chain(8);
        let odd: Vec<AuditEvent> = events.iter().filter(|e| e.seq % 2 == 1).cloned().collect();
        let filter = AuditFilter {
            outcome: Some(Outcome::Success),
            ..Default::default()
        };
        let (text, _) = write(&odd, info(&events, filter, &key), &key);
        verify(&text).expect("untouched");
        let mut l = lines(&text);
        l.remove(2);
        let err = verify(&join(&l)).expect_err("deleted");
        assert_eq!(
            err,
            ReportProblem::MissingRows {
                first: 2,
                last: 2,
                after_seq: Some(1),
                before_seq: 5,
                removed_seqs: None,
            }
        );
    }

    #[test]
    fn rows_removed_and_renumbered_in_a_complete_report_name_the_missing_seq() {
        let key = ReportKey::generate();
        let (events, text) = report(5, &key);
        let mut l = lines(&text);
        l.remove(3);
        l[3] = line_for(&events[3], 3);
        l[4] = line_for(&events[4], 4);
        let err = verify(&join(&l)).expect_err("deleted");
        assert_eq!(
            err,
            ReportProblem::MissingSeqs {
                row: 3,
                seq: 4,
                first_missing: 3,
                last_missing: 3
            }
        );
    }

    #[test]
    fn rows_cut_from_the_end_are_named() {
        let key = ReportKey::generate();
        let (_, text) = report(5, &key);
        let mut l = lines(&text);
        l.remove(5);
        let err = verify(&join(&l)).expect_err("cut");
        assert_eq!(
            err,
            ReportProblem::MissingEnd {
                rows: 4,
                manifest_rows: 5,
                last_seq: Some(5)
            }
        );
        assert!(
            err.to_string().starts_with("row 5 onwards is missing"),
            "{err}"
        );
    }

    #[test]
    fn two_swapped_rows_are_named() {
        let key = ReportKey::generate();
        let (_, text) = report(5, &key);
        let mut l = lines(&text);
        l.swap(2, 3);
        let err = verify(&join(&l)).expect_err("swapped");
        assert_eq!(
            err,
            ReportProblem::SwappedRows {
                row: 2,
                next: 3,
                seq_found: 3,
                seq_expected: 2
            }
        );
        assert!(
            err.to_string().starts_with("rows 2 and 3 are out of order"),
            "{err}"
        );

        // Swapped and renumbered: the seqs give it away.
        let (events, text) = report(5, &key);
        let mut l = lines(&text);
        l[2] = line_for(&events[2], 2);
        l[3] = line_for(&events[1], 3);
        let err = verify(&join(&l)).expect_err("swapped");
        assert_eq!(
            err,
            ReportProblem::SeqOrder {
                prev_row: 2,
                prev_seq: 3,
                row: 3,
                seq: 2
            }
        );
    }

    #[test]
    fn added_rows_are_named() {
        let key = ReportKey::generate();
        let (events, text) = report(5, &key);

        // A copy of row 3 after it.
        let mut l = lines(&text);
        l.insert(4, l[3].clone());
        let err = verify(&join(&l)).expect_err("added");
        assert_eq!(err, ReportProblem::DuplicateRow { row: 3, seq: 3 });

        // A copy with the next number: two rows hold one seq.
        let mut l = lines(&text);
        l.insert(4, line_for(&events[2], 4));
        let err = verify(&join(&l)).expect_err("added");
        assert_eq!(
            err,
            ReportProblem::DuplicateSeq {
                prev_row: 3,
                row: 4,
                seq: 3
            }
        );

        // A well-formed event appended after the pinned head.
        let mut more = events.clone();
        more.extend(seal_all((1..=6).map(draft).collect()).into_iter().skip(5));
        let mut l = lines(&text);
        l.insert(6, line_for(&more[5], 6));
        let err = verify(&join(&l)).expect_err("added");
        assert_eq!(
            err,
            ReportProblem::AfterHead {
                row: 6,
                seq: 6,
                head_seq: 5
            }
        );

        // A fabricated row that does not hash.
        let mut l = lines(&text);
        l.insert(6, l[5].replace(",5,", ",6,").replacen("5,", "6,", 1));
        let err = verify(&join(&l)).expect_err("added");
        assert!(
            matches!(err, ReportProblem::EditedRow { row: 6, .. }),
            "{err}"
        );
    }

    #[test]
    fn a_real_row_beyond_the_manifest_count_is_named() {
        let key = ReportKey::generate();
        let events = chain(6);
        let filter = AuditFilter {
            outcome: Some(Outcome::Success),
            ..Default::default()
        };
        let (text, _) = write(&events[..5], info(&events, filter, &key), &key);
        verify(&text).expect("untouched");
        let mut l = lines(&text);
        l.insert(6, line_for(&events[5], 6));
        let err = verify(&join(&l)).expect_err("added");
        assert_eq!(
            err,
            ReportProblem::ExtraRow {
                row: 6,
                seq: 6,
                manifest_rows: 5
            }
        );
    }

    #[test]
    fn a_row_outside_the_filter_is_named() {
        let key = ReportKey::generate();
        let mut drafts: Vec<AuditDraft> = (1..=4).map(draft).collect();
        drafts[2].outcome = Outcome::Denied;
        let events = seal_all(drafts);
        let filter = AuditFilter {
            outcome: Some(Outcome::Success),
            ..Default::default()
        };
        let kept: Vec<AuditEvent> = events.iter().filter(|e| e.seq != 3).cloned().collect();
        let (text, _) = write(&kept, info(&events, filter, &key), &key);
        verify(&text).expect("untouched");
        let mut l = lines(&text);
        l.insert(3, line_for(&events[2], 3));
        l[4] = line_for(&events[3], 4);
        let err = verify(&join(&l)).expect_err("added");
        assert_eq!(err, ReportProblem::OutsideFilter { row: 3, seq: 3 });
    }

    #[test]
    fn an_edited_row_number_is_told_apart_from_a_deletion() {
        let key = ReportKey::generate();
        let (events, text) = report(5, &key);
        let mut l = lines(&text);
        l[3] = line_for(&events[2], 9);
        let err = verify(&join(&l)).expect_err("renumbered");
        assert_eq!(
            err,
            ReportProblem::RowNumberEdited {
                position: 3,
                found: 9,
                seq: 3
            }
        );
    }

    #[test]
    fn a_changed_manifest_fails_the_signature() {
        let key = ReportKey::generate();
        let (_, text) = report(3, &key);
        for (from, to) in [
            ("reviewer@example.com", "someone@example.com"),
            ("\"\"row_count\"\":3", "\"\"row_count\"\":2"),
            ("\"\"outcome\"\":null", "\"\"outcome\"\":\"\"success\"\""),
        ] {
            assert!(text.contains(from), "{from}");
            let err = verify(&text.replace(from, to)).expect_err("changed");
            assert!(
                matches!(err, ReportProblem::BadSignature { .. }),
                "{from}: {err}"
            );
            assert!(err.to_string().contains("manifest was changed"), "{err}");
        }
    }

    #[test]
    fn a_forged_signature_fails_and_a_foreign_key_fails_when_pinned() {
        let key = ReportKey::generate();
        let attacker = ReportKey::generate();
        let (events, text) = report(3, &key);
        let l = lines(&text);

        // Another signature over the same manifest.
        let mut forged = l.clone();
        forged[5] = format!("{SIGNATURE_TAG},{}", attacker.sign(b"anything"));
        let err = verify(&join(&forged)).expect_err("forged");
        assert!(matches!(err, ReportProblem::BadSignature { .. }), "{err}");
        let mut garbage = l.clone();
        garbage[5] = format!("{SIGNATURE_TAG},abc");
        assert!(matches!(
            verify(&join(&garbage)),
            Err(ReportProblem::BadSignature { .. })
        ));
        // The right signature padded inside its cell (found by fuzz/report_verify).
        let signature = l[5].split_once(',').expect("signature cell").1;
        let mut padded = l.clone();
        padded[5] = format!("{SIGNATURE_TAG},\"{signature}\n\"");
        assert!(matches!(
            verify(&join(&padded)),
            Err(ReportProblem::BadTrailer(_))
        ));
        // The right signature with one digit in upper case (also found by fuzz/report_verify).
        let at = signature
            .find(|c: char| c.is_ascii_lowercase())
            .expect("a hex letter");
        let mut upper = l.clone();
        upper[5] = format!(
            "{SIGNATURE_TAG},{}{}",
            &signature[..at],
            signature[at..].to_ascii_uppercase()
        );
        assert!(matches!(
            verify(&join(&upper)),
            Err(ReportProblem::BadTrailer(_))
        ));

        // A whole report re-signed by an attacker's key: valid on its own, refused when pinned.
        let mut resigned_info = info(&events, AuditFilter::default(), &attacker);
        resigned_info.generated_by_email = Some("nobody@example.com".into());
        let (resigned, _) = write(&events, resigned_info, &attacker);
        let ok = verify(&resigned).expect("self-consistent");
        assert!(!ok.pinned);
        let err = verify_report(resigned.as_bytes(), Some(&key.public_key())).expect_err("pinned");
        assert_eq!(
            err,
            ReportProblem::KeyMismatch {
                pinned: key.public_key(),
                found: attacker.public_key()
            }
        );
        // The genuine report under a wrong pin.
        let err = verify_report(text.as_bytes(), Some(&attacker.public_key())).expect_err("pin");
        assert!(matches!(err, ReportProblem::KeyMismatch { .. }), "{err}");
    }

    #[test]
    fn a_checkpoint_not_signed_by_the_report_key_or_not_matching_a_row_fails() {
        let key = ReportKey::generate();
        let other = ReportKey::generate();
        let events = chain(4);
        let mut bad = info(&events, AuditFilter::default(), &key);
        bad.latest_checkpoint = Some(SignedCheckpoint::sign(events[3].head(), T0, &other));
        let (text, _) = write(&events, bad, &key);
        assert_eq!(verify(&text), Err(ReportProblem::BadCheckpoint { seq: 4 }));

        let mut wrong = info(&events, AuditFilter::default(), &key);
        let head = ChainHead {
            seq: 2,
            hash: events[0].hash,
        };
        wrong.latest_checkpoint = Some(SignedCheckpoint::sign(head, T0, &key));
        let (text, _) = write(&events, wrong, &key);
        assert_eq!(
            verify(&text),
            Err(ReportProblem::SignedHeadMismatch {
                row: 2,
                seq: 2,
                what: "checkpoint"
            })
        );
    }

    #[test]
    fn rows_rewritten_with_consistent_hashes_fail_the_digest() {
        let key = ReportKey::generate();
        // Same JSON value, other text: every row still hashes, the bytes differ.
        let mut d = draft(1);
        d = d.detail("a", 1).detail("b", 2);
        let events = seal_all(vec![d, draft(2)]);
        let (text, _) = write(&events, info(&events, AuditFilter::default(), &key), &key);
        verify(&text).expect("untouched");
        let changed = text.replacen("{\"\"a\"\":1,\"\"b\"\":2", "{\"\"b\"\":2,\"\"a\"\":1", 1);
        assert_ne!(changed, text);
        assert_eq!(verify(&changed), Err(ReportProblem::DigestMismatch));

        // A filtered report: an edited row with its hash recomputed has no neighbour link.
        let events = chain(6);
        let even: Vec<AuditEvent> = events.iter().filter(|e| e.seq % 2 == 0).cloned().collect();
        let filter = AuditFilter {
            action_prefix: Some("auth.".into()),
            ..Default::default()
        };
        let (text, _) = write(&even, info(&events, filter, &key), &key);
        verify(&text).expect("untouched");
        let mut forged = even[1].clone();
        forged.meta.ip = Some("192.0.2.1".into());
        forged.hash = forged.compute_hash();
        let mut l = lines(&text);
        l[2] = line_for(&forged, 2);
        let err = verify(&join(&l)).expect_err("rewritten");
        assert_eq!(err, ReportProblem::DigestMismatch);
        assert!(err.to_string().contains("hashes recomputed"), "{err}");
    }

    #[test]
    fn an_empty_report_verifies() {
        let key = ReportKey::generate();
        let (text, manifest) = write(&[], info(&[], AuditFilter::default(), &key), &key);
        let verified = verify(&text).expect("verifies");
        assert_eq!(verified.rows, 0);
        assert_eq!((manifest.first_seq, manifest.last_seq), (None, None));
        assert_eq!(manifest.info.latest_checkpoint, None);
    }

    #[test]
    fn a_report_is_read_in_one_pass_with_its_trailer_looked_for_only_near_the_end() {
        let key = ReportKey::generate();
        // Larger than the first window the trailer is looked for in, and than the csv reader's
        // buffer: the rows are checked and hashed as they stream past.
        let (_, big) = report(400, &key);
        assert!(big.len() > 64 * 1024, "{}", big.len());
        assert_eq!(verify(&big).map(|v| v.rows), Ok(400));

        let (_, text) = report(3, &key);
        // Lines after the signature, beyond the first window: still found, and refused.
        let near = format!("{text}{}", "#appended\n".repeat(3_000));
        assert!(
            matches!(verify(&near), Err(ReportProblem::BadTrailer(_))),
            "{:?}",
            verify(&near)
        );
        // A trailer further than any real one could be from the end is not looked for.
        let far = format!("{text}{}", "#appended\n".repeat(120_000));
        assert_eq!(verify(&far), Err(ReportProblem::NoManifest));
    }

    #[test]
    fn a_read_failure_among_the_rows_is_an_unreadable_file_not_a_bad_row() {
        /// A file with unreadable bytes in `bad` (a failing disk sector).
        struct BadSector {
            bytes: std::io::Cursor<Vec<u8>>,
            bad: std::ops::Range<u64>,
        }
        impl Read for BadSector {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                let at = self.bytes.position();
                if self.bad.contains(&at) {
                    return Err(std::io::Error::other("input/output error"));
                }
                // Stop at the bad sector; the next read fails.
                let room = if at < self.bad.start {
                    (self.bad.start - at) as usize
                } else {
                    buf.len()
                };
                let len = buf.len().min(room);
                self.bytes.read(&mut buf[..len])
            }
        }
        impl Seek for BadSector {
            fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
                self.bytes.seek(to)
            }
        }
        let key = ReportKey::generate();
        let (_, text) = report(400, &key);
        let len = text.len() as u64;
        // Among the rows: the header and the trailer (the last kilobytes) read well.
        let source = BadSector {
            bad: len / 3..len / 2,
            bytes: std::io::Cursor::new(text.into_bytes()),
        };
        let outcome = verify_report_from(source, None);
        assert!(
            matches!(&outcome, Err(ReportProblem::Unreadable(why)) if why.contains("input/output error")),
            "{outcome:?}"
        );
    }

    #[test]
    fn garbage_and_truncations_are_errors_not_panics() {
        for junk in [
            &b""[..],
            b"hello",
            b"\xff\xfe\x00garbage",
            b"row,seq\n1,2\n",
            b"#cryptopulse-manifest,{}\n",
        ] {
            assert!(
                matches!(verify_report(junk, None), Err(ReportProblem::Unreadable(_))),
                "{junk:?}"
            );
        }
        let key = ReportKey::generate();
        let (_, text) = report(3, &key);
        let header_only = join(&lines(&text)[..4]);
        assert_eq!(verify(&header_only), Err(ReportProblem::NoManifest));
        let no_signature = join(&lines(&text)[..5]);
        assert_eq!(verify(&no_signature), Err(ReportProblem::NoManifest));
        let extra = format!("{text}1,2,3\n");
        assert!(matches!(verify(&extra), Err(ReportProblem::BadTrailer(_))));
        let bad_json = text.replace("{\"\"format", "{\"\"formax");
        assert!(matches!(
            verify(&bad_json),
            Err(ReportProblem::BadTrailer(_))
        ));
        let bad_cell = text.replacen(",system,", ",robot,", 1);
        assert!(
            matches!(
                verify(&bad_cell),
                Err(ReportProblem::BadRow {
                    line: 2,
                    row: Some(1),
                    ..
                })
            ),
            "{:?}",
            verify(&bad_cell)
        );
        let short_row = text.replacen(",success,", ",", 1);
        assert!(matches!(
            verify(&short_row),
            Err(ReportProblem::BadRow { line: 2, .. })
        ));

        // Every prefix of a report: never a panic, and only the whole file (with or without its
        // last newline) verifies.
        let bytes = text.as_bytes();
        for len in 0..bytes.len() {
            let result = verify_report(&bytes[..len], None);
            assert_eq!(
                result.is_ok(),
                len == bytes.len() - 1,
                "prefix of {len} bytes: {result:?}"
            );
        }
    }
}
