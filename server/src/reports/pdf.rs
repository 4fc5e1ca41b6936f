//! PDF audit reports (lopdf): a title page with the filter and the manifest's summary, a table
//! of the rows, a final page with the whole manifest, and the CSV report itself embedded as the
//! attachment `audit-report.csv` (PDF/A-3 style: EmbeddedFiles name tree, Filespec with /EF and
//! /AFRelationship /Data). The table is for reading; the attachment is the evidence that
//! `cryptopulse report verify` checks.
//!
//! Text uses the base-14 Helvetica and Courier fonts with WinAnsiEncoding: characters outside
//! it print as `?` (the attachment keeps the exact bytes).

use domain::audit::report::{EMPTY_MARKER, ReportManifest, restore_cell};
use lopdf::{Document, LoadOptions, Object, ObjectId, Stream, dictionary};

/// The attachment's name; `embedded_report` looks for it.
pub const ATTACHMENT_NAME: &str = "audit-report.csv";
/// The most rows a PDF lays out (about 2,300 pages); larger reports are for CSV.
pub const MAX_PDF_ROWS: u64 = 100_000;
/// Reading an uploaded PDF: no stream may inflate past this.
const MAX_ATTACHMENT_BYTES: usize = 512 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum PdfError {
    #[error(
        "the report has {rows} rows; a PDF holds at most {max}: narrow the filter or download the CSV"
    )]
    TooManyRows { rows: u64, max: u64 },
    #[error("the CSV report cannot be read: {0}")]
    BadReport(String),
    #[error("not a readable PDF: {0}")]
    Unreadable(String),
    #[error("the PDF has no embedded `{ATTACHMENT_NAME}`")]
    NoReport,
    #[error("writing the PDF failed: {0}")]
    Write(String),
}

// Landscape A4, in points.
const PAGE_W: f32 = 842.0;
const PAGE_H: f32 = 595.0;
const MARGIN: f32 = 36.0;
const ROW_H: f32 = 11.0;
const TABLE_FONT: f32 = 7.0;
const ROWS_PER_PAGE: usize = 44;

/// A table column: header, x position, width, which CSV column(s) feed it.
struct Column {
    title: &'static str,
    x: f32,
    width: f32,
    mono: bool,
}

const COLUMNS: [Column; 7] = [
    Column {
        title: "Seq",
        x: MARGIN,
        width: 44.0,
        mono: false,
    },
    Column {
        title: "Time (UTC)",
        x: MARGIN + 46.0,
        width: 112.0,
        mono: false,
    },
    Column {
        title: "Actor",
        x: MARGIN + 160.0,
        width: 170.0,
        mono: false,
    },
    Column {
        title: "Action",
        x: MARGIN + 332.0,
        width: 140.0,
        mono: false,
    },
    Column {
        title: "Resource",
        x: MARGIN + 474.0,
        width: 150.0,
        mono: false,
    },
    Column {
        title: "Outcome",
        x: MARGIN + 626.0,
        width: 44.0,
        mono: false,
    },
    Column {
        title: "Hash",
        x: MARGIN + 672.0,
        width: 98.0,
        mono: true,
    },
];

/// Where each table column's text comes from in the CSV header.
struct CsvColumns {
    seq: usize,
    time: usize,
    actor_kind: Option<usize>,
    actor_id: Option<usize>,
    action: usize,
    resource: Option<usize>,
    outcome: usize,
    hash: usize,
}

impl CsvColumns {
    fn find(header: &csv::StringRecord) -> Result<Self, PdfError> {
        let at = |names: &[&str]| header.iter().position(|h| names.contains(&h.trim()));
        let need = |names: &[&str]| {
            at(names).ok_or_else(|| {
                PdfError::BadReport(format!("the header has no `{}` column", names[0]))
            })
        };
        Ok(Self {
            seq: need(&["seq"])?,
            time: need(&["occurred_at", "time"])?,
            actor_kind: at(&["actor_kind"]),
            actor_id: at(&["actor_id", "actor"]),
            action: need(&["action"])?,
            resource: at(&["resource"]),
            outcome: need(&["outcome"])?,
            hash: need(&["hash"])?,
        })
    }

    /// A row's cells as printed, unescaped as the report's `format` escaped them.
    fn cells(&self, record: &csv::StringRecord, format: &str) -> [String; 7] {
        let get = |i: usize| restore_cell(record.get(i).unwrap_or(""), format).into_owned();
        // Optional fields mark a present-but-empty value and escape a leading backslash.
        let opt = |i: Option<usize>| {
            let cell = i.map(get).unwrap_or_default();
            match cell.as_str() {
                EMPTY_MARKER => String::new(),
                v => v.strip_prefix('\\').unwrap_or(v).to_owned(),
            }
        };
        let actor = match (opt(self.actor_kind), opt(self.actor_id)) {
            (kind, id) if id.is_empty() => kind,
            (kind, id) if kind.is_empty() => id,
            (kind, id) => format!("{kind}:{id}"),
        };
        let hash = get(self.hash);
        [
            get(self.seq),
            get(self.time),
            actor,
            get(self.action),
            opt(self.resource),
            get(self.outcome),
            hash.chars().take(16).collect(),
        ]
    }
}

/// Builds the PDF of `csv_report` (a whole report: header, rows, manifest trailer), calling
/// `progress` with the number of rows laid out after each page.
pub fn build_pdf(
    csv_report: &[u8],
    manifest: &ReportManifest,
    mut progress: impl FnMut(u64),
) -> Result<Vec<u8>, PdfError> {
    if manifest.row_count > MAX_PDF_ROWS {
        return Err(PdfError::TooManyRows {
            rows: manifest.row_count,
            max: MAX_PDF_ROWS,
        });
    }
    let manifest_json = serde_json::to_value(manifest)
        .map_err(|e| PdfError::BadReport(format!("manifest: {e}")))?;

    let mut doc = Document::with_version("1.7");
    let pages_id = doc.new_object_id();
    let font = |doc: &mut Document, name: &str| {
        doc.add_object(dictionary! {
            "Type" => "Font",
            "Subtype" => "Type1",
            "BaseFont" => name,
            "Encoding" => "WinAnsiEncoding",
        })
    };
    let regular = font(&mut doc, "Helvetica");
    let bold = font(&mut doc, "Helvetica-Bold");
    let mono = font(&mut doc, "Courier");
    let resources_id = doc.add_object(dictionary! {
        "Font" => dictionary! { "F1" => regular, "F2" => bold, "F3" => mono },
    });
    let mut pages: Vec<ObjectId> = Vec::new();
    let mut add_page = |doc: &mut Document, content: Vec<u8>| {
        let content_id = doc.add_object(Stream::new(dictionary! {}, content));
        let page = doc.add_object(dictionary! {
            "Type" => "Page",
            "Parent" => pages_id,
            "Contents" => content_id,
        });
        pages.push(page);
    };

    add_page(&mut doc, title_page(&manifest_json));

    // The table: rows straight from the CSV (the trailer's comment lines are skipped).
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .comment(Some(b'#'))
        .flexible(true)
        .from_reader(csv_report);
    let header = reader
        .headers()
        .map_err(|e| PdfError::BadReport(e.to_string()))?
        .clone();
    let columns = CsvColumns::find(&header)?;
    let mut laid_out: u64 = 0;
    let mut page = TablePage::new(1);
    for record in reader.records() {
        let record = record.map_err(|e| PdfError::BadReport(e.to_string()))?;
        page.row(&columns.cells(&record, &manifest.format));
        laid_out += 1;
        if laid_out > MAX_PDF_ROWS {
            return Err(PdfError::TooManyRows {
                rows: laid_out,
                max: MAX_PDF_ROWS,
            });
        }
        if page.rows == ROWS_PER_PAGE {
            let number = page.number + 1;
            add_page(
                &mut doc,
                std::mem::replace(&mut page, TablePage::new(number)).finish(),
            );
            progress(laid_out);
        }
    }
    if page.rows > 0 || laid_out == 0 {
        add_page(&mut doc, page.finish());
    }
    progress(laid_out);

    add_page(&mut doc, manifest_page(&manifest_json));

    let count = pages.len() as i64;
    doc.objects.insert(
        pages_id,
        Object::Dictionary(dictionary! {
            "Type" => "Pages",
            "Kids" => pages.into_iter().map(Object::Reference).collect::<Vec<_>>(),
            "Count" => count,
            "Resources" => resources_id,
            "MediaBox" => vec![0.into(), 0.into(), PAGE_W.into(), PAGE_H.into()],
        }),
    );

    // The report itself, byte for byte, as an associated file.
    let embedded = doc.add_object(Stream::new(
        dictionary! {
            "Type" => "EmbeddedFile",
            "Subtype" => Object::Name(b"text/csv".to_vec()),
            "Params" => dictionary! { "Size" => csv_report.len() as i64 },
        },
        csv_report.to_vec(),
    ));
    let filespec = doc.add_object(dictionary! {
        "Type" => "Filespec",
        "F" => Object::string_literal(ATTACHMENT_NAME),
        "UF" => Object::string_literal(ATTACHMENT_NAME),
        "Desc" => Object::string_literal("The signed CSV audit report this PDF shows (check it with `cryptopulse report verify`)"),
        "AFRelationship" => "Data",
        "EF" => dictionary! { "F" => embedded },
    });
    let info = doc.add_object(dictionary! {
        "Title" => Object::string_literal("CryptoPulse audit report"),
        "Producer" => Object::string_literal("CryptoPulse"),
    });
    let catalog = doc.add_object(dictionary! {
        "Type" => "Catalog",
        "Pages" => pages_id,
        "Names" => dictionary! {
            "EmbeddedFiles" => dictionary! {
                "Names" => vec![Object::string_literal(ATTACHMENT_NAME), filespec.into()],
            },
        },
        "AF" => vec![filespec.into()],
        "PageMode" => "UseAttachments",
    });
    doc.trailer.set("Root", catalog);
    doc.trailer.set("Info", info);
    doc.compress();
    let mut out = Vec::new();
    doc.save_to(&mut out)
        .map_err(|e| PdfError::Write(e.to_string()))?;
    Ok(out)
}

/// The CSV report embedded in a PDF made by [`build_pdf`].
pub fn embedded_report(pdf: &[u8]) -> Result<Vec<u8>, PdfError> {
    let options = LoadOptions {
        max_decompressed_size: Some(MAX_ATTACHMENT_BYTES),
        ..LoadOptions::default()
    };
    let doc = Document::load_mem_with_options(pdf, options)
        .map_err(|e| PdfError::Unreadable(e.to_string()))?;
    let deref = |object: &Object| -> Option<Object> {
        doc.dereference(object).ok().map(|(_, o)| o.clone())
    };
    let catalog = doc
        .catalog()
        .map_err(|e| PdfError::Unreadable(e.to_string()))?;
    let names = catalog
        .get(b"Names")
        .ok()
        .and_then(deref)
        .and_then(|o| o.as_dict().ok().cloned())
        .ok_or(PdfError::NoReport)?;
    let tree = names
        .get(b"EmbeddedFiles")
        .ok()
        .and_then(deref)
        .and_then(|o| o.as_dict().ok().cloned())
        .ok_or(PdfError::NoReport)?;
    let entries = tree
        .get(b"Names")
        .ok()
        .and_then(deref)
        .and_then(|o| o.as_array().ok().cloned())
        .ok_or(PdfError::NoReport)?;
    // A flat name tree: [name spec name spec …] (what build_pdf writes).
    let spec = entries
        .chunks(2)
        .find(|pair| {
            pair.first()
                .and_then(deref)
                .is_some_and(|n| n.as_str().is_ok_and(|s| s == ATTACHMENT_NAME.as_bytes()))
        })
        .and_then(|pair| pair.get(1))
        .and_then(deref)
        .and_then(|o| o.as_dict().ok().cloned())
        .ok_or(PdfError::NoReport)?;
    let file = spec
        .get(b"EF")
        .ok()
        .and_then(deref)
        .and_then(|o| o.as_dict().ok().cloned())
        .and_then(|ef| ef.get(b"F").ok().and_then(deref))
        .ok_or(PdfError::NoReport)?;
    let stream = file.as_stream().map_err(|_| PdfError::NoReport)?;
    stream
        .get_plain_content_with_limit(MAX_ATTACHMENT_BYTES)
        .map_err(|e| PdfError::Unreadable(e.to_string()))
}

/// One page of the table being laid out.
struct TablePage {
    number: usize,
    rows: usize,
    content: Vec<u8>,
}

impl TablePage {
    fn new(number: usize) -> Self {
        let mut content = Vec::with_capacity(16 * 1024);
        let top = PAGE_H - MARGIN;
        text(&mut content, "F2", 10.0, MARGIN, top, "Audit events");
        let y = top - 18.0;
        for column in &COLUMNS {
            text(&mut content, "F2", TABLE_FONT, column.x, y, column.title);
        }
        // A rule under the header.
        content.extend_from_slice(
            format!(
                "0.5 w {MARGIN} {} m {} {} l S\n",
                y - 3.0,
                PAGE_W - MARGIN,
                y - 3.0
            )
            .as_bytes(),
        );
        Self {
            number,
            rows: 0,
            content,
        }
    }

    fn row(&mut self, cells: &[String; 7]) {
        let y = PAGE_H - MARGIN - 18.0 - ROW_H * (self.rows as f32 + 1.0);
        for (column, cell) in COLUMNS.iter().zip(cells) {
            let (font, width_factor) = if column.mono {
                ("F3", 0.6)
            } else {
                ("F1", 0.56)
            };
            let max_chars = (column.width / (TABLE_FONT * width_factor)) as usize;
            text(
                &mut self.content,
                font,
                TABLE_FONT,
                column.x,
                y,
                &fit(cell, max_chars),
            );
        }
        self.rows += 1;
    }

    fn finish(mut self) -> Vec<u8> {
        let footer = format!("Table page {}", self.number);
        text(
            &mut self.content,
            "F1",
            7.0,
            PAGE_W - MARGIN - 60.0,
            MARGIN / 2.0,
            &footer,
        );
        self.content
    }
}

fn field(json: &serde_json::Value, key: &str) -> String {
    match json.get(key) {
        None | Some(serde_json::Value::Null) => "—".to_owned(),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

fn title_page(manifest: &serde_json::Value) -> Vec<u8> {
    let mut content = Vec::new();
    let mut y = PAGE_H - MARGIN - 10.0;
    text(
        &mut content,
        "F2",
        20.0,
        MARGIN,
        y,
        "CryptoPulse audit report",
    );
    y -= 30.0;
    let filter = manifest.get("filter").cloned().unwrap_or_default();
    let by = match (
        field(manifest, "generated_by_email"),
        field(manifest, "generated_by"),
    ) {
        (email, id) if email == "—" => id,
        (email, id) => format!("{email} ({id})"),
    };
    let head = manifest.get("chain_head").cloned().unwrap_or_default();
    let lines: Vec<(&str, String)> = vec![
        ("Generated at", field(manifest, "generated_at")),
        ("Generated by", by),
        ("Period from", field(&filter, "from")),
        ("Period to (exclusive)", field(&filter, "to")),
        ("Actor", field(&filter, "actor_id")),
        ("Action prefix", field(&filter, "action_prefix")),
        ("Outcome", field(&filter, "outcome")),
        ("Resource", field(&filter, "resource")),
        ("Request id", field(&filter, "request_id")),
        ("Rows", field(manifest, "row_count")),
        ("First seq", field(manifest, "first_seq")),
        ("Last seq", field(manifest, "last_seq")),
        (
            "Chain head at start",
            format!("{}:{}", field(&head, "seq"), field(&head, "hash")),
        ),
        ("Rows SHA-256", field(manifest, "rows_sha256")),
        ("Report public key", field(manifest, "public_key")),
    ];
    for (label, value) in lines {
        text(&mut content, "F2", 10.0, MARGIN, y, label);
        text(
            &mut content,
            "F1",
            10.0,
            MARGIN + 150.0,
            y,
            &fit(&value, 110),
        );
        y -= 16.0;
    }
    y -= 10.0;
    for note in [
        "The table that follows is for reading. The evidence is the attached file audit-report.csv: every row carries",
        "its event's seq, prev_hash and hash, and the manifest at its end is signed with the server's report key",
        "(published at /.well-known/cryptopulse-report-key). Check this PDF offline with:",
        "    cryptopulse report verify THIS.pdf --public-key ed25519:<key>",
        "This report does not contain its own download event (it is recorded when the report is finished).",
    ] {
        text(&mut content, "F1", 9.0, MARGIN, y, note);
        y -= 13.0;
    }
    content
}

fn manifest_page(manifest: &serde_json::Value) -> Vec<u8> {
    let mut content = Vec::new();
    let mut y = PAGE_H - MARGIN - 10.0;
    text(&mut content, "F2", 14.0, MARGIN, y, "Manifest (signed)");
    y -= 22.0;
    let pretty = serde_json::to_string_pretty(manifest).unwrap_or_default();
    // Courier 7pt: 0.6em wide, so ~180 characters fit across the page.
    let width = ((PAGE_W - 2.0 * MARGIN) / (7.0 * 0.6)) as usize;
    for line in pretty.lines() {
        let chars: Vec<char> = line.chars().collect();
        for chunk in chars.chunks(width.max(1)) {
            if y < MARGIN {
                return content;
            }
            let piece: String = chunk.iter().collect();
            text(&mut content, "F3", 7.0, MARGIN, y, &piece);
            y -= 9.0;
        }
    }
    content
}

/// Shortens `value` to `max` characters, marking the cut with an ellipsis.
fn fit(value: &str, max: usize) -> String {
    if value.chars().count() <= max {
        return value.to_owned();
    }
    let mut out: String = value.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Appends a positioned line of text in `font` at (`x`, `y`).
fn text(content: &mut Vec<u8>, font: &str, size: f32, x: f32, y: f32, value: &str) {
    content.extend_from_slice(format!("BT /{font} {size} Tf {x} {y} Td (").as_bytes());
    for byte in win_ansi(value) {
        if matches!(byte, b'(' | b')' | b'\\') {
            content.push(b'\\');
        }
        content.push(byte);
    }
    content.extend_from_slice(b") Tj ET\n");
}

/// `value` in WinAnsiEncoding; what it cannot show becomes `?`, control characters a space.
fn win_ansi(value: &str) -> Vec<u8> {
    value
        .chars()
        .map(|c| match c {
            ' '..='~' => c as u8,
            '\u{a0}'..='\u{ff}' => c as u32 as u8,
            '€' => 0x80,
            '‚' => 0x82,
            '„' => 0x84,
            '…' => 0x85,
            '‘' => 0x91,
            '’' => 0x92,
            '“' => 0x93,
            '”' => 0x94,
            '•' => 0x95,
            '–' => 0x96,
            '—' => 0x97,
            c if c.is_control() => b' ',
            _ => b'?',
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_outside_win_ansi_is_replaced_and_delimiters_escaped() {
        assert_eq!(win_ansi("a(é)…€漢\n"), b"a(\xe9)\x85\x80? ".to_vec());
        let mut content = Vec::new();
        text(&mut content, "F1", 7.0, 1.0, 2.0, r"a(b)\c");
        assert_eq!(
            String::from_utf8_lossy(&content),
            "BT /F1 7 Tf 1 2 Td (a\\(b\\)\\\\c) Tj ET\n"
        );
    }

    #[test]
    fn long_cells_are_cut_with_an_ellipsis() {
        assert_eq!(fit("abcdef", 4), "abc…");
        assert_eq!(fit("abc", 4), "abc");
    }
}
