//! Idempotency keys of the token API (SPEC section 3): the claim on a key
//! (a lease token) while its first request runs, then the stored response
//! that every retry with the key gets back until it expires.

use sea_orm::entity::prelude::*;

/// One key of one API key.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "idempotency_keys")]
pub struct Model {
    /// The name of the API key that sent it (keys are scoped to their API key).
    #[sea_orm(primary_key, auto_increment = false)]
    pub api_key: String,
    /// The client's Idempotency-Key.
    #[sea_orm(primary_key, auto_increment = false)]
    pub key: String,
    /// SHA-256 (hex) of the request's method, path and body: the same key
    /// with another body is refused.
    pub fingerprint: String,
    /// Set while a request holds the key; its commit must still find it.
    pub lease_token: Option<Uuid>,
    /// The holder's claim lapses at this time (a crashed holder frees the key).
    pub lease_until: Option<DateTimeUtc>,
    /// The stored response's status, once one committed.
    pub response_status: Option<i32>,
    /// The stored response's headers (JSON object).
    pub response_headers: Option<String>,
    /// The stored response's body.
    pub response_body: Option<String>,
    /// When the key was first claimed.
    pub created_at: DateTimeUtc,
    /// After this the key is forgotten (and cleaned up).
    pub expires_at: DateTimeUtc,
}

/// Relations are expressed by ids in queries.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
