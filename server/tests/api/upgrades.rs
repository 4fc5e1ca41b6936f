//! Data migrations run over a database that already holds rows, as an upgrade runs them.

use migrations::{Migrator, MigratorTrait};
use sea_orm::{ConnectionTrait, Database, Statement};

use crate::helpers::TestDatabase;

/// Applies every migration before `name`, runs `seed`, then the rest. The database lives as long
/// as the returned `TestDatabase`.
async fn upgrade_across(name: &str, seed: &[&str]) -> (sea_orm::DatabaseConnection, TestDatabase) {
    let db = TestDatabase::new().await;
    let conn = Database::connect(&db.url).await.expect("connect");
    let before = Migrator::migrations()
        .iter()
        .position(|m| m.name() == name)
        .unwrap_or_else(|| panic!("no migration named {name}"));
    Migrator::up(&conn, Some(u32::try_from(before).expect("count")))
        .await
        .expect("the schema before");
    for sql in seed {
        conn.execute_unprepared(sql).await.expect(sql);
    }
    Migrator::up(&conn, None).await.expect("the upgrade");
    (conn, db)
}

#[tokio::test]
async fn what_stands_after_a_traders_cases_is_their_restriction_unless_a_case_is_open() {
    let user = |id: &str| {
        format!(
            "INSERT INTO users (id, email, password_hash, role, created_at) \
             VALUES ('{id}', '{id}@example.com', 'x', 'trader', '2026-11-01T00:00:00Z')"
        )
    };
    let state = |id: &str, state: &str| {
        format!(
            "INSERT INTO user_trading (user_id, state, kill_switch, autonomous, updated_at) \
             VALUES ('{id}', '{state}', FALSE, FALSE, '2026-11-01T00:00:00Z')"
        )
    };
    let case = |id: &str, subject: &str, status: &str| {
        format!(
            "INSERT INTO anomaly_cases (id, subject, score, evidence, status, opened_at, opened_at_us) \
             VALUES ('{id}', '{subject}', 0.9, '{{}}', '{status}', '2026-11-01T00:00:00Z', 0)"
        )
    };
    let seed = [
        // Halted by an admin, no case: the halt stands.
        user("halted"),
        state("halted", "halted"),
        // Quarantined by an open case: what the case added cannot be told apart, so nothing
        // stands beyond it (a release returns to active, as before).
        user("quarantined"),
        state("quarantined", "halted"),
        case("c1", "quarantined", "open"),
        // A confirmed case's quarantine stands.
        user("confirmed"),
        state("confirmed", "reducing"),
        case("c2", "confirmed", "confirmed"),
        // Active: nothing to keep.
        user("active"),
        state("active", "active"),
    ];
    let seed: Vec<&str> = seed.iter().map(String::as_str).collect();
    let (conn, _db) = upgrade_across("m20261130_000012_settled_state", &seed).await;
    let backend = conn.get_database_backend();
    let mut settled = Vec::new();
    for row in conn
        .query_all_raw(Statement::from_string(
            backend,
            "SELECT user_id, settled_state FROM user_trading ORDER BY user_id",
        ))
        .await
        .expect("read")
    {
        settled.push((
            row.try_get_by_index::<String>(0).expect("user"),
            row.try_get_by_index::<Option<String>>(1).expect("settled"),
        ));
    }
    let expected = [
        ("active", None),
        ("confirmed", Some("reducing")),
        ("halted", Some("halted")),
        ("quarantined", None),
    ]
    .map(|(user, settled)| (user.to_owned(), settled.map(str::to_owned)));
    assert_eq!(settled, expected);
}
