//! Trading: risk limits and controls, the IP blocklist, orders and their fills, anomaly cases,
//! agent tokens and agent proposals.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

// Same conventions as the earlier migrations: ids and times are TEXT (canonical UTC), JSON is
// TEXT, and decimals are TEXT in their normalised form (`Decimal::normalize().to_string()`),
// so no amount goes through a float. Canonical times are not fixed-width and so do not compare
// or sort correctly as text; where the store filters or orders by a time in SQL, the row also
// carries that time as unix microseconds (`*_us`, BIGINT), written with the text from the same
// instant.
const SCHEMA: &str = r#"
-- Raw limit values as administrators typed them: scope 'global' or a user's id.
CREATE TABLE risk_limits (
    scope      TEXT NOT NULL,
    field      TEXT NOT NULL,
    value      TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (scope, field)
);

-- Global switches by key ('kill_switch': 'true' or 'false'); a missing key is off.
CREATE TABLE trading_settings (
    key        TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

-- Only users whose controls were ever changed have a row; the others have the defaults.
CREATE TABLE user_trading (
    user_id     TEXT PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    state       TEXT NOT NULL CHECK (state IN ('active', 'reducing', 'halted')),
    kill_switch BOOLEAN NOT NULL DEFAULT FALSE,
    autonomous  BOOLEAN NOT NULL DEFAULT FALSE,
    updated_at  TEXT NOT NULL
);

CREATE TABLE ip_blocklist (
    id         TEXT PRIMARY KEY,
    cidr       TEXT NOT NULL UNIQUE,
    note       TEXT NOT NULL,
    created_at TEXT NOT NULL
);

-- client_order_id is the exchange's idempotency key, so it is unique across all orders.
CREATE TABLE orders (
    id                TEXT PRIMARY KEY,
    owner             TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    exchange          TEXT NOT NULL,
    environment       TEXT NOT NULL,
    key_id            TEXT,
    client_order_id   TEXT NOT NULL UNIQUE,
    symbol            TEXT NOT NULL,
    side              TEXT NOT NULL CHECK (side IN ('buy', 'sell')),
    order_type        TEXT NOT NULL CHECK (order_type IN ('market', 'limit')),
    quantity          TEXT NOT NULL,
    limit_price       TEXT,
    reference_price   TEXT NOT NULL,
    notional          TEXT NOT NULL,
    status            TEXT NOT NULL CHECK (status IN ('denied', 'held', 'submitting', 'open',
                          'filled', 'cancelled', 'rejected')),
    hold_kind         TEXT CHECK (hold_kind IN ('exchange', 'review')),
    status_reason     TEXT,
    verdict           TEXT NOT NULL,
    hits              TEXT NOT NULL,
    anomaly           TEXT,
    filled_quantity   TEXT NOT NULL,
    average_price     TEXT,
    exchange_order_id TEXT,
    source            TEXT NOT NULL CHECK (source IN ('ticket', 'proposal', 'autonomous')),
    case_id           TEXT,
    ip                TEXT,
    device            TEXT,
    attempts          INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    created_at        TEXT NOT NULL,
    created_at_us     BIGINT NOT NULL,
    updated_at        TEXT NOT NULL
);
CREATE INDEX orders_owner_created ON orders (owner, created_at_us);
CREATE INDEX orders_status_hold ON orders (status, hold_kind, created_at_us);
CREATE INDEX orders_case ON orders (case_id);

CREATE TABLE anomaly_cases (
    id           TEXT PRIMARY KEY,
    subject      TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    order_id     TEXT,
    score        DOUBLE PRECISION NOT NULL,
    evidence     TEXT NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('open', 'released', 'confirmed')),
    opened_at    TEXT NOT NULL,
    opened_at_us BIGINT NOT NULL,
    decided_at   TEXT,
    decided_by   TEXT,
    note         TEXT,
    rationale    TEXT
);
CREATE INDEX anomaly_cases_status ON anomaly_cases (status, opened_at_us);
CREATE INDEX anomaly_cases_subject ON anomaly_cases (subject, status);

-- Only the SHA-256 of a token's secret is stored. A revoked token keeps its row.
CREATE TABLE agent_tokens (
    id           TEXT PRIMARY KEY,
    owner        TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    prefix       TEXT NOT NULL,
    token_hash   TEXT NOT NULL UNIQUE,
    scopes       TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    last_used_at TEXT,
    revoked_at   TEXT
);
CREATE INDEX agent_tokens_owner ON agent_tokens (owner);

CREATE TABLE proposals (
    id            TEXT PRIMARY KEY,
    owner         TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_id      TEXT NOT NULL REFERENCES agent_tokens (id) ON DELETE CASCADE,
    symbol        TEXT NOT NULL,
    side          TEXT NOT NULL CHECK (side IN ('buy', 'sell')),
    order_type    TEXT NOT NULL CHECK (order_type IN ('market', 'limit')),
    quantity      TEXT NOT NULL,
    limit_price   TEXT,
    rationale     TEXT NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('pending', 'placed', 'rejected')),
    order_id      TEXT,
    created_at    TEXT NOT NULL,
    created_at_us BIGINT NOT NULL,
    decided_at    TEXT
);
CREATE INDEX proposals_owner_created ON proposals (owner, created_at_us);

-- The defaults a fresh installation starts with; they must equal
-- `domain::risk::LimitField::default_raw()` (a store test checks this).
INSERT INTO risk_limits (scope, field, value, updated_at) VALUES
    ('global', 'max_order_notional', '50000', '2026-11-23T00:00:00Z'),
    ('global', 'daily_notional', '250000', '2026-11-23T00:00:00Z'),
    ('global', 'velocity_max_orders', '10', '2026-11-23T00:00:00Z'),
    ('global', 'velocity_window_secs', '60', '2026-11-23T00:00:00Z'),
    ('global', 'symbol_allowlist', 'BTCUSDT,ETHUSDT,SOLUSDT,BNBUSDT,XRPUSDT,ADAUSDT,DOGEUSDT,LTCUSDT', '2026-11-23T00:00:00Z'),
    ('global', 'anomaly_threshold', '0.8', '2026-11-23T00:00:00Z'),
    ('global', 'autonomous_cap', '500', '2026-11-23T00:00:00Z');
"#;

// Fills are append-only and read in the order they were recorded, so their key is an
// auto-incrementing integer; the two databases spell that differently.
const SQLITE_FILLS_ID: &str = "INTEGER PRIMARY KEY";
const POSTGRES_FILLS_ID: &str = "BIGSERIAL PRIMARY KEY";

const FILLS: &str = r#"
CREATE TABLE fills (
    id       {ID},
    order_id TEXT NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    owner    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    symbol   TEXT NOT NULL,
    side     TEXT NOT NULL CHECK (side IN ('buy', 'sell')),
    quantity TEXT NOT NULL,
    price    TEXT NOT NULL,
    at       TEXT NOT NULL,
    at_us    BIGINT NOT NULL
);
CREATE INDEX fills_owner ON fills (owner, at_us);
CREATE INDEX fills_order ON fills (order_id);
"#;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        let fills_id = match manager.get_database_backend() {
            DbBackend::Sqlite => SQLITE_FILLS_ID,
            DbBackend::Postgres => POSTGRES_FILLS_ID,
            other => {
                return Err(DbErr::Migration(format!(
                    "unsupported database backend {other:?}"
                )));
            }
        };
        db.execute_unprepared(SCHEMA).await?;
        db.execute_unprepared(&FILLS.replace("{ID}", fills_id))
            .await?;
        Ok(())
    }
}
