//! Custodial wallets: havend's hot wallets (which sign) and users' wallets (which hold).

use sea_orm::entity::prelude::*;

/// One wallet and, for a hot wallet, its nonce and fencing state.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "wallets")]
pub struct Model {
    /// havend's id for the wallet.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// Checksummed address.
    #[sea_orm(unique)]
    pub address: String,
    /// `hot` (signs mints and burns) or `user` (holds a user's tokens).
    pub kind: String,
    /// `standby`, `active`, `rotated` or `revoked`.
    pub status: String,
    /// AEAD nonce followed by the encrypted private key.
    pub encrypted_key: Vec<u8>,
    /// Version of the master key that encrypted it.
    pub key_version: i32,
    /// The chain nonce when havend started signing with it.
    pub first_nonce: i64,
    /// The next nonce havend will assign (write-ahead, fenced).
    pub next_nonce: i64,
    /// The daemon that signs for it.
    pub owner: Option<String>,
    /// Raised by each wallet actor that takes the wallet over; every write compares it.
    pub epoch: i64,
    /// The wallet that replaces it on rotation (set by `rotate`, effective
    /// when that wallet is activated).
    pub rotated_to: Option<Uuid>,
    /// When it was created.
    pub created_at: DateTimeUtc,
    /// When it last changed.
    pub updated_at: DateTimeUtc,
    /// Last sign of life of the wallet actor signing for it: queued work on
    /// a wallet whose heartbeat is old waits for a daemon nobody runs.
    pub heartbeat_at: Option<DateTimeUtc>,
    /// Why signing stopped (a foreign nonce), until an operator resumes it.
    pub halted: Option<String>,
}

/// Relations are expressed by ids in queries.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
