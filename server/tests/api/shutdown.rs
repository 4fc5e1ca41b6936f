//! Stopping the server (SIGTERM, Ctrl-C): connections, and writes whose clients hung up, get a
//! grace period to finish, and a client that never finishes its request does not keep the
//! server running past it.

use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::helpers::spawn_app;

#[tokio::test]
async fn a_client_that_never_finishes_its_request_does_not_keep_the_server_running() {
    let app = spawn_app().await;
    let host = app.address.trim_start_matches("http://").to_owned();
    let mut stalled = TcpStream::connect(&host).await.expect("connect");
    // A request head that never ends.
    stalled
        .write_all(b"GET /login HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
        .await
        .expect("write");
    // A write whose body never ends: it runs on a task the stop waits for, within the same grace.
    let mut stalled_write = TcpStream::connect(&host).await.expect("connect");
    stalled_write
        .write_all(
            format!(
                "POST /api/auth/login HTTP/1.1\r\nHost: localhost\r\nOrigin: {}\r\n\
                 Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\n\
                 email=a",
                app.address
            )
            .as_bytes(),
        )
        .await
        .expect("write");
    // The server is serving (and has accepted the stalled connections, which came first).
    let page = app
        .client
        .get(format!("{}/login", app.address))
        .send()
        .await
        .expect("login page");
    assert!(page.status().is_success());

    let asked = Instant::now();
    tokio::time::timeout(
        server::startup::SHUTDOWN_GRACE + Duration::from_secs(5),
        app.stop(),
    )
    .await
    .expect("the server stopped within its grace period");
    // It waited for the open request first: the grace period is not skipped.
    assert!(asked.elapsed() >= server::startup::SHUTDOWN_GRACE);
    drop(stalled);
    drop(stalled_write);
}
