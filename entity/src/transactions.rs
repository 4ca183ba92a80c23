//! Reward intents: each becomes exactly one effective on-chain mint or burn.

use sea_orm::entity::prelude::*;

/// One intent and its progress `queued → signed → broadcast → confirmed | failed`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "transactions")]
pub struct Model {
    /// havend's id for the intent.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// The `bytes32` passed to the contract (0x-hex), unique on chain too.
    #[sea_orm(unique)]
    pub intent_id: String,
    /// What caused it (unique: one intent per event and purpose, or per API key).
    #[sea_orm(unique)]
    pub source: String,
    /// The user credited or debited.
    pub user_id: Uuid,
    /// The hot wallet that signs it.
    pub hot_wallet_id: Uuid,
    /// `mint` or `burn`.
    pub kind: String,
    /// Amount in base units (18 decimals), as a decimal string.
    pub amount: String,
    /// Why (shown to operators).
    pub reason: String,
    /// `queued`, `held`, `signed`, `broadcast`, `confirmed`, `failed` or `cancelled`.
    pub status: String,
    /// Raised when an operator retries a failed intent.
    pub generation: i32,
    /// The nonce of its signed attempts.
    pub nonce: Option<i64>,
    /// The mint this burn reverses.
    pub reverses: Option<Uuid>,
    /// The mined attempt's hash.
    pub tx_hash: Option<String>,
    /// The block it was mined in.
    pub block_number: Option<i64>,
    /// Why it failed or was held.
    pub last_error: Option<String>,
    /// When it was queued.
    pub created_at: DateTimeUtc,
    /// When it last changed.
    pub updated_at: DateTimeUtc,
    /// The inbox event that caused it (none for API mints and jobs).
    pub event_id: Option<Uuid>,
    /// Hash of the reward rules snapshot it was computed with.
    pub rules_hash: Option<String>,
    /// The UTC day (`YYYY-MM-DD`) its mint counts toward in the daily limits.
    pub limit_day: Option<String>,
    /// Base units a reversal could not burn because the user no longer held them.
    pub shortfall: Option<String>,
    /// The intent's number on chain (the bit a batch token marks used), set
    /// by the database on insert and never changed. `None` only in a model
    /// built before its row was written and read back.
    #[sea_orm(unique)]
    pub seq: Option<i64>,
}

/// Relations are expressed by ids in queries.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
