//! argon2id password hashing on a small pool of dedicated threads.
//!
//! Each hash needs `memory_kib` of working memory (19 MiB by default). Run on tokio's blocking
//! pool, a burst of logins spread those blocks over many threads, and glibc kept each freed
//! block in its thread's arena: 64 concurrent logins left the server at ~730 MB resident for
//! good. Here a fixed number of threads each reuse one block buffer, so hashing memory is
//! bounded by `workers × memory_kib` however many requests arrive; the rest wait in the queue.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use argon2::password_hash::{Output, ParamsString, PasswordHash as PhcString, Salt, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use async_trait::async_trait;
use domain::account::{Password, PasswordHash};
use domain::ports::{PasswordHasher, StoreError};
use rand::RngCore;
use tokio::sync::{mpsc, oneshot};

use crate::config::PasswordHashingSettings;

/// Hashing threads: one per core, at most this many (hashing is CPU-bound, and each thread
/// keeps one buffer of `memory_kib`).
const MAX_WORKERS: usize = 4;

/// Requests waiting beyond this many make their callers wait to enqueue (async, not blocking).
const QUEUE_CAPACITY: usize = 256;

enum Job {
    Hash {
        password: Password,
        reply: oneshot::Sender<Result<PasswordHash, StoreError>>,
    },
    Verify {
        password: Password,
        hash: PasswordHash,
        reply: oneshot::Sender<bool>,
    },
}

/// Why the hashing pool could not start.
#[derive(Debug, thiserror::Error)]
pub enum HashingSetupError {
    #[error("argon2 parameters: {0}")]
    Params(#[from] argon2::Error),
    #[error("cannot start a hashing thread: {0}")]
    Thread(#[from] std::io::Error),
}

#[derive(Debug, Clone)]
pub struct Argon2Hasher {
    jobs: mpsc::Sender<Job>,
    busy: Arc<Busy>,
    workers: usize,
}

/// How many workers are hashing now, and the most seen at once.
#[derive(Debug, Default)]
struct Busy {
    now: AtomicUsize,
    peak: AtomicUsize,
}

impl Busy {
    fn start(&self) {
        let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
    }

    fn end(&self) {
        self.now.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Argon2Hasher {
    /// A pool of one thread per core (at most [`MAX_WORKERS`]).
    pub fn new(settings: &PasswordHashingSettings) -> Result<Self, HashingSetupError> {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        Self::with_workers(settings, cores.clamp(1, MAX_WORKERS))
    }

    /// A pool of `workers` threads (at least one). They end when the last handle is dropped.
    pub fn with_workers(
        settings: &PasswordHashingSettings,
        workers: usize,
    ) -> Result<Self, HashingSetupError> {
        let params = Params::new(
            settings.memory_kib,
            settings.iterations,
            settings.parallelism,
            None,
        )?;
        let workers = workers.max(1);
        let (jobs, queue) = mpsc::channel(QUEUE_CAPACITY);
        let queue = Arc::new(Mutex::new(queue));
        let busy = Arc::new(Busy::default());
        for n in 0..workers {
            let worker = Worker {
                queue: queue.clone(),
                busy: busy.clone(),
                params: params.clone(),
                blocks: Vec::new(),
            };
            std::thread::Builder::new()
                .name(format!("argon2-{n}"))
                .spawn(move || worker.run())?;
        }
        Ok(Self {
            jobs,
            busy,
            workers,
        })
    }

    /// The most hashes that ran at the same time so far (never more than the workers).
    pub fn peak_concurrency(&self) -> usize {
        self.busy.peak.load(Ordering::SeqCst)
    }

    pub fn workers(&self) -> usize {
        self.workers
    }

    /// A hash of a random password, used so unknown accounts cost a real verification.
    pub async fn dummy_hash(&self) -> Result<PasswordHash, StoreError> {
        let mut random = [0u8; 24];
        rand::rngs::OsRng.fill_bytes(&mut random);
        let password = Password::for_login(hex::encode(random))
            .map_err(|e| StoreError::Backend(e.to_string()))?;
        self.hash(password).await
    }

    async fn submit<T>(&self, job: Job, answer: oneshot::Receiver<T>) -> Option<T> {
        self.jobs.send(job).await.ok()?;
        answer.await.ok()
    }
}

#[async_trait]
impl PasswordHasher for Argon2Hasher {
    async fn hash(&self, password: Password) -> Result<PasswordHash, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.submit(Job::Hash { password, reply }, answer)
            .await
            .unwrap_or_else(|| Err(StoreError::Backend("hashing pool stopped".into())))
    }

    async fn verify(&self, password: Password, hash: PasswordHash) -> bool {
        let (reply, answer) = oneshot::channel();
        self.submit(
            Job::Verify {
                password,
                hash,
                reply,
            },
            answer,
        )
        .await
        .unwrap_or(false)
    }
}

/// One hashing thread and the argon2 block buffer it reuses.
struct Worker {
    queue: Arc<Mutex<mpsc::Receiver<Job>>>,
    busy: Arc<Busy>,
    /// Parameters for new hashes; verification takes them from the stored hash.
    params: Params,
    blocks: Vec<Block>,
}

impl Worker {
    fn run(mut self) {
        // The lock is held only while waiting: the next job goes to one idle worker.
        while let Some(job) = self.next_job() {
            self.busy.start();
            match job {
                Job::Hash { password, reply } => {
                    let _ = reply.send(self.hash(&password));
                }
                Job::Verify {
                    password,
                    hash,
                    reply,
                } => {
                    let _ = reply.send(self.verify(&password, &hash));
                }
            }
            self.busy.end();
        }
    }

    fn next_job(&self) -> Option<Job> {
        let mut queue = self.queue.lock().ok()?;
        queue.blocking_recv()
    }

    /// A new argon2id PHC string for `password` under a fresh random salt.
    fn hash(&mut self, password: &Password) -> Result<PasswordHash, StoreError> {
        let backend =
            |what: &str, e: &dyn std::fmt::Display| StoreError::Backend(format!("{what}: {e}"));
        let mut salt = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut salt);
        let salt = SaltString::encode_b64(&salt).map_err(|e| backend("salt", &e))?;
        let params = self.params.clone();
        let output = self
            .compute(
                Algorithm::Argon2id,
                Version::V0x13,
                params.clone(),
                password,
                salt.as_salt(),
                params.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN),
            )
            .map_err(|e| backend("argon2", &e))?;
        let phc = PhcString {
            algorithm: Algorithm::Argon2id.ident(),
            version: Some(Version::V0x13.into()),
            params: ParamsString::try_from(&params).map_err(|e| backend("argon2", &e))?,
            salt: Some(salt.as_salt()),
            hash: Some(output),
        };
        Ok(PasswordHash(phc.to_string()))
    }

    /// Whether `password` matches the PHC string `hash`. Algorithm, version and parameters come
    /// from the string, so hashes made under older settings keep verifying; the comparison is
    /// `Output`'s constant-time equality.
    fn verify(&mut self, password: &Password, hash: &PasswordHash) -> bool {
        let Ok(phc) = PhcString::new(&hash.0) else {
            return false;
        };
        let (Some(salt), Some(expected)) = (phc.salt, phc.hash) else {
            return false;
        };
        let Ok(algorithm) = Algorithm::try_from(phc.algorithm) else {
            return false;
        };
        let Ok(version) = phc
            .version
            .map_or(Ok(Version::default()), Version::try_from)
        else {
            return false;
        };
        let Ok(params) = Params::try_from(&phc) else {
            return false;
        };
        self.compute(algorithm, version, params, password, salt, expected.len())
            .is_ok_and(|computed| computed == expected)
    }

    /// argon2 of `password` into an output of `len` bytes, in this worker's reused buffer
    /// (grown when a stored hash asks for more memory than any before it).
    fn compute(
        &mut self,
        algorithm: Algorithm,
        version: Version,
        params: Params,
        password: &Password,
        salt: Salt<'_>,
        len: usize,
    ) -> Result<Output, argon2::password_hash::Error> {
        let needed = params.block_count();
        if self.blocks.len() < needed {
            self.blocks.resize(needed, Block::default());
        }
        let mut salt_bytes = [0u8; Salt::MAX_LENGTH];
        let salt_bytes = salt.decode_b64(&mut salt_bytes)?;
        let argon2 = Argon2::new(algorithm, version, params);
        Output::init_with(len, |out| {
            argon2
                .hash_password_into_with_memory(
                    password.expose().as_bytes(),
                    salt_bytes,
                    out,
                    &mut self.blocks[..needed],
                )
                .map_err(Into::into)
        })
    }
}

#[cfg(test)]
mod tests {
    use argon2::password_hash::PasswordHasher as _;

    use super::*;

    fn settings() -> PasswordHashingSettings {
        PasswordHashingSettings {
            memory_kib: 1024,
            iterations: 1,
            parallelism: 1,
        }
    }

    fn fast() -> Argon2Hasher {
        Argon2Hasher::with_workers(&settings(), 2).expect("params")
    }

    fn password(text: &str) -> Password {
        Password::parse(text.into()).expect("valid")
    }

    #[tokio::test]
    async fn a_hash_verifies_its_password_only() {
        let hasher = fast();
        let hash = hasher
            .hash(password("correct horse battery"))
            .await
            .expect("hash");
        assert!(hash.0.starts_with("$argon2id$v=19$m=1024,t=1,p=1$"));
        assert!(
            hasher
                .verify(password("correct horse battery"), hash.clone())
                .await
        );
        assert!(
            !hasher
                .verify(password("correct horse battery!"), hash)
                .await
        );
    }

    #[tokio::test]
    async fn a_malformed_hash_never_matches() {
        let hasher = fast();
        for bad in [
            "not a hash",
            "$argon2id$v=19$m=1024,t=1,p=1$c2FsdHNhbHQ",
            "",
        ] {
            assert!(
                !hasher
                    .verify(password("correct horse battery"), PasswordHash(bad.into()))
                    .await,
                "{bad}"
            );
        }
    }

    #[tokio::test]
    async fn hashes_made_by_the_argon2_crate_under_other_settings_verify() {
        let hasher = fast();
        let salt = SaltString::encode_b64(b"sixteen byte slt").expect("salt");
        for (algorithm, memory_kib) in [
            (Algorithm::Argon2id, 4096),
            (Algorithm::Argon2i, 2048),
            (Algorithm::Argon2id, 512),
        ] {
            let params = Params::new(memory_kib, 2, 1, Some(32)).expect("params");
            let older = Argon2::new(algorithm, Version::V0x13, params)
                .hash_password(b"correct horse battery", &salt)
                .expect("hash")
                .to_string();
            let older = PasswordHash(older);
            assert!(
                hasher
                    .verify(password("correct horse battery"), older.clone())
                    .await
            );
            assert!(
                !hasher
                    .verify(password("correct horse batterY"), older)
                    .await
            );
        }
    }

    #[tokio::test]
    async fn our_hashes_verify_with_the_argon2_crate() {
        use argon2::password_hash::PasswordVerifier as _;
        let hash = fast()
            .hash(password("correct horse battery"))
            .await
            .expect("hash");
        let phc = PhcString::new(&hash.0).expect("phc");
        assert!(
            Argon2::default()
                .verify_password(b"correct horse battery", &phc)
                .is_ok()
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_burst_runs_at_most_workers_hashes_at_once_and_each_answer_is_right() {
        let hasher = Argon2Hasher::with_workers(&settings(), 2).expect("params");
        let tasks: Vec<_> = (0..24)
            .map(|i| {
                let hasher = hasher.clone();
                tokio::spawn(async move {
                    let text = format!("password number {i}");
                    let hash = hasher.hash(password(&text)).await.expect("hash");
                    let right = hasher.verify(password(&text), hash.clone()).await;
                    let wrong = hasher
                        .verify(
                            password(&format!("password number {}", i + 1)),
                            hash.clone(),
                        )
                        .await;
                    (hash, right, wrong)
                })
            })
            .collect();
        let mut hashes = std::collections::HashSet::new();
        for task in tasks {
            let (hash, right, wrong) = task.await.expect("task");
            assert!(right && !wrong);
            hashes.insert(hash.0);
        }
        assert_eq!(hashes.len(), 24, "every hash has its own salt");
        let peak = hasher.peak_concurrency();
        assert!(
            (1..=hasher.workers()).contains(&peak),
            "{peak} hashes ran at once with {} workers",
            hasher.workers()
        );
    }

    #[tokio::test]
    async fn the_workers_end_when_the_last_handle_is_dropped() {
        let hasher = fast();
        let busy = Arc::downgrade(&hasher.busy);
        drop(hasher);
        // Each worker holds a reference to the counters until its thread ends.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while busy.strong_count() > 0 && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(busy.strong_count(), 0);
    }
}
