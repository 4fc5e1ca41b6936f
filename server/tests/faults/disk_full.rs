//! The database's disk filling up: a throwaway PostgreSQL cluster (in the PostgreSQL pass) or
//! the SQLite file on a small tmpfs that a filler file then fills. Writes are answered with a
//! clear 503, nothing acknowledged is lost, and once space is freed writes work again within
//! 10 s.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::harness::{
    Db, Server, ServerConfig, acknowledged, assert_audit_verifies, client_for, pg_admin_url,
    sign_up, under_ci,
};

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

/// A tmpfs mounted on a fresh directory; unmounted when dropped.
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    fn mount(path: &Path, size: &str) -> Result<Self, String> {
        std::fs::create_dir_all(path).map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "tmpfs",
            ])
            .arg(path)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        Ok(Self {
            path: path.to_owned(),
        })
    }

    /// Writes a filler file until the file system says it is full.
    fn fill(&self) -> u64 {
        let mut file = std::fs::File::create(self.path.join("filler")).expect("filler file");
        let chunk = vec![0xA5u8; 64 * 1024];
        let mut written = 0u64;
        let mut size = chunk.len();
        while size > 0 {
            match file.write(&chunk[..size]) {
                Ok(0) => break,
                Ok(n) => written += n as u64,
                // Full at this size: try smaller pieces down to one byte.
                Err(_) => size /= 2,
            }
        }
        let _ = file.sync_all();
        written
    }

    fn free(&self) {
        std::fs::remove_file(self.path.join("filler")).expect("remove filler");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// A throwaway PostgreSQL cluster whose data directory is on `tmpfs` (its WAL is kept
/// elsewhere, as on a server with a separate WAL volume, so a full data disk fails writes
/// with an error instead of PostgreSQL's PANIC on a full WAL).
struct Cluster {
    data: PathBuf,
    port: u16,
}

fn as_postgres(program: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .arg(Path::new(PG_BIN).join(program))
        .args(args)
        .output()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{program} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

impl Cluster {
    fn start(tmpfs: &Tmpfs, root: &Path) -> Result<Self, String> {
        let chown = |path: &Path| {
            Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(path)
                .status()
                .map_err(|e| e.to_string())
        };
        let data = tmpfs.path.join("data");
        let wal = root.join("wal");
        let sockets = root.join("sockets");
        for dir in [&data, &wal, &sockets] {
            std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
            chown(dir)?;
        }
        let text = |p: &Path| p.display().to_string();
        as_postgres(
            "initdb",
            &[
                "-D",
                &text(&data),
                "--waldir",
                &text(&wal),
                "-U",
                "postgres",
                "-A",
                "trust",
                "--no-sync",
            ],
        )?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let log = root.join("postgres.log");
        std::fs::File::create(&log).map_err(|e| e.to_string())?;
        chown(&log)?;
        let options = format!(
            "-p {port} -c listen_addresses=127.0.0.1 -k {}",
            sockets.display()
        );
        as_postgres(
            "pg_ctl",
            &[
                "-D",
                &text(&data),
                "-l",
                &text(&log),
                "-o",
                &options,
                "-w",
                "start",
            ],
        )?;
        Ok(Self { data, port })
    }

    fn admin_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = as_postgres(
            "pg_ctl",
            &[
                "-D",
                &self.data.display().to_string(),
                "-m",
                "immediate",
                "stop",
            ],
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_is_a_clear_503_and_loses_nothing_acknowledged() {
    let postgres = pg_admin_url().is_some();
    let root = tempfile::tempdir().expect("temp dir");
    // The cluster runs as `postgres`, which must reach into this directory.
    let _ = Command::new("chmod").arg("755").arg(root.path()).status();
    let tmpfs = match Tmpfs::mount(
        &root.path().join("disk"),
        if postgres { "64m" } else { "8m" },
    ) {
        Ok(tmpfs) => tmpfs,
        Err(e) if under_ci() => panic!("the disk-full test needs a tmpfs (run as root): {e}"),
        Err(e) => {
            println!("note: disk-full test skipped: cannot mount a tmpfs (needs root): {e}");
            return;
        }
    };
    let cluster = postgres
        .then(|| Cluster::start(&tmpfs, root.path()).expect("a PostgreSQL cluster on the tmpfs"));
    let url = match &cluster {
        Some(cluster) => crate::harness::fresh_pg_database(&cluster.admin_url()).await,
        None => format!("sqlite://{}/full.db?mode=rwc", tmpfs.path.display()),
    };
    let config = ServerConfig::new(root.path(), &url);
    let server = Server::start(&config).await;

    let mut acks = Vec::new();
    let mut n = 0usize;
    let mut write = |address: String| {
        n += 1;
        let email = format!("disk{n}@faults.example");
        async move {
            let answer = sign_up(&client_for(&address), &address, &email)
                .await
                .expect("the server answers");
            (email, answer)
        }
    };
    for _ in 0..5 {
        let (email, answer) = write(server.address.clone()).await;
        assert!(acknowledged(&answer), "before the disk fills: {answer:?}");
        acks.push(email);
    }

    let filled = tmpfs.fill();
    println!("filler: {} MB until the disk was full", filled / (1 << 20));
    let mut refused = 0;
    let mut consecutive = 0;
    for _ in 0..300 {
        let (email, answer) = write(server.address.clone()).await;
        if acknowledged(&answer) {
            // Free space inside existing pages can still take a row: it must be kept.
            acks.push(email);
            consecutive = 0;
            continue;
        }
        assert_eq!(
            answer.status,
            503,
            "a full disk: {answer:?}\n{}",
            server.log_lines_of(&answer)
        );
        assert!(
            answer.body.contains("Unavailable"),
            "the answer should say the service is unavailable: {}",
            answer.body
        );
        refused += 1;
        consecutive += 1;
        if consecutive >= 5 {
            break;
        }
    }
    println!(
        "full disk: {refused} writes refused with 503, {} acknowledged in all",
        acks.len()
    );
    assert!(refused >= 5, "a full disk must refuse writes");

    tmpfs.free();
    let freed = Instant::now();
    let mut wrong = Vec::new();
    loop {
        let (email, answer) = write(server.address.clone()).await;
        if acknowledged(&answer) {
            acks.push(email);
            break;
        }
        if answer.status != 503 {
            wrong.push(format!("{answer:?}\n{}", server.log_lines_of(&answer)));
        }
        assert!(
            freed.elapsed() < Duration::from_secs(10),
            "writes did not work again within 10 s of freeing space"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "disk freed: writes work again after {} ms",
        freed.elapsed().as_millis()
    );
    assert!(wrong.is_empty(), "while recovering: {wrong:#?}");
    server.assert_log_clean();
    drop(server);

    let db = Db::connect(&url).await;
    db.assert_chain_contiguous().await;
    let emails: std::collections::HashSet<String> = db
        .strings("SELECT email FROM users")
        .await
        .into_iter()
        .collect();
    for email in &acks {
        assert!(
            emails.contains(email),
            "acknowledged sign-up {email} was lost"
        );
    }
    assert_eq!(
        db.count("SELECT COUNT(*) FROM users").await,
        db.count("SELECT COUNT(*) FROM audit_events WHERE action = 'account.create'")
            .await,
        "an account without its audit event: a partial write"
    );
    db.0.close().await.ok();
    assert_audit_verifies(&config);
    drop(cluster);
}
