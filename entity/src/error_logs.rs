//! Every 5xx answer the listener sent, under the `error_id` the client saw.

use sea_orm::entity::prelude::*;

/// One server error answer.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "error_logs")]
pub struct Model {
    /// The `error_id` in the response body.
    #[sea_orm(primary_key, auto_increment = false)]
    pub error_id: Uuid,
    /// The request id.
    pub request_id: String,
    /// The HTTP status.
    pub status: i32,
    /// The machine code (`DATABASE_UNAVAILABLE`, …).
    pub code: String,
    /// The technical message (as answered; never a secret).
    pub message: String,
    /// The HTTP method.
    pub method: String,
    /// The request path.
    pub path: String,
    /// When.
    pub created_at: DateTimeUtc,
}

/// Relations are expressed by ids in queries.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
