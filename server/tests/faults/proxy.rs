//! A small TCP fault proxy: it sits between the server and one of its dependencies (the
//! database, the KMS, the exchange) and can be switched at run time between passing bytes,
//! dropping every connection, stalling them, or delaying each chunk.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Forward everything as it comes.
    Pass,
    /// Close every open connection and every new one at once (a crashed or unplugged service).
    Drop,
    /// Keep connections open but forward nothing (a hung service or a black-holed network).
    Stall,
    /// Forward each chunk after this delay (a slow link).
    Delay(Duration),
}

pub struct FaultProxy {
    address: SocketAddr,
    fault: watch::Sender<Fault>,
    accepted: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    /// Listens on a free loopback port and forwards to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("proxy binds");
        let address = listener.local_addr().expect("proxy address");
        let (fault, _) = watch::channel(Fault::Pass);
        let accepted = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn(accept_loop(
            listener,
            upstream,
            fault.subscribe(),
            accepted.clone(),
        ));
        Self {
            address,
            fault,
            accepted,
            task,
        }
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    pub fn set(&self, fault: Fault) {
        self.fault.send_replace(fault);
    }

    /// Connections accepted so far (shows the server really goes through the proxy).
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.fault.send_replace(Fault::Drop);
        self.task.abort();
    }
}

async fn accept_loop(
    listener: TcpListener,
    upstream: SocketAddr,
    fault: watch::Receiver<Fault>,
    accepted: Arc<AtomicUsize>,
) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        accepted.fetch_add(1, Ordering::SeqCst);
        if *fault.borrow() == Fault::Drop {
            drop(client);
            continue;
        }
        tokio::spawn(connection(client, upstream, fault.clone()));
    }
}

async fn connection(client: TcpStream, upstream: SocketAddr, mut fault: watch::Receiver<Fault>) {
    let server = tokio::select! {
        connected = TcpStream::connect(upstream) => match connected {
            Ok(server) => server,
            Err(_) => return,
        },
        () = until_dropped(&mut fault) => return,
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    // When either direction ends (or the fault drops connections), both sockets close.
    tokio::select! {
        () = pump(client_read, server_write, fault.clone()) => {}
        () = pump(server_read, client_write, fault) => {}
    }
}

/// Returns once the fault is `Drop`.
async fn until_dropped(fault: &mut watch::Receiver<Fault>) {
    loop {
        if *fault.borrow_and_update() == Fault::Drop {
            return;
        }
        if fault.changed().await.is_err() {
            return;
        }
    }
}

/// Copies `from` to `to` chunk by chunk, applying the current fault to each chunk.
async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, mut fault: watch::Receiver<Fault>) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let n = tokio::select! {
            read = from.read(&mut buf) => match read {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            },
            () = until_dropped(&mut fault) => return,
        };
        loop {
            let now = *fault.borrow_and_update();
            match now {
                Fault::Pass => break,
                Fault::Drop => return,
                Fault::Delay(delay) => {
                    tokio::time::sleep(delay).await;
                    break;
                }
                // Hold the chunk until the fault changes.
                Fault::Stall => {
                    if fault.changed().await.is_err() {
                        return;
                    }
                }
            }
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

#[tokio::test]
async fn the_proxy_passes_drops_stalls_and_delays() {
    use std::time::Instant;
    // An echo server upstream.
    let echo = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let upstream = echo.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = echo.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                while let Ok(n) = socket.read(&mut buf).await {
                    if n == 0 || socket.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    let proxy = FaultProxy::start(upstream).await;
    async fn round_trip(address: SocketAddr, wait: Duration) -> Result<Vec<u8>, String> {
        let attempt = async {
            let mut socket = TcpStream::connect(address)
                .await
                .map_err(|e| e.to_string())?;
            socket.write_all(b"ping").await.map_err(|e| e.to_string())?;
            let mut buf = [0u8; 4];
            socket
                .read_exact(&mut buf)
                .await
                .map_err(|e| e.to_string())?;
            Ok(buf.to_vec())
        };
        tokio::time::timeout(wait, attempt)
            .await
            .map_err(|_| "timed out".to_owned())?
    }
    let wait = Duration::from_secs(2);
    assert_eq!(
        round_trip(proxy.address(), wait).await,
        Ok(b"ping".to_vec())
    );

    proxy.set(Fault::Drop);
    assert!(round_trip(proxy.address(), wait).await.is_err());

    // A connection opened while passing is held by a stall and finishes once it lifts.
    proxy.set(Fault::Stall);
    let stalled = tokio::spawn(round_trip(proxy.address(), Duration::from_secs(10)));
    assert_eq!(
        round_trip(proxy.address(), Duration::from_millis(300)).await,
        Err("timed out".to_owned())
    );
    proxy.set(Fault::Pass);
    assert_eq!(
        stalled.await.expect("task"),
        Ok(b"ping".to_vec()),
        "a stalled exchange completes after the stall"
    );

    proxy.set(Fault::Delay(Duration::from_millis(150)));
    let started = Instant::now();
    assert_eq!(
        round_trip(proxy.address(), wait).await,
        Ok(b"ping".to_vec())
    );
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "delayed both ways"
    );
    assert!(proxy.accepted() >= 5);
}
