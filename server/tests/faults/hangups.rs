//! Clients that hang up mid-request (a closed tab, a load balancer's timeout, a load tool
//! stopping): the work they leave behind ends quietly. The server's log says ERROR only for
//! what an operator must look at, and the server keeps answering.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sea_orm::ConnectionTrait;

use crate::harness::{
    Db, Server, ServerConfig, acknowledged, assert_audit_verifies, call, sign_up,
};

/// Hang-ups per page; with the pages below, several hundred requests cut at every stage.
const HANGUPS: usize = 60;
/// Orders sent by clients that hang up at a random point.
const ORDERS: usize = 120;
/// Orders sent at once by a second trader right before the server is told to stop.
const BURST: usize = 24;

/// The seed for a test's random timings: `FAULTS_SEED=<n>` replays one.
fn seeded(what: &str) -> StdRng {
    let seed = std::env::var("FAULTS_SEED")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or_else(|| rand::thread_rng().r#gen());
    println!("{what} seed: {seed} (FAULTS_SEED={seed} to replay)");
    StdRng::seed_from_u64(seed)
}

/// Sends `request` on a task of its own and hangs up `after` (dropping a request closes its
/// connection, whatever stage it reached).
fn hang_up(request: reqwest::RequestBuilder, after: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let _ = tokio::time::timeout(after, async {
            let response = request.send().await?;
            response.bytes().await
        })
        .await;
    })
}

/// The ERROR and panic lines of `server`'s log.
fn errors_logged(server: &Server) -> Vec<String> {
    let text = server.log_text();
    let lines: Vec<&str> = text.lines().collect();
    let mut errors = Vec::new();
    for (n, line) in lines.iter().enumerate() {
        if line.contains("\"level\":\"ERROR\"") {
            errors.push((*line).to_owned());
        } else if line.contains("panicked") {
            // A panic's message (which names the caller) is on the line after.
            errors.push(format!("{line} {}", lines.get(n + 1).unwrap_or(&"")));
        }
    }
    errors
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_whose_client_hangs_up_is_still_carried_through() {
    let mut rng = seeded("order hang-up");
    let dir = tempfile::tempdir().expect("temp dir");
    let url = crate::harness::test_database_url(dir.path()).await;
    let config = ServerConfig::new(dir.path(), &url);
    let mut server = Server::start(&config).await;
    let trader = server.client();
    let answer = sign_up(&trader, &server.address, "orders@example.com")
        .await
        .expect("sign-up");
    assert!(acknowledged(&answer), "{answer:?}");
    // Limits out of the way: every order is sent, so each can be cut between being recorded
    // and being sent.
    let db = Db::connect(&url).await;
    db.0.execute_unprepared(
        "UPDATE risk_limits SET value = '1000000000' WHERE scope = 'global' \
           AND field IN ('max_order_notional', 'daily_notional');
         UPDATE risk_limits SET value = '100000' WHERE scope = 'global' \
           AND field = 'velocity_max_orders';
         UPDATE risk_limits SET value = '1' WHERE scope = 'global' \
           AND field IN ('velocity_window_secs', 'anomaly_threshold');",
    )
    .await
    .expect("raise the limits");
    let quotes = call(
        &trader,
        &server.address,
        "trading/quotes",
        &[("venue", "paper")],
    )
    .await
    .expect("quotes");
    let quotes: serde_json::Value = serde_json::from_str(&quotes.body).expect("quotes JSON");
    let price = quotes
        .as_array()
        .and_then(|all| all.iter().find(|q| q["symbol"] == "BTCUSDT"))
        .and_then(|q| q["price"].as_str())
        .expect("a BTCUSDT quote")
        .to_owned();
    let form = [
        ("venue", "paper"),
        ("symbol", "BTCUSDT"),
        ("side", "buy"),
        ("order_type", "market"),
        ("quantity", "0.0001"),
        ("price", price.as_str()),
    ];
    let started = std::time::Instant::now();
    let placed = call(&trader, &server.address, "trading/place", &form)
        .await
        .expect("an order");
    assert_eq!(placed.status, 200, "{}", placed.body);
    let whole = started.elapsed().max(Duration::from_millis(2));

    // A few at a time: an order waits for the trader's previous one, and a client that hangs
    // up before the server reads its order leaves nothing to check.
    for _ in 0..ORDERS / 4 {
        let mut cut = Vec::with_capacity(4);
        for _ in 0..4 {
            let request = trader
                .post(format!("{}/api/trading/place", server.address))
                .header(reqwest::header::ORIGIN, server.address.as_str())
                .form(&form);
            cut.push(hang_up(request, whole.mul_f64(rng.gen_range(0.0..2.0))));
        }
        for hangup in cut {
            hangup.await.expect("the hang-up task");
        }
    }
    // A second trader's burst, each hung up once the server has surely read it: its orders
    // then wait their turn behind one another, with nobody connected to wait for.
    let second = server.client();
    let answer = sign_up(&second, &server.address, "burst@example.com")
        .await
        .expect("sign-up");
    assert!(acknowledged(&answer), "{answer:?}");
    let burst: Vec<_> = (0..BURST)
        .map(|_| {
            let request = second
                .post(format!("{}/api/trading/place", server.address))
                .header(reqwest::header::ORIGIN, server.address.as_str())
                .form(&form);
            hang_up(request, whole + Duration::from_millis(100))
        })
        .collect();
    for hangup in burst {
        hangup.await.expect("the hang-up task");
    }

    // Told to stop right away, as a deploy would: the orders still running for clients that
    // left are finished before it exits (counting while they ran would race them).
    let stopped = server.stop().await;
    assert!(stopped.success(), "{stopped}");
    let log = server.log_text();
    assert!(
        !log.contains("still open after the shutdown grace period"),
        "the stop cut requests off"
    );
    // Every order the server recorded was carried through to what the exchange answered: none
    // is left `submitting` (sent or not, no one would ever know), and every one of them is in
    // the audit chain, which verifies.
    assert_eq!(
        db.count("SELECT COUNT(*) FROM orders WHERE status = 'submitting'")
            .await,
        0,
        "an order left between being recorded and being sent"
    );
    let orders = db.count("SELECT COUNT(*) FROM orders").await;
    let decided = db
        .count("SELECT COUNT(*) FROM audit_events WHERE action = 'trade.order_decided'")
        .await;
    println!("{orders} orders recorded of {} sent", ORDERS + 1 + BURST);
    assert!(
        orders > 1,
        "no order was recorded before its client hung up"
    );
    assert_eq!(decided, orders, "an order without its audit event");
    assert_eq!(
        db.count(
            "SELECT COUNT(*) FROM orders o JOIN users u ON u.id = o.owner \
               WHERE u.email = 'burst@example.com'"
        )
        .await,
        i64::try_from(BURST).expect("a small count"),
        "the stop cut off orders it had read"
    );
    db.assert_chain_contiguous().await;
    drop(server);
    assert_audit_verifies(&config);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_hanging_up_mid_page_leave_no_error_in_the_log() {
    let mut rng = seeded("page hang-up");

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
            // Several at once, as a browser's tabs or a load tool's connections are.
            cut.push(hang_up(
                trader.get(format!("{}{page}", server.address)),
                whole.mul_f64(rng.gen_range(0.0..1.2)),
            ));
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
    let errors = errors_logged(&server);
    assert!(
        errors.is_empty(),
        "hang-ups logged errors (server log {}):\n{}",
        server.log.display(),
        errors.join("\n")
    );
    server.assert_log_clean();
}
