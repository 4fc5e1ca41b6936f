//! `kill -9` of the server at random points while concurrent clients write: every write the
//! server acknowledged is in the database exactly once, the chain has no gap or duplicate seq,
//! and `cryptopulse audit verify` passes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::watch;

use crate::harness::{Db, Server, ServerConfig, acknowledged, client_for, sign_up};

const WRITES: usize = 1000;
const CLIENTS: usize = 8;
const KILLS: usize = 4;

/// An acknowledged sign-up: the email and the request id the server answered with.
#[derive(Debug, Clone)]
struct Ack {
    email: String,
    request_id: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_during_concurrent_audited_writes_loses_nothing_acknowledged() {
    // `FAULTS_SEED=<n>` replays a run's kill points (the timing of requests still varies).
    let seed = std::env::var("FAULTS_SEED")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or_else(|| rand::thread_rng().r#gen());
    println!("kill -9 seed: {seed} (FAULTS_SEED={seed} to replay)");
    let mut rng = StdRng::seed_from_u64(seed);
    let mut kill_after: Vec<usize> = (0..KILLS).map(|_| rng.gen_range(50..WRITES - 50)).collect();
    kill_after.sort_unstable();

    let dir = tempfile::tempdir().expect("temp dir");
    let url = crate::harness::test_database_url(dir.path()).await;
    let config = ServerConfig::new(dir.path(), &url);
    let mut server = Server::start(&config).await;
    let (address_tx, address_rx) = watch::channel(server.address.clone());

    let acks: Arc<Mutex<Vec<Ack>>> = Arc::default();
    let acked = Arc::new(AtomicUsize::new(0));
    let attempts = Arc::new(AtomicUsize::new(0));
    let unexpected: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let (acks, acked, attempts, unexpected) = (
            acks.clone(),
            acked.clone(),
            attempts.clone(),
            unexpected.clone(),
        );
        let mut address = address_rx.clone();
        clients.push(tokio::spawn(async move {
            while acked.load(Ordering::SeqCst) < WRITES {
                let current = address.borrow_and_update().clone();
                let email = format!(
                    "writer{}@faults.example",
                    attempts.fetch_add(1, Ordering::SeqCst)
                );
                // A new client per write: each sign-up is its own session, as a browser's is.
                match sign_up(&client_for(&current), &current, &email).await {
                    Ok(answer) if acknowledged(&answer) => {
                        let request_id = answer.request_id.expect("an x-request-id header");
                        acks.lock().expect("acks").push(Ack { email, request_id });
                        acked.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(answer) => unexpected
                        .lock()
                        .expect("log")
                        .push(format!("{email}: {} {}", answer.status, answer.body)),
                    // The server is down (killed, or not yet up again): wait for its new address.
                    Err(_) => {
                        let _ = tokio::time::timeout(Duration::from_millis(200), address.changed())
                            .await;
                    }
                }
            }
        }));
    }

    let started = Instant::now();
    let mut restarted_at = 0;
    for (i, after) in kill_after.iter().enumerate() {
        // Each restarted server takes some writes before it is killed again.
        let target = (*after).max(restarted_at + 10);
        crate::harness::wait_until("writes before the kill", Duration::from_secs(120), || {
            let acked = acked.clone();
            async move { acked.load(Ordering::SeqCst) >= target }
        })
        .await;
        tokio::time::sleep(Duration::from_millis(rng.gen_range(0..40))).await;
        let at = acked.load(Ordering::SeqCst);
        server.kill9();
        server.assert_log_clean();
        println!("kill {} after {at} acknowledged writes", i + 1);
        server = Server::start(&config).await;
        restarted_at = acked.load(Ordering::SeqCst);
        address_tx.send_replace(server.address.clone());
    }
    for client in clients {
        client.await.expect("client task");
    }
    server.kill9();
    server.assert_log_clean();
    println!(
        "{} acknowledged of {} attempted writes in {:.1} s with {KILLS} kills",
        acked.load(Ordering::SeqCst),
        attempts.load(Ordering::SeqCst),
        started.elapsed().as_secs_f64()
    );
    let unexpected = unexpected.lock().expect("log").clone();
    assert!(unexpected.is_empty(), "unexpected answers: {unexpected:#?}");

    let db = Db::connect(&url).await;
    let events = db.assert_chain_contiguous().await;
    let per_request: HashMap<String, usize> = db
        .strings(
            "SELECT request_id FROM audit_events \
             WHERE action = 'account.create' AND request_id IS NOT NULL",
        )
        .await
        .into_iter()
        .fold(HashMap::new(), |mut counts, id| {
            *counts.entry(id).or_default() += 1;
            counts
        });
    let emails: std::collections::HashSet<String> = db
        .strings("SELECT email FROM users")
        .await
        .into_iter()
        .collect();
    let acks = acks.lock().expect("acks").clone();
    assert!(acks.len() >= WRITES);
    for ack in &acks {
        assert_eq!(
            per_request.get(&ack.request_id).copied().unwrap_or(0),
            1,
            "acknowledged sign-up {} (request {}) must have exactly one audit event",
            ack.email,
            ack.request_id
        );
        assert!(emails.contains(&ack.email), "{} was lost", ack.email);
    }
    // Every account has its event and no event lacks its account (0 partial writes).
    let users = db.count("SELECT COUNT(*) FROM users").await;
    let created = db
        .count("SELECT COUNT(*) FROM audit_events WHERE action = 'account.create'")
        .await;
    assert_eq!(users, created, "accounts and their audit events differ");
    println!("{events} audit events, seq 1..{events}; {users} accounts");
    crate::harness::assert_audit_verifies(&config);
}
