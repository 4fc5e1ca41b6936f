//! Chain verifications, each run on its own task while the page polls its progress. Jobs are
//! kept in memory only while someone may still be polling them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use domain::audit::RequestMeta;
use domain::audit::jobs::{AuditJobRunner, JobId, JobStatus, VerifyResult};
use domain::audit::service::AuditService;
use domain::authz::Reviewer;
use domain::ids::UserId;

/// More jobs than this and finished ones are dropped at the next start.
const KEPT_JOBS: usize = 1000;

#[derive(Debug, Clone)]
struct Entry {
    /// Who started it, and whoever asked for a verification while it ran: each may poll it.
    requesters: Vec<UserId>,
    status: JobStatus<VerifyResult>,
}

/// The verification running now, if any, with `reviewer` added to those who may poll it. One
/// scan of the whole chain at a time: whoever asks while one runs watches that one (its answer
/// is theirs too), so reviewers cannot pile scans onto the server.
fn join_running(jobs: &mut HashMap<JobId, Entry>, reviewer: UserId) -> Option<JobId> {
    let (running, entry) = jobs.iter_mut().find(|(_, entry)| !entry.status.finished)?;
    if !entry.requesters.contains(&reviewer) {
        entry.requesters.push(reviewer);
    }
    Some(*running)
}

/// Marks its job failed if the job's task ends without finishing it (a panic): everyone asking
/// for a verification joins the running one, so one left running would answer nobody again.
struct FailUnlessFinished {
    runner: TokioAuditJobs,
    id: JobId,
}

impl Drop for FailUnlessFinished {
    fn drop(&mut self) {
        self.runner.update(self.id, |status| {
            if !status.finished {
                status.finished = true;
                status.result = Some(VerifyResult::Failed);
            }
        });
    }
}

/// The server's [`AuditJobRunner`]: a Tokio task per verification.
#[derive(Debug, Clone)]
pub struct TokioAuditJobs {
    audit: AuditService,
    jobs: Arc<Mutex<HashMap<JobId, Entry>>>,
}

impl TokioAuditJobs {
    pub fn new(audit: AuditService) -> Self {
        Self {
            audit,
            jobs: Arc::default(),
        }
    }

    /// A panic elsewhere while holding the lock leaves plain progress numbers behind: still
    /// good to read and overwrite.
    fn jobs(&self) -> MutexGuard<'_, HashMap<JobId, Entry>> {
        self.jobs.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn update(&self, id: JobId, change: impl FnOnce(&mut JobStatus<VerifyResult>)) {
        if let Some(entry) = self.jobs().get_mut(&id) {
            change(&mut entry.status);
        }
    }
}

impl AuditJobRunner for TokioAuditJobs {
    fn start_verify(&self, reviewer: &Reviewer, meta: RequestMeta) -> JobId {
        let id = JobId::new();
        {
            let mut jobs = self.jobs();
            if let Some(running) = join_running(&mut jobs, reviewer.id()) {
                return running;
            }
            if jobs.len() > KEPT_JOBS {
                jobs.retain(|_, entry| !entry.status.finished);
            }
            jobs.insert(
                id,
                Entry {
                    requesters: vec![reviewer.id()],
                    status: JobStatus::default(),
                },
            );
        }
        let reviewer = *reviewer;
        let runner = self.clone();
        tokio::spawn(async move {
            let _ends = FailUnlessFinished {
                runner: runner.clone(),
                id,
            };
            // The head's seq is the number of events to check, for the progress bar.
            match runner.audit.chain_head().await {
                Ok(head) => runner.update(id, |status| {
                    status.total = u64::try_from(head.seq).unwrap_or(0)
                }),
                Err(e) => tracing::warn!(error = %e, "could not read the chain head"),
            }
            let progress_runner = runner.clone();
            let outcome = runner
                .audit
                .verify(&reviewer, meta, move |checked| {
                    progress_runner.update(id, |status| status.advance_to(checked))
                })
                .await;
            let result = match outcome {
                Ok(checked) => VerifyResult::Checked(checked),
                Err(e) => {
                    tracing::error!(error = %e, "chain verification job failed");
                    VerifyResult::Failed
                }
            };
            runner.update(id, |status| {
                if let VerifyResult::Checked(Ok(verified)) = &result {
                    status.advance_to(verified.checked);
                }
                status.finished = true;
                status.result = Some(result);
            });
        });
        id
    }

    fn status(&self, requester: UserId, id: JobId) -> Option<JobStatus<VerifyResult>> {
        self.jobs()
            .get(&id)
            .filter(|entry| entry.requesters.contains(&requester))
            .map(|entry| entry.status.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_verification_asked_for_while_one_runs_is_that_one() {
        let (first, second) = (UserId(uuid::Uuid::new_v4()), UserId(uuid::Uuid::new_v4()));
        let mut jobs = HashMap::new();
        assert_eq!(join_running(&mut jobs, first), None);
        let finished = JobId::new();
        jobs.insert(
            finished,
            Entry {
                requesters: vec![first],
                status: JobStatus {
                    finished: true,
                    ..JobStatus::default()
                },
            },
        );
        assert_eq!(join_running(&mut jobs, second), None);
        let running = JobId::new();
        jobs.insert(
            running,
            Entry {
                requesters: vec![first],
                status: JobStatus::default(),
            },
        );
        assert_eq!(join_running(&mut jobs, second), Some(running));
        assert_eq!(join_running(&mut jobs, second), Some(running));
        assert_eq!(jobs[&running].requesters, vec![first, second]);
        assert_eq!(jobs[&finished].requesters, vec![first]);
    }
}
