//! Every sensitive wallet operation (decryption, export, rotation, revocation).

use sea_orm::entity::prelude::*;

/// One audited operation.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "wallet_audit_logs")]
pub struct Model {
    /// Row id.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// The wallet concerned.
    pub wallet_id: Option<Uuid>,
    /// `create`, `decrypt`, `export`, `rotate`, `revoke`, `reencrypt`, `grant_roles`.
    pub action: String,
    /// `LOW`, `MEDIUM` or `HIGH`.
    pub severity: String,
    /// Who did it (daemon name, CLI user).
    pub actor: String,
    /// JSON details (never key material).
    pub details: String,
    /// When.
    pub created_at: DateTimeUtc,
}

/// Relations are expressed by ids in queries.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
