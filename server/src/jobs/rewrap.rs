//! Re-wrap runs: each runs on its own task while the page polls its progress. Runs are kept in
//! memory only while someone may still be polling them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use domain::audit::RequestMeta;
use domain::ids::UserId;
use domain::keys::{KeyVaultService, RewrapRun, RewrapRunId, RewrapRunner, RewrapScope};

/// More finished runs than this and they are dropped at the next start.
const KEPT_RUNS: usize = 1000;

#[derive(Debug, Clone, Copy)]
struct Entry {
    started_by: UserId,
    run: RewrapRun,
}

/// The server's [`RewrapRunner`]: a Tokio task per run.
#[derive(Debug, Clone)]
pub struct TokioRewrapRunner {
    vault: KeyVaultService,
    runs: Arc<Mutex<HashMap<RewrapRunId, Entry>>>,
}

impl TokioRewrapRunner {
    pub fn new(vault: KeyVaultService) -> Self {
        Self {
            vault,
            runs: Arc::default(),
        }
    }

    /// A panic elsewhere while holding the lock leaves plain progress numbers behind: still
    /// good to read and overwrite.
    fn runs(&self) -> MutexGuard<'_, HashMap<RewrapRunId, Entry>> {
        self.runs.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn update(&self, id: RewrapRunId, run: RewrapRun) {
        if let Some(entry) = self.runs().get_mut(&id) {
            entry.run = run;
        }
    }
}

impl RewrapRunner for TokioRewrapRunner {
    fn start(&self, scope: RewrapScope, meta: RequestMeta) -> RewrapRunId {
        let id = RewrapRunId(uuid::Uuid::new_v4());
        {
            let mut runs = self.runs();
            if runs.len() > KEPT_RUNS {
                runs.retain(|_, entry| !entry.run.finished);
            }
            runs.insert(
                id,
                Entry {
                    started_by: scope.requester(),
                    run: RewrapRun::default(),
                },
            );
        }
        let runner = self.clone();
        tokio::spawn(async move {
            let progress_runner = runner.clone();
            let result = runner
                .vault
                .rewrap_keys(scope, meta, move |progress| {
                    progress_runner.update(
                        id,
                        RewrapRun {
                            progress,
                            finished: false,
                        },
                    )
                })
                .await;
            let progress = match result {
                Ok(done) => done,
                Err(e) => {
                    tracing::error!(error = %e, "re-wrap run failed");
                    // Keys not reached by the failed run count as failed.
                    let mut progress = runner
                        .runs()
                        .get(&id)
                        .map(|entry| entry.run.progress)
                        .unwrap_or_default();
                    progress.failed += progress.total.saturating_sub(progress.done());
                    progress
                }
            };
            runner.update(
                id,
                RewrapRun {
                    progress,
                    finished: true,
                },
            );
        });
        id
    }

    fn status(&self, requester: UserId, run: RewrapRunId) -> Option<RewrapRun> {
        self.runs()
            .get(&run)
            .filter(|entry| entry.started_by == requester)
            .map(|entry| entry.run)
    }
}
