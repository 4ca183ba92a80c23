//! Every signed attempt of an intent, written before it is broadcast.

use sea_orm::entity::prelude::*;

/// One signed transaction; all attempts at a nonce carry the same intents
/// (`tx_attempt_intents`), and `transaction_id` names the first of them.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "tx_attempts")]
pub struct Model {
    /// Row id.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// The first intent it executes (all of them: `tx_attempt_intents`).
    pub transaction_id: Uuid,
    /// The hot wallet that signed it.
    pub wallet_id: Uuid,
    /// Its nonce.
    pub nonce: i64,
    /// 0 for the first, then one per fee bump.
    pub attempt: i32,
    /// Its hash (0x-hex).
    #[sea_orm(unique)]
    pub tx_hash: String,
    /// The signed bytes, rebroadcast as they are.
    pub raw: Vec<u8>,
    /// EIP-1559 fee cap, wei.
    pub max_fee_per_gas: String,
    /// EIP-1559 tip, wei.
    pub max_priority_fee_per_gas: String,
    /// Gas limit.
    pub gas_limit: i64,
    /// When it was signed.
    pub created_at: DateTimeUtc,
    /// The head block when it was signed: its `IntentExecuted` log can only
    /// be at or after it. NULL on rows signed before this was recorded.
    pub sent_block: Option<i64>,
}

/// Relations are expressed by ids in queries.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
