//! PDF audit reports, each built on its own task while the page polls its progress. Finished
//! PDFs are kept in memory for their requester only, and only the newest few.
//!
//! The download is audited when the PDF is built (`report.download`, format `pdf`): that is when
//! the manifest is signed, and fetching the finished file again hands out the same bytes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use domain::audit::jobs::{JobId, JobStatus};
use domain::audit::reports::{PdfFile, PdfOutcome, ReportError, ReportFormat, ReportJobRunner};
use domain::audit::service::AuditService;
use domain::audit::{AuditFilter, RequestMeta, canonical_time};
use domain::authz::Reviewer;
use domain::clock::Clock;
use domain::ids::UserId;

use crate::reports::pdf::{self, MAX_PDF_ROWS, PdfError};
use crate::reports::report_file_name;

/// More jobs than this and finished ones are dropped at the next start (PDFs can be large).
const KEPT_JOBS: usize = 20;

#[derive(Debug)]
struct Entry {
    requester: UserId,
    status: JobStatus<PdfOutcome>,
    file: Option<PdfFile>,
}

/// The server's [`ReportJobRunner`]: a Tokio task per PDF.
#[derive(Debug, Clone)]
pub struct TokioReportJobs {
    audit: AuditService,
    clock: Arc<dyn Clock>,
    jobs: Arc<Mutex<HashMap<JobId, Entry>>>,
}

impl TokioReportJobs {
    pub fn new(audit: AuditService, clock: Arc<dyn Clock>) -> Self {
        Self {
            audit,
            clock,
            jobs: Arc::default(),
        }
    }

    /// A panic elsewhere while holding the lock leaves plain progress numbers behind.
    fn jobs(&self) -> MutexGuard<'_, HashMap<JobId, Entry>> {
        self.jobs.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn progress(&self, id: JobId, done: u64, total: u64) {
        if let Some(entry) = self.jobs().get_mut(&id) {
            entry.status.done = done;
            entry.status.total = total;
        }
    }

    fn finish(&self, id: JobId, outcome: PdfOutcome, file: Option<PdfFile>) {
        if let Some(entry) = self.jobs().get_mut(&id) {
            entry.status.finished = true;
            entry.status.result = Some(outcome);
            entry.file = file;
        }
    }

    /// Fetches the rows (flat pages), signs the CSV report, then lays out the PDF.
    async fn build(
        &self,
        id: JobId,
        reviewer: Reviewer,
        filter: AuditFilter,
        meta: RequestMeta,
    ) -> Result<PdfFile, String> {
        let storage = |e: domain::ports::StoreError| {
            tracing::error!(error = %e, job = %id, "PDF report: storage failed");
            "The audit log could not be read. Try again later.".to_owned()
        };
        let mut run = self
            .audit
            .begin_report(&reviewer, filter.clone(), ReportFormat::Pdf, meta.clone())
            .await
            .map_err(storage)?;
        let head = run.head().seq.max(0) as u64;
        let mut csv = Vec::new();
        while let Some(bytes) = run.next_rows().await.map_err(storage)? {
            csv.extend_from_slice(&bytes);
            let rows = run.rows_written();
            if rows > MAX_PDF_ROWS {
                // Stopped before signing: recorded as started, never as downloaded.
                return Err(PdfError::TooManyRows {
                    rows,
                    max: MAX_PDF_ROWS,
                }
                .to_string());
            }
            self.progress(id, 0, head);
        }
        let (manifest, trailer) = run.finish(meta).await.map_err(|e| match e {
            ReportError::Store(e) => storage(e),
            // Worded for the reviewer: where the chain breaks and what to do.
            broken @ (ReportError::ChainBroken(_) | ReportError::RowsChanged) => broken.to_string(),
        })?;
        csv.extend_from_slice(&trailer);
        let total = manifest.row_count;
        self.progress(id, 0, total);
        let runner = self.clone();
        // Laying out thousands of pages is CPU work: off the async workers.
        let pdf = tokio::task::spawn_blocking(move || {
            pdf::build_pdf(&csv, &manifest, |done| runner.progress(id, done, total))
        })
        .await
        .map_err(|e| {
            tracing::error!(error = %e, job = %id, "PDF report: layout task failed");
            "The PDF could not be built.".to_owned()
        })?
        .map_err(|e| match e {
            PdfError::TooManyRows { .. } => e.to_string(),
            other => {
                tracing::error!(error = %other, job = %id, "PDF report: layout failed");
                "The PDF could not be built.".to_owned()
            }
        })?;
        Ok(PdfFile {
            file_name: report_file_name(&filter, self.clock.now(), "pdf"),
            bytes: Arc::new(pdf),
        })
    }
}

impl ReportJobRunner for TokioReportJobs {
    fn start_pdf(&self, reviewer: &Reviewer, filter: AuditFilter, meta: RequestMeta) -> JobId {
        let id = JobId::new();
        {
            let mut jobs = self.jobs();
            if jobs.len() >= KEPT_JOBS {
                jobs.retain(|_, entry| !entry.status.finished);
            }
            jobs.insert(
                id,
                Entry {
                    requester: reviewer.id(),
                    status: JobStatus::default(),
                    file: None,
                },
            );
        }
        let runner = self.clone();
        let reviewer = *reviewer;
        tracing::info!(job = %id, at = %canonical_time(self.clock.now()), "PDF report started");
        tokio::spawn(async move {
            match runner.build(id, reviewer, filter, meta).await {
                Ok(file) => {
                    let outcome = PdfOutcome::Ready {
                        rows: runner.jobs().get(&id).map_or(0, |entry| entry.status.total),
                        bytes: file.bytes.len() as u64,
                    };
                    runner.finish(id, outcome, Some(file));
                }
                Err(why) => runner.finish(id, PdfOutcome::Failed(why), None),
            }
        });
        id
    }

    fn pdf_status(&self, requester: UserId, id: JobId) -> Option<JobStatus<PdfOutcome>> {
        self.jobs()
            .get(&id)
            .filter(|entry| entry.requester == requester)
            .map(|entry| entry.status.clone())
    }

    fn pdf_file(&self, requester: UserId, id: JobId) -> Option<PdfFile> {
        self.jobs()
            .get(&id)
            .filter(|entry| entry.requester == requester)
            .and_then(|entry| entry.file.clone())
    }
}
