//! PDF audit reports, each built on its own task while the page polls its progress. Finished
//! PDFs are kept in memory for their requester only, and only the newest few of each. A
//! reviewer builds one at a time, and the server a few at once: a running job holds its rows
//! in memory, so a reviewer's session cannot start enough of them to exhaust it.
//!
//! The download is audited when the PDF is built (`report.download`, format `pdf`): that is when
//! the manifest is signed, and fetching the finished file again hands out the same bytes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use domain::audit::jobs::{JobId, JobStatus};
use domain::audit::reports::{
    PdfFile, PdfJobRefused, PdfOutcome, ReportError, ReportFormat, ReportJobRunner,
};
use domain::audit::service::AuditService;
use domain::audit::{AuditFilter, RequestMeta, canonical_time};
use domain::authz::Reviewer;
use domain::clock::Clock;
use domain::ids::UserId;

use crate::reports::pdf::{self, MAX_PDF_ROWS, PdfError};
use crate::reports::report_file_name;

/// Finished PDFs kept per requester, and in all (PDFs can be large); the oldest go first, so
/// one reviewer's reports never push out another's newer ones below the per-requester count.
const KEPT_PER_REQUESTER: usize = 3;
const KEPT_IN_ALL: usize = 30;
/// Jobs building at once, all reviewers together.
const MAX_RUNNING: usize = 4;

#[derive(Debug)]
struct Entry {
    requester: UserId,
    /// Start order, to drop the oldest finished jobs first.
    started: u64,
    status: JobStatus<PdfOutcome>,
    file: Option<PdfFile>,
}

/// Whether `requester` may start a job now.
fn admit(jobs: &HashMap<JobId, Entry>, requester: UserId) -> Result<(), PdfJobRefused> {
    let running = || jobs.values().filter(|entry| !entry.status.finished);
    if running().any(|entry| entry.requester == requester) {
        return Err(PdfJobRefused::YoursRunning);
    }
    if running().count() >= MAX_RUNNING {
        return Err(PdfJobRefused::Busy);
    }
    Ok(())
}

/// Marks its job failed if the job's task ends without finishing it (a panic): a job left
/// running forever would keep its requester from starting another.
struct FailUnlessFinished {
    runner: TokioReportJobs,
    id: JobId,
}

impl Drop for FailUnlessFinished {
    fn drop(&mut self) {
        if let Some(entry) = self.runner.jobs().get_mut(&self.id)
            && !entry.status.finished
        {
            entry.status.finished = true;
            entry.status.result = Some(PdfOutcome::Failed("The PDF could not be built.".into()));
        }
    }
}

/// Drops finished jobs, oldest first, so that `requester` keeps at most
/// `KEPT_PER_REQUESTER - 1` (room for the one starting) and everyone at most `KEPT_IN_ALL - 1`.
fn make_room(jobs: &mut HashMap<JobId, Entry>, requester: UserId) {
    let mut finished: Vec<(u64, JobId, UserId)> = jobs
        .iter()
        .filter(|(_, entry)| entry.status.finished)
        .map(|(id, entry)| (entry.started, *id, entry.requester))
        .collect();
    finished.sort_unstable_by_key(|(started, _, _)| std::cmp::Reverse(*started));
    let (mut theirs, mut kept) = (0, 0);
    for (_, id, owner) in finished {
        let over_theirs = owner == requester && {
            theirs += 1;
            theirs >= KEPT_PER_REQUESTER
        };
        if over_theirs || kept + 1 >= KEPT_IN_ALL {
            jobs.remove(&id);
        } else {
            kept += 1;
        }
    }
}

/// The server's [`ReportJobRunner`]: a Tokio task per PDF.
#[derive(Debug, Clone)]
pub struct TokioReportJobs {
    audit: AuditService,
    clock: Arc<dyn Clock>,
    jobs: Arc<Mutex<HashMap<JobId, Entry>>>,
    started: Arc<std::sync::atomic::AtomicU64>,
}

impl TokioReportJobs {
    pub fn new(audit: AuditService, clock: Arc<dyn Clock>) -> Self {
        Self {
            audit,
            clock,
            jobs: Arc::default(),
            started: Arc::default(),
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
    fn start_pdf(
        &self,
        reviewer: &Reviewer,
        filter: AuditFilter,
        meta: RequestMeta,
    ) -> Result<JobId, PdfJobRefused> {
        let id = JobId::new();
        {
            let mut jobs = self.jobs();
            admit(&jobs, reviewer.id())?;
            make_room(&mut jobs, reviewer.id());
            let started = self
                .started
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            jobs.insert(
                id,
                Entry {
                    requester: reviewer.id(),
                    started,
                    status: JobStatus::default(),
                    file: None,
                },
            );
        }
        let runner = self.clone();
        let reviewer = *reviewer;
        tracing::info!(job = %id, at = %canonical_time(self.clock.now()), "PDF report started");
        tokio::spawn(async move {
            let _guard = FailUnlessFinished {
                runner: runner.clone(),
                id,
            };
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
        Ok(id)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(requester: UserId, started: u64, finished: bool) -> Entry {
        Entry {
            requester,
            started,
            status: JobStatus {
                finished,
                ..JobStatus::default()
            },
            file: None,
        }
    }

    #[test]
    fn a_reviewer_builds_one_pdf_at_a_time_and_the_server_a_few() {
        let (ann, bob) = (UserId::new_random(), UserId::new_random());
        let mut jobs = HashMap::new();
        jobs.insert(JobId::new(), entry(ann, 0, false));
        jobs.insert(JobId::new(), entry(bob, 1, true));
        assert_eq!(admit(&jobs, ann), Err(PdfJobRefused::YoursRunning));
        assert_eq!(admit(&jobs, bob), Ok(()));
        for n in 0..MAX_RUNNING - 1 {
            jobs.insert(
                JobId::new(),
                entry(UserId::new_random(), 2 + n as u64, false),
            );
        }
        assert_eq!(admit(&jobs, bob), Err(PdfJobRefused::Busy));
    }

    #[test]
    fn finished_pdfs_are_dropped_oldest_first_and_never_another_reviewers_below_their_share() {
        let (ann, bob) = (UserId::new_random(), UserId::new_random());
        let mut jobs = HashMap::new();
        let bobs = JobId::new();
        jobs.insert(bobs, entry(bob, 0, true));
        let mut anns = Vec::new();
        for started in 1..=10 {
            let id = JobId::new();
            jobs.insert(id, entry(ann, started, true));
            anns.push(id);
        }
        make_room(&mut jobs, ann);
        // Ann keeps her newest two (room for the one starting); Bob's older one stays.
        let kept: Vec<&JobId> = anns.iter().filter(|id| jobs.contains_key(id)).collect();
        assert_eq!(kept, vec![&anns[8], &anns[9]]);
        assert!(jobs.contains_key(&bobs));

        // Past the overall bound the oldest go, whoever started them.
        let mut crowded = HashMap::new();
        for started in 0..KEPT_IN_ALL as u64 + 5 {
            crowded.insert(JobId::new(), entry(UserId::new_random(), started, true));
        }
        make_room(&mut crowded, ann);
        assert_eq!(crowded.len(), KEPT_IN_ALL - 1);
        let oldest_kept = crowded.values().map(|e| e.started).min();
        assert_eq!(oldest_kept, Some(6));
    }
}
