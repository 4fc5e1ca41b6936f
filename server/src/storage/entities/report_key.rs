//! The sealed report key (`report_keys`).

use sea_orm::entity::prelude::*;

/// No `Debug` derive: the row carries the sealed secret, which has no business in logs.
#[derive(Clone, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "report_keys")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub purpose: String,
    pub public_key: String,
    pub wrapped_key: String,
    pub nonce: String,
    pub ciphertext: String,
    pub kms_key_id: String,
    pub created_at: String,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("report_key::Model")
            .field("id", &self.id)
            .field("public_key", &self.public_key)
            .finish_non_exhaustive()
    }
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
