//! The auditor's reads of the log and streamed reports: filtered keyset search, one event with
//! its hash links, and reports (CSV rows fetched a page at a time, then a signed manifest).
//!
//! A report does not contain its own `report.download` event: the head is pinned when the report
//! starts, and the event is recorded when it finishes (it carries the report's digest).

use std::fmt;
use std::sync::Arc;

use serde_json::json;
use sha2::{Digest, Sha256};

use super::jobs::{JobId, JobStatus};
use super::report::{ReportInfo, ReportManifest, ReportWriter};
use super::service::{AuditService, ReviewedEvent};
use super::{
    Actor, AuditDraft, AuditEvent, AuditFilter, ChainHash, ChainHead, Outcome, RequestMeta,
    SCAN_PAGE, canonical_time,
};
use crate::account::Email;
use crate::audit_action::AuditAction;
use crate::authz::Reviewer;
use crate::ids::UserId;
use crate::store_error::StoreError;

/// Why a report was not finished (signed).
#[derive(Debug, Clone, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The chain does not verify: a signature would vouch for rows cut from it or rewritten.
    #[error(
        "The audit chain does not verify at event {0}, so the report is not signed. Run Verify on the Audit page."
    )]
    ChainBroken(i64),
    /// The rows sent are not the chain's rows that match the filter: some were rewritten, or
    /// hidden from the filter, while the report was read, and put back before the check.
    #[error(
        "The audit log changed while the report was produced (its rows no longer match the verified chain), so the report is not signed. Run Verify on the Audit page."
    )]
    RowsChanged,
}

/// Which page of a search: the newest, the one older than a seq, or the one newer than a seq.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageCursor {
    Newest,
    /// Events with seq < this (the "older" link of a page).
    Before(i64),
    /// Events with seq > this (the "newer" link of a page).
    After(i64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditPage {
    pub cursor: PageCursor,
    /// Clamped to 1..=[`AuditService::MAX_SEARCH_PAGE`].
    pub limit: u64,
}

/// One page of a search, newest first, with the cursors of its neighbours (None: no more).
#[derive(Debug, Clone, PartialEq)]
pub struct AuditSearchPage {
    pub events: Vec<ReviewedEvent>,
    /// `PageCursor::Before(seq)` of the next older page.
    pub older: Option<i64>,
    /// `PageCursor::After(seq)` of the next newer page.
    pub newer: Option<i64>,
}

/// A neighbour in the chain, as the event detail links to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainLink {
    pub seq: i64,
    pub prev_hash: ChainHash,
    pub hash: ChainHash,
}

impl From<&AuditEvent> for ChainLink {
    fn from(e: &AuditEvent) -> Self {
        Self {
            seq: e.seq,
            prev_hash: e.prev_hash,
            hash: e.hash,
        }
    }
}

/// One event with the events either side of it: its `prev_hash` should be `previous.hash`
/// and its `hash` should be `next.prev_hash`.
#[derive(Debug, Clone, PartialEq)]
pub struct EventDetail {
    pub event: ReviewedEvent,
    pub previous: Option<ChainLink>,
    pub next: Option<ChainLink>,
}

impl EventDetail {
    /// The stored links agree with the neighbours (the genesis event links to zeros).
    pub fn links_hold(&self) -> bool {
        let back = match self.previous {
            Some(prev) => prev.hash == self.event.event.prev_hash,
            None => self.event.event.seq == 1 && self.event.event.prev_hash == ChainHash::GENESIS,
        };
        let forward = self
            .next
            .is_none_or(|next| next.prev_hash == self.event.event.hash);
        back && forward
    }
}

/// The file a report is delivered as (recorded in its download event).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportFormat {
    Csv,
    Pdf,
}

impl ReportFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            ReportFormat::Csv => "csv",
            ReportFormat::Pdf => "pdf",
        }
    }
}

impl fmt::Display for ReportFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A report being produced: rows a page at a time, then [`ReportRun::finish`].
pub struct ReportRun {
    service: AuditService,
    filter: AuditFilter,
    format: ReportFormat,
    head: ChainHead,
    generated_by: UserId,
    generated_by_email: Option<Email>,
    /// When the report started (canonical time), as its manifest says.
    generated_at: String,
    writer: ReportWriter,
    /// Every row written, as (seq, hash), folded in order: compared at the end with the
    /// verified chain's matching events.
    written: RowSet,
    /// The last seq fetched (keyset cursor).
    after: i64,
    header_sent: bool,
    exhausted: bool,
}

impl fmt::Debug for ReportRun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReportRun")
            .field("filter", &self.filter)
            .field("format", &self.format)
            .field("head", &self.head)
            .field("after", &self.after)
            .finish_non_exhaustive()
    }
}

impl ReportRun {
    /// The filter as the report applies it (with the pinned head).
    pub fn filter(&self) -> &AuditFilter {
        &self.filter
    }

    /// The chain head when the report started: no later event is in it.
    pub fn head(&self) -> ChainHead {
        self.head
    }

    pub fn rows_written(&self) -> u64 {
        self.writer.rows_written()
    }

    /// The next bytes of the report: the header with the first page, then one page of rows per
    /// call; `None` once every row has been written (then call [`ReportRun::finish`]).
    pub async fn next_rows(&mut self) -> Result<Option<Vec<u8>>, StoreError> {
        let (bytes, _) = self.next_page().await?;
        Ok(bytes)
    }

    /// As [`ReportRun::next_rows`], also handing back the page's events (the PDF lays them
    /// out).
    pub async fn next_page(&mut self) -> Result<(Option<Vec<u8>>, Vec<AuditEvent>), StoreError> {
        if self.exhausted {
            return Ok((None, Vec::new()));
        }
        let mut bytes = if self.header_sent {
            Vec::new()
        } else {
            self.header_sent = true;
            self.writer.header()
        };
        let events = self
            .service
            .log
            .search_after(&self.filter, self.after, SCAN_PAGE)
            .await?;
        if (events.len() as u64) < SCAN_PAGE {
            self.exhausted = true;
        }
        for event in &events {
            bytes.extend_from_slice(&self.writer.row(event));
            self.written.add(event);
            self.after = event.seq;
        }
        if bytes.is_empty() {
            return Ok((None, events));
        }
        Ok((Some(bytes), events))
    }

    /// Verifies the chain, then signs the manifest over every row written and records the
    /// download (who, filter, format, rows, digest). Returns the manifest and the trailer bytes
    /// that end the report. Call only after `next_rows` returned `None`: a report cut short
    /// must not be signed.
    ///
    /// The chain is verified first because a filtered report cannot show on its own that a
    /// matching row was cut from the chain, or rewritten with its own hash recomputed: its rows
    /// need not be consecutive. The rows are already sent by then, so the first byte is not
    /// held up; a broken chain leaves the report unsigned.
    pub async fn finish(
        mut self,
        meta: RequestMeta,
    ) -> Result<(ReportManifest, Vec<u8>), ReportError> {
        if !self.exhausted {
            return Err(StoreError::Backend(
                "a report was finished before all of its rows were written".into(),
            )
            .into());
        }
        // The head pinned when the report started must still be in it, too.
        let pinned = Some(self.head).filter(|head| head.seq > 0);
        // The rows sent must be exactly the verified chain's events that match the filter:
        // a row rewritten (its own hash recomputed) or hidden from the filter while it was
        // read, then put back, leaves the chain whole but the report wrong.
        let mut expected = RowSet::default();
        let filter = &self.filter;
        let checked = self
            .service
            .check_chain_seeing(
                pinned,
                |_| {},
                |event| {
                    if filter.matches(event) {
                        expected.add(event);
                    }
                },
            )
            .await?;
        if let Err(broken) = checked {
            return Err(ReportError::ChainBroken(broken.error.seq));
        }
        if expected != self.written {
            return Err(ReportError::RowsChanged);
        }
        let mut header = Vec::new();
        if !self.header_sent {
            // An empty report still has its header (the caller sends it before the trailer).
            header = self.writer.header();
        }
        let latest_checkpoint = self.service.latest_checkpoint().await?;
        let info = ReportInfo {
            filter: self.filter.clone(),
            generated_at: self.generated_at.clone(),
            generated_by: self.generated_by.to_string(),
            generated_by_email: self
                .generated_by_email
                .as_ref()
                .map(|e| e.as_str().to_owned()),
            chain_head: self.head,
            latest_checkpoint,
        };
        let (manifest, trailer) = self.writer.finish(info, self.service.report_key());
        self.service
            .log
            .record(
                AuditDraft::new(
                    Actor::user(self.generated_by),
                    AuditAction::ReportDownload,
                    Outcome::Success,
                    meta,
                )
                .resource("audit-report")
                .detail("filter", json!(self.filter))
                .detail("format", self.format.as_str())
                .detail("row_count", manifest.row_count)
                .detail("rows_sha256", manifest.rows_sha256.clone())
                .detail("first_seq", manifest.first_seq)
                .detail("last_seq", manifest.last_seq)
                .detail("head_seq", self.head.seq),
            )
            .await?;
        header.extend_from_slice(&trailer);
        Ok((manifest, header))
    }
}

impl AuditService {
    /// The most events one page of a search shows.
    pub const MAX_SEARCH_PAGE: u64 = 200;

    /// Filtered keyset paging over the whole chain, newest first.
    pub async fn search(
        &self,
        _reviewer: &Reviewer,
        filter: &AuditFilter,
        page: AuditPage,
    ) -> Result<AuditSearchPage, StoreError> {
        let limit = page.limit.clamp(1, Self::MAX_SEARCH_PAGE);
        // One more than asked tells whether the page has a neighbour in its direction.
        let (mut events, more) = match page.cursor {
            PageCursor::Newest | PageCursor::Before(_) => {
                let before = match page.cursor {
                    PageCursor::Before(seq) => seq,
                    _ => i64::MAX,
                };
                let mut events = self.log.search_before(filter, before, limit + 1).await?;
                let more = events.len() as u64 > limit;
                events.truncate(limit as usize);
                (events, more)
            }
            PageCursor::After(after) => {
                let mut events = self.log.search_after(filter, after, limit + 1).await?;
                let more = events.len() as u64 > limit;
                events.truncate(limit as usize);
                events.reverse();
                (events, more)
            }
        };
        let (older, newer) = match (events.first(), events.last()) {
            (Some(newest), Some(oldest)) => {
                let (newest, oldest) = (newest.seq, oldest.seq);
                let older_exists = match page.cursor {
                    PageCursor::After(_) => self.exists_before(filter, oldest).await?,
                    _ => more,
                };
                let newer_exists = match page.cursor {
                    PageCursor::After(_) => more,
                    _ => self.exists_after(filter, newest).await?,
                };
                (
                    older_exists.then_some(oldest),
                    newer_exists.then_some(newest),
                )
            }
            _ => (None, None),
        };
        let events = std::mem::take(&mut events);
        Ok(AuditSearchPage {
            events: self.with_emails(events).await?,
            older,
            newer,
        })
    }

    async fn exists_before(&self, filter: &AuditFilter, seq: i64) -> Result<bool, StoreError> {
        Ok(!self.log.search_before(filter, seq, 1).await?.is_empty())
    }

    async fn exists_after(&self, filter: &AuditFilter, seq: i64) -> Result<bool, StoreError> {
        Ok(!self.log.search_after(filter, seq, 1).await?.is_empty())
    }

    /// One event and its neighbours' hashes, so a reader can follow the chain both ways.
    pub async fn event_detail(
        &self,
        _reviewer: &Reviewer,
        seq: i64,
    ) -> Result<Option<EventDetail>, StoreError> {
        let Some(event) = self.log.event(seq).await? else {
            return Ok(None);
        };
        let previous = match seq.checked_sub(1) {
            Some(prev) if prev > 0 => self.log.event(prev).await?,
            _ => None,
        };
        let next = match seq.checked_add(1) {
            Some(next) => self.log.event(next).await?,
            None => None,
        };
        let event = self
            .with_emails(vec![event])
            .await?
            .pop()
            .ok_or(StoreError::NotFound)?;
        Ok(Some(EventDetail {
            event,
            previous: previous.as_ref().map(ChainLink::from),
            next: next.as_ref().map(ChainLink::from),
        }))
    }

    /// Starts a report: pins the chain head (later events are not in it) and names the
    /// reviewer. Rows are fetched lazily by [`ReportRun::next_rows`].
    pub async fn begin_report(
        &self,
        reviewer: &Reviewer,
        filter: AuditFilter,
        format: ReportFormat,
        meta: RequestMeta,
    ) -> Result<ReportRun, StoreError> {
        let head = self.log.head().await?;
        let mut filter = filter.normalised();
        filter.up_to_seq = Some(filter.up_to_seq.map_or(head.seq, |s| s.min(head.seq)));
        let id = reviewer.id();
        let generated_by_email = self.accounts.emails(&[id]).await?.remove(&id);
        // Recorded before the first row goes out, not only when the last has: a download cut
        // off once the rows someone wanted had arrived would otherwise leave no trace. No
        // record, no report.
        self.log
            .record(
                AuditDraft::new(
                    Actor::user(id),
                    AuditAction::ReportStarted,
                    Outcome::Success,
                    meta,
                )
                .resource("audit-report")
                .detail("filter", json!(filter))
                .detail("format", format.as_str())
                .detail("head_seq", head.seq),
            )
            .await?;
        Ok(ReportRun {
            service: self.clone(),
            filter,
            format,
            head,
            generated_by: id,
            generated_by_email,
            generated_at: canonical_time(self.clock.now()),
            writer: ReportWriter::new(),
            written: RowSet::default(),
            after: 0,
            header_sent: false,
            exhausted: false,
        })
    }
}

/// A set of chain events in seq order, kept as a running SHA-256 of their (seq, hash) and a
/// count: constant memory however long the report.
#[derive(Clone, Default)]
struct RowSet {
    digest: Sha256,
    count: u64,
}

impl RowSet {
    fn add(&mut self, event: &AuditEvent) {
        self.digest.update(event.seq.to_be_bytes());
        self.digest.update(event.hash.0);
        self.count += 1;
    }
}

impl PartialEq for RowSet {
    fn eq(&self, other: &Self) -> bool {
        self.count == other.count
            && self.digest.clone().finalize() == other.digest.clone().finalize()
    }
}

/// Builds PDF reports in the background; the server runs them on its runtime.
pub trait ReportJobRunner: Send + Sync + fmt::Debug {
    /// Starts building a PDF of the events `filter` selects, as `reviewer`: one job per
    /// reviewer at a time, and a few in all (each holds its rows in memory while it runs).
    fn start_pdf(
        &self,
        reviewer: &Reviewer,
        filter: AuditFilter,
        meta: RequestMeta,
    ) -> Result<JobId, PdfJobRefused>;
    /// The job's progress (rows laid out of the pinned head's seq), if `requester` started it.
    fn pdf_status(&self, requester: UserId, id: JobId) -> Option<JobStatus<PdfOutcome>>;
    /// The finished PDF, if `requester` started the job and it succeeded.
    fn pdf_file(&self, requester: UserId, id: JobId) -> Option<PdfFile>;
}

/// Why a PDF job was not started; worded for the reviewer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PdfJobRefused {
    #[error(
        "Your previous PDF report is still being built. Wait for it to finish, then start another."
    )]
    YoursRunning,
    #[error("The server is building too many PDF reports right now. Try again in a minute.")]
    Busy,
}

/// How a PDF job ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PdfOutcome {
    Ready {
        rows: u64,
        bytes: u64,
    },
    /// Worded for the requester (e.g. too many rows); storage failures are logged, not shown.
    Failed(String),
}

/// A finished PDF and the name to save it under.
#[derive(Debug, Clone)]
pub struct PdfFile {
    pub file_name: String,
    pub bytes: Arc<Vec<u8>>,
}
