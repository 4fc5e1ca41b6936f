//! The chain starts at seq 1 and is verified from there, so a row inserted below it was never
//! checked. The verifier now reports such a row; this trigger refuses it in the first place
//! (someone who can drop triggers can still insert one, and the verifier finds it).

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

const SQLITE: &str = r#"
CREATE TRIGGER audit_events_seq_from_one BEFORE INSERT ON audit_events WHEN NEW.seq < 1
BEGIN SELECT RAISE(ABORT, 'audit_events seq starts at 1'); END;
"#;

const POSTGRES: &str = r#"
CREATE FUNCTION audit_events_seq_from_one() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.seq < 1 THEN
        RAISE EXCEPTION 'audit_events seq starts at 1';
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER audit_events_seq_from_one BEFORE INSERT ON audit_events
FOR EACH ROW EXECUTE FUNCTION audit_events_seq_from_one();
"#;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let trigger = match manager.get_database_backend() {
            DbBackend::Sqlite => SQLITE,
            DbBackend::Postgres => POSTGRES,
            other => {
                return Err(DbErr::Migration(format!(
                    "unsupported database backend {other:?}"
                )));
            }
        };
        manager.get_connection().execute_unprepared(trigger).await?;
        Ok(())
    }
}
