//! Every admin API action: who (the API key's name), from where, under which
//! request id, what was asked and how it ended.

use sea_orm::entity::prelude::*;

/// One admin action.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "audit_log")]
pub struct Model {
    /// Row id.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// The admin API key's name in the config (never the key).
    pub key_name: String,
    /// The resolved client IP (the peer, or what a trusted proxy said).
    pub client_ip: String,
    /// The request id, as echoed to the client and in the logs.
    pub request_id: String,
    /// The HTTP method.
    pub method: String,
    /// The request path.
    pub path: String,
    /// What was asked (`wallet_activate`, `pause_set`, …).
    pub action: String,
    /// The HTTP status answered.
    pub status: i32,
    /// JSON details: path parameters, the request body's non-secret fields, the error code.
    pub details: String,
    /// When.
    pub created_at: DateTimeUtc,
}

/// Relations are expressed by ids in queries.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
