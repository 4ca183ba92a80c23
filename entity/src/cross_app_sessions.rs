//! Cross-app sessions for the ticketing integration (SPEC section 3): a
//! short-lived token an API client hands to a partner app, which checks it
//! with its shared secret. Only the token's SHA-256 is stored.

use sea_orm::entity::prelude::*;

/// One session.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "cross_app_sessions")]
pub struct Model {
    /// Lowercase hex SHA-256 of the token: a leaked table grants no session.
    #[sea_orm(primary_key, auto_increment = false)]
    pub token_hash: String,
    /// The user reference the session speaks for (`aurora:guest_001`).
    pub user_ref: String,
    /// The name of the API key that generated it (audit).
    pub api_key: String,
    /// When it was generated.
    pub created_at: DateTimeUtc,
    /// After this the token is refused (401) and the row cleaned up.
    pub expires_at: DateTimeUtc,
}

/// Relations are expressed by ids in queries.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
