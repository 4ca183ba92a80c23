//! Nonces of a hot wallet consumed by transactions havend did not send.

use sea_orm::entity::prelude::*;

/// One nonce taken by someone else holding the key.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "foreign_nonces")]
pub struct Model {
    /// The hot wallet.
    #[sea_orm(primary_key, auto_increment = false)]
    pub wallet_id: Uuid,
    /// The nonce.
    #[sea_orm(primary_key, auto_increment = false)]
    pub nonce: i64,
    /// When havend noticed.
    pub detected_at: DateTimeUtc,
}

/// Relations are expressed by ids in queries.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
