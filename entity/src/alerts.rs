//! Alerts raised for operators (delivery comes with the alerting work).

use sea_orm::entity::prelude::*;

/// One alert.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "alerts")]
pub struct Model {
    /// Row id.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// `INFO`, `WARNING`, `ERROR` or `CRITICAL`.
    pub severity: String,
    /// `wallet_fenced`, `foreign_nonce`, `low_balance`, `circuit_open`, …
    pub category: String,
    /// What happened, for people.
    pub message: String,
    /// JSON details.
    pub details: String,
    /// When.
    pub created_at: DateTimeUtc,
}

/// Relations are expressed by ids in queries.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
