//! Reward recipients: a partner identity, its custodial wallet and its hot wallet.

use sea_orm::entity::prelude::*;

/// One user.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "users")]
pub struct Model {
    /// havend's id for the user.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// `{partner}:{external id}`, e.g. `aurora:guest_001`.
    #[sea_orm(unique)]
    pub external_ref: String,
    /// The user's custodial wallet.
    pub wallet_id: Uuid,
    /// Its address (where tokens are minted).
    pub address: String,
    /// The hot wallet that signs this user's mints and burns.
    pub hot_wallet_id: Uuid,
    /// When the user was first rewarded.
    pub created_at: DateTimeUtc,
}

/// Relations are expressed by ids in queries.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
