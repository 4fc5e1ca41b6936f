//! Database rows. Converted to and from domain types in the repositories; never used as input.

pub mod audit_checkpoint;
pub mod report_key;

pub mod user {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "users")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        #[sea_orm(unique)]
        pub email: String,
        pub password_hash: String,
        pub role: String,
        pub created_at: String,
        /// Unix microseconds of the last "sign out everywhere" or password change. (Older rows
        /// hold seconds, which read as moments in 1970: long past, as they are.)
        pub sessions_revoked_at: Option<i64>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod session {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "sessions")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id_hash: String,
        pub user_id: Option<String>,
        pub data: String,
        pub expires_at: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// A browser that signed in to `user_id` before, by the SHA-256 of its device cookie.
pub mod trusted_device {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "trusted_devices")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub token_hash: String,
        pub user_id: String,
        pub created_at_us: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// An admin's pending request to grant or remove the admin role (see `AccountService::change_role`).
pub mod role_request {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "role_requests")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub target_id: String,
        pub from_role: String,
        pub role: String,
        pub requested_by: String,
        pub requested_at_us: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod audit_event {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "audit_events")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub seq: i64,
        pub occurred_at: String,
        pub actor_kind: String,
        pub actor_id: Option<String>,
        pub action: String,
        pub resource: Option<String>,
        pub outcome: String,
        pub ip: Option<String>,
        pub user_agent: Option<String>,
        pub request_id: Option<String>,
        pub details: String,
        pub prev_hash: String,
        pub hash: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod exchange_key {
    use sea_orm::entity::prelude::*;

    /// A sealed key row. No `Debug` derive: the row carries ciphertext, which has no business
    /// in logs either.
    #[derive(Clone, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "exchange_keys")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub owner_id: String,
        pub exchange: String,
        pub environment: String,
        pub scope: String,
        pub label: String,
        pub mask: String,
        pub status: String,
        pub status_reason: Option<String>,
        pub permissions: String,
        pub kms_key_id: Option<String>,
        pub wrapped_key: Option<String>,
        pub nonce: Option<String>,
        pub ciphertext: Option<String>,
        pub created_at: String,
        pub last_used_at: Option<String>,
        pub last_checked_at: Option<String>,
        pub revoked_at: Option<String>,
    }

    impl std::fmt::Debug for Model {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("exchange_key::Model")
                .field("id", &self.id)
                .field("owner_id", &self.owner_id)
                .field("status", &self.status)
                .finish_non_exhaustive()
        }
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod vault_canary {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "vault_canaries")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub key_id: String,
        pub planted_at: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod security_alert {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "security_alerts")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub kind: String,
        pub message: String,
        pub resource: Option<String>,
        pub actor: Option<String>,
        pub raised_at: String,
        pub acknowledged_at: Option<String>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod totp_factor {
    use sea_orm::entity::prelude::*;

    /// A sealed TOTP secret. No `Debug` derive, for the same reason as `exchange_key`.
    #[derive(Clone, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "totp_factors")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub user_id: String,
        pub kms_key_id: String,
        pub wrapped_key: String,
        pub nonce: String,
        pub ciphertext: String,
        pub confirmed_at: Option<String>,
        pub last_step: Option<i64>,
        pub failures: i32,
        pub locked_until: Option<String>,
        pub created_at: String,
        /// `locked_until` as unix microseconds: the reservation of an attempt compares it in SQL.
        pub locked_until_us: Option<i64>,
        /// When the current count of wrong codes began (unix microseconds).
        pub failures_since_us: Option<i64>,
    }

    impl std::fmt::Debug for Model {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("totp_factor::Model")
                .field("user_id", &self.user_id)
                .field("confirmed_at", &self.confirmed_at)
                .field("failures", &self.failures)
                .finish_non_exhaustive()
        }
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod recovery_code {
    use sea_orm::entity::prelude::*;

    /// No `Debug` derive: a code's hash is what proves it, so it stays out of logs.
    #[derive(Clone, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "recovery_codes")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub user_id: String,
        pub code_hash: String,
        pub created_at: String,
        pub used_at: Option<String>,
    }

    impl std::fmt::Debug for Model {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("recovery_code::Model")
                .field("id", &self.id)
                .field("user_id", &self.user_id)
                .field("used_at", &self.used_at)
                .finish_non_exhaustive()
        }
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod security_key {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "security_keys")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub user_id: String,
        pub name: String,
        #[sea_orm(unique)]
        pub credential_id: String,
        pub credential: String,
        pub created_at: String,
        pub last_used_at: Option<String>,
        pub flagged_at: Option<String>,
        pub last_challenge: Option<String>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod order_approval {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "order_approvals")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub digest: String,
        pub user_id: String,
        pub method: String,
        pub approved_at: String,
        /// Unix seconds, so the expiry compares correctly in SQL.
        pub expires_at: i64,
        pub consumed_at: Option<String>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod risk_limit {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "risk_limits")]
    pub struct Model {
        /// `global` or a user's id.
        #[sea_orm(primary_key, auto_increment = false)]
        pub scope: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub field: String,
        pub value: String,
        pub updated_at: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod trading_setting {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "trading_settings")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub key: String,
        pub value: String,
        pub updated_at: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod user_trading {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "user_trading")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub user_id: String,
        pub state: String,
        pub kill_switch: bool,
        pub autonomous: bool,
        pub updated_at: String,
        /// What stands once no case holds the trader (`risk::Standing`); NULL is `active`.
        pub settled_state: Option<String>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod ip_block {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "ip_blocklist")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        #[sea_orm(unique)]
        pub cidr: String,
        pub note: String,
        pub created_at: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod order {
    use sea_orm::entity::prelude::*;

    /// Amounts are normalised decimal text; `hits` and `anomaly` are JSON.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "orders")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub owner: String,
        pub exchange: String,
        pub environment: String,
        pub key_id: Option<String>,
        #[sea_orm(unique)]
        pub client_order_id: String,
        pub symbol: String,
        pub side: String,
        pub order_type: String,
        pub quantity: String,
        pub limit_price: Option<String>,
        pub reference_price: String,
        pub notional: String,
        pub status: String,
        /// `NULL` on a held order: held only for its owner's approval (see `approval_state`).
        pub hold_kind: Option<String>,
        pub status_reason: Option<String>,
        pub verdict: String,
        pub hits: String,
        pub anomaly: Option<String>,
        pub filled_quantity: String,
        pub average_price: Option<String>,
        pub exchange_order_id: Option<String>,
        pub source: String,
        pub case_id: Option<String>,
        pub ip: Option<String>,
        pub device: Option<String>,
        pub attempts: i32,
        pub created_at: String,
        /// `created_at` as unix microseconds, for range filters and ordering in SQL.
        pub created_at_us: i64,
        /// When the order counts from for the daily limit and the unapproved total (unix
        /// microseconds): `created_at_us`, moved to the moment a held order is claimed for
        /// sending, so it counts in the day it goes out.
        pub counted_at_us: i64,
        pub updated_at: String,
        /// `not_needed`, `awaiting` or `approved`: the order's step-up approval.
        pub approval_state: String,
        /// On a held order (kind `exchange`): cancelled after an unanswered send, never sent
        /// again (read as `HoldKind::Cancelling`).
        pub cancel_requested: bool,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod fill {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "fills")]
    pub struct Model {
        /// Auto-incremented: the order fills were recorded in.
        #[sea_orm(primary_key)]
        pub id: i64,
        pub order_id: String,
        pub owner: String,
        pub symbol: String,
        pub side: String,
        pub quantity: String,
        pub price: String,
        pub at: String,
        /// `at` as unix microseconds, for ordering in SQL.
        pub at_us: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod paper_book {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "paper_books")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub owner: String,
        /// The last fill (by id) the book includes.
        pub through_fill_id: i64,
        /// `domain::trading::PaperBook` as JSON.
        pub book: String,
        pub updated_at: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod anomaly_case {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "anomaly_cases")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub subject: String,
        pub order_id: Option<String>,
        pub score: f64,
        pub evidence: String,
        pub status: String,
        pub opened_at: String,
        /// `opened_at` as unix microseconds, for ordering in SQL.
        pub opened_at_us: i64,
        pub decided_at: Option<String>,
        pub decided_by: Option<String>,
        pub note: Option<String>,
        pub rationale: Option<String>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod agent_token {
    use sea_orm::entity::prelude::*;

    /// No `Debug` derive: the hash identifies a live bearer token, so it stays out of logs.
    #[derive(Clone, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "agent_tokens")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub owner: String,
        pub name: String,
        pub prefix: String,
        #[sea_orm(unique)]
        pub token_hash: String,
        /// Space-separated scope names.
        pub scopes: String,
        pub created_at: String,
        pub last_used_at: Option<String>,
        pub revoked_at: Option<String>,
        /// NULL for tokens created before tokens expired: they expire
        /// `DEFAULT_TOKEN_LIFETIME_DAYS` after `created_at`.
        pub expires_at: Option<String>,
        pub expires_at_us: Option<i64>,
    }

    impl std::fmt::Debug for Model {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("agent_token::Model")
                .field("id", &self.id)
                .field("owner", &self.owner)
                .field("revoked_at", &self.revoked_at)
                .finish_non_exhaustive()
        }
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod proposal {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "proposals")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub owner: String,
        pub token_id: String,
        pub symbol: String,
        pub side: String,
        pub order_type: String,
        pub quantity: String,
        pub limit_price: Option<String>,
        pub rationale: String,
        pub status: String,
        pub order_id: Option<String>,
        pub created_at: String,
        /// `created_at` as unix microseconds, for ordering in SQL.
        pub created_at_us: i64,
        pub decided_at: Option<String>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
