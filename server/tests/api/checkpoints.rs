//! Signed checkpoints of the audit chain head: the tamper test of issue 13 (events cut from the
//! end after dropping the append-only triggers), the periodic job, on-demand checkpoints, the
//! journal file, the well-known report key, and the key's storage through the KMS.

use std::sync::Arc;
use std::time::Duration;

use domain::account::Role;
use domain::audit::signing::{ReportKey, ReportPublicKey, SignedCheckpoint};
use sea_orm::{ConnectionTrait, DatabaseConnection};
use serde_json::Value;

use crate::helpers::{
    TestApp, TestClock, TestDatabase, is_postgres, spawn_app, spawn_on, test_settings,
};

const JOURNAL: &str = "audit-checkpoints.jsonl";

async fn well_known_key(app: &TestApp) -> ReportPublicKey {
    let response = app
        .new_client()
        .get(format!(
            "{}/.well-known/cryptopulse-report-key",
            app.address
        ))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"].to_str().expect("ascii");
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    let body = response.text().await.expect("text");
    assert!(
        body.starts_with("ed25519:") && body.ends_with('\n'),
        "{body:?}"
    );
    ReportPublicKey::parse(&body).expect("a public key")
}

async fn sign_now(app: &TestApp, client: &reqwest::Client) -> Value {
    let response = app.call(client, "audit/checkpoints/sign", &[]).await;
    assert_eq!(response.status(), 200);
    response.json().await.expect("json")
}

/// What an attacker with database owner rights does first.
async fn drop_append_only_guards(app: &TestApp) {
    drop_append_only_guards_on(app.db()).await;
}

async fn drop_append_only_guards_on(db: &DatabaseConnection) {
    let sql = if is_postgres() {
        "ALTER TABLE audit_events DISABLE TRIGGER USER; \
         ALTER TABLE audit_checkpoints DISABLE TRIGGER USER;"
    } else {
        "DROP TRIGGER audit_events_no_update; DROP TRIGGER audit_events_no_delete; \
         DROP TRIGGER audit_checkpoints_no_update; DROP TRIGGER audit_checkpoints_no_delete;"
    };
    db.execute_unprepared(sql).await.expect(sql);
}

async fn cli_verify(app: &TestApp) -> (bool, String) {
    let mut out = Vec::new();
    let intact = server::cli::audit_verify(&app.settings, None, &mut out)
        .await
        .expect("verify runs");
    (intact, String::from_utf8(out).expect("utf8"))
}

/// Runs the in-app verification as a background job and waits for its report.
async fn verify_job(app: &TestApp, client: &reqwest::Client) -> Value {
    let job: String = app
        .call(client, "audit/verify/start", &[])
        .await
        .json()
        .await
        .expect("job id");
    for _ in 0..200 {
        let status: Value = app
            .call(client, "audit/verify/status", &[("job_id", &job)])
            .await
            .json()
            .await
            .expect("json");
        if status["finished"] == true {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the verification job did not finish");
}

#[tokio::test]
async fn an_old_signed_head_of_record_put_back_is_found_and_nothing_chains_onto_it() {
    // Every signature the server ever wrote on a record still verifies: one kept from
    // earlier and put back would make what came since look added outside the server, ready
    // to be "adopted" after changes. It is behind this server's newest record and behind the
    // latest signed checkpoint, so both the server and `audit verify` know it for old.
    let app = spawn_app().await;
    let reviewer = app.signed_in_as("rhea@example.com", Role::Reviewer).await;
    let old = app.head_of_record().await;
    for n in 0..3 {
        app.sign_up(&app.new_client(), &format!("old{n}@example.com"))
            .await;
    }
    sign_now(&app, &reviewer).await;
    let users = app.count("SELECT COUNT(*) FROM users").await;
    app.exec(&format!(
        "UPDATE audit_chain_lock SET head_seq = {}, head_hash = '{}', head_signature = '{}' \
         WHERE id = 1",
        old.0, old.1, old.2
    ))
    .await;
    assert_eq!(
        app.sign_up(&app.new_client(), "after@example.com")
            .await
            .status(),
        503
    );
    assert_eq!(app.count("SELECT COUNT(*) FROM users").await, users);
    let (intact, report) = cli_verify(&app).await;
    assert!(
        !intact
            && report.contains(&format!("BROKEN at seq {}:", old.0))
            && report.contains("older than the latest signed checkpoint")
            && !report.contains("sign-head"),
        "{report}"
    );
    app.stop().await;
}

/// Cut while the server is stopped: the events since an older signed head of record, which is
/// put back, leave the database a well-formed shorter chain with nothing in it to tell. The
/// server journalled the head it committed as it stopped, outside the database, so `audit
/// verify` finds that head missing, before and after the server starts again on the cut chain.
#[tokio::test]
async fn events_cut_while_the_server_is_stopped_are_caught_through_the_head_it_journalled() {
    let db = TestDatabase::new().await;
    let settings = test_settings(&db);
    let app = spawn_on(db.clone(), settings.clone(), Arc::new(TestClock::default())).await;
    let kept = app.head_of_record().await;
    for n in 0..3 {
        app.sign_up(&app.new_client(), &format!("stopped{n}@example.com"))
            .await;
    }
    app.stop().await;
    let journal =
        std::fs::read_to_string(settings.data_dir.join(JOURNAL)).expect("the stop was journalled");
    let journalled: SignedCheckpoint =
        serde_json::from_str(journal.lines().last().expect("a line")).expect("a checkpoint");

    let conn = sea_orm::Database::connect(&db.url).await.expect("database");
    let stopped_at = crate::helpers::scalar(&conn, "SELECT MAX(seq) FROM audit_events").await;
    assert_eq!(journalled.seq, stopped_at, "the head after system.stop");
    drop_append_only_guards_on(&conn).await;
    conn.execute_unprepared(&format!(
        "DELETE FROM audit_events WHERE seq > {}; \
         UPDATE audit_chain_lock SET head_seq = {}, head_hash = '{}', head_signature = '{}' \
         WHERE id = 1",
        kept.0, kept.0, kept.1, kept.2
    ))
    .await
    .expect("cut");
    conn.close().await.expect("closed");

    let expect_caught = |intact: bool, report: String| {
        assert!(
            !intact
                && report.contains(&format!("BROKEN at seq {stopped_at}:"))
                && report.contains("events removed from the end"),
            "{report}"
        );
    };
    let mut out = Vec::new();
    let intact = server::cli::audit_verify(&settings, None, &mut out)
        .await
        .expect("verify runs");
    expect_caught(intact, String::from_utf8(out).expect("utf8"));
    let restarted = spawn_on(db, settings, Arc::new(TestClock::default())).await;
    let (intact, report) = cli_verify(&restarted).await;
    expect_caught(intact, report);
    restarted.stop().await;
}

#[tokio::test]
async fn events_cut_from_the_end_are_caught_through_the_latest_checkpoint() {
    let app = spawn_app().await;
    let reviewer = app.signed_in_as("rhea@example.com", Role::Reviewer).await;
    for n in 0..6 {
        app.sign_up(&app.new_client(), &format!("cut{n}@example.com"))
            .await;
    }
    let checkpoint = sign_now(&app, &reviewer).await;
    let seq = checkpoint["seq"].as_i64().expect("seq");
    let (intact, report) = cli_verify(&app).await;
    assert!(intact, "{report}");
    assert!(
        report.contains(&format!("checked against signed checkpoint seq {seq} ")),
        "{report}"
    );

    // The attacker removes the last 5 events (the checkpoint's own record and the four before
    // it, the signed head among them). What is left is a well-formed, shorter chain.
    drop_append_only_guards(&app).await;
    let last = app.count("SELECT MAX(seq) FROM audit_events").await;
    assert!(
        last - 5 < seq && seq <= last,
        "{seq} within the last five of {last}"
    );
    app.exec(&format!(
        "DELETE FROM audit_events WHERE seq > {}",
        last - 5
    ))
    .await;

    let (intact, report) = cli_verify(&app).await;
    assert!(!intact, "{report}");
    assert!(
        report.contains(&format!("BROKEN at seq {seq}:")),
        "{report}"
    );
    assert!(report.contains("found by signed checkpoint"), "{report}");

    // The in-app verification, in the request and as a background job, names it too.
    let in_request: Value = app
        .call(&reviewer, "audit/verify", &[])
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(in_request["broken_at"][0], seq, "{in_request}");
    assert_eq!(in_request["checkpoint"]["seq"], seq, "{in_request}");
    // That verification's own event chained onto the head of record, past the cut: from then
    // on the cut is a gap in the chain, named at its first missing seq.
    let cut = last - 4;
    let job = verify_job(&app, &reviewer).await;
    assert_eq!(job["report"]["broken_at"][0], cut, "{job}");

    // Deleting the checkpoint rows as well does not help.
    app.exec("DELETE FROM audit_checkpoints").await;
    let (intact, report) = cli_verify(&app).await;
    assert!(!intact, "{report}");
    assert!(
        report.contains(&format!("BROKEN at seq {cut}:")),
        "{report}"
    );

    // Nor does appending fresh events: they do not fill the cut, and the job refuses to sign
    // over the chain.
    for n in 0..6 {
        app.sign_up(&app.new_client(), &format!("again{n}@example.com"))
            .await;
    }
    let (intact, report) = cli_verify(&app).await;
    assert!(!intact, "{report}");
    assert!(
        report.contains(&format!("BROKEN at seq {cut}:")),
        "{report}"
    );
    assert!(
        app.backend
            .services
            .audit
            .checkpoint_if_moved()
            .await
            .is_err(),
        "no checkpoint is signed over a chain that no longer extends the last one"
    );
    // A reviewer asking for one is told why, and nothing is signed.
    let checkpoints_before = app.count("SELECT COUNT(*) FROM audit_checkpoints").await;
    let response = app.call(&reviewer, "audit/checkpoints/sign", &[]).await;
    assert_eq!(response.status(), 409);
    let message = response.text().await.expect("body");
    assert!(
        message.contains("no longer extends the latest checkpoint"),
        "{message}"
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM audit_checkpoints").await,
        checkpoints_before
    );
    app.stop().await;
}

#[tokio::test]
async fn a_forged_checkpoint_row_is_reported() {
    let app = spawn_app().await;
    let reviewer = app.signed_in_as("fay@example.com", Role::Reviewer).await;
    let checkpoint = sign_now(&app, &reviewer).await;
    let seq = checkpoint["seq"].as_i64().expect("seq");
    // A row signed with some other key (anyone can make one) for the real head.
    let head = domain::audit::ChainHead {
        seq,
        hash: domain::audit::ChainHash::from_hex(checkpoint["hash"].as_str().expect("hash"))
            .expect("hex"),
    };
    let forged = SignedCheckpoint::sign(
        head,
        time::OffsetDateTime::now_utc(),
        &ReportKey::generate(),
    );
    app.exec(&format!(
        "INSERT INTO audit_checkpoints (id, seq, hash, signed_at, public_key, signature, \"trigger\", created_at) \
         VALUES (999, {}, '{}', '{}', '{}', '{}', 'manual', '{}')",
        forged.seq + 1,
        forged.hash,
        forged.signed_at,
        forged.public_key,
        forged.signature,
        forged.signed_at
    ))
    .await;
    let (intact, report) = cli_verify(&app).await;
    assert!(!intact, "{report}");
    assert!(
        report.contains(&format!("BROKEN at seq {}:", seq + 1)) && report.contains("not signed by"),
        "{report}"
    );
    let list: Vec<Value> = app
        .call(&reviewer, "audit/checkpoints", &[])
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(list[0]["seq"], seq + 1);
    assert_eq!(list[0]["valid"], false, "the forged row is flagged");
    assert_eq!(list[1]["valid"], true);
    app.stop().await;
}

#[tokio::test]
async fn a_checkpoint_row_naming_another_signer_or_carrying_terminal_escapes_is_reported_as_text() {
    let app = spawn_app().await;
    let reviewer = app.signed_in_as("fin@example.com", Role::Reviewer).await;
    let checkpoint = sign_now(&app, &reviewer).await;
    let seq = checkpoint["seq"].as_i64().expect("seq");
    // The server's own signature, copied with someone else's key named as the signer.
    let impostor = ReportKey::generate().public_key();
    app.exec(&format!(
        "INSERT INTO audit_checkpoints (id, seq, hash, signed_at, public_key, signature, \"trigger\", created_at) \
         SELECT 998, seq, hash, signed_at, '{impostor}', signature, \"trigger\", created_at \
         FROM audit_checkpoints WHERE seq = {seq} ORDER BY id DESC LIMIT 1"
    ))
    .await;
    let (intact, report) = cli_verify(&app).await;
    assert!(!intact, "{report}");
    assert!(
        report.contains(&format!("BROKEN at seq {seq}:")) && report.contains("not signed by"),
        "{report}"
    );
    assert!(!report.contains(&impostor.to_string()), "{report}");
    let list: Vec<Value> = app
        .call(&reviewer, "audit/checkpoints", &[])
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(list[0]["public_key"], impostor.to_string());
    assert_eq!(list[0]["valid"], false, "the misnamed copy is flagged");

    // Text meant to move the terminal's cursor and print a verdict over the real one.
    let repaint = "\u{1b}[1A\u{1b}[2Kaudit chain intact";
    app.exec(&format!(
        "INSERT INTO audit_checkpoints (id, seq, hash, signed_at, public_key, signature, \"trigger\", created_at) \
         SELECT 999, seq + 1, '{repaint}', '{repaint}', public_key, signature, \"trigger\", created_at \
         FROM audit_checkpoints WHERE seq = {seq} AND id <> 998 ORDER BY id DESC LIMIT 1"
    ))
    .await;
    let (intact, report) = cli_verify(&app).await;
    assert!(!intact, "{report}");
    assert!(!report.contains('\u{1b}'), "{report:?}");
    assert!(report.contains("\\u{1b}[1A"), "{report:?}");
    app.stop().await;
}

#[tokio::test]
async fn deleting_the_report_key_so_a_new_one_signs_a_rewritten_chain_is_reported() {
    let app = spawn_app().await;
    let reviewer = app.signed_in_as("kay@example.com", Role::Reviewer).await;
    let checkpoint = sign_now(&app, &reviewer).await;
    let seq = checkpoint["seq"].as_i64().expect("seq");
    let (intact, report) = cli_verify(&app).await;
    assert!(intact, "{report}");

    // With database access, an attacker deletes the report key and every checkpoint row (the
    // chain itself can then be rewritten: its hashes need no secret). The next start makes a
    // new key, which would sign whatever chain it finds; the CLI here is that start.
    drop_append_only_guards(&app).await;
    app.exec("DELETE FROM audit_checkpoints").await;
    app.exec("DELETE FROM report_keys").await;
    let (intact, report) = cli_verify(&app).await;
    assert!(!intact, "{report}");
    assert!(
        report.contains(&format!("BROKEN at seq {seq}:")) && report.contains("since replaced"),
        "{report}"
    );
    app.stop().await;
}

#[tokio::test]
async fn the_periodic_job_signs_only_when_the_chain_moved() {
    let app = spawn_app().await;
    let audit = &app.backend.services.audit;
    let first = audit
        .checkpoint_if_moved()
        .await
        .expect("job runs")
        .expect("the server's start is new");
    // Its own record (`audit.checkpoint`) does not count as the chain moving.
    assert_eq!(audit.checkpoint_if_moved().await.expect("job runs"), None);
    assert_eq!(audit.checkpoint_if_moved().await.expect("job runs"), None);

    app.sign_up(&app.new_client(), "mover@example.com").await;
    let second = audit
        .checkpoint_if_moved()
        .await
        .expect("job runs")
        .expect("a sign-up moved the chain");
    assert!(second.seq > first.seq);
    assert_eq!(audit.checkpoint_if_moved().await.expect("job runs"), None);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM audit_checkpoints WHERE \"trigger\" = 'schedule'")
            .await,
        2
    );
    assert_eq!(
        app.count(
            "SELECT COUNT(*) FROM audit_events WHERE action = 'audit.checkpoint' \
             AND actor_kind = 'system' AND actor_id = 'checkpoints'"
        )
        .await,
        2
    );
    assert_eq!(audit.latest_checkpoint().await.expect("read"), Some(second));
    app.stop().await;
}

#[tokio::test]
async fn a_reviewer_signs_a_checkpoint_on_demand_audited_and_journalled() {
    let app = spawn_app().await;
    let key = well_known_key(&app).await;
    assert_eq!(key, app.backend.services.audit.report_public_key());

    // Only reviewers and admins may sign.
    let trader = app.signed_in_as("tom@example.com", Role::Trader).await;
    assert_eq!(
        app.call(&trader, "audit/checkpoints/sign", &[])
            .await
            .status(),
        403
    );
    assert_eq!(
        app.call(&app.new_client(), "audit/checkpoints/sign", &[])
            .await
            .status(),
        401
    );
    assert_eq!(app.count("SELECT COUNT(*) FROM audit_checkpoints").await, 0);

    let reviewer = app.signed_in_as("rita@example.com", Role::Reviewer).await;
    let first = sign_now(&app, &reviewer).await;
    let second = sign_now(&app, &reviewer).await;
    assert_eq!(first["trigger"], "manual");
    assert_eq!(
        first["public_key"],
        key.as_str(),
        "signed by the well-known key"
    );
    // The second signs the head that now includes the first one's record.
    assert_eq!(second["seq"], first["seq"].as_i64().expect("seq") + 1);

    let reviewer_id = app
        .backend
        .services
        .accounts
        .user_by_email(&domain::account::Email::parse("rita@example.com").expect("email"))
        .await
        .expect("read")
        .expect("user")
        .id;
    assert_eq!(
        app.count(&format!(
            "SELECT COUNT(*) FROM audit_events WHERE action = 'audit.checkpoint' \
             AND actor_id = '{reviewer_id}' AND resource = 'checkpoint:{}'",
            first["seq"]
        ))
        .await,
        1
    );

    // Every line of the journal file is a checkpoint that verifies under the published key.
    let journal = std::fs::read_to_string(app.settings.data_dir.join(JOURNAL)).expect("journal");
    let lines: Vec<SignedCheckpoint> = journal
        .lines()
        .map(|line| serde_json::from_str(line).expect("one JSON checkpoint per line"))
        .collect();
    assert_eq!(lines.len(), 2);
    for (line, view) in lines.iter().zip([&first, &second]) {
        assert!(line.verify(Some(&key)), "{line:?}");
        assert_eq!(line.seq, view["seq"].as_i64().expect("seq"));
        assert_eq!(line.signature, view_signature(&app, line.seq).await);
    }

    let listed: Vec<Value> = app
        .call(&reviewer, "audit/checkpoints", &[])
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0]["seq"], second["seq"], "newest first");
    assert!(
        listed
            .iter()
            .all(|c| c["valid"] == true && c["trigger"] == "manual")
    );
    app.stop().await;
}

async fn view_signature(app: &TestApp, seq: i64) -> String {
    use sea_orm::{ConnectionTrait, Statement};
    let backend = app.db().get_database_backend();
    let row = app
        .db()
        .query_one_raw(Statement::from_string(
            backend,
            format!("SELECT signature FROM audit_checkpoints WHERE seq = {seq}"),
        ))
        .await
        .expect("query")
        .expect("row");
    row.try_get_by_index::<String>(0).expect("signature")
}

#[tokio::test]
async fn the_report_key_survives_a_restart_and_is_sealed_by_the_kms() {
    let db = TestDatabase::new().await;
    let settings = test_settings(&db);
    let app = spawn_on(db.clone(), settings.clone(), Arc::new(TestClock::default())).await;
    let key = well_known_key(&app).await;
    app.stop().await;
    let app = spawn_on(db, settings.clone(), Arc::new(TestClock::default())).await;
    assert_eq!(
        well_known_key(&app).await,
        key,
        "the same key after a restart"
    );
    assert_eq!(app.count("SELECT COUNT(*) FROM report_keys").await, 1);

    // Open the row the way the server does, to learn the secret, then look for it in clear.
    use sea_orm::{ConnectionTrait, Statement};
    let backend = app.db().get_database_backend();
    let row = app
        .db()
        .query_one_raw(Statement::from_string(
            backend,
            "SELECT id, public_key, wrapped_key, nonce, ciphertext, kms_key_id FROM report_keys"
                .to_owned(),
        ))
        .await
        .expect("query")
        .expect("row");
    let column = |i: usize| row.try_get_by_index::<String>(i).expect("text");
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let sealed = domain::vault::SealedSecret {
        wrapped_key: domain::vault::WrappedKey {
            kms_key_id: column(5),
            blob: b64.decode(column(2)).expect("b64"),
        },
        nonce: b64
            .decode(column(3))
            .expect("b64")
            .try_into()
            .expect("12 bytes"),
        ciphertext: b64.decode(column(4)).expect("b64"),
    };
    let id = uuid::Uuid::parse_str(&column(0)).expect("uuid");
    let kms = server::startup::kms_from_settings(&settings)
        .await
        .expect("kms");
    let secret = domain::vault::open(
        kms.as_ref(),
        &domain::audit::checkpoints::report_key_binding(id),
        &sealed,
    )
    .await
    .expect("the KMS opens it");
    use secrecy::ExposeSecret;
    let secret_hex = secret.expose_secret().to_owned();
    let bytes: [u8; 32] = hex::decode(&secret_hex)
        .expect("hex")
        .try_into()
        .expect("32");
    assert_eq!(ReportKey::from_secret_bytes(bytes).public_key(), key);
    let secret_b64 = b64.encode(bytes);
    for i in 0..6 {
        let value = column(i);
        assert!(
            !value.contains(&secret_hex) && !value.contains(&secret_b64),
            "column {i} holds the secret in clear"
        );
    }
    assert_eq!(column(1), key.as_str());
    app.stop().await;
}

#[tokio::test]
async fn the_cli_binary_verifies_against_the_checkpoint() {
    let app = spawn_app().await;
    let reviewer = app.signed_in_as("cleo@example.com", Role::Reviewer).await;
    let seq = sign_now(&app, &reviewer).await["seq"]
        .as_i64()
        .expect("seq");
    let run = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_cryptopulse"))
            .args(["audit", "verify"])
            // A clean directory, so no developer's .env is read.
            .current_dir(app.settings.data_dir.parent().expect("temp dir"))
            .env(
                "CRYPTOPULSE_DATABASE_URL",
                secrecy::ExposeSecret::expose_secret(&app.settings.database_url),
            )
            .env("CRYPTOPULSE_DATA_DIR", &app.settings.data_dir)
            .output()
            .expect("the binary runs")
    };
    let output = run();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains(&format!("checked against signed checkpoint seq {seq} ")),
        "{stdout}"
    );

    drop_append_only_guards(&app).await;
    app.exec(&format!("DELETE FROM audit_events WHERE seq >= {seq}"))
        .await;
    let output = run();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains(&format!("BROKEN at seq {seq}:")),
        "{stdout}"
    );
    app.stop().await;
}

#[tokio::test]
async fn each_checkpoint_is_posted_to_the_webhook() {
    use axum::routing::post;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Value>();
    let hook = axum::Router::new().route(
        "/hook",
        post(move |axum::Json(body): axum::Json<Value>| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(body);
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, hook).await });

    let app = crate::helpers::spawn_app_with(|settings| {
        settings.audit.checkpoint_webhook_url = Some(url);
    })
    .await;
    let reviewer = app.signed_in_as("wes@example.com", Role::Reviewer).await;
    let signed = sign_now(&app, &reviewer).await;
    let posted = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("posted within 10 s")
        .expect("a body");
    assert_eq!(posted["type"], "cryptopulse.audit_checkpoint");
    let checkpoint: SignedCheckpoint =
        serde_json::from_value(posted["checkpoint"].clone()).expect("a checkpoint");
    assert_eq!(checkpoint.seq, signed["seq"].as_i64().expect("seq"));
    assert!(checkpoint.verify(Some(&app.backend.services.audit.report_public_key())));
    app.stop().await;
}

#[tokio::test]
async fn an_unreachable_webhook_does_not_stop_a_checkpoint() {
    // Nothing listens on port 9 (discard) here: the POST fails, the checkpoint stands.
    let app = crate::helpers::spawn_app_with(|settings| {
        settings.audit.checkpoint_webhook_url = Some("http://127.0.0.1:9/hook".into());
    })
    .await;
    let reviewer = app.signed_in_as("una@example.com", Role::Reviewer).await;
    sign_now(&app, &reviewer).await;
    let (intact, report) = cli_verify(&app).await;
    assert!(intact, "{report}");
    assert!(
        report.contains("checked against signed checkpoint"),
        "{report}"
    );
    app.stop().await;
}

#[tokio::test]
async fn only_the_reviewer_who_started_a_verification_sees_it() {
    let app = spawn_app().await;
    let owner = app.signed_in_as("olga@example.com", Role::Reviewer).await;
    let other = app.signed_in_as("otto@example.com", Role::Reviewer).await;
    let trader = app.signed_in_as("tina@example.com", Role::Trader).await;
    assert_eq!(
        app.call(&trader, "audit/verify/start", &[]).await.status(),
        403
    );

    let status = verify_job(&app, &owner).await;
    assert!(status["report"]["broken_at"].is_null(), "{status}");
    assert!(
        status["checked"].as_u64().expect("checked") >= 3,
        "{status}"
    );
    assert!(status["total"].as_u64().expect("total") >= 3, "{status}");
    let job: String = app
        .call(&owner, "audit/verify/start", &[])
        .await
        .json()
        .await
        .expect("job id");
    let peek = app
        .call(&other, "audit/verify/status", &[("job_id", &job)])
        .await;
    assert_eq!(peek.status(), 404);
    app.stop().await;
}

/// Events after the latest checkpoint are covered by the head of record, which each commit
/// moves: cutting them is reported, and the next event does not seal over the cut.
#[tokio::test]
async fn events_cut_from_the_end_after_the_latest_checkpoint_are_caught_and_not_sealed_over() {
    let app = spawn_app().await;
    let reviewer = app.signed_in_as("rex@example.com", Role::Reviewer).await;
    sign_now(&app, &reviewer).await;
    for n in 0..3 {
        app.sign_up(&app.new_client(), &format!("late{n}@example.com"))
            .await;
    }
    let (intact, report) = cli_verify(&app).await;
    assert!(intact, "{report}");

    // The last two events, which no checkpoint covers yet, are cut.
    drop_append_only_guards(&app).await;
    let last = app.count("SELECT MAX(seq) FROM audit_events").await;
    app.exec(&format!(
        "DELETE FROM audit_events WHERE seq > {}",
        last - 2
    ))
    .await;
    let (intact, report) = cli_verify(&app).await;
    assert!(!intact, "{report}");
    assert!(
        report.contains(&format!("BROKEN at seq {last}:"))
            && report.contains("removed from the end"),
        "{report}"
    );

    // The next events chain onto the head of record, so the cut stays a gap.
    app.sign_up(&app.new_client(), "after@example.com").await;
    assert_eq!(
        app.count(&format!(
            "SELECT COUNT(*) FROM audit_events WHERE seq IN ({}, {last})",
            last - 1
        ))
        .await,
        0,
        "the cut seqs are not reused"
    );
    let (intact, report) = cli_verify(&app).await;
    assert!(!intact, "{report}");
    assert!(
        report.contains(&format!("BROKEN at seq {}:", last - 1)),
        "{report}"
    );
    let in_request: Value = app
        .call(&reviewer, "audit/verify", &[])
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(in_request["broken_at"][0], last - 1, "{in_request}");

    // A filtered report (whose rows need not be consecutive) is not signed over a broken chain.
    // The rows may still be in the server's buffer when the stream ends, so the client sees
    // the break either before the headers arrive or while reading the body.
    let download = match reviewer
        .get(format!("{}/reports/audit.csv?action=account.", app.address))
        .send()
        .await
    {
        Ok(response) => response.text().await,
        Err(e) => Err(e),
    };
    assert!(download.is_err(), "the download breaks off unsigned");
    assert_eq!(
        app.count("SELECT COUNT(*) FROM audit_events WHERE action = 'report.download'")
            .await,
        0
    );
    app.stop().await;
}

/// A filtered report's rows need not be consecutive, so a row hidden from its filter while the
/// report is read, and put back before the chain is checked, leaves a chain that verifies. The
/// rows sent are compared with the verified chain's matching events before signing.
#[tokio::test]
async fn a_row_hidden_from_a_report_while_it_is_read_then_put_back_leaves_it_unsigned() {
    use domain::audit::reports::{ReportError, ReportFormat};
    use domain::audit::{AuditFilter, RequestMeta};

    let app = spawn_app().await;
    let rex = app.signed_in_as("rex@example.com", Role::Reviewer).await;
    for n in 0..3 {
        app.sign_up(&app.new_client(), &format!("hidden{n}@example.com"))
            .await;
    }
    let accounts = &app.backend.services.accounts;
    let rex_id = app.who_am_i(&rex).await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let reviewer = accounts
        .reviewer(domain::account::UserId(
            uuid::Uuid::parse_str(&rex_id).expect("uuid"),
        ))
        .await
        .expect("reviewer");
    let audit = &app.backend.services.audit;
    let filter = AuditFilter {
        action_prefix: Some("account.create".into()),
        ..AuditFilter::default()
    };
    let target = app
        .count("SELECT MAX(seq) FROM audit_events WHERE action = 'account.create'")
        .await;
    drop_append_only_guards(&app).await;

    let mut run = audit
        .begin_report(
            &reviewer,
            filter.clone(),
            ReportFormat::Csv,
            RequestMeta::default(),
        )
        .await
        .expect("begin");
    app.exec(&format!(
        "UPDATE audit_events SET action = 'account.hidden' WHERE seq = {target}"
    ))
    .await;
    let mut rows = 0;
    while let Some(bytes) = run.next_rows().await.expect("rows") {
        rows += bytes.iter().filter(|b| **b == b'\n').count();
    }
    app.exec(&format!(
        "UPDATE audit_events SET action = 'account.create' WHERE seq = {target}"
    ))
    .await;
    let (intact, report) = cli_verify(&app).await;
    assert!(intact, "put back, the chain verifies: {report}");
    // Header and the four sign-ups (three new users and the reviewer) less the hidden one.
    assert_eq!(rows, 4, "the hidden row was not sent");
    let finished = run.finish(RequestMeta::default()).await;
    assert!(
        matches!(finished, Err(ReportError::RowsChanged)),
        "{finished:?}"
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM audit_events WHERE action = 'report.download'")
            .await,
        0
    );

    // Read again whole, the same report is signed.
    let mut run = audit
        .begin_report(&reviewer, filter, ReportFormat::Csv, RequestMeta::default())
        .await
        .expect("begin");
    while run.next_rows().await.expect("rows").is_some() {}
    let (manifest, _) = run.finish(RequestMeta::default()).await.expect("signed");
    assert_eq!(manifest.row_count, 4);
    app.stop().await;
}

/// A stored value that reads the same but is written differently would slip past searches and
/// reports, which compare the stored text, while its hash still verified.
#[tokio::test]
async fn an_event_rewritten_to_read_the_same_but_filter_differently_is_reported() {
    let app = spawn_app().await;
    let client = app.new_client();
    app.sign_up(&client, "odd@example.com").await;
    app.log_in(&app.new_client(), "odd@example.com", "wrong password")
        .await;
    let (intact, report) = cli_verify(&app).await;
    assert!(intact, "{report}");
    drop_append_only_guards(&app).await;

    // The same instant at another offset: outside a period filter's text comparison.
    let created = app
        .count("SELECT MIN(seq) FROM audit_events WHERE action = 'account.create'")
        .await;
    let rewrite = |from: &str, to: &str| {
        format!(
            "UPDATE audit_events SET occurred_at = replace(occurred_at, '{from}', '{to}') \
             WHERE seq = {created}"
        )
    };
    app.exec(&rewrite("Z", "+00:00")).await;
    let (intact, report) = cli_verify(&app).await;
    assert!(!intact, "{report}");
    assert!(
        report.contains(&format!("BROKEN at seq {created}:")),
        "{report}"
    );
    app.exec(&rewrite("+00:00", "Z")).await;
    let (intact, report) = cli_verify(&app).await;
    assert!(intact, "{report}");

    // An outcome no filter matches, on an event that was a failure.
    let failed = app
        .count(
            "SELECT MIN(seq) FROM audit_events WHERE action = 'auth.login' AND outcome = 'failure'",
        )
        .await;
    app.exec(&format!(
        "UPDATE audit_events SET outcome = 'hidden' WHERE seq = {failed}"
    ))
    .await;
    let (intact, report) = cli_verify(&app).await;
    assert!(!intact, "{report}");
    assert!(
        report.contains(&format!("BROKEN at seq {failed}:")),
        "{report}"
    );
    app.stop().await;
}
