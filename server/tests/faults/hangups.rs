//! Clients that hang up mid-request (a closed tab, a load balancer's timeout, a load tool
//! stopping): the work they leave behind ends quietly. The server's log says ERROR only for
//! what an operator must look at, and the server keeps answering.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::harness::{Server, ServerConfig, acknowledged, sign_up};

/// Hang-ups per page; with the pages below, several hundred requests cut at every stage.
const HANGUPS: usize = 60;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_hanging_up_mid_page_leave_no_error_in_the_log() {
    let seed = std::env::var("FAULTS_SEED")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or_else(|| rand::thread_rng().r#gen());
    println!("hang-up seed: {seed} (FAULTS_SEED={seed} to replay)");
    let mut rng = StdRng::seed_from_u64(seed);

    let dir = tempfile::tempdir().expect("temp dir");
    let url = crate::harness::test_database_url(dir.path()).await;
    let server = Server::start(&ServerConfig::new(dir.path(), &url)).await;
    let trader = server.client();
    let answer = sign_up(&trader, &server.address, "hangup@example.com")
        .await
        .expect("sign-up");
    assert!(acknowledged(&answer), "{answer:?}");

    // How long a whole page takes here bounds when to hang up: from before the server has read
    // the request to after its resources have started on their own tasks.
    for page in ["/trade", "/", "/security", "/keys", "/orders"] {
        let started = std::time::Instant::now();
        let full = trader
            .get(format!("{}{page}", server.address))
            .send()
            .await
            .expect("the page");
        assert_eq!(full.status(), 200, "{page}");
        full.bytes().await.expect("the page's body");
        let whole = started.elapsed().max(Duration::from_millis(2));
        let mut cut = Vec::with_capacity(HANGUPS);
        for _ in 0..HANGUPS {
            let after = whole.mul_f64(rng.gen_range(0.0..1.2));
            let request = trader.get(format!("{}{page}", server.address)).send();
            // Several at once, as a browser's tabs or a load tool's connections are.
            cut.push(tokio::spawn(async move {
                // Dropping the request closes its connection, whatever stage it reached.
                let _ = tokio::time::timeout(after, async {
                    let response = request.await?;
                    response.bytes().await
                })
                .await;
            }));
        }
        for hangup in cut {
            hangup.await.expect("the hang-up task");
        }
        println!(
            "{page}: {HANGUPS} hang-ups within {} ms",
            whole.mul_f64(1.2).as_millis()
        );
    }

    // What was cut off has finished (a page's leftover render is bounded by its budget);
    // the server still answers, and what it logged is only what it should.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let page = trader
        .get(format!("{}/trade", server.address))
        .send()
        .await
        .expect("the page after the hang-ups");
    assert_eq!(page.status(), 200);
    let text = server.log_text();
    let errors: Vec<&str> = text
        .lines()
        .filter(|line| line.contains("\"level\":\"ERROR\"") || line.contains("panicked"))
        .collect();
    assert!(
        errors.is_empty(),
        "hang-ups logged errors (server log {}):\n{}",
        server.log.display(),
        errors.join("\n")
    );
    server.assert_log_clean();
}
